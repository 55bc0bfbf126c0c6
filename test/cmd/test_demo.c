/* Tests for cmd/demo.c: the demo server runs in a forked process on pipes (or a file as
 * stdin) and the test talks to it like a client, line by line. */
#include "cmd/demo.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

/* ---- a client over pipes ----------------------------------------------------------------- */

struct peer {
    pid_t pid;
    int to;   /* the server's stdin, -1 once closed */
    int from; /* the server's stdout */
    char *rbuf;
    size_t rlen;
    size_t rcap;
    bool eof;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the server in a child with stdin from in_fd (or a new pipe when in_fd < 0). Exits with
 * the server's status, or 99 if it left allocations behind. */
static void peer_start_fd(struct peer *p, int in_fd)
{
    memset(p, 0, sizeof *p);
    int in[2] = {-1, -1};
    int out[2];
    if (in_fd < 0)
        ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        dup2(in_fd >= 0 ? in_fd : in[0], 0);
        dup2(out[1], 1);
        if (in_fd >= 0) {
            close(in_fd);
        } else {
            close(in[0]);
            close(in[1]);
        }
        close(out[0]);
        close(out[1]);
        long live = core_alloc_live();
        char *argv[] = {"agentgate", "demo-server", NULL};
        int rc = cmd_demo_main(2, argv);
        if (core_alloc_live() != live) {
            fprintf(stderr, "demo server leaked %ld allocations\n", core_alloc_live() - live);
            rc = 99;
        }
        exit(rc);
    }
    close(out[1]);
    p->from = out[0];
    if (in_fd >= 0) {
        p->to = -1;
    } else {
        close(in[0]);
        p->to = in[1];
    }
}

static void peer_start(struct peer *p)
{
    peer_start_fd(p, -1);
}

/* Reads what is available into rbuf (waiting at most timeout_ms). */
static void peer_fill(struct peer *p, int timeout_ms)
{
    struct pollfd pfd = {.fd = p->from, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    if (n <= 0)
        return;
    if (p->rcap - p->rlen < 65536) {
        p->rcap = p->rcap * 2 + 65536;
        p->rbuf = core_xrealloc(p->rbuf, p->rcap);
    }
    ssize_t r = read(p->from, p->rbuf + p->rlen, p->rcap - p->rlen);
    if (r == 0)
        p->eof = true;
    else if (r > 0)
        p->rlen += (size_t)r;
}

/* Writes everything while draining the server's output, so neither side can block the other.
 * Returns false if the server stopped reading (EPIPE). */
static bool peer_write(struct peer *p, const char *data, size_t n)
{
    while (n > 0) {
        struct pollfd pfd[2] = {{.fd = p->to, .events = POLLOUT},
                                {.fd = p->from, .events = POLLIN}};
        ck_assert_int_gt(poll(pfd, 2, 10000), 0);
        if (pfd[1].revents & (POLLIN | POLLHUP))
            peer_fill(p, 0);
        if (pfd[0].revents & (POLLERR | POLLHUP))
            return false;
        if (pfd[0].revents & POLLOUT) {
            size_t chunk = n > 65536 ? 65536 : n;
            int fl = fcntl(p->to, F_GETFL);
            fcntl(p->to, F_SETFL, fl | O_NONBLOCK);
            ssize_t w = write(p->to, data, chunk);
            fcntl(p->to, F_SETFL, fl);
            if (w < 0 && errno == EPIPE)
                return false;
            if (w > 0) {
                data += w;
                n -= (size_t)w;
            }
        }
    }
    return true;
}

static void peer_send(struct peer *p, const char *line)
{
    ck_assert(peer_write(p, line, strlen(line)));
    ck_assert(peer_write(p, "\n", 1));
}

/* The next line (allocated, without "\n"), or NULL on EOF or after timeout_ms. */
static char *peer_line(struct peer *p, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = p->rlen ? memchr(p->rbuf, '\n', p->rlen) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - p->rbuf);
            char *line = core_xstrndup(p->rbuf, n);
            memmove(p->rbuf, nl + 1, p->rlen - n - 1);
            p->rlen -= n + 1;
            return line;
        }
        uint64_t t = now_ms();
        if (p->eof || t >= deadline)
            return NULL;
        peer_fill(p, (int)(deadline - t));
    }
}

/* The next message parsed; fails the test on timeout. */
static cJSON *peer_recv(struct peer *p)
{
    char *line = peer_line(p, 5000);
    ck_assert_msg(line != NULL, "no reply from the demo server");
    cJSON *m = cJSON_Parse(line);
    ck_assert_msg(m != NULL, "reply is not JSON: %s", line);
    core_free(line);
    return m;
}

static cJSON *call(struct peer *p, const char *line)
{
    peer_send(p, line);
    return peer_recv(p);
}

/* Closes stdin, expects EOF within timeout_ms and returns the exit status. */
static int peer_finish(struct peer *p, int timeout_ms)
{
    if (p->to >= 0)
        close(p->to);
    p->to = -1;
    char *line;
    while ((line = peer_line(p, timeout_ms)) != NULL) {
        ck_abort_msg("unexpected output before EOF: %s", line);
        core_free(line);
    }
    ck_assert_msg(p->eof, "no EOF from the demo server");
    close(p->from);
    core_free(p->rbuf);
    int st;
    ck_assert_int_eq(waitpid(p->pid, &st, 0), p->pid);
    ck_assert_msg(WIFEXITED(st), "demo server died with signal %d", WTERMSIG(st));
    return WEXITSTATUS(st);
}

/* ---- JSON helpers ------------------------------------------------------------------------ */

static cJSON *path(cJSON *m, const char *a, const char *b, const char *c)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(m, a);
    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    if (c != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, c);
    return v;
}

static const char *str_at(cJSON *m, const char *a, const char *b, const char *c)
{
    cJSON *v = path(m, a, b, c);
    ck_assert_msg(cJSON_IsString(v), "missing string %s.%s.%s", a, b ? b : "", c ? c : "");
    return v->valuestring;
}

static int error_code(cJSON *m)
{
    cJSON *v = path(m, "error", "code", NULL);
    ck_assert_msg(cJSON_IsNumber(v), "not an error reply");
    return v->valueint;
}

/* The text of result.content[0]. */
static const char *result_text(cJSON *m)
{
    cJSON *c = cJSON_GetArrayItem(path(m, "result", "content", NULL), 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(str_at(c, "type", NULL, NULL), "text");
    return str_at(c, "text", NULL, NULL);
}

static void check_id(cJSON *m, int id)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "id");
    ck_assert(cJSON_IsNumber(v));
    ck_assert_int_eq(v->valueint, id);
}

static char *tool_call(int id, const char *name, const char *args)
{
    size_t n = strlen(args) + strlen(name) + 128;
    char *s = core_xmalloc(n);
    snprintf(s, n,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
             "{\"name\":\"%s\",\"arguments\":%s}}",
             id, name, args);
    return s;
}

static cJSON *call_tool(struct peer *p, int id, const char *name, const char *args)
{
    char *s = tool_call(id, name, args);
    cJSON *m = call(p, s);
    core_free(s);
    check_id(m, id);
    return m;
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(test_initialize_versions)
{
    struct peer p;
    peer_start(&p);
    static const char *const vs[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    char line[256];
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof line,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"initialize\",\"params\":"
                 "{\"protocolVersion\":\"%s\",\"capabilities\":{},"
                 "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}",
                 i, vs[i]);
        cJSON *m = call(&p, line);
        check_id(m, i);
        ck_assert_str_eq(str_at(m, "result", "protocolVersion", NULL), vs[i]);
        cJSON_Delete(m);
    }
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"initialize\",\"params\":"
                        "{\"protocolVersion\":\"1999-01-01\",\"capabilities\":{}}}");
    ck_assert_str_eq(str_at(m, "result", "protocolVersion", NULL), "2025-11-25");
    cJSON *caps = path(m, "result", "capabilities", NULL);
    ck_assert(cJSON_IsTrue(path(caps, "tools", "listChanged", NULL)));
    ck_assert(cJSON_IsTrue(path(caps, "resources", "subscribe", NULL)));
    ck_assert(cJSON_IsTrue(path(caps, "resources", "listChanged", NULL)));
    ck_assert(cJSON_IsTrue(path(caps, "prompts", "listChanged", NULL)));
    ck_assert(cJSON_IsObject(path(caps, "logging", NULL, NULL)));
    ck_assert(cJSON_IsObject(path(caps, "completions", NULL, NULL)));
    ck_assert_str_eq(str_at(m, "result", "serverInfo", "name"), "agentgate-demo");
    ck_assert_str_eq(str_at(m, "result", "serverInfo", "version"), AG_VERSION);
    ck_assert_uint_gt(strlen(str_at(m, "result", "instructions", NULL)), 10);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"initialize\",\"params\":{}}");
    ck_assert_str_eq(str_at(m, "result", "protocolVersion", NULL), "2025-11-25");
    cJSON_Delete(m);
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}");
    check_id(m, 9);
    ck_assert(cJSON_IsObject(path(m, "result", NULL, NULL)));
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_ids_exact)
{
    struct peer p;
    peer_start(&p);
    static const char *const ids[] = {
        "0", "-7", "9007199254740993", "18446744073709551615", "1.5", "1e3", "\"abc\"", "\"\"",
        "\"\\u00e9\\\"x\"", "\"42\"", "null",
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char line[256];
        snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\": %s ,\"method\":\"ping\"}",
                 ids[i]);
        peer_send(&p, line);
        char *reply = peer_line(&p, 5000);
        ck_assert_ptr_nonnull(reply);
        char want[256];
        snprintf(want, sizeof want, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}", ids[i]);
        ck_assert_str_eq(reply, want);
        core_free(reply);
    }
    /* Errors echo the id too. */
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":\"x-1\",\"method\":\"no/such\"}");
    char *reply = peer_line(&p, 5000);
    ck_assert_ptr_nonnull(strstr(reply, "\"id\":\"x-1\""));
    core_free(reply);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_tools_list)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    cJSON *tools = path(m, "result", "tools", NULL);
    ck_assert(cJSON_IsArray(tools));
    static const char *const want[] = {"echo", "sum", "sleep", "blob", "fail", "touch", "log"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        bool found = false;
        cJSON *t;
        cJSON_ArrayForEach(t, tools)
        {
            if (strcmp(str_at(t, "name", NULL, NULL), want[i]) == 0) {
                found = true;
                ck_assert_str_eq(str_at(t, "inputSchema", "type", NULL), "object");
                ck_assert(cJSON_IsObject(path(t, "inputSchema", "properties", NULL)));
            }
        }
        ck_assert_msg(found, "tool %s missing", want[i]);
    }
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_echo_and_blob)
{
    struct peer p;
    peer_start(&p);
    static const char *const msgs[] = {"hello", "", "h\\u00e9llo \xe2\x98\x83",
                                       "a\\\"b\\\\c\\nd\\t"};
    static const char *const decoded[] = {"hello", "", "h\xc3\xa9llo \xe2\x98\x83",
                                          "a\"b\\c\nd\t"};
    for (int i = 0; i < 4; i++) {
        char args[128];
        snprintf(args, sizeof args, "{\"message\":\"%s\"}", msgs[i]);
        cJSON *m = call_tool(&p, i, "echo", args);
        ck_assert_str_eq(result_text(m), decoded[i]);
        ck_assert(!cJSON_IsTrue(path(m, "result", "isError", NULL)));
        cJSON_Delete(m);
    }
    /* 1 MiB message. */
    size_t big = (size_t)1 << 20;
    char *args = core_xmalloc(big + 32);
    memcpy(args, "{\"message\":\"", 12);
    for (size_t i = 0; i < big; i++)
        args[12 + i] = (char)('a' + i % 26);
    memcpy(args + 12 + big, "\"}", 3);
    cJSON *m = call_tool(&p, 10, "echo", args);
    const char *t = result_text(m);
    ck_assert_uint_eq(strlen(t), big);
    ck_assert(memcmp(t, args + 12, big) == 0);
    cJSON_Delete(m);
    core_free(args);

    m = call_tool(&p, 11, "blob", "{\"bytes\":65536}");
    t = result_text(m);
    ck_assert_uint_eq(strlen(t), 65536);
    ck_assert(t[0] == 'x' && t[65535] == 'x' && strspn(t, "x") == 65536);
    cJSON_Delete(m);
    m = call_tool(&p, 12, "blob", "{\"bytes\":0}");
    ck_assert_str_eq(result_text(m), "");
    cJSON_Delete(m);
    m = call_tool(&p, 13, "blob", "{\"bytes\":-1}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call_tool(&p, 14, "echo", "{\"message\":5}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call_tool(&p, 15, "echo", "{}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_sum_and_fail)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call_tool(&p, 1, "sum", "{\"a\":2,\"b\":3}");
    ck_assert_str_eq(result_text(m), "5");
    cJSON *sum = path(m, "result", "structuredContent", "sum");
    ck_assert(cJSON_IsNumber(sum));
    ck_assert(sum->valuedouble == 5);
    cJSON_Delete(m);
    m = call_tool(&p, 2, "sum", "{\"a\":0.5,\"b\":-0.25}");
    ck_assert_str_eq(result_text(m), "0.25");
    ck_assert(path(m, "result", "structuredContent", "sum")->valuedouble == 0.25);
    cJSON_Delete(m);
    m = call_tool(&p, 3, "sum", "{\"a\":\"2\",\"b\":3}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call_tool(&p, 4, "fail", "{}");
    ck_assert(cJSON_IsTrue(path(m, "result", "isError", NULL)));
    ck_assert_uint_gt(strlen(result_text(m)), 0);
    cJSON_Delete(m);
    /* No arguments at all is fine for fail. */
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":"
                 "{\"name\":\"fail\"}}");
    ck_assert(cJSON_IsTrue(path(m, "result", "isError", NULL)));
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_errors)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"no/such/method\"}");
    check_id(m, 1);
    ck_assert_int_eq(error_code(m), -32601);
    cJSON_Delete(m);
    m = call_tool(&p, 2, "frobnicate", "{}");
    ck_assert_int_eq(error_code(m), -32602);
    ck_assert_ptr_nonnull(strstr(str_at(m, "error", "message", NULL), "frobnicate"));
    cJSON_Delete(m);

    static const char *const bad[] = {"{\"jsonrpc\":\"2.0\",\"id\":3,", "not json", "{}}",
                                      "{\"a\":1} x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = call(&p, bad[i]);
        ck_assert_int_eq(error_code(m), -32700);
        cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        ck_assert(cJSON_IsNull(id));
        cJSON_Delete(m);
    }
    m = call(&p, "[{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}]");
    ck_assert_int_eq(error_code(m), -32600);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":[1]}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{}}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":42}");
    ck_assert_int_eq(error_code(m), -32600);
    cJSON_Delete(m);
    /* Notifications and responses get no answer: the next reply is the ping's. */
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}");
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}");
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}");
    peer_send(&p, "");
    peer_send(&p, "   ");
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}");
    check_id(m, 8);
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

static void check_progress_then_result(struct peer *p, int id, const char *token_bytes, int ms)
{
    int n_progress = 0;
    double last = -1;
    for (;;) {
        char *line = peer_line(p, 5000);
        ck_assert_ptr_nonnull(line);
        cJSON *m = cJSON_Parse(line);
        ck_assert_ptr_nonnull(m);
        cJSON *method = cJSON_GetObjectItemCaseSensitive(m, "method");
        if (method != NULL) {
            ck_assert_str_eq(method->valuestring, "notifications/progress");
            char want[128];
            snprintf(want, sizeof want, "\"progressToken\":%s,", token_bytes);
            ck_assert_ptr_nonnull(strstr(line, want));
            double v = path(m, "params", "progress", NULL)->valuedouble;
            ck_assert(v > last);
            last = v;
            ck_assert(path(m, "params", "total", NULL)->valuedouble == ms);
            ck_assert(cJSON_IsString(path(m, "params", "message", NULL)));
            n_progress++;
        } else {
            check_id(m, id);
            char want[64];
            snprintf(want, sizeof want, "slept %d ms", ms);
            ck_assert_str_eq(result_text(m), want);
            cJSON_Delete(m);
            core_free(line);
            break;
        }
        cJSON_Delete(m);
        core_free(line);
    }
    ck_assert_int_ge(n_progress, 1);
    ck_assert_int_ge(n_progress, ms / 100);
}

START_TEST(test_sleep_progress)
{
    struct peer p;
    peer_start(&p);
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                  "\"sleep\",\"arguments\":{\"ms\":250},\"_meta\":{\"progressToken\":\"tok-1\"}}}");
    check_progress_then_result(&p, 1, "\"tok-1\"", 250);
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
                  "\"sleep\",\"arguments\":{\"ms\":0},\"_meta\":{\"progressToken\":"
                  "9007199254740993}}}");
    check_progress_then_result(&p, 2, "9007199254740993", 0);
    /* Without a token: only the result. */
    cJSON *m = call_tool(&p, 3, "sleep", "{\"ms\":120}");
    ck_assert_str_eq(result_text(m), "slept 120 ms");
    cJSON_Delete(m);
    m = call_tool(&p, 4, "sleep", "{\"ms\":1.5}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_sleep_concurrent)
{
    struct peer p;
    peer_start(&p);
    uint64_t t0 = now_ms();
    char *a = tool_call(1, "sleep", "{\"ms\":300}");
    char *b = tool_call(2, "sleep", "{\"ms\":100}");
    char *c = tool_call(3, "sleep", "{\"ms\":200}");
    peer_send(&p, a);
    peer_send(&p, b);
    peer_send(&p, c);
    core_free(a);
    core_free(b);
    core_free(c);
    static const int order[] = {2, 3, 1};
    for (int i = 0; i < 3; i++) {
        cJSON *m = peer_recv(&p);
        check_id(m, order[i]);
        cJSON_Delete(m);
    }
    ck_assert(now_ms() - t0 < 550);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_cancel)
{
    struct peer p;
    peer_start(&p);
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":\"s-5\",\"method\":\"tools/call\",\"params\":{"
                  "\"name\":\"sleep\",\"arguments\":{\"ms\":3000},"
                  "\"_meta\":{\"progressToken\":1}}}");
    char *s = tool_call(6, "sleep", "{\"ms\":3000}");
    peer_send(&p, s);
    core_free(s);
    /* Progress for the first arrives; then cancel both (one by a number id). */
    cJSON *m = peer_recv(&p);
    ck_assert_str_eq(str_at(m, "method", NULL, NULL), "notifications/progress");
    cJSON_Delete(m);
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                  "{\"requestId\":\"s-5\",\"reason\":\"test\"}}");
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                  "{\"requestId\":6}}");
    /* Cancelling something unknown is ignored. */
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                  "{\"requestId\":\"6\"}}");
    /* Drain progress sent before the cancel arrived, up to the ping's reply. */
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}");
    for (;;) {
        m = peer_recv(&p);
        if (cJSON_GetObjectItemCaseSensitive(m, "id") != NULL) {
            check_id(m, 7);
            cJSON_Delete(m);
            break;
        }
        ck_assert_str_eq(str_at(m, "method", NULL, NULL), "notifications/progress");
        cJSON_Delete(m);
    }
    /* Nothing more comes, and the server exits at EOF long before the sleeps would end. */
    uint64_t t0 = now_ms();
    ck_assert_ptr_null(peer_line(&p, 300));
    ck_assert_int_eq(peer_finish(&p, 1000), 0);
    ck_assert(now_ms() - t0 < 1500);
}
END_TEST

START_TEST(test_eof_waits_for_sleep)
{
    struct peer p;
    peer_start(&p);
    char *s = tool_call(1, "sleep", "{\"ms\":200}");
    peer_send(&p, s);
    core_free(s);
    close(p.to);
    p.to = -1;
    cJSON *m = peer_recv(&p);
    check_id(m, 1);
    ck_assert_str_eq(result_text(m), "slept 200 ms");
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_resources)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}");
    cJSON *r0 = cJSON_GetArrayItem(path(m, "result", "resources", NULL), 0);
    ck_assert_str_eq(str_at(r0, "uri", NULL, NULL), "demo://readme");
    ck_assert_str_eq(str_at(r0, "mimeType", NULL, NULL), "text/plain");
    ck_assert(cJSON_IsString(path(r0, "name", NULL, NULL)));
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/templates/list\"}");
    cJSON *t0 = cJSON_GetArrayItem(path(m, "result", "resourceTemplates", NULL), 0);
    ck_assert_str_eq(str_at(t0, "uriTemplate", NULL, NULL), "demo://items/{id}");
    ck_assert(cJSON_IsString(path(t0, "name", NULL, NULL)));
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\",\"params\":"
                 "{\"uri\":\"demo://readme\"}}");
    cJSON *c0 = cJSON_GetArrayItem(path(m, "result", "contents", NULL), 0);
    ck_assert_str_eq(str_at(c0, "uri", NULL, NULL), "demo://readme");
    ck_assert_str_eq(str_at(c0, "mimeType", NULL, NULL), "text/plain");
    ck_assert_ptr_nonnull(strchr(str_at(c0, "text", NULL, NULL), '\n'));
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/read\",\"params\":"
                 "{\"uri\":\"demo://items/42\"}}");
    c0 = cJSON_GetArrayItem(path(m, "result", "contents", NULL), 0);
    ck_assert_str_eq(str_at(c0, "text", NULL, NULL), "item 42");
    ck_assert_str_eq(str_at(c0, "uri", NULL, NULL), "demo://items/42");
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":"
                 "{\"uri\":\"demo://nope\"}}");
    ck_assert_int_eq(error_code(m), -32002);
    ck_assert_str_eq(str_at(m, "error", "data", "uri"), "demo://nope");
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"resources/read\",\"params\":{}}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);

    /* Subscriptions and touch. */
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/subscribe\",\"params\":"
                 "{\"uri\":\"demo://readme\"}}");
    check_id(m, 7);
    ck_assert(cJSON_IsObject(path(m, "result", NULL, NULL)));
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"resources/subscribe\",\"params\":"
                 "{\"uri\":\"demo://elsewhere\"}}");
    ck_assert_int_eq(error_code(m), -32002);
    cJSON_Delete(m);
    m = call_tool(&p, 9, "touch", "{\"uri\":\"demo://items/1\"}");
    ck_assert_ptr_nonnull(strstr(result_text(m), "not subscribed"));
    cJSON_Delete(m);
    char *s = tool_call(10, "touch", "{\"uri\":\"demo://readme\"}");
    m = call(&p, s);
    core_free(s);
    ck_assert_str_eq(str_at(m, "method", NULL, NULL), "notifications/resources/updated");
    ck_assert_str_eq(str_at(m, "params", "uri", NULL), "demo://readme");
    cJSON_Delete(m);
    m = peer_recv(&p);
    check_id(m, 10);
    ck_assert_str_eq(result_text(m), "touched demo://readme");
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"resources/unsubscribe\","
                 "\"params\":{\"uri\":\"demo://readme\"}}");
    check_id(m, 11);
    ck_assert(cJSON_IsObject(path(m, "result", NULL, NULL)));
    cJSON_Delete(m);
    m = call_tool(&p, 12, "touch", "{\"uri\":\"demo://readme\"}");
    ck_assert_ptr_nonnull(strstr(result_text(m), "not subscribed"));
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_prompts)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/list\"}");
    cJSON *p0 = cJSON_GetArrayItem(path(m, "result", "prompts", NULL), 0);
    ck_assert_str_eq(str_at(p0, "name", NULL, NULL), "greeting");
    cJSON *a0 = cJSON_GetArrayItem(path(p0, "arguments", NULL, NULL), 0);
    ck_assert_str_eq(str_at(a0, "name", NULL, NULL), "name");
    ck_assert(cJSON_IsTrue(path(a0, "required", NULL, NULL)));
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\",\"params\":"
                 "{\"name\":\"greeting\",\"arguments\":{\"name\":\"Ann\"}}}");
    cJSON *msg = cJSON_GetArrayItem(path(m, "result", "messages", NULL), 0);
    ck_assert_str_eq(str_at(msg, "role", NULL, NULL), "user");
    ck_assert_str_eq(str_at(msg, "content", "type", NULL), "text");
    ck_assert_str_eq(str_at(msg, "content", "text", NULL), "Say hello to Ann.");
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"prompts/get\",\"params\":"
                 "{\"name\":\"greeting\"}}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"prompts/get\",\"params\":"
                 "{\"name\":\"farewell\",\"arguments\":{}}}");
    ck_assert_int_eq(error_code(m), -32602);
    ck_assert_ptr_nonnull(strstr(str_at(m, "error", "message", NULL), "farewell"));
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

static void check_completion(struct peer *p, int id, const char *ref, const char *arg,
                             const char *value, const char *const *want, int n_want)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"completion/complete\",\"params\":"
             "{\"ref\":%s,\"argument\":{\"name\":\"%s\",\"value\":\"%s\"}}}",
             id, ref, arg, value);
    cJSON *m = call(p, line);
    check_id(m, id);
    cJSON *values = path(m, "result", "completion", "values");
    ck_assert(cJSON_IsArray(values));
    ck_assert_int_eq(cJSON_GetArraySize(values), n_want);
    for (int i = 0; i < n_want; i++)
        ck_assert_str_eq(cJSON_GetArrayItem(values, i)->valuestring, want[i]);
    ck_assert(cJSON_IsFalse(path(m, "result", "completion", "hasMore")));
    cJSON_Delete(m);
}

START_TEST(test_completion)
{
    struct peer p;
    peer_start(&p);
    const char *prompt = "{\"type\":\"ref/prompt\",\"name\":\"greeting\"}";
    const char *res = "{\"type\":\"ref/resource\",\"uri\":\"demo://items/{id}\"}";
    check_completion(&p, 1, prompt, "name", "", (const char *[]){"Alice", "Bob", "Carol"}, 3);
    check_completion(&p, 2, prompt, "name", "A", (const char *[]){"Alice"}, 1);
    check_completion(&p, 3, prompt, "name", "car", (const char *[]){"Carol"}, 1);
    check_completion(&p, 4, prompt, "name", "Zed", NULL, 0);
    check_completion(&p, 5, res, "id", "", (const char *[]){"1", "2", "42"}, 3);
    check_completion(&p, 6, res, "id", "4", (const char *[]){"42"}, 1);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"completion/complete\","
                        "\"params\":{\"ref\":{\"type\":\"ref/prompt\",\"name\":\"x\"},"
                        "\"argument\":{\"name\":\"name\",\"value\":\"\"}}}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_logging)
{
    struct peer p;
    peer_start(&p);
    /* Default level info: debug is filtered, warning passes. */
    cJSON *m = call_tool(&p, 1, "log", "{\"level\":\"debug\",\"text\":\"d1\"}");
    ck_assert_str_eq(result_text(m), "filtered");
    cJSON_Delete(m);
    char *s = tool_call(2, "log", "{\"level\":\"warning\",\"text\":\"w1\"}");
    m = call(&p, s);
    core_free(s);
    ck_assert_str_eq(str_at(m, "method", NULL, NULL), "notifications/message");
    ck_assert_str_eq(str_at(m, "params", "level", NULL), "warning");
    ck_assert_str_eq(str_at(m, "params", "data", NULL), "w1");
    cJSON_Delete(m);
    m = peer_recv(&p);
    check_id(m, 2);
    ck_assert_str_eq(result_text(m), "logged");
    cJSON_Delete(m);

    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"logging/setLevel\",\"params\":"
                 "{\"level\":\"error\"}}");
    check_id(m, 3);
    ck_assert(cJSON_IsObject(path(m, "result", NULL, NULL)));
    cJSON_Delete(m);
    m = call_tool(&p, 4, "log", "{\"level\":\"warning\",\"text\":\"w2\"}");
    ck_assert_str_eq(result_text(m), "filtered");
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"logging/setLevel\",\"params\":"
                 "{\"level\":\"debug\"}}");
    cJSON_Delete(m);
    s = tool_call(6, "log", "{\"level\":\"debug\",\"text\":\"d2\"}");
    m = call(&p, s);
    core_free(s);
    ck_assert_str_eq(str_at(m, "params", "data", NULL), "d2");
    cJSON_Delete(m);
    m = peer_recv(&p);
    check_id(m, 6);
    cJSON_Delete(m);
    m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"logging/setLevel\",\"params\":"
                 "{\"level\":\"loud\"}}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    m = call_tool(&p, 8, "log", "{\"level\":\"loud\",\"text\":\"x\"}");
    ck_assert_int_eq(error_code(m), -32602);
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

/* Many pipelined requests (more than one read round) come back complete and in order. */
START_TEST(test_pipelined)
{
    struct peer p;
    peer_start(&p);
    enum { N = 3000 };
    size_t cap = (size_t)N * 128;
    char *all = core_xmalloc(cap);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        len += (size_t)snprintf(all + len, cap - len,
                                "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
                                "\"params\":{\"name\":\"echo\",\"arguments\":"
                                "{\"message\":\"m%d\"}}}\n",
                                i, i);
    }
    ck_assert(peer_write(&p, all, len));
    core_free(all);
    for (int i = 0; i < N; i++) {
        cJSON *m = peer_recv(&p);
        check_id(m, i);
        char want[32];
        snprintf(want, sizeof want, "m%d", i);
        ck_assert_str_eq(result_text(m), want);
        cJSON_Delete(m);
    }
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

/* stdin can be a regular file; the last line may lack its newline. */
START_TEST(test_file_stdin)
{
    char path_tmpl[] = "/tmp/agw-demo-XXXXXX";
    int fd = mkstemp(path_tmpl);
    ck_assert_int_ge(fd, 0);
    unlink(path_tmpl);
    const char *text = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"sleep\",\"arguments\":{\"ms\":50}}}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    lseek(fd, 0, SEEK_SET);
    struct peer p;
    peer_start_fd(&p, fd);
    close(fd);
    static const int order[] = {1, 3, 2};
    for (int i = 0; i < 3; i++) {
        cJSON *m = peer_recv(&p);
        check_id(m, order[i]);
        cJSON_Delete(m);
    }
    ck_assert_int_eq(peer_finish(&p, 2000), 0);
}
END_TEST

START_TEST(test_oversized_frame)
{
    struct peer p;
    peer_start(&p);
    cJSON *m = call(&p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    cJSON_Delete(m);
    size_t n = ((size_t)16 << 20) + 1024;
    char *junk = core_xmalloc(n);
    memset(junk, ' ', n);
    /* The server stops reading at the limit, so the write may fail part way. */
    (void)peer_write(&p, junk, n);
    core_free(junk);
    m = peer_recv(&p);
    ck_assert_int_eq(error_code(m), -32600);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(m, "id")));
    cJSON_Delete(m);
    ck_assert_int_eq(peer_finish(&p, 5000), 1);
}
END_TEST

/* The server stops when its stdout goes away, even with a long sleep pending. */
START_TEST(test_stdout_closed)
{
    struct peer p;
    peer_start(&p);
    char *s = tool_call(1, "sleep", "{\"ms\":30000}");
    peer_send(&p, s);
    core_free(s);
    close(p.from);
    p.from = -1;
    peer_send(&p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 500 && got == 0; i++) {
        got = waitpid(p.pid, &st, WNOHANG);
        if (got == 0)
            usleep(10000);
    }
    ck_assert_int_eq(got, p.pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    close(p.to);
    core_free(p.rbuf);
}
END_TEST

static Suite *demo_suite(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("demo");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_initialize_versions);
    tcase_add_test(tc, test_ids_exact);
    tcase_add_test(tc, test_tools_list);
    tcase_add_test(tc, test_echo_and_blob);
    tcase_add_test(tc, test_sum_and_fail);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_sleep_progress);
    tcase_add_test(tc, test_sleep_concurrent);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_eof_waits_for_sleep);
    tcase_add_test(tc, test_resources);
    tcase_add_test(tc, test_prompts);
    tcase_add_test(tc, test_completion);
    tcase_add_test(tc, test_logging);
    tcase_add_test(tc, test_pipelined);
    tcase_add_test(tc, test_file_stdin);
    tcase_add_test(tc, test_oversized_frame);
    tcase_add_test(tc, test_stdout_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core_alloc_hook_cjson();
    SRunner *sr = srunner_create(demo_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
