/*
 * PostgreSQL on nginx's event loop.
 *
 * DESIGN.  Each nginx worker owns a pool of at most quay_db_pool_size libpq
 * connections in nonblocking mode.  A connection wraps PQsocket() in an
 * ngx_connection_t so that nginx's event module tells us when to poll
 * libpq; nothing here ever blocks (no PQexec, PQconnectdb or PQprepare).
 *
 * Events are registered level-triggered (NGX_LEVEL_EVENT), even on epoll:
 * libpq reads one buffer per PQconsumeInput() and may return
 * PGRES_POLLING_WRITING on a socket that is already writable, and with
 * edge-triggered events either case stalls a request forever
 * (platform-notes).  The read event stays registered for the life of the
 * connection; the write event is added only while libpq has output to
 * flush or while connecting, and removed as soon as it has none.
 *
 * A connection is in one of these states:
 *
 *   CONNECTING  PQconnectPoll() until PGRES_POLLING_OK
 *   IDLE        in the pool's idle queue; a readable socket here means the
 *               server closed it (or sent a notice): consume and check
 *   PREPARING   PQsendPrepare() of the query's statement sent, the first
 *               time this connection runs that statement (bitmap)
 *   EXECUTING   PQsendQueryPrepared() sent, collecting the result
 *
 * A query that finds no idle connection opens one (up to the pool size)
 * or waits in a bounded FIFO with a timer.  Every step on the wire has a
 * timer (the connection's read event timer); libpq 15 has no nonblocking
 * cancel, so a query that times out, or whose request goes away, closes
 * its connection instead of returning it to the pool.  A connection that
 * fails to connect fails every waiting query at once: when the database is
 * down, requests get a fast 503, not a pile of timeouts.
 *
 * The query's completion handler is called exactly once, always from an
 * event handler, never from inside ngx_http_quay_db_query_run().
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_quay_db.h"
#include "ngx_http_quay_metrics.h"


typedef enum {
    NGX_HTTP_QUAY_DB_CONNECTING = 0,
    NGX_HTTP_QUAY_DB_IDLE,
    NGX_HTTP_QUAY_DB_PREPARING,
    NGX_HTTP_QUAY_DB_EXECUTING
} ngx_http_quay_db_state_e;


struct ngx_http_quay_db_conn_s {
    PGconn                     *pg;          /* owned; PQfinish in close */
    ngx_connection_t           *c;           /* wraps PQsocket() */
    ngx_http_quay_db_pool_t    *pool;
    ngx_http_quay_db_query_t   *query;       /* borrowed while running */
    PGresult                   *result;      /* last result of the step */
    ngx_queue_t                 queue;       /* in pool->idle when IDLE */
    ngx_http_quay_db_state_e    state;
    u_char                      prepared[(QUAY_SQL_COUNT + 7) / 8];
};


struct ngx_http_quay_db_pool_s {
    ngx_http_quay_main_conf_t  *qmcf;
    ngx_log_t                  *log;
    ngx_queue_t                 idle;
    ngx_queue_t                 waiting;
    ngx_uint_t                  nconns;      /* every open connection */
    ngx_uint_t                  nconnecting;
    ngx_uint_t                  nwaiting;
};


static ngx_int_t ngx_http_quay_db_conn_open(ngx_http_quay_db_pool_t *pool);
static void ngx_http_quay_db_conn_close(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_conn_fail(ngx_http_quay_db_conn_t *conn,
    const char *why);
static void ngx_http_quay_db_event_handler(ngx_event_t *ev);
static void ngx_http_quay_db_connect_poll(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_conn_ready(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_conn_send(ngx_http_quay_db_conn_t *conn);
static ngx_int_t ngx_http_quay_db_conn_flush(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_conn_process(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_conn_idle_read(ngx_http_quay_db_conn_t *conn);
static void ngx_http_quay_db_step_done(ngx_http_quay_db_conn_t *conn);
static ngx_int_t ngx_http_quay_db_set_write(ngx_http_quay_db_conn_t *conn,
    ngx_uint_t on);
static void ngx_http_quay_db_query_finish(ngx_http_quay_db_query_t *q,
    ngx_int_t rc, const char *error);
static void ngx_http_quay_db_query_deferred(ngx_event_t *ev);
static void ngx_http_quay_db_wait_timeout(ngx_event_t *ev);
static void ngx_http_quay_db_fail_waiting(ngx_http_quay_db_pool_t *pool,
    const char *why);
static void ngx_http_quay_db_query_cleanup(void *data);


ngx_int_t
ngx_http_quay_db_pool_init(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle)
{
    ngx_http_quay_db_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_http_quay_db_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pool->nconns = 0;
     *     pool->nconnecting = 0;
     *     pool->nwaiting = 0;
     */

    pool->qmcf = qmcf;
    pool->log = cycle->log;
    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->waiting);

    qmcf->db = pool;

    return NGX_OK;
}


void
ngx_http_quay_db_pool_done(ngx_http_quay_main_conf_t *qmcf)
{
    ngx_queue_t              *qu;
    ngx_http_quay_db_pool_t  *pool;
    ngx_http_quay_db_conn_t  *conn;

    pool = qmcf->db;
    if (pool == NULL) {
        return;
    }

    while (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        ngx_queue_remove(qu);
        conn = ngx_queue_data(qu, ngx_http_quay_db_conn_t, queue);
        ngx_http_quay_db_conn_close(conn);
    }

    qmcf->db = NULL;
}


ngx_http_quay_db_query_t *
ngx_http_quay_db_query_create(ngx_pool_t *pool, ngx_log_t *log,
    quay_sql_e stmt)
{
    ngx_uint_t                 n;
    ngx_pool_cleanup_t        *cln;
    ngx_http_quay_db_query_t  *q;

    q = ngx_pcalloc(pool, sizeof(ngx_http_quay_db_query_t));
    if (q == NULL) {
        return NULL;
    }

    n = quay_sql_stmt(stmt)->nparams;

    if (n) {
        q->values = ngx_pcalloc(pool, n * sizeof(char *));
        q->lengths = ngx_pcalloc(pool, n * sizeof(int));
        if (q->values == NULL || q->lengths == NULL) {
            return NULL;
        }
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_quay_db_query_cleanup;
    cln->data = q;

    /*
     * set by ngx_pcalloc():
     *
     *     q->result = NULL;
     *     q->error = NULL;
     *     q->conn = NULL;
     *     q->timeout = 0;
     *     q->queued = q->running = q->done = 0;
     */

    q->stmt = stmt;
    q->nparams = n;
    q->pool = pool;
    q->log = log;
    q->rc = NGX_ERROR;

    return q;
}


void
ngx_http_quay_db_param(ngx_http_quay_db_query_t *q, ngx_uint_t i,
    u_char *data, size_t len)
{
    u_char  *p;

    /* text-format parameters are NUL-terminated strings for libpq */

    p = ngx_pnalloc(q->pool, len + 1);
    if (p == NULL) {
        q->values[i] = NULL;
        q->error = "out of memory";
        return;
    }

    ngx_memcpy(p, data, len);
    p[len] = '\0';

    q->values[i] = (const char *) p;
    q->lengths[i] = (int) len;
}


ngx_int_t
ngx_http_quay_db_query_run(ngx_http_quay_main_conf_t *qmcf,
    ngx_http_quay_db_query_t *q)
{
    ngx_queue_t              *qu;
    ngx_http_quay_db_pool_t  *pool;
    ngx_http_quay_db_conn_t  *conn;

    pool = qmcf->db;

    if (pool == NULL || q->handler == NULL) {
        q->error = "database pool is not initialized";
        return NGX_ERROR;
    }

    if (q->error != NULL) {
        return NGX_ERROR;
    }

    if (q->timeout == 0) {
        q->timeout = qmcf->db_timeout;
    }

    q->db = pool;
    q->wait_timer.data = q;
    q->wait_timer.log = q->log;

    if (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        ngx_queue_remove(qu);
        conn = ngx_queue_data(qu, ngx_http_quay_db_conn_t, queue);

        conn->query = q;
        q->conn = conn;
        q->running = 1;

        ngx_http_quay_db_conn_send(conn);

        /*
         * conn_send() may have failed and finished the query; that
         * completion was deferred through a posted event, so the caller
         * still sees NGX_AGAIN and gets its handler called later.
         */

        return NGX_AGAIN;
    }

    if (pool->nwaiting >= qmcf->db_queue_size) {
        q->error = "too many queries waiting for a database connection";
        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      "quay: db: %s (%ui waiting)", q->error,
                      pool->nwaiting);
        return NGX_ERROR;
    }

    ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_DB_WAITS);

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    pool->nwaiting++;
    q->queued = 1;

    q->wait_timer.handler = ngx_http_quay_db_wait_timeout;
    ngx_add_timer(&q->wait_timer, q->timeout);

    /* open a connection if every open one is busy and there is room */

    if (pool->nconns < qmcf->db_pool_size
        && pool->nconnecting < pool->nwaiting)
    {
        if (ngx_http_quay_db_conn_open(pool) != NGX_OK) {
            /* the waiting queries have been failed through posted events */
            return NGX_AGAIN;
        }
    }

    return NGX_AGAIN;
}


ngx_int_t
ngx_http_quay_db_ntuples(ngx_http_quay_db_query_t *q)
{
    if (q->result == NULL) {
        return 0;
    }

    return PQntuples(q->result);
}


ngx_str_t
ngx_http_quay_db_value(ngx_http_quay_db_query_t *q, int row, int col)
{
    ngx_str_t  s;

    if (q->result == NULL
        || row >= PQntuples(q->result)
        || col >= PQnfields(q->result)
        || PQgetisnull(q->result, row, col))
    {
        ngx_str_null(&s);
        return s;
    }

    s.data = (u_char *) PQgetvalue(q->result, row, col);
    s.len = PQgetlength(q->result, row, col);

    return s;
}


static ngx_int_t
ngx_http_quay_db_conn_open(ngx_http_quay_db_pool_t *pool)
{
    int                         fd;
    PGconn                     *pg;
    ngx_event_t                *rev, *wev;
    ngx_connection_t           *c;
    ngx_http_quay_db_conn_t    *conn;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = pool->qmcf;

    pg = PQconnectStartParams(qmcf->db_keywords, qmcf->db_values, 0);

    if (pg == NULL) {
        ngx_http_quay_db_fail_waiting(pool, "out of memory");
        return NGX_ERROR;
    }

    if (PQstatus(pg) == CONNECTION_BAD || PQsetnonblocking(pg, 1) == -1) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "quay: db: cannot connect to \"%V\": %s",
                      &qmcf->db_display, PQerrorMessage(pg));
        PQfinish(pg);
        ngx_http_quay_db_fail_waiting(pool, "database unavailable");
        return NGX_ERROR;
    }

    fd = PQsocket(pg);

    c = ngx_get_connection(fd, pool->log);
    if (c == NULL) {
        PQfinish(pg);
        ngx_http_quay_db_fail_waiting(pool, "no free nginx connection");
        return NGX_ERROR;
    }

    conn = ngx_calloc(sizeof(ngx_http_quay_db_conn_t), pool->log);
    if (conn == NULL) {
        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        PQfinish(pg);
        ngx_http_quay_db_fail_waiting(pool, "out of memory");
        return NGX_ERROR;
    }

    conn->pg = pg;
    conn->c = c;
    conn->pool = pool;
    conn->state = NGX_HTTP_QUAY_DB_CONNECTING;

    c->data = conn;
    c->log = pool->log;

    rev = c->read;
    wev = c->write;

    rev->log = pool->log;
    wev->log = pool->log;
    rev->handler = ngx_http_quay_db_event_handler;
    wev->handler = ngx_http_quay_db_event_handler;

    pool->nconns++;
    pool->nconnecting++;

    if (ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_quay_db_conn_fail(conn, "cannot add read event");
        return NGX_ERROR;
    }

    ngx_add_timer(rev, qmcf->db_connect_timeout);

    /* libpq: start as if PQconnectPoll() had returned POLLING_WRITING */

    if (ngx_http_quay_db_set_write(conn, 1) != NGX_OK) {
        ngx_http_quay_db_conn_fail(conn, "cannot add write event");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_db_set_write(ngx_http_quay_db_conn_t *conn, ngx_uint_t on)
{
    ngx_event_t  *wev;

    wev = conn->c->write;

    if (on && !wev->active) {
        return ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (!on && wev->active) {
        return ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


static void
ngx_http_quay_db_event_handler(ngx_event_t *ev)
{
    ngx_connection_t         *c;
    ngx_http_quay_db_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (ev->timedout) {
        ev->timedout = 0;
        ngx_http_quay_db_conn_fail(conn,
                                   conn->state == NGX_HTTP_QUAY_DB_CONNECTING
                                   ? "connect timed out"
                                   : "query timed out");
        return;
    }

    switch (conn->state) {

    case NGX_HTTP_QUAY_DB_CONNECTING:
        ngx_http_quay_db_connect_poll(conn);
        break;

    case NGX_HTTP_QUAY_DB_IDLE:
        ngx_http_quay_db_conn_idle_read(conn);
        break;

    default:
        ngx_http_quay_db_conn_process(conn);
        break;
    }
}


static void
ngx_http_quay_db_connect_poll(ngx_http_quay_db_conn_t *conn)
{
    PostgresPollingStatusType  status;

    conn->c->log->action = "connecting to PostgreSQL";

    status = PQconnectPoll(conn->pg);

    /*
     * With one hostaddr, an explicit sslmode and gssencmode=disable, libpq
     * never swaps the socket during connect (platform-notes, item 5); if
     * it did anyway, nginx's registration would point at a closed fd.
     */

    if (status != PGRES_POLLING_FAILED
        && PQsocket(conn->pg) != conn->c->fd)
    {
        ngx_log_error(NGX_LOG_ALERT, conn->c->log, 0,
                      "quay: db: libpq changed its socket during connect");
        ngx_http_quay_db_conn_fail(conn, "socket changed during connect");
        return;
    }

    switch (status) {

    case PGRES_POLLING_READING:
        if (ngx_http_quay_db_set_write(conn, 0) != NGX_OK) {
            ngx_http_quay_db_conn_fail(conn, "cannot delete write event");
        }
        return;

    case PGRES_POLLING_WRITING:
        if (ngx_http_quay_db_set_write(conn, 1) != NGX_OK) {
            ngx_http_quay_db_conn_fail(conn, "cannot add write event");
        }
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        ngx_http_quay_db_conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }

    if (ngx_http_quay_db_set_write(conn, 0) != NGX_OK) {
        ngx_http_quay_db_conn_fail(conn, "cannot delete write event");
        return;
    }

    if (conn->c->read->timer_set) {
        ngx_del_timer(conn->c->read);
    }

    conn->pool->nconnecting--;
    conn->state = NGX_HTTP_QUAY_DB_IDLE;
    conn->c->log->action = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, conn->c->log, 0,
                   "quay: db: connected, %ui open", conn->pool->nconns);

    ngx_http_quay_db_conn_ready(conn);
}


/* An idle connection takes the oldest waiting query, or goes idle. */

static void
ngx_http_quay_db_conn_ready(ngx_http_quay_db_conn_t *conn)
{
    ngx_queue_t              *qu;
    ngx_http_quay_db_pool_t  *pool;
    ngx_http_quay_db_query_t *q;

    pool = conn->pool;

    conn->state = NGX_HTTP_QUAY_DB_IDLE;
    conn->query = NULL;

    if (ngx_queue_empty(&pool->waiting)) {
        ngx_queue_insert_head(&pool->idle, &conn->queue);
        return;
    }

    qu = ngx_queue_head(&pool->waiting);
    ngx_queue_remove(qu);
    pool->nwaiting--;

    q = ngx_queue_data(qu, ngx_http_quay_db_query_t, queue);
    q->queued = 0;

    if (q->wait_timer.timer_set) {
        ngx_del_timer(&q->wait_timer);
    }

    conn->query = q;
    q->conn = conn;
    q->running = 1;

    ngx_http_quay_db_conn_send(conn);
}


static void
ngx_http_quay_db_conn_send(ngx_http_quay_db_conn_t *conn)
{
    int                        rc;
    ngx_http_quay_db_query_t  *q;
    const quay_sql_stmt_t     *stmt;

    q = conn->query;
    stmt = quay_sql_stmt(q->stmt);

    if (conn->prepared[q->stmt / 8] & (1 << (q->stmt % 8))) {
        conn->state = NGX_HTTP_QUAY_DB_EXECUTING;
        rc = PQsendQueryPrepared(conn->pg, stmt->name, (int) q->nparams,
                                 q->values, q->lengths, NULL, 0);

    } else {
        conn->state = NGX_HTTP_QUAY_DB_PREPARING;
        rc = PQsendPrepare(conn->pg, stmt->name, stmt->text,
                           stmt->nparams, NULL);
    }

    if (rc == 0) {
        ngx_http_quay_db_conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }

    if (conn->c->read->timer_set) {
        ngx_del_timer(conn->c->read);
    }

    ngx_add_timer(conn->c->read, q->timeout);

    conn->c->log->action = "querying PostgreSQL";

    (void) ngx_http_quay_db_conn_flush(conn);
}


/* Returns NGX_ERROR when the connection failed and is gone. */

static ngx_int_t
ngx_http_quay_db_conn_flush(ngx_http_quay_db_conn_t *conn)
{
    int  rc;

    rc = PQflush(conn->pg);

    if (rc == -1) {
        ngx_http_quay_db_conn_fail(conn, PQerrorMessage(conn->pg));
        return NGX_ERROR;
    }

    /* 1: output remains; wait for writability (and read what comes) */

    if (ngx_http_quay_db_set_write(conn, rc == 1) != NGX_OK) {
        ngx_http_quay_db_conn_fail(conn, "cannot change write event");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quay_db_conn_process(ngx_http_quay_db_conn_t *conn)
{
    PGresult  *res;

    /* libpq's rule: consume what has arrived before flushing again */

    if (!PQconsumeInput(conn->pg)) {
        ngx_http_quay_db_conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }

    if (conn->c->write->active
        && ngx_http_quay_db_conn_flush(conn) != NGX_OK)
    {
        return;
    }

    while (!PQisBusy(conn->pg)) {

        res = PQgetResult(conn->pg);

        if (res == NULL) {
            ngx_http_quay_db_step_done(conn);
            return;
        }

        /* a single statement yields one result; keep the last one */

        if (conn->result != NULL) {
            PQclear(conn->result);
        }

        conn->result = res;
    }

    /* busy: the level-triggered read event calls us again when more
     * of the result arrives */
}


static void
ngx_http_quay_db_step_done(ngx_http_quay_db_conn_t *conn)
{
    PGresult                  *res;
    ExecStatusType             status;
    ngx_http_quay_db_query_t  *q;

    q = conn->query;
    res = conn->result;
    conn->result = NULL;

    status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (conn->c->read->timer_set) {
        ngx_del_timer(conn->c->read);
    }

    conn->c->log->action = NULL;

    if (conn->state == NGX_HTTP_QUAY_DB_PREPARING) {

        if (status != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_ALERT, conn->c->log, 0,
                          "quay: db: cannot prepare \"%s\": %s",
                          quay_sql_stmt(q->stmt)->name,
                          res ? PQresultErrorMessage(res) : "no result");
            if (res) {
                PQclear(res);
            }

            q->conn = NULL;
            ngx_http_quay_db_conn_ready(conn);
            ngx_http_quay_db_query_finish(q, NGX_ERROR,
                                          "statement could not be prepared");
            return;
        }

        PQclear(res);
        conn->prepared[q->stmt / 8] |= (u_char) (1 << (q->stmt % 8));
        ngx_http_quay_db_conn_send(conn);
        return;
    }

    q->conn = NULL;

    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        q->result = res;
        ngx_http_quay_db_conn_ready(conn);
        ngx_http_quay_db_query_finish(q, NGX_OK, NULL);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, conn->c->log, 0,
                  "quay: db: \"%s\" failed: %s",
                  quay_sql_stmt(q->stmt)->name,
                  res ? PQresultErrorMessage(res) : "no result");

    q->result = res;      /* keeps the SQLSTATE for the caller */
    ngx_http_quay_db_conn_ready(conn);
    ngx_http_quay_db_query_finish(q, NGX_ERROR, "query failed");
}


static void
ngx_http_quay_db_conn_idle_read(ngx_http_quay_db_conn_t *conn)
{
    PGnotify  *notify;
    PGresult  *res;

    if (!PQconsumeInput(conn->pg) || PQstatus(conn->pg) == CONNECTION_BAD) {
        ngx_log_error(NGX_LOG_WARN, conn->c->log, 0,
                      "quay: db: idle connection closed: %s",
                      PQerrorMessage(conn->pg));
        ngx_queue_remove(&conn->queue);
        ngx_http_quay_db_conn_close(conn);
        return;
    }

    while ((notify = PQnotifies(conn->pg)) != NULL) {
        PQfreemem(notify);
    }

    while (!PQisBusy(conn->pg)) {
        res = PQgetResult(conn->pg);
        if (res == NULL) {
            break;
        }
        PQclear(res);
    }
}


/*
 * Closes the connection on an error; its query (if any) and, while the
 * connection was still connecting, every waiting query, fail.
 */

static void
ngx_http_quay_db_conn_fail(ngx_http_quay_db_conn_t *conn, const char *why)
{
    ngx_uint_t                 connecting;
    ngx_http_quay_db_pool_t   *pool;
    ngx_http_quay_db_query_t  *q;

    pool = conn->pool;
    q = conn->query;
    connecting = (conn->state == NGX_HTTP_QUAY_DB_CONNECTING);

    ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                  "quay: db: \"%V\": %s", &pool->qmcf->db_display, why);

    if (conn->state == NGX_HTTP_QUAY_DB_IDLE) {
        ngx_queue_remove(&conn->queue);
    }

    ngx_http_quay_db_conn_close(conn);

    if (q != NULL) {
        q->conn = NULL;
        ngx_http_quay_db_query_finish(q, NGX_ERROR, "database unavailable");
    }

    if (connecting) {
        ngx_http_quay_db_fail_waiting(pool, "database unavailable");
    }
}


static void
ngx_http_quay_db_conn_close(ngx_http_quay_db_conn_t *conn)
{
    ngx_connection_t         *c;
    ngx_http_quay_db_pool_t  *pool;

    pool = conn->pool;
    c = conn->c;

    if (conn->state == NGX_HTTP_QUAY_DB_CONNECTING) {
        pool->nconnecting--;
    }

    pool->nconns--;

    /*
     * Not ngx_close_connection(): libpq owns the socket and PQfinish()
     * closes it (platform-notes, item 4).
     */

    ngx_http_quay_connection_forget(c);

    if (conn->result != NULL) {
        PQclear(conn->result);
    }

    PQfinish(conn->pg);
    ngx_free(conn);
}


/*
 * Completion is always delivered through a posted event, so a handler
 * never runs inside the caller of ngx_http_quay_db_query_run() and never
 * inside the libpq state machine that is still touching the connection.
 */

static void
ngx_http_quay_db_query_finish(ngx_http_quay_db_query_t *q, ngx_int_t rc,
    const char *error)
{
    q->rc = rc;
    q->error = error;
    q->running = 0;
    q->done = 1;

    if (rc != NGX_OK) {
        ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_DB_ERRORS);
    }

    if (q->wait_timer.timer_set) {
        ngx_del_timer(&q->wait_timer);
    }

    q->wait_timer.handler = ngx_http_quay_db_query_deferred;
    ngx_post_event(&q->wait_timer, &ngx_posted_events);
}


static void
ngx_http_quay_db_query_deferred(ngx_event_t *ev)
{
    ngx_http_quay_db_query_t  *q;

    q = ev->data;
    q->handler(q);
}


static void
ngx_http_quay_db_wait_timeout(ngx_event_t *ev)
{
    ngx_http_quay_db_query_t  *q;

    q = ev->data;

    ngx_log_error(NGX_LOG_ERR, q->log, 0,
                  "quay: db: timed out waiting for a free connection");

    ngx_queue_remove(&q->queue);
    q->db->nwaiting--;
    q->queued = 0;
    q->conn = NULL;

    q->rc = NGX_ERROR;
    q->error = "timed out waiting for a database connection";
    q->done = 1;

    /* this is already an event handler: call directly */

    q->handler(q);
}


static void
ngx_http_quay_db_fail_waiting(ngx_http_quay_db_pool_t *pool,
    const char *why)
{
    ngx_queue_t               *qu;
    ngx_http_quay_db_query_t  *q;

    /* queries still waiting while other connections are being opened
     * will be served by those */

    while (!ngx_queue_empty(&pool->waiting)
           && pool->nwaiting > pool->nconnecting)
    {
        qu = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(qu);
        pool->nwaiting--;

        q = ngx_queue_data(qu, ngx_http_quay_db_query_t, queue);
        q->queued = 0;

        ngx_http_quay_db_query_finish(q, NGX_ERROR, why);
    }
}


static void
ngx_http_quay_db_query_cleanup(void *data)
{
    ngx_http_quay_db_query_t  *q = data;

    ngx_http_quay_db_conn_t  *conn;

    if (q->queued) {
        ngx_queue_remove(&q->queue);
        q->db->nwaiting--;
        q->queued = 0;
    }

    if (q->wait_timer.timer_set) {
        ngx_del_timer(&q->wait_timer);
    }

    if (q->wait_timer.posted) {
        ngx_delete_posted_event(&q->wait_timer);
    }

    conn = q->conn;

    if (q->running && conn != NULL) {
        /* no nonblocking cancel in libpq 15: drop the connection */
        conn->query = NULL;
        q->conn = NULL;
        ngx_http_quay_db_conn_close(conn);
    }

    if (q->result != NULL) {
        PQclear(q->result);
        q->result = NULL;
    }
}
