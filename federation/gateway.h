/* The federating gateway: upstream supervisor, downstream sessions and the router.
 * Transport-independent: fronts (Streamable HTTP, later the bridge and legacy SSE) feed it
 * messages through federation/mcp_http.h and the fed_session/fed_call channel API. */
#ifndef GW_FEDERATION_GATEWAY_H
#define GW_FEDERATION_GATEWAY_H

#include <stdbool.h>
#include <uv.h>

#include "core/config.h"
#include "core/err.h"

struct fed_gateway;

struct fed_gateway_opts {
    const char *self_exe;  /* our binary, for the child pre-exec trampoline; may be NULL */
    const char *state_dir; /* logs go to <state_dir>/logs/<server>.log; may be NULL */
    const char *bearer;    /* HTTP requests must carry Authorization: Bearer this; NULL = none */
    const char *auth;      /* "none" or "token": overrides the config's auth (also on reload) */
};

/* Creates the gateway for cfg (taken: the gateway frees it, or the config a reload puts in its
 * place). Nothing starts until fed_gateway_start. */
struct fed_gateway *fed_gateway_new(uv_loop_t *loop, struct core_config *cfg,
                                    const struct fed_gateway_opts *opts);
/* Starts every shared upstream. */
void fed_gateway_start(struct fed_gateway *gw);
/* Fails every in-flight request with a JSON-RPC error, ends every session, stops every
 * child (stdin close, grace, SIGTERM, grace, SIGKILL) and frees the gateway; `done` fires
 * once everything is closed. */
void fed_gateway_shutdown(struct fed_gateway *gw, void (*done)(void *ctx), void *ctx);

/* Re-reads the config file (and the session keys and pins): added servers start, removed ones
 * stop, changed ones restart, client policies apply to live sessions at once. On success
 * returns 0 and a summary in msg; on error returns non-zero, the running config stays and msg
 * holds the one-line reason ("FILE:LINE: ..."). */
int fed_gateway_reload(struct fed_gateway *gw, char *msg, size_t cap);
/* Accepts the changed definitions of a server's tools (tool NULL = all of them). Returns 0 and
 * the count in *n, or non-zero with a message. */
int fed_gateway_approve(struct fed_gateway *gw, const char *server, const char *tool, int *n,
                        char *msg, size_t cap);

#endif
