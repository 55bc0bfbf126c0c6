/* libFuzzer target for the newline framer. The first input byte picks max_frame, the next
 * eight seed the read sizes; the rest is the stream. The stream is fed whole, at random splits
 * through the space/feed pair with a random max_frames, and the frames and the outcome must
 * match a plain reference implementation every time. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Frames as "<len>:<bytes>," so that two runs compare with one memcmp. */
struct frames {
    struct core_buf all;
    size_t count;
};

static void frames_add(struct frames *fr, const char *p, size_t n)
{
    CHECK(core_buf_appendf(&fr->all, "%zu:", n) == 0);
    CHECK(core_buf_append(&fr->all, p, n) == 0);
    CHECK(core_buf_append(&fr->all, ",", 1) == 0);
    fr->count++;
}

static void on_frame(void *ctx, const char *p, size_t n)
{
    CHECK(n > 0 && memchr(p, '\n', n) == NULL);
    frames_add(ctx, p, n);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* The rules written plainly: returns 0, or CORE_ETOOBIG after the frames before the first
 * long one (or before a too long unterminated tail). */
static int reference(const char *p, size_t n, size_t max_frame, struct frames *out)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        size_t len = i - start;
        if (len > 0 && p[start + len - 1] == '\r')
            len--;
        if (len > max_frame)
            return CORE_ETOOBIG;
        if (len > 0)
            frames_add(out, p + start, len);
        start = i + 1;
    }
    size_t tail = n - start;
    if (tail > max_frame + 1 || (tail == max_frame + 1 && p[n - 1] != '\r'))
        return CORE_ETOOBIG;
    return 0;
}

static void same(const struct frames *a, const struct frames *b)
{
    CHECK(a->count == b->count);
    CHECK(a->all.len == b->all.len);
    CHECK(a->all.len == 0 || memcmp(a->all.data, b->all.data, a->all.len) == 0);
}

static int feed_split(struct core_framer *f, const char *p, size_t n, uint64_t *rng,
                      struct frames *out)
{
    size_t max_frames = rnd(rng) % 4;
    size_t off = 0;
    while (off < n) {
        size_t got = 0;
        size_t want = 1 + rnd(rng) % (rnd(rng) % 2 ? 8 : 300);
        char *dst = core_framer_space(f, want, &got);
        CHECK(dst != NULL && got >= 1);
        size_t take = 1 + rnd(rng) % got;
        if (take > n - off)
            take = n - off;
        memcpy(dst, p + off, take);
        off += take;
        int rc = core_framer_feed(f, take, on_frame, out, max_frames);
        if (rc != 0)
            return rc;
        CHECK(f->in.len <= f->in.limit);
        if (max_frames == 0)
            continue;
        for (;;) {
            size_t before = out->count;
            rc = core_framer_feed(f, 0, on_frame, out, max_frames);
            if (rc != 0)
                return rc;
            CHECK(out->count - before <= max_frames);
            if (out->count == before)
                break;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    /* Mostly small limits, so that long frames are common; 0 means no limit. */
    size_t max_frame = data[0] < 250 ? data[0] % 64 + 1 : (data[0] == 250 ? 0 : 4096);
    uint64_t rng;
    memcpy(&rng, data + 1, 8);
    rng |= 1;
    const char *p = (const char *)data + 9;
    size_t n = size - 9;

    struct frames ref = {.count = 0};
    struct frames whole = {.count = 0};
    struct frames split = {.count = 0};
    struct core_framer f;
    core_buf_init(&ref.all, 0);
    core_buf_init(&whole.all, 0);
    core_buf_init(&split.all, 0);

    int want = reference(p, n, max_frame ? max_frame : SIZE_MAX / 4, &ref);

    core_framer_init(&f, max_frame);
    int rc = core_framer_push(&f, p, n, on_frame, &whole);
    CHECK(rc == want);
    same(&ref, &whole);
    if (rc == 0) {
        core_framer_trim(&f);
        CHECK((f.in.data == NULL) == (f.in.len == 0));
    }
    core_framer_dispose(&f);

    core_framer_init(&f, max_frame);
    rc = feed_split(&f, p, n, &rng, &split);
    CHECK(rc == want);
    same(&ref, &split);
    core_framer_dispose(&f);

    core_buf_dispose(&ref.all);
    core_buf_dispose(&whole.all);
    core_buf_dispose(&split.all);
    return 0;
}
