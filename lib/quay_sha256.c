/*
 * SHA-256 with a resumable state, on the hot path of every blob upload.
 *
 * The module's request-body filter feeds each buffer to
 * quay_sha256_update(); after each PATCH the state is serialized (see the
 * format in quay_sha256.h) into the upload row, and the next PATCH, maybe
 * on another node, deserializes it and continues.  So the state is ours:
 * eight words, a byte count and the pending partial block, and no OpenSSL
 * context (SHA256_CTX is deprecated in OpenSSL 3 and its layout private).
 *
 * Two compression functions share the block interface (h, p, nblocks):
 * a portable C one, 16 rounds unrolled per loop so the message schedule
 * lives in a 16-word ring with constant indexes, and one using the x86 SHA
 * extensions (SHA-NI), compiled with a target attribute so the rest of the
 * file needs no special flags.  The SHA-NI one is used when CPUID reports
 * SHA, SSSE3 and SSE4.1; the probe runs once and is cached (CPUID itself
 * rather than __builtin_cpu_supports("sha"), which clang 14 lacks).
 * quay_sha256_set_impl() can force either one, which is how the unit test
 * runs every vector through both.  Reference: FIPS 180-4 sections 4.2.2,
 * 5.1.1, 6.2.
 */

#include <string.h>

#include "quay_sha256.h"


#if (defined(__x86_64__) || defined(__i386__))                              \
    && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5))
#define QUAY_SHA256_HAVE_SHANI  1
#include <cpuid.h>
#include <immintrin.h>
#else
#define QUAY_SHA256_HAVE_SHANI  0
#endif


#define QUAY_ROTR(x, n)   (((x) >> (n)) | ((x) << (32 - (n))))
#define QUAY_BSIG0(x)     (QUAY_ROTR(x, 2) ^ QUAY_ROTR(x, 13)                \
                           ^ QUAY_ROTR(x, 22))
#define QUAY_BSIG1(x)     (QUAY_ROTR(x, 6) ^ QUAY_ROTR(x, 11)                \
                           ^ QUAY_ROTR(x, 25))
#define QUAY_SSIG0(x)     (QUAY_ROTR(x, 7) ^ QUAY_ROTR(x, 18) ^ ((x) >> 3))
#define QUAY_SSIG1(x)     (QUAY_ROTR(x, 17) ^ QUAY_ROTR(x, 19) ^ ((x) >> 10))
#define QUAY_CH(x, y, z)  ((z) ^ ((x) & ((y) ^ (z))))
#define QUAY_MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/* Word j of the 16-word ring becomes W[t+16] from W[t+14], W[t+9], W[t+1]. */
#define QUAY_SCHEDULE(w, j)                                                 \
    (w[j] += QUAY_SSIG1(w[((j) + 14) & 15]) + w[((j) + 9) & 15]           \
             + QUAY_SSIG0(w[((j) + 1) & 15]))

/* One round; the caller rotates the roles of a..h instead of moving them. */
#define QUAY_ROUND(a, b, c, d, e, f, g, h, k, wj)                           \
    do {                                                                    \
        uint32_t  t1_;                                                      \
        t1_ = h + QUAY_BSIG1(e) + QUAY_CH(e, f, g) + (k) + (wj);            \
        d += t1_;                                                           \
        h = t1_ + QUAY_BSIG0(a) + QUAY_MAJ(a, b, c);                        \
    } while (0)

#define QUAY_ROUNDS_16(kk, W)                                               \
    do {                                                                    \
        QUAY_ROUND(a, b, c, d, e, f, g, h, kk[0], W(0));                    \
        QUAY_ROUND(h, a, b, c, d, e, f, g, kk[1], W(1));                    \
        QUAY_ROUND(g, h, a, b, c, d, e, f, kk[2], W(2));                    \
        QUAY_ROUND(f, g, h, a, b, c, d, e, kk[3], W(3));                    \
        QUAY_ROUND(e, f, g, h, a, b, c, d, kk[4], W(4));                    \
        QUAY_ROUND(d, e, f, g, h, a, b, c, kk[5], W(5));                    \
        QUAY_ROUND(c, d, e, f, g, h, a, b, kk[6], W(6));                    \
        QUAY_ROUND(b, c, d, e, f, g, h, a, kk[7], W(7));                    \
        QUAY_ROUND(a, b, c, d, e, f, g, h, kk[8], W(8));                    \
        QUAY_ROUND(h, a, b, c, d, e, f, g, kk[9], W(9));                    \
        QUAY_ROUND(g, h, a, b, c, d, e, f, kk[10], W(10));                  \
        QUAY_ROUND(f, g, h, a, b, c, d, e, kk[11], W(11));                  \
        QUAY_ROUND(e, f, g, h, a, b, c, d, kk[12], W(12));                  \
        QUAY_ROUND(d, e, f, g, h, a, b, c, kk[13], W(13));                  \
        QUAY_ROUND(c, d, e, f, g, h, a, b, kk[14], W(14));                  \
        QUAY_ROUND(b, c, d, e, f, g, h, a, kk[15], W(15));                  \
    } while (0)

#define QUAY_W_LOAD(j)      (w[j] = quay_sha256_load32(p + 4 * (j)))
#define QUAY_W_NEXT(j)      QUAY_SCHEDULE(w, j)


static void quay_sha256_blocks_portable(uint32_t state[8],
    const unsigned char *p, size_t nblocks);
#if QUAY_SHA256_HAVE_SHANI
static void quay_sha256_blocks_shani(uint32_t h[8], const unsigned char *p,
    size_t nblocks);
static int quay_sha256_shani_usable(void);
#endif


static const uint32_t  quay_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

static const uint32_t  quay_sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
};

/* Set only by quay_sha256_set_impl(); AUTO means "decide per call". */
static quay_sha256_impl_e  quay_sha256_impl = QUAY_SHA256_IMPL_AUTO;

#if QUAY_SHA256_HAVE_SHANI
/* 0: not probed yet, 1: no SHA-NI, 2: SHA-NI usable */
static int                 quay_sha256_shani_state;
#endif


static inline uint32_t
quay_sha256_load32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}


static inline void
quay_sha256_store32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


static inline void
quay_sha256_store64(unsigned char *p, uint64_t v)
{
    quay_sha256_store32(p, (uint32_t) (v >> 32));
    quay_sha256_store32(p + 4, (uint32_t) v);
}


static void
quay_sha256_blocks_portable(uint32_t state[8], const unsigned char *p,
    size_t nblocks)
{
    uint32_t  a, b, c, d, e, f, g, h, w[16];
    size_t    i;

    while (nblocks--) {
        a = state[0];
        b = state[1];
        c = state[2];
        d = state[3];
        e = state[4];
        f = state[5];
        g = state[6];
        h = state[7];

        QUAY_ROUNDS_16(quay_sha256_k, QUAY_W_LOAD);

        for (i = 16; i < 64; i += 16) {
            QUAY_ROUNDS_16((quay_sha256_k + i), QUAY_W_NEXT);
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;

        p += 64;
    }
}


#if QUAY_SHA256_HAVE_SHANI

/*
 * SHA-NI keeps the state as two vectors, ABEF and CDGH (A in the top
 * lane).  _mm_sha256rnds2_epu32(cdgh, abef, wk) does two rounds with the
 * low two lanes of wk and returns the new ABEF; the new CDGH is the old
 * ABEF, so the two vectors swap roles on every call.  msg1/msg2 compute
 * four schedule words W[t..t+3] from W[t-16..t-1], with W[t-7..t-4] added
 * in between through an alignr of the two youngest vectors.
 */

#define QUAY_SHANI_ROUNDS(msg, kk)                                          \
    do {                                                                    \
        wk = _mm_add_epi32(msg, _mm_loadu_si128((const __m128i *) (kk)));  \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);                       \
        wk = _mm_shuffle_epi32(wk, 0x0e);                                   \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);                       \
    } while (0)

/* m0 = W[t-16..t-13] becomes W[t..t+3]; m1, m2, m3 follow it in time. */
#define QUAY_SHANI_SCHEDULE(m0, m1, m2, m3)                                 \
    do {                                                                    \
        m0 = _mm_sha256msg1_epu32(m0, m1);                                  \
        m0 = _mm_add_epi32(m0, _mm_alignr_epi8(m3, m2, 4));                 \
        m0 = _mm_sha256msg2_epu32(m0, m3);                                  \
    } while (0)


__attribute__((target("sha,sse4.1")))
static void
quay_sha256_blocks_shani(uint32_t h[8], const unsigned char *p,
    size_t nblocks)
{
    size_t   i;
    __m128i  abef, cdgh, abef_save, cdgh_save, tmp, wk, bswap;
    __m128i  m0, m1, m2, m3;

    bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);

    /* lanes a b c d and e f g h into ABEF and CDGH */
    tmp = _mm_loadu_si128((const __m128i *) &h[0]);
    cdgh = _mm_loadu_si128((const __m128i *) &h[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xb1);
    cdgh = _mm_shuffle_epi32(cdgh, 0x1b);
    abef = _mm_alignr_epi8(tmp, cdgh, 8);
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xf0);

    while (nblocks--) {
        abef_save = abef;
        cdgh_save = cdgh;

        m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) p), bswap);
        m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) (p + 16)),
                              bswap);
        m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) (p + 32)),
                              bswap);
        m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) (p + 48)),
                              bswap);

        QUAY_SHANI_ROUNDS(m0, &quay_sha256_k[0]);
        QUAY_SHANI_ROUNDS(m1, &quay_sha256_k[4]);
        QUAY_SHANI_ROUNDS(m2, &quay_sha256_k[8]);
        QUAY_SHANI_ROUNDS(m3, &quay_sha256_k[12]);

        for (i = 16; i < 64; i += 16) {
            QUAY_SHANI_SCHEDULE(m0, m1, m2, m3);
            QUAY_SHANI_ROUNDS(m0, &quay_sha256_k[i]);
            QUAY_SHANI_SCHEDULE(m1, m2, m3, m0);
            QUAY_SHANI_ROUNDS(m1, &quay_sha256_k[i + 4]);
            QUAY_SHANI_SCHEDULE(m2, m3, m0, m1);
            QUAY_SHANI_ROUNDS(m2, &quay_sha256_k[i + 8]);
            QUAY_SHANI_SCHEDULE(m3, m0, m1, m2);
            QUAY_SHANI_ROUNDS(m3, &quay_sha256_k[i + 12]);
        }

        abef = _mm_add_epi32(abef, abef_save);
        cdgh = _mm_add_epi32(cdgh, cdgh_save);

        p += 64;
    }

    /* back to a b c d and e f g h */
    tmp = _mm_shuffle_epi32(abef, 0x1b);
    cdgh = _mm_shuffle_epi32(cdgh, 0xb1);
    abef = _mm_blend_epi16(tmp, cdgh, 0xf0);
    cdgh = _mm_alignr_epi8(cdgh, tmp, 8);
    _mm_storeu_si128((__m128i *) &h[0], abef);
    _mm_storeu_si128((__m128i *) &h[4], cdgh);
}


/* CPUID leaf 1 for SSSE3 and SSE4.1, leaf 7 for SHA. */
static int
quay_sha256_shani_probe(void)
{
    unsigned int  a, b, c, d;

    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }

    __cpuid(1, a, b, c, d);
    if (!(c & bit_SSSE3) || !(c & bit_SSE4_1)) {
        return 0;
    }

    __cpuid_count(7, 0, a, b, c, d);

    return (b & bit_SHA) != 0;
}


/*
 * CPUID can trap to the hypervisor in a VM, so it runs once; the answer is
 * cached with relaxed atomics because thread-pool threads may hash too.
 */
static int
quay_sha256_shani_usable(void)
{
    int  v;

    v = __atomic_load_n(&quay_sha256_shani_state, __ATOMIC_RELAXED);

    if (v == 0) {
        v = quay_sha256_shani_probe() ? 2 : 1;
        __atomic_store_n(&quay_sha256_shani_state, v, __ATOMIC_RELAXED);
    }

    return v == 2;
}

#endif /* QUAY_SHA256_HAVE_SHANI */


static void
quay_sha256_blocks(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
#if QUAY_SHA256_HAVE_SHANI
    if (quay_sha256_impl == QUAY_SHA256_IMPL_SHANI
        || (quay_sha256_impl == QUAY_SHA256_IMPL_AUTO
            && quay_sha256_shani_usable()))
    {
        quay_sha256_blocks_shani(h, p, nblocks);
        return;
    }
#endif

    quay_sha256_blocks_portable(h, p, nblocks);
}


int
quay_sha256_set_impl(quay_sha256_impl_e impl)
{
    switch (impl) {

    case QUAY_SHA256_IMPL_AUTO:
    case QUAY_SHA256_IMPL_PORTABLE:
        quay_sha256_impl = impl;
        return QUAY_OK;

    case QUAY_SHA256_IMPL_SHANI:
#if QUAY_SHA256_HAVE_SHANI
        if (quay_sha256_shani_usable()) {
            quay_sha256_impl = impl;
            return QUAY_OK;
        }
#endif
        return QUAY_ENOTFOUND;
    }

    return QUAY_ENOTFOUND;
}


const char *
quay_sha256_impl_name(void)
{
#if QUAY_SHA256_HAVE_SHANI
    if (quay_sha256_impl == QUAY_SHA256_IMPL_SHANI
        || (quay_sha256_impl == QUAY_SHA256_IMPL_AUTO
            && quay_sha256_shani_usable()))
    {
        return "sha-ni";
    }
#endif

    return "portable";
}


void
quay_sha256_init(quay_sha256_t *s)
{
    memcpy(s->h, quay_sha256_iv, sizeof(s->h));
    s->total = 0;
    memset(s->block, 0, sizeof(s->block));
    s->block_len = 0;
}


void
quay_sha256_update(quay_sha256_t *s, const unsigned char *p, size_t len)
{
    size_t  n;

    if (len == 0) {
        return;
    }

    s->total += len;

    if (s->block_len > 0) {
        n = 64 - s->block_len;
        if (n > len) {
            n = len;
        }

        memcpy(s->block + s->block_len, p, n);
        s->block_len += n;
        p += n;
        len -= n;

        if (s->block_len < 64) {
            return;
        }

        quay_sha256_blocks(s->h, s->block, 1);
        s->block_len = 0;
    }

    n = len / 64;
    if (n > 0) {
        quay_sha256_blocks(s->h, p, n);
        p += n * 64;
        len -= n * 64;
    }

    if (len > 0) {
        memcpy(s->block, p, len);
        s->block_len = len;
    }
}


void
quay_sha256_final(quay_sha256_t *s, unsigned char out[32])
{
    int       i;
    uint64_t  bits;

    bits = s->total << 3;

    s->block[s->block_len++] = 0x80;

    if (s->block_len > 56) {
        memset(s->block + s->block_len, 0, 64 - s->block_len);
        quay_sha256_blocks(s->h, s->block, 1);
        s->block_len = 0;
    }

    memset(s->block + s->block_len, 0, 56 - s->block_len);
    quay_sha256_store64(s->block + 56, bits);
    quay_sha256_blocks(s->h, s->block, 1);

    for (i = 0; i < 8; i++) {
        quay_sha256_store32(out + 4 * i, s->h[i]);
    }

    /* the pending bytes were upload data: do not leave them behind */
    memset(s, 0, sizeof(*s));
}


void
quay_sha256(const unsigned char *p, size_t len, unsigned char out[32])
{
    quay_sha256_t  s;

    quay_sha256_init(&s);
    quay_sha256_update(&s, p, len);
    quay_sha256_final(&s, out);
}


size_t
quay_sha256_serialize(const quay_sha256_t *s, unsigned char *out)
{
    int  i;

    if (out == NULL) {
        return QUAY_SHA256_STATE_LEN;
    }

    out[0] = QUAY_SHA256_STATE_VERSION;

    for (i = 0; i < 8; i++) {
        quay_sha256_store32(out + 1 + 4 * i, s->h[i]);
    }

    quay_sha256_store64(out + 33, s->total);
    out[41] = (unsigned char) s->block_len;
    memcpy(out + 42, s->block, s->block_len);
    memset(out + 42 + s->block_len, 0, 64 - s->block_len);

    return QUAY_SHA256_STATE_LEN;
}


int
quay_sha256_deserialize(quay_sha256_t *s, const unsigned char *p,
    size_t len, quay_err_t *err)
{
    int            i;
    size_t         block_len, j;
    uint64_t       total;
    quay_sha256_t  tmp;

    if (len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "sha256 state: empty");
    }

    if (p[0] != QUAY_SHA256_STATE_VERSION) {
        return quay_err_set(err, QUAY_EVERSION,
                            "sha256 state: unsupported version %u",
                            (unsigned) p[0]);
    }

    if (len != QUAY_SHA256_STATE_LEN) {
        return quay_err_set(err, QUAY_EINVAL,
                            "sha256 state: %zu bytes, expected %d", len,
                            QUAY_SHA256_STATE_LEN);
    }

    total = 0;
    for (i = 0; i < 8; i++) {
        total = (total << 8) | p[33 + i];
    }

    block_len = p[41];

    if (block_len >= 64) {
        return quay_err_set(err, QUAY_EINVAL,
                            "sha256 state: block length %zu", block_len);
    }

    if (total % 64 != block_len) {
        return quay_err_set(err, QUAY_EINVAL,
                            "sha256 state: block length %zu does not match "
                            "total %llu", block_len,
                            (unsigned long long) total);
    }

    /* the message length in bits must fit the 64-bit length field */
    if (total > (UINT64_MAX >> 3)) {
        return quay_err_set(err, QUAY_EINVAL, "sha256 state: total %llu "
                            "too large", (unsigned long long) total);
    }

    for (j = 42 + block_len; j < QUAY_SHA256_STATE_LEN; j++) {
        if (p[j] != 0) {
            return quay_err_set(err, QUAY_EINVAL,
                                "sha256 state: non-zero padding");
        }
    }

    for (i = 0; i < 8; i++) {
        tmp.h[i] = quay_sha256_load32(p + 1 + 4 * i);
    }

    tmp.total = total;
    memcpy(tmp.block, p + 42, 64);
    tmp.block_len = block_len;

    *s = tmp;

    return QUAY_OK;
}
