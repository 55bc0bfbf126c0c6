/* Tests for the hash maps (core/map.c). */
#include "core/map.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define N_KEYS 5000

static long live_at_start;

/* Values are addresses inside this array, so a value tells which key it was stored for. */
static char vals[N_KEYS * 2];

static void setup(void)
{
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Keys spread over the whole 64-bit range, including 0 and UINT64_MAX. */
static uint64_t key_of(size_t i)
{
    if (i == 0)
        return 0;
    if (i == 1)
        return UINT64_MAX;
    return (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15);
}

static size_t skey(char *buf, size_t cap, size_t i)
{
    int n = snprintf(buf, cap, "key-%zu", i);
    ck_assert(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

START_TEST(test_hash64)
{
    ck_assert_uint_eq(core_hash64("", 0), UINT64_C(0xcbf29ce484222325));
    ck_assert_uint_eq(core_hash64("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
    ck_assert_uint_eq(core_hash64("foobar", 6), UINT64_C(0x85944171f73967e8));
}
END_TEST

START_TEST(test_u64_basic)
{
    struct core_map_u64 m;
    core_map_u64_init(&m);
    ck_assert_ptr_null(core_map_u64_get(&m, 1));
    ck_assert_ptr_null(core_map_u64_del(&m, 1));
    ck_assert_uint_eq(core_map_u64_len(&m), 0);
    size_t it = 0;
    ck_assert(!core_map_u64_next(&m, &it, NULL, NULL));

    for (size_t i = 0; i < N_KEYS; i++)
        core_map_u64_put(&m, key_of(i), &vals[i]);
    ck_assert_uint_eq(core_map_u64_len(&m), N_KEYS);
    for (size_t i = 0; i < N_KEYS; i++)
        ck_assert_ptr_eq(core_map_u64_get(&m, key_of(i)), &vals[i]);
    ck_assert_ptr_null(core_map_u64_get(&m, 12345));

    /* Replacing keeps the count. */
    for (size_t i = 0; i < N_KEYS; i += 2)
        core_map_u64_put(&m, key_of(i), &vals[N_KEYS + i]);
    ck_assert_uint_eq(core_map_u64_len(&m), N_KEYS);
    for (size_t i = 0; i < N_KEYS; i++)
        ck_assert_ptr_eq(core_map_u64_get(&m, key_of(i)), &vals[i % 2 ? i : N_KEYS + i]);

    /* Deleting a third. */
    for (size_t i = 0; i < N_KEYS; i += 3)
        ck_assert_ptr_eq(core_map_u64_del(&m, key_of(i)), &vals[i % 2 ? i : N_KEYS + i]);
    for (size_t i = 0; i < N_KEYS; i += 3)
        ck_assert_ptr_null(core_map_u64_del(&m, key_of(i)));
    size_t left = N_KEYS - (N_KEYS + 2) / 3;
    ck_assert_uint_eq(core_map_u64_len(&m), left);
    for (size_t i = 0; i < N_KEYS; i++) {
        void *v = core_map_u64_get(&m, key_of(i));
        if (i % 3 == 0)
            ck_assert_ptr_null(v);
        else
            ck_assert_ptr_nonnull(v);
    }

    /* Iteration sees each live entry once, with its own value. */
    static unsigned char seen[N_KEYS];
    memset(seen, 0, sizeof(seen));
    uint64_t k;
    void *v;
    size_t count = 0;
    it = 0;
    while (core_map_u64_next(&m, &it, &k, &v)) {
        size_t i = (size_t)((char *)v - vals) % N_KEYS;
        ck_assert_uint_eq(k, key_of(i));
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        count++;
    }
    ck_assert_uint_eq(count, left);

    /* Reinsert the deleted ones. */
    for (size_t i = 0; i < N_KEYS; i += 3)
        core_map_u64_put(&m, key_of(i), &vals[i]);
    ck_assert_uint_eq(core_map_u64_len(&m), N_KEYS);
    core_map_u64_dispose(&m);
    ck_assert_uint_eq(core_map_u64_len(&m), 0);
    core_map_u64_dispose(&m);
}
END_TEST

START_TEST(test_u64_delete_while_iterating)
{
    struct core_map_u64 m;
    core_map_u64_init(&m);
    for (size_t i = 0; i < N_KEYS; i++)
        core_map_u64_put(&m, key_of(i), &vals[i]);

    /* Delete every other entry as it is visited. */
    size_t it = 0;
    size_t visited = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&m, &it, &k, &v)) {
        size_t i = (size_t)((char *)v - vals);
        if (i % 2 == 0)
            ck_assert_ptr_eq(core_map_u64_del(&m, k), v);
        visited++;
    }
    ck_assert_uint_eq(visited, N_KEYS);
    ck_assert_uint_eq(core_map_u64_len(&m), N_KEYS / 2);

    /* Then delete everything that is left, still during iteration. */
    it = 0;
    visited = 0;
    while (core_map_u64_next(&m, &it, &k, &v)) {
        ck_assert_ptr_eq(core_map_u64_del(&m, k), v);
        visited++;
    }
    ck_assert_uint_eq(visited, N_KEYS / 2);
    ck_assert_uint_eq(core_map_u64_len(&m), 0);
    it = 0;
    ck_assert(!core_map_u64_next(&m, &it, &k, &v));
    core_map_u64_dispose(&m);
}
END_TEST

/* Insert/delete churn with few live keys: tombstones are recycled, the table stays small. */
START_TEST(test_u64_churn)
{
    struct core_map_u64 m;
    core_map_u64_init(&m);
    for (uint64_t i = 0; i < 200000; i++) {
        core_map_u64_put(&m, i, &vals[i % N_KEYS]);
        if (i >= 10)
            ck_assert_ptr_nonnull(core_map_u64_del(&m, i - 10));
    }
    ck_assert_uint_eq(core_map_u64_len(&m), 10);
    ck_assert_uint_le(m.cap, 64);
    for (uint64_t i = 199990; i < 200000; i++)
        ck_assert_ptr_eq(core_map_u64_get(&m, i), &vals[i % N_KEYS]);
    core_map_u64_dispose(&m);
}
END_TEST

START_TEST(test_str_basic)
{
    struct core_map_str m;
    char buf[32];
    core_map_str_init(&m);
    ck_assert_ptr_null(core_map_str_get(&m, "x", 1));
    ck_assert_ptr_null(core_map_str_del(&m, "x", 1));

    for (size_t i = 0; i < N_KEYS; i++) {
        size_t n = skey(buf, sizeof(buf), i);
        core_map_str_put(&m, buf, n, &vals[i]);
    }
    ck_assert_uint_eq(core_map_str_len(&m), N_KEYS);
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t n = skey(buf, sizeof(buf), i);
        ck_assert_ptr_eq(core_map_str_get(&m, buf, n), &vals[i]);
    }
    /* Lookups by length, not by NUL: "key-1" is a prefix of "key-10". */
    ck_assert_ptr_eq(core_map_str_get(&m, "key-10xyz", 6), &vals[10]);
    ck_assert_ptr_eq(core_map_str_get(&m, "key-10xyz", 5), &vals[1]);
    ck_assert_ptr_null(core_map_str_get(&m, "key-10xyz", 4));
    ck_assert_ptr_null(core_map_str_get(&m, "key-10xyz", 9));

    /* Replace: same count, new value, the old key copy is kept (no leak, no double copy). */
    long live = core_alloc_live();
    core_map_str_put(&m, "key-7", 5, &vals[N_KEYS + 7]);
    ck_assert_int_eq(core_alloc_live(), live);
    ck_assert_uint_eq(core_map_str_len(&m), N_KEYS);
    ck_assert_ptr_eq(core_map_str_get(&m, "key-7", 5), &vals[N_KEYS + 7]);

    /* The empty key is a key like any other. */
    core_map_str_put(&m, "", 0, &vals[0]);
    ck_assert_ptr_eq(core_map_str_get(&m, "", 0), &vals[0]);
    ck_assert_ptr_eq(core_map_str_del(&m, "", 0), &vals[0]);
    ck_assert_ptr_null(core_map_str_get(&m, "", 0));

    for (size_t i = 0; i < N_KEYS; i += 3) {
        size_t n = skey(buf, sizeof(buf), i);
        ck_assert_ptr_nonnull(core_map_str_del(&m, buf, n));
        ck_assert_ptr_null(core_map_str_del(&m, buf, n));
    }
    size_t left = N_KEYS - (N_KEYS + 2) / 3;
    ck_assert_uint_eq(core_map_str_len(&m), left);

    /* Iterated keys are NUL-terminated copies matching their values. */
    static unsigned char seen[N_KEYS];
    memset(seen, 0, sizeof(seen));
    size_t it = 0;
    size_t count = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&m, &it, &k, &v)) {
        size_t i = (size_t)((char *)v - vals) % N_KEYS;
        skey(buf, sizeof(buf), i);
        ck_assert_str_eq(k, buf);
        ck_assert_int_ne((int)(i % 3), 0);
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        count++;
    }
    ck_assert_uint_eq(count, left);
    core_map_str_dispose(&m);
    core_map_str_dispose(&m);
}
END_TEST

START_TEST(test_str_delete_while_iterating)
{
    struct core_map_str m;
    char buf[32];
    core_map_str_init(&m);
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t n = skey(buf, sizeof(buf), i);
        core_map_str_put(&m, buf, n, &vals[i]);
    }
    size_t it = 0;
    size_t visited = 0;
    const char *k;
    void *v;
    while (core_map_str_next(&m, &it, &k, &v)) {
        /* The key is borrowed from the map, so copy what is needed before deleting it. */
        size_t n = strlen(k);
        ck_assert_uint_lt(n, sizeof(buf));
        memcpy(buf, k, n);
        ck_assert_ptr_eq(core_map_str_del(&m, buf, n), v);
        ck_assert_ptr_null(core_map_str_get(&m, buf, n));
        visited++;
    }
    ck_assert_uint_eq(visited, N_KEYS);
    ck_assert_uint_eq(core_map_str_len(&m), 0);
    /* Reuse after emptying. */
    core_map_str_put(&m, "again", 5, &vals[1]);
    ck_assert_ptr_eq(core_map_str_get(&m, "again", 5), &vals[1]);
    core_map_str_dispose(&m);
}
END_TEST

START_TEST(test_str_churn)
{
    struct core_map_str m;
    char buf[32];
    core_map_str_init(&m);
    for (size_t i = 0; i < 100000; i++) {
        size_t n = skey(buf, sizeof(buf), i);
        core_map_str_put(&m, buf, n, &vals[i % N_KEYS]);
        if (i >= 5) {
            n = skey(buf, sizeof(buf), i - 5);
            ck_assert_ptr_nonnull(core_map_str_del(&m, buf, n));
        }
    }
    ck_assert_uint_eq(core_map_str_len(&m), 5);
    ck_assert_uint_le(m.cap, 64);
    core_map_str_dispose(&m);
}
END_TEST

static Suite *map_suite(void)
{
    Suite *s = suite_create("map");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_hash64);
    tcase_add_test(tc, test_u64_basic);
    tcase_add_test(tc, test_u64_delete_while_iterating);
    tcase_add_test(tc, test_u64_churn);
    tcase_add_test(tc, test_str_basic);
    tcase_add_test(tc, test_str_delete_while_iterating);
    tcase_add_test(tc, test_str_churn);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(map_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
