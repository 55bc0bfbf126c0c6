/* Tests for the newline framer (core/frame.c). */
#include "core/frame.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

static long live_at_start;

static void setup(void)
{
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Collects delivered frames as "<len>:<bytes>," so two sequences compare with one memcmp. */
struct frames {
    struct core_buf all;
    size_t count;
};

static void frames_init(struct frames *fr)
{
    core_buf_init(&fr->all, 0);
    fr->count = 0;
}

static void frames_dispose(struct frames *fr)
{
    core_buf_dispose(&fr->all);
}

static void frames_add(struct frames *fr, const char *p, size_t n)
{
    ck_assert_int_eq(core_buf_appendf(&fr->all, "%zu:", n), 0);
    ck_assert_int_eq(core_buf_append(&fr->all, p, n), 0);
    ck_assert_int_eq(core_buf_append(&fr->all, ",", 1), 0);
    fr->count++;
}

static void on_frame(void *ctx, const char *p, size_t n)
{
    ck_assert_uint_gt(n, 0);
    ck_assert_ptr_null(memchr(p, '\n', n));
    frames_add(ctx, p, n);
}

static void assert_same(const struct frames *a, const struct frames *b)
{
    ck_assert_uint_eq(a->count, b->count);
    ck_assert_uint_eq(a->all.len, b->all.len);
    ck_assert(a->all.len == 0 || memcmp(a->all.data, b->all.data, a->all.len) == 0);
}

static void assert_frames(const struct frames *fr, const char *want)
{
    size_t n = strlen(want);
    ck_assert_msg(fr->all.len == n && (n == 0 || memcmp(fr->all.data, want, n) == 0),
                  "got \"%s\", want \"%s\"", fr->all.data ? fr->all.data : "", want);
}

/* xorshift64*: a fixed seed makes every failure reproducible. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* The framing rules written the obvious way, as the reference for the real framer. */
static void reference_frames(const char *p, size_t n, struct frames *out)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        size_t len = i - start;
        if (len > 0 && p[start + len - 1] == '\r')
            len--;
        if (len > 0)
            frames_add(out, p + start, len);
        start = i + 1;
    }
}

/* Builds a stream of random frames, none longer than max_frame, with "\n" and "\r\n" ends,
 * empty lines, stray "\r" bytes and binary content. */
static char *make_stream(uint64_t *rng, size_t frames, size_t max_frame, size_t *len)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    for (size_t k = 0; k < frames; k++) {
        size_t flen;
        switch (rnd(rng) % 8) {
        case 0:
            flen = 0;
            break;
        case 1:
            flen = max_frame;
            break;
        case 2:
            flen = rnd(rng) % (max_frame + 1);
            break;
        default:
            flen = 1 + rnd(rng) % 40;
            break;
        }
        for (size_t i = 0; i < flen; i++) {
            char c = (char)(rnd(rng) % 256);
            if (c == '\n')
                c = 'n';
            ck_assert_int_eq(core_buf_append(&b, &c, 1), 0);
        }
        const char *end = rnd(rng) % 3 == 0 ? "\r\n" : "\n";
        ck_assert_int_eq(core_buf_append_str(&b, end), 0);
    }
    return core_buf_take(&b, len);
}

/* Feeds p through the space/feed pair the way libuv's alloc_cb and read_cb would, with reads
 * of random sizes; with max_frames set, drains with zero-byte feeds after each read. */
static void feed_split(struct core_framer *f, const char *p, size_t n, uint64_t *rng,
                       struct frames *out, size_t max_frames)
{
    size_t off = 0;
    while (off < n) {
        size_t want = rnd(rng) % 4 == 0 ? 65536 : 1 + rnd(rng) % 64;
        size_t got = 0;
        char *dst = core_framer_space(f, want, &got);
        ck_assert_ptr_nonnull(dst);
        ck_assert_uint_ge(got, 1);
        size_t take = 1 + rnd(rng) % got;
        if (take > n - off)
            take = n - off;
        memcpy(dst, p + off, take);
        off += take;
        ck_assert_int_eq(core_framer_feed(f, take, on_frame, out, max_frames), 0);
        if (max_frames == 0)
            continue;
        for (;;) {
            size_t before = out->count;
            ck_assert_int_eq(core_framer_feed(f, 0, on_frame, out, max_frames), 0);
            ck_assert_uint_le(out->count - before, max_frames);
            if (out->count == before)
                break;
        }
    }
}

START_TEST(test_splits_agree)
{
    const size_t max_frame = 300;
    uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);

    for (int iter = 0; iter < 200; iter++) {
        size_t n;
        char *s = make_stream(&rng, 1 + rnd(&rng) % 60, max_frame, &n);
        struct frames ref;
        struct frames whole;
        struct frames bytes;
        struct frames split;
        struct frames limited;
        struct core_framer f;

        frames_init(&ref);
        reference_frames(s, n, &ref);

        frames_init(&whole);
        core_framer_init(&f, max_frame);
        ck_assert_int_eq(core_framer_push(&f, s, n, on_frame, &whole), 0);
        core_framer_dispose(&f);
        assert_same(&ref, &whole);

        frames_init(&bytes);
        core_framer_init(&f, max_frame);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(core_framer_push(&f, s + i, 1, on_frame, &bytes), 0);
        core_framer_dispose(&f);
        assert_same(&ref, &bytes);

        frames_init(&split);
        core_framer_init(&f, max_frame);
        feed_split(&f, s, n, &rng, &split, 0);
        core_framer_dispose(&f);
        assert_same(&ref, &split);

        frames_init(&limited);
        core_framer_init(&f, max_frame);
        feed_split(&f, s, n, &rng, &limited, 1 + rnd(&rng) % 3);
        core_framer_dispose(&f);
        assert_same(&ref, &limited);

        frames_dispose(&ref);
        frames_dispose(&whole);
        frames_dispose(&bytes);
        frames_dispose(&split);
        frames_dispose(&limited);
        core_free(s);
    }
}
END_TEST

START_TEST(test_crlf_and_empty_lines)
{
    struct core_framer f;
    struct frames fr;
    static const char in[] = "\n\n\r\na\r\nb\n\r\n\nc\r\r\n\rd\n e \n\r";
    core_framer_init(&f, 100);
    frames_init(&fr);
    ck_assert_int_eq(core_framer_push(&f, in, sizeof(in) - 1, on_frame, &fr), 0);
    /* Only one trailing "\r" goes; a leading one stays; the final "\r" waits for its line. */
    assert_frames(&fr, "1:a,1:b,2:c\r,2:\rd,3: e ,");
    ck_assert_uint_eq(f.in.len, 1);
    ck_assert_int_eq(core_framer_push(&f, "\n", 1, on_frame, &fr), 0);
    ck_assert_uint_eq(fr.count, 5);
    ck_assert_uint_eq(f.in.len, 0);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

START_TEST(test_too_big_complete)
{
    struct core_framer f;
    struct frames fr;

    core_framer_init(&f, 10);
    frames_init(&fr);
    /* Exactly max_frame, with either line end, is fine. */
    ck_assert_int_eq(core_framer_push(&f, "0123456789\n0123456789\r\n", 23, on_frame, &fr), 0);
    ck_assert_uint_eq(fr.count, 2);
    /* Frames before the long one are delivered; then the framer is broken for good. */
    ck_assert_int_eq(core_framer_push(&f, "ok\n0123456789A\nlater\n", 21, on_frame, &fr),
                     CORE_ETOOBIG);
    ck_assert_uint_eq(fr.count, 3);
    ck_assert_int_eq(core_framer_push(&f, "x\n", 2, on_frame, &fr), CORE_ETOOBIG);
    ck_assert_int_eq(core_framer_feed(&f, 0, on_frame, &fr, 0), CORE_ETOOBIG);
    size_t got;
    ck_assert_ptr_null(core_framer_space(&f, 10, &got));
    ck_assert_uint_eq(fr.count, 3);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

START_TEST(test_too_big_partial)
{
    struct core_framer f;
    struct frames fr;

    /* Eleven bytes without a newline can no longer fit in ten. */
    core_framer_init(&f, 10);
    frames_init(&fr);
    ck_assert_int_eq(core_framer_push(&f, "01234567890", 11, on_frame, &fr), CORE_ETOOBIG);
    core_framer_dispose(&f);

    /* Unless the eleventh byte is the "\r" of a "\r\n". */
    core_framer_init(&f, 10);
    ck_assert_int_eq(core_framer_push(&f, "0123456789\r", 11, on_frame, &fr), 0);
    ck_assert_int_eq(core_framer_push(&f, "\n", 1, on_frame, &fr), 0);
    ck_assert_uint_eq(fr.count, 1);
    core_framer_dispose(&f);

    core_framer_init(&f, 10);
    ck_assert_int_eq(core_framer_push(&f, "0123456789\r", 11, on_frame, &fr), 0);
    ck_assert_int_eq(core_framer_push(&f, "x", 1, on_frame, &fr), CORE_ETOOBIG);
    core_framer_dispose(&f);

    /* A long partial frame behind complete ones, in one read. */
    core_framer_init(&f, 10);
    ck_assert_int_eq(core_framer_push(&f, "ok\n0123456789abcdef", 19, on_frame, &fr),
                     CORE_ETOOBIG);
    ck_assert_uint_eq(fr.count, 2);
    core_framer_dispose(&f);

    /* Byte by byte, the error comes with the first byte past the limit. */
    core_framer_init(&f, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(core_framer_push(&f, "z", 1, on_frame, &fr), 0);
    ck_assert_int_eq(core_framer_push(&f, "z", 1, on_frame, &fr), CORE_ETOOBIG);
    core_framer_dispose(&f);

    /* Through space/feed: a read that overruns the limit. */
    core_framer_init(&f, 100);
    size_t got;
    char *dst = core_framer_space(&f, 65536, &got);
    ck_assert_ptr_nonnull(dst);
    ck_assert_uint_ge(got, 200);
    memset(dst, 'q', 200);
    ck_assert_int_eq(core_framer_feed(&f, 200, on_frame, &fr, 0), CORE_ETOOBIG);
    ck_assert_ptr_null(core_framer_space(&f, 1, &got));
    core_framer_dispose(&f);
    frames_dispose(&fr);
}
END_TEST

START_TEST(test_max_frames)
{
    struct core_framer f;
    struct frames fr;
    size_t got;

    core_framer_init(&f, 100);
    frames_init(&fr);
    char *dst = core_framer_space(&f, 64, &got);
    ck_assert_ptr_nonnull(dst);
    memcpy(dst, "a\n\nb\nc\r\nd\ne", 11);
    ck_assert_int_eq(core_framer_feed(&f, 11, on_frame, &fr, 2), 0);
    assert_frames(&fr, "1:a,1:b,");
    ck_assert_int_eq(core_framer_feed(&f, 0, on_frame, &fr, 2), 0);
    assert_frames(&fr, "1:a,1:b,1:c,1:d,");
    ck_assert_int_eq(core_framer_feed(&f, 0, on_frame, &fr, 2), 0);
    ck_assert_uint_eq(fr.count, 4);
    /* The partial "e" was kept and completes with the next read. */
    dst = core_framer_space(&f, 64, &got);
    memcpy(dst, "f\ng\n", 4);
    ck_assert_int_eq(core_framer_feed(&f, 4, on_frame, &fr, 1), 0);
    assert_frames(&fr, "1:a,1:b,1:c,1:d,2:ef,");
    ck_assert_int_eq(core_framer_feed(&f, 0, on_frame, &fr, 0), 0);
    assert_frames(&fr, "1:a,1:b,1:c,1:d,2:ef,1:g,");
    ck_assert_uint_eq(f.in.len, 0);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

/* When frames are held back and the reader keeps reading, the buffer stays within its limit
 * while every space call still offers at least one byte; a draining feed empties it. */
START_TEST(test_space_bounded)
{
    struct core_framer f;
    struct frames fr;
    size_t got;

    core_framer_init(&f, 10);
    frames_init(&fr);
    for (int iter = 0; iter < 200; iter++) {
        char *dst = core_framer_space(&f, 4096, &got);
        ck_assert_ptr_nonnull(dst);
        ck_assert_uint_ge(got, 1);
        for (size_t i = 0; i < got; i++)
            dst[i] = (f.in.len + i) % 2 ? '\n' : 'x';
        ck_assert_int_eq(core_framer_feed(&f, got, on_frame, &fr, 1), 0);
        ck_assert_uint_le(f.in.len, f.in.limit);
    }
    ck_assert_uint_eq(fr.count, 200);
    ck_assert_uint_ge(f.in.len, f.in.limit - 2);
    ck_assert_int_eq(core_framer_feed(&f, 0, on_frame, &fr, 0), 0);
    ck_assert_uint_eq(f.in.len, 0);
    ck_assert_ptr_nonnull(core_framer_space(&f, 4096, &got));
    ck_assert_uint_eq(got, 4096);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

START_TEST(test_trim)
{
    struct core_framer f;
    struct frames fr;
    size_t got;

    frames_init(&fr);
    /* The collector allocates once up front, so only the framer's storage is counted below. */
    ck_assert_int_eq(core_buf_reserve(&fr.all, 4096), 0);
    core_framer_init(&f, 100);
    long idle = core_alloc_live();
    core_framer_trim(&f);
    ck_assert_ptr_null(f.in.data);

    ck_assert_int_eq(core_framer_push(&f, "one\ntw", 6, on_frame, &fr), 0);
    ck_assert_int_eq(core_alloc_live(), idle + 1);
    /* A partial frame is pending: trim keeps it. */
    core_framer_trim(&f);
    ck_assert_ptr_nonnull(f.in.data);
    ck_assert_int_eq(core_framer_push(&f, "o\n", 2, on_frame, &fr), 0);
    assert_frames(&fr, "3:one,3:two,");
    core_framer_trim(&f);
    ck_assert_ptr_null(f.in.data);
    ck_assert_uint_eq(f.in.cap, 0);
    ck_assert_int_eq(core_alloc_live(), idle);

    /* The framer works after a trim, with the same limit. */
    ck_assert_ptr_nonnull(core_framer_space(&f, 16, &got));
    ck_assert_int_eq(core_framer_push(&f, "0123456789ABCDEF\n", 17, on_frame, &fr), 0);
    ck_assert_int_eq(core_framer_push(&f, "three\n", 6, on_frame, &fr), 0);
    assert_frames(&fr, "3:one,3:two,16:0123456789ABCDEF,5:three,");
    core_framer_trim(&f);
    ck_assert_ptr_null(f.in.data);
    ck_assert_int_eq(core_framer_push(&f, "", 0, on_frame, &fr), 0);
    ck_assert_ptr_null(f.in.data);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

/* The libuv pattern: alloc_cb asks for 64 KiB, read_cb reports fewer bytes. */
START_TEST(test_libuv_pattern)
{
    struct core_framer f;
    struct frames fr;
    size_t got;
    static const char msg[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n";

    core_framer_init(&f, 1 << 20);
    frames_init(&fr);
    for (int i = 0; i < 1000; i++) {
        char *dst = core_framer_space(&f, 65536, &got);
        ck_assert_ptr_nonnull(dst);
        ck_assert_uint_ge(got, 65536);
        memcpy(dst, msg, sizeof(msg) - 1);
        ck_assert_int_eq(core_framer_feed(&f, sizeof(msg) - 1, on_frame, &fr, 0), 0);
        ck_assert_uint_eq(f.in.len, 0);
    }
    ck_assert_uint_eq(fr.count, 1000);
    /* want 0 still yields at least one byte. */
    ck_assert_ptr_nonnull(core_framer_space(&f, 0, &got));
    ck_assert_uint_ge(got, 1);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

/* A 4 MiB frame arriving a byte at a time: linear, because no byte is searched twice. */
START_TEST(test_long_frame_bytewise)
{
    const size_t n = 4 << 20;
    struct core_framer f;
    struct frames fr;
    size_t got;

    core_framer_init(&f, n);
    frames_init(&fr);
    /* Check reports every ck_assert to the parent process, so the loop counts its own failures
     * and asserts once. */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *dst = core_framer_space(&f, 1, &got);
        if (dst == NULL) {
            bad++;
            break;
        }
        *dst = (char)('a' + i % 26);
        if (core_framer_feed(&f, 1, on_frame, &fr, 0) != 0 || f.scanned != i + 1)
            bad++;
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(core_framer_push(&f, "\n", 1, on_frame, &fr), 0);
    ck_assert_uint_eq(fr.count, 1);
    ck_assert_uint_eq(fr.all.len, strlen("4194304:") + n + 1);
    ck_assert_uint_eq(f.scanned, 0);
    frames_dispose(&fr);
    core_framer_dispose(&f);
}
END_TEST

static Suite *frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_splits_agree);
    tcase_add_test(tc, test_crlf_and_empty_lines);
    tcase_add_test(tc, test_too_big_complete);
    tcase_add_test(tc, test_too_big_partial);
    tcase_add_test(tc, test_max_frames);
    tcase_add_test(tc, test_space_bounded);
    tcase_add_test(tc, test_trim);
    tcase_add_test(tc, test_libuv_pattern);
    tcase_add_test(tc, test_long_frame_bytewise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(frame_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
