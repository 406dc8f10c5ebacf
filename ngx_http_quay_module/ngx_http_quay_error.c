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


static ngx_http_quay_error_t  ngx_http_quay_errors[] = {

    [NGX_HTTP_QUAY_ERR_UNSUPPORTED] = {
        NGX_HTTP_NOT_FOUND, ngx_string("UNSUPPORTED"),
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
    ngx_uint_t              v2;
    ngx_http_quay_error_t  *e;

    e = &ngx_http_quay_errors[err];

    v2 = (r->uri.len >= 4 && ngx_strncmp(r->uri.data, "/v2/", 4) == 0);

    /* detail is our own text: no quoting needed beyond what we write */

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

        /* the Docker and OCI clients look for this header on every answer */

        if (ngx_http_quay_set_header(r, "Docker-Distribution-API-Version",
                                     "registry/2.0")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

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
