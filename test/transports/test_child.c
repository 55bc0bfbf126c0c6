/* Tests for transports/child.c: real processes on a real loop.
 *
 * The binary doubles as the `__exec` trampoline (argv[1] == "__exec") and as a probe that
 * prints its PR_GET_PDEATHSIG value (argv[1] == "__pdeathsig"). */
#include "transports/child.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"

static char self_exe[PATH_MAX];

/* Internal (GW_STATIC) in transports/child.c. */
char **child_build_env(char *const *base, const struct tp_child_opts *opts, char *extra);

/* ---- harness ----------------------------------------------------------------------------- */

struct run {
    uv_loop_t loop;
    uv_timer_t watchdog;
    struct tp_child *c;
    char **frames; /* copies of the frames received */
    size_t n_frames;
    size_t stop_after; /* call tp_child_stop after this many frames; 0 = never */
    int n_invalid;
    int invalid_err;
    size_t frames_at_invalid;
    int n_exit;
    int64_t status;
    int term_signal;
    bool free_in_exit;
    bool invalid_before_exit;
    uint64_t t_exit; /* uv_hrtime at on_exit */
};

static void on_watchdog(uv_timer_t *t)
{
    ck_abort_msg("test timed out");
}

static void run_init(struct run *r)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    uv_timer_init(&r->loop, &r->watchdog);
    uv_timer_start(&r->watchdog, on_watchdog, 15000, 0);
    uv_unref((uv_handle_t *)&r->watchdog); /* fires only while something else runs */
}

static void on_frame(void *ctx, const char *p, size_t n)
{
    struct run *r = ctx;
    r->frames = core_xrealloc(r->frames, (r->n_frames + 1) * sizeof *r->frames);
    r->frames[r->n_frames++] = core_xstrndup(p, n);
    if (r->stop_after != 0 && r->n_frames == r->stop_after)
        tp_child_stop(r->c);
}

static void on_invalid(void *ctx, int err)
{
    struct run *r = ctx;
    r->n_invalid++;
    r->invalid_err = err;
    r->frames_at_invalid = r->n_frames;
    r->invalid_before_exit = r->n_exit == 0;
}

static void on_exit_cb(void *ctx, int64_t status, int term_signal)
{
    struct run *r = ctx;
    r->n_exit++;
    r->status = status;
    r->term_signal = term_signal;
    r->t_exit = uv_hrtime();
    ck_assert(tp_child_exited(r->c));
    if (r->free_in_exit) {
        tp_child_free(r->c);
        r->c = NULL;
    }
}

static const struct tp_child_cbs cbs = {on_frame, on_invalid, on_exit_cb};

static int spawn(struct run *r, struct tp_child_opts *o)
{
    return tp_child_spawn(&r->loop, o, &cbs, r, &r->c);
}

/* Frees everything and checks that the loop closes cleanly. */
static void run_finish(struct run *r)
{
    tp_child_free(r->c);
    r->c = NULL;
    uv_close((uv_handle_t *)&r->watchdog, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&r->loop), 0);
    for (size_t i = 0; i < r->n_frames; i++)
        core_free(r->frames[i]);
    core_free(r->frames);
}

static int write_str(struct tp_child *c, const char *s)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    return tp_child_write(c, &b, 1);
}

static double ms_since(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) / 1e6;
}

/* Reaps group members re-parented to us (we are a subreaper) and waits until the group is
 * empty. Returns true if it emptied within timeout_ms. */
static bool group_gone(int pgid, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        while (waitpid(-pgid, NULL, WNOHANG) > 0) {
        }
        if (kill(-pgid, 0) != 0 && errno == ESRCH)
            return true;
        usleep(10000);
    }
    return false;
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/agw-child-XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return core_xstrdup(d);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20;
    char *buf = core_xmalloc(cap + 1);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(test_echo_frames)
{
    struct run r;
    run_init(&r);
    struct tp_child_opts o = {.name = "cat", .file = "cat"};
    ck_assert_int_eq(spawn(&r, &o), 0);

    enum { N = 2000 };
    char line[64];
    /* Many small frames, each its own write. */
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof line, "{\"n\":%d}\n", i);
        ck_assert_int_eq(write_str(r.c, line), 0);
    }
    /* One frame split over three writes, and three frames in one multi-buffer write. */
    ck_assert_int_eq(write_str(r.c, "{\"spl"), 0);
    ck_assert_int_eq(write_str(r.c, "it\":"), 0);
    ck_assert_int_eq(write_str(r.c, "true}\r\n"), 0);
    uv_buf_t bufs[3] = {uv_buf_init("a\nb", 3), uv_buf_init("\n", 1), uv_buf_init("c\n", 2)};
    ck_assert_int_eq(tp_child_write(r.c, bufs, 3), 0);
    /* A 1 MiB frame. */
    size_t big = (size_t)1 << 20;
    char *blob = core_xmalloc(big + 1);
    for (size_t i = 0; i < big; i++)
        blob[i] = (char)('a' + i % 26);
    blob[big] = '\n';
    uv_buf_t bb = uv_buf_init(blob, (unsigned)(big + 1));
    ck_assert_int_eq(tp_child_write(r.c, &bb, 1), 0);
    core_free(blob);
    ck_assert_uint_gt(tp_child_queued(r.c), 0);
    ck_assert_int_eq(write_str(r.c, "last\n"), 0);
    r.stop_after = N + 6;

    uint64_t t0 = uv_hrtime();
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.term_signal, 0);
    ck_assert_int_eq(r.n_invalid, 0);
    ck_assert_uint_eq(r.n_frames, N + 6);
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof line, "{\"n\":%d}", i);
        ck_assert_str_eq(r.frames[i], line);
    }
    ck_assert_str_eq(r.frames[N], "{\"split\":true}");
    ck_assert_str_eq(r.frames[N + 1], "a");
    ck_assert_str_eq(r.frames[N + 2], "b");
    ck_assert_str_eq(r.frames[N + 3], "c");
    ck_assert_uint_eq(strlen(r.frames[N + 4]), big);
    for (size_t i = 0; i < big; i++)
        ck_assert(r.frames[N + 4][i] == (char)('a' + i % 26));
    ck_assert_str_eq(r.frames[N + 5], "last");
    /* cat leaves at stdin EOF: far less than the default 2 s grace. */
    ck_assert(ms_since(t0, r.t_exit) < 1500);
    ck_assert_uint_eq(tp_child_queued(r.c), 0);
    ck_assert_int_eq(write_str(r.c, "late\n"), CORE_ECLOSED);
    run_finish(&r);
}
END_TEST

/* A stop right after writes flushes them before closing stdin. */
START_TEST(test_stop_flushes)
{
    struct run r;
    run_init(&r);
    struct tp_child_opts o = {.file = "cat"};
    ck_assert_int_eq(spawn(&r, &o), 0);
    ck_assert_int_eq(write_str(r.c, "one\ntwo\n"), 0);
    ck_assert_int_eq(write_str(r.c, "three\n"), 0);
    tp_child_stop(r.c);
    tp_child_stop(r.c); /* idempotent */
    ck_assert_int_eq(write_str(r.c, "four\n"), CORE_ECLOSED);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_uint_eq(r.n_frames, 3);
    ck_assert_str_eq(r.frames[2], "three");
    run_finish(&r);
}
END_TEST

START_TEST(test_stderr_tail_and_log)
{
    char *dir = make_tmpdir();
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/child.log", dir);
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "echo out; echo one >&2; echo two >&2; printf 'thr\\r\\n' >&2; "
                          "printf three >&2",
                    NULL};
    struct tp_child_opts o = {.name = "err", .file = "sh", .args = args, .log_path = log};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.n_frames, 1);
    ck_assert_str_eq(r.frames[0], "out");

    const char *want = "one\ntwo\nthr\nthree\n";
    char tail[256];
    ck_assert_uint_eq(tp_child_stderr_tail(r.c, tail, sizeof tail), strlen(want));
    ck_assert_str_eq(tail, want);
    /* A small buffer gets whole lines only: the last ones that fit. */
    ck_assert_uint_eq(tp_child_stderr_tail(r.c, tail, 11), 10);
    ck_assert_str_eq(tail, "thr\nthree\n");
    ck_assert_uint_eq(tp_child_stderr_tail(r.c, tail, 5), 0);
    ck_assert_str_eq(tail, "");
    /* The log file is complete when on_exit fires. */
    size_t len;
    char *text = read_file(log, &len);
    ck_assert_str_eq(text, want);
    core_free(text);
    struct stat st;
    ck_assert_int_eq(stat(log, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    run_finish(&r);

    /* A second run appends. */
    run_init(&r);
    char *args2[] = {"-c", "echo again >&2", NULL};
    o.args = args2;
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    text = read_file(log, &len);
    ck_assert_str_eq(text, "one\ntwo\nthr\nthree\nagain\n");
    core_free(text);
    run_finish(&r);
    rm_rf(dir);
    core_free(dir);
}
END_TEST

START_TEST(test_log_rotates)
{
    char *dir = make_tmpdir();
    char log[PATH_MAX], p[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/child.log", dir);
    struct run r;
    run_init(&r);
    /* 2000 lines of 100 bytes, 200 KB in all, through a 10 KB log: it rotates, keeping three
     * old files; the oldest lines are gone. */
    char *args[] = {"-c", "i=0; while [ $i -lt 2000 ]; do printf '%099d\\n' $i >&2; i=$((i+1)); "
                          "done",
                    NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .log_path = log, .log_max = 10000};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    size_t total = 0;
    for (int i = 0; i <= 3; i++) {
        if (i == 0)
            snprintf(p, sizeof p, "%s", log);
        else
            snprintf(p, sizeof p, "%s.%d", log, i);
        struct stat st;
        ck_assert_msg(stat(p, &st) == 0, "%s missing", p);
        /* A file may pass the bound by the one write that found it under. */
        ck_assert_msg(st.st_size <= 10000 + 64 * 1024, "%s has %lld bytes", p,
                      (long long)st.st_size);
        total += (size_t)st.st_size;
    }
    snprintf(p, sizeof p, "%s.4", log);
    ck_assert_int_ne(access(p, F_OK), 0);
    /* The newest lines are in the current file. */
    size_t len;
    char *text = read_file(log, &len);
    ck_assert_ptr_nonnull(strstr(text, "1999\n"));
    core_free(text);
    ck_assert_uint_lt(total, 200000);
    run_finish(&r);
    rm_rf(dir);
    core_free(dir);
}
END_TEST

START_TEST(test_stderr_ring_bounded)
{
    char *dir = make_tmpdir();
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/child.log", dir);
    struct run r;
    run_init(&r);
    /* 3000 lines of 100 bytes and one 10000-byte line (split at 4096). */
    char *args[] = {"-c",
                    "i=0; while [ $i -lt 3000 ]; do printf '%099d\\n' $i >&2; i=$((i+1)); done; "
                    "head -c 10000 /dev/zero | tr '\\0' y >&2; echo >&2; echo end >&2",
                    NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .log_path = log};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);

    char *tail = core_xmalloc(65536);
    size_t n = tp_child_stderr_tail(r.c, tail, 65536);
    ck_assert_uint_le(n, 16384);
    ck_assert_uint_gt(n, 10000);
    ck_assert_uint_eq(strlen(tail), n);
    ck_assert(n >= 4 && strcmp(tail + n - 4, "end\n") == 0);
    /* Starts on a line boundary: the 10000 y's came as lines of 4096, 4096 and 1808. */
    ck_assert(tail[0] == 'y' || tail[0] == '0');
    core_free(tail);

    size_t len;
    char *text = read_file(log, &len);
    ck_assert_uint_eq(len, 3000 * 100 + 10001 + 2 + 4);
    ck_assert(strncmp(text, "000", 3) == 0);
    ck_assert(text[4096 + 1 + 3000 * 100 - 1] != 0);
    core_free(text);
    run_finish(&r);
    rm_rf(dir);
    core_free(dir);
}
END_TEST

START_TEST(test_oversized_frame)
{
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "echo ok; head -c 5000 /dev/zero | tr '\\0' x; echo; echo after; "
                          "sleep 30",
                    NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .max_frame = 1024,
                              .stop_grace_ms = 200};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_invalid, 1);
    ck_assert_int_eq(r.invalid_err, CORE_ETOOBIG);
    ck_assert(r.invalid_before_exit);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.term_signal, SIGTERM);
    /* The good frame before it came through; nothing after it. */
    ck_assert_uint_eq(r.n_frames, 1);
    ck_assert_str_eq(r.frames[0], "ok");
    ck_assert(group_gone(tp_child_pid(r.c), 2000));
    run_finish(&r);
}
END_TEST

START_TEST(test_stop_sequence)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done", NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .stop_grace_ms = 200};
    ck_assert_int_eq(spawn(&r, &o), 0);
    int pid = tp_child_pid(r.c);
    ck_assert_int_gt(pid, 0);
    /* Own session and process group. */
    ck_assert_int_eq(getpgid(pid), pid);
    ck_assert_int_eq(getsid(pid), pid);
    ck_assert_int_ne(getpgid(pid), getpgid(0));
    /* Wait until the trap is set before stopping. */
    while (r.n_frames == 0)
        uv_run(&r.loop, UV_RUN_ONCE);
    uint64_t t0 = uv_hrtime();
    tp_child_stop(r.c);
    tp_child_stop(r.c);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.term_signal, SIGKILL);
    double ms = ms_since(t0, r.t_exit);
    ck_assert_msg(ms >= 390 && ms < 1500, "stop took %.0f ms", ms);
    ck_assert(group_gone(pid, 2000));
    tp_child_stop(r.c); /* after exit: nothing */
    tp_child_kill(r.c);
    run_finish(&r);
}
END_TEST

START_TEST(test_kill)
{
    struct run r;
    run_init(&r);
    char *args[] = {"30", NULL};
    struct tp_child_opts o = {.file = "sleep", .args = args};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uint64_t t0 = uv_hrtime();
    tp_child_kill(r.c);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.term_signal, SIGKILL);
    ck_assert(ms_since(t0, r.t_exit) < 1000);
    run_finish(&r);
}
END_TEST

/* The leader exits but a background process keeps stdout open: the group is stopped so that
 * on_exit still comes, with the leader's status. */
START_TEST(test_leader_exit_with_orphan)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "sleep 30 & echo started; exit 3", NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .stop_grace_ms = 200};
    ck_assert_int_eq(spawn(&r, &o), 0);
    int pid = tp_child_pid(r.c);
    uint64_t t0 = uv_hrtime();
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.status, 3);
    ck_assert_int_eq(r.term_signal, 0);
    ck_assert_uint_eq(r.n_frames, 1);
    ck_assert(ms_since(t0, r.t_exit) < 1500);
    ck_assert(group_gone(pid, 2000));
    run_finish(&r);
}
END_TEST

/* Direct spawn of a missing program fails at once with UV_ENOENT; through the trampoline the
 * spawn succeeds and the child exits with status 127. */
START_TEST(test_missing_program)
{
    struct run r;
    run_init(&r);
    struct tp_child_opts o = {.file = "agentgate-no-such-program-xyz"};
    r.c = (struct tp_child *)&r; /* must stay untouched on failure */
    ck_assert_int_eq(spawn(&r, &o), UV_ENOENT);
    ck_assert_ptr_eq(r.c, (struct tp_child *)&r);
    r.c = NULL;
    o.file = "/nonexistent/dir/prog";
    ck_assert_int_eq(spawn(&r, &o), UV_ENOENT);
    r.c = NULL;
    o.file = "cat";
    o.self_exe = "/nonexistent/agentgate";
    ck_assert_int_eq(spawn(&r, &o), UV_ENOENT);
    r.c = NULL;
    run_finish(&r);

    run_init(&r);
    struct tp_child_opts t = {.file = "agentgate-no-such-program-xyz", .self_exe = self_exe};
    ck_assert_int_eq(spawn(&r, &t), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.status, 127);
    char tail[512];
    tp_child_stderr_tail(r.c, tail, sizeof tail);
    ck_assert_ptr_nonnull(strstr(tail, "agentgate-no-such-program-xyz"));
    run_finish(&r);
}
END_TEST

static void check_env_cwd(const char *trampoline)
{
    char *dir = make_tmpdir();
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(dir, real));
    setenv("AG_TEST_REPLACED", "old", 1);
    struct run r;
    run_init(&r);
    char *args[] = {"-c",
                    "echo \"$AG_TEST_X\"; echo \"$AG_TEST_REPLACED\"; pwd; "
                    "env | grep -c '^AG_TEST_REPLACED='; echo \"${AGENTGATE_PARENT_PID-unset}\"; "
                    "echo \"${PATH:+haspath}\"",
                    NULL};
    char *env[] = {"AG_TEST_X=hello world", "AG_TEST_REPLACED=first", "AG_TEST_REPLACED=new",
                   NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .env_add = env, .cwd = dir,
                              .self_exe = trampoline};
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.n_frames, 6);
    ck_assert_str_eq(r.frames[0], "hello world");
    ck_assert_str_eq(r.frames[1], "new");
    ck_assert_str_eq(r.frames[2], real);
    ck_assert_str_eq(r.frames[3], "1");
    ck_assert_str_eq(r.frames[4], "unset");
    ck_assert_str_eq(r.frames[5], "haspath");
    run_finish(&r);
    rm_rf(dir);
    core_free(dir);
}

START_TEST(test_env_and_cwd)
{
    check_env_cwd(NULL);
}
END_TEST

START_TEST(test_env_and_cwd_trampoline)
{
    check_env_cwd(self_exe);
}
END_TEST

/* How many entries of env are exactly `entry` ("NAME=VALUE"). */
static int env_count(char **env, const char *entry)
{
    int n = 0;
    for (size_t i = 0; env[i] != NULL; i++)
        n += strcmp(env[i], entry) == 0;
    return n;
}

/* How many entries of env have the name `name`, whatever their value. */
static int env_count_name(char **env, const char *name)
{
    int n = 0;
    size_t len = strlen(name);
    for (size_t i = 0; env[i] != NULL; i++)
        n += strncmp(env[i], name, len) == 0 && env[i][len] == '=';
    return n;
}

static size_t env_len(char **env)
{
    size_t n = 0;
    while (env[n] != NULL)
        n++;
    return n;
}

/* By default only the default set passes: not a random variable, not an API key. */
START_TEST(test_env_default_set)
{
    char *base[] = {"PATH=/usr/bin:/bin",
                    "HOME=/home/me",
                    "USER=me",
                    "LANG=C.UTF-8",
                    "LC_ALL=C",
                    "LC_TIME=de_DE",
                    "TZ=UTC",
                    "XDG_CONFIG_HOME=/home/me/.config",
                    "NODE_OPTIONS=--experimental-global-webcrypto",
                    "NODE_EXTRA_CA_CERTS=/etc/ca.pem",
                    "npm_config_cache=/tmp/npm",
                    "NPM_CONFIG_REGISTRY=https://registry.example",
                    "UV_CACHE_DIR=/tmp/uv",
                    "VIRTUAL_ENV=/venv",
                    "https_proxy=http://proxy:3128",
                    "NO_PROXY=localhost",
                    "AG_TEST_NOISE=noise",
                    "OPENAI_API_KEY=sk-secret",
                    "PATHOLOGICAL=1", /* a default name's prefix is not a glob */
                    "LC=1",
                    "NOEQUALS",
                    "=novalue",
                    NULL};
    struct tp_child_opts o = {.file = "x"};
    char **env = child_build_env(base, &o, NULL);
    for (size_t i = 0; i < 16; i++)
        ck_assert_msg(env_count(env, base[i]) == 1, "%s should pass", base[i]);
    ck_assert_uint_eq(env_len(env), 16);
    ck_assert_int_eq(env_count_name(env, "AG_TEST_NOISE"), 0);
    ck_assert_int_eq(env_count_name(env, "OPENAI_API_KEY"), 0);
    core_free(env);

    /* The trampoline's variable is added; one already there is replaced, not doubled. */
    char *base2[] = {"PATH=/bin", "AGENTGATE_PARENT_PID=1", NULL};
    char extra[] = "AGENTGATE_PARENT_PID=42";
    o.env_inherit_all = true;
    env = child_build_env(base2, &o, extra);
    ck_assert_int_eq(env_count(env, "PATH=/bin"), 1);
    ck_assert_int_eq(env_count(env, extra), 1);
    ck_assert_int_eq(env_count_name(env, "AGENTGATE_PARENT_PID"), 1);
    ck_assert_uint_eq(env_len(env), 2);
    core_free(env);

    /* No environment at all. */
    env = child_build_env(NULL, &o, NULL);
    ck_assert_uint_eq(env_len(env), 0);
    core_free(env);
}
END_TEST

/* The deny list wins over the default set, env_pass and env_inherit_all, never over env_add. */
START_TEST(test_env_deny_wins)
{
    char *base[] = {"PATH=/bin",        "HOME=/home/me",     "AG_TEST_NOISE=noise",
                    "CLIENT_TOKEN=tok", "OTHER_SECRET=s3cr", "SECRETS_A=a",
                    "SECRETS_B=b",      "MINE=inherited",    NULL};
    char *deny[] = {"CLIENT_TOKEN", "OTHER_SECRET", "SECRETS_*", "HOME", "MINE", NULL};
    char *add[] = {"MINE=from env.MINE", NULL};
    char *pass[] = {"OTHER_SECRET", "CLIENT_*", NULL};
    struct tp_child_opts o = {.file = "x", .env_deny = deny, .env_add = add};

    o.env_inherit_all = true;
    char **env = child_build_env(base, &o, NULL);
    ck_assert_int_eq(env_count(env, "PATH=/bin"), 1);
    ck_assert_int_eq(env_count(env, "AG_TEST_NOISE=noise"), 1);
    ck_assert_int_eq(env_count_name(env, "CLIENT_TOKEN"), 0);
    ck_assert_int_eq(env_count_name(env, "OTHER_SECRET"), 0);
    ck_assert_int_eq(env_count_name(env, "SECRETS_A"), 0);
    ck_assert_int_eq(env_count_name(env, "SECRETS_B"), 0);
    ck_assert_int_eq(env_count_name(env, "HOME"), 0);
    /* The server's own env.* reaches it even under a denied name. */
    ck_assert_int_eq(env_count_name(env, "MINE"), 1);
    ck_assert_int_eq(env_count(env, "MINE=from env.MINE"), 1);
    ck_assert_uint_eq(env_len(env), 3);
    core_free(env);

    /* Default mode: env_pass naming a denied variable does not bring it in. */
    o.env_inherit_all = false;
    o.env_pass = pass;
    env = child_build_env(base, &o, NULL);
    ck_assert_int_eq(env_count(env, "PATH=/bin"), 1);
    ck_assert_int_eq(env_count(env, "MINE=from env.MINE"), 1);
    ck_assert_uint_eq(env_len(env), 2);
    core_free(env);
}
END_TEST

/* env_add replaces inherited values (the last of duplicates wins); env_pass adds names and
 * trailing-* globs in default mode only. */
START_TEST(test_env_add_and_pass)
{
    char *base[] = {"PATH=/bin",    "AG_PASS_ONE=1", "AG_PASS_=2",   "AG_PASS=3", "AG_EXACT=4",
                    "AG_EXACTLY=5", "AG_OTHER=6",    "XAG_PASS_X=7", NULL};
    char *pass[] = {"AG_PASS_*", "AG_EXACT", NULL};
    char *add[] = {"PATH=/opt/bin", "AG_NEW=x", "AG_NEW=y", NULL};
    struct tp_child_opts o = {.file = "x", .env_pass = pass, .env_add = add};
    char **env = child_build_env(base, &o, NULL);
    ck_assert_int_eq(env_count(env, "PATH=/opt/bin"), 1);
    ck_assert_int_eq(env_count_name(env, "PATH"), 1);
    ck_assert_int_eq(env_count(env, "AG_NEW=y"), 1);
    ck_assert_int_eq(env_count_name(env, "AG_NEW"), 1);
    ck_assert_int_eq(env_count(env, "AG_PASS_ONE=1"), 1);
    ck_assert_int_eq(env_count(env, "AG_PASS_=2"), 1);
    ck_assert_int_eq(env_count(env, "AG_EXACT=4"), 1);
    ck_assert_int_eq(env_count_name(env, "AG_PASS"), 0);
    ck_assert_int_eq(env_count_name(env, "AG_EXACTLY"), 0);
    ck_assert_int_eq(env_count_name(env, "AG_OTHER"), 0);
    ck_assert_int_eq(env_count_name(env, "XAG_PASS_X"), 0);
    ck_assert_uint_eq(env_len(env), 5);
    core_free(env);
}
END_TEST

/* The same rules on a real spawn, with and without the trampoline. */
static void check_env_inherit(const char *trampoline)
{
    setenv("AG_TEST_NOISE", "noise", 1);
    setenv("AG_TEST_SECRET", "s3cr3t", 1);
    setenv("AG_TEST_PASSED", "passed", 1);
    char *args[] = {"-c",
                    "echo \"${AG_TEST_NOISE-unset}\"; echo \"${AG_TEST_SECRET-unset}\"; "
                    "echo \"${AG_TEST_PASSED-unset}\"; echo \"${PATH:+haspath}\"",
                    NULL};
    char *deny[] = {"AG_TEST_SECRET", NULL};
    char *pass[] = {"AG_TEST_PASS*", "AG_TEST_SECRET", NULL};
    struct tp_child_opts o = {
        .file = "sh", .args = args, .env_deny = deny, .env_pass = pass, .self_exe = trampoline};
    struct run r;
    run_init(&r);
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.n_frames, 4);
    ck_assert_str_eq(r.frames[0], "unset");
    ck_assert_str_eq(r.frames[1], "unset");
    ck_assert_str_eq(r.frames[2], "passed");
    ck_assert_str_eq(r.frames[3], "haspath");
    run_finish(&r);

    o.env_inherit_all = true;
    o.env_pass = NULL;
    run_init(&r);
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(r.n_frames, 4);
    ck_assert_str_eq(r.frames[0], "noise");
    ck_assert_str_eq(r.frames[1], "unset");
    ck_assert_str_eq(r.frames[2], "passed");
    run_finish(&r);
    unsetenv("AG_TEST_NOISE");
    unsetenv("AG_TEST_SECRET");
    unsetenv("AG_TEST_PASSED");
}

START_TEST(test_env_inherit_spawn)
{
    check_env_inherit(NULL);
}
END_TEST

START_TEST(test_env_inherit_spawn_trampoline)
{
    check_env_inherit(self_exe);
}
END_TEST

/* Spawns `sh` listing its own open descriptors (ls -l /proc/PID/fd) and returns whether any
 * of them points at `path`. */
static bool child_sees_file(const char *trampoline, const char *path)
{
    char *args[] = {"-c", "ls -l /proc/$$/fd", NULL};
    struct tp_child_opts o = {.file = "sh", .args = args, .self_exe = trampoline};
    struct run r;
    run_init(&r);
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_gt(r.n_frames, 3); /* a total line and stdin, stdout, stderr at least */
    bool seen = false;
    for (size_t i = 0; i < r.n_frames; i++)
        seen |= strstr(r.frames[i], path) != NULL;
    run_finish(&r);
    return seen;
}

/* A descriptor the daemon inherited without close-on-exec (as a shell or a test harness may
 * hand over): the trampoline closes it before exec'ing the server. */
START_TEST(test_inherited_fd_closed)
{
    char *dir = make_tmpdir();
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/leak-marker", dir);
    int fd = open(marker, O_WRONLY | O_CREAT, 0600); /* no O_CLOEXEC, on purpose */
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, 47), 47);
    ck_assert_int_eq(fcntl(47, F_GETFD) & FD_CLOEXEC, 0);

    /* Spawned directly the child sees both, which shows the probe works. */
    ck_assert(child_sees_file(NULL, marker));
    /* Through the trampoline it sees neither. */
    ck_assert(!child_sees_file(self_exe, marker));

    /* What the daemon calls at start marks them close-on-exec (and leaves stdio alone), so a
     * direct spawn does not leak them either. */
    int err_flags = fcntl(2, F_GETFD);
    tp_child_cloexec_inherited();
    ck_assert_int_ne(fcntl(47, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(fcntl(2, F_GETFD), err_flags);
    ck_assert(!child_sees_file(NULL, marker));
    ck_assert(!child_sees_file(self_exe, marker));
    /* Still open in the daemon itself. */
    ck_assert_int_eq(write(47, "x", 1), 1);

    close(47);
    close(fd);
    rm_rf(dir);
    core_free(dir);
}
END_TEST

START_TEST(test_pdeathsig_set)
{
    struct run r;
    run_init(&r);
    char *args[] = {"__pdeathsig", NULL};
    struct tp_child_opts o = {.file = self_exe, .args = args, .self_exe = self_exe};
    ck_assert_int_eq(spawn(&r, &o), 0);
    int pid = tp_child_pid(r.c);
    ck_assert_int_eq(getpgid(pid), pid);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.n_frames, 1);
    ck_assert_str_eq(r.frames[0], "9");
    run_finish(&r);

    /* Without the trampoline nothing sets it. */
    run_init(&r);
    o.self_exe = NULL;
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(r.n_frames, 1);
    ck_assert_str_eq(r.frames[0], "0");
    run_finish(&r);
}
END_TEST

static int report_fd = -1;

static void on_sleeper_frame(void *ctx, const char *p, size_t n)
{
    /* The intermediate parent passes the sleeper's pid on and dies at once. */
    ck_assert_int_eq(write(report_fd, p, n), (ssize_t)n);
    _exit(0);
}

static void on_sleeper_exit(void *ctx, int64_t status, int term_signal)
{
    _exit(1);
}

/* The daemon dies: a child started through the trampoline gets SIGKILL. */
START_TEST(test_pdeathsig_kills)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t mid = fork();
    ck_assert_int_ge(mid, 0);
    if (mid == 0) {
        close(fds[0]);
        report_fd = fds[1];
        uv_loop_t loop;
        uv_loop_init(&loop);
        char *args[] = {"-c", "echo $$; exec sleep 30", NULL};
        struct tp_child_opts o = {.file = "sh", .args = args, .self_exe = self_exe};
        struct tp_child_cbs mcbs = {on_sleeper_frame, NULL, on_sleeper_exit};
        struct tp_child *c;
        if (tp_child_spawn(&loop, &o, &mcbs, NULL, &c) != 0)
            _exit(2);
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(3);
    }
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
    char buf[32] = {0};
    ck_assert_int_gt(read(fds[0], buf, sizeof buf - 1), 0);
    close(fds[0]);
    long sleeper = strtol(buf, NULL, 10);
    ck_assert_int_gt(sleeper, 0);
    int st;
    ck_assert_int_eq(waitpid(mid, &st, 0), mid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The sleeper is re-parented to us (subreaper); it must die of SIGKILL promptly. */
    pid_t got = 0;
    for (int i = 0; i < 300 && got == 0; i++) {
        got = waitpid((pid_t)sleeper, &st, WNOHANG);
        if (got == 0)
            usleep(10000);
    }
    if (got == 0)
        kill((pid_t)sleeper, SIGKILL);
    ck_assert_int_eq(got, (pid_t)sleeper);
    ck_assert(WIFSIGNALED(st));
    ck_assert_int_eq(WTERMSIG(st), SIGKILL);
}
END_TEST

/* The trampoline refuses to run when its parent is not the one that spawned it. */
START_TEST(test_trampoline_parent_check)
{
    char pid_env[64];
    snprintf(pid_env, sizeof pid_env, "%ld", (long)getpid() + 1000000);
    setenv("AGENTGATE_PARENT_PID", pid_env, 1);
    char *argv[] = {"__exec", "true", NULL};
    ck_assert_int_eq(tp_child_exec_main(2, argv), 1);
    char *argv2[] = {"__exec", NULL};
    ck_assert_int_eq(tp_child_exec_main(1, argv2), 2);
    unsetenv("AGENTGATE_PARENT_PID");
    char *argv3[] = {"__exec", "/nonexistent/prog", NULL};
    ck_assert_int_eq(tp_child_exec_main(2, argv3), 127);
}
END_TEST

START_TEST(test_free_while_running)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "sleep 30", NULL};
    struct tp_child_opts o = {.file = "sh", .args = args};
    ck_assert_int_eq(spawn(&r, &o), 0);
    int pid = tp_child_pid(r.c);
    ck_assert_int_eq(write_str(r.c, "x\n"), 0);
    /* Freed at once: the group is killed, no callback fires, the loop still closes. */
    run_finish(&r);
    ck_assert_int_eq(r.n_exit, 0);
    ck_assert(group_gone(pid, 2000));
}
END_TEST

START_TEST(test_free_in_on_exit)
{
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "echo a; echo b >&2", NULL};
    char *dir = make_tmpdir();
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/l.log", dir);
    struct tp_child_opts o = {.file = "sh", .args = args, .log_path = log};
    r.free_in_exit = true;
    ck_assert_int_eq(spawn(&r, &o), 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_ptr_null(r.c);
    run_finish(&r);
    rm_rf(dir);
    core_free(dir);
}
END_TEST

/* Writes to a child that never reads and has exited: treated as a closed stdin, no SIGPIPE
 * death, no error surfacing later. */
START_TEST(test_write_to_dead_child)
{
    struct run r;
    run_init(&r);
    struct tp_child_opts o = {.file = "true"};
    ck_assert_int_eq(spawn(&r, &o), 0);
    char *big = core_xcalloc(1, (size_t)4 << 20);
    uv_buf_t b = uv_buf_init(big, 4u << 20);
    ck_assert_int_eq(tp_child_write(r.c, &b, 1), 0);
    ck_assert_int_eq(tp_child_write(r.c, &b, 1), 0);
    core_free(big);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r.n_exit, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(write_str(r.c, "x\n"), CORE_ECLOSED);
    run_finish(&r);
}
END_TEST

START_TEST(test_no_leaks)
{
    long live = core_alloc_live();
    struct run r;
    run_init(&r);
    char *args[] = {"-c", "cat; echo bye >&2", NULL};
    struct tp_child_opts o = {.name = "leak", .file = "sh", .args = args, .stop_grace_ms = 100};
    ck_assert_int_eq(spawn(&r, &o), 0);
    ck_assert_int_eq(write_str(r.c, "hello\n"), 0);
    r.stop_after = 1;
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(r.n_frames, 1);
    run_finish(&r);
    ck_assert_int_eq(core_alloc_live(), live);
}
END_TEST

static Suite *child_suite(void)
{
    Suite *s = suite_create("child");
    TCase *tc = tcase_create("child");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_echo_frames);
    tcase_add_test(tc, test_stop_flushes);
    tcase_add_test(tc, test_stderr_tail_and_log);
    tcase_add_test(tc, test_stderr_ring_bounded);
    tcase_add_test(tc, test_log_rotates);
    tcase_add_test(tc, test_oversized_frame);
    tcase_add_test(tc, test_stop_sequence);
    tcase_add_test(tc, test_kill);
    tcase_add_test(tc, test_leader_exit_with_orphan);
    tcase_add_test(tc, test_missing_program);
    tcase_add_test(tc, test_env_and_cwd);
    tcase_add_test(tc, test_env_and_cwd_trampoline);
    tcase_add_test(tc, test_env_default_set);
    tcase_add_test(tc, test_env_deny_wins);
    tcase_add_test(tc, test_env_add_and_pass);
    tcase_add_test(tc, test_env_inherit_spawn);
    tcase_add_test(tc, test_env_inherit_spawn_trampoline);
    tcase_add_test(tc, test_inherited_fd_closed);
    tcase_add_test(tc, test_pdeathsig_set);
    tcase_add_test(tc, test_pdeathsig_kills);
    tcase_add_test(tc, test_trampoline_parent_check);
    tcase_add_test(tc, test_free_while_running);
    tcase_add_test(tc, test_free_in_on_exit);
    tcase_add_test(tc, test_write_to_dead_child);
    tcase_add_test(tc, test_no_leaks);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "__exec") == 0)
        return tp_child_exec_main(argc - 1, argv + 1); /* as cmd/main.c calls it */
    if (argc >= 2 && strcmp(argv[1], "__pdeathsig") == 0) {
        int sig = -1;
        if (prctl(PR_GET_PDEATHSIG, &sig) != 0)
            return 1;
        printf("%d\n", sig);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN); /* as the daemon does: write errors come back as EPIPE */
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';

    SRunner *sr = srunner_create(child_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
