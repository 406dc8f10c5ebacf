/*
 * DESIGN
 *
 * quay-replicate: Quay's storagereplication worker (quay-behaviour 5.2).
 * With FEATURE_STORAGE_REPLICATION on, every manifest push queues one job
 * per blob that lacks a placement in a required location, in the same
 * statement as the push (lib/quay_sql_manifest.def, QUAY_SQL_MANIFEST_PUT):
 * queue "imagestoragereplication/", body {"namespace_user_id",
 * "storage_id" (imagestorage.uuid)}.  Required locations are
 * DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS plus the namespace's userregion
 * rows; the placements (imagestorageplacement) say where the bytes are.
 *
 * A job, for each required location the blob is missing from:
 *
 *   1. source: the first placement in DISTRIBUTED_STORAGE_PREFERENCE
 *      order (then the others) whose object exists with the row's size;
 *      if every holder says "no such object", the job fails with that
 *      reason (retrying cannot help); any other source error is a retry;
 *   2. clean up after an earlier attempt that died: abort every multipart
 *      upload under uploads/replicate-<storage uuid> in the target and
 *      delete a completed temporary object there;
 *   3. copy: parts of PART bytes (8 MiB, more for blobs over 80 GB so
 *      that S3's 10,000 parts suffice) are read from the source with
 *      ranged GETs into one buffer, hashed, and uploaded as parts of a
 *      multipart upload at uploads/replicate-<storage uuid>; the lease is
 *      renewed between parts and during transfers.  Memory is one part,
 *      whatever the blob size;
 *   4. verify: the SHA-256 and the length of the streamed bytes must be
 *      the digest and the size of the row, else the upload is aborted and
 *      the next source is tried (no source left: the job fails);
 *   5. complete the multipart upload, then move the object to the content
 *      address sha256/<xx>/<hex> (a server-side copy, then the temporary
 *      object is deleted), and check its size there;
 *   6. insert the placement, ON CONFLICT DO NOTHING.
 *
 * A blob that fits in one part goes to its content address in one
 * PutObject after step 4 (signed with its SHA-256, so the storage checks
 * it too): nothing is at the content address before it was verified.
 *
 * Crashes (ARCHITECTURE rule 6).  A worker killed at any point leaves at
 * most an uncompleted multipart upload (invisible to readers, since they
 * go by placements and content addresses) or a completed temporary
 * object; the job's lease expires, the next claim runs it again, step 2
 * removes the leftovers and the placement is inserted once.  A copy that
 * reached the content address before the kill is simply written again
 * (same bytes).  Leftovers of a job that fails for good are aborted by
 * quay-upload-cleanup (stale multipart uploads) after
 * BLOBUPLOAD_DELETION_DATE_THRESHOLD.
 *
 * Outcomes: storage errors (5xx, connection, timeouts, a location that is
 * down or refuses us) are WORKER_JOB_RETRY, with the loop's jittered
 * exponential backoff; a missing source, a digest mismatch everywhere or
 * a required location this worker has no configuration for are
 * WORKER_JOB_FAIL with the reason in last_error; a blob row that is gone
 * is done.  Unlike Quay, LocalStorage locations are supported (a shared
 * mount per region is a valid deployment).
 *
 * Test hook: QUAY_REPLICATE_TEST_PART_PAUSE_SECONDS=N sleeps N seconds
 * after each uploaded part, so a test can kill the worker mid-copy.  It
 * is inert unless set.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quay_sha256.h"
#include "storage.h"
#include "worker.h"


#define REPLICATE_QUEUE        "imagestoragereplication/"
#define REPLICATE_PART         ((int64_t) 8 << 20)
#define REPLICATE_TEMP_PREFIX  "uploads/replicate-"
#define REPLICATE_MAX_SOURCES  64


typedef struct {
    storage_t           **storage;        /* owned; one per cfg->storage[],
                                             NULL when unusable here */
    size_t                nstorage;
    unsigned char        *buf;            /* owned: one part */
    size_t                buflen;
    double                pause_s;        /* test hook */
} replicate_t;


/* One job's state. */
typedef struct {
    worker_t             *w;
    worker_job_t         *job;
    const char           *uuid;
    char                  digest[80];
    char                  key[STORAGE_KEY_MAX + 1];    /* content address */
    char                  temp[STORAGE_KEY_MAX + 1];   /* uploads/... */
    int64_t               size;
    char                 *placed[REPLICATE_MAX_SOURCES];   /* owned */
    size_t                nplaced;
    char                 *required[REPLICATE_MAX_SOURCES]; /* owned */
    size_t                nrequired;
    bool                  lease_lost;
} replicate_job_t;


/* $1 storage uuid. */
static const char  replicate_blob_sql[] =
    "SELECT id, content_checksum, image_size, uploading IS TRUE"
    "  FROM imagestorage WHERE uuid = $1";

/* $1 storage id, $2 namespace user id: where the bytes are, and the
 * namespace's extra regions. */
static const char  replicate_locations_sql[] =
    "SELECT 'placed', l.name, l.id FROM imagestorageplacement p"
    "  JOIN imagestoragelocation l ON l.id = p.location_id"
    " WHERE p.storage_id = $1::bigint"
    " UNION ALL"
    " SELECT 'region', l.name, l.id FROM userregion u"
    "  JOIN imagestoragelocation l ON l.id = u.location_id"
    " WHERE u.user_id = $2::bigint"
    " ORDER BY 3";

/* $1 storage id, $2 location name: the placement, once. */
static const char  replicate_place_sql[] =
    "WITH made AS ("
    "  INSERT INTO imagestoragelocation (name) SELECT $2::text"
    "  WHERE NOT EXISTS (SELECT 1 FROM imagestoragelocation"
    "   WHERE name = $2::text)"
    "  ON CONFLICT (name) DO NOTHING RETURNING id),"
    " loc AS ("
    "  SELECT id FROM made"
    "  UNION ALL SELECT id FROM imagestoragelocation WHERE name = $2::text"
    "  LIMIT 1)"
    " INSERT INTO imagestorageplacement (storage_id, location_id)"
    " SELECT s.id, loc.id FROM loc, imagestorage s WHERE s.id = $1::bigint"
    " ON CONFLICT (storage_id, location_id) DO NOTHING"
    " RETURNING id";


static replicate_t  replicate;


/* Setup ------------------------------------------------------------------- */

static int
replicate_init(worker_t *w, void *ctx)
{
    replicate_t  *rp = ctx;
    char          err[STORAGE_ERR_LEN];
    const char   *s;
    size_t        i;

    if (!w->cfg->feature_storage_replication) {
        /* quay-up starts every worker: idle, but do not exit */
        worker_log(WORKER_LOG_WARN, "FEATURE_STORAGE_REPLICATION is off:"
                   " no job is queued (jobs already queued still run)");
    }

    rp->nstorage = w->cfg->nstorage;
    rp->storage = xcalloc(rp->nstorage, sizeof(storage_t *));
    for (i = 0; i < rp->nstorage; i++) {
        rp->storage[i] = storage_open(&w->cfg->storage[i], err, sizeof(err));
        if (rp->storage[i] == NULL) {
            worker_log(WORKER_LOG_WARN, "storage location unusable: %s",
                       err);
        }
    }

    s = getenv("QUAY_REPLICATE_TEST_PART_PAUSE_SECONDS");
    if (s != NULL && *s != '\0') {
        rp->pause_s = strtod(s, NULL);
        if (rp->pause_s > 0) {
            worker_log(WORKER_LOG_WARN,
                       "QUAY_REPLICATE_TEST_PART_PAUSE_SECONDS=%.1f: pausing"
                       " after every part", rp->pause_s);
        }
    }

    worker_log(WORKER_LOG_INFO, "replication locations=%zu required=%zu",
               rp->nstorage, w->cfg->storage_default_locations.n);
    return 0;
}


static void
replicate_cleanup(worker_t *w, void *ctx)
{
    replicate_t  *rp = ctx;
    size_t        i;

    (void) w;
    for (i = 0; i < rp->nstorage; i++) {
        storage_close(rp->storage[i]);
    }
    free(rp->storage);
    free(rp->buf);
    rp->storage = NULL;
    rp->buf = NULL;
    rp->nstorage = 0;
    rp->buflen = 0;
}


static storage_t *
replicate_storage(replicate_t *rp, worker_t *w, const char *name)
{
    size_t  i;

    for (i = 0; i < rp->nstorage; i++) {
        if (strcmp(w->cfg->storage[i].name, name) == 0) {
            return rp->storage[i];
        }
    }
    return NULL;
}


static bool
replicate_listed(char *const *list, size_t n, const char *name)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0) {
            return true;
        }
    }
    return false;
}


static void
replicate_add(char **list, size_t *n, const char *name)
{
    if (*n < REPLICATE_MAX_SOURCES && !replicate_listed(list, *n, name)) {
        list[(*n)++] = xstrdup(name);
    }
}


static void
replicate_job_free(replicate_job_t *rj)
{
    size_t  i;

    for (i = 0; i < rj->nplaced; i++) {
        free(rj->placed[i]);
    }
    for (i = 0; i < rj->nrequired; i++) {
        free(rj->required[i]);
    }
}


/* The lease, from the storage client's progress hook and between parts. */
static void
replicate_heartbeat(void *ctx)
{
    replicate_job_t  *rj = ctx;

    if (!rj->lease_lost && worker_job_heartbeat(rj->job) != 0) {
        rj->lease_lost = true;
    }
}


/* Leftovers of an earlier attempt ----------------------------------------- */

typedef struct {
    storage_t    *target;
    const char   *temp;
    int           aborted;
    int           rc;
    char          err[STORAGE_ERR_LEN];
} replicate_stale_t;


static void
replicate_abort_stale(void *ctx, const char *key, const char *upload_id,
    time_t initiated)
{
    replicate_stale_t  *st = ctx;
    char                err[STORAGE_ERR_LEN];
    int                 rc;

    /* the prefix also matches a longer key: only ours */
    if (strcmp(key, st->temp) != 0) {
        return;
    }

    rc = storage_mpu_abort(st->target, key, upload_id, err, sizeof(err));
    if (rc == STORAGE_OK || rc == STORAGE_ENOENT) {
        st->aborted++;
        worker_log(WORKER_LOG_INFO, "aborted a stale multipart upload"
                   " location=%s key=%s age=%llds",
                   storage_location_name(st->target), key,
                   (long long) (time(NULL) - initiated));
    } else if (st->rc == STORAGE_OK) {
        st->rc = rc;
        (void) snprintf(st->err, sizeof(st->err), "%s", err);
    }
}


static int
replicate_clean_target(replicate_job_t *rj, storage_t *target, char *err,
    size_t errlen)
{
    replicate_stale_t  st;
    int                rc;

    memset(&st, 0, sizeof(st));
    st.target = target;
    st.temp = rj->temp;

    rc = storage_mpu_list(target, rj->temp, replicate_abort_stale, &st, err,
                          errlen);
    if (rc != STORAGE_OK) {
        return rc;
    }
    if (st.rc != STORAGE_OK) {
        (void) snprintf(err, errlen, "%s", st.err);
        return st.rc;
    }

    rc = storage_remove(target, rj->temp, err, errlen);
    if (rc == STORAGE_OK) {
        worker_log(WORKER_LOG_INFO, "deleted a stale temporary object"
                   " location=%s key=%s", storage_location_name(target),
                   rj->temp);
    } else if (rc != STORAGE_ENOENT) {
        return rc;
    }
    return STORAGE_OK;
}


/* The copy ---------------------------------------------------------------- */

typedef enum {
    REPLICATE_OK = 0,
    REPLICATE_SOURCE_BAD,       /* this source cannot serve: next one */
    REPLICATE_RETRY,            /* transient: the whole job later */
    REPLICATE_STOP              /* shutdown or lease lost */
} replicate_rc_e;


static int64_t
replicate_part_size(const storage_t *target, int64_t size,
    const quay_storage_location_t *loc)
{
    int64_t  part = REPLICATE_PART;

    (void) target;
    if (loc->minimum_chunk_size > part) {
        part = loc->minimum_chunk_size;
    }
    if ((size + part - 1) / part > STORAGE_MAX_PARTS) {
        part = (size + STORAGE_MAX_PARTS - 1) / STORAGE_MAX_PARTS;
        part = (part + (1 << 20) - 1) & ~(int64_t) ((1 << 20) - 1);
    }
    return part;
}


static bool
replicate_digest_ok(replicate_job_t *rj, quay_sha256_t *h)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      d[QUAY_SHA256_DIGEST_LEN];
    char               text[7 + 2 * QUAY_SHA256_DIGEST_LEN + 1];
    size_t             i;

    quay_sha256_final(h, d);
    memcpy(text, "sha256:", 7);
    for (i = 0; i < sizeof(d); i++) {
        text[7 + 2 * i] = hex[d[i] >> 4];
        text[7 + 2 * i + 1] = hex[d[i] & 0xf];
    }
    text[sizeof(text) - 1] = '\0';
    return strcmp(text, rj->digest) == 0;
}


/* Maps a storage failure during the copy to what the job does next. */
static replicate_rc_e
replicate_storage_failure(replicate_job_t *rj, bool source, int rc,
    const char *err)
{
    if (worker_shutdown_requested() || rj->lease_lost) {
        worker_job_error(rj->job, "interrupted: %s",
                         rj->lease_lost ? "lease lost" : "shutdown");
        return REPLICATE_STOP;
    }
    worker_job_error(rj->job, "%s: %s", source ? "source" : "target", err);
    worker_log(WORKER_LOG_WARN, "%s failed (%s): %s",
               source ? "reading the source" : "writing the target",
               storage_strerror(rc), err);
    return (source && rc == STORAGE_ENOENT) ? REPLICATE_SOURCE_BAD
                                            : REPLICATE_RETRY;
}


/*
 * Copies the blob from source to target (steps 2 to 5 of DESIGN).  The
 * job's error is set for anything but REPLICATE_OK.
 */
static replicate_rc_e
replicate_copy(replicate_t *rp, replicate_job_t *rj, storage_t *source,
    storage_t *target, const quay_storage_location_t *tloc)
{
    quay_sha256_t    h;
    storage_part_t  *parts = NULL;
    char             err[STORAGE_ERR_LEN], upload_id[STORAGE_UPLOAD_ID_MAX];
    int64_t          part, off, got;
    size_t           n = 0, nparts;
    bool             mpu = false;
    replicate_rc_e   rrc = REPLICATE_OK;
    int              rc;

    err[0] = '\0';

    rc = replicate_clean_target(rj, target, err, sizeof(err));
    if (rc != STORAGE_OK) {
        return replicate_storage_failure(rj, false, rc, err);
    }

    part = replicate_part_size(target, rj->size, tloc);
    if ((size_t) part > rp->buflen) {
        free(rp->buf);
        rp->buf = xmalloc((size_t) part);
        rp->buflen = (size_t) part;
    }

    quay_sha256_init(&h);

    /* one part: verify, then one PutObject to the content address */
    if (rj->size <= part) {
        rc = storage_read(source, rj->key, 0, rp->buf, (size_t) rj->size,
                          err, sizeof(err));
        if (rc != STORAGE_OK) {
            return replicate_storage_failure(rj, true, rc, err);
        }
        quay_sha256_update(&h, rp->buf, (size_t) rj->size);
        if (!replicate_digest_ok(rj, &h)) {
            worker_job_error(rj->job, "the bytes in %s do not match %s",
                             storage_location_name(source), rj->digest);
            worker_log(WORKER_LOG_ERR, "%s", rj->job->error);
            return REPLICATE_SOURCE_BAD;
        }
        rc = storage_put(target, rj->key, rp->buf, (size_t) rj->size, err,
                         sizeof(err));
        if (rc != STORAGE_OK) {
            return replicate_storage_failure(rj, false, rc, err);
        }
        goto check;
    }

    nparts = (size_t) ((rj->size + part - 1) / part);
    parts = xcalloc(nparts, sizeof(storage_part_t));

    rc = storage_mpu_create(target, rj->temp, upload_id, sizeof(upload_id),
                            err, sizeof(err));
    if (rc != STORAGE_OK) {
        rrc = replicate_storage_failure(rj, false, rc, err);
        goto done;
    }
    mpu = true;

    for (off = 0; off < rj->size; off += got) {
        got = rj->size - off < part ? rj->size - off : part;

        rc = storage_read(source, rj->key, off, rp->buf, (size_t) got, err,
                          sizeof(err));
        if (rc != STORAGE_OK) {
            rrc = replicate_storage_failure(rj, true, rc, err);
            goto done;
        }
        quay_sha256_update(&h, rp->buf, (size_t) got);

        parts[n].number = (int) n + 1;
        parts[n].size = got;
        rc = storage_mpu_part(target, rj->temp, upload_id, off, rp->buf,
                              &parts[n], err, sizeof(err));
        if (rc != STORAGE_OK) {
            rrc = replicate_storage_failure(rj, false, rc, err);
            goto done;
        }
        n++;

        worker_log(WORKER_LOG_DEBUG, "part %zu of %zu copied bytes=%" PRId64,
                   n, nparts, off + got);

        replicate_heartbeat(rj);
        if (rp->pause_s > 0) {
            worker_log(WORKER_LOG_INFO, "test pause after part %zu of %zu",
                       n, nparts);
            (void) worker_sleep(rp->pause_s);
        }
        if (worker_shutdown_requested() || rj->lease_lost) {
            rrc = replicate_storage_failure(rj, false, STORAGE_EIO,
                                            "interrupted");
            goto done;
        }
    }

    if (!replicate_digest_ok(rj, &h)) {
        worker_job_error(rj->job, "the bytes in %s do not match %s",
                         storage_location_name(source), rj->digest);
        worker_log(WORKER_LOG_ERR, "%s", rj->job->error);
        rrc = REPLICATE_SOURCE_BAD;
        goto done;
    }

    rc = storage_mpu_complete(target, rj->temp, upload_id, parts, n, err,
                              sizeof(err));
    if (rc != STORAGE_OK) {
        rrc = replicate_storage_failure(rj, false, rc, err);
        goto done;
    }
    mpu = false;

    rc = storage_move(target, rj->temp, rj->key, rj->size, err,
                      sizeof(err));
    if (rc != STORAGE_OK) {
        rrc = replicate_storage_failure(rj, false, rc, err);
        goto done;
    }

check:
    /* Quay checks the target after the copy; so do we, with the size */
    got = -1;
    rc = storage_stat(target, rj->key, &got, err, sizeof(err));
    if (rc != STORAGE_OK) {
        rrc = replicate_storage_failure(rj, false, rc, err);
    } else if (got != rj->size) {
        worker_job_error(rj->job, "%s holds %" PRId64 " bytes at %s after"
                         " the copy, not %" PRId64,
                         storage_location_name(target), got, rj->key,
                         rj->size);
        rrc = REPLICATE_RETRY;
    }

done:
    if (mpu) {
        /* best effort: a failure here is cleaned by the next attempt */
        (void) storage_mpu_abort(target, rj->temp, upload_id, NULL, 0);
    }
    free(parts);
    return rrc;
}


/* The job ----------------------------------------------------------------- */

static worker_job_result_e
replicate_load(worker_t *w, replicate_job_t *rj, char *storage_id,
    size_t idlen)
{
    const char  *values[2];
    char         ns[32];
    json_t      *v;
    PGresult    *res;
    int          i;

    v = json_object_get(rj->job->body, "namespace_user_id");
    (void) snprintf(ns, sizeof(ns), "%lld",
                    json_is_integer(v) ? (long long) json_integer_value(v)
                                       : 0LL);

    values[0] = rj->uuid;
    res = worker_db_exec(w, replicate_blob_sql, 1, values);
    if (res == NULL) {
        return worker_db_failure(w, rj->job);
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        worker_log(WORKER_LOG_INFO, "blob gone, nothing to replicate"
                   " storage=%s", rj->uuid);
        return WORKER_JOB_DONE;
    }
    (void) snprintf(storage_id, idlen, "%s", PQgetvalue(res, 0, 0));
    (void) snprintf(rj->digest, sizeof(rj->digest), "%s",
                    PQgetvalue(res, 0, 1));
    rj->size = PQgetisnull(res, 0, 2) ? -1
                                      : strtoll(PQgetvalue(res, 0, 2), NULL,
                                                10);
    if (PQgetvalue(res, 0, 3)[0] == 't') {
        PQclear(res);
        worker_job_error(rj->job, "blob %s is still uploading", rj->uuid);
        return WORKER_JOB_RETRY;
    }
    PQclear(res);

    if (storage_blob_key(rj->digest, rj->key, sizeof(rj->key))
        != STORAGE_OK)
    {
        worker_job_error(rj->job, "blob %s has an unsupported digest %s",
                         rj->uuid, rj->digest);
        return WORKER_JOB_FAIL;
    }

    values[0] = storage_id;
    values[1] = ns;
    res = worker_db_exec(w, replicate_locations_sql, 2, values);
    if (res == NULL) {
        return worker_db_failure(w, rj->job);
    }
    for (i = 0; i < PQntuples(res); i++) {
        if (strcmp(PQgetvalue(res, i, 0), "placed") == 0) {
            replicate_add(rj->placed, &rj->nplaced, PQgetvalue(res, i, 1));
        } else {
            replicate_add(rj->required, &rj->nrequired,
                          PQgetvalue(res, i, 1));
        }
    }
    PQclear(res);

    for (i = 0; i < (int) w->cfg->storage_default_locations.n; i++) {
        replicate_add(rj->required, &rj->nrequired,
                      w->cfg->storage_default_locations.items[i]);
    }
    return WORKER_JOB_DONE;
}


/*
 * The holders of the blob that this worker can read, preferred first.
 * Returns how many went into out.
 */
static size_t
replicate_sources(replicate_t *rp, worker_t *w, replicate_job_t *rj,
    storage_t **out, const char **names)
{
    const quay_strlist_t  *pref = &w->cfg->storage_preference;
    size_t                 i, n = 0;
    storage_t             *s;

    for (i = 0; i < pref->n; i++) {
        s = replicate_storage(rp, w, pref->items[i]);
        if (s != NULL && replicate_listed(rj->placed, rj->nplaced,
                                          pref->items[i]))
        {
            names[n] = pref->items[i];
            out[n++] = s;
        }
    }
    for (i = 0; i < rj->nplaced; i++) {
        s = replicate_storage(rp, w, rj->placed[i]);
        if (s != NULL && !replicate_listed(pref->items, pref->n,
                                           rj->placed[i]))
        {
            names[n] = rj->placed[i];
            out[n++] = s;
        }
    }
    return n;
}


/* Copies the blob into target from the first source that serves it. */
static worker_job_result_e
replicate_to(replicate_t *rp, worker_t *w, replicate_job_t *rj,
    const char *storage_id, const char *target_name)
{
    storage_t                      *sources[REPLICATE_MAX_SOURCES];
    const char                     *names[REPLICATE_MAX_SOURCES];
    storage_t                      *target;
    const quay_storage_location_t  *tloc;
    char                            err[STORAGE_ERR_LEN];
    char                            why[WORKER_ERROR_LEN] = "";
    const char                     *values[2];
    struct timespec                 t0, t1;
    size_t                          nsources, i, len = 0;
    int64_t                         size;
    bool                            transient = false;
    PGresult                       *res;
    int                             rc;

    tloc = quay_config_location(w->cfg, target_name);
    target = replicate_storage(rp, w, target_name);
    if (tloc == NULL || target == NULL) {
        worker_job_error(rj->job, "required location \"%s\" is not"
                         " configured (or not usable) here", target_name);
        return WORKER_JOB_FAIL;
    }

    nsources = replicate_sources(rp, w, rj, sources, names);
    if (rj->nplaced == 0) {
        worker_job_error(rj->job, "blob %s has no placement: no location"
                         " holds it", rj->digest);
        return WORKER_JOB_FAIL;
    }
    if (nsources == 0) {
        worker_job_error(rj->job, "no location holding blob %s is"
                         " configured here", rj->digest);
        return WORKER_JOB_FAIL;
    }

    storage_set_progress(target, replicate_heartbeat, rj);

    for (i = 0; i < nsources; i++) {
        replicate_rc_e  rrc;

        size = -1;
        rc = storage_stat(sources[i], rj->key, &size, err, sizeof(err));
        if (rc == STORAGE_OK && rj->size >= 0 && size != rj->size) {
            rc = STORAGE_ENOENT;
            (void) snprintf(err, sizeof(err), "%" PRId64 " bytes, the"
                            " database says %" PRId64, size, rj->size);
        }
        if (rc != STORAGE_OK) {
            transient = transient || rc != STORAGE_ENOENT;
            len += (size_t) snprintf(why + len, len < sizeof(why)
                                     ? sizeof(why) - len : 0,
                                     "%s%s (%s)", len ? ", " : "",
                                     names[i], rc == STORAGE_ENOENT
                                     ? "no such object" : err);
            if (len >= sizeof(why)) {
                len = sizeof(why) - 1;
            }
            worker_log(WORKER_LOG_WARN, "source unusable location=%s: %s",
                       names[i], err);
            continue;
        }
        if (rj->size < 0) {
            rj->size = size;
        }

        storage_set_progress(sources[i], replicate_heartbeat, rj);
        (void) clock_gettime(CLOCK_MONOTONIC, &t0);

        rrc = replicate_copy(rp, rj, sources[i], target, tloc);

        storage_set_progress(sources[i], NULL, NULL);

        if (rrc == REPLICATE_SOURCE_BAD) {
            len += (size_t) snprintf(why + len, len < sizeof(why)
                                     ? sizeof(why) - len : 0,
                                     "%s%s (%s)", len ? ", " : "",
                                     names[i], rj->job->error);
            if (len >= sizeof(why)) {
                len = sizeof(why) - 1;
            }
            continue;
        }
        storage_set_progress(target, NULL, NULL);
        if (rrc != REPLICATE_OK) {
            return WORKER_JOB_RETRY;
        }

        (void) clock_gettime(CLOCK_MONOTONIC, &t1);

        values[0] = storage_id;
        values[1] = target_name;
        res = worker_db_exec(w, replicate_place_sql, 2, values);
        if (res == NULL) {
            return worker_db_failure(w, rj->job);
        }
        rc = PQntuples(res);
        PQclear(res);

        worker_log(WORKER_LOG_INFO, "replicated blob=%s from=%s to=%s"
                   " bytes=%" PRId64 " ms=%.0f placement=%s", rj->digest,
                   names[i], target_name, rj->size,
                   (double) (t1.tv_sec - t0.tv_sec) * 1000
                   + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6,
                   rc == 1 ? "added" : "already there");
        return WORKER_JOB_DONE;
    }

    storage_set_progress(target, NULL, NULL);

    if (transient) {
        worker_job_error(rj->job, "no source could be read: %s", why);
        return WORKER_JOB_RETRY;
    }
    worker_job_error(rj->job, "blob %s is missing (or wrong) in every"
                     " location that holds it: %s", rj->digest, why);
    return WORKER_JOB_FAIL;
}


static worker_job_result_e
replicate_run(worker_t *w, worker_job_t *job, void *ctx)
{
    replicate_t          *rp = ctx;
    replicate_job_t       rj;
    worker_job_result_e   rc;
    char                  storage_id[32];
    size_t                i, done = 0;

    memset(&rj, 0, sizeof(rj));
    rj.w = w;
    rj.job = job;
    rj.uuid = json_string_value(json_object_get(job->body, "storage_id"));

    if (!storage_uuid_valid(rj.uuid)) {
        worker_job_error(job, "body has no valid storage_id");
        return WORKER_JOB_FAIL;
    }
    (void) snprintf(rj.temp, sizeof(rj.temp), REPLICATE_TEMP_PREFIX "%s",
                    rj.uuid);

    storage_id[0] = '\0';
    rc = replicate_load(w, &rj, storage_id, sizeof(storage_id));
    if (rc != WORKER_JOB_DONE || storage_id[0] == '\0') {
        goto done;
    }

    for (i = 0; i < rj.nrequired; i++) {
        if (replicate_listed(rj.placed, rj.nplaced, rj.required[i])) {
            continue;
        }
        rc = replicate_to(rp, w, &rj, storage_id, rj.required[i]);
        if (rc != WORKER_JOB_DONE) {
            goto done;
        }
        replicate_add(rj.placed, &rj.nplaced, rj.required[i]);
        done++;
    }

    if (done == 0) {
        worker_log(WORKER_LOG_INFO, "already in every required location"
                   " blob=%s", rj.digest);
    }

done:
    replicate_job_free(&rj);
    return rc;
}


static const worker_def_t  replicate_def = {
    .name = "quay-replicate",
    .queue = REPLICATE_QUEUE,
    .poll_s = 10,
    .lease_s = 300,
    .init = replicate_init,
    .run_job = replicate_run,
    .cleanup = replicate_cleanup,
    .ctx = &replicate,
};


int
main(int argc, char **argv)
{
    return worker_main(argc, argv, &replicate_def);
}
