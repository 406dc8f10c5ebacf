/*
 * Unit tests for lib/quay_reference.c, table-driven: repository names and
 * tags from the distribution grammar and security catalogue B1.1-B1.3,
 * digests in routes (B1.4), upload uuids (B1.10), and /v2/ path routing
 * with names that contain the route words themselves.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "quay_reference.h"


#define HEX64                                                               \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define UUID "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


typedef struct {
    const char  *text;
    size_t       len;          /* 0: strlen(text) */
    int          valid;
} grammar_case_t;


typedef struct {
    const char       *path;
    size_t            len;     /* 0: strlen(path) */
    int               rc;
    quay_v2_kind_e    kind;
    quay_v2_error_e   error;
    const char       *name;    /* expected name, NULL: not checked */
    const char       *ref;     /* expected reference, NULL: not checked */
    int               is_digest;
} path_case_t;


static const char  *kind_names[] = {
    "UNKNOWN", "BASE", "CATALOG", "TAGS_LIST", "MANIFEST", "BLOB",
    "UPLOAD_START", "UPLOAD", "REFERRERS"
};

static const char  *error_names[] = {
    "OK", "ROUTE_UNKNOWN", "NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID",
    "UPLOAD_UNKNOWN"
};


static void
show(char *out, size_t outlen, const char *p, size_t len)
{
    size_t  i, n;

    n = 0;
    for (i = 0; i < len && n + 5 < outlen; i++) {
        if ((unsigned char) p[i] < 0x20 || (unsigned char) p[i] >= 0x7f) {
            n += (size_t) snprintf(out + n, outlen - n, "\\x%02x",
                                   (unsigned char) p[i]);
        } else {
            out[n++] = p[i];
        }
    }
    if (i < len) {
        n += (size_t) snprintf(out + n, outlen - n, "...(%zu bytes)", len);
    }
    out[n < outlen ? n : outlen - 1] = '\0';
}


static void
test_names(void)
{
    static const grammar_case_t  cases[] = {
        /* valid */
        { "a", 0, 1 },
        { "library/ubuntu", 0, 1 },
        { "foo/bar", 0, 1 },
        { "a/b/c/d", 0, 1 },
        { "my.org/my_repo", 0, 1 },
        { "a.b", 0, 1 },
        { "a_b", 0, 1 },
        { "a__b", 0, 1 },
        { "a-b", 0, 1 },
        { "a---b", 0, 1 },
        { "a-b.c_d__e/f0-9", 0, 1 },
        { "0", 0, 1 },
        { "123/456", 0, 1 },
        { "manifests/blobs", 0, 1 },
        /* B1.1 */
        { "Foo/bar", 0, 0 },
        { "foo/Bar", 0, 0 },
        { "a..b", 0, 0 },
        { "a/", 0, 0 },
        { "/a", 0, 0 },
        { "-a", 0, 0 },
        { "a-", 0, 0 },
        { "a___b", 0, 0 },
        { "a//b", 0, 0 },
        { "a/-/b", 0, 0 },
        { "a._b", 0, 0 },
        { "a_.b", 0, 0 },
        { "a.-b", 0, 0 },
        { "a-.b", 0, 0 },
        { "_a", 0, 0 },
        { ".a", 0, 0 },
        { "a.", 0, 0 },
        { "", 0, 0 },
        { "/", 0, 0 },
        /* B1.2 */
        { "..", 0, 0 },
        { ".", 0, 0 },
        { "a/../b", 0, 0 },
        { "a/./b", 0, 0 },
        { "a/..", 0, 0 },
        { "../etc", 0, 0 },
        { "a/%2e%2e/b", 0, 0 },
        { "a%2Fb", 0, 0 },
        { "a\\b", 0, 0 },
        { "a%5Cb", 0, 0 },
        { "a\0b", 3, 0 },
        { "a\0", 2, 0 },
        { "a%00", 0, 0 },
        { "a b", 0, 0 },
        { "a:b", 0, 0 },
        { "a@b", 0, 0 },
        { "caf\xc3\xa9", 0, 0 },
        { "a\n", 0, 0 },
    };

    int          rc;
    char         name[300], shown[120];
    size_t       i, len;
    quay_err_t   err;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        err.msg[0] = '\0';
        rc = quay_repo_name_valid((const unsigned char *) cases[i].text, len,
                                  &err);
        show(shown, sizeof(shown), cases[i].text, len);
        snprintf(name, sizeof(name), "name \"%s\" is %s", shown,
                 cases[i].valid ? "valid" : "invalid");
        is_int(rc, cases[i].valid ? QUAY_OK : QUAY_EINVAL, name);
        if (!cases[i].valid && rc == QUAY_EINVAL) {
            ok(err.msg[0] != '\0', "  ... with a reason");
        }
    }
}


static void
test_name_lengths(void)
{
    char  *buf;
    size_t i;

    buf = malloc(10000);
    if (buf == NULL) {
        ok(0, "malloc");
        return;
    }
    memset(buf, 'a', 10000);

    is_int(quay_repo_name_valid((unsigned char *) buf, 255, NULL), QUAY_OK,
           "255-byte name is valid");
    is_int(quay_repo_name_valid((unsigned char *) buf, 256, NULL),
           QUAY_EINVAL, "256-byte name is invalid");
    is_int(quay_repo_name_valid((unsigned char *) buf, 10000, NULL),
           QUAY_EINVAL, "10000-byte name is invalid");

    /* 127 components "a/" ... "a": 253 bytes, valid */
    for (i = 1; i < 254; i += 2) {
        buf[i] = '/';
    }
    is_int(quay_repo_name_valid((unsigned char *) buf, 253, NULL), QUAY_OK,
           "127 one-letter components are valid");
    is_int(quay_repo_name_valid((unsigned char *) buf, 254, NULL),
           QUAY_EINVAL, "... with a trailing slash are not");

    free(buf);
}


static void
test_tags(void)
{
    static const grammar_case_t  cases[] = {
        { "latest", 0, 1 },
        { "v1", 0, 1 },
        { "V1.2.3-rc1_x", 0, 1 },
        { "_", 0, 1 },
        { "_x", 0, 1 },
        { "0", 0, 1 },
        { "a.b-c_d", 0, 1 },
        { "A", 0, 1 },
        { "", 0, 0 },
        { ".hidden", 0, 0 },
        { "-x", 0, 0 },
        { "a:b", 0, 0 },
        { "a/b", 0, 0 },
        { "a+b", 0, 0 },
        { "a%20b", 0, 0 },
        { "a b", 0, 0 },
        { "caf\xc3\xa9", 0, 0 },
        { "a\0b", 3, 0 },
        { "a\n", 0, 0 },
        { "..", 0, 0 },
        { "sha256:" HEX64, 0, 0 },
    };

    int          rc;
    char         name[300], shown[120], buf[200];
    size_t       i, len;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        rc = quay_tag_valid((const unsigned char *) cases[i].text, len, NULL);
        show(shown, sizeof(shown), cases[i].text, len);
        snprintf(name, sizeof(name), "tag \"%s\" is %s", shown,
                 cases[i].valid ? "valid" : "invalid");
        is_int(rc, cases[i].valid ? QUAY_OK : QUAY_EINVAL, name);
    }

    memset(buf, 'x', sizeof(buf));
    is_int(quay_tag_valid((unsigned char *) buf, 128, NULL), QUAY_OK,
           "128-byte tag is valid");
    is_int(quay_tag_valid((unsigned char *) buf, 129, NULL), QUAY_EINVAL,
           "129-byte tag is invalid");
}


static void
test_uuids(void)
{
    static const grammar_case_t  cases[] = {
        { UUID, 0, 1 },
        { "00000000-0000-0000-0000-000000000000", 0, 1 },
        { "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", 0, 0 },
        { "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 0, 0 },
        { "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f", 0, 0 },
        { "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f00", 0, 0 },
        { "0f1e2d3c-4b5a-6978-8796_a5b4c3d2e1f0", 0, 0 },
        { "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg", 0, 0 },
        { "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}", 0, 0 },
        { "../../x", 0, 0 },
        { "", 0, 0 },
    };

    size_t  i, len;
    char    name[200];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        snprintf(name, sizeof(name), "uuid \"%s\" is %s", cases[i].text,
                 cases[i].valid ? "valid" : "invalid");
        is_int(quay_uuid_valid((const unsigned char *) cases[i].text, len,
                               NULL),
               cases[i].valid ? QUAY_OK : QUAY_EINVAL, name);
    }
}


static void
test_split(void)
{
    size_t  ns;

    ns = 99;
    is_int(quay_repo_name_split((unsigned char *) "acme/app", 8, &ns),
           QUAY_OK, "split acme/app");
    is_int(ns, 4, "  ... namespace is acme");

    ns = 99;
    is_int(quay_repo_name_split((unsigned char *) "acme/team/app", 13, &ns),
           QUAY_OK, "split acme/team/app");
    is_int(ns, 4, "  ... namespace is acme, repository team/app");

    is_int(quay_repo_name_split((unsigned char *) "ubuntu", 6, &ns),
           QUAY_EINVAL, "single component is refused (library namespace "
           "is the caller's decision)");
    is_int(quay_repo_name_split((unsigned char *) "Acme/app", 8, &ns),
           QUAY_EINVAL, "invalid name is refused");
    is_int(quay_repo_name_split((unsigned char *) "/app", 4, &ns),
           QUAY_EINVAL, "empty namespace is refused");
}


static void
test_paths(void)
{
    static const path_case_t  cases[] = {
        /* base and catalog */
        { "", 0, QUAY_OK, QUAY_V2_BASE, QUAY_V2_OK, NULL, NULL, 0 },
        { "_catalog", 0, QUAY_OK, QUAY_V2_CATALOG, QUAY_V2_OK, NULL, NULL,
          0 },
        { "_catalog/", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "_catalogx", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "/", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN, QUAY_V2_ROUTE_UNKNOWN,
          NULL, NULL, 0 },
        { "foo", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN, QUAY_V2_ROUTE_UNKNOWN,
          NULL, NULL, 0 },
        { "a/b", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN, QUAY_V2_ROUTE_UNKNOWN,
          NULL, NULL, 0 },
        { "auth", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN, QUAY_V2_ROUTE_UNKNOWN,
          NULL, NULL, 0 },

        /* tags list */
        { "a/b/tags/list", 0, QUAY_OK, QUAY_V2_TAGS_LIST, QUAY_V2_OK,
          "a/b", NULL, 0 },
        { "a/tags/list", 0, QUAY_OK, QUAY_V2_TAGS_LIST, QUAY_V2_OK,
          "a", NULL, 0 },
        { "tags/tags/list", 0, QUAY_OK, QUAY_V2_TAGS_LIST, QUAY_V2_OK,
          "tags", NULL, 0 },
        { "tags/list", 0, QUAY_EINVAL, QUAY_V2_TAGS_LIST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "a/tags/list/", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "a/tags/lists", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "A/tags/list", 0, QUAY_EINVAL, QUAY_V2_TAGS_LIST,
          QUAY_V2_NAME_INVALID, "A", NULL, 0 },

        /* manifests */
        { "a/b/c/manifests/v1", 0, QUAY_OK, QUAY_V2_MANIFEST, QUAY_V2_OK,
          "a/b/c", "v1", 0 },
        { "a/manifests/manifests/x", 0, QUAY_OK, QUAY_V2_MANIFEST,
          QUAY_V2_OK, "a/manifests", "x", 0 },
        { "a/blobs/manifests/latest", 0, QUAY_OK, QUAY_V2_MANIFEST,
          QUAY_V2_OK, "a/blobs", "latest", 0 },
        { "library/ubuntu/manifests/sha256:" HEX64, 0, QUAY_OK,
          QUAY_V2_MANIFEST, QUAY_V2_OK, "library/ubuntu",
          "sha256:" HEX64, 1 },
        { "a/manifests/", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_TAG_INVALID, "a", "", 0 },
        { "a/manifests/.x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_TAG_INVALID, "a", ".x", 0 },
        { "a/manifests/%20", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_TAG_INVALID, "a", "%20", 0 },
        { "a/manifests/sha256:baddigeststring", 0, QUAY_EINVAL,
          QUAY_V2_MANIFEST, QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },
        { "a/manifests/SHA256:" HEX64, 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },
        { "a/manifests/b/c", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, "", NULL, 0 },
        { "a/../../etc/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, "a/../../etc", NULL, 0 },
        { "a/./b/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "a%2fb/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "a%252e/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "a\0/manifests/x", 14, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "a//b/manifests/x", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "Foo/bar/manifests/latest", 0, QUAY_EINVAL, QUAY_V2_MANIFEST,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },

        /* blobs */
        { "a/b/blobs/sha256:" HEX64, 0, QUAY_OK, QUAY_V2_BLOB, QUAY_V2_OK,
          "a/b", "sha256:" HEX64, 1 },
        { "blobs/blobs/sha256:" HEX64, 0, QUAY_OK, QUAY_V2_BLOB,
          QUAY_V2_OK, "blobs", "sha256:" HEX64, 1 },
        { "a/blobs/latest", 0, QUAY_EINVAL, QUAY_V2_BLOB,
          QUAY_V2_DIGEST_INVALID, "a", "latest", 0 },
        { "a/blobs/sha256:" HEX64 "0", 0, QUAY_EINVAL, QUAY_V2_BLOB,
          QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },
        { "a/blobs/", 0, QUAY_EINVAL, QUAY_V2_BLOB, QUAY_V2_DIGEST_INVALID,
          "a", "", 0 },
        { "a/blobs/sha256:..", 0, QUAY_EINVAL, QUAY_V2_BLOB,
          QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },

        /* uploads */
        { "a/b/blobs/uploads/", 0, QUAY_OK, QUAY_V2_UPLOAD_START,
          QUAY_V2_OK, "a/b", NULL, 0 },
        { "a/b/blobs/uploads", 0, QUAY_OK, QUAY_V2_UPLOAD_START,
          QUAY_V2_OK, "a/b", NULL, 0 },
        { "a/b/blobs/uploads/" UUID, 0, QUAY_OK, QUAY_V2_UPLOAD,
          QUAY_V2_OK, "a/b", UUID, 0 },
        { "uploads/blobs/uploads/" UUID, 0, QUAY_OK, QUAY_V2_UPLOAD,
          QUAY_V2_OK, "uploads", UUID, 0 },
        { "a/blobs/blobs/uploads/", 0, QUAY_OK, QUAY_V2_UPLOAD_START,
          QUAY_V2_OK, "a/blobs", NULL, 0 },
        { "a/blobs/uploads/../../x", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "a/blobs/uploads/x", 0, QUAY_EINVAL, QUAY_V2_UPLOAD,
          QUAY_V2_UPLOAD_UNKNOWN, "a", "x", 0 },
        { "a/blobs/uploads/0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", 0,
          QUAY_EINVAL, QUAY_V2_UPLOAD, QUAY_V2_UPLOAD_UNKNOWN, "a", NULL,
          0 },
        { "a/blobs/uploads/" UUID "/", 0, QUAY_EINVAL, QUAY_V2_UNKNOWN,
          QUAY_V2_ROUTE_UNKNOWN, NULL, NULL, 0 },
        { "a/blobs/uploads/%2e%2e", 0, QUAY_EINVAL, QUAY_V2_UPLOAD,
          QUAY_V2_UPLOAD_UNKNOWN, "a", NULL, 0 },
        { "blobs/uploads/" UUID, 0, QUAY_EINVAL, QUAY_V2_UPLOAD,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "blobs/uploads", 0, QUAY_EINVAL, QUAY_V2_UPLOAD_START,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },
        { "A/blobs/uploads/x", 0, QUAY_EINVAL, QUAY_V2_UPLOAD,
          QUAY_V2_NAME_INVALID, NULL, NULL, 0 },

        /* referrers */
        { "a/b/referrers/sha256:" HEX64, 0, QUAY_OK, QUAY_V2_REFERRERS,
          QUAY_V2_OK, "a/b", "sha256:" HEX64, 1 },
        { "a/referrers/latest", 0, QUAY_EINVAL, QUAY_V2_REFERRERS,
          QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },
        { "a/referrers/", 0, QUAY_EINVAL, QUAY_V2_REFERRERS,
          QUAY_V2_DIGEST_INVALID, "a", NULL, 0 },
    };

    int              rc;
    char             name[400], shown[200];
    size_t           i, len;
    quay_err_t       err;
    quay_v2_path_t   out;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const path_case_t  *c = &cases[i];

        len = c->len ? c->len : strlen(c->path);
        show(shown, sizeof(shown), c->path, len);

        err.msg[0] = '\0';
        rc = quay_v2_path_parse((const unsigned char *) c->path, len, &out,
                                &err);

        snprintf(name, sizeof(name), "/v2/%s: %s %s", shown,
                 kind_names[c->kind], error_names[c->error]);
        if (!ok(rc == c->rc && out.kind == c->kind && out.error == c->error,
                name))
        {
            printf("#   got rc %d kind %d error %d (%s)\n", rc,
                   (int) out.kind, (int) out.error, err.msg);
        }

        if (c->rc != QUAY_OK) {
            ok(err.code == QUAY_EINVAL && err.msg[0] != '\0',
               "  ... err is set");
        }

        if (c->name != NULL) {
            ok(out.name_len == strlen(c->name)
               && memcmp(c->path + out.name_off, c->name, out.name_len) == 0,
               "  ... name");
        }

        if (c->ref != NULL) {
            ok(out.ref_len == strlen(c->ref)
               && memcmp(c->path + out.ref_off, c->ref, out.ref_len) == 0,
               "  ... reference");
        }

        if (c->rc == QUAY_OK && c->ref != NULL) {
            is_int(out.ref_is_digest, c->is_digest, "  ... ref_is_digest");
        }

        if (c->rc == QUAY_OK && c->is_digest) {
            ok(out.digest.algo == QUAY_DIGEST_SHA256
               && strcmp((char *) out.digest.hex, HEX64) == 0,
               "  ... digest parsed");
        }
    }
}


static void
test_path_long_name(void)
{
    char            *buf;
    size_t           len;
    quay_v2_path_t   out;

    buf = malloc(10100);
    if (buf == NULL) {
        ok(0, "malloc");
        return;
    }

    memset(buf, 'a', 10000);
    memcpy(buf + 10000, "/manifests/latest", 17);
    len = 10017;

    is_int(quay_v2_path_parse((unsigned char *) buf, len, &out, NULL),
           QUAY_EINVAL, "10000-byte name in a path is refused");
    is_int(out.error, QUAY_V2_NAME_INVALID, "  ... as NAME_INVALID");

    memmove(buf + 255, buf + 10000, 17);
    is_int(quay_v2_path_parse((unsigned char *) buf, 255 + 17, &out, NULL),
           QUAY_OK, "255-byte name in a path is accepted");
    is_int(out.name_len, 255, "  ... name length 255");

    free(buf);
}


int
main(void)
{
    test_names();
    test_name_lengths();
    test_tags();
    test_uuids();
    test_split();
    test_paths();
    test_path_long_name();

    return done_testing();
}
