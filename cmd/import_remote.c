/* Remote servers in client configs, native or behind a stdio wrapper (see import_remote.h).
 *
 * The wrappers are read the way they read their own arguments: mcp-remote takes every
 * `--header K:V` pair out first, then the first remaining argument is the URL and a second one
 * made of digits the OAuth callback port, and it expands ${NAME} in header values from its own
 * environment (the entry's `env` on top of the client's); supergateway takes yargs options
 * (`--sse URL`, `--streamableHttp URL`, `--header "K: V"`, `--oauth2Bearer TOKEN`, kebab-case
 * spellings too) and expands nothing. */
#include "cmd/import_remote.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

static bool is_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_env_name_n(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '_')
            return false;
    }
    return true;
}

static void put(struct core_buf *b, const char *s, size_t n)
{
    (void)!core_buf_append(b, s, n); /* b is unlimited */
}

static void add_unmapped(struct cmd_import_remote *r, char *item)
{
    r->unmapped = core_xrealloc(r->unmapped, (r->n_unmapped + 1) * sizeof(char *));
    r->unmapped[r->n_unmapped++] = item;
}

static char *json_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return core_xstrdup(v->valuestring);
    char *json = cJSON_PrintUnformatted(v);
    char *out = core_xstrdup(json != NULL ? json : "null");
    cJSON_free(json);
    return out;
}

static void add_unmapped_key(struct cmd_import_remote *r, const cJSON *item)
{
    char *v = json_text(item);
    struct core_buf b;
    core_buf_init(&b, 0);
    (void)!core_buf_appendf(&b, "%s = %s", item->string, v); /* unlimited */
    core_free(v);
    add_unmapped(r, core_buf_take(&b, NULL));
}

/* ---- variables ---- */

/* How ${...} in one string is read. */
struct vars {
    enum cmd_import_dialect d;
    bool plain_env;   /* ${NAME} is an environment variable (Claude Code, mcp-remote) */
    const cJSON *env; /* mcp-remote: the entry's env, which ${NAME} reads first, or NULL */
    bool *env_used;   /* per item of env: read by a header */
    const char *what; /* for messages: "headers.X", "url" */
};

/* Appends s to out with every variable the client (and the wrapper) would expand written as
 * agentgate's ${env:NAME}. Returns 0, or CORE_EINVAL with the reason in why. */
static int translate(const struct vars *v, const char *s, int depth, struct core_buf *out,
                     char *why, size_t whylen)
{
    bool client_env = v->d != CMD_IMPORT_DIALECT_CLAUDE;
    bool plain = v->plain_env && depth == 0; /* the wrapper expands once, not recursively */
    if (!client_env && strstr(s, "${env:") != NULL) {
        snprintf(why, whylen,
                 "%s contains \"${env:\", which agentgate would expand but Claude passes as is",
                 v->what);
        return CORE_EINVAL;
    }
    for (;;) {
        const char *d = strstr(s, "${");
        const char *close = d != NULL ? strchr(d + 2, '}') : NULL;
        if (d == NULL || close == NULL) {
            put(out, s, strlen(s));
            return 0;
        }
        put(out, s, (size_t)(d - s));
        const char *inner = d + 2;
        size_t n = (size_t)(close - inner);
        if (client_env && n > 4 && strncmp(inner, "env:", 4) == 0 &&
            is_env_name_n(inner + 4, n - 4)) {
            put(out, d, (size_t)(close + 1 - d));
        } else if (plain && is_env_name_n(inner, n)) {
            const cJSON *item = NULL;
            int idx = 0;
            if (v->env != NULL) {
                for (item = v->env->child; item != NULL; item = item->next, idx++) {
                    if (strlen(item->string) == n && strncmp(item->string, inner, n) == 0)
                        break;
                }
            }
            if (item != NULL && cJSON_IsString(item)) {
                /* The wrapper's own env: its value, with the client's variables in it. */
                v->env_used[idx] = true;
                int rc = translate(v, item->valuestring, depth + 1, out, why, whylen);
                if (rc)
                    return rc;
            } else {
                put(out, "${env:", 6);
                put(out, inner, n);
                put(out, "}", 1);
            }
        } else if (!client_env) {
            put(out, d, (size_t)(close + 1 - d)); /* nobody expands it: literal text */
        } else {
            snprintf(why, whylen,
                     "%s uses ${%.*s}, a client variable agentgate cannot resolve; only "
                     "${env:NAME} is supported",
                     v->what, (int)(n > 64 ? 64 : n), inner);
            return CORE_EINVAL;
        }
        s = close + 1;
    }
}

static int translate_dup(const struct vars *v, const char *s, char **out, char *why, size_t whylen)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    int rc = translate(v, s, 0, &b, why, whylen);
    if (rc) {
        core_buf_dispose(&b);
        return rc;
    }
    if (b.data == NULL)
        put(&b, "", 0);
    *out = core_buf_take(&b, NULL);
    return 0;
}

/* ---- headers, auth ---- */

static bool contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++) {
        if (strncasecmp(s, needle, n) == 0)
            return true;
    }
    return false;
}

/* A header name that usually carries a credential. */
static bool is_secret_name(const char *name)
{
    static const char *const words[] = {"authorization", "cookie",   "token", "key",
                                        "secret",        "password", "auth",  NULL};
    for (const char *const *w = words; *w; w++) {
        if (contains_ci(name, *w))
            return true;
    }
    return false;
}

/* Adds or replaces (names are case-insensitive; the later one wins, as in the wrappers) a
 * header whose value is raw before translation. */
static int add_header(struct cmd_import_remote *r, struct vars *v, const char *name, size_t nlen,
                      const char *raw, char *why, size_t whylen)
{
    for (size_t i = 0; i < nlen; i++) {
        if (!is_alnum(name[i]) && strchr("!#$%&'*+-.^_`|~", name[i]) == NULL) {
            snprintf(why, whylen, "header name '%.*s' is not a valid HTTP header name",
                     (int)(nlen > 64 ? 64 : nlen), name);
            return CORE_EINVAL;
        }
    }
    if (nlen == 0) {
        snprintf(why, whylen, "a header has an empty name");
        return CORE_EINVAL;
    }
    char *hname = core_xstrndup(name, nlen);
    char what[96];
    snprintf(what, sizeof what, "headers.%.80s", hname);
    v->what = what;
    char *value = NULL;
    int rc = translate_dup(v, raw, &value, why, whylen);
    v->what = NULL; /* what is this frame's array */
    if (rc) {
        core_free(hname);
        return rc;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, hname) == 0) {
            core_free(r->headers[i].name);
            core_free(r->headers[i].value);
            r->headers[i].name = hname;
            r->headers[i].value = value;
            return 0;
        }
    }
    r->headers = core_xrealloc(r->headers, (r->n_headers + 1) * sizeof(*r->headers));
    r->headers[r->n_headers].name = hname;
    r->headers[r->n_headers].value = value;
    r->headers[r->n_headers].secret_in_clear = false;
    r->n_headers++;
    return 0;
}

/* The variable of "Bearer ${env:NAME}" (nothing else in the value), or NULL. */
static char *bearer_env(const char *value)
{
    if (strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    const char *p = value + 7;
    while (*p == ' ')
        p++;
    if (strncmp(p, "${env:", 6) != 0)
        return NULL;
    p += 6;
    const char *close = strchr(p, '}');
    if (close == NULL || close[1] != '\0' || !is_env_name_n(p, (size_t)(close - p)))
        return NULL;
    return core_xstrndup(p, (size_t)(close - p));
}

/* Settles auth: an Authorization header "Bearer ${env:NAME}" becomes auth = bearer with
 * token_env; any other Authorization header stays a static header (auth = none). Without one,
 * a url entry and mcp-remote get auth = oauth (the client or mcp-remote did OAuth for them;
 * agentgate connects without a token until the server asks for one, so a server that needs no
 * login serves at once); supergateway does no OAuth. */
static void finish(struct cmd_import_remote *r)
{
    r->auth = r->via == CMD_IMPORT_VIA_SUPERGATEWAY ? "none" : "oauth";
    size_t i = 0;
    while (i < r->n_headers) {
        struct cmd_import_header *h = &r->headers[i];
        if (strcasecmp(h->name, "Authorization") == 0) {
            r->auth = "none";
            char *var = bearer_env(h->value);
            if (var != NULL) {
                r->auth = "bearer";
                r->token_env = var;
                core_free(h->name);
                core_free(h->value);
                memmove(h, h + 1, (r->n_headers - i - 1) * sizeof(*h));
                r->n_headers--;
                continue;
            }
        }
        h->secret_in_clear = is_secret_name(h->name) && strstr(h->value, "${env:") == NULL;
        i++;
    }
}

/* mcp-remote's --static-oauth-client-info given inline: {"client_id": ..., "client_secret":
 * ...} becomes client_id and client_secret (they only matter with auth = oauth, which the
 * caller checks). Returns false, leaving r alone, for any other shape (an @file, more keys). */
static bool static_client_info(struct cmd_import_remote *r, struct vars *v, const char *json,
                               char *why, size_t whylen, int *rc)
{
    *rc = 0;
    cJSON *info = cJSON_Parse(json);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(info, "client_id");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(info, "client_secret");
    bool ok = cJSON_IsObject(info) && cJSON_IsString(id) && id->valuestring[0] != '\0' &&
              (secret == NULL || (cJSON_IsString(secret) && secret->valuestring[0] != '\0'));
    const cJSON *item;
    cJSON_ArrayForEach (item, info) {
        if (ok && item != id && item != secret)
            ok = false;
    }
    if (ok) {
        bool plain = v->plain_env;
        v->plain_env = false; /* mcp-remote expands nothing here */
        v->what = "--static-oauth-client-info client_id";
        *rc = translate_dup(v, id->valuestring, &r->client_id, why, whylen);
        v->what = "--static-oauth-client-info client_secret";
        if (*rc == 0 && secret != NULL)
            *rc = translate_dup(v, secret->valuestring, &r->client_secret, why, whylen);
        v->plain_env = plain;
    }
    cJSON_Delete(info);
    return ok;
}

static struct cmd_import_remote *remote_new(enum cmd_import_via via)
{
    struct cmd_import_remote *r = core_xcalloc(1, sizeof(*r));
    r->via = via;
    r->transport = "auto";
    r->auth = "none";
    return r;
}

void cmd_import_remote_free(struct cmd_import_remote *r)
{
    if (r == NULL)
        return;
    core_free(r->url);
    core_free(r->token_env);
    core_free(r->ca_file);
    core_free(r->client_id);
    core_free(r->client_secret);
    for (size_t i = 0; i < r->n_headers; i++) {
        core_free(r->headers[i].name);
        core_free(r->headers[i].value);
    }
    core_free(r->headers);
    for (size_t i = 0; i < r->n_unmapped; i++)
        core_free(r->unmapped[i]);
    core_free(r->unmapped);
    core_free(r);
}

const char *cmd_import_remote_via_name(enum cmd_import_via via)
{
    switch (via) {
    case CMD_IMPORT_VIA_MCP_REMOTE:
        return "mcp-remote";
    case CMD_IMPORT_VIA_SUPERGATEWAY:
        return "supergateway";
    case CMD_IMPORT_VIA_NATIVE:
        break;
    }
    return "url";
}

static int set_url(struct cmd_import_remote *r, struct vars *v, const char *raw, char *why,
                   size_t whylen)
{
    if (raw[0] == '\0') {
        snprintf(why, whylen, "the server URL is empty");
        return CORE_EINVAL;
    }
    v->what = "url";
    char *url = NULL;
    int rc = translate_dup(v, raw, &url, why, whylen);
    if (rc)
        return rc;
    core_free(r->url);
    r->url = url;
    return 0;
}

/* ---- native entries ---- */

static const char *native_transport(enum cmd_import_dialect d, const char *type)
{
    if (type == NULL)
        return "auto";
    if (strcmp(type, "sse") == 0)
        return "sse";
    /* VS Code's "http" tries Streamable HTTP and falls back to SSE: that is auto. */
    if (d == CMD_IMPORT_DIALECT_VSCODE && strcmp(type, "http") == 0)
        return "auto";
    return "streamable-http";
}

int cmd_import_remote_native(enum cmd_import_dialect d, const cJSON *entry,
                             struct cmd_import_remote **out, char *why, size_t whylen)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(entry, "type");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(entry, "url");
    const char *url_key = "url";
    if (url == NULL) {
        url = cJSON_GetObjectItemCaseSensitive(entry, "serverUrl"); /* Windsurf's name */
        url_key = "serverUrl";
    }
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(entry, "headers");
    if (!cJSON_IsString(url)) {
        snprintf(why, whylen, "\"%s\" is not a string", url_key);
        return CORE_EINVAL;
    }
    struct cmd_import_remote *r = remote_new(CMD_IMPORT_VIA_NATIVE);
    r->transport = native_transport(d, cJSON_IsString(type) ? type->valuestring : NULL);
    struct vars v = {.d = d, .plain_env = d == CMD_IMPORT_DIALECT_CLAUDE};
    int rc = set_url(r, &v, url->valuestring, why, whylen);
    if (rc)
        goto fail;
    if (headers != NULL && !cJSON_IsNull(headers)) {
        if (!cJSON_IsObject(headers)) {
            snprintf(why, whylen, "\"headers\" is not an object");
            rc = CORE_EINVAL;
            goto fail;
        }
        const cJSON *h;
        cJSON_ArrayForEach (h, headers) {
            if (!cJSON_IsString(h)) {
                snprintf(why, whylen, "headers.%.64s is not a string", h->string);
                rc = CORE_EINVAL;
                goto fail;
            }
            rc = add_header(r, &v, h->string, strlen(h->string), h->valuestring, why, whylen);
            if (rc)
                goto fail;
        }
    }
    const cJSON *item;
    cJSON_ArrayForEach (item, entry) {
        if (strcmp(item->string, "type") != 0 && strcmp(item->string, url_key) != 0 &&
            strcmp(item->string, "headers") != 0)
            add_unmapped_key(r, item);
    }
    finish(r);
    *out = r;
    return 0;
fail:
    cmd_import_remote_free(r);
    return rc;
}

/* ---- wrappers ---- */

/* Whether the command's file name is name (also name.cmd / name.exe, from Windows configs). */
static bool cmd_is(const char *cmd, const char *name)
{
    const char *base = cmd;
    for (const char *p = cmd; *p; p++) {
        if (*p == '/' || *p == '\\')
            base = p + 1;
    }
    size_t n = strlen(name);
    if (strncmp(base, name, n) != 0)
        return false;
    return base[n] == '\0' || strcasecmp(base + n, ".cmd") == 0 ||
           strcasecmp(base + n, ".exe") == 0;
}

/* The package name of an npx-style spec ("mcp-remote@0.1.37" → "mcp-remote"), compared. */
static bool spec_is(const char *spec, const char *name)
{
    size_t n = strlen(name);
    return strncmp(spec, name, n) == 0 && (spec[n] == '\0' || spec[n] == '@');
}

enum tool { TOOL_NONE = 0, TOOL_MCP_REMOTE, TOOL_SUPERGATEWAY };

static enum tool tool_of(const char *spec)
{
    if (spec_is(spec, "mcp-remote"))
        return TOOL_MCP_REMOTE;
    if (spec_is(spec, "supergateway"))
        return TOOL_SUPERGATEWAY;
    return TOOL_NONE;
}

/* Finds the wrapper in command + args; *first is the index of its first own argument. */
static enum tool find_tool(const char *cmd, const char *const *args, size_t n, size_t *first)
{
    static const char *const runner_flags[] = {"-y",
                                               "--yes",
                                               "-q",
                                               "--quiet",
                                               "--silent",
                                               "--bun",
                                               "--prefer-offline",
                                               "--prefer-online",
                                               "--ignore-existing",
                                               NULL};
    if (cmd_is(cmd, "mcp-remote")) {
        *first = 0;
        return TOOL_MCP_REMOTE;
    }
    if (cmd_is(cmd, "supergateway")) {
        *first = 0;
        return TOOL_SUPERGATEWAY;
    }
    size_t i = 0;
    if (cmd_is(cmd, "pnpm") || cmd_is(cmd, "yarn")) {
        if (n == 0 || strcmp(args[0], "dlx") != 0)
            return TOOL_NONE;
        i = 1;
    } else if (!cmd_is(cmd, "npx") && !cmd_is(cmd, "bunx") && !cmd_is(cmd, "pnpx")) {
        return TOOL_NONE;
    }
    const char *package = NULL;
    while (i < n && args[i][0] == '-') {
        const char *a = args[i];
        if ((strcmp(a, "-p") == 0 || strcmp(a, "--package") == 0) && i + 1 < n) {
            package = args[i + 1];
            i += 2;
            continue;
        }
        if (strncmp(a, "--package=", 10) == 0) {
            package = a + 10;
            i++;
            continue;
        }
        const char *const *f;
        for (f = runner_flags; *f && strcmp(*f, a) != 0; f++)
            ;
        if (*f == NULL)
            return TOOL_NONE; /* a runner option we do not know: we cannot tell what runs */
        i++;
    }
    if (i >= n)
        return TOOL_NONE;
    enum tool t = tool_of(args[i]);
    if (package != NULL && tool_of(package) != t)
        return TOOL_NONE;
    *first = i + 1;
    return t;
}

static void add_unmapped_args(struct cmd_import_remote *r, const char *const *args, size_t from,
                              size_t count)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    for (size_t i = from; i < from + count; i++) {
        if (i > from)
            put(&b, " ", 1);
        put(&b, args[i], strlen(args[i]));
    }
    add_unmapped(r, core_buf_take(&b, NULL));
}

/* mcp-remote's --header value: NAME (letters, digits, _ and -), a colon, optional blanks. */
static int mcp_remote_header(struct cmd_import_remote *r, struct vars *v, const char *a, char *why,
                             size_t whylen, bool *ok)
{
    size_t n = 0;
    while (is_alnum(a[n]) || a[n] == '_' || a[n] == '-')
        n++;
    *ok = n > 0 && a[n] == ':';
    if (!*ok)
        return 0;
    const char *val = a + n + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    return add_header(r, v, a, n, val, why, whylen);
}

static const char *mcp_remote_transport(const char *strategy)
{
    if (strcmp(strategy, "http-first") == 0 || strcmp(strategy, "sse-first") == 0)
        return "auto";
    if (strcmp(strategy, "http-only") == 0)
        return "streamable-http";
    if (strcmp(strategy, "sse-only") == 0)
        return "sse";
    return NULL;
}

static bool is_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

static int parse_mcp_remote(struct cmd_import_remote *r, struct vars *v, const char *const *args,
                            size_t n, char *why, size_t whylen, size_t *info_at)
{
    /* Options that take a value and that agentgate has no place for. */
    static const char *const valued[] = {"--host",
                                         "--static-oauth-client-metadata",
                                         "--static-oauth-client-info",
                                         "--resource",
                                         "--auth-timeout",
                                         "--ignore-tool",
                                         NULL};
    bool *taken = core_xcalloc(n + 1, sizeof(bool));
    size_t client_info_at = SIZE_MAX; /* index of a mapped --static-oauth-client-info */
    bool info_seen = false;
    int rc = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (strcmp(args[i], "--header") != 0 || taken[i])
            continue;
        bool ok;
        rc = mcp_remote_header(r, v, args[i + 1], why, whylen, &ok);
        if (rc)
            goto out;
        if (!ok)
            add_unmapped_args(r, args, i, 2); /* mcp-remote ignores it too */
        taken[i] = taken[i + 1] = true;
        i++;
    }
    size_t pos = 0; /* positional arguments seen */
    for (size_t i = 0; i < n; i++) {
        if (taken[i])
            continue;
        const char *a = args[i];
        if (pos == 0) {
            if (a[0] == '-') {
                snprintf(why, whylen,
                         "mcp-remote reads its first argument (after the headers) as the server "
                         "URL, and here it is '%.64s'",
                         a);
                rc = CORE_EINVAL;
                goto out;
            }
            rc = set_url(r, v, a, why, whylen);
            if (rc)
                goto out;
            pos++;
            continue;
        }
        if (pos == 1 && is_digits(a)) {
            add_unmapped_args(r, args, i, 1); /* the OAuth callback port */
            pos++;
            continue;
        }
        if (strcmp(a, "--transport") == 0 && i + 1 < n) {
            const char *t = mcp_remote_transport(args[i + 1]);
            if (t != NULL)
                r->transport = t;
            else
                add_unmapped_args(r, args, i, 2);
            i++;
            continue;
        }
        if (strcmp(a, "--allow-http") == 0)
            continue; /* agentgate takes http:// URLs as they are */
        if (strcmp(a, "--static-oauth-client-info") == 0 && i + 1 < n &&
            !info_seen) { /* mcp-remote reads the first one only */
            info_seen = true;
            if (static_client_info(r, v, args[i + 1], why, whylen, &rc)) {
                if (rc)
                    goto out;
                client_info_at = i;
            } else {
                add_unmapped_args(r, args, i, 2);
            }
            i++;
            continue;
        }
        const char *const *f;
        for (f = valued; *f && strcmp(*f, a) != 0; f++)
            ;
        if (*f != NULL && i + 1 < n) {
            add_unmapped_args(r, args, i, 2);
            i++;
            continue;
        }
        add_unmapped_args(r, args, i, 1);
        if (a[0] != '-')
            pos++;
    }
    if (r->url == NULL) {
        snprintf(why, whylen, "mcp-remote is given no server URL");
        rc = CORE_EINVAL;
        goto out;
    }
    *info_at = client_info_at;
out:
    core_free(taken);
    return rc;
}

/* supergateway's option name at a ("--sse", "--sse=URL", kebab-case too) matched against the
 * camelCase name; *value is set for the --name=value form. */
static bool sg_opt(const char *a, const char *camel, const char *kebab, const char **value)
{
    const char *names[] = {camel, kebab};
    for (int k = 0; k < 2; k++) {
        if (names[k] == NULL || strncmp(a, "--", 2) != 0)
            continue;
        size_t n = strlen(names[k]);
        if (strncmp(a + 2, names[k], n) != 0)
            continue;
        if (a[2 + n] == '\0') {
            *value = NULL;
            return true;
        }
        if (a[2 + n] == '=') {
            *value = a + 3 + n;
            return true;
        }
    }
    return false;
}

/* Returns 1 when the arguments do not make supergateway a client of a remote server. */
static int parse_supergateway(struct cmd_import_remote *r, struct vars *v, const char *const *args,
                              size_t n, char *why, size_t whylen)
{
    const char *url = NULL;
    const char *kind = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *a = args[i];
        const char *val;
        bool has_next = i + 1 < n;
        if (sg_opt(a, "stdio", NULL, &val))
            return 1;
        if (sg_opt(a, "outputTransport", "output-transport", &val)) {
            const char *t = val != NULL ? val : (has_next ? args[++i] : "");
            if (strcmp(t, "stdio") != 0)
                return 1;
            continue;
        }
        bool sse = sg_opt(a, "sse", NULL, &val);
        if (sse || sg_opt(a, "streamableHttp", "streamable-http", &val)) {
            if (val == NULL && !has_next)
                continue;
            if (url != NULL) {
                snprintf(why, whylen, "supergateway is given two server URLs");
                return CORE_EINVAL;
            }
            url = val != NULL ? val : args[++i];
            kind = sse ? "sse" : "streamable-http";
            continue;
        }
        if (sg_opt(a, "header", NULL, &val)) {
            const char *h = val != NULL ? val : (has_next ? args[++i] : NULL);
            const char *colon = h != NULL ? strchr(h, ':') : NULL;
            size_t kl = colon != NULL ? (size_t)(colon - h) : 0;
            while (kl > 0 && (h[kl - 1] == ' ' || h[kl - 1] == '\t'))
                kl--;
            size_t ks = 0;
            while (ks < kl && (h[ks] == ' ' || h[ks] == '\t'))
                ks++;
            const char *hv = colon != NULL ? colon + 1 : NULL;
            while (hv != NULL && (*hv == ' ' || *hv == '\t'))
                hv++;
            if (hv == NULL || ks == kl || *hv == '\0') {
                add_unmapped_args(r, args, val != NULL ? i : i - 1, val != NULL ? 1 : 2);
                continue; /* supergateway ignores it too */
            }
            char *trimmed = core_xstrdup(hv);
            size_t tl = strlen(trimmed);
            while (tl > 0 && (trimmed[tl - 1] == ' ' || trimmed[tl - 1] == '\t'))
                trimmed[--tl] = '\0';
            int rc = add_header(r, v, h + ks, kl - ks, trimmed, why, whylen);
            core_free(trimmed);
            if (rc)
                return rc;
            continue;
        }
        if (sg_opt(a, "oauth2Bearer", "oauth2-bearer", &val)) {
            const char *tok = val != NULL ? val : (has_next ? args[++i] : "");
            struct core_buf b;
            core_buf_init(&b, 0);
            (void)!core_buf_appendf(&b, "Bearer %s", tok); /* unlimited */
            int rc = add_header(r, v, "Authorization", 13, b.data, why, whylen);
            core_buf_dispose(&b);
            if (rc)
                return rc;
            continue;
        }
        /* Anything else, with its value when one follows. */
        size_t count = 1;
        if (strncmp(a, "--", 2) == 0 && strchr(a, '=') == NULL && has_next && args[i + 1][0] != '-')
            count = 2;
        add_unmapped_args(r, args, i, count);
        i += count - 1;
    }
    if (url == NULL)
        return 1;
    r->transport = kind;
    return set_url(r, v, url, why, whylen);
}

int cmd_import_remote_wrapper(enum cmd_import_dialect d, const cJSON *entry,
                              struct cmd_import_remote **out, char *why, size_t whylen)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(entry, "command");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(entry, "args");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(entry, "env");
    if (!cJSON_IsString(cmd) || (args != NULL && !cJSON_IsArray(args) && !cJSON_IsNull(args)) ||
        (env != NULL && !cJSON_IsObject(env) && !cJSON_IsNull(env)))
        return 1; /* the stdio path reports what is wrong with it */
    size_t n = cJSON_IsArray(args) ? (size_t)cJSON_GetArraySize(args) : 0;
    const char **argv = core_xcalloc(n + 1, sizeof(char *));
    size_t i = 0;
    const cJSON *a;
    int rc = 1;
    struct cmd_import_remote *r = NULL;
    bool *env_used = NULL;
    if (cJSON_IsArray(args)) {
        cJSON_ArrayForEach (a, args) {
            if (!cJSON_IsString(a))
                goto out;
            argv[i++] = a->valuestring;
        }
    }
    size_t first = 0;
    enum tool t = find_tool(cmd->valuestring, argv, n, &first);
    if (t == TOOL_NONE)
        goto out;
    size_t n_env = cJSON_IsObject(env) ? (size_t)cJSON_GetArraySize(env) : 0;
    env_used = core_xcalloc(n_env + 1, sizeof(bool));
    r = remote_new(t == TOOL_MCP_REMOTE ? CMD_IMPORT_VIA_MCP_REMOTE : CMD_IMPORT_VIA_SUPERGATEWAY);
    struct vars v = {
        .d = d,
        .plain_env = t == TOOL_MCP_REMOTE,
        .env = t == TOOL_MCP_REMOTE && n_env > 0 ? env : NULL,
        .env_used = env_used,
    };
    size_t info_at = SIZE_MAX; /* where a mapped --static-oauth-client-info stands */
    if (t == TOOL_MCP_REMOTE)
        rc = parse_mcp_remote(r, &v, argv + first, n - first, why, whylen, &info_at);
    else
        rc = parse_supergateway(r, &v, argv + first, n - first, why, whylen);
    if (rc)
        goto out;

    /* The entry's env: read by a header, a CA for Node, or not carried over. */
    size_t k = 0;
    if (n_env > 0) {
        const cJSON *e;
        cJSON_ArrayForEach (e, env) {
            bool used = env_used[k++];
            if (used)
                continue;
            if (strcmp(e->string, "NODE_EXTRA_CA_CERTS") == 0 && cJSON_IsString(e) &&
                e->valuestring[0] != '\0') {
                v.what = "env.NODE_EXTRA_CA_CERTS";
                v.plain_env = false;
                v.env = NULL;
                rc = translate_dup(&v, e->valuestring, &r->ca_file, why, whylen);
                if (rc)
                    goto out;
                continue;
            }
            char *val = json_text(e);
            struct core_buf b;
            core_buf_init(&b, 0);
            (void)!core_buf_appendf(&b, "env.%s = %s", e->string, val); /* unlimited */
            core_free(val);
            add_unmapped(r, core_buf_take(&b, NULL));
        }
    }
    const cJSON *item;
    cJSON_ArrayForEach (item, entry) {
        const char *key = item->string;
        if (strcmp(key, "command") == 0 || strcmp(key, "args") == 0 || strcmp(key, "env") == 0)
            continue;
        if (strcmp(key, "type") == 0 && cJSON_IsString(item) &&
            strcmp(item->valuestring, "stdio") == 0)
            continue;
        add_unmapped_key(r, item);
    }
    finish(r);
    if (r->client_id != NULL && strcmp(r->auth, "oauth") != 0) {
        /* A static Authorization header means no OAuth: the client info goes unused. */
        core_free(r->client_id);
        core_free(r->client_secret);
        r->client_id = r->client_secret = NULL;
        add_unmapped_args(r, argv + first, info_at, 2);
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    cmd_import_remote_free(r);
    core_free(env_used);
    core_free(argv);
    return rc;
}
