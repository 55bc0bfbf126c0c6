/* One upstream server and its instances: the supervisor's objects and API (federation/upstream.c),
 * whatever carries the instance's messages. */
#ifndef GW_FEDERATION_UPSTREAM_H
#define GW_FEDERATION_UPSTREAM_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/config.h"
#include "core/jsonrpc.h"
#include "core/log.h"
#include "core/map.h"

struct fed_gateway;
struct fed_session;
struct fed_call;
struct fed_upstream;

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
bool fed_version_supported(const char *v, size_t n);


/* ---- upstreams ------------------------------------------------------------------------- */

enum fed_up_state {
    FED_UP_STOPPED = 0,  /* not running, not scheduled */
    FED_UP_STARTING,     /* spawned, initialize not yet sent */
    FED_UP_INITIALIZING, /* initialize sent, waiting for its result */
    FED_UP_READY,        /* initialized; serving requests */
    FED_UP_BACKOFF,      /* exited; a restart is scheduled */
    FED_UP_CLOSING,      /* being stopped for good */
    FED_UP_NEEDS_LOGIN,  /* auth = oauth without a usable token: waits for `agentgate login`
                          * (POST /agentgate/credentials starts it again) */
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

struct fed_server *fed_server_new(struct fed_gateway *gw, const struct core_server_cfg *cfg,
                                   size_t index);
void fed_server_ref(struct fed_server *srv);
void fed_server_unref(struct fed_server *srv);

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

/* A running (or restartable) instance of a server and its MCP session, over one of two links:
 * a stdio child (cfg->command) or a remote MCP session (cfg->url). Only upstream.c knows which;
 * everything else sees the same instance. */
struct fed_upstream {
    struct fed_gateway *gw;
    struct fed_server *srv;
    struct fed_session *owner; /* isolation = session: the session it serves, else NULL */
    char *client_key;          /* isolation = client: the client it serves ("" anonymous) */
    unsigned users;            /* sessions using it (fed_session_sync_instances) */
    /* Client name ("" = anonymous) -> (void *)(uintptr_t) sessions of that client using it:
     * more than one key means the child is shared between principals. */
    struct core_map_str idents;
    struct fed_upstream *prev, *next; /* in gw->ups */
    struct core_log_limit log_limit; /* what its traffic makes the daemon log */
    char name[96];             /* for logs: server name, plus the session for isolated ones */
    enum fed_up_state state;
    struct tp_child *child;      /* stdio server: its process while it runs, else NULL */
    struct tp_remote *remote;    /* remote server: its session while it is up, else NULL */
    struct auth_oauth_req *oreq; /* auth = oauth: the token being asked for, or NULL */
    char *bearer;                /* auth = oauth: the Authorization value in use (wiped), or NULL */
    uint64_t auth_since;         /* loop time of the first of the recent auth challenges */
    unsigned auth_count;         /* challenges since auth_since (a server refusing every token) */
    char *last_error;            /* why it went down last (one line), NULL once ready again */
    uint64_t down_at;            /* loop time it went down; 0 = never */
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

const char *fed_up_state_name(enum fed_up_state s);
struct fed_upstream *fed_upstream_new(struct fed_server *srv, struct fed_session *owner);
void fed_upstream_start(struct fed_upstream *up);
/* The stored credentials of its server changed (`agentgate login` / `logout`): an instance that
 * waits for a login, or backs off, starts again now; a running one starts a new session with
 * the new credentials. */
void fed_upstream_credentials_changed(struct fed_upstream *up);
/* Stops the child for good and frees the instance when everything has closed. Pending
 * requests fail with `why`. */
void fed_upstream_close(struct fed_upstream *up, const char *why);
bool fed_upstream_is_ready(const struct fed_upstream *up);
/* True for a remote server (url), false for a stdio one (command). */
bool fed_upstream_is_remote(const struct fed_upstream *up);
/* The remote transport in use ("streamable-http", "sse", "auto" while it settles), or NULL for a
 * stdio server or while no session exists. */
const char *fed_upstream_transport(const struct fed_upstream *up);
/* Fails requests whose deadline has passed (called from the gateway's tick). */
void fed_upstream_sweep(struct fed_upstream *up, uint64_t now);
/* Sends a request built from method and params (params taken; may be NULL) as an internal
 * request. timeout_ms 0 = the server's request_timeout. Returns 0 or CORE_ECLOSED (not ready;
 * cb is not called). */
int fed_upstream_request(struct fed_upstream *up, const char *method, cJSON *params,
                          uint64_t timeout_ms, fed_reply_cb cb, void *ctx);
/* Allocates an upstream id for a forwarded request and registers the pending entry. The
 * caller then writes the frame with fed_upstream_write. */
struct fed_pending *fed_upstream_pend(struct fed_upstream *up, struct fed_call *call);
/* Removes a pending entry without answering it (e.g. a cancelled request) and frees it. */
void fed_upstream_unpend(struct fed_upstream *up, struct fed_pending *p);
/* Writes raw bytes (one or more complete frames with their newlines). */
int fed_upstream_write(struct fed_upstream *up, const uv_buf_t *bufs, unsigned n);
/* Appends one line to the server's log file (<state>/logs/NAME.log), for what reaches no
 * client. */
void fed_upstream_log_line(struct fed_upstream *up, const char *p, size_t n);
/* Sends a notification (params taken; may be NULL). */
void fed_upstream_notify(struct fed_upstream *up, const char *method, cJSON *params);
/* True when the upstream advertised this capability (top-level key of capabilities). */
bool fed_upstream_has_cap(const struct fed_upstream *up, const char *cap);
/* The upstream's own name of the tool (kind 0) or prompt (1) its cached list exposes as
 * `exposed` (borrowed until the list changes), or NULL. *known tells whether that list is
 * known at all. */
const char *fed_upstream_name_of(const struct fed_upstream *up, int kind, const char *exposed,
                                  bool *known);
/* Whether uri is in its resource list, or matches one of its templates (returns the length
 * of the matched literal prefix, for the longest-prefix choice; 0 = no match). */
size_t fed_upstream_res_match(const struct fed_upstream *up, const char *uri, bool *exact);

/* Fetch every page of list l from up (internal), then fed_router_list_updated. */
void fed_upstream_fetch_list(struct fed_upstream *up, enum fed_list l);

#endif
