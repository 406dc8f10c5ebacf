/*
 * The registry protocol (/v2/): the per-request context that the router
 * fills before any route handler runs, and the route handlers.
 *
 * Request flow (ngx_http_quay_v2.c):
 *
 *   1. the raw path is parsed by quay_v2_path_parse() (lib/): a bad name,
 *      tag, digest or upload uuid is answered here with the OCI error;
 *   2. the Bearer token is verified (RS256, kid in servicekey) and its
 *      access claim gives ctx->granted for this repository; a request
 *      without the action it needs gets 401 with WWW-Authenticate (or 403
 *      DENIED when a token was given but lacks the action);
 *   3. the repository row is looked up (ctx->repository_id, state), in
 *      the shared cache first; a missing repository is 404 NAME_UNKNOWN;
 *   4. the route handler runs with the context filled in.
 *
 * Route handlers follow the content handler convention: return an HTTP
 * status or NGX_OK/NGX_ERROR when finished, or NGX_DONE after taking a
 * reference (r->main->count++, or ngx_http_read_client_request_body which
 * takes it) and finalizing exactly once later with
 * ngx_http_finalize_request().  The router calls them either directly from
 * its content handler or from a completion handler; both cases pass the
 * returned value to nginx the same way.
 */

#ifndef NGX_HTTP_QUAY_V2_H
#define NGX_HTTP_QUAY_V2_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_reference.h"
#include "ngx_http_quay_module.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_cache.h"


/* actions granted by a registry token's access claim */
#define NGX_HTTP_QUAY_ACTION_PULL    0x01
#define NGX_HTTP_QUAY_ACTION_PUSH    0x02
#define NGX_HTTP_QUAY_ACTION_DELETE  0x04

/* repository.state (Quay's RepositoryState) */
#define NGX_HTTP_QUAY_REPO_NORMAL     0
#define NGX_HTTP_QUAY_REPO_READ_ONLY  1
#define NGX_HTTP_QUAY_REPO_MIRROR     2


typedef struct {
    ngx_http_quay_main_conf_t  *qmcf;

    quay_v2_path_t              path;        /* offsets into raw */
    ngx_str_t                   raw;         /* path after "/v2/", from
                                                r->unparsed_uri, no query */
    ngx_str_t                   name;        /* "namespace/repo..." */
    ngx_str_t                   ns;          /* first component */
    ngx_str_t                   repo;        /* the rest */
    ngx_str_t                   reference;   /* tag, digest or upload uuid */

    /* filled by the router before a repository route handler runs */
    ngx_str_t                   repository_id;   /* decimal text */
    ngx_uint_t                  repository_state;
    ngx_uint_t                  repository_public;
    ngx_uint_t                  granted;     /* NGX_HTTP_QUAY_ACTION_* */
    ngx_str_t                   user;        /* token subject, or empty */
    ngx_str_t                   user_id;     /* decimal text, or empty */
    void                       *token;       /* ngx_http_quay_token_t of
                                                the verified token, or NULL
                                                (ngx_http_quay_auth.h) */

    /* the shared cache's generations for this repository, read before
     * the first database read of the request (ngx_http_quay_cache.h) */
    ngx_http_quay_cache_gen_t   cache_gen;
    ngx_str_t                   cache_name;  /* "namespace/name" */

    void                       *data;        /* the route handler's state */
} ngx_http_quay_v2_ctx_t;


typedef ngx_int_t (*ngx_http_quay_v2_handler_pt)(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);


/*
 * A query bound to a request: done(r, q) is called once from the event
 * loop, and ngx_http_run_posted_requests() runs after it.  done owns the
 * rest of the request: it runs the next query or finalizes.  q->data is
 * taken by the binding: keep your own state in q->udata.
 */
typedef void (*ngx_http_quay_request_done_pt)(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);

ngx_http_quay_db_query_t *ngx_http_quay_request_query(ngx_http_request_t *r,
    quay_sql_e stmt);
ngx_int_t ngx_http_quay_request_query_run(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q, ngx_http_quay_request_done_pt done);


/* ngx_http_quay_v2.c: the /v2/ router (called by the main router) */
ngx_int_t ngx_http_quay_v2_handler(ngx_http_request_t *r);

/* ngx_http_quay_v2_blob.c */
ngx_int_t ngx_http_quay_v2_blob(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);

/* ngx_http_quay_v2_upload.c: POST .../blobs/uploads/ and the session */
ngx_int_t ngx_http_quay_v2_upload_start(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
ngx_int_t ngx_http_quay_v2_upload(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);

/* ngx_http_quay_v2_manifest.c: manifests and referrers */
ngx_int_t ngx_http_quay_v2_manifest(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
ngx_int_t ngx_http_quay_v2_referrers(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);

/* ngx_http_quay_v2_tags.c: tag list and catalog */
ngx_int_t ngx_http_quay_v2_tags_list(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
ngx_int_t ngx_http_quay_v2_catalog(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);

/* ngx_http_quay_v2.c: sets Docker-Distribution-API-Version and friends */
ngx_int_t ngx_http_quay_v2_common_headers(ngx_http_request_t *r);

/* The route context of a /v2/ request, for callbacks that only have r. */
ngx_http_quay_v2_ctx_t *ngx_http_quay_v2_get_ctx(ngx_http_request_t *r);

/* 1 if the request's verified token grants pull on name (for mounts). */
ngx_uint_t ngx_http_quay_v2_may_pull(ngx_http_request_t *r, ngx_str_t *name);

#endif /* NGX_HTTP_QUAY_V2_H */
