/*
 * The shared-memory cache of the hot path (issue #6).
 *
 * DESIGN.  One slab zone ("quay_cache zone=NAME:SIZE ttl=T", default
 * quay_cache:32m, ttl 5s; "quay_cache off" disables it) holds entries of
 * three kinds, each a key and an opaque value the caller encodes:
 *
 *   token       SHA-256 of the Bearer token text -> subject, user id, exp
 *               and the access claim in compact form (ngx_http_quay_auth.c);
 *               lives until the token's exp, never longer: a token is
 *               immutable, only time ends it
 *   repository  "namespace/name" -> repository id, state, visibility
 *               (ngx_http_quay_v2.c); lives at most ttl
 *   tag         "<repository id>:<tag>" -> digest, media type, size, and
 *               the manifest bytes when at most 16 KiB
 *               (ngx_http_quay_v2_manifest.c); lives at most ttl, and never
 *               past the tag's own expiration (lifetime_end_ms)
 *
 * Entries sit in an rbtree keyed by a CRC32 of kind and key (ties broken
 * by the key bytes) and on an LRU queue; the zone's mutex guards both.  A
 * hit copies the value into the request's pool under the mutex, so nothing
 * points into the zone once the lock is released.  A full zone drops the
 * least recently used entries until the new one fits (limit_req's way).
 *
 * INVALIDATION.  Deleting entries by name would need an index from a
 * repository to its tags; instead every entry records the generations it
 * was filled under, and a lookup serves it only while they are current:
 *
 *   - a global generation, and one per repository slot: 4096 counters in
 *     the zone, indexed by CRC32("namespace/name") mod 4096.  Two
 *     repositories sharing a slot only cost each other extra misses;
 *   - the generations are read BEFORE the database read that fills an
 *     entry (ngx_http_quay_cache_snapshot), and a put is dropped when they
 *     moved meanwhile, so a read that raced with a change never caches the
 *     old answer;
 *   - a change bumps the generation AFTER its commit and BEFORE its answer
 *     goes out (ngx_http_quay_cache_invalidate): a client that saw its push
 *     or delete succeed can never read the old state back from any worker
 *     of this node.  The bumps are atomic adds in shared memory, seen by
 *     every worker at once.
 *
 * Who bumps:
 *
 *   - the /v2/ handlers: manifest PUT (new manifest, tags moved), DELETE by
 *     tag or digest (ngx_http_quay_v2_manifest.c);
 *   - the REST API: every non-GET route that ran its statement bumps the
 *     repository of its {repository} argument, or, for routes without one
 *     (organizations, teams, users, robots, superuser), the global
 *     generation (ngx_http_quay_api.c, ngx_http_quay_api_invalidate: one
 *     call, the only hook in that file).  Visibility, state, permission,
 *     tag and repository changes all go through it;
 *   - a reload (the zone is kept but the configuration may differ): global.
 *
 * Other nodes learn about a change through Redis (BUILDLOGS_REDIS): the
 * bumping worker publishes "<node> <namespace/name>" (or "<node> *") on
 * the channel quay:invalidate, and every worker of every node subscribes
 * to it (ngx_http_quay_redis_subscribe) and bumps its own zone; a node
 * skips its own messages by its random node id.  A subscription that was
 * lost and comes back bumps the global generation, since messages may
 * have been missed meanwhile.
 *
 * The ttl (5 s) is the backstop for what none of this sees: changes made
 * by the workers (quay-gc, mirroring, autoprune) or straight in SQL,
 * other nodes' changes while Redis is down, tags that expire by time
 * (also bounded exactly by lifetime_end_ms).  Tokens are not bounded by
 * the ttl: their content cannot change.
 *
 * Hits and misses per kind are counted in /metrics.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_quay_cache.h"
#include "ngx_http_quay_redis.h"
#include "ngx_http_quay_metrics.h"


#define NGX_HTTP_QUAY_CACHE_SLOTS     4096
#define NGX_HTTP_QUAY_CACHE_SIZE      (32 * 1024 * 1024)
#define NGX_HTTP_QUAY_CACHE_TTL       5000
#define NGX_HTTP_QUAY_CACHE_CHANNEL   "quay:invalidate"
#define NGX_HTTP_QUAY_CACHE_NODE_LEN  16

/* entries freed from the LRU tail before giving up on one put */
#define NGX_HTTP_QUAY_CACHE_EVICT     64


typedef struct {
    ngx_rbtree_node_t           node;        /* key: CRC32 of kind, key */
    ngx_queue_t                 queue;       /* LRU, most recent first */
    ngx_msec_t                  expires;     /* ngx_current_msec based */
    ngx_atomic_uint_t           global;
    ngx_atomic_uint_t           repository;
    ngx_uint_t                  slot;
    uint32_t                    value_len;
    uint16_t                    key_len;
    u_char                      kind;
    u_char                      data[1];     /* key, then value */
} ngx_http_quay_cache_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
    ngx_atomic_t                pad0[16];
    ngx_atomic_t                global;
    ngx_atomic_t                pad1[16];
    ngx_atomic_t                slots[NGX_HTTP_QUAY_CACHE_SLOTS];
} ngx_http_quay_cache_sh_t;


struct ngx_http_quay_cache_ctx_s {
    ngx_http_quay_cache_sh_t   *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *zone;
    ngx_msec_t                  ttl;
    u_char                      node[NGX_HTTP_QUAY_CACHE_NODE_LEN];
};


static ngx_int_t ngx_http_quay_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_quay_cache_node_id(ngx_conf_t *cf,
    ngx_http_quay_cache_ctx_t *ctx);
static void ngx_http_quay_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_quay_cache_cmp(ngx_uint_t kind, u_char *key,
    size_t key_len, ngx_http_quay_cache_node_t *cn);
static ngx_http_quay_cache_node_t *ngx_http_quay_cache_lookup_locked(
    ngx_http_quay_cache_sh_t *sh, ngx_uint_t kind, uint32_t hash,
    u_char *key, size_t key_len);
static ngx_uint_t ngx_http_quay_cache_live(ngx_http_quay_cache_sh_t *sh,
    ngx_http_quay_cache_node_t *cn);
static void ngx_http_quay_cache_free_locked(ngx_http_quay_cache_ctx_t *ctx,
    ngx_http_quay_cache_node_t *cn);
static ngx_uint_t ngx_http_quay_cache_evict_locked(
    ngx_http_quay_cache_ctx_t *ctx, ngx_uint_t force);
static uint32_t ngx_http_quay_cache_hash(ngx_uint_t kind, u_char *key,
    size_t key_len);
static ngx_uint_t ngx_http_quay_cache_slot(ngx_str_t *ns, ngx_str_t *repo);
static void ngx_http_quay_cache_bump(ngx_http_quay_cache_ctx_t *ctx,
    u_char *name, size_t len);
static void ngx_http_quay_cache_message(void *data, u_char *msg,
    size_t len);
static void ngx_http_quay_cache_published(void *data, redisReply *reply);


/* per process: the zone of the cycle, set in init_process */
static ngx_http_quay_cache_ctx_t  *ngx_http_quay_cache_ctx;
static ngx_uint_t                  ngx_http_quay_cache_full_logged;


char *
ngx_http_quay_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quay_main_conf_t  *qmcf = conf;

    u_char                     *p;
    ssize_t                     size;
    ngx_str_t                  *value, name, s;
    ngx_uint_t                  i;
    ngx_msec_t                  ttl;
    ngx_http_quay_cache_ctx_t  *ctx;

    if (qmcf->cache != NULL || qmcf->cache_off) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        qmcf->cache_off = 1;
        return NGX_CONF_OK;
    }

    name.len = 0;
    name.data = NULL;
    size = 0;
    ttl = NGX_HTTP_QUAY_CACHE_TTL;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl == (ngx_msec_t) NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid ttl \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_quay_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->ttl = ttl;

    if (ngx_http_quay_cache_node_id(cf, ctx) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ctx->zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_quay_module);
    if (ctx->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ctx->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    ctx->zone->init = ngx_http_quay_cache_init_zone;
    ctx->zone->data = ctx;

    qmcf->cache = ctx;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_quay_cache_conf(ngx_conf_t *cf, ngx_http_quay_main_conf_t *qmcf)
{
    ngx_str_t                   name;
    ngx_http_quay_cache_ctx_t  *ctx;

    if (qmcf->cache != NULL || qmcf->cache_off) {
        return NGX_OK;
    }

    /* no directive: the default zone, so that a plain configuration gets
     * the fast path too */

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_quay_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->ttl = NGX_HTTP_QUAY_CACHE_TTL;

    if (ngx_http_quay_cache_node_id(cf, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "quay_cache");

    ctx->zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_QUAY_CACHE_SIZE,
                                      &ngx_http_quay_module);
    if (ctx->zone == NULL) {
        return NGX_ERROR;
    }

    if (ctx->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"quay_cache\" is already used");
        return NGX_ERROR;
    }

    ctx->zone->init = ngx_http_quay_cache_init_zone;
    ctx->zone->data = ctx;

    qmcf->cache = ctx;

    return NGX_OK;
}


/* A random id per configuration, so that a node knows its own messages;
 * pids and start times collide between containers. */

static ngx_int_t
ngx_http_quay_cache_node_id(ngx_conf_t *cf, ngx_http_quay_cache_ctx_t *ctx)
{
    u_char  raw[NGX_HTTP_QUAY_CACHE_NODE_LEN / 2];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quay: cache: RAND_bytes() failed");
        return NGX_ERROR;
    }

    (void) ngx_hex_dump(ctx->node, raw, sizeof(raw));

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_quay_cache_ctx_t  *octx = data;

    size_t                      len;
    ngx_http_quay_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload keeps the entries, but the configuration they were
         * made under may have changed (SERVER_HOSTNAME, keys): stale */

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        (void) ngx_atomic_fetch_add(&ctx->sh->global, 1);

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_http_quay_cache_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_quay_cache_rbtree_insert);
    ngx_queue_init(&ctx->sh->queue);

    len = sizeof(" in quay cache zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in quay cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is normal for a cache: evict, do not log at CRIT */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_cache_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle)
{
    ngx_http_quay_cache_ctx = qmcf->cache;
    ngx_http_quay_cache_full_logged = 0;

    if (qmcf->cache == NULL || qmcf->redis == NULL) {
        return NGX_OK;
    }

    return ngx_http_quay_redis_subscribe(qmcf, cycle,
                                         NGX_HTTP_QUAY_CACHE_CHANNEL,
                                         ngx_http_quay_cache_message,
                                         qmcf->cache);
}


void
ngx_http_quay_cache_exit_process(ngx_http_quay_main_conf_t *qmcf)
{
    ngx_http_quay_cache_ctx = NULL;
}


void
ngx_http_quay_cache_snapshot(ngx_str_t *ns, ngx_str_t *repo,
    ngx_http_quay_cache_gen_t *gen)
{
    ngx_http_quay_cache_sh_t  *sh;

    if (ngx_http_quay_cache_ctx == NULL) {
        gen->global = 0;
        gen->repository = 0;
        gen->slot = NGX_HTTP_QUAY_CACHE_NO_SLOT;
        return;
    }

    sh = ngx_http_quay_cache_ctx->sh;

    gen->global = sh->global;

    if (ns == NULL) {
        gen->repository = 0;
        gen->slot = NGX_HTTP_QUAY_CACHE_NO_SLOT;
        return;
    }

    gen->slot = ngx_http_quay_cache_slot(ns, repo);
    gen->repository = sh->slots[gen->slot];
}


ngx_int_t
ngx_http_quay_cache_get(ngx_http_quay_cache_kind_e kind, u_char *key,
    size_t key_len, ngx_pool_t *pool, ngx_str_t *value)
{
    u_char                      *p;
    uint32_t                     hash;
    ngx_int_t                    rc;
    ngx_http_quay_cache_sh_t    *sh;
    ngx_http_quay_cache_ctx_t   *ctx;
    ngx_http_quay_cache_node_t  *cn;

    ctx = ngx_http_quay_cache_ctx;

    if (ctx == NULL || key_len > 0xffff) {
        return NGX_DECLINED;
    }

    sh = ctx->sh;
    hash = ngx_http_quay_cache_hash(kind, key, key_len);
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_quay_cache_lookup_locked(sh, kind, hash, key, key_len);

    if (cn != NULL) {

        if (!ngx_http_quay_cache_live(sh, cn)) {
            ngx_http_quay_cache_free_locked(ctx, cn);

        } else {
            p = ngx_pnalloc(pool, cn->value_len ? cn->value_len : 1);

            if (p == NULL) {
                rc = NGX_ERROR;

            } else {
                ngx_memcpy(p, cn->data + cn->key_len, cn->value_len);
                value->data = p;
                value->len = cn->value_len;

                ngx_queue_remove(&cn->queue);
                ngx_queue_insert_head(&sh->queue, &cn->queue);

                rc = NGX_OK;
            }
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc != NGX_ERROR) {
        ngx_http_quay_metrics_cache(kind, rc == NGX_OK);
    }

    return rc;
}


void
ngx_http_quay_cache_put(ngx_http_quay_cache_kind_e kind, u_char *key,
    size_t key_len, ngx_http_quay_cache_gen_t *gen, u_char *value,
    size_t len, ngx_msec_t ttl)
{
    size_t                       size;
    uint32_t                     hash;
    ngx_uint_t                   n;
    ngx_http_quay_cache_sh_t    *sh;
    ngx_http_quay_cache_ctx_t   *ctx;
    ngx_http_quay_cache_node_t  *cn;

    ctx = ngx_http_quay_cache_ctx;

    if (ctx == NULL || key_len > 0xffff || len > 0xffffffff) {
        return;
    }

    if (kind != NGX_HTTP_QUAY_CACHE_TOKEN && (ttl == 0 || ttl > ctx->ttl)) {
        ttl = ctx->ttl;
    }

    if (ttl == 0) {
        return;
    }

    sh = ctx->sh;
    hash = ngx_http_quay_cache_hash(kind, key, key_len);
    size = offsetof(ngx_http_quay_cache_node_t, data) + key_len + len;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* changed since the snapshot: what we read may be stale already */

    if (gen->global != sh->global
        || (gen->slot != NGX_HTTP_QUAY_CACHE_NO_SLOT
            && gen->repository != sh->slots[gen->slot]))
    {
        goto done;
    }

    cn = ngx_http_quay_cache_lookup_locked(sh, kind, hash, key, key_len);
    if (cn != NULL) {
        ngx_http_quay_cache_free_locked(ctx, cn);
    }

    /* expired entries at the LRU tail go first, a couple per put */

    (void) ngx_http_quay_cache_evict_locked(ctx, 0);
    (void) ngx_http_quay_cache_evict_locked(ctx, 0);

    cn = ngx_slab_alloc_locked(ctx->shpool, size);

    for (n = 0; cn == NULL && n < NGX_HTTP_QUAY_CACHE_EVICT; n++) {
        if (!ngx_http_quay_cache_evict_locked(ctx, 1)) {
            break;
        }

        cn = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    if (cn == NULL) {
        if (!ngx_http_quay_cache_full_logged) {
            ngx_http_quay_cache_full_logged = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "quay: cache zone \"%V\" is full: an entry of "
                          "%uz bytes was not stored; make the zone larger",
                          &ctx->zone->shm.name, size);
        }

        goto done;
    }

    cn->node.key = hash;
    cn->expires = ngx_current_msec + ttl;
    cn->global = gen->global;
    cn->repository = gen->repository;
    cn->slot = gen->slot;
    cn->value_len = (uint32_t) len;
    cn->key_len = (uint16_t) key_len;
    cn->kind = (u_char) kind;

    ngx_memcpy(cn->data, key, key_len);
    ngx_memcpy(cn->data + key_len, value, len);

    ngx_rbtree_insert(&sh->rbtree, &cn->node);
    ngx_queue_insert_head(&sh->queue, &cn->queue);

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_quay_cache_invalidate(ngx_http_quay_main_conf_t *qmcf,
    ngx_str_t *ns, ngx_str_t *repo)
{
    u_char                     *p, *msg;
    size_t                      len, argvlen[3];
    const char                 *argv[3];
    ngx_http_quay_cache_ctx_t  *ctx;

    ctx = ngx_http_quay_cache_ctx;

    if (ctx == NULL) {
        return;
    }

    if (ns == NULL) {
        (void) ngx_atomic_fetch_add(&ctx->sh->global, 1);

    } else {
        (void) ngx_atomic_fetch_add(
                   &ctx->sh->slots[ngx_http_quay_cache_slot(ns, repo)], 1);
    }

    if (qmcf->redis == NULL) {
        return;
    }

    /* "<node> <namespace/name>" or "<node> *"; freed by the reply */

    len = NGX_HTTP_QUAY_CACHE_NODE_LEN + 2
          + (ns ? ns->len : 0) + (repo ? repo->len + 1 : 0);

    msg = ngx_alloc(len, ngx_cycle->log);
    if (msg == NULL) {
        return;
    }

    p = ngx_cpymem(msg, ctx->node, NGX_HTTP_QUAY_CACHE_NODE_LEN);
    *p++ = ' ';

    if (ns == NULL) {
        *p++ = '*';

    } else {
        p = ngx_cpymem(p, ns->data, ns->len);

        if (repo != NULL) {
            *p++ = '/';
            p = ngx_cpymem(p, repo->data, repo->len);
        }
    }

    argv[0] = "PUBLISH";
    argvlen[0] = sizeof("PUBLISH") - 1;
    argv[1] = NGX_HTTP_QUAY_CACHE_CHANNEL;
    argvlen[1] = sizeof(NGX_HTTP_QUAY_CACHE_CHANNEL) - 1;
    argv[2] = (char *) msg;
    argvlen[2] = p - msg;

    /* hiredis copies the arguments: the message can go at once; Redis
     * down is the ttl's business, logged by the adapter */

    (void) ngx_http_quay_redis_command(qmcf, ngx_http_quay_cache_published,
                                       NULL, 3, argv, argvlen);
    ngx_free(msg);
}


static void
ngx_http_quay_cache_published(void *data, redisReply *reply)
{
    /* nothing to do: other nodes fall back on the ttl */
}


/* A message on quay:invalidate, or NULL after a lost subscription came
 * back (anything may have been missed meanwhile). */

static void
ngx_http_quay_cache_message(void *data, u_char *msg, size_t len)
{
    ngx_http_quay_cache_ctx_t  *ctx = data;

    if (ctx->sh == NULL) {
        return;
    }

    if (msg == NULL) {
        (void) ngx_atomic_fetch_add(&ctx->sh->global, 1);
        return;
    }

    if (len < NGX_HTTP_QUAY_CACHE_NODE_LEN + 2
        || msg[NGX_HTTP_QUAY_CACHE_NODE_LEN] != ' ')
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "quay: cache: malformed message on "
                      NGX_HTTP_QUAY_CACHE_CHANNEL);
        return;
    }

    if (ngx_memcmp(msg, ctx->node, NGX_HTTP_QUAY_CACHE_NODE_LEN) == 0) {
        /* our own: bumped when it was sent */
        return;
    }

    ngx_http_quay_cache_bump(ctx, msg + NGX_HTTP_QUAY_CACHE_NODE_LEN + 1,
                             len - NGX_HTTP_QUAY_CACHE_NODE_LEN - 1);
}


static void
ngx_http_quay_cache_bump(ngx_http_quay_cache_ctx_t *ctx, u_char *name,
    size_t len)
{
    ngx_str_t  full;

    if (len == 1 && name[0] == '*') {
        (void) ngx_atomic_fetch_add(&ctx->sh->global, 1);
        return;
    }

    full.data = name;
    full.len = len;

    (void) ngx_atomic_fetch_add(
               &ctx->sh->slots[ngx_http_quay_cache_slot(&full, NULL)], 1);
}


/* The slot of "ns/repo", or of ns alone when it is the whole name. */

static ngx_uint_t
ngx_http_quay_cache_slot(ngx_str_t *ns, ngx_str_t *repo)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, ns->data, ns->len);

    if (repo != NULL) {
        ngx_crc32_update(&crc, (u_char *) "/", 1);
        ngx_crc32_update(&crc, repo->data, repo->len);
    }

    ngx_crc32_final(crc);

    return crc % NGX_HTTP_QUAY_CACHE_SLOTS;
}


static uint32_t
ngx_http_quay_cache_hash(ngx_uint_t kind, u_char *key, size_t key_len)
{
    u_char    k;
    uint32_t  crc;

    k = (u_char) kind;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, &k, 1);
    ngx_crc32_update(&crc, key, key_len);
    ngx_crc32_final(crc);

    return crc;
}


/* Order among entries of one hash: kind, then the key bytes. */

static ngx_int_t
ngx_http_quay_cache_cmp(ngx_uint_t kind, u_char *key, size_t key_len,
    ngx_http_quay_cache_node_t *cn)
{
    if (kind != cn->kind) {
        return (kind < cn->kind) ? -1 : 1;
    }

    return ngx_memn2cmp(key, cn->data, key_len, cn->key_len);
}


static void
ngx_http_quay_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_quay_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_quay_cache_node_t *) node;
            cnt = (ngx_http_quay_cache_node_t *) temp;

            p = (ngx_http_quay_cache_cmp(cn->kind, cn->data, cn->key_len,
                                         cnt) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_quay_cache_node_t *
ngx_http_quay_cache_lookup_locked(ngx_http_quay_cache_sh_t *sh,
    ngx_uint_t kind, uint32_t hash, u_char *key, size_t key_len)
{
    ngx_int_t                    rc;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_quay_cache_node_t  *cn;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_quay_cache_node_t *) node;

        rc = ngx_http_quay_cache_cmp(kind, key, key_len, cn);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* Unexpired, and filled under the generations that are still current. */

static ngx_uint_t
ngx_http_quay_cache_live(ngx_http_quay_cache_sh_t *sh,
    ngx_http_quay_cache_node_t *cn)
{
    if ((ngx_msec_int_t) (cn->expires - ngx_current_msec) <= 0) {
        return 0;
    }

    if (cn->global != sh->global) {
        return 0;
    }

    if (cn->slot != NGX_HTTP_QUAY_CACHE_NO_SLOT
        && cn->repository != sh->slots[cn->slot])
    {
        return 0;
    }

    return 1;
}


static void
ngx_http_quay_cache_free_locked(ngx_http_quay_cache_ctx_t *ctx,
    ngx_http_quay_cache_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, &cn->node);
    ngx_slab_free_locked(ctx->shpool, cn);
}


/* Frees the LRU tail entry when it is dead, or whatever it is when force
 * is set.  Returns 1 if an entry was freed. */

static ngx_uint_t
ngx_http_quay_cache_evict_locked(ngx_http_quay_cache_ctx_t *ctx,
    ngx_uint_t force)
{
    ngx_queue_t                 *q;
    ngx_http_quay_cache_node_t  *cn;

    if (ngx_queue_empty(&ctx->sh->queue)) {
        return 0;
    }

    q = ngx_queue_last(&ctx->sh->queue);
    cn = ngx_queue_data(q, ngx_http_quay_cache_node_t, queue);

    if (!force && ngx_http_quay_cache_live(ctx->sh, cn)) {
        return 0;
    }

    ngx_http_quay_cache_free_locked(ctx, cn);

    return 1;
}
