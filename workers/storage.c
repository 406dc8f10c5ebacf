/*
 * DESIGN
 *
 * Worker-side storage (see storage.h).  A storage_t is a location name, a
 * borrowed config entry and a driver: a table of function pointers picked
 * by the entry's driver, the way Redis's ae.c picks a backend.  Drivers see
 * only validated keys.
 *
 * LocalStorage maps key K to <storage_path>/K.  Each operation first opens
 * the storage root as a directory and then works relative to it (unlinkat,
 * fstatat without following a final symlink).  Opening the root each time
 * costs one syscall and answers the question that matters for deletes: is
 * ENOENT "the object is gone" or "the volume is not mounted"?  Only the
 * first is STORAGE_ENOENT; a missing root is STORAGE_EUNAVAIL, so a worker
 * never forgets a row because a mount went away.
 *
 * S3Storage and RadosGWStorage get their driver (libcurl, SigV4 from
 * lib/quay_sigv4.c, a timeout on every transfer and the shutdown flag in
 * the progress callback) in this file later; until then they open with
 * STORAGE_ENOTSUP.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"
#include "worker.h"


typedef struct {
    const char  *name;                  /* Quay's driver name */
    int        (*stat)(storage_t *s, const char *key, int64_t *size,
                       char *err, size_t errlen);
    int        (*remove)(storage_t *s, const char *key, char *err,
                         size_t errlen);
} storage_driver_t;


struct storage_s {
    const quay_storage_location_t  *loc;      /* borrowed from the config */
    const storage_driver_t         *driver;
};


static int storage_fs_stat(storage_t *s, const char *key, int64_t *size,
    char *err, size_t errlen);
static int storage_fs_remove(storage_t *s, const char *key, char *err,
    size_t errlen);


static const storage_driver_t  storage_fs_driver = {
    "LocalStorage", storage_fs_stat, storage_fs_remove
};


static int
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


/* Clients ----------------------------------------------------------------- */

storage_t *
storage_open(const quay_storage_location_t *loc, char *err, size_t errlen)
{
    const storage_driver_t  *driver;
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
    default:
        (void) storage_error(err, errlen, STORAGE_ENOTSUP,
                             "location %s: driver not supported by the"
                             " workers yet", loc->name);
        return NULL;
    }

    s = xcalloc(1, sizeof(*s));
    s->loc = loc;
    s->driver = driver;
    return s;
}


void
storage_close(storage_t *s)
{
    free(s);
}


const char *
storage_location_name(const storage_t *s)
{
    return s->loc->name;
}


int
storage_remove(storage_t *s, const char *key, char *err, size_t errlen)
{
    if (!storage_key_valid(key)) {
        return storage_error(err, errlen, STORAGE_EINVAL, "invalid key");
    }
    return s->driver->remove(s, key, err, errlen);
}


int
storage_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    if (!storage_key_valid(key)) {
        return storage_error(err, errlen, STORAGE_EINVAL, "invalid key");
    }
    return s->driver->stat(s, key, size, err, errlen);
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
        int  e = errno;

        rc = (e == ENOENT || e == ENOTDIR)
             ? storage_error(err, errlen, STORAGE_ENOENT, "%s: not found",
                             key)
             : storage_error(err, errlen, STORAGE_EIO, "%s: %s", key,
                             strerror(e));
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
        int  e = errno;

        rc = (e == ENOENT || e == ENOTDIR)
             ? storage_error(err, errlen, STORAGE_ENOENT, "%s: not found",
                             key)
             : storage_error(err, errlen, STORAGE_EIO, "%s: %s", key,
                             strerror(e));
    }

    (void) close(root);
    return rc;
}
