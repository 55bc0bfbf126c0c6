/* Tests for core/config: remote servers ([server.NAME] url = ...) and their keys. */
#include "core/config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

static long live_at_start;

static void setup(void)
{
    core_alloc_hook_cjson();
    setenv("AGT_REMOTE_TOKEN", "s3cret-token", 1);
    setenv("AGT_TEAM", "core", 1);
    unsetenv("AGT_UNSET");
    setenv("AGT_EMPTY", "", 1);
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

static struct core_config *parse_ok(const char *text)
{
    char err[512] = "";
    struct core_config *cfg = NULL;
    int rc = core_config_parse(text, strlen(text), "t.ini", &cfg, err, sizeof(err));
    ck_assert_msg(rc == 0, "parse failed (%d): %s\n--- input:\n%s", rc, err, text);
    return cfg;
}

/* text must fail with "t.ini:LINE: " and a one-line message containing want. */
static void check_error(const char *text, int line, const char *want)
{
    char err[512] = "";
    struct core_config *cfg = NULL;
    int rc = core_config_parse(text, strlen(text), "t.ini", &cfg, err, sizeof(err));
    ck_assert_msg(rc == CORE_EPARSE, "expected CORE_EPARSE, got %d (%s)\n--- input:\n%s", rc, err,
                  text);
    ck_assert_ptr_null(cfg);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "t.ini:%d: ", line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "expected prefix '%s', got '%s'",
                  prefix, err);
    ck_assert_msg(strstr(err, want) != NULL, "expected '%s' in '%s'", want, err);
    ck_assert_msg(strchr(err, '\n') == NULL, "not one line: %s", err);
}

START_TEST(test_remote_all_keys)
{
    struct core_config *cfg = parse_ok("[server.linear]\n"
                                       "url = https://mcp.linear.app/mcp\n"
                                       "transport = streamable-http\n"
                                       "headers.X-Team = ${env:AGT_TEAM}\n"
                                       "headers.X-Plain = a b\n"
                                       "auth = bearer\n"
                                       "token_env = AGT_REMOTE_TOKEN\n"
                                       "ca_file = /etc/ssl/private-ca.pem\n"
                                       "isolation = session\n"
                                       "request_timeout = 20s\n"
                                       "max_frame = 1MiB\n"
                                       "\n[server.local]\ncommand = c\n");
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_ptr_null(s->command);
    ck_assert_str_eq(s->url, "https://mcp.linear.app/mcp");
    ck_assert_int_eq(s->transport, CORE_TRANSPORT_STREAMABLE);
    ck_assert_uint_eq(s->n_headers, 2);
    ck_assert_str_eq(s->headers[0], "X-Team: core");
    ck_assert_str_eq(s->headers[1], "X-Plain: a b");
    ck_assert_ptr_null(s->headers[2]);
    ck_assert_int_eq(s->auth, CORE_REMOTE_AUTH_BEARER);
    ck_assert_str_eq(s->token_env, "AGT_REMOTE_TOKEN");
    ck_assert_str_eq(s->ca_file, "/etc/ssl/private-ca.pem");
    ck_assert_int_eq(s->isolation, CORE_ISOLATION_SESSION);
    ck_assert_uint_eq(s->max_frame, 1u << 20);
    /* Both variables are this server's secrets: the stdio server must not inherit them. */
    ck_assert_uint_eq(s->n_secret_env, 2);
    bool team = false, token = false;
    for (size_t i = 0; i < s->n_secret_env; i++) {
        team |= strcmp(s->secret_env[i], "AGT_TEAM") == 0;
        token |= strcmp(s->secret_env[i], "AGT_REMOTE_TOKEN") == 0;
    }
    ck_assert(team && token);
    /* The stdio server keeps its defaults, and has no remote fields. */
    ck_assert_ptr_null(cfg->servers[1].url);
    ck_assert_ptr_nonnull(cfg->servers[1].headers);
    ck_assert_uint_eq(cfg->servers[1].n_headers, 0);

    /* Equality and copies cover the new fields. */
    struct core_server_cfg *copy = core_server_cfg_dup(s);
    ck_assert(core_server_cfg_equal(copy, s));
    ck_assert_str_eq(copy->headers[1], "X-Plain: a b");
    copy->transport = CORE_TRANSPORT_SSE;
    ck_assert(!core_server_cfg_equal(copy, s));
    copy->transport = s->transport;
    core_free(copy->ca_file);
    copy->ca_file = NULL;
    ck_assert(!core_server_cfg_equal(copy, s));
    core_server_cfg_free(copy);
    core_config_free(cfg);
}
END_TEST

START_TEST(test_remote_defaults)
{
    struct core_config *cfg = parse_ok("[server.r]\nurl = http://127.0.0.1:9/mcp\n");
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_int_eq(s->transport, CORE_TRANSPORT_AUTO);
    ck_assert_int_eq(s->auth, CORE_REMOTE_AUTH_NONE);
    ck_assert_ptr_null(s->token_env);
    ck_assert_ptr_null(s->ca_file);
    ck_assert_uint_eq(s->n_headers, 0);
    ck_assert_str_eq(s->prefix, "r");
    core_config_free(cfg);
    /* Every transport and auth value; oauth needs nothing more here. */
    cfg = parse_ok("[server.a]\nurl = https://h/sse\ntransport = sse\nauth = oauth\n"
                   "[server.b]\nurl = HTTPS://[::1]:8443/x?y=1\ntransport = auto\nauth = none\n"
                   "headers.Authorization = Bearer static\n");
    ck_assert_int_eq(cfg->servers[0].transport, CORE_TRANSPORT_SSE);
    ck_assert_int_eq(cfg->servers[0].auth, CORE_REMOTE_AUTH_OAUTH);
    ck_assert_str_eq(cfg->servers[1].headers[0], "Authorization: Bearer static");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_remote_command_or_url)
{
    check_error("[server.a]\ncommand = c\nurl = https://h/mcp\n", 3,
                "[server.a] has both command (line 2) and url (line 3); a server is one or the "
                "other");
    check_error("[server.a]\nurl = https://h/mcp\n\ncommand = c\n", 4, "has both command");
    check_error("[server.a]\nprefix = p\n[server.b]\ncommand = c\n", 1,
                "[server.a] has no command (a stdio server) or url (a remote server)");
    /* Each kind's keys stay with it. */
    check_error("[server.a]\nurl = https://h/mcp\nargs = [\"x\"]\n", 3,
                "args: only for command (stdio) servers, and [server.a] has a url");
    check_error("[server.a]\nurl = https://h/mcp\nenv.X = 1\n", 3, "env.X: only for command");
    check_error("[server.a]\nurl = https://h/mcp\ncwd = /tmp\n", 3, "cwd: only for command");
    check_error("[server.a]\ncommand = c\ntransport = sse\n", 3,
                "transport: only for url (remote) servers, and [server.a] has a command");
    check_error("[server.a]\ncommand = c\nheaders.X = 1\n", 3, "headers.X: only for url");
    check_error("[server.a]\ncommand = c\nca_file = /x\n", 3, "ca_file: only for url");
    check_error("[server.a]\ncommand = c\nauth = none\n", 3, "auth: only for url");
}
END_TEST

START_TEST(test_remote_bad_values)
{
    check_error("[server.a]\nurl = ftp://h/x\n", 2, "url: 'ftp://h/x' is not an http:// or "
                                                    "https:// URL");
    check_error("[server.a]\nurl = mcp.linear.app\n", 2, "is not an http:// or https:// URL");
    check_error("[server.a]\nurl = https:///mcp\n", 2, "has no host");
    check_error("[server.a]\nurl = https://:80/mcp\n", 2, "has no host");
    check_error("[server.a]\nurl = https://h:0/\n", 2, "port that is not 1-65535");
    check_error("[server.a]\nurl = https://h:70000/\n", 2, "port that is not 1-65535");
    check_error("[server.a]\nurl = https://h:/\n", 2, "empty port");
    check_error("[server.a]\nurl = https://u:p@h/\n", 2, "carries credentials");
    check_error("[server.a]\nurl = https://h/x#frag\n", 2, "#fragment");
    check_error("[server.a]\nurl = https://[::1/x\n", 2, "unterminated [IPv6]");
    check_error("[server.a]\nurl =\n", 2, "is not an http:// or https:// URL");
    check_error("[server.a]\nurl = https://h/mcp\ntransport = websocket\n", 3,
                "transport: 'websocket' is not auto, streamable-http or sse");
    check_error("[server.a]\nurl = https://h/mcp\nauth = basic\n", 3,
                "auth: 'basic' is not none, bearer or oauth");
    check_error("[server.a]\nurl = https://h/mcp\nauth = bearer\n", 3,
                "auth = bearer needs token_env");
    check_error("[server.a]\nurl = https://h/mcp\ntoken_env = AGT_REMOTE_TOKEN\n", 3,
                "token_env: only with auth = bearer");
    check_error("[server.a]\nurl = https://h/mcp\nauth = bearer\ntoken_env = AGT_UNSET\n", 4,
                "token_env: environment variable AGT_UNSET is not set");
    check_error("[server.a]\nurl = https://h/mcp\nauth = bearer\ntoken_env = AGT_EMPTY\n", 4,
                "token_env: environment variable AGT_EMPTY is empty");
    check_error("[server.a]\nurl = https://h/mcp\nauth = bearer\ntoken_env = 1X\n", 4,
                "not a valid environment variable name");
    check_error("[server.a]\nurl = https://h/mcp\nauth = oauth\nheaders.authorization = x\n", 4,
                "headers.authorization: [server.a] has auth = oauth (line 3)");
    check_error("[server.a]\nurl = https://h/mcp\nca_file =\n", 3, "ca_file: empty");
}
END_TEST

START_TEST(test_remote_headers)
{
    check_error("[server.a]\nurl = https://h/mcp\nheaders.X Y = 1\n", 3,
                "headers.X Y: 'X Y' is not a valid HTTP header name");
    check_error("[server.a]\nurl = https://h/mcp\nheaders. = 1\n", 3, "not a valid HTTP header");
    check_error("[server.a]\nurl = https://h/mcp\nheaders.mcp-session-id = 1\n", 3,
                "Mcp-Session-Id is set by the remote transport itself");
    check_error("[server.a]\nurl = https://h/mcp\nheaders.Host = evil\n", 3,
                "Host is set by the remote transport itself");
    check_error("[server.a]\nurl = https://h/mcp\nheaders.X-A = 1\nheaders.x-a = 2\n", 4,
                "header x-a is set twice");
    check_error("[server.a]\nurl = https://h/mcp\nheaders.X-A = ${env:AGT_UNSET}\n", 3,
                "environment variable AGT_UNSET is not set");
    /* A header value may be empty; a reference to the environment expands. */
    struct core_config *cfg =
        parse_ok("[server.a]\nurl = https://h/mcp\nheaders.X-E =\n"
                 "headers.X-T = team-${env:AGT_TEAM}-x\n");
    ck_assert_str_eq(cfg->servers[0].headers[0], "X-E: ");
    ck_assert_str_eq(cfg->servers[0].headers[1], "X-T: team-core-x");
    ck_assert_str_eq(cfg->servers[0].secret_env[0], "AGT_TEAM");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_remote_secrets_not_passed)
{
    /* A stdio server cannot env_pass another server's header or token variable. */
    check_error("[server.r]\nurl = https://h/mcp\nauth = bearer\ntoken_env = AGT_REMOTE_TOKEN\n"
                "[server.s]\ncommand = c\nenv_pass = AGT_REMOTE_TOKEN\n",
                7, "env_pass: AGT_REMOTE_TOKEN is a secret of [server.r]");
    check_error("[server.s]\ncommand = c\nenv_pass = AGT_TEAM\n"
                "[server.r]\nurl = https://h/mcp\nheaders.X = ${env:AGT_TEAM}\n",
                3, "env_pass: AGT_TEAM is a secret of [server.r]");
}
END_TEST

static Suite *config_remote_suite(void)
{
    Suite *s = suite_create("config_remote");
    TCase *tc = tcase_create("remote");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_remote_all_keys);
    tcase_add_test(tc, test_remote_defaults);
    tcase_add_test(tc, test_remote_command_or_url);
    tcase_add_test(tc, test_remote_bad_values);
    tcase_add_test(tc, test_remote_headers);
    tcase_add_test(tc, test_remote_secrets_not_passed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_remote_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
