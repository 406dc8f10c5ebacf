/*
 * config.yaml, loaded with libyaml into a typed struct through one static
 * table of keys (Quay's names, types, defaults and bounds), like Redis's
 * static_configs[].  A new key is one table row plus one struct field.
 *
 * The loader reports every problem through a callback with the key and the
 * line, so "quayctl config validate" can print all of them and nginx -t can
 * name the first.  Unknown keys are warnings, never silently ignored.
 */

#ifndef QUAY_CONFIG_H
#define QUAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quay_err.h"


typedef enum {
    QUAY_STORAGE_LOCAL = 0,          /* LocalStorage */
    QUAY_STORAGE_S3,                 /* S3Storage */
    QUAY_STORAGE_RADOSGW             /* RadosGWStorage */
} quay_storage_driver_e;


/* One entry of DISTRIBUTED_STORAGE_CONFIG: name -> [Driver, {params}]. */
typedef struct {
    char                   *name;
    quay_storage_driver_e   driver;
    char                   *storage_path;     /* all drivers */

    /* S3Storage / RadosGWStorage; NULL or 0 when absent */
    char                   *bucket;           /* s3_bucket / bucket_name */
    char                   *access_key;       /* s3_access_key / access_key */
    char                   *secret_key;       /* s3_secret_key / secret_key */
    char                   *region;           /* s3_region */
    char                   *host;             /* host / hostname */
    int                     port;
    char                   *endpoint_url;
    bool                    is_secure;

    /* added: S3 multipart sizing and RadosGW options */
    char                   *session_token;    /* aws_session_token */
    int64_t                 minimum_chunk_size; /* bytes; default 5 MiB */
    int64_t                 maximum_chunk_size; /* bytes; S3 5 GiB (from
                                                 * maximum_chunk_size_gb),
                                                 * RadosGW 100 MiB */
    bool                    server_side_assembly; /* default true */
} quay_storage_location_t;


/* BUILDLOGS_REDIS / USER_EVENTS_REDIS: {host, port, password, ssl}. */
typedef struct {
    char   *host;                    /* default "localhost" */
    int     port;                    /* default 6379 */
    char   *password;                /* NULL when absent */

    /* added */
    char   *username;                /* Redis 6 ACL user; NULL when absent */
    int     db;                      /* default 0 */
    bool    ssl;                     /* default false */
} quay_redis_config_t;


typedef struct {
    char                    **items;
    size_t                    n;
} quay_strlist_t;


typedef struct {
    /* server */
    char                     *server_hostname;          /* SERVER_HOSTNAME */
    char                     *preferred_url_scheme;     /* http | https */
    bool                      external_tls_termination;
    char                     *registry_title;
    char                     *registry_state;           /* normal|readonly */

    /* secrets */
    char                     *secret_key;
    char                     *database_secret_key;

    /* database and redis */
    char                     *db_uri;                   /* DB_URI */
    quay_redis_config_t       buildlogs_redis;
    quay_redis_config_t       user_events_redis;

    /* storage */
    quay_storage_location_t  *storage;                  /* array */
    size_t                    nstorage;
    quay_strlist_t            storage_preference;
    quay_strlist_t            storage_default_locations;

    /* users */
    char                     *authentication_type;      /* Database */
    quay_strlist_t            super_users;
    quay_strlist_t            global_readonly_super_users;

    /* features */
    bool                      feature_anonymous_access;
    bool                      feature_superusers_full_access;
    bool                      feature_user_creation;
    bool                      feature_proxy_storage;
    bool                      feature_storage_replication;
    bool                      feature_repo_mirror;
    bool                      feature_quota_management;
    bool                      feature_auto_prune;
    bool                      feature_garbage_collection;
    bool                      feature_referrers_api;
    bool                      feature_general_oci_support;
    bool                      feature_app_specific_tokens;
    bool                      create_private_repo_on_push;
    bool                      create_namespace_on_push;
    bool                      disable_pushes;

    /* tags, uploads, paging */
    char                     *default_tag_expiration;   /* "2w" */
    int64_t                   default_tag_expiration_s; /* derived */
    quay_strlist_t            tag_expiration_options;
    int64_t                   push_temp_tag_expiration_sec;
    int64_t                   blobupload_deletion_date_threshold; /* min */
    int64_t                   maximum_layer_size;       /* bytes, "20G" */
    int64_t                   v2_pagination_size;
    int64_t                   registry_jwt_auth_max_fresh_s;
    int64_t                   garbage_collection_frequency;
    int64_t                   repo_mirror_interval;

    /* added */
    char                     *page_token_key;           /* PAGE_TOKEN_KEY */
    char                     *library_namespace;        /* "library" */
    bool                      feature_library_support;  /* true */
    bool                      feature_public_catalog;   /* false */
    bool                      feature_extended_repository_names; /* true */
    bool                      feature_super_users;      /* true */
    bool                      feature_change_tag_expiration; /* true */
    bool                      repo_mirror_tls_verify;   /* true */
    char                     *repo_mirror_server_hostname; /* NULL */
} quay_config_t;


/*
 * Every char * above is owned by the config (freed by quay_config_free) and
 * is NULL when the key is absent and has no default.  Lists are empty
 * (n == 0, items may be NULL) when absent.  storage_path is never NULL for
 * a loaded config ("" for an S3/RadosGW bucket root).
 */


/*
 * Reports one problem.  is_error is false for warnings (unknown keys).
 * key may be NULL for a problem with the file as a whole; line is 1-based,
 * 0 when unknown.  msg is a complete sentence fragment without the key,
 * e.g. "must be a boolean".
 */
typedef void (*quay_config_report_pt)(void *ctx, bool is_error,
    const char *key, unsigned line, const char *msg);


/*
 * Loads and validates path.  Returns a config owned by the caller (free
 * with quay_config_free) or NULL when any error was reported; err then
 * holds the first error as "KEY (line N): msg" (" (line N)" is left out
 * when the line is unknown, "KEY " when the problem has no key).  report
 * may be NULL.  Reads QUAY_DISTRIBUTED_STORAGE_PREFERENCE from the
 * environment.  Not thread-safe (strerror, getenv): configuration time only.
 */
quay_config_t *quay_config_load(const char *path,
    quay_config_report_pt report, void *report_ctx, quay_err_t *err);

/* Same, from a buffer (used by the unit tests). */
quay_config_t *quay_config_load_string(const char *text, size_t len,
    quay_config_report_pt report, void *report_ctx, quay_err_t *err);

void quay_config_free(quay_config_t *cfg);

/* The location named by name, or NULL. */
/* Whether name[0..len-1] is one of list's entries (SUPER_USERS, ...). */
bool quay_strlist_contains(const quay_strlist_t *list, const char *name,
    size_t len);

const quay_storage_location_t *quay_config_location(const quay_config_t *cfg,
    const char *name);

/* The preferred location for new uploads: the first entry of
 * DISTRIBUTED_STORAGE_PREFERENCE, or the QUAY_DISTRIBUTED_STORAGE_PREFERENCE
 * environment override applied at load time. */
const quay_storage_location_t *quay_config_preferred_location(
    const quay_config_t *cfg);

#endif /* QUAY_CONFIG_H */
