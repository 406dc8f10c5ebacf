/*
 * quayctl migrate: applies sql/NNNN_description.sql to the database in
 * DB_URI and records each file in schema_migrations (version, name,
 * SHA-256 checksum, time).
 *
 * DESIGN
 *
 * One run holds a session advisory lock (QUAYCTL_MIGRATE_LOCK) from before
 * it reads schema_migrations until it exits, so concurrent runs queue: the
 * second one waits, then finds nothing pending.  Before applying anything
 * the run checks every recorded file against the directory: a recorded
 * file that is missing, renamed or changed (checksum) stops the run, and
 * so does a pending file numbered below an applied one, because migrations
 * are immutable once merged and ordered by number.  Each pending file then
 * runs in its own transaction together with its schema_migrations row
 * (BEGIN; file; INSERT; COMMIT), so a file is either applied and recorded
 * or not at all.  A file must therefore not contain BEGIN/COMMIT or
 * statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY);
 * the run notices a file that ended the transaction itself and fails.
 *
 * With --config the run also makes sure every DISTRIBUTED_STORAGE_CONFIG
 * location has an imagestoragelocation row, as Quay does at boot.
 *
 * Blocking libpq is fine here: this is an admin command, not the event
 * loop.  The connection has a connect timeout; the lock wait does not (a
 * long migration elsewhere is worth waiting for), but the run says that it
 * is waiting.  Errors are one line, "quayctl: ...", and never show the
 * password of DB_URI: the URI itself is never printed, and libpq's own
 * messages name the host, port and user but not the password.
 *
 * The quayctl_db_* helpers at the end (options, DB_URI, connection, error
 * lines) are shared with quayctl_user.c.
 */

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "quay_config.h"
#include "quay_sql.h"
#include "quayctl.h"


/* pg_advisory_lock key: the bytes "quaymigr" as a big-endian int64. */
#define QUAYCTL_MIGRATE_LOCK          "8175547872715564914"

/* Migration files are small; anything bigger is a mistake. */
#define QUAYCTL_MIGRATE_MAX_FILE      (16 * 1024 * 1024)

#define QUAYCTL_MIGRATE_MIN_SERVER    130000    /* gen_random_uuid() */


typedef struct {
    int     version;
    char   *name;                   /* owned; "0001_core.sql" */
    char   *text;                   /* owned; the file, NUL-terminated */
    size_t  len;
    char    checksum[65];           /* hex SHA-256 of the file */
} migrate_file_t;


typedef struct {
    int     version;
    char   *name;                   /* owned */
    char   *checksum;               /* owned */
    char   *applied_at;             /* owned */
} migrate_applied_t;


typedef struct {
    const char        *dir;
    migrate_file_t    *files;       /* owned; sorted by version */
    size_t             nfiles;
    migrate_applied_t *applied;     /* owned; sorted by version */
    size_t             napplied;
} migrate_state_t;


static const char  migrate_sql_create[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

static const char  migrate_sql_applied[] =
    "SELECT version, name, checksum,"
    " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM schema_migrations ORDER BY version";

static const char  migrate_sql_record[] =
    "INSERT INTO schema_migrations (version, name, checksum)"
    " VALUES ($1::integer, $2, $3)";


static void
migrate_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl migrate (--config FILE | --db-uri URI) [--dir SQLDIR]"
        " [--status]\n"
        "  --config FILE  config.yaml: DB_URI and storage locations\n"
        "  --db-uri URI   postgresql:// URI (overrides DB_URI of --config)\n"
        "  --dir SQLDIR   migrations (default: $QUAY_SQL_DIR, the sql/ of\n"
        "                 this build tree, ./sql)\n"
        "  --status       list applied and pending migrations, change "
        "nothing\n");
}


static void *
migrate_xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (p == NULL) {
        quayctl_fail("out of memory");
        abort();
    }

    return p;
}


static char *
migrate_xstrdup(const char *s)
{
    size_t  len = strlen(s) + 1;

    return memcpy(migrate_xrealloc(NULL, len), s, len);
}


/* ^[0-9]{4}_[a-z0-9_]+\.sql$ */
static bool
migrate_valid_name(const char *name)
{
    size_t  len = strlen(name);

    if (len < 10 || strcmp(name + len - 4, ".sql") != 0) {
        return false;
    }

    for (size_t i = 0; i < 4; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
    }

    if (name[4] != '_') {
        return false;
    }

    for (size_t i = 5; i < len - 4; i++) {
        char  c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }

    return true;
}


static int
migrate_read_file(const char *dir, migrate_file_t *f)
{
    char         path[PATH_MAX];
    struct stat  st;

    if (snprintf(path, sizeof(path), "%s/%s", dir, f->name)
        >= (int) sizeof(path))
    {
        quayctl_fail("%s/%s: path too long", dir, f->name);
        return -1;
    }

    FILE  *fp = fopen(path, "rb");
    if (fp == NULL) {
        quayctl_fail("%s: %s", path, strerror(errno));
        return -1;
    }

    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        quayctl_fail("%s: not a regular file", path);
        (void) fclose(fp);
        return -1;
    }

    if (st.st_size > QUAYCTL_MIGRATE_MAX_FILE) {
        quayctl_fail("%s: larger than %d bytes", path,
                     QUAYCTL_MIGRATE_MAX_FILE);
        (void) fclose(fp);
        return -1;
    }

    f->text = migrate_xrealloc(NULL, (size_t) st.st_size + 1);
    f->len = fread(f->text, 1, (size_t) st.st_size, fp);
    if (ferror(fp) || f->len != (size_t) st.st_size) {
        quayctl_fail("%s: read error", path);
        (void) fclose(fp);
        return -1;
    }

    (void) fclose(fp);
    f->text[f->len] = '\0';

    /* PQexec() takes a C string: a NUL would silently cut the file. */
    if (memchr(f->text, '\0', f->len) != NULL) {
        quayctl_fail("%s: contains a NUL byte", path);
        return -1;
    }

    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned int   mdlen;

    if (EVP_Digest(f->text, f->len, md, &mdlen, EVP_sha256(), NULL) != 1
        || mdlen != 32)
    {
        quayctl_fail("%s: SHA-256 failed", path);
        return -1;
    }

    for (unsigned int i = 0; i < mdlen; i++) {
        static const char  hex[] = "0123456789abcdef";

        f->checksum[2 * i] = hex[md[i] >> 4];
        f->checksum[2 * i + 1] = hex[md[i] & 0xf];
    }
    f->checksum[64] = '\0';

    return 0;
}


static int
migrate_file_cmp(const void *a, const void *b)
{
    const migrate_file_t  *fa = a, *fb = b;

    return (fa->version > fb->version) - (fa->version < fb->version);
}


/* Reads every migration of dir, sorted by version, checksums computed. */
static int
migrate_load_files(migrate_state_t *st)
{
    DIR            *d;
    struct dirent  *de;
    size_t          cap = 0;

    d = opendir(st->dir);
    if (d == NULL) {
        quayctl_fail("migrations directory %s: %s", st->dir, strerror(errno));
        return -1;
    }

    for ( ;; ) {
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            break;
        }

        /* ".", "..", and editors' hidden files (.0001_x.sql.swp) */
        if (de->d_name[0] == '.') {
            continue;
        }

        if (!migrate_valid_name(de->d_name)) {
            quayctl_fail("%s/%s: not a migration name "
                         "(want NNNN_lowercase_words.sql)",
                         st->dir, de->d_name);
            (void) closedir(d);
            return -1;
        }

        if (st->nfiles == cap) {
            cap = cap ? cap * 2 : 16;
            st->files = migrate_xrealloc(st->files,
                                         cap * sizeof(migrate_file_t));
        }

        migrate_file_t  *f = &st->files[st->nfiles++];

        memset(f, 0, sizeof(*f));
        f->name = migrate_xstrdup(de->d_name);
        f->version = atoi(de->d_name);
    }

    if (errno != 0) {
        quayctl_fail("migrations directory %s: %s", st->dir, strerror(errno));
        (void) closedir(d);
        return -1;
    }

    (void) closedir(d);

    if (st->nfiles == 0) {
        quayctl_fail("no migrations in %s", st->dir);
        return -1;
    }

    qsort(st->files, st->nfiles, sizeof(migrate_file_t), migrate_file_cmp);

    for (size_t i = 0; i < st->nfiles; i++) {
        if (i > 0 && st->files[i].version == st->files[i - 1].version) {
            quayctl_fail("%s and %s have the same number",
                         st->files[i - 1].name, st->files[i].name);
            return -1;
        }

        if (migrate_read_file(st->dir, &st->files[i]) != 0) {
            return -1;
        }
    }

    return 0;
}


/*
 * The sql directory: --dir, $QUAY_SQL_DIR, the sql/ of the tree this
 * binary was built in (build/bin/quayctl -> ../../sql), ./sql; NULL when
 * none of the last two exists.
 */
static const char *
migrate_find_dir(const char *opt, char *buf, size_t size)
{
    struct stat  st;
    const char  *env;

    if (opt != NULL) {
        return opt;
    }

    env = getenv("QUAY_SQL_DIR");
    if (env != NULL && env[0] != '\0') {
        return env;
    }

    char     exe[PATH_MAX];
    ssize_t  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';

        char  *slash = strrchr(exe, '/');

        if (slash != NULL) {
            *slash = '\0';
            if (snprintf(buf, size, "%s/../../sql", exe) < (int) size
                && stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
            {
                return buf;
            }
        }
    }

    if (stat("sql", &st) == 0 && S_ISDIR(st.st_mode)) {
        return "sql";
    }

    return NULL;
}


static int
migrate_load_applied(PGconn *conn, migrate_state_t *st)
{
    PGresult  *res = PQexec(conn, migrate_sql_applied);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char  msg[QUAYCTL_DB_ERR_LEN];

        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("reading schema_migrations: %s", msg);
        PQclear(res);
        return -1;
    }

    st->napplied = (size_t) PQntuples(res);
    st->applied = migrate_xrealloc(NULL, (st->napplied + 1)
                                         * sizeof(migrate_applied_t));

    for (size_t i = 0; i < st->napplied; i++) {
        migrate_applied_t  *a = &st->applied[i];

        a->version = atoi(PQgetvalue(res, (int) i, 0));
        a->name = migrate_xstrdup(PQgetvalue(res, (int) i, 1));
        a->checksum = migrate_xstrdup(PQgetvalue(res, (int) i, 2));
        a->applied_at = migrate_xstrdup(PQgetvalue(res, (int) i, 3));
    }

    PQclear(res);

    return 0;
}


static migrate_file_t *
migrate_file_by_version(migrate_state_t *st, int version)
{
    migrate_file_t  key = { .version = version };

    return bsearch(&key, st->files, st->nfiles, sizeof(migrate_file_t),
                   migrate_file_cmp);
}


static migrate_applied_t *
migrate_applied_by_version(migrate_state_t *st, int version)
{
    for (size_t i = 0; i < st->napplied; i++) {
        if (st->applied[i].version == version) {
            return &st->applied[i];
        }
    }

    return NULL;
}


/*
 * Compares schema_migrations with the directory.  Prints the first problem
 * with quayctl_fail() and returns the number of problems.
 */
static int
migrate_verify(migrate_state_t *st)
{
    int  problems = 0, newest = -1;

    for (size_t i = 0; i < st->napplied; i++) {
        migrate_applied_t  *a = &st->applied[i];
        migrate_file_t     *f = migrate_file_by_version(st, a->version);

        if (a->version > newest) {
            newest = a->version;
        }

        if (f == NULL) {
            if (problems++ == 0) {
                quayctl_fail("applied migration %s is missing from %s",
                             a->name, st->dir);
            }

        } else if (strcmp(f->name, a->name) != 0) {
            if (problems++ == 0) {
                quayctl_fail("applied migration %s was renamed to %s",
                             a->name, f->name);
            }

        } else if (strcmp(f->checksum, a->checksum) != 0) {
            if (problems++ == 0) {
                quayctl_fail("applied migration %s was changed after it was "
                             "applied (checksum mismatch); add a new "
                             "migration instead", f->name);
            }
        }
    }

    for (size_t i = 0; i < st->nfiles; i++) {
        migrate_file_t  *f = &st->files[i];

        if (f->version < newest
            && migrate_applied_by_version(st, f->version) == NULL)
        {
            if (problems++ == 0) {
                quayctl_fail("%s is pending but a later migration is already "
                             "applied; renumber it", f->name);
            }
        }
    }

    return problems;
}


/* 1-based line of the 1-based character position pos in text. */
static int
migrate_line_of(const char *text, size_t len, long pos)
{
    int   line = 1;
    long  chars = 0;

    for (size_t i = 0; i < len; i++) {
        /* count characters, not UTF-8 continuation bytes */
        if (((unsigned char) text[i] & 0xc0) != 0x80 && ++chars >= pos) {
            break;
        }
        if (text[i] == '\n') {
            line++;
        }
    }

    return line;
}


static void
migrate_rollback(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}


/* BEGIN; file; INSERT INTO schema_migrations; COMMIT. */
static int
migrate_apply(PGconn *conn, const migrate_file_t *f)
{
    char        msg[QUAYCTL_DB_ERR_LEN];
    PGresult   *res;

    res = PQexec(conn, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("%s: BEGIN: %s", f->name, msg);
        PQclear(res);
        return -1;
    }
    PQclear(res);

    res = PQexec(conn, f->text);
    switch (PQresultStatus(res)) {

    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        break;

    default: {
        const char  *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);

        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        if (pos != NULL) {
            quayctl_fail("%s line %d: %s", f->name,
                         migrate_line_of(f->text, f->len, atol(pos)), msg);
        } else {
            quayctl_fail("%s: %s", f->name, msg);
        }
        PQclear(res);
        migrate_rollback(conn);
        return -1;
    }
    }
    PQclear(res);

    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        quayctl_fail("%s ended the transaction itself (COMMIT/ROLLBACK in "
                     "a migration is not allowed); it may be partly applied",
                     f->name);
        return -1;
    }

    char         version[16];
    const char  *params[3] = { version, f->name, f->checksum };

    (void) snprintf(version, sizeof(version), "%d", f->version);

    res = PQexecParams(conn, migrate_sql_record, 3, NULL, params, NULL, NULL,
                       0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("%s: recording it in schema_migrations: %s", f->name,
                     msg);
        PQclear(res);
        migrate_rollback(conn);
        return -1;
    }
    PQclear(res);

    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("%s: COMMIT: %s", f->name, msg);
        PQclear(res);
        return -1;
    }
    PQclear(res);

    return 0;
}


static int
migrate_lock(PGconn *conn)
{
    char       msg[QUAYCTL_DB_ERR_LEN];
    PGresult  *res;

    res = PQexec(conn, "SELECT pg_try_advisory_lock(" QUAYCTL_MIGRATE_LOCK
                       ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("taking the migration lock: %s", msg);
        PQclear(res);
        return -1;
    }

    bool  locked = PQgetvalue(res, 0, 0)[0] == 't';

    PQclear(res);

    if (locked) {
        return 0;
    }

    printf("waiting for another quayctl migrate to finish\n");
    fflush(stdout);

    res = PQexec(conn, "SELECT pg_advisory_lock(" QUAYCTL_MIGRATE_LOCK ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("taking the migration lock: %s", msg);
        PQclear(res);
        return -1;
    }
    PQclear(res);

    return 0;
}


/* One imagestoragelocation row per DISTRIBUTED_STORAGE_CONFIG entry. */
static int
migrate_locations(PGconn *conn, const quay_config_t *cfg)
{
    const quay_sql_stmt_t  *stmt = quay_sql_stmt(QUAY_SQL_LOCATION_ENSURE);

    for (size_t i = 0; i < cfg->nstorage; i++) {
        const char  *name = cfg->storage[i].name;
        char         msg[QUAYCTL_DB_ERR_LEN];
        PGresult    *res;

        if (name == NULL) {
            continue;
        }

        res = PQexecParams(conn, stmt->text, 1, NULL, &name, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            quayctl_db_result_error(conn, res, msg, sizeof(msg));
            quayctl_fail("storage location \"%s\": %s", name, msg);
            PQclear(res);
            return -1;
        }

        if (strcmp(PQcmdTuples(res), "1") == 0) {
            printf("added storage location %s\n", name);
        }
        PQclear(res);
    }

    return 0;
}


static int
migrate_status(PGconn *conn, migrate_state_t *st)
{
    PGresult  *res;
    size_t     pending = 0;

    res = PQexec(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char  msg[QUAYCTL_DB_ERR_LEN];

        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("%s", msg);
        PQclear(res);
        return 1;
    }

    bool  exists = PQgetvalue(res, 0, 0)[0] == 't';

    PQclear(res);

    if (exists && migrate_load_applied(conn, st) != 0) {
        return 1;
    }

    for (size_t i = 0; i < st->napplied; i++) {
        migrate_applied_t  *a = &st->applied[i];
        migrate_file_t     *f = migrate_file_by_version(st, a->version);
        const char         *what = "applied";

        if (f == NULL) {
            what = "MISSING";
        } else if (strcmp(f->name, a->name) != 0) {
            what = "RENAMED";
        } else if (strcmp(f->checksum, a->checksum) != 0) {
            what = "CHANGED";
        }

        printf("%-8s %s  %s\n", what, a->name, a->applied_at);
    }

    for (size_t i = 0; i < st->nfiles; i++) {
        if (migrate_applied_by_version(st, st->files[i].version) == NULL) {
            printf("pending  %s\n", st->files[i].name);
            pending++;
        }
    }

    printf("%zu applied, %zu pending\n", st->napplied, pending);

    return migrate_verify(st) == 0 ? 0 : 1;
}


static void
migrate_state_free(migrate_state_t *st)
{
    for (size_t i = 0; i < st->nfiles; i++) {
        free(st->files[i].name);
        free(st->files[i].text);
    }
    free(st->files);

    for (size_t i = 0; i < st->napplied; i++) {
        free(st->applied[i].name);
        free(st->applied[i].checksum);
        free(st->applied[i].applied_at);
    }
    free(st->applied);
}


int
quayctl_migrate_main(int argc, char **argv)
{
    const char       *config_path = NULL, *db_uri = NULL, *dir_opt = NULL;
    bool              status = false;
    int               rc = 1;
    char              dirbuf[PATH_MAX];
    quay_config_t    *cfg = NULL;
    PGconn           *conn = NULL;
    migrate_state_t   st;

    memset(&st, 0, sizeof(st));

    for (int i = 1; i < argc; i++) {
        const char  *arg = argv[i];

        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            migrate_usage(stdout);
            return 0;
        }

        if (strcmp(arg, "--status") == 0) {
            status = true;
            continue;
        }

        int  m = quayctl_db_option(argc, argv, &i, "--config", &config_path);

        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--db-uri", &db_uri);
        }
        if (m == 0) {
            m = quayctl_db_option(argc, argv, &i, "--dir", &dir_opt);
        }
        if (m < 0) {
            return 2;
        }
        if (m > 0) {
            continue;
        }

        quayctl_fail("migrate: unknown argument \"%s\"", arg);
        migrate_usage(stderr);
        return 2;
    }

    if (config_path == NULL && db_uri == NULL) {
        quayctl_fail("migrate needs --config FILE or --db-uri URI");
        migrate_usage(stderr);
        return 2;
    }

    st.dir = migrate_find_dir(dir_opt, dirbuf, sizeof(dirbuf));
    if (st.dir == NULL) {
        quayctl_fail("no migrations directory next to this binary "
                     "(../../sql) or in ./sql; use --dir or QUAY_SQL_DIR");
        goto done;
    }

    if (migrate_load_files(&st) != 0) {
        goto done;
    }

    if (quayctl_db_resolve(config_path, &db_uri, &cfg) != 0) {
        goto done;
    }

    conn = quayctl_db_connect(db_uri, "quayctl-migrate");
    if (conn == NULL) {
        goto done;
    }

    if (PQserverVersion(conn) < QUAYCTL_MIGRATE_MIN_SERVER) {
        quayctl_fail("PostgreSQL 13 or newer is required (server version "
                     "%d)", PQserverVersion(conn));
        goto done;
    }

    if (status) {
        rc = migrate_status(conn, &st);
        goto done;
    }

    /* Everything below runs under the lock, reading included. */
    if (migrate_lock(conn) != 0) {
        goto done;
    }

    PGresult  *res = PQexec(conn, migrate_sql_create);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char  msg[QUAYCTL_DB_ERR_LEN];

        quayctl_db_result_error(conn, res, msg, sizeof(msg));
        quayctl_fail("creating schema_migrations: %s", msg);
        PQclear(res);
        goto done;
    }
    PQclear(res);

    if (migrate_load_applied(conn, &st) != 0 || migrate_verify(&st)) {
        goto done;
    }

    size_t  total = st.napplied;

    for (size_t i = 0; i < st.nfiles; i++) {
        migrate_file_t  *f = &st.files[i];

        if (migrate_applied_by_version(&st, f->version) != NULL) {
            continue;
        }

        if (migrate_apply(conn, f) != 0) {
            goto done;
        }

        printf("applied %s\n", f->name);
        fflush(stdout);
        total++;
    }

    if (cfg != NULL && migrate_locations(conn, cfg) != 0) {
        goto done;
    }

    printf("schema is up to date (%zu migrations)\n", total);
    rc = 0;

done:

    if (conn != NULL) {
        PQfinish(conn);             /* also releases the advisory lock */
    }

    if (cfg != NULL) {
        quay_config_free(cfg);
    }

    migrate_state_free(&st);

    return rc;
}


/* Helpers shared with quayctl_user.c --------------------------------------- */


/*
 * Matches argv[*i] against "--name VALUE" or "--name=VALUE".  Returns 1 and
 * sets *value (advancing *i past VALUE in the first form), 0 when argv[*i]
 * is another option, -1 when VALUE is missing (reported).
 */
int
quayctl_db_option(int argc, char **argv, int *i, const char *name,
    const char **value)
{
    const char  *arg = argv[*i];
    size_t       len = strlen(name);

    if (strncmp(arg, name, len) != 0) {
        return 0;
    }

    if (arg[len] == '=') {
        *value = arg + len + 1;
        return 1;
    }

    if (arg[len] != '\0') {
        return 0;
    }

    if (*i + 1 >= argc) {
        quayctl_fail("%s needs a value", name);
        return -1;
    }

    *value = argv[++*i];

    return 1;
}


int
quayctl_db_resolve(const char *config_path, const char **db_uri,
    quay_config_t **cfg)
{
    quay_err_t  err;

    *cfg = NULL;

    if (config_path != NULL) {
        err.msg[0] = '\0';
        *cfg = quay_config_load(config_path, NULL, NULL, &err);
        if (*cfg == NULL) {
            quayctl_fail("%s: %s", config_path,
                         err.msg[0] ? err.msg : "cannot load");
            return -1;
        }

        if (*db_uri == NULL) {
            *db_uri = (*cfg)->db_uri;
        }

        if (*db_uri == NULL || (*db_uri)[0] == '\0') {
            quayctl_fail("%s: DB_URI is not set", config_path);
            return -1;
        }
    }

    return 0;
}


/* Collapses whitespace runs (libpq's multi-line messages) into spaces. */
static void
quayctl_db_one_line(char *buf, size_t size, const char *msg)
{
    size_t  n = 0;
    bool    space = false;

    if (size == 0) {
        return;
    }

    for (; *msg != '\0' && n + 1 < size; msg++) {
        if (*msg == '\n' || *msg == '\r' || *msg == '\t' || *msg == ' ') {
            space = n > 0;
            continue;
        }

        if (space && n + 2 < size) {
            buf[n++] = ' ';
        }
        space = false;
        buf[n++] = *msg;
    }

    buf[n] = '\0';
}


void
quayctl_db_result_error(PGconn *conn, const PGresult *res, char *buf,
    size_t size)
{
    const char  *primary, *detail;
    char         line[QUAYCTL_DB_ERR_LEN];

    primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

    if (primary == NULL) {
        quayctl_db_one_line(buf, size, PQerrorMessage(conn));
        if (buf[0] == '\0') {
            (void) snprintf(buf, size, "%s",
                            res ? PQresStatus(PQresultStatus(res))
                                : "no result");
        }
        return;
    }

    if (detail != NULL) {
        (void) snprintf(line, sizeof(line), "%s (%s)", primary, detail);
        quayctl_db_one_line(buf, size, line);
    } else {
        quayctl_db_one_line(buf, size, primary);
    }
}


/* Drops NOTICEs ("... already exists, skipping"); prints the rest. */
static void
quayctl_db_notice(void *arg, const PGresult *res)
{
    const char  *severity, *primary;
    char         line[QUAYCTL_DB_ERR_LEN];

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity == NULL || strcmp(severity, "WARNING") != 0) {
        return;
    }

    primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    quayctl_db_one_line(line, sizeof(line), primary ? primary : "");
    fprintf(stderr, "quayctl: server warning: %s\n", line);
}


PGconn *
quayctl_db_connect(const char *db_uri, const char *application_name)
{
    char     uri[4096];
    char     msg[QUAYCTL_DB_ERR_LEN];
    PGconn  *conn;

    /*
     * Quay's DB_URI is an SQLAlchemy/peewee URL; libpq takes postgresql://
     * and postgres://.  Drop a "+driver" ("postgresql+psycopg2://").
     */
    const char  *rest = NULL;

    if (strncmp(db_uri, "postgresql", 10) == 0) {
        rest = db_uri + 10;
    } else if (strncmp(db_uri, "postgres", 8) == 0) {
        rest = db_uri + 8;
    }

    if (rest != NULL && rest[0] == '+') {
        rest = strstr(rest, "://");
    }

    if (rest == NULL || strncmp(rest, "://", 3) != 0) {
        quayctl_fail("DB_URI must be a postgresql:// URI");
        return NULL;
    }

    if (snprintf(uri, sizeof(uri), "postgresql%s", rest)
        >= (int) sizeof(uri))
    {
        quayctl_fail("DB_URI is too long");
        return NULL;
    }

    /* Later keywords win: the URI may override the defaults before it. */
    const char  *keywords[] = {
        "connect_timeout", "application_name", "dbname", NULL
    };
    const char  *values[] = { "10", application_name, uri, NULL };

    conn = PQconnectdbParams(keywords, values, 1);
    if (conn == NULL) {
        quayctl_fail("out of memory");
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        /* libpq's message names host and port, never the password */
        quayctl_db_one_line(msg, sizeof(msg), PQerrorMessage(conn));
        quayctl_fail("cannot connect to the database: %s", msg);
        PQfinish(conn);
        return NULL;
    }

    (void) PQsetNoticeReceiver(conn, quayctl_db_notice, NULL);

    return conn;
}
