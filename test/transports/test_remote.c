/* Tests for transports/remote.c that need no server: URL checks, the legacy endpoint's
 * resolution and origin rule, and what tp_remote_write refuses. The transport itself is tested
 * against real servers by test/integration/remote-probe.test.mjs and the conformance suite
 * (conformance-client.test.mjs). */
#include "transports/remote.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "transports/hclient.h"

/* Internal (GW_STATIC) in transports/remote.c. */
char *remote_resolve(const char *base, const char *ref, size_t n);
bool remote_same_origin(const char *a, const char *b);

static void check_resolve(const char *base, const char *ref, const char *want)
{
    char *got = remote_resolve(base, ref, strlen(ref));
    if (want == NULL) {
        ck_assert_msg(got == NULL, "%s + %s gave %s", base, ref, got);
        return;
    }
    ck_assert_msg(got != NULL, "%s + %s gave NULL", base, ref);
    ck_assert_str_eq(got, want);
    core_free(got);
}

START_TEST(resolve_endpoint)
{
    const char *b = "http://127.0.0.1:3001/sse";
    check_resolve(b, "/message?sessionId=abc", "http://127.0.0.1:3001/message?sessionId=abc");
    check_resolve(b, "message?sessionId=abc", "http://127.0.0.1:3001/message?sessionId=abc");
    check_resolve("http://h/a/b/sse?x=1", "post?s=1", "http://h/a/b/post?s=1");
    check_resolve("http://h/a/sse", "?s=2", "http://h/a/sse?s=2");
    check_resolve("http://h", "?s=2", "http://h/?s=2");
    check_resolve("http://h", "m", "http://h/m");
    check_resolve(b, "//other:1/x", "http://other:1/x");
    check_resolve(b, "https://x.example/m", "https://x.example/m");
    check_resolve(b, "  /m \r\n", "http://127.0.0.1:3001/m");
    check_resolve(b, "", NULL);
    check_resolve(b, "/a b", NULL);
    check_resolve(b, "/a\x01", NULL);
}
END_TEST

START_TEST(origins)
{
    ck_assert(remote_same_origin("http://127.0.0.1:3001/m", "http://127.0.0.1:3001/sse"));
    ck_assert(remote_same_origin("HTTP://Example.COM/x", "http://example.com:80/y"));
    ck_assert(remote_same_origin("https://h:443/x", "https://h/y?z"));
    ck_assert(!remote_same_origin("http://127.0.0.1:3002/m", "http://127.0.0.1:3001/sse"));
    ck_assert(!remote_same_origin("https://127.0.0.1:3001/m", "http://127.0.0.1:3001/sse"));
    ck_assert(!remote_same_origin("http://evil.example/m", "http://127.0.0.1/sse"));
    ck_assert(!remote_same_origin("http://127.0.0.1@evil.example/m", "http://127.0.0.1/sse"));
    ck_assert(!remote_same_origin("ftp://h/m", "ftp://h/m"));
}
END_TEST

static void on_frame(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
}

static void on_down(void *ctx, int err, const char *why)
{
    (void)err;
    (void)why;
    (*(int *)ctx)++;
}

START_TEST(new_and_write_checks)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    struct tp_hclient *hc;
    ck_assert_int_eq(tp_hclient_new(&loop, &hc), 0);
    int downs = 0;
    struct tp_remote_cbs cbs = {.on_frame = on_frame, .on_down = on_down};
    struct tp_remote *r;
    const char *bad[] = {"ftp://h/x", "http://", "/mcp", "http://h/a b", "http://u@h/", NULL};
    for (int i = 0; bad[i]; i++) {
        struct tp_remote_opts o = {.url = bad[i]};
        ck_assert_int_eq(tp_remote_new(hc, &o, &cbs, &downs, &r), CORE_EINVAL);
    }
    const char *crlf[] = {"X-A: b\r\nX-Evil: 1", NULL};
    struct tp_remote_opts oh = {.url = "http://127.0.0.1:1/mcp", .headers = crlf};
    ck_assert_int_eq(tp_remote_new(hc, &oh, &cbs, &downs, &r), CORE_EINVAL);
    struct tp_remote_opts o = {.url = "http://127.0.0.1:1/mcp", .max_frame = 64};
    ck_assert_int_eq(tp_remote_new(hc, &o, &cbs, &downs, &r), 0);
    ck_assert_str_eq(tp_remote_kind_name(r), "auto");
    ck_assert_ptr_null(tp_remote_session_id(r));
    ck_assert_int_eq(tp_remote_write(r, "not json", 8), CORE_EINVAL);
    char big[100];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[99] = '}';
    ck_assert_int_eq(tp_remote_write(r, big, sizeof big), CORE_ETOOBIG);
    ck_assert_uint_eq(tp_remote_queued(r), 0);
    /* Nothing was sent: closing sends no DELETE and calls nothing. */
    tp_remote_close(r);
    tp_hclient_close(hc, NULL, NULL);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_int_eq(downs, 0);
}
END_TEST

/* A refused connection: the initialize request ends in on_down with a reason, and close after
 * that frees everything. */
struct down_ctx {
    int downs;
    char why[256];
    struct tp_remote *r;
};

static void on_down_close(void *ctx, int err, const char *why)
{
    struct down_ctx *d = ctx;
    (void)err;
    d->downs++;
    (void)snprintf(d->why, sizeof d->why, "%s", why);
    tp_remote_close(d->r); /* closing from inside a callback is allowed */
    d->r = NULL;
}

START_TEST(refused_goes_down)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    struct tp_hclient *hc;
    ck_assert_int_eq(tp_hclient_new(&loop, &hc), 0);
    struct down_ctx d = {0};
    struct tp_remote_cbs cbs = {.on_frame = on_frame, .on_down = on_down_close};
    /* Port 1 on loopback: nothing listens there (not run as a privileged service). */
    struct tp_remote_opts o = {.url = "http://127.0.0.1:1/mcp", .kind = TP_REMOTE_STREAMABLE};
    ck_assert_int_eq(tp_remote_new(hc, &o, &cbs, &d, &d.r), 0);
    const char *init = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}";
    ck_assert_int_eq(tp_remote_write(d.r, init, strlen(init)), 0);
    ck_assert_uint_eq(tp_remote_queued(d.r), strlen(init));
    while (d.downs == 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    ck_assert_int_eq(d.downs, 1);
    ck_assert_msg(d.why[0] != '\0', "a reason");
    tp_hclient_close(hc, NULL, NULL);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static Suite *remote_suite(void)
{
    Suite *s = suite_create("remote");
    TCase *tc = tcase_create("remote");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, resolve_endpoint);
    tcase_add_test(tc, origins);
    tcase_add_test(tc, new_and_write_checks);
    tcase_add_test(tc, refused_goes_down);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(remote_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
