/* Forwarding one downstream HTTP request to one upstream URL (LLM and A2A forwarding).
 *
 * A fed_fwd sends a request built by the caller through the gateway's hclient and streams the
 * upstream's answer back to the waiting downstream request (tp_http_req): status, the upstream's
 * response headers minus hop-by-hop, length, encoding and cookie headers, then the body as
 * chunks. Back-pressure: when the client's connection holds more than high_water bytes not yet
 * written, the upstream transfer is paused until it drains. The client going away aborts the
 * upstream transfer at once. Nothing of the downstream request is copied upstream: the caller
 * builds every upstream header (so a client's Authorization never travels by accident). */
#ifndef GW_FEDERATION_FWD_H
#define GW_FEDERATION_FWD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "transports/hclient.h"
#include "transports/http.h"

struct fed_fwd;

enum fed_fwd_verdict {
    FED_FWD_PASS = 0, /* answer the client with this upstream response */
    FED_FWD_RETRY,    /* drop this attempt: the transfer is aborted and on_end gets the request
                       * back (FED_FWD_ERETRY) with nothing sent, for failover */
    FED_FWD_BUFFER,   /* like PASS, but read the whole body (at most opts.up.max_body) first:
                       * filter sees it once with last = true, and the answer goes out with a
                       * Content-Length (e.g. to parse and rewrite a non-streamed JSON reply) */
};

/* err of on_end besides 0 and the CORE_E* / hclient codes: the attempt was given up by on_head. */
#define FED_FWD_ERETRY (-20001)

struct fed_fwd_cbs {
    /* The upstream's status and headers, before anything went to the client. Returns a
     * fed_fwd_verdict. *extra may be set to headers (borrowed until on_end) added to the answer,
     * e.g. a Content-Type when the body is translated. NULL = FED_FWD_PASS. */
    int (*on_head)(void *ctx, struct fed_fwd *f, int status, const struct tp_hheaders *h,
                   const struct tp_http_header **extra, size_t *n_extra);
    /* Body bytes from the upstream (decoded). Append what goes to the client to out (which is
     * empty on entry); last is true once, after the final bytes (n may be 0 then). Returns 0, or
     * a non-zero code that ends the forwarding (the client's stream is cut; on_end gets it).
     * NULL = bytes pass unchanged. */
    int (*filter)(void *ctx, struct fed_fwd *f, const char *p, size_t n, bool last,
                  struct core_buf *out);
    /* The upstream failed (err, why) after the answer to the client had started: append the
     * last bytes the client gets (an error event in its API's shape) to out; the stream is then
     * ended. NULL = none. Not called when the client is gone. */
    void (*tail)(void *ctx, struct fed_fwd *f, int err, const char *why, struct core_buf *out);
    /* Exactly once, from the loop (never inside fed_fwd_start), after which f is gone.
     * err 0: the upstream answer was complete and the client has all of it.
     * Otherwise why says what happened (one line, no secrets). req is non-NULL when nothing has
     * been sent to the client and its request is still waiting: the caller owns it again and must
     * answer it (an error in its API's shape) or forward it again (failover). req is NULL when the
     * client has gone away or bytes already went out (the stream was ended early then).
     * sent is true when the status line went to the client. */
    void (*on_end)(void *ctx, struct fed_fwd *f, int err, const char *why, struct tp_http_req *req,
                   bool sent);
};

struct fed_fwd_opts {
    struct tp_hreq_opts up; /* the upstream request, built by the caller (method, url, headers,
                             * body, ca_file, deadlines, max_body); stream_body must be false */
    size_t high_water;      /* client bytes queued before the upstream is paused; 0 = 256 KiB */
};

/* Starts forwarding req (which the caller must not answer while f lives). Returns 0 with *out
 * set, or a CORE_E* code with nothing started (the caller still owns req). req's close callback
 * is taken over by f. */
int fed_fwd_start(struct tp_hclient *hc, struct tp_http_req *req, const struct fed_fwd_opts *o,
                  const struct fed_fwd_cbs *cbs, void *ctx, struct fed_fwd **out);

/* Ends the forwarding now (the upstream transfer is aborted, the client's stream ended or, when
 * nothing was sent, the request handed back in on_end, which follows from the loop). */
void fed_fwd_abort(struct fed_fwd *f);

/* The upstream status (0 before on_head). */
int fed_fwd_status(const struct fed_fwd *f);
/* Body bytes sent to the client so far (after the filter). */
size_t fed_fwd_sent_bytes(const struct fed_fwd *f);

/* True for a request header a forwarder must never copy upstream: hop-by-hop ones (Connection,
 * Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade), Host, Content-Length, and the
 * client's credentials (Authorization, x-api-key, api-key, Cookie). Case-insensitive. */
bool fed_fwd_header_is_private(const char *name);

#endif
