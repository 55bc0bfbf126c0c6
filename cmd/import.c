/* `agentgate import`: copies a client's MCP server entries into the agentgate config.
 *
 * The client file is JSON: `{"mcpServers": {NAME: {...}}}` for Claude Desktop and Cursor,
 * `{"servers": {NAME: {...}}, "inputs": [...]}` for VS Code (JSON with comments and trailing
 * commas, which are blanked before parsing so that offsets and line numbers stay true).
 *
 * Every entry becomes one `[server.NAME]` section appended to the agentgate config, or a
 * reported skip. Remote servers become remote sections (url, transport, headers.*, auth), and
 * so do the stdio wrappers people run in front of them (mcp-remote, supergateway): see
 * cmd/import_remote.h. Nothing is written that the real
 * loader would read differently: each section is checked by parsing the whole resulting text
 * with core_config_parse before it is accepted, values the INI syntax cannot carry are refused
 * with a reason, and the finished file is loaded with core_config_load before it replaces the
 * old one. Writes are atomic (temporary file in the same directory, fsync, rename). */
#include "cmd/import.h"
#include "cmd/import_remote.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/file.h"
#include "core/paths.h"
#include "core/err.h"

#define CLIENT_FILE_MAX (16 * 1024 * 1024) /* bytes; a client config is small */
#define NAME_MAX_LEN 64                    /* longest server name the loader accepts */
#define PREFIX_MAX_LEN 32                  /* longest prefix the loader accepts */

enum client {
    CLIENT_CLAUDE = 0,
    CLIENT_CURSOR,
    CLIENT_VSCODE,
};

static const char *const client_names[] = {"claude", "cursor", "vscode"};

enum outcome {
    OUTCOME_ADDED = 0, /* written as a [server.NAME] section (stdio or remote) */
    OUTCOME_SKIPPED,   /* not written, kept in the client */
    OUTCOME_SELF,      /* agentgate's own bridge entry: not written, replaced on --rewrite */
};

struct options {
    enum client client;
    const char *client_path; /* NULL: the client's default */
    const char *config_path; /* NULL: the agentgate default */
    bool rewrite;
    bool dry_run;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: agentgate import claude|cursor|vscode [PATH] [--config FILE] [--rewrite] "
            "[--dry-run]\n"
            "\n"
            "Copies the client's MCP servers into the agentgate config as [server.NAME]\n"
            "sections and prints what it did. Remote servers (url entries, and stdio\n"
            "wrappers such as `npx mcp-remote URL` or `supergateway --sse URL`) become\n"
            "native remote sections.\n"
            "  PATH           the client's config file (default: the client's usual place)\n"
            "  --config FILE  the agentgate config (default:\n"
            "                 $XDG_CONFIG_HOME/agentgate/agentgate.ini)\n"
            "  --rewrite      then replace the imported entries in the client file with one\n"
            "                 `agentgate` entry running the bridge (a timestamped backup of the\n"
            "                 client file is written first)\n"
            "  --dry-run      print what would happen, write nothing\n");
}

/* ---- small helpers ---- */

static bool is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_name_char(int c)
{
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

static bool is_env_name(const char *s)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (; *s; s++) {
        if (!is_alnum(*s) && *s != '_')
            return false;
    }
    return true;
}

/* Appends to b; allocation failure aborts and b has no limit, so this cannot fail. */
static void put(struct core_buf *b, const char *s)
{
    (void)!core_buf_append_str(b, s); /* b is unlimited */
}

static void putf(struct core_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct core_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        put(b, small);
        return;
    }
    char *big = core_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(b, big);
    core_free(big);
}

/* A value for a comment line: s itself, or its JSON form when it holds a line break. The
 * caller frees the result. */
static char *comment_text(const char *s)
{
    if (strpbrk(s, "\r\n") == NULL)
        return core_xstrdup(s);
    cJSON *str = cJSON_CreateString(s);
    char *json = cJSON_PrintUnformatted(str);
    cJSON_Delete(str);
    char *out = core_xstrdup(json);
    cJSON_free(json);
    return out;
}

/* Any JSON value as text for a comment line (strings unquoted when they fit on the line). */
static char *comment_value(const cJSON *v)
{
    if (cJSON_IsString(v))
        return comment_text(v->valuestring);
    char *json = cJSON_PrintUnformatted(v);
    char *out = core_xstrdup(json != NULL ? json : "null");
    cJSON_free(json);
    return out;
}

/* Reads the whole file at path into *out (NUL-terminated; caller frees). Returns 0, -errno,
 * CORE_EINVAL (not a regular file) or CORE_ETOOBIG; read_error says which in words. */
static int read_file(const char *path, char **out, size_t *len)
{
    return core_file_read_all(path, 0, CLIENT_FILE_MAX, out, len, NULL, NULL, 0);
}

static const char *read_error(int rc)
{
    if (rc == CORE_ETOOBIG)
        return "larger than 16 MiB";
    if (rc == CORE_EINVAL)
        return "not a regular file";
    return strerror(-rc);
}


static int default_client_path(enum client c, char *out, size_t cap)
{
    switch (c) {
    case CLIENT_CLAUDE:
#ifdef __APPLE__
        return core_path_xdg(out, cap, NULL, "Library/Application Support",
                        "Claude/claude_desktop_config.json");
#else
        return core_path_xdg(out, cap, "XDG_CONFIG_HOME", ".config",
                        "Claude/claude_desktop_config.json");
#endif
    case CLIENT_CURSOR:
        return core_path_xdg(out, cap, NULL, ".cursor", "mcp.json");
    case CLIENT_VSCODE:
#ifdef __APPLE__
        return core_path_xdg(out, cap, NULL, "Library/Application Support", "Code/User/mcp.json");
#else
        return core_path_xdg(out, cap, "XDG_CONFIG_HOME", ".config", "Code/User/mcp.json");
#endif
    }
    return -1;
}

/* mkdir -p of the directory part of path, 0700 for every directory it creates. */
static int make_parent_dirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    char *slash = strrchr(tmp, '/');
    if (slash == NULL || slash == tmp)
        return 0;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Our own binary's absolute path into out. Returns 0 or -1. */
static int self_exe(char *out, size_t cap)
{
#ifdef __APPLE__
    char raw[PATH_MAX];
    uint32_t size = sizeof raw;
    if (_NSGetExecutablePath(raw, &size) != 0 || realpath(raw, out) == NULL)
        return -1;
    (void)cap;
    return 0;
#else
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    return 0;
#endif
}

/* ---- JSON input ---- */

/* Blanks // and block comments and trailing commas (VS Code's JSON with comments) with spaces,
 * keeping every newline so offsets and line numbers do not move. Returns whether anything
 * was blanked. */
static bool blank_jsonc(char *s, size_t len)
{
    bool changed = false;
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < len)
                    i++;
            }
            i++;
        } else if (c == '/' && i + 1 < len && s[i + 1] == '/') {
            for (; i < len && s[i] != '\n'; i++)
                s[i] = ' ';
            changed = true;
        } else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
            s[i] = ' ';
            s[i + 1] = ' ';
            for (i += 2; i < len && !(s[i] == '*' && i + 1 < len && s[i + 1] == '/'); i++) {
                if (s[i] != '\n')
                    s[i] = ' ';
            }
            if (i < len) {
                s[i] = ' ';
                s[i + 1] = ' ';
                i += 2;
            }
            changed = true;
        } else if (c == ',') {
            /* A comma followed (past blanks and comments) by a closing bracket. */
            size_t j = i + 1;
            while (j < len) {
                if (is_blank(s[j])) {
                    j++;
                } else if (s[j] == '/' && j + 1 < len && s[j + 1] == '/') {
                    while (j < len && s[j] != '\n')
                        j++;
                } else if (s[j] == '/' && j + 1 < len && s[j + 1] == '*') {
                    for (j += 2; j < len && !(s[j] == '*' && j + 1 < len && s[j + 1] == '/'); j++)
                        ;
                    j += 2;
                } else {
                    break;
                }
            }
            if (j < len && (s[j] == '}' || s[j] == ']')) {
                s[i] = ' ';
                changed = true;
            }
            i++;
        } else {
            i++;
        }
    }
    return changed;
}

static int line_of(const char *text, size_t len, const char *at)
{
    if (at == NULL || at < text)
        return 1;
    size_t end = (size_t)(at - text);
    if (end > len)
        end = len;
    int line = 1;
    for (size_t i = 0; i < end; i++) {
        if (text[i] == '\n')
            line++;
    }
    return line;
}

/* Parses the client file. On failure prints the one-line error and returns NULL. */
static cJSON *parse_client(enum client c, const char *path, const char *text, size_t len,
                           bool *had_comments)
{
    const char *end = NULL;
    *had_comments = false;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (doc == NULL && c == CLIENT_VSCODE) {
        char *copy = core_xmemdup(text, len + 1);
        if (blank_jsonc(copy, len)) {
            doc = cJSON_ParseWithLengthOpts(copy, len, &end, false);
            if (doc != NULL)
                *had_comments = true;
            else
                end = text + (end != NULL && end >= copy ? end - copy : 0);
        }
        core_free(copy);
    }
    if (doc != NULL) {
        /* Only blanks may follow the value. */
        const char *rest = end;
        if (!*had_comments) {
            while (rest != NULL && rest < text + len && is_blank(*rest))
                rest++;
        }
        if (*had_comments || rest == NULL || rest >= text + len)
            return doc;
        cJSON_Delete(doc);
        end = rest;
    }
    if (end == NULL)
        end = cJSON_GetErrorPtr();
    fprintf(stderr, "agentgate: %s: not valid JSON (line %d)\n", path, line_of(text, len, end));
    return NULL;
}

/* ---- one entry ---- */

struct import {
    struct options opt;
    char client_path[PATH_MAX];
    char config_path[PATH_MAX];
    struct core_buf text;   /* the agentgate config as it will be written */
    size_t original_len;    /* bytes of the existing config at the start of text */
    struct core_buf report; /* lines printed at the end */
    char **names;           /* section names in text */
    size_t n_names;
    size_t n_added, n_skipped;
    size_t n_remote;    /* of n_added: remote sections */
    size_t n_converted; /* of n_remote: stdio wrappers turned into remote sections */
    mode_t mode;        /* the config file's mode once written */
};

static bool has_name(const struct import *im, const char *name)
{
    for (size_t i = 0; i < im->n_names; i++) {
        if (strcmp(im->names[i], name) == 0)
            return true;
    }
    return false;
}

static void add_name(struct import *im, const char *name)
{
    im->names = core_xrealloc(im->names, (im->n_names + 1) * sizeof(char *));
    im->names[im->n_names++] = core_xstrdup(name);
}

/* Whether the text holds the line "; [server.NAME]" (an earlier import's remote entry). */
static bool has_commented_section(const char *text, const char *name)
{
    size_t n = strlen(name) + 16;
    char *needle = core_xmalloc(n);
    snprintf(needle, n, "; [server.%s]", name);
    bool found = false;
    size_t nl = strlen(needle);
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += nl) {
        bool at_start = p == text || p[-1] == '\n';
        bool at_end = p[nl] == '\0' || p[nl] == '\n' || p[nl] == '\r';
        if (at_start && at_end) {
            found = true;
            break;
        }
    }
    core_free(needle);
    return found;
}

/* A name the loader accepts: other bytes become '-' (one per run), cut to 64. */
static char *sanitize_name(const char *s)
{
    size_t n = strlen(s);
    char *out = core_xmalloc(n + 1);
    size_t o = 0;
    bool last_bad = false;
    for (size_t i = 0; i < n && o < NAME_MAX_LEN; i++) {
        if (is_name_char(s[i])) {
            out[o++] = s[i];
            last_bad = false;
        } else if (!last_bad) {
            out[o++] = '-';
            last_bad = true;
        }
    }
    /* "my server!" reads better as my-server than as my-server-. */
    while (o > 1 && out[o - 1] == '-' && !is_name_char(s[n - 1]))
        o--;
    out[o] = '\0';
    if (o == 0) {
        core_free(out);
        return core_xstrdup("server");
    }
    return out;
}

/* The prefix to write when the name itself is not a valid prefix, else NULL. */
static char *prefix_for(const char *name)
{
    size_t n = strlen(name);
    bool ok =
        n <= PREFIX_MAX_LEN && strstr(name, "__") == NULL && name[0] != '_' && name[n - 1] != '_';
    if (ok)
        return NULL;
    char *out = core_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n && o < PREFIX_MAX_LEN; i++) {
        if (name[i] == '_' && (o == 0 || out[o - 1] == '_'))
            continue;
        out[o++] = name[i];
    }
    while (o > 0 && out[o - 1] == '_')
        o--;
    out[o] = '\0';
    return out;
}

/* Why s cannot be written as a plain INI value and read back unchanged, or NULL. */
static const char *ini_problem(const char *s)
{
    if (strpbrk(s, "\r\n") != NULL)
        return "contains a line break, which an INI value cannot hold";
    size_t n = strlen(s);
    if (n > 0 && (is_blank(s[0]) || is_blank(s[n - 1])))
        return "starts or ends with a blank, which the config loader trims";
    for (size_t i = 1; i < n; i++) {
        if (s[i] == ';' && is_blank(s[i - 1]))
            return "contains \" ;\", which the config loader reads as the start of a comment";
    }
    return NULL;
}

/* Why the string s cannot be written as an INI value and read back unchanged, or NULL. For
 * `what` in messages. `json` is set for values written inside a JSON array, where line breaks,
 * blanks and " ;" are taken care of by the encoding. */
static const char *value_problem(enum client c, const char *s, bool json)
{
    const char *ini = json ? NULL : ini_problem(s);
    if (ini != NULL)
        return ini;
    const char *d = strstr(s, "${");
    if (d != NULL) {
        bool env = strncmp(d, "${env:", 6) == 0;
        if (c == CLIENT_CLAUDE && env)
            return "contains \"${env:\", which agentgate would expand but Claude Desktop passes "
                   "as is";
        if (c != CLIENT_CLAUDE) {
            for (; d != NULL; d = strstr(d + 2, "${")) {
                if (strncmp(d, "${env:", 6) != 0)
                    return "uses a client variable (${...}) that agentgate cannot resolve; only "
                           "${env:NAME} is supported";
            }
        }
    }
    return NULL;
}

/* A string for `key`: sets *out or writes why not into why. Numbers and booleans are written
 * as their JSON text. */
static bool scalar_text(const cJSON *v, char **out)
{
    if (cJSON_IsString(v)) {
        *out = core_xstrdup(v->valuestring);
        return true;
    }
    if (cJSON_IsNumber(v) || cJSON_IsBool(v)) {
        char *json = cJSON_PrintUnformatted(v);
        *out = core_xstrdup(json);
        cJSON_free(json);
        return true;
    }
    return false;
}

/* args as one INI value: a JSON array of strings, with ';' after a blank escaped as \u003b so
 * the loader does not take it for a comment (the decoded strings are unchanged). */
static char *args_value(const cJSON *arr)
{
    char *json = cJSON_PrintUnformatted(arr);
    struct core_buf b;
    core_buf_init(&b, 0);
    for (const char *p = json; *p; p++) {
        if (*p == ';' && p > json && p[-1] == ' ')
            put(&b, "\\u003b");
        else
            (void)!core_buf_append(&b, p, 1); /* b is unlimited */
    }
    cJSON_free(json);
    if (b.data == NULL)
        put(&b, "");
    return core_buf_take(&b, NULL);
}

static bool is_remote_type(const char *t)
{
    return strcmp(t, "http") == 0 || strcmp(t, "sse") == 0 || strcmp(t, "streamable-http") == 0 ||
           strcmp(t, "streamableHttp") == 0 || strcmp(t, "streamable_http") == 0;
}

static bool is_self(const cJSON *entry)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(entry, "command");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(entry, "args");
    if (!cJSON_IsString(cmd) || !cJSON_IsArray(args))
        return false;
    const char *base = strrchr(cmd->valuestring, '/');
    base = base != NULL ? base + 1 : cmd->valuestring;
    const cJSON *first = cJSON_GetArrayItem(args, 0);
    return strcmp(base, "agentgate") == 0 && cJSON_IsString(first) &&
           strcmp(first->valuestring, "bridge") == 0;
}

static enum cmd_import_dialect dialect_of(enum client c)
{
    switch (c) {
    case CLIENT_CURSOR:
        return CMD_IMPORT_DIALECT_CURSOR;
    case CLIENT_VSCODE:
        return CMD_IMPORT_DIALECT_VSCODE;
    case CLIENT_CLAUDE:
        break;
    }
    return CMD_IMPORT_DIALECT_CLAUDE;
}

/* Writes `prefix = ...` when the name is not a valid tool prefix. Returns false with *why when
 * no usable prefix can be made. */
static bool write_prefix(struct core_buf *b, struct core_buf *notes, const char *name,
                         const char **why)
{
    char *prefix = prefix_for(name);
    if (prefix == NULL)
        return true;
    if (prefix[0] == '\0') {
        core_free(prefix);
        *why = "the name gives no usable tool prefix";
        return false;
    }
    putf(b, "prefix = %s\n", prefix);
    putf(notes, "; prefix %s (the name is not a valid tool prefix)", prefix);
    core_free(prefix);
    return true;
}

/* The head of an unmapped item for the report: the key of "key = value", the option of
 * "--flag value" (values may be credentials; the section's comment has them in full). */
static char *item_head(const char *item)
{
    size_t n = strcspn(item, " ");
    return core_xstrndup(item, n);
}

/* Builds the remote [server.NAME] section of r into b, or returns false with the reason in
 * whybuf. Notes for the report go into notes. */
static bool remote_section(const struct import *im, struct core_buf *b, const char *name,
                           const struct cmd_import_remote *r, struct core_buf *notes, char *whybuf,
                           size_t whylen)
{
    const char *p;
    const char *why = NULL;
    if ((p = ini_problem(r->url)) != NULL) {
        snprintf(whybuf, whylen, "url %s", p);
        return false;
    }
    putf(b, "[server.%s]\nurl = %s\ntransport = %s\n", name, r->url, r->transport);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct cmd_import_header *h = &r->headers[i];
        if ((p = ini_problem(h->value)) != NULL) {
            snprintf(whybuf, whylen, "headers.%.64s %s", h->name, p);
            return false;
        }
        putf(b, "headers.%s = %s\n", h->name, h->value);
        if (h->secret_in_clear)
            putf(notes,
                 "; headers.%s holds a credential in clear, as the client file did (the config "
                 "is mode %04o; a ${env:NAME} reference keeps it out of the file)",
                 h->name, (unsigned)im->mode);
    }
    putf(b, "auth = %s\n", r->auth);
    if (r->token_env != NULL)
        putf(b, "token_env = %s\n", r->token_env);
    const char *const client_keys[] = {"client_id", "client_secret"};
    const char *const client_vals[] = {r->client_id, r->client_secret};
    for (int i = 0; i < 2; i++) {
        if (client_vals[i] == NULL)
            continue;
        if ((p = ini_problem(client_vals[i])) != NULL) {
            snprintf(whybuf, whylen, "%s %s", client_keys[i], p);
            return false;
        }
        putf(b, "%s = %s\n", client_keys[i], client_vals[i]);
    }
    if (r->client_id != NULL)
        putf(notes, "; client_id%s from --static-oauth-client-info",
             r->client_secret != NULL ? " and client_secret" : "");
    if (strcmp(r->auth, "oauth") == 0)
        putf(notes, "; if the server asks for a login, run `agentgate login %s` once", name);
    if (r->client_secret != NULL && strstr(r->client_secret, "${env:") == NULL)
        putf(notes,
             "; client_secret holds a credential in clear, as the client file did (the config "
             "is mode %04o; a ${env:NAME} reference keeps it out of the file)",
             (unsigned)im->mode);
    if (r->ca_file != NULL) {
        if ((p = ini_problem(r->ca_file)) != NULL) {
            snprintf(whybuf, whylen, "ca_file (from NODE_EXTRA_CA_CERTS) %s", p);
            return false;
        }
        putf(b, "ca_file = %s\n", r->ca_file);
        putf(notes, "; ca_file from the wrapper's NODE_EXTRA_CA_CERTS");
    }
    if (!write_prefix(b, notes, name, &why)) {
        snprintf(whybuf, whylen, "%s", why);
        return false;
    }
    for (size_t i = 0; i < r->n_unmapped; i++) {
        char *text = comment_text(r->unmapped[i]);
        char *head = item_head(text);
        if (r->via == CMD_IMPORT_VIA_NATIVE) {
            putf(b, "; %s\n", text);
            putf(notes, "; key '%s' has no agentgate equivalent, kept as a comment", head);
        } else {
            putf(b, "; not carried over from %s: %s\n", cmd_import_remote_via_name(r->via), text);
            putf(notes, "; %s %s not carried over, kept as a comment",
                 cmd_import_remote_via_name(r->via), head);
        }
        core_free(head);
        core_free(text);
    }
    return true;
}

/* Builds the [server.NAME] section of a local entry into b, or returns false with *why (a
 * static string or one written into whybuf). Notes for the report go into notes. */
static bool local_section(enum client c, struct core_buf *b, const char *name, const cJSON *entry,
                          struct core_buf *notes, const char **why, char *whybuf, size_t whylen)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(entry, "command");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(entry, "args");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(entry, "env");
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(entry, "cwd");
    const char *p;

    if (!cJSON_IsString(cmd) || cmd->valuestring[0] == '\0') {
        *why = "\"command\" is not a non-empty string";
        return false;
    }
    if ((p = value_problem(c, cmd->valuestring, false)) != NULL) {
        snprintf(whybuf, whylen, "command %s", p);
        *why = whybuf;
        return false;
    }
    putf(b, "[server.%s]\ncommand = %s\n", name, cmd->valuestring);

    if (args != NULL && !cJSON_IsNull(args)) {
        if (!cJSON_IsArray(args)) {
            *why = "\"args\" is not an array";
            return false;
        }
        cJSON *strs = cJSON_CreateArray();
        const cJSON *a;
        int i = 0;
        cJSON_ArrayForEach (a, args) {
            char *s;
            i++;
            if (!scalar_text(a, &s)) {
                cJSON_Delete(strs);
                snprintf(whybuf, whylen, "args element %d is not a string", i);
                *why = whybuf;
                return false;
            }
            if ((p = value_problem(c, s, true)) != NULL) {
                cJSON_Delete(strs);
                core_free(s);
                snprintf(whybuf, whylen, "args element %d %s", i, p);
                *why = whybuf;
                return false;
            }
            cJSON_AddItemToArray(strs, cJSON_CreateString(s));
            core_free(s);
        }
        if (i > 0) {
            char *v = args_value(strs);
            putf(b, "args = %s\n", v);
            core_free(v);
        }
        cJSON_Delete(strs);
    }

    if (env != NULL && !cJSON_IsNull(env)) {
        if (!cJSON_IsObject(env)) {
            *why = "\"env\" is not an object";
            return false;
        }
        const cJSON *e;
        cJSON_ArrayForEach (e, env) {
            char *s;
            if (!is_env_name(e->string)) {
                snprintf(whybuf, whylen,
                         "env key '%.64s' is not a valid environment variable name for the "
                         "agentgate config (letters, digits, _)",
                         e->string);
                *why = whybuf;
                return false;
            }
            if (!scalar_text(e, &s)) {
                snprintf(whybuf, whylen, "env.%.64s is not a string", e->string);
                *why = whybuf;
                return false;
            }
            if ((p = value_problem(c, s, false)) != NULL) {
                core_free(s);
                snprintf(whybuf, whylen, "env.%.64s %s", e->string, p);
                *why = whybuf;
                return false;
            }
            putf(b, "env.%s = %s\n", e->string, s);
            core_free(s);
        }
    }

    if (cwd != NULL && !cJSON_IsNull(cwd)) {
        if (!cJSON_IsString(cwd)) {
            *why = "\"cwd\" is not a string";
            return false;
        }
        if (cwd->valuestring[0] != '\0') {
            if ((p = value_problem(c, cwd->valuestring, false)) != NULL) {
                snprintf(whybuf, whylen, "cwd %s", p);
                *why = whybuf;
                return false;
            }
            putf(b, "cwd = %s\n", cwd->valuestring);
        }
    }

    if (!write_prefix(b, notes, name, why))
        return false;

    /* Keys agentgate has no place for stay in the section as comments. */
    const cJSON *item;
    cJSON_ArrayForEach (item, entry) {
        const char *k = item->string;
        if (strcmp(k, "command") == 0 || strcmp(k, "args") == 0 || strcmp(k, "env") == 0 ||
            strcmp(k, "cwd") == 0)
            continue;
        if (strcmp(k, "type") == 0 && cJSON_IsString(item) &&
            strcmp(item->valuestring, "stdio") == 0)
            continue;
        char *key = comment_text(k);
        char *v = comment_value(item);
        putf(b, "; %s = %s\n", key, v);
        putf(notes, "; key '%s' has no agentgate equivalent, kept as a comment", key);
        core_free(key);
        core_free(v);
    }
    return true;
}

/* Checks that text + section loads; on failure writes the loader's message (without its
 * "NAME:LINE: " head) into why. */
static bool section_loads(struct import *im, const char *section, char *why, size_t whylen)
{
    size_t mark = im->text.len;
    put(&im->text, section);
    struct core_config *cfg = NULL;
    char err[512];
    int rc = core_config_parse(im->text.data, im->text.len, im->config_path, &cfg, err, sizeof err);
    core_config_free(cfg);
    if (rc == 0)
        return true;
    im->text.len = mark;
    im->text.data[mark] = '\0';
    const char *msg = err;
    size_t plen = strlen(im->config_path);
    if (strncmp(err, im->config_path, plen) == 0 && err[plen] == ':') {
        msg = err + plen + 1;
        while (*msg >= '0' && *msg <= '9')
            msg++;
        if (*msg == ':')
            msg++;
        while (*msg == ' ')
            msg++;
    }
    snprintf(why, whylen, "the config loader would refuse it: %s", msg);
    return false;
}

static void report_line(struct import *im, const char *orig, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_line(struct import *im, const char *orig, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *o = comment_text(orig);
    putf(&im->report, "  %s: %s\n", o, msg);
    core_free(o);
}

/* Handles one client entry. Returns its outcome. */
static enum outcome import_entry(struct import *im, const cJSON *entry)
{
    const char *orig = entry->string;
    const bool dry = im->opt.dry_run;
    char whybuf[768];
    const char *why = NULL;

    if (!cJSON_IsObject(entry)) {
        report_line(im, orig, "skipped: the entry is not a JSON object");
        im->n_skipped++;
        return OUTCOME_SKIPPED;
    }
    if (is_self(entry)) {
        report_line(im, orig, "skipped: this is agentgate's own bridge entry");
        im->n_skipped++;
        return OUTCOME_SELF;
    }
    const cJSON *disabled = cJSON_GetObjectItemCaseSensitive(entry, "disabled");
    if (cJSON_IsTrue(disabled)) {
        report_line(im, orig, "skipped: disabled in the client");
        im->n_skipped++;
        return OUTCOME_SKIPPED;
    }

    char *name = sanitize_name(orig);
    char rename_note[160] = "";
    if (strcmp(name, orig) != 0)
        snprintf(rename_note, sizeof rename_note,
                 " (renamed: server names may hold only A-Z a-z 0-9 _ . -, at most 64)");

    /* Local or remote. */
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(entry, "type");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(entry, "url");
    if (url == NULL)
        url = cJSON_GetObjectItemCaseSensitive(entry, "serverUrl"); /* Windsurf */
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(entry, "command");
    bool remote = false;
    if (type != NULL) {
        if (!cJSON_IsString(type)) {
            why = "\"type\" is not a string";
        } else if (is_remote_type(type->valuestring)) {
            remote = true;
        } else if (strcmp(type->valuestring, "stdio") != 0) {
            snprintf(whybuf, sizeof whybuf, "unknown type '%.64s'", type->valuestring);
            why = whybuf;
        }
    } else if (url != NULL && cmd == NULL) {
        remote = true;
    } else if (cmd == NULL) {
        why = "the entry has neither \"command\" nor \"url\"";
    }
    if (why == NULL && has_name(im, name)) {
        snprintf(whybuf, sizeof whybuf, "[server.%s] already exists in the agentgate config", name);
        why = whybuf;
    }
    if (why == NULL && has_commented_section(im->text.data, name)) {
        snprintf(whybuf, sizeof whybuf,
                 "[server.%s] is in the agentgate config as a comment (from an earlier import); "
                 "delete that block and import again to get a live section",
                 name);
        why = whybuf;
    }
    if (why != NULL) {
        report_line(im, orig, "skipped: %s", why);
        im->n_skipped++;
        core_free(name);
        return OUTCOME_SKIPPED;
    }

    struct core_buf section;
    struct core_buf notes;
    core_buf_init(&section, 0);
    core_buf_init(&notes, 0);
    if (im->text.len > 0)
        put(&section, "\n");
    enum outcome out = OUTCOME_SKIPPED;
    const enum cmd_import_dialect dialect = dialect_of(im->opt.client);
    struct cmd_import_remote *r = NULL;
    if (remote) {
        if (cmd_import_remote_native(dialect, entry, &r, whybuf, sizeof whybuf) != 0) {
            report_line(im, orig, "skipped: %s", whybuf);
            im->n_skipped++;
            goto done;
        }
    } else if (cmd_import_remote_wrapper(dialect, entry, &r, whybuf, sizeof whybuf) < 0) {
        /* A wrapper that cannot become a remote section still runs as it did. */
        char *w = comment_text(whybuf);
        putf(&notes, "; not converted to a native remote server (%s), imported as a stdio server",
             w);
        core_free(w);
    }
    if (r != NULL) {
        if (!remote_section(im, &section, name, r, &notes, whybuf, sizeof whybuf) ||
            !section_loads(im, section.data, whybuf, sizeof whybuf)) {
            report_line(im, orig, "skipped: %s", whybuf);
            im->n_skipped++;
            goto done;
        }
        const char *n = notes.data != NULL ? notes.data : "";
        if (r->via == CMD_IMPORT_VIA_NATIVE) {
            report_line(im, orig, "%s [server.%s] (remote, transport = %s, auth = %s)%s%s",
                        dry ? "would be added as" : "added as", name, r->transport, r->auth,
                        rename_note, n);
        } else {
            report_line(im, orig,
                        "%s%s wrapper → native remote server [server.%s] (transport = %s, "
                        "auth = %s); one Node process%s fewer%s%s",
                        dry ? "would convert: " : "", cmd_import_remote_via_name(r->via), name,
                        r->transport, r->auth,
                        r->via == CMD_IMPORT_VIA_MCP_REMOTE ? " and its token store" : "",
                        rename_note, n);
            im->n_converted++;
        }
        add_name(im, name);
        im->n_added++;
        im->n_remote++;
        out = OUTCOME_ADDED;
    } else if (!local_section(im->opt.client, &section, name, entry, &notes, &why, whybuf,
                              sizeof whybuf)) {
        report_line(im, orig, "skipped: %s", why);
        im->n_skipped++;
    } else if (!section_loads(im, section.data, whybuf, sizeof whybuf)) {
        report_line(im, orig, "skipped: %s", whybuf);
        im->n_skipped++;
    } else {
        report_line(im, orig, "%s [server.%s]%s%s", dry ? "would be added as" : "added as", name,
                    rename_note, notes.data != NULL ? notes.data : "");
        add_name(im, name);
        im->n_added++;
        out = OUTCOME_ADDED;
    }
done:
    cmd_import_remote_free(r);
    core_buf_dispose(&section);
    core_buf_dispose(&notes);
    core_free(name);
    return out;
}

/* ---- --rewrite ---- */

/* Pretty-prints v into b with two-space indentation (cJSON_Print indents with tabs). Arrays of
 * scalars stay on one line. */
static void print_json(struct core_buf *b, const cJSON *v, int depth)
{
    bool obj = cJSON_IsObject(v);
    if (!(obj || cJSON_IsArray(v)) || v->child == NULL) {
        char *json = cJSON_PrintUnformatted(v);
        put(b, json != NULL ? json : "null");
        cJSON_free(json);
        return;
    }
    bool flat = !obj;
    const cJSON *c;
    for (c = v->child; c != NULL && flat; c = c->next) {
        if (cJSON_IsObject(c) || cJSON_IsArray(c))
            flat = false;
    }
    if (flat) {
        char *json = cJSON_PrintUnformatted(v);
        /* cJSON writes [1,2]; match the spacing of the rest. */
        for (const char *p = json; *p; p++) {
            (void)!core_buf_append(b, p, 1); /* b is unlimited */
            if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    (void)!core_buf_append(b, p, 1);
                    if (*p == '\\' && p[1] != '\0')
                        (void)!core_buf_append(b, ++p, 1);
                }
                if (*p == '\0')
                    break;
                (void)!core_buf_append(b, p, 1);
            } else if (*p == ',') {
                put(b, " ");
            }
        }
        cJSON_free(json);
        return;
    }
    put(b, obj ? "{\n" : "[\n");
    for (c = v->child; c != NULL; c = c->next) {
        for (int i = 0; i <= depth; i++)
            put(b, "  ");
        if (obj) {
            cJSON *k = cJSON_CreateString(c->string);
            char *key = cJSON_PrintUnformatted(k);
            cJSON_Delete(k);
            putf(b, "%s: ", key);
            cJSON_free(key);
        }
        print_json(b, c, depth + 1);
        put(b, c->next != NULL ? ",\n" : "\n");
    }
    for (int i = 0; i < depth; i++)
        put(b, "  ");
    put(b, obj ? "}" : "]");
}

static cJSON *bridge_entry(enum client c, const char *self)
{
    cJSON *e = cJSON_CreateObject();
    if (c == CLIENT_VSCODE)
        cJSON_AddStringToObject(e, "type", "stdio");
    cJSON_AddStringToObject(e, "command", self);
    const char *args[] = {"bridge", "--client", client_names[c]};
    cJSON_AddItemToObject(e, "args", cJSON_CreateStringArray(args, 3));
    return e;
}

/* Writes the backup and the rewritten client file. Returns the exit status. */
static int rewrite_client(struct import *im, cJSON *doc, const char *key, const char *original,
                          size_t original_len, const enum outcome *outcomes, size_t n_entries)
{
    const char *path = im->client_path;
    char self[PATH_MAX];
    if (self_exe(self, sizeof self) != 0) {
        fprintf(stderr, "agentgate: cannot find our own binary for the bridge entry\n");
        return 1;
    }
    cJSON *servers = cJSON_GetObjectItemCaseSensitive(doc, key);
    cJSON *fresh = cJSON_CreateObject();
    cJSON_AddItemToObject(fresh, "agentgate", bridge_entry(im->opt.client, self));
    size_t removed = 0;
    bool had_self = false;
    if (servers != NULL) {
        size_t i = 0;
        cJSON *e = servers->child;
        while (e != NULL) {
            cJSON *next = e->next;
            enum outcome o = i < n_entries ? outcomes[i] : OUTCOME_SKIPPED;
            if (o == OUTCOME_SELF)
                had_self = true;
            if (o == OUTCOME_ADDED || o == OUTCOME_SELF || strcmp(e->string, "agentgate") == 0) {
                /* The name "agentgate" is taken by the bridge entry, so an unrelated entry of
                 * that name cannot stay; say so rather than drop it silently. */
                if (o != OUTCOME_ADDED && o != OUTCOME_SELF && !im->opt.dry_run)
                    printf("  agentgate: the client's entry named \"agentgate\" is replaced by "
                           "the bridge entry (it is in the backup)\n");
                removed++;
            } else {
                cJSON *kept = cJSON_DetachItemViaPointer(servers, e);
                cJSON_AddItemToObject(fresh, kept->string, kept);
            }
            e = next;
            i++;
        }
    }
    if (had_self && removed == 1) {
        cJSON_Delete(fresh);
        printf("%s already runs agentgate's bridge and nothing was imported; not rewritten\n",
               path);
        return 0;
    }
    if (servers != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(doc, key, fresh);
    else
        cJSON_AddItemToObject(doc, key, fresh);

    if (im->opt.dry_run) {
        printf("would rewrite %s with one \"agentgate\" entry running `%s bridge --client %s` "
               "(backup first)\n",
               path, self, client_names[im->opt.client]);
        return 0;
    }

    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "agentgate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    mode_t mode = st.st_mode & 07777;

    /* The backup: the exact bytes read, same mode, never over an existing file. */
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    char backup[PATH_MAX + 64];
    if (snprintf(backup, sizeof backup, "%s.agentgate-backup-%s", path, stamp) >=
        (int)sizeof backup) {
        fprintf(stderr, "agentgate: %s: path too long\n", path);
        return 1;
    }
    int fd = open(backup, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0 && fchmod(fd, mode) != 0)
        rc = -errno;
    if (rc == 0)
        rc = core_file_write_all(fd, original, original_len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc) {
        fprintf(stderr, "agentgate: cannot write the backup %s: %s; %s not rewritten\n", backup,
                strerror(-rc), path);
        if (fd >= 0)
            unlink(backup);
        return 1;
    }

    struct core_buf out;
    core_buf_init(&out, 0);
    print_json(&out, doc, 0);
    put(&out, "\n");
    char *tmp = NULL;
    rc = core_file_write_temp(path, out.data, out.len, mode, &tmp);
    if (rc == 0) {
        rc = core_file_commit(tmp, path);
        core_free(tmp);
    }
    core_buf_dispose(&out);
    if (rc) {
        fprintf(stderr, "agentgate: cannot rewrite %s: %s (backup: %s)\n", path, strerror(-rc),
                backup);
        return 1;
    }
    printf("rewrote %s: one \"agentgate\" entry running `%s bridge --client %s`", path, self,
           client_names[im->opt.client]);
    size_t kept = (size_t)cJSON_GetArraySize(fresh) - 1;
    if (kept > 0)
        printf(", plus the %zu entr%s not imported", kept, kept == 1 ? "y" : "ies");
    printf("\nbackup: %s\n", backup);
    return 0;
}

/* ---- the command ---- */

static int parse_args(int argc, char **argv, struct options *opt)
{
    memset(opt, 0, sizeof(*opt));
    bool have_client = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--rewrite") == 0) {
            opt->rewrite = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            opt->dry_run = true;
        } else if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "agentgate: import: missing value for --config\n");
                return -1;
            }
            opt->config_path = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "agentgate: import: unknown option '%s'\n", a);
            return -1;
        } else if (!have_client) {
            size_t c;
            for (c = 0; c < 3 && strcmp(a, client_names[c]) != 0; c++)
                ;
            if (c == 3) {
                fprintf(stderr,
                        "agentgate: import: unknown client '%s' (claude, cursor or vscode)\n", a);
                return -1;
            }
            opt->client = (enum client)c;
            have_client = true;
        } else if (opt->client_path == NULL) {
            opt->client_path = a;
        } else {
            fprintf(stderr, "agentgate: import: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if (!have_client) {
        fprintf(stderr, "agentgate: import: which client? (claude, cursor or vscode)\n");
        return -1;
    }
    return 0;
}

/* path made absolute (the real file when it exists, so a symlink is written through). */
static int resolve_path(const char *in, char *out, size_t cap)
{
    char real[PATH_MAX];
    if (realpath(in, real) != NULL) {
        if (snprintf(out, cap, "%s", real) >= (int)cap)
            return -1;
        return 0;
    }
    if (in[0] == '/') {
        if (snprintf(out, cap, "%s", in) >= (int)cap)
            return -1;
        return 0;
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return -1;
    if (snprintf(out, cap, "%s/%s", cwd, in) >= (int)cap)
        return -1;
    return 0;
}

static void import_dispose(struct import *im)
{
    core_buf_dispose(&im->text);
    core_buf_dispose(&im->report);
    for (size_t i = 0; i < im->n_names; i++)
        core_free(im->names[i]);
    core_free(im->names);
}

/* Writes im->text to the config atomically after loading the temporary file with the real
 * loader. Returns the exit status. */
static int write_config(struct import *im, bool existed, mode_t mode)
{
    const char *path = im->config_path;
    int rc = 0;
    if (!existed) {
        rc = make_parent_dirs(path);
        if (rc) {
            fprintf(stderr, "agentgate: cannot create the directory of %s: %s\n", path,
                    strerror(-rc));
            return 1;
        }
    }
    char *tmp = NULL;
    rc = core_file_write_temp(path, im->text.data, im->text.len, mode, &tmp);
    if (rc) {
        fprintf(stderr, "agentgate: cannot write %s: %s\n", path, strerror(-rc));
        return 1;
    }
    struct core_config *cfg = NULL;
    char err[512];
    rc = core_config_load(tmp, &cfg, err, sizeof err);
    core_config_free(cfg);
    if (rc) {
        size_t tl = strlen(tmp);
        const char *rest = strncmp(err, tmp, tl) == 0 ? err + tl : NULL;
        if (rest != NULL)
            fprintf(stderr, "agentgate: %s%s (nothing written)\n", path, rest);
        else
            fprintf(stderr, "agentgate: %s (nothing written)\n", err);
        unlink(tmp);
        core_free(tmp);
        return 1;
    }
    rc = core_file_commit(tmp, path);
    core_free(tmp);
    if (rc) {
        fprintf(stderr, "agentgate: cannot replace %s: %s\n", path, strerror(-rc));
        return 1;
    }
    return 0;
}

int cmd_import_main(int argc, char **argv)
{
    struct import im;
    memset(&im, 0, sizeof im);
    int prc = parse_args(argc, argv, &im.opt);
    if (prc > 0)
        return 0;
    if (prc < 0) {
        usage(stderr);
        return 2;
    }
    core_alloc_hook_cjson();
    const char *client = client_names[im.opt.client];
    int status = 2;
    char *client_text = NULL;
    size_t client_len = 0;
    cJSON *doc = NULL;
    enum outcome *outcomes = NULL;
    core_buf_init(&im.text, 0);
    core_buf_init(&im.report, 0);

    /* Paths. */
    char given[PATH_MAX];
    if (im.opt.client_path != NULL) {
        if (snprintf(given, sizeof given, "%s", im.opt.client_path) >= (int)sizeof given)
            goto too_long;
    } else if (default_client_path(im.opt.client, given, sizeof given) != 0) {
        fprintf(stderr, "agentgate: cannot find the %s config: HOME is not set\n", client);
        goto out;
    }
    if (resolve_path(given, im.client_path, sizeof im.client_path) != 0)
        goto too_long;
    if (im.opt.config_path != NULL) {
        if (snprintf(given, sizeof given, "%s", im.opt.config_path) >= (int)sizeof given)
            goto too_long;
    } else if (core_path_xdg(given, sizeof given, "XDG_CONFIG_HOME", ".config",
                        "agentgate/agentgate.ini") != 0) {
        fprintf(stderr, "agentgate: cannot find the agentgate config: HOME is not set\n");
        goto out;
    }
    if (resolve_path(given, im.config_path, sizeof im.config_path) != 0)
        goto too_long;

    /* The client file. */
    int rc = read_file(im.client_path, &client_text, &client_len);
    if (rc) {
        fprintf(stderr, "agentgate: %s: cannot read the %s config: %s\n", im.client_path, client,
                read_error(rc));
        goto out;
    }
    bool had_comments;
    doc = parse_client(im.opt.client, im.client_path, client_text, client_len, &had_comments);
    if (doc == NULL)
        goto out;
    if (!cJSON_IsObject(doc)) {
        fprintf(stderr, "agentgate: %s: expected a JSON object at the top level\n", im.client_path);
        goto out;
    }
    const char *key = im.opt.client == CLIENT_VSCODE ? "servers" : "mcpServers";
    cJSON *servers = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (servers != NULL && !cJSON_IsObject(servers)) {
        fprintf(stderr, "agentgate: %s: \"%s\" is not an object\n", im.client_path, key);
        goto out;
    }

    /* The agentgate config as it is now. */
    struct stat st;
    bool existed = stat(im.config_path, &st) == 0;
    mode_t mode = existed ? (st.st_mode & 07777) : 0600;
    im.mode = mode;
    if (existed) {
        char *old = NULL;
        size_t old_len = 0;
        struct core_config *cfg = NULL;
        char err[512];
        rc = core_config_load(im.config_path, &cfg, err, sizeof err);
        if (rc) {
            fprintf(stderr, "agentgate: %s (fix it first; nothing written)\n", err);
            goto out;
        }
        for (size_t i = 0; i < cfg->n_servers; i++)
            add_name(&im, cfg->servers[i].name);
        core_config_free(cfg);
        rc = read_file(im.config_path, &old, &old_len);
        if (rc) {
            fprintf(stderr, "agentgate: %s: cannot read: %s\n", im.config_path, read_error(rc));
            goto out;
        }
        (void)!core_buf_append(&im.text, old, old_len); /* unlimited */
        core_free(old);
        if (old_len > 0 && im.text.data[old_len - 1] != '\n')
            put(&im.text, "\n");
    }
    if (im.text.data == NULL)
        put(&im.text, "");
    im.original_len = im.text.len;

    /* Entries. */
    size_t n_entries = servers != NULL ? (size_t)cJSON_GetArraySize(servers) : 0;
    outcomes = core_xcalloc(n_entries + 1, sizeof(*outcomes));
    size_t i = 0;
    const cJSON *entry;
    if (servers != NULL) {
        cJSON_ArrayForEach (entry, servers) {
            outcomes[i++] = import_entry(&im, entry);
        }
    }

    printf("%s %zu server%s from %s (%s) into %s\n", im.opt.dry_run ? "would import" : "importing",
           n_entries, n_entries == 1 ? "" : "s", im.client_path, client, im.config_path);
    if (had_comments)
        printf("  (the file has comments or trailing commas; they are ignored)\n");
    if (im.report.data != NULL)
        fputs(im.report.data, stdout);

    bool changed = im.text.len != im.original_len;
    char remotes[160] = "";
    if (im.n_remote > 0)
        snprintf(remotes, sizeof remotes,
                 " (%zu remote, %zu of them converted from stdio wrappers)", im.n_remote,
                 im.n_converted);
    if (im.opt.dry_run) {
        printf("dry run: %zu to add%s, %zu to skip; nothing written to %s\n", im.n_added, remotes,
               im.n_skipped, im.config_path);
    } else if (changed) {
        fflush(stdout);
        status = write_config(&im, existed, mode);
        if (status != 0)
            goto out;
        printf("wrote %s: %zu added%s, %zu skipped\n", im.config_path, im.n_added, remotes,
               im.n_skipped);
    } else {
        printf("%s unchanged: nothing to add (%zu skipped)\n", im.config_path, im.n_skipped);
    }
    status = 0;
    if (im.opt.rewrite) {
        fflush(stdout);
        status = rewrite_client(&im, doc, key, client_text, client_len, outcomes, n_entries);
    }
    goto out;

too_long:
    fprintf(stderr, "agentgate: import: path too long\n");
    status = 2;
out:
    fflush(stdout);
    core_free(outcomes);
    cJSON_Delete(doc);
    core_free(client_text);
    import_dispose(&im);
    return status;
}
