/*
 * Unit tests for lib/quay_manifest.c: the four accepted media types and
 * artifacts, Content-Type classification, and the refusals of security
 * catalogue B1.13/B1.14 (schema 1, mediaType versus Content-Type,
 * ambiguous bodies, duplicate keys, bad UTF-8, a BOM, deep nesting, bad
 * descriptors), each with the code the handler maps to a status.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "quay_manifest.h"


#define D1 "sha256:" \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "sha256:" \
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#define D3 "sha256:" \
    "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
#define D512 "sha512:" \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

#define OCI_M   "application/vnd.oci.image.manifest.v1+json"
#define OCI_I   "application/vnd.oci.image.index.v1+json"
#define DOCK_M  "application/vnd.docker.distribution.manifest.v2+json"
#define DOCK_L  "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_CFG "application/vnd.oci.image.config.v1+json"
#define OCI_TGZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define DOCK_CFG "application/vnd.docker.container.image.v1+json"
#define DOCK_TGZ "application/vnd.docker.image.rootfs.diff.tar.gzip"

#define DESC(mt, d, size) \
    "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":" #size "}"

#define OCI_IMAGE_BODY                                                      \
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","                    \
    "\"config\":" DESC(OCI_CFG, D1, 2) ","                                  \
    "\"layers\":[" DESC(OCI_TGZ, D2, 100) "," DESC(OCI_TGZ, D3, 23) "]}"

#define OCI_INDEX_BODY                                                      \
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_I "\","                    \
    "\"manifests\":[{\"mediaType\":\"" OCI_M "\",\"digest\":\"" D1 "\","   \
    "\"size\":500,\"platform\":{\"architecture\":\"amd64\","               \
    "\"os\":\"linux\"}}," DESC(OCI_M, D2, 501) "]}"


typedef struct {
    const char  *name;
    const char  *ct;           /* NULL: no Content-Type */
    const char  *body;
    int          rc;
} manifest_case_t;


static int
parse(const char *ct, const char *body, size_t len, quay_manifest_t **m,
    quay_err_t *err)
{
    return quay_manifest_parse((const unsigned char *) body, len,
                               (const unsigned char *) ct,
                               ct ? strlen(ct) : 0, m, err);
}


static void
test_content_type(void)
{
    static const struct {
        const char         *ct;
        quay_media_type_e   want;
    } cases[] = {
        { OCI_M, QUAY_MEDIA_OCI_MANIFEST },
        { OCI_I, QUAY_MEDIA_OCI_INDEX },
        { DOCK_M, QUAY_MEDIA_DOCKER_MANIFEST },
        { DOCK_L, QUAY_MEDIA_DOCKER_LIST },
        { "application/vnd.docker.distribution.manifest.v1+json",
          QUAY_MEDIA_DOCKER_SCHEMA1 },
        { "application/vnd.docker.distribution.manifest.v1+prettyjws",
          QUAY_MEDIA_DOCKER_SCHEMA1 },
        { "Application/VND.OCI.Image.Manifest.v1+JSON",
          QUAY_MEDIA_OCI_MANIFEST },
        { " " OCI_M " ; charset=utf-8", QUAY_MEDIA_OCI_MANIFEST },
        { OCI_I ";", QUAY_MEDIA_OCI_INDEX },
        { "", QUAY_MEDIA_GENERIC },
        { "  ", QUAY_MEDIA_GENERIC },
        { "application/json", QUAY_MEDIA_GENERIC },
        { "application/json; charset=utf-8", QUAY_MEDIA_GENERIC },
        { "application/octet-stream", QUAY_MEDIA_GENERIC },
        { "*/*", QUAY_MEDIA_GENERIC },
        { "text/plain", QUAY_MEDIA_GENERIC },
        { "application/vnd.oci.artifact.manifest.v1+json",
          QUAY_MEDIA_UNKNOWN },
        { "application/xml", QUAY_MEDIA_UNKNOWN },
        { OCI_M "x", QUAY_MEDIA_UNKNOWN },
        { "application/vnd.oci.image.manifest.v1", QUAY_MEDIA_UNKNOWN },
    };
    size_t  i;
    char    name[160];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        (void) snprintf(name, sizeof(name), "Content-Type \"%s\"",
                        cases[i].ct);
        is_int(quay_manifest_content_type(
                   (const unsigned char *) cases[i].ct, strlen(cases[i].ct)),
               cases[i].want, name);
    }

    is_int(quay_manifest_content_type(NULL, 0), QUAY_MEDIA_GENERIC,
           "absent Content-Type is generic");

    is_str(quay_manifest_media_type_name(QUAY_MEDIA_DOCKER_LIST), DOCK_L,
           "media type name of a Docker list");
    ok(quay_manifest_media_type_name(QUAY_MEDIA_DOCKER_SCHEMA1) == NULL,
       "schema1 has no accepted name");
}


static void
test_media_type_grammar(void)
{
    static const char  *good[] = {
        OCI_M, "application/vnd.cncf.helm.config.v1+json",
        "text/plain", "application/vnd.dev.cosign.simplesigning.v1+json",
        "a/b", "application/x-foo_bar.baz!#$&^",
    };
    static const char  *bad[] = {
        "", "application", "application/", "/json", "a/b/c",
        "application/json; charset=utf-8", "application/ json",
        "application/\"x\"", ".a/b", "a/-b", "app lication/json",
        "application/json\n",
    };
    char    longer[300];
    size_t  i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ok(quay_media_type_valid((const unsigned char *) good[i],
                                 strlen(good[i])), good[i]);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ok(!quay_media_type_valid((const unsigned char *) bad[i],
                                  strlen(bad[i])), "refused media type");
    }

    memset(longer, 'a', sizeof(longer));
    longer[128] = '/';
    ok(!quay_media_type_valid((const unsigned char *) longer, 200),
       "type part of 128 characters refused");
    longer[128] = 'a';
    longer[100] = '/';
    ok(quay_media_type_valid((const unsigned char *) longer, 200),
       "100/99 characters accepted");
    ok(!quay_media_type_valid((const unsigned char *) longer, 256),
       "256 characters refused");
}


static void
test_oci_image(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    rc = parse(OCI_M, OCI_IMAGE_BODY, strlen(OCI_IMAGE_BODY), &m, &err);
    is_int(rc, QUAY_OK, "OCI image manifest parses");
    if (rc != QUAY_OK) {
        printf("# %s\n", err.msg);
        return;
    }

    is_int(m->kind, QUAY_MANIFEST_IMAGE, "  ... kind image");
    is_int(m->type, QUAY_MEDIA_OCI_MANIFEST, "  ... OCI manifest");
    is_str(m->media_type, OCI_M, "  ... media type");
    is_str(m->config.media_type, OCI_CFG, "  ... config media type");
    is_str((char *) m->config.digest.hex, D1 + 7, "  ... config digest");
    is_int(m->config.size, 2, "  ... config size");
    is_int(m->nlayers, 2, "  ... two layers");
    is_str((char *) m->layers[1].digest.hex, D3 + 7, "  ... layer digest");
    is_int(m->layers[0].size, 100, "  ... layer size");
    is_int(m->layers_size, 123, "  ... layers add up");
    is_int(m->nmanifests, 0, "  ... no children");
    is_int(m->has_subject, 0, "  ... no subject");
    ok(m->artifact_type == NULL, "  ... no artifactType");
    ok(m->annotations == NULL, "  ... no annotations");
    is_str(quay_manifest_artifact_type(m), OCI_CFG,
           "  ... artifact type falls back to the config media type");
    is_int(m->layers[0].foreign, 0, "  ... layer is not foreign");
    quay_manifest_free(m);

    /* the same body with no Content-Type, or a generic one */
    rc = parse(NULL, OCI_IMAGE_BODY, strlen(OCI_IMAGE_BODY), &m, &err);
    is_int(rc, QUAY_OK, "no Content-Type: the body's mediaType decides");
    is_int(m ? (int) m->type : -1, QUAY_MEDIA_OCI_MANIFEST,
           "  ... OCI manifest");
    quay_manifest_free(m);

    rc = parse("application/json", OCI_IMAGE_BODY, strlen(OCI_IMAGE_BODY),
               &m, &err);
    is_int(rc, QUAY_OK, "application/json: the body's mediaType decides");
    quay_manifest_free(m);

    rc = parse(OCI_M "; charset=utf-8", OCI_IMAGE_BODY,
               strlen(OCI_IMAGE_BODY), &m, &err);
    is_int(rc, QUAY_OK, "Content-Type parameters are ignored");
    quay_manifest_free(m);
}


static void
test_oci_artifact_with_subject(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    static const char  body[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
        "\"artifactType\":\"application/vnd.example.sbom.v1\","
        "\"config\":" DESC("application/vnd.oci.empty.v1+json", D1, 2) ","
        "\"layers\":[{\"mediaType\":\"application/spdx+json\","
        "\"digest\":\"" D2 "\",\"size\":7,"
        "\"annotations\":{\"org.opencontainers.image.title\":\"a.json\"}}],"
        "\"subject\":" DESC(OCI_M, D3, 1234) ","
        "\"annotations\":{\"b\":\"2\",\"a\":\"1\"}}";

    static const char  no_type[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
        "\"config\":" DESC("application/vnd.example.sig.v1+json", D1, 2) ","
        "\"layers\":[],"
        "\"subject\":" DESC(OCI_M, D3, 1234) "}";

    static const char  index_subject[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_I "\","
        "\"manifests\":[],"
        "\"subject\":" DESC(OCI_M, D3, 1234) "}";

    rc = parse(OCI_M, body, strlen(body), &m, &err);
    is_int(rc, QUAY_OK, "artifact with subject parses");
    if (rc != QUAY_OK) {
        printf("# %s\n", err.msg);
        return;
    }

    is_int(m->has_subject, 1, "  ... has a subject");
    is_str((char *) m->subject.digest.hex, D3 + 7, "  ... subject digest");
    is_str(m->artifact_type, "application/vnd.example.sbom.v1",
           "  ... artifactType");
    is_str(quay_manifest_artifact_type(m), "application/vnd.example.sbom.v1",
           "  ... referrers artifact type is artifactType");
    is_str(m->annotations, "{\"b\":\"2\",\"a\":\"1\"}",
           "  ... annotations as compact JSON, order kept");
    is_int(m->nlayers, 1, "  ... one layer");
    quay_manifest_free(m);

    rc = parse(OCI_M, no_type, strlen(no_type), &m, &err);
    is_int(rc, QUAY_OK, "artifact without artifactType, empty layers");
    if (rc == QUAY_OK) {
        is_str(quay_manifest_artifact_type(m),
               "application/vnd.example.sig.v1+json",
               "  ... artifact type falls back to the config media type");
        is_int(m->nlayers, 0, "  ... no layers");
        is_int(m->layers_size, 0, "  ... layers size 0");
    }
    quay_manifest_free(m);

    rc = parse(OCI_I, index_subject, strlen(index_subject), &m, &err);
    is_int(rc, QUAY_OK, "index with subject parses");
    if (rc == QUAY_OK) {
        is_int(m->has_subject, 1, "  ... has a subject");
        ok(quay_manifest_artifact_type(m) == NULL,
           "  ... index without artifactType has none");
    }
    quay_manifest_free(m);
}


static void
test_oci_index(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    rc = parse(OCI_I, OCI_INDEX_BODY, strlen(OCI_INDEX_BODY), &m, &err);
    is_int(rc, QUAY_OK, "OCI index parses");
    if (rc != QUAY_OK) {
        printf("# %s\n", err.msg);
        return;
    }

    is_int(m->kind, QUAY_MANIFEST_INDEX, "  ... kind index");
    is_str(m->media_type, OCI_I, "  ... media type");
    is_int(m->nmanifests, 2, "  ... two children");
    is_str(m->manifests[0].media_type, OCI_M, "  ... child media type");
    is_str((char *) m->manifests[1].digest.hex, D2 + 7,
           "  ... child digest");
    is_int(m->manifests[1].size, 501, "  ... child size");
    is_int(m->nlayers, 0, "  ... no layers");
    ok(m->config.media_type == NULL, "  ... no config");
    quay_manifest_free(m);
}


static void
test_docker(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    static const char  image[] =
        "{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"" DOCK_M "\",\n"
        "   \"config\": " DESC(DOCK_CFG, D1, 1469) ",\n"
        "   \"layers\": [\n      " DESC(DOCK_TGZ, D2, 977) ",\n"
        "      {\"mediaType\": "
        "\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\", "
        "\"digest\": \"" D3 "\", \"size\": 5, "
        "\"urls\": [\"https://example.com/layer\"]}\n   ]\n}";

    static const char  list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" DOCK_L "\","
        "\"manifests\":[{\"mediaType\":\"" DOCK_M "\",\"digest\":\"" D1 "\","
        "\"size\":528,\"platform\":{\"architecture\":\"arm64\","
        "\"os\":\"linux\",\"variant\":\"v8\"}}]}";

    static const char  with_subject[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" DOCK_M "\","
        "\"config\":" DESC(DOCK_CFG, D1, 1) ",\"layers\":[],"
        "\"subject\":" DESC(OCI_M, D3, 1) "}";

    rc = parse(DOCK_M, image, strlen(image), &m, &err);
    is_int(rc, QUAY_OK, "Docker schema2 manifest parses (pretty-printed)");
    if (rc == QUAY_OK) {
        is_int(m->kind, QUAY_MANIFEST_IMAGE, "  ... kind image");
        is_str(m->media_type, DOCK_M, "  ... media type");
        is_str(m->config.media_type, DOCK_CFG, "  ... config media type");
        is_int(m->nlayers, 2, "  ... two layers");
        is_int(m->layers[0].foreign, 0, "  ... first layer is pushed");
        is_int(m->layers[1].foreign, 1,
               "  ... foreign layer with urls is not required");
        is_int(m->layers_size, 982, "  ... layers size");
    } else {
        printf("# %s\n", err.msg);
    }
    quay_manifest_free(m);

    rc = parse(NULL, image, strlen(image), &m, &err);
    is_int(rc, QUAY_OK, "Docker schema2 without Content-Type");
    is_int(m ? (int) m->type : -1, QUAY_MEDIA_DOCKER_MANIFEST,
           "  ... typed by its mediaType");
    quay_manifest_free(m);

    rc = parse(DOCK_L, list, strlen(list), &m, &err);
    is_int(rc, QUAY_OK, "Docker manifest list parses");
    if (rc == QUAY_OK) {
        is_int(m->kind, QUAY_MANIFEST_INDEX, "  ... kind index");
        is_int(m->nmanifests, 1, "  ... one child");
    }
    quay_manifest_free(m);

    rc = parse(DOCK_M, with_subject, strlen(with_subject), &m, &err);
    is_int(rc, QUAY_OK, "Docker manifest with a stray subject parses");
    is_int(m ? m->has_subject : -1, 0,
           "  ... but is not a referrer (subject is an OCI field)");
    quay_manifest_free(m);
}


static void
test_generic_inference(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    static const char  image[] =
        "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
        "\"layers\":[]}";
    static const char  index[] =
        "{\"schemaVersion\":2,\"manifests\":[]}";
    static const char  neither[] = "{\"schemaVersion\":2}";
    static const char  docker_no_mt[] =
        "{\"schemaVersion\":2,\"config\":" DESC(DOCK_CFG, D1, 2) ","
        "\"layers\":[]}";

    rc = parse(NULL, image, strlen(image), &m, &err);
    is_int(rc, QUAY_OK, "no mediaType, no Content-Type, config: OCI image");
    is_int(m ? (int) m->type : -1, QUAY_MEDIA_OCI_MANIFEST, "  ... OCI");
    quay_manifest_free(m);

    rc = parse(OCI_M, image, strlen(image), &m, &err);
    is_int(rc, QUAY_OK, "OCI Content-Type, body without mediaType");
    quay_manifest_free(m);

    rc = parse("application/json", index, strlen(index), &m, &err);
    is_int(rc, QUAY_OK, "no mediaType, manifests: OCI index");
    is_int(m ? (int) m->type : -1, QUAY_MEDIA_OCI_INDEX, "  ... OCI index");
    quay_manifest_free(m);

    rc = parse(NULL, neither, strlen(neither), &m, &err);
    is_int(rc, QUAY_EINVAL, "no mediaType, no config, no manifests");
    ok(m == NULL, "  ... no result on error");

    rc = parse(DOCK_M, docker_no_mt, strlen(docker_no_mt), &m, &err);
    is_int(rc, QUAY_EINVAL, "Docker Content-Type, body without mediaType");
}


static void
test_refused(void)
{
    static const manifest_case_t  cases[] = {

        /* schema 1 (B1.13) */
        { "schema1 Content-Type",
          "application/vnd.docker.distribution.manifest.v1+json",
          "{\"schemaVersion\":1,\"name\":\"a/b\",\"tag\":\"t\","
          "\"fsLayers\":[],\"history\":[]}", QUAY_MANIFEST_ESCHEMA1 },
        { "signed schema1 Content-Type",
          "application/vnd.docker.distribution.manifest.v1+prettyjws",
          "{}", QUAY_MANIFEST_ESCHEMA1 },
        { "schemaVersion 1 without Content-Type", NULL,
          "{\"schemaVersion\":1,\"name\":\"a/b\",\"tag\":\"t\","
          "\"fsLayers\":[],\"history\":[],\"signatures\":[]}",
          QUAY_MANIFEST_ESCHEMA1 },
        { "schemaVersion 1 with an OCI Content-Type", OCI_M,
          "{\"schemaVersion\":1}", QUAY_MANIFEST_ESCHEMA1 },
        { "schema1 mediaType in the body", NULL,
          "{\"schemaVersion\":2,\"mediaType\":"
          "\"application/vnd.docker.distribution.manifest.v1+json\"}",
          QUAY_MANIFEST_ESCHEMA1 },

        /* unsupported media types (415) */
        { "unknown Content-Type", "application/xml", OCI_IMAGE_BODY,
          QUAY_MANIFEST_EUNSUPPORTED },
        { "OCI artifact manifest Content-Type (dropped from 1.1)",
          "application/vnd.oci.artifact.manifest.v1+json", "{}",
          QUAY_MANIFEST_EUNSUPPORTED },
        { "unknown mediaType with a generic Content-Type", NULL,
          "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.x+json\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_MANIFEST_EUNSUPPORTED },

        /* media type confusion (B1.14) */
        { "mediaType index, Content-Type manifest", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_I "\","
          "\"manifests\":[]}", QUAY_EINVAL },
        { "mediaType Docker, Content-Type OCI", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" DOCK_M "\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "unknown mediaType, OCI Content-Type", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.x+json\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "mediaType differs only in case", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":"
          "\"application/vnd.oci.image.MANIFEST.v1+json\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "mediaType not a string", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":7,"
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "ambiguous: manifests and layers", OCI_I,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_I "\","
          "\"manifests\":[],\"layers\":[]}", QUAY_EINVAL },
        { "ambiguous: manifests and config, image type", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[],"
          "\"manifests\":[]}", QUAY_EINVAL },
        { "ambiguous: no type at all", NULL,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"manifests\":[]}", QUAY_EINVAL },
        { "image Content-Type with only manifests", OCI_M,
          "{\"schemaVersion\":2,\"manifests\":[]}", QUAY_EINVAL },
        { "index Content-Type with only layers", OCI_I,
          "{\"schemaVersion\":2,\"layers\":[]}", QUAY_EINVAL },

        /* malformed JSON (B1.13) */
        { "empty body", OCI_M, "", QUAY_EINVAL },
        { "truncated JSON", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\",\"config\":",
          QUAY_EINVAL },
        { "UTF-8 byte order mark", OCI_M, "\xef\xbb\xbf" OCI_IMAGE_BODY,
          QUAY_EINVAL },
        { "invalid UTF-8 in a string", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[],"
          "\"annotations\":{\"a\":\"\xc3\x28\"}}", QUAY_EINVAL },
        { "overlong UTF-8", OCI_M,
          "{\"schemaVersion\":2,\"x\":\"\xc0\xaf\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "NUL escape", OCI_M,
          "{\"schemaVersion\":2,\"x\":\"a\\u0000b\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "trailing garbage", OCI_M, OCI_IMAGE_BODY "x", QUAY_EINVAL },
        { "two documents", OCI_M, OCI_IMAGE_BODY OCI_IMAGE_BODY,
          QUAY_EINVAL },
        { "root is an array", OCI_M, "[" OCI_IMAGE_BODY "]", QUAY_EINVAL },
        { "root is a string", OCI_M, "\"x\"", QUAY_EINVAL },
        { "duplicate layers key", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[" DESC(OCI_TGZ, D2, 1) "],"
          "\"layers\":[" DESC(OCI_TGZ, D3, 1) "]}", QUAY_EINVAL },
        { "duplicate key inside a descriptor", OCI_M,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
          "\"config\":{\"mediaType\":\"" OCI_CFG "\",\"digest\":\"" D1
          "\",\"digest\":\"" D2 "\",\"size\":2},\"layers\":[]}",
          QUAY_EINVAL },
        { "duplicate key deep in an unknown field", OCI_M,
          "{\"schemaVersion\":2,\"x\":{\"y\":{\"z\":1,\"z\":2}},"
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "duplicate mediaType", NULL,
          "{\"schemaVersion\":2,\"mediaType\":\"" OCI_I "\","
          "\"mediaType\":\"" OCI_M "\",\"manifests\":[]}", QUAY_EINVAL },

        /* schemaVersion */
        { "schemaVersion missing", OCI_M,
          "{\"mediaType\":\"" OCI_M "\",\"config\":" DESC(OCI_CFG, D1, 2)
          ",\"layers\":[]}", QUAY_EINVAL },
        { "schemaVersion 3", OCI_M,
          "{\"schemaVersion\":3,\"config\":" DESC(OCI_CFG, D1, 2)
          ",\"layers\":[]}", QUAY_EINVAL },
        { "schemaVersion \"2\"", OCI_M,
          "{\"schemaVersion\":\"2\",\"config\":" DESC(OCI_CFG, D1, 2)
          ",\"layers\":[]}", QUAY_EINVAL },
        { "schemaVersion 2.0", OCI_M,
          "{\"schemaVersion\":2.0,\"config\":" DESC(OCI_CFG, D1, 2)
          ",\"layers\":[]}", QUAY_EINVAL },

        /* required fields */
        { "image without config", OCI_M,
          "{\"schemaVersion\":2,\"layers\":[]}", QUAY_EINVAL },
        { "image without layers", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) "}",
          QUAY_EINVAL },
        { "layers is an object", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":{}}", QUAY_EINVAL },
        { "index without manifests", OCI_I, "{\"schemaVersion\":2}",
          QUAY_EINVAL },
        { "manifests is a string", OCI_I,
          "{\"schemaVersion\":2,\"manifests\":\"x\"}", QUAY_EINVAL },
        { "platform is a string", OCI_I,
          "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" OCI_M
          "\",\"digest\":\"" D1 "\",\"size\":1,\"platform\":\"linux\"}]}",
          QUAY_EINVAL },

        /* descriptors */
        { "config is a string", OCI_M,
          "{\"schemaVersion\":2,\"config\":\"x\",\"layers\":[]}",
          QUAY_EINVAL },
        { "layer is null", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[null]}", QUAY_EINVAL },
        { "size -1", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[" DESC(OCI_TGZ, D2, -1) "]}", QUAY_EINVAL },
        { "size is a string", OCI_M,
          "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CFG
          "\",\"digest\":\"" D1 "\",\"size\":\"2\"},\"layers\":[]}",
          QUAY_EINVAL },
        { "size is a real", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2.5) ","
          "\"layers\":[]}", QUAY_EINVAL },
        { "size in exponent form", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 1e3) ","
          "\"layers\":[]}", QUAY_EINVAL },
        { "size beyond 64 bits", OCI_M,
          "{\"schemaVersion\":2,\"config\":"
          DESC(OCI_CFG, D1, 99999999999999999999) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "size missing", OCI_M,
          "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CFG
          "\",\"digest\":\"" D1 "\"},\"layers\":[]}", QUAY_EINVAL },
        { "layer sizes overflow when added", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[" DESC(OCI_TGZ, D2, 9223372036854775807) ","
          DESC(OCI_TGZ, D3, 1) "]}", QUAY_EINVAL },
        { "digest sha256:baddigeststring", OCI_M,
          "{\"schemaVersion\":2,\"config\":"
          DESC(OCI_CFG, "sha256:baddigeststring", 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "digest with uppercase hex", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, "sha256:"
          "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
          2) ",\"layers\":[]}", QUAY_EINVAL },
        { "digest md5", OCI_M,
          "{\"schemaVersion\":2,\"config\":"
          DESC(OCI_CFG, "md5:d41d8cd98f00b204e9800998ecf8427e", 2)
          ",\"layers\":[]}", QUAY_EINVAL },
        { "digest with a newline escape", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1 "\\n", 2)
          ",\"layers\":[]}", QUAY_EINVAL },
        { "digest missing", OCI_M,
          "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CFG
          "\",\"size\":2},\"layers\":[]}", QUAY_EINVAL },
        { "subject with a bad digest", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[],\"subject\":" DESC(OCI_M, "sha256:abc", 2) "}",
          QUAY_EINVAL },
        { "child with a bad digest", OCI_I,
          "{\"schemaVersion\":2,\"manifests\":["
          DESC(OCI_M, "sha256:../../x", 2) "]}", QUAY_EINVAL },
        { "descriptor mediaType missing", OCI_M,
          "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\","
          "\"size\":2},\"layers\":[]}", QUAY_EINVAL },
        { "descriptor mediaType with a quote", OCI_M,
          "{\"schemaVersion\":2,\"config\":"
          DESC("application/x\\\"y", D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "artifactType is not a media type", OCI_M,
          "{\"schemaVersion\":2,\"artifactType\":\"not a type\","
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "artifactType is a number", OCI_M,
          "{\"schemaVersion\":2,\"artifactType\":1,"
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "annotations with a number", OCI_M,
          "{\"schemaVersion\":2,\"annotations\":{\"a\":1},"
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "annotations is an array", OCI_M,
          "{\"schemaVersion\":2,\"annotations\":[],"
          "\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}",
          QUAY_EINVAL },
        { "urls is a string", OCI_M,
          "{\"schemaVersion\":2,\"config\":" DESC(OCI_CFG, D1, 2) ","
          "\"layers\":[{\"mediaType\":\"" OCI_TGZ "\",\"digest\":\"" D2
          "\",\"size\":1,\"urls\":\"http://x\"}]}", QUAY_EINVAL },
        { "data is a number", OCI_M,
          "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CFG
          "\",\"digest\":\"" D1 "\",\"size\":2,\"data\":1},"
          "\"layers\":[]}", QUAY_EINVAL },
    };
    int               rc;
    size_t            i;
    quay_err_t        err;
    quay_manifest_t  *m;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        m = (quay_manifest_t *) 1;
        err.msg[0] = '\0';

        rc = parse(cases[i].ct, cases[i].body, strlen(cases[i].body), &m,
                   &err);
        is_int(rc, cases[i].rc, cases[i].name);
        ok(m == NULL, "  ... no result");

        if (rc != QUAY_OK) {
            ok(err.msg[0] != '\0' && strchr(err.msg, '"') == NULL
               && strchr(err.msg, '\\') == NULL,
               "  ... with a message that needs no JSON escaping");
        } else {
            quay_manifest_free(m);
        }
    }
}


static void
test_sha512_and_unknown_fields(void)
{
    int               rc;
    quay_err_t        err;
    quay_manifest_t  *m;

    static const char  body[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_M "\","
        "\"x-vendor\":{\"a\":[1,2,{\"b\":null}]},"
        "\"config\":" DESC(OCI_CFG, D512, 2) ","
        "\"layers\":[{\"mediaType\":\"" OCI_TGZ "\",\"digest\":\"" D2 "\","
        "\"size\":0,\"urls\":[],\"data\":\"e30=\",\"x\":true}]}";

    rc = parse(OCI_M, body, strlen(body), &m, &err);
    is_int(rc, QUAY_OK, "sha512 config, unknown fields ignored");
    if (rc == QUAY_OK) {
        is_int(m->config.digest.algo, QUAY_DIGEST_SHA512, "  ... sha512");
        is_int(m->layers[0].size, 0, "  ... size 0 is fine");
        is_int(m->layers[0].foreign, 0,
               "  ... empty urls do not make a layer foreign");
    }
    quay_manifest_free(m);
}


/* the end of a string holding an escaped quote, then the manifest */
#define STRING_TAIL                                                         \
    "\\\"[\",\"config\":" DESC(OCI_CFG, D1, 2) ",\"layers\":[]}"


static void
test_limits(void)
{
    int               rc;
    char             *big;
    size_t            i, n, len;
    quay_err_t        err;
    quay_manifest_t  *m;

    /* 64 levels are fine; 65 are not; 100,000 are refused cheaply */

    for (n = 60; n <= 66; n += 6) {
        len = strlen(OCI_IMAGE_BODY) + 2 * n + 16;
        big = malloc(len);
        if (big == NULL) {
            ok(0, "malloc");
            return;
        }

        /* {"schemaVersion":2, ..., "x":[[[...]]]} */
        memcpy(big, OCI_IMAGE_BODY, strlen(OCI_IMAGE_BODY) - 1);
        len = strlen(OCI_IMAGE_BODY) - 1;
        memcpy(big + len, ",\"x\":", 5);
        len += 5;

        for (i = 0; i < n - 1; i++) {
            big[len++] = '[';
        }

        for (i = 0; i < n - 1; i++) {
            big[len++] = ']';
        }

        big[len++] = '}';

        rc = parse(OCI_M, big, len, &m, &err);
        if (n == 60) {
            is_int(rc, QUAY_OK, "nesting 60 levels deep is fine");
        } else {
            is_int(rc, QUAY_EINVAL, "nesting 66 levels deep is refused");
        }

        quay_manifest_free(m);
        free(big);
    }

    len = 100000;
    big = malloc(2 * len);
    if (big == NULL) {
        ok(0, "malloc");
        return;
    }

    memset(big, '[', len);
    memset(big + len, ']', len);
    rc = parse(OCI_M, big, 2 * len, &m, &err);
    is_int(rc, QUAY_EINVAL, "100,000 levels deep is refused");

    /* brackets in strings do not count */
    memset(big, 'x', 2 * len);
    memcpy(big, "{\"schemaVersion\":2,\"x\":\"", 24);
    for (i = 24; i < 24 + 200; i++) {
        big[i] = '[';
    }
    memcpy(big + i, STRING_TAIL, strlen(STRING_TAIL));
    len = i + strlen(STRING_TAIL);
    rc = parse(OCI_M, big, len, &m, &err);
    is_int(rc, QUAY_OK, "brackets inside strings are not nesting");
    quay_manifest_free(m);
    free(big);

    /* size: one byte over 4 MiB is QUAY_ERANGE before anything else */

    big = malloc(QUAY_MANIFEST_MAX_SIZE + 1);
    if (big == NULL) {
        ok(0, "malloc");
        return;
    }

    memset(big, ' ', QUAY_MANIFEST_MAX_SIZE + 1);
    memcpy(big, OCI_IMAGE_BODY, strlen(OCI_IMAGE_BODY));

    rc = parse(OCI_M, big, QUAY_MANIFEST_MAX_SIZE, &m, &err);
    is_int(rc, QUAY_OK, "a 4 MiB manifest (padded with blanks) parses");
    quay_manifest_free(m);

    rc = parse(OCI_M, big, QUAY_MANIFEST_MAX_SIZE + 1, &m, &err);
    is_int(rc, QUAY_ERANGE, "4 MiB + 1 byte is QUAY_ERANGE");
    ok(m == NULL, "  ... no result");

    rc = parse("application/vnd.docker.distribution.manifest.v1+json", big,
               QUAY_MANIFEST_MAX_SIZE + 1, &m, &err);
    is_int(rc, QUAY_ERANGE, "size is checked before the media type");

    free(big);

    rc = quay_manifest_parse(NULL, 0, NULL, 0, &m, &err);
    is_int(rc, QUAY_EINVAL, "NULL body is refused");

    quay_manifest_free(NULL);
    ok(1, "quay_manifest_free(NULL) is a no-op");
}


int
main(void)
{
    test_content_type();
    test_media_type_grammar();
    test_oci_image();
    test_oci_artifact_with_subject();
    test_oci_index();
    test_docker();
    test_generic_inference();
    test_refused();
    test_sha512_and_unknown_fields();
    test_limits();

    return done_testing();
}
