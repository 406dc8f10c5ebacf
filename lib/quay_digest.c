/*
 * Digest text for the registry: parse, format, compare, and map to the
 * storage key.  The grammar of image-spec descriptor.md allows any
 * "algorithm:encoded", but a registry only needs sha256 and sha512, and
 * every digest it accepts ends up in a storage key, a SQL parameter or a
 * header, so parsing is strict: the algorithm is matched byte for byte
 * (no "SHA256:"), the hex must be lowercase (a digest has one spelling,
 * so two spellings never name two rows), and the length must match the
 * algorithm exactly (catalogue B1.5: no sha512 label on a sha256 value).
 * Nothing may follow the hex: no newline, NUL or space (B1.4).
 *
 * A quay_digest_t keeps the hex NUL-terminated so workers can print it,
 * but every function here also carries hex_len and never relies on it.
 */

#include <string.h>

#include "quay_digest.h"


typedef struct {
    quay_digest_algo_e   algo;
    const char          *name;
    size_t               name_len;
    size_t               hex_len;
} quay_digest_algo_t;


static const quay_digest_algo_t  quay_digest_algos[] = {
    { QUAY_DIGEST_SHA256, "sha256", 6, 64 },
    { QUAY_DIGEST_SHA512, "sha512", 6, 128 },
};

#define QUAY_DIGEST_NALGOS                                                  \
    (sizeof(quay_digest_algos) / sizeof(quay_digest_algos[0]))


static const quay_digest_algo_t *
quay_digest_algo(quay_digest_algo_e algo)
{
    size_t  i;

    for (i = 0; i < QUAY_DIGEST_NALGOS; i++) {
        if (quay_digest_algos[i].algo == algo) {
            return &quay_digest_algos[i];
        }
    }

    return NULL;
}


static int
quay_digest_hex_valid(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/*
 * d's algorithm, or NULL when d is not something parse could produce.  A
 * digest built by hand is checked again before it becomes text or a
 * storage key, so no path is ever derived from unvalidated bytes.
 */
static const quay_digest_algo_t *
quay_digest_check(const quay_digest_t *d)
{
    const quay_digest_algo_t  *a;

    a = quay_digest_algo(d->algo);
    if (a == NULL || d->hex_len != a->hex_len
        || !quay_digest_hex_valid(d->hex, d->hex_len))
    {
        return NULL;
    }

    return a;
}


int
quay_digest_parse(const unsigned char *p, size_t len, quay_digest_t *d,
    quay_err_t *err)
{
    size_t                     i, colon;
    const quay_digest_algo_t  *a;

    if (len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "digest is empty");
    }

    if (len > QUAY_DIGEST_MAX_LEN) {
        return quay_err_set(err, QUAY_EINVAL, "digest is too long "
                            "(%zu bytes)", len);
    }

    colon = len;
    for (i = 0; i < len; i++) {
        if (p[i] == ':') {
            colon = i;
            break;
        }
    }

    if (colon == len) {
        return quay_err_set(err, QUAY_EINVAL, "digest has no algorithm");
    }

    a = NULL;
    for (i = 0; i < QUAY_DIGEST_NALGOS; i++) {
        if (colon == quay_digest_algos[i].name_len
            && memcmp(p, quay_digest_algos[i].name, colon) == 0)
        {
            a = &quay_digest_algos[i];
            break;
        }
    }

    if (a == NULL) {
        return quay_err_set(err, QUAY_EINVAL,
                            "unsupported digest algorithm");
    }

    if (len - colon - 1 != a->hex_len) {
        return quay_err_set(err, QUAY_EINVAL, "%s digest needs %zu hex "
                            "digits, got %zu bytes", a->name, a->hex_len,
                            len - colon - 1);
    }

    if (!quay_digest_hex_valid(p + colon + 1, a->hex_len)) {
        return quay_err_set(err, QUAY_EINVAL, "%s digest is not lowercase "
                            "hex", a->name);
    }

    d->algo = a->algo;
    memcpy(d->hex, p + colon + 1, a->hex_len);
    d->hex[a->hex_len] = '\0';
    d->hex_len = a->hex_len;

    return QUAY_OK;
}


const char *
quay_digest_algo_name(quay_digest_algo_e algo)
{
    const quay_digest_algo_t  *a;

    a = quay_digest_algo(algo);

    return a != NULL ? a->name : NULL;
}


size_t
quay_digest_format(const quay_digest_t *d, char *out, size_t outlen)
{
    size_t                     len;
    const quay_digest_algo_t  *a;

    a = quay_digest_check(d);
    if (a == NULL) {
        return 0;
    }

    len = a->name_len + 1 + d->hex_len;

    if (out == NULL) {
        return len;
    }

    if (outlen < len) {
        return 0;
    }

    memcpy(out, a->name, a->name_len);
    out[a->name_len] = ':';
    memcpy(out + a->name_len + 1, d->hex, d->hex_len);

    if (outlen > len) {
        out[len] = '\0';
    }

    return len;
}


int
quay_digest_from_sha256(const unsigned char raw[32], quay_digest_t *d)
{
    static const char  digits[] = "0123456789abcdef";
    size_t             i;

    for (i = 0; i < 32; i++) {
        d->hex[2 * i] = (unsigned char) digits[raw[i] >> 4];
        d->hex[2 * i + 1] = (unsigned char) digits[raw[i] & 0x0f];
    }

    d->hex[64] = '\0';
    d->hex_len = 64;
    d->algo = QUAY_DIGEST_SHA256;

    return QUAY_OK;
}


int
quay_digest_equal(const quay_digest_t *a, const quay_digest_t *b)
{
    return a->algo == b->algo
           && a->hex_len == b->hex_len
           && a->hex_len <= sizeof(a->hex)
           && memcmp(a->hex, b->hex, a->hex_len) == 0;
}


size_t
quay_digest_storage_path(const quay_digest_t *d, char *out, size_t outlen)
{
    size_t                     len, n;
    const quay_digest_algo_t  *a;

    a = quay_digest_check(d);
    if (a == NULL) {
        return 0;
    }

    /* "sha256" "/" "ab" "/" hex */
    len = a->name_len + 1 + 2 + 1 + d->hex_len;

    if (out == NULL) {
        return len;
    }

    if (outlen < len) {
        return 0;
    }

    n = 0;
    memcpy(out, a->name, a->name_len);
    n += a->name_len;
    out[n++] = '/';
    out[n++] = (char) d->hex[0];
    out[n++] = (char) d->hex[1];
    out[n++] = '/';
    memcpy(out + n, d->hex, d->hex_len);

    if (outlen > len) {
        out[len] = '\0';
    }

    return len;
}
