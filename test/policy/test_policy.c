/* Tests for globs, client filters and token buckets (policy/policy.c). */
#include "policy/policy.h"

#include <check.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/config.h"

struct glob_case {
    const char *pattern;
    const char *s;
    bool match;
};

static const struct glob_case glob_cases[] = {
    {"*", "", true},
    {"*", "anything/at_all", true},
    {"**", "", true},
    {"", "", true},
    {"", "a", false},
    {"a", "", false},
    {"a", "a", true},
    {"a", "A", false},
    {"abc", "abc", true},
    {"abc", "abcd", false},
    {"abc", "ab", false},
    {"?", "", false},
    {"?", "a", true},
    {"?", "ab", false},
    {"?", "\xc3\xa9", true}, /* one character, two bytes */
    {"??", "\xc3\xa9", false},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"a*", "a", true},
    {"a*", "abc", true},
    {"a*", "ba", false},
    {"*a", "a", true},
    {"*a", "bca", true},
    {"*a", "ab", false},
    {"a*b*c", "abc", true},
    {"a*b*c", "aXXbYYc", true},
    {"a*b*c", "abcbc", true},
    {"a*b*c", "acb", false},
    {"a*b*c", "abcx", false},
    {"a*b*c", "aXbXcXc", true},
    {"*.*", "file.txt", true},
    {"*.*", "file", false},
    {"fs_*", "fs_read_file", true},
    {"fs_*", "fs", false},
    {"*_delete*", "github_delete_repo", true},
    {"*_delete*", "github_create_repo", false},
    {"file:///*", "file:///home/u/x.txt", true},
    {"file:///home/*/x", "file:///home/a/b/x", true},
    {"*?", "", false},
    {"*?", "x", true},
    {"?*?", "x", false},
    {"?*?", "xy", true},
    {"*a*", "bbb", false},
    {"*ab*ab*", "xabyab", true},
    {"*ab*ab*", "xaby", false},
    {"mississippi", "mississippi", true},
    {"*sip*", "mississippi", true},
    {"m*iss*ppi", "mississippi", true},
    {"m*iss*ppx", "mississippi", false},
};

START_TEST(test_glob_table)
{
    for (size_t i = 0; i < sizeof glob_cases / sizeof glob_cases[0]; i++) {
        const struct glob_case *c = &glob_cases[i];
        ck_assert_msg(pol_glob_match(c->pattern, c->s) == c->match,
                      "glob \"%s\" vs \"%s\": want %d", c->pattern, c->s, c->match);
    }
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Many stars against a long string that almost matches: a recursive matcher takes exponential
 * time here; ours must finish at once. */
START_TEST(test_glob_many_stars)
{
    enum { LEN = 20000 };
    static char s[LEN + 1];
    memset(s, 'a', LEN);
    s[LEN] = '\0';
    const char *pat_no = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
    const char *pat_yes = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a";
    double t0 = now_s();
    for (int i = 0; i < 20; i++) {
        ck_assert(!pol_glob_match(pat_no, s));
        ck_assert(pol_glob_match(pat_yes, s));
        ck_assert(!pol_glob_match("*?*?*?*?*?*?*?*?*?*?*?*b", s));
        ck_assert(pol_glob_match("a*?*?*?*?*?*?*?*?*?*?*?*a", s));
    }
    double dt = now_s() - t0;
    ck_assert_msg(dt < 2.0, "80 long matches took %.3f s", dt);
}
END_TEST

static char *srv_list[] = {"fs", "github", NULL};
static char *allow_list[] = {"read_*", "list_*", "file:///pub/*", NULL};
static char *deny_list[] = {"*secret*", NULL};

static struct core_client_cfg client(bool servers, bool allow, bool deny)
{
    struct core_client_cfg c;
    memset(&c, 0, sizeof c);
    c.name = "claude";
    if (servers) {
        c.servers = srv_list;
        c.n_servers = 2;
    }
    if (allow) {
        c.allow = allow_list;
        c.n_allow = 3;
    }
    if (deny) {
        c.deny = deny_list;
        c.n_deny = 1;
    }
    return c;
}

START_TEST(test_allows)
{
    /* Anonymous: everything. */
    ck_assert(pol_client_allows(NULL, "any", "thing"));
    ck_assert(pol_client_has_server(NULL, "any"));

    /* No lists: everything. */
    struct core_client_cfg c = client(false, false, false);
    ck_assert(pol_client_has_server(&c, "other"));
    ck_assert(pol_client_allows(&c, "other", "delete_all"));

    /* Servers only. */
    c = client(true, false, false);
    ck_assert(pol_client_has_server(&c, "fs"));
    ck_assert(pol_client_has_server(&c, "github"));
    ck_assert(!pol_client_has_server(&c, "other"));
    ck_assert(!pol_client_has_server(&c, "f"));
    ck_assert(!pol_client_has_server(&c, "fsx"));
    ck_assert(pol_client_allows(&c, "fs", "delete_all"));
    ck_assert(!pol_client_allows(&c, "other", "read_file"));

    /* An empty servers list (not NULL) means none. */
    char *none[] = {NULL};
    c.servers = none;
    c.n_servers = 0;
    ck_assert(!pol_client_has_server(&c, "fs"));
    ck_assert(!pol_client_allows(&c, "fs", "read_file"));

    /* Allow only. */
    c = client(false, true, false);
    ck_assert(pol_client_allows(&c, "x", "read_file"));
    ck_assert(pol_client_allows(&c, "x", "list_dirs"));
    ck_assert(pol_client_allows(&c, "x", "file:///pub/a/b.txt"));
    ck_assert(!pol_client_allows(&c, "x", "file:///priv/a"));
    ck_assert(!pol_client_allows(&c, "x", "write_file"));
    ck_assert(!pol_client_allows(&c, "x", "xread_file"));

    /* Deny only. */
    c = client(false, false, true);
    ck_assert(pol_client_allows(&c, "x", "write_file"));
    ck_assert(!pol_client_allows(&c, "x", "read_secret"));
    ck_assert(!pol_client_allows(&c, "x", "secret"));

    /* All three: servers first, then allow, then deny wins. */
    c = client(true, true, true);
    ck_assert(pol_client_allows(&c, "fs", "read_file"));
    ck_assert(!pol_client_allows(&c, "fs", "read_secret_file"));
    ck_assert(!pol_client_allows(&c, "fs", "write_file"));
    ck_assert(!pol_client_allows(&c, "other", "read_file"));
    ck_assert(pol_client_allows(&c, "github", "list_repos"));
}
END_TEST

START_TEST(test_bucket_burst_then_refuse)
{
    struct pol_bucket b;
    memset(&b, 0, sizeof b);
    uint64_t now = 5000, retry = 0;
    /* 2/s with a burst of 5: five calls at once, then the sixth waits 500 ms. */
    for (int i = 0; i < 5; i++)
        ck_assert(pol_bucket_take(&b, 2, 5, now, &retry));
    retry = 0;
    ck_assert(!pol_bucket_take(&b, 2, 5, now, &retry));
    ck_assert_uint_eq(retry, 500);
    /* 200 ms later: 0.4 token, 300 ms to go. */
    ck_assert(!pol_bucket_take(&b, 2, 5, now + 200, &retry));
    ck_assert_uint_eq(retry, 300);
    /* After exactly the advertised wait: one call. */
    ck_assert(pol_bucket_take(&b, 2, 5, now + 500, &retry));
    ck_assert(!pol_bucket_take(&b, 2, 5, now + 500, &retry));
    ck_assert_uint_eq(retry, 500);
    /* retry_ms may be NULL. */
    ck_assert(!pol_bucket_take(&b, 2, 5, now + 500, NULL));
}
END_TEST

START_TEST(test_bucket_refill)
{
    struct pol_bucket b;
    memset(&b, 0, sizeof b);
    uint64_t now = 1, retry = 0;
    /* 10/s, burst 3. Drain. */
    for (int i = 0; i < 3; i++)
        ck_assert(pol_bucket_take(&b, 10, 3, now, &retry));
    ck_assert(!pol_bucket_take(&b, 10, 3, now, &retry));
    ck_assert_uint_eq(retry, 100);
    /* An hour later the bucket holds only `burst`. */
    now += 3600 * 1000;
    for (int i = 0; i < 3; i++)
        ck_assert(pol_bucket_take(&b, 10, 3, now, &retry));
    ck_assert(!pol_bucket_take(&b, 10, 3, now, &retry));
    /* A steady 10/s passes forever: one call every 100 ms. */
    for (int i = 0; i < 1000; i++) {
        now += 100;
        ck_assert_msg(pol_bucket_take(&b, 10, 3, now, &retry), "call %d refused", i);
    }
    /* A clock going back refills nothing and does not break the bucket. */
    ck_assert(!pol_bucket_take(&b, 10, 3, now - 50, &retry));
    ck_assert(retry >= 1);
    ck_assert(pol_bucket_take(&b, 10, 3, now + 100, &retry));
    /* A slow rate: 3 per minute = one every 20 s. */
    struct pol_bucket m;
    memset(&m, 0, sizeof m);
    ck_assert(pol_bucket_take(&m, 0.05, 1, 1000, &retry));
    ck_assert(!pol_bucket_take(&m, 0.05, 1, 1000, &retry));
    ck_assert_uint_eq(retry, 20000);
    ck_assert(!pol_bucket_take(&m, 0.05, 1, 20999, &retry));
    ck_assert_uint_eq(retry, 1);
    ck_assert(pol_bucket_take(&m, 0.05, 1, 21000, &retry));
    /* Odd rates never report 0 ms. */
    struct pol_bucket o;
    memset(&o, 0, sizeof o);
    ck_assert(pol_bucket_take(&o, 3000, 1, 10, &retry));
    ck_assert(!pol_bucket_take(&o, 3000, 1, 10, &retry));
    ck_assert_uint_eq(retry, 1);
}
END_TEST

START_TEST(test_bucket_unlimited_and_small_burst)
{
    struct pol_bucket b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 100; i++)
        ck_assert(pol_bucket_take(&b, 0, 0, 10, NULL));
    ck_assert_uint_eq(b.last_ms, 0);
    /* A burst below 1 still lets one call through. */
    uint64_t retry = 0;
    ck_assert(pol_bucket_take(&b, 1, 0, 10, &retry));
    ck_assert(!pol_bucket_take(&b, 1, 0, 10, &retry));
    ck_assert_uint_eq(retry, 1000);
    /* A fresh bucket at clock 0 starts full too. */
    memset(&b, 0, sizeof b);
    ck_assert(pol_bucket_take(&b, 1, 2, 0, &retry));
    ck_assert(pol_bucket_take(&b, 1, 2, 0, &retry));
    ck_assert(!pol_bucket_take(&b, 1, 2, 0, &retry));
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, test_glob_table);
    tcase_add_test(tc, test_glob_many_stars);
    tcase_add_test(tc, test_allows);
    tcase_add_test(tc, test_bucket_burst_then_refuse);
    tcase_add_test(tc, test_bucket_refill);
    tcase_add_test(tc, test_bucket_unlimited_and_small_burst);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(policy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
