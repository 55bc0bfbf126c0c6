/* Tests for transports/remote.c that need no server: URL checks, the legacy endpoint's
 * resolution and origin rule, and what tp_remote_write refuses. The transport itself is tested
 * against real servers by test/integration/remote-probe.test.mjs and the conformance suite
 * (conformance-client.test.mjs). */
#include "transports/remote.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
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

/* ---- a scripted raw HTTP/1.1 server on 127.0.0.1 --------------------------------------------
 * Each request (headers and a Content-Length body) goes to the test's handler, which answers
 * with raw bytes and may keep the connection open without answering (a stall) or close it. */

struct rconn;
typedef void (*raw_handler_cb)(struct rconn *c, const char *method, const char *head,
                               const char *body);

struct raw_srv {
    uv_tcp_t tcp;
    int port;
    raw_handler_cb handler;
    struct rconn *conns;
    char log[8192]; /* "METHOD headers\n----\n" of every request, for assertions */
    size_t log_len;
};

struct rconn {
    uv_tcp_t tcp;
    struct raw_srv *s;
    struct rconn *next;
    char buf[65536];
    size_t len;
    bool closing;
};

struct wreq {
    uv_write_t w;
    char *data;
};

static void on_rconn_closed(uv_handle_t *h)
{
    struct rconn *c = (struct rconn *)h;
    struct rconn **pp = &c->s->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    free(c);
}

static void rconn_close(struct rconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_rconn_closed);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    struct wreq *r = (struct wreq *)w;
    free(r->data);
    free(r);
}

static void rconn_send(struct rconn *c, const char *text)
{
    if (c->closing)
        return;
    struct wreq *r = calloc(1, sizeof *r);
    r->data = strdup(text);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)strlen(text));
    ck_assert_int_eq(uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct rconn *c = (struct rconn *)h;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void on_rread(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct rconn *c = (struct rconn *)st;
    if (n < 0) {
        rconn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    for (;;) {
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4;
        size_t clen = 0;
        const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        if (cl && cl < end)
            clen = strtoul(cl + 17, NULL, 10);
        if (c->len < hlen + clen)
            return;
        char head[4096];
        snprintf(head, sizeof head, "%.*s", (int)hlen, c->buf);
        char *body = strndup(c->buf + hlen, clen);
        char method[16];
        sscanf(head, "%15s", method);
        struct raw_srv *s = c->s;
        int w = snprintf(s->log + s->log_len, sizeof s->log - s->log_len, "%s----\n", head);
        if (w > 0 && (size_t)w < sizeof s->log - s->log_len)
            s->log_len += (size_t)w;
        memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen + 1);
        c->len -= hlen + clen;
        s->handler(c, method, head, body);
        free(body);
        if (c->closing)
            return;
    }
}

static void on_rconnect(uv_stream_t *l, int status)
{
    ck_assert_int_eq(status, 0);
    struct raw_srv *s = (struct raw_srv *)l;
    struct rconn *c = calloc(1, sizeof *c);
    c->s = s;
    uv_tcp_init(l->loop, &c->tcp);
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    c->next = s->conns;
    s->conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_rread);
}

static void raw_start(uv_loop_t *loop, struct raw_srv *s, raw_handler_cb h)
{
    memset(s, 0, sizeof *s);
    s->handler = h;
    uv_tcp_init(loop, &s->tcp);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ck_assert_int_eq(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&s->tcp, 16, on_rconnect), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
}

static void raw_stop(struct raw_srv *s)
{
    for (struct rconn *c = s->conns; c; c = c->next)
        rconn_close(c);
    uv_close((uv_handle_t *)&s->tcp, NULL);
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The client side of a scripted test. */
struct rt {
    uv_loop_t loop;
    struct tp_hclient *hc;
    struct tp_remote *r;
    struct raw_srv srv;
    char frames[8192];
    int n_frames;
    int downs;
    char why[256];
    uint64_t t_down;
};

static void rt_frame(void *ctx, const char *p, size_t n)
{
    struct rt *t = ctx;
    size_t used = strlen(t->frames);
    (void)snprintf(t->frames + used, sizeof t->frames - used, "%.*s\n", (int)n, p);
    t->n_frames++;
}

static void rt_down(void *ctx, int err, const char *why)
{
    struct rt *t = ctx;
    (void)err;
    t->downs++;
    t->t_down = uv_now(&t->loop);
    (void)snprintf(t->why, sizeof t->why, "%s", why);
}

static void rt_start(struct rt *t, raw_handler_cb h, uint64_t stall_ms)
{
    memset(t, 0, sizeof *t);
    ck_assert_int_eq(uv_loop_init(&t->loop), 0);
    raw_start(&t->loop, &t->srv, h);
    ck_assert_int_eq(tp_hclient_new(&t->loop, &t->hc), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", t->srv.port);
    struct tp_remote_opts o = {.url = url, .kind = TP_REMOTE_STREAMABLE, .stall_ms = stall_ms};
    struct tp_remote_cbs cbs = {.on_frame = rt_frame, .on_down = rt_down};
    ck_assert_int_eq(tp_remote_new(t->hc, &o, &cbs, t, &t->r), 0);
}

/* Runs the loop until cond holds or ms pass; returns whether it held. */
static bool rt_until(struct rt *t, bool (*cond)(struct rt *), uint64_t ms)
{
    uint64_t end = uv_now(&t->loop) + ms;
    while (!cond(t) && uv_now(&t->loop) < end)
        uv_run(&t->loop, UV_RUN_NOWAIT), usleep(1000), uv_update_time(&t->loop);
    return cond(t);
}

static void rt_finish(struct rt *t)
{
    if (t->r)
        tp_remote_close(t->r);
    tp_hclient_close(t->hc, NULL, NULL);
    raw_stop(&t->srv);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t->loop), 0);
}

static const char *INIT_REQ =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}";
static const char *INIT_REPLY =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: sess-1\r\n"
    "Content-Length: 57\r\n\r\n"
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"x\"}}";

static void write_str(struct tp_remote *r, const char *s)
{
    ck_assert_int_eq(tp_remote_write(r, s, strlen(s)), 0);
}

/* Stall: the reply to a call sends its headers and then nothing; after stall_ms the call is
 * answered with an error and the session stays up. */
static void stall_handler(struct rconn *c, const char *method, const char *head, const char *body)
{
    (void)head;
    if (strcmp(method, "POST") != 0) {
        rconn_send(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    if (strstr(body, "\"initialize\"")) {
        rconn_send(c, INIT_REPLY);
        return;
    }
    rconn_send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
}

static bool has_frame(struct rt *t)
{
    return t->n_frames >= 2;
}

static bool has_init(struct rt *t)
{
    return t->n_frames >= 1;
}

START_TEST(stalled_reply_fails_the_call)
{
    struct rt t;
    rt_start(&t, stall_handler, 300);
    write_str(t.r, INIT_REQ);
    ck_assert(rt_until(&t, has_init, 5000));
    tp_remote_ready(t.r, "2025-11-25");
    uint64_t t0 = uv_now(&t.loop);
    write_str(t.r, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{}}");
    ck_assert(rt_until(&t, has_frame, 5000));
    uint64_t took = uv_now(&t.loop) - t0;
    ck_assert_msg(took >= 250 && took < 2000, "stall noticed after %llu ms",
                  (unsigned long long)took);
    ck_assert_msg(strstr(t.frames, "\"id\":7,\"error\"") != NULL, "%s", t.frames);
    ck_assert_msg(strstr(t.frames, "broke off") != NULL, "%s", t.frames);
    ck_assert_int_eq(t.downs, 0);
    ck_assert_str_eq(tp_remote_session_id(t.r), "sess-1");
    rt_finish(&t);
}
END_TEST

/* The GET stream: opened after ready with the session and version headers, its events passed
 * on, and reopened after the server closes it, honouring retry: and sending Last-Event-ID. */
static int get_count;
static void get_handler(struct rconn *c, const char *method, const char *head, const char *body)
{
    (void)head;
    if (strcmp(method, "POST") == 0 && strstr(body, "\"initialize\"")) {
        rconn_send(c, INIT_REPLY);
        return;
    }
    if (strcmp(method, "GET") == 0) {
        get_count++;
        if (get_count == 1) {
            rconn_send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: "
                          "close\r\n\r\nretry: 200\nid: g1\ndata: {\"jsonrpc\":\"2.0\",\"method\":"
                          "\"notifications/tools/list_changed\"}\n\n");
            rconn_close(c);
        } else {
            rconn_send(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        }
        return;
    }
    rconn_send(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
}

static bool two_gets(struct rt *t)
{
    (void)t;
    return get_count >= 2;
}

START_TEST(get_stream_reconnects)
{
    struct rt t;
    get_count = 0;
    rt_start(&t, get_handler, 0);
    write_str(t.r, INIT_REQ);
    ck_assert(rt_until(&t, has_init, 5000));
    tp_remote_ready(t.r, "2025-11-25");
    uint64_t t0 = uv_now(&t.loop);
    ck_assert(rt_until(&t, two_gets, 5000));
    uint64_t took = uv_now(&t.loop) - t0;
    ck_assert_msg(took >= 150 && took < 1500, "reconnected after %llu ms",
                  (unsigned long long)took);
    ck_assert_msg(strstr(t.frames, "list_changed") != NULL, "%s", t.frames);
    const char *log = t.srv.log;
    ck_assert_int_eq(count_in(log, "GET /mcp"), 2);
    const char *second = strstr(strstr(log, "GET /mcp") + 1, "GET /mcp");
    ck_assert_msg(strcasestr(second, "Last-Event-ID: g1") != NULL, "%s", second);
    ck_assert_msg(strcasestr(second, "Mcp-Session-Id: sess-1") != NULL, "%s", second);
    ck_assert_msg(strcasestr(second, "MCP-Protocol-Version: 2025-11-25") != NULL, "%s", second);
    ck_assert_int_eq(t.downs, 0);
    rt_finish(&t);
    /* The DELETE at close carried the session id (it may or may not have reached the server
     * before the client closed: best effort), and nothing else was sent after it. */
}
END_TEST

/* A 404 on a request carrying the session id: on_down("session expired"). */
static void expire_handler(struct rconn *c, const char *method, const char *head, const char *body)
{
    (void)head;
    if (strcmp(method, "POST") == 0 && strstr(body, "\"initialize\"")) {
        rconn_send(c, INIT_REPLY);
        return;
    }
    if (strcmp(method, "GET") == 0) {
        rconn_send(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    rconn_send(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

static bool is_down(struct rt *t)
{
    return t->downs > 0;
}

START_TEST(session_expiry_goes_down)
{
    struct rt t;
    rt_start(&t, expire_handler, 0);
    write_str(t.r, INIT_REQ);
    ck_assert(rt_until(&t, has_init, 5000));
    tp_remote_ready(t.r, "2025-11-25");
    write_str(t.r, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    ck_assert(rt_until(&t, is_down, 5000));
    ck_assert_msg(strstr(t.why, "session expired") != NULL, "%s", t.why);
    ck_assert_int_eq(tp_remote_write(t.r, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\"}", 35),
                     CORE_ECLOSED);
    rt_finish(&t);
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
    tcase_add_test(tc, stalled_reply_fails_the_call);
    tcase_add_test(tc, get_stream_reconnects);
    tcase_add_test(tc, session_expiry_goes_down);
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
