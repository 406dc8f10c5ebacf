/*
 * Worker counters: jobs claimed, done, retried, failed, given back, and
 * leases found expired (a crashed or hung worker's job reclaimed).
 *
 * Workers are short-lived processes under systemd, so instead of serving
 * HTTP they write node_exporter's textfile format: each write goes to a
 * temporary file in the same directory and is renamed over the target,
 * so the collector never reads half a file.  Counts are per process (they
 * restart with the worker, as Prometheus counters may), labelled with the
 * worker's name and pid so several replicas can share a directory with
 * one file each.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_metrics.h"


static uint64_t     worker_metrics[WORKER_METRIC_COUNT];
static const char  *worker_metrics_path;
static const char  *worker_metrics_worker = "quay-worker";

static const char  *worker_metric_names[WORKER_METRIC_COUNT][2] = {
    { "quay_worker_jobs_claimed_total", "Jobs claimed" },
    { "quay_worker_jobs_done_total", "Jobs completed" },
    { "quay_worker_jobs_retried_total", "Jobs put back with a retry" },
    { "quay_worker_jobs_failed_total", "Jobs failed for good" },
    { "quay_worker_jobs_given_back_total",
      "Jobs given back on shutdown or sickness" },
    { "quay_worker_lease_expiries_total",
      "Claims of a job whose previous lease had expired" },
};


void
worker_metrics_init(const char *path, const char *worker)
{
    worker_metrics_path = path;
    if (worker != NULL) {
        worker_metrics_worker = worker;
    }
}


void
worker_metrics_inc(worker_metric_e metric)
{
    worker_metrics[metric]++;
}


int
worker_metrics_write(void)
{
    FILE    *f;
    char     tmp[4096];
    int      i, saved;

    if (worker_metrics_path == NULL) {
        return 0;
    }

    if ((size_t) snprintf(tmp, sizeof(tmp), "%s.%ld.tmp",
                          worker_metrics_path, (long) getpid())
        >= sizeof(tmp))
    {
        errno = ENAMETOOLONG;
        return -1;
    }

    f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }

    for (i = 0; i < WORKER_METRIC_COUNT; i++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n"
                "%s{worker=\"%s\",pid=\"%ld\"} %llu\n",
                worker_metric_names[i][0], worker_metric_names[i][1],
                worker_metric_names[i][0], worker_metric_names[i][0],
                worker_metrics_worker, (long) getpid(),
                (unsigned long long) worker_metrics[i]);
    }

    if (fflush(f) != 0 || ferror(f)) {
        saved = errno;
        (void) fclose(f);
        (void) unlink(tmp);
        errno = saved;
        return -1;
    }

    if (fclose(f) != 0 || rename(tmp, worker_metrics_path) != 0) {
        saved = errno;
        (void) unlink(tmp);
        errno = saved;
        return -1;
    }

    return 0;
}
