/* Newline-delimited framing (MCP stdio and the bridge's byte stream). */
#ifndef GW_CORE_FRAME_H
#define GW_CORE_FRAME_H

#include <stddef.h>

#include "core/buf.h"

/* Receives one frame, without its trailing "\n" (a trailing "\r" is also dropped).
 * The bytes are borrowed and valid only during the call. Empty lines are skipped.
 * The callback must not feed, push, trim or dispose the framer that calls it. */
typedef void (*core_frame_cb)(void *ctx, const char *p, size_t n);

struct core_framer {
    /* private: use the API */
    struct core_buf in; /* unconsumed bytes */
    size_t scanned;     /* bytes of `in` already known to hold no newline */
    size_t max_frame;   /* longest frame accepted, without the newline */
    int broken;         /* set once a frame was too long; the framer then refuses input */
};

/* max_frame 0 means no practical limit. The buffer's hard limit is one maximal frame plus
 * 64 KiB of read space. */
void core_framer_init(struct core_framer *f, size_t max_frame);
void core_framer_dispose(struct core_framer *f);
/* Space for libuv's alloc_cb: returns a pointer to at least `want` (or what the limit allows,
 * at least 1 byte) free bytes at the tail and writes their count, or NULL once the framer is
 * broken (a frame exceeded max_frame). Frames held back by max_frames count against the limit,
 * so a reader that keeps reading without draining gets ever smaller reads. */
char *core_framer_space(struct core_framer *f, size_t want, size_t *got);
/* Accounts n bytes written into the space and delivers every complete frame to cb, at most
 * `max_frames` of them (0 = no limit); the rest stays buffered for a later call, and
 * core_framer_feed(f, 0, ...) delivers it without new bytes.
 * Returns 0, or CORE_ETOOBIG when a frame (complete or pending) is longer than max_frame; the
 * framer is then broken and refuses all further input with CORE_ETOOBIG. */
GW_MUST_CHECK int core_framer_feed(struct core_framer *f, size_t n, core_frame_cb cb, void *ctx,
                                   size_t max_frames);
/* Copies bytes in and feeds them (for tests and non-libuv callers). Same returns as feed. */
GW_MUST_CHECK int core_framer_push(struct core_framer *f, const char *p, size_t n, core_frame_cb cb,
                                   void *ctx);
/* Idle framers hold no buffer: frees the storage when no partial frame is pending. */
void core_framer_trim(struct core_framer *f);

#endif
