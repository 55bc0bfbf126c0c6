/* MCP Streamable HTTP front (2024-11-05 ... 2025-11-25 clients) for the gateway. */
#ifndef GW_FEDERATION_MCP_HTTP_H
#define GW_FEDERATION_MCP_HTTP_H

struct fed_gateway;
struct tp_http_req;

/* Handles one HTTP request (any path: /mcp, /healthz; others get 404). Takes over answering
 * the request; the request may be answered later (streams). */
void fed_http_request(struct fed_gateway *gw, struct tp_http_req *req);

#endif
