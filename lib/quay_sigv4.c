/*
 * AWS Signature Version 4 for S3; the contract is in quay_sigv4.h.
 *
 * One generator writes each text (canonical request, string to sign,
 * Authorization value, presigned query) into a "sink" that counts, copies
 * into the caller's buffer, feeds SHA-256, or feeds an HMAC, in any
 * combination.  Every public producer runs it twice, first counting, then
 * filling, so measuring and filling cannot disagree and nothing is written
 * when the buffer is short.  The signature runs it once into SHA-256 (the
 * canonical request) and once into HMAC (the string to sign), so a request
 * is signed without allocating and whatever its header values weigh.
 *
 * Ordering.  Headers are emitted by lowercase name and query parameters by
 * encoded name, encoded value, then position, each by repeated selection
 * of the smallest item above the last one emitted: O(n^2) comparisons and
 * no scratch memory, which suits a few headers and caps n at
 * QUAY_SIGV4_MAX_FIELDS.  Encoded strings are compared through an
 * iterator that encodes on the fly, because AWS sorts after encoding.  A
 * presigned URL's X-Amz-* parameters are not caller data: they are a
 * short, already sorted list merged into the caller's parameters, whose
 * names may not collide with them.
 *
 * Keys.  kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
 * service), "aws4_request"), with EVP_MAC (OpenSSL 3).  "AWS4" + secret
 * is built in a 64-byte stack block when it fits; a longer one is replaced
 * by its SHA-256, which is what HMAC does to a key longer than its block
 * (RFC 2104 section 2), so no secret-sized buffer is ever allocated.  Key
 * material on the stack is wiped with OPENSSL_cleanse() before returning.
 *
 * Validation happens once, up front, and decides everything the
 * generator could otherwise get wrong: characters that would break the
 * canonical form (':' or whitespace in a header name, a line break in a
 * value, '/' in a region), the date format, the payload hash, and field
 * counts.  Error messages name fields and positions, never values.
 */

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "quay_sha256.h"
#include "quay_sigv4.h"


#define QUAY_SIGV4_NONE         ((size_t) -1)
#define QUAY_SIGV4_HMAC_BLOCK   64
#define QUAY_SIGV4_TERMINATOR   "aws4_request"
#define QUAY_SIGV4_MAX_EXTRAS   6


typedef enum {
    QUAY_SIGV4_EXTRA_PLAIN = 0,          /* value URI-encoded as given */
    QUAY_SIGV4_EXTRA_CREDENTIAL,         /* access key and scope */
    QUAY_SIGV4_EXTRA_SIGNED_HEADERS      /* the signed header names */
} quay_sigv4_extra_e;

/* One X-Amz-* parameter of a presigned URL.  Names are unreserved
 * characters only, so they are their own encoding. */
typedef struct {
    const char          *name;
    size_t               name_len;
    quay_sigv4_extra_e   kind;
    const char          *value;          /* QUAY_SIGV4_EXTRA_PLAIN only */
    size_t               value_len;
} quay_sigv4_extra_t;

/* The X-Amz-* parameters in sorted order; none for header signing.  Items
 * point into the request and into expires[], so this is never copied. */
typedef struct {
    quay_sigv4_extra_t   item[QUAY_SIGV4_MAX_EXTRAS];
    size_t               n;
    char                 expires[24];    /* decimal X-Amz-Expires */
} quay_sigv4_extras_t;

typedef struct {
    char                *out;            /* borrowed; NULL: do not copy */
    size_t               len;            /* bytes produced so far */
    quay_sha256_t       *sha;            /* borrowed; NULL: do not hash */
    EVP_MAC_CTX         *mac;            /* borrowed; NULL: no HMAC */
    int                  overflow;       /* len would pass SIZE_MAX */
    int                  failed;         /* EVP_MAC_update() failed */
} quay_sigv4_sink_t;

/* Yields the URI encoding of p[0..len-1] one byte at a time. */
typedef struct {
    const unsigned char *p;
    size_t               len;
    size_t               i;
    unsigned char        pending[2];     /* hex digits still to yield */
    size_t               npending;
} quay_sigv4_enc_t;


/* The parameter names a presigned URL reserves, compared ignoring case. */
static const char  *quay_sigv4_reserved[] = {
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-Security-Token", "X-Amz-SignedHeaders", "X-Amz-Signature"
};

static const char  quay_sigv4_upper_hex[] = "0123456789ABCDEF";
static const char  quay_sigv4_lower_hex[] = "0123456789abcdef";


static int quay_sigv4_unreserved(unsigned char c);
static int quay_sigv4_tchar(unsigned char c);
static int quay_sigv4_scope_char(unsigned char c);
static unsigned char quay_sigv4_lower(unsigned char c);
static void quay_sigv4_put(quay_sigv4_sink_t *s, const void *p, size_t n);
static void quay_sigv4_put_str(quay_sigv4_sink_t *s, const char *str);
static void quay_sigv4_put_encoded(quay_sigv4_sink_t *s, const char *p,
    size_t len, int keep_slash);
static void quay_sigv4_put_lower(quay_sigv4_sink_t *s, const char *p,
    size_t len);
static void quay_sigv4_put_value(quay_sigv4_sink_t *s, const char *p,
    size_t len);
static int quay_sigv4_enc_next(quay_sigv4_enc_t *it);
static int quay_sigv4_cmp_encoded(const char *a, size_t a_len,
    const char *b, size_t b_len);
static int quay_sigv4_cmp_lower(const char *a, size_t a_len, const char *b,
    size_t b_len);
static int quay_sigv4_cmp_param(const quay_sigv4_request_t *req, size_t a,
    size_t b);
static size_t quay_sigv4_next_param(const quay_sigv4_request_t *req,
    size_t last);
static size_t quay_sigv4_next_header(const quay_sigv4_request_t *req,
    size_t last);
static void quay_sigv4_put_path(quay_sigv4_sink_t *s,
    const quay_sigv4_request_t *req);
static void quay_sigv4_put_headers(quay_sigv4_sink_t *s,
    const quay_sigv4_request_t *req);
static void quay_sigv4_put_signed_headers(quay_sigv4_sink_t *s,
    const quay_sigv4_request_t *req, const char *sep);
static void quay_sigv4_put_extra(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extra_t *e);
static void quay_sigv4_put_query(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex);
static void quay_sigv4_put_canonical(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex);
static void quay_sigv4_put_scope(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req);
static void quay_sigv4_put_string_to_sign(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const char creq_hex[QUAY_SIGV4_HEX_LEN]);
static void quay_sigv4_put_authorization(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const char sig[QUAY_SIGV4_HEX_LEN]);
static void quay_sigv4_put_presigned(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex, const char sig[QUAY_SIGV4_HEX_LEN]);
static void quay_sigv4_hex(const unsigned char *in, size_t n, char *out);
static int quay_sigv4_check_date(const char *p, size_t len);
static int quay_sigv4_check_amz_date(const char *p, size_t len);
static int quay_sigv4_check_scope(const char *what, const char *p,
    size_t len, quay_err_t *err);
static int quay_sigv4_check_key_args(const char *secret, size_t secret_len,
    const char *date, size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len, quay_err_t *err);
static int quay_sigv4_check_encoded_path(const char *p, size_t len);
static int quay_sigv4_check_payload_hash(const char *p, size_t len);
static int quay_sigv4_check_headers(const quay_sigv4_request_t *req,
    quay_err_t *err);
static int quay_sigv4_check_query(const quay_sigv4_request_t *req,
    quay_err_t *err);
static int quay_sigv4_check(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, quay_err_t *err);
static void quay_sigv4_extras_init(quay_sigv4_extras_t *ex,
    const quay_sigv4_request_t *req);
static int quay_sigv4_canonical_hex(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, const quay_sigv4_extras_t *ex,
    char out[QUAY_SIGV4_HEX_LEN], quay_err_t *err);
static EVP_MAC_CTX *quay_sigv4_mac_new(void);
static int quay_sigv4_mac_init(EVP_MAC_CTX *ctx, const unsigned char *key,
    size_t len);
static int quay_sigv4_hmac(EVP_MAC_CTX *ctx, const unsigned char *key,
    size_t key_len, const void *data, size_t len,
    unsigned char out[QUAY_SIGV4_KEY_LEN]);
static int quay_sigv4_derive(const char *secret, size_t secret_len,
    const char *date, const char *region, size_t region_len,
    const char *service, size_t service_len,
    unsigned char out[QUAY_SIGV4_KEY_LEN]);
static void quay_sigv4_fingerprint(const char *secret, size_t secret_len,
    const char *region, size_t region_len, const char *service,
    size_t service_len, unsigned char out[32]);
static int quay_sigv4_sign(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, const quay_sigv4_extras_t *ex,
    char sig[QUAY_SIGV4_HEX_LEN], quay_err_t *err);
static int quay_sigv4_room(size_t need, char *out, size_t size, size_t *len,
    quay_err_t *err);


/* RFC 3986 unreserved: A-Z a-z 0-9 '-' '.' '_' '~'. */
static int
quay_sigv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~';
}


/* RFC 9110 tchar, what a method or header name is made of. */
static int
quay_sigv4_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/* What a region or service may hold: no '/', which splits the scope. */
static int
quay_sigv4_scope_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}


static unsigned char
quay_sigv4_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c + ('a' - 'A')) : c;
}


static void
quay_sigv4_put(quay_sigv4_sink_t *s, const void *p, size_t n)
{
    if (n == 0 || s->overflow) {
        return;
    }

    if (n > SIZE_MAX - s->len) {
        s->overflow = 1;
        return;
    }

    if (s->out != NULL) {
        memcpy(s->out + s->len, p, n);
    }

    if (s->sha != NULL) {
        quay_sha256_update(s->sha, p, n);
    }

    if (s->mac != NULL && EVP_MAC_update(s->mac, p, n) != 1) {
        s->failed = 1;
    }

    s->len += n;
}


static void
quay_sigv4_put_str(quay_sigv4_sink_t *s, const char *str)
{
    quay_sigv4_put(s, str, strlen(str));
}


/* Runs of bytes that stay are written in one piece, the others as %XX. */
static void
quay_sigv4_put_encoded(quay_sigv4_sink_t *s, const char *p, size_t len,
    int keep_slash)
{
    size_t         i, start;
    unsigned char  c;
    char           esc[3];

    i = 0;
    while (i < len) {
        start = i;
        while (i < len
               && (quay_sigv4_unreserved((unsigned char) p[i])
                   || (keep_slash && p[i] == '/')))
        {
            i++;
        }

        quay_sigv4_put(s, p + start, i - start);

        if (i < len) {
            c = (unsigned char) p[i];
            esc[0] = '%';
            esc[1] = quay_sigv4_upper_hex[c >> 4];
            esc[2] = quay_sigv4_upper_hex[c & 0x0f];
            quay_sigv4_put(s, esc, 3);
            i++;
        }
    }
}


/* Lowercases through a small block, so a name of any length fits. */
static void
quay_sigv4_put_lower(quay_sigv4_sink_t *s, const char *p, size_t len)
{
    size_t         i, n;
    unsigned char  block[64];

    while (len > 0) {
        n = len < sizeof(block) ? len : sizeof(block);
        for (i = 0; i < n; i++) {
            block[i] = quay_sigv4_lower((unsigned char) p[i]);
        }

        quay_sigv4_put(s, block, n);
        p += n;
        len -= n;
    }
}


/*
 * A header value as AWS canonicalizes it: the words (runs of bytes other
 * than space and tab) joined by single spaces, which trims both ends and
 * collapses inner runs, quoted or not.
 */
static void
quay_sigv4_put_value(quay_sigv4_sink_t *s, const char *p, size_t len)
{
    size_t  i, start;
    int     words;

    words = 0;
    i = 0;

    while (i < len) {
        if (p[i] == ' ' || p[i] == '\t') {
            i++;
            continue;
        }

        start = i;
        while (i < len && p[i] != ' ' && p[i] != '\t') {
            i++;
        }

        if (words++ > 0) {
            quay_sigv4_put(s, " ", 1);
        }

        quay_sigv4_put(s, p + start, i - start);
    }
}


/* The next byte of the encoding, or -1 at the end. */
static int
quay_sigv4_enc_next(quay_sigv4_enc_t *it)
{
    unsigned char  c;

    if (it->npending > 0) {
        c = it->pending[2 - it->npending];
        it->npending--;
        return c;
    }

    if (it->i == it->len) {
        return -1;
    }

    c = it->p[it->i++];

    if (quay_sigv4_unreserved(c)) {
        return c;
    }

    it->pending[0] = (unsigned char) quay_sigv4_upper_hex[c >> 4];
    it->pending[1] = (unsigned char) quay_sigv4_upper_hex[c & 0x0f];
    it->npending = 2;

    return '%';
}


/* Compares the URI encodings of a and b byte by byte (memcmp order). */
static int
quay_sigv4_cmp_encoded(const char *a, size_t a_len, const char *b,
    size_t b_len)
{
    int               ca, cb;
    quay_sigv4_enc_t  ia, ib;

    memset(&ia, 0, sizeof(ia));
    memset(&ib, 0, sizeof(ib));
    ia.p = (const unsigned char *) a;
    ia.len = a_len;
    ib.p = (const unsigned char *) b;
    ib.len = b_len;

    for ( ;; ) {
        ca = quay_sigv4_enc_next(&ia);
        cb = quay_sigv4_enc_next(&ib);

        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }

        if (ca == -1) {
            return 0;
        }
    }
}


/* Compares a and b as if both were lowercased (ASCII). */
static int
quay_sigv4_cmp_lower(const char *a, size_t a_len, const char *b,
    size_t b_len)
{
    size_t         i, n;
    unsigned char  ca, cb;

    n = a_len < b_len ? a_len : b_len;

    for (i = 0; i < n; i++) {
        ca = quay_sigv4_lower((unsigned char) a[i]);
        cb = quay_sigv4_lower((unsigned char) b[i]);
        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }

    return a_len == b_len ? 0 : (a_len < b_len ? -1 : 1);
}


/* Total order on parameters: encoded name, encoded value, position. */
static int
quay_sigv4_cmp_param(const quay_sigv4_request_t *req, size_t a, size_t b)
{
    int                        rc;
    const quay_sigv4_param_t  *pa, *pb;

    pa = &req->query[a];
    pb = &req->query[b];

    rc = quay_sigv4_cmp_encoded(pa->name, pa->name_len, pb->name,
                                pb->name_len);
    if (rc != 0) {
        return rc;
    }

    rc = quay_sigv4_cmp_encoded(pa->value, pa->value_len, pb->value,
                                pb->value_len);
    if (rc != 0) {
        return rc;
    }

    return a == b ? 0 : (a < b ? -1 : 1);
}


/* The smallest parameter after last (QUAY_SIGV4_NONE: the first one). */
static size_t
quay_sigv4_next_param(const quay_sigv4_request_t *req, size_t last)
{
    size_t  i, best;

    best = QUAY_SIGV4_NONE;

    for (i = 0; i < req->nquery; i++) {
        if (last != QUAY_SIGV4_NONE && quay_sigv4_cmp_param(req, i, last) <= 0)
        {
            continue;
        }

        if (best == QUAY_SIGV4_NONE || quay_sigv4_cmp_param(req, i, best) < 0)
        {
            best = i;
        }
    }

    return best;
}


/*
 * The first header whose lowercase name is the smallest one above last's
 * (QUAY_SIGV4_NONE: the smallest of all), so each name is visited once,
 * at its first occurrence.
 */
static size_t
quay_sigv4_next_header(const quay_sigv4_request_t *req, size_t last)
{
    size_t                      i, best;
    const quay_sigv4_header_t  *h;

    h = req->headers;
    best = QUAY_SIGV4_NONE;

    for (i = 0; i < req->nheaders; i++) {
        if (last != QUAY_SIGV4_NONE
            && quay_sigv4_cmp_lower(h[i].name, h[i].name_len, h[last].name,
                                    h[last].name_len) <= 0)
        {
            continue;
        }

        if (best == QUAY_SIGV4_NONE
            || quay_sigv4_cmp_lower(h[i].name, h[i].name_len, h[best].name,
                                    h[best].name_len) < 0)
        {
            best = i;
        }
    }

    return best;
}


/* S3 encodes the path once and never normalizes it. */
static void
quay_sigv4_put_path(quay_sigv4_sink_t *s, const quay_sigv4_request_t *req)
{
    if (req->path_len == 0 || req->path[0] != '/') {
        quay_sigv4_put(s, "/", 1);
    }

    if (req->path_encoded) {
        quay_sigv4_put(s, req->path, req->path_len);

    } else {
        quay_sigv4_put_encoded(s, req->path, req->path_len, 1);
    }
}


/* "name:value[,value...]\n" per distinct name, values in given order. */
static void
quay_sigv4_put_headers(quay_sigv4_sink_t *s, const quay_sigv4_request_t *req)
{
    size_t                      i, n, first;
    const quay_sigv4_header_t  *h;

    h = req->headers;

    for (first = quay_sigv4_next_header(req, QUAY_SIGV4_NONE);
         first != QUAY_SIGV4_NONE;
         first = quay_sigv4_next_header(req, first))
    {
        quay_sigv4_put_lower(s, h[first].name, h[first].name_len);
        quay_sigv4_put(s, ":", 1);

        n = 0;
        for (i = first; i < req->nheaders; i++) {
            if (quay_sigv4_cmp_lower(h[i].name, h[i].name_len,
                                     h[first].name, h[first].name_len)
                != 0)
            {
                continue;
            }

            if (n++ > 0) {
                quay_sigv4_put(s, ",", 1);
            }

            quay_sigv4_put_value(s, h[i].value, h[i].value_len);
        }

        quay_sigv4_put(s, "\n", 1);
    }
}


/* The distinct lowercase names, sorted, joined by sep (";" or "%3B"). */
static void
quay_sigv4_put_signed_headers(quay_sigv4_sink_t *s,
    const quay_sigv4_request_t *req, const char *sep)
{
    size_t                      h, n;
    const quay_sigv4_header_t  *hd;

    hd = req->headers;
    n = 0;

    for (h = quay_sigv4_next_header(req, QUAY_SIGV4_NONE);
         h != QUAY_SIGV4_NONE;
         h = quay_sigv4_next_header(req, h))
    {
        if (n++ > 0) {
            quay_sigv4_put_str(s, sep);
        }

        quay_sigv4_put_lower(s, hd[h].name, hd[h].name_len);
    }
}


static void
quay_sigv4_put_extra(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extra_t *e)
{
    quay_sigv4_put(s, e->name, e->name_len);
    quay_sigv4_put(s, "=", 1);

    switch (e->kind) {

    case QUAY_SIGV4_EXTRA_CREDENTIAL:
        quay_sigv4_put_encoded(s, cred->access_key, cred->access_key_len, 0);
        quay_sigv4_put_str(s, "%2F");
        quay_sigv4_put(s, req->amz_date, QUAY_SIGV4_DATE_LEN);
        quay_sigv4_put_str(s, "%2F");
        quay_sigv4_put_encoded(s, cred->region, cred->region_len, 0);
        quay_sigv4_put_str(s, "%2F");
        quay_sigv4_put_encoded(s, cred->service, cred->service_len, 0);
        quay_sigv4_put_str(s, "%2F" QUAY_SIGV4_TERMINATOR);
        break;

    case QUAY_SIGV4_EXTRA_SIGNED_HEADERS:
        quay_sigv4_put_signed_headers(s, req, "%3B");
        break;

    case QUAY_SIGV4_EXTRA_PLAIN:
        quay_sigv4_put_encoded(s, e->value, e->value_len, 0);
        break;
    }
}


/* The caller's parameters in selection order, merged with the extras. */
static void
quay_sigv4_put_query(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex)
{
    size_t                     p, e, n;
    const quay_sigv4_param_t  *q;

    p = quay_sigv4_next_param(req, QUAY_SIGV4_NONE);
    e = 0;
    n = 0;

    while (p != QUAY_SIGV4_NONE || e < ex->n) {
        if (n++ > 0) {
            quay_sigv4_put(s, "&", 1);
        }

        q = p != QUAY_SIGV4_NONE ? &req->query[p] : NULL;

        if (q != NULL
            && (e == ex->n
                || quay_sigv4_cmp_encoded(q->name, q->name_len,
                                          ex->item[e].name,
                                          ex->item[e].name_len) < 0))
        {
            quay_sigv4_put_encoded(s, q->name, q->name_len, 0);
            quay_sigv4_put(s, "=", 1);
            quay_sigv4_put_encoded(s, q->value, q->value_len, 0);
            p = quay_sigv4_next_param(req, p);

        } else {
            quay_sigv4_put_extra(s, cred, req, &ex->item[e]);
            e++;
        }
    }
}


static void
quay_sigv4_put_canonical(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex)
{
    quay_sigv4_put(s, req->method, req->method_len);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put_path(s, req);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put_query(s, cred, req, ex);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put_headers(s, req);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put_signed_headers(s, req, ";");
    quay_sigv4_put(s, "\n", 1);

    if (req->payload_hash != NULL) {
        quay_sigv4_put(s, req->payload_hash, req->payload_hash_len);

    } else {
        quay_sigv4_put_str(s, QUAY_SIGV4_UNSIGNED_PAYLOAD);
    }
}


/* "<date>/<region>/<service>/aws4_request" */
static void
quay_sigv4_put_scope(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req)
{
    quay_sigv4_put(s, req->amz_date, QUAY_SIGV4_DATE_LEN);
    quay_sigv4_put(s, "/", 1);
    quay_sigv4_put(s, cred->region, cred->region_len);
    quay_sigv4_put(s, "/", 1);
    quay_sigv4_put(s, cred->service, cred->service_len);
    quay_sigv4_put_str(s, "/" QUAY_SIGV4_TERMINATOR);
}


static void
quay_sigv4_put_string_to_sign(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const char creq_hex[QUAY_SIGV4_HEX_LEN])
{
    quay_sigv4_put_str(s, QUAY_SIGV4_ALGORITHM "\n");
    quay_sigv4_put(s, req->amz_date, QUAY_SIGV4_AMZ_DATE_LEN);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put_scope(s, cred, req);
    quay_sigv4_put(s, "\n", 1);
    quay_sigv4_put(s, creq_hex, QUAY_SIGV4_HEX_LEN);
}


static void
quay_sigv4_put_authorization(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const char sig[QUAY_SIGV4_HEX_LEN])
{
    quay_sigv4_put_str(s, QUAY_SIGV4_ALGORITHM " Credential=");
    quay_sigv4_put(s, cred->access_key, cred->access_key_len);
    quay_sigv4_put(s, "/", 1);
    quay_sigv4_put_scope(s, cred, req);
    quay_sigv4_put_str(s, ", SignedHeaders=");
    quay_sigv4_put_signed_headers(s, req, ";");
    quay_sigv4_put_str(s, ", Signature=");
    quay_sigv4_put(s, sig, QUAY_SIGV4_HEX_LEN);
}


static void
quay_sigv4_put_presigned(quay_sigv4_sink_t *s,
    const quay_sigv4_credentials_t *cred, const quay_sigv4_request_t *req,
    const quay_sigv4_extras_t *ex, const char sig[QUAY_SIGV4_HEX_LEN])
{
    quay_sigv4_put_query(s, cred, req, ex);
    quay_sigv4_put_str(s, "&X-Amz-Signature=");
    quay_sigv4_put(s, sig, QUAY_SIGV4_HEX_LEN);
}


static void
quay_sigv4_hex(const unsigned char *in, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        out[2 * i] = quay_sigv4_lower_hex[in[i] >> 4];
        out[2 * i + 1] = quay_sigv4_lower_hex[in[i] & 0x0f];
    }
}


/* "YYYYMMDD" with a plausible month and day. */
static int
quay_sigv4_check_date(const char *p, size_t len)
{
    size_t  i;
    int     month, day;

    if (p == NULL || len != QUAY_SIGV4_DATE_LEN) {
        return 0;
    }

    for (i = 0; i < QUAY_SIGV4_DATE_LEN; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    month = (p[4] - '0') * 10 + (p[5] - '0');
    day = (p[6] - '0') * 10 + (p[7] - '0');

    return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}


/* "YYYYMMDDTHHMMSSZ" (ISO 8601 basic format, UTC). */
static int
quay_sigv4_check_amz_date(const char *p, size_t len)
{
    size_t  i;

    if (p == NULL || len != QUAY_SIGV4_AMZ_DATE_LEN
        || !quay_sigv4_check_date(p, QUAY_SIGV4_DATE_LEN)
        || p[8] != 'T' || p[15] != 'Z')
    {
        return 0;
    }

    for (i = 9; i < 15; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    return (p[9] - '0') * 10 + (p[10] - '0') < 24
           && (p[11] - '0') * 10 + (p[12] - '0') < 60
           && (p[13] - '0') * 10 + (p[14] - '0') < 60;
}


static int
quay_sigv4_check_scope(const char *what, const char *p, size_t len,
    quay_err_t *err)
{
    size_t  i;

    if (p == NULL || len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: %s is empty", what);
    }

    for (i = 0; i < len; i++) {
        if (!quay_sigv4_scope_char((unsigned char) p[i])) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: %s may only hold "
                                "letters, digits, '.', '_' and '-'", what);
        }
    }

    return QUAY_OK;
}


static int
quay_sigv4_check_key_args(const char *secret, size_t secret_len,
    const char *date, size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len, quay_err_t *err)
{
    int  rc;

    if (secret == NULL || secret_len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: secret key is empty");
    }

    if (!quay_sigv4_check_date(date, date_len)) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: signing date is not "
                            "YYYYMMDD");
    }

    rc = quay_sigv4_check_scope("region", region, region_len, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    return quay_sigv4_check_scope("service", service, service_len, err);
}


/* 1 when p is exactly the canonical encoding of some path. */
static int
quay_sigv4_check_encoded_path(const char *p, size_t len)
{
    size_t         i;
    unsigned char  c, v, hi, lo;

    i = 0;
    while (i < len) {
        c = (unsigned char) p[i];

        if (c != '%') {
            if (!quay_sigv4_unreserved(c) && c != '/') {
                return 0;
            }

            i++;
            continue;
        }

        if (len - i < 3) {
            return 0;
        }

        hi = (unsigned char) p[i + 1];
        lo = (unsigned char) p[i + 2];

        if (!((hi >= '0' && hi <= '9') || (hi >= 'A' && hi <= 'F'))
            || !((lo >= '0' && lo <= '9') || (lo >= 'A' && lo <= 'F')))
        {
            return 0;
        }

        v = (unsigned char) (((hi <= '9' ? hi - '0' : hi - 'A' + 10) << 4)
                             | (lo <= '9' ? lo - '0' : lo - 'A' + 10));

        /* an escaped byte that would not be escaped is another spelling */
        if (quay_sigv4_unreserved(v) || v == '/') {
            return 0;
        }

        i += 3;
    }

    return 1;
}


/*
 * 64 lowercase hex digits, UNSIGNED-PAYLOAD, or one of S3's STREAMING-*
 * literals (A-Z 0-9 '-' after the prefix).  Uppercase hex is refused
 * rather than taken for a literal: it would sign a hash S3 never sees.
 */
static int
quay_sigv4_check_payload_hash(const char *p, size_t len)
{
    size_t  i, prefix;

    if (p == NULL || len == 0) {
        return 0;
    }

    if (len == QUAY_SIGV4_HEX_LEN) {
        for (i = 0; i < len; i++) {
            if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            {
                break;
            }
        }

        if (i == len) {
            return 1;
        }
    }

    if (len == sizeof(QUAY_SIGV4_UNSIGNED_PAYLOAD) - 1
        && memcmp(p, QUAY_SIGV4_UNSIGNED_PAYLOAD, len) == 0)
    {
        return 1;
    }

    prefix = sizeof("STREAMING-") - 1;

    if (len <= prefix || memcmp(p, "STREAMING-", prefix) != 0) {
        return 0;
    }

    for (i = prefix; i < len; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9')
              || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static int
quay_sigv4_check_headers(const quay_sigv4_request_t *req, quay_err_t *err)
{
    size_t                      i, j;
    int                         host;
    unsigned char               c;
    const quay_sigv4_header_t  *h;

    if (req->nheaders > QUAY_SIGV4_MAX_FIELDS) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: %zu headers (at most "
                            "%d)", req->nheaders, QUAY_SIGV4_MAX_FIELDS);
    }

    if (req->nheaders == 0 || req->headers == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: no headers to sign "
                            "(host is required)");
    }

    host = 0;

    for (i = 0; i < req->nheaders; i++) {
        h = &req->headers[i];

        if (h->name == NULL || h->name_len == 0) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: header %zu has "
                                "no name", i);
        }

        for (j = 0; j < h->name_len; j++) {
            if (!quay_sigv4_tchar((unsigned char) h->name[j])) {
                return quay_err_set(err, QUAY_EINVAL, "sigv4: header %zu: "
                                    "name is not an HTTP token", i);
            }
        }

        if (h->value == NULL && h->value_len > 0) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: header %zu has "
                                "no value", i);
        }

        for (j = 0; j < h->value_len; j++) {
            c = (unsigned char) h->value[j];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return quay_err_set(err, QUAY_EINVAL, "sigv4: header "
                                    "\"%.*s\": control character in the "
                                    "value", (int) (h->name_len < 64
                                                    ? h->name_len : 64),
                                    h->name);
            }
        }

        if (quay_sigv4_cmp_lower(h->name, h->name_len, "host", 4) == 0) {
            host = 1;
        }
    }

    if (!host) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: the host header must "
                            "be signed");
    }

    return QUAY_OK;
}


static int
quay_sigv4_check_query(const quay_sigv4_request_t *req, quay_err_t *err)
{
    size_t                     i, k;
    const char                *r;
    const quay_sigv4_param_t  *q;

    if (req->nquery > QUAY_SIGV4_MAX_FIELDS) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: %zu query parameters "
                            "(at most %d)", req->nquery,
                            QUAY_SIGV4_MAX_FIELDS);
    }

    if (req->nquery > 0 && req->query == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: query is NULL");
    }

    for (i = 0; i < req->nquery; i++) {
        q = &req->query[i];

        if ((q->name == NULL && q->name_len > 0)
            || (q->value == NULL && q->value_len > 0))
        {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: query parameter "
                                "%zu is NULL", i);
        }

        if (req->expires == 0) {
            continue;
        }

        for (k = 0; k < sizeof(quay_sigv4_reserved) / sizeof(char *); k++) {
            r = quay_sigv4_reserved[k];
            if (quay_sigv4_cmp_lower(q->name, q->name_len, r, strlen(r))
                == 0)
            {
                return quay_err_set(err, QUAY_EINVAL, "sigv4: query "
                                    "parameter %s is set by presigning", r);
            }
        }
    }

    return QUAY_OK;
}


/* Everything the generator relies on; see the design note above. */
static int
quay_sigv4_check(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, quay_err_t *err)
{
    size_t         i;
    int            rc;
    unsigned char  c;

    if (cred == NULL || req == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: no credentials or "
                            "request");
    }

    if (cred->access_key == NULL || cred->access_key_len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: access key is empty");
    }

    for (i = 0; i < cred->access_key_len; i++) {
        c = (unsigned char) cred->access_key[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == ',') {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: access key holds "
                                "a space, control, non-ASCII, '/' or ','");
        }
    }

    rc = quay_sigv4_check_scope("region", cred->region, cred->region_len,
                                err);
    if (rc != QUAY_OK) {
        return rc;
    }

    rc = quay_sigv4_check_scope("service", cred->service, cred->service_len,
                                err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (req->method == NULL || req->method_len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: method is empty");
    }

    for (i = 0; i < req->method_len; i++) {
        if (!quay_sigv4_tchar((unsigned char) req->method[i])) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: method is not an "
                                "HTTP token");
        }
    }

    if (req->path == NULL && req->path_len > 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: path is NULL");
    }

    if (req->path_encoded
        && !quay_sigv4_check_encoded_path(req->path, req->path_len))
    {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: encoded path is not "
                            "in canonical form (unreserved, '/', %%XX with "
                            "uppercase hex for other bytes only)");
    }

    rc = quay_sigv4_check_query(req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    rc = quay_sigv4_check_headers(req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (req->payload_hash == NULL && req->payload_hash_len == 0
        && req->expires != 0)
    {
        /* a presigned URL: UNSIGNED-PAYLOAD */

    } else if (!quay_sigv4_check_payload_hash(req->payload_hash,
                                              req->payload_hash_len))
    {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: payload hash is not "
                            "64 lowercase hex digits, "
                            QUAY_SIGV4_UNSIGNED_PAYLOAD " or STREAMING-*");
    }

    if (!quay_sigv4_check_amz_date(req->amz_date, req->amz_date_len)) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: date is not "
                            "YYYYMMDDTHHMMSSZ");
    }

    if (req->expires > QUAY_SIGV4_MAX_EXPIRES) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: expires is %lu "
                            "seconds (at most %d)", req->expires,
                            QUAY_SIGV4_MAX_EXPIRES);
    }

    if (req->security_token != NULL || req->security_token_len > 0) {
        if (req->expires == 0) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: with header "
                                "signing, send the security token as an "
                                "x-amz-security-token header");
        }

        if (req->security_token == NULL || req->security_token_len == 0) {
            return quay_err_set(err, QUAY_EINVAL, "sigv4: security token is "
                                "empty");
        }
    }

    return QUAY_OK;
}


static void
quay_sigv4_extras_init(quay_sigv4_extras_t *ex,
    const quay_sigv4_request_t *req)
{
    size_t              n, i;
    char                digits[sizeof(ex->expires)];
    unsigned long       v;
    quay_sigv4_extra_t  *e;

    memset(ex, 0, sizeof(*ex));

    if (req->expires == 0) {
        return;
    }

    v = req->expires;
    n = 0;
    do {
        digits[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < sizeof(digits));

    for (i = 0; i < n; i++) {
        ex->expires[i] = digits[n - 1 - i];
    }

    /* in sorted order: Algorithm, Credential, Date, Expires,
     * Security-Token, SignedHeaders ("Se" < "Si") */
    e = ex->item;

    e->name = "X-Amz-Algorithm";
    e->kind = QUAY_SIGV4_EXTRA_PLAIN;
    e->value = QUAY_SIGV4_ALGORITHM;
    e->value_len = sizeof(QUAY_SIGV4_ALGORITHM) - 1;
    e++;

    e->name = "X-Amz-Credential";
    e->kind = QUAY_SIGV4_EXTRA_CREDENTIAL;
    e++;

    e->name = "X-Amz-Date";
    e->kind = QUAY_SIGV4_EXTRA_PLAIN;
    e->value = req->amz_date;
    e->value_len = QUAY_SIGV4_AMZ_DATE_LEN;
    e++;

    e->name = "X-Amz-Expires";
    e->kind = QUAY_SIGV4_EXTRA_PLAIN;
    e->value = ex->expires;
    e->value_len = n;
    e++;

    if (req->security_token != NULL) {
        e->name = "X-Amz-Security-Token";
        e->kind = QUAY_SIGV4_EXTRA_PLAIN;
        e->value = req->security_token;
        e->value_len = req->security_token_len;
        e++;
    }

    e->name = "X-Amz-SignedHeaders";
    e->kind = QUAY_SIGV4_EXTRA_SIGNED_HEADERS;
    e++;

    ex->n = (size_t) (e - ex->item);

    for (i = 0; i < ex->n; i++) {
        ex->item[i].name_len = strlen(ex->item[i].name);
    }
}


/* The hex SHA-256 of the canonical request, produced without a copy. */
static int
quay_sigv4_canonical_hex(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, const quay_sigv4_extras_t *ex,
    char out[QUAY_SIGV4_HEX_LEN], quay_err_t *err)
{
    unsigned char      digest[QUAY_SHA256_DIGEST_LEN];
    quay_sha256_t      sha;
    quay_sigv4_sink_t  s;

    memset(&s, 0, sizeof(s));
    quay_sha256_init(&sha);
    s.sha = &sha;

    quay_sigv4_put_canonical(&s, cred, req, ex);

    quay_sha256_final(&sha, digest);

    if (s.overflow) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: canonical request is "
                            "too long");
    }

    quay_sigv4_hex(digest, sizeof(digest), out);

    return QUAY_OK;
}


/* An HMAC context; the EVP_MAC reference it holds is its own. */
static EVP_MAC_CTX *
quay_sigv4_mac_new(void)
{
    EVP_MAC      *mac;
    EVP_MAC_CTX  *ctx;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return NULL;
    }

    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    return ctx;
}


static int
quay_sigv4_mac_init(EVP_MAC_CTX *ctx, const unsigned char *key, size_t len)
{
    char        digest[] = "SHA256";
    OSSL_PARAM  params[2];

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 digest, 0);
    params[1] = OSSL_PARAM_construct_end();

    return EVP_MAC_init(ctx, key, len, params) == 1;
}


static int
quay_sigv4_hmac(EVP_MAC_CTX *ctx, const unsigned char *key, size_t key_len,
    const void *data, size_t len, unsigned char out[QUAY_SIGV4_KEY_LEN])
{
    size_t  n;

    if (!quay_sigv4_mac_init(ctx, key, key_len)
        || EVP_MAC_update(ctx, data, len) != 1
        || EVP_MAC_final(ctx, out, &n, QUAY_SIGV4_KEY_LEN) != 1
        || n != QUAY_SIGV4_KEY_LEN)
    {
        return 0;
    }

    return 1;
}


/* The key chain, on arguments already checked. */
static int
quay_sigv4_derive(const char *secret, size_t secret_len, const char *date,
    const char *region, size_t region_len, const char *service,
    size_t service_len, unsigned char out[QUAY_SIGV4_KEY_LEN])
{
    int             ok;
    size_t          k0_len;
    EVP_MAC_CTX    *ctx;
    quay_sha256_t   sha;
    unsigned char   k0[QUAY_SIGV4_HMAC_BLOCK];
    unsigned char   a[QUAY_SIGV4_KEY_LEN], b[QUAY_SIGV4_KEY_LEN];

    if (secret_len <= QUAY_SIGV4_HMAC_BLOCK - 4) {
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, secret_len);
        k0_len = 4 + secret_len;

    } else {
        /* HMAC hashes a key longer than its block; doing it here means
         * "AWS4" + secret never has to be assembled in memory */
        quay_sha256_init(&sha);
        quay_sha256_update(&sha, (const unsigned char *) "AWS4", 4);
        quay_sha256_update(&sha, (const unsigned char *) secret, secret_len);
        quay_sha256_final(&sha, k0);
        k0_len = QUAY_SHA256_DIGEST_LEN;
    }

    ctx = quay_sigv4_mac_new();

    ok = ctx != NULL
         && quay_sigv4_hmac(ctx, k0, k0_len, date, QUAY_SIGV4_DATE_LEN, a)
         && quay_sigv4_hmac(ctx, a, sizeof(a), region, region_len, b)
         && quay_sigv4_hmac(ctx, b, sizeof(b), service, service_len, a)
         && quay_sigv4_hmac(ctx, a, sizeof(a), QUAY_SIGV4_TERMINATOR,
                            sizeof(QUAY_SIGV4_TERMINATOR) - 1, out);

    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    OPENSSL_cleanse(&sha, sizeof(sha));

    return ok;
}


/* SHA-256 over length-prefixed secret, region and service. */
static void
quay_sigv4_fingerprint(const char *secret, size_t secret_len,
    const char *region, size_t region_len, const char *service,
    size_t service_len, unsigned char out[32])
{
    size_t          i, k, lens[3];
    const char     *parts[3];
    unsigned char   prefix[8];
    quay_sha256_t   sha;

    parts[0] = secret;
    lens[0] = secret_len;
    parts[1] = region;
    lens[1] = region_len;
    parts[2] = service;
    lens[2] = service_len;

    quay_sha256_init(&sha);
    quay_sha256_update(&sha, (const unsigned char *) "quay-sigv4-scope", 16);

    for (k = 0; k < 3; k++) {
        for (i = 0; i < 8; i++) {
            prefix[i] = (unsigned char) ((uint64_t) lens[k] >> (56 - 8 * i));
        }

        quay_sha256_update(&sha, prefix, sizeof(prefix));
        quay_sha256_update(&sha, (const unsigned char *) parts[k], lens[k]);
    }

    quay_sha256_final(&sha, out);
    OPENSSL_cleanse(&sha, sizeof(sha));
}


/* The signature of a checked request, with the key from cred. */
static int
quay_sigv4_sign(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, const quay_sigv4_extras_t *ex,
    char sig[QUAY_SIGV4_HEX_LEN], quay_err_t *err)
{
    int                   rc;
    size_t                n;
    EVP_MAC_CTX          *ctx;
    quay_sigv4_sink_t     s;
    const unsigned char  *key;
    char                  creq_hex[QUAY_SIGV4_HEX_LEN];
    unsigned char         own[QUAY_SIGV4_KEY_LEN];
    unsigned char         mac[QUAY_SIGV4_KEY_LEN];

    rc = quay_sigv4_canonical_hex(cred, req, ex, creq_hex, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (cred->cache != NULL) {
        rc = quay_sigv4_key_cache_get(cred->cache, cred->secret_key,
                                      cred->secret_key_len, req->amz_date,
                                      QUAY_SIGV4_DATE_LEN, cred->region,
                                      cred->region_len, cred->service,
                                      cred->service_len, &key, err);

    } else {
        rc = quay_sigv4_signing_key(cred->secret_key, cred->secret_key_len,
                                    req->amz_date, QUAY_SIGV4_DATE_LEN,
                                    cred->region, cred->region_len,
                                    cred->service, cred->service_len, own,
                                    err);
        key = own;
    }

    if (rc != QUAY_OK) {
        return rc;
    }

    rc = QUAY_ERROR;
    memset(&s, 0, sizeof(s));

    ctx = quay_sigv4_mac_new();
    if (ctx == NULL || !quay_sigv4_mac_init(ctx, key, QUAY_SIGV4_KEY_LEN)) {
        goto done;
    }

    s.mac = ctx;
    quay_sigv4_put_string_to_sign(&s, cred, req, creq_hex);

    if (s.failed || s.overflow
        || EVP_MAC_final(ctx, mac, &n, sizeof(mac)) != 1
        || n != sizeof(mac))
    {
        goto done;
    }

    quay_sigv4_hex(mac, sizeof(mac), sig);
    rc = QUAY_OK;

done:

    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(own, sizeof(own));

    if (rc != QUAY_OK) {
        return quay_err_set(err, rc, "sigv4: HMAC-SHA256 failed in OpenSSL");
    }

    return QUAY_OK;
}


/* Stores need in *len; QUAY_OK when out can take it or out is NULL. */
static int
quay_sigv4_room(size_t need, char *out, size_t size, size_t *len,
    quay_err_t *err)
{
    *len = need;

    if (out != NULL && size < need) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: output needs %zu "
                            "bytes, buffer has %zu", need, size);
    }

    return QUAY_OK;
}


size_t
quay_sigv4_uri_encode(const char *in, size_t len, int keep_slash, char *out)
{
    quay_sigv4_sink_t  s;

    memset(&s, 0, sizeof(s));
    s.out = out;

    quay_sigv4_put_encoded(&s, in, len, keep_slash);

    return s.overflow ? 0 : s.len;
}


int
quay_sigv4_canonical_request(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err)
{
    int                  rc;
    quay_sigv4_sink_t    s;
    quay_sigv4_extras_t  ex;

    if (len == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: len is NULL");
    }

    rc = quay_sigv4_check(cred, req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    quay_sigv4_extras_init(&ex, req);

    memset(&s, 0, sizeof(s));
    quay_sigv4_put_canonical(&s, cred, req, &ex);

    if (s.overflow) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: canonical request is "
                            "too long");
    }

    rc = quay_sigv4_room(s.len, out, size, len, err);
    if (rc != QUAY_OK || out == NULL) {
        return rc;
    }

    memset(&s, 0, sizeof(s));
    s.out = out;
    quay_sigv4_put_canonical(&s, cred, req, &ex);

    if (size > s.len) {
        out[s.len] = '\0';
    }

    return QUAY_OK;
}


int
quay_sigv4_string_to_sign(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err)
{
    int                  rc;
    quay_sigv4_sink_t    s;
    quay_sigv4_extras_t  ex;
    char                 creq_hex[QUAY_SIGV4_HEX_LEN];

    if (len == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: len is NULL");
    }

    rc = quay_sigv4_check(cred, req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    quay_sigv4_extras_init(&ex, req);

    rc = quay_sigv4_canonical_hex(cred, req, &ex, creq_hex, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    memset(&s, 0, sizeof(s));
    quay_sigv4_put_string_to_sign(&s, cred, req, creq_hex);

    rc = quay_sigv4_room(s.len, out, size, len, err);
    if (rc != QUAY_OK || out == NULL) {
        return rc;
    }

    memset(&s, 0, sizeof(s));
    s.out = out;
    quay_sigv4_put_string_to_sign(&s, cred, req, creq_hex);

    if (size > s.len) {
        out[s.len] = '\0';
    }

    return QUAY_OK;
}


int
quay_sigv4_signing_key(const char *secret, size_t secret_len,
    const char *date, size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len,
    unsigned char out[QUAY_SIGV4_KEY_LEN], quay_err_t *err)
{
    int  rc;

    rc = quay_sigv4_check_key_args(secret, secret_len, date, date_len,
                                   region, region_len, service, service_len,
                                   err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (!quay_sigv4_derive(secret, secret_len, date, region, region_len,
                           service, service_len, out))
    {
        OPENSSL_cleanse(out, QUAY_SIGV4_KEY_LEN);
        return quay_err_set(err, QUAY_ERROR, "sigv4: HMAC-SHA256 failed in "
                            "OpenSSL");
    }

    return QUAY_OK;
}


void
quay_sigv4_key_cache_init(quay_sigv4_key_cache_t *cache)
{
    memset(cache, 0, sizeof(*cache));
}


void
quay_sigv4_key_cache_clear(quay_sigv4_key_cache_t *cache)
{
    OPENSSL_cleanse(cache, sizeof(*cache));
    quay_sigv4_key_cache_init(cache);
}


int
quay_sigv4_key_cache_get(quay_sigv4_key_cache_t *cache,
    const char *secret, size_t secret_len, const char *date,
    size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len, const unsigned char **key,
    quay_err_t *err)
{
    int                     rc;
    size_t                  i;
    quay_sigv4_key_slot_t  *slot, *victim;
    unsigned char           scope[32];
    unsigned char           fresh[QUAY_SIGV4_KEY_LEN];

    if (cache == NULL || key == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: no cache or key "
                            "pointer");
    }

    rc = quay_sigv4_check_key_args(secret, secret_len, date, date_len,
                                   region, region_len, service, service_len,
                                   err);
    if (rc != QUAY_OK) {
        return rc;
    }

    quay_sigv4_fingerprint(secret, secret_len, region, region_len, service,
                           service_len, scope);

    cache->clock++;
    victim = NULL;

    for (i = 0; i < QUAY_SIGV4_CACHE_SLOTS; i++) {
        slot = &cache->slot[i];

        if (slot->used
            && memcmp(slot->date, date, QUAY_SIGV4_DATE_LEN) == 0
            && CRYPTO_memcmp(slot->scope, scope, sizeof(scope)) == 0)
        {
            slot->last_used = cache->clock;
            *key = slot->key;
            return QUAY_OK;
        }

        if (victim == NULL
            || (victim->used
                && (!slot->used || slot->last_used < victim->last_used)))
        {
            victim = slot;
        }
    }

    /* derive first, so a failure leaves the cache as it was */
    if (!quay_sigv4_derive(secret, secret_len, date, region, region_len,
                           service, service_len, fresh))
    {
        OPENSSL_cleanse(fresh, sizeof(fresh));
        return quay_err_set(err, QUAY_ERROR, "sigv4: HMAC-SHA256 failed in "
                            "OpenSSL");
    }

    memcpy(victim->key, fresh, sizeof(fresh));
    memcpy(victim->scope, scope, sizeof(scope));
    memcpy(victim->date, date, QUAY_SIGV4_DATE_LEN);
    victim->last_used = cache->clock;
    victim->used = 1;
    cache->derivations++;

    OPENSSL_cleanse(fresh, sizeof(fresh));

    *key = victim->key;

    return QUAY_OK;
}


int
quay_sigv4_signature(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char out[QUAY_SIGV4_HEX_LEN],
    quay_err_t *err)
{
    int                  rc;
    quay_sigv4_extras_t  ex;

    if (out == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: out is NULL");
    }

    rc = quay_sigv4_check(cred, req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    quay_sigv4_extras_init(&ex, req);

    return quay_sigv4_sign(cred, req, &ex, out, err);
}


int
quay_sigv4_sign_headers(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err)
{
    int                  rc;
    quay_sigv4_sink_t    s;
    quay_sigv4_extras_t  ex;
    char                 sig[QUAY_SIGV4_HEX_LEN];

    if (len == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: len is NULL");
    }

    rc = quay_sigv4_check(cred, req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (req->expires != 0) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: a presigned request "
                            "(expires set) has no Authorization header");
    }

    quay_sigv4_extras_init(&ex, req);

    /* the signature's length is fixed; its bytes are not read here */
    memset(sig, '0', sizeof(sig));
    memset(&s, 0, sizeof(s));
    quay_sigv4_put_authorization(&s, cred, req, sig);

    rc = quay_sigv4_room(s.len, out, size, len, err);
    if (rc != QUAY_OK || out == NULL) {
        return rc;
    }

    rc = quay_sigv4_sign(cred, req, &ex, sig, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    memset(&s, 0, sizeof(s));
    s.out = out;
    quay_sigv4_put_authorization(&s, cred, req, sig);

    if (size > s.len) {
        out[s.len] = '\0';
    }

    return QUAY_OK;
}


int
quay_sigv4_presign_query(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err)
{
    int                  rc;
    quay_sigv4_sink_t    s;
    quay_sigv4_extras_t  ex;
    char                 sig[QUAY_SIGV4_HEX_LEN];

    if (len == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "sigv4: len is NULL");
    }

    if (req != NULL && req->expires == 0) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: a presigned URL needs "
                            "expires between 1 and %d seconds",
                            QUAY_SIGV4_MAX_EXPIRES);
    }

    rc = quay_sigv4_check(cred, req, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    quay_sigv4_extras_init(&ex, req);

    memset(sig, '0', sizeof(sig));
    memset(&s, 0, sizeof(s));
    quay_sigv4_put_presigned(&s, cred, req, &ex, sig);

    if (s.overflow) {
        return quay_err_set(err, QUAY_ERANGE, "sigv4: query is too long");
    }

    rc = quay_sigv4_room(s.len, out, size, len, err);
    if (rc != QUAY_OK || out == NULL) {
        return rc;
    }

    rc = quay_sigv4_sign(cred, req, &ex, sig, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    memset(&s, 0, sizeof(s));
    s.out = out;
    quay_sigv4_put_presigned(&s, cred, req, &ex, sig);

    if (size > s.len) {
        out[s.len] = '\0';
    }

    return QUAY_OK;
}
