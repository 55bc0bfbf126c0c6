/* The router: what a client's messages do, and what upstream messages become
 * (federation/router.c, names.c). */
#ifndef GW_FEDERATION_ROUTER_H
#define GW_FEDERATION_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/jsonrpc.h"
#include "federation/upstream.h"

struct fed_session;
struct fed_call;
struct fed_gateway;
struct fed_upstream;

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
int fed_mcp_level_index(const char *s);
const char *fed_mcp_level_name(int i);
/* Deferred initialize calls whose upstreams are settled (or whose wait ran out) are answered. */
void fed_router_check_deferred(struct fed_gateway *gw);
/* The session's cleanup in the router: subscriptions dropped, upstream log levels recomputed. */
void fed_router_session_ending(struct fed_session *s);
/* A session came back from its token: requests wait for starting upstreams, then its
 * subscriptions and log level are applied to them. */
void fed_router_session_restored(struct fed_session *s);
/* Sends the coalesced list_changed notifications of one session. */
void fed_router_flush_list_changed(struct fed_session *s);

/* From upstreams. */
void fed_router_upstream_message(struct fed_upstream *up, const char *frame, size_t n,
                                  const struct core_rpc_env *env);
void fed_router_upstream_ready(struct fed_upstream *up);
void fed_router_upstream_down(struct fed_upstream *up);
/* A list fetch finished: lists[l] now holds the new list; changed says if it differs. */
void fed_router_list_updated(struct fed_upstream *up, enum fed_list l, bool changed);

/* Closes every bridge connection of the gateway (shutdown). */
void fed_bridge_shutdown(struct fed_gateway *gw);


/* ---- names ------------------------------------------------------------------------------ */

/* Builds the exposed name for (prefix, name) into out (at least 65 bytes): prefix + "__" +
 * name, with characters outside [A-Za-z0-9_.-] replaced by '_' and, when longer than 64,
 * shortened with a stable 8-hex-digit hash of the original. Returns true when the result is
 * not simply prefix + "__" + name (so a reverse map entry is needed). */
bool fed_name_expose(const char *prefix, const char *name, char out[65]);


#endif
