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
 *          missing object is fine, any other storage error is a retry),
 *          then delete the row, again only if it is still expired.  The
 *          object goes first: a worker killed between the two leaves a row
 *          without an object, which the next attempt finishes, never an
 *          object without a row, which nothing would find again.
 *
 * Expiry is always computed by the database (now()), never the local clock
 * (security catalogue B5 65).  The uuid is validated before it is used in
 * a storage key.  With S3 (later), Quay keeps one object per chunk, listed
 * in storage_metadata; this worker then deletes those keys too.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage.h"
#include "worker.h"


#define UPLOAD_CLEANUP_QUEUE       "blobuploadcleanup"
#define UPLOAD_CLEANUP_SCAN_BATCH  "1000"


typedef struct {
    int64_t       threshold_min;      /* -1 until set by option or config */
    storage_t   **storage;            /* owned; one per cfg->storage[] */
    size_t        nstorage;
} upload_cleanup_t;


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
    "       b.created < now() - $2::bigint * interval '1 minute'"
    "  FROM blobupload b"
    "  JOIN imagestoragelocation l ON l.id = b.location_id"
    " WHERE b.uuid = $1";

/* $1 uuid, $2 threshold minutes: the expiry is checked again here. */
static const char  upload_cleanup_delete_sql[] =
    "DELETE FROM blobupload"
    " WHERE uuid = $1"
    "   AND created < now() - $2::bigint * interval '1 minute'";


static upload_cleanup_t  upload_cleanup = { -1, NULL, 0 };


static int
upload_cleanup_parse_arg(void *ctx, int argc, char **argv, int i)
{
    upload_cleanup_t  *uc = ctx;
    char              *end;
    long long          v;

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

    /* A location whose driver the workers lack yet is skipped: its jobs
     * fail with a clear error and are not requeued for a day. */
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


static int
upload_cleanup_scan(worker_t *w, void *ctx)
{
    upload_cleanup_t  *uc = ctx;
    char               threshold[32];
    const char        *values[3];
    PGresult          *res;
    int                n;

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
    char               threshold[32], key[64], err[STORAGE_ERR_LEN];
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
    PQclear(res);

    if (storage_upload_key(uuid, key, sizeof(key)) != STORAGE_OK) {
        worker_job_error(job, "cannot build the upload key");
        return WORKER_JOB_FAIL;
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
    .usage = "[--threshold-minutes MINUTES]",
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
