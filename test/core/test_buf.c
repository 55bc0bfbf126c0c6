/* Tests for the limited byte buffer (core/buf.c). */
#include "core/buf.h"

#include <check.h>
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

/* Asserts the buffer holds exactly want, NUL-terminated. */
static void assert_content(const struct core_buf *b, const char *want)
{
    size_t n = strlen(want);
    ck_assert_uint_eq(b->len, n);
    ck_assert_ptr_nonnull(b->data);
    ck_assert(memcmp(b->data, want, n) == 0);
    ck_assert_int_eq(b->data[n], '\0');
}

START_TEST(test_limit)
{
    struct core_buf b;
    core_buf_init(&b, 10);
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(core_buf_append(&b, "01234567", 8), 0);
    assert_content(&b, "01234567");
    char *data = b.data;
    size_t cap = b.cap;

    /* Past the limit: an error, and nothing changes. */
    ck_assert_int_eq(core_buf_append(&b, "abc", 3), CORE_ETOOBIG);
    assert_content(&b, "01234567");
    ck_assert_ptr_eq(b.data, data);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_int_eq(core_buf_reserve(&b, 3), CORE_ETOOBIG);
    ck_assert_int_eq(core_buf_append_str(&b, "xyz"), CORE_ETOOBIG);
    assert_content(&b, "01234567");

    /* Up to the limit exactly. */
    ck_assert_int_eq(core_buf_append(&b, "89", 2), 0);
    assert_content(&b, "0123456789");
    ck_assert_int_eq(core_buf_append(&b, "!", 1), CORE_ETOOBIG);
    ck_assert_int_eq(core_buf_reserve(&b, 0), 0);
    ck_assert_int_eq(core_buf_append(&b, "", 0), 0);
    assert_content(&b, "0123456789");
    core_buf_dispose(&b);

    /* A first append larger than the limit allocates nothing. */
    long live = core_alloc_live();
    core_buf_init(&b, 4);
    ck_assert_int_eq(core_buf_append(&b, "12345", 5), CORE_ETOOBIG);
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(core_alloc_live(), live);
    core_buf_dispose(&b);
}
END_TEST

START_TEST(test_growth)
{
    struct core_buf b;
    char chunk[1000];
    core_buf_init(&b, 0);
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(core_buf_append(&b, chunk, sizeof(chunk)), 0);
    ck_assert_uint_eq(b.len, 1000000);
    ck_assert_uint_ge(b.cap, b.len);
    ck_assert_int_eq(b.data[b.len], '\0');
    ck_assert_int_eq(b.data[b.len - 1], 'z');
    core_buf_dispose(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_appendf)
{
    struct core_buf b;
    core_buf_init(&b, 32);
    ck_assert_int_eq(core_buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_content(&b, "42-x");
    ck_assert_int_eq(core_buf_appendf(&b, "[%05zu]", (size_t)7), 0);
    assert_content(&b, "42-x[00007]");
    ck_assert_int_eq(core_buf_appendf(&b, "%s", ""), 0);
    assert_content(&b, "42-x[00007]");

    /* Output that would pass the limit changes nothing. */
    ck_assert_int_eq(core_buf_appendf(&b, "%030d", 1), CORE_ETOOBIG);
    assert_content(&b, "42-x[00007]");
    /* Exactly up to the limit (21 more bytes). */
    ck_assert_int_eq(core_buf_appendf(&b, "%021d", 5), 0);
    ck_assert_uint_eq(b.len, 32);
    ck_assert_int_eq(b.data[32], '\0');
    ck_assert_int_eq(b.data[31], '5');
    core_buf_dispose(&b);

    /* Longer than the first allocation. */
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_appendf(&b, "%0999d|", 0), 0);
    ck_assert_uint_eq(b.len, 1000);
    ck_assert_int_eq(b.data[999], '|');
    ck_assert_int_eq(b.data[1000], '\0');
    core_buf_dispose(&b);
}
END_TEST

START_TEST(test_consume_reset)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    core_buf_consume(&b, 5);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "hello world"), 0);
    core_buf_consume(&b, 0);
    assert_content(&b, "hello world");
    core_buf_consume(&b, 6);
    assert_content(&b, "world");
    core_buf_consume(&b, 5);
    assert_content(&b, "");
    ck_assert_int_eq(core_buf_append_str(&b, "abc"), 0);
    core_buf_consume(&b, 100);
    assert_content(&b, "");

    ck_assert_int_eq(core_buf_append_str(&b, "again"), 0);
    size_t cap = b.cap;
    core_buf_reset(&b);
    assert_content(&b, "");
    ck_assert_uint_eq(b.cap, cap);
    core_buf_dispose(&b);
}
END_TEST

START_TEST(test_take)
{
    struct core_buf b;
    size_t len = 99;
    core_buf_init(&b, 100);
    ck_assert_int_eq(core_buf_append_str(&b, "payload"), 0);
    char *p = core_buf_take(&b, &len);
    ck_assert_uint_eq(len, 7);
    ck_assert_str_eq(p, "payload");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    core_free(p);

    /* The buffer is usable after take, with its limit kept. */
    ck_assert_int_eq(core_buf_append_str(&b, "more"), 0);
    assert_content(&b, "more");
    ck_assert_int_eq(core_buf_reserve(&b, 97), CORE_ETOOBIG);
    core_buf_dispose(&b);

    /* Taking from an empty buffer gives an empty, freeable string. */
    core_buf_init(&b, 0);
    p = core_buf_take(&b, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(p, "");
    core_free(p);
    p = core_buf_take(&b, NULL);
    core_free(p);
    core_buf_dispose(&b);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_limit);
    tcase_add_test(tc, test_growth);
    tcase_add_test(tc, test_appendf);
    tcase_add_test(tc, test_consume_reset);
    tcase_add_test(tc, test_take);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(buf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
