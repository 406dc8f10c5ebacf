/*
 * quayctl token: OAuth access tokens for the REST API, for scripts and
 * the first administrator, without a browser.
 *
 *   quayctl token create NAME (--config FILE | --db-uri URI)
 *                        [--scopes "repo:read repo:write ..."] [--days N]
 *
 * As Quay's user/initialize does, the token belongs to an OAuth
 * application named "automation" owned by the user (made on first use).
 * The token is 40 characters A-Z0-9: the first 20 are token_name, the
 * lookup key; the database keeps only the SHA-256 of the other 20
 * (token_code), so a database dump reveals no usable token.  Quay keeps a
 * bcrypt hash there; a 20-character random secret has 103 bits of
 * entropy, which a fast hash protects as well, and the API checks a token
 * on every call.  The token is printed once, on standard output; the
 * issue is audit-logged as oauth_token_assigned.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "quay_crypto.h"
#include "quayctl.h"


#define TOKEN_NAME_LEN    20
#define TOKEN_SECRET_LEN  20
#define TOKEN_DAYS        3650          /* Quay's OAuth default: 10 years */

static const char  *token_scopes[] = {
    "repo:read", "repo:write", "repo:admin", "repo:create", "user:read",
    "user:admin", "org:admin", "super:user", NULL
};


/*
 * $1 username, $2 client_id for a new application, $3 token_name,
 * $4 token_code, $5 scope, $6 days.  No row: no such (enabled, non-robot,
 * non-organization) user.
 */
static const char  token_sql_create[] =
    "WITH u AS ("
    "  SELECT id FROM \"user\" WHERE username = $1"
    "  AND NOT organization AND NOT robot AND enabled),"
    " app_new AS ("
    "  INSERT INTO oauthapplication (client_id, organization_id, name,"
    "                                description)"
    "  SELECT $2, u.id, 'automation', 'Tokens made by quayctl' FROM u"
    "  WHERE NOT EXISTS (SELECT 1 FROM oauthapplication a"
    "                    WHERE a.organization_id = u.id"
    "                    AND a.name = 'automation')"
    "  RETURNING id),"
    " app AS ("
    "  SELECT id FROM app_new UNION ALL"
    "  SELECT a.id FROM oauthapplication a, u"
    "  WHERE a.organization_id = u.id AND a.name = 'automation'"
    "  LIMIT 1),"
    " tok AS ("
    "  INSERT INTO oauthaccesstoken (application_id, authorized_user_id,"
    "                                scope, token_name, token_code,"
    "                                expires_at)"
    "  SELECT app.id, u.id, $5, $3, $4,"
    "         now() + make_interval(days => $6::int) FROM app, u"
    "  RETURNING authorized_user_id, uuid)"
    " INSERT INTO logentry (kind_id, account_id, performer_id, metadata_json)"
    " SELECT (SELECT id FROM logentrykind"
    "         WHERE name = 'oauth_token_assigned'),"
    "        tok.authorized_user_id, tok.authorized_user_id,"
    "        jsonb_build_object('token', tok.uuid, 'scope', $5::text,"
    "                           'source', 'quayctl')"
    " FROM tok RETURNING account_id";


static void
token_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl token create NAME (--config FILE | --db-uri URI)\n"
        "                            [--scopes \"SCOPE ...\"] [--days N]\n"
        "Scopes: repo:read repo:write repo:admin repo:create user:read\n"
        "        user:admin org:admin super:user (default: all of them).\n"
        "Prints the 40-character token for \"Authorization: Bearer\".\n");
}


/* Every space- or comma-separated word of s is a known scope. */
static bool
token_valid_scopes(const char *s)
{
    char  word[32];
    bool  any = false;

    while (*s) {
        size_t  n = strcspn(s, " ,");

        if (n > 0) {
            if (n >= sizeof(word)) {
                return false;
            }

            memcpy(word, s, n);
            word[n] = '\0';

            bool  known = false;

            for (int i = 0; token_scopes[i] != NULL; i++) {
                if (strcmp(word, token_scopes[i]) == 0) {
                    known = true;
                }
            }

            if (!known) {
                return false;
            }

            any = true;
        }

        s += n;
        s += strspn(s, " ,");
    }

    return any;
}


int
quayctl_token_main(int argc, char **argv)
{
    int             rc = 1, days = TOKEN_DAYS;
    char            client_id[TOKEN_NAME_LEN + 1];
    char            token[TOKEN_NAME_LEN + TOKEN_SECRET_LEN + 1];
    char            code[2 * SHA256_DIGEST_LENGTH + 1], days_s[16];
    char            msg[QUAYCTL_DB_ERR_LEN];
    char            scopes[512];
    unsigned char   digest[SHA256_DIGEST_LENGTH];
    const char     *name = NULL, *config_path = NULL, *db_uri = NULL;
    const char     *scope_arg = NULL, *days_arg = NULL;
    const char     *params[6];
    PGconn         *conn = NULL;
    PGresult       *res;
    quay_config_t  *cfg = NULL;

    if (argc < 2 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "--help") == 0)
    {
        token_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }

    if (strcmp(argv[1], "create") != 0) {
        quayctl_fail("token: unknown command \"%s\" (create)", argv[1]);
        return 2;
    }

    for (int i = 2; i < argc; i++) {
        int  m = quayctl_db_option(argc, argv, &i, "--config", &config_path);

        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--db-uri", &db_uri);
        }
        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--scopes", &scope_arg);
        }
        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--days", &days_arg);
        }
        if (m < 0) {
            return 2;
        }
        if (m > 0) {
            continue;
        }

        if (argv[i][0] == '-' || name != NULL) {
            quayctl_fail("token create: unexpected argument \"%s\"",
                         argv[i]);
            token_usage(stderr);
            return 2;
        }

        name = argv[i];
    }

    if (name == NULL) {
        quayctl_fail("token create needs a NAME");
        return 2;
    }

    if (config_path == NULL && db_uri == NULL) {
        quayctl_fail("token create needs --config FILE or --db-uri URI");
        return 2;
    }

    if (scope_arg == NULL) {
        scope_arg = "org:admin repo:admin repo:create repo:read repo:write "
                    "super:user user:admin user:read";
    }

    if (!token_valid_scopes(scope_arg) || strlen(scope_arg) >= 255) {
        quayctl_fail("invalid --scopes \"%s\": space-separated words from "
                     "repo:read repo:write repo:admin repo:create user:read "
                     "user:admin org:admin super:user", scope_arg);
        return 2;
    }

    /* stored normalized: single spaces */

    {
        size_t  o = 0;

        for (const char *s = scope_arg; *s && o + 1 < sizeof(scopes); s++) {
            char  c = (*s == ',') ? ' ' : *s;

            if (c == ' ' && (o == 0 || scopes[o - 1] == ' ')) {
                continue;
            }
            scopes[o++] = c;
        }

        while (o > 0 && scopes[o - 1] == ' ') {
            o--;
        }
        scopes[o] = '\0';
    }

    if (days_arg != NULL) {
        char  *end;
        long   v = strtol(days_arg, &end, 10);

        if (*days_arg == '\0' || *end != '\0' || v < 1 || v > 36500) {
            quayctl_fail("invalid --days \"%s\": a number of days from 1 "
                         "to 36500", days_arg);
            return 2;
        }
        days = (int) v;
    }

    if (quayctl_db_resolve(config_path, &db_uri, &cfg) != 0) {
        goto done;
    }

    if (quay_crypto_random_token(client_id, TOKEN_NAME_LEN, NULL) != QUAY_OK
        || quay_crypto_random_token(token, TOKEN_NAME_LEN + TOKEN_SECRET_LEN,
                                    NULL) != QUAY_OK)
    {
        quayctl_fail("no random bytes for a token");
        goto done;
    }

    (void) SHA256((unsigned char *) token + TOKEN_NAME_LEN, TOKEN_SECRET_LEN,
                  digest);

    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        (void) snprintf(code + 2 * i, 3, "%02x", digest[i]);
    }

    char  token_name[TOKEN_NAME_LEN + 1];

    memcpy(token_name, token, TOKEN_NAME_LEN);
    token_name[TOKEN_NAME_LEN] = '\0';
    (void) snprintf(days_s, sizeof(days_s), "%d", days);

    conn = quayctl_db_connect(db_uri, "quayctl-token");
    if (conn == NULL) {
        goto done;
    }

    params[0] = name;
    params[1] = client_id;
    params[2] = token_name;
    params[3] = code;
    params[4] = scopes;
    params[5] = days_s;

    res = PQexecParams(conn, token_sql_create, 6, NULL, params, NULL, NULL,
                       0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("creating a token for %s: %s", name, msg);
        PQclear(res);
        goto done;
    }

    if (PQntuples(res) != 1) {
        PQclear(res);
        quayctl_fail("no enabled user %s (organizations and robots get no "
                     "OAuth tokens)", name);
        goto done;
    }

    PQclear(res);

    printf("%s\n", token);
    rc = 0;

done:

    quay_crypto_wipe(token, sizeof(token));

    if (conn != NULL) {
        PQfinish(conn);
    }

    if (cfg != NULL) {
        quay_config_free(cfg);
    }

    return rc;
}
