/* Tests for core/file: state files are opened without following symlinks, only regular files
 * are used, and the atomic writer replaces a symlink instead of writing through it. */
#include "core/file.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "test/tmpdir.h"

static long live_at_start;
static char dir[64];
static char path[128];   /* where a state file goes */
static char target[128]; /* a file elsewhere that a planted symlink points at */
static char err[512];

static void setup(void)
{
    live_at_start = core_alloc_live();
    tmpdir_make(dir, sizeof dir, "file");
    snprintf(path, sizeof path, "%s/state.file", dir);
    snprintf(target, sizeof target, "%s/precious", dir);
    err[0] = '\0';
}

static void teardown(void)
{
    tmpdir_remove(dir);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

static void write_text(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The whole file (at most 255 bytes) as a string in buf. */
static const char *read_text(const char *p, char *buf, size_t cap)
{
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

START_TEST(test_open_regular)
{
    int fd = -1;
    ck_assert_int_eq(core_file_open(path, O_RDONLY, 0, &fd, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, path));
    mode_t old = umask(0);
    int rc = core_file_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err, sizeof err);
    umask(old);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_ge(fd, 0);
    /* Close-on-exec, and blocking again after the O_NONBLOCK open. */
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_eq(fl & O_NONBLOCK, 0);
    ck_assert_int_ne(fl & O_APPEND, 0);
    ck_assert_int_eq(write(fd, "one\n", 4), 4);
    close(fd);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    char buf[256];
    ck_assert_str_eq(read_text(path, buf, sizeof buf), "one\n");
}
END_TEST

/* A symlink at the path, to an existing file or to none: refused for reading, appending and
 * creating, and the file it points at is neither read, changed nor created. */
START_TEST(test_symlink_not_followed)
{
    write_text(target, "precious\n");
    ck_assert_int_eq(symlink(target, path), 0);
    static const int flags[] = {O_RDONLY, O_WRONLY | O_APPEND | O_CREAT, O_RDWR | O_CREAT,
                                O_WRONLY | O_CREAT | O_TRUNC};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int fd = -7;
        err[0] = '\0';
        ck_assert_int_eq(core_file_open(path, flags[i], 0600, &fd, err, sizeof err), -ELOOP);
        ck_assert_int_eq(fd, -7); /* written only on success */
        ck_assert_msg(strstr(err, path) != NULL && strstr(err, "symbolic link") != NULL, "%s", err);
        ck_assert_ptr_null(strchr(err, '\n'));
    }
    char buf[256];
    ck_assert_str_eq(read_text(target, buf, sizeof buf), "precious\n");

    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(unlink(target), 0);
    ck_assert_int_eq(symlink(target, path), 0); /* dangling */
    int fd;
    ck_assert_int_eq(
        core_file_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err, sizeof err), -ELOOP);
    ck_assert_int_ne(access(target, F_OK), 0);
}
END_TEST

/* A FIFO, a directory or a device: refused at once (a FIFO must not block the open). */
START_TEST(test_not_regular)
{
    int fd;
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(core_file_open(path, O_RDONLY, 0, &fd, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(
        core_file_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err, sizeof err),
        CORE_EINVAL);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(unlink(path), 0);

    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(core_file_open(path, O_RDONLY, 0, &fd, err, sizeof err), CORE_EINVAL);
    ck_assert_int_eq(
        core_file_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err, sizeof err),
        CORE_EINVAL);
    ck_assert_int_eq(rmdir(path), 0);

    ck_assert_int_eq(core_file_open("/dev/null", O_WRONLY | O_APPEND, 0, &fd, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_msg(strstr(err, "/dev/null: not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(core_file_open("/dev/null", O_RDONLY, 0, &fd, NULL, 0), CORE_EINVAL);
}
END_TEST

/* rename(2) replaces the directory entry: the symlink goes, its target stays as it was. */
/* core_file_read_all: the whole file, NUL-terminated, its length and mode; a file of exactly max
 * bytes is read, one byte more is refused; the empty file is an empty string. */
START_TEST(test_read_all)
{
    char *text = NULL;
    size_t len = 99;
    mode_t mode = 0;
    write_text(path, "hello\nworld");
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(core_file_read_all(path, 0, 1024, &text, &len, &mode, err, sizeof err), 0);
    ck_assert_uint_eq(len, 11);
    ck_assert_str_eq(text, "hello\nworld");
    ck_assert_uint_eq(mode, 0640);
    core_free(text);

    /* Exactly at the limit, and one past it (out-parameters untouched on failure). */
    text = NULL;
    ck_assert_int_eq(core_file_read_all(path, 0, 11, &text, &len, NULL, err, sizeof err), 0);
    ck_assert_str_eq(text, "hello\nworld");
    core_free(text);
    text = NULL;
    len = 99;
    ck_assert_int_eq(core_file_read_all(path, 0, 10, &text, &len, NULL, err, sizeof err),
                     CORE_ETOOBIG);
    ck_assert_ptr_null(text);
    ck_assert_uint_eq(len, 99);
    ck_assert_msg(strstr(err, path) != NULL && strstr(err, "larger than 10 bytes") != NULL, "%s",
                  err);

    /* Empty. */
    write_text(path, "");
    ck_assert_int_eq(core_file_read_all(path, 0, 10, &text, &len, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(text, "");
    core_free(text);

    /* Missing: -ENOENT, with the file named. */
    unlink(path);
    text = NULL;
    ck_assert_int_eq(core_file_read_all(path, 0, 10, &text, NULL, NULL, err, sizeof err), -ENOENT);
    ck_assert_ptr_null(text);
    ck_assert_msg(strstr(err, path) != NULL, "%s", err);
}
END_TEST

/* A file that grows past fstat's size while it is read: everything up to max is read, and more
 * than max is refused even though fstat said less. /proc files report size 0. */
START_TEST(test_read_all_unsized)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(core_file_read_all("/proc/self/status", 0, 1 << 20, &text, &len, NULL, err,
                                        sizeof err),
                     0);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert_ptr_nonnull(strstr(text, "Name:"));
    core_free(text);
    text = NULL;
    ck_assert_int_eq(core_file_read_all("/proc/self/status", 0, 16, &text, &len, NULL, err,
                                        sizeof err),
                     CORE_ETOOBIG);
    ck_assert_ptr_null(text);
}
END_TEST

/* The flags: NOFOLLOW refuses a symlink that is followed without it; PRIVATE refuses any
 * group/other bit and says how to fix it; a directory and a FIFO are refused without blocking. */
START_TEST(test_read_all_flags)
{
    char *text = NULL;
    size_t len = 0;
    write_text(target, "secret");
    ck_assert_int_eq(chmod(target, 0600), 0);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_int_eq(core_file_read_all(path, 0, 64, &text, &len, NULL, err, sizeof err), 0);
    ck_assert_str_eq(text, "secret");
    core_free(text);
    text = NULL;
    ck_assert_int_eq(core_file_read_all(path, CORE_FILE_NOFOLLOW, 64, &text, &len, NULL, err,
                                        sizeof err),
                     -ELOOP);
    ck_assert_ptr_null(text);
    ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
    unlink(path);

    ck_assert_int_eq(core_file_read_all(target, CORE_FILE_PRIVATE, 64, &text, &len, NULL, err,
                                        sizeof err),
                     0);
    core_free(text);
    text = NULL;
    static const mode_t open_modes[] = {0640, 0604, 0620, 0602, 0610, 0601};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        char want[8];
        snprintf(want, sizeof want, "0%o", (unsigned)open_modes[i]);
        ck_assert_int_eq(chmod(target, open_modes[i]), 0);
        ck_assert_int_eq(core_file_read_all(target, CORE_FILE_PRIVATE, 64, &text, &len, NULL, err,
                                            sizeof err),
                         CORE_EINVAL);
        ck_assert_ptr_null(text);
        ck_assert_msg(strstr(err, want) != NULL && strstr(err, "chmod 600") != NULL, "%s", err);
    }

    ck_assert_int_eq(core_file_read_all(dir, 0, 64, &text, &len, NULL, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(core_file_read_all(path, 0, 64, &text, &len, NULL, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_ptr_null(text);
}
END_TEST

START_TEST(test_atomic_write_replaces_symlink)
{
    write_text(target, "precious\n");
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_int_eq(core_file_write_atomic(path, "new\n", 4, 0600), 0);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    char buf[256];
    ck_assert_str_eq(read_text(path, buf, sizeof buf), "new\n");
    ck_assert_str_eq(read_text(target, buf, sizeof buf), "precious\n");
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("file");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_open_regular);
    tcase_add_test(tc, test_symlink_not_followed);
    tcase_add_test(tc, test_not_regular);
    tcase_add_test(tc, test_atomic_write_replaces_symlink);
    tcase_add_test(tc, test_read_all);
    tcase_add_test(tc, test_read_all_unsized);
    tcase_add_test(tc, test_read_all_flags);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(file_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
