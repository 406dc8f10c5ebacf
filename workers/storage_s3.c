/*
 * DESIGN
 *
 * The S3Storage and RadosGWStorage driver of the worker-side storage
 * client (storage.h).  One libcurl easy handle per location, kept between
 * requests so connections are reused; path-style addressing,
 * <scheme>://<host>/<bucket>/<storage_path>/<key>, with the endpoint rules
 * of the module's ngx_http_quay_s3.c (endpoint_url, or host and port, or
 * the AWS endpoint of s3_region).
 *
 * Each request is signed with lib/quay_sigv4.c (header signing; host,
 * x-amz-date, x-amz-content-sha256 and every other x-amz-* header sent
 * are signed).  A body is signed with its SHA-256, so the storage checks
 * every byte we send (a part is at most one caller buffer).  Answers:
 * 2xx is success (CompleteMultipartUpload and CopyObject can also fail
 * inside a 200, which is checked), 404 STORAGE_ENOENT, 401/403
 * STORAGE_EDENIED, a failed connection STORAGE_EUNAVAIL, anything else
 * STORAGE_EIO; the message names the location, the operation, the key,
 * the status and S3's <Code>, never a secret.  A streamed GET hands the
 * body to the caller's sink only for a 2xx answer; an error body (a few
 * hundred bytes of XML) is kept, up to 64 KiB.
 *
 * https endpoints: the peer's certificate and name are always verified,
 * against libcurl's default store (the system bundle,
 * /etc/ssl/certs/ca-certificates.crt on Debian) or, when the environment
 * has QUAY_STORAGE_CA_FILE, against that PEM file only (a private CA; the
 * same file nginx's proxy_ssl_trusted_certificate names in
 * conf/quay-storage.conf).  A certificate that does not verify is a
 * storage error naming the location and curl's reason.
 *
 * Waits: a 10 s connect timeout and a low-speed limit (no byte for 60 s,
 * 600 s for the server-side assembly of CompleteMultipartUpload and
 * copies); the progress callback stops a transfer when shutdown was
 * requested and calls the client's progress hook (lease renewal).
 *
 * XML is read with a few string searches: the answers we parse
 * (UploadId, ETag, ListMultipartUploads, Error) are flat, and a value is
 * only ever used as an opaque token or as a key that is validated again.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "quay_sha256.h"
#include "quay_sigv4.h"
#include "storage_int.h"
#include "worker.h"


#define STORAGE_S3_REGION         "us-east-1"
#define STORAGE_S3_RESPONSE_MAX   (64 * 1024)
#define STORAGE_S3_LIST_MAX       (4 * 1024 * 1024)
#define STORAGE_S3_MAX_HEADERS    8
#define STORAGE_S3_MAX_QUERY      4
#define STORAGE_S3_COPY_MAX       ((int64_t) 5 << 30)


struct storage_s3_s {
    char                    *base;      /* owned: "<scheme>://<host>" */
    char                    *host;      /* owned: Host: value */
    const char              *region;    /* borrowed from the config */
    char                    *prefix;    /* owned: storage_path without
                                           outer '/', may be "" */
    char                    *cafile;    /* owned: QUAY_STORAGE_CA_FILE
                                           or NULL (system store) */
    CURL                    *curl;      /* owned */
    quay_sigv4_key_cache_t   keys;
};


static int storage_s3_stat(storage_t *s, const char *key, int64_t *size,
    char *err, size_t errlen);
static int storage_s3_remove(storage_t *s, const char *key, char *err,
    size_t errlen);
static int storage_s3_get(storage_t *s, const char *key, int64_t offset,
    int64_t length, storage_sink_pt sink, void *ctx, char *err,
    size_t errlen);
static int storage_s3_put(storage_t *s, const char *key,
    const unsigned char *p, size_t len, char *err, size_t errlen);
static int storage_s3_mpu_create(storage_t *s, const char *key,
    char *upload_id, size_t idlen, char *err, size_t errlen);
static int storage_s3_mpu_part(storage_t *s, const char *key,
    const char *upload_id, int64_t offset, const unsigned char *p,
    storage_part_t *part, char *err, size_t errlen);
static int storage_s3_mpu_complete(storage_t *s, const char *key,
    const char *upload_id, const storage_part_t *parts, size_t nparts,
    char *err, size_t errlen);
static int storage_s3_mpu_abort(storage_t *s, const char *key,
    const char *upload_id, char *err, size_t errlen);
static int storage_s3_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen);
static int storage_s3_move(storage_t *s, const char *src, const char *dst,
    int64_t size, char *err, size_t errlen);


const storage_driver_t  storage_s3_driver = {
    "S3Storage", storage_s3_stat, storage_s3_remove, storage_s3_get,
    storage_s3_put, storage_s3_mpu_create, storage_s3_mpu_part,
    storage_s3_mpu_complete, storage_s3_mpu_abort, storage_s3_mpu_list,
    storage_s3_move
};


/* Endpoint ---------------------------------------------------------------- */

storage_s3_t *
storage_s3_new(const quay_storage_location_t *loc, char *err, size_t errlen)
{
    const char    *scheme, *start, *end, *p, *q;
    storage_s3_t  *s3;
    bool           secure = loc->is_secure;
    char          *host;

    if (loc->bucket == NULL || loc->bucket[0] == '\0') {
        (void) storage_error(err, errlen, STORAGE_EINVAL,
                             "location %s: no bucket", loc->name);
        return NULL;
    }

    if (loc->endpoint_url != NULL) {
        if (strncasecmp(loc->endpoint_url, "https://", 8) == 0) {
            secure = true;
            start = loc->endpoint_url + 8;
        } else if (strncasecmp(loc->endpoint_url, "http://", 7) == 0) {
            secure = false;
            start = loc->endpoint_url + 7;
        } else {
            (void) storage_error(err, errlen, STORAGE_EINVAL,
                                 "location %s: endpoint_url must start with"
                                 " http:// or https://", loc->name);
            return NULL;
        }
        end = start + strcspn(start, "/?#");
        host = xasprintf("%.*s", (int) (end - start), start);

    } else if (loc->host != NULL) {
        host = loc->port ? xasprintf("%s:%d", loc->host, loc->port)
                         : xstrdup(loc->host);

    } else if (loc->region != NULL) {
        secure = true;
        host = xasprintf("s3.%s.amazonaws.com%s", loc->region,
                         strncmp(loc->region, "cn-", 3) == 0 ? ".cn" : "");

    } else {
        (void) storage_error(err, errlen, STORAGE_EINVAL,
                             "location %s: no endpoint (host, endpoint_url"
                             " or s3_region)", loc->name);
        return NULL;
    }

    if (host[0] == '\0' || strpbrk(host, " \t\r\n@") != NULL) {
        (void) storage_error(err, errlen, STORAGE_EINVAL,
                             "location %s: bad endpoint host", loc->name);
        free(host);
        return NULL;
    }

    s3 = xcalloc(1, sizeof(*s3));
    scheme = secure ? "https" : "http";
    s3->host = host;
    s3->base = xasprintf("%s://%s", scheme, host);
    s3->region = loc->region ? loc->region : STORAGE_S3_REGION;

    /* Quay joins keys under storage_path; "/registry/" is "registry" */
    p = loc->storage_path ? loc->storage_path : "";
    while (*p == '/') {
        p++;
    }
    q = p + strlen(p);
    while (q > p && q[-1] == '/') {
        q--;
    }
    s3->prefix = xasprintf("%.*s", (int) (q - p), p);

    p = getenv("QUAY_STORAGE_CA_FILE");
    s3->cafile = (p != NULL && p[0] != '\0') ? xstrdup(p) : NULL;

    s3->curl = curl_easy_init();
    if (s3->curl == NULL) {
        (void) storage_error(err, errlen, STORAGE_EIO,
                             "location %s: curl_easy_init failed",
                             loc->name);
        storage_s3_free(s3);
        return NULL;
    }
    quay_sigv4_key_cache_init(&s3->keys);
    return s3;
}


void
storage_s3_free(storage_s3_t *s3)
{
    if (s3 == NULL) {
        return;
    }
    if (s3->curl != NULL) {
        curl_easy_cleanup(s3->curl);
    }
    quay_sigv4_key_cache_clear(&s3->keys);
    free(s3->base);
    free(s3->host);
    free(s3->prefix);
    free(s3->cafile);
    free(s3);
}


/* "<prefix>/<key>" (or key without a prefix); caller frees. */
static char *
storage_s3_full_key(storage_t *s, const char *key)
{
    if (s->s3->prefix[0] == '\0') {
        return xstrdup(key);
    }
    return xasprintf("%s/%s", s->s3->prefix, key);
}


/* Undoes storage_s3_full_key(); NULL when key is not under the prefix. */
static const char *
storage_s3_rel_key(storage_t *s, const char *key)
{
    size_t  len = strlen(s->s3->prefix);

    if (len == 0) {
        return key;
    }
    if (strncmp(key, s->s3->prefix, len) != 0 || key[len] != '/') {
        return NULL;
    }
    return key + len + 1;
}


static void
storage_hex(const unsigned char *p, size_t len, char *out)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             i;

    for (i = 0; i < len; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0xf];
    }
    out[2 * len] = '\0';
}


/* URI-encodes in (S3's rules); caller frees. */
static char *
storage_s3_encode(const char *in, int keep_slash)
{
    size_t  len = strlen(in);
    size_t  n = quay_sigv4_uri_encode(in, len, keep_slash, NULL);
    char   *out = xmalloc(n + 1);

    (void) quay_sigv4_uri_encode(in, len, keep_slash, out);
    out[n] = '\0';
    return out;
}


/* Requests ------------------------------------------------------------ */

/* A growing buffer, for answers we keep (XML). */
typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
    size_t   max;
    bool     truncated;
} storage_text_t;


typedef struct {
    const char             *method;        /* "GET", "PUT", ... */
    const char             *what;          /* "GetObject", for errors */
    const char             *key;           /* relative; NULL: the bucket */
    const char             *query[STORAGE_S3_MAX_QUERY][2];
    size_t                  nquery;
    const char             *range;         /* "bytes=a-b" or NULL */
    const char             *copy_source;   /* raw "/<bucket>/<full key>" */
    const char             *copy_range;
    const unsigned char    *body;          /* NULL: no body */
    size_t                  body_len;
    bool                    slow;          /* long silences are normal */
    bool                    cleanup;       /* runs even after shutdown was
                                              requested (an abort) */

    storage_sink_pt         sink;          /* a 2xx body goes here */
    void                   *sink_ctx;
    size_t                  response_max;  /* else kept, up to this */

    /* results */
    long                    status;
    int64_t                 length;        /* Content-Length, or -1 */
    char                    etag[STORAGE_ETAG_MAX];
    storage_text_t          response;      /* owned; freed by the caller
                                              (storage_s3_req_free) */
    bool                    sink_stopped;
} storage_s3_req_t;


static void
storage_s3_req_free(storage_s3_req_t *rq)
{
    free(rq->response.p);
    rq->response.p = NULL;
}


typedef struct {
    storage_t         *s;
    storage_s3_req_t  *rq;
    CURL              *curl;
    const char        *body;
    size_t             body_left;
} storage_s3_io_t;


static size_t
storage_s3_write_cb(char *p, size_t size, size_t n, void *data)
{
    storage_s3_io_t   *io = data;
    storage_s3_req_t  *rq = io->rq;
    storage_text_t    *t = &rq->response;
    size_t             len = size * n, take;
    long               status = 0;

    (void) curl_easy_getinfo(io->curl, CURLINFO_RESPONSE_CODE, &status);

    if (rq->sink != NULL && status >= 200 && status < 300) {
        if (rq->sink(rq->sink_ctx, (const unsigned char *) p, len) != 0) {
            rq->sink_stopped = true;
            return 0;                   /* CURLE_WRITE_ERROR */
        }
        return len;
    }

    if (t->max == 0) {
        t->max = rq->response_max ? rq->response_max
                                  : STORAGE_S3_RESPONSE_MAX;
    }
    take = len;
    if (t->len + take > t->max) {
        take = t->max - t->len;
        t->truncated = true;
    }
    if (t->len + take + 1 > t->cap) {
        t->cap = t->len + take + 1 < 4096 ? 4096 : (t->len + take + 1) * 2;
        if (t->cap > t->max + 1) {
            t->cap = t->max + 1;
        }
        t->p = xrealloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, p, take);
    t->len += take;
    t->p[t->len] = '\0';
    return len;
}


static size_t
storage_s3_header_cb(char *p, size_t size, size_t n, void *data)
{
    storage_s3_io_t   *io = data;
    storage_s3_req_t  *rq = io->rq;
    size_t             len = size * n, vlen;
    const char        *v;

    if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        v = p + 5;
        while (v < p + len && (*v == ' ' || *v == '\t')) {
            v++;
        }
        vlen = (size_t) (p + len - v);
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'
                            || v[vlen - 1] == ' '))
        {
            vlen--;
        }
        if (vlen < sizeof(rq->etag)) {
            memcpy(rq->etag, v, vlen);
            rq->etag[vlen] = '\0';
        }
    } else if (len > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
        rq->length = strtoll(p + 15, NULL, 10);
    }
    return len;
}


static size_t
storage_s3_read_cb(char *p, size_t size, size_t n, void *data)
{
    storage_s3_io_t  *io = data;
    size_t            len = size * n;

    if (len > io->body_left) {
        len = io->body_left;
    }
    if (len == 0) {
        return 0;
    }
    memcpy(p, io->body, len);
    io->body += len;
    io->body_left -= len;
    return len;
}


static int
storage_s3_progress_cb(void *data, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
    storage_s3_io_t  *io = data;

    if (worker_shutdown_requested() && !io->rq->cleanup) {
        return 1;                       /* CURLE_ABORTED_BY_CALLBACK */
    }
    if (io->s->progress != NULL) {
        io->s->progress(io->s->progress_ctx);
    }
    return 0;
}


/* The first <name>...</name> of text into out; false if none. */
static bool
storage_xml_value(const char *text, size_t len, const char *name, char *out,
    size_t outlen)
{
    char         open[64], close_tag[64];
    const char  *p, *q, *end = text + len;
    size_t       n, o = 0;

    (void) snprintf(open, sizeof(open), "<%s>", name);
    (void) snprintf(close_tag, sizeof(close_tag), "</%s>", name);

    p = memmem(text, len, open, strlen(open));
    if (p == NULL) {
        return false;
    }
    p += strlen(open);
    q = memmem(p, (size_t) (end - p), close_tag, strlen(close_tag));
    if (q == NULL) {
        return false;
    }

    /* the five predefined entities; keys we use never need more */
    for (; p < q && o + 1 < outlen; p++) {
        static const struct { const char *e; char c; }  ents[] = {
            { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
            { "&quot;", '"' }, { "&apos;", '\'' }
        };
        char    c = *p;
        size_t  i;

        if (c == '&') {
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                n = strlen(ents[i].e);
                if ((size_t) (q - p) >= n && memcmp(p, ents[i].e, n) == 0) {
                    c = ents[i].c;
                    p += n - 1;
                    break;
                }
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return p == q;
}


/* Fills err for a failed answer and returns the STORAGE_* code. */
static int
storage_s3_status_error(storage_t *s, storage_s3_req_t *rq, char *err,
    size_t errlen)
{
    char  code[64] = "";
    int   rc;

    if (rq->response.p != NULL) {
        (void) storage_xml_value(rq->response.p, rq->response.len, "Code",
                                 code, sizeof(code));
    }

    if (rq->status == 404) {
        rc = STORAGE_ENOENT;
    } else if (rq->status == 401 || rq->status == 403) {
        rc = STORAGE_EDENIED;
    } else {
        rc = STORAGE_EIO;
    }

    return storage_error(err, errlen, rc, "location %s: %s %s failed: %ld%s%s",
                         s->loc->name, rq->what,
                         rq->key ? rq->key : "(bucket)", rq->status,
                         code[0] ? " " : "", code);
}


/*
 * Signs and performs rq.  Returns STORAGE_OK for a 2xx answer (the
 * caller then checks the body where S3 may hide an error), else the
 * error code with err filled.
 */
static int
storage_s3_perform(storage_t *s, storage_s3_req_t *rq, char *err,
    size_t errlen)
{
    storage_s3_t             *s3 = s->s3;
    quay_sigv4_credentials_t  cred;
    quay_sigv4_request_t      sreq;
    quay_sigv4_header_t       h[STORAGE_S3_MAX_HEADERS];
    quay_sigv4_param_t        qp[STORAGE_S3_MAX_QUERY];
    quay_err_t                qerr;
    storage_s3_io_t           io;
    struct curl_slist        *list = NULL;
    unsigned char             digest[QUAY_SHA256_DIGEST_LEN];
    char                      payload[QUAY_SIGV4_HEX_LEN + 1];
    char                      amz_date[QUAY_SIGV4_AMZ_DATE_LEN + 1];
    char                     *full = NULL, *raw_path = NULL, *path = NULL;
    char                     *url = NULL, *auth = NULL, *line, *copy = NULL;
    char                      curl_err[CURL_ERROR_SIZE];
    size_t                    nh = 0, i, auth_len;
    struct tm                 tm;
    time_t                    now;
    CURLcode                  cc;
    int                       rc = STORAGE_OK;
    size_t                    ulen;

    rq->status = 0;
    rq->length = -1;
    rq->etag[0] = '\0';
    memset(&rq->response, 0, sizeof(rq->response));
    rq->sink_stopped = false;

    /* path and URL */
    if (rq->key != NULL) {
        full = storage_s3_full_key(s, rq->key);
        raw_path = xasprintf("/%s/%s", s->loc->bucket, full);
    } else {
        raw_path = xasprintf("/%s", s->loc->bucket);
    }
    path = storage_s3_encode(raw_path, 1);

    ulen = strlen(s3->base) + strlen(path) + 2;
    for (i = 0; i < rq->nquery; i++) {
        char  *n = storage_s3_encode(rq->query[i][0], 0);
        char  *v = storage_s3_encode(rq->query[i][1], 0);

        ulen += strlen(n) + strlen(v) + 2;
        free(n);
        free(v);
        qp[i].name = rq->query[i][0];
        qp[i].name_len = strlen(rq->query[i][0]);
        qp[i].value = rq->query[i][1];
        qp[i].value_len = strlen(rq->query[i][1]);
    }
    url = xmalloc(ulen + 1);
    (void) snprintf(url, ulen + 1, "%s%s", s3->base, path);
    for (i = 0; i < rq->nquery; i++) {
        char  *n = storage_s3_encode(rq->query[i][0], 0);
        char  *v = storage_s3_encode(rq->query[i][1], 0);

        (void) strcat(url, i == 0 ? "?" : "&");
        (void) strcat(url, n);
        (void) strcat(url, "=");
        (void) strcat(url, v);
        free(n);
        free(v);
    }

    /* payload hash: the body's SHA-256 (S3 checks it), else the empty one */
    if (rq->body != NULL) {
        quay_sha256(rq->body, rq->body_len, digest);
        storage_hex(digest, sizeof(digest), payload);
    } else {
        (void) snprintf(payload, sizeof(payload), "%s",
                        QUAY_SIGV4_EMPTY_SHA256);
    }

    now = time(NULL);
    (void) gmtime_r(&now, &tm);
    (void) strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);

#define STORAGE_S3_HEADER(n, v)                                              \
    do {                                                                     \
        h[nh].name = (n);                                                    \
        h[nh].name_len = strlen(n);                                          \
        h[nh].value = (v);                                                   \
        h[nh].value_len = strlen(v);                                         \
        nh++;                                                                \
    } while (0)

    STORAGE_S3_HEADER("host", s3->host);
    STORAGE_S3_HEADER("x-amz-date", amz_date);
    STORAGE_S3_HEADER("x-amz-content-sha256", payload);
    if (rq->copy_source != NULL) {
        copy = storage_s3_encode(rq->copy_source, 1);
        STORAGE_S3_HEADER("x-amz-copy-source", copy);
    }
    if (rq->copy_range != NULL) {
        STORAGE_S3_HEADER("x-amz-copy-source-range", rq->copy_range);
    }
    if (s->loc->session_token != NULL) {
        STORAGE_S3_HEADER("x-amz-security-token", s->loc->session_token);
    }

#undef STORAGE_S3_HEADER

    memset(&cred, 0, sizeof(cred));
    cred.access_key = s->loc->access_key ? s->loc->access_key : "";
    cred.access_key_len = strlen(cred.access_key);
    cred.secret_key = s->loc->secret_key ? s->loc->secret_key : "";
    cred.secret_key_len = strlen(cred.secret_key);
    cred.region = s3->region;
    cred.region_len = strlen(s3->region);
    cred.service = "s3";
    cred.service_len = 2;
    cred.cache = &s3->keys;

    memset(&sreq, 0, sizeof(sreq));
    sreq.method = rq->method;
    sreq.method_len = strlen(rq->method);
    sreq.path = raw_path;
    sreq.path_len = strlen(raw_path);
    sreq.query = qp;
    sreq.nquery = rq->nquery;
    sreq.headers = h;
    sreq.nheaders = nh;
    sreq.payload_hash = payload;
    sreq.payload_hash_len = strlen(payload);
    sreq.amz_date = amz_date;
    sreq.amz_date_len = QUAY_SIGV4_AMZ_DATE_LEN;

    memset(&qerr, 0, sizeof(qerr));
    if (quay_sigv4_sign_headers(&cred, &sreq, NULL, 0, &auth_len, &qerr)
        != QUAY_OK)
    {
        rc = storage_error(err, errlen, STORAGE_EINVAL,
                           "location %s: cannot sign %s: %s", s->loc->name,
                           rq->what, qerr.msg);
        goto done;
    }
    auth = xmalloc(auth_len + 1);
    if (quay_sigv4_sign_headers(&cred, &sreq, auth, auth_len + 1, &auth_len,
                                &qerr)
        != QUAY_OK)
    {
        rc = storage_error(err, errlen, STORAGE_EINVAL,
                           "location %s: cannot sign %s: %s", s->loc->name,
                           rq->what, qerr.msg);
        goto done;
    }

    /* headers: every signed one, then the rest */
    for (i = 0; i < nh; i++) {
        line = xasprintf("%s: %s", h[i].name, h[i].value);
        list = curl_slist_append(list, line);
        free(line);
    }
    line = xasprintf("Authorization: %s", auth);
    list = curl_slist_append(list, line);
    free(line);
    if (rq->range != NULL) {
        line = xasprintf("Range: %s", rq->range);
        list = curl_slist_append(list, line);
        free(line);
    }
    list = curl_slist_append(list, "Expect:");
    list = curl_slist_append(list, "Accept:");
    if (rq->body != NULL) {
        list = curl_slist_append(list, "Content-Type: "
                                       "application/octet-stream");
    }
    if (list == NULL) {
        worker_log(WORKER_LOG_ERR, "out of memory in curl_slist_append");
        abort();
    }

    memset(&io, 0, sizeof(io));
    io.s = s;
    io.rq = rq;
    io.curl = s3->curl;
    io.body = (const char *) rq->body;
    io.body_left = rq->body_len;

    curl_easy_reset(s3->curl);
    curl_err[0] = '\0';
    (void) curl_easy_setopt(s3->curl, CURLOPT_URL, url);
    (void) curl_easy_setopt(s3->curl, CURLOPT_HTTPHEADER, list);
    (void) curl_easy_setopt(s3->curl, CURLOPT_ERRORBUFFER, curl_err);
    (void) curl_easy_setopt(s3->curl, CURLOPT_NOSIGNAL, 1L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_LOW_SPEED_TIME,
                            rq->slow ? 600L : 60L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* libcurl's defaults, stated: a storage endpoint is always verified */
    (void) curl_easy_setopt(s3->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s3->cafile != NULL) {
        (void) curl_easy_setopt(s3->curl, CURLOPT_CAINFO, s3->cafile);
    }
    (void) curl_easy_setopt(s3->curl, CURLOPT_FOLLOWLOCATION, 0L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_WRITEFUNCTION,
                            storage_s3_write_cb);
    (void) curl_easy_setopt(s3->curl, CURLOPT_WRITEDATA, &io);
    (void) curl_easy_setopt(s3->curl, CURLOPT_HEADERFUNCTION,
                            storage_s3_header_cb);
    (void) curl_easy_setopt(s3->curl, CURLOPT_HEADERDATA, &io);
    (void) curl_easy_setopt(s3->curl, CURLOPT_NOPROGRESS, 0L);
    (void) curl_easy_setopt(s3->curl, CURLOPT_XFERINFOFUNCTION,
                            storage_s3_progress_cb);
    (void) curl_easy_setopt(s3->curl, CURLOPT_XFERINFODATA, &io);

    if (strcmp(rq->method, "HEAD") == 0) {
        (void) curl_easy_setopt(s3->curl, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "GET") == 0) {
        (void) curl_easy_setopt(s3->curl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(rq->method, "POST") == 0) {
        /* with Content-Length, also when there is no body (RGW wants it) */
        (void) curl_easy_setopt(s3->curl, CURLOPT_POST, 1L);
        (void) curl_easy_setopt(s3->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                                (curl_off_t) rq->body_len);
        (void) curl_easy_setopt(s3->curl, CURLOPT_POSTFIELDS,
                                rq->body ? (const char *) rq->body : "");
    } else if (strcmp(rq->method, "PUT") == 0) {
        (void) curl_easy_setopt(s3->curl, CURLOPT_UPLOAD, 1L);
        (void) curl_easy_setopt(s3->curl, CURLOPT_READFUNCTION,
                                storage_s3_read_cb);
        (void) curl_easy_setopt(s3->curl, CURLOPT_READDATA, &io);
        (void) curl_easy_setopt(s3->curl, CURLOPT_INFILESIZE_LARGE,
                                (curl_off_t) rq->body_len);
        (void) curl_easy_setopt(s3->curl, CURLOPT_CUSTOMREQUEST,
                                rq->method);
    } else {
        (void) curl_easy_setopt(s3->curl, CURLOPT_CUSTOMREQUEST,
                                rq->method);
    }

    cc = curl_easy_perform(s3->curl);
    (void) curl_easy_getinfo(s3->curl, CURLINFO_RESPONSE_CODE, &rq->status);

    if (cc != CURLE_OK) {
        if (worker_shutdown_requested() && !rq->cleanup) {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: %s %s: interrupted by"
                               " shutdown", s->loc->name, rq->what,
                               rq->key ? rq->key : "(bucket)");
        } else if (rq->sink_stopped) {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: %s %s: stopped by the reader",
                               s->loc->name, rq->what,
                               rq->key ? rq->key : "(bucket)");
        } else if (rq->status == 0
                   && (cc == CURLE_COULDNT_CONNECT
                       || cc == CURLE_COULDNT_RESOLVE_HOST
                       || cc == CURLE_COULDNT_RESOLVE_PROXY
                       || cc == CURLE_OPERATION_TIMEDOUT
                       || cc == CURLE_SSL_CONNECT_ERROR))
        {
            rc = storage_error(err, errlen, STORAGE_EUNAVAIL,
                               "location %s: %s %s: %s", s->loc->name,
                               rq->what, rq->key ? rq->key : "(bucket)",
                               curl_err[0] ? curl_err
                                           : curl_easy_strerror(cc));
        } else {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: %s %s: %s", s->loc->name,
                               rq->what, rq->key ? rq->key : "(bucket)",
                               curl_err[0] ? curl_err
                                           : curl_easy_strerror(cc));
        }
        goto done;
    }

    if (rq->status < 200 || rq->status >= 300) {
        rc = storage_s3_status_error(s, rq, err, errlen);
        goto done;
    }

    /* CompleteMultipartUpload and CopyObject may fail inside a 200 */
    if (rq->sink == NULL && rq->response.p != NULL
        && memmem(rq->response.p, rq->response.len, "<Error>", 7) != NULL)
    {
        rc = storage_s3_status_error(s, rq, err, errlen);
        if (rc == STORAGE_OK || rc == STORAGE_ENOENT) {
            rc = STORAGE_EIO;
        }
    }

done:
    curl_slist_free_all(list);
    if (auth != NULL) {
        memset(auth, 0, auth_len);
    }
    free(auth);
    free(copy);
    free(url);
    free(path);
    free(raw_path);
    free(full);
    return rc;
}


static void
storage_s3_req_init(storage_s3_req_t *rq, const char *method,
    const char *what, const char *key)
{
    memset(rq, 0, sizeof(*rq));
    rq->method = method;
    rq->what = what;
    rq->key = key;
}


static void
storage_s3_req_query(storage_s3_req_t *rq, const char *name,
    const char *value)
{
    if (rq->nquery < STORAGE_S3_MAX_QUERY) {
        rq->query[rq->nquery][0] = name;
        rq->query[rq->nquery][1] = value;
        rq->nquery++;
    }
}


/* Operations ---------------------------------------------------------- */

static int
storage_s3_stat(storage_t *s, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    storage_s3_req_t  rq;
    int               rc;

    storage_s3_req_init(&rq, "HEAD", "HeadObject", key);
    rc = storage_s3_perform(s, &rq, err, errlen);
    if (rc == STORAGE_OK && size != NULL) {
        *size = rq.length;
    }
    storage_s3_req_free(&rq);
    return rc;
}


static int
storage_s3_remove(storage_t *s, const char *key, char *err, size_t errlen)
{
    storage_s3_req_t  rq;
    int               rc;

    /* S3 answers 204 to a DELETE of a missing key: HEAD first, so that
     * the caller learns STORAGE_ENOENT as from LocalStorage */
    rc = storage_s3_stat(s, key, NULL, err, errlen);
    if (rc != STORAGE_OK) {
        return rc;
    }

    storage_s3_req_init(&rq, "DELETE", "DeleteObject", key);
    rc = storage_s3_perform(s, &rq, err, errlen);
    storage_s3_req_free(&rq);
    return rc;
}


typedef struct {
    storage_sink_pt  sink;
    void            *ctx;
    int64_t          got;
} storage_count_sink_t;


static int
storage_count_sink(void *ctx, const unsigned char *p, size_t len)
{
    storage_count_sink_t  *c = ctx;

    c->got += (int64_t) len;
    return c->sink(c->ctx, p, len);
}


static int
storage_s3_get(storage_t *s, const char *key, int64_t offset,
    int64_t length, storage_sink_pt sink, void *ctx, char *err,
    size_t errlen)
{
    storage_s3_req_t      rq;
    storage_count_sink_t  c = { sink, ctx, 0 };
    char                  range[64];
    int                   rc;

    storage_s3_req_init(&rq, "GET", "GetObject", key);
    if (length > 0) {
        (void) snprintf(range, sizeof(range), "bytes=%" PRId64 "-%" PRId64,
                        offset, offset + length - 1);
        rq.range = range;
    } else if (offset > 0) {
        (void) snprintf(range, sizeof(range), "bytes=%" PRId64 "-",
                        offset);
        rq.range = range;
    }
    rq.sink = storage_count_sink;
    rq.sink_ctx = &c;

    rc = storage_s3_perform(s, &rq, err, errlen);
    if (rc == STORAGE_OK && rq.range != NULL && rq.status != 206) {
        /* a server that ignores Range sent the whole object */
        rc = storage_error(err, errlen, STORAGE_EIO,
                           "location %s: GetObject %s: Range ignored"
                           " (status %ld)", s->loc->name, key, rq.status);
    }
    if (rc == STORAGE_OK && length > 0 && c.got != length) {
        rc = storage_error(err, errlen, STORAGE_EIO,
                           "location %s: GetObject %s: %" PRId64 " of %"
                           PRId64 " bytes", s->loc->name, key, c.got,
                           length);
    }
    storage_s3_req_free(&rq);
    return rc;
}


static int
storage_s3_put(storage_t *s, const char *key, const unsigned char *p,
    size_t len, char *err, size_t errlen)
{
    static const unsigned char  empty[1] = { 0 };
    storage_s3_req_t            rq;
    int                         rc;

    storage_s3_req_init(&rq, "PUT", "PutObject", key);
    rq.body = p ? p : empty;
    rq.body_len = len;
    rc = storage_s3_perform(s, &rq, err, errlen);
    storage_s3_req_free(&rq);
    return rc;
}


static int
storage_s3_mpu_create(storage_t *s, const char *key, char *upload_id,
    size_t idlen, char *err, size_t errlen)
{
    storage_s3_req_t  rq;
    int               rc;

    storage_s3_req_init(&rq, "POST", "CreateMultipartUpload", key);
    storage_s3_req_query(&rq, "uploads", "");
    rc = storage_s3_perform(s, &rq, err, errlen);
    if (rc == STORAGE_OK
        && (rq.response.p == NULL
            || !storage_xml_value(rq.response.p, rq.response.len,
                                  "UploadId", upload_id, idlen)
            || upload_id[0] == '\0'))
    {
        rc = storage_error(err, errlen, STORAGE_EIO,
                           "location %s: CreateMultipartUpload %s: no"
                           " UploadId in the answer", s->loc->name, key);
    }
    storage_s3_req_free(&rq);
    return rc;
}


static int
storage_s3_mpu_part(storage_t *s, const char *key, const char *upload_id,
    int64_t offset, const unsigned char *p, storage_part_t *part, char *err,
    size_t errlen)
{
    static const unsigned char  empty[1] = { 0 };
    storage_s3_req_t            rq;
    char                        number[16];
    int                         rc;

    (void) offset;
    (void) snprintf(number, sizeof(number), "%d", part->number);

    storage_s3_req_init(&rq, "PUT", "UploadPart", key);
    storage_s3_req_query(&rq, "partNumber", number);
    storage_s3_req_query(&rq, "uploadId", upload_id);
    rq.body = p ? p : empty;
    rq.body_len = (size_t) part->size;

    rc = storage_s3_perform(s, &rq, err, errlen);
    if (rc == STORAGE_OK) {
        if (rq.etag[0] == '\0') {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: UploadPart %s: no ETag",
                               s->loc->name, key);
        } else {
            (void) snprintf(part->etag, sizeof(part->etag), "%s", rq.etag);
        }
    }
    storage_s3_req_free(&rq);
    return rc;
}


/* Appends text to a malloc'd string buffer. */
static void
storage_append(char **buf, size_t *len, size_t *cap, const char *text)
{
    size_t  n = strlen(text);

    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, text, n + 1);
    *len += n;
}


static int
storage_s3_mpu_complete(storage_t *s, const char *key,
    const char *upload_id, const storage_part_t *parts, size_t nparts,
    char *err, size_t errlen)
{
    storage_s3_req_t  rq;
    char             *xml = NULL, part[STORAGE_ETAG_MAX + 96];
    size_t            len = 0, cap = 0, i;
    int               rc;

    storage_append(&xml, &len, &cap, "<CompleteMultipartUpload>");
    for (i = 0; i < nparts; i++) {
        (void) snprintf(part, sizeof(part),
                        "<Part><PartNumber>%d</PartNumber>"
                        "<ETag>%s</ETag></Part>",
                        parts[i].number, parts[i].etag);
        storage_append(&xml, &len, &cap, part);
    }
    storage_append(&xml, &len, &cap, "</CompleteMultipartUpload>");

    storage_s3_req_init(&rq, "POST", "CompleteMultipartUpload", key);
    storage_s3_req_query(&rq, "uploadId", upload_id);
    rq.body = (const unsigned char *) xml;
    rq.body_len = len;
    rq.slow = true;                     /* RGW assembles before answering */

    rc = storage_s3_perform(s, &rq, err, errlen);
    storage_s3_req_free(&rq);
    free(xml);
    return rc;
}


static int
storage_s3_mpu_abort(storage_t *s, const char *key, const char *upload_id,
    char *err, size_t errlen)
{
    storage_s3_req_t  rq;
    int               rc;

    storage_s3_req_init(&rq, "DELETE", "AbortMultipartUpload", key);
    storage_s3_req_query(&rq, "uploadId", upload_id);
    rq.cleanup = true;          /* a stopping worker still tidies up */
    rc = storage_s3_perform(s, &rq, err, errlen);
    storage_s3_req_free(&rq);
    return rc;
}


/* "2026-11-28T01:02:03.000Z" as a time_t; 0 when unreadable. */
static time_t
storage_parse_iso8601(const char *text)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    if (strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) == NULL) {
        return 0;
    }
    return timegm(&tm);
}


static int
storage_s3_mpu_list(storage_t *s, const char *prefix,
    storage_mpu_visit_pt visit, void *ctx, char *err, size_t errlen)
{
    storage_s3_req_t   rq;
    char              *full, key_marker[STORAGE_KEY_MAX + 1] = "";
    char               id_marker[STORAGE_UPLOAD_ID_MAX] = "";
    char               key[STORAGE_KEY_MAX + 1];
    char               id[STORAGE_UPLOAD_ID_MAX];
    char               initiated[64], truncated[16];
    const char        *p, *end, *u, *rel;
    int                rc = STORAGE_OK, pages = 0;

    full = storage_s3_full_key(s, prefix);

    for (;;) {
        storage_s3_req_init(&rq, "GET", "ListMultipartUploads", NULL);
        storage_s3_req_query(&rq, "uploads", "");
        storage_s3_req_query(&rq, "prefix", full);
        if (key_marker[0] != '\0') {
            storage_s3_req_query(&rq, "key-marker", key_marker);
            storage_s3_req_query(&rq, "upload-id-marker", id_marker);
        }
        rq.response_max = STORAGE_S3_LIST_MAX;

        rc = storage_s3_perform(s, &rq, err, errlen);
        if (rc != STORAGE_OK) {
            storage_s3_req_free(&rq);
            break;
        }
        if (rq.response.p == NULL || rq.response.truncated) {
            rc = storage_error(err, errlen, STORAGE_EIO,
                               "location %s: ListMultipartUploads: answer"
                               " missing or too long", s->loc->name);
            storage_s3_req_free(&rq);
            break;
        }

        p = rq.response.p;
        end = p + rq.response.len;
        while ((u = memmem(p, (size_t) (end - p), "<Upload>", 8)) != NULL) {
            const char  *ue = memmem(u, (size_t) (end - u), "</Upload>", 9);

            if (ue == NULL) {
                break;
            }
            if (storage_xml_value(u, (size_t) (ue - u), "Key", key,
                                  sizeof(key))
                && storage_xml_value(u, (size_t) (ue - u), "UploadId", id,
                                     sizeof(id)))
            {
                if (!storage_xml_value(u, (size_t) (ue - u), "Initiated",
                                       initiated, sizeof(initiated)))
                {
                    initiated[0] = '\0';
                }
                rel = storage_s3_rel_key(s, key);
                if (rel != NULL && storage_key_valid(rel)) {
                    visit(ctx, rel, id, storage_parse_iso8601(initiated));
                }
            }
            p = ue + 9;
        }

        truncated[0] = '\0';
        (void) storage_xml_value(rq.response.p, rq.response.len,
                                 "IsTruncated", truncated,
                                 sizeof(truncated));
        if (strcmp(truncated, "true") != 0
            || !storage_xml_value(rq.response.p, rq.response.len,
                                  "NextKeyMarker", key_marker,
                                  sizeof(key_marker))
            || !storage_xml_value(rq.response.p, rq.response.len,
                                  "NextUploadIdMarker", id_marker,
                                  sizeof(id_marker))
            || ++pages >= 10000)
        {
            storage_s3_req_free(&rq);
            break;
        }
        storage_s3_req_free(&rq);
    }

    free(full);
    return rc;
}


/* Server-side copy of src to dst by UploadPartCopy ranges. */
static int
storage_s3_copy_parts(storage_t *s, const char *source, const char *dst,
    int64_t size, char *err, size_t errlen)
{
    storage_s3_req_t   rq;
    storage_part_t    *parts;
    char               upload_id[STORAGE_UPLOAD_ID_MAX];
    char               range[64], number[16];
    int64_t            chunk = s->loc->maximum_chunk_size, off;
    size_t             n = 0, max;
    int                rc;

    if (chunk < STORAGE_MIN_PART) {
        chunk = STORAGE_MIN_PART;
    }
    if (chunk > STORAGE_S3_COPY_MAX) {
        chunk = STORAGE_S3_COPY_MAX;
    }
    if ((size + chunk - 1) / chunk > STORAGE_MAX_PARTS) {
        chunk = (size + STORAGE_MAX_PARTS - 1) / STORAGE_MAX_PARTS;
    }
    max = (size_t) ((size + chunk - 1) / chunk);

    rc = storage_s3_mpu_create(s, dst, upload_id, sizeof(upload_id), err,
                               errlen);
    if (rc != STORAGE_OK) {
        return rc;
    }

    parts = xcalloc(max, sizeof(storage_part_t));

    for (off = 0; off < size && rc == STORAGE_OK; off += chunk) {
        int64_t  len = size - off < chunk ? size - off : chunk;

        (void) snprintf(range, sizeof(range), "bytes=%" PRId64 "-%" PRId64,
                        off, off + len - 1);
        (void) snprintf(number, sizeof(number), "%d", (int) n + 1);

        storage_s3_req_init(&rq, "PUT", "UploadPartCopy", dst);
        storage_s3_req_query(&rq, "partNumber", number);
        storage_s3_req_query(&rq, "uploadId", upload_id);
        rq.copy_source = source;
        rq.copy_range = range;
        rq.slow = true;

        rc = storage_s3_perform(s, &rq, err, errlen);
        if (rc == STORAGE_OK) {
            parts[n].number = (int) n + 1;
            parts[n].size = len;
            if (rq.response.p == NULL
                || !storage_xml_value(rq.response.p, rq.response.len,
                                      "ETag", parts[n].etag,
                                      sizeof(parts[n].etag)))
            {
                rc = storage_error(err, errlen, STORAGE_EIO,
                                   "location %s: UploadPartCopy %s: no"
                                   " ETag", s->loc->name, dst);
            }
            n++;
        }
        storage_s3_req_free(&rq);
    }

    if (rc == STORAGE_OK) {
        rc = storage_s3_mpu_complete(s, dst, upload_id, parts, n, err,
                                     errlen);
    }
    if (rc != STORAGE_OK) {
        (void) storage_s3_mpu_abort(s, dst, upload_id, NULL, 0);
    }
    free(parts);
    return rc;
}


static int
storage_s3_move(storage_t *s, const char *src, const char *dst,
    int64_t size, char *err, size_t errlen)
{
    storage_s3_req_t  rq;
    char             *full, *source, derr[STORAGE_ERR_LEN];
    int               rc;

    full = storage_s3_full_key(s, src);
    source = xasprintf("/%s/%s", s->loc->bucket, full);
    free(full);

    if (size > s->loc->maximum_chunk_size || size > STORAGE_S3_COPY_MAX) {
        rc = storage_s3_copy_parts(s, source, dst, size, err, errlen);
    } else {
        storage_s3_req_init(&rq, "PUT", "CopyObject", dst);
        rq.copy_source = source;
        rq.slow = true;
        rc = storage_s3_perform(s, &rq, err, errlen);
        storage_s3_req_free(&rq);
    }
    free(source);

    if (rc != STORAGE_OK) {
        return rc;
    }

    storage_s3_req_init(&rq, "DELETE", "DeleteObject", src);
    if (storage_s3_perform(s, &rq, derr, sizeof(derr)) != STORAGE_OK) {
        worker_log(WORKER_LOG_WARN, "copied, but the source stays: %s",
                   derr);
    }
    storage_s3_req_free(&rq);
    return STORAGE_OK;
}
