/*
 * Password hashing for "user".password_hash: PBKDF2-HMAC-SHA256 in the
 * modular-crypt form that Python's passlib calls pbkdf2_sha256, so a hash
 * written here can be checked by passlib and the other way round:
 *
 *     $pbkdf2-sha256$<iterations>$<salt>$<checksum>
 *
 * salt and checksum are passlib's "adapted base64" (the standard alphabet
 * with '.' instead of '+', no '=' padding); the salt is 16 random bytes and
 * the checksum the 32-byte derived key.
 *
 * Cost: QUAY_PASSWORD_ITERATIONS (100,000) takes about 35 ms of one core
 * on the 2-vCPU test machine.  That is the price of every password login,
 * so the module runs verification in its thread pool and never on the
 * event loop.  The count is stored in each hash, so raising it later only
 * affects new hashes; verification accepts any count in
 * [QUAY_PASSWORD_MIN_ITERATIONS, QUAY_PASSWORD_MAX_ITERATIONS] (the upper
 * bound keeps a corrupted row from costing minutes of CPU).
 *
 * Not supported yet: Quay's own bcrypt hashes ("$2a$", "$2b$", "$2y$");
 * quay_password_verify() reports them as QUAY_EINVAL with a message saying
 * so, and such users need a password reset ("quayctl user passwd").
 *
 * Both functions are pure (no I/O, no global state besides OpenSSL's
 * random generator) and safe to call from any thread.
 */

#ifndef QUAY_PASSWORD_H
#define QUAY_PASSWORD_H

#include <stddef.h>

#include "quay_err.h"


#define QUAY_PASSWORD_ITERATIONS      100000
#define QUAY_PASSWORD_MIN_ITERATIONS  1000
#define QUAY_PASSWORD_MAX_ITERATIONS  10000000
#define QUAY_PASSWORD_SALT_LEN        16

/*
 * Size of the output buffer quay_password_hash() needs, NUL included.  The
 * hash itself is 15 + up to 8 + 1 + 22 + 1 + 43 = 90 characters; the rest
 * is room for a longer salt or count without changing callers.  It also
 * fits "user".password_hash (varchar(255)).
 */
#define QUAY_PASSWORD_HASH_SIZE       128

/* quay_password_verify()'s result for a wrong password. */
#define QUAY_PASSWORD_MISMATCH        QUAY_ENOTFOUND


/*
 * Hashes password[0..len-1] (any bytes; not NUL-terminated) with a fresh
 * random salt and writes the NUL-terminated modular-crypt string to out.
 * Returns QUAY_OK, QUAY_ERANGE when outlen < QUAY_PASSWORD_HASH_SIZE or the
 * password is longer than INT_MAX, or QUAY_ERROR when OpenSSL fails (no
 * randomness).  On error out holds an empty string when outlen > 0.  err
 * may be NULL.
 */
int quay_password_hash(const char *password, size_t len, char *out,
    size_t outlen, quay_err_t *err);

/*
 * Checks password[0..len-1] against stored (NUL-terminated, as read from
 * "user".password_hash).  The comparison is constant-time.  Returns
 *   QUAY_OK                  the password matches;
 *   QUAY_PASSWORD_MISMATCH   it does not (QUAY_ENOTFOUND);
 *   QUAY_EINVAL              stored is NULL, empty, malformed, uses an
 *                            iteration count out of bounds, or is a bcrypt
 *                            hash (not supported yet);
 *   QUAY_ERANGE              the password is longer than INT_MAX;
 *   QUAY_ERROR               OpenSSL failed.
 * err may be NULL.
 */
int quay_password_verify(const char *password, size_t len,
    const char *stored, quay_err_t *err);

#endif /* QUAY_PASSWORD_H */
