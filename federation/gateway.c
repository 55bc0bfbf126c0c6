/* The gateway object: servers, sessions, timers, and the orderly shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/oauth.h"
#include "auth/seal.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "policy/audit.h"
#include "policy/pins.h"
#include "policy/policy.h"
#include "transports/hclient.h"

#define TICK_MS 50
#define LIST_CHANGED_DELAY_MS 20
/* A session with no request, no stream and no traffic for this long is forgotten (its client
 * gets 404 and initialises again). */
#define SESSION_IDLE_MS (60 * 60 * 1000)

uint64_t fed_now(const struct fed_gateway *gw)
{
    return uv_now(gw->loop);
}

uint64_t fed_unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec;
}

struct fed_server *fed_server_new(struct fed_gateway *gw, const struct core_server_cfg *cfg,
                                   size_t index)
{
    struct fed_server *srv = core_xcalloc(1, sizeof *srv);
    srv->gw = gw;
    srv->cfg = core_server_cfg_dup(cfg);
    srv->index = index;
    srv->refs = 1; /* gw->servers' own reference, dropped when retired */
    core_map_str_init(&srv->by_client);
    core_map_str_init(&srv->pin_changed);
    return srv;
}

void fed_server_ref(struct fed_server *srv)
{
    srv->refs++;
}

void fed_server_unref(struct fed_server *srv)
{
    if (--srv->refs > 0)
        return;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&srv->pin_changed, &it, &k, &v)) {
        struct fed_pin_change *pc = v;
        core_free(pc->what);
        core_free(pc);
    }
    core_map_str_dispose(&srv->pin_changed);
    core_map_str_dispose(&srv->by_client);
    core_server_cfg_free(srv->cfg);
    core_free(srv);
}

static void load_revoked(struct fed_gateway *gw);

/* Loads the pins and revoked sessions and opens the audit log under the state dir (when there
 * is one). */
static void open_state(struct fed_gateway *gw)
{
    if (gw->state_dir == NULL)
        return;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/pins", gw->state_dir);
    gw->pins_path = core_xstrdup(path);
    snprintf(path, sizeof path, "%s/revoked", gw->state_dir);
    gw->revoked_path = core_xstrdup(path);
    load_revoked(gw);
    if (pol_pins_load(gw->pins_path, &gw->pins, err, sizeof err) != 0) {
        core_log(CORE_LOG_ERROR, "gw", "%s; tool pinning is off until it is fixed", err);
        gw->pins = NULL;
    }
    if (gw->cfg->audit) {
        snprintf(path, sizeof path, "%s/audit.jsonl", gw->state_dir);
        gw->audit = pol_audit_open(path, gw->cfg->audit_max, err, sizeof err);
        if (gw->audit == NULL)
            core_log(CORE_LOG_ERROR, "gw",
                     "audit log: %s; calls are not audited until it is "
                     "fixed and the daemon restarts",
                     err);
    }
}

struct fed_gateway *fed_gateway_new(uv_loop_t *loop, struct core_config *cfg,
                                    const struct fed_gateway_opts *opts)
{
    struct fed_gateway *gw = core_xcalloc(1, sizeof *gw);
    gw->loop = loop;
    gw->cfg = cfg;
    gw->self_exe = opts && opts->self_exe ? core_xstrdup(opts->self_exe) : NULL;
    gw->state_dir = opts && opts->state_dir ? core_xstrdup(opts->state_dir) : NULL;
    gw->bearer = opts && opts->bearer ? core_xstrdup(opts->bearer) : NULL;
    gw->auth_override = opts && opts->auth ? core_xstrdup(opts->auth) : NULL;
    gw->n_servers = cfg->n_servers;
    gw->servers = core_xcalloc(cfg->n_servers ? cfg->n_servers : 1, sizeof *gw->servers);
    for (size_t i = 0; i < cfg->n_servers; i++)
        gw->servers[i] = fed_server_new(gw, &cfg->servers[i], i);
    core_map_str_init(&gw->sessions);
    core_map_str_init(&gw->client_sessions);
    core_map_str_init(&gw->tokens);
    core_map_str_init(&gw->ended);
    core_map_str_init(&gw->buckets);
    gw->list_gen = 1;
    uv_timer_init(loop, &gw->tick);
    uv_timer_init(loop, &gw->notify_timer);
    gw->handles = 2;
    if (gw->state_dir) {
        char logs[4096];
        snprintf(logs, sizeof logs, "%s/logs", gw->state_dir);
        if (mkdir(logs, 0700) != 0 && errno != EEXIST)
            core_log(CORE_LOG_WARN, "gw", "cannot create %s: %s", logs, strerror(errno));
    }
    open_state(gw);
    return gw;
}

void fed_gateway_save_pins(struct fed_gateway *gw)
{
    if (gw->pins == NULL || !pol_pins_dirty(gw->pins))
        return;
    char err[512];
    if (pol_pins_save(gw->pins, gw->pins_path, err, sizeof err) != 0)
        core_log(CORE_LOG_ERROR, "gw", "cannot save the tool pins: %s", err);
}

void fed_gateway_revoke(struct fed_gateway *gw, const char *sid, uint64_t exp)
{
    core_map_str_put(&gw->ended, sid, strlen(sid), (void *)(uintptr_t)exp);
    if (gw->revoked_path == NULL)
        return;
    int fd = -1;
    char why[600];
    char line[64];
    int n = snprintf(line, sizeof line, "%.32s %" PRIu64 "\n", sid, exp);
    /* core_file_open: a symlink planted at the path is refused, not appended through. */
    if (core_file_open(gw->revoked_path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, why,
                       sizeof why) != 0)
        core_log(CORE_LOG_WARN, "sess", "%s; a revoked session could come back after a restart",
                 why);
    else if (write(fd, line, (size_t)n) != n)
        core_log(CORE_LOG_WARN, "sess", "%s: %s; a revoked session could come back after a "
                 "restart", gw->revoked_path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* Reads <state>/revoked: the ids still unexpired go into gw->ended, and the file is rewritten
 * without the others. */
static void load_revoked(struct fed_gateway *gw)
{
    int fd;
    char why[600];
    int rc = core_file_open(gw->revoked_path, O_RDONLY, 0, &fd, why, sizeof why);
    if (rc != 0) {
        if (rc != -ENOENT)
            core_log(CORE_LOG_WARN, "sess", "%s; sessions revoked before this start can come back",
                     why);
        return;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return;
    }
    uint64_t now = fed_unix_now();
    char sid[40];
    uint64_t exp;
    size_t dropped = 0;
    while (fscanf(f, "%39s %" SCNu64, sid, &exp) == 2) {
        if (strlen(sid) == 32 && exp > now)
            core_map_str_put(&gw->ended, sid, 32, (void *)(uintptr_t)exp);
        else
            dropped++;
    }
    fclose(f);
    if (dropped == 0)
        return;
    /* Rewritten through a fresh temporary file (O_EXCL) renamed over the old one, so no
     * planted name is followed. */
    struct core_buf b;
    core_buf_init(&b, 0);
    size_t it = 0;
    const char *k;
    void *v;
    rc = 0;
    while (rc == 0 && core_map_str_next(&gw->ended, &it, &k, &v))
        rc = core_buf_appendf(&b, "%s %" PRIu64 "\n", k, (uint64_t)(uintptr_t)v);
    if (rc == 0)
        rc = core_file_write_atomic(gw->revoked_path, b.data ? b.data : "", b.len, 0600);
    if (rc != 0)
        core_log(CORE_LOG_DEBUG, "sess", "%s: not compacted: %s", gw->revoked_path,
                 core_strerror(rc));
    core_buf_dispose(&b);
}

/* Forgets ended-session ids whose tokens have expired anyway. */
static void purge_ended(struct fed_gateway *gw)
{
    uint64_t now = fed_unix_now();
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->ended, &it, &k, &v))
        if ((uint64_t)(uintptr_t)v < now) {
            core_map_str_del(&gw->ended, k, strlen(k));
            it = 0;
        }
}

static void on_tick(uv_timer_t *t)
{
    struct fed_gateway *gw = container_of(t, struct fed_gateway, tick);
    uint64_t now = fed_now(gw);
    /* Failing a request answers a call, which never frees an instance on the spot. */
    for (struct fed_upstream *up = gw->ups; up; up = up->next)
        fed_upstream_sweep(up, now);
    size_t it = 0;
    const char *k;
    void *v;
    fed_router_check_deferred(gw);
    fed_gateway_save_pins(gw);
    pol_audit_flush(gw->audit);
    if (now - gw->last_idle_sweep >= 1000) {
        gw->last_idle_sweep = now;
        uint64_t unix_now = fed_unix_now();
        it = 0;
        /* Ending a session removes only its own entry, which the iteration allows. */
        while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
            struct fed_session *s = v;
            if (s->calls == NULL && s->streams == 0 && now - s->last_seen >= SESSION_IDLE_MS) {
                core_log(CORE_LOG_INFO, "sess", "%.8s: idle for an hour; %s", s->id,
                         s->token ? "evicted (its token can bring it back)" : "forgotten");
                fed_session_end(s);
            } else if (s->token && s->calls == NULL && unix_now >= s->token_exp) {
                /* Every token it ever had has expired: nobody can use it again, so its
                 * children stop now rather than at the idle sweep. */
                core_log(CORE_LOG_INFO, "sess", "%.8s: its tokens expired; ended", s->id);
                fed_session_end(s);
            }
        }
        purge_ended(gw);
    }
}

void fed_gateway_start(struct fed_gateway *gw)
{
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_server *srv = gw->servers[i];
        if (srv->cfg->isolation == CORE_ISOLATION_SHARED) {
            srv->shared = fed_upstream_new(srv, NULL);
            fed_upstream_start(srv->shared);
        }
    }
    uv_timer_start(&gw->tick, on_tick, TICK_MS, TICK_MS);
}

static void on_notify_timer(uv_timer_t *t)
{
    struct fed_gateway *gw = container_of(t, struct fed_gateway, notify_timer);
    gw->notify_armed = false;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->sessions, &it, &k, &v))
        fed_router_flush_list_changed(v);
}

void fed_gateway_flush_soon(struct fed_gateway *gw)
{
    gw->list_gen++;
    if (!gw->notify_armed && !gw->shutting_down) {
        gw->notify_armed = true;
        uv_timer_start(&gw->notify_timer, on_notify_timer, LIST_CHANGED_DELAY_MS, 0);
    }
}

void fed_gateway_lists_changed(struct fed_gateway *gw, struct fed_upstream *up, unsigned mask)
{
    if (mask == 0 || gw->shutting_down || (up && up->srv->retired))
        return;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        /* A server the session's client may not use changes nothing it can see. */
        if (up == NULL || (s->inst[up->srv->index] == up &&
                           pol_client_has_server(s->ccfg, up->srv->cfg->name)))
            s->list_changed |= mask;
    }
    fed_gateway_flush_soon(gw);
}

/* ---- backlog ----------------------------------------------------------------------------- */

bool fed_backlog_room(struct fed_gateway *gw, size_t conn, size_t conn_max, size_t http_total,
                       struct fed_drops *d, const char *who)
{
    bool total_ok = gw->backlog + http_total <= FED_NOTIFY_TOTAL_MAX;
    if (conn <= conn_max && total_ok)
        return true;
    if (d->run++ == 0)
        core_log(CORE_LOG_WARN, "gw",
                 "%s: the client is not reading (%zu bytes waiting%s); notifications are dropped "
                 "until it catches up",
                 who, conn, total_ok ? "" : ", and the daemon's total is at its bound");
    d->total++;
    gw->dropped++;
    return false;
}

void fed_backlog_drained(struct fed_drops *d, const char *who)
{
    if (d->run == 0)
        return;
    core_log(CORE_LOG_INFO, "gw", "%s: the client caught up; %" PRIu64 " notifications were dropped",
             who, d->run);
    d->run = 0;
}

/* ---- shutdown ---------------------------------------------------------------------------- */

struct tp_hclient *fed_gateway_hclient(struct fed_gateway *gw)
{
    if (gw->hclient == NULL && !gw->shutting_down) {
        int rc = tp_hclient_new(gw->loop, &gw->hclient);
        if (rc) {
            core_log(CORE_LOG_ERROR, "gw", "the HTTP client for remote servers: %s",
                     core_strerror(rc));
            gw->hclient = NULL;
        }
    }
    return gw->hclient;
}

struct auth_oauth *fed_gateway_oauth(struct fed_gateway *gw, char *err, size_t errlen)
{
    if (gw->oauth)
        return gw->oauth;
    if (gw->shutting_down) {
        core_set_err(err, errlen, "the gateway is shutting down");
        return NULL;
    }
    if (gw->state_dir == NULL) {
        core_set_err(err, errlen, "OAuth needs a state directory for its token store");
        return NULL;
    }
    struct tp_hclient *hc = fed_gateway_hclient(gw);
    if (hc == NULL) {
        core_set_err(err, errlen, "the HTTP client could not be created");
        return NULL;
    }
    if (auth_oauth_new(gw->loop, hc, gw->state_dir, &gw->oauth, err, errlen) != 0) {
        core_log(CORE_LOG_ERROR, "gw", "the OAuth client: %s", err);
        gw->oauth = NULL;
    }
    return gw->oauth;
}

static void maybe_done(struct fed_gateway *gw);

static void on_oauth_closed(void *ctx)
{
    struct fed_gateway *gw = ctx;
    gw->handles--;
    maybe_done(gw);
}

static void on_hclient_closed(void *ctx)
{
    struct fed_gateway *gw = ctx;
    gw->handles--;
    maybe_done(gw);
}

static void maybe_done(struct fed_gateway *gw)
{
    if (!gw->shutting_down || gw->live_upstreams > 0)
        return;
    if (gw->oauth) {
        /* First the OAuth client, whose requests ride on the HTTP client. */
        struct auth_oauth *o = gw->oauth;
        gw->oauth = NULL;
        gw->handles++;
        auth_oauth_close(o, on_oauth_closed, gw);
        return;
    }
    if (gw->hclient) {
        /* Every remote session has ended; what is left (their DELETEs) is aborted. */
        struct tp_hclient *hc = gw->hclient;
        gw->hclient = NULL;
        gw->handles++;
        tp_hclient_close(hc, on_hclient_closed, gw);
        return;
    }
    if (gw->handles > 0)
        return;
    for (size_t i = 0; i < gw->n_servers; i++)
        fed_server_unref(gw->servers[i]);
    core_free(gw->servers);
    core_map_str_dispose(&gw->sessions);
    core_map_str_dispose(&gw->client_sessions);
    core_map_str_dispose(&gw->tokens);
    core_map_str_dispose(&gw->ended);
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->buckets, &it, &k, &v))
        core_free(v);
    core_map_str_dispose(&gw->buckets);
    fed_gateway_save_pins(gw);
    pol_pins_free(gw->pins);
    core_free(gw->pins_path);
    core_free(gw->revoked_path);
    pol_audit_close(gw->audit);
    core_free(gw->auth_override);
    core_config_free(gw->cfg);
    core_free(gw->self_exe);
    core_free(gw->state_dir);
    if (gw->bearer)
        sodium_memzero(gw->bearer, strlen(gw->bearer));
    core_free(gw->bearer);
    void (*done)(void *) = gw->done;
    void *ctx = gw->done_ctx;
    core_free(gw);
    if (done)
        done(ctx);
}

void fed_gateway_upstream_freed(struct fed_gateway *gw)
{
    gw->live_upstreams--;
    maybe_done(gw);
}

static void on_gw_timer_close(uv_handle_t *h)
{
    struct fed_gateway *gw = h->data;
    gw->handles--;
    maybe_done(gw);
}

void fed_gateway_shutdown(struct fed_gateway *gw, void (*done)(void *ctx), void *ctx)
{
    if (gw->shutting_down)
        return;
    core_log(CORE_LOG_INFO, "gw", "shutting down: %zu session(s), %d upstream(s)",
             core_map_str_len(&gw->sessions), gw->live_upstreams);
    gw->shutting_down = true;
    gw->done = done;
    gw->done_ctx = ctx;
    /* Bridges and sessions first: their calls get an error now, their isolated children start
     * stopping. */
    fed_bridge_shutdown(gw);
    const char *k;
    void *v;
    size_t it = 0;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        fed_session_end(v);
        it = 0;
    }
    for (size_t i = 0; i < gw->n_servers; i++) {
        if (gw->servers[i]->shared) {
            struct fed_upstream *up = gw->servers[i]->shared;
            gw->servers[i]->shared = NULL;
            fed_upstream_close(up, "the gateway is shutting down");
        }
    }
    gw->tick.data = gw;
    gw->notify_timer.data = gw;
    uv_close((uv_handle_t *)&gw->tick, on_gw_timer_close);
    uv_close((uv_handle_t *)&gw->notify_timer, on_gw_timer_close);
}
