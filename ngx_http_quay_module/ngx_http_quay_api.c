/*
 * The REST API, /api/v1: routing, the caller, and the one statement each
 * route runs (lib/quay_api.h has the route catalog, sql/0009_api.sql the
 * SQL side).
 *
 * A request goes through these steps, each at most one wait:
 *
 *   1. match      the raw path against every route of the catalog; the
 *                 route with the most literal segments wins, so
 *                 /repository/{repository}/tag/ beats /repository/
 *                 {repository} for "ns/r/tag/".  Wrong method: 405.
 *   2. body       read when the route takes one (QUAY_API_F_BODY), at
 *                 most client_body_buffer_size and never from a temp
 *                 file; it must be a JSON object.
 *   3. caller     "Authorization: Bearer <token>": an OAuth access token,
 *                 40 characters, looked up by its first 20 (token_name);
 *                 the other 20 are compared in constant time with the
 *                 stored SHA-256.  No header: anonymous.  Anything else
 *                 (Basic included, as in Quay): 401.
 *   4. scope      the route's scope against the token's, before any SQL.
 *   5. secrets    generated here when the route needs one (a robot token,
 *                 an app token, a password hashed in the thread pool).
 *   6. statement  FUNCTION(ctx, args, body) returns status, body or
 *                 error; encrypted secrets in the body are decrypted
 *                 (QUAY_API_F_SECRETS) and the answer goes out.
 *
 * Errors have Quay's shape: {"status", "error_message", "detail",
 * "error_type", "title", "type"}.  A SQL error caused by a value (class
 * 22, data exception) is 400 and a unique violation (23505) 409: the
 * functions validate their input, and these are the backstop for what
 * they miss, so that client input never produces a 5xx.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "quay_api.h"
#include "quay_crypto.h"
#include "quay_password.h"
#include "quay_units.h"
#include "ngx_http_quay_api.h"
#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_cache.h"


#define NGX_HTTP_QUAY_API_MAX_SEGS      64
#define NGX_HTTP_QUAY_API_MAX_PARAMS    8
#define NGX_HTTP_QUAY_API_TOKEN_LEN     40
#define NGX_HTTP_QUAY_API_TOKEN_NAME    20


typedef struct {
    ngx_uint_t                  method;      /* quay_api_method_e */
    ngx_str_t                   path;
    quay_sql_e                  stmt;
    ngx_str_t                   scope;
    ngx_uint_t                  flags;
    const char                 *summary;
    const char                 *query;
} ngx_http_quay_api_route_t;


typedef struct {
    ngx_str_t                   name;        /* without the braces */
    ngx_str_t                   value;       /* raw, still escaped */
} ngx_http_quay_api_param_t;


typedef struct {
    ngx_http_quay_api_route_t  *route;
    ngx_http_quay_api_param_t   params[NGX_HTTP_QUAY_API_MAX_PARAMS];
    ngx_uint_t                  nparams;

    ngx_str_t                   body;        /* validated JSON object */
    ngx_uint_t                  err_status;  /* of a rejected body */
    const char                 *err_message;

    /* the caller */
    ngx_uint_t                  authenticated;
    int64_t                     user_id;
    ngx_str_t                   username;
    ngx_uint_t                  robot;
    ngx_str_t                   scopes;      /* space-separated */

    json_t                     *args;        /* owned; r->pool cleanup */

    /* QUAY_API_F_GEN_PASSWORD: hashed in the thread pool */
    char                        password[32];
    char                        password_hash[QUAY_PASSWORD_HASH_SIZE];
    ngx_int_t                   hash_rc;
} ngx_http_quay_api_ctx_t;


static ngx_int_t ngx_http_quay_api_match(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_uint_t ngx_http_quay_api_match_route(ngx_str_t *pattern,
    ngx_str_t *segs, ngx_uint_t nsegs, ngx_http_quay_api_ctx_t *ctx,
    ngx_uint_t *literals);
static void ngx_http_quay_api_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_quay_api_body_check(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_int_t ngx_http_quay_api_authenticate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static void ngx_http_quay_api_token_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_api_token_check(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_api_authorize(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_uint_t ngx_http_quay_api_has_scope(ngx_str_t *scopes,
    ngx_str_t *need);
static ngx_int_t ngx_http_quay_api_generate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static void ngx_http_quay_api_hash_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_api_hash_done(ngx_event_t *ev);
static ngx_int_t ngx_http_quay_api_run(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_int_t ngx_http_quay_api_query_start(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q,
    ngx_http_quay_request_done_pt done);
static void ngx_http_quay_api_run_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_api_respond(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q);
static void ngx_http_quay_api_invalidate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_int_t ngx_http_quay_api_decrypt(ngx_http_request_t *r,
    ngx_str_t *body);
static json_t *ngx_http_quay_api_ctx_json(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static json_t *ngx_http_quay_api_config_json(quay_config_t *cf);
static json_t *ngx_http_quay_api_list_json(quay_strlist_t *list);
static ngx_int_t ngx_http_quay_api_args(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx);
static ngx_int_t ngx_http_quay_api_dump(ngx_http_request_t *r, json_t *j,
    ngx_str_t *out);
static ngx_int_t ngx_http_quay_api_discovery(ngx_http_request_t *r);
static void ngx_http_quay_api_json_cleanup(void *data);


#define QUAY_API_ROUTE(id, method, path, function, scope, flags, summary,   \
                       query)                                                \
    { method, ngx_string(path), id, ngx_string(scope), flags, summary,     \
      query },

static ngx_http_quay_api_route_t  ngx_http_quay_api_routes[] = {
#include "quay_api_user.def"
#include "quay_api_org.def"
#include "quay_api_robot.def"
#include "quay_api_repo.def"
#include "quay_api_tag.def"
#include "quay_api_superuser.def"
#include "quay_api_log.def"
    { 0, ngx_null_string, 0, ngx_null_string, 0, NULL, NULL }
};

#undef QUAY_API_ROUTE


static const char  *ngx_http_quay_api_method_names[] = {
    "get", "post", "put", "delete"
};


ngx_int_t
ngx_http_quay_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_quay_api_ctx_t  *ctx;

    if (r->uri.len == sizeof("/api/v1/discovery") - 1
        && ngx_strncmp(r->uri.data, "/api/v1/discovery", r->uri.len) == 0)
    {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            return ngx_http_quay_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "method_not_allowed",
                                           "Method not allowed");
        }

        return ngx_http_quay_api_discovery(r);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_quay_module);

    rc = ngx_http_quay_api_match(r, ctx);

    if (rc != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_HTTP_NOT_ALLOWED) {
            return ngx_http_quay_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "method_not_allowed",
                                           "Method not allowed");
        }

        if (rc == NGX_HTTP_BAD_REQUEST) {
            return ngx_http_quay_api_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request",
                                           "Invalid path parameter");
        }

        return ngx_http_quay_api_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "Not Found");
    }

    if (!(ctx->route->flags & QUAY_API_F_BODY)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_str_set(&ctx->body, "{}");

        return ngx_http_quay_api_authenticate(r, ctx);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_quay_api_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * Finds the route for the raw path.  Returns NGX_OK with ctx->route and
 * the parameters set, NGX_HTTP_NOT_ALLOWED when the path exists for other
 * methods, NGX_HTTP_BAD_REQUEST for a parameter that cannot be a name,
 * NGX_DECLINED when nothing matches.
 */
static ngx_int_t
ngx_http_quay_api_match(ngx_http_request_t *r, ngx_http_quay_api_ctx_t *ctx)
{
    u_char                     *p, *last, *start;
    ngx_str_t                   segs[NGX_HTTP_QUAY_API_MAX_SEGS];
    ngx_uint_t                  nsegs, i, method, literals, best, other;
    ngx_http_quay_api_ctx_t     try;
    ngx_http_quay_api_route_t  *route;

    switch (r->method) {
    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        method = QUAY_API_GET;
        break;
    case NGX_HTTP_POST:
        method = QUAY_API_POST;
        break;
    case NGX_HTTP_PUT:
        method = QUAY_API_PUT;
        break;
    case NGX_HTTP_DELETE:
        method = QUAY_API_DELETE;
        break;
    default:
        method = (ngx_uint_t) -1;
    }

    /* the raw path, as the client sent it: %2F stays inside a segment */

    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;

    for (start = p; p < last && *p != '?'; p++) { /* void */ }

    last = p;

    /* a trailing slash is optional, as Quay's routes mostly have one */

    if (last - start > 1 && last[-1] == '/') {
        last--;
    }

    nsegs = 0;

    for (p = start; p < last; /* void */) {
        if (*p != '/' || nsegs == NGX_HTTP_QUAY_API_MAX_SEGS) {
            return NGX_DECLINED;
        }

        segs[nsegs].data = ++p;

        while (p < last && *p != '/') {
            p++;
        }

        segs[nsegs].len = p - segs[nsegs].data;
        nsegs++;
    }

    best = 0;
    other = 0;

    for (route = ngx_http_quay_api_routes; route->path.len; route++) {

        ngx_memzero(&try, sizeof(ngx_http_quay_api_ctx_t));

        if (!ngx_http_quay_api_match_route(&route->path, segs, nsegs, &try,
                                           &literals))
        {
            continue;
        }

        if (route->method != method) {
            other = 1;
            continue;
        }

        if (ctx->route == NULL || literals > best) {
            best = literals;
            ctx->route = route;
            ctx->nparams = try.nparams;
            ngx_memcpy(ctx->params, try.params, sizeof(try.params));
        }
    }

    if (ctx->route == NULL) {
        return other ? NGX_HTTP_NOT_ALLOWED : NGX_DECLINED;
    }

    /* unescape the values in place: names never contain control bytes,
     * and only {repository} spans several segments */

    for (i = 0; i < ctx->nparams; i++) {
        u_char     *dst, *src, *end;
        ngx_str_t  *v;

        v = &ctx->params[i].value;

        dst = ngx_pnalloc(r->pool, v->len ? v->len : 1);
        if (dst == NULL) {
            return NGX_ERROR;
        }

        src = v->data;
        end = dst;
        ngx_unescape_uri(&end, &src, v->len, 0);

        v->data = dst;
        v->len = end - dst;

        if (v->len == 0) {
            return NGX_HTTP_BAD_REQUEST;
        }

        for (p = v->data; p < v->data + v->len; p++) {
            if (*p < 0x20 || *p == 0x7f
                || (*p == '/' && !(ctx->params[i].name.len == 10
                                   && ngx_strncmp(ctx->params[i].name.data,
                                                  "repository", 10) == 0)))
            {
                return NGX_HTTP_BAD_REQUEST;
            }
        }
    }

    return NGX_OK;
}


/*
 * Whether pattern matches segs; collects the parameters into ctx and the
 * number of literal segments into *literals.  {repository} takes the
 * fewest segments (two or more) that let the rest match.
 */
static ngx_uint_t
ngx_http_quay_api_match_route(ngx_str_t *pattern, ngx_str_t *segs,
    ngx_uint_t nsegs, ngx_http_quay_api_ctx_t *ctx, ngx_uint_t *literals)
{
    u_char      *p, *last;
    ngx_str_t    seg, rest;
    ngx_uint_t   k, n;

    p = pattern->data;
    last = pattern->data + pattern->len;

    if (last - p > 1 && last[-1] == '/') {
        last--;
    }

    if (p == last) {
        *literals = 0;
        return nsegs == 0;
    }

    /* the first segment of the pattern */

    seg.data = p + 1;

    for (p = seg.data; p < last && *p != '/'; p++) { /* void */ }

    seg.len = p - seg.data;

    rest.data = p;
    rest.len = last - p;

    if (seg.len > 2 && seg.data[0] == '{') {

        if (ctx->nparams == NGX_HTTP_QUAY_API_MAX_PARAMS) {
            return 0;
        }

        n = ctx->nparams++;
        ctx->params[n].name.data = seg.data + 1;
        ctx->params[n].name.len = seg.len - 2;

        if (seg.len == sizeof("{repository}") - 1
            && ngx_strncmp(seg.data, "{repository}", seg.len) == 0)
        {
            for (k = 2; k <= nsegs; k++) {
                ctx->params[n].value.data = segs[0].data;
                ctx->params[n].value.len = segs[k - 1].data
                                           + segs[k - 1].len - segs[0].data;

                if (ngx_http_quay_api_match_route(&rest, segs + k,
                                                  nsegs - k, ctx, literals))
                {
                    return 1;
                }

                ctx->nparams = n + 1;
            }

            ctx->nparams = n;
            return 0;
        }

        if (nsegs == 0 || segs[0].len == 0) {
            ctx->nparams = n;
            return 0;
        }

        ctx->params[n].value = segs[0];

        if (ngx_http_quay_api_match_route(&rest, segs + 1, nsegs - 1, ctx,
                                          literals))
        {
            return 1;
        }

        ctx->nparams = n;
        return 0;
    }

    if (nsegs == 0
        || segs[0].len != seg.len
        || ngx_strncmp(segs[0].data, seg.data, seg.len) != 0)
    {
        return 0;
    }

    if (ngx_http_quay_api_match_route(&rest, segs + 1, nsegs - 1, ctx,
                                      literals))
    {
        (*literals)++;
        return 1;
    }

    return 0;
}


static void
ngx_http_quay_api_body_read(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_quay_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_quay_module);

    switch (ngx_http_quay_api_body_check(r, ctx)) {

    case NGX_OK:
        /* NGX_DONE releases the reference that reading the body took;
         * a step that waits holds its own */
        rc = ngx_http_quay_api_authenticate(r, ctx);
        break;

    case NGX_DECLINED:
        rc = ngx_http_quay_api_error(r, ctx->err_status, "invalid_request",
                                     ctx->err_message);
        break;

    default:
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r, rc);
}


/* The body must be one JSON object that jansson accepts (valid UTF-8, no
 * NUL, no duplicate keys, integers in range), so that it also parses as
 * jsonb.  Returns NGX_OK; NGX_DECLINED with ctx->err_* set; NGX_ERROR. */
static ngx_int_t
ngx_http_quay_api_body_check(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    u_char        *p;
    size_t         len;
    json_t        *j;
    ngx_chain_t   *cl;
    json_error_t   jerr;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_str_set(&ctx->body, "{}");
        return NGX_OK;
    }

    if (r->request_body->temp_file) {
        goto too_large;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            goto too_large;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->body.data = p;
    ctx->body.len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    *p = '\0';

    if (len == 0) {
        ngx_str_set(&ctx->body, "{}");
        return NGX_OK;
    }

    j = json_loadb((char *) ctx->body.data, len, JSON_REJECT_DUPLICATES,
                   &jerr);

    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        ctx->err_status = NGX_HTTP_BAD_REQUEST;
        ctx->err_message = "Request body must be a JSON object";
        return NGX_DECLINED;
    }

    json_decref(j);

    return NGX_OK;

too_large:

    ctx->err_status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    ctx->err_message = "Request body is larger than client_body_buffer_size";
    return NGX_DECLINED;
}


/*
 * Step 3: who calls.  Returns what the content handler returns: NGX_DONE
 * while the token lookup runs, or the result of the next step.
 */
static ngx_int_t
ngx_http_quay_api_authenticate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    u_char                    *p;
    ngx_str_t                  auth;
    ngx_uint_t                 i;
    ngx_http_quay_db_query_t  *q;

    if (r->headers_in.authorization == NULL) {
        return ngx_http_quay_api_authorize(r, ctx);
    }

    auth = r->headers_in.authorization->value;

    if (auth.len != sizeof("Bearer ") - 1 + NGX_HTTP_QUAY_API_TOKEN_LEN
        || ngx_strncasecmp(auth.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        goto invalid;
    }

    p = auth.data + sizeof("Bearer ") - 1;

    for (i = 0; i < NGX_HTTP_QUAY_API_TOKEN_LEN; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= '0' && p[i] <= '9')))
        {
            goto invalid;
        }
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_API_TOKEN);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, p, NGX_HTTP_QUAY_API_TOKEN_NAME);

    return ngx_http_quay_api_query_start(r, ctx, q,
                                         ngx_http_quay_api_token_done);

invalid:

    return ngx_http_quay_api_error(r, NGX_HTTP_UNAUTHORIZED, "invalid_token",
                                   "The access token is invalid");
}


static void
ngx_http_quay_api_token_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_int_t                 rc;
    ngx_http_quay_api_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay api: token lookup failed: %s", q->error);

        ngx_http_finalize_request(r, ngx_http_quay_api_error(r,
                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "unavailable",
                                  "The database is unavailable"));
        return;
    }

    switch (ngx_http_quay_api_token_check(r, ctx, q)) {

    case NGX_OK:
        rc = ngx_http_quay_api_authorize(r, ctx);
        break;

    case NGX_DECLINED:
        rc = ngx_http_quay_api_error(r, NGX_HTTP_UNAUTHORIZED,
                                     "invalid_token",
                                     "The access token is invalid");
        break;

    default:
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The lookup's row: token_code (hex SHA-256 of the secret half), user id,
 * username, enabled, robot, scope, unexpired.  Returns NGX_OK for a good
 * token, NGX_DECLINED for a bad one, NGX_ERROR.
 */
static ngx_int_t
ngx_http_quay_api_token_check(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q)
{
    u_char      *secret;
    u_char       digest[SHA256_DIGEST_LENGTH];
    u_char       hex[2 * SHA256_DIGEST_LENGTH];
    ngx_str_t    stored, v;
    ngx_int_t    id;
    ngx_uint_t   ok;

    secret = r->headers_in.authorization->value.data + sizeof("Bearer ") - 1
             + NGX_HTTP_QUAY_API_TOKEN_NAME;

    (void) SHA256(secret,
                  NGX_HTTP_QUAY_API_TOKEN_LEN - NGX_HTTP_QUAY_API_TOKEN_NAME,
                  digest);
    ngx_hex_dump(hex, digest, SHA256_DIGEST_LENGTH);

    ok = 0;

    if (ngx_http_quay_db_ntuples(q) == 1) {
        stored = ngx_http_quay_db_value(q, 0, 0);

        ok = quay_crypto_equal_len(hex, sizeof(hex), stored.data,
                                   stored.len);

        v = ngx_http_quay_db_value(q, 0, 3);
        ok = ok && v.len == 1 && v.data[0] == 't';

        v = ngx_http_quay_db_value(q, 0, 6);
        ok = ok && v.len == 1 && v.data[0] == 't';
    }

    if (!ok) {
        return NGX_DECLINED;
    }

    v = ngx_http_quay_db_value(q, 0, 1);
    id = ngx_atoi(v.data, v.len);
    if (id == NGX_ERROR) {
        return NGX_ERROR;
    }

    ctx->authenticated = 1;
    ctx->user_id = id;

    v = ngx_http_quay_db_value(q, 0, 2);
    ctx->username.data = ngx_pstrdup(r->pool, &v);
    ctx->username.len = v.len;

    v = ngx_http_quay_db_value(q, 0, 4);
    ctx->robot = (v.len == 1 && v.data[0] == 't');

    v = ngx_http_quay_db_value(q, 0, 5);
    ctx->scopes.data = ngx_pstrdup(r->pool, &v);
    ctx->scopes.len = v.len;

    if ((ctx->username.len && ctx->username.data == NULL)
        || (ctx->scopes.len && ctx->scopes.data == NULL))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Steps 4 and 5. */
static ngx_int_t
ngx_http_quay_api_authorize(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    ngx_http_quay_api_route_t  *route;

    route = ctx->route;

    if ((route->flags & QUAY_API_F_AUTH) && !ctx->authenticated) {
        return ngx_http_quay_api_error(r, NGX_HTTP_UNAUTHORIZED,
                                       "invalid_token",
                                       "Requires authentication");
    }

    if (route->scope.len && ctx->authenticated
        && !ngx_http_quay_api_has_scope(&ctx->scopes, &route->scope))
    {
        return ngx_http_quay_api_error(r, NGX_HTTP_FORBIDDEN,
                                       "insufficient_scope",
                                       "The access token lacks the scope "
                                       "this operation requires");
    }

    return ngx_http_quay_api_generate(r, ctx);
}


/* Quay's implications: repo:admin > repo:write > repo:read, user:admin >
 * user:read.  scopes is space- or comma-separated. */
static ngx_uint_t
ngx_http_quay_api_has_scope(ngx_str_t *scopes, ngx_str_t *need)
{
    u_char      *p, *last, *start;
    ngx_str_t    s;
    ngx_uint_t   i;

    static ngx_str_t  implied[][3] = {
        { ngx_string("repo:read"), ngx_string("repo:write"),
          ngx_string("repo:admin") },
        { ngx_string("repo:write"), ngx_string("repo:admin"),
          ngx_null_string },
        { ngx_string("user:read"), ngx_string("user:admin"),
          ngx_null_string },
    };

    p = scopes->data;
    last = p + scopes->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == ',')) {
            p++;
        }

        for (start = p; p < last && *p != ' ' && *p != ','; p++) {
            /* void */
        }

        s.data = start;
        s.len = p - start;

        if (s.len == 0) {
            continue;
        }

        if (s.len == need->len && ngx_strncmp(s.data, need->data, s.len) == 0)
        {
            return 1;
        }

        for (i = 0; i < sizeof(implied) / sizeof(implied[0]); i++) {
            if (implied[i][0].len != need->len
                || ngx_strncmp(implied[i][0].data, need->data, need->len))
            {
                continue;
            }

            if ((s.len == implied[i][1].len
                 && ngx_strncmp(s.data, implied[i][1].data, s.len) == 0)
                || (implied[i][2].len && s.len == implied[i][2].len
                    && ngx_strncmp(s.data, implied[i][2].data, s.len) == 0))
            {
                return 1;
            }
        }
    }

    return 0;
}


/* Step 5: secrets the route's statement stores (QUAY_API_F_GEN_*). */
static ngx_int_t
ngx_http_quay_api_generate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    char                        name[64], token[72], *enc, *ad;
    size_t                      name_len, token_len, n;
    u_char                      digest[SHA256_DIGEST_LENGTH];
    u_char                      hex[2 * SHA256_DIGEST_LENGTH + 1];
    ngx_uint_t                  flags;
    ngx_thread_task_t          *task;
    ngx_http_quay_api_ctx_t   **tctx;
    ngx_http_quay_main_conf_t  *qmcf;

    if (ngx_http_quay_api_args(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    flags = ctx->route->flags;
    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    if (flags & QUAY_API_F_GEN_PASSWORD) {

        if (quay_crypto_random_token(ctx->password, 24, NULL) != QUAY_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_quay_api_ctx_t *));
        if (task == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        tctx = task->ctx;
        *tctx = ctx;

        task->handler = ngx_http_quay_api_hash_thread;
        task->event.handler = ngx_http_quay_api_hash_done;
        task->event.data = r;

        if (qmcf->thread_pool == NULL
            || ngx_thread_task_post(qmcf->thread_pool, task) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* one reference until ngx_http_quay_api_hash_done() */

        r->main->count++;

        return NGX_DONE;
    }

    if (!(flags & (QUAY_API_F_GEN_ROBOT | QUAY_API_F_GEN_APP
                   | QUAY_API_F_GEN_OAUTH)))
    {
        return ngx_http_quay_api_run(r, ctx);
    }

    if (flags & QUAY_API_F_GEN_ROBOT) {
        name_len = 0;
        token_len = QUAY_CRYPTO_ROBOT_TOKEN_LEN;
        ad = "robotaccounttoken.token";

    } else if (flags & QUAY_API_F_GEN_APP) {
        name_len = 60;
        token_len = 60;
        ad = "appspecificauthtoken.token_secret";

    } else {
        name_len = NGX_HTTP_QUAY_API_TOKEN_NAME;
        token_len = NGX_HTTP_QUAY_API_TOKEN_LEN
                    - NGX_HTTP_QUAY_API_TOKEN_NAME;
        ad = NULL;
    }

    if ((name_len && quay_crypto_random_token(name, name_len, NULL)
                     != QUAY_OK)
        || quay_crypto_random_token(token, token_len, NULL) != QUAY_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (name_len) {
        json_object_set_new(ctx->args, "gen_name", json_string(name));
    }

    json_object_set_new(ctx->args, "gen_token", json_string(token));

    if (ad == NULL) {
        (void) SHA256((u_char *) token, token_len, digest);
        *ngx_hex_dump(hex, digest, SHA256_DIGEST_LENGTH) = '\0';
        json_object_set_new(ctx->args, "gen_token_sha256",
                            json_string((char *) hex));

    } else {
        if (!qmcf->db_key_set) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay api: DATABASE_SECRET_KEY is not set, "
                          "cannot store a token");
            quay_crypto_wipe(token, sizeof(token));
            return ngx_http_quay_api_error(r,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "server_error",
                                           "DATABASE_SECRET_KEY is not "
                                           "configured");
        }

        n = QUAY_CRYPTO_ENCRYPTED_LEN(token_len) + 1;
        enc = ngx_pnalloc(r->pool, n);
        if (enc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (quay_crypto_encrypt(qmcf->db_key, token, token_len, ad,
                                ngx_strlen(ad), enc, n, &n, NULL)
            != QUAY_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json_object_set_new(ctx->args, "gen_token_enc", json_string(enc));
    }

    quay_crypto_wipe(token, sizeof(token));

    return ngx_http_quay_api_run(r, ctx);
}


static void
ngx_http_quay_api_hash_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_api_ctx_t  *ctx = *(ngx_http_quay_api_ctx_t **) data;

    ctx->hash_rc = quay_password_hash(ctx->password,
                                      ngx_strlen(ctx->password),
                                      ctx->password_hash,
                                      sizeof(ctx->password_hash), NULL);
}


static void
ngx_http_quay_api_hash_done(ngx_event_t *ev)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_quay_api_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_quay_module);

    if (ctx->hash_rc != QUAY_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        json_object_set_new(ctx->args, "gen_token",
                            json_string(ctx->password));
        json_object_set_new(ctx->args, "gen_password_hash",
                            json_string(ctx->password_hash));
        quay_crypto_wipe(ctx->password, sizeof(ctx->password));

        rc = ngx_http_quay_api_run(r, ctx);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* Step 6: the route's statement. */
static ngx_int_t
ngx_http_quay_api_run(ngx_http_request_t *r, ngx_http_quay_api_ctx_t *ctx)
{
    json_t                    *j;
    ngx_str_t                  s;
    ngx_http_quay_db_query_t  *q;

    q = ngx_http_quay_request_query(r, ctx->route->stmt);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    j = ngx_http_quay_api_ctx_json(r, ctx);
    if (j == NULL || ngx_http_quay_api_dump(r, j, &s) != NGX_OK) {
        json_decref(j);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_decref(j);
    ngx_http_quay_db_param(q, 0, s.data, s.len);

    if (ngx_http_quay_api_dump(r, ctx->args, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 1, s.data, s.len);
    ngx_http_quay_db_param(q, 2, ctx->body.data, ctx->body.len);

    return ngx_http_quay_api_query_start(r, ctx, q,
                                         ngx_http_quay_api_run_done);
}


/*
 * Starts q for ctx.  Returns NGX_DONE with one request reference held
 * until done() runs (it finalizes), or the result of sending the 503 when
 * the query could not even be queued.
 */
static ngx_int_t
ngx_http_quay_api_query_start(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q,
    ngx_http_quay_request_done_pt done)
{
    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q, done) != NGX_AGAIN) {
        return ngx_http_quay_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "The database is unavailable");
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_api_run_done(ngx_http_request_t *r, ngx_http_quay_db_query_t *q)
{
    ngx_http_finalize_request(r, ngx_http_quay_api_respond(r, q->udata, q));
}


static ngx_int_t
ngx_http_quay_api_respond(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx, ngx_http_quay_db_query_t *q)
{
    char        *state;
    u_char      *msg;
    ngx_int_t    status;
    ngx_str_t    body, type, message;

    if (q->rc != NGX_OK) {
        state = q->result ? PQresultErrorField(q->result, PG_DIAG_SQLSTATE)
                          : NULL;

        if (state != NULL && ngx_strncmp(state, "22", 2) == 0) {
            return ngx_http_quay_api_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request",
                                           "Invalid value in the request");
        }

        if (state != NULL && ngx_strcmp(state, "23505") == 0) {
            return ngx_http_quay_api_error(r, NGX_HTTP_CONFLICT, "conflict",
                                           "The object already exists");
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay api: %s failed: %s",
                      quay_sql_stmt(ctx->route->stmt)->name, q->error);

        if (state != NULL && ngx_strncmp(state, "08", 2) == 0) {
            return ngx_http_quay_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable",
                                           "The database is unavailable");
        }

        return ngx_http_quay_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "server_error",
                                       "Internal server error");
    }

    ngx_http_quay_api_invalidate(r, ctx);

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay api: %s returned no row",
                      quay_sql_stmt(ctx->route->stmt)->name);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = ngx_http_quay_db_value(q, 0, 0);
    status = ngx_atoi(body.data, body.len);

    if (status < 200 || status > 599) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay api: %s returned status \"%V\"",
                      quay_sql_stmt(ctx->route->stmt)->name, &body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status >= 400) {
        type = ngx_http_quay_db_value(q, 0, 2);
        message = ngx_http_quay_db_value(q, 0, 3);

        msg = ngx_pnalloc(r->pool, type.len + message.len + 2);
        if (msg == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* both NUL-terminated for the responder */

        ngx_memcpy(msg, type.data, type.len);
        msg[type.len] = '\0';
        ngx_memcpy(msg + type.len + 1, message.data, message.len);
        msg[type.len + 1 + message.len] = '\0';

        return ngx_http_quay_api_error(r, status, (char *) msg,
                                       (char *) msg + type.len + 1);
    }

    body = ngx_http_quay_db_value(q, 0, 1);

    if (body.len == 0) {
        r->headers_out.status = status;
        r->headers_out.content_length_n = 0;
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    /* the value lives in the PGresult, which the pool frees: copy it */

    body.data = ngx_pstrdup(r->pool, &body);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if ((ctx->route->flags & QUAY_API_F_SECRETS)
        && ngx_http_quay_api_decrypt(r, &body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_quay_send_json(r, status, body.data, body.len);
}


/*
 * The shared cache's hook (ngx_http_quay_cache.c): a non-GET route whose
 * statement ran may have changed a repository (tags, visibility, state,
 * permissions, deletion), so what every worker and node cached about it
 * goes, before the answer does.  Routes without a {repository} argument
 * (organizations, teams, users, robots) drop everything: they are rare.
 * Any status counts, since a function may change rows and still answer
 * 4xx.
 */
static void
ngx_http_quay_api_invalidate(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    ngx_str_t                  *name;
    ngx_uint_t                  i;
    ngx_http_quay_main_conf_t  *qmcf;

    if (ctx->route->method == QUAY_API_GET) {
        return;
    }

    name = NULL;

    for (i = 0; i < ctx->nparams; i++) {
        if (ctx->params[i].name.len == sizeof("repository") - 1
            && ngx_strncmp(ctx->params[i].name.data, "repository",
                           sizeof("repository") - 1) == 0
            && ngx_strlchr(ctx->params[i].value.data,
                           ctx->params[i].value.data
                           + ctx->params[i].value.len, '%')
               == NULL)
        {
            name = &ctx->params[i].value;
        }
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    ngx_http_quay_cache_invalidate(qmcf, name, NULL);
}


/*
 * Replaces every "quay-secret:<ad>:<prefix>:<ciphertext>" string in body
 * by "<prefix><plaintext>".  The markers come from quay_api_secret() and
 * hold only [A-Za-z0-9._$+/=:]; plaintexts are tokens of [A-Z0-9].
 */
static ngx_int_t
ngx_http_quay_api_decrypt(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char                     *out, *o, *p, *last, *end, *ad, *prefix;
    u_char                     *text;
    size_t                      n, ad_len, prefix_len;
    ngx_http_quay_main_conf_t  *qmcf;

    static u_char  marker[] = "\"quay-secret:";

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    /* plaintexts are shorter than their ciphertexts */

    out = ngx_pnalloc(r->pool, body->len + 1);
    if (out == NULL) {
        return NGX_ERROR;
    }

    o = out;
    p = body->data;
    last = body->data + body->len;

    while (p < last) {
        end = ngx_strlcasestrn(p, last, marker, sizeof(marker) - 2);

        if (end == NULL) {
            o = ngx_cpymem(o, p, last - p);
            break;
        }

        o = ngx_cpymem(o, p, end - p);
        p = end + sizeof(marker) - 1;

        ad = p;
        while (p < last && *p != ':' && *p != '"') { p++; }
        ad_len = p - ad;

        if (p == last || *p != ':') {
            return NGX_ERROR;
        }

        prefix = ++p;
        while (p < last && *p != ':' && *p != '"') { p++; }
        prefix_len = p - prefix;

        if (p == last || *p != ':') {
            return NGX_ERROR;
        }

        text = ++p;
        while (p < last && *p != '"') { p++; }

        if (p == last || !qmcf->db_key_set) {
            return NGX_ERROR;
        }

        *o++ = '"';
        o = ngx_cpymem(o, prefix, prefix_len);

        if (quay_crypto_decrypt(qmcf->db_key, (char *) text, p - text, ad,
                                ad_len, o, last - o, &n, NULL)
            != QUAY_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay api: a stored secret (%*s) does not "
                          "decrypt with DATABASE_SECRET_KEY", ad_len, ad);
            return NGX_ERROR;
        }

        o += n;
        *o++ = '"';
        p++;
    }

    body->data = out;
    body->len = o - out;

    return NGX_OK;
}


/* The ctx argument (sql/0009_api.sql). */
static json_t *
ngx_http_quay_api_ctx_json(ngx_http_request_t *r,
    ngx_http_quay_api_ctx_t *ctx)
{
    json_t                     *j, *config, *scopes;
    u_char                     *p, *last, *start;
    ngx_uint_t                  super, readonly;
    quay_config_t              *cf;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);
    cf = qmcf->config;

    config = ngx_http_quay_api_config_json(cf);
    if (config == NULL) {
        return NULL;
    }

    j = json_object();
    scopes = json_array();

    if (j == NULL || scopes == NULL) {
        json_decref(j);
        json_decref(scopes);
        return NULL;
    }

    json_object_set_new(j, "scopes", scopes);

    /* shared, not copied: the object is read-only once built */
    json_object_set(j, "config", config);

    super = 0;
    readonly = 0;

    if (ctx->authenticated) {
        json_object_set_new(j, "user_id", json_integer(ctx->user_id));
        json_object_set_new(j, "username",
                            json_stringn((char *) ctx->username.data,
                                         ctx->username.len));

        p = ctx->scopes.data;
        last = p + ctx->scopes.len;

        while (p < last) {
            while (p < last && (*p == ' ' || *p == ',')) { p++; }
            for (start = p; p < last && *p != ' ' && *p != ','; p++) { }

            if (p > start) {
                json_array_append_new(scopes,
                                      json_stringn((char *) start,
                                                   p - start));
            }
        }

        /* read-only takes precedence when a name is in both lists */

        readonly = quay_strlist_contains(&cf->global_readonly_super_users,
                                         (char *) ctx->username.data,
                                         ctx->username.len);
        super = !readonly && cf->feature_super_users
                && quay_strlist_contains(&cf->super_users,
                                         (char *) ctx->username.data,
                                         ctx->username.len);

    } else {
        json_object_set_new(j, "user_id", json_null());
        json_object_set_new(j, "username", json_null());
    }

    json_object_set_new(j, "robot", json_boolean(ctx->robot));
    json_object_set_new(j, "superuser", json_boolean(super));
    json_object_set_new(j, "readonly_superuser", json_boolean(readonly));
    json_object_set_new(j, "ip",
                        json_stringn((char *) r->connection->addr_text.data,
                                     r->connection->addr_text.len));

    return j;
}


/*
 * ctx.config: the config.yaml values the SQL functions read.  The
 * configuration of a worker never changes (a reload starts new workers),
 * so the object is built once per worker and shared by every request.
 */
static json_t *
ngx_http_quay_api_config_json(quay_config_t *cf)
{
    size_t          i;
    json_t         *config, *options;
    int64_t         seconds;

    static json_t         *cached;
    static quay_config_t  *cached_for;

    if (cached != NULL && cached_for == cf) {
        return cached;
    }

    config = json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:I, s:s,"
                       " s:o, s:o}",
                       "anonymous_access", cf->feature_anonymous_access,
                       "superusers_full_access",
                       cf->feature_superusers_full_access,
                       "super_users", cf->feature_super_users,
                       "user_creation", cf->feature_user_creation,
                       "app_specific_tokens",
                       cf->feature_app_specific_tokens,
                       "change_tag_expiration",
                       cf->feature_change_tag_expiration,
                       "extended_repository_names",
                       cf->feature_extended_repository_names,
                       "create_private_repo_on_push",
                       cf->create_private_repo_on_push,
                       "default_tag_expiration_s",
                       (json_int_t) cf->default_tag_expiration_s,
                       "server_hostname",
                       cf->server_hostname ? cf->server_hostname : "",
                       /* both superuser lists by name, for the superuser
                        * API: the super_user flags of other users and
                        * Quay's "cannot delete a superuser" */
                       "super_user_names",
                       ngx_http_quay_api_list_json(&cf->super_users),
                       "readonly_super_user_names",
                       ngx_http_quay_api_list_json(
                           &cf->global_readonly_super_users));
    if (config == NULL) {
        return NULL;
    }

    /* TAG_EXPIRATION_OPTIONS ("2w", ...) in seconds; the loader has
     * validated every entry; absent, the SQL uses Quay's default */

    options = json_array();

    for (i = 0; options && i < cf->tag_expiration_options.n; i++) {
        if (quay_duration_parse(cf->tag_expiration_options.items[i],
                                ngx_strlen(cf->tag_expiration_options
                                           .items[i]),
                                &seconds)
            == QUAY_OK)
        {
            json_array_append_new(options, json_integer(seconds));
        }
    }

    if (json_array_size(options) > 0) {
        json_object_set_new(config, "tag_expiration_options", options);

    } else {
        json_decref(options);
    }

    json_decref(cached);
    cached = config;
    cached_for = cf;

    return cached;
}


/* A JSON array of the list's names; NULL (and json_pack fails) when out
 * of memory. */
static json_t *
ngx_http_quay_api_list_json(quay_strlist_t *list)
{
    size_t   i;
    json_t  *a;

    a = json_array();

    for (i = 0; a != NULL && i < list->n; i++) {
        if (json_array_append_new(a, json_string(list->items[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }

    return a;
}


/*
 * The args argument: query parameters, then the path parameters (which
 * win), as strings.  Names starting with "gen_" are the module's own and
 * never come from the client.
 */
static ngx_int_t
ngx_http_quay_api_args(ngx_http_request_t *r, ngx_http_quay_api_ctx_t *ctx)
{
    u_char              *p, *last, *k, *v, *dst, *src, *q;
    size_t               klen, vlen;
    ngx_uint_t           i;
    ngx_pool_cleanup_t  *cln;

    ctx->args = json_object();
    if (ctx->args == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(ctx->args);
        ctx->args = NULL;
        return NGX_ERROR;
    }

    cln->handler = ngx_http_quay_api_json_cleanup;
    cln->data = ctx->args;

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        k = p;
        while (p < last && *p != '&') { p++; }

        /* one "key=value" in [k, p): unescape both, '+' is a space */

        q = ngx_pnalloc(r->pool, p - k + 1);
        if (q == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < (size_t) (p - k); i++) {
            q[i] = (k[i] == '+') ? ' ' : k[i];
        }

        v = ngx_strlchr(q, q + (p - k), '=');
        klen = (v ? v : q + (p - k)) - q;
        vlen = v ? (size_t) (q + (p - k) - v - 1) : 0;

        dst = q;
        src = q;
        ngx_unescape_uri(&dst, &src, klen, NGX_UNESCAPE_URI);
        klen = dst - q;

        if (v) {
            src = v + 1;
            dst = v + 1;
            ngx_unescape_uri(&dst, &src, vlen, NGX_UNESCAPE_URI);
            vlen = dst - (v + 1);
        }

        if (klen && !(klen >= 4 && ngx_strncmp(q, "gen_", 4) == 0)) {
            q[klen] = '\0';
            json_object_set_new(ctx->args, (char *) q,
                                json_stringn(v ? (char *) v + 1 : "", vlen));
        }

        if (p < last) {
            p++;
        }
    }

    for (i = 0; i < ctx->nparams; i++) {
        k = ngx_pnalloc(r->pool, ctx->params[i].name.len + 1);
        if (k == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem(k, ctx->params[i].name.data, ctx->params[i].name.len)
            = '\0';

        json_object_set_new(ctx->args, (char *) k,
                            json_stringn((char *) ctx->params[i].value.data,
                                         ctx->params[i].value.len));
    }

    return NGX_OK;
}


/* json_dumps into r->pool.  A string jansson cannot encode (a query
 * parameter that is not UTF-8) makes the whole value fail: 400 upstream
 * would be nicer, but such names match nothing anyway. */
static ngx_int_t
ngx_http_quay_api_dump(ngx_http_request_t *r, json_t *j, ngx_str_t *out)
{
    char  *s;

    s = json_dumps(j, JSON_COMPACT);
    if (s == NULL) {
        ngx_str_set(out, "{}");
        return NGX_OK;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(r->pool, out->len + 1);

    if (out->data != NULL) {
        ngx_memcpy(out->data, s, out->len + 1);
    }

    free(s);

    return out->data ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_quay_api_json_cleanup(void *data)
{
    json_decref(data);
}


ngx_int_t
ngx_http_quay_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *message)
{
    u_char     *body, *last;
    size_t      len, tlen, mlen, mesc, tesc;
    ngx_str_t   t, m;

    tlen = ngx_strlen(type);
    mlen = ngx_strlen(message);
    tesc = ngx_escape_json(NULL, (u_char *) type, tlen);
    mesc = ngx_escape_json(NULL, (u_char *) message, mlen);

    len = sizeof("{\"status\":000,\"error_message\":\"\",\"detail\":\"\","
                 "\"error_type\":\"\",\"title\":\"\","
                 "\"type\":\"/api/v1/error/\"}")
          + 2 * (mlen + mesc) + 3 * (tlen + tesc);

    body = ngx_pnalloc(r->pool, len);
    t.data = ngx_pnalloc(r->pool, tlen + tesc + 1);
    m.data = ngx_pnalloc(r->pool, mlen + mesc + 1);

    if (body == NULL || t.data == NULL || m.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t.len = (u_char *) ngx_escape_json(t.data, (u_char *) type, tlen)
            - t.data;
    m.len = (u_char *) ngx_escape_json(m.data, (u_char *) message, mlen)
            - m.data;

    last = ngx_sprintf(body, "{\"status\":%ui,\"error_message\":\"%V\","
                       "\"detail\":\"%V\",\"error_type\":\"%V\","
                       "\"title\":\"%V\",\"type\":\"/api/v1/error/%V\"}",
                       status, &m, &m, &t, &t, &t);

    if (status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_quay_set_header(r, "WWW-Authenticate",
                                    "Bearer realm=\"quay\"") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_quay_send_json(r, status, body, last - body);
}


/*
 * GET /api/v1/discovery: a Swagger 2.0 document of the catalog, built
 * once per worker.  Each operation names its scope under "security"
 * (Quay's oauth2_implicit) and in "x-requires-scope".
 */
static ngx_int_t
ngx_http_quay_api_discovery(ngx_http_request_t *r)
{
    u_char                     *p, *last, *start, *copy;
    json_t                     *doc, *paths, *path, *op, *params, *param;
    json_t                     *sec, *scopes, *def, *secdefs;
    const char                 *q, *comma;
    ngx_str_t                   name;
    ngx_http_quay_api_route_t  *route;

    static char                *cached;
    static size_t               cached_len;

    if (cached == NULL) {
        doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:[s], s:{}}",
                        "swagger", "2.0",
                        "info", "title", "Quay API (ngx_http_quay_module)",
                        "version", "v1",
                        "description", "The routes this registry serves, "
                        "with the OAuth scope each needs.",
                        "basePath", "/",
                        "schemes", "https",
                        "paths");
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        paths = json_object_get(doc, "paths");

        scopes = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                           "repo:read", "View all visible repositories",
                           "repo:write", "Read/Write to any accessible "
                           "repositories",
                           "repo:admin", "Administer Repositories",
                           "repo:create", "Create Repositories",
                           "user:read", "Read User Information",
                           "user:admin", "Administer User",
                           "org:admin", "Administer Organization",
                           "super:user", "Super User Access");
        secdefs = json_pack("{s:{s:s, s:s, s:s, s:o}}", "oauth2_implicit",
                            "type", "oauth2", "flow", "implicit",
                            "authorizationUrl", "/oauth/authorize",
                            "scopes", scopes);
        json_object_set_new(doc, "securityDefinitions", secdefs);

        for (route = ngx_http_quay_api_routes; route->path.len; route++) {
            path = json_object_get(paths, (char *) route->path.data);

            if (path == NULL) {
                path = json_object();
                json_object_set_new(paths, (char *) route->path.data, path);
            }

            params = json_array();
            op = json_pack("{s:s, s:s, s:o, s:{s:{s:s}}}",
                           "operationId",
                           quay_sql_stmt(route->stmt)->name,
                           "summary", route->summary,
                           "parameters", params,
                           "responses", "200", "description", "Successful");

            /* path parameters: every {name} of the path */

            p = route->path.data;
            last = p + route->path.len;

            while ((p = ngx_strlchr(p, last, '{')) != NULL) {
                start = ++p;
                p = ngx_strlchr(p, last, '}');
                if (p == NULL) {
                    break;
                }

                name.data = start;
                name.len = p - start;

                param = json_pack("{s:s%, s:s, s:b, s:s}",
                                  "name", (char *) name.data, name.len,
                                  "in", "path", "required", 1,
                                  "type", "string");
                json_array_append_new(params, param);
            }

            for (q = route->query; q && *q; q = comma ? comma + 1 : NULL) {
                comma = strchr(q, ',');
                param = json_pack("{s:s%, s:s, s:b, s:s}",
                                  "name", q,
                                  comma ? (size_t) (comma - q) : strlen(q),
                                  "in", "query", "required", 0,
                                  "type", "string");
                json_array_append_new(params, param);
                if (comma == NULL) {
                    break;
                }
            }

            if (route->flags & QUAY_API_F_BODY) {
                param = json_pack("{s:s, s:s, s:b, s:{s:s}}",
                                  "name", "body", "in", "body",
                                  "required", 0, "schema", "type", "object");
                json_array_append_new(params, param);
            }

            if (route->scope.len) {
                sec = json_pack("[{s:[s]}]", "oauth2_implicit",
                                (char *) route->scope.data);
                json_object_set_new(op, "security", sec);
                json_object_set_new(op, "x-requires-scope",
                                    json_string((char *) route->scope.data));
            }

            json_object_set_new(op, "x-requires-auth",
                                json_boolean(route->flags & QUAY_API_F_AUTH));

            def = json_object_get(path,
                                  ngx_http_quay_api_method_names[
                                      route->method]);
            if (def == NULL) {
                json_object_set_new(path,
                                    ngx_http_quay_api_method_names[
                                        route->method], op);
            } else {
                json_decref(op);
            }
        }

        cached = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(doc);

        if (cached == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cached_len = strlen(cached);
    }

    copy = ngx_pnalloc(r->pool, cached_len);
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(copy, cached, cached_len);

    return ngx_http_quay_send_json(r, NGX_HTTP_OK, copy, cached_len);
}
