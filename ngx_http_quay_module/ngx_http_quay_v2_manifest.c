/*
 * Manifests and referrers: GET, HEAD, PUT and DELETE on
 * /v2/<name>/manifests/<reference>, and GET /v2/<name>/referrers/<digest>
 * (distribution spec "Pulling manifests", "Pushing Manifests", "Deleting
 * Manifests", "Listing Referrers"; quay-behaviour 2.7 and 7.1).
 *
 * PUT reads the body into memory, never to a temp file: the body is read
 * unbuffered (r->request_body_no_buffering) and each buffer nginx hands
 * over is copied into one r->pool buffer and marked consumed, so the
 * client_body_buffer_size and temp-file settings do not matter and the
 * body can never exceed QUAY_MANIFEST_MAX_SIZE (4 MiB) in memory: a
 * Content-Length over it is refused before reading (413), and a chunked
 * body is refused as soon as it passes it.  The digest is taken over the
 * raw bytes (sha256, or sha512 when the URL names a sha512 digest) and
 * lib/quay_manifest.c validates them; both run in the thread pool when
 * the body is larger than NGX_HTTP_QUAY_MANIFEST_INLINE, so that a 4 MiB
 * manifest does not stall the event loop.  Then one statement
 * (QUAY_SQL_MANIFEST_PUT) checks every referenced blob and child, stores
 * the bytes as pushed and moves the tags, keeping Quay's tag history; it
 * is run again (at most NGX_HTTP_QUAY_MANIFEST_TRIES times) when a
 * concurrent push of the same manifest or tag got there first.
 *
 * GET and HEAD return the stored bytes with the stored media type
 * whatever the Accept header says: the registry never converts, and a
 * client that cannot read the type says so itself (distribution does the
 * same for OCI and schema 2; Quay's schema 1 down-conversion is not
 * reproduced because schema 1 is refused on push).  DELETE ends tags: by
 * tag that tag, by digest every alive tag on the manifest (Quay), which
 * makes the manifest unreachable; 202 either way.
 *
 * GET and HEAD by tag go to the shared cache first (tag -> digest, media
 * type, size, and the bytes of manifests up to 16 KiB), so that a hit
 * needs neither the database nor a file; what the query finds is stored
 * there for the next request, under the generations the router read
 * before its own lookup.  A PUT or DELETE that committed bumps the
 * repository's generation before it answers (ngx_http_quay_cache.c has
 * the whole invalidation design).
 *
 * Handler state lives in ctx->data (the module ctx belongs to the
 * router).  Each asynchronous step holds one reference: the body read
 * takes it (ngx_http_read_client_request_body), and the GET and DELETE
 * queries take it with r->main->count++; the completion finalizes once.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <openssl/evp.h>

#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_storage.h"
#include "quay_manifest.h"
#include "quay_sha256.h"


/* bodies up to this size are hashed and parsed on the event loop */
#define NGX_HTTP_QUAY_MANIFEST_INLINE    (64 * 1024)

/* first buffer for a body of unknown length (chunked) */
#define NGX_HTTP_QUAY_MANIFEST_CHUNKED   (16 * 1024)

/* manifests up to this size are kept whole in the shared cache */
#define NGX_HTTP_QUAY_MANIFEST_CACHED    (16 * 1024)

/* ?tag= parameters on one PUT by digest */
#define NGX_HTTP_QUAY_MANIFEST_MAX_TAGS  32

/* runs of QUAY_SQL_MANIFEST_PUT when concurrent pushes race */
#define NGX_HTTP_QUAY_MANIFEST_TRIES     5


typedef struct {
    ngx_http_quay_v2_ctx_t     *ctx;

    u_char                     *body;       /* r->pool; NUL-terminated */
    size_t                      len;
    size_t                      size;       /* allocated, without NUL */

    ngx_array_t                 tags;       /* ngx_str_t, into r->args */

    /* the check: filled on the event loop or in a thread */
    quay_manifest_t            *manifest;   /* owned; freed by a r->pool
                                               cleanup */
    quay_digest_t               digest;
    quay_err_t                  err;
    int                         rc;
    ngx_str_t                   content_type;  /* r->pool copy */

    ngx_str_t                   digest_text;   /* r->pool */
    ngx_uint_t                  tries;
} ngx_http_quay_manifest_put_t;


/* task->ctx of the thread that hashes and parses a large body */
typedef struct {
    ngx_http_quay_manifest_put_t  *put;         /* borrowed; the request is
                                                   blocked meanwhile */
    quay_digest_algo_e             algo;
} ngx_http_quay_manifest_task_t;


static ngx_http_quay_v2_ctx_t *ngx_http_quay_manifest_ctx(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_quay_manifest_get(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static void ngx_http_quay_manifest_get_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_manifest_tag_key(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *key);
static ngx_int_t ngx_http_quay_manifest_cached(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static void ngx_http_quay_manifest_cache_put(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *digest, ngx_str_t *media_type,
    ngx_str_t *bytes, ngx_str_t end);
static ngx_int_t ngx_http_quay_manifest_send(ngx_http_request_t *r,
    ngx_str_t *digest, ngx_str_t *media_type, ngx_str_t *bytes);
static ngx_int_t ngx_http_quay_manifest_delete(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static void ngx_http_quay_manifest_delete_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_manifest_put(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static ngx_int_t ngx_http_quay_manifest_tag_args(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put, ngx_http_quay_err_e *err,
    ngx_str_t **detail);
static void ngx_http_quay_manifest_body_post(ngx_http_request_t *r);
static void ngx_http_quay_manifest_body_event(ngx_http_request_t *r);
static void ngx_http_quay_manifest_body_consume(ngx_http_request_t *r);
static ngx_int_t ngx_http_quay_manifest_body_append(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put, ngx_buf_t *b);
static void ngx_http_quay_manifest_body_done(ngx_http_request_t *r);
static void ngx_http_quay_manifest_check(ngx_http_quay_manifest_put_t *put,
    quay_digest_algo_e algo);
static void ngx_http_quay_manifest_check_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_manifest_check_done(ngx_event_t *ev);
static void ngx_http_quay_manifest_free(void *data);
static ngx_int_t ngx_http_quay_manifest_checked(ngx_http_request_t *r);
static ngx_int_t ngx_http_quay_manifest_store(ngx_http_request_t *r);
static void ngx_http_quay_manifest_store_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_manifest_audit(ngx_http_request_t *r,
    const char *kind, ngx_str_t *digest);
static ngx_int_t ngx_http_quay_manifest_stored(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put);
static u_char *ngx_http_quay_manifest_array(ngx_pool_t *pool,
    quay_descriptor_t *d, size_t n, ngx_uint_t sizes, size_t *len);
static ngx_int_t ngx_http_quay_manifest_retry(ngx_http_quay_db_query_t *q);
static void ngx_http_quay_manifest_param(ngx_http_quay_db_query_t *q,
    ngx_uint_t i, const char *s);
static ngx_str_t *ngx_http_quay_manifest_detail(ngx_http_request_t *r,
    const char *fmt, ...);
static ngx_int_t ngx_http_quay_manifest_fail(ngx_http_request_t *r,
    ngx_http_quay_err_e err, ngx_str_t *detail);
static void ngx_http_quay_referrers_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_referrers_send(ngx_http_request_t *r,
    u_char *body, size_t len);
static ngx_int_t ngx_http_quay_manifest_send_empty(ngx_http_request_t *r,
    ngx_uint_t status);


ngx_int_t
ngx_http_quay_v2_manifest(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_quay_manifest_get(r, ctx);
    }

    if (r->method == NGX_HTTP_PUT) {
        return ngx_http_quay_manifest_put(r, ctx);
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_http_quay_manifest_delete(r, ctx);
    }

    return ngx_http_quay_manifest_fail(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
}


/* The v2 context from a callback that only has r. */
static ngx_http_quay_v2_ctx_t *
ngx_http_quay_manifest_ctx(ngx_http_request_t *r)
{
    return ngx_http_quay_v2_get_ctx(r);
}


/* GET and HEAD ----------------------------------------------------------- */


static ngx_int_t
ngx_http_quay_manifest_get(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_http_quay_db_query_t  *q;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ctx->path.ref_is_digest) {
        rc = ngx_http_quay_manifest_cached(r, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    q = ngx_http_quay_request_query(r, ctx->path.ref_is_digest
                                       ? QUAY_SQL_MANIFEST_BY_DIGEST
                                       : QUAY_SQL_MANIFEST_BY_TAG);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->reference.data, ctx->reference.len);

    if (ngx_http_quay_request_query_run(r, q,
                                        ngx_http_quay_manifest_get_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* one reference until ngx_http_quay_manifest_get_done() */

    r->main->count++;

    return NGX_DONE;
}


/*
 * The shared cache's key for tag -> manifest: "<repository id>:<tag>"
 * (a tag has no ':'), in r->pool.
 */

static ngx_int_t
ngx_http_quay_manifest_tag_key(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *key)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, ctx->repository_id.len + 1
                             + ctx->reference.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    p = ngx_cpymem(p, ctx->repository_id.data, ctx->repository_id.len);
    *p++ = ':';
    p = ngx_cpymem(p, ctx->reference.data, ctx->reference.len);
    key->len = p - key->data;

    return NGX_OK;
}


/*
 * GET or HEAD by tag from the shared cache.  The value: a flag telling
 * whether the bytes are there, the manifest size (4 bytes, little
 * endian), the media type and digest lengths (1 byte each), the media
 * type, the digest, then the bytes when they are at most
 * NGX_HTTP_QUAY_MANIFEST_CACHED.  Returns NGX_DECLINED on a miss, and for
 * a GET of a manifest cached without its bytes; else what sending
 * returned.
 */

static ngx_int_t
ngx_http_quay_manifest_cached(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx)
{
    u_char     *p;
    size_t      size, mlen, dlen;
    ngx_int_t   rc;
    ngx_str_t   key, v, digest, media_type, bytes;

    if (ngx_http_quay_manifest_tag_key(r, ctx, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_quay_cache_get(NGX_HTTP_QUAY_CACHE_TAG, key.data, key.len,
                                 r->pool, &v);
    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                 : NGX_DECLINED;
    }

    if (v.len < 7) {
        return NGX_DECLINED;
    }

    p = v.data;
    size = p[1] | (p[2] << 8) | (p[3] << 16) | ((size_t) p[4] << 24);
    mlen = p[5];
    dlen = p[6];

    if (7 + mlen + dlen + (p[0] ? size : 0) != v.len
        || (!p[0] && r->method != NGX_HTTP_HEAD))
    {
        return NGX_DECLINED;
    }

    media_type.data = p + 7;
    media_type.len = mlen;
    digest.data = p + 7 + mlen;
    digest.len = dlen;
    bytes.data = p[0] ? p + 7 + mlen + dlen : NULL;
    bytes.len = size;

    return ngx_http_quay_manifest_send(r, &digest, &media_type, &bytes);
}


static void
ngx_http_quay_manifest_get_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                digest, media_type, bytes;
    ngx_http_quay_v2_ctx_t  *ctx;

    if (q->rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_MANIFEST_UNKNOWN,
                                      NULL));
        return;
    }

    /* the result lives as long as q, that is as long as r->pool: the
     * bytes are sent from it without a copy */

    digest = ngx_http_quay_db_value(q, 0, 0);
    media_type = ngx_http_quay_db_value(q, 0, 1);
    bytes = ngx_http_quay_db_value(q, 0, 2);

    ctx = ngx_http_quay_manifest_ctx(r);

    if (!ctx->path.ref_is_digest) {
        ngx_http_quay_manifest_cache_put(r, ctx, &digest, &media_type,
                                         &bytes,
                                         ngx_http_quay_db_value(q, 0, 3));
    }

    ngx_http_finalize_request(r, ngx_http_quay_manifest_send(r, &digest,
                                                             &media_type,
                                                             &bytes));
}


/*
 * Keeps a tag's answer in the shared cache, no longer than the tag lives
 * (end: lifetime_end_ms, empty for none), under the generations read
 * before the repository lookup.
 */

static void
ngx_http_quay_manifest_cache_put(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *digest, ngx_str_t *media_type,
    ngx_str_t *bytes, ngx_str_t end)
{
    u_char      *p, *v;
    size_t       len;
    int64_t      end_ms, now_ms;
    ngx_str_t    key;
    ngx_uint_t   keep;
    ngx_msec_t   ttl;
    ngx_time_t  *tp;

    if (media_type->len > 0xff || digest->len > 0xff
        || bytes->len > 0xffffffff)
    {
        return;
    }

    ttl = 0;

    if (end.len) {
        end_ms = ngx_atoof(end.data, end.len);
        tp = ngx_timeofday();
        now_ms = (int64_t) tp->sec * 1000 + tp->msec;

        if (end_ms == NGX_ERROR || end_ms <= now_ms) {
            return;
        }

        ttl = (ngx_msec_t) (end_ms - now_ms);
    }

    if (ngx_http_quay_manifest_tag_key(r, ctx, &key) != NGX_OK) {
        return;
    }

    keep = (bytes->len <= NGX_HTTP_QUAY_MANIFEST_CACHED);
    len = 7 + media_type->len + digest->len + (keep ? bytes->len : 0);

    v = ngx_pnalloc(r->pool, len);
    if (v == NULL) {
        return;
    }

    p = v;
    *p++ = (u_char) keep;
    *p++ = (u_char) (bytes->len & 0xff);
    *p++ = (u_char) ((bytes->len >> 8) & 0xff);
    *p++ = (u_char) ((bytes->len >> 16) & 0xff);
    *p++ = (u_char) ((bytes->len >> 24) & 0xff);
    *p++ = (u_char) media_type->len;
    *p++ = (u_char) digest->len;
    p = ngx_cpymem(p, media_type->data, media_type->len);
    p = ngx_cpymem(p, digest->data, digest->len);

    if (keep) {
        p = ngx_cpymem(p, bytes->data, bytes->len);
    }

    ngx_http_quay_cache_put(NGX_HTTP_QUAY_CACHE_TAG, key.data, key.len,
                            &ctx->cache_gen, v, p - v, ttl);
}


/*
 * 200 with the manifest: Docker-Content-Digest, ETag, the stored media
 * type and the bytes (bytes->data NULL: a HEAD answered from the cache,
 * only the length is known).  Returns what ngx_http_output_filter()
 * returned, for ngx_http_finalize_request().
 */

static ngx_int_t
ngx_http_quay_manifest_send(ngx_http_request_t *r, ngx_str_t *digest,
    ngx_str_t *media_type, ngx_str_t *bytes)
{
    u_char       *etag, *d;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    /* allocate everything before the header goes out */

    etag = ngx_pnalloc(r->pool, digest->len + 3);
    d = ngx_pnalloc(r->pool, digest->len + 1);
    b = ngx_calloc_buf(r->pool);

    if (etag == NULL || d == NULL || b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(etag, "\"%V\"", digest) = '\0';
    *ngx_cpymem(d, digest->data, digest->len) = '\0';

    if (ngx_http_quay_set_header(r, "Docker-Content-Digest", (char *) d)
        != NGX_OK
        || ngx_http_quay_set_header(r, "ETag", (char *) etag) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = bytes->len;
    r->headers_out.content_type = *media_type;
    r->headers_out.content_type_len = media_type->len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_GET) {
        ngx_http_quay_manifest_audit(r, "pull_repo", digest);
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->pos = bytes->data;
    b->last = bytes->data + bytes->len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* DELETE ----------------------------------------------------------------- */


static ngx_int_t
ngx_http_quay_manifest_delete(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_http_quay_db_query_t  *q;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    q = ngx_http_quay_request_query(r, ctx->path.ref_is_digest
                                       ? QUAY_SQL_MANIFEST_DELETE_DIGEST
                                       : QUAY_SQL_MANIFEST_DELETE_TAG);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->reference.data, ctx->reference.len);

    if (ngx_http_quay_request_query_run(r, q,
                                        ngx_http_quay_manifest_delete_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* one reference until ngx_http_quay_manifest_delete_done() */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_manifest_delete_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                found, immutable;
    ngx_int_t                rc;
    ngx_http_quay_v2_ctx_t  *ctx;

    if (q->rc != NGX_OK || ngx_http_quay_db_ntuples(q) != 1) {
        rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        ngx_http_finalize_request(r, rc);
        return;
    }

    found = ngx_http_quay_db_value(q, 0, 0);
    immutable = ngx_http_quay_db_value(q, 0, 1);

    if (found.len == 1 && found.data[0] == '0') {
        rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_MANIFEST_UNKNOWN,
                                      NULL);

    } else if (!(immutable.len == 1 && immutable.data[0] == '0')) {
        rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_TAG_IMMUTABLE,
                                      ngx_http_quay_manifest_detail(r,
                                          "the tag is immutable"));

    } else {
        /* committed: no worker or node may serve the tag any more */
        ctx = ngx_http_quay_manifest_ctx(r);
        ngx_http_quay_cache_invalidate(ctx->qmcf, &ctx->cache_name, NULL);

        ngx_http_quay_manifest_audit(r, "delete_tag", NULL);
        rc = ngx_http_quay_manifest_send_empty(r, NGX_HTTP_ACCEPTED);
    }

    ngx_http_finalize_request(r, rc);
}


/* PUT: reading the body -------------------------------------------------- */


static ngx_int_t
ngx_http_quay_manifest_put(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                     *tag, *detail;
    ngx_http_quay_err_e            err;
    ngx_http_quay_manifest_put_t  *put;

    put = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_manifest_put_t));
    if (put == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     put->body = NULL;
     *     put->len = put->size = 0;
     *     put->manifest = NULL;
     *     put->tries = 0;
     */

    put->ctx = ctx;
    ctx->data = put;

    if (ngx_array_init(&put->tags, r->pool, 1, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->path.ref_is_digest) {
        rc = ngx_http_quay_manifest_tag_args(r, put, &err, &detail);

        if (rc == NGX_DECLINED) {
            return ngx_http_quay_manifest_fail(r, err, detail);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        tag = ngx_array_push(&put->tags);
        if (tag == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *tag = ctx->reference;
    }

    /* a declared length past the limit is refused before reading */

    if (r->headers_in.content_length_n > QUAY_MANIFEST_MAX_SIZE) {
        return ngx_http_quay_manifest_fail(r,
                                          NGX_HTTP_QUAY_ERR_MANIFEST_TOO_LARGE,
                                          NULL);
    }

    if (r->headers_in.content_type != NULL) {
        put->content_type.len = r->headers_in.content_type->value.len;
        put->content_type.data = ngx_pstrdup(r->pool,
                                        &r->headers_in.content_type->value);
        if (put->content_type.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_quay_manifest_body_post);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* the body read holds a reference until the request is finalized */

    return NGX_DONE;
}


/*
 * The OCI "?tag=" parameters of a PUT by digest: every one is checked
 * before anything is stored, so a bad one applies none (catalogue B1.15).
 * Values are not unescaped: a tag never needs percent-encoding, so a '%'
 * is simply an invalid tag.  Returns NGX_OK, NGX_DECLINED with the error
 * to answer in *err and *detail, or NGX_ERROR.
 */
static ngx_int_t
ngx_http_quay_manifest_tag_args(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put, ngx_http_quay_err_e *err,
    ngx_str_t **detail)
{
    u_char      *p, *end, *amp, *eq;
    ngx_str_t   *tag;
    ngx_uint_t   i;

    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (eq != NULL && eq - p == 3 && ngx_strncmp(p, "tag", 3) == 0) {

            if (put->tags.nelts == NGX_HTTP_QUAY_MANIFEST_MAX_TAGS) {
                /* TODO(#3): 414 is what the spec allows; the error table
                 * has no entry for it */
                *err = NGX_HTTP_QUAY_ERR_INVALID_REQUEST;
                *detail = ngx_http_quay_manifest_detail(r,
                                             "more than %d tag parameters",
                                             NGX_HTTP_QUAY_MANIFEST_MAX_TAGS);
                return NGX_DECLINED;
            }

            if (quay_tag_valid(eq + 1, amp - eq - 1, NULL) != QUAY_OK) {
                *err = NGX_HTTP_QUAY_ERR_TAG_INVALID;
                *detail = ngx_http_quay_manifest_detail(r,
                                                    "invalid tag parameter");
                return NGX_DECLINED;
            }

            tag = put->tags.elts;

            for (i = 0; i < put->tags.nelts; i++) {
                if (tag[i].len == (size_t) (amp - eq - 1)
                    && ngx_strncmp(tag[i].data, eq + 1, tag[i].len) == 0)
                {
                    break;
                }
            }

            if (i == put->tags.nelts) {
                tag = ngx_array_push(&put->tags);
                if (tag == NULL) {
                    return NGX_ERROR;
                }

                tag->data = eq + 1;
                tag->len = amp - eq - 1;
            }
        }

        p = amp + 1;
    }

    return NGX_OK;
}


static void
ngx_http_quay_manifest_body_post(ngx_http_request_t *r)
{
    ngx_http_quay_manifest_body_consume(r);
}


/* r->read_event_handler while the rest of an unbuffered body arrives */

static void
ngx_http_quay_manifest_body_event(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_read_unbuffered_request_body(r);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        r->read_event_handler = ngx_http_block_reading;
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_quay_manifest_body_consume(r);
}


/*
 * Takes what nginx has read so far into put->body and marks it consumed,
 * then asks for more at once, as the upstream module does: nginx stops
 * reading while its buffer is busy, and with edge-triggered events no new
 * event comes for bytes that already wait in the socket.  Called once by
 * ngx_http_read_client_request_body() and then on read events; when the
 * body is complete it goes on with the check.
 */
static void
ngx_http_quay_manifest_body_consume(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_uint_t                     got;
    ngx_chain_t                   *cl;
    ngx_http_quay_v2_ctx_t        *ctx;
    ngx_http_quay_manifest_put_t  *put;

    ctx = ngx_http_quay_manifest_ctx(r);
    put = ctx->data;

    for ( ;; ) {
        got = 0;

        if (r->request_body != NULL) {

            for (cl = r->request_body->bufs; cl; cl = cl->next) {
                if (cl->buf->last > cl->buf->pos) {
                    got = 1;
                }

                rc = ngx_http_quay_manifest_body_append(r, put, cl->buf);

                if (rc == NGX_OK) {
                    continue;
                }

                if (rc == NGX_DECLINED) {
                    /* a chunked body past the limit: the rest is not
                     * read, and nginx closes the connection after the
                     * answer (r->reading_body); "Connection: close"
                     * tells the client not to reuse it */
                    r->keepalive = 0;
                    rc = ngx_http_quay_send_error(r,
                                         NGX_HTTP_QUAY_ERR_MANIFEST_TOO_LARGE,
                                         NULL);
                }

                r->read_event_handler = ngx_http_block_reading;
                ngx_http_finalize_request(r, rc);
                return;
            }

            r->request_body->bufs = NULL;
        }

        if (!r->reading_body) {
            break;
        }

        if (!got && r->read_event_handler
                    == ngx_http_quay_manifest_body_event)
        {
            /* nothing new: wait for the next read event */
            return;
        }

        r->read_event_handler = ngx_http_quay_manifest_body_event;

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            r->read_event_handler = ngx_http_block_reading;
            ngx_http_finalize_request(r, rc);
            return;
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_quay_manifest_body_done(r);
}


/*
 * Appends b to put->body.  NGX_OK, NGX_DECLINED when the body would pass
 * QUAY_MANIFEST_MAX_SIZE, or an HTTP error status.
 */
static ngx_int_t
ngx_http_quay_manifest_body_append(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put, ngx_buf_t *b)
{
    u_char  *p;
    size_t   n, size;

    if (b->in_file && !ngx_buf_in_memory(b)) {
        /* cannot happen with request_body_no_buffering */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: manifest body buffered to a file");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = b->last - b->pos;

    if (n == 0) {
        return NGX_OK;
    }

    if (n > QUAY_MANIFEST_MAX_SIZE - put->len) {
        return NGX_DECLINED;
    }

    if (put->len + n > put->size) {

        /* the declared length, or doubling up to the limit when chunked */

        if (r->headers_in.content_length_n > 0) {
            size = (size_t) r->headers_in.content_length_n;

        } else {
            size = put->size ? put->size * 2 : NGX_HTTP_QUAY_MANIFEST_CHUNKED;
        }

        while (size < put->len + n) {
            size *= 2;
        }

        if (size > QUAY_MANIFEST_MAX_SIZE) {
            size = QUAY_MANIFEST_MAX_SIZE;
        }

        p = ngx_pnalloc(r->pool, size + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (put->len) {
            ngx_memcpy(p, put->body, put->len);
        }

        if (put->body != NULL) {
            (void) ngx_pfree(r->pool, put->body);
        }

        put->body = p;
        put->size = size;
    }

    ngx_memcpy(put->body + put->len, b->pos, n);
    put->len += n;
    b->pos = b->last;

    return NGX_OK;
}


/* PUT: checking the body ------------------------------------------------- */


static void
ngx_http_quay_manifest_body_done(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_thread_task_t              *task;
    ngx_pool_cleanup_t             *cln;
    quay_digest_algo_e              algo;
    ngx_http_quay_v2_ctx_t         *ctx;
    ngx_http_quay_manifest_put_t   *put;
    ngx_http_quay_manifest_task_t  *check;

    ctx = ngx_http_quay_manifest_ctx(r);
    put = ctx->data;

    if (put->body == NULL) {
        /* no body at all: the parser refuses it, but it wants bytes */
        put->body = ngx_pnalloc(r->pool, 1);
        if (put->body == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    put->body[put->len] = '\0';

    algo = ctx->path.ref_is_digest ? ctx->path.digest.algo
                                   : QUAY_DIGEST_SHA256;

    /* the parsed manifest is malloc'ed: free it with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_quay_manifest_free;
    cln->data = put;

    if (put->len <= NGX_HTTP_QUAY_MANIFEST_INLINE
        || ctx->qmcf->thread_pool == NULL)
    {
        ngx_http_quay_manifest_check(put, algo);

        rc = ngx_http_quay_manifest_checked(r);

        /* NGX_DONE: the store query runs and keeps the body's reference */

        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        return;
    }

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_http_quay_manifest_task_t));
    if (task == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    check = task->ctx;
    check->put = put;
    check->algo = algo;

    task->handler = ngx_http_quay_manifest_check_thread;
    task->event.handler = ngx_http_quay_manifest_check_done;
    task->event.data = r;

    if (ngx_thread_task_post(ctx->qmcf->thread_pool, task) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    /* the request, and put with it, cannot go away under the task */

    r->main->blocked++;
}


/*
 * Hashes and parses put->body.  Runs on the event loop or in a thread:
 * it touches only put's body and result fields (no pool, no log).
 */
static void
ngx_http_quay_manifest_check(ngx_http_quay_manifest_put_t *put,
    quay_digest_algo_e algo)
{
    unsigned int   len;
    unsigned char  raw[EVP_MAX_MD_SIZE];

    if (algo == QUAY_DIGEST_SHA512) {
        if (EVP_Digest(put->body, put->len, raw, &len, EVP_sha512(), NULL)
            != 1 || len != 64)
        {
            put->rc = quay_err_set(&put->err, QUAY_ERROR, "sha512 failed");
            return;
        }

        put->digest.algo = QUAY_DIGEST_SHA512;
        put->digest.hex_len = 128;

        for (len = 0; len < 64; len++) {
            put->digest.hex[2 * len] = "0123456789abcdef"[raw[len] >> 4];
            put->digest.hex[2 * len + 1] = "0123456789abcdef"[raw[len] & 15];
        }

        put->digest.hex[128] = '\0';

    } else {
        quay_sha256(put->body, put->len, raw);
        (void) quay_digest_from_sha256(raw, &put->digest);
    }

    put->rc = quay_manifest_parse(put->body, put->len,
                                  put->content_type.data,
                                  put->content_type.len,
                                  &put->manifest, &put->err);
}


static void
ngx_http_quay_manifest_check_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_manifest_task_t  *check = data;

    ngx_http_quay_manifest_check(check->put, check->algo);
}


static void
ngx_http_quay_manifest_check_done(ngx_event_t *ev)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    r->main->blocked--;

    rc = ngx_http_quay_manifest_checked(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_manifest_free(void *data)
{
    ngx_http_quay_manifest_put_t  *put = data;

    quay_manifest_free(put->manifest);
    put->manifest = NULL;
}


/* After the check: the digest in the URL, then the parser's verdict. */

static ngx_int_t
ngx_http_quay_manifest_checked(ngx_http_request_t *r)
{
    size_t                         len;
    ngx_http_quay_v2_ctx_t        *ctx;
    ngx_http_quay_manifest_put_t  *put;

    ctx = ngx_http_quay_manifest_ctx(r);
    put = ctx->data;

    if (put->rc == QUAY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: manifest: %s", put->err.msg);
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
    }

    len = quay_digest_format(&put->digest, NULL, 0);

    put->digest_text.data = ngx_pnalloc(r->pool, len + 1);
    if (put->digest_text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    put->digest_text.len = quay_digest_format(&put->digest,
                                              (char *) put->digest_text.data,
                                              len + 1);

    if (ctx->path.ref_is_digest
        && !quay_digest_equal(&put->digest, &ctx->path.digest))
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                        ngx_http_quay_manifest_detail(r,
                                            "manifest digest is %V",
                                            &put->digest_text));
    }

    switch (put->rc) {

    case QUAY_OK:
        break;

    case QUAY_ERANGE:
        return ngx_http_quay_send_error(r,
                                        NGX_HTTP_QUAY_ERR_MANIFEST_TOO_LARGE,
                                        NULL);

    case QUAY_MANIFEST_EUNSUPPORTED:
        return ngx_http_quay_send_error(r,
                                        NGX_HTTP_QUAY_ERR_MANIFEST_UNSUPPORTED,
                                        ngx_http_quay_manifest_detail(r,
                                            "%s", put->err.msg));

    case QUAY_ENOMEM:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:        /* QUAY_EINVAL, QUAY_MANIFEST_ESCHEMA1 */
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_MANIFEST_INVALID,
                                        ngx_http_quay_manifest_detail(r,
                                            "%s", put->err.msg));
    }

    return ngx_http_quay_manifest_store(r);
}


/* PUT: storing ----------------------------------------------------------- */


static ngx_int_t
ngx_http_quay_manifest_store(ngx_http_request_t *r)
{
    u_char                        *p;
    size_t                         len, nblobs;
    ngx_int_t                      rc;
    ngx_str_t                     *tag, value;
    ngx_uint_t                     i;
    quay_manifest_t               *m;
    quay_descriptor_t             *blobs;
    ngx_http_quay_v2_ctx_t        *ctx;
    ngx_http_quay_db_query_t      *q;
    ngx_http_quay_manifest_put_t  *put;

    ctx = ngx_http_quay_manifest_ctx(r);
    put = ctx->data;
    m = put->manifest;

    q = ngx_http_quay_request_query(r, QUAY_SQL_MANIFEST_PUT);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);
    ngx_http_quay_db_param(q, 1, put->digest_text.data, put->digest_text.len);
    ngx_http_quay_manifest_param(q, 2, m->media_type);

    /* up to 4 MiB: passed in place (NUL-terminated), not copied */

    q->values[3] = (const char *) put->body;
    q->lengths[3] = (int) put->len;

    blobs = NULL;
    nblobs = 0;

    if (m->kind == QUAY_MANIFEST_IMAGE) {
        ngx_http_quay_manifest_param(q, 4, m->config.media_type);

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_quay_db_param(q, 5, p, ngx_sprintf(p, "%L", m->layers_size)
                                        - p);

        /* config and pushed layers, in one array for the blob checks */

        blobs = ngx_palloc(r->pool, (m->nlayers + 1)
                                    * sizeof(quay_descriptor_t));
        if (blobs == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        blobs[nblobs++] = m->config;

        for (i = 0; i < m->nlayers; i++) {
            if (!m->layers[i].foreign) {
                blobs[nblobs++] = m->layers[i];
            }
        }
    }

    if (m->has_subject) {
        p = ngx_pnalloc(r->pool, QUAY_DIGEST_MAX_LEN + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_quay_db_param(q, 6, p,
                               quay_digest_format(&m->subject.digest,
                                                  (char *) p,
                                                  QUAY_DIGEST_MAX_LEN + 1));
    }

    if (m->artifact_type != NULL) {
        ngx_http_quay_manifest_param(q, 7, m->artifact_type);
    }

    /* digests and sizes, in the same order */

    p = ngx_http_quay_manifest_array(r->pool, blobs, nblobs, 0, &len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 8, p, len);

    p = ngx_http_quay_manifest_array(r->pool, blobs, nblobs, 1, &len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 9, p, len);

    p = ngx_http_quay_manifest_array(r->pool, m->manifests, m->nmanifests, 0,
                                     &len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 10, p, len);

    p = ngx_http_quay_manifest_array(r->pool, m->manifests, m->nmanifests, 1,
                                     &len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 11, p, len);

    /* tags: quoted, so that a tag named NULL stays a string */

    tag = put->tags.elts;
    len = sizeof("{}");

    for (i = 0; i < put->tags.nelts; i++) {
        len += tag[i].len + sizeof("\"\",");
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 0;
    p[len++] = '{';

    for (i = 0; i < put->tags.nelts; i++) {
        len = ngx_sprintf(p + len, "%s\"%V\"", i ? "," : "", &tag[i]) - p;
    }

    p[len++] = '}';

    ngx_http_quay_db_param(q, 12, p, len);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 13, p,
                           ngx_sprintf(p, "%L", (int64_t)
                                       ctx->qmcf->config
                                       ->push_temp_tag_expiration_sec)
                           - p);

    /* $15: where every blob must be (geo-replication), or NULL */

    rc = ngx_http_quay_storage_replication_param(r->pool, ctx->qmcf->config,
                                                 &value);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_http_quay_db_param(q, 14, value.data, value.len);
    }

    put->tries++;

    if (ngx_http_quay_request_query_run(r, q,
                                        ngx_http_quay_manifest_store_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* the body read's reference stays until store_done() finalizes */

    return NGX_DONE;
}


static void
ngx_http_quay_manifest_store_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    int                            i;
    ngx_int_t                      rc;
    ngx_str_t                      v, wanted, set, *detail;
    ngx_http_quay_err_e            err;
    ngx_http_quay_v2_ctx_t        *ctx;
    ngx_http_quay_manifest_put_t  *put;

    ctx = ngx_http_quay_manifest_ctx(r);
    put = ctx->data;

    if (q->rc != NGX_OK || ngx_http_quay_db_ntuples(q) != 1) {

        if (ngx_http_quay_manifest_retry(q)
            && put->tries < NGX_HTTP_QUAY_MANIFEST_TRIES)
        {
            rc = ngx_http_quay_manifest_store(r);
            if (rc != NGX_DONE) {
                ngx_http_finalize_request(r, rc);
            }
            return;
        }

        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    /*
     * The first failed check, in the statement's column order: a missing
     * blob or child is an unknown manifest blob (distribution answers a
     * missing child the same way), a size that differs is invalid.
     */

    for (i = 0; i < 5; i++) {
        v = ngx_http_quay_db_value(q, 0, i);
        if (v.len == 0) {
            continue;
        }

        switch (i) {

        case 0:
        case 2:
            err = NGX_HTTP_QUAY_ERR_MANIFEST_BLOB_UNKNOWN;
            detail = ngx_http_quay_manifest_detail(r, "%V", &v);
            break;

        case 1:
        case 3:
            err = NGX_HTTP_QUAY_ERR_MANIFEST_INVALID;
            detail = ngx_http_quay_manifest_detail(r, "%V does not have the "
                                                   "size its descriptor "
                                                   "gives", &v);
            break;

        default:
            err = NGX_HTTP_QUAY_ERR_TAG_IMMUTABLE;
            detail = ngx_http_quay_manifest_detail(r, "tag %V is immutable",
                                                   &v);
            break;
        }

        ngx_http_finalize_request(r, ngx_http_quay_send_error(r, err,
                                                              detail));
        return;
    }

    /* lost a race with a concurrent push: run again on a new snapshot */

    v = ngx_http_quay_db_value(q, 0, 5);
    wanted = ngx_http_quay_db_value(q, 0, 6);
    set = ngx_http_quay_db_value(q, 0, 7);

    if (v.len == 0
        || wanted.len != set.len
        || ngx_strncmp(wanted.data, set.data, set.len) != 0)
    {
        if (put->tries < NGX_HTTP_QUAY_MANIFEST_TRIES) {
            rc = ngx_http_quay_manifest_store(r);
            if (rc != NGX_DONE) {
                ngx_http_finalize_request(r, rc);
            }
            return;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "quay: manifest \"%V\": still racing with other "
                      "pushes after %ui tries", &put->digest_text,
                      put->tries);

        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_http_quay_manifest_stored(r, put));
}


/*
 * Quay's audit rows for a manifest: pull_repo, push_repo, delete_tag, with
 * the reference and the digest as metadata (both follow the OCI grammar,
 * so they need no JSON escaping).
 */

static void
ngx_http_quay_manifest_audit(ngx_http_request_t *r, const char *kind,
    ngx_str_t *digest)
{
    ngx_str_t                meta;
    ngx_http_quay_v2_ctx_t  *ctx;

    ctx = ngx_http_quay_manifest_ctx(r);

    meta.len = sizeof("{\"reference\":\"\",\"manifest_digest\":\"\"}")
               + ctx->reference.len + (digest ? digest->len : 0);
    meta.data = ngx_pnalloc(r->pool, meta.len);
    if (meta.data == NULL) {
        return;
    }

    meta.len = ngx_sprintf(meta.data,
                           "{\"reference\":\"%V\",\"manifest_digest\":\"%V\"}",
                           &ctx->reference,
                           digest ? digest : &ctx->reference)
               - meta.data;

    ngx_http_quay_audit(r, kind, NULL, &ctx->user_id, &ctx->repository_id,
                        &meta);
}


/* 201 with Location, Docker-Content-Digest, OCI-Subject and OCI-Tag. */

static ngx_int_t
ngx_http_quay_manifest_stored(ngx_http_request_t *r,
    ngx_http_quay_manifest_put_t *put)
{
    u_char                  *p;
    size_t                   len;
    ngx_str_t               *tag;
    ngx_uint_t               i;
    ngx_http_quay_v2_ctx_t  *ctx;

    ctx = put->ctx;

    len = sizeof("/v2//manifests/") + ctx->name.len + put->digest_text.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(p, "/v2/%V/manifests/%V", &ctx->name, &put->digest_text) =
        '\0';

    if (ngx_http_quay_set_header(r, "Location", (char *) p) != NGX_OK
        || ngx_http_quay_set_header(r, "Docker-Content-Digest",
                                    (char *) put->digest_text.data)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (put->manifest->has_subject) {
        p = ngx_pnalloc(r->pool, QUAY_DIGEST_MAX_LEN + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) quay_digest_format(&put->manifest->subject.digest, (char *) p,
                                  QUAY_DIGEST_MAX_LEN + 1);

        if (ngx_http_quay_set_header(r, "OCI-Subject", (char *) p)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->path.ref_is_digest) {
        tag = put->tags.elts;

        for (i = 0; i < put->tags.nelts; i++) {
            p = ngx_pnalloc(r->pool, tag[i].len + 1);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            *ngx_cpymem(p, tag[i].data, tag[i].len) = '\0';

            if (ngx_http_quay_set_header(r, "OCI-Tag", (char *) p)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    /* committed: tags may have moved, every worker and node must see it
     * before the client does */

    ngx_http_quay_cache_invalidate(ctx->qmcf, &ctx->cache_name, NULL);

    ngx_http_quay_manifest_audit(r, "push_repo", &put->digest_text);

    return ngx_http_quay_manifest_send_empty(r, NGX_HTTP_CREATED);
}


/*
 * A PostgreSQL array literal of the descriptors' digests ("{"sha256:...",
 * ...}") or sizes ("{2,100}"); digests are validated, so quoting them
 * needs no escaping.  d may be NULL when n is 0.
 */
static u_char *
ngx_http_quay_manifest_array(ngx_pool_t *pool, quay_descriptor_t *d,
    size_t n, ngx_uint_t sizes, size_t *len)
{
    u_char  *p, *last;
    char     digest[QUAY_DIGEST_MAX_LEN + 1];
    size_t   i;

    p = ngx_pnalloc(pool, 2 + n * (QUAY_DIGEST_MAX_LEN + NGX_INT64_LEN + 3));
    if (p == NULL) {
        return NULL;
    }

    last = p;
    *last++ = '{';

    for (i = 0; i < n; i++) {
        if (i) {
            *last++ = ',';
        }

        if (sizes) {
            last = ngx_sprintf(last, "%L", d[i].size);
            continue;
        }

        (void) quay_digest_format(&d[i].digest, digest, sizeof(digest));
        last = ngx_sprintf(last, "\"%s\"", digest);
    }

    *last++ = '}';
    *len = last - p;

    return p;
}


/*
 * 1 when a failed statement may succeed if run again: a unique violation,
 * a deadlock or a serialization failure, all of which a concurrent push
 * can cause.
 */
static ngx_int_t
ngx_http_quay_manifest_retry(ngx_http_quay_db_query_t *q)
{
    char  *state;

    if (q->result == NULL) {
        return 0;
    }

    state = PQresultErrorField(q->result, PG_DIAG_SQLSTATE);

    return state != NULL
           && (ngx_strcmp(state, "23505") == 0
               || ngx_strcmp(state, "40P01") == 0
               || ngx_strcmp(state, "40001") == 0);
}


static void
ngx_http_quay_manifest_param(ngx_http_quay_db_query_t *q, ngx_uint_t i,
    const char *s)
{
    ngx_http_quay_db_param(q, i, (u_char *) s, ngx_strlen(s));
}


/*
 * The "detail" of an error body, made safe for the JSON string it is
 * written into: quotes, backslashes and control bytes become '?'.
 */
static ngx_str_t *
ngx_http_quay_manifest_detail(ngx_http_request_t *r, const char *fmt, ...)
{
    u_char     *p, *last;
    va_list     args;
    ngx_str_t  *detail;

    detail = ngx_palloc(r->pool, sizeof(ngx_str_t));
    p = ngx_pnalloc(r->pool, QUAY_ERR_LEN);

    if (detail == NULL || p == NULL) {
        return NULL;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + QUAY_ERR_LEN, fmt, args);
    va_end(args);

    detail->data = p;
    detail->len = last - p;

    for ( /* void */ ; p < last; p++) {
        if (*p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }

    return detail;
}


/* An error before the body was read: the body is dropped first. */

static ngx_int_t
ngx_http_quay_manifest_fail(ngx_http_request_t *r, ngx_http_quay_err_e err,
    ngx_str_t *detail)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_quay_send_error(r, err, detail);
}


static ngx_int_t
ngx_http_quay_manifest_send_empty(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_int_t  rc;

    r->headers_out.status = status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/* Referrers -------------------------------------------------------------- */


/*
 * GET /v2/<name>/referrers/<digest>[?artifactType=]: an OCI index of the
 * manifests whose subject is <digest>, always 200 (an unknown digest has
 * no referrers: distribution spec end-12a/b; Quay's 400 is not kept).  A
 * filter that is not a media type can match nothing: the answer is the
 * empty index, with the filter reported as applied.
 */
ngx_int_t
ngx_http_quay_v2_referrers(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    u_char                    *dst, *src;
    ngx_int_t                  rc;
    ngx_str_t                  arg, type;
    ngx_uint_t                 filtered;
    ngx_http_quay_db_query_t  *q;

    static u_char  empty[] =
        "{\"schemaVersion\":2,"
        "\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":[]}";

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ctx->qmcf->config->feature_referrers_api) {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_NOT_FOUND, NULL);
    }

    ngx_str_null(&type);
    filtered = 0;

    if (ngx_http_arg(r, (u_char *) "artifactType", 12, &arg) == NGX_OK) {
        filtered = 1;

        type.data = ngx_pnalloc(r->pool, arg.len + 1);
        if (type.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = type.data;
        src = arg.data;
        ngx_unescape_uri(&dst, &src, arg.len, 0);
        type.len = dst - type.data;
    }

    if (filtered
        && ngx_http_quay_set_header(r, "OCI-Filters-Applied", "artifactType")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (filtered && !quay_media_type_valid(type.data, type.len)) {
        return ngx_http_quay_referrers_send(r, empty, sizeof(empty) - 1);
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_REFERRERS);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->reference.data, ctx->reference.len);

    if (filtered) {
        ngx_http_quay_db_param(q, 2, type.data, type.len);
    }

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_referrers_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* one reference until ngx_http_quay_referrers_done() */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_referrers_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t  index;

    if (q->rc != NGX_OK || ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    /* sent from the result, which lives as long as r->pool */

    index = ngx_http_quay_db_value(q, 0, 0);

    ngx_http_finalize_request(r, ngx_http_quay_referrers_send(r, index.data,
                                                              index.len));
}


static ngx_int_t
ngx_http_quay_referrers_send(ngx_http_request_t *r, u_char *body,
    size_t len)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type,
                "application/vnd.oci.image.index.v1+json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
