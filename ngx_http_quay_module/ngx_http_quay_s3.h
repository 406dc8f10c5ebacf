/*
 * Talking to an S3 bucket from inside nginx (ngx_http_quay_s3.c): where
 * a location's bucket is, object keys, SigV4-signed requests made as
 * subrequests to the /_quay_s3/ location, presigned URLs and the
 * internal redirect of proxied pulls.  The S3 storage driver
 * (ngx_http_quay_storage_s3.c) and the health check use it.
 */

#ifndef NGX_HTTP_QUAY_S3_H
#define NGX_HTTP_QUAY_S3_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_config.h"
#include "quay_sigv4.h"


#define NGX_HTTP_QUAY_S3_LOCATION        "/_quay_s3/"
#define NGX_HTTP_QUAY_S3_PROXY_LOCATION  "/_quay_s3_proxy/"
#define NGX_HTTP_QUAY_S3_PRESIGN_TTL     600         /* Quay's expires_in */
#define NGX_HTTP_QUAY_S3_OCTET_STREAM    "application/octet-stream"


/* Where a location's bucket is, derived from its parameters. */
typedef struct {
    ngx_str_t                       scheme;      /* "http" or "https" */
    ngx_str_t                       host;        /* Host: and the URL's
                                                    authority */
    ngx_str_t                       hostname;    /* host without port */
    in_port_t                       port;        /* explicit or the
                                                    scheme's */
    ngx_str_t                       region;
    ngx_str_t                       bucket;
    ngx_str_t                       prefix;      /* storage_path without
                                                    outer '/'; may be "" */
} ngx_http_quay_s3_endpoint_t;


typedef struct ngx_http_quay_s3_req_s  ngx_http_quay_s3_req_t;

typedef void (*ngx_http_quay_s3_req_done_pt)(ngx_http_quay_s3_req_t *sq);


/*
 * One S3 request, made as a subrequest of r.  ngx_http_quay_s3_req_init()
 * once, then for each request: ngx_http_quay_s3_req_reset(), the optional
 * fields, a body, ngx_http_quay_s3_request().  handler runs later from a
 * posted event, with the results set.  One request at a time.
 */
struct ngx_http_quay_s3_req_s {
    ngx_http_request_t             *r;           /* the parent */
    const quay_storage_location_t  *loc;
    ngx_http_quay_s3_endpoint_t    *ep;

    ngx_uint_t                      method;      /* NGX_HTTP_* */
    ngx_str_t                       method_name;
    const char                     *what;        /* "UploadPart", logs */
    ngx_str_t                       key;         /* full object key, raw;
                                                    empty: the bucket */
    quay_sigv4_param_t              query[2];
    ngx_uint_t                      nquery;
    ngx_str_t                       copy_source; /* "/<bucket>/<key>", raw */
    ngx_str_t                       copy_range;  /* "bytes=a-b" */
    ngx_str_t                       range;       /* GET: "bytes=a-b" */
    ngx_str_t                       content_type;
    ngx_str_t                       payload;     /* hex SHA-256; empty:
                                                    UNSIGNED-PAYLOAD with a
                                                    body, else the empty
                                                    hash */
    ngx_chain_t                    *body;        /* NULL: no body */
    off_t                           body_len;
    u_char                         *into;        /* not NULL: the answer's
                                                    body goes here (at most
                                                    into_size bytes), not
                                                    into r->pool */
    size_t                          into_size;

    /* results */
    ngx_uint_t                      status;      /* S3's; 0: no answer */
    ngx_str_t                       response;    /* body, r->pool */
    ngx_str_t                       etag;        /* ETag header, r->pool */

    ngx_http_quay_s3_req_done_pt    handler;
    void                           *data;
    ngx_event_t                     event;       /* posted on completion;
                                                    deleted by the cleanup */
    ngx_pool_t                     *pool;        /* owned: this request's
                                                    memory, the subrequest's
                                                    included; destroyed when
                                                    it is answered, or by
                                                    the cleanup */
    unsigned                        out:1;       /* a subrequest is out */
};


/*
 * The endpoint of loc (reference 4.2), with strings in pool or in the
 * configuration.  NGX_ERROR when loc has no usable one.
 */
ngx_int_t ngx_http_quay_s3_endpoint(ngx_pool_t *pool,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep);

/* "<prefix>/<rel>", or rel when there is no prefix, in pool. */
ngx_int_t ngx_http_quay_s3_key(ngx_pool_t *pool,
    ngx_http_quay_s3_endpoint_t *ep, u_char *rel, size_t len,
    ngx_str_t *key);

/*
 * Prepares sq (NULL: allocates it in r->pool) and registers its cleanup
 * on r->pool.  NULL on no memory.
 */
ngx_http_quay_s3_req_t *ngx_http_quay_s3_req_init(ngx_http_quay_s3_req_t *sq,
    ngx_http_request_t *r, const quay_storage_location_t *loc,
    ngx_http_quay_s3_endpoint_t *ep);

/* Clears the previous request's fields and results. */
void ngx_http_quay_s3_req_reset(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t method, const char *what, ngx_str_t *key);

/* The pool of the request being prepared, for its fields; NULL on no
 * memory. */
ngx_pool_t *ngx_http_quay_s3_req_pool(ngx_http_quay_s3_req_t *sq);

/* The first size bytes of an open file as the body (sent with
 * sendfile); fd must stay open until the handler runs. */
ngx_int_t ngx_http_quay_s3_file_body(ngx_http_quay_s3_req_t *sq,
    ngx_fd_t fd, ngx_str_t *name, off_t size);

/* data as the body, signed with its SHA-256. */
ngx_int_t ngx_http_quay_s3_memory_body(ngx_http_quay_s3_req_t *sq,
    u_char *data, size_t len);

/*
 * Signs and sends sq.  NGX_OK: sq->handler runs later, from a posted
 * event (never from inside the call).  NGX_ERROR (logged): it will not.
 */
ngx_int_t ngx_http_quay_s3_request(ngx_http_quay_s3_req_t *sq);

/* Logs a failed request: location, operation, key, status, S3's code. */
void ngx_http_quay_s3_log_failure(ngx_http_quay_s3_req_t *sq,
    ngx_uint_t level);

/* The text of the first <name>...</name> of body; NGX_DECLINED if none. */
ngx_int_t ngx_http_quay_s3_xml_value(ngx_str_t *body, const char *name,
    ngx_str_t *value);

/* 1 when body is an S3 error document (CompleteMultipartUpload and
 * CopyObject may answer 200 and fail in the body). */
ngx_uint_t ngx_http_quay_s3_xml_error(ngx_str_t *body);

/* A presigned GET of key, valid NGX_HTTP_QUAY_S3_PRESIGN_TTL s, in
 * r->pool. */
ngx_int_t ngx_http_quay_s3_presign_url(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep,
    ngx_str_t *key, ngx_str_t *url);

/*
 * Sets the $quay_s3_* variables of r to a signed GET of key and
 * $quay_blob_digest to digest, then redirects r internally to
 * /_quay_s3_proxy/.  Returns NGX_DONE (the caller finalizes r with it),
 * or an HTTP error before anything was redirected.
 */
ngx_int_t ngx_http_quay_s3_proxy(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_s3_endpoint_t *ep,
    ngx_str_t *key, ngx_str_t *digest);

#endif /* NGX_HTTP_QUAY_S3_H */
