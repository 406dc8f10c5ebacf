/*
 * Redis on nginx's event loop.
 *
 * DESIGN.  hiredis 0.14 (Debian 12) has no nginx adapter, so this file is
 * one: the five hooks of redisAsyncContext.ev (addRead, delRead, addWrite,
 * delWrite, cleanup) map onto level-triggered nginx events on an
 * ngx_connection_t that wraps hiredis' socket.  Level-triggered because
 * hiredis reads once per callback; with edge-triggered epoll a reply left
 * in the kernel buffer would never be read.
 *
 * Each worker keeps one connection, opened on first use to the address
 * that quay_config resolved at configuration time (redisAsyncConnect is
 * given an IP, so it never resolves a name), and reopened on the next
 * command after it drops.  With a password, AUTH is pipelined first.
 *
 * A command is tracked by a small malloc'ed struct that hiredis hands back
 * to our reply callback, which always runs eventually (with a NULL reply
 * when the connection goes away).  The struct outlives the request that
 * asked: a timeout or a cancel only marks it done, so the handler is called
 * at most once and never after its request is gone; the reply callback
 * frees it.  A timeout also drops the connection, since a Redis that does
 * not answer one command will not answer the next.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/async.h>

#include "ngx_http_quay_redis.h"


struct ngx_http_quay_redis_s {
    ngx_http_quay_main_conf_t     *qmcf;
    ngx_log_t                     *log;
    redisAsyncContext             *ac;       /* owned by hiredis once
                                                connected; NULL if none */
    ngx_connection_t              *c;        /* wraps ac->c.fd */
    char                           ip[NGX_SOCKADDR_STRLEN + 1];
    int                            port;
};


struct ngx_http_quay_redis_cmd_s {
    ngx_http_quay_redis_done_pt    handler;
    void                          *data;
    ngx_http_quay_redis_t         *redis;
    ngx_event_t                    timer;
    unsigned                       done:1;
};


static ngx_int_t ngx_http_quay_redis_connect(ngx_http_quay_redis_t *redis);
static void ngx_http_quay_redis_event_handler(ngx_event_t *ev);
static void ngx_http_quay_redis_add_read(void *privdata);
static void ngx_http_quay_redis_del_read(void *privdata);
static void ngx_http_quay_redis_add_write(void *privdata);
static void ngx_http_quay_redis_del_write(void *privdata);
static void ngx_http_quay_redis_cleanup(void *privdata);
static void ngx_http_quay_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quay_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quay_redis_auth_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_quay_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_quay_redis_timeout(ngx_event_t *ev);


ngx_int_t
ngx_http_quay_redis_init(ngx_http_quay_main_conf_t *qmcf, ngx_cycle_t *cycle)
{
    size_t                  len;
    ngx_http_quay_redis_t  *redis;

    if (qmcf->redis_addr == NULL) {
        return NGX_OK;
    }

    redis = ngx_pcalloc(cycle->pool, sizeof(ngx_http_quay_redis_t));
    if (redis == NULL) {
        return NGX_ERROR;
    }

    redis->qmcf = qmcf;
    redis->log = cycle->log;

    len = ngx_sock_ntop(qmcf->redis_addr->sockaddr,
                        qmcf->redis_addr->socklen, (u_char *) redis->ip,
                        NGX_SOCKADDR_STRLEN, 0);
    redis->ip[len] = '\0';
    redis->port = ngx_inet_get_port(qmcf->redis_addr->sockaddr);

    qmcf->redis = redis;

    return NGX_OK;
}


void
ngx_http_quay_redis_done(ngx_http_quay_main_conf_t *qmcf)
{
    ngx_http_quay_redis_t  *redis;

    redis = qmcf->redis;

    if (redis != NULL && redis->ac != NULL) {
        redisAsyncFree(redis->ac);
        redis->ac = NULL;
    }
}


ngx_http_quay_redis_cmd_t *
ngx_http_quay_redis_command(ngx_http_quay_main_conf_t *qmcf,
    ngx_http_quay_redis_done_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_quay_redis_t      *redis;
    ngx_http_quay_redis_cmd_t  *cmd;

    redis = qmcf->redis;

    if (redis == NULL) {
        return NULL;
    }

    if (redis->ac == NULL && ngx_http_quay_redis_connect(redis) != NGX_OK) {
        return NULL;
    }

    cmd = ngx_calloc(sizeof(ngx_http_quay_redis_cmd_t), redis->log);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->redis = redis;
    cmd->timer.handler = ngx_http_quay_redis_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = redis->log;

    if (redisAsyncCommandArgv(redis->ac, ngx_http_quay_redis_reply, cmd,
                              argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(cmd);
        return NULL;
    }

    ngx_add_timer(&cmd->timer, qmcf->redis_timeout);

    return cmd;
}


void
ngx_http_quay_redis_cancel(ngx_http_quay_redis_cmd_t *cmd)
{
    cmd->done = 1;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }
}


static ngx_int_t
ngx_http_quay_redis_connect(ngx_http_quay_redis_t *redis)
{
    const char         *password;
    redisAsyncContext  *ac;
    ngx_connection_t   *c;

    ac = redisAsyncConnect(redis->ip, redis->port);

    if (ac == NULL) {
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "quay: redis: cannot connect to %s:%d: %s",
                      redis->ip, redis->port, ac->errstr);
        redisAsyncFree(ac);
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, redis->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        return NGX_ERROR;
    }

    c->data = redis;
    c->read->handler = ngx_http_quay_redis_event_handler;
    c->write->handler = ngx_http_quay_redis_event_handler;
    c->read->log = redis->log;
    c->write->log = redis->log;

    redis->c = c;
    redis->ac = ac;

    ac->data = redis;
    ac->ev.data = redis;
    ac->ev.addRead = ngx_http_quay_redis_add_read;
    ac->ev.delRead = ngx_http_quay_redis_del_read;
    ac->ev.addWrite = ngx_http_quay_redis_add_write;
    ac->ev.delWrite = ngx_http_quay_redis_del_write;
    ac->ev.cleanup = ngx_http_quay_redis_cleanup;

    (void) redisAsyncSetConnectCallback(ac, ngx_http_quay_redis_on_connect);
    (void) redisAsyncSetDisconnectCallback(ac,
                                           ngx_http_quay_redis_on_disconnect);

    password = redis->qmcf->config->buildlogs_redis.password;

    if (password != NULL && password[0] != '\0') {
        if (redisAsyncCommand(ac, ngx_http_quay_redis_auth_reply, redis,
                              "AUTH %s", password)
            != REDIS_OK)
        {
            redisAsyncFree(ac);
            return NGX_ERROR;
        }
    }

    /* the connect completes when the socket becomes writable */

    ngx_http_quay_redis_add_write(redis);

    return NGX_OK;
}


static void
ngx_http_quay_redis_event_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_http_quay_redis_t  *redis;

    c = ev->data;
    redis = c->data;

    if (redis->ac == NULL) {
        return;
    }

    /* either call may free the context and, through cleanup, c */

    if (ev->write) {
        redisAsyncHandleWrite(redis->ac);

    } else {
        redisAsyncHandleRead(redis->ac);
    }
}


static void
ngx_http_quay_redis_add_read(void *privdata)
{
    ngx_http_quay_redis_t  *redis = privdata;

    if (redis->c != NULL && !redis->c->read->active) {
        (void) ngx_add_event(redis->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quay_redis_del_read(void *privdata)
{
    ngx_http_quay_redis_t  *redis = privdata;

    if (redis->c != NULL && redis->c->read->active) {
        (void) ngx_del_event(redis->c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_quay_redis_add_write(void *privdata)
{
    ngx_http_quay_redis_t  *redis = privdata;

    if (redis->c != NULL && !redis->c->write->active) {
        (void) ngx_add_event(redis->c->write, NGX_WRITE_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quay_redis_del_write(void *privdata)
{
    ngx_http_quay_redis_t  *redis = privdata;

    if (redis->c != NULL && redis->c->write->active) {
        (void) ngx_del_event(redis->c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis is about to close its socket: forget the wrapper, not the fd */

static void
ngx_http_quay_redis_cleanup(void *privdata)
{
    ngx_http_quay_redis_t  *redis = privdata;

    ngx_connection_t  *c;

    c = redis->c;

    if (c == NULL) {
        return;
    }

    ngx_http_quay_connection_forget(c);

    redis->c = NULL;
}


static void
ngx_http_quay_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_quay_redis_t  *redis = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "quay: redis: cannot connect to %s:%d: %s",
                      redis->ip, redis->port, ac->errstr);
        /* hiredis frees the context after this callback */
        redis->ac = NULL;
    }
}


static void
ngx_http_quay_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_quay_redis_t  *redis = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                      "quay: redis: connection to %s:%d lost: %s",
                      redis->ip, redis->port, ac->errstr);
    }

    redis->ac = NULL;
}


static void
ngx_http_quay_redis_auth_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply             *rr = reply;
    ngx_http_quay_redis_t  *redis = privdata;

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "quay: redis: AUTH failed: %*s",
                      (size_t) rr->len, rr->str);
    }
}


static void
ngx_http_quay_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_quay_redis_cmd_t  *cmd = privdata;

    if (!cmd->done) {
        cmd->done = 1;

        if (cmd->timer.timer_set) {
            ngx_del_timer(&cmd->timer);
        }

        cmd->handler(cmd->data, reply);
    }

    ngx_free(cmd);
}


static void
ngx_http_quay_redis_timeout(ngx_event_t *ev)
{
    ngx_http_quay_redis_cmd_t  *cmd = ev->data;

    ngx_http_quay_redis_t  *redis;

    redis = cmd->redis;

    ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                  "quay: redis: %s:%d timed out", redis->ip, redis->port);

    cmd->done = 1;
    cmd->handler(cmd->data, NULL);

    /* frees every pending command, this one included */

    if (redis->ac != NULL) {
        redisAsyncFree(redis->ac);
        redis->ac = NULL;
    }
}
