/*
 * The /v2/ router: from the raw URI to an authorized route handler.
 *
 * The path is taken from r->unparsed_uri, not r->uri: nothing in the OCI
 * grammar needs percent-encoding, so a '%' is refused outright and nginx's
 * decoding and dot-segment merging can never turn an encoded "../" into
 * something that passes the grammar (security catalogue B1.2).  The name,
 * tag, digest and upload uuid are checked by lib/quay_reference.c before
 * anything else looks at them.
 *
 * Then the Bearer token is verified (ngx_http_quay_auth.c) and the action
 * the method needs must be in its access claim for this repository: a
 * request without it gets 401 with the WWW-Authenticate challenge the
 * clients use to fetch a token.  Last, the repository row is looked up,
 * and the route handler runs (see ngx_http_quay_v2.h for the contract).
 * The token step may be asynchronous (a key of another node) and the
 * repository step is when the shared cache (ngx_http_quay_cache.c) does
 * not have the row: a hit runs the route handler at once.  The cache's
 * generations are read before that lookup, and the route handlers use
 * the same snapshot for what they cache (ctx->cache_gen).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_auth.h"


typedef struct {
    ngx_http_quay_v2_ctx_t         ctx;
    ngx_http_quay_token_t         *token;
    ngx_uint_t                     need;     /* NGX_HTTP_QUAY_ACTION_* */
    ngx_http_quay_v2_handler_pt    handler;
} ngx_http_quay_v2_route_t;


static ngx_int_t ngx_http_quay_v2_fail(ngx_http_request_t *r,
    ngx_http_quay_err_e err, ngx_str_t *detail);
static ngx_int_t ngx_http_quay_v2_route(ngx_http_request_t *r,
    ngx_http_quay_v2_route_t *rt);
static void ngx_http_quay_v2_auth_done(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_http_quay_v2_authorized(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_quay_v2_repo_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_v2_repo_cached(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static ngx_int_t ngx_http_quay_v2_base(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);


ngx_int_t
ngx_http_quay_v2_common_headers(ngx_http_request_t *r)
{
    return ngx_http_quay_set_header(r, "Docker-Distribution-API-Version",
                                    "registry/2.0");
}


ngx_int_t
ngx_http_quay_v2_handler(ngx_http_request_t *r)
{
    u_char                    *p, *last;
    ngx_int_t                  rc;
    quay_err_t                 err;
    ngx_http_quay_v2_ctx_t    *ctx;
    ngx_http_quay_v2_route_t  *rt;
    ngx_http_quay_main_conf_t *qmcf;

    rt = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_v2_route_t));
    if (rt == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the route lives in the module ctx: q->udata style lookups and
     * ngx_http_quay_v2_may_pull() find it there */

    ngx_http_set_ctx(r, rt, ngx_http_quay_module);

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    ctx = &rt->ctx;
    ctx->qmcf = qmcf;

    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;
    last = ngx_strlchr(p, last, '?') ? ngx_strlchr(p, last, '?') : last;

    if (last - p < 4 || ngx_strncmp(p, "/v2/", 4) != 0) {
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NOT_FOUND, NULL);
    }

    ctx->raw.data = p + 4;
    ctx->raw.len = last - (p + 4);

    if (ngx_strlchr(ctx->raw.data, ctx->raw.data + ctx->raw.len, '%')) {
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NAME_INVALID, NULL);
    }

    err.msg[0] = '\0';

    if (quay_v2_path_parse(ctx->raw.data, ctx->raw.len, &ctx->path, &err)
        != QUAY_OK)
    {
        switch (ctx->path.error) {

        case QUAY_V2_NAME_INVALID:
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NAME_INVALID,
                                         NULL);

        case QUAY_V2_TAG_INVALID:
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_TAG_INVALID,
                                         NULL);

        case QUAY_V2_DIGEST_INVALID:
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                         NULL);

        case QUAY_V2_UPLOAD_UNKNOWN:
            return ngx_http_quay_v2_fail(r,
                                        NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                        NULL);

        default:
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NOT_FOUND,
                                         NULL);
        }
    }

    ctx->name.data = ctx->raw.data + ctx->path.name_off;
    ctx->name.len = ctx->path.name_len;
    ctx->reference.data = ctx->raw.data + ctx->path.ref_off;
    ctx->reference.len = ctx->path.ref_len;

    rc = ngx_http_quay_v2_route(r, rt);

    /* a refusal may have been answered with NGX_OK (a HEAD request's
     * header-only error): the handler tells what happened */

    if (rt->handler == NULL) {
        return rc;
    }

    rc = ngx_http_quay_auth_bearer(r, &rt->token, ngx_http_quay_v2_auth_done);

    if (rc == NGX_AGAIN) {
        /* one reference until ngx_http_quay_v2_auth_done() */
        r->main->count++;
        return NGX_DONE;
    }

    return ngx_http_quay_v2_authorized(r, rc);
}


/* Picks the handler and the action the method needs. */

static ngx_int_t
ngx_http_quay_v2_route(ngx_http_request_t *r, ngx_http_quay_v2_route_t *rt)
{
    ngx_uint_t               read;
    ngx_http_quay_v2_ctx_t  *ctx;

    ctx = &rt->ctx;
    read = (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) ? 1 : 0;

    switch (ctx->path.kind) {

    case QUAY_V2_BASE:
        if (!read) {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_base;
        rt->need = 0;
        return NGX_OK;

    case QUAY_V2_CATALOG:
        if (!read) {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_catalog;
        rt->need = 0;
        return NGX_OK;

    case QUAY_V2_TAGS_LIST:
    case QUAY_V2_REFERRERS:
        if (!read) {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = (ctx->path.kind == QUAY_V2_TAGS_LIST)
                      ? ngx_http_quay_v2_tags_list
                      : ngx_http_quay_v2_referrers;
        rt->need = NGX_HTTP_QUAY_ACTION_PULL;
        break;

    case QUAY_V2_BLOB:
        if (read) {
            rt->need = NGX_HTTP_QUAY_ACTION_PULL;
        } else if (r->method == NGX_HTTP_DELETE) {
            /* answered 405 by the handler, as Quay does, after auth */
            rt->need = NGX_HTTP_QUAY_ACTION_PUSH;
        } else {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_blob;
        break;

    case QUAY_V2_MANIFEST:
        if (read) {
            rt->need = NGX_HTTP_QUAY_ACTION_PULL;
        } else if (r->method == NGX_HTTP_PUT) {
            rt->need = NGX_HTTP_QUAY_ACTION_PUSH;
        } else if (r->method == NGX_HTTP_DELETE) {
            rt->need = NGX_HTTP_QUAY_ACTION_DELETE;
        } else {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_manifest;
        break;

    case QUAY_V2_UPLOAD_START:
        if (r->method != NGX_HTTP_POST) {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_upload_start;
        rt->need = NGX_HTTP_QUAY_ACTION_PUSH;
        break;

    case QUAY_V2_UPLOAD:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_PATCH|NGX_HTTP_PUT
                           |NGX_HTTP_DELETE)))
        {
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
        }
        rt->handler = ngx_http_quay_v2_upload;
        rt->need = NGX_HTTP_QUAY_ACTION_PUSH;
        break;

    default:
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NOT_FOUND, NULL);
    }

    return NGX_OK;
}


static void
ngx_http_quay_v2_auth_done(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_finalize_request(r, ngx_http_quay_v2_authorized(r, rc));
}


static ngx_int_t
ngx_http_quay_v2_authorized(ngx_http_request_t *r, ngx_int_t rc)
{
    size_t                     ns_len;
    ngx_http_quay_v2_ctx_t    *ctx;
    ngx_http_quay_v2_route_t  *rt;
    ngx_http_quay_db_query_t  *q;

    rt = ngx_http_get_module_ctx(r, ngx_http_quay_module);
    ctx = &rt->ctx;

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        rt->token = NULL;

    } else if (rc != NGX_OK) {
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }

    ctx->token = rt->token;

    if (rt->token != NULL) {
        ctx->user = rt->token->subject;
        ctx->user_id = rt->token->user_id;
    }

    if (rt->need == 0) {

        /* /v2/ and the catalog: any valid token, anonymous ones too */

        if (rt->token == NULL) {
            if (ngx_http_quay_auth_challenge(r, NULL, 0) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_UNAUTHORIZED,
                                         NULL);
        }

        return rt->handler(r, ctx);
    }

    ctx->granted = ngx_http_quay_auth_granted(rt->token, "repository",
                                              &ctx->name);

    if ((ctx->granted & rt->need) != rt->need) {
        if (ngx_http_quay_auth_challenge(r, &ctx->name,
                                         rt->need
                                         | NGX_HTTP_QUAY_ACTION_PULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_UNAUTHORIZED,
                                     NULL);
    }

    /* the namespace is the first component; Quay's library namespace
     * stands in for a one-component name */

    if (quay_repo_name_split(ctx->name.data, ctx->name.len, &ns_len)
        == QUAY_OK)
    {
        ctx->ns.data = ctx->name.data;
        ctx->ns.len = ns_len;
        ctx->repo.data = ctx->name.data + ns_len + 1;
        ctx->repo.len = ctx->name.len - ns_len - 1;

    } else if (ctx->qmcf->config->feature_library_support
               && ctx->qmcf->config->library_namespace != NULL)
    {
        ctx->ns.data = (u_char *) ctx->qmcf->config->library_namespace;
        ctx->ns.len = ngx_strlen(ctx->ns.data);
        ctx->repo = ctx->name;

    } else {
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_NAME_UNKNOWN,
                                     NULL);
    }

    rc = ngx_http_quay_v2_repo_cached(r, ctx);

    if (rc == NGX_OK) {
        return rt->handler(r, ctx);
    }

    if (rc != NGX_DECLINED) {
        return rc;
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_V2_REPO_LOOKUP);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->ns.data, ctx->ns.len);
    ngx_http_quay_db_param(q, 1, ctx->repo.data, ctx->repo.len);

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_v2_repo_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_v2_fail(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }

    /* one reference until ngx_http_quay_v2_repo_done() */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_v2_repo_done(ngx_http_request_t *r, ngx_http_quay_db_query_t *q)
{
    u_char                    *value;
    ngx_int_t                  rc;
    ngx_str_t                  id, state, public;
    ngx_http_quay_v2_ctx_t    *ctx;
    ngx_http_quay_v2_route_t  *rt;

    rt = ngx_http_get_module_ctx(r, ngx_http_quay_module);
    ctx = &rt->ctx;

    if (q->rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_quay_v2_fail(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_finalize_request(r, ngx_http_quay_v2_fail(r,
                                      NGX_HTTP_QUAY_ERR_NAME_UNKNOWN, NULL));
        return;
    }

    id = ngx_http_quay_db_value(q, 0, 0);
    state = ngx_http_quay_db_value(q, 0, 1);
    public = ngx_http_quay_db_value(q, 0, 2);

    /* the result goes away with q: keep copies in r->pool */

    ctx->repository_id.data = ngx_pstrdup(r->pool, &id);
    ctx->repository_id.len = id.len;

    if (ctx->repository_id.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->repository_state = (state.len == 1) ? (ngx_uint_t) (state.data[0]
                                                             - '0')
                                             : 0;
    ctx->repository_public = (public.len && public.data[0] == 't');

    /* cached as state, visibility, id text, under the generations read
     * before the query */

    value = ngx_pnalloc(r->pool, 2 + id.len);
    if (value != NULL) {
        value[0] = (u_char) ctx->repository_state;
        value[1] = (u_char) ctx->repository_public;
        ngx_memcpy(value + 2, id.data, id.len);

        ngx_http_quay_cache_put(NGX_HTTP_QUAY_CACHE_REPOSITORY,
                                ctx->cache_name.data, ctx->cache_name.len,
                                &ctx->cache_gen, value, 2 + id.len, 0);
    }

    rc = rt->handler(r, ctx);

    /* NGX_DONE releases the reference taken in _authorized() */

    ngx_http_finalize_request(r, rc);
}


/*
 * The repository row from the shared cache: NGX_OK with ctx filled,
 * NGX_DECLINED on a miss (ctx->cache_gen and cache_name are set for the
 * put after the query), or an HTTP status.
 */

static ngx_int_t
ngx_http_quay_v2_repo_cached(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   v;

    /* the canonical "namespace/name": ctx->name lacks the library
     * namespace of a one-component name */

    if (ctx->ns.data == ctx->name.data) {
        ctx->cache_name = ctx->name;

    } else {
        p = ngx_pnalloc(r->pool, ctx->ns.len + 1 + ctx->repo.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->cache_name.data = p;
        p = ngx_cpymem(p, ctx->ns.data, ctx->ns.len);
        *p++ = '/';
        p = ngx_cpymem(p, ctx->repo.data, ctx->repo.len);
        ctx->cache_name.len = p - ctx->cache_name.data;
    }

    ngx_http_quay_cache_snapshot(&ctx->cache_name, NULL, &ctx->cache_gen);

    rc = ngx_http_quay_cache_get(NGX_HTTP_QUAY_CACHE_REPOSITORY,
                                 ctx->cache_name.data, ctx->cache_name.len,
                                 r->pool, &v);
    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                 : NGX_DECLINED;
    }

    if (v.len < 3) {
        return NGX_DECLINED;
    }

    ctx->repository_state = v.data[0];
    ctx->repository_public = v.data[1];
    ctx->repository_id.data = v.data + 2;
    ctx->repository_id.len = v.len - 2;

    return NGX_OK;
}


ngx_http_quay_v2_ctx_t *
ngx_http_quay_v2_get_ctx(ngx_http_request_t *r)
{
    ngx_http_quay_v2_route_t  *rt;

    rt = ngx_http_get_module_ctx(r, ngx_http_quay_module);

    return rt ? &rt->ctx : NULL;
}


ngx_uint_t
ngx_http_quay_v2_may_pull(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_http_quay_v2_route_t  *rt;

    rt = ngx_http_get_module_ctx(r, ngx_http_quay_module);

    if (rt == NULL || rt->token == NULL) {
        return 0;
    }

    return (ngx_http_quay_auth_granted(rt->token, "repository", name)
            & NGX_HTTP_QUAY_ACTION_PULL) ? 1 : 0;
}


static ngx_int_t
ngx_http_quay_v2_base(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    ngx_int_t  rc;

    static u_char  body[] = "{}";

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_quay_send_json(r, NGX_HTTP_OK, body, sizeof(body) - 1);
}


static ngx_int_t
ngx_http_quay_v2_fail(ngx_http_request_t *r, ngx_http_quay_err_e err,
    ngx_str_t *detail)
{
    ngx_int_t  rc;

    /* the body of a refused request is read and dropped, so that the
     * connection stays usable */

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_quay_send_error(r, err, detail);
}
