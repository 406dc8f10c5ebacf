/*
 * The content handler of "quay_registry": maps the URI to a handler.  The
 * registry protocol (/v2/) and the REST API (/api/v1/) have routers of
 * their own; anything else unknown is a clear 404, never a 5xx.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_api.h"


typedef struct {
    ngx_str_t            path;
    ngx_http_handler_pt  handler;
} ngx_http_quay_route_t;


static ngx_http_quay_route_t  ngx_http_quay_exact_routes[] = {
    { ngx_string("/health"), ngx_http_quay_health_instance },
    { ngx_string("/health/instance"), ngx_http_quay_health_instance },
    { ngx_string("/health/endtoend"), ngx_http_quay_health_endtoend },
    { ngx_string("/status"), ngx_http_quay_health_endtoend },
    { ngx_string("/v2/auth"), ngx_http_quay_token_handler },
    { ngx_null_string, NULL }
};


ngx_int_t
ngx_http_quay_router_handler(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_http_quay_route_t  *route;

    /* every answer under /v2/ carries the API version header, errors
     * included: clients check it to recognize a registry */

    if (r->uri.len >= 4 && ngx_strncmp(r->uri.data, "/v2/", 4) == 0) {
        if (ngx_http_quay_v2_common_headers(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    for (route = ngx_http_quay_exact_routes; route->handler; route++) {
        if (r->uri.len == route->path.len
            && ngx_strncmp(r->uri.data, route->path.data, r->uri.len) == 0)
        {
            return route->handler(r);
        }
    }

    if (r->uri.len >= 4 && ngx_strncmp(r->uri.data, "/v2/", 4) == 0) {
        return ngx_http_quay_v2_handler(r);
    }

    if (r->uri.len >= 8 && ngx_strncmp(r->uri.data, "/api/v1/", 8) == 0) {
        return ngx_http_quay_api_handler(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_NOT_FOUND, NULL);
}
