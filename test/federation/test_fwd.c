/* Tests for federation/fwd.c on one uv loop: an upstream (the project's HTTP server), a front
 * server whose requests are forwarded to it with fed_fwd, and hclient as the downstream client.
 * Each test checks what the client got, what on_end said, what the upstream saw, and that no
 * allocation of ours is left. */
#include "federation/fwd.h"

#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

enum mode { M_PASS, M_RETRY_ONCE, M_BUFFER_UPPER, M_FILTER_TAIL, M_ABORT_OWNER };

struct harness {
    uv_loop_t loop;
    uv_timer_t watchdog;
    uv_timer_t ticker;
    uv_timer_t big_timer;
    uv_timer_t cut_timer;
    struct tp_http_server *up;   /* the upstream */
    struct tp_http_server *cut;  /* an upstream that dies mid-answer */
    struct tp_http_server *front;
    struct tp_hclient *hc; /* fwd's and the client's */
    int up_port, cut_port, front_port;
    enum mode mode;
    /* upstream side */
    int n_up_req;
    int n_up_close; /* upstream requests whose client went away */
    char up_auth[128];
    struct tp_http_req *big;
    size_t big_total, big_sent;
    struct tp_http_req *held;
    struct tp_http_req *cutting;
    /* forwarding side */
    struct fed_fwd *f;
    int n_end;
    int end_err;
    bool end_had_req;
    bool end_sent;
    int n_tail;
    int closes_pending;
};

static struct harness H;
static long live_at_start;

static char big_byte(size_t i)
{
    return (char)('A' + (i * 13 + i / 1000) % 26);
}

/* ---- the upstream ------------------------------------------------------------------------- */

static void on_up_close(void *ud, struct tp_http_req *req)
{
    GW_UNUSED(ud);
    H.n_up_close++;
    if (req == H.big) {
        H.big = NULL;
        uv_timer_stop(&H.big_timer);
    }
    if (req == H.held)
        H.held = NULL;
}

static void on_big_tick(uv_timer_t *t)
{
    static char block[65536];
    while (H.big != NULL && H.big_sent < H.big_total && tp_http_req_queued(H.big) < 256 * 1024) {
        size_t n = H.big_total - H.big_sent < sizeof block ? H.big_total - H.big_sent
                                                            : sizeof block;
        for (size_t i = 0; i < n; i++)
            block[i] = big_byte(H.big_sent + i);
        uv_buf_t b = uv_buf_init(block, (unsigned)n);
        ck_assert_int_eq(tp_http_stream_write(H.big, &b, 1), 0);
        H.big_sent += n;
    }
    if (H.big != NULL && H.big_sent == H.big_total) {
        tp_http_stream_end(H.big);
        H.big = NULL;
        uv_timer_stop(t);
    }
}

static void on_up_request(void *ctx, struct tp_http_req *req)
{
    GW_UNUSED(ctx);
    H.n_up_req++;
    tp_http_req_set_trusted(req);
    const char *a = tp_http_req_header(req, "authorization");
    snprintf(H.up_auth, sizeof H.up_auth, "%s", a != NULL ? a : "");
    const char *path = tp_http_req_path(req);
    if (strcmp(path, "/json") == 0) {
        static const struct tp_http_header h[] = {{"Content-Type", "application/json"},
                                                 {"X-Up", "yes"},
                                                 {"Set-Cookie", "up=secret"}};
        uv_buf_t b = uv_buf_init((char *)"{\"hello\":\"world\"}", 17);
        ck_assert_int_eq(tp_http_respond(req, 200, h, 3, &b, 1), 0);
    } else if (strcmp(path, "/busy") == 0) {
        ck_assert_int_eq(tp_http_respond_simple(req, 429, "text/plain", "slow down"), 0);
    } else if (strcmp(path, "/big") == 0) {
        ck_assert_int_eq(tp_http_stream_start(req, 200, NULL, 0), 0);
        H.big = req;
        H.big_sent = 0;
        tp_http_req_set_close_cb(req, on_up_close, NULL);
        uv_timer_start(&H.big_timer, on_big_tick, 0, 2);
    } else if (strcmp(path, "/hold") == 0) {
        ck_assert_int_eq(tp_http_stream_start(req, 200, NULL, 0), 0);
        uv_buf_t b = uv_buf_init((char *)"first", 5);
        ck_assert_int_eq(tp_http_stream_write(req, &b, 1), 0);
        H.held = req;
        tp_http_req_set_close_cb(req, on_up_close, NULL);
    } else if (strcmp(path, "/silent") == 0) {
        H.held = req;
        tp_http_req_set_close_cb(req, on_up_close, NULL);
    } else {
        ck_assert_int_eq(tp_http_respond_simple(req, 404, "text/plain", "no such path"), 0);
    }
}

static void on_cut_tick(uv_timer_t *t)
{
    GW_UNUSED(t);
    /* The upstream dies with its answer half sent. */
    tp_http_server_close(H.cut, NULL, NULL);
    H.cut = NULL;
}

static void on_cut_request(void *ctx, struct tp_http_req *req)
{
    GW_UNUSED(ctx);
    static const struct tp_http_header h = {"Content-Type", "text/event-stream"};
    ck_assert_int_eq(tp_http_stream_start(req, 200, &h, 1), 0);
    uv_buf_t b = uv_buf_init((char *)"data: partial\n\n", 15);
    ck_assert_int_eq(tp_http_stream_write(req, &b, 1), 0);
    H.cutting = req;
    uv_timer_start(&H.cut_timer, on_cut_tick, 50, 0);
}

/* ---- the front: every request is forwarded ------------------------------------------------ */

static void forward(struct tp_http_req *req, const char *path);

static int cb_head(void *ctx, struct fed_fwd *f, int status, const struct tp_hheaders *h,
                   const struct tp_http_header **extra, size_t *n_extra)
{
    GW_UNUSED(ctx);
    GW_UNUSED(f);
    GW_UNUSED(h);
    static const struct tp_http_header ct = {"Content-Type", "text/x-upper"};
    if (H.mode == M_RETRY_ONCE && status == 429)
        return FED_FWD_RETRY;
    if (H.mode == M_BUFFER_UPPER) {
        *extra = &ct;
        *n_extra = 1;
        return FED_FWD_BUFFER;
    }
    return FED_FWD_PASS;
}

static int cb_filter(void *ctx, struct fed_fwd *f, const char *p, size_t n, bool last,
                     struct core_buf *out)
{
    GW_UNUSED(ctx);
    GW_UNUSED(f);
    if (H.mode == M_BUFFER_UPPER)
        ck_assert(last); /* BUFFER: the whole body once */
    for (size_t i = 0; i < n; i++) {
        char c = (char)toupper((unsigned char)p[i]);
        if (core_buf_append(out, &c, 1) != 0)
            return CORE_ETOOBIG;
    }
    return 0;
}

static void cb_tail(void *ctx, struct fed_fwd *f, int err, const char *why, struct core_buf *out)
{
    GW_UNUSED(ctx);
    GW_UNUSED(f);
    GW_UNUSED(why);
    H.n_tail++;
    ck_assert_int_ne(err, 0);
    ck_assert_int_eq(core_buf_append_str(out, "event: error\ndata: cut\n\n"), 0);
}

static void cb_end(void *ctx, struct fed_fwd *f, int err, const char *why,
                   struct tp_http_req *req, bool sent)
{
    GW_UNUSED(ctx);
    GW_UNUSED(why);
    ck_assert_ptr_eq(f, H.f);
    H.f = NULL;
    H.n_end++;
    H.end_err = err;
    H.end_had_req = req != NULL;
    H.end_sent = sent;
    if (req == NULL)
        return;
    ck_assert(!sent);
    if (err == FED_FWD_ERETRY) {
        H.mode = M_PASS;
        forward(req, "/json"); /* failover to another upstream answer */
    } else {
        ck_assert_int_eq(tp_http_respond_simple(req, 504, "text/plain", "owner's answer"), 0);
    }
}

static const struct fed_fwd_cbs CBS = {cb_head, cb_filter, cb_tail, cb_end};
static const struct fed_fwd_cbs PLAIN = {NULL, NULL, NULL, cb_end};

static void forward(struct tp_http_req *req, const char *path)
{
    char url[128];
    int port = strcmp(path, "/cut") == 0 ? H.cut_port : H.up_port;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    static const char *const hdrs[] = {"Authorization: Bearer injected", NULL};
    struct fed_fwd_opts o = {.up = {.url = url, .headers = hdrs}, .high_water = 64 * 1024};
    const struct fed_fwd_cbs *cbs = H.mode == M_PASS ? &PLAIN : &CBS;
    ck_assert_int_eq(fed_fwd_start(H.hc, req, &o, cbs, NULL, &H.f), 0);
}

static void on_front_request(void *ctx, struct tp_http_req *req)
{
    GW_UNUSED(ctx);
    tp_http_req_set_trusted(req);
    const char *path = tp_http_req_path(req);
    if (H.mode == M_RETRY_ONCE)
        path = "/busy";
    forward(req, path);
}

/* ---- the client --------------------------------------------------------------------------- */

struct rec {
    struct tp_hreq *r;
    int status;
    char ctype[64];
    bool has_cookie;
    bool has_xup;
    char clen[32];
    struct core_buf body;
    bool done;
    int err;
    int pause_first_ms;
    bool paused_once;
    size_t up_sent_at_pause;
    uv_timer_t resume;
};

static int has_header(void *ctx, const char *name, const char *value)
{
    struct rec *x = ctx;
    if (strcasecmp(name, "set-cookie") == 0)
        x->has_cookie = true;
    if (strcasecmp(name, "x-up") == 0)
        x->has_xup = true;
    if (strcasecmp(name, "content-type") == 0)
        snprintf(x->ctype, sizeof x->ctype, "%s", value);
    if (strcasecmp(name, "content-length") == 0)
        snprintf(x->clen, sizeof x->clen, "%s", value);
    return 0;
}

static void c_headers(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h)
{
    GW_UNUSED(r);
    struct rec *x = ctx;
    x->status = status;
    tp_hheaders_each(h, has_header, x);
}

static void on_resume(uv_timer_t *t)
{
    struct rec *x = t->data;
    x->up_sent_at_pause = H.big_sent;
    tp_hreq_resume(x->r);
}

static int c_data(void *ctx, struct tp_hreq *r, const char *p, size_t n)
{
    GW_UNUSED(r);
    struct rec *x = ctx;
    ck_assert_int_eq(core_buf_append(&x->body, p, n), 0);
    if (x->pause_first_ms > 0 && !x->paused_once) {
        x->paused_once = true;
        uv_timer_start(&x->resume, on_resume, (uint64_t)x->pause_first_ms, 0);
        return TP_HREQ_PAUSE;
    }
    return 0;
}

static void c_done(void *ctx, struct tp_hreq *r, int err, const char *why)
{
    GW_UNUSED(r);
    GW_UNUSED(why);
    struct rec *x = ctx;
    x->done = true;
    x->err = err;
    x->r = NULL;
}

static const struct tp_hreq_cbs CCBS = {c_headers, c_data, NULL, c_done};

static void rec_start(struct rec *x, const char *path)
{
    memset(x, 0, sizeof *x);
    core_buf_init(&x->body, 0);
    uv_timer_init(&H.loop, &x->resume);
    x->resume.data = x;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", H.front_port, path);
    static const char *const hdrs[] = {"Authorization: Bearer client-secret", NULL};
    struct tp_hreq_opts o = {.url = url, .headers = hdrs};
    ck_assert_int_eq(tp_hreq_start(H.hc, &o, &CCBS, x, &x->r), 0);
}

static void rec_dispose(struct rec *x)
{
    uv_close((uv_handle_t *)&x->resume, NULL);
    uv_run(&H.loop, UV_RUN_NOWAIT); /* x is on the caller's stack: close its timer now */
    core_buf_dispose(&x->body);
}

static void run_until(bool *flag)
{
    while (!*flag)
        uv_run(&H.loop, UV_RUN_ONCE);
}

static void run_until_end(void)
{
    while (H.n_end == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
}

/* ---- fixture ------------------------------------------------------------------------------ */

static void on_watchdog(uv_timer_t *t)
{
    GW_UNUSED(t);
    ck_abort_msg("the test did not finish in time");
}

static void on_tick(uv_timer_t *t)
{
    GW_UNUSED(t);
}

static struct tp_http_server *server(tp_http_request_cb cb, int *port)
{
    struct tp_http_limits lim = {.idle_ms = 0, .max_untrusted = 512, .max_conns = 1024};
    struct tp_http_server *s = tp_http_server_new(&H.loop, &lim, cb, &H);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tp_http_server_listen_tcp(s, "127.0.0.1", 0), 0);
    *port = tp_http_server_port(s);
    return s;
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
    uv_timer_init(&H.loop, &H.big_timer);
    uv_timer_init(&H.loop, &H.cut_timer);
    H.up = server(on_up_request, &H.up_port);
    H.cut = server(on_cut_request, &H.cut_port);
    H.front = server(on_front_request, &H.front_port);
    ck_assert_int_eq(tp_hclient_new(&H.loop, &H.hc), 0);
}

static void on_closed(void *ctx)
{
    GW_UNUSED(ctx);
    H.closes_pending--;
}

static void teardown(void)
{
    H.closes_pending += 3;
    tp_hclient_close(H.hc, on_closed, NULL);
    tp_http_server_close(H.up, on_closed, NULL);
    tp_http_server_close(H.front, on_closed, NULL);
    if (H.cut != NULL) {
        H.closes_pending++;
        tp_http_server_close(H.cut, on_closed, NULL);
    }
    uv_close((uv_handle_t *)&H.watchdog, NULL);
    uv_close((uv_handle_t *)&H.ticker, NULL);
    uv_close((uv_handle_t *)&H.big_timer, NULL);
    uv_close((uv_handle_t *)&H.cut_timer, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(H.closes_pending, 0);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(passes_status_headers_and_body)
{
    struct rec x;
    rec_start(&x, "/json");
    run_until(&x.done);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body.data, "{\"hello\":\"world\"}");
    ck_assert_str_eq(x.ctype, "application/json");
    ck_assert(x.has_xup);
    ck_assert(!x.has_cookie); /* the upstream's cookies are not ours to hand out */
    /* The upstream saw the owner's credential, never the client's. */
    ck_assert_str_eq(H.up_auth, "Bearer injected");
    run_until_end();
    ck_assert_int_eq(H.end_err, 0);
    ck_assert(H.end_sent);
    ck_assert(!H.end_had_req);
    rec_dispose(&x);

    /* A 404 passes as it is. */
    H.n_end = 0;
    rec_start(&x, "/nope");
    run_until(&x.done);
    ck_assert_int_eq(x.status, 404);
    ck_assert_str_eq(x.body.data, "no such path");
    run_until_end();
    rec_dispose(&x);
}
END_TEST

START_TEST(retry_hands_the_request_back)
{
    H.mode = M_RETRY_ONCE;
    struct rec x;
    rec_start(&x, "/json");
    run_until(&x.done);
    /* The 429 never reached the client: the owner forwarded again and that answer did. */
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body.data, "{\"hello\":\"world\"}");
    ck_assert_int_eq(H.n_up_req, 2);
    ck_assert_int_eq(H.n_end, 2);
    ck_assert_int_eq(H.end_err, 0);
    rec_dispose(&x);
}
END_TEST

START_TEST(buffer_and_filter)
{
    H.mode = M_BUFFER_UPPER;
    struct rec x;
    rec_start(&x, "/json");
    run_until(&x.done);
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body.data, "{\"HELLO\":\"WORLD\"}");
    ck_assert_str_eq(x.ctype, "text/x-upper"); /* the owner's header replaces the upstream's */
    ck_assert_str_eq(x.clen, "17");
    ck_assert(x.has_xup);
    run_until_end();
    ck_assert_int_eq(H.end_err, 0);
    rec_dispose(&x);
}
END_TEST

START_TEST(upstream_dies_mid_stream)
{
    H.mode = M_FILTER_TAIL;
    struct rec x;
    rec_start(&x, "/cut");
    run_until(&x.done);
    run_until_end();
    /* What went out stays out; the owner's last words follow, then a clean end. */
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body.data, "DATA: PARTIAL\n\nevent: error\ndata: cut\n\n");
    ck_assert_int_eq(x.err, 0);
    ck_assert_int_eq(H.n_tail, 1);
    ck_assert_int_ne(H.end_err, 0);
    ck_assert(H.end_sent);
    ck_assert(!H.end_had_req);
    rec_dispose(&x);
}
END_TEST

START_TEST(client_going_away_aborts_upstream)
{
    struct rec x;
    rec_start(&x, "/hold");
    while (x.body.len < 5)
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert_str_eq(x.body.data, "first");
    ck_assert_int_eq(H.n_up_close, 0);
    tp_hreq_abort(x.r);
    x.r = NULL;
    run_until_end();
    ck_assert_int_eq(H.end_err, CORE_ECLOSED);
    ck_assert(!H.end_had_req);
    /* The upstream sees its client go away too. */
    while (H.n_up_close == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&x);
}
END_TEST

START_TEST(owner_abort_before_answer)
{
    H.mode = M_ABORT_OWNER;
    struct rec x;
    rec_start(&x, "/silent");
    while (H.n_up_req == 0 || H.f == NULL)
        uv_run(&H.loop, UV_RUN_ONCE);
    fed_fwd_abort(H.f);
    ck_assert_int_eq(H.n_end, 0); /* on_end comes from the loop */
    run_until(&x.done);
    ck_assert_int_eq(H.end_err, UV_ECANCELED);
    ck_assert(H.end_had_req);
    ck_assert_int_eq(x.status, 504);
    ck_assert_str_eq(x.body.data, "owner's answer");
    while (H.n_up_close == 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    rec_dispose(&x);
}
END_TEST

START_TEST(back_pressure)
{
    H.big_total = 64u * 1024 * 1024;
    struct rec x;
    rec_start(&x, "/big");
    x.pause_first_ms = 500;
    run_until(&x.done);
    ck_assert_int_eq(x.err, 0);
    ck_assert_uint_eq(x.body.len, H.big_total);
    for (size_t i = 0; i < x.body.len; i += 4099)
        ck_assert_int_eq(x.body.data[i], big_byte(i));
    /* While the client was paused the upstream could send only what the buffers on the way
     * hold (socket buffers, curl's, 64 KiB of ours), far from the whole body. */
    ck_assert_msg(x.up_sent_at_pause < 24u * 1024 * 1024, "upstream sent %zu while paused",
                  x.up_sent_at_pause);
    run_until_end();
    ck_assert_int_eq(H.end_err, 0);
    rec_dispose(&x);
}
END_TEST

START_TEST(private_request_headers)
{
    ck_assert(fed_fwd_header_is_private("Authorization"));
    ck_assert(fed_fwd_header_is_private("x-API-key"));
    ck_assert(fed_fwd_header_is_private("Cookie"));
    ck_assert(fed_fwd_header_is_private("Proxy-Authorization"));
    ck_assert(fed_fwd_header_is_private("Connection"));
    ck_assert(fed_fwd_header_is_private("Host"));
    ck_assert(!fed_fwd_header_is_private("anthropic-beta"));
    ck_assert(!fed_fwd_header_is_private("A2A-Version"));
    ck_assert(!fed_fwd_header_is_private("traceparent"));
}
END_TEST

static Suite *fwd_suite(void)
{
    Suite *s = suite_create("fwd");
    TCase *tc = tcase_create("fwd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, passes_status_headers_and_body);
    tcase_add_test(tc, retry_hands_the_request_back);
    tcase_add_test(tc, buffer_and_filter);
    tcase_add_test(tc, upstream_dies_mid_stream);
    tcase_add_test(tc, client_going_away_aborts_upstream);
    tcase_add_test(tc, owner_abort_before_answer);
    tcase_add_test(tc, back_pressure);
    tcase_add_test(tc, private_request_headers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fwd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
