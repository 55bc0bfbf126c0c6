/* The daemon's control side (federation/control.c): reload and approve, reached through SIGHUP
 * (cmd/serve.c) and through the control endpoints POST /agentgate/reload and
 * /agentgate/approve on the Unix socket (`agentgate reload`, `agentgate approve`). */
#ifndef GW_FEDERATION_CONTROL_H
#define GW_FEDERATION_CONTROL_H

#include <stddef.h>

struct fed_gateway;
struct tp_http_req;

/* Re-reads the config file (and the session keys and pins): added servers start, removed ones
 * stop, changed ones restart, client policies apply to live sessions at once. On success
 * returns 0 and a summary in msg; on error returns non-zero, the running config stays and msg
 * holds the one-line reason ("FILE:LINE: ..."). */
int fed_gateway_reload(struct fed_gateway *gw, char *msg, size_t cap);
/* Accepts the changed definitions of a server's tools (tool NULL = all of them). Returns 0 and
 * the count in *n, or non-zero with a message. */
int fed_gateway_approve(struct fed_gateway *gw, const char *server, const char *tool, int *n,
                        char *msg, size_t cap);
/* `agentgate login` / `logout` changed the stored OAuth credentials of server (POST
 * /agentgate/credentials {"server": NAME}). Today it only logs and answers ok; the remote
 * upstream wiring hooks in here: auth_oauth_reload() on the gateway's auth_oauth, then
 * reconnect that server if it waits for a login (or drop its session after a logout). Returns
 * 0 with a message in msg, or non-zero (no such server) with the reason. */
int fed_gateway_credentials_changed(struct fed_gateway *gw, const char *server, char *msg,
                                    size_t cap);
/* Answers a request for /agentgate/... (the HTTP front routes them here): GET status, POST
 * reload and approve, for a Unix-socket peer of our own uid only (403 otherwise; 405 for
 * another method, 404 for another path). */
void fed_control_request(struct fed_gateway *gw, struct tp_http_req *req);

#endif
