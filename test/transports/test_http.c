/* Tests for transports/http.c over real sockets: a uv loop runs the server in the test's main
 * thread; a client thread (blocking sockets with receive timeouts) or a socketpair fed from the
 * loop thread plays the peer. Every test closes every handle and checks uv_loop_close(). */
#include "transports/http.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

/* ---- server side (loop thread) ------------------------------------------------------------ */

enum mode {
    MODE_ECHO,         /* answer at once with the request's record as body */
    MODE_DEFER,        /* answer from a timer, a few ms later */
    MODE_HOLD,         /* keep the request; never answer */
    MODE_STREAM,       /* chunked answer: five chunks from a timer, then end */
    MODE_STREAM_HOLD,  /* chunked answer: one chunk, then keep the request */
    MODE_CLOSE_RESPOND, /* close the server inside the callback, then respond */
    MODE_CLOSE_STREAM, /* close the server inside the callback, then start a stream */
};

struct harness {
    uv_loop_t loop;
    struct tp_http_server *srv;
    uv_async_t async; /* the client thread is done */
    uv_timer_t watchdog;
    uv_timer_t work; /* deferred answers and stream chunks */
    pthread_t thread;
    void (*client)(void);
    atomic_bool signalled;
    _Atomic enum mode mode;
    unsigned stream_interval_ms;
    unsigned defer_ms;
    int port;
    char dir[64];
    char sock_path[100];
    struct core_buf log; /* one record per request */
    atomic_int n_req;
    atomic_int n_close_cb;
    atomic_int n_answered;
    int outstanding;
    int max_outstanding;
    struct tp_http_req *held;
    int stream_left;
    int respond_rc;
    int stream_rc;
    bool server_done;
};

static struct harness H;
static long live_at_start;

static void record(struct core_buf *b, struct tp_http_req *req)
{
    size_t blen;
    const char *body = tp_http_req_body(req, &blen);
    const char *names[] = {"host", "content-type", "x-test", "transfer-encoding", "expect"};
    int rc = core_buf_appendf(b, "[%s%s] %s %s ? %s |", tp_http_req_conn_name(req),
                              tp_http_req_is_unix(req) ? " unix" : "", tp_http_req_method(req),
                              tp_http_req_path(req), tp_http_req_query(req));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = tp_http_req_header(req, names[i]);
        if (v != NULL)
            rc |= core_buf_appendf(b, " %s=<%s>", names[i], v);
    }
    rc |= core_buf_appendf(b, " body(%zu)=<", blen);
    rc |= core_buf_append(b, body, blen);
    rc |= core_buf_append_str(b, ">\n");
    ck_assert_int_eq(rc, 0);
}

static void answer_echo(struct tp_http_req *req)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    record(&b, req);
    struct tp_http_header hdrs[] = {
        {"Content-Type", "text/plain"},
        {"X-Path", tp_http_req_path(req)}, /* points into the request */
        {"Content-Length", "999"},        /* dropped: the server frames the body */
    };
    uv_buf_t body = uv_buf_init(b.data, (unsigned)b.len);
    ck_assert_int_eq(tp_http_respond(req, 200, hdrs, 3, &body, 1), 0);
    core_buf_dispose(&b);
    H.outstanding--;
    atomic_fetch_add(&H.n_answered, 1);
}

static void on_req_closed(void *ud, struct tp_http_req *req)
{
    ck_assert_ptr_eq(ud, &H);
    ck_assert_ptr_nonnull(tp_http_req_path(req)); /* still readable in the callback */
    if (H.held == req)
        H.held = NULL;
    atomic_fetch_add(&H.n_close_cb, 1);
}

static void on_srv_done(void *ctx)
{
    ck_assert_ptr_eq(ctx, &H);
    H.server_done = true;
}

static void on_work(uv_timer_t *t)
{
    switch (H.mode) {
    case MODE_DEFER:
        if (H.held != NULL) {
            struct tp_http_req *req = H.held;
            H.held = NULL;
            answer_echo(req);
        }
        break;
    case MODE_STREAM:
        if (H.held == NULL)
            break;
        if (H.stream_left > 0) {
            char text[64];
            int n = snprintf(text, sizeof text, "data: chunk %d\n\n", 5 - H.stream_left);
            uv_buf_t parts[2] = {uv_buf_init(text, 6), uv_buf_init(text + 6, (unsigned)n - 6)};
            ck_assert_int_eq(tp_http_stream_write(H.held, parts, 2), 0);
            H.stream_left--;
            uv_timer_start(t, on_work, H.stream_interval_ms, 0);
        } else {
            tp_http_stream_end(H.held);
            H.held = NULL;
            atomic_fetch_add(&H.n_answered, 1);
        }
        break;
    default:
        break;
    }
}

static void on_request(void *ctx, struct tp_http_req *req)
{
    ck_assert_ptr_eq(ctx, &H);
    record(&H.log, req);
    atomic_fetch_add(&H.n_req, 1);
    if (strcmp(tp_http_req_path(req), "/trust") == 0)
        tp_http_req_set_trusted(req); /* as the front does once a request is authenticated */
    H.outstanding++;
    if (H.outstanding > H.max_outstanding)
        H.max_outstanding = H.outstanding;
    static const struct tp_http_header sse_hdrs[] = {
        {"Content-Type", "text/event-stream"},
        {"Cache-Control", "no-cache"},
    };
    switch (H.mode) {
    case MODE_ECHO:
        answer_echo(req);
        break;
    case MODE_DEFER:
        ck_assert_ptr_null(H.held);
        H.held = req;
        uv_timer_start(&H.work, on_work, H.defer_ms, 0);
        break;
    case MODE_HOLD:
        H.held = req;
        tp_http_req_set_close_cb(req, on_req_closed, &H);
        break;
    case MODE_STREAM:
        ck_assert_int_eq(tp_http_stream_start(req, 200, sse_hdrs, 2), 0);
        H.held = req;
        H.stream_left = 5;
        tp_http_req_set_close_cb(req, on_req_closed, &H);
        uv_timer_start(&H.work, on_work, H.stream_interval_ms, 0);
        break;
    case MODE_STREAM_HOLD: {
        ck_assert_int_eq(tp_http_stream_start(req, 200, sse_hdrs, 2), 0);
        uv_buf_t b = uv_buf_init("data: first\n\n", 13);
        ck_assert_int_eq(tp_http_stream_write(req, &b, 1), 0);
        ck_assert_uint_eq(tp_http_stream_write(req, &b, 0), 0); /* empty: nothing sent */
        H.held = req;
        tp_http_req_set_close_cb(req, on_req_closed, &H);
        break;
    }
    case MODE_CLOSE_RESPOND:
        tp_http_req_set_close_cb(req, on_req_closed, &H);
        tp_http_server_close(H.srv, on_srv_done, &H);
        H.srv = NULL;
        H.respond_rc = tp_http_respond_simple(req, 200, "text/plain", "late");
        break;
    case MODE_CLOSE_STREAM:
        tp_http_req_set_close_cb(req, on_req_closed, &H);
        tp_http_server_close(H.srv, on_srv_done, &H);
        H.srv = NULL;
        H.stream_rc = tp_http_stream_start(req, 200, sse_hdrs, 2);
        uv_buf_t b = uv_buf_init("x", 1);
        ck_assert_int_eq(tp_http_stream_write(req, &b, 1), CORE_ECLOSED);
        break;
    }
}

static void on_client_done(uv_async_t *a)
{
    GW_UNUSED(a);
    if (H.srv != NULL)
        tp_http_server_close(H.srv, on_srv_done, &H);
    H.srv = NULL;
    uv_close((uv_handle_t *)&H.async, NULL);
    uv_close((uv_handle_t *)&H.watchdog, NULL);
    uv_close((uv_handle_t *)&H.work, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    GW_UNUSED(t);
    ck_abort_msg("watchdog: the test did not finish in time");
}

/* Lets the loop close the server; called by the client thread once. */
static void client_signal(void)
{
    if (!atomic_exchange(&H.signalled, true))
        uv_async_send(&H.async);
}

static void *client_main(void *arg)
{
    GW_UNUSED(arg);
    H.client();
    client_signal();
    return NULL;
}

static void setup(void)
{
    live_at_start = core_alloc_live();
    memset(&H, 0, sizeof H);
    core_buf_init(&H.log, 0);
    H.stream_interval_ms = 5;
    H.defer_ms = 2;
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    snprintf(H.dir, sizeof H.dir, "/tmp/test_http.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(H.dir));
    snprintf(H.sock_path, sizeof H.sock_path, "%s/gw.sock", H.dir);
}

static void teardown(void)
{
    unlink(H.sock_path);
    rmdir(H.dir);
    core_buf_dispose(&H.log);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

static void start_server(const struct tp_http_limits *lim, bool on_unix)
{
    H.srv = tp_http_server_new(&H.loop, lim, on_request, &H);
    ck_assert_ptr_nonnull(H.srv);
    ck_assert_int_eq(tp_http_server_port(H.srv), -1);
    if (on_unix) {
        ck_assert_int_eq(tp_http_server_listen_unix(H.srv, H.sock_path), 0);
    } else {
        ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
        H.port = tp_http_server_port(H.srv);
        ck_assert_int_gt(H.port, 0);
    }
}

/* Runs the loop with the client in a thread until the client is done and all handles closed. */
static void run_client(void (*client)(void))
{
    H.client = client;
    ck_assert_int_eq(uv_async_init(&H.loop, &H.async, on_client_done), 0);
    ck_assert_int_eq(uv_timer_init(&H.loop, &H.watchdog), 0);
    ck_assert_int_eq(uv_timer_init(&H.loop, &H.work), 0);
    ck_assert_int_eq(uv_timer_start(&H.watchdog, on_watchdog, 15000, 0), 0);
    ck_assert_int_eq(pthread_create(&H.thread, NULL, client_main, NULL), 0);
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(pthread_join(H.thread, NULL), 0);
    ck_assert(H.server_done);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
}

static void run_tcp(const struct tp_http_limits *lim, void (*client)(void))
{
    start_server(lim, false);
    run_client(client);
}

/* ---- client side (client thread, blocking sockets) ---------------------------------------- */

struct cl {
    int fd;
    size_t len;
    char buf[1 << 18];
};

struct resp {
    int status;
    char head[4096];
    char body[1 << 16];
    size_t body_len;
    char raw[1 << 16]; /* a chunked body as sent, framing included */
    size_t raw_len;
};

static void cl_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static struct cl *cl_tcp(void)
{
    struct cl *c = calloc(1, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(c->fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)H.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cl_timeouts(c->fd);
    return c;
}

static struct cl *cl_unix(const char *path)
{
    struct cl *c = calloc(1, sizeof *c);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cl_timeouts(c->fd);
    return c;
}

static void cl_free(struct cl *c)
{
    close(c->fd);
    free(c);
}

static void cl_send_n(struct cl *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        ck_assert_msg(k > 0, "send: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

static void cl_send(struct cl *c, const char *s)
{
    cl_send_n(c, s, strlen(s));
}

/* Reads more; returns the bytes read, 0 at EOF, -1 on error or timeout. */
static ssize_t cl_fill(struct cl *c)
{
    ck_assert_uint_lt(c->len, sizeof c->buf);
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static void cl_consume(struct cl *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static bool cl_need(struct cl *c, size_t n)
{
    while (c->len < n) {
        if (cl_fill(c) <= 0)
            return false;
    }
    return true;
}

/* Position of the first \r\n, filling as needed; -1 at EOF. */
static ssize_t cl_line(struct cl *c)
{
    size_t scanned = 0;
    for (;;) {
        for (; scanned + 1 < c->len; scanned++) {
            if (c->buf[scanned] == '\r' && c->buf[scanned + 1] == '\n')
                return (ssize_t)scanned;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

static const char *resp_header(struct resp *r, const char *name)
{
    static __thread char value[1024];
    size_t nlen = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p != NULL && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(value, sizeof value, "%.*s", (int)(e - v), v);
            return value;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Reads one response; false at EOF before a status line. */
static bool cl_response(struct cl *c, struct resp *r)
{
    memset(r, 0, offsetof(struct resp, body));
    r->body_len = 0;
    r->raw_len = 0;
    size_t end = 0;
    for (;;) {
        const char *e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (e != NULL) {
            end = (size_t)(e - c->buf) + 4;
            break;
        }
        if (cl_fill(c) <= 0)
            return false;
    }
    ck_assert_uint_lt(end, sizeof r->head);
    memcpy(r->head, c->buf, end);
    r->head[end] = '\0';
    cl_consume(c, end);
    ck_assert_msg(strncmp(r->head, "HTTP/1.1 ", 9) == 0, "bad status line: %s", r->head);
    r->status = (int)strtol(r->head + 9, NULL, 10);
    if (r->status < 200)
        return true;
    const char *te = resp_header(r, "transfer-encoding");
    const char *cl = resp_header(r, "content-length");
    if (te != NULL) {
        ck_assert_str_eq(te, "chunked");
        ck_assert_ptr_null(resp_header(r, "content-length"));
        for (;;) {
            ssize_t nl = cl_line(c);
            ck_assert_int_ge(nl, 0);
            size_t size = strtoul(c->buf, NULL, 16);
            size_t frame = (size_t)nl + 2 + size + 2;
            ck_assert(cl_need(c, frame));
            ck_assert(c->buf[frame - 2] == '\r' && c->buf[frame - 1] == '\n');
            ck_assert_uint_lt(r->raw_len + frame, sizeof r->raw);
            memcpy(r->raw + r->raw_len, c->buf, frame);
            r->raw_len += frame;
            ck_assert_uint_lt(r->body_len + size, sizeof r->body);
            memcpy(r->body + r->body_len, c->buf + nl + 2, size);
            r->body_len += size;
            cl_consume(c, frame);
            if (size == 0)
                break;
        }
    } else if (cl != NULL) {
        size_t n = strtoul(cl, NULL, 10);
        ck_assert_uint_lt(n, sizeof r->body);
        ck_assert(cl_need(c, n));
        memcpy(r->body, c->buf, n);
        r->body_len = n;
        cl_consume(c, n);
    } else {
        while (cl_fill(c) > 0) {
        }
        ck_assert_uint_lt(c->len, sizeof r->body);
        memcpy(r->body, c->buf, c->len);
        r->body_len = c->len;
        c->len = 0;
    }
    r->body[r->body_len] = '\0';
    return true;
}

/* The server closes: EOF (or a reset after it) within the receive timeout. */
static void cl_expect_eof(struct cl *c)
{
    char tmp[256];
    ck_assert_uint_eq(c->len, 0);
    ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "expected EOF, got %zd (%s)", n,
                  n < 0 ? strerror(errno) : "data");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void wait_for(atomic_int *v, int want)
{
    double until = now_ms() + 5000;
    while (atomic_load(v) < want) {
        ck_assert_msg(now_ms() < until, "timed out waiting for %d", want);
        usleep(1000);
    }
}

static struct resp R; /* client thread only */

/* ---- tests -------------------------------------------------------------------------------- */

static void client_get_post(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "GET /mcp?session=abc&x=1 HTTP/1.1\r\n"
               "Host: 127.0.0.1\r\n"
               "X-TEST:   padded value \t \r\n"
               "\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(resp_header(&R, "content-type"), "text/plain");
    ck_assert_str_eq(resp_header(&R, "x-path"), "/mcp");
    ck_assert_uint_eq(strtoul(resp_header(&R, "content-length"), NULL, 10), strlen(R.body));
    ck_assert_ptr_null(resp_header(&R, "connection"));
    ck_assert_str_eq(R.body, "[c1] GET /mcp ? session=abc&x=1 | host=<127.0.0.1> "
                             "x-test=<padded value> body(0)=<>\n");
    ck_assert(strncmp(R.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    cl_send(c, "POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
               "Content-Length: 15\r\n\r\n{\"jsonrpc\":\"2\"}");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(R.body, "[c1] POST /mcp ?  | host=<h> content-type=<application/json> "
                             "body(15)=<{\"jsonrpc\":\"2\"}>\n");
    cl_free(c);
}

START_TEST(get_and_post)
{
    run_tcp(NULL, client_get_post);
    ck_assert_int_eq(atomic_load(&H.n_req), 2);
}
END_TEST

static void client_keep_alive(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    cl_send(c, "GET /two HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "x-path"), "/two");
    /* Connection: close is honoured and announced. */
    cl_send(c, "GET /three HTTP/1.1\r\nConnection: close\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "connection"), "close");
    cl_expect_eof(c);
    cl_free(c);
    /* HTTP/1.0 closes by default ... */
    c = cl_tcp();
    cl_send(c, "GET /ten HTTP/1.0\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "connection"), "close");
    cl_expect_eof(c);
    cl_free(c);
    /* ... and keeps the connection with Connection: keep-alive. */
    c = cl_tcp();
    cl_send(c, "GET /ka1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "connection"), "keep-alive");
    cl_send(c, "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "x-path"), "/ka2");
    cl_free(c);
}

START_TEST(keep_alive)
{
    run_tcp(NULL, client_keep_alive);
    ck_assert_str_eq(H.log.data, "[c1] GET /one ?  | host=<h> body(0)=<>\n"
                                 "[c1] GET /two ?  | host=<h> body(0)=<>\n"
                                 "[c1] GET /three ?  | body(0)=<>\n"
                                 "[c2] GET /ten ?  | body(0)=<>\n"
                                 "[c3] GET /ka1 ?  | body(0)=<>\n"
                                 "[c3] GET /ka2 ?  | body(0)=<>\n");
}
END_TEST

static void client_pipelined(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "GET /a HTTP/1.1\r\n\r\n"
               "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
               "GET /c?q HTTP/1.1\r\n\r\n");
    const char *want[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        ck_assert(cl_response(c, &R));
        ck_assert_str_eq(resp_header(&R, "x-path"), want[i]);
    }
    cl_free(c);
}

START_TEST(pipelined)
{
    H.mode = MODE_DEFER;
    run_tcp(NULL, client_pipelined);
    ck_assert_int_eq(H.max_outstanding, 1); /* strictly one at a time */
    ck_assert_str_eq(H.log.data, "[c1] GET /a ?  | body(0)=<>\n"
                                 "[c1] POST /b ?  | body(3)=<xyz>\n"
                                 "[c1] GET /c ? q | body(0)=<>\n");
}
END_TEST

enum { MANY = 3000 };

static void *send_many(void *arg)
{
    struct cl *c = arg;
    /* ~450 KB of requests in one go: more than the server buffers while an answer is pending,
     * sent while the other thread reads (a client that does not read would block both ends). */
    struct core_buf b;
    core_buf_init(&b, 0);
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(core_buf_appendf(&b, "GET /r%d HTTP/1.1\r\nHost: h\r\nX-Pad: %0100d\r\n\r\n",
                                          i, i),
                         0);
    cl_send_n(c, b.data, b.len);
    core_buf_dispose(&b);
    return NULL;
}

static void client_many_pipelined(void)
{
    struct cl *c = cl_tcp();
    pthread_t sender;
    ck_assert_int_eq(pthread_create(&sender, NULL, send_many, c), 0);
    for (int i = 0; i < MANY; i++) {
        char path[32];
        snprintf(path, sizeof path, "/r%d", i);
        ck_assert(cl_response(c, &R));
        ck_assert_str_eq(resp_header(&R, "x-path"), path);
    }
    ck_assert_int_eq(pthread_join(sender, NULL), 0);
    cl_free(c);
}

START_TEST(many_pipelined)
{
    /* Answers come a loop iteration later, so the input buffer fills and reading pauses. */
    H.mode = MODE_DEFER;
    H.defer_ms = 0;
    run_tcp(NULL, client_many_pipelined);
    ck_assert_int_eq(atomic_load(&H.n_req), MANY);
    ck_assert_int_eq(H.max_outstanding, 1);
}
END_TEST

static void client_chunked_body(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n"
               "1;ext=1\r\n \r\n"
               "A\r\n0123456789\r\n"
               "0\r\nX-Trailer: t\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(R.body, "[c1] POST /up ?  | transfer-encoding=<chunked> "
                             "body(16)=<hello 0123456789>\n");
    /* The connection goes on after a chunked request; trailers are dropped and leave the body
     * (and its trailing blanks) alone. */
    cl_send(c, "POST /next HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Test: t\r\n\r\n"
               "4\r\nab \t\r\n0\r\nX-Test: trailer \r\nHost: late\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(R.body, "[c1] POST /next ?  | x-test=<t> transfer-encoding=<chunked> "
                             "body(4)=<ab \t>\n");
    /* HEAD gets the headers of the answer without its body. */
    cl_send(c, "HEAD /head HTTP/1.1\r\n\r\nGET /after-head HTTP/1.1\r\n\r\n");
    const char *e;
    while ((e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL) == NULL)
        ck_assert_int_gt(cl_fill(c), 0);
    ck_assert(strncmp(c->buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ck_assert_ptr_nonnull(memmem(c->buf, (size_t)(e - c->buf), "Content-Length: ", 16));
    cl_consume(c, (size_t)(e - c->buf) + 4);
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "x-path"), "/after-head");
    cl_free(c);
}

START_TEST(chunked_request)
{
    run_tcp(NULL, client_chunked_body);
}
END_TEST

static void expect_status_then_eof(const char *request, int status)
{
    struct cl *c = cl_tcp();
    cl_send(c, request);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, status);
    ck_assert_str_eq(resp_header(&R, "connection"), "close");
    ck_assert_str_eq(resp_header(&R, "content-type"), "text/plain; charset=utf-8");
    ck_assert_uint_gt(R.body_len, 0);
    cl_expect_eof(c);
    cl_free(c);
}

static void client_limits(void)
{
    /* Content-Length over max_body: 413 before any body byte is read. */
    expect_status_then_eof("POST /x HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413);
    ck_assert_str_eq(R.body, "Content Too Large\n");
    /* Exactly max_body is fine. */
    struct cl *c = cl_tcp();
    char body[1025];
    memset(body, 'b', 1024);
    body[1024] = '\0';
    cl_send(c, "POST /x HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
    cl_send(c, body);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    cl_free(c);
    /* Chunked over max_body, in small chunks, and one huge chunk header. */
    c = cl_tcp();
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(core_buf_append_str(&b, "100\r\n"), 0);
        for (int k = 0; k < 256; k++)
            ck_assert_int_eq(core_buf_append(&b, "z", 1), 0);
        ck_assert_int_eq(core_buf_append_str(&b, "\r\n"), 0);
    }
    ck_assert_int_eq(core_buf_append_str(&b, "0\r\n\r\n"), 0);
    cl_send_n(c, b.data, b.len);
    core_buf_dispose(&b);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 413);
    cl_expect_eof(c);
    cl_free(c);
    expect_status_then_eof("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFF\r\n", 413);
    /* Headers over max_header: 431, in one header or in many. */
    char big[2100];
    memset(big, 'h', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX-Big: ", 23);
    memcpy(big + sizeof big - 5, "\r\n\r\n", 5);
    expect_status_then_eof(big, 431);
    ck_assert_str_eq(R.body, "Request Header Fields Too Large\n");
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "GET / HTTP/1.1\r\n"), 0);
    for (int i = 0; i < 70; i++)
        ck_assert_int_eq(core_buf_appendf(&b, "X-%d: v\r\n", i), 0);
    ck_assert_int_eq(core_buf_append_str(&b, "\r\n"), 0);
    expect_status_then_eof(b.data, 431);
    core_buf_dispose(&b);
    /* A long URL counts too. */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'u', 1500);
    memcpy(big + 1505, " HTTP/1.1\r\n\r\n", 14);
    expect_status_then_eof(big, 431);
    /* Garbage and protocol errors: 400. */
    expect_status_then_eof("\x01\x02 garbage\r\n\r\n", 400);
    ck_assert_str_eq(R.body, "Bad Request\n");
    expect_status_then_eof("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400);
    expect_status_then_eof("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
    expect_status_then_eof("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400);
    /* Garbage after a good request on the same connection: the good one is answered first. */
    c = cl_tcp();
    cl_send(c, "GET /ok HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 400);
    cl_expect_eof(c);
    cl_free(c);
}

START_TEST(limits)
{
    struct tp_http_limits lim = {.max_body = 1024, .max_header = 1024, .idle_ms = 0};
    run_tcp(&lim, client_limits);
    ck_assert_int_eq(atomic_load(&H.n_req), 2);
}
END_TEST

/* Whitespace the parser skips without a callback still counts against max_header: every raw
 * byte of the request line and headers does (76 KiB of padding stays under libhttp-parser's
 * own 80 KiB limit, so only ours can catch it). */
static void client_padding(void)
{
    enum { PAD = 76 * 1024 };
    struct core_buf b;
    /* Blanks before a header value. */
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "GET /pad HTTP/1.1\r\nX-Pad:"), 0);
    for (int i = 0; i < PAD; i++)
        ck_assert_int_eq(core_buf_append(&b, i % 2 ? " " : "\t", 1), 0);
    ck_assert_int_eq(core_buf_append_str(&b, "v\r\n\r\n"), 0);
    expect_status_then_eof(b.data, 431);
    core_buf_dispose(&b);
    /* Obsolete line folding: continuation lines of blanks under an empty value. */
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "GET /fold HTTP/1.1\r\nX-Fold:\r\n"), 0);
    for (int i = 0; i < PAD / 1000; i++) {
        for (int k = 0; k < 998; k++)
            ck_assert_int_eq(core_buf_append(&b, " ", 1), 0);
        ck_assert_int_eq(core_buf_append_str(&b, "\r\n"), 0);
    }
    ck_assert_int_eq(core_buf_append_str(&b, "\r\n"), 0);
    expect_status_then_eof(b.data, 431);
    core_buf_dispose(&b);
    /* The same folding with a value on the last line. */
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "GET /fold2 HTTP/1.1\r\nX-Fold:\r\n"), 0);
    for (int i = 0; i < PAD / 1000; i++) {
        for (int k = 0; k < 998; k++)
            ck_assert_int_eq(core_buf_append(&b, "\t", 1), 0);
        ck_assert_int_eq(core_buf_append_str(&b, "\r\n"), 0);
    }
    ck_assert_int_eq(core_buf_append_str(&b, " tail\r\n\r\n"), 0);
    expect_status_then_eof(b.data, 431);
    core_buf_dispose(&b);
    /* A head of exactly max_header raw bytes passes, one more byte does not. */
    for (int extra = 0; extra <= 1; extra++) {
        static const char start[] = "GET /ok HTTP/1.1\r\nX-Pad:";
        static const char end[] = "v\r\n\r\n";
        core_buf_init(&b, 0);
        ck_assert_int_eq(core_buf_append_str(&b, start), 0);
        for (size_t i = 0; i < 16 * 1024 + (size_t)extra - (sizeof start - 1) - (sizeof end - 1);
             i++)
            ck_assert_int_eq(core_buf_append(&b, " ", 1), 0);
        ck_assert_int_eq(core_buf_append_str(&b, end), 0);
        ck_assert_uint_eq(b.len, 16 * 1024 + (size_t)extra);
        if (extra == 0) {
            struct cl *c = cl_tcp();
            cl_send_n(c, b.data, b.len);
            ck_assert(cl_response(c, &R));
            ck_assert_int_eq(R.status, 200);
            cl_free(c);
        } else {
            expect_status_then_eof(b.data, 431);
        }
        core_buf_dispose(&b);
    }
}

START_TEST(header_padding)
{
    run_tcp(NULL, client_padding);
    ck_assert_int_eq(atomic_load(&H.n_req), 1);
}
END_TEST

static void client_expect(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 100);
    ck_assert_str_eq(R.head, "HTTP/1.1 100 Continue\r\n\r\n");
    cl_send(c, "hello");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(R.body, "[c1] POST /e ?  | expect=<100-continue> body(5)=<hello>\n");
    /* Without a body there is no 100. */
    cl_send(c, "GET /e2 HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    cl_free(c);
    expect_status_then_eof("POST / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n",
                           417);
}

START_TEST(expect_continue)
{
    run_tcp(NULL, client_expect);
}
END_TEST

static void client_stream(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "GET /sse HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(resp_header(&R, "content-type"), "text/event-stream");
    ck_assert_str_eq(resp_header(&R, "cache-control"), "no-cache");
    ck_assert_str_eq(resp_header(&R, "transfer-encoding"), "chunked");
    ck_assert_str_eq(R.raw, "f\r\ndata: chunk 0\n\n\r\n"
                            "f\r\ndata: chunk 1\n\n\r\n"
                            "f\r\ndata: chunk 2\n\n\r\n"
                            "f\r\ndata: chunk 3\n\n\r\n"
                            "f\r\ndata: chunk 4\n\n\r\n"
                            "0\r\n\r\n");
    ck_assert_str_eq(R.body, "data: chunk 0\n\ndata: chunk 1\n\ndata: chunk 2\n\n"
                             "data: chunk 3\n\ndata: chunk 4\n\n");
    /* The connection goes on after the stream (which outlived idle_ms: not idle). */
    cl_send(c, "GET /sse2 HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_uint_gt(R.raw_len, 0);
    cl_free(c);
    /* HTTP/1.0: no chunked framing; the body ends with the connection. */
    c = cl_tcp();
    cl_send(c, "GET /old HTTP/1.0\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_ptr_null(resp_header(&R, "transfer-encoding"));
    ck_assert_str_eq(resp_header(&R, "connection"), "close");
    ck_assert_str_eq(R.body, "data: chunk 0\n\ndata: chunk 1\n\ndata: chunk 2\n\n"
                             "data: chunk 3\n\ndata: chunk 4\n\n");
    cl_free(c);
}

START_TEST(streaming)
{
    struct tp_http_limits lim = {.idle_ms = 100};
    H.mode = MODE_STREAM;
    H.stream_interval_ms = 40; /* 5 chunks: 240 ms > idle_ms */
    run_tcp(&lim, client_stream);
    ck_assert_int_eq(atomic_load(&H.n_answered), 3);
    ck_assert_int_eq(atomic_load(&H.n_close_cb), 0);
}
END_TEST

static void client_disconnect(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "POST /slow HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    wait_for(&H.n_req, 1);
    usleep(150 * 1000); /* longer than idle_ms: a pending request is not idle */
    cl_free(c);
    wait_for(&H.n_close_cb, 1);
    /* A stream that the client leaves. */
    H.mode = MODE_STREAM_HOLD;
    c = cl_tcp();
    cl_send(c, "GET /sse HTTP/1.1\r\n\r\n");
    ssize_t nl;
    do {
        nl = cl_line(c);
        ck_assert_int_ge(nl, 0);
        bool blank = nl == 0;
        cl_consume(c, (size_t)nl + 2);
        if (blank)
            break;
    } while (true);
    static const char first[] = "d\r\ndata: first\n\n\r\n";
    ck_assert(cl_need(c, sizeof first - 1));
    ck_assert(memcmp(c->buf, first, sizeof first - 1) == 0);
    cl_free(c);
    wait_for(&H.n_close_cb, 2);
    usleep(20 * 1000);
}

START_TEST(client_disconnect_pending)
{
    struct tp_http_limits lim = {.idle_ms = 100};
    H.mode = MODE_HOLD;
    run_tcp(&lim, client_disconnect);
    ck_assert_int_eq(atomic_load(&H.n_close_cb), 2); /* once each */
    ck_assert_ptr_null(H.held);
}
END_TEST

static void client_idle(void)
{
    struct cl *c = cl_tcp();
    double t0 = now_ms();
    cl_expect_eof(c); /* nothing sent: closed after idle_ms */
    double dt = now_ms() - t0;
    ck_assert_msg(dt >= 80 && dt < 3000, "idle close after %.0f ms", dt);
    cl_free(c);
    /* After an answer, the connection is idle again. */
    c = cl_tcp();
    cl_send(c, "GET / HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    t0 = now_ms();
    cl_expect_eof(c);
    dt = now_ms() - t0;
    ck_assert_msg(dt >= 80 && dt < 3000, "idle close after %.0f ms", dt);
    cl_free(c);
    /* Activity keeps it open: requests every 50 ms for 300 ms. */
    c = cl_tcp();
    for (int i = 0; i < 6; i++) {
        cl_send(c, "GET /still HTTP/1.1\r\n\r\n");
        ck_assert(cl_response(c, &R));
        ck_assert_int_eq(R.status, 200);
        usleep(50 * 1000);
    }
    cl_free(c);
}

START_TEST(idle_timeout)
{
    struct tp_http_limits lim = {.idle_ms = 100};
    run_tcp(&lim, client_idle);
    ck_assert_int_eq(atomic_load(&H.n_req), 7);
}
END_TEST

static void client_unix(void)
{
    struct cl *c = cl_unix(H.sock_path);
    cl_send(c, "GET /over-unix HTTP/1.1\r\nHost: localhost\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(R.body, "[c2 unix] GET /over-unix ?  | host=<localhost> body(0)=<>\n");
    cl_free(c);
}

START_TEST(unix_socket)
{
    /* A stale socket file (bound, then closed without unlink) is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", H.sock_path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    struct stat st;
    ck_assert_int_eq(stat(H.sock_path, &st), 0);
    mode_t old = umask(0);
    start_server(NULL, true);
    umask(old);
    ck_assert_int_eq(stat(H.sock_path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* A live socket is not taken over. */
    struct tp_http_server *other = tp_http_server_new(&H.loop, NULL, on_request, &H);
    ck_assert_int_eq(tp_http_server_listen_unix(other, H.sock_path), UV_EADDRINUSE);
    tp_http_server_close(other, NULL, NULL);
    ck_assert_int_eq(stat(H.sock_path, &st), 0); /* still ours */
    run_client(client_unix);
    /* Closing the server removed the socket file. */
    ck_assert_int_eq(stat(H.sock_path, &st), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

static void on_other_done(void *ctx)
{
    *(bool *)ctx = true;
}

START_TEST(unix_not_a_socket)
{
    FILE *f = fopen(H.sock_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious", f);
    fclose(f);
    bool done = false;
    struct tp_http_server *srv = tp_http_server_new(&H.loop, NULL, on_request, &H);
    ck_assert_int_eq(tp_http_server_listen_unix(srv, H.sock_path), UV_EADDRINUSE);
    char toolong[200];
    memset(toolong, 'a', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = '\0';
    ck_assert_int_eq(tp_http_server_listen_unix(srv, toolong), UV_ENAMETOOLONG);
    ck_assert_int_eq(tp_http_server_listen_tcp(srv, "localhost", 0), UV_EINVAL);
    ck_assert_int_eq(tp_http_server_listen_tcp(srv, "127.0.0.1", 70000), UV_EINVAL);
    tp_http_server_close(srv, on_other_done, &done);
    ck_assert(!done); /* never from inside the call */
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert(done);
    struct stat st;
    ck_assert_int_eq(stat(H.sock_path, &st), 0);
    ck_assert(S_ISREG(st.st_mode)); /* untouched */
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
}
END_TEST

static void client_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)H.port)};
    sa.sin6_addr = in6addr_loopback;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return;
    }
    struct cl *c = calloc(1, sizeof *c);
    c->fd = fd;
    cl_timeouts(fd);
    cl_send(c, "GET /v6 HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
    cl_free(c);
}

START_TEST(port_zero_and_ipv6)
{
    H.srv = tp_http_server_new(&H.loop, NULL, on_request, &H);
    int rc = tp_http_server_listen_tcp(H.srv, "::1", 0);
    if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
        /* No IPv6 here: IPv4 port 0 is still checked. */
        ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    } else {
        ck_assert_int_eq(rc, 0);
    }
    H.port = tp_http_server_port(H.srv);
    ck_assert_int_gt(H.port, 0);
    ck_assert_int_lt(H.port, 65536);
    run_client(rc == 0 ? client_ipv6 : client_get_post);
}
END_TEST

static void client_server_close(void)
{
    struct cl *c = cl_tcp();
    struct cl *idle = cl_tcp();
    cl_send(c, "GET /held HTTP/1.1\r\n\r\n");
    wait_for(&H.n_req, 1);
    client_signal(); /* the loop closes the server now */
    cl_expect_eof(c);
    cl_expect_eof(idle);
    cl_free(c);
    cl_free(idle);
}

START_TEST(server_close_live)
{
    H.mode = MODE_HOLD;
    run_tcp(NULL, client_server_close);
    ck_assert_int_eq(atomic_load(&H.n_close_cb), 1);
}
END_TEST

static void client_gone(void)
{
    /* Many pipelined requests, then close without reading: the server writes into a dead
     * socket (EPIPE, no SIGPIPE) and goes on serving others. */
    for (int round = 0; round < 5; round++) {
        struct cl *c = cl_tcp();
        struct core_buf b;
        core_buf_init(&b, 0);
        for (int i = 0; i < 300; i++)
            ck_assert_int_eq(core_buf_append_str(&b, "GET /gone HTTP/1.1\r\n\r\n"), 0);
        cl_send_n(c, b.data, b.len);
        core_buf_dispose(&b);
        cl_free(c);
    }
    usleep(100 * 1000);
    struct cl *c = cl_tcp();
    cl_send(c, "GET /after HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_str_eq(resp_header(&R, "x-path"), "/after");
    cl_free(c);
}

START_TEST(peer_gone_while_writing)
{
    H.mode = MODE_ECHO;
    run_tcp(NULL, client_gone);
    ck_assert(signal(SIGPIPE, SIG_DFL) == SIG_IGN);
}
END_TEST

static void client_close_inside(void)
{
    struct cl *c = cl_tcp();
    cl_send(c, "GET /x HTTP/1.1\r\n\r\n");
    cl_expect_eof(c);
    cl_free(c);
}

START_TEST(respond_after_close)
{
    /* respond after the connection is closing (close callback not run yet): CORE_ECLOSED, the
     * request is released, and the close callback does not fire. */
    H.mode = MODE_CLOSE_RESPOND;
    run_tcp(NULL, client_close_inside);
    ck_assert_int_eq(H.respond_rc, CORE_ECLOSED);
    ck_assert_int_eq(atomic_load(&H.n_close_cb), 0);
}
END_TEST

START_TEST(stream_after_close)
{
    /* A stream started on a closing connection: CORE_ECLOSED, and the close callback fires. */
    H.mode = MODE_CLOSE_STREAM;
    run_tcp(NULL, client_close_inside);
    ck_assert_int_eq(H.stream_rc, CORE_ECLOSED);
    ck_assert_int_eq(atomic_load(&H.n_close_cb), 1);
}
END_TEST

/* ---- slow clients: deadlines and connection caps ------------------------------------------ */

/* Sends one byte every 20 ms (each would have moved the old idle deadline) until the server
 * answers or closes; returns the elapsed time in ms. */
static double trickle_until_answer(struct cl *c)
{
    double t0 = now_ms();
    while (now_ms() - t0 < 3000) {
        char ch = 'a';
        if (send(c->fd, &ch, 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(20 * 1000);
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
        if (n > 0)
            c->len += (size_t)n;
        if (n >= 0)
            break;
    }
    return now_ms() - t0;
}

static void client_slow_head(void)
{
    /* The head trickles in: the deadline counts from its first byte, not from the last. */
    struct cl *c = cl_tcp();
    cl_send(c, "GET /slow HTTP/1.1\r\nX-Trickle: ");
    double dt = trickle_until_answer(c);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 408);
    ck_assert_str_eq(resp_header(&R, "connection"), "close");
    ck_assert_msg(dt >= 250 && dt < 1500, "408 after %.0f ms", dt);
    cl_free(c);
    /* The body trickles in: body bytes keep the inactivity deadline (idle_ms) going, but the
     * request deadline still ends it. */
    c = cl_tcp();
    cl_send(c, "POST /slow HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    dt = trickle_until_answer(c);
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 408);
    ck_assert_msg(dt >= 550 && dt < 2000, "408 after %.0f ms", dt);
    cl_free(c);
    /* A body that stops arriving for idle_ms goes sooner. */
    c = cl_tcp();
    double t0 = now_ms();
    cl_send(c, "POST /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 408);
    dt = now_ms() - t0;
    ck_assert_msg(dt >= 150 && dt < 550, "408 after %.0f ms", dt);
    cl_free(c);
    /* Prompt requests are not affected, and neither are keep-alive gaps under idle_ms. */
    c = cl_tcp();
    for (int i = 0; i < 3; i++) {
        cl_send(c, "GET /fine HTTP/1.1\r\n\r\n");
        ck_assert(cl_response(c, &R));
        ck_assert_int_eq(R.status, 200);
        usleep(100 * 1000);
    }
    cl_free(c);
}

START_TEST(slow_request_deadlines)
{
    struct tp_http_limits lim = {.idle_ms = 200, .header_timeout_ms = 300,
                                 .request_timeout_ms = 600};
    run_tcp(&lim, client_slow_head);
    ck_assert_int_eq(atomic_load(&H.n_req), 3);
}
END_TEST

/* A client that completes a request at once and is trusted by the front. */
static void cl_trust(struct cl *c)
{
    cl_send(c, "GET /trust HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
}

static void cl_request_ok(struct cl *c)
{
    cl_send(c, "GET /ok HTTP/1.1\r\n\r\n");
    ck_assert(cl_response(c, &R));
    ck_assert_int_eq(R.status, 200);
}

static void client_untrusted_cap(void)
{
    /* Three slow connections fill the untrusted cap (connections are accepted in order). */
    struct cl *s1 = cl_tcp(), *s2 = cl_tcp(), *s3 = cl_tcp();
    cl_send(s2, "GET /partial HTTP/1.1\r\n");
    /* A fourth one makes room by closing the oldest, and gets its answer. */
    struct cl *good = cl_tcp();
    cl_expect_eof(s1);
    cl_trust(good);
    /* The others are still there. */
    cl_send(s2, "\r\n");
    ck_assert(cl_response(s2, &R));
    ck_assert_int_eq(R.status, 200);
    /* good no longer counts: one more fits, the next closes the oldest untrusted one (s2). */
    struct cl *s4 = cl_tcp();
    struct cl *s5 = cl_tcp();
    cl_expect_eof(s2);
    cl_request_ok(s3);
    cl_request_ok(s4);
    cl_request_ok(s5);
    cl_request_ok(good); /* trusted for life */
    cl_free(s1);
    cl_free(s2);
    cl_free(s3);
    cl_free(s4);
    cl_free(s5);
    cl_free(good);
}

START_TEST(untrusted_cap_evicts_oldest)
{
    struct tp_http_limits lim = {.idle_ms = 0, .max_untrusted = 3, .max_conns = 10};
    run_tcp(&lim, client_untrusted_cap);
}
END_TEST

/* Connects over TCP until the server answers (it may still be closing the connection that
 * made room); fails after 3 s. */
static struct cl *cl_tcp_served(void)
{
    for (int i = 0; i < 150; i++) {
        struct cl *c = cl_tcp();
        cl_send(c, "GET /again HTTP/1.1\r\n\r\n");
        if (cl_response(c, &R))
            return c;
        cl_free(c);
        usleep(20 * 1000);
    }
    ck_abort_msg("never served");
    return NULL;
}

static void client_total_cap(void)
{
    /* Trusted connections fill the total: a new one is closed at once ... */
    struct cl *t1 = cl_tcp(), *t2 = cl_tcp(), *t3 = cl_tcp();
    cl_trust(t1);
    cl_trust(t2);
    cl_trust(t3);
    struct cl *late = cl_tcp();
    cl_expect_eof(late);
    cl_free(late);
    late = cl_tcp();
    cl_expect_eof(late);
    cl_free(late);
    /* ... while the Unix socket, with its own cap, still serves. */
    struct cl *u1 = cl_unix(H.sock_path);
    cl_request_ok(u1);
    struct cl *u2 = cl_unix(H.sock_path);
    cl_request_ok(u2);
    struct cl *u3 = cl_unix(H.sock_path); /* over the Unix cap */
    cl_expect_eof(u3);
    cl_free(u3);
    cl_request_ok(t1);
    /* Room again once a connection goes. */
    cl_free(t3);
    struct cl *t4 = cl_tcp_served();
    /* At the total cap an untrusted connection (t4) makes room for a new one. */
    struct cl *t5 = cl_tcp();
    cl_expect_eof(t4);
    cl_request_ok(t5);
    /* The Unix budget is back too once a Unix client goes. */
    cl_free(u1);
    usleep(50 * 1000);
    u1 = cl_unix(H.sock_path);
    cl_request_ok(u1);
    cl_request_ok(u2);
    cl_free(t1);
    cl_free(t2);
    cl_free(t4);
    cl_free(t5);
    cl_free(u1);
    cl_free(u2);
}

START_TEST(total_cap_refuses)
{
    struct tp_http_limits lim = {.idle_ms = 0, .max_conns = 3, .max_unix_conns = 2};
    H.srv = tp_http_server_new(&H.loop, &lim, on_request, &H);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    ck_assert_int_eq(tp_http_server_listen_unix(H.srv, H.sock_path), 0);
    H.port = tp_http_server_port(H.srv);
    run_client(client_total_cap);
}
END_TEST

static void client_unix_beside_slow_tcp(void)
{
    /* Slow TCP connections at both caps do not touch the Unix socket's budget. */
    struct cl *slow[4];
    for (int i = 0; i < 4; i++) {
        slow[i] = cl_tcp();
        cl_send(slow[i], "GET /never-ends HTTP/1.1\r\n");
    }
    for (int i = 0; i < 3; i++) {
        struct cl *u = cl_unix(H.sock_path);
        cl_request_ok(u);
        cl_free(u);
    }
    struct cl *good = cl_tcp(); /* and a prompt TCP client still gets in */
    cl_request_ok(good);
    cl_free(good);
    for (int i = 0; i < 4; i++)
        cl_free(slow[i]);
}

START_TEST(unix_served_while_tcp_full)
{
    struct tp_http_limits lim = {.idle_ms = 0, .max_conns = 4, .max_untrusted = 4,
                                 .max_unix_conns = 1};
    H.srv = tp_http_server_new(&H.loop, &lim, on_request, &H);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    ck_assert_int_eq(tp_http_server_listen_unix(H.srv, H.sock_path), 0);
    H.port = tp_http_server_port(H.srv);
    run_client(client_unix_beside_slow_tcp);
}
END_TEST

/* ---- memory of a stalled stream ----------------------------------------------------------- */

enum { STALL_EVENTS = 10000 };

/* Reads what the server sent, running the loop, until `want` bytes of body arrived in `got`
 * (chunked framing removed) or 10 s passed. */
static void read_chunks(int fd, struct core_buf *raw, struct core_buf *got, size_t want)
{
    double until = now_ms() + 10000;
    size_t pos = 0;
    while (got->len < want) {
        ck_assert_msg(now_ms() < until, "stream stalled at %zu of %zu bytes", got->len, want);
        uv_run(&H.loop, UV_RUN_NOWAIT);
        char tmp[65536];
        ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n > 0)
            ck_assert_int_eq(core_buf_append(raw, tmp, (size_t)n), 0);
        /* Parse whole chunks. */
        for (;;) {
            const char *nl = memmem(raw->data + pos, raw->len - pos, "\r\n", 2);
            if (nl == NULL)
                break;
            size_t size = strtoul(raw->data + pos, NULL, 16);
            size_t frame = (size_t)(nl - (raw->data + pos)) + 2 + size + 2;
            if (raw->len - pos < frame)
                break;
            ck_assert_int_eq(core_buf_append(got, nl + 2, size), 0);
            pos += frame;
        }
    }
}

START_TEST(stalled_stream_costs_its_bytes)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    H.mode = MODE_STREAM_HOLD;
    H.srv = tp_http_server_new(&H.loop, NULL, on_request, &H);
    ck_assert_int_eq(tp_http_server_adopt_fd(H.srv, sv[0]), 0);
    static const char get[] = "GET /events HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(send(sv[1], get, sizeof get - 1, 0), (ssize_t)(sizeof get - 1));
    for (int i = 0; i < 1000 && H.held == NULL; i++)
        uv_run(&H.loop, UV_RUN_NOWAIT);
    ck_assert_ptr_nonnull(H.held);
    /* Read the head and the first event, so that what follows is the stream alone. */
    struct core_buf raw, got, want;
    core_buf_init(&raw, 0);
    core_buf_init(&got, 0);
    core_buf_init(&want, 0);
    double until = now_ms() + 5000;
    const char *end_of_head = NULL;
    while (end_of_head == NULL) {
        ck_assert(now_ms() < until);
        uv_run(&H.loop, UV_RUN_NOWAIT);
        char tmp[4096];
        ssize_t n = recv(sv[1], tmp, sizeof tmp, MSG_DONTWAIT);
        if (n > 0)
            ck_assert_int_eq(core_buf_append(&raw, tmp, (size_t)n), 0);
        end_of_head = raw.len > 0 ? memmem(raw.data, raw.len, "\r\n\r\n", 4) : NULL;
    }
    core_buf_consume(&raw, (size_t)(end_of_head - raw.data) + 4);
    ck_assert_int_eq(core_buf_append_str(&want, "data: first\n\n"), 0);
    /* The peer stops reading; the events keep coming, a few per loop iteration. */
    size_t written = 0, worst = 0;
    long live_before = core_alloc_live();
    for (int i = 0; i < STALL_EVENTS; i++) {
        char ev[64];
        int n = snprintf(ev, sizeof ev, "data: event %05d\n\n", i);
        uv_buf_t b = uv_buf_init(ev, (unsigned)n);
        ck_assert_int_eq(tp_http_stream_write(H.held, &b, 1), 0);
        ck_assert_int_eq(core_buf_append(&want, ev, (size_t)n), 0);
        written += (size_t)n;
        size_t q = tp_http_req_queued(H.held);
        ck_assert_uint_eq(tp_http_req_server_queued(H.held), q); /* the only connection */
        if (q > worst)
            worst = q;
        /* At most about twice the bytes, plus a few blocks (the head's, the first event's and
         * the one being filled). One block per event would be some 200 times the bytes. */
        ck_assert_msg(q <= 2 * written + 4 * 4096, "%zu bytes queued for %zu written", q,
                      written);
        if (i % 50 == 49)
            uv_run(&H.loop, UV_RUN_NOWAIT);
    }
    ck_assert_uint_gt(worst, written / 2); /* the peer really stalled */
    /* What is held is what tp_http_req_queued said: about one 4000-byte block per 4000 bytes,
     * not one per event. */
    long blocks = core_alloc_live() - live_before;
    ck_assert_msg(blocks <= (long)(written / 2000) + 8, "%ld blocks for %zu bytes", blocks,
                  written);
    ck_assert_uint_ge(tp_http_req_queued(H.held), (size_t)blocks * 4000);
    /* Everything arrives, in order, once the peer reads. */
    read_chunks(sv[1], &raw, &got, want.len);
    ck_assert_uint_eq(got.len, want.len);
    ck_assert(memcmp(got.data, want.data, want.len) == 0);
    for (int i = 0; i < 100 && tp_http_req_queued(H.held) > 0; i++)
        uv_run(&H.loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(tp_http_req_queued(H.held), 0);
    ck_assert_uint_eq(tp_http_req_server_queued(H.held), 0);
    /* The end of the stream still comes last. */
    tp_http_stream_end(H.held);
    H.held = NULL;
    until = now_ms() + 5000;
    while (raw.len < 5 || memcmp(raw.data + raw.len - 5, "0\r\n\r\n", 5) != 0) {
        ck_assert(now_ms() < until);
        uv_run(&H.loop, UV_RUN_NOWAIT);
        char tmp[4096];
        ssize_t n = recv(sv[1], tmp, sizeof tmp, MSG_DONTWAIT);
        if (n > 0)
            ck_assert_int_eq(core_buf_append(&raw, tmp, (size_t)n), 0);
    }
    core_buf_dispose(&raw);
    core_buf_dispose(&got);
    core_buf_dispose(&want);
    tp_http_server_close(H.srv, on_srv_done, &H);
    H.srv = NULL;
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert(H.server_done);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    close(sv[1]);
}
END_TEST

/* ---- splits, through a socketpair driven from the loop thread ----------------------------- */

static const char split_input[] =
    "POST /mcp?a=1&b=%20 HTTP/1.1\r\n"
    "Host: example\r\n"
    "Content-Type: application/json\r\n"
    "X-Test:  spaced  \r\n"
    "Content-Length: 27\r\n"
    "\r\n"
    "{\"jsonrpc\":\"2.0\",\"id\":\"x\"}\n"
    "POST /chunks HTTP/1.1\r\n"
    "transfer-encoding: chunked\r\n"
    "\r\n"
    "3\r\nabc\r\n"
    "10\r\n0123456789abcdef\r\n"
    "0\r\n\r\n"
    "GET http://example/abs/path?q=2#frag HTTP/1.1\r\n"
    "\r\n"
    "\r\n" /* a stray CRLF between requests is allowed */
    "OPTIONS * HTTP/1.1\r\n"
    "x-test: \r\n"
    "\r\n";

static const char split_want[] =
    "[c1 unix] POST /mcp ? a=1&b=%20 | host=<example> content-type=<application/json> "
    "x-test=<spaced> body(27)=<{\"jsonrpc\":\"2.0\",\"id\":\"x\"}\n>\n"
    "[c1 unix] POST /chunks ?  | transfer-encoding=<chunked> body(19)=<abc0123456789abcdef>\n"
    "[c1 unix] GET /abs/path ? q=2 | body(0)=<>\n"
    "[c1 unix] OPTIONS * ?  | x-test=<> body(0)=<>\n";

static void drain(int fd)
{
    char tmp[4096];
    while (recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {
    }
}

/* Feeds split_input in pieces chosen by next(), running the loop between pieces. */
static void feed_split(size_t (*next)(unsigned *state), unsigned seed)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    H.srv = tp_http_server_new(&H.loop, NULL, on_request, &H);
    ck_assert_int_eq(tp_http_server_adopt_fd(H.srv, sv[0]), 0);
    size_t n = sizeof split_input - 1;
    size_t off = 0;
    while (off < n) {
        size_t k = next(&seed);
        if (k > n - off)
            k = n - off;
        ck_assert_int_eq(send(sv[1], split_input + off, k, 0), (ssize_t)k);
        off += k;
        uv_run(&H.loop, UV_RUN_NOWAIT);
        uv_run(&H.loop, UV_RUN_NOWAIT);
        drain(sv[1]);
    }
    for (int i = 0; i < 100 && atomic_load(&H.n_req) < 4; i++) {
        uv_run(&H.loop, UV_RUN_NOWAIT);
        drain(sv[1]);
    }
    ck_assert_int_eq(atomic_load(&H.n_req), 4);
    ck_assert_str_eq(H.log.data, split_want);
    tp_http_server_close(H.srv, on_srv_done, &H);
    H.srv = NULL;
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert(H.server_done);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    close(sv[1]);
    /* Ready for the next round. */
    core_buf_reset(&H.log);
    atomic_store(&H.n_req, 0);
    H.server_done = false;
}

static size_t piece_whole(unsigned *s)
{
    GW_UNUSED(s);
    return SIZE_MAX;
}

static size_t piece_byte(unsigned *s)
{
    GW_UNUSED(s);
    return 1;
}

static size_t piece_random(unsigned *s)
{
    return 1 + (size_t)(rand_r(s) % 40);
}

START_TEST(request_splits)
{
    H.mode = MODE_ECHO;
    ck_assert_int_eq(uv_loop_close(&H.loop), 0); /* feed_split makes a loop per round */
    feed_split(piece_whole, 0);
    feed_split(piece_byte, 0);
    for (unsigned seed = 1; seed <= 30; seed++)
        feed_split(piece_random, seed);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, get_and_post);
    tcase_add_test(tc, keep_alive);
    tcase_add_test(tc, pipelined);
    tcase_add_test(tc, many_pipelined);
    tcase_add_test(tc, chunked_request);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, header_padding);
    tcase_add_test(tc, expect_continue);
    tcase_add_test(tc, streaming);
    tcase_add_test(tc, client_disconnect_pending);
    tcase_add_test(tc, idle_timeout);
    tcase_add_test(tc, unix_socket);
    tcase_add_test(tc, unix_not_a_socket);
    tcase_add_test(tc, port_zero_and_ipv6);
    tcase_add_test(tc, server_close_live);
    tcase_add_test(tc, peer_gone_while_writing);
    tcase_add_test(tc, respond_after_close);
    tcase_add_test(tc, stream_after_close);
    tcase_add_test(tc, request_splits);
    tcase_add_test(tc, slow_request_deadlines);
    tcase_add_test(tc, untrusted_cap_evicts_oldest);
    tcase_add_test(tc, total_cap_refuses);
    tcase_add_test(tc, unix_served_while_tcp_full);
    tcase_add_test(tc, stalled_stream_costs_its_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    core_log_set_level(getenv("GW_TEST_DEBUG") != NULL ? CORE_LOG_DEBUG : CORE_LOG_WARN);
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
