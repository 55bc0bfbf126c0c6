/* The legacy HTTP+SSE front (2024-11-05): GET /sse opens a session and its event stream, whose
 * first event names the POST endpoint; POST /message?sessionId=ID carries the client's
 * messages and is answered 202 at once. Every server message, responses included, goes out
 * as an SSE `message` event on the GET stream. */
#include "federation/sse_front.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "transports/http.h"
#include "transports/sse.h"

/* Idle streams get a comment this often, so proxies and clients keep them open. */
#define PING_MS 15000

/* The front's state of one legacy session. It lives from GET /sse until both the session has
 * ended and the ping timer has closed (the close callback frees it). The session ends when
 * the GET stream goes away; the stream ends when the session ends from the gateway side. */
struct sse_sess {
    struct fed_session *s;      /* NULL once the session has ended */
    struct tp_http_req *stream; /* the GET stream, or NULL once it closed or was ended */
    uv_timer_t ping;            /* keep-alive comments; closed when the session ends */
    char id[33];                /* for logs after the session is gone */
    struct fed_drops drops;
    char who[40];               /* "legacy SSE session 1a2b3c4d", for logs */
    bool overflow;              /* past the hard bound: the stream ends at the next ping tick */
};

static void on_ping(uv_timer_t *t);

static const struct fed_session_ops sess_ops;

/* Writes already encoded SSE bytes to the stream, unless it is gone or backed up. The one
 * stream carries everything here, responses too: a droppable message (a notification or a
 * server's request, or a ping) gives way when the client does not keep up; anything past the
 * hard bound ends the stream, and with it the session, instead of growing the daemon. */
static void stream_put(struct sse_sess *ss, const char *p, size_t n, const char *what,
                       bool droppable)
{
    if (ss->stream == NULL) {
        core_log(CORE_LOG_DEBUG, "sse", "%.8s: no stream; %s dropped", ss->id, what);
        return;
    }
    size_t mine = tp_http_req_queued(ss->stream);
    struct fed_gateway *gw = ss->s ? ss->s->gw : NULL;
    if (droppable && gw &&
        !fed_backlog_room(gw, mine, FED_NOTIFY_STREAM_MAX,
                           tp_http_req_server_queued(ss->stream), &ss->drops, ss->who))
        return;
    if (ss->overflow)
        return;
    if (mine > FED_STREAM_HARD_MAX) {
        /* Ended from the timer: this may run inside a call's answer, which ending the session
         * here would free under it. */
        core_log(CORE_LOG_WARN, "sse", "%.8s: the client is not reading its stream (%zu bytes "
                 "waiting); closing it", ss->id, mine);
        ss->overflow = true;
        uv_timer_start(&ss->ping, on_ping, 0, PING_MS);
        return;
    }
    if (mine <= FED_NOTIFY_STREAM_MAX / 2)
        fed_backlog_drained(&ss->drops, ss->who);
    uv_buf_t u = uv_buf_init((char *)p, (unsigned)n);
    (void)tp_http_stream_write(ss->stream, &u, 1);
}

/* Sends one JSON-RPC message (complete JSON text in pieces) as a `message` event. */
static void send_message(struct sse_sess *ss, const uv_buf_t *bufs, unsigned n, bool droppable)
{
    if (ss->stream == NULL)
        return;
    struct core_buf msg, ev;
    core_buf_init(&msg, 0);
    core_buf_init(&ev, 0);
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < n; i++)
        rc = core_buf_append(&msg, bufs[i].base, bufs[i].len);
    if (rc == 0)
        rc = tp_sse_encode(&ev, NULL, "message", msg.data, msg.len);
    if (rc == 0)
        stream_put(ss, ev.data, ev.len, "message", droppable);
    else
        core_log(CORE_LOG_WARN, "sse", "%.8s: message dropped: %s", ss->id, core_strerror(rc));
    core_buf_dispose(&msg);
    core_buf_dispose(&ev);
}

static void send_text(struct sse_sess *ss, const char *json)
{
    uv_buf_t u = uv_buf_init((char *)json, (unsigned)strlen(json));
    send_message(ss, &u, 1, false);
}

/* ---- lifetime -------------------------------------------------------------------------------- */

static void on_ping_close(uv_handle_t *h)
{
    struct sse_sess *ss = container_of((uv_timer_t *)h, struct sse_sess, ping);
    core_free(ss);
}

static void on_ping(uv_timer_t *t)
{
    struct sse_sess *ss = container_of(t, struct sse_sess, ping);
    if (ss->overflow) {
        if (ss->s) {
            ss->s->streams--;
            fed_session_end(ss->s); /* sess_ended ends the stream and closes the timer */
        }
        return;
    }
    struct core_buf b;
    core_buf_init(&b, 0);
    if (tp_sse_comment(&b, "ping") == 0)
        stream_put(ss, b.data, b.len, "ping", true);
    core_buf_dispose(&b);
}

/* The GET stream went away (the client disconnected): the session goes with it, since a
 * legacy client cannot reattach to it. */
static void on_stream_close(void *ud, struct tp_http_req *req)
{
    (void)req;
    struct sse_sess *ss = ud;
    ss->stream = NULL;
    core_log(CORE_LOG_DEBUG, "sse", "%.8s: stream closed by the client", ss->id);
    if (ss->s) {
        ss->s->streams--;
        fed_session_end(ss->s); /* calls sess_ended, which closes the timer */
    }
}

static void sess_notify(void *ctx, struct fed_session *s, const uv_buf_t *bufs, unsigned n)
{
    (void)s;
    send_message(ctx, bufs, n, true);
}

/* The session is ending (client gone, idle, or gateway shutdown): end the stream if it is
 * still open and release our state once the timer has closed. */
static void sess_ended(void *ctx, struct fed_session *s)
{
    (void)s;
    struct sse_sess *ss = ctx;
    ss->s = NULL;
    if (ss->stream) {
        struct tp_http_req *req = ss->stream;
        ss->stream = NULL;
        tp_http_req_set_close_cb(req, NULL, NULL);
        tp_http_stream_end(req);
    }
    uv_timer_stop(&ss->ping);
    uv_close((uv_handle_t *)&ss->ping, on_ping_close);
}

static const struct fed_session_ops sess_ops = {.notify = sess_notify, .ended = sess_ended};

/* ---- calls: everything goes to the session's stream ---------------------------------------- */

/* A call never outlives its session (fed_session_end answers every call before `ended`), so
 * the call's context is the session's state itself. */
static void call_message(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    (void)c;
    send_message(ctx, bufs, n, true);
}

static void call_respond(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    (void)c;
    send_message(ctx, bufs, n, false);
}

static const struct fed_call_ops call_ops = {.message = call_message, .respond = call_respond};

/* ---- GET /sse ------------------------------------------------------------------------------ */

static void handle_get(struct fed_gateway *gw, struct tp_http_req *req,
                       const struct core_client_cfg *client)
{
    const char *accept = tp_http_req_header(req, "Accept");
    if (accept && strstr(accept, "text/event-stream") == NULL && strstr(accept, "*/*") == NULL) {
        fed_http_status(req, 406, "GET /sse needs Accept: text/event-stream\n");
        return;
    }
    struct tp_http_header h[] = {
        {"Content-Type", "text/event-stream"},
        {"Cache-Control", "no-cache"},
        {"X-Accel-Buffering", "no"},
    };
    char why[300];
    struct fed_session *s = fed_session_new(gw, client, &sess_ops, NULL, why, sizeof why);
    if (s == NULL) {
        char text[320];
        snprintf(text, sizeof text, "%s\n", why);
        fed_http_status(req, 503, text);
        return;
    }
    if (tp_http_stream_start(req, 200, h, 3) != 0) {
        /* The connection is already gone; the close callback (none set) finishes the request. */
        s->ops = NULL;
        fed_session_end(s);
        return;
    }
    struct sse_sess *ss = core_xcalloc(1, sizeof *ss);
    uv_timer_init(gw->loop, &ss->ping);
    s->ops_ctx = ss;
    ss->s = s;
    ss->stream = req;
    snprintf(ss->id, sizeof ss->id, "%s", s->id);
    snprintf(ss->who, sizeof ss->who, "legacy SSE session %.8s", s->id);
    s->streams++;
    tp_http_req_set_close_cb(req, on_stream_close, ss);
    uv_timer_start(&ss->ping, on_ping, PING_MS, PING_MS);
    core_log(CORE_LOG_INFO, "sse", "%.8s: legacy SSE stream open on %s", s->id,
             tp_http_req_conn_name(req));

    char uri[64];
    snprintf(uri, sizeof uri, "/message?sessionId=%s", s->id);
    struct core_buf ev;
    core_buf_init(&ev, 0);
    if (tp_sse_encode(&ev, NULL, "endpoint", uri, strlen(uri)) == 0)
        stream_put(ss, ev.data, ev.len, "endpoint", false);
    core_buf_dispose(&ev);
}

/* ---- POST /message --------------------------------------------------------------------------- */

/* Copies the value of `sessionId` from the query string into out (NUL-terminated). Returns
 * false when it is absent, empty or longer than out allows. Session ids are hex, so no
 * percent-decoding is needed: an encoded one simply does not match any session. */
static bool query_session_id(const char *q, char *out, size_t cap)
{
    static const char key[] = "sessionId=";
    const size_t kl = sizeof key - 1;
    const char *p = q;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0) {
            size_t vl = len - kl;
            if (vl >= cap)
                return false;
            memcpy(out, p + kl, vl);
            out[vl] = '\0';
            return true;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

/* Hands one message to the router. Replies to requests go out on the stream later. */
static void dispatch_one(struct sse_sess *ss, const char *frame, size_t n,
                         const struct core_rpc_env *env)
{
    struct fed_session *s = ss->s;
    switch (env->kind) {
    case CORE_RPC_REQUEST: {
        struct fed_call *c = fed_call_new(s, frame, env, &call_ops, ss);
        fed_router_request(c, frame, n, env);
        return;
    }
    case CORE_RPC_NOTIFICATION:
        fed_router_notification(s, frame, env);
        return;
    case CORE_RPC_RESULT:
    case CORE_RPC_ERROR:
        fed_router_response(s, frame, n, env);
        return;
    default:
        send_text(ss, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                      "\"message\":\"Invalid Request\"}}");
        return;
    }
}

/* 2024-11-05 allowed batches: each element is dispatched on its own, and its reply arrives as
 * its own event. */
static void dispatch_batch(struct sse_sess *ss, const char *body, size_t len)
{
    size_t pos = 0;
    struct core_span el;
    int count = 0;
    /* The session may end while an element is dispatched; stop then. */
    while (ss->s && core_rpc_batch_next(body, len, &pos, &el) == 1) {
        count++;
        struct core_rpc_env env;
        if (core_rpc_scan(body + el.off, el.len, &env) != 0 || env.kind == CORE_RPC_BATCH)
            env.kind = CORE_RPC_INVALID;
        dispatch_one(ss, body + el.off, el.len, &env);
    }
    if (count == 0)
        send_text(ss, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                      "\"message\":\"Invalid Request: empty batch\"}}");
}

static void handle_post(struct fed_gateway *gw, struct tp_http_req *req,
                        const struct core_client_cfg *client)
{
    char sid[4096]; /* ours are 32 hex digits; anything longer simply matches no session */
    if (!query_session_id(tp_http_req_query(req), sid, sizeof sid)) {
        fed_http_status(req, 400, "Bad Request: sessionId is required\n");
        return;
    }
    struct fed_session *s = fed_session_find(gw, sid);
    /* Only our own sessions: a Streamable HTTP session has no stream here. */
    /* The session id in the URL is not a credential: the poster must be the same client. */
    bool same = s && (s->client == NULL ? client == NULL
                                        : client != NULL && strcmp(s->client, client->name) == 0);
    if (s == NULL || s->ops != &sess_ops || s->closing || !same) {
        fed_http_status(req, 404, "Session not found\n");
        return;
    }
    struct sse_sess *ss = s->ops_ctx;
    s->last_seen = fed_now(gw);
    size_t len;
    const char *body = tp_http_req_body(req, &len);
    struct core_rpc_env env;
    if (core_rpc_scan(body, len, &env) != 0) {
        fed_http_rpc_error(req, 400, -32700, "Parse error");
        return;
    }
    if (env.kind == CORE_RPC_INVALID) {
        fed_http_rpc_error(req, 400, -32600, "Invalid Request");
        return;
    }
    if (env.kind == CORE_RPC_BATCH)
        dispatch_batch(ss, body, len);
    else
        dispatch_one(ss, body, len, &env);
    (void)tp_http_respond_simple(req, 202, "text/plain; charset=utf-8", "Accepted");
}

void fed_sse_request(struct fed_gateway *gw, struct tp_http_req *req,
                     const struct core_client_cfg *client)
{
    const char *path = tp_http_req_path(req);
    const char *method = tp_http_req_method(req);
    bool is_sse = strcmp(path, "/sse") == 0;
    const char *want = is_sse ? "GET" : "POST";
    if (strcmp(method, want) != 0) {
        struct tp_http_header h[] = {{"Allow", want}};
        uv_buf_t u = uv_buf_init("Method not allowed\n", 19);
        (void)tp_http_respond(req, 405, h, 1, &u, 1);
        return;
    }
    if (is_sse)
        handle_get(gw, req, client);
    else
        handle_post(gw, req, client);
}
