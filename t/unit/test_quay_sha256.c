/*
 * Unit tests for lib/quay_sha256.c: FIPS 180-4 / NIST vectors, incremental
 * updates split at random points, serialize/deserialize in the middle of a
 * stream, rejection of damaged states, and a cross-check against OpenSSL's
 * EVP_Digest.  Everything runs once per compression function this CPU
 * has (the portable one always), and a throughput line is printed as a
 * TAP comment, never asserted.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "tap.h"
#include "quay_sha256.h"


static uint64_t  rng_state = 0x9e3779b97f4a7c15ULL;


static uint64_t
rng_next(void)
{
    uint64_t  x;

    x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;

    return x;
}


static void
rng_fill(unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        p[i] = (unsigned char) rng_next();
    }
}


static void
to_hex(const unsigned char *raw, size_t len, char *out)
{
    static const char  digits[] = "0123456789abcdef";
    size_t             i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * len] = '\0';
}


static void
openssl_sha256(const unsigned char *p, size_t len, unsigned char out[32])
{
    unsigned int  n;

    n = 0;
    if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        memset(out, 0, 32);
    }
}


static void
test_vectors(const char *impl)
{
    static const struct {
        const char  *msg;
        const char  *hex;
    } vectors[] = {
        { "",
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc",
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
          "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    };

    size_t          i;
    char            hex[65], name[160];
    unsigned char   out[32], *million;
    quay_sha256_t   s;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        quay_sha256((const unsigned char *) vectors[i].msg,
                    strlen(vectors[i].msg), out);
        to_hex(out, 32, hex);
        snprintf(name, sizeof(name), "%s: NIST vector %zu (%zu bytes)",
                 impl, i, strlen(vectors[i].msg));
        is_str(hex, vectors[i].hex, name);
    }

    /* one million 'a', fed one byte at a time and in one call */
    million = malloc(1000000);
    if (million == NULL) {
        ok(0, "malloc");
        return;
    }
    memset(million, 'a', 1000000);

    quay_sha256(million, 1000000, out);
    to_hex(out, 32, hex);
    snprintf(name, sizeof(name), "%s: one million 'a', one update", impl);
    is_str(hex,
           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
           name);

    quay_sha256_init(&s);
    for (i = 0; i < 1000000; i++) {
        quay_sha256_update(&s, million + i, 1);
    }
    quay_sha256_final(&s, out);
    to_hex(out, 32, hex);
    snprintf(name, sizeof(name), "%s: one million 'a', byte by byte", impl);
    is_str(hex,
           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
           name);

    free(million);

    quay_sha256_init(&s);
    quay_sha256_update(&s, NULL, 0);
    quay_sha256_final(&s, out);
    to_hex(out, 32, hex);
    snprintf(name, sizeof(name), "%s: update(NULL, 0) is a no-op", impl);
    is_str(hex,
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           name);
}


/* Every length 0..300 and some random long buffers against OpenSSL. */
static void
test_openssl(const char *impl)
{
    size_t          len, bad, i;
    char            name[160];
    unsigned char   buf[300], want[32], got[32], *big;

    rng_fill(buf, sizeof(buf));

    bad = 0;
    for (len = 0; len <= sizeof(buf); len++) {
        openssl_sha256(buf, len, want);
        quay_sha256(buf, len, got);
        if (memcmp(want, got, 32) != 0) {
            bad++;
            printf("# mismatch at length %zu\n", len);
        }
    }
    snprintf(name, sizeof(name), "%s: lengths 0..300 match EVP_Digest", impl);
    is_int(bad, 0, name);

    big = malloc(1 << 20);
    if (big == NULL) {
        ok(0, "malloc");
        return;
    }

    bad = 0;
    for (i = 0; i < 8; i++) {
        len = (size_t) (rng_next() % (1 << 20));
        rng_fill(big, len);
        openssl_sha256(big, len, want);
        quay_sha256(big, len, got);
        if (memcmp(want, got, 32) != 0) {
            bad++;
            printf("# mismatch at length %zu\n", len);
        }
    }
    snprintf(name, sizeof(name), "%s: 8 random buffers up to 1 MiB match "
             "EVP_Digest", impl);
    is_int(bad, 0, name);

    free(big);
}


/* Random update sizes give the one-shot digest. */
static void
test_splits(const char *impl)
{
    size_t          len, off, n, round, bad;
    char            name[160];
    unsigned char   buf[5000], want[32], got[32];
    quay_sha256_t   s;

    bad = 0;
    for (round = 0; round < 200; round++) {
        len = (size_t) (rng_next() % sizeof(buf));
        rng_fill(buf, len);
        openssl_sha256(buf, len, want);

        quay_sha256_init(&s);
        for (off = 0; off < len; off += n) {
            /* small, block-sized and large pieces, zero-length too */
            switch (rng_next() % 4) {
            case 0:
                n = (size_t) (rng_next() % 8);
                break;
            case 1:
                n = (size_t) (rng_next() % 130);
                break;
            case 2:
                n = 64;
                break;
            default:
                n = (size_t) (rng_next() % 2000);
            }
            if (n > len - off) {
                n = len - off;
            }
            quay_sha256_update(&s, buf + off, n);
        }
        quay_sha256_final(&s, got);

        if (memcmp(want, got, 32) != 0) {
            bad++;
        }
    }

    snprintf(name, sizeof(name), "%s: 200 random split streams match the "
             "one-shot digest", impl);
    is_int(bad, 0, name);
}


/* Save and restore at every split point, as between two PATCH requests. */
static void
test_resume(const char *impl)
{
    int             rc;
    size_t          len, k, bad, badbytes, n;
    char            name[160];
    unsigned char   buf[1100], want[32], got[32];
    unsigned char   state[QUAY_SHA256_STATE_LEN], again[QUAY_SHA256_STATE_LEN];
    quay_sha256_t   s, r;
    quay_err_t      err;

    len = sizeof(buf);
    rng_fill(buf, len);
    openssl_sha256(buf, len, want);

    is_int(quay_sha256_serialize(NULL, NULL), QUAY_SHA256_STATE_LEN,
           "serialize(NULL) measures");

    bad = 0;
    badbytes = 0;
    for (k = 0; k <= len; k++) {
        quay_sha256_init(&s);
        quay_sha256_update(&s, buf, k);

        n = quay_sha256_serialize(&s, state);
        if (n != QUAY_SHA256_STATE_LEN) {
            bad++;
            continue;
        }

        memset(&r, 0xa5, sizeof(r));
        rc = quay_sha256_deserialize(&r, state, n, &err);
        if (rc != QUAY_OK) {
            printf("# split %zu: %s\n", k, err.msg);
            bad++;
            continue;
        }

        /* the encoding is canonical: re-serializing gives the same bytes */
        (void) quay_sha256_serialize(&r, again);
        if (memcmp(state, again, sizeof(state)) != 0) {
            badbytes++;
        }

        quay_sha256_update(&r, buf + k, len - k);
        quay_sha256_final(&r, got);
        if (memcmp(want, got, 32) != 0) {
            bad++;
        }
    }

    snprintf(name, sizeof(name), "%s: resume at each of %zu split points "
             "gives the same digest", impl, len + 1);
    is_int(bad, 0, name);
    snprintf(name, sizeof(name), "%s: serialize(deserialize(x)) == x", impl);
    is_int(badbytes, 0, name);

    /* several save/restore cycles in one stream, chunk sizes at random */
    bad = 0;
    for (k = 0; k < 50; k++) {
        size_t  off;

        quay_sha256_init(&s);
        for (off = 0; off < len; off += n) {
            n = (size_t) (rng_next() % 300);
            if (n > len - off) {
                n = len - off;
            }
            quay_sha256_update(&s, buf + off, n);
            (void) quay_sha256_serialize(&s, state);
            memset(&s, 0, sizeof(s));
            if (quay_sha256_deserialize(&s, state, sizeof(state), NULL)
                != QUAY_OK)
            {
                bad++;
                break;
            }
        }
        quay_sha256_final(&s, got);
        if (memcmp(want, got, 32) != 0) {
            bad++;
        }
    }
    snprintf(name, sizeof(name), "%s: 50 streams saved and restored after "
             "every chunk", impl);
    is_int(bad, 0, name);
}


static void
expect_reject(const unsigned char *state, size_t len, int want,
    const char *name)
{
    int             rc;
    quay_sha256_t   s, before;
    quay_err_t      err;

    quay_sha256_init(&s);
    quay_sha256_update(&s, (const unsigned char *) "xyz", 3);
    before = s;

    err.code = 0;
    err.msg[0] = '\0';
    rc = quay_sha256_deserialize(&s, state, len, &err);
    is_int(rc, want, name);
    ok(err.code == want && err.msg[0] != '\0', "  ... err is filled in");
    ok(memcmp(&s, &before, sizeof(s)) == 0, "  ... state is untouched");
}


static void
test_reject(void)
{
    unsigned char   good[QUAY_SHA256_STATE_LEN], bad[QUAY_SHA256_STATE_LEN];
    unsigned char   longer[QUAY_SHA256_STATE_LEN + 1];
    quay_sha256_t   s;

    quay_sha256_init(&s);
    quay_sha256_update(&s, (const unsigned char *) "hello, world", 12);
    (void) quay_sha256_serialize(&s, good);

    is_int(good[0], 1, "version byte is 1");
    is_int(good[41], 12, "block_len byte");
    ok(memcmp(good + 42, "hello, world", 12) == 0, "pending bytes stored");
    is_int(quay_sha256_deserialize(&s, good, sizeof(good), NULL), QUAY_OK,
           "good state accepted");

    expect_reject(good, 0, QUAY_EINVAL, "empty state rejected");
    expect_reject(good, 1, QUAY_EINVAL, "1-byte state rejected");
    expect_reject(good, sizeof(good) - 1, QUAY_EINVAL,
                  "truncated state rejected");

    memcpy(longer, good, sizeof(good));
    longer[sizeof(good)] = 0;
    expect_reject(longer, sizeof(longer), QUAY_EINVAL,
                  "overlong state rejected");

    memcpy(bad, good, sizeof(good));
    bad[0] = 0;
    expect_reject(bad, sizeof(bad), QUAY_EVERSION, "version 0 rejected");
    bad[0] = 2;
    expect_reject(bad, sizeof(bad), QUAY_EVERSION, "version 2 rejected");
    bad[0] = 0xff;
    expect_reject(bad, 5, QUAY_EVERSION,
                  "version 255 rejected before the length");

    memcpy(bad, good, sizeof(good));
    bad[41] = 64;
    bad[40] = 64;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL, "block_len 64 rejected");

    memcpy(bad, good, sizeof(good));
    bad[41] = 200;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL, "block_len 200 rejected");

    memcpy(bad, good, sizeof(good));
    bad[40] = 13;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL,
                  "total % 64 != block_len rejected");

    memcpy(bad, good, sizeof(good));
    bad[33] = 0xff;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL,
                  "total over 2^61 bytes rejected");

    memcpy(bad, good, sizeof(good));
    bad[42 + 12] = 1;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL,
                  "non-zero padding rejected");

    memcpy(bad, good, sizeof(good));
    bad[sizeof(bad) - 1] = 0x80;
    expect_reject(bad, sizeof(bad), QUAY_EINVAL,
                  "non-zero last padding byte rejected");
}


static void
test_throughput(const char *impl)
{
    size_t           len, rounds, i;
    double           secs;
    unsigned char   *buf, out[32];
    quay_sha256_t    s;
    struct timespec  t0, t1;

    len = 1 << 20;
    rounds = 32;
    buf = malloc(len);
    if (buf == NULL) {
        return;
    }
    rng_fill(buf, len);

    (void) clock_gettime(CLOCK_MONOTONIC, &t0);
    quay_sha256_init(&s);
    for (i = 0; i < rounds; i++) {
        quay_sha256_update(&s, buf, len);
    }
    quay_sha256_final(&s, out);
    (void) clock_gettime(CLOCK_MONOTONIC, &t1);

    secs = (double) (t1.tv_sec - t0.tv_sec)
           + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 0) {
        printf("# %s: %.0f MB/s (%zu MiB)\n", impl,
               (double) (len * rounds) / secs / 1e6, rounds);
    }

    free(buf);
}


static void
run_all(const char *impl)
{
    is_str(quay_sha256_impl_name(), impl, "implementation selected");
    test_vectors(impl);
    test_openssl(impl);
    test_splits(impl);
    test_resume(impl);
    test_throughput(impl);
}


int
main(void)
{
    const char  *seed;

    seed = getenv("QUAY_TEST_SEED");
    if (seed != NULL) {
        rng_state = strtoull(seed, NULL, 0) | 1;
    }
    printf("# seed 0x%llx, default implementation %s\n",
           (unsigned long long) rng_state, quay_sha256_impl_name());

    is_int(quay_sha256_set_impl(QUAY_SHA256_IMPL_PORTABLE), QUAY_OK,
           "portable implementation can be forced");
    run_all("portable");

    if (quay_sha256_set_impl(QUAY_SHA256_IMPL_SHANI) == QUAY_OK) {
        run_all("sha-ni");
    } else {
        ok(1, "sha-ni # SKIP not available on this CPU or build");
    }

    is_int(quay_sha256_set_impl(QUAY_SHA256_IMPL_AUTO), QUAY_OK,
           "back to automatic selection");
    is_int(quay_sha256_set_impl((quay_sha256_impl_e) 42), QUAY_ENOTFOUND,
           "unknown implementation refused");

    test_reject();

    return done_testing();
}
