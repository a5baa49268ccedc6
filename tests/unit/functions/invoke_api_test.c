/* invoke_api_test.c: the pure parts of the Invoke API
 * (functions/invoke_internal.h): which paths are ours, percent-decoding of
 * FunctionName, every FunctionName form Lambda accepts and the ones it
 * refuses, the Qualifier query parameter, and the JSON string escaping that
 * keeps every error body valid JSON whatever bytes a request carried. The
 * answers themselves are checked against the real binary with boto3 and
 * the AWS SDK for JavaScript (tests/integration/test_invoke_api.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "functions/invoke_internal.h"
#include "test.h"

static void test_route(void)
{
    lv_slice_t name = {0};
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/hello/invocations"), &name), LV_INVOKE_INVOCATIONS);
    CHECK_SLICE(name, "hello");
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012"
                                          "%3Afunction%3Ahello/invocations"),
                             &name),
             LV_INVOKE_INVOCATIONS);
    CHECK_SLICE(name, "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello");
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/hello"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions//invocations"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/a/b/invocations"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/hello/invocations/"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions/invocations"), &name), LV_INVOKE_OTHER);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functions"), &name), LV_INVOKE_NOT_OURS);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/2015-03-31/functionsX/a/invocations"), &name), LV_INVOKE_NOT_OURS);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT("/"), &name), LV_INVOKE_NOT_OURS);
    CHECK_EQ(lv_invoke_route(LV_SLICE_LIT(""), &name), LV_INVOKE_NOT_OURS);
}

static void check_decode(const char *in, const char *want)
{
    char out[64];
    long n = lv_invoke_percent_decode(lv_slice_cstr(in), out, sizeof out);
    if (!want) {
        if (n != -1)
            fprintf(stderr, "  decode(%s) = %ld, want -1\n", in, n);
        lv_test_failed_now |= n != -1;
        return;
    }
    if (n < 0 || (size_t)n != strlen(want) || memcmp(out, want, (size_t)n) != 0) {
        fprintf(stderr, "  decode(%s) = %ld \"%.*s\", want \"%s\"\n", in, n, n > 0 ? (int)n : 0, out, want);
        lv_test_failed_now = 1;
    }
}

static void test_percent_decode(void)
{
    check_decode("hello", "hello");
    check_decode("", "");
    check_decode("arn%3Aaws%3alambda", "arn:aws:lambda");
    check_decode("%24LATEST", "$LATEST");
    check_decode("a+b", "a+b");
    check_decode("%41%7a", "Az");
    check_decode("%", NULL);
    check_decode("%4", NULL);
    check_decode("%4g", NULL);
    check_decode("%zz", NULL);
    check_decode("a%00b", NULL);
    char out[4];
    CHECK_EQ(lv_invoke_percent_decode(LV_SLICE_LIT("abcd"), out, 4), 4);
    CHECK_EQ(lv_invoke_percent_decode(LV_SLICE_LIT("abcde"), out, 4), -1);
    CHECK_EQ(lv_invoke_percent_decode(LV_SLICE_LIT("abc%41"), out, 4), 4);
    CHECK_EQ(lv_invoke_percent_decode(LV_SLICE_LIT("abcd%41"), out, 4), -1);
}

/* want_name NULL: refused. */
static void check_name(const char *in, const char *want_name, const char *want_qual)
{
    lv_slice_t name = {0}, qual = {0};
    int rc = lv_invoke_parse_function_name(lv_slice_cstr(in), &name, &qual);
    if (!want_name) {
        if (rc != -1) {
            fprintf(stderr, "  parse(%s) accepted: name \"%.*s\"\n", in, (int)name.len, name.ptr);
            lv_test_failed_now = 1;
        }
        return;
    }
    if (rc != 0 || !lv_slice_eq_cstr(name, want_name) || !lv_slice_eq_cstr(qual, want_qual)) {
        fprintf(stderr, "  parse(%s) = %d \"%.*s\" \"%.*s\", want \"%s\" \"%s\"\n", in, rc, (int)name.len,
                name.ptr ? name.ptr : "", (int)qual.len, qual.ptr ? qual.ptr : "", want_name, want_qual);
        lv_test_failed_now = 1;
    }
}

static void test_function_names(void)
{
    check_name("hello", "hello", "");
    check_name("my-func_2.v", "my-func_2.v", "");
    check_name("hello:$LATEST", "hello", "$LATEST");
    check_name("hello:prod", "hello", "prod");
    check_name("hello:7", "hello", "7");
    check_name("123456789012:function:hello", "hello", "");
    check_name("123456789012:function:hello:$LATEST", "hello", "$LATEST");
    check_name("arn:aws:lambda:us-east-1:123456789012:function:hello", "hello", "");
    check_name("arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST", "hello", "$LATEST");
    check_name("arn:aws:lambda:eu-west-3:000000000000:function:hello:live", "hello", "live");
    check_name("arn:aws-cn:lambda:cn-north-1:123456789012:function:hello", "hello", "");
    check_name("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:hello", "hello", "");
    /* 64 characters is the longest name. */
    check_name("a123456789b123456789c123456789d123456789e123456789f123456789ghij",
               "a123456789b123456789c123456789d123456789e123456789f123456789ghij", "");

    check_name("", NULL, NULL);
    check_name("a123456789b123456789c123456789d123456789e123456789f123456789ghijk", NULL, NULL);
    check_name("hello world", NULL, NULL);
    check_name("hello/x", NULL, NULL);
    check_name("hello:", NULL, NULL);
    check_name(":hello", NULL, NULL);
    check_name("hello:a:b", NULL, NULL);
    check_name("hello:$PROD", NULL, NULL);
    check_name("hello:pr.od", NULL, NULL);
    check_name("12345678901:function:hello", NULL, NULL);
    check_name("123456789012:function:", NULL, NULL);
    check_name("123456789012:functions:hello", NULL, NULL);
    check_name("123456789012:function:hello:v:x", NULL, NULL);
    check_name("arn:aws:lambda:us-east-1:123456789012:function", NULL, NULL);
    check_name("arn:aws:lambda:us-east-1:123456789012:layer:hello", NULL, NULL);
    check_name("arn:aws:s3:us-east-1:123456789012:function:hello", NULL, NULL);
    check_name("arn:azure:lambda:us-east-1:123456789012:function:hello", NULL, NULL);
    check_name("arn:aws:lambda:useast1:123456789012:function:hello", NULL, NULL);
    check_name("arn:aws:lambda:us-east-12:123456789012:function:hello", NULL, NULL);
    check_name("arn:aws:lambda:US-east-1:123456789012:function:hello", NULL, NULL);
    check_name("arn:aws:lambda:us-east-1:12345678901x:function:hello", NULL, NULL);
    check_name("arn:aws:lambda:us-east-1:123456789012:function:hello:v1:extra", NULL, NULL);
    check_name(":::::::::", NULL, NULL);
    check_name("arn", "arn", ""); /* a function may be called "arn" */
    check_name("arn:prod", "arn", "prod");

    /* Longer than 170 characters in all is refused before anything else. */
    char lng[200];
    memset(lng, 'a', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    check_name(lng, NULL, NULL);
}

static void test_qualifier_and_query(void)
{
    CHECK(lv_invoke_valid_qualifier(LV_SLICE_LIT("$LATEST")));
    CHECK(lv_invoke_valid_qualifier(LV_SLICE_LIT("prod-2_x")));
    CHECK(!lv_invoke_valid_qualifier(LV_SLICE_LIT("")));
    CHECK(!lv_invoke_valid_qualifier(LV_SLICE_LIT("a.b")));
    CHECK(!lv_invoke_valid_qualifier(LV_SLICE_LIT("a b")));

    lv_slice_t v = {0};
    CHECK(lv_invoke_query_param(LV_SLICE_LIT("Qualifier=%24LATEST"), "Qualifier", &v));
    CHECK_SLICE(v, "%24LATEST");
    CHECK(lv_invoke_query_param(LV_SLICE_LIT("a=1&Qualifier=prod&Qualifier=x"), "Qualifier", &v));
    CHECK_SLICE(v, "prod");
    CHECK(lv_invoke_query_param(LV_SLICE_LIT("Qualifier="), "Qualifier", &v));
    CHECK_SLICE(v, "");
    CHECK(!lv_invoke_query_param(LV_SLICE_LIT("qualifier=prod"), "Qualifier", &v));
    CHECK(!lv_invoke_query_param(LV_SLICE_LIT("Qualifiers=prod"), "Qualifier", &v));
    CHECK(!lv_invoke_query_param(LV_SLICE_LIT("Qualifier"), "Qualifier", &v));
    CHECK(!lv_invoke_query_param(LV_SLICE_LIT(""), "Qualifier", &v));
    CHECK(!lv_invoke_query_param(LV_SLICE_LIT("&&&"), "Qualifier", &v));
}

int main(void)
{
    LV_RUN(test_route);
    LV_RUN(test_percent_decode);
    LV_RUN(test_function_names);
    LV_RUN(test_qualifier_and_query);
    return lv_test_summary();
}
