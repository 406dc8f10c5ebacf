/*
 * The statement catalog (see quay_sql.h).  Statement names are "q<N>" so
 * that a name never outlives a change of text within one connection: the
 * module prepares on first use per connection and connections do not
 * survive a reload.
 */

#include "quay_sql.h"


static const quay_sql_stmt_t  quay_sql_catalog[QUAY_SQL_COUNT] = {

    /* Quay's health check reads teamrole: it proves the schema is there,
     * not only that the server answers. */
    [QUAY_SQL_HEALTH_DATABASE] = {
        "q_health_database",
        "SELECT count(*) FROM teamrole",
        0
    },

    /* Every configured storage location has a row (Quay inserts them at
     * boot, util/config/database.py). */
    [QUAY_SQL_LOCATION_ENSURE] = {
        "q_location_ensure",
        "INSERT INTO imagestoragelocation (name) VALUES ($1)"
        " ON CONFLICT (name) DO NOTHING",
        1
    },
};


const quay_sql_stmt_t *
quay_sql_stmt(quay_sql_e id)
{
    return &quay_sql_catalog[id];
}
