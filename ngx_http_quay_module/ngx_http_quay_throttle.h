/*
 * Login throttling per user and client address, counted in Redis.  See
 * the design paragraph in ngx_http_quay_throttle.c.
 */

#ifndef NGX_HTTP_QUAY_THROTTLE_H
#define NGX_HTTP_QUAY_THROTTLE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


#define NGX_HTTP_QUAY_THROTTLE_LIMIT        5     /* failures */
#define NGX_HTTP_QUAY_THROTTLE_WINDOW       300   /* seconds */
#define NGX_HTTP_QUAY_THROTTLE_WINDOW_TEXT  "300"


/* retry_after is 0 to go on, or the seconds to tell the client. */
typedef void (*ngx_http_quay_throttle_done_pt)(void *data,
    ngx_int_t retry_after);

/*
 * Asks Redis whether user may try a password from this client address.
 * NGX_AGAIN: done() is called later from the event loop.  NGX_DECLINED:
 * no answer is coming (Redis unavailable), go on without throttling.
 */
ngx_int_t ngx_http_quay_throttle_check(ngx_http_request_t *r,
    ngx_str_t *user, ngx_http_quay_throttle_done_pt done, void *data);

/* Counts a failed login.  NGX_AGAIN: done() is called once Redis has
 * counted it; NGX_DECLINED: Redis is unavailable, nothing was counted. */
ngx_int_t ngx_http_quay_throttle_failed(ngx_http_request_t *r,
    ngx_str_t *user, ngx_http_quay_throttle_done_pt done, void *data);

/* Clears the count after a successful login; fire and forget. */
void ngx_http_quay_throttle_succeeded(ngx_http_request_t *r,
    ngx_str_t *user);

#endif /* NGX_HTTP_QUAY_THROTTLE_H */
