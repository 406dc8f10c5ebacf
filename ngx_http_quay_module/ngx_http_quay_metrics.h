/*
 * Prometheus counters in shared memory; see ngx_http_quay_metrics.c.
 */

#ifndef NGX_HTTP_QUAY_METRICS_H
#define NGX_HTTP_QUAY_METRICS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


typedef enum {
    NGX_HTTP_QUAY_METRIC_BLOB_UPLOADS = 0,
    NGX_HTTP_QUAY_METRIC_BLOB_PULLS,
    NGX_HTTP_QUAY_METRIC_MANIFEST_PUSHES,
    NGX_HTTP_QUAY_METRIC_MANIFEST_PULLS,
    NGX_HTTP_QUAY_METRIC_DB_WAITS,
    NGX_HTTP_QUAY_METRIC_DB_ERRORS,
    NGX_HTTP_QUAY_METRIC_STORAGE_ERRORS,
    NGX_HTTP_QUAY_METRIC_AUDIT_ROWS,
    NGX_HTTP_QUAY_METRIC_AUDIT_BATCHES,
    NGX_HTTP_QUAY_METRIC_AUDIT_DROPPED,
    NGX_HTTP_QUAY_METRIC_COUNT
} ngx_http_quay_metric_e;


/* Configuration time: adds the zone (with quay_config). */
ngx_int_t ngx_http_quay_metrics_conf(ngx_conf_t *cf);

/* Postconfiguration: the log phase handler. */
ngx_int_t ngx_http_quay_metrics_postconfiguration(ngx_conf_t *cf);

/* Adds one; never fails, a no-op before the zone exists. */
void ngx_http_quay_metrics_inc(ngx_http_quay_metric_e metric);

/* Adds n. */
void ngx_http_quay_metrics_add(ngx_http_quay_metric_e metric, ngx_uint_t n);

/* Counts a shared cache lookup: kind is an ngx_http_quay_cache_kind_e. */
void ngx_http_quay_metrics_cache(ngx_uint_t kind, ngx_uint_t hit);

/* The content handler of "quay_metrics". */
ngx_int_t ngx_http_quay_metrics_handler(ngx_http_request_t *r);

#endif /* NGX_HTTP_QUAY_METRICS_H */
