/*
 * Worker-side storage client: one storage_t per configured location
 * (DISTRIBUTED_STORAGE_CONFIG entry), behind a small driver table in the
 * shape of Quay's BaseStorageV2.  Keys are relative to the location's
 * storage_path, in Quay's layout (reference section 4.3):
 *
 *     sha256/<hex[0:2]>/<hex>     blobs
 *     uploads/<uuid>              in-progress uploads (LocalStorage)
 *
 * Only LocalStorage is implemented; S3Storage and RadosGWStorage open with
 * STORAGE_ENOTSUP until the libcurl driver lands in storage.c.
 *
 * Every function returns STORAGE_OK (0) or a negative STORAGE_E* code and
 * writes a reason into an optional caller buffer (err, errlen), so the
 * error path never allocates.  Keys are validated before any path is
 * built: a bad key is STORAGE_EINVAL, never a file system access.
 */

#ifndef STORAGE_H
#define STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quay_config.h"


#define STORAGE_OK          0
#define STORAGE_ENOENT     -1   /* no such object */
#define STORAGE_EINVAL     -2   /* malformed key or argument */
#define STORAGE_EIO        -3   /* I/O error on one object; retry later */
#define STORAGE_EUNAVAIL   -4   /* the location itself is unreachable */
#define STORAGE_ENOTSUP    -5   /* driver not implemented */

#define STORAGE_ERR_LEN    256
#define STORAGE_KEY_MAX    1024
#define STORAGE_UUID_LEN   36


typedef struct storage_s  storage_t;


/*
 * Opens a client for loc.  loc is borrowed and must outlive the client
 * (it lives in the worker's quay_config_t).  Does not touch the storage:
 * an unreachable location shows up as STORAGE_EUNAVAIL on use, so a
 * worker can start before a mount appears.  Returns NULL with err filled
 * (for example for an unimplemented driver).
 */
storage_t *storage_open(const quay_storage_location_t *loc, char *err,
    size_t errlen);

void storage_close(storage_t *s);

/* The location name ("default"), borrowed from the config. */
const char *storage_location_name(const storage_t *s);

/*
 * Deletes one object.  STORAGE_OK, STORAGE_ENOENT if it was not there
 * (the location itself being reachable), STORAGE_EINVAL, STORAGE_EIO,
 * STORAGE_EUNAVAIL.
 */
int storage_remove(storage_t *s, const char *key, char *err, size_t errlen);

/*
 * Looks an object up; *size (if not NULL) gets its length.  Same codes as
 * storage_remove().
 */
int storage_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen);


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
