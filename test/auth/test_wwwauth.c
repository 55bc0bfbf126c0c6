/* Tests for WWW-Authenticate parsing (auth/wwwauth.c). */
#include "auth/wwwauth.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static int parse(const char *s, struct auth_bearer *b)
{
    return auth_wwwauth_parse(s, strlen(s), b);
}

START_TEST(test_simple_bearer)
{
    struct auth_bearer b;
    ck_assert_int_eq(parse("Bearer resource_metadata=\"https://mcp.example.com/.well-known/"
                           "oauth-protected-resource\", scope=\"files:read files:write\"",
                           &b),
                     0);
    ck_assert_str_eq(b.resource_metadata,
                     "https://mcp.example.com/.well-known/oauth-protected-resource");
    ck_assert_str_eq(b.scope, "files:read files:write");
    ck_assert_ptr_null(b.error);
    auth_bearer_dispose(&b);
    ck_assert_ptr_null(b.scope);
}
END_TEST

START_TEST(test_error_and_escapes)
{
    struct auth_bearer b;
    ck_assert_int_eq(parse("bearer error=insufficient_scope,scope=\"a b\","
                           "error_description=\"needs \\\"write\\\" \\\\ now\"",
                           &b),
                     0);
    ck_assert_str_eq(b.error, "insufficient_scope");
    ck_assert_str_eq(b.scope, "a b");
    ck_assert_str_eq(b.error_description, "needs \"write\" \\ now");
    auth_bearer_dispose(&b);
    /* Case-insensitive names, blanks around '=', the first of a duplicate wins. */
    ck_assert_int_eq(parse("BEARER  Scope = x , SCOPE=y", &b), 0);
    ck_assert_str_eq(b.scope, "x");
    auth_bearer_dispose(&b);
}
END_TEST

START_TEST(test_several_challenges)
{
    struct auth_bearer b;
    /* Bearer after another scheme with params and after a token68 scheme. */
    ck_assert_int_eq(parse("Basic realm=\"x, y\", Negotiate abc+/==, Bearer realm=\"mcp\", "
                           "resource_metadata=\"https://a/b\", DPoP algs=\"ES256\"",
                           &b),
                     0);
    ck_assert_str_eq(b.resource_metadata, "https://a/b");
    ck_assert_ptr_null(b.scope);
    auth_bearer_dispose(&b);
    /* The first Bearer challenge counts; a bare scheme is a challenge without params. */
    ck_assert_int_eq(parse("Bearer, Bearer scope=\"late\"", &b), 0);
    ck_assert_ptr_null(b.scope);
    auth_bearer_dispose(&b);
    ck_assert_int_eq(parse("Bearer", &b), 0);
    auth_bearer_dispose(&b);
    /* Several header lines joined with ", ". */
    ck_assert_int_eq(parse("Basic realm=\"r\", Bearer scope=s1", &b), 0);
    ck_assert_str_eq(b.scope, "s1");
    auth_bearer_dispose(&b);
}
END_TEST

START_TEST(test_not_bearer_or_malformed)
{
    struct auth_bearer b;
    ck_assert_int_eq(parse("Basic realm=\"x\"", &b), CORE_ENOTFOUND);
    ck_assert_int_eq(parse("", &b), CORE_ENOTFOUND);
    ck_assert_int_eq(parse("Bearer scope=\"unterminated", &b), CORE_EPARSE);
    ck_assert_int_eq(parse("Bearer scope=\"a\\", &b), CORE_EPARSE);
    ck_assert_int_eq(parse("Bearer scope=\"a\" junk", &b), CORE_EPARSE);
    ck_assert_int_eq(parse("Bearer scope=\"a\x01\"", &b), CORE_EPARSE);
    ck_assert_int_eq(parse("=Bearer", &b), CORE_EPARSE);
    ck_assert_int_eq(parse("Bearer\"x\"", &b), CORE_EPARSE);
    char *big = malloc(AUTH_WWWAUTH_MAX + 2);
    memset(big, 'a', AUTH_WWWAUTH_MAX + 1);
    big[AUTH_WWWAUTH_MAX + 1] = '\0';
    ck_assert_int_eq(parse(big, &b), CORE_ETOOBIG);
    free(big);
}
END_TEST

/* Every prefix of valid values parses or fails cleanly, without leaks. */
START_TEST(test_prefixes)
{
    const char *v = "Basic realm=\"a\", Bearer error=\"invalid_token\", "
                    "resource_metadata=\"https://x/.well-known/oauth-protected-resource/mcp\", "
                    "scope=\"a\\\"b c\"";
    long live = core_alloc_live();
    size_t n = strlen(v);
    for (size_t k = 0; k <= n; k++) {
        struct auth_bearer b;
        int rc = auth_wwwauth_parse(v, k, &b);
        ck_assert(rc == 0 || rc == CORE_EPARSE || rc == CORE_ENOTFOUND);
        if (rc == 0)
            auth_bearer_dispose(&b);
    }
    ck_assert_int_eq(core_alloc_live(), live);
}
END_TEST

static Suite *wwwauth_suite(void)
{
    Suite *s = suite_create("wwwauth");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_simple_bearer);
    tcase_add_test(tc, test_error_and_escapes);
    tcase_add_test(tc, test_several_challenges);
    tcase_add_test(tc, test_not_bearer_or_malformed);
    tcase_add_test(tc, test_prefixes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wwwauth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
