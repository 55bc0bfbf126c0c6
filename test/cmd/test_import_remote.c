/* Tests for cmd/import_remote.c: client entries (native url entries and the mcp-remote /
 * supergateway stdio wrappers) read into the keys of a remote [server.NAME] section. Each
 * result is rendered as one line of text so a test states the whole outcome at once. */
#include "cmd/import_remote.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

enum kind { NATIVE, WRAPPER };

/* "url|transport|auth[|token_env=V][|ca=V][|H name=value[!]]...[|U item]...", where ! marks a
 * header flagged as a credential in clear. */
static char *render(const struct cmd_import_remote *r)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_appendf(&b, "%s %s|%s|%s", cmd_import_remote_via_name(r->via), r->url,
                                      r->transport, r->auth),
                     0);
    if (r->token_env != NULL)
        ck_assert_int_eq(core_buf_appendf(&b, "|token_env=%s", r->token_env), 0);
    if (r->ca_file != NULL)
        ck_assert_int_eq(core_buf_appendf(&b, "|ca=%s", r->ca_file), 0);
    if (r->client_id != NULL)
        ck_assert_int_eq(core_buf_appendf(&b, "|client_id=%s", r->client_id), 0);
    if (r->client_secret != NULL)
        ck_assert_int_eq(core_buf_appendf(&b, "|client_secret=%s", r->client_secret), 0);
    for (size_t i = 0; i < r->n_headers; i++)
        ck_assert_int_eq(core_buf_appendf(&b, "|H %s=%s%s", r->headers[i].name, r->headers[i].value,
                                          r->headers[i].secret_in_clear ? "!" : ""),
                         0);
    for (size_t i = 0; i < r->n_unmapped; i++)
        ck_assert_int_eq(core_buf_appendf(&b, "|U %s", r->unmapped[i]), 0);
    return core_buf_take(&b, NULL);
}

/* Runs the parser on the JSON entry; returns its result code and the rendering (or the reason
 * on failure, or "" when the entry is not a wrapper) in *text, freed by the caller. */
static int run(enum kind k, enum cmd_import_dialect d, const char *json, char **text)
{
    cJSON *entry = cJSON_Parse(json);
    ck_assert_msg(entry != NULL, "bad test JSON: %s", json);
    struct cmd_import_remote *r = NULL;
    char why[512] = "";
    int rc = k == NATIVE ? cmd_import_remote_native(d, entry, &r, why, sizeof why)
                         : cmd_import_remote_wrapper(d, entry, &r, why, sizeof why);
    cJSON_Delete(entry);
    if (rc == 0) {
        ck_assert_ptr_nonnull(r);
        *text = render(r);
        cmd_import_remote_free(r);
    } else {
        ck_assert_ptr_null(r);
        *text = core_xstrdup(rc == 1 ? "" : why);
    }
    return rc;
}

static void expect(enum kind k, enum cmd_import_dialect d, const char *json, const char *want)
{
    char *got = NULL;
    int rc = run(k, d, json, &got);
    ck_assert_msg(rc == 0, "%s: rc %d (%s)", json, rc, got);
    ck_assert_msg(strcmp(got, want) == 0, "%s:\n got  %s\n want %s", json, got, want);
    core_free(got);
}

static void expect_fail(enum kind k, enum cmd_import_dialect d, const char *json, const char *want)
{
    char *got = NULL;
    int rc = run(k, d, json, &got);
    ck_assert_msg(rc == CORE_EINVAL, "%s: rc %d (%s)", json, rc, got);
    ck_assert_msg(strcmp(got, want) == 0, "%s:\n got  %s\n want %s", json, got, want);
    core_free(got);
}

static void expect_not_wrapper(enum cmd_import_dialect d, const char *json)
{
    char *got = NULL;
    int rc = run(WRAPPER, d, json, &got);
    ck_assert_msg(rc == 1, "%s: rc %d (%s)", json, rc, got);
    core_free(got);
}

#define CL CMD_IMPORT_DIALECT_CLAUDE
#define CU CMD_IMPORT_DIALECT_CURSOR
#define VS CMD_IMPORT_DIALECT_VSCODE

START_TEST(test_mcp_remote_runners)
{
    const char *want = "mcp-remote https://mcp.linear.app/mcp|auto|oauth";
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"mcp-remote@0.1.37\",\"https://mcp.linear.app/"
           "mcp\"]}",
           want);
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://mcp.linear.app/mcp\"]}", want);
    expect(WRAPPER, CL,
           "{\"command\":\"/usr/local/bin/npx\",\"args\":[\"--yes\",\"mcp-remote@latest\",\"https:/"
           "/mcp.linear.app/mcp\"]}",
           want);
    expect(WRAPPER, CL,
           "{\"command\":\"C:\\\\nodejs\\\\npx.cmd\",\"args\":[\"-y\",\"mcp-remote\",\"https://"
           "mcp.linear.app/mcp\"]}",
           want);
    expect(WRAPPER, CL, "{\"command\":\"mcp-remote\",\"args\":[\"https://mcp.linear.app/mcp\"]}",
           want);
    expect(WRAPPER, CL,
           "{\"command\":\"bunx\",\"args\":[\"mcp-remote@0.1.37\",\"https://mcp.linear.app/mcp\"]}",
           want);
    expect(
        WRAPPER, CL,
        "{\"command\":\"pnpm\",\"args\":[\"dlx\",\"mcp-remote\",\"https://mcp.linear.app/mcp\"]}",
        want);
    expect(
        WRAPPER, CL,
        "{\"command\":\"yarn\",\"args\":[\"dlx\",\"mcp-remote\",\"https://mcp.linear.app/mcp\"]}",
        want);
    expect(WRAPPER, CL,
           "{\"type\":\"stdio\",\"command\":\"npx\",\"args\":[\"-p\",\"mcp-remote@0.1.37\",\"mcp-"
           "remote\",\"https://mcp.linear.app/mcp\"]}",
           want);
}
END_TEST

START_TEST(test_not_wrappers)
{
    expect_not_wrapper(
        CL, "{\"command\":\"npx\",\"args\":[\"-y\",\"@modelcontextprotocol/server-everything\"]}");
    expect_not_wrapper(
        CL, "{\"command\":\"npx\",\"args\":[\"mcp-remote-helper\",\"https://x.example/mcp\"]}");
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":[\"--node-options=--inspect\",\"mcp-"
                           "remote\",\"https://x.example/mcp\"]}");
    expect_not_wrapper(
        CL, "{\"command\":\"node\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\"]}");
    expect_not_wrapper(
        CL, "{\"command\":\"pnpm\",\"args\":[\"exec\",\"mcp-remote\",\"https://x.example/mcp\"]}");
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":[\"-y\"]}");
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":[\"mcp-remote\",7]}");
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":\"mcp-remote https://x.example/mcp\"}");
    expect_not_wrapper(CL, "{\"url\":\"https://x.example/mcp\"}");
    /* supergateway serving a stdio server, or serving at all, is not a client wrapper. */
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--stdio\","
                           "\"uvx mcp-server-git\"]}");
    expect_not_wrapper(CL, "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--sse\","
                           "\"https://x.example/sse\",\"--outputTransport\",\"ws\"]}");
    expect_not_wrapper(
        CL, "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--port\",\"8000\"]}");
}
END_TEST

START_TEST(test_mcp_remote_transport)
{
#define BASE                                                                                       \
    "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/"                           \
    "mcp\",\"--transport\",\"%s\"]}"
    const char *cases[][2] = {{"http-first", "auto"},
                              {"sse-first", "auto"},
                              {"http-only", "streamable-http"},
                              {"sse-only", "sse"}};
    char json[256], want[128];
    for (size_t i = 0; i < 4; i++) {
        snprintf(json, sizeof json, BASE, cases[i][0]);
        snprintf(want, sizeof want, "mcp-remote https://x.example/mcp|%s|oauth", cases[i][1]);
        expect(WRAPPER, CL, json, want);
    }
    /* mcp-remote ignores a strategy it does not know, and so do we, saying so. */
    snprintf(json, sizeof json, BASE, "websocket");
#undef BASE
    expect(WRAPPER, CL, json,
           "mcp-remote https://x.example/mcp|auto|oauth|U --transport websocket");
}
END_TEST

START_TEST(test_mcp_remote_flags)
{
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"mcp-remote\",\"https://x.example/mcp\","
           "\"3334\",\"--allow-http\",\"--host\",\"127.0.0.1\",\"--debug\",\"--resource\","
           "\"https://t.example/\",\"--ignore-tool\",\"delete*\",\"--auth-timeout\",\"60\","
           "\"--enable-proxy\",\"--silent\",\"--disable-resource-parameter\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth|U 3334|U --host 127.0.0.1|U --debug"
           "|U --resource https://t.example/|U --ignore-tool delete*|U --auth-timeout 60"
           "|U --enable-proxy|U --silent|U --disable-resource-parameter");
    /* Inline static client info becomes client_id / client_secret; a file, or more keys, do
     * not; with a static Authorization header there is no OAuth, so it goes unused. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\","
           "\"--static-oauth-client-info\",\"{\\\"client_id\\\":\\\"abc\\\",\\\"client_secret\\\":"
           "\\\"s3\\\"}\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth|client_id=abc|client_secret=s3");
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\","
           "\"--static-oauth-client-info\",\"@/home/me/info.json\","
           "\"--static-oauth-client-info\",\"{\\\"client_id\\\":\\\"second\\\"}\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth"
           "|U --static-oauth-client-info @/home/me/info.json"
           "|U --static-oauth-client-info {\"client_id\":\"second\"}");
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\","
           "\"--static-oauth-client-info\","
           "\"{\\\"client_id\\\":\\\"abc\\\",\\\"redirect_uris\\\":[]}\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth"
           "|U --static-oauth-client-info {\"client_id\":\"abc\",\"redirect_uris\":[]}");
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\","
           "\"--static-oauth-client-info\",\"{\\\"client_id\\\":\\\"abc\\\"}\",\"--header\","
           "\"Authorization: Bearer t\"]}",
           "mcp-remote https://x.example/mcp|auto|none|H Authorization=Bearer t!"
           "|U --static-oauth-client-info {\"client_id\":\"abc\"}");
    /* Headers are taken out first, wherever they stand: the URL may follow them. */
    expect(WRAPPER, CL,
           "{\"command\":\"mcp-remote\",\"args\":[\"--header\",\"X-Team: "
           "core\",\"https://x.example/mcp\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth|H X-Team=core");
    expect_fail(WRAPPER, CL,
                "{\"command\":\"mcp-remote\",\"args\":[\"--debug\",\"https://x.example/mcp\"]}",
                "mcp-remote reads its first argument (after the headers) as the server URL, and "
                "here it is '--debug'");
    expect_fail(WRAPPER, CL, "{\"command\":\"npx\",\"args\":[\"mcp-remote\"]}",
                "mcp-remote is given no server URL");
    expect_fail(WRAPPER, CL, "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"\"]}",
                "the server URL is empty");
}
END_TEST

START_TEST(test_mcp_remote_headers)
{
    /* ${NAME} that the entry's env does not hold: the daemon's environment, as bearer. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
           "\"Authorization: Bearer ${GH_TOKEN}\"]}",
           "mcp-remote https://x.example/mcp|auto|bearer|token_env=GH_TOKEN");
    /* The README's Authorization:${AUTH_HEADER} with the value in env: a static header, in
     * clear as the client had it; the variable is used up; other env is not carried over. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
           "\"Authorization:${AUTH_HEADER}\",\"--header\",\"x-api-key:k-${KEY_PART}\"],"
           "\"env\":{\"AUTH_HEADER\":\"Bearer "
           "abc123\",\"DEBUG\":\"1\",\"KEY_PART\":\"${NOT_AGAIN}\"}}",
           "mcp-remote https://x.example/mcp|auto|none|H Authorization=Bearer abc123!"
           "|H x-api-key=k-${NOT_AGAIN}!|U env.DEBUG = 1");
    /* Only the variable unresolved in env: the whole header read from the environment. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
           "\"Authorization:${AUTH_HEADER}\"]}",
           "mcp-remote https://x.example/mcp|auto|none|H Authorization=${env:AUTH_HEADER}");
    /* The later of two same-named headers wins (case-insensitive); a malformed one is ignored
     * by mcp-remote and reported by us. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/"
           "mcp\",\"--header\",\"X-A: 1\","
           "\"--header\",\"x-a: 2\",\"--header\",\"no colon\"]}",
           "mcp-remote https://x.example/mcp|auto|oauth|H x-a=2|U --header no colon");
    /* Cursor and VS Code expand ${env:NAME} themselves, in args and in env. */
    expect(WRAPPER, CU,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
           "\"Authorization: Bearer ${env:LINEAR_KEY}\"]}",
           "mcp-remote https://x.example/mcp|auto|bearer|token_env=LINEAR_KEY");
    expect(WRAPPER, VS,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
           "\"Authorization: Bearer ${TOK}\"],\"env\":{\"TOK\":\"${env:REAL_TOKEN}\"}}",
           "mcp-remote https://x.example/mcp|auto|bearer|token_env=REAL_TOKEN");
    expect_fail(
        WRAPPER, VS,
        "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
        "\"Authorization: Bearer ${input:tok}\"]}",
        "headers.Authorization uses ${input:tok}, a client variable agentgate cannot "
        "resolve; only ${env:NAME} is supported");
    expect_fail(
        WRAPPER, CL,
        "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\",\"--header\","
        "\"Authorization: Bearer ${env:TOK}\"]}",
        "headers.Authorization contains \"${env:\", which agentgate would expand but Claude "
        "passes as is");
}
END_TEST

START_TEST(test_wrapper_env_and_keys)
{
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"mcp-remote\",\"https://x.example/mcp\"],\"env\":"
           "{\"NODE_EXTRA_CA_CERTS\":\"/etc/corp-ca.pem\",\"HTTPS_PROXY\":\"http://p:3128\"},"
           "\"cwd\":\"/tmp\",\"autoApprove\":[\"read\"],\"type\":\"stdio\"}",
           "mcp-remote https://x.example/mcp|auto|oauth|ca=/etc/corp-ca.pem"
           "|U env.HTTPS_PROXY = http://p:3128|U cwd = /tmp|U autoApprove = [\"read\"]");
}
END_TEST

START_TEST(test_supergateway)
{
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--sse\",\"https://x.example/"
           "sse\"]}",
           "supergateway https://x.example/sse|sse|none");
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway@3.4.0\",\"--streamableHttp\","
           "\"https://x.example/mcp\"]}",
           "supergateway https://x.example/mcp|streamable-http|none");
    expect(WRAPPER, CL,
           "{\"command\":\"supergateway\",\"args\":[\"--streamable-http=https://x.example/"
           "mcp\",\"--outputTransport\",\"stdio\"]}",
           "supergateway https://x.example/mcp|streamable-http|none");
    /* Headers are split at the first colon and trimmed; --oauth2Bearer is an Authorization
     * header (a literal token: kept, flagged); other options are reported with their values. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--sse\",\"https://x.example/"
           "sse\","
           "\"--header\",\" X-User-Id : 123 "
           "\",\"--oauth2Bearer\",\"tok\",\"--logLevel\",\"none\",\"--cors\"]}",
           "supergateway https://x.example/sse|sse|none|H X-User-Id=123|H Authorization=Bearer tok!"
           "|U --logLevel none|U --cors");
    expect(WRAPPER, CU,
           "{\"command\":\"npx\",\"args\":[\"-y\",\"supergateway\",\"--sse\",\"https://x.example/"
           "sse\","
           "\"--oauth2Bearer\",\"${env:SG_TOKEN}\"]}",
           "supergateway https://x.example/sse|sse|bearer|token_env=SG_TOKEN");
    /* supergateway expands nothing: in a Claude file ${X} is literal text. */
    expect(WRAPPER, CL,
           "{\"command\":\"npx\",\"args\":[\"supergateway\",\"--sse\",\"https://x.example/"
           "sse\",\"--header\",\"X-V: ${X}\"]}",
           "supergateway https://x.example/sse|sse|none|H X-V=${X}");
    expect_fail(WRAPPER, CL,
                "{\"command\":\"npx\",\"args\":[\"supergateway\",\"--sse\",\"https://a.example/"
                "sse\",\"--streamableHttp\",\"https://b.example/mcp\"]}",
                "supergateway is given two server URLs");
}
END_TEST

START_TEST(test_native_transport)
{
    expect(NATIVE, CL, "{\"url\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|auto|oauth");
    expect(NATIVE, CL, "{\"type\":\"sse\",\"url\":\"https://x.example/sse\"}",
           "url https://x.example/sse|sse|oauth");
    expect(NATIVE, CL, "{\"type\":\"http\",\"url\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|streamable-http|oauth");
    expect(NATIVE, CU, "{\"type\":\"streamableHttp\",\"url\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|streamable-http|oauth");
    expect(NATIVE, CU, "{\"type\":\"streamable-http\",\"url\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|streamable-http|oauth");
    /* Windsurf calls it serverUrl (a url next to it wins, and serverUrl is then reported). */
    expect(NATIVE, CU, "{\"serverUrl\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|auto|oauth");
    expect(NATIVE, CU,
           "{\"url\":\"https://x.example/mcp\",\"serverUrl\":\"https://y.example/mcp\"}",
           "url https://x.example/mcp|auto|oauth|U serverUrl = https://y.example/mcp");
    /* VS Code's "http" falls back to SSE by itself: auto. */
    expect(NATIVE, VS, "{\"type\":\"http\",\"url\":\"https://x.example/mcp\"}",
           "url https://x.example/mcp|auto|oauth");
}
END_TEST

START_TEST(test_native_headers)
{
    expect(NATIVE, CL,
           "{\"type\":\"http\",\"url\":\"https://x.example/"
           "mcp\",\"headers\":{\"Authorization\":\"Bearer ${GH}\",\"X-Team\":\"core\"}}",
           "url https://x.example/mcp|streamable-http|bearer|token_env=GH|H X-Team=core");
    expect(
        NATIVE, CU,
        "{\"url\":\"https://x.example/mcp\",\"headers\":{\"authorization\":\"bearer ${env:GH}\"}}",
        "url https://x.example/mcp|auto|bearer|token_env=GH");
    /* A literal token stays (in clear, flagged); auth is none because the header is the auth. */
    expect(NATIVE, CL,
           "{\"type\":\"sse\",\"url\":\"https://x.example/"
           "sse\",\"headers\":{\"Authorization\":\"Bearer abc\"}}",
           "url https://x.example/sse|sse|none|H Authorization=Bearer abc!");
    /* Not "Bearer ${env:X}" alone: a static header read from the environment. */
    expect(NATIVE, CU,
           "{\"url\":\"https://x.example/mcp\",\"headers\":{\"Authorization\":\"Basic "
           "${env:B64}\",\"X-Api-Key\":\"k\",\"Cookie\":\"s=1\"}}",
           "url https://x.example/mcp|auto|none|H Authorization=Basic ${env:B64}|H X-Api-Key=k!|H "
           "Cookie=s=1!");
    /* A url with a variable, and keys agentgate has no place for. */
    expect(NATIVE, VS,
           "{\"type\":\"http\",\"url\":\"https://${env:HOST}/"
           "mcp\",\"gallery\":true,\"dev\":{\"watch\":\"x\"}}",
           "url https://${env:HOST}/mcp|auto|oauth|U gallery = true|U dev = {\"watch\":\"x\"}");
    expect_fail(NATIVE, VS,
                "{\"type\":\"http\",\"url\":\"https://x.example/"
                "mcp\",\"headers\":{\"Authorization\":\"Bearer ${input:gh-token}\"}}",
                "headers.Authorization uses ${input:gh-token}, a client variable agentgate cannot "
                "resolve; only ${env:NAME} is supported");
    expect_fail(NATIVE, CL, "{\"url\":\"https://x.example/mcp\",\"headers\":{\"X Y\":\"1\"}}",
                "header name 'X Y' is not a valid HTTP header name");
    expect_fail(NATIVE, CL, "{\"url\":\"https://x.example/mcp\",\"headers\":{\"X\":1}}",
                "headers.X is not a string");
    expect_fail(NATIVE, CL, "{\"url\":\"https://x.example/mcp\",\"headers\":[]}",
                "\"headers\" is not an object");
    expect_fail(NATIVE, CL, "{\"type\":\"sse\",\"url\":42}", "\"url\" is not a string");
}
END_TEST

static Suite *import_remote_suite(void)
{
    Suite *s = suite_create("import_remote");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_mcp_remote_runners);
    tcase_add_test(tc, test_not_wrappers);
    tcase_add_test(tc, test_mcp_remote_transport);
    tcase_add_test(tc, test_mcp_remote_flags);
    tcase_add_test(tc, test_mcp_remote_headers);
    tcase_add_test(tc, test_wrapper_env_and_keys);
    tcase_add_test(tc, test_supergateway);
    tcase_add_test(tc, test_native_transport);
    tcase_add_test(tc, test_native_headers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    core_alloc_hook_cjson();
    SRunner *sr = srunner_create(import_remote_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
