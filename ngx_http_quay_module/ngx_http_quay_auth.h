/*
 * Registry tokens on the data path: the instance signing key, Bearer
 * verification on /v2/, the access claim, and the 401 challenge.  See the
 * design paragraph in ngx_http_quay_auth.c.
 */

#ifndef NGX_HTTP_QUAY_AUTH_H
#define NGX_HTTP_QUAY_AUTH_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "quay_jwt.h"
#include "ngx_http_quay_module.h"


#define NGX_HTTP_QUAY_TOKEN_LIFETIME  3600     /* seconds, as Quay */
#define NGX_HTTP_QUAY_TOKEN_LEEWAY    60
#define NGX_HTTP_QUAY_TOKEN_ISSUER    "quay"


typedef struct {
    ngx_str_t                   subject;     /* "sub"; empty: anonymous */
    ngx_str_t                   user_id;     /* context.user_id; may be
                                                empty */
    time_t                      exp;
    ngx_str_t                   grants;      /* the access claim in compact
                                                form (ngx_http_quay_auth.c);
                                                all three in r->pool */
} ngx_http_quay_token_t;


typedef void (*ngx_http_quay_auth_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc);


/* Configuration time: loads or creates the instance key. */
ngx_int_t ngx_http_quay_auth_conf(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf);

/* Worker start: publishes the public key in servicekey (async, retried). */
ngx_int_t ngx_http_quay_auth_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle);
void ngx_http_quay_auth_exit_process(ngx_http_quay_main_conf_t *qmcf);

/*
 * Verifies "Authorization: Bearer ...".  Returns NGX_OK with *token set,
 * or with *token NULL when the request carries no Bearer token;
 * NGX_HTTP_UNAUTHORIZED for a token that does not verify; NGX_AGAIN when
 * the signing key must first be fetched from servicekey: done(r, rc) is
 * then called later with NGX_OK or NGX_HTTP_UNAUTHORIZED and *token set
 * accordingly (token must point into memory that outlives the request
 * step, e.g. the route ctx).
 */
ngx_int_t ngx_http_quay_auth_bearer(ngx_http_request_t *r,
    ngx_http_quay_token_t **token, ngx_http_quay_auth_done_pt done);

/* The NGX_HTTP_QUAY_ACTION_* bits the token grants on type:name. */
ngx_uint_t ngx_http_quay_auth_granted(ngx_http_quay_token_t *token,
    const char *type, ngx_str_t *name);

/* Adds WWW-Authenticate: Bearer realm=...,service=...[,scope=...]. */
ngx_int_t ngx_http_quay_auth_challenge(ngx_http_request_t *r,
    ngx_str_t *name, ngx_uint_t actions);

/* The /v2/auth token service (ngx_http_quay_token.c). */
ngx_int_t ngx_http_quay_token_handler(ngx_http_request_t *r);

#endif /* NGX_HTTP_QUAY_AUTH_H */
