/*
 * Shared types of ngx_http_quay_module: the main configuration (one per
 * http block, holding the loaded config.yaml), the per-request context and
 * the prototypes that the module's files export to each other.
 */

#ifndef NGX_HTTP_QUAY_MODULE_H
#define NGX_HTTP_QUAY_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quay_config.h"
#include "quay_jwt.h"
#include "quay_crypto.h"


typedef struct ngx_http_quay_db_pool_s  ngx_http_quay_db_pool_t;
typedef struct ngx_http_quay_redis_s    ngx_http_quay_redis_t;
typedef struct ngx_http_quay_cache_ctx_s  ngx_http_quay_cache_ctx_t;


typedef struct {
    ngx_str_t                   config_path;
    quay_config_t              *config;      /* owned; freed by a cf->pool
                                                cleanup */

    /* PostgreSQL connection parameters derived from DB_URI at
     * configuration time, with the host already resolved (hostaddr), so
     * that no worker ever resolves a name */
    const char                **db_keywords;  /* NULL-terminated, cf->pool */
    const char                **db_values;
    ngx_str_t                   db_display;   /* user@host:port/db, for
                                                 logs: never the password */

    ngx_uint_t                  db_pool_size;
    ngx_uint_t                  db_queue_size;
    ngx_msec_t                  db_timeout;
    ngx_msec_t                  db_connect_timeout;

    /* judging storage locations (ngx_http_quay_storage_select.c) */
    ngx_uint_t                  storage_max_fails;
    time_t                      storage_fail_timeout;
    time_t                      storage_probe_interval;

    ngx_addr_t                 *redis_addr;  /* BUILDLOGS_REDIS, resolved */
    ngx_msec_t                  redis_timeout;

    ngx_str_t                   instance_key_path;
    quay_jwt_key_t             *jwt_key;     /* the instance key */
    char                       *jwt_jwk;     /* its public JWK text */

    u_char                      db_key[QUAY_CRYPTO_KEY_LEN];
    ngx_uint_t                  db_key_set;  /* DATABASE_SECRET_KEY given */

    ngx_thread_pool_t          *thread_pool;
    ngx_str_t                   thread_pool_name;

    ngx_array_t                *spool_dirs;  /* ngx_str_t: where S3
                                                uploads spool, swept */
    ngx_msec_t                  spool_sweep_interval;

    ngx_http_quay_cache_ctx_t  *cache;       /* quay_cache zone, or NULL */
    ngx_flag_t                  cache_off;   /* "quay_cache off" */

    ngx_http_quay_db_pool_t    *db;          /* per worker process */
    ngx_http_quay_redis_t      *redis;       /* per worker process */
} ngx_http_quay_main_conf_t;


typedef struct {
    ngx_flag_t                  registry;    /* quay_registry */
    ngx_flag_t                  metrics;     /* quay_metrics */
} ngx_http_quay_loc_conf_t;


extern ngx_module_t  ngx_http_quay_module;


/* ngx_http_quay_module.c: frees the wrapper of a library-owned socket */
void ngx_http_quay_connection_forget(ngx_connection_t *c);

/* ngx_http_quay_router.c */
ngx_int_t ngx_http_quay_router_handler(ngx_http_request_t *r);

/* ngx_http_quay_health.c */
ngx_int_t ngx_http_quay_health_instance(ngx_http_request_t *r);
ngx_int_t ngx_http_quay_health_endtoend(ngx_http_request_t *r);

/* ngx_http_quay_error.c: responders */

typedef enum {
    NGX_HTTP_QUAY_ERR_UNSUPPORTED = 0,   /* 405 UNSUPPORTED */
    NGX_HTTP_QUAY_ERR_NOT_FOUND,         /* 404, non-/v2/ paths */
    NGX_HTTP_QUAY_ERR_METHOD,            /* 405 UNSUPPORTED */
    NGX_HTTP_QUAY_ERR_UNAVAILABLE,       /* 503, a dependency failed */
    NGX_HTTP_QUAY_ERR_INTERNAL,          /* 500, our fault */
    NGX_HTTP_QUAY_ERR_BLOB_UNKNOWN,      /* 404 */
    NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_INVALID,   /* 400 */
    NGX_HTTP_QUAY_ERR_BLOB_UPLOAD_UNKNOWN,   /* 404 */
    NGX_HTTP_QUAY_ERR_DIGEST_INVALID,    /* 400 */
    NGX_HTTP_QUAY_ERR_MANIFEST_BLOB_UNKNOWN, /* 400 */
    NGX_HTTP_QUAY_ERR_MANIFEST_INVALID,  /* 400 */
    NGX_HTTP_QUAY_ERR_MANIFEST_UNSUPPORTED,  /* 415 MANIFEST_INVALID */
    NGX_HTTP_QUAY_ERR_MANIFEST_TOO_LARGE,    /* 413 MANIFEST_INVALID */
    NGX_HTTP_QUAY_ERR_MANIFEST_UNKNOWN,  /* 404 */
    NGX_HTTP_QUAY_ERR_NAME_INVALID,      /* 400 */
    NGX_HTTP_QUAY_ERR_NAME_UNKNOWN,      /* 404 */
    NGX_HTTP_QUAY_ERR_SIZE_INVALID,      /* 400 */
    NGX_HTTP_QUAY_ERR_TAG_INVALID,       /* 400 */
    NGX_HTTP_QUAY_ERR_RANGE_INVALID,     /* 416 BLOB_UPLOAD_INVALID */
    NGX_HTTP_QUAY_ERR_UNAUTHORIZED,      /* 401 (+ WWW-Authenticate) */
    NGX_HTTP_QUAY_ERR_INVALID_LOGIN,     /* 401 UNAUTHORIZED */
    NGX_HTTP_QUAY_ERR_DENIED,            /* 403 DENIED */
    NGX_HTTP_QUAY_ERR_READONLY,          /* 405 DENIED, read-only repo */
    NGX_HTTP_QUAY_ERR_INVALID_REQUEST,   /* 400 INVALID_REQUEST */
    NGX_HTTP_QUAY_ERR_TOO_MANY_REQUESTS, /* 429 TOOMANYREQUESTS */
    NGX_HTTP_QUAY_ERR_LAYER_TOO_LARGE,   /* 413 BLOB_UPLOAD_INVALID */
    NGX_HTTP_QUAY_ERR_TAG_IMMUTABLE,     /* 409 TAG_IMMUTABLE */
    NGX_HTTP_QUAY_ERR_COUNT
} ngx_http_quay_err_e;

/* Sends body (in r->pool) as application/json; returns what the output
 * filter returned, for ngx_http_finalize_request(). */
ngx_int_t ngx_http_quay_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len);

/* Sends the error from the table: the OCI body under /v2/, Quay's JSON
 * error elsewhere.  detail may be NULL. */
ngx_int_t ngx_http_quay_send_error(ngx_http_request_t *r,
    ngx_http_quay_err_e err, ngx_str_t *detail);

/* Adds a response header; key and value must outlive the request. */
ngx_int_t ngx_http_quay_set_header(ngx_http_request_t *r, const char *key,
    const char *value);

#endif /* NGX_HTTP_QUAY_MODULE_H */
