/*
 * S3Storage and RadosGWStorage: blobs as objects in an S3 bucket (Quay's
 * storage/cloud.py; reference 4.2-4.5), spoken to by nginx itself.
 *
 * DESIGN.  Every S3 request the driver makes is an nginx subrequest to
 * the internal location /_quay_s3/ (conf/nginx.conf), whose proxy_pass
 * takes its target and signed headers from the $quay_s3_* variables this
 * file sets on the subrequest: $quay_s3_url, $quay_s3_host,
 * $quay_s3_authorization, $quay_s3_date, $quay_s3_content_sha256 and a few
 * optional ones (copy source, security token, content type).  The
 * subrequest gets a variables array and a request body of its own, so it
 * never sees the client's headers or body; a body that is a file (the
 * spool, below) goes out with sendfile; the answer, a few hundred bytes
 * of XML, stays in memory (NGX_HTTP_SUBREQUEST_IN_MEMORY).  The post
 * handler only records the answer and posts an event: the driver goes on
 * from there, on the event loop, after nginx has finished the
 * subrequest.  Each S3 request has a pool of its own, which also holds
 * the subrequest (made while the parent's pool is swapped for it) and
 * is destroyed once the subrequest is done: a 20 GiB upload makes 4,000
 * of them, and the main request's pool must not grow with each.
 * Signing is lib/quay_sigv4.c, with one signing key cache
 * per worker process.  No libcurl, no blocking call, no resolver at run
 * time: quay_config registers each endpoint as an implicit upstream, so
 * nginx resolves host names at configuration time.
 *
 * Objects, below the location's storage_path (reference 4.3):
 *
 *     sha256/<hex[0:2]>/<hex>   blobs, written only after the digest of
 *                               the bytes the client sent was verified
 *     uploads/<uuid>            an unfinished upload's multipart upload,
 *                               completed there and then copied to its
 *                               content address, then deleted
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
 * Cancelling aborts the multipart upload and removes the spool.
 *
 * Nodes.  The part being filled lives on the node that received it; the
 * metadata names that node.  A request for the upload on another node
 * (or after the spool was lost) cannot continue it: upload_resume winds
 * the upload back to the last part boundary (length and hash state from
 * the metadata) and the caller answers 416 with the Range to resend
 * from, as the distribution spec's resumable uploads do.  Workers of one
 * node share the spool, so any worker can continue any upload of its
 * node.  Several writers on several nodes can never produce an object
 * whose bytes differ from what was hashed: CompleteMultipartUpload
 * lists the ETags this driver received for its parts, and S3 refuses a
 * part that was replaced.
 *
 * Reads.  presign() gives a SigV4 presigned GET valid 600 s (the blob
 * GET answers 307 to it).  With FEATURE_PROXY_STORAGE, send() signs a
 * GET (x-amz-content-sha256: UNSIGNED-PAYLOAD) into the same variables
 * and makes an internal redirect to /_quay_s3_proxy/, a proxy_pass
 * location with buffering off: nginx streams the object, Range included,
 * and the location adds the blob's headers.  HEAD is answered from the
 * database by the caller.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "quay_sigv4.h"
#include "quay_sha256.h"
#include "quay_reference.h"
#include "ngx_http_quay_module.h"
#include "ngx_http_quay_storage.h"


#define NGX_HTTP_QUAY_S3_LOCATION        "/_quay_s3/"
#define NGX_HTTP_QUAY_S3_PROXY_LOCATION  "/_quay_s3_proxy/"
#define NGX_HTTP_QUAY_S3_PRESIGN_TTL     600         /* Quay's expires_in */
#define NGX_HTTP_QUAY_S3_COPY_MAX        ((off_t) 5 << 30)
#define NGX_HTTP_QUAY_S3_MAX_PARTS       10000
#define NGX_HTTP_QUAY_S3_REGION          "us-east-1"
#define NGX_HTTP_QUAY_S3_OCTET_STREAM    "application/octet-stream"
#define NGX_HTTP_QUAY_S3_MAX_HEADERS     6
#define QUAY_DIGEST_TEXT_MAX             (7 + 128 + 1)


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
    NGX_HTTP_QUAY_S3_VAR_BLOB_DIGEST,
    NGX_HTTP_QUAY_S3_VAR_COUNT
} ngx_http_quay_s3_var_e;


/* Where a location's bucket is, derived from its parameters. */
typedef struct {
    ngx_str_t                       scheme;      /* "http" or "https" */
    ngx_str_t                       host;        /* Host: and the URL's
                                                    authority */
    ngx_str_t                       hostname;    /* host without port */
    in_port_t                       port;        /* explicit or the
                                                    scheme's */
    ngx_str_t                       region;
    ngx_str_t                       bucket;
    ngx_str_t                       prefix;      /* storage_path without
                                                    outer '/'; may be "" */
} ngx_http_quay_s3_endpoint_t;


typedef struct ngx_http_quay_s3_req_s  ngx_http_quay_s3_req_t;

typedef void (*ngx_http_quay_s3_req_done_pt)(ngx_http_quay_s3_req_t *sq);


/*
 * One S3 request, made as a subrequest of r.  The caller fills the
 * request part and calls ngx_http_quay_s3_request(); handler runs later
 * from a posted event.  Reused for the requests of one upload: the
 * results are reset by each start.
 */
struct ngx_http_quay_s3_req_s {
    ngx_http_request_t             *r;           /* the parent */
    const quay_storage_location_t  *loc;
    ngx_http_quay_s3_endpoint_t    *ep;

    ngx_uint_t                      method;      /* NGX_HTTP_* */
    ngx_str_t                       method_name;
    const char                     *what;        /* "UploadPart", logs */
    ngx_str_t                       key;         /* full object key, raw;
                                                    empty: the bucket */
    quay_sigv4_param_t              query[2];
    ngx_uint_t                      nquery;
    ngx_str_t                       copy_source; /* full key, raw */
    ngx_str_t                       copy_range;  /* "bytes=a-b" */
    ngx_str_t                       content_type;
    ngx_str_t                       payload;     /* hex SHA-256; empty:
                                                    UNSIGNED-PAYLOAD, or
                                                    the empty hash */
    ngx_chain_t                    *body;        /* NULL: no body */
    off_t                           body_len;

    /* results */
    ngx_uint_t                      status;      /* S3's; 0: no answer */
    ngx_str_t                       response;    /* body, r->pool */
    ngx_str_t                       etag;        /* ETag header */

    ngx_http_quay_s3_req_done_pt    handler;
    void                           *data;
    ngx_event_t                     event;       /* posted on completion;
                                                    deleted by the cleanup */
    ngx_pool_t                     *pool;        /* owned: this request's
                                                    memory, the subrequest's
                                                    included; destroyed when
                                                    it is answered, or by
                                                    the cleanup */
    unsigned                        out:1;       /* a subrequest is out */
};


typedef struct {
    ngx_str_t                       etag;
    off_t                           size;
} ngx_http_quay_s3_part_t;


typedef struct ngx_http_quay_s3_upload_s  ngx_http_quay_s3_upload_t;

typedef void (*ngx_http_quay_s3_step_pt)(ngx_http_quay_s3_upload_t *su);


/* The driver's part of ngx_http_quay_storage_upload_t, in r->pool. */
struct ngx_http_quay_s3_upload_s {
    ngx_http_request_t             *r;
    ngx_http_quay_storage_upload_t *up;          /* the caller's */
    ngx_http_quay_storage_op_t     *op;          /* the caller's, while
                                                    one is out */
    ngx_http_quay_s3_endpoint_t     ep;
    ngx_str_t                       temp_key;    /* .../uploads/<uuid> */
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
    char                           *metadata;    /* owned (malloc); freed
                                                    by the cleanup */

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

static ngx_int_t ngx_http_quay_s3_endpoint(ngx_pool_t *pool,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep);
static ngx_int_t ngx_http_quay_s3_key(ngx_pool_t *pool,
    ngx_http_quay_s3_endpoint_t *ep, u_char *rel, size_t len,
    ngx_str_t *key);
static void ngx_http_quay_s3_amz_date(u_char *date);
static ngx_int_t ngx_http_quay_s3_sign(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_quay_s3_req_t *sq, u_char *amz_date,
    ngx_str_t *url, ngx_str_t *authorization, ngx_str_t *payload);
static u_char *ngx_http_quay_s3_encode_path(ngx_pool_t *pool,
    ngx_http_quay_s3_endpoint_t *ep, ngx_str_t *key, size_t *len);
static void ngx_http_quay_s3_set_var(ngx_http_request_t *r,
    ngx_http_quay_s3_var_e var, u_char *data, size_t len);

static ngx_http_quay_s3_req_t *ngx_http_quay_s3_req_init(
    ngx_http_quay_s3_req_t *sq, ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep);
static void ngx_http_quay_s3_req_reset(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t method, const char *what, ngx_str_t *key);
static ngx_pool_t *ngx_http_quay_s3_req_pool(ngx_http_quay_s3_req_t *sq);
static ngx_int_t ngx_http_quay_s3_request(ngx_http_quay_s3_req_t *sq);
static ngx_int_t ngx_http_quay_s3_request_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_quay_s3_request_event(ngx_event_t *ev);
static void ngx_http_quay_s3_req_cleanup(void *data);
static void ngx_http_quay_s3_pool_destroy(void *data);
static void ngx_http_quay_s3_log_failure(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t level);
static ngx_uint_t ngx_http_quay_s3_xml_error(ngx_str_t *body);
static ngx_int_t ngx_http_quay_s3_xml_value(ngx_str_t *body,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_quay_s3_file_body(ngx_http_quay_s3_req_t *sq,
    ngx_http_quay_storage_upload_t *spool, off_t size);
static ngx_int_t ngx_http_quay_s3_memory_body(ngx_http_quay_s3_req_t *sq,
    u_char *data, size_t len);

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

static void ngx_http_quay_s3_check_done(ngx_http_quay_s3_req_t *sq);
static ngx_int_t ngx_http_quay_s3_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


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

static ngx_int_t
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

static ngx_int_t
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

    if (!ngx_http_quay_s3_keys_ready) {
        quay_sigv4_key_cache_init(&ngx_http_quay_s3_keys);
        ngx_http_quay_s3_keys_ready = 1;
    }

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

    cred.access_key = loc->access_key;
    cred.access_key_len = ngx_strlen(loc->access_key);
    cred.secret_key = loc->secret_key;
    cred.secret_key_len = ngx_strlen(loc->secret_key);
    cred.region = (const char *) ep->region.data;
    cred.region_len = ep->region.len;
    cred.service = "s3";
    cred.service_len = 2;
    cred.cache = &ngx_http_quay_s3_keys;

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


static ngx_http_quay_s3_req_t *
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

static void
ngx_http_quay_s3_req_reset(ngx_http_quay_s3_req_t *sq, ngx_uint_t method,
    const char *what, ngx_str_t *key)
{
    sq->method = method;
    sq->what = what;
    sq->key = *key;
    sq->nquery = 0;
    ngx_str_null(&sq->copy_source);
    ngx_str_null(&sq->copy_range);
    ngx_str_null(&sq->content_type);
    ngx_str_null(&sq->payload);
    sq->body = NULL;
    sq->body_len = 0;
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

static ngx_pool_t *
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

static ngx_int_t
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

            sq->response.data = ngx_pstrdup(sq->r->pool, &value);
            sq->response.len = sq->response.data ? value.len : 0;
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

static void
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
        ngx_log_error(level, log, 0,
                      "quay: storage location \"%s\": %s \"%V\": no answer "
                      "from %V://%V", sq->loc->name, sq->what, object,
                      &sq->ep->scheme, &sq->ep->host);

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

static ngx_uint_t
ngx_http_quay_s3_xml_error(ngx_str_t *body)
{
    ngx_str_t  value;

    return ngx_http_quay_s3_xml_value(body, "Error", &value) == NGX_OK;
}


/* The text of the first <name>...</name> in body. */

static ngx_int_t
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


/* The first size bytes of the spool as the body (sent with sendfile). */

static ngx_int_t
ngx_http_quay_s3_file_body(ngx_http_quay_s3_req_t *sq,
    ngx_http_quay_storage_upload_t *spool, off_t size)
{
    ngx_fd_t      fd;
    ngx_str_t     name;
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    fd = ngx_http_quay_storage_fs_spool_fd(spool, &name);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, sq->r->connection->log, 0,
                      "quay: storage: %s without a spool", sq->what);
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
    b->file->name = name;
    b->file->log = sq->r->connection->log;
    b->in_file = 1;
    b->file_pos = 0;
    b->file_last = size;

    cl->buf = b;
    cl->next = NULL;

    sq->body = cl;

    return NGX_OK;
}


static ngx_int_t
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
 * GET (proxy mode): a signed GET in the $quay_s3_* variables, then an
 * internal redirect to /_quay_s3_proxy/, whose proxy_pass streams the
 * object (Range included) and adds the blob's headers.
 */

static ngx_int_t
ngx_http_quay_s3_send(ngx_http_request_t *r,
    ngx_http_quay_storage_object_t *obj)
{
    u_char                       *amz_date, *digest;
    char                          rel[QUAY_DIGEST_PATH_MAX + 1];
    size_t                        n;
    ngx_str_t                     uri, key, url, authorization, payload;
    ngx_http_quay_s3_req_t        sq;
    ngx_http_quay_s3_object_t    *so;
    ngx_http_quay_s3_endpoint_t  *ep;

    if (r->method == NGX_HTTP_HEAD) {
        r->headers_out.content_length_n = obj->size;
        r->header_only = 1;

        return ngx_http_send_header(r);
    }

    so = obj->data;

    ep = ngx_palloc(r->pool, sizeof(ngx_http_quay_s3_endpoint_t));
    amz_date = ngx_pnalloc(r->pool, QUAY_SIGV4_AMZ_DATE_LEN + 1);
    if (ep == NULL || amz_date == NULL) {
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

    ngx_memzero(&sq, sizeof(ngx_http_quay_s3_req_t));

    sq.r = r;
    sq.loc = so->loc;
    sq.ep = ep;
    ngx_http_quay_s3_req_reset(&sq, NGX_HTTP_GET, "GetObject", &key);
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
    digest = ngx_pnalloc(r->pool, QUAY_DIGEST_TEXT_MAX);
    if (digest == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = quay_digest_format(so->digest, (char *) digest, QUAY_DIGEST_TEXT_MAX);

    ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_BLOB_DIGEST, digest, n);

    if (so->loc->session_token != NULL) {
        ngx_http_quay_s3_set_var(r, NGX_HTTP_QUAY_S3_VAR_SECURITY_TOKEN,
                                 (u_char *) so->loc->session_token,
                                 ngx_strlen(so->loc->session_token));
    }

    ngx_str_set(&uri, NGX_HTTP_QUAY_S3_PROXY_LOCATION);

    /* takes a reference of its own; the caller's NGX_DONE drops ours */

    (void) ngx_http_internal_redirect(r, &uri, NULL);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_quay_s3_presign(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_str_t *url)
{
    u_char                       *amz_date, *path, *p;
    char                          rel[QUAY_DIGEST_PATH_MAX + 1];
    size_t                        n, path_len, len;
    ngx_str_t                     key;
    quay_err_t                    err;
    quay_sigv4_header_t           host;
    quay_sigv4_request_t          req;
    quay_sigv4_credentials_t      cred;
    ngx_http_quay_s3_endpoint_t   ep;

    n = quay_digest_storage_path(d, rel, sizeof(rel));

    if (n == 0
        || ngx_http_quay_s3_endpoint(r->pool, loc, &ep) != NGX_OK
        || ngx_http_quay_s3_key(r->pool, &ep, (u_char *) rel, n, &key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    amz_date = ngx_pnalloc(r->pool, QUAY_SIGV4_AMZ_DATE_LEN + 1);
    path = ngx_http_quay_s3_encode_path(r->pool, &ep, &key, &path_len);
    if (amz_date == NULL || path == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_s3_amz_date(amz_date);

    if (!ngx_http_quay_s3_keys_ready) {
        quay_sigv4_key_cache_init(&ngx_http_quay_s3_keys);
        ngx_http_quay_s3_keys_ready = 1;
    }

    host.name = "host";
    host.name_len = 4;
    host.value = (const char *) ep.host.data;
    host.value_len = ep.host.len;

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

    cred.access_key = loc->access_key;
    cred.access_key_len = ngx_strlen(loc->access_key);
    cred.secret_key = loc->secret_key;
    cred.secret_key_len = ngx_strlen(loc->secret_key);
    cred.region = (const char *) ep.region.data;
    cred.region_len = ep.region.len;
    cred.service = "s3";
    cred.service_len = 2;
    cred.cache = &ngx_http_quay_s3_keys;

    err.code = 0;
    err.msg[0] = '\0';

    if (quay_sigv4_presign_query(&cred, &req, NULL, 0, &len, &err)
        != QUAY_OK)
    {
        goto failed;
    }

    url->data = ngx_pnalloc(r->pool, ep.scheme.len + sizeof("://") - 1
                                     + ep.host.len + path_len + 1 + len + 1);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(url->data, "%V://%V", &ep.scheme, &ep.host);
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
     *     su->parsed = su->rewind = 0;
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
 *      "node": "<host>:<spool directory>"}
 *
 * All keys are optional ("{}" is a fresh upload).
 */

static ngx_int_t
ngx_http_quay_s3_metadata_parse(ngx_http_quay_s3_upload_t *su)
{
    size_t                    i, n;
    json_t                   *root, *v, *parts, *part, *etag, *size;
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
           != 0)
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
 * Otherwise the upload goes back to the last part boundary.
 */

static ngx_int_t
ngx_http_quay_s3_upload_resume(ngx_http_quay_storage_upload_t *up,
    quay_sha256_t *hash, ngx_http_quay_storage_op_t *op)
{
    u_char                      state[QUAY_SHA256_STATE_LEN];
    off_t                       rest;
    ngx_int_t                   n;
    ngx_uint_t                  i;
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

    /* back to the end of the last part, and its hash state */

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

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "quay: upload \"%V\": its last %O bytes were spooled on "
                  "\"%V\", not here (\"%V\"): it continues from byte %O",
                  &up->uuid, rest, &su->spool_node, &su->node, su->parted);

    up->offset = su->parted;
    ngx_http_quay_storage_fs_spool_rewind(&su->spool, 0);

    if (ngx_http_quay_s3_metadata_make(su) != NGX_OK) {
        su->op = NULL;
        return NGX_ERROR;
    }

    return ngx_http_quay_s3_post(su, NGX_HTTP_QUAY_STORAGE_REWOUND);

invalid:

    su->op = NULL;

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "quay: upload \"%V\" has no usable part_sha",
                  &up->uuid);

    return NGX_ERROR;
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

    /* the row will say this node spools the rest */

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

    if (ngx_http_quay_s3_file_body(&su->sq, &su->spool, su->spool.offset)
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

        if (ngx_http_quay_s3_file_body(&su->sq, &su->spool, rest) != NGX_OK
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

    ngx_http_quay_s3_remove_spool(su);
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


static void
ngx_http_quay_s3_temp_deleted(ngx_http_quay_s3_upload_t *su)
{
    if (su->sq.status != NGX_HTTP_NO_CONTENT
        && su->sq.status != NGX_HTTP_OK
        && su->sq.status != NGX_HTTP_NOT_FOUND)
    {
        /* the blob is in place; a leftover is only garbage */
        ngx_http_quay_s3_log_failure(&su->sq, NGX_LOG_WARN);
    }

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
        /* the parts cannot be found again: the spool still goes */
        ngx_str_null(&su->upload_id);
    }

    su->op = op;

    if (su->upload_id.len == 0) {
        return ngx_http_quay_s3_post_step(su,
                                          ngx_http_quay_s3_remove_spool);
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
    if (su->sq.status != NGX_HTTP_NO_CONTENT
        && su->sq.status != NGX_HTTP_OK
        && su->sq.status != NGX_HTTP_NOT_FOUND)
    {
        /* the parts stay until S3's lifecycle rules or a cleanup remove
         * them; the session is gone either way */
        ngx_http_quay_s3_log_failure(&su->sq, NGX_LOG_ERR);
    }

    ngx_http_quay_s3_remove_spool(su);
}


/* ------------------------------------------------------------ health */


typedef struct {
    ngx_http_quay_s3_req_t          sq;
    ngx_http_quay_s3_endpoint_t     ep;
    ngx_http_quay_storage_op_t     *op;
} ngx_http_quay_s3_check_t;


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
