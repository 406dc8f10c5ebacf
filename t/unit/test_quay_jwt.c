/*
 * lib/quay_jwt.c: the instance key file (create, reload, mode, atomic
 * creation under a race, foreign formats), the RFC 7638 thumbprint vector
 * (RFC 7638 section 3.1, also checked with Python's hashlib), JWK export
 * and import, sign/verify round trips with Quay's registry claims, and
 * the token attacks of security-catalogue.md B2 22-25: "alg":"none",
 * HS256 keyed with the public key (PEM and DER), other RSA algorithms,
 * keys embedded in or referenced from the header, wrong kid, tampering,
 * wrong aud/iss, exp/nbf/iat with and without leeway, lifetime, and
 * malformed or huge input.  Ends with two threads signing and verifying
 * with one key, and the time sign and verify take (TAP comments).
 *
 * Attack tokens are built here with raw OpenSSL calls so that each is
 * validly signed where that matters: a rejection then proves the check
 * under test, not a bad signature.
 */

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tap.h"
#include "quay_base64.h"
#include "quay_jwt.h"


#define NOW       1700000000LL
#define AUD       "registry.example.com"
#define ISS       "quay"
#define LEEWAY    30
#define MAX_LIFE  3660

#define RFC7638_N                                                           \
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1R" \
    "K7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9" \
    "yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZg" \
    "nYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We" \
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDK" \
    "gw"
#define RFC7638_THUMBPRINT  "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


static char            tmpdir[] = "/tmp/quay-jwt-test-XXXXXX";
static quay_jwt_key_t  key1, key2;


/* helpers */

static char *
b64url(const void *p, size_t len)
{
    char    *s;
    size_t   n;

    n = quay_base64url_encode(p, len, NULL);
    s = malloc(n + 1);
    if (s == NULL) {
        abort();
    }

    s[quay_base64url_encode(p, len, s)] = '\0';

    return s;
}


static char *
path_in_tmp(const char *name)
{
    static char  buf[4][256];
    static int   next;
    char        *p;

    p = buf[next++ % 4];
    (void) snprintf(p, 256, "%s/%s", tmpdir, name);

    return p;
}


/* header.payload, base64url-encoded, without a signature */
static char *
signing_input(const char *header, const char *payload)
{
    char    *h, *p, *s;
    size_t   n;

    h = b64url(header, strlen(header));
    p = b64url(payload, strlen(payload));
    n = strlen(h) + strlen(p) + 2;
    s = malloc(n);
    if (s == NULL) {
        abort();
    }

    (void) snprintf(s, n, "%s.%s", h, p);
    free(h);
    free(p);

    return s;
}


static char *
append_sig(char *input, const unsigned char *sig, size_t sig_len)
{
    char    *s, *token;
    size_t   n;

    s = b64url(sig, sig_len);
    n = strlen(input) + strlen(s) + 2;
    token = malloc(n);
    if (token == NULL) {
        abort();
    }

    (void) snprintf(token, n, "%s.%s", input, s);
    free(s);
    free(input);

    return token;
}


/* A token signed with any RSA digest, whatever the header says. */
static char *
rsa_token(EVP_PKEY *pkey, const char *md, const char *header,
    const char *payload)
{
    char           *input;
    size_t          sig_len;
    EVP_MD_CTX     *mctx;
    unsigned char   sig[1024];

    input = signing_input(header, payload);
    mctx = EVP_MD_CTX_new();
    sig_len = sizeof(sig);

    if (mctx == NULL
        || EVP_DigestSignInit_ex(mctx, NULL, md, NULL, NULL, pkey, NULL)
           != 1
        || EVP_DigestSign(mctx, sig, &sig_len, (unsigned char *) input,
                          strlen(input)) != 1)
    {
        abort();
    }

    EVP_MD_CTX_free(mctx);

    return append_sig(input, sig, sig_len);
}


static char *
hs256_token(const unsigned char *secret, size_t secret_len,
    const char *header, const char *payload)
{
    char           *input;
    size_t          mac_len;
    unsigned char   mac[64];

    input = signing_input(header, payload);

    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, secret_len,
                  (unsigned char *) input, strlen(input), mac, sizeof(mac),
                  &mac_len) == NULL)
    {
        abort();
    }

    return append_sig(input, mac, mac_len);
}


static char *
claims_text(long long iat, long long nbf, long long exp)
{
    static char  buf[1024];

    (void) snprintf(buf, sizeof(buf),
        "{\"iss\":\"quay\",\"aud\":\"" AUD "\",\"sub\":\"alice\","
        "\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
        "\"access\":[{\"type\":\"repository\",\"name\":\"ns/repo\","
        "\"actions\":[\"pull\",\"push\"]}],"
        "\"context\":{\"version\":2,\"entity_kind\":\"user\","
        "\"entity_reference\":\"5f8a\",\"kind\":\"user\","
        "\"user\":\"alice\",\"com.apostille.root\":\"$disabled\"}}",
        iat, nbf, exp);

    return buf;
}


static char *
good_claims(void)
{
    return claims_text(NOW, NOW, NOW + 3600);
}


static char *
header_text(const char *alg, const char *kid, const char *extra)
{
    static char  buf[4096];

    (void) snprintf(buf, sizeof(buf),
                    "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"%s}",
                    alg, kid, extra);

    return buf;
}


static int
verify(const char *token, const quay_jwt_key_t *key, quay_err_t *err)
{
    return quay_jwt_verify_rs256(token, strlen(token), key, AUD, ISS, NOW,
                                 LEEWAY, MAX_LIFE, NULL, err);
}


static int
verify_claims(const char *claims)
{
    int          rc;
    char        *token;
    quay_err_t   err;

    token = quay_jwt_sign_rs256(&key1, claims, strlen(claims), &err);
    if (token == NULL) {
        printf("# sign failed: %s\n", err.msg);
        return 99;
    }

    rc = verify(token, &key1, &err);
    if (rc != QUAY_OK) {
        printf("#   (%s)\n", err.msg);
    }

    free(token);

    return rc;
}


/* rejected with QUAY_ERROR and a message containing want */
static void
rejects(const char *token, const quay_jwt_key_t *key, const char *want,
    const char *name)
{
    int         rc;
    quay_err_t  err;

    err.msg[0] = '\0';
    rc = verify(token, key, &err);

    if (!ok(rc == QUAY_ERROR && strstr(err.msg, want) != NULL, name)) {
        printf("#   rc %d, message \"%s\", want \"%s\"\n", rc, err.msg, want);
    }
}


static void
malformed(const char *token, size_t len, const char *name)
{
    int                 rc1, rc2;
    json_t             *claims;
    quay_err_t          err;
    quay_jwt_header_t   hdr;

    claims = (json_t *) 1;
    rc1 = quay_jwt_peek_header(token, len, &hdr, &err);
    rc2 = quay_jwt_verify_rs256(token, len, &key1, AUD, ISS, NOW, LEEWAY,
                                MAX_LIFE, &claims, &err);

    if (!ok(rc1 == QUAY_EINVAL && rc2 == QUAY_EINVAL && claims == NULL,
            name))
    {
        printf("#   peek %d, verify %d (%s)\n", rc1, rc2, err.msg);
    }
}


static double
seconds(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* tests */

static void
test_key_file(void)
{
    int              rc, entries;
    FILE            *f;
    DIR             *d;
    char             first[40], kid[QUAY_JWT_KID_SIZE];
    struct stat      st;
    quay_err_t       err;
    struct dirent   *de;
    quay_jwt_key_t   again;

    rc = quay_jwt_key_load_or_create(path_in_tmp("quay.pem"), &key1, &err);
    if (!ok(rc == QUAY_OK && key1.key != NULL, "a missing key file is "
            "created with a new key"))
    {
        printf("#   %s\n", err.msg);
        exit(1);
    }

    is_int(strlen(key1.kid), QUAY_JWT_THUMBPRINT_LEN,
           "kid is 43 characters (base64url SHA-256)");
    is_int(EVP_PKEY_get_bits(key1.key), 2048, "the new key is RSA-2048");

    ok(stat(path_in_tmp("quay.pem"), &st) == 0
       && (st.st_mode & 07777) == 0600 && S_ISREG(st.st_mode),
       "the key file is a regular file with mode 0600");

    f = fopen(path_in_tmp("quay.pem"), "r");
    first[0] = '\0';
    if (f != NULL) {
        if (fgets(first, sizeof(first), f) == NULL) {
            first[0] = '\0';
        }
        fclose(f);
    }

    is_str(first, "-----BEGIN PRIVATE KEY-----\n",
           "the key file is PKCS#8 PEM");

    entries = 0;
    d = opendir(tmpdir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        entries += de->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
    }

    is_int(entries, 1, "no temporary file is left behind");

    strcpy(kid, key1.kid);
    rc = quay_jwt_key_load_or_create(path_in_tmp("quay.pem"), &again, &err);
    ok(rc == QUAY_OK && strcmp(again.kid, kid) == 0
       && EVP_PKEY_eq(again.key, key1.key) == 1,
       "reloading the file gives the same key and kid");
    quay_jwt_key_free(&again);

    ok(again.key == NULL && again.kid[0] == '\0',
       "quay_jwt_key_free clears the struct");
    quay_jwt_key_free(&again);
    quay_jwt_key_free(NULL);
    ok(1, "freeing twice and freeing NULL are harmless");

    rc = quay_jwt_key_load_or_create(path_in_tmp("other.pem"), &key2, &err);
    ok(rc == QUAY_OK && strcmp(key2.kid, key1.kid) != 0,
       "a second key file gives another kid");
}


static void
write_file(const char *path, const void *data, size_t len)
{
    FILE  *f;

    f = fopen(path, "w");
    if (f == NULL || fwrite(data, 1, len, f) != len) {
        abort();
    }
    fclose(f);
}


static void
write_key(const char *path, EVP_PKEY *pkey, int traditional,
    int encrypted)
{
    BIO  *bio;
    int   rc;

    bio = BIO_new_file(path, "w");
    if (bio == NULL) {
        abort();
    }

    if (encrypted) {
        rc = PEM_write_bio_PrivateKey(bio, pkey, EVP_aes_128_cbc(), NULL, 0,
                                      NULL, (void *) "secret");
    } else if (traditional) {
        rc = PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0,
                                                  NULL, NULL);
    } else {
        rc = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
    }

    if (rc != 1) {
        abort();
    }

    BIO_free(bio);
}


static void
bad_key_file(const char *name, int want, const char *what)
{
    int             rc;
    quay_err_t      err;
    quay_jwt_key_t  k;

    err.msg[0] = '\0';
    rc = quay_jwt_key_load_or_create(path_in_tmp(name), &k, &err);

    if (!ok(rc == want && k.key == NULL
            && strstr(err.msg, path_in_tmp(name)) != NULL, what))
    {
        printf("#   rc %d: %s\n", rc, err.msg);
    }
}


static void
test_key_formats(void)
{
    int              rc;
    char            *jwk;
    EVP_PKEY        *ec, *small;
    quay_err_t       err;
    quay_jwt_key_t   k;

    /* PKCS#1 "RSA PRIVATE KEY", as Quay's boot.py writes conf/quay.pem */
    write_key(path_in_tmp("pkcs1.pem"), key1.key, 1, 0);
    rc = quay_jwt_key_load_or_create(path_in_tmp("pkcs1.pem"), &k, &err);
    ok(rc == QUAY_OK && strcmp(k.kid, key1.kid) == 0,
       "a PKCS#1 PEM file of the same key loads with the same kid");
    quay_jwt_key_free(&k);

    write_file(path_in_tmp("garbage.pem"), "hello\n", 6);
    bad_key_file("garbage.pem", QUAY_EINVAL,
                 "a file without a PEM key is refused, naming the path");

    write_file(path_in_tmp("empty.pem"), "", 0);
    bad_key_file("empty.pem", QUAY_EINVAL, "an empty key file is refused");

    write_key(path_in_tmp("encrypted.pem"), key1.key, 0, 1);
    bad_key_file("encrypted.pem", QUAY_EINVAL,
                 "an encrypted key is refused without prompting");

    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    write_key(path_in_tmp("ec.pem"), ec, 0, 0);
    bad_key_file("ec.pem", QUAY_EINVAL, "an EC key is refused");
    EVP_PKEY_free(ec);

    small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
    write_key(path_in_tmp("small.pem"), small, 0, 0);
    bad_key_file("small.pem", QUAY_EINVAL, "an RSA-1024 key is refused");

    k.key = small;
    strcpy(k.kid, "small");
    jwk = quay_jwt_key_public_jwk(&k);
    rc = jwk != NULL ? quay_jwt_key_from_jwk(jwk, strlen(jwk), &k, &err)
                     : -99;
    ok(rc == QUAY_EINVAL && k.key == NULL && strstr(err.msg, "1024"),
       "the JWK of an RSA-1024 key is refused");
    free(jwk);
    EVP_PKEY_free(small);

    ok(mkdir(path_in_tmp("dir.pem"), 0700) == 0, "made a directory");
    bad_key_file("dir.pem", QUAY_EINVAL, "a directory is refused");

    bad_key_file("no/such/dir/quay.pem", QUAY_EIO,
                 "an uncreatable path is QUAY_EIO, naming the path");

    rc = quay_jwt_key_load_or_create("", &k, NULL);
    is_int(rc, QUAY_EINVAL, "an empty path is refused (err may be NULL)");
}


/* Several processes create the same missing file at once: all must end up
 * with the one key that is on disk. */
static void
test_key_race(void)
{
    int             i, fds[2], status, same;
    char            kids[4][QUAY_JWT_KID_SIZE];
    pid_t           pids[4];
    quay_jwt_key_t  k;

    if (pipe(fds) != 0) {
        abort();
    }

    for (i = 0; i < 4; i++) {
        pids[i] = fork();

        if (pids[i] == 0) {
            memset(kids[0], 0, sizeof(kids[0]));
            if (quay_jwt_key_load_or_create(path_in_tmp("race.pem"), &k,
                                            NULL) == QUAY_OK)
            {
                memcpy(kids[0], k.kid, sizeof(k.kid));
            }
            if (write(fds[1], kids[0], sizeof(kids[0]))
                != (ssize_t) sizeof(kids[0]))
            {
                _exit(1);
            }
            _exit(0);
        }
    }

    close(fds[1]);
    same = 1;

    for (i = 0; i < 4; i++) {
        if (read(fds[0], kids[i], sizeof(kids[i]))
            != (ssize_t) sizeof(kids[i]))
        {
            same = 0;
        }
    }

    close(fds[0]);

    for (i = 0; i < 4; i++) {
        (void) waitpid(pids[i], &status, 0);
    }

    for (i = 1; i < 4; i++) {
        same = same && kids[i][0] != '\0' && strcmp(kids[i], kids[0]) == 0;
    }

    ok(same && quay_jwt_key_load_or_create(path_in_tmp("race.pem"), &k,
                                           NULL) == QUAY_OK
       && strcmp(k.kid, kids[0]) == 0,
       "4 processes racing to create the key file all get the key on disk");
    quay_jwt_key_free(&k);
}


static void
test_jwk(void)
{
    int              rc;
    char            *jwk, *jwk2, *token, text[2048];
    json_t          *obj;
    quay_err_t       err;
    quay_jwt_key_t   pub;

    jwk = quay_jwt_key_public_jwk(&key1);
    obj = jwk != NULL ? json_loads(jwk, 0, NULL) : NULL;

    ok(obj != NULL
       && strcmp(json_string_value(json_object_get(obj, "kty")), "RSA") == 0
       && strcmp(json_string_value(json_object_get(obj, "e")), "AQAB") == 0
       && strcmp(json_string_value(json_object_get(obj, "kid")), key1.kid)
          == 0
       && strcmp(json_string_value(json_object_get(obj, "alg")), "RS256")
          == 0
       && strcmp(json_string_value(json_object_get(obj, "use")), "sig")
          == 0
       && strlen(json_string_value(json_object_get(obj, "n"))) == 342
       && json_object_get(obj, "d") == NULL
       && json_object_size(obj) == 6,
       "public JWK has kty, n (2048 bits), e, kid, alg, use and no d");
    json_decref(obj);

    rc = quay_jwt_key_from_jwk(jwk, strlen(jwk), &pub, &err);
    ok(rc == QUAY_OK && strcmp(pub.kid, key1.kid) == 0
       && EVP_PKEY_eq(pub.key, key1.key) == 1,
       "JWK import gives the same public key and kid");

    jwk2 = quay_jwt_key_public_jwk(&pub);
    ok(jwk2 != NULL && strcmp(jwk, jwk2) == 0,
       "export of the imported key is identical");
    free(jwk2);

    token = quay_jwt_sign_rs256(&key1, good_claims(),
                                strlen(good_claims()), &err);
    is_int(verify(token, &pub, &err), QUAY_OK,
           "a token signed by the key verifies with its imported JWK");
    free(token);

    token = quay_jwt_sign_rs256(&pub, good_claims(), strlen(good_claims()),
                                &err);
    ok(token == NULL && err.code == QUAY_ERROR,
       "signing with a public-only key fails cleanly");
    quay_jwt_key_free(&pub);

    /* RFC 7638 section 3.1 */
    (void) snprintf(text, sizeof(text),
                    "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\","
                    "\"alg\":\"RS256\"}", RFC7638_N);
    rc = quay_jwt_key_from_jwk(text, strlen(text), &pub, &err);
    ok(rc == QUAY_OK && strcmp(pub.kid, RFC7638_THUMBPRINT) == 0,
       "a JWK without kid gets the RFC 7638 thumbprint (RFC's vector)");
    quay_jwt_key_free(&pub);

    (void) snprintf(text, sizeof(text),
                    "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\","
                    "\"kid\":\"2011-04-29\"}", RFC7638_N);
    rc = quay_jwt_key_from_jwk(text, strlen(text) - 1, &pub, &err);
    is_int(rc, QUAY_EINVAL, "a truncated JWK is refused (len honoured)");
    rc = quay_jwt_key_from_jwk(text, strlen(text), &pub, &err);
    ok(rc == QUAY_OK && strcmp(pub.kid, "2011-04-29") == 0,
       "a JWK's own kid is kept");
    quay_jwt_key_free(&pub);

#define BAD_JWK(fmt, name)                                                  \
    do {                                                                    \
        (void) snprintf(text, sizeof(text), fmt, RFC7638_N);                \
        err.msg[0] = '\0';                                                  \
        rc = quay_jwt_key_from_jwk(text, strlen(text), &pub, &err);         \
        if (!ok(rc == QUAY_EINVAL && pub.key == NULL, name)) {              \
            printf("#   rc %d %s\n", rc, err.msg);                          \
        }                                                                   \
    } while (0)

    BAD_JWK("{\"kty\":\"EC\",\"n\":\"%s\",\"e\":\"AQAB\"}",
            "JWK with kty EC is refused");
    BAD_JWK("{\"n\":\"%s\",\"e\":\"AQAB\"}", "JWK without kty is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"alg\":\"RS512\"}",
            "JWK with alg RS512 is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"alg\":\"HS256\"}",
            "JWK with alg HS256 is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"use\":\"enc\"}",
            "JWK with use enc is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s=\",\"e\":\"AQAB\"}",
            "JWK with padded n is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"x\":\"%s\",\"e\":\"AQAB\"}",
            "JWK without n is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAA\"}",
            "JWK with an even e is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}",
            "JWK with e = 1 is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQABAQABAQAB\"}",
            "JWK with a 72-bit e is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"kid\":\"a\\\"b\"}",
            "JWK with a quote in kid is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"kid\":\"\"}",
            "JWK with an empty kid is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"kid\":7}",
            "JWK with a numeric kid is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}",
            "JWK with duplicate members is refused");
    BAD_JWK("[\"%s\"]", "a JSON array is not a JWK");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"} %s",
            "trailing garbage after a JWK is refused");
    BAD_JWK("{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"x\":\"%.1s\"}",
            "a JWK with a tiny n is refused");

    free(jwk);
}


static void
test_sign_verify(void)
{
    int                 rc;
    char               *token, *copy, *dot;
    json_t             *claims, *access;
    size_t              len;
    quay_err_t          err;
    quay_jwt_header_t   hdr;
    const char         *c;

    c = good_claims();
    token = quay_jwt_sign_rs256(&key1, c, strlen(c), &err);
    ok(token != NULL, "sign succeeds");

    len = strlen(token);
    claims = NULL;
    rc = quay_jwt_verify_rs256(token, len, &key1, AUD, ISS, NOW, LEEWAY,
                               MAX_LIFE, &claims, &err);
    is_int(rc, QUAY_OK, "the signed token verifies");

    access = json_array_get(json_object_get(claims, "access"), 0);
    ok(claims != NULL
       && strcmp(json_string_value(json_object_get(claims, "sub")), "alice")
          == 0
       && strcmp(json_string_value(json_object_get(access, "name")),
                 "ns/repo") == 0
       && json_array_size(json_object_get(access, "actions")) == 2,
       "the claims come back (sub, access)");
    json_decref(claims);

    rc = quay_jwt_peek_header(token, len, &hdr, &err);
    ok(rc == QUAY_OK && strcmp(hdr.alg, "RS256") == 0
       && strcmp(hdr.kid, key1.kid) == 0,
       "peek finds alg RS256 and the key's kid");

    dot = strchr(token, '.');
    {
        size_t          n;
        unsigned char   h[256];

        ok(quay_base64url_decode(token, dot - token, h, &n) == QUAY_OK
           && n < sizeof(h) && (h[n] = '\0', 1)
           && strstr((char *) h, "\"typ\":\"JWT\"") != NULL
           && strncmp((char *) h, "{\"alg\":\"RS256\"", 14) == 0,
           "header is {\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":...}");
    }

    /* exact-size, non-NUL-terminated copy: ASan catches any over-read */
    copy = malloc(len);
    memcpy(copy, token, len);
    is_int(quay_jwt_verify_rs256(copy, len, &key1, AUD, ISS, NOW, LEEWAY,
                                 MAX_LIFE, NULL, &err), QUAY_OK,
           "verify reads only len bytes (no NUL needed)");
    is_int(quay_jwt_peek_header(copy, len, &hdr, &err), QUAY_OK,
           "peek reads only len bytes");
    free(copy);

    is_int(quay_jwt_verify_rs256(token, len, &key1, AUD, ISS, NOW, LEEWAY,
                                 MAX_LIFE, NULL, NULL), QUAY_OK,
           "verify works with err == NULL");

    rejects(token, &key2, "kid", "a token verified with another key fails "
            "on kid");
    free(token);

    /* claims given as (ptr, len) inside a larger buffer */
    {
        char  buf[1200];

        (void) snprintf(buf, sizeof(buf), "%sGARBAGE", c);
        token = quay_jwt_sign_rs256(&key1, buf, strlen(c), &err);
        is_int(token != NULL ? verify(token, &key1, &err) : -99, QUAY_OK,
               "sign uses exactly len bytes of the claims");
        free(token);
    }

    token = quay_jwt_sign_rs256(&key1, "[1,2]", 5, &err);
    ok(token == NULL && err.code == QUAY_EINVAL,
       "sign refuses claims that are not an object");
    token = quay_jwt_sign_rs256(&key1, "{\"a\":1,\"a\":2}", 13, &err);
    ok(token == NULL && err.code == QUAY_EINVAL,
       "sign refuses claims with duplicate members");
    token = quay_jwt_sign_rs256(&key1, "{\"a\":1", 6, &err);
    ok(token == NULL && err.code == QUAY_EINVAL,
       "sign refuses truncated claims");
    token = quay_jwt_sign_rs256(NULL, "{}", 2, NULL);
    ok(token == NULL, "sign without a key fails (err may be NULL)");
}


static void
test_tampering(void)
{
    static const char  admin_claims[] =
        "{\"iss\":\"quay\",\"aud\":\"" AUD "\",\"sub\":\"admin\","
        "\"exp\":1700003600,\"iat\":1700000000}";

    int          good;
    char        *token, *other, *forged, *dot1, *dot2;
    size_t       len, i;
    quay_err_t   err;

    token = quay_jwt_sign_rs256(&key1, good_claims(), strlen(good_claims()),
                                &err);
    other = quay_jwt_sign_rs256(&key1, admin_claims, strlen(admin_claims),
                                &err);
    len = strlen(token);

    /* payload of one token, signature of the other */
    dot1 = strchr(token, '.');
    dot2 = strrchr(token, '.');
    forged = malloc(len + strlen(other) + 1);
    memcpy(forged, token, dot1 - token + 1);
    strcpy(forged + (dot1 - token + 1), strchr(other, '.') + 1);
    *strrchr(forged, '.') = '\0';
    strcat(forged, dot2);
    rejects(forged, &key1, "signature", "a swapped payload fails the "
            "signature check");
    free(forged);

    forged = strdup(token);
    i = (dot2 - token) + 10;
    forged[i] = forged[i] == 'A' ? 'B' : 'A';
    rejects(forged, &key1, "signature", "a changed signature character "
            "fails");
    free(forged);

    forged = strdup(token);
    i = (dot1 - token) + 5;
    forged[i] = forged[i] == 'A' ? 'B' : 'A';
    rejects(forged, &key1, "signature", "a changed payload character "
            "fails");
    free(forged);

    /* the last character of a 256-byte signature carries 4 unused bits:
     * re-spelling it must not verify */
    forged = strdup(token);
    forged[len - 1] = forged[len - 1] == 'A' ? 'B' : forged[len - 1] + 1;
    ok(verify(forged, &key1, &err) != QUAY_OK,
       "a re-spelled last signature character is refused");
    free(forged);

    /* signature cut short by one byte */
    forged = strdup(token);
    forged[len - 4] = '\0';
    ok(verify(forged, &key1, &err) != QUAY_OK,
       "a truncated signature is refused");
    free(forged);

    /* every single-byte change and every truncation fails */
    good = 1;
    forged = malloc(len);
    for (i = 0; i < len; i++) {
        memcpy(forged, token, len);
        forged[i] ^= 0x01;
        if (quay_jwt_verify_rs256(forged, len, &key1, AUD, ISS, NOW, LEEWAY,
                                  MAX_LIFE, NULL, &err) == QUAY_OK)
        {
            good = 0;
            printf("#   flip at %zu verified\n", i);
        }
        if (quay_jwt_verify_rs256(token, i, &key1, AUD, ISS, NOW, LEEWAY,
                                  MAX_LIFE, NULL, &err) == QUAY_OK)
        {
            good = 0;
            printf("#   truncation to %zu verified\n", i);
        }
    }
    free(forged);
    ok(good, "no bit flip at any position and no truncation verifies");

    free(token);
    free(other);
}


static void
test_alg_attacks(void)
{
    char            *token, *input, *pem, *der_buf;
    BIO             *bio;
    long             pem_len;
    size_t           len;
    const char      *c;
    unsigned char   *der;
    int              der_len;

    c = good_claims();

    /* alg none, empty signature */
    input = signing_input(header_text("none", key1.kid, ""), c);
    len = strlen(input);
    token = malloc(len + 2);
    memcpy(token, input, len);
    memcpy(token + len, ".", 2);
    rejects(token, &key1, "alg", "alg none with an empty signature is "
            "rejected");
    free(token);
    free(input);

    token = signing_input(header_text("None", key1.kid, ""), c);
    token = append_sig(token, (unsigned char *) "x", 1);
    rejects(token, &key1, "alg", "alg None is rejected");
    free(token);

    /* alg none carrying a real RS256 signature of the same input */
    token = rsa_token(key1.key, "SHA256", header_text("none", key1.kid, ""),
                      c);
    rejects(token, &key1, "alg", "alg none with a valid RSA signature is "
            "rejected");
    free(token);

    /* HS256 keyed with the public key, as PEM and as DER */
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key1.key) != 1) {
        abort();
    }
    pem_len = BIO_get_mem_data(bio, &pem);

    token = hs256_token((unsigned char *) pem, (size_t) pem_len,
                        header_text("HS256", key1.kid, ""), c);
    rejects(token, &key1, "alg", "HS256 keyed with the PEM public key is "
            "rejected");
    free(token);
    BIO_free(bio);

    der = NULL;
    der_len = i2d_PUBKEY(key1.key, &der);
    der_buf = (char *) der;
    token = hs256_token(der, (size_t) der_len,
                        header_text("HS256", key1.kid, ""), c);
    rejects(token, &key1, "alg", "HS256 keyed with the DER public key is "
            "rejected");
    free(token);
    OPENSSL_free(der_buf);

    /* other RSA algorithms, validly signed */
    token = rsa_token(key1.key, "SHA512", header_text("RS512", key1.kid, ""),
                      c);
    rejects(token, &key1, "alg", "RS512 (validly signed) is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA512", header_text("RS256", key1.kid, ""),
                      c);
    rejects(token, &key1, "signature", "RS256 header over a SHA-512 "
            "signature is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA256", header_text("rs256", key1.kid, ""),
                      c);
    rejects(token, &key1, "alg", "alg rs256 (lower case) is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA256", header_text("PS256", key1.kid, ""),
                      c);
    rejects(token, &key1, "alg", "PS256 is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA256",
                      "{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"x\"}", c);
    malformed(token, strlen(token), "a header with two alg members is "
              "malformed");
    free(token);

    token = rsa_token(key1.key, "SHA256", "{\"kid\":\"x\"}", c);
    malformed(token, strlen(token), "a header without alg is malformed");
    free(token);

    token = rsa_token(key1.key, "SHA256", "{\"alg\":256}", c);
    malformed(token, strlen(token), "a numeric alg is malformed");
    free(token);
}


static void
test_header_keys(void)
{
    char        *jwk, *token, extra[1024];
    const char  *c;
    size_t       i;

    static const char  *const members[] = {
        ",\"jku\":\"https://evil.example/jwks.json\"",
        ",\"x5u\":\"https://evil.example/cert.pem\"",
        ",\"x5c\":[\"MIIBszCCAVmgAwIBAgIUZ\"]",
        ",\"crit\":[\"exp\"]",
    };
    static const char  *const names[] = { "jku", "x5u", "x5c", "crit" };

    c = good_claims();

    /* the attacker's own key embedded, token signed by the attacker */
    jwk = quay_jwt_key_public_jwk(&key2);
    (void) snprintf(extra, sizeof(extra), ",\"jwk\":%s", jwk);
    token = rsa_token(key2.key, "SHA256",
                      header_text("RS256", key1.kid, extra), c);
    rejects(token, &key1, "jwk", "an embedded attacker jwk with the "
            "trusted kid is rejected");
    free(token);
    free(jwk);

    /* even the trusted key itself, validly signed, is refused inline */
    jwk = quay_jwt_key_public_jwk(&key1);
    (void) snprintf(extra, sizeof(extra), ",\"jwk\":%s", jwk);
    token = rsa_token(key1.key, "SHA256",
                      header_text("RS256", key1.kid, extra), c);
    rejects(token, &key1, "jwk", "a header jwk is refused even when the "
            "token is validly signed");
    free(token);
    free(jwk);

    for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        token = rsa_token(key1.key, "SHA256",
                          header_text("RS256", key1.kid, members[i]), c);
        (void) snprintf(extra, sizeof(extra), "a validly signed token with "
                        "a \"%s\" header is rejected", names[i]);
        rejects(token, &key1, names[i], extra);
        free(token);
    }

    /* kid */
    token = rsa_token(key2.key, "SHA256",
                      header_text("RS256", key2.kid, ""), c);
    rejects(token, &key1, "kid", "another key's kid is rejected");
    free(token);

    token = rsa_token(key2.key, "SHA256",
                      header_text("RS256", key1.kid, ""), c);
    rejects(token, &key1, "signature", "another key's signature under the "
            "trusted kid is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA256",
                      "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", c);
    rejects(token, &key1, "kid", "a token without kid is rejected");
    free(token);

    token = rsa_token(key1.key, "SHA256", "{\"alg\":\"RS256\",\"kid\":"
                      "\"0123456789012345678901234567890123456789012345678"
                      "901234567890123\"}", c);
    malformed(token, strlen(token), "a 64-character kid is malformed");
    free(token);

    token = rsa_token(key1.key, "SHA256", "{\"alg\":\"RS256\",\"kid\":"
                      "\"a b\"}", c);
    malformed(token, strlen(token), "a kid with a space is malformed");
    free(token);
}


static void
test_claims(void)
{
    char  buf[1024];

    is_int(verify_claims(good_claims()), QUAY_OK, "good claims verify");

#define CLAIMS(fmt, ...)                                                    \
    ((void) snprintf(buf, sizeof(buf), fmt, __VA_ARGS__), buf)

    /* aud and iss */
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"exp\":%lld}", "other.example.com",
                                NOW + 60)),
           QUAY_ERROR, "a wrong aud is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"exp\":%lld}", AUD "x", NOW + 60)),
           QUAY_ERROR, "an aud with a suffix is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"exp\":%lld}",
                                NOW + 60)),
           QUAY_ERROR, "a missing aud is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":[\"a\",\"%s\"],"
                                "\"exp\":%lld,\"iat\":%lld}", AUD, NOW + 60,
                                NOW)),
           QUAY_OK, "an aud array containing the audience is accepted");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":[\"a\",%s],"
                                "\"exp\":%lld}", "7", NOW + 60)),
           QUAY_ERROR, "an aud array without the audience is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":%s,"
                                "\"exp\":%lld}", "[]", NOW + 60)),
           QUAY_ERROR, "an empty aud array is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"evil\",\"aud\":\"%s\","
                                "\"exp\":%lld}", AUD, NOW + 60)),
           QUAY_ERROR, "a wrong iss is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":%s,\"aud\":\"" AUD "\","
                                "\"exp\":%lld}", "null", NOW + 60)),
           QUAY_ERROR, "a null iss is rejected");
    is_int(verify_claims(CLAIMS("{\"aud\":\"%s\",\"exp\":%lld}", AUD,
                                NOW + 60)),
           QUAY_ERROR, "a missing iss is rejected");

    /* exp */
    is_int(verify_claims(claims_text(NOW - 3600, NOW - 3600, NOW - 31)),
           QUAY_ERROR, "expired 31 s ago (leeway 30) is rejected");
    is_int(verify_claims(claims_text(NOW - 3600, NOW - 3600, NOW - 30)),
           QUAY_ERROR, "exp == now - leeway is rejected");
    is_int(verify_claims(claims_text(NOW - 3600, NOW - 3600, NOW - 29)),
           QUAY_OK, "expired 29 s ago is within the leeway");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld}", AUD, NOW)),
           QUAY_ERROR, "a missing exp is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld,\"exp\":\"%lld\"}", AUD, NOW,
                                NOW + 60)),
           QUAY_ERROR, "a string exp is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld,\"exp\":%s}", AUD, NOW,
                                "true")),
           QUAY_ERROR, "a boolean exp is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld,\"exp\":%s}", AUD, NOW,
                                "1e300")),
           QUAY_ERROR, "an absurd exp (1e300) is rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld,\"exp\":%lld.5}", AUD, NOW,
                                NOW - LEEWAY)),
           QUAY_OK, "a fractional exp just past now - leeway is accepted");

    /* nbf and iat */
    is_int(verify_claims(claims_text(NOW, NOW + 31, NOW + 600)),
           QUAY_ERROR, "nbf 31 s ahead (leeway 30) is rejected");
    is_int(verify_claims(claims_text(NOW, NOW + 30, NOW + 600)),
           QUAY_OK, "nbf 30 s ahead is within the leeway");
    is_int(verify_claims(claims_text(NOW + 31, NOW, NOW + 600)),
           QUAY_ERROR, "iat 31 s ahead is rejected");
    is_int(verify_claims(claims_text(NOW + 30, NOW, NOW + 600)),
           QUAY_OK, "iat 30 s ahead is within the leeway");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"iat\":%lld,\"nbf\":\"x\",\"exp\":%lld}",
                                AUD, NOW, NOW + 60)),
           QUAY_ERROR, "a string nbf is rejected");

    /* lifetime (REGISTRY_JWT_AUTH_MAX_FRESH_S) */
    is_int(verify_claims(claims_text(NOW, NOW, NOW + MAX_LIFE)),
           QUAY_OK, "a lifetime of exactly the maximum is accepted");
    is_int(verify_claims(claims_text(NOW, NOW, NOW + MAX_LIFE + 1)),
           QUAY_ERROR, "a lifetime one second too long is rejected");
    is_int(verify_claims(claims_text(NOW - 100, NOW, NOW + MAX_LIFE)),
           QUAY_ERROR, "an old iat makes the lifetime too long");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"exp\":%lld}", AUD, NOW + 60)),
           QUAY_ERROR, "without iat or nbf the lifetime is unbounded: "
           "rejected");
    is_int(verify_claims(CLAIMS("{\"iss\":\"quay\",\"aud\":\"%s\","
                                "\"nbf\":%lld,\"exp\":%lld}", AUD, NOW,
                                NOW + 60)),
           QUAY_OK, "nbf alone bounds the lifetime");

    {
        int          rc;
        char        *token;
        const char  *c;
        quay_err_t   err;

        c = claims_text(NOW, NOW, NOW + 100000);
        token = quay_jwt_sign_rs256(&key1, c, strlen(c), &err);
        rc = quay_jwt_verify_rs256(token, strlen(token), &key1, AUD, ISS,
                                   NOW, LEEWAY, 0, NULL, &err);
        is_int(rc, QUAY_OK, "max_lifetime_s 0 disables the lifetime check");

        rc = quay_jwt_verify_rs256(token, strlen(token), &key1, NULL, ISS,
                                   NOW, LEEWAY, 0, NULL, &err);
        is_int(rc, QUAY_EINVAL, "a NULL audience is refused");
        free(token);

        token = quay_jwt_sign_rs256(&key1, "{}", 2, &err);
        rejects(token, &key1, "iss", "an empty claims object is rejected");
        free(token);
    }
}


static void
test_malformed(void)
{
    char        *token, *big, *h, *p, buf[512];
    size_t       len, n;
    const char  *c;

    c = good_claims();
    token = quay_jwt_sign_rs256(&key1, c, strlen(c), NULL);
    len = strlen(token);

    malformed("", 0, "an empty token is malformed");
    malformed(NULL, 0, "a NULL token is malformed");
    malformed("abc", 3, "one part is malformed");
    malformed("abc.def", 7, "two parts are malformed");
    malformed("..", 2, "three empty parts are malformed");
    malformed(".e30.", 5, "an empty header is malformed");
    malformed("e30..", 5, "an empty payload is malformed");

    (void) snprintf(buf, sizeof(buf), "%s.x", "a.b.c");
    malformed(buf, strlen(buf), "four parts are malformed");

    big = malloc(len + 3);
    memcpy(big, token, len);
    memcpy(big + len, ".x", 3);
    malformed(big, len + 2, "a valid token plus a fourth part is malformed");
    memcpy(big, token, len);
    memcpy(big + len, "=", 2);
    malformed(big, len + 1, "a valid token with '=' padding is malformed");
    memcpy(big, token, len);
    big[5] = '+';
    malformed(big, len, "a '+' in the header is malformed");
    memcpy(big, token, len);
    big[len - 3] = '/';
    malformed(big, len, "a '/' in the signature is malformed");
    memcpy(big, token, len);
    big[len - 3] = ' ';
    malformed(big, len, "a space in the signature is malformed");
    memcpy(big, token, len);
    big[len - 3] = '\0';
    malformed(big, len, "a NUL inside the length is malformed");
    free(big);

#define HEADER(json, name)                                                  \
    do {                                                                    \
        h = b64url(json, sizeof(json) - 1);                                 \
        p = b64url(c, strlen(c));                                           \
        (void) snprintf(buf, sizeof(buf), "%s.%.40s.AAAA", h, p);           \
        malformed(buf, strlen(buf), name);                                  \
        free(h);                                                            \
        free(p);                                                            \
    } while (0)

    HEADER("[\"RS256\"]", "a header that is an array is malformed");
    HEADER("\"RS256\"", "a header that is a string is malformed");
    HEADER("123", "a header that is a number is malformed");
    HEADER("{\"alg\":\"RS256\"", "a truncated header is malformed");
    HEADER("{\"alg\":\"RS256\"} {}", "trailing data after the header is "
           "malformed");
    HEADER("{\"alg\":\"RS256\\u0000\"}", "a NUL escape in alg is malformed");
    HEADER("{\"alg\":\"RS256RS256RS256RS256\"}", "a 20-byte alg is "
           "malformed");
    HEADER("{\"alg\":\"\xff\"}", "invalid UTF-8 is malformed");
    HEADER("", "an empty decoded header is malformed");

    /* payload that is not JSON, validly signed */
    {
        char  *t;

        t = rsa_token(key1.key, "SHA256",
                      header_text("RS256", key1.kid, ""), "not json");
        ok(quay_jwt_verify_rs256(t, strlen(t), &key1, AUD, ISS, NOW, LEEWAY,
                                 MAX_LIFE, NULL, NULL) == QUAY_EINVAL,
           "a signed payload that is not JSON is malformed");
        free(t);

        t = rsa_token(key1.key, "SHA256",
                      header_text("RS256", key1.kid, ""), "[1]");
        ok(quay_jwt_verify_rs256(t, strlen(t), &key1, AUD, ISS, NOW, LEEWAY,
                                 MAX_LIFE, NULL, NULL) == QUAY_EINVAL,
           "a signed payload that is an array is malformed");
        free(t);
    }

    /* huge: 2 MiB, and just over the limit with a valid shape */
    n = 2 * 1024 * 1024;
    big = malloc(n);
    memset(big, 'A', n);
    big[100] = '.';
    big[200] = '.';
    malformed(big, n, "a 2 MiB token is malformed (rejected by size)");

    n = QUAY_JWT_MAX_LEN + 1;
    memcpy(big, token, len);
    memset(big + len, 'A', n - len);
    malformed(big, n, "a token one byte over QUAY_JWT_MAX_LEN is "
              "malformed");
    free(big);

    /* a deeply nested header */
    n = 100000;
    big = malloc(n);
    memset(big, '[', n);
    h = b64url(big, n);
    free(big);
    big = malloc(strlen(h) + 16);
    (void) snprintf(big, strlen(h) + 16, "%s.e30.AAAA", h);
    malformed(big, strlen(big), "a header nested 100,000 levels deep is "
              "malformed");
    free(big);
    free(h);

    free(token);
}


static void
test_peek(void)
{
    int                 rc;
    char               *token;
    quay_err_t          err;
    quay_jwt_header_t   hdr;

    token = rsa_token(key1.key, "SHA256", "{\"alg\":\"RS256\"}", "{}");
    rc = quay_jwt_peek_header(token, strlen(token), &hdr, &err);
    ok(rc == QUAY_OK && strcmp(hdr.alg, "RS256") == 0 && hdr.kid[0] == '\0',
       "peek of a header without kid gives an empty kid");
    free(token);

    token = rsa_token(key1.key, "SHA256",
                      "{\"alg\":\"none\",\"kid\":\"k1\"}", "{}");
    rc = quay_jwt_peek_header(token, strlen(token), &hdr, &err);
    ok(rc == QUAY_OK && strcmp(hdr.alg, "none") == 0
       && strcmp(hdr.kid, "k1") == 0,
       "peek reports alg and kid without judging them");
    free(token);
}


/* two threads sign and verify with the same key at the same time */
static void *
thread_main(void *arg)
{
    int          i;
    long         failures;
    char        *token;
    const char  *c;

    c = arg;
    failures = 0;

    for (i = 0; i < 50; i++) {
        token = quay_jwt_sign_rs256(&key1, c, strlen(c), NULL);
        if (token == NULL
            || quay_jwt_verify_rs256(token, strlen(token), &key1, AUD, ISS,
                                     NOW, LEEWAY, MAX_LIFE, NULL, NULL)
               != QUAY_OK)
        {
            failures++;
        }
        free(token);
    }

    return (void *) failures;
}


static void
test_threads(void)
{
    int        i;
    char      *claims;
    void      *result;
    long       failures;
    pthread_t  threads[4];

    /* a private copy: good_claims() returns a static buffer */
    claims = strdup(good_claims());
    failures = 0;

    for (i = 0; i < 4; i++) {
        if (pthread_create(&threads[i], NULL, thread_main, claims) != 0) {
            abort();
        }
    }

    for (i = 0; i < 4; i++) {
        (void) pthread_join(threads[i], &result);
        failures += (long) result;
    }

    free(claims);

    is_int(failures, 0, "4 threads x 50 sign+verify with one key all "
           "succeed");
}


static void
test_timing(void)
{
    int          i, n_sign, n_verify, good;
    char        *token;
    double       t0, t_sign, t_verify;
    const char  *c;

    c = good_claims();
    n_sign = 50;
    n_verify = 500;
    good = 1;

    token = NULL;
    t0 = seconds();
    for (i = 0; i < n_sign; i++) {
        free(token);
        token = quay_jwt_sign_rs256(&key1, c, strlen(c), NULL);
        good = good && token != NULL;
    }
    t_sign = (seconds() - t0) / n_sign;

    t0 = seconds();
    for (i = 0; i < n_verify && token != NULL; i++) {
        good = good && quay_jwt_verify_rs256(token, strlen(token), &key1,
                                             AUD, ISS, NOW, LEEWAY,
                                             MAX_LIFE, NULL, NULL)
                       == QUAY_OK;
    }
    t_verify = (seconds() - t0) / n_verify;

    ok(good, "timed sign and verify loops all succeed");
    printf("# RS256-2048 sign:   %.3f ms per token (%d runs)\n",
           t_sign * 1e3, n_sign);
    printf("# RS256-2048 verify: %.3f ms per token (%d runs, %zu bytes)\n",
           t_verify * 1e3, n_verify, token != NULL ? strlen(token) : 0);
    free(token);
}


static void
cleanup_tmp(void)
{
    DIR            *d;
    char            path[512];
    struct dirent  *de;

    d = opendir(tmpdir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        (void) snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
        if (unlink(path) != 0) {
            (void) rmdir(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    (void) rmdir(tmpdir);
}


int
main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    test_key_file();
    test_key_formats();
    test_key_race();
    test_jwk();
    test_sign_verify();
    test_tampering();
    test_alg_attacks();
    test_header_keys();
    test_claims();
    test_malformed();
    test_peek();
    test_threads();
    test_timing();

    quay_jwt_key_free(&key1);
    quay_jwt_key_free(&key2);
    cleanup_tmp();

    return done_testing();
}
