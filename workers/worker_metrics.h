/*
 * Worker counters for Prometheus, written as a node_exporter textfile
 * (--metrics-textfile PATH).  See worker_metrics.c.
 */

#ifndef WORKER_METRICS_H
#define WORKER_METRICS_H

typedef enum {
    WORKER_METRIC_CLAIMED = 0,
    WORKER_METRIC_DONE,
    WORKER_METRIC_RETRIED,
    WORKER_METRIC_FAILED,
    WORKER_METRIC_GIVEN_BACK,
    WORKER_METRIC_LEASE_EXPIRED,
    WORKER_METRIC_COUNT
} worker_metric_e;

void worker_metrics_inc(worker_metric_e metric);

/* Sets the textfile path (NULL: off) and the worker's name label. */
void worker_metrics_init(const char *path, const char *worker);

/* Rewrites the textfile atomically (tmp + rename); no-op when off.
 * Returns 0, or -1 with errno set (the caller logs it). */
int worker_metrics_write(void);

#endif /* WORKER_METRICS_H */
