/* The bridge front: one downstream MCP session per `agentgate bridge` connection, carried as
 * newline-delimited JSON-RPC (the stdio framing) over the daemon's Unix socket. */
#include "federation/bridge_front.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/identity.h"
#include "core/alloc.h"
#include "core/frame.h"
#include "core/log.h"
#include "core/peer.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "transports/bridge_hello.h"

#define BRIDGE_MAX_FRAME (16u << 20)
/* A bridge whose output waits past this stops being read (back-pressure), and resumes below
 * half of it. Notifications are dropped earlier (FED_NOTIFY_STREAM_MAX) and the connection is
 * closed past FED_STREAM_HARD_MAX (the bridge reconnects and replays its session). */
#define BRIDGE_READ_PAUSE (8u << 20)

/* Connection states. */
enum bconn_state {
    BC_HELLO = 0, /* waiting for the hello line */
    BC_OPEN,      /* a session is attached; frames flow both ways */
    BC_CLOSING,   /* the pipe is closing; nothing more is read or written */
};

struct bconn {
    struct fed_gateway *gw;
    uv_pipe_t pipe;
    struct core_framer in;
    struct fed_session *s;
    enum bconn_state state;
    char client[64];
    bool uid_known; /* the peer's uid, from SO_PEERCRED at accept */
    uid_t uid;
    unsigned id;               /* for logs */
    struct bconn *prev, *next; /* every open connection, so shutdown can close them */
    size_t out_bytes;          /* allocated for writes not yet done */
    bool read_paused;          /* reading stopped until out_bytes drains */
    struct fed_drops drops;
    char who[24];              /* "bridge b12", for logs */
};

struct bwrite {
    uv_write_t req;
    size_t len;
    char data[];
};

static unsigned next_id;
static struct bconn *conns;

static void set_state(struct bconn *b, enum bconn_state st)
{
    static const char *const names[] = {"hello", "open", "closing"};
    core_log(CORE_LOG_DEBUG, "bridge", "b%u: %s -> %s", b->id, names[b->state], names[st]);
    b->state = st;
}

static void on_pipe_closed(uv_handle_t *h)
{
    struct bconn *b = h->data;
    /* The session ends only now, from the loop: a close may start inside one of its calls'
     * answers, which ending it there would free under the caller. */
    struct fed_session *s = b->s;
    b->s = NULL;
    if (s)
        fed_session_end(s); /* its calls are answered into the void: we are closed */
    core_framer_dispose(&b->in);
    core_free(b);
}

static void bconn_close(struct bconn *b)
{
    if (b->state == BC_CLOSING)
        return;
    set_state(b, BC_CLOSING);
    if (b->prev)
        b->prev->next = b->next;
    else if (conns == b)
        conns = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
    uv_close((uv_handle_t *)&b->pipe, on_pipe_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    struct bwrite *w = container_of(req, struct bwrite, req);
    /* Write callbacks run before the pipe's close callback: b is still there. */
    struct bconn *b = req->handle->data;
    size_t cost = sizeof *w + w->len;
    b->out_bytes -= cost;
    b->gw->backlog -= cost;
    if (status < 0 && status != UV_ECANCELED)
        core_log(CORE_LOG_DEBUG, "bridge", "write: %s", uv_strerror(status));
    core_free(w);
    if (b->state == BC_CLOSING || b->out_bytes > FED_NOTIFY_STREAM_MAX / 2)
        return;
    fed_backlog_drained(&b->drops, b->who);
    if (b->read_paused && b->out_bytes < BRIDGE_READ_PAUSE / 2) {
        b->read_paused = false;
        if (uv_read_start((uv_stream_t *)&b->pipe, on_alloc, on_read) != 0)
            bconn_close(b);
    }
}

/* Writes one frame (the parts, then "\n") with one copy and one uv_write. A droppable frame
 * (a notification or a server's request) is dropped when the bridge does not keep up; any
 * frame past the hard bound closes the connection instead of growing the daemon. */
static void send_frame(struct bconn *b, const uv_buf_t *bufs, unsigned n, bool droppable)
{
    if (b->state == BC_CLOSING)
        return;
    size_t len = 1;
    for (unsigned i = 0; i < n; i++)
        len += bufs[i].len;
    if (droppable && !fed_backlog_room(b->gw, b->out_bytes + len, FED_NOTIFY_STREAM_MAX, 0, &b->drops,
                                        b->who))
        return;
    if (b->out_bytes > FED_STREAM_HARD_MAX) {
        core_log(CORE_LOG_WARN, "bridge", "b%u: the bridge is not reading its answers (%zu bytes "
                 "waiting); closing", b->id, b->out_bytes);
        bconn_close(b);
        return;
    }
    struct bwrite *w = core_xmalloc(sizeof *w + len);
    size_t o = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(w->data + o, bufs[i].base, bufs[i].len);
        o += bufs[i].len;
    }
    /* Raw newlines can only be JSON whitespace here; the framing needs them gone. */
    for (size_t i = 0; i < o; i++)
        if (w->data[i] == '\n' || w->data[i] == '\r')
            w->data[i] = ' ';
    w->data[o] = '\n';
    w->len = len;
    uv_buf_t u = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&b->pipe, &u, 1, on_written);
    if (rc < 0) {
        core_free(w);
        core_log(CORE_LOG_DEBUG, "bridge", "b%u: write: %s", b->id, uv_strerror(rc));
        bconn_close(b);
        return;
    }
    b->out_bytes += sizeof *w + len;
    b->gw->backlog += sizeof *w + len;
    if (!b->read_paused && b->out_bytes > BRIDGE_READ_PAUSE) {
        /* Its answers pile up: stop taking requests until it reads them. */
        b->read_paused = true;
        (void)uv_read_stop((uv_stream_t *)&b->pipe); /* always 0 */
    }
}

static void send_error(struct bconn *b, int code, const char *msg)
{
    struct core_buf e;
    core_buf_init(&e, 0);
    if (fed_error_json(&e, "null", 4, code, msg) == 0) {
        uv_buf_t u = uv_buf_init(e.data, (unsigned)e.len);
        send_frame(b, &u, 1, false);
    }
    core_buf_dispose(&e);
}

/* ---- channels for the router -------------------------------------------------------------- */

static void call_message(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    (void)c;
    send_frame(ctx, bufs, n, true);
}

static void call_respond(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    (void)c;
    send_frame(ctx, bufs, n, false);
}

static const struct fed_call_ops call_ops = {.message = call_message, .respond = call_respond};

static void sess_notify(void *ctx, struct fed_session *s, const uv_buf_t *bufs, unsigned n)
{
    (void)s;
    send_frame(ctx, bufs, n, true);
}

static void sess_ended(void *ctx, struct fed_session *s)
{
    (void)s;
    struct bconn *b = ctx;
    if (b->s == NULL)
        return; /* we ended it ourselves */
    /* The gateway ended it (shutdown): the bridge sees EOF and reconnects. */
    b->s = NULL;
    bconn_close(b);
}

static const struct fed_session_ops sess_ops = {.notify = sess_notify, .ended = sess_ended};

/* ---- input ----------------------------------------------------------------------------- */

static void on_hello(struct bconn *b, const char *p, size_t n)
{
    cJSON *h = n <= TP_BRIDGE_HELLO_MAX ? cJSON_ParseWithLength(p, n) : NULL;
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(h, TP_BRIDGE_HELLO_KEY);
    cJSON *client = cJSON_GetObjectItemCaseSensitive(h, TP_BRIDGE_HELLO_CLIENT);
    if (!cJSON_IsNumber(ver) || ver->valueint != TP_BRIDGE_HELLO_VERSION) {
        core_log(CORE_LOG_WARN, "bridge", "b%u: bad hello; closing", b->id);
        send_error(b, -32600, "agentgate: expected the bridge hello {\"" TP_BRIDGE_HELLO_KEY "\":...}");
        cJSON_Delete(h);
        bconn_close(b);
        return;
    }
    const char *name = cJSON_IsString(client) ? client->valuestring : "";
    size_t nl = strnlen(name, sizeof b->client - 1);
    memcpy(b->client, name, nl);
    b->client[nl] = '\0';
    cJSON_Delete(h);
    struct auth_peer peer = {
        .is_unix = true, .uid_known = b->uid_known, .uid = b->uid, .name = b->client};
    const struct core_client_cfg *cc = NULL;
    const char *why = NULL;
    if (auth_identify(b->gw->cfg, b->gw->auth_override, &peer, &cc, &why) != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, TP_BRIDGE_REFUSED ": %.*s%s%s", (int)strcspn(why, "\n"), why,
                 b->client[0] ? " (client " : "", b->client[0] ? b->client : "");
        if (b->client[0])
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), ")");
        core_log(CORE_LOG_WARN, "bridge", "b%u: %s", b->id, msg);
        send_error(b, TP_BRIDGE_REFUSED_CODE, msg);
        bconn_close(b);
        return;
    }
    char full[300];
    b->s = fed_session_new(b->gw, cc, &sess_ops, b, full, sizeof full);
    if (b->s == NULL) {
        char msg[340];
        snprintf(msg, sizeof msg, TP_BRIDGE_REFUSED ": %s", full);
        send_error(b, TP_BRIDGE_REFUSED_CODE, msg);
        bconn_close(b);
        return;
    }
    set_state(b, BC_OPEN);
    core_log(CORE_LOG_INFO, "bridge", "b%u: client '%s' attached as session %.8s", b->id,
             b->client[0] ? b->client : "anonymous", b->s->id);
}

static void on_frame(void *ctx, const char *p, size_t n)
{
    struct bconn *b = ctx;
    if (b->state == BC_HELLO) {
        on_hello(b, p, n);
        return;
    }
    if (b->state != BC_OPEN || b->s == NULL)
        return;
    struct core_rpc_env env;
    if (core_rpc_scan(p, n, &env) != 0) {
        send_error(b, -32700, "Parse error");
        return;
    }
    struct fed_session *s = b->s;
    s->last_seen = fed_now(b->gw);
    switch (env.kind) {
    case CORE_RPC_REQUEST: {
        struct fed_call *c = fed_call_new(s, p, &env, &call_ops, b);
        fed_router_request(c, p, n, &env);
        break;
    }
    case CORE_RPC_NOTIFICATION:
        fed_router_notification(s, p, &env);
        break;
    case CORE_RPC_RESULT:
    case CORE_RPC_ERROR:
        fed_router_response(s, p, n, &env);
        break;
    default:
        send_error(b, -32600, "Invalid Request");
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct bconn *b = h->data;
    size_t got = 0;
    char *p = core_framer_space(&b->in, suggested < 65536 ? 65536 : suggested, &got);
    *buf = uv_buf_init(p, p ? (unsigned)got : 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct bconn *b = st->data;
    if (nread < 0) {
        if (nread != UV_EOF)
            core_log(CORE_LOG_DEBUG, "bridge", "b%u: read: %s", b->id, uv_strerror((int)nread));
        core_log(CORE_LOG_INFO, "bridge", "b%u: client '%s' detached", b->id, b->client);
        bconn_close(b);
        return;
    }
    if (nread == 0 || b->state == BC_CLOSING)
        return;
    int rc = core_framer_feed(&b->in, (size_t)nread, on_frame, b, 0);
    if (rc != 0 && b->state != BC_CLOSING) {
        core_log(CORE_LOG_WARN, "bridge", "b%u: frame over %u bytes; closing", b->id,
                 BRIDGE_MAX_FRAME);
        send_error(b, -32600, "frame too long");
        bconn_close(b);
        return;
    }
    if (b->state != BC_CLOSING)
        core_framer_trim(&b->in);
}

void fed_bridge_accept(struct fed_gateway *gw, int fd, const char *initial, size_t n)
{
    if (gw->shutting_down) {
        close(fd);
        return;
    }
    struct bconn *b = core_xcalloc(1, sizeof *b);
    b->gw = gw;
    b->id = ++next_id;
    snprintf(b->who, sizeof b->who, "bridge b%u", b->id);
    snprintf(b->client, sizeof b->client, "?");
    core_framer_init(&b->in, BRIDGE_MAX_FRAME);
    uv_pipe_init(gw->loop, &b->pipe, 0);
    b->pipe.data = b;
    int rc = uv_pipe_open(&b->pipe, fd);
    if (rc != 0) {
        core_log(CORE_LOG_WARN, "bridge", "cannot open the bridge stream: %s", uv_strerror(rc));
        close(fd);
        b->state = BC_CLOSING;
        uv_close((uv_handle_t *)&b->pipe, on_pipe_closed);
        return;
    }
    b->uid_known = core_peer_uid(fd, &b->uid) == 0;
    b->next = conns;
    if (conns)
        conns->prev = b;
    conns = b;
    core_log(CORE_LOG_DEBUG, "bridge", "b%u: connected", b->id);
    if (core_framer_push(&b->in, initial, n, on_frame, b) != 0) {
        send_error(b, -32600, "frame too long");
        bconn_close(b);
        return;
    }
    if (b->state == BC_CLOSING)
        return;
    rc = uv_read_start((uv_stream_t *)&b->pipe, on_alloc, on_read);
    if (rc != 0)
        bconn_close(b);
}

void fed_bridge_shutdown(struct fed_gateway *gw)
{
    struct bconn *b = conns, *next;
    for (; b; b = next) {
        next = b->next;
        if (b->gw == gw)
            bconn_close(b);
    }
}
