/* Tests for transports/hclient.c against real servers on 127.0.0.1: the project's own HTTP
 * server (transports/http.c, also with TLS) on the same uv loop plays the remote side, a few raw
 * libuv TCP servers play broken ones, and node's http2 module (h2server.mjs, spawned) plays an
 * HTTP/2 server. Certificates are made at test time with the openssl command. Every test
 * closes every handle, checks uv_loop_close() and that no allocation of ours is left. */
#include "transports/hclient.h"
#include "transports/http.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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
    bool in_resume; /* inside tp_hreq_resume: on_data must not run then */
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
        size_t n =
            H.big_total - H.big_sent < sizeof block ? H.big_total - H.big_sent : sizeof block;
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
    } else if (strncmp(path, "/r3", 3) == 0) {
        /* /r302?LOCATION answers 302 with that Location ("%3F" in it becomes "?"). */
        char loc[256];
        const char *q = tp_http_req_query(req);
        size_t k = 0;
        for (size_t i = 0; q[i] != '\0' && k + 1 < sizeof loc; i++) {
            if (strncmp(q + i, "%3F", 3) == 0) {
                loc[k++] = '?';
                i += 2;
            } else {
                loc[k++] = q[i];
            }
        }
        loc[k] = '\0';
        struct tp_http_header h[] = {{"Location", loc}, {"Content-Type", "text/plain"}};
        int status = (int)strtol(path + 2, NULL, 10);
        uv_buf_t b = uv_buf_init((char *)"moved", 5);
        ck_assert_int_eq(tp_http_respond(req, status, h, 2, &b, 1), 0);
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
    bool pause_each;              /* return TP_HREQ_PAUSE from every on_data, resume from a timer */
    bool abort_in_data;           /* tp_hreq_abort inside the first on_data */
    bool abort_in_headers;        /* tp_hreq_abort inside on_headers */
    int pause_first_ms;           /* pause in the first on_data for this long, then resume */
    bool close_in_data;           /* tp_hclient_close inside the first on_data */
    bool close_in_done;           /* tp_hclient_close inside on_done */
    struct rec *start_in_headers; /* start this request (GET /echo) from inside on_headers */
    struct rec *start_in_done;    /* start this request (GET /echo) from inside on_done */
    uint64_t t_start;
    uint64_t t_done;
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

static void start_echo(struct rec *x);

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
    if (x->start_in_headers != NULL)
        start_echo(x->start_in_headers);
    if (x->abort_in_headers) {
        tp_hreq_abort(r);
        x->r = NULL;
    }
}

static void on_resume_timer(uv_timer_t *t)
{
    struct rec *x = container_of(t, struct rec, resume_timer);
    if (x->r != NULL) {
        H.in_resume = true;
        tp_hreq_resume(x->r);
        H.in_resume = false;
    }
}

static int cb_data(void *ctx, struct tp_hreq *r, const char *p, size_t n)
{
    struct rec *x = ctx;
    ck_assert_ptr_eq(r, x->r);
    ck_assert(!x->done);
    ck_assert_int_eq(x->n_headers, 1);
    ck_assert(!H.in_resume);
    x->n_data++;
    if (H.streaming != NULL)
        x->n_data_while_streaming++;
    ck_assert_int_eq(core_buf_append(&x->body, p, n), 0);
    if (x->abort_in_data) {
        tp_hreq_abort(r);
        x->r = NULL;
        return 0;
    }
    if (x->close_in_data && x->n_data == 1) {
        H.closes_pending++;
        tp_hclient_close(H.client, on_closed, NULL);
        H.client = NULL;
        return 0;
    }
    if (x->pause_first_ms != 0 && x->n_data == 1) {
        if (!x->timer_used) {
            uv_timer_init(&H.loop, &x->resume_timer);
            x->timer_used = true;
        }
        x->n_pauses++;
        uv_timer_start(&x->resume_timer, on_resume_timer, (uint64_t)x->pause_first_ms, 0);
        return TP_HREQ_PAUSE;
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
    uv_update_time(&H.loop);
    x->t_done = uv_now(&H.loop);
    if (err == 0)
        ck_assert_int_eq(tp_hreq_status(r), x->status);
    x->r = NULL;
    if (x->close_in_done) {
        H.closes_pending++;
        tp_hclient_close(H.client, on_closed, NULL);
        H.client = NULL;
    }
    if (x->start_in_done != NULL)
        start_echo(x->start_in_done);
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
    uv_update_time(&H.loop);
    x->t_start = uv_now(&H.loop);
    ck_assert_int_eq(tp_hreq_start(H.client, o, &CBS, x, &x->r), 0);
    if (o->url == url)
        o->url = NULL;
}

static void start_echo(struct rec *x)
{
    struct tp_hreq_opts o = {0};
    start(x, &o, "/echo");
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
    ck_assert_ptr_eq(tp_hclient_loop(H.client), &H.loop);
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

/* ---- tests: streaming upload -------------------------------------------------------------- */

/* A streamed upload: piece 0 goes right after start, the rest from on_writable. */
struct up {
    struct rec x;
    int pieces; /* pieces to send in all */
    int sent;   /* pieces sent */
    size_t piece_len;
    int n_writable;
    int send_after_end_rc;
};

static void up_piece(struct up *u)
{
    char buf[65536];
    ck_assert_uint_le(u->piece_len, sizeof buf);
    memset(buf, 'A' + u->sent % 26, u->piece_len);
    ck_assert_int_eq(tp_hreq_send(u->x.r, buf, u->piece_len), 0);
    u->sent++;
    if (u->sent == u->pieces) {
        tp_hreq_send_end(u->x.r);
        u->send_after_end_rc = tp_hreq_send(u->x.r, "x", 1);
    }
}

static void up_writable(void *ctx, struct tp_hreq *r)
{
    struct up *u = ctx;
    ck_assert_ptr_eq(r, u->x.r);
    u->n_writable++;
    ck_assert_uint_eq(tp_hreq_send_queued(r), 0);
    if (u->sent < u->pieces)
        up_piece(u);
}

static const struct tp_hreq_cbs UP_CBS = {cb_headers, cb_data, up_writable, cb_done};

START_TEST(streaming_upload)
{
    struct up u;
    memset(&u, 0, sizeof u);
    rec_init(&u.x);
    u.pieces = 20;
    u.piece_len = 50000;
    char url[128];
    url_of(url, sizeof url, H.port, "/echo");
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    struct tp_hreq_opts o = {.url = url, .stream_body = true, .headers = hdrs};
    ck_assert_int_eq(tp_hreq_start(H.client, &o, &UP_CBS, &u, &u.x.r), 0);
    up_piece(&u); /* before any callback: allowed */
    ck_assert_uint_eq(tp_hreq_send_queued(u.x.r), u.piece_len);
    run_until_done(&u.x);
    ck_assert_msg(u.x.err == 0, "%s", u.x.why);
    ck_assert_int_eq(u.x.status, 200);
    ck_assert_msg(contains(&u.x.body, "POST /echo? "), "%.200s", u.x.body.data);
    ck_assert(contains(&u.x.body, " len=1000000 "));
    ck_assert(contains(&u.x.body, " transfer-encoding=chunked "));
    /* Every piece arrived, in order. */
    const char *b = strstr(u.x.body.data, "body=") + 5;
    for (int i = 0; i < u.pieces; i++) {
        for (size_t k = 0; k < u.piece_len; k += 997)
            ck_assert_int_eq(b[(size_t)i * u.piece_len + k], 'A' + i % 26);
    }
    ck_assert_int_ge(u.n_writable, u.pieces - 1);
    ck_assert_int_eq(u.send_after_end_rc, CORE_EINVAL);
    rec_dispose(&u.x);

    /* A plain request refuses tp_hreq_send. */
    struct rec x;
    rec_init(&x);
    struct tp_hreq_opts g = {0};
    start(&x, &g, "/echo");
    ck_assert_int_eq(tp_hreq_send(x.r, "x", 1), CORE_EINVAL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    rec_dispose(&x);

    /* An empty streamed body. */
    memset(&u, 0, sizeof u);
    rec_init(&u.x);
    struct tp_hreq_opts e = {.url = url, .stream_body = true, .method = "PUT"};
    ck_assert_int_eq(tp_hreq_start(H.client, &e, &UP_CBS, &u, &u.x.r), 0);
    tp_hreq_send_end(u.x.r);
    run_until_done(&u.x);
    ck_assert_msg(u.x.err == 0, "%s", u.x.why);
    ck_assert(contains(&u.x.body, "PUT /echo? "));
    ck_assert(contains(&u.x.body, " len=0 "));
    rec_dispose(&u.x);
}
END_TEST

/* ---- tests: limits and timeouts ----------------------------------------------------------- */

START_TEST(max_body)
{
    /* A streamed body (no Content-Length) passing the limit. */
    struct rec x;
    rec_init(&x);
    H.big_total = 1 << 20;
    struct tp_hreq_opts o = {.max_body = 1000};
    start(&x, &o, "/big");
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETOOBIG);
    ck_assert_str_eq(x.why, "response larger than 1000 bytes");
    ck_assert_uint_le(x.body.len, 1000);
    rec_dispose(&x);

    /* A Content-Length over the limit fails before on_headers. */
    rec_init(&x);
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct tp_hreq_opts p = {.max_body = 1000, .body = big, .body_len = strlen(big)};
    start(&x, &p, "/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETOOBIG);
    ck_assert_int_eq(x.n_headers, 0);
    ck_assert_uint_eq(x.body.len, 0);
    rec_dispose(&x);

    /* HEAD announces a length it does not carry: not over the limit. */
    rec_init(&x);
    struct tp_hreq_opts h = {.method = "HEAD", .max_body = 10};
    start(&x, &h, "/echo");
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_int_eq(x.status, 200);
    ck_assert_uint_eq(x.body.len, 0);
    rec_dispose(&x);

    /* Exactly at the limit is fine. */
    rec_init(&x);
    H.big_total = 5000;
    struct tp_hreq_opts q = {.max_body = 5000};
    start(&x, &q, "/big");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_uint_eq(x.body.len, 5000);
    rec_dispose(&x);
}
END_TEST

START_TEST(deadline_and_idle)
{
    /* The whole transfer must end within deadline_ms. */
    struct rec x;
    rec_init(&x);
    struct tp_hreq_opts o = {.deadline_ms = 200};
    start(&x, &o, "/silent");
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETIMEDOUT);
    ck_assert_msg(strstr(x.why, "within 200 ms") != NULL, "%s", x.why);
    uint64_t dt = x.t_done - x.t_start;
    ck_assert_msg(dt >= 195 && dt < 1500, "after %llu ms", (unsigned long long)dt);
    while (H.n_srv_close < 1) /* and the server sees the connection go */
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&x);

    /* A stream that stalls. */
    rec_init(&x);
    struct tp_hreq_opts s = {.idle_timeout_ms = 150};
    start(&x, &s, "/hold");
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETIMEDOUT);
    ck_assert_msg(strstr(x.why, "for 150 ms") != NULL, "%s", x.why);
    ck_assert_str_eq(x.body.data, "first");
    dt = x.t_done - x.t_start;
    ck_assert_msg(dt >= 145 && dt < 1500, "after %llu ms", (unsigned long long)dt);
    rec_dispose(&x);

    /* A slow but steady stream under the idle limit completes, and time paused by the caller
     * does not count (a 1 s pause with a 400 ms limit; margins for a loaded machine). */
    rec_init(&x);
    x.pause_first_ms = 1000;
    H.stream_interval_ms = 40;
    struct tp_hreq_opts t = {.idle_timeout_ms = 400, .deadline_ms = 10000};
    start(&x, &t, "/stream");
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_str_eq(x.body.data, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    ck_assert_int_eq(x.n_pauses, 1);
    dt = x.t_done - x.t_start;
    ck_assert_msg(dt >= 1000, "after %llu ms", (unsigned long long)dt);
    rec_dispose(&x);
}
END_TEST

START_TEST(connect_refused)
{
    /* A port nobody listens on: bind one, note it, close it. */
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&H.loop, &t);
    ck_assert_int_eq(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    ck_assert_int_eq(uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len), 0);
    int port = ntohs(got.sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&H.loop, UV_RUN_NOWAIT);

    struct rec x;
    rec_init(&x);
    char url[128], want[128];
    url_of(url, sizeof url, port, "/x");
    struct tp_hreq_opts o = {.url = url};
    start(&x, &o, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, UV_ECONNREFUSED);
    snprintf(want, sizeof want, "connect to 127.0.0.1:%d failed: Connection refused", port);
    ck_assert_str_eq(x.why, want);
    ck_assert_int_eq(x.n_headers, 0);
    rec_dispose(&x);

    /* A host name that does not resolve. */
    rec_init(&x);
    struct tp_hreq_opts n = {.url = "http://no-such-host.invalid/"};
    start(&x, &n, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, UV_EAI_NONAME);
    ck_assert_msg(strstr(x.why, "cannot resolve") != NULL, "%s", x.why);
    rec_dispose(&x);
}
END_TEST

START_TEST(connect_timeout)
{
    /* A listener whose accept queue is full drops further SYNs: connecting hangs. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(l, 0), 0);
    socklen_t alen = sizeof a;
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    run_for(50);
    struct rec x;
    rec_init(&x);
    char url[128];
    url_of(url, sizeof url, ntohs(a.sin_port), "/");
    struct tp_hreq_opts o = {.url = url, .connect_timeout_ms = 300};
    start(&x, &o, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETIMEDOUT);
    char want[128];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%d timed out after 300 ms",
             ntohs(a.sin_port));
    ck_assert_str_eq(x.why, want);
    uint64_t dt = x.t_done - x.t_start;
    ck_assert_msg(dt >= 290 && dt < 3000, "after %llu ms", (unsigned long long)dt);
    rec_dispose(&x);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l);
}
END_TEST

/* ---- tests: redirects --------------------------------------------------------------------- */

START_TEST(redirect_same_origin)
{
    struct rec x;
    rec_init(&x);
    const char *hdrs[] = {"Authorization: Bearer s3cret", NULL};
    struct tp_hreq_opts o = {.headers = hdrs, .max_redirects = 3};
    start(&x, &o, "/r302?/echo%3Fafter=1");
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_int_eq(x.n_headers, 1); /* only the final response */
    ck_assert_int_eq(x.status, 200);
    ck_assert_msg(contains(&x.body, "GET /echo?after=1 "), "%s", x.body.data);
    ck_assert(contains(&x.body, " authorization=Bearer s3cret "));
    char want[128];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/echo?after=1", H.port);
    ck_assert_str_eq(x.url, want);
    ck_assert_int_eq(H.n_req, 2);
    rec_dispose(&x);

    /* 303 turns a POST into a GET without a body; 307 keeps both. */
    rec_init(&x);
    struct tp_hreq_opts p = {.body = "payload", .body_len = 7, .max_redirects = 1};
    start(&x, &p, "/r303?/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_msg(contains(&x.body, "GET /echo? "), "%s", x.body.data);
    ck_assert(contains(&x.body, " len=0 "));
    rec_dispose(&x);
    rec_init(&x);
    start(&x, &p, "/r307?/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_msg(contains(&x.body, "POST /echo? "), "%s", x.body.data);
    ck_assert(contains(&x.body, "body=payload"));
    rec_dispose(&x);

    /* With no redirects allowed (the default), the 3xx is the answer. */
    rec_init(&x);
    struct tp_hreq_opts z = {0};
    start(&x, &z, "/r301?/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 301);
    ck_assert_str_eq(x.location, "/echo");
    ck_assert_str_eq(x.body.data, "moved");
    rec_dispose(&x);

    /* A chain longer than max_redirects ends with the last 3xx. */
    rec_init(&x);
    struct tp_hreq_opts c = {.max_redirects = 1};
    start(&x, &c, "/r302?/r308%3F/echo");
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 308);
    ck_assert_str_eq(x.location, "/echo");
    rec_dispose(&x);
}
END_TEST

START_TEST(redirect_cross_origin)
{
    /* Another port is another origin: not followed, its server never hears from us. */
    struct rec x;
    rec_init(&x);
    char path[128];
    snprintf(path, sizeof path, "/r302?http://127.0.0.1:%d/echo", H.other_port);
    const char *hdrs[] = {"Authorization: Bearer s3cret", NULL};
    struct tp_hreq_opts o = {.headers = hdrs, .max_redirects = 5};
    start(&x, &o, path);
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_int_eq(x.n_headers, 1);
    ck_assert_int_eq(x.status, 302);
    ck_assert_str_eq(x.location, path + 6);
    ck_assert_str_eq(x.body.data, "moved");
    run_for(50);
    ck_assert_int_eq(H.n_other_req, 0);
    rec_dispose(&x);

    /* Another scheme is another origin too (and so is a host name for the same address). */
    rec_init(&x);
    snprintf(path, sizeof path, "/r307?https://127.0.0.1:%d/echo", H.port);
    start(&x, &o, path);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 307);
    rec_dispose(&x);
    rec_init(&x);
    snprintf(path, sizeof path, "/r307?http://localhost:%d/echo", H.port);
    start(&x, &o, path);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 307);
    rec_dispose(&x);
    ck_assert_int_eq(H.n_req, 3);
    ck_assert_int_eq(H.n_other_req, 0);
}
END_TEST

/* ---- tests: TLS --------------------------------------------------------------------------- */

/* Makes a self-signed certificate for 127.0.0.1 with openssl in dir; fills cert and key. */
static void make_cert(const char *dir, char *cert, char *key, size_t n)
{
    snprintf(cert, n, "%s/cert.pem", dir);
    snprintf(key, n, "%s/key.pem", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    ck_assert_int_eq(system(cmd), 0);
}

static void rm_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(tls_verification)
{
    char dir[] = "/tmp/hclient-tls-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cert[256], key[256], cert2[256], key2[256], dir2[160];
    make_cert(dir, cert, key, sizeof cert);
    snprintf(dir2, sizeof dir2, "%s/other", dir);
    ck_assert_int_eq(mkdir(dir2, 0700), 0);
    make_cert(dir2, cert2, key2, sizeof cert2);

    struct tp_http_server *tls = tp_http_server_new(&H.loop, NULL, on_request, &H);
    char err[256];
    ck_assert_int_eq(tp_http_server_set_tls(tls, cert, key, err, sizeof err), 0);
    ck_assert_int_eq(tp_http_server_listen_tcp(tls, "127.0.0.1", 0), 0);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo", tp_http_server_port(tls));

    /* The system store does not know a self-signed certificate. */
    struct rec x;
    rec_init(&x);
    struct tp_hreq_opts o = {.url = url};
    start(&x, &o, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_EPROTO);
    ck_assert_msg(strstr(x.why, "TLS certificate of 127.0.0.1:") != NULL &&
                      strstr(x.why, "did not verify") != NULL,
                  "%s", x.why);
    ck_assert_int_eq(H.n_req, 0);
    rec_dispose(&x);

    /* Another CA does not either. */
    rec_init(&x);
    struct tp_hreq_opts w = {.url = url, .ca_file = cert2};
    start(&x, &w, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_EPROTO);
    ck_assert_msg(strstr(x.why, "did not verify") != NULL, "%s", x.why);
    rec_dispose(&x);

    /* A CA file that is not there. */
    rec_init(&x);
    struct tp_hreq_opts m = {.url = url, .ca_file = "/nonexistent/ca.pem"};
    start(&x, &m, NULL);
    run_until_done(&x);
    ck_assert_int_ne(x.err, 0);
    ck_assert_int_eq(H.n_req, 0);
    rec_dispose(&x);

    /* The certificate itself as ca_file: verified. */
    rec_init(&x);
    struct tp_hreq_opts v = {.url = url, .ca_file = cert, .body = "over tls", .body_len = 8};
    start(&x, &v, NULL);
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_int_eq(x.status, 200);
    ck_assert_msg(contains(&x.body, "POST /echo? "), "%s", x.body.data);
    ck_assert(contains(&x.body, "body=over tls"));
    rec_dispose(&x);

    H.closes_pending++;
    tp_http_server_close(tls, on_closed, NULL);
    rm_dir(dir);
}
END_TEST

/* ---- tests: connections ------------------------------------------------------------------- */

/* The "conn=cN" the echo reported. */
static void conn_of(const struct rec *x, char *out, size_t n)
{
    const char *p = strstr(x->body.data, "conn=");
    ck_assert_ptr_nonnull(p);
    size_t k = strcspn(p, " ");
    snprintf(out, n, "%.*s", (int)k, p);
}

START_TEST(connection_reuse)
{
    char first[32] = "", c[32];
    for (int i = 0; i < 3; i++) {
        struct rec x;
        rec_init(&x);
        struct tp_hreq_opts o = {0};
        start(&x, &o, "/echo");
        run_until_done(&x);
        ck_assert_int_eq(x.err, 0);
        conn_of(&x, c, sizeof c);
        if (i == 0)
            snprintf(first, sizeof first, "%s", c);
        else
            ck_assert_str_eq(c, first); /* the same TCP connection each time */
        rec_dispose(&x);
    }
}
END_TEST

START_TEST(many_concurrent)
{
    enum { N = 200 };
    struct rec *xs = core_xcalloc(N, sizeof *xs);
    for (int i = 0; i < N; i++) {
        rec_init(&xs[i]);
        char path[64];
        snprintf(path, sizeof path, "/echo?i=%d", i);
        struct tp_hreq_opts o = {0};
        start(&xs[i], &o, path);
    }
    ck_assert_uint_eq(tp_hclient_active(H.client), N);
    for (int i = 0; i < N; i++)
        run_until_done(&xs[i]);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "GET /echo?i=%d ", i);
        ck_assert_int_eq(xs[i].err, 0);
        ck_assert_msg(contains(&xs[i].body, want), "%d: %s", i, xs[i].body.data);
        rec_dispose(&xs[i]);
    }
    ck_assert_uint_eq(tp_hclient_active(H.client), 0);
    ck_assert_int_eq(H.n_req, N);
    core_free(xs);
}
END_TEST

START_TEST(close_with_transfers_in_flight)
{
    struct rec xs[4];
    const char *paths[] = {"/silent", "/hold", "/silent", "/stream"};
    for (int i = 0; i < 4; i++) {
        rec_init(&xs[i]);
        struct tp_hreq_opts o = {0};
        start(&xs[i], &o, paths[i]);
    }
    while (H.n_req < 4)
        uv_run(&H.loop, UV_RUN_ONCE);
    H.closes_pending++;
    tp_hclient_close(H.client, on_closed, NULL);
    for (int i = 0; i < 4; i++) {
        ck_assert(xs[i].done);
        ck_assert_int_eq(xs[i].err, CORE_ECLOSED);
        ck_assert_str_eq(xs[i].why, "the HTTP client was closed");
    }
    struct rec y;
    rec_init(&y);
    struct tp_hreq_opts o = {.url = "http://127.0.0.1:1/"};
    struct tp_hreq *r = NULL;
    ck_assert_int_eq(tp_hreq_start(H.client, &o, &CBS, &y, &r), CORE_ECLOSED);
    H.client = NULL;
    while (H.closes_pending > 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    while (H.n_srv_close < 3) /* the server sees every connection go */
        uv_run(&H.loop, UV_RUN_ONCE);
    for (int i = 0; i < 4; i++)
        rec_dispose(&xs[i]);
    rec_dispose(&y);
}
END_TEST

START_TEST(reentrant_callbacks)
{
    /* A request started inside on_headers (inside curl) and one inside on_done. */
    struct rec a, b, c;
    rec_init(&a);
    rec_init(&b);
    rec_init(&c);
    a.start_in_headers = &b;
    a.start_in_done = &c;
    struct tp_hreq_opts o = {0};
    start(&a, &o, "/echo");
    run_until_done(&a);
    run_until_done(&b);
    run_until_done(&c);
    ck_assert_int_eq(a.err, 0);
    ck_assert_int_eq(b.err, 0);
    ck_assert_int_eq(c.err, 0);
    ck_assert(contains(&b.body, "GET /echo? "));
    ck_assert(contains(&c.body, "GET /echo? "));
    rec_dispose(&a);
    rec_dispose(&b);
    rec_dispose(&c);

    /* The client closed from inside on_done: the others end with CORE_ECLOSED after it. */
    struct rec f, g;
    rec_init(&f);
    rec_init(&g);
    struct tp_hreq_opts q = {0};
    start(&g, &q, "/silent");
    f.close_in_done = true;
    start(&f, &q, "/echo");
    run_until_done(&f);
    ck_assert_int_eq(f.err, 0);
    ck_assert(g.done);
    ck_assert_int_eq(g.err, CORE_ECLOSED);
    while (H.closes_pending > 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&f);
    rec_dispose(&g);
    ck_assert_int_eq(tp_hclient_new(&H.loop, &H.client), 0);

    /* The client closed from inside on_data: every transfer, that one too, ends with
     * CORE_ECLOSED once the callback has returned. */
    struct rec d, e;
    rec_init(&d);
    rec_init(&e);
    struct tp_hreq_opts s = {0};
    start(&e, &s, "/silent");
    d.close_in_data = true;
    start(&d, &s, "/hold");
    while (H.closes_pending > 0 || !d.done)
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert_int_eq(d.err, CORE_ECLOSED);
    ck_assert_int_eq(e.err, CORE_ECLOSED);
    ck_assert_int_eq(d.n_data, 1);
    rec_dispose(&d);
    rec_dispose(&e);
}
END_TEST

/* ---- tests: broken servers ---------------------------------------------------------------- */

/* A raw TCP server that answers the first bytes of every connection with `reply` and closes. */
struct raw {
    uv_tcp_t listener;
    const char *reply;
    size_t reply_len;
    int port;
};

struct rawconn {
    uv_tcp_t h;
    uv_write_t w;
    struct raw *srv;
    char buf[4096];
    bool replied;
};

static void raw_conn_closed(uv_handle_t *h)
{
    core_free(container_of((uv_tcp_t *)h, struct rawconn, h));
}

static void raw_written(uv_write_t *w, int status)
{
    GW_UNUSED(status);
    struct rawconn *rc = container_of(w, struct rawconn, w);
    uv_close((uv_handle_t *)&rc->h, raw_conn_closed);
}

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    GW_UNUSED(hint);
    struct rawconn *rc = container_of((uv_tcp_t *)h, struct rawconn, h);
    *b = uv_buf_init(rc->buf, sizeof rc->buf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    GW_UNUSED(b);
    struct rawconn *rc = container_of((uv_tcp_t *)s, struct rawconn, h);
    if (n < 0) {
        if (!rc->replied)
            uv_close((uv_handle_t *)&rc->h, raw_conn_closed);
        return;
    }
    if (n == 0 || rc->replied)
        return;
    rc->replied = true;
    uv_read_stop(s);
    uv_buf_t out = uv_buf_init((char *)rc->srv->reply, (unsigned)rc->srv->reply_len);
    ck_assert_int_eq(uv_write(&rc->w, s, &out, 1, raw_written), 0);
}

static void raw_conn(uv_stream_t *l, int status)
{
    ck_assert_int_eq(status, 0);
    struct raw *srv = container_of((uv_tcp_t *)l, struct raw, listener);
    struct rawconn *rc = core_xcalloc(1, sizeof *rc);
    rc->srv = srv;
    uv_tcp_init(&H.loop, &rc->h);
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&rc->h), 0);
    uv_read_start((uv_stream_t *)&rc->h, raw_alloc, raw_read);
}

static void raw_start(struct raw *srv, const char *reply, size_t len)
{
    srv->reply = reply;
    srv->reply_len = len;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&H.loop, &srv->listener);
    ck_assert_int_eq(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&srv->listener, 16, raw_conn), 0);
    struct sockaddr_in got;
    int n = sizeof got;
    ck_assert_int_eq(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&got, &n), 0);
    srv->port = ntohs(got.sin_port);
}

/* One request to a raw server answering `reply`; x gets the outcome. */
static void raw_request(struct rec *x, const char *reply, size_t len)
{
    struct raw srv;
    raw_start(&srv, reply, len);
    char url[128];
    url_of(url, sizeof url, srv.port, "/");
    rec_init(x);
    struct tp_hreq_opts o = {.url = url};
    start(x, &o, NULL);
    run_until_done(x);
    uv_close((uv_handle_t *)&srv.listener, NULL);
    run_for(10);
}

START_TEST(broken_servers)
{
    struct rec x;
    static const char garbage[] = "garbage\r\n\r\n";
    raw_request(&x, garbage, sizeof garbage - 1);
    ck_assert_int_eq(x.err, CORE_EPROTO);
    ck_assert_msg(strstr(x.why, "invalid HTTP response") != NULL, "%s", x.why);
    ck_assert_int_eq(x.n_headers, 0);
    rec_dispose(&x);

    static const char badstatus[] = "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n";
    raw_request(&x, badstatus, sizeof badstatus - 1);
    ck_assert_int_eq(x.err, CORE_EPROTO);
    ck_assert_int_eq(x.n_headers, 0);
    rec_dispose(&x);

    static const char nothing[] = "";
    raw_request(&x, nothing, 0);
    ck_assert_int_eq(x.err, CORE_ECLOSED);
    ck_assert_msg(strstr(x.why, "without a response") != NULL, "%s", x.why);
    rec_dispose(&x);

    static const char shortbody[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    raw_request(&x, shortbody, sizeof shortbody - 1);
    ck_assert_int_eq(x.err, CORE_ECLOSED);
    ck_assert_msg(strstr(x.why, "before the response ended") != NULL, "%s", x.why);
    ck_assert_int_eq(x.n_headers, 1);
    ck_assert_str_eq(x.body.data, "abc");
    rec_dispose(&x);

    /* Endless headers: bounded. */
    size_t n = 100 * 1024;
    char *bomb = core_xmalloc(n + 64);
    size_t k = (size_t)snprintf(bomb, 64, "HTTP/1.1 200 OK\r\n");
    while (k + 40 < n) {
        memcpy(bomb + k, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 39);
        k += 39;
    }
    memcpy(bomb + k, "\r\n", 2);
    k += 2;
    raw_request(&x, bomb, k);
    ck_assert_int_eq(x.err, CORE_ETOOBIG);
    ck_assert_str_eq(x.why, "response headers larger than 65536 bytes");
    ck_assert_int_eq(x.n_headers, 0);
    rec_dispose(&x);
    core_free(bomb);
}
END_TEST

START_TEST(proxy_environment)
{
    /* The user's proxy is honoured, but loopback destinations always go direct. The "proxy" is
     * the other server (it answers a proxied request like any other). */
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", H.other_port);
    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    struct tp_hclient *c2;
    ck_assert_int_eq(tp_hclient_new(&H.loop, &c2), 0);
    struct rec x;
    rec_init(&x);
    char url[128];
    url_of(url, sizeof url, H.port, "/echo");
    struct tp_hreq_opts o = {.url = url};
    ck_assert_int_eq(tp_hreq_start(c2, &o, &CBS, &x, &x.r), 0);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(H.n_req, 1);
    ck_assert_int_eq(H.n_other_req, 0);
    rec_dispose(&x);

    rec_init(&x);
    struct tp_hreq_opts p = {.url = "http://agentgate-test.invalid/echo"};
    ck_assert_int_eq(tp_hreq_start(c2, &p, &CBS, &x, &x.r), 0);
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_int_eq(H.n_other_req, 1);
    ck_assert_msg(contains(&x.body, "GET /echo? "), "%s", x.body.data);
    rec_dispose(&x);

    H.closes_pending++;
    tp_hclient_close(c2, on_closed, NULL);
    unsetenv("http_proxy");
}
END_TEST

/* ---- tests: HTTP/2 (node's http2 server over TLS) ----------------------------------------- */

struct h2srv {
    uv_process_t proc;
    uv_pipe_t in;  /* the child's stdin: closing it ends the child */
    uv_pipe_t out; /* the child's stdout: the port */
    char buf[4096];
    size_t len;
    int port;
    int n_aborted; /* "aborted" lines the server printed */
    bool exited;
};

static struct h2srv H2;

static void h2_exit(uv_process_t *p, int64_t status, int sig)
{
    GW_UNUSED(p);
    GW_UNUSED(status);
    GW_UNUSED(sig);
    H2.exited = true;
}

static void h2_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    GW_UNUSED(h);
    GW_UNUSED(hint);
    *b = uv_buf_init(H2.buf + H2.len, (unsigned)(sizeof H2.buf - 1 - H2.len));
}

static void h2_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    GW_UNUSED(b);
    if (n < 0) {
        uv_read_stop(s);
        return;
    }
    H2.len += (size_t)n;
    H2.buf[H2.len] = '\0';
    char *nl;
    while ((nl = strchr(H2.buf, '\n')) != NULL) {
        *nl = '\0';
        if (strcmp(H2.buf, "aborted") == 0)
            H2.n_aborted++;
        else
            H2.port = (int)strtol(H2.buf, NULL, 10);
        size_t used = (size_t)(nl + 1 - H2.buf);
        memmove(H2.buf, nl + 1, H2.len - used + 1);
        H2.len -= used;
    }
}

/* Starts node with h2server.mjs (next to this file) and waits for its port. */
static void h2_start(const char *cert, const char *key)
{
    memset(&H2, 0, sizeof H2);
    char script[512];
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    ck_assert_ptr_nonnull(slash);
    snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "h2server.mjs");
    char *args[] = {(char *)"node", script, (char *)cert, (char *)key, NULL};
    uv_pipe_init(&H.loop, &H2.in, 0);
    uv_pipe_init(&H.loop, &H2.out, 0);
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&H2.in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&H2.out},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {
        .exit_cb = h2_exit, .file = "node", .args = args, .stdio_count = 3, .stdio = stdio};
    ck_assert_int_eq(uv_spawn(&H.loop, &H2.proc, &po), 0);
    uv_read_start((uv_stream_t *)&H2.out, h2_alloc, h2_read);
    while (H2.port == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
}

static void h2_stop(void)
{
    uv_close((uv_handle_t *)&H2.in, NULL); /* stdin ends: the server exits */
    while (!H2.exited)
        uv_run(&H.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&H2.out, NULL);
    uv_close((uv_handle_t *)&H2.proc, NULL);
    uv_run(&H.loop, UV_RUN_NOWAIT);
}

static void h2_url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "https://127.0.0.1:%d%s", H2.port, path);
}

/* The integer after "\"key\":" in a JSON body, or -1. */
static long json_int(const struct rec *x, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = x->body.data != NULL ? strstr(x->body.data, pat) : NULL;
    return p != NULL ? strtol(p + strlen(pat), NULL, 10) : -1;
}

START_TEST(http2)
{
    char dir[] = "/tmp/hclient-h2-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cert[256], key[256], url[160];
    make_cert(dir, cert, key, sizeof cert);
    h2_start(cert, key);

    /* Concurrent requests share one HTTP/2 connection. */
    enum { N = 20 };
    struct rec xs[N];
    h2_url(url, sizeof url, "/echo");
    for (int i = 0; i < N; i++) {
        rec_init(&xs[i]);
        struct tp_hreq_opts o = {.url = url, .ca_file = cert};
        start(&xs[i], &o, NULL);
    }
    for (int i = 0; i < N; i++) {
        run_until_done(&xs[i]);
        ck_assert_msg(xs[i].err == 0, "%s", xs[i].why);
        ck_assert_msg(contains(&xs[i].body, "\"proto\":\"2.0\""), "%s", xs[i].body.data);
        ck_assert_int_eq(json_int(&xs[i], "session"), 1);
        rec_dispose(&xs[i]);
    }

    /* A streamed upload (DATA frames, no chunked encoding). */
    struct up u;
    memset(&u, 0, sizeof u);
    rec_init(&u.x);
    u.pieces = 10;
    u.piece_len = 10000;
    struct tp_hreq_opts uo = {.url = url, .ca_file = cert, .stream_body = true};
    ck_assert_int_eq(tp_hreq_start(H.client, &uo, &UP_CBS, &u, &u.x.r), 0);
    run_until_done(&u.x);
    ck_assert_msg(u.x.err == 0, "%s", u.x.why);
    ck_assert_int_eq(json_int(&u.x, "bytes"), 100000);
    ck_assert(contains(&u.x.body, "\"method\":\"POST\""));
    ck_assert_int_eq(json_int(&u.x, "session"), 1);
    rec_dispose(&u.x);

    /* Pause and resume under HTTP/2 flow control: every byte, in order. */
    struct rec x;
    rec_init(&x);
    x.pause_each = true;
    x.pause_ms = 1;
    size_t total = 2 * 1024 * 1024 + 7;
    char path[64];
    snprintf(path, sizeof path, "/big?%zu", total);
    h2_url(url, sizeof url, path);
    struct tp_hreq_opts bo = {.url = url, .ca_file = cert};
    start(&x, &bo, NULL);
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_uint_eq(x.body.len, total);
    for (size_t i = 0; i < total; i++) {
        if (x.body.data[i] != big_byte(i))
            ck_abort_msg("byte %zu differs", i);
    }
    rec_dispose(&x);

    /* An abort inside on_data of the only stream: the server sees it at once (the connection
     * is closed, since curl 7.88 would hold the RST_STREAM back until its next use). */
    rec_init(&x);
    x.abort_in_data = true;
    h2_url(url, sizeof url, "/hold");
    struct tp_hreq_opts ho = {.url = url, .ca_file = cert};
    start(&x, &ho, NULL);
    while (H2.n_aborted == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert(!x.done);
    ck_assert_int_eq(x.n_data, 1);
    rec_dispose(&x);
    /* The next request gets a new connection. */
    rec_init(&x);
    h2_url(url, sizeof url, "/stats");
    struct tp_hreq_opts so = {.url = url, .ca_file = cert};
    start(&x, &so, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(json_int(&x, "aborted"), 1);
    ck_assert_int_eq(json_int(&x, "sessions"), 2);
    rec_dispose(&x);

    /* Two streams share the connection; aborting one resets only it (the other's traffic
     * carries the RST_STREAM) and the other goes on to its end. */
    struct rec y;
    rec_init(&x);
    rec_init(&y);
    x.abort_in_data = true;
    y.pause_each = true;
    y.pause_ms = 2;
    h2_url(url, sizeof url, "/big?1048576");
    struct tp_hreq_opts yo = {.url = url, .ca_file = cert};
    start(&y, &yo, NULL);
    h2_url(url, sizeof url, "/hold");
    start(&x, &ho, NULL);
    int before = H2.n_aborted;
    run_until_done(&y);
    ck_assert_msg(y.err == 0, "%s", y.why);
    ck_assert_uint_eq(y.body.len, 1048576);
    ck_assert(!x.done);
    while (H2.n_aborted == before)
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&x);
    rec_dispose(&y);

    /* A compressed body is delivered decoded, and max_body counts decoded bytes: 4 MiB of
     * 'a' is about 4 KiB on the wire. */
    rec_init(&x);
    h2_url(url, sizeof url, "/gzip?100000");
    struct tp_hreq_opts zo = {.url = url, .ca_file = cert};
    start(&x, &zo, NULL);
    run_until_done(&x);
    ck_assert_msg(x.err == 0, "%s", x.why);
    ck_assert_uint_eq(x.body.len, 100000);
    ck_assert_int_eq(x.body.data[0], 'a');
    ck_assert_int_eq(x.body.data[99999], 'a');
    rec_dispose(&x);
    rec_init(&x);
    h2_url(url, sizeof url, "/gzip?4194304");
    struct tp_hreq_opts bomb = {.url = url, .ca_file = cert, .max_body = 65536};
    start(&x, &bomb, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETOOBIG);
    ck_assert_uint_le(x.body.len, 65536);
    rec_dispose(&x);

    /* A stalled stream ended by the idle timeout: the server learns at once too. */
    rec_init(&x);
    h2_url(url, sizeof url, "/hold");
    struct tp_hreq_opts io = {.url = url, .ca_file = cert, .idle_timeout_ms = 100};
    start(&x, &io, NULL);
    run_until_done(&x);
    ck_assert_int_eq(x.err, CORE_ETIMEDOUT);
    while (H2.n_aborted < 3)
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&x);

    h2_stop();
    rm_dir(dir);
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
    tcase_add_test(tc, streaming_upload);
    tcase_add_test(tc, max_body);
    tcase_add_test(tc, deadline_and_idle);
    tcase_add_test(tc, connect_refused);
    tcase_add_test(tc, connect_timeout);
    tcase_add_test(tc, redirect_same_origin);
    tcase_add_test(tc, redirect_cross_origin);
    tcase_add_test(tc, tls_verification);
    tcase_add_test(tc, connection_reuse);
    tcase_add_test(tc, many_concurrent);
    tcase_add_test(tc, close_with_transfers_in_flight);
    tcase_add_test(tc, reentrant_callbacks);
    tcase_add_test(tc, broken_servers);
    tcase_add_test(tc, http2);
    tcase_add_test(tc, proxy_environment);
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
