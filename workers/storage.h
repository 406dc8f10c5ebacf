/*
 * Worker-side storage client: one storage_t per configured location
 * (DISTRIBUTED_STORAGE_CONFIG entry), behind a small driver table in the
 * shape of Quay's BaseStorageV2.  Keys are relative to the location's
 * storage_path, in Quay's layout (reference section 4.3):
 *
 *     sha256/<hex[0:2]>/<hex>     blobs
 *     uploads/<uuid>              in-progress uploads
 *     uploads/replicate-<uuid>    a replication copy in progress
 *
 * Drivers: LocalStorage (files under storage_path) and S3Storage /
 * RadosGWStorage (libcurl, SigV4 from lib/quay_sigv4.c, path-style
 * addressing /<bucket>/<storage_path>/<key>).  Every operation has both
 * forms, so a worker never asks which driver it has.
 *
 * Memory.  Nothing here holds an object: reads stream into a caller's
 * sink, writes take one caller buffer (one multipart part) at a time.
 *
 * Every function returns STORAGE_OK (0) or a negative STORAGE_E* code and
 * writes a reason into an optional caller buffer (err, errlen), so the
 * error path never allocates.  Keys are validated before any path or URL
 * is built: a bad key is STORAGE_EINVAL, never a storage access.  Secrets
 * (keys, signatures) never appear in err.
 *
 * Waits.  Every S3 transfer has a connect timeout (10 s) and a low-speed
 * limit (no byte for 60 s, 600 s for a server-side copy); a transfer
 * stops early with STORAGE_EIO when shutdown was requested
 * (worker_shutdown_requested), except an abort of a multipart upload,
 * so that a stopping worker still tidies up.  storage_set_progress()
 * registers a hook called about once a second during a transfer (workers
 * renew their lease there).
 */

#ifndef STORAGE_H
#define STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "quay_config.h"


#define STORAGE_OK          0
#define STORAGE_ENOENT     -1   /* no such object (or upload) */
#define STORAGE_EINVAL     -2   /* malformed key or argument */
#define STORAGE_EIO        -3   /* I/O error on one object; retry later */
#define STORAGE_EUNAVAIL   -4   /* the location itself is unreachable */
#define STORAGE_ENOTSUP    -5   /* driver not implemented */
#define STORAGE_EDENIED    -6   /* the location refused our credentials */

#define STORAGE_ERR_LEN    256
#define STORAGE_KEY_MAX    1024
#define STORAGE_UUID_LEN   36
#define STORAGE_ETAG_MAX   128
#define STORAGE_UPLOAD_ID_MAX  512

/* S3's limits for multipart uploads */
#define STORAGE_MIN_PART   ((int64_t) 5 << 20)
#define STORAGE_MAX_PARTS  10000


typedef struct storage_s  storage_t;


/* One part of a multipart upload. */
typedef struct {
    int         number;                     /* 1 .. STORAGE_MAX_PARTS */
    int64_t     size;
    char        etag[STORAGE_ETAG_MAX];     /* as the storage gave it */
} storage_part_t;


/*
 * Consumes len bytes of a streamed read.  Returns 0, or -1 to stop the
 * transfer (storage_get() then returns STORAGE_EIO, "stopped by the
 * reader").
 */
typedef int (*storage_sink_pt)(void *ctx, const unsigned char *p,
    size_t len);

/* One multipart upload in progress (storage_mpu_list()). */
typedef void (*storage_mpu_visit_pt)(void *ctx, const char *key,
    const char *upload_id, time_t initiated);

/* Called during long transfers, about once a second. */
typedef void (*storage_progress_pt)(void *ctx);


/*
 * Opens a client for loc.  loc is borrowed and must outlive the client
 * (it lives in the worker's quay_config_t).  Does not touch the storage:
 * an unreachable location shows up as STORAGE_EUNAVAIL on use, so a
 * worker can start before a mount or a gateway appears.  Returns NULL
 * with err filled (an unusable configuration).
 */
storage_t *storage_open(const quay_storage_location_t *loc, char *err,
    size_t errlen);

void storage_close(storage_t *s);

/* The location name ("default"), borrowed from the config. */
const char *storage_location_name(const storage_t *s);

/* True for S3Storage and RadosGWStorage. */
bool storage_is_object_store(const storage_t *s);

/* Sets (or clears, with NULL) the progress hook of s. */
void storage_set_progress(storage_t *s, storage_progress_pt fn, void *ctx);


/*
 * Deletes one object.  STORAGE_OK, STORAGE_ENOENT if it was not there
 * (the location itself being reachable), STORAGE_EINVAL, STORAGE_EIO,
 * STORAGE_EUNAVAIL, STORAGE_EDENIED.
 */
int storage_remove(storage_t *s, const char *key, char *err, size_t errlen);

/*
 * Looks an object up (S3: HEAD); *size (if not NULL) gets its length.
 * Same codes as storage_remove().
 */
int storage_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen);

/*
 * Streams length bytes of key from offset (length -1: to the end) into
 * sink, in pieces of at most 1 MiB (S3: one ranged GET).  Fewer bytes
 * than asked (the object is shorter) is STORAGE_EIO.  Same codes as
 * storage_stat().
 */
int storage_get(storage_t *s, const char *key, int64_t offset,
    int64_t length, storage_sink_pt sink, void *ctx, char *err,
    size_t errlen);

/* storage_get() of exactly len bytes into buf. */
int storage_read(storage_t *s, const char *key, int64_t offset,
    unsigned char *buf, size_t len, char *err, size_t errlen);

/*
 * Stores p[0..len-1] as key in one request (S3: PutObject signed with
 * the SHA-256 of the bytes, so the storage checks them; LocalStorage: a
 * temporary file, fsync, rename).  For small objects only: the caller
 * holds them.
 */
int storage_put(storage_t *s, const char *key, const unsigned char *p,
    size_t len, char *err, size_t errlen);


/*
 * Multipart uploads.  Nothing is visible at key until
 * storage_mpu_complete(); an upload that is never completed is invisible
 * and is found again by storage_mpu_list() (then aborted).  Parts are
 * written in order, each but the last at least STORAGE_MIN_PART bytes.
 *
 * LocalStorage keeps the upload in the file "<key>.mpu" (upload id
 * "local"); completing it fsyncs and renames it to key.
 */
int storage_mpu_create(storage_t *s, const char *key, char *upload_id,
    size_t idlen, char *err, size_t errlen);

/* Uploads part->size bytes at p as part->number, which starts at byte
 * offset of the object; fills part->etag.  S3 signs the part with its
 * SHA-256. */
int storage_mpu_part(storage_t *s, const char *key, const char *upload_id,
    int64_t offset, const unsigned char *p, storage_part_t *part,
    char *err, size_t errlen);

int storage_mpu_complete(storage_t *s, const char *key,
    const char *upload_id, const storage_part_t *parts, size_t nparts,
    char *err, size_t errlen);

/* STORAGE_ENOENT when there is no such upload (already aborted). */
int storage_mpu_abort(storage_t *s, const char *key, const char *upload_id,
    char *err, size_t errlen);

/*
 * Calls visit for every multipart upload in progress whose key starts
 * with prefix (S3: ListMultipartUploads, every page; LocalStorage: the
 * "*.mpu" files of the prefix's directory).  prefix is a key or a key
 * followed by a partial segment ("uploads/replicate-").
 */
int storage_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen);

/*
 * Moves the object src (size bytes) to dst inside the location: S3
 * copies on the server (CopyObject, or UploadPartCopy ranges of
 * maximum_chunk_size when the object is larger) and then deletes src;
 * LocalStorage renames and fsyncs the directory.  dst exists whole or
 * not at all.  A failure to delete src afterwards is only logged.
 */
int storage_move(storage_t *s, const char *src, const char *dst,
    int64_t size, char *err, size_t errlen);


/*
 * True if key is a relative key made of [A-Za-z0-9._-] segments separated
 * by single '/', with no "." or ".." segment, at most STORAGE_KEY_MAX
 * bytes.
 */
bool storage_key_valid(const char *key);

/* True for a lowercase 8-4-4-4-12 hex uuid (Quay's upload ids). */
bool storage_uuid_valid(const char *uuid);

/* "uploads/<uuid>" into buf; STORAGE_EINVAL for a bad uuid or short buf. */
int storage_upload_key(const char *uuid, char *buf, size_t len);

/*
 * "sha256/<hex[0:2]>/<hex>" for digest "sha256:<64 lowercase hex>" into
 * buf; STORAGE_EINVAL otherwise.
 */
int storage_blob_key(const char *digest, char *buf, size_t len);

/* A short name for a STORAGE_* code, for logs. */
const char *storage_strerror(int code);

#endif /* STORAGE_H */
