/* Newline framing over one growable buffer. Bytes arrive at the tail (libuv reads straight into
 * core_framer_space), frames are handed out in place, and the buffer is compacted once per
 * feed, after all complete frames went out. */
#include "core/frame.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Room offered beyond one maximal pending frame, so that a read of libuv's usual 64 KiB fits
 * even while a long frame is half in. */
#define READ_SLACK 65536

/* max_frame is clamped so that the buffer limit computed from it cannot overflow. */
#define MAX_FRAME_CAP (SIZE_MAX / 4)

void core_framer_init(struct core_framer *f, size_t max_frame)
{
    if (max_frame == 0 || max_frame > MAX_FRAME_CAP)
        max_frame = MAX_FRAME_CAP;
    /* The buffer holds at most one pending frame with its "\r\n" plus one read's worth of
     * bytes; complete frames are consumed by every feed unless max_frames holds them back. */
    core_buf_init(&f->in, max_frame + 2 + READ_SLACK);
    f->scanned = 0;
    f->max_frame = max_frame;
    f->broken = 0;
}

void core_framer_dispose(struct core_framer *f)
{
    core_buf_dispose(&f->in);
    f->scanned = 0;
}

char *core_framer_space(struct core_framer *f, size_t want, size_t *got)
{
    if (f->broken)
        return NULL;
    size_t room = f->in.limit - f->in.len;
    if (room == 0)
        return NULL;
    if (want == 0)
        want = 1;
    if (want > room)
        want = room;
    int rc = core_buf_reserve(&f->in, want);
    if (rc != 0)
        return NULL;
    *got = want;
    return f->in.data + f->in.len;
}

/* True when the pending bytes [cur, len), which hold no newline yet, are already too long
 * whatever follows: they pass max_frame even if the last one turns out to be the "\r" of a
 * "\r\n". */
static bool pending_too_long(const struct core_framer *f, size_t cur, size_t len)
{
    size_t n = len - cur;
    if (n <= f->max_frame)
        return false;
    return n > f->max_frame + 1 || f->in.data[len - 1] != '\r';
}

int core_framer_feed(struct core_framer *f, size_t n, core_frame_cb cb, void *ctx,
                     size_t max_frames)
{
    if (f->broken)
        return CORE_ETOOBIG;
    if (n > 0) {
        assert(f->in.data != NULL && n <= f->in.cap - f->in.len);
        f->in.len += n;
        f->in.data[f->in.len] = '\0';
    }

    char *data = f->in.data;
    size_t len = f->in.len;
    size_t cur = 0;          /* start of the first frame not yet delivered */
    size_t pos = f->scanned; /* where the newline search resumes; [cur, pos) holds no '\n' */
    size_t delivered = 0;
    int rc = 0;

    for (;;) {
        if (max_frames != 0 && delivered == max_frames)
            break;
        char *nl = len > pos ? memchr(data + pos, '\n', len - pos) : NULL;
        if (nl == NULL) {
            pos = len;
            if (pending_too_long(f, cur, len))
                rc = CORE_ETOOBIG;
            break;
        }
        size_t end = (size_t)(nl - data);
        size_t flen = end - cur;
        if (flen > 0 && data[cur + flen - 1] == '\r')
            flen--;
        if (flen > f->max_frame) {
            rc = CORE_ETOOBIG;
            break;
        }
        if (flen > 0) {
            cb(ctx, data + cur, flen);
            delivered++;
        }
        cur = end + 1;
        pos = cur;
    }

    if (rc != 0) {
        /* The rest of an oversized frame cannot be told from the frames after it without
         * buffering it, so the framer refuses everything from now on. */
        f->broken = 1;
        return rc;
    }
    /* Compact only when lines were consumed: core_buf_consume moves the remaining bytes even
     * for a zero count, which would make a long frame arriving in small reads quadratic. */
    if (cur > 0)
        core_buf_consume(&f->in, cur);
    f->scanned = pos - cur;
    return 0;
}

int core_framer_push(struct core_framer *f, const char *p, size_t n, core_frame_cb cb, void *ctx)
{
    if (f->broken)
        return CORE_ETOOBIG;
    if (n == 0)
        return core_framer_feed(f, 0, cb, ctx, 0);
    do {
        size_t got;
        char *dst = core_framer_space(f, n, &got);
        if (dst == NULL)
            return CORE_ETOOBIG;
        if (got > n)
            got = n;
        if (got > 0)
            memcpy(dst, p, got);
        int rc = core_framer_feed(f, got, cb, ctx, 0);
        if (rc != 0)
            return rc;
        p += got;
        n -= got;
    } while (n > 0);
    return 0;
}

void core_framer_trim(struct core_framer *f)
{
    if (f->in.len != 0)
        return;
    size_t limit = f->in.limit;
    core_buf_dispose(&f->in);
    core_buf_init(&f->in, limit);
    f->scanned = 0;
}
