/* The INI configuration.
 *
 * inih splits "key = value" lines; everything else happens here, in the reader that feeds
 * inih one line at a time. The reader is needed because the inih we link (Debian's, built
 * with INI_USE_STACK and INI_MAX_LINE 200) has four traps:
 *
 *  - A line longer than its buffer is cut into pieces that are parsed as separate lines, so
 *    a long `args` line silently turns into bogus keys. The reader never hands inih such a
 *    line: it splits long key lines itself (config_split_pair, same rules as inih) and calls
 *    the key handler directly. Lines of any length therefore work.
 *  - Section names are cut to 49 bytes, and empty sections never reach the handler. The
 *    reader parses section headers itself and hands inih an empty line instead.
 *  - An indented line continues the previous value. The reader strips leading blanks, so an
 *    indented line is an ordinary line.
 *  - The handler gets no line number. The reader hands out exactly one line per call, so its
 *    count is the line inih is working on.
 *
 * Rules shared by both paths: ';' and '#' start a comment at the start of a line, ';' after a
 * blank starts one anywhere else (so a value cannot contain " ;"), values are trimmed, and
 * keys are case-sensitive. Parsing stops at the first error. */
#include "core/config.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/log.h"

#define CONFIG_MAX_FILE (1024 * 1024)  /* bytes; a config file is small */
#define CONFIG_MAX_VALUE (1024 * 1024) /* bytes of one value after ${env:} expansion */
#define SERVER_NAME_MAX 64
#define PREFIX_MAX 32
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define EXCERPT_MAX 48       /* bytes of a quoted value in an error message */
#define MAX_CONNECTIONS 1000000u /* far above any file descriptor limit */
#define RATE_MAX 1000000000u /* calls per unit, and burst: far above any sane limit */
#define ENV_MARKER "${env:"  /* starts a reference to the daemon's environment in a value */

enum section {
    SECTION_NONE = 0, /* before the first header: keys are an error */
    SECTION_GATEWAY,
    SECTION_SERVER, /* the last entry of cfg->servers */
    SECTION_CLIENT, /* the last entry of cfg->clients */
};

/* Lines of a client's keys that later checks point at; 0 = key absent. */
struct client_lines {
    int token;        /* token_sha256 or token_env */
    int servers;      /* servers */
    size_t token_env; /* 1 + index of its token_env name in cfg->secret_env; 0 = none */
};

struct seen_key {
    char *key;
    int line;
};

struct parser {
    const char *name; /* file name in messages */
    const char *text;
    size_t len;
    size_t pos; /* reader cursor: start of the next line */
    int line;   /* the line handed out last, which is the one inih is working on */
    struct core_config *cfg;
    size_t servers_cap;
    int *prefix_lines;   /* per server: line of its prefix key, or of its header */
    int *env_pass_lines; /* per server: line of its env_pass key, 0 when absent */
    size_t clients_cap;
    struct client_lines *client_lines; /* per client */
    int listen_line;                   /* line of [gateway] listen, 0 when absent */
    int auth_line;                     /* line of [gateway] auth, 0 when absent */
    enum section section;
    int gateway_line;      /* line of [gateway], 0 before it */
    struct seen_key *keys; /* keys of the current section, for duplicates */
    size_t n_keys;
    size_t keys_cap;
    bool failed;
    int err_line; /* line of the reported error, 0 when no line applies */
    char *err;
    size_t errlen;
};

GW_STATIC int config_split_pair(const char *s, size_t n, size_t *name_len, size_t *value_off,
                                size_t *value_len);

static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Replaces control bytes so that a message stays on one line. */
static void sanitize(char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
}

/* Copies the start of s into buf (size > 4) for quoting in a message. */
static const char *excerpt(char *buf, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n < size) {
        memcpy(buf, s, n + 1);
    } else {
        memcpy(buf, s, size - 4);
        memcpy(buf + size - 4, "...", 4);
    }
    return buf;
}

/* Records an error unless an earlier line already has one; returns CORE_EPARSE. The message
 * gets the "NAME:LINE: " prefix (or "NAME: " when line is 0). */
static int fail(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int line, const char *fmt, ...)
{
    if (p->failed && (p->err_line == 0 || line == 0 || line >= p->err_line))
        return CORE_EPARSE;
    p->failed = true;
    p->err_line = line;
    if (p->err == NULL || p->errlen == 0)
        return CORE_EPARSE;
    int n;
    if (line > 0)
        n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
    else
        n = snprintf(p->err, p->errlen, "%s: ", p->name);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    sanitize(p->err);
    return CORE_EPARSE;
}

static char **empty_list(void)
{
    return core_xcalloc(1, sizeof(char *));
}

static void free_list(char **list)
{
    if (list == NULL)
        return;
    for (char **q = list; *q; q++)
        core_free(*q);
    core_free(list);
}

static struct core_config *config_new(void)
{
    struct core_config *cfg = core_xcalloc(1, sizeof(*cfg));
    cfg->listen = core_xstrdup("127.0.0.1:7821");
    cfg->log_level = CORE_LOG_INFO;
    cfg->auth = core_xstrdup("none");
    cfg->max_body = 4 * 1024 * 1024;
    cfg->list_timeout_ms = 5000;
    cfg->idle_timeout_ms = 120000;
    cfg->header_timeout_ms = 10000;
    cfg->max_connections = 512;
    cfg->session_ttl_ms = 24 * 3600 * 1000;
    cfg->audit = true;
    cfg->audit_max = 10 * 1024 * 1024;
    cfg->max_sessions = 16384;
    cfg->secret_env = empty_list();
    return cfg;
}

static void server_init(struct core_server_cfg *srv, const char *name, int line)
{
    memset(srv, 0, sizeof(*srv));
    srv->name = core_xstrdup(name);
    srv->line = line;
    srv->args = empty_list();
    srv->env = empty_list();
    srv->prefix = core_xstrdup(name);
    srv->isolation = CORE_ISOLATION_DEFAULT;
    srv->restart = CORE_RESTART_ON_FAILURE;
    srv->request_timeout_ms = 300000;
    srv->roots = empty_list();
    srv->max_frame = 16 * 1024 * 1024;
    srv->pin = CORE_PIN_QUARANTINE;
    srv->max_instances = 16;
    srv->env_inherit = CORE_ENV_INHERIT_DEFAULT;
    srv->env_pass = empty_list();
    srv->secret_env = empty_list();
    srv->headers = empty_list();
}

static void server_dispose(struct core_server_cfg *srv)
{
    core_free(srv->name);
    core_free(srv->command);
    free_list(srv->args);
    free_list(srv->env);
    core_free(srv->cwd);
    core_free(srv->prefix);
    free_list(srv->roots);
    free_list(srv->env_pass);
    free_list(srv->secret_env);
    core_free(srv->url);
    free_list(srv->headers);
    core_free(srv->token_env);
    core_free(srv->ca_file);
    core_free(srv->client_id);
    if (srv->client_secret != NULL)
        sodium_memzero(srv->client_secret, strlen(srv->client_secret));
    core_free(srv->client_secret);
    core_free(srv->client_metadata_url);
    core_free(srv->scopes);
}

static void client_init(struct core_client_cfg *c, const char *name, int line)
{
    memset(c, 0, sizeof(*c));
    c->name = core_xstrdup(name);
    c->line = line;
    c->max_sessions = 1024;
}

static void client_dispose(struct core_client_cfg *c)
{
    core_free(c->name);
    free_list(c->servers);
    free_list(c->allow);
    free_list(c->deny);
}

void core_config_free(struct core_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_servers; i++)
        server_dispose(&cfg->servers[i]);
    core_free(cfg->servers);
    for (size_t i = 0; i < cfg->n_clients; i++)
        client_dispose(&cfg->clients[i]);
    core_free(cfg->clients);
    free_list(cfg->secret_env);
    core_free(cfg->path);
    core_free(cfg->listen);
    core_free(cfg->socket);
    core_free(cfg->auth);
    core_free(cfg);
}

struct core_config *core_config_default(const char *self_exe)
{
    struct core_config *cfg = config_new();
    cfg->servers = core_xcalloc(1, sizeof(*cfg->servers));
    cfg->n_servers = 1;
    struct core_server_cfg *srv = &cfg->servers[0];
    server_init(srv, "demo", 0);
    srv->command = core_xstrdup(self_exe != NULL ? self_exe : "agentgate");
    free_list(srv->args);
    srv->args = core_xcalloc(2, sizeof(char *));
    srv->args[0] = core_xstrdup("demo-server");
    srv->n_args = 1;
    srv->isolation = CORE_ISOLATION_SHARED;
    return cfg;
}

/* ---- comparing and copying ---- */

static bool str_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* NULL (absent) only equals NULL; otherwise element by element. */
static bool list_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]) != 0)
            return false;
    }
    return true;
}

/* A copy of a NULL-terminated list of n strings; NULL stays NULL. */
static char **list_dup(char *const *list, size_t n)
{
    if (list == NULL)
        return NULL;
    char **copy = core_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        copy[i] = core_xstrdup(list[i]);
    return copy;
}

bool core_server_cfg_equal(const struct core_server_cfg *a, const struct core_server_cfg *b)
{
    return str_equal(a->name, b->name) && str_equal(a->command, b->command) &&
           list_equal(a->args, a->n_args, b->args, b->n_args) &&
           list_equal(a->env, a->n_env, b->env, b->n_env) && str_equal(a->cwd, b->cwd) &&
           str_equal(a->prefix, b->prefix) && a->isolation == b->isolation &&
           a->restart == b->restart && a->request_timeout_ms == b->request_timeout_ms &&
           list_equal(a->roots, a->n_roots, b->roots, b->n_roots) && a->max_frame == b->max_frame &&
           a->pin == b->pin && a->max_instances == b->max_instances &&
           a->env_inherit == b->env_inherit &&
           list_equal(a->env_pass, a->n_env_pass, b->env_pass, b->n_env_pass) &&
           list_equal(a->secret_env, a->n_secret_env, b->secret_env, b->n_secret_env) &&
           str_equal(a->url, b->url) && a->transport == b->transport &&
           list_equal(a->headers, a->n_headers, b->headers, b->n_headers) && a->auth == b->auth &&
           str_equal(a->token_env, b->token_env) && str_equal(a->ca_file, b->ca_file) &&
           str_equal(a->client_id, b->client_id) && str_equal(a->client_secret, b->client_secret) &&
           str_equal(a->client_metadata_url, b->client_metadata_url) &&
           str_equal(a->scopes, b->scopes) &&
           a->oauth_client_credentials == b->oauth_client_credentials;
}

struct core_server_cfg *core_server_cfg_dup(const struct core_server_cfg *srv)
{
    struct core_server_cfg *copy = core_xmalloc(sizeof(*copy));
    *copy = *srv;
    copy->name = srv->name != NULL ? core_xstrdup(srv->name) : NULL;
    copy->command = srv->command != NULL ? core_xstrdup(srv->command) : NULL;
    copy->args = list_dup(srv->args, srv->n_args);
    copy->env = list_dup(srv->env, srv->n_env);
    copy->cwd = srv->cwd != NULL ? core_xstrdup(srv->cwd) : NULL;
    copy->prefix = srv->prefix != NULL ? core_xstrdup(srv->prefix) : NULL;
    copy->roots = list_dup(srv->roots, srv->n_roots);
    copy->env_pass = list_dup(srv->env_pass, srv->n_env_pass);
    copy->secret_env = list_dup(srv->secret_env, srv->n_secret_env);
    copy->url = srv->url != NULL ? core_xstrdup(srv->url) : NULL;
    copy->headers = list_dup(srv->headers, srv->n_headers);
    copy->token_env = srv->token_env != NULL ? core_xstrdup(srv->token_env) : NULL;
    copy->ca_file = srv->ca_file != NULL ? core_xstrdup(srv->ca_file) : NULL;
    copy->client_id = srv->client_id != NULL ? core_xstrdup(srv->client_id) : NULL;
    copy->client_secret = srv->client_secret != NULL ? core_xstrdup(srv->client_secret) : NULL;
    copy->client_metadata_url =
        srv->client_metadata_url != NULL ? core_xstrdup(srv->client_metadata_url) : NULL;
    copy->scopes = srv->scopes != NULL ? core_xstrdup(srv->scopes) : NULL;
    return copy;
}

void core_server_cfg_free(struct core_server_cfg *srv)
{
    if (srv == NULL)
        return;
    server_dispose(srv);
    core_free(srv);
}

bool core_client_cfg_equal(const struct core_client_cfg *a, const struct core_client_cfg *b)
{
    /* Token hashes are not secret (the tokens are), so strcmp is fine here. */
    return str_equal(a->name, b->name) && strcmp(a->token_sha256, b->token_sha256) == 0 &&
           list_equal(a->servers, a->n_servers, b->servers, b->n_servers) &&
           list_equal(a->allow, a->n_allow, b->allow, b->n_allow) &&
           list_equal(a->deny, a->n_deny, b->deny, b->n_deny) &&
           a->rate_per_sec == b->rate_per_sec && a->rate_burst == b->rate_burst &&
           a->max_sessions == b->max_sessions;
}

/* ---- values ---- */

int core_config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t whole = 0;
    uint64_t frac = 0;
    uint64_t frac_scale = 1; /* 10^(fraction digits kept) */
    const char *q = s;
    if (!is_digit(*q))
        return CORE_EINVAL;
    for (; is_digit(*q); q++) {
        uint64_t d = (uint64_t)(*q - '0');
        if (whole > (UINT64_MAX - d) / 10)
            return CORE_EINVAL;
        whole = whole * 10 + d;
    }
    if (*q == '.') {
        q++;
        if (!is_digit(*q))
            return CORE_EINVAL;
        /* Digits past nanoseconds cannot change the result in ms; they are checked only. */
        for (; is_digit(*q); q++) {
            if (frac_scale < 1000000000) {
                frac = frac * 10 + (uint64_t)(*q - '0');
                frac_scale *= 10;
            }
        }
    }
    uint64_t unit;
    if (*q == '\0' || strcmp(q, "s") == 0)
        unit = 1000;
    else if (strcmp(q, "ms") == 0)
        unit = 1;
    else if (strcmp(q, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(q, "h") == 0)
        unit = 3600 * 1000;
    else
        return CORE_EINVAL;
    if (whole > UINT64_MAX / unit)
        return CORE_EINVAL;
    uint64_t total = whole * unit;
    uint64_t part = frac * unit / frac_scale; /* < 10^9 * 3.6 * 10^6: no overflow */
    if (total > UINT64_MAX - part)
        return CORE_EINVAL;
    *ms = total + part;
    return 0;
}

int core_config_parse_size(const char *s, size_t *bytes)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20},
        {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40},
    };
    size_t n = 0;
    const char *q = s;
    if (!is_digit(*q))
        return CORE_EINVAL;
    for (; is_digit(*q); q++) {
        size_t d = (size_t)(*q - '0');
        if (n > (SIZE_MAX - d) / 10)
            return CORE_EINVAL;
        n = n * 10 + d;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(q, units[i].suffix) != 0)
            continue;
        if (units[i].shift >= sizeof(size_t) * 8 || n > (SIZE_MAX >> units[i].shift))
            return CORE_EINVAL;
        *bytes = n << units[i].shift;
        return 0;
    }
    return CORE_EINVAL;
}

static bool is_env_name(const char *s, size_t n)
{
    if (n == 0 || is_digit(s[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '_')
            return false;
    }
    return true;
}

static bool is_server_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SERVER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    }
    return true;
}

/* Exposed names are "<prefix>__<tool>", split at the first "__": a prefix may hold '_' but
 * not "__", and not at either end, where it would merge with the separator. */
static const char *prefix_problem(const char *s)
{
    size_t n = strlen(s);
    if (n > PREFIX_MAX)
        return "is longer than 32 characters";
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return "may hold only A-Z a-z 0-9 . - and single inner _";
    }
    if (strstr(s, "__") != NULL)
        return "contains \"__\", the separator of exposed names";
    if (n > 0 && (s[0] == '_' || s[n - 1] == '_'))
        return "starts or ends with '_', which would merge with the \"__\" separator";
    return NULL;
}

/* HOST:PORT with an IPv4 literal, a bracketed IPv6 literal or "localhost", port 1-65535. */
static bool is_host_port(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return false;
    const char *port = colon + 1;
    size_t digits = strlen(port);
    if (digits == 0 || digits > 5)
        return false;
    unsigned long v = 0;
    for (const char *q = port; *q; q++) {
        if (!is_digit(*q))
            return false;
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v < 1 || v > 65535)
        return false;

    size_t hlen = (size_t)(colon - s);
    char host[INET6_ADDRSTRLEN + 2];
    unsigned char addr[sizeof(struct in6_addr)];
    if (hlen == 9 && memcmp(s, "localhost", 9) == 0)
        return true;
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
        if (hlen - 2 >= sizeof(host))
            return false;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
        return inet_pton(AF_INET6, host, addr) == 1;
    }
    if (hlen >= sizeof(host))
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    return inet_pton(AF_INET, host, addr) == 1;
}

/* s passed is_host_port. True when its host is "localhost", in 127.0.0.0/8, ::1 or an
 * IPv4-mapped 127.x address: only this machine can connect. */
static bool is_loopback(const char *s)
{
    const char *colon = strrchr(s, ':');
    size_t hlen = (size_t)(colon - s);
    char host[INET6_ADDRSTRLEN + 2];
    unsigned char addr[sizeof(struct in6_addr)];
    if (hlen == 9 && memcmp(s, "localhost", 9) == 0)
        return true;
    if (s[0] == '[') {
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return false;
        static const unsigned char v6_loopback[16] = {[15] = 1};
        static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
        return memcmp(addr, v6_loopback, 16) == 0 ||
               (memcmp(addr, v4_mapped, 12) == 0 && addr[12] == 127);
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    return inet_pton(AF_INET, host, addr) == 1 && addr[0] == 127;
}

/* Adds the first len bytes of name to the NULL-terminated list of *n strings, unless they are
 * there already. */
static void add_unique(char ***list, size_t *n, const char *name, size_t len)
{
    for (size_t i = 0; i < *n; i++) {
        if (strlen((*list)[i]) == len && memcmp((*list)[i], name, len) == 0)
            return;
    }
    *list = core_xrealloc(*list, (*n + 2) * sizeof(char *));
    (*list)[(*n)++] = core_xstrndup(name, len);
    (*list)[*n] = NULL;
}

/* Expands ${env:NAME} in s into *out (caller frees). Reports errors for `key`. */
static int expand(struct parser *p, const char *key, const char *s, char **out)
{
    static const char marker[] = ENV_MARKER;
    struct core_buf b;
    char q[EXCERPT_MAX];
    int rc = 0;
    core_buf_init(&b, CONFIG_MAX_VALUE);
    for (;;) {
        const char *d = strstr(s, marker);
        if (d == NULL) {
            rc = core_buf_append_str(&b, s);
            break;
        }
        rc = core_buf_append(&b, s, (size_t)(d - s));
        if (rc)
            break;
        const char *name = d + sizeof(marker) - 1;
        const char *close = strchr(name, '}');
        if (close == NULL) {
            rc = fail(p, p->line, "%s: unterminated \"${env:\" in '%s'", key,
                      excerpt(q, sizeof(q), d));
            goto out;
        }
        size_t nlen = (size_t)(close - name);
        if (!is_env_name(name, nlen)) {
            rc = fail(p, p->line, "%s: '%s' does not name an environment variable", key,
                      excerpt(q, sizeof(q), d));
            goto out;
        }
        char *var = core_xstrndup(name, nlen);
        const char *val = getenv(var);
        if (val == NULL) {
            rc = fail(p, p->line, "%s: environment variable %s is not set", key, var);
            core_free(var);
            goto out;
        }
        core_free(var);
        rc = core_buf_append_str(&b, val);
        if (rc)
            break;
        s = close + 1;
    }
    if (rc) {
        rc = fail(p, p->line, "%s: value longer than %d bytes after expansion", key,
                  CONFIG_MAX_VALUE);
        goto out;
    }
    *out = core_buf_take(&b, NULL);
    return 0;
out:
    core_buf_dispose(&b);
    return rc;
}

/* Parses a JSON array of strings and expands each element. Replaces *list on success. */
static int set_list(struct parser *p, const char *key, const char *raw, char ***list, size_t *n)
{
    char q[EXCERPT_MAX];
    int rc = 0;
    char **items = NULL;
    size_t count = 0;
    cJSON *arr = cJSON_ParseWithOpts(raw, NULL, 1);
    if (arr == NULL || !cJSON_IsArray(arr)) {
        rc = fail(p, p->line, "%s: '%s' is not a JSON array of strings, e.g. [\"-y\", \"pkg\"]",
                  key, excerpt(q, sizeof(q), raw));
        goto out;
    }
    count = (size_t)cJSON_GetArraySize(arr);
    items = core_xcalloc(count + 1, sizeof(char *));
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach (item, arr) {
        if (!cJSON_IsString(item)) {
            rc = fail(p, p->line, "%s: element %zu is not a string", key, i + 1);
            goto out;
        }
        rc = expand(p, key, item->valuestring, &items[i]);
        if (rc)
            goto out;
        i++;
    }
    free_list(*list);
    *list = items;
    *n = count;
    items = NULL;
out:
    free_list(items);
    cJSON_Delete(arr);
    return rc;
}

static int set_duration(struct parser *p, const char *key, const char *raw, const char *v,
                        uint64_t *ms)
{
    char q[EXCERPT_MAX];
    uint64_t t;
    if (core_config_parse_duration(v, &t) != 0)
        return fail(p, p->line, "%s: '%s' is not a duration (use e.g. 250ms, 5s, 2m, 1h)", key,
                    excerpt(q, sizeof(q), raw));
    if (t == 0)
        return fail(p, p->line, "%s: must be at least 1ms", key);
    *ms = t;
    return 0;
}

static int set_size(struct parser *p, const char *key, const char *raw, const char *v,
                    size_t *bytes)
{
    char q[EXCERPT_MAX];
    size_t n;
    if (core_config_parse_size(v, &n) != 0)
        return fail(p, p->line, "%s: '%s' is not a size (use e.g. 65536, 512KiB, 4MiB, 1GiB)", key,
                    excerpt(q, sizeof(q), raw));
    if (n == 0)
        return fail(p, p->line, "%s: must be at least 1 byte", key);
    *bytes = n;
    return 0;
}

/* A value that is one of a few words. */
struct word {
    const char *name;
    int value;
};

/* *out gets the value paired with v, or a one-line error names the words
 * ("restart: 'x' is not always, on-failure or never"). */
static int set_word(struct parser *p, const char *key, const char *raw, const char *v,
                    const struct word *w, size_t n, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, w[i].name) == 0) {
            *out = w[i].value;
            return 0;
        }
    }
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int k = snprintf(list + len, sizeof list - len, "%s%s", sep, w[i].name);
        len += k > 0 ? (size_t)k : 0;
    }
    char q[EXCERPT_MAX];
    return fail(p, p->line, "%s: '%s' is not %s", key, excerpt(q, sizeof(q), raw), list);
}

/* Sets an enum (or bool) field from one of the listed words: SET_WORD(field, {"a", A}, ...). */
#define SET_WORD(field, ...)                                                                 \
    do {                                                                                     \
        static const struct word words_[] = {__VA_ARGS__};                                   \
        int w_ = 0;                                                                          \
        rc = set_word(p, key, raw, v, words_, sizeof words_ / sizeof words_[0], &w_);        \
        if (rc == 0)                                                                         \
            field = w_;                                                                      \
    } while (0)

/* A whole number from 1 to max. */
static int set_count(struct parser *p, const char *key, const char *raw, const char *v,
                     unsigned max, unsigned *out)
{
    char q[EXCERPT_MAX];
    unsigned long n = 0;
    bool ok = v[0] != '\0';
    for (const char *c = v; ok && *c; c++) {
        ok = is_digit(*c) && n <= max;
        n = n * 10 + (unsigned long)(*c - '0');
    }
    if (!ok || n < 1 || n > max)
        return fail(p, p->line, "%s: '%s' is not a whole number from 1 to %u", key,
                    excerpt(q, sizeof(q), raw), max);
    *out = (unsigned)n;
    return 0;
}

/* Stores v (takes ownership) in *slot. */
static void set_string(char **slot, char *v)
{
    core_free(*slot);
    *slot = v;
}

/* auth = none leaves TCP open to anyone who can connect, so it needs a loopback listen. Called
 * after listen or auth is set, so the error points at whichever of the two came second. */
static int check_auth_listen(struct parser *p)
{
    const struct core_config *cfg = p->cfg;
    char q[EXCERPT_MAX];
    if (strcmp(cfg->auth, "none") != 0 || cfg->listen[0] == '\0' ||
        strcmp(cfg->listen, "off") == 0 || is_loopback(cfg->listen))
        return 0;
    return fail(p, p->line,
                "auth = none (line %d) needs a loopback listen address, but listen is '%s' "
                "(line %d); use auth = token, or listen on 127.0.0.1, [::1] or localhost",
                p->auth_line, excerpt(q, sizeof(q), cfg->listen), p->listen_line);
}

static int set_gateway(struct parser *p, const char *key, const char *raw)
{
    struct core_config *cfg = p->cfg;
    char q[EXCERPT_MAX];
    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    if (strcmp(key, "listen") == 0) {
        if (v[0] != '\0' && strcmp(v, "off") != 0 && !is_host_port(v)) {
            rc = fail(p, p->line,
                      "listen: '%s' is not HOST:PORT (host: IPv4 address, [IPv6 address] or "
                      "localhost; port 1-65535) or off",
                      excerpt(q, sizeof(q), raw));
            goto out;
        }
        set_string(&cfg->listen, v);
        v = NULL;
        p->listen_line = p->line;
        rc = check_auth_listen(p);
    } else if (strcmp(key, "socket") == 0) {
        if (v[0] == '\0') {
            rc = fail(p, p->line, "socket: empty (give a path, or off to disable)");
            goto out;
        }
        if (strlen(v) > SOCKET_PATH_MAX) {
            rc = fail(p, p->line, "socket: path longer than %zu bytes", SOCKET_PATH_MAX);
            goto out;
        }
        set_string(&cfg->socket, v);
        v = NULL;
    } else if (strcmp(key, "log_level") == 0) {
        if (core_log_parse_level(v, &cfg->log_level) != 0)
            rc = fail(p, p->line, "log_level: '%s' is not error, warn, info, debug or trace",
                      excerpt(q, sizeof(q), raw));
    } else if (strcmp(key, "auth") == 0) {
        if (strcmp(v, "token") != 0 && strcmp(v, "none") != 0) {
            rc = fail(p, p->line, "auth: '%s' is not token or none", excerpt(q, sizeof(q), raw));
            goto out;
        }
        set_string(&cfg->auth, v);
        v = NULL;
        p->auth_line = p->line;
        rc = check_auth_listen(p);
    } else if (strcmp(key, "audit") == 0) {
        if (strcmp(v, "on") == 0)
            cfg->audit = true;
        else if (strcmp(v, "off") == 0)
            cfg->audit = false;
        else
            rc = fail(p, p->line, "audit: '%s' is not on or off", excerpt(q, sizeof(q), raw));
    } else if (strcmp(key, "max_body") == 0) {
        rc = set_size(p, key, raw, v, &cfg->max_body);
    } else if (strcmp(key, "audit_max") == 0) {
        rc = set_size(p, key, raw, v, &cfg->audit_max);
    } else if (strcmp(key, "list_timeout") == 0) {
        rc = set_duration(p, key, raw, v, &cfg->list_timeout_ms);
    } else if (strcmp(key, "session_ttl") == 0) {
        rc = set_duration(p, key, raw, v, &cfg->session_ttl_ms);
    } else if (strcmp(key, "max_sessions") == 0) {
        rc = set_count(p, key, raw, v, 1000000, &cfg->max_sessions);
    } else if (strcmp(key, "header_timeout") == 0) {
        rc = set_duration(p, key, raw, v, &cfg->header_timeout_ms);
    } else if (strcmp(key, "max_connections") == 0) {
        rc = set_count(p, key, raw, v, MAX_CONNECTIONS, &cfg->max_connections);
    } else {
        rc = set_duration(p, key, raw, v, &cfg->idle_timeout_ms);
    }
out:
    core_free(v);
    return rc;
}

/* The variables raw's ${env:NAME} markers read hold this server's secrets: no other server
 * may inherit them. raw has passed expand(), so every marker is well formed. */
static void note_secrets(struct core_server_cfg *srv, const char *raw)
{
    for (const char *d = strstr(raw, ENV_MARKER); d != NULL; d = strstr(d, ENV_MARKER)) {
        const char *name_start = d + sizeof(ENV_MARKER) - 1;
        const char *close = strchr(name_start, '}');
        add_unique(&srv->secret_env, &srv->n_secret_env, name_start, (size_t)(close - name_start));
        d = close + 1;
    }
}

static int set_env(struct parser *p, struct core_server_cfg *srv, const char *key, const char *raw)
{
    char q[EXCERPT_MAX];
    const char *name = key + 4;
    if (!is_env_name(name, strlen(name)))
        return fail(p, p->line, "%s: '%s' is not a valid environment variable name", key,
                    excerpt(q, sizeof(q), name));
    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    struct core_buf b;
    core_buf_init(&b, 0);
    rc = core_buf_appendf(&b, "%s=%s", name, v);
    core_free(v);
    if (rc) {
        core_buf_dispose(&b);
        return fail(p, p->line, "%s: value too long", key);
    }
    srv->env = core_xrealloc(srv->env, (srv->n_env + 2) * sizeof(char *));
    srv->env[srv->n_env++] = core_buf_take(&b, NULL);
    srv->env[srv->n_env] = NULL;
    note_secrets(srv, raw);
    return 0;
}

/* The names a header may not take: the remote transport sets them itself, or they describe
 * the message framing. */
static const char *const reserved_headers[] = {
    "Accept",         "Content-Type",      "Content-Length", "Transfer-Encoding",
    "Connection",     "Host",              "Mcp-Session-Id", "MCP-Protocol-Version",
    "Last-Event-ID",  "Upgrade",           NULL};

/* An HTTP header name: RFC 9110 token characters. */
static bool is_header_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!is_alnum(*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return false;
    }
    return true;
}

/* headers.NAME = value: a static header on every request to a remote server. */
static int set_header(struct parser *p, struct core_server_cfg *srv, const char *key,
                      const char *raw)
{
    char q[EXCERPT_MAX];
    const char *name = key + 8;
    if (!is_header_name(name))
        return fail(p, p->line, "%s: '%s' is not a valid HTTP header name", key,
                    excerpt(q, sizeof(q), name));
    for (const char *const *r = reserved_headers; *r; r++) {
        if (strcasecmp(*r, name) == 0)
            return fail(p, p->line, "%s: %s is set by the remote transport itself", key, *r);
    }
    size_t nl = strlen(name);
    for (size_t i = 0; i < srv->n_headers; i++) {
        if (strncasecmp(srv->headers[i], name, nl) == 0 && srv->headers[i][nl] == ':')
            return fail(p, p->line, "%s: header %s is set twice (names are case-insensitive)",
                        key, name);
    }
    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    for (const char *c = v; *c; c++) {
        if ((unsigned char)*c < 0x20 && *c != '\t') {
            core_free(v);
            return fail(p, p->line, "%s: the value holds a control character", key);
        }
    }
    struct core_buf b;
    core_buf_init(&b, 0);
    rc = core_buf_appendf(&b, "%s: %s", name, v);
    if (v[0] != '\0')
        sodium_memzero(v, strlen(v)); /* may be a credential */
    core_free(v);
    if (rc) {
        core_buf_dispose(&b);
        return fail(p, p->line, "%s: value too long", key);
    }
    srv->headers = core_xrealloc(srv->headers, (srv->n_headers + 2) * sizeof(char *));
    srv->headers[srv->n_headers++] = core_buf_take(&b, NULL);
    srv->headers[srv->n_headers] = NULL;
    note_secrets(srv, raw);
    return 0;
}

/* Why s is not a remote server URL, or NULL: http:// or https://, a host, no credentials
 * (they belong in headers.* or token_env), no blanks or control characters, no fragment. */
static const char *url_problem(const char *s)
{
    const char *rest;
    if (strncasecmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        rest = s + 7;
    else
        return "is not an http:// or https:// URL";
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return "contains a blank or a control character";
    }
    if (strchr(s, '#') != NULL)
        return "has a #fragment, which an HTTP request cannot carry";
    size_t alen = strcspn(rest, "/?");
    if (alen == 0)
        return "has no host";
    if (memchr(rest, '@', alen) != NULL)
        return "carries credentials; put them in token_env or headers.Authorization";
    const char *host_end = rest + alen;
    const char *colon = NULL;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', alen);
        if (close == NULL)
            return "has an unterminated [IPv6] host";
        if (close + 1 < host_end && close[1] != ':')
            return "has text after its [IPv6] host";
        colon = close + 1 < host_end ? close + 1 : NULL;
    } else {
        colon = memchr(rest, ':', alen);
        if (colon == rest)
            return "has no host";
    }
    if (colon != NULL) {
        unsigned long port = 0;
        const char *d = colon + 1;
        if (d == host_end)
            return "has an empty port";
        for (; d < host_end; d++) {
            if (!is_digit(*d) || port > 65535)
                return "has a port that is not 1-65535";
            port = port * 10 + (unsigned long)(*d - '0');
        }
        if (port < 1 || port > 65535)
            return "has a port that is not 1-65535";
    }
    return NULL;
}

static int set_comma_list(struct parser *p, const char *key, const char *raw, char ***list,
                          size_t *n);

/* env_pass: variable names, or a prefix of one and a trailing '*'. A lone '*' would be
 * env_inherit = all in disguise, and is refused so that there is one way to say it. */
static int set_env_pass(struct parser *p, struct core_server_cfg *srv, const char *key,
                        const char *raw)
{
    char q[EXCERPT_MAX];
    int rc = set_comma_list(p, key, raw, &srv->env_pass, &srv->n_env_pass);
    if (rc)
        return rc;
    for (size_t i = 0; i < srv->n_env_pass; i++) {
        const char *item = srv->env_pass[i];
        size_t n = strlen(item);
        if (strcmp(item, "*") == 0)
            return fail(p, p->line, "env_pass: '*' would pass everything; use env_inherit = all");
        if (n > 1 && item[n - 1] == '*')
            n--;
        if (!is_env_name(item, n))
            return fail(p, p->line,
                        "env_pass: '%s' is not a variable name or a name prefix ending in '*'",
                        excerpt(q, sizeof(q), item));
    }
    p->env_pass_lines[p->cfg->n_servers - 1] = p->line;
    return 0;
}

static int set_server(struct parser *p, const char *key, const char *raw)
{
    struct core_server_cfg *srv = &p->cfg->servers[p->cfg->n_servers - 1];
    char q[EXCERPT_MAX];
    if (strcmp(key, "args") == 0)
        return set_list(p, key, raw, &srv->args, &srv->n_args);
    if (strcmp(key, "roots") == 0)
        return set_list(p, key, raw, &srv->roots, &srv->n_roots);
    if (strncmp(key, "env.", 4) == 0)
        return set_env(p, srv, key, raw);
    if (strcmp(key, "env_pass") == 0)
        return set_env_pass(p, srv, key, raw);
    if (strncmp(key, "headers.", 8) == 0)
        return set_header(p, srv, key, raw);

    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    if (strcmp(key, "command") == 0 || strcmp(key, "cwd") == 0) {
        if (v[0] == '\0') {
            rc = fail(p, p->line, "%s: empty", key);
            goto out;
        }
        set_string(strcmp(key, "command") == 0 ? &srv->command : &srv->cwd, v);
        v = NULL;
    } else if (strcmp(key, "prefix") == 0) {
        const char *why = prefix_problem(v);
        if (why != NULL) {
            rc = fail(p, p->line, "prefix: '%s' %s", excerpt(q, sizeof(q), v), why);
            goto out;
        }
        set_string(&srv->prefix, v);
        v = NULL;
        p->prefix_lines[p->cfg->n_servers - 1] = p->line;
    } else if (strcmp(key, "isolation") == 0) {
        SET_WORD(srv->isolation, {"shared", CORE_ISOLATION_SHARED}, {"client", CORE_ISOLATION_CLIENT}, {"session", CORE_ISOLATION_SESSION});
    } else if (strcmp(key, "max_instances") == 0) {
        rc = set_count(p, key, raw, v, 4096, &srv->max_instances);
    } else if (strcmp(key, "restart") == 0) {
        SET_WORD(srv->restart, {"always", CORE_RESTART_ALWAYS}, {"on-failure", CORE_RESTART_ON_FAILURE}, {"never", CORE_RESTART_NEVER});
    } else if (strcmp(key, "pin") == 0) {
        SET_WORD(srv->pin, {"quarantine", CORE_PIN_QUARANTINE}, {"warn", CORE_PIN_WARN}, {"off", CORE_PIN_OFF});
    } else if (strcmp(key, "env_inherit") == 0) {
        SET_WORD(srv->env_inherit, {"default", CORE_ENV_INHERIT_DEFAULT}, {"all", CORE_ENV_INHERIT_ALL});
    } else if (strcmp(key, "request_timeout") == 0) {
        rc = set_duration(p, key, raw, v, &srv->request_timeout_ms);
    } else if (strcmp(key, "url") == 0) {
        const char *why = url_problem(v);
        if (why != NULL) {
            rc = fail(p, p->line, "url: '%s' %s", excerpt(q, sizeof(q), v), why);
            goto out;
        }
        set_string(&srv->url, v);
        v = NULL;
    } else if (strcmp(key, "transport") == 0) {
        SET_WORD(srv->transport, {"auto", CORE_TRANSPORT_AUTO}, {"streamable-http", CORE_TRANSPORT_STREAMABLE}, {"sse", CORE_TRANSPORT_SSE});
    } else if (strcmp(key, "auth") == 0) {
        SET_WORD(srv->auth, {"none", CORE_REMOTE_AUTH_NONE}, {"bearer", CORE_REMOTE_AUTH_BEARER}, {"oauth", CORE_REMOTE_AUTH_OAUTH});
    } else if (strcmp(key, "token_env") == 0) {
        if (!is_env_name(v, strlen(v))) {
            rc = fail(p, p->line, "token_env: '%s' is not a valid environment variable name",
                      excerpt(q, sizeof(q), v));
            goto out;
        }
        const char *token = getenv(v);
        if (token == NULL || token[0] == '\0') {
            rc = fail(p, p->line, "token_env: environment variable %s is %s", v,
                      token == NULL ? "not set" : "empty");
            goto out;
        }
        /* The token is this server's secret: no server inherits the variable. */
        add_unique(&srv->secret_env, &srv->n_secret_env, v, strlen(v));
        set_string(&srv->token_env, v);
        v = NULL;
    } else if (strcmp(key, "ca_file") == 0) {
        if (v[0] == '\0') {
            rc = fail(p, p->line, "ca_file: empty");
            goto out;
        }
        set_string(&srv->ca_file, v);
        v = NULL;
    } else if (strcmp(key, "client_id") == 0 || strcmp(key, "client_secret") == 0 ||
               strcmp(key, "scopes") == 0) {
        if (v[0] == '\0') {
            rc = fail(p, p->line, "%s: empty", key);
            goto out;
        }
        for (const char *c = v; *c; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                rc = fail(p, p->line, "%s: the value holds a control character", key);
                goto out;
            }
        }
        if (strcmp(key, "client_secret") == 0)
            note_secrets(srv, raw);
        set_string(strcmp(key, "client_id") == 0 ? &srv->client_id
                   : strcmp(key, "scopes") == 0  ? &srv->scopes
                                                 : &srv->client_secret,
                   v);
        v = NULL;
    } else if (strcmp(key, "client_metadata_url") == 0) {
        if (strncmp(v, "https://", 8) != 0 || v[8] == '\0' || strchr(v, ' ') != NULL) {
            rc = fail(p, p->line, "client_metadata_url: '%s' is not an https URL",
                      excerpt(q, sizeof(q), v));
            goto out;
        }
        set_string(&srv->client_metadata_url, v);
        v = NULL;
    } else if (strcmp(key, "oauth_grant") == 0) {
        SET_WORD(srv->oauth_client_credentials, {"authorization_code", false}, {"client_credentials", true});
    } else {
        rc = set_size(p, key, raw, v, &srv->max_frame);
    }
out:
    core_free(v);
    return rc;
}

/* Expands raw and splits it at commas into a NULL-terminated list of trimmed items, which
 * replaces *list. An empty value or item is an error: "allow =" must not quietly mean
 * "allow everything". */
static int set_comma_list(struct parser *p, const char *key, const char *raw, char ***list,
                          size_t *n)
{
    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    size_t count = 1;
    for (const char *c = v; *c; c++) {
        if (*c == ',')
            count++;
    }
    char **items = core_xcalloc(count + 1, sizeof(char *));
    const char *item = v;
    for (size_t i = 0; i < count; i++) {
        const char *comma = strchr(item, ',');
        const char *e = comma != NULL ? comma : item + strlen(item);
        const char *b = item;
        while (b < e && is_space(*b))
            b++;
        while (e > b && is_space(e[-1]))
            e--;
        if (b == e) {
            if (count == 1)
                rc = fail(p, p->line, "%s: empty (leave the key out for the default)", key);
            else
                rc = fail(p, p->line, "%s: item %zu is empty", key, i + 1);
            goto out;
        }
        items[i] = core_xstrndup(b, (size_t)(e - b));
        if (comma != NULL)
            item = comma + 1;
    }
    free_list(*list);
    *list = items;
    *n = count;
    items = NULL;
out:
    free_list(items);
    core_free(v);
    return rc;
}

/* Reads a whole number 1..RATE_MAX at *q and advances *q past it. */
static bool parse_count(const char **q, uint64_t *out)
{
    const char *s = *q;
    uint64_t n = 0;
    if (!is_digit(*s))
        return false;
    for (; is_digit(*s); s++) {
        n = n * 10 + (uint64_t)(*s - '0');
        if (n > RATE_MAX)
            return false;
    }
    if (n == 0)
        return false;
    *q = s;
    *out = n;
    return true;
}

/* Parses "N/s", "N/m" or "N/h", optionally followed by "burst M", or "off" (rate and burst 0).
 * The default burst is the rate per second rounded up, at least 1. Returns false for
 * anything else, a count or burst of 0, or one above RATE_MAX. */
static bool parse_rate(const char *s, double *per_sec, double *burst)
{
    if (strcmp(s, "off") == 0) {
        *per_sec = 0;
        *burst = 0;
        return true;
    }
    const char *q = s;
    uint64_t n;
    if (!parse_count(&q, &n) || *q != '/')
        return false;
    q++;
    uint64_t unit; /* seconds */
    if (*q == 's')
        unit = 1;
    else if (*q == 'm')
        unit = 60;
    else if (*q == 'h')
        unit = 3600;
    else
        return false;
    q++;
    uint64_t b = (n + unit - 1) / unit; /* >= 1 because n >= 1 */
    if (*q != '\0') {
        if (!is_space(*q))
            return false;
        while (is_space(*q))
            q++;
        if (strncmp(q, "burst", 5) != 0 || !is_space(q[5]))
            return false;
        q += 5;
        while (is_space(*q))
            q++;
        if (!parse_count(&q, &b) || *q != '\0')
            return false;
    }
    *per_sec = (double)n / (double)unit;
    *burst = (double)b;
    return true;
}

/* Gives the current client the token hash hex (64 lowercase hex digits). */
static int set_token(struct parser *p, const char *key, const char *hex)
{
    struct core_config *cfg = p->cfg;
    size_t last = cfg->n_clients - 1;
    struct core_client_cfg *c = &cfg->clients[last];
    if (p->client_lines[last].token != 0)
        return fail(p, p->line,
                    "%s: [client.%s] already has a token from %s (line %d); use one "
                    "of token_sha256 and token_env",
                    key, c->name, strcmp(key, "token_env") == 0 ? "token_sha256" : "token_env",
                    p->client_lines[last].token);
    for (size_t i = 0; i < last; i++) {
        /* Hashes are not secret (the tokens are), so strcmp is fine. */
        if (strcmp(cfg->clients[i].token_sha256, hex) == 0)
            return fail(p, p->line,
                        "%s: client.%s (line %d) has the same token; every client needs its "
                        "own",
                        key, cfg->clients[i].name, p->client_lines[i].token);
    }
    memcpy(c->token_sha256, hex, sizeof(c->token_sha256));
    p->client_lines[last].token = p->line;
    return 0;
}

static int set_client(struct parser *p, const char *key, const char *raw)
{
    size_t last = p->cfg->n_clients - 1;
    struct core_client_cfg *c = &p->cfg->clients[last];
    char q[EXCERPT_MAX];
    if (strcmp(key, "servers") == 0) {
        int rc = set_comma_list(p, key, raw, &c->servers, &c->n_servers);
        if (rc)
            return rc;
        for (size_t i = 1; i < c->n_servers; i++) {
            for (size_t j = 0; j < i; j++) {
                if (strcmp(c->servers[i], c->servers[j]) == 0)
                    return fail(p, p->line, "servers: '%s' is listed twice",
                                excerpt(q, sizeof(q), c->servers[i]));
            }
        }
        p->client_lines[last].servers = p->line;
        return 0;
    }
    if (strcmp(key, "allow") == 0)
        return set_comma_list(p, key, raw, &c->allow, &c->n_allow);
    if (strcmp(key, "deny") == 0)
        return set_comma_list(p, key, raw, &c->deny, &c->n_deny);

    char *v = NULL;
    int rc = expand(p, key, raw, &v);
    if (rc)
        return rc;
    if (strcmp(key, "token_sha256") == 0) {
        /* The value is never quoted back: it may be a token pasted into the wrong key. */
        size_t n = strlen(v);
        bool hex = n == 64;
        for (size_t i = 0; hex && i < n; i++) {
            char ch = v[i];
            if (ch >= 'A' && ch <= 'F')
                v[i] = (char)(ch - 'A' + 'a');
            else if (!is_digit(ch) && !(ch >= 'a' && ch <= 'f'))
                hex = false;
        }
        if (!hex)
            rc = fail(p, p->line,
                      "token_sha256: not 64 hex digits (the SHA-256 of the token, e.g. from "
                      "sha256sum; a token itself goes in an environment variable named by "
                      "token_env)");
        else
            rc = set_token(p, key, v);
    } else if (strcmp(key, "token_env") == 0) {
        if (!is_env_name(v, strlen(v))) {
            rc = fail(p, p->line, "token_env: '%s' is not a valid environment variable name",
                      excerpt(q, sizeof(q), v));
            goto out;
        }
        const char *token = getenv(v);
        if (token == NULL || token[0] == '\0') {
            rc = fail(p, p->line, "token_env: environment variable %s is %s", v,
                      token == NULL ? "not set" : "empty");
            goto out;
        }
        char hex[CORE_SHA256_HEX_SIZE];
        core_sha256_hex(token, strlen(token), hex);
        rc = set_token(p, key, hex);
        if (rc == 0) {
            /* Unique: a second client with the same token_env has the same token, refused. */
            add_unique(&p->cfg->secret_env, &p->cfg->n_secret_env, v, strlen(v));
            p->client_lines[last].token_env = p->cfg->n_secret_env;
        }
    } else if (strcmp(key, "max_sessions") == 0) {
        rc = set_count(p, key, raw, v, 1000000, &c->max_sessions);
    } else {
        if (!parse_rate(v, &c->rate_per_sec, &c->rate_burst))
            rc = fail(p, p->line,
                      "rate: '%s' is not N/s, N/m or N/h (N 1-%u) with an optional \"burst N\", "
                      "or off; e.g. 20/s burst 40",
                      excerpt(q, sizeof(q), raw), RATE_MAX);
    }
out:
    core_free(v);
    return rc;
}

/* ---- keys and sections ---- */

static bool is_known_key(enum section section, const char *key)
{
    static const char *const gateway[] = {
        "listen",       "socket",      "log_level", "auth",      "max_body", "list_timeout",
        "idle_timeout", "session_ttl", "audit",     "audit_max", "header_timeout",
        "max_connections", "max_sessions", NULL};
    static const char *const server[] = {
        "command",       "args",      "cwd",      "prefix",   "isolation",
        "restart",       "request_timeout", "roots", "max_frame", "pin",
        "env_inherit",   "env_pass",  "max_instances", "url", "transport",
        "auth",          "token_env", "ca_file", "client_id", "client_secret",
        "client_metadata_url", "scopes", "oauth_grant", NULL};
    static const char *const client[] = {"token_sha256", "token_env", "servers",      "allow",
                                         "deny",         "rate",      "max_sessions", NULL};
    if (section == SECTION_SERVER &&
        (strncmp(key, "env.", 4) == 0 || strncmp(key, "headers.", 8) == 0))
        return true;
    const char *const *known = section == SECTION_GATEWAY  ? gateway
                               : section == SECTION_SERVER ? server
                                                           : client;
    for (const char *const *k = known; *k; k++) {
        if (strcmp(*k, key) == 0)
            return true;
    }
    return false;
}

static void forget_keys(struct parser *p)
{
    for (size_t i = 0; i < p->n_keys; i++)
        core_free(p->keys[i].key);
    p->n_keys = 0;
}

static int on_pair(struct parser *p, const char *key, const char *raw)
{
    char q[EXCERPT_MAX];
    if (p->section == SECTION_NONE)
        return fail(p, p->line,
                    "'%s' is outside any section; start with [gateway] or [server.NAME]",
                    excerpt(q, sizeof(q), key));
    if (!is_known_key(p->section, key)) {
        if (p->section == SECTION_GATEWAY)
            return fail(p, p->line, "unknown key '%s' in [gateway]", excerpt(q, sizeof(q), key));
        if (p->section == SECTION_CLIENT)
            return fail(p, p->line, "unknown key '%s' in [client.%s]", excerpt(q, sizeof(q), key),
                        p->cfg->clients[p->cfg->n_clients - 1].name);
        return fail(p, p->line, "unknown key '%s' in [server.%s]", excerpt(q, sizeof(q), key),
                    p->cfg->servers[p->cfg->n_servers - 1].name);
    }
    for (size_t i = 0; i < p->n_keys; i++) {
        if (strcmp(p->keys[i].key, key) == 0)
            return fail(p, p->line, "duplicate key '%s' (first at line %d)",
                        excerpt(q, sizeof(q), key), p->keys[i].line);
    }
    if (p->n_keys == p->keys_cap) {
        p->keys_cap = p->keys_cap ? p->keys_cap * 2 : 16;
        p->keys = core_xrealloc(p->keys, p->keys_cap * sizeof(*p->keys));
    }
    p->keys[p->n_keys].key = core_xstrdup(key);
    p->keys[p->n_keys].line = p->line;
    p->n_keys++;
    if (p->section == SECTION_GATEWAY)
        return set_gateway(p, key, raw);
    if (p->section == SECTION_CLIENT)
        return set_client(p, key, raw);
    return set_server(p, key, raw);
}

/* The line of key in the current section, or 0. */
static int key_line(const struct parser *p, const char *key)
{
    for (size_t i = 0; i < p->n_keys; i++) {
        if (strcmp(p->keys[i].key, key) == 0)
            return p->keys[i].line;
    }
    return 0;
}

/* The first key of the current section starting with prefix (e.g. "env."), or NULL. */
static const struct seen_key *key_with_prefix(const struct parser *p, const char *prefix)
{
    for (size_t i = 0; i < p->n_keys; i++) {
        if (strncmp(p->keys[i].key, prefix, strlen(prefix)) == 0)
            return &p->keys[i];
    }
    return NULL;
}

/* A server is either a stdio command or a remote url, and each kind's keys stay with it. */
static int check_server_kind(struct parser *p, const struct core_server_cfg *srv)
{
    static const char *const stdio_only[] = {"args", "cwd", "env_inherit", "env_pass", "env.",
                                             NULL};
    static const char *const remote_only[] = {"transport", "auth", "token_env", "ca_file",
                                              "headers.", "client_id", "client_secret",
                                              "client_metadata_url", "scopes", "oauth_grant",
                                              NULL};
    int cl = key_line(p, "command"), ul = key_line(p, "url");
    if (srv->command == NULL && srv->url == NULL)
        return fail(p, srv->line, "[server.%s] has no command (a stdio server) or url (a remote "
                    "server)", srv->name);
    if (srv->command != NULL && srv->url != NULL)
        return fail(p, cl > ul ? cl : ul,
                    "[server.%s] has both command (line %d) and url (line %d); a server is one "
                    "or the other", srv->name, cl, ul);
    const char *const *wrong = srv->url != NULL ? stdio_only : remote_only;
    for (; *wrong; wrong++) {
        const struct seen_key *k = key_with_prefix(p, *wrong);
        if (k == NULL || ((*wrong)[strlen(*wrong) - 1] != '.' && strcmp(k->key, *wrong) != 0))
            continue;
        return fail(p, k->line, "%s: only for %s servers, and [server.%s] has %s", k->key,
                    srv->url != NULL ? "command (stdio)" : "url (remote)", srv->name,
                    srv->url != NULL ? "a url" : "a command");
    }
    if (srv->url == NULL)
        return 0;
    int al = key_line(p, "auth"), tl = key_line(p, "token_env");
    if (srv->auth == CORE_REMOTE_AUTH_BEARER && srv->token_env == NULL)
        return fail(p, al, "auth = bearer needs token_env = VAR, the variable holding the token");
    if (srv->auth != CORE_REMOTE_AUTH_BEARER && srv->token_env != NULL)
        return fail(p, tl, "token_env: only with auth = bearer");
    static const char *const oauth_only[] = {"client_id", "client_secret", "client_metadata_url",
                                             "scopes", "oauth_grant", NULL};
    for (const char *const *k = oauth_only; *k && srv->auth != CORE_REMOTE_AUTH_OAUTH; k++) {
        int kl = key_line(p, *k);
        if (kl > 0)
            return fail(p, kl, "%s: only with auth = oauth", *k);
    }
    if (srv->client_secret != NULL && srv->client_id == NULL)
        return fail(p, key_line(p, "client_secret"), "client_secret: needs client_id");
    if (srv->oauth_client_credentials && (srv->client_id == NULL || srv->client_secret == NULL))
        return fail(p, key_line(p, "oauth_grant"),
                    "oauth_grant = client_credentials needs client_id and client_secret");
    for (size_t i = 0; i < p->n_keys && srv->auth != CORE_REMOTE_AUTH_NONE; i++) {
        if (strcasecmp(p->keys[i].key, "headers.Authorization") == 0)
            return fail(p, p->keys[i].line,
                        "%s: [server.%s] has auth = %s (line %d), which sets Authorization "
                        "itself; use one of them", p->keys[i].key, srv->name,
                        srv->auth == CORE_REMOTE_AUTH_BEARER ? "bearer" : "oauth", al);
    }
    return 0;
}

/* Checks the server whose section just ended. */
static int finish_section(struct parser *p)
{
    if (p->section != SECTION_SERVER)
        return 0;
    size_t last = p->cfg->n_servers - 1;
    const struct core_server_cfg *srv = &p->cfg->servers[last];
    int rc = check_server_kind(p, srv);
    if (rc)
        return rc;
    if (p->prefix_lines[last] == srv->line) {
        /* The default prefix, the server's name, is checked here. */
        const char *why = prefix_problem(srv->prefix);
        if (why != NULL)
            return fail(p, srv->line, "prefix '%s' (the server's name) %s; set prefix", srv->prefix,
                        why);
    }
    for (size_t i = 0; i < last; i++) {
        const struct core_server_cfg *other = &p->cfg->servers[i];
        if (strcmp(other->prefix, srv->prefix) != 0)
            continue;
        if (srv->prefix[0] == '\0')
            return fail(p, p->prefix_lines[last],
                        "server.%s (line %d) and server.%s both have an empty prefix; at most "
                        "one server may",
                        other->name, p->prefix_lines[i], srv->name);
        return fail(p, p->prefix_lines[last],
                    "prefix %s is used by server.%s (line %d) and server.%s", srv->prefix,
                    other->name, p->prefix_lines[i], srv->name);
    }
    return 0;
}

/* s..s+n is a trimmed line starting with '['. */
static int on_section(struct parser *p, const char *s, size_t n)
{
    char q[EXCERPT_MAX];
    int rc = finish_section(p);
    if (rc)
        return rc;
    forget_keys(p);
    const char *close = memchr(s, ']', n);
    if (close == NULL)
        return fail(p, p->line, "missing ']' in section header");
    const char *rest = close + 1;
    while (rest < s + n && is_space(*rest))
        rest++;
    if (rest < s + n && *rest != ';' && *rest != '#')
        return fail(p, p->line, "unexpected text after ']'");
    const char *b = s + 1;
    const char *e = close;
    while (b < e && is_space(*b))
        b++;
    while (e > b && is_space(e[-1]))
        e--;
    char *name = core_xstrndup(b, (size_t)(e - b));

    if (strcmp(name, "gateway") == 0) {
        if (p->gateway_line != 0) {
            rc =
                fail(p, p->line, "duplicate section [gateway] (first at line %d)", p->gateway_line);
            goto out;
        }
        p->gateway_line = p->line;
        p->section = SECTION_GATEWAY;
    } else if (strncmp(name, "server.", 7) == 0) {
        const char *sname = name + 7;
        struct core_config *cfg = p->cfg;
        if (!is_server_name(sname)) {
            rc = fail(p, p->line, "server name '%s' must be 1-64 characters from A-Z a-z 0-9 _ . -",
                      excerpt(q, sizeof(q), sname));
            goto out;
        }
        for (size_t i = 0; i < cfg->n_servers; i++) {
            if (strcmp(cfg->servers[i].name, sname) == 0) {
                rc = fail(p, p->line, "duplicate section [server.%s] (first at line %d)", sname,
                          cfg->servers[i].line);
                goto out;
            }
        }
        if (cfg->n_servers == p->servers_cap) {
            p->servers_cap = p->servers_cap ? p->servers_cap * 2 : 4;
            cfg->servers = core_xrealloc(cfg->servers, p->servers_cap * sizeof(*cfg->servers));
            p->prefix_lines = core_xrealloc(p->prefix_lines, p->servers_cap * sizeof(int));
            p->env_pass_lines = core_xrealloc(p->env_pass_lines, p->servers_cap * sizeof(int));
        }
        server_init(&cfg->servers[cfg->n_servers], sname, p->line);
        p->prefix_lines[cfg->n_servers] = p->line;
        p->env_pass_lines[cfg->n_servers] = 0;
        cfg->n_servers++;
        p->section = SECTION_SERVER;
    } else if (strncmp(name, "client.", 7) == 0) {
        const char *cname = name + 7;
        struct core_config *cfg = p->cfg;
        if (!is_server_name(cname)) {
            rc = fail(p, p->line, "client name '%s' must be 1-64 characters from A-Z a-z 0-9 _ . -",
                      excerpt(q, sizeof(q), cname));
            goto out;
        }
        for (size_t i = 0; i < cfg->n_clients; i++) {
            if (strcmp(cfg->clients[i].name, cname) == 0) {
                rc = fail(p, p->line, "duplicate section [client.%s] (first at line %d)", cname,
                          cfg->clients[i].line);
                goto out;
            }
        }
        if (cfg->n_clients == p->clients_cap) {
            p->clients_cap = p->clients_cap ? p->clients_cap * 2 : 4;
            cfg->clients = core_xrealloc(cfg->clients, p->clients_cap * sizeof(*cfg->clients));
            p->client_lines =
                core_xrealloc(p->client_lines, p->clients_cap * sizeof(*p->client_lines));
        }
        client_init(&cfg->clients[cfg->n_clients], cname, p->line);
        memset(&p->client_lines[cfg->n_clients], 0, sizeof(*p->client_lines));
        cfg->n_clients++;
        p->section = SECTION_CLIENT;
    } else {
        rc = fail(p, p->line,
                  "unknown section [%s]; expected [gateway], [server.NAME] or [client.NAME]",
                  excerpt(q, sizeof(q), name));
    }
out:
    core_free(name);
    return rc;
}

/* Whether name is listed in the NULL-terminated list. */
static bool list_has(char *const *list, const char *name)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (strcmp(list[i], name) == 0)
            return true;
    }
    return false;
}

/* An env_pass naming another section's secret would be refused at spawn anyway; saying so
 * here beats a server that silently lacks a variable. Globs are not checked: they are meant
 * to catch families of variables, and the secrets among them are filtered out at spawn. */
static int check_env_pass(struct parser *p)
{
    const struct core_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->n_servers; i++) {
        const struct core_server_cfg *srv = &cfg->servers[i];
        for (size_t j = 0; j < srv->n_env_pass; j++) {
            const char *name = srv->env_pass[j];
            for (size_t k = 0; k < cfg->n_clients; k++) {
                size_t t = p->client_lines[k].token_env;
                if (t != 0 && strcmp(cfg->secret_env[t - 1], name) == 0)
                    return fail(p, p->env_pass_lines[i],
                                "env_pass: %s is the token_env of [client.%s] (line %d); a "
                                "client's token never reaches a server",
                                name, cfg->clients[k].name, p->client_lines[k].token);
            }
            for (size_t k = 0; k < cfg->n_servers; k++) {
                if (k != i && list_has(cfg->servers[k].secret_env, name))
                    return fail(p, p->env_pass_lines[i],
                                "env_pass: %s is a secret of [server.%s] (its env.* reads "
                                "${env:%s}), which no other server inherits; give this server "
                                "its own env.%s = ${env:%s}",
                                name, cfg->servers[k].name, name, name, name);
            }
        }
    }
    return 0;
}

/* Checks what may refer to a section further down: every server a client names exists, and
 * no env_pass names another section's secret. */
static int check_references(struct parser *p)
{
    const struct core_config *cfg = p->cfg;
    char q[EXCERPT_MAX];
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct core_client_cfg *c = &cfg->clients[i];
        for (size_t j = 0; j < c->n_servers; j++) {
            bool found = false;
            for (size_t k = 0; k < cfg->n_servers && !found; k++)
                found = strcmp(cfg->servers[k].name, c->servers[j]) == 0;
            if (!found)
                return fail(p, p->client_lines[i].servers,
                            "servers: '%s' is not a configured server (no such [server.NAME])",
                            excerpt(q, sizeof(q), c->servers[j]));
        }
    }
    return check_env_pass(p);
}

/* ---- lines ---- */

/* Splits a trimmed key line of n bytes the way inih does: the key ends at the first '=' or
 * ':', a ';' after a blank starts a comment, and key and value are trimmed. Returns the
 * separator, or 0 when the line has none. */
GW_STATIC int config_split_pair(const char *s, size_t n, size_t *name_len, size_t *value_off,
                                size_t *value_len)
{
    size_t i = 0;
    bool was_space = false;
    while (i < n && s[i] != '=' && s[i] != ':' && !(was_space && s[i] == ';')) {
        was_space = is_space(s[i]);
        i++;
    }
    if (i == n || s[i] == ';')
        return 0;
    size_t name_end = i;
    while (name_end > 0 && is_space(s[name_end - 1]))
        name_end--;
    size_t end = i + 1;
    was_space = false;
    while (end < n && !(was_space && s[end] == ';')) {
        was_space = is_space(s[end]);
        end++;
    }
    size_t off = i + 1;
    while (off < end && is_space(s[off]))
        off++;
    while (end > off && is_space(s[end - 1]))
        end--;
    *name_len = name_end;
    *value_off = off;
    *value_len = end - off;
    return s[i];
}

/* Handles the line s..s+n. Writes into out (num bytes) what inih gets: the key line when it
 * fits, or an empty line when this function has dealt with the line itself. */
static int on_line(struct parser *p, const char *s, size_t n, char *out, int num)
{
    out[0] = '\0';
    if (memchr(s, '\0', n) != NULL)
        return fail(p, p->line, "NUL byte in line");
    if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    while (n > 0 && is_space(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    if (n == 0 || s[0] == ';' || s[0] == '#')
        return 0;
    if (s[0] == '[')
        return on_section(p, s, n);

    size_t name_len;
    size_t value_off;
    size_t value_len;
    int sep = config_split_pair(s, n, &name_len, &value_off, &value_len);
    if (sep == 0 || name_len == 0)
        return fail(p, p->line, "expected \"key = value\", \"[section]\" or a comment");
    if (sep != '=')
        return fail(p, p->line, "expected \"key = value\" (\"key: value\" is not supported)");
    if (num > 2 && n <= (size_t)num - 2) {
        memcpy(out, s, n);
        out[n] = '\n';
        out[n + 1] = '\0';
        return 0;
    }
    /* Too long for inih's line buffer: handled here. */
    char *name = core_xstrndup(s, name_len);
    char *value = core_xstrndup(s + value_off, value_len);
    int rc = on_pair(p, name, value);
    core_free(name);
    core_free(value);
    return rc;
}

/* inih's reader: hands out exactly one line per call, or NULL at the end or after an error. */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    if (p->failed || p->pos >= p->len)
        return NULL;
    const char *s = p->text + p->pos;
    size_t left = p->len - p->pos;
    const char *nl = memchr(s, '\n', left);
    size_t n = nl != NULL ? (size_t)(nl - s) : left;
    p->pos += n + (nl != NULL);
    p->line++;
    if (on_line(p, s, n, str, num) != 0)
        return NULL;
    return str;
}

static int on_ini_pair(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    GW_UNUSED(section); /* sections are tracked by the reader */
    if (p->failed)
        return 0;
    if (value == NULL) {
        (void)fail(p, p->line, "expected \"key = value\", \"[section]\" or a comment");
        return 0;
    }
    return on_pair(p, name, value) == 0;
}

int core_config_parse(const char *text, size_t len, const char *name, struct core_config **out,
                      char *err, size_t errlen)
{
    struct parser p;
    memset(&p, 0, sizeof(p));
    p.name = name != NULL ? name : "<config>";
    p.text = text != NULL ? text : "";
    p.len = text != NULL ? len : 0;
    p.err = err;
    p.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    p.cfg = config_new();
    p.cfg->path = name != NULL ? core_xstrdup(name) : NULL;
    /* A config someone wrote asks for bearer tokens unless it says auth = none. */
    set_string(&p.cfg->auth, core_xstrdup("token"));

    int rc = ini_parse_stream(read_line, &p, on_ini_pair, &p);
    if (rc > 0)
        (void)fail(&p, rc, "expected \"key = value\", \"[section]\" or a comment");
    else if (rc < 0)
        (void)fail(&p, 0, "the INI parser failed (%d)", rc);
    if (!p.failed)
        (void)finish_section(&p); /* the error, if any, is in p */
    if (!p.failed)
        (void)check_references(&p); /* likewise */
    /* Where clients have identities of their own, a server's child is theirs alone unless the
     * config says otherwise: one principal's data must not reach another through it. */
    for (size_t i = 0; !p.failed && i < p.cfg->n_servers; i++)
        if (p.cfg->servers[i].isolation == CORE_ISOLATION_DEFAULT)
            p.cfg->servers[i].isolation =
                p.cfg->n_clients > 0 ? CORE_ISOLATION_CLIENT : CORE_ISOLATION_SHARED;

    forget_keys(&p);
    core_free(p.keys);
    core_free(p.prefix_lines);
    core_free(p.env_pass_lines);
    core_free(p.client_lines);
    if (p.failed) {
        core_config_free(p.cfg);
        return CORE_EPARSE;
    }
    *out = p.cfg;
    return 0;
}

int core_config_load(const char *path, struct core_config **out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    char why[512];
    int rc = core_file_read_all(path, 0, CONFIG_MAX_FILE, &text, &len, NULL, why, sizeof why);
    if (rc != 0) {
        if (err != NULL && errlen > 0) {
            if (rc == CORE_ETOOBIG)
                snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_FILE);
            else if (rc == CORE_EINVAL)
                snprintf(err, errlen, "%s", why); /* not a regular file */
            else
                snprintf(err, errlen, "%s: cannot read: %s", path, core_strerror(rc));
            sanitize(err);
        }
        return rc == CORE_ETOOBIG ? CORE_EPARSE : rc;
    }
    rc = core_config_parse(text, len, path, out, err, errlen);
    core_free(text);
    return rc;
}
