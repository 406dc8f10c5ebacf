/*
 * quayctl: the admin command.  quayctl.c only dispatches; each subcommand
 * lives in its own quayctl_<name>.c and returns the process exit status
 * (0 on success, 1 on a reported failure, 2 on a usage error).
 */

#ifndef QUAYCTL_H
#define QUAYCTL_H

#include <stddef.h>
#include <libpq-fe.h>

#include "quay_config.h"

int quayctl_migrate_main(int argc, char **argv);
int quayctl_config_main(int argc, char **argv);
int quayctl_user_main(int argc, char **argv);
int quayctl_token_main(int argc, char **argv);
int quayctl_superuser_main(int argc, char **argv);
int quayctl_org_main(int argc, char **argv);
int quayctl_storage_main(int argc, char **argv);

/* Prints "quayctl: <msg>" on stderr; one line, never a secret. */
void quayctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* Database helpers shared by the subcommands (quayctl_migrate.c). */

#define QUAYCTL_DB_ERR_LEN  1024

/* Matches --name VALUE or --name=VALUE at argv[*i]; 1 if matched. */
int quayctl_db_option(int argc, char **argv, int *i, const char *name,
    const char **value);
/* DB_URI from --db-uri or the config file; cfg is set when one was read. */
int quayctl_db_resolve(const char *config_path, const char **db_uri,
    quay_config_t **cfg);
PGconn *quayctl_db_connect(const char *db_uri, const char *application_name);
void quayctl_db_result_error(PGconn *conn, const PGresult *res, char *buf,
    size_t size);

#endif /* QUAYCTL_H */
