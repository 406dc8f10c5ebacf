/*
 * HEAD, GET and DELETE /v2/<name>/blobs/<digest> (reference 2.2;
 * distribution-spec "Pulling blobs", "Deleting blobs").
 *
 * A blob is served only when it is linked to the repository of the URL:
 * an unexpired uploadedblob row or a manifestblob row, joined to a
 * verified imagestorage row that is placed in a location (one query,
 * QUAY_SQL_BLOB_LOOKUP).  Anything else is 404 BLOB_UNKNOWN, so a digest
 * pushed to another repository stays invisible here.
 *
 * The bytes come from the first location, in the order of
 * DISTRIBUTED_STORAGE_PREFERENCE, that holds them (its placements), else
 * from any other holder; a location judged failing is passed over for
 * the next holder, and a failed read falls back to it
 * (ngx_http_quay_storage_select.c: the per-worker circuit breaker, the
 * probe before a presigned redirect, the fallback of proxied pulls).
 *
 * The filesystem driver sends an in_file buffer:
 * sendfile moves the data and nginx's range filter turns Range requests
 * into 206 or 416 (r->allow_ranges), for HEAD as for GET; it also adds
 * Accept-Ranges: bytes to full answers.  ETag is the digest, so the
 * not-modified filter answers If-None-Match.
 *
 * Object storage (reference 4.5): a GET is a 307 to the driver's
 * presigned URL (valid 600 s); with FEATURE_PROXY_STORAGE the driver
 * makes an internal redirect to its proxy_pass location instead, which
 * streams the object (Range included) and adds the blob's headers
 * itself, so that they never end up on an error.  HEAD never asks the
 * storage: the size is the row's, verified when the blob was pushed.
 *
 * DELETE is 405 UNSUPPORTED as in Quay: blobs go only through garbage
 * collection.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_storage.h"


/* One location holding the blob. */
typedef struct {
    const quay_storage_location_t  *loc;
    off_t                           size;        /* the row's; -1 none */
    ngx_uint_t                      rank;        /* preference order */
    unsigned                        probed:1;
    unsigned                        failed:1;
} ngx_http_quay_blob_source_t;


/* A GET or HEAD choosing where to read from; in r->pool. */
typedef struct {
    ngx_http_quay_v2_ctx_t         *ctx;
    ngx_http_quay_blob_source_t    *src;         /* preference order */
    ngx_uint_t                      n;
    ngx_uint_t                      skipped;     /* holders this request
                                                    already failed at */
    ngx_uint_t                      failed;
    ngx_uint_t                      errors;      /* failed, not missing */
    ngx_http_quay_storage_op_t      op;          /* the probe */
    ngx_http_quay_blob_source_t    *probing;
} ngx_http_quay_blob_read_t;


static void ngx_http_quay_blob_lookup_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_http_quay_blob_read_t *ngx_http_quay_blob_sources(
    ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_blob_choose(ngx_http_request_t *r,
    ngx_http_quay_blob_read_t *br);
static ngx_int_t ngx_http_quay_blob_probe(ngx_http_request_t *r,
    ngx_http_quay_blob_read_t *br, ngx_http_quay_blob_source_t *src);
static void ngx_http_quay_blob_probe_done(ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_blob_send(ngx_http_request_t *r,
    ngx_http_quay_blob_read_t *br, ngx_http_quay_blob_source_t *src);
static ngx_int_t ngx_http_quay_blob_headers(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx);
static ngx_int_t ngx_http_quay_blob_redirect(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *url);


ngx_int_t
ngx_http_quay_v2_blob(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_http_quay_db_query_t        *q;
    const quay_storage_location_t   *loc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNSUPPORTED,
                                        NULL);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
    }

    if (!ctx->path.ref_is_digest) {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                        NULL);
    }

    loc = quay_config_preferred_location(ctx->qmcf->config);

    q = ngx_http_quay_request_query(r, QUAY_SQL_BLOB_LOOKUP);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->reference.data, ctx->reference.len);

    if (loc != NULL) {
        ngx_http_quay_db_param(q, 2, (u_char *) loc->name,
                               ngx_strlen(loc->name));
    } else {
        ngx_http_quay_db_param(q, 2, (u_char *) "", 0);
    }

    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_blob_lookup_done)
        != NGX_AGAIN)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: blob lookup not started: %s",
                      q->error ? q->error : "no memory");
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* finalized by ngx_http_quay_blob_lookup_done() */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_blob_lookup_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_int_t                   rc;
    ngx_http_quay_v2_ctx_t     *ctx;
    ngx_http_quay_blob_read_t  *br;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                      NULL);

    } else {
        br = ngx_http_quay_blob_sources(r, ctx, q);

        rc = (br != NULL) ? ngx_http_quay_blob_choose(r, br)
                          : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The locations holding the blob, as this node sees them: configured here,
 * with a driver, not skipped by an earlier failed read of this request,
 * in DISTRIBUTED_STORAGE_PREFERENCE order (the others after, in the
 * database's order).
 */

static ngx_http_quay_blob_read_t *
ngx_http_quay_blob_sources(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_http_quay_db_query_t *q)
{
    char                           *name;
    size_t                          k;
    ngx_int_t                       i, j, n;
    ngx_str_t                       value;
    const quay_config_t            *config;
    ngx_http_quay_blob_read_t      *br;
    ngx_http_quay_blob_source_t    *src, tmp;
    const quay_storage_location_t  *loc;

    config = ctx->qmcf->config;
    n = ngx_http_quay_db_ntuples(q);

    br = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_blob_read_t));
    if (br == NULL) {
        return NULL;
    }

    br->ctx = ctx;

    br->src = ngx_pcalloc(r->pool, (n + 1)
                                   * sizeof(ngx_http_quay_blob_source_t));
    if (br->src == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        value = ngx_http_quay_db_value(q, (int) i, 1);

        name = ngx_pnalloc(r->pool, value.len + 1);
        if (name == NULL) {
            return NULL;
        }

        (void) ngx_cpystrn((u_char *) name, value.data, value.len + 1);

        /* a location this node is not configured for is someone else's */

        loc = quay_config_location(config, name);
        if (loc == NULL || ngx_http_quay_storage_driver(loc) == NULL) {
            continue;
        }

        if (ngx_http_quay_storage_skipped(r, loc)) {
            br->skipped++;
            continue;
        }

        src = &br->src[br->n++];
        src->loc = loc;

        value = ngx_http_quay_db_value(q, (int) i, 0);
        src->size = value.len ? ngx_atoof(value.data, value.len) : -1;

        src->rank = config->storage_preference.n + (ngx_uint_t) i;

        for (k = 0; k < config->storage_preference.n; k++) {
            if (ngx_strcmp(config->storage_preference.items[k], name) == 0) {
                src->rank = k;
                break;
            }
        }

        /* insertion sort by rank, stable */

        for (j = (ngx_int_t) br->n - 1;
             j > 0 && br->src[j - 1].rank > br->src[j].rank;
             j--)
        {
            tmp = br->src[j - 1];
            br->src[j - 1] = br->src[j];
            br->src[j] = tmp;
        }
    }

    return br;
}


/*
 * Reads from the first source that is not failing; see DESIGN in
 * ngx_http_quay_storage_select.c.  Returns what the caller finalizes with:
 * NGX_DONE when a probe was started (r->main->count++ is its reference,
 * dropped by ngx_http_quay_blob_probe_done()) or the response went out
 * through an internal redirect.
 */

static ngx_int_t
ngx_http_quay_blob_choose(ngx_http_request_t *r, ngx_http_quay_blob_read_t *br)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i, pass, down, redirect;
    ngx_http_quay_blob_source_t  *src;

    redirect = r->method == NGX_HTTP_GET
               && !br->ctx->qmcf->config->feature_proxy_storage;

    /* pass 0: locations that are up; pass 1: the others, as a guess */

    for (pass = 0; pass < 2; pass++) {

        for (i = 0; i < br->n; i++) {
            src = &br->src[i];

            if (src->failed) {
                continue;
            }

            down = ngx_http_quay_storage_down(r, src->loc);

            if (down != pass) {
                continue;
            }

            if (pass == 0 && redirect && !src->probed
                && ngx_http_quay_storage_probe_due(r, src->loc))
            {
                src->probed = 1;

                rc = ngx_http_quay_blob_probe(r, br, src);

                if (rc == NGX_AGAIN) {
                    return NGX_DONE;
                }

                /* could not even ask: judged as a failed probe */

                ngx_http_quay_storage_probed(r, src->loc, 0);
                continue;
            }

            rc = ngx_http_quay_blob_send(r, br, src);

            if (rc != NGX_DECLINED) {
                return rc;
            }

            src->failed = 1;
            br->failed++;
        }
    }

    if (br->skipped) {

        /* every holder failed a proxied read of this request */

        return ngx_http_quay_storage_send_unavailable(r);
    }

    if (br->errors) {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_BLOB_UNKNOWN, NULL);
}


static ngx_int_t
ngx_http_quay_blob_probe(ngx_http_request_t *r, ngx_http_quay_blob_read_t *br,
    ngx_http_quay_blob_source_t *src)
{
    ngx_int_t  rc;

    ngx_memzero(&br->op, sizeof(ngx_http_quay_storage_op_t));

    br->op.r = r;
    br->op.handler = ngx_http_quay_blob_probe_done;
    br->op.data = br;
    br->probing = src;

    rc = ngx_http_quay_storage_s3_check(r, src->loc, &br->op);

    if (rc == NGX_AGAIN) {

        /* finalized by ngx_http_quay_blob_probe_done() */

        r->main->count++;
    }

    return rc;
}


static void
ngx_http_quay_blob_probe_done(ngx_http_quay_storage_op_t *op)
{
    ngx_int_t                   rc;
    ngx_http_request_t         *r;
    ngx_http_quay_blob_read_t  *br;

    r = op->r;
    br = op->data;

    ngx_http_quay_storage_probed(r, br->probing->loc, op->rc == NGX_OK);

    if (r->connection->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    rc = ngx_http_quay_blob_choose(r, br);

    ngx_http_finalize_request(r, rc);
}


/*
 * Sends the blob from src.  NGX_DECLINED: not from there (the bytes are
 * missing, or the location failed; logged), try the next one.
 */

static ngx_int_t
ngx_http_quay_blob_send(ngx_http_request_t *r, ngx_http_quay_blob_read_t *br,
    ngx_http_quay_blob_source_t *src)
{
    ngx_int_t                              rc;
    ngx_str_t                              url;
    ngx_http_quay_v2_ctx_t                *ctx;
    ngx_http_quay_storage_object_t         obj;
    const quay_storage_location_t         *loc;
    const ngx_http_quay_storage_driver_t  *driver;

    ctx = br->ctx;
    loc = src->loc;
    driver = ngx_http_quay_storage_driver(loc);

    if (r->method == NGX_HTTP_GET
        && !ctx->qmcf->config->feature_proxy_storage)
    {
        rc = driver->presign(r, loc, &ctx->path.digest, &url);

        if (rc == NGX_OK) {
            return ngx_http_quay_blob_redirect(r, ctx, &url);
        }

        if (rc != NGX_DECLINED) {
            return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INTERNAL,
                                            NULL);
        }
    }

    ngx_memzero(&obj, sizeof(ngx_http_quay_storage_object_t));

    rc = driver->open_read(r, loc, &ctx->path.digest, &obj);

    if (rc == NGX_HTTP_QUAY_STORAGE_MISSING) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: blob \"%V\" is placed in \"%s\" but "
                      "its bytes are missing there", &ctx->reference,
                      loc->name);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        ngx_http_quay_storage_failed(r, loc, "read failed");
        br->errors++;
        return NGX_DECLINED;
    }

    if (obj.size < 0) {

        /* object storage: the row knows the size */

        obj.size = src->size;

        if (obj.size < 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay: blob \"%V\" has no size in the "
                          "database", &ctx->reference);
            return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INTERNAL,
                                            NULL);
        }

        if (r->method == NGX_HTTP_GET) {

            /* proxied: the proxy location adds the blob's headers, and
             * sends S3's errors to @quay_storage_fallback, which needs
             * to know where the read went */

            if (ngx_http_quay_storage_proxying(r, loc) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return driver->send(r, &obj);
        }

    } else if (src->size >= 0 && src->size != obj.size) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: blob \"%V\" has %O bytes in \"%s\", the "
                      "database says %O", &ctx->reference, obj.size,
                      loc->name, src->size);
    }

    if (ngx_http_quay_blob_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return driver->send(r, &obj);
}


static ngx_int_t
ngx_http_quay_blob_headers(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx)
{
    u_char           *digest, *etag;
    ngx_table_elt_t  *h;

    digest = ngx_pnalloc(r->pool, ctx->reference.len + 1);
    etag = ngx_pnalloc(r->pool, ctx->reference.len + 3);
    if (digest == NULL || etag == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(digest, ctx->reference.data, ctx->reference.len + 1);
    (void) ngx_sprintf(etag, "\"%V\"%Z", &ctx->reference);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value.data = etag;
    h->value.len = ctx->reference.len + 2;

    /* not-modified and range filters compare If-None-Match and If-Range
     * with it */

    r->headers_out.etag = h;

    if (ngx_http_quay_set_header(r, "Docker-Content-Digest",
                                 (char *) digest)
        != NGX_OK
        || ngx_http_quay_set_header(r, "Cache-Control", "max-age=31536000")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* the range filter makes 206 and 416 (and Accept-Ranges) */

    r->allow_ranges = 1;

    return NGX_OK;
}


/*
 * 307 to a presigned URL (Quay answers 302; 307 keeps the method).  No
 * Cache-Control: unlike the blob, the URL expires (600 s).
 */

static ngx_int_t
ngx_http_quay_blob_redirect(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_str_t *url)
{
    u_char           *digest;
    ngx_table_elt_t  *h;

    digest = ngx_pnalloc(r->pool, ctx->reference.len + 1);
    h = ngx_list_push(&r->headers_out.headers);
    if (digest == NULL || h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_cpystrn(digest, ctx->reference.data, ctx->reference.len + 1);

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = *url;

    if (ngx_http_quay_set_header(r, "Docker-Content-Digest",
                                 (char *) digest)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_TEMPORARY_REDIRECT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}
