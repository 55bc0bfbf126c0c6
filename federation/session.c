/* Downstream sessions and the calls (client requests) in flight within them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "policy/audit.h"
#include "policy/policy.h"

/* ---- instances ---------------------------------------------------------------------------- */

static const char *client_key(const struct fed_session *s)
{
    return s->client ? s->client : "";
}

/* Adds d (+1 or -1) to a per-key count kept in m as (void *)(uintptr_t); a zero count goes. */
static void count_add(struct core_map_str *m, const char *key, int d)
{
    size_t kl = strlen(key);
    uintptr_t n = (uintptr_t)core_map_str_get(m, key, kl);
    if (d < 0 && n <= 1)
        core_map_str_del(m, key, kl);
    else
        core_map_str_put(m, key, kl, (void *)(d > 0 ? n + 1 : n - 1));
}

/* The instance of srv for s, made and started when its isolation needs a new one; NULL when
 * srv is at max_instances (*full set). */
static struct fed_upstream *acquire(struct fed_session *s, struct fed_server *srv, bool *full)
{
    const char *key = client_key(s);
    enum core_isolation iso = srv->cfg->isolation;
    bool private = iso == CORE_ISOLATION_CLIENT || iso == CORE_ISOLATION_SESSION;
    struct fed_upstream *up = NULL;
    *full = false;
    if (!private)
        up = srv->shared;
    else if (iso == CORE_ISOLATION_CLIENT)
        up = core_map_str_get(&srv->by_client, key, strlen(key));
    if (up == NULL && private) {
        if (srv->n_private >= srv->cfg->max_instances) {
            *full = true;
            return NULL;
        }
        up = fed_upstream_new(srv, iso == CORE_ISOLATION_SESSION ? s : NULL);
        if (iso == CORE_ISOLATION_CLIENT) {
            up->client_key = core_xstrdup(key);
            snprintf(up->name, sizeof up->name, "%s[%s]", srv->cfg->name,
                     key[0] ? key : "anonymous");
            core_map_str_put(&srv->by_client, key, strlen(key), up);
        }
        srv->n_private++;
        fed_upstream_start(up);
    }
    if (up) {
        up->users++;
        count_add(&up->idents, key, +1);
    }
    return up;
}

void fed_session_release_instance(struct fed_session *s, size_t i)
{
    struct fed_upstream *up = s->inst[i];
    s->inst[i] = NULL;
    if (up == NULL)
        return;
    up->users--;
    count_add(&up->idents, client_key(s), -1);
    bool mine = up->owner == s;
    if (!mine && !(up->client_key && up->users == 0))
        return;
    if (up->client_key) {
        struct core_map_str *m = &up->srv->by_client;
        if (core_map_str_get(m, up->client_key, strlen(up->client_key)) == up)
            core_map_str_del(m, up->client_key, strlen(up->client_key));
    }
    up->owner = NULL;
    up->srv->n_private--;
    fed_upstream_close(up, mine ? "session ended" : "its client's last session ended");
}

int fed_session_sync_instances(struct fed_session *s, const struct fed_server **full)
{
    struct fed_gateway *gw = s->gw;
    int rc = 0;
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_server *srv = gw->servers[i];
        /* No child is started, or kept, for a server the client's policy excludes. */
        if (!pol_client_has_server(s->ccfg, srv->cfg->name)) {
            fed_session_release_instance(s, i);
            continue;
        }
        if (s->inst[i])
            continue;
        bool at_cap;
        s->inst[i] = acquire(s, srv, &at_cap);
        if (at_cap) {
            core_log(CORE_LOG_WARN, "sess",
                     "%.8s: server %s has %u instances already (max_instances); none for this "
                     "session",
                     s->id, srv->cfg->name, srv->cfg->max_instances);
            if (rc == 0 && full)
                *full = srv;
            rc = CORE_EBUSY;
        }
    }
    return rc;
}

/* ---- the session table --------------------------------------------------------------------- */

/* A session nothing depends on right now: a token session (its client can bring it back) with
 * no call in flight and no open stream. */
static bool evictable(const struct fed_session *s)
{
    return s->token != NULL && s->calls == NULL && s->streams == 0 && !s->closing;
}

/* True when a new session of `client` fits under max_sessions, in total and for the client,
 * after evicting the least recently used idle session if needed. */
static bool make_room(struct fed_gateway *gw, const struct core_client_cfg *client)
{
    const char *key = client ? client->name : "";
    unsigned cap_client = client ? client->max_sessions : 0;
    for (;;) {
        size_t total = core_map_str_len(&gw->sessions);
        uintptr_t mine = (uintptr_t)core_map_str_get(&gw->client_sessions, key, strlen(key));
        bool over_total = total >= gw->cfg->max_sessions;
        bool over_client = cap_client && mine >= cap_client;
        if (!over_total && !over_client)
            return true;
        struct fed_session *lru = NULL;
        size_t it = 0;
        const char *k;
        void *v;
        while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
            struct fed_session *s = v;
            /* Over the total, anyone's idle session may go; over the client's own cap, only
             * one of its own. */
            if (!evictable(s) || (!over_total && strcmp(client_key(s), key) != 0))
                continue;
            if (lru == NULL || s->last_seen < lru->last_seen)
                lru = s;
        }
        if (lru == NULL)
            return false;
        core_log(CORE_LOG_INFO, "sess", "%.8s: evicted to make room (max_sessions); its token "
                 "can bring it back", lru->id);
        fed_session_end(lru);
    }
}

static struct fed_session *session_alloc(struct fed_gateway *gw, const char *id,
                                         const struct core_client_cfg *client,
                                         const struct fed_session_ops *ops, void *ops_ctx)
{
    struct fed_session *s = core_xcalloc(1, sizeof *s);
    s->gw = gw;
    s->serial = ++gw->next_serial;
    if (id)
        snprintf(s->id, sizeof s->id, "%s", id);
    else
        auth_random_hex(s->id, 16);
    s->client = client ? core_xstrdup(client->name) : NULL;
    s->ccfg = client;
    s->mcp_log_level = -1;
    s->ops = ops;
    s->ops_ctx = ops_ctx;
    s->next_s2c = 1;
    s->last_seen = fed_now(gw);
    core_map_str_init(&s->subs);
    core_map_u64_init(&s->s2c);
    s->inst = core_xcalloc(gw->n_servers ? gw->n_servers : 1, sizeof *s->inst);
    core_map_str_put(&gw->sessions, s->id, strlen(s->id), s);
    count_add(&gw->client_sessions, client_key(s), +1);
    return s;
}

/* Binds a new session to its instances; on failure ends it (quietly: the front owns nothing of
 * it yet) and writes why. */
static bool bind_new(struct fed_session *s, char *why, size_t whylen)
{
    const struct fed_server *full = NULL;
    if (fed_session_sync_instances(s, &full) == 0)
        return true;
    core_set_err(why, whylen,
                 "server '%s' runs %u instances already (its max_instances); end other sessions "
                 "or raise max_instances in [server.%s]",
                 full->cfg->name, full->cfg->max_instances, full->cfg->name);
    s->ops = NULL;
    fed_session_end(s);
    return false;
}

struct fed_session *fed_session_new(struct fed_gateway *gw, const struct core_client_cfg *client,
                                     const struct fed_session_ops *ops, void *ops_ctx, char *why,
                                     size_t whylen)
{
    if (!make_room(gw, client)) {
        bool total = core_map_str_len(&gw->sessions) >= gw->cfg->max_sessions;
        core_set_err(why, whylen, "too many sessions (max_sessions = %u%s%s), none of them idle",
                     total || client == NULL ? gw->cfg->max_sessions : client->max_sessions,
                     total || client == NULL ? "" : " for client ",
                     total || client == NULL ? "" : client->name);
        core_log(CORE_LOG_WARN, "sess", "new session refused: %s", why);
        return NULL;
    }
    struct fed_session *s = session_alloc(gw, NULL, client, ops, ops_ctx);
    if (!bind_new(s, why, whylen))
        return NULL;
    core_log(CORE_LOG_INFO, "sess", "%.8s: new session (client %s)", s->id,
             s->client ? s->client : "anonymous");
    return s;
}

void fed_s2c_free(struct fed_s2c *r)
{
    core_free(r->up_id);
    core_free(r);
}

struct fed_session *fed_session_find(struct fed_gateway *gw, const char *id)
{
    return core_map_str_get(&gw->sessions, id, strlen(id));
}

bool fed_session_has_cap(const struct fed_session *s, const char *cap)
{
    return s->client_caps != NULL && cJSON_GetObjectItemCaseSensitive(s->client_caps, cap);
}

void fed_session_notify(struct fed_session *s, const uv_buf_t *bufs, unsigned n)
{
    if (s->ops && s->ops->notify && !s->closing)
        s->ops->notify(s->ops_ctx, s, bufs, n);
}

/* ---- sealed tokens ------------------------------------------------------------------------ */

/* The additional data of a session token: its purpose and the client it belongs to, so a token
 * presented by another client does not open. */
static size_t token_ad(const char *client, char *ad, size_t cap)
{
    int n = snprintf(ad, cap, "session%c%s", '\0', client ? client : "");
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void drop_token(struct fed_session *s)
{
    if (s->token == NULL)
        return;
    struct fed_session *cur = core_map_str_get(&s->gw->tokens, s->token, strlen(s->token));
    if (cur == s)
        core_map_str_del(&s->gw->tokens, s->token, strlen(s->token));
    core_free(s->token);
    s->token = NULL;
}

static void set_token(struct fed_session *s, char *tok, uint64_t iat, uint64_t exp)
{
    drop_token(s);
    s->token = tok;
    s->token_iat = iat;
    s->token_exp = exp;
    s->token_stale = false;
    core_map_str_put(&s->gw->tokens, tok, strlen(tok), s);
}

const char *fed_session_token(struct fed_session *s)
{
    struct fed_gateway *gw = s->gw;
    uint64_t now = fed_unix_now();
    uint64_t ttl = gw->cfg->session_ttl_ms / 1000;
    if (ttl == 0)
        ttl = 1;
    /* Re-sealed when the state changed, and now and then so that the expiry slides for a
     * client in use (clients adopt the Mcp-Session-Id of every response). */
    if (s->closing || (s->token && !s->token_stale && now < s->token_iat + ttl / 4))
        return s->token;
    /* Every request carries the token, so empty and default fields are left out. */
    cJSON *st = cJSON_CreateObject();
    cJSON_AddNumberToObject(st, "v", 1);
    cJSON_AddStringToObject(st, "sid", s->id);
    if (s->client)
        cJSON_AddStringToObject(st, "c", s->client);
    cJSON_AddStringToObject(st, "pv",
                            s->protocol_version ? s->protocol_version : FED_LATEST_VERSION);
    if (s->client_caps && cJSON_GetArraySize(s->client_caps) > 0)
        cJSON_AddItemToObject(st, "caps", cJSON_Duplicate(s->client_caps, 1));
    if (fed_mcp_level_name(s->mcp_log_level))
        cJSON_AddStringToObject(st, "ll", fed_mcp_level_name(s->mcp_log_level));
    if (core_map_str_len(&s->subs) > 0 || s->restore_subs) {
        cJSON *subs = cJSON_AddArrayToObject(st, "subs");
        size_t it = 0;
        const char *uri;
        void *v;
        while (core_map_str_next(&s->subs, &it, &uri, &v))
            cJSON_AddItemToArray(subs, cJSON_CreateString(uri));
        cJSON *u;
        cJSON_ArrayForEach(u, s->restore_subs) cJSON_AddItemToArray(subs, cJSON_Duplicate(u, 0));
    }
    /* "ups": the upstream sessions the client's session uses, once there are remote upstreams
     * (Streamable HTTP) with session ids of their own; stdio servers have none. */
    cJSON_AddNumberToObject(st, "iat", (double)now);
    cJSON_AddNumberToObject(st, "exp", (double)(now + ttl));
    char *txt = cJSON_PrintUnformatted(st);
    cJSON_Delete(st);
    char ad[160];
    size_t adl = token_ad(s->client, ad, sizeof ad);
    struct core_buf out;
    core_buf_init(&out, 0);
    int rc = txt ? auth_seal_ad(ad, adl, txt, strlen(txt), &out) : CORE_EINVAL;
    core_free(txt);
    if (rc != 0) {
        core_log(CORE_LOG_ERROR, "sess", "%.8s: cannot seal the session token: %s", s->id,
                 core_strerror(rc));
        core_buf_dispose(&out);
        return s->token;
    }
    set_token(s, core_xstrdup(out.data), now, now + ttl);
    core_buf_dispose(&out);
    return s->token;
}

static bool same_client(const struct fed_session *s, const struct core_client_cfg *client)
{
    if (s->client == NULL || client == NULL)
        return s->client == NULL && client == NULL;
    return strcmp(s->client, client->name) == 0;
}

struct fed_session *fed_session_open(struct fed_gateway *gw, const struct core_client_cfg *client,
                                      const char *tok, const struct fed_session_ops *ops,
                                      void *(*make_ctx)(struct fed_session *s))
{
    uint64_t now = fed_unix_now();
    size_t tl = strlen(tok);
    struct fed_session *s = core_map_str_get(&gw->tokens, tok, tl);
    if (s)
        return same_client(s, client) && now < s->token_exp && s->ops == ops ? s : NULL;
    char ad[160];
    size_t adl = token_ad(client ? client->name : NULL, ad, sizeof ad);
    struct core_buf plain;
    core_buf_init(&plain, 0);
    if (auth_open_ad(ad, adl, tok, tl, &plain) != 0) {
        core_buf_dispose(&plain);
        return NULL;
    }
    cJSON *st = cJSON_ParseWithLength(plain.data, plain.len);
    core_buf_dispose(&plain);
    cJSON *sid = cJSON_GetObjectItemCaseSensitive(st, "sid");
    cJSON *exp = cJSON_GetObjectItemCaseSensitive(st, "exp");
    cJSON *iat = cJSON_GetObjectItemCaseSensitive(st, "iat");
    cJSON *pv = cJSON_GetObjectItemCaseSensitive(st, "pv");
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(st, "v");
    if (!cJSON_IsNumber(ver) || ver->valueint != 1 || !cJSON_IsString(sid) ||
        strlen(sid->valuestring) != 32 || !cJSON_IsNumber(exp) || !cJSON_IsNumber(iat) ||
        !cJSON_IsString(pv) || exp->valuedouble <= (double)now ||
        core_map_str_get(&gw->ended, sid->valuestring, 32) != NULL) {
        cJSON_Delete(st);
        return NULL;
    }
    s = core_map_str_get(&gw->sessions, sid->valuestring, 32);
    if (s) {
        /* An older token of a live session. */
        cJSON_Delete(st);
        return same_client(s, client) && s->ops == ops ? s : NULL;
    }
    char why[300];
    if (!make_room(gw, client)) {
        core_log(CORE_LOG_WARN, "sess", "%.8s: not restored: too many sessions (max_sessions)",
                 sid->valuestring);
        cJSON_Delete(st);
        return NULL;
    }
    s = session_alloc(gw, sid->valuestring, client, ops, NULL);
    if (!bind_new(s, why, sizeof why)) {
        core_log(CORE_LOG_WARN, "sess", "%.8s: not restored: %s", sid->valuestring, why);
        cJSON_Delete(st);
        return NULL;
    }
    s->ops_ctx = make_ctx(s);
    s->protocol_version = core_xstrdup(pv->valuestring);
    cJSON *caps = cJSON_DetachItemFromObjectCaseSensitive(st, "caps");
    s->client_caps = cJSON_IsObject(caps) ? caps : (cJSON_Delete(caps), cJSON_CreateObject());
    cJSON *ll = cJSON_GetObjectItemCaseSensitive(st, "ll");
    s->mcp_log_level = cJSON_IsString(ll) ? fed_mcp_level_index(ll->valuestring) : -1;
    cJSON *subs = cJSON_DetachItemFromObjectCaseSensitive(st, "subs");
    if (cJSON_IsArray(subs) && cJSON_GetArraySize(subs) > 0)
        s->restore_subs = subs;
    else
        cJSON_Delete(subs);
    s->initialized = true;
    set_token(s, core_xstrdup(tok), (uint64_t)iat->valuedouble, (uint64_t)exp->valuedouble);
    cJSON_Delete(st);
    core_log(CORE_LOG_INFO, "sess", "%.8s: restored from its token (client %s)", s->id,
             s->client ? s->client : "anonymous");
    fed_router_session_restored(s);
    return s;
}

static void session_end(struct fed_session *s, bool revoke)
{
    if (s->closing)
        return;
    s->closing = true;
    struct fed_gateway *gw = s->gw;
    core_map_str_del(&gw->sessions, s->id, strlen(s->id));
    if (revoke && s->token)
        fed_gateway_revoke(gw, s->id, s->token_exp);
    while (s->calls)
        fed_call_error(s->calls, -32603, "session ended");
    drop_token(s);
    fed_router_session_ending(s);
    size_t it = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&s->s2c, &it, &k, &v)) {
        fed_s2c_free(v);
    }
    core_map_u64_dispose(&s->s2c);
    core_map_str_dispose(&s->subs);
    for (size_t i = 0; i < gw->n_servers; i++)
        fed_session_release_instance(s, i);
    count_add(&gw->client_sessions, client_key(s), -1);
    if (s->ops && s->ops->ended)
        s->ops->ended(s->ops_ctx, s);
    core_log(CORE_LOG_INFO, "sess", "%.8s: %s", s->id, revoke ? "ended" : "evicted");
    core_free(s->inst);
    core_free(s->protocol_version);
    core_free(s->client);
    cJSON_Delete(s->client_caps);
    cJSON_Delete(s->client_info);
    cJSON_Delete(s->restore_subs);
    core_free(s);
}

void fed_session_end(struct fed_session *s)
{
    session_end(s, false);
}

void fed_session_revoke(struct fed_session *s)
{
    session_end(s, true);
}

/* ---- calls ------------------------------------------------------------------------------ */

struct fed_call *fed_call_new(struct fed_session *s, const char *frame,
                               const struct core_rpc_env *env, const struct fed_call_ops *ops,
                               void *ops_ctx)
{
    struct fed_call *c = core_xcalloc(1, sizeof *c);
    c->sess = s;
    c->id = core_xmemdup(frame + env->id.off, env->id.len);
    c->id_len = env->id.len;
    size_t ml = strnlen(env->method_str, sizeof c->method - 1);
    memcpy(c->method, env->method_str, ml);
    c->method[ml] = '\0';
    c->ops = ops;
    c->ops_ctx = ops_ctx;
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    s->n_calls++;
    s->last_seen = fed_now(s->gw);
    return c;
}

void fed_call_detach(struct fed_call *c)
{
    c->ops = NULL;
    c->ops_ctx = NULL;
}

void fed_call_free(struct fed_call *c)
{
    struct fed_session *s = c->sess;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->calls == c)
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_calls--;
    if (c->pend) {
        /* The upstream's reply, if it ever comes, is dropped. */
        c->pend->call = NULL;
    }
    if (c->fan)
        fed_fanout_orphan(c->fan);
    core_free(c->id);
    core_free(c->progress_token);
    core_free(c->queued);
    core_free(c->audit_server);
    core_free(c->audit_tool);
    core_free(c);
}

void fed_call_message(struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->ops && c->ops->message)
        c->ops->message(c->ops_ctx, c, bufs, n);
}

/* One line in the audit log for a finished tools/call. */
static void audit_call(struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    struct fed_gateway *gw = c->sess->gw;
    if (gw->audit == NULL)
        return;
    size_t out = 0;
    for (unsigned i = 0; i < n; i++)
        out += bufs[i].len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char sid[9];
    memcpy(sid, c->sess->id, 8);
    sid[8] = '\0';
    struct pol_audit_rec r = {
        .unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
        .client = c->sess->client,
        .session = sid,
        .server = c->audit_server,
        .tool = c->audit_tool,
        .duration_us = (uv_hrtime() - c->t0_ns) / 1000,
        .outcome = c->outcome ? c->outcome : "ok",
        .bytes_in = c->bytes_in,
        .bytes_out = out,
    };
    pol_audit_record(gw->audit, &r);
}

void fed_call_respond(struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->audit)
        audit_call(c, bufs, n);
    if (c->ops && c->ops->respond)
        c->ops->respond(c->ops_ctx, c, bufs, n);
    fed_call_free(c);
}

void fed_call_result(struct fed_call *c, const char *result_json)
{
    uv_buf_t parts[5] = {
        uv_buf_init("{\"jsonrpc\":\"2.0\",\"id\":", 22),
        uv_buf_init(c->id, (unsigned)c->id_len),
        uv_buf_init(",\"result\":", 10),
        uv_buf_init((char *)result_json, (unsigned)strlen(result_json)),
        uv_buf_init("}", 1),
    };
    fed_call_respond(c, parts, 5);
}

int fed_error_json(struct core_buf *out, const char *id, size_t id_len, int code, const char *msg)
{
    cJSON *m = cJSON_CreateString(msg);
    char *esc = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    int rc = core_buf_appendf(
        out, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"error\":{\"code\":%d,\"message\":%s}}",
        (int)id_len, id, code, esc);
    core_free(esc);
    return rc;
}

void fed_call_error(struct fed_call *c, int code, const char *msg)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    if (fed_error_json(&b, c->id, c->id_len, code, msg) == 0) {
        uv_buf_t u = uv_buf_init(b.data, (unsigned)b.len);
        fed_call_respond(c, &u, 1);
    } else {
        fed_call_free(c);
    }
    core_buf_dispose(&b);
}
