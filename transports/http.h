/* HTTP/1.1 server on TCP and Unix sockets (requests parsed with Debian's libhttp-parser).
 * It knows nothing about MCP: it hands complete requests (headers + body) to one callback and
 * lets the caller answer with a whole response or a chunked stream (used for SSE). */
#ifndef GW_TRANSPORTS_HTTP_H
#define GW_TRANSPORTS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/err.h"

struct tp_http_server;
struct tp_http_req;

/* Zero in any field but idle_ms takes its default. */
struct tp_http_limits {
    size_t max_body;   /* longer bodies get 413 and the connection is closed; default 4 MiB */
    size_t max_header; /* request line + headers as received, every byte (blanks, line ends and
                        * folding included); more gets 431; default 16 KiB */
    uint64_t idle_ms;  /* a connection with no request in progress is closed after this, and so
                        * is one whose request body stops arriving for this long; 0 = never */
    uint64_t header_timeout_ms;  /* the request line and headers must be complete this long after
                                  * the request's first byte (later bytes do not extend it), else
                                  * 408 and close; default 10000 */
    uint64_t request_timeout_ms; /* the same for the whole request, body included; default 60000 */
    unsigned max_conns;      /* TCP connections open at once; a new one past it is closed at once
                              * (unless an untrusted one can make room); default 512 */
    unsigned max_untrusted;  /* TCP connections not trusted yet (tp_http_req_set_trusted); a new
                              * one past it closes the oldest untrusted one; default 64 */
    unsigned max_unix_conns; /* Unix-socket connections, a budget of their own that TCP never
                              * uses; a new one past it is closed at once; default 256 */
};

struct tp_http_header {
    const char *name;
    const char *value;
};

/* Called once per complete request. The request is borrowed until it is answered with
 * tp_http_respond / tp_http_stream_end, or until its close callback fires. A connection has
 * one request at a time: pipelined requests wait until the previous answer has been written.
 * The callback may answer at once (from inside the callback) or later. */
typedef void (*tp_http_request_cb)(void *ctx, struct tp_http_req *req);
/* Fired when the connection goes away before the request was answered completely (client
 * disconnect, write error, server close). It fires at most once, always from the loop (never
 * inside a tp_http_* call), and never after tp_http_respond / tp_http_stream_end returned,
 * even with CORE_ECLOSED. The request's accessors still work inside the callback; the
 * request is invalid after the callback returns. */
typedef void (*tp_http_close_cb)(void *ud, struct tp_http_req *req);
/* Receives a Unix-socket connection that does not speak HTTP (its first byte is '{'): fd is a
 * connected stream socket now owned by the callee, initial[0..n) the bytes already read from it
 * (borrowed for the call). */
typedef void (*tp_http_raw_cb)(void *ctx, int fd, const char *initial, size_t n);

/* Creates a server; nothing listens until tp_http_server_listen_*. limits may be NULL (then
 * every default, and idle_ms 60000). Slow clients are bounded by the header and request
 * deadlines and the connection caps (see struct tp_http_limits); connections refused or closed
 * at a cap are logged in summaries, at most one line a minute. Connections adopted with
 * tp_http_server_adopt_fd count towards the caps but are never refused. All calls on a server
 * and its requests must come from the loop's thread. If SIGPIPE still has its default action
 * it is set to ignored (a peer closing during a write must not kill us). */
struct tp_http_server *tp_http_server_new(uv_loop_t *loop, const struct tp_http_limits *limits,
                                          tp_http_request_cb cb, void *ctx);
/* Binds and listens on host:port (host is a numeric IPv4/IPv6 address; port 0 picks one).
 * Returns 0 or a UV_E* code. */
GW_MUST_CHECK int tp_http_server_listen_tcp(struct tp_http_server *srv, const char *host, int port);
/* The TCP port actually bound, or -1. */
int tp_http_server_port(const struct tp_http_server *srv);
/* Binds a Unix socket at path with mode 0600 (a stale socket file with no listener is replaced;
 * a live one gives UV_EADDRINUSE). The parent directory must exist. Returns 0 or UV_E*. */
GW_MUST_CHECK int tp_http_server_listen_unix(struct tp_http_server *srv, const char *path);
/* Serves an already connected stream socket (TCP or Unix, e.g. one end of a socketpair) as
 * a connection of this server. Takes ownership of fd, also on failure. Returns 0 or UV_E*. */
GW_MUST_CHECK int tp_http_server_adopt_fd(struct tp_http_server *srv, int fd);
/* Serves every TCP connection accepted or adopted from now on with TLS (mbedTLS, TLS 1.2+);
 * the Unix socket stays plain. cert_pem_path holds the PEM certificate chain (server
 * certificate first), key_pem_path its unencrypted PEM private key; both are read now. Call it
 * before the server has connections. Returns 0, or CORE_EINVAL with a message in err[0..errlen)
 * (unreadable or unparsable file, key not matching the certificate, connections exist). */
GW_MUST_CHECK int tp_http_server_set_tls(struct tp_http_server *srv, const char *cert_pem_path,
                                         const char *key_pem_path, char *err, size_t errlen);
/* Routes non-HTTP Unix-socket connections to cb (see tp_http_raw_cb); without it they get 400. */
void tp_http_server_set_raw_cb(struct tp_http_server *srv, tp_http_raw_cb cb, void *ctx);
/* Stops accepting new connections (existing ones go on); a Unix socket file is unlinked. */
void tp_http_server_stop_accepting(struct tp_http_server *srv);
/* Closes every connection (pending requests get their close callback), unlinks the Unix
 * socket, and frees the server; `done` (may be NULL) fires once every handle has closed. */
void tp_http_server_close(struct tp_http_server *srv, void (*done)(void *ctx), void *ctx);

/* Request accessors: the strings are NUL-terminated and borrowed from the request. */
const char *tp_http_req_method(const struct tp_http_req *req);
/* The path without the query string, e.g. "/mcp". */
const char *tp_http_req_path(const struct tp_http_req *req);
/* The query string without "?", or "" */
const char *tp_http_req_query(const struct tp_http_req *req);
/* Case-insensitive header lookup; the first occurrence, or NULL. */
const char *tp_http_req_header(const struct tp_http_req *req, const char *name);
const char *tp_http_req_body(const struct tp_http_req *req, size_t *len);
/* True when the request came in on the Unix socket. */
bool tp_http_req_is_unix(const struct tp_http_req *req);
/* Unix socket: writes the peer's uid (SO_PEERCRED, taken at accept) and returns true; false on
 * TCP or when the kernel did not tell. */
bool tp_http_req_peer_uid(const struct tp_http_req *req, uid_t *uid);
/* A short id of the connection for logs ("c12"). */
const char *tp_http_req_conn_name(const struct tp_http_req *req);

void tp_http_req_set_close_cb(struct tp_http_req *req, tp_http_close_cb cb, void *ud);
/* Back-pressure for a streamed answer: fired once, from the loop (a write completing), the first
 * time the connection's queued output (tp_http_req_queued) is at most `low` after this call,
 * while the answer is still streaming; then disarmed. Arm it when tp_http_req_queued is above
 * `low` (it does not fire for what is already below). cb NULL disarms. */
typedef void (*tp_http_drain_cb)(void *ud, struct tp_http_req *req);
void tp_http_req_set_drain_cb(struct tp_http_req *req, tp_http_drain_cb cb, void *ud, size_t low);
/* Marks the request's connection as trusted for the rest of its life (call it once the request
 * has been authenticated): it no longer counts towards max_untrusted and is never closed to
 * make room for a new connection. Unix-socket connections have no untrusted budget; for them
 * this does nothing. */
void tp_http_req_set_trusted(struct tp_http_req *req);

/* Answers with a whole response. Content-Length is added from the body; the body buffers are
 * copied before return (header values may point into the request). Content-Length,
 * Transfer-Encoding and Connection headers of the caller are dropped ("Connection: close" is
 * honoured), and so are headers with CR/LF. The request is finished and invalid after the
 * call. Returns 0 or CORE_ECLOSED (the connection is gone; the request was still released
 * and its close callback will not fire). */
int tp_http_respond(struct tp_http_req *req, int status, const struct tp_http_header *hdrs,
                    size_t n_hdrs, const uv_buf_t *body, unsigned n_body);
/* Convenience: respond with a small text or JSON body. */
int tp_http_respond_simple(struct tp_http_req *req, int status, const char *content_type,
                           const char *body);
/* Starts a chunked response (for SSE). The request stays valid until tp_http_stream_end or
 * its close callback (which still fires when this returns CORE_ECLOSED). An HTTP/1.0 client
 * gets the body unframed and the connection closes at the end. Returns 0 or CORE_ECLOSED. */
int tp_http_stream_start(struct tp_http_req *req, int status, const struct tp_http_header *hdrs,
                         size_t n_hdrs);
/* Writes the buffers as one chunk (copied before return). While earlier writes of the
 * connection are still on their way, chunks are gathered into one block that follows them, so
 * a stalled reader costs about the bytes of its chunks. Returns 0 or CORE_ECLOSED. */
int tp_http_stream_write(struct tp_http_req *req, const uv_buf_t *bufs, unsigned n);
/* Ends the chunked response; the request is invalid afterwards. */
void tp_http_stream_end(struct tp_http_req *req);
/* Memory held for the connection's output that the socket has not taken yet (for
 * back-pressure): the capacity plus header of every write block from the moment it is queued
 * until libuv reports it written, the gathering block of streamed chunks included, and on TLS
 * the ciphertext blocks. It is never less than the payload bytes waiting, and a stalled
 * stream of small chunks costs about their bytes. Still valid in the close callback. */
size_t tp_http_req_queued(const struct tp_http_req *req);
/* The same, summed over every connection of the request's server (a running total, O(1)). */
size_t tp_http_req_server_queued(const struct tp_http_req *req);

#endif
