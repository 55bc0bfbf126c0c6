/* The bridge front: a downstream session over a newline-delimited JSON-RPC byte stream (the
 * stdio framing) on the daemon's Unix socket, after a one-line hello. */
#ifndef GW_FEDERATION_BRIDGE_FRONT_H
#define GW_FEDERATION_BRIDGE_FRONT_H

#include <stddef.h>

struct fed_gateway;

/* Takes over a connected stream socket (fd, owned from now on) whose first bytes, already read,
 * are initial[0..n) (the hello line and possibly more). */
void fed_bridge_accept(struct fed_gateway *gw, int fd, const char *initial, size_t n);

#endif
