/*
 * The shared-memory cache of the hot path: verified tokens, repository
 * lookups and tag -> manifest lookups, with generation-based invalidation
 * across workers and Redis pub/sub across nodes.  See the design comment at
 * the top of ngx_http_quay_cache.c.
 */

#ifndef NGX_HTTP_QUAY_CACHE_H
#define NGX_HTTP_QUAY_CACHE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


typedef enum {
    NGX_HTTP_QUAY_CACHE_TOKEN = 0,       /* SHA-256 of a Bearer token */
    NGX_HTTP_QUAY_CACHE_REPOSITORY,      /* "namespace/name" */
    NGX_HTTP_QUAY_CACHE_TAG,             /* "<repository id>:<tag>" */
    NGX_HTTP_QUAY_CACHE_KINDS
} ngx_http_quay_cache_kind_e;


/*
 * The generations an entry depends on, read BEFORE the database read whose
 * result is stored: an entry filled from a read that raced with a change
 * carries the old generation and is never served.
 */
typedef struct {
    ngx_atomic_uint_t           global;
    ngx_atomic_uint_t           repository;
    ngx_uint_t                  slot;        /* repository slot, or
                                                NGX_HTTP_QUAY_CACHE_NO_SLOT */
} ngx_http_quay_cache_gen_t;

#define NGX_HTTP_QUAY_CACHE_NO_SLOT  ((ngx_uint_t) -1)


/* "quay_cache zone=NAME:SIZE [ttl=TIME]" | "quay_cache off" */
char *ngx_http_quay_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* init_main_conf: the default zone when the directive is absent. */
ngx_int_t ngx_http_quay_cache_conf(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf);

/* Worker start and exit: the Redis subscription (quay:invalidate). */
ngx_int_t ngx_http_quay_cache_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle);
void ngx_http_quay_cache_exit_process(ngx_http_quay_main_conf_t *qmcf);

/*
 * The generation snapshot for the repository ns/repo (repo may be NULL
 * when ns holds the whole "namespace/name"), or for no repository (ns
 * NULL: tokens).  Never fails; without a zone the snapshot is unused.
 */
void ngx_http_quay_cache_snapshot(ngx_str_t *ns, ngx_str_t *repo,
    ngx_http_quay_cache_gen_t *gen);

/*
 * Looks key up.  NGX_OK: a live entry whose generations are still current
 * (the slot of gen is the one the entry was stored under), its value
 * copied into pool as *value.  NGX_DECLINED: a miss (no zone, absent,
 * expired, invalidated).  NGX_ERROR: out of memory in pool.  Counts a hit
 * or a miss in /metrics.
 */
ngx_int_t ngx_http_quay_cache_get(ngx_http_quay_cache_kind_e kind,
    u_char *key, size_t key_len, ngx_pool_t *pool, ngx_str_t *value);

/*
 * Stores a copy of value under key, unless a generation in gen has moved
 * since the snapshot.  The entry lives at most ttl milliseconds, and at
 * most the zone's ttl for every kind but tokens (ttl 0: the zone's ttl).
 * Never fails: a full zone drops the oldest entries, and an entry that
 * still does not fit is not stored (logged once per worker).
 */
void ngx_http_quay_cache_put(ngx_http_quay_cache_kind_e kind,
    u_char *key, size_t key_len, ngx_http_quay_cache_gen_t *gen,
    u_char *value, size_t len, ngx_msec_t ttl);

/*
 * A change to repository ns/repo (repo may be NULL when ns holds the
 * whole "namespace/name"; ns NULL: to anything) was committed: every
 * worker of this node stops serving what it cached about it at once, and
 * the other nodes are told through Redis.  Call after the commit and
 * before the answer goes out.
 */
void ngx_http_quay_cache_invalidate(ngx_http_quay_main_conf_t *qmcf,
    ngx_str_t *ns, ngx_str_t *repo);

#endif /* NGX_HTTP_QUAY_CACHE_H */
