/* `agentgate login`, `agentgate logout` and the hidden `__oauth-token` (see login.h). */
#include "cmd/login.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/oauth.h"
#include "auth/oauth_proto.h"
#include "auth/oauth_store.h"
#include "cmd/ctl.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/paths.h"
#include "transports/hclient.h"

struct login_opts {
    const char *server;
    const char *config;
    const char *socket;
    const char *state;
    bool no_browser;
    bool headless;
    bool check;
    unsigned timeout_s;
    unsigned concurrent;
};

static void login_usage(FILE *f)
{
    fprintf(
        f, "usage: agentgate login SERVER [--config FILE] [--state-dir DIR] [--socket PATH]\n"
           "                      [--no-browser] [--timeout SECONDS] [--headless]\n"
           "\n"
           "Logs in to the remote server [server.SERVER] of the config (auth = oauth): finds its\n"
           "authorization server, registers agentgate there when no client_id is configured,\n"
           "prints the URL to open and opens it in a browser when a display is present, waits\n"
           "for the redirect on 127.0.0.1, and stores the tokens encrypted in the state\n"
           "directory. A running daemon is told, so the server's tools appear.\n"
           "  --config FILE      the config (default: serve's default config)\n"
           "  --state-dir DIR    where the credential store is, default $XDG_STATE_HOME/agentgate\n"
           "                     (else ~/.local/state/agentgate)\n"
           "  --socket PATH      the daemon's socket to notify (default as for serve)\n"
           "  --no-browser       only print the URL\n"
           "  --timeout SECONDS  how long to wait for the login, default 300\n"
           "  --headless         fetch the URL without a browser and take the code from its\n"
           "                     redirect (authorization servers that approve at once: CI)\n");
}

static void logout_usage(FILE *f)
{
    fprintf(f, "usage: agentgate logout SERVER [--config FILE] [--state-dir DIR] [--socket PATH]\n"
               "\n"
               "Forgets the OAuth tokens stored for the remote server [server.SERVER] (its client\n"
               "registration stays) and tells a running daemon.\n"
               "  --config FILE      the config (default: serve's default config)\n"
               "  --state-dir DIR    where the credential store is (default as for login)\n"
               "  --socket PATH      the daemon's socket to notify (default as for serve)\n");
}

static void token_usage(FILE *f)
{
    fprintf(f, "usage: agentgate __oauth-token SERVER [--config FILE] [--state-dir DIR]\n"
               "                              [--concurrent N] [--check] [--headless]\n");
}

/* Returns 0, 1 after printing the help, or 2 after a usage error. */
static int parse(int argc, char **argv, const char *cmd, void (*usage)(FILE *),
                 struct login_opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_s = 300;
    o->concurrent = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-browser") == 0) {
            o->no_browser = true;
            continue;
        }
        if (strcmp(a, "--headless") == 0) {
            o->headless = true;
            continue;
        }
        if (strcmp(a, "--check") == 0) {
            o->check = true;
            continue;
        }
        const char **slot = strcmp(a, "--config") == 0      ? &o->config
                            : strcmp(a, "--socket") == 0    ? &o->socket
                            : strcmp(a, "--state-dir") == 0 ? &o->state
                                                            : NULL;
        bool num = strcmp(a, "--timeout") == 0 || strcmp(a, "--concurrent") == 0;
        if (slot != NULL || num) {
            if (i + 1 >= argc) {
                fprintf(stderr, "agentgate: %s: missing value for '%s'\n", cmd, a);
                usage(stderr);
                return 2;
            }
            const char *v = argv[++i];
            if (slot != NULL) {
                *slot = v;
                continue;
            }
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end != '\0' || n == 0 || n > 100000 || v[0] == '-') {
                fprintf(stderr, "agentgate: %s: '%s' needs a positive number\n", cmd, a);
                return 2;
            }
            if (strcmp(a, "--timeout") == 0)
                o->timeout_s = (unsigned)n;
            else
                o->concurrent = n > 64 ? 64 : (unsigned)n;
            continue;
        }
        if (a[0] == '-' || o->server != NULL) {
            fprintf(stderr, "agentgate: %s: unexpected argument '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
        o->server = a;
    }
    if (o->server == NULL) {
        fprintf(stderr, "agentgate: %s: which server?\n", cmd);
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Loads the config and finds the server, which must be a remote one with auth = oauth. */
static int find_server(const struct login_opts *o, struct core_config **cfg_out,
                       const struct core_server_cfg **srv_out)
{
    char buf[PATH_MAX];
    const char *path = core_path_config(o->config, buf, sizeof buf);
    if (path == NULL) {
        fprintf(stderr, "agentgate: no config file (pass --config FILE)\n");
        return 1;
    }
    char err[1024];
    struct core_config *cfg = NULL;
    if (core_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < cfg->n_servers; i++) {
        const struct core_server_cfg *s = &cfg->servers[i];
        if (strcmp(s->name, o->server) != 0)
            continue;
        if (s->url == NULL || s->auth != CORE_REMOTE_AUTH_OAUTH) {
            fprintf(stderr,
                    "agentgate: [server.%s] in %s is not a remote server with auth = "
                    "oauth\n",
                    s->name, path);
            core_config_free(cfg);
            return 1;
        }
        *cfg_out = cfg;
        *srv_out = s;
        return 0;
    }
    fprintf(stderr, "agentgate: %s has no [server.%s]\n", path, o->server);
    core_config_free(cfg);
    return 1;
}

/* Tells a running daemon that SERVER's credentials changed; quiet when none runs. */
static void notify_daemon(const struct login_opts *o, const struct core_config *cfg)
{
    char sock[PATH_MAX];
    if (core_path_socket(o->socket, cfg, sock, sizeof sock) != 0 || sock[0] == '\0')
        return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "server", o->server);
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    struct cmd_ctl_reply r;
    char msg[512];
    int rc = cmd_ctl_post(sock, "/agentgate/credentials", body, &r, msg, sizeof msg);
    cJSON_free(body);
    if (rc == 0) {
        const char *e = cmd_ctl_reply_str(&r, "error");
        if (cmd_ctl_reply_ok(&r))
            fprintf(stderr, "agentgate: told the daemon\n");
        else if (e != NULL)
            fprintf(stderr, "agentgate: the daemon answered: %s\n", e);
        else
            fprintf(stderr, "agentgate: the daemon answered HTTP %d\n", r.status);
        cJSON_Delete(r.json);
    } else if (!cmd_ctl_is_no_daemon(rc)) {
        fprintf(stderr, "agentgate: could not tell the daemon: %s\n", msg);
    }
}

/* ---- the loop shared by login and __oauth-token ---- */

struct run {
    uv_loop_t loop;
    struct tp_hclient *hc;
    struct auth_oauth *oauth;
    unsigned pending;
    int status; /* exit status */
    bool open_browser;
    const char *name;
    /* __oauth-token --check */
    bool check;
    const char *url;
    const char *ca_file;
};

static void on_spawn_exit(uv_process_t *p, int64_t status, int sig)
{
    (void)status, (void)sig;
    uv_close((uv_handle_t *)p, (uv_close_cb)core_free);
}

static void open_browser(struct run *run, const char *url)
{
#ifdef __APPLE__
    const char *opener = "open";
#else
    const char *opener = "xdg-open";
#endif
    /* The URL is one argv element, never a shell string; it starts with http(s):// (the
     * authorization endpoint passed auth_url_is_secure). */
    char *args[] = {(char *)opener, (char *)url, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
    uv_process_options_t po = {.file = opener,
                               .args = args,
                               .stdio = stdio,
                               .stdio_count = 3,
                               .exit_cb = on_spawn_exit,
                               .flags = UV_PROCESS_DETACHED};
    uv_process_t *p = core_xcalloc(1, sizeof *p);
    if (uv_spawn(&run->loop, p, &po) != 0) {
        core_free(p);
        fprintf(stderr, "agentgate: could not run %s; open the URL yourself\n", opener);
    }
}

static void on_url(void *ctx, const char *url)
{
    struct run *run = ctx;
    printf("Open this URL in a browser to log in to %s:\n\n  %s\n\n", run->name, url);
    fflush(stdout);
    if (run->open_browser)
        open_browser(run, url);
}

static void on_login_done(void *ctx, int err, const char *authz, const char *why)
{
    struct run *run = ctx;
    (void)authz;
    run->pending--;
    if (err == 0) {
        printf("Logged in to %s.\n", run->name);
        run->status = 0;
    } else {
        fprintf(stderr, "agentgate: login to %s failed: %s\n", run->name, why);
        run->status = 1;
    }
    fflush(stdout);
}

static void on_closed(void *ctx)
{
    (void)ctx;
}

static void on_hc_closed(void *ctx)
{
    (void)ctx;
}

static int run_open(struct run *run, const struct login_opts *o)
{
    memset(run, 0, sizeof *run);
    run->status = 1;
    run->name = o->server;
    if (uv_loop_init(&run->loop) != 0)
        return 1;
    if (tp_hclient_new(&run->loop, &run->hc) != 0) {
        uv_loop_close(&run->loop);
        fprintf(stderr, "agentgate: cannot start the HTTP client\n");
        return 1;
    }
    char state[PATH_MAX];
    core_path_state(o->state, state, sizeof state);
    char err[PATH_MAX + 256];
    if (auth_oauth_new(&run->loop, run->hc, state, &run->oauth, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: %s\n", err);
        tp_hclient_close(run->hc, on_hc_closed, NULL);
        uv_run(&run->loop, UV_RUN_DEFAULT);
        uv_loop_close(&run->loop);
        return 1;
    }
    return 0;
}

static void run_until_done(struct run *run)
{
    while (run->pending > 0 && uv_run(&run->loop, UV_RUN_ONCE) != 0) {
    }
    auth_oauth_close(run->oauth, on_closed, NULL);
    tp_hclient_close(run->hc, on_hc_closed, NULL);
    uv_run(&run->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&run->loop) != 0)
        fprintf(stderr, "agentgate: warning: handles left open\n");
}

/* Parses the arguments and loads the server's section: 0, or -1 with *code what the command
 * returns (0 after --help). */
static int begin(int argc, char **argv, const char *cmd, void (*usage)(FILE *),
                 struct login_opts *o, struct core_config **cfg,
                 const struct core_server_cfg **s, int *code)
{
    int rc = parse(argc, argv, cmd, usage, o);
    if (rc != 0) {
        *code = rc == 1 ? 0 : rc;
        return -1;
    }
    core_alloc_hook_cjson();
    if (find_server(o, cfg, s) != 0) {
        *code = 1;
        return -1;
    }
    return 0;
}

int cmd_login(int argc, char **argv)
{
    struct login_opts o;
    struct core_config *cfg;
    const struct core_server_cfg *s;
    int code;
    if (begin(argc, argv, "login", login_usage, &o, &cfg, &s, &code) != 0)
        return code;
    struct run run;
    if (run_open(&run, &o) != 0) {
        core_config_free(cfg);
        return 1;
    }
    run.open_browser = !o.no_browser && !o.headless &&
                       (getenv("DISPLAY") != NULL || getenv("WAYLAND_DISPLAY") != NULL
#ifdef __APPLE__
                        || true
#endif
                       );
    struct auth_oauth_server srv;
    auth_oauth_server_from_config(s, &srv);
    struct auth_oauth_login_opts lo = {.headless = o.headless,
                                       .timeout_ms = (uint64_t)o.timeout_s * 1000,
                                       .on_url = on_url,
                                       .url_ctx = &run};
    if (auth_oauth_login(run.oauth, &srv, &lo, on_login_done, &run, NULL) != 0) {
        fprintf(stderr, "agentgate: [server.%s] has no usable url\n", s->name);
    } else {
        run.pending = 1;
        if (s->oauth_client_credentials)
            fprintf(stderr, "agentgate: %s uses client_credentials; no user login needed\n",
                    s->name);
    }
    run_until_done(&run);
    if (run.status == 0)
        notify_daemon(&o, cfg);
    core_config_free(cfg);
    return run.status;
}

int cmd_logout(int argc, char **argv)
{
    struct login_opts o;
    struct core_config *cfg;
    const struct core_server_cfg *s;
    int code;
    if (begin(argc, argv, "logout", logout_usage, &o, &cfg, &s, &code) != 0)
        return code;
    char state[PATH_MAX];
    core_path_state(o.state, state, sizeof state);
    char err[PATH_MAX + 256];
    struct auth_store *st;
    if (auth_store_open(state, &st, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: %s\n", err);
        core_config_free(cfg);
        return 1;
    }
    char *canon = auth_url_canonical(s->url);
    int n = canon != NULL ? auth_store_tokens_forget(st, canon, err, sizeof err) : CORE_EINVAL;
    core_free(canon);
    auth_store_free(st);
    int status = 0;
    if (n < 0) {
        fprintf(stderr, "agentgate: logout: %s\n", n == CORE_EINVAL ? "bad url" : err);
        status = 1;
    } else if (n == 0) {
        printf("No tokens were stored for %s.\n", s->name);
    } else {
        printf("Logged out of %s (forgot its tokens).\n", s->name);
        notify_daemon(&o, cfg);
    }
    core_config_free(cfg);
    return status;
}

/* ---- __oauth-token ---- */

struct probe {
    struct run *run;
    unsigned index;
};

static void on_check_headers(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h)
{
    struct probe *p = ctx;
    (void)h;
    printf("%u check %d\n", p->index, status);
    fflush(stdout);
    if (status != 200)
        p->run->status = 1;
    tp_hreq_abort(r);
    p->run->pending--;
    core_free(p);
}

static int on_check_data(void *ctx, struct tp_hreq *r, const char *d, size_t n)
{
    (void)ctx, (void)r, (void)d, (void)n;
    return 0;
}

static void on_check_done(void *ctx, struct tp_hreq *r, int err, const char *why)
{
    struct probe *p = ctx;
    (void)r;
    printf("%u check failed %s\n", p->index, why != NULL ? why : core_strerror(err));
    p->run->status = 1;
    p->run->pending--;
    core_free(p);
}

static void on_token(void *ctx, int err, const char *authz, const char *why)
{
    struct probe *p = ctx;
    struct run *run = p->run;
    if (err != 0) {
        printf("%u error %s %s\n", p->index,
               err == AUTH_OAUTH_ENEEDLOGIN ? "needs-login" : "failed", why);
        fflush(stdout);
        run->status = 1;
        run->pending--;
        core_free(p);
        return;
    }
    char hex[CORE_SHA256_HEX_SIZE];
    core_sha256_hex(authz + 7, strlen(authz + 7), hex);
    printf("%u ok sha256:%.16s\n", p->index, hex);
    fflush(stdout);
    if (!run->check) {
        run->pending--;
        core_free(p);
        return;
    }
    size_t hl = strlen(authz) + 32;
    char *hdr = core_xmalloc(hl);
    snprintf(hdr, hl, "Authorization: %s", authz);
    const char *headers[] = {"Content-Type: application/json",
                             "Accept: application/json, text/event-stream",
                             "MCP-Protocol-Version: 2025-11-25", hdr, NULL};
    static const char body[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"agentgate-check\","
        "\"version\":\"1\"}}}";
    struct tp_hreq_opts ho = {.method = "POST",
                              .url = run->url,
                              .headers = headers,
                              .body = body,
                              .body_len = sizeof body - 1,
                              .ca_file = run->ca_file,
                              .deadline_ms = 15000};
    static const struct tp_hreq_cbs cbs = {
        .on_headers = on_check_headers, .on_data = on_check_data, .on_done = on_check_done};
    struct tp_hreq *hr;
    int rc = tp_hreq_start(run->hc, &ho, &cbs, p, &hr);
    sodium_memzero(hdr, strlen(hdr));
    core_free(hdr);
    if (rc != 0) {
        printf("%u check failed %s\n", p->index, core_strerror(rc));
        run->status = 1;
        run->pending--;
        core_free(p);
    }
}

int cmd_oauth_token(int argc, char **argv)
{
    struct login_opts o;
    struct core_config *cfg;
    const struct core_server_cfg *s;
    int code;
    if (begin(argc, argv, "__oauth-token", token_usage, &o, &cfg, &s, &code) != 0)
        return code;
    struct run run;
    if (run_open(&run, &o) != 0) {
        core_config_free(cfg);
        return 1;
    }
    run.status = 0;
    run.check = o.check;
    run.url = s->url;
    run.ca_file = s->ca_file;
    auth_oauth_set_headless(run.oauth, o.headless);
    struct auth_oauth_server srv;
    auth_oauth_server_from_config(s, &srv);
    /* N requests in the same loop iteration: they share one refresh. */
    for (unsigned i = 0; i < o.concurrent; i++) {
        struct probe *p = core_xcalloc(1, sizeof *p);
        p->run = &run;
        p->index = i;
        if (auth_oauth_get_token(run.oauth, &srv, NULL, on_token, p, NULL) != 0) {
            core_free(p);
            run.status = 1;
            break;
        }
        run.pending++;
    }
    run_until_done(&run);
    core_config_free(cfg);
    return run.status;
}
