/* The upstream supervisor: one link per instance (a stdio child, or a remote MCP session over
 * HTTP), its MCP session with the gateway, the table of requests in flight to it, and restarts
 * with exponential backoff. The link is the only part that differs between the two kinds:
 * starting it, writing a frame, its queue, ending it, and what happens when it goes away
 * (a child exits; a remote session goes down). The initialize exchange, the pending table,
 * deadlines, list caches and restarts are shared. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

#include "auth/oauth.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "transports/child.h"
#include "transports/remote.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define HEALTHY_RESET_MS 60000
#define INIT_TIMEOUT_MS 60000
#define MAX_LIST_PAGES 100
#define SERVER_LOG_MAX (10u << 20) /* <state>/logs/NAME.log rotates past this */
#define AUTH_WINDOW_MS 10000       /* more than AUTH_MAX_TRIES challenges in this long: give up */
#define AUTH_MAX_TRIES 3
#define FAST_REINIT_MS 1000 /* an expired session that lived this long is renewed at once */

static const char *const list_methods[FED_LIST_COUNT] = {
    "tools/list", "prompts/list", "resources/list", "resources/templates/list"};
static const char *const list_keys[FED_LIST_COUNT] = {"tools", "prompts", "resources",
                                                       "resourceTemplates"};
static const char *const list_caps[FED_LIST_COUNT] = {"tools", "prompts", "resources",
                                                       "resources"};

const char *fed_up_state_name(enum fed_up_state s)
{
    switch (s) {
    case FED_UP_STOPPED:
        return "stopped";
    case FED_UP_STARTING:
        return "starting";
    case FED_UP_INITIALIZING:
        return "initializing";
    case FED_UP_READY:
        return "ready";
    case FED_UP_BACKOFF:
        return "backoff";
    case FED_UP_CLOSING:
        return "closing";
    case FED_UP_NEEDS_LOGIN:
        return "needs-login";
    }
    return "?";
}

static void set_state(struct fed_upstream *up, enum fed_up_state s)
{
    if (up->state == s)
        return;
    core_log(CORE_LOG_INFO, "up", "%s: %s -> %s", up->name, fed_up_state_name(up->state),
             fed_up_state_name(s));
    up->state = s;
}

bool fed_upstream_is_ready(const struct fed_upstream *up)
{
    return up != NULL && up->state == FED_UP_READY;
}

bool fed_upstream_is_remote(const struct fed_upstream *up)
{
    return up->srv->cfg->url != NULL;
}

const char *fed_upstream_transport(const struct fed_upstream *up)
{
    return up->remote ? tp_remote_kind_name(up->remote) : NULL;
}

static void set_last_error(struct fed_upstream *up, const char *why)
{
    core_free(up->last_error);
    up->last_error = why ? core_xstrdup(why) : NULL;
}

static void set_bearer(struct fed_upstream *up, const char *authorization)
{
    if (up->bearer) {
        sodium_memzero(up->bearer, strlen(up->bearer));
        core_free(up->bearer);
    }
    up->bearer = authorization ? core_xstrdup(authorization) : NULL;
}

bool fed_upstream_has_cap(const struct fed_upstream *up, const char *cap)
{
    return up->capabilities != NULL && cJSON_GetObjectItemCaseSensitive(up->capabilities, cap);
}

static void maybe_free(struct fed_upstream *up);

static void on_timer_close(uv_handle_t *h)
{
    struct fed_upstream *up = container_of((uv_timer_t *)h, struct fed_upstream, timer);
    up->handles--;
    maybe_free(up);
}

struct fed_upstream *fed_upstream_new(struct fed_server *srv, struct fed_session *owner)
{
    struct fed_upstream *up = core_xcalloc(1, sizeof *up);
    up->gw = srv->gw;
    up->srv = srv;
    up->owner = owner;
    if (owner)
        snprintf(up->name, sizeof up->name, "%s[%.8s]", srv->cfg->name, owner->id);
    else
        snprintf(up->name, sizeof up->name, "%s", srv->cfg->name);
    up->backoff_ms = BACKOFF_MIN_MS;
    up->next_id = 1;
    core_map_u64_init(&up->pending);
    core_map_str_init(&up->sub_count);
    core_map_str_init(&up->names[0]);
    core_map_str_init(&up->names[1]);
    core_map_str_init(&up->idents);
    up->next = up->gw->ups;
    if (up->next)
        up->next->prev = up;
    up->gw->ups = up;
    uv_timer_init(up->gw->loop, &up->timer);
    up->handles = 1;
    up->gw->live_upstreams++;
    fed_server_ref(srv);
    return up;
}

/* Replaces cached list l (items taken; NULL = unknown) and, for tools and prompts, the
 * exposed names that route to them. Within one list the first item exposing a name wins, as
 * in the merged lists clients see. */
static void list_set(struct fed_upstream *up, enum fed_list l, cJSON *items)
{
    cJSON_Delete(up->lists[l]);
    up->lists[l] = items;
    up->list_known[l] = items != NULL;
    if (l != FED_LIST_TOOLS && l != FED_LIST_PROMPTS)
        return;
    struct core_map_str *m = &up->names[l == FED_LIST_TOOLS ? 0 : 1];
    core_map_str_dispose(m);
    core_map_str_init(m);
    const cJSON *item;
    cJSON_ArrayForEach(item, items)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        char exposed[65];
        if (!cJSON_IsString(name))
            continue;
        (void)fed_name_expose(up->srv->cfg->prefix, name->valuestring, exposed);
        size_t el = strlen(exposed);
        if (core_map_str_get(m, exposed, el) == NULL)
            core_map_str_put(m, exposed, el, name->valuestring);
    }
}

const char *fed_upstream_name_of(const struct fed_upstream *up, int kind, const char *exposed,
                                  bool *known)
{
    *known = up->list_known[kind == 0 ? FED_LIST_TOOLS : FED_LIST_PROMPTS];
    return core_map_str_get(&up->names[kind == 0 ? 0 : 1], exposed, strlen(exposed));
}

static void clear_session_state(struct fed_upstream *up)
{
    core_free(up->protocol_version);
    up->protocol_version = NULL;
    cJSON_Delete(up->capabilities);
    up->capabilities = NULL;
    cJSON_Delete(up->server_info);
    up->server_info = NULL;
    core_free(up->instructions);
    up->instructions = NULL;
    core_free(up->log_level);
    up->log_level = NULL;
}

static void maybe_free(struct fed_upstream *up)
{
    if (!up->closing || up->handles > 0 || up->child != NULL || up->remote != NULL ||
        up->oreq != NULL)
        return;
    clear_session_state(up);
    core_free(up->last_error);
    set_bearer(up, NULL);
    for (int l = 0; l < FED_LIST_COUNT; l++)
        list_set(up, (enum fed_list)l, NULL);
    core_map_str_dispose(&up->names[0]);
    core_map_str_dispose(&up->names[1]);
    core_map_str_dispose(&up->idents);
    core_free(up->client_key);
    if (up->prev)
        up->prev->next = up->next;
    else
        up->gw->ups = up->next;
    if (up->next)
        up->next->prev = up->prev;
    core_map_u64_dispose(&up->pending);
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&up->sub_count, &it, &k, &v))
        ;
    core_map_str_dispose(&up->sub_count);
    struct fed_gateway *gw = up->gw;
    fed_server_unref(up->srv);
    core_free(up);
    fed_gateway_upstream_freed(gw);
}

/* ---- pending requests ----------------------------------------------------------------------- */

static struct fed_pending *pend_new(struct fed_upstream *up, enum fed_pend_kind kind,
                                    uint64_t timeout_ms)
{
    struct fed_pending *p = core_xcalloc(1, sizeof *p);
    p->id = up->next_id++;
    p->up = up;
    p->kind = kind;
    if (timeout_ms == 0)
        timeout_ms = up->srv->cfg->request_timeout_ms;
    p->deadline = timeout_ms ? fed_now(up->gw) + timeout_ms : 0;
    core_map_u64_put(&up->pending, p->id, p);
    return p;
}

struct fed_pending *fed_upstream_pend(struct fed_upstream *up, struct fed_call *call)
{
    struct fed_pending *p = pend_new(up, FED_PEND_FORWARD, 0);
    p->call = call;
    p->serial = call->sess->serial;
    return p;
}

void fed_upstream_unpend(struct fed_upstream *up, struct fed_pending *p)
{
    core_map_u64_del(&up->pending, p->id);
    if (p->call)
        p->call->pend = NULL;
    core_free(p);
}

/* Fails one pending request: a JSON-RPC error to the client, or the callback. */
static void pend_fail(struct fed_pending *p, int err, const char *msg)
{
    if (p->kind == FED_PEND_FORWARD) {
        struct fed_call *c = p->call;
        if (c) {
            c->pend = NULL;
            if (c->outcome == NULL)
                c->outcome = err == CORE_ETIMEDOUT ? "timeout" : "error";
            fed_call_error(c, -32603, msg);
        }
    } else if (p->cb) {
        p->cb(p->ctx, p->up, err, NULL, 0, NULL);
    }
    core_free(p);
}

static void fail_all_pending(struct fed_upstream *up, int err, const char *msg)
{
    /* Take the entries out first: callbacks may start new requests. */
    size_t n = core_map_u64_len(&up->pending);
    if (n == 0)
        return;
    struct fed_pending **list = core_xmalloc(n * sizeof *list);
    size_t i = 0, it = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&up->pending, &it, &k, &v))
        list[i++] = v;
    for (size_t j = 0; j < i; j++)
        core_map_u64_del(&up->pending, list[j]->id);
    for (size_t j = 0; j < i; j++)
        pend_fail(list[j], err, msg);
    core_free(list);
}

void fed_upstream_sweep(struct fed_upstream *up, uint64_t now)
{
    size_t it = 0;
    uint64_t k;
    void *v;
    struct fed_pending *expired[64];
    size_t n = 0;
    while (n < 64 && core_map_u64_next(&up->pending, &it, &k, &v)) {
        struct fed_pending *p = v;
        if (p->deadline && p->deadline <= now)
            expired[n++] = p;
    }
    for (size_t i = 0; i < n; i++) {
        struct fed_pending *p = expired[i];
        core_map_u64_del(&up->pending, p->id);
        char msg[160];
        snprintf(msg, sizeof msg, "server '%s' did not answer in time", up->srv->cfg->name);
        core_log(CORE_LOG_WARN, "up", "%s: request %" PRIu64 " timed out", up->name, p->id);
        if (p->kind == FED_PEND_FORWARD && up->state == FED_UP_READY) {
            cJSON *params = cJSON_CreateObject();
            cJSON_AddNumberToObject(params, "requestId", (double)p->id);
            cJSON_AddStringToObject(params, "reason", "timed out at the gateway");
            fed_upstream_notify(up, "notifications/cancelled", params);
        }
        pend_fail(p, CORE_ETIMEDOUT, msg);
    }
}

/* ---- writing ---------------------------------------------------------------------------- */

/* More than this queued for a child that does not read means it is stuck: new requests fail
 * instead of growing the daemon without bound. */
#define CHILD_QUEUE_MAX (64u << 20)

/* One frame (the parts end with its newline) to the remote session, which takes messages
 * without one. tp_remote copies the bytes; parts are joined on the stack when they fit. */
static int remote_write(struct fed_upstream *up, const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    const char *p;
    char small[4096];
    struct core_buf b;
    core_buf_init(&b, 0);
    if (n == 1) {
        p = bufs[0].base;
    } else if (total <= sizeof small) {
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(small + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        p = small;
    } else {
        for (unsigned i = 0; i < n; i++) {
            if (core_buf_append(&b, bufs[i].base, bufs[i].len) != 0) {
                core_buf_dispose(&b);
                return CORE_ETOOBIG;
            }
        }
        p = b.data;
    }
    while (total > 0 && (p[total - 1] == '\n' || p[total - 1] == '\r'))
        total--;
    int rc = tp_remote_write(up->remote, p, total);
    core_buf_dispose(&b);
    if (rc == CORE_ETOOBIG)
        core_log_limited(&up->log_limit, CORE_LOG_WARN, "up",
                         "%s: the server is not taking requests (%zu bytes waiting)", up->name,
                         tp_remote_queued(up->remote));
    return rc;
}

int fed_upstream_write(struct fed_upstream *up, const uv_buf_t *bufs, unsigned n)
{
    if (up->remote)
        return remote_write(up, bufs, n);
    if (up->child == NULL || tp_child_exited(up->child))
        return CORE_ECLOSED;
    if (tp_child_queued(up->child) > CHILD_QUEUE_MAX) {
        core_log(CORE_LOG_WARN, "up", "%s: not reading its input (%zu bytes queued)", up->name,
                 tp_child_queued(up->child));
        return CORE_EBUSY;
    }
    return tp_child_write(up->child, bufs, n);
}

static int write_message(struct fed_upstream *up, const char *head, const char *method,
                         cJSON *params)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    int rc = core_buf_appendf(&b, "%s\"method\":\"%s\"", head, method);
    if (rc == 0 && params) {
        char *txt = cJSON_PrintUnformatted(params);
        rc = core_buf_appendf(&b, ",\"params\":%s", txt);
        core_free(txt);
    }
    if (rc == 0)
        rc = core_buf_append(&b, "}\n", 2);
    if (rc == 0) {
        uv_buf_t u = uv_buf_init(b.data, (unsigned)b.len);
        rc = fed_upstream_write(up, &u, 1);
    }
    core_buf_dispose(&b);
    cJSON_Delete(params);
    return rc;
}

void fed_upstream_log_line(struct fed_upstream *up, const char *p, size_t n)
{
    if (up->child)
        tp_child_log_line(up->child, p, n);
    else if (up->remote) /* no log file of its own: the daemon's log, when asked for */
        core_log(CORE_LOG_DEBUG, "up", "%s: %.*s", up->name, (int)(n > 300 ? 300 : n), p);
}

void fed_upstream_notify(struct fed_upstream *up, const char *method, cJSON *params)
{
    int rc = write_message(up, "{\"jsonrpc\":\"2.0\",", method, params);
    if (rc)
        core_log(CORE_LOG_DEBUG, "up", "%s: %s not sent: %s", up->name, method,
                 core_strerror(rc));
}

static int send_request(struct fed_upstream *up, const char *method, cJSON *params,
                        uint64_t timeout_ms, fed_reply_cb cb, void *ctx)
{
    struct fed_pending *p = pend_new(up, FED_PEND_INTERNAL, timeout_ms);
    p->cb = cb;
    p->ctx = ctx;
    char head[64];
    snprintf(head, sizeof head, "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",", p->id);
    int rc = write_message(up, head, method, params);
    if (rc) {
        core_map_u64_del(&up->pending, p->id);
        core_free(p);
    }
    return rc;
}

int fed_upstream_request(struct fed_upstream *up, const char *method, cJSON *params,
                          uint64_t timeout_ms, fed_reply_cb cb, void *ctx)
{
    if (up->state != FED_UP_READY) {
        cJSON_Delete(params);
        return CORE_ECLOSED;
    }
    return send_request(up, method, params, timeout_ms, cb, ctx);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void schedule_restart(struct fed_upstream *up);
static void on_backoff(uv_timer_t *t);
static void remote_down(struct fed_upstream *up, int err, const char *why);

/* Ends the link because of what it said or failed to say: a child is killed (its exit then
 * runs the restart logic), a remote session is closed and goes down at once with `why`. */
static void link_fail(struct fed_upstream *up, const char *why)
{
    if (up->child)
        tp_child_kill(up->child);
    else if (up->remote)
        remote_down(up, CORE_EPROTO, why);
}

static void on_initialized(void *ctx, struct fed_upstream *up, int err, const char *frame,
                           size_t n, const struct core_rpc_env *env)
{
    (void)ctx;
    if (up->closing || up->state != FED_UP_INITIALIZING)
        return;
    if (err == CORE_ECLOSED && up->child == NULL && up->remote == NULL)
        return; /* the link went away; that was logged with its reason */
    if (err || env->kind != CORE_RPC_RESULT) {
        char detail[200] = "";
        if (err == 0)
            snprintf(detail, sizeof detail, ": %.*s", (int)(env->error.len > 150 ? 150 : env->error.len),
                     frame + env->error.off);
        char why[300];
        snprintf(why, sizeof why, "initialize failed%s%s", err ? ": " : "",
                 err ? core_strerror(err) : detail);
        core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, why);
        link_fail(up, why);
        return;
    }
    cJSON *res = cJSON_ParseWithLength(frame + env->result.off, env->result.len);
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(res, "protocolVersion");
    if (!cJSON_IsString(ver) || !fed_version_supported(ver->valuestring, strlen(ver->valuestring))) {
        char why[200];
        snprintf(why, sizeof why, "unsupported protocol version %.60s",
                 cJSON_IsString(ver) ? ver->valuestring : "(none)");
        core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, why);
        cJSON_Delete(res);
        link_fail(up, why);
        return;
    }
    clear_session_state(up);
    up->protocol_version = core_xstrdup(ver->valuestring);
    up->capabilities = cJSON_DetachItemFromObjectCaseSensitive(res, "capabilities");
    if (!cJSON_IsObject(up->capabilities)) {
        cJSON_Delete(up->capabilities);
        up->capabilities = cJSON_CreateObject();
    }
    up->server_info = cJSON_DetachItemFromObjectCaseSensitive(res, "serverInfo");
    cJSON *ins = cJSON_GetObjectItemCaseSensitive(res, "instructions");
    if (cJSON_IsString(ins) && ins->valuestring[0])
        up->instructions = core_xstrdup(ins->valuestring);
    cJSON_Delete(res);
    if (up->remote) /* the protocol version header from now on, and the server's stream */
        tp_remote_ready(up->remote, up->protocol_version);
    fed_upstream_notify(up, "notifications/initialized", NULL);
    set_last_error(up, NULL);
    up->ready_at = fed_now(up->gw);
    set_state(up, FED_UP_READY);
    cJSON *si = up->server_info ? cJSON_GetObjectItemCaseSensitive(up->server_info, "name") : NULL;
    core_log(CORE_LOG_INFO, "up", "%s: ready (%s, protocol %s)", up->name,
             cJSON_IsString(si) ? si->valuestring : "?", up->protocol_version);
    fed_router_upstream_ready(up);
}

static void on_link_frame(void *ctx, const char *p, size_t n)
{
    struct fed_upstream *up = ctx;
    struct core_rpc_env env;
    int rc = core_rpc_scan(p, n, &env);
    if (rc == 0 && env.dup) {
        /* Clients would read the other copy of the key than the gateway routed on. */
        core_log_limited(&up->log_limit, CORE_LOG_ERROR, "up",
                         "%s: frame with a duplicate \"%s\" key dropped", up->name, env.dup_key);
        return;
    }
    if (rc != 0 || env.kind == CORE_RPC_INVALID || env.kind == CORE_RPC_BATCH) {
        core_log(CORE_LOG_ERROR, "up", "%s: invalid frame from the server (%zu bytes: %.*s%s)",
                 up->name, n, (int)(n > 80 ? 80 : n), p, n > 80 ? "..." : "");
        if (!up->closing)
            link_fail(up, "the server sent an invalid JSON-RPC message");
        return;
    }
    if (env.kind == CORE_RPC_RESULT || env.kind == CORE_RPC_ERROR) {
        uint64_t id = 0;
        bool ok = env.id_type == CORE_JSON_NUMBER && env.id.len <= 19;
        for (size_t i = 0; ok && i < env.id.len; i++) {
            char ch = p[env.id.off + i];
            if (ch < '0' || ch > '9')
                ok = false;
            else
                id = id * 10 + (uint64_t)(ch - '0');
        }
        struct fed_pending *pd = ok ? core_map_u64_del(&up->pending, id) : NULL;
        if (pd == NULL) {
            core_log_limited(&up->log_limit, CORE_LOG_DEBUG, "up",
                             "%s: reply to unknown id %.*s dropped", up->name,
                             (int)(env.id.len > 40 ? 40 : env.id.len), p + env.id.off);
            return;
        }
        if (pd->kind == FED_PEND_INTERNAL) {
            if (pd->cb)
                pd->cb(pd->ctx, up, 0, p, n, &env);
        } else if (pd->call) {
            struct fed_call *c = pd->call;
            c->pend = NULL;
            if (c->audit && c->outcome == NULL) {
                struct core_span v;
                enum core_json_type t = CORE_JSON_ABSENT;
                if (env.kind == CORE_RPC_ERROR)
                    c->outcome = "error";
                else if (memmem(p + env.result.off, env.result.len, "\"isError\"", 9) &&
                         core_json_obj_get(p, env.result, "isError", &v, &t) == 0 &&
                         t == CORE_JSON_TRUE) /* the full scan only when the key may be there */
                    c->outcome = "tool_error";
                else
                    c->outcome = "ok";
            }
            /* The hot path: the upstream's bytes with only the id replaced. */
            uv_buf_t parts[3] = {
                uv_buf_init((char *)p, (unsigned)env.id.off),
                uv_buf_init(c->id, (unsigned)c->id_len),
                uv_buf_init((char *)p + env.id.off + env.id.len,
                            (unsigned)(n - env.id.off - env.id.len)),
            };
            fed_call_respond(c, parts, 3);
        }
        core_free(pd);
        return;
    }
    fed_router_upstream_message(up, p, n, &env);
}

static void on_child_invalid(void *ctx, int err)
{
    struct fed_upstream *up = ctx;
    core_log(CORE_LOG_ERROR, "up", "%s: invalid output from the server: %s", up->name,
             core_strerror(err));
    if (up->child)
        tp_child_kill(up->child);
}

static void on_child_exit(void *ctx, int64_t status, int term_signal)
{
    struct fed_upstream *up = ctx;
    up->exit_status = status;
    up->term_signal = term_signal;
    char tail[600];
    size_t tl = up->child ? tp_child_stderr_tail(up->child, tail, sizeof tail) : 0;
    tp_child_free(up->child);
    up->child = NULL;
    char msg[256], why[64];
    if (term_signal)
        snprintf(why, sizeof why, "exited (signal %d)", term_signal);
    else
        snprintf(why, sizeof why, "exited (status %" PRId64 ")", status);
    snprintf(msg, sizeof msg, "server '%s' %s", up->srv->cfg->name, why);
    set_last_error(up, why);
    up->down_at = fed_now(up->gw);
    bool was_ready = up->state == FED_UP_READY;
    core_log(up->closing ? CORE_LOG_INFO : CORE_LOG_WARN, "up", "%s: %s%s%.*s", up->name, msg,
             tl ? "; last stderr: " : "", (int)(tl > 300 ? 300 : tl),
             tl > 300 ? tail + tl - 300 : tail);
    fail_all_pending(up, CORE_ECLOSED, msg);
    fed_router_upstream_down(up);
    if (up->closing) {
        maybe_free(up);
        return;
    }
    const struct core_server_cfg *cfg = up->srv->cfg;
    bool failed = term_signal != 0 || status != 0 || was_ready == false;
    if (cfg->restart == CORE_RESTART_NEVER ||
        (cfg->restart == CORE_RESTART_ON_FAILURE && !failed && !up->gw->shutting_down)) {
        set_state(up, FED_UP_STOPPED);
        return;
    }
    schedule_restart(up);
}

static void schedule_restart(struct fed_upstream *up)
{
    uint64_t now = fed_now(up->gw);
    if (up->ready_at && now - up->ready_at >= HEALTHY_RESET_MS)
        up->backoff_ms = BACKOFF_MIN_MS;
    up->ready_at = 0;
    set_state(up, FED_UP_BACKOFF);
    core_log(CORE_LOG_INFO, "up", "%s: restarting in %" PRIu64 " ms", up->name, up->backoff_ms);
    uv_timer_start(&up->timer, on_backoff, up->backoff_ms, 0);
    up->backoff_ms = up->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : up->backoff_ms * 2;
}

static void on_backoff(uv_timer_t *t)
{
    struct fed_upstream *up = container_of(t, struct fed_upstream, timer);
    if (!up->closing)
        fed_upstream_start(up);
}

static cJSON *client_capabilities(void)
{
    /* The capabilities the gateway can broker for its clients: a shared child is initialised
     * before any client arrives, and some servers only offer tools to clients declaring them. */
    cJSON *caps = cJSON_CreateObject();
    cJSON *roots = cJSON_AddObjectToObject(caps, "roots");
    cJSON_AddTrueToObject(roots, "listChanged");
    cJSON_AddObjectToObject(caps, "sampling");
    cJSON *elic = cJSON_AddObjectToObject(caps, "elicitation");
    cJSON_AddObjectToObject(elic, "form");
    cJSON_AddObjectToObject(elic, "url");
    return caps;
}

/* The names the server `self` must never inherit from the daemon's environment, whatever its
 * env_inherit says: every client's token_env and every variable another server's env.* reads
 * (the gateway's secrets and the other servers'). The strings are borrowed from gw->cfg; only
 * the NULL-terminated array is the caller's to free. */
static char **env_deny_list(const struct fed_gateway *gw, const struct core_server_cfg *self)
{
    const struct core_config *all = gw->cfg;
    size_t n = all->n_secret_env;
    for (size_t i = 0; i < all->n_servers; i++)
        n += all->servers[i].n_secret_env;
    char **deny = core_xcalloc(n + 1, sizeof *deny);
    size_t k = 0;
    for (size_t i = 0; i < all->n_secret_env; i++)
        deny[k++] = all->secret_env[i];
    for (size_t i = 0; i < all->n_servers; i++) {
        const struct core_server_cfg *other = &all->servers[i];
        if (strcmp(other->name, self->name) == 0)
            continue; /* its own: they reach it through its env.* anyway */
        for (size_t j = 0; j < other->n_secret_env; j++)
            deny[k++] = other->secret_env[j];
    }
    deny[k] = NULL;
    return deny;
}

/* Spawns the stdio child. Returns 0 or the spawn error (logged, and kept as last_error). */
static int start_child(struct fed_upstream *up)
{
    const struct core_server_cfg *cfg = up->srv->cfg;
    struct fed_gateway *gw = up->gw;
    char log_path[4096];
    const char *lp = NULL;
    if (gw->state_dir) {
        snprintf(log_path, sizeof log_path, "%s/logs/%s.log", gw->state_dir, cfg->name);
        lp = log_path;
    }
    char **deny = env_deny_list(gw, cfg);
    struct tp_child_opts opts = {
        .name = up->name,
        .file = cfg->command,
        .args = cfg->args,
        .env_add = cfg->env,
        .env_inherit_all = cfg->env_inherit == CORE_ENV_INHERIT_ALL,
        .env_pass = cfg->env_pass,
        .env_deny = deny,
        .cwd = cfg->cwd,
        .max_frame = cfg->max_frame,
        .log_path = lp,
        .log_max = SERVER_LOG_MAX,
        .self_exe = gw->self_exe,
        .stop_grace_ms = 2000,
    };
    static const struct tp_child_cbs cbs = {
        .on_frame = on_link_frame,
        .on_invalid = on_child_invalid,
        .on_exit = on_child_exit,
    };
    int rc = tp_child_spawn(gw->loop, &opts, &cbs, up, &up->child);
    core_free(deny); /* the child has its environment by now */
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "cannot start '%.200s': %s", cfg->command, core_strerror(rc));
        core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, why);
        set_last_error(up, why);
        up->child = NULL;
        return rc;
    }
    core_log(CORE_LOG_INFO, "up", "%s: started pid %d", up->name, tp_child_pid(up->child));
    return 0;
}

/* ---- the remote link ---------------------------------------------------------------------- */

/* The remote session went away (unreachable, TLS, session expired, a broken protocol, refused
 * credentials) or the gateway ended it: like a child's exit, the calls in flight fail with the
 * reason, and a restart (a new session, a new initialize) follows. An expired session of a
 * server that was serving is re-initialised at once; everything else backs off. */
static void remote_down(struct fed_upstream *up, int err, const char *why)
{
    if (up->remote == NULL)
        return;
    struct tp_remote *r = up->remote;
    up->remote = NULL;
    tp_remote_close(r); /* safe from inside its own callbacks */
    if (up->oreq) {     /* a token for the session that just ended */
        auth_oauth_cancel(up->oreq);
        up->oreq = NULL;
    }
    bool was_ready = up->state == FED_UP_READY;
    set_last_error(up, why);
    up->down_at = fed_now(up->gw);
    char msg[600];
    snprintf(msg, sizeof msg, "server '%s' is unavailable: %s", up->srv->cfg->name, why);
    core_log(up->closing ? CORE_LOG_INFO : CORE_LOG_WARN, "up", "%s: down: %s", up->name, why);
    fail_all_pending(up, CORE_ECLOSED, msg);
    fed_router_upstream_down(up);
    if (up->closing) {
        maybe_free(up);
        return;
    }
    if (err == AUTH_OAUTH_ENEEDLOGIN) {
        set_state(up, FED_UP_NEEDS_LOGIN);
        return;
    }
    if (up->srv->cfg->restart == CORE_RESTART_NEVER) {
        set_state(up, FED_UP_STOPPED);
        return;
    }
    /* A session that served a while and expired is renewed at once; one that expires right
     * after it began (a server that forgets every session) backs off like any failure. */
    if (err == CORE_ENOTFOUND && was_ready && fed_now(up->gw) - up->ready_at >= FAST_REINIT_MS) {
        core_log(CORE_LOG_INFO, "up", "%s: session expired; initialising a new one", up->name);
        up->ready_at = 0;
        set_state(up, FED_UP_BACKOFF);
        uv_timer_start(&up->timer, on_backoff, 0, 0);
        return;
    }
    schedule_restart(up);
}

static void on_remote_down(void *ctx, int err, const char *why)
{
    remote_down(ctx, err, why);
}

/* A token after a 401/403 in the middle of a session: the held messages go out with it. */
static void on_oauth_retry(void *ctx, int err, const char *authorization, const char *why)
{
    struct fed_upstream *up = ctx;
    up->oreq = NULL;
    if (up->remote == NULL)
        return;
    if (err) {
        remote_down(up, err, why && *why ? why : "no OAuth token");
        return;
    }
    set_bearer(up, authorization);
    tp_remote_set_bearer(up->remote, authorization);
    tp_remote_resume(up->remote);
}

static void on_remote_auth(void *ctx, int status, const char *www)
{
    struct fed_upstream *up = ctx;
    const struct core_server_cfg *cfg = up->srv->cfg;
    char why[300];
    switch (cfg->auth) {
    case CORE_REMOTE_AUTH_OAUTH: {
        /* The token was refused (expired, revoked, a scope is missing): the OAuth client
         * refreshes it or steps up; messages wait in tp_remote meanwhile. */
        if (up->oreq)
            return; /* already asking */
        /* A server that refuses every fresh token would have us refresh in a loop. */
        uint64_t now = fed_now(up->gw);
        if (now - up->auth_since > AUTH_WINDOW_MS) {
            up->auth_since = now;
            up->auth_count = 0;
        }
        if (++up->auth_count > AUTH_MAX_TRIES) {
            snprintf(why, sizeof why, "the server refused %u fresh OAuth tokens in a row (HTTP %d)",
                     AUTH_MAX_TRIES, status);
            remote_down(up, CORE_EINVAL, why);
            return;
        }
        struct auth_oauth *o = fed_gateway_oauth(up->gw, why, sizeof why);
        struct auth_oauth_server srv;
        auth_oauth_server_from_config(cfg, &srv);
        struct auth_oauth_challenge ch = {
            .status = status, .www_authenticate = www, .rejected = up->bearer};
        if (o && auth_oauth_get_token(o, &srv, &ch, on_oauth_retry, up, &up->oreq) == 0)
            return;
        if (o)
            snprintf(why, sizeof why, "the server answered HTTP %d; no new token was asked for",
                     status);
        remote_down(up, CORE_EINVAL, why);
        return;
    }
    case CORE_REMOTE_AUTH_BEARER:
        snprintf(why, sizeof why, "the server refused the bearer token from %s (HTTP %d)",
                 cfg->token_env, status);
        break;
    default:
        snprintf(why, sizeof why,
                 "the server requires authorization (HTTP %d); set auth = bearer or auth = oauth",
                 status);
        break;
    }
    remote_down(up, CORE_EINVAL, why);
}

static enum tp_remote_kind remote_kind(enum core_transport t)
{
    switch (t) {
    case CORE_TRANSPORT_STREAMABLE:
        return TP_REMOTE_STREAMABLE;
    case CORE_TRANSPORT_SSE:
        return TP_REMOTE_SSE;
    case CORE_TRANSPORT_AUTO:
        break;
    }
    return TP_REMOTE_AUTO;
}

/* Opens the remote session object (nothing goes on the network before the initialize request
 * is written). Upstream credentials come only from the config: the client's never do. */
static int start_remote(struct fed_upstream *up, const char *authorization)
{
    const struct core_server_cfg *cfg = up->srv->cfg;
    char why[300] = "";
    struct tp_hclient *hc = fed_gateway_hclient(up->gw);
    if (hc == NULL) {
        set_last_error(up, "the HTTP client could not be created");
        return CORE_EINVAL;
    }
    struct core_buf bearer;
    core_buf_init(&bearer, 0);
    if (cfg->auth == CORE_REMOTE_AUTH_BEARER) {
        const char *tok = getenv(cfg->token_env);
        if (tok == NULL || tok[0] == '\0' || core_buf_appendf(&bearer, "Bearer %s", tok) != 0) {
            snprintf(why, sizeof why, "token_env: environment variable %s is not set",
                     cfg->token_env);
            set_last_error(up, why);
            core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, why);
            core_buf_dispose(&bearer);
            return CORE_EINVAL;
        }
    }
    struct tp_remote_opts o = {
        .url = cfg->url,
        .kind = remote_kind(cfg->transport),
        .headers = (const char *const *)cfg->headers,
        .bearer = bearer.len ? bearer.data : authorization,
        .ca_file = cfg->ca_file,
        .max_frame = cfg->max_frame,
    };
    static const struct tp_remote_cbs cbs = {
        .on_frame = on_link_frame,
        .on_auth = on_remote_auth,
        .on_down = on_remote_down,
    };
    int rc = tp_remote_new(hc, &o, &cbs, up, &up->remote);
    if (bearer.len)
        sodium_memzero(bearer.data, bearer.len);
    core_buf_dispose(&bearer);
    if (rc) {
        snprintf(why, sizeof why, "cannot open %.200s: %s", cfg->url, core_strerror(rc));
        core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, why);
        set_last_error(up, why);
        up->remote = NULL;
        return rc;
    }
    core_log(CORE_LOG_INFO, "up", "%s: connecting to %s", up->name, cfg->url);
    return 0;
}

static void start_failed(struct fed_upstream *up)
{
    up->down_at = fed_now(up->gw);
    if (up->srv->cfg->restart == CORE_RESTART_NEVER)
        set_state(up, FED_UP_STOPPED);
    else
        schedule_restart(up);
}

static void send_initialize(struct fed_upstream *up);

/* The token for a new session of an auth = oauth server: the session opens with it, or the
 * server waits for a login (or backs off when the authorization server failed). */
static void on_oauth_token(void *ctx, int err, const char *authorization, const char *why)
{
    struct fed_upstream *up = ctx;
    up->oreq = NULL;
    if (up->closing || up->state != FED_UP_STARTING)
        return;
    if (err == AUTH_OAUTH_ENEEDLOGIN) {
        /* No token yet: OAuth is asked for by the server's challenge, so the session opens
         * without one. A public server simply serves; one that answers 401 comes back through
         * on_remote_auth, whose discovery ends in the needs-login state with its reason. */
        core_log(CORE_LOG_INFO, "up", "%s: no OAuth token yet; connecting without one", up->name);
        authorization = NULL;
    } else if (err) {
        why = why && *why ? why : core_strerror(err);
        set_last_error(up, why);
        up->down_at = fed_now(up->gw);
        core_log(CORE_LOG_WARN, "up", "%s: %s", up->name, why);
        start_failed(up);
        return;
    }
    set_bearer(up, authorization);
    if (start_remote(up, authorization) != 0) {
        start_failed(up);
        return;
    }
    send_initialize(up);
}

void fed_upstream_start(struct fed_upstream *up)
{
    if (up->closing || up->child != NULL || up->remote != NULL || up->oreq != NULL)
        return;
    const struct core_server_cfg *cfg = up->srv->cfg;
    set_state(up, FED_UP_STARTING);
    if (cfg->url && cfg->auth == CORE_REMOTE_AUTH_OAUTH) {
        char why[300] = "";
        struct auth_oauth *o = fed_gateway_oauth(up->gw, why, sizeof why);
        struct auth_oauth_server srv;
        auth_oauth_server_from_config(cfg, &srv);
        if (o == NULL || auth_oauth_get_token(o, &srv, NULL, on_oauth_token, up, &up->oreq) != 0) {
            up->oreq = NULL;
            set_last_error(up, why[0] ? why : "the OAuth client refused the server's URL");
            core_log(CORE_LOG_ERROR, "up", "%s: %s", up->name, up->last_error);
            start_failed(up);
        }
        return;
    }
    int rc = cfg->url ? start_remote(up, NULL) : start_child(up);
    if (rc) {
        start_failed(up);
        return;
    }
    send_initialize(up);
}

void fed_upstream_credentials_changed(struct fed_upstream *up)
{
    if (up->closing)
        return;
    up->backoff_ms = BACKOFF_MIN_MS;
    switch (up->state) {
    case FED_UP_NEEDS_LOGIN:
    case FED_UP_STOPPED:
        fed_upstream_start(up);
        break;
    case FED_UP_BACKOFF:
        uv_timer_start(&up->timer, on_backoff, 0, 0);
        break;
    case FED_UP_READY:
    case FED_UP_INITIALIZING:
        if (up->remote)
            remote_down(up, CORE_ECLOSED, "the stored credentials changed; reconnecting");
        if (up->state == FED_UP_BACKOFF)
            uv_timer_start(&up->timer, on_backoff, 0, 0);
        break;
    case FED_UP_STARTING:
    case FED_UP_CLOSING:
        break;
    }
}

static void send_initialize(struct fed_upstream *up)
{
    const struct core_server_cfg *cfg = up->srv->cfg;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "protocolVersion", FED_LATEST_VERSION);
    cJSON_AddItemToObject(params, "capabilities", client_capabilities());
    cJSON *info = cJSON_AddObjectToObject(params, "clientInfo");
    cJSON_AddStringToObject(info, "name", "agentgate");
    cJSON_AddStringToObject(info, "version", AG_VERSION);
    set_state(up, FED_UP_INITIALIZING);
    uint64_t to = cfg->request_timeout_ms && cfg->request_timeout_ms < INIT_TIMEOUT_MS
                      ? cfg->request_timeout_ms
                      : INIT_TIMEOUT_MS;
    if (send_request(up, "initialize", params, to, on_initialized, NULL) != 0)
        link_fail(up, "the initialize request could not be sent");
}

void fed_upstream_close(struct fed_upstream *up, const char *why)
{
    if (up->closing)
        return;
    bool was_ready = up->state == FED_UP_READY;
    up->closing = true;
    set_state(up, FED_UP_CLOSING);
    fail_all_pending(up, CORE_ECLOSED, why);
    (void)was_ready;
    fed_router_upstream_down(up);
    uv_timer_stop(&up->timer);
    uv_close((uv_handle_t *)&up->timer, on_timer_close);
    if (up->oreq) { /* its callback does not run */
        auth_oauth_cancel(up->oreq);
        up->oreq = NULL;
    }
    if (up->remote) { /* the session ends (DELETE) and the object is freed */
        tp_remote_close(up->remote);
        up->remote = NULL;
    }
    if (up->child)
        tp_child_stop(up->child);
    else
        maybe_free(up);
}

/* ---- list fetching ------------------------------------------------------------------------- */

struct list_fetch {
    enum fed_list list;
    cJSON *items;
    int pages;
    uint64_t started; /* loop ms */
};

static void fetch_page(struct fed_upstream *up, struct list_fetch *f, const char *cursor);

static void list_done(struct fed_upstream *up, struct list_fetch *f, bool ok)
{
    up->lists_fetching--;
    enum fed_list l = f->list;
    up->list_refreshing[l] = false;
    bool again = up->list_again[l];
    up->list_again[l] = false;
    /* The gateway's own fetches tell, too, whether clients can wait for this server's list. */
    bool prompt = fed_now(up->gw) - f->started <= up->gw->cfg->list_timeout_ms;
    if (ok && prompt && up->list_late[l]) {
        core_log(CORE_LOG_INFO, "up", "%s: %s is prompt again", up->name, list_methods[l]);
        up->list_late[l] = false;
    } else if (ok && !prompt && !up->list_late[l]) {
        core_log(CORE_LOG_WARN, "up", "%s: %s is slower than the list deadline; clients get "
                 "its cached list", up->name, list_methods[l]);
        up->list_late[l] = true;
    }
    if (!ok || up->closing || up->state != FED_UP_READY) {
        cJSON_Delete(f->items);
        core_free(f);
        if (again && !up->closing && up->state == FED_UP_READY)
            fed_upstream_fetch_list(up, l);
        return;
    }
    char *txt = cJSON_PrintUnformatted(f->items);
    uint64_t h = core_hash64(txt, strlen(txt));
    core_free(txt);
    /* A first list counts as a change: sessions that began before this upstream was ready
     * learn about its tools this way. */
    bool changed = !up->list_known[l] || h != up->list_hash[l];
    list_set(up, l, f->items);
    up->list_hash[l] = h;
    core_free(f);
    fed_router_list_updated(up, l, changed);
    if (again && !up->closing && up->state == FED_UP_READY)
        fed_upstream_fetch_list(up, l);
}

static void on_list_page(void *ctx, struct fed_upstream *up, int err, const char *frame, size_t n,
                         const struct core_rpc_env *env)
{
    struct list_fetch *f = ctx;
    if (err || env->kind != CORE_RPC_RESULT) {
        core_log(CORE_LOG_WARN, "up", "%s: %s failed%s%s", up->name, list_methods[f->list],
                 err ? ": " : "", err ? core_strerror(err) : "");
        list_done(up, f, false);
        return;
    }
    cJSON *res = cJSON_ParseWithLength(frame + env->result.off, env->result.len);
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(res, list_keys[f->list]);
    if (cJSON_IsArray(arr)) {
        cJSON *item;
        while ((item = cJSON_DetachItemFromArray(arr, 0)) != NULL)
            cJSON_AddItemToArray(f->items, item);
    }
    cJSON *next = cJSON_GetObjectItemCaseSensitive(res, "nextCursor");
    if (cJSON_IsString(next) && ++f->pages < MAX_LIST_PAGES && !up->closing) {
        char *cur = core_xstrdup(next->valuestring);
        cJSON_Delete(res);
        fetch_page(up, f, cur);
        core_free(cur);
        return;
    }
    cJSON_Delete(res);
    list_done(up, f, true);
}

static void fetch_page(struct fed_upstream *up, struct list_fetch *f, const char *cursor)
{
    cJSON *params = NULL;
    if (cursor) {
        params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "cursor", cursor);
    }
    /* The gateway's own fetches wait as long as any request may: a slow server's list is
     * still worth caching. */
    if (fed_upstream_request(up, list_methods[f->list], params, 0, on_list_page, f) != 0)
        list_done(up, f, false);
}

void fed_upstream_fetch_list(struct fed_upstream *up, enum fed_list l)
{
    if (!fed_upstream_has_cap(up, list_caps[l])) {
        list_set(up, l, NULL);
        return;
    }
    if (up->list_refreshing[l]) {
        up->list_again[l] = true;
        return;
    }
    struct list_fetch *f = core_xcalloc(1, sizeof *f);
    f->list = l;
    f->items = cJSON_CreateArray();
    f->started = fed_now(up->gw);
    up->lists_fetching++;
    up->list_refreshing[l] = true;
    fetch_page(up, f, NULL);
}

/* ---- resource index -------------------------------------------------------------------------- */

size_t fed_upstream_res_match(const struct fed_upstream *up, const char *uri, bool *exact)
{
    *exact = false;
    const cJSON *item;
    cJSON_ArrayForEach(item, up->lists[FED_LIST_RESOURCES])
    {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(item, "uri");
        if (cJSON_IsString(u) && strcmp(u->valuestring, uri) == 0) {
            *exact = true;
            return strlen(uri);
        }
    }
    size_t best = 0;
    cJSON_ArrayForEach(item, up->lists[FED_LIST_TEMPLATES])
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(item, "uriTemplate");
        if (!cJSON_IsString(t))
            continue;
        const char *brace = strchr(t->valuestring, '{');
        size_t lit = brace ? (size_t)(brace - t->valuestring) : strlen(t->valuestring);
        if (lit > 0 && strncmp(uri, t->valuestring, lit) == 0 && lit > best)
            best = lit;
    }
    return best;
}
