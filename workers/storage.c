/*
 * DESIGN
 *
 * Worker-side storage (see storage.h).  A storage_t is a location name, a
 * borrowed config entry and a driver: a table of function pointers picked
 * by the entry's driver, the way Redis's ae.c picks a backend.  Drivers see
 * only validated keys.
 *
 * LocalStorage maps key K to <storage_path>/K.  Each operation first opens
 * the storage root as a directory and then works relative to it (openat,
 * unlinkat, renameat, fstatat without following a final symlink).  Opening
 * the root each time costs one syscall and answers the question that
 * matters for deletes: is ENOENT "the object is gone" or "the volume is not
 * mounted"?  Only the first is STORAGE_ENOENT; a missing root is
 * STORAGE_EUNAVAIL, so a worker never forgets a row because a mount went
 * away.  Whatever becomes visible at a key was written to a temporary name
 * in the same directory, fsynced and renamed, and the directory fsynced.
 *
 * S3Storage and RadosGWStorage live in storage_s3.c (libcurl, SigV4).
 * The public functions here validate keys, prefixes and ranges, then call
 * the driver; storage_read() is storage_get() into a caller buffer.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage_int.h"
#include "worker.h"


#define STORAGE_FS_CHUNK          (1024 * 1024)
#define STORAGE_MPU_SUFFIX        ".mpu"


static int storage_fs_stat(storage_t *s, const char *key, int64_t *size,
    char *err, size_t errlen);
static int storage_fs_remove(storage_t *s, const char *key, char *err,
    size_t errlen);
static int storage_fs_get(storage_t *s, const char *key, int64_t offset,
    int64_t length, storage_sink_pt sink, void *ctx, char *err,
    size_t errlen);
static int storage_fs_put(storage_t *s, const char *key,
    const unsigned char *p, size_t len, char *err, size_t errlen);
static int storage_fs_mpu_create(storage_t *s, const char *key,
    char *upload_id, size_t idlen, char *err, size_t errlen);
static int storage_fs_mpu_part(storage_t *s, const char *key,
    const char *upload_id, int64_t offset, const unsigned char *p,
    storage_part_t *part, char *err, size_t errlen);
static int storage_fs_mpu_complete(storage_t *s, const char *key,
    const char *upload_id, const storage_part_t *parts, size_t nparts,
    char *err, size_t errlen);
static int storage_fs_mpu_abort(storage_t *s, const char *key,
    const char *upload_id, char *err, size_t errlen);
static int storage_fs_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen);
static int storage_fs_move(storage_t *s, const char *src, const char *dst,
    int64_t size, char *err, size_t errlen);

static const storage_driver_t  storage_fs_driver = {
    "LocalStorage", storage_fs_stat, storage_fs_remove, storage_fs_get,
    storage_fs_put, storage_fs_mpu_create, storage_fs_mpu_part,
    storage_fs_mpu_complete, storage_fs_mpu_abort, storage_fs_mpu_list,
    storage_fs_move
};



int
storage_error(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list  ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        (void) vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}


const char *
storage_strerror(int code)
{
    switch (code) {
    case STORAGE_OK:
        return "ok";
    case STORAGE_ENOENT:
        return "not found";
    case STORAGE_EINVAL:
        return "invalid";
    case STORAGE_EIO:
        return "i/o error";
    case STORAGE_EUNAVAIL:
        return "unavailable";
    case STORAGE_ENOTSUP:
        return "not supported";
    case STORAGE_EDENIED:
        return "access denied";
    default:
        return "unknown error";
    }
}


/* Keys and names ---------------------------------------------------------- */

bool
storage_key_valid(const char *key)
{
    size_t       len, seg = 0;
    const char  *p, *start;

    if (key == NULL) {
        return false;
    }
    len = strlen(key);
    if (len == 0 || len > STORAGE_KEY_MAX) {
        return false;
    }

    start = key;
    for (p = key; ; p++) {
        if (*p == '/' || *p == '\0') {
            seg = (size_t) (p - start);
            if (seg == 0) {
                return false;           /* leading, trailing or "//" */
            }
            if ((seg == 1 && start[0] == '.')
                || (seg == 2 && start[0] == '.' && start[1] == '.'))
            {
                return false;
            }
            if (*p == '\0') {
                return true;
            }
            start = p + 1;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return false;
        }
    }
}


static bool
storage_is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}


bool
storage_uuid_valid(const char *uuid)
{
    size_t  i;

    if (uuid == NULL || strlen(uuid) != STORAGE_UUID_LEN) {
        return false;
    }
    for (i = 0; i < STORAGE_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (uuid[i] != '-') {
                return false;
            }
        } else if (!storage_is_lower_hex(uuid[i])) {
            return false;
        }
    }
    return true;
}


int
storage_upload_key(const char *uuid, char *buf, size_t len)
{
    int  n;

    if (!storage_uuid_valid(uuid)) {
        return STORAGE_EINVAL;
    }
    n = snprintf(buf, len, "uploads/%s", uuid);
    if (n < 0 || (size_t) n >= len) {
        return STORAGE_EINVAL;
    }
    return STORAGE_OK;
}


int
storage_blob_key(const char *digest, char *buf, size_t len)
{
    static const char  prefix[] = "sha256:";
    const char        *hex;
    size_t             i;
    int                n;

    if (digest == NULL
        || strncmp(digest, prefix, sizeof(prefix) - 1) != 0)
    {
        return STORAGE_EINVAL;
    }
    hex = digest + sizeof(prefix) - 1;
    if (strlen(hex) != 64) {
        return STORAGE_EINVAL;
    }
    for (i = 0; i < 64; i++) {
        if (!storage_is_lower_hex(hex[i])) {
            return STORAGE_EINVAL;
        }
    }
    n = snprintf(buf, len, "sha256/%.2s/%s", hex, hex);
    if (n < 0 || (size_t) n >= len) {
        return STORAGE_EINVAL;
    }
    return STORAGE_OK;
}


/*
 * A list prefix: a valid key, or a valid key followed by '/' or by the
 * start of a segment ("uploads/replicate-").
 */
static bool
storage_prefix_valid(const char *prefix)
{
    char    buf[STORAGE_KEY_MAX + 2];
    size_t  len = strlen(prefix);

    if (len == 0 || len > STORAGE_KEY_MAX) {
        return false;
    }
    memcpy(buf, prefix, len + 1);
    if (buf[len - 1] == '/') {
        buf[len - 1] = '\0';
    } else if (buf[len - 1] == '-' || buf[len - 1] == '.') {
        buf[len] = 'x';
        buf[len + 1] = '\0';
    }
    return storage_key_valid(buf);
}


/* Clients ----------------------------------------------------------------- */



storage_t *
storage_open(const quay_storage_location_t *loc, char *err, size_t errlen)
{
    const storage_driver_t  *driver;
    storage_s3_t            *s3 = NULL;
    storage_t               *s;

    switch (loc->driver) {

    case QUAY_STORAGE_LOCAL:
        if (loc->storage_path == NULL || loc->storage_path[0] != '/') {
            (void) storage_error(err, errlen, STORAGE_EINVAL,
                                 "location %s: storage_path must be an"
                                 " absolute path", loc->name);
            return NULL;
        }
        driver = &storage_fs_driver;
        break;

    case QUAY_STORAGE_S3:
    case QUAY_STORAGE_RADOSGW:
        s3 = storage_s3_new(loc, err, errlen);
        if (s3 == NULL) {
            return NULL;
        }
        driver = &storage_s3_driver;
        break;

    default:
        (void) storage_error(err, errlen, STORAGE_ENOTSUP,
                             "location %s: driver not supported by the"
                             " workers", loc->name);
        return NULL;
    }

    s = xcalloc(1, sizeof(*s));
    s->loc = loc;
    s->driver = driver;
    s->s3 = s3;
    return s;
}


void
storage_close(storage_t *s)
{
    if (s == NULL) {
        return;
    }
    storage_s3_free(s->s3);
    free(s);
}


const char *
storage_location_name(const storage_t *s)
{
    return s->loc->name;
}


bool
storage_is_object_store(const storage_t *s)
{
    return s->s3 != NULL;
}


void
storage_set_progress(storage_t *s, storage_progress_pt fn, void *ctx)
{
    s->progress = fn;
    s->progress_ctx = ctx;
}


#define STORAGE_CHECK_KEY(key)                                               \
    do {                                                                     \
        if (!storage_key_valid(key)) {                                       \
            return storage_error(err, errlen, STORAGE_EINVAL,                \
                                 "invalid key");                             \
        }                                                                    \
    } while (0)


int
storage_remove(storage_t *s, const char *key, char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    return s->driver->remove(s, key, err, errlen);
}


int
storage_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    return s->driver->stat(s, key, size, err, errlen);
}


int
storage_get(storage_t *s, const char *key, int64_t offset, int64_t length,
    storage_sink_pt sink, void *ctx, char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    if (offset < 0 || length < -1) {
        return storage_error(err, errlen, STORAGE_EINVAL, "invalid range");
    }
    if (length == 0) {
        return STORAGE_OK;
    }
    return s->driver->get(s, key, offset, length, sink, ctx, err, errlen);
}


typedef struct {
    unsigned char  *buf;
    size_t          len;
    size_t          got;
} storage_buf_sink_t;


static int
storage_buf_sink(void *ctx, const unsigned char *p, size_t len)
{
    storage_buf_sink_t  *b = ctx;

    if (len > b->len - b->got) {
        return -1;
    }
    memcpy(b->buf + b->got, p, len);
    b->got += len;
    return 0;
}


int
storage_read(storage_t *s, const char *key, int64_t offset,
    unsigned char *buf, size_t len, char *err, size_t errlen)
{
    storage_buf_sink_t  b = { buf, len, 0 };
    int                 rc;

    rc = storage_get(s, key, offset, (int64_t) len, storage_buf_sink, &b,
                     err, errlen);
    if (rc == STORAGE_OK && b.got != len) {
        return storage_error(err, errlen, STORAGE_EIO,
                             "location %s: %s: short read (%zu of %zu"
                             " bytes at %" PRId64 ")", s->loc->name, key,
                             b.got, len, offset);
    }
    return rc;
}


int
storage_put(storage_t *s, const char *key, const unsigned char *p,
    size_t len, char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    return s->driver->put(s, key, p, len, err, errlen);
}


int
storage_mpu_create(storage_t *s, const char *key, char *upload_id,
    size_t idlen, char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    return s->driver->mpu_create(s, key, upload_id, idlen, err, errlen);
}


int
storage_mpu_part(storage_t *s, const char *key, const char *upload_id,
    int64_t offset, const unsigned char *p, storage_part_t *part, char *err,
    size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    if (part->number < 1 || part->number > STORAGE_MAX_PARTS
        || part->size < 0 || offset < 0)
    {
        return storage_error(err, errlen, STORAGE_EINVAL, "invalid part");
    }
    return s->driver->mpu_part(s, key, upload_id, offset, p, part, err,
                               errlen);
}


int
storage_mpu_complete(storage_t *s, const char *key, const char *upload_id,
    const storage_part_t *parts, size_t nparts, char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    if (nparts == 0 || nparts > STORAGE_MAX_PARTS) {
        return storage_error(err, errlen, STORAGE_EINVAL,
                             "a multipart upload needs 1 to %d parts",
                             STORAGE_MAX_PARTS);
    }
    return s->driver->mpu_complete(s, key, upload_id, parts, nparts, err,
                                   errlen);
}


int
storage_mpu_abort(storage_t *s, const char *key, const char *upload_id,
    char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(key);
    return s->driver->mpu_abort(s, key, upload_id, err, errlen);
}


int
storage_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen)
{
    if (!storage_prefix_valid(prefix)) {
        return storage_error(err, errlen, STORAGE_EINVAL, "invalid prefix");
    }
    return s->driver->mpu_list(s, prefix, visit, ctx, err, errlen);
}


int
storage_move(storage_t *s, const char *src, const char *dst, int64_t size,
    char *err, size_t errlen)
{
    STORAGE_CHECK_KEY(src);
    STORAGE_CHECK_KEY(dst);
    return s->driver->move(s, src, dst, size, err, errlen);
}


/* LocalStorage ------------------------------------------------------------ */

/* Returns a directory fd for the storage root, or -1 with err filled. */
static int
storage_fs_root(storage_t *s, int *code, char *err, size_t errlen)
{
    int  fd;

    fd = open(s->loc->storage_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        *code = storage_error(err, errlen, STORAGE_EUNAVAIL,
                              "location %s: storage root %s: %s",
                              s->loc->name, s->loc->storage_path,
                              strerror(errno));
    }
    return fd;
}


static int
storage_fs_errno(storage_t *s, const char *key, int e, char *err,
    size_t errlen)
{
    if (e == ENOENT || e == ENOTDIR) {
        return storage_error(err, errlen, STORAGE_ENOENT,
                             "location %s: %s: not found", s->loc->name,
                             key);
    }
    return storage_error(err, errlen, STORAGE_EIO, "location %s: %s: %s",
                         s->loc->name, key, strerror(e));
}


/* Creates the parent directories of key below root (mkdir -p). */
static int
storage_fs_mkdirs(storage_t *s, int root, const char *key, char *err,
    size_t errlen)
{
    char   path[STORAGE_KEY_MAX + 1];
    char  *p;

    (void) snprintf(path, sizeof(path), "%s", key);
    for (p = strchr(path, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdirat(root, path, 0755) != 0 && errno != EEXIST) {
            int  e = errno;

            *p = '/';
            return storage_fs_errno(s, path, e, err, errlen);
        }
        *p = '/';
    }
    return STORAGE_OK;
}


/* fsyncs the directory holding key. */
static int
storage_fs_sync_dir(storage_t *s, int root, const char *key, char *err,
    size_t errlen)
{
    char         dir[STORAGE_KEY_MAX + 1];
    char        *slash;
    int          fd, rc = STORAGE_OK;

    (void) snprintf(dir, sizeof(dir), "%s", key);
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        fd = dup(root);
    } else {
        *slash = '\0';
        fd = openat(root, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) {
        return storage_fs_errno(s, dir, errno, err, errlen);
    }
    if (fsync(fd) != 0) {
        rc = storage_fs_errno(s, dir, errno, err, errlen);
    }
    (void) close(fd);
    return rc;
}


static int
storage_fs_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    struct stat  st;
    int          root, rc = STORAGE_OK;

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    if (fstatat(root, key, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = storage_fs_errno(s, key, errno, err, errlen);
    } else if (!S_ISREG(st.st_mode)) {
        rc = storage_error(err, errlen, STORAGE_EIO, "%s: not a file", key);
    } else if (size != NULL) {
        *size = (int64_t) st.st_size;
    }

    (void) close(root);
    return rc;
}


static int
storage_fs_remove(storage_t *s, const char *key, char *err, size_t errlen)
{
    int  root, rc = STORAGE_OK;

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    /* unlinkat removes a final symlink itself, never its target */
    if (unlinkat(root, key, 0) != 0) {
        rc = storage_fs_errno(s, key, errno, err, errlen);
    }

    (void) close(root);
    return rc;
}


static int
storage_fs_get(storage_t *s, const char *key, int64_t offset,
    int64_t length, storage_sink_pt sink, void *ctx, char *err,
    size_t errlen)
{
    unsigned char  *buf = NULL;
    int64_t         left = length;
    ssize_t         n;
    size_t          want;
    int             root, fd = -1, rc = STORAGE_OK;

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    fd = openat(root, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = storage_fs_errno(s, key, errno, err, errlen);
        goto done;
    }

    buf = xmalloc(STORAGE_FS_CHUNK);

    while (left != 0) {
        want = STORAGE_FS_CHUNK;
        if (left > 0 && (int64_t) want > left) {
            want = (size_t) left;
        }
        n = pread(fd, buf, want, (off_t) offset);
        if (n < 0) {
            if (errno == EINTR && !worker_shutdown_requested()) {
                continue;
            }
            rc = storage_fs_errno(s, key, errno, err, errlen);
            goto done;
        }
        if (n == 0) {
            if (left > 0) {
                rc = storage_error(err, errlen, STORAGE_EIO,
                                   "location %s: %s: %" PRId64 " bytes"
                                   " missing at the end", s->loc->name,
                                   key, left);
            }
            goto done;
        }
        if (sink(ctx, buf, (size_t) n) != 0) {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: %s: stopped by the reader",
                               s->loc->name, key);
            goto done;
        }
        offset += n;
        if (left > 0) {
            left -= n;
        }
        if (s->progress != NULL) {
            s->progress(s->progress_ctx);
        }
    }

done:
    free(buf);
    if (fd >= 0) {
        (void) close(fd);
    }
    (void) close(root);
    return rc;
}


/* Writes len bytes at offset, whole. */
static int
storage_fs_pwrite(storage_t *s, int fd, const char *key,
    const unsigned char *p, size_t len, int64_t offset, char *err,
    size_t errlen)
{
    ssize_t  n;

    while (len > 0) {
        n = pwrite(fd, p, len, (off_t) offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return storage_fs_errno(s, key, errno, err, errlen);
        }
        p += n;
        len -= (size_t) n;
        offset += n;
    }
    return STORAGE_OK;
}


static int
storage_fs_put(storage_t *s, const char *key, const unsigned char *p,
    size_t len, char *err, size_t errlen)
{
    char  tmp[STORAGE_KEY_MAX + 64];
    int   root, fd = -1, rc = STORAGE_OK;

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    (void) snprintf(tmp, sizeof(tmp), "%s.tmp-%d-%08x", key, (int) getpid(),
                    (unsigned) (worker_random() * 4294967295.0));

    rc = storage_fs_mkdirs(s, root, key, err, errlen);
    if (rc != STORAGE_OK) {
        goto done;
    }

    fd = openat(root, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = storage_fs_errno(s, tmp, errno, err, errlen);
        goto done;
    }

    rc = storage_fs_pwrite(s, fd, tmp, p, len, 0, err, errlen);
    if (rc == STORAGE_OK && fsync(fd) != 0) {
        rc = storage_fs_errno(s, tmp, errno, err, errlen);
    }
    if (rc == STORAGE_OK && renameat(root, tmp, root, key) != 0) {
        rc = storage_fs_errno(s, key, errno, err, errlen);
    }
    if (rc == STORAGE_OK) {
        rc = storage_fs_sync_dir(s, root, key, err, errlen);
    } else {
        (void) unlinkat(root, tmp, 0);
    }

done:
    if (fd >= 0) {
        (void) close(fd);
    }
    (void) close(root);
    return rc;
}


static int
storage_fs_mpu_name(const char *key, char *buf, size_t len)
{
    int  n = snprintf(buf, len, "%s" STORAGE_MPU_SUFFIX, key);

    return (n < 0 || (size_t) n >= len) ? STORAGE_EINVAL : STORAGE_OK;
}


static int
storage_fs_mpu_create(storage_t *s, const char *key, char *upload_id,
    size_t idlen, char *err, size_t errlen)
{
    char  name[STORAGE_KEY_MAX + 8];
    int   root, fd, rc = STORAGE_OK;

    if (storage_fs_mpu_name(key, name, sizeof(name)) != STORAGE_OK) {
        return storage_error(err, errlen, STORAGE_EINVAL, "key too long");
    }

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    rc = storage_fs_mkdirs(s, root, key, err, errlen);
    if (rc == STORAGE_OK) {
        fd = openat(root, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
                                | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = storage_fs_errno(s, name, errno, err, errlen);
        } else {
            (void) close(fd);
            (void) snprintf(upload_id, idlen, "local");
        }
    }

    (void) close(root);
    return rc;
}


static int
storage_fs_mpu_part(storage_t *s, const char *key, const char *upload_id,
    int64_t offset, const unsigned char *p, storage_part_t *part, char *err,
    size_t errlen)
{
    char  name[STORAGE_KEY_MAX + 8];
    int   root, fd, rc = STORAGE_OK;

    if (storage_fs_mpu_name(key, name, sizeof(name)) != STORAGE_OK) {
        return storage_error(err, errlen, STORAGE_EINVAL, "key too long");
    }

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    fd = openat(root, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = storage_fs_errno(s, name, errno, err, errlen);
    } else {
        rc = storage_fs_pwrite(s, fd, name, p, (size_t) part->size, offset,
                               err, errlen);
        (void) close(fd);
        (void) snprintf(part->etag, sizeof(part->etag), "local-%d",
                        part->number);
    }

    (void) close(root);
    return rc;
}


static int
storage_fs_mpu_complete(storage_t *s, const char *key,
    const char *upload_id, const storage_part_t *parts, size_t nparts,
    char *err, size_t errlen)
{
    char     name[STORAGE_KEY_MAX + 8];
    int64_t  size = 0;
    size_t   i;
    int      root, fd, rc = STORAGE_OK;

    if (storage_fs_mpu_name(key, name, sizeof(name)) != STORAGE_OK) {
        return storage_error(err, errlen, STORAGE_EINVAL, "key too long");
    }
    for (i = 0; i < nparts; i++) {
        size += parts[i].size;
    }

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    fd = openat(root, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = storage_fs_errno(s, name, errno, err, errlen);
        goto done;
    }

    /* bytes past the parts (a longer earlier attempt) are not ours */
    if (ftruncate(fd, (off_t) size) != 0 || fsync(fd) != 0) {
        rc = storage_fs_errno(s, name, errno, err, errlen);
    }
    (void) close(fd);

    if (rc == STORAGE_OK && renameat(root, name, root, key) != 0) {
        rc = storage_fs_errno(s, key, errno, err, errlen);
    }
    if (rc == STORAGE_OK) {
        rc = storage_fs_sync_dir(s, root, key, err, errlen);
    }

done:
    (void) close(root);
    return rc;
}


static int
storage_fs_mpu_abort(storage_t *s, const char *key, const char *upload_id,
    char *err, size_t errlen)
{
    char  name[STORAGE_KEY_MAX + 8];

    if (storage_fs_mpu_name(key, name, sizeof(name)) != STORAGE_OK) {
        return storage_error(err, errlen, STORAGE_EINVAL, "key too long");
    }
    return storage_fs_remove(s, name, err, errlen);
}


static int
storage_fs_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen)
{
    char            dir[STORAGE_KEY_MAX + 1], key[STORAGE_KEY_MAX + 1];
    const char     *base;
    char           *slash;
    size_t          blen, nlen, slen = sizeof(STORAGE_MPU_SUFFIX) - 1;
    struct stat     st;
    struct dirent  *de;
    DIR            *d;
    int             root, fd, rc = STORAGE_OK;

    (void) snprintf(dir, sizeof(dir), "%s", prefix);
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        base = prefix;
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        base = prefix + (slash - dir) + 1;
        *slash = '\0';
    }
    blen = strlen(base);

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    fd = openat(root, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = (errno == ENOENT) ? STORAGE_OK
                               : storage_fs_errno(s, dir, errno, err,
                                                  errlen);
        (void) close(root);
        return rc;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        rc = storage_fs_errno(s, dir, errno, err, errlen);
        (void) close(fd);
        (void) close(root);
        return rc;
    }

    while ((errno = 0, de = readdir(d)) != NULL) {
        nlen = strlen(de->d_name);
        if (nlen <= slen || strncmp(de->d_name, base, blen) != 0
            || strcmp(de->d_name + nlen - slen, STORAGE_MPU_SUFFIX) != 0)
        {
            continue;
        }
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0
            || !S_ISREG(st.st_mode))
        {
            continue;
        }
        if (slash == NULL) {
            (void) snprintf(key, sizeof(key), "%.*s", (int) (nlen - slen),
                            de->d_name);
        } else {
            (void) snprintf(key, sizeof(key), "%s/%.*s", dir,
                            (int) (nlen - slen), de->d_name);
        }
        if (storage_key_valid(key)) {
            visit(ctx, key, "local", st.st_mtime);
        }
    }
    if (errno != 0) {
        rc = storage_fs_errno(s, dir, errno, err, errlen);
    }

    (void) closedir(d);
    (void) close(root);
    return rc;
}


static int
storage_fs_move(storage_t *s, const char *src, const char *dst,
    int64_t size, char *err, size_t errlen)
{
    int  root, rc = STORAGE_OK;

    root = storage_fs_root(s, &rc, err, errlen);
    if (root < 0) {
        return rc;
    }

    rc = storage_fs_mkdirs(s, root, dst, err, errlen);
    if (rc == STORAGE_OK && renameat(root, src, root, dst) != 0) {
        rc = storage_fs_errno(s, src, errno, err, errlen);
    }
    if (rc == STORAGE_OK) {
        rc = storage_fs_sync_dir(s, root, dst, err, errlen);
    }

    (void) close(root);
    return rc;
}
