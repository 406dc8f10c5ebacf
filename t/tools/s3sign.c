/*
 * s3sign: signs one S3 request with lib/quay_sigv4.c and prints the result,
 * so t/storage/test_rgw_sigv4.py can show that a real S3 server (Ceph RGW)
 * accepts what our signer produces.  It is a test tool, not part of the
 * registry: the test compiles it with cc against build/libquay.a.
 *
 *   s3sign [options] METHOD HOST PATH
 *
 *   -q NAME=VALUE   a query parameter, raw (not URI-encoded); repeatable.
 *                   "-q uploads=" is a parameter without value.
 *   -H NAME:VALUE   an extra header to sign; repeatable.
 *   -p HASH         payload hash: 64 hex digits or UNSIGNED-PAYLOAD
 *                   (header signing needs it; presigning defaults to
 *                   UNSIGNED-PAYLOAD and then signs no such header).
 *   -d AMZDATE      YYYYMMDDTHHMMSSZ (required).
 *   -r REGION       default us-east-1.
 *   -a ACCESS -s SECRET   the credentials (required).
 *   -e SECONDS      presign: print the query string of a URL valid that
 *                   long instead of an Authorization header.
 *
 * Header signing signs host, x-amz-date and x-amz-content-sha256 (the
 * caller sends the same values) plus every -H header, and prints the
 * Authorization header value.  PATH is the raw path; the tool encodes it
 * (the caller builds its URL with the same S3 encoding).  Errors go to
 * stderr with exit status 2 (usage) or 1 (the signer refused).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quay_err.h"
#include "quay_sigv4.h"


#define S3SIGN_MAX_FIELDS  32


static void
s3sign_usage(void)
{
    fprintf(stderr, "usage: s3sign [-q name=value]... [-H name:value]... "
            "[-p payload-hash] -d amzdate [-r region] -a access -s secret "
            "[-e expires] METHOD HOST PATH\n");
    exit(2);
}


static void
s3sign_set(const char **p, size_t *len, const char *s)
{
    *p = s;
    *len = strlen(s);
}


/* Splits "name<sep>value" (at the first sep) into a header or parameter;
 * leading spaces of a header value are kept: the signer trims them. */
static int
s3sign_split(const char *arg, int sep, const char **name, size_t *name_len,
    const char **value, size_t *value_len)
{
    const char  *at = strchr(arg, sep);

    if (at == NULL || at == arg) {
        return -1;
    }
    *name = arg;
    *name_len = (size_t) (at - arg);
    s3sign_set(value, value_len, at + 1);
    return 0;
}


int
main(int argc, char **argv)
{
    quay_sigv4_credentials_t  cred;
    quay_sigv4_request_t      req;
    quay_sigv4_header_t       headers[S3SIGN_MAX_FIELDS + 3];
    quay_sigv4_param_t        query[S3SIGN_MAX_FIELDS];
    quay_err_t                err;
    const char               *payload = NULL, *date = NULL;
    const char               *region = "us-east-1";
    const char               *access = NULL, *secret = NULL;
    char                     *out, *end;
    size_t                    nheaders = 0, nquery = 0, len;
    unsigned long             expires = 0;
    int                       c, rc;

    while ((c = getopt(argc, argv, "q:H:p:d:r:a:s:e:")) != -1) {
        switch (c) {
        case 'q':
            if (nquery == S3SIGN_MAX_FIELDS
                || s3sign_split(optarg, '=', &query[nquery].name,
                                &query[nquery].name_len,
                                &query[nquery].value,
                                &query[nquery].value_len) != 0)
            {
                s3sign_usage();
            }
            nquery++;
            break;
        case 'H':
            if (nheaders == S3SIGN_MAX_FIELDS
                || s3sign_split(optarg, ':', &headers[nheaders].name,
                                &headers[nheaders].name_len,
                                &headers[nheaders].value,
                                &headers[nheaders].value_len) != 0)
            {
                s3sign_usage();
            }
            nheaders++;
            break;
        case 'p':
            payload = optarg;
            break;
        case 'd':
            date = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'a':
            access = optarg;
            break;
        case 's':
            secret = optarg;
            break;
        case 'e':
            expires = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || expires == 0) {
                s3sign_usage();
            }
            break;
        default:
            s3sign_usage();
        }
    }
    if (argc - optind != 3 || date == NULL || access == NULL
        || secret == NULL || (expires == 0 && payload == NULL))
    {
        s3sign_usage();
    }

    memset(&err, 0, sizeof(err));
    memset(&cred, 0, sizeof(cred));
    s3sign_set(&cred.access_key, &cred.access_key_len, access);
    s3sign_set(&cred.secret_key, &cred.secret_key_len, secret);
    s3sign_set(&cred.region, &cred.region_len, region);
    s3sign_set(&cred.service, &cred.service_len, "s3");

    memset(&req, 0, sizeof(req));
    s3sign_set(&req.method, &req.method_len, argv[optind]);
    s3sign_set(&req.path, &req.path_len, argv[optind + 2]);
    s3sign_set(&req.amz_date, &req.amz_date_len, date);
    if (payload != NULL) {
        s3sign_set(&req.payload_hash, &req.payload_hash_len, payload);
    }
    req.query = query;
    req.nquery = nquery;
    req.expires = expires;

    s3sign_set(&headers[nheaders].name, &headers[nheaders].name_len, "host");
    s3sign_set(&headers[nheaders].value, &headers[nheaders].value_len,
               argv[optind + 1]);
    nheaders++;
    if (expires == 0) {
        s3sign_set(&headers[nheaders].name, &headers[nheaders].name_len,
                   "x-amz-date");
        s3sign_set(&headers[nheaders].value, &headers[nheaders].value_len,
                   date);
        nheaders++;
        s3sign_set(&headers[nheaders].name, &headers[nheaders].name_len,
                   "x-amz-content-sha256");
        s3sign_set(&headers[nheaders].value, &headers[nheaders].value_len,
                   payload);
        nheaders++;
    }
    req.headers = headers;
    req.nheaders = nheaders;

    /* Measure, then fill: the API's two-call pattern. */
    rc = expires ? quay_sigv4_presign_query(&cred, &req, NULL, 0, &len, &err)
                 : quay_sigv4_sign_headers(&cred, &req, NULL, 0, &len, &err);
    if (rc != QUAY_OK) {
        fprintf(stderr, "s3sign: %s\n", err.msg);
        return 1;
    }
    out = malloc(len + 1);
    if (out == NULL) {
        fprintf(stderr, "s3sign: out of memory\n");
        return 1;
    }
    rc = expires
         ? quay_sigv4_presign_query(&cred, &req, out, len + 1, &len, &err)
         : quay_sigv4_sign_headers(&cred, &req, out, len + 1, &len, &err);
    if (rc != QUAY_OK) {
        fprintf(stderr, "s3sign: %s\n", err.msg);
        free(out);
        return 1;
    }
    printf("%s\n", out);
    free(out);
    return 0;
}
