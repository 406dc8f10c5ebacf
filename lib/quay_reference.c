/*
 * Repository names, tags, upload uuids and /v2/ routes.
 *
 * The grammars are the distribution spec's, checked by hand-written
 * scanners instead of regular expressions so there is no regex engine in
 * the nginx worker and no backtracking on a 10,000-byte name:
 *
 *   name      component ("/" component)*, at most 255 bytes
 *   component [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
 *   tag       [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
 *
 * Each byte is looked at once.  Everything else is refused, which covers
 * the catalogue's traversal cases (B1.2): "..", ".", "%", "\\", NUL,
 * uppercase and empty components can never be part of a valid name.
 *
 * The router works from the right end of the path because the name may
 * contain '/' but a tag, digest or uuid may not: the last two or three
 * components decide the route, and the name is what is left.  Quay maps
 * the same routes in endpoints/v2/ (reference 2.2); upload uuids must be
 * canonical lowercase so that a tampered id is BLOB_UPLOAD_UNKNOWN (B1.10)
 * before any lookup.
 */

#include <string.h>

#include "quay_reference.h"


#define QUAY_NONE  ((size_t) -1)


static int
quay_ref_is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}


static int
quay_ref_is_tag_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}


int
quay_repo_name_valid(const unsigned char *p, size_t len, quay_err_t *err)
{
    size_t  i;

    if (len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "repository name is empty");
    }

    if (len > QUAY_REPO_NAME_MAX) {
        return quay_err_set(err, QUAY_EINVAL, "repository name is longer "
                            "than %d bytes", QUAY_REPO_NAME_MAX);
    }

    i = 0;

    for ( ;; ) {

        /* a component starts with [a-z0-9] */
        if (i == len || !quay_ref_is_lower_alnum(p[i])) {
            return quay_err_set(err, QUAY_EINVAL, "repository name: "
                                "component must start with [a-z0-9] at "
                                "offset %zu", i);
        }

        for ( ;; ) {
            while (i < len && quay_ref_is_lower_alnum(p[i])) {
                i++;
            }

            if (i == len || p[i] == '/') {
                break;
            }

            /* one separator: ".", "_", "__" or a run of "-" */
            if (p[i] == '.') {
                i++;

            } else if (p[i] == '_') {
                i++;
                if (i < len && p[i] == '_') {
                    i++;
                }

            } else if (p[i] == '-') {
                while (i < len && p[i] == '-') {
                    i++;
                }

            } else {
                return quay_err_set(err, QUAY_EINVAL, "repository name: "
                                    "invalid byte 0x%02x at offset %zu",
                                    (unsigned) p[i], i);
            }

            if (i == len || !quay_ref_is_lower_alnum(p[i])) {
                return quay_err_set(err, QUAY_EINVAL, "repository name: "
                                    "separator must be followed by "
                                    "[a-z0-9] at offset %zu", i);
            }
        }

        if (i == len) {
            return QUAY_OK;
        }

        i++;    /* the '/'; the next component must follow it */
    }
}


int
quay_tag_valid(const unsigned char *p, size_t len, quay_err_t *err)
{
    size_t  i;

    if (len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "tag is empty");
    }

    if (len > QUAY_TAG_MAX) {
        return quay_err_set(err, QUAY_EINVAL, "tag is longer than %d bytes",
                            QUAY_TAG_MAX);
    }

    if (p[0] == '.' || p[0] == '-' || !quay_ref_is_tag_char(p[0])) {
        return quay_err_set(err, QUAY_EINVAL, "tag must start with "
                            "[a-zA-Z0-9_]");
    }

    for (i = 1; i < len; i++) {
        if (!quay_ref_is_tag_char(p[i])) {
            return quay_err_set(err, QUAY_EINVAL, "tag: invalid byte 0x%02x "
                                "at offset %zu", (unsigned) p[i], i);
        }
    }

    return QUAY_OK;
}


int
quay_uuid_valid(const unsigned char *p, size_t len, quay_err_t *err)
{
    size_t  i;

    if (len != QUAY_UUID_LEN) {
        return quay_err_set(err, QUAY_EINVAL, "uuid must be %d bytes",
                            QUAY_UUID_LEN);
    }

    for (i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-') {
                return quay_err_set(err, QUAY_EINVAL, "uuid: expected '-' "
                                    "at offset %zu", i);
            }

        } else if (!((p[i] >= '0' && p[i] <= '9')
                     || (p[i] >= 'a' && p[i] <= 'f')))
        {
            return quay_err_set(err, QUAY_EINVAL, "uuid: not lowercase hex "
                                "at offset %zu", i);
        }
    }

    return QUAY_OK;
}


int
quay_repo_name_split(const unsigned char *p, size_t len, size_t *ns_len)
{
    size_t  i;

    if (quay_repo_name_valid(p, len, NULL) != QUAY_OK) {
        return QUAY_EINVAL;
    }

    for (i = 0; i < len; i++) {
        if (p[i] == '/') {
            *ns_len = i;
            return QUAY_OK;
        }
    }

    /* one component: the caller decides about the library namespace */
    return QUAY_EINVAL;
}


/* The last '/' in p[0..end-1], or QUAY_NONE. */
static size_t
quay_v2_rslash(const unsigned char *p, size_t end)
{
    while (end > 0) {
        end--;
        if (p[end] == '/') {
            return end;
        }
    }

    return QUAY_NONE;
}


/* Whether p[from..to-1] is exactly the word s. */
static int
quay_v2_word(const unsigned char *p, size_t from, size_t to, const char *s)
{
    size_t  n;

    n = strlen(s);

    return to - from == n && memcmp(p + from, s, n) == 0;
}


static int
quay_v2_fail(quay_v2_path_t *out, quay_v2_error_e error, quay_err_t *err,
    const char *what)
{
    out->error = error;

    return quay_err_set(err, QUAY_EINVAL, "%s", what);
}


int
quay_v2_path_parse(const unsigned char *p, size_t len, quay_v2_path_t *out,
    quay_err_t *err)
{
    int             rc;
    size_t          s1, s2, s3, s_from, t_from, name_end;
    quay_err_t      sub;
    quay_v2_kind_e  kind;

    memset(out, 0, sizeof(*out));

    if (len == 0) {
        out->kind = QUAY_V2_BASE;
        return QUAY_OK;
    }

    if (quay_v2_word(p, 0, len, "_catalog")) {
        out->kind = QUAY_V2_CATALOG;
        return QUAY_OK;
    }

    /*
     * path = ... T / S / L: s1, s2, s3 are the slashes before L, S and T.
     * A missing slash means the component starts the path, and the name
     * in front of it is empty (and so invalid).
     */
    s1 = quay_v2_rslash(p, len);
    if (s1 == QUAY_NONE) {
        return quay_v2_fail(out, QUAY_V2_ROUTE_UNKNOWN, err,
                            "unknown /v2/ route");
    }

    s2 = quay_v2_rslash(p, s1);
    s_from = (s2 == QUAY_NONE) ? 0 : s2 + 1;
    s3 = (s2 == QUAY_NONE) ? QUAY_NONE : quay_v2_rslash(p, s2);
    t_from = (s3 == QUAY_NONE) ? 0 : s3 + 1;

    kind = QUAY_V2_UNKNOWN;
    name_end = 0;

    if (quay_v2_word(p, s_from, s1, "tags")
        && quay_v2_word(p, s1 + 1, len, "list"))
    {
        kind = QUAY_V2_TAGS_LIST;
        name_end = s2;

    } else if (s2 != QUAY_NONE
               && quay_v2_word(p, t_from, s2, "blobs")
               && quay_v2_word(p, s_from, s1, "uploads"))
    {
        kind = (s1 + 1 == len) ? QUAY_V2_UPLOAD_START : QUAY_V2_UPLOAD;
        name_end = s3;

    } else if (quay_v2_word(p, s_from, s1, "blobs")
               && quay_v2_word(p, s1 + 1, len, "uploads"))
    {
        kind = QUAY_V2_UPLOAD_START;
        name_end = s2;

    } else if (quay_v2_word(p, s_from, s1, "blobs")) {
        kind = QUAY_V2_BLOB;
        name_end = s2;

    } else if (quay_v2_word(p, s_from, s1, "manifests")) {
        kind = QUAY_V2_MANIFEST;
        name_end = s2;

    } else if (quay_v2_word(p, s_from, s1, "referrers")) {
        kind = QUAY_V2_REFERRERS;
        name_end = s2;
    }

    if (kind == QUAY_V2_UNKNOWN) {
        return quay_v2_fail(out, QUAY_V2_ROUTE_UNKNOWN, err,
                            "unknown /v2/ route");
    }

    out->kind = kind;

    if (name_end == QUAY_NONE) {
        return quay_v2_fail(out, QUAY_V2_NAME_INVALID, err,
                            "repository name is empty");
    }

    out->name_off = 0;
    out->name_len = name_end;

    if (quay_repo_name_valid(p, name_end, &sub) != QUAY_OK) {
        return quay_v2_fail(out, QUAY_V2_NAME_INVALID, err, sub.msg);
    }

    if (kind == QUAY_V2_TAGS_LIST || kind == QUAY_V2_UPLOAD_START) {
        return QUAY_OK;
    }

    out->ref_off = s1 + 1;
    out->ref_len = len - s1 - 1;

    switch (kind) {

    case QUAY_V2_UPLOAD:
        if (quay_uuid_valid(p + out->ref_off, out->ref_len, &sub)
            != QUAY_OK)
        {
            return quay_v2_fail(out, QUAY_V2_UPLOAD_UNKNOWN, err, sub.msg);
        }
        return QUAY_OK;

    case QUAY_V2_MANIFEST:
        if (memchr(p + out->ref_off, ':', out->ref_len) == NULL) {
            if (quay_tag_valid(p + out->ref_off, out->ref_len, &sub)
                != QUAY_OK)
            {
                return quay_v2_fail(out, QUAY_V2_TAG_INVALID, err, sub.msg);
            }
            return QUAY_OK;
        }
        break;

    default:    /* QUAY_V2_BLOB, QUAY_V2_REFERRERS */
        break;
    }

    rc = quay_digest_parse(p + out->ref_off, out->ref_len, &out->digest,
                           &sub);
    if (rc != QUAY_OK) {
        return quay_v2_fail(out, QUAY_V2_DIGEST_INVALID, err, sub.msg);
    }

    out->ref_is_digest = 1;

    return QUAY_OK;
}
