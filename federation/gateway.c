/* The gateway object: servers, sessions, timers, and the orderly shutdown. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"
#include "federation/internal.h"

#define TICK_MS 50
#define LIST_CHANGED_DELAY_MS 20
/* A session with no request, no stream and no traffic for this long is forgotten (its client
 * gets 404 and initialises again). */
#define SESSION_IDLE_MS (60 * 60 * 1000)

uint64_t fed__now(const struct fed_gateway *gw)
{
    return uv_now(gw->loop);
}

struct fed_gateway *fed_gateway_new(uv_loop_t *loop, const struct core_config *cfg,
                                    const struct fed_gateway_opts *opts)
{
    struct fed_gateway *gw = core_xcalloc(1, sizeof *gw);
    gw->loop = loop;
    gw->cfg = cfg;
    gw->self_exe = opts && opts->self_exe ? core_xstrdup(opts->self_exe) : NULL;
    gw->state_dir = opts && opts->state_dir ? core_xstrdup(opts->state_dir) : NULL;
    gw->bearer = opts && opts->bearer ? core_xstrdup(opts->bearer) : NULL;
    gw->n_servers = cfg->n_servers;
    gw->servers = core_xcalloc(cfg->n_servers ? cfg->n_servers : 1, sizeof *gw->servers);
    for (size_t i = 0; i < cfg->n_servers; i++) {
        struct fed_server *srv = &gw->servers[i];
        srv->gw = gw;
        srv->cfg = &cfg->servers[i];
        srv->index = i;
        core_map_str_init(&srv->renamed[0]);
        core_map_str_init(&srv->renamed[1]);
    }
    core_map_str_init(&gw->sessions);
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
    return gw;
}

static void on_tick(uv_timer_t *t)
{
    struct fed_gateway *gw = container_of(t, struct fed_gateway, tick);
    uint64_t now = fed__now(gw);
    for (size_t i = 0; i < gw->n_servers; i++)
        if (gw->servers[i].shared)
            fed__upstream_sweep(gw->servers[i].shared, now);
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        for (size_t i = 0; i < gw->n_servers; i++)
            if (s->inst[i] && s->inst[i]->owner == s)
                fed__upstream_sweep(s->inst[i], now);
    }
    fed__router_check_deferred(gw);
    if (now - gw->last_idle_sweep >= 1000) {
        gw->last_idle_sweep = now;
        it = 0;
        while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
            struct fed_session *s = v;
            if (s->calls == NULL && s->streams == 0 && now - s->last_seen >= SESSION_IDLE_MS) {
                core_log(CORE_LOG_INFO, "sess", "%.8s: idle for an hour; forgotten", s->id);
                fed__session_end(s);
                it = 0;
            }
        }
    }
}

void fed_gateway_start(struct fed_gateway *gw)
{
    for (size_t i = 0; i < gw->n_servers; i++) {
        struct fed_server *srv = &gw->servers[i];
        if (srv->cfg->isolation == CORE_ISOLATION_SHARED) {
            srv->shared = fed__upstream_new(srv, NULL);
            fed__upstream_start(srv->shared);
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
        fed__router_flush_list_changed(v);
}

void fed__gateway_lists_changed(struct fed_gateway *gw, struct fed_upstream *up, unsigned mask)
{
    if (mask == 0 || gw->shutting_down)
        return;
    gw->list_gen++;
    size_t it = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        struct fed_session *s = v;
        if (up == NULL || (up->srv && s->inst[up->srv->index] == up))
            s->list_changed |= mask;
    }
    if (!gw->notify_armed) {
        gw->notify_armed = true;
        uv_timer_start(&gw->notify_timer, on_notify_timer, LIST_CHANGED_DELAY_MS, 0);
    }
}

/* ---- shutdown ---------------------------------------------------------------------------- */

static void maybe_done(struct fed_gateway *gw)
{
    if (!gw->shutting_down || gw->live_upstreams > 0 || gw->handles > 0)
        return;
    for (size_t i = 0; i < gw->n_servers; i++) {
        for (int l = 0; l < 2; l++) {
            size_t it = 0;
            const char *k;
            void *v;
            while (core_map_str_next(&gw->servers[i].renamed[l], &it, &k, &v))
                core_free(v);
            core_map_str_dispose(&gw->servers[i].renamed[l]);
        }
    }
    core_free(gw->servers);
    core_map_str_dispose(&gw->sessions);
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

void fed__gateway_upstream_freed(struct fed_gateway *gw)
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
    fed__bridge_shutdown(gw);
    const char *k;
    void *v;
    size_t it = 0;
    while (core_map_str_next(&gw->sessions, &it, &k, &v)) {
        fed__session_end(v);
        it = 0;
    }
    for (size_t i = 0; i < gw->n_servers; i++) {
        if (gw->servers[i].shared) {
            struct fed_upstream *up = gw->servers[i].shared;
            gw->servers[i].shared = NULL;
            fed__upstream_close(up, "the gateway is shutting down");
        }
    }
    gw->tick.data = gw;
    gw->notify_timer.data = gw;
    uv_close((uv_handle_t *)&gw->tick, on_gw_timer_close);
    uv_close((uv_handle_t *)&gw->notify_timer, on_gw_timer_close);
}
