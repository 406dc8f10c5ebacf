/*
 * Unit tests for lib/quay_sigv4.c against AWS's published SigV4 examples.
 *
 * Sources of the vectors (each vector below names its own):
 *
 *   [SUITE]  AWS General Reference, "Signature Version 4 Test Suite"
 *            (aws-sig-v4-test-suite.zip, 2015): the <case>.req request and
 *            the <case>.creq, <case>.sts and <case>.authz files, with
 *            AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 *            20150830T123600Z, us-east-1, service "service".
 *   [S3HDR]  Amazon S3 API Reference, "Signature Calculations for the
 *            Authorization Header: Transferring Payload in a Single Chunk
 *            (AWS Signature Version 4)", section "Examples: Signature
 *            Calculations": GET Object, PUT Object, GET Bucket Lifecycle,
 *            Get Bucket (List Objects); AKIAIOSFODNN7EXAMPLE /
 *            wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, 20130524T000000Z,
 *            us-east-1, s3.
 *   [S3QRY]  Amazon S3 API Reference, "Authenticating Requests: Using
 *            Query Parameters (AWS Signature Version 4)", "An Example"
 *            (presigned GET of examplebucket/test.txt, 86400 s).
 *   [GRKEY]  AWS General Reference, "Examples of how to derive a signing
 *            key for Signature Version 4" (20120215, us-east-1, iam).
 *   [GRIAM]  AWS General Reference, "Signature Version 4 signing
 *            process", tasks 1 to 4 (the 2011 IAM ListUsers POST example).
 *   [PYREF]  Not from AWS: computed with Python's hashlib/hmac and
 *            urllib.parse.quote from the published rules, for inputs the
 *            AWS examples do not cover (long secrets, a presigned URL with
 *            a session token and awkward parameters).
 *
 * Every expected string is copied byte for byte from the document.  Where
 * a document is known to be wrong or the case does not apply to S3, the
 * vector says so.  The S3 header examples print the Authorization value
 * without a space after its commas; the test suite and S3 itself use (and
 * accept) ", ", which is what we produce, so the expected values here
 * carry the space.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "quay_sha256.h"
#include "quay_sigv4.h"


#define E  QUAY_SIGV4_EMPTY_SHA256
#define MAX_KV  8

typedef struct {
    const char  *name;
    const char  *value;
} kv_t;

enum { CRED_SUITE = 0, CRED_S3, CRED_IAM, CRED_S3_EU };

typedef struct {
    const char     *name;
    int             cred;
    const char     *method;
    const char     *path;
    kv_t            query[MAX_KV];       /* ends at name == NULL */
    kv_t            headers[MAX_KV];     /* ends at name == NULL */
    const char     *payload;             /* NULL: presigned */
    const char     *amz_date;
    unsigned long   expires;
    const char     *creq;
    const char     *sts;
    const char     *signature;
    const char     *output;              /* Authorization or query */
} vector_t;


#define SUITE_DATE  "20150830T123600Z"
#define SUITE_HOST  { "Host", "example.amazonaws.com" }
#define SUITE_XDATE { "X-Amz-Date", SUITE_DATE }
#define SUITE_STS(h)                                                        \
    "AWS4-HMAC-SHA256\n" SUITE_DATE "\n"                                    \
    "20150830/us-east-1/service/aws4_request\n" h
#define SUITE_AUTHZ(sh, sig)                                                \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"   \
    "aws4_request, SignedHeaders=" sh ", Signature=" sig
#define SUITE_HDRS                                                          \
    "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n\n"             \
    "host;x-amz-date\n" E

#define S3_DATE     "20130524T000000Z"
#define S3_HOST     "examplebucket.s3.amazonaws.com"
#define S3_STS(h)                                                           \
    "AWS4-HMAC-SHA256\n" S3_DATE "\n20130524/us-east-1/s3/aws4_request\n" h
#define S3_AUTHZ(sh, sig)                                                   \
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"  \
    "s3/aws4_request, SignedHeaders=" sh ", Signature=" sig

#define UNRESERVED                                                          \
    "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define STS_TOKEN                                                           \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWL"  \
    "WsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQr"  \
    "mGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HF"  \
    "vlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scq"  \
    "Kmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define FORM_TYPE   "application/x-www-form-urlencoded; charset=utf-8"


static const vector_t  vectors[] = {

    /* [SUITE] get-vanilla */
    { "get-vanilla", CRED_SUITE, "GET", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\n\n" SUITE_HDRS,
      SUITE_STS("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c252"
                "92927e63"),
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
      SUITE_AUTHZ("host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372"
                  "ff2a2260956d9b8aae1d763fbf31") },

    /* [SUITE] get-vanilla-query (its .req has no query either) */
    { "get-vanilla-query", CRED_SUITE, "GET", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\n\n" SUITE_HDRS,
      SUITE_STS("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c252"
                "92927e63"),
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
      SUITE_AUTHZ("host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372"
                  "ff2a2260956d9b8aae1d763fbf31") },

    /* [SUITE] get-vanilla-empty-query-key: GET /?Param1=value1 */
    { "get-vanilla-empty-query-key", CRED_SUITE, "GET", "/",
      { { "Param1", "value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\nParam1=value1\n" SUITE_HDRS,
      SUITE_STS("1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282"
                "f7c517ab"),
      "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
      SUITE_AUTHZ("host;x-amz-date", "a67d582fa61cc504c4bae71f336f98b97f1e"
                  "a3c7a6bfe1b6e45aec72011b9aeb") },

    /* [SUITE] get-vanilla-query-order-key: ?Param1=value2&Param1=Value1 */
    { "get-vanilla-query-order-key", CRED_SUITE, "GET", "/",
      { { "Param1", "value2" }, { "Param1", "Value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\nParam1=Value1&Param1=value2\n" SUITE_HDRS,
      SUITE_STS("704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bca"
                "f3d38f89"),
      "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
      SUITE_AUTHZ("host;x-amz-date", "eedbc4e291e521cf13422ffca22be7d2eb81"
                  "46eecf653089df300a15b2382bd1") },

    /* [SUITE] get-vanilla-query-order-key-case: ?Param2=value2&Param1=... */
    { "get-vanilla-query-order-key-case", CRED_SUITE, "GET", "/",
      { { "Param2", "value2" }, { "Param1", "value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\nParam1=value1&Param2=value2\n" SUITE_HDRS,
      SUITE_STS("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39"
                "e2cf19e0"),
      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
      SUITE_AUTHZ("host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b79"
                  "9221646efd99d3219ec94cdf2500") },

    /* [SUITE] get-vanilla-query-order-value: ?Param1=value2&Param1=value1 */
    { "get-vanilla-query-order-value", CRED_SUITE, "GET", "/",
      { { "Param1", "value2" }, { "Param1", "value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\nParam1=value1&Param1=value2\n" SUITE_HDRS,
      SUITE_STS("c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc359"
                "5f884606"),
      "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
      SUITE_AUTHZ("host;x-amz-date", "5772eed61e12b33fae39ee5e7012498b51d5"
                  "6abc0abb7c60486157bd471c4694") },

    /* [SUITE] get-vanilla-query-unreserved */
    { "get-vanilla-query-unreserved", CRED_SUITE, "GET", "/",
      { { UNRESERVED, UNRESERVED } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\n" UNRESERVED "=" UNRESERVED "\n" SUITE_HDRS,
      SUITE_STS("c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6a"
                "ab979177"),
      "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
      SUITE_AUTHZ("host;x-amz-date", "9c3e54bfcdf0b19771a7f523ee5669cdf59b"
                  "c7cc0884027167c21bb143a40197") },

    /* [SUITE] get-vanilla-utf8-query: ?<U+1234>=bar */
    { "get-vanilla-utf8-query", CRED_SUITE, "GET", "/",
      { { "\xe1\x88\xb4", "bar" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/\n%E1%88%B4=bar\n" SUITE_HDRS,
      SUITE_STS("eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb"
                "192a7073"),
      "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
      SUITE_AUTHZ("host;x-amz-date", "2cdec8eed098649ff3a119c94853b13c643b"
                  "cf08f8b0a1d91e12c9027818dd04") },

    /* [SUITE] get-unreserved */
    { "get-unreserved", CRED_SUITE, "GET", "/" UNRESERVED,
      { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/" UNRESERVED "\n\n" SUITE_HDRS,
      SUITE_STS("6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082"
                "757446f9"),
      "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
      SUITE_AUTHZ("host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a"
                  "34d404d0cfa977f52a65bbf5f24f") },

    /* [SUITE] get-utf8: GET /<U+1234> */
    { "get-utf8", CRED_SUITE, "GET", "/\xe1\x88\xb4", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/%E1%88%B4\n\n" SUITE_HDRS,
      SUITE_STS("2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f524"
                "9ac42102"),
      "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
      SUITE_AUTHZ("host;x-amz-date", "8318018e0b0f223aa2bbf98705b62bb787dc"
                  "9c0e678f255a891fd03141be5d85") },

    /* [SUITE] normalize-path/get-space: nothing to normalize, so it
     * applies to S3 as well */
    { "get-space", CRED_SUITE, "GET", "/example space/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "GET\n/example%20space/\n\n" SUITE_HDRS,
      SUITE_STS("63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706e"
                "e9390d86"),
      "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
      SUITE_AUTHZ("host;x-amz-date", "652487583200325589f1fba4c7e578f72c47"
                  "cb61beeca81406b39ddec1366741") },

    /* [SUITE] get-header-key-duplicate */
    { "get-header-key-duplicate", CRED_SUITE, "GET", "/", { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", "value2" }, { "My-Header1", "value2" },
        { "My-Header1", "value1" }, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "GET\n/\n\nhost:example.amazonaws.com\n"
      "my-header1:value2,value2,value1\nx-amz-date:" SUITE_DATE "\n\n"
      "host;my-header1;x-amz-date\n" E,
      SUITE_STS("dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b1552"
                "7fbe966c"),
      "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
      SUITE_AUTHZ("host;my-header1;x-amz-date", "c9d5ea9f3f72853aea855b47"
                  "ea873832890dbdd183b4468f858259531a5138ea") },

    /* [SUITE] get-header-value-multiline.  The .req folds My-Header1 over
     * three lines ("value1", "  value2", "     value3").  Values with line
     * breaks are refused (header injection), so the caller passes each
     * line as one entry, as a proxy unfolding obs-fold would; the .creq
     * joins them with ','. */
    { "get-header-value-multiline", CRED_SUITE, "GET", "/",
      { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", "value1" }, { "My-Header1", "  value2" },
        { "My-Header1", "     value3" }, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "GET\n/\n\nhost:example.amazonaws.com\n"
      "my-header1:value1,value2,value3\nx-amz-date:" SUITE_DATE "\n\n"
      "host;my-header1;x-amz-date\n" E,
      SUITE_STS("b7b6cbfd8a0430b78891e986784da2630c8a135a8595cec25b26ea94"
                "f926ee55"),
      "ba17b383a53190154eb5fa66a1b836cc297cc0a3d70a5d00705980573d8ff790",
      SUITE_AUTHZ("host;my-header1;x-amz-date", "ba17b383a53190154eb5fa66"
                  "a1b836cc297cc0a3d70a5d00705980573d8ff790") },

    /* [SUITE] get-header-value-order */
    { "get-header-value-order", CRED_SUITE, "GET", "/", { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", "value4" }, { "My-Header1", "value1" },
        { "My-Header1", "value3" }, { "My-Header1", "value2" },
        SUITE_XDATE },
      E, SUITE_DATE, 0,
      "GET\n/\n\nhost:example.amazonaws.com\n"
      "my-header1:value4,value1,value3,value2\nx-amz-date:" SUITE_DATE
      "\n\nhost;my-header1;x-amz-date\n" E,
      SUITE_STS("31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e91"
                "37c58b86"),
      "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
      SUITE_AUTHZ("host;my-header1;x-amz-date", "08c7e5a9acfcfeb3ab6b2185"
                  "e75ce8b1deb5e634ec47601a50643f830c755c01") },

    /* [SUITE] get-header-value-trim */
    { "get-header-value-trim", CRED_SUITE, "GET", "/", { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", " value1" },
        { "My-Header2", " \"a   b   c\"" }, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
      "my-header2:\"a b c\"\nx-amz-date:" SUITE_DATE "\n\n"
      "host;my-header1;my-header2;x-amz-date\n" E,
      SUITE_STS("a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68"
                "f28605c7"),
      "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
      SUITE_AUTHZ("host;my-header1;my-header2;x-amz-date", "acc3ed3afb60b"
                  "b290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736") },

    /* [SUITE] post-vanilla */
    { "post-vanilla", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "POST\n/\n\n" SUITE_HDRS,
      SUITE_STS("553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401a"
                "e622fc87"),
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
      SUITE_AUTHZ("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c"
                  "30862966e37dddb68e92efbe5d6b") },

    /* [SUITE] post-vanilla-query: POST /?Param1=value1 */
    { "post-vanilla-query", CRED_SUITE, "POST", "/",
      { { "Param1", "value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "POST\n/\nParam1=value1\n" SUITE_HDRS,
      SUITE_STS("9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b"
                "3340fbbd"),
      "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
      SUITE_AUTHZ("host;x-amz-date", "28038455d6de14eafc1f9222cf5aa6f1a961"
                  "97d7deb8263271d420d138af7f11") },

    /* [SUITE] post-vanilla-empty-query-value (its .req is ?Param1=value1) */
    { "post-vanilla-empty-query-value", CRED_SUITE, "POST", "/",
      { { "Param1", "value1" } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "POST\n/\nParam1=value1\n" SUITE_HDRS,
      SUITE_STS("9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b"
                "3340fbbd"),
      "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
      SUITE_AUTHZ("host;x-amz-date", "28038455d6de14eafc1f9222cf5aa6f1a961"
                  "97d7deb8263271d420d138af7f11") },

    /* [SUITE] post-header-key-case */
    { "post-header-key-case", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "POST\n/\n\n" SUITE_HDRS,
      SUITE_STS("553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401a"
                "e622fc87"),
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
      SUITE_AUTHZ("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c"
                  "30862966e37dddb68e92efbe5d6b") },

    /* [SUITE] post-header-key-sort */
    { "post-header-key-sort", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", "value1" }, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
      "x-amz-date:" SUITE_DATE "\n\nhost;my-header1;x-amz-date\n" E,
      SUITE_STS("9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a8"
                "12f87d65"),
      "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
      SUITE_AUTHZ("host;my-header1;x-amz-date", "c5410059b04c1ee005303aed"
                  "430f6e6645f61f4dc9e1461ec8f8916fdf18852c") },

    /* [SUITE] post-header-value-case */
    { "post-header-value-case", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, { "My-Header1", "VALUE1" }, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\n"
      "x-amz-date:" SUITE_DATE "\n\nhost;my-header1;x-amz-date\n" E,
      SUITE_STS("d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a646"
                "18606a93"),
      "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
      SUITE_AUTHZ("host;my-header1;x-amz-date", "cdbc9802e29d2942e5e10b5b"
                  "ccfdd67c5f22c7c4e8ae67b53629efa58b974b7d") },

    /* [SUITE] post-x-www-form-urlencoded.  Erratum: the published .creq
     * lists content-type among the headers but prints "host;x-amz-date"
     * as signed headers; its .sts hash and .authz are those of
     * "content-type;host;x-amz-date", which is what is expected here. */
    { "post-x-www-form-urlencoded", CRED_SUITE, "POST", "/",
      { { NULL, NULL } },
      { { "Content-Type", FORM_TYPE }, SUITE_HOST, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "POST\n/\n\ncontent-type:" FORM_TYPE "\n"
      "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n\n"
      "content-type;host;x-amz-date\n" E,
      SUITE_STS("6a42edc18395dd67cc71407d4307ff29ab1646b08c1a0107edb319e0"
                "8e2bc584"),
      "0c3bc22986c53164a4755b4466c2e17db853888c5ddb98567e700a3ecdb262f6",
      SUITE_AUTHZ("content-type;host;x-amz-date", "0c3bc22986c53164a4755b"
                  "4466c2e17db853888c5ddb98567e700a3ecdb262f6") },

    /* [SUITE] post-x-www-form-urlencoded-parameters.  The .req sends
     * Param1=value1 as the body, but the published .creq (and so .sts and
     * .authz) sign it as the query with the empty payload hash; the
     * vector follows the .creq. */
    { "post-x-www-form-urlencoded-parameters", CRED_SUITE, "POST", "/",
      { { "Param1", "value1" } },
      { { "Content-Type", FORM_TYPE }, SUITE_HOST, SUITE_XDATE },
      E, SUITE_DATE, 0,
      "POST\n/\nParam1=value1\ncontent-type:" FORM_TYPE "\n"
      "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n\n"
      "content-type;host;x-amz-date\n" E,
      SUITE_STS("5a4a15e664c6705d500b13808c1c0e2e83f6a4748f1110a980051440"
                "f5a0d9f9"),
      "ad1ac0c5fa1793b9b9d23894903b9ce84044d014533a633091e12c840473b393",
      SUITE_AUTHZ("content-type;host;x-amz-date", "ad1ac0c5fa1793b9b9d238"
                  "94903b9ce84044d014533a633091e12c840473b393") },

    /* [SUITE] post-sts-token/post-sts-header-before: the token is a
     * signed header */
    { "post-sts-header-before", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE, { "X-Amz-Security-Token", STS_TOKEN } },
      E, SUITE_DATE, 0,
      "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n"
      "x-amz-security-token:" STS_TOKEN "\n\n"
      "host;x-amz-date;x-amz-security-token\n" E,
      SUITE_STS("c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567"
                "c1a882f6"),
      "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
      SUITE_AUTHZ("host;x-amz-date;x-amz-security-token", "85d96828115b5d"
                  "c0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead") },

    /* [SUITE] post-sts-token/post-sts-header-after: the token is added
     * after signing, so the signature is post-vanilla's */
    { "post-sts-header-after", CRED_SUITE, "POST", "/", { { NULL, NULL } },
      { SUITE_HOST, SUITE_XDATE }, E, SUITE_DATE, 0,
      "POST\n/\n\n" SUITE_HDRS,
      SUITE_STS("553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401a"
                "e622fc87"),
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
      SUITE_AUTHZ("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c"
                  "30862966e37dddb68e92efbe5d6b") },

    /* [S3HDR] Example: GET Object (first 10 bytes of test.txt).  Header
     * values are those of the document's request, trailing spaces
     * included. */
    { "S3 GET Object", CRED_S3, "GET", "/test.txt", { { NULL, NULL } },
      { { "Host", S3_HOST }, { "Range", "bytes=0-9 " },
        { "x-amz-content-sha256", E }, { "x-amz-date", S3_DATE " " } },
      E, S3_DATE, 0,
      "GET\n/test.txt\n\nhost:" S3_HOST "\nrange:bytes=0-9\n"
      "x-amz-content-sha256:" E "\nx-amz-date:" S3_DATE "\n\n"
      "host;range;x-amz-content-sha256;x-amz-date\n" E,
      S3_STS("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc4396494"
             "6972"),
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      S3_AUTHZ("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c96"
               "4420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") },

    /* [S3HDR] Example: PUT Object ("PUT test$file.text", body "Welcome to
     * Amazon S3.", storage class REDUCED_REDUNDANCY) */
    { "S3 PUT Object", CRED_S3, "PUT", "test$file.text", { { NULL, NULL } },
      { { "Host", S3_HOST }, { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
        { "x-amz-date", S3_DATE " " },
        { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
        { "x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b"
                                  "6b4b4e99e42034a8b803f8b072" } },
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      S3_DATE, 0,
      "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
      "host:" S3_HOST "\nx-amz-content-sha256:44ce7dd67c959e0d3524ffac1771"
      "dfbba87d2b6b4b4e99e42034a8b803f8b072\nx-amz-date:" S3_DATE "\n"
      "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
      "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      S3_STS("9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342"
             "019d"),
      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
      S3_AUTHZ("date;host;x-amz-content-sha256;x-amz-date;"
               "x-amz-storage-class", "98ad721746da40c64f1a55b78f14c238d841"
               "ea1380cd77a1b5971af0ece108bd") },

    /* [S3HDR] Example: GET Bucket Lifecycle ("GET ?lifecycle") */
    { "S3 GET Bucket Lifecycle", CRED_S3, "GET", "",
      { { "lifecycle", "" } },
      { { "Host", S3_HOST }, { "x-amz-date", S3_DATE " " },
        { "x-amz-content-sha256", E } },
      E, S3_DATE, 0,
      "GET\n/\nlifecycle=\nhost:" S3_HOST "\nx-amz-content-sha256:" E "\n"
      "x-amz-date:" S3_DATE "\n\nhost;x-amz-content-sha256;x-amz-date\n" E,
      S3_STS("9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c773"
             "95ca"),
      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
      S3_AUTHZ("host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c6"
               "8078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") },

    /* [S3HDR] Example: Get Bucket (List Objects), "GET ?max-keys=2&prefix=J";
     * the parameters are given in the other order to exercise sorting */
    { "S3 Get Bucket (List Objects)", CRED_S3, "GET", "",
      { { "prefix", "J" }, { "max-keys", "2" } },
      { { "Host", S3_HOST }, { "x-amz-date", S3_DATE " " },
        { "x-amz-content-sha256", E } },
      E, S3_DATE, 0,
      "GET\n/\nmax-keys=2&prefix=J\nhost:" S3_HOST "\n"
      "x-amz-content-sha256:" E "\nx-amz-date:" S3_DATE "\n\n"
      "host;x-amz-content-sha256;x-amz-date\n" E,
      S3_STS("df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1"
             "b9b7"),
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
      S3_AUTHZ("host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bd"
               "e8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") },

    /* [S3QRY] presigned GET of examplebucket/test.txt, valid 86400 s; the
     * expected output is the query of the document's example URL */
    { "S3 presigned URL", CRED_S3, "GET", "/test.txt", { { NULL, NULL } },
      { { "Host", S3_HOST } }, NULL, S3_DATE, 86400,
      "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
      "X-Amz-SignedHeaders=host\nhost:" S3_HOST "\n\nhost\nUNSIGNED-PAYLOAD",
      S3_STS("3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58"
             "ad04"),
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
      "X-Amz-SignedHeaders=host&X-Amz-Signature="
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404" },

    /* [GRIAM] POST https://iam.amazonaws.com/, body
     * "Action=ListUsers&Version=2010-05-08" */
    { "IAM ListUsers (General Reference)", CRED_IAM, "POST", "/",
      { { NULL, NULL } },
      { { "Content-Type", FORM_TYPE }, { "Host", "iam.amazonaws.com" },
        { "X-Amz-Date", "20110909T233600Z" } },
      "b6359072c78d70ebee1e81adcbab4f01bf2c23245fa365ef83fe8f1f955085e2",
      "20110909T233600Z", 0,
      "POST\n/\n\ncontent-type:" FORM_TYPE "\nhost:iam.amazonaws.com\n"
      "x-amz-date:20110909T233600Z\n\ncontent-type;host;x-amz-date\n"
      "b6359072c78d70ebee1e81adcbab4f01bf2c23245fa365ef83fe8f1f955085e2",
      "AWS4-HMAC-SHA256\n20110909T233600Z\n"
      "20110909/us-east-1/iam/aws4_request\n"
      "3511de7e95d28ecd39e9513b642aee07e54f4941150d8df8bf94b328ef7e55e2",
      "ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c54174deb456c",
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/iam/"
      "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
      "Signature=ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c5417"
      "4deb456c" },

    /* [PYREF] a presigned URL with a session token, a raw path with a
     * space and UTF-8, and parameters whose order changes with encoding
     * ('[' sorts after 'Z' raw but "%5B" sorts before it) */
    { "presigned URL with token (Python reference)", CRED_S3_EU, "GET",
      "/my bucket/\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87~.txt",
      { { "response-content-disposition", "attachment; filename=\"a b.bin\"" },
        { "Z", "y" }, { "[", "x" } },
      { { "host", "examplebucket.s3.eu-west-1.amazonaws.com" } },
      NULL, "20240229T235959Z", 600,
      "GET\n/my%20bucket/%D0%BA%D0%BB%D1%8E%D1%87~.txt\n%5B=x&"
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20240229%2Feu-west-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20240229T235959Z&X-Amz-Expires=600&"
      "X-Amz-Security-Token=FQoGZXIvYXdzE%2B%2F%3D%3D&"
      "X-Amz-SignedHeaders=host&Z=y&response-content-disposition="
      "attachment%3B%20filename%3D%22a%20b.bin%22\n"
      "host:examplebucket.s3.eu-west-1.amazonaws.com\n\nhost\n"
      "UNSIGNED-PAYLOAD",
      NULL,
      "662751a0c328159d198bd4a28c66206b199e46518df35ed4e28f236ffb2bfb71",
      "%5B=x&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20240229%2Feu-west-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20240229T235959Z&X-Amz-Expires=600&"
      "X-Amz-Security-Token=FQoGZXIvYXdzE%2B%2F%3D%3D&"
      "X-Amz-SignedHeaders=host&Z=y&response-content-disposition="
      "attachment%3B%20filename%3D%22a%20b.bin%22&X-Amz-Signature="
      "662751a0c328159d198bd4a28c66206b199e46518df35ed4e28f236ffb2bfb71" },
};

#define NVECTORS  (sizeof(vectors) / sizeof(vectors[0]))


typedef struct {
    quay_sigv4_credentials_t  cred;
    quay_sigv4_request_t      req;
    quay_sigv4_param_t        query[MAX_KV];
    quay_sigv4_header_t       headers[MAX_KV];
} built_t;


static int  vectors_passed;


static void
set_cred(quay_sigv4_credentials_t *c, int which)
{
    memset(c, 0, sizeof(*c));

    switch (which) {

    case CRED_S3:
    case CRED_S3_EU:
        c->access_key = "AKIAIOSFODNN7EXAMPLE";
        c->secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        c->region = which == CRED_S3 ? "us-east-1" : "eu-west-1";
        c->service = "s3";
        break;

    default:
        c->access_key = "AKIDEXAMPLE";
        c->secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        c->region = "us-east-1";
        c->service = which == CRED_IAM ? "iam" : "service";
        break;
    }

    c->access_key_len = strlen(c->access_key);
    c->secret_key_len = strlen(c->secret_key);
    c->region_len = strlen(c->region);
    c->service_len = strlen(c->service);
}


static void
build(built_t *b, const vector_t *v)
{
    size_t  i;

    memset(b, 0, sizeof(*b));
    set_cred(&b->cred, v->cred);

    for (i = 0; i < MAX_KV && v->query[i].name != NULL; i++) {
        b->query[i].name = v->query[i].name;
        b->query[i].name_len = strlen(v->query[i].name);
        b->query[i].value = v->query[i].value;
        b->query[i].value_len = strlen(v->query[i].value);
    }

    b->req.query = b->query;
    b->req.nquery = i;

    for (i = 0; i < MAX_KV && v->headers[i].name != NULL; i++) {
        b->headers[i].name = v->headers[i].name;
        b->headers[i].name_len = strlen(v->headers[i].name);
        b->headers[i].value = v->headers[i].value;
        b->headers[i].value_len = strlen(v->headers[i].value);
    }

    b->req.headers = b->headers;
    b->req.nheaders = i;

    b->req.method = v->method;
    b->req.method_len = strlen(v->method);
    b->req.path = v->path;
    b->req.path_len = strlen(v->path);
    b->req.payload_hash = v->payload;
    b->req.payload_hash_len = v->payload != NULL ? strlen(v->payload) : 0;
    b->req.amz_date = v->amz_date;
    b->req.amz_date_len = strlen(v->amz_date);
    b->req.expires = v->expires;

    if (v->cred == CRED_S3_EU) {
        b->req.security_token = "FQoGZXIvYXdzE+/==";
        b->req.security_token_len = strlen(b->req.security_token);
    }
}


typedef int (*producer_pt)(const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, char *out, size_t size, size_t *len,
    quay_err_t *err);


/* Measures, then fills a buffer of exactly that size plus a NUL. */
static char *
produce(producer_pt fn, const quay_sigv4_credentials_t *cred,
    const quay_sigv4_request_t *req, quay_err_t *err)
{
    char    *out;
    size_t   len, len2;

    if (fn(cred, req, NULL, 0, &len, err) != QUAY_OK) {
        return NULL;
    }

    out = malloc(len + 1);
    if (out == NULL) {
        return NULL;
    }

    memset(out, 'x', len + 1);
    len2 = 0;

    if (fn(cred, req, out, len + 1, &len2, err) != QUAY_OK || len2 != len
        || out[len] != '\0')
    {
        free(out);
        return NULL;
    }

    return out;
}


static void
test_vector(const vector_t *v)
{
    int                     good, rc;
    char                   *creq, *sts, *output, name[160];
    char                    sig[QUAY_SIGV4_HEX_LEN + 1];
    built_t                 b;
    quay_err_t              err;
    quay_sigv4_key_cache_t  cache;

    build(&b, v);
    good = 1;

    memset(&err, 0, sizeof(err));
    creq = produce(quay_sigv4_canonical_request, &b.cred, &b.req, &err);
    snprintf(name, sizeof(name), "%s: canonical request", v->name);
    good &= ok(creq != NULL && strcmp(creq, v->creq) == 0, name);
    if (creq == NULL || strcmp(creq, v->creq) != 0) {
        printf("#   got  \"%s\" (%s)\n#   want \"%s\"\n",
               creq ? creq : "(null)", err.msg, v->creq);
    }

    if (v->sts != NULL) {
        sts = produce(quay_sigv4_string_to_sign, &b.cred, &b.req, &err);
        snprintf(name, sizeof(name), "%s: string to sign", v->name);
        good &= ok(sts != NULL && strcmp(sts, v->sts) == 0, name);
        if (sts == NULL || strcmp(sts, v->sts) != 0) {
            printf("#   got \"%s\"\n", sts ? sts : "(null)");
        }
        free(sts);
    }

    memset(sig, 0, sizeof(sig));
    rc = quay_sigv4_signature(&b.cred, &b.req, sig, &err);
    snprintf(name, sizeof(name), "%s: signature", v->name);
    good &= ok(rc == QUAY_OK && strcmp(sig, v->signature) == 0, name);
    if (rc != QUAY_OK || strcmp(sig, v->signature) != 0) {
        printf("#   got %s (%s)\n", sig, err.msg);
    }

    output = produce(v->expires == 0 ? quay_sigv4_sign_headers
                                     : quay_sigv4_presign_query,
                     &b.cred, &b.req, &err);
    snprintf(name, sizeof(name), "%s: %s", v->name,
             v->expires == 0 ? "Authorization" : "presigned query");
    good &= ok(output != NULL && strcmp(output, v->output) == 0, name);
    if (output == NULL || strcmp(output, v->output) != 0) {
        printf("#   got  \"%s\"\n#   want \"%s\"\n",
               output ? output : "(null)", v->output);
    }
    free(output);

    /* the same through a key cache */
    quay_sigv4_key_cache_init(&cache);
    b.cred.cache = &cache;
    output = produce(v->expires == 0 ? quay_sigv4_sign_headers
                                     : quay_sigv4_presign_query,
                     &b.cred, &b.req, &err);
    snprintf(name, sizeof(name), "%s: same output with a key cache",
             v->name);
    good &= ok(output != NULL && strcmp(output, v->output) == 0
               && cache.derivations == 1, name);
    free(output);
    quay_sigv4_key_cache_clear(&cache);

    free(creq);

    if (good) {
        vectors_passed++;
    }
}


static const vector_t *
find_vector(const char *name)
{
    size_t  i;

    for (i = 0; i < NVECTORS; i++) {
        if (strcmp(vectors[i].name, name) == 0) {
            return &vectors[i];
        }
    }

    printf("Bail out! no vector \"%s\"\n", name);
    exit(1);
}


static void
hex(const unsigned char *in, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", in[i]);
    }
}


/* [GRKEY] kSigning for 20120215/us-east-1/iam */
static void
test_signing_key(void)
{
    int            rc;
    char           h[65];
    unsigned char  key[QUAY_SIGV4_KEY_LEN];
    quay_err_t     err;

    rc = quay_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                40, "20120215", 8, "us-east-1", 9, "iam", 3,
                                key, &err);
    hex(key, sizeof(key), h);
    is_int(rc, QUAY_OK, "signing key: derived");
    is_str(h, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414"
              "db404d", "signing key: AWS example (20120215/us-east-1/iam)");
    if (rc == QUAY_OK && strcmp(h, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a4"
                                   "3505a000a1a9e090d414db404d") == 0)
    {
        vectors_passed++;
    }
}


/* [PYREF] secrets around the 64-byte HMAC block ("AWS4" + 60 fits) */
static void
test_long_secrets(void)
{
    static const struct {
        size_t       len;
        const char  *key;
    } cases[] = {
        { 60, "1693ffe1030a4880feab98b4da6087c960dfe469b086e00c3c06dff8d20"
              "7fd91" },
        { 61, "551e2419c30c30af67ff145fb2f4be20994cfd0c0d280ab6cb0610c8c45"
              "643f5" },
        { 200, "3823ce1fa6160d8a85913640378ac9d3c1dd532651cf6deec1e216805"
               "603d33c" },
    };

    size_t         i, k;
    char           secret[200], h[65], name[80];
    unsigned char  key[QUAY_SIGV4_KEY_LEN];
    quay_err_t     err;

    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (i = 0; i < cases[k].len; i++) {
            secret[i] = (char) (0x21 + i % 90);
        }

        memset(h, 0, sizeof(h));
        if (quay_sigv4_signing_key(secret, cases[k].len, "20240101", 8,
                                   "us-east-1", 9, "s3", 2, key, &err)
            == QUAY_OK)
        {
            hex(key, sizeof(key), h);
        }

        snprintf(name, sizeof(name), "signing key with a %zu-byte secret",
                 cases[k].len);
        is_str(h, cases[k].key, name);
    }
}


/* The payload hashes the documents quote are those of their bodies. */
static void
test_payload_hashes(void)
{
    static const char  put[] = "Welcome to Amazon S3.";
    static const char  form[] = "Action=ListUsers&Version=2010-05-08";
    char               h[65];
    unsigned char      d[32];

    quay_sha256((const unsigned char *) put, sizeof(put) - 1, d);
    hex(d, sizeof(d), h);
    is_str(h, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8"
              "b072", "S3 PUT Object payload hash is SHA-256 of its body");

    quay_sha256((const unsigned char *) form, sizeof(form) - 1, d);
    hex(d, sizeof(d), h);
    is_str(h, "b6359072c78d70ebee1e81adcbab4f01bf2c23245fa365ef83fe8f1f9550"
              "85e2", "IAM example payload hash is SHA-256 of its body");

    quay_sha256(NULL, 0, d);
    hex(d, sizeof(d), h);
    is_str(h, QUAY_SIGV4_EMPTY_SHA256, "QUAY_SIGV4_EMPTY_SHA256");
}


/* Every byte value, alone, in a path and elsewhere. */
static void
test_uri_encode_bytes(void)
{
    int     c, bad_path, bad_other, unreserved;
    char    in[1], out[4], want[4];
    char    all[256], enc[768];
    size_t  n, m, total;

    bad_path = 0;
    bad_other = 0;
    total = 0;

    for (c = 0; c < 256; c++) {
        in[0] = (char) c;
        unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                     || (c >= '0' && c <= '9') || c == '-' || c == '.'
                     || c == '_' || c == '~';

        if (unreserved) {
            want[0] = (char) c;
            want[1] = '\0';

        } else {
            snprintf(want, sizeof(want), "%%%02X", c);
        }

        memset(out, 0, sizeof(out));
        n = quay_sigv4_uri_encode(in, 1, 0, NULL);
        m = quay_sigv4_uri_encode(in, 1, 0, out);
        if (n != strlen(want) || m != n || memcmp(out, want, n) != 0) {
            bad_other++;
            printf("#   byte %d: got \"%s\", want \"%s\"\n", c, out, want);
        }

        if (c == '/') {
            want[0] = '/';
            want[1] = '\0';
        }

        memset(out, 0, sizeof(out));
        n = quay_sigv4_uri_encode(in, 1, 1, out);
        if (n != strlen(want) || memcmp(out, want, n) != 0) {
            bad_path++;
        }

        all[c] = (char) c;
        total += unreserved ? 1 : 3;
    }

    is_int(bad_other, 0, "uri encode: each of 256 bytes, slash encoded");
    is_int(bad_path, 0, "uri encode: each of 256 bytes, slash kept");

    n = quay_sigv4_uri_encode(all, sizeof(all), 0, enc);
    is_int(n, total, "uri encode: all 256 bytes at once, length");
    ok(n == total && memcmp(enc, "%00%01%02", 9) == 0
       && memcmp(enc + 3 * 0x2d, "-.%2F0123456789%3A", 18) == 0
       && memcmp(enc + n - 6, "%FE%FF", 6) == 0,
       "uri encode: all 256 bytes at once, content");

    is_int(quay_sigv4_uri_encode("", 0, 1, NULL), 0, "uri encode: empty");
}


/* Only the second line (the canonical URI) of a canonical request. */
static int
canonical_uri(const char *path, int encoded, char *uri, size_t size)
{
    char                      *creq, *p, *q;
    built_t                    b;
    quay_err_t                 err;

    build(&b, &vectors[0]);
    b.req.path = path;
    b.req.path_len = strlen(path);
    b.req.path_encoded = encoded;

    creq = produce(quay_sigv4_canonical_request, &b.cred, &b.req, &err);
    if (creq == NULL) {
        return err.code;
    }

    p = strchr(creq, '\n') + 1;
    q = strchr(p, '\n');
    snprintf(uri, size, "%.*s", (int) (q - p), p);
    free(creq);

    return QUAY_OK;
}


/*
 * [SUITE] normalize-path: the general suite collapses "//", "." and "..",
 * S3 must not (normalize-path.txt says so), so each path is expected
 * verbatim here, where the suite's .creq has "/" or "/example".
 */
static void
test_no_normalization(void)
{
    static const char  *paths[] = {
        "/example/..", "/example1/example2/../..", "/./", "/./example", "//",
        "//example//", "/a//b/./c/../d"
    };

    size_t  i;
    char    uri[64], name[96];

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        uri[0] = '\0';
        (void) canonical_uri(paths[i], 0, uri, sizeof(uri));
        snprintf(name, sizeof(name), "S3 path \"%s\" is not normalized",
                 paths[i]);
        is_str(uri, paths[i], name);
    }
}


static void
test_paths(void)
{
    char  uri[64];

    uri[0] = '\0';
    (void) canonical_uri("", 0, uri, sizeof(uri));
    is_str(uri, "/", "empty path is /");

    (void) canonical_uri("a b/c", 0, uri, sizeof(uri));
    is_str(uri, "/a%20b/c", "a relative path gets a leading /");

    (void) canonical_uri("/test%24file.text", 1, uri, sizeof(uri));
    is_str(uri, "/test%24file.text", "an encoded path is used verbatim");

    (void) canonical_uri("/a%2Bb%20c", 0, uri, sizeof(uri));
    is_str(uri, "/a%252Bb%2520c", "a raw path with % is encoded once more");

    (void) canonical_uri("", 1, uri, sizeof(uri));
    is_str(uri, "/", "an empty encoded path is /");

    is_int(canonical_uri("/a b", 1, uri, sizeof(uri)), QUAY_EINVAL,
           "encoded path with a raw space is refused");
    is_int(canonical_uri("/%2a", 1, uri, sizeof(uri)), QUAY_EINVAL,
           "encoded path with lowercase hex is refused");
    is_int(canonical_uri("/%41", 1, uri, sizeof(uri)), QUAY_EINVAL,
           "encoded path escaping an unreserved byte is refused");
    is_int(canonical_uri("/%2F", 1, uri, sizeof(uri)), QUAY_EINVAL,
           "encoded path escaping '/' is refused");
    is_int(canonical_uri("/%4", 1, uri, sizeof(uri)), QUAY_EINVAL,
           "encoded path with a truncated escape is refused");
}


/* Only the third line (the canonical query) of a canonical request. */
static char *
canonical_query(const quay_sigv4_param_t *q, size_t n)
{
    char        *creq, *p, *r;
    size_t       len;
    built_t      b;
    quay_err_t   err;

    build(&b, &vectors[0]);
    b.req.query = q;
    b.req.nquery = n;

    creq = produce(quay_sigv4_canonical_request, &b.cred, &b.req, &err);
    if (creq == NULL) {
        return NULL;
    }

    p = strchr(strchr(creq, '\n') + 1, '\n') + 1;
    len = (size_t) (strchr(p, '\n') - p);
    r = malloc(len + 1);
    memcpy(r, p, len);
    r[len] = '\0';
    free(creq);

    return r;
}


#define P(n, v)  { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static void
test_query(void)
{
    static const quay_sigv4_param_t  uploads[] = { P("uploads", "") };
    static const quay_sigv4_param_t  dups[] = {
        P("k", "b"), P("k", "a"), P("k", "b"), P("j", "z"), P("k", "")
    };
    static const quay_sigv4_param_t  encoded_order[] = {
        P("b", "2"), P("~", "3"), P("\xc3\xa4", "4"), P("a b", "1"),
        P("Z", "5"), P("[", "6")
    };
    static const quay_sigv4_param_t  part[] = {
        P("uploadId", "VXBsb2FkIElE+/="), P("partNumber", "10")
    };
    static const quay_sigv4_param_t  empty_name[] = { P("", "v") };

    char  *q;

    q = canonical_query(uploads, 1);
    is_str(q, "uploads=", "?uploads= keeps its '='");
    free(q);

    q = canonical_query(dups, 5);
    is_str(q, "j=z&k=&k=a&k=b&k=b", "duplicate keys sort by value, "
           "identical pairs kept");
    free(q);

    q = canonical_query(encoded_order, 6);
    is_str(q, "%5B=6&%C3%A4=4&Z=5&a%20b=1&b=2&~=3",
           "parameters sort by their encoded form");
    free(q);

    q = canonical_query(part, 2);
    is_str(q, "partNumber=10&uploadId=VXBsb2FkIElE%2B%2F%3D",
           "multipart parameters, '+', '/' and '=' encoded");
    free(q);

    q = canonical_query(empty_name, 1);
    is_str(q, "=v", "an empty parameter name is allowed");
    free(q);
}


/* A value of 1 MiB with runs of spaces and tabs, signed and measured. */
static void
test_long_header_value(void)
{
    size_t                i, n, words, vlen, want_len;
    char                 *value, *want, *creq, *p;
    built_t               b;
    quay_err_t            err;
    quay_sigv4_header_t   hd[3];
    char                  sig1[QUAY_SIGV4_HEX_LEN], sig2[QUAY_SIGV4_HEX_LEN];

    vlen = 1024 * 1024;
    value = malloc(vlen);
    want = malloc(vlen + 1);

    /* "  \t" then words "abcdefg" separated by "  \t " */
    n = 0;
    words = 0;
    want_len = 0;
    for (i = 0; i < 3; i++) {
        value[n++] = i == 2 ? '\t' : ' ';
    }

    while (n + 12 < vlen) {
        if (words++ > 0) {
            want[want_len++] = ' ';
        }

        memcpy(value + n, "abcdefg  \t ", 11);
        memcpy(want + want_len, "abcdefg", 7);
        n += 11;
        want_len += 7;
    }

    while (n < vlen) {
        value[n++] = ' ';
    }

    want[want_len] = '\0';

    build(&b, &vectors[0]);
    hd[0] = b.headers[0];
    hd[1] = b.headers[1];
    hd[2].name = "X-Long";
    hd[2].name_len = 6;
    hd[2].value = value;
    hd[2].value_len = vlen;
    b.req.headers = hd;
    b.req.nheaders = 3;

    creq = produce(quay_sigv4_canonical_request, &b.cred, &b.req, &err);
    p = creq != NULL ? strstr(creq, "x-long:") : NULL;
    ok(p != NULL && strncmp(p + 7, want, want_len) == 0
       && p[7 + want_len] == '\n',
       "1 MiB header value trimmed and collapsed");

    ok(quay_sigv4_signature(&b.cred, &b.req, sig1, &err) == QUAY_OK,
       "1 MiB header value signed");

    /* the canonical form is all that counts: sign it directly */
    hd[2].value = want;
    hd[2].value_len = want_len;
    ok(quay_sigv4_signature(&b.cred, &b.req, sig2, &err) == QUAY_OK
       && memcmp(sig1, sig2, sizeof(sig1)) == 0,
       "same signature as its canonical form");

    free(creq);
    free(value);
    free(want);
}


/* Buffers: measuring, exact size, one short, NUL only when there is room. */
static void
test_buffers(void)
{
    int         rc;
    char        buf[512];
    size_t      len, need;
    built_t     b;
    quay_err_t  err;

    build(&b, &vectors[0]);

    rc = quay_sigv4_sign_headers(&b.cred, &b.req, NULL, 0, &need, &err);
    is_int(rc, QUAY_OK, "measure Authorization");
    is_int(need, strlen(vectors[0].output), "measured length is exact");

    memset(buf, '#', sizeof(buf));
    len = 0;
    rc = quay_sigv4_sign_headers(&b.cred, &b.req, buf, need - 1, &len,
                                 &err);
    is_int(rc, QUAY_ERANGE, "one byte short is QUAY_ERANGE");
    is_int(len, need, "QUAY_ERANGE still reports the length needed");
    ok(buf[0] == '#' && buf[need - 2] == '#', "nothing written when short");

    rc = quay_sigv4_sign_headers(&b.cred, &b.req, buf, need, &len, &err);
    ok(rc == QUAY_OK && memcmp(buf, vectors[0].output, need) == 0
       && buf[need] == '#', "exact size: filled, no NUL");

    rc = quay_sigv4_canonical_request(&b.cred, &b.req, buf, 3, &len, &err);
    ok(rc == QUAY_ERANGE && buf[0] == 'A',
       "canonical request: short buffer untouched");

    rc = quay_sigv4_canonical_request(&b.cred, &b.req, buf, sizeof(buf),
                                      NULL, &err);
    is_int(rc, QUAY_EINVAL, "len == NULL is refused");
}


static void
test_key_cache(void)
{
    int                     rc;
    unsigned long           d;
    const char             *s1, *s2;
    unsigned char           direct[QUAY_SIGV4_KEY_LEN];
    unsigned char           saved[QUAY_SIGV4_KEY_LEN];
    quay_err_t              err;
    const unsigned char    *k1, *k2, *k3, *k4;
    quay_sigv4_key_cache_t  cache;

    s1 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    s2 = "another-secret";

    quay_sigv4_key_cache_init(&cache);

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "20240301", 8,
                                  "us-east-1", 9, "s3", 2, &k1, &err);
    is_int(rc, QUAY_OK, "cache: first get derives");
    is_int(cache.derivations, 1, "cache: one derivation");

    (void) quay_sigv4_signing_key(s1, 40, "20240301", 8, "us-east-1", 9,
                                  "s3", 2, direct, &err);
    ok(memcmp(k1, direct, sizeof(direct)) == 0,
       "cache: key equals quay_sigv4_signing_key()");

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "20240301", 8,
                                  "us-east-1", 9, "s3", 2, &k2, &err);
    ok(rc == QUAY_OK && k2 == k1 && cache.derivations == 1,
       "cache: same day and region, same key object, no derivation");

    memcpy(saved, k1, sizeof(saved));

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "20240302", 8,
                                  "us-east-1", 9, "s3", 2, &k3, &err);
    (void) quay_sigv4_signing_key(s1, 40, "20240302", 8, "us-east-1", 9,
                                  "s3", 2, direct, &err);
    ok(rc == QUAY_OK && cache.derivations == 2
       && memcmp(k3, direct, sizeof(direct)) == 0
       && memcmp(k3, saved, sizeof(saved)) != 0,
       "cache: a new day derives a new key");

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "20240302", 8,
                                  "eu-west-1", 9, "s3", 2, &k4, &err);
    ok(rc == QUAY_OK && cache.derivations == 3 && k4 != k3,
       "cache: another region is another key");

    rc = quay_sigv4_key_cache_get(&cache, s2, strlen(s2), "20240302", 8,
                                  "eu-west-1", 9, "s3", 2, &k4, &err);
    ok(rc == QUAY_OK && cache.derivations == 4,
       "cache: a changed secret is never served the old key");

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "20240302", 8,
                                  "us-east-1", 9, "s3", 2, &k4, &err);
    ok(rc == QUAY_OK && cache.derivations == 4 && k4 == k3,
       "cache: an earlier scope is still cached");

    /* slot 0 (20240301) is the least recently used: a fifth scope
     * replaces it */
    d = cache.derivations;
    (void) quay_sigv4_key_cache_get(&cache, s1, 40, "20240302", 8,
                                    "ap-south-1", 10, "s3", 2, &k4, &err);
    ok(k4 == k1 && cache.derivations == d + 1,
       "cache: the least recently used slot is replaced when full");

    (void) quay_sigv4_key_cache_get(&cache, s1, 40, "20240301", 8,
                                    "us-east-1", 9, "s3", 2, &k4, &err);
    ok(cache.derivations == d + 2 && memcmp(k4, saved, sizeof(saved)) == 0,
       "cache: an evicted scope is derived again, same key");

    rc = quay_sigv4_key_cache_get(&cache, s1, 40, "2024031", 7,
                                  "us-east-1", 9, "s3", 2, &k4, &err);
    is_int(rc, QUAY_EINVAL, "cache: a bad date is refused");

    quay_sigv4_key_cache_clear(&cache);
    ok(cache.derivations == 0 && cache.slot[0].used == 0
       && cache.slot[0].key[0] == 0 && cache.slot[0].key[31] == 0,
       "cache: clear wipes it");
}


/* Refusals, and no secret or value in any message. */
static void
test_invalid(void)
{
    int                  rc;
    char                 out[1024], name[128];
    size_t               len, i;
    built_t              b, base;
    quay_err_t           err;
    quay_sigv4_header_t  hd[3];
    quay_sigv4_param_t   q[1];

    static const char  *secret = "SuperSecretKeyThatMustNeverLeak";
    static const char  *marker = "PrivateValueMarker";

    build(&base, &vectors[0]);
    base.cred.secret_key = secret;
    base.cred.secret_key_len = strlen(secret);

#define REFUSE(what, want, mutate)                                          \
    do {                                                                    \
        b = base;                                                           \
        b.req.headers = b.headers;                                          \
        b.req.query = b.query;                                              \
        mutate;                                                             \
        memset(&err, 0, sizeof(err));                                       \
        rc = quay_sigv4_sign_headers(&b.cred, &b.req, out, sizeof(out),     \
                                     &len, &err);                           \
        snprintf(name, sizeof(name), "refused: %s", what);                  \
        ok(rc == (want) && err.code == (want) && err.msg[0] != '\0'         \
           && strstr(err.msg, secret) == NULL                               \
           && strstr(err.msg, marker) == NULL, name);                       \
        if (rc != (want)) {                                                 \
            printf("#   rc %d (%s)\n", rc, err.msg);                        \
        }                                                                   \
    } while (0)

    REFUSE("empty secret", QUAY_EINVAL, b.cred.secret_key_len = 0);
    REFUSE("empty access key", QUAY_EINVAL, b.cred.access_key_len = 0);
    REFUSE("access key with ','", QUAY_EINVAL,
           b.cred.access_key = "AKID,X"; b.cred.access_key_len = 6);
    REFUSE("region with '/'", QUAY_EINVAL,
           b.cred.region = "us/east"; b.cred.region_len = 7);
    REFUSE("empty service", QUAY_EINVAL, b.cred.service_len = 0);
    REFUSE("method with a space", QUAY_EINVAL,
           b.req.method = "G T"; b.req.method_len = 3);
    REFUSE("date without T", QUAY_EINVAL,
           b.req.amz_date = "20150830 123600Z");
    REFUSE("date in month 13", QUAY_EINVAL,
           b.req.amz_date = "20151330T123600Z");
    REFUSE("date too short", QUAY_EINVAL, b.req.amz_date_len = 15);
    REFUSE("uppercase payload hex", QUAY_EINVAL,
           b.req.payload_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E464"
                                "9B934CA495991B7852B855");
    REFUSE("payload hash of 63 digits", QUAY_EINVAL,
           b.req.payload_hash_len = 63);
    REFUSE("lowercase literal payload", QUAY_EINVAL,
           b.req.payload_hash = "unsigned-payload";
           b.req.payload_hash_len = 16);
    REFUSE("unknown literal payload", QUAY_EINVAL,
           b.req.payload_hash = "SIGNED-PAYLOAD";
           b.req.payload_hash_len = 14);
    REFUSE("bare STREAMING- payload", QUAY_EINVAL,
           b.req.payload_hash = "STREAMING-"; b.req.payload_hash_len = 10);
    REFUSE("no payload hash in header mode", QUAY_EINVAL,
           b.req.payload_hash = NULL; b.req.payload_hash_len = 0);
    REFUSE("header name with ':'", QUAY_EINVAL,
           b.headers[1].name = "X:Y"; b.headers[1].name_len = 3);
    REFUSE("header name with a space", QUAY_EINVAL,
           b.headers[1].name = "X Y"; b.headers[1].name_len = 3);
    REFUSE("empty header name", QUAY_EINVAL, b.headers[1].name_len = 0);

    hd[0] = base.headers[0];
    hd[1] = base.headers[1];
    hd[2].name = "X-Private";
    hd[2].name_len = 9;
    hd[2].value = "PrivateValueMarker\r\nInjected: yes";
    hd[2].value_len = strlen(hd[2].value);
    REFUSE("header value with CR LF", QUAY_EINVAL,
           b.req.headers = hd; b.req.nheaders = 3);

    hd[2].value = "PrivateValueMarker\0";
    hd[2].value_len = 19;
    REFUSE("header value with NUL", QUAY_EINVAL,
           b.req.headers = hd; b.req.nheaders = 3);

    REFUSE("no host header", QUAY_EINVAL,
           b.req.headers = b.headers + 1; b.req.nheaders = 1);
    REFUSE("no headers", QUAY_EINVAL, b.req.nheaders = 0);
    REFUSE("too many headers", QUAY_ERANGE,
           b.req.nheaders = QUAY_SIGV4_MAX_FIELDS + 1);
    REFUSE("too many parameters", QUAY_ERANGE,
           b.req.nquery = QUAY_SIGV4_MAX_FIELDS + 1);
    REFUSE("security token in header mode", QUAY_EINVAL,
           b.req.security_token = marker; b.req.security_token_len = 18);
    REFUSE("presign request to sign_headers", QUAY_EINVAL,
           b.req.expires = 60);

#undef REFUSE

    /* presigning */
    b = base;
    b.req.headers = b.headers;
    b.req.payload_hash = NULL;
    b.req.payload_hash_len = 0;

    rc = quay_sigv4_presign_query(&b.cred, &b.req, out, sizeof(out), &len,
                                  &err);
    is_int(rc, QUAY_ERANGE, "refused: presign without expires");

    b.req.expires = QUAY_SIGV4_MAX_EXPIRES + 1;
    rc = quay_sigv4_presign_query(&b.cred, &b.req, out, sizeof(out), &len,
                                  &err);
    is_int(rc, QUAY_ERANGE, "refused: presign for more than 7 days");

    b.req.expires = QUAY_SIGV4_MAX_EXPIRES;
    rc = quay_sigv4_presign_query(&b.cred, &b.req, out, sizeof(out), &len,
                                  &err);
    is_int(rc, QUAY_OK, "presign for exactly 7 days");

    for (i = 0; i < 2; i++) {
        q[0].name = i == 0 ? "X-Amz-Signature" : "x-amz-date";
        q[0].name_len = strlen(q[0].name);
        q[0].value = marker;
        q[0].value_len = strlen(marker);
        b.req.query = q;
        b.req.nquery = 1;
        memset(&err, 0, sizeof(err));
        rc = quay_sigv4_presign_query(&b.cred, &b.req, out, sizeof(out),
                                      &len, &err);
        snprintf(name, sizeof(name), "refused: caller parameter %s when "
                 "presigning", q[0].name);
        ok(rc == QUAY_EINVAL && strstr(err.msg, marker) == NULL, name);
    }

    b.req.query = NULL;
    b.req.nquery = 0;
    b.req.security_token = "";
    b.req.security_token_len = 0;
    rc = quay_sigv4_presign_query(&b.cred, &b.req, out, sizeof(out), &len,
                                  &err);
    is_int(rc, QUAY_EINVAL, "refused: empty security token");

    rc = quay_sigv4_signature(NULL, &b.req, out, &err);
    is_int(rc, QUAY_EINVAL, "refused: NULL credentials");

    rc = quay_sigv4_signing_key("", 0, "20240101", 8, "us-east-1", 9, "s3",
                                2, (unsigned char *) out, &err);
    is_int(rc, QUAY_EINVAL, "refused: signing key with an empty secret");

    rc = quay_sigv4_signing_key(secret, strlen(secret), "20241301", 8,
                                "us-east-1", 9, "s3", 2,
                                (unsigned char *) out, &err);
    ok(rc == QUAY_EINVAL && strstr(err.msg, secret) == NULL,
       "refused: signing key for month 13, secret not in the message");
}


/* Header signing of the same request, raw path or encoded path. */
static void
test_encoded_path_signs_the_same(void)
{
    char        *a, *c;
    built_t      b;
    quay_err_t   err;

    build(&b, find_vector("S3 PUT Object"));
    a = produce(quay_sigv4_sign_headers, &b.cred, &b.req, &err);

    b.req.path = "/test%24file.text";
    b.req.path_len = strlen(b.req.path);
    b.req.path_encoded = 1;
    c = produce(quay_sigv4_sign_headers, &b.cred, &b.req, &err);

    ok(a != NULL && c != NULL && strcmp(a, c) == 0,
       "an encoded path signs like its raw form");

    free(a);
    free(c);
}


/* The payload literals end the canonical request as given. */
static void
test_payload_literals(void)
{
    static const char  *literals[] = {
        QUAY_SIGV4_UNSIGNED_PAYLOAD, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    };

    size_t       i, n;
    char        *creq, name[96];
    built_t      b;
    quay_err_t   err;

    for (i = 0; i < sizeof(literals) / sizeof(literals[0]); i++) {
        build(&b, &vectors[0]);
        b.req.payload_hash = literals[i];
        b.req.payload_hash_len = strlen(literals[i]);

        creq = produce(quay_sigv4_canonical_request, &b.cred, &b.req, &err);
        n = strlen(literals[i]);
        snprintf(name, sizeof(name), "payload %s ends the canonical request",
                 literals[i]);
        ok(creq != NULL && strlen(creq) > n
           && strcmp(creq + strlen(creq) - n, literals[i]) == 0
           && creq[strlen(creq) - n - 1] == '\n', name);
        free(creq);
    }
}


int
main(void)
{
    size_t  i;

    for (i = 0; i < NVECTORS; i++) {
        test_vector(&vectors[i]);
    }

    test_signing_key();
    test_long_secrets();
    test_payload_hashes();
    test_uri_encode_bytes();
    test_no_normalization();
    test_paths();
    test_query();
    test_long_header_value();
    test_buffers();
    test_key_cache();
    test_invalid();
    test_encoded_path_signs_the_same();
    test_payload_literals();

    printf("# %d of %zu published or reference vectors passed in full\n",
           vectors_passed, NVECTORS + 1);

    return done_testing();
}
