/*
 * Registry JWTs: RS256 keys, JWK export and import, signing and
 * verification (contract and kid rules in quay_jwt.h).
 *
 * Everything goes through OpenSSL 3's EVP interfaces and providers: key
 * generation with EVP_PKEY_Q_keygen(), n and e read as OSSL_PARAMs, JWK
 * import through OSSL_PARAM_BLD and EVP_PKEY_fromdata(), and one-shot
 * EVP_DigestSign()/EVP_DigestVerify() with the padding set explicitly to
 * PKCS#1 v1.5 so a key can never be used for PSS.  No RSA_* call is used.
 * JSON goes through jansson with duplicate members rejected, so a header
 * cannot say "alg" twice and have two readers disagree.
 *
 * Verification is written against security-catalogue.md B2 22-25: the
 * algorithm comes from the key, not from the token (the header's "alg"
 * must merely agree, which turns away "none", HMAC keyed with the public
 * key, and every other algorithm); no key material is ever read from the
 * token ("jwk", "jku", "x5u", "x5c" are refused outright rather than
 * ignored); "crit" is refused because we implement no extension.  The
 * signature is checked before the payload is parsed, so claims are only
 * ever read from signed bytes.
 *
 * Failed OpenSSL calls leave entries in the calling thread's error queue;
 * nginx reads that queue after its own TLS calls, so every failure path
 * here clears it (quay_jwt_ossl_error()) instead of leaking stale errors
 * into unrelated log lines.
 *
 * No function keeps state between calls; each call owns its contexts, so
 * concurrent use of one key from several threads is safe (OpenSSL 3 keys
 * are reference-counted and internally locked where they cache).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "quay_base64.h"
#include "quay_jwt.h"


#define QUAY_JWT_MAX_PEM       (64 * 1024)
#define QUAY_JWT_MAX_SIG       (QUAY_JWT_MAX_BITS / 8)
#define QUAY_JWT_MAX_E_BITS    64           /* OpenSSL's limit for big n */
#define QUAY_JWT_TIME_MAX      10000000000000LL   /* year ~318,000 */

#define QUAY_JWT_HEADER_FMT                                                 \
    "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}"


/* The three parts of a compact JWS, pointing into the token. */
typedef struct {
    const char  *header;
    size_t       header_len;
    const char  *payload;
    size_t       payload_len;
    const char  *signature;
    size_t       signature_len;
    size_t       signing_input_len;     /* header "." payload */
} quay_jwt_parts_t;


static int quay_jwt_ossl_error(quay_err_t *err, int code, const char *fmt,
    const char *what);
static int quay_jwt_no_passphrase(char *buf, int size, int rwflag,
    void *u);
static int quay_jwt_kid_valid(const char *kid, size_t len);
static int quay_jwt_check_rsa(EVP_PKEY *pkey, const char *what,
    quay_err_t *err);
static char *quay_jwt_bn_b64(const EVP_PKEY *pkey, const char *name);
static int quay_jwt_thumbprint(const EVP_PKEY *pkey,
    char out[QUAY_JWT_KID_SIZE], quay_err_t *err);
static int quay_jwt_read_file(const char *path, unsigned char **data,
    size_t *len, quay_err_t *err);
static int quay_jwt_key_from_pem(const unsigned char *pem, size_t len,
    const char *path, quay_jwt_key_t *key, quay_err_t *err);
static int quay_jwt_load_file(const char *path, quay_jwt_key_t *key,
    quay_err_t *err);
static int quay_jwt_write_all(int fd, const char *data, size_t len);
static void quay_jwt_sync_dir(const char *path);
static int quay_jwt_create(const char *path, quay_jwt_key_t *key,
    quay_err_t *err);
static int quay_jwt_jwk_string(json_t *jwk, const char *name,
    const char **value, size_t *len);
static json_t *quay_jwt_json_object(const char *text, size_t len);
static int quay_jwt_decode_json(const char *p, size_t len, json_t **out);
static int quay_jwt_split(const char *token, size_t len,
    quay_jwt_parts_t *parts, quay_err_t *err);
static int quay_jwt_parse_header(const char *token, size_t len,
    quay_jwt_parts_t *parts, quay_jwt_header_t *hdr, json_t **header,
    quay_err_t *err);
static int quay_jwt_check_signature(const quay_jwt_parts_t *parts,
    const quay_jwt_key_t *key, quay_err_t *err);
static int quay_jwt_claim_time(json_t *claims, const char *name,
    long long *value);
static int quay_jwt_check_claims(json_t *claims, const char *audience,
    const char *issuer, long long now, long long leeway_s,
    long long max_lifetime_s, quay_err_t *err);


/*
 * Records an OpenSSL failure: fmt gets what and OpenSSL's last reason,
 * and the thread's error queue is cleared.
 */
static int
quay_jwt_ossl_error(quay_err_t *err, int code, const char *fmt,
    const char *what)
{
    char           reason[256];
    unsigned long  e;

    e = ERR_peek_last_error();

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else {
        (void) snprintf(reason, sizeof(reason), "no OpenSSL error");
    }

    ERR_clear_error();

    return quay_err_set(err, code, fmt, what, reason);
}


/*
 * PEM passphrase callback: there is no passphrase.  Without it OpenSSL
 * would prompt on the terminal for an encrypted key.
 */
static int
quay_jwt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}


/* 1..63 printable ASCII characters, none of them '"' or '\\'. */
static int
quay_jwt_kid_valid(const char *kid, size_t len)
{
    size_t  i;

    if (len == 0 || len >= QUAY_JWT_KID_SIZE) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (kid[i] < 0x21 || kid[i] > 0x7e || kid[i] == '"'
            || kid[i] == '\\')
        {
            return 0;
        }
    }

    return 1;
}


static int
quay_jwt_check_rsa(EVP_PKEY *pkey, const char *what, quay_err_t *err)
{
    int  bits;

    /* "RSA" only: an RSA-PSS key is a different type and is refused */
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        return quay_err_set(err, QUAY_EINVAL, "%s: not an RSA key", what);
    }

    bits = EVP_PKEY_get_bits(pkey);

    if (bits < QUAY_JWT_MIN_BITS || bits > QUAY_JWT_MAX_BITS) {
        return quay_err_set(err, QUAY_EINVAL,
                            "%s: RSA key of %d bits (need %d to %d)", what,
                            bits, QUAY_JWT_MIN_BITS, QUAY_JWT_MAX_BITS);
    }

    return QUAY_OK;
}


/* The RSA parameter name ("n" or "e") of pkey as malloc'ed unpadded
 * base64url of its minimal big-endian bytes; NULL on failure. */
static char *
quay_jwt_bn_b64(const EVP_PKEY *pkey, const char *name)
{
    int             n;
    char           *out;
    size_t          len;
    BIGNUM         *bn;
    unsigned char  *bytes;

    bn = NULL;
    bytes = NULL;
    out = NULL;

    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
        ERR_clear_error();
        return NULL;
    }

    n = BN_num_bytes(bn);
    if (n <= 0) {
        goto done;
    }

    bytes = malloc((size_t) n);
    if (bytes == NULL) {
        goto done;
    }

    if (BN_bn2bin(bn, bytes) != n) {
        goto done;
    }

    len = quay_base64url_encode(bytes, (size_t) n, NULL);

    out = malloc(len + 1);
    if (out == NULL) {
        goto done;
    }

    out[quay_base64url_encode(bytes, (size_t) n, out)] = '\0';

done:

    free(bytes);
    BN_free(bn);

    return out;
}


/* RFC 7638 section 3: SHA-256 over the required members in lexical order,
 * without whitespace, then base64url. */
static int
quay_jwt_thumbprint(const EVP_PKEY *pkey, char out[QUAY_JWT_KID_SIZE],
    quay_err_t *err)
{
    int            rc, n;
    char          *e_b64, *n_b64, *json;
    size_t         len;
    unsigned int   md_len;
    unsigned char  md[EVP_MAX_MD_SIZE];

    rc = QUAY_ERROR;
    json = NULL;
    e_b64 = quay_jwt_bn_b64(pkey, OSSL_PKEY_PARAM_RSA_E);
    n_b64 = quay_jwt_bn_b64(pkey, OSSL_PKEY_PARAM_RSA_N);

    if (e_b64 == NULL || n_b64 == NULL) {
        (void) quay_err_set(err, rc, "cannot read the RSA public key");
        goto done;
    }

    len = strlen(e_b64) + strlen(n_b64) + 64;

    json = malloc(len);
    if (json == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "out of memory");
        goto done;
    }

    n = snprintf(json, len, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
                 e_b64, n_b64);

    if (n < 0 || (size_t) n >= len
        || EVP_Digest(json, (size_t) n, md, &md_len, EVP_sha256(), NULL)
           != 1)
    {
        (void) quay_jwt_ossl_error(err, rc, "%s: %s", "thumbprint");
        goto done;
    }

    out[quay_base64url_encode(md, md_len, out)] = '\0';
    rc = QUAY_OK;

done:

    free(json);
    free(e_b64);
    free(n_b64);

    return rc;
}


/* Reads a regular file of at most QUAY_JWT_MAX_PEM bytes into malloc'ed
 * memory.  QUAY_ENOTFOUND when it does not exist. */
static int
quay_jwt_read_file(const char *path, unsigned char **data, size_t *len,
    quay_err_t *err)
{
    int             fd, rc;
    size_t          n;
    ssize_t         r;
    struct stat     st;
    unsigned char  *buf;

    *data = NULL;
    *len = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOENT) {
            return QUAY_ENOTFOUND;
        }

        return quay_err_set(err, QUAY_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    }

    buf = NULL;

    if (fstat(fd, &st) == -1) {
        rc = quay_err_set(err, QUAY_EIO, "%s: cannot stat: %s", path,
                          strerror(errno));
        goto fail;
    }

    if (!S_ISREG(st.st_mode) || st.st_size <= 0
        || st.st_size > QUAY_JWT_MAX_PEM)
    {
        rc = quay_err_set(err, QUAY_EINVAL,
                          "%s: not a regular file of 1 to %d bytes", path,
                          QUAY_JWT_MAX_PEM);
        goto fail;
    }

    /* one spare byte to notice a file that grew since fstat() */
    buf = malloc((size_t) st.st_size + 1);
    if (buf == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "%s: out of memory", path);
        goto fail;
    }

    n = 0;

    while (n <= (size_t) st.st_size) {
        r = read(fd, buf + n, (size_t) st.st_size + 1 - n);

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r == -1) {
            rc = quay_err_set(err, QUAY_EIO, "%s: cannot read: %s", path,
                              strerror(errno));
            goto fail;
        }

        if (r == 0) {
            break;
        }

        n += (size_t) r;
    }

    if (n != (size_t) st.st_size) {
        rc = quay_err_set(err, QUAY_EIO, "%s: changed while being read",
                          path);
        goto fail;
    }

    (void) close(fd);

    *data = buf;
    *len = n;

    return QUAY_OK;

fail:

    if (buf != NULL) {
        OPENSSL_cleanse(buf, (size_t) st.st_size + 1);
        free(buf);
    }

    (void) close(fd);

    return rc;
}


static int
quay_jwt_key_from_pem(const unsigned char *pem, size_t len,
    const char *path, quay_jwt_key_t *key, quay_err_t *err)
{
    int        rc;
    BIO       *bio;
    EVP_PKEY  *pkey;

    if (len > QUAY_JWT_MAX_PEM) {
        return quay_err_set(err, QUAY_EINVAL, "%s: too large", path);
    }

    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return quay_jwt_ossl_error(err, QUAY_ERROR, "%s: %s", path);
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, quay_jwt_no_passphrase, NULL);
    BIO_free(bio);

    if (pkey == NULL) {
        return quay_jwt_ossl_error(err, QUAY_EINVAL,
                                   "%s: no unencrypted PEM private key (%s)",
                                   path);
    }

    rc = quay_jwt_check_rsa(pkey, path, err);

    if (rc == QUAY_OK) {
        rc = quay_jwt_thumbprint(pkey, key->kid, err);
    }

    if (rc != QUAY_OK) {
        EVP_PKEY_free(pkey);
        return rc;
    }

    key->key = pkey;

    return QUAY_OK;
}


/* QUAY_ENOTFOUND (err untouched) when path does not exist. */
static int
quay_jwt_load_file(const char *path, quay_jwt_key_t *key, quay_err_t *err)
{
    int             rc;
    size_t          len;
    unsigned char  *pem;

    rc = quay_jwt_read_file(path, &pem, &len, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    rc = quay_jwt_key_from_pem(pem, len, path, key, err);

    OPENSSL_cleanse(pem, len);
    free(pem);

    return rc;
}


static int
quay_jwt_write_all(int fd, const char *data, size_t len)
{
    ssize_t  n;

    while (len > 0) {
        n = write(fd, data, len);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            return -1;
        }

        data += n;
        len -= (size_t) n;
    }

    return 0;
}


/* Makes a new directory entry durable.  Best effort: the key is already
 * complete in its file, and a lost entry only means a new key next boot. */
static void
quay_jwt_sync_dir(const char *path)
{
    int          fd;
    char        *dir;
    const char  *slash;

    slash = strrchr(path, '/');

    if (slash == NULL) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        dir = strndup(path, (size_t) (slash - path));
    }

    if (dir == NULL) {
        return;
    }

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);

    if (fd != -1) {
        (void) fsync(fd);
        (void) close(fd);
    }
}


/*
 * Generates a key and publishes it at path: temporary file, fsync, then
 * link() so that an existing path (another process won the race) is never
 * replaced; that process's key is loaded instead.
 */
static int
quay_jwt_create(const char *path, quay_jwt_key_t *key, quay_err_t *err)
{
    int        fd, rc;
    BIO       *bio;
    long       pem_len;
    char      *tmp, *pem;
    size_t     len;
    EVP_PKEY  *pkey;

    fd = -1;
    bio = NULL;
    tmp = NULL;

    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) QUAY_JWT_KEY_BITS);
    if (pkey == NULL) {
        return quay_jwt_ossl_error(err, QUAY_ERROR,
                                   "%s: RSA key generation failed: %s",
                                   path);
    }

    /* secure memory: the buffer is wiped when the BIO is freed */
    bio = BIO_new(BIO_s_secmem());

    if (bio == NULL
        || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
           != 1)
    {
        rc = quay_jwt_ossl_error(err, QUAY_ERROR,
                                 "%s: cannot encode the key: %s", path);
        goto fail;
    }

    pem_len = BIO_get_mem_data(bio, &pem);
    if (pem_len <= 0) {
        rc = quay_jwt_ossl_error(err, QUAY_ERROR,
                                 "%s: cannot encode the key: %s", path);
        goto fail;
    }

    len = strlen(path);

    tmp = malloc(len + sizeof(".tmp.XXXXXX"));
    if (tmp == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "%s: out of memory", path);
        goto fail;
    }

    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));

    /* mkstemp() creates the file 0600 with O_EXCL */
    fd = mkstemp(tmp);
    if (fd == -1) {
        rc = quay_err_set(err, QUAY_EIO, "%s: cannot create %s: %s", path,
                          tmp, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto fail;
    }

    if (fchmod(fd, S_IRUSR | S_IWUSR) == -1
        || quay_jwt_write_all(fd, pem, (size_t) pem_len) == -1
        || fsync(fd) == -1)
    {
        rc = quay_err_set(err, QUAY_EIO, "%s: cannot write %s: %s", path,
                          tmp, strerror(errno));
        goto fail;
    }

    if (close(fd) == -1) {
        fd = -1;
        rc = quay_err_set(err, QUAY_EIO, "%s: cannot write %s: %s", path,
                          tmp, strerror(errno));
        goto fail;
    }

    fd = -1;

    if (link(tmp, path) == -1) {

        if (errno == EEXIST) {
            /* another process created it first: use its key */
            (void) unlink(tmp);
            free(tmp);
            BIO_free(bio);
            EVP_PKEY_free(pkey);

            rc = quay_jwt_load_file(path, key, err);
            if (rc == QUAY_ENOTFOUND) {
                rc = quay_err_set(err, QUAY_EIO,
                                  "%s: created and removed concurrently",
                                  path);
            }

            return rc;
        }

        if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP
            && errno != ENOSYS && errno != EMLINK)
        {
            rc = quay_err_set(err, QUAY_EIO, "%s: cannot link %s: %s",
                              path, tmp, strerror(errno));
            goto fail;
        }

        /* no hard links on this file system */
        if (rename(tmp, path) == -1) {
            rc = quay_err_set(err, QUAY_EIO, "%s: cannot rename %s: %s",
                              path, tmp, strerror(errno));
            goto fail;
        }

    } else {
        (void) unlink(tmp);
    }

    free(tmp);
    tmp = NULL;
    quay_jwt_sync_dir(path);

    rc = quay_jwt_thumbprint(pkey, key->kid, err);
    if (rc != QUAY_OK) {
        goto fail;
    }

    BIO_free(bio);
    key->key = pkey;

    return QUAY_OK;

fail:

    if (fd != -1) {
        (void) close(fd);
    }

    if (tmp != NULL) {
        (void) unlink(tmp);
        free(tmp);
    }

    BIO_free(bio);
    EVP_PKEY_free(pkey);

    return rc;
}


int
quay_jwt_key_load_or_create(const char *path, quay_jwt_key_t *key,
    quay_err_t *err)
{
    int  rc;

    memset(key, 0, sizeof(quay_jwt_key_t));

    if (path == NULL || path[0] == '\0') {
        return quay_err_set(err, QUAY_EINVAL, "no key file path given");
    }

    rc = quay_jwt_load_file(path, key, err);

    if (rc == QUAY_ENOTFOUND) {
        rc = quay_jwt_create(path, key, err);
    }

    return rc;
}


void
quay_jwt_key_free(quay_jwt_key_t *key)
{
    if (key == NULL) {
        return;
    }

    EVP_PKEY_free(key->key);
    memset(key, 0, sizeof(quay_jwt_key_t));
}


char *
quay_jwt_key_public_jwk(const quay_jwt_key_t *key)
{
    int     n;
    char   *n_b64, *e_b64, *out;
    size_t  len;

    if (key == NULL || key->key == NULL || !EVP_PKEY_is_a(key->key, "RSA")
        || !quay_jwt_kid_valid(key->kid, strnlen(key->kid,
                                                 QUAY_JWT_KID_SIZE)))
    {
        return NULL;
    }

    out = NULL;
    n_b64 = quay_jwt_bn_b64(key->key, OSSL_PKEY_PARAM_RSA_N);
    e_b64 = quay_jwt_bn_b64(key->key, OSSL_PKEY_PARAM_RSA_E);

    if (n_b64 == NULL || e_b64 == NULL) {
        goto done;
    }

    len = strlen(n_b64) + strlen(e_b64) + strlen(key->kid) + 128;

    out = malloc(len);
    if (out == NULL) {
        goto done;
    }

    n = snprintf(out, len,
                 "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\",\"kid\":\"%s\","
                 "\"alg\":\"RS256\",\"use\":\"sig\"}",
                 n_b64, e_b64, key->kid);

    if (n < 0 || (size_t) n >= len) {
        free(out);
        out = NULL;
    }

done:

    free(n_b64);
    free(e_b64);

    return out;
}


/* A JWK member that must be a string when present: 1 present, 0 absent,
 * -1 present but not a string. */
static int
quay_jwt_jwk_string(json_t *jwk, const char *name, const char **value,
    size_t *len)
{
    json_t  *v;

    *value = NULL;
    *len = 0;

    v = json_object_get(jwk, name);
    if (v == NULL) {
        return 0;
    }

    if (!json_is_string(v)) {
        return -1;
    }

    *value = json_string_value(v);
    *len = json_string_length(v);

    return 1;
}


int
quay_jwt_key_from_jwk(const char *jwk, size_t len, quay_jwt_key_t *key,
    quay_err_t *err)
{
    int              rc;
    json_t          *obj;
    BIGNUM          *n, *e;
    size_t           slen, blen;
    EVP_PKEY        *pkey;
    OSSL_PARAM      *params;
    const char      *s;
    EVP_PKEY_CTX    *ctx;
    unsigned char   *bytes;
    OSSL_PARAM_BLD  *bld;

    memset(key, 0, sizeof(quay_jwt_key_t));

    if (jwk == NULL) {
        return quay_err_set(err, QUAY_EINVAL, "JWK: none given");
    }

    rc = QUAY_EINVAL;
    n = NULL;
    e = NULL;
    pkey = NULL;
    params = NULL;
    ctx = NULL;
    bytes = NULL;
    bld = NULL;

    obj = quay_jwt_json_object(jwk, len);
    if (obj == NULL) {
        return quay_err_set(err, QUAY_EINVAL,
                            "JWK: not a JSON object (or duplicate members)");
    }

    if (quay_jwt_jwk_string(obj, "kty", &s, &slen) != 1
        || strcmp(s, "RSA") != 0)
    {
        (void) quay_err_set(err, rc, "JWK: kty is not \"RSA\"");
        goto done;
    }

    if (quay_jwt_jwk_string(obj, "alg", &s, &slen) == -1
        || (s != NULL && strcmp(s, "RS256") != 0))
    {
        (void) quay_err_set(err, rc, "JWK: alg is not \"RS256\"");
        goto done;
    }

    if (quay_jwt_jwk_string(obj, "use", &s, &slen) == -1
        || (s != NULL && strcmp(s, "sig") != 0))
    {
        (void) quay_err_set(err, rc, "JWK: use is not \"sig\"");
        goto done;
    }

    /* n */

    if (quay_jwt_jwk_string(obj, "n", &s, &slen) != 1
        || quay_base64url_decode(s, slen, NULL, &blen) != QUAY_OK
        || blen == 0 || blen > QUAY_JWT_MAX_BITS / 8 + 1)
    {
        (void) quay_err_set(err, rc, "JWK: n is missing, not base64url or "
                            "of a bad size");
        goto done;
    }

    bytes = malloc(blen);
    if (bytes == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "JWK: out of memory");
        goto done;
    }

    (void) quay_base64url_decode(s, slen, bytes, &blen);

    n = BN_bin2bn(bytes, (int) blen, NULL);
    free(bytes);
    bytes = NULL;

    /* e */

    if (quay_jwt_jwk_string(obj, "e", &s, &slen) != 1
        || quay_base64url_decode(s, slen, NULL, &blen) != QUAY_OK
        || blen == 0 || blen > QUAY_JWT_MAX_E_BITS / 8)
    {
        (void) quay_err_set(err, rc, "JWK: e is missing, not base64url or "
                            "of a bad size");
        goto done;
    }

    bytes = malloc(blen);
    if (bytes == NULL) {
        rc = quay_err_set(err, QUAY_ENOMEM, "JWK: out of memory");
        goto done;
    }

    (void) quay_base64url_decode(s, slen, bytes, &blen);

    e = BN_bin2bn(bytes, (int) blen, NULL);
    free(bytes);
    bytes = NULL;

    if (n == NULL || e == NULL) {
        rc = quay_jwt_ossl_error(err, QUAY_ERROR, "JWK: %s: %s", "bignum");
        goto done;
    }

    if (!BN_is_odd(e) || BN_num_bits(e) < 2) {
        (void) quay_err_set(err, rc, "JWK: e must be odd and at least 3");
        goto done;
    }

    /* kid: checked before the key is built, which costs more */

    switch (quay_jwt_jwk_string(obj, "kid", &s, &slen)) {

    case 1:
        if (!quay_jwt_kid_valid(s, slen)) {
            (void) quay_err_set(err, rc, "JWK: kid must be 1 to %d "
                                "printable ASCII characters without '\"' "
                                "or '\\'", QUAY_JWT_KID_SIZE - 1);
            goto done;
        }

        memcpy(key->kid, s, slen + 1);
        break;

    case 0:
        break;

    default:
        (void) quay_err_set(err, rc, "JWK: kid is not a string");
        goto done;
    }

    bld = OSSL_PARAM_BLD_new();

    if (bld == NULL
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
    {
        rc = quay_jwt_ossl_error(err, QUAY_ERROR, "JWK: %s: %s", "params");
        goto done;
    }

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        rc = quay_jwt_ossl_error(err, QUAY_EINVAL, "JWK: %s: %s",
                                 "not a usable RSA public key");
        goto done;
    }

    rc = quay_jwt_check_rsa(pkey, "JWK", err);

    if (rc == QUAY_OK && key->kid[0] == '\0') {
        rc = quay_jwt_thumbprint(pkey, key->kid, err);
    }

    if (rc == QUAY_OK) {
        key->key = pkey;
        pkey = NULL;
    }

done:

    if (rc != QUAY_OK) {
        memset(key, 0, sizeof(quay_jwt_key_t));
    }

    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    json_decref(obj);

    return rc;
}


/* text[0..len-1] as a JSON object (duplicate members rejected), or NULL. */
static json_t *
quay_jwt_json_object(const char *text, size_t len)
{
    json_t  *j;

    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);

    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }

    return j;
}


/* Decodes one base64url part and parses it as a JSON object. */
static int
quay_jwt_decode_json(const char *p, size_t len, json_t **out)
{
    size_t          n;
    unsigned char  *buf;

    *out = NULL;

    if (quay_base64url_decode(p, len, NULL, &n) != QUAY_OK || n == 0) {
        return QUAY_EINVAL;
    }

    buf = malloc(n);
    if (buf == NULL) {
        return QUAY_ENOMEM;
    }

    (void) quay_base64url_decode(p, len, buf, &n);

    *out = quay_jwt_json_object((const char *) buf, n);
    free(buf);

    return *out != NULL ? QUAY_OK : QUAY_EINVAL;
}


/* Three parts: header and payload non-empty, all strict base64url. */
static int
quay_jwt_split(const char *token, size_t len, quay_jwt_parts_t *parts,
    quay_err_t *err)
{
    size_t       n;
    const char  *dot1, *dot2, *end;

    /* zeroed first: every caller path then sees defined fields */
    memset(parts, 0, sizeof(quay_jwt_parts_t));

    if (token == NULL || len == 0) {
        return quay_err_set(err, QUAY_EINVAL, "token is empty");
    }

    if (len > QUAY_JWT_MAX_LEN) {
        return quay_err_set(err, QUAY_EINVAL, "token longer than %d bytes",
                            QUAY_JWT_MAX_LEN);
    }

    end = token + len;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', end - dot1 - 1) : NULL;

    if (dot2 == NULL || memchr(dot2 + 1, '.', end - dot2 - 1) != NULL) {
        return quay_err_set(err, QUAY_EINVAL,
                            "token does not have three parts");
    }

    parts->header = token;
    parts->header_len = dot1 - token;
    parts->payload = dot1 + 1;
    parts->payload_len = dot2 - dot1 - 1;
    parts->signature = dot2 + 1;
    parts->signature_len = end - dot2 - 1;
    parts->signing_input_len = dot2 - token;

    if (parts->header_len == 0 || parts->payload_len == 0) {
        return quay_err_set(err, QUAY_EINVAL,
                            "token has an empty header or payload");
    }

    if (quay_base64url_decode(parts->header, parts->header_len, NULL, &n)
            != QUAY_OK
        || quay_base64url_decode(parts->payload, parts->payload_len, NULL,
                                 &n)
           != QUAY_OK
        || quay_base64url_decode(parts->signature, parts->signature_len,
                                 NULL, &n)
           != QUAY_OK)
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "token part is not strict base64url");
    }

    return QUAY_OK;
}


static int
quay_jwt_parse_header(const char *token, size_t len,
    quay_jwt_parts_t *parts, quay_jwt_header_t *hdr, json_t **header,
    quay_err_t *err)
{
    int      rc;
    json_t  *obj, *v;
    size_t   n;

    memset(hdr, 0, sizeof(quay_jwt_header_t));
    *header = NULL;

    rc = quay_jwt_split(token, len, parts, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    rc = quay_jwt_decode_json(parts->header, parts->header_len, &obj);
    if (rc == QUAY_ENOMEM) {
        return quay_err_set(err, rc, "out of memory");
    }

    if (rc != QUAY_OK) {
        return quay_err_set(err, QUAY_EINVAL, "token header is not a JSON "
                            "object (or has duplicate members)");
    }

    v = json_object_get(obj, "alg");
    n = json_string_length(v);

    if (!json_is_string(v) || n == 0 || n >= sizeof(hdr->alg)) {
        json_decref(obj);
        return quay_err_set(err, QUAY_EINVAL,
                            "token header has no valid \"alg\"");
    }

    memcpy(hdr->alg, json_string_value(v), n + 1);

    v = json_object_get(obj, "kid");

    if (v != NULL) {
        n = json_string_length(v);

        if (!json_is_string(v)
            || !quay_jwt_kid_valid(json_string_value(v), n))
        {
            json_decref(obj);
            return quay_err_set(err, QUAY_EINVAL,
                                "token header has an invalid \"kid\"");
        }

        memcpy(hdr->kid, json_string_value(v), n + 1);
    }

    *header = obj;

    return QUAY_OK;
}


int
quay_jwt_peek_header(const char *token, size_t len, quay_jwt_header_t *hdr,
    quay_err_t *err)
{
    int                rc;
    json_t            *header;
    quay_jwt_parts_t   parts;

    rc = quay_jwt_parse_header(token, len, &parts, hdr, &header, err);
    json_decref(header);

    return rc;
}


char *
quay_jwt_sign_rs256(const quay_jwt_key_t *key, const char *claims_json,
    size_t len, quay_err_t *err)
{
    int             n, key_size;
    char           *token, *p;
    json_t         *claims;
    size_t          kid_len, header_b64, payload_b64, sig_b64, total, sig_len;
    EVP_MD_CTX     *mctx;
    EVP_PKEY_CTX   *pctx;
    unsigned char   sig[QUAY_JWT_MAX_SIG];
    char            header[sizeof(QUAY_JWT_HEADER_FMT) + QUAY_JWT_KID_SIZE];

    if (key == NULL || key->key == NULL || claims_json == NULL) {
        (void) quay_err_set(err, QUAY_EINVAL, "sign: no key or claims");
        return NULL;
    }

    kid_len = strnlen(key->kid, QUAY_JWT_KID_SIZE);
    key_size = EVP_PKEY_get_size(key->key);

    if (!quay_jwt_kid_valid(key->kid, kid_len) || key_size <= 0
        || key_size > QUAY_JWT_MAX_SIG || !EVP_PKEY_is_a(key->key, "RSA"))
    {
        (void) quay_err_set(err, QUAY_EINVAL, "sign: unusable key");
        return NULL;
    }

    if (len > QUAY_JWT_MAX_LEN) {
        (void) quay_err_set(err, QUAY_EINVAL, "sign: claims too long");
        return NULL;
    }

    claims = quay_jwt_json_object(claims_json, len);
    if (claims == NULL) {
        (void) quay_err_set(err, QUAY_EINVAL, "sign: claims are not a JSON "
                            "object (or have duplicate members)");
        return NULL;
    }

    json_decref(claims);

    n = snprintf(header, sizeof(header), QUAY_JWT_HEADER_FMT, key->kid);
    if (n < 0 || (size_t) n >= sizeof(header)) {
        (void) quay_err_set(err, QUAY_ERROR, "sign: header too long");
        return NULL;
    }

    header_b64 = quay_base64url_encode((unsigned char *) header, (size_t) n,
                                       NULL);
    payload_b64 = quay_base64url_encode((const unsigned char *) claims_json,
                                        len, NULL);
    sig_b64 = quay_base64url_encode(NULL, (size_t) key_size, NULL);
    total = header_b64 + 1 + payload_b64 + 1 + sig_b64;

    if (total > QUAY_JWT_MAX_LEN) {
        (void) quay_err_set(err, QUAY_EINVAL, "sign: token would be longer "
                            "than %d bytes", QUAY_JWT_MAX_LEN);
        return NULL;
    }

    token = malloc(total + 1);
    if (token == NULL) {
        (void) quay_err_set(err, QUAY_ENOMEM, "sign: out of memory");
        return NULL;
    }

    p = token;
    p += quay_base64url_encode((unsigned char *) header, (size_t) n, p);
    *p++ = '.';
    p += quay_base64url_encode((const unsigned char *) claims_json, len, p);

    mctx = EVP_MD_CTX_new();
    pctx = NULL;
    sig_len = sizeof(sig);

    if (mctx == NULL
        || EVP_DigestSignInit_ex(mctx, &pctx, "SHA256", NULL, NULL,
                                 key->key, NULL)
           != 1
        || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1
        || EVP_DigestSign(mctx, sig, &sig_len, (unsigned char *) token,
                          (size_t) (p - token))
           != 1
        || sig_len != (size_t) key_size)
    {
        EVP_MD_CTX_free(mctx);
        free(token);
        (void) quay_jwt_ossl_error(err, QUAY_ERROR, "%s: %s",
                                   "sign: RS256 failed (is the key private?)");
        return NULL;
    }

    EVP_MD_CTX_free(mctx);

    *p++ = '.';
    p += quay_base64url_encode(sig, sig_len, p);
    *p = '\0';

    return token;
}


static int
quay_jwt_check_signature(const quay_jwt_parts_t *parts,
    const quay_jwt_key_t *key, quay_err_t *err)
{
    int             key_size, ok;
    size_t          n;
    EVP_MD_CTX     *mctx;
    EVP_PKEY_CTX   *pctx;
    unsigned char   sig[QUAY_JWT_MAX_SIG];

    key_size = EVP_PKEY_get_size(key->key);

    if (key_size <= 0 || key_size > QUAY_JWT_MAX_SIG) {
        return quay_err_set(err, QUAY_EINVAL, "unusable key");
    }

    /* the length was validated by quay_jwt_split(); compare before
     * writing into sig[] */
    (void) quay_base64url_decode(parts->signature, parts->signature_len,
                                 NULL, &n);

    if (n != (size_t) key_size) {
        return quay_err_set(err, QUAY_ERROR,
                            "signature is not %d bytes long", key_size);
    }

    (void) quay_base64url_decode(parts->signature, parts->signature_len,
                                 sig, &n);

    mctx = EVP_MD_CTX_new();
    pctx = NULL;

    if (mctx == NULL
        || EVP_DigestVerifyInit_ex(mctx, &pctx, "SHA256", NULL, NULL,
                                   key->key, NULL)
           != 1
        || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
    {
        EVP_MD_CTX_free(mctx);
        return quay_jwt_ossl_error(err, QUAY_ERROR, "%s: %s",
                                   "cannot set up RS256 verification");
    }

    ok = EVP_DigestVerify(mctx, sig, n, (const unsigned char *) parts->header,
                          parts->signing_input_len);

    EVP_MD_CTX_free(mctx);
    ERR_clear_error();

    if (ok != 1) {
        return quay_err_set(err, QUAY_ERROR, "signature does not verify");
    }

    return QUAY_OK;
}


/*
 * A NumericDate claim: 0 absent, 1 present (*value set, a fraction
 * rounded up), -1 not a number or beyond QUAY_JWT_TIME_MAX.
 */
static int
quay_jwt_claim_time(json_t *claims, const char *name, long long *value)
{
    double     d;
    json_t    *v;
    long long  t;

    v = json_object_get(claims, name);
    if (v == NULL) {
        return 0;
    }

    if (json_is_integer(v)) {
        t = json_integer_value(v);

        if (t < -QUAY_JWT_TIME_MAX || t > QUAY_JWT_TIME_MAX) {
            return -1;
        }

        *value = t;
        return 1;
    }

    if (!json_is_real(v)) {
        return -1;
    }

    d = json_real_value(v);

    if (!(d >= (double) -QUAY_JWT_TIME_MAX && d <= (double) QUAY_JWT_TIME_MAX))
    {
        return -1;
    }

    t = (long long) d;
    if ((double) t < d) {
        t++;
    }

    *value = t;

    return 1;
}


static int
quay_jwt_check_claims(json_t *claims, const char *audience,
    const char *issuer, long long now, long long leeway_s,
    long long max_lifetime_s, quay_err_t *err)
{
    int          has_exp, has_nbf, has_iat, found;
    json_t      *v, *item;
    size_t       i;
    long long    exp, nbf, iat;
    const char  *s;

    /* iss */

    s = json_string_value(json_object_get(claims, "iss"));

    if (s == NULL || strcmp(s, issuer) != 0) {
        return quay_err_set(err, QUAY_ERROR, "iss is missing or not the "
                            "expected issuer");
    }

    /* aud: a string or an array of strings (RFC 7519 section 4.1.3) */

    v = json_object_get(claims, "aud");
    found = 0;

    if (json_is_string(v)) {
        found = strcmp(json_string_value(v), audience) == 0;

    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item) {
            if (json_is_string(item)
                && strcmp(json_string_value(item), audience) == 0)
            {
                found = 1;
                break;
            }
        }
    }

    if (!found) {
        return quay_err_set(err, QUAY_ERROR, "aud is missing or does not "
                            "include the expected audience");
    }

    /* times */

    exp = nbf = iat = 0;
    has_exp = quay_jwt_claim_time(claims, "exp", &exp);
    has_nbf = quay_jwt_claim_time(claims, "nbf", &nbf);
    has_iat = quay_jwt_claim_time(claims, "iat", &iat);

    if (has_exp != 1) {
        return quay_err_set(err, QUAY_ERROR, has_exp == 0
                            ? "exp is missing" : "exp is not a valid time");
    }

    if (has_nbf == -1 || has_iat == -1) {
        return quay_err_set(err, QUAY_ERROR,
                            "nbf or iat is not a valid time");
    }

    if (exp <= now - leeway_s) {
        return quay_err_set(err, QUAY_ERROR, "token has expired (exp)");
    }

    if (has_nbf && nbf > now + leeway_s) {
        return quay_err_set(err, QUAY_ERROR, "token is not valid yet (nbf)");
    }

    if (has_iat && iat > now + leeway_s) {
        return quay_err_set(err, QUAY_ERROR,
                            "token is issued in the future (iat)");
    }

    if (max_lifetime_s > 0) {
        if (!has_iat && !has_nbf) {
            return quay_err_set(err, QUAY_ERROR, "token has neither iat "
                                "nor nbf, its lifetime is unbounded");
        }

        if ((has_iat && exp - iat > max_lifetime_s)
            || (has_nbf && exp - nbf > max_lifetime_s))
        {
            return quay_err_set(err, QUAY_ERROR, "token lifetime exceeds "
                                "%lld s", max_lifetime_s);
        }
    }

    return QUAY_OK;
}


int
quay_jwt_verify_rs256(const char *token, size_t len,
    const quay_jwt_key_t *key, const char *audience, const char *issuer,
    long long now, long long leeway_s, long long max_lifetime_s,
    json_t **claims, quay_err_t *err)
{
    int                 rc;
    json_t             *header, *payload;
    size_t              i;
    quay_jwt_parts_t    parts;
    quay_jwt_header_t   hdr;

    static const char  *const forbidden[] = {
        "jwk", "jku", "x5u", "x5c", "crit"
    };

    if (claims != NULL) {
        *claims = NULL;
    }

    if (key == NULL || key->key == NULL || audience == NULL
        || issuer == NULL || !EVP_PKEY_is_a(key->key, "RSA"))
    {
        return quay_err_set(err, QUAY_EINVAL,
                            "verify: no RSA key, audience or issuer");
    }

    rc = quay_jwt_parse_header(token, len, &parts, &hdr, &header, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    if (strcmp(hdr.alg, "RS256") != 0) {
        json_decref(header);
        return quay_err_set(err, QUAY_ERROR,
                            "alg is not RS256 (the only one accepted)");
    }

    for (i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
        if (json_object_get(header, forbidden[i]) != NULL) {
            json_decref(header);
            return quay_err_set(err, QUAY_ERROR,
                                "header carries \"%s\", which is refused",
                                forbidden[i]);
        }
    }

    json_decref(header);

    if (hdr.kid[0] == '\0' || strcmp(hdr.kid, key->kid) != 0) {
        return quay_err_set(err, QUAY_ERROR,
                            "kid is missing or not the verifying key's");
    }

    rc = quay_jwt_check_signature(&parts, key, err);
    if (rc != QUAY_OK) {
        return rc;
    }

    rc = quay_jwt_decode_json(parts.payload, parts.payload_len, &payload);
    if (rc != QUAY_OK) {
        return quay_err_set(err, rc, rc == QUAY_ENOMEM ? "out of memory"
                            : "payload is not a JSON object (or has "
                              "duplicate members)");
    }

    rc = quay_jwt_check_claims(payload, audience, issuer, now, leeway_s,
                               max_lifetime_s, err);

    if (rc != QUAY_OK || claims == NULL) {
        json_decref(payload);
        return rc;
    }

    *claims = payload;

    return QUAY_OK;
}
