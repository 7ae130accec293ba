/* lib/sigv4.c: SigV4 presigning against published vectors, and the
 * ElastiCache IAM token's form, checks and messages.
 *
 * Where the expected values come from (facts, carried over as data):
 * - S3: Amazon S3 API Reference, "Authenticating Requests: Using Query
 *   Parameters (AWS Signature Version 4)", the presigned GET of
 *   examplebucket/test.txt.
 * - SUITE_Q: the AWS SigV4 test suite's query-signed (presigned) cases as
 *   kept in awslabs/aws-c-auth, tests/aws-signing-test-suite/v4/<case>/
 *   (query-canonical-request.txt, query-string-to-sign.txt,
 *   query-signed-request.txt): X-Amz-Expires=3600, SignedHeaders=host.
 *   Some canonical requests there come from an older version of the suite
 *   without X-Amz-Expires; those are checked through the string to sign.
 * - SUITE_H: the classic aws-sig-v4-test-suite header-signed cases
 *   (get-vanilla, post-vanilla, get-vanilla-query-order-key-case).
 * - KEY: AWS General Reference, "Examples of how to derive a signing key
 *   for Signature Version 4" (service iam, 20120215).
 * - IAM: tokens made by the AWS SDK's signer, @smithy/signature-v4 5.7.5
 *   (tests/sigv4/presign.mjs), for fixed inputs. */
#include "unit_util.h"

#include "sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_HOST "example.amazonaws.com"
#define SUITE_CRED "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z"
#define SUITE_STS_HEAD "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
#define UNRESERVED "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
/* 2013-05-24T00:00:00Z and 2015-08-30T12:36:00Z. */
#define S3_TIME ((time_t)1369353600)
#define SUITE_TIME ((time_t)1440938160)

static redtls__sigv4_request suite_request(const char *path, const redtls__sigv4_param *params, size_t n)
{
    redtls__sigv4_request r = {
        .method = "GET",
        .host = SUITE_HOST,
        .path = path,
        .params = params,
        .n_params = n,
        .region = "us-east-1",
        .service = "service",
        .access_key_id = "AKIDEXAMPLE",
        .secret_access_key = SUITE_SECRET,
        .when = SUITE_TIME,
        .expires_s = 3600,
        .payload_hash = EMPTY_SHA256,
    };
    return r;
}

typedef struct outputs {
    char query[1024], creq[2048], sts[512];
    redtls__sigv4_result res;
} outputs;

static redtls__sigv4_result *outputs_init(outputs *o)
{
    memset(o, 0, sizeof *o);
    o->res.query = o->query;
    o->res.query_cap = sizeof o->query;
    o->res.canonical_request = o->creq;
    o->res.canonical_request_cap = sizeof o->creq;
    o->res.string_to_sign = o->sts;
    o->res.string_to_sign_cap = sizeof o->sts;
    return &o->res;
}

static void test_s3_presigned_url_example(void **state)
{
    (void)state;
    redtls__sigv4_request r = {
        .method = "GET",
        .host = "examplebucket.s3.amazonaws.com",
        .path = "/test.txt",
        .region = "us-east-1",
        .service = "s3",
        .access_key_id = "AKIAIOSFODNN7EXAMPLE",
        .secret_access_key = S3_SECRET,
        .when = S3_TIME,
        .expires_s = 86400,
        .payload_hash = "UNSIGNED-PAYLOAD",
    };
    outputs o;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__sigv4_presign(&r, outputs_init(&o), err), REDTLS_OK);
    assert_string_equal(o.creq, "GET\n"
                                "/test.txt\n"
                                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-"
                                "east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-"
                                "SignedHeaders=host\n"
                                "host:examplebucket.s3.amazonaws.com\n"
                                "\n"
                                "host\n"
                                "UNSIGNED-PAYLOAD");
    assert_string_equal(o.sts, "AWS4-HMAC-SHA256\n"
                               "20130524T000000Z\n"
                               "20130524/us-east-1/s3/aws4_request\n"
                               "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
    assert_string_equal(o.res.signature, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    assert_string_equal(o.query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
                                 "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-"
                                 "SignedHeaders=host&X-Amz-Signature="
                                 "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    assert_int_equal(o.res.query_needed, strlen(o.query) + 1);
}

/* SUITE_Q signatures (query-signed-request.txt, X-Amz-Expires=3600). */
static void test_suite_presigned_signatures(void **state)
{
    (void)state;
    static const redtls__sigv4_param order_key_case[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    static const redtls__sigv4_param unreserved[] = {{UNRESERVED, UNRESERVED}};
    static const redtls__sigv4_param empty_query_key[] = {{"Param1", "value1"}};
    static const redtls__sigv4_param utf8_query[] = {{"\xE1\x88\xB4", "bar"}};
    static const redtls__sigv4_param order_encoded[] = {
        {"Param-3", "Value3"}, {"Param", "Value2"}, {"\xE1\x88\xB4", "Value1"}};
    static const struct {
        const char *name, *path;
        const redtls__sigv4_param *params;
        size_t n;
        const char *signature;
    } cases[] = {
        {"get-vanilla-query-order-key-case", "/", order_key_case, 2,
         "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5"},
        {"get-vanilla-query-unreserved", "/", unreserved, 1,
         "8e76a88a7433637b12778d5592799b29ad21ecd6cf6325051c21d86f0acda2bf"},
        {"get-utf8", "/\xE1\x88\xB4", NULL, 0, "10eae3f14a260bd3911cc6d008d3c576d143b05b62f09782a7a4b37f52178e44"},
        {"get-unreserved", "/" UNRESERVED, NULL, 0,
         "95968482db1b9e0fadef6efc1bd24689f77c77d9ef56919c96a28cc92e0d6005"},
        {"get-vanilla-empty-query-key", "/", empty_query_key, 1,
         "49096700cbbaa5753443850f40df10f904fc2fdb544dc9512203cc77c471a9de"},
        /* These two sort an encoded name ("%E1%88%B4") before "Param" and
         * "X-Amz-": parameters sort by their encoded form. (An older
         * version of the suite's get-vanilla-utf8-query canonical request
         * sorted by the raw UTF-8 bytes; its current signature is this.) */
        {"get-vanilla-utf8-query", "/", utf8_query, 1,
         "0bdd809b1519ac4f0c1dc3540e2cc46bd0c7f778eda408b2ebf3b913d21ff600"},
        {"get-vanilla-query-order-encoded", "/", order_encoded, 3,
         "c5f1848ceec943ac2ca68ee720460c23aaae30a2300586597ada94c4a65e4787"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redtls__sigv4_request r = suite_request(cases[i].path, cases[i].params, cases[i].n);
        outputs o;
        char err[REDTLS__ERRMSG_MAX] = "";
        assert_status(redtls__sigv4_presign(&r, outputs_init(&o), err), REDTLS_OK);
        if (strcmp(o.res.signature, cases[i].signature) != 0)
            fail_msg("%s: signature %s, expected %s\ncanonical request:\n%s", cases[i].name, o.res.signature,
                     cases[i].signature, o.creq);
    }
}

/* SUITE_Q canonical requests of the older suite (no X-Amz-Expires): each
 * must give the published string to sign. */
static void test_suite_older_canonical_requests(void **state)
{
    (void)state;
#define Q_CREQ(path, pre, post) "GET\n" path "\n" pre SUITE_CRED "&X-Amz-SignedHeaders=host" post "\nhost:" SUITE_HOST "\n\nhost\n" EMPTY_SHA256
    static const struct {
        const char *name, *creq, *hash;
    } cases[] = {
        {"get-vanilla", Q_CREQ("/", "", ""), "50e4af3247eb1fc9666ecb6ddd6837244e375e11e3ac919f08e01ee0a03c1d56"},
        {"get-vanilla-query-order-key-case", Q_CREQ("/", "Param1=value1&Param2=value2&", ""),
         "eb1512f5ed1470925b7b1072c2108953680032d6bc3ccbef8eb7c6fdf1639827"},
        {"get-vanilla-query-unreserved", Q_CREQ("/", UNRESERVED "=" UNRESERVED "&", ""),
         "8f98081ae4d79cd54ca4a1d36e2356f7cb99fdf91dfe307d8f72faf0b9554928"},
        {"get-utf8", Q_CREQ("/%E1%88%B4", "", ""), "4148d48eedde44fc6b52c92dcab505640ab9350b6ac42891703d9e3575b770ab"},
        {"get-unreserved", Q_CREQ("/" UNRESERVED, "", ""),
         "69cf1f6cc5f75525adf262c0d3e174132e71d69363ed7634105938598aa64c52"},
    };
#undef Q_CREQ
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sts[512], sig[REDTLS__SIGV4_HEX_LEN + 1], want[512], err[REDTLS__ERRMSG_MAX] = "";
        assert_status(redtls__sigv4_sign_canonical(cases[i].creq, strlen(cases[i].creq), SUITE_TIME, "us-east-1",
                                                   "service", SUITE_SECRET, sts, sizeof sts, sig, err),
                      REDTLS_OK);
        snprintf(want, sizeof want, SUITE_STS_HEAD "%s", cases[i].hash);
        if (strcmp(sts, want) != 0)
            fail_msg("%s: string to sign\n%s\nexpected\n%s", cases[i].name, sts, want);
        assert_int_equal(strlen(sig), REDTLS__SIGV4_HEX_LEN);
    }
}

/* SUITE_H: header-signed canonical requests through the same last steps. */
static void test_suite_header_signed(void **state)
{
    (void)state;
#define H_CREQ(method, query) method "\n/\n" query "\nhost:" SUITE_HOST "\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA256
    static const struct {
        const char *name, *creq, *signature;
    } cases[] = {
        {"get-vanilla", H_CREQ("GET", ""), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
        {"post-vanilla", H_CREQ("POST", ""), "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
        {"get-vanilla-query-order-key-case", H_CREQ("GET", "Param1=value1&Param2=value2"),
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    };
#undef H_CREQ
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sts[512], sig[REDTLS__SIGV4_HEX_LEN + 1], err[REDTLS__ERRMSG_MAX] = "";
        assert_status(redtls__sigv4_sign_canonical(cases[i].creq, strlen(cases[i].creq), SUITE_TIME, "us-east-1",
                                                   "service", SUITE_SECRET, sts, sizeof sts, sig, err),
                      REDTLS_OK);
        if (strcmp(sig, cases[i].signature) != 0)
            fail_msg("%s: signature %s, expected %s", cases[i].name, sig, cases[i].signature);
        if (i == 0)
            assert_string_equal(sts, SUITE_STS_HEAD "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    }
}

static void test_signing_key_derivation(void **state)
{
    (void)state;
    unsigned char key[32];
    char hex[65], err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__sigv4_signing_key(SUITE_SECRET, "20120215", "us-east-1", "iam", key, err), REDTLS_OK);
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");

    char long_secret[REDTLS__SIGV4_SECRET_MAX + 2];
    memset(long_secret, 'k', sizeof long_secret - 1);
    long_secret[sizeof long_secret - 1] = '\0';
    assert_status(redtls__sigv4_signing_key(long_secret, "20120215", "us-east-1", "iam", key, err), REDTLS_E_INVALID);
    assert_contains(err, "secret_access_key is longer than");
    assert_null(strstr(err, "kkkk"));
    assert_status(redtls__sigv4_signing_key("", "20120215", "us-east-1", "iam", key, err), REDTLS_E_INVALID);
    assert_contains(err, "secret_access_key is missing");
}

static void test_encoding(void **state)
{
    (void)state;
    char out[96];
    assert_int_equal(redtls__sigv4_encode("a b/c~d._-*+=%", out, sizeof out), 26);
    assert_string_equal(out, "a%20b%2Fc~d._-%2A%2B%3D%25");
    assert_int_equal(redtls__sigv4_encode("\xE1\x88\xB4", out, sizeof out), 9);
    assert_string_equal(out, "%E1%88%B4");
    assert_int_equal(redtls__sigv4_encode(UNRESERVED, out, sizeof out), strlen(UNRESERVED));
    assert_string_equal(out, UNRESERVED);
    /* Truncated but terminated, and the needed length is still told. */
    assert_int_equal(redtls__sigv4_encode("a/b", out, 4), 5);
    assert_string_equal(out, "a%2");
}

/* Parameters sort by their encoded names: '%' (0x25) comes before digits
 * and letters, so "a b" (a%20b) sorts before "a-b" and "a0". */
static void test_sort_by_encoded_name_then_value(void **state)
{
    (void)state;
    static const redtls__sigv4_param params[] = {{"a0", "1"}, {"a-b", "2"}, {"a b", "3"}, {"b", "z"}, {"b", "a/"},
                                                 {"b", "a"}};
    redtls__sigv4_request r = suite_request("/", params, 6);
    outputs o;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__sigv4_presign(&r, outputs_init(&o), err), REDTLS_OK);
    assert_true(strncmp(o.query, "X-Amz-", 6) == 0);
    assert_non_null(strstr(o.query, "X-Amz-SignedHeaders=host&a%20b=3&a-b=2&a0=1&b=a&b=a%2F&b=z&X-Amz-Signature="));
}

static void test_presign_limits(void **state)
{
    (void)state;
    redtls__sigv4_request r = suite_request("/", NULL, 0);
    outputs o;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__sigv4_result *res = outputs_init(&o);
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_OK);
    size_t need = res->query_needed;
    assert_int_equal(need, strlen(o.query) + 1);

    res->query_cap = need - 1;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_LIMIT);
    assert_string_equal(o.query, "");
    assert_string_equal(res->signature, "");
    char want[64];
    snprintf(want, sizeof want, "needs %zu bytes", need);
    assert_contains(err, want);
    res->query_cap = need;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_OK);

    /* Only the query length is asked for. */
    redtls__sigv4_result probe;
    memset(&probe, 0, sizeof probe);
    assert_status(redtls__sigv4_presign(&r, &probe, err), REDTLS_E_LIMIT);
    assert_int_equal(probe.query_needed, need);

    res->canonical_request_cap = 10;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_LIMIT);
    assert_contains(err, "canonical request needs");
    assert_string_equal(o.query, "");
    res->canonical_request_cap = sizeof o.creq;
    res->string_to_sign_cap = 10;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_LIMIT);
    assert_contains(err, "string to sign needs");
    assert_null(strstr(err, SUITE_SECRET));

    r.expires_s = 0;
    res->string_to_sign_cap = sizeof o.sts;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    assert_contains(err, "expires_s");
    r.expires_s = REDTLS__SIGV4_EXPIRES_MAX + 1;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    r.expires_s = 60;
    r.path = "no-slash";
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    assert_contains(err, "path");
    r.path = "/";
    r.region = "us/east";
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    assert_contains(err, "region");
    r.region = "us-east-1";
    r.secret_access_key = NULL;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    assert_contains(err, "secret_access_key is missing");
    r.secret_access_key = SUITE_SECRET;

    redtls__sigv4_param many[REDTLS__SIGV4_PARAMS_MAX];
    for (size_t i = 0; i < REDTLS__SIGV4_PARAMS_MAX; i++)
        many[i] = (redtls__sigv4_param){"p", "v"};
    r.params = many;
    r.n_params = REDTLS__SIGV4_PARAMS_MAX;
    assert_status(redtls__sigv4_presign(&r, res, err), REDTLS_E_INVALID);
    assert_contains(err, "query parameters");
}

/* ---- ElastiCache / MemoryDB IAM tokens --------------------------------- */

#define IAM_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define IAM_SESSION "IQoJb3JpZ2luX2VjE/+token=="
/* A host name is at most 253 characters. */
#define IAM_CACHE_NAME_MAX_TEST 253

static int has_bytes(const char *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return 1;
    return 0;
}

static redtls__iam_request iam_base(void)
{
    redtls__iam_request r = {
        .cache_name = "my-cache",
        .user_id = "app-user",
        .region = "us-east-1",
        .access_key_id = "AKIAIOSFODNN7EXAMPLE",
        .secret_access_key = IAM_SECRET,
        .when = 1700000000, /* 2023-11-14T22:13:20Z */
    };
    return r;
}

static void test_iam_token_matches_sdk(void **state)
{
    (void)state;
    char tok[1024], err[REDTLS__ERRMSG_MAX] = "";
    redtls__iam_request r = iam_base();
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_string_equal(tok, "my-cache/?Action=connect&User=app-user&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20231114%2Fus-east-1%2Felasticache%2Faws4_request"
                             "&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
                             "&X-Amz-Signature=100e8f46dd3c7af2096a248487029b89227e8d4a1783e4532caafbf618246c41");

    /* Serverless, a session token and a user ID that needs encoding, at the
     * last second of a leap day. */
    r.cache_name = "my-serverless-7x";
    r.user_id = "svc user/1";
    r.region = "eu-west-2";
    r.serverless = 1;
    r.access_key_id = "ASIAEXAMPLEKEYID0001";
    r.session_token = IAM_SESSION;
    r.when = 1709251199;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_string_equal(tok, "my-serverless-7x/?Action=connect&ResourceType=ServerlessCache&User=svc%20user%2F1"
                             "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                             "&X-Amz-Credential=ASIAEXAMPLEKEYID0001%2F20240229%2Feu-west-2%2Felasticache%2Faws4_request"
                             "&X-Amz-Date=20240229T235959Z&X-Amz-Expires=900"
                             "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2F%2Btoken%3D%3D&X-Amz-SignedHeaders=host"
                             "&X-Amz-Signature=a9b4efe55da7e5ae0c8f33a69f7bb1712d52a62b9281ceefffc51e35dbf73437");

    /* MemoryDB, a dotted cache name, the last second of a year. */
    r = iam_base();
    r.cache_name = "clustercfg.mem-db-1";
    r.user_id = "reader";
    r.region = "ap-southeast-2";
    r.service = "memorydb";
    r.access_key_id = "AKIDEXAMPLE";
    r.secret_access_key = SUITE_SECRET;
    r.when = 1735689599;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_string_equal(tok, "clustercfg.mem-db-1/?Action=connect&User=reader&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                             "&X-Amz-Credential=AKIDEXAMPLE%2F20241231%2Fap-southeast-2%2Fmemorydb%2Faws4_request"
                             "&X-Amz-Date=20241231T235959Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
                             "&X-Amz-Signature=6cab9eb3b99b61fd8a261c0a9c39d92b2a44482a552e7460018628e0c21b9f56");
}

static void test_iam_token_options(void **state)
{
    (void)state;
    char tok[1024], err[REDTLS__ERRMSG_MAX] = "";
    redtls__iam_request r = iam_base();
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_null(strstr(tok, "ResourceType"));
    assert_null(strstr(tok, "X-Amz-Security-Token"));
    assert_non_null(strstr(tok, "%2Felasticache%2F"));

    r.serverless = 1;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_non_null(strstr(tok, "/?Action=connect&ResourceType=ServerlessCache&User=app-user&"));

    r.session_token = "";
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_null(strstr(tok, "X-Amz-Security-Token"));
    r.session_token = IAM_SESSION;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_non_null(strstr(tok, "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2F%2Btoken%3D%3D&X-Amz-SignedHeaders=host&"));

    r.service = "memorydb";
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_non_null(strstr(tok, "%2Fus-east-1%2Fmemorydb%2Faws4_request"));

    r.expires_s = 60;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    assert_non_null(strstr(tok, "&X-Amz-Expires=60&"));
}

static void test_iam_token_buffer_size(void **state)
{
    (void)state;
    char tok[1024], small[1024], err[REDTLS__ERRMSG_MAX] = "";
    redtls__iam_request r = iam_base();
    r.session_token = IAM_SESSION;
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_OK);
    size_t need = strlen(tok) + 1;
    char want[64];
    snprintf(want, sizeof want, "the token needs %zu bytes", need);

    size_t caps[] = {need - 1, need - 80, 12, 9, 1, 0};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        memset(small, 'x', sizeof small);
        err[0] = '\0';
        assert_status(redtls__iam_token(&r, small, caps[i], err), REDTLS_E_LIMIT);
        assert_contains(err, want);
        if (caps[i] > 0)
            assert_string_equal(small, "");
        /* Nothing of the session token is left in the buffer. */
        assert_false(has_bytes(small, sizeof small, "IQoJ"));
    }
    assert_status(redtls__iam_token(&r, small, need, err), REDTLS_OK);
    assert_string_equal(small, tok);
}

static void check_refused(const redtls__iam_request *r, const char *needle)
{
    char tok[1024], err[REDTLS__ERRMSG_MAX] = "";
    memset(tok, 'x', sizeof tok);
    assert_status(redtls__iam_token(r, tok, sizeof tok, err), REDTLS_E_INVALID);
    assert_contains(err, needle);
    assert_string_equal(tok, "");
    assert_null(strstr(err, IAM_SECRET));
    assert_null(strstr(err, "K7MDENG"));
    assert_null(strstr(err, IAM_SESSION));
    assert_null(strstr(err, "IQoJ"));
}

static void test_iam_token_refusals(void **state)
{
    (void)state;
    redtls__iam_request r;

#define REFUSE(field, value, needle)                                                                             \
    do {                                                                                                         \
        r = iam_base();                                                                                          \
        r.session_token = IAM_SESSION;                                                                           \
        r.field = value;                                                                                         \
        check_refused(&r, needle);                                                                               \
    } while (0)

    REFUSE(cache_name, NULL, "cache_name is missing");
    REFUSE(cache_name, "", "cache_name is missing");
    REFUSE(cache_name, "My-Cache", "AWS wants the cache name in lower case");
    REFUSE(cache_name, "my_cache", "cache_name must be a host name");
    REFUSE(cache_name, "my-cache:6379", "cache_name must be a host name");
    REFUSE(cache_name, "my cache", "cache_name must be a host name");
    REFUSE(cache_name, "my-cache/x", "cache_name must be a host name");
    REFUSE(user_id, NULL, "user_id is missing");
    REFUSE(user_id, "", "user_id is missing");
    REFUSE(region, NULL, "region is missing");
    REFUSE(region, "US-EAST-1", "region must be lower-case letters, digits and '-'");
    REFUSE(region, "us_east_1", "region must be lower-case letters, digits and '-'");
    REFUSE(region, "us-east-1/x", "region must be lower-case letters, digits and '-'");
    REFUSE(service, "", "service must be");
    REFUSE(service, "ElastiCache", "service must be");
    REFUSE(access_key_id, NULL, "access_key_id is missing");
    REFUSE(access_key_id, "AKID/x", "access_key_id must be letters and digits");
    REFUSE(secret_access_key, NULL, "secret_access_key is missing");
    REFUSE(secret_access_key, "", "secret_access_key is missing");
    REFUSE(expires_s, REDTLS__SIGV4_EXPIRES_MAX + 1, "expires_s");
#undef REFUSE

    char long_name[IAM_CACHE_NAME_MAX_TEST + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    r = iam_base();
    r.cache_name = long_name;
    check_refused(&r, "cache_name must be a host name");

    /* A secret too long for the signer: refused, and not repeated. */
    char long_secret[REDTLS__SIGV4_SECRET_MAX + 2];
    memset(long_secret, 'S', sizeof long_secret - 1);
    long_secret[sizeof long_secret - 1] = '\0';
    r = iam_base();
    r.secret_access_key = long_secret;
    char tok[1024], err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__iam_token(&r, tok, sizeof tok, err), REDTLS_E_INVALID);
    assert_contains(err, "secret_access_key is longer than");
    assert_null(strstr(err, "SSSS"));

    assert_status(redtls__iam_token(NULL, tok, sizeof tok, err), REDTLS_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_s3_presigned_url_example),
        cmocka_unit_test(test_suite_presigned_signatures),
        cmocka_unit_test(test_suite_older_canonical_requests),
        cmocka_unit_test(test_suite_header_signed),
        cmocka_unit_test(test_signing_key_derivation),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_sort_by_encoded_name_then_value),
        cmocka_unit_test(test_presign_limits),
        cmocka_unit_test(test_iam_token_matches_sdk),
        cmocka_unit_test(test_iam_token_options),
        cmocka_unit_test(test_iam_token_buffer_size),
        cmocka_unit_test(test_iam_token_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
