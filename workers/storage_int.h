/*
 * Inside the worker-side storage client (storage.c, storage_s3.c): the
 * driver table, the client struct and what the two files share.  Not for
 * workers: they use storage.h.
 */

#ifndef STORAGE_INT_H
#define STORAGE_INT_H

#include "storage.h"


/* The S3 driver's state of one location (storage_s3.c). */
typedef struct storage_s3_s  storage_s3_t;


/*
 * One driver.  Every function gets validated keys and returns a
 * STORAGE_* code with err filled on failure (see storage.h).
 */
typedef struct {
    const char  *name;                  /* Quay's driver name */
    int        (*stat)(storage_t *s, const char *key, int64_t *size,
                       char *err, size_t errlen);
    int        (*remove)(storage_t *s, const char *key, char *err,
                         size_t errlen);
    int        (*get)(storage_t *s, const char *key, int64_t offset,
                      int64_t length, storage_sink_pt sink, void *ctx,
                      char *err, size_t errlen);
    int        (*put)(storage_t *s, const char *key,
                      const unsigned char *p, size_t len, char *err,
                      size_t errlen);
    int        (*mpu_create)(storage_t *s, const char *key,
                             char *upload_id, size_t idlen, char *err,
                             size_t errlen);
    int        (*mpu_part)(storage_t *s, const char *key,
                           const char *upload_id, int64_t offset,
                           const unsigned char *p, storage_part_t *part,
                           char *err, size_t errlen);
    int        (*mpu_complete)(storage_t *s, const char *key,
                               const char *upload_id,
                               const storage_part_t *parts, size_t nparts,
                               char *err, size_t errlen);
    int        (*mpu_abort)(storage_t *s, const char *key,
                            const char *upload_id, char *err,
                            size_t errlen);
    int        (*mpu_list)(storage_t *s, const char *prefix,
                           storage_mpu_visit_pt visit, void *ctx, char *err,
                           size_t errlen);
    int        (*move)(storage_t *s, const char *src, const char *dst,
                       int64_t size, char *err, size_t errlen);
} storage_driver_t;


struct storage_s {
    const quay_storage_location_t  *loc;      /* borrowed from the config */
    const storage_driver_t         *driver;
    storage_s3_t                   *s3;       /* owned; S3 drivers only */
    storage_progress_pt             progress;
    void                           *progress_ctx;
};


/* Fills err (if not NULL) with the formatted reason; returns code. */
int storage_error(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* S3Storage and RadosGWStorage (storage_s3.c). */
extern const storage_driver_t  storage_s3_driver;

/* The state for loc, or NULL with err filled (no usable endpoint). */
storage_s3_t *storage_s3_new(const quay_storage_location_t *loc, char *err,
    size_t errlen);

void storage_s3_free(storage_s3_t *s3);

#endif /* STORAGE_INT_H */
