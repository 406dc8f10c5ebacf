/*
 * LocalStorage: blobs and uploads as files below the location's
 * storage_path (Quay's storage/local.py, reference 4.3).
 *
 * DESIGN.  Reads go out through nginx's own machinery: the blob is opened
 * with ngx_open_cached_file() (one open() and fstat() on the event loop,
 * as the static module does, cached when open_file_cache is on) and sent
 * as an in_file buffer, so sendfile moves the bytes and the range filter
 * answers Range requests.
 *
 * Everything else touches the disk in the "quay" thread pool, never on
 * the event loop: creating, opening and locking uploads, writing chunks
 * (hashed in the same task, so SHA-256 does not run on the event loop
 * either), fsync, rename and unlink.  A task owns nothing of the request
 * but its task->ctx; the request is kept alive by r->main->blocked from
 * ngx_thread_task_post() to the completion handler, which runs on the
 * event loop, and only one task per upload is ever out.
 *
 * An upload is held by one request at a time: the request that opens it
 * takes flock(LOCK_EX | LOCK_NB) on the file and keeps the descriptor
 * until the request ends (an r->pool cleanup closes it, which releases
 * the lock, also when the worker is killed).  A second request for the
 * same upload gets NGX_HTTP_QUAY_STORAGE_LOCKED instead of interleaving
 * its bytes with the first one's.  On NFS, Linux maps flock() to POSIX
 * locks, so the rule holds across nodes sharing the storage.
 *
 * Durability: a chunk's bytes are fdatasync'ed before the caller records
 * the new length (upload_flush), and a commit truncates the upload to the
 * verified length, fsyncs it, renames it to sha256/<xx>/<hex> (over an
 * existing copy: same bytes) and fsyncs the directory, all before the
 * caller commits the row.  A file shorter
 * than the length the database recorded (bytes lost in a crash) is an
 * error, never silently zero-filled.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <sys/file.h>

#include "quay_reference.h"
#include "ngx_http_quay_module.h"
#include "ngx_http_quay_storage.h"


typedef enum {
    NGX_HTTP_QUAY_FS_CREATE = 0,
    NGX_HTTP_QUAY_FS_OPEN,
    NGX_HTTP_QUAY_FS_WRITE,
    NGX_HTTP_QUAY_FS_FLUSH,
    NGX_HTTP_QUAY_FS_COMMIT,
    NGX_HTTP_QUAY_FS_REMOVE,
    NGX_HTTP_QUAY_FS_SPOOL
} ngx_http_quay_fs_task_e;


/* The driver's part of ngx_http_quay_storage_object_t, in r->pool. */
typedef struct {
    ngx_open_file_info_t            of;          /* the descriptor is
                                                    closed by the cleanup
                                                    of ngx_open_cached_file */
    ngx_str_t                       path;        /* NUL-terminated */
} ngx_http_quay_fs_object_t;


/* The driver's part of ngx_http_quay_storage_upload_t, in r->pool. */
typedef struct {
    ngx_fd_t                        fd;          /* owned; closed by
                                                    ngx_http_quay_fs_cleanup */
    char                           *path;        /* .../uploads/<uuid> */
    ngx_thread_task_t              *task;        /* reused by every op */
    off_t                           size;        /* SPOOL: length when
                                                    opened */
    unsigned                        trimmed:1;   /* bytes past the
                                                    committed length
                                                    dropped */
} ngx_http_quay_fs_upload_t;


/*
 * A task's inputs and outputs.  The thread reads and writes only this
 * struct (and the data and hash it points to), never the request.
 */
typedef struct {
    ngx_http_quay_fs_task_e         kind;
    ngx_fd_t                        fd;          /* in and out */
    char                           *root;        /* storage_path */
    char                           *path;        /* the upload */
    char                           *blob;        /* COMMIT: the blob */
    size_t                          blob_dir_len;    /* .../sha256/xx */
    u_char                         *data;        /* WRITE */
    size_t                          len;
    off_t                           offset;
    off_t                           trim;        /* -1, or drop bytes past
                                                    it first */
    quay_sha256_t                  *hash;

    ngx_int_t                       rc;
    ngx_err_t                       err;
    const char                     *step;        /* what failed */

    ngx_http_quay_storage_upload_t *up;          /* event loop only */
    ngx_http_quay_storage_op_t     *op;          /* event loop only */
} ngx_http_quay_fs_task_t;


static ngx_int_t ngx_http_quay_fs_open_read(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_http_quay_storage_object_t *obj);
static ngx_int_t ngx_http_quay_fs_send(ngx_http_request_t *r,
    ngx_http_quay_storage_object_t *obj);
static ngx_int_t ngx_http_quay_fs_upload_begin(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_fs_upload_open(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_fs_upload_write(
    ngx_http_quay_storage_upload_t *up, u_char *p, size_t len,
    quay_sha256_t *hash, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_fs_upload_flush(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_fs_upload_commit(
    ngx_http_quay_storage_upload_t *up, off_t size, const quay_digest_t *d,
    ngx_http_quay_storage_op_t *op);
static void ngx_http_quay_fs_upload_release(
    ngx_http_quay_storage_upload_t *up);
static ngx_int_t ngx_http_quay_fs_upload_abort(
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_storage_op_t *op);
static ngx_int_t ngx_http_quay_fs_presign(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_str_t *url);

static ngx_http_quay_fs_upload_t *ngx_http_quay_fs_upload_state(
    ngx_http_quay_storage_upload_t *up, ngx_http_request_t *r);
static char *ngx_http_quay_fs_path(ngx_pool_t *pool, const char *root,
    const char *dir, u_char *name, size_t len);
static ngx_int_t ngx_http_quay_fs_post(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op, ngx_http_quay_fs_task_t *tc,
    ngx_thread_task_t *task);
static ngx_thread_task_t *ngx_http_quay_fs_task(ngx_http_request_t *r,
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_fs_upload_t *fu,
    ngx_http_quay_fs_task_e kind);
static void ngx_http_quay_fs_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_fs_create(ngx_http_quay_fs_task_t *tc);
static void ngx_http_quay_fs_open(ngx_http_quay_fs_task_t *tc);
static void ngx_http_quay_fs_spool(ngx_http_quay_fs_task_t *tc);
static ngx_int_t ngx_http_quay_fs_trim(ngx_http_quay_fs_task_t *tc);
static void ngx_http_quay_fs_write(ngx_http_quay_fs_task_t *tc);
static void ngx_http_quay_fs_commit(ngx_http_quay_fs_task_t *tc);
static ngx_int_t ngx_http_quay_fs_mkdir(ngx_http_quay_fs_task_t *tc,
    char *dir);
static ngx_int_t ngx_http_quay_fs_sync_dir(ngx_http_quay_fs_task_t *tc,
    char *dir);
static void ngx_http_quay_fs_task_done(ngx_event_t *ev);
static void ngx_http_quay_fs_cleanup(void *data);


const ngx_http_quay_storage_driver_t  ngx_http_quay_storage_fs_driver = {
    "LocalStorage",
    ngx_http_quay_fs_open_read,
    ngx_http_quay_fs_send,
    ngx_http_quay_fs_upload_begin,
    ngx_http_quay_fs_upload_open,
    NULL,                                  /* upload_resume */
    ngx_http_quay_fs_upload_write,
    ngx_http_quay_fs_upload_flush,
    ngx_http_quay_fs_upload_commit,
    ngx_http_quay_fs_upload_release,
    ngx_http_quay_fs_upload_abort,
    ngx_http_quay_fs_presign
};


static ngx_int_t
ngx_http_quay_fs_open_read(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_http_quay_storage_object_t *obj)
{
    char                        key[QUAY_DIGEST_PATH_MAX + 1];
    size_t                      n;
    ngx_str_t                  *path;
    ngx_open_file_info_t       *of;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quay_fs_object_t  *fo;

    n = quay_digest_storage_path(d, key, sizeof(key));
    if (n == 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: invalid digest reached the driver");
        return NGX_ERROR;
    }

    fo = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_fs_object_t));
    if (fo == NULL) {
        return NGX_ERROR;
    }

    path = &fo->path;
    of = &fo->of;

    path->data = (u_char *) ngx_http_quay_fs_path(r->pool, loc->storage_path,
                                                  NULL, (u_char *) key, n);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    path->len = ngx_strlen(path->data);

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    of->read_ahead = clcf->read_ahead;
    of->directio = clcf->directio;
    of->valid = clcf->open_file_cache_valid;
    of->min_uses = clcf->open_file_cache_min_uses;
    of->errors = clcf->open_file_cache_errors;
    of->events = clcf->open_file_cache_events;

    /* ngx_open_cached_file() registers the r->pool cleanup that closes
     * the descriptor (or the cache keeps it) */

    if (ngx_open_cached_file(clcf->open_file_cache, path, of, r->pool)
        != NGX_OK)
    {
        if (of->err == NGX_ENOENT || of->err == NGX_ENOTDIR) {
            return NGX_HTTP_QUAY_STORAGE_MISSING;
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, of->err,
                      "quay: storage: %s \"%V\" failed", of->failed,
                      path);
        return NGX_ERROR;
    }

    if (!of->is_file) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                      "quay: storage: blob \"%V\" is not a file", path);
        return NGX_ERROR;
    }

    obj->size = of->size;
    obj->data = fo;

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_fs_send(ngx_http_request_t *r,
    ngx_http_quay_storage_object_t *obj)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_http_quay_fs_object_t  *fo;

    fo = obj->data;

    /* allocate everything before the header goes out */

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_length_n = obj->size;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = obj->size;

    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->sync = (b->last_buf || b->in_file) ? 0 : 1;

    b->file->fd = fo->of.fd;
    b->file->name = fo->path;
    b->file->log = r->connection->log;
    b->file->directio = fo->of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_quay_fs_upload_begin(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_upload_t  *fu;

    fu = ngx_http_quay_fs_upload_state(up, op->r);
    if (fu == NULL) {
        return NGX_ERROR;
    }

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_CREATE);
    if (task == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quay_fs_post(up, op, task->ctx, task);
}


static ngx_int_t
ngx_http_quay_fs_upload_open(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_upload_t  *fu;

    fu = ngx_http_quay_fs_upload_state(up, op->r);
    if (fu == NULL) {
        return NGX_ERROR;
    }

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_OPEN);
    if (task == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quay_fs_post(up, op, task->ctx, task);
}


ngx_int_t
ngx_http_quay_storage_fs_spool_open(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_upload_t  *fu;

    fu = ngx_http_quay_fs_upload_state(up, op->r);
    if (fu == NULL) {
        return NGX_ERROR;
    }

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_SPOOL);
    if (task == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quay_fs_post(up, op, task->ctx, task);
}


off_t
ngx_http_quay_storage_fs_spool_size(ngx_http_quay_storage_upload_t *up)
{
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    return fu ? fu->size : 0;
}


ngx_fd_t
ngx_http_quay_storage_fs_spool_fd(ngx_http_quay_storage_upload_t *up,
    ngx_str_t *name)
{
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    if (fu == NULL) {
        return NGX_INVALID_FILE;
    }

    name->data = (u_char *) fu->path;
    name->len = ngx_strlen(fu->path);

    return fu->fd;
}


void
ngx_http_quay_storage_fs_spool_rewind(ngx_http_quay_storage_upload_t *up,
    off_t offset)
{
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    up->offset = offset;

    if (fu != NULL) {
        /* the next task cuts the file to offset first */
        fu->trimmed = 0;
    }
}


static ngx_int_t
ngx_http_quay_fs_upload_write(ngx_http_quay_storage_upload_t *up,
    u_char *p, size_t len, quay_sha256_t *hash,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_task_t    *tc;
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_WRITE);
    if (task == NULL) {
        return NGX_ERROR;
    }

    tc = task->ctx;
    tc->data = p;
    tc->len = len;
    tc->offset = up->offset;
    tc->hash = hash;

    return ngx_http_quay_fs_post(up, op, tc, task);
}


static ngx_int_t
ngx_http_quay_fs_upload_flush(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_FLUSH);
    if (task == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quay_fs_post(up, op, task->ctx, task);
}


static ngx_int_t
ngx_http_quay_fs_upload_commit(ngx_http_quay_storage_upload_t *up,
    off_t size, const quay_digest_t *d, ngx_http_quay_storage_op_t *op)
{
    char                       key[QUAY_DIGEST_PATH_MAX + 1];
    size_t                     n;
    ngx_thread_task_t         *task;
    ngx_http_quay_fs_task_t   *tc;
    ngx_http_quay_fs_upload_t *fu;

    fu = up->data;

    n = quay_digest_storage_path(d, key, sizeof(key));
    if (n == 0) {
        ngx_log_error(NGX_LOG_ALERT, op->r->connection->log, 0,
                      "quay: storage: invalid digest reached the driver");
        return NGX_ERROR;
    }

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_COMMIT);
    if (task == NULL) {
        return NGX_ERROR;
    }

    tc = task->ctx;

    tc->blob = ngx_http_quay_fs_path(op->r->pool, up->loc->storage_path,
                                     NULL, (u_char *) key, n);
    if (tc->blob == NULL) {
        return NGX_ERROR;
    }

    /* "sha256/xx/<hex>": the directory ends before the last '/' */

    tc->blob_dir_len = ngx_strlen(tc->blob) - d->hex_len - 1;
    tc->offset = size;

    return ngx_http_quay_fs_post(up, op, tc, task);
}


static void
ngx_http_quay_fs_upload_release(ngx_http_quay_storage_upload_t *up)
{
    ngx_http_quay_fs_upload_t  *fu;

    fu = up->data;

    if (fu == NULL || fu->fd == NGX_INVALID_FILE
        || (fu->task != NULL && fu->task->event.active))
    {
        return;
    }

    /* closing the descriptor releases the flock() */

    (void) close(fu->fd);
    fu->fd = NGX_INVALID_FILE;
}


static ngx_int_t
ngx_http_quay_fs_upload_abort(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op)
{
    ngx_thread_task_t          *task;
    ngx_http_quay_fs_upload_t  *fu;

    fu = ngx_http_quay_fs_upload_state(up, op->r);
    if (fu == NULL) {
        return NGX_ERROR;
    }

    task = ngx_http_quay_fs_task(op->r, up, fu, NGX_HTTP_QUAY_FS_REMOVE);
    if (task == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quay_fs_post(up, op, task->ctx, task);
}


static ngx_int_t
ngx_http_quay_fs_presign(ngx_http_request_t *r,
    const quay_storage_location_t *loc, const quay_digest_t *d,
    ngx_str_t *url)
{
    /* files are always sent by nginx itself */

    return NGX_DECLINED;
}


/*
 * The upload's driver state, made on first use: the file name and a
 * cleanup that closes the descriptor (and so releases the lock) when the
 * request ends.
 */

static ngx_http_quay_fs_upload_t *
ngx_http_quay_fs_upload_state(ngx_http_quay_storage_upload_t *up,
    ngx_http_request_t *r)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_quay_fs_upload_t  *fu;

    if (up->data != NULL) {
        return up->data;
    }

    if (up->uuid.len != QUAY_UUID_LEN
        || quay_uuid_valid(up->uuid.data, up->uuid.len, NULL) != QUAY_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: invalid upload uuid reached the "
                      "driver");
        return NULL;
    }

    fu = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_fs_upload_t));
    if (fu == NULL) {
        return NULL;
    }

    fu->fd = NGX_INVALID_FILE;

    fu->path = ngx_http_quay_fs_path(r->pool, up->loc->storage_path,
                                     "uploads", up->uuid.data, up->uuid.len);
    if (fu->path == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_quay_fs_cleanup;
    cln->data = fu;

    up->data = fu;

    return fu;
}


/* "<root>/<dir>/<name>" or "<root>/<name>", NUL-terminated, in pool. */

static char *
ngx_http_quay_fs_path(ngx_pool_t *pool, const char *root, const char *dir,
    u_char *name, size_t len)
{
    u_char  *path, *p;
    size_t   root_len, dir_len;

    root_len = ngx_strlen(root);
    dir_len = dir ? ngx_strlen(dir) + 1 : 0;

    /* a LocalStorage root is an absolute directory; "" would put keys
     * below the file system root */

    if (root_len == 0 || root[0] != '/') {
        ngx_log_error(NGX_LOG_ALERT, pool->log, 0,
                      "quay: storage: LocalStorage storage_path \"%s\" is "
                      "not an absolute path", root);
        return NULL;
    }

    while (root_len > 1 && root[root_len - 1] == '/') {
        root_len--;
    }

    path = ngx_pnalloc(pool, root_len + 1 + dir_len + len + 1);
    if (path == NULL) {
        return NULL;
    }

    p = ngx_cpymem(path, root, root_len);

    if (root[root_len - 1] != '/') {
        *p++ = '/';
    }

    if (dir) {
        p = ngx_cpymem(p, dir, dir_len - 1);
        *p++ = '/';
    }

    p = ngx_cpymem(p, name, len);
    *p = '\0';

    return (char *) path;
}


/* A task for the upload; write tasks reuse one allocation. */

static ngx_thread_task_t *
ngx_http_quay_fs_task(ngx_http_request_t *r,
    ngx_http_quay_storage_upload_t *up, ngx_http_quay_fs_upload_t *fu,
    ngx_http_quay_fs_task_e kind)
{
    ngx_thread_task_t        *task;
    ngx_http_quay_fs_task_t  *tc;

    if (fu == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: upload used before it was held");
        return NULL;
    }

    task = fu->task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_quay_fs_task_t));
        if (task == NULL) {
            return NULL;
        }

        fu->task = task;
    }

    if (task->event.active) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: operation started while another "
                      "one is out");
        return NULL;
    }

    tc = task->ctx;
    ngx_memzero(tc, sizeof(ngx_http_quay_fs_task_t));

    tc->kind = kind;
    tc->fd = fu->fd;
    tc->root = up->loc->storage_path;
    tc->path = fu->path;
    /* until the first write, up->offset is the committed length */

    tc->trim = fu->trimmed ? -1 : up->offset;
    tc->up = up;

    return task;
}


static ngx_int_t
ngx_http_quay_fs_post(ngx_http_quay_storage_upload_t *up,
    ngx_http_quay_storage_op_t *op, ngx_http_quay_fs_task_t *tc,
    ngx_thread_task_t *task)
{
    ngx_http_request_t         *r;
    ngx_http_quay_main_conf_t  *qmcf;

    r = op->r;
    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    if (qmcf->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quay: storage: no thread pool");
        return NGX_ERROR;
    }

    tc->op = op;

    task->handler = ngx_http_quay_fs_thread;
    task->event.handler = ngx_http_quay_fs_task_done;
    task->event.data = tc;
    task->event.log = r->connection->log;

    if (ngx_thread_task_post(qmcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* released by ngx_http_quay_fs_task_done(): the request, the task and
     * the buffers it points to live until the thread is done with them */

    r->main->blocked++;

    return NGX_AGAIN;
}


/* Runs in a thread: only system calls on task data. */

static void
ngx_http_quay_fs_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_fs_task_t  *tc = data;

    tc->rc = NGX_OK;

    switch (tc->kind) {

    case NGX_HTTP_QUAY_FS_CREATE:
        ngx_http_quay_fs_create(tc);
        break;

    case NGX_HTTP_QUAY_FS_OPEN:
        ngx_http_quay_fs_open(tc);
        break;

    case NGX_HTTP_QUAY_FS_SPOOL:
        ngx_http_quay_fs_spool(tc);
        break;

    case NGX_HTTP_QUAY_FS_WRITE:
        ngx_http_quay_fs_write(tc);
        break;

    case NGX_HTTP_QUAY_FS_FLUSH:
        if (ngx_http_quay_fs_trim(tc) != NGX_OK) {
            break;
        }

        if (fdatasync(tc->fd) == -1) {
            tc->err = ngx_errno;
            tc->step = "fdatasync()";
            tc->rc = NGX_ERROR;
        }
        break;

    case NGX_HTTP_QUAY_FS_COMMIT:
        ngx_http_quay_fs_commit(tc);
        break;

    case NGX_HTTP_QUAY_FS_REMOVE:
        if (unlink(tc->path) == -1) {
            tc->err = ngx_errno;
            tc->step = "unlink()";
            tc->rc = (tc->err == NGX_ENOENT) ? NGX_HTTP_QUAY_STORAGE_MISSING
                                             : NGX_ERROR;
        }
        break;
    }
}


static void
ngx_http_quay_fs_create(ngx_http_quay_fs_task_t *tc)
{
    ngx_fd_t  fd;
    size_t    len;
    char     *dir;

    fd = open(tc->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    if (fd == -1 && ngx_errno == NGX_ENOENT) {

        /* the first upload of this location: make <root>/uploads */

        len = ngx_strlen(tc->path) - QUAY_UUID_LEN - 1;
        dir = tc->path;
        dir[len] = '\0';

        if (ngx_http_quay_fs_mkdir(tc, dir) != NGX_OK) {
            dir[len] = '/';
            return;
        }

        dir[len] = '/';
        fd = open(tc->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }

    if (fd == -1) {
        tc->err = ngx_errno;
        tc->step = "open()";
        tc->rc = NGX_ERROR;
        return;
    }

    tc->fd = fd;

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        tc->err = ngx_errno;
        tc->step = "flock()";
        tc->rc = NGX_ERROR;
    }
}


static void
ngx_http_quay_fs_open(ngx_http_quay_fs_task_t *tc)
{
    ngx_fd_t  fd;

    fd = open(tc->path, O_RDWR | O_CLOEXEC);

    if (fd == -1) {
        tc->err = ngx_errno;
        tc->step = "open()";
        tc->rc = (tc->err == NGX_ENOENT) ? NGX_HTTP_QUAY_STORAGE_MISSING
                                         : NGX_ERROR;
        return;
    }

    tc->fd = fd;

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        tc->err = ngx_errno;
        tc->step = "flock()";
        tc->rc = (tc->err == EWOULDBLOCK) ? NGX_HTTP_QUAY_STORAGE_LOCKED
                                          : NGX_ERROR;
    }
}


/*
 * A spool: opened, or made (with <root>/uploads) when missing, then locked
 * like an upload, and measured.  Spools live on a node-local disk that
 * other users may read: 0600.
 */

static void
ngx_http_quay_fs_spool(ngx_http_quay_fs_task_t *tc)
{
    ngx_fd_t      fd;
    size_t        len;
    char         *dir;
    ngx_uint_t    tries;
    struct stat   st, named;

    tries = 0;

again:

    fd = open(tc->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd == -1 && ngx_errno == NGX_ENOENT) {
        len = ngx_strlen(tc->path) - QUAY_UUID_LEN - 1;
        dir = tc->path;
        dir[len] = '\0';

        if (ngx_http_quay_fs_mkdir(tc, dir) != NGX_OK) {
            dir[len] = '/';
            return;
        }

        dir[len] = '/';
        fd = open(tc->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    }

    if (fd == -1) {
        tc->err = ngx_errno;
        tc->step = "open()";
        tc->rc = NGX_ERROR;
        return;
    }

    tc->fd = fd;

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        tc->err = ngx_errno;
        tc->step = "flock()";
        tc->rc = (tc->err == EWOULDBLOCK) ? NGX_HTTP_QUAY_STORAGE_LOCKED
                                          : NGX_ERROR;
        return;
    }

    if (fstat(fd, &st) == -1) {
        tc->err = ngx_errno;
        tc->step = "fstat()";
        tc->rc = NGX_ERROR;
        return;
    }

    /*
     * The spool sweep (ngx_http_quay_spool_sweep.c) may have unlinked the
     * file between our open() and our lock: then the lock is on a file
     * nobody else can find.  Start again with the name's file (a new,
     * empty spool, which the S3 driver refills from the bucket's tail).
     */

    if (stat(tc->path, &named) == -1
        || named.st_ino != st.st_ino || named.st_dev != st.st_dev)
    {
        (void) close(fd);
        tc->fd = NGX_INVALID_FILE;

        if (++tries < 3) {
            goto again;
        }

        tc->err = NGX_ENOENT;
        tc->step = "open() (removed meanwhile)";
        tc->rc = NGX_ERROR;
        return;
    }

    tc->offset = st.st_size;
}


/*
 * Before the first write of a request: bytes past the committed length
 * were left by a request that died before it could record them; drop
 * them.  A file shorter than the committed length lost bytes the
 * database counts: refuse to go on.
 */

static ngx_int_t
ngx_http_quay_fs_trim(ngx_http_quay_fs_task_t *tc)
{
    struct stat  st;

    if (tc->trim < 0) {
        return NGX_OK;
    }

    if (fstat(tc->fd, &st) == -1) {
        tc->err = ngx_errno;
        tc->step = "fstat()";
        tc->rc = NGX_ERROR;
        return NGX_ERROR;
    }

    if (st.st_size < tc->trim) {
        tc->err = 0;
        tc->step = "check of the length of";
        tc->rc = NGX_ERROR;
        return NGX_ERROR;
    }

    if (st.st_size > tc->trim && ftruncate(tc->fd, tc->trim) == -1) {
        tc->err = ngx_errno;
        tc->step = "ftruncate()";
        tc->rc = NGX_ERROR;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quay_fs_write(ngx_http_quay_fs_task_t *tc)
{
    u_char   *p;
    size_t    left;
    off_t     offset;
    ssize_t   n;

    if (ngx_http_quay_fs_trim(tc) != NGX_OK) {
        return;
    }

    if (tc->hash != NULL) {
        quay_sha256_update(tc->hash, tc->data, tc->len);
    }

    p = tc->data;
    left = tc->len;
    offset = tc->offset;

    while (left) {
        n = pwrite(tc->fd, p, left, offset);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            tc->err = ngx_errno;
            tc->step = "pwrite()";
            tc->rc = NGX_ERROR;
            return;
        }

        p += n;
        left -= n;
        offset += n;
    }

#if (NGX_LINUX)

    /*
     * Start writing these pages back now, without waiting: the disk
     * works while the next chunk arrives, the fdatasync() at the end has
     * little left to do, and dirty page cache stays small.  A failure
     * here only loses that head start.
     */

    (void) sync_file_range(tc->fd, tc->offset, tc->len,
                           SYNC_FILE_RANGE_WRITE);

#endif
}


static void
ngx_http_quay_fs_commit(ngx_http_quay_fs_task_t *tc)
{
    char    *blob, *dir;
    size_t   algo_len;

    /* exactly the verified bytes, durable, before the rename */

    tc->trim = tc->offset;

    if (ngx_http_quay_fs_trim(tc) != NGX_OK) {
        return;
    }

    if (fsync(tc->fd) == -1) {
        tc->err = ngx_errno;
        tc->step = "fsync()";
        tc->rc = NGX_ERROR;
        return;
    }

    blob = tc->blob;
    dir = blob;

    /* <root>/sha256 and <root>/sha256/xx; the root itself must exist */

    algo_len = tc->blob_dir_len - 3;
    dir[algo_len] = '\0';

    if (ngx_http_quay_fs_mkdir(tc, dir) != NGX_OK) {
        dir[algo_len] = '/';
        return;
    }

    dir[algo_len] = '/';
    dir[tc->blob_dir_len] = '\0';

    if (ngx_http_quay_fs_mkdir(tc, dir) != NGX_OK) {
        dir[tc->blob_dir_len] = '/';
        return;
    }

    dir[tc->blob_dir_len] = '/';

    /*
     * An existing blob file is replaced, atomically, by the same bytes
     * rather than trusted: it may be on its way out (garbage collection
     * of an unused blob), and after this rename the bytes are there for
     * the row the caller is about to commit.
     */

    if (rename(tc->path, blob) == -1) {
        tc->err = ngx_errno;
        tc->step = "rename()";
        tc->rc = NGX_ERROR;
        return;
    }

    dir[tc->blob_dir_len] = '\0';
    (void) ngx_http_quay_fs_sync_dir(tc, dir);
    dir[tc->blob_dir_len] = '/';
}


/* mkdir that accepts an existing directory; a new one is made durable. */

static ngx_int_t
ngx_http_quay_fs_mkdir(ngx_http_quay_fs_task_t *tc, char *dir)
{
    char       *slash;
    ngx_int_t   rc;

    if (mkdir(dir, 0755) == -1) {
        if (ngx_errno == NGX_EEXIST) {
            return NGX_OK;
        }

        tc->err = ngx_errno;
        tc->step = "mkdir()";
        tc->rc = NGX_ERROR;
        return NGX_ERROR;
    }

    slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        return NGX_OK;
    }

    *slash = '\0';
    rc = ngx_http_quay_fs_sync_dir(tc, dir);
    *slash = '/';

    return rc;
}


static ngx_int_t
ngx_http_quay_fs_sync_dir(ngx_http_quay_fs_task_t *tc, char *dir)
{
    ngx_fd_t  fd;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        tc->err = ngx_errno;
        tc->step = "open() of the directory of";
        tc->rc = NGX_ERROR;
        return NGX_ERROR;
    }

    if (fsync(fd) == -1) {
        tc->err = ngx_errno;
        tc->step = "fsync() of the directory of";
        tc->rc = NGX_ERROR;
        (void) close(fd);
        return NGX_ERROR;
    }

    (void) close(fd);

    return NGX_OK;
}


static void
ngx_http_quay_fs_task_done(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_quay_fs_task_t         *tc;
    ngx_http_quay_fs_upload_t       *fu;
    ngx_http_quay_storage_op_t      *op;
    ngx_http_quay_storage_upload_t  *up;

    tc = ev->data;
    op = tc->op;
    up = tc->up;
    fu = up->data;
    r = op->r;
    c = r->connection;

    r->main->blocked--;

    /* the descriptor belongs to the upload (and its cleanup) now */

    fu->fd = tc->fd;

    if (tc->rc == NGX_OK) {

        switch (tc->kind) {

        case NGX_HTTP_QUAY_FS_CREATE:
            fu->trimmed = 1;
            break;

        case NGX_HTTP_QUAY_FS_WRITE:
            fu->trimmed = 1;
            up->offset += tc->len;
            break;

        case NGX_HTTP_QUAY_FS_FLUSH:
            fu->trimmed = 1;
            break;

        case NGX_HTTP_QUAY_FS_SPOOL:
            fu->size = tc->offset;
            break;

        default:
            break;
        }

    } else if (tc->rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, c->log, tc->err,
                      "quay: storage: %s \"%s\" failed%s%s%s", tc->step,
                      tc->path, tc->blob ? " (blob \"" : "",
                      tc->blob ? tc->blob : "", tc->blob ? "\")" : "");
    }

    if ((tc->kind == NGX_HTTP_QUAY_FS_OPEN
         || tc->kind == NGX_HTTP_QUAY_FS_SPOOL)
        && tc->rc != NGX_OK
        && fu->fd != NGX_INVALID_FILE)
    {
        /* a locked or failed open does not hold the upload */

        (void) close(fu->fd);
        fu->fd = NGX_INVALID_FILE;
    }

    op->rc = tc->rc;
    op->err = tc->err;

    op->handler(op);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_fs_cleanup(void *data)
{
    ngx_http_quay_fs_upload_t  *fu = data;

    /* closing the descriptor releases the flock() */

    if (fu->fd != NGX_INVALID_FILE) {
        (void) close(fu->fd);
        fu->fd = NGX_INVALID_FILE;
    }
}
