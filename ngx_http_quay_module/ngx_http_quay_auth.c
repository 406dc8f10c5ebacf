/*
 * Registry tokens on the data path.
 *
 * DESIGN.  Each registry instance has an RSA key (quay_instance_key, by
 * default quay.pem beside config.yaml), loaded or created by the master at
 * configuration time so that every worker inherits it.  Its public half is
 * published in servicekey as a JWK by each worker at start (an async
 * insert, retried every few seconds until the database answers), which is
 * how any node verifies any other node's tokens (Quay's instance service
 * key).
 *
 * A Bearer token is verified with lib/quay_jwt.c: RS256 only, the kid must
 * be this instance's or found in servicekey, no embedded keys, and aud,
 * iss, exp, nbf and the lifetime are checked.  Verification is cheap
 * (~30 us) and runs inline; signing (~1 ms) runs in the thread pool
 * (ngx_http_quay_token.c).  Keys of other nodes are fetched once per
 * worker and cached in worker memory; an unknown kid costs one query.
 *
 * The verified claims are reduced at once to what the data path needs:
 * subject, user id, exp and the access claim in a compact form (one
 * record per entry: actions byte, type length byte, name length as two
 * bytes, type, name), which answers "may this request pull/push/delete on
 * that repository" without another query or any JSON.  That form is also
 * what the shared cache keeps (ngx_http_quay_cache.c), under the SHA-256
 * of the token text, until the token's exp: a token seen once by any
 * worker costs a hash and a lookup instead of an RS256 verification and a
 * JSON parse.  The cache never accepts a token the verifier would refuse:
 * the token text is the key (the signature included), and the entry ends
 * at exp while the verifier accepts up to its leeway after it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_base64.h"
#include "quay_sha256.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_cache.h"


#define NGX_HTTP_QUAY_AUTH_MAX_FOREIGN_KEYS  64
#define NGX_HTTP_QUAY_AUTH_REGISTER_RETRY    3000

/* the cached form: exp (8 bytes), subject and user id lengths (2 bytes
 * each), the two strings, then the compact grants */
#define NGX_HTTP_QUAY_AUTH_CACHED_HEAD       12


typedef struct {
    ngx_http_request_t            *r;
    ngx_http_quay_token_t        **token;
    ngx_http_quay_auth_done_pt     done;
    ngx_str_t                      raw;      /* the token text */
    ngx_http_quay_cache_gen_t      gen;
    u_char                         key[QUAY_SHA256_DIGEST_LEN];
} ngx_http_quay_auth_fetch_t;


static ngx_int_t ngx_http_quay_auth_verify(ngx_http_request_t *r,
    ngx_str_t *raw, const quay_jwt_key_t *key, u_char *cache_key,
    ngx_http_quay_cache_gen_t *gen, ngx_http_quay_token_t **token);
static ngx_int_t ngx_http_quay_auth_claims(ngx_http_request_t *r,
    json_t *claims, ngx_http_quay_token_t *t);
static ngx_int_t ngx_http_quay_auth_cached(ngx_http_request_t *r,
    u_char *cache_key, ngx_http_quay_token_t **token);
static void ngx_http_quay_auth_cache_put(ngx_pool_t *pool,
    u_char *cache_key, ngx_http_quay_cache_gen_t *gen,
    ngx_http_quay_token_t *t);
static void ngx_http_quay_auth_fetch_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_auth_register(ngx_event_t *ev);
static void ngx_http_quay_auth_register_done(ngx_http_quay_db_query_t *q);


/* worker-local: keys of other nodes, found through servicekey */
static quay_jwt_key_t  ngx_http_quay_auth_foreign[
                           NGX_HTTP_QUAY_AUTH_MAX_FOREIGN_KEYS];
static ngx_uint_t      ngx_http_quay_auth_nforeign;

static ngx_event_t     ngx_http_quay_auth_register_ev;
static ngx_pool_t     *ngx_http_quay_auth_register_pool;


ngx_int_t
ngx_http_quay_auth_conf(ngx_conf_t *cf, ngx_http_quay_main_conf_t *qmcf)
{
    u_char       *p;
    size_t        len;
    quay_err_t    err;

    if (qmcf->instance_key_path.data == NULL) {

        /* quay.pem beside config.yaml, as Quay's conf/quay.pem */

        p = qmcf->config_path.data + qmcf->config_path.len;
        while (p > qmcf->config_path.data && p[-1] != '/') {
            p--;
        }

        len = p - qmcf->config_path.data;

        qmcf->instance_key_path.data = ngx_pnalloc(cf->pool,
                                                   len + sizeof("quay.pem"));
        if (qmcf->instance_key_path.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(qmcf->instance_key_path.data, qmcf->config_path.data,
                       len);
        p = ngx_cpymem(p, "quay.pem", sizeof("quay.pem"));
        qmcf->instance_key_path.len = p - qmcf->instance_key_path.data - 1;
    }

    qmcf->jwt_key = ngx_pcalloc(cf->pool, sizeof(quay_jwt_key_t));
    if (qmcf->jwt_key == NULL) {
        return NGX_ERROR;
    }

    err.msg[0] = '\0';

    if (quay_jwt_key_load_or_create((char *) qmcf->instance_key_path.data,
                                    qmcf->jwt_key, &err)
        != QUAY_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "quay: instance key: %s",
                           err.msg);
        return NGX_ERROR;
    }

    qmcf->jwt_jwk = quay_jwt_key_public_jwk(qmcf->jwt_key);
    if (qmcf->jwt_jwk == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quay: instance key: cannot export the JWK");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_auth_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle)
{
    ngx_event_t  *ev;

    ev = &ngx_http_quay_auth_register_ev;
    ev->handler = ngx_http_quay_auth_register;
    ev->data = qmcf;
    ev->log = cycle->log;

    /* the worker may exit while this timer is pending */
    ev->cancelable = 1;

    ngx_add_timer(ev, 1);

    return NGX_OK;
}


void
ngx_http_quay_auth_exit_process(ngx_http_quay_main_conf_t *qmcf)
{
    ngx_uint_t  i;

    if (ngx_http_quay_auth_register_ev.timer_set) {
        ngx_del_timer(&ngx_http_quay_auth_register_ev);
    }

    if (ngx_http_quay_auth_register_pool != NULL) {
        ngx_destroy_pool(ngx_http_quay_auth_register_pool);
        ngx_http_quay_auth_register_pool = NULL;
    }

    for (i = 0; i < ngx_http_quay_auth_nforeign; i++) {
        quay_jwt_key_free(&ngx_http_quay_auth_foreign[i]);
    }

    ngx_http_quay_auth_nforeign = 0;
}


static void
ngx_http_quay_auth_register(ngx_event_t *ev)
{
    size_t                      len;
    ngx_pool_t                 *pool;
    ngx_http_quay_db_query_t   *q;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ev->data;

    if (ngx_http_quay_auth_register_pool != NULL) {
        ngx_destroy_pool(ngx_http_quay_auth_register_pool);
    }

    pool = ngx_create_pool(1024, ev->log);
    ngx_http_quay_auth_register_pool = pool;

    if (pool == NULL) {
        goto retry;
    }

    q = ngx_http_quay_db_query_create(pool, ev->log,
                                      QUAY_SQL_AUTH_SERVICEKEY_REGISTER);
    if (q == NULL) {
        goto retry;
    }

    len = ngx_strlen(qmcf->jwt_key->kid);
    ngx_http_quay_db_param(q, 0, (u_char *) qmcf->jwt_key->kid, len);
    ngx_http_quay_db_param(q, 1, (u_char *) qmcf->jwt_jwk,
                           ngx_strlen(qmcf->jwt_jwk));
    ngx_http_quay_db_param(q, 2, (u_char *) "quay instance key",
                           sizeof("quay instance key") - 1);

    q->handler = ngx_http_quay_auth_register_done;
    q->data = qmcf;

    if (ngx_http_quay_db_query_run(qmcf, q) == NGX_AGAIN) {
        return;
    }

retry:

    ngx_add_timer(ev, NGX_HTTP_QUAY_AUTH_REGISTER_RETRY);
}


static void
ngx_http_quay_auth_register_done(ngx_http_quay_db_query_t *q)
{
    ngx_event_t  *ev;

    ev = &ngx_http_quay_auth_register_ev;

    if (q->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "quay: cannot publish the instance key yet: %s",
                      q->error);
        ngx_add_timer(ev, NGX_HTTP_QUAY_AUTH_REGISTER_RETRY);
        return;
    }

    /* the pool (and q) are destroyed at the next registration or exit */
}


ngx_int_t
ngx_http_quay_auth_bearer(ngx_http_request_t *r,
    ngx_http_quay_token_t **token, ngx_http_quay_auth_done_pt done)
{
    u_char                       cache_key[QUAY_SHA256_DIGEST_LEN];
    ngx_str_t                    raw;
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    quay_err_t                   err;
    quay_jwt_header_t            hdr;
    ngx_table_elt_t             *h;
    ngx_http_quay_db_query_t    *q;
    ngx_http_quay_cache_gen_t    gen;
    ngx_http_quay_main_conf_t   *qmcf;
    ngx_http_quay_auth_fetch_t  *fetch;

    *token = NULL;

    h = r->headers_in.authorization;

    if (h == NULL) {
        return NGX_OK;
    }

    if (h->value.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        /* Basic credentials on /v2/ are not a token: anonymous */
        return NGX_OK;
    }

    raw.data = h->value.data + sizeof("Bearer ") - 1;
    raw.len = h->value.len - (sizeof("Bearer ") - 1);

    while (raw.len && raw.data[0] == ' ') {
        raw.data++;
        raw.len--;
    }

    /* seen before by some worker: no signature check, no JSON (lib's
     * SHA-256, not OpenSSL's, whose one-shot call takes a lock to fetch
     * the algorithm every time) */

    quay_sha256(raw.data, raw.len, cache_key);
    ngx_http_quay_cache_snapshot(NULL, NULL, &gen);

    rc = ngx_http_quay_auth_cached(r, cache_key, token);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (quay_jwt_peek_header((char *) raw.data, raw.len, &hdr, &err)
        != QUAY_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quay: malformed bearer token: %s", err.msg);
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (hdr.kid[0] == '\0') {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quay: bearer token without a kid");
        return NGX_HTTP_UNAUTHORIZED;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    if (ngx_strcmp(hdr.kid, qmcf->jwt_key->kid) == 0) {
        return ngx_http_quay_auth_verify(r, &raw, qmcf->jwt_key, cache_key,
                                         &gen, token);
    }

    for (i = 0; i < ngx_http_quay_auth_nforeign; i++) {
        if (ngx_strcmp(hdr.kid, ngx_http_quay_auth_foreign[i].kid) == 0) {
            return ngx_http_quay_auth_verify(r, &raw,
                                             &ngx_http_quay_auth_foreign[i],
                                             cache_key, &gen, token);
        }
    }

    /* another node's key: look it up once */

    fetch = ngx_palloc(r->pool, sizeof(ngx_http_quay_auth_fetch_t));
    if (fetch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fetch->r = r;
    fetch->token = token;
    fetch->done = done;
    fetch->raw = raw;
    fetch->gen = gen;
    ngx_memcpy(fetch->key, cache_key, QUAY_SHA256_DIGEST_LEN);

    q = ngx_http_quay_request_query(r, QUAY_SQL_AUTH_SERVICEKEY_BY_KID);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, (u_char *) hdr.kid, ngx_strlen(hdr.kid));
    q->udata = fetch;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_auth_fetch_done)
        != NGX_AGAIN)
    {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_auth_fetch_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                    jwk;
    ngx_int_t                    rc;
    quay_err_t                   err;
    quay_jwt_key_t               key;
    ngx_http_quay_auth_fetch_t  *fetch;

    rc = NGX_HTTP_UNAUTHORIZED;
    fetch = q->udata;

    if (q->rc != NGX_OK) {
        fetch->done(r, NGX_HTTP_SERVICE_UNAVAILABLE);
        return;
    }

    jwk = ngx_http_quay_db_value(q, 0, 0);

    if (jwk.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quay: bearer token signed by an unknown key");
        fetch->done(r, rc);
        return;
    }

    ngx_memzero(&key, sizeof(quay_jwt_key_t));

    if (quay_jwt_key_from_jwk((char *) jwk.data, jwk.len, &key, &err)
        != QUAY_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: servicekey has a bad JWK: %s", err.msg);
        fetch->done(r, rc);
        return;
    }

    if (ngx_http_quay_auth_nforeign < NGX_HTTP_QUAY_AUTH_MAX_FOREIGN_KEYS) {
        ngx_http_quay_auth_foreign[ngx_http_quay_auth_nforeign++] = key;
        rc = ngx_http_quay_auth_verify(r, &fetch->raw,
                  &ngx_http_quay_auth_foreign[ngx_http_quay_auth_nforeign - 1],
                  fetch->key, &fetch->gen, fetch->token);

    } else {
        rc = ngx_http_quay_auth_verify(r, &fetch->raw, &key, fetch->key,
                                       &fetch->gen, fetch->token);
        quay_jwt_key_free(&key);
    }

    fetch->done(r, rc);
}


static ngx_int_t
ngx_http_quay_auth_verify(ngx_http_request_t *r, ngx_str_t *raw,
    const quay_jwt_key_t *key, u_char *cache_key,
    ngx_http_quay_cache_gen_t *gen, ngx_http_quay_token_t **token)
{
    json_t                     *claims;
    ngx_int_t                   rc;
    quay_err_t                  err;
    ngx_http_quay_token_t      *t;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    t = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_token_t));
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    claims = NULL;

    if (quay_jwt_verify_rs256((char *) raw->data, raw->len, key,
                              qmcf->config->server_hostname,
                              NGX_HTTP_QUAY_TOKEN_ISSUER,
                              (long long) ngx_time(),
                              NGX_HTTP_QUAY_TOKEN_LEEWAY,
                              qmcf->config->registry_jwt_auth_max_fresh_s,
                              &claims, &err)
        != QUAY_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quay: bearer token rejected: %s", err.msg);
        return NGX_HTTP_UNAUTHORIZED;
    }

    rc = ngx_http_quay_auth_claims(r, claims, t);

    json_decref(claims);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_auth_cache_put(r->pool, cache_key, gen, t);

    *token = t;

    return NGX_OK;
}


/* The claims the data path needs, copied into r->pool. */

static ngx_int_t
ngx_http_quay_auth_claims(ngx_http_request_t *r, json_t *claims,
    ngx_http_quay_token_t *t)
{
    u_char      *p;
    size_t       i, j, len, tlen, nlen;
    json_t      *access, *entry, *actions, *v;
    ngx_str_t    s;
    ngx_uint_t   granted;
    const char  *type, *name, *action;

    v = json_object_get(claims, "sub");
    if (json_is_string(v)) {
        s.data = (u_char *) json_string_value(v);
        s.len = ngx_strlen(s.data);
        t->subject.data = ngx_pstrdup(r->pool, &s);
        t->subject.len = s.len;
        if (t->subject.data == NULL) {
            return NGX_ERROR;
        }
    }

    v = json_object_get(json_object_get(claims, "context"), "user_id");
    if (json_is_string(v)) {
        s.data = (u_char *) json_string_value(v);
        s.len = ngx_strlen(s.data);
        t->user_id.data = ngx_pstrdup(r->pool, &s);
        t->user_id.len = s.len;
        if (t->user_id.data == NULL) {
            return NGX_ERROR;
        }
    }

    /* the verifier made sure exp is there and is a time */
    t->exp = (time_t) json_number_value(json_object_get(claims, "exp"));

    access = json_object_get(claims, "access");

    len = 0;

    json_array_foreach(access, i, entry) {
        type = json_string_value(json_object_get(entry, "type"));
        name = json_string_value(json_object_get(entry, "name"));

        if (type != NULL && name != NULL) {
            len += 4 + ngx_strlen(type) + ngx_strlen(name);
        }
    }

    p = ngx_pnalloc(r->pool, len ? len : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    t->grants.data = p;

    json_array_foreach(access, i, entry) {

        type = json_string_value(json_object_get(entry, "type"));
        name = json_string_value(json_object_get(entry, "name"));

        if (type == NULL || name == NULL) {
            continue;
        }

        tlen = ngx_strlen(type);
        nlen = ngx_strlen(name);

        /* too long to be any valid type or repository name: it can
         * match nothing, so it grants nothing */

        if (tlen > 0xff || nlen > 0xffff) {
            continue;
        }

        granted = 0;
        actions = json_object_get(entry, "actions");

        json_array_foreach(actions, j, v) {
            action = json_string_value(v);

            if (action == NULL) {
                continue;
            }

            if (ngx_strcmp(action, "pull") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PULL;

            } else if (ngx_strcmp(action, "push") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PUSH;

            } else if (ngx_strcmp(action, "delete") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_DELETE;

            } else if (ngx_strcmp(action, "*") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PULL
                           | NGX_HTTP_QUAY_ACTION_PUSH
                           | NGX_HTTP_QUAY_ACTION_DELETE;
            }
        }

        *p++ = (u_char) granted;
        *p++ = (u_char) tlen;
        *p++ = (u_char) (nlen & 0xff);
        *p++ = (u_char) (nlen >> 8);
        p = ngx_cpymem(p, type, tlen);
        p = ngx_cpymem(p, name, nlen);
    }

    t->grants.len = p - t->grants.data;

    return NGX_OK;
}


/* NGX_OK with *token from the shared cache, NGX_DECLINED on a miss. */

static ngx_int_t
ngx_http_quay_auth_cached(ngx_http_request_t *r, u_char *cache_key,
    ngx_http_quay_token_t **token)
{
    u_char                 *p;
    int64_t                 exp;
    ngx_int_t               rc;
    ngx_str_t               v;
    ngx_uint_t              slen, ulen;
    ngx_http_quay_token_t  *t;

    rc = ngx_http_quay_cache_get(NGX_HTTP_QUAY_CACHE_TOKEN, cache_key,
                                 QUAY_SHA256_DIGEST_LEN, r->pool, &v);
    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                 : NGX_DECLINED;
    }

    if (v.len < NGX_HTTP_QUAY_AUTH_CACHED_HEAD) {
        return NGX_DECLINED;
    }

    p = v.data;
    ngx_memcpy(&exp, p, sizeof(int64_t));
    slen = p[8] | (p[9] << 8);
    ulen = p[10] | (p[11] << 8);

    if (NGX_HTTP_QUAY_AUTH_CACHED_HEAD + slen + ulen > v.len
        || (time_t) exp <= ngx_time())
    {
        return NGX_DECLINED;
    }

    t = ngx_palloc(r->pool, sizeof(ngx_http_quay_token_t));
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p += NGX_HTTP_QUAY_AUTH_CACHED_HEAD;

    t->exp = (time_t) exp;
    t->subject.data = p;
    t->subject.len = slen;
    t->user_id.data = p + slen;
    t->user_id.len = ulen;
    t->grants.data = p + slen + ulen;
    t->grants.len = v.len - NGX_HTTP_QUAY_AUTH_CACHED_HEAD - slen - ulen;

    *token = t;

    return NGX_OK;
}


/* Keeps a verified token until its exp. */

static void
ngx_http_quay_auth_cache_put(ngx_pool_t *pool, u_char *cache_key,
    ngx_http_quay_cache_gen_t *gen, ngx_http_quay_token_t *t)
{
    u_char   *p, *buf;
    size_t    len;
    time_t    now;
    int64_t   exp;

    now = ngx_time();

    if (t->exp <= now || t->subject.len > 0xffff || t->user_id.len > 0xffff)
    {
        return;
    }

    len = NGX_HTTP_QUAY_AUTH_CACHED_HEAD + t->subject.len + t->user_id.len
          + t->grants.len;

    buf = ngx_pnalloc(pool, len);
    if (buf == NULL) {
        return;
    }

    exp = (int64_t) t->exp;

    p = ngx_cpymem(buf, &exp, sizeof(int64_t));
    *p++ = (u_char) (t->subject.len & 0xff);
    *p++ = (u_char) (t->subject.len >> 8);
    *p++ = (u_char) (t->user_id.len & 0xff);
    *p++ = (u_char) (t->user_id.len >> 8);
    p = ngx_cpymem(p, t->subject.data, t->subject.len);
    p = ngx_cpymem(p, t->user_id.data, t->user_id.len);
    p = ngx_cpymem(p, t->grants.data, t->grants.len);

    ngx_http_quay_cache_put(NGX_HTTP_QUAY_CACHE_TOKEN, cache_key,
                            QUAY_SHA256_DIGEST_LEN, gen, buf, p - buf,
                            (ngx_msec_t) (t->exp - now) * 1000);
}


/*
 * The actions of the first access entry for type:name (the compact form:
 * actions, type length, name length low and high byte, type, name).
 */

ngx_uint_t
ngx_http_quay_auth_granted(ngx_http_quay_token_t *token, const char *type,
    ngx_str_t *name)
{
    u_char  *p, *last;
    size_t   tlen, nlen, want;

    if (token == NULL) {
        return 0;
    }

    want = ngx_strlen(type);
    p = token->grants.data;
    last = p + token->grants.len;

    while (last - p >= 4) {
        tlen = p[1];
        nlen = p[2] | (p[3] << 8);

        if ((size_t) (last - p) < 4 + tlen + nlen) {
            break;
        }

        if (tlen == want && nlen == name->len
            && ngx_strncmp(p + 4, type, tlen) == 0
            && ngx_strncmp(p + 4 + tlen, name->data, nlen) == 0)
        {
            return p[0];
        }

        p += 4 + tlen + nlen;
    }

    return 0;
}


ngx_int_t
ngx_http_quay_auth_challenge(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t actions)
{
    u_char                     *p;
    size_t                      len;
    ngx_table_elt_t            *h;
    quay_config_t              *cfg;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);
    cfg = qmcf->config;

    len = sizeof("Bearer realm=\"://\",service=\"\"") - 1
          + ngx_strlen(cfg->preferred_url_scheme)
          + 2 * ngx_strlen(cfg->server_hostname) + sizeof("/v2/auth") - 1;

    if (name != NULL) {
        len += sizeof(",scope=\"repository::pull,push,delete\"") - 1
               + name->len;
    }

    p = ngx_pnalloc(r->pool, len);
    h = ngx_list_push(&r->headers_out.headers);

    if (p == NULL || h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    p = ngx_sprintf(p, "Bearer realm=\"%s://%s/v2/auth\",service=\"%s\"",
                    cfg->preferred_url_scheme, cfg->server_hostname,
                    cfg->server_hostname);

    if (name != NULL) {
        p = ngx_sprintf(p, ",scope=\"repository:%V:%s%s%s\"", name,
                        (actions & NGX_HTTP_QUAY_ACTION_PULL) ? "pull" : "",
                        (actions & NGX_HTTP_QUAY_ACTION_PUSH)
                        ? ((actions & NGX_HTTP_QUAY_ACTION_PULL)
                           ? ",push" : "push")
                        : "",
                        (actions & NGX_HTTP_QUAY_ACTION_DELETE)
                        ? (actions != NGX_HTTP_QUAY_ACTION_DELETE
                           ? ",delete" : "delete")
                        : "");
    }

    h->value.len = p - h->value.data;

    return NGX_OK;
}
