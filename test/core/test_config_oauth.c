/* Tests for core/config: the OAuth keys of remote servers (auth = oauth). */
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
    setenv("AGT_OAUTH_SECRET", "oauth-secret-1", 1);
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

static void check_error(const char *text, int line, const char *want)
{
    char err[512] = "";
    struct core_config *cfg = NULL;
    int rc = core_config_parse(text, strlen(text), "t.ini", &cfg, err, sizeof(err));
    ck_assert_msg(rc == CORE_EPARSE, "expected CORE_EPARSE, got %d (%s)", rc, err);
    ck_assert_ptr_null(cfg);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "t.ini:%d: ", line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "expected prefix '%s', got '%s'",
                  prefix, err);
    ck_assert_msg(strstr(err, want) != NULL, "expected '%s' in '%s'", want, err);
}

START_TEST(test_oauth_keys)
{
    struct core_config *cfg = parse_ok("[server.linear]\n"
                                       "url = https://mcp.linear.app/mcp\n"
                                       "auth = oauth\n"
                                       "client_id = agentgate-cli\n"
                                       "client_secret = ${env:AGT_OAUTH_SECRET}\n"
                                       "scopes = read write\n"
                                       "oauth_grant = client_credentials\n"
                                       "client_metadata_url = https://example.com/client.json\n");
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_int_eq(s->auth, CORE_REMOTE_AUTH_OAUTH);
    ck_assert_str_eq(s->client_id, "agentgate-cli");
    ck_assert_str_eq(s->client_secret, "oauth-secret-1");
    ck_assert_str_eq(s->scopes, "read write");
    ck_assert_str_eq(s->client_metadata_url, "https://example.com/client.json");
    ck_assert(s->oauth_client_credentials);
    /* The secret's variable is not inherited by any server. */
    bool listed = false;
    for (size_t i = 0; i < s->n_secret_env; i++)
        listed = listed || strcmp(s->secret_env[i], "AGT_OAUTH_SECRET") == 0;
    ck_assert(listed);
    struct core_server_cfg *copy = core_server_cfg_dup(s);
    ck_assert(core_server_cfg_equal(copy, s));
    core_free(copy->scopes);
    copy->scopes = core_xstrdup("read");
    ck_assert(!core_server_cfg_equal(copy, s));
    core_server_cfg_free(copy);
    core_config_free(cfg);

    cfg = parse_ok("[server.a]\nurl = https://a.example/mcp\nauth = oauth\n");
    ck_assert_ptr_null(cfg->servers[0].client_id);
    ck_assert(!cfg->servers[0].oauth_client_credentials);
    core_config_free(cfg);
}
END_TEST

START_TEST(test_oauth_key_errors)
{
    check_error("[server.a]\nurl = https://a/mcp\nclient_id = x\n", 3,
                "client_id: only with auth = oauth");
    check_error("[server.a]\nurl = https://a/mcp\nauth = bearer\ntoken_env = AGT_OAUTH_SECRET\n"
                "scopes = x\n",
                5, "scopes: only with auth = oauth");
    check_error("[server.a]\ncommand = c\nclient_id = x\n", 3, "only for url (remote) servers");
    check_error("[server.a]\nurl = https://a/mcp\nauth = oauth\nclient_secret = s\n", 4,
                "client_secret: needs client_id");
    check_error("[server.a]\nurl = https://a/mcp\nauth = oauth\nclient_id = x\n"
                "oauth_grant = client_credentials\n",
                5, "needs client_id and client_secret");
    check_error("[server.a]\nurl = https://a/mcp\nauth = oauth\noauth_grant = implicit\n", 4,
                "is not authorization_code or client_credentials");
    check_error("[server.a]\nurl = https://a/mcp\nauth = oauth\n"
                "client_metadata_url = http://a/c.json\n",
                4, "is not an https URL");
    check_error("[server.a]\nurl = https://a/mcp\nauth = oauth\nclient_id =\n", 4,
                "client_id: empty");
}
END_TEST

static Suite *config_oauth_suite(void)
{
    Suite *s = suite_create("config_oauth");
    TCase *tc = tcase_create("oauth");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_oauth_keys);
    tcase_add_test(tc, test_oauth_key_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_oauth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
