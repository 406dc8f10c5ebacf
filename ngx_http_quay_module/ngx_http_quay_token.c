/*
 * GET /v2/auth: the Docker token service (quay-behaviour §3.1, §3.2).
 *
 * States, each step asynchronous and each ending in the next:
 *
 *   parse      service, scope (repeatable) and Basic credentials
 *   user       the user row (Basic credentials only)
 *   password   PBKDF2 check in the thread pool (~35 ms of CPU)
 *   scope      for each repository scope: one query gives the namespace,
 *              the repository and every right the user has on it; a push
 *              to a repository that does not exist in a namespace the user
 *              may create in creates it (CREATE_PRIVATE_REPO_ON_PUSH)
 *   sign       RS256 in the thread pool
 *
 * The token's access claim is the intersection of what was asked and what
 * is allowed: asking for more is never an error, it just yields less.
 * Only bad credentials are (401).  Anonymous requests get pull on public
 * repositories when FEATURE_ANONYMOUS_ACCESS is on.
 *
 * Robots, app-specific and OAuth tokens, login throttling and audit log
 * rows are issue #4's; the user lookup and the rights query are where
 * they slot in.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>
#include <openssl/rand.h>

#include "quay_base64.h"
#include "quay_password.h"
#include "quay_reference.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_throttle.h"
#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_v2.h"


#define NGX_HTTP_QUAY_TOKEN_MAX_SCOPES  16


typedef struct {
    ngx_str_t                   type;        /* repository | registry */
    ngx_str_t                   name;        /* ns/repo or catalog */
    ngx_str_t                   ns;
    ngx_str_t                   repo;
    ngx_uint_t                  asked;       /* NGX_HTTP_QUAY_ACTION_* */
    ngx_uint_t                  granted;
    ngx_str_t                   namespace_id;   /* for create on push */
} ngx_http_quay_token_scope_t;


typedef struct {
    ngx_http_request_t         *r;
    ngx_http_quay_main_conf_t  *qmcf;

    ngx_str_t                   username;
    ngx_str_t                   password;
    ngx_str_t                   user_id;
    ngx_str_t                   user_uuid;
    ngx_uint_t                  superuser;

    ngx_array_t                 scopes;      /* of _token_scope_t */
    ngx_uint_t                  next;

    /* thread tasks: inputs and outputs, NUL-terminated, in r->pool */
    char                       *password_hash;
    int                         password_rc;
    char                       *claims;
    char                       *jwt;         /* malloc'ed by lib; copied */
    ngx_int_t                   expires;
} ngx_http_quay_token_ctx_t;


static ngx_int_t ngx_http_quay_token_parse_args(ngx_http_quay_token_ctx_t *t);
static ngx_int_t ngx_http_quay_token_parse_scope(ngx_http_quay_token_ctx_t *t,
    ngx_str_t *value);
static ngx_int_t ngx_http_quay_token_parse_basic(
    ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_throttle_done(void *data,
    ngx_int_t retry_after);
static void ngx_http_quay_token_lookup_user(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_login_failed(void *data,
    ngx_int_t unused);
static void ngx_http_quay_token_user_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_password_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_token_password_done(ngx_event_t *ev);
static void ngx_http_quay_token_next_scope(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_access_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_create_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_sign(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_sign_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_token_sign_done(ngx_event_t *ev);
static void ngx_http_quay_token_finish(ngx_http_quay_token_ctx_t *t,
    ngx_int_t rc);
static ngx_int_t ngx_http_quay_token_fail(ngx_http_request_t *r,
    ngx_http_quay_err_e err);
static ngx_uint_t ngx_http_quay_token_is_superuser(quay_config_t *cfg,
    ngx_str_t *name);
static ngx_int_t ngx_http_quay_token_post(ngx_http_quay_token_ctx_t *t,
    ngx_thread_task_t *task);


ngx_int_t
ngx_http_quay_token_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_quay_token_ctx_t  *t;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_quay_token_fail(r, NGX_HTTP_QUAY_ERR_METHOD);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    t = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_token_ctx_t));
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->r = r;
    t->qmcf = ngx_http_get_module_main_conf(r, ngx_http_quay_module);

    if (ngx_array_init(&t->scopes, r->pool, 4,
                       sizeof(ngx_http_quay_token_scope_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_quay_token_parse_args(t) != NGX_OK) {
        return ngx_http_quay_token_fail(r,
                                        NGX_HTTP_QUAY_ERR_INVALID_REQUEST);
    }

    rc = ngx_http_quay_token_parse_basic(t);

    if (rc == NGX_DECLINED) {
        return ngx_http_quay_token_fail(r, NGX_HTTP_QUAY_ERR_INVALID_LOGIN);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* one reference until ngx_http_quay_token_finish() */

    r->main->count++;

    if (t->username.len == 0) {

        if (!t->qmcf->config->feature_anonymous_access) {
            ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                              NGX_HTTP_QUAY_ERR_UNAUTHORIZED));
            return NGX_DONE;
        }

        ngx_http_quay_token_next_scope(t);
        return NGX_DONE;
    }

    if (ngx_http_quay_throttle_check(r, &t->username,
                                     ngx_http_quay_token_throttle_done, t)
        != NGX_AGAIN)
    {
        ngx_http_quay_token_lookup_user(t);
    }

    return NGX_DONE;
}


static void
ngx_http_quay_token_throttle_done(void *data, ngx_int_t retry_after)
{
    ngx_http_quay_token_ctx_t  *t = data;

    u_char            *p;
    ngx_table_elt_t   *h;
    ngx_connection_t  *c;

    c = t->r->connection;

    if (retry_after == 0) {
        ngx_http_quay_token_lookup_user(t);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "quay: login for \"%V\" throttled for %i s",
                  &t->username, retry_after);

    p = ngx_pnalloc(t->r->pool, NGX_INT_T_LEN);
    h = ngx_list_push(&t->r->headers_out.headers);

    if (p == NULL || h == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%i", retry_after) - p;

    ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(t->r,
                                      NGX_HTTP_QUAY_ERR_TOO_MANY_REQUESTS));
    ngx_http_run_posted_requests(c);
}


/* 401 once the failure is counted (or could not be). */

static void
ngx_http_quay_token_login_failed(void *data, ngx_int_t unused)
{
    ngx_http_quay_token_ctx_t  *t = data;

    ngx_connection_t  *c;

    c = t->r->connection;

    ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(t->r,
                                      NGX_HTTP_QUAY_ERR_INVALID_LOGIN));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_token_lookup_user(ngx_http_quay_token_ctx_t *t)
{
    ngx_http_request_t        *r;
    ngx_http_quay_db_query_t  *q;

    r = t->r;

    q = ngx_http_quay_request_query(r, QUAY_SQL_AUTH_USER_BY_NAME);
    if (q == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_db_param(q, 0, t->username.data, t->username.len);
    q->udata = t;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_token_user_done)
        != NGX_AGAIN)
    {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
    }
}


/* scope=... may repeat, so r->args is walked by hand */

static ngx_int_t
ngx_http_quay_token_parse_args(ngx_http_quay_token_ctx_t *t)
{
    u_char     *p, *last, *amp, *eq, *dst;
    ngx_str_t   key, value;

    p = t->r->args.data;
    last = p + t->r->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        key.data = p;
        key.len = (eq ? eq : amp) - p;

        if (key.len == sizeof("scope") - 1
            && ngx_strncmp(key.data, "scope", key.len) == 0
            && eq != NULL)
        {
            value.len = amp - (eq + 1);
            value.data = ngx_pnalloc(t->r->pool, value.len);
            if (value.data == NULL) {
                return NGX_ERROR;
            }

            dst = value.data;
            p = eq + 1;
            ngx_unescape_uri(&dst, &p, value.len, NGX_UNESCAPE_URI);
            value.len = dst - value.data;

            /* a scope value may hold several space-separated scopes */

            while (value.len) {
                ngx_str_t  one;

                one.data = value.data;
                eq = ngx_strlchr(value.data, value.data + value.len, ' ');
                one.len = (eq ? eq : value.data + value.len) - value.data;

                if (one.len
                    && ngx_http_quay_token_parse_scope(t, &one) != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (eq == NULL) {
                    break;
                }

                value.len -= one.len + 1;
                value.data = eq + 1;
            }
        }

        p = amp + 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_token_parse_scope(ngx_http_quay_token_ctx_t *t,
    ngx_str_t *value)
{
    u_char                       *colon1, *colon2, *p, *end;
    size_t                        ns_len;
    ngx_http_quay_token_scope_t  *s;

    colon1 = ngx_strlchr(value->data, value->data + value->len, ':');
    if (colon1 == NULL) {
        return NGX_ERROR;
    }

    colon2 = value->data + value->len;
    while (colon2 > colon1 && colon2[-1] != ':') {
        colon2--;
    }

    if (colon2 - 1 == colon1) {
        return NGX_ERROR;
    }

    if (t->scopes.nelts >= NGX_HTTP_QUAY_TOKEN_MAX_SCOPES) {
        return NGX_ERROR;
    }

    s = ngx_array_push(&t->scopes);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(s, sizeof(ngx_http_quay_token_scope_t));

    s->type.data = value->data;
    s->type.len = colon1 - value->data;
    s->name.data = colon1 + 1;
    s->name.len = (colon2 - 1) - (colon1 + 1);

    /* actions */

    p = colon2;
    end = value->data + value->len;

    while (p < end) {
        u_char  *comma;
        size_t   len;

        comma = ngx_strlchr(p, end, ',');
        len = (comma ? comma : end) - p;

        if (len == 4 && ngx_strncmp(p, "pull", 4) == 0) {
            s->asked |= NGX_HTTP_QUAY_ACTION_PULL;

        } else if (len == 4 && ngx_strncmp(p, "push", 4) == 0) {
            s->asked |= NGX_HTTP_QUAY_ACTION_PUSH;

        } else if (len == 6 && ngx_strncmp(p, "delete", 6) == 0) {
            s->asked |= NGX_HTTP_QUAY_ACTION_DELETE;

        } else if (len == 1 && *p == '*') {
            s->asked |= NGX_HTTP_QUAY_ACTION_PULL | NGX_HTTP_QUAY_ACTION_PUSH
                        | NGX_HTTP_QUAY_ACTION_DELETE;
        }

        /* unknown actions are not granted, and not an error */

        p = comma ? comma + 1 : end;
    }

    if (s->type.len == sizeof("repository") - 1
        && ngx_strncmp(s->type.data, "repository", s->type.len) == 0)
    {
        if (quay_repo_name_valid(s->name.data, s->name.len, NULL)
            != QUAY_OK)
        {
            return NGX_ERROR;
        }

        if (quay_repo_name_split(s->name.data, s->name.len, &ns_len)
            == QUAY_OK)
        {
            s->ns.data = s->name.data;
            s->ns.len = ns_len;
            s->repo.data = s->name.data + ns_len + 1;
            s->repo.len = s->name.len - ns_len - 1;

        } else if (t->qmcf->config->feature_library_support
                   && t->qmcf->config->library_namespace != NULL)
        {
            /* "ubuntu" is "library/ubuntu" (FEATURE_LIBRARY_SUPPORT) */
            s->ns.data = (u_char *) t->qmcf->config->library_namespace;
            s->ns.len = ngx_strlen(s->ns.data);
            s->repo = s->name;

        } else {
            s->asked = 0;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quay_token_parse_basic(ngx_http_quay_token_ctx_t *t)
{
    u_char           *colon, *decoded;
    size_t            len;
    ngx_table_elt_t  *h;

    h = t->r->headers_in.authorization;

    if (h == NULL) {
        return NGX_OK;
    }

    if (h->value.len <= sizeof("Basic ") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "Basic ",
                           sizeof("Basic ") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    len = 0;

    if (quay_base64_decode((char *) h->value.data + sizeof("Basic ") - 1,
                           h->value.len - (sizeof("Basic ") - 1), NULL, &len)
        != QUAY_OK)
    {
        return NGX_DECLINED;
    }

    decoded = ngx_pnalloc(t->r->pool, len + 1);
    if (decoded == NULL) {
        return NGX_ERROR;
    }

    if (quay_base64_decode((char *) h->value.data + sizeof("Basic ") - 1,
                           h->value.len - (sizeof("Basic ") - 1), decoded,
                           &len)
        != QUAY_OK)
    {
        return NGX_DECLINED;
    }

    decoded[len] = '\0';

    colon = ngx_strlchr(decoded, decoded + len, ':');
    if (colon == NULL || colon == decoded) {
        return NGX_DECLINED;
    }

    t->username.data = decoded;
    t->username.len = colon - decoded;
    *colon = '\0';

    t->password.data = colon + 1;
    t->password.len = decoded + len - (colon + 1);

    if (t->username.len > 255 || t->password.len == 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_quay_token_user_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                   hash, enabled, robot, org;
    ngx_thread_task_t          *task;
    ngx_http_quay_token_ctx_t  *t;

    t = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    hash = ngx_http_quay_db_value(q, 0, 1);
    enabled = ngx_http_quay_db_value(q, 0, 2);
    robot = ngx_http_quay_db_value(q, 0, 3);
    org = ngx_http_quay_db_value(q, 0, 4);

    /*
     * Unknown users, organizations and disabled users still go through a
     * password check against a fixed hash, so the answer takes as long as
     * for a real user with a wrong password (no username oracle).
     */

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_quay_db_ntuples(q) == 1 && hash.len
        && enabled.len && enabled.data[0] == 't'
        && !(robot.len && robot.data[0] == 't')
        && !(org.len && org.data[0] == 't'))
    {
        t->password_hash = ngx_pnalloc(r->pool, hash.len + 1);
        if (t->password_hash == NULL) {
            ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(t->password_hash, hash.data, hash.len);
        t->password_hash[hash.len] = '\0';

        t->user_id.data = ngx_pstrdup(r->pool, &(ngx_str_t) {
                              ngx_http_quay_db_value(q, 0, 0).len,
                              ngx_http_quay_db_value(q, 0, 0).data });
        t->user_id.len = ngx_http_quay_db_value(q, 0, 0).len;

    } else {
        t->password_hash = NULL;
    }

    if (t->user_id.len && t->user_id.data == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    task->ctx = t;
    task->handler = ngx_http_quay_token_password_thread;
    task->event.handler = ngx_http_quay_token_password_done;
    task->event.data = t;

    if (ngx_http_quay_token_post(t, task) != NGX_OK) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


static ngx_int_t
ngx_http_quay_token_post(ngx_http_quay_token_ctx_t *t,
    ngx_thread_task_t *task)
{
    if (t->qmcf->thread_pool == NULL
        || ngx_thread_task_post(t->qmcf->thread_pool, task) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the request must outlive the task: task->ctx points into it */

    t->r->main->blocked++;

    return NGX_OK;
}


/* In a thread: CPU only, on task data. */

static void
ngx_http_quay_token_password_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_token_ctx_t  *t = data;

    /* a valid hash of a random password: same cost, never matches */
    static const char  decoy[] = "$pbkdf2-sha256$100000$"
        "oHhUgwa3sFB2GQ4fgdQLWQ$"
        "ydhVQfjkDUeR8sTYAZXdZyeb6lePsdGXqlyJp7yn3Ao";

    if (t->password_hash == NULL) {
        (void) quay_password_verify((char *) t->password.data,
                                    t->password.len, decoy, NULL);
        t->password_rc = QUAY_ERROR;
        return;
    }

    t->password_rc = quay_password_verify((char *) t->password.data,
                                          t->password.len, t->password_hash,
                                          NULL);
}


static void
ngx_http_quay_token_password_done(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_quay_token_ctx_t  *t;

    t = ev->data;
    c = t->r->connection;

    t->r->main->blocked--;

    if (t->password_rc != QUAY_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "quay: failed login for user \"%V\"", &t->username);

        if (t->user_id.len) {
            ngx_http_quay_audit(t->r, "login_failure", &t->user_id, NULL,
                                NULL, NULL);
        }

        if (ngx_http_quay_throttle_failed(t->r, &t->username,
                                          ngx_http_quay_token_login_failed,
                                          t)
            != NGX_AGAIN)
        {
            ngx_http_quay_token_login_failed(t, 0);
        }

        return;
    }

    ngx_http_quay_throttle_succeeded(t->r, &t->username);
    ngx_http_quay_audit(t->r, "login_success", &t->user_id, &t->user_id,
                        NULL, NULL);

    t->superuser = ngx_http_quay_token_is_superuser(t->qmcf->config,
                                                    &t->username);

    ngx_http_quay_token_next_scope(t);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_token_next_scope(ngx_http_quay_token_ctx_t *t)
{
    ngx_http_quay_db_query_t     *q;
    ngx_http_quay_token_scope_t  *s;

    while (t->next < t->scopes.nelts) {

        s = (ngx_http_quay_token_scope_t *) t->scopes.elts + t->next;

        if (s->ns.len == 0) {
            /* registry:catalog:* is filtered per caller by the catalog */
            if (s->type.len == sizeof("registry") - 1
                && ngx_strncmp(s->type.data, "registry", s->type.len) == 0)
            {
                s->granted = s->asked;
            }

            t->next++;
            continue;
        }

        q = ngx_http_quay_request_query(t->r, QUAY_SQL_AUTH_REPO_ACCESS);
        if (q == NULL) {
            ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_quay_db_param(q, 0, s->ns.data, s->ns.len);
        ngx_http_quay_db_param(q, 1, s->repo.data, s->repo.len);

        if (t->user_id.len) {
            ngx_http_quay_db_param(q, 2, t->user_id.data, t->user_id.len);
        }

        q->udata = t;

        if (ngx_http_quay_request_query_run(t->r, q,
                                            ngx_http_quay_token_access_done)
            != NGX_AGAIN)
        {
            ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(t->r,
                                              NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        }

        return;
    }

    ngx_http_quay_token_sign(t);
}


#define ngx_http_quay_token_bool(q, col)                                    \
    (ngx_http_quay_db_value(q, 0, col).len                                  \
     && ngx_http_quay_db_value(q, 0, col).data[0] == 't')


static void
ngx_http_quay_token_access_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                     repo_id, state, role;
    ngx_int_t                     level;
    ngx_uint_t                    exists, public, owner, org_admin, creator;
    ngx_uint_t                    normal, allowed;
    quay_config_t                *cfg;
    ngx_http_quay_token_ctx_t    *t;
    ngx_http_quay_token_scope_t  *s;

    t = q->udata;
    cfg = t->qmcf->config;
    s = (ngx_http_quay_token_scope_t *) t->scopes.elts + t->next;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    t->next++;

    if (ngx_http_quay_db_ntuples(q) != 1
        || !ngx_http_quay_token_bool(q, 1))
    {
        /* no such namespace, or it is disabled: nothing is granted */
        ngx_http_quay_token_next_scope(t);
        return;
    }

    repo_id = ngx_http_quay_db_value(q, 0, 3);
    state = ngx_http_quay_db_value(q, 0, 5);
    role = ngx_http_quay_db_value(q, 0, 6);

    exists = (repo_id.len != 0);
    public = ngx_http_quay_token_bool(q, 4);
    owner = ngx_http_quay_token_bool(q, 7);
    org_admin = ngx_http_quay_token_bool(q, 8);
    creator = ngx_http_quay_token_bool(q, 9);
    level = role.len ? ngx_atoi(role.data, role.len) : 0;
    normal = (state.len == 1 && state.data[0] == '0');

    if (owner || org_admin
        || (t->superuser && cfg->feature_superusers_full_access))
    {
        level = 3;
    }

    allowed = 0;

    if (exists && (public || level >= 1)) {
        allowed |= NGX_HTTP_QUAY_ACTION_PULL;
    }

    /* mirrored and read-only repositories take no pushes (mirror robots
     * come with issue #4) */

    if (exists && level >= 2 && normal && !cfg->disable_pushes
        && ngx_strcmp(cfg->registry_state, "readonly") != 0)
    {
        allowed |= NGX_HTTP_QUAY_ACTION_PUSH;
    }

    if (exists && level >= 3) {
        allowed |= NGX_HTTP_QUAY_ACTION_DELETE;
    }

    s->granted = s->asked & allowed;

    if (!exists && t->user_id.len
        && (s->asked & NGX_HTTP_QUAY_ACTION_PUSH)
        && (owner || creator || org_admin)
        && !cfg->disable_pushes
        && ngx_strcmp(cfg->registry_state, "readonly") != 0)
    {
        /* create on push, then grant as an owner */

        s->namespace_id = ngx_http_quay_db_value(q, 0, 0);
        s->namespace_id.data = ngx_pstrdup(r->pool, &s->namespace_id);
        if (s->namespace_id.data == NULL) {
            ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        q = ngx_http_quay_request_query(r, QUAY_SQL_AUTH_REPO_CREATE);
        if (q == NULL) {
            ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_quay_db_param(q, 0, s->namespace_id.data,
                               s->namespace_id.len);
        ngx_http_quay_db_param(q, 1, s->repo.data, s->repo.len);

        if (cfg->create_private_repo_on_push) {
            ngx_http_quay_db_param(q, 2, (u_char *) "private", 7);
        } else {
            ngx_http_quay_db_param(q, 2, (u_char *) "public", 6);
        }

        q->udata = t;

        if (ngx_http_quay_request_query_run(r, q,
                                            ngx_http_quay_token_create_done)
            != NGX_AGAIN)
        {
            ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                              NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        }

        return;
    }

    ngx_http_quay_token_next_scope(t);
}


static void
ngx_http_quay_token_create_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_token_ctx_t    *t;
    ngx_http_quay_token_scope_t  *s;

    t = q->udata;
    s = (ngx_http_quay_token_scope_t *) t->scopes.elts + t->next - 1;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    /* created now or by a concurrent push: either way, it is ours */

    s->granted = s->asked & (NGX_HTTP_QUAY_ACTION_PULL
                             | NGX_HTTP_QUAY_ACTION_PUSH
                             | NGX_HTTP_QUAY_ACTION_DELETE);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "quay: repository \"%V\" created on push by \"%V\"",
                  &s->name, &t->username);

    ngx_http_quay_token_next_scope(t);
}


static void
ngx_http_quay_token_sign(ngx_http_quay_token_ctx_t *t)
{
    char                         *text;
    time_t                        now;
    json_t                       *claims, *access, *entry, *actions, *ctx;
    u_char                        jti[16], jti_b64[32];
    ngx_uint_t                    i;
    ngx_thread_task_t            *task;
    ngx_http_quay_token_scope_t  *s;

    now = ngx_time();

    if (RAND_bytes(jti, sizeof(jti)) != 1) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    jti_b64[quay_base64url_encode(jti, sizeof(jti), (char *) jti_b64)] = 0;

    access = json_array();
    claims = json_object();
    ctx = json_object();

    if (access == NULL || claims == NULL || ctx == NULL) {
        goto failed;
    }

    s = t->scopes.elts;

    for (i = 0; i < t->scopes.nelts; i++) {
        if (s[i].granted == 0 && s[i].asked != 0) {
            /* Quay lists the scope with no actions; clients accept it */
        }

        actions = json_array();
        entry = json_object();

        if (actions == NULL || entry == NULL) {
            json_decref(actions);
            json_decref(entry);
            goto failed;
        }

        if (s[i].granted & NGX_HTTP_QUAY_ACTION_PULL) {
            json_array_append_new(actions, json_string("pull"));
        }

        if (s[i].granted & NGX_HTTP_QUAY_ACTION_PUSH) {
            json_array_append_new(actions, json_string("push"));
        }

        if (s[i].granted & NGX_HTTP_QUAY_ACTION_DELETE) {
            json_array_append_new(actions, json_string("delete"));
        }

        if (s[i].type.len == sizeof("registry") - 1
            && ngx_strncmp(s[i].type.data, "registry", s[i].type.len) == 0
            && s[i].granted)
        {
            json_array_clear(actions);
            json_array_append_new(actions, json_string("*"));
        }

        json_object_set_new(entry, "type",
                            json_stringn((char *) s[i].type.data,
                                         s[i].type.len));
        json_object_set_new(entry, "name",
                            json_stringn((char *) s[i].name.data,
                                         s[i].name.len));
        json_object_set_new(entry, "actions", actions);
        json_array_append_new(access, entry);
    }

    json_object_set_new(ctx, "version", json_integer(2));
    json_object_set_new(ctx, "kind", json_string(t->username.len
                                                 ? "user" : "anonymous"));
    if (t->username.len) {
        json_object_set_new(ctx, "user",
                            json_stringn((char *) t->username.data,
                                         t->username.len));
        json_object_set_new(ctx, "user_id",
                            json_stringn((char *) t->user_id.data,
                                         t->user_id.len));
    }

    json_object_set_new(claims, "iss",
                        json_string(NGX_HTTP_QUAY_TOKEN_ISSUER));
    json_object_set_new(claims, "aud",
                        json_string(t->qmcf->config->server_hostname));
    json_object_set_new(claims, "sub",
                        t->username.len
                        ? json_stringn((char *) t->username.data,
                                       t->username.len)
                        : json_string("(anonymous)"));
    json_object_set_new(claims, "iat", json_integer(now));
    json_object_set_new(claims, "nbf", json_integer(now));
    json_object_set_new(claims, "exp",
                        json_integer(now + NGX_HTTP_QUAY_TOKEN_LIFETIME));
    json_object_set_new(claims, "jti", json_string((char *) jti_b64));
    json_object_set_new(claims, "access", access);
    json_object_set_new(claims, "context", ctx);
    access = NULL;
    ctx = NULL;

    text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    claims = NULL;

    if (text == NULL) {
        goto failed;
    }

    t->claims = ngx_pnalloc(t->r->pool, ngx_strlen(text) + 1);
    if (t->claims == NULL) {
        free(text);
        goto failed;
    }

    ngx_memcpy(t->claims, text, ngx_strlen(text) + 1);
    free(text);

    t->expires = NGX_HTTP_QUAY_TOKEN_LIFETIME;

    task = ngx_thread_task_alloc(t->r->pool, 0);
    if (task == NULL) {
        goto failed;
    }

    task->ctx = t;
    task->handler = ngx_http_quay_token_sign_thread;
    task->event.handler = ngx_http_quay_token_sign_done;
    task->event.data = t;

    if (ngx_http_quay_token_post(t, task) != NGX_OK) {
        goto failed;
    }

    return;

failed:

    json_decref(access);
    json_decref(claims);
    json_decref(ctx);
    ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


static void
ngx_http_quay_token_sign_thread(void *data, ngx_log_t *log)
{
    ngx_http_quay_token_ctx_t  *t = data;

    t->jwt = quay_jwt_sign_rs256(t->qmcf->jwt_key, t->claims,
                                 ngx_strlen(t->claims), NULL);
}


static void
ngx_http_quay_token_sign_done(ngx_event_t *ev)
{
    u_char                     *body, *p;
    size_t                      len;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_quay_token_ctx_t  *t;

    t = ev->data;
    r = t->r;
    c = r->connection;

    r->main->blocked--;

    if (t->jwt == NULL) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0, "quay: token signing failed");
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    len = 2 * ngx_strlen(t->jwt)
          + sizeof("{\"token\":\"\",\"access_token\":\"\","
                   "\"expires_in\":,\"issued_at\":\"\"}")
          + NGX_INT_T_LEN + sizeof("1970-01-01T00:00:00Z");

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        free(t->jwt);
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    {
        ngx_tm_t  tm;

        ngx_gmtime(ngx_time(), &tm);

        p = ngx_sprintf(body, "{\"token\":\"%s\",\"access_token\":\"%s\","
                        "\"expires_in\":%i,\"issued_at\":"
                        "\"%4d-%02d-%02dT%02d:%02d:%02dZ\"}",
                        t->jwt, t->jwt, t->expires, tm.ngx_tm_year,
                        tm.ngx_tm_mon, tm.ngx_tm_mday, tm.ngx_tm_hour,
                        tm.ngx_tm_min, tm.ngx_tm_sec);
    }

    free(t->jwt);
    t->jwt = NULL;

    ngx_http_quay_token_finish(t, ngx_http_quay_send_json(r, NGX_HTTP_OK,
                                                          body, p - body));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_quay_token_finish(ngx_http_quay_token_ctx_t *t, ngx_int_t rc)
{
    ngx_http_finalize_request(t->r, rc);
}


static ngx_int_t
ngx_http_quay_token_fail(ngx_http_request_t *r, ngx_http_quay_err_e err)
{
    if (err == NGX_HTTP_QUAY_ERR_INVALID_LOGIN
        || err == NGX_HTTP_QUAY_ERR_UNAUTHORIZED)
    {
        if (ngx_http_quay_auth_challenge(r, NULL, 0) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_quay_send_error(r, err, NULL);
}


static ngx_uint_t
ngx_http_quay_token_is_superuser(quay_config_t *cfg, ngx_str_t *name)
{
    size_t  i;

    for (i = 0; i < cfg->super_users.n; i++) {
        if (ngx_strlen(cfg->super_users.items[i]) == name->len
            && ngx_strncmp(cfg->super_users.items[i], name->data, name->len)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}
