/*
 * lib/quay_password.c: hash/verify round trips, wrong and tampered inputs,
 * malformed stored strings, and fixed vectors computed independently:
 *
 *   python3 -c 'import hashlib, base64;
 *     dk = hashlib.pbkdf2_hmac("sha256", PASSWORD, bytes(range(16)), N);
 *     ab64 = lambda b: base64.b64encode(b).decode().rstrip("=")
 *                                                  .replace("+", ".");
 *     print("$pbkdf2-sha256$%d$%s$%s" % (N, ab64(bytes(range(16))),
 *                                         ab64(dk)))'
 *
 * and one hash from passlib's documentation (password "password", 6400
 * rounds), which proves the format is passlib's pbkdf2_sha256.
 */

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "quay_password.h"


#define PW(s)  (s), strlen(s)

/* "correct horse battery staple", salt 00..0f, 1000 rounds */
static const char  vector_1000[] =
    "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
    "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4";

/* "" (empty), salt 00..0f, 1000 rounds */
static const char  vector_empty[] =
    "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
    "xbMBsf1hvO1j8AZCojBOxnRRn7182DxLyD2v4XQ/mFU";

/* "p\xc3\xa4ssw\xc3\xb6rd" (UTF-8), salt 00..0f, 100000 rounds */
static const char  vector_utf8[] =
    "$pbkdf2-sha256$100000$AAECAwQFBgcICQoLDA0ODw$"
    "trmn14eaJqetmcWSJJwUWVLKUOyf765hiEQzeYnvalM";

/* passlib documentation: pbkdf2_sha256 of "password" */
static const char  vector_passlib[] =
    "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$"
    "Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M";


static void
test_roundtrip(void)
{
    int         rc;
    char        h1[QUAY_PASSWORD_HASH_SIZE], h2[QUAY_PASSWORD_HASH_SIZE];
    char        prefix[32];
    quay_err_t  err;

    rc = quay_password_hash(PW("s3cret-Passw0rd"), h1, sizeof(h1), &err);
    is_int(rc, QUAY_OK, "hash succeeds");

    (void) snprintf(prefix, sizeof(prefix), "$pbkdf2-sha256$%d$",
                    QUAY_PASSWORD_ITERATIONS);
    ok(strncmp(h1, prefix, strlen(prefix)) == 0,
       "hash starts with $pbkdf2-sha256$<QUAY_PASSWORD_ITERATIONS>$");
    /* prefix + 22 salt chars + '$' + 43 checksum chars */
    is_int(strlen(h1), strlen(prefix) + 22 + 1 + 43,
           "hash has a 16-byte salt and a 32-byte checksum");
    ok(strlen(h1) < QUAY_PASSWORD_HASH_SIZE, "hash fits the documented size");

    rc = quay_password_verify(PW("s3cret-Passw0rd"), h1, &err);
    is_int(rc, QUAY_OK, "the same password verifies");

    rc = quay_password_verify(PW("s3cret-Passw0rd!"), h1, &err);
    is_int(rc, QUAY_PASSWORD_MISMATCH, "a different password does not");
    is_str(err.msg, "password does not match", "mismatch message");

    rc = quay_password_verify("s3cret-Passw0rd", 14, h1, NULL);
    is_int(rc, QUAY_PASSWORD_MISMATCH, "a prefix of the password does not");

    rc = quay_password_hash(PW("s3cret-Passw0rd"), h2, sizeof(h2), NULL);
    is_int(rc, QUAY_OK, "second hash succeeds");
    ok(strcmp(h1, h2) != 0, "two hashes of one password differ (salt)");
    is_int(quay_password_verify(PW("s3cret-Passw0rd"), h2, NULL), QUAY_OK,
           "the second hash verifies too");

    rc = quay_password_hash("", 0, h1, sizeof(h1), NULL);
    is_int(rc, QUAY_OK, "an empty password can be hashed");
    is_int(quay_password_verify(NULL, 0, h1, NULL), QUAY_OK,
           "and verified with a NULL pointer");

    /* bytes after a NUL count: inputs are (pointer, length) */
    rc = quay_password_hash("ab\0cd", 5, h1, sizeof(h1), NULL);
    is_int(rc, QUAY_OK, "a password with a NUL byte can be hashed");
    is_int(quay_password_verify("ab\0cd", 5, h1, NULL), QUAY_OK,
           "it verifies with its full length");
    is_int(quay_password_verify("ab", 2, h1, NULL), QUAY_PASSWORD_MISMATCH,
           "the part before the NUL does not");
}


static void
test_buffer(void)
{
    int   rc;
    char  small[QUAY_PASSWORD_HASH_SIZE - 1];

    small[0] = 'x';
    rc = quay_password_hash(PW("password1"), small, sizeof(small), NULL);
    is_int(rc, QUAY_ERANGE, "a buffer under QUAY_PASSWORD_HASH_SIZE fails");
    is_str(small, "", "and is left empty");

    rc = quay_password_hash(PW("password1"), NULL, 0, NULL);
    is_int(rc, QUAY_ERANGE, "a NULL buffer fails");
}


static void
test_vectors(void)
{
    quay_err_t  err;

    is_int(quay_password_verify(PW("correct horse battery staple"),
                                vector_1000, &err),
           QUAY_OK, "fixed vector (1000 rounds) verifies");
    is_int(quay_password_verify(PW("correct horse battery stapl"),
                                vector_1000, NULL),
           QUAY_PASSWORD_MISMATCH, "fixed vector rejects another password");
    is_int(quay_password_verify("", 0, vector_empty, NULL), QUAY_OK,
           "fixed vector of the empty password verifies");
    is_int(quay_password_verify(PW("p\xc3\xa4ssw\xc3\xb6rd"), vector_utf8,
                                NULL),
           QUAY_OK, "fixed vector of a UTF-8 password (100000) verifies");
    is_int(quay_password_verify(PW("password"), vector_passlib, NULL),
           QUAY_OK, "passlib's documented pbkdf2_sha256 hash verifies");
}


static void
test_tampered(void)
{
    char        buf[QUAY_PASSWORD_HASH_SIZE];
    size_t      n;
    quay_err_t  err;

    /* the checksum's next-to-last character (the last one carries the
     * unused bits, see the malformed cases) */
    (void) snprintf(buf, sizeof(buf), "%s", vector_1000);
    n = strlen(buf);
    buf[n - 2] = buf[n - 2] == 'A' ? 'B' : 'A';
    is_int(quay_password_verify(PW("correct horse battery staple"), buf,
                                &err),
           QUAY_PASSWORD_MISMATCH, "a changed checksum character fails");

    /* salt: first character */
    (void) snprintf(buf, sizeof(buf), "%s", vector_1000);
    buf[strlen("$pbkdf2-sha256$1000$")] = 'B';
    is_int(quay_password_verify(PW("correct horse battery staple"), buf,
                                NULL),
           QUAY_PASSWORD_MISMATCH, "a changed salt fails");

    /* iterations */
    (void) snprintf(buf, sizeof(buf), "%s", vector_1000);
    buf[strlen("$pbkdf2-sha256$1")] = '1';
    is_int(quay_password_verify(PW("correct horse battery staple"), buf,
                                NULL),
           QUAY_PASSWORD_MISMATCH, "a changed iteration count fails");
}


static void
test_malformed(void)
{
    size_t      i;
    quay_err_t  err;

    static const char  *bad[] = {
        "",
        "password",
        "$pbkdf2-sha256$",
        "$pbkdf2-sha256$1000",
        "$pbkdf2-sha256$1000$",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$",
        "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        /* iteration count: not digits, leading zero, 0, too low/high */
        "$pbkdf2-sha256$x1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$01000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$0$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$999$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$10000001$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$999999999999$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$-1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        /* salt: standard '+', padding, bad char, too short, len%4 == 1 */
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0O+w$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw==$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$1000$AAEC*wQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$1000$AAECAwQ$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0OD$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        /* salt: non-canonical last character (unused bits set) */
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODx$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4",
        /* checksum: short, long, non-canonical, bad char, trailing $ */
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4A",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ5",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8c-4",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4$",
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$"
            "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4 ",
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char  name[256];

        (void) snprintf(name, sizeof(name), "malformed hash %zu rejected "
                        "with QUAY_EINVAL", i);
        is_int(quay_password_verify(PW("correct horse battery staple"),
                                    bad[i], NULL),
               QUAY_EINVAL, name);
    }

    is_int(quay_password_verify(PW("x"), NULL, &err), QUAY_EINVAL,
           "a NULL stored hash is rejected");
    is_str(err.msg, "no password is set", "with a clear message");

    is_int(quay_password_verify(PW("password"),
               "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
               &err),
           QUAY_EINVAL, "a bcrypt hash is reported, not verified");
    ok(strstr(err.msg, "bcrypt") != NULL && strstr(err.msg, "$2b$") != NULL,
       "the bcrypt message names the scheme");

    is_int(quay_password_verify(PW("password"), "$2a$10$abc", NULL),
           QUAY_EINVAL, "$2a$ is reported too");
}


int
main(void)
{
    test_roundtrip();
    test_buffer();
    test_vectors();
    test_tampered();
    test_malformed();

    return done_testing();
}
