/*
 * AWS Signature Version 4 (AWS4-HMAC-SHA256) for S3-compatible storage:
 * the canonical request, the string to sign, the signing key and its
 * per-day cache, the Authorization header value, and the query string of
 * a presigned URL.  The rules are those of the AWS General Reference
 * ("Create a signed AWS API request") as S3 applies them (S3 API
 * Reference, "Authenticating Requests (AWS Signature Version 4)"):
 *
 *   - the path is URI-encoded once and never normalized: S3 keeps "//"
 *     and "." segments, because they are part of an object key;
 *   - query parameters are URI-encoded (space is %20, never '+'), then
 *     sorted by encoded name and, for equal names, by encoded value; a
 *     parameter without a value is written "name=";
 *   - header names are lowercased; values lose leading and trailing
 *     spaces and tabs, and each inner run of them becomes one space;
 *     headers with the same name are joined with ',' in the order given;
 *   - the payload hash is 64 lowercase hex digits, or a literal such as
 *     "UNSIGNED-PAYLOAD" (what a presigned URL uses by default).
 *
 * Everything the caller passes is (pointer, length); nothing needs a NUL.
 * Outputs are measured, then filled: each producer takes (out, size, len)
 * and stores the full length in *len.  With out == NULL it only measures;
 * with size < *len it writes nothing and returns QUAY_ERANGE; otherwise it
 * writes the text, plus a NUL when size has room for one.  Signing itself
 * allocates nothing: the canonical request is hashed as it is produced,
 * so a header value of any length costs no memory.  Sorting is done by
 * repeated selection over the caller's arrays (they are never modified),
 * which is quadratic, so a request may carry at most QUAY_SIGV4_MAX_FIELDS
 * headers and as many query parameters (S3 requests carry a handful).
 *
 * Secrets.  The secret key is only read by key derivation; error messages
 * never quote it, nor any header or query value (a value may be a token).
 *
 * Threads.  No function keeps state between calls except through a
 * quay_sigv4_key_cache_t the caller owns; a cache must not be used by two
 * threads at once (the module keeps one per nginx worker).
 */

#ifndef QUAY_SIGV4_H
#define QUAY_SIGV4_H

#include <stddef.h>

#include "quay_err.h"


#define QUAY_SIGV4_ALGORITHM         "AWS4-HMAC-SHA256"
#define QUAY_SIGV4_UNSIGNED_PAYLOAD  "UNSIGNED-PAYLOAD"
/* SHA-256 of the empty string: the payload hash of a request without body */
#define QUAY_SIGV4_EMPTY_SHA256                                             \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define QUAY_SIGV4_KEY_LEN           32     /* signing key, bytes */
#define QUAY_SIGV4_HEX_LEN           64     /* signature, hex digits */
#define QUAY_SIGV4_DATE_LEN          8      /* "YYYYMMDD" */
#define QUAY_SIGV4_AMZ_DATE_LEN      16     /* "YYYYMMDDTHHMMSSZ" */
#define QUAY_SIGV4_MAX_EXPIRES       604800 /* 7 days, S3's limit */
#define QUAY_SIGV4_MAX_FIELDS        256    /* headers, query parameters */
#define QUAY_SIGV4_CACHE_SLOTS       4      /* scopes per key cache */


/* One request header; name and value as sent (value may be empty). */
typedef struct {
    const char     *name;
    size_t          name_len;
    const char     *value;
    size_t          value_len;
} quay_sigv4_header_t;

/* One query parameter, raw (not URI-encoded); value may be empty. */
typedef struct {
    const char     *name;
    size_t          name_len;
    const char     *value;
    size_t          value_len;
} quay_sigv4_param_t;


/*
 * One derived signing key per scope (secret, date, region, service).  A
 * slot is found by the date and a SHA-256 fingerprint of the secret,
 * region and service, so the cache holds no copy of the secret and a
 * changed secret is never served a stale key.  When all slots are taken,
 * the least recently used one is replaced.  Initialize with
 * quay_sigv4_key_cache_init(); wipe with quay_sigv4_key_cache_clear().
 */
typedef struct {
    unsigned char   key[QUAY_SIGV4_KEY_LEN];
    unsigned char   scope[32];              /* fingerprint, see above */
    char            date[QUAY_SIGV4_DATE_LEN];
    unsigned long   last_used;              /* cache clock at last hit */
    int             used;
} quay_sigv4_key_slot_t;

typedef struct {
    quay_sigv4_key_slot_t  slot[QUAY_SIGV4_CACHE_SLOTS];
    unsigned long          clock;
    unsigned long          derivations;     /* keys derived so far */
} quay_sigv4_key_cache_t;


/*
 * Who signs, and for which scope.  region and service may only hold
 * A-Z a-z 0-9 '.' '_' '-'; access_key is printable ASCII without
 * spaces, '/' or ','.  cache is optional (borrowed; NULL derives the key
 * on every call).
 */
typedef struct {
    const char              *access_key;
    size_t                   access_key_len;
    const char              *secret_key;
    size_t                   secret_key_len;
    const char              *region;
    size_t                   region_len;
    const char              *service;
    size_t                   service_len;
    quay_sigv4_key_cache_t  *cache;
} quay_sigv4_credentials_t;

/*
 * The request to sign.
 *
 * method: an HTTP token, used as given ("GET").
 * path: the raw path, encoded here with '/' kept; with path_encoded set
 *   it must already be exactly what quay_sigv4_uri_encode() with
 *   keep_slash produces (uppercase %XX, and only for bytes that need it)
 *   and is used verbatim.  An empty path is "/"; a path that does not
 *   start with '/' gets one.
 * query: raw parameters in any order; nquery may be 0.
 * headers: every header to sign, in any order; a "host" header is
 *   required.  Values may not contain control characters other than tab
 *   (a folded header is given as one entry per line).
 * payload_hash: 64 lowercase hex digits, "UNSIGNED-PAYLOAD", or a
 *   "STREAMING-" literal of A-Z 0-9 '-' (S3's chunked uploads).  Required
 *   for header signing; for a presigned URL NULL means UNSIGNED-PAYLOAD.
 * amz_date: "YYYYMMDDTHHMMSSZ" (UTC); the caller sends the same value in
 *   an x-amz-date header (header signing) and lists that header here.
 * expires: 0 for header signing.  For a presigned URL, the lifetime in
 *   seconds (1 to QUAY_SIGV4_MAX_EXPIRES); the X-Amz-* parameters then
 *   join the canonical query, and the caller's parameters may not use
 *   their names.
 * security_token: presigned URLs only (X-Amz-Security-Token, signed);
 *   with header signing, send it as an x-amz-security-token header and
 *   list it in headers instead.
 */
typedef struct {
    const char                 *method;
    size_t                      method_len;
    const char                 *path;
    size_t                      path_len;
    int                         path_encoded;
    const quay_sigv4_param_t   *query;
    size_t                      nquery;
    const quay_sigv4_header_t  *headers;
    size_t                      nheaders;
    const char                 *payload_hash;
    size_t                      payload_hash_len;
    const char                 *amz_date;
    size_t                      amz_date_len;
    unsigned long               expires;
    const char                 *security_token;
    size_t                      security_token_len;
} quay_sigv4_request_t;


/*
 * URI-encodes in[0..len-1] the S3 way: A-Z a-z 0-9 '-' '.' '_' '~' stay,
 * '/' stays when keep_slash is non-zero (paths), every other byte becomes
 * "%XX" with uppercase hex.  With out == NULL returns the length needed;
 * otherwise writes that many bytes (no NUL) and returns the same number.
 */
size_t quay_sigv4_uri_encode(const char *in, size_t len, int keep_slash,
    char *out);

/*
 * The canonical request (method, path, query, headers, signed headers,
 * payload hash, joined by '\n').  cred supplies the scope of a presigned
 * URL's X-Amz-Credential (its secret is not read).  Output rules as
 * above.  Returns QUAY_OK, QUAY_EINVAL (bad input, err says which field),
 * QUAY_ERANGE (too many fields, expires out of range, or size too small).
 */
int quay_sigv4_canonical_request(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err);

/*
 * "AWS4-HMAC-SHA256\n<amz_date>\n<date>/<region>/<service>/aws4_request\n"
 * and the hex SHA-256 of the canonical request.  Same rules and codes.
 */
int quay_sigv4_string_to_sign(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err);

/*
 * Derives the signing key for (secret, date, region, service) into out:
 * HMAC-SHA256 chained over "AWS4" + secret, date ("YYYYMMDD"), region,
 * service and "aws4_request".  Returns QUAY_OK, QUAY_EINVAL (empty
 * secret, bad date, region or service) or QUAY_ERROR (OpenSSL failed).
 */
int quay_sigv4_signing_key(const char *secret, size_t secret_len,
    const char *date, size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len,
    unsigned char out[QUAY_SIGV4_KEY_LEN], quay_err_t *err);

/* Empties cache (all slots unused, counters zero). */
void quay_sigv4_key_cache_init(quay_sigv4_key_cache_t *cache);

/* Wipes every key and fingerprint, then re-initializes cache. */
void quay_sigv4_key_cache_clear(quay_sigv4_key_cache_t *cache);

/*
 * Sets *key to the cached signing key for the scope, deriving it (and
 * counting cache->derivations) only on a miss.  *key points into cache
 * and stays valid until the next get or clear on it.  Arguments and
 * codes as quay_sigv4_signing_key().
 */
int quay_sigv4_key_cache_get(quay_sigv4_key_cache_t *cache,
    const char *secret, size_t secret_len, const char *date,
    size_t date_len, const char *region, size_t region_len,
    const char *service, size_t service_len, const unsigned char **key,
    quay_err_t *err);

/*
 * The request's signature as QUAY_SIGV4_HEX_LEN lowercase hex digits in
 * out (no NUL), for header signing or a presigned URL alike.  Codes as
 * above, plus QUAY_ERROR when OpenSSL fails.
 */
int quay_sigv4_signature(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char out[QUAY_SIGV4_HEX_LEN],
    quay_err_t *err);

/*
 * The Authorization header value for header signing (req->expires 0):
 * "AWS4-HMAC-SHA256 Credential=<access key>/<date>/<region>/<service>/
 * aws4_request, SignedHeaders=<names>, Signature=<hex>" (one line).
 * Output rules and codes as above; measuring computes no signature.
 */
int quay_sigv4_sign_headers(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err);

/*
 * The query string of a presigned URL (req->expires non-zero): the
 * caller's parameters and X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date,
 * X-Amz-Expires, X-Amz-Security-Token (when given) and
 * X-Amz-SignedHeaders, encoded and sorted, then "&X-Amz-Signature=<hex>".
 * The URL is scheme "://" host, the encoded path, '?' and this string.
 * It is a bearer credential: never log it.  Output rules and codes as
 * above.
 */
int quay_sigv4_presign_query(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err);

#endif /* QUAY_SIGV4_H */
