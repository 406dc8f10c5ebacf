/*
 * Audit log rows (issue #4: logins, pushes, pulls, deletes), batched.
 *
 * DESIGN.  Every manifest GET writes a pull_repo row, as Quay does; one
 * INSERT per pull would cost a database round trip, a commit and a
 * connection for each pull, more than the pull itself once the shared
 * cache answers it.  So each nginx worker appends rows to a batch in
 * worker memory (its own pool; the values are copied at once, with the
 * time of the event), and sends the batch as ONE statement
 * (QUAY_SQL_AUDIT_INSERT_BATCH: parallel arrays, unnest) when it holds
 * NGX_HTTP_QUAY_AUDIT_BATCH rows or NGX_HTTP_QUAY_AUDIT_DELAY ms after its
 * first row, whichever comes first.  Any other kind (login, push, delete:
 * rare, and expected in the log right after the answer) sends the batch
 * at once, itself last, so the log keeps the order of events.  The rows
 * keep Quay's columns, and their datetime is when the event happened, not
 * when the batch went.
 *
 * The answer never waits for its row.  The batch's pool owns the rows and
 * the query, and is destroyed when the insert completes; a batch being
 * sent does not stop the next one from filling.  The flush timer is not
 * cancelable, so a worker that exits gracefully (reload, quit) sends its
 * last batch first; only a crash or a fast shutdown loses rows, which
 * exit_process counts in the log.  A batch refused for a bad value (class
 * 22) is sent again row by row, so that one bad row does not take its
 * neighbours with it; any other failure is a WARN, never a failed request.
 * /metrics counts rows, batches and dropped rows.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_metrics.h"


#define NGX_HTTP_QUAY_AUDIT_BATCH   256
#define NGX_HTTP_QUAY_AUDIT_DELAY   100
#define NGX_HTTP_QUAY_AUDIT_FIELDS  7


/* one row; every field is text in the batch's pool, empty for SQL NULL */
typedef struct {
    ngx_str_t                   field[NGX_HTTP_QUAY_AUDIT_FIELDS];
} ngx_http_quay_audit_row_t;


typedef struct {
    ngx_pool_t                 *pool;        /* owns the batch, its rows
                                                and its query */
    ngx_array_t                 rows;        /* ngx_http_quay_audit_row_t */
} ngx_http_quay_audit_batch_t;


static ngx_int_t ngx_http_quay_audit_copy(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t *src);
static void ngx_http_quay_audit_timer(ngx_event_t *ev);
static void ngx_http_quay_audit_flush(void);
static u_char *ngx_http_quay_audit_array(ngx_http_quay_audit_batch_t *batch,
    ngx_uint_t field, size_t *len);
static void ngx_http_quay_audit_done(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_audit_one(ngx_http_quay_audit_row_t *row);
static void ngx_http_quay_audit_one_done(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_audit_dropped(ngx_uint_t n, const char *why);


/* per worker process */
static ngx_http_quay_main_conf_t    *ngx_http_quay_audit_qmcf;
static ngx_http_quay_audit_batch_t  *ngx_http_quay_audit_batch;
static ngx_event_t                   ngx_http_quay_audit_ev;


ngx_int_t
ngx_http_quay_audit_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle)
{
    ngx_http_quay_audit_qmcf = qmcf;
    ngx_http_quay_audit_batch = NULL;

    ngx_http_quay_audit_ev.handler = ngx_http_quay_audit_timer;
    ngx_http_quay_audit_ev.log = cycle->log;

    /* not cancelable: a graceful exit waits for the last batch */

    return NGX_OK;
}


void
ngx_http_quay_audit_exit_process(ngx_http_quay_main_conf_t *qmcf)
{
    ngx_http_quay_audit_batch_t  *batch;

    batch = ngx_http_quay_audit_batch;

    if (batch == NULL) {
        return;
    }

    /* no event loop any more: the rows cannot be sent */

    ngx_http_quay_audit_dropped(batch->rows.nelts, "the worker exited");

    ngx_destroy_pool(batch->pool);
    ngx_http_quay_audit_batch = NULL;
}


void
ngx_http_quay_audit(ngx_http_request_t *r, const char *kind,
    ngx_str_t *account_id, ngx_str_t *performer_id,
    ngx_str_t *repository_id, ngx_str_t *metadata)
{
    u_char                       *p;
    ngx_str_t                     s;
    ngx_pool_t                   *pool;
    ngx_time_t                   *tp;
    ngx_http_quay_audit_row_t    *row;
    ngx_http_quay_audit_batch_t  *batch;

    batch = ngx_http_quay_audit_batch;

    if (batch == NULL) {

        /* the connection's log outlives nothing: use the cycle's */

        pool = ngx_create_pool(16384, ngx_cycle->log);
        if (pool == NULL) {
            ngx_http_quay_audit_dropped(1, "out of memory");
            return;
        }

        batch = ngx_palloc(pool, sizeof(ngx_http_quay_audit_batch_t));

        if (batch == NULL
            || ngx_array_init(&batch->rows, pool, 64,
                              sizeof(ngx_http_quay_audit_row_t))
               != NGX_OK)
        {
            ngx_destroy_pool(pool);
            ngx_http_quay_audit_dropped(1, "out of memory");
            return;
        }

        batch->pool = pool;
        ngx_http_quay_audit_batch = batch;
    }

    row = ngx_array_push(&batch->rows);
    if (row == NULL) {
        ngx_http_quay_audit_dropped(1, "out of memory");
        return;
    }

    ngx_memzero(row, sizeof(ngx_http_quay_audit_row_t));

    s.data = (u_char *) kind;
    s.len = ngx_strlen(kind);

    p = ngx_pnalloc(batch->pool, NGX_INT64_LEN + 3);

    if (p == NULL
        || ngx_http_quay_audit_copy(batch->pool, &row->field[0], &s)
           != NGX_OK
        || ngx_http_quay_audit_copy(batch->pool, &row->field[1], account_id)
           != NGX_OK
        || ngx_http_quay_audit_copy(batch->pool, &row->field[2],
                                    performer_id)
           != NGX_OK
        || ngx_http_quay_audit_copy(batch->pool, &row->field[3],
                                    repository_id)
           != NGX_OK
        || ngx_http_quay_audit_copy(batch->pool, &row->field[4],
                                    &r->connection->addr_text)
           != NGX_OK
        || ngx_http_quay_audit_copy(batch->pool, &row->field[5], metadata)
           != NGX_OK)
    {
        batch->rows.nelts--;
        ngx_http_quay_audit_dropped(1, "out of memory");
        return;
    }

    tp = ngx_timeofday();

    row->field[6].data = p;
    row->field[6].len = ngx_sprintf(p, "%T%03M", tp->sec, tp->msec) - p;

    /* only pulls wait for company: a login, push or delete row goes at
     * once (with the pulls before it, in order), as rare as they are and
     * as readers of the log expect them right after the answer */

    if (batch->rows.nelts >= NGX_HTTP_QUAY_AUDIT_BATCH
        || ngx_strcmp(kind, "pull_repo") != 0)
    {
        ngx_http_quay_audit_flush();
        return;
    }

    if (!ngx_http_quay_audit_ev.timer_set) {
        ngx_add_timer(&ngx_http_quay_audit_ev, NGX_HTTP_QUAY_AUDIT_DELAY);
    }
}


static ngx_int_t
ngx_http_quay_audit_copy(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
{
    if (src == NULL || src->len == 0) {
        /* SQL NULL */
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
}


static void
ngx_http_quay_audit_timer(ngx_event_t *ev)
{
    ngx_http_quay_audit_flush();
}


/* Sends the filling batch as one statement; a new batch starts empty. */

static void
ngx_http_quay_audit_flush(void)
{
    u_char                       *p;
    size_t                        len;
    ngx_uint_t                    i;
    ngx_http_quay_db_query_t     *q;
    ngx_http_quay_audit_batch_t  *batch;

    batch = ngx_http_quay_audit_batch;
    ngx_http_quay_audit_batch = NULL;

    if (ngx_http_quay_audit_ev.timer_set) {
        ngx_del_timer(&ngx_http_quay_audit_ev);
    }

    if (batch == NULL) {
        return;
    }

    q = ngx_http_quay_db_query_create(batch->pool, ngx_cycle->log,
                                      QUAY_SQL_AUDIT_INSERT_BATCH);
    if (q == NULL) {
        goto failed;
    }

    for (i = 0; i < NGX_HTTP_QUAY_AUDIT_FIELDS; i++) {
        p = ngx_http_quay_audit_array(batch, i, &len);
        if (p == NULL) {
            goto failed;
        }

        ngx_http_quay_db_param(q, i, p, len);
    }

    q->handler = ngx_http_quay_audit_done;
    q->data = batch;

    if (ngx_http_quay_db_query_run(ngx_http_quay_audit_qmcf, q)
        == NGX_AGAIN)
    {
        return;
    }

    ngx_http_quay_audit_dropped(batch->rows.nelts,
                                q->error ? q->error : "unknown error");
    ngx_destroy_pool(batch->pool);
    return;

failed:

    ngx_http_quay_audit_dropped(batch->rows.nelts, "out of memory");
    ngx_destroy_pool(batch->pool);
}


/*
 * A PostgreSQL array literal of one field of every row: each element
 * double-quoted with '"' and '\' escaped, NULL unquoted; in the batch's
 * pool.
 */

static u_char *
ngx_http_quay_audit_array(ngx_http_quay_audit_batch_t *batch,
    ngx_uint_t field, size_t *len)
{
    u_char                     *text, *p, *s, *last;
    size_t                      size;
    ngx_uint_t                  i;
    ngx_http_quay_audit_row_t  *rows;

    rows = batch->rows.elts;
    size = 2;

    for (i = 0; i < batch->rows.nelts; i++) {
        size += 3 + 2 * rows[i].field[field].len + sizeof("NULL");
    }

    text = ngx_pnalloc(batch->pool, size);
    if (text == NULL) {
        return NULL;
    }

    p = text;
    *p++ = '{';

    for (i = 0; i < batch->rows.nelts; i++) {

        if (i) {
            *p++ = ',';
        }

        if (rows[i].field[field].len == 0) {
            p = ngx_cpymem(p, "NULL", 4);
            continue;
        }

        *p++ = '"';

        s = rows[i].field[field].data;
        last = s + rows[i].field[field].len;

        while (s < last) {
            if (*s == '"' || *s == '\\') {
                *p++ = '\\';
            }

            *p++ = *s++;
        }

        *p++ = '"';
    }

    *p++ = '}';

    *len = p - text;

    return text;
}


static void
ngx_http_quay_audit_done(ngx_http_quay_db_query_t *q)
{
    char                         *state;
    ngx_uint_t                    i;
    ngx_http_quay_audit_row_t    *rows;
    ngx_http_quay_audit_batch_t  *batch;

    batch = q->data;

    if (q->rc == NGX_OK) {
        ngx_http_quay_metrics_add(NGX_HTTP_QUAY_METRIC_AUDIT_ROWS,
                                  batch->rows.nelts);
        ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_AUDIT_BATCHES);
        ngx_destroy_pool(batch->pool);
        return;
    }

    state = q->result ? PQresultErrorField(q->result, PG_DIAG_SQLSTATE)
                      : NULL;

    if (state != NULL && ngx_strncmp(state, "22", 2) == 0) {

        /* a bad value in some row: the others go one by one */

        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "quay: audit log batch of %ui rows refused (%s), "
                      "sending them one by one", batch->rows.nelts,
                      q->error);

        rows = batch->rows.elts;

        for (i = 0; i < batch->rows.nelts; i++) {
            ngx_http_quay_audit_one(&rows[i]);
        }

    } else {
        ngx_http_quay_audit_dropped(batch->rows.nelts, q->error);
    }

    ngx_destroy_pool(batch->pool);
}


/* One row with QUAY_SQL_AUDIT_INSERT, in a pool of its own. */

static void
ngx_http_quay_audit_one(ngx_http_quay_audit_row_t *row)
{
    ngx_str_t                  value;
    ngx_uint_t                 i;
    ngx_pool_t                *pool;
    ngx_http_quay_db_query_t  *q;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        ngx_http_quay_audit_dropped(1, "out of memory");
        return;
    }

    q = ngx_http_quay_db_query_create(pool, ngx_cycle->log,
                                      QUAY_SQL_AUDIT_INSERT);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        ngx_http_quay_audit_dropped(1, "out of memory");
        return;
    }

    /* the same fields but the time, which is the insert's; the values
     * are copied, the batch's pool goes first */

    for (i = 0; i < NGX_HTTP_QUAY_AUDIT_FIELDS - 1; i++) {
        if (row->field[i].len == 0) {
            continue;
        }

        if (ngx_http_quay_audit_copy(pool, &value, &row->field[i])
            != NGX_OK)
        {
            ngx_destroy_pool(pool);
            ngx_http_quay_audit_dropped(1, "out of memory");
            return;
        }

        ngx_http_quay_db_param(q, i, value.data, value.len);
    }

    q->handler = ngx_http_quay_audit_one_done;
    q->data = pool;

    if (ngx_http_quay_db_query_run(ngx_http_quay_audit_qmcf, q)
        != NGX_AGAIN)
    {
        ngx_http_quay_audit_dropped(1, q->error ? q->error
                                                : "unknown error");
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_quay_audit_one_done(ngx_http_quay_db_query_t *q)
{
    if (q->rc != NGX_OK) {
        ngx_http_quay_audit_dropped(1, q->error);

    } else {
        ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_AUDIT_ROWS);
    }

    ngx_destroy_pool(q->data);
}


static void
ngx_http_quay_audit_dropped(ngx_uint_t n, const char *why)
{
    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "quay: %ui audit log row(s) not written: %s", n,
                  why ? why : "unknown error");

    ngx_http_quay_metrics_add(NGX_HTTP_QUAY_METRIC_AUDIT_DROPPED, n);
}
