/* Tests for the config edit behind `agentgate token create` (cmd_set_client_token in
 * cmd/admin.c). */
#include "cmd/admin.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

static long live_at_start;

static void setup(void)
{
    live_at_start = core_alloc_live();
}

static void teardown(void)
{
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Runs the edit and checks the whole result. */
static void check_edit(const char *in, const char *client, const char *hash, const char *want)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(cmd_set_client_token(in, strlen(in), client, hash, &out), 0);
    ck_assert_uint_eq(out.len, strlen(want));
    ck_assert_str_eq(out.data, want);
    core_buf_dispose(&out);
}

/* The edited text must also be a valid config that gives the client this hash. */
static void check_parses(const char *in, const char *client, const char *hash)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(cmd_set_client_token(in, strlen(in), client, hash, &out), 0);
    struct core_config *cfg = NULL;
    char err[512] = "";
    int rc = core_config_parse(out.data, out.len, "test.ini", &cfg, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    bool found = false;
    for (size_t i = 0; i < cfg->n_clients; i++) {
        if (strcmp(cfg->clients[i].name, client) == 0) {
            ck_assert_str_eq(cfg->clients[i].token_sha256, hash);
            found = true;
        }
    }
    ck_assert(found);
    core_config_free(cfg);
    core_buf_dispose(&out);
}

static const char base[] = "; agentgate config\n"
                           "[gateway]\n"
                           "listen = 127.0.0.1:7821\n"
                           "\n"
                           "[server.everything]\n"
                           "command = npx   ; a comment\n"
                           "\n"
                           "[client.claude]\n"
                           "# the desktop app\n"
                           "token_sha256 = " H1 "\n"
                           "servers = everything\n"
                           "\n"
                           "[client.cursor]\n"
                           "allow = *\n";

START_TEST(test_replace)
{
    check_edit(base, "claude", H2,
               "; agentgate config\n"
               "[gateway]\n"
               "listen = 127.0.0.1:7821\n"
               "\n"
               "[server.everything]\n"
               "command = npx   ; a comment\n"
               "\n"
               "[client.claude]\n"
               "# the desktop app\n"
               "token_sha256 = " H2 "\n"
               "servers = everything\n"
               "\n"
               "[client.cursor]\n"
               "allow = *\n");
    check_parses(base, "claude", H2);
}
END_TEST

START_TEST(test_insert_after_header)
{
    check_edit(base, "cursor", H2,
               "; agentgate config\n"
               "[gateway]\n"
               "listen = 127.0.0.1:7821\n"
               "\n"
               "[server.everything]\n"
               "command = npx   ; a comment\n"
               "\n"
               "[client.claude]\n"
               "# the desktop app\n"
               "token_sha256 = " H1 "\n"
               "servers = everything\n"
               "\n"
               "[client.cursor]\n"
               "token_sha256 = " H2 "\n"
               "allow = *\n");
    check_parses(base, "cursor", H2);
    /* A header with blanks and a comment, and one on the last line without a newline. */
    check_edit("[ client.x ]  ; mine\nrate = 5/s\n", "x", H1,
               "[ client.x ]  ; mine\ntoken_sha256 = " H1 "\nrate = 5/s\n");
    check_edit("[server.s]\ncommand = c\n[client.x]", "x", H1,
               "[server.s]\ncommand = c\n[client.x]\ntoken_sha256 = " H1 "\n");
}
END_TEST

START_TEST(test_append_section)
{
    char want[1024];
    snprintf(want, sizeof want, "%s\n[client.codex]\ntoken_sha256 = " H2 "\n", base);
    check_edit(base, "codex", H2, want);
    check_parses(base, "codex", H2);
    /* No final newline: one is added before the blank line. */
    check_edit("[server.s]\ncommand = c", "codex", H2,
               "[server.s]\ncommand = c\n\n[client.codex]\ntoken_sha256 = " H2 "\n");
    /* A new file. */
    check_edit("", "codex", H2, "[client.codex]\ntoken_sha256 = " H2 "\n");
    check_parses("", "codex", H2);
    /* A name that only starts like an existing one is another client. */
    check_edit("[client.claude-2]\nallow = *\n", "claude", H1,
               "[client.claude-2]\nallow = *\n\n[client.claude]\ntoken_sha256 = " H1 "\n");
}
END_TEST

START_TEST(test_other_sections_untouched)
{
    const char *in = "[client.a]\n"
                     "token_sha256 = " H1 "\n"
                     "[client.b]\n"
                     "token_env = B_TOKEN\n"
                     "[server.s]\n"
                     "command = c\n"
                     "token_sha256 = not a client key\n";
    check_edit(in, "a", H2,
               "[client.a]\n"
               "token_sha256 = " H2 "\n"
               "[client.b]\n"
               "token_env = B_TOKEN\n"
               "[server.s]\n"
               "command = c\n"
               "token_sha256 = not a client key\n");
}
END_TEST

START_TEST(test_comments_kept)
{
    /* Commented-out keys in the section are comments, not keys: they stay, and the real key
     * is inserted after the header. */
    const char *in = "\xEF\xBB\xBF[client.a]   # first\n"
                     "; token_sha256 = " H1 "\n"
                     "#token_env = X\n"
                     "  ; indented comment\n"
                     "deny = *secret*   ; no secrets\n";
    check_edit(in, "a", H2,
               "\xEF\xBB\xBF[client.a]   # first\n"
               "token_sha256 = " H2 "\n"
               "; token_sha256 = " H1 "\n"
               "#token_env = X\n"
               "  ; indented comment\n"
               "deny = *secret*   ; no secrets\n");
}
END_TEST

START_TEST(test_token_env_replaced)
{
    check_edit("[client.a]\nservers = s\n  token_env = A_TOKEN ; from the shell\nallow = *\n"
               "[server.s]\ncommand = c\n",
               "a", H2,
               "[client.a]\nservers = s\n  token_sha256 = " H2 "\nallow = *\n"
               "[server.s]\ncommand = c\n");
    check_parses("[client.a]\nservers = s\ntoken_env = HOME\n[server.s]\ncommand = c\n", "a", H2);
    /* Both keys (an invalid file): the first becomes the hash, the other goes. */
    check_edit("[client.a]\ntoken_env=A\ntoken_sha256 =" H1 "\nallow = *\n", "a", H2,
               "[client.a]\ntoken_sha256 = " H2 "\nallow = *\n");
}
END_TEST

START_TEST(test_crlf)
{
    check_edit("[client.a]\r\ntoken_env = A\r\n", "a", H1,
               "[client.a]\r\ntoken_sha256 = " H1 "\r\n");
    check_edit("[client.a]\r\nallow = *\r\n", "a", H1,
               "[client.a]\r\ntoken_sha256 = " H1 "\r\nallow = *\r\n");
    check_edit("[gateway]\r\nauth = token\r\n", "b", H1,
               "[gateway]\r\nauth = token\r\n\r\n[client.b]\r\ntoken_sha256 = " H1 "\r\n");
}
END_TEST

START_TEST(test_refused)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "", H1, &out), CORE_EINVAL);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "a\nb", H1, &out), CORE_EINVAL);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "a", "abc", &out), CORE_EINVAL);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "a", H1 "0", &out), CORE_EINVAL);
    ck_assert_int_eq(cmd_set_client_token(
                         base, strlen(base), "a",
                         "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789", &out),
                     CORE_EINVAL);
    ck_assert_uint_eq(out.len, 0);
    /* A limit too small for the result: CORE_ETOOBIG and nothing appended. */
    struct core_buf small;
    core_buf_init(&small, 16);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "a", H1, &small), CORE_ETOOBIG);
    ck_assert_uint_eq(small.len, 0);
    core_buf_dispose(&small);
    core_buf_dispose(&out);
}
END_TEST

START_TEST(test_bad_name_fails_parse)
{
    /* The edit itself does not judge names; the config parser does, with FILE:LINE. */
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(cmd_set_client_token(base, strlen(base), "no spaces", H1, &out), 0);
    struct core_config *cfg = NULL;
    char err[512] = "";
    ck_assert_int_ne(core_config_parse(out.data, out.len, "test.ini", &cfg, err, sizeof err), 0);
    ck_assert_msg(strncmp(err, "test.ini:16:", 12) == 0, "%s", err);
    core_buf_dispose(&out);
}
END_TEST

/* Appends to what out already holds. */
START_TEST(test_appends)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(core_buf_append_str(&out, "prefix|"), 0);
    ck_assert_int_eq(cmd_set_client_token("", 0, "a", H1, &out), 0);
    ck_assert_str_eq(out.data, "prefix|[client.a]\ntoken_sha256 = " H1 "\n");
    core_buf_dispose(&out);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("set_client_token");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replace);
    tcase_add_test(tc, test_insert_after_header);
    tcase_add_test(tc, test_append_section);
    tcase_add_test(tc, test_other_sections_untouched);
    tcase_add_test(tc, test_comments_kept);
    tcase_add_test(tc, test_token_env_replaced);
    tcase_add_test(tc, test_crlf);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_bad_name_fails_parse);
    tcase_add_test(tc, test_appends);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(admin_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
