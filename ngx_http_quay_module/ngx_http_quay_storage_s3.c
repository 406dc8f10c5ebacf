/*
 * S3Storage and RadosGWStorage: blobs as objects in an S3 bucket (Quay's
 * storage/cloud.py; reference 4.2-4.5).  The requests themselves, signed
 * subrequests through nginx's proxy module, are ngx_http_quay_s3.c's;
 * this file is the storage driver built on them.
 *
 * Objects, below the location's storage_path (reference 4.3):
 *
 *     sha256/<hex[0:2]>/<hex>   blobs, written only after the digest of
 *                               the bytes the client sent was verified
 *     uploads/<uuid>            an unfinished upload's multipart upload,
 *                               completed there and then copied to its
 *                               content address, then deleted
 *     uploads/<uuid>.tail       its bytes past the last part, as of the
 *                               last PATCH; deleted with the session
 *
 * Uploads.  PATCH data is hashed and appended to a spool file on this
 * node (the filesystem driver's write path, in the thread pool:
 * <client_body_temp_path>/uploads/<uuid>, shared by the node's workers
 * and locked by the request that writes it).  When the spool holds
 * minimum_chunk_size bytes (5 MiB), it becomes the next part of the
 * upload's S3 multipart upload (UploadPart, the file as the body), and
 * the write asks the caller for a checkpoint: the row records the new
 * length, hash state and storage_metadata (upload id, part ETags and
 * sizes, the hash state at the part boundary, the node holding the
 * spool) before the spool starts again at 0.  So a worker holds one
 * staging buffer, never a part, and a node spools at most one part per
 * upload.  PUT uploads the rest as the last part, completes the
 * multipart upload and copies the object to its content address
 * (CopyObject, or UploadPartCopy ranges of maximum_chunk_size for larger
 * blobs); a blob that never filled a part is one PutObject of the spool,
 * signed with its SHA-256, which is the digest, so S3 checks it too.
 * Cancelling aborts the multipart upload and removes the spool and the
 * tail object.
 *
 * Tails.  At the end of a PATCH (upload_flush with bytes spooled past
 * the last part) the spool is hashed in the thread pool and stored as
 * uploads/<uuid>.tail, a PutObject signed with that SHA-256 so S3 checks
 * what it stores; only once S3 accepted it does the metadata name it
 * ("tail": offset, length, SHA-256), so a row never claims a tail the
 * bucket lacks.  A failed PutObject fails the PATCH (503): the row keeps
 * the previous length, and the tail object of that length is still
 * right (a longer one written by a lost answer starts with the same
 * bytes).  Cost: one PutObject of under 5 MiB per PATCH, plus reading it
 * back to hash it; one DeleteObject when the session ends.
 *
 * Nodes.  The part being filled is spooled on the node that received it;
 * the metadata names that node, and there nothing is fetched.  Workers
 * of one node share the spool.  A request on another node (or after the
 * spool was lost, or swept by ngx_http_quay_spool_sweep.c after
 * BLOBUPLOAD_DELETION_DATE_THRESHOLD minutes) fetches the tail object
 * into its own spool: GetObject ranges of 64 KiB (the /_quay_s3/
 * location's in-memory answer size), each written by the spool's thread
 * pool path, then the SHA-256 of the spool checked against the metadata;
 * the hash state at the row's length is the row's already.  Only when
 * the tail is unusable (rows from before tails, an object gone, short or
 * changed) does upload_resume wind the upload back to the last part
 * boundary (length and hash state from the metadata), and the caller
 * answers 416 with the Range to resend from, as the distribution spec's
 * resumable uploads do.  Several writers on several nodes can never
 * produce an object whose bytes differ from what was hashed:
 * CompleteMultipartUpload lists the ETags this driver received for its
 * parts, S3 refuses a part that was replaced, and a tail counts only if
 * its SHA-256 is the row's.
 *
 * Reads.  presign() gives a SigV4 presigned GET valid 600 s (the blob
 * GET answers 307 to it).  With FEATURE_PROXY_STORAGE, send() signs a
 * GET (x-amz-content-sha256: UNSIGNED-PAYLOAD) into the $quay_s3_*
 * variables and makes an internal redirect to /_quay_s3_proxy/, a
 * proxy_pass location with buffering off: nginx streams the object,
 * Range included, and the location adds the blob's headers.  HEAD is
 * answered from the database by the caller.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <jansson.h>

#include "quay_sigv4.h"
#include "quay_sha256.h"
#include "quay_reference.h"
#include "ngx_http_quay_module.h"
#include "ngx_http_quay_storage.h"
#include "ngx_http_quay_s3.h"


#define NGX_HTTP_QUAY_S3_COPY_MAX        ((off_t) 5 << 30)
#define NGX_HTTP_QUAY_S3_MAX_PARTS       10000
#define NGX_HTTP_QUAY_S3_DIGEST_TEXT_MAX (7 + 128 + 1)
#define NGX_HTTP_QUAY_S3_HEX_LEN         (2 * QUAY_SHA256_DIGEST_LEN)
#define NGX_HTTP_QUAY_S3_TAIL_RANGE      65536  /* GetObject of a tail:
                                                   subrequest_output_buffer_size
                                                   of /_quay_s3/ */
#define NGX_HTTP_QUAY_S3_HASH_BUF        16384


typedef struct {
    ngx_str_t                       etag;
    off_t                           size;
} ngx_http_quay_s3_part_t;


typedef struct ngx_http_quay_s3_upload_s  ngx_http_quay_s3_upload_t;

typedef void (*ngx_http_quay_s3_step_pt)(ngx_http_quay_s3_upload_t *su);


/* The thread pool's task: the SHA-256 of the spool's first size bytes. */
typedef struct {
    ngx_http_quay_s3_upload_t      *su;
    ngx_fd_t                        fd;
    off_t                           size;
    ngx_int_t                       rc;
    ngx_err_t                       err;
    u_char                          hex[NGX_HTTP_QUAY_S3_HEX_LEN];
} ngx_http_quay_s3_hash_t;


/* The driver's part of ngx_http_quay_storage_upload_t, in r->pool. */
struct ngx_http_quay_s3_upload_s {
    ngx_http_request_t             *r;
    ngx_http_quay_storage_upload_t *up;          /* the caller's */
    ngx_http_quay_storage_op_t     *op;          /* the caller's, while
                                                    one is out */
    ngx_http_quay_s3_endpoint_t     ep;
    ngx_str_t                       temp_key;    /* .../uploads/<uuid> */
    ngx_str_t                       tail_key;    /* .../uploads/<uuid>.tail */
    ngx_str_t                       node;        /* this node's spool
                                                    directory, named */

    quay_storage_location_t         spool_loc;   /* LocalStorage at
                                                    client_body_temp_path */
    ngx_http_quay_storage_upload_t  spool;       /* spool.offset: bytes of
                                                    the part being filled */
    ngx_http_quay_storage_op_t      spool_op;
    ngx_http_quay_s3_req_t          sq;

    /* storage_metadata */
    ngx_str_t                       upload_id;   /* "" before the first
                                                    part */
    ngx_array_t                     parts;       /* ngx_http_quay_s3_part_t */
    off_t                           parted;      /* bytes in parts */
    ngx_str_t                       part_sha;    /* hash state at parted,
                                                    hex */
    ngx_str_t                       spool_node;  /* who spools the rest */
    off_t                           tail_at;     /* the .tail object: */
    off_t                           tail_size;   /* bytes from tail_at, */
    ngx_str_t                       tail_sha;    /* their SHA-256, hex */
    char                           *metadata;    /* owned (malloc); freed
                                                    by the cleanup */

    /* a tail being fetched, or hashed */
    quay_sha256_t                  *resume_hash; /* the caller's */
    u_char                         *fetch_buf;   /* one GetObject range */
    off_t                           fetched;
    ngx_thread_task_t              *hash_task;

    /* the write in progress */
    u_char                         *data;
    size_t                          len;
    quay_sha256_t                  *hash;

    /* the commit in progress */
    off_t                           size;
    ngx_str_t                       final_key;
    const quay_digest_t            *digest;
    ngx_str_t                       copy_id;     /* multipart copy */
    ngx_array_t                     copy_parts;  /* ngx_http_quay_s3_part_t */
    off_t                           copy_offset;
    off_t                           copy_part_size;

    ngx_http_quay_s3_step_pt        next;        /* after the spool op or
                                                    the S3 request */
    ngx_http_quay_s3_step_pt        after_part;  /* after UploadPart */
    ngx_event_t                     posted;      /* completion without
                                                    I/O */
    ngx_int_t                       posted_rc;
    ngx_http_quay_s3_step_pt        posted_step; /* or a first step */

    unsigned                        parsed:1;    /* metadata read */
    unsigned                        rewind:1;    /* the spool holds an
                                                    uploaded part */
    unsigned                        tail:1;      /* the metadata names a
                                                    .tail object: it may
                                                    exist */
};


/* An object opened by open_read(). */
typedef struct {
    const quay_storage_location_t  *loc;
    const quay_digest_t            *digest;
} ngx_http_quay_s3_object_t;


static ngx_int_t ngx_http_quay_s3_open_read(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_http_quay_storage_object_t *obj);
static ngx_int_t ngx_http_quay_s3_send(ngx_http_request_t *r,
    ngx_http_quay_storage_object_t *obj);
static ngx_int_t ngx_http_quay_s3_upload_begin(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_upload_open(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_upload_resume(
    ngx_http_quay_storage_upload_t *up, quay_sha256_t *hash,
    ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_upload_write(
    ngx_http_quay_storage_upload_t *up, u_char *p, size_t len,
    quay_sha256_t *hash, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_upload_flush(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_upload_commit(
    ngx_http_quay_storage_upload_t *up, off_t size, const quay_digest_t *d,
    ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_s3_upload_release(
    ngx_http_quay_storage_upload_t *up);
static ngx_int_t ngx_http_quay_s3_upload_abort(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_s3_presign(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_str_t *url);

static ngx_http_quay_s3_upload_t *ngx_http_quay_s3_upload_state(
    ngx_http_quay_storage_upload_t *up, ngx_http_request_t *r);
static void ngx_http_quay_s3_upload_cleanup(void *data);
static ngx_int_t ngx_http_quay_s3_metadata_parse(ngx_http_quay_s3_upload_t *su);
static ngx_int_t ngx_http_quay_s3_metadata_make(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_finish(ngx_http_quay_s3_upload_t *su,
    ngx_int_t rc);
static ngx_int_t ngx_http_quay_s3_post(ngx_http_quay_s3_upload_t *su,
    ngx_int_t rc);
static ngx_int_t ngx_http_quay_s3_post_step(ngx_http_quay_s3_upload_t *su,
    ngx_http_quay_s3_step_pt step);
static ngx_int_t ngx_http_quay_s3_spool_body(ngx_http_quay_s3_upload_t *su,
    off_t size);
static void ngx_http_quay_s3_posted(ngx_event_t *ev);
static void ngx_http_quay_s3_fail(ngx_http_quay_s3_upload_t *su);
static ngx_int_t ngx_http_quay_s3_start(ngx_http_quay_s3_upload_t *su,
    ngx_http_quay_s3_step_pt next);
static void ngx_http_quay_s3_step(ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_s3_req_step(ngx_http_quay_s3_req_t *sq);

static void ngx_http_quay_s3_held(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_written(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_checkpoint(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_flushed(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_part(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_part_created(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_part_send(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_part_sent(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_put_done(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_complete(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_completed(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_copy_created(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_copy_part(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_copy_part_done(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_copied(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_temp_deleted(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_remove_spool(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_spool_removed(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_aborted(ngx_http_quay_s3_upload_t *su);
static u_char *ngx_http_quay_s3_parts_xml(ngx_pool_t *pool,
    ngx_array_t *parts, size_t *len);

static ngx_int_t ngx_http_quay_s3_wind_back(ngx_http_quay_s3_upload_t *su,
    quay_sha256_t *hash);
static void ngx_http_quay_s3_unusable_tail(ngx_http_quay_s3_upload_t *su,
    const char *why);
static void ngx_http_quay_s3_tail_get(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_got(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_written(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_verified(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_hashed(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_stored(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_log_unless_gone(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t level);
static void ngx_http_quay_s3_tail_delete(ngx_http_quay_s3_upload_t *su);
static void ngx_http_quay_s3_tail_deleted(ngx_http_quay_s3_upload_t *su);
static ngx_int_t ngx_http_quay_s3_hash_spool(ngx_http_quay_s3_upload_t *su,
    off_t size, ngx_http_quay_s3_step_pt next);
static void ngx_http_quay_s3_hash_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_s3_hash_done(ngx_event_t *ev);


const ngx_http_quay_storage_driver_t  ngx_http_quay_storage_s3_driver = {
    "S3Storage",
    ngx_http_quay_s3_open_read,
    ngx_http_quay_s3_send,
    ngx_http_quay_s3_upload_begin,
    ngx_http_quay_s3_upload_open,
    ngx_http_quay_s3_upload_resume,
    ngx_http_quay_s3_upload_write,
    ngx_http_quay_s3_upload_flush,
    ngx_http_quay_s3_upload_commit,
    ngx_http_quay_s3_upload_release,
    ngx_http_quay_s3_upload_abort,
    ngx_http_quay_s3_presign
};


/* ------------------------------------------------------------- reads */


static ngx_int_t
ngx_http_quay_s3_open_read(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_http_quay_storage_object_t *obj)
{
    ngx_http_quay_s3_object_t  *so;

    so = ngx_palloc(r->pool, sizeof(ngx_http_quay_s3_object_t));
    if (so == NULL) {
        return NGX_ERROR;
    }

    so->loc = loc;
    so->digest = d;

    /* only the bucket knows; asking it would cost a round trip the
     * database saves (the row has the verified size) */

    obj->size = -1;
    obj->data = so;

    return NGX_OK;
}


/*
 * HEAD: the header the caller prepared, with the size from the database.
 * GET (proxy mode): an internal redirect to /_quay_s3_proxy/ with a
 * signed GET, whose proxy_pass streams the object (Range included) and
 * adds the blob's headers.
 */

static ngx_int_t
ngx_http_quay_s3_send(ngx_http_request_t *r,
    ngx_http_quay_storage_object_t *obj)
{
    u_char                       *digest;
    char                          rel[QUAY_DIGEST_PATH_MAX + 1];
    size_t                        n;
    ngx_str_t                     key, text;
    ngx_http_quay_s3_object_t    *so;
    ngx_http_quay_s3_endpoint_t  *ep;

    if (r->method == NGX_HTTP_HEAD) {
        r->headers_out.content_length_n = obj->size;
        r->header_only = 1;

        return ngx_http_send_header(r);
    }

    so = obj->data;

    ep = ngx_palloc(r->pool, sizeof(ngx_http_quay_s3_endpoint_t));
    digest = ngx_pnalloc(r->pool, NGX_HTTP_QUAY_S3_DIGEST_TEXT_MAX);
    if (ep == NULL || digest == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = quay_digest_storage_path(so->digest, rel, sizeof(rel));

    if (n == 0
        || ngx_http_quay_s3_endpoint(r->pool, so->loc, ep) != NGX_OK
        || ngx_http_quay_s3_key(r->pool, ep, (u_char *) rel, n, &key)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.data = digest;
    text.len = quay_digest_format(so->digest, (char *) digest,
                                  NGX_HTTP_QUAY_S3_DIGEST_TEXT_MAX);

    return ngx_http_quay_s3_proxy(r, so->loc, ep, &key, &text);
}


static ngx_int_t
ngx_http_quay_s3_presign(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_str_t *url)
{
    char                          rel[QUAY_DIGEST_PATH_MAX + 1];
    size_t                        n;
    ngx_str_t                     key;
    ngx_http_quay_s3_endpoint_t   ep;

    n = quay_digest_storage_path(d, rel, sizeof(rel));

    if (n == 0
        || ngx_http_quay_s3_endpoint(r->pool, loc, &ep) != NGX_OK
        || ngx_http_quay_s3_key(r->pool, &ep, (u_char *) rel, n, &key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_quay_s3_presign_url(r, loc, &ep, &key, url);
}


/* ----------------------------------------------------------- uploads */


static ngx_http_quay_s3_upload_t *
ngx_http_quay_s3_upload_state(ngx_http_quay_storage_upload_t *up,
    ngx_http_request_t *r)
{
    u_char                     *p;
    ngx_str_t                   rel, *temp;
    ngx_pool_cleanup_t         *cln;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quay_s3_upload_t  *su;

    if (up->data != NULL) {
        return up->data;
    }

    if (up->uuid.len != QUAY_UUID_LEN
        || quay_uuid_valid(up->uuid.data, up->uuid.len, NULL) != QUAY_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: invalid upload uuid reached the "
                      "driver");
        return NULL;
    }

    su = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_s3_upload_t));
    if (su == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     su->op = NULL;
     *     su->upload_id = { 0, NULL };
     *     su->parted = 0;
     *     su->metadata = NULL;
     *     su->parsed = su->rewind = su->tail = 0;
     *     su->fetch_buf = NULL;
     *     su->hash_task = NULL;
     */

    su->r = r;
    su->up = up;

    if (ngx_http_quay_s3_endpoint(r->pool, up->loc, &su->ep) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: storage location \"%s\": no usable endpoint",
                      up->loc->name);
        return NULL;
    }

    rel.len = sizeof("uploads/") - 1 + up->uuid.len;
    rel.data = ngx_pnalloc(r->pool, rel.len);
    if (rel.data == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(rel.data, "uploads/%V", &up->uuid);

    if (ngx_http_quay_s3_key(r->pool, &su->ep, rel.data, rel.len,
                             &su->temp_key)
        != NGX_OK)
    {
        return NULL;
    }

    rel.len = sizeof("uploads/.tail") - 1 + up->uuid.len;
    rel.data = ngx_pnalloc(r->pool, rel.len);
    if (rel.data == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(rel.data, "uploads/%V.tail", &up->uuid);

    if (ngx_http_quay_s3_key(r->pool, &su->ep, rel.data, rel.len,
                             &su->tail_key)
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&su->parts, r->pool, 4,
                       sizeof(ngx_http_quay_s3_part_t))
        != NGX_OK)
    {
        return NULL;
    }

    /* the spool: a LocalStorage upload file in client_body_temp_path */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    temp = &clcf->client_body_temp_path->name;

    p = ngx_pnalloc(r->pool, temp->len + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p, temp->data, temp->len + 1);

    su->spool_loc.name = up->loc->name;
    su->spool_loc.driver = QUAY_STORAGE_LOCAL;
    su->spool_loc.storage_path = (char *) p;

    su->spool.loc = &su->spool_loc;
    su->spool.uuid = up->uuid;
    ngx_str_set(&su->spool.metadata, "{}");

    su->spool_op.r = r;
    su->spool_op.handler = ngx_http_quay_s3_step;
    su->spool_op.data = su;

    /* the node's name for its spools: host name and spool directory */

    su->node.len = ngx_cycle->hostname.len + 1 + temp->len;
    su->node.data = ngx_pnalloc(r->pool, su->node.len);
    if (su->node.data == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(su->node.data, "%V:%V", &ngx_cycle->hostname, temp);

    if (ngx_http_quay_s3_req_init(&su->sq, r, up->loc, &su->ep) == NULL) {
        return NULL;
    }

    su->sq.handler = ngx_http_quay_s3_req_step;
    su->sq.data = su;

    su->posted.handler = ngx_http_quay_s3_posted;
    su->posted.data = su;
    su->posted.log = r->connection->log;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_quay_s3_upload_cleanup;
    cln->data = su;

    up->data = su;

    return su;
}


static void
ngx_http_quay_s3_upload_cleanup(void *data)
{
    ngx_http_quay_s3_upload_t  *su = data;

    if (su->posted.posted) {
        ngx_delete_posted_event(&su->posted);
    }

    if (su->metadata != NULL) {
        ngx_free(su->metadata);
        su->metadata = NULL;
    }
}


/*
 * Reads up->metadata:
 *
 *     {"upload_id": "...", "parts": [["<etag>", <size>], ...],
 *      "part_sha": "<hex state at the end of the parts>",
 *      "node": "<host>:<spool directory>",
 *      "tail": [<offset>, <size>, "<hex SHA-256 of the bytes>"]}
 *
 * All keys are optional ("{}" is a fresh upload).  "tail" describes the
 * object uploads/<uuid>.tail: the size bytes spooled past offset when it
 * was stored; it is current only when offset is the end of the parts and
 * offset + size the row's length.
 */

static ngx_int_t
ngx_http_quay_s3_metadata_parse(ngx_http_quay_s3_upload_t *su)
{
    size_t                    i, n;
    json_t                   *root, *v, *parts, *part, *etag, *size, *at;
    ngx_str_t                *m;
    json_error_t              jerr;
    ngx_http_request_t       *r;
    ngx_http_quay_s3_part_t  *p;

    r = su->r;
    m = &su->up->metadata;

    su->parts.nelts = 0;
    su->parted = 0;
    ngx_str_null(&su->upload_id);
    ngx_str_null(&su->part_sha);
    ngx_str_null(&su->spool_node);
    ngx_str_null(&su->tail_sha);
    su->tail = 0;

    if (m->len == 0) {
        su->parsed = 1;
        return NGX_OK;
    }

    root = json_loadb((const char *) m->data, m->len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        goto invalid;
    }

#define ngx_http_quay_s3_json_str(name, field)                                \
    v = json_object_get(root, name);                                          \
    if (v != NULL) {                                                          \
        if (!json_is_string(v)) {                                             \
            goto invalid;                                                     \
        }                                                                     \
        field.len = json_string_length(v);                                    \
        field.data = ngx_pnalloc(r->pool, field.len);                         \
        if (field.data == NULL) {                                             \
            json_decref(root);                                                \
            return NGX_ERROR;                                                 \
        }                                                                     \
        ngx_memcpy(field.data, json_string_value(v), field.len);             \
    }

    ngx_http_quay_s3_json_str("upload_id", su->upload_id);
    ngx_http_quay_s3_json_str("part_sha", su->part_sha);
    ngx_http_quay_s3_json_str("node", su->spool_node);

#undef ngx_http_quay_s3_json_str

    parts = json_object_get(root, "parts");

    if (parts != NULL) {
        if (!json_is_array(parts)) {
            goto invalid;
        }

        n = json_array_size(parts);

        for (i = 0; i < n; i++) {
            part = json_array_get(parts, i);
            etag = json_array_get(part, 0);
            size = json_array_get(part, 1);

            if (!json_is_array(part) || !json_is_string(etag)
                || !json_is_integer(size) || json_integer_value(size) <= 0)
            {
                goto invalid;
            }

            p = ngx_array_push(&su->parts);
            if (p == NULL) {
                json_decref(root);
                return NGX_ERROR;
            }

            p->size = (off_t) json_integer_value(size);
            p->etag.len = json_string_length(etag);
            p->etag.data = ngx_pnalloc(r->pool, p->etag.len);
            if (p->etag.data == NULL) {
                json_decref(root);
                return NGX_ERROR;
            }

            ngx_memcpy(p->etag.data, json_string_value(etag), p->etag.len);

            su->parted += p->size;
        }
    }

    v = json_object_get(root, "tail");

    if (v != NULL) {
        at = json_array_get(v, 0);
        size = json_array_get(v, 1);
        etag = json_array_get(v, 2);

        if (!json_is_array(v) || !json_is_integer(at)
            || !json_is_integer(size) || !json_is_string(etag)
            || json_integer_value(at) < 0 || json_integer_value(size) < 0
            || json_string_length(etag) != NGX_HTTP_QUAY_S3_HEX_LEN)
        {
            goto invalid;
        }

        su->tail_at = (off_t) json_integer_value(at);
        su->tail_size = (off_t) json_integer_value(size);
        su->tail_sha.len = NGX_HTTP_QUAY_S3_HEX_LEN;
        su->tail_sha.data = ngx_pnalloc(r->pool, su->tail_sha.len);
        if (su->tail_sha.data == NULL) {
            json_decref(root);
            return NGX_ERROR;
        }

        ngx_memcpy(su->tail_sha.data, json_string_value(etag),
                   su->tail_sha.len);
        su->tail = 1;
    }

    json_decref(root);

    if (su->parts.nelts && su->upload_id.len == 0) {
        goto bad;
    }

    su->parsed = 1;

    return NGX_OK;

invalid:

    if (root != NULL) {
        json_decref(root);
    }

bad:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "quay: upload \"%V\" has unusable storage_metadata",
                  &su->up->uuid);

    return NGX_ERROR;
}


/* Writes the state back into up->metadata (malloc, owned by su). */

static ngx_int_t
ngx_http_quay_s3_metadata_make(ngx_http_quay_s3_upload_t *su)
{
    char                     *text;
    json_t                   *root, *parts, *part;
    ngx_uint_t                i;
    ngx_http_quay_s3_part_t  *p;

    root = json_object();
    parts = json_array();
    if (root == NULL || parts == NULL) {
        goto failed;
    }

    p = su->parts.elts;

    for (i = 0; i < su->parts.nelts; i++) {
        part = json_pack("[s#I]", (const char *) p[i].etag.data,
                         (int) p[i].etag.len, (json_int_t) p[i].size);

        if (part == NULL || json_array_append_new(parts, part) != 0) {
            goto failed;
        }
    }

    if (json_object_set_new(root, "parts", parts) != 0) {
        parts = NULL;
        goto failed;
    }

    parts = NULL;

    if ((su->upload_id.len
         && json_object_set_new(root, "upload_id",
                                json_stringn((const char *)
                                             su->upload_id.data,
                                             su->upload_id.len))
            != 0)
        || (su->part_sha.len
            && json_object_set_new(root, "part_sha",
                                   json_stringn((const char *)
                                                su->part_sha.data,
                                                su->part_sha.len))
               != 0)
        || json_object_set_new(root, "node",
                               json_stringn((const char *) su->node.data,
                                            su->node.len))
           != 0
        || (su->tail
            && json_object_set_new(root, "tail",
                                   json_pack("[IIs#]",
                                             (json_int_t) su->tail_at,
                                             (json_int_t) su->tail_size,
                                             (const char *)
                                             su->tail_sha.data,
                                             (int) su->tail_sha.len))
               != 0))
    {
        goto failed;
    }

    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (text == NULL) {
        return NGX_ERROR;
    }

    /* one text at a time: each part would otherwise leave a copy of the
     * growing list in r->pool; the caller's last query has finished with
     * the previous one */

    if (su->metadata != NULL) {
        ngx_free(su->metadata);
    }

    su->metadata = text;
    su->up->metadata.data = (u_char *) text;
    su->up->metadata.len = ngx_strlen(text);

    return NGX_OK;

failed:

    if (parts != NULL) {
        json_decref(parts);
    }

    if (root != NULL) {
        json_decref(root);
    }

    return NGX_ERROR;
}


/* Hands the result to the caller. */

static void
ngx_http_quay_s3_finish(ngx_http_quay_s3_upload_t *su, ngx_int_t rc)
{
    ngx_http_quay_storage_op_t  *op;

    op = su->op;
    su->op = NULL;

    if (op == NULL) {
        ngx_log_error(NGX_LOG_ALERT, su->r->connection->log, 0,
                      "quay: storage: S3 upload finished twice");
        return;
    }

    op->rc = rc;
    op->handler(op);
}


/* Finishes with rc from a posted event: never from inside the call. */

static ngx_int_t
ngx_http_quay_s3_post(ngx_http_quay_s3_upload_t *su, ngx_int_t rc)
{
    su->posted_rc = rc;
    su->posted_step = NULL;
    ngx_post_event(&su->posted, &ngx_posted_events);

    return NGX_AGAIN;
}


/* Runs step from a posted event: a step may finish (and so call the
 * caller's handler) at once, which must not happen inside the call. */

static ngx_int_t
ngx_http_quay_s3_post_step(ngx_http_quay_s3_upload_t *su,
    ngx_http_quay_s3_step_pt step)
{
    su->posted_step = step;
    ngx_post_event(&su->posted, &ngx_posted_events);

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_posted(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_quay_s3_upload_t  *su;

    su = ev->data;
    c = su->r->connection;

    if (su->posted_step != NULL) {
        su->posted_step(su);

    } else {
        ngx_http_quay_s3_finish(su, su->posted_rc);
    }

    ngx_http_run_posted_requests(c);
}


/* The S3 request in su->sq failed: log it, tell the client which
 * location. */

static void
ngx_http_quay_s3_fail(ngx_http_quay_s3_upload_t *su)
{
    u_char                      *p;
    size_t                       len;
    ngx_http_quay_storage_op_t  *op;

    ngx_http_quay_s3_log_failure(&su->sq, NGX_LOG_ERR);

    op = su->op;

    if (op != NULL) {
        len = sizeof("storage location \"\" failed")
              + ngx_strlen(su->sq.loc->name);

        p = ngx_pnalloc(su->r->pool, len);
        if (p != NULL) {
            op->detail.data = p;
            op->detail.len = ngx_sprintf(p, "storage location \"%s\" "
                                         "failed%Z", su->sq.loc->name)
                             - p - 1;
        }
    }

    ngx_http_quay_s3_finish(su, NGX_HTTP_QUAY_STORAGE_FAILED);
}


/* Starts su->sq; next runs when it is answered. */

static ngx_int_t
ngx_http_quay_s3_start(ngx_http_quay_s3_upload_t *su,
    ngx_http_quay_s3_step_pt next)
{
    su->next = next;

    return ngx_http_quay_s3_request(&su->sq);
}


/* A spool operation finished. */

static void
ngx_http_quay_s3_step(ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su = op->data;

    su->next(su);
}


/* An S3 request was answered (or not). */

static void
ngx_http_quay_s3_req_step(ngx_http_quay_s3_req_t *sq)
{
    ngx_http_quay_s3_upload_t  *su = sq->data;

    su->next(su);
}


static ngx_int_t
ngx_http_quay_s3_upload_begin(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su;

    su = ngx_http_quay_s3_upload_state(up, op->r);
    if (su == NULL) {
        return NGX_ERROR;
    }

    /* nothing in S3 yet: the multipart upload starts with the first
     * part, and a small blob never needs one */

    su->parsed = 1;
    su->op = op;
    su->next = ngx_http_quay_s3_held;

    if (ngx_http_quay_storage_fs_spool_open(&su->spool, &su->spool_op)
        != NGX_AGAIN)
    {
        su->op = NULL;
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_quay_s3_upload_open(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su;

    su = ngx_http_quay_s3_upload_state(up, op->r);
    if (su == NULL) {
        return NGX_ERROR;
    }

    /* the spool is this node's part of the upload, and its lock is the
     * upload's lock here; made if this node has none yet */

    su->op = op;
    su->next = ngx_http_quay_s3_held;

    if (ngx_http_quay_storage_fs_spool_open(&su->spool, &su->spool_op)
        != NGX_AGAIN)
    {
        su->op = NULL;
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_held(ngx_http_quay_s3_upload_t *su)
{
    ngx_http_quay_s3_finish(su, su->spool_op.rc);
}


/*
 * The row is current: find where this node stands.  The spool must hold
 * the bytes past the last part (up->offset - parted), written here: the
 * metadata names the node, and a spool shorter than that lost bytes.
 * Otherwise they come from the .tail object the last PATCH stored, if it
 * holds exactly them (checked against its SHA-256 once fetched); failing
 * that, the upload goes back to the last part boundary.
 */

static ngx_int_t
ngx_http_quay_s3_upload_resume(ngx_http_quay_storage_upload_t *up,
    quay_sha256_t *hash, ngx_http_quay_storage_op_t *op)
{
    off_t                       rest;
    ngx_http_request_t         *r;
    ngx_http_quay_s3_upload_t  *su;

    r = op->r;
    su = up->data;

    if (su == NULL || ngx_http_quay_s3_metadata_parse(su) != NGX_OK) {
        return NGX_ERROR;
    }

    rest = up->offset - su->parted;

    if (rest < 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: upload \"%V\" has %O bytes in parts but %O "
                      "in all", &up->uuid, su->parted, up->offset);
        return NGX_ERROR;
    }

    su->op = op;

    if (rest == 0
        || (su->spool_node.len == su->node.len
            && ngx_strncmp(su->spool_node.data, su->node.data,
                           su->node.len) == 0
            && ngx_http_quay_storage_fs_spool_size(&su->spool) >= rest))
    {
        /* the next spool operation cuts what a dead request left */

        ngx_http_quay_storage_fs_spool_rewind(&su->spool, rest);

        return ngx_http_quay_s3_post(su, NGX_OK);
    }

    su->resume_hash = hash;

    if (su->tail && su->tail_at == su->parted && su->tail_size == rest) {

        /* into this node's spool from the start, a range at a time; the
         * hash state at up->offset is the row's already */

        if (su->fetch_buf == NULL) {
            su->fetch_buf = ngx_palloc(r->pool, NGX_HTTP_QUAY_S3_TAIL_RANGE);
            if (su->fetch_buf == NULL) {
                su->op = NULL;
                return NGX_ERROR;
            }
        }

        su->fetched = 0;
        ngx_http_quay_storage_fs_spool_rewind(&su->spool, 0);

        return ngx_http_quay_s3_post_step(su, ngx_http_quay_s3_tail_get);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "quay: upload \"%V\": its last %O bytes were spooled on "
                  "\"%V\", not here (\"%V\"), and the bucket has no copy: "
                  "it continues from byte %O",
                  &up->uuid, rest, &su->spool_node, &su->node, su->parted);

    if (ngx_http_quay_s3_wind_back(su, hash) != NGX_OK) {
        su->op = NULL;
        return NGX_ERROR;
    }

    return ngx_http_quay_s3_post(su, NGX_HTTP_QUAY_STORAGE_REWOUND);
}


/* Back to the end of the last part, and its hash state. */

static ngx_int_t
ngx_http_quay_s3_wind_back(ngx_http_quay_s3_upload_t *su,
    quay_sha256_t *hash)
{
    u_char      state[QUAY_SHA256_STATE_LEN];
    ngx_int_t   n;
    ngx_uint_t  i;

    if (su->parted == 0) {
        quay_sha256_init(hash);

    } else {
        if (su->part_sha.len != 2 * QUAY_SHA256_STATE_LEN) {
            goto invalid;
        }

        for (i = 0; i < QUAY_SHA256_STATE_LEN; i++) {
            n = ngx_hextoi(su->part_sha.data + 2 * i, 2);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            state[i] = (u_char) n;
        }

        if (quay_sha256_deserialize(hash, state, sizeof(state), NULL)
            != QUAY_OK
            || hash->total != (uint64_t) su->parted)
        {
            goto invalid;
        }
    }

    su->up->offset = su->parted;
    ngx_http_quay_storage_fs_spool_rewind(&su->spool, 0);

    return ngx_http_quay_s3_metadata_make(su);

invalid:

    ngx_log_error(NGX_LOG_ALERT, su->r->connection->log, 0,
                  "quay: upload \"%V\" has no usable part_sha",
                  &su->up->uuid);

    return NGX_ERROR;
}


/* The .tail object cannot continue the upload here: wind back. */

static void
ngx_http_quay_s3_unusable_tail(ngx_http_quay_s3_upload_t *su,
    const char *why)
{
    ngx_log_error(NGX_LOG_INFO, su->r->connection->log, 0,
                  "quay: upload \"%V\": its last %O bytes were spooled on "
                  "\"%V\", not here (\"%V\"), and their copy in the bucket "
                  "%s: it continues from byte %O", &su->up->uuid,
                  su->tail_size, &su->spool_node, &su->node, why,
                  su->parted);

    if (ngx_http_quay_s3_wind_back(su, su->resume_hash) != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_finish(su, NGX_HTTP_QUAY_STORAGE_REWOUND);
}


/* The next range of the .tail object: GetObject into su->fetch_buf. */

static void
ngx_http_quay_s3_tail_get(ngx_http_quay_s3_upload_t *su)
{
    u_char      *range;
    off_t        end;
    ngx_pool_t  *pool;

    pool = ngx_http_quay_s3_req_pool(&su->sq);
    range = pool ? ngx_pnalloc(pool, sizeof("bytes=-") + 2 * NGX_OFF_T_LEN)
                 : NULL;
    if (range == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    end = ngx_min(su->fetched + NGX_HTTP_QUAY_S3_TAIL_RANGE, su->tail_size)
          - 1;

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_GET, "GetObject",
                               &su->tail_key);

    su->sq.range.data = range;
    su->sq.range.len = ngx_sprintf(range, "bytes=%O-%O", su->fetched, end)
                       - range;
    su->sq.into = su->fetch_buf;
    su->sq.into_size = NGX_HTTP_QUAY_S3_TAIL_RANGE;

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_tail_got) != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_tail_got(ngx_http_quay_s3_upload_t *su)
{
    off_t  want;

    if (su->sq.status == NGX_HTTP_NOT_FOUND
        || su->sq.status == NGX_HTTP_RANGE_NOT_SATISFIABLE)
    {
        ngx_http_quay_s3_unusable_tail(su, "is gone");
        return;
    }

    if (su->sq.status != NGX_HTTP_PARTIAL_CONTENT
        && su->sq.status != NGX_HTTP_OK)
    {
        /* the bucket did not answer: the row stays as it is */
        ngx_http_quay_s3_fail(su);
        return;
    }

    want = ngx_min(NGX_HTTP_QUAY_S3_TAIL_RANGE, su->tail_size - su->fetched);

    if ((off_t) su->sq.response.len != want) {
        ngx_http_quay_s3_unusable_tail(su, "is too short");
        return;
    }

    /* the spool's own write path (thread pool), not hashed: the bytes
     * are checked as a whole once they are all there */

    su->next = ngx_http_quay_s3_tail_written;

    if (ngx_http_quay_storage_fs_driver.upload_write(&su->spool,
                                                     su->fetch_buf,
                                                     (size_t) want, NULL,
                                                     &su->spool_op)
        != NGX_AGAIN)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_tail_written(ngx_http_quay_s3_upload_t *su)
{
    if (su->spool_op.rc != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    su->fetched = su->spool.offset;

    if (su->fetched < su->tail_size) {
        ngx_http_quay_s3_tail_get(su);
        return;
    }

    if (ngx_http_quay_s3_hash_spool(su, su->tail_size,
                                    ngx_http_quay_s3_tail_verified)
        != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_tail_verified(ngx_http_quay_s3_upload_t *su)
{
    ngx_http_quay_s3_hash_t  *ht;

    ht = su->hash_task->ctx;

    if (ht->rc != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    if (ngx_strncmp(ht->hex, su->tail_sha.data, NGX_HTTP_QUAY_S3_HEX_LEN)
        != 0)
    {
        ngx_http_quay_s3_unusable_tail(su, "does not match its SHA-256");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, su->r->connection->log, 0,
                  "quay: upload \"%V\": its last %O bytes, spooled on "
                  "\"%V\", were fetched from the bucket",
                  &su->up->uuid, su->tail_size, &su->spool_node);

    ngx_http_quay_s3_finish(su, NGX_OK);
}


/*
 * Hashes the spool's first size bytes in the thread pool (never on the
 * event loop); next runs with the result in su->hash_task->ctx.
 */

static ngx_int_t
ngx_http_quay_s3_hash_spool(ngx_http_quay_s3_upload_t *su, off_t size,
    ngx_http_quay_s3_step_pt next)
{
    ngx_str_t                   name;
    ngx_thread_task_t          *task;
    ngx_http_request_t         *r;
    ngx_http_quay_s3_hash_t    *ht;
    ngx_http_quay_main_conf_t  *qmcf;

    r = su->r;
    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    if (qmcf->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: no thread pool");
        return NGX_ERROR;
    }

    task = su->hash_task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_quay_s3_hash_t));
        if (task == NULL) {
            return NGX_ERROR;
        }

        su->hash_task = task;
    }

    ht = task->ctx;
    ht->su = su;
    ht->fd = ngx_http_quay_storage_fs_spool_fd(&su->spool, &name);
    ht->size = size;
    ht->rc = NGX_ERROR;
    ht->err = 0;

    if (ht->fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    task->handler = ngx_http_quay_s3_hash_thread;
    task->event.handler = ngx_http_quay_s3_hash_done;
    task->event.data = ht;
    task->event.log = r->connection->log;

    su->next = next;

    if (ngx_thread_task_post(qmcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the request, the task and the descriptor live until it is done */

    r->main->blocked++;

    return NGX_OK;
}


/* Runs in a thread: only system calls and hashing on task data. */

static void
ngx_http_quay_s3_hash_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_s3_hash_t *ht = data;

    u_char         buf[NGX_HTTP_QUAY_S3_HASH_BUF];
    u_char         raw[QUAY_SHA256_DIGEST_LEN];
    off_t          off;
    size_t         len;
    ssize_t        n;
    quay_sha256_t  sha;

    quay_sha256_init(&sha);

    for (off = 0; off < ht->size; off += n) {
        len = (size_t) ngx_min((off_t) sizeof(buf), ht->size - off);

        n = pread(ht->fd, buf, len, off);

        if (n <= 0) {
            ht->err = (n == -1) ? ngx_errno : 0;
            ht->rc = NGX_ERROR;
            return;
        }

        quay_sha256_update(&sha, buf, (size_t) n);
    }

    quay_sha256_final(&sha, raw);
    (void) ngx_hex_dump(ht->hex, raw, sizeof(raw));

    ht->rc = NGX_OK;
}


static void
ngx_http_quay_s3_hash_done(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_quay_s3_hash_t    *ht;
    ngx_http_quay_s3_upload_t  *su;

    ht = ev->data;
    su = ht->su;
    r = su->r;
    c = r->connection;

    r->main->blocked--;

    if (ht->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_CRIT, c->log, ht->err,
                      "quay: storage: reading the spool of upload \"%V\" "
                      "failed", &su->up->uuid);
    }

    su->next(su);

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_quay_s3_upload_write(ngx_http_quay_storage_upload_t *up,
    u_char *p, size_t len, quay_sha256_t *hash,
    ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su;

    su = up->data;

    if (su == NULL || !su->parsed) {
        ngx_log_error(NGX_LOG_ALERT, op->r->connection->log, 0,
                      "quay: storage: S3 upload written before it was "
                      "resumed");
        return NGX_ERROR;
    }

    if (su->rewind) {
        /* the spool held the last part, which S3 has and the row counts */
        ngx_http_quay_storage_fs_spool_rewind(&su->spool, 0);
        su->rewind = 0;
    }

    su->data = p;
    su->len = len;
    su->hash = hash;
    su->op = op;
    su->next = ngx_http_quay_s3_written;

    if (ngx_http_quay_storage_fs_driver.upload_write(&su->spool, p, len,
                                                     hash, &su->spool_op)
        != NGX_AGAIN)
    {
        su->op = NULL;
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_written(ngx_http_quay_s3_upload_t *su)
{
    if (su->spool_op.rc != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    su->up->offset += su->len;

    if (su->spool.offset < su->up->loc->minimum_chunk_size) {
        ngx_http_quay_s3_finish(su, NGX_OK);
        return;
    }

    /* a part's worth: to S3 with it, then let the caller record it */

    su->after_part = ngx_http_quay_s3_checkpoint;

    ngx_http_quay_s3_part(su);
}


static void
ngx_http_quay_s3_checkpoint(ngx_http_quay_s3_upload_t *su)
{
    su->up->checkpoint = 1;

    ngx_http_quay_s3_finish(su, NGX_OK);
}


static ngx_int_t
ngx_http_quay_s3_upload_flush(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su;

    su = up->data;

    if (su == NULL || !su->parsed) {
        ngx_log_error(NGX_LOG_ALERT, op->r->connection->log, 0,
                      "quay: storage: S3 upload flushed before it was "
                      "resumed");
        return NGX_ERROR;
    }

    su->op = op;

    if (su->rewind) {
        /* the spool holds a part S3 already has */

        if (ngx_http_quay_s3_metadata_make(su) != NGX_OK) {
            su->op = NULL;
            return NGX_ERROR;
        }

        return ngx_http_quay_s3_post(su, NGX_OK);
    }

    su->next = ngx_http_quay_s3_flushed;

    if (ngx_http_quay_storage_fs_driver.upload_flush(&su->spool,
                                                     &su->spool_op)
        != NGX_AGAIN)
    {
        su->op = NULL;
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_flushed(ngx_http_quay_s3_upload_t *su)
{
    if (su->spool_op.rc != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    if (su->spool.offset == 0
        || (su->tail && su->tail_at == su->parted
            && su->tail_size == su->spool.offset))
    {
        /* nothing spooled, or the bucket has it already */

        if (ngx_http_quay_s3_metadata_make(su) != NGX_OK) {
            ngx_http_quay_s3_finish(su, NGX_ERROR);
            return;
        }

        ngx_http_quay_s3_finish(su, NGX_OK);
        return;
    }

    /* the bytes past the last part go to the bucket too, so that any
     * node can continue: hashed first, so S3 checks what it stores */

    if (ngx_http_quay_s3_hash_spool(su, su->spool.offset,
                                    ngx_http_quay_s3_tail_hashed)
        != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


/* PutObject of the spool as uploads/<uuid>.tail, signed with its hash. */

static void
ngx_http_quay_s3_tail_hashed(ngx_http_quay_s3_upload_t *su)
{
    ngx_http_quay_s3_hash_t  *ht;

    ht = su->hash_task->ctx;

    if (ht->rc != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_PUT, "PutObject",
                               &su->tail_key);
    ngx_str_set(&su->sq.content_type, NGX_HTTP_QUAY_S3_OCTET_STREAM);
    su->sq.payload.data = ht->hex;
    su->sq.payload.len = NGX_HTTP_QUAY_S3_HEX_LEN;

    if (ngx_http_quay_s3_spool_body(su, su->spool.offset) != NGX_OK
        || ngx_http_quay_s3_start(su, ngx_http_quay_s3_tail_stored)
           != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_tail_stored(ngx_http_quay_s3_upload_t *su)
{
    u_char                   *hex;
    ngx_http_quay_s3_hash_t  *ht;

    if (su->sq.status != NGX_HTTP_OK) {
        /* the row keeps its old length: the PATCH does not count */
        ngx_http_quay_s3_fail(su);
        return;
    }

    ht = su->hash_task->ctx;

    hex = ngx_pnalloc(su->r->pool, NGX_HTTP_QUAY_S3_HEX_LEN);
    if (hex == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_memcpy(hex, ht->hex, NGX_HTTP_QUAY_S3_HEX_LEN);

    /* only now may the row say the bucket holds the tail */

    su->tail = 1;
    su->tail_at = su->parted;
    su->tail_size = su->spool.offset;
    su->tail_sha.data = hex;
    su->tail_sha.len = NGX_HTTP_QUAY_S3_HEX_LEN;

    /* and that this node spools it */

    if (ngx_http_quay_s3_metadata_make(su) != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_finish(su, NGX_OK);
}


/*
 * The spool becomes the next part: CreateMultipartUpload first if there
 * is no upload id yet, then UploadPart, then su->after_part.
 */

static void
ngx_http_quay_s3_part(ngx_http_quay_s3_upload_t *su)
{
    if (su->upload_id.len) {
        ngx_http_quay_s3_part_send(su);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_POST,
                               "CreateMultipartUpload", &su->temp_key);

    su->sq.query[0].name = "uploads";
    su->sq.query[0].name_len = sizeof("uploads") - 1;
    su->sq.query[0].value = "";
    su->sq.query[0].value_len = 0;
    su->sq.nquery = 1;
    ngx_str_set(&su->sq.content_type, NGX_HTTP_QUAY_S3_OCTET_STREAM);

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_part_created) != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_part_created(ngx_http_quay_s3_upload_t *su)
{
    ngx_str_t  id;

    if (su->sq.status != NGX_HTTP_OK
        || ngx_http_quay_s3_xml_value(&su->sq.response, "UploadId", &id)
           != NGX_OK
        || id.len == 0)
    {
        ngx_http_quay_s3_fail(su);
        return;
    }

    su->upload_id = id;

    ngx_http_quay_s3_part_send(su);
}


static void
ngx_http_quay_s3_part_send(ngx_http_quay_s3_upload_t *su)
{
    u_char      *number;
    ngx_pool_t  *pool;

    if (su->parts.nelts >= NGX_HTTP_QUAY_S3_MAX_PARTS) {
        ngx_log_error(NGX_LOG_ERR, su->r->connection->log, 0,
                      "quay: upload \"%V\": more than %d parts; raise "
                      "minimum_chunk_size_mb of location \"%s\"",
                      &su->up->uuid, NGX_HTTP_QUAY_S3_MAX_PARTS,
                      su->up->loc->name);
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    pool = ngx_http_quay_s3_req_pool(&su->sq);
    number = pool ? ngx_pnalloc(pool, NGX_INT_T_LEN) : NULL;
    if (number == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_PUT, "UploadPart",
                               &su->temp_key);

    su->sq.query[0].name = "partNumber";
    su->sq.query[0].name_len = sizeof("partNumber") - 1;
    su->sq.query[0].value = (const char *) number;
    su->sq.query[0].value_len = ngx_sprintf(number, "%ui",
                                            su->parts.nelts + 1)
                                - number;
    su->sq.query[1].name = "uploadId";
    su->sq.query[1].name_len = sizeof("uploadId") - 1;
    su->sq.query[1].value = (const char *) su->upload_id.data;
    su->sq.query[1].value_len = su->upload_id.len;
    su->sq.nquery = 2;

    if (ngx_http_quay_s3_spool_body(su, su->spool.offset)
        != NGX_OK
        || ngx_http_quay_s3_start(su, ngx_http_quay_s3_part_sent) != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_part_sent(ngx_http_quay_s3_upload_t *su)
{
    u_char                   *hex;
    u_char                    state[QUAY_SHA256_STATE_LEN];
    ngx_http_quay_s3_part_t  *part;

    if (su->sq.status != NGX_HTTP_OK || su->sq.etag.len == 0) {
        ngx_http_quay_s3_fail(su);
        return;
    }

    part = ngx_array_push(&su->parts);
    if (part == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    part->etag = su->sq.etag;
    part->size = su->spool.offset;
    su->parted += part->size;

    /* the hash state here, so another node can continue from this
     * boundary (the commit's last part needs none) */

    if (su->hash != NULL && su->hash->total == (uint64_t) su->parted) {
        hex = ngx_pnalloc(su->r->pool, 2 * QUAY_SHA256_STATE_LEN);
        if (hex == NULL) {
            ngx_http_quay_s3_finish(su, NGX_ERROR);
            return;
        }

        (void) quay_sha256_serialize(su->hash, state);
        (void) ngx_hex_dump(hex, state, sizeof(state));

        su->part_sha.data = hex;
        su->part_sha.len = 2 * QUAY_SHA256_STATE_LEN;
    }

    su->rewind = 1;

    if (ngx_http_quay_s3_metadata_make(su) != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    su->after_part(su);
}


/*
 * Makes the first size bytes the blob d: the digest was verified by the
 * caller, so the object may now appear at its content address.
 */

static ngx_int_t
ngx_http_quay_s3_upload_commit(ngx_http_quay_storage_upload_t *up,
    off_t size, const quay_digest_t *d, ngx_http_quay_storage_op_t *op)
{
    char                        rel[QUAY_DIGEST_PATH_MAX + 1];
    off_t                       rest;
    size_t                      n;
    ngx_http_request_t         *r;
    ngx_http_quay_s3_upload_t  *su;

    r = op->r;
    su = up->data;

    if (su == NULL || !su->parsed) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: S3 upload committed before it was "
                      "resumed");
        return NGX_ERROR;
    }

    n = quay_digest_storage_path(d, rel, sizeof(rel));
    if (n == 0
        || ngx_http_quay_s3_key(r->pool, &su->ep, (u_char *) rel, n,
                                &su->final_key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rest = su->rewind ? 0 : su->spool.offset;

    if (su->parted + rest != size) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: upload \"%V\": %O bytes in parts and %O "
                      "spooled, %O committed", &up->uuid, su->parted, rest,
                      size);
        return NGX_ERROR;
    }

    su->size = size;
    su->digest = d;
    su->op = op;
    su->hash = NULL;

    if (su->upload_id.len == 0) {

        /* one PutObject, signed with the bytes' SHA-256: the digest */

        ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_PUT, "PutObject",
                                   &su->final_key);
        ngx_str_set(&su->sq.content_type, NGX_HTTP_QUAY_S3_OCTET_STREAM);
        su->sq.payload.data = (u_char *) d->hex;
        su->sq.payload.len = d->hex_len;

        if (ngx_http_quay_s3_spool_body(su, rest) != NGX_OK
            || ngx_http_quay_s3_start(su, ngx_http_quay_s3_put_done)
               != NGX_OK)
        {
            su->op = NULL;
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    if (rest == 0) {
        return ngx_http_quay_s3_post_step(su, ngx_http_quay_s3_complete);
    }

    su->after_part = ngx_http_quay_s3_complete;

    return ngx_http_quay_s3_post_step(su, ngx_http_quay_s3_part);
}


static void
ngx_http_quay_s3_put_done(ngx_http_quay_s3_upload_t *su)
{
    if (su->sq.status != NGX_HTTP_OK) {
        ngx_http_quay_s3_fail(su);
        return;
    }

    ngx_http_quay_s3_tail_delete(su);
}


static void
ngx_http_quay_s3_complete(ngx_http_quay_s3_upload_t *su)
{
    u_char  *xml;
    size_t   len;

    xml = ngx_http_quay_s3_parts_xml(su->r->pool, &su->parts, &len);
    if (xml == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_POST,
                               "CompleteMultipartUpload", &su->temp_key);

    su->sq.query[0].name = "uploadId";
    su->sq.query[0].name_len = sizeof("uploadId") - 1;
    su->sq.query[0].value = (const char *) su->upload_id.data;
    su->sq.query[0].value_len = su->upload_id.len;
    su->sq.nquery = 1;
    ngx_str_set(&su->sq.content_type, "application/xml");

    if (ngx_http_quay_s3_memory_body(&su->sq, xml, len) != NGX_OK
        || ngx_http_quay_s3_start(su, ngx_http_quay_s3_completed) != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


/*
 * The upload is one object at its temporary key; copy it to the content
 * address: CopyObject up to maximum_chunk_size (at most 5 GiB, S3's
 * limit), else a multipart copy in ranges of that size.
 */

static void
ngx_http_quay_s3_completed(ngx_http_quay_s3_upload_t *su)
{
    u_char  *source;
    off_t    limit;

    if (su->sq.status != NGX_HTTP_OK
        || ngx_http_quay_s3_xml_error(&su->sq.response))
    {
        ngx_http_quay_s3_fail(su);
        return;
    }

    /* "/<bucket>/<temporary key>" */

    source = ngx_pnalloc(su->r->pool, 2 + su->ep.bucket.len
                                      + su->temp_key.len);
    if (source == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    limit = ngx_min((off_t) su->up->loc->maximum_chunk_size,
                    NGX_HTTP_QUAY_S3_COPY_MAX);

    if (limit < su->up->loc->minimum_chunk_size) {
        limit = NGX_HTTP_QUAY_S3_COPY_MAX;
    }

    su->copy_part_size = limit;

    if (su->size <= limit) {
        ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_PUT, "CopyObject",
                                   &su->final_key);

    } else {
        ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_POST,
                                   "CreateMultipartUpload", &su->final_key);

        su->sq.query[0].name = "uploads";
        su->sq.query[0].name_len = sizeof("uploads") - 1;
        su->sq.query[0].value = "";
        su->sq.query[0].value_len = 0;
        su->sq.nquery = 1;
        ngx_str_set(&su->sq.content_type, NGX_HTTP_QUAY_S3_OCTET_STREAM);

        if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_copy_created)
            != NGX_OK)
        {
            ngx_http_quay_s3_finish(su, NGX_ERROR);
        }

        return;
    }

    su->sq.copy_source.data = source;
    su->sq.copy_source.len = ngx_sprintf(source, "/%V/%V", &su->ep.bucket,
                                         &su->temp_key)
                             - source;

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_copied) != NGX_OK) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_copy_created(ngx_http_quay_s3_upload_t *su)
{
    ngx_str_t  id;

    if (su->sq.status != NGX_HTTP_OK
        || ngx_http_quay_s3_xml_value(&su->sq.response, "UploadId", &id)
           != NGX_OK
        || id.len == 0)
    {
        ngx_http_quay_s3_fail(su);
        return;
    }

    su->copy_id = id;
    su->copy_offset = 0;

    if (ngx_array_init(&su->copy_parts, su->r->pool, 8,
                       sizeof(ngx_http_quay_s3_part_t))
        != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_copy_part(su);
}


static void
ngx_http_quay_s3_copy_part(ngx_http_quay_s3_upload_t *su)
{
    u_char  *number, *range, *source;
    off_t    end;

    number = ngx_pnalloc(su->r->pool, NGX_INT_T_LEN);
    range = ngx_pnalloc(su->r->pool, sizeof("bytes=-") + 2 * NGX_OFF_T_LEN);
    source = ngx_pnalloc(su->r->pool, 2 + su->ep.bucket.len
                                      + su->temp_key.len);
    if (number == NULL || range == NULL || source == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    end = ngx_min(su->copy_offset + su->copy_part_size, su->size) - 1;

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_PUT, "UploadPartCopy",
                               &su->final_key);

    su->sq.query[0].name = "partNumber";
    su->sq.query[0].name_len = sizeof("partNumber") - 1;
    su->sq.query[0].value = (const char *) number;
    su->sq.query[0].value_len = ngx_sprintf(number, "%ui",
                                            su->copy_parts.nelts + 1)
                                - number;
    su->sq.query[1].name = "uploadId";
    su->sq.query[1].name_len = sizeof("uploadId") - 1;
    su->sq.query[1].value = (const char *) su->copy_id.data;
    su->sq.query[1].value_len = su->copy_id.len;
    su->sq.nquery = 2;

    su->sq.copy_source.data = source;
    su->sq.copy_source.len = ngx_sprintf(source, "/%V/%V", &su->ep.bucket,
                                         &su->temp_key)
                             - source;
    su->sq.copy_range.data = range;
    su->sq.copy_range.len = ngx_sprintf(range, "bytes=%O-%O",
                                        su->copy_offset, end)
                            - range;

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_copy_part_done)
        != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


static void
ngx_http_quay_s3_copy_part_done(ngx_http_quay_s3_upload_t *su)
{
    u_char                   *xml;
    size_t                    len;
    ngx_str_t                 etag;
    ngx_http_quay_s3_part_t  *part;

    /* UploadPartCopy answers the part's ETag in its body */

    if (su->sq.status != NGX_HTTP_OK
        || ngx_http_quay_s3_xml_error(&su->sq.response)
        || ngx_http_quay_s3_xml_value(&su->sq.response, "ETag", &etag)
           != NGX_OK)
    {
        ngx_http_quay_s3_fail(su);
        return;
    }

    part = ngx_array_push(&su->copy_parts);
    if (part == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    part->etag = etag;
    part->size = ngx_min(su->copy_part_size, su->size - su->copy_offset);
    su->copy_offset += part->size;

    if (su->copy_offset < su->size) {
        ngx_http_quay_s3_copy_part(su);
        return;
    }

    xml = ngx_http_quay_s3_parts_xml(su->r->pool, &su->copy_parts, &len);
    if (xml == NULL) {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_POST,
                               "CompleteMultipartUpload", &su->final_key);

    su->sq.query[0].name = "uploadId";
    su->sq.query[0].name_len = sizeof("uploadId") - 1;
    su->sq.query[0].value = (const char *) su->copy_id.data;
    su->sq.query[0].value_len = su->copy_id.len;
    su->sq.nquery = 1;
    ngx_str_set(&su->sq.content_type, "application/xml");

    if (ngx_http_quay_s3_memory_body(&su->sq, xml, len) != NGX_OK
        || ngx_http_quay_s3_start(su, ngx_http_quay_s3_copied) != NGX_OK)
    {
        ngx_http_quay_s3_finish(su, NGX_ERROR);
    }
}


/* The blob is at its content address: the temporary object goes. */

static void
ngx_http_quay_s3_copied(ngx_http_quay_s3_upload_t *su)
{
    if (su->sq.status != NGX_HTTP_OK
        || ngx_http_quay_s3_xml_error(&su->sq.response))
    {
        ngx_http_quay_s3_fail(su);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_DELETE, "DeleteObject",
                               &su->temp_key);

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_temp_deleted) != NGX_OK)
    {
        ngx_http_quay_s3_remove_spool(su);
    }
}


/*
 * After a DeleteObject or AbortMultipartUpload: the object is gone if S3
 * said so or never had it; anything else is logged, not failed, since
 * what is left behind is garbage, not lost data.
 */

static void
ngx_http_quay_s3_log_unless_gone(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t level)
{
    if (sq->status != NGX_HTTP_NO_CONTENT
        && sq->status != NGX_HTTP_OK
        && sq->status != NGX_HTTP_NOT_FOUND)
    {
        ngx_http_quay_s3_log_failure(sq, level);
    }
}


static void
ngx_http_quay_s3_temp_deleted(ngx_http_quay_s3_upload_t *su)
{
    /* the blob is in place; a leftover is only garbage */

    ngx_http_quay_s3_log_unless_gone(&su->sq, NGX_LOG_WARN);

    ngx_http_quay_s3_tail_delete(su);
}


/* The session is over: its .tail object goes, if it may have one. */

static void
ngx_http_quay_s3_tail_delete(ngx_http_quay_s3_upload_t *su)
{
    if (!su->tail) {
        ngx_http_quay_s3_remove_spool(su);
        return;
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_DELETE, "DeleteObject",
                               &su->tail_key);

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_tail_deleted) != NGX_OK)
    {
        ngx_http_quay_s3_remove_spool(su);
    }
}


static void
ngx_http_quay_s3_tail_deleted(ngx_http_quay_s3_upload_t *su)
{
    /* garbage only: the stale-upload cleanup cannot find it again once
     * the row is gone */

    ngx_http_quay_s3_log_unless_gone(&su->sq, NGX_LOG_WARN);

    ngx_http_quay_s3_remove_spool(su);
}


static void
ngx_http_quay_s3_remove_spool(ngx_http_quay_s3_upload_t *su)
{
    su->next = ngx_http_quay_s3_spool_removed;

    if (ngx_http_quay_storage_fs_driver.upload_abort(&su->spool,
                                                     &su->spool_op)
        != NGX_AGAIN)
    {
        ngx_http_quay_s3_finish(su, NGX_OK);
    }
}


static void
ngx_http_quay_s3_spool_removed(ngx_http_quay_s3_upload_t *su)
{
    /* a spool that was not here (another node's upload) is no error:
     * what counts is in S3 */

    ngx_http_quay_s3_finish(su, NGX_OK);
}


static u_char *
ngx_http_quay_s3_parts_xml(ngx_pool_t *pool, ngx_array_t *parts,
    size_t *len)
{
    u_char                   *xml, *p;
    size_t                    size;
    ngx_uint_t                i;
    ngx_http_quay_s3_part_t  *part;

    part = parts->elts;

    size = sizeof("<CompleteMultipartUpload></CompleteMultipartUpload>");

    for (i = 0; i < parts->nelts; i++) {
        size += sizeof("<Part><PartNumber></PartNumber><ETag></ETag></Part>")
                + NGX_INT_T_LEN + part[i].etag.len;
    }

    xml = ngx_pnalloc(pool, size);
    if (xml == NULL) {
        return NULL;
    }

    p = ngx_cpymem(xml, "<CompleteMultipartUpload>",
                   sizeof("<CompleteMultipartUpload>") - 1);

    for (i = 0; i < parts->nelts; i++) {
        p = ngx_sprintf(p, "<Part><PartNumber>%ui</PartNumber>"
                        "<ETag>%V</ETag></Part>", i + 1, &part[i].etag);
    }

    p = ngx_cpymem(p, "</CompleteMultipartUpload>",
                   sizeof("</CompleteMultipartUpload>") - 1);

    *len = p - xml;

    return xml;
}


static void
ngx_http_quay_s3_upload_release(ngx_http_quay_storage_upload_t *up)
{
    ngx_http_quay_s3_upload_t  *su;

    su = up->data;

    if (su == NULL || su->op != NULL) {
        return;
    }

    ngx_http_quay_storage_fs_driver.upload_release(&su->spool);
}


/*
 * Cancels the upload: its multipart upload is aborted (S3 drops the
 * parts) and this node's spool removed.  The metadata comes from the
 * request's own state when it has one (parts it uploaded itself), else
 * from up->metadata.
 */

static ngx_int_t
ngx_http_quay_s3_upload_abort(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_http_quay_s3_upload_t  *su;

    su = ngx_http_quay_s3_upload_state(up, op->r);
    if (su == NULL) {
        return NGX_ERROR;
    }

    if (!su->parsed && ngx_http_quay_s3_metadata_parse(su) != NGX_OK) {
        /* the parts cannot be found again: the spool still goes, and
         * the tail if there may be one */
        ngx_str_null(&su->upload_id);
        su->tail = 1;
    }

    su->op = op;

    if (su->upload_id.len == 0) {
        return ngx_http_quay_s3_post_step(su, ngx_http_quay_s3_tail_delete);
    }

    ngx_http_quay_s3_req_reset(&su->sq, NGX_HTTP_DELETE,
                               "AbortMultipartUpload", &su->temp_key);

    su->sq.query[0].name = "uploadId";
    su->sq.query[0].name_len = sizeof("uploadId") - 1;
    su->sq.query[0].value = (const char *) su->upload_id.data;
    su->sq.query[0].value_len = su->upload_id.len;
    su->sq.nquery = 1;

    if (ngx_http_quay_s3_start(su, ngx_http_quay_s3_aborted) != NGX_OK) {
        su->op = NULL;
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_quay_s3_aborted(ngx_http_quay_s3_upload_t *su)
{
    /* the parts stay until S3's lifecycle rules or a cleanup remove them;
     * the session is gone either way */

    ngx_http_quay_s3_log_unless_gone(&su->sq, NGX_LOG_ERR);

    ngx_http_quay_s3_tail_delete(su);
}


/* The first size bytes of the spool as the body of su->sq. */

static ngx_int_t
ngx_http_quay_s3_spool_body(ngx_http_quay_s3_upload_t *su, off_t size)
{
    ngx_fd_t   fd;
    ngx_str_t  name;

    fd = ngx_http_quay_storage_fs_spool_fd(&su->spool, &name);

    return ngx_http_quay_s3_file_body(&su->sq, fd, &name, size);
}
