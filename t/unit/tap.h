/*
 * A tiny TAP producer for the unit tests, read by prove.  Each test binary
 * calls ok()/is_int()/is_str() and finishes with done_testing(), which
 * prints the plan and returns the exit status (non-zero when anything
 * failed).
 */

#ifndef QUAY_TAP_H
#define QUAY_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_run;
static int tap_failed;

static int
tap_ok(int cond, const char *file, int line, const char *name)
{
    tap_run++;
    if (cond) {
        printf("ok %d - %s\n", tap_run, name);
    } else {
        tap_failed++;
        printf("not ok %d - %s\n#   at %s line %d\n", tap_run, name, file,
               line);
    }
    fflush(stdout);
    return cond;
}

#define ok(cond, name)  tap_ok(!!(cond), __FILE__, __LINE__, name)

#define is_int(got, want, name)                                             \
    do {                                                                    \
        long long  tap_g = (long long) (got), tap_w = (long long) (want);   \
        if (!ok(tap_g == tap_w, name)) {                                    \
            printf("#   got %lld, want %lld\n", tap_g, tap_w);              \
        }                                                                   \
    } while (0)

#define is_str(got, want, name)                                             \
    do {                                                                    \
        const char  *tap_g = (got), *tap_w = (want);                        \
        if (!ok(tap_g != NULL && tap_w != NULL && strcmp(tap_g, tap_w) == 0,\
                name))                                                      \
        {                                                                   \
            printf("#   got \"%s\", want \"%s\"\n", tap_g ? tap_g : "(null)",\
                   tap_w ? tap_w : "(null)");                               \
        }                                                                   \
    } while (0)

static int
done_testing(void)
{
    printf("1..%d\n", tap_run);
    return tap_failed == 0 && tap_run > 0 ? 0 : 1;
}

#endif /* QUAY_TAP_H */
