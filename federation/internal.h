/* Shared between the files of federation/: the gateway's objects and their internal API. */
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

struct fed_session;
struct fed_call;
struct fed_upstream;

/* The lists the gateway federates. */
enum fed_list {
    FED_LIST_TOOLS = 0,
    FED_LIST_PROMPTS,
    FED_LIST_RESOURCES,
    FED_LIST_TEMPLATES,
    FED_LIST_COUNT,
};

/* Protocol revisions we speak, oldest first. */
extern const char *const fed_versions[];
extern const size_t fed_n_versions;
#define FED_LATEST_VERSION "2025-11-25"
bool fed__version_supported(const char *v, size_t n);

/* ---- upstreams ------------------------------------------------------------------------- */

enum fed_up_state {
    FED_UP_STOPPED = 0,  /* not running, not scheduled */
    FED_UP_STARTING,     /* spawned, initialize not yet sent */
    FED_UP_INITIALIZING, /* initialize sent, waiting for its result */
    FED_UP_READY,        /* initialized; serving requests */
    FED_UP_BACKOFF,      /* exited; a restart is scheduled */
    FED_UP_CLOSING,      /* being stopped for good */
};

/* One configured [server.NAME]. A reload that removes or changes a server retires it: it
 * leaves gw->servers and is freed once nothing points at it any more. */
struct fed_server {
    struct fed_gateway *gw;
    struct core_server_cfg *cfg; /* owned copy */
    size_t index;                /* position in gw->servers */
    int refs;                    /* upstream instances and list fan-outs that point here */
    bool retired;
    struct fed_upstream *shared; /* the one instance when isolation = shared */
    struct core_map_str by_client; /* isolation = client: client name ("" = anonymous) ->
                                      its instance */
    unsigned n_private;          /* live client and session instances (max_instances) */
    struct core_log_limit log_limit; /* what its lists make the daemon log */
    /* Tools whose definition differs from their pin: original name -> struct fed_pin_change. */
    struct core_map_str pin_changed;
};

struct fed_pin_change {
    char *what; /* "description changed" */
    bool hidden; /* pin = quarantine: hidden and refused */
};

struct fed_server *fed__server_new(struct fed_gateway *gw, const struct core_server_cfg *cfg,
                                   size_t index);
void fed__server_ref(struct fed_server *srv);
void fed__server_unref(struct fed_server *srv);

/* Called when an internal request to an upstream completes. On success err == 0 and frame/env
 * hold the reply (RESULT or ERROR), borrowed for the call; otherwise frame is NULL. */
typedef void (*fed_reply_cb)(void *ctx, struct fed_upstream *up, int err, const char *frame,
                             size_t n, const struct core_rpc_env *env);

enum fed_pend_kind {
    FED_PEND_FORWARD,  /* a client's request; the reply goes back to the call */
    FED_PEND_INTERNAL, /* the gateway's own request; the reply goes to a callback */
};

/* A request in flight to an upstream, keyed by the upstream id we gave it. */
struct fed_pending {
    uint64_t id;
    struct fed_upstream *up;
    enum fed_pend_kind kind;
    struct fed_call *call; /* FORWARD: NULL once the call went away */
    fed_reply_cb cb;       /* INTERNAL */
    void *ctx;
    uint64_t deadline;     /* loop time in ms; 0 = none */
    uint64_t serial;       /* FORWARD: the serial of the session that sent it, kept when the
                              call goes away, so server->client messages can be attributed */
};

/* A running (or restartable) instance of a server: one child process and its MCP session. */
struct fed_upstream {
    struct fed_gateway *gw;
    struct fed_server *srv;
    struct fed_session *owner; /* isolation = session: the session it serves, else NULL */
    char *client_key;          /* isolation = client: the client it serves ("" anonymous) */
    unsigned users;            /* sessions using it (fed__session_sync_instances) */
    /* Client name ("" = anonymous) -> (void *)(uintptr_t) sessions of that client using it:
     * more than one key means the child is shared between principals. */
    struct core_map_str idents;
    struct fed_upstream *prev, *next; /* in gw->ups */
    struct core_log_limit log_limit; /* what its traffic makes the daemon log */
    char name[96];             /* for logs: server name, plus the session for isolated ones */
    enum fed_up_state state;
    struct tp_child *child;
    uv_timer_t timer;          /* backoff */
    uint64_t backoff_ms;
    uint64_t ready_at;         /* loop time when it became ready */
    uint64_t next_id;
    struct core_map_u64 pending; /* upstream id -> struct fed_pending */
    int64_t exit_status;
    int term_signal;
    /* What initialize told us. */
    char *protocol_version;
    cJSON *capabilities;
    cJSON *server_info;
    char *instructions;
    /* Cached lists (cJSON arrays, owned) and the hash of their JSON, for change detection
     * and the resource index. */
    cJSON *lists[FED_LIST_COUNT];
    uint64_t list_hash[FED_LIST_COUNT];
    bool list_known[FED_LIST_COUNT];
    /* Exposed name -> the upstream's own name (borrowed from lists[]), for tools (0) and
     * prompts (1): what routes. Rebuilt whenever those lists are replaced. */
    struct core_map_str names[2];
    int lists_fetching;        /* internal list fetches in flight */
    /* The upstream missed the list deadline: client lists get its cached list at once while an
     * internal fetch refreshes it; cleared when a fetch answers within the deadline again. */
    bool list_late[FED_LIST_COUNT];
    bool list_refreshing[FED_LIST_COUNT];
    /* A change was announced while a fetch was under way: one more fetch follows it (however
     * many announcements came, so a server cannot make the gateway flood it with fetches). */
    bool list_again[FED_LIST_COUNT];
    struct core_map_str sub_count; /* resource URI -> (void *)(uintptr_t)count of sessions */
    char *log_level;           /* what we last sent with logging/setLevel, or NULL */
    bool closing;
    int handles;               /* open libuv handles (timer) */
};

const char *fed__up_state_name(enum fed_up_state s);
struct fed_upstream *fed__upstream_new(struct fed_server *srv, struct fed_session *owner);
void fed__upstream_start(struct fed_upstream *up);
/* Stops the child for good and frees the instance when everything has closed. Pending
 * requests fail with `why`. */
void fed__upstream_close(struct fed_upstream *up, const char *why);
bool fed__upstream_is_ready(const struct fed_upstream *up);
/* Fails requests whose deadline has passed (called from the gateway's tick). */
void fed__upstream_sweep(struct fed_upstream *up, uint64_t now);
/* Sends a request built from method and params (params taken; may be NULL) as an internal
 * request. timeout_ms 0 = the server's request_timeout. Returns 0 or CORE_ECLOSED (not ready;
 * cb is not called). */
int fed__upstream_request(struct fed_upstream *up, const char *method, cJSON *params,
                          uint64_t timeout_ms, fed_reply_cb cb, void *ctx);
/* Allocates an upstream id for a forwarded request and registers the pending entry. The
 * caller then writes the frame with fed__upstream_write. */
struct fed_pending *fed__upstream_pend(struct fed_upstream *up, struct fed_call *call);
/* Removes a pending entry without answering it (e.g. a cancelled request) and frees it. */
void fed__upstream_unpend(struct fed_upstream *up, struct fed_pending *p);
/* Writes raw bytes (one or more complete frames with their newlines). */
int fed__upstream_write(struct fed_upstream *up, const uv_buf_t *bufs, unsigned n);
/* Appends one line to the server's log file (<state>/logs/NAME.log), for what reaches no
 * client. */
void fed__upstream_log_line(struct fed_upstream *up, const char *p, size_t n);
/* Sends a notification (params taken; may be NULL). */
void fed__upstream_notify(struct fed_upstream *up, const char *method, cJSON *params);
/* True when the upstream advertised this capability (top-level key of capabilities). */
bool fed__upstream_has_cap(const struct fed_upstream *up, const char *cap);
/* The upstream's own name of the tool (kind 0) or prompt (1) its cached list exposes as
 * `exposed` (borrowed until the list changes), or NULL. *known tells whether that list is
 * known at all. */
const char *fed__upstream_name_of(const struct fed_upstream *up, int kind, const char *exposed,
                                  bool *known);
/* Whether uri is in its resource list, or matches one of its templates (returns the length
 * of the matched literal prefix, for the longest-prefix choice; 0 = no match). */
size_t fed__upstream_res_match(const struct fed_upstream *up, const char *uri, bool *exact);

/* ---- sessions ----------------------------------------------------------------------------- */

/* The front's channel for messages not tied to a request (the GET stream). */
struct fed_session_ops {
    void (*notify)(void *ctx, struct fed_session *s, const uv_buf_t *bufs, unsigned n);
    /* The session is ending; the front releases ops_ctx. */
    void (*ended)(void *ctx, struct fed_session *s);
};

/* A server->client request relayed to a session, waiting for the client's answer. */
struct fed_s2c {
    struct fed_upstream *up;
    char *up_id; /* the upstream's raw id bytes */
    size_t up_id_len;
};

struct fed_session {
    struct fed_gateway *gw;
    uint64_t serial;            /* unique in this process, never reused (fed_pending.serial) */
    char id[33];                /* 128 random bits in hex; Streamable HTTP clients hold it sealed
                                   in a token (see fed__session_token) */
    char *client;               /* the client identity ([client.NAME]), NULL = anonymous */
    const struct core_client_cfg *ccfg; /* its policy (into gw->cfg), NULL = everything */
    char *token;                /* sealed state as last handed out, or NULL (not a token session) */
    uint64_t token_iat, token_exp; /* unix seconds */
    bool token_stale;           /* state changed since the token was sealed */
    bool restoring;             /* restored from a token: requests wait for starting upstreams */
    uint64_t restore_deadline;
    cJSON *restore_subs;        /* resource URIs to subscribe once upstreams are up */
    char *protocol_version;
    cJSON *client_caps;
    cJSON *client_info;
    int mcp_log_level;          /* index into the MCP level list; -1 = not set */
    bool initialized;
    struct fed_upstream **inst; /* per server (config order): the instance it uses */
    struct core_map_str subs;   /* subscribed resource URI -> (void *)1 */
    struct fed_call *calls;     /* in-flight calls, newest first */
    unsigned n_calls;           /* their number (FED_MAX_CALLS) */
    uint64_t next_s2c;
    struct core_map_u64 s2c;    /* our downstream id -> struct fed_s2c */
    const struct fed_session_ops *ops;
    void *ops_ctx;
    unsigned list_changed;      /* bitmask of lists with a change not yet sent */
    uint64_t last_seen;
    int streams;                /* open long-lived streams (GET); a session with one never idles out */
    bool init_waiting;          /* its initialize is deferred: later requests queue behind it */
    bool closing;
};

void fed__s2c_free(struct fed_s2c *r);
/* Creates a session of `client` (NULL = anonymous) with the front's channel (ops/ops_ctx),
 * registers it and binds it to its instances. Makes room under max_sessions (total and per
 * client) by evicting the least recently used idle token session. Returns NULL, with a
 * one-line reason in why, when there is no room or a server the client may use is at its
 * max_instances; nothing is left behind then. */
struct fed_session *fed__session_new(struct fed_gateway *gw, const struct core_client_cfg *client,
                                     const struct fed_session_ops *ops, void *ops_ctx, char *why,
                                     size_t whylen);
/* Binds s to one instance per server its client's policy includes (client and session
 * instances start as needed) and releases those of servers it may no longer use. Returns 0, or
 * CORE_EBUSY when a server was at max_instances (*full is the first; s goes without it). */
int fed__session_sync_instances(struct fed_session *s, const struct fed_server **full);
/* s stops using its instance of server i (which stops with its last user when it is a client
 * or session instance); s->inst[i] becomes NULL. */
void fed__session_release_instance(struct fed_session *s, size_t i);
struct fed_session *fed__session_find(struct fed_gateway *gw, const char *id);
/* Ends the session: in-flight calls are detached, isolated upstreams stopped, subscriptions
 * dropped. Frees it. */
void fed__session_end(struct fed_session *s);
/* Ends the session and revokes its token for good (DELETE, a client removed from the config):
 * its tokens stay refused until they would have expired, across restarts too. Plain
 * fed__session_end leaves a token session to come back on its next request (idle eviction,
 * shutdown). */
void fed__session_revoke(struct fed_session *s);
/* The session's current token, sealed anew when its state changed or it is getting old.
 * NULL when sealing failed. */
const char *fed__session_token(struct fed_session *s);
/* The session for a presented token: the cached one, or one restored from the token. Returns
 * NULL for an expired, tampered, foreign (other client) or ended session's token. */
struct fed_session *fed__session_open(struct fed_gateway *gw, const struct core_client_cfg *client,
                                      const char *tok, const struct fed_session_ops *ops,
                                      void *(*make_ctx)(struct fed_session *s));
/* Sends an unsolicited message (complete JSON text, no newline) to the session's stream. */
void fed__session_notify(struct fed_session *s, const uv_buf_t *bufs, unsigned n);
bool fed__session_has_cap(const struct fed_session *s, const char *cap);

/* ---- calls (a client request in flight) ------------------------------------------------------ */

/* Requests one session may have in flight; past it a request is answered with an error at once
 * (a pipelining client would otherwise grow the daemon's tables without bound). */
#define FED_MAX_CALLS 256

/* The front's channel for one request. `message` carries related messages (progress,
 * server->client requests) before the response; `respond` carries the response, after which
 * the call is freed by the router. Both receive one complete JSON text without newline. */
struct fed_call_ops {
    void (*message)(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n);
    void (*respond)(void *ctx, struct fed_call *c, const uv_buf_t *bufs, unsigned n);
};

struct fed_fanout;

struct fed_call {
    struct fed_session *sess;
    struct fed_call *prev, *next;   /* in sess->calls */
    char *id;                       /* the client's raw id bytes */
    size_t id_len;
    char method[CORE_RPC_METHOD_MAX];
    const struct fed_call_ops *ops; /* NULL once detached (the client went away) */
    void *ops_ctx;
    struct fed_pending *pend;       /* forwarded: the upstream request */
    struct fed_upstream *up;
    char *progress_token;           /* the client's raw progressToken bytes, or NULL */
    size_t progress_token_len;
    struct fed_fanout *fan;         /* list fan-out in progress */
    bool deferred;                  /* initialize waiting for starting upstreams */
    char *queued;                   /* a request that arrived during a deferred initialize: its
                                       frame, dispatched once initialize is answered */
    size_t queued_len;
    uint64_t deadline;              /* loop ms until which a deferred initialize waits */
    /* tools/call: what the audit log records when the call ends. */
    bool audit;
    const char *outcome;            /* static string; NULL = decided from the response */
    uint64_t t0_ns;
    size_t bytes_in;
    char *audit_server;
    char *audit_tool;
};

/* The call of a fan-out went away: the fan-out finishes its upstream requests and frees itself. */
void fed__fanout_orphan(struct fed_fanout *f);

/* Creates a call for a request frame (env from core_rpc_scan). The router owns it. */
struct fed_call *fed__call_new(struct fed_session *s, const char *frame,
                               const struct core_rpc_env *env, const struct fed_call_ops *ops,
                               void *ops_ctx);
/* The front's side went away: further messages and the response are dropped. */
void fed_call_detach(struct fed_call *c);
/* Sends the response (a complete JSON text) and frees the call. */
void fed__call_respond(struct fed_call *c, const uv_buf_t *bufs, unsigned n);
void fed__call_result(struct fed_call *c, const char *result_json);
void fed__call_error(struct fed_call *c, int code, const char *msg);
void fed__call_message(struct fed_call *c, const uv_buf_t *bufs, unsigned n);
void fed__call_free(struct fed_call *c);

/* ---- router ----------------------------------------------------------------------------- */

/* Entry points for fronts. frame is one JSON-RPC message (no batch), env its scan. */
void fed_router_request(struct fed_call *c, const char *frame, size_t n,
                        const struct core_rpc_env *env);
void fed_router_notification(struct fed_session *s, const char *frame,
                             const struct core_rpc_env *env);
void fed_router_response(struct fed_session *s, const char *frame, size_t n,
                         const struct core_rpc_env *env);

/* MCP log levels ("debug" .. "emergency") and their index, most verbose first; -1 / NULL
 * for anything else. */
int fed__mcp_level_index(const char *s);
const char *fed__mcp_level_name(int i);
/* Deferred initialize calls whose upstreams are settled (or whose wait ran out) are answered. */
void fed__router_check_deferred(struct fed_gateway *gw);
/* The session's cleanup in the router: subscriptions dropped, upstream log levels recomputed. */
void fed__router_session_ending(struct fed_session *s);
/* A session came back from its token: requests wait for starting upstreams, then its
 * subscriptions and log level are applied to them. */
void fed__router_session_restored(struct fed_session *s);
/* Sends the coalesced list_changed notifications of one session. */
void fed__router_flush_list_changed(struct fed_session *s);

/* From upstreams. */
void fed__router_upstream_message(struct fed_upstream *up, const char *frame, size_t n,
                                  const struct core_rpc_env *env);
void fed__router_upstream_ready(struct fed_upstream *up);
void fed__router_upstream_down(struct fed_upstream *up);
/* A list fetch finished: lists[l] now holds the new list; changed says if it differs. */
void fed__router_list_updated(struct fed_upstream *up, enum fed_list l, bool changed);
/* Fetch every page of list l from up (internal), then fed__router_list_updated. */
void fed__upstream_fetch_list(struct fed_upstream *up, enum fed_list l);

/* Closes every bridge connection of the gateway (shutdown). */
void fed__bridge_shutdown(struct fed_gateway *gw);

/* ---- identities ------------------------------------------------------------------------ */

/* What a front knows about who is asking. */
struct fed_peer {
    bool is_unix;              /* came in on the Unix socket */
    bool uid_known;            /* is_unix: the kernel told the peer's uid */
    uid_t uid;
    const char *authorization; /* the Authorization header, or NULL */
    const char *name;          /* the client name it gives (X-Agentgate-Client, bridge hello) */
};

/* auth = none is in force (serve --auth, else the config). */
bool fed__auth_none(const struct fed_gateway *gw);
const struct core_client_cfg *fed__client_named(const struct fed_gateway *gw, const char *name);
/* Returns 0 with *client (NULL = anonymous), or an HTTP status (401, 403) with a one-line
 * reason for the peer. Socket peers must run as our uid; TCP needs a bearer token unless
 * auth = none. */
int fed__identify(const struct fed_gateway *gw, const struct fed_peer *peer,
                  const struct core_client_cfg **client, const char **why);

/* ---- names ------------------------------------------------------------------------------ */

/* Builds the exposed name for (prefix, name) into out (at least 65 bytes): prefix + "__" +
 * name, with characters outside [A-Za-z0-9_.-] replaced by '_' and, when longer than 64,
 * shortened with a stable 8-hex-digit hash of the original. Returns true when the result is
 * not simply prefix + "__" + name (so a reverse map entry is needed). */
bool fed__name_expose(const char *prefix, const char *name, char out[65]);

/* ---- the gateway ---------------------------------------------------------------------------- */

struct pol_pins;
struct pol_audit;

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

uint64_t fed__now(const struct fed_gateway *gw);
/* Wall clock, unix seconds (token times). */
uint64_t fed__unix_now(void);
/* Refuses the session id's tokens until exp (unix s), in this process and, through
 * <state>/revoked, the next ones. */
void fed__gateway_revoke(struct fed_gateway *gw, const char *sid, uint64_t exp);
/* Writes the pins file when something changed. */
void fed__gateway_save_pins(struct fed_gateway *gw);
/* Called when an upstream instance has been freed (shutdown bookkeeping). */
void fed__gateway_upstream_freed(struct fed_gateway *gw);
/* Bumps the list generation (stale cursors are refused) and sends the list_changed
 * notifications sessions are marked for, shortly (coalesced). */
void fed__gateway_flush_soon(struct fed_gateway *gw);
/* Marks lists (bitmask of 1 << enum fed_list) changed for every session using `up` (NULL =
 * all sessions) and schedules the coalesced notifications. */
void fed__gateway_lists_changed(struct fed_gateway *gw, struct fed_upstream *up, unsigned mask);

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
bool fed__backlog_room(struct fed_gateway *gw, size_t conn, size_t conn_max, size_t http_total,
                       struct fed_drops *d, const char *who);
/* The stream is keeping up again: a run of drops ends with one line saying how many. */
void fed__backlog_drained(struct fed_drops *d, const char *who);

struct tp_http_req;
/* POST /agentgate/reload and /agentgate/approve (Unix socket only). */
void fed_control_request(struct fed_gateway *gw, struct tp_http_req *req);
/* HTTP fronts: a short text answer, and a JSON-RPC error (id null) with an HTTP status. */
void fed__http_status(struct tp_http_req *req, int status, const char *text);
void fed__http_rpc_error(struct tp_http_req *req, int status, int code, const char *msg);

/* Writes a JSON-RPC error response text with the given raw id bytes into out. */
int fed__error_json(struct core_buf *out, const char *id, size_t id_len, int code, const char *msg);

#endif
