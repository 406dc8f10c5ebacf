/*
 * Removes stale upload spools from this node's disk.
 *
 * An S3 upload spools the part it is filling on the node that received
 * the bytes: <client_body_temp_path>/uploads/<uuid> (see
 * ngx_http_quay_storage_s3.c).  PUT and DELETE remove the spool, but a
 * session the client abandons leaves it, and quay-upload-cleanup, which
 * deletes the session's row and S3 objects, runs elsewhere and cannot
 * reach this disk.  So one nginx worker per node (ngx_worker 0) sweeps
 * the spool directories of every location with quay_registry: every
 * quay_spool_sweep_interval (default 1h, 0 disables) a task in the
 * quay thread pool unlinks each spool file not written for longer than
 * BLOBUPLOAD_DELETION_DATE_THRESHOLD minutes, the age after which the
 * cleanup worker drops the session too.
 *
 * A spool in use is never removed: the request writing a spool holds
 * flock(LOCK_EX) on it, so the sweep takes the same lock without waiting
 * and skips the file when it cannot, and checks the age again under the
 * lock.  Only names that look like upload uuids are touched.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <dirent.h>
#include <sys/file.h>

#include "ngx_http_quay_module.h"
#include "ngx_http_quay_spool_sweep.h"


#define NGX_HTTP_QUAY_SWEEP_FIRST  60000    /* ms after the worker starts */


typedef struct {
    ngx_array_t                *dirs;        /* ngx_str_t, null-terminated
                                                names */
    time_t                      max_age;
    ngx_uint_t                  removed;
    ngx_uint_t                  failed;
    ngx_err_t                   err;         /* the first failure */
    char                       *failed_path; /* its file, or NULL */
} ngx_http_quay_sweep_task_ctx_t;


typedef struct {
    ngx_http_quay_main_conf_t  *qmcf;
    ngx_event_t                 timer;
    ngx_thread_task_t          *task;
    ngx_log_t                  *log;
    unsigned                    busy:1;
} ngx_http_quay_sweep_t;


static void ngx_http_quay_sweep_start(ngx_event_t *ev);
static void ngx_http_quay_sweep_handler(void *data, ngx_log_t *log);
static void ngx_http_quay_sweep_dir(ngx_http_quay_sweep_task_ctx_t *tc,
    ngx_str_t *dir);
static ngx_int_t ngx_http_quay_sweep_file(ngx_http_quay_sweep_task_ctx_t *tc,
    char *path, time_t now);
static ngx_uint_t ngx_http_quay_sweep_is_uuid(const char *name);
static void ngx_http_quay_sweep_done(ngx_event_t *ev);


static ngx_http_quay_sweep_t  ngx_http_quay_sweep;

/* a timer's data is taken for a connection by nginx's debug log */
static ngx_connection_t       ngx_http_quay_sweep_conn;


/*
 * Merge time: a location with quay_registry adds its client body temp
 * path (where its S3 uploads spool) to the directories to sweep.
 */

ngx_int_t
ngx_http_quay_spool_sweep_add_dir(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf, ngx_path_t *temp)
{
    ngx_str_t   *dir;
    ngx_uint_t   i;

    if (temp == NULL) {
        return NGX_OK;
    }

    if (qmcf->spool_dirs == NULL) {
        qmcf->spool_dirs = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (qmcf->spool_dirs == NULL) {
            return NGX_ERROR;
        }
    }

    dir = qmcf->spool_dirs->elts;

    for (i = 0; i < qmcf->spool_dirs->nelts; i++) {
        if (dir[i].len == temp->name.len + sizeof("/uploads") - 1
            && ngx_strncmp(dir[i].data, temp->name.data, temp->name.len)
               == 0)
        {
            return NGX_OK;
        }
    }

    dir = ngx_array_push(qmcf->spool_dirs);
    if (dir == NULL) {
        return NGX_ERROR;
    }

    dir->len = temp->name.len + sizeof("/uploads") - 1;
    dir->data = ngx_pnalloc(cf->pool, dir->len + 1);
    if (dir->data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(dir->data, "%V/uploads%Z", &temp->name);

    return NGX_OK;
}


ngx_int_t
ngx_http_quay_spool_sweep_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle)
{
    ngx_thread_task_t               *task;
    ngx_http_quay_sweep_t           *sw;
    ngx_http_quay_sweep_task_ctx_t  *tc;

    if (ngx_worker != 0
        || qmcf->spool_sweep_interval == 0
        || qmcf->spool_dirs == NULL
        || qmcf->thread_pool == NULL)
    {
        return NGX_OK;
    }

    task = ngx_thread_task_alloc(cycle->pool,
                                 sizeof(ngx_http_quay_sweep_task_ctx_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    tc = task->ctx;
    tc->dirs = qmcf->spool_dirs;
    tc->max_age = (time_t) qmcf->config->blobupload_deletion_date_threshold
                  * 60;

    sw = &ngx_http_quay_sweep;
    sw->qmcf = qmcf;
    sw->task = task;
    sw->log = cycle->log;
    sw->busy = 0;

    ngx_http_quay_sweep_conn.fd = (ngx_socket_t) -1;

    task->handler = ngx_http_quay_sweep_handler;
    task->event.handler = ngx_http_quay_sweep_done;
    task->event.data = &ngx_http_quay_sweep_conn;
    task->event.log = cycle->log;

    sw->timer.handler = ngx_http_quay_sweep_start;
    sw->timer.data = &ngx_http_quay_sweep_conn;
    sw->timer.log = cycle->log;
    sw->timer.cancelable = 1;

    ngx_add_timer(&sw->timer,
                  ngx_min(NGX_HTTP_QUAY_SWEEP_FIRST,
                          qmcf->spool_sweep_interval));

    return NGX_OK;
}


static void
ngx_http_quay_sweep_start(ngx_event_t *ev)
{
    ngx_http_quay_sweep_t  *sw;

    sw = &ngx_http_quay_sweep;

    if (sw->busy || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ngx_thread_task_post(sw->qmcf->thread_pool, sw->task) != NGX_OK) {
        ngx_add_timer(&sw->timer, sw->qmcf->spool_sweep_interval);
        return;
    }

    sw->busy = 1;
}


/* In the thread pool: nothing here touches nginx's memory but tc. */

static void
ngx_http_quay_sweep_handler(void *data, ngx_log_t *log)
{
    ngx_http_quay_sweep_task_ctx_t  *tc = data;

    ngx_str_t   *dir;
    ngx_uint_t   i;

    tc->removed = 0;
    tc->failed = 0;
    tc->err = 0;

    free(tc->failed_path);
    tc->failed_path = NULL;

    dir = tc->dirs->elts;

    for (i = 0; i < tc->dirs->nelts; i++) {
        ngx_http_quay_sweep_dir(tc, &dir[i]);
    }
}


static void
ngx_http_quay_sweep_dir(ngx_http_quay_sweep_task_ctx_t *tc, ngx_str_t *dir)
{
    DIR            *d;
    char           *path;
    size_t          len;
    time_t          now;
    struct dirent  *de;

    d = opendir((char *) dir->data);

    if (d == NULL) {
        /* ENOENT: no S3 upload ever spooled here */

        if (errno != ENOENT) {
            tc->failed++;

            if (tc->err == 0) {
                tc->err = errno;
                tc->failed_path = strdup((char *) dir->data);
            }
        }

        return;
    }

    now = time(NULL);

    while ((de = readdir(d)) != NULL) {

        if (!ngx_http_quay_sweep_is_uuid(de->d_name)) {
            continue;
        }

        len = dir->len + 1 + strlen(de->d_name) + 1;

        path = malloc(len);
        if (path == NULL) {
            break;
        }

        (void) snprintf(path, len, "%s/%s", (char *) dir->data, de->d_name);

        if (ngx_http_quay_sweep_file(tc, path, now) == NGX_ERROR
            && tc->failed_path == NULL)
        {
            tc->failed_path = path;
            continue;
        }

        free(path);
    }

    (void) closedir(d);
}


/* NGX_OK: removed; NGX_DECLINED: kept (young, in use, gone); NGX_ERROR */

static ngx_int_t
ngx_http_quay_sweep_file(ngx_http_quay_sweep_task_ctx_t *tc, char *path,
    time_t now)
{
    int          fd;
    struct stat  st;

    if (lstat(path, &st) == -1 || !S_ISREG(st.st_mode)
        || now - st.st_mtime < tc->max_age)
    {
        return NGX_DECLINED;
    }

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd == -1) {
        return NGX_DECLINED;
    }

    /* a request writing it holds the lock; the age again under ours */

    if (flock(fd, LOCK_EX | LOCK_NB) == -1
        || fstat(fd, &st) == -1
        || now - st.st_mtime < tc->max_age)
    {
        (void) close(fd);
        return NGX_DECLINED;
    }

    if (unlink(path) == -1) {
        (void) close(fd);

        if (errno == ENOENT) {
            return NGX_DECLINED;
        }

        tc->failed++;

        if (tc->err == 0) {
            tc->err = errno;
        }

        return NGX_ERROR;
    }

    (void) close(fd);
    tc->removed++;

    return NGX_OK;
}


/* An upload uuid as the registry makes them: 8-4-4-4-12 lowercase hex. */

static ngx_uint_t
ngx_http_quay_sweep_is_uuid(const char *name)
{
    size_t  i;

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (name[i] != '-') {
                return 0;
            }

            continue;
        }

        if (!((name[i] >= '0' && name[i] <= '9')
              || (name[i] >= 'a' && name[i] <= 'f')))
        {
            return 0;
        }
    }

    return name[36] == '\0';
}


/* Back on the event loop. */

static void
ngx_http_quay_sweep_done(ngx_event_t *ev)
{
    ngx_http_quay_sweep_t           *sw;
    ngx_http_quay_sweep_task_ctx_t  *tc;

    sw = &ngx_http_quay_sweep;
    tc = sw->task->ctx;
    sw->busy = 0;

    if (tc->removed) {
        ngx_log_error(NGX_LOG_NOTICE, sw->log, 0,
                      "quay: removed %ui upload spool file(s) not written "
                      "for %T minutes", tc->removed, tc->max_age / 60);
    }

    if (tc->failed) {
        ngx_log_error(NGX_LOG_ERR, sw->log, tc->err,
                      "quay: sweeping upload spools: %ui failure(s), the "
                      "first at \"%s\"", tc->failed,
                      tc->failed_path ? tc->failed_path : "?");
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(&sw->timer, sw->qmcf->spool_sweep_interval);
}
