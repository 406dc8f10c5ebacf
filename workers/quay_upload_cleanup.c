/*
 * DESIGN
 *
 * quay-upload-cleanup: Quay's blobuploadcleanupworker.  An upload session
 * (a blobupload row plus its scratch object uploads/<uuid>) that is older
 * than BLOBUPLOAD_DELETION_DATE_THRESHOLD minutes (default 2880, two days)
 * is abandoned: its object and its row are deleted.  Nothing else is ever
 * deleted: blobs under sha256/ and younger uploads stay.
 *
 * Two steps, both safe to run in any number of replicas:
 *
 *   scan   when the queue is idle (and at startup), one INSERT ... SELECT
 *          queues a "blobuploadcleanup" job per expired row, body
 *          {"uuid", "location"}, dedupe_key = uuid, so a row already queued
 *          is not queued twice.  A row whose job failed within the last day
 *          is left alone until then, so a broken row costs one failed job a
 *          day, not one per poll.  At most SCAN_BATCH rows per scan; the
 *          loop scans again once those are done.
 *
 *   job    look the row up by uuid (gone: done, the job is idempotent);
 *          if it is no longer expired, done; else delete the object (a
 *          missing object is fine, any other storage error is a retry;
 *          in an object store also the session's multipart upload and
 *          its uploads/<uuid>.tail, the bytes past the last part that
 *          the module stores at the end of each PATCH),
 *          then delete the row, again only if it is still expired.  The
 *          object goes first: a worker killed between the two leaves a row
 *          without an object, which the next attempt finishes, never an
 *          object without a row, which nothing would find again.
 *
 *   sweep  also when the queue is idle, at most every --mpu-interval
 *          seconds (default 3600): in every location, each multipart
 *          upload under uploads/ or sha256/ that was initiated more than
 *          the threshold ago is aborted (Quay's stale MPU cleanup).  Those
 *          are what a dead upload session (the module's uploads/<uuid>),
 *          a dead commit (a multipart copy to sha256/...) or a dead
 *          replication copy (uploads/replicate-<uuid>) leave behind; a
 *          live upload session's upload is younger than its row, which is
 *          younger than the threshold, so it is never touched.  Several
 *          replicas may sweep at once: an upload already aborted is fine.
 *
 * Expiry is always computed by the database (now()), never the local clock
 * (security catalogue B5 65); the sweep compares the storage's "Initiated"
 * times with the database's clock too.  The uuid is validated before it is
 * used in a storage key.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage.h"
#include "worker.h"


#define UPLOAD_CLEANUP_QUEUE       "blobuploadcleanup"
#define UPLOAD_CLEANUP_SCAN_BATCH  "1000"


typedef struct {
    int64_t       threshold_min;      /* -1 until set by option or config */
    storage_t   **storage;            /* owned; one per cfg->storage[] */
    size_t        nstorage;
    int64_t       mpu_interval_s;     /* --mpu-interval */
    double        mpu_last;           /* CLOCK_MONOTONIC of the last sweep */
    bool          mpu_swept;
} upload_cleanup_t;


/* One sweep of one location. */
typedef struct {
    storage_t    *storage;
    time_t        cutoff;             /* database clock - threshold */
    int           aborted;
    int           kept;
    int           failed;
} upload_cleanup_sweep_t;


/* $1 queue, $2 threshold minutes, $3 batch. */
static const char  upload_cleanup_scan_sql[] =
    "INSERT INTO queueitem (queue_name, body, dedupe_key)"
    " SELECT $1::text,"
    "        jsonb_build_object('uuid', b.uuid, 'location', l.name),"
    "        b.uuid"
    "   FROM blobupload b"
    "   JOIN imagestoragelocation l ON l.id = b.location_id"
    "  WHERE b.created < now() - $2::bigint * interval '1 minute'"
    "    AND NOT EXISTS (SELECT 1 FROM queueitem f"
    "                     WHERE f.queue_name = $1::text"
    "                       AND f.dedupe_key = b.uuid"
    "                       AND f.state = 'failed'"
    "                       AND f.updated > now() - interval '1 day')"
    "  ORDER BY b.created"
    "  LIMIT $3::int"
    " ON CONFLICT (queue_name, dedupe_key)"
    "   WHERE dedupe_key IS NOT NULL AND state = 'queued'"
    " DO NOTHING";

/* $1 uuid, $2 threshold minutes. */
static const char  upload_cleanup_lookup_sql[] =
    "SELECT l.name,"
    "       b.created < now() - $2::bigint * interval '1 minute',"
    "       coalesce(b.storage_metadata->>'upload_id', '')"
    "  FROM blobupload b"
    "  JOIN imagestoragelocation l ON l.id = b.location_id"
    " WHERE b.uuid = $1";

/* $1 uuid, $2 threshold minutes: the expiry is checked again here. */
static const char  upload_cleanup_delete_sql[] =
    "DELETE FROM blobupload"
    " WHERE uuid = $1"
    "   AND created < now() - $2::bigint * interval '1 minute'";


/* the database's clock, in seconds since the epoch */
static const char  upload_cleanup_now_sql[] =
    "SELECT floor(extract(epoch FROM now()))::bigint";


static upload_cleanup_t  upload_cleanup = { -1, NULL, 0, 3600, 0, false };


static int
upload_cleanup_parse_arg(void *ctx, int argc, char **argv, int i)
{
    upload_cleanup_t  *uc = ctx;
    char              *end;
    long long          v;

    if (strcmp(argv[i], "--mpu-interval") == 0) {
        if (i + 1 >= argc) {
            fprintf(stderr, "quay-upload-cleanup: --mpu-interval needs a"
                            " value\n");
            return -1;
        }
        errno = 0;
        v = strtoll(argv[i + 1], &end, 10);
        if (errno != 0 || end == argv[i + 1] || *end != '\0' || v < 0
            || v > 31536000)
        {
            fprintf(stderr, "quay-upload-cleanup: --mpu-interval wants"
                            " 0..31536000 seconds\n");
            return -1;
        }
        uc->mpu_interval_s = v;
        return 2;
    }

    if (strcmp(argv[i], "--threshold-minutes") != 0) {
        return 0;
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "quay-upload-cleanup: --threshold-minutes needs a"
                        " value\n");
        return -1;
    }
    errno = 0;
    v = strtoll(argv[i + 1], &end, 10);
    if (errno != 0 || end == argv[i + 1] || *end != '\0' || v < 0
        || v > 52560000)
    {
        fprintf(stderr, "quay-upload-cleanup: --threshold-minutes wants"
                        " 0..52560000\n");
        return -1;
    }
    uc->threshold_min = v;
    return 2;
}


static int
upload_cleanup_init(worker_t *w, void *ctx)
{
    upload_cleanup_t  *uc = ctx;
    char               err[STORAGE_ERR_LEN];
    size_t             i;

    if (uc->threshold_min < 0) {
        uc->threshold_min = w->cfg->blobupload_deletion_date_threshold;
    }
    if (uc->threshold_min < 0) {
        worker_log(WORKER_LOG_ERR, "BLOBUPLOAD_DELETION_DATE_THRESHOLD"
                   " must not be negative");
        return -1;
    }

    /* A location that cannot be opened (a bad configuration) is skipped:
     * its jobs fail with a clear error and are not requeued for a day. */
    uc->nstorage = w->cfg->nstorage;
    uc->storage = xcalloc(uc->nstorage, sizeof(storage_t *));
    for (i = 0; i < uc->nstorage; i++) {
        uc->storage[i] = storage_open(&w->cfg->storage[i], err, sizeof(err));
        if (uc->storage[i] == NULL) {
            worker_log(WORKER_LOG_WARN, "storage location skipped: %s", err);
        }
    }

    worker_log(WORKER_LOG_INFO, "upload threshold=%lldmin locations=%zu",
               (long long) uc->threshold_min, uc->nstorage);
    return 0;
}


static void
upload_cleanup_cleanup(worker_t *w, void *ctx)
{
    upload_cleanup_t  *uc = ctx;
    size_t             i;

    (void) w;
    for (i = 0; i < uc->nstorage; i++) {
        if (uc->storage[i] != NULL) {
            storage_close(uc->storage[i]);
        }
    }
    free(uc->storage);
    uc->storage = NULL;
    uc->nstorage = 0;
}


static void
upload_cleanup_mpu_visit(void *ctx, const char *key, const char *upload_id,
    time_t initiated)
{
    upload_cleanup_sweep_t  *sw = ctx;
    char                     err[STORAGE_ERR_LEN];
    int                      rc;

    if (initiated == 0 || initiated >= sw->cutoff) {
        sw->kept++;
        return;
    }

    rc = storage_mpu_abort(sw->storage, key, upload_id, err, sizeof(err));
    if (rc == STORAGE_OK || rc == STORAGE_ENOENT) {
        sw->aborted++;
        worker_log(WORKER_LOG_INFO, "aborted a stale multipart upload"
                   " location=%s key=%s age=%llds",
                   storage_location_name(sw->storage), key,
                   (long long) (sw->cutoff - initiated));
    } else {
        sw->failed++;
        worker_log(WORKER_LOG_WARN, "cannot abort a stale multipart upload"
                   " key=%s: %s", key, err);
    }
}


/* Aborts multipart uploads older than the threshold (see DESIGN). */
static void
upload_cleanup_sweep(worker_t *w, upload_cleanup_t *uc)
{
    static const char       *prefixes[] = { "uploads/", "sha256/" };
    upload_cleanup_sweep_t   sw;
    struct timespec          ts;
    double                   now;
    char                     err[STORAGE_ERR_LEN];
    PGresult                *res;
    time_t                   db_now;
    size_t                   i, j;
    int                      rc;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
    if (uc->mpu_swept && now - uc->mpu_last < (double) uc->mpu_interval_s) {
        return;
    }

    res = worker_db_exec(w, upload_cleanup_now_sql, 0, NULL);
    if (res == NULL) {
        return;
    }
    db_now = (time_t) strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);

    uc->mpu_swept = true;
    uc->mpu_last = now;

    for (i = 0; i < uc->nstorage; i++) {
        if (uc->storage[i] == NULL) {
            continue;
        }
        memset(&sw, 0, sizeof(sw));
        sw.storage = uc->storage[i];
        sw.cutoff = db_now - (time_t) (uc->threshold_min * 60);

        for (j = 0; j < sizeof(prefixes) / sizeof(prefixes[0]); j++) {
            rc = storage_mpu_list(uc->storage[i], prefixes[j],
                                  upload_cleanup_mpu_visit, &sw, err,
                                  sizeof(err));
            if (rc != STORAGE_OK) {
                worker_log(WORKER_LOG_WARN, "cannot list multipart uploads"
                           " location=%s: %s",
                           storage_location_name(uc->storage[i]), err);
                break;
            }
        }
        worker_log(sw.aborted ? WORKER_LOG_INFO : WORKER_LOG_DEBUG,
                   "multipart sweep location=%s aborted=%d kept=%d"
                   " failed=%d", storage_location_name(uc->storage[i]),
                   sw.aborted, sw.kept, sw.failed);
    }
}


static int
upload_cleanup_scan(worker_t *w, void *ctx)
{
    upload_cleanup_t  *uc = ctx;
    char               threshold[32];
    const char        *values[3];
    PGresult          *res;
    int                n;

    upload_cleanup_sweep(w, uc);

    (void) snprintf(threshold, sizeof(threshold), "%lld",
                    (long long) uc->threshold_min);
    values[0] = UPLOAD_CLEANUP_QUEUE;
    values[1] = threshold;
    values[2] = UPLOAD_CLEANUP_SCAN_BATCH;

    res = worker_db_exec(w, upload_cleanup_scan_sql, 3, values);
    if (res == NULL) {
        worker_log(WORKER_LOG_WARN, "scan failed");
        return -1;
    }
    n = atoi(PQcmdTuples(res));
    PQclear(res);

    if (n > 0) {
        worker_log(WORKER_LOG_INFO, "scan queued expired uploads count=%d",
                   n);
    } else {
        worker_log(WORKER_LOG_DEBUG, "scan found nothing new");
    }
    return n;
}


static storage_t *
upload_cleanup_storage(upload_cleanup_t *uc, worker_t *w, const char *name)
{
    size_t  i;

    for (i = 0; i < uc->nstorage; i++) {
        if (strcmp(w->cfg->storage[i].name, name) == 0) {
            return uc->storage[i];
        }
    }
    return NULL;
}


static worker_job_result_e
upload_cleanup_run(worker_t *w, worker_job_t *job, void *ctx)
{
    upload_cleanup_t  *uc = ctx;
    const char        *uuid, *location, *values[2];
    char               threshold[32], key[64], tail[72];
    char               err[STORAGE_ERR_LEN];
    char               upload_id[STORAGE_UPLOAD_ID_MAX];
    storage_t         *s;
    PGresult          *res;
    int                rc;

    uuid = json_string_value(json_object_get(job->body, "uuid"));
    if (!storage_uuid_valid(uuid)) {
        worker_job_error(job, "body has no valid uuid");
        return WORKER_JOB_FAIL;
    }

    (void) snprintf(threshold, sizeof(threshold), "%lld",
                    (long long) uc->threshold_min);
    values[0] = uuid;
    values[1] = threshold;

    res = worker_db_exec(w, upload_cleanup_lookup_sql, 2, values);
    if (res == NULL) {
        return worker_db_failure(w, job);
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        worker_log(WORKER_LOG_INFO, "upload already gone uuid=%s", uuid);
        return WORKER_JOB_DONE;
    }
    if (PQgetvalue(res, 0, 1)[0] != 't') {
        PQclear(res);
        worker_log(WORKER_LOG_INFO, "upload not expired, kept uuid=%s",
                   uuid);
        return WORKER_JOB_DONE;
    }

    /* the row's location is authoritative; the body's is informative */
    location = PQgetvalue(res, 0, 0);
    s = upload_cleanup_storage(uc, w, location);
    if (s == NULL) {
        worker_job_error(job, "storage location \"%s\" is not usable here",
                         location);
        PQclear(res);
        return WORKER_JOB_FAIL;
    }
    (void) snprintf(upload_id, sizeof(upload_id), "%s",
                    PQgetvalue(res, 0, 2));
    PQclear(res);

    if (storage_upload_key(uuid, key, sizeof(key)) != STORAGE_OK) {
        worker_job_error(job, "cannot build the upload key");
        return WORKER_JOB_FAIL;
    }

    /* S3: the spooled tail is an object of its own, next to the key;
     * it goes first, like the upload object, so that a retry finds it */
    if (storage_is_object_store(s)) {
        (void) snprintf(tail, sizeof(tail), "%s.tail", key);
        rc = storage_remove(s, tail, err, sizeof(err));
        if (rc == STORAGE_EUNAVAIL) {
            worker_job_error(job, "storage: %s", err);
            return WORKER_JOB_STOP;
        }
        if (rc != STORAGE_OK && rc != STORAGE_ENOENT) {
            worker_job_error(job, "storage: %s", err);
            return WORKER_JOB_RETRY;
        }
    }

    /* S3: the session's parts are a multipart upload at the same key */
    if (upload_id[0] != '\0' && storage_is_object_store(s)) {
        rc = storage_mpu_abort(s, key, upload_id, err, sizeof(err));
        if (rc == STORAGE_OK) {
            worker_log(WORKER_LOG_DEBUG, "multipart upload aborted key=%s",
                       key);
        } else if (rc != STORAGE_ENOENT) {
            worker_job_error(job, "storage: %s", err);
            return WORKER_JOB_RETRY;
        }
    }

    rc = storage_remove(s, key, err, sizeof(err));
    switch (rc) {
    case STORAGE_OK:
        worker_log(WORKER_LOG_DEBUG, "upload object deleted key=%s", key);
        break;
    case STORAGE_ENOENT:
        worker_log(WORKER_LOG_DEBUG, "upload object already gone key=%s",
                   key);
        break;
    case STORAGE_EUNAVAIL:
        /* not this job's fault: give it back and let systemd restart us */
        worker_job_error(job, "storage: %s", err);
        return WORKER_JOB_STOP;
    default:
        worker_job_error(job, "storage: %s", err);
        return WORKER_JOB_RETRY;
    }

    res = worker_db_exec(w, upload_cleanup_delete_sql, 2, values);
    if (res == NULL) {
        return worker_db_failure(w, job);
    }
    rc = atoi(PQcmdTuples(res));
    PQclear(res);

    worker_log(WORKER_LOG_INFO, "upload cleaned uuid=%s location=%s rows=%d",
               uuid, storage_location_name(s), rc);
    return WORKER_JOB_DONE;
}


static const worker_def_t  upload_cleanup_def = {
    .name = "quay-upload-cleanup",
    .queue = UPLOAD_CLEANUP_QUEUE,
    .poll_s = 30,
    .lease_s = 300,
    .parse_arg = upload_cleanup_parse_arg,
    .usage = "[--threshold-minutes MINUTES] [--mpu-interval SECONDS]",
    .init = upload_cleanup_init,
    .scan = upload_cleanup_scan,
    .run_job = upload_cleanup_run,
    .cleanup = upload_cleanup_cleanup,
    .ctx = &upload_cleanup,
};


int
main(int argc, char **argv)
{
    return worker_main(argc, argv, &upload_cleanup_def);
}
