/* The wire contract between `agentgate bridge` (bridge/bridge.c) and the daemon's bridge front
 * (federation/bridge_front.c) on the daemon's Unix socket, which also serves HTTP
 * (transports/http.c tells the two apart by the first byte). Both ends and the sniff use these
 * constants and nothing else; change them together, and bump the version for an incompatible
 * change.
 *
 *   bridge -> daemon  {"agentgate-bridge":1,"client":"NAME"}\n   (one line, at most
 *                     TP_BRIDGE_HELLO_MAX bytes), then newline-delimited JSON-RPC both ways
 *   daemon -> bridge  on refusal: {"jsonrpc":"2.0","id":null,"error":{"code":-32001,
 *                     "message":"agentgate: refused: WHY"}}, then the socket closes */
#ifndef GW_TRANSPORTS_BRIDGE_HELLO_H
#define GW_TRANSPORTS_BRIDGE_HELLO_H

/* The first byte of the hello. No HTTP method starts with it, so a Unix-socket connection whose
 * first byte is this one is handed to the bridge front instead of the HTTP parser. */
#define TP_BRIDGE_SNIFF '{'
/* The hello's members: the protocol key with its version, and the client name the bridge was
 * started with (--client; "" for none). */
#define TP_BRIDGE_HELLO_KEY "agentgate-bridge"
#define TP_BRIDGE_HELLO_VERSION 1
#define TP_BRIDGE_HELLO_CLIENT "client"
/* The longest hello line the daemon parses. */
#define TP_BRIDGE_HELLO_MAX 1024
/* The refusal: its JSON-RPC error code and the start of its message. The bridge tells a refusal
 * (exit, do not retry) from other errors by these. */
#define TP_BRIDGE_REFUSED_CODE (-32001)
#define TP_BRIDGE_REFUSED "agentgate: refused"

#endif
