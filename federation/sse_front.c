/* Placeholder until the legacy SSE front lands. */
#include "federation/sse_front.h"

#include "transports/http.h"

void fed_sse_request(struct fed_gateway *gw, struct tp_http_req *req)
{
    (void)gw;
    (void)tp_http_respond_simple(req, 404, "text/plain", "legacy SSE is not built yet\n");
}
