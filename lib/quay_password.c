/*
 * PBKDF2-HMAC-SHA256 password hashes in passlib's pbkdf2_sha256 format
 * (see quay_password.h for the format and the cost).
 *
 * Hashing draws a 16-byte salt from RAND_bytes() and derives 32 bytes with
 * PKCS5_PBKDF2_HMAC().  Verification parses the stored string strictly:
 * the exact prefix, a decimal count without leading zeros inside the
 * bounds, a salt of 8 to 64 bytes, a checksum of exactly 32 bytes, both in
 * canonical adapted base64 (unused low bits zero, so one hash has one
 * spelling), and nothing after.  It then derives the key again with the
 * stored salt and count and compares with CRYPTO_memcmp().  Derived keys
 * are wiped with OPENSSL_cleanse() before returning.
 *
 * The base64 variant is passlib's ab64: the standard alphabet with '.' in
 * place of '+', and no padding.  It is small enough to keep here rather
 * than share with the JWT code, which needs base64url instead.
 */

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "quay_password.h"


#define QUAY_PASSWORD_PREFIX        "$pbkdf2-sha256$"
#define QUAY_PASSWORD_PREFIX_LEN    (sizeof(QUAY_PASSWORD_PREFIX) - 1)
#define QUAY_PASSWORD_KEY_LEN       32
#define QUAY_PASSWORD_SALT_MIN      8
#define QUAY_PASSWORD_SALT_MAX      64

/* The most base64 characters a salt or key may take (64 bytes). */
#define QUAY_PASSWORD_B64_MAX       86


static const char  quay_password_ab64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";


static size_t quay_password_ab64_encode(const unsigned char *p, size_t len,
    char *out);
static int quay_password_ab64_value(char c);
static int quay_password_ab64_decode(const char *p, size_t len,
    unsigned char *out, size_t outlen, size_t *decoded);
static int quay_password_derive(const char *password, size_t len,
    const unsigned char *salt, size_t salt_len, unsigned long iterations,
    unsigned char key[QUAY_PASSWORD_KEY_LEN], quay_err_t *err);


/* Encodes len bytes into out (no NUL) and returns the number of chars. */
static size_t
quay_password_ab64_encode(const unsigned char *p, size_t len, char *out)
{
    size_t    i, n;
    uint32_t  v;

    n = 0;

    for (i = 0; i + 3 <= len; i += 3) {
        v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
        out[n++] = quay_password_ab64[(v >> 18) & 0x3f];
        out[n++] = quay_password_ab64[(v >> 12) & 0x3f];
        out[n++] = quay_password_ab64[(v >> 6) & 0x3f];
        out[n++] = quay_password_ab64[v & 0x3f];
    }

    if (len - i == 1) {
        v = (uint32_t) p[i] << 16;
        out[n++] = quay_password_ab64[(v >> 18) & 0x3f];
        out[n++] = quay_password_ab64[(v >> 12) & 0x3f];

    } else if (len - i == 2) {
        v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
        out[n++] = quay_password_ab64[(v >> 18) & 0x3f];
        out[n++] = quay_password_ab64[(v >> 12) & 0x3f];
        out[n++] = quay_password_ab64[(v >> 6) & 0x3f];
    }

    return n;
}


static int
quay_password_ab64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '.') {
        return 62;
    }

    if (c == '/') {
        return 63;
    }

    return -1;
}


/*
 * Decodes len characters into out (at most outlen bytes).  Rejects foreign
 * characters, an impossible length (len % 4 == 1), non-zero unused bits
 * and output that would not fit.
 */
static int
quay_password_ab64_decode(const char *p, size_t len, unsigned char *out,
    size_t outlen, size_t *decoded)
{
    int       d;
    size_t    i, n, bits;
    uint32_t  acc;

    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > outlen) {
        return QUAY_EINVAL;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        d = quay_password_ab64_value(p[i]);
        if (d < 0) {
            return QUAY_EINVAL;
        }

        acc = (acc << 6 | (uint32_t) d) & 0xffffff;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char) (acc >> bits);
        }
    }

    /* The bits left over (2 or 4) must be zero: one spelling per value. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        return QUAY_EINVAL;
    }

    *decoded = n;

    return QUAY_OK;
}


static int
quay_password_derive(const char *password, size_t len,
    const unsigned char *salt, size_t salt_len, unsigned long iterations,
    unsigned char key[QUAY_PASSWORD_KEY_LEN], quay_err_t *err)
{
    if (len > INT_MAX) {
        return quay_err_set(err, QUAY_ERANGE, "password is too long");
    }

    /* PKCS5_PBKDF2_HMAC() wants a non-NULL pointer even for length 0. */
    if (password == NULL) {
        password = "";
    }

    if (PKCS5_PBKDF2_HMAC(password, (int) len, salt, (int) salt_len,
                          (int) iterations, EVP_sha256(),
                          QUAY_PASSWORD_KEY_LEN, key)
        != 1)
    {
        return quay_err_set(err, QUAY_ERROR, "PBKDF2 failed");
    }

    return QUAY_OK;
}


int
quay_password_hash(const char *password, size_t len, char *out,
    size_t outlen, quay_err_t *err)
{
    int            rc, n;
    char           salt_b64[QUAY_PASSWORD_B64_MAX + 1];
    char           key_b64[QUAY_PASSWORD_B64_MAX + 1];
    size_t         salt_b64_len, key_b64_len;
    unsigned char  salt[QUAY_PASSWORD_SALT_LEN];
    unsigned char  key[QUAY_PASSWORD_KEY_LEN];

    if (out != NULL && outlen > 0) {
        out[0] = '\0';
    }

    if (out == NULL || outlen < QUAY_PASSWORD_HASH_SIZE) {
        return quay_err_set(err, QUAY_ERANGE,
                            "password hash buffer must hold %d bytes",
                            QUAY_PASSWORD_HASH_SIZE);
    }

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        return quay_err_set(err, QUAY_ERROR, "no random bytes for a salt");
    }

    rc = quay_password_derive(password, len, salt, sizeof(salt),
                              QUAY_PASSWORD_ITERATIONS, key, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    salt_b64_len = quay_password_ab64_encode(salt, sizeof(salt), salt_b64);
    key_b64_len = quay_password_ab64_encode(key, sizeof(key), key_b64);
    OPENSSL_cleanse(key, sizeof(key));

    n = snprintf(out, outlen, "%s%d$%.*s$%.*s", QUAY_PASSWORD_PREFIX,
                 QUAY_PASSWORD_ITERATIONS, (int) salt_b64_len, salt_b64,
                 (int) key_b64_len, key_b64);
    if (n < 0 || (size_t) n >= outlen) {
        out[0] = '\0';
        return quay_err_set(err, QUAY_ERANGE, "password hash too long");
    }

    return QUAY_OK;
}


int
quay_password_verify(const char *password, size_t len, const char *stored,
    quay_err_t *err)
{
    int            rc;
    size_t         digits, salt_len, key_len, decoded;
    const char    *p, *salt_b64, *key_b64, *end;
    unsigned long  iterations;
    unsigned char  salt[QUAY_PASSWORD_SALT_MAX];
    unsigned char  want[QUAY_PASSWORD_KEY_LEN];
    unsigned char  got[QUAY_PASSWORD_KEY_LEN];

    if (stored == NULL || stored[0] == '\0') {
        return quay_err_set(err, QUAY_EINVAL, "no password is set");
    }

    if (stored[0] == '$' && stored[1] == '2' && stored[2] != '\0'
        && stored[3] == '$')
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "bcrypt password hashes ($2%c$) are not "
                            "supported yet; reset the password",
                            stored[2]);
    }

    if (strncmp(stored, QUAY_PASSWORD_PREFIX, QUAY_PASSWORD_PREFIX_LEN)
        != 0)
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "unknown password hash scheme");
    }

    /* iterations: 1 to 8 digits, no leading zero */
    p = stored + QUAY_PASSWORD_PREFIX_LEN;
    iterations = 0;

    for (digits = 0; p[digits] >= '0' && p[digits] <= '9'; digits++) {
        if (digits == 8) {
            break;
        }
        iterations = iterations * 10 + (unsigned long) (p[digits] - '0');
    }

    if (digits == 0 || p[digits] != '$' || (p[0] == '0' && digits > 1)) {
        return quay_err_set(err, QUAY_EINVAL,
                            "malformed iteration count in password hash");
    }

    if (iterations < QUAY_PASSWORD_MIN_ITERATIONS
        || iterations > QUAY_PASSWORD_MAX_ITERATIONS)
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "password hash iteration count %lu is out of "
                            "bounds", iterations);
    }

    salt_b64 = p + digits + 1;
    end = strchr(salt_b64, '$');
    if (end == NULL) {
        return quay_err_set(err, QUAY_EINVAL,
                            "password hash has no checksum");
    }

    salt_len = (size_t) (end - salt_b64);
    key_b64 = end + 1;
    key_len = strlen(key_b64);

    if (quay_password_ab64_decode(salt_b64, salt_len, salt, sizeof(salt),
                                  &decoded)
        != QUAY_OK
        || decoded < QUAY_PASSWORD_SALT_MIN)
    {
        return quay_err_set(err, QUAY_EINVAL, "malformed password salt");
    }

    salt_len = decoded;

    if (quay_password_ab64_decode(key_b64, key_len, want, sizeof(want),
                                  &decoded)
        != QUAY_OK
        || decoded != QUAY_PASSWORD_KEY_LEN)
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "malformed password hash checksum");
    }

    rc = quay_password_derive(password, len, salt, salt_len, iterations,
                              got, err);
    if (rc != QUAY_OK) {
        OPENSSL_cleanse(want, sizeof(want));
        return rc;
    }

    rc = CRYPTO_memcmp(got, want, QUAY_PASSWORD_KEY_LEN) == 0
         ? QUAY_OK : QUAY_PASSWORD_MISMATCH;

    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(want, sizeof(want));

    if (rc != QUAY_OK) {
        return quay_err_set(err, rc, "password does not match");
    }

    return QUAY_OK;
}
