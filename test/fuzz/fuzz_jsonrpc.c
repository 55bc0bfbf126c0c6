/* libFuzzer target for the JSON-RPC envelope scanner. Besides looking for crashes it checks
 * the scanner's own promises (spans in bounds, batch elements valid) and compares its verdict
 * with cJSON's, skipping the inputs where cJSON knowingly departs from RFC 8259. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* cJSON copies at most 63 number characters before calling strtod, so longer numbers fail
 * there although the grammar allows them. */
static bool has_long_number_run(const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = is_num_char(p[i]) ? run + 1 : 0;
        if (run >= 60)
            return true;
    }
    return false;
}

/* cJSON rejects unpaired surrogates in \u escapes; the grammar allows them. */
static bool has_surrogate_escape(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++) {
        if (p[i] == '\\' && p[i + 1] == 'u' && (p[i + 2] == 'd' || p[i + 2] == 'D') &&
            strchr("89abcdefABCDEF", p[i + 3]) != NULL && p[i + 3] != '\0')
            return true;
    }
    return false;
}

/* Inputs cJSON accepts although RFC 8259 does not:
 * - any byte <= 0x20 counts as whitespace, and raw control characters pass inside strings;
 * - a UTF-8 byte order mark at the start is skipped;
 * - \u with a non-hex digit decodes as U+0000;
 * - numbers go through strtod, so "01", "1.", "1.e5" and "-.5" pass;
 * - nesting is limited at 1000 instead of our 256. */
static bool cjson_is_lenient(const char *p, size_t n)
{
    size_t opens = 0;
    bool in_string = false;
    if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char prev = i > 0 ? p[i - 1] : ' ';
        char next = i + 1 < n ? p[i + 1] : ' ';
        /* Tracks strings roughly (an escape skips the next byte) to tell raw tabs and
         * newlines inside strings, which cJSON passes, from whitespace between tokens. */
        if (in_string && c == '\\' && next != 'u') {
            i++;
            continue;
        }
        if (c == '"')
            in_string = !in_string;
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r')))
            return true;
        if (c == '[' || c == '{')
            opens++;
        if (c == '\\' && next == 'u') {
            for (size_t k = i + 2; k < i + 6; k++) {
                if (k >= n || !is_hex(p[k]))
                    return true;
            }
        }
        if (c == '.' && (!(next >= '0' && next <= '9') || prev == '-'))
            return true;
        if (c == '0' && next >= '0' && next <= '9') {
            bool exponent = prev == '+' || prev == 'e' || prev == 'E' ||
                            (prev == '-' && i >= 2 && (p[i - 2] == 'e' || p[i - 2] == 'E'));
            bool inner = (prev >= '0' && prev <= '9') || prev == '.';
            if (!exponent && !inner)
                return true;
        }
    }
    return opens > 256;
}

static void check_span(struct core_span s, size_t n)
{
    CHECK(s.off <= n && s.len <= n - s.off);
}

/* How many members of a cJSON object carry this key, as cJSON sees keys (C strings). */
static int count_members(const cJSON *obj, const char *key)
{
    int k = 0;
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        if (c->string != NULL && strcmp(c->string, key) == 0)
            k++;
    }
    return k;
}

static const cJSON *last_member(const cJSON *obj, const char *key)
{
    const cJSON *last = NULL;
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        if (c->string != NULL && strcmp(c->string, key) == 0)
            last = c;
    }
    return last;
}

/* Compares the recorded members with cJSON's tree of the same object. */
static void compare_envelope(const char *p, size_t n, const struct core_rpc_env *env,
                             const cJSON *root)
{
    /* cJSON keeps keys as C strings, so a key with an escaped NUL looks like its prefix. */
    if (memmem(p, n, "\\u0000", 6) != NULL)
        return;
    static const char *const names[] = {"id", "method", "params", "result", "error"};
    const struct core_span *spans[] = {&env->id, &env->method, &env->params, &env->result,
                                       &env->error};
    for (size_t k = 0; k < 5; k++)
        CHECK((count_members(root, names[k]) > 0) == (spans[k]->len > 0));
    /* A repeat of a recorded key, at the top or in an object params, is flagged, and only then;
     * the recorded params members are exactly cJSON's. */
    static const char *const top[] = {"jsonrpc", "id", "method", "params", "result", "error"};
    static const char *const pnames[] = {"name",   "uri",          "cursor",          "_meta",
                                         "ref",    "level",        "requestId",       "reason",
                                         "progressToken", "protocolVersion", "capabilities",
                                         "clientInfo"};
    bool dup = false;
    for (size_t k = 0; k < 6; k++)
        dup = dup || count_members(root, top[k]) > 1;
    const cJSON *params = last_member(root, "params");
    if (count_members(root, "params") == 1 && cJSON_IsObject(params)) {
        for (size_t k = 0; k < sizeof pnames / sizeof pnames[0]; k++) {
            int c = count_members(params, pnames[k]);
            dup = dup || c > 1;
            CHECK((c > 0) == (env->param[k].len > 0));
        }
    }
    CHECK(dup == env->dup);
    const cJSON *m = last_member(root, "method");
    if (m != NULL && cJSON_IsString(m) && env->kind != CORE_RPC_INVALID)
        CHECK(strcmp(m->valuestring, env->method_str) == 0);
    const cJSON *j = last_member(root, "jsonrpc");
    bool is_20 = j != NULL && cJSON_IsString(j) && strcmp(j->valuestring, "2.0") == 0;
    CHECK(is_20 == env->has_jsonrpc);
}

static void exercise_envelope(const char *p, size_t n, const struct core_rpc_env *env)
{
    char buf[256];
    check_span(env->id, n);
    check_span(env->method, n);
    check_span(env->params, n);
    check_span(env->result, n);
    check_span(env->error, n);
    CHECK(strlen(env->method_str) < CORE_RPC_METHOD_MAX);
    CHECK((env->id.len == 0) == (env->id_type == CORE_JSON_ABSENT));
    if (env->kind == CORE_RPC_REQUEST || env->kind == CORE_RPC_NOTIFICATION) {
        int rc = core_json_unescape(p + env->method.off, env->method.len, buf, sizeof(buf));
        CHECK(rc >= 0 && strcmp(buf, env->method_str) == 0);
        CHECK(core_json_str_eq(p, env->method, env->method_str));
    }
    if (env->id_type == CORE_JSON_STRING) {
        int rc = core_json_unescape(p + env->id.off, env->id.len, buf, sizeof(buf));
        CHECK(rc >= 0 || rc == CORE_ETOOBIG || rc == CORE_EPARSE);
    }
    if (env->params.len > 0 && p[env->params.off] == '{') {
        struct core_span v;
        enum core_json_type t;
        int rc = core_json_obj_get(p, env->params, "name", &v, &t);
        CHECK(rc == 0 || rc == CORE_ENOTFOUND || rc == CORE_EDUP);
        CHECK(rc != CORE_EDUP || env->dup);
        if (rc == 0) {
            check_span(v, n);
            struct core_rpc_env sub;
            CHECK(core_rpc_scan(p + v.off, v.len, &sub) == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct core_rpc_env env;
    int rc = core_rpc_scan(p, size, &env);

    CHECK(rc == 0 || rc == CORE_EPARSE);
    size_t batch_len = 0;
    if (rc == 0) {
        exercise_envelope(p, size, &env);
        if (env.kind == CORE_RPC_BATCH) {
            size_t pos = 0;
            struct core_span elem;
            for (;;) {
                int b = core_rpc_batch_next(p, size, &pos, &elem);
                CHECK(b == 0 || b == 1);
                if (b == 0)
                    break;
                check_span(elem, size);
                struct core_rpc_env sub;
                CHECK(core_rpc_scan(p + elem.off, elem.len, &sub) == 0);
                exercise_envelope(p + elem.off, elem.len, &sub);
                batch_len++;
            }
        }
    }

    /* cJSON gets its own NUL-terminated copy so that its reads are its own business, while
     * the scanner above read the fuzzer's exactly-sized buffer. */
    char *copy = core_xstrndup(p, size);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, size, &end, 0);
    bool cj_ok = root != NULL;
    if (cj_ok) {
        for (size_t i = (size_t)(end - copy); i < size; i++) {
            if (!is_json_ws(copy[i])) {
                cj_ok = false;
                break;
            }
        }
    }
    if (rc == 0 && !has_long_number_run(p, size) && !has_surrogate_escape(p, size))
        CHECK(cj_ok);
    if (cj_ok && !cjson_is_lenient(p, size))
        CHECK(rc == 0);
    if (rc == 0 && cj_ok && !has_long_number_run(p, size) && !has_surrogate_escape(p, size)) {
        if (env.kind == CORE_RPC_BATCH)
            CHECK((size_t)cJSON_GetArraySize(root) == batch_len);
        else if (cJSON_IsObject(root))
            compare_envelope(p, size, &env, root);
    }
    cJSON_Delete(root);
    core_free(copy);
    return 0;
}
