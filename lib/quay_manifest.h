/*
 * Image manifests and indexes as pushed to PUT /v2/<name>/manifests/<ref>:
 * the pure parser (no I/O) that decides whether a body is a manifest the
 * registry stores, and extracts what the database needs (media type,
 * config and layer descriptors, child manifests, subject, artifact type).
 *
 * Accepted media types (image-spec manifest.md and image-index.md, Docker
 * image manifest v2 schema 2):
 *
 *   application/vnd.oci.image.manifest.v1+json                 image
 *   application/vnd.oci.image.index.v1+json                    index
 *   application/vnd.docker.distribution.manifest.v2+json       image
 *   application/vnd.docker.distribution.manifest.list.v2+json  index
 *
 * Artifacts are OCI image manifests (any artifactType, any config media
 * type).  Docker schema 1 is recognised only to be refused with its own
 * code, so that the registry can say why.
 */

#ifndef QUAY_MANIFEST_H
#define QUAY_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "quay_digest.h"
#include "quay_err.h"


/* The largest manifest body the registry accepts (413 past it). */
#define QUAY_MANIFEST_MAX_SIZE    (4 * 1024 * 1024)

/* Nesting of JSON arrays and objects; real manifests use 4 or 5. */
#define QUAY_MANIFEST_MAX_DEPTH   64

/* Longest media type (RFC 6838: 127 + "/" + 127). */
#define QUAY_MEDIA_TYPE_MAX       255


/*
 * Codes beyond quay_err.h's, returned by quay_manifest_parse() only.
 * QUAY_EINVAL: the body is not a valid manifest (400 MANIFEST_INVALID).
 * QUAY_ERANGE: the body is larger than QUAY_MANIFEST_MAX_SIZE (413).
 */
#define QUAY_MANIFEST_ESCHEMA1      -64   /* Docker schema 1: refused, 400 */
#define QUAY_MANIFEST_EUNSUPPORTED  -65   /* unknown media type: 415 */


typedef enum {
    QUAY_MANIFEST_IMAGE = 1,        /* has config and layers */
    QUAY_MANIFEST_INDEX             /* has child manifests */
} quay_manifest_kind_e;


typedef enum {
    QUAY_MEDIA_UNKNOWN = 0,
    QUAY_MEDIA_OCI_MANIFEST,
    QUAY_MEDIA_OCI_INDEX,
    QUAY_MEDIA_DOCKER_MANIFEST,
    QUAY_MEDIA_DOCKER_LIST,
    QUAY_MEDIA_DOCKER_SCHEMA1,       /* v1+json and v1+prettyjws */
    QUAY_MEDIA_GENERIC               /* absent, application/json, ... */
} quay_media_type_e;


typedef struct {
    char           *media_type;      /* owned, NUL-terminated, valid
                                        RFC 6838 name */
    quay_digest_t   digest;
    int64_t         size;            /* >= 0 */
    char           *artifact_type;   /* owned; NULL when absent */
    int             foreign;         /* non-distributable layer with
                                        urls: not pushed to the registry */
} quay_descriptor_t;


typedef struct {
    quay_manifest_kind_e   kind;
    quay_media_type_e      type;
    const char            *media_type;   /* static: one of the four above */

    /* QUAY_MANIFEST_IMAGE */
    quay_descriptor_t      config;
    quay_descriptor_t     *layers;       /* owned array of nlayers */
    size_t                 nlayers;
    int64_t                layers_size;  /* sum of the layers' sizes */

    /* QUAY_MANIFEST_INDEX */
    quay_descriptor_t     *manifests;    /* owned array of nmanifests */
    size_t                 nmanifests;

    /* both kinds; OCI types only */
    int                    has_subject;
    quay_descriptor_t      subject;
    char                  *artifact_type;  /* owned; the artifactType
                                              field, NULL when absent */
    char                  *annotations;    /* owned; compact JSON object
                                              text, NULL when absent */
} quay_manifest_t;


/*
 * Classifies a Content-Type header value (p, len; p may be NULL when the
 * header is absent): parameters after ';' and surrounding blanks are
 * ignored and the comparison is case-insensitive.  Absent, empty,
 * application/json, application/octet-stream, text/plain and * / * are
 * QUAY_MEDIA_GENERIC (the body's mediaType decides); any other unknown
 * type is QUAY_MEDIA_UNKNOWN.
 */
quay_media_type_e quay_manifest_content_type(const unsigned char *p,
    size_t len);

/* The media type string of an accepted type; NULL for the others. */
const char *quay_manifest_media_type_name(quay_media_type_e type);

/* 1 when p[0..len-1] is an RFC 6838 type/subtype without parameters. */
int quay_media_type_valid(const unsigned char *p, size_t len);

/*
 * Parses a manifest body p[0..len-1] (the raw bytes, not NUL-terminated)
 * sent with the Content-Type value ct[0..ct_len-1] (ct may be NULL).
 *
 * Rules, in order: the body is at most QUAY_MANIFEST_MAX_SIZE bytes
 * (QUAY_ERANGE); a schema 1 Content-Type, "schemaVersion": 1 or a schema 1
 * mediaType gives QUAY_MANIFEST_ESCHEMA1; an unknown Content-Type, or an
 * unknown mediaType when the Content-Type is generic, gives
 * QUAY_MANIFEST_EUNSUPPORTED.  Everything else that is wrong is
 * QUAY_EINVAL: invalid JSON or UTF-8, a byte order mark, duplicate keys
 * at any depth, nesting deeper than QUAY_MANIFEST_MAX_DEPTH, a root that
 * is not an object, schemaVersion other than the integer 2, a mediaType
 * that differs from the Content-Type, a body with both "manifests" and
 * "config" or "layers", missing required fields, and descriptors with a
 * bad digest, a bad media type or a size that is not a non-negative
 * integer.  When the Content-Type is generic and the body has no
 * mediaType, "manifests" means an OCI index and "config" an OCI image
 * manifest (image-spec allows mediaType to be absent; Docker types
 * require it).
 *
 * On QUAY_OK *out is a new quay_manifest_t for quay_manifest_free().  On
 * error *out is NULL and err (may be NULL) says why in plain text that
 * never quotes the body.  QUAY_ENOMEM when allocation fails.
 */
int quay_manifest_parse(const unsigned char *p, size_t len,
    const unsigned char *ct, size_t ct_len, quay_manifest_t **out,
    quay_err_t *err);

/* Frees m and everything it owns; m may be NULL. */
void quay_manifest_free(quay_manifest_t *m);

/*
 * The artifact type the referrers API reports for m (image-spec
 * manifest.md "artifactType"; distribution spec "Listing Referrers"): the
 * artifactType field, or else for an image manifest the config media
 * type; NULL for an index without artifactType.  Borrowed from m.
 */
const char *quay_manifest_artifact_type(const quay_manifest_t *m);

#endif /* QUAY_MANIFEST_H */
