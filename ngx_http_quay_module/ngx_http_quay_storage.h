/*
 * Blob storage drivers: Quay's BaseStorageV2 (storage/basestorage.py) in
 * nginx form.  A driver is a table of function pointers; a location of
 * DISTRIBUTED_STORAGE_CONFIG picks its table by driver name, so an object
 * storage driver slots in next to the filesystem one without the handlers
 * changing.
 *
 * Keys follow Quay's layout (reference 4.3) below the location's
 * storage_path:
 *
 *     sha256/<hex[0:2]>/<hex>     blobs (quay_digest_storage_path)
 *     uploads/<uuid>              uploads in progress (LocalStorage; the
 *                                 temporary key of an S3 multipart upload)
 *
 * A driver may keep state of an upload in the row (storage_metadata,
 * JSON): the S3 driver keeps its multipart upload id and part list there,
 * so the next request for the upload, on any worker, continues it.
 *
 * Conventions, for every function below:
 *
 *   - a synchronous function returns NGX_OK, NGX_DECLINED (no such
 *     object) or NGX_ERROR (logged by the driver);
 *   - an asynchronous one returns NGX_AGAIN when it started: op->handler
 *     is then called exactly once, later, from the event loop (never from
 *     inside the call), with op->rc set; or NGX_ERROR when it could not
 *     start (logged; the handler is not called).  While an operation is
 *     out the driver holds r->main->blocked, so the request (and every
 *     buffer handed to the driver) stays alive; the caller must not start
 *     a second operation on the same upload before the first completed;
 *   - the uuid and the digest have been validated (quay_uuid_valid,
 *     quay_digest_parse) before they reach a driver: no key is ever built
 *     from unchecked input.
 */

#ifndef NGX_HTTP_QUAY_STORAGE_H
#define NGX_HTTP_QUAY_STORAGE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_config.h"
#include "quay_digest.h"
#include "quay_sha256.h"


/* op->rc values besides NGX_OK and NGX_ERROR */
#define NGX_HTTP_QUAY_STORAGE_MISSING  NGX_DECLINED  /* no such object */
#define NGX_HTTP_QUAY_STORAGE_LOCKED   NGX_BUSY      /* another request
                                                        holds the upload */
#define NGX_HTTP_QUAY_STORAGE_FAILED   NGX_ABORT     /* the storage service
                                                        refused or failed
                                                        (logged); op->detail
                                                        says which location */
#define NGX_HTTP_QUAY_STORAGE_REWOUND  NGX_DONE      /* upload_resume: the
                                                        upload went back to
                                                        up->offset */


typedef struct ngx_http_quay_storage_op_s  ngx_http_quay_storage_op_t;

typedef void (*ngx_http_quay_storage_done_pt)(ngx_http_quay_storage_op_t *op);


/* One asynchronous operation; owned by the caller (usually r->pool). */
struct ngx_http_quay_storage_op_s {
    ngx_http_request_t             *r;
    ngx_http_quay_storage_done_pt   handler;
    void                           *data;        /* the caller's */

    ngx_int_t                       rc;          /* NGX_OK, NGX_ERROR,
                                                    ..._MISSING, ..._LOCKED,
                                                    ..._FAILED, ..._REWOUND */
    ngx_err_t                       err;         /* errno of a failure */
    ngx_str_t                       detail;      /* ..._FAILED: for the
                                                    client, r->pool */
};


/* A blob opened for reading by open_read(), sent by send(). */
typedef struct {
    off_t                           size;
    void                           *data;        /* the driver's, in
                                                    r->pool */
} ngx_http_quay_storage_object_t;


/*
 * An upload held by one request, from upload_begin()/upload_open() until
 * the request ends (the driver releases it from an r->pool cleanup).
 * The caller sets loc and uuid, and offset to the committed length (the
 * blobupload row's byte_count) and metadata to its storage_metadata
 * before upload_resume and the first write, flush, commit or abort; the
 * driver advances offset with each write.
 *
 * metadata is the driver's state in the row, as JSON text.  A driver that
 * changes it points metadata at the new text (r->pool); the caller stores
 * it with the next progress or checkpoint of the row.  A driver that sets
 * checkpoint after a write has moved bytes to where they outlive the
 * request (an S3 part): the caller makes them count (upload_flush, then
 * the row with offset, hash state and metadata) before the next write,
 * and clears checkpoint.
 */
typedef struct {
    const quay_storage_location_t  *loc;
    ngx_str_t                       uuid;        /* canonical, 36 bytes */
    off_t                           offset;      /* committed length when
                                                    opened; advanced by
                                                    each write */
    ngx_str_t                       metadata;    /* JSON, "{}" when the
                                                    driver keeps nothing */
    void                           *data;        /* the driver's */
    unsigned                        checkpoint:1;
} ngx_http_quay_storage_upload_t;


typedef struct {
    const char  *name;                           /* Quay's driver name */

    /*
     * Opens the blob d for reading and fills obj->size, or sets it to -1
     * when only the storage service knows it (S3: the caller uses the
     * database's size).  Synchronous (the filesystem driver opens and
     * stats one file, as nginx's static module does; the descriptor is
     * closed by an r->pool cleanup; the S3 driver only builds the key).
     */
    ngx_int_t  (*open_read)(ngx_http_request_t *r,
                   const quay_storage_location_t *loc, const quay_digest_t *d,
                   ngx_http_quay_storage_object_t *obj);

    /*
     * Sends obj as the response: sets Content-Length, sends the header the
     * caller prepared (status, other headers, r->allow_ranges) and the
     * body.  Returns what the output filter returned, for
     * ngx_http_finalize_request().  The S3 driver answers HEAD with the
     * header alone, and GET (FEATURE_PROXY_STORAGE) with an internal
     * redirect to the /_quay_s3_proxy/ location: NGX_DONE.
     */
    ngx_int_t  (*send)(ngx_http_request_t *r,
                   ngx_http_quay_storage_object_t *obj);

    /* Creates an empty upload object and holds it (asynchronous). */
    ngx_int_t  (*upload_begin)(ngx_http_quay_storage_upload_t *up,
                   ngx_http_quay_storage_op_t *op);

    /*
     * Opens and holds an existing upload (asynchronous).  op->rc is
     * ..._MISSING when there is none and ..._LOCKED when another request
     * holds it: only one request at a time may write an upload.
     */
    ngx_int_t  (*upload_open)(ngx_http_quay_storage_upload_t *up,
                   ngx_http_quay_storage_op_t *op);

    /*
     * Optional (NULL: nothing to do).  Called once the row is current
     * (offset, metadata and hash as committed), before the first write,
     * flush or commit (asynchronous).  op->rc ..._REWOUND: the bytes past
     * a point could not be found on this node; the driver moved
     * up->offset back to it and set *hash to the state there, and the
     * caller records that and asks the client to resume from there.
     */
    ngx_int_t  (*upload_resume)(ngx_http_quay_storage_upload_t *up,
                   quay_sha256_t *hash, ngx_http_quay_storage_op_t *op);

    /*
     * Writes p[0..len-1] at up->offset and advances it (asynchronous).
     * Before the first write, bytes past the committed length (left by a
     * request that died) are dropped.  With hash not NULL the bytes are
     * hashed into it on the way, off the event loop.  p and hash must stay
     * valid until the handler runs.
     */
    ngx_int_t  (*upload_write)(ngx_http_quay_storage_upload_t *up,
                   u_char *p, size_t len, quay_sha256_t *hash,
                   ngx_http_quay_storage_op_t *op);

    /*
     * Makes what was written so far durable (asynchronous), before the
     * caller records the new length: a length in the database always
     * covers bytes that survive a crash.
     */
    ngx_int_t  (*upload_flush)(ngx_http_quay_storage_upload_t *up,
                   ngx_http_quay_storage_op_t *op);

    /*
     * Makes the first size bytes of the upload the blob d (asynchronous):
     * durable first (the filesystem driver truncates, fsyncs, renames into
     * place and fsyncs the directory), so that a row committed afterwards
     * never points at missing bytes.  An existing copy of the blob is
     * replaced by the upload (same bytes), never trusted blindly.
     */
    ngx_int_t  (*upload_commit)(ngx_http_quay_storage_upload_t *up,
                   off_t size, const quay_digest_t *d,
                   ngx_http_quay_storage_op_t *op);

    /*
     * Lets go of a held upload now (synchronous; a no-op when nothing is
     * held or an operation is out).  The caller calls it before it
     * answers: the client's next request for the upload may arrive, on
     * another connection or worker, before this request is freed.
     */
    void       (*upload_release)(ngx_http_quay_storage_upload_t *up);

    /* Deletes an upload object, held or not (asynchronous). */
    ngx_int_t  (*upload_abort)(ngx_http_quay_storage_upload_t *up,
                   ngx_http_quay_storage_op_t *op);

    /*
     * A direct download URL for d, for drivers that have one (S3: a SigV4
     * presigned GET valid 600 s, Quay's expires_in), in r->pool;
     * NGX_DECLINED when the blob must be sent through nginx (the
     * filesystem driver).  The URL is a bearer credential: never log it.
     */
    ngx_int_t  (*presign)(ngx_http_request_t *r,
                   const quay_storage_location_t *loc, const quay_digest_t *d,
                   ngx_str_t *url);
} ngx_http_quay_storage_driver_t;


/* ngx_http_quay_storage_fs.c: LocalStorage */
extern const ngx_http_quay_storage_driver_t  ngx_http_quay_storage_fs_driver;

/*
 * The filesystem driver's upload file as a local spool for another
 * driver (S3 keeps the part being filled there).  spool_open opens or
 * creates <up->loc->storage_path>/uploads/<uuid> and locks it
 * (asynchronous; ..._LOCKED as upload_open); the driver's upload_write,
 * upload_flush, upload_release and upload_abort then work on it as usual.
 * spool_size is its length when opened; spool_fd its descriptor and name
 * (valid while held); spool_rewind makes the next operation cut it to
 * offset first and continue from there.
 */
ngx_int_t ngx_http_quay_storage_fs_spool_open(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
off_t ngx_http_quay_storage_fs_spool_size(ngx_http_quay_storage_upload_t *up);
ngx_fd_t ngx_http_quay_storage_fs_spool_fd(ngx_http_quay_storage_upload_t *up,
    ngx_str_t *name);
void ngx_http_quay_storage_fs_spool_rewind(ngx_http_quay_storage_upload_t *up,
    off_t offset);


/* ngx_http_quay_storage_s3.c: S3Storage and RadosGWStorage */
extern const ngx_http_quay_storage_driver_t  ngx_http_quay_storage_s3_driver;

/* Declares the $quay_s3_* variables (preconfiguration). */
ngx_int_t ngx_http_quay_storage_s3_add_variables(ngx_conf_t *cf);

/*
 * Registers each S3 location's endpoint as an implicit upstream, so its
 * host name is resolved now, at configuration time, never by a worker.
 */
ngx_int_t ngx_http_quay_storage_s3_conf(ngx_conf_t *cf,
    const quay_config_t *config);

/*
 * Health: HEAD of the location's bucket (asynchronous, through the
 * /_quay_s3/ location).  op->rc NGX_OK or ..._FAILED (logged, naming the
 * location).
 */
ngx_int_t ngx_http_quay_storage_s3_check(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_storage_op_t *op);


/*
 * ngx_http_quay_storage_select.c: which location a read goes to, and
 * which locations are failing (a per-worker circuit breaker), plus the
 * replication parameter of the manifest PUT.
 *
 * storage_down: 1 when loc failed max_fails times within fail_timeout,
 * or its last probe failed, and fail_timeout has not passed since.
 * storage_probe_due: 1 when loc (an object store) has not been probed for
 * quay_storage_probe_interval; the caller then probes it (HEAD of the
 * bucket, ngx_http_quay_storage_s3_check) and reports with
 * storage_probed.  storage_failed counts one failure (logged at WARN when
 * it turns the location down); storage_probed records a probe's outcome.
 */
ngx_uint_t ngx_http_quay_storage_down(ngx_http_request_t *r,
    const quay_storage_location_t *loc);
ngx_uint_t ngx_http_quay_storage_probe_due(ngx_http_request_t *r,
    const quay_storage_location_t *loc);
void ngx_http_quay_storage_failed(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const char *why);
void ngx_http_quay_storage_probed(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_uint_t ok);

/*
 * The per-request list of locations a read already failed at, kept in the
 * $quay_storage_skip variable so that it survives the internal redirects
 * of a proxied pull's fallback.  storage_proxying records which location
 * a proxied pull is about to read ($quay_storage_location).
 */
ngx_uint_t ngx_http_quay_storage_skipped(ngx_http_request_t *r,
    const quay_storage_location_t *loc);
ngx_int_t ngx_http_quay_storage_proxying(ngx_http_request_t *r,
    const quay_storage_location_t *loc);

/* 502 UNAVAILABLE (OCI body): every location holding the blob failed. */
ngx_int_t ngx_http_quay_storage_send_unavailable(ngx_http_request_t *r);

/* Declares $quay_storage_skip and $quay_storage_location
 * (preconfiguration). */
ngx_int_t ngx_http_quay_storage_add_variables(ngx_conf_t *cf);

/* The quay_storage_fallback directive (location content handler). */
char *ngx_http_quay_storage_fallback(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * The $15 parameter of QUAY_SQL_MANIFEST_PUT: the text[] literal of
 * DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS in pool when
 * FEATURE_STORAGE_REPLICATION is on (NGX_OK), NGX_DECLINED when it is
 * off (the parameter stays NULL), NGX_ERROR on no memory.
 */
ngx_int_t ngx_http_quay_storage_replication_param(ngx_pool_t *pool,
    const quay_config_t *config, ngx_str_t *value);


/* The driver of loc, or NULL when this build has none for it. */
static ngx_inline const ngx_http_quay_storage_driver_t *
ngx_http_quay_storage_driver(const quay_storage_location_t *loc)
{
    switch (loc->driver) {

    case QUAY_STORAGE_LOCAL:
        return &ngx_http_quay_storage_fs_driver;

    case QUAY_STORAGE_S3:
    case QUAY_STORAGE_RADOSGW:
        return &ngx_http_quay_storage_s3_driver;

    default:
        return NULL;
    }
}

#endif /* NGX_HTTP_QUAY_STORAGE_H */
