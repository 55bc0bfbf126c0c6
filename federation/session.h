/* Client sessions and the calls in flight in them (federation/session.c, federation/router.c). */
#ifndef GW_FEDERATION_SESSION_H
#define GW_FEDERATION_SESSION_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/config.h"
#include "core/jsonrpc.h"
#include "core/map.h"

struct fed_gateway;
struct fed_upstream;
struct fed_pending;
struct fed_session;
struct fed_call;

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
                                   in a token (see fed_session_token) */
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

void fed_s2c_free(struct fed_s2c *r);
/* Creates a session of `client` (NULL = anonymous) with the front's channel (ops/ops_ctx),
 * registers it and binds it to its instances. Makes room under max_sessions (total and per
 * client) by evicting the least recently used idle token session. Returns NULL, with a
 * one-line reason in why, when there is no room or a server the client may use is at its
 * max_instances; nothing is left behind then. */
struct fed_session *fed_session_new(struct fed_gateway *gw, const struct core_client_cfg *client,
                                     const struct fed_session_ops *ops, void *ops_ctx, char *why,
                                     size_t whylen);
/* Binds s to one instance per server its client's policy includes (client and session
 * instances start as needed) and releases those of servers it may no longer use. Returns 0, or
 * CORE_EBUSY when a server was at max_instances (*full is the first; s goes without it). */
int fed_session_sync_instances(struct fed_session *s, const struct fed_server **full);
/* s stops using its instance of server i (which stops with its last user when it is a client
 * or session instance); s->inst[i] becomes NULL. */
void fed_session_release_instance(struct fed_session *s, size_t i);
struct fed_session *fed_session_find(struct fed_gateway *gw, const char *id);
/* Ends the session: in-flight calls are detached, isolated upstreams stopped, subscriptions
 * dropped. Frees it. */
void fed_session_end(struct fed_session *s);
/* Ends the session and revokes its token for good (DELETE, a client removed from the config):
 * its tokens stay refused until they would have expired, across restarts too. Plain
 * fed_session_end leaves a token session to come back on its next request (idle eviction,
 * shutdown). */
void fed_session_revoke(struct fed_session *s);
/* The session's current token, sealed anew when its state changed or it is getting old.
 * NULL when sealing failed. */
const char *fed_session_token(struct fed_session *s);
/* The session for a presented token: the cached one, or one restored from the token. Returns
 * NULL for an expired, tampered, foreign (other client) or ended session's token. */
struct fed_session *fed_session_open(struct fed_gateway *gw, const struct core_client_cfg *client,
                                      const char *tok, const struct fed_session_ops *ops,
                                      void *(*make_ctx)(struct fed_session *s));
/* Sends an unsolicited message (complete JSON text, no newline) to the session's stream. */
void fed_session_notify(struct fed_session *s, const uv_buf_t *bufs, unsigned n);
bool fed_session_has_cap(const struct fed_session *s, const char *cap);

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
void fed_fanout_orphan(struct fed_fanout *f);

/* Creates a call for a request frame (env from core_rpc_scan). The router owns it. */
struct fed_call *fed_call_new(struct fed_session *s, const char *frame,
                               const struct core_rpc_env *env, const struct fed_call_ops *ops,
                               void *ops_ctx);
/* The front's side went away: further messages and the response are dropped. */
void fed_call_detach(struct fed_call *c);
/* Sends the response (a complete JSON text) and frees the call. */
void fed_call_respond(struct fed_call *c, const uv_buf_t *bufs, unsigned n);
void fed_call_result(struct fed_call *c, const char *result_json);
void fed_call_error(struct fed_call *c, int code, const char *msg);
void fed_call_message(struct fed_call *c, const uv_buf_t *bufs, unsigned n);
void fed_call_free(struct fed_call *c);


#endif
