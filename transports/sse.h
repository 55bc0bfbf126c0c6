/* Server-Sent Events: encoding for our streams, decoding for upstream streams. */
#ifndef GW_TRANSPORTS_SSE_H
#define GW_TRANSPORTS_SSE_H

#include <stddef.h>

#include "core/buf.h"

/* Appends one event: optional "id:" and "event:" lines, the data split into "data:" lines at
 * every \n, \r\n or \r, then a blank line. id and event may be NULL. Returns 0, CORE_ETOOBIG
 * (out is unchanged) or CORE_EINVAL (id or event contains CR or LF). */
GW_MUST_CHECK int tp_sse_encode(struct core_buf *out, const char *id, const char *event,
                                const char *data, size_t n);
/* Appends a comment line ": text\n\n" (keep-alive); a text with line breaks becomes several
 * comment lines. Returns 0 or CORE_ETOOBIG (out is unchanged). */
GW_MUST_CHECK int tp_sse_comment(struct core_buf *out, const char *text);
/* Appends "retry: ms\n\n". Returns 0 or CORE_ETOOBIG. */
GW_MUST_CHECK int tp_sse_retry(struct core_buf *out, unsigned ms);

/* Receives one decoded event; the strings are borrowed for the call (event defaults to
 * "message"; id is NULL when the event had none; it is not carried over to later events, so
 * the caller keeps the last one it saw). data is NUL-terminated after n bytes. */
typedef void (*tp_sse_event_cb)(void *ctx, const char *event, const char *id, const char *data,
                                size_t n);

struct tp_sse_decoder {
    /* private: use the API */
    struct core_buf line;  /* partial line */
    struct core_buf data;  /* data lines of the current event, joined with \n */
    char event[64];
    char id[256];
    int has_id;
    int last_cr;           /* the previous chunk ended in \r */
    unsigned retry_ms;     /* last retry: value seen, 0 if none */
    char last_id[256];     /* the WHATWG "last event ID": set by any event with an id field,
                              dispatched or not (an id-only priming event counts) */
    int bom_done;          /* the first line (which may start with a BOM) has been seen */
    size_t max_line;       /* longest line accepted */
};

/* max_event bounds the data of one event (joined lines) and, plus 64, any single line;
 * 0 means 4 MiB. Decoding follows the WHATWG EventSource rules. */
void tp_sse_decoder_init(struct tp_sse_decoder *d, size_t max_event);
void tp_sse_decoder_dispose(struct tp_sse_decoder *d);
/* Feeds bytes in any split; calls cb for every complete event (cb must not feed or dispose the
 * decoder). Returns 0 or CORE_ETOOBIG (an event, a line, an event name over 63 bytes or an id
 * over 255 bytes); after an error the decoder must only be disposed. */
GW_MUST_CHECK int tp_sse_decoder_feed(struct tp_sse_decoder *d, const char *p, size_t n,
                                      tp_sse_event_cb cb, void *ctx);
/* The last event id the stream set (kept across events, also by events without data), or NULL
 * when none was set; what a reconnect sends as Last-Event-ID. */
const char *tp_sse_decoder_last_id(const struct tp_sse_decoder *d);
/* The last `retry:` value the stream sent, in milliseconds; 0 when it sent none. */
unsigned tp_sse_decoder_retry_ms(const struct tp_sse_decoder *d);

#endif
