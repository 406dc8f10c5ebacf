/*
 * The manifest parser behind PUT /v2/<name>/manifests/<reference>.
 *
 * A manifest is stored byte for byte and addressed by the digest of those
 * bytes, so the parser never rewrites anything: it only decides whether
 * the bytes are a manifest we accept and extracts the references the
 * database must check (config and layer blobs, child manifests) and the
 * fields it indexes (subject, artifactType, config media type).
 *
 * Parsing is strict where a lax parser has been exploited:
 *
 *   - duplicate keys at any depth are refused (JSON_REJECT_DUPLICATES):
 *     two readers that keep different copies of "layers" would disagree
 *     on what the digest names (CVE-2014-8179, security catalogue B1.13);
 *   - the media type comes from the Content-Type and the body's mediaType,
 *     and they must agree; a body that has both "manifests" and
 *     "config"/"layers" is refused whatever the media type says, because
 *     a client that guesses from the fields would read it differently
 *     (CVE-2021-41190, B1.14);
 *   - nesting is bounded before jansson sees the body (a cheap scan that
 *     skips strings), so a 100,000-deep document costs one pass and no
 *     recursion;
 *   - jansson refuses invalid UTF-8, a byte order mark, NUL escapes and
 *     trailing bytes; integers that do not fit 64 bits are refused too.
 *
 * Unknown fields are ignored, as image-spec requires.  Memory is plain
 * malloc owned by the returned quay_manifest_t; the jansson tree is freed
 * before returning, so nothing here outlives the call but the result.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "quay_manifest.h"


#define QUAY_MT_OCI_MANIFEST   "application/vnd.oci.image.manifest.v1+json"
#define QUAY_MT_OCI_INDEX      "application/vnd.oci.image.index.v1+json"
#define QUAY_MT_DOCKER_V2                                                   \
    "application/vnd.docker.distribution.manifest.v2+json"
#define QUAY_MT_DOCKER_LIST                                                 \
    "application/vnd.docker.distribution.manifest.list.v2+json"
#define QUAY_MT_SCHEMA1                                                     \
    "application/vnd.docker.distribution.manifest.v1+json"
#define QUAY_MT_SCHEMA1_SIGNED                                              \
    "application/vnd.docker.distribution.manifest.v1+prettyjws"


typedef struct {
    const char         *name;
    quay_media_type_e   type;
} quay_media_name_t;


static const quay_media_name_t  quay_media_names[] = {
    { QUAY_MT_OCI_MANIFEST, QUAY_MEDIA_OCI_MANIFEST },
    { QUAY_MT_OCI_INDEX, QUAY_MEDIA_OCI_INDEX },
    { QUAY_MT_DOCKER_V2, QUAY_MEDIA_DOCKER_MANIFEST },
    { QUAY_MT_DOCKER_LIST, QUAY_MEDIA_DOCKER_LIST },
    { QUAY_MT_SCHEMA1, QUAY_MEDIA_DOCKER_SCHEMA1 },
    { QUAY_MT_SCHEMA1_SIGNED, QUAY_MEDIA_DOCKER_SCHEMA1 },
    { "application/json", QUAY_MEDIA_GENERIC },
    { "application/octet-stream", QUAY_MEDIA_GENERIC },
    { "text/plain", QUAY_MEDIA_GENERIC },
    { "*/*", QUAY_MEDIA_GENERIC },
    { NULL, QUAY_MEDIA_UNKNOWN }
};


static int quay_manifest_depth_ok(const unsigned char *p, size_t len);
static quay_media_type_e quay_manifest_body_type(const char *s);
static int quay_manifest_image(json_t *root, quay_manifest_t *m,
    quay_err_t *err);
static int quay_manifest_index(json_t *root, quay_manifest_t *m,
    quay_err_t *err);
static int quay_manifest_common(json_t *root, quay_manifest_t *m,
    quay_err_t *err);
static int quay_manifest_descriptors(json_t *array, const char *what,
    quay_descriptor_t **out, size_t *n, quay_err_t *err);
static int quay_manifest_descriptor(json_t *obj, const char *what,
    quay_descriptor_t *d, quay_err_t *err);
static int quay_manifest_annotations_ok(json_t *obj);
static int quay_manifest_media_type_get(json_t *obj, const char *key,
    const char *what, int required, char **out, quay_err_t *err);
static void quay_descriptor_free(quay_descriptor_t *d);
static char *quay_strdup(const char *s);


static int
quay_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}


quay_media_type_e
quay_manifest_content_type(const unsigned char *p, size_t len)
{
    size_t                    i, n;
    const quay_media_name_t  *mn;

    if (p == NULL) {
        return QUAY_MEDIA_GENERIC;
    }

    /* the media type is what precedes ';', without blanks around it */

    for (n = 0; n < len && p[n] != ';'; n++) {
        /* void */
    }

    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }

    while (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        n--;
    }

    if (n == 0) {
        return QUAY_MEDIA_GENERIC;
    }

    for (mn = quay_media_names; mn->name != NULL; mn++) {
        if (strlen(mn->name) != n) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (quay_lower(p[i]) != mn->name[i]) {
                break;
            }
        }

        if (i == n) {
            return mn->type;
        }
    }

    return QUAY_MEDIA_UNKNOWN;
}


const char *
quay_manifest_media_type_name(quay_media_type_e type)
{
    switch (type) {
    case QUAY_MEDIA_OCI_MANIFEST:
        return QUAY_MT_OCI_MANIFEST;
    case QUAY_MEDIA_OCI_INDEX:
        return QUAY_MT_OCI_INDEX;
    case QUAY_MEDIA_DOCKER_MANIFEST:
        return QUAY_MT_DOCKER_V2;
    case QUAY_MEDIA_DOCKER_LIST:
        return QUAY_MT_DOCKER_LIST;
    default:
        return NULL;
    }
}


/*
 * RFC 6838 section 4.2 restricted-name, twice, around one '/':
 * [A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}.  This keeps media types short
 * enough for the varchar(255) columns and free of quotes, blanks and
 * control bytes.
 */
static int
quay_media_name_char(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    if (first) {
        return 0;
    }

    return c == '!' || c == '#' || c == '$' || c == '&' || c == '^'
           || c == '_' || c == '.' || c == '+' || c == '-';
}


int
quay_media_type_valid(const unsigned char *p, size_t len)
{
    size_t  i, start;
    int     part;

    if (p == NULL || len == 0 || len > QUAY_MEDIA_TYPE_MAX) {
        return 0;
    }

    part = 0;
    start = 0;

    for (i = 0; i <= len; i++) {

        if (i == len || p[i] == '/') {
            if (i == start || i - start > 127) {
                return 0;
            }

            if (i < len && ++part > 1) {
                return 0;
            }

            start = i + 1;
            continue;
        }

        if (!quay_media_name_char(p[i], i == start)) {
            return 0;
        }
    }

    return part == 1;
}


/*
 * 1 when no array or object in p nests deeper than QUAY_MANIFEST_MAX_DEPTH.
 * Brackets inside strings do not count; the scan does not validate
 * anything else (jansson does that next).
 */
static int
quay_manifest_depth_ok(const unsigned char *p, size_t len)
{
    size_t  i, depth;
    int     in_string, escaped;

    depth = 0;
    in_string = 0;
    escaped = 0;

    for (i = 0; i < len; i++) {

        if (in_string) {
            if (escaped) {
                escaped = 0;

            } else if (p[i] == '\\') {
                escaped = 1;

            } else if (p[i] == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (p[i]) {
        case '"':
            in_string = 1;
            break;

        case '[':
        case '{':
            if (++depth > QUAY_MANIFEST_MAX_DEPTH) {
                return 0;
            }
            break;

        case ']':
        case '}':
            if (depth > 0) {
                depth--;
            }
            break;

        default:
            break;
        }
    }

    return 1;
}


/* The type named by a body's mediaType: exact match, as spec'd. */
static quay_media_type_e
quay_manifest_body_type(const char *s)
{
    const quay_media_name_t  *mn;

    for (mn = quay_media_names; mn->name != NULL; mn++) {
        if (mn->type != QUAY_MEDIA_GENERIC && strcmp(mn->name, s) == 0) {
            return mn->type;
        }
    }

    return QUAY_MEDIA_UNKNOWN;
}


int
quay_manifest_parse(const unsigned char *p, size_t len,
    const unsigned char *ct, size_t ct_len, quay_manifest_t **out,
    quay_err_t *err)
{
    int                rc;
    json_t            *root, *v;
    json_int_t         version;
    json_error_t       jerr;
    const char        *body_mt;
    quay_manifest_t   *m;
    quay_media_type_e  ct_type, body_type, type;

    *out = NULL;
    root = NULL;
    m = NULL;

    if (len > QUAY_MANIFEST_MAX_SIZE) {
        return quay_err_set(err, QUAY_ERANGE, "manifest is larger than %d "
                            "bytes", QUAY_MANIFEST_MAX_SIZE);
    }

    ct_type = quay_manifest_content_type(ct, ct_len);

    if (ct_type == QUAY_MEDIA_DOCKER_SCHEMA1) {
        return quay_err_set(err, QUAY_MANIFEST_ESCHEMA1,
                            "schema1 manifests are not supported");
    }

    if (ct_type == QUAY_MEDIA_UNKNOWN) {
        return quay_err_set(err, QUAY_MANIFEST_EUNSUPPORTED,
                            "manifest media type in Content-Type is not "
                            "supported");
    }

    if (p == NULL || len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "manifest body is empty");
    }

    if (!quay_manifest_depth_ok(p, len)) {
        return quay_err_set(err, QUAY_EINVAL, "manifest JSON nests deeper "
                            "than %d levels", QUAY_MANIFEST_MAX_DEPTH);
    }

    root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "manifest is not valid JSON "
                            "(line %d, column %d)", jerr.line, jerr.column);
    }

    if (!json_is_object(root)) {
        rc = quay_err_set(err, QUAY_EINVAL, "manifest is not a JSON "
                          "object");
        goto failed;
    }

    v = json_object_get(root, "schemaVersion");
    if (v == NULL || !json_is_integer(v)) {
        rc = quay_err_set(err, QUAY_EINVAL, "schemaVersion must be the "
                          "integer 2");
        goto failed;
    }

    version = json_integer_value(v);

    if (version == 1) {
        rc = quay_err_set(err, QUAY_MANIFEST_ESCHEMA1,
                          "schema1 manifests are not supported");
        goto failed;
    }

    if (version != 2) {
        rc = quay_err_set(err, QUAY_EINVAL, "schemaVersion must be the "
                          "integer 2");
        goto failed;
    }

    /* the media type: Content-Type and mediaType must agree */

    body_type = QUAY_MEDIA_GENERIC;
    v = json_object_get(root, "mediaType");

    if (v != NULL) {
        if (!json_is_string(v)) {
            rc = quay_err_set(err, QUAY_EINVAL, "mediaType must be a "
                              "string");
            goto failed;
        }

        body_mt = json_string_value(v);
        body_type = quay_manifest_body_type(body_mt);

        if (body_type == QUAY_MEDIA_DOCKER_SCHEMA1) {
            rc = quay_err_set(err, QUAY_MANIFEST_ESCHEMA1,
                              "schema1 manifests are not supported");
            goto failed;
        }

        if (body_type == QUAY_MEDIA_UNKNOWN) {
            if (ct_type == QUAY_MEDIA_GENERIC) {
                rc = quay_err_set(err, QUAY_MANIFEST_EUNSUPPORTED,
                                  "manifest mediaType is not supported");
            } else {
                rc = quay_err_set(err, QUAY_EINVAL, "mediaType does not "
                                  "match the Content-Type %s",
                                  quay_manifest_media_type_name(ct_type));
            }
            goto failed;
        }
    }

    if (ct_type != QUAY_MEDIA_GENERIC && body_type != QUAY_MEDIA_GENERIC
        && ct_type != body_type)
    {
        rc = quay_err_set(err, QUAY_EINVAL, "mediaType %s does not match "
                          "the Content-Type %s",
                          quay_manifest_media_type_name(body_type),
                          quay_manifest_media_type_name(ct_type));
        goto failed;
    }

    /* a body that reads as both kinds is refused whatever it claims */

    if (json_object_get(root, "manifests") != NULL
        && (json_object_get(root, "config") != NULL
            || json_object_get(root, "layers") != NULL))
    {
        rc = quay_err_set(err, QUAY_EINVAL, "ambiguous manifest: it has "
                          "both manifests and config or layers");
        goto failed;
    }

    if (ct_type != QUAY_MEDIA_GENERIC) {
        type = ct_type;

    } else if (body_type != QUAY_MEDIA_GENERIC) {
        type = body_type;

    } else if (json_object_get(root, "manifests") != NULL) {
        type = QUAY_MEDIA_OCI_INDEX;

    } else if (json_object_get(root, "config") != NULL) {
        type = QUAY_MEDIA_OCI_MANIFEST;

    } else {
        rc = quay_err_set(err, QUAY_EINVAL, "manifest has no mediaType, "
                          "config or manifests");
        goto failed;
    }

    /* Docker's formats always name themselves (distribution does too) */

    if ((type == QUAY_MEDIA_DOCKER_MANIFEST || type == QUAY_MEDIA_DOCKER_LIST)
        && body_type == QUAY_MEDIA_GENERIC)
    {
        rc = quay_err_set(err, QUAY_EINVAL, "Docker manifests must have "
                          "a mediaType");
        goto failed;
    }

    m = calloc(1, sizeof(quay_manifest_t));
    if (m == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "out of memory");
        goto failed;
    }

    m->type = type;
    m->media_type = quay_manifest_media_type_name(type);

    if (type == QUAY_MEDIA_OCI_MANIFEST || type == QUAY_MEDIA_DOCKER_MANIFEST)
    {
        m->kind = QUAY_MANIFEST_IMAGE;
        rc = quay_manifest_image(root, m, err);

    } else {
        m->kind = QUAY_MANIFEST_INDEX;
        rc = quay_manifest_index(root, m, err);
    }

    if (rc != QUAY_OK) {
        goto failed;
    }

    rc = quay_manifest_common(root, m, err);
    if (rc != QUAY_OK) {
        goto failed;
    }

    json_decref(root);
    *out = m;

    return QUAY_OK;

failed:

    quay_manifest_free(m);
    json_decref(root);

    return rc;
}


static int
quay_manifest_image(json_t *root, quay_manifest_t *m, quay_err_t *err)
{
    int      rc;
    size_t   i;
    json_t  *v;

    if (json_object_get(root, "manifests") != NULL) {
        return quay_err_set(err, QUAY_EINVAL, "an image manifest cannot "
                            "have manifests");
    }

    v = json_object_get(root, "config");
    if (v == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "manifest has no config");
    }

    rc = quay_manifest_descriptor(v, "config", &m->config, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    v = json_object_get(root, "layers");
    if (v == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "manifest has no layers");
    }

    rc = quay_manifest_descriptors(v, "layers", &m->layers, &m->nlayers,
                                   err);
    if (rc != QUAY_OK) {
        return rc;
    }

    m->layers_size = 0;

    for (i = 0; i < m->nlayers; i++) {
        if (m->layers[i].size > INT64_MAX - m->layers_size) {
            return quay_err_set(err, QUAY_EINVAL, "the layers' sizes add "
                                "up to more than 2^63-1");
        }

        m->layers_size += m->layers[i].size;
    }

    return QUAY_OK;
}


static int
quay_manifest_index(json_t *root, quay_manifest_t *m, quay_err_t *err)
{
    int          rc;
    size_t       i;
    json_t      *v, *entry, *platform;
    const char  *what;

    if (json_object_get(root, "config") != NULL
        || json_object_get(root, "layers") != NULL)
    {
        return quay_err_set(err, QUAY_EINVAL, "an index cannot have "
                            "config or layers");
    }

    v = json_object_get(root, "manifests");
    if (v == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "index has no manifests");
    }

    rc = quay_manifest_descriptors(v, "manifests", &m->manifests,
                                   &m->nmanifests, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    what = "manifests";

    json_array_foreach(v, i, entry) {
        platform = json_object_get(entry, "platform");

        if (platform != NULL && !json_is_object(platform)) {
            return quay_err_set(err, QUAY_EINVAL, "%s[%zu]: platform must "
                                "be an object", what, i);
        }
    }

    return QUAY_OK;
}


/* Fields both kinds share: artifactType, subject, annotations. */
static int
quay_manifest_common(json_t *root, quay_manifest_t *m, quay_err_t *err)
{
    int      rc, oci;
    json_t  *v;

    oci = (m->type == QUAY_MEDIA_OCI_MANIFEST
           || m->type == QUAY_MEDIA_OCI_INDEX);

    v = json_object_get(root, "annotations");

    if (v != NULL) {
        if (!quay_manifest_annotations_ok(v)) {
            return quay_err_set(err, QUAY_EINVAL, "annotations must be an "
                                "object of strings");
        }

        m->annotations = json_dumps(v, JSON_COMPACT);
        if (m->annotations == NULL) {
            return quay_err_set(err, QUAY_ENOMEM, "out of memory");
        }
    }

    /* subject and artifactType are OCI fields; Docker's formats have none
     * and a stray one must not make a Docker manifest a referrer */

    if (!oci) {
        return QUAY_OK;
    }

    rc = quay_manifest_media_type_get(root, "artifactType", "manifest", 0,
                                      &m->artifact_type, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    v = json_object_get(root, "subject");

    if (v != NULL) {
        rc = quay_manifest_descriptor(v, "subject", &m->subject, err);
        if (rc != QUAY_OK) {
            return rc;
        }

        m->has_subject = 1;
    }

    return QUAY_OK;
}


static int
quay_manifest_descriptors(json_t *array, const char *what,
    quay_descriptor_t **out, size_t *n, quay_err_t *err)
{
    int                 rc;
    char                where[64];
    size_t              i, count;
    json_t             *entry;
    quay_descriptor_t  *d;

    if (!json_is_array(array)) {
        return quay_err_set(err, QUAY_EINVAL, "%s must be an array", what);
    }

    count = json_array_size(array);

    if (count == 0) {
        return QUAY_OK;
    }

    d = calloc(count, sizeof(quay_descriptor_t));
    if (d == NULL) {
        return quay_err_set(err, QUAY_ENOMEM, "out of memory");
    }

    /* owned by the manifest from here on, even if an entry fails */

    *out = d;

    json_array_foreach(array, i, entry) {
        (void) snprintf(where, sizeof(where), "%s[%zu]", what, i);

        rc = quay_manifest_descriptor(entry, where, &d[i], err);
        *n = i + 1;

        if (rc != QUAY_OK) {
            return rc;
        }
    }

    return QUAY_OK;
}


/*
 * image-spec descriptor.md: mediaType, digest and size are required;
 * urls, annotations, data, platform and artifactType are optional and
 * checked for shape.
 */
static int
quay_manifest_descriptor(json_t *obj, const char *what, quay_descriptor_t *d,
    quay_err_t *err)
{
    int          rc;
    size_t       i, nurls;
    json_t      *v, *url;
    const char  *s;
    json_int_t   size;

    if (!json_is_object(obj)) {
        return quay_err_set(err, QUAY_EINVAL, "%s must be an object", what);
    }

    rc = quay_manifest_media_type_get(obj, "mediaType", what, 1,
                                      &d->media_type, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    v = json_object_get(obj, "digest");
    if (v == NULL || !json_is_string(v)) {
        return quay_err_set(err, QUAY_EINVAL, "%s: digest must be a string",
                            what);
    }

    s = json_string_value(v);

    if (quay_digest_parse((const unsigned char *) s, json_string_length(v),
                          &d->digest, NULL)
        != QUAY_OK)
    {
        return quay_err_set(err, QUAY_EINVAL, "%s: digest is invalid",
                            what);
    }

    v = json_object_get(obj, "size");
    if (v == NULL || !json_is_integer(v)) {
        return quay_err_set(err, QUAY_EINVAL, "%s: size must be an integer",
                            what);
    }

    size = json_integer_value(v);
    if (size < 0) {
        return quay_err_set(err, QUAY_EINVAL, "%s: size is negative", what);
    }

    d->size = (int64_t) size;

    rc = quay_manifest_media_type_get(obj, "artifactType", what, 0,
                                      &d->artifact_type, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    nurls = 0;
    v = json_object_get(obj, "urls");

    if (v != NULL) {
        if (!json_is_array(v)) {
            return quay_err_set(err, QUAY_EINVAL, "%s: urls must be an "
                                "array", what);
        }

        json_array_foreach(v, i, url) {
            if (!json_is_string(url)) {
                return quay_err_set(err, QUAY_EINVAL, "%s: urls must be "
                                    "strings", what);
            }
        }

        nurls = json_array_size(v);
    }

    v = json_object_get(obj, "annotations");
    if (v != NULL && !quay_manifest_annotations_ok(v)) {
        return quay_err_set(err, QUAY_EINVAL, "%s: annotations must be an "
                            "object of strings", what);
    }

    v = json_object_get(obj, "data");
    if (v != NULL && !json_is_string(v)) {
        return quay_err_set(err, QUAY_EINVAL, "%s: data must be a string",
                            what);
    }

    /*
     * Foreign (Windows base) and non-distributable layers are fetched
     * from their urls and never pushed, so the registry cannot require
     * them (distribution skips them the same way).
     */

    if (nurls > 0
        && (strstr(d->media_type, ".foreign.") != NULL
            || strstr(d->media_type, ".nondistributable.") != NULL))
    {
        d->foreign = 1;
    }

    return QUAY_OK;
}


static int
quay_manifest_annotations_ok(json_t *obj)
{
    json_t      *v;
    const char  *key;

    if (!json_is_object(obj)) {
        return 0;
    }

    json_object_foreach(obj, key, v) {
        if (!json_is_string(v)) {
            return 0;
        }
    }

    return 1;
}


/* obj[key], a media type; *out is a malloc'ed copy, NULL when absent. */
static int
quay_manifest_media_type_get(json_t *obj, const char *key, const char *what,
    int required, char **out, quay_err_t *err)
{
    json_t      *v;
    const char  *s;

    v = json_object_get(obj, key);

    if (v == NULL) {
        if (required) {
            return quay_err_set(err, QUAY_EINVAL, "%s: %s is missing", what,
                                key);
        }

        return QUAY_OK;
    }

    if (!json_is_string(v)) {
        return quay_err_set(err, QUAY_EINVAL, "%s: %s must be a string",
                            what, key);
    }

    s = json_string_value(v);

    if (!quay_media_type_valid((const unsigned char *) s,
                               json_string_length(v)))
    {
        return quay_err_set(err, QUAY_EINVAL, "%s: %s is not a valid "
                            "media type", what, key);
    }

    *out = quay_strdup(s);
    if (*out == NULL) {
        return quay_err_set(err, QUAY_ENOMEM, "out of memory");
    }

    return QUAY_OK;
}


const char *
quay_manifest_artifact_type(const quay_manifest_t *m)
{
    if (m->artifact_type != NULL) {
        return m->artifact_type;
    }

    if (m->kind == QUAY_MANIFEST_IMAGE) {
        return m->config.media_type;
    }

    return NULL;
}


static void
quay_descriptor_free(quay_descriptor_t *d)
{
    free(d->media_type);
    free(d->artifact_type);
}


void
quay_manifest_free(quay_manifest_t *m)
{
    size_t  i;

    if (m == NULL) {
        return;
    }

    quay_descriptor_free(&m->config);
    quay_descriptor_free(&m->subject);

    for (i = 0; i < m->nlayers; i++) {
        quay_descriptor_free(&m->layers[i]);
    }

    for (i = 0; i < m->nmanifests; i++) {
        quay_descriptor_free(&m->manifests[i]);
    }

    free(m->layers);
    free(m->manifests);
    free(m->artifact_type);
    free(m->annotations);
    free(m);
}


static char *
quay_strdup(const char *s)
{
    char    *p;
    size_t   len;

    len = strlen(s);

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len + 1);

    return p;
}
