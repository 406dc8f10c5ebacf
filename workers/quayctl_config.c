/*
 * quayctl config validate FILE: loads FILE with the same loader nginx uses
 * and prints every problem, compiler style, so an editor can jump to it:
 *
 *     FILE:LINE: error: KEY: message
 *     FILE:LINE: warning: KEY: message
 *
 * (":LINE" is left out when the problem has no line, "KEY: " when it has
 * no key.)  Then "OK" on stdout and status 0 when there was no error,
 * warnings allowed; status 1 otherwise; 2 for a usage error.
 */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "quay_config.h"
#include "quay_err.h"
#include "quayctl.h"


typedef struct {
    const char  *path;
    unsigned     nerrors;
    unsigned     nwarnings;
} quayctl_config_ctx_t;


static void
quayctl_config_print(void *data, bool is_error, const char *key,
    unsigned line, const char *msg)
{
    quayctl_config_ctx_t  *ctx = data;

    if (is_error) {
        ctx->nerrors++;
    } else {
        ctx->nwarnings++;
    }

    fputs(ctx->path, stderr);

    if (line != 0) {
        fprintf(stderr, ":%u", line);
    }

    fprintf(stderr, ": %s: ", is_error ? "error" : "warning");

    if (key != NULL) {
        fprintf(stderr, "%s: ", key);
    }

    fprintf(stderr, "%s\n", msg);
}


static void
quayctl_config_usage(FILE *out)
{
    fprintf(out, "usage: quayctl config validate FILE\n");
}


static int
quayctl_config_validate(const char *path)
{
    quay_err_t             err;
    quay_config_t         *cfg;
    quayctl_config_ctx_t   ctx;

    memset(&err, 0, sizeof(err));
    memset(&ctx, 0, sizeof(ctx));
    ctx.path = path;

    cfg = quay_config_load(path, quayctl_config_print, &ctx, &err);

    if (cfg == NULL) {
        if (ctx.nerrors == 0) {
            /* every error is reported, but never fail silently */
            quayctl_fail("%s: %s", path,
                         err.msg[0] != '\0' ? err.msg : "cannot load");
        }

        return 1;
    }

    quay_config_free(cfg);

    printf("OK\n");

    return 0;
}


int
quayctl_config_main(int argc, char **argv)
{
    if (argc == 2
        && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
    {
        quayctl_config_usage(stdout);
        return 0;
    }

    if (argc != 3 || strcmp(argv[1], "validate") != 0) {
        quayctl_config_usage(stderr);
        return 2;
    }

    return quayctl_config_validate(argv[2]);
}
