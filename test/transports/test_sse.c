/* Tests for transports/sse.c: encoding, decoding in any split, the WHATWG parsing rules. */
#include "transports/sse.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Decoded events, serialized as "event|id|data" records separated by \x1e. */
struct seen {
    struct core_buf out;
    int count;
};

static void on_event(void *ctx, const char *event, const char *id, const char *data, size_t n)
{
    struct seen *s = ctx;
    ck_assert_uint_eq(strlen(data), n); /* NUL-terminated after n (no NUL in our test data) */
    ck_assert_int_eq(core_buf_appendf(&s->out, "%s|%s|", event, id != NULL ? id : "<none>"), 0);
    ck_assert_int_eq(core_buf_append(&s->out, data, n), 0);
    ck_assert_int_eq(core_buf_append(&s->out, "\x1e", 1), 0);
    s->count++;
}

static void seen_init(struct seen *s)
{
    core_buf_init(&s->out, 0);
    s->count = 0;
}

static const char *seen_str(struct seen *s)
{
    return s->out.data != NULL ? s->out.data : "";
}

/* Decodes p[0..n) fed in pieces of the given sizes (0-terminated list; the rest in one piece). */
static int decode_split(const char *p, size_t n, const size_t *pieces, size_t max_event,
                        struct seen *s, unsigned *retry)
{
    struct tp_sse_decoder d;
    tp_sse_decoder_init(&d, max_event);
    size_t off = 0;
    int rc = 0;
    for (size_t i = 0; pieces != NULL && pieces[i] != 0 && off < n && rc == 0; i++) {
        size_t k = pieces[i] < n - off ? pieces[i] : n - off;
        rc = tp_sse_decoder_feed(&d, p + off, k, on_event, s);
        off += k;
    }
    if (rc == 0)
        rc = tp_sse_decoder_feed(&d, p + off, n - off, on_event, s);
    if (retry != NULL)
        *retry = d.retry_ms;
    tp_sse_decoder_dispose(&d);
    return rc;
}

static int decode_whole(const char *p, struct seen *s)
{
    return decode_split(p, strlen(p), NULL, 0, s, NULL);
}

static void decode_bytewise(const char *p, size_t n, struct seen *s)
{
    struct tp_sse_decoder d;
    tp_sse_decoder_init(&d, 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(tp_sse_decoder_feed(&d, p + i, 1, on_event, s), 0);
    tp_sse_decoder_dispose(&d);
}

static void decode_random(const char *p, size_t n, unsigned seed, struct seen *s)
{
    struct tp_sse_decoder d;
    tp_sse_decoder_init(&d, 0);
    size_t off = 0;
    while (off < n) {
        size_t k = (size_t)(rand_r(&seed) % 9); /* includes empty feeds */
        if (k > n - off)
            k = n - off;
        ck_assert_int_eq(tp_sse_decoder_feed(&d, p + off, k, on_event, s), 0);
        off += k;
    }
    tp_sse_decoder_dispose(&d);
}

static long live_at_start;

static void setup(void)
{
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

START_TEST(encode_basic)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(tp_sse_encode(&b, "7", "message", "hello", 5), 0);
    ck_assert_str_eq(b.data, "id: 7\nevent: message\ndata: hello\n\n");
    core_buf_reset(&b);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "", 0), 0);
    ck_assert_str_eq(b.data, "data: \n\n");
    core_buf_reset(&b);
    ck_assert_int_eq(tp_sse_comment(&b, "ping"), 0);
    ck_assert_int_eq(tp_sse_retry(&b, 3000), 0);
    ck_assert_str_eq(b.data, ": ping\n\nretry: 3000\n\n");
    core_buf_dispose(&b);
}
END_TEST

START_TEST(encode_multiline)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    const char *data = "a\nb\r\nc\rd";
    ck_assert_int_eq(tp_sse_encode(&b, NULL, "e", data, strlen(data)), 0);
    ck_assert_str_eq(b.data, "event: e\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    core_buf_reset(&b);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "x\n", 2), 0);
    ck_assert_str_eq(b.data, "data: x\ndata: \n\n");
    core_buf_reset(&b);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "\r\n\r", 3), 0);
    ck_assert_str_eq(b.data, "data: \ndata: \ndata: \n\n");
    core_buf_reset(&b);
    ck_assert_int_eq(tp_sse_comment(&b, "one\ntwo"), 0);
    ck_assert_str_eq(b.data, ": one\n: two\n\n");
    core_buf_dispose(&b);
}
END_TEST

START_TEST(encode_errors)
{
    struct core_buf b;
    core_buf_init(&b, 24);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "0123456789", 10), 0); /* 18 bytes */
    size_t before = b.len;
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "0123456789", 10), CORE_ETOOBIG);
    ck_assert_uint_eq(b.len, before); /* unchanged */
    ck_assert_int_eq(tp_sse_comment(&b, "a long comment that does not fit"), CORE_ETOOBIG);
    ck_assert_uint_eq(b.len, before);
    ck_assert_int_eq(tp_sse_encode(&b, "1\n2", NULL, "x", 1), CORE_EINVAL);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, "a\rb", "x", 1), CORE_EINVAL);
    ck_assert_uint_eq(b.len, before);
    core_buf_dispose(&b);
    /* Exactly at the limit fits. */
    core_buf_init(&b, 9);
    ck_assert_int_eq(tp_sse_encode(&b, NULL, NULL, "x", 1), 0); /* "data: x\n\n" */
    core_buf_dispose(&b);
}
END_TEST

/* Events to round-trip: data with every kind of line break, leading spaces, colons. */
static const struct {
    const char *id;
    const char *event;
    const char *data;
    const char *expect; /* the decoded data: line breaks become \n */
} rt_events[] = {
    {"1", NULL, "{\"jsonrpc\":\"2.0\",\"id\":1}", "{\"jsonrpc\":\"2.0\",\"id\":1}"},
    {NULL, "endpoint", "/message?sessionId=abc", "/message?sessionId=abc"},
    {"2", "message", "line1\nline2\r\nline3\rline4", "line1\nline2\nline3\nline4"},
    {NULL, NULL, "", ""},
    {NULL, NULL, "  two leading spaces", "  two leading spaces"},
    {"", NULL, "data: looks like a field", "data: looks like a field"},
    {NULL, "x", "\n\n", "\n\n"},
    {"3", NULL, "trailing\r\n", "trailing\n"},
    {NULL, NULL, ":not a comment", ":not a comment"},
    {"a-long-id-0123456789", "custom_event", "caf\xc3\xa9 \xe2\x9c\x93", "caf\xc3\xa9 \xe2\x9c\x93"},
};
#define N_RT (sizeof rt_events / sizeof rt_events[0])

static void encode_all(struct core_buf *b)
{
    core_buf_init(b, 0);
    ck_assert_int_eq(tp_sse_retry(b, 1500), 0);
    for (size_t i = 0; i < N_RT; i++) {
        ck_assert_int_eq(tp_sse_comment(b, "keep-alive"), 0);
        ck_assert_int_eq(tp_sse_encode(b, rt_events[i].id, rt_events[i].event, rt_events[i].data,
                                       strlen(rt_events[i].data)),
                         0);
    }
}

static void expected_all(struct seen *s)
{
    seen_init(s);
    for (size_t i = 0; i < N_RT; i++)
        on_event(s, rt_events[i].event ? rt_events[i].event : "message",
                 rt_events[i].id, rt_events[i].expect, strlen(rt_events[i].expect));
}

START_TEST(round_trip)
{
    struct core_buf b;
    encode_all(&b);
    struct seen want, got;
    expected_all(&want);
    seen_init(&got);
    unsigned retry = 0;
    ck_assert_int_eq(decode_split(b.data, b.len, NULL, 0, &got, &retry), 0);
    ck_assert_int_eq(got.count, (int)N_RT);
    ck_assert_str_eq(seen_str(&got), seen_str(&want));
    ck_assert_uint_eq(retry, 1500);
    core_buf_dispose(&got.out);
    core_buf_dispose(&want.out);
    core_buf_dispose(&b);
}
END_TEST

START_TEST(random_splits)
{
    struct core_buf b;
    encode_all(&b);
    struct seen want;
    expected_all(&want);
    struct seen got;
    seen_init(&got);
    decode_bytewise(b.data, b.len, &got);
    ck_assert_str_eq(seen_str(&got), seen_str(&want));
    core_buf_dispose(&got.out);
    for (unsigned seed = 1; seed <= 200; seed++) {
        seen_init(&got);
        decode_random(b.data, b.len, seed, &got);
        ck_assert_str_eq(seen_str(&got), seen_str(&want));
        core_buf_dispose(&got.out);
    }
    /* Every single split point. */
    for (size_t k = 0; k <= b.len; k++) {
        size_t pieces[] = {k, 0};
        seen_init(&got);
        ck_assert_int_eq(decode_split(b.data, b.len, k ? pieces : NULL, 0, &got, NULL), 0);
        ck_assert_str_eq(seen_str(&got), seen_str(&want));
        core_buf_dispose(&got.out);
    }
    core_buf_dispose(&want.out);
    core_buf_dispose(&b);
}
END_TEST

/* Rewrites every \n of s as the given line end. */
static char *with_line_ends(const char *s, const char *eol)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    for (; *s; s++) {
        if (*s == '\n')
            ck_assert_int_eq(core_buf_append_str(&b, eol), 0);
        else
            ck_assert_int_eq(core_buf_append(&b, s, 1), 0);
    }
    return core_buf_take(&b, NULL);
}

START_TEST(line_endings)
{
    const char *stream = ": hello\n"
                         "event: update\n"
                         "id: 42\n"
                         "data: first\n"
                         "data:second\n"
                         "data:  third\n"
                         "\n"
                         "data\n"
                         "\n"
                         "retry: 250\n"
                         "data: last\n"
                         "\n";
    const char *want = "update|42|first\nsecond\n third\x1e"
                       "message|<none>|\x1e"
                       "message|<none>|last\x1e";
    const char *eols[] = {"\n", "\r\n", "\r"};
    for (int e = 0; e < 3; e++) {
        char *s = with_line_ends(stream, eols[e]);
        size_t n = strlen(s);
        struct seen got;
        unsigned retry = 0;
        seen_init(&got);
        ck_assert_int_eq(decode_split(s, n, NULL, 0, &got, &retry), 0);
        ck_assert_str_eq(seen_str(&got), want);
        ck_assert_uint_eq(retry, 250);
        core_buf_dispose(&got.out);
        seen_init(&got);
        decode_bytewise(s, n, &got);
        ck_assert_str_eq(seen_str(&got), want);
        core_buf_dispose(&got.out);
        for (unsigned seed = 1; seed <= 50; seed++) {
            seen_init(&got);
            decode_random(s, n, seed, &got);
            ck_assert_str_eq(seen_str(&got), want);
            core_buf_dispose(&got.out);
        }
        core_free(s);
    }
    /* Mixed endings in one stream; a \r\n split across feeds is one line end. */
    const char *mixed = "data: a\r\ndata: b\rdata: c\n\r\n";
    size_t pieces[] = {8, 0}; /* splits between \r and \n */
    struct seen got;
    seen_init(&got);
    ck_assert_int_eq(decode_split(mixed, strlen(mixed), pieces, 0, &got, NULL), 0);
    ck_assert_str_eq(seen_str(&got), "message|<none>|a\nb\nc\x1e");
    core_buf_dispose(&got.out);
}
END_TEST

START_TEST(comments_and_fields)
{
    struct seen got;
    seen_init(&got);
    /* Comments, unknown fields and events without data produce nothing. */
    ck_assert_int_eq(decode_whole(": comment\n:\n\nevent: lonely\n\nid: 9\n\nfoo: bar\n\n", &got),
                     0);
    ck_assert_int_eq(got.count, 0);
    /* The id of an event without data is not carried to the next one; the event type resets. */
    ck_assert_int_eq(decode_whole("id: 1\nevent: x\n\ndata: y\n\n", &got), 0);
    ck_assert_str_eq(seen_str(&got), "message|<none>|y\x1e");
    core_buf_dispose(&got.out);
    /* An unterminated event is not dispatched. */
    seen_init(&got);
    ck_assert_int_eq(decode_whole("data: pending\n", &got), 0);
    ck_assert_int_eq(got.count, 0);
    /* id with a NUL is ignored; an empty id is an id. */
    ck_assert_int_eq(decode_split("id: a\0b\ndata: z\n\nid:\ndata: w\n\n", 30, NULL, 0, &got,
                                  NULL),
                     0);
    ck_assert_str_eq(seen_str(&got), "message|<none>|z\x1emessage||w\x1e");
    core_buf_dispose(&got.out);
}
END_TEST

START_TEST(retry_field)
{
    struct seen got;
    unsigned retry = 0;
    seen_init(&got);
    const char *s = "retry: 3000\n\nretry: 12a\n\nretry:\n\nretry: 99999999999\n\n";
    ck_assert_int_eq(decode_split(s, 12, NULL, 0, &got, &retry), 0);
    ck_assert_uint_eq(retry, 3000);
    ck_assert_int_eq(decode_split(s, 36, NULL, 0, &got, &retry), 0);
    ck_assert_uint_eq(retry, 3000); /* "12a" and "" are ignored */
    ck_assert_int_eq(decode_split(s, strlen(s), NULL, 0, &got, &retry), 0);
    ck_assert_uint_eq(retry, 0xFFFFFFFFu); /* clamped */
    ck_assert_int_eq(got.count, 0);
    core_buf_dispose(&got.out);
}
END_TEST

START_TEST(bom)
{
    const char *s = "\xEF\xBB\xBF" "data: x\n\n\xEF\xBB\xBF" "data: y\n\n";
    struct seen got;
    seen_init(&got);
    ck_assert_int_eq(decode_whole(s, &got), 0);
    /* Only the BOM at the start of the stream is dropped; later it makes an unknown field. */
    ck_assert_str_eq(seen_str(&got), "message|<none>|x\x1e");
    core_buf_dispose(&got.out);
    seen_init(&got);
    decode_bytewise(s, strlen(s), &got);
    ck_assert_str_eq(seen_str(&got), "message|<none>|x\x1e");
    core_buf_dispose(&got.out);
}
END_TEST

START_TEST(too_big)
{
    struct seen got;
    seen_init(&got);
    /* 16 bytes of data fit in max_event 16, 17 do not: in one line or joined lines. */
    ck_assert_int_eq(decode_split("data: 0123456789abcdef\n\n", 24, NULL, 16, &got, NULL), 0);
    ck_assert_int_eq(got.count, 1);
    ck_assert_int_eq(decode_split("data: 0123456789abcdefg\n\n", 25, NULL, 16, &got, NULL),
                     CORE_ETOOBIG);
    ck_assert_int_eq(decode_split("data: 01234567\ndata: 89abcdef\n\n", 31, NULL, 16, &got, NULL),
                     CORE_ETOOBIG); /* 8 + 1 + 8 = 17 */
    /* A line longer than max_event + 64 fails whole and split. */
    char line[200];
    memset(line, 'c', sizeof line);
    line[0] = ':';
    ck_assert_int_eq(decode_split(line, sizeof line, NULL, 16, &got, NULL), CORE_ETOOBIG);
    char line2[201];
    memcpy(line2, line, 200);
    line2[200] = '\n';
    ck_assert_int_eq(decode_split(line2, sizeof line2, NULL, 16, &got, NULL), CORE_ETOOBIG);
    size_t pieces[] = {50, 0};
    ck_assert_int_eq(decode_split(line2, sizeof line2, pieces, 16, &got, NULL), CORE_ETOOBIG);
    /* Event name and id limits. */
    char ev[100] = "event: ";
    memset(ev + 7, 'e', 70);
    strcpy(ev + 77, "\n");
    ck_assert_int_eq(decode_split(ev, strlen(ev), NULL, 0, &got, NULL), CORE_ETOOBIG);
    ck_assert_int_eq(got.count, 1);
    core_buf_dispose(&got.out);
}
END_TEST

/* The last event id survives events without one, is set by an id-only (undispatched) event,
 * and is cleared by an empty id; retry: is reported. */
START_TEST(last_event_id)
{
    struct tp_sse_decoder d;
    struct seen got;
    seen_init(&got);
    tp_sse_decoder_init(&d, 0);
    ck_assert_ptr_null(tp_sse_decoder_last_id(&d));
    ck_assert_uint_eq(tp_sse_decoder_retry_ms(&d), 0);
    const char *a = "id: p1\nretry: 500\n\n"; /* priming without data: not dispatched */
    ck_assert_int_eq(tp_sse_decoder_feed(&d, a, strlen(a), on_event, &got), 0);
    ck_assert_int_eq(got.count, 0);
    ck_assert_str_eq(tp_sse_decoder_last_id(&d), "p1");
    ck_assert_uint_eq(tp_sse_decoder_retry_ms(&d), 500);
    const char *b = "data: x\n\n"; /* no id: the last one stays */
    ck_assert_int_eq(tp_sse_decoder_feed(&d, b, strlen(b), on_event, &got), 0);
    ck_assert_int_eq(got.count, 1);
    ck_assert_str_eq(tp_sse_decoder_last_id(&d), "p1");
    const char *c2 = "id: e2\ndata: y\n\nid\ndata: z\n\n";
    ck_assert_int_eq(tp_sse_decoder_feed(&d, c2, strlen(c2), on_event, &got), 0);
    ck_assert_int_eq(got.count, 3);
    ck_assert_ptr_null(tp_sse_decoder_last_id(&d));
    tp_sse_decoder_dispose(&d);
    core_buf_dispose(&got.out);
}
END_TEST

static Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, encode_basic);
    tcase_add_test(tc, encode_multiline);
    tcase_add_test(tc, encode_errors);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, random_splits);
    tcase_add_test(tc, line_endings);
    tcase_add_test(tc, comments_and_fields);
    tcase_add_test(tc, retry_field);
    tcase_add_test(tc, bom);
    tcase_add_test(tc, too_big);
    tcase_add_test(tc, last_event_id);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
