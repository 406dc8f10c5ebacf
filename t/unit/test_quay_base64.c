/*
 * lib/quay_base64.c: the RFC 4648 section 10 test vectors in both
 * variants, every character of both alphabets (a 48-byte string whose
 * encoding is the alphabet itself, checked with Python's base64 module),
 * validity of every byte value, round trips of every length up to 300,
 * and strictness: padding, the other variant's characters, whitespace,
 * impossible lengths and non-zero unused bits are all rejected.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "quay_base64.h"


#define S(s)  (s), (sizeof(s) - 1)

static const char  std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char  url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64.b64decode(std_alphabet) */
static const unsigned char  alphabet_bytes[48] = {
    0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f,
    0x41, 0x14, 0x93, 0x51, 0x55, 0x97, 0x61, 0x96, 0x9b, 0x71, 0xd7, 0x9f,
    0x82, 0x18, 0xa3, 0x92, 0x59, 0xa7, 0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf,
    0xc3, 0x1c, 0xb3, 0xd3, 0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf
};

static const struct {
    const char  *plain;
    const char  *std;
    const char  *url;
} rfc4648[] = {
    { "",       "",         ""         },
    { "f",      "Zg==",     "Zg"       },
    { "fo",     "Zm8=",     "Zm8"      },
    { "foo",    "Zm9v",     "Zm9v"     },
    { "foob",   "Zm9vYg==", "Zm9vYg"   },
    { "fooba",  "Zm9vYmE=", "Zm9vYmE"  },
    { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
};


static int
url_rejects(const char *in, size_t len)
{
    size_t         n;
    unsigned char  out[64];

    n = 99;
    if (quay_base64url_decode(in, len, NULL, &n) != QUAY_EINVAL || n != 0) {
        return 0;
    }

    return quay_base64url_decode(in, len, out, &n) == QUAY_EINVAL;
}


static int
std_rejects(const char *in, size_t len)
{
    size_t         n;
    unsigned char  out[64];

    n = 99;
    if (quay_base64_decode(in, len, NULL, &n) != QUAY_EINVAL || n != 0) {
        return 0;
    }

    return quay_base64_decode(in, len, out, &n) == QUAY_EINVAL;
}


static void
test_rfc4648(void)
{
    size_t         i, plen, n, m;
    char           enc[32], name[96];
    unsigned char  dec[32];

    for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        plen = strlen(rfc4648[i].plain);

        n = quay_base64_encode((const unsigned char *) rfc4648[i].plain,
                               plen, NULL);
        m = quay_base64_encode((const unsigned char *) rfc4648[i].plain,
                               plen, enc);
        enc[m] = '\0';
        (void) snprintf(name, sizeof(name), "base64(\"%s\") = \"%s\"",
                        rfc4648[i].plain, rfc4648[i].std);
        ok(n == m && strcmp(enc, rfc4648[i].std) == 0, name);

        n = quay_base64url_encode((const unsigned char *) rfc4648[i].plain,
                                  plen, NULL);
        m = quay_base64url_encode((const unsigned char *) rfc4648[i].plain,
                                  plen, enc);
        enc[m] = '\0';
        (void) snprintf(name, sizeof(name), "base64url(\"%s\") = \"%s\"",
                        rfc4648[i].plain, rfc4648[i].url);
        ok(n == m && strcmp(enc, rfc4648[i].url) == 0, name);

        n = 99;
        ok(quay_base64_decode(rfc4648[i].std, strlen(rfc4648[i].std), NULL,
                              &n) == QUAY_OK
           && n == plen
           && quay_base64_decode(rfc4648[i].std, strlen(rfc4648[i].std),
                                 dec, &m) == QUAY_OK
           && m == plen && memcmp(dec, rfc4648[i].plain, plen) == 0,
           "base64 decode of the vector (measure, then decode)");

        n = 99;
        ok(quay_base64url_decode(rfc4648[i].url, strlen(rfc4648[i].url),
                                 NULL, &n) == QUAY_OK
           && n == plen
           && quay_base64url_decode(rfc4648[i].url, strlen(rfc4648[i].url),
                                    dec, &m) == QUAY_OK
           && m == plen && memcmp(dec, rfc4648[i].plain, plen) == 0,
           "base64url decode of the vector (measure, then decode)");
    }
}


static void
test_alphabet(void)
{
    int            c, good_std, good_url, all_std, all_url;
    char           in[4], enc[80];
    size_t         n;
    unsigned char  dec[64];

    n = quay_base64_encode(alphabet_bytes, sizeof(alphabet_bytes), enc);
    ok(n == 64 && memcmp(enc, std_alphabet, 64) == 0,
       "base64 encodes all 64 values to the standard alphabet");

    n = quay_base64url_encode(alphabet_bytes, sizeof(alphabet_bytes), enc);
    ok(n == 64 && memcmp(enc, url_alphabet, 64) == 0,
       "base64url encodes all 64 values to the url alphabet");

    ok(quay_base64_decode(std_alphabet, 64, dec, &n) == QUAY_OK && n == 48
       && memcmp(dec, alphabet_bytes, 48) == 0,
       "base64 decodes the whole standard alphabet");

    ok(quay_base64url_decode(url_alphabet, 64, dec, &n) == QUAY_OK
       && n == 48 && memcmp(dec, alphabet_bytes, 48) == 0,
       "base64url decodes the whole url alphabet");

    ok(url_rejects(std_alphabet, 64), "base64url rejects '+' and '/'");
    ok(std_rejects(url_alphabet, 64), "base64 rejects '-' and '_'");

    /* each byte value alone in the first position of a quad */
    all_std = all_url = 1;

    for (c = 0; c < 256; c++) {
        in[0] = (char) c;
        in[1] = 'A';
        in[2] = 'A';
        in[3] = 'A';

        good_std = c != 0 && strchr(std_alphabet, c) != NULL;
        good_url = c != 0 && strchr(url_alphabet, c) != NULL;

        if ((quay_base64_decode(in, 4, dec, &n) == QUAY_OK) != good_std) {
            all_std = 0;
            printf("# base64 wrong verdict for byte %d\n", c);
        }

        if (good_std
            && (size_t) (strchr(std_alphabet, c) - std_alphabet)
               != (size_t) (dec[0] >> 2))
        {
            all_std = 0;
            printf("# base64 wrong value for byte %d\n", c);
        }

        if ((quay_base64url_decode(in, 4, dec, &n) == QUAY_OK) != good_url)
        {
            all_url = 0;
            printf("# base64url wrong verdict for byte %d\n", c);
        }

        if (good_url
            && (size_t) (strchr(url_alphabet, c) - url_alphabet)
               != (size_t) (dec[0] >> 2))
        {
            all_url = 0;
            printf("# base64url wrong value for byte %d\n", c);
        }
    }

    ok(all_std, "base64 accepts exactly its 64 characters, values right");
    ok(all_url, "base64url accepts exactly its 64 characters, values right");
}


static void
test_roundtrip(void)
{
    int            good;
    char          *enc;
    size_t         len, i, n, m;
    unsigned char  in[300], *dec;

    good = 1;

    for (i = 0; i < sizeof(in); i++) {
        in[i] = (unsigned char) (i * 131 + 7);
    }

    for (len = 0; len <= sizeof(in); len++) {

        /* exact-size buffers so ASan catches any overrun */
        n = quay_base64url_encode(in, len, NULL);
        enc = malloc(n + 1);
        dec = malloc(len + 1);

        if (enc == NULL || dec == NULL
            || quay_base64url_encode(in, len, enc) != n
            || quay_base64url_decode(enc, n, NULL, &m) != QUAY_OK
            || m != len
            || quay_base64url_decode(enc, n, dec, &m) != QUAY_OK
            || m != len || memcmp(in, dec, len) != 0
            || n != (len * 4 + 2) / 3)
        {
            good = 0;
        }

        free(enc);

        n = quay_base64_encode(in, len, NULL);
        enc = malloc(n + 1);

        if (enc == NULL
            || quay_base64_encode(in, len, enc) != n || n % 4 != 0
            || quay_base64_decode(enc, n, NULL, &m) != QUAY_OK
            || m != len
            || quay_base64_decode(enc, n, dec, &m) != QUAY_OK
            || m != len || memcmp(in, dec, len) != 0)
        {
            good = 0;
        }

        free(enc);
        free(dec);
    }

    ok(good, "both variants round-trip every length 0..300 exactly");

    ok(quay_base64_encode(NULL, SIZE_MAX, NULL) == 0
       && quay_base64url_encode(NULL, SIZE_MAX, NULL) == 0,
       "an encoded length that would overflow size_t measures as 0");
}


static void
test_url_strict(void)
{
    size_t         n;
    unsigned char  out[8];

    ok(url_rejects(S("Zg==")), "base64url rejects '=' padding");
    ok(url_rejects(S("Zm8=")), "base64url rejects a single '='");
    ok(url_rejects(S("Z")), "base64url rejects len % 4 == 1");
    ok(url_rejects(S("Zm9vY")), "base64url rejects len % 4 == 1 (5)");
    ok(url_rejects(S("Zh")), "base64url rejects non-zero unused bits (2)");
    ok(url_rejects(S("Zm9")), "base64url rejects non-zero unused bits (3)");
    ok(url_rejects(S("Zm+v")), "base64url rejects '+'");
    ok(url_rejects(S("Zm/v")), "base64url rejects '/'");
    ok(url_rejects(S(" Zg")), "base64url rejects a leading space");
    ok(url_rejects(S("Zm9v\n")), "base64url rejects a newline");
    ok(url_rejects(S("Zm\r\n9v")), "base64url rejects CRLF inside");
    ok(url_rejects("Zm\0v", 4), "base64url rejects a NUL byte");
    ok(url_rejects(S("Zm9\x80")), "base64url rejects a high byte");
    ok(url_rejects(S("Zm.v")), "base64url rejects '.'");

    ok(quay_base64url_decode(S("Zm8"), out, &n) == QUAY_OK && n == 2
       && memcmp(out, "fo", 2) == 0, "base64url accepts canonical \"Zm8\"");
    ok(quay_base64url_decode("", 0, NULL, &n) == QUAY_OK && n == 0,
       "base64url accepts the empty string");
    ok(quay_base64url_decode(NULL, 0, NULL, &n) == QUAY_OK && n == 0,
       "base64url accepts (NULL, 0)");
    ok(quay_base64url_decode("Zm9vYmFyXX", 8, out, &n) == QUAY_OK
       && n == 6 && memcmp(out, "foobar", 6) == 0,
       "base64url reads only len bytes (no NUL needed)");
}


static void
test_std_strict(void)
{
    size_t         n;
    unsigned char  out[16];

    ok(std_rejects(S("Zg")), "base64 rejects missing padding (2)");
    ok(std_rejects(S("Zm8")), "base64 rejects missing padding (3)");
    ok(std_rejects(S("Zg=")), "base64 rejects short padding");
    ok(std_rejects(S("Z===")), "base64 rejects three '='");
    ok(std_rejects(S("====")), "base64 rejects four '='");
    ok(std_rejects(S("Zg=A")), "base64 rejects '=' before data");
    ok(std_rejects(S("=Zm9")), "base64 rejects a leading '='");
    ok(std_rejects(S("Zg==Zg==")), "base64 rejects padding mid-string");
    ok(std_rejects(S("Zh==")), "base64 rejects non-zero unused bits (1)");
    ok(std_rejects(S("Zm9=")), "base64 rejects non-zero unused bits (2)");
    ok(std_rejects(S("Zm-_")), "base64 rejects '-' and '_'");
    ok(std_rejects(S("Zm9v\n")), "base64 rejects a trailing newline");
    ok(std_rejects(S("Zm 9")), "base64 rejects a space");
    ok(std_rejects("Zm\0v", 4), "base64 rejects a NUL byte");

    ok(quay_base64_decode(S("dXNlcjpwYXNz"), out, &n) == QUAY_OK && n == 9
       && memcmp(out, "user:pass", 9) == 0,
       "base64 decodes Basic credentials \"user:pass\"");
    ok(quay_base64_decode(NULL, 0, NULL, &n) == QUAY_OK && n == 0,
       "base64 accepts (NULL, 0)");
}


int
main(void)
{
    test_rfc4648();
    test_alphabet();
    test_roundtrip();
    test_url_strict();
    test_std_strict();

    return done_testing();
}
