/*
 * quayctl user: creates a user account or resets its password, for the
 * first administrator of a scripted setup and for locked-out users.
 *
 *   quayctl user create NAME (--config FILE | --db-uri URI) [--email EMAIL]
 *                       --password-stdin [--if-not-exists] [--superuser]
 *   quayctl user passwd NAME (--config FILE | --db-uri URI) --password-stdin
 *
 * The password is the first line of standard input (never an argument,
 * which other users could read in /proc), at least 8 characters, hashed
 * with lib/quay_password.c before the database is contacted; the buffer is
 * wiped afterwards.  NAME follows Quay's namespace rule
 * (util/validation.py): ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, 2 to 255
 * characters.  A new user is verified and enabled, gets a random UUID v4,
 * NAME@localhost unless --email is given, and the namespace's time-machine
 * window from DEFAULT_TAG_EXPIRATION when --config is given.  Each change
 * and its audit log entry (user_create, user_change_password) are one
 * statement, so both happen or neither.
 *
 * Superusers are not a database flag in Quay: they are the SUPER_USERS
 * list of config.yaml.  --superuser only checks that list and says so.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "quay_config.h"
#include "quay_password.h"
#include "quayctl.h"


#define USER_NAME_MIN        2
#define USER_NAME_MAX        255
#define USER_EMAIL_MAX       255
#define USER_PASSWORD_MIN    8          /* characters */
#define USER_PASSWORD_MAX    4096       /* bytes */


/*
 * $1 uuid, $2 username, $3 password_hash, $4 email,
 * $5 removed_tag_expiration_s or NULL for the column default (2w).
 * Returns the new id, or no row when the username exists.
 */
static const char  user_sql_create[] =
    "WITH new_user AS ("
    "  INSERT INTO \"user\" (uuid, username, password_hash, email, verified,"
    "                      enabled, removed_tag_expiration_s)"
    "  VALUES ($1, $2, $3, $4, true, true, COALESCE($5::bigint, 1209600))"
    "  ON CONFLICT (username) DO NOTHING"
    "  RETURNING id)"
    " INSERT INTO logentry (kind_id, account_id, performer_id, metadata_json)"
    " SELECT (SELECT id FROM logentrykind WHERE name = 'user_create'),"
    "        id, NULL,"
    "        jsonb_build_object('username', $2::text, 'source', 'quayctl')"
    " FROM new_user"
    " RETURNING account_id";

static const char  user_sql_lookup[] =
    "SELECT organization, robot FROM \"user\" WHERE username = $1";

/* $1 username, $2 password_hash.  No row: no such user. */
static const char  user_sql_passwd[] =
    "WITH changed AS ("
    "  UPDATE \"user\" SET password_hash = $2, invalid_login_attempts = 0"
    "  WHERE username = $1 AND NOT organization AND NOT robot"
    "  RETURNING id)"
    " INSERT INTO logentry (kind_id, account_id, performer_id, metadata_json)"
    " SELECT (SELECT id FROM logentrykind"
    "         WHERE name = 'user_change_password'),"
    "        id, NULL,"
    "        jsonb_build_object('username', $1::text, 'source', 'quayctl')"
    " FROM changed"
    " RETURNING account_id";


typedef struct {
    const char  *command;           /* "create" or "passwd" */
    const char  *name;
    const char  *config_path;
    const char  *db_uri;
    const char  *email;
    bool         password_stdin;
    bool         if_not_exists;
    bool         superuser;
} user_args_t;


static void
user_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl user create NAME (--config FILE | --db-uri URI)\n"
        "                           [--email EMAIL] --password-stdin\n"
        "                           [--if-not-exists] [--superuser]\n"
        "       quayctl user passwd NAME (--config FILE | --db-uri URI)\n"
        "                           --password-stdin\n"
        "The password is the first line of standard input.\n");
}


/* Quay's ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, length 2..255. */
static bool
user_valid_name(const char *name)
{
    size_t  len = strlen(name);
    bool    after_separator = true;  /* the first char must be [a-z0-9] */

    if (len < USER_NAME_MIN || len > USER_NAME_MAX) {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        char  c = name[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            after_separator = false;

        } else if ((c == '.' || c == '_' || c == '-') && !after_separator) {
            after_separator = true;

        } else {
            return false;
        }
    }

    return !after_separator;
}


/* One '@' with text on both sides; no spaces or control characters. */
static bool
user_valid_email(const char *email)
{
    const char  *at = strchr(email, '@');
    size_t       len = strlen(email);

    if (len > USER_EMAIL_MAX || at == NULL || at == email || at[1] == '\0'
        || strchr(at + 1, '@') != NULL)
    {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        if ((unsigned char) email[i] <= ' ' || email[i] == 0x7f) {
            return false;
        }
    }

    return true;
}


/*
 * Reads the first line of stdin into a malloc'ed buffer (*buf, *cap for
 * wiping) without its line ending.  Returns the length or -1 (reported).
 */
static long
user_read_password(char **buf, size_t *cap)
{
    ssize_t  n;
    size_t   chars = 0;

    *buf = NULL;
    *cap = 0;

    n = getline(buf, cap, stdin);
    if (n < 0) {
        quayctl_fail("no password on standard input");
        return -1;
    }

    if (n > 0 && (*buf)[n - 1] == '\n') {
        n--;
    }
    if (n > 0 && (*buf)[n - 1] == '\r') {
        n--;
    }
    (*buf)[n] = '\0';

    if (n > USER_PASSWORD_MAX) {
        quayctl_fail("the password is longer than %d bytes",
                     USER_PASSWORD_MAX);
        return -1;
    }

    if (memchr(*buf, '\0', (size_t) n) != NULL) {
        quayctl_fail("the password contains a NUL byte");
        return -1;
    }

    for (ssize_t i = 0; i < n; i++) {
        /* count UTF-8 characters, not continuation bytes */
        if (((unsigned char) (*buf)[i] & 0xc0) != 0x80) {
            chars++;
        }
    }

    if (chars < USER_PASSWORD_MIN) {
        quayctl_fail("the password must have at least %d characters",
                     USER_PASSWORD_MIN);
        return -1;
    }

    return (long) n;
}


/* Hashes the password read from stdin into hash. */
static int
user_password_hash(char hash[QUAY_PASSWORD_HASH_SIZE])
{
    char        *buf;
    size_t       cap;
    long         len;
    int          rc = -1;
    quay_err_t   err;

    len = user_read_password(&buf, &cap);

    if (len >= 0) {
        if (quay_password_hash(buf, (size_t) len, hash,
                               QUAY_PASSWORD_HASH_SIZE, &err)
            == QUAY_OK)
        {
            rc = 0;
        } else {
            quayctl_fail("hashing the password: %s", err.msg);
        }
    }

    if (buf != NULL) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
    }

    return rc;
}


/* A random (version 4) UUID in its 36-character text form. */
static int
user_uuid4(char out[37])
{
    unsigned char  b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        quayctl_fail("no random bytes for a UUID");
        return -1;
    }

    b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);

    (void) snprintf(out, 37,
                    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                    "%02x%02x%02x%02x%02x%02x",
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                    b[9], b[10], b[11], b[12], b[13], b[14], b[15]);

    return 0;
}


static void
user_superuser_note(const user_args_t *args, const quay_config_t *cfg)
{
    if (cfg != NULL
        && quay_strlist_contains(&cfg->super_users, args->name,
                                 strlen(args->name)))
    {
        return;
    }

    fprintf(stderr, "quayctl: note: superusers are the SUPER_USERS list of "
            "config.yaml; add %s there\n", args->name);
}


/* What the existing row named name is: a user, an organization, ... */
static int
user_exists_as(PGconn *conn, const char *name, const char **kind)
{
    char       msg[QUAYCTL_DB_ERR_LEN];
    PGresult  *res;

    res = PQexecParams(conn, user_sql_lookup, 1, NULL, &name, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("looking up %s: %s", name, msg);
        PQclear(res);
        return -1;
    }

    *kind = "a user";

    if (PQntuples(res) == 1) {
        if (PQgetvalue(res, 0, 0)[0] == 't') {
            *kind = "an organization";
        } else if (PQgetvalue(res, 0, 1)[0] == 't') {
            *kind = "a robot account";
        }
    }

    PQclear(res);

    return 0;
}


static int
user_create(PGconn *conn, const user_args_t *args, const quay_config_t *cfg,
    const char *hash)
{
    char         uuid[37], email[USER_EMAIL_MAX + 1], expiration[32];
    char         msg[QUAYCTL_DB_ERR_LEN];
    const char  *params[5];
    const char  *kind;
    PGresult    *res;

    if (user_uuid4(uuid) != 0) {
        return 1;
    }

    if (args->email != NULL) {
        (void) snprintf(email, sizeof(email), "%s", args->email);

    } else if (snprintf(email, sizeof(email), "%s@localhost", args->name)
               >= (int) sizeof(email))
    {
        quayctl_fail("%s@localhost is longer than %d characters; give "
                     "--email", args->name, USER_EMAIL_MAX);
        return 1;
    }

    params[0] = uuid;
    params[1] = args->name;
    params[2] = hash;
    params[3] = email;
    params[4] = NULL;

    if (cfg != NULL && cfg->default_tag_expiration_s >= 0) {
        (void) snprintf(expiration, sizeof(expiration), "%lld",
                        (long long) cfg->default_tag_expiration_s);
        params[4] = expiration;
    }

    res = PQexecParams(conn, user_sql_create, 5, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char  *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (state != NULL && strcmp(state, "23505") == 0) {
            quayctl_fail("e-mail %s is already used by another user", email);
        } else {
            quayctl_db_result_error(conn, res, msg, sizeof(msg));
            quayctl_fail("creating user %s: %s", args->name, msg);
        }
        PQclear(res);
        return 1;
    }

    if (PQntuples(res) == 1) {
        PQclear(res);
        printf("created user %s\n", args->name);
        return 0;
    }

    PQclear(res);

    if (user_exists_as(conn, args->name, &kind) != 0) {
        return 1;
    }

    if (strcmp(kind, "a user") != 0) {
        quayctl_fail("%s already exists as %s", args->name, kind);
        return 1;
    }

    if (args->if_not_exists) {
        printf("user %s already exists\n", args->name);
        return 0;
    }

    quayctl_fail("user %s already exists", args->name);

    return 1;
}


static int
user_passwd(PGconn *conn, const user_args_t *args, const char *hash)
{
    char         msg[QUAYCTL_DB_ERR_LEN];
    const char  *params[2] = { args->name, hash };
    PGresult    *res;

    res = PQexecParams(conn, user_sql_passwd, 2, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("changing the password of %s: %s", args->name, msg);
        PQclear(res);
        return 1;
    }

    if (PQntuples(res) != 1) {
        PQclear(res);
        quayctl_fail("no user %s (organizations and robots have no "
                     "password)", args->name);
        return 1;
    }

    PQclear(res);
    printf("changed the password of %s\n", args->name);

    return 0;
}


/* Returns 0, or the exit status of a usage error. */
static int
user_parse(int argc, char **argv, user_args_t *args)
{
    memset(args, 0, sizeof(*args));

    if (argc < 2) {
        user_usage(stderr);
        return 2;
    }

    args->command = argv[1];

    if (strcmp(args->command, "-h") == 0
        || strcmp(args->command, "--help") == 0)
    {
        user_usage(stdout);
        return -1;
    }

    if (strcmp(args->command, "create") != 0
        && strcmp(args->command, "passwd") != 0)
    {
        quayctl_fail("user: unknown command \"%s\" (create, passwd)",
                     args->command);
        return 2;
    }

    bool  create = strcmp(args->command, "create") == 0;

    for (int i = 2; i < argc; i++) {
        const char  *arg = argv[i];

        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            user_usage(stdout);
            return -1;
        }

        if (strcmp(arg, "--password-stdin") == 0) {
            args->password_stdin = true;
            continue;
        }

        if (create && strcmp(arg, "--if-not-exists") == 0) {
            args->if_not_exists = true;
            continue;
        }

        if (create && strcmp(arg, "--superuser") == 0) {
            args->superuser = true;
            continue;
        }

        int  m = quayctl_db_option(argc, argv, &i, "--config",
                                   &args->config_path);

        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--db-uri", &args->db_uri);
        }
        if (m == 0 && create) {
            m = quayctl_db_option(argc, argv, &i, "--email", &args->email);
        }
        if (m < 0) {
            return 2;
        }
        if (m > 0) {
            continue;
        }

        if (arg[0] == '-' || args->name != NULL) {
            quayctl_fail("user %s: unexpected argument \"%s\"",
                         args->command, arg);
            user_usage(stderr);
            return 2;
        }

        args->name = arg;
    }

    if (args->name == NULL) {
        quayctl_fail("user %s needs a NAME", args->command);
        return 2;
    }

    if (args->config_path == NULL && args->db_uri == NULL) {
        quayctl_fail("user %s needs --config FILE or --db-uri URI",
                     args->command);
        return 2;
    }

    if (!args->password_stdin) {
        quayctl_fail("user %s needs --password-stdin (the password is the "
                     "first line of standard input)", args->command);
        return 2;
    }

    return 0;
}


int
quayctl_user_main(int argc, char **argv)
{
    int             rc;
    char            hash[QUAY_PASSWORD_HASH_SIZE];
    PGconn         *conn = NULL;
    user_args_t     args;
    quay_config_t  *cfg = NULL;

    rc = user_parse(argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }

    rc = 1;

    if (!user_valid_name(args.name)) {
        quayctl_fail("invalid user name \"%s\": 2 to 255 characters, "
                     "lowercase letters and digits, single '.', '_' or '-' "
                     "between them", args.name);
        return 1;
    }

    if (args.email != NULL && !user_valid_email(args.email)) {
        quayctl_fail("invalid e-mail address \"%s\"", args.email);
        return 1;
    }

    if (quayctl_db_resolve(args.config_path, &args.db_uri, &cfg) != 0) {
        goto done;
    }

    if (user_password_hash(hash) != 0) {
        goto done;
    }

    conn = quayctl_db_connect(args.db_uri, "quayctl-user");
    if (conn == NULL) {
        goto done;
    }

    if (strcmp(args.command, "create") == 0) {
        rc = user_create(conn, &args, cfg, hash);
        if (rc == 0 && args.superuser) {
            user_superuser_note(&args, cfg);
        }
    } else {
        rc = user_passwd(conn, &args, hash);
    }

done:

    if (conn != NULL) {
        PQfinish(conn);
    }

    if (cfg != NULL) {
        quay_config_free(cfg);
    }

    return rc;
}
