/* A remote MCP server as a message pipe: Streamable HTTP (POST with JSON or SSE replies, the GET
 * stream, Mcp-Session-Id, MCP-Protocol-Version, resumption with Last-Event-ID, DELETE at the end)
 * or the legacy HTTP+SSE transport (GET stream, `endpoint` event, POSTs to it), or `auto`, which
 * tries the first and falls back to the second. It carries JSON-RPC messages both ways and knows
 * nothing of what they mean beyond what the transport needs (the initialize exchange's session
 * id and protocol version). The same role as tp_child for a stdio server. */
#ifndef GW_TRANSPORTS_REMOTE_H
#define GW_TRANSPORTS_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct tp_hclient;
struct tp_remote;

enum tp_remote_kind {
    TP_REMOTE_AUTO = 0,
    TP_REMOTE_STREAMABLE,
    TP_REMOTE_SSE,
};

struct tp_remote_opts {
    const char *url;
    enum tp_remote_kind kind;
    /* Extra "Name: value" headers on every request, NULL-terminated; copied. */
    const char *const *headers;
    /* "Bearer ..." value for Authorization, or NULL; copied (tp_remote_set_bearer replaces it). */
    const char *bearer;
    const char *ca_file;    /* NULL = system store */
    size_t max_frame;       /* largest message accepted from the server; 0 = 4 MiB */
    uint64_t connect_timeout_ms; /* 0 = 10 s */
    /* A stream (GET or a POST's SSE reply) that sends nothing, not even a keep-alive, for this
     * long is treated as dropped and resumed; 0 = 5 min. */
    uint64_t stall_ms;
};

struct tp_remote_cbs {
    /* One JSON-RPC message from the server (a response, request or notification), borrowed for
     * the call. */
    void (*on_frame)(void *ctx, const char *p, size_t n);
    /* The server wants credentials: 401, or 403 with an insufficient_scope challenge. status and
     * the WWW-Authenticate value (NULL when absent) tell why. Messages sent meanwhile are held;
     * the owner answers with tp_remote_set_bearer + tp_remote_resume, or tp_remote_close. */
    void (*on_auth)(void *ctx, int status, const char *www_authenticate);
    /* The remote is gone for now: unreachable, TLS failure, the session expired (404 on it),
     * a broken protocol. Messages without a reply are lost; the owner starts over (a new
     * tp_remote, with a fresh initialize). why is one line naming the reason. Not called after
     * tp_remote_close. */
    void (*on_down)(void *ctx, int err, const char *why);
};

/* Starts nothing on the network until the first tp_remote_write (the initialize request, which
 * also settles `auto`). Returns 0 or CORE_EINVAL (bad URL) / an allocation error. */
GW_MUST_CHECK int tp_remote_new(struct tp_hclient *hc, const struct tp_remote_opts *opts,
                                const struct tp_remote_cbs *cbs, void *ctx,
                                struct tp_remote **out);
/* Sends one JSON-RPC message (no newline). Returns 0, CORE_ETOOBIG (past what may wait
 * unsent) or CORE_ECLOSED. Replies come through on_frame. */
GW_MUST_CHECK int tp_remote_write(struct tp_remote *r, const char *p, size_t n);
/* The initialize exchange is done: sets the MCP-Protocol-Version sent from now on and opens the
 * server's stream for its own messages (the GET stream; legacy SSE has it already). */
void tp_remote_ready(struct tp_remote *r, const char *protocol_version);
void tp_remote_set_bearer(struct tp_remote *r, const char *bearer);
/* After on_auth: retries what was held, with the current bearer. */
void tp_remote_resume(struct tp_remote *r);
/* Bytes waiting to be sent or in request bodies not yet answered (back-pressure). */
size_t tp_remote_queued(const struct tp_remote *r);
/* The transport in use ("streamable-http", "sse"; "auto" before it is settled) and the
 * session id (NULL when none). */
const char *tp_remote_kind_name(const struct tp_remote *r);
const char *tp_remote_session_id(const struct tp_remote *r);
/* Ends the session (DELETE for Streamable HTTP, best effort, bounded in time) and frees r; no
 * callback runs after this returns. */
void tp_remote_close(struct tp_remote *r);

#endif
