/*
 * Audit log rows (issue #4: logins, pushes, pulls, deletes).
 *
 * DESIGN.  A row is written by its own query in its own small pool, not
 * the request's: the answer does not wait for it, and a request that ends
 * first does not cancel it (a query cut off by its pool's cleanup closes
 * its database connection).  The pool is destroyed when the insert
 * completes.  A failed insert is a WARN, never a failed request.  The
 * values are copied into the query's pool at once.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_db.h"


static void ngx_http_quay_audit_done(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_audit_param(ngx_http_quay_db_query_t *q,
    ngx_uint_t i, ngx_str_t *value);


void
ngx_http_quay_audit(ngx_http_request_t *r, const char *kind,
    ngx_str_t *account_id, ngx_str_t *performer_id,
    ngx_str_t *repository_id, ngx_str_t *metadata)
{
    ngx_pool_t                 *pool;
    ngx_http_quay_db_query_t   *q;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    /* the connection's log outlives nothing: use the cycle's */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_http_quay_db_query_create(pool, ngx_cycle->log,
                                      QUAY_SQL_AUDIT_INSERT);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_http_quay_db_param(q, 0, (u_char *) kind, ngx_strlen(kind));
    ngx_http_quay_audit_param(q, 1, account_id);
    ngx_http_quay_audit_param(q, 2, performer_id);
    ngx_http_quay_audit_param(q, 3, repository_id);
    ngx_http_quay_db_param(q, 4, r->connection->addr_text.data,
                           r->connection->addr_text.len);
    ngx_http_quay_audit_param(q, 5, metadata);

    q->handler = ngx_http_quay_audit_done;
    q->data = pool;

    if (ngx_http_quay_db_query_run(qmcf, q) != NGX_AGAIN) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "quay: audit log row \"%s\" not written: %s", kind,
                      q->error ? q->error : "unknown error");
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_quay_audit_param(ngx_http_quay_db_query_t *q, ngx_uint_t i,
    ngx_str_t *value)
{
    if (value == NULL || value->len == 0) {
        /* SQL NULL */
        return;
    }

    ngx_http_quay_db_param(q, i, value->data, value->len);
}


static void
ngx_http_quay_audit_done(ngx_http_quay_db_query_t *q)
{
    if (q->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "quay: audit log row not written: %s", q->error);
    }

    ngx_destroy_pool(q->data);
}
