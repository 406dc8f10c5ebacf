/*
 * Unit tests for lib/quay_digest.c: the accepted and refused digest
 * spellings of security catalogue B1.4/B1.5, formatting with measuring and
 * short buffers, equality, conversion from a raw SHA-256, and Quay's
 * content path (reference 4.3).
 */

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "quay_digest.h"
#include "quay_sha256.h"


#define HEX64                                                               \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEX128                                                              \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"     \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"


typedef struct {
    const char  *text;
    size_t       len;          /* 0: strlen(text) */
    const char  *why;
} bad_digest_t;


static void
test_parse_good(void)
{
    int            rc;
    quay_err_t     err;
    quay_digest_t  d;

    rc = quay_digest_parse((const unsigned char *) "sha256:" HEX64, 71, &d,
                           &err);
    is_int(rc, QUAY_OK, "sha256 digest parses");
    is_int(d.algo, QUAY_DIGEST_SHA256, "  ... algo is sha256");
    is_int(d.hex_len, 64, "  ... 64 hex digits");
    is_str((char *) d.hex, HEX64, "  ... hex copied and NUL-terminated");

    rc = quay_digest_parse((const unsigned char *) "sha512:" HEX128, 135, &d,
                           &err);
    is_int(rc, QUAY_OK, "sha512 digest parses");
    is_int(d.algo, QUAY_DIGEST_SHA512, "  ... algo is sha512");
    is_int(d.hex_len, 128, "  ... 128 hex digits");
    is_str((char *) d.hex, HEX128, "  ... hex copied");

    /* the input is (p, len): bytes after len are not looked at */
    rc = quay_digest_parse((const unsigned char *) "sha256:" HEX64 "\n",
                           71, &d, NULL);
    is_int(rc, QUAY_OK, "bytes past len are ignored");

    is_str(quay_digest_algo_name(QUAY_DIGEST_SHA256), "sha256",
           "algo name sha256");
    is_str(quay_digest_algo_name(QUAY_DIGEST_SHA512), "sha512",
           "algo name sha512");
    ok(quay_digest_algo_name((quay_digest_algo_e) 0) == NULL,
       "algo name of 0 is NULL");
}


static void
test_parse_bad(void)
{
    static char          longer[4096];
    static const bad_digest_t  cases[] = {
        { "", 0, "empty" },
        { "sha256:baddigeststring", 0, "sha256:baddigeststring" },
        { "sha256:", 0, "sha256: with nothing after it" },
        { "sha256", 0, "no colon" },
        { ":" HEX64, 0, "no algorithm" },
        { "SHA256:" HEX64, 0, "uppercase algorithm" },
        { "Sha256:" HEX64, 0, "mixed-case algorithm" },
        { "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B"
          "7852B855", 0, "uppercase hex" },
        { "sha256:E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
          "7852b855", 0, "one uppercase hex digit" },
        { "sha256:3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
          "7852b855", 0, "63 hex digits" },
        { "sha256:" HEX64 "0", 0, "65 hex digits" },
        { "sha256:" HEX64 "\n", 0, "trailing newline" },
        { "sha256:" HEX64 " ", 0, "trailing space" },
        { "sha256:" HEX64 "\0", 72, "trailing NUL" },
        { " sha256:" HEX64, 0, "leading space" },
        { "sha256:../../x", 0, "sha256:../../x" },
        { "sha256:../x", 0, "sha256:../x" },
        { "sha256:..%2f" HEX64, 0, "encoded traversal" },
        { "sha256:" HEX128, 0, "sha256 label on 128 hex digits" },
        { "sha512:" HEX64, 0, "sha512 label on 64 hex digits" },
        { "md5:d41d8cd98f00b204e9800998ecf8427e", 0, "md5" },
        { "sha384:" HEX64, 0, "sha384 is not supported" },
        { "sha256+b64u:" HEX64, 0, "unknown algorithm with separator" },
        { "sha256::" HEX64, 0, "double colon" },
        { "sha256:" "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
          "7852b85g", 0, "non-hex digit g" },
        { "sha256:" "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
          "7852b8\xc3\xa9", 0, "UTF-8 in hex" },
        { "sha256:" "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
          "78\0" "2b855", 71, "embedded NUL" },
    };

    int            rc;
    char           name[200];
    size_t         i, len;
    quay_err_t     err;
    quay_digest_t  d, before;

    memset(&before, 0x5a, sizeof(before));

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        d = before;
        err.code = 0;
        err.msg[0] = '\0';
        rc = quay_digest_parse((const unsigned char *) cases[i].text, len,
                               &d, &err);
        snprintf(name, sizeof(name), "rejected: %s", cases[i].why);
        is_int(rc, QUAY_EINVAL, name);
        if (rc == QUAY_EINVAL) {
            ok(err.code == QUAY_EINVAL && err.msg[0] != '\0'
               && memcmp(&d, &before, sizeof(d)) == 0,
               "  ... err set, digest untouched");
        }
    }

    /* overlong input: a valid digest followed by a lot more */
    memset(longer, 'a', sizeof(longer));
    memcpy(longer, "sha256:" HEX64, 71);
    rc = quay_digest_parse((const unsigned char *) longer, sizeof(longer),
                           &d, NULL);
    is_int(rc, QUAY_EINVAL, "rejected: 4096-byte input");

    memcpy(longer, "sha512:", 7);
    rc = quay_digest_parse((const unsigned char *) longer, 136, &d, NULL);
    is_int(rc, QUAY_EINVAL, "rejected: sha512 with 129 hex digits");
}


static void
test_format(void)
{
    char           buf[200];
    size_t         n;
    quay_digest_t  d, bad;

    (void) quay_digest_parse((const unsigned char *) "sha256:" HEX64, 71,
                             &d, NULL);

    is_int(quay_digest_format(&d, NULL, 0), 71, "format measures 71");

    memset(buf, 'x', sizeof(buf));
    n = quay_digest_format(&d, buf, sizeof(buf));
    is_int(n, 71, "format returns 71");
    is_str(buf, "sha256:" HEX64, "format round-trips and adds a NUL");

    memset(buf, 'x', sizeof(buf));
    n = quay_digest_format(&d, buf, 71);
    is_int(n, 71, "format into exactly 71 bytes");
    ok(memcmp(buf, "sha256:" HEX64, 71) == 0 && buf[71] == 'x',
       "  ... no NUL written past the end");

    memset(buf, 'x', sizeof(buf));
    n = quay_digest_format(&d, buf, 70);
    is_int(n, 0, "format into 70 bytes fails");
    ok(buf[0] == 'x', "  ... and writes nothing");

    (void) quay_digest_parse((const unsigned char *) "sha512:" HEX128, 135,
                             &d, NULL);
    n = quay_digest_format(&d, buf, sizeof(buf));
    is_int(n, 135, "sha512 format length");
    is_str(buf, "sha512:" HEX128, "sha512 round-trips");

    bad = d;
    bad.algo = (quay_digest_algo_e) 7;
    is_int(quay_digest_format(&bad, buf, sizeof(buf)), 0,
           "format refuses an unknown algorithm");
    bad = d;
    bad.hex_len = 64;
    is_int(quay_digest_format(&bad, buf, sizeof(buf)), 0,
           "format refuses sha512 with 64 digits");
    bad = d;
    bad.hex[5] = '/';
    is_int(quay_digest_format(&bad, buf, sizeof(buf)), 0,
           "format refuses a hand-made digest with '/'");
}


static void
test_from_sha256_equal(void)
{
    char           buf[100];
    unsigned char  raw[32];
    quay_digest_t  a, b, c;

    quay_sha256((const unsigned char *) "", 0, raw);
    is_int(quay_digest_from_sha256(raw, &a), QUAY_OK, "from_sha256");
    (void) quay_digest_format(&a, buf, sizeof(buf));
    is_str(buf, "sha256:" HEX64, "from_sha256 of \"\" is the empty digest");

    (void) quay_digest_parse((const unsigned char *) "sha256:" HEX64, 71,
                             &b, NULL);
    ok(quay_digest_equal(&a, &b), "parsed and computed digests are equal");

    quay_sha256((const unsigned char *) "abc", 3, raw);
    (void) quay_digest_from_sha256(raw, &c);
    ok(!quay_digest_equal(&a, &c), "different content is not equal");

    (void) quay_digest_parse((const unsigned char *) "sha512:" HEX128, 135,
                             &c, NULL);
    ok(!quay_digest_equal(&a, &c), "sha256 and sha512 are not equal");

    /* same hex, different label: never equal */
    c = b;
    c.algo = QUAY_DIGEST_SHA512;
    ok(!quay_digest_equal(&b, &c), "algorithm is part of equality");
}


static void
test_storage_path(void)
{
    char           buf[300];
    size_t         n;
    quay_digest_t  d, bad;

    (void) quay_digest_parse((const unsigned char *) "sha256:" HEX64, 71,
                             &d, NULL);

    is_int(quay_digest_storage_path(&d, NULL, 0), 74,
           "storage path measures 74");
    n = quay_digest_storage_path(&d, buf, sizeof(buf));
    is_int(n, 74, "storage path length");
    is_str(buf, "sha256/e3/" HEX64, "storage path is sha256/<2>/<hex>");

    memset(buf, 'x', sizeof(buf));
    is_int(quay_digest_storage_path(&d, buf, 73), 0,
           "storage path into a short buffer fails");
    ok(buf[0] == 'x', "  ... and writes nothing");

    (void) quay_digest_parse((const unsigned char *) "sha512:" HEX128, 135,
                             &d, NULL);
    n = quay_digest_storage_path(&d, buf, sizeof(buf));
    is_int(n, QUAY_DIGEST_PATH_MAX, "sha512 storage path length");
    is_str(buf, "sha512/cf/" HEX128, "sha512 storage path");

    bad = d;
    memcpy(bad.hex, "..", 2);
    is_int(quay_digest_storage_path(&bad, buf, sizeof(buf)), 0,
           "no storage path from a hand-made \"..\" digest");
}


int
main(void)
{
    test_parse_good();
    test_parse_bad();
    test_format();
    test_from_sha256_equal();
    test_storage_path();

    return done_testing();
}
