/*
 * Redis from nginx workers: hiredis' async API on nginx events.  See the
 * design paragraph in ngx_http_quay_redis.c.
 */

#ifndef NGX_HTTP_QUAY_REDIS_H
#define NGX_HTTP_QUAY_REDIS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>

#include "ngx_http_quay_module.h"


typedef struct ngx_http_quay_redis_cmd_s  ngx_http_quay_redis_cmd_t;

/* Called at most once per command, from the event loop; reply is NULL on
 * timeout or when the connection failed.  The reply is freed by hiredis
 * when the handler returns. */
typedef void (*ngx_http_quay_redis_done_pt)(void *data, redisReply *reply);


ngx_int_t ngx_http_quay_redis_init(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle);
void ngx_http_quay_redis_done(ngx_http_quay_main_conf_t *qmcf);

/*
 * Sends a command (argv form, binary safe), connecting first if needed.
 * Returns a handle for ngx_http_quay_redis_cancel(), or NULL when the
 * command could not be sent (Redis not configured, out of memory); the
 * handler is then never called.
 */
ngx_http_quay_redis_cmd_t *ngx_http_quay_redis_command(
    ngx_http_quay_main_conf_t *qmcf, ngx_http_quay_redis_done_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);

/* The handler will not be called; for request pool cleanups. */
void ngx_http_quay_redis_cancel(ngx_http_quay_redis_cmd_t *cmd);

/* A message (binary safe, valid during the call), or msg NULL when a
 * subscription is back after a gap in which messages may have been lost. */
typedef void (*ngx_http_quay_redis_message_pt)(void *data, u_char *msg,
    size_t len);

/*
 * Worker start: subscribes to channel (a static string) on a connection
 * of its own, kept open and reopened after a loss for the life of the
 * process.  NGX_OK also when Redis is not configured (nothing happens).
 */
ngx_int_t ngx_http_quay_redis_subscribe(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle, const char *channel,
    ngx_http_quay_redis_message_pt handler, void *data);

#endif /* NGX_HTTP_QUAY_REDIS_H */
