/*
 * The REST API, /api/v1.  See the design paragraph at the top of
 * ngx_http_quay_api.c and the route catalog in lib/quay_api.h.
 */

#ifndef NGX_HTTP_QUAY_API_H
#define NGX_HTTP_QUAY_API_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


/* The content handler for every URI under /api/v1/. */
ngx_int_t ngx_http_quay_api_handler(ngx_http_request_t *r);

/*
 * Sends Quay's JSON error: {"status", "error_message", "detail",
 * "error_type", "title", "type"}; a 401 also carries WWW-Authenticate.
 * type and message are NUL-terminated and are JSON-escaped here.
 */
ngx_int_t ngx_http_quay_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *message);

#endif /* NGX_HTTP_QUAY_API_H */
