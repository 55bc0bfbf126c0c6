/* Reload and approve: the daemon's control endpoints on the Unix socket (the socket's 0600
 * mode and the peer-uid check keep them to the user), and the work behind them and SIGHUP. */
#include "federation/control.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/identity.h"
#include "auth/oauth.h"
#include "auth/seal.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "federation/mcp_http.h"
#include "policy/audit.h"
#include "policy/pins.h"
#include "transports/http.h"

/* ---- reload ------------------------------------------------------------------------------- */

static struct fed_server *find_live(struct fed_gateway *gw, const char *name)
{
    for (size_t i = 0; i < gw->n_servers; i++)
        if (strcmp(gw->servers[i]->cfg->name, name) == 0)
            return gw->servers[i];
    return NULL;
}

/* Moves a session onto the new server table (already gw->servers): kept servers keep their
 * instance, instances of removed or changed servers are released, and the session gets the
 * instances its (new) policy calls for; subscriptions follow a server that restarted. */
static void remap_session(struct fed_session *s, struct fed_server **old, size_t n_old,
                          struct fed_server **neu, size_t n_new)
{
    struct fed_upstream **inst = core_xcalloc(n_new ? n_new : 1, sizeof *inst);
    for (size_t j = 0; j < n_new; j++)
        for (size_t k = 0; k < n_old; k++)
            if (old[k] == neu[j]) {
                inst[j] = s->inst[k];
                s->inst[k] = NULL;
            }
    /* Subscriptions held on instances that go away move to the server of the same name. */
    size_t n_subs = core_map_str_len(&s->subs), m = 0;
    char **uris = core_xcalloc(n_subs ? n_subs : 1, sizeof *uris);
    char **names = core_xcalloc(n_subs ? n_subs : 1, sizeof *names);
    size_t it = 0;
    const char *uri;
    void *v;
    while (core_map_str_next(&s->subs, &it, &uri, &v)) {
        struct fed_upstream *up = v;
        if (up->srv->retired) {
            uris[m] = core_xstrdup(uri);
            names[m++] = core_xstrdup(up->srv->cfg->name);
        }
    }
    for (size_t i = 0; i < m; i++)
        core_map_str_del(&s->subs, uris[i], strlen(uris[i]));
    for (size_t k = 0; k < n_old; k++)
        fed_session_release_instance(s, k);
    core_free(s->inst);
    s->inst = inst;
    (void)fed_session_sync_instances(s, NULL); /* a server at its cap is logged there */
    for (size_t i = 0; i < m; i++) {
        size_t ul = strlen(uris[i]);
        struct fed_upstream *to = NULL;
        for (size_t j = 0; j < n_new; j++)
            if (strcmp(neu[j]->cfg->name, names[i]) == 0)
                to = inst[j];
        if (to) {
            uintptr_t count = (uintptr_t)core_map_str_get(&to->sub_count, uris[i], ul);
            core_map_str_put(&s->subs, uris[i], ul, to);
            /* A starting instance subscribes when it is ready. */
            core_map_str_put(&to->sub_count, uris[i], ul, (void *)(count + 1));
        } else {
            core_log(CORE_LOG_INFO, "sess", "%.8s: subscription %.200s dropped with its server",
                     s->id, uris[i]);
            s->token_stale = true;
        }
        core_free(uris[i]);
        core_free(names[i]);
    }
    core_free(uris);
    core_free(names);
}

int fed_gateway_reload(struct fed_gateway *gw, char *msg, size_t cap)
{
    if (gw->shutting_down) {
        snprintf(msg, cap, "the daemon is shutting down");
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", gw->cfg->path ? gw->cfg->path : "");
    struct core_config *ncfg = NULL;
    char err[1024];
    if (path[0] == '\0') {
        snprintf(msg, cap, "running the built-in config: there is no file to re-read");
        core_log(CORE_LOG_WARN, "reload", "%s", msg);
        return -1;
    }
    int rc = core_config_load(path, &ncfg, err, sizeof err);
    if (rc != 0) {
        snprintf(msg, cap, "%s", err);
        core_log(CORE_LOG_ERROR, "reload", "refused, the running config stays: %s", err);
        return -1;
    }
    if (gw->state_dir &&
        auth_keys_load(gw->state_dir, ncfg->session_ttl_ms, err, sizeof err) != 0) {
        snprintf(msg, cap, "%s", err);
        core_log(CORE_LOG_ERROR, "reload", "refused, the running config stays: %s", err);
        core_config_free(ncfg);
        return -1;
    }
    /* The new server table: unchanged servers are kept as they are. */
    size_t n_new = ncfg->n_servers, n_old = gw->n_servers;
    struct fed_server **old = gw->servers;
    struct fed_server **neu = core_xcalloc(n_new ? n_new : 1, sizeof *neu);
    int added = 0, removed = 0, changed = 0;
    for (size_t j = 0; j < n_new; j++) {
        const struct core_server_cfg *sc = &ncfg->servers[j];
        struct fed_server *was = find_live(gw, sc->name);
        if (was && core_server_cfg_equal(was->cfg, sc)) {
            neu[j] = was;
            was->index = j;
            continue;
        }
        neu[j] = fed_server_new(gw, sc, j);
        if (was)
            changed++;
        else
            added++;
    }
    for (size_t k = 0; k < n_old; k++) {
        bool kept = false;
        for (size_t j = 0; j < n_new; j++)
            kept |= neu[j] == old[k];
        if (kept)
            continue;
        old[k]->retired = true;
        bool still = false;
        for (size_t j = 0; j < n_new; j++)
            still |= strcmp(neu[j]->cfg->name, old[k]->cfg->name) == 0;
        removed += !still;
        core_log(CORE_LOG_INFO, "reload", "%s: %s", old[k]->cfg->name,
                 still ? "changed; restarting" : "removed; stopping");
    }
    /* The new client policies first, and sessions of clients that are gone end while the
     * server table they were bound with is still in place. */
    struct core_config *ocfg = gw->cfg;
    gw->cfg = ncfg;
    int policy_changed = 0;
    size_t it = 0;
    const char *k;
    void *v;
    for (;;) {
        struct fed_session *gone = NULL;
        it = 0;
        while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
            struct fed_session *s = v;
            if (s->client == NULL)
                continue;
            const struct core_client_cfg *nc = auth_client_named(gw->cfg, s->client);
            if (nc == NULL) {
                gone = s;
                break;
            }
            if (s->ccfg != nc) {
                if (s->ccfg == NULL || !core_client_cfg_equal(s->ccfg, nc)) {
                    s->list_changed |= (1u << FED_LIST_COUNT) - 1;
                    policy_changed++;
                }
                s->ccfg = nc;
            }
        }
        if (gone == NULL)
            break;
        core_log(CORE_LOG_INFO, "reload", "%.8s: client %s is no longer configured; session ended",
                 gone->id, gone->client);
        fed_session_revoke(gone);
    }
    for (size_t j = 0; j < n_new; j++)
        if (neu[j]->shared == NULL && neu[j]->cfg->isolation == CORE_ISOLATION_SHARED) {
            neu[j]->shared = fed_upstream_new(neu[j], NULL);
            fed_upstream_start(neu[j]->shared);
        }
    /* Sessions: the new server table. */
    gw->servers = neu;
    gw->n_servers = n_new;
    it = 0;
    while (core_map_str_next(&gw->sessions, &it, &k, &v))
        remap_session(v, old, n_old, neu, n_new);
    /* Rate buckets of clients that are gone. */
    it = 0;
    while (core_map_str_next(&gw->buckets, &it, &k, &v))
        if (auth_client_named(gw->cfg, k) == NULL) {
            core_free(v);
            core_map_str_del(&gw->buckets, k, strlen(k));
            it = 0;
        }
    /* Retired servers: their shared instance stops; they are freed when nothing uses them. */
    for (size_t k2 = 0; k2 < n_old; k2++) {
        struct fed_server *srv = old[k2];
        if (!srv->retired)
            continue;
        if (srv->shared) {
            struct fed_upstream *up = srv->shared;
            srv->shared = NULL;
            fed_upstream_close(up, "its server was removed or changed by a reload");
        }
        fed_server_unref(srv);
    }
    core_free(old);
    if (added || removed || changed)
        fed_gateway_lists_changed(gw, NULL, (1u << FED_LIST_COUNT) - 1);
    else if (policy_changed)
        fed_gateway_flush_soon(gw); /* those sessions are marked already */
    /* Settings that apply at once. */
    core_log_set_level(ncfg->log_level);
    if (ocfg->audit != ncfg->audit || ocfg->audit_max != ncfg->audit_max) {
        pol_audit_close(gw->audit);
        gw->audit = NULL;
        if (ncfg->audit && gw->state_dir) {
            char p[4096];
            snprintf(p, sizeof p, "%s/audit.jsonl", gw->state_dir);
            gw->audit = pol_audit_open(p, ncfg->audit_max, err, sizeof err);
            if (gw->audit == NULL)
                core_log(CORE_LOG_ERROR, "reload", "audit log: %s", err);
        }
    }
    bool listen_changed = strcmp(ocfg->listen, ncfg->listen) != 0 ||
                          (ocfg->socket == NULL) != (ncfg->socket == NULL) ||
                          (ocfg->socket && strcmp(ocfg->socket, ncfg->socket) != 0);
    core_config_free(ocfg);
    snprintf(msg, cap,
             "reloaded %s: %d server(s) added, %d removed, %d restarted; %d session(s) "
             "with a changed policy%s",
             path, added, removed, changed, policy_changed,
             listen_changed ? "; listen/socket changes need a restart" : "");
    core_log(CORE_LOG_INFO, "reload", "%s", msg);
    return 0;
}

/* ---- approve ------------------------------------------------------------------------------ */

int fed_gateway_approve(struct fed_gateway *gw, const char *server, const char *tool, int *n,
                        char *msg, size_t cap)
{
    *n = 0;
    if (gw->pins == NULL) {
        snprintf(msg, cap, "tool pinning is off (no state directory or an unreadable pins file)");
        return -1;
    }
    char err[512];
    if (pol_pins_approve(gw->pins, server, tool, n, err, sizeof err) != 0) {
        snprintf(msg, cap, "%s", err);
        return -1;
    }
    fed_gateway_save_pins(gw);
    struct fed_server *srv = find_live(gw, server);
    if (srv) {
        /* Lift the quarantine of what was approved; the next list confirms it. */
        size_t it = 0;
        const char *k;
        void *v;
        while (core_map_str_next(&srv->pin_changed, &it, &k, &v)) {
            if (tool && strcmp(k, tool) != 0)
                continue;
            struct fed_pin_change *pc = v;
            core_map_str_del(&srv->pin_changed, k, strlen(k));
            core_free(pc->what);
            core_free(pc);
            it = 0;
        }
    }
    fed_gateway_lists_changed(gw, NULL, 1u << FED_LIST_TOOLS);
    snprintf(msg, cap, "approved %d tool definition(s) of %s", *n, server);
    core_log(CORE_LOG_INFO, "pins", "%s%s%s", msg, tool ? ": " : "", tool ? tool : "");
    return 0;
}

/* ---- credentials ---------------------------------------------------------------------------- */

int fed_gateway_credentials_changed(struct fed_gateway *gw, const char *server, char *msg,
                                    size_t cap)
{
    const struct fed_server *srv = NULL;
    for (size_t i = 0; i < gw->n_servers && srv == NULL; i++) {
        if (strcmp(gw->servers[i]->cfg->name, server) == 0)
            srv = gw->servers[i];
    }
    if (srv == NULL) {
        snprintf(msg, cap, "no [server.%.100s] in the running config", server);
        return -1;
    }
    if (gw->oauth)
        auth_oauth_reload(gw->oauth);
    int n = 0;
    for (struct fed_upstream *up = gw->ups; up; up = up->next) {
        if (up->srv == srv && !up->closing) {
            fed_upstream_credentials_changed(up);
            n++;
        }
    }
    snprintf(msg, cap, "noted new credentials for %s (%d instance(s) reconnecting)", server, n);
    core_log(CORE_LOG_INFO, "oauth", "%s", msg);
    return 0;
}

/* ---- HTTP endpoints ------------------------------------------------------------------------- */

static void reply(struct tp_http_req *req, int status, cJSON *body)
{
    char *txt = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    (void)tp_http_respond_simple(req, status, "application/json", txt ? txt : "{}");
    core_free(txt);
}

static void reply_result(struct tp_http_req *req, int rc, int err_status, const char *msg,
                         const char *num_key, int num)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", rc == 0);
    cJSON_AddStringToObject(o, rc == 0 ? "message" : "error", msg);
    if (rc == 0 && num_key)
        cJSON_AddNumberToObject(o, num_key, num);
    reply(req, rc == 0 ? 200 : err_status, o);
}

/* What GET /agentgate/status tells: sessions, instances, and the memory the daemon holds. */
static cJSON *status_json(struct fed_gateway *gw, struct tp_http_req *req)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", AG_VERSION);
    cJSON_AddNumberToObject(o, "sessions", (double)core_map_str_len(&gw->sessions));
    int instances = 0;
    for (struct fed_upstream *up = gw->ups; up; up = up->next)
        instances++;
    cJSON_AddNumberToObject(o, "instances", instances);
    cJSON *servers = cJSON_AddArrayToObject(o, "servers");
    for (size_t i = 0; i < gw->n_servers; i++) {
        const struct fed_server *srv = gw->servers[i];
        cJSON *sv = cJSON_CreateObject();
        cJSON_AddStringToObject(sv, "name", srv->cfg->name);
        const struct fed_upstream *up = srv->shared;
        if (up)
            cJSON_AddStringToObject(sv, "state", fed_up_state_name(up->state));
        if (srv->cfg->url) {
            static const char *const kinds[] = {"auto", "streamable-http", "sse"};
            cJSON_AddStringToObject(sv, "url", srv->cfg->url);
            const char *in_use = up ? fed_upstream_transport(up) : NULL;
            cJSON_AddStringToObject(sv, "transport", in_use ? in_use : kinds[srv->cfg->transport]);
        }
        if (up == NULL) {
            /* Per-client or per-session instances: the reason one of them is down. */
            for (const struct fed_upstream *p = gw->ups; p; p = p->next) {
                if (p->srv == srv && p->last_error && p->state != FED_UP_READY && !p->closing) {
                    up = p;
                    break;
                }
            }
        }
        if (up && up->last_error && up->state != FED_UP_READY)
            cJSON_AddStringToObject(sv, "last_error", up->last_error);
        cJSON_AddNumberToObject(sv, "private_instances", srv->n_private);
        cJSON_AddItemToArray(servers, sv);
    }
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    cJSON_AddNumberToObject(mem, "live_bytes", (double)core_alloc_live_bytes());
    cJSON_AddNumberToObject(mem, "held_for_clients",
                            (double)(gw->backlog + tp_http_req_server_queued(req)));
    cJSON_AddNumberToObject(mem, "notifications_dropped", (double)gw->dropped);
    return o;
}

void fed_control_request(struct fed_gateway *gw, struct tp_http_req *req)
{
    uid_t uid;
    if (!tp_http_req_peer_uid(req, &uid) || uid != geteuid()) {
        fed_http_status(req, 403, "Forbidden: the socket peer runs as another user\n");
        return;
    }
    const char *path = tp_http_req_path(req);
    /* GET, or POST (what the blocking control client of `agentgate status` sends). */
    if (strcmp(path, "/agentgate/status") == 0 && (strcmp(tp_http_req_method(req), "GET") == 0 ||
                                                   strcmp(tp_http_req_method(req), "POST") == 0)) {
        reply(req, 200, status_json(gw, req));
        return;
    }
    if (strcmp(tp_http_req_method(req), "POST") != 0) {
        struct tp_http_header h[] = {{"Allow", "POST"}};
        uv_buf_t u = uv_buf_init("Method not allowed\n", 19);
        (void)tp_http_respond(req, 405, h, 1, &u, 1);
        return;
    }
    char msg[1200];
    if (strcmp(path, "/agentgate/reload") == 0) {
        int rc = fed_gateway_reload(gw, msg, sizeof msg);
        reply_result(req, rc, 400, msg, NULL, 0);
        return;
    }
    if (strcmp(path, "/agentgate/approve") == 0) {
        size_t len;
        const char *body = tp_http_req_body(req, &len);
        cJSON *j = cJSON_ParseWithLength(body, len);
        cJSON *server = cJSON_GetObjectItemCaseSensitive(j, "server");
        cJSON *tool = cJSON_GetObjectItemCaseSensitive(j, "tool");
        if (!cJSON_IsString(server) || (tool && !cJSON_IsString(tool) && !cJSON_IsNull(tool))) {
            cJSON_Delete(j);
            reply_result(req, -1, 400, "expected {\"server\":NAME,\"tool\":NAME}", NULL, 0);
            return;
        }
        int n = 0;
        int rc = fed_gateway_approve(gw, server->valuestring,
                                     cJSON_IsString(tool) ? tool->valuestring : NULL, &n, msg,
                                     sizeof msg);
        cJSON_Delete(j);
        reply_result(req, rc, 404, msg, "approved", n);
        return;
    }
    if (strcmp(path, "/agentgate/credentials") == 0) {
        size_t len;
        const char *body = tp_http_req_body(req, &len);
        cJSON *j = cJSON_ParseWithLength(body, len);
        cJSON *server = cJSON_GetObjectItemCaseSensitive(j, "server");
        if (!cJSON_IsString(server)) {
            cJSON_Delete(j);
            reply_result(req, -1, 400, "expected {\"server\":NAME}", NULL, 0);
            return;
        }
        int rc = fed_gateway_credentials_changed(gw, server->valuestring, msg, sizeof msg);
        cJSON_Delete(j);
        reply_result(req, rc, 404, msg, NULL, 0);
        return;
    }
    fed_http_status(req, 404,
                     "Not found: control endpoints are /agentgate/status, /agentgate/reload, "
                     "/agentgate/approve and /agentgate/credentials\n");
}
