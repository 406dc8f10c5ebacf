/*
 * Removes stale S3 upload spools from this node's disk
 * (ngx_http_quay_spool_sweep.c).
 */

#ifndef NGX_HTTP_QUAY_SPOOL_SWEEP_H
#define NGX_HTTP_QUAY_SPOOL_SWEEP_H

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_quay_module.h"


ngx_int_t ngx_http_quay_spool_sweep_add_dir(ngx_conf_t *cf,
    ngx_http_quay_main_conf_t *qmcf, ngx_path_t *temp);
ngx_int_t ngx_http_quay_spool_sweep_init_process(
    ngx_http_quay_main_conf_t *qmcf, ngx_cycle_t *cycle);

#endif /* NGX_HTTP_QUAY_SPOOL_SWEEP_H */
