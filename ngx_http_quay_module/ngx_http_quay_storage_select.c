/*
 * Which storage location a read goes to, and which locations are failing
 * (geo-replication, quay-behaviour 5.3, plus a fallback Quay lacks).
 *
 * DESIGN.  Every nginx worker keeps, per configured location, a small
 * circuit breaker in its own memory (no shared zone: each worker learns
 * on its own, within one probe interval or max_fails errors):
 *
 *   up ----- max_fails failures within fail_timeout ----> down
 *   up ----- a failed probe (HEAD of the bucket) -------> down
 *   down --- fail_timeout passes ------------------------> up again
 *            (the next read probes it first, so a location
 *             still failing goes straight back to down)
 *
 * What counts as a failure: a proxied pull (FEATURE_PROXY_STORAGE) that
 * S3 answered with an error other than 404 or could not be reached; a
 * LocalStorage read that failed with something else than "no such file";
 * a failed probe.  A 404 only skips the location for that request (its
 * bytes are missing, the location is not).  These are nginx's own
 * upstream rules (max_fails, fail_timeout), with the directives
 * quay_storage_max_fails (3), quay_storage_fail_timeout (30s) and
 * quay_storage_probe_interval (10s).
 *
 * Redirect mode: a 307 to a presigned URL never tells nginx whether the
 * storage answered, so the pull itself cannot be judged.  Instead an
 * object-store location is probed (a signed HEAD of its bucket, a
 * subrequest: nothing blocks) when a read is about to use it and it was
 * not probed in the last probe interval; that one request waits for the
 * probe, the others use the state as it is.  A location that is down is
 * passed over for the next one that holds the blob; when every holder is
 * down, the first is used anyway (a guess beats a certain failure).
 *
 * Proxy mode: /_quay_s3_proxy/ sends S3's errors to the named location
 * @quay_storage_fallback (quay_storage_fallback), which counts the failure,
 * adds the location to the request's skip list ($quay_storage_skip, a
 * variable, so that it survives internal redirects, which clear module
 * contexts) and redirects the request to its original /v2/ path: the
 * blob handler runs again and reads from the next holding location.  The
 * skip list ends the loop: with every holder skipped the answer is 502
 * UNAVAILABLE.
 *
 * The replication parameter of the manifest PUT lives here too: it is the
 * list of locations every blob must reach.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"
#include "ngx_http_quay_storage.h"


typedef struct {
    ngx_uint_t                      fails;       /* in this window */
    time_t                          first_fail;  /* window start */
    time_t                          down_until;  /* 0: up */
    time_t                          probed;      /* last probe start */
} ngx_http_quay_storage_state_t;


static ngx_http_quay_storage_state_t *ngx_http_quay_storage_state(
    ngx_http_request_t *r, const quay_storage_location_t *loc,
    ngx_http_quay_main_conf_t **qmcfp);
static ngx_int_t ngx_http_quay_storage_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_quay_storage_fallback_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_quay_storage_upstream_status(
    ngx_http_request_t *r);


static ngx_str_t  ngx_http_quay_storage_skip_name =
    ngx_string("quay_storage_skip");
static ngx_str_t  ngx_http_quay_storage_location_name =
    ngx_string("quay_storage_location");
static ngx_str_t  ngx_http_quay_storage_upstream_status_name =
    ngx_string("upstream_status");

/* indexes in r->variables, set at configuration time */
static ngx_int_t  ngx_http_quay_storage_skip_index = NGX_ERROR;
static ngx_int_t  ngx_http_quay_storage_location_index = NGX_ERROR;

/* this worker's breakers, one per location of states_config */
static ngx_http_quay_storage_state_t  *ngx_http_quay_storage_states;
static const quay_config_t            *ngx_http_quay_storage_states_config;


/* ----------------------------------------------------------- breaker */


static ngx_http_quay_storage_state_t *
ngx_http_quay_storage_state(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_http_quay_main_conf_t **qmcfp)
{
    size_t                      i;
    const quay_config_t        *config;
    ngx_http_quay_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);
    config = qmcf->config;
    *qmcfp = qmcf;

    if (config == NULL || loc < config->storage
        || loc >= config->storage + config->nstorage)
    {
        return NULL;
    }

    i = loc - config->storage;

    if (ngx_http_quay_storage_states_config != config) {

        /* the first use in this worker process (a reload starts new
         * workers, which start here again) */

        ngx_http_quay_storage_states = ngx_pcalloc(ngx_cycle->pool,
                                  config->nstorage
                                  * sizeof(ngx_http_quay_storage_state_t));
        if (ngx_http_quay_storage_states == NULL) {
            ngx_http_quay_storage_states_config = NULL;
            return NULL;
        }

        ngx_http_quay_storage_states_config = config;
    }

    return &ngx_http_quay_storage_states[i];
}


ngx_uint_t
ngx_http_quay_storage_down(ngx_http_request_t *r,
    const quay_storage_location_t *loc)
{
    ngx_http_quay_main_conf_t      *qmcf;
    ngx_http_quay_storage_state_t  *st;

    st = ngx_http_quay_storage_state(r, loc, &qmcf);

    return st != NULL && st->down_until > ngx_time();
}


ngx_uint_t
ngx_http_quay_storage_probe_due(ngx_http_request_t *r,
    const quay_storage_location_t *loc)
{
    time_t                          now;
    ngx_http_quay_main_conf_t      *qmcf;
    ngx_http_quay_storage_state_t  *st;

    if (loc->driver != QUAY_STORAGE_S3 && loc->driver != QUAY_STORAGE_RADOSGW)
    {
        return 0;
    }

    st = ngx_http_quay_storage_state(r, loc, &qmcf);
    if (st == NULL) {
        return 0;
    }

    now = ngx_time();

    if (st->probed != 0 && now - st->probed < qmcf->storage_probe_interval)
    {
        return 0;
    }

    /* one probe per interval: other requests meanwhile use the state */

    st->probed = now;

    return 1;
}


void
ngx_http_quay_storage_failed(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const char *why)
{
    time_t                          now;
    ngx_http_quay_main_conf_t      *qmcf;
    ngx_http_quay_storage_state_t  *st;

    st = ngx_http_quay_storage_state(r, loc, &qmcf);
    if (st == NULL) {
        return;
    }

    now = ngx_time();

    if (st->fails == 0 || now - st->first_fail >= qmcf->storage_fail_timeout)
    {
        st->fails = 0;
        st->first_fail = now;
    }

    st->fails++;

    if (st->fails < qmcf->storage_max_fails) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "quay: storage location \"%s\": %s (failure %ui of "
                      "%ui)", loc->name, why, st->fails,
                      qmcf->storage_max_fails);
        return;
    }

    st->fails = 0;
    st->down_until = now + qmcf->storage_fail_timeout;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "quay: storage location \"%s\" is failing (%s): reads go "
                  "to other locations for %T s", loc->name, why,
                  qmcf->storage_fail_timeout);
}


void
ngx_http_quay_storage_probed(ngx_http_request_t *r,
    const quay_storage_location_t *loc, ngx_uint_t ok)
{
    time_t                          now;
    ngx_http_quay_main_conf_t      *qmcf;
    ngx_http_quay_storage_state_t  *st;

    st = ngx_http_quay_storage_state(r, loc, &qmcf);
    if (st == NULL) {
        return;
    }

    now = ngx_time();

    if (ok) {
        if (st->down_until != 0) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "quay: storage location \"%s\" answers again",
                          loc->name);
        }

        st->fails = 0;
        st->down_until = 0;
        return;
    }

    st->fails = 0;
    st->down_until = now + qmcf->storage_fail_timeout;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "quay: storage location \"%s\" is failing (probe "
                  "failed): reads go to other locations for %T s",
                  loc->name, qmcf->storage_fail_timeout);
}


/* --------------------------------------------------------- variables */


ngx_int_t
ngx_http_quay_storage_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_quay_storage_skip_name,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_quay_storage_variable;

    ngx_http_quay_storage_skip_index =
        ngx_http_get_variable_index(cf, &ngx_http_quay_storage_skip_name);
    if (ngx_http_quay_storage_skip_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    var = ngx_http_add_variable(cf, &ngx_http_quay_storage_location_name,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_quay_storage_variable;

    ngx_http_quay_storage_location_index =
        ngx_http_get_variable_index(cf,
                                    &ngx_http_quay_storage_location_name);
    if (ngx_http_quay_storage_location_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* values are set by this file before anyone reads them */

static ngx_int_t
ngx_http_quay_storage_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}


/* The value of our variable index, or an empty string. */

static ngx_str_t
ngx_http_quay_storage_var_get(ngx_http_request_t *r, ngx_int_t index)
{
    ngx_str_t                   s;
    ngx_http_variable_value_t  *v;

    ngx_str_null(&s);

    if (index == NGX_ERROR || r->variables == NULL) {
        return s;
    }

    v = &r->variables[index];

    if (v->valid && !v->not_found) {
        s.data = v->data;
        s.len = v->len;
    }

    return s;
}


static void
ngx_http_quay_storage_var_set(ngx_http_request_t *r, ngx_int_t index,
    u_char *data, size_t len)
{
    ngx_http_variable_value_t  *v;

    v = &r->variables[index];

    v->data = data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->escape = 0;
}


/* The skip list is ",<index>,<index>,...," of r's config's locations. */

ngx_uint_t
ngx_http_quay_storage_skipped(ngx_http_request_t *r,
    const quay_storage_location_t *loc)
{
    u_char                      buf[NGX_INT_T_LEN + 2], *last;
    ngx_str_t                   skip;
    ngx_http_quay_main_conf_t  *qmcf;

    skip = ngx_http_quay_storage_var_get(r, ngx_http_quay_storage_skip_index);
    if (skip.len == 0) {
        return 0;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    last = ngx_sprintf(buf, ",%ui,",
                       (ngx_uint_t) (loc - qmcf->config->storage));

    return ngx_strlcasestrn(skip.data, skip.data + skip.len, buf,
                            last - buf - 1)
           != NULL;
}


ngx_int_t
ngx_http_quay_storage_proxying(ngx_http_request_t *r,
    const quay_storage_location_t *loc)
{
    u_char                     *p;
    ngx_http_quay_main_conf_t  *qmcf;

    if (ngx_http_quay_storage_location_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_storage_var_set(r, ngx_http_quay_storage_location_index,
                                  p, ngx_sprintf(p, "%ui", (ngx_uint_t)
                                                 (loc - qmcf->config->storage))
                                     - p);

    return NGX_OK;
}


/* ---------------------------------------------------------- fallback */


char *
ngx_http_quay_storage_fallback(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_quay_storage_fallback_handler;

    return NGX_CONF_OK;
}


/*
 * @quay_storage_fallback: S3 answered a proxied pull with an error (or
 * could not be reached).  Judge the location, skip it for this request
 * and run the blob GET again from its original path.
 */

static ngx_int_t
ngx_http_quay_storage_fallback_handler(ngx_http_request_t *r)
{
    u_char                         *p, *q, *last, why[64];
    ngx_int_t                       index, status;
    ngx_str_t                       cur, skip, uri, args;
    ngx_http_quay_main_conf_t      *qmcf;
    const quay_storage_location_t  *loc;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    cur = ngx_http_quay_storage_var_get(r,
                                        ngx_http_quay_storage_location_index);

    index = cur.len ? ngx_atoi(cur.data, cur.len) : NGX_ERROR;

    if (qmcf->config == NULL || index == NGX_ERROR
        || (size_t) index >= qmcf->config->nstorage
        || r->unparsed_uri.len == 0)
    {
        return ngx_http_quay_storage_send_unavailable(r);
    }

    loc = &qmcf->config->storage[index];
    status = ngx_http_quay_storage_upstream_status(r);

    if (status == NGX_HTTP_NOT_FOUND) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "quay: blob is placed in \"%s\" but its bytes are "
                      "missing there; trying another location", loc->name);

    } else {
        last = ngx_snprintf(why, sizeof(why) - 1, "proxied read answered "
                            "%i", status);
        *last = '\0';

        ngx_http_quay_storage_failed(r, loc, (char *) why);
    }

    /* add it to the skip list; the next location is the blob handler's
     * choice */

    skip = ngx_http_quay_storage_var_get(r, ngx_http_quay_storage_skip_index);

    p = ngx_pnalloc(r->pool, skip.len + NGX_INT_T_LEN + 2);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = skip.len ? ngx_cpymem(p, skip.data, skip.len)
                    : ngx_cpymem(p, ",", 1);
    last = ngx_sprintf(last, "%i,", index);

    ngx_http_quay_storage_var_set(r, ngx_http_quay_storage_skip_index, p,
                                  last - p);
    ngx_http_quay_storage_var_set(r, ngx_http_quay_storage_location_index,
                                  (u_char *) "", 0);

    /* the original path: /v2/ paths are never percent-encoded (a '%' is
     * refused with 400), so the raw path is the decoded one */

    uri.data = r->unparsed_uri.data;
    q = ngx_strlchr(r->unparsed_uri.data,
                    r->unparsed_uri.data + r->unparsed_uri.len, '?');

    if (q != NULL) {
        uri.len = q - uri.data;
        args.data = q + 1;
        args.len = r->unparsed_uri.data + r->unparsed_uri.len - args.data;

    } else {
        uri.len = r->unparsed_uri.len;
        ngx_str_null(&args);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "quay: proxied read from storage location \"%s\" failed "
                  "(%i); reading \"%V\" from another location", loc->name,
                  status, &uri);

    /* the redirect takes a reference of its own; our NGX_DONE drops the
     * content phase's */

    (void) ngx_http_internal_redirect(r, &uri, &args);

    return NGX_DONE;
}


/* The last status in $upstream_status ("502", "403, 502 : 404"), or 502. */

static ngx_int_t
ngx_http_quay_storage_upstream_status(ngx_http_request_t *r)
{
    u_char                     *p, *end;
    ngx_int_t                   status;
    ngx_http_variable_value_t  *v;

    v = ngx_http_get_variable(r, &ngx_http_quay_storage_upstream_status_name,
                 ngx_hash_key(ngx_http_quay_storage_upstream_status_name.data,
                              ngx_http_quay_storage_upstream_status_name.len));

    if (v == NULL || v->not_found || v->len == 0) {
        return NGX_HTTP_BAD_GATEWAY;
    }

    end = v->data + v->len;

    while (end > v->data && (end[-1] < '0' || end[-1] > '9')) {
        end--;
    }

    p = end;

    while (p > v->data && p[-1] >= '0' && p[-1] <= '9') {
        p--;
    }

    status = (end > p) ? ngx_atoi(p, end - p) : NGX_ERROR;

    return status == NGX_ERROR ? NGX_HTTP_BAD_GATEWAY : status;
}


ngx_int_t
ngx_http_quay_storage_send_unavailable(ngx_http_request_t *r)
{
    static u_char  body[] =
        "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"storage "
        "unavailable\",\"detail\":\"the storage location failed; see the "
        "error log\"}]}";

    return ngx_http_quay_send_json(r, NGX_HTTP_BAD_GATEWAY, body,
                                   sizeof(body) - 1);
}


/* ------------------------------------------------------- replication */


ngx_int_t
ngx_http_quay_storage_replication_param(ngx_pool_t *pool,
    const quay_config_t *config, ngx_str_t *value)
{
    u_char                *p, *s;
    size_t                 i, len;
    const quay_strlist_t  *list;

    if (config == NULL || !config->feature_storage_replication) {
        return NGX_DECLINED;
    }

    list = &config->storage_default_locations;

    /* {"a","b"}: every byte may need a backslash */

    len = sizeof("{}");

    for (i = 0; i < list->n; i++) {
        len += 2 * ngx_strlen(list->items[i]) + sizeof("\"\",");
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;
    *p++ = '{';

    for (i = 0; i < list->n; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '"';

        for (s = (u_char *) list->items[i]; *s; s++) {
            if (*s == '"' || *s == '\\') {
                *p++ = '\\';
            }

            *p++ = *s;
        }

        *p++ = '"';
    }

    *p++ = '}';
    value->len = p - value->data;

    return NGX_OK;
}
