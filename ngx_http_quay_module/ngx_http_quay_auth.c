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
 * The verified claims are attached to the request (pool cleanup frees
 * them); the access claim then answers "may this request pull/push/delete
 * on that repository" without another query.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_base64.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_v2.h"


#define NGX_HTTP_QUAY_AUTH_MAX_FOREIGN_KEYS  64
#define NGX_HTTP_QUAY_AUTH_REGISTER_RETRY    3000


typedef struct {
    ngx_http_request_t            *r;
    ngx_http_quay_token_t        **token;
    ngx_http_quay_auth_done_pt     done;
    ngx_str_t                      raw;      /* the token text */
} ngx_http_quay_auth_fetch_t;


static ngx_int_t ngx_http_quay_auth_verify(ngx_http_request_t *r,
    ngx_str_t *raw, const quay_jwt_key_t *key,
    ngx_http_quay_token_t **token);
static void ngx_http_quay_auth_fetch_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_auth_register(ngx_event_t *ev);
static void ngx_http_quay_auth_register_done(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_auth_claims_cleanup(void *data);


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
    ngx_str_t                    raw;
    ngx_uint_t                   i;
    quay_err_t                   err;
    quay_jwt_header_t            hdr;
    ngx_table_elt_t             *h;
    ngx_http_quay_db_query_t    *q;
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
        return ngx_http_quay_auth_verify(r, &raw, qmcf->jwt_key, token);
    }

    for (i = 0; i < ngx_http_quay_auth_nforeign; i++) {
        if (ngx_strcmp(hdr.kid, ngx_http_quay_auth_foreign[i].kid) == 0) {
            return ngx_http_quay_auth_verify(r, &raw,
                                             &ngx_http_quay_auth_foreign[i],
                                             token);
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
                  fetch->token);

    } else {
        rc = ngx_http_quay_auth_verify(r, &fetch->raw, &key, fetch->token);
        quay_jwt_key_free(&key);
    }

    fetch->done(r, rc);
}


static ngx_int_t
ngx_http_quay_auth_verify(ngx_http_request_t *r, ngx_str_t *raw,
    const quay_jwt_key_t *key, ngx_http_quay_token_t **token)
{
    json_t                     *claims, *v;
    quay_err_t                  err;
    const char                 *s;
    ngx_pool_cleanup_t         *cln;
    ngx_http_quay_token_t      *t;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    t = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_token_t));

    if (cln == NULL || t == NULL) {
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

    cln->handler = ngx_http_quay_auth_claims_cleanup;
    cln->data = claims;

    t->claims = claims;

    s = json_string_value(json_object_get(claims, "sub"));
    if (s != NULL) {
        t->subject.data = (u_char *) s;
        t->subject.len = ngx_strlen(s);
    }

    v = json_object_get(json_object_get(claims, "context"), "user_id");
    s = json_string_value(v);
    if (s != NULL) {
        t->user_id.data = (u_char *) s;
        t->user_id.len = ngx_strlen(s);
    }

    *token = t;

    return NGX_OK;
}


static void
ngx_http_quay_auth_claims_cleanup(void *data)
{
    json_decref(data);
}


ngx_uint_t
ngx_http_quay_auth_granted(ngx_http_quay_token_t *token, const char *type,
    ngx_str_t *name)
{
    size_t       i, j;
    json_t      *access, *entry, *actions;
    ngx_uint_t   granted;
    const char  *s;

    if (token == NULL) {
        return 0;
    }

    access = json_object_get(token->claims, "access");
    granted = 0;

    json_array_foreach(access, i, entry) {

        s = json_string_value(json_object_get(entry, "type"));
        if (s == NULL || ngx_strcmp(s, type) != 0) {
            continue;
        }

        s = json_string_value(json_object_get(entry, "name"));
        if (s == NULL || ngx_strlen(s) != name->len
            || ngx_strncmp(s, name->data, name->len) != 0)
        {
            continue;
        }

        actions = json_object_get(entry, "actions");

        json_array_foreach(actions, j, entry) {
            s = json_string_value(entry);

            if (s == NULL) {
                continue;
            }

            if (ngx_strcmp(s, "pull") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PULL;

            } else if (ngx_strcmp(s, "push") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PUSH;

            } else if (ngx_strcmp(s, "delete") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_DELETE;

            } else if (ngx_strcmp(s, "*") == 0) {
                granted |= NGX_HTTP_QUAY_ACTION_PULL
                           | NGX_HTTP_QUAY_ACTION_PUSH
                           | NGX_HTTP_QUAY_ACTION_DELETE;
            }
        }

        break;
    }

    return granted;
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
