/* Tests for transports/hclient.c against real servers on 127.0.0.1, all on one uv loop in the
 * test's process: the project's own HTTP server (transports/http.c, also with TLS) plays the
 * remote side, and a few raw libuv TCP servers play broken ones. Every test closes every
 * handle, checks uv_loop_close() and that no allocation of ours is left. */
#include "transports/hclient.h"
#include "transports/http.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

/* ---- the harness -------------------------------------------------------------------------- */

#define MAX_HELD 16

struct harness {
    uv_loop_t loop;
    uv_timer_t watchdog;
    uv_timer_t ticker; /* wakes the loop every 5 ms, so UV_RUN_ONCE never blocks for long */
    struct tp_http_server *srv;
    struct tp_http_server *other; /* a second origin (redirect tests) */
    struct tp_hclient *client;
    int port;
    int other_port;
    int n_req;       /* requests the main server received */
    int n_other_req; /* requests the other server received */
    int n_srv_close; /* requests whose connection went away before their answer ended */
    struct tp_http_req *held[MAX_HELD]; /* requests kept open (never answered / stream held) */
    int n_held;
    /* /stream: chunks sent from a timer. */
    uv_timer_t stream_timer;
    struct tp_http_req *streaming;
    int stream_left;
    int stream_interval_ms;
    /* /big: a long patterned body written with back-pressure. */
    uv_timer_t big_timer;
    struct tp_http_req *big;
    size_t big_total;
    size_t big_sent;
    size_t big_max_queued; /* the largest server-side queue seen (the client paused) */
    int closes_pending;
};

static struct harness H;
static long live_at_start;

/* The byte at offset i of /big's body. */
static char big_byte(size_t i)
{
    return (char)('a' + (i * 7 + i / 4096) % 26);
}

static void on_held_close(void *ud, struct tp_http_req *req)
{
    GW_UNUSED(ud);
    H.n_srv_close++;
    for (int i = 0; i < H.n_held; i++) {
        if (H.held[i] == req)
            H.held[i] = NULL;
    }
    if (req == H.streaming) {
        H.streaming = NULL;
        uv_timer_stop(&H.stream_timer);
    }
    if (req == H.big) {
        H.big = NULL;
        uv_timer_stop(&H.big_timer);
    }
}

static void hold(struct tp_http_req *req)
{
    ck_assert_int_lt(H.n_held, MAX_HELD);
    H.held[H.n_held++] = req;
    tp_http_req_set_close_cb(req, on_held_close, NULL);
}

static void on_stream_tick(uv_timer_t *t)
{
    char piece[32];
    int n = snprintf(piece, sizeof piece, "chunk %d\n", 5 - H.stream_left);
    uv_buf_t b = uv_buf_init(piece, (unsigned)n);
    ck_assert_int_eq(tp_http_stream_write(H.streaming, &b, 1), 0);
    if (--H.stream_left == 0) {
        tp_http_stream_end(H.streaming);
        H.streaming = NULL;
        uv_timer_stop(t);
    }
}

static void on_big_tick(uv_timer_t *t)
{
    static char block[65536];
    /* Keep at most 256 KiB queued: what piles up beyond the socket shows the client paused. */
    while (H.big_sent < H.big_total && tp_http_req_queued(H.big) < 256 * 1024) {
        size_t n = H.big_total - H.big_sent < sizeof block ? H.big_total - H.big_sent
                                                           : sizeof block;
        for (size_t i = 0; i < n; i++)
            block[i] = big_byte(H.big_sent + i);
        uv_buf_t b = uv_buf_init(block, (unsigned)n);
        ck_assert_int_eq(tp_http_stream_write(H.big, &b, 1), 0);
        H.big_sent += n;
    }
    size_t q = tp_http_req_queued(H.big);
    if (q > H.big_max_queued)
        H.big_max_queued = q;
    if (H.big_sent == H.big_total) {
        tp_http_stream_end(H.big);
        H.big = NULL;
        uv_timer_stop(t);
    }
}

/* The record of a request, as /echo answers it. */
static void echo(struct tp_http_req *req, int status)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    size_t blen;
    const char *body = tp_http_req_body(req, &blen);
    const char *names[] = {"x-test", "authorization", "content-type", "transfer-encoding",
                           "expect", "user-agent"};
    int rc = core_buf_appendf(&b, "%s %s?%s conn=%s len=%zu", tp_http_req_method(req),
                              tp_http_req_path(req), tp_http_req_query(req),
                              tp_http_req_conn_name(req), blen);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = tp_http_req_header(req, names[i]);
        if (v != NULL)
            rc |= core_buf_appendf(&b, " %s=%s", names[i], v);
    }
    rc |= core_buf_appendf(&b, " body=");
    rc |= core_buf_append(&b, body, blen);
    ck_assert_int_eq(rc, 0);
    static const struct tp_http_header hdrs[] = {
        {"Content-Type", "text/plain"}, {"X-Multi", "one"}, {"x-multi", "two"}};
    uv_buf_t ub = uv_buf_init(b.data, (unsigned)b.len);
    ck_assert_int_eq(tp_http_respond(req, status, hdrs, 3, &ub, 1), 0);
    core_buf_dispose(&b);
}

static void on_request(void *ctx, struct tp_http_req *req)
{
    GW_UNUSED(ctx);
    H.n_req++;
    tp_http_req_set_trusted(req);
    const char *path = tp_http_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        echo(req, 200);
    } else if (strcmp(path, "/status") == 0) {
        echo(req, (int)strtol(tp_http_req_query(req), NULL, 10));
    } else if (strcmp(path, "/stream") == 0) {
        static const struct tp_http_header h = {"Content-Type", "text/event-stream"};
        ck_assert_int_eq(tp_http_stream_start(req, 200, &h, 1), 0);
        H.streaming = req;
        H.stream_left = 5;
        tp_http_req_set_close_cb(req, on_held_close, NULL);
        uv_timer_start(&H.stream_timer, on_stream_tick, (uint64_t)H.stream_interval_ms,
                       (uint64_t)H.stream_interval_ms);
    } else if (strcmp(path, "/big") == 0) {
        ck_assert_int_eq(tp_http_stream_start(req, 200, NULL, 0), 0);
        H.big = req;
        H.big_sent = 0;
        tp_http_req_set_close_cb(req, on_held_close, NULL);
        uv_timer_start(&H.big_timer, on_big_tick, 0, 2);
    } else if (strcmp(path, "/hold") == 0) {
        /* One chunk, then silence. */
        ck_assert_int_eq(tp_http_stream_start(req, 200, NULL, 0), 0);
        uv_buf_t b = uv_buf_init((char *)"first", 5);
        ck_assert_int_eq(tp_http_stream_write(req, &b, 1), 0);
        hold(req);
    } else if (strcmp(path, "/silent") == 0) {
        hold(req); /* never answered */
    } else {
        ck_assert_int_eq(tp_http_respond_simple(req, 404, "text/plain", "no such path"), 0);
    }
}

static void on_other_request(void *ctx, struct tp_http_req *req)
{
    GW_UNUSED(ctx);
    H.n_other_req++;
    echo(req, 200);
}

static void on_watchdog(uv_timer_t *t)
{
    GW_UNUSED(t);
    ck_abort_msg("the test did not finish in time");
}

static void on_tick(uv_timer_t *t)
{
    GW_UNUSED(t);
}

static void setup(void)
{
    memset(&H, 0, sizeof H);
    core_log_set_level(getenv("GW_TEST_DEBUG") != NULL ? CORE_LOG_DEBUG : CORE_LOG_WARN);
    live_at_start = core_alloc_live();
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    uv_timer_init(&H.loop, &H.watchdog);
    uv_timer_start(&H.watchdog, on_watchdog, 20000, 0);
    uv_timer_init(&H.loop, &H.ticker);
    uv_timer_start(&H.ticker, on_tick, 5, 5);
    uv_timer_init(&H.loop, &H.stream_timer);
    uv_timer_init(&H.loop, &H.big_timer);
    H.stream_interval_ms = 30;
    struct tp_http_limits lim = {.idle_ms = 0, .max_untrusted = 512, .max_conns = 1024};
    H.srv = tp_http_server_new(&H.loop, &lim, on_request, &H);
    ck_assert_ptr_nonnull(H.srv);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    H.port = tp_http_server_port(H.srv);
    H.other = tp_http_server_new(&H.loop, &lim, on_other_request, &H);
    ck_assert_ptr_nonnull(H.other);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.other, "127.0.0.1", 0), 0);
    H.other_port = tp_http_server_port(H.other);
    ck_assert_int_eq(tp_hclient_new(&H.loop, &H.client), 0);
}

static void on_closed(void *ctx)
{
    GW_UNUSED(ctx);
    H.closes_pending--;
}

static void on_handle_closed(uv_handle_t *h)
{
    GW_UNUSED(h);
}

/* Closes the client (if the test did not) and the servers, runs the loop dry, checks that
 * nothing is left. */
static void teardown(void)
{
    if (H.client != NULL) {
        H.closes_pending++;
        tp_hclient_close(H.client, on_closed, NULL);
        H.client = NULL;
    }
    H.closes_pending += 2;
    tp_http_server_close(H.srv, on_closed, NULL);
    tp_http_server_close(H.other, on_closed, NULL);
    uv_close((uv_handle_t *)&H.watchdog, on_handle_closed);
    uv_close((uv_handle_t *)&H.ticker, on_handle_closed);
    uv_close((uv_handle_t *)&H.stream_timer, on_handle_closed);
    uv_close((uv_handle_t *)&H.big_timer, on_handle_closed);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(H.closes_pending, 0);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* ---- the client side ---------------------------------------------------------------------- */

/* What one request saw. */
struct rec {
    struct tp_hreq *r;
    int n_headers;
    int status;
    int status_in_headers; /* tp_hreq_status inside on_headers */
    char content_type[64];
    char multi_last[32];
    char multi_all[64];
    char location[256];
    struct core_buf body;
    int n_data;
    int n_data_while_streaming; /* on_data calls that came before the server ended /stream */
    bool done;
    int err;
    char why[256];
    char url[256];
    /* behaviours */
    bool pause_each;        /* return TP_HREQ_PAUSE from every on_data, resume from a timer */
    bool abort_in_data;     /* tp_hreq_abort inside the first on_data */
    bool abort_in_headers;  /* tp_hreq_abort inside on_headers */
    uv_timer_t resume_timer;
    bool timer_used;
    int pause_ms;
    int n_pauses;
};

static void rec_init(struct rec *x)
{
    memset(x, 0, sizeof *x);
    core_buf_init(&x->body, 0);
    x->err = 1; /* not done */
}

static void rec_dispose(struct rec *x)
{
    core_buf_dispose(&x->body);
    if (x->timer_used) {
        x->timer_used = false;
        uv_close((uv_handle_t *)&x->resume_timer, on_handle_closed);
        uv_run(&H.loop, UV_RUN_NOWAIT); /* x may live on the stack: finish the close now */
    }
}

static int collect_multi(void *ctx, const char *name, const char *value)
{
    struct rec *x = ctx;
    if (strcasecmp(name, "x-multi") == 0) {
        size_t n = strlen(x->multi_all);
        snprintf(x->multi_all + n, sizeof x->multi_all - n, "%s%s", n ? "," : "", value);
    }
    return 0;
}

static void cb_headers(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h)
{
    struct rec *x = ctx;
    ck_assert_ptr_eq(r, x->r);
    ck_assert(!x->done);
    ck_assert_int_eq(x->n_data, 0);
    x->n_headers++;
    x->status = status;
    x->status_in_headers = tp_hreq_status(r);
    const char *v = tp_hheaders_get(h, "CONTENT-type");
    if (v != NULL)
        snprintf(x->content_type, sizeof x->content_type, "%s", v);
    v = tp_hheaders_get(h, "x-multi");
    if (v != NULL)
        snprintf(x->multi_last, sizeof x->multi_last, "%s", v);
    v = tp_hheaders_get(h, "location");
    if (v != NULL)
        snprintf(x->location, sizeof x->location, "%s", v);
    tp_hheaders_each(h, collect_multi, x);
    if (x->abort_in_headers) {
        tp_hreq_abort(r);
        x->r = NULL;
    }
}

static void on_resume_timer(uv_timer_t *t)
{
    struct rec *x = container_of(t, struct rec, resume_timer);
    if (x->r != NULL)
        tp_hreq_resume(x->r);
}

static int cb_data(void *ctx, struct tp_hreq *r, const char *p, size_t n)
{
    struct rec *x = ctx;
    ck_assert_ptr_eq(r, x->r);
    ck_assert(!x->done);
    ck_assert_int_eq(x->n_headers, 1);
    x->n_data++;
    if (H.streaming != NULL)
        x->n_data_while_streaming++;
    ck_assert_int_eq(core_buf_append(&x->body, p, n), 0);
    if (x->abort_in_data) {
        tp_hreq_abort(r);
        x->r = NULL;
        return 0;
    }
    if (x->pause_each) {
        if (!x->timer_used) {
            uv_timer_init(&H.loop, &x->resume_timer);
            x->timer_used = true;
        }
        x->n_pauses++;
        uv_timer_start(&x->resume_timer, on_resume_timer, (uint64_t)x->pause_ms, 0);
        return TP_HREQ_PAUSE;
    }
    return 0;
}

static void cb_done(void *ctx, struct tp_hreq *r, int err, const char *why)
{
    struct rec *x = ctx;
    ck_assert_ptr_eq(r, x->r);
    ck_assert(!x->done);
    x->done = true;
    x->err = err;
    snprintf(x->why, sizeof x->why, "%s", why);
    snprintf(x->url, sizeof x->url, "%s", tp_hreq_url(r));
    if (err == 0)
        ck_assert_int_eq(tp_hreq_status(r), x->status);
    x->r = NULL;
}

static const struct tp_hreq_cbs CBS = {cb_headers, cb_data, NULL, cb_done};

static void url_of(char *out, size_t n, int port, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", port, path);
}

/* Starts a request; opts->url is made from path when NULL. */
static void start(struct rec *x, struct tp_hreq_opts *o, const char *path)
{
    char url[256];
    if (o->url == NULL) {
        url_of(url, sizeof url, H.port, path);
        o->url = url;
    }
    ck_assert_int_eq(tp_hreq_start(H.client, o, &CBS, x, &x->r), 0);
    if (o->url == url)
        o->url = NULL;
}

static void run_until_done(struct rec *x)
{
    while (!x->done)
        uv_run(&H.loop, UV_RUN_ONCE);
}

/* Runs the loop for ms milliseconds (the ticker wakes it up every few ms). */
static void run_for(int ms)
{
    uv_update_time(&H.loop);
    uint64_t end = uv_now(&H.loop) + (uint64_t)ms;
    while (uv_now(&H.loop) < end)
        uv_run(&H.loop, UV_RUN_ONCE);
}

static bool contains(const struct core_buf *b, const char *s)
{
    return b->data != NULL && strstr(b->data, s) != NULL;
}

/* ---- tests: basics ------------------------------------------------------------------------ */

START_TEST(get_and_post)
{
    struct rec x;
    rec_init(&x);
    const char *hdrs[] = {"X-Test: hello", "Authorization: Bearer s3cret", NULL};
    struct tp_hreq_opts o = {.headers = hdrs};
    start(&x, &o, "/echo?a=1");
    ck_assert_int_eq(tp_hclient_active(H.client), 1);
    ck_assert(!x.done); /* never from inside tp_hreq_start */
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.n_headers, 1);
    ck_assert_int_eq(x.status, 200);
    ck_assert_int_eq(x.status_in_headers, 200);
    ck_assert_str_eq(x.content_type, "text/plain");
    ck_assert_str_eq(x.multi_last, "two"); /* the last of a repeated header */
    ck_assert_str_eq(x.multi_all, "one,two");
    ck_assert_msg(contains(&x.body, "GET /echo?a=1 "), "%s", x.body.data);
    ck_assert(contains(&x.body, " x-test=hello "));
    ck_assert(contains(&x.body, " authorization=Bearer s3cret "));
    ck_assert(contains(&x.body, " user-agent=agentgate/"));
    ck_assert(!contains(&x.body, "expect="));
    ck_assert_int_eq(tp_hclient_active(H.client), 0);
    rec_dispose(&x);

    /* POST a JSON body (copied: the caller's buffer may go away at once). */
    rec_init(&x);
    char *json = core_xstrdup("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    const char *jh[] = {"Content-Type: application/json", NULL};
    struct tp_hreq_opts p = {.headers = jh, .body = json, .body_len = strlen(json)};
    start(&x, &p, "/echo");
    core_free(json);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_msg(contains(&x.body, "POST /echo? "), "%s", x.body.data);
    ck_assert(contains(&x.body, " content-type=application/json "));
    ck_assert(contains(&x.body, "body={\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"));
    rec_dispose(&x);

    /* Other methods, with and without a body; error statuses are responses, not errors. */
    rec_init(&x);
    struct tp_hreq_opts d = {.method = "DELETE"};
    start(&x, &d, "/status?404");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 404);
    ck_assert(contains(&x.body, "DELETE /status?404 "));
    ck_assert(contains(&x.body, "len=0 "));
    rec_dispose(&x);
    rec_init(&x);
    struct tp_hreq_opts put = {.method = "put", .body = "xyz", .body_len = 3};
    start(&x, &put, "/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert(contains(&x.body, "PUT /echo? "));
    ck_assert(contains(&x.body, "body=xyz"));
    rec_dispose(&x);
}
END_TEST

START_TEST(bad_arguments)
{
    struct rec x;
    rec_init(&x);
    struct tp_hreq *r = NULL;
    const char *bad_urls[] = {"ftp://127.0.0.1/x", "file:///etc/passwd", "not a url", "http://",
                              "gopher://127.0.0.1:70/"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        struct tp_hreq_opts o = {.url = bad_urls[i]};
        ck_assert_int_eq(tp_hreq_start(H.client, &o, &CBS, &x, &r), CORE_EINVAL);
    }
    struct tp_hreq_opts m = {.url = "http://127.0.0.1:1/", .method = "GE T"};
    ck_assert_int_eq(tp_hreq_start(H.client, &m, &CBS, &x, &r), CORE_EINVAL);
    const char *crlf[] = {"X-A: b\r\nX-Injected: 1", NULL};
    struct tp_hreq_opts h = {.url = "http://127.0.0.1:1/", .headers = crlf};
    ck_assert_int_eq(tp_hreq_start(H.client, &h, &CBS, &x, &r), CORE_EINVAL);
    const char *nocolon[] = {"X-A b", NULL};
    h.headers = nocolon;
    ck_assert_int_eq(tp_hreq_start(H.client, &h, &CBS, &x, &r), CORE_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(tp_hclient_active(H.client), 0);
    run_for(20);
    ck_assert(!x.done);
    rec_dispose(&x);
}
END_TEST

START_TEST(streaming_response)
{
    struct rec x;
    rec_init(&x);
    struct tp_hreq_opts o = {0};
    start(&x, &o, "/stream");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_str_eq(x.content_type, "text/event-stream");
    ck_assert_str_eq(x.body.data, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    /* Delivered as it came, not at the end: the chunks are 30 ms apart. */
    ck_assert_int_ge(x.n_data, 4);
    ck_assert_int_ge(x.n_data_while_streaming, 4);
    rec_dispose(&x);
}
END_TEST

START_TEST(pause_and_resume)
{
    struct rec x;
    rec_init(&x);
    x.pause_each = true;
    x.pause_ms = 1;
    H.big_total = 3 * 1024 * 1024 + 123;
    struct tp_hreq_opts o = {0};
    start(&x, &o, "/big");
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_uint_eq(x.body.len, H.big_total);
    for (size_t i = 0; i < x.body.len; i++) {
        if (x.body.data[i] != big_byte(i))
            ck_abort_msg("byte %zu differs", i);
    }
    ck_assert_int_gt(x.n_pauses, 10);
    /* The client really stopped reading: the server's queue backed up to its limit. */
    ck_assert_uint_ge(H.big_max_queued, 256 * 1024);
    rec_dispose(&x);
}
END_TEST

START_TEST(abort_inside_on_data)
{
    struct rec x;
    rec_init(&x);
    x.abort_in_data = true;
    struct tp_hreq_opts o = {0};
    start(&x, &o, "/hold");
    while (H.n_srv_close == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    /* The server saw the client go away; no callback came after the abort. */
    ck_assert_int_eq(x.n_data, 1);
    ck_assert_str_eq(x.body.data, "first");
    ck_assert(!x.done);
    ck_assert_int_eq(tp_hclient_active(H.client), 0);
    run_for(20);
    ck_assert(!x.done);
    rec_dispose(&x);

    /* Aborting inside on_headers, and from outside any callback. */
    rec_init(&x);
    x.abort_in_headers = true;
    struct tp_hreq_opts e = {0};
    start(&x, &e, "/hold");
    while (H.n_srv_close < 2)
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert_int_eq(x.n_headers, 1);
    ck_assert_int_eq(x.n_data, 0);
    ck_assert(!x.done);
    rec_dispose(&x);

    rec_init(&x);
    struct tp_hreq_opts s = {0};
    start(&x, &s, "/silent");
    while (H.n_held < 3)
        uv_run(&H.loop, UV_RUN_ONCE);
    tp_hreq_abort(x.r);
    x.r = NULL;
    while (H.n_srv_close < 3)
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert(!x.done);
    ck_assert_int_eq(x.n_headers, 0);

    /* Abort right after start: nothing ever happens. */
    start(&x, &s, "/echo");
    tp_hreq_abort(x.r);
    x.r = NULL;
    run_for(30);
    ck_assert(!x.done);
    ck_assert_int_eq(x.n_headers, 0);
    rec_dispose(&x);
}
END_TEST

/* ---- the suite ---------------------------------------------------------------------------- */

static Suite *hclient_suite(void)
{
    Suite *s = suite_create("hclient");
    TCase *tc = tcase_create("hclient");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, get_and_post);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, streaming_response);
    tcase_add_test(tc, pause_and_resume);
    tcase_add_test(tc, abort_inside_on_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hclient_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
