/*
 * /health/instance and /health/endtoend, in Quay's JSON shape
 * (quay-behaviour §12):
 *
 *   {"data":{"services":{"database":true,...}},"status_code":200}
 *
 * instance checks what this node needs to serve: the database (Quay's
 * global "database" check, which reads teamrole).  endtoend adds Redis
 * (PING, after AUTH) and storage: every location of
 * DISTRIBUTED_STORAGE_CONFIG is checked, a LocalStorage location by
 * writing, reading back and deleting a probe file, an S3 or RadosGW
 * location by a HEAD of its bucket (signed, through the /_quay_s3/
 * location, so credentials and reachability are both checked).  storage
 * is true only when every location passes; a failing one is logged by
 * name.  Any false service makes the answer 503, so the failing service
 * is named in the body.
 *
 * The checks run concurrently and asynchronously: the database through the
 * nonblocking pool, Redis through the hiredis adapter, the filesystem
 * probes in the thread pool (file I/O never runs on the event loop), the
 * S3 checks one after the other as subrequests.  The request holds one
 * reference (r->main->count) from the first asynchronous check until the
 * answer is sent, and r->main->blocked while a thread task is out, so the
 * request cannot be freed under the task.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include "ngx_http_quay_module.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_redis.h"
#include "ngx_http_quay_storage.h"


#define NGX_HTTP_QUAY_HEALTH_UNKNOWN  -1


typedef struct {
    ngx_http_request_t          *r;
    ngx_uint_t                   pending;
    ngx_int_t                    database;
    ngx_int_t                    redis;
    ngx_int_t                    storage;
    ngx_http_quay_redis_cmd_t   *redis_cmd;
    const quay_config_t         *config;
    size_t                       s3_next;    /* next location to check */
    ngx_http_quay_storage_op_t   s3_op;
    unsigned                     endtoend:1;
    unsigned                     async:1;
} ngx_http_quay_health_ctx_t;


typedef struct {
    ngx_http_quay_health_ctx_t  *ctx;
    const char                  *name;       /* the location */
    char                        *dir;        /* r->pool, NUL-terminated */
    ngx_uint_t                   ok;
    int                          err;
    const char                  *step;
} ngx_http_quay_health_probe_t;


static ngx_int_t ngx_http_quay_health_run(ngx_http_request_t *r,
    ngx_uint_t endtoend);
static void ngx_http_quay_health_start_database(
    ngx_http_quay_health_ctx_t *ctx, ngx_http_quay_main_conf_t *qmcf);
static void ngx_http_quay_health_database_done(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_health_start_redis(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf);
static void ngx_http_quay_health_redis_done(void *data, redisReply *reply);
static void ngx_http_quay_health_redis_cleanup(void *data);
static void ngx_http_quay_health_start_storage(
    ngx_http_quay_health_ctx_t *ctx, ngx_http_quay_main_conf_t *qmcf);
static void ngx_http_quay_health_start_probe(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf, const quay_storage_location_t *loc);
static ngx_uint_t ngx_http_quay_health_next_s3(
    ngx_http_quay_health_ctx_t *ctx);
static void ngx_http_quay_health_s3_done(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_health_probe_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_health_probe_done(ngx_event_t *ev);
static void ngx_http_quay_health_check_done(ngx_http_quay_health_ctx_t *ctx);
static ngx_int_t ngx_http_quay_health_send(ngx_http_quay_health_ctx_t *ctx);


ngx_int_t
ngx_http_quay_health_instance(ngx_http_request_t *r)
{
    return ngx_http_quay_health_run(r, 0);
}


ngx_int_t
ngx_http_quay_health_endtoend(ngx_http_request_t *r)
{
    return ngx_http_quay_health_run(r, 1);
}


static ngx_int_t
ngx_http_quay_health_run(ngx_http_request_t *r, ngx_uint_t endtoend)
{
    ngx_int_t                    rc;
    ngx_http_quay_health_ctx_t  *ctx;
    ngx_http_quay_main_conf_t   *qmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_health_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->r = r;
    ctx->endtoend = endtoend;
    ctx->database = NGX_HTTP_QUAY_HEALTH_UNKNOWN;
    ctx->redis = NGX_HTTP_QUAY_HEALTH_UNKNOWN;
    ctx->storage = NGX_HTTP_QUAY_HEALTH_UNKNOWN;

    /*
     * pending counts the checks in flight plus one for this function, so
     * that a check finishing early cannot send the answer while others
     * are still being started.
     */

    ctx->pending = 1;

    ngx_http_quay_health_start_database(ctx, qmcf);

    if (endtoend) {
        ngx_http_quay_health_start_redis(ctx, qmcf);
        ngx_http_quay_health_start_storage(ctx, qmcf);
    }

    ctx->pending--;

    if (ctx->pending == 0) {
        return ngx_http_quay_health_send(ctx);
    }

    /* one reference until ngx_http_quay_health_check_done() finalizes */

    ctx->async = 1;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_health_start_database(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf)
{
    ngx_http_request_t        *r;
    ngx_http_quay_db_query_t  *q;

    r = ctx->r;

    q = ngx_http_quay_db_query_create(r->pool, r->connection->log,
                                      QUAY_SQL_HEALTH_DATABASE);
    if (q == NULL) {
        ctx->database = 0;
        return;
    }

    q->handler = ngx_http_quay_health_database_done;
    q->data = ctx;

    if (ngx_http_quay_db_query_run(qmcf, q) != NGX_AGAIN) {
        ctx->database = 0;
        return;
    }

    ctx->pending++;
}


static void
ngx_http_quay_health_database_done(ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_health_ctx_t  *ctx = q->data;

    ctx->database = (q->rc == NGX_OK && ngx_http_quay_db_ntuples(q) == 1);

    ngx_http_quay_health_check_done(ctx);
}


static void
ngx_http_quay_health_start_redis(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf)
{
    ngx_pool_cleanup_t  *cln;

    static const char   *argv[] = { "PING" };
    static const size_t  argvlen[] = { 4 };

    cln = ngx_pool_cleanup_add(ctx->r->pool, 0);
    if (cln == NULL) {
        ctx->redis = 0;
        return;
    }

    ctx->redis_cmd = ngx_http_quay_redis_command(qmcf,
                                      ngx_http_quay_health_redis_done, ctx,
                                      1, argv, argvlen);
    if (ctx->redis_cmd == NULL) {
        ctx->redis = 0;
        return;
    }

    cln->handler = ngx_http_quay_health_redis_cleanup;
    cln->data = ctx;

    ctx->pending++;
}


static void
ngx_http_quay_health_redis_done(void *data, redisReply *reply)
{
    ngx_http_quay_health_ctx_t  *ctx = data;

    ctx->redis_cmd = NULL;
    ctx->redis = (reply != NULL && reply->type == REDIS_REPLY_STATUS
                  && reply->len == 4
                  && ngx_strncmp(reply->str, "PONG", 4) == 0);

    ngx_http_quay_health_check_done(ctx);
}


static void
ngx_http_quay_health_redis_cleanup(void *data)
{
    ngx_http_quay_health_ctx_t  *ctx = data;

    if (ctx->redis_cmd != NULL) {
        ngx_http_quay_redis_cancel(ctx->redis_cmd);
        ctx->redis_cmd = NULL;
    }
}


static void
ngx_http_quay_health_start_storage(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf)
{
    size_t                          i;
    const quay_storage_location_t  *loc;

    ctx->config = qmcf->config;

    if (ctx->config->nstorage == 0) {
        ctx->storage = 0;
        return;
    }

    ctx->storage = 1;

    for (i = 0; i < ctx->config->nstorage; i++) {
        loc = &ctx->config->storage[i];

        if (loc->driver == QUAY_STORAGE_LOCAL) {
            ngx_http_quay_health_start_probe(ctx, qmcf, loc);
        }
    }

    /* the S3 checks are subrequests of this request: one at a time,
     * counted as one pending check */

    ctx->s3_op.r = ctx->r;
    ctx->s3_op.handler = ngx_http_quay_health_s3_done;
    ctx->s3_op.data = ctx;
    ctx->s3_next = 0;

    if (ngx_http_quay_health_next_s3(ctx)) {
        ctx->pending++;
    }
}


/* Starts the next S3 check; 0 when there is none left. */

static ngx_uint_t
ngx_http_quay_health_next_s3(ngx_http_quay_health_ctx_t *ctx)
{
    const quay_storage_location_t  *loc;

    while (ctx->s3_next < ctx->config->nstorage) {
        loc = &ctx->config->storage[ctx->s3_next++];

        if (loc->driver != QUAY_STORAGE_S3
            && loc->driver != QUAY_STORAGE_RADOSGW)
        {
            continue;
        }

        if (ngx_http_quay_storage_s3_check(ctx->r, loc, &ctx->s3_op)
            == NGX_AGAIN)
        {
            return 1;
        }

        ctx->storage = 0;
    }

    return 0;
}


static void
ngx_http_quay_health_s3_done(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_health_ctx_t  *ctx = op->data;

    /* a failure was logged with the location's name */

    if (op->rc != NGX_OK) {
        ctx->storage = 0;
    }

    if (ngx_http_quay_health_next_s3(ctx)) {
        return;
    }

    ngx_http_quay_health_check_done(ctx);
}


static void
ngx_http_quay_health_start_probe(ngx_http_quay_health_ctx_t *ctx,
    ngx_http_quay_main_conf_t *qmcf, const quay_storage_location_t *loc)
{
    size_t                          len;
    ngx_http_request_t             *r;
    ngx_thread_task_t              *task;
    ngx_http_quay_health_probe_t   *probe;

    r = ctx->r;

    if (qmcf->thread_pool == NULL) {
        ctx->storage = 0;
        return;
    }

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_http_quay_health_probe_t));
    if (task == NULL) {
        ctx->storage = 0;
        return;
    }

    probe = task->ctx;
    probe->ctx = ctx;
    probe->name = loc->name;

    len = ngx_strlen(loc->storage_path);
    probe->dir = ngx_pnalloc(r->pool, len + 1);
    if (probe->dir == NULL) {
        ctx->storage = 0;
        return;
    }

    ngx_memcpy(probe->dir, loc->storage_path, len + 1);

    task->handler = ngx_http_quay_health_probe_thread;
    task->event.handler = ngx_http_quay_health_probe_done;
    task->event.data = probe;

    if (ngx_thread_task_post(qmcf->thread_pool, task) != NGX_OK) {
        ctx->storage = 0;
        return;
    }

    /* keeps the request, and so task->ctx, alive until the task is back */

    r->main->blocked++;
    ctx->pending++;
}


/*
 * Runs in a thread: only file system calls on task data, no pool, no log
 * writes through nginx, no events.
 */

static void
ngx_http_quay_health_probe_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_health_probe_t  *probe = data;

    int      fd;
    char     path[4096];
    char     buf[sizeof("testing 123")];
    ssize_t  n;

    static const char  content[] = "testing 123";

    probe->ok = 0;

    /* unique per worker process and request: nodes share storage */

    if ((size_t) snprintf(path, sizeof(path), "%s/_verify.%d.%p",
                          probe->dir, (int) getpid(), (void *) probe)
        >= sizeof(path))
    {
        probe->step = "path too long";
        probe->err = ENAMETOOLONG;
        return;
    }

    probe->step = "write";

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd == -1) {
        probe->err = errno;
        return;
    }

    n = write(fd, content, sizeof(content) - 1);
    if (n != (ssize_t) sizeof(content) - 1) {
        probe->err = (n == -1) ? errno : EIO;
        (void) close(fd);
        (void) unlink(path);
        return;
    }

    if (close(fd) == -1) {
        probe->err = errno;
        (void) unlink(path);
        return;
    }

    probe->step = "read";

    fd = open(path, O_RDONLY);
    if (fd == -1) {
        probe->err = errno;
        (void) unlink(path);
        return;
    }

    n = read(fd, buf, sizeof(buf));
    (void) close(fd);

    if (n != (ssize_t) sizeof(content) - 1
        || memcmp(buf, content, sizeof(content) - 1) != 0)
    {
        probe->err = (n == -1) ? errno : EIO;
        (void) unlink(path);
        return;
    }

    probe->step = "delete";

    if (unlink(path) == -1) {
        probe->err = errno;
        return;
    }

    probe->ok = 1;
}


static void
ngx_http_quay_health_probe_done(ngx_event_t *ev)
{
    ngx_http_quay_health_ctx_t    *ctx;
    ngx_http_quay_health_probe_t  *probe;

    probe = ev->data;
    ctx = probe->ctx;

    ctx->r->main->blocked--;

    if (!probe->ok) {
        ctx->storage = 0;

        ngx_log_error(NGX_LOG_ERR, ctx->r->connection->log, probe->err,
                      "quay: storage probe failed to %s in \"%s\" "
                      "(location \"%s\")", probe->step, probe->dir,
                      probe->name);
    }

    ngx_http_quay_health_check_done(ctx);
}


static void
ngx_http_quay_health_check_done(ngx_http_quay_health_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (--ctx->pending != 0 || !ctx->async) {
        return;
    }

    r = ctx->r;
    c = r->connection;

    ngx_http_finalize_request(r, ngx_http_quay_health_send(ctx));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_quay_health_send(ngx_http_quay_health_ctx_t *ctx)
{
    u_char      *body, *p;
    size_t       len;
    ngx_uint_t   ok, status;

    static const char  *names[] = { "database", "redis", "storage" };

    ngx_int_t    values[3];
    ngx_uint_t   i, n;

    values[0] = ctx->database;
    values[1] = ctx->redis;
    values[2] = ctx->storage;
    n = ctx->endtoend ? 3 : 1;

    ok = 1;
    for (i = 0; i < n; i++) {
        if (values[i] != 1) {
            ok = 0;
        }
    }

    status = ok ? NGX_HTTP_OK : NGX_HTTP_SERVICE_UNAVAILABLE;

    len = sizeof("{\"data\":{\"services\":{}},\"status_code\":000}")
          + n * sizeof("\"storage\":false,");

    body = ngx_pnalloc(ctx->r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"data\":{\"services\":{",
                   sizeof("{\"data\":{\"services\":{") - 1);

    for (i = 0; i < n; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%s", i ? "," : "", names[i],
                        values[i] == 1 ? "true" : "false");
    }

    p = ngx_sprintf(p, "}},\"status_code\":%ui}", status);

    return ngx_http_quay_send_json(ctx->r, status, body, p - body);
}
