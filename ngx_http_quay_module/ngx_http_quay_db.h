/*
 * Nonblocking PostgreSQL access on nginx's event loop: a per-worker pool
 * of libpq connections, driven by nginx events, with a bounded wait queue.
 * See the design paragraph at the top of ngx_http_quay_db.c.
 */

#ifndef NGX_HTTP_QUAY_DB_H
#define NGX_HTTP_QUAY_DB_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <libpq-fe.h>

#include "quay_sql.h"
#include "ngx_http_quay_module.h"


typedef struct ngx_http_quay_db_conn_s   ngx_http_quay_db_conn_t;
typedef struct ngx_http_quay_db_query_s  ngx_http_quay_db_query_t;

/* Called exactly once per run query, from the event loop.  q->rc is
 * NGX_OK with q->result set, or NGX_ERROR with q->error set. */
typedef void (*ngx_http_quay_db_done_pt)(ngx_http_quay_db_query_t *q);


struct ngx_http_quay_db_query_s {
    quay_sql_e                  stmt;
    ngx_uint_t                  nparams;
    const char                **values;      /* r->pool; NULL = SQL NULL */
    int                        *lengths;

    ngx_http_quay_db_done_pt    handler;
    void                       *data;        /* the handler's; taken by
                                                request_query_run() */
    void                       *udata;       /* the caller's; never
                                                touched by the pool */

    ngx_int_t                   rc;
    PGresult                   *result;      /* owned; PQclear'ed by the
                                                pool cleanup */
    const char                 *error;       /* static or query's pool */

    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_msec_t                  timeout;     /* 0: the pool's default */
    ngx_queue_t                 queue;       /* in the pool's wait queue */
    ngx_http_quay_db_conn_t    *conn;        /* while running */
    ngx_http_quay_db_pool_t    *db;          /* set by query_run */
    ngx_event_t                 wait_timer;  /* while queued */

    unsigned                    queued:1;
    unsigned                    running:1;
    unsigned                    done:1;
};


/* Per-worker pool life cycle (init_process / exit_process). */
ngx_int_t ngx_http_quay_db_pool_init(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle);
void ngx_http_quay_db_pool_done(ngx_http_quay_main_conf_t *qmcf);

/*
 * Allocates a query for stmt in pool with room for the statement's
 * parameters; registers a pool cleanup that abandons the query (closing
 * its connection if it is on the wire) and frees the result.
 */
ngx_http_quay_db_query_t *ngx_http_quay_db_query_create(ngx_pool_t *pool,
    ngx_log_t *log, quay_sql_e stmt);

/* Sets parameter i to a copy-free view of s (s must outlive the query). */
void ngx_http_quay_db_param(ngx_http_quay_db_query_t *q, ngx_uint_t i,
    u_char *data, size_t len);

/*
 * Starts q.  Returns NGX_AGAIN: q->handler will be called later from the
 * event loop, never from inside this call.  Returns NGX_ERROR (q->error
 * set) when the query could not even be queued; the handler is then not
 * called.
 */
ngx_int_t ngx_http_quay_db_query_run(ngx_http_quay_main_conf_t *qmcf,
    ngx_http_quay_db_query_t *q);

/* Convenience accessors for the result. */
ngx_int_t ngx_http_quay_db_ntuples(ngx_http_quay_db_query_t *q);
ngx_str_t ngx_http_quay_db_value(ngx_http_quay_db_query_t *q, int row,
    int col);

#endif /* NGX_HTTP_QUAY_DB_H */
