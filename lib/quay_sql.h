/*
 * The statement catalog: every SQL text the module runs, by enum.  The
 * module prepares each statement lazily per connection (a bitmap per
 * connection) and always binds parameters; nothing is ever concatenated.
 * A new statement is one enum value and one row in quay_sql.c.
 */

#ifndef QUAY_SQL_H
#define QUAY_SQL_H

#include <stddef.h>


typedef enum {
    QUAY_SQL_HEALTH_DATABASE = 0,
    QUAY_SQL_LOCATION_ENSURE,
    QUAY_SQL_COUNT                       /* keep last */
} quay_sql_e;


typedef struct {
    const char  *name;                   /* prepared statement name */
    const char  *text;
    int          nparams;
} quay_sql_stmt_t;


/* The catalog row for id; id must be < QUAY_SQL_COUNT. */
const quay_sql_stmt_t *quay_sql_stmt(quay_sql_e id);

#endif /* QUAY_SQL_H */
