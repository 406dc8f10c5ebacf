/*
 * Responders: every answer the module builds itself goes out through
 * here.  Errors come from one table, as Quay's endpoints/v2/errors.py
 * does: /v2/ gets the OCI error body ({"errors":[{"code","message",
 * "detail"}]}), everything else Quay's JSON error shape.  A client mistake
 * is a 4xx; a 5xx is our fault or a dependency's and is logged by whoever
 * detected it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


typedef struct {
    ngx_uint_t   status;
    ngx_str_t    code;
    ngx_str_t    message;
} ngx_http_quay_error_t;


static ngx_http_quay_error_t  ngx_http_quay_errors[NGX_HTTP_QUAY_ERR_COUNT] = {

    [NGX_HTTP_QUAY_ERR_UNSUPPORTED] = {
        NGX_HTTP_NOT_ALLOWED, ngx_string("UNSUPPORTED"),
        ngx_string("The operation is unsupported.") },

    [NGX_HTTP_QUAY_ERR_NOT_FOUND] = {
        NGX_HTTP_NOT_FOUND, ngx_string("NOT_FOUND"),
        ngx_string("Not found.") },

    [NGX_HTTP_QUAY_ERR_METHOD] = {
        NGX_HTTP_NOT_ALLOWED, ngx_string("UNSUPPORTED"),
        ngx_string("The method is not allowed for this resource.") },

    [NGX_HTTP_QUAY_ERR_UNAVAILABLE] = {
        NGX_HTTP_SERVICE_UNAVAILABLE, ngx_string("UNAVAILABLE"),
        ngx_string("The registry is temporarily unavailable.") },

    [NGX_HTTP_QUAY_ERR_INTERNAL] = {
        NGX_HTTP_INTERNAL_SERVER_ERROR, ngx_string("INTERNAL"),
        ngx_string("Internal error.") },

    [NGX_HTTP_QUAY_ERR_BLOB_UNKNOWN] = {
        NGX_HTTP_NOT_FOUND, ngx_string("BLOB_UNKNOWN"),
        ngx_string("blob unknown to registry") },

    [NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("BLOB_UPLOAD_INVALID"),
        ngx_string("blob upload invalid") },

    [NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN] = {
        NGX_HTTP_NOT_FOUND, ngx_string("BLOB_UPLOAD_UNKNOWN"),
        ngx_string("blob upload unknown to registry") },

    [NGX_HTTP_QUAY_ERR_DIGEST_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("DIGEST_INVALID"),
        ngx_string("provided digest did not match uploaded content") },

    [NGX_HTTP_QUAY_ERR_MANIFEST_BLOB_UNKNOWN] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("MANIFEST_BLOB_UNKNOWN"),
        ngx_string("manifest blob unknown to registry") },

    [NGX_HTTP_QUAY_ERR_MANIFEST_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("MANIFEST_INVALID"),
        ngx_string("manifest invalid") },

    [NGX_HTTP_QUAY_ERR_MANIFEST_UNSUPPORTED] = {
        NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, ngx_string("MANIFEST_INVALID"),
        ngx_string("manifest media type is not supported") },

    [NGX_HTTP_QUAY_ERR_MANIFEST_TOO_LARGE] = {
        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, ngx_string("MANIFEST_INVALID"),
        ngx_string("manifest is larger than 4 MiB") },

    [NGX_HTTP_QUAY_ERR_MANIFEST_UNKNOWN] = {
        NGX_HTTP_NOT_FOUND, ngx_string("MANIFEST_UNKNOWN"),
        ngx_string("manifest unknown") },

    [NGX_HTTP_QUAY_ERR_NAME_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("NAME_INVALID"),
        ngx_string("invalid repository name") },

    [NGX_HTTP_QUAY_ERR_NAME_UNKNOWN] = {
        NGX_HTTP_NOT_FOUND, ngx_string("NAME_UNKNOWN"),
        ngx_string("repository name not known to registry") },

    [NGX_HTTP_QUAY_ERR_SIZE_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("SIZE_INVALID"),
        ngx_string("provided length did not match content length") },

    [NGX_HTTP_QUAY_ERR_TAG_INVALID] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("TAG_INVALID"),
        ngx_string("manifest tag did not match URI") },

    [NGX_HTTP_QUAY_ERR_RANGE_INVALID] = {
        NGX_HTTP_RANGE_NOT_SATISFIABLE, ngx_string("BLOB_UPLOAD_INVALID"),
        ngx_string("invalid content range") },

    [NGX_HTTP_QUAY_ERR_UNAUTHORIZED] = {
        NGX_HTTP_UNAUTHORIZED, ngx_string("UNAUTHORIZED"),
        ngx_string("access to the requested resource is not authorized") },

    [NGX_HTTP_QUAY_ERR_INVALID_LOGIN] = {
        NGX_HTTP_UNAUTHORIZED, ngx_string("UNAUTHORIZED"),
        ngx_string("Specified credentials are invalid") },

    [NGX_HTTP_QUAY_ERR_DENIED] = {
        NGX_HTTP_FORBIDDEN, ngx_string("DENIED"),
        ngx_string("requested access to the resource is denied") },

    [NGX_HTTP_QUAY_ERR_READONLY] = {
        NGX_HTTP_NOT_ALLOWED, ngx_string("DENIED"),
        ngx_string("repository is read-only") },

    [NGX_HTTP_QUAY_ERR_INVALID_REQUEST] = {
        NGX_HTTP_BAD_REQUEST, ngx_string("INVALID_REQUEST"),
        ngx_string("invalid request") },

    [NGX_HTTP_QUAY_ERR_TOO_MANY_REQUESTS] = {
        NGX_HTTP_TOO_MANY_REQUESTS, ngx_string("TOOMANYREQUESTS"),
        ngx_string("too many requests") },

    [NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE] = {
        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, ngx_string("BLOB_UPLOAD_INVALID"),
        ngx_string("layer is larger than MAXIMUM_LAYER_SIZE") },

    [NGX_HTTP_QUAY_ERR_TAG_IMMUTABLE] = {
        NGX_HTTP_CONFLICT, ngx_string("TAG_IMMUTABLE"),
        ngx_string("tag is immutable") },
};


ngx_int_t
ngx_http_quay_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    /* allocate everything before the header goes out */

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_quay_send_error(ngx_http_request_t *r, ngx_http_quay_err_e err,
    ngx_str_t *detail)
{
    u_char                 *body, *last;
    size_t                  len;
    ngx_str_t               escaped;
    ngx_uint_t              v2;
    ngx_http_quay_error_t  *e;

    e = &ngx_http_quay_errors[err];

    v2 = (r->uri.len >= 4 && ngx_strncmp(r->uri.data, "/v2/", 4) == 0);

    /* detail may quote client input (a digest, a tag): escape it */

    if (detail != NULL) {
        escaped.len = detail->len
                      + ngx_escape_json(NULL, detail->data, detail->len);
        escaped.data = ngx_pnalloc(r->pool, escaped.len);
        if (escaped.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_escape_json(escaped.data, detail->data, detail->len);
        detail = &escaped;
    }

    len = sizeof("{\"errors\":[{\"code\":\"\",\"message\":\"\","
                 "\"detail\":\"\"}]}") + e->code.len + e->message.len
          + (detail ? detail->len : 0)
          + sizeof("{\"error_message\":\"\",\"error_type\":\"\","
                   "\"status\":000}");

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (v2) {
        last = ngx_sprintf(body, "{\"errors\":[{\"code\":\"%V\","
                           "\"message\":\"%V\",\"detail\":\"%V\"}]}",
                           &e->code, &e->message,
                           detail ? detail : &e->message);

    } else {
        last = ngx_sprintf(body, "{\"error_message\":\"%V\","
                           "\"error_type\":\"%V\",\"status\":%ui}",
                           detail ? detail : &e->message, &e->code,
                           e->status);
    }

    return ngx_http_quay_send_json(r, e->status, body, last - body);
}


ngx_int_t
ngx_http_quay_set_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}
