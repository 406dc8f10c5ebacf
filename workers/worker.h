/*
 * The shared core of every worker binary: command line, config, one-line
 * logging, signals, the PostgreSQL connection and the job loop over the
 * queueitem table (claim with a lease, renew, complete, retry, fail, give
 * back), plus xmalloc.  A binary describes itself with a worker_def_t and
 * calls worker_main() from main().
 *
 * Outcomes follow Quay's workers/queueworker.py: a transient problem is
 * WORKER_JOB_RETRY (retries_remaining is decremented and the job comes back
 * after an exponential, jittered backoff; at 0 it becomes 'failed'), a bad
 * job is WORKER_JOB_FAIL ('failed' at once, with last_error), and a sick
 * worker is WORKER_JOB_STOP (the job is given back with its retry restored
 * and the process exits 1 so systemd restarts it).
 *
 * Jobs must be idempotent: a worker killed mid-job leaves the lease to
 * expire and another worker runs the job again.
 *
 * Test hook: when the environment variable QUAY_WORKER_TEST_HOLD_SECONDS
 * is set to N > 0, the loop sleeps N seconds after claiming each job and
 * before running it (waking early on SIGTERM/SIGINT, which gives the job
 * back).  Tests use it to kill a worker while it holds a lease.  It is inert
 * unless set.
 */

#ifndef WORKER_H
#define WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "quay_config.h"


#define WORKER_ERROR_LEN         512

#define WORKER_LOG_DEBUG         0
#define WORKER_LOG_INFO          1
#define WORKER_LOG_WARN          2
#define WORKER_LOG_ERR           3

#define WORKER_DEFAULT_LEASE_S   300
#define WORKER_DEFAULT_POLL_S    30
#define WORKER_DEFAULT_RETRY_S   10       /* backoff base, --retry-base */
#define WORKER_MAX_BACKOFF_S     3600


typedef enum {
    WORKER_JOB_DONE = 0,      /* effect done: the row is deleted */
    WORKER_JOB_RETRY,         /* transient: retry later, one retry used */
    WORKER_JOB_FAIL,          /* bad job: state 'failed' now */
    WORKER_JOB_STOP           /* sick worker: give back, exit 1 */
} worker_job_result_e;


typedef struct worker_s      worker_t;
typedef struct worker_job_s  worker_job_t;


typedef struct {
    const char  *name;          /* in logs: "quay-upload-cleanup" */
    const char  *queue;         /* queueitem.queue_name claimed */
    int          poll_s;        /* default --poll; 0 means 30 */
    int          lease_s;       /* default --lease; 0 means 300 */

    /*
     * Extra options.  Called for each argument the core does not know;
     * returns how many arguments it consumed from argv[i] on (1 or 2), 0
     * if unknown, -1 if malformed (usage error).  May be NULL.
     */
    int        (*parse_arg)(void *ctx, int argc, char **argv, int i);
    const char  *usage;         /* extra usage text, or NULL */

    /* After the config is loaded, before connecting.  0 or -1 (exit 1). */
    int        (*init)(worker_t *w, void *ctx);

    /*
     * When the queue has nothing claimable (so at startup too), before
     * sleeping or, with --once, exiting.  Returns the number of jobs it
     * enqueued (the loop claims again if > 0), or -1 on error (logged;
     * the loop goes on).  May be NULL.
     */
    int        (*scan)(worker_t *w, void *ctx);

    /* Runs one job.  job->body is a parsed JSON value. */
    worker_job_result_e (*run_job)(worker_t *w, worker_job_t *job,
                                   void *ctx);

    /* At exit.  May be NULL. */
    void       (*cleanup)(worker_t *w, void *ctx);

    void        *ctx;
} worker_def_t;


struct worker_s {
    const worker_def_t  *def;
    const char          *config_path;   /* borrowed from argv */
    quay_config_t       *cfg;           /* owned; freed at exit */
    PGconn              *conn;          /* owned; NULL while disconnected */
    char                 owner[256];    /* "<hostname>:<pid>:<random>" */
    int                  lease_s;
    int                  poll_s;
    int                  retry_base_s;
    bool                 once;
    unsigned             connect_failures;  /* consecutive, for backoff */
    bool                 db_error_transient; /* last worker_db_* failure */
    char                 db_error[WORKER_ERROR_LEN];
};


struct worker_job_s {
    int64_t              id;
    json_t              *body;          /* owned by the loop */
    int                  retries_remaining;
    bool                 reclaimed;     /* a previous lease had expired */
    worker_t            *worker;
    struct timespec      renewed;       /* CLOCK_MONOTONIC of last renewal */
    char                 error[WORKER_ERROR_LEN]; /* -> last_error */
};


/* Logging: one line on stderr per event, filtered before formatting. */
extern int      worker_verbosity;       /* minimum level logged */
extern int64_t  worker_log_job_id;      /* job=<id> while > 0 */

#define worker_log(level, ...)                                               \
    do {                                                                     \
        if ((level) >= worker_verbosity) {                                   \
            worker_log_raw((level), __VA_ARGS__);                            \
        }                                                                    \
    } while (0)

/*
 * Formats and writes one line: "2026-11-28T01:02:03Z I name[pid] job=17
 * message".  Credentials in URIs ("scheme://user:secret@") and
 * "password=..." are replaced with "***" here, so call sites need not care.
 */
void worker_log_raw(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies s into out with URI passwords and password=... redacted. */
void worker_redact(const char *s, char *out, size_t len);


/*
 * Runs the worker: parses --config FILE (required), --once, --verbose,
 * --lease S, --poll S, --retry-base S plus def->parse_arg options, then
 * loops until a signal (or, with --once, until nothing is claimable).
 * Returns the exit status: 0 after a clean stop, 1 on a fatal error or
 * WORKER_JOB_STOP, 2 on a usage error.
 */
int worker_main(int argc, char **argv, const worker_def_t *def);

/* True once SIGTERM or SIGINT arrived; long jobs poll it. */
bool worker_shutdown_requested(void);

/*
 * Sleeps up to seconds in short slices; returns false early (without
 * finishing the sleep) when shutdown was requested.
 */
bool worker_sleep(double seconds);

/* A uniformly random double in [0, 1). */
double worker_random(void);


/*
 * Extends the job's lease by --lease seconds if this process still owns
 * it.  Returns 0, or -1 when the lease was lost (another worker may own
 * the job: stop and return WORKER_JOB_RETRY) or the database failed.
 */
int worker_job_renew(worker_job_t *job);

/*
 * worker_job_renew() at most every lease/3 seconds; cheap to call in a
 * loop.  Same return values.
 */
int worker_job_heartbeat(worker_job_t *job);

/* Sets job->error (stored as last_error for RETRY, FAIL and STOP). */
void worker_job_error(worker_job_t *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


/*
 * Runs sql with text parameters on the worker's connection.  Returns a
 * PGresult owned by the caller (PQclear it) for PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK; otherwise NULL after logging the error, recording it
 * in w->db_error and w->db_error_transient, and dropping the connection
 * if it is broken (the loop reconnects).
 */
PGresult *worker_db_exec(worker_t *w, const char *sql, int nparams,
    const char *const *values);

/*
 * The outcome for a job whose worker_db_exec() just failed: RETRY for a
 * lost connection or another transient error (serialization, deadlock,
 * timeouts, admin shutdown), FAIL otherwise.  Copies the error to job.
 */
worker_job_result_e worker_db_failure(worker_t *w, worker_job_t *job);

/* True if res/conn show a transient error (see worker_db_failure). */
bool worker_pg_transient(PGconn *conn, const PGresult *res);


/*
 * Queues a job on any connection (also usable from quayctl).  body_json
 * must be a JSON object text; dedupe_key may be NULL.  With a dedupe key,
 * nothing is inserted if a queued job with the same queue and key exists.
 * Returns 1 if inserted, 0 if deduplicated, -1 on error (err filled if
 * not NULL).
 */
int worker_enqueue(PGconn *conn, const char *queue, const char *body_json,
    const char *dedupe_key, double available_after_delay_s,
    char *err, size_t errlen);


/* Allocation that aborts on out-of-memory (zmalloc). */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* WORKER_H */
