/* The outbound HTTP client: one libcurl multi handle driven by the libuv loop, for everything
 * remote (MCP upstreams, OAuth, LLM and A2A forwarding). Transfers stream both ways, pause for
 * back-pressure, abort at once, and carry their own deadlines. curl types stay in hclient.c. */
#ifndef GW_TRANSPORTS_HCLIENT_H
#define GW_TRANSPORTS_HCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"

struct tp_hclient;
struct tp_hreq;

/* One client per loop. Connections are reused between transfers; HTTP/2 is used when the
 * server offers it (ALPN over TLS), with transfers to one origin multiplexed on one connection.
 * The user's http_proxy / https_proxy / no_proxy environment is honoured, except that
 * localhost, 127.0.0.1 and ::1 are always reached directly. Returns 0 or an error code. */
GW_MUST_CHECK int tp_hclient_new(uv_loop_t *loop, struct tp_hclient **out);
/* Aborts every transfer (their on_done runs with CORE_ECLOSED, before this returns, or when
 * called from inside a callback, as soon as that callback has returned), then frees the client
 * once its libuv handles have closed; done (may be NULL) runs then, from the loop. New
 * transfers are refused with CORE_ECLOSED from the moment of the call. */
void tp_hclient_close(struct tp_hclient *c, void (*done)(void *ctx), void *ctx);
/* Transfers in flight (tests, status). */
size_t tp_hclient_active(const struct tp_hclient *c);
/* The loop the client runs on (for users that need timers of their own, like tp_remote). */
uv_loop_t *tp_hclient_loop(const struct tp_hclient *c);

/* Received response headers, borrowed for the call they are passed to. */
struct tp_hheaders;
/* The value of a header (name case-insensitive), or NULL. With several, the last one. */
const char *tp_hheaders_get(const struct tp_hheaders *h, const char *name);
/* Calls cb for each header in order; cb returns non-zero to stop. */
void tp_hheaders_each(const struct tp_hheaders *h,
                      int (*cb)(void *ctx, const char *name, const char *value), void *ctx);

/* Returned by on_data to pause the transfer until tp_hreq_resume (the bytes passed in were
 * consumed). */
#define TP_HREQ_PAUSE 1

struct tp_hreq_cbs {
    /* The final response's status line and headers (not 1xx, not a followed redirect's). Called
     * once, before any on_data. May abort. */
    void (*on_headers)(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h);
    /* Response body bytes as they arrive (chunked/compressed encodings already removed). Returns
     * 0 or TP_HREQ_PAUSE. May abort. */
    int (*on_data)(void *ctx, struct tp_hreq *r, const char *p, size_t n);
    /* Streaming upload (opts.stream_body): the body has room for more; call tp_hreq_send. May
     * be NULL. */
    void (*on_writable)(void *ctx, struct tp_hreq *r);
    /* The transfer ended: err 0 (the whole response arrived, whatever its status; status as
     * on_headers) or an error code with a one-line reason that names the peer:
     *   UV_ECONNREFUSED and other -errno codes  connect failed ("connect to HOST:PORT failed:
     *                                           Connection refused")
     *   UV_EAI_NONAME     the host name does not resolve
     *   CORE_ETIMEDOUT    connect timeout, deadline_ms or idle_timeout_ms
     *   CORE_ETOOBIG      body over max_body, or response headers over 64 KiB
     *   CORE_EPROTO       TLS handshake or certificate verification failed, or the response
     *                     is not valid HTTP
     *   CORE_ECLOSED      the server closed the connection early, or tp_hclient_close
     *   CORE_EINVAL       ca_file unusable
     * Always the last callback unless the request was aborted; r is freed after it returns.
     * on_headers may not have run (an error before the response). */
    void (*on_done)(void *ctx, struct tp_hreq *r, int err, const char *why);
};

struct tp_hreq_opts {
    const char *method; /* "GET", "POST", "DELETE" ...; NULL = GET */
    const char *url;    /* http:// or https:// */
    /* "Name: value" strings, NULL-terminated; copied. May be NULL. */
    const char *const *headers;
    /* A request body, copied (with method POST unless set). Ignored with stream_body. */
    const char *body;
    size_t body_len;
    /* The body is supplied later with tp_hreq_send / tp_hreq_send_end (chunked on HTTP/1.1). */
    bool stream_body;
    /* PEM file of trusted CAs instead of the system store (a private CA). Verification of peer
     * and host name is always on. */
    const char *ca_file;
    uint64_t connect_timeout_ms; /* 0 = 10 s */
    /* The whole transfer must end within this; 0 = no limit (streams). */
    uint64_t deadline_ms;
    /* Fails the transfer when no byte moved for this long (a stalled stream; it counts from
     * the start, connecting included); 0 = never. Time paused by the caller (delivery paused,
     * or a streamed upload waiting for tp_hreq_send) does not count. */
    uint64_t idle_timeout_ms;
    /* Response body bytes beyond this fail the transfer with CORE_ETOOBIG; 0 = no limit. */
    size_t max_body;
    /* Redirects followed (0 = none). Only to the same scheme, host and port: a redirect to
     * another origin ends the transfer with its 3xx status and Location, so credentials in
     * headers never travel elsewhere. */
    unsigned max_redirects;
};

/* Starts a transfer. On success *out is the request, valid until on_done returns or
 * tp_hreq_abort; callbacks run from the loop, never from inside this call. Returns 0 or an
 * error code (bad URL, out of memory, client closing) and then no callback runs. */
GW_MUST_CHECK int tp_hreq_start(struct tp_hclient *c, const struct tp_hreq_opts *opts,
                                const struct tp_hreq_cbs *cbs, void *ctx, struct tp_hreq **out);
/* Stops the transfer at once and frees it; no callback runs after this returns (it may be
 * called from inside any callback of r or of another request). An unfinished transfer's
 * connection is closed, so the server sees the client go away; on HTTP/2, when other transfers
 * share the connection, only the stream is reset (RST_STREAM, sent with their traffic). Does
 * nothing once on_done has been called. */
void tp_hreq_abort(struct tp_hreq *r);
/* Pauses / resumes delivery of the response body (back-pressure). While paused curl stops
 * reading (on HTTP/2 the stream's window closes) and holds what it had already read: one read
 * buffer, decoded (curl caps that at 64 MiB for a compressed body). Delivery starts again from
 * the loop, never inside tp_hreq_resume. */
void tp_hreq_pause(struct tp_hreq *r);
void tp_hreq_resume(struct tp_hreq *r);
/* Streaming upload: appends bytes to the request body (copied). Returns 0, CORE_EINVAL (not a
 * stream_body request or already ended) or CORE_ECLOSED. */
GW_MUST_CHECK int tp_hreq_send(struct tp_hreq *r, const char *p, size_t n);
/* Bytes given to tp_hreq_send and not yet taken by curl (back-pressure for uploads). */
size_t tp_hreq_send_queued(const struct tp_hreq *r);
/* Ends the streamed request body. */
void tp_hreq_send_end(struct tp_hreq *r);
/* The response status (0 before headers), and the effective URL after redirects. */
int tp_hreq_status(const struct tp_hreq *r);
const char *tp_hreq_url(const struct tp_hreq *r);

#endif
