/* HTTP/1.1 server: listeners, connections, request parsing (libhttp-parser) and responses.
 *
 * Life of a connection (one state enum, changed only by set_state):
 *   IDLE -> READING -> BUSY -> FLUSHING -> IDLE ...   keep-alive
 *                            \-> LINGER -> CLOSING      answer with Connection: close
 *   any state -> CLOSING                                 EOF, error, timeout, server close
 * A connection handles one request at a time: when a request is complete the parser is paused
 * and later bytes (pipelining) stay in the input buffer until the answer has been written.
 *
 * Slow clients: a request's line and headers must be complete header_timeout_ms after its
 * first byte, and the whole request request_timeout_ms after it; bytes do not move these
 * deadlines. Only body bytes keep an inactivity deadline (idle_ms) going, under the request
 * deadline. IDLE bytes that start no request (blank lines, a TLS handshake) do not extend the
 * idle deadline either. One lazy timer per connection serves all of it (see deadline_set).
 * TCP connections are capped in total and while not trusted (not yet authenticated by the
 * front); at the untrusted cap the oldest untrusted connection makes room, so slow attackers
 * churn among themselves while a client that completes its request at once gets in. The Unix
 * socket has its own cap.
 *
 * Memory: a connection embeds its only request object. Input buffers, request storage and
 * write blocks come from small per-server spare lists, so a keep-alive request/response cycle
 * does not allocate in steady state, and a connection waiting for its next request holds no
 * buffer at all. Streamed chunks that come while earlier writes are still on their way are
 * gathered into one tail block, submitted when those are done: a reader that stalls costs about
 * the bytes it has not read, not one block per chunk.
 *
 * TLS (tp_http_server_set_tls): every TCP connection then carries a tp_tls_conn. The read
 * callback fills its ciphertext buffer instead of `in`; tls_input decrypts into `in` and hands
 * the plaintext to the same parsing path. Every write goes through conn_write, which encrypts
 * the block and writes the ciphertext instead. */
#include "transports/http.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/peer.h"
#include "transports/bridge_hello.h"
#include "transports/tls.h"

#define MOD "http"

#define DEFAULT_MAX_BODY (4u * 1024 * 1024)
#define DEFAULT_MAX_HEADER (16u * 1024)
#define DEFAULT_IDLE_MS 60000
#define DEFAULT_HEADER_MS 10000
#define DEFAULT_REQUEST_MS 60000
#define DEFAULT_MAX_CONNS 512
#define DEFAULT_MAX_UNTRUSTED 64
#define DEFAULT_MAX_UNIX 256
#define MAX_TIMEOUT_MS (1ull << 40)
#define LISTEN_BACKLOG 1024
#define READ_CHUNK (64u * 1024)      /* bytes offered to one read() */
#define IN_LIMIT (128u * 1024)       /* unparsed input kept while a request is answered */
#define MAX_HEADERS 64               /* more header lines get 431 */
#define REQ_LINE_OVERHEAD 16         /* method, spaces, version, CRLF: counted in max_header */
#define LINGER_MS 2000               /* drain time after an answer that closes the connection */
#define WBLOCK_CAP 4000              /* data bytes of a pooled write block */
#define SPARE_WBLOCKS 128
#define SPARE_BUFS 32
#define STORE_KEEP (16u * 1024)      /* request storage larger than this is freed, not kept */
#define CAP_REPORT_MS 60000          /* refusals and evictions are logged at most this often */

enum conn_state {
    CONN_IDLE,     /* no request bytes yet; the idle deadline runs; no buffers held */
    CONN_READING,  /* a request is being received and parsed; the header or request deadline
                    * runs */
    CONN_BUSY,     /* the request is with the callback (pending or streaming); input is kept */
    CONN_FLUSHING, /* the answer is queued; its last write callback moves on to the next request */
    CONN_LINGER,   /* the last answer is queued with a shutdown; input is discarded until EOF */
    CONN_CLOSING,  /* uv_close was called on both handles; freed when both have closed */
};

static const char *const state_names[] = {"IDLE", "READING", "BUSY", "FLUSHING", "LINGER",
                                          "CLOSING"};

enum req_state {
    REQ_FREE,      /* not with the caller */
    REQ_PENDING,   /* handed to the request callback, not answered yet */
    REQ_STREAMING, /* a chunked answer was started and not ended */
};

enum hdr_phase {
    PH_NONE,  /* nothing of the request line parsed yet */
    PH_URL,   /* receiving the URL */
    PH_FIELD, /* receiving a header name */
    PH_VALUE, /* receiving a header value */
    PH_BODY,  /* headers done; trailers of a chunked body are counted and dropped */
    PH_DONE,  /* the request is complete (the parser is paused behind it) */
};

/* A TCP or Unix stream, seen as whichever libuv type a call wants. */
union stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

struct tp_http_req {
    enum req_state state;
    enum hdr_phase phase;
    tp_http_close_cb close_cb;
    void *close_ud;
    tp_http_drain_cb drain_cb; /* armed by tp_http_req_set_drain_cb, fired once */
    void *drain_ud;
    size_t drain_low;
    struct core_buf store; /* URL, header names and values, body; all NUL-terminated */
    size_t hdr_bytes;      /* request line + header bytes seen, for max_header */
    size_t body_len;
    size_t body_off;
    uint32_t url_off;
    uint32_t path_off;
    uint32_t query_off;
    unsigned n_hdrs;
    struct {
        uint32_t name;
        uint32_t value;
    } hdrs[MAX_HEADERS];
    const char *method;    /* static string from http_method_str */
    unsigned char http_minor;
    bool is_head;          /* HEAD: the answer carries no body */
    bool keep_alive;       /* from http_should_keep_alive at the end of the headers */
    bool chunked_out;      /* the streamed answer uses chunked framing (else close-delimited) */
    bool want_continue;    /* Expect: 100-continue with a body: answer 100 once the head passed */
};

struct tp_http_conn {
    union stream_handle h;
    uv_timer_t timer;       /* the deadline of the state (idle, header, request, linger) */
    uv_shutdown_t shutdown; /* used once, in LINGER */
    struct tp_http_server *srv;
    struct tp_http_conn *prev;
    struct tp_http_conn *next;
    struct tp_http_conn *uprev; /* the server's untrusted TCP connections, oldest first */
    struct tp_http_conn *unext;
    enum conn_state state;
    int handles_open;  /* of h and timer; freed when it reaches 0 */
    int err_status;    /* status for a request rejected inside a parser callback */
    bool is_unix;
    bool has_peer_uid; /* Unix socket: peer_uid holds the peer's uid (SO_PEERCRED) */
    uid_t peer_uid;
    bool read_paused;  /* reading stopped because the input buffer is full */
    bool peer_eof;     /* EOF seen while an answer was still being written */
    bool trusted;      /* a request was authenticated (tp_http_req_set_trusted); for life */
    struct tp_tls_conn *tls; /* NULL for plain HTTP (and always on the Unix socket) */
    uint64_t deadline;  /* loop time (ms) when the timer should act; UINT64_MAX = never */
    uint64_t timer_due; /* loop time the timer fires at while it is active (never after deadline) */
    uint64_t req_start; /* loop time of the current request's first byte */
    size_t head_raw;    /* raw bytes consumed while the request's head was incomplete */
    struct wblock *tail; /* streamed chunks gathered while writes are in flight; not submitted */
    size_t tail_len;
    unsigned n_inflight; /* write blocks submitted whose callback has not run */
    size_t out_bytes;    /* see tp_http_req_queued */
    http_parser parser;
    struct core_buf in; /* raw input; bytes before in_pos are parsed */
    size_t in_pos;
    char name[16];
    struct tp_http_req req;
};

struct wblock {
    uv_write_t w;
    struct wblock *next_free;
    size_t cap;       /* bytes in data */
    bool ends_answer; /* its callback moves the connection to the next request */
    char data[];
};

struct listener {
    union stream_handle h;
    struct tp_http_server *srv;
    struct listener *next;
    bool is_unix;
    bool closing;
    char *path; /* Unix socket path, owned */
    dev_t dev;  /* identity of the socket file we bound, so we only unlink our own */
    ino_t ino;
};

struct tp_http_server {
    uv_loop_t *loop;
    struct tp_http_limits limits;
    tp_http_request_cb cb;
    void *ctx;
    tp_http_raw_cb raw_cb; /* takes Unix-socket connections that do not speak HTTP */
    void *raw_ctx;
    struct tp_tls_config *tls; /* set: TCP connections speak TLS */
    uv_timer_t anchor; /* never started: a handle whose close makes server close asynchronous */
    struct listener *listeners;
    struct tp_http_conn *conns;
    size_t store_limit; /* of a request's storage: max_header + max_body + slack */
    uint64_t head_ms;   /* header deadline after a request's first byte: min(header, request) */
    unsigned n_tcp;     /* open (not closing) TCP connections */
    unsigned n_unix;    /* open Unix-socket connections */
    unsigned n_untrusted;              /* TCP connections on the untrusted list */
    struct tp_http_conn *untrusted;    /* oldest first */
    struct tp_http_conn *untrusted_last;
    unsigned long n_refused; /* refused at a cap since the last report */
    unsigned long n_evicted; /* untrusted ones closed to make room, likewise */
    uint64_t cap_report;     /* loop time of the last report; 0 = none yet */
    size_t out_bytes;   /* sum of the connections' out_bytes */
    int open_handles;  /* anchor and listeners not yet closed */
    unsigned next_id;
    bool closing;
    void (*done)(void *ctx);
    void *done_ctx;
    struct wblock *spare_wb;
    unsigned n_spare_wb;
    struct core_buf spare_in[SPARE_BUFS];
    unsigned n_spare_in;
    struct core_buf spare_store[SPARE_BUFS];
    unsigned n_spare_store;
};

static void conn_close(struct tp_http_conn *c);
static void conn_parse(struct tp_http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_input(struct tp_http_conn *c);
static int tls_flush(struct tp_http_conn *c, bool ends_answer);
static int tail_submit(struct tp_http_conn *c);
static void on_timer(uv_timer_t *t);

/* ---- small helpers ------------------------------------------------------------------------ */

static void set_state(struct tp_http_conn *c, enum conn_state s)
{
    if (c->state == s)
        return;
    core_log(CORE_LOG_DEBUG, MOD, "%s: %s -> %s", c->name, state_names[c->state], state_names[s]);
    c->state = s;
}

/* libuv wrote n bytes into the free tail handed out by on_alloc (see STYLE §7). core_buf has no
 * call for this, so the length is advanced here, keeping the NUL after the data. */
static void buf_commit(struct core_buf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_dec(char *p, uint64_t v)
{
    char tmp[20];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        *p++ = tmp[--i];
    return p;
}

static char *put_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    int i = 0;
    do {
        tmp[i++] = digits[v & 15];
        v >>= 4;
    } while (v);
    while (i)
        *p++ = tmp[--i];
    return p;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- spare lists -------------------------------------------------------------------------- */

static struct wblock *wblock_get(struct tp_http_server *srv, size_t n)
{
    struct wblock *wb;
    if (n <= WBLOCK_CAP && srv->spare_wb != NULL) {
        wb = srv->spare_wb;
        srv->spare_wb = wb->next_free;
        srv->n_spare_wb--;
    } else {
        size_t cap = n <= WBLOCK_CAP ? WBLOCK_CAP : n;
        wb = core_xmalloc(sizeof *wb + cap);
        wb->cap = cap;
    }
    wb->ends_answer = false;
    return wb;
}

/* What a block costs while it is queued: its capacity and its header. */
static size_t wblock_size(const struct wblock *wb)
{
    return sizeof *wb + wb->cap;
}

static void out_add(struct tp_http_conn *c, size_t n)
{
    c->out_bytes += n;
    c->srv->out_bytes += n;
}

static void out_sub(struct tp_http_conn *c, size_t n)
{
    assert(c->out_bytes >= n && c->srv->out_bytes >= n);
    c->out_bytes -= n;
    c->srv->out_bytes -= n;
}

static void wblock_put(struct tp_http_server *srv, struct wblock *wb)
{
    if (wb->cap == WBLOCK_CAP && srv->n_spare_wb < SPARE_WBLOCKS) {
        wb->next_free = srv->spare_wb;
        srv->spare_wb = wb;
        srv->n_spare_wb++;
    } else {
        core_free(wb);
    }
}

/* Gives the connection an input buffer (a spare one when there is one). */
static void in_acquire(struct tp_http_conn *c)
{
    struct tp_http_server *srv = c->srv;
    if (c->in.data == NULL && srv->n_spare_in > 0)
        c->in = srv->spare_in[--srv->n_spare_in];
}

/* Drops the input buffer once everything in it has been parsed (or discarded). */
static void in_release_if_consumed(struct tp_http_conn *c)
{
    struct tp_http_server *srv = c->srv;
    if (c->in.data == NULL || c->in_pos < c->in.len)
        return;
    c->in_pos = 0;
    core_buf_reset(&c->in);
    if (srv->n_spare_in < SPARE_BUFS && !srv->closing) {
        srv->spare_in[srv->n_spare_in++] = c->in;
        core_buf_init(&c->in, IN_LIMIT);
    } else {
        core_buf_dispose(&c->in);
    }
}

static void store_acquire(struct tp_http_conn *c)
{
    struct tp_http_server *srv = c->srv;
    if (c->req.store.data == NULL && srv->n_spare_store > 0)
        c->req.store = srv->spare_store[--srv->n_spare_store];
    core_buf_reset(&c->req.store);
}

static void store_release(struct tp_http_conn *c)
{
    struct tp_http_server *srv = c->srv;
    struct core_buf *st = &c->req.store;
    if (st->data == NULL)
        return;
    /* A buffer whose contents stayed below STORE_KEEP has a capacity below twice that. */
    if (st->len <= STORE_KEEP && srv->n_spare_store < SPARE_BUFS && !srv->closing) {
        core_buf_reset(st);
        srv->spare_store[srv->n_spare_store++] = *st;
        core_buf_init(st, srv->store_limit);
    } else {
        core_buf_dispose(st);
    }
}

/* ---- timer ------------------------------------------------------------------------------- */

static void conn_fail(struct tp_http_conn *c, int status);

/* Arms the timer to fire in ms, or in head_ms if that is sooner: a timer never due later than
 * head_ms ahead is due early enough for any header deadline set meanwhile (see deadline_set).
 * An idle connection therefore wakes up every head_ms, and on_timer arms it for the rest. */
static void timer_arm(struct tp_http_conn *c, uint64_t ms)
{
    if (ms > c->srv->head_ms)
        ms = c->srv->head_ms;
    c->timer_due = uv_now(c->srv->loop) + ms;
    (void)uv_timer_start(&c->timer, on_timer, ms, 0); /* cannot fail: open, callback set */
}

/* Moves the deadline of the current state. The timer is lazy: a deadline that moves later does
 * not touch it (when it fires early it is armed again for the rest), and one that moves earlier
 * re-arms it only if it would fire too late. Since the timer is never armed for more than
 * head_ms ahead (timer_arm), a new request's header deadline finds it due early enough: a
 * keep-alive request cycle costs no timer operation. */
static void deadline_set(struct tp_http_conn *c, uint64_t at)
{
    c->deadline = at;
    if (at == UINT64_MAX || (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= at))
        return;
    uint64_t now = uv_now(c->srv->loop);
    timer_arm(c, at > now ? at - now : 0);
}

/* The idle deadline, from now (IDLE). */
static void idle_start(struct tp_http_conn *c)
{
    uint64_t ms = c->srv->limits.idle_ms;
    deadline_set(c, ms != 0 ? uv_now(c->srv->loop) + ms : UINT64_MAX);
}

/* Body bytes arrived and the request is not complete yet: they may keep an inactivity deadline
 * (idle_ms) going, but never past the request deadline. */
static void body_progress(struct tp_http_conn *c)
{
    const struct tp_http_limits *lim = &c->srv->limits;
    uint64_t at = c->req_start + lim->request_timeout_ms;
    if (lim->idle_ms != 0 && uv_now(c->srv->loop) + lim->idle_ms < at)
        at = uv_now(c->srv->loop) + lim->idle_ms;
    deadline_set(c, at);
}

static void on_timer(uv_timer_t *t)
{
    struct tp_http_conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    switch (c->state) {
    case CONN_IDLE:
    case CONN_READING:
    case CONN_LINGER:
        if (now >= c->deadline) {
            core_log(CORE_LOG_DEBUG, MOD, "%s: timeout in %s", c->name, state_names[c->state]);
            if (c->state == CONN_READING)
                conn_fail(c, 408); /* slow request: say so, then close */
            else
                conn_close(c);
        } else if (c->deadline != UINT64_MAX) {
            timer_arm(c, c->deadline - now); /* early: the deadline moved later meanwhile */
        }
        break;
    case CONN_BUSY:
    case CONN_FLUSHING:
    case CONN_CLOSING:
        break; /* no deadline; the timer starts again when the connection has one */
    }
}

/* ---- connection life ---------------------------------------------------------------------- */

static void server_maybe_done(struct tp_http_server *srv);

static void on_conn_closed(uv_handle_t *h)
{
    struct tp_http_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct tp_http_server *srv = c->srv;
    struct tp_http_req *req = &c->req;
    if (req->state != REQ_FREE) {
        /* The caller still held the request: tell it, once. */
        req->state = REQ_FREE;
        if (req->close_cb != NULL)
            req->close_cb(req->close_ud, req);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    core_log(CORE_LOG_DEBUG, MOD, "%s: closed", c->name);
    if (c->tail != NULL) {
        /* Every write callback has run (libuv runs them before the close callback): only the
         * gathering block is left. */
        out_sub(c, wblock_size(c->tail));
        wblock_put(srv, c->tail);
    }
    assert(c->out_bytes == 0 && c->n_inflight == 0);
    tp_tls_conn_free(c->tls);
    core_buf_dispose(&c->in);
    core_buf_dispose(&req->store);
    core_free(c);
    server_maybe_done(srv);
}

static void untrusted_remove(struct tp_http_conn *c)
{
    struct tp_http_server *srv = c->srv;
    if (c->uprev != NULL)
        c->uprev->unext = c->unext;
    else
        srv->untrusted = c->unext;
    if (c->unext != NULL)
        c->unext->uprev = c->uprev;
    else
        srv->untrusted_last = c->uprev;
    c->uprev = NULL;
    c->unext = NULL;
    srv->n_untrusted--;
}

static void conn_close(struct tp_http_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    /* The caps count connections that are not closing: the handles go in this iteration. */
    if (c->is_unix) {
        c->srv->n_unix--;
    } else {
        c->srv->n_tcp--;
        if (!c->trusted)
            untrusted_remove(c);
    }
    set_state(c, CONN_CLOSING);
    uv_close(&c->h.handle, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct tp_http_conn *c = container_of(sr, struct tp_http_conn, shutdown);
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0 || c->peer_eof)
        conn_close(c);
}

/* The last answer is queued: send FIN after it, then read and drop input until the peer closes
 * (so unread request bytes do not turn our close into a reset that loses the answer). */
static void conn_linger(struct tp_http_conn *c)
{
    /* Gathered chunks go before the close_notify and the FIN. */
    if (tail_submit(c) != 0) {
        conn_close(c);
        return;
    }
    set_state(c, CONN_LINGER);
    c->in_pos = c->in.len;
    in_release_if_consumed(c);
    if (c->tls != NULL) {
        /* The body may end with the connection: close_notify tells it from a truncation. Input
         * is dropped undecrypted from now on (see tls_input). */
        tp_tls_conn_in_discard(c->tls);
        tp_tls_conn_close_notify(c->tls);
        if (tls_flush(c, false) != 0) {
            conn_close(c);
            return;
        }
    }
    if (uv_shutdown(&c->shutdown, &c->h.stream, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    deadline_set(c, uv_now(c->srv->loop) + LINGER_MS);
    if (c->read_paused) {
        c->read_paused = false;
        if (uv_read_start(&c->h.stream, on_alloc, on_read) != 0)
            conn_close(c);
    }
}

/* ---- writes ------------------------------------------------------------------------------- */

/* The answer is written: go on with the next request (already buffered or still to come). */
static void conn_next(struct tp_http_conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    http_parser_pause(&c->parser, 0);
    set_state(c, CONN_IDLE);
    c->req.phase = PH_NONE; /* the next head starts; bytes before it count towards it */
    c->head_raw = 0;
    idle_start(c);
    conn_parse(c);
    if (c->tls != NULL && tp_tls_conn_has_input(c->tls))
        tls_input(c); /* decrypted bytes that did not fit before */
    if (c->state == CONN_CLOSING)
        return;
    in_release_if_consumed(c);
    /* Reading resumes below the low-water mark. Bytes stay buffered only behind a complete
     * request, so a paused connection always has an answer coming that brings it here again. */
    if (c->read_paused && c->state != CONN_CLOSING && c->in.len - c->in_pos < IN_LIMIT / 2) {
        c->read_paused = false;
        if (uv_read_start(&c->h.stream, on_alloc, on_read) != 0)
            conn_close(c);
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct wblock *wb = container_of(w, struct wblock, w);
    struct tp_http_conn *c = w->handle->data;
    bool ends_answer = wb->ends_answer;
    c->n_inflight--;
    out_sub(c, wblock_size(wb));
    wblock_put(c->srv, wb);
    if (status < 0) {
        if (c->state != CONN_CLOSING)
            core_log(CORE_LOG_DEBUG, MOD, "%s: write failed: %s", c->name, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (ends_answer && c->state == CONN_FLUSHING) {
        conn_next(c);
        return;
    }
    /* The writes before the gathered chunks are done: the gathered ones follow them. */
    if (c->tail != NULL && c->n_inflight == 0 && c->state != CONN_CLOSING &&
        tail_submit(c) != 0) {
        conn_close(c);
        return;
    }
    struct tp_http_req *req = &c->req;
    if (req->drain_cb != NULL && req->state == REQ_STREAMING && c->state != CONN_CLOSING &&
        c->out_bytes <= req->drain_low) {
        tp_http_drain_cb cb = req->drain_cb;
        req->drain_cb = NULL;
        cb(req->drain_ud, req); /* last: it may write, end the stream or close */
    }
}

/* Writes one block as it is; returns 0 or the uv_write error (the block is released then). */
static int raw_write(struct tp_http_conn *c, struct wblock *wb, size_t len, bool ends_answer)
{
    wb->ends_answer = ends_answer;
    uv_buf_t b = uv_buf_init(wb->data, (unsigned)len);
    int rc = uv_write(&wb->w, &c->h.stream, &b, 1, on_write);
    if (rc < 0) {
        wblock_put(c->srv, wb);
        return rc;
    }
    c->n_inflight++;
    out_add(c, wblock_size(wb));
    return 0;
}

/* Writes the ciphertext the TLS state has queued (handshake messages, alerts, records) as one
 * block. Returns 0 or a uv_write error. */
static int tls_flush(struct tp_http_conn *c, bool ends_answer)
{
    size_t n = tp_tls_conn_out_len(c->tls);
    if (n == 0)
        return 0;
    struct wblock *wb = wblock_get(c->srv, n);
    size_t got = tp_tls_conn_out_take(c->tls, wb->data, n);
    return raw_write(c, wb, got, ends_answer);
}

/* Queues one block of the answer (encrypted first on a TLS connection); returns 0 or an error
 * code (the block is released either way on failure). */
static int conn_write(struct tp_http_conn *c, struct wblock *wb, size_t len, bool ends_answer)
{
    /* Whatever comes after gathered chunks goes after them. */
    int rc = tail_submit(c);
    if (rc != 0) {
        wblock_put(c->srv, wb);
        return rc;
    }
    if (c->tls == NULL)
        return raw_write(c, wb, len, ends_answer);
    rc = tp_tls_conn_write(c->tls, wb->data, len);
    wblock_put(c->srv, wb);
    if (rc != 0)
        return rc;
    /* A non-empty block always gives ciphertext, so ends_answer rides on a real write. */
    assert(len == 0 || tp_tls_conn_out_len(c->tls) > 0);
    return tls_flush(c, ends_answer);
}

/* Starts gathering streamed chunks in a new tail block with room for at least n bytes. */
static void tail_new(struct tp_http_conn *c, size_t n)
{
    c->tail = wblock_get(c->srv, n);
    c->tail_len = 0;
    out_add(c, wblock_size(c->tail));
}

/* Submits the gathered chunks (if any) behind everything queued before them. Returns 0 or an
 * error code (the block is released then). */
static int tail_submit(struct tp_http_conn *c)
{
    struct wblock *wb = c->tail;
    if (wb == NULL)
        return 0;
    c->tail = NULL;
    out_sub(c, wblock_size(wb)); /* counted again once submitted */
    return conn_write(c, wb, c->tail_len, false);
}

enum framing {
    FRAME_LENGTH,  /* Content-Length */
    FRAME_NONE,    /* no body allowed (204, 304) */
    FRAME_CHUNKED, /* Transfer-Encoding: chunked */
    FRAME_EOF,     /* the body ends with the connection (HTTP/1.0 stream) */
};

/* Headers the server writes itself; the caller's copies are dropped. */
static bool is_framing_header(const char *name)
{
    return strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
           strcasecmp(name, "connection") == 0;
}

/* A caller header that cannot break the framing (no CR/LF, a plain name). */
static bool header_is_safe(const struct tp_http_header *h)
{
    return h->name != NULL && h->value != NULL && h->name[0] != '\0' &&
           strpbrk(h->name, "\r\n: \t") == NULL && strpbrk(h->value, "\r\n") == NULL;
}

static bool wants_close(const struct tp_http_header *hdrs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hdrs[i].name != NULL && hdrs[i].value != NULL &&
            strcasecmp(hdrs[i].name, "connection") == 0 && strcasecmp(hdrs[i].value, "close") == 0)
            return true;
    }
    return false;
}

/* An upper bound of the bytes write_head produces. */
static size_t head_bound(int status, const struct tp_http_header *hdrs, size_t n)
{
    size_t sz = 128 + strlen(reason_phrase(status));
    for (size_t i = 0; i < n; i++) {
        if (header_is_safe(&hdrs[i]))
            sz += strlen(hdrs[i].name) + strlen(hdrs[i].value) + 4;
    }
    return sz;
}

static char *write_head(char *p, const struct tp_http_conn *c, int status,
                        const struct tp_http_header *hdrs, size_t n, enum framing fr,
                        uint64_t length, bool close)
{
    const char *reason = reason_phrase(status);
    p = put(p, "HTTP/1.1 ", 9);
    p = put_dec(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = put(p, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        const struct tp_http_header *h = &hdrs[i];
        if (!header_is_safe(h)) {
            core_log(CORE_LOG_WARN, MOD, "%s: dropped a response header with CR/LF", c->name);
            continue;
        }
        if (is_framing_header(h->name))
            continue;
        p = put(p, h->name, strlen(h->name));
        p = put(p, ": ", 2);
        p = put(p, h->value, strlen(h->value));
        p = put(p, "\r\n", 2);
    }
    switch (fr) {
    case FRAME_LENGTH:
        p = put(p, "Content-Length: ", 16);
        p = put_dec(p, length);
        p = put(p, "\r\n", 2);
        break;
    case FRAME_CHUNKED:
        p = put(p, "Transfer-Encoding: chunked\r\n", 28);
        break;
    case FRAME_NONE:
    case FRAME_EOF:
        break;
    }
    if (close)
        p = put(p, "Connection: close\r\n", 19);
    else if (c->req.http_minor == 0)
        p = put(p, "Connection: keep-alive\r\n", 24);
    return put(p, "\r\n", 2);
}

/* The request's answer is queued: linger and close, or wait for the write to finish. */
static void finish_answer(struct tp_http_conn *c, bool close)
{
    if (close)
        conn_linger(c);
    else
        set_state(c, CONN_FLUSHING);
}

/* Queues a whole answer in one write. Returns 0 or a uv_write error. */
static int queue_answer(struct tp_http_conn *c, int status, const struct tp_http_header *hdrs,
                        size_t n_hdrs, const uv_buf_t *body, unsigned n_body, bool close)
{
    bool no_body = status == 204 || status == 304;
    size_t blen = 0;
    if (!no_body) {
        for (unsigned i = 0; i < n_body; i++)
            blen += body[i].len;
    }
    /* A HEAD answer announces the length of the body it does not carry. */
    bool send_body = !no_body && !c->req.is_head;
    struct wblock *wb = wblock_get(c->srv, head_bound(status, hdrs, n_hdrs) + (send_body ? blen : 0));
    char *p = write_head(wb->data, c, status, hdrs, n_hdrs, no_body ? FRAME_NONE : FRAME_LENGTH,
                         blen, close);
    if (send_body) {
        for (unsigned i = 0; i < n_body; i++) {
            if (body[i].len > 0)
                p = put(p, body[i].base, body[i].len);
        }
    }
    return conn_write(c, wb, (size_t)(p - wb->data), true);
}

/* Rejects the request being read with a short text answer, then closes. */
static void conn_fail(struct tp_http_conn *c, int status)
{
    static const struct tp_http_header ctype = {"Content-Type", "text/plain; charset=utf-8"};
    char text[64];
    int n = snprintf(text, sizeof text, "%s\n", reason_phrase(status));
    uv_buf_t b = uv_buf_init(text, (unsigned)n);
    core_log(CORE_LOG_DEBUG, MOD, "%s: rejecting request with %d", c->name, status);
    c->req.is_head = false;
    store_release(c);
    if (queue_answer(c, status, &ctype, 1, &b, 1, true) != 0) {
        conn_close(c);
        return;
    }
    conn_linger(c);
}

static void send_continue(struct tp_http_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct wblock *wb = wblock_get(c->srv, sizeof line - 1);
    memcpy(wb->data, line, sizeof line - 1);
    /* A failed write shows up on the read side as well; the request goes on until then. */
    (void)conn_write(c, wb, sizeof line - 1, false);
}

/* ---- request parsing ---------------------------------------------------------------------- */

static int reject(struct tp_http_conn *c, int status)
{
    c->err_status = status;
    return -1;
}

/* Counts request-line and header bytes against max_header as the callbacks see them, which stops
 * a long head early inside one parser call. Bytes the parser skips without a callback (blanks,
 * folding) are not seen here: conn_parse checks the raw bytes as well. */
static int count_header(struct tp_http_conn *c, size_t n)
{
    if (c->req.hdr_bytes + n > c->srv->limits.max_header)
        return reject(c, 431);
    c->req.hdr_bytes += n;
    return 0;
}

static int store_append(struct tp_http_conn *c, const char *p, size_t n, int status)
{
    if (core_buf_append(&c->req.store, p, n) != 0)
        return reject(c, status);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct tp_http_conn *c = p->data;
    struct tp_http_req *req = &c->req;
    if (c->state == CONN_IDLE) {
        /* The request's first byte: its deadlines start now and do not move with later bytes. */
        set_state(c, CONN_READING);
        c->req_start = uv_now(c->srv->loop);
        deadline_set(c, c->req_start + c->srv->head_ms);
    }
    store_acquire(c);
    req->phase = PH_NONE;
    req->close_cb = NULL;
    req->close_ud = NULL;
    req->drain_cb = NULL;
    req->hdr_bytes = REQ_LINE_OVERHEAD;
    req->body_len = 0;
    req->body_off = 0;
    req->url_off = 0;
    req->path_off = 0;
    req->query_off = 0;
    req->n_hdrs = 0;
    req->keep_alive = false;
    req->want_continue = false;
    c->err_status = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct tp_http_conn *c = p->data;
    if (count_header(c, n) != 0)
        return -1;
    if (c->req.phase == PH_NONE) {
        c->req.url_off = (uint32_t)c->req.store.len;
        c->req.phase = PH_URL;
    }
    return store_append(c, at, n, 431);
}

/* Ends the URL or header line in progress: NUL-terminates it; values are trimmed. */
static int end_piece(struct tp_http_conn *c)
{
    struct tp_http_req *req = &c->req;
    switch (req->phase) {
    case PH_NONE:
        req->url_off = (uint32_t)req->store.len;
        return store_append(c, "", 1, 431);
    case PH_URL:
        return store_append(c, "", 1, 431);
    case PH_FIELD: /* a header with no value at all */
        if (store_append(c, "", 1, 431) != 0)
            return -1;
        req->hdrs[req->n_hdrs - 1].value = (uint32_t)req->store.len;
        return store_append(c, "", 1, 431);
    case PH_BODY:
    case PH_DONE:
        return 0;
    case PH_VALUE: {
        if (store_append(c, "", 1, 431) != 0)
            return -1;
        uint32_t off = req->hdrs[req->n_hdrs - 1].value;
        char *v = req->store.data + off;
        size_t len = req->store.len - 1 - off;
        while (len > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            len--;
            off++;
        }
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            v[--len] = '\0';
        req->hdrs[req->n_hdrs - 1].value = off;
        return 0;
    }
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct tp_http_conn *c = p->data;
    struct tp_http_req *req = &c->req;
    if (req->phase == PH_BODY)
        return count_header(c, n); /* a trailer */
    if (req->phase != PH_FIELD) {
        if (end_piece(c) != 0)
            return -1;
        if (req->n_hdrs == MAX_HEADERS)
            return reject(c, 431);
        if (count_header(c, 4) != 0) /* ": " and CRLF */
            return -1;
        req->hdrs[req->n_hdrs].name = (uint32_t)req->store.len;
        req->hdrs[req->n_hdrs].value = 0;
        req->n_hdrs++;
        req->phase = PH_FIELD;
    }
    if (count_header(c, n) != 0)
        return -1;
    return store_append(c, at, n, 431);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct tp_http_conn *c = p->data;
    struct tp_http_req *req = &c->req;
    if (req->phase == PH_BODY)
        return count_header(c, n); /* a trailer */
    if (req->phase == PH_FIELD) {
        if (store_append(c, "", 1, 431) != 0)
            return -1;
        req->hdrs[req->n_hdrs - 1].value = (uint32_t)req->store.len;
        req->phase = PH_VALUE;
    } else if (req->phase != PH_VALUE) {
        return reject(c, 400);
    }
    if (count_header(c, n) != 0)
        return -1;
    return store_append(c, at, n, 431);
}

/* Splits the stored URL in place into path and query (origin-form or absolute-form). */
static int split_url(struct tp_http_conn *c)
{
    struct tp_http_req *req = &c->req;
    char *d = req->store.data;
    size_t u = req->url_off;
    size_t end = u + strlen(d + u);
    size_t path = u;
    if (end > u && d[u] != '/' && d[u] != '*') {
        const char *sep = memmem(d + u, end - u, "://", 3);
        if (sep != NULL) {
            path = (size_t)(sep - d) + 3;
            while (path < end && d[path] != '/' && d[path] != '?' && d[path] != '#')
                path++;
        }
    }
    char *hash = memchr(d + path, '#', end - path);
    if (hash != NULL) {
        *hash = '\0';
        end = (size_t)(hash - d);
    }
    char *q = memchr(d + path, '?', end - path);
    if (q != NULL) {
        *q = '\0';
        req->query_off = (uint32_t)(q - d + 1);
    } else {
        req->query_off = (uint32_t)end; /* the NUL after the URL */
    }
    if (d[path] != '\0') {
        req->path_off = (uint32_t)path;
        return 0;
    }
    if (path == u) { /* an empty origin path cannot come from the parser; keep it empty */
        req->path_off = (uint32_t)path;
        return 0;
    }
    req->path_off = (uint32_t)req->store.len; /* absolute-form without a path means "/" */
    return store_append(c, "/", 2, 431);
}

static int on_headers_complete(http_parser *p)
{
    struct tp_http_conn *c = p->data;
    struct tp_http_req *req = &c->req;
    if (end_piece(c) != 0 || split_url(c) != 0)
        return -1;
    req->method = http_method_str((enum http_method)p->method);
    req->is_head = p->method == HTTP_HEAD;
    req->http_minor = (p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1)) ? 1 : 0;
    req->keep_alive = http_should_keep_alive(p) != 0;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body)
        return reject(c, 413);
    const char *expect = tp_http_req_header(req, "expect");
    if (expect != NULL && req->http_minor == 1) {
        if (strcasecmp(expect, "100-continue") != 0)
            return reject(c, 417);
        req->want_continue = (p->flags & F_CHUNKED) ||
                             ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
    }
    req->body_off = req->store.len;
    req->phase = PH_BODY;
    /* The parser stops here (before the head's last LF) so that conn_parse can check the raw
     * size of the head before anything is answered or the body is read. */
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct tp_http_conn *c = p->data;
    struct tp_http_req *req = &c->req;
    if (n > c->srv->limits.max_body - req->body_len)
        return reject(c, 413);
    req->body_len += n;
    return store_append(c, at, n, 413);
}

static int on_chunk_header(http_parser *p)
{
    struct tp_http_conn *c = p->data;
    if (p->content_length > c->srv->limits.max_body - c->req.body_len)
        return reject(c, 413);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct tp_http_conn *c = p->data;
    if (store_append(c, "", 1, 413) != 0) /* the body is NUL-terminated too */
        return -1;
    /* One request at a time: the parser stops here until the answer has been written. */
    c->req.phase = PH_DONE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

static void conn_dispatch(struct tp_http_conn *c)
{
    struct tp_http_req *req = &c->req;
    if (c->parser.upgrade)
        req->keep_alive = false; /* we speak no other protocol: answer, then close */
    req->state = REQ_PENDING;
    set_state(c, CONN_BUSY);
    core_log(CORE_LOG_DEBUG, MOD, "%s: %s %s", c->name, req->method, tp_http_req_path(req));
    c->srv->cb(c->srv->ctx, req);
}

/* Parses buffered input (IDLE or READING). Stops at a complete request, which goes to the
 * callback, or at an error, which is answered and closes the connection. Every byte consumed
 * while the request's head is incomplete counts against max_header, including the ones the
 * parser skips without a callback (whitespace padding, obsolete line folding). */
static void conn_parse(struct tp_http_conn *c)
{
    for (;;) {
        size_t avail = c->in.len - c->in_pos;
        if (avail == 0)
            return;
        bool in_head = c->req.phase < PH_BODY;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_pos,
                                       avail);
        c->in_pos += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (in_head && (e == HPE_OK || e == HPE_PAUSED)) {
            /* A head that just completed stopped before its last byte (on_headers_complete). */
            c->head_raw += n + (c->req.phase == PH_BODY ? 1 : 0);
            if (c->head_raw > c->srv->limits.max_header) {
                core_log(CORE_LOG_DEBUG, MOD, "%s: head over %zu bytes", c->name,
                         c->srv->limits.max_header);
                conn_fail(c, 431);
                return;
            }
        }
        if (e == HPE_PAUSED && c->req.phase == PH_DONE) {
            conn_dispatch(c);
            return;
        }
        if (e == HPE_PAUSED) {
            /* The head is complete and within the limit: on to the body. */
            if (c->req.want_continue)
                send_continue(c);
            http_parser_pause(&c->parser, 0);
            continue;
        }
        if (e == HPE_OK && n == avail) {
            if (c->req.phase == PH_BODY)
                body_progress(c); /* the rest of the body is still to come */
            return;
        }
        int status = c->err_status;
        if (status == 0)
            status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
        core_log(CORE_LOG_DEBUG, MOD, "%s: bad request: %s", c->name, http_errno_name(e));
        conn_fail(c, status);
        return;
    }
}

/* ---- reading ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_http_conn *c = h->data;
    GW_UNUSED(suggested);
    if (c->tls != NULL) {
        /* Ciphertext goes to the TLS state; a full buffer is back-pressure as below. */
        char *p;
        size_t n;
        if (tp_tls_conn_in_space(c->tls, READ_CHUNK, &p, &n) != 0)
            *buf = uv_buf_init(NULL, 0);
        else
            *buf = uv_buf_init(p, (unsigned)n);
        return;
    }
    in_acquire(c);
    if (c->in_pos > 0) {
        core_buf_consume(&c->in, c->in_pos);
        c->in_pos = 0;
    }
    size_t want = IN_LIMIT - c->in.len;
    if (want > READ_CHUNK)
        want = READ_CHUNK;
    if (want == 0 || core_buf_reserve(&c->in, want) != 0) {
        *buf = uv_buf_init(NULL, 0); /* full: on_read gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)want);
}

static void on_read_error(struct tp_http_conn *c, int err)
{
    switch (c->state) {
    case CONN_BUSY:
    case CONN_FLUSHING:
        if (err == UV_ENOBUFS) {
            /* Pipelined input filled the buffer while the answer is pending: back-pressure. */
            core_log(CORE_LOG_DEBUG, MOD, "%s: input full, reading paused", c->name);
            (void)uv_read_stop(&c->h.stream); /* always 0 */
            c->read_paused = true;
            return;
        }
        if (err == UV_EOF && c->state == CONN_FLUSHING) {
            /* The answer is on its way; close once it is written. */
            c->peer_eof = true;
            (void)uv_read_stop(&c->h.stream);
            return;
        }
        break;
    case CONN_LINGER:
        if (err == UV_EOF && uv_stream_get_write_queue_size(&c->h.stream) > 0) {
            c->peer_eof = true; /* on_shutdown closes once the answer is out */
            (void)uv_read_stop(&c->h.stream);
            return;
        }
        break;
    case CONN_IDLE:
    case CONN_READING:
    case CONN_CLOSING:
        break;
    }
    if (err != UV_EOF)
        core_log(CORE_LOG_DEBUG, MOD, "%s: read: %s", c->name, uv_strerror(err));
    conn_close(c);
}

/* A Unix-socket peer whose first byte is TP_BRIDGE_SNIFF ('{', which no HTTP method starts
 * with) speaks the bridge's line protocol (transports/bridge_hello.h), not HTTP: its descriptor (a duplicate) and the bytes read so far
 * go to the raw callback, and this connection closes. */
static void hand_over(struct tp_http_conn *c)
{
    uv_os_fd_t fd;
    int dupfd = -1;
    if (uv_fileno(&c->h.handle, &fd) == 0)
        dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dupfd < 0) {
        core_log(CORE_LOG_WARN, MOD, "%s: cannot hand the stream over: %s", c->name, strerror(errno));
    } else {
        core_log(CORE_LOG_DEBUG, MOD, "%s: not HTTP; handed over", c->name);
        c->srv->raw_cb(c->srv->raw_ctx, dupfd, c->in.data, c->in.len);
    }
    c->in_pos = c->in.len;
    conn_close(c);
}

/* New bytes were appended to `in`: parse them, keep them for later, or drop them. */
static void conn_input(struct tp_http_conn *c)
{
    switch (c->state) {
    case CONN_IDLE:
        if (c->is_unix && c->srv->raw_cb && c->in_pos == 0 &&
            c->in.data[0] == TP_BRIDGE_SNIFF) {
            hand_over(c);
            break;
        }
        conn_parse(c); /* bytes move no deadline; a request's first one starts its own */
        break;
    case CONN_READING:
        conn_parse(c);
        break;
    case CONN_BUSY:
    case CONN_FLUSHING:
        break; /* parsed once the answer is written */
    case CONN_LINGER:
    case CONN_CLOSING:
        c->in_pos = c->in.len; /* dropped */
        break;
    }
}

/* Decrypts buffered ciphertext into `in` and hands it on like plain input, until the TLS state
 * needs more ciphertext, or the connection holds its input (an answer is pending), or it
 * closes. Handshake output is written as it appears. Bounded by the ciphertext buffer. */
static void tls_input(struct tp_http_conn *c)
{
    for (;;) {
        if (c->state == CONN_BUSY || c->state == CONN_FLUSHING || c->state == CONN_CLOSING)
            return;
        if (c->state == CONN_LINGER) {
            /* Nothing more is read: drop the ciphertext, so the buffer never fills up. A peer's
             * close_notify goes with it; its FIN follows. */
            tp_tls_conn_in_discard(c->tls);
            return;
        }
        in_acquire(c);
        if (c->in_pos > 0) {
            core_buf_consume(&c->in, c->in_pos);
            c->in_pos = 0;
        }
        size_t room = IN_LIMIT - c->in.len;
        if (room > READ_CHUNK)
            room = READ_CHUNK;
        if (room == 0 || core_buf_reserve(&c->in, room) != 0)
            return; /* unreachable: IDLE and READING parse all they get */
        int n = tp_tls_conn_read(c->tls, c->in.data + c->in.len, room);
        if (tls_flush(c, false) != 0) {
            conn_close(c);
            return;
        }
        if (n == 0)
            return;
        if (n == CORE_ECLOSED) {
            on_read_error(c, UV_EOF); /* close_notify: as a TCP EOF */
            return;
        }
        if (n < 0) {
            conn_close(c); /* logged by the TLS module */
            return;
        }
        buf_commit(&c->in, (size_t)n);
        conn_input(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_http_conn *c = s->data;
    GW_UNUSED(buf);
    if (nread > 0) {
        if (c->tls != NULL) {
            tp_tls_conn_in_commit(c->tls, (size_t)nread);
            tls_input(c);
        } else {
            buf_commit(&c->in, (size_t)nread);
            conn_input(c);
        }
    } else if (nread < 0) {
        on_read_error(c, (int)nread);
    }
    in_release_if_consumed(c);
}

/* ---- connections and listeners ------------------------------------------------------------ */

static struct tp_http_conn *conn_new(struct tp_http_server *srv, bool is_unix)
{
    struct tp_http_conn *c = core_xcalloc(1, sizeof *c);
    /* Neither init can fail with these arguments (no flags, no socket created yet). */
    if (is_unix)
        (void)uv_pipe_init(srv->loop, &c->h.pipe, 0);
    else
        (void)uv_tcp_init(srv->loop, &c->h.tcp);
    (void)uv_timer_init(srv->loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->srv = srv;
    c->is_unix = is_unix;
    c->state = CONN_IDLE;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    core_buf_init(&c->in, IN_LIMIT);
    core_buf_init(&c->req.store, srv->store_limit);
    snprintf(c->name, sizeof c->name, "c%u", ++srv->next_id);
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    if (is_unix) {
        srv->n_unix++;
    } else {
        srv->n_tcp++;
        srv->n_untrusted++;
        c->uprev = srv->untrusted_last;
        if (c->uprev != NULL)
            c->uprev->unext = c;
        else
            srv->untrusted = c;
        srv->untrusted_last = c;
    }
    return c;
}

static int conn_start(struct tp_http_conn *c)
{
    if (c->is_unix) {
        uv_os_fd_t fd;
        if (uv_fileno(&c->h.handle, &fd) == 0)
            c->has_peer_uid = core_peer_uid(fd, &c->peer_uid) == 0;
    }
    if (!c->is_unix)
        (void)uv_tcp_nodelay(&c->h.tcp, 1); /* small answers must not wait for ACKs */
    if (!c->is_unix && c->srv->tls != NULL && tp_tls_conn_new(c->srv->tls, c->name, &c->tls) != 0)
        return UV_ENOMEM;
    int rc = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (rc != 0)
        return rc;
    idle_start(c);
    return 0;
}

/* A connection taken off the backlog only to be closed (libuv stops accepting until the pending
 * one is taken). */
struct refused {
    union stream_handle h;
    struct tp_http_server *srv;
};

static void on_refused_closed(uv_handle_t *h)
{
    struct refused *r = h->data;
    struct tp_http_server *srv = r->srv;
    core_free(r);
    srv->open_handles--;
    server_maybe_done(srv);
}

/* Counts a refusal or an eviction. The first of a burst is logged at once, the rest in one line a
 * minute: an attack must not turn into a log line per connection. */
static void cap_report(struct tp_http_server *srv, bool refused)
{
    if (refused)
        srv->n_refused++;
    else
        srv->n_evicted++;
    uint64_t now = uv_now(srv->loop);
    if (srv->cap_report != 0 && now - srv->cap_report < CAP_REPORT_MS)
        return;
    core_log(CORE_LOG_WARN, MOD,
             "connection limits reached (%u TCP, %u not authenticated yet, %u Unix; limits %u, "
             "%u, %u): %lu refused, %lu unauthenticated closed to make room%s",
             srv->n_tcp, srv->n_untrusted, srv->n_unix, srv->limits.max_conns,
             srv->limits.max_untrusted, srv->limits.max_unix_conns, srv->n_refused,
             srv->n_evicted, srv->cap_report != 0 ? " since the last report" : "");
    srv->cap_report = now;
    srv->n_refused = 0;
    srv->n_evicted = 0;
}

/* Accepts the pending connection and closes it at once. */
static void refuse(struct listener *l)
{
    struct tp_http_server *srv = l->srv;
    struct refused *r = core_xmalloc(sizeof *r);
    /* Cannot fail: no flags, and no socket is created yet. */
    if (l->is_unix)
        (void)uv_pipe_init(srv->loop, &r->h.pipe, 0);
    else
        (void)uv_tcp_init(srv->loop, &r->h.tcp);
    r->h.handle.data = r;
    r->srv = srv;
    srv->open_handles++;
    (void)uv_accept(&l->h.stream, &r->h.stream); /* a failure leaves nothing to close but r */
    uv_close(&r->h.handle, on_refused_closed);
    cap_report(srv, true);
}

/* Makes room for a new TCP connection by closing the oldest untrusted one. */
static void evict_untrusted(struct tp_http_server *srv)
{
    struct tp_http_conn *old = srv->untrusted;
    cap_report(srv, false); /* with the numbers that made it necessary */
    core_log(CORE_LOG_DEBUG, MOD, "%s: closed to make room", old->name);
    conn_close(old);
}

/* Applies the caps to a connection waiting on listener l. Returns false when it must be
 * refused. */
static bool admit(struct listener *l)
{
    struct tp_http_server *srv = l->srv;
    const struct tp_http_limits *lim = &srv->limits;
    if (l->is_unix)
        return srv->n_unix < lim->max_unix_conns;
    if (srv->n_untrusted < lim->max_untrusted && srv->n_tcp < lim->max_conns)
        return true;
    /* At either cap an untrusted connection makes room, so that the caps never lock out a client
     * that authenticates at once: only trusted connections fill the total. */
    if (srv->untrusted == NULL)
        return false;
    evict_untrusted(srv);
    return true;
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct listener *l = ls->data;
    struct tp_http_server *srv = l->srv;
    if (status < 0) {
        core_log(CORE_LOG_WARN, MOD, "accept: %s", uv_strerror(status));
        return;
    }
    if (srv->closing || l->closing)
        return;
    if (!admit(l)) {
        refuse(l);
        return;
    }
    struct tp_http_conn *c = conn_new(srv, l->is_unix);
    int rc = uv_accept(ls, &c->h.stream);
    if (rc == 0)
        rc = conn_start(c);
    if (rc != 0) {
        core_log(CORE_LOG_WARN, MOD, "%s: accept: %s", c->name, uv_strerror(rc));
        conn_close(c);
        return;
    }
    core_log(CORE_LOG_DEBUG, MOD, "%s: accepted (%s)", c->name, l->is_unix ? "unix" : "tcp");
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    struct tp_http_server *srv = l->srv;
    struct listener **pp = &srv->listeners;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    core_free(l->path);
    core_free(l);
    srv->open_handles--;
    server_maybe_done(srv);
}

static struct listener *listener_new(struct tp_http_server *srv, bool is_unix)
{
    struct listener *l = core_xcalloc(1, sizeof *l);
    /* Cannot fail: no flags, and no socket is created yet. */
    if (is_unix)
        (void)uv_pipe_init(srv->loop, &l->h.pipe, 0);
    else
        (void)uv_tcp_init(srv->loop, &l->h.tcp);
    l->h.handle.data = l;
    l->srv = srv;
    l->is_unix = is_unix;
    l->next = srv->listeners;
    srv->listeners = l;
    srv->open_handles++;
    return l;
}

/* Stops a listener; its socket file goes at once, but only if it is still the one we bound. */
static void listener_close(struct listener *l)
{
    if (l->closing)
        return;
    l->closing = true;
    if (l->path != NULL) {
        struct stat st;
        if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino &&
            unlink(l->path) != 0)
            core_log(CORE_LOG_WARN, MOD, "unlink %s: %s", l->path, strerror(errno));
    }
    uv_close(&l->h.handle, on_listener_closed);
}

int tp_http_server_listen_tcp(struct tp_http_server *srv, const char *host, int port)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    if (srv->closing || host == NULL || port < 0 || port > 65535)
        return UV_EINVAL;
    if (uv_ip4_addr(host, port, &addr.in4) != 0 && uv_ip6_addr(host, port, &addr.in6) != 0)
        return UV_EINVAL;
    struct listener *l = listener_new(srv, false);
    int rc = uv_tcp_bind(&l->h.tcp, &addr.sa, 0);
    if (rc == 0)
        rc = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        listener_close(l);
        return rc;
    }
    core_log(CORE_LOG_INFO, MOD, "listening on %s port %d", host, tp_http_server_port(srv));
    return 0;
}

int tp_http_server_port(const struct tp_http_server *srv)
{
    for (const struct listener *l = srv->listeners; l != NULL; l = l->next) {
        if (l->is_unix || l->closing)
            continue;
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) != 0)
            continue;
        if (ss.ss_family == AF_INET)
            return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6)
            return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

/* Removes a socket file nobody listens on; a live one (or a file that is no socket) is
 * UV_EADDRINUSE. */
static int clear_stale_socket(const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) != 0)
        return errno == ENOENT ? 0 : uv_translate_sys_error(errno);
    if (!S_ISSOCK(st.st_mode))
        return UV_EADDRINUSE;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int err = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : errno;
    close(fd);
    if (err == ECONNREFUSED) {
        core_log(CORE_LOG_INFO, MOD, "replacing stale socket %s", sa->sun_path);
        if (unlink(sa->sun_path) != 0 && errno != ENOENT)
            return uv_translate_sys_error(errno);
        return 0;
    }
    if (err == 0 || err == EAGAIN || err == EINPROGRESS)
        return UV_EADDRINUSE;
    return uv_translate_sys_error(err);
}

/* Binds fd at sa so that the socket file is never more open than 0600. */
static int bind_private(int fd, const struct sockaddr_un *sa)
{
#ifdef __linux__
    /* Linux gives the new file the socket inode's mode (minus umask). */
    if (fchmod(fd, 0600) != 0)
        return uv_translate_sys_error(errno);
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0)
        return uv_translate_sys_error(errno);
#else
    mode_t old = umask(0177);
    int err = bind(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : errno;
    umask(old);
    if (err != 0)
        return uv_translate_sys_error(err);
#endif
    /* Exactly 0600 whatever the umask was (a stricter umask would lock the owner out). */
    if (chmod(sa->sun_path, 0600) != 0) {
        int err2 = uv_translate_sys_error(errno);
        (void)unlink(sa->sun_path); /* ours, just made */
        return err2;
    }
    return 0;
}

int tp_http_server_listen_unix(struct tp_http_server *srv, const char *path)
{
    struct sockaddr_un sa;
    if (srv->closing || path == NULL || path[0] == '\0')
        return UV_EINVAL;
    size_t plen = strlen(path);
    if (plen >= sizeof sa.sun_path)
        return UV_ENAMETOOLONG;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, plen + 1);
    int rc = clear_stale_socket(&sa);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    rc = bind_private(fd, &sa);
    struct stat st;
    if (rc == 0 && stat(path, &st) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    struct listener *l = listener_new(srv, true);
    l->path = core_xstrdup(path);
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    rc = uv_pipe_open(&l->h.pipe, fd);
    if (rc != 0)
        close(fd); /* not taken by the handle */
    else
        rc = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        listener_close(l);
        return rc;
    }
    core_log(CORE_LOG_INFO, MOD, "listening on %s", path);
    return 0;
}

int tp_http_server_set_tls(struct tp_http_server *srv, const char *cert_pem_path,
                           const char *key_pem_path, char *err, size_t errlen)
{
    if (srv->closing || srv->conns != NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "TLS must be set before the server has connections");
        return CORE_EINVAL;
    }
    struct tp_tls_config *cfg;
    int rc = tp_tls_config_new(cert_pem_path, key_pem_path, &cfg, err, errlen);
    if (rc != 0)
        return rc;
    tp_tls_config_free(srv->tls);
    srv->tls = cfg;
    core_log(CORE_LOG_INFO, MOD, "TLS on: certificate %s", cert_pem_path);
    return 0;
}

void tp_http_server_set_raw_cb(struct tp_http_server *srv, tp_http_raw_cb cb, void *ctx)
{
    srv->raw_cb = cb;
    srv->raw_ctx = ctx;
}

int tp_http_server_adopt_fd(struct tp_http_server *srv, int fd)
{
    uv_handle_type t = uv_guess_handle(fd);
    if (srv->closing || (t != UV_TCP && t != UV_NAMED_PIPE)) {
        close(fd);
        return UV_EINVAL;
    }
    struct tp_http_conn *c = conn_new(srv, t == UV_NAMED_PIPE);
    int rc = t == UV_TCP ? uv_tcp_open(&c->h.tcp, fd) : uv_pipe_open(&c->h.pipe, fd);
    if (rc != 0)
        close(fd); /* not taken by the handle */
    else
        rc = conn_start(c);
    if (rc != 0) {
        conn_close(c);
        return rc;
    }
    return 0;
}

/* ---- server ------------------------------------------------------------------------------- */

/* A peer that goes away while we write must give EPIPE, not kill the daemon: libuv writes
 * without MSG_NOSIGNAL. A handler installed by the program is left alone. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGPIPE, &sa, NULL); /* cannot fail for SIGPIPE */
    }
}

struct tp_http_server *tp_http_server_new(uv_loop_t *loop, const struct tp_http_limits *limits,
                                          tp_http_request_cb cb, void *ctx)
{
    static uint32_t parser_max_header = HTTP_MAX_HEADER_SIZE;
    struct tp_http_server *srv = core_xcalloc(1, sizeof *srv);
    srv->loop = loop;
    srv->cb = cb;
    srv->ctx = ctx;
    if (limits != NULL)
        srv->limits = *limits;
    else
        srv->limits.idle_ms = DEFAULT_IDLE_MS;
    if (srv->limits.max_body == 0)
        srv->limits.max_body = DEFAULT_MAX_BODY;
    if (srv->limits.max_header == 0)
        srv->limits.max_header = DEFAULT_MAX_HEADER;
    if (srv->limits.max_header > UINT32_MAX / 2)
        srv->limits.max_header = UINT32_MAX / 2;
    if (srv->limits.header_timeout_ms == 0)
        srv->limits.header_timeout_ms = DEFAULT_HEADER_MS;
    if (srv->limits.request_timeout_ms == 0)
        srv->limits.request_timeout_ms = DEFAULT_REQUEST_MS;
    /* Deadlines are loop times plus these: keep the sums far from overflowing (35 years). */
    if (srv->limits.header_timeout_ms > MAX_TIMEOUT_MS)
        srv->limits.header_timeout_ms = MAX_TIMEOUT_MS;
    if (srv->limits.request_timeout_ms > MAX_TIMEOUT_MS)
        srv->limits.request_timeout_ms = MAX_TIMEOUT_MS;
    if (srv->limits.idle_ms > MAX_TIMEOUT_MS)
        srv->limits.idle_ms = MAX_TIMEOUT_MS;
    srv->head_ms = srv->limits.header_timeout_ms < srv->limits.request_timeout_ms
                       ? srv->limits.header_timeout_ms
                       : srv->limits.request_timeout_ms;
    if (srv->limits.max_conns == 0)
        srv->limits.max_conns = DEFAULT_MAX_CONNS;
    if (srv->limits.max_untrusted == 0)
        srv->limits.max_untrusted = DEFAULT_MAX_UNTRUSTED;
    if (srv->limits.max_unix_conns == 0)
        srv->limits.max_unix_conns = DEFAULT_MAX_UNIX;
    srv->store_limit = srv->limits.max_header + 4096;
    srv->store_limit += srv->limits.max_body < SIZE_MAX - srv->store_limit
                            ? srv->limits.max_body
                            : SIZE_MAX - srv->store_limit - 1;
    /* libhttp-parser has its own, process-wide header limit; it must not cut below ours, so it
     * only ever grows. Ours is enforced on the raw bytes by conn_parse, whatever this is. */
    if (srv->limits.max_header + 4096 > parser_max_header) {
        parser_max_header = (uint32_t)(srv->limits.max_header + 4096);
        http_parser_set_max_header_size(parser_max_header);
    }
    ignore_sigpipe();
    (void)uv_timer_init(loop, &srv->anchor); /* cannot fail */
    srv->anchor.data = srv;
    srv->open_handles = 1;
    return srv;
}

static void server_maybe_done(struct tp_http_server *srv)
{
    if (!srv->closing || srv->open_handles > 0 || srv->conns != NULL)
        return;
    while (srv->spare_wb != NULL) {
        struct wblock *wb = srv->spare_wb;
        srv->spare_wb = wb->next_free;
        core_free(wb);
    }
    while (srv->n_spare_in > 0)
        core_buf_dispose(&srv->spare_in[--srv->n_spare_in]);
    while (srv->n_spare_store > 0)
        core_buf_dispose(&srv->spare_store[--srv->n_spare_store]);
    tp_tls_config_free(srv->tls);
    void (*done)(void *) = srv->done;
    void *done_ctx = srv->done_ctx;
    core_log(CORE_LOG_DEBUG, MOD, "server closed");
    core_free(srv);
    if (done != NULL)
        done(done_ctx);
}

static void on_anchor_closed(uv_handle_t *h)
{
    struct tp_http_server *srv = h->data;
    srv->open_handles--;
    server_maybe_done(srv);
}

void tp_http_server_stop_accepting(struct tp_http_server *srv)
{
    for (struct listener *l = srv->listeners; l != NULL; l = l->next)
        listener_close(l);
}

void tp_http_server_close(struct tp_http_server *srv, void (*done)(void *ctx), void *ctx)
{
    if (srv == NULL || srv->closing)
        return;
    srv->closing = true;
    srv->done = done;
    srv->done_ctx = ctx;
    tp_http_server_stop_accepting(srv);
    for (struct tp_http_conn *c = srv->conns; c != NULL; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&srv->anchor, on_anchor_closed);
}

/* ---- requests ----------------------------------------------------------------------------- */

const char *tp_http_req_method(const struct tp_http_req *req)
{
    return req->method;
}

const char *tp_http_req_path(const struct tp_http_req *req)
{
    return req->store.data + req->path_off;
}

const char *tp_http_req_query(const struct tp_http_req *req)
{
    return req->store.data + req->query_off;
}

const char *tp_http_req_header(const struct tp_http_req *req, const char *name)
{
    for (unsigned i = 0; i < req->n_hdrs; i++) {
        if (strcasecmp(req->store.data + req->hdrs[i].name, name) == 0)
            return req->store.data + req->hdrs[i].value;
    }
    return NULL;
}

const char *tp_http_req_body(const struct tp_http_req *req, size_t *len)
{
    if (len != NULL)
        *len = req->body_len;
    return req->store.data + req->body_off;
}

bool tp_http_req_is_unix(const struct tp_http_req *req)
{
    const struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    return c->is_unix;
}

bool tp_http_req_peer_uid(const struct tp_http_req *req, uid_t *uid)
{
    const struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (c->has_peer_uid)
        *uid = c->peer_uid;
    return c->has_peer_uid;
}

const char *tp_http_req_conn_name(const struct tp_http_req *req)
{
    const struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    return c->name;
}

void tp_http_req_set_close_cb(struct tp_http_req *req, tp_http_close_cb cb, void *ud)
{
    req->close_cb = cb;
    req->close_ud = ud;
}

void tp_http_req_set_drain_cb(struct tp_http_req *req, tp_http_drain_cb cb, void *ud, size_t low)
{
    req->drain_cb = cb;
    req->drain_ud = ud;
    req->drain_low = low;
}

void tp_http_req_set_trusted(struct tp_http_req *req)
{
    struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (c->trusted || c->state == CONN_CLOSING)
        return; /* a closing connection is off the list already */
    c->trusted = true;
    if (!c->is_unix)
        untrusted_remove(c);
}

size_t tp_http_req_queued(const struct tp_http_req *req)
{
    const struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    return c->out_bytes;
}

size_t tp_http_req_server_queued(const struct tp_http_req *req)
{
    const struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    return c->srv->out_bytes;
}

int tp_http_respond(struct tp_http_req *req, int status, const struct tp_http_header *hdrs,
                    size_t n_hdrs, const uv_buf_t *body, unsigned n_body)
{
    struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (req->state != REQ_PENDING) {
        if (req->state == REQ_STREAMING)
            core_log(CORE_LOG_ERROR, MOD, "%s: respond on a streaming request", c->name);
        return CORE_ECLOSED;
    }
    req->state = REQ_FREE;
    if (c->state == CONN_CLOSING) {
        store_release(c);
        return CORE_ECLOSED;
    }
    if (status < 200 || status > 999) {
        core_log(CORE_LOG_ERROR, MOD, "%s: bad status %d, sending 500", c->name, status);
        status = 500;
    }
    bool close = !req->keep_alive || wants_close(hdrs, n_hdrs);
    /* The caller's headers may point into the request: build the answer before releasing it. */
    int rc = queue_answer(c, status, hdrs, n_hdrs, body, n_body, close);
    store_release(c);
    if (rc != 0) {
        conn_close(c);
        return CORE_ECLOSED;
    }
    core_log(CORE_LOG_DEBUG, MOD, "%s: answered %d", c->name, status);
    finish_answer(c, close);
    return 0;
}

int tp_http_respond_simple(struct tp_http_req *req, int status, const char *content_type,
                           const char *body)
{
    struct tp_http_header h = {"Content-Type", content_type};
    uv_buf_t b = uv_buf_init((char *)(body != NULL ? body : ""),
                             body != NULL ? (unsigned)strlen(body) : 0);
    return tp_http_respond(req, status, &h, content_type != NULL ? 1 : 0, &b, 1);
}

int tp_http_stream_start(struct tp_http_req *req, int status, const struct tp_http_header *hdrs,
                         size_t n_hdrs)
{
    struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (req->state != REQ_PENDING)
        return CORE_ECLOSED;
    req->state = REQ_STREAMING;
    if (c->state == CONN_CLOSING)
        return CORE_ECLOSED;
    if (status < 200 || status > 999 || status == 204 || status == 304)
        status = 500;
    /* HTTP/1.0 has no chunked framing: the body ends with the connection. */
    req->chunked_out = req->http_minor == 1;
    if (!req->chunked_out || req->is_head || wants_close(hdrs, n_hdrs))
        req->keep_alive = false;
    struct wblock *wb = wblock_get(c->srv, head_bound(status, hdrs, n_hdrs));
    char *p = write_head(wb->data, c, status, hdrs, n_hdrs,
                         req->chunked_out ? FRAME_CHUNKED : FRAME_EOF, 0, !req->keep_alive);
    if (conn_write(c, wb, (size_t)(p - wb->data), false) != 0) {
        conn_close(c); /* the close callback follows */
        return CORE_ECLOSED;
    }
    return 0;
}

int tp_http_stream_write(struct tp_http_req *req, const uv_buf_t *bufs, unsigned n)
{
    struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (req->state != REQ_STREAMING || c->state == CONN_CLOSING)
        return CORE_ECLOSED;
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += bufs[i].len;
    if (len == 0 || req->is_head)
        return 0; /* an empty chunk would end the stream; HEAD has no body */
    size_t need = len + 20; /* hex length and two CRLFs */
    if (c->tail != NULL && c->tail->cap - c->tail_len < need) {
        /* The tail is full: it queues behind the writes in flight, and another one starts. */
        if (tail_submit(c) != 0) {
            conn_close(c);
            return CORE_ECLOSED;
        }
    }
    /* While earlier writes are on their way (the kernel may not be taking them, or their
     * callbacks have not run yet), chunks are gathered into one tail block, submitted when
     * those writes are done: a stalled reader then costs about its bytes, not a block each. */
    if (c->tail == NULL && c->n_inflight > 0)
        tail_new(c, need);
    struct wblock *wb = c->tail != NULL ? c->tail : wblock_get(c->srv, need);
    char *start = wb == c->tail ? wb->data + c->tail_len : wb->data;
    char *p = start;
    if (req->chunked_out) {
        p = put_hex(p, len);
        p = put(p, "\r\n", 2);
    }
    for (unsigned i = 0; i < n; i++) {
        if (bufs[i].len > 0)
            p = put(p, bufs[i].base, bufs[i].len);
    }
    if (req->chunked_out)
        p = put(p, "\r\n", 2);
    if (wb == c->tail) {
        c->tail_len += (size_t)(p - start);
        return 0;
    }
    if (conn_write(c, wb, (size_t)(p - wb->data), false) != 0) {
        conn_close(c);
        return CORE_ECLOSED;
    }
    return 0;
}

void tp_http_stream_end(struct tp_http_req *req)
{
    struct tp_http_conn *c = container_of(req, struct tp_http_conn, req);
    if (req->state != REQ_STREAMING)
        return;
    req->state = REQ_FREE;
    store_release(c);
    if (c->state == CONN_CLOSING)
        return;
    if (!req->chunked_out || req->is_head) {
        conn_linger(c); /* FIN ends the body */
        return;
    }
    static const char last[] = "0\r\n\r\n";
    struct wblock *wb = wblock_get(c->srv, sizeof last - 1);
    memcpy(wb->data, last, sizeof last - 1);
    if (conn_write(c, wb, sizeof last - 1, true) != 0) {
        conn_close(c);
        return;
    }
    finish_answer(c, !req->keep_alive);
}
