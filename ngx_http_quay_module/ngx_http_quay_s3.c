/*
 * S3 from inside nginx: the part of the S3 storage driver that talks to
 * the bucket (ngx_http_quay_s3.h), also used by /health/endtoend.
 *
 * DESIGN.  Every S3 request is an nginx subrequest to the internal
 * location /_quay_s3/ (conf/quay-storage.conf), whose proxy_pass takes
 * its target and signed headers from the $quay_s3_* variables set on
 * the subrequest: $quay_s3_url, $quay_s3_host, $quay_s3_authorization,
 * $quay_s3_date, $quay_s3_content_sha256, and the optional copy source,
 * copy range, security token and content type.  The subrequest gets a
 * variables array and a request body of its own, so it never sees the
 * client's headers or body; a body that is a file goes out with
 * sendfile; the answer, a few hundred bytes of XML and the ETag header,
 * is kept in memory (NGX_HTTP_SUBREQUEST_IN_MEMORY) and copied out.  The
 * post handler only records it and posts an event: the caller goes on
 * from there, on the event loop, once nginx has finished the
 * subrequest.  Timeouts are proxy_*_timeout of the location.
 *
 * Memory.  Each S3 request has a pool of its own, which also holds the
 * subrequest (made while the parent's pool is swapped for it, when the
 * subrequest will be the active one and so leaves nothing behind) and is
 * destroyed once the subrequest is done: a 20 GiB upload makes 4,000 of
 * them, and the main request's pool must not grow with each.
 *
 * Signing is lib/quay_sigv4.c (header signing for the subrequests,
 * query signing for presigned URLs), with one signing key cache per
 * worker process.  Addressing is path-style, /<bucket>/<key>, which RGW
 * and every S3 region serve.  No libcurl, no blocking call, no resolver
 * at run time: quay_config registers each endpoint as an implicit
 * upstream, so nginx resolves host names when it loads its
 * configuration.  Secrets (keys, signatures, presigned URLs) are never
 * logged.
 *
 * Proxied pulls (FEATURE_PROXY_STORAGE) use the same variables on the
 * main request, then an internal redirect to /_quay_s3_proxy/: variables
 * survive it, module contexts do not.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_sigv4.h"
#include "quay_sha256.h"
#include "ngx_http_quay_module.h"
#include "ngx_http_quay_storage.h"
#include "ngx_http_quay_s3.h"


#define NGX_HTTP_QUAY_S3_REGION          "us-east-1"
#define NGX_HTTP_QUAY_S3_MAX_HEADERS     6


typedef enum {
    NGX_HTTP_QUAY_S3_VAR_URL = 0,
    NGX_HTTP_QUAY_S3_VAR_HOST,
    NGX_HTTP_QUAY_S3_VAR_AUTHORIZATION,
    NGX_HTTP_QUAY_S3_VAR_DATE,
    NGX_HTTP_QUAY_S3_VAR_CONTENT_SHA256,
    NGX_HTTP_QUAY_S3_VAR_SECURITY_TOKEN,
    NGX_HTTP_QUAY_S3_VAR_COPY_SOURCE,
    NGX_HTTP_QUAY_S3_VAR_COPY_SOURCE_RANGE,
    NGX_HTTP_QUAY_S3_VAR_CONTENT_TYPE,
    NGX_HTTP_QUAY_S3_VAR_RANGE,
    NGX_HTTP_QUAY_S3_VAR_BLOB_DIGEST,
    NGX_HTTP_QUAY_S3_VAR_COUNT
} ngx_http_quay_s3_var_e;

typedef struct {
    ngx_http_quay_s3_req_t          sq;
    ngx_http_quay_s3_endpoint_t     ep;
    ngx_http_quay_storage_op_t     *op;
} ngx_http_quay_s3_check_t;


static ngx_int_t ngx_http_quay_s3_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_quay_s3_amz_date(u_char *date);
static void ngx_http_quay_s3_credentials(const quay_storage_location_t *loc,
    ngx_http_quay_s3_endpoint_t *ep, quay_sigv4_credentials_t *cred);
static ngx_int_t ngx_http_quay_s3_sign(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_quay_s3_req_t *sq, u_char *amz_date,
    ngx_str_t *url, ngx_str_t *authorization, ngx_str_t *payload);
static u_char *ngx_http_quay_s3_encode_path(ngx_pool_t *pool,
    ngx_http_quay_s3_endpoint_t *ep, ngx_str_t *key, size_t *len);
static void ngx_http_quay_s3_set_var(ngx_http_request_t *r,
    ngx_http_quay_s3_var_e var, u_char *data, size_t len);
static ngx_int_t ngx_http_quay_s3_request_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_quay_s3_request_event(ngx_event_t *ev);
static void ngx_http_quay_s3_req_cleanup(void *data);
static void ngx_http_quay_s3_pool_destroy(void *data);
static void ngx_http_quay_s3_check_done(ngx_http_quay_s3_req_t *sq);


static ngx_str_t  ngx_http_quay_s3_var_names[NGX_HTTP_QUAY_S3_VAR_COUNT] = {
    ngx_string("quay_s3_url"),
    ngx_string("quay_s3_host"),
    ngx_string("quay_s3_authorization"),
    ngx_string("quay_s3_date"),
    ngx_string("quay_s3_content_sha256"),
    ngx_string("quay_s3_security_token"),
    ngx_string("quay_s3_copy_source"),
    ngx_string("quay_s3_copy_source_range"),
    ngx_string("quay_s3_content_type"),
    ngx_string("quay_s3_range"),
    ngx_string("quay_blob_digest")
};

/* indexes in r->variables, set at configuration time (same in every
 * worker, which inherits them from the master) */
static ngx_int_t  ngx_http_quay_s3_vars[NGX_HTTP_QUAY_S3_VAR_COUNT];

/* signing keys, one derivation per day and scope in each worker */
static quay_sigv4_key_cache_t  ngx_http_quay_s3_keys;
static ngx_uint_t              ngx_http_quay_s3_keys_ready;


/* ------------------------------------------------------------ config */


ngx_int_t
ngx_http_quay_storage_s3_add_variables(ngx_conf_t *cf)
{
    ngx_uint_t             i;
    ngx_int_t              index;
    ngx_http_variable_t   *var;

    for (i = 0; i < NGX_HTTP_QUAY_S3_VAR_COUNT; i++) {
        var = ngx_http_add_variable(cf, &ngx_http_quay_s3_var_names[i],
                                    NGX_HTTP_VAR_NOHASH);
        if (var == NULL) {
            return NGX_ERROR;
        }

        /* values are set on the (sub)request before nginx reads them;
         * never set means "not found", which proxy_set_header skips */

        var->get_handler = ngx_http_quay_s3_variable;
        var->data = i;

        index = ngx_http_get_variable_index(cf,
                                            &ngx_http_quay_s3_var_names[i]);
        if (index == NGX_ERROR) {
            return NGX_ERROR;
        }

        ngx_http_quay_s3_vars[i] = index;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_s3_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_storage_s3_conf(ngx_conf_t *cf, const quay_config_t *config)
{
    u_char                         *p;
    size_t                          i;
    ngx_url_t                       u;
    ngx_http_quay_s3_endpoint_t     ep;
    const quay_storage_location_t  *loc;

    for (i = 0; i < config->nstorage; i++) {
        loc = &config->storage[i];

        if (loc->driver != QUAY_STORAGE_S3
            && loc->driver != QUAY_STORAGE_RADOSGW)
        {
            continue;
        }

        if (ngx_http_quay_s3_endpoint(cf->pool, loc, &ep) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: storage location \"%s\": no usable "
                               "endpoint", loc->name);
            return NGX_ERROR;
        }

        /*
         * "host:port", as proxy_pass would add it: the upstream module
         * resolves it when the configuration is loaded, and a proxy_pass
         * with variables that names the same host and port uses it
         * instead of a resolver.
         */

        p = ngx_pnalloc(cf->pool, ep.hostname.len + sizeof(":65535"));
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = ngx_sprintf(p, "%V:%d", &ep.hostname, (int) ep.port)
                    - p;
        u.default_port = ep.port;
        u.no_resolve = 1;

        if (ngx_http_upstream_add(cf, &u, 0) == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: storage location \"%s\": bad endpoint "
                               "\"%V\"", loc->name, &u.url);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The endpoint of loc (reference 4.2): RadosGWStorage's hostname, port and
 * is_secure; S3Storage's endpoint_url, or host and port, or the AWS
 * endpoint of s3_region.  Requests use path-style addressing
 * (/<bucket>/<key>), which RGW and every S3 region serve.
 */

ngx_int_t
ngx_http_quay_s3_endpoint(ngx_pool_t *pool,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep)
{
    u_char      *p, *last, *start, *colon;
    size_t       len;
    ngx_int_t    port;
    ngx_uint_t   secure;

    ngx_memzero(ep, sizeof(ngx_http_quay_s3_endpoint_t));

    secure = loc->is_secure;

    if (loc->endpoint_url != NULL) {
        p = (u_char *) loc->endpoint_url;
        last = p + ngx_strlen(p);

        if (ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
            secure = 1;
            start = p + 8;

        } else if (ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
            secure = 0;
            start = p + 7;

        } else {
            return NGX_ERROR;
        }

        p = ngx_strlchr(start, last, '/');
        if (p != NULL) {
            last = p;
        }

        ep->host.data = start;
        ep->host.len = last - start;

    } else if (loc->host != NULL) {
        len = ngx_strlen(loc->host);

        ep->host.data = ngx_pnalloc(pool, len + sizeof(":65535"));
        if (ep->host.data == NULL) {
            return NGX_ERROR;
        }

        if (loc->port) {
            ep->host.len = ngx_sprintf(ep->host.data, "%s:%d", loc->host,
                                       loc->port)
                           - ep->host.data;
        } else {
            ep->host.len = ngx_sprintf(ep->host.data, "%s", loc->host)
                           - ep->host.data;
        }

    } else if (loc->region != NULL) {
        len = ngx_strlen(loc->region);
        secure = 1;

        ep->host.data = ngx_pnalloc(pool, len + sizeof("s3..amazonaws.com.cn"));
        if (ep->host.data == NULL) {
            return NGX_ERROR;
        }

        ep->host.len = ngx_sprintf(ep->host.data, "s3.%s.amazonaws.com%s",
                                   loc->region,
                                   ngx_strncmp(loc->region, "cn-", 3) == 0
                                   ? ".cn" : "")
                       - ep->host.data;

    } else {
        return NGX_ERROR;
    }

    if (ep->host.len == 0 || loc->bucket == NULL || loc->bucket[0] == '\0')
    {
        return NGX_ERROR;
    }

    if (secure) {
        ngx_str_set(&ep->scheme, "https");
        ep->port = 443;

    } else {
        ngx_str_set(&ep->scheme, "http");
        ep->port = 80;
    }

    /* an explicit port, after an IPv6 literal's ']' if there is one */

    start = ep->host.data;
    last = ep->host.data + ep->host.len;

    if (start[0] == '[') {
        p = ngx_strlchr(start, last, ']');
        if (p == NULL) {
            return NGX_ERROR;
        }

        start = p;
    }

    colon = ngx_strlchr(start, last, ':');

    ep->hostname.data = ep->host.data;
    ep->hostname.len = (colon ? colon : last) - ep->host.data;

    if (colon != NULL) {
        port = ngx_atoi(colon + 1, last - colon - 1);
        if (port < 1 || port > 65535) {
            return NGX_ERROR;
        }

        ep->port = (in_port_t) port;
    }

    if (loc->region != NULL) {
        ep->region.data = (u_char *) loc->region;
        ep->region.len = ngx_strlen(loc->region);

    } else {
        ngx_str_set(&ep->region, NGX_HTTP_QUAY_S3_REGION);
    }

    ep->bucket.data = (u_char *) loc->bucket;
    ep->bucket.len = ngx_strlen(loc->bucket);

    /* Quay joins keys under storage_path; "/registry/" is "registry" */

    p = (u_char *) loc->storage_path;
    last = p + ngx_strlen(loc->storage_path);

    while (p < last && *p == '/') {
        p++;
    }

    while (last > p && last[-1] == '/') {
        last--;
    }

    ep->prefix.data = p;
    ep->prefix.len = last - p;

    return NGX_OK;
}


/* "<prefix>/<rel>", or rel when there is no prefix, in pool. */

ngx_int_t
ngx_http_quay_s3_key(ngx_pool_t *pool, ngx_http_quay_s3_endpoint_t *ep,
    u_char *rel, size_t len, ngx_str_t *key)
{
    u_char  *p;

    key->len = (ep->prefix.len ? ep->prefix.len + 1 : 0) + len;

    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = key->data;

    if (ep->prefix.len) {
        p = ngx_cpymem(p, ep->prefix.data, ep->prefix.len);
        *p++ = '/';
    }

    (void) ngx_cpymem(p, rel, len);

    return NGX_OK;
}


/* Now as "YYYYMMDDTHHMMSSZ" (QUAY_SIGV4_AMZ_DATE_LEN bytes and a NUL). */

static void
ngx_http_quay_s3_amz_date(u_char *date)
{
    ngx_tm_t  tm;

    ngx_gmtime(ngx_time(), &tm);

    (void) ngx_sprintf(date, "%4d%02d%02dT%02d%02d%02dZ%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* "/<bucket>[/<key>]" URI-encoded the S3 way, '/' kept, in pool. */

static u_char *
ngx_http_quay_s3_encode_path(ngx_pool_t *pool,
    ngx_http_quay_s3_endpoint_t *ep, ngx_str_t *key, size_t *len)
{
    u_char  *path, *p;
    size_t   raw_len;

    raw_len = 1 + ep->bucket.len + (key->len ? 1 + key->len : 0);

    path = ngx_pnalloc(pool, raw_len);
    if (path == NULL) {
        return NULL;
    }

    p = path;
    *p++ = '/';
    p = ngx_cpymem(p, ep->bucket.data, ep->bucket.len);

    if (key->len) {
        *p++ = '/';
        (void) ngx_cpymem(p, key->data, key->len);
    }

    *len = quay_sigv4_uri_encode((char *) path, raw_len, 1, NULL);

    p = ngx_pnalloc(pool, *len);
    if (p == NULL) {
        return NULL;
    }

    (void) quay_sigv4_uri_encode((char *) path, raw_len, 1, (char *) p);

    return p;
}


/*
 * Signs sq (header signing): *url is the URL to proxy_pass to,
 * *authorization the header value, *payload the x-amz-content-sha256
 * value.  The signed headers are host, x-amz-content-sha256, x-amz-date
 * and the optional x-amz-copy-source, x-amz-copy-source-range and
 * x-amz-security-token: every x-amz-* header sent (S3 wants them all
 * signed) and nothing nginx might rewrite.
 */

static ngx_int_t
ngx_http_quay_s3_sign(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_http_quay_s3_req_t *sq, u_char *amz_date, ngx_str_t *url,
    ngx_str_t *authorization, ngx_str_t *payload)
{
    u_char                        *path, *p;
    size_t                         path_len, len, n, raw_len;
    ngx_uint_t                     i, nheaders;
    quay_err_t                     err;
    quay_sigv4_request_t           req;
    quay_sigv4_header_t            headers[NGX_HTTP_QUAY_S3_MAX_HEADERS];
    quay_sigv4_credentials_t       cred;
    const quay_storage_location_t *loc;
    ngx_http_quay_s3_endpoint_t   *ep;

    loc = sq->loc;
    ep = sq->ep;

    if (sq->payload.len) {
        *payload = sq->payload;

    } else if (sq->body != NULL) {
        ngx_str_set(payload, QUAY_SIGV4_UNSIGNED_PAYLOAD);

    } else {
        ngx_str_set(payload, QUAY_SIGV4_EMPTY_SHA256);
    }

    /* the raw path, for the signer, and the encoded one, for the URL */

    raw_len = 1 + ep->bucket.len + (sq->key.len ? 1 + sq->key.len : 0);

    p = ngx_pnalloc(pool, raw_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    path = p;
    *p++ = '/';
    p = ngx_cpymem(p, ep->bucket.data, ep->bucket.len);

    if (sq->key.len) {
        *p++ = '/';
        (void) ngx_cpymem(p, sq->key.data, sq->key.len);
    }

    nheaders = 0;

#define ngx_http_quay_s3_header(n, v, vl)                                     \
    headers[nheaders].name = n;                                               \
    headers[nheaders].name_len = sizeof(n) - 1;                               \
    headers[nheaders].value = (const char *) (v);                             \
    headers[nheaders].value_len = vl;                                         \
    nheaders++

    ngx_http_quay_s3_header("host", ep->host.data, ep->host.len);
    ngx_http_quay_s3_header("x-amz-content-sha256", payload->data,
                            payload->len);
    ngx_http_quay_s3_header("x-amz-date", amz_date, QUAY_SIGV4_AMZ_DATE_LEN);

    if (sq->copy_source.len) {
        ngx_http_quay_s3_header("x-amz-copy-source", sq->copy_source.data,
                                sq->copy_source.len);
    }

    if (sq->copy_range.len) {
        ngx_http_quay_s3_header("x-amz-copy-source-range",
                                sq->copy_range.data, sq->copy_range.len);
    }

    if (loc->session_token != NULL) {
        ngx_http_quay_s3_header("x-amz-security-token", loc->session_token,
                                ngx_strlen(loc->session_token));
    }

#undef ngx_http_quay_s3_header

    ngx_memzero(&req, sizeof(quay_sigv4_request_t));

    req.method = (const char *) sq->method_name.data;
    req.method_len = sq->method_name.len;
    req.path = (const char *) path;
    req.path_len = raw_len;
    req.query = sq->query;
    req.nquery = sq->nquery;
    req.headers = headers;
    req.nheaders = nheaders;
    req.payload_hash = (const char *) payload->data;
    req.payload_hash_len = payload->len;
    req.amz_date = (const char *) amz_date;
    req.amz_date_len = QUAY_SIGV4_AMZ_DATE_LEN;

    ngx_http_quay_s3_credentials(loc, ep, &cred);

    err.code = 0;
    err.msg[0] = '\0';

    if (quay_sigv4_sign_headers(&cred, &req, NULL, 0, &len, &err)
        != QUAY_OK)
    {
        goto failed;
    }

    authorization->data = ngx_pnalloc(pool, len + 1);
    if (authorization->data == NULL) {
        return NGX_ERROR;
    }

    if (quay_sigv4_sign_headers(&cred, &req, (char *) authorization->data,
                                len + 1, &len, &err)
        != QUAY_OK)
    {
        goto failed;
    }

    authorization->len = len;

    /* scheme://host/encoded-path?query */

    path_len = quay_sigv4_uri_encode((char *) path, raw_len, 1, NULL);

    len = ep->scheme.len + sizeof("://") - 1 + ep->host.len + path_len + 1;

    for (i = 0; i < sq->nquery; i++) {
        len += quay_sigv4_uri_encode(sq->query[i].name,
                                     sq->query[i].name_len, 0, NULL)
               + quay_sigv4_uri_encode(sq->query[i].value,
                                       sq->query[i].value_len, 0, NULL)
               + 2;
    }

    url->data = ngx_pnalloc(pool, len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(url->data, "%V://%V", &ep->scheme, &ep->host);
    p += quay_sigv4_uri_encode((char *) path, raw_len, 1, (char *) p);

    for (i = 0; i < sq->nquery; i++) {
        *p++ = i ? '&' : '?';
        n = quay_sigv4_uri_encode(sq->query[i].name, sq->query[i].name_len,
                                  0, (char *) p);
        p += n;
        *p++ = '=';
        n = quay_sigv4_uri_encode(sq->query[i].value,
                                  sq->query[i].value_len, 0, (char *) p);
        p += n;
    }

    url->len = p - url->data;

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "quay: storage location \"%s\": cannot sign %s: %s",
                  loc->name, sq->what, err.msg);

    return NGX_ERROR;
}


/* Who signs: the location's keys, its region, the worker's key cache. */

static void
ngx_http_quay_s3_credentials(const quay_storage_location_t *loc,
    ngx_http_quay_s3_endpoint_t *ep, quay_sigv4_credentials_t *cred)
{
    if (!ngx_http_quay_s3_keys_ready) {
        quay_sigv4_key_cache_init(&ngx_http_quay_s3_keys);
        ngx_http_quay_s3_keys_ready = 1;
    }

    cred->access_key = loc->access_key;
    cred->access_key_len = ngx_strlen(loc->access_key);
    cred->secret_key = loc->secret_key;
    cred->secret_key_len = ngx_strlen(loc->secret_key);
    cred->region = (const char *) ep->region.data;
    cred->region_len = ep->region.len;
    cred->service = "s3";
    cred->service_len = 2;
    cred->cache = &ngx_http_quay_s3_keys;
}


static void
ngx_http_quay_s3_set_var(ngx_http_request_t *r, ngx_http_quay_s3_var_e var,
    u_char *data, size_t len)
{
    ngx_http_variable_value_t  *v;

    v = &r->variables[ngx_http_quay_s3_vars[var]];

    v->data = data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->escape = 0;
}


/* ------------------------------------------------------ S3 requests */


ngx_http_quay_s3_req_t *
ngx_http_quay_s3_req_init(ngx_http_quay_s3_req_t *sq, ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep)
{
    ngx_pool_cleanup_t  *cln;

    if (sq == NULL) {
        sq = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_s3_req_t));
        if (sq == NULL) {
            return NULL;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_quay_s3_req_cleanup;
    cln->data = sq;

    sq->r = r;
    sq->loc = loc;
    sq->ep = ep;

    sq->event.handler = ngx_http_quay_s3_request_event;
    sq->event.data = sq;
    sq->event.log = r->connection->log;

    return sq;
}


/* Clears the previous request's fields and results. */

void
ngx_http_quay_s3_req_reset(ngx_http_quay_s3_req_t *sq, ngx_uint_t method,
    const char *what, ngx_str_t *key)
{
    sq->method = method;
    sq->what = what;
    sq->key = *key;
    sq->nquery = 0;
    ngx_str_null(&sq->copy_source);
    ngx_str_null(&sq->copy_range);
    ngx_str_null(&sq->range);
    ngx_str_null(&sq->content_type);
    ngx_str_null(&sq->payload);
    sq->body = NULL;
    sq->body_len = 0;
    sq->into = NULL;
    sq->into_size = 0;
    sq->status = 0;
    ngx_str_null(&sq->response);
    ngx_str_null(&sq->etag);

    switch (method) {

    case NGX_HTTP_PUT:
        ngx_str_set(&sq->method_name, "PUT");
        break;

    case NGX_HTTP_POST:
        ngx_str_set(&sq->method_name, "POST");
        break;

    case NGX_HTTP_DELETE:
        ngx_str_set(&sq->method_name, "DELETE");
        break;

    case NGX_HTTP_HEAD:
        ngx_str_set(&sq->method_name, "HEAD");
        break;

    default:
        ngx_str_set(&sq->method_name, "GET");
        break;
    }
}


/* The pool of the request being prepared, made on first use. */

ngx_pool_t *
ngx_http_quay_s3_req_pool(ngx_http_quay_s3_req_t *sq)
{
    if (sq->pool == NULL) {
        sq->pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                                   sq->r->connection->log);
    }

    return sq->pool;
}


/*
 * Sends sq as a subrequest to /_quay_s3/.  Returns NGX_OK (sq->handler
 * will run from a posted event) or NGX_ERROR (logged; it will not).
 */

ngx_int_t
ngx_http_quay_s3_request(ngx_http_quay_s3_req_t *sq)
{
    u_char                       *amz_date, *copy, *p;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_str_t                     uri, url, authorization, payload;
    ngx_pool_t                   *pool, *saved;
    ngx_uint_t                    swap;
    ngx_connection_t             *c;
    ngx_http_request_t           *r, *sr;
    ngx_pool_cleanup_t           *cln;
    ngx_http_request_body_t      *rb;
    ngx_http_post_subrequest_t   *ps;
    ngx_http_core_main_conf_t    *cmcf;

    r = sq->r;
    c = r->connection;

    if (sq->out) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "quay: storage: %s started while a request is out",
                      sq->what);
        return NGX_ERROR;
    }

    pool = ngx_http_quay_s3_req_pool(sq);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    amz_date = ngx_pnalloc(pool, QUAY_SIGV4_AMZ_DATE_LEN + 1);
    if (amz_date == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_s3_amz_date(amz_date);

    if (ngx_http_quay_s3_sign(r, pool, sq, amz_date, &url, &authorization,
                              &payload)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ps = ngx_palloc(pool, sizeof(ngx_http_post_subrequest_t));
    rb = ngx_pcalloc(pool, sizeof(ngx_http_request_body_t));
    if (ps == NULL || rb == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_quay_s3_request_done;
    ps->data = sq;

    ngx_str_set(&uri, NGX_HTTP_QUAY_S3_LOCATION);

    /*
     * nginx makes a subrequest and everything it uses from the parent's
     * pool.  When the subrequest will be the active one (the parent is,
     * and has nothing postponed), nothing of it outlives its end, so it
     * is made in our pool instead: lent to the parent for this call.
     */

    swap = (c->data == r && r->postponed == NULL);

    saved = r->pool;

    if (swap) {
        r->pool = pool;
    }

    rc = ngx_http_subrequest(r, &uri, NULL, &sr, ps,
                             NGX_HTTP_SUBREQUEST_IN_MEMORY
                             |NGX_HTTP_SUBREQUEST_WAITED);

    r->pool = saved;

    if (rc != NGX_OK) {

        /* the parent may point into the pool now: keep it to the end */

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln != NULL) {
            cln->handler = ngx_http_quay_s3_pool_destroy;
            cln->data = pool;
            sq->pool = NULL;
        }

        return NGX_ERROR;
    }

    /*
     * The subrequest shares the parent's variables and request body:
     * give it its own, so that it sends our body (or none) and our
     * variables are its alone.  Nothing of it has run yet: it was only
     * posted.
     */

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    sr->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                      * sizeof(ngx_http_variable_value_t));
    if (sr->variables == NULL) {
        return NGX_ERROR;
    }

    rb->bufs = sq->body;
    sr->request_body = rb;
    sr->headers_in.chunked = 0;
    sr->headers_in.content_length_n =
        sq->body ? sq->body_len
                 : (sq->method & (NGX_HTTP_PUT|NGX_HTTP_POST)) ? 0 : -1;

    sr->method = sq->method;
    sr->method_name = sq->method_name;

    ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_URL, url.data,
                             url.len);
    ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_HOST,
                             sq->ep->host.data, sq->ep->host.len);
    ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_AUTHORIZATION,
                             authorization.data, authorization.len);
    ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_DATE, amz_date,
                             QUAY_SIGV4_AMZ_DATE_LEN);
    ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_CONTENT_SHA256,
                             payload.data, payload.len);

    if (sq->loc->session_token != NULL) {
        ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_SECURITY_TOKEN,
                                 (u_char *) sq->loc->session_token,
                                 ngx_strlen(sq->loc->session_token));
    }

    if (sq->copy_source.len) {
        /* "/<bucket>/<key>", URI-encoded (S3 decodes it) */

        len = quay_sigv4_uri_encode((char *) sq->copy_source.data,
                                    sq->copy_source.len, 1, NULL);

        copy = ngx_pnalloc(pool, len);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        p = copy + quay_sigv4_uri_encode((char *) sq->copy_source.data,
                                         sq->copy_source.len, 1,
                                         (char *) copy);

        ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_COPY_SOURCE, copy,
                                 p - copy);
    }

    if (sq->copy_range.len) {
        ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_COPY_SOURCE_RANGE,
                                 sq->copy_range.data, sq->copy_range.len);
    }

    if (sq->range.len) {
        ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_RANGE,
                                 sq->range.data, sq->range.len);
    }

    if (sq->content_type.len) {
        ngx_http_quay_s3_set_var(sr, NGX_HTTP_QUAY_S3_VAR_CONTENT_TYPE,
                                 sq->content_type.data,
                                 sq->content_type.len);
    }

    sq->out = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "quay s3: %s %V \"%V\"", sq->what, &sq->method_name,
                   &sq->key);

    return NGX_OK;
}


/*
 * The subrequest is being finalized: record S3's answer (copied out of
 * the request's pool, which goes soon) and post the continuation.  May be
 * called again (an error page of the subrequest): only the first call
 * counts.  A status error of the subrequest itself is turned into NGX_OK,
 * so nginx makes no error page in memory; only a dead client (or no
 * memory) ends the main request here.
 */

static ngx_int_t
ngx_http_quay_s3_request_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_quay_s3_req_t  *sq = data;

    ngx_buf_t            *b;
    ngx_str_t             value;
    ngx_http_upstream_t  *u;

    if (!sq->out || sq->event.posted) {
        return rc;
    }

    u = sr->upstream;

    if (u == NULL) {
        ngx_log_error(NGX_LOG_ALERT, sr->connection->log, 0,
                      "quay: storage: \"" NGX_HTTP_QUAY_S3_LOCATION "\" is "
                      "not a proxy_pass location: add it to the server "
                      "block, as in conf/quay-storage.conf");
        sq->status = 0;

    } else {
        sq->status = u->headers_in.status_n;
    }

    if (sq->status) {
        if (sr->out != NULL && sr->out->buf != NULL) {
            b = sr->out->buf;
            value.data = b->pos;
            value.len = b->last - b->pos;

            if (sq->into != NULL) {
                /* a GetObject range: the caller's buffer, reused */
                value.len = ngx_min(value.len, sq->into_size);
                ngx_memcpy(sq->into, value.data, value.len);
                sq->response.data = sq->into;
                sq->response.len = value.len;

            } else {
                sq->response.data = ngx_pstrdup(sq->r->pool, &value);
                sq->response.len = sq->response.data ? value.len : 0;
            }
        }

        if (sr->headers_out.etag != NULL) {
            sq->etag.data = ngx_pstrdup(sq->r->pool,
                                        &sr->headers_out.etag->value);
            sq->etag.len = sq->etag.data ? sr->headers_out.etag->value.len
                                         : 0;
        }
    }

    ngx_post_event(&sq->event, &ngx_posted_events);

    if (rc == NGX_ERROR || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_REQUEST_TIME_OUT || sr->connection->error)
    {
        return rc;
    }

    return NGX_OK;
}


/*
 * From the event loop, after nginx has finished the subrequest: its pool
 * goes (unless nginx still links it: then at the end of the request),
 * then the continuation runs.
 */

static void
ngx_http_quay_s3_request_event(ngx_event_t *ev)
{
    ngx_pool_t                    *pool;
    ngx_connection_t              *c;
    ngx_http_request_t            *r, *sr;
    ngx_pool_cleanup_t            *cln;
    ngx_http_quay_s3_req_t        *sq;
    ngx_http_postponed_request_t  *pr;

    sq = ev->data;
    r = sq->r;
    c = r->connection;

    sq->out = 0;

    pool = sq->pool;
    sq->pool = NULL;

    if (pool != NULL) {
        for (pr = r->postponed; pr; pr = pr->next) {
            if (pr->request != NULL && pr->request->pool == pool) {
                break;
            }
        }

        sr = c->data;

        if (pr == NULL && (sr == NULL || sr->pool != pool)) {
            ngx_destroy_pool(pool);

        } else {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln != NULL) {
                cln->handler = ngx_http_quay_s3_pool_destroy;
                cln->data = pool;
            }
        }
    }

    sq->handler(sq);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_s3_pool_destroy(void *data)
{
    ngx_destroy_pool(data);
}


static void
ngx_http_quay_s3_req_cleanup(void *data)
{
    ngx_http_quay_s3_req_t  *sq = data;

    if (sq->event.posted) {
        ngx_delete_posted_event(&sq->event);
    }

    /* the request ends with an S3 request out: its subrequest went with
     * the request's own cleanups, which run before the pool's */

    if (sq->pool != NULL) {
        ngx_destroy_pool(sq->pool);
        sq->pool = NULL;
    }
}


/*
 * Logs a request that failed: the location, the operation, S3's status
 * and error code (never a signature or a key).
 */

void
ngx_http_quay_s3_log_failure(ngx_http_quay_s3_req_t *sq, ngx_uint_t level)
{
    char       *action;
    ngx_str_t   code, *object;
    ngx_log_t  *log;

    log = sq->r->connection->log;

    /* the subrequest left its own ("sending to client") */

    action = log->action;
    log->action = NULL;

    object = sq->key.len ? &sq->key : &sq->ep->bucket;

    if (sq->status == 0) {

        /* over https the reason may be the certificate: nginx's own line
         * just before ("upstream SSL certificate verify error") says */

        ngx_log_error(level, log, 0,
                      "quay: storage location \"%s\": %s \"%V\": no answer "
                      "from %V://%V%s", sq->loc->name, sq->what, object,
                      &sq->ep->scheme, &sq->ep->host,
                      sq->ep->scheme.len == sizeof("https") - 1
                      ? " (no connection, or the TLS handshake or its "
                        "certificate check failed)"
                      : "");

    } else {
        if (ngx_http_quay_s3_xml_value(&sq->response, "Code", &code)
            != NGX_OK)
        {
            ngx_str_set(&code, "-");
        }

        ngx_log_error(level, log, 0,
                      "quay: storage location \"%s\": %s \"%V\" failed: "
                      "%ui %V", sq->loc->name, sq->what, object, sq->status,
                      &code);
    }

    log->action = action;
}


/* 1 when body is an S3 error document (CompleteMultipartUpload and
 * CopyObject may say 200 and fail in the body). */

ngx_uint_t
ngx_http_quay_s3_xml_error(ngx_str_t *body)
{
    ngx_str_t  value;

    return ngx_http_quay_s3_xml_value(body, "Error", &value) == NGX_OK;
}


/* The text of the first <name>...</name> in body. */

ngx_int_t
ngx_http_quay_s3_xml_value(ngx_str_t *body, const char *name,
    ngx_str_t *value)
{
    u_char  *p, *last, *start, *end;
    size_t   len;
    u_char   open[64], close[64];

    len = ngx_strlen(name);

    if (len + 4 > sizeof(open) || body->len == 0) {
        return NGX_DECLINED;
    }

    (void) ngx_sprintf(open, "<%s>", name);
    (void) ngx_sprintf(close, "</%s>", name);

    last = body->data + body->len;

    p = ngx_strlcasestrn(body->data, last, open, len + 2 - 1);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    start = p + len + 2;

    end = ngx_strlcasestrn(start, last, close, len + 3 - 1);
    if (end == NULL) {
        return NGX_DECLINED;
    }

    value->data = start;
    value->len = end - start;

    return NGX_OK;
}


/* The first size bytes of an open file as the body (sendfile). */

ngx_int_t
ngx_http_quay_s3_file_body(ngx_http_quay_s3_req_t *sq, ngx_fd_t fd,
    ngx_str_t *name, off_t size)
{
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, sq->r->connection->log, 0,
                      "quay: storage: %s without a file", sq->what);
        return NGX_ERROR;
    }

    sq->body_len = size;

    if (size == 0) {
        return NGX_OK;
    }

    pool = ngx_http_quay_s3_req_pool(sq);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(pool);
    cl = ngx_alloc_chain_link(pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    b->file = ngx_pcalloc(pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_ERROR;
    }

    b->file->fd = fd;
    b->file->name = *name;
    b->file->log = sq->r->connection->log;
    b->in_file = 1;
    b->file_pos = 0;
    b->file_last = size;

    cl->buf = b;
    cl->next = NULL;

    sq->body = cl;

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_s3_memory_body(ngx_http_quay_s3_req_t *sq, u_char *data,
    size_t len)
{
    u_char        hash[QUAY_SHA256_DIGEST_LEN];
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    pool = ngx_http_quay_s3_req_pool(sq);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(pool);
    cl = ngx_alloc_chain_link(pool);
    sq->payload.data = ngx_pnalloc(pool, 2 * QUAY_SHA256_DIGEST_LEN);
    if (b == NULL || cl == NULL || sq->payload.data == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;

    cl->buf = b;
    cl->next = NULL;

    sq->body = cl;
    sq->body_len = len;

    /* a small body: sign its hash, so S3 checks it arrived intact */

    quay_sha256(data, len, hash);
    sq->payload.len = ngx_hex_dump(sq->payload.data, hash, sizeof(hash))
                      - sq->payload.data;

    return NGX_OK;
}


/* ------------------------------------------------------------- reads */


ngx_int_t
ngx_http_quay_s3_presign_url(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep,
    ngx_str_t *key, ngx_str_t *url)
{
    u_char                    *amz_date, *path, *p;
    size_t                     path_len, len;
    quay_err_t                 err;
    quay_sigv4_header_t        host;
    quay_sigv4_request_t       req;
    quay_sigv4_credentials_t   cred;

    amz_date = ngx_pnalloc(r->pool, QUAY_SIGV4_AMZ_DATE_LEN + 1);
    path = ngx_http_quay_s3_encode_path(r->pool, ep, key, &path_len);
    if (amz_date == NULL || path == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_s3_amz_date(amz_date);

    /* the client sends only Host; nothing else is signed */

    host.name = "host";
    host.name_len = 4;
    host.value = (const char *) ep->host.data;
    host.value_len = ep->host.len;

    ngx_memzero(&req, sizeof(quay_sigv4_request_t));

    req.method = "GET";
    req.method_len = 3;
    req.path = (const char *) path;
    req.path_len = path_len;
    req.path_encoded = 1;
    req.headers = &host;
    req.nheaders = 1;
    req.amz_date = (const char *) amz_date;
    req.amz_date_len = QUAY_SIGV4_AMZ_DATE_LEN;
    req.expires = NGX_HTTP_QUAY_S3_PRESIGN_TTL;

    if (loc->session_token != NULL) {
        req.security_token = loc->session_token;
        req.security_token_len = ngx_strlen(loc->session_token);
    }

    ngx_http_quay_s3_credentials(loc, ep, &cred);

    err.code = 0;
    err.msg[0] = '\0';

    if (quay_sigv4_presign_query(&cred, &req, NULL, 0, &len, &err)
        != QUAY_OK)
    {
        goto failed;
    }

    url->data = ngx_pnalloc(r->pool, ep->scheme.len + sizeof("://") - 1
                                     + ep->host.len + path_len + 1 + len + 1);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(url->data, "%V://%V", &ep->scheme, &ep->host);
    p = ngx_cpymem(p, path, path_len);
    *p++ = '?';

    if (quay_sigv4_presign_query(&cred, &req, (char *) p, len + 1, &len,
                                 &err)
        != QUAY_OK)
    {
        goto failed;
    }

    url->len = p + len - url->data;

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "quay: storage location \"%s\": cannot presign: %s",
                  loc->name, err.msg);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_quay_s3_proxy(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep,
    ngx_str_t *key, ngx_str_t *digest)
{
    u_char                  *amz_date;
    ngx_str_t                uri, url, authorization, payload;
    ngx_http_quay_s3_req_t   sq;

    amz_date = ngx_pnalloc(r->pool, QUAY_SIGV4_AMZ_DATE_LEN + 1);
    if (amz_date == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&sq, sizeof(ngx_http_quay_s3_req_t));

    sq.r = r;
    sq.loc = loc;
    sq.ep = ep;
    ngx_http_quay_s3_req_reset(&sq, NGX_HTTP_GET, "GetObject", key);
    ngx_str_set(&sq.payload, QUAY_SIGV4_UNSIGNED_PAYLOAD);

    ngx_http_quay_s3_amz_date(amz_date);

    if (ngx_http_quay_s3_sign(r, r->pool, &sq, amz_date, &url,
                              &authorization, &payload)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* variables survive the internal redirect; the module ctx does not */

    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_URL, url.data, url.len);
    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_HOST, ep->host.data,
                             ep->host.len);
    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_AUTHORIZATION,
                             authorization.data, authorization.len);
    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_DATE, amz_date,
                             QUAY_SIGV4_AMZ_DATE_LEN);
    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_CONTENT_SHA256,
                             payload.data, payload.len);
    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_BLOB_DIGEST,
                             digest->data, digest->len);

    if (loc->session_token != NULL) {
        ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_SECURITY_TOKEN,
                                 (u_char *) loc->session_token,
                                 ngx_strlen(loc->session_token));
    }

    ngx_str_set(&uri, NGX_HTTP_QUAY_S3_PROXY_LOCATION);

    /* takes a reference of its own; the caller's NGX_DONE drops ours */

    (void) ngx_http_internal_redirect(r, &uri, NULL);

    return NGX_DONE;
}


/* ------------------------------------------------------------ health */


ngx_int_t
ngx_http_quay_storage_s3_check(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_storage_op_t *op)
{
    ngx_str_t                  key;
    ngx_http_quay_s3_check_t  *check;

    check = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_s3_check_t));
    if (check == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_s3_endpoint(r->pool, loc, &check->ep) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: storage location \"%s\": no usable endpoint",
                      loc->name);
        return NGX_ERROR;
    }

    if (ngx_http_quay_s3_req_init(&check->sq, r, loc, &check->ep) == NULL) {
        return NGX_ERROR;
    }

    ngx_str_null(&key);
    ngx_http_quay_s3_req_reset(&check->sq, NGX_HTTP_HEAD, "HeadBucket",
                               &key);

    check->sq.handler = ngx_http_quay_s3_check_done;
    check->sq.data = check;
    check->op = op;

    if (ngx_http_quay_s3_request(&check->sq) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_check_done(ngx_http_quay_s3_req_t *sq)
{
    ngx_http_quay_s3_check_t  *check = sq->data;

    if (sq->status == NGX_HTTP_OK) {
        check->op->rc = NGX_OK;

    } else {
        ngx_http_quay_s3_log_failure(sq, NGX_LOG_ERR);
        check->op->rc = NGX_HTTP_QUAY_STORAGE_FAILED;
    }

    check->op->handler(check->op);
}
