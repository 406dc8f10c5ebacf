/*
 * Field encryption with DATABASE_SECRET_KEY (format and key rules in
 * quay_crypto.h), constant-time comparison and random tokens.
 *
 * Key derivation reproduces Quay's util/security/secret.py, which leans
 * on Python's int() and uuid.UUID() parsers: the secret is decoded from
 * UTF-8 into code points, and those two parsers are rebuilt here on the
 * code points (Python counts characters, not bytes).  Python's int() on a
 * str first maps non-ASCII whitespace to ' ' and non-ASCII decimal digits
 * to '0'..'9' (_PyUnicode_TransformDecimalAndSpaceToASCII), then parses
 * ASCII (PyLong_FromString): whitespace, a sign, for base 16 an optional
 * "0x" and one '_', digits with single underscores between them,
 * whitespace.  The Unicode tables below were generated from Python 3.11's
 * unicodedata (Unicode 14.0: every character with a decimal value, and
 * every non-ASCII character for which str.isspace() is true), plus the
 * two digit blocks Unicode 15.0 added (Kawi, Nag Mundari) for Python 3.12.
 * Decimal strings are turned into bytes by schoolbook multiplication,
 * bounded by Python's own 4,300-digit limit.  Every scratch buffer that
 * held the secret is wiped with OPENSSL_cleanse() before it is freed.
 *
 * Encryption goes through OpenSSL 3's EVP AEAD interface.  Nothing is
 * allocated besides the EVP context: encryption feeds the nonce, the
 * ciphertext (made chunk by chunk) and the tag through a small base64
 * encoder into the caller's buffer, and decryption first checks the
 * whole base64 text, then decodes it chunk by chunk, sending nonce and
 * tag to the stack and the ciphertext straight into the caller's buffer,
 * where it is decrypted in place (EVP allows in == out).  GCM releases
 * plaintext before the tag is checked in EVP_DecryptFinal_ex(), so on any
 * failure the output buffer is wiped.  CCM (Quay's v0) must see the
 * whole message in one EVP_DecryptUpdate() call, which also checks the
 * tag; that call is always given non-NULL pointers, because OpenSSL's
 * CCM treats a NULL input with a non-NULL output as "finish" and would
 * skip the tag check for an empty plaintext.
 *
 * OpenSSL's error queue is restored with ERR_set_mark()/ERR_pop_to_mark()
 * so a failed decryption leaves nothing for nginx's SSL code to misreport.
 */

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "quay_base64.h"
#include "quay_crypto.h"


#define QUAY_CRYPTO_V1_PREFIX       "v1$$"
#define QUAY_CRYPTO_V0_PREFIX       "v0$$"
#define QUAY_CRYPTO_V0_MAX          65535   /* CCM with L = 15 - 13 = 2 */

/* Python's default sys.get_int_max_str_digits() (3.11 and later). */
#define QUAY_CRYPTO_PY_MAX_DIGITS   4300

/* Bytes per base64 chunk on the way out (a multiple of 3) and characters
 * per chunk on the way in (a multiple of 4). */
#define QUAY_CRYPTO_ENC_CHUNK       384
#define QUAY_CRYPTO_DEC_CHUNK       512

#define QUAY_CRYPTO_MAX_NONCE       QUAY_CRYPTO_V0_NONCE_LEN


typedef struct {
    char           *out;        /* borrowed: the caller's buffer */
    size_t          n;          /* characters written to out */
    size_t          len;        /* bytes pending in buf */
    unsigned char   buf[QUAY_CRYPTO_ENC_CHUNK];
} quay_crypto_b64_t;


static int quay_crypto_utf8_decode(const unsigned char *s, size_t len,
    uint32_t *cp, size_t *n);
static int quay_crypto_py_ascii(uint32_t c);
static int quay_crypto_py_isspace(char c);
static int quay_crypto_py_digit(char c, int base);
static int quay_crypto_py_int(const uint32_t *cp, size_t n, int base,
    char *ascii, unsigned char *digits, size_t *ndigits, int *negative);
static size_t quay_crypto_to_bytes(const unsigned char *digits, size_t nd,
    unsigned base, unsigned char *out, size_t cap);
static int quay_crypto_key_int(const uint32_t *cp, size_t n, char *ascii,
    unsigned char *digits, unsigned char *mat, size_t cap, size_t *matlen);
static size_t quay_crypto_remove(uint32_t *s, size_t n, const char *what);
static int quay_crypto_key_uuid(const uint32_t *cp, size_t n,
    uint32_t *tmp, char *ascii, unsigned char *digits, unsigned char *mat,
    size_t *matlen);
static void quay_crypto_b64_feed(quay_crypto_b64_t *b,
    const unsigned char *p, size_t len);
static void quay_crypto_b64_finish(quay_crypto_b64_t *b);
static int quay_crypto_gcm_seal(const unsigned char *key,
    const unsigned char *nonce, const unsigned char *pt, size_t len,
    const unsigned char *ad, size_t ad_len, quay_crypto_b64_t *b);
static int quay_crypto_gcm_open(const unsigned char *key,
    const unsigned char *nonce, unsigned char *buf, size_t len,
    const unsigned char *ad, size_t ad_len, const unsigned char *tag);
static int quay_crypto_ccm_open(const unsigned char *key,
    const unsigned char *nonce, unsigned char *buf, size_t len,
    const unsigned char *tag);


/* Code points of the digit zero of every Unicode block of decimal digits
 * (each block is ten consecutive characters, 0 to 9). */
static const uint32_t  quay_crypto_zeros[] = {
    0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66,
    0xce6, 0xd66, 0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0,
    0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40,
    0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0,
    0xff10, 0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0,
    0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0,
    0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0,
    0x1e950, 0x1fbf0,
    0x11f50, 0x1e4f0                    /* Unicode 15.0 */
};

/* Non-ASCII whitespace for Python's str.isspace(). */
static const uint32_t  quay_crypto_spaces[] = {
    0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
    0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f,
    0x205f, 0x3000
};


/*
 * Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF), as Python requires of a str read from YAML.
 */
static int
quay_crypto_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp,
    size_t *n)
{
    size_t    i, j, need, k;
    uint32_t  v, min;

    k = 0;
    i = 0;

    while (i < len) {
        if (s[i] < 0x80) {
            cp[k++] = s[i++];
            continue;
        }

        if (s[i] >= 0xc2 && s[i] <= 0xdf) {
            need = 1;
            v = s[i] & 0x1f;
            min = 0x80;

        } else if (s[i] >= 0xe0 && s[i] <= 0xef) {
            need = 2;
            v = s[i] & 0x0f;
            min = 0x800;

        } else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
            need = 3;
            v = s[i] & 0x07;
            min = 0x10000;

        } else {
            return QUAY_EINVAL;
        }

        if (len - i - 1 < need) {
            return QUAY_EINVAL;
        }

        for (j = 1; j <= need; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return QUAY_EINVAL;
            }
            v = v << 6 | (s[i + j] & 0x3f);
        }

        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
            return QUAY_EINVAL;
        }

        cp[k++] = v;
        i += need + 1;
    }

    *n = k;

    return QUAY_OK;
}


/*
 * One character of _PyUnicode_TransformDecimalAndSpaceToASCII(): ASCII
 * stays, other whitespace becomes ' ', another decimal digit becomes its
 * ASCII digit; anything else is -1 (Python then fails to parse).
 */
static int
quay_crypto_py_ascii(uint32_t c)
{
    size_t  i;

    if (c < 0x80) {
        return (int) c;
    }

    for (i = 0; i < sizeof(quay_crypto_spaces) / sizeof(uint32_t); i++) {
        if (c == quay_crypto_spaces[i]) {
            return ' ';
        }
    }

    for (i = 0; i < sizeof(quay_crypto_zeros) / sizeof(uint32_t); i++) {
        if (c >= quay_crypto_zeros[i] && c - quay_crypto_zeros[i] < 10) {
            return '0' + (int) (c - quay_crypto_zeros[i]);
        }
    }

    return -1;
}


/* Py_ISSPACE(): the C locale's whitespace, which is all that is left
 * after the mapping above. */
static int
quay_crypto_py_isspace(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
           || c == '\r';
}


static int
quay_crypto_py_digit(char c, int base)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (base == 16 && c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (base == 16 && c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/*
 * Python's int(s, base) for a str s = cp[0..n-1] and base 10 or 16.
 * Returns 1 when Python accepts s, with the digit values (no sign,
 * prefix or underscores) in digits[0..*ndigits-1], or 0 where Python
 * raises ValueError.  ascii and digits need room for n entries.
 */
static int
quay_crypto_py_int(const uint32_t *cp, size_t n, int base, char *ascii,
    unsigned char *digits, size_t *ndigits, int *negative)
{
    int     c, underscore;
    size_t  i, nd;

    for (i = 0; i < n; i++) {
        c = quay_crypto_py_ascii(cp[i]);
        if (c < 0) {
            return 0;
        }
        ascii[i] = (char) c;
    }

    i = 0;
    while (i < n && quay_crypto_py_isspace(ascii[i])) {
        i++;
    }

    *negative = 0;
    if (i < n && (ascii[i] == '+' || ascii[i] == '-')) {
        *negative = ascii[i] == '-';
        i++;
    }

    if (base == 16 && n - i >= 2 && ascii[i] == '0'
        && (ascii[i + 1] == 'x' || ascii[i + 1] == 'X'))
    {
        i += 2;
        if (i < n && ascii[i] == '_') {     /* one allowed after "0x" */
            i++;
        }
    }

    if (i < n && ascii[i] == '_') {
        return 0;
    }

    nd = 0;
    underscore = 0;

    for ( /* void */ ; i < n; i++) {
        if (ascii[i] == '_') {
            if (underscore) {
                return 0;
            }
            underscore = 1;
            continue;
        }

        c = quay_crypto_py_digit(ascii[i], base);
        if (c < 0) {
            break;
        }

        digits[nd++] = (unsigned char) c;
        underscore = 0;
    }

    if (underscore || nd == 0) {
        return 0;
    }

    while (i < n && quay_crypto_py_isspace(ascii[i])) {
        i++;
    }

    if (i != n) {
        return 0;
    }

    if (base == 10 && nd > QUAY_CRYPTO_PY_MAX_DIGITS) {
        return 0;
    }

    *ndigits = nd;

    return 1;
}


/*
 * Converts digits in base 10 or 16 to the big-endian bytes of the number
 * without leading zeros (0 for the number 0).  Returns the byte count, or
 * (size_t) -1 if it would exceed cap (it never does when cap >= nd).
 */
static size_t
quay_crypto_to_bytes(const unsigned char *digits, size_t nd, unsigned base,
    unsigned char *out, size_t cap)
{
    size_t         i, j, used;
    unsigned       v, carry;
    unsigned char  t;

    used = 0;

    /* little-endian while multiplying, reversed at the end */
    for (i = 0; i < nd; i++) {
        carry = digits[i];

        for (j = 0; j < used; j++) {
            v = out[j] * base + carry;
            out[j] = (unsigned char) (v & 0xff);
            carry = v >> 8;
        }

        while (carry != 0) {
            if (used == cap) {
                return (size_t) -1;
            }
            out[used++] = (unsigned char) (carry & 0xff);
            carry >>= 8;
        }
    }

    for (i = 0; i < used / 2; i++) {
        t = out[i];
        out[i] = out[used - 1 - i];
        out[used - 1 - i] = t;
    }

    return used;
}


/*
 * Rule 1: bytearray.fromhex("{:02x}".format(int(secret))).  Returns 1
 * with the material in mat, or 0 when Quay's try block fails.
 */
static int
quay_crypto_key_int(const uint32_t *cp, size_t n, char *ascii,
    unsigned char *digits, unsigned char *mat, size_t cap, size_t *matlen)
{
    int     negative;
    size_t  nd, used;

    if (!quay_crypto_py_int(cp, n, 10, ascii, digits, &nd, &negative)) {
        return 0;
    }

    used = quay_crypto_to_bytes(digits, nd, 10, mat, cap);
    if (used == (size_t) -1) {
        return 0;
    }

    if (used == 0) {
        /* "{:02x}".format(0) == "00", also for -0 */
        mat[0] = 0;
        *matlen = 1;
        return 1;
    }

    if (negative) {
        return 0;                       /* "-5": fromhex() raises */
    }

    if (used > 1 && mat[0] < 0x10) {
        return 0;                       /* odd hex length: fromhex() raises */
    }

    *matlen = used;

    return 1;
}


/*
 * s.replace(what, "") in place, left to right without overlaps, as
 * Python's str.replace() does.  Returns the new length.
 */
static size_t
quay_crypto_remove(uint32_t *s, size_t n, const char *what)
{
    size_t  i, j, k, wlen;

    wlen = strlen(what);
    k = 0;
    i = 0;

    while (i < n) {
        if (n - i >= wlen) {
            for (j = 0; j < wlen; j++) {
                if (s[i + j] != (uint32_t) (unsigned char) what[j]) {
                    break;
                }
            }

            if (j == wlen) {
                i += wlen;
                continue;
            }
        }

        s[k++] = s[i++];
    }

    return k;
}


/*
 * Rule 2: uuid.UUID(secret).bytes.  Returns 1 with 16 bytes in mat, or 0
 * when uuid.UUID() raises ValueError.  tmp needs room for n entries.
 */
static int
quay_crypto_key_uuid(const uint32_t *cp, size_t n, uint32_t *tmp,
    char *ascii, unsigned char *digits, unsigned char *mat, size_t *matlen)
{
    int            negative;
    size_t         i, k, start, end, nd, used;
    unsigned char  be[32];

    if (n > 0) {
        memcpy(tmp, cp, n * sizeof(uint32_t));
    }

    n = quay_crypto_remove(tmp, n, "urn:");
    n = quay_crypto_remove(tmp, n, "uuid:");

    start = 0;
    end = n;
    while (start < end && (tmp[start] == '{' || tmp[start] == '}')) {
        start++;
    }
    while (end > start && (tmp[end - 1] == '{' || tmp[end - 1] == '}')) {
        end--;
    }

    k = 0;
    for (i = start; i < end; i++) {
        if (tmp[i] != '-') {
            tmp[k++] = tmp[i];
        }
    }

    if (k != 32) {
        return 0;
    }

    if (!quay_crypto_py_int(tmp, k, 16, ascii, digits, &nd, &negative)) {
        return 0;
    }

    /* at most 32 hex digits, so the value is below 2^128 */
    used = quay_crypto_to_bytes(digits, nd, 16, be, sizeof(be));
    if (used == (size_t) -1 || used > 16) {
        OPENSSL_cleanse(be, sizeof(be));
        return 0;
    }

    memset(mat, 0, 16);
    memcpy(mat + 16 - used, be, used);
    *matlen = 16;

    OPENSSL_cleanse(be, sizeof(be));

    return 1;
}


int
quay_crypto_key_derive(const char *secret, size_t len,
    unsigned char key[QUAY_CRYPTO_KEY_LEN], quay_err_t *err)
{
    int             rc;
    size_t          i, n, matlen, cap, size;
    uint32_t       *cp, *tmp;
    unsigned char  *block, *digits, *mat;
    char           *ascii;

    if (key == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "no key buffer");
    }

    memset(key, 0, QUAY_CRYPTO_KEY_LEN);

    if (secret == NULL || len == 0) {
        return quay_err_set(err, QUAY_EINVAL,
                            "DATABASE_SECRET_KEY is empty");
    }

    if (len > QUAY_CRYPTO_MAX_SECRET) {
        return quay_err_set(err, QUAY_ERANGE,
                            "DATABASE_SECRET_KEY is longer than %d bytes",
                            QUAY_CRYPTO_MAX_SECRET);
    }

    /* one block: cp[len], tmp[len], ascii[len], digits[len], mat[cap] */
    cap = len + 16;
    size = len * 2 * sizeof(uint32_t) + len * 2 + cap;

    block = malloc(size);
    if (block == NULL) {
        return quay_err_set(err, QUAY_ENOMEM, "out of memory");
    }

    cp = (uint32_t *) (void *) block;
    tmp = cp + len;
    ascii = (char *) (tmp + len);
    digits = (unsigned char *) ascii + len;
    mat = digits + len;

    rc = quay_crypto_utf8_decode((const unsigned char *) secret, len, cp,
                                 &n);
    if (rc != QUAY_OK) {
        rc = quay_err_set(err, QUAY_EINVAL,
                          "DATABASE_SECRET_KEY is not valid UTF-8");
        goto done;
    }

    matlen = 0;

    if (!quay_crypto_key_int(cp, n, ascii, digits, mat, cap, &matlen)
        && !quay_crypto_key_uuid(cp, n, tmp, ascii, digits, mat, &matlen))
    {
        for (i = 0; i < n; i++) {
            if (cp[i] > 0xff) {
                rc = quay_err_set(err, QUAY_EINVAL,
                                  "DATABASE_SECRET_KEY has a character "
                                  "above U+00FF, which Quay cannot use");
                goto done;
            }
            mat[i] = (unsigned char) cp[i];
        }
        matlen = n;
    }

    for (i = 0; i < QUAY_CRYPTO_KEY_LEN; i++) {
        key[i] = mat[i % matlen];
    }

    rc = QUAY_OK;

done:

    OPENSSL_cleanse(block, size);
    free(block);

    return rc;
}


static void
quay_crypto_b64_feed(quay_crypto_b64_t *b, const unsigned char *p,
    size_t len)
{
    size_t  k;

    while (len > 0) {
        k = sizeof(b->buf) - b->len;
        if (k > len) {
            k = len;
        }

        memcpy(b->buf + b->len, p, k);
        b->len += k;
        p += k;
        len -= k;

        /* whole 3-byte groups encode independently of what follows */
        if (b->len == sizeof(b->buf)) {
            b->n += quay_base64_encode(b->buf, b->len, b->out + b->n);
            b->len = 0;
        }
    }
}


static void
quay_crypto_b64_finish(quay_crypto_b64_t *b)
{
    b->n += quay_base64_encode(b->buf, b->len, b->out + b->n);
    b->len = 0;
}


/* AES-256-GCM: feeds ciphertext and tag (not the nonce) to b. */
static int
quay_crypto_gcm_seal(const unsigned char *key, const unsigned char *nonce,
    const unsigned char *pt, size_t len, const unsigned char *ad,
    size_t ad_len, quay_crypto_b64_t *b)
{
    int              rc, outl;
    size_t           i, k;
    unsigned char    ct[QUAY_CRYPTO_ENC_CHUNK], tag[QUAY_CRYPTO_TAG_LEN];
    EVP_CIPHER_CTX  *ctx;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return QUAY_ERROR;
    }

    rc = QUAY_ERROR;

    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1) {
        goto done;
    }

    if (ad_len > 0
        && EVP_EncryptUpdate(ctx, NULL, &outl, ad, (int) ad_len) != 1)
    {
        goto done;
    }

    for (i = 0; i < len; i += k) {
        k = len - i < sizeof(ct) ? len - i : sizeof(ct);

        if (EVP_EncryptUpdate(ctx, ct, &outl, pt + i, (int) k) != 1
            || (size_t) outl != k)
        {
            goto done;
        }

        quay_crypto_b64_feed(b, ct, k);
    }

    if (EVP_EncryptFinal_ex(ctx, ct, &outl) != 1 || outl != 0) {
        goto done;
    }

    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, QUAY_CRYPTO_TAG_LEN,
                            tag)
        != 1)
    {
        goto done;
    }

    quay_crypto_b64_feed(b, tag, sizeof(tag));

    rc = QUAY_OK;

done:

    EVP_CIPHER_CTX_free(ctx);

    return rc;
}


int
quay_crypto_encrypt(const unsigned char key[QUAY_CRYPTO_KEY_LEN],
    const void *plaintext, size_t len, const void *ad, size_t ad_len,
    char *out, size_t outlen, size_t *written, quay_err_t *err)
{
    int                rc;
    size_t             need;
    unsigned char      nonce[QUAY_CRYPTO_V1_NONCE_LEN];
    quay_crypto_b64_t  b;

    if (written != NULL) {
        *written = 0;
    }

    if (out != NULL && outlen > 0) {
        out[0] = '\0';
    }

    if (key == NULL || written == NULL || (plaintext == NULL && len != 0)
        || (ad == NULL && ad_len != 0))
    {
        return quay_err_set(err, QUAY_EINVAL, "encrypt: missing argument");
    }

    if (len > QUAY_CRYPTO_MAX_PLAINTEXT || ad_len > INT_MAX) {
        return quay_err_set(err, QUAY_ERANGE,
                            "encrypt: value or context too long");
    }

    need = QUAY_CRYPTO_ENCRYPTED_LEN(len);

    if (out == NULL) {
        *written = need;
        return QUAY_OK;
    }

    if (outlen <= need) {
        *written = need;
        return quay_err_set(err, QUAY_ERANGE,
                            "encrypt: output buffer too small");
    }

    ERR_set_mark();

    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        rc = quay_err_set(err, QUAY_ERROR, "encrypt: no randomness");
        goto done;
    }

    memcpy(out, QUAY_CRYPTO_V1_PREFIX, QUAY_CRYPTO_PREFIX_LEN);

    b.out = out + QUAY_CRYPTO_PREFIX_LEN;
    b.n = 0;
    b.len = 0;

    quay_crypto_b64_feed(&b, nonce, sizeof(nonce));

    if (quay_crypto_gcm_seal(key, nonce, plaintext, len, ad, ad_len, &b)
        != QUAY_OK)
    {
        out[0] = '\0';
        rc = quay_err_set(err, QUAY_ERROR, "encrypt: OpenSSL failed");
        goto done;
    }

    quay_crypto_b64_finish(&b);

    out[need] = '\0';
    *written = need;
    rc = QUAY_OK;

done:

    (void) ERR_pop_to_mark();

    return rc;
}


/* AES-256-GCM in place on buf[0..len-1]; QUAY_OK only if the tag holds. */
static int
quay_crypto_gcm_open(const unsigned char *key, const unsigned char *nonce,
    unsigned char *buf, size_t len, const unsigned char *ad, size_t ad_len,
    const unsigned char *tag)
{
    int              rc, outl;
    unsigned char    fin[QUAY_CRYPTO_TAG_LEN];
    EVP_CIPHER_CTX  *ctx;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return QUAY_ERROR;
    }

    rc = QUAY_ERROR;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1) {
        goto done;
    }

    if (ad_len > 0
        && EVP_DecryptUpdate(ctx, NULL, &outl, ad, (int) ad_len) != 1)
    {
        goto done;
    }

    if (len > 0
        && (EVP_DecryptUpdate(ctx, buf, &outl, buf, (int) len) != 1
            || (size_t) outl != len))
    {
        goto done;
    }

    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, QUAY_CRYPTO_TAG_LEN,
                            (void *) tag)
        != 1)
    {
        goto done;
    }

    if (EVP_DecryptFinal_ex(ctx, fin, &outl) != 1) {
        goto done;
    }

    rc = QUAY_OK;

done:

    EVP_CIPHER_CTX_free(ctx);

    return rc;
}


/* AES-256-CCM (Quay's v0) in place on buf[0..len-1]; buf is never NULL
 * (see the design note above). */
static int
quay_crypto_ccm_open(const unsigned char *key, const unsigned char *nonce,
    unsigned char *buf, size_t len, const unsigned char *tag)
{
    int              rc, outl;
    EVP_CIPHER_CTX  *ctx;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return QUAY_ERROR;
    }

    rc = QUAY_ERROR;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_ccm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN,
                               QUAY_CRYPTO_V0_NONCE_LEN, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG,
                               QUAY_CRYPTO_TAG_LEN, (void *) tag) != 1
        || EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1)
    {
        goto done;
    }

    /* CCM needs the total length first */
    if (EVP_DecryptUpdate(ctx, NULL, &outl, NULL, (int) len) != 1) {
        goto done;
    }

    if (EVP_DecryptUpdate(ctx, buf, &outl, buf, (int) len) != 1
        || (size_t) outl != len)
    {
        goto done;
    }

    rc = QUAY_OK;

done:

    EVP_CIPHER_CTX_free(ctx);

    return rc;
}


int
quay_crypto_decrypt(const unsigned char key[QUAY_CRYPTO_KEY_LEN],
    const char *text, size_t len, const void *ad, size_t ad_len,
    unsigned char *out, size_t outlen, size_t *written, quay_err_t *err)
{
    int            rc, version;
    size_t         blen, dlen, nlen, ptlen, max, i, k, j, got, pos;
    const char    *body;
    unsigned char  nonce[QUAY_CRYPTO_MAX_NONCE], tag[QUAY_CRYPTO_TAG_LEN];
    unsigned char  chunk[QUAY_CRYPTO_DEC_CHUNK / 4 * 3];

    if (written != NULL) {
        *written = 0;
    }

    if (out != NULL && outlen > 0) {
        out[0] = '\0';
    }

    if (key == NULL || written == NULL || (text == NULL && len != 0)
        || (ad == NULL && ad_len != 0))
    {
        return quay_err_set(err, QUAY_EINVAL, "decrypt: missing argument");
    }

    version = quay_crypto_version(text, len);
    if (version < 0) {
        return quay_err_set(err, QUAY_EVERSION,
                            "decrypt: not an encrypted value of a known "
                            "version (v0$$ or v1$$)");
    }

    if (version == 1) {
        nlen = QUAY_CRYPTO_V1_NONCE_LEN;
        max = QUAY_CRYPTO_MAX_PLAINTEXT;

    } else {
        nlen = QUAY_CRYPTO_V0_NONCE_LEN;
        max = QUAY_CRYPTO_V0_MAX;
    }

    if (ad_len > INT_MAX) {
        return quay_err_set(err, QUAY_ERANGE, "decrypt: context too long");
    }

    body = text + QUAY_CRYPTO_PREFIX_LEN;
    blen = len - QUAY_CRYPTO_PREFIX_LEN;

    /* bound the work before looking at the base64 */
    if (blen / 4 * 3 > max + nlen + QUAY_CRYPTO_TAG_LEN + 2) {
        return quay_err_set(err, QUAY_ERANGE, "decrypt: value too long");
    }

    if (quay_base64_decode(body, blen, NULL, &dlen) != QUAY_OK) {
        return quay_err_set(err, QUAY_EINVAL, "decrypt: bad base64");
    }

    if (dlen < nlen + QUAY_CRYPTO_TAG_LEN) {
        return quay_err_set(err, QUAY_EINVAL, "decrypt: value too short");
    }

    ptlen = dlen - nlen - QUAY_CRYPTO_TAG_LEN;

    if (ptlen > max) {
        return quay_err_set(err, QUAY_ERANGE, "decrypt: value too long");
    }

    if (out == NULL) {
        *written = ptlen;
        return QUAY_OK;
    }

    if (outlen <= ptlen) {
        *written = ptlen;
        return quay_err_set(err, QUAY_ERANGE,
                            "decrypt: output buffer too small");
    }

    /* nonce || ciphertext || tag: the ciphertext lands in out */
    pos = 0;

    for (i = 0; i < blen; i += k) {
        k = blen - i < QUAY_CRYPTO_DEC_CHUNK ? blen - i
                                             : QUAY_CRYPTO_DEC_CHUNK;

        /* the whole text was checked, and '=' only ends it */
        if (quay_base64_decode(body + i, k, chunk, &got) != QUAY_OK) {
            OPENSSL_cleanse(out, ptlen);
            return quay_err_set(err, QUAY_EINVAL, "decrypt: bad base64");
        }

        for (j = 0; j < got; j++, pos++) {
            if (pos < nlen) {
                nonce[pos] = chunk[j];

            } else if (pos - nlen < ptlen) {
                out[pos - nlen] = chunk[j];

            } else {
                tag[pos - nlen - ptlen] = chunk[j];
            }
        }
    }

    ERR_set_mark();

    if (version == 1) {
        rc = quay_crypto_gcm_open(key, nonce, out, ptlen, ad, ad_len, tag);

    } else {
        rc = quay_crypto_ccm_open(key, nonce, out, ptlen, tag);
    }

    (void) ERR_pop_to_mark();

    if (rc != QUAY_OK) {
        OPENSSL_cleanse(out, ptlen);
        out[0] = '\0';
        return quay_err_set(err, QUAY_ERROR,
                            "decrypt: authentication failed (wrong "
                            "DATABASE_SECRET_KEY, wrong field, or a "
                            "modified value)");
    }

    out[ptlen] = '\0';
    *written = ptlen;

    return QUAY_OK;
}


int
quay_crypto_version(const char *text, size_t len)
{
    if (text == NULL || len < QUAY_CRYPTO_PREFIX_LEN) {
        return QUAY_EVERSION;
    }

    if (memcmp(text, QUAY_CRYPTO_V1_PREFIX, QUAY_CRYPTO_PREFIX_LEN) == 0) {
        return 1;
    }

    if (memcmp(text, QUAY_CRYPTO_V0_PREFIX, QUAY_CRYPTO_PREFIX_LEN) == 0) {
        return 0;
    }

    return QUAY_EVERSION;
}


int
quay_crypto_equal(const void *a, const void *b, size_t len)
{
    if (len == 0) {
        return 1;
    }

    return CRYPTO_memcmp(a, b, len) == 0;
}


int
quay_crypto_equal_len(const void *a, size_t alen, const void *b,
    size_t blen)
{
    if (alen != blen) {
        return 0;
    }

    return quay_crypto_equal(a, b, alen);
}


int
quay_crypto_random_token(char *out, size_t len, quay_err_t *err)
{
    size_t         i, j;
    unsigned       v, m;
    unsigned char  rnd[64];

    if (out == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "random token: no buffer");
    }

    i = 0;

    while (i < len) {
        ERR_set_mark();
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            (void) ERR_pop_to_mark();
            OPENSSL_cleanse(out, i);
            out[0] = '\0';
            return quay_err_set(err, QUAY_ERROR,
                                "random token: no randomness");
        }
        (void) ERR_pop_to_mark();

        for (j = 0; j < sizeof(rnd) && i < len; j++) {
            /* 252 = 7 * 36: taking the rest of a byte below 252 is
             * uniform; bytes 252..255 are dropped */
            if (rnd[j] >= 252) {
                continue;
            }

            v = rnd[j] % 36u;

            /* 'A' + v for v < 26, '0' + v - 26 after, without a branch
             * or a table lookup on the secret value */
            m = 0u - ((25u - v) >> (sizeof(unsigned) * CHAR_BIT - 1));
            out[i++] = (char) ('A' + v + (m & (unsigned) ('0' - 'A' - 26)));
        }
    }

    out[len] = '\0';

    OPENSSL_cleanse(rnd, sizeof(rnd));

    return QUAY_OK;
}


void
quay_crypto_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0) {
        OPENSSL_cleanse(p, len);
    }
}
