/*
 * Blob uploads (distribution-spec "Pushing blobs"; reference 2.3-2.5):
 *
 *   POST   /v2/<name>/blobs/uploads/            open a session (202),
 *          ?digest=                             monolithic upload (201),
 *          ?mount=<digest>&from=<repo>          cross-repository mount
 *                                               (201, or a 202 session)
 *   GET    /v2/<name>/blobs/uploads/<uuid>      progress (204, Range)
 *   PATCH  /v2/<name>/blobs/uploads/<uuid>      a chunk (Content-Range) or
 *                                               a stream (202)
 *   PUT    /v2/<name>/blobs/uploads/<uuid>?digest=   last chunk, verify,
 *                                               commit (201)
 *   DELETE /v2/<name>/blobs/uploads/<uuid>      cancel (204)
 *
 * DESIGN.  A session is a blobupload row (byte_count, the serialized
 * SHA-256 state, the location) plus an upload object in storage.  A uuid
 * is looked up with the repository of the URL, never alone, so another
 * repository's session is 404 BLOB_UPLOAD_UNKNOWN and stays untouched.
 *
 * A request that adds bytes (PATCH, PUT, monolithic POST) goes through
 * these states, each step an event (database query or storage task):
 *
 *   LOOKUP   the row exists for this repository (authorization)
 *   HOLD     the storage driver opens and locks the upload object, so no
 *            other request writes it meanwhile
 *   LOOKUP   again, under the lock: byte_count and hash state are now
 *            current; Content-Range is checked against them
 *   BODY     the body is read unbuffered (r->request_body_no_buffering):
 *            each buffer nginx fills is copied into a bounded staging
 *            buffer and marked consumed; a full stage goes to the driver,
 *            which hashes and writes it in the thread pool.  While a write
 *            is out nothing more is taken from nginx: its buffer stays
 *            full and it stops reading the socket (backpressure), so a
 *            worker holds at most one stage and one client body buffer per
 *            upload, whatever the blob size
 *   SAVE     PATCH: the bytes are flushed, then the new length and hash
 *            state are saved with a compare-and-set on the old length;
 *            PUT: the hash is finished and compared with ?digest=; on a
 *            match the driver moves the bytes into place durably and one
 *            statement deletes the session and commits the blob rows
 *
 * Between LOOKUP and BODY, a driver with upload_resume (S3) checks that
 * it can continue from the committed length on this node (S3: from its
 * spool, or the copy of it the last PATCH stored in the bucket); when it
 * cannot, it winds the upload back (to the last S3 part) and the answer
 * is 416 with the Range to resend from.  During BODY, a driver may ask
 * for a checkpoint after a write (S3, after each part): the bytes are
 * flushed and the row saved (length, hash state, storage_metadata) as at
 * the end of a PATCH, then reading goes on.  The row's storage_metadata
 * is the driver's (S3: multipart upload id and parts); every save and
 * the cancel pass it along.
 *
 * A request that fails or whose client goes away before SAVE leaves the
 * row as it was: bytes it wrote past byte_count are dropped by the next
 * request (the driver truncates to the committed length first).  The hash
 * state lives in the row, so the next PATCH may land on any worker or
 * node and no stored byte is ever read again.
 *
 * Range headers follow the distribution reference: "0-<length-1>", and
 * "0-0" for an empty session (Quay's "0--1" confuses clients).  A chunk
 * starting past byte_count is 416 and changes nothing; one starting before
 * it has its overlap dropped, as Quay's blobuploader does (reference 2.4).
 * A wrong digest is 400 DIGEST_INVALID (the spec's code; Quay answers
 * BLOB_UPLOAD_INVALID) and invalidates the session.
 *
 * Reference counts: an entry point takes one (r->main->count++) and
 * returns NGX_DONE; every path ends in ngx_http_finalize_request() exactly
 * once.  Once the body is being read, nginx's body reader holds the
 * request instead and ours is dropped.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "quay_sha256.h"
#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_storage.h"


/*
 * Bytes copied from nginx's body buffers before a write is issued.  Two
 * stages per upload: one is filled from the socket while the other is
 * hashed and written in the thread pool.  Each handoff to the thread
 * pool stops the socket for a moment, so a stage is large (tools/bench
 * row 4: 256 KiB single stage 4.8-5.3 s, 4 MiB single stage 3.8-3.9 s
 * for the 1 GiB skopeo push on tmpfs).
 */
#define NGX_HTTP_QUAY_UPLOAD_STAGE  (1024 * 1024)

#define NGX_HTTP_QUAY_SHA_HEX_LEN   (2 * QUAY_SHA256_STATE_LEN)


typedef struct {
    ngx_http_request_t                    *r;
    ngx_http_quay_v2_ctx_t                *v2;
    const quay_config_t                   *cfg;

    ngx_str_t                              uuid;
    u_char                                *location;    /* the session's
                                                           URL, NUL-ended */
    quay_digest_t                          digest;      /* ?digest= */
    ngx_str_t                              digest_text;
    ngx_str_t                              mount_text;  /* ?mount= */

    /* the session row, as read under the lock */
    off_t                                  byte_count;
    quay_sha256_t                          sha;         /* touched by the
                                                           storage thread
                                                           while a write is
                                                           out */

    /* this request's chunk */
    off_t                                  range_start; /* -1: none */
    off_t                                  range_len;   /* -1: unknown */
    off_t                                  skip;        /* overlap to drop */
    off_t                                  body_len;    /* read so far,
                                                           overlap included */
    off_t                                  limit;       /* MAXIMUM_LAYER_SIZE
                                                           or -1 */
    ngx_chain_t                           *in;          /* taken from the
                                                           body, not yet
                                                           staged */
    u_char                                *stage;       /* being filled;
                                                           r->pool, freed
                                                           after the body */
    size_t                                 stage_len;
    u_char                                *spare;       /* the other stage,
                                                           out in a write
                                                           while writing */
    size_t                                 out_len;     /* bytes in that
                                                           write */
    ngx_int_t                              read_rc;     /* a body read that
                                                           failed while a
                                                           write was out */

    const quay_storage_location_t         *loc;
    const ngx_http_quay_storage_driver_t  *driver;
    ngx_http_quay_storage_upload_t         up;
    ngx_http_quay_storage_op_t             op;
    ngx_pool_t                            *save_pool;   /* owned: the last
                                                           checkpoint's
                                                           query; destroyed
                                                           by the next one
                                                           or the cleanup */

    ngx_http_quay_err_e                    err;         /* answer after an
                                                           abort */

    unsigned                               finish:1;    /* PUT or monolithic
                                                           POST */
    unsigned                               monolithic:1;
    unsigned                               reading:1;   /* body reader owns
                                                           the request */
    unsigned                               busy:1;      /* storage op out */
    unsigned                               writing:1;   /* that op is a
                                                           write of spare */
    unsigned                               done:1;      /* finalized */
} ngx_http_quay_upload_ctx_t;


static ngx_http_quay_upload_ctx_t *ngx_http_quay_upload_ctx(
    ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *v2);
static void ngx_http_quay_upload_finalize(ngx_http_quay_upload_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_http_quay_upload_error(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_err_e err, const char *detail);

static void ngx_http_quay_upload_mount_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_begin(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_begin_done(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_create_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);

static void ngx_http_quay_upload_status_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_cancel_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_removed(ngx_http_quay_storage_op_t *op);

static ngx_int_t ngx_http_quay_upload_lookup(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_request_done_pt done);
static void ngx_http_quay_upload_authorized(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_held(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_current(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_upload_row(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_db_query_t *q);

static void ngx_http_quay_upload_resumed(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_rewound(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_checkpoint_flushed(
    ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_checkpoint_saved(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_upload_save(ngx_http_quay_upload_ctx_t *ctx,
    ngx_uint_t chunk, ngx_http_quay_request_done_pt done);
static void ngx_http_quay_upload_save_cleanup(void *data);
static void ngx_http_quay_upload_storage_error(
    ngx_http_quay_upload_ctx_t *ctx, ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_body(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_body_started(ngx_http_request_t *r);
static void ngx_http_quay_upload_read_handler(ngx_http_request_t *r);
static void ngx_http_quay_upload_pump(ngx_http_quay_upload_ctx_t *ctx);
static ngx_int_t ngx_http_quay_upload_stage(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_free_stages(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_written(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_body_done(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_flushed(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_saved(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_verify(ngx_http_quay_upload_ctx_t *ctx);
static void ngx_http_quay_upload_invalidated(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_upload_placed(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_upload_committed(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);

static ngx_int_t ngx_http_quay_upload_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_quay_upload_content_range(ngx_http_request_t *r,
    off_t *start, off_t *len);
static ngx_int_t ngx_http_quay_upload_uuid(ngx_http_request_t *r,
    ngx_str_t *uuid);
static u_char *ngx_http_quay_upload_sha_hex(ngx_http_request_t *r,
    quay_sha256_t *sha);
static u_char *ngx_http_quay_upload_sha_hex_to(u_char *hex,
    quay_sha256_t *sha);
static ngx_int_t ngx_http_quay_upload_session_headers(
    ngx_http_quay_upload_ctx_t *ctx, off_t length);
static ngx_int_t ngx_http_quay_upload_blob_headers(
    ngx_http_quay_upload_ctx_t *ctx, ngx_str_t *digest);
static void ngx_http_quay_upload_release(ngx_http_quay_upload_ctx_t *ctx);
static ngx_int_t ngx_http_quay_upload_send(ngx_http_quay_upload_ctx_t *ctx,
    ngx_uint_t status);


/* POST /v2/<name>/blobs/uploads/ */

ngx_int_t
ngx_http_quay_v2_upload_start(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *v2)
{
    u_char                      *p;
    size_t                       ns_len;
    ngx_int_t                    rc;
    ngx_str_t                    digest, mount, from, name;
    quay_digest_t                mount_digest;
    ngx_http_quay_db_query_t    *q;
    ngx_http_quay_upload_ctx_t  *ctx;

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
    }

    ctx = ngx_http_quay_upload_ctx(r, v2);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* finalized by ngx_http_quay_upload_finalize() */

    r->main->count++;

    rc = ngx_http_quay_upload_arg(r, "digest", &digest);

    if (rc == NGX_OK) {
        if (quay_digest_parse(digest.data, digest.len, &ctx->digest, NULL)
            != QUAY_OK
            || ctx->digest.algo != QUAY_DIGEST_SHA256)
        {
            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                       NULL);
            return NGX_DONE;
        }

        ctx->digest_text = digest;
        ctx->finish = 1;
        ctx->monolithic = 1;

    } else if (rc != NGX_DECLINED) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                   NULL);
        return NGX_DONE;
    }

    rc = ngx_http_quay_upload_arg(r, "mount", &mount);

    if (rc == NGX_DECLINED) {
        ngx_http_quay_upload_begin(ctx);
        return NGX_DONE;
    }

    if (rc != NGX_OK
        || quay_digest_parse(mount.data, mount.len, &mount_digest, NULL)
           != QUAY_OK)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                   NULL);
        return NGX_DONE;
    }

    /*
     * Quay: "from" must name a repository the caller may read, as the
     * token names it; any failure falls back to a new session (reference
     * 2.5, catalogue B1.19).  A one-component name is in the library
     * namespace.
     */

    if (ngx_http_quay_upload_arg(r, "from", &from) != NGX_OK
        || quay_repo_name_valid(from.data, from.len, NULL) != QUAY_OK
        || !ngx_http_quay_v2_may_pull(r, &from))
    {
        ngx_http_quay_upload_begin(ctx);
        return NGX_DONE;
    }

    if (ngx_strlchr(from.data, from.data + from.len, '/') == NULL) {
        if (!ctx->cfg->feature_library_support
            || ctx->cfg->library_namespace == NULL)
        {
            ngx_http_quay_upload_begin(ctx);
            return NGX_DONE;
        }

        ns_len = ngx_strlen(ctx->cfg->library_namespace);

        name.data = ngx_pnalloc(r->pool, ns_len + 1 + from.len);
        if (name.data == NULL) {
            ngx_http_quay_upload_finalize(ctx,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_DONE;
        }

        name.len = ngx_sprintf(name.data, "%s/%V",
                               ctx->cfg->library_namespace, &from)
                   - name.data;
        from = name;

    } else if (quay_repo_name_split(from.data, from.len, &ns_len)
               != QUAY_OK)
    {
        ngx_http_quay_upload_begin(ctx);
        return NGX_DONE;
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_BLOB_MOUNT);
    if (q == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    ngx_http_quay_db_param(q, 0, v2->repository_id.data,
                           v2->repository_id.len);
    ngx_http_quay_db_param(q, 1, mount.data, mount.len);
    ngx_http_quay_db_param(q, 2, from.data, ns_len);
    ngx_http_quay_db_param(q, 3, from.data + ns_len + 1,
                           from.len - ns_len - 1);

    /* the mounted digest, for the 201 answer (parsed, so canonical) */

    ctx->mount_text = mount;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    ngx_http_quay_db_param(q, 4, p,
                           ngx_sprintf(p, "%L", (int64_t)
                                       ctx->cfg->push_temp_tag_expiration_sec)
                           - p);

    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_upload_mount_done)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }

    return NGX_DONE;
}


/* GET, PATCH, PUT, DELETE /v2/<name>/blobs/uploads/<uuid> */

ngx_int_t
ngx_http_quay_v2_upload(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *v2)
{
    ngx_int_t                    rc;
    ngx_str_t                    digest;
    ngx_http_quay_db_query_t    *q;
    ngx_http_quay_upload_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_PATCH|NGX_HTTP_PUT
                       |NGX_HTTP_DELETE)))
    {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_METHOD, NULL);
    }

    ctx = ngx_http_quay_upload_ctx(r, v2);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* finalized by ngx_http_quay_upload_finalize() */

    r->main->count++;

    /* the router checked the grammar; the uuid goes into a file name */

    if (v2->reference.len != QUAY_UUID_LEN
        || quay_uuid_valid(v2->reference.data, v2->reference.len, NULL)
           != QUAY_OK)
    {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return NGX_DONE;
    }

    ctx->uuid = v2->reference;

    ctx->location = ngx_pnalloc(r->pool, sizeof("/v2//blobs/uploads/")
                                         + v2->name.len + ctx->uuid.len);
    if (ctx->location == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    (void) ngx_sprintf(ctx->location, "/v2/%V/blobs/uploads/%V%Z",
                       &v2->name, &ctx->uuid);

    if (r->method == NGX_HTTP_GET || r->method == NGX_HTTP_DELETE) {

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            ngx_http_quay_upload_finalize(ctx, rc);
            return NGX_DONE;
        }

        if (r->method == NGX_HTTP_GET) {
            rc = ngx_http_quay_upload_lookup(ctx,
                                       ngx_http_quay_upload_status_done);

        } else {
            q = ngx_http_quay_request_query(r, QUAY_SQL_UPLOAD_DELETE);
            if (q == NULL) {
                ngx_http_quay_upload_finalize(ctx,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
                return NGX_DONE;
            }

            ngx_http_quay_db_param(q, 0, v2->repository_id.data,
                                   v2->repository_id.len);
            ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
            q->udata = ctx;

            rc = ngx_http_quay_request_query_run(r, q,
                                       ngx_http_quay_upload_cancel_done);
        }

        if (rc != NGX_AGAIN) {
            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                       NULL);
        }

        return NGX_DONE;
    }

    /* PATCH and PUT add bytes */

    if (r->method == NGX_HTTP_PUT) {
        rc = ngx_http_quay_upload_arg(r, "digest", &digest);

        if (rc != NGX_OK
            || quay_digest_parse(digest.data, digest.len, &ctx->digest,
                                 NULL)
               != QUAY_OK
            || ctx->digest.algo != QUAY_DIGEST_SHA256)
        {
            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_DIGEST_INVALID,
                                       rc == NGX_DECLINED
                                       ? "the digest argument is missing"
                                       : NULL);
            return NGX_DONE;
        }

        ctx->digest_text = digest;
        ctx->finish = 1;
    }

    rc = ngx_http_quay_upload_content_range(r, &ctx->range_start,
                                            &ctx->range_len);
    if (rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INVALID_REQUEST,
                                   "invalid Content-Range");
        return NGX_DONE;
    }

    if (ctx->range_len >= 0
        && r->headers_in.content_length_n >= 0
        && r->headers_in.content_length_n != ctx->range_len)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_SIZE_INVALID,
                                   NULL);
        return NGX_DONE;
    }

    if (ngx_http_quay_upload_lookup(ctx, ngx_http_quay_upload_authorized)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }

    return NGX_DONE;
}


static ngx_http_quay_upload_ctx_t *
ngx_http_quay_upload_ctx(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *v2)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_upload_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ctx->in = NULL;
     *     ctx->stage = NULL;
     *     ctx->stage_len = 0;
     *     ctx->spare = NULL;
     *     ctx->out_len = 0;
     *     ctx->read_rc = 0;
     *     ctx->byte_count = 0;
     *     ctx->skip = 0;
     *     ctx->body_len = 0;
     *     ctx->up.data = NULL;
     *     ctx->finish = ctx->busy = ctx->reading = ctx->done = 0;
     *     ctx->writing = 0;
     */

    ctx->r = r;
    ctx->v2 = v2;
    ctx->cfg = v2->qmcf->config;
    ctx->range_start = -1;
    ctx->range_len = -1;
    ctx->limit = ctx->cfg->maximum_layer_size > 0
                 ? (off_t) ctx->cfg->maximum_layer_size : -1;
    ctx->op.r = r;
    ctx->op.data = ctx;
    ngx_str_set(&ctx->up.metadata, "{}");

    /* the body reader's event handler finds it there */

    v2->data = ctx;

    return ctx;
}


static void
ngx_http_quay_upload_finalize(ngx_http_quay_upload_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->done) {
        ngx_log_error(NGX_LOG_ALERT, ctx->r->connection->log, 0,
                      "quay: upload finalized twice");
        return;
    }

    ctx->done = 1;

    ngx_http_quay_upload_release(ctx);

    ngx_http_quay_upload_free_stages(ctx);

    ngx_http_finalize_request(ctx->r, rc);
}


/*
 * Answers with an OCI error.  A body nobody has started reading is
 * discarded first; one being read is left to nginx, which closes the
 * connection after the answer (lingering close).
 */

static void
ngx_http_quay_upload_error(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_err_e err, const char *detail)
{
    ngx_int_t            rc;
    ngx_str_t            text, *dp;
    ngx_http_request_t  *r;

    r = ctx->r;

    ngx_http_quay_upload_release(ctx);

    if (!ctx->reading) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            ngx_http_quay_upload_finalize(ctx, rc);
            return;
        }

    } else {
        /* the rest of the body is never read, so nginx closes the
         * connection after the answer: say so in it, or the client
         * reuses a connection that is going away */
        r->keepalive = 0;
    }

    dp = NULL;

    if (detail != NULL) {
        text.data = (u_char *) detail;
        text.len = ngx_strlen(detail);
        dp = &text;
    }

    ngx_http_quay_upload_finalize(ctx, ngx_http_quay_send_error(r, err, dp));
}


/* POST ?mount=: the blob is linked (201), or a session opens instead. */

static void
ngx_http_quay_upload_mount_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_int_t                    rc;
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK || ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_upload_begin(ctx);
        return;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        ngx_http_quay_upload_finalize(ctx, rc);
        return;
    }

    if (ngx_http_quay_upload_blob_headers(ctx, &ctx->mount_text) != NGX_OK)
    {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_CREATED));
}


/*
 * A new session: the upload object in the preferred location, then its
 * row.  The object comes first, so a row never names a missing object.
 */

static void
ngx_http_quay_upload_begin(ngx_http_quay_upload_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (!ctx->finish) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            ngx_http_quay_upload_finalize(ctx, rc);
            return;
        }

    } else if (ctx->limit >= 0
               && r->headers_in.content_length_n > ctx->limit)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE,
                                   NULL);
        return;
    }

    ctx->loc = quay_config_preferred_location(ctx->cfg);
    ctx->driver = ctx->loc ? ngx_http_quay_storage_driver(ctx->loc) : NULL;

    if (ctx->driver == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: no storage driver for the preferred location");
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_upload_uuid(r, &ctx->uuid) != NGX_OK) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->location = ngx_pnalloc(r->pool, sizeof("/v2//blobs/uploads/")
                                         + ctx->v2->name.len + ctx->uuid.len);
    if (ctx->location == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_sprintf(ctx->location, "/v2/%V/blobs/uploads/%V%Z",
                       &ctx->v2->name, &ctx->uuid);

    quay_sha256_init(&ctx->sha);

    ctx->up.loc = ctx->loc;
    ctx->up.uuid = ctx->uuid;
    ctx->up.offset = 0;
    ctx->op.handler = ngx_http_quay_upload_begin_done;

    if (ctx->driver->upload_begin(&ctx->up, &ctx->op) != NGX_AGAIN) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_http_quay_upload_begin_done(ngx_http_quay_storage_op_t *op)
{
    u_char                      *hex;
    ngx_http_request_t          *r;
    ngx_http_quay_db_query_t    *q;
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    r = ctx->r;
    ctx->busy = 0;

    if (op->rc != NGX_OK) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    hex = ngx_http_quay_upload_sha_hex(r, &ctx->sha);
    q = ngx_http_quay_request_query(r, QUAY_SQL_UPLOAD_CREATE);
    if (hex == NULL || q == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_db_param(q, 0, ctx->v2->repository_id.data,
                           ctx->v2->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
    ngx_http_quay_db_param(q, 2, (u_char *) ctx->loc->name,
                           ngx_strlen(ctx->loc->name));
    ngx_http_quay_db_param(q, 3, hex, NGX_HTTP_QUAY_SHA_HEX_LEN);
    ngx_http_quay_db_param(q, 4, ctx->up.metadata.data,
                           ctx->up.metadata.len);
    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q,
                                        ngx_http_quay_upload_create_done)
        != NGX_AGAIN)
    {
        ctx->err = NGX_HTTP_QUAY_ERR_UNAVAILABLE;
        ctx->op.handler = ngx_http_quay_upload_removed;

        if (ctx->driver->upload_abort(&ctx->up, &ctx->op) != NGX_AGAIN) {
            ngx_http_quay_upload_error(ctx, ctx->err, NULL);
        }
    }
}


static void
ngx_http_quay_upload_create_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK || ngx_http_quay_db_ntuples(q) != 1) {

        if (q->rc == NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quay: upload session not created: no storage "
                          "location \"%s\"", ctx->loc->name);
        }

        /* no row will ever name the object: remove it now */

        ctx->err = NGX_HTTP_QUAY_ERR_UNAVAILABLE;
        ctx->op.handler = ngx_http_quay_upload_removed;

        if (ctx->driver->upload_abort(&ctx->up, &ctx->op) != NGX_AGAIN) {
            ngx_http_quay_upload_error(ctx, ctx->err, NULL);
        }

        return;
    }

    if (ctx->monolithic) {
        /* POST ?digest=: the body is the whole blob */
        ctx->byte_count = 0;
        ngx_http_quay_upload_body(ctx);
        return;
    }

    if (ngx_http_quay_upload_session_headers(ctx, 0) != NGX_OK) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_ACCEPTED));
}


/* GET: 204 with the progress, or 404. */

static void
ngx_http_quay_upload_status_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_upload_row(ctx, q) != NGX_OK) {
        return;
    }

    if (ngx_http_quay_upload_session_headers(ctx, ctx->byte_count)
        != NGX_OK)
    {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_NO_CONTENT));
}


/* DELETE: the row goes first (the session is cancelled), then the bytes. */

static void
ngx_http_quay_upload_cancel_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    ctx->err = NGX_HTTP_QUAY_ERR_COUNT;     /* no error: 204 */

    /* what the driver keeps of the upload (S3: its multipart upload) */

    ctx->up.metadata = ngx_http_quay_db_value(q, 0, 1);

    /* the object is where the preferred location keeps uploads; one left
     * elsewhere is the upload cleanup worker's */

    ctx->loc = quay_config_preferred_location(ctx->cfg);
    ctx->driver = ctx->loc ? ngx_http_quay_storage_driver(ctx->loc) : NULL;

    if (ctx->driver == NULL) {
        ngx_http_quay_upload_removed(&ctx->op);
        return;
    }

    ctx->up.loc = ctx->loc;
    ctx->up.uuid = ctx->uuid;
    ctx->op.handler = ngx_http_quay_upload_removed;

    if (ctx->driver->upload_abort(&ctx->up, &ctx->op) != NGX_AGAIN) {
        ngx_http_quay_upload_removed(&ctx->op);
    }
}


/* After an abort: the answer saved in ctx->err, or 204 for DELETE. */

static void
ngx_http_quay_upload_removed(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    ctx->busy = 0;

    if (ctx->err != NGX_HTTP_QUAY_ERR_COUNT) {
        ngx_http_quay_upload_error(ctx, ctx->err, NULL);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_NO_CONTENT));
}


static ngx_int_t
ngx_http_quay_upload_lookup(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_request_done_pt done)
{
    ngx_http_quay_db_query_t  *q;

    q = ngx_http_quay_request_query(ctx->r, QUAY_SQL_UPLOAD_LOOKUP);
    if (q == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->v2->repository_id.data,
                           ctx->v2->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
    q->udata = ctx;

    return ngx_http_quay_request_query_run(ctx->r, q, done);
}


/*
 * Reads the session row into ctx: byte_count, the hash state and the
 * location.  Answers 404 (or 500 for a row we cannot use) itself and
 * returns NGX_DECLINED then.
 */

static ngx_int_t
ngx_http_quay_upload_row(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_db_query_t *q)
{
    u_char               state[QUAY_SHA256_STATE_LEN];
    char                *name;
    ngx_int_t            n;
    ngx_str_t            value;
    ngx_uint_t           i;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return NGX_DECLINED;
    }

    value = ngx_http_quay_db_value(q, 0, 0);
    ctx->byte_count = ngx_atoof(value.data, value.len);

    if (ctx->byte_count < 0) {
        goto invalid;
    }

    value = ngx_http_quay_db_value(q, 0, 1);

    if (value.len == 0 && ctx->byte_count == 0) {
        quay_sha256_init(&ctx->sha);

    } else {
        if (value.len != NGX_HTTP_QUAY_SHA_HEX_LEN) {
            goto invalid;
        }

        for (i = 0; i < QUAY_SHA256_STATE_LEN; i++) {
            n = ngx_hextoi(value.data + 2 * i, 2);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            state[i] = (u_char) n;
        }

        if (quay_sha256_deserialize(&ctx->sha, state, sizeof(state), NULL)
            != QUAY_OK
            || ctx->sha.total != (uint64_t) ctx->byte_count)
        {
            goto invalid;
        }
    }

    value = ngx_http_quay_db_value(q, 0, 3);

    name = ngx_pnalloc(r->pool, value.len + 1);
    if (name == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DECLINED;
    }

    (void) ngx_cpystrn((u_char *) name, value.data, value.len + 1);

    ctx->loc = quay_config_location(ctx->cfg, name);
    ctx->driver = ctx->loc ? ngx_http_quay_storage_driver(ctx->loc) : NULL;

    /* the result lives as long as the request */

    ctx->up.metadata = ngx_http_quay_db_value(q, 0, 4);

    if (ctx->up.metadata.len == 0) {
        ngx_str_set(&ctx->up.metadata, "{}");
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "quay: upload \"%V\" has an unusable row", &ctx->uuid);

    ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);

    return NGX_DECLINED;
}


/* PATCH/PUT, step 1: the session is this repository's; hold the object. */

static void
ngx_http_quay_upload_authorized(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_upload_row(ctx, q) != NGX_OK) {
        return;
    }

    if (ctx->driver == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: upload \"%V\" is in a location this node "
                      "cannot write", &ctx->uuid);
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    ctx->up.loc = ctx->loc;
    ctx->up.uuid = ctx->uuid;
    ctx->op.handler = ngx_http_quay_upload_held;

    if (ctx->driver->upload_open(&ctx->up, &ctx->op) != NGX_AGAIN) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
        return;
    }

    ctx->busy = 1;
}


/* Step 2: held; read the row again, now that nobody else can change it. */

static void
ngx_http_quay_upload_held(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    ctx->busy = 0;

    if (op->rc == NGX_HTTP_QUAY_STORAGE_MISSING) {
        ngx_log_error(NGX_LOG_ERR, ctx->r->connection->log, 0,
                      "quay: upload \"%V\" has a row but no object",
                      &ctx->uuid);
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    if (op->rc == NGX_HTTP_QUAY_STORAGE_LOCKED) {
        if (ngx_http_quay_upload_session_headers(ctx, ctx->byte_count)
            != NGX_OK)
        {
            ngx_http_quay_upload_finalize(ctx,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_RANGE_INVALID,
                                   "another request is writing this upload");
        return;
    }

    if (op->rc != NGX_OK) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    if (ngx_http_quay_upload_lookup(ctx, ngx_http_quay_upload_current)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }
}


/* Step 3: check the chunk against the current row, then read it. */

static void
ngx_http_quay_upload_current(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_upload_row(ctx, q) != NGX_OK) {
        return;
    }

    if (ctx->loc != ctx->up.loc) {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    if (ctx->range_start >= 0) {

        /* reference 2.4, step 1: a gap is refused, the upload is kept */

        if (ctx->range_start > ctx->byte_count) {
            if (ngx_http_quay_upload_session_headers(ctx, ctx->byte_count)
                != NGX_OK)
            {
                ngx_http_quay_upload_finalize(ctx,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_RANGE_INVALID,
                                       NULL);
            return;
        }

        /* step 3: bytes already stored (a retried chunk) are dropped */

        ctx->skip = ctx->byte_count - ctx->range_start;

        /* step 2: the chunk as announced would pass the limit */

        if (ctx->limit >= 0
            && ctx->range_len > ctx->limit - ctx->range_start)
        {
            ngx_http_quay_upload_error(ctx,
                                       NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE,
                                       NULL);
            return;
        }
    }

    if (ctx->limit >= 0
        && r->headers_in.content_length_n >= 0
        && r->headers_in.content_length_n - ctx->skip
           > ctx->limit - ctx->byte_count)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE,
                                   NULL);
        return;
    }

    ctx->up.offset = ctx->byte_count;

    if (ctx->driver->upload_resume == NULL) {
        ngx_http_quay_upload_body(ctx);
        return;
    }

    ctx->op.handler = ngx_http_quay_upload_resumed;

    if (ctx->driver->upload_resume(&ctx->up, &ctx->sha, &ctx->op)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
        return;
    }

    ctx->busy = 1;
}


/* Step 3b: the driver can continue here, or wound the upload back. */

static void
ngx_http_quay_upload_resumed(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    ctx->busy = 0;

    if (op->rc == NGX_OK) {
        ngx_http_quay_upload_body(ctx);
        return;
    }

    if (op->rc != NGX_HTTP_QUAY_STORAGE_REWOUND) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    /* record where the upload stands now, then tell the client */

    if (ngx_http_quay_upload_save(ctx, 0, ngx_http_quay_upload_rewound)
        != NGX_OK)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }
}


static void
ngx_http_quay_upload_rewound(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    u_char                      *detail;
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    detail = ngx_pnalloc(r->pool, sizeof("the upload continues from byte ")
                                  + NGX_OFF_T_LEN);
    if (detail == NULL
        || ngx_http_quay_upload_session_headers(ctx, ctx->up.offset)
           != NGX_OK)
    {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_sprintf(detail, "the upload continues from byte %O%Z",
                       ctx->up.offset);

    ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_RANGE_INVALID,
                               (char *) detail);
}


/*
 * Saves the row: the new length up.offset, the hash state and the
 * driver's metadata, compare-and-set on ctx->byte_count; chunk is 1 at
 * the end of a PATCH.  done runs with the query.  A checkpoint (chunk 0)
 * may come every 5 MiB of a long body: its query and result live in a
 * pool of their own, which the next checkpoint destroys, so that the
 * request's memory does not grow with the blob.
 */

static ngx_int_t
ngx_http_quay_upload_save(ngx_http_quay_upload_ctx_t *ctx, ngx_uint_t chunk,
    ngx_http_quay_request_done_pt done)
{
    u_char                    *hex, *old, *new, *last;
    ngx_pool_t                *pool;
    ngx_http_request_t        *r;
    ngx_pool_cleanup_t        *cln;
    ngx_http_quay_db_query_t  *q;

    r = ctx->r;
    pool = r->pool;

    if (!chunk) {
        if (ctx->save_pool != NULL) {
            /* the previous checkpoint's query finished long ago */
            ngx_destroy_pool(ctx->save_pool);
            ctx->save_pool = NULL;

        } else {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_ERROR;
            }

            cln->handler = ngx_http_quay_upload_save_cleanup;
            cln->data = ctx;
        }

        ctx->save_pool = ngx_create_pool(1024, r->connection->log);
        if (ctx->save_pool == NULL) {
            return NGX_ERROR;
        }

        pool = ctx->save_pool;
    }

    hex = ngx_pnalloc(pool, NGX_HTTP_QUAY_SHA_HEX_LEN);
    old = ngx_pnalloc(pool, 2 * NGX_OFF_T_LEN);
    q = ngx_http_quay_db_query_create(pool, r->connection->log,
                                      QUAY_SQL_UPLOAD_PROGRESS);
    if (hex == NULL || old == NULL || q == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_http_quay_upload_sha_hex_to(hex, &ctx->sha);

    new = ngx_sprintf(old, "%O", ctx->byte_count);
    last = ngx_sprintf(new, "%O", ctx->up.offset);

    ngx_http_quay_db_param(q, 0, ctx->v2->repository_id.data,
                           ctx->v2->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
    ngx_http_quay_db_param(q, 2, old, new - old);
    ngx_http_quay_db_param(q, 3, new, last - new);
    ngx_http_quay_db_param(q, 4, hex, NGX_HTTP_QUAY_SHA_HEX_LEN);
    ngx_http_quay_db_param(q, 5, ctx->up.metadata.data,
                           ctx->up.metadata.len);
    ngx_http_quay_db_param(q, 6, (u_char *) (chunk ? "1" : "0"), 1);
    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q, done) != NGX_AGAIN) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quay_upload_save_cleanup(void *data)
{
    ngx_http_quay_upload_ctx_t  *ctx = data;

    /* a query still out is abandoned by its cleanup in this pool (its
     * connection is closed) */

    if (ctx->save_pool != NULL) {
        ngx_destroy_pool(ctx->save_pool);
        ctx->save_pool = NULL;
    }
}


/*
 * A storage operation failed.  A failing storage service is a 503 naming
 * the location (the driver logged why); anything else is our fault.
 */

static void
ngx_http_quay_upload_storage_error(ngx_http_quay_upload_ctx_t *ctx,
    ngx_http_quay_storage_op_t *op)
{
    if (op->rc == NGX_HTTP_QUAY_STORAGE_FAILED) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                   op->detail.len
                                   ? (char *) op->detail.data : NULL);
        return;
    }

    ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
}


/*
 * Starts reading the body unbuffered.  From here on nginx's body reader
 * holds the request (its count) and calls
 * ngx_http_quay_upload_read_handler() when more arrives.
 */

static void
ngx_http_quay_upload_body(ngx_http_quay_upload_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->r;

    ctx->stage = ngx_palloc(r->pool, NGX_HTTP_QUAY_UPLOAD_STAGE);
    ctx->spare = ngx_palloc(r->pool, NGX_HTTP_QUAY_UPLOAD_STAGE);

    if (ctx->stage == NULL || ctx->spare == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* nginx never spools this body to a temporary file: every buffer
     * comes to us from memory and is consumed before the next is read */

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r,
                                      ngx_http_quay_upload_body_started);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* the body reader gave its reference back; ours finalizes */
        ngx_http_quay_upload_finalize(ctx, rc);
        return;
    }

    /* the body reader's reference now keeps the request */

    r->main->count--;

    ctx->reading = 1;
    r->read_event_handler = ngx_http_quay_upload_read_handler;

    ngx_http_quay_upload_pump(ctx);
}


static void
ngx_http_quay_upload_body_started(ngx_http_request_t *r)
{
    /*
     * Called from inside ngx_http_read_client_request_body() in
     * unbuffered mode; ngx_http_quay_upload_body() takes over when it
     * returns, so that the reference counts stay in one place.
     */
}


static void
ngx_http_quay_upload_read_handler(ngx_http_request_t *r)
{
    ngx_http_quay_v2_ctx_t      *v2;
    ngx_http_quay_upload_ctx_t  *ctx;

    v2 = ngx_http_quay_v2_get_ctx(r);
    ctx = v2 ? v2->data : NULL;

    if (ctx == NULL || ctx->done) {
        return;
    }

    /* with a write out and the stage full, the data stays in the socket
     * (and c->read->ready stays set) until ngx_http_quay_upload_written() */

    ngx_http_quay_upload_pump(ctx);
}


/*
 * Moves body bytes from nginx to the driver until nginx has no more for
 * now, both stages are taken, or the body is complete.  While a write is
 * out, the pump goes on filling the other stage; what can end the
 * request (a read that failed, a size limit) waits until that write is
 * back, since the thread pool is using the spare stage and the hash.
 */

static void
ngx_http_quay_upload_pump(ngx_http_quay_upload_ctx_t *ctx)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_chain_t             **ll;
    ngx_http_request_t       *r;
    ngx_http_request_body_t  *rb;

    r = ctx->r;

    for ( ;; ) {

        if (ctx->done) {
            return;
        }

        if (ctx->read_rc) {
            if (!ctx->busy) {
                /* client went away, timed out or sent a bad chunked
                 * body: nothing of this request is recorded */
                ngx_http_quay_upload_finalize(ctx, ctx->read_rc);
            }

            return;
        }

        if (ctx->busy && !ctx->writing) {
            /* a checkpoint: flush and save before more is taken */
            return;
        }

        rb = r->request_body;

        if (rb != NULL && rb->bufs != NULL) {
            for (ll = &ctx->in; *ll; ll = &(*ll)->next) { /* void */ }
            *ll = rb->bufs;
            rb->bufs = NULL;
        }

        rc = ngx_http_quay_upload_stage(ctx);
        if (rc != NGX_OK) {
            return;
        }

        if (ctx->stage_len == NGX_HTTP_QUAY_UPLOAD_STAGE
            || (ctx->stage_len && !r->reading_body && ctx->in == NULL))
        {
            if (ctx->busy) {
                /* both stages are taken: backpressure */
                return;
            }

            p = ctx->stage;
            ctx->stage = ctx->spare;
            ctx->spare = p;
            ctx->out_len = ctx->stage_len;
            ctx->stage_len = 0;

            ctx->op.handler = ngx_http_quay_upload_written;

            if (ctx->driver->upload_write(&ctx->up, ctx->spare,
                                          ctx->out_len, &ctx->sha,
                                          &ctx->op)
                != NGX_AGAIN)
            {
                ctx->out_len = 0;
                ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL,
                                           NULL);
                return;
            }

            ctx->busy = 1;
            ctx->writing = 1;
            continue;
        }

        if (!r->reading_body && ctx->in == NULL) {
            if (!ctx->busy) {
                ngx_http_quay_upload_body_done(ctx);
            }

            return;
        }

        if (ctx->in != NULL) {
            /* the stage is full or waits for the size check */
            return;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
            ctx->read_rc = rc;
            continue;
        }

        if (rc == NGX_AGAIN
            && (r->request_body == NULL || r->request_body->bufs == NULL))
        {
            return;
        }
    }
}


static void
ngx_http_quay_upload_free_stages(ngx_http_quay_upload_ctx_t *ctx)
{
    if (ctx->stage != NULL) {
        (void) ngx_pfree(ctx->r->pool, ctx->stage);
        ctx->stage = NULL;
    }

    if (ctx->spare != NULL) {
        (void) ngx_pfree(ctx->r->pool, ctx->spare);
        ctx->spare = NULL;
    }
}


/*
 * Copies from ctx->in into the stage, dropping the overlap first and
 * enforcing the announced length and MAXIMUM_LAYER_SIZE.  Returns NGX_OK,
 * NGX_ERROR after answering, or NGX_DECLINED when a limit is crossed
 * while a write is out (the next pump after it answers).
 */

static ngx_int_t
ngx_http_quay_upload_stage(ngx_http_quay_upload_ctx_t *ctx)
{
    off_t         size, n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (ctx->in) {
        cl = ctx->in;
        b = cl->buf;

        if (b->in_file) {
            ngx_log_error(NGX_LOG_ALERT, ctx->r->connection->log, 0,
                          "quay: upload body buffered in a file");
            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
            return NGX_ERROR;
        }

        size = b->last - b->pos;

        if (size) {

            if (ctx->range_len >= 0
                && ctx->body_len + size > ctx->range_len)
            {
                if (ctx->busy) {
                    return NGX_DECLINED;
                }

                ngx_http_quay_upload_error(ctx,
                                           NGX_HTTP_QUAY_ERR_SIZE_INVALID,
                                           NULL);
                return NGX_ERROR;
            }

            if (ctx->skip) {
                n = ngx_min(ctx->skip, size);
                b->pos += n;
                ctx->skip -= n;
                ctx->body_len += n;
                size -= n;
            }

            if (ctx->limit >= 0
                && size > ctx->limit - (off_t) ctx->stage_len
                          - (off_t) ctx->out_len - ctx->up.offset)
            {
                if (ctx->busy) {
                    return NGX_DECLINED;
                }

                ngx_http_quay_upload_error(ctx,
                                           NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE,
                                           NULL);
                return NGX_ERROR;
            }

            n = ngx_min(size,
                        (off_t) (NGX_HTTP_QUAY_UPLOAD_STAGE - ctx->stage_len));

            ngx_memcpy(ctx->stage + ctx->stage_len, b->pos, (size_t) n);
            ctx->stage_len += (size_t) n;
            ctx->body_len += n;
            b->pos += n;

            if (b->pos != b->last) {
                /* the stage is full */
                return NGX_OK;
            }
        }

        /* consumed: nginx may reuse the buffer, we the link */

        ctx->in = cl->next;
        ngx_free_chain(ctx->r->pool, cl);
    }

    return NGX_OK;
}


static void
ngx_http_quay_upload_written(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    ctx->busy = 0;
    ctx->writing = 0;
    ctx->out_len = 0;

    if (op->rc != NGX_OK) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    if (ctx->up.checkpoint) {

        /* the driver moved bytes out of reach of a truncation (an S3
         * part): make them count before writing more */

        ctx->op.handler = ngx_http_quay_upload_checkpoint_flushed;

        if (ctx->driver->upload_flush(&ctx->up, &ctx->op) != NGX_AGAIN) {
            ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL,
                                       NULL);
            return;
        }

        ctx->busy = 1;
        return;
    }

    ngx_http_quay_upload_pump(ctx);
}


static void
ngx_http_quay_upload_checkpoint_flushed(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;

    if (op->rc != NGX_OK) {
        ctx->busy = 0;
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    /* still busy: nothing is read from the client meanwhile */

    if (ngx_http_quay_upload_save(ctx, 0,
                                  ngx_http_quay_upload_checkpoint_saved)
        != NGX_OK)
    {
        ctx->busy = 0;
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }
}


static void
ngx_http_quay_upload_checkpoint_saved(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;
    ctx->busy = 0;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        /* cancelled (or changed) meanwhile */
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    ctx->byte_count = ctx->up.offset;
    ctx->up.checkpoint = 0;

    ngx_http_quay_upload_pump(ctx);
}


/* The whole body is stored (up to up.offset) and hashed. */

static void
ngx_http_quay_upload_body_done(ngx_http_quay_upload_ctx_t *ctx)
{
    if (ctx->range_len >= 0 && ctx->body_len != ctx->range_len) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_SIZE_INVALID,
                                   NULL);
        return;
    }

    ngx_http_quay_upload_free_stages(ctx);

    if (ctx->finish) {
        ngx_http_quay_upload_verify(ctx);
        return;
    }

    /* PATCH: durable bytes first, then the length that counts them */

    ctx->op.handler = ngx_http_quay_upload_flushed;

    if (ctx->driver->upload_flush(&ctx->up, &ctx->op) != NGX_AGAIN) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_http_quay_upload_flushed(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    ctx->busy = 0;

    if (op->rc != NGX_OK) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    if (ngx_http_quay_upload_save(ctx, 1, ngx_http_quay_upload_saved)
        != NGX_OK)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }
}


static void
ngx_http_quay_upload_saved(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        /* cancelled (or changed) meanwhile: this chunk does not count */
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    if (ngx_http_quay_upload_session_headers(ctx, ctx->up.offset)
        != NGX_OK)
    {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_ACCEPTED));
}


/* PUT (or monolithic POST): the digest decides. */

static void
ngx_http_quay_upload_verify(ngx_http_quay_upload_ctx_t *ctx)
{
    u_char                     raw[QUAY_SHA256_DIGEST_LEN];
    quay_digest_t              computed;
    ngx_http_request_t        *r;
    ngx_http_quay_db_query_t  *q;

    r = ctx->r;

    quay_sha256_final(&ctx->sha, raw);
    (void) quay_digest_from_sha256(raw, &computed);

    if (!quay_digest_equal(&computed, &ctx->digest)) {

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quay: upload \"%V\": digest mismatch, %O bytes hash "
                      "to sha256:%s", &ctx->uuid, ctx->up.offset,
                      computed.hex);

        /* catalogue B1.6: nothing becomes visible, the session is over */

        ctx->err = NGX_HTTP_QUAY_ERR_DIGEST_INVALID;

        q = ngx_http_quay_request_query(r, QUAY_SQL_UPLOAD_DELETE);
        if (q == NULL) {
            ngx_http_quay_upload_finalize(ctx,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_quay_db_param(q, 0, ctx->v2->repository_id.data,
                               ctx->v2->repository_id.len);
        ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
        q->udata = ctx;

        if (ngx_http_quay_request_query_run(r, q,
                                            ngx_http_quay_upload_invalidated)
            != NGX_AGAIN)
        {
            ngx_http_quay_upload_error(ctx, ctx->err, NULL);
        }

        return;
    }

    ctx->op.handler = ngx_http_quay_upload_placed;

    if (ctx->driver->upload_commit(&ctx->up, ctx->up.offset, &ctx->digest,
                                   &ctx->op)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_INTERNAL, NULL);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_http_quay_upload_invalidated(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    ctx->op.handler = ngx_http_quay_upload_removed;

    if (ctx->driver->upload_abort(&ctx->up, &ctx->op) != NGX_AGAIN) {
        ngx_http_quay_upload_error(ctx, ctx->err, NULL);
        return;
    }

    ctx->busy = 1;
}


/* The bytes are durable under their digest; now the rows. */

static void
ngx_http_quay_upload_placed(ngx_http_quay_storage_op_t *op)
{
    u_char                      *p, *old, *size, *expire;
    ngx_http_request_t          *r;
    ngx_http_quay_db_query_t    *q;
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = op->data;
    r = ctx->r;
    ctx->busy = 0;

    if (op->rc != NGX_OK) {
        ngx_http_quay_upload_storage_error(ctx, op);
        return;
    }

    p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN);
    q = ngx_http_quay_request_query(r, QUAY_SQL_UPLOAD_COMMIT);
    if (p == NULL || q == NULL) {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    old = p;
    size = ngx_sprintf(old, "%O", ctx->byte_count);
    expire = ngx_sprintf(size, "%O", ctx->up.offset);
    p = ngx_sprintf(expire, "%L",
                    (int64_t) ctx->cfg->push_temp_tag_expiration_sec);

    ngx_http_quay_db_param(q, 0, ctx->v2->repository_id.data,
                           ctx->v2->repository_id.len);
    ngx_http_quay_db_param(q, 1, ctx->uuid.data, ctx->uuid.len);
    ngx_http_quay_db_param(q, 2, old, size - old);
    ngx_http_quay_db_param(q, 3, ctx->digest_text.data,
                           ctx->digest_text.len);
    ngx_http_quay_db_param(q, 4, size, expire - size);
    ngx_http_quay_db_param(q, 5, expire, p - expire);
    q->udata = ctx;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_upload_committed)
        != NGX_AGAIN)
    {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
    }
}


static void
ngx_http_quay_upload_committed(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_upload_ctx_t  *ctx;

    ctx = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_upload_error(ctx, NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_upload_error(ctx,
                                   NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,
                                   NULL);
        return;
    }

    if (ngx_http_quay_upload_blob_headers(ctx, &ctx->digest_text)
        != NGX_OK)
    {
        ngx_http_quay_upload_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_upload_finalize(ctx,
                       ngx_http_quay_upload_send(ctx, NGX_HTTP_CREATED));
}


/*
 * The value of query argument name, percent-decoded into r->pool (Go
 * clients send "sha256%3A..." and "ns%2Frepo").  NGX_DECLINED when absent,
 * NGX_BUSY when given twice (catalogue B1.18), NGX_ERROR on no memory.
 */

static ngx_int_t
ngx_http_quay_upload_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char      *p, *last, *end, *start, *dst;
    size_t       len;
    ngx_uint_t   found;

    len = ngx_strlen(name);
    p = r->args.data;
    last = p + r->args.len;
    found = 0;
    start = NULL;
    end = NULL;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if ((size_t) (end - p) > len
            && p[len] == '='
            && ngx_strncmp(p, name, len) == 0)
        {
            if (found++) {
                return NGX_BUSY;
            }

            start = p + len + 1;
            value->len = end - start;
        }

        p = end + 1;
    }

    if (!found) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, value->len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    dst = value->data;
    ngx_unescape_uri(&dst, &start, value->len, 0);
    value->len = dst - value->data;
    *dst = '\0';

    return NGX_OK;
}


/*
 * Content-Range: "<start>-<end>", decimal, inclusive, nothing else
 * (Quay's ^([0-9]+)-([0-9]+)$).  ngx_atoof() refuses values past
 * NGX_MAX_OFF_T_VALUE, so nothing overflows.  No header: *start = -1.
 */

static ngx_int_t
ngx_http_quay_upload_content_range(ngx_http_request_t *r, off_t *start,
    off_t *len)
{
    u_char           *dash, *last;
    off_t             first, end;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    *start = -1;
    *len = -1;
    found = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Content-Range") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Range",
                               sizeof("Content-Range") - 1)
               == 0)
        {
            if (found != NULL) {
                return NGX_ERROR;
            }

            found = &h[i];
        }
    }

    if (found == NULL) {
        return NGX_OK;
    }

    last = found->value.data + found->value.len;
    dash = ngx_strlchr(found->value.data, last, '-');

    if (dash == NULL) {
        return NGX_ERROR;
    }

    first = ngx_atoof(found->value.data, dash - found->value.data);
    end = ngx_atoof(dash + 1, last - dash - 1);

    if (first == NGX_ERROR || end == NGX_ERROR || end < first
        || end == NGX_MAX_OFF_T_VALUE)
    {
        return NGX_ERROR;
    }

    *start = first;
    *len = end - first + 1;

    return NGX_OK;
}


/* A random (version 4) UUID, lowercase, as quay_uuid_valid() wants. */

static ngx_int_t
ngx_http_quay_upload_uuid(ngx_http_request_t *r, ngx_str_t *uuid)
{
    u_char  raw[16], *p;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: RAND_bytes() failed");
        return NGX_ERROR;
    }

    raw[6] = (u_char) ((raw[6] & 0x0f) | 0x40);
    raw[8] = (u_char) ((raw[8] & 0x3f) | 0x80);

    p = ngx_pnalloc(r->pool, QUAY_UUID_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    uuid->data = p;

    p = ngx_hex_dump(p, raw, 4);
    *p++ = '-';
    p = ngx_hex_dump(p, raw + 4, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, raw + 6, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, raw + 8, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, raw + 10, 6);
    *p = '\0';

    uuid->len = QUAY_UUID_LEN;

    return NGX_OK;
}


/* The serialized hash state as hex text for decode($n, 'hex'). */

static u_char *
ngx_http_quay_upload_sha_hex(ngx_http_request_t *r, quay_sha256_t *sha)
{
    u_char  *hex;

    hex = ngx_pnalloc(r->pool, NGX_HTTP_QUAY_SHA_HEX_LEN);
    if (hex == NULL) {
        return NULL;
    }

    return ngx_http_quay_upload_sha_hex_to(hex, sha);
}


/* Same, into hex (NGX_HTTP_QUAY_SHA_HEX_LEN bytes). */

static u_char *
ngx_http_quay_upload_sha_hex_to(u_char *hex, quay_sha256_t *sha)
{
    u_char  state[QUAY_SHA256_STATE_LEN];

    (void) quay_sha256_serialize(sha, state);
    (void) ngx_hex_dump(hex, state, sizeof(state));

    return hex;
}


/* Location, Range and Docker-Upload-UUID of the session. */

static ngx_int_t
ngx_http_quay_upload_session_headers(ngx_http_quay_upload_ctx_t *ctx,
    off_t length)
{
    u_char              *range, *uuid;
    ngx_http_request_t  *r;

    r = ctx->r;

    range = ngx_pnalloc(r->pool, sizeof("0-") + NGX_OFF_T_LEN);
    uuid = ngx_pnalloc(r->pool, ctx->uuid.len + 1);
    if (range == NULL || uuid == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(range, "0-%O%Z", length > 0 ? length - 1 : 0);
    (void) ngx_cpystrn(uuid, ctx->uuid.data, ctx->uuid.len + 1);

    if (ngx_http_quay_set_header(r, "Location", (char *) ctx->location)
        != NGX_OK
        || ngx_http_quay_set_header(r, "Range", (char *) range) != NGX_OK
        || ngx_http_quay_set_header(r, "Docker-Upload-UUID", (char *) uuid)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Location and Docker-Content-Digest of a blob that now exists. */

static ngx_int_t
ngx_http_quay_upload_blob_headers(ngx_http_quay_upload_ctx_t *ctx,
    ngx_str_t *digest)
{
    u_char              *location, *text;
    ngx_http_request_t  *r;

    r = ctx->r;

    location = ngx_pnalloc(r->pool, sizeof("/v2//blobs/")
                                    + ctx->v2->name.len + digest->len);
    text = ngx_pnalloc(r->pool, digest->len + 1);
    if (location == NULL || text == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(location, "/v2/%V/blobs/%V%Z", &ctx->v2->name,
                       digest);
    (void) ngx_cpystrn(text, digest->data, digest->len + 1);

    if (ngx_http_quay_set_header(r, "Location", (char *) location) != NGX_OK
        || ngx_http_quay_set_header(r, "Docker-Content-Digest", (char *) text)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Lets go of the upload object before any answer goes out: the client may
 * send its next request for it (another PATCH, the PUT) on another
 * connection as soon as it reads this answer.
 */

static void
ngx_http_quay_upload_release(ngx_http_quay_upload_ctx_t *ctx)
{
    if (ctx->driver != NULL && ctx->up.data != NULL && !ctx->busy) {
        ctx->driver->upload_release(&ctx->up);
    }
}


/*
 * An answer without a body: 201, 202 (Content-Length: 0) or 204.  Not
 * returned as a status to ngx_http_finalize_request(), which would make
 * nginx's own page for 201 and 204.
 */

static ngx_int_t
ngx_http_quay_upload_send(ngx_http_quay_upload_ctx_t *ctx,
    ngx_uint_t status)
{
    ngx_http_request_t  *r;

    r = ctx->r;

    ngx_http_quay_upload_release(ctx);

    /* Docker-Distribution-API-Version was set by the router */

    r->headers_out.status = status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}
