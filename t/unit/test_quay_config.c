/*
 * Unit tests for lib/quay_config.c and lib/quay_units.c.  Each case loads
 * a config.yaml from a string, captures every report through the callback
 * and checks the key, the line and the message, because those are what a
 * user sees from "quayctl config validate" and nginx -t.  Built with ASan
 * as well, so a leak on any path (success or error) fails the run.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "quay_config.h"
#include "quay_err.h"
#include "quay_units.h"


typedef struct {
    bool       is_error;
    char      *key;
    unsigned   line;
    char      *msg;
} report_t;


static report_t  reports[64];
static size_t    nreports;
static size_t    nerrors;
static quay_err_t  err;


static void
capture(void *ctx, bool is_error, const char *key, unsigned line,
    const char *msg)
{
    report_t  *r;

    (void) ctx;

    if (is_error) {
        nerrors++;
    }

    if (nreports == sizeof(reports) / sizeof(reports[0])) {
        return;
    }

    r = &reports[nreports++];
    r->is_error = is_error;
    r->key = key != NULL ? strdup(key) : NULL;
    r->line = line;
    r->msg = strdup(msg);
}


static void
reset(void)
{
    size_t  i;

    for (i = 0; i < nreports; i++) {
        free(reports[i].key);
        free(reports[i].msg);
    }

    nreports = 0;
    nerrors = 0;
    memset(&err, 0, sizeof(err));
}


static quay_config_t *
load(const char *text)
{
    reset();
    return quay_config_load_string(text, strlen(text), capture, NULL, &err);
}


/* Is there a report with this severity, key, line and message part? */
static bool
find(bool is_error, const char *key, unsigned line, const char *part)
{
    size_t     i;
    report_t  *r;

    for (i = 0; i < nreports; i++) {
        r = &reports[i];

        if (r->is_error == is_error
            && ((key == NULL && r->key == NULL)
                || (key != NULL && r->key != NULL
                    && strcmp(key, r->key) == 0))
            && r->line == line && strstr(r->msg, part) != NULL)
        {
            return true;
        }
    }

    return false;
}


/* find(), and on failure show what was reported. */
static bool
has(bool is_error, const char *key, unsigned line, const char *part)
{
    size_t  i;

    if (find(is_error, key, line, part)) {
        return true;
    }

    for (i = 0; i < nreports; i++) {
        printf("#   report: %s %s line %u: %s\n",
               reports[i].is_error ? "error" : "warning",
               reports[i].key ? reports[i].key : "(null)", reports[i].line,
               reports[i].msg);
    }

    return false;
}


#define BASE                                                                  \
    "SERVER_HOSTNAME: registry.example.com:8443\n"                            \
    "DB_URI: postgresql://quay:secret@127.0.0.1:5432/quay\n"                  \
    "DISTRIBUTED_STORAGE_CONFIG:\n"                                           \
    "  default: [LocalStorage, {storage_path: /var/lib/quay/storage}]\n"

/* BASE ends on line 4; keys appended start at line 5. */


static void
test_units(void)
{
    int64_t  v;

    ok(quay_duration_parse("2w", 2, &v) == QUAY_OK && v == 1209600,
       "duration 2w is 1209600 s");
    ok(quay_duration_parse("30m", 3, &v) == QUAY_OK && v == 1800,
       "duration 30m is minutes");
    ok(quay_duration_parse("1d", 2, &v) == QUAY_OK && v == 86400,
       "duration 1d");
    ok(quay_duration_parse("2W", 2, &v) == QUAY_EINVAL
       && quay_duration_parse("w", 1, &v) == QUAY_EINVAL
       && quay_duration_parse("12", 2, &v) == QUAY_EINVAL
       && quay_duration_parse("-1d", 3, &v) == QUAY_EINVAL,
       "durations outside ^[0-9]+(w|m|d|h|s)$ are refused");
    ok(quay_duration_parse("99999999999999999999w", 21, &v) == QUAY_ERANGE,
       "duration overflow is ERANGE");
    ok(quay_size_parse("20G", 3, &v) == QUAY_OK && v == 21474836480LL,
       "size 20G");
    ok(quay_size_parse("512m", 4, &v) == QUAY_OK && v == 536870912,
       "size 512m");
    ok(quay_size_parse("4096", 4, &v) == QUAY_OK && v == 4096,
       "size in plain bytes");
    ok(quay_size_parse("G", 1, &v) == QUAY_EINVAL
       && quay_size_parse("1.5G", 4, &v) == QUAY_EINVAL
       && quay_size_parse("9999999999T", 11, &v) == QUAY_ERANGE,
       "bad sizes are refused");
}


static void
test_minimal(void)
{
    quay_config_t                   *cfg;
    const quay_storage_location_t   *loc;

    cfg = load(BASE);
    ok(cfg != NULL, "minimal config loads");
    if (cfg == NULL) {
        printf("#   %s\n", err.msg);
        return;
    }

    is_int(nreports, 0, "minimal config has no warnings");
    is_str(cfg->server_hostname, "registry.example.com:8443",
           "SERVER_HOSTNAME");
    is_str(cfg->db_uri, "postgresql://quay:secret@127.0.0.1:5432/quay",
           "DB_URI");
    is_str(cfg->preferred_url_scheme, "http", "PREFERRED_URL_SCHEME default");
    is_str(cfg->registry_state, "normal", "REGISTRY_STATE default");
    is_str(cfg->authentication_type, "Database", "AUTHENTICATION_TYPE");
    is_str(cfg->registry_title, "Project Quay", "REGISTRY_TITLE default");
    ok(cfg->feature_anonymous_access && cfg->feature_user_creation
       && cfg->feature_garbage_collection && cfg->feature_referrers_api
       && cfg->feature_general_oci_support && cfg->create_private_repo_on_push
       && cfg->feature_library_support && cfg->repo_mirror_tls_verify,
       "features that default to true");
    ok(!cfg->feature_proxy_storage && !cfg->feature_repo_mirror
       && !cfg->feature_quota_management && !cfg->feature_auto_prune
       && !cfg->create_namespace_on_push && !cfg->disable_pushes
       && !cfg->external_tls_termination,
       "features that default to false");
    is_str(cfg->default_tag_expiration, "2w", "DEFAULT_TAG_EXPIRATION 2w");
    is_int(cfg->default_tag_expiration_s, 14 * 86400,
           "default_tag_expiration_s derived");
    ok(cfg->tag_expiration_options.n == 5
       && strcmp(cfg->tag_expiration_options.items[0], "0s") == 0
       && strcmp(cfg->tag_expiration_options.items[4], "4w") == 0,
       "TAG_EXPIRATION_OPTIONS default");
    is_int(cfg->maximum_layer_size, 20LL << 30, "MAXIMUM_LAYER_SIZE 20G");
    is_int(cfg->v2_pagination_size, 50, "V2_PAGINATION_SIZE default");
    is_int(cfg->push_temp_tag_expiration_sec, 3600,
           "PUSH_TEMP_TAG_EXPIRATION_SEC default");
    is_int(cfg->blobupload_deletion_date_threshold, 2880,
           "BLOBUPLOAD_DELETION_DATE_THRESHOLD default");
    is_int(cfg->registry_jwt_auth_max_fresh_s, 3660,
           "REGISTRY_JWT_AUTH_MAX_FRESH_S default");
    ok(cfg->garbage_collection_frequency == 30
       && cfg->repo_mirror_interval == 30, "worker intervals default to 30");
    ok(strcmp(cfg->buildlogs_redis.host, "localhost") == 0
       && cfg->buildlogs_redis.port == 6379
       && cfg->user_events_redis.password == NULL,
       "redis defaults");
    ok(cfg->super_users.n == 0 && cfg->storage_default_locations.n == 0,
       "lists default to empty");

    is_int(cfg->nstorage, 1, "one storage location");
    ok(cfg->storage_preference.n == 1
       && strcmp(cfg->storage_preference.items[0], "default") == 0,
       "single location becomes the preference");
    loc = quay_config_preferred_location(cfg);
    ok(loc != NULL && loc->driver == QUAY_STORAGE_LOCAL
       && strcmp(loc->storage_path, "/var/lib/quay/storage") == 0,
       "preferred location is the LocalStorage one");
    ok(quay_config_location(cfg, "nope") == NULL, "unknown location is NULL");

    quay_config_free(cfg);
}


static void
test_full(void)
{
    quay_config_t                   *cfg;
    const quay_storage_location_t   *s3, *rados;

    cfg = load(BASE
        "  s3: [S3Storage, {s3_bucket: b, s3_access_key: AK,\n"
        "       s3_secret_key: SK, endpoint_url: 'http://127.0.0.1:7480',\n"
        "       storage_path: /registry, maximum_chunk_size_gb: 1}]\n"
        "  ceph:\n"
        "    - RadosGWStorage\n"
        "    - hostname: 127.0.0.1\n"
        "      port: 7480\n"
        "      is_secure: false\n"
        "      access_key: AK\n"
        "      secret_key: SK\n"
        "      bucket_name: quay\n"
        "DISTRIBUTED_STORAGE_PREFERENCE: [s3, default]\n"
        "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: [default]\n"
        "PREFERRED_URL_SCHEME: https\n"
        "EXTERNAL_TLS_TERMINATION: yes\n"
        "FEATURE_REPO_MIRROR: true\n"
        "FEATURE_PROXY_STORAGE: True\n"
        "DEFAULT_TAG_EXPIRATION: 30m\n"
        "MAXIMUM_LAYER_SIZE: 512M\n"
        "V2_PAGINATION_SIZE: 100\n"
        "SUPER_USERS: [admin, ops.team]\n"
        "BUILDLOGS_REDIS: {host: 127.0.0.1, port: 6380, password: pw}\n"
        "USER_EVENTS_REDIS:\n"
        "  host: 127.0.0.1\n"
        "  ssl: true\n"
        "SETUP_COMPLETE: true\n"
        "TAG_EXPIRATION_OPTIONS: [1d, 2w]\n"
        "FEATURE_MAILING: false\n"
        "DATA_MODEL_CACHE_CONFIG: {engine: redis}\n"
        "DB_CONNECTION_ARGS: {sslmode: disable}\n"
        "ENTERPRISE_LOGO_URL: /static/logo.svg\n"
        "KEYCLOAK_LOGIN_CONFIG: {CLIENT_ID: x}\n"
        "REGISTRY_TITLE:\n");

    ok(cfg != NULL, "full config loads");
    if (cfg == NULL) {
        printf("#   %s\n", err.msg);
        return;
    }

    is_int(nreports, 0, "known-but-ignored Quay keys are silent");
    is_int(cfg->nstorage, 3, "three locations");
    s3 = quay_config_preferred_location(cfg);
    ok(s3 != NULL && s3->driver == QUAY_STORAGE_S3
       && strcmp(s3->bucket, "b") == 0 && strcmp(s3->access_key, "AK") == 0
       && strcmp(s3->storage_path, "/registry") == 0 && !s3->is_secure
       && s3->maximum_chunk_size == (1LL << 30)
       && s3->minimum_chunk_size == (5LL << 20),
       "S3 location parameters, http endpoint is not secure");
    rados = quay_config_location(cfg, "ceph");
    ok(rados != NULL && rados->driver == QUAY_STORAGE_RADOSGW
       && strcmp(rados->host, "127.0.0.1") == 0 && rados->port == 7480
       && !rados->is_secure && strcmp(rados->bucket, "quay") == 0
       && strcmp(rados->storage_path, "") == 0
       && rados->maximum_chunk_size == (100LL << 20)
       && rados->server_side_assembly,
       "RadosGW location parameters and defaults");
    ok(cfg->external_tls_termination && cfg->feature_repo_mirror
       && cfg->feature_proxy_storage, "YAML 1.1 booleans (yes, True)");
    is_int(cfg->default_tag_expiration_s, 1800, "30m is 1800 s");
    is_int(cfg->maximum_layer_size, 512LL << 20, "512M in bytes");
    ok(cfg->super_users.n == 2
       && strcmp(cfg->super_users.items[1], "ops.team") == 0,
       "SUPER_USERS");
    ok(cfg->buildlogs_redis.port == 6380
       && strcmp(cfg->buildlogs_redis.password, "pw") == 0
       && cfg->user_events_redis.ssl
       && cfg->user_events_redis.port == 6379,
       "redis maps");
    ok(cfg->tag_expiration_options.n == 2, "TAG_EXPIRATION_OPTIONS given");
    is_str(cfg->registry_title, "Project Quay", "null value keeps default");

    quay_config_free(cfg);
}


static void
test_unknown_keys(void)
{
    quay_config_t  *cfg;

    cfg = load(BASE
        "FEATURE_PROXY_STORGE: true\n"
        "server_hostname: x\n"
        "TOTALLY_MADE_UP_THING: 1\n");
    ok(cfg != NULL, "unknown keys are not errors");
    ok(has(false, "FEATURE_PROXY_STORGE", 5,
           "unknown key, ignored (did you mean FEATURE_PROXY_STORAGE?)"),
       "misspelled key: warning with suggestion and line");
    ok(has(false, "server_hostname", 6, "did you mean SERVER_HOSTNAME?"),
       "wrong case gets a suggestion");
    ok(has(false, "TOTALLY_MADE_UP_THING", 7, "unknown key, ignored")
       && strstr(reports[2].msg, "did you mean") == NULL,
       "no suggestion when nothing is close");
    quay_config_free(cfg);
}


static void
test_errors(void)
{
    quay_config_t  *cfg;

    cfg = load("DB_URI: postgresql://127.0.0.1/quay\n"
               "DISTRIBUTED_STORAGE_CONFIG:\n"
               "  default: [LocalStorage, {storage_path: /s}]\n");
    ok(cfg == NULL && has(true, "SERVER_HOSTNAME", 1, "is required"),
       "missing SERVER_HOSTNAME is an error");
    is_str(err.msg, "SERVER_HOSTNAME (line 1): is required",
           "err holds KEY (line N): msg");

    cfg = load(BASE "FEATURE_REPO_MIRROR: yes please\n");
    ok(cfg == NULL
       && has(true, "FEATURE_REPO_MIRROR", 5,
              "must be a boolean (true or false)"),
       "bad bool names key and line");
    is_str(err.msg,
           "FEATURE_REPO_MIRROR (line 5): must be a boolean (true or false)",
           "first error message for bad bool");

    cfg = load(BASE "FEATURE_USER_CREATION: \"false\"\n");
    ok(cfg == NULL && has(true, "FEATURE_USER_CREATION", 5, "quoted"),
       "quoted boolean is refused");

    cfg = load(BASE "V2_PAGINATION_SIZE: 0\n");
    ok(cfg == NULL
       && has(true, "V2_PAGINATION_SIZE", 5, "must be between 1 and 10000"),
       "integer below bounds");

    cfg = load(BASE "GARBAGE_COLLECTION_FREQUENCY: often\n");
    ok(cfg == NULL
       && has(true, "GARBAGE_COLLECTION_FREQUENCY", 5, "must be an integer"),
       "integer that is not a number");

    cfg = load(BASE "MAXIMUM_LAYER_SIZE: 20 GB\n");
    ok(cfg == NULL && has(true, "MAXIMUM_LAYER_SIZE", 5, "must be a size"),
       "bad size");

    cfg = load(BASE "DEFAULT_TAG_EXPIRATION: 2 weeks\n");
    ok(cfg == NULL
       && has(true, "DEFAULT_TAG_EXPIRATION", 5, "must be a duration"),
       "bad duration");

    cfg = load(BASE "TAG_EXPIRATION_OPTIONS:\n  - 1d\n  - 1y\n");
    ok(cfg == NULL
       && has(true, "TAG_EXPIRATION_OPTIONS", 7, "entry \"1y\""),
       "bad duration in a list names the entry and its line");

    cfg = load(BASE "DB_URI: mysql://x\n");
    ok(cfg == NULL && has(true, "DB_URI", 5, "duplicate key (first given at "
                          "line 2)"),
       "duplicate key is an error at the second occurrence");

    cfg = load("SERVER_HOSTNAME: https://registry.example.com/\n"
               "DB_URI: mysql://quay@127.0.0.1/quay\n"
               "PREFERRED_URL_SCHEME: ftp\n"
               "REGISTRY_STATE: broken\n"
               "SUPER_USERS: [Admin]\n"
               "BUILDLOGS_REDIS: {host: 127.0.0.1, port: 70000, pssword: x}\n"
               "USER_EVENTS_REDIS: 127.0.0.1\n"
               "DISTRIBUTED_STORAGE_CONFIG:\n"
               "  default: [LocalStorage, {storage_path: /s}]\n");
    ok(cfg == NULL && has(true, "SERVER_HOSTNAME", 1, "without a scheme"),
       "SERVER_HOSTNAME with a scheme");
    ok(has(true, "DB_URI", 2, "must be a PostgreSQL URI")
       && strstr(err.msg, "mysql") == NULL,
       "DB_URI not postgres, value not echoed");
    ok(has(true, "PREFERRED_URL_SCHEME", 3, "must be http or https"),
       "PREFERRED_URL_SCHEME");
    ok(has(true, "REGISTRY_STATE", 4, "must be normal or readonly"),
       "REGISTRY_STATE");
    ok(has(true, "SUPER_USERS", 5, "entry \"Admin\" is not a valid"),
       "SUPER_USERS entry");
    ok(has(true, "BUILDLOGS_REDIS.port", 6, "must be between 1 and 65535")
       && has(false, "BUILDLOGS_REDIS.pssword", 6, "did you mean password?"),
       "redis port bounds and unknown redis parameter");
    ok(has(true, "USER_EVENTS_REDIS", 7, "must be a mapping"),
       "redis must be a mapping");
}


static void
test_yaml(void)
{
    quay_config_t  *cfg;

    cfg = load(BASE "FEATURE_X: [1, 2\n");
    ok(cfg == NULL && nerrors == 1 && reports[0].key == NULL
       && reports[0].line >= 5 && strstr(reports[0].msg, "invalid YAML"),
       "YAML syntax error with line and libyaml's problem");
    ok(strncmp(err.msg, "line ", 5) == 0, "syntax error message has a line");

    cfg = load("");
    ok(cfg == NULL && has(true, NULL, 0, "empty"), "empty file");

    cfg = load("# only a comment\n");
    ok(cfg == NULL && has(true, NULL, 0, "empty"), "comment-only file");

    cfg = load("- SERVER_HOSTNAME\n- DB_URI\n");
    ok(cfg == NULL && has(true, NULL, 1, "must be a mapping"),
       "a list document is refused");

    cfg = load(BASE "FOO: \xff\n");
    ok(cfg == NULL && has(true, NULL, 5, "invalid leading UTF-8 octet"),
       "invalid UTF-8 is reported with its line");

    cfg = load(BASE "---\nFOO: 1\n");
    ok(cfg == NULL && has(true, NULL, 5, "only one YAML document"),
       "a second document is refused");
}


static void
test_storage(void)
{
    quay_config_t  *cfg;

    cfg = load("SERVER_HOSTNAME: r\nDB_URI: postgres://h/q\n"
               "DISTRIBUTED_STORAGE_CONFIG:\n"
               "  default: [LocalStorage, {}]\n");
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_CONFIG.default.storage_path", 4,
              "is required for LocalStorage"),
       "LocalStorage without storage_path");
    is_str(err.msg, "DISTRIBUTED_STORAGE_CONFIG.default.storage_path "
           "(line 4): is required for LocalStorage",
           "storage error message names location and parameter");

    cfg = load("SERVER_HOSTNAME: r\nDB_URI: postgres://h/q\n"
               "DISTRIBUTED_STORAGE_CONFIG:\n"
               "  default: [LocalStorage, {storage_path: data, "
               "storage_pth: /x}]\n");
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_CONFIG.default.storage_path", 4,
              "must be an absolute path")
       && has(false, "DISTRIBUTED_STORAGE_CONFIG.default.storage_pth", 4,
              "did you mean storage_path?"),
       "relative storage_path, unknown parameter warned");

    cfg = load("SERVER_HOSTNAME: r\nDB_URI: postgres://h/q\n"
               "DISTRIBUTED_STORAGE_CONFIG:\n"
               "  swift: [SwiftStorage, {swift_container: c}]\n"
               "  bad: LocalStorage\n"
               "  s3: [S3Storage, {s3_access_key: a, s3_secret_key: s}]\n"
               "  ceph: [RadosGWStorage, {hostname: 'http://c', "
               "access_key: a, secret_key: s}]\n"
               "DISTRIBUTED_STORAGE_PREFERENCE: [s3, nowhere]\n");
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_CONFIG.swift", 4,
              "unsupported storage driver SwiftStorage"),
       "unsupported driver");
    ok(has(true, "DISTRIBUTED_STORAGE_CONFIG.bad", 5,
           "[DriverName, {parameters}]"),
       "entry that is not a two-element list");
    ok(has(true, "DISTRIBUTED_STORAGE_CONFIG.s3.s3_bucket", 6,
           "is required for S3Storage")
       && has(true, "DISTRIBUTED_STORAGE_CONFIG.s3", 6,
              "needs host, endpoint_url or s3_region"),
       "S3Storage without bucket or endpoint");
    ok(has(true, "DISTRIBUTED_STORAGE_CONFIG.ceph.bucket_name", 7,
           "is required for RadosGWStorage")
       && has(true, "DISTRIBUTED_STORAGE_CONFIG.ceph.hostname", 7,
              "without a scheme"),
       "RadosGWStorage without bucket, hostname with a scheme");
    ok(has(true, "DISTRIBUTED_STORAGE_PREFERENCE", 8, "entry \"nowhere\" "
           "is not a location in DISTRIBUTED_STORAGE_CONFIG")
       && !find(true, "DISTRIBUTED_STORAGE_PREFERENCE", 8, "\"s3\""),
       "preference names an unknown location, broken locations still "
       "count as named");

    /* preference before the storage config in the file */
    cfg = load("DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: [eu]\n" BASE);
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS", 1,
              "entry \"eu\" is not a location"),
       "location lists are checked wherever they appear");

    cfg = load(BASE "  other: [LocalStorage, {storage_path: /o}]\n");
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_PREFERENCE", 1,
              "is required when DISTRIBUTED_STORAGE_CONFIG has more than "
              "one location"),
       "two locations need a preference");

    cfg = load("SERVER_HOSTNAME: r\nDB_URI: postgres://h/q\n");
    ok(cfg == NULL
       && has(true, "DISTRIBUTED_STORAGE_CONFIG", 1, "is required")
       && has(true, "DISTRIBUTED_STORAGE_PREFERENCE", 1, "is required"),
       "missing storage config");
}


static void
test_env(void)
{
    quay_config_t                   *cfg;
    const quay_storage_location_t   *loc;
    static const char                two[] = BASE
        "  other: [LocalStorage, {storage_path: /o}]\n"
        "DISTRIBUTED_STORAGE_PREFERENCE: [default]\n";

    (void) setenv("QUAY_DISTRIBUTED_STORAGE_PREFERENCE", " other, default",
                  1);
    cfg = load(two);
    loc = quay_config_preferred_location(cfg);
    ok(cfg != NULL && loc != NULL && strcmp(loc->name, "other") == 0
       && cfg->storage_preference.n == 2,
       "environment overrides DISTRIBUTED_STORAGE_PREFERENCE");
    quay_config_free(cfg);

    (void) setenv("QUAY_DISTRIBUTED_STORAGE_PREFERENCE", "moon", 1);
    cfg = load(two);
    ok(cfg == NULL
       && has(true, "QUAY_DISTRIBUTED_STORAGE_PREFERENCE", 0, "\"moon\""),
       "environment naming an unknown location is an error");
    is_str(err.msg, "QUAY_DISTRIBUTED_STORAGE_PREFERENCE: names \"moon\", "
           "which is not a location in DISTRIBUTED_STORAGE_CONFIG",
           "error message names the variable");

    (void) setenv("QUAY_DISTRIBUTED_STORAGE_PREFERENCE", " , ", 1);
    cfg = load(two);
    ok(cfg == NULL
       && has(true, "QUAY_DISTRIBUTED_STORAGE_PREFERENCE", 0, "names no"),
       "empty environment override is an error");

    (void) unsetenv("QUAY_DISTRIBUTED_STORAGE_PREFERENCE");
}


static void
test_file(void)
{
    FILE           *f;
    char            path[] = "/tmp/test_quay_config_XXXXXX";
    int             fd;
    quay_config_t  *cfg;

    fd = mkstemp(path);
    ok(fd >= 0, "temp file");
    if (fd < 0) {
        return;
    }

    f = fdopen(fd, "w");
    fputs(BASE, f);
    fclose(f);

    reset();
    cfg = quay_config_load(path, capture, NULL, &err);
    ok(cfg != NULL && cfg->nstorage == 1, "loads from a file");
    quay_config_free(cfg);
    unlink(path);

    reset();
    cfg = quay_config_load(path, capture, NULL, &err);
    ok(cfg == NULL && strstr(err.msg, "No such file") != NULL
       && strstr(err.msg, path) != NULL,
       "missing file: error names the path and the reason");

    reset();
    cfg = quay_config_load(path, NULL, NULL, NULL);
    ok(cfg == NULL, "no callback and no err buffer is fine");
}


int
main(void)
{
    (void) unsetenv("QUAY_DISTRIBUTED_STORAGE_PREFERENCE");

    test_units();
    test_minimal();
    test_full();
    test_unknown_keys();
    test_errors();
    test_yaml();
    test_storage();
    test_env();
    test_file();

    reset();
    quay_config_free(NULL);

    return done_testing();
}
