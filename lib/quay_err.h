/*
 * Error codes and the caller-owned error buffer shared by everything in
 * lib/.  Functions return QUAY_OK (0) or a negative QUAY_E* code; details go
 * into an optional quay_err_t with a fixed buffer, so the error path never
 * allocates (the anet pattern from Redis).  lib/ never logs or prints.
 */

#ifndef QUAY_ERR_H
#define QUAY_ERR_H

#include <stddef.h>


#define QUAY_OK          0
#define QUAY_ERROR      -1     /* unspecified failure */
#define QUAY_EINVAL     -2     /* malformed input */
#define QUAY_ENOMEM     -3     /* allocation failed */
#define QUAY_EIO        -4     /* file could not be read */
#define QUAY_ERANGE     -5     /* value out of bounds */
#define QUAY_ENOTFOUND  -6     /* no such item */
#define QUAY_EVERSION   -7     /* unsupported serialized version */

#define QUAY_ERR_LEN    512


typedef struct {
    int   code;
    char  msg[QUAY_ERR_LEN];
} quay_err_t;


/* Records code and a printf-style message in err (if err is not NULL) and
 * returns code, so callers can write "return quay_err_set(err, ...)". */
int quay_err_set(quay_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* QUAY_ERR_H */
