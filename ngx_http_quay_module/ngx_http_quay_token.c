/*
 * GET /v2/auth: the Docker token service (quay-behaviour §3.1, §3.2).
 *
 * States, each step asynchronous and each ending in the next:
 *
 *   parse      service, scope (repeatable) and Basic credentials
 *   throttle   Redis: has this login failed too often from here?
 *   lookup     the row behind the credentials, by kind (§3.3):
 *                user          the user row; the password is checked with
 *                              PBKDF2 in the thread pool (~35 ms of CPU)
 *                ns+short      a robot: its encrypted 64-character token
 *                $app          an app-specific token: the first 60
 *                              characters name the row, the other 60 are
 *                              its encrypted secret
 *                $oauthtoken   an OAuth access token: the first 20 name
 *                              the row, the SHA-256 of the other 20 is
 *                              stored (as for /api/v1 Bearer tokens)
 *              Robot, app and OAuth secrets are compared inline: one
 *              AES-GCM decryption or one SHA-256 of a few dozen bytes,
 *              then a constant-time comparison (security catalogue #35).
 *              Every failed login, of any kind, is audited (when its
 *              account is known) and counted by the throttle; a success
 *              clears the count, is audited and marks last_accessed.
 *   scope      for each repository scope: one query gives the namespace,
 *              the repository and every right the caller has on it; a
 *              push to a repository that does not exist in a namespace
 *              the caller may create in creates it
 *              (CREATE_PRIVATE_REPO_ON_PUSH)
 *   sign       RS256 in the thread pool
 *
 * The token's access claim is the intersection of what was asked and what
 * is allowed: asking for more is never an error, it just yields less.
 * Only bad credentials are (401).  Anonymous requests get pull on public
 * repositories when FEATURE_ANONYMOUS_ACCESS is on.
 *
 * Rights.  A robot has only what its repository permissions and teams
 * give it (never the implicit rights of its owner).  An OAuth token's
 * rights are capped by its scopes: repo:read pull, repo:write push,
 * repo:admin delete; creating on push needs repo:create.  A repository
 * in state MIRROR takes pushes only from its mirror robot
 * (repomirrorconfig.internal_robot_id), one in READ_ONLY none, and
 * "delete" is granted only in state NORMAL (§2.8).  Rights are looked up
 * at every /v2/auth, so a deleted robot, a regenerated or revoked token
 * or a removed permission takes effect at the next one (catalogue #36).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "quay_base64.h"
#include "quay_password.h"
#include "quay_reference.h"
#include "ngx_http_quay_auth.h"
#include "ngx_http_quay_throttle.h"
#include "ngx_http_quay_audit.h"
#include "ngx_http_quay_v2.h"


#define NGX_HTTP_QUAY_TOKEN_MAX_SCOPES  16

/* credential lengths (quay-behaviour §3.3) */
#define NGX_HTTP_QUAY_TOKEN_APP_NAME    60
#define NGX_HTTP_QUAY_TOKEN_APP_LEN     120
#define NGX_HTTP_QUAY_TOKEN_OAUTH_NAME  20
#define NGX_HTTP_QUAY_TOKEN_OAUTH_LEN   40

#define NGX_HTTP_QUAY_TOKEN_ROBOT_AD    "robotaccounttoken.token"
#define NGX_HTTP_QUAY_TOKEN_APP_AD      "appspecificauthtoken.token_secret"


/* A boolean column of the first row: 't' */
#define ngx_http_quay_token_bool(q, col)                                    \
    (ngx_http_quay_db_value(q, 0, col).len                                  \
     && ngx_http_quay_db_value(q, 0, col).data[0] == 't')


/* What the Basic username says the password is. */
typedef enum {
    NGX_HTTP_QUAY_TOKEN_USER = 0,        /* a password */
    NGX_HTTP_QUAY_TOKEN_ROBOT,           /* "ns+short": a robot token */
    NGX_HTTP_QUAY_TOKEN_APP,             /* "$app" */
    NGX_HTTP_QUAY_TOKEN_OAUTH            /* "$oauthtoken" */
} ngx_http_quay_token_kind_e;


typedef struct {
    ngx_str_t                   type;        /* repository | registry */
    ngx_str_t                   name;        /* ns/repo or catalog */
    ngx_str_t                   ns;
    ngx_str_t                   repo;
    ngx_uint_t                  asked;       /* NGX_HTTP_QUAY_ACTION_* */
    ngx_uint_t                  granted;
    ngx_str_t                   namespace_id;   /* for create on push */
    ngx_uint_t                  namespace_tried;  /* CREATE_NAMESPACE_
                                                     ON_PUSH ran */
} ngx_http_quay_token_scope_t;


typedef struct {
    ngx_http_request_t         *r;
    ngx_http_quay_main_conf_t  *qmcf;

    ngx_http_quay_token_kind_e  kind;
    ngx_str_t                   login;       /* the Basic username: the
                                                throttle's key */
    ngx_str_t                   password;

    /* the principal, once the credentials are checked; all in r->pool */
    ngx_str_t                   username;    /* the JWT's sub */
    ngx_str_t                   user_id;     /* user or robot id */
    ngx_str_t                   account_id;  /* audit account: the user,
                                                or the robot's namespace */
    ngx_str_t                   reference;   /* context entity_reference */
    ngx_str_t                   touch_id;    /* row to mark accessed */
    ngx_uint_t                  superuser;
    ngx_uint_t                  readonly_superuser;
    ngx_int_t                   max_level;   /* OAuth scope cap: 0..3 */
    ngx_uint_t                  may_create;  /* create on push allowed */

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
static void ngx_http_quay_token_check_password(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_robot_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_app_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_oauth_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_token_secret_matches(
    ngx_http_quay_token_ctx_t *t, ngx_str_t *stored, const char *ad,
    u_char *given, size_t len);
static void ngx_http_quay_token_credentials_failed(
    ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_logged_in(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_touch(ngx_http_quay_token_ctx_t *t,
    quay_sql_e stmt);
static void ngx_http_quay_token_touch_done(ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_token_keep(ngx_http_request_t *r,
    ngx_str_t *dst, ngx_str_t *src);
static ngx_uint_t ngx_http_quay_token_alnum(u_char *p, size_t len);
static ngx_uint_t ngx_http_quay_token_robot_name(ngx_str_t *name);
static ngx_uint_t ngx_http_quay_token_has_scope(ngx_str_t *scopes,
    const char *name);
static ngx_uint_t ngx_http_quay_token_actions(ngx_int_t level);
static void ngx_http_quay_token_password_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_token_password_done(ngx_event_t *ev);
static void ngx_http_quay_token_next_scope(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_access_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_create_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_token_namespace_create(
    ngx_http_quay_token_ctx_t *t, ngx_http_quay_token_scope_t *s);
static void ngx_http_quay_token_namespace_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static void ngx_http_quay_token_sign(ngx_http_quay_token_ctx_t *t);
static void ngx_http_quay_token_sign_thread(void *data, ngx_log_t *log);
static void ngx_http_quay_token_sign_done(ngx_event_t *ev);
static void ngx_http_quay_token_finish(ngx_http_quay_token_ctx_t *t,
    ngx_int_t rc);
static ngx_int_t ngx_http_quay_token_fail(ngx_http_request_t *r,
    ngx_http_quay_err_e err);
static void ngx_http_quay_token_set_superuser(ngx_http_quay_token_ctx_t *t,
    ngx_uint_t may_super);
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
    t->max_level = 3;
    t->may_create = 1;

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

    if (t->login.len == 0) {

        if (!t->qmcf->config->feature_anonymous_access) {
            ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                              NGX_HTTP_QUAY_ERR_UNAUTHORIZED));
            return NGX_DONE;
        }

        ngx_http_quay_token_next_scope(t);
        return NGX_DONE;
    }

    if (ngx_http_quay_throttle_check(r, &t->login,
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
                  &t->login, retry_after);

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


/*
 * The row behind the credentials, by kind.  Credentials that cannot match
 * any row (a token outside its alphabet or too short to name a row, a
 * malformed robot name, $app with the feature off) fail at once, through
 * the same throttle as any other failure; they are never sent to the
 * database, whose text parameters refuse bytes that are not UTF-8.
 */
static void
ngx_http_quay_token_lookup_user(ngx_http_quay_token_ctx_t *t)
{
    size_t                          key_len;
    u_char                         *key;
    quay_sql_e                      stmt;
    ngx_http_request_t             *r;
    ngx_http_quay_db_query_t       *q;
    ngx_http_quay_request_done_pt   done;

    r = t->r;
    key = t->login.data;
    key_len = t->login.len;

    switch (t->kind) {

    case NGX_HTTP_QUAY_TOKEN_ROBOT:
        if (!ngx_http_quay_token_robot_name(&t->login)) {
            ngx_http_quay_token_credentials_failed(t);
            return;
        }

        stmt = QUAY_SQL_AUTH_ROBOT_BY_NAME;
        done = ngx_http_quay_token_robot_done;
        break;

    case NGX_HTTP_QUAY_TOKEN_APP:
        if (!t->qmcf->config->feature_app_specific_tokens
            || t->password.len < NGX_HTTP_QUAY_TOKEN_APP_NAME
            || !ngx_http_quay_token_alnum(t->password.data,
                                          t->password.len))
        {
            ngx_http_quay_token_credentials_failed(t);
            return;
        }

        key = t->password.data;
        key_len = NGX_HTTP_QUAY_TOKEN_APP_NAME;
        stmt = QUAY_SQL_AUTH_APP_TOKEN;
        done = ngx_http_quay_token_app_done;
        break;

    case NGX_HTTP_QUAY_TOKEN_OAUTH:
        if (t->password.len < NGX_HTTP_QUAY_TOKEN_OAUTH_NAME
            || !ngx_http_quay_token_alnum(t->password.data,
                                          t->password.len))
        {
            ngx_http_quay_token_credentials_failed(t);
            return;
        }

        key = t->password.data;
        key_len = NGX_HTTP_QUAY_TOKEN_OAUTH_NAME;
        stmt = QUAY_SQL_AUTH_OAUTH_TOKEN;
        done = ngx_http_quay_token_oauth_done;
        break;

    default: /* NGX_HTTP_QUAY_TOKEN_USER */

        /* Quay's usernames are printable ASCII: anything else is an
         * unknown user, checked against the decoy hash */

        for (key_len = 0; key_len < t->login.len; key_len++) {
            if (key[key_len] < 0x21 || key[key_len] > 0x7e) {
                ngx_http_quay_token_check_password(t);
                return;
            }
        }

        stmt = QUAY_SQL_AUTH_USER_BY_NAME;
        done = ngx_http_quay_token_user_done;
        break;
    }

    q = ngx_http_quay_request_query(r, stmt);
    if (q == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_quay_db_param(q, 0, key, key_len);
    q->udata = t;

    if (ngx_http_quay_request_query_run(r, q, done) != NGX_AGAIN) {
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

    t->login.data = decoded;
    t->login.len = colon - decoded;
    *colon = '\0';

    t->password.data = colon + 1;
    t->password.len = decoded + len - (colon + 1);

    if (t->login.len > 255 || t->password.len == 0) {
        return NGX_DECLINED;
    }

    if (t->login.len == sizeof("$app") - 1
        && ngx_strncmp(t->login.data, "$app", t->login.len) == 0)
    {
        t->kind = NGX_HTTP_QUAY_TOKEN_APP;

    } else if (t->login.len == sizeof("$oauthtoken") - 1
               && ngx_strncmp(t->login.data, "$oauthtoken", t->login.len)
                  == 0)
    {
        t->kind = NGX_HTTP_QUAY_TOKEN_OAUTH;

    } else if (ngx_strlchr(t->login.data, t->login.data + t->login.len, '+')
               != NULL)
    {
        t->kind = NGX_HTTP_QUAY_TOKEN_ROBOT;

    } else {
        t->kind = NGX_HTTP_QUAY_TOKEN_USER;
    }

    return NGX_OK;
}


static void
ngx_http_quay_token_user_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                   hash, enabled, robot, org, id, uuid;
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

        id = ngx_http_quay_db_value(q, 0, 0);
        uuid = ngx_http_quay_db_value(q, 0, 5);

        if (ngx_http_quay_token_keep(r, &t->user_id, &id) != NGX_OK
            || ngx_http_quay_token_keep(r, &t->reference, &uuid) != NGX_OK)
        {
            ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        t->account_id = t->user_id;
    }

    ngx_http_quay_token_check_password(t);
}


/* The PBKDF2 check, in the thread pool; with no hash, against a decoy. */
static void
ngx_http_quay_token_check_password(ngx_http_quay_token_ctx_t *t)
{
    ngx_thread_task_t  *task;

    task = ngx_thread_task_alloc(t->r->pool, 0);
    if (task == NULL) {
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


/*
 * A robot: its id, encrypted token, whether it is enabled, its
 * namespace's id and whether that is enabled (QUAY_SQL_AUTH_ROBOT_BY_NAME).
 */
static void
ngx_http_quay_token_robot_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                   id, token, owner;
    ngx_int_t                   ok;
    ngx_http_quay_token_ctx_t  *t;

    t = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    id = ngx_http_quay_db_value(q, 0, 0);
    token = ngx_http_quay_db_value(q, 0, 1);
    owner = ngx_http_quay_db_value(q, 0, 3);

    /* failures are the namespace's audit rows */

    if (ngx_http_quay_token_keep(r, &t->account_id, &owner) != NGX_OK) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ok = ngx_http_quay_token_secret_matches(t, &token,
                                            NGX_HTTP_QUAY_TOKEN_ROBOT_AD,
                                            t->password.data,
                                            t->password.len);
    if (ok == NGX_ERROR) {
        return;
    }

    ok = ok && ngx_http_quay_token_bool(q, 2) && ngx_http_quay_token_bool(q, 4);

    if (!ok) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    if (ngx_http_quay_token_keep(r, &t->user_id, &id) != NGX_OK) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    t->username = t->login;
    t->reference = t->login;
    t->touch_id = t->user_id;

    ngx_http_quay_token_logged_in(t);
}


/*
 * An app-specific token: its encrypted secret, the user's id, name and
 * uuid, whether the user may log in, whether the token is unexpired, the
 * token's uuid and id (QUAY_SQL_AUTH_APP_TOKEN).
 */
static void
ngx_http_quay_token_app_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                   secret, id, name, uuid, row;
    ngx_int_t                   ok;
    ngx_http_quay_token_ctx_t  *t;

    t = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    secret = ngx_http_quay_db_value(q, 0, 0);
    id = ngx_http_quay_db_value(q, 0, 1);
    name = ngx_http_quay_db_value(q, 0, 2);
    uuid = ngx_http_quay_db_value(q, 0, 5);
    row = ngx_http_quay_db_value(q, 0, 6);

    if (ngx_http_quay_token_keep(r, &t->account_id, &id) != NGX_OK) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ok = ngx_http_quay_token_secret_matches(t, &secret,
             NGX_HTTP_QUAY_TOKEN_APP_AD,
             t->password.data + NGX_HTTP_QUAY_TOKEN_APP_NAME,
             t->password.len - NGX_HTTP_QUAY_TOKEN_APP_NAME);
    if (ok == NGX_ERROR) {
        return;
    }

    ok = ok && t->password.len == NGX_HTTP_QUAY_TOKEN_APP_LEN
         && ngx_http_quay_token_bool(q, 3) && ngx_http_quay_token_bool(q, 4);

    if (!ok) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    if (ngx_http_quay_token_keep(r, &t->username, &name) != NGX_OK
        || ngx_http_quay_token_keep(r, &t->reference, &uuid) != NGX_OK
        || ngx_http_quay_token_keep(r, &t->touch_id, &row) != NGX_OK)
    {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    t->user_id = t->account_id;
    ngx_http_quay_token_set_superuser(t, 1);

    ngx_http_quay_token_logged_in(t);
}


/*
 * An OAuth access token: the hex SHA-256 of its secret half, the user's
 * id and name, whether the user may log in, whether the token is
 * unexpired, its scopes and uuid (QUAY_SQL_AUTH_OAUTH_TOKEN).
 */
static void
ngx_http_quay_token_oauth_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    u_char                      digest[SHA256_DIGEST_LENGTH];
    u_char                      hex[2 * SHA256_DIGEST_LENGTH];
    ngx_str_t                   code, id, name, scopes, uuid;
    ngx_uint_t                  ok;
    ngx_http_quay_token_ctx_t  *t;

    t = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    if (ngx_http_quay_db_ntuples(q) != 1) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    code = ngx_http_quay_db_value(q, 0, 0);
    id = ngx_http_quay_db_value(q, 0, 1);
    name = ngx_http_quay_db_value(q, 0, 2);
    scopes = ngx_http_quay_db_value(q, 0, 5);
    uuid = ngx_http_quay_db_value(q, 0, 6);

    if (ngx_http_quay_token_keep(r, &t->account_id, &id) != NGX_OK) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) SHA256(t->password.data + NGX_HTTP_QUAY_TOKEN_OAUTH_NAME,
                  t->password.len - NGX_HTTP_QUAY_TOKEN_OAUTH_NAME, digest);
    ngx_hex_dump(hex, digest, SHA256_DIGEST_LENGTH);

    ok = quay_crypto_equal_len(hex, sizeof(hex), code.data, code.len)
         && t->password.len == NGX_HTTP_QUAY_TOKEN_OAUTH_LEN
         && ngx_http_quay_token_bool(q, 3) && ngx_http_quay_token_bool(q, 4);

    if (!ok) {
        ngx_http_quay_token_credentials_failed(t);
        return;
    }

    if (ngx_http_quay_token_keep(r, &t->username, &name) != NGX_OK
        || ngx_http_quay_token_keep(r, &t->reference, &uuid) != NGX_OK)
    {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    t->user_id = t->account_id;

    /* the token's rights are capped by its scopes (auth/scopes.py) */

    if (ngx_http_quay_token_has_scope(&scopes, "repo:admin")) {
        t->max_level = 3;

    } else if (ngx_http_quay_token_has_scope(&scopes, "repo:write")) {
        t->max_level = 2;

    } else if (ngx_http_quay_token_has_scope(&scopes, "repo:read")) {
        t->max_level = 1;

    } else {
        t->max_level = 0;
    }

    t->may_create = ngx_http_quay_token_has_scope(&scopes, "repo:create");
    ngx_http_quay_token_set_superuser(t,
        ngx_http_quay_token_has_scope(&scopes, "super:user"));

    ngx_http_quay_token_logged_in(t);
}


/*
 * Decrypts stored (AD ad) and compares it with given[0..len-1] in
 * constant time.  Returns 1 on a match, 0 otherwise, or NGX_ERROR after
 * finishing the request (no DATABASE_SECRET_KEY, no memory).
 */
static ngx_int_t
ngx_http_quay_token_secret_matches(ngx_http_quay_token_ctx_t *t,
    ngx_str_t *stored, const char *ad, u_char *given, size_t len)
{
    u_char     *plain;
    size_t      n;
    ngx_int_t   ok;

    if (!t->qmcf->db_key_set) {
        ngx_log_error(NGX_LOG_ERR, t->r->connection->log, 0,
                      "quay: DATABASE_SECRET_KEY is not set, cannot check "
                      "a robot or app-specific token");
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(t->r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return NGX_ERROR;
    }

    if (stored->len == 0) {
        /* a robot without a token row */
        return 0;
    }

    plain = ngx_pnalloc(t->r->pool, stored->len + 1);
    if (plain == NULL) {
        ngx_http_quay_token_finish(t, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_ERROR;
    }

    n = 0;

    if (quay_crypto_decrypt(t->qmcf->db_key, (char *) stored->data,
                            stored->len, ad, ngx_strlen(ad), plain,
                            stored->len + 1, &n, NULL)
        != QUAY_OK)
    {
        /* a value written under another key or for another column */
        ngx_log_error(NGX_LOG_WARN, t->r->connection->log, 0,
                      "quay: a stored %s does not decrypt with "
                      "DATABASE_SECRET_KEY", ad);
        return 0;
    }

    ok = quay_crypto_equal_len(plain, n, given, len);

    quay_crypto_wipe(plain, n);

    return ok;
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
        ngx_http_quay_token_credentials_failed(t);
        ngx_http_run_posted_requests(c);
        return;
    }

    t->username = t->login;
    ngx_http_quay_token_set_superuser(t, 1);

    ngx_http_quay_token_logged_in(t);
    ngx_http_run_posted_requests(c);
}


/*
 * Bad credentials of any kind: an audit row when the account is known,
 * then 401 once the throttle has counted the failure (or could not).
 */
static void
ngx_http_quay_token_credentials_failed(ngx_http_quay_token_ctx_t *t)
{
    u_char     *p;
    ngx_str_t   metadata, *meta;

    static const char  *kinds[] = { "user", "robot", "app_specific_token",
                                    "oauth" };

    ngx_log_error(NGX_LOG_INFO, t->r->connection->log, 0,
                  "quay: failed login for %s \"%V\"", kinds[t->kind],
                  t->kind == NGX_HTTP_QUAY_TOKEN_USER
                  || t->kind == NGX_HTTP_QUAY_TOKEN_ROBOT
                  ? &t->login : &t->account_id);

    if (t->account_id.len) {
        meta = NULL;

        if (t->kind != NGX_HTTP_QUAY_TOKEN_USER) {

            /* robot names were checked: [a-z0-9._+-] only */

            p = ngx_pnalloc(t->r->pool, t->login.len
                            + sizeof("{\"type\":\"v2auth\",\"kind\":\"\","
                                     "\"username\":\"\"}")
                            + sizeof("app_specific_token"));
            if (p != NULL) {
                metadata.data = p;
                metadata.len = ngx_sprintf(p, "{\"type\":\"v2auth\","
                                           "\"kind\":\"%s\","
                                           "\"username\":\"%V\"}",
                                           kinds[t->kind], &t->login)
                               - p;
                meta = &metadata;
            }
        }

        ngx_http_quay_audit(t->r, "login_failure", &t->account_id, NULL,
                            NULL, meta);
    }

    if (ngx_http_quay_throttle_failed(t->r, &t->login,
                                      ngx_http_quay_token_login_failed, t)
        != NGX_AGAIN)
    {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(t->r,
                                          NGX_HTTP_QUAY_ERR_INVALID_LOGIN));
    }
}


/* Good credentials: clear the throttle, audit, mark the use, then the
 * scopes. */
static void
ngx_http_quay_token_logged_in(ngx_http_quay_token_ctx_t *t)
{
    ngx_http_quay_throttle_succeeded(t->r, &t->login);

    ngx_http_quay_audit(t->r, "login_success", &t->account_id, &t->user_id,
                        NULL, NULL);

    if (t->touch_id.len) {
        ngx_http_quay_token_touch(t, t->kind == NGX_HTTP_QUAY_TOKEN_ROBOT
                                     ? QUAY_SQL_AUTH_ROBOT_TOUCH
                                     : QUAY_SQL_AUTH_APP_TOUCH);
    }

    ngx_http_quay_token_next_scope(t);
}


/*
 * Sets last_accessed of the robot or app token t->touch_id.  Like an
 * audit row, the update runs in its own pool: the answer does not wait
 * for it and a request that ends first does not cut it off.
 */
static void
ngx_http_quay_token_touch(ngx_http_quay_token_ctx_t *t, quay_sql_e stmt)
{
    ngx_pool_t                *pool;
    ngx_http_quay_db_query_t  *q;

    pool = ngx_create_pool(512, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_http_quay_db_query_create(pool, ngx_cycle->log, stmt);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_http_quay_db_param(q, 0, t->touch_id.data, t->touch_id.len);

    q->handler = ngx_http_quay_token_touch_done;
    q->data = pool;

    if (ngx_http_quay_db_query_run(t->qmcf, q) != NGX_AGAIN) {
        ngx_log_error(NGX_LOG_WARN, t->r->connection->log, 0,
                      "quay: last_accessed not updated: %s",
                      q->error ? q->error : "unknown error");
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_quay_token_touch_done(ngx_http_quay_db_query_t *q)
{
    if (q->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "quay: last_accessed not updated: %s", q->error);
    }

    ngx_destroy_pool(q->data);
}


/* Copies a value of a query result (freed with the query) to r->pool. */
static ngx_int_t
ngx_http_quay_token_keep(ngx_http_request_t *r, ngx_str_t *dst,
    ngx_str_t *src)
{
    dst->len = 0;

    if (src->len == 0) {
        dst->data = NULL;
        return NGX_OK;
    }

    dst->data = ngx_pstrdup(r->pool, src);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = src->len;

    return NGX_OK;
}


/* Tokens are [A-Za-z0-9] (Quay's generator: A-Z0-9). */
static ngx_uint_t
ngx_http_quay_token_alnum(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= '0' && p[i] <= '9')))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * "namespace+short": one '+' between two non-empty parts of [a-z0-9._-]
 * (namespace) and [a-z0-9_] (short, util/names.py).
 */
static ngx_uint_t
ngx_http_quay_token_robot_name(ngx_str_t *name)
{
    u_char      c;
    size_t      i, plus;
    ngx_uint_t  found;

    found = 0;
    plus = 0;

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (c == '+') {
            if (found) {
                return 0;
            }

            found = 1;
            plus = i;
            continue;
        }

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            continue;
        }

        if (!found && (c == '.' || c == '-')) {
            continue;
        }

        return 0;
    }

    return found && plus > 0 && plus + 1 < name->len;
}


/* Whether the space- or comma-separated scopes hold name. */
static ngx_uint_t
ngx_http_quay_token_has_scope(ngx_str_t *scopes, const char *name)
{
    u_char  *p, *last, *start;
    size_t   len;

    len = ngx_strlen(name);
    p = scopes->data;
    last = p + scopes->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == ',')) {
            p++;
        }

        for (start = p; p < last && *p != ' ' && *p != ','; p++) {
            /* void */
        }

        if ((size_t) (p - start) == len
            && ngx_strncmp(start, name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* The actions a repository role allows before the state rules. */
static ngx_uint_t
ngx_http_quay_token_actions(ngx_int_t level)
{
    ngx_uint_t  actions;

    actions = 0;

    if (level >= 1) {
        actions |= NGX_HTTP_QUAY_ACTION_PULL;
    }

    if (level >= 2) {
        actions |= NGX_HTTP_QUAY_ACTION_PUSH;
    }

    if (level >= 3) {
        actions |= NGX_HTTP_QUAY_ACTION_DELETE;
    }

    return actions;
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


static void
ngx_http_quay_token_access_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_str_t                     repo_id, state, role;
    ngx_int_t                     level;
    ngx_uint_t                    exists, public, owner, org_admin, creator;
    ngx_uint_t                    normal, mirror, allowed;
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

    if (ngx_http_quay_db_ntuples(q) == 0 && !s->namespace_tried
        && cfg->create_namespace_on_push
        && t->kind == NGX_HTTP_QUAY_TOKEN_USER && t->user_id.len
        && (s->asked & NGX_HTTP_QUAY_ACTION_PUSH)
        && !cfg->disable_pushes
        && ngx_strcmp(cfg->registry_state, "readonly") != 0)
    {
        /* CREATE_NAMESPACE_ON_PUSH: make it an organization of the
         * pusher, then look at this scope again */

        s->namespace_tried = 1;

        if (ngx_http_quay_token_namespace_create(t, s) != NGX_OK) {
            ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                              NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        }

        return;
    }

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

    /* state 2, MIRROR: only its mirror robot pushes (§2.8) */
    mirror = (state.len == 1 && state.data[0] == '2'
              && ngx_http_quay_token_bool(q, 10));

    if (owner || org_admin
        || (t->superuser && cfg->feature_superusers_full_access))
    {
        level = 3;
    }

    if (level > t->max_level) {
        level = t->max_level;
    }

    allowed = 0;

    /* GLOBAL_READONLY_SUPER_USERS pull everything, push nothing */

    if (exists && (public || level >= 1 || t->readonly_superuser)) {
        allowed |= NGX_HTTP_QUAY_ACTION_PULL;
    }

    /* READ_ONLY and MIRROR repositories take no pushes (but from the
     * mirror robot), and deletes only in NORMAL, as Quay's "*" */

    if (exists && level >= 2 && (normal || mirror) && !cfg->disable_pushes
        && ngx_strcmp(cfg->registry_state, "readonly") != 0)
    {
        allowed |= NGX_HTTP_QUAY_ACTION_PUSH;
    }

    if (exists && level >= 3 && normal) {
        allowed |= NGX_HTTP_QUAY_ACTION_DELETE;
    }

    s->granted = s->asked & allowed;

    if (!exists && t->user_id.len && t->may_create
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

        ngx_http_quay_db_param(q, 3, t->user_id.data, t->user_id.len);
        ngx_http_quay_db_param(q, 4, r->connection->addr_text.data,
                               r->connection->addr_text.len);

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


static ngx_int_t
ngx_http_quay_token_namespace_create(ngx_http_quay_token_ctx_t *t,
    ngx_http_quay_token_scope_t *s)
{
    u_char                    *p;
    ngx_http_request_t        *r;
    ngx_http_quay_db_query_t  *q;

    r = t->r;

    q = ngx_http_quay_request_query(r, QUAY_SQL_AUTH_NAMESPACE_CREATE);
    if (q == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_quay_db_param(q, 0, t->user_id.data, t->user_id.len);
    ngx_http_quay_db_param(q, 1, s->ns.data, s->ns.len);
    ngx_http_quay_db_param(q, 2, r->connection->addr_text.data,
                           r->connection->addr_text.len);
    ngx_http_quay_db_param(q, 3, p,
                           ngx_sprintf(p, "%L", (int64_t) t->qmcf->config
                                       ->default_tag_expiration_s) - p);

    q->udata = t;

    if (ngx_http_quay_request_query_run(r, q,
                                        ngx_http_quay_token_namespace_done)
        != NGX_AGAIN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quay_token_namespace_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q)
{
    ngx_http_quay_token_ctx_t  *t;

    t = q->udata;

    if (q->rc != NGX_OK) {
        ngx_http_quay_token_finish(t, ngx_http_quay_token_fail(r,
                                          NGX_HTTP_QUAY_ERR_UNAVAILABLE));
        return;
    }

    /* the same scope once more: created, or refused (a bad name), in
     * which case it finds no namespace again and grants nothing */

    t->next--;

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

    /* created now or by a concurrent push: either way, it is ours (as
     * far as an OAuth token's scopes allow) */

    s->granted = s->asked & ngx_http_quay_token_actions(t->max_level);

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

    static const char  *entity_kinds[] = { "user", "robot",
                                           "appspecifictoken",
                                           "oauthtoken" };

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

    /* Quay's context (auth/context_entity.py): entity_kind and
     * entity_reference, then the legacy kind/user (kind "oauth" with the
     * token's uuid for OAuth) */

    json_object_set_new(ctx, "version", json_integer(2));

    if (t->username.len == 0) {
        json_object_set_new(ctx, "entity_kind", json_string("anonymous"));
        json_object_set_new(ctx, "kind", json_string("anonymous"));

    } else {
        json_object_set_new(ctx, "entity_kind",
                            json_string(entity_kinds[t->kind]));
        json_object_set_new(ctx, "entity_reference",
                            json_stringn((char *) t->reference.data,
                                         t->reference.len));

        if (t->kind == NGX_HTTP_QUAY_TOKEN_OAUTH) {
            json_object_set_new(ctx, "kind", json_string("oauth"));
            json_object_set_new(ctx, "oauth",
                                json_stringn((char *) t->reference.data,
                                             t->reference.len));

        } else {
            json_object_set_new(ctx, "kind", json_string("user"));
        }
    }

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


/*
 * Sets t->superuser and t->readonly_superuser from SUPER_USERS and
 * GLOBAL_READONLY_SUPER_USERS; a name in both lists is read-only, as in
 * Quay.  may_super is false when the credential may not act as a
 * superuser (an OAuth token without super:user).
 */
static void
ngx_http_quay_token_set_superuser(ngx_http_quay_token_ctx_t *t,
    ngx_uint_t may_super)
{
    quay_config_t  *cfg = t->qmcf->config;

    t->readonly_superuser = quay_strlist_contains(
                                &cfg->global_readonly_super_users,
                                (char *) t->username.data, t->username.len);
    t->superuser = may_super && !t->readonly_superuser
                   && quay_strlist_contains(&cfg->super_users,
                                            (char *) t->username.data,
                                            t->username.len);
}
