/* libFuzzer target: arbitrary bytes through a real server connection (one end of a socketpair
 * adopted with tp_http_server_adopt_fd), so the whole read -> parse -> dispatch -> answer ->
 * next request path runs, with the input split into pieces chosen by the first byte.
 *
 * First byte: bits 0-3 piece size (0 = whole input, else 1..15 bytes, scaled for long inputs),
 * bits 4-5 how requests are answered, bit 6 small limits, bit 7 idle timeout.
 * Second byte: a canned start put before the rest (so that an empty corpus gets deep quickly):
 * bits 0-2 pick it, bits 3-7 give a Content-Length. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "transports/http.h"

enum answer {
    ANS_ECHO,   /* respond at once */
    ANS_STREAM, /* chunked stream written and ended at once */
    ANS_DEFER,  /* respond from a timer on a later iteration */
    ANS_ODD,    /* odd statuses and headers */
};

static struct {
    enum answer ans;
    struct tp_http_req *held;
    uv_timer_t timer;
    unsigned sum; /* keeps the accessor results alive */
} F;

static void on_closed(void *ud, struct tp_http_req *req)
{
    (void)ud;
    if (F.held == req)
        F.held = NULL;
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    if (F.held != NULL) {
        struct tp_http_req *req = F.held;
        F.held = NULL;
        (void)tp_http_respond_simple(req, 200, "application/json", "{}");
    }
}

static void on_request(void *ctx, struct tp_http_req *req)
{
    (void)ctx;
    size_t blen;
    const char *body = tp_http_req_body(req, &blen);
    const char *path = tp_http_req_path(req);
    const char *query = tp_http_req_query(req);
    const char *host = tp_http_req_header(req, "HOST");
    F.sum += (unsigned)blen + (unsigned)strlen(path) + (unsigned)strlen(query) +
             (unsigned)strlen(tp_http_req_method(req)) + (host != NULL ? (unsigned)strlen(host) : 0);
    if (body[blen] != '\0')
        abort(); /* the body is NUL-terminated */
    if (blen > 0)
        F.sum += (unsigned char)body[blen - 1];
    tp_http_req_set_close_cb(req, on_closed, NULL);
    switch (F.ans) {
    case ANS_ECHO: {
        struct tp_http_header h[] = {{"Content-Type", "text/plain"}, {"X-Path", path}};
        uv_buf_t b[2] = {uv_buf_init((char *)body, (unsigned)blen), uv_buf_init("\n", 1)};
        (void)tp_http_respond(req, 200, h, 2, b, 2);
        break;
    }
    case ANS_STREAM: {
        struct tp_http_header h[] = {{"Content-Type", "text/event-stream"}};
        if (tp_http_stream_start(req, 200, h, 1) == 0) {
            uv_buf_t b[2] = {uv_buf_init("data: ", 6), uv_buf_init((char *)path, (unsigned)strlen(path))};
            (void)tp_http_stream_write(req, b, 2);
            (void)tp_http_stream_write(req, b, 0);
        }
        tp_http_stream_end(req);
        break;
    }
    case ANS_DEFER:
        F.held = req;
        (void)uv_timer_start(&F.timer, on_timer, 0, 0);
        break;
    case ANS_ODD: {
        struct tp_http_header h[] = {
            {"X-Bad", "a\r\nInjected: yes"}, {"Connection", blen % 2 ? "close" : "keep-alive"},
            {"Transfer-Encoding", "gzip"}, {"X-Query", query}};
        int status = blen % 3 == 0 ? 204 : blen % 3 == 1 ? 404 : 42;
        (void)tp_http_respond(req, status, h, 4, NULL, 0);
        break;
    }
    }
}

/* Canned starts; "#" stands for the Content-Length from the second byte. */
static const char *const prefixes[8] = {
    "",
    "GET /",
    "POST /mcp HTTP/1.1\r\nContent-Length: #\r\n\r\n",
    "POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET /mcp?x=1 HTTP/1.1\r\nHost: h\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: #\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
};

/* Writes the prefix into out; returns its length. */
static size_t put_prefix(uint8_t *out, uint8_t pre)
{
    size_t n = 0;
    for (const char *p = prefixes[pre & 7]; *p != '\0'; p++) {
        if (*p == '#')
            n += (size_t)snprintf((char *)out + n, 8, "%u", (unsigned)(pre >> 3));
        else
            out[n++] = (uint8_t)*p;
    }
    return n;
}

static void drain(int fd)
{
    char tmp[8192];
    while (recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {
    }
}

static void on_done(void *ctx)
{
    *(int *)ctx = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t ctl = data[0];
    uint8_t pre = data[1];
    data += 2;
    size -= 2;
    static uint8_t input[1 << 16];
    size_t plen = put_prefix(input, pre);
    if (size > sizeof input - plen)
        return 0;
    memcpy(input + plen, data, size);
    data = input;
    size += plen;
    core_log_set_level(CORE_LOG_ERROR);
    memset(&F, 0, sizeof F);
    F.ans = (enum answer)((ctl >> 4) & 3);
    size_t piece = ctl & 15;
    if (piece == 0)
        piece = size ? size : 1;
    else if (size > 512)
        piece *= 64;

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        abort();
    uv_timer_init(&loop, &F.timer);
    struct tp_http_limits lim = {.max_body = 4096, .max_header = 2048, .idle_ms = 0};
    if (ctl & 0x40) {
        lim.max_body = 16;
        lim.max_header = 64;
    }
    if (ctl & 0x80)
        lim.idle_ms = 1;
    struct tp_http_server *srv = tp_http_server_new(&loop, &lim, on_request, NULL);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (tp_http_server_adopt_fd(srv, sv[0]) != 0)
        abort();

    size_t off = 0;
    int stuck = 0;
    while (off < size && stuck < 1000) {
        size_t k = piece < size - off ? piece : size - off;
        ssize_t n = send(sv[1], data + off, k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            stuck = 0;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            break; /* the server closed the connection */
        } else {
            stuck++;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1]);
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 8; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1]);
    }
    int done = 0;
    tp_http_server_close(srv, on_done, &done);
    uv_close((uv_handle_t *)&F.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!done || F.held != NULL || uv_loop_close(&loop) != 0)
        abort();
    close(sv[1]);
    return 0;
}
