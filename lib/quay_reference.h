/*
 * The OCI distribution grammar for repository names and tags, and the
 * router for paths below /v2/ (distribution-spec spec.md, "Pulling
 * manifests" and the endpoint table; security catalogue B1.1-B1.5, B1.10).
 * Everything a handler takes from a /v2/ URL passes through here before
 * it reaches SQL, a storage key or a log line.
 */

#ifndef QUAY_REFERENCE_H
#define QUAY_REFERENCE_H

#include <stddef.h>

#include "quay_digest.h"
#include "quay_err.h"


#define QUAY_REPO_NAME_MAX  255      /* whole name, slashes included */
#define QUAY_TAG_MAX        128
#define QUAY_UUID_LEN       36       /* 8-4-4-4-12 */


/* What a /v2/ path asks for. */
typedef enum {
    QUAY_V2_UNKNOWN = 0,         /* no route matched */
    QUAY_V2_BASE,                /* /v2/ */
    QUAY_V2_CATALOG,             /* /v2/_catalog */
    QUAY_V2_TAGS_LIST,           /* /v2/<name>/tags/list */
    QUAY_V2_MANIFEST,            /* /v2/<name>/manifests/<tag|digest> */
    QUAY_V2_BLOB,                /* /v2/<name>/blobs/<digest> */
    QUAY_V2_UPLOAD_START,        /* /v2/<name>/blobs/uploads[/] */
    QUAY_V2_UPLOAD,              /* /v2/<name>/blobs/uploads/<uuid> */
    QUAY_V2_REFERRERS            /* /v2/<name>/referrers/<digest> */
} quay_v2_kind_e;


/* Why a /v2/ path was refused; the handler maps it to an OCI error. */
typedef enum {
    QUAY_V2_OK = 0,
    QUAY_V2_ROUTE_UNKNOWN,       /* no such endpoint: 404 */
    QUAY_V2_NAME_INVALID,        /* NAME_INVALID */
    QUAY_V2_TAG_INVALID,         /* manifest reference is a bad tag */
    QUAY_V2_DIGEST_INVALID,      /* DIGEST_INVALID */
    QUAY_V2_UPLOAD_UNKNOWN       /* uuid not canonical: BLOB_UPLOAD_UNKNOWN */
} quay_v2_error_e;


/*
 * The result of quay_v2_path_parse().  Offsets index the parsed path (the
 * bytes after "/v2/"); nothing is copied, except the parsed digest.
 */
typedef struct {
    quay_v2_kind_e    kind;        /* set as soon as the route is known */
    quay_v2_error_e   error;       /* QUAY_V2_OK on success */
    size_t            name_off;    /* repository name; 0 and 0 if none */
    size_t            name_len;
    size_t            ref_off;     /* tag, digest or upload uuid */
    size_t            ref_len;
    int               ref_is_digest;   /* 1: ref is a digest, in digest */
    quay_digest_t     digest;
} quay_v2_path_t;


/*
 * 1..255 bytes of components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by
 * single '/'.  Returns QUAY_OK or QUAY_EINVAL with the reason in err (may
 * be NULL).
 */
int quay_repo_name_valid(const unsigned char *p, size_t len,
    quay_err_t *err);

/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.  Returns QUAY_OK or QUAY_EINVAL. */
int quay_tag_valid(const unsigned char *p, size_t len, quay_err_t *err);

/* A canonical lowercase UUID, 8-4-4-4-12 hex.  QUAY_OK or QUAY_EINVAL. */
int quay_uuid_valid(const unsigned char *p, size_t len, quay_err_t *err);

/*
 * Splits a valid name into namespace (the first component, p[0..*ns_len-1])
 * and repository (the rest, from p + *ns_len + 1; it may contain '/').
 * Returns QUAY_OK, or QUAY_EINVAL for an invalid name and for a name with
 * a single component: Quay maps "foo" to the library namespace
 * (FEATURE_LIBRARY_SUPPORT, LIBRARY_NAMESPACE), which is a configuration
 * decision the caller makes before it splits.
 */
int quay_repo_name_split(const unsigned char *p, size_t len, size_t *ns_len);

/*
 * Routes the part of the URI path after "/v2/" (no query string; p need
 * not be NUL-terminated).  The name may contain '/', so the route is found
 * from the right: a tag, digest or uuid never contains '/', hence the
 * route is fixed by the last two or three components ("tags/list",
 * "manifests/R", "blobs/D", "blobs/uploads", "blobs/uploads/U",
 * "referrers/D") and the name is everything before them; for
 * "a/manifests/manifests/x" the name is "a/manifests" and the tag "x".
 * "_catalog" and "" are matched exactly (no trailing slash).
 *
 * Returns QUAY_OK with *out filled in, or QUAY_EINVAL with out->error
 * saying why (and out->kind set when the route itself was recognised, so
 * a GET can answer 404 and a PUT 400); err (may be NULL) gets a message.
 * Checks run in order: route, name, then reference.
 */
int quay_v2_path_parse(const unsigned char *p, size_t len,
    quay_v2_path_t *out, quay_err_t *err);

#endif /* QUAY_REFERENCE_H */
