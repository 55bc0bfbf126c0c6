/* `agentgate reload | approve | rotate-key | token create`: small commands around the daemon.
 *
 * They find the config, the state directory and the socket exactly as `serve` does
 * (core_path_config, core_path_state, core_path_socket in core/paths.c) and talk to the daemon's
 * control endpoints (POST /agentgate/...) over its Unix socket through cmd/ctl.c. Results go to stdout, errors and hints to stderr. */
#include "cmd/admin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/seal.h"
#include "cmd/ctl.h"
#include "cmd/serve.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/paths.h"
#include "policy/pins.h"

#define CONFIG_MAX (1u << 20)    /* core_config_parse refuses longer files anyway */
#define TOKEN_BYTES 32

/* ------------------------------------------------------------------ options */

struct admin_opts {
    const char *config; /* --config; NULL = serve's default */
    const char *socket; /* --socket; NULL = the config's, else the default */
    const char *state;  /* --state-dir; NULL = the default */
    const char *pos[3]; /* positional arguments */
    size_t n_pos;       /* entries used in pos[] */
};

/* Parses argv[1..]: --config, --socket, and --state-dir when with_state. Returns 0, 1 after
 * printing the help (exit 0), or 2 after printing a usage error. */
static int parse_opts(int argc, char **argv, const char *cmd, bool with_state, size_t max_pos,
                      void (*usage)(FILE *), struct admin_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        const char **slot = strcmp(a, "--config") == 0                    ? &o->config
                            : strcmp(a, "--socket") == 0                  ? &o->socket
                            : with_state && strcmp(a, "--state-dir") == 0 ? &o->state
                                                                          : NULL;
        if (slot != NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "agentgate: %s: missing value for '%s'\n", cmd, a);
                usage(stderr);
                return 2;
            }
            *slot = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "agentgate: %s: unknown option '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
        /* max_pos is what the command accepts; pos[] bounds it whatever a caller passes. */
        if (o->n_pos >= max_pos || o->n_pos >= sizeof o->pos / sizeof o->pos[0]) {
            fprintf(stderr, "agentgate: %s: unexpected argument '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
        o->pos[o->n_pos++] = a;
    }
    return 0;
}

/* The daemon's socket, as serve finds it: --socket, else the config's `socket` key, else the
 * default. Writes "" when the socket is off. Returns 0, or 1 after printing why not. */
GW_MUST_CHECK static int find_socket(const struct admin_opts *o, char *sock, size_t cap)
{
    struct core_config *cfg = NULL;
    if (o->socket == NULL) {
        char buf[PATH_MAX];
        const char *path = core_path_config(o->config, buf, sizeof buf);
        char err[512];
        if (path != NULL && core_config_load(path, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "agentgate: %s\n(pass --socket PATH to reach the daemon anyway)\n",
                    err);
            return 1;
        }
    }
    int rc = core_path_socket(o->socket, cfg, sock, cap);
    core_config_free(cfg);
    if (rc != 0) {
        fprintf(stderr, "agentgate: the socket path is too long\n");
        return 1;
    }
    return 0;
}

enum reload_result {
    RELOAD_DONE = 0,  /* msg = the daemon's message */
    RELOAD_NO_DAEMON, /* nothing listens on the socket, or the socket is off */
    RELOAD_REFUSED,   /* msg = the daemon's error (e.g. "FILE:LINE: ...") */
    RELOAD_FAILED,    /* msg = what went wrong talking to it */
    RELOAD_UNSAFE,    /* msg = why the socket is not the daemon's (another user's listener or
                       * directory); nothing was sent */
};

/* Asks the daemon on sock ("" = off) to reload. */
static enum reload_result daemon_reload(const char *sock, char *msg, size_t cap)
{
    msg[0] = '\0';
    if (sock[0] == '\0')
        return RELOAD_NO_DAEMON;
    struct cmd_ctl_reply r;
    int rc = cmd_ctl_post(sock, "/agentgate/reload", "{}", &r, msg, cap);
    if (cmd_ctl_is_no_daemon(rc))
        return RELOAD_NO_DAEMON;
    if (rc == CORE_EINVAL)
        return RELOAD_UNSAFE;
    if (rc != 0)
        return RELOAD_FAILED;
    enum reload_result res;
    const char *m = cmd_ctl_reply_str(&r, "message"), *e = cmd_ctl_reply_str(&r, "error");
    if (cmd_ctl_reply_ok(&r)) {
        snprintf(msg, cap, "%s", m ? m : "reloaded");
        res = RELOAD_DONE;
    } else if (e != NULL) {
        snprintf(msg, cap, "%s", e);
        res = RELOAD_REFUSED;
    } else {
        cmd_ctl_describe_odd(&r, msg, cap);
        res = RELOAD_FAILED;
    }
    cJSON_Delete(r.json);
    return res;
}

/* ------------------------------------------------------------------ reload */

static void reload_usage(FILE *f)
{
    fprintf(f, "usage: agentgate reload [--config FILE] [--socket PATH]\n"
               "\n"
               "Tells the running daemon to re-read its config, session keys and pins (as SIGHUP\n"
               "does) and prints its answer. Added servers start, removed ones stop, changed ones\n"
               "restart; sessions stay.\n"
               "  --config FILE    the config whose `socket` names the daemon's socket\n"
               "                   (default: serve's default config)\n"
               "  --socket PATH    the daemon's socket, default the config's, else\n"
               "                   $XDG_RUNTIME_DIR/agentgate/agentgate.sock\n");
}

int cmd_reload(int argc, char **argv)
{
    struct admin_opts o;
    int rc = parse_opts(argc, argv, "reload", false, 0, reload_usage, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    core_alloc_hook_cjson();
    char sock[PATH_MAX];
    if (find_socket(&o, sock, sizeof sock) != 0)
        return 1;
    if (sock[0] == '\0') {
        fprintf(stderr, "agentgate: the config sets socket = off; pass --socket PATH\n");
        return 1;
    }
    char msg[1024];
    switch (daemon_reload(sock, msg, sizeof msg)) {
    case RELOAD_DONE:
        printf("%s\n", msg);
        return 0;
    case RELOAD_NO_DAEMON:
        fprintf(stderr, "agentgate: no daemon is listening on %s\n", sock);
        return 1;
    case RELOAD_REFUSED:
        fprintf(stderr, "agentgate: reload refused: %s\n", msg);
        return 1;
    case RELOAD_FAILED:
    case RELOAD_UNSAFE:
        break;
    }
    fprintf(stderr, "agentgate: reload: %s\n", msg);
    return 1;
}

/* ------------------------------------------------------------------ status */

static void status_usage(FILE *f)
{
    fprintf(f, "usage: agentgate status [--config FILE] [--socket PATH] [--json]\n"
               "\n"
               "Prints what the running daemon serves: each server's state (ready, starting,\n"
               "backoff, needs-login ...), for a remote server its transport and url, and why it\n"
               "is not ready; then sessions and instances. --json prints the daemon's answer\n"
               "(GET /agentgate/status) as it is.\n"
               "  --config FILE    the config whose `socket` names the daemon's socket\n"
               "                   (default: serve's default config)\n"
               "  --socket PATH    the daemon's socket, default the config's, else\n"
               "                   $XDG_RUNTIME_DIR/agentgate/agentgate.sock\n"
               "  --json           the raw JSON answer\n");
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int cmd_status(int argc, char **argv)
{
    /* --json is ours; the rest is parsed like the other commands' options. */
    char *rest[64];
    int n = 0;
    bool json = false;
    for (int i = 0; i < argc && n < 63; i++) {
        if (i > 0 && strcmp(argv[i], "--json") == 0)
            json = true;
        else
            rest[n++] = argv[i];
    }
    rest[n] = NULL;
    struct admin_opts o;
    int rc = parse_opts(n, rest, "status", false, 0, status_usage, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    core_alloc_hook_cjson();
    char sock[PATH_MAX];
    if (find_socket(&o, sock, sizeof sock) != 0)
        return 1;
    if (sock[0] == '\0') {
        fprintf(stderr, "agentgate: the config sets socket = off; pass --socket PATH\n");
        return 1;
    }
    struct cmd_ctl_reply r;
    char msg[512];
    rc = cmd_ctl_post(sock, "/agentgate/status", "{}", &r, msg, sizeof msg);
    if (rc != 0) {
        if (cmd_ctl_is_no_daemon(rc))
            fprintf(stderr, "agentgate: no daemon is listening on %s\n", sock);
        else
            fprintf(stderr, "agentgate: status: %s\n", msg);
        return 1;
    }
    if (r.status != 200 || r.json == NULL) {
        cmd_ctl_describe_odd(&r, msg, sizeof msg);
        fprintf(stderr, "agentgate: status: %s\n", msg);
        cJSON_Delete(r.json);
        return 1;
    }
    if (json) {
        char *txt = cJSON_Print(r.json);
        printf("%s\n", txt ? txt : "{}");
        cJSON_free(txt);
        cJSON_Delete(r.json);
        return 0;
    }
    printf("agentgate %s: %.0f session(s), %.0f instance(s)\n",
           json_str(r.json, "version") ? json_str(r.json, "version") : "?",
           json_num(r.json, "sessions"), json_num(r.json, "instances"));
    const cJSON *srv;
    cJSON_ArrayForEach(srv, cJSON_GetObjectItemCaseSensitive(r.json, "servers"))
    {
        const char *name = json_str(srv, "name");
        const char *state = json_str(srv, "state");
        const char *url = json_str(srv, "url");
        const char *tr = json_str(srv, "transport");
        double priv = json_num(srv, "private_instances");
        printf("  %-20s %-13s", name ? name : "?", state ? state : (priv > 0 ? "private" : "-"));
        if (url)
            printf(" %-16s %s", tr ? tr : "", url);
        else
            printf(" %-16s", "stdio");
        if (priv > 0)
            printf("  (%.0f private instance(s))", priv);
        printf("\n");
        const char *err = json_str(srv, "last_error");
        if (err)
            printf("  %-20s last error: %s\n", "", err);
    }
    cJSON_Delete(r.json);
    return 0;
}

/* ------------------------------------------------------------------ approve */

static void approve_usage(FILE *f)
{
    fprintf(f, "usage: agentgate approve SERVER [TOOL] [--config FILE] [--socket PATH]\n"
               "                        [--state-dir DIR]\n"
               "\n"
               "Accepts the changed definition of TOOL (without TOOL: of every changed tool) of\n"
               "SERVER that tool pinning holds back. Tells the running daemon; without one, edits\n"
               "the pins file in the state directory directly.\n"
               "  --config FILE    the config whose `socket` names the daemon's socket\n"
               "  --socket PATH    the daemon's socket (default as for serve)\n"
               "  --state-dir DIR  where the pins file is when no daemon runs, default\n"
               "                   $XDG_STATE_HOME/agentgate (else ~/.local/state/agentgate)\n");
}

/* Approves in <state>/pins directly. Returns the exit status. */
static int approve_offline(const struct admin_opts *o, const char *server, const char *tool)
{
    char state[PATH_MAX], path[PATH_MAX + 8];
    core_path_state(o->state, state, sizeof state);
    snprintf(path, sizeof path, "%s/pins", state);
    char err[PATH_MAX + 200];
    struct pol_pins *p = NULL;
    int n = 0;
    /* The pins decide what is trusted: only from (and into) a directory that is ours alone. A
     * missing one holds no pins, which pol_pins_load reports as such. */
    int rc = core_path_check_private_dir(state, err, sizeof err);
    if (rc == -ENOENT)
        rc = 0;
    if (rc == 0)
        rc = pol_pins_load(path, &p, err, sizeof err);
    if (rc == 0)
        rc = pol_pins_approve(p, server, tool, &n, err, sizeof err);
    if (rc == 0)
        rc = pol_pins_save(p, path, err, sizeof err);
    pol_pins_free(p);
    if (rc != 0) {
        fprintf(stderr, "agentgate: approve: %s\n", err);
        return 1;
    }
    printf("approved %d tool definition(s) of %s\n", n, server);
    fprintf(stderr, "agentgate: no daemon is running: updated %s directly\n", path);
    return 0;
}

int cmd_approve(int argc, char **argv)
{
    struct admin_opts o;
    int rc = parse_opts(argc, argv, "approve", true, 2, approve_usage, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (o.n_pos < 1) {
        fprintf(stderr, "agentgate: approve: which server?\n");
        approve_usage(stderr);
        return 2;
    }
    core_alloc_hook_cjson();
    const char *server = o.pos[0], *tool = o.n_pos > 1 ? o.pos[1] : NULL;
    char sock[PATH_MAX];
    if (find_socket(&o, sock, sizeof sock) != 0)
        return 1;
    if (sock[0] == '\0')
        return approve_offline(&o, server, tool);

    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "server", server);
    if (tool != NULL)
        cJSON_AddStringToObject(req, "tool", tool);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    struct cmd_ctl_reply r;
    char msg[1024];
    rc = cmd_ctl_post(sock, "/agentgate/approve", body, &r, msg, sizeof msg);
    core_free(body);
    if (cmd_ctl_is_no_daemon(rc))
        return approve_offline(&o, server, tool);
    if (rc != 0) {
        fprintf(stderr, "agentgate: approve: %s\n", msg);
        return 1;
    }
    const cJSON *nj = r.json ? cJSON_GetObjectItemCaseSensitive(r.json, "approved") : NULL;
    const char *e = cmd_ctl_reply_str(&r, "error");
    int status = 1;
    if (cmd_ctl_reply_ok(&r) && cJSON_IsNumber(nj)) {
        printf("approved %d tool definition(s) of %s\n", nj->valueint, server);
        status = 0;
    } else if (e != NULL) {
        fprintf(stderr, "agentgate: approve: %s\n", e);
    } else {
        cmd_ctl_describe_odd(&r, msg, sizeof msg);
        fprintf(stderr, "agentgate: approve: %s\n", msg);
    }
    cJSON_Delete(r.json);
    return status;
}

/* ------------------------------------------------------------------ rotate-key */

static void rotate_usage(FILE *f)
{
    fprintf(f, "usage: agentgate rotate-key [--config FILE] [--socket PATH] [--state-dir DIR]\n"
               "\n"
               "Retires the session key (<state>/session.key) and makes a new one; then tells a\n"
               "running daemon to reload. Sessions sealed with the old key stay valid until they\n"
               "expire (session_ttl).\n"
               "  --config FILE    the config whose `socket` names the daemon's socket\n"
               "  --socket PATH    the daemon's socket (default as for serve)\n"
               "  --state-dir DIR  default $XDG_STATE_HOME/agentgate (else\n"
               "                   ~/.local/state/agentgate)\n");
}

int cmd_rotate_key(int argc, char **argv)
{
    struct admin_opts o;
    int rc = parse_opts(argc, argv, "rotate-key", true, 0, rotate_usage, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    core_alloc_hook_cjson();
    char state[PATH_MAX], err[PATH_MAX + 200];
    core_path_state(o.state, state, sizeof state);
    if (core_path_ensure_private_dir(state, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: rotate-key: %s\n", err);
        return 1;
    }
    if (auth_keys_rotate(state, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: rotate-key: %s\n", err);
        return 1;
    }
    printf("rotated the session key in %s\n", state);
    fflush(stdout);

    char sock[PATH_MAX];
    if (find_socket(&o, sock, sizeof sock) != 0) {
        fprintf(stderr, "agentgate: no daemon was told; run `agentgate reload` once it can be\n");
        return 0;
    }
    char msg[1024];
    switch (daemon_reload(sock, msg, sizeof msg)) {
    case RELOAD_DONE:
        fprintf(stderr, "agentgate: the daemon reloaded and seals with the new key (%s)\n", msg);
        break;
    case RELOAD_NO_DAEMON:
        fprintf(stderr,
                "agentgate: no daemon is listening%s%s; the new key applies when one "
                "starts\n",
                sock[0] ? " on " : "", sock);
        break;
    case RELOAD_REFUSED:
        fprintf(stderr,
                "agentgate: the daemon refused to reload (%s); it keeps the old key until a "
                "reload succeeds\n",
                msg);
        break;
    case RELOAD_FAILED:
        fprintf(stderr, "agentgate: the daemon was not told (%s); run `agentgate reload`\n", msg);
        break;
    case RELOAD_UNSAFE:
        fprintf(stderr,
                "agentgate: rotate-key: %s\nagentgate: the key was rotated; no daemon "
                "was told\n",
                msg);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ token create */

static void token_usage(FILE *f)
{
    fprintf(f, "usage: agentgate token create NAME [--config FILE] [--socket PATH]\n"
               "\n"
               "Makes a new bearer token for client NAME, stores its SHA-256 as token_sha256 in\n"
               "the config's [client.NAME] section (replacing an earlier token_sha256 or\n"
               "token_env; the section is added when missing, the file created when absent),\n"
               "reloads a running daemon and prints the token once.\n"
               "  --config FILE    the config to edit, default $XDG_CONFIG_HOME/agentgate/\n"
               "                   agentgate.ini (else ~/.config/agentgate/agentgate.ini)\n"
               "  --socket PATH    the daemon's socket (default as for serve)\n");
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Whether the trimmed line s..s+n is a section header naming "client." + client. */
static bool is_client_header(const char *s, size_t n, const char *client)
{
    const char *close = memchr(s, ']', n);
    if (close == NULL)
        return false;
    const char *b = s + 1, *e = close;
    while (b < e && is_blank(*b))
        b++;
    while (e > b && is_blank(e[-1]))
        e--;
    size_t cl = strlen(client);
    return (size_t)(e - b) == 7 + cl && memcmp(b, "client.", 7) == 0 &&
           memcmp(b + 7, client, cl) == 0;
}

/* Whether the trimmed key line s..s+n sets token_sha256 or token_env. The key ends at the
 * first '=' or ':' (as in core/config.c). */
static bool is_token_line(const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && s[k] != '=' && s[k] != ':')
        k++;
    if (k == n)
        return false;
    while (k > 0 && is_blank(s[k - 1]))
        k--;
    return (k == 12 && memcmp(s, "token_sha256", 12) == 0) ||
           (k == 9 && memcmp(s, "token_env", 9) == 0);
}

int cmd_set_client_token(const char *text, size_t len, const char *client, const char *hash_hex,
                         struct core_buf *out)
{
    if (client[0] == '\0')
        return CORE_EINVAL;
    for (const char *c = client; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return CORE_EINVAL;
    if (strlen(hash_hex) != 64 || strspn(hash_hex, "0123456789abcdef") != 64)
        return CORE_EINVAL;

    struct core_buf t;
    core_buf_init(&t, 0);
    int rc = 0;
    bool in_sec = false, found = false, replaced = false;
    size_t ins = 0;     /* offset in t just past the header line of the section */
    bool hdr_nl = true; /* whether that header line ended with a newline */
    const char *hdr_eol = "\n";
    const char *first_eol = NULL;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        size_t next = pos + n + (nl != NULL);
        bool crlf = nl != NULL && n > 0 && line[n - 1] == '\r';
        if (first_eol == NULL)
            first_eol = crlf ? "\r\n" : "\n";
        const char *s = line;
        size_t sn = n;
        if (pos == 0 && sn >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            sn -= 3;
        }
        size_t indent = 0;
        while (indent < sn && is_blank(s[indent]))
            indent++;
        s += indent;
        sn -= indent;
        while (sn > 0 && is_blank(s[sn - 1]))
            sn--;
        if (sn > 0 && s[0] == '[') {
            in_sec = !found && is_client_header(s, sn, client);
            if (in_sec) {
                found = true;
                rc = core_buf_append(&t, line, next - pos);
                ins = t.len;
                hdr_nl = nl != NULL;
                hdr_eol = crlf ? "\r\n" : "\n";
                pos = next;
                continue;
            }
        } else if (in_sec && sn > 0 && s[0] != ';' && s[0] != '#' && is_token_line(s, sn)) {
            if (!replaced) {
                replaced = true;
                rc = core_buf_append(&t, line, (size_t)(s - line));
                if (rc == 0)
                    rc = core_buf_appendf(&t, "token_sha256 = %s%s%s", hash_hex, crlf ? "\r" : "",
                                          nl ? "\n" : "");
            }
            pos = next;
            continue;
        }
        rc = core_buf_append(&t, line, next - pos);
        pos = next;
    }

    if (rc == 0 && found && !replaced) {
        /* Splice the key in right after the header. */
        struct core_buf u;
        core_buf_init(&u, 0);
        rc = core_buf_append(&u, t.data, ins);
        if (rc == 0)
            rc = core_buf_appendf(&u, "%stoken_sha256 = %s%s", hdr_nl ? "" : hdr_eol, hash_hex,
                                  hdr_eol);
        if (rc == 0)
            rc = core_buf_append(&u, t.data + ins, t.len - ins);
        core_buf_dispose(&t);
        t = u;
    } else if (rc == 0 && !found) {
        const char *eol = first_eol ? first_eol : "\n";
        if (len > 0 && text[len - 1] != '\n')
            rc = core_buf_append_str(&t, eol);
        if (rc == 0)
            rc = core_buf_appendf(&t, "%s[client.%s]%stoken_sha256 = %s%s", len > 0 ? eol : "",
                                  client, eol, hash_hex, eol);
    }
    if (rc == 0)
        rc = core_buf_append(out, t.data ? t.data : "", t.len);
    core_buf_dispose(&t);
    return rc;
}

/* Writes a fresh token "agt_" + base64url(32 random bytes) into out (size >= 64). */
static void make_token(char *out, size_t cap)
{
    unsigned char raw[TOKEN_BYTES];
    char b64[sodium_base64_ENCODED_LEN(TOKEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    auth_random(raw, sizeof raw);
    sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, cap, "agt_%s", b64);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(b64, sizeof b64);
}

static int token_create(const struct admin_opts *o, const char *client)
{
    /* The file to edit: --config, else serve's default path, existing or not. */
    char pathbuf[PATH_MAX], real[PATH_MAX];
    const char *path = o->config;
    if (path == NULL) {
        if (core_path_default_config(pathbuf, sizeof pathbuf) != 0) {
            fprintf(stderr, "agentgate: token: no default config path (HOME is not set); "
                            "pass --config FILE\n");
            return 1;
        }
        path = pathbuf;
    }
    struct core_buf text, next;
    core_buf_init(&text, 0); /* bounded by CONFIG_MAX as read */
    core_buf_init(&next, 0);
    struct core_config *cfg = NULL;
    int status = 1;
    mode_t mode = 0600;
    bool exists = true;
    char *file = NULL;
    size_t file_len = 0;
    int rc = core_file_read_all(path, 0, CONFIG_MAX, &file, &file_len, &mode, NULL, 0);
    if (rc == 0) {
        rc = core_buf_append(&text, file, file_len);
        core_free(file);
    } else if (rc == -ENOENT) {
        /* A new config starts with what the built-in one serves, so that adding a client does
         * not take the demo server away. */
        exists = false;
        char self[PATH_MAX];
        ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
        self[sl > 0 ? sl : 0] = '\0';
        rc = core_buf_appendf(&text,
                              "; agentgate config (created by `agentgate token create`): add your\n"
                              "; servers as [server.NAME] sections, or run `agentgate import`.\n"
                              "[server.demo]\ncommand = %s\nargs = [\"demo-server\"]\n",
                              sl > 0 ? self : "agentgate");
    }
    if (rc != 0) {
        fprintf(stderr, "agentgate: token: cannot read %s: %s\n", path,
                rc == CORE_ETOOBIG  ? "longer than 1 MiB"
                : rc == CORE_EINVAL ? "not a regular file"
                                : core_strerror(rc));
        goto out;
    }
    /* Through a symlink, edit the file it points at rather than replacing the link. */
    if (exists && realpath(path, real) != NULL)
        path = real;

    char token[80], hex[65];
    if (sodium_init() < 0) {
        fprintf(stderr, "agentgate: libsodium failed to initialise\n");
        goto out;
    }
    make_token(token, sizeof token);
    core_sha256_hex(token, strlen(token), hex);
    rc = cmd_set_client_token(text.data ? text.data : "", text.len, client, hex, &next);
    if (rc != 0) {
        fprintf(stderr, "agentgate: token: '%s' cannot be a client name\n", client);
        goto wipe;
    }
    char err[512];
    if (core_config_parse(next.data, next.len, path, &cfg, err, sizeof err) != 0) {
        struct core_config *old = NULL;
        bool was_bad = exists && core_config_parse(text.data ? text.data : "", text.len, path, &old,
                                                   NULL, 0) != 0;
        core_config_free(old);
        fprintf(stderr, "agentgate: %s\nagentgate: token: %s not changed%s\n", err, path,
                was_bad ? " (it was already invalid)" : "");
        goto wipe;
    }
    if (!exists) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL && slash != dir) {
            *slash = '\0';
            if (core_path_mkdirs(dir, 0700) != 0) {
                fprintf(stderr, "agentgate: token: cannot create %s: %s\n", dir, strerror(errno));
                goto wipe;
            }
        }
    }
    rc = core_file_write_atomic(path, next.data, next.len, mode);
    if (rc != 0) {
        fprintf(stderr, "agentgate: token: cannot write %s: %s\n", path, core_strerror(rc));
        goto wipe;
    }

    /* Tell a running daemon; its socket as serve would find it with this config. */
    char sock[PATH_MAX] = "", msg[1024];
    enum reload_result rr = RELOAD_FAILED;
    if (core_path_socket(o->socket, cfg, sock, sizeof sock) == 0)
        rr = daemon_reload(sock, msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "the socket path is too long");

    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr,
            "agentgate: stored the SHA-256 of client %s's new token in %s.\n"
            "agentgate: the token above is shown only this once; the client sends it as\n"
            "  Authorization: Bearer %s\n",
            client, path, token);
    if (!exists)
        fprintf(stderr,
                "agentgate: created %s with the built-in demo server and this client; "
                "`agentgate serve` uses it from its next start (TCP clients now need a token)\n",
                path);
    switch (rr) {
    case RELOAD_DONE:
        fprintf(stderr, "agentgate: the daemon reloaded: %s\n", msg);
        break;
    case RELOAD_NO_DAEMON:
        fprintf(stderr,
                "agentgate: no daemon is listening%s%s; the token works once one "
                "(re)loads the config\n",
                sock[0] ? " on " : "", sock);
        break;
    case RELOAD_REFUSED:
        fprintf(stderr, "agentgate: the daemon refused to reload: %s\n", msg);
        break;
    case RELOAD_FAILED:
        fprintf(stderr, "agentgate: the daemon was not reloaded (%s); run `agentgate reload`\n",
                msg);
        break;
    case RELOAD_UNSAFE:
        fprintf(stderr,
                "agentgate: token: %s\nagentgate: the token is stored; no daemon was "
                "told\n",
                msg);
        goto wipe;
    }
    status = 0;
wipe:
    sodium_memzero(token, sizeof token);
out:
    core_config_free(cfg);
    core_buf_dispose(&next);
    core_buf_dispose(&text);
    return status;
}

int cmd_token(int argc, char **argv)
{
    struct admin_opts o;
    int rc = parse_opts(argc, argv, "token", false, 2, token_usage, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (o.n_pos < 1 || strcmp(o.pos[0], "create") != 0) {
        fprintf(stderr, "agentgate: token: %s\n",
                o.n_pos < 1 ? "which subcommand? (create)" : "unknown subcommand; try create");
        token_usage(stderr);
        return 2;
    }
    if (o.n_pos < 2) {
        fprintf(stderr, "agentgate: token create: which client NAME?\n");
        token_usage(stderr);
        return 2;
    }
    core_alloc_hook_cjson();
    signal(SIGPIPE, SIG_IGN);
    return token_create(&o, o.pos[1]);
}
