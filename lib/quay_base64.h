/*
 * Base64 (RFC 4648 section 4, "+/" with '=' padding) and base64url
 * (section 5, "-_" without padding), both strict.
 *
 * base64url is what JWS compact serialization uses (RFC 7515 section 2),
 * always unpadded; the standard alphabet is what HTTP Basic credentials
 * use (RFC 7617).  Decoding rejects anything a correct encoder would not
 * produce: characters outside the alphabet (whitespace included), the
 * other variant's characters, '=' in base64url, missing or misplaced
 * padding in base64, impossible lengths, and non-zero unused bits in the
 * last character (RFC 4648 section 3.5), so every byte string has exactly
 * one accepted encoding and a token cannot be re-spelled.
 *
 * Inputs are (pointer, length) and never need a NUL.  The character
 * mapping avoids branches and table lookups on the data, because Basic
 * credentials pass through here.  All functions are pure and thread-safe.
 */

#ifndef QUAY_BASE64_H
#define QUAY_BASE64_H

#include <stddef.h>

#include "quay_err.h"


/*
 * Encodes in[0..len-1] as unpadded base64url.  With out == NULL returns the
 * number of characters needed (no padding, no NUL); otherwise writes them
 * to out (no NUL appended) and returns the same number.  Returns 0 for an
 * empty input and for a len so large that the result would overflow
 * size_t.
 */
size_t quay_base64url_encode(const unsigned char *in, size_t len, char *out);

/*
 * Decodes in[0..len-1] (unpadded base64url).  With out == NULL only checks
 * the input and sets *outlen to the decoded size.  Otherwise out must have
 * room for that size (it depends only on len: len / 4 * 3, plus 1 when
 * len % 4 == 2, plus 2 when len % 4 == 3) and *outlen is set to the bytes
 * written.  *outlen is never read.  Returns QUAY_OK or QUAY_EINVAL ('=',
 * '+', '/', whitespace or other bytes, len % 4 == 1, non-zero unused bits);
 * on error *outlen is 0 and out may hold partial output.
 */
int quay_base64url_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen);

/*
 * Encodes in[0..len-1] as standard base64 with '=' padding; out == NULL
 * measures, as above.  The result is always a multiple of 4 characters.
 */
size_t quay_base64_encode(const unsigned char *in, size_t len, char *out);

/*
 * Decodes standard padded base64.  len must be a multiple of 4; '=' may
 * only appear as the last one or two characters.  out == NULL measures;
 * otherwise out must have room for the measured size (len / 4 * 3 minus
 * the padding).  *outlen is never read.  QUAY_OK or QUAY_EINVAL.
 */
int quay_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen);

#endif /* QUAY_BASE64_H */
