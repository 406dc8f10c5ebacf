/*
 * storagectl: one worker-side storage operation (workers/storage.h) from
 * the command line, for t/storage/test_worker_storage.py.  Built by the
 * test against build/workers/storage*.o, worker*.o and build/libquay.a.
 *
 *   storagectl CONFIG LOCATION stat KEY            -> "<size>"
 *   storagectl CONFIG LOCATION get KEY [OFF [LEN]] -> bytes on stdout
 *   storagectl CONFIG LOCATION put KEY             <- bytes on stdin
 *   storagectl CONFIG LOCATION remove KEY
 *   storagectl CONFIG LOCATION mpu-create KEY      -> "<upload id>"
 *   storagectl CONFIG LOCATION mpu-upload KEY PARTSIZE [--no-complete]
 *       stdin as parts of PARTSIZE bytes (create, parts, complete);
 *       prints the upload id
 *   storagectl CONFIG LOCATION mpu-list PREFIX     -> "<key> <id> <age>"
 *   storagectl CONFIG LOCATION mpu-abort KEY ID
 *   storagectl CONFIG LOCATION move SRC DST SIZE
 *
 * Exit status: 0, or 10 + (-STORAGE_E*) with the reason on stderr
 * (11 not found, 13 i/o, 14 unavailable, 16 denied); 2 for usage.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage.h"
#include "worker.h"


static void
print_upload(void *ctx, const char *key, const char *id, time_t initiated)
{
    (void) ctx;
    printf("%s %s %lld\n", key, id,
           (long long) (time(NULL) - initiated));
}


static int
stdout_sink(void *ctx, const unsigned char *p, size_t len)
{
    (void) ctx;
    return fwrite(p, 1, len, stdout) == len ? 0 : -1;
}


static unsigned char *
read_stdin(size_t *len)
{
    size_t          cap = 1 << 20, n;
    unsigned char  *buf = xmalloc(cap);

    *len = 0;
    while ((n = fread(buf + *len, 1, cap - *len, stdin)) > 0) {
        *len += n;
        if (*len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    return buf;
}


static int
fail(int rc, const char *err)
{
    fprintf(stderr, "storagectl: %s: %s\n", storage_strerror(rc), err);
    return 10 - rc;
}


int
main(int argc, char **argv)
{
    quay_config_t                  *cfg;
    const quay_storage_location_t  *loc;
    storage_t                      *s;
    quay_err_t                      qerr;
    char                            err[STORAGE_ERR_LEN] = "";
    char                            id[STORAGE_UPLOAD_ID_MAX];
    const char                     *op;
    int                             rc = STORAGE_OK;

    if (argc < 5) {
        fprintf(stderr, "usage: storagectl CONFIG LOCATION OP ARGS...\n");
        return 2;
    }
    memset(&qerr, 0, sizeof(qerr));
    cfg = quay_config_load(argv[1], NULL, NULL, &qerr);
    if (cfg == NULL) {
        fprintf(stderr, "storagectl: %s\n", qerr.msg);
        return 2;
    }
    loc = quay_config_location(cfg, argv[2]);
    if (loc == NULL) {
        fprintf(stderr, "storagectl: no location %s\n", argv[2]);
        return 2;
    }
    s = storage_open(loc, err, sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "storagectl: %s\n", err);
        return 2;
    }
    op = argv[3];

    if (strcmp(op, "stat") == 0) {
        int64_t  size = -1;

        rc = storage_stat(s, argv[4], &size, err, sizeof(err));
        if (rc == STORAGE_OK) {
            printf("%lld\n", (long long) size);
        }

    } else if (strcmp(op, "get") == 0) {
        int64_t  off = argc > 5 ? atoll(argv[5]) : 0;
        int64_t  len = argc > 6 ? atoll(argv[6]) : -1;

        rc = storage_get(s, argv[4], off, len, stdout_sink, NULL, err,
                         sizeof(err));

    } else if (strcmp(op, "put") == 0) {
        size_t          len;
        unsigned char  *buf = read_stdin(&len);

        rc = storage_put(s, argv[4], buf, len, err, sizeof(err));
        free(buf);

    } else if (strcmp(op, "remove") == 0) {
        rc = storage_remove(s, argv[4], err, sizeof(err));

    } else if (strcmp(op, "mpu-create") == 0) {
        rc = storage_mpu_create(s, argv[4], id, sizeof(id), err,
                                sizeof(err));
        if (rc == STORAGE_OK) {
            printf("%s\n", id);
        }

    } else if (strcmp(op, "mpu-upload") == 0 && argc > 5) {
        size_t           len, off, part = (size_t) atoll(argv[5]);
        unsigned char   *buf = read_stdin(&len);
        storage_part_t  *parts = xcalloc(len / part + 2, sizeof(*parts));
        size_t           n = 0;
        bool             complete = !(argc > 6
                                      && strcmp(argv[6], "--no-complete")
                                         == 0);

        rc = storage_mpu_create(s, argv[4], id, sizeof(id), err,
                                sizeof(err));
        for (off = 0; rc == STORAGE_OK && (off < len || n == 0);
             off += part)
        {
            parts[n].number = (int) n + 1;
            parts[n].size = (int64_t) (len - off < part ? len - off : part);
            rc = storage_mpu_part(s, argv[4], id, (int64_t) off, buf + off,
                                  &parts[n], err, sizeof(err));
            n++;
        }
        if (rc == STORAGE_OK && complete) {
            rc = storage_mpu_complete(s, argv[4], id, parts, n, err,
                                      sizeof(err));
        }
        if (rc == STORAGE_OK) {
            printf("%s\n", id);
        }
        free(parts);
        free(buf);

    } else if (strcmp(op, "mpu-list") == 0) {
        rc = storage_mpu_list(s, argv[4], print_upload, NULL, err,
                              sizeof(err));

    } else if (strcmp(op, "mpu-abort") == 0 && argc > 5) {
        rc = storage_mpu_abort(s, argv[4], argv[5], err, sizeof(err));

    } else if (strcmp(op, "move") == 0 && argc > 6) {
        rc = storage_move(s, argv[4], argv[5], atoll(argv[6]), err,
                          sizeof(err));

    } else {
        fprintf(stderr, "storagectl: unknown operation %s\n", op);
        return 2;
    }

    (void) fflush(stdout);
    storage_close(s);
    quay_config_free(cfg);
    return rc == STORAGE_OK ? 0 : fail(rc, err);
}
