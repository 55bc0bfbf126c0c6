/* The router: what each MCP method means for a federation of upstreams. It never touches a
 * socket: fronts hand it messages through fed_router_*, upstreams through fed_router_*. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "policy/pins.h"
#include "policy/policy.h"

#define NAME_BUF 1024
#define URI_BUF 8192
#define DEFAULT_LOG_LEVEL 1 /* "info" for sessions that never sent logging/setLevel */
#define S2C_MAX 64          /* server->client requests waiting for one session's answers */
#define SUBS_MAX 128        /* resource subscriptions of one session */

static const char *const list_methods[FED_LIST_COUNT] = {
    "tools/list", "prompts/list", "resources/list", "resources/templates/list"};
static const char *const list_keys[FED_LIST_COUNT] = {"tools", "prompts", "resources",
                                                       "resourceTemplates"};
static const char *const list_caps[FED_LIST_COUNT] = {"tools", "prompts", "resources",
                                                       "resources"};
static const char *const mcp_levels[] = {"debug",    "info",  "notice",    "warning",
                                         "error",    "critical", "alert", "emergency"};

int fed_mcp_level_index(const char *s)
{
    for (int i = 0; i < 8; i++)
        if (strcmp(s, mcp_levels[i]) == 0)
            return i;
    return -1;
}

const char *fed_mcp_level_name(int i)
{
    return i >= 0 && i < 8 ? mcp_levels[i] : NULL;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static int json_string(struct core_buf *b, const char *s)
{
    int rc = core_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = core_buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc = core_buf_appendf(b, "\\u%04x", *p);
        else
            rc = core_buf_append(b, p, 1);
    }
    if (rc == 0)
        rc = core_buf_append(b, "\"", 1);
    return rc;
}

/* Writes v in decimal (no NUL) and returns the length; out holds at least 20 bytes. */
static size_t u64_dec(uint64_t v, char *out)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static bool span_uint(const char *p, struct core_span sp, uint64_t *out)
{
    if (sp.len == 0 || sp.len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < sp.len; i++) {
        char ch = p[sp.off + i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    *out = v;
    return true;
}

/* Decodes the JSON string at span v (a recorded member, or absent) into out. False when it is
 * absent, not a string, does not fit, or holds a NUL (which would make the C string say less
 * than the peer sent). */
static bool span_str(const char *frame, struct core_span v, char *out, size_t cap)
{
    if (v.len < 2 || frame[v.off] != '"')
        return false;
    int rc = core_json_unescape(frame + v.off, v.len, out, cap);
    return rc >= 0 && strlen(out) == (size_t)rc;
}

/* The string member `key` of the object at span obj: 1 (decoded into out; where = its span,
 * may be NULL), 0 when absent or not a string, or CORE_EDUP when the key is repeated. */
static int member_str(const char *frame, struct core_span obj, const char *key, char *out,
                      size_t cap, struct core_span *where)
{
    struct core_span v;
    if (obj.len == 0)
        return 0;
    int rc = core_json_obj_get(frame, obj, key, &v, NULL);
    if (rc == CORE_EDUP)
        return rc;
    if (rc != 0 || !span_str(frame, v, out, cap))
        return 0;
    if (where)
        *where = v;
    return 1;
}

/* Writes one frame to an upstream: the parts, then "\n". Raw newlines can only be JSON
 * whitespace (strings escape them), so a pretty-printed body is flattened with spaces. */
static int write_frame(struct fed_upstream *up, const uv_buf_t *parts, unsigned n)
{
    uv_buf_t v[12];
    bool dirty = false;
    for (unsigned i = 0; i < n; i++)
        if (memchr(parts[i].base, '\n', parts[i].len) || memchr(parts[i].base, '\r', parts[i].len))
            dirty = true;
    if (!dirty && n < 12) {
        memcpy(v, parts, n * sizeof *v);
        v[n] = uv_buf_init("\n", 1);
        return fed_upstream_write(up, v, n + 1);
    }
    struct core_buf b;
    core_buf_init(&b, 0);
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < n; i++)
        rc = core_buf_append(&b, parts[i].base, parts[i].len);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '\n' || b.data[i] == '\r')
            b.data[i] = ' ';
    if (rc == 0)
        rc = core_buf_append(&b, "\n", 1);
    if (rc == 0) {
        uv_buf_t u = uv_buf_init(b.data, (unsigned)b.len);
        rc = fed_upstream_write(up, &u, 1);
    }
    core_buf_dispose(&b);
    return rc;
}

static void call_errorf(struct fed_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_errorf(struct fed_call *c, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fed_call_error(c, code, msg);
}

static void call_result_json(struct fed_call *c, cJSON *result)
{
    char *txt = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);
    fed_call_result(c, txt);
    core_free(txt);
}

/* ---- forwarding a client request ----------------------------------------------------------- */

/* A replacement of bytes inside the request's params. */
struct repl {
    struct core_span at;
    const char *bytes;
    size_t len;
};

static void forward(struct fed_call *c, struct fed_upstream *up, const char *frame,
                    const struct core_rpc_env *env, struct repl *r, size_t nr)
{
    /* The progress token is read and rewritten: it must mean one thing. */
    struct core_span meta = env->param[CORE_P_META], tok;
    enum core_json_type tt = CORE_JSON_ABSENT;
    if (meta.len && frame[meta.off] == '{' &&
        core_json_obj_get(frame, meta, "progressToken", &tok, &tt) == CORE_EDUP) {
        fed_call_error(c, -32600, "Invalid Request: duplicate \"progressToken\" key in _meta");
        return;
    }
    if (!fed_upstream_is_ready(up)) {
        if (up->last_error && up->state != FED_UP_INITIALIZING)
            call_errorf(c, -32603, "server '%s' is unavailable: %.400s", up->srv->cfg->name,
                        up->last_error);
        else
            call_errorf(c, -32603, "server '%s' is not ready (%s)", up->srv->cfg->name,
                        fed_up_state_name(up->state));
        return;
    }
    struct fed_pending *p = fed_upstream_pend(up, c);
    c->pend = p;
    c->up = up;
    /* Progress tokens: the upstream sees its own request id as the token, so two clients using
     * the same token never see each other's progress. */
    struct repl all[4];
    size_t na = 0;
    for (size_t i = 0; i < nr && na < 3; i++)
        all[na++] = r[i];
    char tokbuf[24];
    if (tt == CORE_JSON_STRING || tt == CORE_JSON_NUMBER) {
        core_free(c->progress_token);
        c->progress_token = core_xmemdup(frame + tok.off, tok.len);
        c->progress_token_len = tok.len;
        all[na++] = (struct repl){tok, tokbuf, u64_dec(p->id, tokbuf)};
    }
    /* Sort by offset (at most four entries). */
    for (size_t i = 1; i < na; i++)
        for (size_t j = i; j > 0 && all[j].at.off < all[j - 1].at.off; j--) {
            struct repl t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    static const char h1[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    char head[64];
    size_t hl = sizeof h1 - 1;
    memcpy(head, h1, hl);
    hl += u64_dec(p->id, head + hl);
    memcpy(head + hl, ",\"method\":", 10);
    hl += 10;
    uv_buf_t parts[12];
    unsigned np = 0;
    parts[np++] = uv_buf_init(head, (unsigned)hl);
    parts[np++] = uv_buf_init((char *)frame + env->method.off, (unsigned)env->method.len);
    if (env->params.len) {
        parts[np++] = uv_buf_init(",\"params\":", 10);
        size_t pos = env->params.off, end = env->params.off + env->params.len;
        for (size_t i = 0; i < na; i++) {
            parts[np++] = uv_buf_init((char *)frame + pos, (unsigned)(all[i].at.off - pos));
            parts[np++] = uv_buf_init((char *)all[i].bytes, (unsigned)all[i].len);
            pos = all[i].at.off + all[i].at.len;
        }
        parts[np++] = uv_buf_init((char *)frame + pos, (unsigned)(end - pos));
    }
    parts[np++] = uv_buf_init("}", 1);
    int rc = write_frame(up, parts, np);
    if (rc) {
        fed_upstream_unpend(up, p);
        call_errorf(c, -32603, "server '%s' is not reachable: %s", up->srv->cfg->name,
                    core_strerror(rc));
    }
}

/* ---- names and routing -------------------------------------------------------------------- */

/* The instance serving an exposed tool (kind 0) or prompt (1) name for this session, with the
 * upstream's own name in *orig (borrowed from the instance's cached list, or `fallback`). Only
 * exposed names route: a server's name is looked up in the exposed names of its cached list;
 * while that list is not known yet, only a name that is exposed as itself (prefix + "__" +
 * name, nothing sanitised or shortened) routes. Servers are tried in config order, as lists
 * are merged, so the first server exposing a name serves it. */
static struct fed_upstream *resolve_any(struct fed_session *s, int kind, const char *exposed,
                                        const char **orig, char fallback[NAME_BUF])
{
    struct fed_gateway *gw = s->gw;
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_upstream *up = s->inst[i];
        const char *pre = gw->servers[i]->cfg->prefix;
        size_t pl = strlen(pre);
        if (up == NULL || (pl && (strncmp(exposed, pre, pl) != 0 || exposed[pl] != '_' ||
                                  exposed[pl + 1] != '_')))
            continue;
        bool known;
        const char *o = fed_upstream_name_of(up, kind, exposed, &known);
        if (o) {
            *orig = o;
            return up;
        }
        if (known)
            continue;
        const char *raw = exposed + (pl ? pl + 2 : 0);
        char check[65];
        if (strlen(raw) < NAME_BUF && !fed_name_expose(pre, raw, check) &&
            strcmp(check, exposed) == 0) {
            snprintf(fallback, NAME_BUF, "%s", raw);
            *orig = fallback;
            return up;
        }
    }
    return NULL;
}

/* resolve_any, and NULL when the session's client may not use the name (then *denied is the
 * instance it would have been). Policy is checked on the exposed name. */
static struct fed_upstream *resolve_name(struct fed_session *s, int kind, const char *exposed,
                                         const char **orig, char fallback[NAME_BUF],
                                         struct fed_upstream **denied)
{
    struct fed_upstream *up = resolve_any(s, kind, exposed, orig, fallback);
    *denied = NULL;
    if (up && !pol_client_allows(s->ccfg, up->srv->cfg->name, exposed)) {
        *denied = up;
        return NULL;
    }
    return up;
}

static struct fed_upstream *route_uri(struct fed_session *s, const char *uri)
{
    struct fed_gateway *gw = s->gw;
    struct fed_upstream *best = NULL, *only = NULL;
    size_t best_len = 0;
    int with_resources = 0;
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_upstream *up = s->inst[i];
        if (!fed_upstream_is_ready(up) || !fed_upstream_has_cap(up, "resources") ||
            !pol_client_has_server(s->ccfg, gw->servers[i]->cfg->name))
            continue;
        with_resources++;
        only = up;
        bool exact;
        size_t m = fed_upstream_res_match(up, uri, &exact);
        if (exact) {
            best = up;
            break;
        }
        if (m > best_len) {
            best_len = m;
            best = up;
        }
    }
    if (best == NULL && with_resources == 1)
        best = only;
    /* A URI the client may not see is as unknown as one nobody serves. */
    if (best && !pol_client_allows(s->ccfg, best->srv->cfg->name, uri))
        best = NULL;
    return best;
}

/* ---- initialize --------------------------------------------------------------------------- */

static bool session_waiting(const struct fed_session *s)
{
    for (size_t i = 0; i < s->gw->n_servers; i++) {
        const struct fed_upstream *up = s->inst[i];
        if (up && (up->state == FED_UP_STARTING || up->state == FED_UP_INITIALIZING))
            return true;
    }
    return false;
}

static void finish_initialize(struct fed_call *c)
{
    struct fed_session *s = c->sess;
    struct fed_gateway *gw = s->gw;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "protocolVersion", s->protocol_version);
    cJSON *caps = cJSON_AddObjectToObject(res, "capabilities");
    bool tools = false, prompts = false, resources = false, subscribe = false, completions = false;
    struct core_buf ins;
    core_buf_init(&ins, 0);
    int rc = 0;
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_upstream *up = s->inst[i];
        if (!fed_upstream_is_ready(up) || !pol_client_has_server(s->ccfg, up->srv->cfg->name))
            continue;
        tools |= fed_upstream_has_cap(up, "tools");
        prompts |= fed_upstream_has_cap(up, "prompts");
        completions |= fed_upstream_has_cap(up, "completions");
        cJSON *r = cJSON_GetObjectItemCaseSensitive(up->capabilities, "resources");
        if (r) {
            resources = true;
            subscribe |= cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "subscribe"));
        }
        if (up->instructions && rc == 0)
            rc = core_buf_appendf(&ins, "%s## %s\n%s", ins.len ? "\n\n" : "", up->srv->cfg->name,
                                  up->instructions);
    }
    /* The gateway answers logging/setLevel itself, and can always tell clients when the
     * federated lists change. */
    cJSON_AddObjectToObject(caps, "logging");
    if (completions)
        cJSON_AddObjectToObject(caps, "completions");
    if (prompts)
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(caps, "prompts"), "listChanged");
    if (resources) {
        cJSON *r = cJSON_AddObjectToObject(caps, "resources");
        if (subscribe)
            cJSON_AddTrueToObject(r, "subscribe");
        cJSON_AddTrueToObject(r, "listChanged");
    }
    if (tools)
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(caps, "tools"), "listChanged");
    cJSON *info = cJSON_AddObjectToObject(res, "serverInfo");
    cJSON_AddStringToObject(info, "name", "agentgate");
    cJSON_AddStringToObject(info, "version", AG_VERSION);
    if (ins.len)
        cJSON_AddStringToObject(res, "instructions", ins.data);
    core_buf_dispose(&ins);
    s->initialized = true;
    core_log(CORE_LOG_INFO, "sess", "%.8s: initialized (protocol %s)", s->id, s->protocol_version);
    call_result_json(c, res);
}

static void handle_initialize(struct fed_call *c, const char *frame, const struct core_rpc_env *env)
{
    struct fed_session *s = c->sess;
    cJSON *params = env->params.len ? cJSON_ParseWithLength(frame + env->params.off, env->params.len)
                                    : NULL;
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(params, "protocolVersion");
    if (!cJSON_IsObject(params) || !cJSON_IsString(ver)) {
        cJSON_Delete(params);
        fed_call_error(c, -32602, "initialize needs params.protocolVersion");
        return;
    }
    const char *chosen = fed_version_supported(ver->valuestring, strlen(ver->valuestring))
                             ? ver->valuestring
                             : FED_LATEST_VERSION;
    core_free(s->protocol_version);
    s->protocol_version = core_xstrdup(chosen);
    cJSON_Delete(s->client_caps);
    s->client_caps = cJSON_DetachItemFromObjectCaseSensitive(params, "capabilities");
    if (!cJSON_IsObject(s->client_caps)) {
        cJSON_Delete(s->client_caps);
        s->client_caps = cJSON_CreateObject();
    }
    cJSON_Delete(s->client_info);
    s->client_info = cJSON_DetachItemFromObjectCaseSensitive(params, "clientInfo");
    cJSON_Delete(params);
    if (session_waiting(s)) {
        /* Upstreams still starting: answer when they are ready, so the capabilities mean
         * something, but never later than the list deadline. */
        c->deferred = true;
        c->deadline = fed_now(s->gw) + s->gw->cfg->list_timeout_ms;
        s->init_waiting = true;
        return;
    }
    finish_initialize(c);
}

/* Requests pipelined behind a deferred initialize go out in arrival order once it is answered. */
static void dispatch_queued(struct fed_session *s)
{
    for (;;) {
        struct fed_call *oldest = NULL;
        for (struct fed_call *c = s->calls; c; c = c->next)
            if (c->queued)
                oldest = c; /* the list is newest first */
        if (oldest == NULL)
            return;
        char *frame = oldest->queued;
        size_t n = oldest->queued_len;
        oldest->queued = NULL;
        struct core_rpc_env env;
        if (core_rpc_scan(frame, n, &env) == 0)
            fed_router_request(oldest, frame, n, &env);
        else
            fed_call_error(oldest, -32700, "Parse error");
        core_free(frame);
    }
}

static void sync_upstream_level(struct fed_upstream *up);
static void subscribe(struct fed_session *s, struct fed_upstream *up, const char *uri);

/* A restored session's upstreams are up (or the wait ran out): its subscriptions and log level
 * apply to them, then the requests that waited go out in order. */
static void finish_restore(struct fed_session *s)
{
    s->restoring = false;
    cJSON *subs = s->restore_subs;
    s->restore_subs = NULL;
    cJSON *u;
    cJSON_ArrayForEach(u, subs)
    {
        if (!cJSON_IsString(u))
            continue;
        struct fed_upstream *up = route_uri(s, u->valuestring);
        if (up)
            subscribe(s, up, u->valuestring);
        else
            core_log(CORE_LOG_WARN, "sess", "%.8s: subscription %.200s not restored: no server "
                     "has it now", s->id, u->valuestring);
    }
    cJSON_Delete(subs);
    for (size_t i = 0; i < s->gw->n_servers; i++)
        if (s->inst[i])
            sync_upstream_level(s->inst[i]);
    dispatch_queued(s);
}

void fed_router_session_restored(struct fed_session *s)
{
    if (session_waiting(s)) {
        s->restoring = true;
        s->restore_deadline = fed_now(s->gw) + s->gw->cfg->list_timeout_ms;
        return;
    }
    finish_restore(s);
}

void fed_router_check_deferred(struct fed_gateway *gw)
{
    uint64_t now = fed_now(gw);
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        bool waiting = session_waiting(s);
        if (s->restoring && (!waiting || now >= s->restore_deadline)) {
            finish_restore(s);
            break; /* the session table may have changed; the next tick sees the rest */
        }
        struct fed_call *c = s->calls, *next;
        for (; c; c = next) {
            next = c->next;
            if (c->deferred && (!waiting || now >= c->deadline)) {
                c->deferred = false;
                s->init_waiting = false;
                finish_initialize(c);
                dispatch_queued(s);
                break; /* the call list changed under us; the next tick sees the rest */
            }
        }
    }
}

/* ---- logging ----------------------------------------------------------------------------- */

/* Sets each upstream's level to the most verbose level any of its sessions asked for. */
static void sync_upstream_level(struct fed_upstream *up)
{
    if (!fed_upstream_is_ready(up) || !fed_upstream_has_cap(up, "logging") || up->srv->retired)
        return;
    int lvl = -1;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&up->gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        if (s->inst[up->srv->index] == up && s->mcp_log_level >= 0 &&
            (lvl < 0 || s->mcp_log_level < lvl))
            lvl = s->mcp_log_level;
    }
    if (lvl < 0 || (up->log_level && strcmp(up->log_level, mcp_levels[lvl]) == 0))
        return;
    core_free(up->log_level);
    up->log_level = core_xstrdup(mcp_levels[lvl]);
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "level", mcp_levels[lvl]);
    (void)fed_upstream_request(up, "logging/setLevel", params, 0, NULL, NULL);
}

static void handle_set_level(struct fed_call *c, const char *frame, const struct core_rpc_env *env)
{
    char level[32];
    int idx = span_str(frame, env->param[CORE_P_LEVEL], level, sizeof level)
                  ? fed_mcp_level_index(level)
                  : -1;
    if (idx < 0) {
        fed_call_error(c, -32602, "params.level must be one of debug, info, notice, warning, "
                                   "error, critical, alert, emergency");
        return;
    }
    struct fed_session *s = c->sess;
    s->mcp_log_level = idx;
    s->token_stale = true;
    for (size_t i = 0; i < s->gw->n_servers; i++)
        if (s->inst[i])
            sync_upstream_level(s->inst[i]);
    fed_call_result(c, "{}");
}

/* ---- lists: fan-out and merge ------------------------------------------------------------- */

struct fan_part {
    struct fed_fanout *f;
    struct fed_server *srv;  /* referenced: a reload may retire it meanwhile */
    size_t srv_index;        /* its position when the fan-out started (for cursors) */
    struct fed_upstream *up; /* alive while its request is pending */
    char *cursor;            /* the upstream cursor to continue from, or NULL */
    cJSON *result;
    bool done;               /* its request has completed (or never went out) */
};

/* One list request fanned out to the upstreams. The answer goes out when every part is in or
 * at the list deadline, whichever is first; the object lives until every part has completed. */
struct fed_fanout {
    struct fed_call *call; /* NULL once orphaned */
    enum fed_list list;
    size_t n;
    size_t remaining;      /* parts whose request is still pending */
    struct fan_part *parts;
    uv_timer_t timer;      /* the list deadline */
    bool timer_on;
    bool answered;
};

static void fan_free(struct fed_fanout *f)
{
    for (size_t i = 0; i < f->n; i++) {
        core_free(f->parts[i].cursor);
        cJSON_Delete(f->parts[i].result);
        fed_server_unref(f->parts[i].srv);
    }
    core_free(f->parts);
    core_free(f);
}

static void on_fan_timer_close(uv_handle_t *h)
{
    fan_free(container_of((uv_timer_t *)h, struct fed_fanout, timer));
}

/* Frees the fan-out once it has answered and no part is pending any more. */
static void fan_release(struct fed_fanout *f)
{
    if (!f->answered || f->remaining > 0)
        return;
    if (f->timer_on) {
        uv_timer_stop(&f->timer);
        uv_close((uv_handle_t *)&f->timer, on_fan_timer_close);
    } else {
        fan_free(f);
    }
}

void fed_fanout_orphan(struct fed_fanout *f)
{
    f->call = NULL;
}

/* A server that missed the list deadline gets its cached list served from now on. */
static void mark_late(struct fed_upstream *up, enum fed_list l)
{
    if (up->list_late[l])
        return;
    core_log(CORE_LOG_WARN, "router", "%s: slow to answer %s; its cached list will be served",
             up->name, list_methods[l]);
    up->list_late[l] = true;
    if (!up->list_refreshing[l])
        fed_upstream_fetch_list(up, l);
}

/* Checks a tool definition of srv against its pin (trust on first use). Returns true when the
 * tool must be hidden (pin = quarantine and it changed). `first` says the server had no pins
 * before this list, so its tools are not news. */
static bool pin_check(struct fed_server *srv, const cJSON *tool, bool first)
{
    struct fed_gateway *gw = srv->gw;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tool, "name");
    if (gw->pins == NULL || srv->cfg->pin == CORE_PIN_OFF || !cJSON_IsString(name))
        return false;
    const char *nm = name->valuestring;
    size_t nl = strlen(nm);
    char what[256];
    enum pol_pin_verdict v = pol_pins_check(gw->pins, srv->cfg->name, tool, what, sizeof what);
    struct fed_pin_change *pc = core_map_str_get(&srv->pin_changed, nm, nl);
    switch (v) {
    case POL_PIN_FIRST:
        return false;
    case POL_PIN_NEW:
        if (!first)
            core_log(CORE_LOG_WARN, "pins", "%s: new tool %s (pinned now)", srv->cfg->name, nm);
        return false;
    case POL_PIN_SAME:
        if (pc) {
            core_log(CORE_LOG_INFO, "pins", "%s: tool %s is back to its pinned definition",
                     srv->cfg->name, nm);
            bool was_hidden = pc->hidden;
            core_map_str_del(&srv->pin_changed, nm, nl);
            core_free(pc->what);
            core_free(pc);
            if (was_hidden)
                fed_gateway_lists_changed(gw, NULL, 1u << FED_LIST_TOOLS);
        }
        return false;
    case POL_PIN_CHANGED:
        break;
    }
    if (pc == NULL || strcmp(pc->what, what) != 0) {
        bool hide = srv->cfg->pin == CORE_PIN_QUARANTINE;
        if (pc == NULL) {
            pc = core_xcalloc(1, sizeof *pc);
            core_map_str_put(&srv->pin_changed, nm, nl, pc);
        }
        core_free(pc->what);
        pc->what = core_xstrdup(what);
        pc->hidden = hide;
        if (hide) {
            core_log(CORE_LOG_WARN, "pins",
                     "%s: tool %s changed since it was pinned (%s); it is quarantined until "
                     "`agentgate approve %s %s`", srv->cfg->name, nm, what, srv->cfg->name, nm);
            fed_gateway_lists_changed(gw, NULL, 1u << FED_LIST_TOOLS);
        } else {
            core_log(CORE_LOG_WARN, "pins",
                     "%s: tool %s changed since it was pinned (%s); served anyway (pin = warn)",
                     srv->cfg->name, nm, what);
        }
    }
    return pc->hidden;
}

/* Whether a tool of a client's list must be hidden by its pin. A definition equal to the one
 * the gateway's own fetch checked (known: name -> cached definition) has its verdict already;
 * anything else (a server answering clients differently) is hashed and checked again. */
static bool tool_hidden(struct fed_server *srv, const cJSON *tool, struct core_map_str *known,
                        bool first)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(tool, "name")->valuestring;
    size_t nl = strlen(name);
    const cJSON *cached = core_map_str_get(known, name, nl);
    if (cached && cJSON_Compare(tool, cached, 1)) {
        const struct fed_pin_change *pc = core_map_str_get(&srv->pin_changed, name, nl);
        return pc && pc->hidden;
    }
    return pin_check(srv, tool, first);
}

static void fan_answer(struct fed_fanout *f)
{
    f->answered = true;
    struct fed_call *c = f->call;
    if (c == NULL)
        return;
    f->call = NULL;
    c->fan = NULL;
    struct fed_session *s = c->sess;
    struct fed_gateway *gw = s->gw;
    enum fed_list l = f->list;
    cJSON *res = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(res, list_keys[l]);
    cJSON *cursors = cJSON_CreateArray();
    struct core_map_str seen;
    core_map_str_init(&seen);
    for (size_t i = 0; i < f->n; i++) {
        struct fan_part *pt = &f->parts[i];
        if (pt->result == NULL)
            continue;
        struct fed_server *srv = pt->srv;
        if (srv->retired)
            continue;
        bool pins = l == FED_LIST_TOOLS && gw->pins && srv->cfg->pin != CORE_PIN_OFF;
        bool first = pins && !pol_pins_has_server(gw->pins, srv->cfg->name);
        /* The definitions the gateway's own fetch checked already, by name. */
        struct core_map_str known;
        core_map_str_init(&known);
        const struct fed_upstream *cur = pins ? s->inst[srv->index] : NULL;
        const cJSON *cached = cur ? cur->lists[FED_LIST_TOOLS] : NULL;
        const cJSON *ci;
        cJSON_ArrayForEach(ci, cached)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(ci, "name");
            if (cJSON_IsString(n))
                core_map_str_put(&known, n->valuestring, strlen(n->valuestring), (void *)ci);
        }
        cJSON *arr = cJSON_GetObjectItemCaseSensitive(pt->result, list_keys[l]);
        cJSON *item;
        while (cJSON_IsArray(arr) && (item = cJSON_DetachItemFromArray(arr, 0)) != NULL) {
            if (l == FED_LIST_RESOURCES || l == FED_LIST_TEMPLATES) {
                cJSON *uri = cJSON_GetObjectItemCaseSensitive(
                    item, l == FED_LIST_RESOURCES ? "uri" : "uriTemplate");
                if (!cJSON_IsString(uri) ||
                    !pol_client_allows(s->ccfg, srv->cfg->name, uri->valuestring)) {
                    cJSON_Delete(item);
                    continue;
                }
            }
            if (l == FED_LIST_TOOLS || l == FED_LIST_PROMPTS) {
                cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
                if (!cJSON_IsString(name) || (pins && tool_hidden(srv, item, &known, first))) {
                    cJSON_Delete(item);
                    continue;
                }
                char exposed[65];
                (void)fed_name_expose(srv->cfg->prefix, name->valuestring, exposed);
                if (!pol_client_allows(s->ccfg, srv->cfg->name, exposed)) {
                    cJSON_Delete(item);
                    continue;
                }
                if (core_map_str_get(&seen, exposed, strlen(exposed))) {
                    core_log_limited(&srv->log_limit, CORE_LOG_WARN, "router",
                                     "%s: %s exposed twice; keeping the first", srv->cfg->name,
                                     exposed);
                    cJSON_Delete(item);
                    continue;
                }
                core_map_str_put(&seen, exposed, strlen(exposed), (void *)1);
                cJSON_SetValuestring(name, exposed);
            }
            cJSON_AddItemToArray(items, item);
        }
        core_map_str_dispose(&known);
        cJSON *next = cJSON_GetObjectItemCaseSensitive(pt->result, "nextCursor");
        if (cJSON_IsString(next)) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)pt->srv_index));
            cJSON_AddItemToArray(pair, cJSON_CreateString(next->valuestring));
            cJSON_AddItemToArray(cursors, pair);
        }
    }
    core_map_str_dispose(&seen);
    if (cJSON_GetArraySize(cursors) > 0) {
        cJSON *cur = cJSON_CreateObject();
        cJSON_AddNumberToObject(cur, "g", (double)gw->list_gen);
        cJSON_AddNumberToObject(cur, "l", l);
        cJSON_AddItemToObject(cur, "c", cursors);
        char *txt = cJSON_PrintUnformatted(cur);
        cJSON_Delete(cur);
        struct core_buf sealed;
        core_buf_init(&sealed, 0);
        if (auth_seal(txt, strlen(txt), &sealed) == 0)
            cJSON_AddStringToObject(res, "nextCursor", sealed.data);
        core_buf_dispose(&sealed);
        core_free(txt);
    } else {
        cJSON_Delete(cursors);
    }
    call_result_json(c, res);
}

static void on_fan_part(void *ctx, struct fed_upstream *up, int err, const char *frame, size_t n,
                        const struct core_rpc_env *env)
{
    (void)n;
    struct fan_part *pt = ctx;
    struct fed_fanout *f = pt->f;
    pt->done = true;
    if (f->answered) {
        /* Too late for the answer; the cache refresh is already under way. */
    } else if (err == 0 && env->kind == CORE_RPC_RESULT) {
        pt->result = cJSON_ParseWithLength(frame + env->result.off, env->result.len);
    } else {
        core_log_limited(&up->log_limit, CORE_LOG_WARN, "router",
                         "%s: %s left out of the answer: %s", up->name, list_methods[f->list],
                         err ? core_strerror(err) : "the server answered an error");
        if (err == CORE_ETIMEDOUT)
            mark_late(up, f->list);
    }
    if (--f->remaining == 0 && !f->answered)
        fan_answer(f);
    fan_release(f);
}

static void on_fan_deadline(uv_timer_t *t)
{
    struct fed_fanout *f = container_of(t, struct fed_fanout, timer);
    if (f->answered)
        return;
    for (size_t i = 0; i < f->n; i++)
        if (!f->parts[i].done) {
            core_log_limited(&f->parts[i].up->log_limit, CORE_LOG_WARN, "router",
                             "%s: %s left out of the answer: past the deadline",
                             f->parts[i].up->name, list_methods[f->list]);
            mark_late(f->parts[i].up, f->list);
        }
    fan_answer(f);
    fan_release(f);
}

/* Parses a gateway cursor into the (server, upstream cursor) pairs to continue from. */
static cJSON *open_cursor(struct fed_gateway *gw, const char *frame, const struct core_rpc_env *env,
                          enum fed_list l, bool *bad)
{
    *bad = false;
    struct core_span v = env->param[CORE_P_CURSOR];
    if (v.len == 0)
        return NULL;
    *bad = true;
    if (frame[v.off] != '"' || v.len < 2)
        return NULL;
    struct core_buf plain;
    core_buf_init(&plain, 65536);
    cJSON *cur = NULL;
    if (auth_open(frame + v.off + 1, v.len - 2, &plain) == 0) {
        cur = cJSON_ParseWithLength(plain.data, plain.len);
        cJSON *g = cJSON_GetObjectItemCaseSensitive(cur, "g");
        cJSON *lj = cJSON_GetObjectItemCaseSensitive(cur, "l");
        if (!cJSON_IsNumber(g) || (uint64_t)g->valuedouble != gw->list_gen || !cJSON_IsNumber(lj) ||
            lj->valueint != (int)l || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(cur, "c"))) {
            cJSON_Delete(cur);
            cur = NULL;
        }
    }
    core_buf_dispose(&plain);
    if (cur)
        *bad = false;
    return cur;
}

static void handle_list(struct fed_call *c, const char *frame, const struct core_rpc_env *env,
                        enum fed_list l)
{
    struct fed_session *s = c->sess;
    struct fed_gateway *gw = s->gw;
    bool bad;
    cJSON *cur = open_cursor(gw, frame, env, l, &bad);
    if (bad) {
        fed_call_error(c, -32602, "invalid or expired cursor");
        return;
    }
    struct fed_fanout *f = core_xcalloc(1, sizeof *f);
    f->call = c;
    f->list = l;
    f->parts = core_xcalloc(gw->n_servers ? gw->n_servers : 1, sizeof *f->parts);
    if (cur) {
        cJSON *pair;
        cJSON_ArrayForEach(pair, cJSON_GetObjectItemCaseSensitive(cur, "c"))
        {
            cJSON *i = cJSON_GetArrayItem(pair, 0), *uc = cJSON_GetArrayItem(pair, 1);
            if (!cJSON_IsNumber(i) || !cJSON_IsString(uc) || i->valueint < 0 ||
                (size_t)i->valueint >= gw->n_servers || f->n >= gw->n_servers ||
                !pol_client_has_server(s->ccfg, gw->servers[i->valueint]->cfg->name))
                continue;
            f->parts[f->n].srv_index = (size_t)i->valueint;
            f->parts[f->n].cursor = core_xstrdup(uc->valuestring);
            f->n++;
        }
        cJSON_Delete(cur);
    } else {
        for (size_t i = 0; i < gw->n_servers; i++) {
            struct fed_upstream *up = s->inst[i];
            if (fed_upstream_is_ready(up) && fed_upstream_has_cap(up, list_caps[l]) &&
                pol_client_has_server(s->ccfg, gw->servers[i]->cfg->name))
                f->parts[f->n++].srv_index = i;
        }
    }
    for (size_t i = 0; i < f->n; i++) {
        f->parts[i].srv = gw->servers[f->parts[i].srv_index];
        fed_server_ref(f->parts[i].srv);
    }
    c->fan = f;
    /* Count every part first: replies cannot arrive before we return to the loop. */
    f->remaining = f->n + 1;
    for (size_t i = 0; i < f->n; i++) {
        struct fan_part *pt = &f->parts[i];
        pt->f = f;
        struct fed_upstream *up = s->inst[pt->srv_index];
        pt->up = up;
        if (pt->cursor == NULL && up->list_late[l] && up->list_known[l]) {
            /* A server that missed the deadline: its cached list now, a fresh one later. */
            pt->result = cJSON_CreateObject();
            cJSON_AddItemToObject(pt->result, list_keys[l], cJSON_Duplicate(up->lists[l], 1));
            pt->done = true;
            f->remaining--;
            if (!up->list_refreshing[l])
                fed_upstream_fetch_list(up, l);
            continue;
        }
        cJSON *params = NULL;
        if (pt->cursor) {
            params = cJSON_CreateObject();
            cJSON_AddStringToObject(params, "cursor", pt->cursor);
        }
        /* The request itself may wait longer than the answer: a late reply still ends it. */
        if (fed_upstream_request(up, list_methods[l], params, 2 * gw->cfg->list_timeout_ms + 1000,
                                  on_fan_part, pt) != 0) {
            pt->done = true;
            f->remaining--;
        }
    }
    if (--f->remaining == 0) {
        fan_answer(f);
        fan_release(f);
        return;
    }
    uv_timer_init(gw->loop, &f->timer);
    f->timer_on = true;
    uv_timer_start(&f->timer, on_fan_deadline, gw->cfg->list_timeout_ms, 0);
}

/* ---- named and URI-addressed requests ------------------------------------------------------- */

/* A CallToolResult with isError and one text: how a model learns a call did not happen. */
static void tool_error_result(struct fed_call *c, const char *msg)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(res, "content");
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(text, "type", "text");
    cJSON_AddStringToObject(text, "text", msg);
    cJSON_AddItemToArray(content, text);
    cJSON_AddTrueToObject(res, "isError");
    call_result_json(c, res);
}

/* tools/call (kind 0) and prompts/get (kind 1): the exposed name is mapped back to the
 * upstream's. For tools, `hook` (may be NULL) may refuse the call once the server is known:
 * it answers the call itself and returns false. */
static void handle_named(struct fed_call *c, const char *frame, const struct core_rpc_env *env,
                         int kind, bool (*hook)(struct fed_call *c, struct fed_upstream *up,
                                                const char *exposed, const char *orig))
{
    char exposed[NAME_BUF], fallback[NAME_BUF];
    const char *orig;
    struct core_span at = env->param[CORE_P_NAME];
    if (!span_str(frame, at, exposed, sizeof exposed)) {
        fed_call_error(c, -32602, "params.name must be a string");
        return;
    }
    struct fed_upstream *denied;
    struct fed_upstream *up = resolve_name(c->sess, kind, exposed, &orig, fallback, &denied);
    if (c->audit) {
        c->audit_tool = core_xstrdup(exposed);
        if (up || denied)
            c->audit_server = core_xstrdup((up ? up : denied)->srv->cfg->name);
    }
    if (up == NULL && kind == 1) {
        call_errorf(c, -32602, "Unknown prompt: %s", exposed);
        return;
    }
    if (up == NULL) {
        /* Like the SDK's servers: an unknown tool is a tool error the model can read. A tool
         * the client's policy hides gets the very same answer. */
        c->outcome = denied ? "denied" : "unknown";
        char msg[NAME_BUF + 32];
        snprintf(msg, sizeof msg, "Unknown tool: %s", exposed);
        tool_error_result(c, msg);
        return;
    }
    if (hook && !hook(c, up, exposed, orig))
        return;
    struct core_buf nb;
    core_buf_init(&nb, 0);
    if (json_string(&nb, orig) != 0) {
        core_buf_dispose(&nb);
        fed_call_error(c, -32603, "name too long");
        return;
    }
    struct repl r = {at, nb.data, nb.len};
    forward(c, up, frame, env, &r, 1);
    core_buf_dispose(&nb);
}

/* A quarantined tool (its definition changed since it was pinned) is refused. */
static bool call_gate(struct fed_call *c, struct fed_upstream *up, const char *exposed,
                      const char *orig)
{
    const struct fed_pin_change *pc = core_map_str_get(&up->srv->pin_changed, orig, strlen(orig));
    if (pc == NULL || !pc->hidden)
        return true;
    c->outcome = "quarantined";
    char msg[NAME_BUF * 2 + 400];
    snprintf(msg, sizeof msg,
             "Tool %s is quarantined: its definition changed since it was pinned (%s). The user "
             "can review and accept it with: agentgate approve %s %s",
             exposed, pc->what, up->srv->cfg->name, orig);
    tool_error_result(c, msg);
    return false;
}

/* tools/call: the client's rate limit first (nothing reaches an upstream past it), then the
 * name, its policy and its pin. */
static void handle_call(struct fed_call *c, const char *frame, size_t n,
                        const struct core_rpc_env *env)
{
    struct fed_session *s = c->sess;
    struct fed_gateway *gw = s->gw;
    if (gw->audit) {
        c->audit = true;
        c->t0_ns = uv_hrtime();
        c->bytes_in = n;
    }
    const struct core_client_cfg *cc = s->ccfg;
    if (cc && cc->rate_per_sec > 0) {
        size_t nl = strlen(cc->name);
        struct pol_bucket *b = core_map_str_get(&gw->buckets, cc->name, nl);
        if (b == NULL) {
            b = core_xcalloc(1, sizeof *b);
            core_map_str_put(&gw->buckets, cc->name, nl, b);
        }
        uint64_t retry = 0;
        if (!pol_bucket_take(b, cc->rate_per_sec, cc->rate_burst, fed_now(gw) + 1, &retry)) {
            if (c->audit) {
                char exposed[NAME_BUF];
                c->audit_tool = core_xstrdup(
                    span_str(frame, env->param[CORE_P_NAME], exposed, sizeof exposed) ? exposed
                                                                                      : "");
            }
            c->outcome = "rate_limited";
            struct core_buf b2;
            core_buf_init(&b2, 0);
            char text[300];
            snprintf(text, sizeof text, "rate limit exceeded for client %s; retry in %" PRIu64 " ms",
                     cc->name, retry);
            cJSON *m = cJSON_CreateString(text);
            char *esc = cJSON_PrintUnformatted(m);
            cJSON_Delete(m);
            if (core_buf_appendf(&b2, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"error\":{\"code\":-32029,"
                                      "\"message\":%s,\"data\":{\"retryAfterMs\":%" PRIu64 "}}}",
                                 (int)c->id_len, c->id, esc, retry) == 0) {
                uv_buf_t u = uv_buf_init(b2.data, (unsigned)b2.len);
                fed_call_respond(c, &u, 1);
            } else {
                fed_call_free(c);
            }
            core_free(esc);
            core_buf_dispose(&b2);
            return;
        }
    }
    handle_named(c, frame, env, 0, call_gate);
}

/* Records a subscription of s to uri on up; the first subscriber's reaches the upstream (a
 * restarting upstream gets it when ready). */
static void subscribe(struct fed_session *s, struct fed_upstream *up, const char *uri)
{
    size_t ul = strlen(uri);
    if (core_map_str_get(&s->subs, uri, ul))
        return;
    uintptr_t count = (uintptr_t)core_map_str_get(&up->sub_count, uri, ul);
    core_map_str_put(&s->subs, uri, ul, up);
    core_map_str_put(&up->sub_count, uri, ul, (void *)(count + 1));
    if (count == 0 && fed_upstream_is_ready(up)) {
        cJSON *params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "uri", uri);
        (void)fed_upstream_request(up, "resources/subscribe", params, 0, NULL, NULL);
    }
}

static void handle_resource(struct fed_call *c, const char *frame, const struct core_rpc_env *env)
{
    char *uri = core_xmalloc(URI_BUF);
    if (!span_str(frame, env->param[CORE_P_URI], uri, URI_BUF)) {
        core_free(uri);
        fed_call_error(c, -32602, "params.uri must be a string");
        return;
    }
    struct fed_session *s = c->sess;
    struct fed_upstream *up = route_uri(s, uri);
    if (up == NULL) {
        call_errorf(c, -32002, "Resource not found: %.400s", uri);
        core_free(uri);
        return;
    }
    size_t ul = strlen(uri);
    bool sub = strcmp(c->method, "resources/subscribe") == 0;
    bool unsub = strcmp(c->method, "resources/unsubscribe") == 0;
    if (sub || unsub) {
        bool had = core_map_str_get(&s->subs, uri, ul) != NULL;
        uintptr_t count = (uintptr_t)core_map_str_get(&up->sub_count, uri, ul);
        if (sub == had) {
            /* Already (un)subscribed: nothing changes upstream. */
            core_free(uri);
            fed_call_result(c, "{}");
            return;
        }
        if (sub && core_map_str_len(&s->subs) >= SUBS_MAX) {
            /* Templates name endless URIs, and every subscription rides in the session's
             * token: both must stay bounded. */
            core_free(uri);
            call_errorf(c, -32000, "too many subscriptions in this session (%d); unsubscribe "
                        "from some first", SUBS_MAX);
            return;
        }
        s->token_stale = true;
        if (sub) {
            core_map_str_put(&s->subs, uri, ul, up);
            core_map_str_put(&up->sub_count, uri, ul, (void *)(count + 1));
        } else {
            core_map_str_del(&s->subs, uri, ul);
            if (count <= 1)
                core_map_str_del(&up->sub_count, uri, ul);
            else
                core_map_str_put(&up->sub_count, uri, ul, (void *)(count - 1));
        }
        /* Only the first subscriber and the last unsubscriber reach the upstream. */
        if ((sub && count > 0) || (unsub && count > 1)) {
            core_free(uri);
            fed_call_result(c, "{}");
            return;
        }
    }
    core_free(uri);
    forward(c, up, frame, env, NULL, 0);
}

static void handle_complete(struct fed_call *c, const char *frame, const struct core_rpc_env *env)
{
    struct core_span ref = env->param[CORE_P_REF];
    char type[32];
    int rc = ref.len && frame[ref.off] == '{'
                 ? member_str(frame, ref, "type", type, sizeof type, NULL)
                 : 0;
    if (rc == CORE_EDUP) {
        fed_call_error(c, -32600, "Invalid Request: duplicate \"type\" key in params.ref");
        return;
    }
    if (rc != 1) {
        fed_call_error(c, -32602, "params.ref must be an object with a type");
        return;
    }
    if (strcmp(type, "ref/prompt") == 0) {
        char exposed[NAME_BUF], fallback[NAME_BUF];
        const char *orig;
        struct core_span at;
        rc = member_str(frame, ref, "name", exposed, sizeof exposed, &at);
        if (rc != 1) {
            fed_call_error(c, rc == CORE_EDUP ? -32600 : -32602,
                            rc == CORE_EDUP ? "Invalid Request: duplicate \"name\" key in params.ref"
                                            : "params.ref.name must be a string");
            return;
        }
        struct fed_upstream *denied;
        struct fed_upstream *up = resolve_name(c->sess, 1, exposed, &orig, fallback, &denied);
        if (up == NULL) {
            call_errorf(c, -32602, "Unknown prompt: %s", exposed);
            return;
        }
        struct core_buf nb;
        core_buf_init(&nb, 0);
        if (json_string(&nb, orig) == 0) {
            struct repl r = {at, nb.data, nb.len};
            forward(c, up, frame, env, &r, 1);
        } else {
            fed_call_error(c, -32603, "name too long");
        }
        core_buf_dispose(&nb);
        return;
    }
    if (strcmp(type, "ref/resource") == 0) {
        char *uri = core_xmalloc(URI_BUF);
        struct fed_upstream *up = NULL;
        rc = member_str(frame, ref, "uri", uri, URI_BUF, NULL);
        if (rc == 1)
            up = route_uri(c->sess, uri);
        core_free(uri);
        if (rc == CORE_EDUP) {
            fed_call_error(c, -32600, "Invalid Request: duplicate \"uri\" key in params.ref");
            return;
        }
        if (up == NULL) {
            fed_call_error(c, -32602, "params.ref.uri names no known resource or template");
            return;
        }
        forward(c, up, frame, env, NULL, 0);
        return;
    }
    call_errorf(c, -32602, "unknown reference type %s", type);
}

void fed_router_request(struct fed_call *c, const char *frame, size_t n,
                        const struct core_rpc_env *env)
{
    const char *m = env->method_str;
    if (env->dup) {
        /* A key read twice means one thing to the gateway and another to a server whose
         * parser keeps the other copy: nothing of it goes anywhere. */
        if (strcmp(env->dup_key, "id") == 0) {
            core_free(c->id);
            c->id = core_xstrdup("null");
            c->id_len = 4;
        }
        call_errorf(c, -32600, "Invalid Request: duplicate \"%s\" key", env->dup_key);
        return;
    }
    if (c->sess->n_calls > FED_MAX_CALLS) {
        call_errorf(c, -32000, "too many requests in flight in this session (%d); wait for "
                    "some answers first", FED_MAX_CALLS);
        return;
    }
    if ((c->sess->init_waiting || c->sess->restoring) && strcmp(m, "ping") != 0 &&
        strcmp(m, "initialize") != 0) {
        /* Keep the order a pipelining client expects: nothing is answered before initialize. */
        c->queued = core_xmemdup(frame, n);
        c->queued_len = n;
        return;
    }
    if (strcmp(m, "tools/call") == 0)
        handle_call(c, frame, n, env);
    else if (strcmp(m, "resources/read") == 0 || strcmp(m, "resources/subscribe") == 0 ||
             strcmp(m, "resources/unsubscribe") == 0)
        handle_resource(c, frame, env);
    else if (strcmp(m, "prompts/get") == 0)
        handle_named(c, frame, env, 1, NULL);
    else if (strcmp(m, "tools/list") == 0)
        handle_list(c, frame, env, FED_LIST_TOOLS);
    else if (strcmp(m, "prompts/list") == 0)
        handle_list(c, frame, env, FED_LIST_PROMPTS);
    else if (strcmp(m, "resources/list") == 0)
        handle_list(c, frame, env, FED_LIST_RESOURCES);
    else if (strcmp(m, "resources/templates/list") == 0)
        handle_list(c, frame, env, FED_LIST_TEMPLATES);
    else if (strcmp(m, "completion/complete") == 0)
        handle_complete(c, frame, env);
    else if (strcmp(m, "ping") == 0)
        fed_call_result(c, "{}");
    else if (strcmp(m, "logging/setLevel") == 0)
        handle_set_level(c, frame, env);
    else if (strcmp(m, "initialize") == 0)
        handle_initialize(c, frame, env);
    else
        call_errorf(c, -32601, "Method not found: %.200s", m);
}

/* ---- client notifications and responses ----------------------------------------------------- */

void fed_router_notification(struct fed_session *s, const char *frame, const struct core_rpc_env *env)
{
    const char *m = env->method_str;
    if (env->dup) {
        core_log(CORE_LOG_INFO, "router", "%.8s: notification with a duplicate \"%s\" key dropped",
                 s->id, env->dup_key);
        return;
    }
    if (strcmp(m, "notifications/initialized") == 0) {
        s->initialized = true;
    } else if (strcmp(m, "notifications/cancelled") == 0) {
        struct core_span rid = env->param[CORE_P_REQUEST_ID];
        if (rid.len == 0)
            return;
        for (struct fed_call *c = s->calls; c; c = c->next) {
            if (c->id_len != rid.len || memcmp(c->id, frame + rid.off, rid.len) != 0)
                continue;
            if (c->pend) {
                struct fed_upstream *up = c->up;
                cJSON *params = cJSON_CreateObject();
                cJSON_AddNumberToObject(params, "requestId", (double)c->pend->id);
                char reason[256];
                if (span_str(frame, env->param[CORE_P_REASON], reason, sizeof reason))
                    cJSON_AddStringToObject(params, "reason", reason);
                core_log(CORE_LOG_DEBUG, "router", "%.8s: cancel of %s forwarded to %s as %" PRIu64,
                         s->id, c->method, up->name, c->pend->id);
                fed_upstream_notify(up, "notifications/cancelled", params);
                fed_upstream_unpend(up, c->pend);
            }
            if (strcmp(c->method, "initialize") != 0)
                fed_call_error(c, -32800, "Request cancelled");
            break;
        }
    } else if (strcmp(m, "notifications/roots/list_changed") == 0) {
        for (size_t i = 0; i < s->gw->n_servers; i++)
            if (s->inst[i] && (s->inst[i]->owner == s || s->inst[i]->client_key) &&
                fed_upstream_is_ready(s->inst[i]))
                fed_upstream_notify(s->inst[i], m, NULL);
    } else {
        core_log(CORE_LOG_DEBUG, "router", "%.8s: notification %s ignored", s->id, m);
    }
}

void fed_router_response(struct fed_session *s, const char *frame, size_t n,
                         const struct core_rpc_env *env)
{
    uint64_t id;
    if (env->dup) {
        /* Its answer to the server would not be the one the gateway read. */
        core_log(CORE_LOG_INFO, "router", "%.8s: response with a duplicate \"%s\" key dropped",
                 s->id, env->dup_key);
        return;
    }
    struct fed_s2c *r = span_uint(frame, env->id, &id) ? core_map_u64_del(&s->s2c, id) : NULL;
    if (r == NULL) {
        core_log(CORE_LOG_DEBUG, "router", "%.8s: response to unknown id dropped", s->id);
        return;
    }
    uv_buf_t parts[3] = {
        uv_buf_init((char *)frame, (unsigned)env->id.off),
        uv_buf_init(r->up_id, (unsigned)r->up_id_len),
        uv_buf_init((char *)frame + env->id.off + env->id.len,
                    (unsigned)(n - env->id.off - env->id.len)),
    };
    int rc = write_frame(r->up, parts, 3);
    if (rc)
        core_log(CORE_LOG_WARN, "router", "%s: answer to its request lost: %s", r->up->name,
                 core_strerror(rc));
    fed_s2c_free(r);
}

/* ---- upstream requests and notifications ------------------------------------------------------ */

static void reply_upstream(struct fed_upstream *up, const char *frame,
                           const struct core_rpc_env *env, const char *body)
{
    uv_buf_t parts[4] = {
        uv_buf_init("{\"jsonrpc\":\"2.0\",\"id\":", 22),
        uv_buf_init((char *)frame + env->id.off, (unsigned)env->id.len),
        uv_buf_init((char *)body, (unsigned)strlen(body)),
        uv_buf_init("}", 1),
    };
    (void)write_frame(up, parts, 4); /* a dead child needs no answer */
}

static void reply_upstream_error(struct fed_upstream *up, const char *frame,
                                 const struct core_rpc_env *env, int code, const char *msg)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    if (fed_error_json(&b, frame + env->id.off, env->id.len, code, msg) == 0) {
        uv_buf_t u = uv_buf_init(b.data, (unsigned)b.len);
        (void)write_frame(up, &u, 1);
    }
    core_buf_dispose(&b);
}

static void reply_roots(struct fed_upstream *up, const char *frame, const struct core_rpc_env *env)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(res, "roots");
    const struct core_server_cfg *cfg = up->srv->cfg;
    for (size_t i = 0; i < cfg->n_roots; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "uri", cfg->roots[i]);
        cJSON_AddItemToArray(arr, r);
    }
    char *txt = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    struct core_buf b;
    core_buf_init(&b, 0);
    if (core_buf_appendf(&b, ",\"result\":%s", txt) == 0)
        reply_upstream(up, frame, env, b.data);
    core_buf_dispose(&b);
    core_free(txt);
}

/* Internal (GW_STATIC, reached by the tests). */
GW_STATIC struct fed_call *router_attribute(struct fed_upstream *up, const char *frame,
                                           const struct core_rpc_env *env, bool *unattributed);

/* True when sessions of more than one client identity use this instance: then a message it
 * sends outside any association must not be guessed onto one of them. */
static bool shared_between_clients(const struct fed_upstream *up)
{
    return core_map_str_len(&up->idents) > 1;
}

/* The client request a server->client message (request or log line) belongs to, or NULL.
 * Stdio frames carry no association, so:
 * - a message whose params._meta.progressToken is the token the gateway gave one of the
 *   upstream's requests belongs to that request;
 * - otherwise, on an instance used by one client identity only, the newest request in flight
 *   (one principal either way; with isolation = session it is exact);
 * - otherwise only when every request in flight on the instance comes from one session (calls
 *   whose client went away count too: their data must not reach the others). *unattributed
 *   tells that case from "nothing in flight". */
GW_STATIC struct fed_call *router_attribute(struct fed_upstream *up, const char *frame,
                                           const struct core_rpc_env *env, bool *unattributed)
{
    *unattributed = false;
    struct core_span meta = env->param[CORE_P_META], tok;
    uint64_t id;
    if (meta.len && frame[meta.off] == '{' &&
        core_json_obj_get(frame, meta, "progressToken", &tok, NULL) == 0 &&
        span_uint(frame, tok, &id)) {
        struct fed_pending *p = core_map_u64_get(&up->pending, id);
        if (p && p->kind == FED_PEND_FORWARD)
            return p->call && p->call->ops ? p->call : NULL;
    }
    struct fed_pending *best = NULL;
    uint64_t serial = 0;
    bool several = false;
    size_t it = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&up->pending, &it, &k, &v)) {
        struct fed_pending *p = v;
        if (p->kind != FED_PEND_FORWARD)
            continue;
        if (serial == 0)
            serial = p->serial;
        else if (p->serial != serial)
            several = true;
        if (p->call && p->call->ops && (!best || p->id > best->id))
            best = p;
    }
    if (several && shared_between_clients(up)) {
        *unattributed = true;
        return NULL;
    }
    return best ? best->call : NULL;
}

static void relay_request(struct fed_call *c, struct fed_upstream *up, const char *frame, size_t n,
                          const struct core_rpc_env *env)
{
    struct fed_session *s = c->sess;
    uint64_t dsid = s->next_s2c++;
    struct fed_s2c *r = core_xcalloc(1, sizeof *r);
    r->up = up;
    r->up_id = core_xmemdup(frame + env->id.off, env->id.len);
    r->up_id_len = env->id.len;
    core_map_u64_put(&s->s2c, dsid, r);
    char idb[24];
    int il = snprintf(idb, sizeof idb, "%" PRIu64, dsid);
    uv_buf_t parts[3] = {
        uv_buf_init((char *)frame, (unsigned)env->id.off),
        uv_buf_init(idb, (unsigned)il),
        uv_buf_init((char *)frame + env->id.off + env->id.len,
                    (unsigned)(n - env->id.off - env->id.len)),
    };
    fed_call_message(c, parts, 3);
}

static void upstream_request(struct fed_upstream *up, const char *frame, size_t n,
                             const struct core_rpc_env *env)
{
    const char *m = env->method_str;
    if (strcmp(m, "ping") == 0) {
        reply_upstream(up, frame, env, ",\"result\":{}");
        return;
    }
    const char *cap = strcmp(m, "sampling/createMessage") == 0 ? "sampling"
                      : strcmp(m, "elicitation/create") == 0 ? "elicitation"
                      : strcmp(m, "roots/list") == 0         ? "roots"
                                                             : NULL;
    if (cap == NULL) {
        char msg[200];
        snprintf(msg, sizeof msg, "Method not found: %.120s", m);
        reply_upstream_error(up, frame, env, -32601, msg);
        return;
    }
    bool unattributed;
    struct fed_call *c = router_attribute(up, frame, env, &unattributed);
    if (strcmp(cap, "roots") == 0 && (c == NULL || !fed_session_has_cap(c->sess, "roots"))) {
        /* Outside a request (or for a client without roots): the server's configured roots. */
        reply_roots(up, frame, env);
        return;
    }
    if (c == NULL) {
        char msg[400];
        if (unattributed)
            snprintf(msg, sizeof msg,
                     "agentgate cannot tell which client %s is for: clients with their own "
                     "identities have calls in flight on this shared server. Name the request's "
                     "progress token in params._meta, or set isolation = client in [server.%s]",
                     m, up->srv->cfg->name);
        else
            snprintf(msg, sizeof msg, "no client request is in flight to route %s to", m);
        if (unattributed)
            core_log_limited(&up->log_limit, CORE_LOG_WARN, "router",
                             "%s: %s not delivered: several clients have calls in flight "
                             "(isolation = client would keep them apart)",
                             up->name, m);
        reply_upstream_error(up, frame, env, -32603, msg);
        return;
    }
    if (!fed_session_has_cap(c->sess, cap)) {
        char msg[200];
        snprintf(msg, sizeof msg, "the client did not declare the %s capability", cap);
        reply_upstream_error(up, frame, env, -32601, msg);
        return;
    }
    if (core_map_u64_len(&c->sess->s2c) >= S2C_MAX) {
        /* Each waits in the session's table until the client answers: a server must not be
         * able to grow it without bound. */
        reply_upstream_error(up, frame, env, -32603,
                             "too many requests are waiting for this client's answers");
        return;
    }
    relay_request(c, up, frame, n, env);
}

static void upstream_progress(struct fed_upstream *up, const char *frame, size_t n,
                              const struct core_rpc_env *env)
{
    struct core_span tok = env->param[CORE_P_PROGRESS_TOKEN];
    uint64_t id;
    if (!span_uint(frame, tok, &id))
        return;
    struct fed_pending *p = core_map_u64_get(&up->pending, id);
    if (p == NULL || p->kind != FED_PEND_FORWARD || p->call == NULL || !p->call->progress_token)
        return; /* progress for a finished request is dropped */
    struct fed_call *c = p->call;
    uv_buf_t parts[3] = {
        uv_buf_init((char *)frame, (unsigned)tok.off),
        uv_buf_init(c->progress_token, (unsigned)c->progress_token_len),
        uv_buf_init((char *)frame + tok.off + tok.len, (unsigned)(n - tok.off - tok.len)),
    };
    fed_call_message(c, parts, 3);
}

static void upstream_log(struct fed_upstream *up, const char *frame, size_t n,
                         const struct core_rpc_env *env)
{
    char level[32];
    int idx = span_str(frame, env->param[CORE_P_LEVEL], level, sizeof level)
                  ? fed_mcp_level_index(level)
                  : -1;
    if (idx < 0 || up->srv->retired)
        return;
    uv_buf_t whole = uv_buf_init((char *)frame, (unsigned)n);
    if (shared_between_clients(up)) {
        /* Several principals use this child: the line goes to the session it belongs to, or,
         * when that cannot be told, to the server's log file and nobody else. */
        bool unattributed;
        struct fed_call *c = router_attribute(up, frame, env, &unattributed);
        struct fed_session *s = c ? c->sess : NULL;
        if (s == NULL) {
            fed_upstream_log_line(up, frame, n);
            return;
        }
        int want = s->mcp_log_level >= 0 ? s->mcp_log_level : DEFAULT_LOG_LEVEL;
        if (s->initialized && idx >= want)
            fed_call_message(c, &whole, 1);
        return;
    }
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&up->gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        if (!s->initialized || s->inst[up->srv->index] != up ||
            !pol_client_has_server(s->ccfg, up->srv->cfg->name))
            continue;
        int want = s->mcp_log_level >= 0 ? s->mcp_log_level : DEFAULT_LOG_LEVEL;
        if (idx < want)
            continue;
        /* Logs during a request go on that request's stream, like the server meant them. */
        struct fed_call *c;
        for (c = s->calls; c; c = c->next)
            if (c->up == up && c->pend && c->ops)
                break;
        if (c)
            fed_call_message(c, &whole, 1);
        else
            fed_session_notify(s, &whole, 1);
    }
}

static void upstream_updated(struct fed_upstream *up, const char *frame, size_t n,
                             const struct core_rpc_env *env)
{
    char *uri = core_xmalloc(URI_BUF);
    if (span_str(frame, env->param[CORE_P_URI], uri, URI_BUF)) {
        uv_buf_t whole = uv_buf_init((char *)frame, (unsigned)n);
        size_t ul = strlen(uri), it = 0;
        const char *k;
        void *v;
        while (core_map_str_next(&up->gw->sessions, &it, &k, &v)) {
            struct fed_session *s = v;
            if (core_map_str_get(&s->subs, uri, ul) == up)
                fed_session_notify(s, &whole, 1);
        }
    }
    core_free(uri);
}

static void upstream_cancelled(struct fed_upstream *up, const char *frame, size_t n,
                               const struct core_rpc_env *env)
{
    struct core_span rid = env->param[CORE_P_REQUEST_ID];
    if (rid.len == 0)
        return;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&up->gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        size_t j = 0;
        uint64_t dsid;
        void *rv;
        while (core_map_u64_next(&s->s2c, &j, &dsid, &rv)) {
            struct fed_s2c *r = rv;
            if (r->up != up || r->up_id_len != rid.len ||
                memcmp(r->up_id, frame + rid.off, rid.len) != 0)
                continue;
            core_map_u64_del(&s->s2c, dsid);
            fed_s2c_free(r);
            char idb[24];
            int il = snprintf(idb, sizeof idb, "%" PRIu64, dsid);
            uv_buf_t parts[3] = {
                uv_buf_init((char *)frame, (unsigned)rid.off),
                uv_buf_init(idb, (unsigned)il),
                uv_buf_init((char *)frame + rid.off + rid.len, (unsigned)(n - rid.off - rid.len)),
            };
            fed_session_notify(s, parts, 3);
            return;
        }
    }
}

void fed_router_upstream_message(struct fed_upstream *up, const char *frame, size_t n,
                                  const struct core_rpc_env *env)
{
    if (env->kind == CORE_RPC_REQUEST) {
        upstream_request(up, frame, n, env);
        return;
    }
    const char *m = env->method_str;
    if (strcmp(m, "notifications/progress") == 0)
        upstream_progress(up, frame, n, env);
    else if (strcmp(m, "notifications/message") == 0)
        upstream_log(up, frame, n, env);
    else if (strcmp(m, "notifications/resources/updated") == 0)
        upstream_updated(up, frame, n, env);
    else if (strcmp(m, "notifications/tools/list_changed") == 0)
        fed_upstream_fetch_list(up, FED_LIST_TOOLS);
    else if (strcmp(m, "notifications/prompts/list_changed") == 0)
        fed_upstream_fetch_list(up, FED_LIST_PROMPTS);
    else if (strcmp(m, "notifications/resources/list_changed") == 0) {
        fed_upstream_fetch_list(up, FED_LIST_RESOURCES);
        fed_upstream_fetch_list(up, FED_LIST_TEMPLATES);
    } else if (strcmp(m, "notifications/cancelled") == 0)
        upstream_cancelled(up, frame, n, env);
    else
        core_log_limited(&up->log_limit, CORE_LOG_DEBUG, "router", "%s: notification %s dropped",
                         up->name, m);
}

/* ---- upstream state ---------------------------------------------------------------------- */

void fed_router_upstream_ready(struct fed_upstream *up)
{
    for (int l = 0; l < FED_LIST_COUNT; l++)
        fed_upstream_fetch_list(up, (enum fed_list)l);
    /* A restarted server gets the subscriptions its sessions hold. */
    size_t it = 0;
    const char *uri;
    void *v;
    while (core_map_str_next(&up->sub_count, &it, &uri, &v)) {
        cJSON *params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "uri", uri);
        (void)fed_upstream_request(up, "resources/subscribe", params, 0, NULL, NULL);
    }
    sync_upstream_level(up);
    fed_router_check_deferred(up->gw);
}

void fed_router_upstream_down(struct fed_upstream *up)
{
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&up->gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        size_t j = 0;
        uint64_t dsid;
        void *rv;
        while (core_map_u64_next(&s->s2c, &j, &dsid, &rv)) {
            struct fed_s2c *r = rv;
            if (r->up != up)
                continue;
            core_map_u64_del(&s->s2c, dsid);
            fed_s2c_free(r);
        }
    }
    core_free(up->log_level);
    up->log_level = NULL;
    fed_router_check_deferred(up->gw);
}

void fed_router_list_updated(struct fed_upstream *up, enum fed_list l, bool changed)
{
    if (l == FED_LIST_TOOLS && up->srv->gw->pins && !up->srv->retired) {
        bool first = !pol_pins_has_server(up->srv->gw->pins, up->srv->cfg->name);
        const cJSON *item;
        cJSON_ArrayForEach(item, up->lists[l])
            (void)pin_check(up->srv, item, first);
    }
    if (changed)
        fed_gateway_lists_changed(up->gw, up, 1u << l);
}

void fed_router_session_ending(struct fed_session *s)
{
    size_t it = 0;
    const char *uri;
    void *v;
    while (core_map_str_next(&s->subs, &it, &uri, &v)) {
        struct fed_upstream *up = v;
        size_t ul = strlen(uri);
        uintptr_t count = (uintptr_t)core_map_str_get(&up->sub_count, uri, ul);
        if (count > 1) {
            core_map_str_put(&up->sub_count, uri, ul, (void *)(count - 1));
            continue;
        }
        core_map_str_del(&up->sub_count, uri, ul);
        if (fed_upstream_is_ready(up) && up->owner != s) {
            cJSON *params = cJSON_CreateObject();
            cJSON_AddStringToObject(params, "uri", uri);
            (void)fed_upstream_request(up, "resources/unsubscribe", params, 0, NULL, NULL);
        }
    }
}

void fed_router_flush_list_changed(struct fed_session *s)
{
    unsigned m = s->list_changed;
    if (m == 0 || !s->initialized)
        return;
    s->list_changed = 0;
    static const char *const notes[] = {
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/prompts/list_changed\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/list_changed\"}",
    };
    bool done_resources = false;
    for (int l = 0; l < FED_LIST_COUNT; l++) {
        if (!(m & (1u << l)))
            continue;
        int idx = l == FED_LIST_TEMPLATES ? 2 : l;
        if (idx == 2) {
            if (done_resources)
                continue;
            done_resources = true;
        }
        uv_buf_t u = uv_buf_init((char *)notes[idx], (unsigned)strlen(notes[idx]));
        fed_session_notify(s, &u, 1);
    }
}
