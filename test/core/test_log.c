/* Tests for core/log.c: the per-source line budget and the log file rotated by size. Each test
 * runs in its own forked process (Check's default), so redirecting stderr stays in the test. */
#include "core/log.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "test/tmpdir.h"

/* Counts the lines of a file and whether needle appears in it. */
static size_t file_lines(const char *path, const char *needle, bool *found)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    size_t n = 0;
    *found = false;
    while (fgets(line, sizeof line, f)) {
        n++;
        if (needle && strstr(line, needle))
            *found = true;
    }
    fclose(f);
    return n;
}

START_TEST(test_limited)
{
    char dir[64], path[128];
    tmpdir_make(dir, sizeof dir, "log");
    snprintf(path, sizeof path, "%s/out", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    core_log_set_file(f);
    core_log_set_level(CORE_LOG_INFO);
    struct core_log_limit lim = {0};
    /* A flood: ten lines get through, the rest are counted. */
    for (int i = 0; i < 1000; i++)
        core_log_limited(&lim, CORE_LOG_WARN, "t", "line %d", i);
    bool found;
    ck_assert_uint_eq(file_lines(path, NULL, &found), 10);
    /* Below its level nothing is counted at all. */
    core_log_limited(&lim, CORE_LOG_DEBUG, "t", "debug");
    /* A second later one line gets through and says what was left out. */
    usleep(1100 * 1000);
    core_log_limited(&lim, CORE_LOG_WARN, "t", "after");
    ck_assert_uint_eq(file_lines(path, "(990 similar lines suppressed) after", &found), 11);
    ck_assert(found);
    /* Another source has a budget of its own. */
    struct core_log_limit other = {0};
    core_log_limited(&other, CORE_LOG_WARN, "t", "other");
    ck_assert_uint_eq(file_lines(path, NULL, &found), 12);
    core_log_set_file(NULL);
    fclose(f);
    tmpdir_remove(dir);
}
END_TEST

START_TEST(test_to_file_rotates)
{
    char dir[64], path[128], p[160];
    tmpdir_make(dir, sizeof dir, "log");
    snprintf(path, sizeof path, "%s/daemon.log", dir);
    char err[600];
    ck_assert_int_eq(core_log_to_file(path, 20000, 3, err, sizeof err), 0);
    core_log_set_level(CORE_LOG_INFO);
    /* What the process writes to stderr goes there too. */
    fprintf(stderr, "raw stderr line\n");
    fflush(stderr);
    for (int i = 0; i < 2000; i++)
        core_log(CORE_LOG_INFO, "t", "line %04d %0100d", i, 0);
    bool found;
    (void)file_lines(path, "line 1999", &found);
    ck_assert(found);
    for (int i = 1; i <= 3; i++) {
        snprintf(p, sizeof p, "%s.%d", path, i);
        struct stat st;
        ck_assert_msg(stat(p, &st) == 0, "%s missing", p);
        ck_assert_int_le(st.st_size, 20000 + 200);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
    }
    snprintf(p, sizeof p, "%s.4", path);
    ck_assert_int_ne(access(p, F_OK), 0);
    for (int i = 0; i <= 3; i++) {
        snprintf(p, sizeof p, i ? "%s.%d" : "%s", path, i);
        unlink(p);
    }
    tmpdir_remove(dir);
}
END_TEST

START_TEST(test_to_file_refuses_a_symlink)
{
    char dir[64], path[128], target[128];
    tmpdir_make(dir, sizeof dir, "log");
    snprintf(path, sizeof path, "%s/daemon.log", dir);
    snprintf(target, sizeof target, "%s/elsewhere", dir);
    FILE *t = fopen(target, "w");
    ck_assert_ptr_nonnull(t);
    fclose(t);
    ck_assert_int_eq(symlink(target, path), 0);
    char err[600] = "";
    ck_assert_int_ne(core_log_to_file(path, 1000, 3, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, path));
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    tmpdir_remove(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_limited);
    tcase_add_test(tc, test_to_file_rotates);
    tcase_add_test(tc, test_to_file_refuses_a_symlink);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
