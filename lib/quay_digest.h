/*
 * OCI content digests, "algorithm:hex", restricted to what the registry
 * accepts: sha256 with 64 and sha512 with 128 lowercase hex digits
 * (image-spec descriptor.md; security catalogue B1.4, B1.5).  A digest
 * that passed quay_digest_parse() is safe to put in SQL parameters, URLs
 * and storage keys.
 */

#ifndef QUAY_DIGEST_H
#define QUAY_DIGEST_H

#include <stddef.h>

#include "quay_err.h"


/* Longest accepted digest text: "sha512:" and 128 hex digits. */
#define QUAY_DIGEST_MAX_LEN    (7 + 128)
/* Longest storage path: "sha512/" "xx/" and 128 hex digits. */
#define QUAY_DIGEST_PATH_MAX   (7 + 3 + 128)


typedef enum {
    QUAY_DIGEST_SHA256 = 1,
    QUAY_DIGEST_SHA512
} quay_digest_algo_e;


typedef struct {
    quay_digest_algo_e  algo;
    unsigned char       hex[129];      /* lowercase, NUL-terminated */
    size_t              hex_len;       /* 64 or 128 */
} quay_digest_t;


/*
 * Parses exactly "sha256:" + 64 or "sha512:" + 128 lowercase hex digits
 * from p[0..len-1] (not NUL-terminated; a trailing NUL, newline or space
 * is an error).  Returns QUAY_OK, or QUAY_EINVAL with a reason in err
 * (which may be NULL); *d is written only on success.
 */
int quay_digest_parse(const unsigned char *p, size_t len, quay_digest_t *d,
    quay_err_t *err);

/* "sha256" or "sha512"; NULL for an unknown value. */
const char *quay_digest_algo_name(quay_digest_algo_e algo);

/*
 * Formats d as "algo:hex" and returns its length (71 or 135), not counting
 * a NUL.  With out == NULL it only measures.  Otherwise it needs outlen >=
 * that length, writes the text and adds a NUL when outlen has room for
 * one; when outlen is too small it writes nothing and returns 0.
 */
size_t quay_digest_format(const quay_digest_t *d, char *out, size_t outlen);

/* d = "sha256:" + the lowercase hex of raw; returns QUAY_OK. */
int quay_digest_from_sha256(const unsigned char raw[32], quay_digest_t *d);

/* 1 when a and b name the same content (same algorithm and hex), else 0. */
int quay_digest_equal(const quay_digest_t *a, const quay_digest_t *b);

/*
 * Quay's content-addressed path below the storage root (reference 4.3,
 * digest_tools.content_path): "sha256/<hex[0:2]>/<hex>".  Same measuring
 * and NUL rules as quay_digest_format(); returns 0 if d is not a valid
 * digest.
 */
size_t quay_digest_storage_path(const quay_digest_t *d, char *out,
    size_t outlen);

#endif /* QUAY_DIGEST_H */
