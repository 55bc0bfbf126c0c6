/* libFuzzer target for the config loader: arbitrary bytes into core_config_parse.
 *
 * Besides crashes it checks that a result is either a well-formed config or one clean error
 * line, that nothing leaks, and (differentially) that config.c splits "key = value" lines
 * exactly as inih does, since config.c splits the lines that are too long for inih. */
#include "core/config.h"

#include <ini.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"

/* Internal (GW_STATIC) in core/config.c. */
int config_split_pair(const char *s, size_t n, size_t *name_len, size_t *value_off,
                      size_t *value_len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: check failed: %s (line %d)\n", #cond, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_list(char **list, size_t n)
{
    CHECK(list != NULL);
    for (size_t i = 0; i < n; i++)
        CHECK(list[i] != NULL);
    CHECK(list[n] == NULL);
}

/* A list that may be absent (NULL, n 0) but is never empty when present. */
static void check_opt_list(char **list, size_t n)
{
    if (list == NULL) {
        CHECK(n == 0);
        return;
    }
    CHECK(n > 0);
    check_list(list, n);
    for (size_t i = 0; i < n; i++)
        CHECK(list[i][0] != '\0');
}

static bool has_server(const struct core_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_servers; i++) {
        if (strcmp(cfg->servers[i].name, name) == 0)
            return true;
    }
    return false;
}

static void check_clients(const struct core_config *cfg)
{
    CHECK((cfg->clients == NULL) == (cfg->n_clients == 0));
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct core_client_cfg *c = &cfg->clients[i];
        CHECK(c->name != NULL && c->name[0] != '\0' && strlen(c->name) <= 64);
        CHECK(c->line > 0);
        size_t tlen = strlen(c->token_sha256);
        CHECK(tlen == 0 || tlen == 64);
        CHECK(strspn(c->token_sha256, "0123456789abcdef") == tlen);
        check_opt_list(c->servers, c->n_servers);
        for (size_t j = 0; j < c->n_servers; j++)
            CHECK(has_server(cfg, c->servers[j]));
        check_opt_list(c->allow, c->n_allow);
        check_opt_list(c->deny, c->n_deny);
        CHECK(c->rate_per_sec >= 0);
        CHECK(c->rate_per_sec == 0 ? c->rate_burst == 0 : c->rate_burst >= 1);
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(cfg->clients[j].name, c->name) != 0);
            CHECK(tlen == 0 || strcmp(cfg->clients[j].token_sha256, c->token_sha256) != 0);
        }
    }
}

static void check_config(const struct core_config *cfg)
{
    CHECK(cfg->path != NULL && strcmp(cfg->path, "fuzz.ini") == 0);
    CHECK(cfg->listen != NULL && cfg->auth != NULL);
    CHECK(strcmp(cfg->auth, "token") == 0 || strcmp(cfg->auth, "none") == 0);
    CHECK(cfg->max_body > 0 && cfg->list_timeout_ms > 0 && cfg->idle_timeout_ms > 0);
    CHECK(cfg->session_ttl_ms > 0 && cfg->audit_max > 0);
    bool empty_prefix = false;
    for (size_t i = 0; i < cfg->n_servers; i++) {
        const struct core_server_cfg *s = &cfg->servers[i];
        CHECK(s->name != NULL && s->name[0] != '\0' && strlen(s->name) <= 64);
        /* Exactly one of command and url. */
        CHECK((s->command != NULL) != (s->url != NULL));
        CHECK(s->command == NULL || s->command[0] != '\0');
        CHECK(s->url == NULL || strncasecmp(s->url, "http", 4) == 0);
        CHECK(s->headers != NULL && s->headers[s->n_headers] == NULL);
        CHECK((s->token_env != NULL) == (s->auth == CORE_REMOTE_AUTH_BEARER));
        CHECK(s->prefix != NULL && strlen(s->prefix) <= 32 && strstr(s->prefix, "__") == NULL);
        if (s->prefix[0] == '\0') {
            CHECK(!empty_prefix);
            empty_prefix = true;
        }
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(cfg->servers[j].name, s->name) != 0);
            CHECK(strcmp(cfg->servers[j].prefix, s->prefix) != 0);
        }
        check_list(s->args, s->n_args);
        check_list(s->env, s->n_env);
        check_list(s->roots, s->n_roots);
        for (size_t j = 0; j < s->n_env; j++)
            CHECK(strchr(s->env[j], '=') != NULL);
        CHECK(s->request_timeout_ms > 0 && s->max_frame > 0);
        CHECK(s->pin == CORE_PIN_QUARANTINE || s->pin == CORE_PIN_WARN || s->pin == CORE_PIN_OFF);
        CHECK(s->env_inherit == CORE_ENV_INHERIT_DEFAULT || s->env_inherit == CORE_ENV_INHERIT_ALL);
        check_list(s->env_pass, s->n_env_pass);
        check_list(s->secret_env, s->n_secret_env);
        for (size_t j = 0; j < s->n_env_pass; j++)
            CHECK(strcmp(s->env_pass[j], "*") != 0);
        CHECK(s->line > 0);
    }
    check_list(cfg->secret_env, cfg->n_secret_env);
    check_clients(cfg);
}

struct first_pair {
    int calls;
    char name[256];
    char value[256];
};

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct first_pair *fp = user;
    (void)section;
    if (fp->calls++ == 0) {
        snprintf(fp->name, sizeof(fp->name), "%s", name);
        snprintf(fp->value, sizeof(fp->value), "%s", value != NULL ? value : "(null)");
    }
    return 1;
}

static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* One short line: config_split_pair must agree with inih. */
static void differential(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 150 || memchr(data, '\n', size) != NULL ||
        memchr(data, '\0', size) != NULL || (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0))
        return;
    char line[160];
    memcpy(line, data, size);
    line[size] = '\0';
    const char *s = line;
    size_t n = size;
    while (n > 0 && is_space(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    if (n == 0 || s[0] == '[' || s[0] == ';' || s[0] == '#')
        return;

    struct first_pair fp;
    memset(&fp, 0, sizeof(fp));
    int rc = ini_parse_string(line, on_pair, &fp);
    size_t name_len;
    size_t value_off;
    size_t value_len;
    int sep = config_split_pair(s, n, &name_len, &value_off, &value_len);
    if (sep == 0) {
        CHECK(rc == 1 && fp.calls == 0);
        return;
    }
    CHECK(rc == 0 && fp.calls == 1);
    CHECK(strlen(fp.name) == name_len && memcmp(fp.name, s, name_len) == 0);
    CHECK(strlen(fp.value) == value_len && memcmp(fp.value, s + value_off, value_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        core_alloc_hook_cjson();
        setenv("FUZZ_A", "alpha", 1);
        setenv("FUZZ_EMPTY", "", 1);
        setenv("FUZZ_TOKEN", "fuzz-token", 1);
        ready = true;
    }
    long live = core_alloc_live();
    char err[256];
    struct core_config *cfg = NULL;
    int rc = core_config_parse((const char *)data, size, "fuzz.ini", &cfg, err, sizeof(err));
    if (rc == 0) {
        CHECK(cfg != NULL);
        check_config(cfg);
        core_config_free(cfg);
    } else {
        CHECK(rc == CORE_EPARSE && cfg == NULL);
        CHECK(strncmp(err, "fuzz.ini:", 9) == 0);
        for (const char *q = err; *q; q++)
            CHECK((unsigned char)*q >= 0x20 && *q != 0x7f);
    }
    CHECK(core_alloc_live() == live);
    differential(data, size);
    return 0;
}
