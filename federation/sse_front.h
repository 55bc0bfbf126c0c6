/* The legacy HTTP+SSE front (2024-11-05): GET /sse opens a session's event stream whose first
 * event names the POST endpoint (/message?sessionId=...); every server message, responses
 * included, goes out on that stream. */
#ifndef GW_FEDERATION_SSE_FRONT_H
#define GW_FEDERATION_SSE_FRONT_H

struct fed_gateway;
struct tp_http_req;

/* Handles GET /sse and POST /message (Host/Origin already checked by the caller). */
struct core_client_cfg;
/* client: the identity the request proved (NULL = anonymous). */
void fed_sse_request(struct fed_gateway *gw, struct tp_http_req *req,
                     const struct core_client_cfg *client);

#endif
