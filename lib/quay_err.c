/*
 * quay_err_set(): the one place that formats an error into a caller's
 * buffer.  Truncation is acceptable: the buffer is for humans.
 */

#include <stdarg.h>
#include <stdio.h>

#include "quay_err.h"


int
quay_err_set(quay_err_t *err, int code, const char *fmt, ...)
{
    va_list  ap;

    if (err != NULL) {
        err->code = code;
        va_start(ap, fmt);
        (void) vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }

    return code;
}
