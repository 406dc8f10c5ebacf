/*
 * Weak stand-ins for route handlers whose files have not landed yet, so
 * that the module always loads (BIND_NOW refuses undefined symbols).  A
 * real handler, when linked in, replaces its stand-in.  This file goes
 * away once every handler of ngx_http_quay_v2.h exists.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_v2.h"


#define NGX_HTTP_QUAY_V2_PENDING(name)                                      \
    __attribute__((weak)) ngx_int_t                                         \
    name(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)                \
    {                                                                       \
        ngx_int_t  rc;                                                      \
                                                                            \
        rc = ngx_http_discard_request_body(r);                              \
        if (rc != NGX_OK) {                                                 \
            return rc;                                                      \
        }                                                                   \
                                                                            \
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNSUPPORTED,   \
                                        NULL);                              \
    }


NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_blob)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_upload_start)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_upload)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_manifest)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_referrers)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_tags_list)
NGX_HTTP_QUAY_V2_PENDING(ngx_http_quay_v2_catalog)
