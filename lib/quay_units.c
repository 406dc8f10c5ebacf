/*
 * Durations and sizes as Quay's config.yaml writes them.  Both are a run of
 * decimal digits and a one-letter unit; the digits are accumulated with an
 * overflow check before the unit multiplies them, so no input can wrap
 * around into a small or negative number.
 */

#include <stdint.h>

#include "quay_err.h"
#include "quay_units.h"


static int
quay_units_digits(const char *p, size_t len, int64_t *value)
{
    size_t   i;
    int64_t  v;

    if (len == 0) {
        return QUAY_EINVAL;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return QUAY_EINVAL;
        }

        if (v > (INT64_MAX - (p[i] - '0')) / 10) {
            return QUAY_ERANGE;
        }

        v = v * 10 + (p[i] - '0');
    }

    *value = v;

    return QUAY_OK;
}


static int
quay_units_scale(const char *p, size_t len, int64_t unit, int64_t *out)
{
    int      rc;
    int64_t  v;

    rc = quay_units_digits(p, len, &v);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (v > INT64_MAX / unit) {
        return QUAY_ERANGE;
    }

    *out = v * unit;

    return QUAY_OK;
}


int
quay_duration_parse(const char *p, size_t len, int64_t *seconds)
{
    int64_t  unit;

    if (len < 2) {
        return QUAY_EINVAL;
    }

    switch (p[len - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    default:
        return QUAY_EINVAL;
    }

    return quay_units_scale(p, len - 1, unit, seconds);
}


int
quay_size_parse(const char *p, size_t len, int64_t *bytes)
{
    int64_t  unit;

    if (len == 0) {
        return QUAY_EINVAL;
    }

    switch (p[len - 1]) {
    case 'k':
    case 'K':
        unit = (int64_t) 1 << 10;
        break;
    case 'm':
    case 'M':
        unit = (int64_t) 1 << 20;
        break;
    case 'g':
    case 'G':
        unit = (int64_t) 1 << 30;
        break;
    case 't':
    case 'T':
        unit = (int64_t) 1 << 40;
        break;
    default:
        return quay_units_scale(p, len, 1, bytes);
    }

    return quay_units_scale(p, len - 1, unit, bytes);
}
