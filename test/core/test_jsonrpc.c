/* Tests for the JSON-RPC envelope scanner (core/jsonrpc.c). */
#include "core/jsonrpc.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Allocations live when a test started; the scanner must not allocate at all. */
static long live_at_start;

static void setup(void)
{
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Asserts that span s of p holds exactly the bytes of want. */
#define ck_assert_span(p, s, want)                                                                 \
    do {                                                                                           \
        const char *want_ = (want);                                                                \
        ck_assert_uint_eq((s).len, strlen(want_));                                                 \
        ck_assert(memcmp((p) + (s).off, want_, (s).len) == 0);                                     \
    } while (0)

static int scan(const char *s, struct core_rpc_env *env)
{
    return core_rpc_scan(s, strlen(s), env);
}

/* Scans text that must be valid and returns its envelope. */
static struct core_rpc_env scan_ok(const char *s)
{
    struct core_rpc_env env;
    int rc = scan(s, &env);
    ck_assert_msg(rc == 0, "scan failed (%d) on: %s", rc, s);
    return env;
}

/* Builds "[[[...]]]" with the given depth into a heap buffer the caller frees. */
static char *nested_arrays(size_t depth, size_t *len)
{
    char *s = core_xmalloc(depth * 2 + 1);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[depth * 2] = '\0';
    *len = depth * 2;
    return s;
}

START_TEST(test_id_types)
{
    static const struct {
        const char *text;
        const char *id;
        enum core_json_type type;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"ping\"}", "17", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}", "0", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":-42,\"method\":\"ping\"}", "-42", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5e-3,\"method\":\"ping\"}", "1.5e-3", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":-0.0E+10,\"method\":\"ping\"}", "-0.0E+10", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":2.25,\"method\":\"ping\"}", "2.25", CORE_JSON_NUMBER},
        /* Beyond 2^64: kept verbatim, never converted. */
        {"{\"jsonrpc\":\"2.0\",\"id\":123456789012345678901234567890,\"method\":\"ping\"}",
         "123456789012345678901234567890", CORE_JSON_NUMBER},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}", "\"abc\"", CORE_JSON_STRING},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}", "\"\"", CORE_JSON_STRING},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\xc3\xa9\","
         "\"method\":\"ping\"}",
         "\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\xc3\xa9\"", CORE_JSON_STRING},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse "
         "error\"}}",
         "null", CORE_JSON_NULL},
        {"{ \"id\" :\t99 \n, \"result\" : true }", "99", CORE_JSON_NUMBER},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct core_rpc_env env = scan_ok(cases[k].text);
        ck_assert_span(cases[k].text, env.id, cases[k].id);
        ck_assert_int_eq(env.id_type, cases[k].type);
    }
}
END_TEST

START_TEST(test_id_null_error)
{
    const char *s =
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}";
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_ERROR);
    ck_assert_int_eq(env.id_type, CORE_JSON_NULL);
    ck_assert_span(s, env.id, "null");
    ck_assert_span(s, env.error, "{\"code\":-32700,\"message\":\"x\"}");
    ck_assert(env.has_jsonrpc);
}
END_TEST

START_TEST(test_kinds)
{
    static const struct {
        const char *text;
        enum core_rpc_kind kind;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", CORE_RPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"params\":{}}", CORE_RPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"params\":[1,2]}", CORE_RPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"a\"}", CORE_RPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
         CORE_RPC_NOTIFICATION},
        {"{\"method\":\"\"}", CORE_RPC_NOTIFICATION},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{}}", CORE_RPC_RESULT},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":null}", CORE_RPC_RESULT},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1,\"message\":\"m\"}}",
         CORE_RPC_ERROR},
        {"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}]", CORE_RPC_BATCH},
        {"[]", CORE_RPC_BATCH},
        {" [ 1 , \"x\" ] ", CORE_RPC_BATCH},
        /* Valid JSON that is not a JSON-RPC message. */
        {"{}", CORE_RPC_INVALID},
        {"\"just a string\"", CORE_RPC_INVALID},
        {"42", CORE_RPC_INVALID},
        {"true", CORE_RPC_INVALID},
        {"null", CORE_RPC_INVALID},
        {"{\"jsonrpc\":\"2.0\"}", CORE_RPC_INVALID},
        {"{\"id\":1}", CORE_RPC_INVALID},
        {"{\"result\":1}", CORE_RPC_INVALID},
        {"{\"error\":{}}", CORE_RPC_INVALID},
        {"{\"id\":1,\"result\":1,\"error\":{}}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":\"a\",\"result\":1}", CORE_RPC_INVALID},
        {"{\"method\":\"a\",\"error\":{}}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":5}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":null}", CORE_RPC_INVALID},
        {"{\"id\":{},\"method\":\"a\"}", CORE_RPC_INVALID},
        {"{\"id\":[1],\"result\":1}", CORE_RPC_INVALID},
        {"{\"id\":true,\"result\":1}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":\"a\",\"params\":1}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":\"a\",\"params\":\"x\"}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":\"a\\u0000b\"}", CORE_RPC_INVALID},
        {"{\"id\":1,\"method\":\"\\ud800\"}", CORE_RPC_INVALID},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct core_rpc_env env = scan_ok(cases[k].text);
        ck_assert_msg(env.kind == cases[k].kind, "kind %d, want %d: %s", (int)env.kind,
                      (int)cases[k].kind, cases[k].text);
    }
}
END_TEST

START_TEST(test_malformed)
{
    static const char *const cases[] = {
        "",
        " ",
        "\n\t\r ",
        "{",
        "}",
        "[",
        "]",
        "{\"id\":1",
        "{\"id\":1,",
        "{\"id\":",
        "{\"id\"",
        "{\"id",
        "{\"id\":1}x",
        "{\"id\":1} 2",
        "{} {}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "{'a':1}",
        "\"abc",
        "\"abc\\\"",
        "\"\\",
        "\"a\\x\"",
        "\"a\\U0041\"",
        "\"\\u12G4\"",
        "\"\\u12\"",
        "\"\\u",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"\x01\"",
        "\"\x1f\"",
        "01",
        "-01",
        "00",
        "1.",
        "1.e5",
        ".5",
        "-",
        "-.5",
        "+1",
        "1e",
        "1e+",
        "1E-",
        "0x10",
        "1.5.3",
        "- 1",
        "tru",
        "nul",
        "fals",
        "True",
        "NULL",
        "nulll",
        "NaN",
        "Infinity",
        "-Infinity",
        "[\"a\"\x0c]",
        "\xef\xbb\xbf{}",
        "{\"id\":1,\"method\":\"x\",\"params\":{\"a\":[1,{\"b\":}]}}",
        "{\"id\":1,\"result\":\"\x02\"}",
        "{\"id\":1,\"result\":[1,2}",
        "{\"id\":1,\"result\":{\"a\":1]}",
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct core_rpc_env env;
        struct core_rpc_env before;
        memset(&env, 0xab, sizeof(env));
        before = env;
        int rc = scan(cases[k], &env);
        ck_assert_msg(rc == CORE_EPARSE, "rc %d on case %zu: %s", rc, k, cases[k]);
        ck_assert_msg(memcmp(&env, &before, sizeof(env)) == 0, "env written on failure");
    }
}
END_TEST

START_TEST(test_embedded_nul)
{
    struct core_rpc_env env;
    ck_assert_int_eq(core_rpc_scan("{}\0", 3, &env), CORE_EPARSE);
    ck_assert_int_eq(core_rpc_scan("\"a\0b\"", 5, &env), CORE_EPARSE);
    ck_assert_int_eq(core_rpc_scan("\0{}", 3, &env), CORE_EPARSE);
    /* The length, not a NUL, ends the text. */
    ck_assert_int_eq(core_rpc_scan("{}garbage", 2, &env), 0);
}
END_TEST

START_TEST(test_depth)
{
    size_t len;
    char *s;
    struct core_rpc_env env;

    s = nested_arrays(256, &len);
    ck_assert_int_eq(core_rpc_scan(s, len, &env), 0);
    ck_assert_int_eq(env.kind, CORE_RPC_BATCH);
    core_free(s);

    s = nested_arrays(257, &len);
    ck_assert_int_eq(core_rpc_scan(s, len, &env), CORE_EPARSE);
    core_free(s);

    s = nested_arrays(300, &len);
    ck_assert_int_eq(core_rpc_scan(s, len, &env), CORE_EPARSE);
    core_free(s);

    s = nested_arrays(100000, &len);
    ck_assert_int_eq(core_rpc_scan(s, len, &env), CORE_EPARSE);
    core_free(s);

    /* The envelope object counts as one level: params may nest 255 more. */
    const char *head = "{\"id\":1,\"method\":\"m\",\"params\":";
    char buf[1024];
    for (size_t depth = 255; depth <= 256; depth++) {
        size_t hl = strlen(head);
        memcpy(buf, head, hl);
        memset(buf + hl, '[', depth);
        memset(buf + hl + depth, ']', depth);
        buf[hl + 2 * depth] = '}';
        int rc = core_rpc_scan(buf, hl + 2 * depth + 1, &env);
        ck_assert_int_eq(rc, depth == 255 ? 0 : CORE_EPARSE);
    }

    /* Mixed objects and arrays at the limit. */
    char *m = core_xmalloc(256 * 6 + 16);
    size_t o = 0;
    for (int k = 0; k < 128; k++) {
        memcpy(m + o, "{\"a\":[", 6);
        o += 6;
    }
    m[o++] = '1';
    for (int k = 0; k < 128; k++) {
        m[o++] = ']';
        m[o++] = '}';
    }
    ck_assert_int_eq(core_rpc_scan(m, o, &env), 0);
    ck_assert_int_eq(env.kind, CORE_RPC_INVALID);
    core_free(m);
}
END_TEST

START_TEST(test_member_order_and_spans)
{
    const char *s = "  {\"params\" : { \"a\" : [1, 2, {\"b\":null}] } ,\"method\":\"tools/call\","
                    "\"id\":\"req-1\" , \"jsonrpc\" : \"2.0\" }\r\n";
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
    ck_assert_span(s, env.params, "{ \"a\" : [1, 2, {\"b\":null}] }");
    ck_assert_span(s, env.method, "\"tools/call\"");
    ck_assert_str_eq(env.method_str, "tools/call");
    ck_assert_span(s, env.id, "\"req-1\"");
    ck_assert_int_eq(env.id_type, CORE_JSON_STRING);
    ck_assert(env.has_jsonrpc);
    ck_assert_uint_eq(env.result.len, 0);
    ck_assert_uint_eq(env.error.len, 0);

    const char *r = "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\\n\"}]},\"id\":5,"
                    "\"jsonrpc\":\"2.0\"}";
    env = scan_ok(r);
    ck_assert_int_eq(env.kind, CORE_RPC_RESULT);
    ck_assert_span(r, env.result, "{\"content\":[{\"type\":\"text\",\"text\":\"hi\\n\"}]}");
    ck_assert_span(r, env.id, "5");
    ck_assert_uint_eq(env.method.len, 0);
    ck_assert_str_eq(env.method_str, "");

    const char *t = "{\"id\":1,\"result\":\"a string result\"}";
    env = scan_ok(t);
    ck_assert_span(t, env.result, "\"a string result\"");
    const char *u = "{\"id\":1,\"result\":-12.5e3}";
    env = scan_ok(u);
    ck_assert_span(u, env.result, "-12.5e3");
}
END_TEST

START_TEST(test_nested_keys_not_confused)
{
    const char *s = "{\"params\":{\"id\":5,\"method\":\"evil\",\"result\":1,\"error\":{}},"
                    "\"method\":\"real\",\"id\":1}";
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
    ck_assert_span(s, env.id, "1");
    ck_assert_str_eq(env.method_str, "real");
    ck_assert_uint_eq(env.result.len, 0);
    ck_assert_uint_eq(env.error.len, 0);

    const char *r = "{\"result\":{\"id\":99,\"method\":\"x\",\"error\":{}},\"id\":3}";
    env = scan_ok(r);
    ck_assert_int_eq(env.kind, CORE_RPC_RESULT);
    ck_assert_span(r, env.id, "3");
    ck_assert_uint_eq(env.method.len, 0);

    /* Keys inside arrays and inside string values. */
    const char *a = "{\"result\":[{\"id\":2},\"\\\"id\\\":7\"],\"x\":{\"method\":\"m\"},\"id\":4}";
    env = scan_ok(a);
    ck_assert_int_eq(env.kind, CORE_RPC_RESULT);
    ck_assert_span(a, env.id, "4");

    /* Without a top-level id, a nested one does not make a response. */
    const char *b = "{\"result\":{\"id\":1}}";
    env = scan_ok(b);
    ck_assert_int_eq(env.kind, CORE_RPC_INVALID);
    ck_assert_int_eq(env.id_type, CORE_JSON_ABSENT);
    ck_assert_uint_eq(env.id.len, 0);
}
END_TEST

START_TEST(test_escaped_keys_and_method)
{
    const char *s =
        "{\"\\u006dethod\":\"tools\\/call\",\"i\\u0064\":2,\"json\\u0072pc\":\"2.\\u0030\"}";
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
    ck_assert_str_eq(env.method_str, "tools/call");
    ck_assert_span(s, env.method, "\"tools\\/call\"");
    ck_assert_span(s, env.id, "2");
    ck_assert(env.has_jsonrpc);

    const char *u = "{\"method\":\"caf\\u00e9 \\ud83d\\ude00\\n\\t\\\"q\\\"\"}";
    env = scan_ok(u);
    ck_assert_int_eq(env.kind, CORE_RPC_NOTIFICATION);
    ck_assert_str_eq(env.method_str, "caf\xc3\xa9 \xf0\x9f\x98\x80\n\t\"q\"");

    /* A key that decodes to something longer than "id" is not "id". */
    const char *v = "{\"id\\u0000\":1,\"method\":\"m\"}";
    env = scan_ok(v);
    ck_assert_int_eq(env.kind, CORE_RPC_NOTIFICATION);
}
END_TEST

START_TEST(test_method_length)
{
    char buf[512];
    struct core_rpc_env env;

    for (size_t mlen = 126; mlen <= 129; mlen++) {
        size_t o = 0;
        memcpy(buf, "{\"id\":1,\"method\":\"", 18);
        o = 18;
        memset(buf + o, 'm', mlen);
        o += mlen;
        memcpy(buf + o, "\"}", 2);
        o += 2;
        ck_assert_int_eq(core_rpc_scan(buf, o, &env), 0);
        if (mlen <= CORE_RPC_METHOD_MAX - 1) {
            ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
            ck_assert_uint_eq(strlen(env.method_str), mlen);
        } else {
            ck_assert_int_eq(env.kind, CORE_RPC_INVALID);
            ck_assert_str_eq(env.method_str, "");
            ck_assert_uint_eq(env.method.len, mlen + 2);
        }
    }
}
END_TEST

START_TEST(test_jsonrpc_member)
{
    struct core_rpc_env env;
    env = scan_ok("{\"jsonrpc\":\"2.0\",\"method\":\"a\"}");
    ck_assert(env.has_jsonrpc);
    env = scan_ok("{\"jsonrpc\":\"2.1\",\"method\":\"a\"}");
    ck_assert(!env.has_jsonrpc);
    env = scan_ok("{\"jsonrpc\":2.0,\"method\":\"a\"}");
    ck_assert(!env.has_jsonrpc);
    env = scan_ok("{\"jsonrpc\":\"2.0\\u0000\",\"method\":\"a\"}");
    ck_assert(!env.has_jsonrpc);
    env = scan_ok("{\"method\":\"a\"}");
    ck_assert(!env.has_jsonrpc);
    ck_assert_int_eq(env.kind, CORE_RPC_NOTIFICATION);
    ck_assert(!env.dup);
    /* A repeated jsonrpc member is a duplicate like any other recorded key. */
    env = scan_ok("{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"1.0\",\"method\":\"a\"}");
    ck_assert(env.dup);
    ck_assert_str_eq(env.dup_key, "jsonrpc");
}
END_TEST

START_TEST(test_duplicates_flagged)
{
    /* Top-level members: the spans hold the last, and the frame is marked. */
    const char *s = "{\"id\":1,\"method\":\"a\",\"id\":\"two\",\"method\":\"b\",\"params\":[1],"
                    "\"params\":{\"x\":1}}";
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
    ck_assert(env.dup);
    ck_assert_str_eq(env.dup_key, "id");
    ck_assert_span(s, env.id, "\"two\"");
    ck_assert_str_eq(env.method_str, "b");
    ck_assert_span(s, env.params, "{\"x\":1}");
    static const struct {
        const char *text;
        const char *key;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"touch\","
         "\"name\":\"demo__echo\"}}",
         "name"},
        /* Spelled differently, the same key once decoded. */
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"touch\","
         "\"n\\u0061me\":\"demo__echo\"}}",
         "name"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"uri\":\"a://x\","
         "\"uri\":\"a://y\"}}",
         "uri"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":{},"
         "\"argument\":{},\"ref\":{}}}",
         "ref"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"cursor\":\"a\","
         "\"cursor\":\"b\"}}",
         "cursor"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"_meta\":{},\"_meta\":{}}}",
         "_meta"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,"
         "\"progress\":1,\"progressToken\":2}}",
         "progressToken"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"result\":{}}", "result"},
        {"{\"jsonrpc\":\"2.0\",\"i\\u0064\":1,\"id\":2,\"result\":{}}", "id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        env = scan_ok(cases[i].text);
        ck_assert_msg(env.dup, "no duplicate seen in %s", cases[i].text);
        ck_assert_str_eq(env.dup_key, cases[i].key);
    }
    /* Repeats the gateway does not read, and the same key in different objects, are fine. */
    static const char *const fine[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\","
        "\"arguments\":{\"name\":1,\"name\":2},\"x\":1,\"x\":2}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"id\":1,\"id\":2}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":[{\"name\":1},{\"name\":2}]}",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        env = scan_ok(fine[i]);
        ck_assert_msg(!env.dup, "duplicate reported in %s", fine[i]);
    }
}
END_TEST

START_TEST(test_params_recorded)
{
    const char *s = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
                    "\"arguments\":{\"uri\":\"inner\"},\"n\\u0061me\":\"demo__echo\","
                    "\"_meta\":{\"progressToken\":\"p\"},\"cursor\":null}}";
    struct core_rpc_env env = scan_ok(s);
    ck_assert(!env.dup);
    ck_assert_span(s, env.param[CORE_P_NAME], "\"demo__echo\"");
    ck_assert_span(s, env.param[CORE_P_META], "{\"progressToken\":\"p\"}");
    ck_assert_span(s, env.param[CORE_P_CURSOR], "null");
    /* Only params' own members are recorded, not those of objects inside it. */
    ck_assert_uint_eq(env.param[CORE_P_URI].len, 0);
    ck_assert_uint_eq(env.param[CORE_P_PROGRESS_TOKEN].len, 0);
    /* params that is not an object records nothing. */
    env = scan_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":[\"name\"]}");
    for (int k = 0; k < CORE_P_COUNT; k++)
        ck_assert_uint_eq(env.param[k].len, 0);
}
END_TEST

START_TEST(test_batch)
{
    const char *s = " [ {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"} ,{\"method\":\"n\"},"
                    "\n{\"id\":2,\"result\":{\"r\":[1,2]}} , 5, [1,[2]],\"s,]\" ] ";
    static const char *const elems[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}",
        "{\"method\":\"n\"}",
        "{\"id\":2,\"result\":{\"r\":[1,2]}}",
        "5",
        "[1,[2]]",
        "\"s,]\"",
    };
    static const enum core_rpc_kind kinds[] = {
        CORE_RPC_REQUEST, CORE_RPC_NOTIFICATION, CORE_RPC_RESULT,
        CORE_RPC_INVALID, CORE_RPC_BATCH,        CORE_RPC_INVALID,
    };
    size_t n = strlen(s);
    struct core_rpc_env env = scan_ok(s);
    ck_assert_int_eq(env.kind, CORE_RPC_BATCH);

    size_t pos = 0;
    size_t count = 0;
    struct core_span elem;
    for (;;) {
        int rc = core_rpc_batch_next(s, n, &pos, &elem);
        ck_assert_int_ge(rc, 0);
        if (rc == 0)
            break;
        ck_assert_uint_lt(count, 6);
        ck_assert_span(s, elem, elems[count]);
        struct core_rpc_env e;
        ck_assert_int_eq(core_rpc_scan(s + elem.off, elem.len, &e), 0);
        ck_assert_int_eq(e.kind, kinds[count]);
        count++;
    }
    ck_assert_uint_eq(count, 6);
    /* Once at the end, it stays there. */
    ck_assert_int_eq(core_rpc_batch_next(s, n, &pos, &elem), 0);

    /* The element's id span is relative to the element. */
    pos = 0;
    ck_assert_int_eq(core_rpc_batch_next(s, n, &pos, &elem), 1);
    struct core_rpc_env e;
    ck_assert_int_eq(core_rpc_scan(s + elem.off, elem.len, &e), 0);
    ck_assert_span(s + elem.off, e.id, "1");

    const char *empty = "[ ]";
    pos = 0;
    ck_assert_int_eq(core_rpc_batch_next(empty, 3, &pos, &elem), 0);
    ck_assert_int_eq(core_rpc_batch_next(empty, 3, &pos, &elem), 0);

    const char *one = "[{}]";
    pos = 0;
    ck_assert_int_eq(core_rpc_batch_next(one, 4, &pos, &elem), 1);
    ck_assert_span(one, elem, "{}");
    ck_assert_int_eq(core_rpc_batch_next(one, 4, &pos, &elem), 0);

    /* Not an array. */
    pos = 0;
    ck_assert_int_eq(core_rpc_batch_next("{}", 2, &pos, &elem), CORE_EPARSE);
    pos = 0;
    ck_assert_int_eq(core_rpc_batch_next("", 0, &pos, &elem), CORE_EPARSE);
}
END_TEST

START_TEST(test_obj_get)
{
    const char *s = "{\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\", "
                    "\"arguments\" : {\"name\":\"inner\",\"n\":[1]}, \"k\\u0065y\":true,"
                    "\"d\":1,\"d\":null,\"num\":-3.5}}";
    struct core_rpc_env env = scan_ok(s);
    struct core_span v;
    enum core_json_type t;

    ck_assert_int_eq(core_json_obj_get(s, env.params, "name", &v, &t), 0);
    ck_assert_span(s, v, "\"echo\"");
    ck_assert_int_eq(t, CORE_JSON_STRING);
    ck_assert(core_json_str_eq(s, v, "echo"));

    ck_assert_int_eq(core_json_obj_get(s, env.params, "arguments", &v, &t), 0);
    ck_assert_span(s, v, "{\"name\":\"inner\",\"n\":[1]}");
    ck_assert_int_eq(t, CORE_JSON_OBJECT);
    struct core_span args = v;
    ck_assert_int_eq(core_json_obj_get(s, args, "n", &v, &t), 0);
    ck_assert_span(s, v, "[1]");
    ck_assert_int_eq(t, CORE_JSON_ARRAY);
    ck_assert_int_eq(core_json_obj_get(s, args, "name", &v, NULL), 0);
    ck_assert_span(s, v, "\"inner\"");

    ck_assert_int_eq(core_json_obj_get(s, env.params, "key", &v, &t), 0);
    ck_assert_span(s, v, "true");
    ck_assert_int_eq(t, CORE_JSON_TRUE);

    /* A repeated key has no single meaning: refused, nothing written. */
    struct core_span before = {77, 88};
    v = before;
    ck_assert_int_eq(core_json_obj_get(s, env.params, "d", &v, &t), CORE_EDUP);
    ck_assert_uint_eq(v.off, 77);

    ck_assert_int_eq(core_json_obj_get(s, env.params, "num", &v, &t), 0);
    ck_assert_int_eq(t, CORE_JSON_NUMBER);

    struct core_span untouched = {123, 456};
    v = untouched;
    ck_assert_int_eq(core_json_obj_get(s, env.params, "n", &v, &t), CORE_ENOTFOUND);
    ck_assert_int_eq(core_json_obj_get(s, env.params, "", &v, &t), CORE_ENOTFOUND);
    ck_assert_int_eq(core_json_obj_get(s, env.params, "nam", &v, &t), CORE_ENOTFOUND);
    ck_assert_uint_eq(v.off, 123);

    /* The whole message is an object too. */
    struct core_span whole = {0, strlen(s)};
    ck_assert_int_eq(core_json_obj_get(s, whole, "method", &v, &t), 0);
    ck_assert_span(s, v, "\"tools/call\"");

    struct core_span empty_obj = {0, 2};
    ck_assert_int_eq(core_json_obj_get("{}", empty_obj, "a", &v, &t), CORE_ENOTFOUND);
    struct core_span arr = {0, 3};
    ck_assert_int_eq(core_json_obj_get("[1]", arr, "a", &v, &t), CORE_EPARSE);
}
END_TEST

START_TEST(test_unescape)
{
    char out[64];
    const char *t;

    t = "\"plain\"";
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, sizeof(out)), 5);
    ck_assert_str_eq(out, "plain");

    t = "\"\"";
    ck_assert_int_eq(core_json_unescape(t, 2, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");

    t = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"";
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, sizeof(out)), 8);
    ck_assert_str_eq(out, "\"\\/\b\f\n\r\t");

    t = "\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\"";
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, sizeof(out)), 1 + 2 + 3 + 4);
    ck_assert_str_eq(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");

    t = "\"a\\u0000b\"";
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, sizeof(out)), 3);
    ck_assert(memcmp(out, "a\0b", 4) == 0);

    /* Exactly fitting, then one byte short. */
    t = "\"abcd\"";
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, 5), 4);
    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, 4), CORE_ETOOBIG);
    ck_assert_int_eq(out[0], 'x');
    ck_assert_int_eq(core_json_unescape(t, strlen(t), out, 0), CORE_ETOOBIG);

    static const char *const bad[] = {
        "",           "\"",         "abc",        "\"abc",        "abc\"",
        "\"a\"b\"",   "\"\\\"",     "\"\\x\"",    "\"\\u12\"",    "\"\\u12zz\"",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\t\"",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        int rc = core_json_unescape(bad[k], strlen(bad[k]), out, sizeof(out));
        ck_assert_msg(rc == CORE_EPARSE, "rc %d on %s", rc, bad[k]);
    }
}
END_TEST

START_TEST(test_str_eq)
{
    const char *s = "\"tools/call\" \"a\\u0062c\" 17 \"\" \"ab\\u0000\"";
    struct core_span a = {0, 12};
    struct core_span b = {13, 10};
    struct core_span num = {24, 2};
    struct core_span empty = {27, 2};
    struct core_span nul = {30, 10};
    struct core_span absent = {0, 0};

    ck_assert(core_json_str_eq(s, a, "tools/call"));
    ck_assert(!core_json_str_eq(s, a, "tools/cal"));
    ck_assert(!core_json_str_eq(s, a, "tools/calls"));
    ck_assert(core_json_str_eq(s, b, "abc"));
    ck_assert(!core_json_str_eq(s, num, "17"));
    ck_assert(core_json_str_eq(s, empty, ""));
    ck_assert(!core_json_str_eq(s, empty, "x"));
    ck_assert(!core_json_str_eq(s, nul, "ab"));
    ck_assert(!core_json_str_eq(s, absent, ""));
}
END_TEST

/* A multi-megabyte result with escapes throughout scans to the exact span and allocates
 * nothing. */
START_TEST(test_large_result)
{
    const size_t body = 4 << 20;
    const char *head = "{\"jsonrpc\":\"2.0\",\"id\":77,\"result\":{\"content\":[{\"type\":\"text\","
                       "\"text\":\"";
    const char *tail = "\"}]}}";
    size_t hl = strlen(head);
    size_t tl = strlen(tail);
    char *s = core_xmalloc(hl + body + tl);
    memcpy(s, head, hl);
    for (size_t k = 0; k < body; k++)
        s[hl + k] = (char)('a' + k % 26);
    /* Escapes at irregular places, including across word boundaries. */
    for (size_t k = 100; k + 16 < body; k += 997) {
        memcpy(s + hl + k, "\\u00e9", 6);
        memcpy(s + hl + k + 13, "\\n", 2);
    }
    memcpy(s + hl + body, tail, tl);

    long live = core_alloc_live();
    struct core_rpc_env env;
    ck_assert_int_eq(core_rpc_scan(s, hl + body + tl, &env), 0);
    ck_assert_int_eq(core_alloc_live(), live);
    ck_assert_int_eq(env.kind, CORE_RPC_RESULT);
    ck_assert_span(s, env.id, "77");
    ck_assert_uint_eq(env.result.off, strlen("{\"jsonrpc\":\"2.0\",\"id\":77,\"result\":"));
    ck_assert_uint_eq(env.result.off + env.result.len, hl + body + tl - 1);

    /* A raw control character deep inside still fails the whole frame. */
    s[hl + body / 2 + 3] = '\x1f';
    ck_assert_int_eq(core_rpc_scan(s, hl + body + tl, &env), CORE_EPARSE);
    core_free(s);
}
END_TEST

/* Every special byte at every offset modulo the word size is found by the word skipper. */
START_TEST(test_string_word_boundaries)
{
    char buf[64];
    struct core_rpc_env env;
    for (size_t at = 1; at < 40; at++) {
        memset(buf, 'x', sizeof(buf));
        buf[0] = '"';
        buf[at] = '"';
        ck_assert_int_eq(core_rpc_scan(buf, at + 1, &env), 0);
        buf[at] = '\x01';
        buf[at + 1] = '"';
        ck_assert_int_eq(core_rpc_scan(buf, at + 2, &env), CORE_EPARSE);
        memcpy(buf + at, "\\\"\"", 3);
        ck_assert_int_eq(core_rpc_scan(buf, at + 3, &env), 0);
        ck_assert_int_eq(core_rpc_scan(buf, at + 2, &env), CORE_EPARSE);
        buf[at] = '\x7f';
        buf[at + 1] = '\xff';
        buf[at + 2] = '"';
        ck_assert_int_eq(core_rpc_scan(buf, at + 3, &env), 0);
    }
}
END_TEST

static Suite *jsonrpc_suite(void)
{
    Suite *s = suite_create("jsonrpc");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_id_types);
    tcase_add_test(tc, test_id_null_error);
    tcase_add_test(tc, test_kinds);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_embedded_nul);
    tcase_add_test(tc, test_depth);
    tcase_add_test(tc, test_member_order_and_spans);
    tcase_add_test(tc, test_nested_keys_not_confused);
    tcase_add_test(tc, test_escaped_keys_and_method);
    tcase_add_test(tc, test_method_length);
    tcase_add_test(tc, test_jsonrpc_member);
    tcase_add_test(tc, test_duplicates_flagged);
    tcase_add_test(tc, test_params_recorded);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_obj_get);
    tcase_add_test(tc, test_unescape);
    tcase_add_test(tc, test_str_eq);
    tcase_add_test(tc, test_large_result);
    tcase_add_test(tc, test_string_word_boundaries);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jsonrpc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
