/*
 * config.yaml loader.  libyaml's document API builds the node tree (with
 * the line of every node); one static table, quay_config_keys[], says for
 * each handled Quay key its type, default, bounds, struct offset and
 * whether it is required, the way Redis's static_configs[] does.  A key
 * Quay knows but we do not use yet is in quay_config_ignored_keys[] and is
 * accepted silently; anything else is a warning that names the key, its
 * line and the nearest known key ("did you mean ...?"), because a
 * misspelled FEATURE_ flag silently falling back to its default is the
 * classic config.yaml mistake.
 *
 * Loading runs in four steps: parse (a syntax error stops here), walk the
 * top-level mapping twice (first DISTRIBUTED_STORAGE_CONFIG, so that the
 * location lists can be checked against it wherever they appear in the
 * file, then everything else), apply QUAY_DISTRIBUTED_STORAGE_PREFERENCE
 * from the environment, then fill defaults and check required keys.  Every
 * problem goes through quay_config_report() with the key and the 1-based
 * line of the value; the first error is also kept in the caller's
 * quay_err_t, which is what nginx -t prints.  Scalar values are never
 * echoed in messages (DB_URI and the storage keys hold secrets); list
 * entries (user names, durations, location names) are.
 *
 * Everything in the returned config is malloc'd and released by
 * quay_config_free(), which walks the same table.  Nothing here aborts or
 * prints; an allocation failure makes the load fail with "out of memory".
 */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "quay_config.h"
#include "quay_err.h"
#include "quay_units.h"


#define QUAY_CONFIG_REQUIRED      0x01
#define QUAY_CONFIG_NONEMPTY      0x02    /* a list with at least one entry */

#define QUAY_CONFIG_MAX_FILE      (16 * 1024 * 1024)
#define QUAY_CONFIG_PREF_ENV      "QUAY_DISTRIBUTED_STORAGE_PREFERENCE"
#define QUAY_CONFIG_STORAGE_KEY   "DISTRIBUTED_STORAGE_CONFIG"

/* Longest known key or parameter name the suggestion matcher compares. */
#define QUAY_CONFIG_NAME_MAX      64

#define QUAY_CONFIG_FIELD(base, off, type)                                    \
    ((type *) (void *) ((char *) (base) + (off)))


typedef enum {
    QUAY_CONFIG_STRING = 0,       /* char * */
    QUAY_CONFIG_BOOL,             /* bool */
    QUAY_CONFIG_INT,              /* int64_t, bounded */
    QUAY_CONFIG_DURATION,         /* char * at offset, int64_t s at offset2 */
    QUAY_CONFIG_SIZE,             /* int64_t bytes, bounded */
    QUAY_CONFIG_LIST,             /* quay_strlist_t */
    QUAY_CONFIG_REDIS,            /* quay_redis_config_t */
    QUAY_CONFIG_STORAGE           /* cfg->storage, cfg->nstorage */
} quay_config_type_e;


typedef struct quay_config_ctx_s  quay_config_ctx_t;

/* Returns NULL when value is acceptable, else the message to report. */
typedef const char *(*quay_config_check_pt)(quay_config_ctx_t *ctx,
    const char *value);


typedef struct {
    const char              *name;
    quay_config_type_e       type;
    size_t                   offset;
    size_t                   offset2;
    const char              *def;         /* parsed like a YAML value */
    int64_t                  min;
    int64_t                  max;
    unsigned                 flags;
    quay_config_check_pt     check;       /* strings and list entries */
} quay_config_key_t;


/* A scalar to convert: from the document, or a table default (line 0). */
typedef struct {
    const char              *p;           /* NUL-terminated */
    size_t                   len;
    bool                     plain;       /* unquoted, so YAML typing */
    unsigned                 line;
} quay_config_scalar_t;


typedef enum {
    QUAY_PARAM_STRING = 0,        /* char * */
    QUAY_PARAM_PORT,              /* int, 1..65535 */
    QUAY_PARAM_BOOL,              /* bool */
    QUAY_PARAM_MIB,               /* int64_t bytes, given in MiB */
    QUAY_PARAM_GIB,               /* int64_t bytes, given in GiB */
    QUAY_PARAM_SIGNATURE,         /* checked, not stored: we sign s3v4 */
    QUAY_PARAM_IGNORED            /* accepted, not used */
} quay_storage_param_type_e;


typedef struct {
    const char                 *name;
    quay_storage_param_type_e   type;
    size_t                      offset;   /* in quay_storage_location_t */
    unsigned                    drivers;  /* mask of drivers taking it */
    unsigned                    required; /* mask of drivers needing it */
    int64_t                     min;
    int64_t                     max;
} quay_storage_param_t;


typedef struct {
    const char                 *name;
    quay_storage_driver_e       driver;
} quay_storage_driver_t;


static const char *quay_config_check_hostname(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_scheme(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_state(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_db_uri(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_auth(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_fernet(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_namespace(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_username(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_duration(quay_config_ctx_t *ctx,
    const char *value);
static const char *quay_config_check_location(quay_config_ctx_t *ctx,
    const char *value);


#define QC_OFF(field)  offsetof(quay_config_t, field)

#define QC_STRING(name, field, def, flags, check)                             \
    { name, QUAY_CONFIG_STRING, QC_OFF(field), 0, def, 0, 0, flags, check }
#define QC_BOOL(name, field, def)                                             \
    { name, QUAY_CONFIG_BOOL, QC_OFF(field), 0, def, 0, 0, 0, NULL }
#define QC_INT(name, field, def, min, max)                                    \
    { name, QUAY_CONFIG_INT, QC_OFF(field), 0, def, min, max, 0, NULL }
#define QC_DURATION(name, field, field_s, def, min, max)                      \
    { name, QUAY_CONFIG_DURATION, QC_OFF(field), QC_OFF(field_s), def,       \
      min, max, 0, NULL }
#define QC_SIZE(name, field, def, min, max)                                   \
    { name, QUAY_CONFIG_SIZE, QC_OFF(field), 0, def, min, max, 0, NULL }
#define QC_LIST(name, field, def, flags, check)                               \
    { name, QUAY_CONFIG_LIST, QC_OFF(field), 0, def, 0, 0, flags, check }
#define QC_REDIS(name, field)                                                 \
    { name, QUAY_CONFIG_REDIS, QC_OFF(field), 0, NULL, 0, 0, 0, NULL }


/*
 * The handled keys.  Defaults are Quay's (config.py, reference §11.2);
 * bounds are ours, wide enough for any sane deployment and narrow enough
 * to catch a unit mistake (minutes written as seconds and so on).
 */
static const quay_config_key_t  quay_config_keys[] = {

    /* server */
    QC_STRING("SERVER_HOSTNAME", server_hostname, NULL,
              QUAY_CONFIG_REQUIRED, quay_config_check_hostname),
    QC_STRING("PREFERRED_URL_SCHEME", preferred_url_scheme, "http", 0,
              quay_config_check_scheme),
    QC_BOOL("EXTERNAL_TLS_TERMINATION", external_tls_termination, "false"),
    QC_STRING("REGISTRY_TITLE", registry_title, "Project Quay", 0, NULL),
    QC_STRING("REGISTRY_STATE", registry_state, "normal", 0,
              quay_config_check_state),

    /* secrets */
    QC_STRING("SECRET_KEY", secret_key, NULL, 0, NULL),
    QC_STRING("DATABASE_SECRET_KEY", database_secret_key, NULL, 0, NULL),
    QC_STRING("PAGE_TOKEN_KEY", page_token_key,
              "0OYrc16oBuksR8T3JGB-xxYSlZ2-7I_zzqrLzggBJ58=", 0,
              quay_config_check_fernet),

    /* database and redis */
    QC_STRING("DB_URI", db_uri, NULL, QUAY_CONFIG_REQUIRED,
              quay_config_check_db_uri),
    QC_REDIS("BUILDLOGS_REDIS", buildlogs_redis),
    QC_REDIS("USER_EVENTS_REDIS", user_events_redis),

    /* storage; the lists are checked against the locations */
    { QUAY_CONFIG_STORAGE_KEY, QUAY_CONFIG_STORAGE, 0, 0, NULL, 0, 0,
      QUAY_CONFIG_REQUIRED, NULL },
    QC_LIST("DISTRIBUTED_STORAGE_PREFERENCE", storage_preference, NULL,
            QUAY_CONFIG_REQUIRED | QUAY_CONFIG_NONEMPTY,
            quay_config_check_location),
    QC_LIST("DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS",
            storage_default_locations, NULL, 0, quay_config_check_location),

    /* users */
    QC_STRING("AUTHENTICATION_TYPE", authentication_type, "Database", 0,
              quay_config_check_auth),
    QC_LIST("SUPER_USERS", super_users, NULL, 0, quay_config_check_username),
    QC_LIST("GLOBAL_READONLY_SUPER_USERS", global_readonly_super_users,
            NULL, 0, quay_config_check_username),

    /* features */
    QC_BOOL("FEATURE_ANONYMOUS_ACCESS", feature_anonymous_access, "true"),
    QC_BOOL("FEATURE_SUPERUSERS_FULL_ACCESS",
            feature_superusers_full_access, "false"),
    QC_BOOL("FEATURE_SUPER_USERS", feature_super_users, "true"),
    QC_BOOL("FEATURE_USER_CREATION", feature_user_creation, "true"),
    QC_BOOL("FEATURE_PROXY_STORAGE", feature_proxy_storage, "false"),
    QC_BOOL("FEATURE_STORAGE_REPLICATION", feature_storage_replication,
            "false"),
    QC_BOOL("FEATURE_REPO_MIRROR", feature_repo_mirror, "false"),
    QC_BOOL("FEATURE_QUOTA_MANAGEMENT", feature_quota_management, "false"),
    QC_BOOL("FEATURE_AUTO_PRUNE", feature_auto_prune, "false"),
    QC_BOOL("FEATURE_GARBAGE_COLLECTION", feature_garbage_collection,
            "true"),
    QC_BOOL("FEATURE_REFERRERS_API", feature_referrers_api, "true"),
    QC_BOOL("FEATURE_GENERAL_OCI_SUPPORT", feature_general_oci_support,
            "true"),
    QC_BOOL("FEATURE_APP_SPECIFIC_TOKENS", feature_app_specific_tokens,
            "true"),
    QC_BOOL("FEATURE_LIBRARY_SUPPORT", feature_library_support, "true"),
    QC_BOOL("FEATURE_PUBLIC_CATALOG", feature_public_catalog, "false"),
    QC_BOOL("FEATURE_EXTENDED_REPOSITORY_NAMES",
            feature_extended_repository_names, "true"),
    QC_BOOL("FEATURE_CHANGE_TAG_EXPIRATION", feature_change_tag_expiration,
            "true"),
    QC_BOOL("CREATE_PRIVATE_REPO_ON_PUSH", create_private_repo_on_push,
            "true"),
    QC_BOOL("CREATE_NAMESPACE_ON_PUSH", create_namespace_on_push, "false"),
    QC_BOOL("DISABLE_PUSHES", disable_pushes, "false"),
    QC_STRING("LIBRARY_NAMESPACE", library_namespace, "library", 0,
              quay_config_check_namespace),

    /* tags, uploads, paging */
    QC_DURATION("DEFAULT_TAG_EXPIRATION", default_tag_expiration,
                default_tag_expiration_s, "2w", 0, INT64_MAX),
    QC_LIST("TAG_EXPIRATION_OPTIONS", tag_expiration_options,
            "0s,1d,1w,2w,4w", 0, quay_config_check_duration),
    QC_INT("PUSH_TEMP_TAG_EXPIRATION_SEC", push_temp_tag_expiration_sec,
           "3600", 0, 31536000),
    QC_INT("BLOBUPLOAD_DELETION_DATE_THRESHOLD",
           blobupload_deletion_date_threshold, "2880", 1, 525600),
    QC_SIZE("MAXIMUM_LAYER_SIZE", maximum_layer_size, "20G", 1,
            (int64_t) 1 << 44),
    QC_INT("V2_PAGINATION_SIZE", v2_pagination_size, "50", 1, 10000),
    QC_INT("REGISTRY_JWT_AUTH_MAX_FRESH_S", registry_jwt_auth_max_fresh_s,
           "3660", 1, 31536000),
    QC_INT("GARBAGE_COLLECTION_FREQUENCY", garbage_collection_frequency,
           "30", 1, 86400),

    /* mirroring */
    QC_INT("REPO_MIRROR_INTERVAL", repo_mirror_interval, "30", 1, 86400),
    QC_BOOL("REPO_MIRROR_TLS_VERIFY", repo_mirror_tls_verify, "true"),
    QC_STRING("REPO_MIRROR_SERVER_HOSTNAME", repo_mirror_server_hostname,
              NULL, 0, quay_config_check_hostname),
};

#define QUAY_CONFIG_NKEYS                                                     \
    (sizeof(quay_config_keys) / sizeof(quay_config_keys[0]))


/*
 * Keys Quay knows (config.py, util/config/schema.py and the code that
 * reads app.config) that this registry does not use yet.  Accepted
 * silently so a Quay config.yaml validates as it is; sorted.  Keys ending
 * in _LOGIN_CONFIG (OIDC providers) are accepted as well.
 */
static const char  *quay_config_ignored_keys[] = {
    "ABOUT_URL", "ACCOUNT_RECOVERY_MODE", "ACTION_LOG_ARCHIVE_LOCATION",
    "ACTION_LOG_ARCHIVE_PATH", "ACTION_LOG_AUDIT_DELETE_FAILURES",
    "ACTION_LOG_AUDIT_LOGINS", "ACTION_LOG_AUDIT_LOGIN_FAILURES",
    "ACTION_LOG_AUDIT_PULL_FAILURES", "ACTION_LOG_AUDIT_PUSH_FAILURES",
    "ACTION_LOG_MAX_PAGE", "ACTION_LOG_ROTATION_FREQUENCY",
    "ACTION_LOG_ROTATION_THRESHOLD", "ALLOWED_OCI_ARTIFACT_TYPES",
    "ALLOW_PULLS_WITHOUT_STRICT_LOGGING", "ALLOW_WITHOUT_STRICT_LOGGING",
    "ANALYTICS_TYPE", "APPLICATION_ROOT",
    "APP_REGISTRY_PACKAGE_LIST_CACHE_WHITELIST", "APP_REGISTRY_RESULTS_LIMIT",
    "APP_REGISTRY_SHOW_PACKAGE_CACHE_WHITELIST",
    "APP_SPECIFIC_TOKEN_EXPIRATION", "AUTOPRUNE_DEFAULT_POLICY_TIMEOUT",
    "AUTOPRUNE_FETCH_REPOSITORIES_PAGE_LIMIT",
    "AUTOPRUNE_FETCH_TAGS_PAGE_LIMIT",
    "AUTOPRUNE_TASK_RUN_MINIMUM_INTERVAL_MINUTES", "AUTO_PRUNING_BATCH_SIZE",
    "AUTO_PRUNING_DEFAULT_POLICY_BATCH_SIZE", "AUTO_PRUNING_POLL_PERIOD",
    "AVATAR_COLORS", "AVATAR_KIND", "BILLED_NAMESPACE_MAXIMUM_BUILD_COUNT",
    "BILLING_TYPE", "BITBUCKET_TRIGGER_CONFIG", "BITTORRENT_FILENAME_PEPPER",
    "BLACKLISTED_EMAIL_DOMAINS", "BLACKLIST_V2_SPEC",
    "BLOBUPLOAD_CLEANUP_FREQUENCY", "BOOTSTRAP_TOKEN_EXPIRATION",
    "BOOTSTRAP_TOKEN_OWNER", "BOOTSTRAP_TOKEN_PATH", "BOOTSTRAP_TOKEN_SCOPE",
    "BRANDING", "BROWSER_API_CALLS_XHR_ONLY", "BUILDLOGS_MODULE_AND_CLASS",
    "BUILDLOGS_OPTIONS", "BUILDLOGS_REDIS_HOSTNAME",
    "BUILDMAN_CONTROLLER_PORT", "BUILDMAN_HOSTNAME", "BUILD_MANAGER",
    "CDN_SPECIFIC_NAMESPACES", "CHANNEL_COLORS", "CHUNK_CLEANUP_QUEUE_NAME",
    "CLEAN_BLOB_UPLOAD_FOLDER", "CONTACT_INFO", "CORS_ORIGIN",
    "DATA_MODEL_CACHE_CONFIG", "DB_CONNECTION_ARGS", "DB_CONNECTION_POOLING",
    "DB_READ_REPLICAS", "DEBUG", "DEFAULT_LABEL_KEY_RESERVED_PREFIXES",
    "DEFAULT_NAMESPACE_AUTOPRUNE_POLICY",
    "DEFAULT_NAMESPACE_MAXIMUM_BUILD_COUNT",
    "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES", "DEFAULT_UI",
    "DIRECT_OAUTH_CLIENTID_WHITELIST", "DISABLED_FOR_AUDIT_LOGS",
    "DISABLED_FOR_PULL_LOGS", "DISABLE_ANGULAR_UI",
    "DISTRIBUTED_STORAGE_REQUIRES_ALL_AVAILABLE",
    "DISTRIBUTED_STORAGE_VALIDATE_ENDTOEND", "DOCKERFILE_BUILD_QUEUE_NAME",
    "DOCUMENTATION_ROOT", "ENABLE_HEALTH_DEBUG_SECRET", "ENTERPRISE_LOGO_URL",
    "ENTITLEMENT_RECONCILIATION",
    "ENTITLEMENT_RECONCILIATION_MARKETPLACE_ENDPOINT",
    "ENTITLEMENT_RECONCILIATION_USER_ENDPOINT", "EXCEPTION_LOG_TYPE",
    "EXPIRED_APP_SPECIFIC_TOKEN_GC", "EXPIRED_SERVICE_KEY_TTL_SEC",
    "EXPLAIN_TEMPLATE_LOADING",
    "EXPORT_ACTION_LOGS_MAXIMUM_QUERY_TIME_SECONDS",
    "EXPORT_ACTION_LOGS_QUEUE_NAME", "EXPORT_ACTION_LOGS_SECONDS",
    "EXPORT_ACTION_LOGS_STORAGE_PATH", "EXPORT_ACTION_LOGS_WORKER_POLL_PERIOD",
    "EXPORT_COMPLIANCE_ENDPOINT", "EXTRA_CA_CERTS", "FEATURE_ACI_CONVERSION",
    "FEATURE_ACTION_LOG_ROTATION", "FEATURE_ADVERTISE_V2",
    "FEATURE_AGGREGATED_LOG_COUNT_RETRIEVAL", "FEATURE_APP_REGISTRY",
    "FEATURE_ASSIGN_OAUTH_TOKEN", "FEATURE_BILLING", "FEATURE_BITBUCKET_BUILD",
    "FEATURE_BLACKLISTED_EMAILS", "FEATURE_BUILD_SUPPORT",
    "FEATURE_CLEAR_EXPIRED_RAC_ENTRIES", "FEATURE_DIRECT_LOGIN",
    "FEATURE_DISABLE_PULL_LOGS_FOR_FREE_NAMESPACES", "FEATURE_EDIT_QUOTA",
    "FEATURE_ENABLE_STALE_MPU_CLEANUP", "FEATURE_ENTITLEMENT_RECONCILIATION",
    "FEATURE_EXPORT_COMPLIANCE", "FEATURE_EXTENDED_ACTION_LOGGING",
    "FEATURE_FIPS", "FEATURE_GITHUB_BUILD", "FEATURE_GITHUB_LOGIN",
    "FEATURE_GITLAB_BUILD", "FEATURE_GOOGLE_LOGIN", "FEATURE_HELM_OCI_SUPPORT",
    "FEATURE_IMAGE_EXPIRY_TRIGGER", "FEATURE_IMAGE_PULL_STATS",
    "FEATURE_IMMUTABLE_TAGS", "FEATURE_IMMUTABLE_TAGS_CAN_EXPIRE",
    "FEATURE_INVITE_ONLY_USER_CREATION", "FEATURE_LDAP_CACHING",
    "FEATURE_LISTEN_IP_VERSION", "FEATURE_LOG_EXPORT", "FEATURE_MAILING",
    "FEATURE_MANIFEST_SIZE_BACKFILL", "FEATURE_MANIFEST_SUBJECT_BACKFILL",
    "FEATURE_NAMESPACE_GARBAGE_COLLECTION",
    "FEATURE_NONSUPERUSER_TEAM_SYNCING_SETUP", "FEATURE_ORG_MIRROR",
    "FEATURE_ORG_SHARED_EMAIL", "FEATURE_OTEL_TRACING",
    "FEATURE_PARTIAL_USER_AUTOCOMPLETE", "FEATURE_PERMANENT_SESSIONS",
    "FEATURE_PROGRAMMATIC_BOOTSTRAP", "FEATURE_PROXY_CACHE",
    "FEATURE_PROXY_CACHE_BLOB_DOWNLOAD", "FEATURE_PROXY_PROTOCOL",
    "FEATURE_QUOTA_NOTIFICATIONS", "FEATURE_QUOTA_SUPPRESS_FAILURES",
    "FEATURE_RATE_LIMITS", "FEATURE_READER_BUILD_LOGS",
    "FEATURE_READONLY_APP_REGISTRY", "FEATURE_RECAPTCHA",
    "FEATURE_REPOSITORY_ACTION_COUNTER",
    "FEATURE_REPOSITORY_GARBAGE_COLLECTION",
    "FEATURE_REQUIRE_ENCRYPTED_BASIC_AUTH", "FEATURE_REQUIRE_TEAM_INVITE",
    "FEATURE_RESTRICTED_USERS", "FEATURE_RESTRICTED_V1_PUSH",
    "FEATURE_RH_MARKETPLACE", "FEATURE_SECURITY_NOTIFICATIONS",
    "FEATURE_SECURITY_SCANNER", "FEATURE_SECURITY_SCANNER_NOTIFY_ON_NEW_INDEX",
    "FEATURE_SECURITY_SCANNER_V2", "FEATURE_SIGNING", "FEATURE_SPAM_DETECTION",
    "FEATURE_SPARSE_INDEX", "FEATURE_SUPERUSERS_ORG_CREATION_ONLY",
    "FEATURE_SUPERUSER_CONFIGDUMP", "FEATURE_TEAM_SYNCING",
    "FEATURE_UI_DELAY_AFTER_WRITE", "FEATURE_UI_MODELCARD", "FEATURE_UI_V2",
    "FEATURE_UI_V2_REPO_SETTINGS", "FEATURE_USERNAME_CONFIRMATION",
    "FEATURE_USER_EVENTS", "FEATURE_USER_INITIALIZE",
    "FEATURE_USER_LAST_ACCESSED", "FEATURE_USER_LOG_ACCESS",
    "FEATURE_USER_METADATA", "FEATURE_USER_RENAME", "FEATURE_VERIFY_QUOTA",
    "FOOTER_LINKS", "FRESH_LOGIN_TIMEOUT", "GITHUB_LOGIN_CONFIG",
    "GITHUB_TRIGGER_CONFIG", "GITLAB_TRIGGER_CONFIG", "GITLAB_TRIGGER_KIND",
    "GLOBAL_PROMETHEUS_STATS_FREQUENCY", "GOOGLE_ANALYTICS_KEY",
    "GOOGLE_LOGIN_CONFIG", "GOOGLE_TAGMANAGER_KEY", "GREENLET_TRACING",
    "HEALTH_CHECKER", "HEALTH_CHECKER_INSTANCE_CHECK_PREFERRED_STORAGE",
    "HTTPS_PROXY", "HTTP_PROXY", "INSTANCE_SERVICE_KEY_EXPIRATION",
    "INSTANCE_SERVICE_KEY_KID_LOCATION", "INSTANCE_SERVICE_KEY_LOCATION",
    "INSTANCE_SERVICE_KEY_REFRESH", "INSTANCE_SERVICE_KEY_SERVICE",
    "INTERNAL_OIDC_SERVICE_ID", "IP_DATA_API_KEY",
    "JSONIFY_PRETTYPRINT_REGULAR", "JWT_AUTH_ISSUER", "JWT_GETUSER_ENDPOINT",
    "JWT_QUERY_ENDPOINT", "JWT_VERIFY_ENDPOINT", "KEYSTONE_ADMIN_PASSWORD",
    "KEYSTONE_ADMIN_TENANT", "KEYSTONE_ADMIN_USERNAME",
    "KEYSTONE_AUTH_TIMEOUT", "KEYSTONE_AUTH_URL", "KEYSTONE_AUTH_VERSION",
    "LABELED_EXPIRATION_MAXIMUM", "LABELED_EXPIRATION_MINIMUM",
    "LABEL_KEY_RESERVED_PREFIXES", "LAST_ACCESSED_UPDATE_THRESHOLD_S",
    "LDAP_ADMIN_DN", "LDAP_ADMIN_PASSWD", "LDAP_ALLOW_INSECURE_FALLBACK",
    "LDAP_BASE_DN", "LDAP_CACHE_TTL", "LDAP_CONNECTION_POOLING",
    "LDAP_EMAIL_ATTR", "LDAP_FOLLOW_REFERRALS",
    "LDAP_GLOBAL_READONLY_SUPERUSER_FILTER", "LDAP_MEMBEROF_ATTR",
    "LDAP_NETWORK_TIMEOUT", "LDAP_POOL_CONNECTION_LIFETIME",
    "LDAP_POOL_MAX_WAIT", "LDAP_POOL_SIZE", "LDAP_RESTRICTED_USER_FILTER",
    "LDAP_SECONDARY_USER_RDNS", "LDAP_SUPERUSER_FILTER", "LDAP_TIMEOUT",
    "LDAP_UID_ATTR", "LDAP_URI", "LDAP_USER_FILTER", "LDAP_USER_RDN",
    "LOCAL_OAUTH_HANDLER", "LOGGING_LEVEL", "LOGIN_BINDING_FIELD",
    "LOGS_MODEL", "LOGS_MODEL_CONFIG", "LOG_ARCHIVE_LOCATION",
    "LOG_ARCHIVE_PATH", "MAIL_DEFAULT_SENDER", "MAIL_FAIL_SILENTLY",
    "MAIL_PASSWORD", "MAIL_PORT", "MAIL_SERVER", "MAIL_USERNAME",
    "MAIL_USE_AUTH", "MAIL_USE_TLS", "MANIFESTS_ENDPOINT_READ_TIMEOUT",
    "MANIFEST_BACKFILL_WORKER_FREQUENCY",
    "MANIFEST_SUBJECT_BACKFILL_WORKER_FREQUENCY", "MARKETO_MUNCHKIN_ID",
    "MAXIMUM_CNR_LAYER_SIZE", "MAX_COOKIE_SIZE",
    "MINIMUM_LOGS_AGE_FOR_ARCHIVE", "MIXPANEL_KEY",
    "NAMESPACE_GC_GRACE_PERIOD_ALLOWLIST", "NAMESPACE_GC_GRACE_PERIOD_SECONDS",
    "NAMESPACE_GC_QUEUE_NAME", "NON_RATE_LIMITED_NAMESPACES",
    "NOTIFICATION_MIN_SEVERITY_ON_NEW_INDEX", "NOTIFICATION_QUEUE_NAME",
    "NOTIFICATION_SEND_TIMEOUT",
    "NOTIFICATION_TASK_RUN_MINIMUM_INTERVAL_MINUTES", "NO_PROXY",
    "OAUTH_APPLICATION_MAXIMUM_TOKEN_COUNT",
    "OAUTH_TOKEN_LAST_ACCESSED_UPDATE_THRESHOLD_S", "OCI_NAMESPACE_WHITELIST",
    "ORG_MIRROR_INTERVAL", "ORG_MIRROR_MAX_DISCOVERY_DURATION", "OTEL_CONFIG",
    "OTEL_TRACING_EXCLUDED_URLS", "PERMANENTLY_DELETE_TAGS",
    "PRIVACY_POLICY_URL", "PROFILING_TYPE", "PROGRAMMATIC_TOKEN_K8S_KEY",
    "PROGRAMMATIC_TOKEN_K8S_NAMESPACE", "PROGRAMMATIC_TOKEN_K8S_SECRET",
    "PROGRAMMATIC_TOKEN_PATH", "PROMETHEUS_NAMESPACE",
    "PROMETHEUS_PUSHGATEWAY_URL", "PROXY_CACHE_BLOB_QUEUE_NAME", "PROXY_COUNT",
    "PUBLIC_NAMESPACES", "PULL_METRICS_REDIS", "PULL_METRICS_REDIS_HOSTNAME",
    "PULL_METRICS_WORKER_COUNT", "PYROSCOPE_APPLICATION_NAME",
    "PYROSCOPE_SERVER_ADDRESS", "QUEUE_CLEANUP_FREQUENCY",
    "QUEUE_METRICS_TYPE", "QUEUE_WORKER_METRICS_REFRESH_SECONDS",
    "QUOTA_BACKFILL", "QUOTA_BACKFILL_BATCH_SIZE",
    "QUOTA_BACKFILL_POLL_PERIOD", "QUOTA_INVALIDATE_TOTALS",
    "QUOTA_NOTIFICATION_COOLDOWN_SECONDS",
    "QUOTA_NOTIFICATION_WORKER_POLL_PERIOD", "QUOTA_REGISTRY_SIZE_POLL_PERIOD",
    "QUOTA_TOTAL_DELAY_SECONDS", "RECAPTCHA_SECRET_KEY", "RECAPTCHA_SITE_KEY",
    "RECAPTCHA_WHITELISTED_USERS", "REDIS_CONNECTION_TIMEOUT",
    "REDIS_FLUSH_INTERVAL_SECONDS", "REDIS_FLUSH_WORKER_BATCH_SIZE",
    "REDIS_FLUSH_WORKER_SCAN_COUNT", "REGISTRY_TITLE_SHORT",
    "REPLICATION_QUEUE_NAME", "REPOSITORY_GC_QUEUE_NAME",
    "REPO_MIRROR_MAX_MANIFEST_ENTRIES", "REPO_MIRROR_MAX_MANIFEST_LIST_SIZE",
    "REPO_MIRROR_ROLLBACK", "REPO_MIRROR_TAG_ROLLBACK_PAGE_SIZE",
    "RESET_CHILD_MANIFEST_EXPIRATION", "RESTRICTED_USERS_WHITELIST",
    "RESTRICTED_USER_INCLUDE_ROBOTS", "ROBOTS_DISALLOW", "ROBOTS_WHITELIST",
    "SEARCH_MAX_RESULT_PAGE_COUNT", "SEARCH_RESULTS_PER_PAGE",
    "SECSCAN_V4_NOTIFICATION_QUEUE_NAME",
    "SECURITY_SCANNER_API_TIMEOUT_POST_SECONDS",
    "SECURITY_SCANNER_API_TIMEOUT_SECONDS", "SECURITY_SCANNER_API_VERSION",
    "SECURITY_SCANNER_ENDPOINT", "SECURITY_SCANNER_ENDPOINT_BATCH",
    "SECURITY_SCANNER_ENGINE_VERSION_TARGET",
    "SECURITY_SCANNER_INDEXING_INTERVAL", "SECURITY_SCANNER_INDEXING_MIN_ID",
    "SECURITY_SCANNER_ISSUER_NAME", "SECURITY_SCANNER_MAX_SCAN_RETRIES",
    "SECURITY_SCANNER_READONLY_FAILOVER_ENDPOINTS",
    "SECURITY_SCANNER_V2_BATCH_SIZE", "SECURITY_SCANNER_V2_INDEXING_INTERVAL",
    "SECURITY_SCANNER_V4_BATCH_SIZE", "SECURITY_SCANNER_V4_ENDPOINT",
    "SECURITY_SCANNER_V4_INDEXING", "SECURITY_SCANNER_V4_INDEX_MAX_LAYER_SIZE",
    "SECURITY_SCANNER_V4_MANIFEST_CLEANUP",
    "SECURITY_SCANNER_V4_NAMESPACE_WHITELIST", "SECURITY_SCANNER_V4_PSK",
    "SECURITY_SCANNER_V4_RECENT_MANIFEST_BATCH_SIZE",
    "SECURITY_SCANNER_V4_REINDEX_THRESHOLD", "SECURITY_URL",
    "SEND_FILE_MAX_AGE_DEFAULT", "SENTRY_DSN", "SENTRY_ENVIRONMENT",
    "SENTRY_PROFILES_SAMPLE_RATE", "SENTRY_PUBLIC_DSN", "SENTRY_SAMPLE_RATE",
    "SENTRY_TRACES_SAMPLE_RATE", "SERVICE_LOG_ACCOUNT_ID",
    "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SAMESITE", "SESSION_COOKIE_SECURE",
    "SESSION_REFRESH_EACH_REQUEST", "SESSION_TIMEOUT", "SETUP_COMPLETE",
    "SIGNED_GRANT_EXPIRATION_SEC", "SIGNING_ENGINE",
    "SPAM_DETECTION_CLASSIFIER_PATH", "SPAM_DETECTION_CLASSIFIER_SHA256",
    "SPAM_DETECTION_CLASSIFIER_VERSION", "SPAM_DETECTION_DRY_RUN",
    "SPAM_DETECTION_FAIL_OPEN", "SSL_CIPHERS", "SSL_CIPHERSUITES",
    "SSL_PROTOCOLS", "SSRF_ALLOWED_HOSTS", "STAGGER_WORKERS",
    "STATIC_SITE_BUCKET", "STORAGE_REPLICATION_PROCESSING_SECONDS",
    "STRIPE_PUBLISHABLE_KEY", "STRIPE_SECRET_KEY",
    "SUCCESSIVE_TRIGGER_FAILURE_DISABLE_THRESHOLD",
    "SUCCESSIVE_TRIGGER_INTERNAL_ERROR_DISABLE_THRESHOLD",
    "SYSTEM_SERVICES_PATH", "SYSTEM_SERVICE_BLACKLIST",
    "TEAM_RESYNC_STALE_TIME", "TEAM_SYNC_WORKER_FREQUENCY",
    "TERMS_OF_SERVICE_URL", "TESTING", "THREAT_NAMESPACE_MAXIMUM_BUILD_COUNT",
    "TRACKED_NAMESPACES", "TRAP_HTTP_EXCEPTIONS", "TUF_API_TIMEOUT_SECONDS",
    "TUF_GUN_PREFIX", "TUF_HOST", "TUF_READONLY_FAILOVER_ENDPOINTS",
    "TUF_SERVER", "UI_DELAY_AFTER_WRITE_SECONDS", "UI_MODELCARD_ANNOTATION",
    "UI_MODELCARD_ARTIFACT_TYPE", "UI_MODELCARD_LAYER_ANNOTATION",
    "UI_V2_FEEDBACK_FORM", "UNAPPROVED_SERVICE_KEY_TTL_SEC",
    "USERFILES_LOCATION", "USERFILES_PATH", "USER_EVENTS_REDIS_HOSTNAME",
    "USER_RECOVERY_TOKEN_LIFETIME", "USE_CDN", "USE_X_SENDFILE",
    "V1_ONLY_DOMAIN", "V1_PUSH_WHITELIST", "V22_NAMESPACE_BLACKLIST",
    "WEBHOOK_HOSTNAME_BLACKLIST",
};

#define QUAY_CONFIG_NIGNORED                                                  \
    (sizeof(quay_config_ignored_keys) / sizeof(quay_config_ignored_keys[0]))


#define QUAY_LOCAL    (1u << QUAY_STORAGE_LOCAL)
#define QUAY_S3       (1u << QUAY_STORAGE_S3)
#define QUAY_RADOS    (1u << QUAY_STORAGE_RADOSGW)

#define QS_OFF(field)  offsetof(quay_storage_location_t, field)


static const quay_storage_driver_t  quay_storage_drivers[] = {
    { "LocalStorage", QUAY_STORAGE_LOCAL },
    { "S3Storage", QUAY_STORAGE_S3 },
    { "RadosGWStorage", QUAY_STORAGE_RADOSGW },
};

#define QUAY_STORAGE_NDRIVERS                                                 \
    (sizeof(quay_storage_drivers) / sizeof(quay_storage_drivers[0]))


/* Constructor arguments of Quay's drivers (storage/local.py, cloud.py). */
static const quay_storage_param_t  quay_storage_params[] = {
    { "storage_path", QUAY_PARAM_STRING, QS_OFF(storage_path),
      QUAY_LOCAL | QUAY_S3 | QUAY_RADOS, QUAY_LOCAL, 0, 0 },

    { "s3_bucket", QUAY_PARAM_STRING, QS_OFF(bucket), QUAY_S3, QUAY_S3,
      0, 0 },
    { "s3_access_key", QUAY_PARAM_STRING, QS_OFF(access_key), QUAY_S3,
      QUAY_S3, 0, 0 },
    { "s3_secret_key", QUAY_PARAM_STRING, QS_OFF(secret_key), QUAY_S3,
      QUAY_S3, 0, 0 },
    { "s3_region", QUAY_PARAM_STRING, QS_OFF(region), QUAY_S3, 0, 0, 0 },
    { "host", QUAY_PARAM_STRING, QS_OFF(host), QUAY_S3, 0, 0, 0 },
    { "endpoint_url", QUAY_PARAM_STRING, QS_OFF(endpoint_url), QUAY_S3, 0,
      0, 0 },
    { "aws_session_token", QUAY_PARAM_STRING, QS_OFF(session_token),
      QUAY_S3, 0, 0, 0 },
    { "maximum_chunk_size_gb", QUAY_PARAM_GIB, QS_OFF(maximum_chunk_size),
      QUAY_S3, 0, 1, 5 },
    { "deferred_refreshable_credentials", QUAY_PARAM_IGNORED, 0, QUAY_S3,
      0, 0, 0 },

    { "hostname", QUAY_PARAM_STRING, QS_OFF(host), QUAY_RADOS, QUAY_RADOS,
      0, 0 },
    { "is_secure", QUAY_PARAM_BOOL, QS_OFF(is_secure), QUAY_RADOS, 0, 0, 0 },
    { "access_key", QUAY_PARAM_STRING, QS_OFF(access_key), QUAY_RADOS,
      QUAY_RADOS, 0, 0 },
    { "secret_key", QUAY_PARAM_STRING, QS_OFF(secret_key), QUAY_RADOS,
      QUAY_RADOS, 0, 0 },
    { "bucket_name", QUAY_PARAM_STRING, QS_OFF(bucket), QUAY_RADOS,
      QUAY_RADOS, 0, 0 },
    { "region_name", QUAY_PARAM_STRING, QS_OFF(region), QUAY_RADOS, 0,
      0, 0 },
    { "maximum_chunk_size_mb", QUAY_PARAM_MIB, QS_OFF(maximum_chunk_size),
      QUAY_RADOS, 0, 5, 5120 },
    { "server_side_assembly", QUAY_PARAM_BOOL, QS_OFF(server_side_assembly),
      QUAY_RADOS, 0, 0, 0 },

    { "port", QUAY_PARAM_PORT, QS_OFF(port), QUAY_S3 | QUAY_RADOS, 0,
      1, 65535 },
    { "minimum_chunk_size_mb", QUAY_PARAM_MIB, QS_OFF(minimum_chunk_size),
      QUAY_S3 | QUAY_RADOS, 0, 5, 5120 },
    { "signature_version", QUAY_PARAM_SIGNATURE, 0, QUAY_S3 | QUAY_RADOS, 0,
      0, 0 },
};

#define QUAY_STORAGE_NPARAMS                                                  \
    (sizeof(quay_storage_params) / sizeof(quay_storage_params[0]))


/* Keys of BUILDLOGS_REDIS / USER_EVENTS_REDIS we read. */
static const char  *quay_config_redis_params[] = {
    "host", "port", "password", "username", "db", "ssl"
};

#define QUAY_CONFIG_NREDIS                                                    \
    (sizeof(quay_config_redis_params) / sizeof(quay_config_redis_params[0]))


struct quay_config_ctx_s {
    quay_config_t           *cfg;
    yaml_document_t         *doc;
    quay_config_report_pt    report;
    void                    *report_ctx;
    quay_err_t              *err;
    unsigned                 nerrors;
    bool                     nomem;
    bool                     locations_known;  /* storage names checkable */
    unsigned                 doc_line;
    unsigned                 seen[QUAY_CONFIG_NKEYS];    /* value line */
};


static void quay_config_report(quay_config_ctx_t *ctx, bool is_error,
    const char *key, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));


/* Formats into fresh memory; NULL (and ctx->nomem) when out of memory. */
static char *
quay_config_vsprintf(quay_config_ctx_t *ctx, const char *fmt, va_list ap)
{
    int       n;
    char     *s;
    va_list   aq;

    va_copy(aq, ap);
    n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);

    if (n < 0) {
        ctx->nomem = true;
        return NULL;
    }

    s = malloc((size_t) n + 1);
    if (s == NULL) {
        ctx->nomem = true;
        return NULL;
    }

    (void) vsnprintf(s, (size_t) n + 1, fmt, ap);

    return s;
}


static char *
quay_config_strndup(quay_config_ctx_t *ctx, const char *p, size_t len)
{
    char  *s;

    s = malloc(len + 1);
    if (s == NULL) {
        ctx->nomem = true;
        return NULL;
    }

    memcpy(s, p, len);
    s[len] = '\0';

    return s;
}


static void
quay_config_report(quay_config_ctx_t *ctx, bool is_error, const char *key,
    unsigned line, const char *fmt, ...)
{
    char     *msg;
    va_list   ap;

    va_start(ap, fmt);
    msg = quay_config_vsprintf(ctx, fmt, ap);
    va_end(ap);

    if (msg == NULL) {
        return;
    }

    if (ctx->report != NULL) {
        ctx->report(ctx->report_ctx, is_error, key, line, msg);
    }

    if (is_error) {
        if (ctx->nerrors == 0) {
            if (key != NULL && line != 0) {
                (void) quay_err_set(ctx->err, QUAY_EINVAL, "%s (line %u): %s",
                                    key, line, msg);
            } else if (key != NULL) {
                (void) quay_err_set(ctx->err, QUAY_EINVAL, "%s: %s", key,
                                    msg);
            } else if (line != 0) {
                (void) quay_err_set(ctx->err, QUAY_EINVAL, "line %u: %s",
                                    line, msg);
            } else {
                (void) quay_err_set(ctx->err, QUAY_EINVAL, "%s", msg);
            }
        }

        ctx->nerrors++;
    }

    free(msg);
}


static unsigned
quay_config_line(const yaml_node_t *node)
{
    if (node->start_mark.line >= UINT32_MAX - 1) {
        return 0;
    }

    return (unsigned) node->start_mark.line + 1;
}


/* Joins "prefix.name"; NULL (and ctx->nomem) when out of memory. */
static char *
quay_config_key_join(quay_config_ctx_t *ctx, const char *prefix,
    const char *name, size_t len)
{
    char    *s;
    size_t   plen;

    plen = strlen(prefix);

    s = malloc(plen + 1 + len + 1);
    if (s == NULL) {
        ctx->nomem = true;
        return NULL;
    }

    memcpy(s, prefix, plen);
    s[plen] = '.';
    memcpy(s + plen + 1, name, len);
    s[plen + 1 + len] = '\0';

    return s;
}


static bool
quay_config_name_is(const char *name, const char *p, size_t len)
{
    return strlen(name) == len && memcmp(name, p, len) == 0;
}


static char
quay_config_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char) (c - 'a' + 'A') : c;
}


/*
 * Levenshtein distance between p[0..len) and a known name, ignoring ASCII
 * case, or SIZE_MAX when it is clearly more than 2.  The known names are
 * ours and short, so the two rows fit on the stack.
 */
static size_t
quay_config_distance(const char *p, size_t len, const char *name)
{
    size_t  i, j, nlen, cost, best;
    size_t  prev[QUAY_CONFIG_NAME_MAX + 1], cur[QUAY_CONFIG_NAME_MAX + 1];

    nlen = strlen(name);

    if (nlen > QUAY_CONFIG_NAME_MAX
        || (len > nlen ? len - nlen : nlen - len) > 2)
    {
        return SIZE_MAX;
    }

    for (j = 0; j <= nlen; j++) {
        prev[j] = j;
    }

    for (i = 1; i <= len; i++) {
        cur[0] = i;

        for (j = 1; j <= nlen; j++) {
            cost = quay_config_upper(p[i - 1]) == quay_config_upper(name[j - 1])
                   ? 0 : 1;
            best = prev[j - 1] + cost;

            if (prev[j] + 1 < best) {
                best = prev[j] + 1;
            }

            if (cur[j - 1] + 1 < best) {
                best = cur[j - 1] + 1;
            }

            cur[j] = best;
        }

        memcpy(prev, cur, (nlen + 1) * sizeof(size_t));
    }

    return prev[nlen];
}


static void
quay_config_suggest(const char *p, size_t len, const char *name,
    const char **best, size_t *best_distance)
{
    size_t  d;

    d = quay_config_distance(p, len, name);

    if (d <= 2 && d < *best_distance) {
        *best = name;
        *best_distance = d;
    }
}


/* The nearest known top-level key within distance 2, or NULL. */
static const char *
quay_config_suggest_key(const char *p, size_t len)
{
    size_t       i, best_distance;
    const char  *best;

    best = NULL;
    best_distance = SIZE_MAX;

    for (i = 0; i < QUAY_CONFIG_NKEYS; i++) {
        quay_config_suggest(p, len, quay_config_keys[i].name, &best,
                            &best_distance);
    }

    for (i = 0; i < QUAY_CONFIG_NIGNORED; i++) {
        quay_config_suggest(p, len, quay_config_ignored_keys[i], &best,
                            &best_distance);
    }

    return best;
}


static void
quay_config_warn_unknown(quay_config_ctx_t *ctx, const char *key,
    unsigned line, const char *what, const char *suggestion)
{
    if (suggestion != NULL) {
        quay_config_report(ctx, false, key, line,
                           "unknown %s, ignored (did you mean %s?)", what,
                           suggestion);
    } else {
        quay_config_report(ctx, false, key, line, "unknown %s, ignored",
                           what);
    }

}


static bool
quay_config_is_ignored(const char *p, size_t len)
{
    size_t             i;
    static const char  suffix[] = "_LOGIN_CONFIG";

    for (i = 0; i < QUAY_CONFIG_NIGNORED; i++) {
        if (quay_config_name_is(quay_config_ignored_keys[i], p, len)) {
            return true;
        }
    }

    /* Quay treats every FOO_LOGIN_CONFIG as an OIDC provider. */
    return len > sizeof(suffix) - 1
           && memcmp(p + len - (sizeof(suffix) - 1), suffix,
                     sizeof(suffix) - 1) == 0;
}


static const char *
quay_config_node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}


/* YAML 1.1 null: empty, ~, null in plain style. */
static bool
quay_config_is_null(const yaml_node_t *node)
{
    const char  *v;

    if (node->type != YAML_SCALAR_NODE
        || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    {
        return false;
    }

    v = (const char *) node->data.scalar.value;

    return node->data.scalar.length == 0 || strcmp(v, "~") == 0
           || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0
           || strcmp(v, "NULL") == 0;
}


/*
 * The scalar of node, or false after reporting that key "must be <what>".
 */
static bool
quay_config_scalar(quay_config_ctx_t *ctx, const char *key,
    const yaml_node_t *node, const char *what, quay_config_scalar_t *s)
{
    if (node->type != YAML_SCALAR_NODE) {
        quay_config_report(ctx, true, key, quay_config_line(node),
                           "must be %s, not %s", what,
                           quay_config_node_kind(node));
        return false;
    }

    s->p = (const char *) node->data.scalar.value;
    s->len = node->data.scalar.length;
    s->plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    s->line = quay_config_line(node);

    return true;
}


static void
quay_config_scalar_from(quay_config_scalar_t *s, const char *text)
{
    s->p = text;
    s->len = strlen(text);
    s->plain = true;
    s->line = 0;
}


/*
 * Converters: each returns QUAY_OK, or reports the problem against key and
 * returns QUAY_EINVAL.
 */

static int
quay_config_to_string(quay_config_ctx_t *ctx, const char *key,
    const quay_config_scalar_t *s, bool nonempty, quay_config_check_pt check,
    char **out)
{
    char        *v;
    const char  *problem;

    if (memchr(s->p, '\0', s->len) != NULL) {
        quay_config_report(ctx, true, key, s->line,
                           "must not contain a NUL character");
        return QUAY_EINVAL;
    }

    if (nonempty && s->len == 0) {
        quay_config_report(ctx, true, key, s->line, "must not be empty");
        return QUAY_EINVAL;
    }

    if (check != NULL) {
        problem = check(ctx, s->p);
        if (problem != NULL) {
            quay_config_report(ctx, true, key, s->line, "%s", problem);
            return QUAY_EINVAL;
        }
    }

    v = quay_config_strndup(ctx, s->p, s->len);
    if (v == NULL) {
        return QUAY_ENOMEM;
    }

    free(*out);
    *out = v;

    return QUAY_OK;
}


/*
 * PyYAML reads YAML 1.1, so yes/no/on/off are booleans too.  A quoted
 * "false" is a string, and a non-empty string is true in Python: refuse it
 * rather than guess.
 */
static int
quay_config_to_bool(quay_config_ctx_t *ctx, const char *key,
    const quay_config_scalar_t *s, bool *out)
{
    size_t             i;
    static const char  *yes[] = { "true", "True", "TRUE", "yes", "Yes",
                                  "YES", "on", "On", "ON" };
    static const char  *no[] = { "false", "False", "FALSE", "no", "No",
                                 "NO", "off", "Off", "OFF" };

    if (s->plain) {
        for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
            if (quay_config_name_is(yes[i], s->p, s->len)) {
                *out = true;
                return QUAY_OK;
            }

            if (quay_config_name_is(no[i], s->p, s->len)) {
                *out = false;
                return QUAY_OK;
            }
        }

        quay_config_report(ctx, true, key, s->line,
                           "must be a boolean (true or false)");

    } else {
        quay_config_report(ctx, true, key, s->line,
                           "must be a boolean (true or false), "
                           "not a quoted string");
    }

    return QUAY_EINVAL;
}


static int
quay_config_to_int(quay_config_ctx_t *ctx, const char *key,
    const quay_config_scalar_t *s, int64_t min, int64_t max, int64_t *out)
{
    size_t    i;
    bool      negative;
    int64_t   v;

    i = 0;
    negative = false;

    if (s->len > 0 && (s->p[0] == '-' || s->p[0] == '+')) {
        negative = s->p[0] == '-';
        i = 1;
    }

    if (i == s->len) {
        goto invalid;
    }

    v = 0;

    for ( /* void */ ; i < s->len; i++) {
        if (s->p[i] < '0' || s->p[i] > '9') {
            goto invalid;
        }

        if (v > (INT64_MAX - (s->p[i] - '0')) / 10) {
            goto range;
        }

        v = v * 10 + (s->p[i] - '0');
    }

    if (negative) {
        v = -v;
    }

    if (v < min || v > max) {
        goto range;
    }

    *out = v;

    return QUAY_OK;

invalid:

    quay_config_report(ctx, true, key, s->line, "must be an integer");
    return QUAY_EINVAL;

range:

    quay_config_report(ctx, true, key, s->line,
                       "must be between %lld and %lld",
                       (long long) min, (long long) max);
    return QUAY_EINVAL;
}


/* Writes bytes with the largest unit that divides it: 16T, 512M, 1000. */
static void
quay_config_size_text(int64_t bytes, char *buf, size_t size)
{
    size_t             i;
    int64_t            unit;
    static const char  units[] = "TGMK";

    for (i = 0; i < 4; i++) {
        unit = (int64_t) 1 << (10 * (4 - i));

        if (bytes != 0 && bytes % unit == 0) {
            (void) snprintf(buf, size, "%lld%c", (long long) (bytes / unit),
                            units[i]);
            return;
        }
    }

    (void) snprintf(buf, size, "%lld", (long long) bytes);
}


static int
quay_config_to_size(quay_config_ctx_t *ctx, const char *key,
    const quay_config_scalar_t *s, int64_t min, int64_t max, int64_t *out)
{
    int      rc;
    int64_t  v;
    char     lo[32], hi[32];

    rc = quay_size_parse(s->p, s->len, &v);

    if (rc == QUAY_EINVAL) {
        quay_config_report(ctx, true, key, s->line,
                           "must be a size such as 20G, 512M or a number "
                           "of bytes");
        return QUAY_EINVAL;
    }

    if (rc != QUAY_OK || v < min || v > max) {
        quay_config_size_text(min, lo, sizeof(lo));
        quay_config_size_text(max, hi, sizeof(hi));
        quay_config_report(ctx, true, key, s->line,
                           "must be between %s and %s", lo, hi);
        return QUAY_EINVAL;
    }

    *out = v;

    return QUAY_OK;
}


static const char  quay_config_duration_msg[] =
    "must be a duration: a number followed by w, d, h, m or s "
    "(2w, 1d, 30m)";


static int
quay_config_to_duration(quay_config_ctx_t *ctx, const char *key,
    const quay_config_scalar_t *s, int64_t min, int64_t max, char **text,
    int64_t *seconds)
{
    int      rc;
    int64_t  v;

    rc = quay_duration_parse(s->p, s->len, &v);

    if (rc == QUAY_EINVAL) {
        quay_config_report(ctx, true, key, s->line, "%s",
                           quay_config_duration_msg);
        return QUAY_EINVAL;
    }

    if (rc != QUAY_OK || v < min || v > max) {
        quay_config_report(ctx, true, key, s->line, "is too large");
        return QUAY_EINVAL;
    }

    rc = quay_config_to_string(ctx, key, s, true, NULL, text);
    if (rc != QUAY_OK) {
        return rc;
    }

    *seconds = v;

    return QUAY_OK;
}


/* Sets one top-level key of a scalar type from s. */
static int
quay_config_set_scalar(quay_config_ctx_t *ctx, const quay_config_key_t *k,
    const quay_config_scalar_t *s)
{
    quay_config_t  *cfg;

    cfg = ctx->cfg;

    switch (k->type) {

    case QUAY_CONFIG_STRING:
        return quay_config_to_string(ctx, k->name, s,
                                     k->flags & QUAY_CONFIG_REQUIRED,
                                     k->check,
                                     QUAY_CONFIG_FIELD(cfg, k->offset,
                                                       char *));

    case QUAY_CONFIG_BOOL:
        return quay_config_to_bool(ctx, k->name, s,
                                   QUAY_CONFIG_FIELD(cfg, k->offset, bool));

    case QUAY_CONFIG_INT:
        return quay_config_to_int(ctx, k->name, s, k->min, k->max,
                                  QUAY_CONFIG_FIELD(cfg, k->offset,
                                                    int64_t));

    case QUAY_CONFIG_DURATION:
        return quay_config_to_duration(ctx, k->name, s, k->min, k->max,
                                       QUAY_CONFIG_FIELD(cfg, k->offset,
                                                         char *),
                                       QUAY_CONFIG_FIELD(cfg, k->offset2,
                                                         int64_t));

    case QUAY_CONFIG_SIZE:
        return quay_config_to_size(ctx, k->name, s, k->min, k->max,
                                   QUAY_CONFIG_FIELD(cfg, k->offset,
                                                     int64_t));

    default:
        return QUAY_EINVAL;
    }
}


static int
quay_config_list_push(quay_config_ctx_t *ctx, quay_strlist_t *list,
    const char *p, size_t len)
{
    char   *v, **items;

    v = quay_config_strndup(ctx, p, len);
    if (v == NULL) {
        return QUAY_ENOMEM;
    }

    items = realloc(list->items, (list->n + 1) * sizeof(char *));
    if (items == NULL) {
        free(v);
        ctx->nomem = true;
        return QUAY_ENOMEM;
    }

    items[list->n++] = v;
    list->items = items;

    return QUAY_OK;
}


static void
quay_config_list_free(quay_strlist_t *list)
{
    size_t  i;

    for (i = 0; i < list->n; i++) {
        free(list->items[i]);
    }

    free(list->items);
    list->items = NULL;
    list->n = 0;
}


static bool
quay_config_list_has(const quay_strlist_t *list, const char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < list->n; i++) {
        if (quay_config_name_is(list->items[i], p, len)) {
            return true;
        }
    }

    return false;
}


/* Checks one list entry and appends it. */
static int
quay_config_list_add(quay_config_ctx_t *ctx, const quay_config_key_t *k,
    quay_strlist_t *list, const char *p, size_t len, unsigned line)
{
    const char  *problem;

    if (len == 0 || memchr(p, '\0', len) != NULL) {
        quay_config_report(ctx, true, k->name, line,
                           "entries must be non-empty strings");
        return QUAY_EINVAL;
    }

    if (k->check != NULL) {
        problem = k->check(ctx, p);
        if (problem != NULL) {
            quay_config_report(ctx, true, k->name, line, "entry \"%s\" %s",
                               p, problem);
            return QUAY_EINVAL;
        }
    }

    if (quay_config_list_has(list, p, len)) {
        quay_config_report(ctx, false, k->name, line,
                           "entry \"%s\" is listed twice", p);
        return QUAY_OK;
    }

    return quay_config_list_push(ctx, list, p, len);
}


static int
quay_config_set_list(quay_config_ctx_t *ctx, const quay_config_key_t *k,
    const yaml_node_t *node)
{
    int                    rc;
    quay_strlist_t        *list;
    yaml_node_item_t      *item;
    quay_config_scalar_t   s;

    list = QUAY_CONFIG_FIELD(ctx->cfg, k->offset, quay_strlist_t);

    if (node->type != YAML_SEQUENCE_NODE) {
        quay_config_report(ctx, true, k->name, quay_config_line(node),
                           "must be a list of strings, not %s",
                           quay_config_node_kind(node));
        return QUAY_EINVAL;
    }

    rc = QUAY_OK;

    for (item = node->data.sequence.items.start;
         item < node->data.sequence.items.top;
         item++)
    {
        if (!quay_config_scalar(ctx, k->name,
                                yaml_document_get_node(ctx->doc, *item),
                                "a string", &s))
        {
            rc = QUAY_EINVAL;
            continue;
        }

        if (quay_config_list_add(ctx, k, list, s.p, s.len, s.line)
            != QUAY_OK)
        {
            rc = QUAY_EINVAL;
        }
    }

    if (rc == QUAY_OK && list->n == 0 && (k->flags & QUAY_CONFIG_NONEMPTY)) {
        quay_config_report(ctx, true, k->name, quay_config_line(node),
                           "must not be empty");
        return QUAY_EINVAL;
    }

    return rc;
}


/*
 * Reports pair i of mapping as a duplicate if an earlier pair has the same
 * scalar key.  YAML forbids duplicate keys; PyYAML silently keeps the last,
 * which hides mistakes.
 */
static bool
quay_config_is_duplicate(quay_config_ctx_t *ctx, const char *prefix,
    const yaml_node_t *mapping, const yaml_node_pair_t *pair)
{
    char                    *key;
    const yaml_node_t       *k, *other;
    const yaml_node_pair_t  *p;

    k = yaml_document_get_node(ctx->doc, pair->key);

    if (k == NULL || k->type != YAML_SCALAR_NODE) {
        return false;
    }

    for (p = mapping->data.mapping.pairs.start; p < pair; p++) {
        other = yaml_document_get_node(ctx->doc, p->key);

        if (other != NULL && other->type == YAML_SCALAR_NODE
            && other->data.scalar.length == k->data.scalar.length
            && memcmp(other->data.scalar.value, k->data.scalar.value,
                      k->data.scalar.length) == 0)
        {
            if (prefix != NULL) {
                key = quay_config_key_join(ctx, prefix,
                                           (const char *) k->data.scalar.value,
                                           k->data.scalar.length);
            } else {
                key = quay_config_strndup(ctx,
                                          (const char *) k->data.scalar.value,
                                          k->data.scalar.length);
            }

            quay_config_report(ctx, true, key, quay_config_line(k),
                               "duplicate key (first given at line %u)",
                               quay_config_line(other));
            free(key);
            return true;
        }
    }

    return false;
}


/*
 * The scalar key of a pair, or NULL after reporting a non-scalar key
 * (a YAML complex key such as "? [a, b]").
 */
static const yaml_node_t *
quay_config_pair_key(quay_config_ctx_t *ctx, const char *prefix,
    const yaml_node_pair_t *pair)
{
    const yaml_node_t  *k;

    k = yaml_document_get_node(ctx->doc, pair->key);

    if (k == NULL) {
        return NULL;
    }

    if (k->type != YAML_SCALAR_NODE) {
        quay_config_report(ctx, true, prefix, quay_config_line(k),
                           "mapping keys must be strings");
        return NULL;
    }

    return k;
}


static int
quay_config_set_redis(quay_config_ctx_t *ctx, const quay_config_key_t *k,
    const yaml_node_t *node)
{
    int                    rc, r;
    size_t                 i, len, best_distance;
    char                  *key;
    int64_t                v;
    const char            *name, *best;
    const yaml_node_t     *pk, *pv;
    yaml_node_pair_t      *pair;
    quay_redis_config_t   *redis;
    quay_config_scalar_t   s;

    redis = QUAY_CONFIG_FIELD(ctx->cfg, k->offset, quay_redis_config_t);

    if (node->type != YAML_MAPPING_NODE) {
        quay_config_report(ctx, true, k->name, quay_config_line(node),
                           "must be a mapping such as "
                           "{host: 127.0.0.1, port: 6379}, not %s",
                           quay_config_node_kind(node));
        return QUAY_EINVAL;
    }

    rc = QUAY_OK;

    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top;
         pair++)
    {
        pk = quay_config_pair_key(ctx, k->name, pair);
        if (pk == NULL) {
            rc = QUAY_EINVAL;
            continue;
        }

        if (quay_config_is_duplicate(ctx, k->name, node, pair)) {
            rc = QUAY_EINVAL;
            continue;
        }

        name = (const char *) pk->data.scalar.value;
        len = pk->data.scalar.length;
        pv = yaml_document_get_node(ctx->doc, pair->value);

        key = quay_config_key_join(ctx, k->name, name, len);
        if (key == NULL) {
            return QUAY_ENOMEM;
        }

        r = QUAY_OK;

        if (quay_config_is_null(pv)) {
            /* absent: keep the default */

        } else if (quay_config_name_is("host", name, len)) {
            if (quay_config_scalar(ctx, key, pv, "a string", &s)) {
                r = quay_config_to_string(ctx, key, &s, true,
                                          quay_config_check_hostname,
                                          &redis->host);
            } else {
                r = QUAY_EINVAL;
            }

        } else if (quay_config_name_is("port", name, len)) {
            r = QUAY_EINVAL;
            if (quay_config_scalar(ctx, key, pv, "an integer", &s)
                && quay_config_to_int(ctx, key, &s, 1, 65535, &v) == QUAY_OK)
            {
                redis->port = (int) v;
                r = QUAY_OK;
            }

        } else if (quay_config_name_is("db", name, len)) {
            r = QUAY_EINVAL;
            if (quay_config_scalar(ctx, key, pv, "an integer", &s)
                && quay_config_to_int(ctx, key, &s, 0, 65535, &v) == QUAY_OK)
            {
                redis->db = (int) v;
                r = QUAY_OK;
            }

        } else if (quay_config_name_is("password", name, len)) {
            r = QUAY_EINVAL;
            if (quay_config_scalar(ctx, key, pv, "a string", &s)) {
                r = quay_config_to_string(ctx, key, &s, false, NULL,
                                          &redis->password);
            }

        } else if (quay_config_name_is("username", name, len)) {
            r = QUAY_EINVAL;
            if (quay_config_scalar(ctx, key, pv, "a string", &s)) {
                r = quay_config_to_string(ctx, key, &s, false, NULL,
                                          &redis->username);
            }

        } else if (quay_config_name_is("ssl", name, len)) {
            r = QUAY_EINVAL;
            if (quay_config_scalar(ctx, key, pv, "a boolean", &s)) {
                r = quay_config_to_bool(ctx, key, &s, &redis->ssl);
            }

        } else {
            best = NULL;
            best_distance = SIZE_MAX;

            for (i = 0; i < QUAY_CONFIG_NREDIS; i++) {
                quay_config_suggest(name, len, quay_config_redis_params[i],
                                    &best, &best_distance);
            }

            quay_config_warn_unknown(ctx, key, quay_config_line(pk),
                                     "parameter", best);
        }

        if (r != QUAY_OK) {
            rc = QUAY_EINVAL;
        }

        free(key);

        if (ctx->nomem) {
            return QUAY_ENOMEM;
        }
    }

    return rc;
}


static const quay_storage_param_t *
quay_storage_param_find(const char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < QUAY_STORAGE_NPARAMS; i++) {
        if (quay_config_name_is(quay_storage_params[i].name, p, len)) {
            return &quay_storage_params[i];
        }
    }

    return NULL;
}


static const char *
quay_storage_driver_name(quay_storage_driver_e driver)
{
    size_t  i;

    for (i = 0; i < QUAY_STORAGE_NDRIVERS; i++) {
        if (quay_storage_drivers[i].driver == driver) {
            return quay_storage_drivers[i].name;
        }
    }

    return "?";
}


/* Sets one parameter of a location from its YAML value. */
static int
quay_storage_set_param(quay_config_ctx_t *ctx, const char *key,
    quay_storage_location_t *loc, const quay_storage_param_t *param,
    const yaml_node_t *value)
{
    int                    rc;
    int64_t                v;
    quay_config_scalar_t   s;

    switch (param->type) {

    case QUAY_PARAM_STRING:
        if (!quay_config_scalar(ctx, key, value, "a string", &s)) {
            return QUAY_EINVAL;
        }

        return quay_config_to_string(ctx, key, &s,
                                     (param->required & (1u << loc->driver))
                                     != 0, NULL,
                                     QUAY_CONFIG_FIELD(loc, param->offset,
                                                       char *));

    case QUAY_PARAM_BOOL:
        if (!quay_config_scalar(ctx, key, value, "a boolean", &s)) {
            return QUAY_EINVAL;
        }

        return quay_config_to_bool(ctx, key, &s,
                                   QUAY_CONFIG_FIELD(loc, param->offset,
                                                     bool));

    case QUAY_PARAM_PORT:
    case QUAY_PARAM_MIB:
    case QUAY_PARAM_GIB:
        if (!quay_config_scalar(ctx, key, value, "an integer", &s)) {
            return QUAY_EINVAL;
        }

        rc = quay_config_to_int(ctx, key, &s, param->min, param->max, &v);
        if (rc != QUAY_OK) {
            return rc;
        }

        if (param->type == QUAY_PARAM_PORT) {
            *QUAY_CONFIG_FIELD(loc, param->offset, int) = (int) v;
        } else {
            *QUAY_CONFIG_FIELD(loc, param->offset, int64_t) =
                v << (param->type == QUAY_PARAM_MIB ? 20 : 30);
        }

        return QUAY_OK;

    case QUAY_PARAM_SIGNATURE:
        if (!quay_config_scalar(ctx, key, value, "a string", &s)) {
            return QUAY_EINVAL;
        }

        if (!quay_config_name_is("s3v4", s.p, s.len)
            && !quay_config_name_is("v4", s.p, s.len))
        {
            quay_config_report(ctx, false, key, s.line,
                               "only s3v4 is supported; requests are "
                               "signed with s3v4");
        }

        return QUAY_OK;

    default:
        return QUAY_OK;
    }
}


static const char *
quay_storage_check_url(const char *url)
{
    const char  *host;

    if (strncmp(url, "https://", 8) == 0) {
        host = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        host = url + 7;
    } else {
        return "must start with http:// or https://";
    }

    if (*host == '\0' || *host == '/') {
        return "must name a host after the scheme";
    }

    return NULL;
}


/* Driver-specific rules once all parameters are read. */
static int
quay_storage_check_location(quay_config_ctx_t *ctx, const char *prefix,
    quay_storage_location_t *loc, unsigned line)
{
    int          rc;
    char        *key;
    size_t       i;
    const char  *problem, *pname;

    rc = QUAY_OK;

    for (i = 0; i < QUAY_STORAGE_NPARAMS; i++) {
        if ((quay_storage_params[i].required & (1u << loc->driver)) == 0
            || *QUAY_CONFIG_FIELD(loc, quay_storage_params[i].offset, char *)
               != NULL)
        {
            continue;
        }

        key = quay_config_key_join(ctx, prefix, quay_storage_params[i].name,
                                   strlen(quay_storage_params[i].name));
        quay_config_report(ctx, true, key, line, "is required for %s",
                           quay_storage_driver_name(loc->driver));
        free(key);
        rc = QUAY_EINVAL;
    }

    switch (loc->driver) {

    case QUAY_STORAGE_LOCAL:
        if (loc->storage_path != NULL && loc->storage_path[0] != '/') {
            key = quay_config_key_join(ctx, prefix, "storage_path", 12);
            quay_config_report(ctx, true, key, line,
                               "must be an absolute path");
            free(key);
            rc = QUAY_EINVAL;
        }

        break;

    case QUAY_STORAGE_S3:
    case QUAY_STORAGE_RADOSGW:
        if (loc->driver == QUAY_STORAGE_S3
            && loc->host == NULL && loc->endpoint_url == NULL
            && loc->region == NULL)
        {
            quay_config_report(ctx, true, prefix, line,
                               "S3Storage needs host, endpoint_url or "
                               "s3_region");
            rc = QUAY_EINVAL;
        }

        pname = loc->driver == QUAY_STORAGE_S3 ? "host" : "hostname";

        if (loc->host != NULL) {
            problem = quay_config_check_hostname(ctx, loc->host);
            if (problem != NULL) {
                key = quay_config_key_join(ctx, prefix, pname,
                                           strlen(pname));
                quay_config_report(ctx, true, key, line, "%s", problem);
                free(key);
                rc = QUAY_EINVAL;
            }
        }

        if (loc->endpoint_url != NULL) {
            problem = quay_storage_check_url(loc->endpoint_url);
            if (problem != NULL) {
                key = quay_config_key_join(ctx, prefix, "endpoint_url", 12);
                quay_config_report(ctx, true, key, line, "%s", problem);
                free(key);
                rc = QUAY_EINVAL;
            } else if (strncmp(loc->endpoint_url, "http://", 7) == 0) {
                loc->is_secure = false;
            }
        }

        if (loc->storage_path == NULL) {
            /* Quay joins keys under storage_path; none means the root. */
            loc->storage_path = quay_config_strndup(ctx, "", 0);
            if (loc->storage_path == NULL) {
                return QUAY_ENOMEM;
            }
        }

        break;
    }

    return rc;
}


/*
 * One DISTRIBUTED_STORAGE_CONFIG entry: name: [Driver, {params}].  The
 * location is kept even when it has errors, so the location lists can
 * still be checked against its name.
 */
static int
quay_storage_set_location(quay_config_ctx_t *ctx, const yaml_node_t *name,
    const yaml_node_t *value)
{
    int                           rc;
    char                         *prefix, *key;
    size_t                        i, len, best_distance;
    unsigned                      line;
    const char                   *p, *best;
    yaml_node_pair_t             *pair;
    const yaml_node_t            *driver, *params, *pk, *pv;
    quay_storage_location_t      *loc, *storage;
    const quay_storage_param_t   *param;

    prefix = quay_config_key_join(ctx, QUAY_CONFIG_STORAGE_KEY,
                                  (const char *) name->data.scalar.value,
                                  name->data.scalar.length);
    if (prefix == NULL) {
        return QUAY_ENOMEM;
    }

    line = quay_config_line(value);

    if (name->data.scalar.length == 0
        || memchr(name->data.scalar.value, '\0', name->data.scalar.length)
           != NULL)
    {
        quay_config_report(ctx, true, QUAY_CONFIG_STORAGE_KEY,
                           quay_config_line(name),
                           "location names must be non-empty strings");
        rc = QUAY_EINVAL;
        goto done;
    }

    if (value->type != YAML_SEQUENCE_NODE
        || value->data.sequence.items.top - value->data.sequence.items.start
           != 2)
    {
        quay_config_report(ctx, true, prefix, line,
                           "must be a list of two entries: "
                           "[DriverName, {parameters}]");
        rc = QUAY_EINVAL;
        goto done;
    }

    driver = yaml_document_get_node(ctx->doc,
                                    value->data.sequence.items.start[0]);
    params = yaml_document_get_node(ctx->doc,
                                    value->data.sequence.items.start[1]);

    if (driver->type != YAML_SCALAR_NODE) {
        quay_config_report(ctx, true, prefix, quay_config_line(driver),
                           "the first entry must be a storage driver name");
        rc = QUAY_EINVAL;
        goto done;
    }

    for (i = 0; i < QUAY_STORAGE_NDRIVERS; i++) {
        if (strcmp(quay_storage_drivers[i].name,
                   (const char *) driver->data.scalar.value) == 0)
        {
            break;
        }
    }

    if (i == QUAY_STORAGE_NDRIVERS) {
        quay_config_report(ctx, true, prefix, quay_config_line(driver),
                           "unsupported storage driver %s (supported: "
                           "LocalStorage, S3Storage, RadosGWStorage)",
                           (const char *) driver->data.scalar.value);
        rc = QUAY_EINVAL;
        goto done;
    }

    storage = realloc(ctx->cfg->storage,
                      (ctx->cfg->nstorage + 1) * sizeof(*storage));
    if (storage == NULL) {
        ctx->nomem = true;
        rc = QUAY_ENOMEM;
        goto done;
    }

    ctx->cfg->storage = storage;
    loc = &storage[ctx->cfg->nstorage++];
    memset(loc, 0, sizeof(*loc));

    loc->driver = quay_storage_drivers[i].driver;
    loc->is_secure = true;
    loc->server_side_assembly = true;
    loc->minimum_chunk_size = (int64_t) 5 << 20;
    loc->maximum_chunk_size = loc->driver == QUAY_STORAGE_S3
                              ? (int64_t) 5 << 30 : (int64_t) 100 << 20;

    loc->name = quay_config_strndup(ctx,
                                    (const char *) name->data.scalar.value,
                                    name->data.scalar.length);
    if (loc->name == NULL) {
        rc = QUAY_ENOMEM;
        goto done;
    }

    if (params->type != YAML_MAPPING_NODE && !quay_config_is_null(params)) {
        quay_config_report(ctx, true, prefix, quay_config_line(params),
                           "the second entry must be a mapping of "
                           "parameters, not %s",
                           quay_config_node_kind(params));
        rc = QUAY_EINVAL;
        goto done;
    }

    rc = QUAY_OK;

    if (params->type == YAML_MAPPING_NODE) {
        line = quay_config_line(params);

        for (pair = params->data.mapping.pairs.start;
             pair < params->data.mapping.pairs.top;
             pair++)
        {
            pk = quay_config_pair_key(ctx, prefix, pair);
            if (pk == NULL) {
                rc = QUAY_EINVAL;
                continue;
            }

            if (quay_config_is_duplicate(ctx, prefix, params, pair)) {
                rc = QUAY_EINVAL;
                continue;
            }

            p = (const char *) pk->data.scalar.value;
            len = pk->data.scalar.length;
            pv = yaml_document_get_node(ctx->doc, pair->value);

            key = quay_config_key_join(ctx, prefix, p, len);
            if (key == NULL) {
                rc = QUAY_ENOMEM;
                goto done;
            }

            param = quay_storage_param_find(p, len);

            if (param == NULL
                || (param->drivers & (1u << loc->driver)) == 0)
            {
                best = NULL;
                best_distance = SIZE_MAX;

                for (i = 0; i < QUAY_STORAGE_NPARAMS; i++) {
                    if (quay_storage_params[i].drivers
                        & (1u << loc->driver))
                    {
                        quay_config_suggest(p, len,
                                            quay_storage_params[i].name,
                                            &best, &best_distance);
                    }
                }

                quay_config_report(ctx, false, key, quay_config_line(pk),
                                   best != NULL
                                   ? "unknown parameter for %s, ignored "
                                     "(did you mean %s?)"
                                   : "unknown parameter for %s, ignored%s",
                                   quay_storage_driver_name(loc->driver),
                                   best != NULL ? best : "");

            } else if (!quay_config_is_null(pv)
                       && quay_storage_set_param(ctx, key, loc, param, pv)
                          != QUAY_OK)
            {
                rc = QUAY_EINVAL;
            }

            free(key);

            if (ctx->nomem) {
                rc = QUAY_ENOMEM;
                goto done;
            }
        }
    }

    if (quay_storage_check_location(ctx, prefix, loc, line) != QUAY_OK) {
        rc = QUAY_EINVAL;
    }

done:

    free(prefix);

    return ctx->nomem ? QUAY_ENOMEM : rc;
}


static int
quay_config_set_storage(quay_config_ctx_t *ctx, const yaml_node_t *node)
{
    int                 rc;
    const yaml_node_t  *pk, *pv;
    yaml_node_pair_t   *pair;

    if (node->type != YAML_MAPPING_NODE) {
        quay_config_report(ctx, true, QUAY_CONFIG_STORAGE_KEY,
                           quay_config_line(node),
                           "must be a mapping of location names to "
                           "[DriverName, {parameters}], not %s",
                           quay_config_node_kind(node));
        return QUAY_EINVAL;
    }

    /* Names can be checked now, even if a location below has errors. */
    ctx->locations_known = true;

    rc = QUAY_OK;

    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top;
         pair++)
    {
        pk = quay_config_pair_key(ctx, QUAY_CONFIG_STORAGE_KEY, pair);
        if (pk == NULL) {
            rc = QUAY_EINVAL;
            continue;
        }

        if (quay_config_is_duplicate(ctx, QUAY_CONFIG_STORAGE_KEY, node,
                                     pair))
        {
            rc = QUAY_EINVAL;
            continue;
        }

        pv = yaml_document_get_node(ctx->doc, pair->value);

        switch (quay_storage_set_location(ctx, pk, pv)) {
        case QUAY_OK:
            break;
        case QUAY_ENOMEM:
            return QUAY_ENOMEM;
        default:
            rc = QUAY_EINVAL;
        }
    }

    if (ctx->cfg->nstorage == 0 && rc == QUAY_OK) {
        quay_config_report(ctx, true, QUAY_CONFIG_STORAGE_KEY,
                           quay_config_line(node),
                           "must configure at least one location");
        rc = QUAY_EINVAL;
    }

    return rc;
}


static const quay_config_key_t *
quay_config_find(const char *p, size_t len, size_t *index)
{
    size_t  i;

    for (i = 0; i < QUAY_CONFIG_NKEYS; i++) {
        if (quay_config_name_is(quay_config_keys[i].name, p, len)) {
            *index = i;
            return &quay_config_keys[i];
        }
    }

    return NULL;
}


/* One top-level key: value pair from the document. */
static void
quay_config_set(quay_config_ctx_t *ctx, size_t index,
    const yaml_node_t *value)
{
    const char               *what;
    const quay_config_key_t  *k;
    quay_config_scalar_t      s;

    k = &quay_config_keys[index];

    /* null means "not given": the default applies, required keys fail */
    if (quay_config_is_null(value)) {
        if (k->flags & QUAY_CONFIG_REQUIRED) {
            ctx->seen[index] = quay_config_line(value);
            quay_config_report(ctx, true, k->name, quay_config_line(value),
                               "must not be empty");
        }

        return;
    }

    ctx->seen[index] = quay_config_line(value);

    switch (k->type) {

    case QUAY_CONFIG_LIST:
        (void) quay_config_set_list(ctx, k, value);
        return;

    case QUAY_CONFIG_REDIS:
        (void) quay_config_set_redis(ctx, k, value);
        return;

    case QUAY_CONFIG_STORAGE:
        (void) quay_config_set_storage(ctx, value);
        return;

    case QUAY_CONFIG_BOOL:
        what = "a boolean (true or false)";
        break;

    case QUAY_CONFIG_INT:
        what = "an integer";
        break;

    case QUAY_CONFIG_DURATION:
        what = "a duration such as 2w";
        break;

    case QUAY_CONFIG_SIZE:
        what = "a size such as 20G";
        break;

    default:
        what = "a string";
        break;
    }

    if (quay_config_scalar(ctx, k->name, value, what, &s)) {
        (void) quay_config_set_scalar(ctx, k, &s);
    }
}


/*
 * Walks the top-level mapping.  Pass 0 reads DISTRIBUTED_STORAGE_CONFIG
 * only; pass 1 reads the rest, reports unknown keys and duplicates.
 */
static void
quay_config_walk(quay_config_ctx_t *ctx, const yaml_node_t *root, int pass)
{
    size_t                    index, len;
    char                     *key;
    const char               *p;
    const yaml_node_t        *k;
    const quay_config_key_t  *row;
    yaml_node_pair_t         *pair;

    for (pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top && !ctx->nomem;
         pair++)
    {
        k = yaml_document_get_node(ctx->doc, pair->key);
        if (k == NULL) {
            continue;
        }

        if (k->type != YAML_SCALAR_NODE) {
            if (pass == 1) {
                (void) quay_config_pair_key(ctx, NULL, pair);
            }

            continue;
        }

        p = (const char *) k->data.scalar.value;
        len = k->data.scalar.length;
        row = quay_config_find(p, len, &index);

        if (pass == 0) {
            if (row != NULL && row->type == QUAY_CONFIG_STORAGE
                && ctx->seen[index] == 0)
            {
                quay_config_set(ctx, index,
                                yaml_document_get_node(ctx->doc,
                                                       pair->value));
            }

            continue;
        }

        if (quay_config_is_duplicate(ctx, NULL, root, pair)) {
            continue;
        }

        if (row != NULL) {
            if (row->type != QUAY_CONFIG_STORAGE) {
                quay_config_set(ctx, index,
                                yaml_document_get_node(ctx->doc,
                                                       pair->value));
            }

            continue;
        }

        if (quay_config_is_ignored(p, len)) {
            continue;
        }

        key = quay_config_strndup(ctx, p, len);
        quay_config_warn_unknown(ctx, key, quay_config_line(k), "key",
                                 quay_config_suggest_key(p, len));
        free(key);
    }
}


/*
 * QUAY_DISTRIBUTED_STORAGE_PREFERENCE, like Quay's entrypoint: location
 * names separated by commas or spaces replace DISTRIBUTED_STORAGE_PREFERENCE,
 * so one config.yaml can serve nodes in several regions.
 */
static void
quay_config_env_preference(quay_config_ctx_t *ctx)
{
    bool             ok;
    size_t           n;
    const char      *env, *p, *q;
    quay_strlist_t   list;

    env = getenv(QUAY_CONFIG_PREF_ENV);
    if (env == NULL) {
        return;
    }

    list.items = NULL;
    list.n = 0;
    ok = true;

    for (p = env; *p != '\0'; p = q) {
        while (*p == ',' || *p == ' ' || *p == '\t') {
            p++;
        }

        for (q = p; *q != '\0' && *q != ',' && *q != ' ' && *q != '\t';
             q++)
        {
            /* void */
        }

        n = (size_t) (q - p);
        if (n == 0) {
            continue;
        }

        if (quay_config_list_push(ctx, &list, p, n) != QUAY_OK) {
            quay_config_list_free(&list);
            return;
        }

        if (ctx->locations_known
            && quay_config_location(ctx->cfg, list.items[list.n - 1])
               == NULL)
        {
            quay_config_report(ctx, true, QUAY_CONFIG_PREF_ENV, 0,
                               "names \"%s\", which is not a location in "
                               "DISTRIBUTED_STORAGE_CONFIG",
                               list.items[list.n - 1]);
            ok = false;
        }
    }

    if (list.n == 0) {
        quay_config_report(ctx, true, QUAY_CONFIG_PREF_ENV, 0,
                           "is set but names no storage location");
        ok = false;
    }

    if (!ok) {
        quay_config_list_free(&list);
        return;
    }

    quay_config_list_free(&ctx->cfg->storage_preference);
    ctx->cfg->storage_preference = list;
}


/* Table defaults for keys not given, then the required-key check. */
static void
quay_config_finish(quay_config_ctx_t *ctx)
{
    size_t                    i;
    const char               *p, *q;
    quay_strlist_t           *list;
    quay_redis_config_t      *redis;
    const quay_config_key_t  *k;
    quay_config_scalar_t      s;

    for (i = 0; i < QUAY_CONFIG_NKEYS && !ctx->nomem; i++) {
        k = &quay_config_keys[i];

        switch (k->type) {

        case QUAY_CONFIG_REDIS:
            redis = QUAY_CONFIG_FIELD(ctx->cfg, k->offset,
                                      quay_redis_config_t);
            if (redis->host == NULL) {
                redis->host = quay_config_strndup(ctx, "localhost", 9);
            }

            break;

        case QUAY_CONFIG_LIST:
            list = QUAY_CONFIG_FIELD(ctx->cfg, k->offset, quay_strlist_t);
            if (ctx->seen[i] != 0 || list->n != 0 || k->def == NULL) {
                break;
            }

            for (p = k->def; *p != '\0'; p = *q ? q + 1 : q) {
                q = strchr(p, ',');
                if (q == NULL) {
                    q = p + strlen(p);
                }

                (void) quay_config_list_push(ctx, list, p, (size_t) (q - p));
            }

            break;

        case QUAY_CONFIG_STORAGE:
            break;

        default:
            if (ctx->seen[i] == 0 && k->def != NULL) {
                quay_config_scalar_from(&s, k->def);
                (void) quay_config_set_scalar(ctx, k, &s);
            }

            break;
        }
    }

    /* Quay needs the preference; one location leaves no choice. */
    if (ctx->cfg->storage_preference.n == 0 && ctx->cfg->nstorage == 1) {
        (void) quay_config_list_push(ctx, &ctx->cfg->storage_preference,
                                     ctx->cfg->storage[0].name,
                                     strlen(ctx->cfg->storage[0].name));
    }

    for (i = 0; i < QUAY_CONFIG_NKEYS && !ctx->nomem; i++) {
        k = &quay_config_keys[i];

        if ((k->flags & QUAY_CONFIG_REQUIRED) == 0 || ctx->seen[i] != 0) {
            continue;
        }

        if (k->type == QUAY_CONFIG_LIST
            && QUAY_CONFIG_FIELD(ctx->cfg, k->offset, quay_strlist_t)->n
               != 0)
        {
            continue;
        }

        if (k->type == QUAY_CONFIG_LIST && ctx->cfg->nstorage > 1) {
            quay_config_report(ctx, true, k->name, ctx->doc_line,
                               "is required when "
                               QUAY_CONFIG_STORAGE_KEY " has more than one "
                               "location");
        } else {
            quay_config_report(ctx, true, k->name, ctx->doc_line,
                               "is required");
        }
    }
}


/* Rules across keys: warnings only. */
static void
quay_config_cross_check(quay_config_ctx_t *ctx)
{
    size_t          index;
    quay_config_t  *cfg;

    cfg = ctx->cfg;

    if (cfg->external_tls_termination && cfg->preferred_url_scheme != NULL
        && strcmp(cfg->preferred_url_scheme, "https") != 0
        && quay_config_find("EXTERNAL_TLS_TERMINATION", 24, &index) != NULL)
    {
        quay_config_report(ctx, false, "EXTERNAL_TLS_TERMINATION",
                           ctx->seen[index],
                           "is true but PREFERRED_URL_SCHEME is not https; "
                           "generated URLs will say http");
    }

    if (cfg->authentication_type != NULL
        && strcmp(cfg->authentication_type, "Database") != 0
        && quay_config_find("AUTHENTICATION_TYPE", 19, &index) != NULL)
    {
        quay_config_report(ctx, false, "AUTHENTICATION_TYPE",
                           ctx->seen[index],
                           "%s is not supported yet; users are checked "
                           "against the database",
                           cfg->authentication_type);
    }
}


static void
quay_config_yaml_error(quay_config_ctx_t *ctx, const yaml_parser_t *parser,
    const char *text, size_t len)
{
    size_t       i;
    unsigned     line;
    const char  *problem;

    problem = parser->problem != NULL ? parser->problem : "unknown error";

    if (parser->error == YAML_MEMORY_ERROR) {
        ctx->nomem = true;
        return;
    }

    if (parser->error == YAML_READER_ERROR) {
        /* the reader has no mark; count lines up to the bad byte */
        line = 1;

        for (i = 0; i < parser->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
            }
        }

        quay_config_report(ctx, true, NULL, line,
                           "invalid YAML: %s at byte %zu", problem,
                           parser->problem_offset);
        return;
    }

    line = (unsigned) parser->problem_mark.line + 1;

    if (parser->context != NULL) {
        quay_config_report(ctx, true, NULL, line,
                           "invalid YAML: %s (%s at line %u)", problem,
                           parser->context,
                           (unsigned) parser->context_mark.line + 1);
    } else {
        quay_config_report(ctx, true, NULL, line, "invalid YAML: %s",
                           problem);
    }
}


quay_config_t *
quay_config_load_string(const char *text, size_t len,
    quay_config_report_pt report, void *report_ctx, quay_err_t *err)
{
    bool                loaded, more;
    yaml_node_t        *root;
    yaml_parser_t       parser;
    yaml_document_t     doc, next;
    quay_config_ctx_t   ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.report = report;
    ctx.report_ctx = report_ctx;
    ctx.err = err;
    ctx.doc = &doc;

    loaded = false;

    ctx.cfg = calloc(1, sizeof(quay_config_t));
    if (ctx.cfg == NULL) {
        (void) quay_err_set(err, QUAY_ENOMEM, "out of memory");
        return NULL;
    }

    ctx.cfg->buildlogs_redis.port = 6379;
    ctx.cfg->user_events_redis.port = 6379;

    if (!yaml_parser_initialize(&parser)) {
        ctx.nomem = true;
        goto done;
    }

    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);

    if (!yaml_parser_load(&parser, &doc)) {
        quay_config_yaml_error(&ctx, &parser, text, len);
        yaml_parser_delete(&parser);
        goto done;
    }

    loaded = true;

    /* A second document is a mistake (a stray "---"), and its syntax
     * errors must not go unreported either. */
    if (!yaml_parser_load(&parser, &next)) {
        quay_config_yaml_error(&ctx, &parser, text, len);
    } else {
        more = yaml_document_get_root_node(&next) != NULL;
        if (more) {
            quay_config_report(&ctx, true, NULL,
                               (unsigned) next.start_mark.line + 1,
                               "only one YAML document is allowed");
        }

        yaml_document_delete(&next);
    }

    yaml_parser_delete(&parser);

    root = yaml_document_get_root_node(&doc);

    if (root == NULL) {
        quay_config_report(&ctx, true, NULL, 0,
                           "the file is empty; expected a mapping of Quay "
                           "configuration keys");
        goto done;
    }

    if (root->type != YAML_MAPPING_NODE) {
        quay_config_report(&ctx, true, NULL, quay_config_line(root),
                           "the document must be a mapping of Quay "
                           "configuration keys (KEY: value), not %s",
                           quay_config_node_kind(root));
        goto done;
    }

    ctx.doc_line = quay_config_line(root);

    quay_config_walk(&ctx, root, 0);
    quay_config_walk(&ctx, root, 1);
    quay_config_env_preference(&ctx);
    quay_config_finish(&ctx);
    quay_config_cross_check(&ctx);

done:

    if (loaded) {
        yaml_document_delete(&doc);
    }

    if (ctx.nomem) {
        if (report != NULL) {
            report(report_ctx, true, NULL, 0, "out of memory");
        }

        if (ctx.nerrors == 0) {
            (void) quay_err_set(err, QUAY_ENOMEM, "out of memory");
        }

        ctx.nerrors++;
    }

    if (ctx.nerrors != 0) {
        quay_config_free(ctx.cfg);
        return NULL;
    }

    return ctx.cfg;
}


quay_config_t *
quay_config_load(const char *path, quay_config_report_pt report,
    void *report_ctx, quay_err_t *err)
{
    int                 saved;
    FILE               *f;
    char               *text, *grown;
    size_t              len, size, n;
    quay_config_t      *cfg;
    quay_config_ctx_t   ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.report = report;
    ctx.report_ctx = report_ctx;
    ctx.err = err;

    f = fopen(path, "r");
    if (f == NULL) {
        quay_config_report(&ctx, true, NULL, 0, "cannot open \"%s\": %s",
                           path, strerror(errno));
        return NULL;
    }

    text = NULL;
    len = 0;
    size = 0;

    for ( ;; ) {
        if (len == size) {
            size = size == 0 ? 4096 : size * 2;

            if (size > QUAY_CONFIG_MAX_FILE) {
                quay_config_report(&ctx, true, NULL, 0,
                                   "\"%s\" is larger than %d bytes", path,
                                   QUAY_CONFIG_MAX_FILE);
                goto failed;
            }

            grown = realloc(text, size);
            if (grown == NULL) {
                (void) quay_err_set(err, QUAY_ENOMEM, "out of memory");
                if (report != NULL) {
                    report(report_ctx, true, NULL, 0, "out of memory");
                }

                goto failed;
            }

            text = grown;
        }

        n = fread(text + len, 1, size - len, f);
        len += n;

        if (n == 0) {
            break;
        }
    }

    if (ferror(f)) {
        saved = errno;
        quay_config_report(&ctx, true, NULL, 0, "cannot read \"%s\": %s",
                           path, strerror(saved));
        goto failed;
    }

    (void) fclose(f);

    cfg = quay_config_load_string(text, len, report, report_ctx, err);
    free(text);

    return cfg;

failed:

    (void) fclose(f);
    free(text);

    return NULL;
}


void
quay_config_free(quay_config_t *cfg)
{
    size_t                    i;
    quay_redis_config_t      *redis;
    quay_storage_location_t  *loc;
    const quay_config_key_t  *k;

    if (cfg == NULL) {
        return;
    }

    for (i = 0; i < QUAY_CONFIG_NKEYS; i++) {
        k = &quay_config_keys[i];

        switch (k->type) {

        case QUAY_CONFIG_STRING:
        case QUAY_CONFIG_DURATION:
            free(*QUAY_CONFIG_FIELD(cfg, k->offset, char *));
            break;

        case QUAY_CONFIG_LIST:
            quay_config_list_free(QUAY_CONFIG_FIELD(cfg, k->offset,
                                                    quay_strlist_t));
            break;

        case QUAY_CONFIG_REDIS:
            redis = QUAY_CONFIG_FIELD(cfg, k->offset, quay_redis_config_t);
            free(redis->host);
            free(redis->password);
            free(redis->username);
            break;

        default:
            break;
        }
    }

    for (i = 0; i < cfg->nstorage; i++) {
        loc = &cfg->storage[i];
        free(loc->name);
        free(loc->storage_path);
        free(loc->bucket);
        free(loc->access_key);
        free(loc->secret_key);
        free(loc->region);
        free(loc->host);
        free(loc->endpoint_url);
        free(loc->session_token);
    }

    free(cfg->storage);
    free(cfg);
}


bool
quay_strlist_contains(const quay_strlist_t *list, const char *name,
    size_t len)
{
    for (size_t i = 0; i < list->n; i++) {
        if (strlen(list->items[i]) == len
            && memcmp(list->items[i], name, len) == 0)
        {
            return true;
        }
    }

    return false;
}


const quay_storage_location_t *
quay_config_location(const quay_config_t *cfg, const char *name)
{
    size_t  i;

    if (cfg == NULL || name == NULL) {
        return NULL;
    }

    for (i = 0; i < cfg->nstorage; i++) {
        if (strcmp(cfg->storage[i].name, name) == 0) {
            return &cfg->storage[i];
        }
    }

    return NULL;
}


const quay_storage_location_t *
quay_config_preferred_location(const quay_config_t *cfg)
{
    if (cfg == NULL || cfg->storage_preference.n == 0) {
        return NULL;
    }

    return quay_config_location(cfg, cfg->storage_preference.items[0]);
}


/* Checks named in quay_config_keys[]. */

static bool
quay_config_is_digits(const char *p, size_t len)
{
    size_t  i;

    if (len == 0) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }

    return true;
}


/* host[:port], [v6]:port; no scheme, path or spaces. */
static const char *
quay_config_check_hostname(quay_config_ctx_t *ctx, const char *value)
{
    long         port;
    size_t       i;
    const char  *colon, *end;
    static const char  msg[] = "must be host[:port] without a scheme or "
                               "path, e.g. registry.example.com:8080";

    (void) ctx;

    if (*value == '\0') {
        return "must not be empty";
    }

    for (i = 0; value[i] != '\0'; i++) {
        if (value[i] == '/' || value[i] == ' ' || value[i] == '\t'
            || value[i] == '@' || value[i] == '?' || value[i] == '#')
        {
            return msg;
        }
    }

    if (value[0] == '[') {
        end = strchr(value, ']');
        if (end == NULL || end == value + 1) {
            return msg;
        }

        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] != '\0' && colon == NULL) {
            return msg;
        }

    } else {
        colon = strchr(value, ':');
        if (colon == value || (colon != NULL && strchr(colon + 1, ':'))) {
            return msg;
        }
    }

    if (colon != NULL) {
        if (!quay_config_is_digits(colon + 1, strlen(colon + 1))
            || strlen(colon + 1) > 5)
        {
            return msg;
        }

        port = strtol(colon + 1, NULL, 10);
        if (port < 1 || port > 65535) {
            return "has a port outside 1-65535";
        }
    }

    return NULL;
}


static const char *
quay_config_check_scheme(quay_config_ctx_t *ctx, const char *value)
{
    (void) ctx;

    if (strcmp(value, "http") == 0 || strcmp(value, "https") == 0) {
        return NULL;
    }

    return "must be http or https";
}


static const char *
quay_config_check_state(quay_config_ctx_t *ctx, const char *value)
{
    (void) ctx;

    if (strcmp(value, "normal") == 0 || strcmp(value, "readonly") == 0) {
        return NULL;
    }

    return "must be normal or readonly";
}


static const char *
quay_config_check_db_uri(quay_config_ctx_t *ctx, const char *value)
{
    (void) ctx;

    if ((strncmp(value, "postgresql://", 13) == 0 && value[13] != '\0')
        || (strncmp(value, "postgres://", 11) == 0 && value[11] != '\0'))
    {
        return NULL;
    }

    return "must be a PostgreSQL URI, "
           "postgresql://user:password@host:5432/database";
}


/* Quay's values (util/config/schema.py); only Database is implemented. */
static const char *
quay_config_check_auth(quay_config_ctx_t *ctx, const char *value)
{
    size_t             i;
    static const char  *types[] = { "Database", "LDAP", "JWT", "Keystone",
                                    "OIDC", "AppToken" };

    (void) ctx;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(value, types[i]) == 0) {
            return NULL;
        }
    }

    return "must be one of Database, LDAP, JWT, Keystone, OIDC, AppToken";
}


/* A Fernet key: 32 bytes in URL-safe base64, so 44 characters. */
static const char *
quay_config_check_fernet(quay_config_ctx_t *ctx, const char *value)
{
    size_t  i;

    (void) ctx;

    if (strlen(value) != 44 || value[43] != '=') {
        goto invalid;
    }

    for (i = 0; i < 43; i++) {
        if (!((value[i] >= 'A' && value[i] <= 'Z')
              || (value[i] >= 'a' && value[i] <= 'z')
              || (value[i] >= '0' && value[i] <= '9')
              || value[i] == '-' || value[i] == '_'))
        {
            goto invalid;
        }
    }

    return NULL;

invalid:

    return "must be a Fernet key: 32 bytes in URL-safe base64 "
           "(44 characters)";
}


/*
 * Quay's user and namespace names: ^[a-z0-9]+(?:[._-][a-z0-9]+)*$, 2 to
 * 255 characters (util/validation.py).
 */
static bool
quay_config_is_username(const char *value)
{
    size_t  i, len;
    bool    after_separator;

    len = strlen(value);

    if (len < 2 || len > 255) {
        return false;
    }

    after_separator = true;

    for (i = 0; i < len; i++) {
        if ((value[i] >= 'a' && value[i] <= 'z')
            || (value[i] >= '0' && value[i] <= '9'))
        {
            after_separator = false;

        } else if ((value[i] == '.' || value[i] == '_' || value[i] == '-')
                   && !after_separator)
        {
            after_separator = true;

        } else {
            return false;
        }
    }

    return !after_separator;
}


static const char *
quay_config_check_namespace(quay_config_ctx_t *ctx, const char *value)
{
    (void) ctx;

    return quay_config_is_username(value)
           ? NULL : "must be a valid namespace name (lowercase letters "
                    "and digits, separated by . _ or -)";
}


static const char *
quay_config_check_username(quay_config_ctx_t *ctx, const char *value)
{
    (void) ctx;

    return quay_config_is_username(value)
           ? NULL : "is not a valid Quay user name (2 to 255 lowercase "
                    "letters and digits, separated by . _ or -)";
}


static const char *
quay_config_check_duration(quay_config_ctx_t *ctx, const char *value)
{
    int64_t  v;

    (void) ctx;

    switch (quay_duration_parse(value, strlen(value), &v)) {
    case QUAY_OK:
        return NULL;
    case QUAY_ERANGE:
        return "is too large";
    default:
        return "is not a duration: a number followed by w, d, h, m or s";
    }
}


static const char *
quay_config_check_location(quay_config_ctx_t *ctx, const char *value)
{
    if (!ctx->locations_known
        || quay_config_location(ctx->cfg, value) != NULL)
    {
        return NULL;
    }

    return "is not a location in " QUAY_CONFIG_STORAGE_KEY;
}
