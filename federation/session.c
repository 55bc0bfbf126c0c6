/* Downstream sessions and the calls (client requests) in flight within them. */
#include <stdio.h>
#include <string.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"

struct fed_session *fed__session_new(struct fed_gateway *gw, const struct fed_session_ops *ops,
                                     void *ops_ctx)
{
    struct fed_session *s = core_xcalloc(1, sizeof *s);
    s->gw = gw;
    auth_random_hex(s->id, 16);
    s->log_level = -1;
    s->mcp_log_level = -1;
    s->ops = ops;
    s->ops_ctx = ops_ctx;
    s->next_s2c = 1;
    s->last_seen = fed__now(gw);
    core_map_str_init(&s->subs);
    core_map_u64_init(&s->s2c);
    s->inst = core_xcalloc(gw->n_servers ? gw->n_servers : 1, sizeof *s->inst);
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_server *srv = &gw->servers[i];
        if (srv->cfg->isolation == CORE_ISOLATION_SESSION) {
            s->inst[i] = fed__upstream_new(srv, s);
            fed__upstream_start(s->inst[i]);
        } else {
            s->inst[i] = srv->shared;
        }
    }
    core_map_str_put(&gw->sessions, s->id, strlen(s->id), s);
    core_log(CORE_LOG_INFO, "sess", "%.8s: new session", s->id);
    return s;
}

void fed__s2c_free(struct fed_s2c *r)
{
    core_free(r->up_id);
    core_free(r);
}

struct fed_session *fed__session_find(struct fed_gateway *gw, const char *id)
{
    return core_map_str_get(&gw->sessions, id, strlen(id));
}

bool fed__session_has_cap(const struct fed_session *s, const char *cap)
{
    return s->client_caps != NULL && cJSON_GetObjectItemCaseSensitive(s->client_caps, cap);
}

void fed__session_notify(struct fed_session *s, const uv_buf_t *bufs, unsigned n)
{
    if (s->ops && s->ops->notify && !s->closing)
        s->ops->notify(s->ops_ctx, s, bufs, n);
}

void fed__session_end(struct fed_session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    struct fed_gateway *gw = s->gw;
    core_map_str_del(&gw->sessions, s->id, strlen(s->id));
    while (s->calls)
        fed__call_error(s->calls, -32603, "session ended");
    fed__router_session_ending(s);
    size_t it = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&s->s2c, &it, &k, &v)) {
        fed__s2c_free(v);
    }
    core_map_u64_dispose(&s->s2c);
    core_map_str_dispose(&s->subs);
    for (size_t i = 0; i < gw->n_servers; i++)
        if (s->inst[i] && s->inst[i]->owner == s) {
            s->inst[i]->owner = NULL;
            fed__upstream_close(s->inst[i], "session ended");
        }
    if (s->ops && s->ops->ended)
        s->ops->ended(s->ops_ctx, s);
    core_log(CORE_LOG_INFO, "sess", "%.8s: ended", s->id);
    core_free(s->inst);
    core_free(s->protocol_version);
    cJSON_Delete(s->client_caps);
    cJSON_Delete(s->client_info);
    core_free(s);
}

/* ---- calls ------------------------------------------------------------------------------ */

struct fed_call *fed__call_new(struct fed_session *s, const char *frame,
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
    s->last_seen = fed__now(s->gw);
    return c;
}

void fed_call_detach(struct fed_call *c)
{
    c->ops = NULL;
    c->ops_ctx = NULL;
}

void fed__call_free(struct fed_call *c)
{
    struct fed_session *s = c->sess;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->calls == c)
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->pend) {
        /* The upstream's reply, if it ever comes, is dropped. */
        c->pend->call = NULL;
    }
    if (c->fan)
        fed__fanout_orphan(c->fan);
    core_free(c->id);
    core_free(c->progress_token);
    core_free(c->queued);
    core_free(c);
}

void fed__call_message(struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->ops && c->ops->message)
        c->ops->message(c->ops_ctx, c, bufs, n);
}

void fed__call_respond(struct fed_call *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->ops && c->ops->respond)
        c->ops->respond(c->ops_ctx, c, bufs, n);
    fed__call_free(c);
}

void fed__call_result(struct fed_call *c, const char *result_json)
{
    uv_buf_t parts[5] = {
        uv_buf_init("{\"jsonrpc\":\"2.0\",\"id\":", 22),
        uv_buf_init(c->id, (unsigned)c->id_len),
        uv_buf_init(",\"result\":", 10),
        uv_buf_init((char *)result_json, (unsigned)strlen(result_json)),
        uv_buf_init("}", 1),
    };
    fed__call_respond(c, parts, 5);
}

int fed__error_json(struct core_buf *out, const char *id, size_t id_len, int code, const char *msg)
{
    cJSON *m = cJSON_CreateString(msg);
    char *esc = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    int rc = core_buf_appendf(out, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"error\":{\"code\":%d,\"message\":%s}}",
                              (int)id_len, id, code, esc);
    core_free(esc);
    return rc;
}

void fed__call_error(struct fed_call *c, int code, const char *msg)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    if (fed__error_json(&b, c->id, c->id_len, code, msg) == 0) {
        uv_buf_t u = uv_buf_init(b.data, (unsigned)b.len);
        fed__call_respond(c, &u, 1);
    } else {
        fed__call_free(c);
    }
    core_buf_dispose(&b);
}
