/*
 * Registry JWTs (quay-behaviour.md section 3.2): the instance's RS256 key,
 * its public JWK for the servicekey table, signing, and verification with
 * every check of security-catalogue.md B2 items 22 to 25.
 *
 * Keys.  The instance key is an RSA private key in a PEM file (PKCS#8 when
 * we write it; PKCS#1 "RSA PRIVATE KEY" files, as Quay's boot.py writes
 * conf/quay.pem, load as well).  Keys from other instances arrive as
 * public JWKs read from servicekey.jwk.  Only RSA keys of 2048 to 8192
 * bits are accepted; each key is bound to RS256 alone.
 *
 * kid.  A key's kid is its RFC 7638 JWK thumbprint: base64url (no padding)
 * of SHA-256 over {"e":"<e>","kty":"RSA","n":"<n>"}, always 43 characters
 * and stable for a given key (it depends on n and e only, not on the file
 * format).  This is what Quay uses for servicekey.kid, so kids computed
 * here and by Quay agree.  A key imported from a JWK keeps the JWK's own
 * "kid" when it has one (that is the servicekey row's identity) and gets
 * the thumbprint otherwise.  kid is limited to 63 printable ASCII
 * characters other than '"' and '\\', so it can be written into a JSON
 * header without escaping.
 *
 * Threads.  No function keeps state between calls.  A loaded key is
 * read-only, so one quay_jwt_key_t may be used by any number of threads
 * at once for signing and verifying; loading and freeing it must not race
 * with that use.  Signing and verifying each cost around a millisecond
 * and a few tens of microseconds of CPU respectively (see the timings in
 * t/unit/test_quay_jwt.c): the module runs signing in its thread pool.
 *
 * Input sizes.  Tokens longer than QUAY_JWT_MAX_LEN are rejected before
 * any decoding, and signing refuses to produce one.  Error messages never
 * quote a token or a claim value taken from one.
 *
 * Only quay_jwt_key_load_or_create() touches the file system; it is meant
 * for configuration time (nginx master, quayctl), not a request path.
 */

#ifndef QUAY_JWT_H
#define QUAY_JWT_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "quay_err.h"


#define QUAY_JWT_KID_SIZE        64            /* kid[], NUL included */
#define QUAY_JWT_THUMBPRINT_LEN  43            /* base64url of SHA-256 */
#define QUAY_JWT_MAX_LEN         (1024 * 1024) /* compact JWS, bytes */
#define QUAY_JWT_KEY_BITS        2048          /* generated keys */
#define QUAY_JWT_MIN_BITS        2048
#define QUAY_JWT_MAX_BITS        8192


typedef struct {
    EVP_PKEY  *key;                     /* owned; quay_jwt_key_free() */
    char       kid[QUAY_JWT_KID_SIZE];  /* NUL-terminated key id */
} quay_jwt_key_t;

typedef struct {
    char   alg[16];                     /* NUL-terminated */
    char   kid[QUAY_JWT_KID_SIZE];      /* "" when the header has none */
} quay_jwt_header_t;


/*
 * Loads the PEM private key (RSA, 2048 to 8192 bits, not encrypted) at
 * path into *key, or, when path does not exist, generates a 2048-bit RSA
 * key and writes it there as PKCS#8 PEM with mode 0600.  Creation is
 * atomic: the key goes to a temporary file in the same directory
 * (mkstemp, fsync) which is then hard-linked to path, so a reader never
 * sees a partial file and two processes racing to create it agree on one
 * key (the loser loads the winner's).  Where hard links are not supported
 * the temporary file is renamed instead.  key->kid is the thumbprint.
 * *key is overwritten (not freed first).  Returns QUAY_OK; QUAY_EIO when
 * the file cannot be read, created or written; QUAY_EINVAL when it holds
 * no usable key (not PEM, encrypted, not RSA, too small or too large);
 * QUAY_ERROR when OpenSSL fails.  err->msg names the path.  err may be
 * NULL.
 */
int quay_jwt_key_load_or_create(const char *path, quay_jwt_key_t *key,
    quay_err_t *err);

/* Frees key->key and clears *key; safe on a zeroed or freed key and on
 * NULL. */
void quay_jwt_key_free(quay_jwt_key_t *key);

/*
 * The public half of key as a compact JWK object, in this member order:
 * {"kty":"RSA","n":"...","e":"...","kid":"...","alg":"RS256","use":"sig"}
 * with n and e unpadded base64url big-endian, no leading zero bytes (RFC
 * 7518 section 6.3.1).  Malloc'ed and NUL-terminated; the caller frees it.
 * NULL on allocation or OpenSSL failure or when key holds no RSA key.
 */
char *quay_jwt_key_public_jwk(const quay_jwt_key_t *key);

/*
 * Loads the public RSA key of the JWK object jwk[0..len-1] (text as stored
 * in servicekey.jwk; no NUL needed) into *key, overwriting it.  Requires
 * "kty":"RSA" and "n", "e" in strict unpadded base64url; "alg", when
 * present, must be "RS256", and "use", when present, "sig".  Private
 * members ("d" etc.) are ignored: only the public key is kept.  key->kid
 * is the JWK's "kid" when present (see the kid rules above), else the
 * thumbprint.  QUAY_OK, QUAY_EINVAL (with a reason in err) or QUAY_ERROR
 * (OpenSSL failed).  err may be NULL.
 */
int quay_jwt_key_from_jwk(const char *jwk, size_t len, quay_jwt_key_t *key,
    quay_err_t *err);

/*
 * Signs claims_json[0..len-1], which must be one complete JSON object (it
 * is parsed to make sure, then used byte for byte), with the private key:
 * header {"alg":"RS256","typ":"JWT","kid":"<key->kid>"}, RSASSA-PKCS1-v1_5
 * with SHA-256.  Returns the compact JWS, malloc'ed and NUL-terminated
 * (the caller frees it), or NULL with err set: QUAY_EINVAL (claims not a
 * JSON object, key not private, token longer than QUAY_JWT_MAX_LEN),
 * QUAY_ENOMEM, QUAY_ERROR (OpenSSL).  Thread-safe; err may be NULL.
 */
char *quay_jwt_sign_rs256(const quay_jwt_key_t *key, const char *claims_json,
    size_t len, quay_err_t *err);

/*
 * Parses token[0..len-1] without verifying it, to find the key: the
 * token must be three dot-separated parts of strict base64url (the third
 * may be empty, so that "alg":"none" tokens reach the alg check and are
 * rejected there with a clear reason), no longer than QUAY_JWT_MAX_LEN,
 * whose header is a JSON object with a string "alg" (at most 15 bytes)
 * and, optionally, a string "kid" (at most 63 bytes; hdr->kid is "" when
 * absent).  Duplicate header members are malformed.  QUAY_OK or
 * QUAY_EINVAL; err may be NULL.
 */
int quay_jwt_peek_header(const char *token, size_t len,
    quay_jwt_header_t *hdr, quay_err_t *err);

/*
 * Verifies token[0..len-1] with key, then checks its claims.  In order:
 *
 *   - the shape, as quay_jwt_peek_header();
 *   - header "alg" exactly "RS256" (so "none", "HS256" keyed with the
 *     public key, "RS512", "PS256" ... all fail), no "jwk", "jku", "x5u",
 *     "x5c" (no key is ever taken from a token, and nothing is fetched),
 *     no "crit" (we understand no extensions), "kid" present and equal to
 *     key->kid;
 *   - the RSASSA-PKCS1-v1_5 SHA-256 signature, which must be exactly the
 *     modulus size;
 *   - the payload is a JSON object without duplicate members;
 *   - "iss" is a string equal to issuer; "aud" is a string equal to
 *     audience, or an array containing it;
 *   - "exp" is present and a number, and exp > now - leeway_s;
 *   - "nbf", if present, is a number <= now + leeway_s;
 *   - "iat", if present, is a number <= now + leeway_s;
 *   - when max_lifetime_s > 0: exp - iat <= max_lifetime_s and
 *     exp - nbf <= max_lifetime_s for whichever of iat and nbf are
 *     present, and at least one of them must be (otherwise the lifetime
 *     is unbounded).
 *
 * Fractional times are rounded up.  audience and issuer are NUL-terminated
 * and required.  Claims beyond these ("sub", "access", "context") are the
 * caller's to check.  On QUAY_OK, *claims (when claims is not NULL) is the
 * payload object; the caller json_decref()s it.  On error *claims is NULL
 * and the code is QUAY_EINVAL (malformed token or missing arguments) or
 * QUAY_ERROR (wrong alg, forbidden header, kid, signature or a claim),
 * with err->msg naming the failed check, never quoting the token.  err may
 * be NULL.  Thread-safe.
 */
int quay_jwt_verify_rs256(const char *token, size_t len,
    const quay_jwt_key_t *key, const char *audience, const char *issuer,
    long long now, long long leeway_s, long long max_lifetime_s,
    json_t **claims, quay_err_t *err);

#endif /* QUAY_JWT_H */
