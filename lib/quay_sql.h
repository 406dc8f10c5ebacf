/*
 * The statement catalog: every SQL text the module runs, by enum.  The
 * module prepares each statement lazily per connection (a bitmap per
 * connection) and always binds parameters; nothing is ever concatenated.
 *
 * The rows live in one .def file per area (X-macro rows
 * QUAY_SQL_ROW(ID, TEXT, NPARAMS)), so that each area's statements sit
 * together and a new statement is one row.  The prepared statement name is
 * the enum's name.  The REST API's routes (lib/quay_api.h) add one
 * statement each, from their QUAY_API_ROUTE rows.
 */

#ifndef QUAY_SQL_H
#define QUAY_SQL_H

#include <stddef.h>

#include "quay_api.h"


#define QUAY_SQL_ROW(id, text, nparams)  id,
#define QUAY_API_ROUTE(id, method, path, function, scope, flags, summary,   \
                       query)                                                \
    id,

typedef enum {
#include "quay_sql_core.def"
#include "quay_sql_auth.def"
#include "quay_sql_blob.def"
#include "quay_sql_manifest.def"
#include "quay_api_user.def"
#include "quay_api_org.def"
#include "quay_api_robot.def"
#include "quay_api_repo.def"
#include "quay_api_tag.def"
#include "quay_api_superuser.def"
#include "quay_api_log.def"
    QUAY_SQL_COUNT                       /* keep last */
} quay_sql_e;

#undef QUAY_SQL_ROW
#undef QUAY_API_ROUTE


typedef struct {
    const char  *name;                   /* prepared statement name */
    const char  *text;
    int          nparams;
} quay_sql_stmt_t;


/* The catalog row for id; id must be < QUAY_SQL_COUNT. */
const quay_sql_stmt_t *quay_sql_stmt(quay_sql_e id);

#endif /* QUAY_SQL_H */
