/*
 * DESIGN
 *
 * The job loop shared by every worker binary (see worker.h for the API).
 * One process, one thread, one blocking libpq connection; every wait is
 * bounded (connect_timeout, TCP keepalives and tcp_user_timeout, and a
 * statement_timeout set on each new connection).
 *
 * Jobs live in queueitem.  A job is claimable when state = 'queued',
 * available_after <= now() and its lease is empty or expired.  The claim
 * is one UPDATE around a FOR UPDATE SKIP LOCKED subselect, so two workers
 * never get the same row and neither waits for the other; it writes
 * lease_owner ("host:pid:random") and lease_expires = now() + lease.  All
 * time comparisons use the database clock, never the local one.  Every
 * later statement on the job (renew, complete, retry, fail, give back)
 * matches on id AND lease_owner: a worker whose lease expired and was taken
 * over changes nothing.
 *
 * Retries: RETRY decrements retries_remaining and sets available_after =
 * now() + base * 2^(5 - retries) (jittered, capped); at 0 the job becomes
 * 'failed'.  A graceful stop gives the job back without using a retry.  A
 * claim that takes over an expired lease (the previous worker crashed or
 * hung) also uses one retry, like Quay's claim-time decrement, so a job
 * that kills its worker every time ends 'failed' instead of looping.
 *
 * States of the loop: connect (with backoff) -> claim -> [hold hook] ->
 * run -> record outcome -> claim ...; when nothing is claimable: scan
 * (def->scan), then claim again if it queued work, else sleep poll +-20%
 * in 100 ms slices (or exit with --once).  Signal handlers only set a flag;
 * the loop notices it between steps.  A lost connection is dropped and
 * re-established with backoff; a job whose outcome cannot be recorded is
 * left to its lease.
 *
 * The SQL text here belongs in the lib/quay_sql.c catalog once workers
 * share it; it is kept local so the job loop can be reviewed as one unit.
 */

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"
#include "worker_metrics.h"


#define WORKER_MAX_RETRIES_SHIFT   5      /* Quay's default retries */
#define WORKER_SLEEP_SLICE_S       0.1
#define WORKER_CONNECT_BACKOFF_MAX 30
#define WORKER_ONCE_CONNECT_TRIES  5
#define WORKER_LOG_LINE            4096
#define WORKER_MAX_SCANS           100    /* scans in a row before a rest */


int      worker_verbosity = WORKER_LOG_INFO;
int64_t  worker_log_job_id;

static const char             *worker_name = "quay-worker";
static volatile sig_atomic_t   worker_shutdown_signal;
static uint64_t                worker_rng_state;
static double                  worker_hold_s;


/* Statements of the job loop, prepared on every new connection. */
typedef struct {
    const char  *name;
    const char  *text;
    int          nparams;
} worker_stmt_t;

enum {
    WORKER_STMT_CLAIM = 0,
    WORKER_STMT_RENEW,
    WORKER_STMT_COMPLETE,
    WORKER_STMT_RETRY,
    WORKER_STMT_FAIL,
    WORKER_STMT_RELEASE,
    WORKER_STMT_COUNT
};

static const worker_stmt_t  worker_stmts[WORKER_STMT_COUNT] = {

    /*
     * $1 queue, $2 owner, $3 lease seconds.  Returns the claimed row and
     * whether it was taken over from an expired lease; such a takeover
     * uses one retry (see DESIGN).
     */
    [WORKER_STMT_CLAIM] = {
        "worker_claim",
        "UPDATE queueitem AS q"
        "   SET lease_owner = $2,"
        "       lease_expires = now() + make_interval(secs => $3),"
        "       retries_remaining = q.retries_remaining"
        "           - CASE WHEN c.lease_expires IS NULL THEN 0 ELSE 1 END,"
        "       updated = now()"
        "  FROM (SELECT id, lease_expires FROM queueitem"
        "         WHERE queue_name = $1 AND state = 'queued'"
        "           AND available_after <= now()"
        "           AND (lease_expires IS NULL OR lease_expires < now())"
        "         ORDER BY available_after, id"
        "         FOR UPDATE SKIP LOCKED LIMIT 1) AS c"
        " WHERE q.id = c.id"
        " RETURNING q.id, q.body, q.retries_remaining,"
        "           c.lease_expires IS NOT NULL",
        3
    },

    /* $1 id, $2 owner, $3 lease seconds. */
    [WORKER_STMT_RENEW] = {
        "worker_renew",
        "UPDATE queueitem"
        "   SET lease_expires = now() + make_interval(secs => $3),"
        "       updated = now()"
        " WHERE id = $1 AND lease_owner = $2 AND state = 'queued'",
        3
    },

    /* $1 id, $2 owner. */
    [WORKER_STMT_COMPLETE] = {
        "worker_complete",
        "DELETE FROM queueitem WHERE id = $1 AND lease_owner = $2",
        2
    },

    /* $1 id, $2 owner, $3 backoff seconds, $4 error. */
    [WORKER_STMT_RETRY] = {
        "worker_retry",
        "UPDATE queueitem"
        "   SET retries_remaining = greatest(retries_remaining - 1, 0),"
        "       state = CASE WHEN retries_remaining - 1 <= 0"
        "                    THEN 'failed' ELSE 'queued' END,"
        "       available_after = now() + make_interval(secs => $3),"
        "       lease_owner = NULL, lease_expires = NULL,"
        "       last_error = $4, updated = now()"
        " WHERE id = $1 AND lease_owner = $2"
        " RETURNING retries_remaining, state",
        4
    },

    /* $1 id, $2 owner, $3 error. */
    [WORKER_STMT_FAIL] = {
        "worker_fail",
        "UPDATE queueitem"
        "   SET state = 'failed', last_error = $3,"
        "       lease_owner = NULL, lease_expires = NULL, updated = now()"
        " WHERE id = $1 AND lease_owner = $2",
        3
    },

    /* $1 id, $2 owner, $3 error or NULL.  The retry is not used. */
    [WORKER_STMT_RELEASE] = {
        "worker_release",
        "UPDATE queueitem"
        "   SET lease_owner = NULL, lease_expires = NULL,"
        "       last_error = coalesce($3, last_error), updated = now()"
        " WHERE id = $1 AND lease_owner = $2",
        3
    },
};


static const char  worker_enqueue_sql[] =
    "INSERT INTO queueitem (queue_name, body, dedupe_key, available_after)"
    " VALUES ($1, $2::jsonb, $3,"
    "         now() + make_interval(secs => $4::double precision))"
    " ON CONFLICT (queue_name, dedupe_key)"
    "   WHERE dedupe_key IS NOT NULL AND state = 'queued'"
    " DO NOTHING"
    " RETURNING id";


/* Memory ------------------------------------------------------------------ */

static void
worker_oom(size_t size)
{
    char  msg[96];
    int   n;

    n = snprintf(msg, sizeof(msg), "out of memory allocating %zu bytes\n",
                 size);
    if (n > 0) {
        (void) !write(STDERR_FILENO, msg, (size_t) n);
    }
    abort();
}


void *
xmalloc(size_t size)
{
    void  *p = malloc(size ? size : 1);

    if (p == NULL) {
        worker_oom(size);
    }
    return p;
}


void *
xcalloc(size_t n, size_t size)
{
    void  *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        worker_oom(n * size);
    }
    return p;
}


void *
xrealloc(void *p, size_t size)
{
    void  *q = realloc(p, size ? size : 1);

    if (q == NULL) {
        worker_oom(size);
    }
    return q;
}


char *
xstrdup(const char *s)
{
    size_t  len = strlen(s) + 1;
    char   *p = xmalloc(len);

    memcpy(p, s, len);
    return p;
}


char *
xasprintf(const char *fmt, ...)
{
    va_list  ap;
    char    *p;
    int      n;

    va_start(ap, fmt);
    n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) {
        worker_oom(strlen(fmt));
    }
    return p;
}


/* Logging ----------------------------------------------------------------- */

/* Appends up to n bytes of s to out[*o..len-1], always NUL-terminated. */
static void
worker_append(char *out, size_t len, size_t *o, const char *s, size_t n)
{
    while (n > 0 && *o + 1 < len) {
        out[(*o)++] = *s++;
        n--;
    }
    out[*o] = '\0';
}


void
worker_redact(const char *s, char *out, size_t len)
{
    static const char  pw[] = "password=";
    size_t             o = 0;
    const char        *p = s;

    if (len == 0) {
        return;
    }
    out[0] = '\0';

    while (*p != '\0') {

        /* scheme://user:secret@host -> scheme://user:***@host */
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            const char  *auth = p + 3;
            const char  *end = auth + strcspn(auth, "/?#@ \t\r\n\"'");

            worker_append(out, len, &o, p, 3);
            p = auth;
            if (*end == '@') {
                const char  *colon = memchr(auth, ':', (size_t) (end - auth));

                if (colon != NULL) {
                    worker_append(out, len, &o, auth,
                                  (size_t) (colon - auth));
                    worker_append(out, len, &o, ":***", 4);
                    p = end;
                }
            }
            continue;
        }

        /* conninfo and query strings: password=secret -> password=*** */
        if (strncasecmp(p, pw, sizeof(pw) - 1) == 0) {
            worker_append(out, len, &o, p, sizeof(pw) - 1);
            worker_append(out, len, &o, "***", 3);
            p += sizeof(pw) - 1;
            p += strcspn(p, "& \t\r\n\"';,");
            continue;
        }

        worker_append(out, len, &o, p, 1);
        p++;
    }
}


void
worker_log_raw(int level, const char *fmt, ...)
{
    static const char  levels[] = "DIWE";
    char               msg[WORKER_LOG_LINE];
    char               line[WORKER_LOG_LINE + 256];
    char               stamp[32];
    char               job[32];
    struct timespec    ts;
    struct tm          tm;
    va_list            ap;
    size_t             o;
    int                n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }

    /* one event, one line: flatten libpq's multi-line messages */
    for (o = 0; msg[o] != '\0'; o++) {
        if (msg[o] == '\n' || msg[o] == '\r' || msg[o] == '\t') {
            msg[o] = ' ';
        }
    }
    while (o > 0 && msg[o - 1] == ' ') {
        msg[--o] = '\0';
    }

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    (void) gmtime_r(&ts.tv_sec, &tm);
    if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        stamp[0] = '\0';
    }

    job[0] = '\0';
    if (worker_log_job_id > 0) {
        (void) snprintf(job, sizeof(job), " job=%lld",
                        (long long) worker_log_job_id);
    }

    if (level < WORKER_LOG_DEBUG || level > WORKER_LOG_ERR) {
        level = WORKER_LOG_ERR;
    }

    n = snprintf(line, sizeof(line), "%s %c %s[%d]%s ", stamp, levels[level],
                 worker_name, (int) getpid(), job);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        return;
    }
    o = (size_t) n;
    worker_redact(msg, line + o, sizeof(line) - o - 1);
    o += strlen(line + o);
    line[o++] = '\n';

    /* one write(2) per line keeps lines whole when processes share stderr */
    (void) !write(STDERR_FILENO, line, o);
}


static void
worker_config_report(void *ctx, bool is_error, const char *key,
    unsigned line, const char *msg)
{
    (void) ctx;

    if (key == NULL) {
        key = "(file)";
    }
    if (is_error) {
        worker_log(WORKER_LOG_ERR, "config error key=%s line=%u: %s", key,
                   line, msg);
    } else {
        worker_log(WORKER_LOG_WARN, "config warning key=%s line=%u: %s", key,
                   line, msg);
    }
}


/* Signals, time, randomness ----------------------------------------------- */

static void
worker_signal_handler(int sig)
{
    /* A second signal means "now": the lease returns the job. */
    if (worker_shutdown_signal != 0) {
        _exit(1);
    }
    worker_shutdown_signal = sig;
}


static int
worker_install_signals(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = worker_signal_handler;
    (void) sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;          /* no SA_RESTART: wake up nanosleep */

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0)
    {
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    (void) sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        return -1;
    }
    return 0;
}


bool
worker_shutdown_requested(void)
{
    return worker_shutdown_signal != 0;
}


static double
worker_monotonic(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


bool
worker_sleep(double seconds)
{
    double  end = worker_monotonic() + seconds;

    while (!worker_shutdown_requested()) {
        double           left = end - worker_monotonic();
        struct timespec  ts;

        if (left <= 0) {
            return true;
        }
        if (left > WORKER_SLEEP_SLICE_S) {
            left = WORKER_SLEEP_SLICE_S;
        }
        ts.tv_sec = (time_t) left;
        ts.tv_nsec = (long) ((left - (double) ts.tv_sec) * 1e9);
        (void) nanosleep(&ts, NULL);
    }
    return false;
}


static void
worker_random_init(void)
{
    uint64_t  seed = 0;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
        struct timespec  ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 20)
               ^ ((uint64_t) getpid() << 40);
    }
    worker_rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}


double
worker_random(void)
{
    /* xorshift64*: jitter only, not for secrets */
    uint64_t  x = worker_rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    worker_rng_state = x;
    return (double) ((x * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}


/* Database ---------------------------------------------------------------- */

bool
worker_pg_transient(PGconn *conn, const PGresult *res)
{
    const char  *state;

    if (conn == NULL || PQstatus(conn) != CONNECTION_OK || res == NULL) {
        return true;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL || strlen(state) != 5) {
        return true;          /* generated by libpq: connection trouble */
    }

    return strncmp(state, "08", 2) == 0          /* connection exception */
           || strncmp(state, "53", 2) == 0       /* insufficient resources */
           || strncmp(state, "58", 2) == 0       /* system error */
           || strcmp(state, "40001") == 0        /* serialization failure */
           || strcmp(state, "40P01") == 0        /* deadlock */
           || strcmp(state, "55P03") == 0        /* lock not available */
           || strcmp(state, "57014") == 0        /* statement timeout */
           || strcmp(state, "57P01") == 0        /* admin shutdown */
           || strcmp(state, "57P02") == 0        /* crash shutdown */
           || strcmp(state, "57P03") == 0;       /* cannot connect now */
}


static void
worker_db_close(worker_t *w)
{
    if (w->conn != NULL) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
}


/* Copies a libpq message into out as one line: whitespace runs (libpq's
 * newlines and tabs) become one space, and the ends are trimmed. */
static void
worker_one_line(const char *msg, char *out, size_t len)
{
    size_t  o = 0;
    bool    space = false;

    for (; *msg != '\0' && o + 1 < len; msg++) {
        if (*msg == ' ' || *msg == '\n' || *msg == '\t' || *msg == '\r') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < len) {
            out[o++] = ' ';
        }
        space = false;
        out[o++] = *msg;
    }
    out[o] = '\0';
}


static void
worker_db_record_error(worker_t *w, const PGresult *res)
{
    const char  *msg = NULL;

    if (res != NULL) {
        msg = PQresultErrorMessage(res);
    }
    if ((msg == NULL || msg[0] == '\0') && w->conn != NULL) {
        msg = PQerrorMessage(w->conn);
    }
    if (msg == NULL || msg[0] == '\0') {
        msg = "unknown database error";
    }
    worker_one_line(msg, w->db_error, sizeof(w->db_error));
    w->db_error_transient = worker_pg_transient(w->conn, res);

    if (w->conn != NULL && PQstatus(w->conn) != CONNECTION_OK) {
        worker_log(WORKER_LOG_WARN, "database connection lost: %s",
                   w->db_error);
        worker_db_close(w);
    }
}


/* Returns true if res has the status a successful statement has. */
static bool
worker_db_ok(worker_t *w, PGresult *res)
{
    ExecStatusType  st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        return true;
    }
    worker_db_record_error(w, res);
    return false;
}


static int
worker_db_connect(worker_t *w)
{
    /* the URI comes last so that its own settings win */
    const char  *keys[] = {
        "connect_timeout", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "application_name", "dbname", NULL
    };
    const char  *values[] = {
        "10", "1", "30", "10", "3", "60000", worker_name,
        w->cfg->db_uri, NULL
    };
    PGresult    *res;
    int          i;

    w->conn = PQconnectdbParams(keys, values, 1);
    if (w->conn == NULL || PQstatus(w->conn) != CONNECTION_OK) {
        worker_one_line(w->conn ? PQerrorMessage(w->conn) : "out of memory",
                        w->db_error, sizeof(w->db_error));
        worker_log(WORKER_LOG_ERR,
                   "cannot connect to the database uri=%s error=\"%s\"",
                   w->cfg->db_uri, w->db_error);
        worker_db_close(w);
        return -1;
    }

    res = PQexec(w->conn, "SET statement_timeout = '60s';"
                          " SET lock_timeout = '10s'");
    if (!worker_db_ok(w, res)) {
        PQclear(res);
        worker_log(WORKER_LOG_ERR, "cannot set up the session: %s",
                   w->db_error);
        worker_db_close(w);
        return -1;
    }
    PQclear(res);

    for (i = 0; i < WORKER_STMT_COUNT; i++) {
        res = PQprepare(w->conn, worker_stmts[i].name, worker_stmts[i].text,
                        worker_stmts[i].nparams, NULL);
        if (!worker_db_ok(w, res)) {
            PQclear(res);
            worker_log(WORKER_LOG_ERR, "cannot prepare %s: %s",
                       worker_stmts[i].name, w->db_error);
            worker_db_close(w);
            return -1;
        }
        PQclear(res);
    }

    worker_log(WORKER_LOG_INFO, "connected to the database server=%s:%s",
               PQhost(w->conn), PQport(w->conn));
    return 0;
}


/*
 * Connects if needed, retrying with capped exponential backoff.  Returns 0
 * when connected, -1 on shutdown or when --once gives up.
 */
static int
worker_db_ensure(worker_t *w)
{
    while (w->conn == NULL) {
        double  delay;

        if (worker_shutdown_requested()) {
            return -1;
        }
        if (worker_db_connect(w) == 0) {
            w->connect_failures = 0;
            return 0;
        }

        w->connect_failures++;
        if (w->once && w->connect_failures >= WORKER_ONCE_CONNECT_TRIES) {
            return -1;
        }

        delay = (double) (1u << (w->connect_failures < 5
                                 ? w->connect_failures : 5));
        if (delay > WORKER_CONNECT_BACKOFF_MAX) {
            delay = WORKER_CONNECT_BACKOFF_MAX;
        }
        delay *= 0.5 + 0.5 * worker_random();
        worker_log(WORKER_LOG_INFO, "reconnecting in %.1fs attempt=%u",
                   delay, w->connect_failures + 1);
        if (!worker_sleep(delay)) {
            return -1;
        }
    }
    return 0;
}


PGresult *
worker_db_exec(worker_t *w, const char *sql, int nparams,
    const char *const *values)
{
    PGresult  *res;

    if (w->conn == NULL) {
        (void) snprintf(w->db_error, sizeof(w->db_error),
                        "not connected to the database");
        w->db_error_transient = true;
        return NULL;
    }

    res = PQexecParams(w->conn, sql, nparams, NULL, values, NULL, NULL, 0);
    if (!worker_db_ok(w, res)) {
        PQclear(res);
        worker_log(WORKER_LOG_WARN, "query failed transient=%s: %s",
                   w->db_error_transient ? "yes" : "no", w->db_error);
        return NULL;
    }
    return res;
}


static PGresult *
worker_db_prepared(worker_t *w, int stmt, const char *const *values)
{
    PGresult  *res;

    if (w->conn == NULL) {
        (void) snprintf(w->db_error, sizeof(w->db_error),
                        "not connected to the database");
        w->db_error_transient = true;
        return NULL;
    }

    res = PQexecPrepared(w->conn, worker_stmts[stmt].name,
                         worker_stmts[stmt].nparams, values, NULL, NULL, 0);
    if (!worker_db_ok(w, res)) {
        PQclear(res);
        worker_log(WORKER_LOG_WARN, "%s failed transient=%s: %s",
                   worker_stmts[stmt].name,
                   w->db_error_transient ? "yes" : "no", w->db_error);
        return NULL;
    }
    return res;
}


worker_job_result_e
worker_db_failure(worker_t *w, worker_job_t *job)
{
    worker_job_error(job, "database: %s", w->db_error);
    return w->db_error_transient ? WORKER_JOB_RETRY : WORKER_JOB_FAIL;
}


int
worker_enqueue(PGconn *conn, const char *queue, const char *body_json,
    const char *dedupe_key, double available_after_delay_s,
    char *err, size_t errlen)
{
    char         delay[64];
    const char  *values[4];
    PGresult    *res;
    int          rc;

    (void) snprintf(delay, sizeof(delay), "%.3f",
                    available_after_delay_s > 0 ? available_after_delay_s
                                                : 0.0);
    values[0] = queue;
    values[1] = body_json;
    values[2] = dedupe_key;
    values[3] = delay;

    res = PQexecParams(conn, worker_enqueue_sql, 4, NULL, values, NULL, NULL,
                       0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (err != NULL && errlen > 0) {
            (void) snprintf(err, errlen, "%s",
                            res ? PQresultErrorMessage(res)
                                : PQerrorMessage(conn));
            err[strcspn(err, "\n")] = '\0';
        }
        PQclear(res);
        return -1;
    }
    rc = PQntuples(res) == 1 ? 1 : 0;
    PQclear(res);
    return rc;
}


/* Jobs -------------------------------------------------------------------- */

void
worker_job_error(worker_job_t *job, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    (void) vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
}


/* Returns 1 with *job filled, 0 if nothing is claimable, -1 on error. */
static int
worker_job_claim(worker_t *w, worker_job_t *job)
{
    char          lease[32];
    const char   *values[3];
    const char   *text;
    json_error_t  jerr;
    PGresult     *res;

    (void) snprintf(lease, sizeof(lease), "%d", w->lease_s);
    values[0] = w->def->queue;
    values[1] = w->owner;
    values[2] = lease;

    res = worker_db_prepared(w, WORKER_STMT_CLAIM, values);
    if (res == NULL) {
        return -1;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return 0;
    }

    memset(job, 0, sizeof(*job));
    job->worker = w;
    job->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    job->retries_remaining = atoi(PQgetvalue(res, 0, 2));
    job->reclaimed = PQgetvalue(res, 0, 3)[0] == 't';
    (void) clock_gettime(CLOCK_MONOTONIC, &job->renewed);

    text = PQgetvalue(res, 0, 1);
    job->body = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (job->body == NULL) {
        worker_job_error(job, "body is not JSON: %s", jerr.text);
    }
    PQclear(res);
    return 1;
}


static int
worker_job_renew_now(worker_job_t *job)
{
    worker_t    *w = job->worker;
    char         id[32], lease[32];
    const char  *values[3];
    PGresult    *res;
    int          n;

    (void) snprintf(id, sizeof(id), "%lld", (long long) job->id);
    (void) snprintf(lease, sizeof(lease), "%d", w->lease_s);
    values[0] = id;
    values[1] = w->owner;
    values[2] = lease;

    res = worker_db_prepared(w, WORKER_STMT_RENEW, values);
    if (res == NULL) {
        return -1;
    }
    n = atoi(PQcmdTuples(res));
    PQclear(res);
    if (n != 1) {
        worker_log(WORKER_LOG_WARN, "lease lost owner=%s", w->owner);
        return -1;
    }
    (void) clock_gettime(CLOCK_MONOTONIC, &job->renewed);
    worker_log(WORKER_LOG_DEBUG, "lease renewed lease=%ds", w->lease_s);
    return 0;
}


int
worker_job_renew(worker_job_t *job)
{
    return worker_job_renew_now(job);
}


int
worker_job_heartbeat(worker_job_t *job)
{
    double  last = (double) job->renewed.tv_sec
                   + (double) job->renewed.tv_nsec / 1e9;

    if (worker_monotonic() - last < (double) job->worker->lease_s / 3.0) {
        return 0;
    }
    return worker_job_renew_now(job);
}


/*
 * Runs one outcome statement for job; returns the result (caller clears)
 * or NULL.  A NULL result or zero rows means the job now belongs to its
 * lease: another worker will (or did) take it over.
 */
static PGresult *
worker_job_record(worker_job_t *job, int stmt, const char *arg3,
    const char *arg4)
{
    worker_t    *w = job->worker;
    char         id[32];
    const char  *values[4];
    PGresult    *res;

    (void) snprintf(id, sizeof(id), "%lld", (long long) job->id);
    values[0] = id;
    values[1] = w->owner;
    values[2] = arg3;
    values[3] = arg4;

    res = worker_db_prepared(w, stmt, values);
    if (res == NULL) {
        worker_log(WORKER_LOG_WARN,
                   "outcome not recorded, the lease will expire");
        return NULL;
    }
    if (atoi(PQcmdTuples(res)) != 1) {
        worker_log(WORKER_LOG_WARN,
                   "outcome not recorded: the lease was lost owner=%s",
                   w->owner);
    }
    return res;
}


static void
worker_job_give_back(worker_job_t *job, const char *why)
{
    PQclear(worker_job_record(job, WORKER_STMT_RELEASE,
                              job->error[0] ? job->error : NULL, NULL));
    worker_metrics_inc(WORKER_METRIC_GIVEN_BACK);
    worker_log(WORKER_LOG_INFO, "given back reason=%s retries=%d", why,
               job->retries_remaining);
}


static void
worker_job_retry(worker_job_t *job)
{
    worker_t  *w = job->worker;
    char       backoff_s[32];
    double     backoff;
    int        shift;
    PGresult  *res;

    shift = WORKER_MAX_RETRIES_SHIFT - job->retries_remaining;
    if (shift < 0) {
        shift = 0;
    }
    if (shift > 16) {
        shift = 16;
    }
    backoff = (double) w->retry_base_s * (double) (1u << shift);
    if (backoff > WORKER_MAX_BACKOFF_S) {
        backoff = WORKER_MAX_BACKOFF_S;
    }
    backoff *= 0.75 + 0.5 * worker_random();
    (void) snprintf(backoff_s, sizeof(backoff_s), "%.3f", backoff);

    if (job->error[0] == '\0') {
        worker_job_error(job, "transient failure");
    }

    worker_metrics_inc(WORKER_METRIC_RETRIED);

    res = worker_job_record(job, WORKER_STMT_RETRY, backoff_s, job->error);
    if (res != NULL && PQntuples(res) == 1) {
        const char  *state = PQgetvalue(res, 0, 1);

        if (strcmp(state, "failed") == 0) {
            worker_log(WORKER_LOG_ERR,
                       "failed: out of retries error=\"%s\"",
                       job->error);
        } else {
            worker_log(WORKER_LOG_WARN,
                       "retry in=%.1fs retries=%s error=\"%s\"", backoff,
                       PQgetvalue(res, 0, 0), job->error);
        }
    }
    PQclear(res);
}


static void
worker_job_fail(worker_job_t *job)
{
    if (job->error[0] == '\0') {
        worker_job_error(job, "failed");
    }
    PQclear(worker_job_record(job, WORKER_STMT_FAIL, job->error, NULL));
    worker_metrics_inc(WORKER_METRIC_FAILED);
    worker_log(WORKER_LOG_ERR, "failed error=\"%s\"", job->error);
}


/*
 * Runs a claimed job and records its outcome.  Returns 0, or 1 when the
 * worker must exit with status 1 (WORKER_JOB_STOP).
 */
static int
worker_job_process(worker_t *w, worker_job_t *job)
{
    worker_job_result_e  rc;
    double               start = worker_monotonic();

    worker_log_job_id = job->id;
    worker_metrics_inc(WORKER_METRIC_CLAIMED);
    if (job->reclaimed) {
        worker_metrics_inc(WORKER_METRIC_LEASE_EXPIRED);
    }
    worker_log(WORKER_LOG_INFO, "claimed retries=%d%s",
               job->retries_remaining,
               job->reclaimed ? " reclaimed=yes" : "");

    if (job->reclaimed && job->retries_remaining <= 0) {
        worker_job_error(job, "the lease expired on every attempt"
                              " (worker crashed or hung)");
        worker_job_fail(job);
        goto done;
    }

    if (job->body == NULL) {
        worker_job_fail(job);
        goto done;
    }

    if (worker_hold_s > 0) {
        worker_log(WORKER_LOG_INFO, "test hold seconds=%.1f", worker_hold_s);
        if (!worker_sleep(worker_hold_s)) {
            worker_job_give_back(job, "shutdown");
            goto done;
        }
    }

    rc = w->def->run_job(w, job, w->def->ctx);

    switch (rc) {

    case WORKER_JOB_DONE:
        PQclear(worker_job_record(job, WORKER_STMT_COMPLETE, NULL, NULL));
        worker_metrics_inc(WORKER_METRIC_DONE);
        worker_log(WORKER_LOG_INFO, "done ms=%.0f",
                   (worker_monotonic() - start) * 1000);
        break;

    case WORKER_JOB_RETRY:
        /* a job interrupted by shutdown keeps its retry (Quay's
         * incomplete(restore_retry=True)) */
        if (worker_shutdown_requested()) {
            worker_job_give_back(job, "shutdown");
        } else {
            worker_job_retry(job);
        }
        break;

    case WORKER_JOB_FAIL:
        worker_job_fail(job);
        break;

    case WORKER_JOB_STOP:
    default:
        if (job->error[0] == '\0') {
            worker_job_error(job, "worker stopped");
        }
        worker_log(WORKER_LOG_ERR, "worker unhealthy error=\"%s\"",
                   job->error);
        worker_job_give_back(job, "unhealthy");
        json_decref(job->body);
        job->body = NULL;
        worker_log_job_id = 0;
        return 1;
    }

done:
    json_decref(job->body);
    job->body = NULL;
    worker_log_job_id = 0;
    return 0;
}


/* Writes the metrics textfile; a failure is a warning, never fatal. */
static void
worker_metrics_flush(void)
{
    if (worker_metrics_write() != 0) {
        worker_log(WORKER_LOG_WARN, "cannot write the metrics textfile"
                   " error=\"%s\"", strerror(errno));
    }
}


/* Command line and main loop ---------------------------------------------- */

static void
worker_usage(const worker_def_t *def, FILE *out)
{
    fprintf(out,
            "usage: %s --config FILE [--once] [--verbose] [--lease SECONDS]\n"
            "       [--poll SECONDS] [--retry-base SECONDS]"
            " [--metrics-textfile PATH]%s%s\n",
            def->name, def->usage ? "\n       " : "",
            def->usage ? def->usage : "");
}


static int
worker_parse_int(const char *s, int min, int max, int *out)
{
    char  *end;
    long   v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (int) v;
    return 0;
}


/* Returns 0, or the exit status for a usage error or --help. */
static int
worker_parse_args(worker_t *w, int argc, char **argv, bool *help)
{
    const worker_def_t  *def = w->def;
    int                  i, n;

    *help = false;

    for (i = 1; i < argc; i++) {
        const char  *a = argv[i];
        const char  *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = true;
            return 0;
        }
        if (strcmp(a, "--once") == 0) {
            w->once = true;
            continue;
        }
        if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            worker_verbosity = WORKER_LOG_DEBUG;
            continue;
        }
        if (strcmp(a, "--config") == 0 && v != NULL) {
            w->config_path = v;
            i++;
            continue;
        }
        if (strcmp(a, "--metrics-textfile") == 0 && v != NULL) {
            worker_metrics_init(v, def->name);
            i++;
            continue;
        }
        if (strcmp(a, "--lease") == 0 && v != NULL) {
            if (worker_parse_int(v, 1, 86400, &w->lease_s) != 0) {
                fprintf(stderr, "%s: --lease wants 1..86400 seconds\n",
                        def->name);
                return 2;
            }
            i++;
            continue;
        }
        if (strcmp(a, "--poll") == 0 && v != NULL) {
            if (worker_parse_int(v, 1, 86400, &w->poll_s) != 0) {
                fprintf(stderr, "%s: --poll wants 1..86400 seconds\n",
                        def->name);
                return 2;
            }
            i++;
            continue;
        }
        if (strcmp(a, "--retry-base") == 0 && v != NULL) {
            if (worker_parse_int(v, 0, WORKER_MAX_BACKOFF_S,
                                 &w->retry_base_s) != 0)
            {
                fprintf(stderr, "%s: --retry-base wants 0..%d seconds\n",
                        def->name, WORKER_MAX_BACKOFF_S);
                return 2;
            }
            i++;
            continue;
        }

        n = def->parse_arg ? def->parse_arg(def->ctx, argc, argv, i) : 0;
        if (n > 0) {
            i += n - 1;
            continue;
        }
        if (n == 0) {
            fprintf(stderr, "%s: unknown or incomplete option \"%s\"\n",
                    def->name, a);
        }
        worker_usage(def, stderr);
        return 2;
    }

    if (w->config_path == NULL) {
        fprintf(stderr, "%s: --config FILE is required\n", def->name);
        worker_usage(def, stderr);
        return 2;
    }
    return 0;
}


static void
worker_make_owner(worker_t *w)
{
    char      host[128];
    uint32_t  r = (uint32_t) (worker_random() * 4294967296.0);

    if (gethostname(host, sizeof(host)) != 0) {
        (void) snprintf(host, sizeof(host), "unknown");
    }
    host[sizeof(host) - 1] = '\0';
    (void) snprintf(w->owner, sizeof(w->owner), "%s:%d:%08x", host,
                    (int) getpid(), r);
}


static void
worker_read_test_hold(void)
{
    const char  *s = getenv("QUAY_WORKER_TEST_HOLD_SECONDS");
    char        *end;
    double       v;

    if (s == NULL || *s == '\0') {
        return;
    }
    v = strtod(s, &end);
    if (*end == '\0' && v > 0 && v < 86400) {
        worker_hold_s = v;
        worker_log(WORKER_LOG_WARN,
                   "QUAY_WORKER_TEST_HOLD_SECONDS=%.1f: holding every job",
                   v);
    }
}


int
worker_main(int argc, char **argv, const worker_def_t *def)
{
    worker_t      w;
    worker_job_t  job;
    quay_err_t    err;
    bool          help;
    int           status = 0, rc, scans = 0;

    memset(&w, 0, sizeof(w));
    w.def = def;
    w.lease_s = def->lease_s > 0 ? def->lease_s : WORKER_DEFAULT_LEASE_S;
    w.poll_s = def->poll_s > 0 ? def->poll_s : WORKER_DEFAULT_POLL_S;
    w.retry_base_s = WORKER_DEFAULT_RETRY_S;
    worker_name = def->name;

    rc = worker_parse_args(&w, argc, argv, &help);
    if (help) {
        worker_usage(def, stdout);
        return 0;
    }
    if (rc != 0) {
        return rc;
    }

    worker_random_init();
    worker_make_owner(&w);
    worker_read_test_hold();

    if (worker_install_signals() != 0) {
        worker_log(WORKER_LOG_ERR, "sigaction failed: %s", strerror(errno));
        return 1;
    }

    memset(&err, 0, sizeof(err));
    w.cfg = quay_config_load(w.config_path, worker_config_report, NULL,
                             &err);
    if (w.cfg == NULL) {
        worker_log(WORKER_LOG_ERR, "cannot load config file=%s: %s",
                   w.config_path, err.msg);
        return 1;
    }
    if (w.cfg->db_uri == NULL || w.cfg->db_uri[0] == '\0') {
        worker_log(WORKER_LOG_ERR, "config has no DB_URI file=%s",
                   w.config_path);
        status = 1;
        goto done;
    }

    if (def->init != NULL && def->init(&w, def->ctx) != 0) {
        status = 1;
        goto done;
    }

    worker_log(WORKER_LOG_INFO,
               "started queue=%s owner=%s lease=%ds poll=%ds%s", def->queue,
               w.owner, w.lease_s, w.poll_s, w.once ? " once=yes" : "");

    while (!worker_shutdown_requested()) {

        if (worker_db_ensure(&w) != 0) {
            if (!worker_shutdown_requested()) {
                worker_log(WORKER_LOG_ERR, "giving up on the database");
                status = 1;
            }
            break;
        }

        rc = worker_job_claim(&w, &job);

        if (rc == 1) {
            if (worker_job_process(&w, &job) != 0) {
                status = 1;
                break;
            }
            worker_metrics_flush();
            continue;
        }

        if (rc < 0) {
            if (w.conn == NULL) {
                continue;               /* reconnect with backoff */
            }
            if (w.once) {
                status = 1;
                break;
            }
            (void) worker_sleep(w.poll_s * (0.8 + 0.4 * worker_random()));
            continue;
        }

        /*
         * Nothing claimable: look for new work, then rest.  A scan that
         * keeps queueing jobs which finish without consuming what it
         * found (scan and job disagreeing, say two replicas with different
         * thresholds) must not spin: after WORKER_MAX_SCANS scans in a row
         * the loop rests anyway.
         */
        if (def->scan != NULL) {
            rc = def->scan(&w, def->ctx);
            if (rc > 0 && ++scans < WORKER_MAX_SCANS) {
                continue;
            }
            if (rc > 0) {
                worker_log(WORKER_LOG_WARN, "scan keeps finding work,"
                           " resting scans=%d", scans);
            }
            if (rc < 0 && w.once) {
                status = 1;
                break;
            }
        }
        scans = 0;

        if (w.once) {
            worker_log(WORKER_LOG_INFO, "queue empty, exiting (--once)");
            break;
        }
        worker_metrics_flush();
        worker_log(WORKER_LOG_DEBUG, "idle");
        (void) worker_sleep(w.poll_s * (0.8 + 0.4 * worker_random()));
    }

    if (worker_shutdown_requested()) {
        worker_log(WORKER_LOG_INFO, "shutting down signal=%d",
                   (int) worker_shutdown_signal);
    }

    worker_metrics_flush();

done:
    if (def->cleanup != NULL) {
        def->cleanup(&w, def->ctx);
    }
    worker_db_close(&w);
    quay_config_free(w.cfg);
    return status;
}
