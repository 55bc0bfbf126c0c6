/* Tests for core/config: good files, every error class with its line, values, leaks. */
#include "core/config.h"

#include <check.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"

/* Internal (GW_STATIC) in core/config.c. */
int config_split_pair(const char *s, size_t n, size_t *name_len, size_t *value_off,
                      size_t *value_len);

static long live_at_start;

static void setup(void)
{
    core_alloc_hook_cjson();
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
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* Parses text, which must fail with "t.ini:LINE: " followed by a message containing want. */
static void check_error(const char *text, int line, const char *want)
{
    char err[512] = "";
    struct core_config *sentinel = (struct core_config *)&live_at_start;
    struct core_config *cfg = sentinel;
    int rc = core_config_parse(text, strlen(text), "t.ini", &cfg, err, sizeof(err));
    ck_assert_msg(rc == CORE_EPARSE, "expected CORE_EPARSE, got %d (%s)\n--- input:\n%s", rc, err,
                  text);
    ck_assert_msg(cfg == sentinel, "out written on failure");
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "t.ini:%d: ", line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "expected prefix '%s', got '%s'",
                  prefix, err);
    ck_assert_msg(strstr(err + strlen(prefix), want) != NULL, "expected '%s' in '%s'", want, err);
    ck_assert_msg(strchr(err, '\n') == NULL && strchr(err, '\r') == NULL, "not one line: %s", err);
}

/* Parses text, which must fail with exactly this message. */
static void check_error_is(const char *text, const char *want)
{
    char err[512] = "";
    struct core_config *cfg = NULL;
    int rc = core_config_parse(text, strlen(text), "t.ini", &cfg, err, sizeof(err));
    ck_assert_int_eq(rc, CORE_EPARSE);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, want);
}

static const char example[] =
    "; agentgate configuration\n"
    "[gateway]\n"
    "listen = 127.0.0.1:7821      ; \"off\" disables TCP\n"
    "socket = /run/user/1000/agentgate/agentgate.sock   ; \"off\" disables\n"
    "log_level = debug            ; error|warn|info|debug|trace\n"
    "auth = none\n"
    "max_body = 8MiB\n"
    "list_timeout = 7s\n"
    "idle_timeout = 90s\n"
    "\n"
    "[server.everything]\n"
    "command = npx\n"
    "args = [\"-y\", \"@modelcontextprotocol/server-everything\"]\n"
    "env.API_KEY = ${env:EVERYTHING_KEY}\n"
    "env.MODE = fast\n"
    "cwd = /home/me\n"
    "prefix = every_thing        ; default: the section's name\n"
    "isolation = session         ; shared | session\n"
    "restart = always            ; always | on-failure | never\n"
    "request_timeout = 250ms\n"
    "roots = [\"file:///home/me/project\", \"file:///tmp\"]\n"
    "max_frame = 512KiB\n";

static void check_example(const struct core_config *cfg)
{
    ck_assert_str_eq(cfg->path, "t.ini");
    ck_assert_str_eq(cfg->listen, "127.0.0.1:7821");
    ck_assert_str_eq(cfg->socket, "/run/user/1000/agentgate/agentgate.sock");
    ck_assert_int_eq(cfg->log_level, CORE_LOG_DEBUG);
    ck_assert_str_eq(cfg->auth, "none");
    ck_assert_uint_eq(cfg->max_body, 8u << 20);
    ck_assert_uint_eq(cfg->list_timeout_ms, 7000);
    ck_assert_uint_eq(cfg->idle_timeout_ms, 90000);
    ck_assert_uint_eq(cfg->n_servers, 1);
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_str_eq(s->name, "everything");
    ck_assert_int_eq(s->line, 11);
    ck_assert_str_eq(s->command, "npx");
    ck_assert_uint_eq(s->n_args, 2);
    ck_assert_str_eq(s->args[0], "-y");
    ck_assert_str_eq(s->args[1], "@modelcontextprotocol/server-everything");
    ck_assert_ptr_null(s->args[2]);
    ck_assert_uint_eq(s->n_env, 2);
    ck_assert_str_eq(s->env[0], "API_KEY=s3cr3t value");
    ck_assert_str_eq(s->env[1], "MODE=fast");
    ck_assert_ptr_null(s->env[2]);
    ck_assert_str_eq(s->cwd, "/home/me");
    ck_assert_str_eq(s->prefix, "every_thing");
    ck_assert_int_eq(s->isolation, CORE_ISOLATION_SESSION);
    ck_assert_int_eq(s->restart, CORE_RESTART_ALWAYS);
    ck_assert_uint_eq(s->request_timeout_ms, 250);
    ck_assert_uint_eq(s->n_roots, 2);
    ck_assert_str_eq(s->roots[0], "file:///home/me/project");
    ck_assert_str_eq(s->roots[1], "file:///tmp");
    ck_assert_ptr_null(s->roots[2]);
    ck_assert_uint_eq(s->max_frame, 512u << 10);
}

START_TEST(test_all_keys)
{
    setenv("EVERYTHING_KEY", "s3cr3t value", 1);
    struct core_config *cfg = parse_ok(example);
    check_example(cfg);
    core_config_free(cfg);
}
END_TEST

START_TEST(test_crlf)
{
    setenv("EVERYTHING_KEY", "s3cr3t value", 1);
    struct core_buf b;
    core_buf_init(&b, 0);
    for (const char *q = example; *q; q++) {
        if (*q == '\n')
            ck_assert_int_eq(core_buf_append(&b, "\r\n", 2), 0);
        else
            ck_assert_int_eq(core_buf_append(&b, q, 1), 0);
    }
    size_t len;
    char *text = core_buf_take(&b, &len);
    struct core_config *cfg = parse_ok(text);
    check_example(cfg);
    core_config_free(cfg);
    core_free(text);

    /* Line numbers stay right with CRLF. */
    check_error("[gateway]\r\nlisten = off\r\n\r\nbogus = 1\r\n", 4, "unknown key 'bogus'");
    check_error("[gateway]\r\nlist_timeout = 5x\r\n", 2, "'5x' is not a duration");
}
END_TEST

START_TEST(test_defaults)
{
    struct core_config *cfg = parse_ok("[server.a]\ncommand = x\n");
    ck_assert_str_eq(cfg->listen, "127.0.0.1:7821");
    ck_assert_ptr_null(cfg->socket);
    ck_assert_int_eq(cfg->log_level, CORE_LOG_INFO);
    ck_assert_str_eq(cfg->auth, "token");
    ck_assert_uint_eq(cfg->max_body, 4u << 20);
    ck_assert_uint_eq(cfg->list_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->idle_timeout_ms, 120000);
    ck_assert_uint_eq(cfg->session_ttl_ms, 24u * 3600 * 1000);
    ck_assert(cfg->audit);
    ck_assert_uint_eq(cfg->audit_max, 10u << 20);
    ck_assert_ptr_null(cfg->clients);
    ck_assert_uint_eq(cfg->n_clients, 0);
    ck_assert_uint_eq(cfg->n_servers, 1);
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_str_eq(s->name, "a");
    ck_assert_int_eq(s->line, 1);
    ck_assert_str_eq(s->command, "x");
    ck_assert_ptr_nonnull(s->args);
    ck_assert_ptr_null(s->args[0]);
    ck_assert_uint_eq(s->n_args, 0);
    ck_assert_ptr_nonnull(s->env);
    ck_assert_ptr_null(s->env[0]);
    ck_assert_uint_eq(s->n_env, 0);
    ck_assert_ptr_null(s->cwd);
    ck_assert_str_eq(s->prefix, "a");
    ck_assert_int_eq(s->isolation, CORE_ISOLATION_SHARED);
    ck_assert_int_eq(s->restart, CORE_RESTART_ON_FAILURE);
    ck_assert_uint_eq(s->request_timeout_ms, 300000);
    ck_assert_ptr_nonnull(s->roots);
    ck_assert_ptr_null(s->roots[0]);
    ck_assert_uint_eq(s->n_roots, 0);
    ck_assert_uint_eq(s->max_frame, 16u << 20);
    ck_assert_int_eq(s->pin, CORE_PIN_QUARANTINE);
    core_config_free(cfg);
}
END_TEST

START_TEST(test_no_servers)
{
    struct core_config *cfg = parse_ok("");
    ck_assert_uint_eq(cfg->n_servers, 0);
    ck_assert_str_eq(cfg->listen, "127.0.0.1:7821");
    core_config_free(cfg);

    cfg = parse_ok("[gateway]\n");
    ck_assert_uint_eq(cfg->n_servers, 0);
    core_config_free(cfg);

    cfg = parse_ok("; only comments\n# here\n\n   \n[gateway]\nlisten = off\n");
    ck_assert_uint_eq(cfg->n_servers, 0);
    ck_assert_str_eq(cfg->listen, "off");
    core_config_free(cfg);

    /* From memory with no name: messages say <config>. */
    char err[128];
    struct core_config *out = NULL;
    ck_assert_int_eq(core_config_parse("x", 1, NULL, &out, err, sizeof(err)), CORE_EPARSE);
    ck_assert_str_eq(err, "<config>:1: expected \"key = value\", \"[section]\" or a comment");
    ck_assert_int_eq(core_config_parse(NULL, 0, NULL, &out, err, sizeof(err)), 0);
    ck_assert_ptr_null(out->path);
    core_config_free(out);
}
END_TEST

START_TEST(test_servers_in_order)
{
    struct core_config *cfg = parse_ok("[server.zeta]\ncommand = z\n"
                                       "[gateway]\nlisten = off\n"
                                       "[server.alpha]\ncommand = a\nprefix =\n"
                                       "[server.mid]\ncommand = m\nprefix = other\n"
                                       "[server.e]\ncommand = e\n"
                                       "[server.f]\ncommand = f\n");
    ck_assert_uint_eq(cfg->n_servers, 5);
    ck_assert_str_eq(cfg->servers[0].name, "zeta");
    ck_assert_int_eq(cfg->servers[0].line, 1);
    ck_assert_str_eq(cfg->servers[1].name, "alpha");
    ck_assert_int_eq(cfg->servers[1].line, 5);
    ck_assert_str_eq(cfg->servers[1].prefix, "");
    ck_assert_str_eq(cfg->servers[1].command, "a");
    ck_assert_str_eq(cfg->servers[2].name, "mid");
    ck_assert_str_eq(cfg->servers[2].prefix, "other");
    ck_assert_str_eq(cfg->servers[3].name, "e");
    ck_assert_str_eq(cfg->servers[4].name, "f");
    ck_assert_str_eq(cfg->servers[4].command, "f");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_env_expansion)
{
    setenv("CFG_A", "alpha", 1);
    setenv("CFG_B", "", 1);
    setenv("CFG_Q", "say \"hi\" \\ ;x", 1);
    unsetenv("CFG_UNSET");
    struct core_config *cfg = parse_ok("[gateway]\n"
                                       "listen = ${env:CFG_LISTEN_HOST}:8080\n"
                                       "[server.s]\n"
                                       "command = /opt/${env:CFG_A}/bin${env:CFG_B}\n"
                                       "args = [\"${env:CFG_A}-${env:CFG_A}\", \"${env:CFG_Q}\", "
                                       "\"${notenv}\", \"$\", \"${\"]\n"
                                       "env.X = pre ${env:CFG_A} post\n"
                                       "env.EMPTY = ${env:CFG_B}\n"
                                       "cwd = ${env:CFG_A}\n"
                                       "request_timeout = ${env:CFG_SECS}s\n");
    ck_assert_str_eq(cfg->listen, "127.0.0.1:8080");
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_str_eq(s->command, "/opt/alpha/bin");
    ck_assert_uint_eq(s->n_args, 5);
    ck_assert_str_eq(s->args[0], "alpha-alpha");
    ck_assert_str_eq(s->args[1], "say \"hi\" \\ ;x");
    ck_assert_str_eq(s->args[2], "${notenv}");
    ck_assert_str_eq(s->args[3], "$");
    ck_assert_str_eq(s->args[4], "${");
    ck_assert_str_eq(s->env[0], "X=pre alpha post");
    ck_assert_str_eq(s->env[1], "EMPTY=");
    ck_assert_str_eq(s->cwd, "alpha");
    ck_assert_uint_eq(s->request_timeout_ms, 42000);
    core_config_free(cfg);

    check_error_is("[server.s]\ncommand = x\n\nenv.K = a${env:CFG_UNSET}b\n",
                   "t.ini:4: env.K: environment variable CFG_UNSET is not set");
    check_error("[server.s]\ncommand = x\nargs = [\"${env:CFG_UNSET}\"]\n", 3,
                "args: environment variable CFG_UNSET is not set");
    check_error("[gateway]\nsocket = /x/${env:CFG_A\n", 2, "socket: unterminated \"${env:\"");
    check_error("[gateway]\nsocket = /x/${env:1BAD}\n", 2,
                "socket: '${env:1BAD}' does not name an environment variable");
    check_error("[gateway]\nsocket = /x/${env:}\n", 2, "does not name an environment variable");
}
END_TEST

static void setup_env(void)
{
    setup();
    setenv("CFG_LISTEN_HOST", "127.0.0.1", 1);
    setenv("CFG_SECS", "42", 1);
}

START_TEST(test_args_quoting)
{
    struct core_config *cfg =
        parse_ok("[server.s]\n"
                 "command = /usr/bin/env\n"
                 "args = [\"two words\", \"say \\\"hi\\\"\", \"back\\\\slash\", \"semi;colon\", "
                 "\"x=y\", \"tab\\there\", \"\\u00e9t\\u00e9\", \"\", \"'single'\"]   ; comment\n");
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_uint_eq(s->n_args, 9);
    ck_assert_str_eq(s->args[0], "two words");
    ck_assert_str_eq(s->args[1], "say \"hi\"");
    ck_assert_str_eq(s->args[2], "back\\slash");
    ck_assert_str_eq(s->args[3], "semi;colon");
    ck_assert_str_eq(s->args[4], "x=y");
    ck_assert_str_eq(s->args[5], "tab\there");
    ck_assert_str_eq(s->args[6], "\xc3\xa9t\xc3\xa9");
    ck_assert_str_eq(s->args[7], "");
    ck_assert_str_eq(s->args[8], "'single'");
    ck_assert_ptr_null(s->args[9]);
    core_config_free(cfg);

    cfg = parse_ok("[server.s]\ncommand = c\nargs = []\nroots = []\n");
    ck_assert_uint_eq(cfg->servers[0].n_args, 0);
    ck_assert_ptr_null(cfg->servers[0].args[0]);
    ck_assert_uint_eq(cfg->servers[0].n_roots, 0);
    core_config_free(cfg);

    check_error("[server.s]\ncommand = c\nargs = -y pkg\n", 3,
                "args: '-y pkg' is not a JSON array of strings");
    check_error("[server.s]\ncommand = c\nargs = [\"a\", 1]\n", 3,
                "args: element 2 is not a string");
    check_error("[server.s]\ncommand = c\nroots = {\"a\": \"b\"}\n", 3,
                "roots: '{\"a\": \"b\"}' is not a JSON array");
    check_error("[server.s]\ncommand = c\nroots = \"file:///\"\n", 3, "is not a JSON array");
    check_error("[server.s]\ncommand = c\nargs = [\"a\"] x\n", 3, "is not a JSON array");
    check_error("[server.s]\ncommand = c\nargs = [\"a\"\n", 3, "is not a JSON array");
    check_error("[server.s]\ncommand = c\nargs = [[\"a\"]]\n", 3, "element 1 is not a string");
    check_error("[server.s]\ncommand = c\nargs =\n", 3, "is not a JSON array");
    /* " ;" starts a comment even inside JSON. */
    check_error("[server.s]\ncommand = c\nargs = [\"a ;b\"]\n", 3, "is not a JSON array");
}
END_TEST

/* A line longer than inih's 200-byte buffer is parsed whole. */
START_TEST(test_long_lines)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_append_str(&b, "[server.long]\ncommand = node\nargs = ["), 0);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(core_buf_appendf(&b, "%s\"arg %03d;x=y\"", i ? ", " : "", i), 0);
    ck_assert_int_eq(core_buf_append_str(&b, "]   ; a trailing comment\n"
                                             "bogus = 1\n"),
                     0);
    size_t len;
    char *text = core_buf_take(&b, &len);
    ck_assert_uint_gt(len, 1000);

    char err[256];
    struct core_config *cfg = NULL;
    /* The next line's number is still right after a long line. */
    ck_assert_int_eq(core_config_parse(text, len, "t.ini", &cfg, err, sizeof(err)), CORE_EPARSE);
    ck_assert_str_eq(err, "t.ini:4: unknown key 'bogus' in [server.long]");

    len -= strlen("bogus = 1\n");
    ck_assert_int_eq(core_config_parse(text, len, "t.ini", &cfg, err, sizeof(err)), 0);
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_uint_eq(s->n_args, 100);
    ck_assert_str_eq(s->args[0], "arg 000;x=y");
    ck_assert_str_eq(s->args[99], "arg 099;x=y");
    core_config_free(cfg);
    core_free(text);

    /* Errors on a long line carry its number. */
    char line[600];
    memset(line, 'a', sizeof(line));
    memcpy(line, "args = [", 8);
    line[sizeof(line) - 1] = '\0';
    char file[800];
    snprintf(file, sizeof(file), "[server.s]\ncommand = c\n\n%s\n", line);
    check_error(file, 4, "args: '[aaaa");
    snprintf(file, sizeof(file), "[server.s]\ncommand = c\n\n%s\n", line + 8);
    check_error(file, 4, "expected \"key = value\"");

    /* A long key. */
    char key[400];
    memset(key, 'k', sizeof(key));
    key[sizeof(key) - 1] = '\0';
    snprintf(file, sizeof(file), "[gateway]\n%s = 1\n", key);
    check_error(file, 2, "unknown key 'kkkk");

    /* A long server name (past inih's 49-byte section buffer) and a long comment line. */
    cfg = parse_ok("[server.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab]\n"
                   "command = c\n"
                   "; " /* 250 bytes of comment */
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "xxxx = yyyyyyyyyyyy\n"
                   "prefix = p\n");
    ck_assert_str_eq(cfg->servers[0].name,
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab");
    ck_assert_str_eq(cfg->servers[0].prefix, "p");
    core_config_free(cfg);
}
END_TEST

/* The same lines, short (split by inih) and padded past 200 bytes with a comment (split by
 * config.c), give the same values. */
START_TEST(test_long_and_short_agree)
{
    static const char *const lines[] = {
        "command = a b",     "command=a;b",         "command = a ;b", "command = a\t;b",
        "command =  a = b ", "command = a:b",       "command==x",     "command = ;x",
        "command =;x",       "command = \"q\" ; c", "command = #x",   "command = a ; b ; c",
        "command\t=\tv\t",   "command = a  b  ;",   "command = x;",   "command = ${env:CFG_A}",
    };
    char pad[300];
    memset(pad, 'c', sizeof(pad));
    pad[sizeof(pad) - 1] = '\0';
    setenv("CFG_A", "alpha", 1);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char short_file[200];
        char long_file[800];
        snprintf(short_file, sizeof(short_file), "[server.s]\n%s\n", lines[i]);
        snprintf(long_file, sizeof(long_file), "[server.s]\n%s ;%s\n", lines[i], pad);
        char err1[256] = "";
        char err2[256] = "";
        struct core_config *c1 = NULL;
        struct core_config *c2 = NULL;
        int rc1 =
            core_config_parse(short_file, strlen(short_file), "t.ini", &c1, err1, sizeof(err1));
        int rc2 = core_config_parse(long_file, strlen(long_file), "t.ini", &c2, err2, sizeof(err2));
        ck_assert_msg(rc1 == rc2, "line '%s': %d (%s) vs %d (%s)", lines[i], rc1, err1, rc2, err2);
        if (rc1 == 0) {
            ck_assert_str_eq(c1->servers[0].command, c2->servers[0].command);
        } else {
            ck_assert_str_eq(err1, err2);
        }
        core_config_free(c1);
        core_config_free(c2);
    }
}
END_TEST

START_TEST(test_split_pair)
{
    static const struct {
        const char *line;
        int sep;
        const char *name;
        const char *value;
    } cases[] = {
        {"a = b", '=', "a", "b"},         {"a=b", '=', "a", "b"},    {"a = b ; c", '=', "a", "b"},
        {"a = b;c", '=', "a", "b;c"},     {"a =;c", '=', "a", ";c"}, {"a = ;c", '=', "a", ""},
        {"a : b = c", ':', "a", "b = c"}, {"a ;= b", 0, NULL, NULL}, {"a;= b", '=', "a;", "b"},
        {"novalue", 0, NULL, NULL},       {"= v", '=', "", "v"},     {"a =", '=', "a", ""},
        {"a\t=\tb c\t", '=', "a", "b c"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t nl = 99;
        size_t vo = 99;
        size_t vl = 99;
        const char *s = cases[i].line;
        int sep = config_split_pair(s, strlen(s), &nl, &vo, &vl);
        ck_assert_msg(sep == cases[i].sep, "'%s': sep %d", s, sep);
        if (sep == 0)
            continue;
        ck_assert_uint_eq(nl, strlen(cases[i].name));
        ck_assert_int_eq(memcmp(s, cases[i].name, nl), 0);
        ck_assert_uint_eq(vl, strlen(cases[i].value));
        ck_assert_int_eq(memcmp(s + vo, cases[i].value, vl), 0);
    }
}
END_TEST

START_TEST(test_bad_lines)
{
    check_error_is("[gateway]\nlisten = off\njust words\n",
                   "t.ini:3: expected \"key = value\", \"[section]\" or a comment");
    check_error("[gateway]\nlisten: off\n", 2, "\"key: value\" is not supported");
    check_error("[gateway]\n= off\n", 2, "expected \"key = value\"");
    check_error("\n\nlisten = off\n", 3,
                "'listen' is outside any section; start with [gateway] or [server.NAME]");
    check_error("[gateway\nlisten = off\n", 1, "missing ']' in section header");
    check_error("[gateway] junk\n", 1, "unexpected text after ']'");
    /* An indented line is not a continuation of the value above. */
    check_error("[server.s]\ncommand = c\nargs = [\"a\",\n    \"b\"]\n", 3, "is not a JSON array");
    check_error("[server.s]\ncommand = c\nargs = [\"a\"]\n    \"b\"]\n", 4,
                "expected \"key = value\"");
    /* NUL bytes. */
    char err[256];
    struct core_config *cfg = NULL;
    static const char nul[] = "[gateway]\nlisten = o\0ff\n";
    ck_assert_int_eq(core_config_parse(nul, sizeof(nul) - 1, "t.ini", &cfg, err, sizeof(err)),
                     CORE_EPARSE);
    ck_assert_str_eq(err, "t.ini:2: NUL byte in line");
}
END_TEST

START_TEST(test_comments_and_blanks)
{
    struct core_config *cfg = parse_ok("\xEF\xBB\xBF[gateway]  ; the gateway\n"
                                       "  # indented comment\n"
                                       "\tlisten = off\n"
                                       "[ server.s ] # trailing\n"
                                       "command = c ; comment\n"
                                       "cwd = /a;b\n"
                                       "\n"
                                       "prefix = p   \t\n");
    ck_assert_str_eq(cfg->listen, "off");
    ck_assert_str_eq(cfg->servers[0].name, "s");
    ck_assert_str_eq(cfg->servers[0].command, "c");
    ck_assert_str_eq(cfg->servers[0].cwd, "/a;b");
    ck_assert_str_eq(cfg->servers[0].prefix, "p");
    core_config_free(cfg);

    /* No trailing newline. */
    cfg = parse_ok("[server.s]\ncommand = c");
    ck_assert_str_eq(cfg->servers[0].command, "c");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_sections)
{
    check_error_is("[gateway]\n[nope]\n",
                   "t.ini:2: unknown section [nope]; expected [gateway], [server.NAME] or "
                   "[client.NAME]");
    check_error("[Gateway]\n", 1, "unknown section [Gateway]");
    check_error("[server]\n", 1, "unknown section [server]");
    check_error_is("[gateway]\nlisten = off\n\n[gateway]\n",
                   "t.ini:4: duplicate section [gateway] (first at line 1)");
    check_error_is("[server.a]\ncommand = c\n[server.b]\ncommand = d\n[server.a]\ncommand = e\n",
                   "t.ini:5: duplicate section [server.a] (first at line 1)");
    check_error("[server.]\n", 1, "server name '' must be 1-64 characters");
    check_error("[server.a b]\n", 1, "server name 'a b' must be 1-64 characters");
    check_error("[server.a/b]\n", 1, "server name 'a/b'");
    check_error("[server.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abc]\n", 1,
                "must be 1-64 characters");
    struct core_config *cfg = parse_ok("[server.A-z_0.9]\ncommand = c\n");
    ck_assert_str_eq(cfg->servers[0].name, "A-z_0.9");
    ck_assert_str_eq(cfg->servers[0].prefix, "A-z_0.9");
    core_config_free(cfg);
    /* "_" at an end is fine in a name but not in a default prefix. */
    check_error("[server._a]\ncommand = c\n", 1,
                "prefix '_a' (the server's name) starts or ends with '_'");
}
END_TEST

START_TEST(test_missing_command)
{
    check_error_is("[server.a]\ncommand = c\n\n[server.b]\nargs = []\n\n[gateway]\n",
                   "t.ini:4: [server.b] has no command (a stdio server) or url (a remote server)");
    check_error_is("[gateway]\n[server.last]\nargs = []\n",
                   "t.ini:2: [server.last] has no command (a stdio server) or url (a remote server)");
    check_error_is("[server.empty]\n[server.x]\ncommand = c\n",
                   "t.ini:1: [server.empty] has no command (a stdio server) or url (a remote server)");
    check_error("[server.a]\ncommand =\n", 2, "command: empty");
    check_error("[server.a]\ncommand = c\ncwd = ;\n", 3, "cwd: empty");
}
END_TEST

START_TEST(test_unknown_and_duplicate_keys)
{
    check_error_is("[gateway]\nlisten = off\nport = 1\n",
                   "t.ini:3: unknown key 'port' in [gateway]");
    check_error_is("[server.x]\ncommand = c\nCommand = d\n",
                   "t.ini:3: unknown key 'Command' in [server.x]");
    check_error("[gateway]\ncommand = c\n", 2, "unknown key 'command' in [gateway]");
    check_error("[server.x]\nlisten = off\n", 2, "unknown key 'listen' in [server.x]");
    check_error_is("[gateway]\nlisten = off\n; x\nlisten = off\n",
                   "t.ini:4: duplicate key 'listen' (first at line 2)");
    check_error_is("[server.x]\ncommand = c\nenv.A = 1\nenv.B = 2\nenv.A = 3\n",
                   "t.ini:5: duplicate key 'env.A' (first at line 3)");
    /* The same key in two sections is fine. */
    struct core_config *cfg = parse_ok("[server.x]\ncommand = c\nenv.A = 1\n"
                                       "[server.y]\ncommand = c\nenv.A = 2\n");
    ck_assert_str_eq(cfg->servers[1].env[0], "A=2");
    core_config_free(cfg);
    check_error("[server.x]\ncommand = c\nenv.1A = 1\n", 3,
                "env.1A: '1A' is not a valid environment variable name");
    check_error("[server.x]\ncommand = c\nenv. = 1\n", 3, "is not a valid environment variable");
    check_error("[server.x]\ncommand = c\nenv.A-B = 1\n", 3, "is not a valid environment variable");
    check_error("[server.x]\ncommand = c\nenv.A.B = 1\n", 3, "is not a valid environment variable");
    cfg = parse_ok("[server.x]\ncommand = c\nenv._a9 = x=y \"z\"\n");
    ck_assert_str_eq(cfg->servers[0].env[0], "_a9=x=y \"z\"");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_gateway_values)
{
    static const char *const good_listen[] = {
        "127.0.0.1:7821",
        "0.0.0.0:1",
        "localhost:65535",
        "[::1]:8080",
        "[::]:80",
        "[fe80::1:2]:443",
        "off",
        "",
    };
    for (size_t i = 0; i < sizeof(good_listen) / sizeof(good_listen[0]); i++) {
        char file[128];
        snprintf(file, sizeof(file), "[gateway]\nlisten = %s\n", good_listen[i]);
        struct core_config *cfg = parse_ok(file);
        ck_assert_str_eq(cfg->listen, good_listen[i]);
        core_config_free(cfg);
    }
    static const char *const bad_listen[] = {
        "127.0.0.1",    "127.0.0.1:0",    "127.0.0.1:65536",
        "127.0.0.1:",   "127.0.0.1:+80",  "127.0.0.1:8o",
        "1.2.3:80",     "1.2.3.256:80",   "example.com:80",
        ":80",          "::1:80",         "[::1]",
        "[zz]:80",      "[127.0.0.1]:80", "localhost:099999",
        "LOCALHOST:80", " off:1",         "on",
    };
    for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
        char file[128];
        snprintf(file, sizeof(file), "[gateway]\n\nlisten = %s\n", bad_listen[i]);
        check_error(file, 3, "is not HOST:PORT");
    }
    check_error_is("[gateway]\nlisten = 1.2.3.4:0\n",
                   "t.ini:2: listen: '1.2.3.4:0' is not HOST:PORT (host: IPv4 address, [IPv6 "
                   "address] or localhost; port 1-65535) or off");

    struct core_config *cfg = parse_ok("[gateway]\nsocket = off\nlog_level = TRACE\n");
    ck_assert_str_eq(cfg->socket, "off");
    ck_assert_int_eq(cfg->log_level, CORE_LOG_TRACE);
    core_config_free(cfg);
    check_error("[gateway]\nsocket =\n", 2, "socket: empty (give a path, or off to disable)");
    char file[400];
    char path[200];
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    snprintf(file, sizeof(file), "[gateway]\nsocket = %s\n", path);
    check_error(file, 2, "socket: path longer than 107 bytes");

    check_error_is("[gateway]\nlog_level = loud\n",
                   "t.ini:2: log_level: 'loud' is not error, warn, info, debug or trace");
    check_error_is("[gateway]\nauth = bearer\n", "t.ini:2: auth: 'bearer' is not token or none");
    check_error_is("[gateway]\nmax_body = 4 MiB\n",
                   "t.ini:2: max_body: '4 MiB' is not a size (use e.g. 65536, 512KiB, 4MiB, 1GiB)");
    check_error("[gateway]\nmax_body = 0\n", 2, "max_body: must be at least 1 byte");
    check_error_is("[gateway]\nlist_timeout = soon\n",
                   "t.ini:2: list_timeout: 'soon' is not a duration (use e.g. 250ms, 5s, 2m, 1h)");
    check_error("[gateway]\nidle_timeout = -1s\n", 2, "idle_timeout: '-1s' is not a duration");
    check_error("[gateway]\nidle_timeout = 0\n", 2, "idle_timeout: must be at least 1ms");
}
END_TEST

START_TEST(test_server_values)
{
    struct core_config *cfg = parse_ok("[server.a]\ncommand = c\nisolation = shared\n"
                                       "restart = never\nmax_frame = 1024\n"
                                       "[server.b]\ncommand = c\nrestart = on-failure\n"
                                       "request_timeout = 2h\n");
    ck_assert_int_eq(cfg->servers[0].isolation, CORE_ISOLATION_SHARED);
    ck_assert_int_eq(cfg->servers[0].restart, CORE_RESTART_NEVER);
    ck_assert_uint_eq(cfg->servers[0].max_frame, 1024);
    ck_assert_int_eq(cfg->servers[1].restart, CORE_RESTART_ON_FAILURE);
    ck_assert_uint_eq(cfg->servers[1].request_timeout_ms, 7200000);
    core_config_free(cfg);

    check_error_is("[server.a]\ncommand = c\nisolation = per-session\n",
                   "t.ini:3: isolation: 'per-session' is not shared, client or session");
    check_error_is("[server.a]\ncommand = c\nrestart = sometimes\n",
                   "t.ini:3: restart: 'sometimes' is not always, on-failure or never");
    check_error("[server.a]\ncommand = c\nrequest_timeout = 5 m\n", 3,
                "request_timeout: '5 m' is not a duration");
    check_error("[server.a]\ncommand = c\nmax_frame = 16MB\n", 3,
                "max_frame: '16MB' is not a size");
    check_error("[server.a]\ncommand = c\nmax_frame = 99999999999999999999999\n", 3,
                "is not a size");
}
END_TEST

START_TEST(test_prefixes)
{
    static const char *const good[] = {"a",  "a_b", "a.b-c",
                                       "A1", "",    "abcdefghijklmnopqrstuvwxyz012345"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char file[128];
        snprintf(file, sizeof(file), "[server.s]\ncommand = c\nprefix = %s\n", good[i]);
        struct core_config *cfg = parse_ok(file);
        ck_assert_str_eq(cfg->servers[0].prefix, good[i]);
        core_config_free(cfg);
    }
    check_error_is("[server.s]\ncommand = c\nprefix = a__b\n",
                   "t.ini:3: prefix: 'a__b' contains \"__\", the separator of exposed names");
    check_error("[server.s]\ncommand = c\nprefix = abcdefghijklmnopqrstuvwxyz0123456\n", 3,
                "is longer than 32 characters");
    check_error("[server.s]\ncommand = c\nprefix = a b\n", 3, "may hold only");
    check_error("[server.s]\ncommand = c\nprefix = a/b\n", 3, "may hold only");
    check_error("[server.s]\ncommand = c\nprefix = a_\n", 3, "starts or ends with '_'");
    check_error("[server.s]\ncommand = c\nprefix = _a\n", 3, "starts or ends with '_'");
    /* A server name longer than 32 characters needs an explicit prefix. */
    check_error("[server.abcdefghijklmnopqrstuvwxyz0123456]\ncommand = c\n", 1,
                "is longer than 32 characters");

    /* Duplicates: explicit against default, reported at the second one's line. */
    check_error_is("[server.a]\ncommand = c\n\n[server.b]\ncommand = c\nprefix = a\n",
                   "t.ini:6: prefix a is used by server.a (line 1) and server.b");
    check_error_is("[server.x]\ncommand = c\nprefix = p\n[server.p]\ncommand = c\n",
                   "t.ini:4: prefix p is used by server.x (line 3) and server.p");
    check_error_is("[server.a]\ncommand = c\nprefix =\n[server.b]\ncommand = c\n"
                   "[server.c]\nprefix = ; none\ncommand = c\n",
                   "t.ini:7: server.a (line 3) and server.c both have an empty prefix; at most "
                   "one server may");
}
END_TEST

START_TEST(test_durations)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"300s", 300000},
        {"250ms", 250},
        {"5m", 300000},
        {"2h", 7200000},
        {"1.5s", 1500},
        {"30", 30000},
        {"0", 0},
        {"0.001", 1},
        {"1.25m", 75000},
        {"0.5ms", 0},
        {"1.0000000000001s", 1000},
        {"007s", 7000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 12345;
        ck_assert_msg(core_config_parse_duration(good[i].s, &ms) == 0, "'%s'", good[i].s);
        ck_assert_msg(ms == good[i].ms, "'%s' -> %llu", good[i].s, (unsigned long long)ms);
    }
    static const char *const bad[] = {
        "",
        "s",
        "-1s",
        "+1s",
        "1.s",
        ".5s",
        "1..5s",
        "1 s",
        " 1s",
        "1s ",
        "1S",
        "1d",
        "1sec",
        "1ms5",
        "1e3",
        "abc",
        "18446744073709551616ms",
        "18446744073709552s",
        "99999999999999999999",
        "5124095576030432h",
        "0x10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 12345;
        ck_assert_msg(core_config_parse_duration(bad[i], &ms) == CORE_EINVAL, "'%s'", bad[i]);
        ck_assert_uint_eq(ms, 12345);
    }
}
END_TEST

START_TEST(test_sizes)
{
    static const struct {
        const char *s;
        size_t n;
    } good[] = {
        {"16MiB", 16u << 20},      {"4M", 4u << 20},   {"512KiB", 512u << 10},
        {"512K", 512u << 10},      {"1GiB", 1u << 30}, {"1024", 1024},
        {"1G", 1u << 30},          {"0", 0},           {"7B", 7},
        {"2TiB", (size_t)2 << 40},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t n = 12345;
        ck_assert_msg(core_config_parse_size(good[i].s, &n) == 0, "'%s'", good[i].s);
        ck_assert_msg(n == good[i].n, "'%s' -> %zu", good[i].s, n);
    }
    static const char *const bad[] = {
        "",
        "M",
        "-1",
        "+1",
        "1.5M",
        "1 MiB",
        " 1",
        "1mib",
        "1MB",
        "1KB",
        "1Mi",
        "1x",
        "18446744073709551616",
        "17179869184GiB",
        "16777216TiB",
        "0x10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = 12345;
        ck_assert_msg(core_config_parse_size(bad[i], &n) == CORE_EINVAL, "'%s'", bad[i]);
        ck_assert_uint_eq(n, 12345);
    }
    size_t n = 0;
    ck_assert_int_eq(core_config_parse_size("18446744073709551615", &n), 0);
    ck_assert_uint_eq(n, SIZE_MAX);
}
END_TEST

START_TEST(test_default_config)
{
    struct core_config *cfg = core_config_default("/usr/bin/agentgate");
    ck_assert_ptr_null(cfg->path);
    ck_assert_str_eq(cfg->listen, "127.0.0.1:7821");
    ck_assert_ptr_null(cfg->socket);
    ck_assert_int_eq(cfg->log_level, CORE_LOG_INFO);
    ck_assert_str_eq(cfg->auth, "none");
    ck_assert_uint_eq(cfg->max_body, 4u << 20);
    ck_assert_uint_eq(cfg->list_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->idle_timeout_ms, 120000);
    ck_assert_uint_eq(cfg->session_ttl_ms, 24u * 3600 * 1000);
    ck_assert(cfg->audit);
    ck_assert_uint_eq(cfg->audit_max, 10u << 20);
    ck_assert_uint_eq(cfg->n_clients, 0);
    ck_assert_uint_eq(cfg->n_servers, 1);
    const struct core_server_cfg *s = &cfg->servers[0];
    ck_assert_str_eq(s->name, "demo");
    ck_assert_str_eq(s->command, "/usr/bin/agentgate");
    ck_assert_uint_eq(s->n_args, 1);
    ck_assert_str_eq(s->args[0], "demo-server");
    ck_assert_ptr_null(s->args[1]);
    ck_assert_str_eq(s->prefix, "demo");
    ck_assert_ptr_null(s->env[0]);
    ck_assert_ptr_null(s->roots[0]);
    ck_assert_ptr_null(s->cwd);
    ck_assert_int_eq(s->isolation, CORE_ISOLATION_SHARED);
    ck_assert_int_eq(s->restart, CORE_RESTART_ON_FAILURE);
    ck_assert_uint_eq(s->request_timeout_ms, 300000);
    ck_assert_uint_eq(s->max_frame, 16u << 20);
    ck_assert_int_eq(s->pin, CORE_PIN_QUARANTINE);
    core_config_free(cfg);
    core_config_free(NULL);
}
END_TEST

START_TEST(test_load)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char text[] = "[server.f]\ncommand = from-file\n";
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (int)sizeof(text) - 1);
    close(fd);

    char err[256] = "x";
    struct core_config *cfg = NULL;
    ck_assert_int_eq(core_config_load(path, &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_str_eq(cfg->servers[0].command, "from-file");
    ck_assert_str_eq(cfg->auth, "token");
    core_config_free(cfg);

    /* Errors carry the path. */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[gateway]\nwhat = 1\n", f);
    fclose(f);
    cfg = NULL;
    ck_assert_int_eq(core_config_load(path, &cfg, err, sizeof(err)), CORE_EPARSE);
    ck_assert_ptr_null(cfg);
    char want[256];
    snprintf(want, sizeof(want), "%s:2: unknown key 'what' in [gateway]", path);
    ck_assert_str_eq(err, want);

    /* Too big. */
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 100000; i++)
        fputs("; 789012345\n", f);
    fclose(f);
    ck_assert_int_eq(core_config_load(path, &cfg, err, sizeof(err)), CORE_EPARSE);
    snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
    ck_assert_str_eq(err, want);
    unlink(path);

    /* Cannot read. */
    ck_assert_int_eq(core_config_load(path, &cfg, err, sizeof(err)), UV_ENOENT);
    snprintf(want, sizeof(want), "%s: cannot read: %s", path, uv_strerror(UV_ENOENT));
    ck_assert_str_eq(err, want);
    /* A directory, or a FIFO that would block the read: refused up front. */
    ck_assert_int_eq(core_config_load("/tmp", &cfg, err, sizeof(err)), CORE_EINVAL);
    ck_assert_str_eq(err, "/tmp: not a regular file");
    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(core_config_load(path, &cfg, err, sizeof(err)), CORE_EINVAL);
    ck_assert_ptr_null(cfg);
    unlink(path);
}
END_TEST

START_TEST(test_err_buffer)
{
    static const char text[] = "[gateway]\nlisten = nope\n";
    struct core_config *cfg = NULL;
    char small[12];
    memset(small, 'z', sizeof(small));
    ck_assert_int_eq(core_config_parse(text, strlen(text), "t.ini", &cfg, small, sizeof(small)),
                     CORE_EPARSE);
    ck_assert_str_eq(small, "t.ini:2: li");
    char one[1] = {'z'};
    ck_assert_int_eq(core_config_parse(text, strlen(text), "t.ini", &cfg, one, 1), CORE_EPARSE);
    ck_assert_int_eq(one[0], '\0');
    ck_assert_int_eq(core_config_parse(text, strlen(text), "t.ini", &cfg, NULL, 0), CORE_EPARSE);
    ck_assert_ptr_null(cfg);

    /* Control bytes in the name or the value never break the line. */
    char err[256];
    static const char ctl[] = "[gateway]\nlisten = a\x01\x1b[31m\rb\n";
    ck_assert_int_eq(core_config_parse(ctl, strlen(ctl), "t\n.ini", &cfg, err, sizeof(err)),
                     CORE_EPARSE);
    for (const char *q = err; *q; q++)
        ck_assert_int_ge((unsigned char)*q, 0x20);
    ck_assert_str_eq(err, "t?.ini:2: listen: 'a??[31m?b' is not HOST:PORT (host: IPv4 address, "
                          "[IPv6 address] or localhost; port 1-65535) or off");

    /* Long values are cut in the message. */
    char file[600];
    char value[400];
    memset(value, 'v', sizeof(value));
    value[sizeof(value) - 1] = '\0';
    snprintf(file, sizeof(file), "[gateway]\nlog_level = %s\n", value);
    ck_assert_int_eq(core_config_parse(file, strlen(file), "t.ini", &cfg, err, sizeof(err)),
                     CORE_EPARSE);
    ck_assert_uint_lt(strlen(err), 120);
    ck_assert_ptr_nonnull(strstr(err, "vvv...'"));
}
END_TEST

/* Every prefix of a good file parses or fails cleanly, without leaks. */
START_TEST(test_truncated_inputs)
{
    setenv("EVERYTHING_KEY", "k", 1);
    for (size_t n = 0; n <= sizeof(example) - 1; n++) {
        char err[256];
        struct core_config *cfg = NULL;
        int rc = core_config_parse(example, n, "t.ini", &cfg, err, sizeof(err));
        ck_assert(rc == 0 || rc == CORE_EPARSE);
        if (rc == 0)
            core_config_free(cfg);
        else
            ck_assert_ptr_nonnull(strstr(err, "t.ini:"));
    }
}
END_TEST

/* ---- issue #5 keys ---- */

#define HASH_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define HASH_ONE "74d78edfd99a054a0e5d2778ab14f56738ebf942f7c984f919a272ca6ccaff6d"

START_TEST(test_gateway_connection_keys)
{
    struct core_config *cfg = parse_ok("[server.a]\ncommand = x\n");
    ck_assert_uint_eq(cfg->max_connections, 512);
    ck_assert_uint_eq(cfg->header_timeout_ms, 10000);
    core_config_free(cfg);
    cfg = core_config_default("/usr/bin/agentgate");
    ck_assert_uint_eq(cfg->max_connections, 512);
    ck_assert_uint_eq(cfg->header_timeout_ms, 10000);
    core_config_free(cfg);

    cfg = parse_ok("[gateway]\nmax_connections = 2000\nheader_timeout = 2500ms\n");
    ck_assert_uint_eq(cfg->max_connections, 2000);
    ck_assert_uint_eq(cfg->header_timeout_ms, 2500);
    core_config_free(cfg);
    cfg = parse_ok("[gateway]\nmax_connections = 1\nheader_timeout = 30\n");
    ck_assert_uint_eq(cfg->max_connections, 1);
    ck_assert_uint_eq(cfg->header_timeout_ms, 30000);
    core_config_free(cfg);

    check_error_is("[gateway]\nmax_connections = 0\n",
                   "t.ini:2: max_connections: '0' is not a whole number from 1 to 1000000");
    check_error("[gateway]\nmax_connections = 1000001\n", 2,
                "max_connections: '1000001' is not a whole number");
    check_error("[gateway]\nmax_connections = -5\n", 2, "max_connections: '-5' is not");
    check_error("[gateway]\nmax_connections = 512k\n", 2, "max_connections: '512k' is not");
    check_error("[gateway]\nmax_connections =\n", 2, "max_connections: '' is not");
    check_error_is("[gateway]\nheader_timeout = soon\n",
                   "t.ini:2: header_timeout: 'soon' is not a duration (use e.g. 250ms, 5s, 2m, 1h)");
    check_error("[gateway]\nheader_timeout = 0\n", 2, "header_timeout: must be at least 1ms");
}
END_TEST

START_TEST(test_gateway_new_keys)
{
    struct core_config *cfg = parse_ok("[gateway]\nauth = token\nsession_ttl = 90m\n"
                                       "audit = off\naudit_max = 1GiB\n");
    ck_assert_str_eq(cfg->auth, "token");
    ck_assert_uint_eq(cfg->session_ttl_ms, 90u * 60 * 1000);
    ck_assert(!cfg->audit);
    ck_assert_uint_eq(cfg->audit_max, 1u << 30);
    core_config_free(cfg);

    cfg = parse_ok("[gateway]\nauth = none\naudit = on\nsession_ttl = 1.5s\naudit_max = 4096\n");
    ck_assert_str_eq(cfg->auth, "none");
    ck_assert(cfg->audit);
    ck_assert_uint_eq(cfg->session_ttl_ms, 1500);
    ck_assert_uint_eq(cfg->audit_max, 4096);
    core_config_free(cfg);

    /* Values go through ${env:}. */
    setenv("CFG_AUTH", "none", 1);
    cfg = parse_ok("[gateway]\nauth = ${env:CFG_AUTH}\n");
    ck_assert_str_eq(cfg->auth, "none");
    core_config_free(cfg);

    check_error_is("[gateway]\nauth = Token\n", "t.ini:2: auth: 'Token' is not token or none");
    check_error("[gateway]\nauth =\n", 2, "auth: '' is not token or none");
    check_error_is("[gateway]\n\nsession_ttl = 1d\n",
                   "t.ini:3: session_ttl: '1d' is not a duration (use e.g. 250ms, 5s, 2m, 1h)");
    check_error("[gateway]\nsession_ttl = 0\n", 2, "session_ttl: must be at least 1ms");
    check_error_is("[gateway]\naudit = yes\n", "t.ini:2: audit: 'yes' is not on or off");
    check_error("[gateway]\naudit = ON\n", 2, "audit: 'ON' is not on or off");
    check_error("[gateway]\naudit =\n", 2, "audit: '' is not on or off");
    check_error_is("[gateway]\naudit_max = 10MB\n",
                   "t.ini:2: audit_max: '10MB' is not a size (use e.g. 65536, 512KiB, 4MiB, 1GiB)");
    check_error("[gateway]\naudit_max = 0\n", 2, "audit_max: must be at least 1 byte");
    check_error_is("[gateway]\naudit = on\naudit = off\n",
                   "t.ini:3: duplicate key 'audit' (first at line 2)");
    check_error("[server.s]\ncommand = c\nsession_ttl = 1h\n", 3,
                "unknown key 'session_ttl' in [server.s]");
}
END_TEST

/* auth = none is only allowed where only this machine can connect. */
START_TEST(test_auth_none_listen)
{
    static const char *const loopback[] = {
        "127.0.0.1:7821",        "127.255.3.4:1",        "localhost:80", "[::1]:8080",
        "[::ffff:127.0.0.1]:80", "[0:0:0:0:0:0:0:1]:80", "off",          "",
    };
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        char file[160];
        snprintf(file, sizeof(file), "[gateway]\nlisten = %s\nauth = none\n", loopback[i]);
        struct core_config *cfg = parse_ok(file);
        ck_assert_str_eq(cfg->auth, "none");
        core_config_free(cfg);
        snprintf(file, sizeof(file), "[gateway]\nauth = none\nlisten = %s\n", loopback[i]);
        cfg = parse_ok(file);
        ck_assert_str_eq(cfg->listen, loopback[i]);
        core_config_free(cfg);
    }
    static const char *const open_listen[] = {
        "0.0.0.0:7821",         "[::]:80",      "10.0.0.1:80", "192.168.1.2:443", "[fe80::1]:80",
        "[::ffff:10.0.0.1]:80", "128.0.0.1:80", "[::2]:80",
    };
    for (size_t i = 0; i < sizeof(open_listen) / sizeof(open_listen[0]); i++) {
        char file[160];
        /* Listen first: the error is at the auth line. */
        snprintf(file, sizeof(file), "[gateway]\nlisten = %s\n\nauth = none\n", open_listen[i]);
        check_error(file, 4, "needs a loopback listen address");
        /* Auth first: the error is at the listen line. */
        snprintf(file, sizeof(file), "[gateway]\nauth = none\nlog_level = info\nlisten = %s\n",
                 open_listen[i]);
        check_error(file, 4, "needs a loopback listen address");
        /* With tokens (explicit or by default) any address is fine. */
        snprintf(file, sizeof(file), "[gateway]\nlisten = %s\nauth = token\n", open_listen[i]);
        struct core_config *cfg = parse_ok(file);
        core_config_free(cfg);
        snprintf(file, sizeof(file), "[gateway]\nlisten = %s\n", open_listen[i]);
        cfg = parse_ok(file);
        ck_assert_str_eq(cfg->auth, "token");
        core_config_free(cfg);
    }
    check_error_is("[gateway]\nlisten = 0.0.0.0:7821\nauth = none\n",
                   "t.ini:3: auth = none (line 3) needs a loopback listen address, but listen is "
                   "'0.0.0.0:7821' (line 2); use auth = token, or listen on 127.0.0.1, [::1] or "
                   "localhost");
    check_error_is("[gateway]\nauth = none\nlisten = [::]:1\n",
                   "t.ini:3: auth = none (line 2) needs a loopback listen address, but listen is "
                   "'[::]:1' (line 3); use auth = token, or listen on 127.0.0.1, [::1] or "
                   "localhost");
    /* The expanded address counts. */
    setenv("CFG_HOST", "0.0.0.0", 1);
    check_error("[gateway]\nauth = none\nlisten = ${env:CFG_HOST}:80\n", 3,
                "but listen is '0.0.0.0:80'");
}
END_TEST

START_TEST(test_server_pin)
{
    struct core_config *cfg = parse_ok("[server.a]\ncommand = c\n"
                                       "[server.b]\ncommand = c\npin = warn\n"
                                       "[server.c]\ncommand = c\npin = off\n"
                                       "[server.d]\ncommand = c\npin = quarantine\n");
    ck_assert_int_eq(cfg->servers[0].pin, CORE_PIN_QUARANTINE);
    ck_assert_int_eq(cfg->servers[1].pin, CORE_PIN_WARN);
    ck_assert_int_eq(cfg->servers[2].pin, CORE_PIN_OFF);
    ck_assert_int_eq(cfg->servers[3].pin, CORE_PIN_QUARANTINE);
    core_config_free(cfg);
    check_error_is("[server.a]\ncommand = c\npin = strict\n",
                   "t.ini:3: pin: 'strict' is not quarantine, warn or off");
    check_error("[server.a]\ncommand = c\npin = Warn\n", 3, "pin: 'Warn' is not");
    check_error("[server.a]\ncommand = c\npin =\n", 3, "pin: '' is not");
    check_error("[server.a]\ncommand = c\npin = off\npin = warn\n", 4, "duplicate key 'pin'");
    check_error("[gateway]\npin = off\n", 2, "unknown key 'pin' in [gateway]");
}
END_TEST

/* env_inherit, env_pass, and the secret names the config records for them. */
START_TEST(test_server_env_keys)
{
    setenv("CFG_SECRET_ONE", "one", 1);
    setenv("CFG_SECRET_TWO", "two", 1);
    setenv("CFG_CLIENT_TOKEN", "client-token", 1);
    struct core_config *cfg = parse_ok("[server.a]\ncommand = c\n"
                                       "env.K = ${env:CFG_SECRET_ONE}-${env:CFG_SECRET_TWO}\n"
                                       "env.L = x${env:CFG_SECRET_ONE}\n"
                                       "env.M = plain\n"
                                       "[server.b]\ncommand = c\nenv_inherit = all\n"
                                       "[server.c]\ncommand = c\nenv_inherit = default\n"
                                       "env_pass = AWS_*, GITHUB_TOKEN ,_X, CFG_SECRET_*\n"
                                       "[client.x]\ntoken_env = CFG_CLIENT_TOKEN\n"
                                       "[client.y]\ntoken_sha256 = " HASH_ABC "\n");
    const struct core_server_cfg *a = &cfg->servers[0];
    ck_assert_int_eq(a->env_inherit, CORE_ENV_INHERIT_DEFAULT);
    ck_assert_uint_eq(a->n_env_pass, 0);
    ck_assert_ptr_nonnull(a->env_pass);
    ck_assert_ptr_null(a->env_pass[0]);
    ck_assert_str_eq(a->env[0], "K=one-two");
    ck_assert_uint_eq(a->n_secret_env, 2);
    ck_assert_str_eq(a->secret_env[0], "CFG_SECRET_ONE");
    ck_assert_str_eq(a->secret_env[1], "CFG_SECRET_TWO");
    ck_assert_ptr_null(a->secret_env[2]);
    const struct core_server_cfg *b = &cfg->servers[1];
    ck_assert_int_eq(b->env_inherit, CORE_ENV_INHERIT_ALL);
    ck_assert_uint_eq(b->n_secret_env, 0);
    ck_assert_ptr_nonnull(b->secret_env);
    const struct core_server_cfg *c = &cfg->servers[2];
    ck_assert_int_eq(c->env_inherit, CORE_ENV_INHERIT_DEFAULT);
    ck_assert_uint_eq(c->n_env_pass, 4);
    ck_assert_str_eq(c->env_pass[0], "AWS_*");
    ck_assert_str_eq(c->env_pass[1], "GITHUB_TOKEN");
    ck_assert_str_eq(c->env_pass[2], "_X");
    ck_assert_str_eq(c->env_pass[3], "CFG_SECRET_*"); /* a glob may cover secrets: cut at spawn */
    ck_assert_ptr_null(c->env_pass[4]);
    /* The clients' token_env names, not their hashes. */
    ck_assert_uint_eq(cfg->n_secret_env, 1);
    ck_assert_str_eq(cfg->secret_env[0], "CFG_CLIENT_TOKEN");
    ck_assert_ptr_null(cfg->secret_env[1]);
    core_config_free(cfg);

    /* No clients, no secrets: an empty list, not NULL. */
    cfg = parse_ok("[server.a]\ncommand = c\n");
    ck_assert_ptr_nonnull(cfg->secret_env);
    ck_assert_uint_eq(cfg->n_secret_env, 0);
    core_config_free(cfg);
    cfg = core_config_default("/bin/ag");
    ck_assert_ptr_nonnull(cfg->secret_env);
    ck_assert_ptr_nonnull(cfg->servers[0].env_pass);
    ck_assert_ptr_nonnull(cfg->servers[0].secret_env);
    core_config_free(cfg);

    /* A server may pass its own secret (it has it anyway) and may be listed before or after
     * the sections it refers to. */
    cfg = parse_ok("[server.a]\ncommand = c\nenv_pass = CFG_SECRET_ONE\n"
                   "env.K = ${env:CFG_SECRET_ONE}\n");
    core_config_free(cfg);

    check_error_is("[server.a]\ncommand = c\nenv_inherit = none\n",
                   "t.ini:3: env_inherit: 'none' is not default or all");
    check_error("[server.a]\ncommand = c\nenv_inherit = All\n", 3, "env_inherit: 'All' is not");
    check_error("[server.a]\ncommand = c\nenv_inherit =\n", 3, "env_inherit: '' is not");
    check_error("[server.a]\ncommand = c\nenv_inherit = all\nenv_inherit = all\n", 4,
                "duplicate key 'env_inherit'");
    check_error("[gateway]\nenv_inherit = all\n", 2, "unknown key 'env_inherit' in [gateway]");
    check_error("[client.x]\nenv_pass = A\n", 2, "unknown key 'env_pass' in [client.x]");
    check_error_is("[server.a]\ncommand = c\nenv_pass = *\n",
                   "t.ini:3: env_pass: '*' would pass everything; use env_inherit = all");
    check_error_is(
        "[server.a]\ncommand = c\nenv_pass = A, B*C\n",
        "t.ini:3: env_pass: 'B*C' is not a variable name or a name prefix ending in '*'");
    check_error("[server.a]\ncommand = c\nenv_pass = 1A\n", 3, "'1A' is not a variable name");
    check_error("[server.a]\ncommand = c\nenv_pass = A-B\n", 3, "'A-B' is not a variable name");
    check_error("[server.a]\ncommand = c\nenv_pass = A**\n", 3, "'A**' is not a variable name");
    check_error("[server.a]\ncommand = c\nenv_pass = *A\n", 3, "'*A' is not a variable name");
    check_error("[server.a]\ncommand = c\nenv_pass =\n", 3, "env_pass: empty");
    check_error("[server.a]\ncommand = c\nenv_pass = A,,B\n", 3, "env_pass: item 2 is empty");
    check_error("[server.a]\ncommand = c\nenv_pass = A\nenv_pass = B\n", 4,
                "duplicate key 'env_pass'");

    /* Naming another section's secret is refused, at the env_pass line, whatever the order. */
    check_error_is("[server.a]\ncommand = c\n\nenv_pass = HOME, CFG_CLIENT_TOKEN\n"
                   "[client.x]\ntoken_env = CFG_CLIENT_TOKEN\n",
                   "t.ini:4: env_pass: CFG_CLIENT_TOKEN is the token_env of [client.x] (line 6); "
                   "a client's token never reaches a server");
    check_error_is("[server.a]\ncommand = c\nenv.K = ${env:CFG_SECRET_TWO}\n"
                   "[server.b]\ncommand = c\nenv_pass = CFG_SECRET_TWO\n",
                   "t.ini:6: env_pass: CFG_SECRET_TWO is a secret of [server.a] (its env.* reads "
                   "${env:CFG_SECRET_TWO}), which no other server inherits; give this server its "
                   "own env.CFG_SECRET_TWO = ${env:CFG_SECRET_TWO}");
    check_error("[server.b]\ncommand = c\nenv_pass = X, CFG_SECRET_TWO\n"
                "[server.a]\ncommand = c\nenv.K = ${env:CFG_SECRET_TWO}\n",
                3, "env_pass: CFG_SECRET_TWO is a secret of [server.a]");
    unsetenv("CFG_SECRET_ONE");
    unsetenv("CFG_SECRET_TWO");
    unsetenv("CFG_CLIENT_TOKEN");
}
END_TEST

START_TEST(test_clients)
{
    setenv("CFG_TOKEN", "abc", 1);
    struct core_config *cfg = parse_ok("[client.claude]\n"
                                       "token_sha256 = " HASH_ONE "\n"
                                       "servers = everything, files\n"
                                       "allow = every__*, files__read_?   ,  file:///tmp/*\n"
                                       "deny = *delete*\n"
                                       "rate = 20/s burst 40\n"
                                       "[server.everything]\ncommand = c\n"
                                       "[client.ci-bot.2]\n"
                                       "token_env = CFG_TOKEN\n"
                                       "[server.files]\ncommand = c\n"
                                       "[client.local]\n");
    ck_assert_uint_eq(cfg->n_clients, 3);
    const struct core_client_cfg *c = &cfg->clients[0];
    ck_assert_str_eq(c->name, "claude");
    ck_assert_int_eq(c->line, 1);
    ck_assert_str_eq(c->token_sha256, HASH_ONE);
    ck_assert_uint_eq(c->n_servers, 2);
    ck_assert_str_eq(c->servers[0], "everything");
    ck_assert_str_eq(c->servers[1], "files");
    ck_assert_ptr_null(c->servers[2]);
    ck_assert_uint_eq(c->n_allow, 3);
    ck_assert_str_eq(c->allow[0], "every__*");
    ck_assert_str_eq(c->allow[1], "files__read_?");
    ck_assert_str_eq(c->allow[2], "file:///tmp/*");
    ck_assert_ptr_null(c->allow[3]);
    ck_assert_uint_eq(c->n_deny, 1);
    ck_assert_str_eq(c->deny[0], "*delete*");
    ck_assert_ptr_null(c->deny[1]);
    ck_assert(c->rate_per_sec == 20.0);
    ck_assert(c->rate_burst == 40.0);

    c = &cfg->clients[1];
    ck_assert_str_eq(c->name, "ci-bot.2");
    ck_assert_int_eq(c->line, 9);
    ck_assert_str_eq(c->token_sha256, HASH_ABC);

    /* A client with nothing set: no token (Unix socket only), everything allowed. */
    c = &cfg->clients[2];
    ck_assert_str_eq(c->name, "local");
    ck_assert_int_eq(c->line, 13);
    ck_assert_str_eq(c->token_sha256, "");
    ck_assert_ptr_null(c->servers);
    ck_assert_uint_eq(c->n_servers, 0);
    ck_assert_ptr_null(c->allow);
    ck_assert_uint_eq(c->n_allow, 0);
    ck_assert_ptr_null(c->deny);
    ck_assert_uint_eq(c->n_deny, 0);
    ck_assert(c->rate_per_sec == 0.0);
    ck_assert(c->rate_burst == 0.0);
    core_config_free(cfg);

    /* Sections. */
    check_error_is("[client.a]\n[client.b]\n[client.a]\n",
                   "t.ini:3: duplicate section [client.a] (first at line 1)");
    check_error("[client.]\n", 1, "client name '' must be 1-64 characters");
    check_error("[client.a b]\n", 1, "client name 'a b' must be 1-64 characters");
    check_error("[client.a/b]\n", 1, "client name 'a/b'");
    check_error("[client.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abc]\n", 1,
                "must be 1-64 characters");
    check_error("[client]\n", 1, "unknown section [client]");
    check_error("[clients.a]\n", 1, "unknown section [clients.a]");
    check_error("[Client.a]\n", 1, "unknown section [Client.a]");
    /* A client and a server may share a name. */
    cfg = parse_ok("[server.x]\ncommand = c\n[client.x]\nservers = x\n");
    ck_assert_str_eq(cfg->clients[0].name, "x");
    core_config_free(cfg);

    /* Keys. */
    check_error_is("[client.a]\nallow = x\ntoken = abc\n",
                   "t.ini:3: unknown key 'token' in [client.a]");
    check_error("[client.a]\ncommand = c\n", 2, "unknown key 'command' in [client.a]");
    check_error("[client.a]\nlisten = off\n", 2, "unknown key 'listen' in [client.a]");
    check_error("[client.a]\npin = off\n", 2, "unknown key 'pin' in [client.a]");
    check_error("[client.a]\nenv.A = 1\n", 2, "unknown key 'env.A' in [client.a]");
    check_error("[client.a]\nServers = x\n", 2, "unknown key 'Servers' in [client.a]");
    check_error("[server.s]\ncommand = c\nallow = x\n", 3, "unknown key 'allow' in [server.s]");
    check_error("[gateway]\nrate = off\n", 2, "unknown key 'rate' in [gateway]");
    check_error_is("[client.a]\ndeny = x\n\ndeny = y\n",
                   "t.ini:4: duplicate key 'deny' (first at line 2)");
    check_error_is("[client.a]\nrate = off\nrate = 1/s\n",
                   "t.ini:3: duplicate key 'rate' (first at line 2)");
    /* The same key in two clients is fine. */
    cfg = parse_ok("[client.a]\ndeny = x\n[client.b]\ndeny = y\n");
    ck_assert_str_eq(cfg->clients[1].deny[0], "y");
    core_config_free(cfg);
}
END_TEST

START_TEST(test_client_tokens)
{
    /* Upper-case hex is stored lower-case. */
    struct core_config *cfg =
        parse_ok("[client.a]\ntoken_sha256 = "
                 "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61f20015ad\n");
    ck_assert_str_eq(cfg->clients[0].token_sha256, HASH_ABC);
    core_config_free(cfg);

    /* A bad hash is not quoted back: it may be the token itself. */
    static const char *const bad_hash[] = {
        "",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
        "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "ba7816bf8f01cfea414140de5dae2223 00361a396177a9cb410ff61f20015ad",
        "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015",
        "sk-my-secret-token",
    };
    for (size_t i = 0; i < sizeof(bad_hash) / sizeof(bad_hash[0]); i++) {
        char file[200];
        snprintf(file, sizeof(file), "[client.a]\n\ntoken_sha256 = %s\n", bad_hash[i]);
        check_error_is(file, "t.ini:3: token_sha256: not 64 hex digits (the SHA-256 of the token, "
                             "e.g. from sha256sum; a token itself goes in an environment variable "
                             "named by token_env)");
    }

    /* token_env hashes the variable's value at load; its name may come from ${env:}. */
    setenv("CFG_TOKEN", "abc", 1);
    setenv("CFG_TOKEN_ONE", "tok-one", 1);
    setenv("CFG_TOKEN_EMPTY", "", 1);
    unsetenv("CFG_TOKEN_UNSET");
    setenv("CFG_TOKEN_NAME", "CFG_TOKEN_ONE", 1);
    cfg = parse_ok("[client.a]\ntoken_env = CFG_TOKEN\n"
                   "[client.b]\ntoken_env = ${env:CFG_TOKEN_NAME}\n"
                   "[client.c]\n");
    ck_assert_str_eq(cfg->clients[0].token_sha256, HASH_ABC);
    ck_assert_str_eq(cfg->clients[1].token_sha256, HASH_ONE);
    ck_assert_str_eq(cfg->clients[2].token_sha256, "");
    core_config_free(cfg);
    check_error_is("[client.a]\ntoken_env = CFG_TOKEN_UNSET\n",
                   "t.ini:2: token_env: environment variable CFG_TOKEN_UNSET is not set");
    check_error_is("[client.a]\n\ntoken_env = CFG_TOKEN_EMPTY\n",
                   "t.ini:3: token_env: environment variable CFG_TOKEN_EMPTY is empty");
    check_error_is("[client.a]\ntoken_env = 1BAD\n",
                   "t.ini:2: token_env: '1BAD' is not a valid environment variable name");
    check_error("[client.a]\ntoken_env = $CFG_TOKEN\n", 2, "'$CFG_TOKEN' is not a valid");
    check_error("[client.a]\ntoken_env =\n", 2, "'' is not a valid environment variable name");
    check_error("[client.a]\ntoken_env = ${env:CFG_TOKEN_UNSET}\n", 2,
                "token_env: environment variable CFG_TOKEN_UNSET is not set");

    /* One source of token per client, whichever comes first. */
    check_error_is("[client.a]\ntoken_sha256 = " HASH_ABC "\ndeny = x\ntoken_env = CFG_TOKEN_ONE\n",
                   "t.ini:4: token_env: [client.a] already has a token from token_sha256 (line "
                   "2); use one of token_sha256 and token_env");
    check_error_is("[client.a]\ntoken_env = CFG_TOKEN_ONE\ntoken_sha256 = " HASH_ABC "\n",
                   "t.ini:3: token_sha256: [client.a] already has a token from token_env (line "
                   "2); use one of token_sha256 and token_env");

    /* Two clients may not share a token, however it is given. */
    check_error_is("[client.a]\ntoken_sha256 = " HASH_ABC "\n[client.b]\nallow = x\n"
                   "token_sha256 = " HASH_ABC "\n",
                   "t.ini:5: token_sha256: client.a (line 2) has the same token; every client "
                   "needs its own");
    check_error_is(
        "[client.a]\ntoken_env = CFG_TOKEN\n[server.s]\ncommand = c\n[client.b]\n"
        "token_sha256 = BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n",
        "t.ini:6: token_sha256: client.a (line 2) has the same token; every client "
        "needs its own");
    check_error_is("[client.a]\ntoken_sha256 = " HASH_ONE "\n[client.b]\ntoken_sha256 = " HASH_ABC
                   "\n[client.c]\ntoken_env = CFG_TOKEN_NAME\n[client.d]\ntoken_env = CFG_TOKEN\n",
                   "t.ini:8: token_env: client.b (line 4) has the same token; every client "
                   "needs its own");
    /* Clients without a token do not clash. */
    cfg = parse_ok("[client.a]\n[client.b]\n[client.c]\ntoken_sha256 = " HASH_ABC "\n");
    ck_assert_uint_eq(cfg->n_clients, 3);
    core_config_free(cfg);
}
END_TEST

START_TEST(test_client_servers)
{
    /* Servers may be declared after the client that names them. */
    struct core_config *cfg = parse_ok("[client.a]\nservers = s2 ,s1\n"
                                       "[client.b]\nservers = s1\n"
                                       "[server.s1]\ncommand = c\n[server.s2]\ncommand = c\n");
    ck_assert_uint_eq(cfg->clients[0].n_servers, 2);
    ck_assert_str_eq(cfg->clients[0].servers[0], "s2");
    ck_assert_str_eq(cfg->clients[0].servers[1], "s1");
    ck_assert_uint_eq(cfg->clients[1].n_servers, 1);
    ck_assert_str_eq(cfg->clients[1].servers[0], "s1");
    ck_assert_ptr_null(cfg->clients[1].servers[1]);
    core_config_free(cfg);

    /* An unknown server is reported at the servers line, even when servers come later. */
    check_error_is("[client.a]\nrate = off\nservers = s1, nope\n\n[server.s1]\ncommand = c\n"
                   "[server.s2]\ncommand = c\n",
                   "t.ini:3: servers: 'nope' is not a configured server (no such "
                   "[server.NAME])");
    check_error_is("[client.a]\nservers = s1\n[client.b]\nservers = s2\n[server.s1]\ncommand = c\n",
                   "t.ini:4: servers: 's2' is not a configured server (no such [server.NAME])");
    check_error("[client.a]\nservers = S1\n[server.s1]\ncommand = c\n", 2, "'S1' is not a");
    check_error("[client.a]\nservers = s1\n", 2, "'s1' is not a configured server");
    /* An error in a later line stops parsing first. */
    check_error_is("[client.a]\nservers = nope\n[gateway]\nbogus = 1\n",
                   "t.ini:4: unknown key 'bogus' in [gateway]");

    check_error_is("[server.s]\ncommand = c\n[client.a]\nservers = s, s\n",
                   "t.ini:4: servers: 's' is listed twice");
    check_error_is("[client.a]\nservers =\n",
                   "t.ini:2: servers: empty (leave the key out for the default)");
    check_error_is("[client.a]\nservers = a,,b\n", "t.ini:2: servers: item 2 is empty");
    check_error("[client.a]\nservers = a,\n", 2, "servers: item 2 is empty");
    check_error("[client.a]\nservers = , a\n", 2, "servers: item 1 is empty");
    check_error("[client.a]\nservers = ${env:CFG_TOKEN_UNSET}\n", 2,
                "servers: environment variable CFG_TOKEN_UNSET is not set");
}
END_TEST

START_TEST(test_client_globs)
{
    setenv("CFG_GLOB", "x*", 1);
    struct core_config *cfg = parse_ok("[client.a]\nallow = a\ndeny = ${env:CFG_GLOB}, *;y ,z\n");
    const struct core_client_cfg *c = &cfg->clients[0];
    ck_assert_uint_eq(c->n_allow, 1);
    ck_assert_str_eq(c->allow[0], "a");
    ck_assert_ptr_null(c->allow[1]);
    ck_assert_uint_eq(c->n_deny, 3);
    ck_assert_str_eq(c->deny[0], "x*");
    ck_assert_str_eq(c->deny[1], "*;y");
    ck_assert_str_eq(c->deny[2], "z");
    ck_assert_ptr_null(c->deny[3]);
    core_config_free(cfg);

    check_error_is("[client.a]\nallow =\n", "t.ini:2: allow: empty (leave the key out for the "
                                            "default)");
    check_error_is("[client.a]\nallow = ; nothing\n",
                   "t.ini:2: allow: empty (leave the key out for the default)");
    check_error_is("[client.a]\ndeny = a, ,b\n", "t.ini:2: deny: item 2 is empty");
    check_error("[client.a]\n\ndeny = a,b,\n", 3, "deny: item 3 is empty");
    check_error("[client.a]\nallow = ,\n", 2, "allow: item 1 is empty");
}
END_TEST

START_TEST(test_client_rates)
{
    static const struct {
        const char *s;
        double per_sec;
        double burst;
    } good[] = {
        {"20/s burst 40", 20, 40},
        {"100/m", 100.0 / 60, 2},
        {"5/h burst 2", 5.0 / 3600, 2},
        {"off", 0, 0},
        {"1/s", 1, 1},
        {"20/s", 20, 20},
        {"120/m", 2, 2},
        {"61/m", 61.0 / 60, 2},
        {"59/m", 59.0 / 60, 1},
        {"7/m", 7.0 / 60, 1},
        {"3600/h", 1, 1},
        {"3601/h", 3601.0 / 3600, 2},
        {"1/h", 1.0 / 3600, 1},
        {"20/s   burst\t1", 20, 1},
        {"1/m burst 1000", 1.0 / 60, 1000},
        {"007/s burst 08", 7, 8},
        {"1000000000/s burst 1000000000", 1e9, 1e9},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char file[128];
        snprintf(file, sizeof(file), "[client.a]\n\nrate = %s\n", good[i].s);
        struct core_config *cfg = parse_ok(file);
        const struct core_client_cfg *c = &cfg->clients[0];
        ck_assert_msg(c->rate_per_sec == good[i].per_sec && c->rate_burst == good[i].burst,
                      "'%s' -> %g burst %g", good[i].s, c->rate_per_sec, c->rate_burst);
        core_config_free(cfg);
    }
    static const char *const bad[] = {
        "",
        "0/s",
        "0/m burst 3",
        "20",
        "20/",
        "/s",
        "20/d",
        "20/S",
        "20/sec",
        "20 /s",
        "20/ s",
        "-1/s",
        "+1/s",
        "1.5/s",
        "1e3/s",
        "20/s burst",
        "20/s burst 0",
        "20/s burst -1",
        "20/s burst x",
        "20/s burst 4.5",
        "20/s 40",
        "20/s burst 40 extra",
        "20/s burst 40 burst 50",
        "20/sburst 40",
        "20/s burst40",
        "20/s Burst 40",
        "20/s, burst 40",
        "OFF",
        "off burst 2",
        "unlimited",
        "1000000001/s",
        "20/s burst 1000000001",
        "99999999999999999999999/s",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char file[128];
        snprintf(file, sizeof(file), "[client.a]\nallow = x\nrate = %s\n", bad[i]);
        check_error(file, 3, "is not N/s, N/m or N/h");
    }
    check_error_is("[client.a]\nrate = 20/d\n",
                   "t.ini:2: rate: '20/d' is not N/s, N/m or N/h (N 1-1000000000) with an optional "
                   "\"burst N\", or off; e.g. 20/s burst 40");
    setenv("CFG_RATE", "5", 1);
    struct core_config *cfg = parse_ok("[client.a]\nrate = ${env:CFG_RATE}/s\n");
    ck_assert(cfg->clients[0].rate_per_sec == 5.0);
    core_config_free(cfg);
}
END_TEST

/* Parses base and variant; their first server (or client) must compare as want. */
static void check_server_equal(const char *base, const char *variant, bool want)
{
    struct core_config *a = parse_ok(base);
    struct core_config *b = parse_ok(variant);
    ck_assert_msg(core_server_cfg_equal(&a->servers[0], &b->servers[0]) == want,
                  "want %s:\n%s\n--- vs\n%s", want ? "equal" : "different", base, variant);
    ck_assert_msg(core_server_cfg_equal(&b->servers[0], &a->servers[0]) == want, "not symmetric");
    core_config_free(a);
    core_config_free(b);
}

static void check_client_equal(const char *base, const char *variant, bool want)
{
    struct core_config *a = parse_ok(base);
    struct core_config *b = parse_ok(variant);
    ck_assert_msg(core_client_cfg_equal(&a->clients[0], &b->clients[0]) == want,
                  "want %s:\n%s\n--- vs\n%s", want ? "equal" : "different", base, variant);
    ck_assert_msg(core_client_cfg_equal(&b->clients[0], &a->clients[0]) == want, "not symmetric");
    core_config_free(a);
    core_config_free(b);
}

START_TEST(test_server_equal_dup)
{
    static const char base[] = "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\n"
                               "cwd = /w\nprefix = p\nisolation = session\nrestart = never\n"
                               "request_timeout = 5s\nroots = [\"file:///r\"]\nmax_frame = 1MiB\n"
                               "pin = warn\n";
    static const char *const different[] = {
        "[server.t]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = d\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"c\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"b\", \"a\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 2\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\nenv.B = 1\ncwd = /w\n"
        "prefix = p\nisolation = session\nrestart = never\nrequest_timeout = 5s\n"
        "roots = [\"file:///r\"]\nmax_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /x\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = q\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = shared\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = always\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 6s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = []\n"
        "max_frame = 1MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 2MiB\npin = warn\n",
        "[server.s]\ncommand = c\nargs = [\"a\", \"b\"]\nenv.A = 1\ncwd = /w\nprefix = p\n"
        "isolation = session\nrestart = never\nrequest_timeout = 5s\nroots = [\"file:///r\"]\n"
        "max_frame = 1MiB\n",
    };
    for (size_t i = 0; i < sizeof(different) / sizeof(different[0]); i++)
        check_server_equal(base, different[i], false);
    /* Same values in another order, at other lines, spelled differently: equal. */
    check_server_equal(base,
                       "; moved\n[gateway]\n[server.s]\npin = warn\nmax_frame = 1024KiB\n"
                       "roots = [\"file:///r\"]\nrequest_timeout = 5000ms\nrestart = never\n"
                       "isolation = session\nprefix = p\ncwd = /w\nenv.A = 1\n"
                       "args = [\"a\",\"b\"]\ncommand = c\n",
                       true);
    check_server_equal("[server.s]\ncommand = c\n", "[server.s]\ncommand = c\nargs = []\n", true);
    /* The environment keys: a reload restarts a server whose inheritance changed. */
    check_server_equal("[server.s]\ncommand = c\n", "[server.s]\ncommand = c\nenv_inherit = all\n",
                       false);
    check_server_equal("[server.s]\ncommand = c\n",
                       "[server.s]\ncommand = c\nenv_inherit = default\n", true);
    check_server_equal("[server.s]\ncommand = c\n", "[server.s]\ncommand = c\nenv_pass = A\n",
                       false);
    check_server_equal("[server.s]\ncommand = c\nenv_pass = A, B_*\n",
                       "[server.s]\ncommand = c\nenv_pass = A,B_*\n", true);
    check_server_equal("[server.s]\ncommand = c\nenv_pass = A, B_*\n",
                       "[server.s]\ncommand = c\nenv_pass = B_*, A\n", false);
    /* The same value from another variable: what others may inherit changed. */
    setenv("CFG_EQ_ONE", "v", 1);
    setenv("CFG_EQ_TWO", "v", 1);
    check_server_equal("[server.s]\ncommand = c\nenv.A = ${env:CFG_EQ_ONE}\n",
                       "[server.s]\ncommand = c\nenv.A = ${env:CFG_EQ_TWO}\n", false);
    check_server_equal("[server.s]\ncommand = c\nenv.A = ${env:CFG_EQ_ONE}\n",
                       "[server.s]\ncommand = c\nenv.A = v\n", false);

    /* A copy is deep, equal, and outlives the config it came from. */
    struct core_config *cfg = parse_ok(base);
    struct core_server_cfg *copy = core_server_cfg_dup(&cfg->servers[0]);
    ck_assert(core_server_cfg_equal(copy, &cfg->servers[0]));
    ck_assert_int_eq(copy->line, 1);
    ck_assert_ptr_ne(copy->name, cfg->servers[0].name);
    ck_assert_ptr_ne(copy->args, cfg->servers[0].args);
    ck_assert_ptr_ne(copy->args[0], cfg->servers[0].args[0]);
    core_config_free(cfg);
    ck_assert_str_eq(copy->name, "s");
    ck_assert_str_eq(copy->command, "c");
    ck_assert_uint_eq(copy->n_args, 2);
    ck_assert_str_eq(copy->args[1], "b");
    ck_assert_ptr_null(copy->args[2]);
    ck_assert_str_eq(copy->env[0], "A=1");
    ck_assert_ptr_null(copy->env[1]);
    ck_assert_str_eq(copy->cwd, "/w");
    ck_assert_str_eq(copy->prefix, "p");
    ck_assert_str_eq(copy->roots[0], "file:///r");
    ck_assert_ptr_null(copy->roots[1]);
    ck_assert_int_eq(copy->pin, CORE_PIN_WARN);
    ck_assert_uint_eq(copy->max_frame, 1u << 20);
    cfg = parse_ok(base);
    ck_assert(core_server_cfg_equal(copy, &cfg->servers[0]));
    core_config_free(cfg);
    core_server_cfg_free(copy);

    /* The environment keys are copied deeply too. */
    cfg = parse_ok("[server.s]\ncommand = c\nenv_inherit = all\nenv_pass = A, B_*\n"
                   "env.K = ${env:CFG_EQ_ONE}\n");
    copy = core_server_cfg_dup(&cfg->servers[0]);
    ck_assert(core_server_cfg_equal(copy, &cfg->servers[0]));
    ck_assert_ptr_ne(copy->env_pass, cfg->servers[0].env_pass);
    ck_assert_ptr_ne(copy->secret_env, cfg->servers[0].secret_env);
    core_config_free(cfg);
    ck_assert_int_eq(copy->env_inherit, CORE_ENV_INHERIT_ALL);
    ck_assert_uint_eq(copy->n_env_pass, 2);
    ck_assert_str_eq(copy->env_pass[1], "B_*");
    ck_assert_ptr_null(copy->env_pass[2]);
    ck_assert_uint_eq(copy->n_secret_env, 1);
    ck_assert_str_eq(copy->secret_env[0], "CFG_EQ_ONE");
    ck_assert_ptr_null(copy->secret_env[1]);
    core_server_cfg_free(copy);
    unsetenv("CFG_EQ_ONE");
    unsetenv("CFG_EQ_TWO");

    /* A server without cwd, and the embedded default. */
    struct core_config *def = core_config_default("/bin/ag");
    copy = core_server_cfg_dup(&def->servers[0]);
    ck_assert_ptr_null(copy->cwd);
    ck_assert(core_server_cfg_equal(copy, &def->servers[0]));
    core_free(copy->cwd);
    copy->cwd = core_xstrdup("/");
    ck_assert(!core_server_cfg_equal(copy, &def->servers[0]));
    core_config_free(def);
    core_server_cfg_free(copy);
    core_server_cfg_free(NULL);
}
END_TEST

START_TEST(test_client_equal)
{
    static const char base[] = "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
                               "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
                               "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n";
    static const char *const different[] = {
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.b]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ONE "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = t, s\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        /* No servers key = all servers, which is not the same as listing them all. */
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*\ndeny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "deny = z\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z, w\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\nrate = 10/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 11/s burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 10/s burst 21\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\nrate = 10/m burst 20\n",
        "[server.s]\ncommand = c\n[server.t]\ncommand = c\n"
        "[client.a]\ntoken_sha256 = " HASH_ABC "\nservers = s, t\n"
        "allow = x*, y\ndeny = z\n",
    };
    for (size_t i = 0; i < sizeof(different) / sizeof(different[0]); i++)
        check_client_equal(base, different[i], false);
    /* Equal: other lines, token given through token_env, same rate spelled another way. */
    setenv("CFG_TOKEN", "abc", 1);
    check_client_equal(base,
                       "[client.a]\nrate = 600/m burst 20\ndeny = z\nallow = x* ,y\n"
                       "servers = s,t\ntoken_env = CFG_TOKEN\n"
                       "[server.t]\ncommand = c\n[server.s]\ncommand = c\n",
                       true);
    check_client_equal("[client.a]\n", "\n\n[client.a]\nrate = off\n", true);
}
END_TEST

/* Every key of issue #5 in one file: whole, with CRLF, and cut at every byte. */
static const char example5[] = "[gateway]\n"
                               "listen = 127.0.0.1:7821\n"
                               "auth = none\n"
                               "session_ttl = 12h\n"
                               "audit = off\n"
                               "audit_max = 1MiB\n"
                               "[client.claude]\n"
                               "token_env = CFG_TOKEN\n"
                               "servers = everything\n"
                               "allow = every__*\n"
                               "deny = every__delete*, every__drop\n"
                               "rate = 100/m\n"
                               "[server.everything]\n"
                               "command = npx\n"
                               "pin = off\n"
                               "[client.ci]\n"
                               "token_sha256 = " HASH_ONE "\n"
                               "rate = 5/h burst 2\n";

static void check_example5(const struct core_config *cfg)
{
    ck_assert_str_eq(cfg->auth, "none");
    ck_assert_uint_eq(cfg->session_ttl_ms, 12u * 3600 * 1000);
    ck_assert(!cfg->audit);
    ck_assert_uint_eq(cfg->audit_max, 1u << 20);
    ck_assert_int_eq(cfg->servers[0].pin, CORE_PIN_OFF);
    ck_assert_uint_eq(cfg->n_clients, 2);
    const struct core_client_cfg *c = &cfg->clients[0];
    ck_assert_str_eq(c->name, "claude");
    ck_assert_int_eq(c->line, 7);
    ck_assert_str_eq(c->token_sha256, HASH_ABC);
    ck_assert_uint_eq(c->n_servers, 1);
    ck_assert_str_eq(c->servers[0], "everything");
    ck_assert_uint_eq(c->n_allow, 1);
    ck_assert_uint_eq(c->n_deny, 2);
    ck_assert_str_eq(c->deny[1], "every__drop");
    ck_assert(c->rate_per_sec == 100.0 / 60);
    ck_assert(c->rate_burst == 2);
    c = &cfg->clients[1];
    ck_assert_str_eq(c->name, "ci");
    ck_assert_int_eq(c->line, 16);
    ck_assert_str_eq(c->token_sha256, HASH_ONE);
    ck_assert_ptr_null(c->servers);
    ck_assert(c->rate_per_sec == 5.0 / 3600);
    ck_assert(c->rate_burst == 2);
}

START_TEST(test_isolation_and_limits)
{
    /* Without clients a server's child is shared; with them it is each client's own, unless
     * the section says otherwise. */
    struct core_config *cfg = parse_ok("[server.a]\ncommand = x\n");
    ck_assert_int_eq(cfg->servers[0].isolation, CORE_ISOLATION_SHARED);
    ck_assert_uint_eq(cfg->servers[0].max_instances, 16);
    ck_assert_uint_eq(cfg->max_sessions, 16384);
    core_config_free(cfg);
    cfg = parse_ok("[server.a]\ncommand = x\n[server.b]\ncommand = y\nisolation = shared\n"
                   "[server.c]\ncommand = z\nisolation = session\nmax_instances = 3\n"
                   "[client.me]\nmax_sessions = 7\n[gateway]\nmax_sessions = 100\n");
    ck_assert_int_eq(cfg->servers[0].isolation, CORE_ISOLATION_CLIENT);
    ck_assert_int_eq(cfg->servers[1].isolation, CORE_ISOLATION_SHARED);
    ck_assert_int_eq(cfg->servers[2].isolation, CORE_ISOLATION_SESSION);
    ck_assert_uint_eq(cfg->servers[2].max_instances, 3);
    ck_assert_uint_eq(cfg->clients[0].max_sessions, 7);
    ck_assert_uint_eq(cfg->max_sessions, 100);
    core_config_free(cfg);
    cfg = parse_ok("[client.me]\n[server.a]\ncommand = x\nisolation = client\n");
    ck_assert_int_eq(cfg->servers[0].isolation, CORE_ISOLATION_CLIENT);
    ck_assert_uint_eq(cfg->clients[0].max_sessions, 1024);
    core_config_free(cfg);
    check_error("[server.a]\ncommand = x\nmax_instances = 0\n", 3,
                "max_instances: '0' is not a whole number from 1 to 4096");
    check_error("[server.a]\ncommand = x\nmax_instances = 2x\n", 3,
                "max_instances: '2x' is not a whole number from 1 to 4096");
    check_error("[server.a]\ncommand = x\nmax_instances = 99999999999999999999\n", 3,
                "is not a whole number from 1 to 4096");
    check_error("[gateway]\nmax_sessions = -1\n", 2,
                "max_sessions: '-1' is not a whole number from 1 to 1000000");
    check_error("[client.c]\nmax_sessions =\n", 2, "max_sessions:");
    /* A changed limit restarts the server on reload. */
    struct core_config *a = parse_ok("[server.a]\ncommand = x\n");
    struct core_config *b = parse_ok("[server.a]\ncommand = x\nmax_instances = 2\n");
    ck_assert(!core_server_cfg_equal(&a->servers[0], &b->servers[0]));
    core_config_free(a);
    core_config_free(b);
}
END_TEST

START_TEST(test_example5)
{
    setenv("CFG_TOKEN", "abc", 1);
    struct core_config *cfg = parse_ok(example5);
    check_example5(cfg);
    core_config_free(cfg);

    struct core_buf b;
    core_buf_init(&b, 0);
    for (const char *q = example5; *q; q++) {
        if (*q == '\n')
            ck_assert_int_eq(core_buf_append(&b, "\r\n", 2), 0);
        else
            ck_assert_int_eq(core_buf_append(&b, q, 1), 0);
    }
    size_t len;
    char *text = core_buf_take(&b, &len);
    cfg = parse_ok(text);
    check_example5(cfg);
    core_config_free(cfg);
    core_free(text);
    check_error("[client.a]\r\nrate = 1/s\r\n\r\nservers = x\r\n", 4,
                "servers: 'x' is not a configured server");

    for (size_t n = 0; n <= sizeof(example5) - 1; n++) {
        char err[256];
        cfg = NULL;
        int rc = core_config_parse(example5, n, "t.ini", &cfg, err, sizeof(err));
        ck_assert(rc == 0 || rc == CORE_EPARSE);
        if (rc == 0)
            core_config_free(cfg);
        else
            ck_assert_ptr_nonnull(strstr(err, "t.ini:"));
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup_env, teardown);
    tcase_add_test(tc, test_all_keys);
    tcase_add_test(tc, test_crlf);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_no_servers);
    tcase_add_test(tc, test_servers_in_order);
    tcase_add_test(tc, test_env_expansion);
    tcase_add_test(tc, test_args_quoting);
    tcase_add_test(tc, test_long_lines);
    tcase_add_test(tc, test_long_and_short_agree);
    tcase_add_test(tc, test_split_pair);
    tcase_add_test(tc, test_bad_lines);
    tcase_add_test(tc, test_comments_and_blanks);
    tcase_add_test(tc, test_sections);
    tcase_add_test(tc, test_missing_command);
    tcase_add_test(tc, test_unknown_and_duplicate_keys);
    tcase_add_test(tc, test_gateway_values);
    tcase_add_test(tc, test_server_values);
    tcase_add_test(tc, test_prefixes);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_default_config);
    tcase_add_test(tc, test_load);
    tcase_add_test(tc, test_err_buffer);
    tcase_add_test(tc, test_truncated_inputs);
    tcase_add_test(tc, test_gateway_new_keys);
    tcase_add_test(tc, test_gateway_connection_keys);
    tcase_add_test(tc, test_auth_none_listen);
    tcase_add_test(tc, test_server_pin);
    tcase_add_test(tc, test_server_env_keys);
    tcase_add_test(tc, test_clients);
    tcase_add_test(tc, test_client_tokens);
    tcase_add_test(tc, test_client_servers);
    tcase_add_test(tc, test_client_globs);
    tcase_add_test(tc, test_client_rates);
    tcase_add_test(tc, test_server_equal_dup);
    tcase_add_test(tc, test_client_equal);
    tcase_add_test(tc, test_example5);
    tcase_add_test(tc, test_isolation_and_limits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
