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
 * The bytes come from the first location, preferred one first, whose
 * driver has them.  The filesystem driver sends an in_file buffer:
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


static void ngx_http_quay_blob_lookup_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_blob_send(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_http_quay_db_query_t *q);
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
    ngx_int_t                rc;
    ngx_http_quay_v2_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                      NULL);

    } else {
        rc = ngx_http_quay_blob_send(r, ctx, q);
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_quay_blob_send(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx,
    ngx_http_quay_db_query_t *q)
{
    char                                  *name;
    ngx_int_t                              rc, i, n;
    ngx_str_t                              value, url;
    ngx_http_quay_storage_object_t         obj;
    const quay_storage_location_t         *loc;
    const ngx_http_quay_storage_driver_t  *driver;

    n = ngx_http_quay_db_ntuples(q);

    for (i = 0; i < n; i++) {
        value = ngx_http_quay_db_value(q, (int) i, 1);

        name = ngx_pnalloc(r->pool, value.len + 1);
        if (name == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_cpystrn((u_char *) name, value.data, value.len + 1);

        /* a location this node is not configured for is someone else's */

        loc = quay_config_location(ctx->qmcf->config, name);
        if (loc == NULL) {
            continue;
        }

        driver = ngx_http_quay_storage_driver(loc);
        if (driver == NULL) {
            continue;
        }

        if (r->method == NGX_HTTP_GET
            && !ctx->qmcf->config->feature_proxy_storage)
        {
            rc = driver->presign(r, loc, &ctx->path.digest, &url);

            if (rc == NGX_OK) {
                return ngx_http_quay_blob_redirect(r, ctx, &url);
            }

            if (rc != NGX_DECLINED) {
                return ngx_http_quay_send_error(r,
                                                NGX_HTTP_QUAY_ERR_INTERNAL,
                                                NULL);
            }
        }

        ngx_memzero(&obj, sizeof(ngx_http_quay_storage_object_t));

        rc = driver->open_read(r, loc, &ctx->path.digest, &obj);

        if (rc == NGX_HTTP_QUAY_STORAGE_MISSING) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay: blob \"%V\" is placed in \"%s\" but "
                          "its bytes are missing there", &ctx->reference,
                          name);
            continue;
        }

        if (rc != NGX_OK) {
            return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INTERNAL,
                                            NULL);
        }

        value = ngx_http_quay_db_value(q, (int) i, 0);

        if (obj.size < 0) {

            /* object storage: the row knows the size */

            obj.size = value.len ? ngx_atoof(value.data, value.len)
                                 : NGX_ERROR;

            if (obj.size < 0) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "quay: blob \"%V\" has no size in the "
                              "database", &ctx->reference);
                return ngx_http_quay_send_error(r,
                                                NGX_HTTP_QUAY_ERR_INTERNAL,
                                                NULL);
            }

            if (r->method == NGX_HTTP_GET) {
                /* proxied: the proxy location adds the blob's headers */
                return driver->send(r, &obj);
            }

        } else if (value.len
                   && ngx_atoof(value.data, value.len) != obj.size)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay: blob \"%V\" has %O bytes in \"%s\", the "
                          "database says %V", &ctx->reference, obj.size,
                          name, &value);
        }

        if (ngx_http_quay_blob_headers(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return driver->send(r, &obj);
    }

    return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_BLOB_UNKNOWN, NULL);
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
