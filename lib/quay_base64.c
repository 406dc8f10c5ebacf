/*
 * Strict base64 and base64url (RFC 4648 sections 4 and 5); the contract is
 * in quay_base64.h.
 *
 * Both variants share one encoder and one decoder, parameterised by the
 * alphabet (url or not), which is public.  The data-dependent part, the
 * mapping between 6-bit values and characters, is done with arithmetic
 * masks instead of a lookup table or branches: Basic credentials (a
 * password) are decoded here on every /v2/auth request, and a table
 * indexed by secret bytes leaks them through the cache.  Validity is
 * accumulated in a flag and tested once at the end.  The length, the
 * padding and where it sits are public, and are checked with ordinary
 * branches.
 */

#include <stdint.h>

#include "quay_base64.h"


static unsigned quay_base64_in_range(unsigned c, unsigned lo, unsigned hi);
static unsigned quay_base64_at_least(unsigned v, unsigned n);
static char quay_base64_char(unsigned v, int url);
static unsigned quay_base64_value(unsigned char ch, int url, unsigned *bad);
static size_t quay_base64_encode_any(const unsigned char *in, size_t len,
    char *out, int url);
static size_t quay_base64_decode_quads(const char *in, size_t nquads,
    unsigned char *out, int url, unsigned *bad);
static size_t quay_base64_decode_tail(const char *in, size_t n,
    unsigned char *out, int url, unsigned *bad);


/*
 * All ones when lo <= c <= hi, else 0.  c, lo and hi are below 256, so a
 * negative difference, computed in unsigned arithmetic, sets bit 8.
 */
static unsigned
quay_base64_in_range(unsigned c, unsigned lo, unsigned hi)
{
    return ((((c - lo) | (hi - c)) >> 8) & 1) - 1;
}


/* All ones when v >= n, else 0 (v and n below 256). */
static unsigned
quay_base64_at_least(unsigned v, unsigned n)
{
    return (((v - n) >> 8) & 1) - 1;
}


/*
 * The character for v (0..63): 'A' + v, moved up to 'a' from 26, down to
 * '0' from 52, then to the two variant-specific characters for 62 and 63.
 */
static char
quay_base64_char(unsigned v, int url)
{
    unsigned  c;

    c = v + 'A';
    c += quay_base64_at_least(v, 26) & ('a' - 'A' - 26);
    c -= quay_base64_at_least(v, 52) & ('a' + 26 - '0');

    /* at 62, c is '0' + 10 */
    if (url) {
        c -= quay_base64_at_least(v, 62) & ('0' + 10 - '-');
        c += quay_base64_at_least(v, 63) & ('_' - '-' - 1);

    } else {
        c -= quay_base64_at_least(v, 62) & ('0' + 10 - '+');
        c += quay_base64_at_least(v, 63) & ('/' - '+' - 1);
    }

    return (char) c;
}


/* The 6-bit value of ch; sets *bad to 1 when ch is not in the alphabet. */
static unsigned
quay_base64_value(unsigned char ch, int url, unsigned *bad)
{
    unsigned  c, upper, lower, digit, c62, c63;

    c = ch;
    upper = quay_base64_in_range(c, 'A', 'Z');
    lower = quay_base64_in_range(c, 'a', 'z');
    digit = quay_base64_in_range(c, '0', '9');

    if (url) {
        c62 = quay_base64_in_range(c, '-', '-');
        c63 = quay_base64_in_range(c, '_', '_');

    } else {
        c62 = quay_base64_in_range(c, '+', '+');
        c63 = quay_base64_in_range(c, '/', '/');
    }

    *bad |= ~(upper | lower | digit | c62 | c63) & 1;

    return (upper & (c - 'A'))
           | (lower & (c - 'a' + 26))
           | (digit & (c - '0' + 52))
           | (c62 & 62)
           | (c63 & 63);
}


static size_t
quay_base64_encode_any(const unsigned char *in, size_t len, char *out,
    int url)
{
    size_t    i, n, full, rem;
    uint32_t  v;

    full = len / 3;
    rem = len % 3;

    if (full > (SIZE_MAX - 4) / 4) {
        return 0;
    }

    n = full * 4;

    if (rem != 0) {
        n += url ? rem + 1 : 4;
    }

    if (out == NULL) {
        return n;
    }

    for (i = 0; i < full; i++) {
        v = (uint32_t) in[0] << 16 | (uint32_t) in[1] << 8 | in[2];
        out[0] = quay_base64_char((v >> 18) & 0x3f, url);
        out[1] = quay_base64_char((v >> 12) & 0x3f, url);
        out[2] = quay_base64_char((v >> 6) & 0x3f, url);
        out[3] = quay_base64_char(v & 0x3f, url);
        in += 3;
        out += 4;
    }

    if (rem == 0) {
        return n;
    }

    v = (uint32_t) in[0] << 16;
    if (rem == 2) {
        v |= (uint32_t) in[1] << 8;
    }

    out[0] = quay_base64_char((v >> 18) & 0x3f, url);
    out[1] = quay_base64_char((v >> 12) & 0x3f, url);

    if (rem == 2) {
        out[2] = quay_base64_char((v >> 6) & 0x3f, url);
    } else if (!url) {
        out[2] = '=';
    }

    if (!url) {
        out[3] = '=';
    }

    return n;
}


/* Decodes nquads groups of 4 characters into 3 bytes each (out may be
 * NULL to validate only); returns the bytes produced. */
static size_t
quay_base64_decode_quads(const char *in, size_t nquads, unsigned char *out,
    int url, unsigned *bad)
{
    size_t    i;
    uint32_t  v;

    for (i = 0; i < nquads; i++) {
        v = quay_base64_value((unsigned char) in[0], url, bad) << 18
            | quay_base64_value((unsigned char) in[1], url, bad) << 12
            | quay_base64_value((unsigned char) in[2], url, bad) << 6
            | quay_base64_value((unsigned char) in[3], url, bad);

        if (out != NULL) {
            out[0] = (unsigned char) (v >> 16);
            out[1] = (unsigned char) (v >> 8);
            out[2] = (unsigned char) v;
            out += 3;
        }

        in += 4;
    }

    return nquads * 3;
}


/*
 * Decodes a final group of n (2 or 3) characters into n - 1 bytes.  The
 * bits of the last character that fall beyond the last byte must be zero
 * (RFC 4648 section 3.5), or the same bytes would have several spellings.
 */
static size_t
quay_base64_decode_tail(const char *in, size_t n, unsigned char *out,
    int url, unsigned *bad)
{
    uint32_t  v;

    v = quay_base64_value((unsigned char) in[0], url, bad) << 18
        | quay_base64_value((unsigned char) in[1], url, bad) << 12;

    if (n == 3) {
        v |= quay_base64_value((unsigned char) in[2], url, bad) << 6;
        *bad |= (v & 0xff) != 0;

    } else {
        *bad |= (v & 0xffff) != 0;
    }

    if (out != NULL) {
        out[0] = (unsigned char) (v >> 16);
        if (n == 3) {
            out[1] = (unsigned char) (v >> 8);
        }
    }

    return n - 1;
}


size_t
quay_base64url_encode(const unsigned char *in, size_t len, char *out)
{
    return quay_base64_encode_any(in, len, out, 1);
}


size_t
quay_base64_encode(const unsigned char *in, size_t len, char *out)
{
    return quay_base64_encode_any(in, len, out, 0);
}


int
quay_base64url_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen)
{
    size_t    n, rem;
    unsigned  bad;

    *outlen = 0;
    rem = len % 4;

    if (rem == 1 || (in == NULL && len != 0)) {
        return QUAY_EINVAL;
    }

    bad = 0;
    n = quay_base64_decode_quads(in, len / 4, out, 1, &bad);

    if (rem != 0) {
        n += quay_base64_decode_tail(in + len - rem, rem,
                                     out != NULL ? out + n : NULL, 1, &bad);
    }

    if (bad) {
        return QUAY_EINVAL;
    }

    *outlen = n;

    return QUAY_OK;
}


int
quay_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen)
{
    size_t    n, pad;
    unsigned  bad;

    *outlen = 0;

    if (len % 4 != 0 || (in == NULL && len != 0)) {
        return QUAY_EINVAL;
    }

    if (len == 0) {
        return QUAY_OK;
    }

    /* padding is only ever the last one or two characters; a '=' anywhere
     * else is not in the alphabet and fails below */
    pad = 0;
    if (in[len - 1] == '=') {
        pad = in[len - 2] == '=' ? 2 : 1;
    }

    bad = 0;

    if (pad == 0) {
        n = quay_base64_decode_quads(in, len / 4, out, 0, &bad);

    } else {
        n = quay_base64_decode_quads(in, len / 4 - 1, out, 0, &bad);
        n += quay_base64_decode_tail(in + len - 4, 4 - pad,
                                     out != NULL ? out + n : NULL, 0, &bad);
    }

    if (bad) {
        return QUAY_EINVAL;
    }

    *outlen = n;

    return QUAY_OK;
}
