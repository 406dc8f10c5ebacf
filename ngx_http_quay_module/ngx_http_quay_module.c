/*
 * ngx_http_quay_module: directives, configuration and process life cycle.
 *
 * config.yaml is loaded once, at configuration time, by the quay_config
 * directive: a bad key fails "nginx -t" with the key's name and line, and
 * a reload with a bad file keeps the old configuration running.  The same
 * step derives what the workers need at run time without blocking: the
 * libpq connection parameters with the database host already resolved
 * (hostaddr), and the Redis address.  Each worker process then creates its
 * own database pool in init_process.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <libpq-fe.h>

#include "ngx_http_quay_module.h"
#include "ngx_http_quay_db.h"
#include "ngx_http_quay_redis.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_metrics.h"
#include "ngx_http_quay_storage.h"
#include "ngx_http_quay_cache.h"
#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_spool_sweep.h"


static void *ngx_http_quay_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_quay_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_quay_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_quay_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_quay_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_quay_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_quay_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_quay_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_quay_postconfiguration(ngx_conf_t *cf);
static void ngx_http_quay_config_report(void *ctx, bool is_error,
    const char *key, unsigned line, const char *msg);
static void ngx_http_quay_config_cleanup(void *data);
static ngx_int_t ngx_http_quay_db_params(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf);
static ngx_int_t ngx_http_quay_redis_params(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf);
static char *ngx_http_quay_strdup0(ngx_pool_t *pool, const char *s);
static ngx_int_t ngx_http_quay_init_process(ngx_cycle_t *cycle);
static void ngx_http_quay_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_quay_db_pool_bounds = {
    ngx_conf_check_num_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_http_quay_storage_fails_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};


static ngx_command_t  ngx_http_quay_commands[] = {

    { ngx_string("quay_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_quay_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quay_registry"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_quay_registry,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quay_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_quay_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quay_db_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, db_pool_size),
      &ngx_http_quay_db_pool_bounds },

    { ngx_string("quay_db_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, db_queue_size),
      NULL },

    { ngx_string("quay_db_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, db_timeout),
      NULL },

    { ngx_string("quay_db_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, db_connect_timeout),
      NULL },

    { ngx_string("quay_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, redis_timeout),
      NULL },

    { ngx_string("quay_storage_max_fails"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, storage_max_fails),
      &ngx_http_quay_storage_fails_bounds },

    { ngx_string("quay_storage_fail_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, storage_fail_timeout),
      NULL },

    { ngx_string("quay_storage_probe_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, storage_probe_interval),
      NULL },

    { ngx_string("quay_storage_fallback"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_quay_storage_fallback,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quay_instance_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, instance_key_path),
      NULL },

    { ngx_string("quay_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_quay_cache_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quay_spool_sweep_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, spool_sweep_interval),
      NULL },

    { ngx_string("quay_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_quay_main_conf_t, thread_pool_name),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_quay_module_ctx = {
    ngx_http_quay_preconfiguration,        /* preconfiguration */
    ngx_http_quay_postconfiguration,       /* postconfiguration */

    ngx_http_quay_create_main_conf,        /* create main configuration */
    ngx_http_quay_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_quay_create_loc_conf,         /* create location configuration */
    ngx_http_quay_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_quay_module = {
    NGX_MODULE_V1,
    &ngx_http_quay_module_ctx,             /* module context */
    ngx_http_quay_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_quay_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_quay_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_quay_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_quay_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qmcf->config_path = { 0, NULL };
     *     qmcf->config = NULL;
     *     qmcf->db_keywords = NULL;
     *     qmcf->db_values = NULL;
     *     qmcf->redis_addr = NULL;
     *     qmcf->redis = NULL;
     *     qmcf->instance_key_path = { 0, NULL };
     *     qmcf->jwt_key = NULL;
     *     qmcf->jwt_jwk = NULL;
     *     qmcf->thread_pool = NULL;
     *     qmcf->thread_pool_name = { 0, NULL };
     *     qmcf->db = NULL;
     *     qmcf->db_key_set = 0;
     *     qmcf->cache = NULL;
     *     qmcf->cache_off = 0;
     *     qmcf->spool_dirs = NULL;
     */

    qmcf->db_pool_size = NGX_CONF_UNSET_UINT;
    qmcf->db_queue_size = NGX_CONF_UNSET_UINT;
    qmcf->db_timeout = NGX_CONF_UNSET_MSEC;
    qmcf->db_connect_timeout = NGX_CONF_UNSET_MSEC;
    qmcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    qmcf->storage_max_fails = NGX_CONF_UNSET_UINT;
    qmcf->storage_fail_timeout = NGX_CONF_UNSET;
    qmcf->storage_probe_interval = NGX_CONF_UNSET;
    qmcf->spool_sweep_interval = NGX_CONF_UNSET_MSEC;

    return qmcf;
}


static char *
ngx_http_quay_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_quay_main_conf_t  *qmcf = conf;

    ngx_conf_init_uint_value(qmcf->db_pool_size, 16);
    ngx_conf_init_uint_value(qmcf->db_queue_size, 1024);
    ngx_conf_init_msec_value(qmcf->db_timeout, 10000);
    ngx_conf_init_msec_value(qmcf->db_connect_timeout, 3000);
    ngx_conf_init_msec_value(qmcf->redis_timeout, 2000);
    ngx_conf_init_uint_value(qmcf->storage_max_fails, 3);
    ngx_conf_init_value(qmcf->storage_fail_timeout, 30);
    ngx_conf_init_value(qmcf->storage_probe_interval, 10);
    ngx_conf_init_msec_value(qmcf->spool_sweep_interval, 3600000);

    if (qmcf->thread_pool_name.data == NULL) {
        ngx_str_set(&qmcf->thread_pool_name, "quay");
    }

    if (qmcf->config == NULL) {
        return NGX_CONF_OK;
    }

    /* "unknown thread pool" at startup if nginx.conf lacks thread_pool */

    qmcf->thread_pool = ngx_thread_pool_add(cf, &qmcf->thread_pool_name);
    if (qmcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quay_auth_conf(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quay_cache_conf(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_quay_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_quay_loc_conf_t  *qlcf;

    qlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_quay_loc_conf_t));
    if (qlcf == NULL) {
        return NULL;
    }

    qlcf->registry = NGX_CONF_UNSET;
    qlcf->metrics = NGX_CONF_UNSET;

    return qlcf;
}


static char *
ngx_http_quay_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_quay_loc_conf_t  *prev = parent;
    ngx_http_quay_loc_conf_t  *conf = child;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quay_main_conf_t  *qmcf;

    ngx_conf_merge_value(conf->registry, prev->registry, 0);
    ngx_conf_merge_value(conf->metrics, prev->metrics, 0);

    if (conf->registry != 1) {
        return NGX_CONF_OK;
    }

    /* the core module's settings of this location are merged already:
     * its S3 uploads spool below its client_body_temp_path */

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quay_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (ngx_http_quay_spool_sweep_add_dir(cf, qmcf,
                                          clcf->client_body_temp_path)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_quay_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quay_main_conf_t  *qmcf = conf;

    ngx_str_t           *value;
    quay_err_t           err;
    ngx_pool_cleanup_t  *cln;

    if (qmcf->config != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    qmcf->config_path = value[1];

    if (ngx_conf_full_name(cf->cycle, &qmcf->config_path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    err.code = 0;
    err.msg[0] = '\0';

    qmcf->config = quay_config_load((char *) qmcf->config_path.data,
                                    ngx_http_quay_config_report, cf, &err);

    if (qmcf->config == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "quay: \"%V\": %s",
                           &qmcf->config_path, err.msg);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_quay_config_cleanup;
    cln->data = qmcf->config;

    if (ngx_http_quay_db_params(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quay_redis_params(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quay_metrics_conf(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* S3 endpoints are resolved now, like proxy_pass hosts */

    if (ngx_http_quay_storage_s3_conf(cf, qmcf->config) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the field-encryption key (robot and app tokens); without
     * DATABASE_SECRET_KEY the routes that store secrets answer 500 and
     * say why in the log */

    if (qmcf->config->database_secret_key != NULL) {
        if (quay_crypto_key_derive(qmcf->config->database_secret_key,
                                   ngx_strlen(qmcf->config
                                              ->database_secret_key),
                                   qmcf->db_key, &err)
            != QUAY_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: \"%V\": DATABASE_SECRET_KEY: %s",
                               &qmcf->config_path, err.msg);
            return NGX_CONF_ERROR;
        }

        qmcf->db_key_set = 1;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_quay_config_report(void *ctx, bool is_error, const char *key,
    unsigned line, const char *msg)
{
    ngx_conf_t  *cf = ctx;

    /* errors are reported once, by the caller, with the first of them;
     * warnings (unknown keys) are only reported here */

    if (is_error) {
        return;
    }

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "quay: config.yaml line %ui: "
                       "%s: %s", (ngx_uint_t) line, key ? key : "(file)",
                       msg);
}


static void
ngx_http_quay_config_cleanup(void *data)
{
    quay_config_free(data);
}


/*
 * DB_URI is parsed by libpq itself (PQconninfoParse does no I/O), then the
 * host is resolved here, once, so that PQconnectStartParams() in a worker
 * never blocks in DNS.  gssencmode is disabled so that libpq never retries
 * on a new socket behind nginx's back.
 */

static ngx_int_t
ngx_http_quay_db_params(ngx_conf_t *cf, ngx_http_quay_main_conf_t *qmcf)
{
    char             *errmsg;
    u_char           *p, *last;
    size_t            len;
    ngx_int_t         rc;
    ngx_url_t         u;
    ngx_uint_t        n, i;
    const char       *host, *port, *user, *dbname;
    PQconninfoOption *opts, *o;

    errmsg = NULL;
    opts = PQconninfoParse(qmcf->config->db_uri, &errmsg);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quay: DB_URI: %s",
                           errmsg ? errmsg : "out of memory");
        if (errmsg) {
            PQfreemem(errmsg);
        }
        return NGX_ERROR;
    }

    host = NULL;
    port = NULL;
    user = NULL;
    dbname = NULL;

    n = 0;
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0') {
            continue;
        }

        n++;

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;
        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = o->val;
        } else if (ngx_strcmp(o->keyword, "user") == 0) {
            user = o->val;
        } else if (ngx_strcmp(o->keyword, "dbname") == 0) {
            dbname = o->val;
        }
    }

    /* room for hostaddr, gssencmode, client_encoding and the NULL */

    qmcf->db_keywords = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));
    qmcf->db_values = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));

    if (qmcf->db_keywords == NULL || qmcf->db_values == NULL) {
        PQconninfoFree(opts);
        return NGX_ERROR;
    }

    i = 0;

    if (host != NULL && host[0] != '/') {

        if (ngx_strchr(host, ',') != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: DB_URI: several hosts are not "
                               "supported");
            PQconninfoFree(opts);
            return NGX_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.host.data = (u_char *) host;
        u.host.len = ngx_strlen(host);
        rc = port ? ngx_atoi((u_char *) port, ngx_strlen(port)) : 5432;

        if (rc < 1 || rc > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: DB_URI: invalid port \"%s\"", port);
            PQconninfoFree(opts);
            return NGX_ERROR;
        }

        u.port = (in_port_t) rc;

        if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quay: DB_URI: host \"%s\" not found", host);
            PQconninfoFree(opts);
            return NGX_ERROR;
        }

        p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (p == NULL) {
            PQconninfoFree(opts);
            return NGX_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                            NGX_SOCKADDR_STRLEN, 0);
        p[len] = '\0';

        qmcf->db_keywords[i] = "hostaddr";
        qmcf->db_values[i++] = (char *) p;
    }

    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0'
            || ngx_strcmp(o->keyword, "hostaddr") == 0
            || ngx_strcmp(o->keyword, "gssencmode") == 0
            || ngx_strcmp(o->keyword, "client_encoding") == 0)
        {
            continue;
        }

        qmcf->db_keywords[i] = ngx_http_quay_strdup0(cf->pool, o->keyword);
        qmcf->db_values[i] = ngx_http_quay_strdup0(cf->pool, o->val);

        if (qmcf->db_keywords[i] == NULL || qmcf->db_values[i] == NULL) {
            PQconninfoFree(opts);
            return NGX_ERROR;
        }

        i++;
    }

    qmcf->db_keywords[i] = "gssencmode";
    qmcf->db_values[i++] = "disable";

    /* manifests are stored as text and must come back byte-exact */
    qmcf->db_keywords[i] = "client_encoding";
    qmcf->db_values[i++] = "UTF8";
    qmcf->db_keywords[i] = NULL;
    qmcf->db_values[i] = NULL;

    /* user@host:port/db for log lines: never the password */

    len = sizeof("@:/") + (user ? ngx_strlen(user) : 0)
          + (host ? ngx_strlen(host) : 0) + (port ? ngx_strlen(port) : 0)
          + (dbname ? ngx_strlen(dbname) : 0);

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        PQconninfoFree(opts);
        return NGX_ERROR;
    }

    last = ngx_snprintf(p, len, "%s@%s:%s/%s", user ? user : "",
                        host ? host : "", port ? port : "5432",
                        dbname ? dbname : "");

    qmcf->db_display.data = p;
    qmcf->db_display.len = last - p;

    PQconninfoFree(opts);

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_redis_params(ngx_conf_t *cf, ngx_http_quay_main_conf_t *qmcf)
{
    ngx_url_t             u;
    quay_redis_config_t  *rc;

    rc = &qmcf->config->buildlogs_redis;

    if (rc->host == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.host.data = (u_char *) rc->host;
    u.host.len = ngx_strlen(rc->host);
    u.port = (in_port_t) (rc->port ? rc->port : 6379);

    if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quay: BUILDLOGS_REDIS: host \"%s\" not found",
                           rc->host);
        return NGX_ERROR;
    }

    qmcf->redis_addr = &u.addrs[0];

    return NGX_OK;
}


static char *
ngx_http_quay_strdup0(ngx_pool_t *pool, const char *s)
{
    char    *p;
    size_t   len;

    len = ngx_strlen(s);

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len + 1);

    return p;
}


static char *
ngx_http_quay_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quay_loc_conf_t  *qlcf = conf;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quay_main_conf_t  *qmcf;

    if (qlcf->registry != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quay_module);

    if (qmcf->config == NULL) {
        return "requires \"quay_config\" earlier in the http block";
    }

    qlcf->registry = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_quay_router_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_quay_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quay_loc_conf_t  *qlcf = conf;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quay_main_conf_t  *qmcf;

    if (qlcf->metrics != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quay_module);

    if (qmcf->config == NULL) {
        return "requires \"quay_config\" earlier in the http block";
    }

    qlcf->metrics = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_quay_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_quay_preconfiguration(ngx_conf_t *cf)
{
    /* $quay_s3_*: what the /_quay_s3/ locations proxy_pass with */

    if (ngx_http_quay_storage_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_quay_storage_s3_add_variables(cf);
}


static ngx_int_t
ngx_http_quay_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quay_module);

    if (qmcf->config == NULL) {
        return NGX_OK;
    }

    return ngx_http_quay_metrics_postconfiguration(cf);
}


/*
 * Releases an nginx connection that wraps a socket owned by a client
 * library (libpq, hiredis): timers, posted events and registrations go,
 * the socket does not, because the library closes it itself
 * (platform-notes, item 4).
 */

void
ngx_http_quay_connection_forget(ngx_connection_t *c)
{
    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);
}


static ngx_int_t
ngx_http_quay_init_process(ngx_cycle_t *cycle)
{
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quay_module);

    if (qmcf == NULL || qmcf->config == NULL) {
        return NGX_OK;
    }

    if (ngx_http_quay_db_pool_init(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_redis_init(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_auth_init_process(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_cache_init_process(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_audit_init_process(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_quay_spool_sweep_init_process(qmcf, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quay_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quay_module);

    if (qmcf == NULL || qmcf->config == NULL) {
        return;
    }

    ngx_http_quay_audit_exit_process(qmcf);
    ngx_http_quay_cache_exit_process(qmcf);
    ngx_http_quay_auth_exit_process(qmcf);
    ngx_http_quay_redis_done(qmcf);
    ngx_http_quay_db_pool_done(qmcf);
}
