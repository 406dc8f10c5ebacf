/*
 * quayctl org: organizations for a scripted setup, before anyone holds an
 * API token.
 *
 *   quayctl org create NAME --owner USER (--config FILE | --db-uri URI)
 *                      [--email EMAIL]
 *   quayctl org add-member ORG TEAM USER (--config FILE | --db-uri URI)
 *
 * Both run the SQL functions the REST API runs (sql/0011_api_org.sql):
 * quay_api_org_make() for POST /api/v1/organization/ and
 * quay_api_org_team_add() for PUT .../team/TEAM/members/USER.  So the
 * rules are the API's, word for word: NAME follows Quay's namespace rule
 * and must be free among users, organizations and robots; the new
 * organization gets team "owners" with role admin holding USER; a member
 * is a user or a robot of that organization.  Each change and its audit
 * row (org_create, org_add_team_member, with "source": "quayctl") commit
 * together.  A refusal is the function's message on one line and exit
 * status 1; a usage error exits 2.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "quay_config.h"
#include "quayctl.h"


#define ORG_NAME_MIN   2
#define ORG_NAME_MAX   255


/* $1 name, $2 e-mail or NULL, $3 owner, $4 time-machine seconds or NULL */
static const char  org_sql_create[] =
    "SELECT status, message"
    " FROM quay_api_org_make($1, $2, $3, $4::bigint, NULL, NULL, 'quayctl')";

/* $1 organization, $2 team, $3 member */
static const char  org_sql_add_member[] =
    "SELECT status, message"
    " FROM quay_api_org_team_add($1, $2, $3, NULL, NULL, 'quayctl')";


typedef struct {
    const char  *command;           /* "create" or "add-member" */
    const char  *names[3];          /* NAME; or ORG TEAM USER */
    int          nnames;
    const char  *owner;
    const char  *email;
    const char  *config_path;
    const char  *db_uri;
} org_args_t;


static void
org_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl org create NAME --owner USER\n"
        "                          (--config FILE | --db-uri URI)"
        " [--email EMAIL]\n"
        "       quayctl org add-member ORG TEAM USER\n"
        "                          (--config FILE | --db-uri URI)\n"
        "create makes organization NAME with team \"owners\" (role admin)"
        " holding USER;\n"
        "add-member adds USER (or a robot ORG+name) to TEAM.\n");
}


/* Quay's ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, length 2..255. */
static bool
org_valid_name(const char *name)
{
    size_t  len = strlen(name);
    bool    after_separator = true;  /* the first char must be [a-z0-9] */

    if (len < ORG_NAME_MIN || len > ORG_NAME_MAX) {
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


/* A user or robot name as the API would look it up: 1 to 255 printable
 * ASCII characters (robots are "org+short"). */
static bool
org_valid_member(const char *name)
{
    size_t  len = strlen(name);

    if (len == 0 || len > ORG_NAME_MAX) {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        if ((unsigned char) name[i] <= ' ' || (unsigned char) name[i] > '~')
        {
            return false;
        }
    }

    return true;
}


/* Returns 0, -1 after printing help, or the exit status of a usage
 * error. */
static int
org_parse(int argc, char **argv, org_args_t *args)
{
    int  want;

    memset(args, 0, sizeof(*args));

    if (argc < 2) {
        org_usage(stderr);
        return 2;
    }

    args->command = argv[1];

    if (strcmp(args->command, "-h") == 0
        || strcmp(args->command, "--help") == 0)
    {
        org_usage(stdout);
        return -1;
    }

    if (strcmp(args->command, "create") == 0) {
        want = 1;

    } else if (strcmp(args->command, "add-member") == 0) {
        want = 3;

    } else {
        quayctl_fail("org: unknown command \"%s\" (create, add-member)",
                     args->command);
        return 2;
    }

    bool  create = (want == 1);

    for (int i = 2; i < argc; i++) {
        const char  *arg = argv[i];

        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            org_usage(stdout);
            return -1;
        }

        int  m = quayctl_db_option(argc, argv, &i, "--config",
                                   &args->config_path);

        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--db-uri", &args->db_uri);
        }
        if (m == 0 && create) {
            m = quayctl_db_option(argc, argv, &i, "--owner", &args->owner);
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

        if (arg[0] == '-' || args->nnames == want) {
            quayctl_fail("org %s: unexpected argument \"%s\"",
                         args->command, arg);
            return 2;
        }

        args->names[args->nnames++] = arg;
    }

    if (args->nnames != want) {
        quayctl_fail("org %s needs %s", args->command,
                     create ? "a NAME" : "ORG TEAM USER");
        return 2;
    }

    if (create && args->owner == NULL) {
        quayctl_fail("org create needs --owner USER");
        return 2;
    }

    if (args->config_path == NULL && args->db_uri == NULL) {
        quayctl_fail("org %s needs --config FILE or --db-uri URI",
                     args->command);
        return 2;
    }

    return 0;
}


/*
 * Runs one of the statements above and reports its answer: 0 when the
 * function succeeded, 1 (reported as "what: message") otherwise.
 */
static int
org_run(PGconn *conn, const char *sql, int nparams, const char **params,
    const char *what)
{
    char       msg[QUAYCTL_DB_ERR_LEN];
    int        status;
    PGresult  *res;

    res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("%s: %s", what, msg);
        PQclear(res);
        return 1;
    }

    status = atoi(PQgetvalue(res, 0, 0));

    if (status >= 400) {
        quayctl_fail("%s: %s", what,
                     PQgetisnull(res, 0, 1) ? "refused"
                                            : PQgetvalue(res, 0, 1));
        PQclear(res);
        return 1;
    }

    PQclear(res);

    return 0;
}


int
quayctl_org_main(int argc, char **argv)
{
    int             rc;
    char            what[3 * ORG_NAME_MAX + 64], expiration[32];
    const char     *params[4];
    PGconn         *conn = NULL;
    org_args_t      args;
    quay_config_t  *cfg = NULL;

    rc = org_parse(argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }

    rc = 1;

    bool  create = strcmp(args.command, "create") == 0;

    if (!org_valid_name(args.names[0])) {
        quayctl_fail("invalid organization name \"%.*s\": 2 to 255 "
                     "characters, lowercase letters and digits, single '.', "
                     "'_' or '-' between them", ORG_NAME_MAX, args.names[0]);
        return 1;
    }

    if (create && !org_valid_member(args.owner)) {
        quayctl_fail("invalid --owner \"%.*s\"", ORG_NAME_MAX, args.owner);
        return 1;
    }

    if (!create && (!org_valid_name(args.names[1])
                    || !org_valid_member(args.names[2])))
    {
        quayctl_fail("invalid team or user name \"%.*s\" \"%.*s\"",
                     ORG_NAME_MAX, args.names[1], ORG_NAME_MAX,
                     args.names[2]);
        return 1;
    }

    if (quayctl_db_resolve(args.config_path, &args.db_uri, &cfg) != 0) {
        goto done;
    }

    conn = quayctl_db_connect(args.db_uri, "quayctl-org");
    if (conn == NULL) {
        goto done;
    }

    if (create) {
        params[0] = args.names[0];
        params[1] = args.email;
        params[2] = args.owner;
        params[3] = NULL;

        if (cfg != NULL && cfg->default_tag_expiration_s >= 0) {
            (void) snprintf(expiration, sizeof(expiration), "%lld",
                            (long long) cfg->default_tag_expiration_s);
            params[3] = expiration;
        }

        (void) snprintf(what, sizeof(what), "cannot create organization %s",
                        args.names[0]);

        rc = org_run(conn, org_sql_create, 4, params, what);
        if (rc == 0) {
            printf("created organization %s (owner %s)\n", args.names[0],
                   args.owner);
        }

    } else {
        params[0] = args.names[0];
        params[1] = args.names[1];
        params[2] = args.names[2];

        (void) snprintf(what, sizeof(what), "cannot add %s to team %s of %s",
                        args.names[2], args.names[1], args.names[0]);

        rc = org_run(conn, org_sql_add_member, 3, params, what);
        if (rc == 0) {
            printf("added %s to team %s of %s\n", args.names[2],
                   args.names[1], args.names[0]);
        }
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
