/* Tests for the audit log (policy/audit.c). */
#include "policy/audit.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "test/tmpdir.h"
#include "core/buf.h"
#include "core/log.h"

static long live_at_start;
static char dir[64];
static char path[128];

static void setup(void)
{
    live_at_start = core_alloc_live();
    tmpdir_make(dir, sizeof dir, "audit");
    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
}

static void teardown(void)
{
    tmpdir_remove(dir);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Reads a whole file into a heap string (core_free it); NULL when it does not exist. */
static char *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return NULL;
    struct core_buf b;
    core_buf_init(&b, 0);
    char chunk[4096];
    for (;;) {
        size_t r = fread(chunk, 1, sizeof chunk, f);
        if (r == 0)
            break;
        ck_assert_int_eq(core_buf_append(&b, chunk, r), 0);
    }
    fclose(f);
    ck_assert_int_eq(core_buf_append(&b, "", 0), 0); /* storage even for an empty file */
    return core_buf_take(&b, len);
}

/* Parses every line of a file; returns the number of lines, each checked to be a JSON object. */
static int count_json_lines(const char *p, cJSON **last)
{
    size_t len = 0;
    char *text = slurp(p, &len);
    if (text == NULL)
        return -1;
    int n = 0;
    char *line = text;
    if (last)
        *last = NULL;
    while (*line) {
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "%s: unterminated line", p);
        cJSON *j = cJSON_ParseWithLength(line, (size_t)(nl - line));
        ck_assert_msg(cJSON_IsObject(j), "%s: bad line %.*s", p, (int)(nl - line), line);
        if (last) {
            cJSON_Delete(*last);
            *last = j;
        } else {
            cJSON_Delete(j);
        }
        n++;
        line = nl + 1;
    }
    core_free(text);
    return n;
}

static struct pol_audit_rec rec(const char *tool)
{
    struct pol_audit_rec r = {
        .unix_ms = UINT64_C(1795324815123), /* 2026-11-22T05:20:15.123Z */
        .client = "claude",
        .session = "ab12cd34",
        .server = "everything",
        .tool = tool,
        .duration_us = 1234,
        .outcome = "ok",
        .bytes_in = 123,
        .bytes_out = 456,
    };
    return r;
}

START_TEST(test_records)
{
    char err[256];
    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);

    struct pol_audit_rec r = rec("echo");
    pol_audit_record(a, &r);
    /* Buffered until the flush. */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    pol_audit_flush(a);

    struct pol_audit_rec r2 = {
        .unix_ms = UINT64_C(946684800000), /* 2000-01-01T00:00:00.000Z */
        .client = NULL,
        .session = "00000000",
        .server = NULL,
        .tool = "x",
        .duration_us = 5,
        .outcome = NULL,
        .bytes_in = 0,
        .bytes_out = 0,
    };
    pol_audit_record(a, &r2);
    r.duration_us = UINT64_C(12345678901);
    r.outcome = "rate_limited";
    pol_audit_record(a, &r);
    pol_audit_close(a);
    pol_audit_close(NULL);
    pol_audit_record(NULL, &r);
    pol_audit_flush(NULL);

    size_t len = 0;
    char *text = slurp(path, &len);
    ck_assert_ptr_nonnull(text);
    const char *want =
        "{\"time\":\"2026-11-22T05:20:15.123Z\",\"client\":\"claude\",\"session\":\"ab12cd34\","
        "\"server\":\"everything\",\"tool\":\"echo\",\"duration_ms\":1.234,\"outcome\":\"ok\","
        "\"bytes_in\":123,\"bytes_out\":456}\n"
        "{\"time\":\"2000-01-01T00:00:00.000Z\",\"client\":null,\"session\":\"00000000\","
        "\"server\":null,\"tool\":\"x\",\"duration_ms\":0.005,\"outcome\":\"unknown\","
        "\"bytes_in\":0,\"bytes_out\":0}\n"
        "{\"time\":\"2026-11-22T05:20:15.123Z\",\"client\":\"claude\",\"session\":\"ab12cd34\","
        "\"server\":\"everything\",\"tool\":\"echo\",\"duration_ms\":12345678.901,"
        "\"outcome\":\"rate_limited\",\"bytes_in\":123,\"bytes_out\":456}\n";
    ck_assert_str_eq(text, want);
    core_free(text);

    /* Every line is JSON with the fields, of the right types. */
    cJSON *last = NULL;
    ck_assert_int_eq(count_json_lines(path, &last), 3);
    ck_assert_str_eq(cJSON_GetObjectItem(last, "time")->valuestring, "2026-11-22T05:20:15.123Z");
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(last, "duration_ms")));
    ck_assert(cJSON_GetObjectItem(last, "duration_ms")->valuedouble > 12345678.9);
    ck_assert_int_eq(cJSON_GetObjectItem(last, "bytes_out")->valueint, 456);
    cJSON_Delete(last);

    /* Reopening appends. */
    a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    pol_audit_record(a, &r);
    pol_audit_close(a);
    ck_assert_int_eq(count_json_lines(path, NULL), 4);
}
END_TEST

START_TEST(test_mode_and_open_failure)
{
    char err[256];
    /* An existing file readable by others is tightened to 0600. */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0644), 0);
    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    pol_audit_close(a);

    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing/audit.jsonl", dir);
    err[0] = '\0';
    ck_assert_ptr_null(pol_audit_open(bad, 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, bad));
    ck_assert_ptr_null(pol_audit_open(bad, 0, NULL, 0));
}
END_TEST

START_TEST(test_big_buffer_flushes_itself)
{
    char err[256];
    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    struct pol_audit_rec r = rec("echo");
    struct stat st;
    int i = 0;
    for (;; i++) {
        pol_audit_record(a, &r);
        ck_assert_int_eq(stat(path, &st), 0);
        if (st.st_size > 0)
            break;
        ck_assert_int_lt(i, 2000);
    }
    /* Flushed once the buffer passed 64 KiB, in whole lines. */
    ck_assert_int_ge(st.st_size, 64 * 1024);
    ck_assert_int_eq(count_json_lines(path, NULL), i + 1);
    pol_audit_close(a);
    ck_assert_int_eq(count_json_lines(path, NULL), i + 1);
}
END_TEST

static int rotated_files(void)
{
    DIR *dh = opendir(dir);
    int n = 0;
    for (struct dirent *e = readdir(dh); e != NULL; e = readdir(dh))
        n += strncmp(e->d_name, "audit.jsonl.", 12) == 0;
    closedir(dh);
    return n;
}

START_TEST(test_rotation)
{
    char err[256], p[200];
    const size_t cap = 1000;
    struct pol_audit *a = pol_audit_open(path, cap, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    struct pol_audit_rec r = rec("echo");
    char tool[32];
    /* One line at a time, flushed each time. */
    for (int i = 0; i < 60; i++) {
        snprintf(tool, sizeof tool, "t%d", i);
        r.tool = tool;
        pol_audit_record(a, &r);
        pol_audit_flush(a);
        ck_assert_int_le(rotated_files(), 3);
    }
    /* And many lines in one flush. */
    for (int i = 60; i < 100; i++) {
        snprintf(tool, sizeof tool, "t%d", i);
        r.tool = tool;
        pol_audit_record(a, &r);
    }
    pol_audit_flush(a);
    pol_audit_close(a);
    ck_assert_int_eq(rotated_files(), 3);

    /* Each file holds whole lines within the cap; together they are the newest lines, in order. */
    int next = 99;
    for (int k = 0; k <= 3; k++) {
        if (k == 0)
            snprintf(p, sizeof p, "%s", path);
        else
            snprintf(p, sizeof p, "%s.%d", path, k);
        struct stat st;
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_le(st.st_size, (off_t)cap);
        char *text = slurp(p, NULL);
        int lines = count_json_lines(p, NULL);
        ck_assert_int_gt(lines, 0);
        /* Lines of this file, newest last: t(next-lines+1) .. t(next). */
        char *line = text;
        for (int j = next - lines + 1; j <= next; j++) {
            cJSON *jl = cJSON_ParseWithLength(line, (size_t)(strchr(line, '\n') - line));
            snprintf(tool, sizeof tool, "t%d", j);
            ck_assert_str_eq(cJSON_GetObjectItem(jl, "tool")->valuestring, tool);
            cJSON_Delete(jl);
            line = strchr(line, '\n') + 1;
        }
        core_free(text);
        next -= lines;
    }
    snprintf(p, sizeof p, "%s.4", path);
    ck_assert_int_ne(access(p, F_OK), 0);

    /* A line longer than the cap still goes whole into a fresh file. */
    a = pol_audit_open(path, 100, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    r.tool = "long";
    pol_audit_record(a, &r);
    pol_audit_record(a, &r);
    pol_audit_close(a);
    ck_assert_int_eq(count_json_lines(path, NULL), 1);
    snprintf(p, sizeof p, "%s.1", path);
    ck_assert_int_eq(count_json_lines(p, NULL), 1);
    ck_assert_int_eq(rotated_files(), 3);
}
END_TEST

START_TEST(test_escaping)
{
    static const struct {
        const char *in;
        const char *out; /* after a JSON round trip */
    } cases[] = {
        {"plain_tool", "plain_tool"},
        {"quo\"te", "quo\"te"},
        {"back\\slash", "back\\slash"},
        {"new\nline\r\ttab", "new\nline\r\ttab"},
        {"ctl\x01\x1f\x7f", "ctl\x01\x1f\x7f"},
        {"caf\xc3\xa9 \xf0\x9f\x94\xa7", "caf\xc3\xa9 \xf0\x9f\x94\xa7"},
        {"bad\xff\xfe", "bad\xef\xbf\xbd\xef\xbf\xbd"},                 /* not UTF-8: U+FFFD */
        {"trunc\xc3", "trunc\xef\xbf\xbd"},                             /* cut sequence */
        {"sur\xed\xa0\x80", "sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"</script>", "</script>"},
        {"", ""},
    };
    char err[256];
    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_ptr_nonnull(a);
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        struct pol_audit_rec r = rec(cases[i].in);
        r.client = cases[i].in;
        pol_audit_record(a, &r);
    }
    /* A very long name is cut. */
    char *long_name = core_xmalloc(5001);
    memset(long_name, 'x', 5000);
    long_name[5000] = '\0';
    struct pol_audit_rec r = rec(long_name);
    pol_audit_record(a, &r);
    pol_audit_close(a);
    core_free(long_name);

    char *text = slurp(path, NULL);
    ck_assert_ptr_nonnull(text);
    char *line = text;
    for (size_t i = 0; i <= n; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        /* No raw control bytes inside a line. */
        for (char *c = line; c < nl; c++)
            ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f, "line %zu: raw byte", i);
        cJSON *j = cJSON_ParseWithLength(line, (size_t)(nl - line));
        ck_assert_msg(j != NULL, "line %zu does not parse: %.*s", i, (int)(nl - line), line);
        const char *tool = cJSON_GetObjectItem(j, "tool")->valuestring;
        if (i < n) {
            ck_assert_str_eq(tool, cases[i].out);
            ck_assert_str_eq(cJSON_GetObjectItem(j, "client")->valuestring, cases[i].out);
        } else {
            ck_assert_uint_eq(strlen(tool), 512 + 3);
            ck_assert_str_eq(tool + 512, "...");
        }
        cJSON_Delete(j);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    core_free(text);
}
END_TEST

/* A file that cannot be written (here: past RLIMIT_FSIZE, so write(2) fails with EFBIG): one
 * warning, records dropped, no crash; a later success says so once. */
START_TEST(test_write_failure)
{
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    FILE *logf = fopen(logpath, "w");
    ck_assert_ptr_nonnull(logf);
    setvbuf(logf, NULL, _IONBF, 0);
    core_log_set_file(logf);
    core_log_set_level(CORE_LOG_INFO);

    /* The test runs in its own forked process: the limit and the signal stay there. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 8192; /* the audit file stops growing here; the log stays far below */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

    char err[256];
    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    struct pol_audit_rec r = rec("echo");
    for (int i = 0; i < 2000; i++) {
        pol_audit_record(a, &r);
        if (i % 7 == 0)
            pol_audit_flush(a);
    }
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_le(st.st_size, 8192);

    off_t stuck = st.st_size;

    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    pol_audit_record(a, &r);
    pol_audit_flush(a);
    pol_audit_record(a, &r);
    pol_audit_close(a);
    core_log_set_file(NULL);
    fclose(logf);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_gt(st.st_size, stuck); /* the last two records */

    char *text = slurp(logpath, NULL);
    ck_assert_ptr_nonnull(text);
    int warnings = 0, again = 0;
    for (char *p = strstr(text, "dropped until"); p != NULL; p = strstr(p + 1, "dropped until"))
        warnings++;
    for (char *p = strstr(text, "writing again"); p != NULL; p = strstr(p + 1, "writing again"))
        again++;
    ck_assert_msg(warnings == 1 && again == 1, "log: %s", text);
    ck_assert_ptr_nonnull(strstr(text, path));
    ck_assert_ptr_nonnull(strstr(text, "warn"));
    core_free(text);
}
END_TEST

/* A symlink planted at the log's path is refused, not written through, and so is anything but a
 * regular file; the file the link points at stays as it was. */
START_TEST(test_symlink_and_special_files_refused)
{
    char target[160], err[256];
    snprintf(target, sizeof target, "%s/precious", dir);
    FILE *f = fopen(target, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(target, 0644), 0);
    ck_assert_int_eq(symlink(target, path), 0);

    struct pol_audit *a = pol_audit_open(path, 0, err, sizeof err);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(err, path) != NULL && strstr(err, "symbolic link") != NULL, "%s", err);
    size_t len = 0;
    char *text = slurp(target, &len);
    ck_assert_str_eq(text, "precious\n");
    core_free(text);
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0644); /* not even chmod'ed through the link */
    ck_assert_int_eq(unlink(path), 0);

    /* A FIFO must not block the open; a device is refused too. */
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_ptr_null(pol_audit_open(path, 0, err, sizeof err));
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_ptr_null(pol_audit_open("/dev/full", 0, err, sizeof err));
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);

    /* Rotation moves directory entries: a symlink at audit.jsonl.1 is replaced, not followed. */
    char one[160];
    snprintf(one, sizeof one, "%s.1", path);
    ck_assert_int_eq(symlink(target, one), 0);
    a = pol_audit_open(path, 300, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    struct pol_audit_rec r = rec("echo");
    for (int i = 0; i < 3; i++) {
        pol_audit_record(a, &r);
        pol_audit_flush(a);
    }
    pol_audit_close(a);
    ck_assert_int_eq(lstat(one, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    text = slurp(target, NULL);
    ck_assert_str_eq(text, "precious\n");
    core_free(text);
}
END_TEST

static Suite *audit_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("audit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_records);
    tcase_add_test(tc, test_mode_and_open_failure);
    tcase_add_test(tc, test_big_buffer_flushes_itself);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_write_failure);
    tcase_add_test(tc, test_symlink_and_special_files_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    core_alloc_hook_cjson();
    SRunner *sr = srunner_create(audit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
