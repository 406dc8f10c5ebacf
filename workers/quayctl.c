/*
 * quayctl: admin command for the registry.  This file only dispatches to
 * the subcommands; see quayctl_*.c.  Every failure is one line on stderr
 * and a non-zero exit status.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "quayctl.h"


typedef struct {
    const char  *name;
    int        (*main)(int argc, char **argv);
    const char  *help;
} quayctl_command_t;


static const quayctl_command_t  quayctl_commands[] = {
    { "migrate", quayctl_migrate_main,
      "migrate --config FILE [--dir SQLDIR] [--status]" },
    { "config", quayctl_config_main, "config validate FILE" },
    { "user", quayctl_user_main,
      "user create NAME (--config FILE | --db-uri URI) --password-stdin\n"
      "               [--email EMAIL] [--if-not-exists]\n"
      "  quayctl user passwd NAME (--config FILE | --db-uri URI) "
      "--password-stdin" },
    { "token", quayctl_token_main,
      "token create NAME (--config FILE | --db-uri URI) "
      "[--scopes \"S ...\"] [--days N]" },
    { "superuser", quayctl_superuser_main,
      "superuser (list | add NAME | remove NAME) --config FILE" },
    { "org", quayctl_org_main,
      "org create NAME --owner USER (--config FILE | --db-uri URI)\n"
      "               [--email EMAIL]\n"
      "  quayctl org add-member ORG TEAM USER (--config FILE | --db-uri URI)"
    },
    { "storage", quayctl_storage_main,
      "storage backfill-replication --config FILE [--dry-run]"
      " [--namespace NS]" },
};


void
quayctl_fail(const char *fmt, ...)
{
    va_list  ap;

    fputs("quayctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


static void
quayctl_usage(FILE *out)
{
    size_t  i;

    fprintf(out, "usage:\n");
    for (i = 0; i < sizeof(quayctl_commands) / sizeof(quayctl_commands[0]);
         i++)
    {
        fprintf(out, "  quayctl %s\n", quayctl_commands[i].help);
    }
}


int
main(int argc, char **argv)
{
    size_t  i;

    if (argc < 2) {
        quayctl_usage(stderr);
        return 2;
    }

    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        quayctl_usage(stdout);
        return 0;
    }

    for (i = 0; i < sizeof(quayctl_commands) / sizeof(quayctl_commands[0]);
         i++)
    {
        if (strcmp(argv[1], quayctl_commands[i].name) == 0) {
            return quayctl_commands[i].main(argc - 1, argv + 1);
        }
    }

    quayctl_fail("unknown command \"%s\" (try quayctl --help)", argv[1]);
    return 2;
}
