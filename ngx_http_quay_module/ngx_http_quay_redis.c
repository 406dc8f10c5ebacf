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
 *
 * A subscriber (ngx_http_quay_redis_subscribe, for the shared cache's
 * invalidations) needs a connection of its own, since a subscribed
 * connection takes no other commands.  It is opened from a timer, checked
 * again every NGX_HTTP_QUAY_REDIS_RETRY ms and reopened when it dropped;
 * while Redis stays down only the first failure is logged at ERR.  Its
 * handler sees every message, and a NULL message when a subscription that
 * had been lost (or never made) is in place again: the messages of the gap
 * are gone, and the subscriber must assume it missed some.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/async.h>

#include "ngx_http_quay_redis.h"


#define NGX_HTTP_QUAY_REDIS_RETRY  1000


struct ngx_http_quay_redis_s {
    ngx_http_quay_main_conf_t     *qmcf;
    ngx_log_t                     *log;
    redisAsyncContext             *ac;       /* owned by hiredis once
                                                connected; NULL if none */
    ngx_connection_t              *c;        /* wraps ac->c.fd */
    char                           ip[NGX_SOCKADDR_STRLEN + 1];
    int                            port;

    /* a subscriber's connection only */
    const char                    *channel;  /* static */
    ngx_http_quay_redis_message_pt message;
    void                          *data;
    ngx_event_t                    retry;
    ngx_uint_t                     failures; /* connects failed in a row */
    unsigned                       subscriber:1;
    unsigned                       subscribed:1;
    unsigned                       missed:1; /* not subscribed for a while
                                                since the process began */
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
static void ngx_http_quay_redis_address(ngx_http_quay_redis_t *redis,
    ngx_http_quay_main_conf_t *qmcf, ngx_cycle_t *cycle);
static ngx_uint_t ngx_http_quay_redis_level(ngx_http_quay_redis_t *redis);
static void ngx_http_quay_redis_retry(ngx_event_t *ev);
static void ngx_http_quay_redis_sub_reply(redisAsyncContext *ac,
    void *reply, void *privdata);


/* per process: the subscriber, if any */
static ngx_http_quay_redis_t  *ngx_http_quay_redis_sub;


ngx_int_t
ngx_http_quay_redis_init(ngx_http_quay_main_conf_t *qmcf, ngx_cycle_t *cycle)
{
    ngx_http_quay_redis_t  *redis;

    if (qmcf->redis_addr == NULL) {
        return NGX_OK;
    }

    redis = ngx_pcalloc(cycle->pool, sizeof(ngx_http_quay_redis_t));
    if (redis == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_redis_address(redis, qmcf, cycle);

    qmcf->redis = redis;

    return NGX_OK;
}


static void
ngx_http_quay_redis_address(ngx_http_quay_redis_t *redis,
    ngx_http_quay_main_conf_t *qmcf, ngx_cycle_t *cycle)
{
    size_t  len;

    redis->qmcf = qmcf;
    redis->log = cycle->log;

    len = ngx_sock_ntop(qmcf->redis_addr->sockaddr,
                        qmcf->redis_addr->socklen, (u_char *) redis->ip,
                        NGX_SOCKADDR_STRLEN, 0);
    redis->ip[len] = '\0';
    redis->port = ngx_inet_get_port(qmcf->redis_addr->sockaddr);
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

    redis = ngx_http_quay_redis_sub;

    if (redis != NULL) {
        if (redis->retry.timer_set) {
            ngx_del_timer(&redis->retry);
        }

        /* going away on purpose: no "subscription lost" warning */
        redis->subscribed = 0;

        if (redis->ac != NULL) {
            redisAsyncFree(redis->ac);
            redis->ac = NULL;
        }

        ngx_http_quay_redis_sub = NULL;
    }
}


ngx_int_t
ngx_http_quay_redis_subscribe(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle, const char *channel,
    ngx_http_quay_redis_message_pt handler, void *data)
{
    ngx_http_quay_redis_t  *sub;

    if (qmcf->redis_addr == NULL || ngx_http_quay_redis_sub != NULL) {
        return NGX_OK;
    }

    sub = ngx_pcalloc(cycle->pool, sizeof(ngx_http_quay_redis_t));
    if (sub == NULL) {
        return NGX_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     sub->ac = NULL;
     *     sub->c = NULL;
     *     sub->failures = 0;
     *     sub->subscribed = 0;
     *     sub->missed = 0;
     */

    ngx_http_quay_redis_address(sub, qmcf, cycle);

    sub->channel = channel;
    sub->message = handler;
    sub->data = data;
    sub->subscriber = 1;

    sub->retry.handler = ngx_http_quay_redis_retry;
    sub->retry.data = sub;
    sub->retry.log = cycle->log;

    /* the worker may exit while this timer is pending */
    sub->retry.cancelable = 1;

    ngx_http_quay_redis_sub = sub;

    /* connect from the event loop, not from init_process */
    ngx_add_timer(&sub->retry, 1);

    return NGX_OK;
}


static void
ngx_http_quay_redis_retry(ngx_event_t *ev)
{
    ngx_http_quay_redis_t  *sub = ev->data;

    if (sub->ac == NULL && !ngx_exiting && !ngx_terminate && !ngx_quit) {

        if (ngx_http_quay_redis_connect(sub) != NGX_OK) {
            sub->missed = 1;

        } else if (redisAsyncCommand(sub->ac, ngx_http_quay_redis_sub_reply,
                                     sub, "SUBSCRIBE %s", sub->channel)
                   != REDIS_OK)
        {
            /* not connected yet: no disconnect callback clears ac */
            redisAsyncFree(sub->ac);
            sub->ac = NULL;
            sub->missed = 1;
        }
    }

    ngx_add_timer(ev, NGX_HTTP_QUAY_REDIS_RETRY);
}


static void
ngx_http_quay_redis_sub_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply             *rr = reply;
    ngx_http_quay_redis_t  *sub = privdata;

    redisReply  *kind, *payload;

    if (rr == NULL) {

        /* the context is going away; the retry timer reconnects */

        if (sub->subscribed) {
            ngx_log_error(NGX_LOG_WARN, sub->log, 0,
                          "quay: redis: subscription to %s lost",
                          sub->channel);
        }

        sub->subscribed = 0;
        sub->missed = 1;
        return;
    }

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3) {
        return;
    }

    kind = rr->element[0];
    payload = rr->element[2];

    if (kind->type != REDIS_REPLY_STRING) {
        return;
    }

    if (kind->len == sizeof("subscribe") - 1
        && ngx_strncmp(kind->str, "subscribe", kind->len) == 0)
    {
        sub->subscribed = 1;
        sub->failures = 0;

        if (sub->missed) {
            sub->missed = 0;
            ngx_log_error(NGX_LOG_NOTICE, sub->log, 0,
                          "quay: redis: subscribed to %s again",
                          sub->channel);
            sub->message(sub->data, NULL, 0);
        }

        return;
    }

    if (kind->len == sizeof("message") - 1
        && ngx_strncmp(kind->str, "message", kind->len) == 0
        && payload->type == REDIS_REPLY_STRING)
    {
        sub->message(sub->data, (u_char *) payload->str,
                     (size_t) payload->len);
    }
}


/* A subscriber retries every second while Redis is down: ERR once. */

static ngx_uint_t
ngx_http_quay_redis_level(ngx_http_quay_redis_t *redis)
{
    if (redis->subscriber && redis->failures++ > 0) {
        return NGX_LOG_INFO;
    }

    return NGX_LOG_ERR;
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
        ngx_log_error(ngx_http_quay_redis_level(redis), redis->log, 0,
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
        ngx_log_error(ngx_http_quay_redis_level(redis), redis->log, 0,
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
