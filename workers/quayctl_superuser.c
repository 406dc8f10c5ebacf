/*
 * quayctl superuser: the SUPER_USERS list of config.yaml, which is where
 * Quay keeps its superusers (there is no database flag).
 *
 *   quayctl superuser list --config FILE
 *   quayctl superuser add NAME --config FILE
 *   quayctl superuser remove NAME --config FILE
 *
 * add and remove edit the file as text, so that every other line, comment
 * and key keeps its place and spelling; a YAML round trip would lose
 * them.  They understand the shapes people write:
 *
 *   SUPER_USERS:            a block list: NAME becomes one more "- NAME"
 *     - admin               line, indented like the others (remove drops
 *     - ops                 the line; an emptied list becomes [])
 *
 *   SUPER_USERS: [admin]    a flow list on one line: NAME is appended
 *                           inside the brackets (remove takes it out)
 *
 *   (no SUPER_USERS key)    the key is appended as a block list
 *
 * Anything else (a multi-line flow list, nested values, a scalar) is
 * refused with the line number: editing it blindly could change meaning.
 * A NAME that YAML would not read as a string (true, null, 123...) is
 * written in double quotes.
 *
 * The edit is safe against a crash and against a bad edit: the original
 * must load with lib/quay_config (quay_config_load) first; the new text
 * goes to a temporary file in the same directory (same mode and, when
 * allowed, owner), is fsync'ed, loaded again with quay_config_load and
 * checked to hold (or no longer hold) NAME, and only then renamed over
 * the original, whose directory is fsync'ed too.  A symbolic link is
 * followed, so the file it points at is the one replaced.  Concurrent
 * quayctl runs take an exclusive flock(2) on the file, and re-open it if
 * a rename replaced it while they waited.
 *
 * Adding a name that is already there, or removing one that is not, is
 * not an error: nothing is written.  nginx reads config.yaml when it
 * starts or reloads, so a change takes effect after "nginx -s reload".
 */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quay_config.h"
#include "quay_err.h"
#include "quayctl.h"
#include "worker.h"


#define SUPERUSER_KEY           "SUPER_USERS"
#define SUPERUSER_NAME_MIN      2
#define SUPERUSER_NAME_MAX      255
#define SUPERUSER_FILE_MAX      (16 * 1024 * 1024)
#define SUPERUSER_LOCK_TRIES    10


/* One line of the file; p points into the file's text. */
typedef struct {
    const char  *p;
    size_t       len;               /* without the line ending */
    size_t       full;              /* with it */
} superuser_line_t;

/* One entry of the list: its text as written and its value. */
typedef struct {
    const char  *text;              /* borrowed from the file's text */
    size_t       len;
    char        *value;             /* owned: unquoted */
    size_t       line;              /* index; block lists only (0 in a
                                     * flow list: never compare it) */
} superuser_item_t;

typedef enum {
    SUPERUSER_ABSENT = 0,
    SUPERUSER_BLOCK,                /* "SUPER_USERS:" then "- x" lines */
    SUPERUSER_FLOW,                 /* "SUPER_USERS: [x, y]" */
    SUPERUSER_NULL                  /* "SUPER_USERS:" with no items */
} superuser_shape_e;

typedef struct {
    char               *text;       /* owned: the whole file */
    size_t              size;
    superuser_line_t   *lines;      /* owned */
    size_t              nlines;
    const char         *eol;        /* "\n" or "\r\n", as the file has */

    superuser_shape_e   shape;
    size_t              key;        /* line index of the key */
    size_t              colon;      /* offset of ':' in the key line */
    size_t              value_start;
    size_t              value_end;  /* the value, without the comment */
    superuser_item_t   *items;      /* owned */
    size_t              nitems;
    size_t              indent;     /* of the block items */
} superuser_file_t;

typedef struct {
    char  *p;                       /* owned */
    size_t len;
    size_t cap;
} superuser_buf_t;


static void
superuser_usage(FILE *out)
{
    fprintf(out,
        "usage: quayctl superuser list --config FILE\n"
        "       quayctl superuser add NAME --config FILE\n"
        "       quayctl superuser remove NAME --config FILE\n"
        "Edits SUPER_USERS in config.yaml; reload nginx (nginx -s reload) "
        "to apply.\n");
}


/* Quay's namespace rule ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, 2..255. */
static bool
superuser_valid_name(const char *name)
{
    size_t  len = strlen(name);
    bool    after_separator = true;

    if (len < SUPERUSER_NAME_MIN || len > SUPERUSER_NAME_MAX) {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        char  c = name[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            after_separator = false;

        } else if ((c == '.' || c == '_' || c == '-') && !after_separator) {
            after_separator = true;

        } else {
            return false;
        }
    }

    return !after_separator;
}


/*
 * Whether a plain YAML scalar NAME could read as something other than a
 * string: a number (it starts with a digit) or one of YAML 1.1's
 * booleans and nulls.  Valid names need no escaping inside "...".
 */
static bool
superuser_needs_quotes(const char *name)
{
    static const char  *words[] = {
        "yes", "no", "on", "off", "true", "false", "null"
    };

    if (name[0] < 'a' || name[0] > 'z') {
        return true;
    }

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(name, words[i]) == 0) {
            return true;
        }
    }

    return false;
}


static void
superuser_buf_add(superuser_buf_t *b, const char *p, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }

    memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
}


static void
superuser_buf_str(superuser_buf_t *b, const char *s)
{
    superuser_buf_add(b, s, strlen(s));
}


/* NAME as a YAML scalar. */
static void
superuser_buf_name(superuser_buf_t *b, const char *name)
{
    bool  quote = superuser_needs_quotes(name);

    if (quote) {
        superuser_buf_str(b, "\"");
    }

    superuser_buf_str(b, name);

    if (quote) {
        superuser_buf_str(b, "\"");
    }
}


static void
superuser_file_free(superuser_file_t *f)
{
    for (size_t i = 0; i < f->nitems; i++) {
        free(f->items[i].value);
    }

    free(f->items);
    free(f->lines);
    free(f->text);
    memset(f, 0, sizeof(*f));
}


static void
superuser_split_lines(superuser_file_t *f)
{
    size_t  cap = 64;

    f->lines = xmalloc(cap * sizeof(superuser_line_t));
    f->nlines = 0;
    f->eol = "\n";

    for (size_t start = 0; start < f->size; ) {
        const char  *nl = memchr(f->text + start, '\n', f->size - start);
        size_t       end = nl ? (size_t) (nl - f->text) + 1 : f->size;
        size_t       len = nl ? end - start - 1 : end - start;

        if (nl != NULL && len > 0 && f->text[start + len - 1] == '\r') {
            len--;
            if (f->nlines == 0) {
                f->eol = "\r\n";
            }
        }

        if (f->nlines == cap) {
            cap *= 2;
            f->lines = xrealloc(f->lines, cap * sizeof(superuser_line_t));
        }

        f->lines[f->nlines].p = f->text + start;
        f->lines[f->nlines].len = len;
        f->lines[f->nlines].full = end - start;
        f->nlines++;

        start = end;
    }
}


/*
 * If line is the SUPER_USERS key (at column 0, plain or quoted), sets
 * *colon to the offset of its ':' and returns true.
 */
static bool
superuser_is_key(const superuser_line_t *l, size_t *colon)
{
    static const char  *forms[] = {
        SUPERUSER_KEY, "\"" SUPERUSER_KEY "\"", "'" SUPERUSER_KEY "'"
    };

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t  n = strlen(forms[i]);

        if (l->len < n || memcmp(l->p, forms[i], n) != 0) {
            continue;
        }

        while (n < l->len && (l->p[n] == ' ' || l->p[n] == '\t')) {
            n++;
        }

        if (n < l->len && l->p[n] == ':'
            && (n + 1 == l->len || l->p[n + 1] == ' '
                || l->p[n + 1] == '\t'))
        {
            *colon = n;
            return true;
        }
    }

    return false;
}


/*
 * The end of the value in p[start, len): where a comment (" #" outside
 * quotes) begins, less trailing blanks.
 */
static size_t
superuser_value_end(const char *p, size_t start, size_t len)
{
    char    quote = 0;
    size_t  end = len;

    for (size_t i = start; i < len; i++) {
        if (quote) {
            if (p[i] == quote) {
                quote = 0;
            }

        } else if (p[i] == '"' || p[i] == '\'') {
            quote = p[i];

        } else if (p[i] == '#'
                   && (i == start || p[i - 1] == ' ' || p[i - 1] == '\t'))
        {
            end = i;
            break;
        }
    }

    while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t')) {
        end--;
    }

    return end;
}


/* Adds the scalar p[0, len) as an item; false if it is not a scalar. */
static bool
superuser_add_item(superuser_file_t *f, const char *p, size_t len,
    size_t line)
{
    superuser_item_t  *it;
    const char        *v = p;
    size_t             vlen = len;

    if (len == 0 || strchr("[]{}-|>&*!%@`,", p[0]) != NULL) {
        return false;
    }

    if (len >= 2 && (p[0] == '"' || p[0] == '\'') && p[len - 1] == p[0]) {
        v = p + 1;
        vlen = len - 2;
    }

    if (memchr(v, '\\', vlen) != NULL || memchr(v, '"', vlen) != NULL
        || memchr(v, '\'', vlen) != NULL)
    {
        return false;
    }

    f->items = xrealloc(f->items, (f->nitems + 1) * sizeof(*f->items));
    it = &f->items[f->nitems++];
    it->text = p;
    it->len = len;
    it->line = line;
    it->value = xmalloc(vlen + 1);
    memcpy(it->value, v, vlen);
    it->value[vlen] = '\0';

    return true;
}


/* The items of a one-line flow list p[start, end) = "[...]". */
static int
superuser_parse_flow(superuser_file_t *f, const char *p, size_t start,
    size_t end)
{
    char    quote = 0;
    size_t  item = start + 1;

    for (size_t i = start + 1; i < end; i++) {
        if (quote) {
            if (p[i] == quote) {
                quote = 0;
            }
            continue;
        }

        if (p[i] == '"' || p[i] == '\'') {
            quote = p[i];
            continue;
        }

        if (p[i] == '[' || p[i] == '{' || (p[i] == ']' && i != end - 1)) {
            return -1;
        }

        if (p[i] == ',' || i == end - 1) {
            size_t  a = item, b = i;

            while (a < b && (p[a] == ' ' || p[a] == '\t')) {
                a++;
            }
            while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t')) {
                b--;
            }

            /* "[]" and a trailing comma leave an empty piece */
            if (b > a && !superuser_add_item(f, p + a, b - a, 0)) {
                return -1;
            }

            item = i + 1;
        }
    }

    return quote ? -1 : 0;
}


/* The "- x" lines after the key; -1 (reported) for what we do not edit. */
static int
superuser_parse_block(superuser_file_t *f, const char *path)
{
    bool  have_indent = false;

    for (size_t i = f->key + 1; i < f->nlines; i++) {
        const superuser_line_t  *l = &f->lines[i];
        size_t                   indent = 0, end;

        while (indent < l->len && l->p[indent] == ' ') {
            indent++;
        }

        if (indent == l->len || l->p[indent] == '#') {
            continue;           /* blank or comment: may sit between items */
        }

        if (l->p[indent] == '-'
            && (indent + 1 == l->len || l->p[indent + 1] == ' '))
        {
            if (!have_indent) {
                f->indent = indent;
                have_indent = true;

            } else if (indent != f->indent) {
                if (indent < f->indent) {
                    break;
                }
                quayctl_fail("%s:%zu: SUPER_USERS: nested list; edit it "
                             "by hand", path, i + 1);
                return -1;
            }

            size_t  start = indent + 1;

            while (start < l->len && l->p[start] == ' ') {
                start++;
            }

            end = superuser_value_end(l->p, start, l->len);

            if (!superuser_add_item(f, l->p + start, end - start, i)) {
                quayctl_fail("%s:%zu: SUPER_USERS: an entry that is not a "
                             "plain name; edit it by hand", path, i + 1);
                return -1;
            }

            continue;
        }

        if (indent > 0 && (!have_indent || indent > f->indent)) {
            quayctl_fail("%s:%zu: SUPER_USERS is not a list of names; edit "
                         "it by hand", path, i + 1);
            return -1;
        }

        break;
    }

    f->shape = have_indent ? SUPERUSER_BLOCK : SUPERUSER_NULL;

    return 0;
}


/* Finds SUPER_USERS and its entries; -1 (reported) if it cannot. */
static int
superuser_parse(superuser_file_t *f, const char *path)
{
    size_t             colon = 0, found = 0;
    superuser_line_t  *l;

    f->shape = SUPERUSER_ABSENT;

    for (size_t i = 0; i < f->nlines; i++) {
        if (superuser_is_key(&f->lines[i], &colon)) {
            if (found++ == 0) {
                f->key = i;
                f->colon = colon;
            }
        }
    }

    if (found == 0) {
        return 0;
    }

    if (found > 1) {
        quayctl_fail("%s: SUPER_USERS is given %zu times", path, found);
        return -1;
    }

    l = &f->lines[f->key];

    f->value_start = f->colon + 1;
    while (f->value_start < l->len
           && (l->p[f->value_start] == ' ' || l->p[f->value_start] == '\t'))
    {
        f->value_start++;
    }

    f->value_end = superuser_value_end(l->p, f->value_start, l->len);

    const char  *v = l->p + f->value_start;
    size_t       vlen = f->value_end - f->value_start;

    if (vlen == 0) {
        return superuser_parse_block(f, path);
    }

    if ((vlen == 4 && memcmp(v, "null", 4) == 0)
        || (vlen == 1 && v[0] == '~'))
    {
        f->shape = SUPERUSER_NULL;
        return 0;
    }

    if (v[0] == '[' && v[vlen - 1] == ']') {
        if (superuser_parse_flow(f, l->p, f->value_start, f->value_end)
            != 0)
        {
            quayctl_fail("%s:%zu: SUPER_USERS: a list entry that is not a "
                         "plain name; edit it by hand", path, f->key + 1);
            return -1;
        }

        f->shape = SUPERUSER_FLOW;
        return 0;
    }

    if (v[0] == '[') {
        quayctl_fail("%s:%zu: SUPER_USERS: a flow list over several lines; "
                     "write it on one line or as a block list", path,
                     f->key + 1);
        return -1;
    }

    quayctl_fail("%s:%zu: SUPER_USERS is not a list", path, f->key + 1);
    return -1;
}


static ssize_t
superuser_find(const superuser_file_t *f, const char *name)
{
    for (size_t i = 0; i < f->nitems; i++) {
        if (strcmp(f->items[i].value, name) == 0) {
            return (ssize_t) i;
        }
    }

    return -1;
}


/* The key line with the value replaced by "[items]" (skip: -1 or one). */
static void
superuser_emit_flow_line(const superuser_file_t *f, superuser_buf_t *out,
    ssize_t skip, const char *add)
{
    const superuser_line_t  *l = &f->lines[f->key];
    const char              *suffix = l->p + f->value_end;
    size_t                   suffix_len = l->len - f->value_end;
    bool                     first = true;

    superuser_buf_add(out, l->p, f->colon + 1);
    superuser_buf_str(out, " [");

    for (size_t i = 0; i < f->nitems; i++) {
        if ((ssize_t) i == skip) {
            continue;
        }
        if (!first) {
            superuser_buf_str(out, ", ");
        }
        superuser_buf_add(out, f->items[i].text, f->items[i].len);
        first = false;
    }

    if (add != NULL) {
        if (!first) {
            superuser_buf_str(out, ", ");
        }
        superuser_buf_name(out, add);
    }

    superuser_buf_str(out, "]");

    /* a comment must stay apart from the value, or it is not one */
    if (suffix_len > 0 && suffix[0] != ' ' && suffix[0] != '\t') {
        superuser_buf_str(out, " ");
    }

    superuser_buf_add(out, suffix, suffix_len);
    superuser_buf_str(out, f->eol);
}


/*
 * The new text for "add NAME" (add) or "remove NAME" (!add), into out.
 * Returns 1 when there is nothing to change.
 */
static int
superuser_edit(const superuser_file_t *f, const char *name, bool add,
    superuser_buf_t *out)
{
    ssize_t  found = superuser_find(f, name);

    if ((add && found >= 0) || (!add && found < 0)) {
        return 1;
    }

    if (f->shape == SUPERUSER_ABSENT) {
        superuser_buf_add(out, f->text, f->size);
        if (f->size > 0 && f->text[f->size - 1] != '\n') {
            superuser_buf_str(out, f->eol);
        }
        superuser_buf_str(out, SUPERUSER_KEY ":");
        superuser_buf_str(out, f->eol);
        superuser_buf_str(out, "  - ");
        superuser_buf_name(out, name);
        superuser_buf_str(out, f->eol);
        return 0;
    }

    for (size_t i = 0; i < f->nlines; i++) {
        const superuser_line_t  *l = &f->lines[i];

        if (i == f->key && f->shape != SUPERUSER_BLOCK) {
            superuser_emit_flow_line(f, out, found, add ? name : NULL);
            continue;
        }

        if (i == f->key && !add && f->nitems == 1) {
            /* the last entry goes: an empty list, not a null */
            superuser_emit_flow_line(f, out, found, NULL);
            continue;
        }

        if (!add && f->shape == SUPERUSER_BLOCK
            && i == f->items[found].line)
        {
            continue;
        }

        superuser_buf_add(out, l->p, l->full);

        if (l->full == l->len && add && f->shape == SUPERUSER_BLOCK
            && i == f->items[f->nitems - 1].line)
        {
            superuser_buf_str(out, f->eol);     /* the file had no final
                                                 * newline */
        }

        if (add && f->shape == SUPERUSER_BLOCK
            && i == f->items[f->nitems - 1].line)
        {
            for (size_t s = 0; s < f->indent; s++) {
                superuser_buf_str(out, " ");
            }
            superuser_buf_str(out, "- ");
            superuser_buf_name(out, name);
            superuser_buf_str(out, f->eol);
        }
    }

    return 0;
}


/*
 * Opens path (a resolved, real path) with an exclusive flock, re-opening
 * if another quayctl renamed a new file into place meanwhile.  Returns the
 * descriptor, or -1 (reported).
 */
static int
superuser_lock(const char *path, struct stat *st)
{
    for (int attempt = 0; attempt < SUPERUSER_LOCK_TRIES; attempt++) {
        struct stat  now;
        int          fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
            quayctl_fail("cannot open %s: %s", path, strerror(errno));
            return -1;
        }

        if (flock(fd, LOCK_EX) != 0 || fstat(fd, st) != 0) {
            quayctl_fail("cannot lock %s: %s", path, strerror(errno));
            (void) close(fd);
            return -1;
        }

        if (stat(path, &now) == 0 && now.st_dev == st->st_dev
            && now.st_ino == st->st_ino)
        {
            return fd;
        }

        (void) close(fd);
    }

    quayctl_fail("%s keeps being replaced; try again", path);
    return -1;
}


static int
superuser_read(int fd, const char *path, const struct stat *st,
    superuser_file_t *f)
{
    size_t  cap;

    if (!S_ISREG(st->st_mode)) {
        quayctl_fail("%s is not a regular file", path);
        return -1;
    }

    if (st->st_size > SUPERUSER_FILE_MAX) {
        quayctl_fail("%s is larger than %d bytes", path, SUPERUSER_FILE_MAX);
        return -1;
    }

    cap = (size_t) st->st_size + 1;
    f->text = xmalloc(cap);
    f->size = 0;

    for ( ;; ) {
        ssize_t  n;

        if (f->size + 1 == cap) {
            if (cap > SUPERUSER_FILE_MAX) {
                quayctl_fail("%s is larger than %d bytes", path,
                             SUPERUSER_FILE_MAX);
                return -1;
            }
            cap *= 2;
            f->text = xrealloc(f->text, cap);
        }

        n = read(fd, f->text + f->size, cap - 1 - f->size);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            quayctl_fail("cannot read %s: %s", path, strerror(errno));
            return -1;
        }
        if (n == 0) {
            break;
        }

        f->size += (size_t) n;
    }

    f->text[f->size] = '\0';

    if (memchr(f->text, '\0', f->size) != NULL) {
        quayctl_fail("%s has a NUL byte; not a YAML file", path);
        return -1;
    }

    return 0;
}


/* Whether cfg's SUPER_USERS holds name. */
static bool
superuser_listed(const quay_strlist_t *list, const char *name)
{
    for (size_t i = 0; i < list->n; i++) {
        if (strcmp(list->items[i], name) == 0) {
            return true;
        }
    }

    return false;
}


/*
 * Writes text next to path, checks that it loads and that SUPER_USERS
 * holds name (add) or not, and renames it over path.  On any failure
 * path is untouched and the temporary file is gone.
 */
static int
superuser_replace(const char *path, const struct stat *st,
    const superuser_buf_t *text, const char *name, bool add)
{
    char           *tmp, *dir_copy;
    int             fd, dfd, rc = -1;
    size_t          done = 0;
    quay_err_t      err;
    quay_config_t  *cfg;

    tmp = xasprintf("%s.quayctl-XXXXXX", path);

    fd = mkstemp(tmp);
    if (fd < 0) {
        quayctl_fail("cannot create a file next to %s: %s", path,
                     strerror(errno));
        free(tmp);
        return -1;
    }

    if (fchmod(fd, st->st_mode & 07777) != 0) {
        quayctl_fail("cannot set the mode of %s: %s", tmp, strerror(errno));
        goto fail;
    }

    if (fchown(fd, st->st_uid, st->st_gid) != 0 && errno != EPERM) {
        quayctl_fail("cannot set the owner of %s: %s", tmp,
                     strerror(errno));
        goto fail;
    }

    while (done < text->len) {
        ssize_t  n = write(fd, text->p + done, text->len - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            quayctl_fail("cannot write %s: %s", tmp, strerror(errno));
            goto fail;
        }
        done += (size_t) n;
    }

    if (fsync(fd) != 0) {
        quayctl_fail("cannot sync %s: %s", tmp, strerror(errno));
        goto fail;
    }

    memset(&err, 0, sizeof(err));
    cfg = quay_config_load(tmp, NULL, NULL, &err);

    if (cfg == NULL) {
        quayctl_fail("the edited file would not load (%s); %s is unchanged",
                     err.msg, path);
        goto fail;
    }

    if (superuser_listed(&cfg->super_users, name) != add) {
        quay_config_free(cfg);
        quayctl_fail("the edit did not %s %s; %s is unchanged",
                     add ? "add" : "remove", name, path);
        goto fail;
    }

    quay_config_free(cfg);

    if (close(fd) != 0) {
        fd = -1;
        quayctl_fail("cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;

    if (rename(tmp, path) != 0) {
        quayctl_fail("cannot replace %s: %s", path, strerror(errno));
        goto fail;
    }

    /* the rename itself must survive a crash */

    dir_copy = xstrdup(path);
    dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0) {
            fprintf(stderr, "quayctl: warning: cannot sync the directory "
                    "of %s: %s\n", path, strerror(errno));
        }
        (void) close(dfd);
    }
    free(dir_copy);

    free(tmp);
    return 0;

fail:

    if (fd >= 0) {
        (void) close(fd);
    }
    (void) unlink(tmp);
    free(tmp);

    return rc;
}


static int
superuser_list(const char *path)
{
    quay_err_t      err;
    quay_config_t  *cfg;

    memset(&err, 0, sizeof(err));
    cfg = quay_config_load(path, NULL, NULL, &err);

    if (cfg == NULL) {
        quayctl_fail("%s: %s", path, err.msg);
        return 1;
    }

    for (size_t i = 0; i < cfg->super_users.n; i++) {
        printf("%s\n", cfg->super_users.items[i]);
    }

    if (!cfg->feature_super_users) {
        fprintf(stderr, "quayctl: note: FEATURE_SUPER_USERS is false in %s: "
                "these names have no superuser rights\n", path);
    }

    quay_config_free(cfg);

    return 0;
}


static int
superuser_change(const char *config_path, const char *name, bool add)
{
    char              real[PATH_MAX];
    int               fd, rc = 1;
    struct stat       st;
    quay_err_t        err;
    quay_config_t    *cfg;
    superuser_buf_t   out = { NULL, 0, 0 };
    superuser_file_t  f;

    memset(&f, 0, sizeof(f));

    if (realpath(config_path, real) == NULL) {
        quayctl_fail("cannot open %s: %s", config_path, strerror(errno));
        return 1;
    }

    fd = superuser_lock(real, &st);
    if (fd < 0) {
        return 1;
    }

    memset(&err, 0, sizeof(err));
    cfg = quay_config_load(real, NULL, NULL, &err);

    if (cfg == NULL) {
        quayctl_fail("%s does not load (%s); fix it first", config_path,
                     err.msg);
        goto done;
    }

    if (add && superuser_listed(&cfg->global_readonly_super_users, name)) {
        fprintf(stderr, "quayctl: note: %s is also in "
                "GLOBAL_READONLY_SUPER_USERS, which takes precedence: it "
                "stays a read-only superuser\n", name);
    }

    if (!cfg->feature_super_users) {
        fprintf(stderr, "quayctl: note: FEATURE_SUPER_USERS is false in %s\n",
                config_path);
    }

    quay_config_free(cfg);

    if (superuser_read(fd, config_path, &st, &f) != 0) {
        goto done;
    }

    superuser_split_lines(&f);

    if (superuser_parse(&f, config_path) != 0) {
        goto done;
    }

    if (superuser_edit(&f, name, add, &out) == 1) {
        printf("%s is %s in SUPER_USERS of %s; nothing to do\n", name,
               add ? "already" : "not", config_path);
        rc = 0;
        goto done;
    }

    if (superuser_replace(real, &st, &out, name, add) != 0) {
        goto done;
    }

    printf("%s %s %s SUPER_USERS in %s; reload nginx (nginx -s reload) "
           "to apply it\n", add ? "added" : "removed", name,
           add ? "to" : "from", config_path);
    rc = 0;

done:

    (void) close(fd);               /* releases the lock */
    superuser_file_free(&f);
    free(out.p);

    return rc;
}


int
quayctl_superuser_main(int argc, char **argv)
{
    const char  *command, *name = NULL, *config_path = NULL;
    bool         takes_name;

    if (argc < 2) {
        superuser_usage(stderr);
        return 2;
    }

    command = argv[1];

    if (strcmp(command, "-h") == 0 || strcmp(command, "--help") == 0) {
        superuser_usage(stdout);
        return 0;
    }

    if (strcmp(command, "list") == 0) {
        takes_name = false;

    } else if (strcmp(command, "add") == 0
               || strcmp(command, "remove") == 0)
    {
        takes_name = true;

    } else {
        quayctl_fail("superuser: unknown command \"%s\" (list, add, remove)",
                     command);
        return 2;
    }

    for (int i = 2; i < argc; i++) {
        const char  *arg = argv[i];

        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            superuser_usage(stdout);
            return 0;
        }

        int  m = quayctl_db_option(argc, argv, &i, "--config", &config_path);

        if (m < 0) {
            return 2;
        }
        if (m > 0) {
            continue;
        }

        if (arg[0] == '-' || !takes_name || name != NULL) {
            quayctl_fail("superuser %s: unexpected argument \"%s\"", command,
                         arg);
            return 2;
        }

        name = arg;
    }

    if (config_path == NULL) {
        quayctl_fail("superuser %s needs --config FILE", command);
        return 2;
    }

    if (!takes_name) {
        return superuser_list(config_path);
    }

    if (name == NULL) {
        quayctl_fail("superuser %s needs a NAME", command);
        return 2;
    }

    if (!superuser_valid_name(name)) {
        quayctl_fail("\"%s\" is not a valid user name (2 to 255 lowercase "
                     "letters and digits, separated by . _ or -)", name);
        return 1;
    }

    return superuser_change(config_path, name, strcmp(command, "add") == 0);
}
