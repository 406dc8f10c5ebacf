/*
 * quayctl storage: storage maintenance.
 *
 *   quayctl storage backfill-replication --config FILE [--dry-run]
 *                                        [--namespace NS]
 *
 * Replication jobs are queued by the manifest PUT statement only
 * (QUAY_SQL_MANIFEST_PUT, lib/quay_sql_manifest.def), so blobs pushed
 * before FEATURE_STORAGE_REPLICATION was turned on, or before a location
 * was added to DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS, stay where they
 * are.  This command is Quay's util/backfillreplication.py: one statement
 * queues a job for every blob that a repository references (a manifest or
 * an unexpired uploaded blob), that has at least one placement to copy
 * from, and that lacks a placement in a required location or in a
 * userregion location of a namespace referencing it.  The queue, body
 * ({"namespace_user_id", "storage_id" = imagestorage.uuid}) and dedupe
 * key (the uuid) are the manifest PUT's, so quay-replicate treats both
 * alike, and ON CONFLICT DO NOTHING on the dedupe index makes a second
 * run, or a run during pushes, add nothing twice.
 *
 * The worker copies a blob to the default locations plus the userregion
 * locations of the body's namespace.  When several namespaces reference
 * a blob, the job names the smallest namespace id among those whose
 * regions lack it (else the smallest id), so runs agree; a blob missing
 * from two namespaces' regions gets the second job on the next run.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "quay_config.h"
#include "quayctl.h"


#define STORAGE_QUEUE  "imagestoragereplication/"


/*
 * $1 required location names (a JSON array), $2 namespace or NULL (all),
 * $3 true for a dry run.  One row: whether namespace $2 exists, blobs
 * missing a placement, jobs queued, jobs of those blobs already waiting
 * when the statement began.  Repositories marked for deletion (state 3)
 * are left out: their blobs are the garbage collector's.
 */
static const char  storage_sql_backfill[] =
    "WITH required AS ("
    "  SELECT jsonb_array_elements_text($1::jsonb) AS name),"
    " ns AS ("
    "  SELECT id FROM \"user\" WHERE username = $2::text),"
    " refs AS ("
    "  SELECT DISTINCT x.blob_id, r.namespace_user_id"
    "  FROM (SELECT repository_id, blob_id FROM manifestblob"
    "        UNION SELECT repository_id, blob_id FROM uploadedblob"
    "        WHERE expires_at > now()) AS x"
    "  JOIN repository r ON r.id = x.repository_id"
    "  WHERE r.state <> 3"
    "  AND ($2::text IS NULL OR r.namespace_user_id IN (SELECT id FROM ns))"
    "  AND EXISTS (SELECT 1 FROM imagestorageplacement p"
    "   WHERE p.storage_id = x.blob_id)),"
    " gaps AS ("
    "  SELECT f.blob_id, f.namespace_user_id,"
    "  EXISTS (SELECT 1 FROM userregion u"
    "   WHERE u.user_id = f.namespace_user_id AND NOT EXISTS"
    "   (SELECT 1 FROM imagestorageplacement p"
    "    WHERE p.storage_id = f.blob_id"
    "    AND p.location_id = u.location_id)) AS region_gap,"
    "  EXISTS (SELECT 1 FROM required d WHERE NOT EXISTS"
    "   (SELECT 1 FROM imagestorageplacement p"
    "    JOIN imagestoragelocation l ON l.id = p.location_id"
    "    WHERE p.storage_id = f.blob_id AND l.name = d.name)) AS default_gap"
    "  FROM refs f),"
    " need AS ("
    "  SELECT DISTINCT ON (g.blob_id) s.uuid, g.namespace_user_id"
    "  FROM gaps g JOIN imagestorage s ON s.id = g.blob_id"
    "  WHERE g.region_gap OR g.default_gap"
    "  ORDER BY g.blob_id, g.region_gap DESC, g.namespace_user_id),"
    " queued AS ("
    "  INSERT INTO queueitem (queue_name, body, dedupe_key)"
    "  SELECT '" STORAGE_QUEUE "',"
    "  jsonb_build_object('namespace_user_id', n.namespace_user_id,"
    "  'storage_id', n.uuid), n.uuid"
    "  FROM need n WHERE NOT $3::boolean"
    "  ON CONFLICT (queue_name, dedupe_key)"
    "  WHERE dedupe_key IS NOT NULL AND state = 'queued' DO NOTHING"
    "  RETURNING id)"
    " SELECT $2::text IS NULL OR EXISTS (SELECT 1 FROM ns),"
    " (SELECT count(*) FROM need), (SELECT count(*) FROM queued),"
    " (SELECT count(*) FROM need n WHERE EXISTS"
    "  (SELECT 1 FROM queueitem q WHERE q.queue_name = '" STORAGE_QUEUE "'"
    "   AND q.dedupe_key = n.uuid AND q.state = 'queued'))";


static void
storage_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl storage backfill-replication --config FILE"
        " [--dry-run]\n"
        "                                            [--namespace NS]\n"
        "Queues a replication job for every blob that lacks a placement in"
        " a location of\n"
        "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS (or of its namespace's"
        " regions); --dry-run\n"
        "only counts them.\n");
}


/*
 * The refusals of Quay's backfill: replication must be on, and every
 * required location configured.  Returns 0, or 1 after reporting.
 */
static int
storage_check_replication(const char *path, const quay_config_t *cfg)
{
    const quay_strlist_t  *required = &cfg->storage_default_locations;

    if (!cfg->feature_storage_replication) {
        quayctl_fail("%s: FEATURE_STORAGE_REPLICATION is off; nothing to "
                     "backfill", path);
        return 1;
    }

    if (required->n == 0) {
        quayctl_fail("%s: DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS is empty; "
                     "name the locations every blob must reach", path);
        return 1;
    }

    /* the loader checks this too; the jobs would fail without it */

    for (size_t i = 0; i < required->n; i++) {
        if (quay_config_location(cfg, required->items[i]) == NULL) {
            quayctl_fail("%s: DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS names "
                         "\"%s\", which is not in DISTRIBUTED_STORAGE_CONFIG",
                         path, required->items[i]);
            return 1;
        }
    }

    return 0;
}


/* DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS as a JSON array; free() it. */
static char *
storage_required_json(const quay_config_t *cfg)
{
    json_t  *list = json_array();
    char    *text;

    if (list == NULL) {
        return NULL;
    }

    for (size_t i = 0; i < cfg->storage_default_locations.n; i++) {
        if (json_array_append_new(list,
                json_string(cfg->storage_default_locations.items[i])) != 0)
        {
            json_decref(list);
            return NULL;
        }
    }

    text = json_dumps(list, JSON_COMPACT);
    json_decref(list);

    return text;
}


static int
storage_backfill(int argc, char **argv)
{
    int             rc = 1;
    bool            dry_run = false;
    char            msg[QUAYCTL_DB_ERR_LEN];
    char           *required = NULL;
    const char     *config_path = NULL, *db_uri = NULL, *namespace = NULL;
    const char     *params[3];
    PGconn         *conn = NULL;
    PGresult       *res;
    quay_config_t  *cfg = NULL;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            storage_usage(stdout);
            return 0;
        }

        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
            continue;
        }

        int  m = quayctl_db_option(argc, argv, &i, "--config", &config_path);

        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--namespace", &namespace);
        }
        if (m < 0) {
            return 2;
        }
        if (m == 0) {
            quayctl_fail("storage backfill-replication: unexpected argument "
                         "\"%s\"", argv[i]);
            return 2;
        }
    }

    if (config_path == NULL) {
        quayctl_fail("storage backfill-replication needs --config FILE");
        return 2;
    }

    if (namespace != NULL && (namespace[0] == '\0' || strlen(namespace) > 255))
    {
        quayctl_fail("invalid --namespace \"%.255s\"", namespace);
        return 2;
    }

    if (quayctl_db_resolve(config_path, &db_uri, &cfg) != 0) {
        goto done;
    }

    if (storage_check_replication(config_path, cfg) != 0) {
        goto done;
    }

    required = storage_required_json(cfg);
    if (required == NULL) {
        quayctl_fail("out of memory");
        goto done;
    }

    conn = quayctl_db_connect(db_uri, "quayctl-storage");
    if (conn == NULL) {
        goto done;
    }

    params[0] = required;
    params[1] = namespace;
    params[2] = dry_run ? "true" : "false";

    res = PQexecParams(conn, storage_sql_backfill, 3, NULL, params, NULL,
                       NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("queueing replication jobs: %s", msg);
        PQclear(res);
        goto done;
    }

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        PQclear(res);
        quayctl_fail("no namespace %s", namespace);
        goto done;
    }

    long long  missing = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    long long  queued = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    long long  waiting = strtoll(PQgetvalue(res, 0, 3), NULL, 10);

    PQclear(res);

    /*
     * A real run counts as waiting what it did not insert: that includes
     * a job a concurrent push queued after the statement's snapshot.
     */
    if (dry_run) {
        printf("%lld blobs missing a placement: %lld jobs would be queued, "
               "%lld already waiting (dry run)\n", missing,
               missing - waiting, waiting);
    } else {
        printf("%lld blobs missing a placement: %lld jobs queued, "
               "%lld already waiting\n", missing, queued, missing - queued);
    }

    rc = 0;

done:

    free(required);

    if (conn != NULL) {
        PQfinish(conn);
    }

    if (cfg != NULL) {
        quay_config_free(cfg);
    }

    return rc;
}


int
quayctl_storage_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "--help") == 0)
    {
        storage_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }

    if (strcmp(argv[1], "backfill-replication") != 0) {
        quayctl_fail("storage: unknown command \"%s\" "
                     "(backfill-replication)", argv[1]);
        return 2;
    }

    return storage_backfill(argc, argv);
}
