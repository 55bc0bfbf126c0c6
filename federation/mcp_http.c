/* The MCP Streamable HTTP front: POST/GET/DELETE on /mcp mapped to sessions and calls. */
#include "federation/mcp_http.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include <strings.h>

#include "auth/identity.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/control.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "federation/sse_front.h"
#include "transports/http.h"
#include "transports/sse.h"

/* Unsolicited messages kept for a session while no GET stream is open (bytes allocated; the
 * queues of all sessions count in the gateway's total too). */
#define QUEUE_MAX_BYTES (256u << 10)

/* The front's state of a session: its GET stream and what waits for one. */
struct http_sess {
    struct fed_session *s;
    struct tp_http_req *stream; /* the open GET stream, or NULL */
    struct core_buf queue;      /* SSE-encoded events waiting for a stream */
    struct fed_drops drops;
    char who[40];               /* "session 1a2b3c4d", for logs */
};

/* One POST carrying a request: JSON unless something must be said before the response. */
struct http_call {
    struct tp_http_req *req; /* NULL once the client went away */
    struct fed_call *call;
    struct http_batch *batch;
    bool streaming;
    struct fed_drops drops;
};

/* A 2025-03-26 batch: the responses are collected and sent as one array. */
struct http_batch {
    struct tp_http_req *req;
    struct core_buf out;
    int outstanding;
    int responses;
    bool dispatching;
    struct fed_session *s;
};

static const char *const allowed_hosts[] = {"localhost", "127.0.0.1", "[::1]"};

/* Host "name[:port]" or an Origin "scheme://name[:port]" must name loopback. */
static bool host_ok(const char *h, bool origin)
{
    if (origin) {
        const char *p = strstr(h, "://");
        if (p == NULL)
            return false;
        size_t sl = (size_t)(p - h);
        if (!((sl == 4 && strncasecmp(h, "http", 4) == 0) ||
              (sl == 5 && strncasecmp(h, "https", 5) == 0)))
            return false;
        h = p + 3;
    }
    for (size_t i = 0; i < sizeof allowed_hosts / sizeof allowed_hosts[0]; i++) {
        size_t n = strlen(allowed_hosts[i]);
        if (strncasecmp(h, allowed_hosts[i], n) != 0)
            continue;
        const char *rest = h + n;
        if (*rest == '\0' || (origin && strcmp(rest, "/") == 0))
            return true;
        if (*rest != ':')
            continue;
        rest++;
        if (*rest == '\0')
            return false;
        while (*rest >= '0' && *rest <= '9')
            rest++;
        if (*rest == '\0' || (origin && strcmp(rest, "/") == 0))
            return true;
    }
    return false;
}

void fed_http_status(struct tp_http_req *req, int status, const char *text)
{
    (void)tp_http_respond_simple(req, status, "text/plain; charset=utf-8", text);
}

void fed_http_rpc_error(struct tp_http_req *req, int status, int code, const char *msg)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    if (fed_error_json(&b, "null", 4, code, msg) == 0)
        (void)tp_http_respond_simple(req, status, "application/json", b.data);
    else
        fed_http_status(req, 500, "internal error\n");
    core_buf_dispose(&b);
}

static int concat(struct core_buf *b, const uv_buf_t *bufs, unsigned n)
{
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < n; i++)
        rc = core_buf_append(b, bufs[i].base, bufs[i].len);
    return rc;
}

/* ---- session channel: the GET stream ------------------------------------------------------ */

/* SSE-encodes the message parts into ev. */
static int sse_event(struct core_buf *ev, const uv_buf_t *bufs, unsigned n)
{
    struct core_buf msg;
    core_buf_init(&msg, 0);
    int rc = concat(&msg, bufs, n);
    if (rc == 0)
        rc = tp_sse_encode(ev, NULL, "message", msg.data, msg.len);
    core_buf_dispose(&msg);
    return rc;
}

/* Whether a notification may still be written to an open stream, counting what its connection
 * and every HTTP connection hold. */
static bool stream_room(struct fed_gateway *gw, struct tp_http_req *req, struct fed_drops *d,
                        const char *who)
{
    size_t mine = tp_http_req_queued(req);
    if (!fed_backlog_room(gw, mine, FED_NOTIFY_STREAM_MAX, tp_http_req_server_queued(req), d, who))
        return false;
    if (mine <= FED_NOTIFY_STREAM_MAX / 2)
        fed_backlog_drained(d, who);
    return true;
}

/* Empties a session's queue and gives its memory back. */
static void queue_clear(struct http_sess *hs)
{
    hs->s->gw->backlog -= hs->queue.cap;
    core_buf_dispose(&hs->queue);
    core_buf_init(&hs->queue, QUEUE_MAX_BYTES);
}

static void sess_notify(void *ctx, struct fed_session *s, const uv_buf_t *bufs, unsigned n)
{
    struct http_sess *hs = ctx;
    struct fed_gateway *gw = s->gw;
    if (hs->stream && !stream_room(gw, hs->stream, &hs->drops, hs->who))
        return;
    struct core_buf ev;
    core_buf_init(&ev, 0);
    if (sse_event(&ev, bufs, n) != 0) {
        core_buf_dispose(&ev);
        return;
    }
    if (hs->stream) {
        uv_buf_t u = uv_buf_init(ev.data, (unsigned)ev.len);
        (void)tp_http_stream_write(hs->stream, &u, 1);
    } else if (fed_backlog_room(gw, hs->queue.len + ev.len, QUEUE_MAX_BYTES, 0, &hs->drops,
                                 hs->who)) {
        /* No stream yet: kept for the next GET, within the session's and the total bound. */
        size_t cap = hs->queue.cap;
        if (core_buf_append(&hs->queue, ev.data, ev.len) == 0)
            gw->backlog += hs->queue.cap - cap;
    }
    core_buf_dispose(&ev);
}

static void sess_ended(void *ctx, struct fed_session *s)
{
    (void)s;
    struct http_sess *hs = ctx;
    if (hs->stream) {
        struct tp_http_req *req = hs->stream;
        hs->stream = NULL;
        tp_http_req_set_close_cb(req, NULL, NULL);
        tp_http_stream_end(req);
    }
    queue_clear(hs);
    core_buf_dispose(&hs->queue);
    core_free(hs);
}

static const struct fed_session_ops sess_ops = {.notify = sess_notify, .ended = sess_ended};

static void on_stream_close(void *ud, struct tp_http_req *req)
{
    (void)req;
    struct http_sess *hs = ud;
    hs->stream = NULL;
    hs->s->streams--;
    hs->s->last_seen = fed_now(hs->s->gw);
}

/* ---- call channel: the POST's response ------------------------------------------------------ */

static void hc_free(struct http_call *hc)
{
    core_free(hc);
}

static void on_call_req_close(void *ud, struct tp_http_req *req)
{
    (void)req;
    struct http_call *hc = ud;
    /* A disconnect is not a cancel (legacy HTTP): the upstream call runs to completion. */
    if (hc->call)
        fed_call_detach(hc->call);
    hc_free(hc);
}

/* Writes one message of the call to its stream (started if need be). Notifications and
 * server requests (`droppable`) give way when the client does not keep up; the response never
 * does, and one request's connection carries one response. */
static void call_write(struct http_call *hc, struct fed_call *c, const uv_buf_t *bufs, unsigned n,
                       bool droppable)
{
    if (hc->req == NULL)
        return;
    if (droppable && hc->streaming && !stream_room(c->sess->gw, hc->req, &hc->drops, "a POST stream"))
        return;
    if (!hc->streaming) {
        const char *tok = fed_session_token(c->sess);
        struct tp_http_header h[] = {
            {"Content-Type", "text/event-stream"},
            {"Cache-Control", "no-cache"},
            {"X-Accel-Buffering", "no"},
            {"Mcp-Session-Id", tok},
        };
        if (tp_http_stream_start(hc->req, 200, h, tok ? 4 : 3) != 0)
            return;
        hc->streaming = true;
    }
    struct core_buf ev;
    core_buf_init(&ev, 0);
    if (sse_event(&ev, bufs, n) == 0) {
        uv_buf_t u = uv_buf_init(ev.data, (unsigned)ev.len);
        (void)tp_http_stream_write(hc->req, &u, 1);
    }
    core_buf_dispose(&ev);
}

static void call_message(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    call_write(ctx, c, bufs, n, true);
}

static void call_respond(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    struct http_call *hc = ctx;
    struct tp_http_req *req = hc->req;
    if (req) {
        tp_http_req_set_close_cb(req, NULL, NULL);
        if (hc->streaming) {
            call_write(hc, c, bufs, n, false);
            tp_http_stream_end(req);
        } else {
            const char *tok = fed_session_token(c->sess);
            struct tp_http_header h[] = {
                {"Content-Type", "application/json"},
                {"Mcp-Session-Id", tok},
            };
            (void)tp_http_respond(req, 200, h, tok ? 2 : 1, bufs, n);
        }
    }
    hc_free(hc);
}

static const struct fed_call_ops call_ops = {.message = call_message, .respond = call_respond};

/* ---- batches ----------------------------------------------------------------------------- */

static void batch_maybe_finish(struct http_batch *b)
{
    if (b->dispatching || b->outstanding > 0)
        return;
    if (b->req) {
        tp_http_req_set_close_cb(b->req, NULL, NULL);
        if (b->responses == 0) {
            (void)tp_http_respond(b->req, 202, NULL, 0, NULL, 0);
        } else if (core_buf_append(&b->out, "]", 1) == 0) {
            const char *tok = fed_session_token(b->s);
            struct tp_http_header h[] = {{"Content-Type", "application/json"},
                                         {"Mcp-Session-Id", tok}};
            uv_buf_t u = uv_buf_init(b->out.data, (unsigned)b->out.len);
            (void)tp_http_respond(b->req, 200, h, tok ? 2 : 1, &u, 1);
        }
    }
    core_buf_dispose(&b->out);
    core_free(b);
}

static void batch_add(struct http_batch *b, const uv_buf_t *bufs, unsigned n)
{
    int rc = core_buf_append(&b->out, b->responses ? "," : "[", 1);
    if (rc == 0)
        rc = concat(&b->out, bufs, n);
    if (rc == 0)
        b->responses++;
}

static void on_batch_req_close(void *ud, struct tp_http_req *req)
{
    (void)req;
    struct http_batch *b = ud;
    b->req = NULL;
}

static void batch_message(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    /* A batch answers with one JSON array, so related messages go to the session's stream. */
    (void)ctx;
    fed_session_notify(c->sess, bufs, n);
}

static void batch_respond(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    (void)c;
    struct http_batch *b = ctx;
    batch_add(b, bufs, n);
    b->outstanding--;
    batch_maybe_finish(b);
}

static const struct fed_call_ops batch_ops = {.message = batch_message, .respond = batch_respond};

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Hands one message of a POST to the router. Returns true if it was a request (answered later
 * through the call), false if it was a notification or response (nothing to answer). */
static void dispatch_one(struct fed_session *s, const char *frame, size_t n,
                         const struct core_rpc_env *env, struct tp_http_req *req,
                         struct http_batch *batch, struct core_buf *errors)
{
    switch (env->kind) {
    case CORE_RPC_REQUEST: {
        struct fed_call *c;
        if (batch) {
            batch->outstanding++;
            c = fed_call_new(s, frame, env, &batch_ops, batch);
        } else {
            struct http_call *hc = core_xcalloc(1, sizeof *hc);
            hc->req = req;
            c = fed_call_new(s, frame, env, &call_ops, hc);
            hc->call = c;
            tp_http_req_set_close_cb(req, on_call_req_close, hc);
        }
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
        if (errors)
            (void)fed_error_json(errors, "null", 4, -32600, "Invalid Request");
        return;
    }
}

static void handle_batch(struct fed_session *s, struct tp_http_req *req, const char *body,
                         size_t len)
{
    if (strcmp(s->protocol_version, "2025-03-26") != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "JSON-RPC batches are not supported in protocol version %s",
                 s->protocol_version);
        fed_http_rpc_error(req, 400, -32600, msg);
        return;
    }
    struct http_batch *b = core_xcalloc(1, sizeof *b);
    b->req = req;
    b->dispatching = true;
    b->s = s;
    core_buf_init(&b->out, 0);
    tp_http_req_set_close_cb(req, on_batch_req_close, b);
    size_t pos = 0;
    struct core_span el;
    int count = 0;
    while (core_rpc_batch_next(body, len, &pos, &el) == 1) {
        count++;
        struct core_rpc_env env;
        /* Each element is scanned in place: spans are relative to `body`. */
        struct core_buf err;
        core_buf_init(&err, 0);
        if (core_rpc_scan(body + el.off, el.len, &env) != 0 || env.kind == CORE_RPC_BATCH ||
            (env.kind == CORE_RPC_REQUEST && strcmp(env.method_str, "initialize") == 0)) {
            (void)fed_error_json(&err, "null", 4, -32600, "Invalid Request");
        } else {
            dispatch_one(s, body + el.off, el.len, &env, req, b, &err);
        }
        if (err.len) {
            uv_buf_t u = uv_buf_init(err.data, (unsigned)err.len);
            batch_add(b, &u, 1);
        }
        core_buf_dispose(&err);
    }
    if (count == 0) {
        struct core_buf err;
        core_buf_init(&err, 0);
        if (fed_error_json(&err, "null", 4, -32600, "Invalid Request: empty batch") == 0) {
            uv_buf_t u = uv_buf_init(err.data, (unsigned)err.len);
            batch_add(b, &u, 1);
        }
        core_buf_dispose(&err);
    }
    b->dispatching = false;
    batch_maybe_finish(b);
}

static void *make_http_sess(struct fed_session *s)
{
    struct http_sess *hs = core_xcalloc(1, sizeof *hs);
    core_buf_init(&hs->queue, QUEUE_MAX_BYTES);
    hs->s = s;
    snprintf(hs->who, sizeof hs->who, "session %.8s", s->id);
    return hs;
}

/* The session of a request's token: cached, or restored from the token after a restart. Only
 * this front's sessions are reachable (legacy SSE and bridge sessions have no token). */
static struct fed_session *find_session(struct fed_gateway *gw, struct tp_http_req *req,
                                        const struct core_client_cfg *client)
{
    const char *sid = tp_http_req_header(req, "Mcp-Session-Id");
    if (sid == NULL || sid[0] == '\0') {
        fed_http_rpc_error(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
        return NULL;
    }
    struct fed_session *s = fed_session_open(gw, client, sid, &sess_ops, make_http_sess);
    if (s == NULL) {
        fed_http_rpc_error(req, 404, -32001, "Session not found");
        return NULL;
    }
    s->last_seen = fed_now(gw);
    return s;
}

static void handle_post(struct fed_gateway *gw, struct tp_http_req *req,
                        const struct core_client_cfg *client)
{
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
    /* A repeated key the gateway reads: refused before anything happens (no session is made).
     * Only a request whose id and method are single gets its JSON-RPC error from the router,
     * so the client can match it. */
    if (env.dup && (env.kind != CORE_RPC_REQUEST || strcmp(env.method_str, "initialize") == 0 ||
                    strcmp(env.dup_key, "id") == 0 || strcmp(env.dup_key, "method") == 0)) {
        char msg[96];
        snprintf(msg, sizeof msg, "Invalid Request: duplicate \"%s\" key", env.dup_key);
        fed_http_rpc_error(req, 400, -32600, msg);
        return;
    }
    if (env.kind == CORE_RPC_REQUEST && strcmp(env.method_str, "initialize") == 0) {
        char why[300];
        struct fed_session *s = fed_session_new(gw, client, &sess_ops, NULL, why, sizeof why);
        if (s == NULL) {
            struct core_buf b;
            core_buf_init(&b, 0);
            if (fed_error_json(&b, body + env.id.off, env.id.len, -32603, why) == 0)
                (void)tp_http_respond_simple(req, 503, "application/json", b.data);
            else
                fed_http_status(req, 503, "too many sessions\n");
            core_buf_dispose(&b);
            return;
        }
        s->ops_ctx = make_http_sess(s);
        dispatch_one(s, body, len, &env, req, NULL, NULL);
        return;
    }
    struct fed_session *s = find_session(gw, req, client);
    if (s == NULL)
        return;
    if (env.kind == CORE_RPC_BATCH) {
        handle_batch(s, req, body, len);
        return;
    }
    dispatch_one(s, body, len, &env, req, NULL, NULL);
    if (env.kind != CORE_RPC_REQUEST)
        (void)tp_http_respond(req, 202, NULL, 0, NULL, 0);
}

static void handle_get(struct fed_gateway *gw, struct tp_http_req *req,
                       const struct core_client_cfg *client)
{
    const char *accept = tp_http_req_header(req, "Accept");
    if (accept == NULL || strstr(accept, "text/event-stream") == NULL) {
        fed_http_status(req, 406, "GET /mcp needs Accept: text/event-stream\n");
        return;
    }
    struct fed_session *s = find_session(gw, req, client);
    if (s == NULL)
        return;
    struct http_sess *hs = s->ops_ctx;
    if (hs->stream) {
        fed_http_status(req, 409, "this session already has a GET stream open\n");
        return;
    }
    const char *tok = fed_session_token(s);
    struct tp_http_header h[] = {
        {"Content-Type", "text/event-stream"},
        {"Cache-Control", "no-cache"},
        {"X-Accel-Buffering", "no"},
        {"Mcp-Session-Id", tok},
    };
    if (tp_http_stream_start(req, 200, h, tok ? 4 : 3) != 0)
        return;
    hs->stream = req;
    s->streams++;
    tp_http_req_set_close_cb(req, on_stream_close, hs);
    struct core_buf first;
    core_buf_init(&first, 0);
    if (hs->queue.len) {
        uv_buf_t u = uv_buf_init(hs->queue.data, (unsigned)hs->queue.len);
        (void)tp_http_stream_write(req, &u, 1);
        queue_clear(hs);
    } else if (tp_sse_comment(&first, "stream open") == 0) {
        /* Flush the headers to the client at once. */
        uv_buf_t u = uv_buf_init(first.data, (unsigned)first.len);
        (void)tp_http_stream_write(req, &u, 1);
    }
    core_buf_dispose(&first);
}

/* Authorization: Bearer <token>, compared in constant time. */
static bool bearer_ok(const struct fed_gateway *gw, const struct tp_http_req *req)
{
    const char *h = tp_http_req_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h), want = strlen(gw->bearer);
    return n == want && sodium_memcmp(h, gw->bearer, n) == 0;
}

void fed_http_request(struct fed_gateway *gw, struct tp_http_req *req)
{
    const char *path = tp_http_req_path(req);
    const char *method = tp_http_req_method(req);
    if (gw->shutting_down) {
        fed_http_status(req, 503, "shutting down\n");
        return;
    }
    const char *host = tp_http_req_header(req, "Host");
    const char *origin = tp_http_req_header(req, "Origin");
    /* With a bearer token a rebinding page cannot get in anyway, and remote clients of
     * `agentgate wrap` name the machine's address in Host: only Origin is checked then. */
    bool check_host = !tp_http_req_is_unix(req) && gw->bearer == NULL;
    if ((check_host && (host == NULL || !host_ok(host, false))) ||
        (origin != NULL && !host_ok(origin, true))) {
        core_log(CORE_LOG_WARN, "http", "%s: refused Host %s Origin %s", tp_http_req_conn_name(req),
                 host ? host : "-", origin ? origin : "-");
        fed_http_status(req, 403, "Forbidden: Host and Origin must be localhost\n");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        (void)tp_http_respond_simple(req, 200, "text/plain", "ok\n");
        return;
    }
    bool is_unix = tp_http_req_is_unix(req);
    if (is_unix && strncmp(path, "/agentgate/", 11) == 0) {
        fed_control_request(gw, req);
        return;
    }
    const struct core_client_cfg *client = NULL;
    int status = 0;
    const char *why = NULL;
    if (gw->bearer && !is_unix) {
        if (!bearer_ok(gw, req)) {
            status = 401;
            why = "Unauthorized: send Authorization: Bearer <token>\n";
        }
    } else {
        struct auth_peer peer = {
            .is_unix = is_unix,
            .authorization = tp_http_req_header(req, "Authorization"),
            .name = tp_http_req_header(req, "X-Agentgate-Client"),
        };
        if (is_unix)
            peer.uid_known = tp_http_req_peer_uid(req, &peer.uid);
        status = auth_identify(gw->cfg, gw->auth_override, &peer, &client, &why);
    }
    if (status) {
        core_log(CORE_LOG_INFO, "http", "%s: %d %s %s: %.*s", tp_http_req_conn_name(req), status,
                 method, path, (int)strcspn(why, "\n"), why);
        struct tp_http_header h[] = {{"WWW-Authenticate", "Bearer realm=\"agentgate\""}};
        uv_buf_t u = uv_buf_init((char *)why, (unsigned)strlen(why));
        (void)tp_http_respond(req, status, h, status == 401 ? 1 : 0, &u, 1);
        return;
    }
    tp_http_req_set_trusted(req); /* identified: the connection no longer counts as untrusted */
    if (strcmp(path, "/sse") == 0 || strcmp(path, "/message") == 0) {
        fed_sse_request(gw, req, client);
        return;
    }
    if (strcmp(path, "/mcp") != 0) {
        fed_http_status(req, 404, "Not found: the MCP endpoint is /mcp\n");
        return;
    }
    const char *ver = tp_http_req_header(req, "MCP-Protocol-Version");
    if (ver && !fed_version_supported(ver, strlen(ver))) {
        char msg[200];
        snprintf(msg, sizeof msg, "Bad Request: unsupported MCP-Protocol-Version %.60s", ver);
        fed_http_rpc_error(req, 400, -32000, msg);
        return;
    }
    if (strcmp(method, "POST") == 0) {
        handle_post(gw, req, client);
    } else if (strcmp(method, "GET") == 0) {
        handle_get(gw, req, client);
    } else if (strcmp(method, "DELETE") == 0) {
        struct fed_session *s = find_session(gw, req, client);
        if (s) {
            fed_session_revoke(s);
            (void)tp_http_respond(req, 200, NULL, 0, NULL, 0);
        }
    } else {
        struct tp_http_header h[] = {{"Allow", "GET, POST, DELETE"}};
        uv_buf_t u = uv_buf_init("Method not allowed\n", 19);
        (void)tp_http_respond(req, 405, h, 1, &u, 1);
    }
}
