/*
 * lib/quay_crypto.c: key derivation from DATABASE_SECRET_KEY, v1
 * (AES-256-GCM) round trips, Quay v0 (AES-256-CCM) decryption, tampering,
 * wrong keys and contexts, malformed values, comparison and tokens.
 *
 * Expected keys were computed once with Python 3.11 by Quay's own steps
 * (util/security/secret.py, convert_secret_key):
 *
 *   def convert(k):
 *       s = None
 *       try:
 *           s = bytearray.fromhex("{:02x}".format(int(k)))
 *       except ValueError:
 *           pass
 *       if s is None:
 *           try:
 *               s = uuid.UUID(k).bytes
 *           except ValueError:
 *               pass
 *       if s is None:
 *           s = bytearray(list(map(ord, k)))
 *       return b"".join(itertools.islice(
 *           itertools.cycle([bytes([b]) for b in s]), 32))
 *
 * The v0 and v1 vectors were made once with python3-cryptography 38
 * (Debian 12) and that key for the integer secret SECRET_INT below:
 *
 *   "v0$$" + b64encode(n13 + AESCCM(key).encrypt(n13, pt, None))
 *   "v1$$" + b64encode(n12 + AESGCM(key).encrypt(n12, pt, ad))
 *
 * with n13 = bytes(range(13)), n12 = bytes(range(100, 112)), pt one of
 * TOKEN, b"" or LONG (byte i = (i * 7 + 3) & 0xff, 1000 bytes), and ad
 * b"robotaccounttoken.token" or None.  v0 is exactly what Quay's
 * data/encryption.py _encrypt_ccm() writes.
 *
 * Independently of the library, the test has its own v0 encryptor and v1
 * decryptor on OpenSSL EVP with OpenSSL's base64 (EVP_EncodeBlock), which
 * reproduce the Python vectors and check the library's output layout.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tap.h"
#include "quay_crypto.h"


#define S(s)  (s), (sizeof(s) - 1)

#define AD_TOKEN  "robotaccounttoken.token"

#define SECRET_INT                                                          \
    "4015726943306426682267440174062698489897263246562216846472510031162"  \
    "1640999470"

#define TOKEN                                                               \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01"

#define LONG_LEN  1000


static const char  v0_token[] =
    "v0$$AAECAwQFBgcICQoLDMNMUWb4I6PQqwgq0dOeyvLaLX/wzKcsTN+F3iIMtP6W"
    "rDmYhn9csNYUHH3HfMJKckeM0M1y2khIEqC48bWsRuLfFGl1N+NflftpTZBjPDEj";

static const char  v0_empty[] =
    "v0$$AAECAwQFBgcICQoLDAdMaXeuzAeL6BcwWWM7KyA=";

static const char  v0_long[] =
    "v0$$AAECAwQFBgcICQoLDIEEAzqiQ8ms2QAozcmO4M74Ba0sFmfmsC1tV9P5SR9/"
    "eeRRR8EY/oZKeBO/ArZEclmY/vVM/maYzGR2CUtYw293mVDHpDhOgmUaFNRE0T6Y"
    "UeKgoDsE7jQaeY0lON1RMJpRpE8wfcsjD4Y5xDPiGsUa7Ci8SUuQG17vJpm5qTT2"
    "cW8KYVLLba7KfHsn+UwUqRbbxukitGkpnembgk8t5VdMZ9vxyQKd0UZvpZgh9q2/"
    "rpt9alC0znK7rxcM6wPKRFKYjsbeR+edaGa3mNO1kCP7S5Kv2xRHryS91Y9mLycR"
    "FEuqtUJ9J5AvaOimzuiHedgDblzhEEl4HFAteHvvfRXFjfYuQ859EYj9wRZKJ9ES"
    "VXhDEYRT2g5tAm8KccrnD33uxiwTXhxNZ/qFe5f/PpSVXNr5dB6RWN8FQiViP0ey"
    "JaeyS4jzq3t4F+nb1wtxE/v7r0h64Lq35Wnx46YLukfzTTDQwm8roBIM6gEqdqB0"
    "yicqR4Mpc0/h5Em811sX2wpgCJNcYY9YavDn7jrVgtq7nnjSWf42/PfYg0s/Ve/I"
    "G8A93b18jz0AWvKy44EMnb501cluw+O4MvRFrO4jXQ61HQWwUmyhuvkP1A2ATNpv"
    "hRKxqk05cZw93bWJnuiOb6JtE2txQis/jyoLiFWBKrKXm10XDJG2+TKJ4Se3YrRI"
    "F4SXzXcxKkHAnqU4C4oGY/YUTSRCOvG/BkbB3dqEk14W7UoSORK9TnClSZE+Clre"
    "9vSB2/QblQP+NrCxUwNMxjb1GQj1/zgB29tBU98RxXALhG4vbFEi/FUZN+q1cFcR"
    "nCzTXecZS7E0HUvloMgznsFN+7tiwyp+56BCD7urgQQrB/zyHYDGUK7RcfHzaJjg"
    "81hHKhzkmNDKXbhRgvORAtutLf9bmQLMEqpPwsdopqZH8LLYMHjbp01BSQkO5Q1r"
    "NV8lfjHPhAPCucbUIIlWyYfouCnSfwh7Bhqt91hLF14ryZkf7hAKTzqPG6LgLrvm"
    "ih8C8GRkTLnep08jUzA3mswiRtwN4bVcSTwnIjGyEtRZNsLkpPdPlkHcpSlKJLvB"
    "subDCsXxclc8ZP4W7WF7oSBtCLQPrEGERI+bwrfUlKULRwgAbEO2ZEYN5A1oQFPP"
    "N3DNoBDHZWwV2Ztjhed3yzMoOC+IsReM5ziP1Hxd5CLwbvTRa1JZKGj80VAH8dcH"
    "PNpaqlSjPUAwR3nXpDaQ21VZrlbdPFI39pJwtGBwbLxkr043jPSkfXRDYLE4w+Nn"
    "PCx8wPKrlV4tvOdzDQl9SoNkRVE7CWEn60jYn/iO9Id55706lb+yRaNXx3uyPiNm"
    "xE3kyCTwfMJKn2/ZkDNRKYAVDAwjT56U";

static const char  v1_token[] =
    "v1$$ZGVmZ2hpamtsbW5vydZXj36Cs/qihzzRv2ufM6FxCTw5H/0HpE85DHIa4mfC"
    "Vp5VJXhP33gkV90WfLC4oJ9i/boH8SMmprvAbKXgKeJqH2dGKoaPYpEeKQjza4c=";

static const char  v1_empty[] =
    "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==";

static const char  v1_long[] =
    "v1$$ZGVmZ2hpamtsbW5vi54F0yTi2YbQjz7NpXu1D4NZ2+Dj3zf7Vqew/YfnA44X"
    "i1eUmzwBjyZAOaVoCL64votMxYQj3/P4YnU4klFlpEgiMLMimd3QAkicuBdHNnSB"
    "TRPDihofvqkmDbJ0J2Glds5w2m2f7kZM1S6ccDT9I0lT3Dz7e+i1DQ0dwmAb9Ue9"
    "UOI2vo0CpIkrHamxHmx9u03LgkH0nkmSB0Ug0Yg8N5Aec9DKSG/ZfyDX7laKNZk7"
    "VUFf11QjpSAmRCC4fa0ev2YJscIG6BcBB/UUFv9AxHla87JrI7751dgEdCp2H1QS"
    "beWRToXkzhIDG3RYNCky3+l0h97EZzIYT5sSLK7NaRswi2/i4Z6rdnCRwVp+2HNj"
    "SaSsWXv+/voMeEQwL8R7vVGOPE6EQEvla7nBsb1vMCwy4Njuqa5zWEoLQfSzPm8n"
    "mKddAKCDp6ofY5XEK/D8f6W3qAAF4j+7r5v3TaeNIghd92aSTh3IZtbB8HnPQc7U"
    "sbm04HJQGMO5pU5MCSxU1SFsst6mjv2ePm7wKH3Akv0Ep3RDexBCxEJt3dfzrRKI"
    "HQAyvr5RtMsGFtTH/jzrCy1wZNUSqwHIjv97fkP8XOgQz+Tqr+g+AwgcQYBdpy0c"
    "+3Pw/zJwo7j34d7RHC2Jzf6AaPskuX70N44mOuIbh8AS0tgLkrF9Z4/6O7GW4eB9"
    "UhIB7+WBk++dgrPXSp+NcMNzE2RMfEwWT1bhwHsCciRlwgcaFLqSimNhlkkLnzku"
    "CA7yQK8plcWRtJgMV+exXZnI4V5BvUrtoTtQY96DHSFqgJPVLfYWIf5XbfIqWWd5"
    "XTAHu8SpQA1Y05abKHecfTzttLsd/jzp6u5E2pgX/uQyrUoSc60VhMEb+/eayGyh"
    "6Biy7o0TcR78hGPkp25UYhPWHEeZXqp0VFFGnJ6yzYjoQSCEQkbTBd3HWmrT2nGX"
    "Iqg5qL9aDcuky2o5R9/DDSUuo2tr+OVuM77CDfm46hzzkjD+Bc8+Y073ciBlna76"
    "vyiB5T4gSog7g+Z8NzjYe8SjfeftbrP5zZtEK6pf64wX2qU22W/Lni+5sMbirM6A"
    "cvb5iCBhcWvtO8hMPIHlGACWwG+cM/eRbVXzWDAnqU8Ka/mxluow8ajR7b1Zyh9Z"
    "SJKzP6KfY0cyXdrc65RRhuGE1XDmyeDf7feyAoLyWS5OepnC3Q7u/6ciwzW+IMfb"
    "xuVC7sa0JOPLUVMIHDgbmq+8DP4eGAxXktVEdP6Fn6PM1ncpiJ9AS3aKt6C6N/Ls"
    "FNlejt2RyQ2MZUBjgK82/c3i8XQTRiEyoWdtucjj2HMT/0K1BkDH/GL7xgYIoiks"
    "EE813qqoRIGY0hB9ONdWcTawzuAppfc=";


typedef struct {
    const char  *name;
    const char  *secret;
    size_t       len;
    const char  *key_hex;      /* NULL: derivation must fail */
} key_case_t;

#define KC(name, s, hex)  { name, s, sizeof(s) - 1, hex }

static const key_case_t  key_cases[] = {
    KC("integer secret (Quay docs style)", SECRET_INT,
       "58c83583c264141766e8af68948577cd95c4fd05fcf624384df4b72b96f5522e"),
    KC("integer 42 is one byte 0x2a, cycled", "42",
       "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a"),
    KC("integer 0 is one 0x00 byte", "0",
       "0000000000000000000000000000000000000000000000000000000000000000"),
    KC("integer -0 is 0", "-0",
       "0000000000000000000000000000000000000000000000000000000000000000"),
    KC("integer 5 is \"05\"", "5",
       "0505050505050505050505050505050505050505050505050505050505050505"),
    KC("integer 0042 is 42", "0042",
       "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a"),
    KC("integer with odd hex (256 = 100) falls back to the string", "256",
       "3235363235363235363235363235363235363235363235363235363235363235"),
    KC("negative integer falls back to the string", "-5",
       "2d352d352d352d352d352d352d352d352d352d352d352d352d352d352d352d35"),
    KC("integer with whitespace and an underscore", "  4_660\n",
       "1234123412341234123412341234123412341234123412341234123412341234"),
    KC("integer with a plus sign", "+4660",
       "1234123412341234123412341234123412341234123412341234123412341234"),
    KC("double underscore is not an integer", "1__0",
       "315f5f30315f5f30315f5f30315f5f30315f5f30315f5f30315f5f30315f5f30"),
    KC("Arabic-Indic digits are an integer",
       "\xd9\xa4\xd9\xa6\xd9\xa6\xd9\xa0",
       "1234123412341234123412341234123412341234123412341234123412341234"),
    KC("fullwidth digits are an integer",
       "\xef\xbc\x94\xef\xbc\x96\xef\xbc\x96\xef\xbc\x90",
       "1234123412341234123412341234123412341234123412341234123412341234"),
    KC("Unicode spaces around an integer", "\xc2\xa0" "4660\xe3\x80\x80",
       "1234123412341234123412341234123412341234123412341234123412341234"),
    KC("integer of 20 digits", "12345678901234567890",
       "ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2"),
    KC("UUID", "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID in upper case", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID in braces", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID in double braces", "{{6ba7b810-9dad-11d1-80b4-00c04fd430c8}}",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID URN", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID without dashes", "6ba7b8109dad11d180b400c04fd430c8",
       "6ba7b8109dad11d180b400c04fd430c86ba7b8109dad11d180b400c04fd430c8"),
    KC("UUID with a 0x prefix in its 32 characters",
       "0x6ba7b8109dad11d180b400c04fd430",
       "006ba7b8109dad11d180b400c04fd430006ba7b8109dad11d180b400c04fd430"),
    KC("UUID with underscores in its 32 characters",
       "6ba7b810_9dad_11d1_80b4_00c04fd4",
       "00006ba7b8109dad11d180b400c04fd400006ba7b8109dad11d180b400c04fd4"),
    KC("32 decimal digits with odd hex are a UUID",
       "99999999999999999999999999999999",
       "9999999999999999999999999999999999999999999999999999999999999999"),
    KC("string", "my-secret",
       "6d792d7365637265746d792d7365637265746d792d7365637265746d792d7365"),
    KC("one character, cycled", "a",
       "6161616161616161616161616161616161616161616161616161616161616161"),
    KC("string longer than 32 is cut",
       "0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
       "303132333435363738396162636465666768696a6b6c6d6e6f70717273747576"),
    KC("Latin-1 characters are their code points",
       "p\xc3\xa4ssw\xc3\xb6rd",
       "70e4737377f6726470e4737377f6726470e4737377f6726470e4737377f67264"),
    KC("only spaces", "   ",
       "2020202020202020202020202020202020202020202020202020202020202020"),
    KC("NUL byte inside", "\0abc",
       "0061626300616263006162630061626300616263006162630061626300616263"),
    KC("a lone minus", "-",
       "2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d"),
    KC("0x1F is a string (not base 10)", "0x1F",
       "3078314630783146307831463078314630783146307831463078314630783146"),
    KC("1e5 is a string", "1e5",
       "3165353165353165353165353165353165353165353165353165353165353165"),
    KC("CJK characters: Quay fails, so do we", "\xe5\xaf\x86\xe7\xa0\x81",
       NULL),
    KC("U+0100 under the string rule fails", "p\xc3\xa4ss\xc4\x80", NULL),
    KC("invalid UTF-8 fails", "abc\xff", NULL),
    KC("overlong UTF-8 fails", "\xc0\x80", NULL),
    KC("UTF-8 surrogate fails", "\xed\xa0\x80", NULL),
    KC("truncated UTF-8 fails", "abc\xe2\x82", NULL),
};


static int
hex_decode(const char *hex, unsigned char *out, size_t outlen)
{
    size_t        i;
    unsigned int  b;

    if (strlen(hex) != outlen * 2) {
        return -1;
    }

    for (i = 0; i < outlen; i++) {
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            return -1;
        }
        out[i] = (unsigned char) b;
    }

    return 0;
}


static void
long_plaintext(unsigned char *p)
{
    size_t  i;

    for (i = 0; i < LONG_LEN; i++) {
        p[i] = (unsigned char) ((i * 7 + 3) & 0xff);
    }
}


static void
test_key_vectors(void)
{
    int            rc;
    size_t         i;
    char           name[160];
    unsigned char  key[QUAY_CRYPTO_KEY_LEN], want[QUAY_CRYPTO_KEY_LEN];
    quay_err_t     err;

    for (i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const key_case_t  *c = &key_cases[i];

        memset(key, 0xaa, sizeof(key));
        rc = quay_crypto_key_derive(c->secret, c->len, key, &err);

        if (c->key_hex == NULL) {
            (void) snprintf(name, sizeof(name), "key: %s (EINVAL)",
                            c->name);
            is_int(rc, QUAY_EINVAL, name);
            memset(want, 0, sizeof(want));
            (void) snprintf(name, sizeof(name), "key: %s (key zeroed)",
                            c->name);
            ok(memcmp(key, want, sizeof(key)) == 0, name);
            continue;
        }

        if (hex_decode(c->key_hex, want, sizeof(want)) != 0) {
            ok(0, "bad hex in test table");
            continue;
        }

        (void) snprintf(name, sizeof(name), "key: %s", c->name);
        ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0, name);
    }
}


static void
test_key_edges(void)
{
    int            rc;
    size_t         i, n;
    char          *s;
    unsigned char  key[QUAY_CRYPTO_KEY_LEN], want[QUAY_CRYPTO_KEY_LEN];
    quay_err_t     err;

    rc = quay_crypto_key_derive("", 0, key, &err);
    is_int(rc, QUAY_EINVAL, "key: empty secret is EINVAL");
    ok(strstr(err.msg, "empty") != NULL, "key: message says empty");

    rc = quay_crypto_key_derive(NULL, 0, key, NULL);
    is_int(rc, QUAY_EINVAL, "key: NULL secret is EINVAL (err NULL)");

    s = malloc(QUAY_CRYPTO_MAX_SECRET + 1 + 8599);
    if (s == NULL) {
        ok(0, "malloc");
        return;
    }

    memset(s, 'x', QUAY_CRYPTO_MAX_SECRET + 1);
    rc = quay_crypto_key_derive(s, QUAY_CRYPTO_MAX_SECRET + 1, key, &err);
    is_int(rc, QUAY_ERANGE, "key: secret over the maximum is ERANGE");

    rc = quay_crypto_key_derive(s, QUAY_CRYPTO_MAX_SECRET, key, &err);
    memset(want, 'x', sizeof(want));
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: secret of exactly the maximum works");

    /* Python 3.11+ int() refuses more than 4300 digits: "9" * 4300 is an
     * integer (even hex), "9" * 4301 (also even hex) is a string */
    memset(s, '9', 4301);
    (void) hex_decode("1392bd7c2a1aa84a72e2056d3b17f01c"
                      "b08800b8238bf7ce68df91012d37248b", want, 32);
    rc = quay_crypto_key_derive(s, 4300, key, &err);
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: 4300-digit integer uses the integer rule");

    rc = quay_crypto_key_derive(s, 4301, key, &err);
    memset(want, '9', sizeof(want));
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: 4301-digit integer is over Python's limit: string rule");

    /* underscores do not count as digits: "9_9_..._9" with 4300 nines */
    n = 0;
    for (i = 0; i < 4300; i++) {
        if (i > 0) {
            s[n++] = '_';
        }
        s[n++] = '9';
    }
    (void) hex_decode("1392bd7c2a1aa84a72e2056d3b17f01c"
                      "b08800b8238bf7ce68df91012d37248b", want, 32);
    rc = quay_crypto_key_derive(s, n, key, &err);
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: underscores do not count towards the digit limit");

    /* "8" * 4300: the other even-hex case Python computed */
    memset(s, '8', 4300);
    (void) hex_decode("1165fdc3b3a5eaecd7e55a2834870e52"
                      "64071d1574ee319b07e32b8f44a2cb26", want, 32);
    rc = quay_crypto_key_derive(s, 4300, key, &err);
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: \"8\" * 4300 matches Python");

    /* "1" * 4300 has odd hex: string rule */
    memset(s, '1', 4300);
    memset(want, '1', sizeof(want));
    rc = quay_crypto_key_derive(s, 4300, key, &err);
    ok(rc == QUAY_OK && memcmp(key, want, sizeof(key)) == 0,
       "key: \"1\" * 4300 (odd hex) uses the string rule");

    free(s);
}


/* ---- an independent v0 encryptor and v1 opener on EVP and OpenSSL's
 * base64, used to cross-check the library ---- */

static size_t
ref_b64_encode(const unsigned char *in, size_t len, char *out)
{
    return (size_t) EVP_EncodeBlock((unsigned char *) out, in, (int) len);
}


static int
ref_b64_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen)
{
    int  n;

    if (len % 4 != 0) {
        return -1;
    }

    n = EVP_DecodeBlock(out, (const unsigned char *) in, (int) len);
    if (n < 0) {
        return -1;
    }

    if (len >= 1 && in[len - 1] == '=') {
        n--;
    }
    if (len >= 2 && in[len - 2] == '=') {
        n--;
    }

    *outlen = (size_t) n;

    return 0;
}


/* Quay's _encrypt_ccm(): "v0$$" + b64(nonce || ct || tag); out is
 * malloc'ed. */
static char *
ref_v0_encrypt(const unsigned char *key, const unsigned char *nonce,
    const unsigned char *pt, size_t len)
{
    int              outl;
    char            *out;
    unsigned char   *bin;
    EVP_CIPHER_CTX  *ctx;

    bin = malloc(13 + len + 16);
    out = malloc(4 + (13 + len + 16 + 2) / 3 * 4 + 1);
    ctx = EVP_CIPHER_CTX_new();

    if (bin == NULL || out == NULL || ctx == NULL) {
        goto fail;
    }

    memcpy(bin, nonce, 13);

    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ccm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 13, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, NULL) != 1
        || EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1
        || EVP_EncryptUpdate(ctx, NULL, &outl, NULL, (int) len) != 1
        || EVP_EncryptUpdate(ctx, bin + 13, &outl, len ? pt : bin,
                             (int) len) != 1
        || EVP_EncryptFinal_ex(ctx, bin + 13 + len, &outl) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
                               bin + 13 + len) != 1)
    {
        goto fail;
    }

    memcpy(out, "v0$$", 4);
    out[4 + ref_b64_encode(bin, 13 + len + 16, out + 4)] = '\0';

    EVP_CIPHER_CTX_free(ctx);
    free(bin);
    return out;

fail:

    EVP_CIPHER_CTX_free(ctx);
    free(bin);
    free(out);
    return NULL;
}


/* Opens a v1 value independently; returns the plaintext length or -1. */
static long
ref_v1_decrypt(const unsigned char *key, const char *text,
    const void *ad, size_t ad_len, unsigned char *out)
{
    int              outl;
    long             rc;
    size_t           n, tlen;
    unsigned char   *bin;
    EVP_CIPHER_CTX  *ctx;

    tlen = strlen(text);
    if (tlen < 4 || memcmp(text, "v1$$", 4) != 0) {
        return -1;
    }

    bin = malloc(tlen);
    ctx = EVP_CIPHER_CTX_new();
    rc = -1;

    if (bin == NULL || ctx == NULL
        || ref_b64_decode(text + 4, tlen - 4, bin, &n) != 0 || n < 28)
    {
        goto done;
    }

    n -= 28;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, bin) != 1
        || (ad_len > 0
            && EVP_DecryptUpdate(ctx, NULL, &outl, ad, (int) ad_len) != 1)
        || (n > 0
            && EVP_DecryptUpdate(ctx, out, &outl, bin + 12, (int) n) != 1)
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16,
                               bin + 12 + n) != 1
        || EVP_DecryptFinal_ex(ctx, out + n, &outl) != 1)
    {
        goto done;
    }

    rc = (long) n;

done:

    EVP_CIPHER_CTX_free(ctx);
    free(bin);
    return rc;
}


static void
secret_key(unsigned char *key)
{
    quay_err_t  err;

    if (quay_crypto_key_derive(S(SECRET_INT), key, &err) != QUAY_OK) {
        ok(0, "derive the test key");
    }
}


static int
decrypts_to(const unsigned char *key, const char *text, const char *ad,
    const unsigned char *want, size_t want_len)
{
    int            rc;
    size_t         n;
    unsigned char  out[LONG_LEN + 64];
    quay_err_t     err;

    rc = quay_crypto_decrypt(key, text, strlen(text), ad,
                             ad != NULL ? strlen(ad) : 0, out, sizeof(out),
                             &n, &err);

    return rc == QUAY_OK && n == want_len && memcmp(out, want, n) == 0
           && out[n] == '\0';
}


static void
test_vectors(void)
{
    char           *v0;
    unsigned char   key[QUAY_CRYPTO_KEY_LEN], lng[LONG_LEN];
    unsigned char   n13[13];
    size_t          i;

    secret_key(key);
    long_plaintext(lng);

    for (i = 0; i < 13; i++) {
        n13[i] = (unsigned char) i;
    }

    ok(decrypts_to(key, v0_token, NULL, (const unsigned char *) S(TOKEN)),
       "v0 vector (Quay AES-CCM): 64-character robot token");
    ok(decrypts_to(key, v0_empty, NULL, (const unsigned char *) "", 0),
       "v0 vector: empty plaintext");
    ok(decrypts_to(key, v0_long, NULL, lng, LONG_LEN),
       "v0 vector: 1000 bytes (several base64 chunks)");
    ok(decrypts_to(key, v0_token, AD_TOKEN, (const unsigned char *) S(TOKEN)),
       "v0 vector: an AD is ignored (Quay has none)");

    ok(decrypts_to(key, v1_token, AD_TOKEN, (const unsigned char *) S(TOKEN)),
       "v1 vector (python AESGCM): token with AD");
    ok(decrypts_to(key, v1_empty, AD_TOKEN, (const unsigned char *) "", 0),
       "v1 vector: empty plaintext with AD");
    ok(decrypts_to(key, v1_long, NULL, lng, LONG_LEN),
       "v1 vector: 1000 bytes without AD");
    ok(!decrypts_to(key, v1_token, NULL, (const unsigned char *) S(TOKEN)),
       "v1 vector: missing AD fails");
    ok(!decrypts_to(key, v1_long, "x", lng, LONG_LEN),
       "v1 vector: unexpected AD fails");

    /* the test's own encryptor reproduces the Python vectors */
    v0 = ref_v0_encrypt(key, n13, (const unsigned char *) S(TOKEN));
    ok(v0 != NULL && strcmp(v0, v0_token) == 0,
       "reference CCM encryptor reproduces the python v0 token vector");
    free(v0);

    v0 = ref_v0_encrypt(key, n13, (const unsigned char *) "", 0);
    ok(v0 != NULL && strcmp(v0, v0_empty) == 0,
       "reference CCM encryptor reproduces the python v0 empty vector");
    free(v0);

    v0 = ref_v0_encrypt(key, n13, lng, LONG_LEN);
    ok(v0 != NULL && strcmp(v0, v0_long) == 0,
       "reference CCM encryptor reproduces the python v0 long vector");
    free(v0);
}


static void
test_v0_roundtrips(void)
{
    int             good, rc;
    char           *v0;
    size_t          lens[] = { 0, 1, 2, 3, 15, 16, 17, 64, 383, 384, 385,
                               1000, 4096, 65535 };
    size_t          i, n;
    unsigned char   key[QUAY_CRYPTO_KEY_LEN], nonce[13];
    unsigned char  *pt, *out;
    quay_err_t      err;

    pt = malloc(65536);
    out = malloc(65537);
    if (pt == NULL || out == NULL) {
        ok(0, "malloc");
        free(pt);
        free(out);
        return;
    }

    good = 1;

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        if (RAND_bytes(key, sizeof(key)) != 1
            || RAND_bytes(nonce, sizeof(nonce)) != 1
            || RAND_bytes(pt, 65536) != 1)
        {
            good = 0;
            break;
        }

        v0 = ref_v0_encrypt(key, nonce, pt, lens[i]);
        if (v0 == NULL) {
            good = 0;
            break;
        }

        rc = quay_crypto_decrypt(key, v0, strlen(v0), NULL, 0, out, 65537,
                                 &n, &err);
        if (rc != QUAY_OK || n != lens[i] || memcmp(out, pt, n) != 0) {
            printf("# v0 length %zu: rc %d\n", lens[i], rc);
            good = 0;
        }

        free(v0);
    }

    ok(good, "v0 values of 0 to 65535 bytes from a reference encryptor "
       "decrypt");

    free(pt);
    free(out);
}


static void
test_v1_roundtrips(void)
{
    int             good, indep, rc;
    long            r;
    size_t          lens[] = { 0, 1, 2, 3, 4, 15, 16, 17, 63, 64, 65, 383,
                               384, 385, 386, 767, 768, 1000, 4096,
                               65536, QUAY_CRYPTO_MAX_PLAINTEXT };
    size_t          i, n, w, need;
    char           *text, a[QUAY_CRYPTO_ENCRYPTED_LEN(64) + 1];
    char            b[QUAY_CRYPTO_ENCRYPTED_LEN(64) + 1];
    unsigned char   key[QUAY_CRYPTO_KEY_LEN];
    unsigned char  *pt, *out;
    quay_err_t      err;

    pt = malloc(QUAY_CRYPTO_MAX_PLAINTEXT);
    out = malloc(QUAY_CRYPTO_MAX_PLAINTEXT + 1);
    text = malloc(QUAY_CRYPTO_ENCRYPTED_LEN(QUAY_CRYPTO_MAX_PLAINTEXT) + 1);
    if (pt == NULL || out == NULL || text == NULL) {
        ok(0, "malloc");
        goto done;
    }

    good = 1;
    indep = 1;

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        if (RAND_bytes(key, sizeof(key)) != 1
            || RAND_bytes(pt, (int) lens[i]) != 1)
        {
            good = 0;
            break;
        }

        need = 0;
        rc = quay_crypto_encrypt(key, pt, lens[i], S(AD_TOKEN), NULL, 0,
                                 &need, &err);
        if (rc != QUAY_OK || need != QUAY_CRYPTO_ENCRYPTED_LEN(lens[i])) {
            good = 0;
        }

        rc = quay_crypto_encrypt(key, pt, lens[i], S(AD_TOKEN), text,
                                 need + 1, &w, &err);
        if (rc != QUAY_OK || w != need || strlen(text) != need
            || memcmp(text, "v1$$", 4) != 0)
        {
            printf("# encrypt %zu: rc %d\n", lens[i], rc);
            good = 0;
            continue;
        }

        rc = quay_crypto_decrypt(key, text, w, S(AD_TOKEN), NULL, 0, &n,
                                 &err);
        if (rc != QUAY_OK || n != lens[i]) {
            good = 0;
        }

        rc = quay_crypto_decrypt(key, text, w, S(AD_TOKEN), out, n + 1, &n,
                                 &err);
        if (rc != QUAY_OK || n != lens[i] || memcmp(out, pt, n) != 0
            || out[n] != '\0')
        {
            printf("# decrypt %zu: rc %d\n", lens[i], rc);
            good = 0;
        }

        r = ref_v1_decrypt(key, text, S(AD_TOKEN), out);
        if (r != (long) lens[i] || memcmp(out, pt, lens[i]) != 0) {
            indep = 0;
        }
    }

    ok(good, "v1 round trips from 0 bytes to QUAY_CRYPTO_MAX_PLAINTEXT, "
       "sizes as measured");
    ok(indep, "v1 values open with an independent GCM decryptor "
       "(layout nonce || ct || tag, AD authenticated)");

    /* a fresh nonce every time */
    rc = quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), a, sizeof(a), &w,
                             &err);
    rc |= quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), b, sizeof(b), &w,
                              &err);
    ok(rc == QUAY_OK && strcmp(a, b) != 0,
       "two encryptions of one token differ");
    is_int(strlen(a), 128, "a 64-character token takes 128 characters");

    /* AD may be empty (NULL, 0) */
    rc = quay_crypto_encrypt(key, S(TOKEN), NULL, 0, a, sizeof(a), &w,
                             &err);
    ok(rc == QUAY_OK && decrypts_to(key, a, NULL,
                                    (const unsigned char *) S(TOKEN)),
       "empty AD round trip");
    ok(decrypts_to(key, a, "", (const unsigned char *) S(TOKEN)),
       "empty AD given as \"\" is the same as none");

    rc = quay_crypto_encrypt(key, pt, QUAY_CRYPTO_MAX_PLAINTEXT + 1, NULL, 0,
                             NULL, 0, &w, &err);
    is_int(rc, QUAY_ERANGE, "encrypt over the maximum is ERANGE");

done:

    free(pt);
    free(out);
    free(text);
}


static void
test_buffers(void)
{
    int            rc;
    size_t         w, need;
    char           text[QUAY_CRYPTO_ENCRYPTED_LEN(64) + 1];
    unsigned char  key[QUAY_CRYPTO_KEY_LEN], out[65];
    quay_err_t     err;

    secret_key(key);

    rc = quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), NULL, 0, &need,
                             &err);
    ok(rc == QUAY_OK && need == 128, "encrypt measures 128");

    memset(text, 'z', sizeof(text));
    rc = quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), text, need, &w,
                             &err);
    ok(rc == QUAY_ERANGE && w == need && text[0] == '\0',
       "encrypt with no room for the NUL is ERANGE, reports the size");

    rc = quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), text, need + 1, &w,
                             &err);
    ok(rc == QUAY_OK && w == need && text[need] == '\0',
       "encrypt with exactly size + 1 works");

    rc = quay_crypto_encrypt(key, NULL, 5, NULL, 0, text, sizeof(text), &w,
                             &err);
    is_int(rc, QUAY_EINVAL, "encrypt of NULL with a length is EINVAL");

    rc = quay_crypto_encrypt(key, S(TOKEN), NULL, 3, text, sizeof(text), &w,
                             &err);
    is_int(rc, QUAY_EINVAL, "encrypt with NULL AD of a length is EINVAL");

    rc = quay_crypto_decrypt(key, S(v0_token), NULL, 0, NULL, 0, &w, &err);
    ok(rc == QUAY_OK && w == 64, "decrypt measures 64 (v0)");

    rc = quay_crypto_decrypt(key, S(v1_token), NULL, 0, NULL, 0, &w, &err);
    ok(rc == QUAY_OK && w == 64,
       "decrypt measure checks the format, not the tag");

    rc = quay_crypto_decrypt(key, S(v0_token), NULL, 0, out, 64, &w, &err);
    ok(rc == QUAY_ERANGE && w == 64, "decrypt with no room for the NUL is "
       "ERANGE, reports the size");

    rc = quay_crypto_decrypt(key, S(v0_token), NULL, 0, out, 65, &w, &err);
    ok(rc == QUAY_OK && w == 64 && out[64] == '\0'
       && memcmp(out, TOKEN, 64) == 0, "decrypt with exactly size + 1");

    rc = quay_crypto_decrypt(key, NULL, 5, NULL, 0, out, 65, &w, &err);
    is_int(rc, QUAY_EINVAL, "decrypt of NULL with a length is EINVAL");

    rc = quay_crypto_decrypt(key, S(v0_token), NULL, 0, out, 65, NULL, &err);
    is_int(rc, QUAY_EINVAL, "decrypt without written is EINVAL");
}


static int
all_zero(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }

    return 1;
}


/*
 * Flips each bit position 0x01 and 0x80 of every byte of the decoded
 * value (nonce, ciphertext, tag) and expects QUAY_ERROR with a wiped
 * buffer; then changes every base64 character and expects a failure.
 */
static void
tamper(const char *name, const unsigned char *key, const char *value,
    const char *ad, size_t ptlen)
{
    int             good, wiped, quiet, rc;
    size_t          vlen, blen, i, k, w;
    char           *text, msg[200];
    unsigned char  *bin, out[LONG_LEN + 8];
    quay_err_t      err;

    vlen = strlen(value);
    bin = malloc(vlen);
    text = malloc(vlen + 8);
    if (bin == NULL || text == NULL
        || ref_b64_decode(value + 4, vlen - 4, bin, &blen) != 0)
    {
        ok(0, "tamper setup");
        free(bin);
        free(text);
        return;
    }

    good = 1;
    wiped = 1;
    quiet = 1;

    for (i = 0; i < blen; i++) {
        for (k = 0; k < 2; k++) {
            bin[i] ^= k == 0 ? 0x01 : 0x80;

            memcpy(text, value, 4);
            text[4 + ref_b64_encode(bin, blen, text + 4)] = '\0';

            memset(out, 0x5a, sizeof(out));
            err.msg[0] = '\0';
            rc = quay_crypto_decrypt(key, text, strlen(text), ad,
                                     ad ? strlen(ad) : 0, out, sizeof(out),
                                     &w, &err);
            if (rc != QUAY_ERROR || w != 0) {
                good = 0;
            }
            if (!all_zero(out, ptlen > 0 ? ptlen : 1)) {
                wiped = 0;
            }
            if (strstr(err.msg, "ABCDEFGH") != NULL) {
                quiet = 0;
            }

            bin[i] ^= k == 0 ? 0x01 : 0x80;
        }
    }

    (void) snprintf(msg, sizeof(msg),
                    "%s: every flipped bit of nonce, ciphertext and tag "
                    "fails with QUAY_ERROR", name);
    ok(good, msg);
    (void) snprintf(msg, sizeof(msg),
                    "%s: a failed decryption leaves no plaintext", name);
    ok(wiped, msg);
    (void) snprintf(msg, sizeof(msg),
                    "%s: error messages never quote the plaintext", name);
    ok(quiet, msg);

    /* character level: replacing any base64 character fails somehow */
    good = 1;
    for (i = 4; i < vlen; i++) {
        memcpy(text, value, vlen + 1);
        text[i] = text[i] == 'A' ? 'B' : 'A';
        rc = quay_crypto_decrypt(key, text, vlen, ad, ad ? strlen(ad) : 0,
                                 out, sizeof(out), &w, &err);
        if (rc == QUAY_OK) {
            good = 0;
        }
    }

    (void) snprintf(msg, sizeof(msg),
                    "%s: every changed base64 character fails", name);
    ok(good, msg);

    free(bin);
    free(text);
}


static void
test_tamper(void)
{
    char           v1[QUAY_CRYPTO_ENCRYPTED_LEN(64) + 1];
    size_t         w;
    unsigned char  key[QUAY_CRYPTO_KEY_LEN];
    quay_err_t     err;

    secret_key(key);

    tamper("v1 token", key, v1_token, AD_TOKEN, 64);
    tamper("v1 empty", key, v1_empty, AD_TOKEN, 0);
    tamper("v0 token", key, v0_token, NULL, 64);
    tamper("v0 empty", key, v0_empty, NULL, 0);

    if (quay_crypto_encrypt(key, S(TOKEN), NULL, 0, v1, sizeof(v1), &w,
                            &err) == QUAY_OK)
    {
        tamper("v1 fresh, no AD", key, v1, NULL, 64);
    }
}


static void
test_wrong_key_and_ad(void)
{
    int            rc;
    size_t         w, i;
    char           v1[QUAY_CRYPTO_ENCRYPTED_LEN(64) + 1];
    unsigned char  key[QUAY_CRYPTO_KEY_LEN], bad[QUAY_CRYPTO_KEY_LEN];
    unsigned char  out[65];
    char           hex[2 * QUAY_CRYPTO_KEY_LEN + 1];
    quay_err_t     err;

    secret_key(key);
    memcpy(bad, key, sizeof(bad));
    bad[31] ^= 0x01;

    rc = quay_crypto_encrypt(key, S(TOKEN), S(AD_TOKEN), v1, sizeof(v1), &w,
                             &err);
    is_int(rc, QUAY_OK, "encrypt the token");

    rc = quay_crypto_decrypt(bad, v1, w, S(AD_TOKEN), out, sizeof(out), &w,
                             &err);
    is_int(rc, QUAY_ERROR, "v1 with a key one bit off fails");

    for (i = 0; i < QUAY_CRYPTO_KEY_LEN; i++) {
        (void) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    }
    ok(strstr(err.msg, hex) == NULL && strstr(err.msg, TOKEN) == NULL
       && memmem(err.msg, strlen(err.msg), key, 8) == NULL,
       "the error names neither key nor plaintext");
    ok(strstr(err.msg, "authentication failed") != NULL,
       "the error says authentication failed");

    rc = quay_crypto_decrypt(bad, S(v0_token), NULL, 0, out, sizeof(out),
                             &w, &err);
    is_int(rc, QUAY_ERROR, "v0 with a key one bit off fails");

    rc = quay_crypto_decrypt(key, v1, strlen(v1), S("accesstoken.token_code"),
                             out, sizeof(out), &w, &err);
    is_int(rc, QUAY_ERROR, "v1 under another column's AD fails");

    rc = quay_crypto_decrypt(key, v1, strlen(v1),
                             S("robotaccounttoken.toke"), out, sizeof(out),
                             &w, &err);
    is_int(rc, QUAY_ERROR, "v1 under a prefix of its AD fails");

    rc = quay_crypto_decrypt(key, v1, strlen(v1), NULL, 0, out, sizeof(out),
                             &w, &err);
    is_int(rc, QUAY_ERROR, "v1 without its AD fails");

    rc = quay_crypto_decrypt(key, v1, strlen(v1), S(AD_TOKEN), out,
                             sizeof(out), &w, &err);
    ok(rc == QUAY_OK && w == 64 && memcmp(out, TOKEN, 64) == 0,
       "v1 with its AD decrypts");
}


static void
test_malformed(void)
{
    int            rc;
    size_t         i, w;
    char           buf[256];
    unsigned char  key[QUAY_CRYPTO_KEY_LEN], out[256], zeros[64];
    quay_err_t     err;

    static const char  *versions[] = {
        "", "v", "v1", "v1$", "v2$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",
        "V1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",
        "v1$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",
        "v10$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",
        " v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01",
    };

    static const char  *invalid[] = {
        "v1$$",                                   /* nothing */
        "v0$$",
        "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag=",   /* len % 4 */
        "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0a",
        "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==\n",
        "v1$$ZGVmZ2hpamtsbW5v /pdnR7QNdf1/LIsEJ7V0ag=",
        "v1$$ZGVmZ2hpamtsbW5v_pdnR7QNdf1_LIsEJ7V0ag==",  /* base64url */
        "v1$$ZGVm=2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ag==",  /* '=' inside */
        "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7V0ah==",  /* unused bits */
        "v1$$ZGVmZ2hpamtsbW5v/pdnR7QNdf1/LIsEJ7U=",      /* 26 bytes */
        "v0$$AAECAwQFBgcICQoLDAdMaXeuzAeL6BcwWWM7Kw==",  /* 28 bytes, v0 */
    };

    secret_key(key);
    memset(zeros, 0, sizeof(zeros));

    for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        rc = quay_crypto_decrypt(key, versions[i], strlen(versions[i]),
                                 NULL, 0, out, sizeof(out), &w, &err);
        (void) snprintf(buf, sizeof(buf), "unknown version \"%.12s\" is "
                        "QUAY_EVERSION", versions[i]);
        is_int(rc, QUAY_EVERSION, buf);
    }

    ok(strstr(err.msg, "ABCDEFGHIJ") == NULL,
       "the version error does not quote the value");

    is_int(quay_crypto_version(S(v1_token)), 1, "quay_crypto_version: v1");
    is_int(quay_crypto_version(S(v0_token)), 0, "quay_crypto_version: v0");
    is_int(quay_crypto_version(S("v2$$AAAA")), QUAY_EVERSION,
           "quay_crypto_version: v2");
    is_int(quay_crypto_version(NULL, 0), QUAY_EVERSION,
           "quay_crypto_version: NULL");

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        rc = quay_crypto_decrypt(key, invalid[i], strlen(invalid[i]), NULL,
                                 0, out, sizeof(out), &w, &err);
        (void) snprintf(buf, sizeof(buf), "malformed value %zu is "
                        "QUAY_EINVAL", i);
        is_int(rc, QUAY_EINVAL, buf);
    }

    /* the shortest well-formed values: 28 bytes (v1), 29 bytes (v0) with
     * a wrong tag are an authentication failure, not a format error */
    memset(out, 0, 29);
    memcpy(buf, "v1$$", 4);
    buf[4 + EVP_EncodeBlock((unsigned char *) buf + 4, out, 28)] = '\0';
    rc = quay_crypto_decrypt(key, buf, strlen(buf), NULL, 0, out,
                             sizeof(out), &w, &err);
    is_int(rc, QUAY_ERROR, "v1 of 28 zero bytes fails authentication");

    memset(out, 0, 29);
    memcpy(buf, "v0$$", 4);
    buf[4 + EVP_EncodeBlock((unsigned char *) buf + 4, out, 29)] = '\0';
    rc = quay_crypto_decrypt(key, buf, strlen(buf), NULL, 0, out,
                             sizeof(out), &w, &err);
    is_int(rc, QUAY_ERROR, "v0 of 29 zero bytes fails authentication");

    /* truncated: one block of 4 characters less, then the real value
     * without its tag */
    rc = quay_crypto_decrypt(key, v1_token, sizeof(v1_token) - 5, AD_TOKEN,
                             strlen(AD_TOKEN), out, sizeof(out), &w, &err);
    is_int(rc, QUAY_ERROR, "v1 token cut by 4 characters fails");

    rc = quay_crypto_decrypt(key, v0_token, sizeof(v0_token) - 2, NULL, 0,
                             out, sizeof(out), &w, &err);
    is_int(rc, QUAY_EINVAL, "v0 token cut by 1 character is EINVAL");

    rc = quay_crypto_decrypt(key, v0_token, 4 + 36, NULL, 0, out,
                             sizeof(out), &w, &err);
    is_int(rc, QUAY_EINVAL, "v0 token cut to 27 bytes is too short");
}


static void
test_limits(void)
{
    int            rc;
    size_t         w, n;
    char          *text;
    unsigned char *bin, key[QUAY_CRYPTO_KEY_LEN];
    quay_err_t     err;

    secret_key(key);

    /* v0 stops at 65,535 bytes of plaintext (CCM with L = 2) */
    n = 13 + 65536 + 16;
    bin = calloc(1, n);
    text = malloc(4 + (n + 2) / 3 * 4 + 1);
    if (bin == NULL || text == NULL) {
        ok(0, "malloc");
        free(bin);
        free(text);
        return;
    }

    memcpy(text, "v0$$", 4);
    text[4 + EVP_EncodeBlock((unsigned char *) text + 4, bin, (int) n)] =
        '\0';
    rc = quay_crypto_decrypt(key, text, strlen(text), NULL, 0, NULL, 0, &w,
                             &err);
    is_int(rc, QUAY_ERANGE, "v0 with 65,536 bytes of plaintext is ERANGE");

    text[4 + EVP_EncodeBlock((unsigned char *) text + 4, bin, (int) n - 1)]
        = '\0';
    rc = quay_crypto_decrypt(key, text, strlen(text), NULL, 0, NULL, 0, &w,
                             &err);
    ok(rc == QUAY_OK && w == 65535, "v0 with 65,535 bytes measures");

    free(bin);
    free(text);
}


static void
test_equal(void)
{
    ok(quay_crypto_equal("abc", "abc", 3), "equal: same");
    ok(!quay_crypto_equal("abc", "abd", 3), "equal: last byte differs");
    ok(!quay_crypto_equal("xbc", "abc", 3), "equal: first byte differs");
    ok(quay_crypto_equal("a", "b", 0), "equal: length 0 is equal");
    ok(quay_crypto_equal(NULL, NULL, 0), "equal: NULL with length 0");
    ok(quay_crypto_equal_len("abc", 3, "abc", 3), "equal_len: same");
    ok(!quay_crypto_equal_len("abc", 3, "abcd", 4),
       "equal_len: a prefix is not equal");
    ok(!quay_crypto_equal_len("abcd", 4, "abc", 3),
       "equal_len: a longer string is not equal");
    ok(!quay_crypto_equal_len("abc", 3, "abC", 3), "equal_len: case matters");
}


static int
cmp_token(const void *a, const void *b)
{
    return memcmp(a, b, QUAY_CRYPTO_ROBOT_TOKEN_LEN);
}


static void
test_random_token(void)
{
    int          rc, good, unique;
    char        *toks, t[QUAY_CRYPTO_ROBOT_TOKEN_LEN + 1], big[72001];
    size_t       i, counts[36], lo, hi, ntok;
    const char  *p;
    quay_err_t   err;

    static const char  alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    memset(t, 'x', sizeof(t));
    rc = quay_crypto_random_token(t, QUAY_CRYPTO_ROBOT_TOKEN_LEN, &err);
    ok(rc == QUAY_OK && strlen(t) == QUAY_CRYPTO_ROBOT_TOKEN_LEN,
       "token: 64 characters and a NUL");
    ok(strspn(t, alphabet) == QUAY_CRYPTO_ROBOT_TOKEN_LEN,
       "token: only A-Z and 0-9");

    t[0] = 'x';
    rc = quay_crypto_random_token(t, 0, &err);
    ok(rc == QUAY_OK && t[0] == '\0', "token: length 0 is an empty string");

    rc = quay_crypto_random_token(NULL, 4, &err);
    is_int(rc, QUAY_EINVAL, "token: NULL buffer is EINVAL");

    /* 2000 tokens, all different */
    ntok = 2000;
    toks = malloc(ntok * QUAY_CRYPTO_ROBOT_TOKEN_LEN);
    if (toks == NULL) {
        ok(0, "malloc");
        return;
    }

    good = 1;
    for (i = 0; i < ntok; i++) {
        if (quay_crypto_random_token(t, QUAY_CRYPTO_ROBOT_TOKEN_LEN, &err)
            != QUAY_OK
            || strspn(t, alphabet) != QUAY_CRYPTO_ROBOT_TOKEN_LEN)
        {
            good = 0;
        }
        memcpy(toks + i * QUAY_CRYPTO_ROBOT_TOKEN_LEN, t,
               QUAY_CRYPTO_ROBOT_TOKEN_LEN);
    }

    qsort(toks, ntok, QUAY_CRYPTO_ROBOT_TOKEN_LEN, cmp_token);
    unique = 1;
    for (i = 1; i < ntok; i++) {
        if (cmp_token(toks + (i - 1) * QUAY_CRYPTO_ROBOT_TOKEN_LEN,
                      toks + i * QUAY_CRYPTO_ROBOT_TOKEN_LEN) == 0)
        {
            unique = 0;
        }
    }
    free(toks);

    ok(good, "token: 2000 tokens of the right alphabet");
    ok(unique, "token: 2000 tokens are all different");

    /* 72,000 characters: each of the 36 is expected 2,000 times (sd
     * about 44), so 1,700..2,300 is about 7 sd.  A plain byte % 36 would
     * favour the first four characters (8/256 against 7/256: about 2,250
     * against 1,970 each), too little for the per-character bounds, so
     * the sums of the first four and the last four are compared too (a
     * difference of about 1,100 with bias; 600 is about 5 sd without) */
    rc = quay_crypto_random_token(big, sizeof(big) - 1, &err);
    memset(counts, 0, sizeof(counts));
    good = rc == QUAY_OK && strlen(big) == sizeof(big) - 1;
    for (i = 0; good && i < sizeof(big) - 1; i++) {
        p = strchr(alphabet, big[i]);
        if (p == NULL) {
            good = 0;
            break;
        }
        counts[p - alphabet]++;
    }

    for (i = 0; good && i < 36; i++) {
        if (counts[i] < 1700 || counts[i] > 2300) {
            printf("# '%c' seen %zu times\n", alphabet[i], counts[i]);
            good = 0;
        }
    }
    ok(good, "token: 72,000 characters spread evenly over the 36");

    lo = counts[0] + counts[1] + counts[2] + counts[3];
    hi = counts[32] + counts[33] + counts[34] + counts[35];
    ok(lo < hi + 600 && hi < lo + 600,
       "token: no modulo bias towards the first characters");
}


static void
test_wipe(void)
{
    unsigned char  buf[16];

    memset(buf, 0xff, sizeof(buf));
    quay_crypto_wipe(buf, sizeof(buf));
    ok(all_zero(buf, sizeof(buf)), "wipe zeroes the buffer");
    quay_crypto_wipe(NULL, 0);
    ok(1, "wipe accepts NULL, 0");
}


int
main(void)
{
    test_key_vectors();
    test_key_edges();
    test_vectors();
    test_v0_roundtrips();
    test_v1_roundtrips();
    test_buffers();
    test_tamper();
    test_wrong_key_and_ad();
    test_malformed();
    test_limits();
    test_equal();
    test_random_token();
    test_wipe();

    return done_testing();
}
