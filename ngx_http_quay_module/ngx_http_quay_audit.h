/*
 * The audit log: logentry rows written off the request path, in batches
 * per worker.  See the design paragraph in ngx_http_quay_audit.c.
 */

#ifndef NGX_HTTP_QUAY_AUDIT_H
#define NGX_HTTP_QUAY_AUDIT_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_quay_module.h"


/* Worker start and exit (exit logs the rows it could not send). */
ngx_int_t ngx_http_quay_audit_init_process(ngx_http_quay_main_conf_t *qmcf,
    ngx_cycle_t *cycle);
void ngx_http_quay_audit_exit_process(ngx_http_quay_main_conf_t *qmcf);

/*
 * Queues one logentry row with the current time: a pull_repo row is
 * written within 100 ms with the others of its batch, any other kind at
 * once (with the pulls queued before it).  kind is a logentrykind name;
 * account_id, performer_id and repository_id are decimal text or empty
 * (NULL); metadata is a JSON object text or empty.  Never fails the request: a
 * row that cannot be written is logged at WARN.
 */
void ngx_http_quay_audit(ngx_http_request_t *r, const char *kind,
    ngx_str_t *account_id, ngx_str_t *performer_id,
    ngx_str_t *repository_id, ngx_str_t *metadata);

#endif /* NGX_HTTP_QUAY_AUDIT_H */
