/*
 * Login throttling for /v2/auth (issue #4).
 *
 * DESIGN.  Failed logins are counted in Redis per user AND client address
 * (key "quay:loginfail:<user>:<addr>", INCR then EXPIRE), so repeated
 * guesses from one address are slowed down while the real user, from
 * another address, is never locked out by an attacker.  At
 * NGX_HTTP_QUAY_THROTTLE_LIMIT failures the address gets 429 with
 * Retry-After (the key's TTL) for that user, and the password is not even
 * checked (no CPU is spent on PBKDF2).  A success deletes the key.
 *
 * Redis down fails OPEN: logins keep working without throttling, and the
 * outage is logged (README, "Login throttling").  A login service that
 * locks every user out because a cache is down would be worse than a
 * window without rate limiting; PBKDF2 still costs each guess ~35 ms.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_throttle.h"
#include "ngx_http_quay_redis.h"


typedef struct {
    ngx_http_request_t                *r;
    ngx_str_t                          key;
    ngx_http_quay_throttle_done_pt     done;
    void                              *data;
    ngx_http_quay_redis_cmd_t         *cmd;      /* in flight, or NULL */
} ngx_http_quay_throttle_t;


static ngx_int_t ngx_http_quay_throttle_key(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t *key);
static ngx_int_t ngx_http_quay_throttle_start(ngx_http_request_t *r,
    ngx_str_t *user, ngx_http_quay_throttle_done_pt done, void *data,
    const char *cmd, const char *arg, ngx_http_quay_redis_done_pt reply);
static ngx_int_t ngx_http_quay_throttle_command(ngx_http_quay_throttle_t *th,
    const char *cmd, const char *arg, ngx_http_quay_redis_done_pt reply);
static void ngx_http_quay_throttle_get_done(void *data, redisReply *reply);
static void ngx_http_quay_throttle_ttl_done(void *data, redisReply *reply);
static void ngx_http_quay_throttle_counted(void *data, redisReply *reply);
static void ngx_http_quay_throttle_cleanup(void *data);
static void ngx_http_quay_throttle_ignore(void *data, redisReply *reply);
static void ngx_http_quay_throttle_send(ngx_http_request_t *r,
    const char *cmd, ngx_str_t *key, const char *arg);


ngx_int_t
ngx_http_quay_throttle_check(ngx_http_request_t *r, ngx_str_t *user,
    ngx_http_quay_throttle_done_pt done, void *data)
{
    return ngx_http_quay_throttle_start(r, user, done, data, "GET", NULL,
                                        ngx_http_quay_throttle_get_done);
}


/*
 * Sends "cmd key [arg]" for a request and calls reply(th, ...) with the
 * answer; the request's pool cleanup cancels the wait.  NGX_AGAIN, or
 * NGX_DECLINED when Redis is not there (nothing will be called).
 */

static ngx_int_t
ngx_http_quay_throttle_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_http_quay_throttle_done_pt done, void *data, const char *cmd,
    const char *arg, ngx_http_quay_redis_done_pt reply)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_quay_throttle_t  *th;

    th = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_throttle_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (th == NULL || cln == NULL
        || ngx_http_quay_throttle_key(r, user, &th->key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    th->r = r;
    th->done = done;
    th->data = data;

    if (ngx_http_quay_throttle_command(th, cmd, arg, reply) != NGX_OK) {
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_quay_throttle_cleanup;
    cln->data = th;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_quay_throttle_command(ngx_http_quay_throttle_t *th, const char *cmd,
    const char *arg, ngx_http_quay_redis_done_pt reply)
{
    int                         argc;
    const char                 *argv[3];
    size_t                      argvlen[3];
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(th->r, ngx_http_quay_module);

    argv[0] = cmd;
    argvlen[0] = ngx_strlen(cmd);
    argv[1] = (char *) th->key.data;
    argvlen[1] = th->key.len;
    argc = 2;

    if (arg != NULL) {
        argv[2] = arg;
        argvlen[2] = ngx_strlen(arg);
        argc = 3;
    }

    th->cmd = ngx_http_quay_redis_command(qmcf, reply, th, argc, argv,
                                          argvlen);

    return th->cmd ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_quay_throttle_get_done(void *data, redisReply *reply)
{
    ngx_http_quay_throttle_t  *th = data;

    ngx_int_t  n;

    th->cmd = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, th->r->connection->log, 0,
                      "quay: login throttling is off: Redis unavailable");
        th->done(th->data, 0);
        return;
    }

    n = (reply->type == REDIS_REPLY_STRING)
        ? ngx_atoi((u_char *) reply->str, reply->len) : 0;

    if (n < NGX_HTTP_QUAY_THROTTLE_LIMIT) {
        th->done(th->data, 0);
        return;
    }

    if (ngx_http_quay_throttle_command(th, "TTL", NULL,
                                       ngx_http_quay_throttle_ttl_done)
        != NGX_OK)
    {
        th->done(th->data, NGX_HTTP_QUAY_THROTTLE_WINDOW);
    }
}


static void
ngx_http_quay_throttle_ttl_done(void *data, redisReply *reply)
{
    ngx_http_quay_throttle_t  *th = data;

    ngx_int_t  ttl;

    th->cmd = NULL;

    ttl = (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
          ? (ngx_int_t) reply->integer : NGX_HTTP_QUAY_THROTTLE_WINDOW;

    if (ttl < 1) {
        ttl = 1;
    }

    th->done(th->data, ttl);
}


ngx_int_t
ngx_http_quay_throttle_failed(ngx_http_request_t *r, ngx_str_t *user,
    ngx_http_quay_throttle_done_pt done, void *data)
{
    ngx_str_t  key;

    if (ngx_http_quay_throttle_key(r, user, &key) != NGX_OK) {
        return NGX_DECLINED;
    }

    /*
     * The answer waits for the count: the client's next try may reach
     * another nginx worker, with its own Redis connection, and must see
     * this failure.  Redis answers in order, so the EXPIRE's reply means
     * the INCR is done.  The window restarts with each failure.
     */

    ngx_http_quay_throttle_send(r, "INCR", &key, NULL);

    return ngx_http_quay_throttle_start(r, user, done, data, "EXPIRE",
                                        NGX_HTTP_QUAY_THROTTLE_WINDOW_TEXT,
                                        ngx_http_quay_throttle_counted);
}


static void
ngx_http_quay_throttle_counted(void *data, redisReply *reply)
{
    ngx_http_quay_throttle_t  *th = data;

    th->cmd = NULL;
    th->done(th->data, 0);
}


void
ngx_http_quay_throttle_succeeded(ngx_http_request_t *r, ngx_str_t *user)
{
    ngx_str_t  key;

    if (ngx_http_quay_throttle_key(r, user, &key) != NGX_OK) {
        return;
    }

    ngx_http_quay_throttle_send(r, "DEL", &key, NULL);
}


/* Fire and forget: the reply is not waited for and may never come. */

static void
ngx_http_quay_throttle_send(ngx_http_request_t *r, const char *cmd,
    ngx_str_t *key, const char *arg)
{
    int                         argc;
    const char                 *argv[3];
    size_t                      argvlen[3];
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    argv[0] = cmd;
    argvlen[0] = ngx_strlen(cmd);
    argv[1] = (char *) key->data;
    argvlen[1] = key->len;
    argc = 2;

    if (arg != NULL) {
        argv[2] = arg;
        argvlen[2] = ngx_strlen(arg);
        argc = 3;
    }

    (void) ngx_http_quay_redis_command(qmcf, ngx_http_quay_throttle_ignore,
                                       NULL, argc, argv, argvlen);
}


static void
ngx_http_quay_throttle_ignore(void *data, redisReply *reply)
{
}


static ngx_int_t
ngx_http_quay_throttle_key(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *key)
{
    u_char     *p;
    ngx_str_t  *addr;

    addr = &r->connection->addr_text;

    key->len = sizeof("quay:loginfail::") - 1 + user->len + addr->len;
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(key->data, "quay:loginfail:%V:%V", user, addr);
    key->len = p - key->data;

    return NGX_OK;
}


static void
ngx_http_quay_throttle_cleanup(void *data)
{
    ngx_http_quay_throttle_t  *th = data;

    if (th->cmd != NULL) {
        ngx_http_quay_redis_cancel(th->cmd);
        th->cmd = NULL;
    }
}
