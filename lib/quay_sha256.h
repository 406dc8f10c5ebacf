/*
 * SHA-256 (FIPS 180-4) with a state that can be saved and resumed.
 *
 * A blob upload arrives as many PATCH requests, possibly on different
 * machines; after each one the module saves the serialized hash state with
 * the upload row and the next request resumes it.  The serialized form is
 * a versioned byte format of our own (never a struct dump, never OpenSSL's
 * private layout, never a pickle as in Quay's data/fields.py).
 *
 * Serialized state, version 1, always QUAY_SHA256_STATE_LEN (106) bytes:
 *
 *   offset  size  field
 *        0     1  version, 1
 *        1    32  h[0..7], each big-endian
 *       33     8  total bytes hashed so far, big-endian
 *       41     1  block_len, the pending bytes in block[] (0..63)
 *       42    64  block[0..block_len-1], then zeros up to 64 bytes
 *
 * The format is fixed-length so the database column has a fixed size, and
 * canonical (padding must be zero) so one state has exactly one encoding.
 */

#ifndef QUAY_SHA256_H
#define QUAY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "quay_err.h"


#define QUAY_SHA256_DIGEST_LEN     32
#define QUAY_SHA256_BLOCK_LEN      64
#define QUAY_SHA256_STATE_VERSION  1
#define QUAY_SHA256_STATE_LEN      (1 + 32 + 8 + 1 + 64)


typedef struct {
    uint32_t       h[8];
    uint64_t       total;          /* bytes passed to update so far */
    unsigned char  block[64];      /* pending partial block */
    size_t         block_len;      /* always total % 64 */
} quay_sha256_t;


/* Which compression function quay_sha256_update() uses (process-wide). */
typedef enum {
    QUAY_SHA256_IMPL_AUTO = 0,     /* SHA-NI when the CPU has it */
    QUAY_SHA256_IMPL_PORTABLE,     /* plain C */
    QUAY_SHA256_IMPL_SHANI         /* x86 SHA extensions */
} quay_sha256_impl_e;


void quay_sha256_init(quay_sha256_t *s);

/* Hashes len bytes at p (len may be 0, p may then be NULL). */
void quay_sha256_update(quay_sha256_t *s, const unsigned char *p,
    size_t len);

/* Writes the 32-byte digest to out and wipes s; call init to reuse it. */
void quay_sha256_final(quay_sha256_t *s, unsigned char out[32]);

/* One-shot convenience: out = SHA-256(p[0..len-1]). */
void quay_sha256(const unsigned char *p, size_t len, unsigned char out[32]);

/*
 * Writes the version 1 encoding of s (QUAY_SHA256_STATE_LEN bytes) to out
 * and returns QUAY_SHA256_STATE_LEN.  With out == NULL it only returns the
 * length.  s is not changed: hashing may continue after saving.
 */
size_t quay_sha256_serialize(const quay_sha256_t *s, unsigned char *out);

/*
 * Loads a state written by quay_sha256_serialize().  Returns QUAY_OK, or
 * QUAY_EVERSION for an unknown version byte, or QUAY_EINVAL for a wrong
 * length, block_len >= 64, total % 64 != block_len, a total too large to
 * hash, or non-zero padding.  On error *s is left untouched.  err may be
 * NULL.
 */
int quay_sha256_deserialize(quay_sha256_t *s, const unsigned char *p,
    size_t len, quay_err_t *err);

/*
 * Selects the compression function for the whole process; for tests and
 * tools/bench.  Call it before hashing starts, never while another thread
 * hashes.  Returns QUAY_OK, or QUAY_ENOTFOUND when this CPU or build has no
 * such implementation (the setting is then unchanged).
 */
int quay_sha256_set_impl(quay_sha256_impl_e impl);

/* The implementation quay_sha256_update() uses now: "portable", "sha-ni". */
const char *quay_sha256_impl_name(void);

#endif /* QUAY_SHA256_H */
