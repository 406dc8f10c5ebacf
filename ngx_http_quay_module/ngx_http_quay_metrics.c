/*
 * Prometheus metrics (issue #6): counters in a shared-memory zone.
 *
 * DESIGN.  The zone "quay_metrics" holds one fixed struct of
 * ngx_atomic_t counters, created with quay_config and kept across reloads
 * (a reload finds the old zone and keeps counting).  Fixed-size arrays
 * indexed by route class and status class mean no allocation, no lock and
 * no lookup on the hot path: the log phase handler does a handful of
 * atomic adds, never fails the request and always returns NGX_DECLINED.
 * Other files count through ngx_http_quay_metrics_inc() (database waits
 * and errors, audit rows) and ngx_http_quay_metrics_cache() (shared cache
 * hits and misses by kind); both are no-ops until the zone exists.
 * Counters sit in separate cache lines per class to keep the workers from
 * bouncing one line between cores.
 *
 * /metrics (location directive quay_metrics) prints the Prometheus text
 * format.  Who may read it is nginx's business: allow/deny in the
 * location (conf/nginx.conf).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_metrics.h"
#include "ngx_http_quay_v2.h"
#include "ngx_http_quay_cache.h"


#define NGX_HTTP_QUAY_METRICS_PAD  (128 / sizeof(ngx_atomic_t))


typedef enum {
    NGX_HTTP_QUAY_ROUTE_HEALTH = 0,
    NGX_HTTP_QUAY_ROUTE_AUTH,
    NGX_HTTP_QUAY_ROUTE_V2_BASE,
    NGX_HTTP_QUAY_ROUTE_V2_CATALOG,
    NGX_HTTP_QUAY_ROUTE_V2_TAGS,
    NGX_HTTP_QUAY_ROUTE_V2_MANIFEST,
    NGX_HTTP_QUAY_ROUTE_V2_BLOB,
    NGX_HTTP_QUAY_ROUTE_V2_UPLOAD,
    NGX_HTTP_QUAY_ROUTE_V2_REFERRERS,
    NGX_HTTP_QUAY_ROUTE_API,
    NGX_HTTP_QUAY_ROUTE_METRICS,
    NGX_HTTP_QUAY_ROUTE_OTHER,
    NGX_HTTP_QUAY_ROUTE_COUNT
} ngx_http_quay_route_class_e;


static const char  *ngx_http_quay_route_names[] = {
    "health", "auth", "v2_base", "v2_catalog", "v2_tags", "v2_manifest",
    "v2_blob", "v2_upload", "v2_referrers", "api", "metrics", "other"
};

static const char  *ngx_http_quay_status_names[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};

static const char  *ngx_http_quay_counter_names[][2] = {
    { "quay_blob_uploads_total", "Blobs committed by PUT or POST ?digest" },
    { "quay_blob_pulls_total", "Blob GETs answered 200 or 206" },
    { "quay_manifest_pushes_total", "Manifests stored" },
    { "quay_manifest_pulls_total", "Manifest GETs answered 200" },
    { "quay_db_waits_total", "Queries that waited for a connection" },
    { "quay_db_errors_total", "Queries that failed" },
    { "quay_storage_errors_total", "Storage operations that failed" },
    { "quay_audit_rows_total", "Audit log rows written" },
    { "quay_audit_batches_total", "Multi-row audit log inserts" },
    { "quay_audit_dropped_total", "Audit log rows that could not be "
      "written" },
};

static const char  *ngx_http_quay_cache_names[] = {
    "token", "repository", "tag"
};


typedef struct {
    ngx_atomic_t   requests[NGX_HTTP_QUAY_ROUTE_COUNT][5];
    ngx_atomic_t   pad0[NGX_HTTP_QUAY_METRICS_PAD];
    ngx_atomic_t   bytes_in;
    ngx_atomic_t   bytes_out;
    ngx_atomic_t   pad1[NGX_HTTP_QUAY_METRICS_PAD];
    ngx_atomic_t   counters[NGX_HTTP_QUAY_METRIC_COUNT];
    ngx_atomic_t   pad2[NGX_HTTP_QUAY_METRICS_PAD];
    ngx_atomic_t   cache[NGX_HTTP_QUAY_CACHE_KINDS][2];  /* miss, hit */
} ngx_http_quay_metrics_shm_t;


static ngx_int_t ngx_http_quay_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_quay_metrics_log(ngx_http_request_t *r);
static ngx_uint_t ngx_http_quay_metrics_route(ngx_http_request_t *r);


/* per process, pointing into the zone */
static ngx_http_quay_metrics_shm_t  *ngx_http_quay_metrics_shm;


ngx_int_t
ngx_http_quay_metrics_conf(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, "quay_metrics");

    zone = ngx_shared_memory_add(cf, &name, 64 * 1024, &ngx_http_quay_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_quay_metrics_init_zone;
    zone->noreuse = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        /* a reload: keep the old zone and its counts */
        shm_zone->data = data;
        ngx_http_quay_metrics_shm = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        ngx_http_quay_metrics_shm = shpool->data;
        return NGX_OK;
    }

    ngx_http_quay_metrics_shm = ngx_slab_calloc(shpool,
                                    sizeof(ngx_http_quay_metrics_shm_t));
    if (ngx_http_quay_metrics_shm == NULL) {
        return NGX_ERROR;
    }

    shpool->data = ngx_http_quay_metrics_shm;
    shm_zone->data = ngx_http_quay_metrics_shm;

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_metrics_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_quay_metrics_log;

    return NGX_OK;
}


void
ngx_http_quay_metrics_inc(ngx_http_quay_metric_e metric)
{
    if (ngx_http_quay_metrics_shm != NULL) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quay_metrics_shm->counters[metric], 1);
    }
}


void
ngx_http_quay_metrics_add(ngx_http_quay_metric_e metric, ngx_uint_t n)
{
    if (ngx_http_quay_metrics_shm != NULL) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quay_metrics_shm->counters[metric], n);
    }
}


void
ngx_http_quay_metrics_cache(ngx_uint_t kind, ngx_uint_t hit)
{
    if (ngx_http_quay_metrics_shm != NULL
        && kind < NGX_HTTP_QUAY_CACHE_KINDS)
    {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quay_metrics_shm->cache[kind][hit ? 1 : 0], 1);
    }
}


static ngx_int_t
ngx_http_quay_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                    route, status, cls;
    ngx_http_quay_metrics_shm_t  *m;
    ngx_http_quay_loc_conf_t     *qlcf;

    m = ngx_http_quay_metrics_shm;
    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_quay_module);

    if (m == NULL || qlcf == NULL || (!qlcf->registry && !qlcf->metrics)) {
        return NGX_DECLINED;
    }

    status = r->headers_out.status ? r->headers_out.status
                                   : (ngx_uint_t) NGX_HTTP_OK;
    cls = (status >= 100 && status < 600) ? status / 100 - 1 : 4;

    route = qlcf->metrics ? NGX_HTTP_QUAY_ROUTE_METRICS
                          : ngx_http_quay_metrics_route(r);

    (void) ngx_atomic_fetch_add(&m->requests[route][cls], 1);
    (void) ngx_atomic_fetch_add(&m->bytes_in, r->request_length);
    (void) ngx_atomic_fetch_add(&m->bytes_out, r->connection->sent);

    if (route == NGX_HTTP_QUAY_ROUTE_V2_BLOB
        && r->method == NGX_HTTP_GET
        && (status == NGX_HTTP_OK || status == NGX_HTTP_PARTIAL_CONTENT))
    {
        ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_BLOB_PULLS);

    } else if (route == NGX_HTTP_QUAY_ROUTE_V2_UPLOAD
               && status == NGX_HTTP_CREATED)
    {
        ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_BLOB_UPLOADS);

    } else if (route == NGX_HTTP_QUAY_ROUTE_V2_MANIFEST) {
        if (r->method == NGX_HTTP_PUT && status == NGX_HTTP_CREATED) {
            ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_MANIFEST_PUSHES);

        } else if (r->method == NGX_HTTP_GET && status == NGX_HTTP_OK) {
            ngx_http_quay_metrics_inc(NGX_HTTP_QUAY_METRIC_MANIFEST_PULLS);
        }
    }

    return NGX_DECLINED;
}


/* The route class from the router's parse when there was one, else from
 * the URI prefix: cheap either way. */

static ngx_uint_t
ngx_http_quay_metrics_route(ngx_http_request_t *r)
{
    ngx_http_quay_v2_ctx_t  *ctx;

    if (r->uri.len >= 7 && ngx_strncmp(r->uri.data, "/health", 7) == 0) {
        return NGX_HTTP_QUAY_ROUTE_HEALTH;
    }

    if (r->uri.len == 8 && ngx_strncmp(r->uri.data, "/v2/auth", 8) == 0) {
        return NGX_HTTP_QUAY_ROUTE_AUTH;
    }

    if (r->uri.len >= 8 && ngx_strncmp(r->uri.data, "/api/v1/", 8) == 0) {
        return NGX_HTTP_QUAY_ROUTE_API;
    }

    ctx = ngx_http_quay_v2_get_ctx(r);

    if (ctx == NULL || ctx->path.error != QUAY_V2_OK) {
        return NGX_HTTP_QUAY_ROUTE_OTHER;
    }

    switch (ctx->path.kind) {
    case QUAY_V2_BASE:
        return NGX_HTTP_QUAY_ROUTE_V2_BASE;
    case QUAY_V2_CATALOG:
        return NGX_HTTP_QUAY_ROUTE_V2_CATALOG;
    case QUAY_V2_TAGS_LIST:
        return NGX_HTTP_QUAY_ROUTE_V2_TAGS;
    case QUAY_V2_MANIFEST:
        return NGX_HTTP_QUAY_ROUTE_V2_MANIFEST;
    case QUAY_V2_BLOB:
        return NGX_HTTP_QUAY_ROUTE_V2_BLOB;
    case QUAY_V2_UPLOAD_START:
    case QUAY_V2_UPLOAD:
        return NGX_HTTP_QUAY_ROUTE_V2_UPLOAD;
    case QUAY_V2_REFERRERS:
        return NGX_HTTP_QUAY_ROUTE_V2_REFERRERS;
    default:
        return NGX_HTTP_QUAY_ROUTE_OTHER;
    }
}


ngx_int_t
ngx_http_quay_metrics_handler(ngx_http_request_t *r)
{
    u_char                       *body, *p;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_uint_t                    i, j;
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_http_quay_metrics_shm_t  *m;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    m = ngx_http_quay_metrics_shm;
    if (m == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    len = 512 + NGX_HTTP_QUAY_ROUTE_COUNT * 5
                * (sizeof("quay_http_requests_total{route=\"v2_referrers\","
                          "status=\"5xx\"} ") + NGX_ATOMIC_T_LEN)
          + NGX_HTTP_QUAY_METRIC_COUNT * (256 + NGX_ATOMIC_T_LEN)
          + 512 + NGX_HTTP_QUAY_CACHE_KINDS * 2
                  * (sizeof("quay_cache_misses_total{cache=\"repository\"} ")
                     + NGX_ATOMIC_T_LEN);

    body = ngx_pnalloc(r->pool, len);
    b = ngx_calloc_buf(r->pool);
    if (body == NULL || b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "# HELP quay_http_requests_total Requests by "
                    "route class and status class\n"
                    "# TYPE quay_http_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_QUAY_ROUTE_COUNT; i++) {
        for (j = 0; j < 5; j++) {
            if (m->requests[i][j] == 0) {
                continue;
            }

            p = ngx_sprintf(p, "quay_http_requests_total{route=\"%s\","
                            "status=\"%s\"} %uA\n",
                            ngx_http_quay_route_names[i],
                            ngx_http_quay_status_names[j],
                            m->requests[i][j]);
        }
    }

    p = ngx_sprintf(p, "# HELP quay_http_received_bytes_total Request "
                    "bytes\n# TYPE quay_http_received_bytes_total counter\n"
                    "quay_http_received_bytes_total %uA\n"
                    "# HELP quay_http_sent_bytes_total Response bytes\n"
                    "# TYPE quay_http_sent_bytes_total counter\n"
                    "quay_http_sent_bytes_total %uA\n",
                    m->bytes_in, m->bytes_out);

    for (i = 0; i < NGX_HTTP_QUAY_METRIC_COUNT; i++) {
        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s counter\n%s %uA\n",
                        ngx_http_quay_counter_names[i][0],
                        ngx_http_quay_counter_names[i][1],
                        ngx_http_quay_counter_names[i][0],
                        ngx_http_quay_counter_names[i][0],
                        m->counters[i]);
    }

    p = ngx_sprintf(p, "# HELP quay_cache_hits_total Shared cache lookups "
                    "answered from the cache, by cache\n"
                    "# TYPE quay_cache_hits_total counter\n");

    for (i = 0; i < NGX_HTTP_QUAY_CACHE_KINDS; i++) {
        p = ngx_sprintf(p, "quay_cache_hits_total{cache=\"%s\"} %uA\n",
                        ngx_http_quay_cache_names[i], m->cache[i][1]);
    }

    p = ngx_sprintf(p, "# HELP quay_cache_misses_total Shared cache lookups "
                    "that went to the database, by cache\n"
                    "# TYPE quay_cache_misses_total counter\n");

    for (i = 0; i < NGX_HTTP_QUAY_CACHE_KINDS; i++) {
        p = ngx_sprintf(p, "quay_cache_misses_total{cache=\"%s\"} %uA\n",
                        ngx_http_quay_cache_names[i], m->cache[i][0]);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = p - body;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->pos = body;
    b->last = p;
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
