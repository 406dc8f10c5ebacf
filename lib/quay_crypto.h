/*
 * Encryption of database fields with DATABASE_SECRET_KEY (robot tokens,
 * app-specific token secrets, mirror credentials: quay-behaviour.md
 * section 11.3), constant-time comparison and random tokens.
 *
 * Key.  quay_crypto_key_derive() turns DATABASE_SECRET_KEY into the
 * 32-byte AES-256 key exactly as Quay's convert_secret_key() does, so a
 * database written by Quay stays readable.  There is no KDF; the first
 * rule that applies wins:
 *
 *   1. Python's int(secret) accepts it (ASCII or Unicode whitespace
 *      around, one optional sign, decimal digits with single '_' between
 *      them, Unicode decimal digits counting as digits, at most 4,300
 *      digits as in Python 3.11 and later) and "{:02x}".format(n) has an
 *      even number of characters: the key material is those hex digits
 *      as bytes, i.e. the big-endian bytes of n without leading zeros,
 *      and one 0x00 byte for 0.  A negative non-zero n, or a positive n
 *      needing an odd number of hex digits (e.g. 256 = "100"), makes
 *      Quay's bytearray.fromhex() fail, and the next rule is tried.
 *   2. Python's uuid.UUID(secret) accepts it (every "urn:", then every
 *      "uuid:" removed, '{' and '}' stripped from both ends, every '-'
 *      removed, then exactly 32 characters that int(s, 16) accepts): the
 *      material is the UUID's 16 bytes.
 *   3. Otherwise each character's code point is one byte: ASCII and
 *      Latin-1 (U+0000 to U+00FF, written in UTF-8 as usual) give that
 *      byte; a character above U+00FF is QUAY_EINVAL, because Quay itself
 *      fails to start on such a key (bytearray() raises ValueError).
 *
 * The material is then repeated (or cut) to exactly 32 bytes.  The secret
 * must be valid UTF-8 (it is a YAML string).  It is taken as text: if the
 * YAML scalar was unquoted and PyYAML would have read it as a number in
 * another notation (0x1F, 017, 1:20, 1e5), the caller must pass Quay's
 * integer in decimal instead.
 *
 * Format.  Values are text, so they fit Quay's varchar columns:
 *
 *   v1$$<base64(nonce[12] || ciphertext || tag[16])>   ours
 *   v0$$<base64(nonce[13] || ciphertext || tag[16])>   Quay's
 *
 * base64 is RFC 4648 standard with '=' padding, decoded strictly.
 * v1 is AES-256-GCM with a 96-bit random nonce and a 128-bit tag, and
 * takes associated data (AD): a label of the value's purpose that is
 * authenticated but not stored.  Use "<table>.<column>" (for example
 * "robotaccounttoken.token"), so a value copied into another column does
 * not decrypt.  Random nonces keep one key safe for about 2^32
 * encryptions.  The ciphertext is as long as the plaintext, so a value
 * takes 4 + 4 * ceil((n + 28) / 3) characters (QUAY_CRYPTO_ENCRYPTED_LEN):
 * 128 for a 64-character robot token, the same as Quay's v0.
 *
 * v0 is Quay's own (AES-256-CCM, 13-byte nonce, 16-byte tag, no AD, so
 * the ad argument is ignored for it).  It is accepted by
 * quay_crypto_decrypt() only, never written: a database migrated from
 * Quay keeps working, and quay_crypto_version() lets a caller re-encrypt
 * v0 values as v1 when it next writes them.  The same key serves both
 * versions, as DATABASE_SECRET_KEY does in Quay.
 *
 * Errors.  Messages never contain the secret, the key, a plaintext or an
 * encrypted value.  OpenSSL's error queue is left as it was found.
 *
 * Buffers.  Inputs are (pointer, length) and need no NUL.  Outputs
 * measure, then fill: with out == NULL a function only sets *written to
 * the length of the result; otherwise out must have room for that length
 * plus one, and gets the result and a terminating NUL (also after a
 * decrypted plaintext, which may itself contain NULs).
 *
 * All functions are pure apart from OpenSSL's random generator, keep no
 * state and are safe to call from any thread.
 */

#ifndef QUAY_CRYPTO_H
#define QUAY_CRYPTO_H

#include <stddef.h>

#include "quay_err.h"


#define QUAY_CRYPTO_KEY_LEN         32
#define QUAY_CRYPTO_V1_NONCE_LEN    12
#define QUAY_CRYPTO_V0_NONCE_LEN    13
#define QUAY_CRYPTO_TAG_LEN         16
#define QUAY_CRYPTO_PREFIX_LEN      4              /* "v1$$", "v0$$" */

/* Largest plaintext encrypted or decrypted (v0 itself stops at 65,535). */
#define QUAY_CRYPTO_MAX_PLAINTEXT   (1024 * 1024)

/* Longest DATABASE_SECRET_KEY accepted, in bytes. */
#define QUAY_CRYPTO_MAX_SECRET      65536

/* Characters quay_crypto_encrypt() writes for n plaintext bytes, NUL not
 * included. */
#define QUAY_CRYPTO_ENCRYPTED_LEN(n)                                         \
    (QUAY_CRYPTO_PREFIX_LEN                                                  \
     + ((QUAY_CRYPTO_V1_NONCE_LEN + (n) + QUAY_CRYPTO_TAG_LEN + 2) / 3) * 4)

/* Quay's robot token: 64 characters from A-Z and 0-9. */
#define QUAY_CRYPTO_ROBOT_TOKEN_LEN 64


/*
 * Derives the 32-byte key from DATABASE_SECRET_KEY secret[0..len-1] by
 * Quay's rules (above).  Returns QUAY_OK; QUAY_EINVAL for an empty
 * secret, invalid UTF-8, or a character above U+00FF under rule 3;
 * QUAY_ERANGE when len > QUAY_CRYPTO_MAX_SECRET; QUAY_ENOMEM.  On error
 * key is zeroed.  Scratch copies of the secret are wiped.  err may be
 * NULL.
 */
int quay_crypto_key_derive(const char *secret, size_t len,
    unsigned char key[QUAY_CRYPTO_KEY_LEN], quay_err_t *err);

/*
 * Encrypts plaintext[0..len-1] as a v1 value bound to ad[0..ad_len-1]
 * (ad may be NULL when ad_len is 0; an empty AD is allowed, but a label
 * is recommended).  With out == NULL sets *written to
 * QUAY_CRYPTO_ENCRYPTED_LEN(len) and returns QUAY_OK; otherwise writes
 * the value and a NUL to out and its length to *written.  Returns QUAY_OK;
 * QUAY_ERANGE when len > QUAY_CRYPTO_MAX_PLAINTEXT or ad_len > INT_MAX, or
 * when outlen is too small (then *written is the length needed and out,
 * if outlen > 0, holds an empty string); QUAY_EINVAL for a NULL pointer
 * with a non-zero length; QUAY_ERROR when OpenSSL fails (no randomness).
 * err may be NULL.
 */
int quay_crypto_encrypt(const unsigned char key[QUAY_CRYPTO_KEY_LEN],
    const void *plaintext, size_t len, const void *ad, size_t ad_len,
    char *out, size_t outlen, size_t *written, quay_err_t *err);

/*
 * Decrypts text[0..len-1], a v1 value made with the same ad, or a Quay v0
 * value (ad ignored).  With out == NULL checks only the format (prefix,
 * base64, minimum length, not the tag) and sets *written to the
 * plaintext length; otherwise writes the plaintext and a NUL to out and
 * its length to *written.  Returns
 *   QUAY_OK        decrypted and authenticated;
 *   QUAY_EVERSION  text does not start with "v1$$" or "v0$$";
 *   QUAY_EINVAL    bad base64 or too short to hold a nonce and a tag, or
 *                  a NULL pointer with a non-zero length;
 *   QUAY_ERANGE    the plaintext would exceed QUAY_CRYPTO_MAX_PLAINTEXT
 *                  (65,535 for v0), or outlen is too small (*written is
 *                  then the size needed), or ad_len > INT_MAX;
 *   QUAY_ERROR     authentication failed: wrong key, wrong ad, or a
 *                  modified value; or OpenSSL failed.
 * On every error out holds no plaintext (it is wiped; an empty string if
 * outlen > 0) and *written is 0 unless stated above.  err may be NULL.
 */
int quay_crypto_decrypt(const unsigned char key[QUAY_CRYPTO_KEY_LEN],
    const char *text, size_t len, const void *ad, size_t ad_len,
    unsigned char *out, size_t outlen, size_t *written, quay_err_t *err);

/*
 * The format version of an encrypted value: 1, 0 (Quay's; re-encrypt it
 * when convenient), or QUAY_EVERSION for anything else.  Looks at the
 * prefix only.
 */
int quay_crypto_version(const char *text, size_t len);

/*
 * Compares a[0..len-1] with b[0..len-1] in time that depends only on len
 * (CRYPTO_memcmp).  Returns 1 when equal (also for len 0), else 0.
 */
int quay_crypto_equal(const void *a, const void *b, size_t len);

/*
 * Compares two byte strings of possibly different lengths: 0 at once when
 * the lengths differ (the length is not secret for fixed-size tokens),
 * else quay_crypto_equal().  Returns 1 when equal.
 */
int quay_crypto_equal_len(const void *a, size_t alen, const void *b,
    size_t blen);

/*
 * Writes len random characters from A-Z and 0-9, then a NUL, to out (room
 * for len + 1).  Each character is uniform over the 36 (rejection
 * sampling of RAND_bytes() output, no modulo bias); Quay's robot tokens
 * are QUAY_CRYPTO_ROBOT_TOKEN_LEN of them.  Returns QUAY_OK, QUAY_EINVAL
 * when out is NULL, or QUAY_ERROR when OpenSSL has no randomness (out is
 * then an empty string).  err may be NULL.
 */
int quay_crypto_random_token(char *out, size_t len, quay_err_t *err);

/* Overwrites p[0..len-1] with zeros in a way the compiler keeps
 * (OPENSSL_cleanse), for plaintexts and keys that are done with. */
void quay_crypto_wipe(void *p, size_t len);

#endif /* QUAY_CRYPTO_H */
