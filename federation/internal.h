/* Shared between the files of federation/: the gateway object, the memory bound for clients
 * that do not read, and the HTTP fronts' helpers. Upstreams, sessions, the router and the
 * control endpoints have headers of their own; client identities are auth/identity.h. */
#ifndef GW_FEDERATION_INTERNAL_H
#define GW_FEDERATION_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/jsonrpc.h"
#include "core/log.h"
#include "core/map.h"
#include "federation/gateway.h"


/* ---- the gateway ---------------------------------------------------------------------------- */

struct pol_pins;
struct pol_audit;
struct tp_hclient;
struct auth_oauth;

struct fed_gateway {
    uv_loop_t *loop;
    struct core_config *cfg;      /* owned; replaced by a reload */
    char *self_exe;
    char *state_dir;
    char *bearer;                 /* required HTTP bearer token, or NULL */
    char *auth_override;          /* serve --auth: wins over the config's auth, also on reload */
    struct fed_server **servers;
    size_t n_servers;
    struct core_map_str sessions; /* id -> struct fed_session */
    struct core_map_str client_sessions; /* client name ("" anonymous) -> (void *)(uintptr_t)
                                            its live sessions */
    uint64_t next_serial;
    struct fed_upstream *ups;     /* every live instance (request deadlines) */
    size_t backlog;               /* bytes bridges' writes and sessions' queues hold */
    uint64_t dropped;             /* notifications dropped for clients that did not read */
    struct core_map_str tokens;   /* a session's current token -> struct fed_session */
    struct core_map_str ended;    /* revoked session ids -> (void *)expiry (unix s) */
    char *revoked_path;           /* <state>/revoked: the same, one "SID EXP" line each */
    struct core_map_str buckets;  /* client name -> struct pol_bucket (rate limits) */
    struct pol_pins *pins;        /* NULL without a state dir */
    char *pins_path;
    struct pol_audit *audit;      /* NULL when off */
    struct tp_hclient *hclient;   /* the HTTP client of every remote upstream; NULL until the
                                     first one starts; closed once the last upstream is freed */
    struct auth_oauth *oauth;     /* the OAuth client (auth = oauth servers), at first use; closed
                                     before hclient, which carries its requests */
    uint64_t list_gen;            /* bumped when any list changes; stale cursors are refused */
    uv_timer_t tick;              /* request deadlines, idle sessions */
    uint64_t last_idle_sweep;
    uv_timer_t notify_timer;      /* coalesces list_changed */
    bool notify_armed;
    bool shutting_down;
    int live_upstreams;           /* instances not yet freed */
    int handles;
    void (*done)(void *ctx);
    void *done_ctx;
};

uint64_t fed_now(const struct fed_gateway *gw);
/* Wall clock, unix seconds (token times). */
uint64_t fed_unix_now(void);
/* Refuses the session id's tokens until exp (unix s), in this process and, through
 * <state>/revoked, the next ones. */
void fed_gateway_revoke(struct fed_gateway *gw, const char *sid, uint64_t exp);
/* The gateway's HTTP client, created at first use (NULL when that fails, or once shutting
 * down). Borrowed. */
struct tp_hclient *fed_gateway_hclient(struct fed_gateway *gw);
/* The gateway's OAuth client, created at first use; NULL (with a reason in err) without a
 * state directory, when it cannot be created, or once shutting down. Borrowed. */
struct auth_oauth *fed_gateway_oauth(struct fed_gateway *gw, char *err, size_t errlen);
/* Writes the pins file when something changed. */
void fed_gateway_save_pins(struct fed_gateway *gw);
/* Called when an upstream instance has been freed (shutdown bookkeeping). */
void fed_gateway_upstream_freed(struct fed_gateway *gw);
/* Bumps the list generation (stale cursors are refused) and sends the list_changed
 * notifications sessions are marked for, shortly (coalesced). */
void fed_gateway_flush_soon(struct fed_gateway *gw);
/* Marks lists (bitmask of 1 << enum fed_list) changed for every session using `up` (NULL =
 * all sessions) and schedules the coalesced notifications. */
void fed_gateway_lists_changed(struct fed_gateway *gw, struct fed_upstream *up, unsigned mask);

/* ---- memory held for clients that do not read -------------------------------------------- */

/* Counted in bytes actually allocated. Past the per-stream or the total bound notifications are
 * dropped; past the hard bound a stream that must not lose messages is closed. */
#define FED_NOTIFY_STREAM_MAX (1u << 20)
#define FED_NOTIFY_TOTAL_MAX (64u << 20)
#define FED_STREAM_HARD_MAX (64u << 20)

/* Drops of one stream: one warning when a run of drops starts, one line when it ends. */
struct fed_drops {
    uint64_t run;   /* dropped since the stream last kept up */
    uint64_t total; /* over the stream's life */
};

/* Whether a notification may be queued on a stream that would then hold `conn` bytes (at most
 * conn_max), while HTTP connections hold `http_total` in all (the gateway adds what bridges and
 * session queues hold). False: drop it; it is counted in d and gw->dropped, and the first of a
 * run is logged. */
bool fed_backlog_room(struct fed_gateway *gw, size_t conn, size_t conn_max, size_t http_total,
                       struct fed_drops *d, const char *who);
/* The stream is keeping up again: a run of drops ends with one line saying how many. */
void fed_backlog_drained(struct fed_drops *d, const char *who);

struct tp_http_req;
/* HTTP fronts: a short text answer, and a JSON-RPC error (id null) with an HTTP status. */
void fed_http_status(struct tp_http_req *req, int status, const char *text);
void fed_http_rpc_error(struct tp_http_req *req, int status, int code, const char *msg);

/* Writes a JSON-RPC error response text with the given raw id bytes into out. */
int fed_error_json(struct core_buf *out, const char *id, size_t id_len, int code, const char *msg);

#endif
