/* Tests for core/paths: the private-directory check (owner, mode, symlinks), creating missing
 * directories, and the $TMPDIR fallback base. */
#include "core/paths.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

#define NOBODY 65534 /* the foreign owner in the chown tests (run as root only) */

static char dir[64]; /* /tmp/ag-paths-XXXXXX */
static char err[PATH_MAX + 200];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ag-paths-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    err[0] = '\0';
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void teardown(void)
{
    /* Some tests leave directories of mode 0 or owned by nobody: root removes them anyway. */
    ck_assert_int_eq(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* dir/name into out. */
static void in_dir(char *out, size_t cap, const char *name)
{
    ck_assert_int_lt(snprintf(out, cap, "%s/%s", dir, name), (int)cap);
}

static void make_dir(const char *p, mode_t mode)
{
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(chmod(p, mode), 0); /* exact, whatever the umask */
}

static mode_t mode_of(const char *p)
{
    struct stat st;
    ck_assert_int_eq(lstat(p, &st), 0);
    return st.st_mode & 07777;
}

/* Whether directory p has no entries. */
static bool is_empty(const char *p)
{
    DIR *d = opendir(p);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n == 0;
}

static void assert_refused(const char *p, int want_rc, const char *needle)
{
    err[0] = '\0';
    int rc = core_path_check_private_dir(p, err, sizeof err);
    ck_assert_msg(rc == want_rc, "%s: rc %d, want %d (%s)", p, rc, want_rc, err);
    ck_assert_msg(strstr(err, p) != NULL, "the message names %s: %s", p, err);
    ck_assert_msg(strstr(err, needle) != NULL, "the message says '%s': %s", needle, err);
    ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_good_and_open_modes)
{
    char p[PATH_MAX];
    in_dir(p, sizeof p, "d");
    make_dir(p, 0700);
    ck_assert_int_eq(core_path_check_private_dir(p, err, sizeof err), 0);
    ck_assert_int_eq(core_path_ensure_private_dir(p, err, sizeof err), 0);
    /* Others may read or enter it, not write to it. */
    ck_assert_int_eq(chmod(p, 0755), 0);
    ck_assert_int_eq(core_path_check_private_dir(p, err, sizeof err), 0);
    static const mode_t open_modes[] = {0777, 0770, 0720, 0702, 01777, 0730};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        char want[16];
        snprintf(want, sizeof want, "mode %04o", (unsigned)open_modes[i]);
        ck_assert_int_eq(chmod(p, open_modes[i]), 0);
        assert_refused(p, CORE_EINVAL, want);
        ck_assert_ptr_nonnull(strstr(err, "chmod 700"));
        /* ensure never "repairs" an existing directory. */
        ck_assert_int_eq(core_path_ensure_private_dir(p, err, sizeof err), CORE_EINVAL);
        ck_assert_int_eq(mode_of(p), open_modes[i]);
    }
}
END_TEST

START_TEST(test_symlink_refused)
{
    char real[PATH_MAX], link[PATH_MAX], dangling[PATH_MAX], gone[PATH_MAX];
    in_dir(real, sizeof real, "real");
    in_dir(link, sizeof link, "link");
    make_dir(real, 0700);
    ck_assert_int_eq(symlink(real, link), 0);
    assert_refused(link, CORE_EINVAL, "symbolic link");
    ck_assert_int_eq(core_path_ensure_private_dir(link, err, sizeof err), CORE_EINVAL);
    ck_assert(is_empty(real));

    /* A dangling link is not followed either: nothing is created where it points. */
    in_dir(dangling, sizeof dangling, "dangling");
    in_dir(gone, sizeof gone, "gone");
    ck_assert_int_eq(symlink(gone, dangling), 0);
    ck_assert_int_eq(core_path_ensure_private_dir(dangling, err, sizeof err), CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    ck_assert_int_ne(access(gone, F_OK), 0);
}
END_TEST

START_TEST(test_not_a_directory)
{
    char p[PATH_MAX];
    in_dir(p, sizeof p, "file");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    assert_refused(p, CORE_EINVAL, "not a directory");
    ck_assert_int_eq(core_path_ensure_private_dir(p, err, sizeof err), CORE_EINVAL);
}
END_TEST

START_TEST(test_missing_is_created_0700)
{
    char p[PATH_MAX], mid[PATH_MAX];
    in_dir(p, sizeof p, "a/b/c");
    in_dir(mid, sizeof mid, "a/b");
    ck_assert_int_eq(core_path_check_private_dir(p, err, sizeof err), -ENOENT);
    mode_t old = umask(0); /* 0700 even when the umask would allow more */
    int rc = core_path_ensure_private_dir(p, err, sizeof err);
    umask(old);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(mode_of(p), 0700);
    ck_assert_int_eq(mode_of(mid), 0700);
    ck_assert_int_eq(core_path_check_private_dir(p, err, sizeof err), 0);
}
END_TEST

START_TEST(test_foreign_owner)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_foreign_owner: skipped (only root can give a directory away)\n");
        return;
    }
    char p[PATH_MAX];
    in_dir(p, sizeof p, "theirs");
    make_dir(p, 0700);
    ck_assert_int_eq(chown(p, NOBODY, NOBODY), 0);
    assert_refused(p, CORE_EINVAL, "owned by uid 65534, not you (uid 0)");
    ck_assert_int_eq(core_path_ensure_private_dir(p, err, sizeof err), CORE_EINVAL);
    /* The mode does not make it ours. */
    ck_assert_int_eq(chmod(p, 0777), 0);
    assert_refused(p, CORE_EINVAL, "owned by uid 65534");
}
END_TEST

START_TEST(test_tmp_base)
{
    char base[256], want[PATH_MAX], got[PATH_MAX], state[PATH_MAX];
    ck_assert_int_eq(setenv("TMPDIR", dir, 1), 0);
    ck_assert_int_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
    ck_assert_int_eq(unsetenv("XDG_STATE_HOME"), 0);
    ck_assert_int_eq(unsetenv("HOME"), 0);
    ck_assert_int_eq(core_path_tmp_base(base, sizeof base), 0);
    snprintf(want, sizeof want, "%s/agentgate-%u", dir, (unsigned)geteuid());
    ck_assert_str_eq(base, want);
    ck_assert_int_eq(core_path_default_socket(got, sizeof got), 0);
    snprintf(want, sizeof want, "%s/agentgate.sock", base);
    ck_assert_str_eq(got, want);
    core_path_default_state(state, sizeof state);
    snprintf(want, sizeof want, "%s/state", base);
    ck_assert_str_eq(state, want);

    /* Created 0700, then the state inside it. */
    ck_assert_int_eq(core_path_check_private_dir(state, err, sizeof err), -ENOENT);
    ck_assert_msg(core_path_ensure_private_dir(state, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(mode_of(base), 0700);
    ck_assert_int_eq(mode_of(state), 0700);
    ck_assert_int_eq(rmdir(state), 0);

    /* An open base: refused, naming the base and the way out, and nothing is made in it. Its
     * subdirectory is refused through it too. */
    ck_assert_int_eq(chmod(base, 0777), 0);
    if (geteuid() == 0)
        ck_assert_int_eq(chown(base, NOBODY, NOBODY), 0);
    ck_assert_int_eq(core_path_ensure_private_dir(state, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, base) != NULL && strstr(err, "XDG_RUNTIME_DIR") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "XDG_STATE_HOME") != NULL, "no HOME: the state needs it too: %s",
                  err);
    ck_assert(is_empty(base));
    ck_assert_int_eq(core_path_ensure_private_dir(base, err, sizeof err), CORE_EINVAL);
    ck_assert_int_eq(core_path_check_private_dir(state, err, sizeof err), CORE_EINVAL);
    ck_assert(is_empty(base));
    if (geteuid() == 0) {
        ck_assert_ptr_nonnull(strstr(err, "owned by uid 65534"));
        /* Even a private-looking directory inside a foreign base is not trusted. */
        make_dir(state, 0700);
        ck_assert_int_eq(core_path_check_private_dir(state, err, sizeof err), CORE_EINVAL);
        ck_assert_ptr_nonnull(strstr(err, base));
    }

    /* A relative TMPDIR is ignored. */
    ck_assert_int_eq(setenv("TMPDIR", "relative/tmp", 1), 0);
    ck_assert_int_eq(core_path_tmp_base(got, sizeof got), 0);
    snprintf(want, sizeof want, "/tmp/agentgate-%u", (unsigned)geteuid());
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(unsetenv("TMPDIR"), 0);
    ck_assert_int_eq(core_path_tmp_base(got, sizeof got), 0);
    ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(test_dir_of)
{
    char out[PATH_MAX];
    ck_assert_int_eq(core_path_dir_of("/run/user/1/agentgate/agentgate.sock", out, sizeof out), 0);
    ck_assert_str_eq(out, "/run/user/1/agentgate");
    ck_assert_int_eq(core_path_dir_of("/x.sock", out, sizeof out), 0);
    ck_assert_str_eq(out, "/");
    ck_assert_int_eq(core_path_dir_of("x.sock", out, sizeof out), 0);
    ck_assert_str_eq(out, ".");
    ck_assert_int_eq(core_path_dir_of("abc/d", out, 3), -1);
}
END_TEST

static Suite *paths_suite(void)
{
    Suite *s = suite_create("paths");
    TCase *tc = tcase_create("paths");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_good_and_open_modes);
    tcase_add_test(tc, test_symlink_refused);
    tcase_add_test(tc, test_not_a_directory);
    tcase_add_test(tc, test_missing_is_created_0700);
    tcase_add_test(tc, test_foreign_owner);
    tcase_add_test(tc, test_tmp_base);
    tcase_add_test(tc, test_dir_of);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(paths_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
