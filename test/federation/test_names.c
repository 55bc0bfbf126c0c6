/* Exposed names: prefixing, sanitising and stable shortening. */
#include <check.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "federation/internal.h"
#include "federation/router.h"
#include "federation/upstream.h"

static bool valid(const char *s)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, "^[A-Za-z0-9_.-]{1,64}$", REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

START_TEST(test_plain)
{
    char out[65];
    ck_assert(!fed_name_expose("everything", "echo", out));
    ck_assert_str_eq(out, "everything__echo");
    ck_assert(!fed_name_expose("", "echo", out));
    ck_assert_str_eq(out, "echo");
    ck_assert(!fed_name_expose("fs", "read_text_file", out));
    ck_assert_str_eq(out, "fs__read_text_file");
}
END_TEST

START_TEST(test_sanitised)
{
    char out[65];
    ck_assert(fed_name_expose("a", "read file/now", out));
    ck_assert_str_eq(out, "a__read_file_now");
    ck_assert(valid(out));
}
END_TEST

START_TEST(test_shortened_stable)
{
    char name[200], out1[65], out2[65], out3[65];
    memset(name, 'x', 150);
    name[150] = '\0';
    ck_assert(fed_name_expose("server", name, out1));
    ck_assert(valid(out1));
    ck_assert_uint_eq(strlen(out1), 64);
    ck_assert(fed_name_expose("server", name, out2));
    ck_assert_str_eq(out1, out2);
    /* A different long name with the same first 55 characters gets a different name. */
    name[149] = 'y';
    ck_assert(fed_name_expose("server", name, out3));
    ck_assert_str_ne(out1, out3);
    ck_assert(valid(out3));
    ck_assert_int_eq(strncmp(out1, "server__xxx", 11), 0);
}
END_TEST

START_TEST(test_exactly_64)
{
    char name[80], out[65];
    memset(name, 'n', 56);
    name[56] = '\0'; /* "p" + "__" + 56 = 59 */
    ck_assert(!fed_name_expose("prefix", name, out)); /* 6 + 2 + 56 = 64 */
    ck_assert_uint_eq(strlen(out), 64);
    name[56] = 'n';
    name[57] = '\0';
    ck_assert(fed_name_expose("prefix", name, out));
    ck_assert_uint_eq(strlen(out), 64);
    ck_assert(valid(out));
}
END_TEST

START_TEST(test_versions)
{
    ck_assert(fed_version_supported("2025-11-25", 10));
    ck_assert(fed_version_supported("2024-11-05", 10));
    ck_assert(!fed_version_supported("2026-07-28", 10));
    ck_assert(!fed_version_supported("2025-11-2", 9));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("names");
    TCase *tc = tcase_create("names");
    tcase_add_test(tc, test_plain);
    tcase_add_test(tc, test_sanitised);
    tcase_add_test(tc, test_shortened_stable);
    tcase_add_test(tc, test_exactly_64);
    tcase_add_test(tc, test_versions);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
