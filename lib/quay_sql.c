/*
 * The statement catalog (see quay_sql.h): the .def files expanded into one
 * table indexed by quay_sql_e.  Prepared statement names are the enum
 * names; connections do not survive a reload, so a name never outlives a
 * change of its text within one connection.
 */

#include "quay_sql.h"


#define QUAY_SQL_ROW(id, text, nparams)  [id] = { #id, text, nparams },
#define QUAY_API_ROUTE(id, method, path, function, scope, flags, summary,   \
                       query)                                                \
    [id] = { #id, QUAY_API_SQL(function), 3 },

static const quay_sql_stmt_t  quay_sql_catalog[QUAY_SQL_COUNT] = {
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
};

#undef QUAY_SQL_ROW
#undef QUAY_API_ROUTE


const quay_sql_stmt_t *
quay_sql_stmt(quay_sql_e id)
{
    return &quay_sql_catalog[id];
}
