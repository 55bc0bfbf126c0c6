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

/* Reload and approve are federation/control.h. */

#endif
