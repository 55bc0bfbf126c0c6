/* The remote MCP transport: Streamable HTTP and legacy HTTP+SSE over tp_hclient.
 *
 * One tp_remote owns:
 * - the POSTs in flight (struct post), one per message written, any number at once; each reads
 *   a JSON body, an SSE stream or nothing (202);
 * - its streams (struct stream): the standalone GET stream of Streamable HTTP, the GETs that
 *   resume a POST's SSE stream cut short before its response (SEP-1699 polling), or the legacy
 *   SSE stream that carries everything the server sends;
 * - the messages held while nothing may be sent (the first POST settling the transport, the
 *   legacy stream waiting for its `endpoint`, an authorization challenge).
 *
 * Failures of one request (an HTTP error status, an HTML page, invalid JSON, a reply over
 * max_frame, a stream that ends before the response) are answered with a JSON-RPC error for
 * that request's id through on_frame, so the owner fails that call and keeps the session.
 * Failures of the session (unreachable, TLS, a 404 on the session, the legacy stream gone, the
 * initialize request failing) go to on_down.
 *
 * Objects are never freed while their own code may be on the stack: posts that end go to a
 * graveyard freed when the outermost callback returns (depth 0), streams free themselves from
 * their timer's close callback, and tp_remote_close from inside a callback only marks r. */
#include "transports/remote.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/jsonrpc.h"
#include "core/log.h"
#include "transports/hclient.h"
#include "transports/sse.h"

#define DEFAULT_MAX_FRAME ((size_t)4 << 20)
#define DEFAULT_STALL_MS (5u * 60u * 1000u)
#define DEFAULT_CONNECT_MS 10000u
#define DEFAULT_RETRY_MS 1000u /* reconnect delay when the server sent no retry: */
#define MAX_BACKOFF_MS 30000u
#define DELETE_DEADLINE_MS 2000u
#define ERR_EXCERPT 512 /* bytes of an error body kept for the message */
#define MAX_HEADERS 40
#define RPC_UPSTREAM_ERROR (-32603)

enum rstate {
    R_NEW,         /* nothing sent yet; the next message settles the transport */
    R_PROBING,     /* the first POST (initialize) is in flight; later messages wait */
    R_SSE_OPENING, /* legacy: the GET stream is opening, waiting for its `endpoint` event */
    R_OPEN,        /* messages go out as they are written */
    R_AUTH,        /* on_auth was called; messages wait for tp_remote_resume */
    R_DOWN,        /* on_down was called; only tp_remote_close is left */
};

static const char *const state_names[] = {"new", "probing", "sse-opening", "open", "auth", "down"};

struct msg {
    struct msg *next;
    char *id;     /* a request's id as JSON text; NULL for notifications and responses */
    bool is_init; /* an initialize request */
    bool is_initialized; /* the notifications/initialized notification */
    size_t n;
    char data[];
};

enum body_kind {
    BODY_NONE,  /* no body expected (202) */
    BODY_JSON,  /* application/json: collected, then parsed */
    BODY_SSE,   /* text/event-stream: decoded as it arrives */
    BODY_OTHER, /* anything else, or an error status: the first bytes kept for the message */
};

struct post {
    struct post *next;
    struct post *prev;
    struct tp_remote *r;
    struct tp_hreq *req; /* NULL once ended or aborted */
    struct msg *m;       /* owned; counted in r->queued */
    int status;
    enum body_kind body;
    struct core_buf buf;        /* JSON body or error excerpt */
    struct tp_sse_decoder sse;  /* live when body == BODY_SSE */
    bool sse_live;
    bool answered;              /* the response to m->id went through on_frame */
    bool probing;               /* the first POST, which settles the transport (R_PROBING) */
    bool dead;                  /* in the graveyard */
    char last_id[256];          /* the SSE stream's last event id */
    bool has_last_id;
    char content_type[64];
};

enum stream_kind {
    S_GET,    /* Streamable HTTP: the server's own stream */
    S_RESUME, /* Streamable HTTP: a POST's stream resumed with Last-Event-ID */
    S_LEGACY, /* HTTP+SSE: the one stream */
};

struct stream {
    struct stream *next;
    struct stream *prev;
    struct tp_remote *r; /* NULL once detached */
    enum stream_kind kind;
    struct tp_hreq *req;
    uv_timer_t timer; /* reconnect delay */
    struct tp_sse_decoder sse;
    bool sse_live;
    bool ok;           /* the current connection answered 2xx with an event stream */
    bool was_ok;       /* some earlier connection of this stream did */
    char last_id[256];
    bool has_last_id;
    unsigned retry_ms; /* the server's retry:, 0 = none seen */
    unsigned backoff_ms;
    char *pending_id;  /* S_RESUME: the request whose response is awaited */
    bool answered;
};

struct tp_remote {
    struct tp_hclient *hc;
    uv_loop_t *loop;
    struct tp_remote_cbs cbs;
    void *ctx;
    char *url;
    char *post_url; /* legacy: the endpoint; NULL = url */
    char **headers; /* user headers, NULL-terminated */
    char *bearer;
    char *ca_file;
    size_t max_frame;
    size_t max_queued;
    uint64_t connect_timeout_ms;
    uint64_t stall_ms;
    enum tp_remote_kind want;
    enum tp_remote_kind kind; /* settled transport; AUTO until then */
    enum rstate state;
    enum rstate auth_from; /* the state on_auth interrupted */
    int probe_status;      /* auto: the status that made the POST fall back to SSE */
    char *session_id;
    char *proto;
    struct msg *held;
    struct msg *held_tail;
    size_t queued;
    struct post *posts;
    struct post *graveyard;
    struct stream *streams;
    struct stream *get; /* the S_GET or S_LEGACY stream, or NULL */
    bool ready;
    bool get_refused; /* the server has no GET stream (405) */
    /* notifications/initialized is being posted: later messages wait for its answer, so the
     * server has seen it before any request that follows (concurrent POSTs may arrive in any
     * order, and a server may offer tools only once it knows the client's capabilities). */
    bool initialized_out;
    int depth;        /* callbacks of r on the stack */
    bool closing;
};

static void start_post(struct tp_remote *r, struct msg *m, bool probing);
static void stream_connect(struct stream *s);
static void stream_later(struct stream *s, unsigned ms);
static struct stream *stream_new(struct tp_remote *r, enum stream_kind kind);
static void flush_held(struct tp_remote *r);

/* ---- small helpers ------------------------------------------------------------------------ */

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = core_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    (void)vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void set_state(struct tp_remote *r, enum rstate st)
{
    if (r->state == st)
        return;
    core_log(CORE_LOG_DEBUG, "remote", "%s: %s -> %s", r->url, state_names[r->state],
             state_names[st]);
    r->state = st;
}

static void enter(struct tp_remote *r)
{
    r->depth++;
}

static void post_free(struct post *p)
{
    if (p->m) {
        core_free(p->m->id);
        core_free(p->m);
    }
    core_buf_dispose(&p->buf);
    if (p->sse_live)
        tp_sse_decoder_dispose(&p->sse);
    core_free(p);
}

static void msg_free(struct msg *m)
{
    if (!m)
        return;
    core_free(m->id);
    core_free(m);
}

static void remote_free(struct tp_remote *r)
{
    while (r->graveyard) {
        struct post *p = r->graveyard;
        r->graveyard = p->next;
        post_free(p);
    }
    if (r->headers) {
        for (size_t i = 0; r->headers[i]; i++)
            core_free(r->headers[i]);
        core_free(r->headers);
    }
    core_free(r->url);
    core_free(r->post_url);
    if (r->bearer) {
        memset(r->bearer, 0, strlen(r->bearer));
        core_free(r->bearer);
    }
    core_free(r->ca_file);
    core_free(r->session_id);
    core_free(r->proto);
    core_free(r);
}

/* Leaves a callback of r: frees what ended meanwhile, and r itself once closed and no
 * callback of it is on the stack. Nothing of r may be touched after this. */
static void leave(struct tp_remote *r)
{
    if (--r->depth > 0)
        return;
    while (r->graveyard) {
        struct post *p = r->graveyard;
        r->graveyard = p->next;
        post_free(p);
    }
    if (r->closing)
        remote_free(r);
}

static bool gone(const struct tp_remote *r)
{
    return r->closing || r->state == R_DOWN;
}

/* The first line of an error body, trimmed and made printable, at most 160 bytes. */
static void first_line(const char *p, size_t n, char *out, size_t cap)
{
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    size_t o = 0;
    for (; i < n && o + 1 < cap && o < 160; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r' || c == '\n')
            break;
        out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)p[i]))
            return false;
    return true;
}

/* Whether p[0..n) is a JSON-RPC response (result or error) to the request whose id is `want`
 * (the id's JSON text as the request carried it). */
static bool answers(const char *p, size_t n, const char *want)
{
    struct core_rpc_env env;
    if (!want || core_rpc_scan(p, n, &env) != 0)
        return false;
    if (env.kind != CORE_RPC_RESULT && env.kind != CORE_RPC_ERROR)
        return false;
    return env.id.len == strlen(want) && memcmp(p + env.id.off, want, env.id.len) == 0;
}

static void deliver(struct tp_remote *r, const char *p, size_t n)
{
    if (gone(r) || !r->cbs.on_frame)
        return;
    core_log(CORE_LOG_TRACE, "remote", "%s: <- %.*s", r->url, (int)(n > 200 ? 200 : n), p);
    r->cbs.on_frame(r->ctx, p, n);
}

/* Answers request id (JSON text) with a JSON-RPC error through on_frame. */
static void fail_request(struct tp_remote *r, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_request(struct tp_remote *r, const char *id, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!id) {
        core_log(CORE_LOG_WARN, "remote", "%s: %s", r->url, why);
        return;
    }
    core_log(CORE_LOG_INFO, "remote", "%s: request %s failed: %s", r->url, id, why);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    cJSON *idv = cJSON_Parse(id);
    cJSON_AddItemToObject(o, "id", idv ? idv : cJSON_CreateNull());
    cJSON *err = cJSON_AddObjectToObject(o, "error");
    cJSON_AddNumberToObject(err, "code", RPC_UPSTREAM_ERROR);
    cJSON_AddStringToObject(err, "message", why);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (txt)
        deliver(r, txt, strlen(txt));
    cJSON_free(txt);
}

/* ---- teardown of parts ------------------------------------------------------------------- */

static void post_bury(struct post *p)
{
    struct tp_remote *r = p->r;
    if (p->dead)
        return;
    p->dead = true;
    if (p->req) {
        struct tp_hreq *q = p->req;
        p->req = NULL;
        tp_hreq_abort(q);
    }
    if (p->m) {
        r->queued -= p->m->n;
    }
    if (p->prev)
        p->prev->next = p->next;
    else
        r->posts = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = NULL;
    p->next = r->graveyard;
    r->graveyard = p;
}

static void on_stream_closed(uv_handle_t *h)
{
    struct stream *s = container_of((uv_timer_t *)h, struct stream, timer);
    if (s->sse_live)
        tp_sse_decoder_dispose(&s->sse);
    core_free(s->pending_id);
    core_free(s);
}

static void stream_drop(struct stream *s)
{
    struct tp_remote *r = s->r;
    if (!r)
        return;
    if (s->req) {
        struct tp_hreq *q = s->req;
        s->req = NULL;
        tp_hreq_abort(q);
    }
    if (r->get == s)
        r->get = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        r->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->r = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_stream_closed);
}

static void drop_everything(struct tp_remote *r)
{
    while (r->posts)
        post_bury(r->posts);
    while (r->streams)
        stream_drop(r->streams);
    while (r->held) {
        struct msg *m = r->held;
        r->held = m->next;
        r->queued -= m->n;
        msg_free(m);
    }
    r->held_tail = NULL;
}

static void go_down(struct tp_remote *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void go_down(struct tp_remote *r, int err, const char *fmt, ...)
{
    if (gone(r))
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    core_log(CORE_LOG_WARN, "remote", "%s: down: %s", r->url, why);
    set_state(r, R_DOWN);
    drop_everything(r);
    if (r->cbs.on_down)
        r->cbs.on_down(r->ctx, err ? err : CORE_ECLOSED, why);
}

/* ---- held messages and authorization ------------------------------------------------------ */

static void hold_back(struct tp_remote *r, struct msg *m)
{
    m->next = NULL;
    if (r->held_tail)
        r->held_tail->next = m;
    else
        r->held = m;
    r->held_tail = m;
    r->queued += m->n;
}

static void hold_front(struct tp_remote *r, struct msg *m)
{
    m->next = r->held;
    r->held = m;
    if (!r->held_tail)
        r->held_tail = m;
    r->queued += m->n;
}

static struct msg *unhold(struct tp_remote *r)
{
    struct msg *m = r->held;
    if (!m)
        return NULL;
    r->held = m->next;
    if (!r->held)
        r->held_tail = NULL;
    m->next = NULL;
    r->queued -= m->n;
    return m;
}

/* A POST's message goes back to the held queue; the post is buried. */
static void post_requeue(struct post *p)
{
    struct tp_remote *r = p->r;
    struct msg *m = p->m;
    post_bury(p);
    p->m = NULL;
    if (m->is_initialized)
        r->initialized_out = false; /* it goes out again, first */
    hold_front(r, m);
}

static bool is_scope_challenge(const char *www)
{
    return www && strstr(www, "insufficient_scope") != NULL;
}

static bool is_auth_status(int status, const char *www)
{
    return status == 401 || (status == 403 && is_scope_challenge(www));
}

static void go_auth(struct tp_remote *r, int status, const char *www)
{
    if (gone(r) || r->state == R_AUTH)
        return;
    r->auth_from = r->state;
    set_state(r, R_AUTH);
    core_log(CORE_LOG_INFO, "remote", "%s: HTTP %d: authorization needed", r->url, status);
    if (r->cbs.on_auth)
        r->cbs.on_auth(r->ctx, status, www);
    else
        go_down(r, CORE_EINVAL, "server requires authorization (HTTP %d)", status);
}

/* ---- request headers ---------------------------------------------------------------------- */

struct hdrs {
    char *v[MAX_HEADERS + 1];
    size_t n;
};

static void hdr_add(struct hdrs *h, char *s)
{
    if (h->n < MAX_HEADERS)
        h->v[h->n++] = s;
    else
        core_free(s);
    h->v[h->n] = NULL;
}

static void hdrs_dispose(struct hdrs *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strncasecmp(h->v[i], "Authorization:", 14) == 0)
            memset(h->v[i], 0, strlen(h->v[i]));
        core_free(h->v[i]);
    }
    h->n = 0;
}

static bool has_name(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The headers every request carries: the user's (ours win on a clash), the bearer, the
 * session id, and the protocol version once ready. */
static void hdrs_common(struct tp_remote *r, struct hdrs *h, bool legacy)
{
    static const char *const ours[] = {"Authorization", "Accept", "Content-Type",
                                       "Mcp-Session-Id", "MCP-Protocol-Version", "Last-Event-ID",
                                       NULL};
    h->n = 0;
    h->v[0] = NULL;
    for (size_t i = 0; r->headers && r->headers[i]; i++) {
        bool clash = false;
        for (size_t k = 0; ours[k]; k++) {
            if (has_name(r->headers[i], ours[k]) &&
                (k != 0 || r->bearer)) /* a static Authorization stays when no bearer is set */
                clash = true;
        }
        if (!clash)
            hdr_add(h, core_xstrdup(r->headers[i]));
    }
    if (r->bearer)
        hdr_add(h, xprintf("Authorization: %s", r->bearer));
    if (!legacy && r->session_id)
        hdr_add(h, xprintf("Mcp-Session-Id: %s", r->session_id));
    if (!legacy && r->ready && r->proto)
        hdr_add(h, xprintf("MCP-Protocol-Version: %s", r->proto));
}

/* ---- POSTs ------------------------------------------------------------------------------- */

static bool post_legacy(const struct post *p)
{
    return p->r->kind == TP_REMOTE_SSE;
}

static void post_event(void *ctx, const char *event, const char *id, const char *data, size_t n)
{
    struct post *p = ctx;
    struct tp_remote *r = p->r;
    GW_UNUSED(id);
    core_log(CORE_LOG_TRACE, "remote", "%s: POST event '%s' (%zu bytes)", r->url, event, n);
    if (p->dead || gone(r))
        return;
    if (strcmp(event, "message") != 0 || blank(data, n))
        return; /* priming events carry an id and no data */
    if (p->m->id && !p->answered && answers(data, n, p->m->id))
        p->answered = true;
    deliver(r, data, n);
}

/* Starts a GET that resumes the SSE stream of p (which ended before its response) after the
 * server's retry delay. */
static void resume_post_stream(struct post *p, unsigned retry_ms)
{
    struct tp_remote *r = p->r;
    struct stream *s = stream_new(r, S_RESUME);
    s->retry_ms = retry_ms;
    (void)snprintf(s->last_id, sizeof s->last_id, "%s", p->last_id);
    s->has_last_id = true;
    s->pending_id = core_xstrdup(p->m->id);
    unsigned delay = retry_ms ? retry_ms : DEFAULT_RETRY_MS;
    core_log(CORE_LOG_DEBUG, "remote", "%s: stream for %s ended early; resuming after %u ms",
             r->url, p->m->id, delay);
    stream_later(s, delay);
}

static void post_on_headers(void *ctx, struct tp_hreq *q, int status, const struct tp_hheaders *h)
{
    struct post *p = ctx;
    struct tp_remote *r = p->r;
    enter(r);
    p->status = status;
    const char *www = tp_hheaders_get(h, "WWW-Authenticate");
    if (is_auth_status(status, www)) {
        post_requeue(p);
        go_auth(r, status, www);
        goto out;
    }
    if (status >= 200 && status < 300) {
        const char *sid = tp_hheaders_get(h, "Mcp-Session-Id");
        if (sid && !post_legacy(p) && (p->probing || p->m->is_init) && !r->session_id) {
            /* No length in the spec; a sealed id (agentgate's own) runs to a few hundred bytes. */
            bool ok = strlen(sid) <= 4096;
            for (const char *c = sid; *c && ok; c++)
                ok = *c >= 0x21 && *c <= 0x7e;
            if (ok)
                r->session_id = core_xstrdup(sid);
            else
                core_log(CORE_LOG_WARN, "remote", "%s: ignoring a malformed Mcp-Session-Id",
                         r->url);
        }
        if (r->state == R_PROBING && p->probing) {
            if (r->kind == TP_REMOTE_AUTO)
                r->kind = TP_REMOTE_STREAMABLE;
            set_state(r, R_OPEN);
            flush_held(r);
        }
        const char *ct = tp_hheaders_get(h, "Content-Type");
        (void)snprintf(p->content_type, sizeof p->content_type, "%s", ct ? ct : "");
        if (status == 202 || status == 204 || post_legacy(p) || !p->m->id)
            p->body = BODY_NONE; /* legacy replies travel on the GET stream; a notification
                                    or response has nothing to wait for */
        else if (ct && strncasecmp(ct, "application/json", 16) == 0)
            p->body = BODY_JSON;
        else if (ct && strncasecmp(ct, "text/event-stream", 17) == 0) {
            p->body = BODY_SSE;
            tp_sse_decoder_init(&p->sse, r->max_frame);
            p->sse_live = true;
        } else
            p->body = post_legacy(p) ? BODY_NONE : BODY_OTHER;
        if (p->body == BODY_JSON)
            core_buf_init(&p->buf, r->max_frame);
        else if (p->body == BODY_OTHER)
            core_buf_init(&p->buf, ERR_EXCERPT);
        goto out;
    }
    /* An error status. */
    if (r->state == R_PROBING && p->probing && r->want == TP_REMOTE_AUTO &&
        (status == 400 || status == 404 || status == 405)) {
        core_log(CORE_LOG_INFO, "remote",
                 "%s: POST answered HTTP %d: trying the legacy HTTP+SSE transport", r->url, status);
        post_requeue(p);
        r->probe_status = status;
        r->kind = TP_REMOTE_SSE;
        set_state(r, R_NEW);
        flush_held(r);
        goto out;
    }
    if (status == 404 && r->session_id && !post_legacy(p)) {
        go_down(r, CORE_ENOTFOUND, "session expired (HTTP 404 on session %s)", r->session_id);
        goto out;
    }
    p->body = BODY_OTHER;
    core_buf_init(&p->buf, ERR_EXCERPT);
    GW_UNUSED(q);
out:
    leave(r);
}

/* The reply to p's message passed max_frame: that one call fails, the session stays. */
static void post_too_big(struct post *p, const char *what)
{
    struct tp_remote *r = p->r;
    struct msg *m = p->m;
    p->m = NULL;
    r->queued -= m->n;
    post_bury(p);
    fail_request(r, m->id, "%s larger than max_frame (%zu bytes)", what,
                 r->max_frame);
    msg_free(m);
}

static int post_on_data(void *ctx, struct tp_hreq *q, const char *d, size_t n)
{
    struct post *p = ctx;
    struct tp_remote *r = p->r;
    GW_UNUSED(q);
    if (p->dead)
        return 0;
    enter(r);
    switch (p->body) {
    case BODY_NONE:
        break;
    case BODY_JSON:
        if (core_buf_append(&p->buf, d, n) != 0) {
            post_too_big(p, "upstream reply");
        }
        break;
    case BODY_SSE: {
        int rc = tp_sse_decoder_feed(&p->sse, d, n, post_event, p);
        if (!p->dead && tp_sse_decoder_last_id(&p->sse)) {
            (void)snprintf(p->last_id, sizeof p->last_id, "%s", tp_sse_decoder_last_id(&p->sse));
            p->has_last_id = true;
        }
        if (rc != 0 && !p->dead) {
            post_too_big(p, "upstream sent an SSE event");
        }
        break;
    }
    case BODY_OTHER: {
        size_t room = ERR_EXCERPT - p->buf.len;
        /* The excerpt is bounded by room, so the append cannot fail. */
        if (room > 0 && core_buf_append(&p->buf, d, n < room ? n : room) != 0)
            room = 0;
        break;
    }
    }
    leave(r);
    return 0;
}

static void post_deliver_json(struct post *p)
{
    struct tp_remote *r = p->r;
    const char *b = p->buf.data ? p->buf.data : "";
    size_t n = p->buf.len;
    struct core_rpc_env env;
    if (core_rpc_scan(b, n, &env) != 0) {
        char line[200];
        first_line(b, n, line, sizeof line);
        fail_request(r, p->m->id, "upstream sent invalid JSON (HTTP %d): %s", p->status, line);
        p->answered = true;
        return;
    }
    if (env.kind == CORE_RPC_BATCH) {
        /* An old (2025-03-26) server's array: its elements go on one by one. */
        size_t pos = 0;
        struct core_span el;
        while (!p->dead && !gone(r) && core_rpc_batch_next(b, n, &pos, &el) == 1) {
            if (answers(b + el.off, el.len, p->m->id))
                p->answered = true;
            deliver(r, b + el.off, el.len);
        }
        return;
    }
    if (env.kind == CORE_RPC_INVALID) {
        fail_request(r, p->m->id, "upstream sent a JSON body that is not a JSON-RPC message");
        p->answered = true;
        return;
    }
    if (answers(b, n, p->m->id))
        p->answered = true;
    while (n > 0 && isspace((unsigned char)b[n - 1]))
        n--;
    while (n > 0 && isspace((unsigned char)*b)) {
        b++;
        n--;
    }
    deliver(r, b, n);
}

/* An error status: a JSON-RPC error body for this request passes through; anything else
 * becomes "upstream answered HTTP N: first line". */
static void post_fail_status(struct post *p)
{
    struct tp_remote *r = p->r;
    const char *b = p->buf.data ? p->buf.data : "";
    size_t n = p->buf.len;
    if (p->m->id && p->status >= 400 && p->status < 500) {
        if (answers(b, n, p->m->id)) {
            deliver(r, b, n);
            return;
        }
    }
    char line[200];
    first_line(b, n, line, sizeof line);
    /* The MCP SDK's own example servers (server-everything among them) answer an unknown session
     * id with 400 "Bad Request: No valid session ID provided" instead of 404: on a request that
     * carried our session id that means the same, an expired session. */
    if (p->status == 400 && r->session_id && !post_legacy(p) && !p->probing && !p->m->is_init &&
        strcasestr(line, "session") != NULL) {
        go_down(r, CORE_ENOTFOUND, "session expired (HTTP 400 on session %s: %s)", r->session_id,
                line);
        return;
    }
    if (p->probing || p->m->is_init) {
        go_down(r, CORE_EPROTO, "upstream answered HTTP %d%s%s", p->status, line[0] ? ": " : "",
                line);
        return;
    }
    if (p->status >= 200 && p->status < 300)
        fail_request(r, p->m->id, "upstream answered HTTP %d with content-type '%s'", p->status,
                     p->content_type);
    else
        fail_request(r, p->m->id, "upstream answered HTTP %d%s%s", p->status,
                     line[0] ? ": " : "", line);
}

static void post_on_done(void *ctx, struct tp_hreq *q, int err, const char *why)
{
    struct post *p = ctx;
    struct tp_remote *r = p->r;
    GW_UNUSED(q);
    if (p->dead)
        return;
    enter(r);
    p->req = NULL;
    if (p->m->is_initialized && r->initialized_out) {
        /* Answered (or failed, which the next request finds out): the rest may go. */
        r->initialized_out = false;
        if (!gone(r) && r->state == R_OPEN)
            flush_held(r);
    }
    if (err != 0) {
        if (p->body == BODY_SSE && p->m->id && !p->answered && p->has_last_id) {
            /* A cut (or stalled) stream that was primed with an id: resume it. */
            resume_post_stream(p, tp_sse_decoder_retry_ms(&p->sse));
        } else if (err == CORE_ETOOBIG) {
            fail_request(r, p->m->id, "upstream reply larger than max_frame (%zu bytes)",
                         r->max_frame);
        } else if (p->status != 0 && !p->probing && !p->m->is_init) {
            /* The reply had begun: this request's exchange broke (a stall, a reset); the
             * session may be fine, and the next request finds out. */
            fail_request(r, p->m->id, "upstream reply broke off: %s",
                         why && *why ? why : core_strerror(err));
        } else {
            go_down(r, err, "%s", why && *why ? why : core_strerror(err));
        }
        post_bury(p);
        goto out;
    }
    switch (p->body) {
    case BODY_NONE:
        if (p->m->id && !post_legacy(p))
            fail_request(r, p->m->id, "upstream answered HTTP %d without a response",
                         p->status);
        break;
    case BODY_JSON:
        post_deliver_json(p);
        if (!p->answered && !p->dead && p->m->id)
            fail_request(r, p->m->id, "upstream reply did not answer the request");
        break;
    case BODY_SSE:
        if (p->dead || gone(r))
            break;
        if (p->m->id && !p->answered) {
            if (p->has_last_id)
                resume_post_stream(p, tp_sse_decoder_retry_ms(&p->sse));
            else
                fail_request(r, p->m->id, "upstream closed the SSE stream before answering");
        }
        break;
    case BODY_OTHER:
        post_fail_status(p);
        break;
    }
    post_bury(p);
out:
    leave(r);
}

static const struct tp_hreq_cbs post_cbs = {
    .on_headers = post_on_headers,
    .on_data = post_on_data,
    .on_done = post_on_done,
};

/* Starts the POST of m (taken). Failing to start is a session failure. */
static void start_post(struct tp_remote *r, struct msg *m, bool probing)
{
    bool legacy = r->kind == TP_REMOTE_SSE;
    struct post *p = core_xcalloc(1, sizeof *p);
    p->r = r;
    p->m = m;
    p->probing = probing;
    struct hdrs h;
    hdrs_common(r, &h, legacy);
    hdr_add(&h, core_xstrdup("Content-Type: application/json"));
    hdr_add(&h, core_xstrdup(legacy ? "Accept: application/json, text/event-stream"
                                    : "Accept: application/json, text/event-stream"));
    struct tp_hreq_opts o = {
        .method = "POST",
        .url = legacy && r->post_url ? r->post_url : r->url,
        .headers = (const char *const *)h.v,
        .body = m->data,
        .body_len = m->n,
        .ca_file = r->ca_file,
        .connect_timeout_ms = r->connect_timeout_ms,
        .idle_timeout_ms = r->stall_ms,
    };
    r->queued += m->n;
    if (m->is_initialized)
        r->initialized_out = true;
    p->next = r->posts;
    if (r->posts)
        r->posts->prev = p;
    r->posts = p;
    int rc = tp_hreq_start(r->hc, &o, &post_cbs, p, &p->req);
    hdrs_dispose(&h);
    if (rc != 0) {
        p->req = NULL;
        post_bury(p);
        go_down(r, rc, "cannot start a request to %s: %s", o.url, core_strerror(rc));
    }
}

/* ---- streams ----------------------------------------------------------------------------- */

static void stream_on_timer(uv_timer_t *t)
{
    struct stream *s = container_of(t, struct stream, timer);
    struct tp_remote *r = s->r;
    if (!r)
        return;
    enter(r);
    if (!gone(r) && r->state != R_AUTH)
        stream_connect(s);
    leave(r);
}

static void stream_later(struct stream *s, unsigned ms)
{
    uv_timer_start(&s->timer, stream_on_timer, ms, 0);
}

static struct stream *stream_new(struct tp_remote *r, enum stream_kind kind)
{
    struct stream *s = core_xcalloc(1, sizeof *s);
    s->r = r;
    s->kind = kind;
    (void)uv_timer_init(r->loop, &s->timer);
    s->next = r->streams;
    if (r->streams)
        r->streams->prev = s;
    r->streams = s;
    return s;
}

/* The stream ended (or failed with a transient error): try again after the server's retry
 * delay, or a doubling backoff for errors. */
static void stream_again(struct stream *s, bool error)
{
    unsigned delay;
    if (s->retry_ms && !error)
        delay = s->retry_ms;
    else if (error) {
        delay = s->backoff_ms ? s->backoff_ms * 2 : (s->retry_ms ? s->retry_ms : DEFAULT_RETRY_MS);
        if (delay > MAX_BACKOFF_MS)
            delay = MAX_BACKOFF_MS;
        s->backoff_ms = delay;
    } else
        delay = DEFAULT_RETRY_MS;
    core_log(CORE_LOG_DEBUG, "remote", "%s: stream ended; reconnecting in %u ms", s->r->url,
             delay);
    stream_later(s, delay);
}

static void resume_failed(struct stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void resume_failed(struct stream *s, const char *fmt, ...)
{
    struct tp_remote *r = s->r;
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    char *id = s->pending_id;
    s->pending_id = NULL;
    stream_drop(s);
    fail_request(r, id, "%s", why);
    core_free(id);
}

GW_STATIC bool remote_same_origin(const char *a, const char *b);
GW_STATIC char *remote_resolve(const char *base, const char *ref, size_t n);

/* The legacy `endpoint` event's URI resolved against the stream's URL (absolute, scheme-relative,
 * absolute-path, query-only or path-relative), or NULL when it is empty or holds whitespace or
 * control characters. The caller frees it and checks its origin. */
GW_STATIC char *remote_resolve(const char *base, const char *ref, size_t n)
{
    while (n > 0 && isspace((unsigned char)*ref)) {
        ref++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)ref[n - 1]))
        n--;
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)ref[i];
        if (ch <= 0x20 || ch == 0x7f)
            return NULL;
    }
    if ((n > 7 && strncasecmp(ref, "http://", 7) == 0) ||
        (n > 8 && strncasecmp(ref, "https://", 8) == 0))
        return core_xstrndup(ref, n);
    const char *sep = strstr(base, "://");
    if (!sep)
        return NULL;
    const char *auth = sep + 3;
    size_t slen = (size_t)(sep - base) + 1; /* "http:" */
    size_t olen = (size_t)(auth - base) + strcspn(auth, "/?#");
    const char *path = base + olen;
    size_t plen = strcspn(path, "?#");
    if (n >= 2 && ref[0] == '/' && ref[1] == '/')
        return xprintf("%.*s%.*s", (int)slen, base, (int)n, ref);
    if (ref[0] == '/')
        return xprintf("%.*s%.*s", (int)olen, base, (int)n, ref);
    if (ref[0] == '?')
        return xprintf("%.*s%s%.*s", (int)(olen + plen), base, plen ? "" : "/", (int)n, ref);
    size_t dir = 0;
    for (size_t i = 0; i < plen; i++)
        if (path[i] == '/')
            dir = i + 1;
    if (dir == 0)
        return xprintf("%.*s/%.*s", (int)olen, base, (int)n, ref);
    return xprintf("%.*s%.*s", (int)(olen + dir), base, (int)n, ref);
}

static void legacy_endpoint(struct stream *s, const char *data, size_t n)
{
    struct tp_remote *r = s->r;
    char *url = remote_resolve(r->url, data, n);
    if (!url) {
        go_down(r, CORE_EPROTO, "legacy SSE stream sent an unusable endpoint event");
        return;
    }
    if (!remote_same_origin(url, r->url)) {
        go_down(r, CORE_EPROTO, "legacy SSE endpoint %s is not on the server's origin", url);
        core_free(url);
        return;
    }
    bool first = r->post_url == NULL;
    core_free(r->post_url);
    r->post_url = url;
    if (first && r->state == R_SSE_OPENING) {
        core_log(CORE_LOG_DEBUG, "remote", "%s: legacy SSE endpoint %s", r->url, url);
        set_state(r, R_OPEN);
        flush_held(r);
    }
}

static void stream_event(void *ctx, const char *event, const char *id, const char *data,
                         size_t n)
{
    struct stream *s = ctx;
    struct tp_remote *r = s->r;
    GW_UNUSED(id);
    if (!r || gone(r))
        return;
    if (s->kind == S_LEGACY && strcmp(event, "endpoint") == 0) {
        legacy_endpoint(s, data, n);
        return;
    }
    if (strcmp(event, "message") != 0 || blank(data, n))
        return;
    if (s->kind == S_LEGACY && !r->post_url) {
        go_down(r, CORE_EPROTO, "legacy SSE stream sent a message before its endpoint event");
        return;
    }
    if (s->kind == S_RESUME && s->pending_id && !s->answered && answers(data, n, s->pending_id))
        s->answered = true;
    deliver(r, data, n);
}

static void stream_on_headers(void *ctx, struct tp_hreq *q, int status,
                              const struct tp_hheaders *h)
{
    struct stream *s = ctx;
    struct tp_remote *r = s->r;
    GW_UNUSED(q);
    if (!r)
        return;
    enter(r);
    const char *ct = tp_hheaders_get(h, "Content-Type");
    const char *www = tp_hheaders_get(h, "WWW-Authenticate");
    bool sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    if (status >= 200 && status < 300 && sse) {
        s->ok = true;
        s->was_ok = true;
        s->backoff_ms = 0;
        if (s->sse_live)
            tp_sse_decoder_dispose(&s->sse);
        tp_sse_decoder_init(&s->sse, r->max_frame);
        s->sse_live = true;
        goto out;
    }
    if (is_auth_status(status, www)) {
        if (s->kind == S_GET) {
            stream_drop(s);
        } else if (s->kind == S_LEGACY) {
            stream_drop(s);
        }
        /* A resume stream waits: its timer fires again after resume. */
        if (s->kind == S_RESUME) {
            struct tp_hreq *qq = s->req;
            s->req = NULL;
            tp_hreq_abort(qq);
        }
        go_auth(r, status, www);
        goto out;
    }
    if (status == 404 && r->session_id && s->kind != S_LEGACY) {
        go_down(r, CORE_ENOTFOUND, "session expired (HTTP 404 on session %s)", r->session_id);
        goto out;
    }
    /* The server took this GET stream before and now refuses it as a bad request: our session
     * is unknown to it (a restarted server built on the SDK's examples says 400, not 404). */
    if (status == 400 && r->session_id && s->kind == S_GET && s->was_ok) {
        go_down(r, CORE_ENOTFOUND, "session expired (HTTP 400 on session %s's GET stream)",
                r->session_id);
        goto out;
    }
    switch (s->kind) {
    case S_LEGACY:
        if (r->want == TP_REMOTE_AUTO)
            go_down(r, CORE_EPROTO,
                    "the server speaks neither Streamable HTTP (POST answered HTTP %d) nor "
                    "legacy HTTP+SSE (GET answered HTTP %d%s%s)",
                    r->probe_status, status, ct ? ", " : "", ct ? ct : "");
        else
            go_down(r, CORE_EPROTO, "legacy SSE stream: GET answered HTTP %d%s%s", status,
                    ct ? ", " : "", ct ? ct : "");
        break;
    case S_GET:
        if (status >= 500) {
            struct tp_hreq *qq = s->req;
            s->req = NULL;
            tp_hreq_abort(qq);
            stream_again(s, true);
        } else {
            core_log(CORE_LOG_DEBUG, "remote", "%s: no GET stream (HTTP %d)", r->url, status);
            r->get_refused = true;
            stream_drop(s);
        }
        break;
    case S_RESUME:
        resume_failed(s, "resuming the response stream: upstream answered HTTP %d", status);
        break;
    }
out:
    leave(r);
}

static int stream_on_data(void *ctx, struct tp_hreq *q, const char *d, size_t n)
{
    struct stream *s = ctx;
    struct tp_remote *r = s->r;
    GW_UNUSED(q);
    if (!r || !s->ok)
        return 0;
    enter(r);
    int rc = tp_sse_decoder_feed(&s->sse, d, n, stream_event, s);
    if (s->r && tp_sse_decoder_last_id(&s->sse)) {
        (void)snprintf(s->last_id, sizeof s->last_id, "%s", tp_sse_decoder_last_id(&s->sse));
        s->has_last_id = true;
    }
    if (rc != 0 && s->r && !gone(r)) {
        if (s->kind == S_RESUME)
            resume_failed(s, "upstream sent an SSE event larger than max_frame (%zu bytes)",
                          r->max_frame);
        else
            go_down(r, CORE_ETOOBIG,
                    "upstream sent a message larger than max_frame (%zu bytes) on its stream",
                    r->max_frame);
    } else if (s->r && s->kind == S_RESUME && s->answered) {
        stream_drop(s); /* the response is in: this stream has nothing more for us */
    }
    if (s->r && s->sse_live)
        s->retry_ms = tp_sse_decoder_retry_ms(&s->sse) ? tp_sse_decoder_retry_ms(&s->sse)
                                                      : s->retry_ms;
    leave(r);
    return 0;
}

static void stream_on_done(void *ctx, struct tp_hreq *q, int err, const char *why)
{
    struct stream *s = ctx;
    struct tp_remote *r = s->r;
    GW_UNUSED(q);
    if (!r)
        return;
    enter(r);
    s->req = NULL;
    if (!s->ok) {
        /* Failed before a good response (the status path handled those): a network error. */
        if (s->kind == S_LEGACY)
            go_down(r, err ? err : CORE_ECLOSED, "%s", why && *why ? why : "SSE stream failed");
        else if (s->kind == S_RESUME && s->backoff_ms >= 4 * DEFAULT_RETRY_MS)
            resume_failed(s, "resuming the response stream: %s", why ? why : "failed");
        else
            stream_again(s, true);
        goto out;
    }
    s->ok = false;
    if (s->sse_live) {
        unsigned rm = tp_sse_decoder_retry_ms(&s->sse);
        if (rm)
            s->retry_ms = rm;
    }
    switch (s->kind) {
    case S_LEGACY:
        go_down(r, err ? err : CORE_ECLOSED, "legacy SSE stream %s%s",
                err ? "failed: " : "closed by the server", err ? (why ? why : "") : "");
        break;
    case S_GET:
        core_log(CORE_LOG_DEBUG, "remote", "%s: GET stream ended: %s", r->url,
                 err ? (why ? why : "error") : "closed");
        stream_again(s, false);
        break;
    case S_RESUME:
        if (s->answered)
            stream_drop(s);
        else
            stream_again(s, false);
        break;
    }
out:
    leave(r);
}

static const struct tp_hreq_cbs stream_cbs = {
    .on_headers = stream_on_headers,
    .on_data = stream_on_data,
    .on_done = stream_on_done,
};

static void stream_connect(struct stream *s)
{
    struct tp_remote *r = s->r;
    bool legacy = s->kind == S_LEGACY;
    struct hdrs h;
    hdrs_common(r, &h, legacy);
    hdr_add(&h, core_xstrdup("Accept: text/event-stream"));
    if (s->has_last_id && !legacy)
        hdr_add(&h, xprintf("Last-Event-ID: %s", s->last_id));
    struct tp_hreq_opts o = {
        .method = "GET",
        .url = r->url,
        .headers = (const char *const *)h.v,
        .ca_file = r->ca_file,
        .connect_timeout_ms = r->connect_timeout_ms,
        .idle_timeout_ms = r->stall_ms,
    };
    s->ok = false;
    int rc = tp_hreq_start(r->hc, &o, &stream_cbs, s, &s->req);
    hdrs_dispose(&h);
    if (rc != 0) {
        s->req = NULL;
        go_down(r, rc, "cannot open the SSE stream of %s: %s", r->url, core_strerror(rc));
    }
}

/* ---- sending ----------------------------------------------------------------------------- */

static void send_msg(struct tp_remote *r, struct msg *m)
{
    switch (r->state) {
    case R_NEW:
        if (r->kind == TP_REMOTE_SSE) {
            hold_back(r, m);
            set_state(r, R_SSE_OPENING);
            struct stream *s = stream_new(r, S_LEGACY);
            r->get = s;
            stream_connect(s);
        } else {
            set_state(r, R_PROBING);
            start_post(r, m, true);
        }
        break;
    case R_OPEN:
        if (r->initialized_out)
            hold_back(r, m);
        else
            start_post(r, m, false);
        break;
    case R_PROBING:
    case R_SSE_OPENING:
    case R_AUTH:
        hold_back(r, m);
        break;
    case R_DOWN:
        msg_free(m);
        break;
    }
}

static void flush_held(struct tp_remote *r)
{
    while (r->held && !gone(r)) {
        if (r->state == R_NEW) {
            send_msg(r, unhold(r));
            continue;
        }
        if (r->state != R_OPEN || r->initialized_out)
            break;
        start_post(r, unhold(r), false);
    }
}

/* ---- URL helpers ------------------------------------------------------------------------- */

/* scheme://host[:port] of url, lower-cased, default port dropped; false when url is not
 * http(s)://host... */
static bool origin_of(const char *url, char *out, size_t cap)
{
    const char *auth;
    const char *scheme;
    const char *defport;
    if (strncasecmp(url, "http://", 7) == 0) {
        auth = url + 7;
        scheme = "http";
        defport = ":80";
    } else if (strncasecmp(url, "https://", 8) == 0) {
        auth = url + 8;
        scheme = "https";
        defport = ":443";
    } else
        return false;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || memchr(auth, '@', alen))
        return false; /* no host, or credentials in the URL */
    size_t dl = strlen(defport);
    if (alen > dl && strncmp(auth + alen - dl, defport, dl) == 0)
        alen -= dl;
    int n = snprintf(out, cap, "%s://%.*s", scheme, (int)alen, auth);
    if (n < 0 || (size_t)n >= cap)
        return false;
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return true;
}

GW_STATIC bool remote_same_origin(const char *a, const char *b)
{
    char oa[300];
    char ob[300];
    return origin_of(a, oa, sizeof oa) && origin_of(b, ob, sizeof ob) && strcmp(oa, ob) == 0;
}

/* ---- public API -------------------------------------------------------------------------- */

int tp_remote_new(struct tp_hclient *hc, const struct tp_remote_opts *opts,
                  const struct tp_remote_cbs *cbs, void *ctx, struct tp_remote **out)
{
    char origin[300];
    if (!hc || !opts || !opts->url || !origin_of(opts->url, origin, sizeof origin) ||
        strpbrk(opts->url, " \t\r\n"))
        return CORE_EINVAL;
    if (opts->kind != TP_REMOTE_AUTO && opts->kind != TP_REMOTE_STREAMABLE &&
        opts->kind != TP_REMOTE_SSE)
        return CORE_EINVAL;
    if (opts->bearer && strpbrk(opts->bearer, "\r\n"))
        return CORE_EINVAL;
    size_t nh = 0;
    for (; opts->headers && opts->headers[nh]; nh++) {
        if (strpbrk(opts->headers[nh], "\r\n") || !strchr(opts->headers[nh], ':'))
            return CORE_EINVAL;
    }
    struct tp_remote *r = core_xcalloc(1, sizeof *r);
    r->hc = hc;
    r->loop = tp_hclient_loop(hc);
    if (cbs)
        r->cbs = *cbs;
    r->ctx = ctx;
    r->url = core_xstrdup(opts->url);
    r->headers = core_xcalloc(nh + 1, sizeof *r->headers);
    for (size_t i = 0; i < nh; i++)
        r->headers[i] = core_xstrdup(opts->headers[i]);
    r->bearer = opts->bearer ? core_xstrdup(opts->bearer) : NULL;
    r->ca_file = opts->ca_file ? core_xstrdup(opts->ca_file) : NULL;
    r->max_frame = opts->max_frame ? opts->max_frame : DEFAULT_MAX_FRAME;
    r->max_queued = r->max_frame * 4 > ((size_t)16 << 20) ? r->max_frame * 4 : (size_t)16 << 20;
    r->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms
                                                     : DEFAULT_CONNECT_MS;
    r->stall_ms = opts->stall_ms ? opts->stall_ms : DEFAULT_STALL_MS;
    r->want = opts->kind;
    r->kind = opts->kind;
    r->state = R_NEW;
    *out = r;
    return 0;
}

/* A request's id (its JSON text) and whether it is initialize, and whether it is the
 * notifications/initialized notification; NULL id for notifications and responses; false for
 * anything that is not one JSON-RPC message (batches included: they are never sent, 2025-06-18
 * removed them). */
static bool scan_msg(const char *p, size_t n, char **id, bool *is_init, bool *is_initialized)
{
    struct core_rpc_env env;
    if (core_rpc_scan(p, n, &env) != 0 || env.kind == CORE_RPC_INVALID ||
        env.kind == CORE_RPC_BATCH)
        return false;
    *id = NULL;
    *is_init = false;
    *is_initialized = env.kind == CORE_RPC_NOTIFICATION &&
                      strcmp(env.method_str, "notifications/initialized") == 0;
    if (env.kind == CORE_RPC_REQUEST && env.id_type != CORE_JSON_NULL) {
        *id = core_xstrndup(p + env.id.off, env.id.len);
        *is_init = strcmp(env.method_str, "initialize") == 0;
    }
    return true;
}

int tp_remote_write(struct tp_remote *r, const char *p, size_t n)
{
    if (r->closing || r->state == R_DOWN)
        return CORE_ECLOSED;
    if (n > r->max_frame || r->queued + n > r->max_queued)
        return CORE_ETOOBIG;
    char *id;
    bool is_init, is_initialized;
    if (!scan_msg(p, n, &id, &is_init, &is_initialized))
        return CORE_EINVAL;
    struct msg *m = core_xmalloc(sizeof *m + n + 1);
    m->next = NULL;
    m->id = id;
    m->is_init = is_init;
    m->is_initialized = is_initialized;
    m->n = n;
    memcpy(m->data, p, n);
    m->data[n] = '\0';
    enter(r);
    send_msg(r, m);
    leave(r);
    return 0;
}

void tp_remote_ready(struct tp_remote *r, const char *protocol_version)
{
    if (gone(r))
        return;
    core_free(r->proto);
    r->proto = protocol_version ? core_xstrdup(protocol_version) : NULL;
    r->ready = true;
    if (r->kind == TP_REMOTE_STREAMABLE && !r->get && !r->get_refused && r->state == R_OPEN) {
        enter(r);
        r->get = stream_new(r, S_GET);
        stream_connect(r->get);
        leave(r);
    }
}

void tp_remote_set_bearer(struct tp_remote *r, const char *bearer)
{
    if (bearer && strpbrk(bearer, "\r\n"))
        return;
    if (r->bearer) {
        memset(r->bearer, 0, strlen(r->bearer));
        core_free(r->bearer);
    }
    r->bearer = bearer ? core_xstrdup(bearer) : NULL;
}

void tp_remote_resume(struct tp_remote *r)
{
    if (gone(r) || r->state != R_AUTH)
        return;
    enter(r);
    enum rstate back = r->auth_from;
    if (back == R_PROBING || back == R_SSE_OPENING)
        back = R_NEW;
    set_state(r, back);
    flush_held(r);
    if (!gone(r) && r->state == R_OPEN && r->ready && r->kind == TP_REMOTE_STREAMABLE &&
        !r->get && !r->get_refused) {
        r->get = stream_new(r, S_GET);
        stream_connect(r->get);
    }
    /* Resume streams waiting out an auth episode reconnect now. */
    for (struct stream *s = r->streams; s && !gone(r); s = s->next) {
        if (s->kind == S_RESUME && !s->req && !uv_is_active((uv_handle_t *)&s->timer))
            stream_later(s, 0);
    }
    leave(r);
}

size_t tp_remote_queued(const struct tp_remote *r)
{
    return r->queued;
}

const char *tp_remote_kind_name(const struct tp_remote *r)
{
    switch (r->kind) {
    case TP_REMOTE_STREAMABLE:
        return "streamable-http";
    case TP_REMOTE_SSE:
        return "sse";
    default:
        return "auto";
    }
}

const char *tp_remote_session_id(const struct tp_remote *r)
{
    return r->session_id;
}

static void delete_done(void *ctx, struct tp_hreq *q, int err, const char *why)
{
    GW_UNUSED(ctx);
    GW_UNUSED(q);
    GW_UNUSED(err);
    GW_UNUSED(why);
}

static const struct tp_hreq_cbs delete_cbs = {.on_done = delete_done};

void tp_remote_close(struct tp_remote *r)
{
    if (!r || r->closing)
        return;
    if (r->kind == TP_REMOTE_STREAMABLE && r->session_id && r->state != R_DOWN) {
        struct hdrs h;
        hdrs_common(r, &h, false);
        struct tp_hreq_opts o = {
            .method = "DELETE",
            .url = r->url,
            .headers = (const char *const *)h.v,
            .ca_file = r->ca_file,
            .connect_timeout_ms = r->connect_timeout_ms,
            .deadline_ms = DELETE_DEADLINE_MS,
            .max_body = 4096,
        };
        struct tp_hreq *q;
        if (tp_hreq_start(r->hc, &o, &delete_cbs, NULL, &q) != 0)
            core_log(CORE_LOG_DEBUG, "remote", "%s: DELETE not sent", r->url);
        hdrs_dispose(&h);
    }
    r->closing = true;
    drop_everything(r);
    if (r->depth == 0)
        remote_free(r);
}
