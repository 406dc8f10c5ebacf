/*
 * Database queries bound to a request.  The completion handler runs from
 * the event loop; after it, the request's posted subrequests and events
 * are run (ngx_http_run_posted_requests), as every nginx completion path
 * must.  A request that goes away first takes its query with it: the
 * query's pool cleanup (ngx_http_quay_db.c) closes the connection and the
 * handler is never called.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_v2.h"


typedef struct {
    ngx_http_request_t             *r;
    ngx_http_quay_request_done_pt   done;
} ngx_http_quay_request_query_ctx_t;


static void ngx_http_quay_request_query_done(ngx_http_quay_db_query_t *q);


ngx_http_quay_db_query_t *
ngx_http_quay_request_query(ngx_http_request_t *r, quay_sql_e stmt)
{
    return ngx_http_quay_db_query_create(r->pool, r->connection->log, stmt);
}


ngx_int_t
ngx_http_quay_request_query_run(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q, ngx_http_quay_request_done_pt done)
{
    ngx_http_quay_main_conf_t          *qmcf;
    ngx_http_quay_request_query_ctx_t  *qctx;

    qctx = ngx_palloc(r->pool, sizeof(ngx_http_quay_request_query_ctx_t));
    if (qctx == NULL) {
        return NGX_ERROR;
    }

    qctx->r = r;
    qctx->done = done;

    q->handler = ngx_http_quay_request_query_done;
    q->data = qctx;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    return ngx_http_quay_db_query_run(qmcf, q);
}


static void
ngx_http_quay_request_query_done(ngx_http_quay_db_query_t *q)
{
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_quay_request_query_ctx_t  *qctx;

    qctx = q->data;
    r = qctx->r;
    c = r->connection;

    qctx->done(r, q);

    ngx_http_run_posted_requests(c);
}
