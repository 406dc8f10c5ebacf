/*
 * Listings: GET /v2/<name>/tags/list and GET /v2/_catalog (distribution
 * spec "Listing Tags", "Listing Repositories"; quay-behaviour 2.6).
 *
 * Both page the same way, in byte order (COLLATE "C"), which is the
 * lexical order the spec asks for and what "last" compares with:
 *
 *   n      page size; absent: the cap; 0: an empty list and no Link;
 *          larger than the cap: the cap (Quay clamps, as distribution's
 *          TestTagsAPIMaxTagsClamp); anything but digits: 400;
 *   last   the entries strictly after it, whether it exists or not;
 *   Link   </v2/...?n=N&last=L>; rel="next" (RFC 8288) when one more row
 *          than n came back: the query asks for n + 1 rows.
 *
 * The cap is Quay's max(V2_PAGINATION_SIZE, 100).  The catalog uses
 * "last" (distribution's cursor) rather than Quay's encrypted next_page
 * token: names in lexical order are a stable cursor, and every client
 * follows the Link header as it is.  The catalog lists what the caller
 * may read (QUAY_SQL_CATALOG); public repositories of others only with
 * FEATURE_PUBLIC_CATALOG, and an anonymous caller without it gets an
 * empty list, as in Quay.
 *
 * Names come back from the database and are JSON-escaped and, in the
 * Link header, URI-escaped, so nothing stored can break the answer.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_v2.h"


#define NGX_HTTP_QUAY_LIST_MIN_CAP  100
#define NGX_HTTP_QUAY_LIST_LAST_MAX 255


typedef struct {
    ngx_uint_t                  n;
    ngx_str_t                   last;       /* unescaped; len 0: none */
    ngx_uint_t                  catalog;
    ngx_int_t                   rc;         /* of sending a 400 */
    ngx_http_quay_v2_ctx_t     *ctx;
} ngx_http_quay_list_t;


static ngx_int_t ngx_http_quay_list_args(ngx_http_request_t *r,
    ngx_http_quay_v2_ctx_t *ctx, ngx_http_quay_list_t *list);
static ngx_int_t ngx_http_quay_list_run(ngx_http_request_t *r,
    ngx_http_quay_list_t *list, ngx_http_quay_db_query_t *q);
static void ngx_http_quay_list_done(ngx_http_request_t *r,
    ngx_http_quay_db_query_t *q);
static ngx_int_t ngx_http_quay_list_send(ngx_http_request_t *r,
    ngx_http_quay_list_t *list, ngx_http_quay_db_query_t *q);


ngx_int_t
ngx_http_quay_v2_tags_list(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_http_quay_list_t      *list;
    ngx_http_quay_db_query_t  *q;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    list = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_list_t));
    if (list == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list->ctx = ctx;

    rc = ngx_http_quay_list_args(r, ctx, list);

    if (rc == NGX_DECLINED) {
        return list->rc;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (list->n == 0) {
        return ngx_http_quay_list_send(r, list, NULL);
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_TAGS_LIST);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 0, ctx->repository_id.data,
                           ctx->repository_id.len);

    if (list->last.len) {
        ngx_http_quay_db_param(q, 1, list->last.data, list->last.len);
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 2, p, ngx_sprintf(p, "%ui", list->n + 1) - p);

    return ngx_http_quay_list_run(r, list, q);
}


ngx_int_t
ngx_http_quay_v2_catalog(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_uint_t                 public;
    ngx_http_quay_list_t      *list;
    ngx_http_quay_db_query_t  *q;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    list = ngx_pcalloc(r->pool, sizeof(ngx_http_quay_list_t));
    if (list == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list->ctx = ctx;
    list->catalog = 1;

    rc = ngx_http_quay_list_args(r, ctx, list);

    if (rc == NGX_DECLINED) {
        return list->rc;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    public = ctx->qmcf->config->feature_public_catalog;

    if (list->n == 0 || (ctx->user_id.len == 0 && !public)) {
        return ngx_http_quay_list_send(r, list, NULL);
    }

    q = ngx_http_quay_request_query(r, QUAY_SQL_CATALOG);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->user_id.len) {
        ngx_http_quay_db_param(q, 0, ctx->user_id.data, ctx->user_id.len);
    }

    if (public) {
        ngx_http_quay_db_param(q, 1, (u_char *) "t", 1);
    } else {
        ngx_http_quay_db_param(q, 1, (u_char *) "f", 1);
    }

    if (list->last.len) {
        ngx_http_quay_db_param(q, 2, list->last.data, list->last.len);
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quay_db_param(q, 3, p, ngx_sprintf(p, "%ui", list->n + 1) - p);

    return ngx_http_quay_list_run(r, list, q);
}


/*
 * n and last from the query string.  Returns NGX_OK; NGX_DECLINED when
 * they are malformed, after sending the 400 (its result in list->rc);
 * NGX_ERROR.
 */
static ngx_int_t
ngx_http_quay_list_args(ngx_http_request_t *r, ngx_http_quay_v2_ctx_t *ctx,
    ngx_http_quay_list_t *list)
{
    u_char      *dst, *src;
    size_t       i;
    ngx_str_t    arg, detail;
    ngx_uint_t   cap;

    cap = NGX_HTTP_QUAY_LIST_MIN_CAP;

    if (ctx->qmcf->config->v2_pagination_size > (int64_t) cap) {
        cap = (ngx_uint_t) ctx->qmcf->config->v2_pagination_size;
    }

    list->n = cap;

    if (ngx_http_arg(r, (u_char *) "n", 1, &arg) == NGX_OK) {

        if (arg.len == 0) {
            goto bad_n;
        }

        list->n = 0;

        for (i = 0; i < arg.len; i++) {
            if (arg.data[i] < '0' || arg.data[i] > '9') {
                goto bad_n;
            }

            /* saturate: 99999999999999999999 is simply "many" */

            if (list->n <= cap) {
                list->n = list->n * 10 + (arg.data[i] - '0');
            }
        }

        if (list->n > cap) {
            list->n = cap;
        }
    }

    if (ngx_http_arg(r, (u_char *) "last", 4, &arg) == NGX_OK && arg.len) {

        list->last.data = ngx_pnalloc(r->pool, arg.len);
        if (list->last.data == NULL) {
            return NGX_ERROR;
        }

        dst = list->last.data;
        src = arg.data;
        ngx_unescape_uri(&dst, &src, arg.len, 0);
        list->last.len = dst - list->last.data;

        /* tags and repository names are printable ASCII; anything else
         * (a NUL, invalid UTF-8) must not reach a text parameter */

        if (list->last.len > NGX_HTTP_QUAY_LIST_LAST_MAX) {
            goto bad_last;
        }

        for (i = 0; i < list->last.len; i++) {
            if (list->last.data[i] < 0x21 || list->last.data[i] > 0x7e) {
                goto bad_last;
            }
        }
    }

    return NGX_OK;

bad_n:

    ngx_str_set(&detail, "n must be a non-negative integer");
    list->rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INVALID_REQUEST,
                                        &detail);
    return NGX_DECLINED;

bad_last:

    ngx_str_set(&detail, "last must be printable ASCII, at most 255 bytes");
    list->rc = ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_INVALID_REQUEST,
                                        &detail);
    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_quay_list_run(ngx_http_request_t *r, ngx_http_quay_list_t *list,
    ngx_http_quay_db_query_t *q)
{
    q->udata = list;

    if (ngx_http_quay_request_query_run(r, q, ngx_http_quay_list_done)
        != NGX_AGAIN)
    {
        return ngx_http_quay_send_error(r, NGX_HTTP_QUAY_ERR_UNAVAILABLE,
                                        NULL);
    }

    /* one reference until ngx_http_quay_list_done() */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_quay_list_done(ngx_http_request_t *r, ngx_http_quay_db_query_t *q)
{
    if (q->rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_quay_send_error(r,
                                      NGX_HTTP_QUAY_ERR_UNAVAILABLE, NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_http_quay_list_send(r, q->udata, q));
}


/*
 * {"name":"<name>","tags":[...]} or {"repositories":[...]} from q's rows
 * (q NULL: an empty list), and the Link header when there is more.
 */
static ngx_int_t
ngx_http_quay_list_send(ngx_http_request_t *r, ngx_http_quay_list_t *list,
    ngx_http_quay_db_query_t *q)
{
    u_char                  *body, *p, *link;
    size_t                   len;
    ngx_int_t                rows, i;
    ngx_str_t                v, *name;
    ngx_uint_t               more;
    ngx_http_quay_v2_ctx_t  *ctx;

    ctx = list->ctx;
    name = &ctx->name;

    rows = (q == NULL) ? 0 : ngx_http_quay_db_ntuples(q);
    more = 0;

    if (rows > (ngx_int_t) list->n) {
        rows = list->n;
        more = 1;
    }

    /* measure, allocate, fill */

    len = sizeof("{\"name\":\"\",\"tags\":[]}") + name->len
          + ngx_escape_json(NULL, name->data, name->len)
          + sizeof("{\"repositories\":[]}");

    for (i = 0; i < rows; i++) {
        v = ngx_http_quay_db_value(q, i, 0);
        len += v.len + ngx_escape_json(NULL, v.data, v.len) + sizeof("\"\",");
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (list->catalog) {
        p = ngx_cpymem(body, "{\"repositories\":[",
                       sizeof("{\"repositories\":[") - 1);

    } else {
        p = ngx_cpymem(body, "{\"name\":\"", sizeof("{\"name\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, name->data, name->len);
        p = ngx_cpymem(p, "\",\"tags\":[", sizeof("\",\"tags\":[") - 1);
    }

    for (i = 0; i < rows; i++) {
        v = ngx_http_quay_db_value(q, i, 0);

        if (i) {
            *p++ = ',';
        }

        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, v.data, v.len);
        *p++ = '"';
    }

    p = ngx_cpymem(p, "]}", 2);

    if (more) {

        /* the last name of this page is the next page's cursor */

        v = ngx_http_quay_db_value(q, rows - 1, 0);

        len = sizeof("</v2//tags/list?n=&last=>; rel=\"next\"") + name->len
              + NGX_INT_T_LEN + v.len
              + 2 * ngx_escape_uri(NULL, v.data, v.len, NGX_ESCAPE_ARGS);

        link = ngx_pnalloc(r->pool, len);
        if (link == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (list->catalog) {
            len = ngx_sprintf(link, "</v2/_catalog?n=%ui&last=", list->n)
                  - link;

        } else {
            len = ngx_sprintf(link, "</v2/%V/tags/list?n=%ui&last=", name,
                              list->n)
                  - link;
        }

        len = (u_char *) ngx_escape_uri(link + len, v.data, v.len,
                                        NGX_ESCAPE_ARGS) - link;

        *ngx_cpymem(link + len, ">; rel=\"next\"",
                    sizeof(">; rel=\"next\"") - 1) = '\0';

        if (ngx_http_quay_set_header(r, "Link", (char *) link) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_quay_send_json(r, NGX_HTTP_OK, body, p - body);
}
