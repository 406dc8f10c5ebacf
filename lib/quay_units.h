/*
 * Quay's textual units: durations such as "2w" (DEFAULT_TAG_EXPIRATION,
 * TAG_EXPIRATION_OPTIONS) and sizes such as "20G" (MAXIMUM_LAYER_SIZE).
 * Inputs are (p, len) and need not be NUL-terminated.
 */

#ifndef QUAY_UNITS_H
#define QUAY_UNITS_H

#include <stddef.h>
#include <stdint.h>


/*
 * Parses Quay's duration grammar ^[0-9]+(w|m|d|h|s)$ (util/timedeltastring:
 * m is minutes, there is no month) into seconds.  Returns QUAY_OK,
 * QUAY_EINVAL when the text does not match, QUAY_ERANGE when the value does
 * not fit in int64_t.
 */
int quay_duration_parse(const char *p, size_t len, int64_t *seconds);

/*
 * Parses a size: decimal digits with an optional K, M, G or T suffix
 * (either case), 1024-based as nginx's client_max_body_size reads it,
 * because Quay hands MAXIMUM_LAYER_SIZE to nginx.  "20G", "512M", "4096".
 * Returns QUAY_OK, QUAY_EINVAL or QUAY_ERANGE.
 */
int quay_size_parse(const char *p, size_t len, int64_t *bytes);

#endif /* QUAY_UNITS_H */
