/* `agentgate serve`: arguments, paths, listeners and signals around the gateway. */
#include "cmd/serve.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/paths.h"
#include "federation/bridge_front.h"
#include "federation/control.h"
#include "federation/gateway.h"
#include "federation/mcp_http.h"
#include "transports/child.h"
#include "transports/http.h"

#define DAEMON_LOG_MAX (10u << 20) /* --log-file rotates past this */

struct serve {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    struct fed_gateway *gw;
    struct tp_http_server *http;
    int stopping;
};

static void serve_usage(FILE *f)
{
    fprintf(f, "usage: agentgate serve [--config FILE] [--listen HOST:PORT|off] [--socket PATH|off]\n"
               "                       [--state-dir DIR] [--auth token|none] [--log-file FILE]\n"
               "\n"
               "  --config FILE    default $XDG_CONFIG_HOME/agentgate/agentgate.ini\n"
               "                   (else ~/.config/agentgate/agentgate.ini); without one, a built-in\n"
               "                   config serves `agentgate demo-server`\n"
               "  --listen ADDR    TCP address, default 127.0.0.1:7821\n"
               "  --socket PATH    Unix socket, default $XDG_RUNTIME_DIR/agentgate/agentgate.sock\n"
               "  --state-dir DIR  logs and state, default $XDG_STATE_HOME/agentgate\n"
               "                   (else ~/.local/state/agentgate)\n"
               "  --auth MODE      token (TCP clients need a bearer token of a [client.NAME]) or\n"
               "                   none (loopback only); overrides the config's [gateway] auth\n"
               "  --log-file FILE  log (and everything on stderr) to FILE instead, rotated at\n"
               "                   10 MiB with 3 old files kept (FILE.1 .. FILE.3)\n"
               "\n"
               "SIGHUP (or `agentgate reload`) re-reads the config without dropping sessions.\n");
}

/* Splits "HOST:PORT" / "[V6]:PORT" into a numeric host and a port. */
static int split_listen(const char *s, char *host, size_t cap, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, cap, "%.*s", (int)(end - s - 1), s + 1);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        snprintf(host, cap, "%.*s", (int)(colon - s), s);
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, cap, "127.0.0.1");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static void on_http_request(void *ctx, struct tp_http_req *req)
{
    struct serve *sv = ctx;
    fed_http_request(sv->gw, req);
}

static void on_raw_stream(void *ctx, int fd, const char *initial, size_t n)
{
    struct serve *sv = ctx;
    if (sv->gw)
        fed_bridge_accept(sv->gw, fd, initial, n);
    else
        close(fd);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_http_closed(void *ctx)
{
    struct serve *sv = ctx;
    sv->http = NULL;
    uv_close((uv_handle_t *)&sv->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&sv->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&sv->sighup, on_handle_closed);
}

static void on_gateway_done(void *ctx)
{
    struct serve *sv = ctx;
    sv->gw = NULL;
    core_log(CORE_LOG_INFO, "serve", "every upstream has stopped");
    tp_http_server_close(sv->http, on_http_closed, sv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;
    if (sv->stopping) {
        core_log(CORE_LOG_INFO, "serve", "signal %d: already stopping", signum);
        return;
    }
    sv->stopping = 1;
    core_log(CORE_LOG_INFO, "serve", "signal %d: stopping", signum);
    tp_http_server_stop_accepting(sv->http);
    fed_gateway_shutdown(sv->gw, on_gateway_done, sv);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct serve *sv = h->data;
    if (sv->stopping || sv->gw == NULL)
        return;
    char msg[1200];
    core_log(CORE_LOG_INFO, "serve", "SIGHUP: reloading");
    (void)fed_gateway_reload(sv->gw, msg, sizeof msg); /* it logs the outcome */
}

static void print_banner(const char *cfg_path, const char *listen, const char *sock, int port,
                         const char *host, const char *self, const struct core_config *cfg,
                         bool auth_none)
{
    printf("agentgate %s serving MCP at /mcp\n", AG_VERSION);
    printf("  config: %s\n", cfg_path ? cfg_path : "(built-in: the demo server)");
    if (listen)
        printf("  http:   http://%s%s%s:%d/mcp\n", strchr(host, ':') ? "[" : "", host,
               strchr(host, ':') ? "]" : "", port);
    if (sock)
        printf("  socket: %s\n", sock);
    if (listen) {
        char url[300];
        snprintf(url, sizeof url, "http://%s%s%s:%d/mcp", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port);
        printf("\nFor clients that speak Streamable HTTP (Cursor, VS Code, Claude Code), add:\n"
               "  \"agentgate\": { \"type\": \"http\", \"url\": \"%s\"%s }\n",
               url, auth_none ? "" : ", \"headers\": { \"Authorization\": \"Bearer TOKEN\" }");
        if (!auth_none)
            printf("  (TOKEN from `agentgate token create NAME`; it is shown once)\n");
    }
    if (sock && self) {
        /* JSON strings: our paths have no quotes or backslashes to escape in practice, but be
         * exact anyway. */
        cJSON *args = cJSON_CreateArray();
        cJSON_AddItemToArray(args, cJSON_CreateString("bridge"));
        cJSON_AddItemToArray(args, cJSON_CreateString("--socket"));
        cJSON_AddItemToArray(args, cJSON_CreateString(sock));
        if (cfg->n_clients > 0) {
            /* With clients configured, the bridge must say which one it is. */
            cJSON_AddItemToArray(args, cJSON_CreateString("--client"));
            cJSON_AddItemToArray(args, cJSON_CreateString(cfg->clients[0].name));
        }
        cJSON *cmd = cJSON_CreateString(self);
        char *a = cJSON_PrintUnformatted(args), *c = cJSON_PrintUnformatted(cmd);
        printf("\nFor Claude Desktop (or any stdio client), paste into claude_desktop_config.json:\n"
               "{\n  \"mcpServers\": {\n    \"agentgate\": {\n"
               "      \"command\": %s,\n      \"args\": %s\n    }\n  }\n}\n",
               c, a);
        core_free(a);
        core_free(c);
        cJSON_Delete(args);
        cJSON_Delete(cmd);
    }
    printf("\n");
    fflush(stdout);
}

int cmd_serve(int argc, char **argv)
{
    const char *opt_config = NULL, *opt_listen = NULL, *opt_socket = NULL, *opt_state = NULL;
    const char *opt_auth = NULL, *opt_log = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--config") == 0      ? &opt_config
                            : strcmp(a, "--auth") == 0      ? &opt_auth
                            : strcmp(a, "--log-file") == 0  ? &opt_log
                            : strcmp(a, "--listen") == 0    ? &opt_listen
                            : strcmp(a, "--socket") == 0    ? &opt_socket
                            : strcmp(a, "--state-dir") == 0 ? &opt_state
                                                            : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            serve_usage(stdout);
            return 0;
        }
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "agentgate: serve: %s '%s'\n", slot ? "missing value for" : "unknown option",
                    a);
            serve_usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }

    if (opt_auth && strcmp(opt_auth, "none") != 0 && strcmp(opt_auth, "token") != 0) {
        fprintf(stderr, "agentgate: serve: --auth wants none or token, got '%s'\n", opt_auth);
        return 2;
    }
    if (opt_log) {
        char err[600];
        if (core_log_to_file(opt_log, DAEMON_LOG_MAX, 3, err, sizeof err) != 0) {
            fprintf(stderr, "agentgate: serve: --log-file: %s\n", err);
            return 1;
        }
    }
    core_alloc_hook_cjson();
    signal(SIGPIPE, SIG_IGN);
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "agentgate: cannot find our own binary: %s\n", strerror(errno));
        return 1;
    }
    self[sl] = '\0';

    /* The config: explicit, else the default path if it exists, else the built-in default. */
    char cfg_path[PATH_MAX];
    const char *path = core_path_config(opt_config, cfg_path, sizeof cfg_path);
    struct core_config *cfg = NULL;
    if (path) {
        char err[512];
        int rc = core_config_load(path, &cfg, err, sizeof err);
        if (rc) {
            fprintf(stderr, "agentgate: %s\n", err);
            return 2;
        }
    } else {
        cfg = core_config_default(self);
    }
    struct cmd_run run = {
        .cfg = cfg,
        .cfg_path = path,
        .listen = opt_listen,
        .socket = opt_socket,
        .state_dir = opt_state,
        .self = self,
        .auth = opt_auth,
    };
    return cmd_run_gateway(&run);
}

int cmd_run_gateway(struct cmd_run *r)
{
    struct core_config *cfg = r->cfg;
    const char *opt_listen = r->listen, *opt_socket = r->socket, *opt_state = r->state_dir;
    const char *self = r->self, *path = r->cfg_path;
    core_log_set_level(cfg->log_level);
    /* Whatever started us may have left descriptors open without close-on-exec; marked now,
     * before the loop, the listeners or any child exist, none of them can reach a server,
     * with or without the __exec trampoline (which closes everything above stderr too). */
    tp_child_cloexec_inherited();

    /* The state and socket directories must be ours alone (made 0700 when missing), before
     * anything is created in them: whoever can write there could plant a listener or symlinks
     * to redirect the keys, pins, logs and audit log. */
    char state[PATH_MAX], logs[PATH_MAX + 8], perr[PATH_MAX + 200];
    core_path_state(opt_state, state, sizeof state);
    snprintf(logs, sizeof logs, "%s/logs", state);
    if (core_path_ensure_private_dir(state, perr, sizeof perr) != 0 ||
        core_path_ensure_private_dir(logs, perr, sizeof perr) != 0) {
        fprintf(stderr, "agentgate: %s\n", perr);
        core_config_free(cfg);
        return 1;
    }

    const char *listen = opt_listen ? opt_listen : cfg->listen;
    if (listen && (listen[0] == '\0' || strcmp(listen, "off") == 0))
        listen = NULL;
    char sock[PATH_MAX];
    if (core_path_socket(opt_socket, cfg, sock, sizeof sock) != 0) {
        fprintf(stderr, "agentgate: the socket path is too long\n");
        core_config_free(cfg);
        return 2;
    }
    const char *sockp = sock[0] != '\0' ? sock : NULL;
    if (sockp) {
        char dir[PATH_MAX];
        int prc = core_path_dir_of(sockp, dir, sizeof dir);
        if (prc != 0)
            snprintf(perr, sizeof perr, "%s: path too long", sockp);
        else
            prc = core_path_ensure_private_dir(dir, perr, sizeof perr);
        if (prc != 0) {
            fprintf(stderr, "agentgate: %s\n", perr);
            core_config_free(cfg);
            return 1;
        }
    }
    char host[256] = "";
    int port = 0;
    if (listen && split_listen(listen, host, sizeof host, &port) != 0) {
        fprintf(stderr, "agentgate: --listen wants HOST:PORT, got '%s'\n", listen);
        core_config_free(cfg);
        return 2;
    }
    char kerr[600];
    if (auth_keys_load(state, cfg->session_ttl_ms, kerr, sizeof kerr) != 0) {
        fprintf(stderr, "agentgate: %s\n", kerr);
        core_config_free(cfg);
        return 2;
    }
    const char *auth = r->auth ? r->auth : cfg->auth;
    bool auth_none = strcmp(auth, "none") == 0 && r->bearer == NULL;
    if (auth_none && listen) {
        if (strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0 &&
            strncmp(host, "::ffff:127.", 11) != 0) {
            fprintf(stderr, "agentgate: auth = none is only allowed on a loopback address, not %s\n",
                    listen);
            core_config_free(cfg);
            return 2;
        }
    }

    struct serve sv;
    memset(&sv, 0, sizeof sv);
    uv_loop_init(&sv.loop);
    /* Slow clients: the header deadline and the TCP total come from the config; the untrusted
     * and Unix caps and the request deadline keep the transport's defaults (64, 256, 60 s). */
    struct tp_http_limits lim = {
        .max_body = cfg->max_body,
        .max_header = 16384,
        .idle_ms = cfg->idle_timeout_ms,
        .header_timeout_ms = cfg->header_timeout_ms,
        .max_conns = cfg->max_connections,
    };
    sv.http = tp_http_server_new(&sv.loop, &lim, on_http_request, &sv);
    int rc = 0;
    char tls_err[300];
    if ((r->tls_cert || r->tls_key) &&
        (rc = tp_http_server_set_tls(sv.http, r->tls_cert, r->tls_key, tls_err, sizeof tls_err)) != 0)
        fprintf(stderr, "agentgate: %s\n", tls_err);
    else if (listen && (rc = tp_http_server_listen_tcp(sv.http, host, port)) != 0)
        fprintf(stderr, "agentgate: cannot listen on %s: %s\n", listen, core_strerror(rc));
    else if (sockp && (rc = tp_http_server_listen_unix(sv.http, sockp)) != 0)
        fprintf(stderr, "agentgate: cannot listen on %s: %s%s\n", sockp, core_strerror(rc),
                rc == UV_EADDRINUSE ? " (is another agentgate running?)" : "");
    int status = 0;
    bool gw_owns_cfg = false;
    if (rc != 0) {
        status = 1;
        tp_http_server_close(sv.http, NULL, NULL);
    } else {
        struct fed_gateway_opts gopts = {
            .self_exe = self, .state_dir = state, .bearer = r->bearer, .auth = r->auth};
        sv.gw = fed_gateway_new(&sv.loop, cfg, &gopts); /* it owns cfg from here on */
        gw_owns_cfg = true;
        fed_gateway_start(sv.gw);
        tp_http_server_set_raw_cb(sv.http, on_raw_stream, &sv);
        uv_signal_init(&sv.loop, &sv.sigint);
        uv_signal_init(&sv.loop, &sv.sigterm);
        sv.sigint.data = &sv;
        sv.sigterm.data = &sv;
        uv_signal_start(&sv.sigint, on_signal, SIGINT);
        uv_signal_start(&sv.sigterm, on_signal, SIGTERM);
        uv_signal_init(&sv.loop, &sv.sighup);
        sv.sighup.data = &sv;
        uv_signal_start(&sv.sighup, on_sighup, SIGHUP);
        if (r->banner)
            r->banner(r, host, tp_http_server_port(sv.http), sockp);
        else
            print_banner(path, listen, sockp, tp_http_server_port(sv.http), host, self, cfg,
                         auth_none);
        if (auth_none && listen)
            core_log(CORE_LOG_WARN, "serve", "auth = none: any process of any user on this machine "
                     "can use %s without a token", listen);
        core_log(CORE_LOG_INFO, "serve", "ready: %zu server(s), %zu client(s), session tokens "
                 "sealed with %s, state in %s", cfg->n_servers, cfg->n_clients,
                 auth_backend_name(), state);
    }
    uv_run(&sv.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&sv.loop) != 0)
        core_log(CORE_LOG_WARN, "serve", "some handles were still open at exit");
    if (!gw_owns_cfg)
        core_config_free(cfg);
    auth_keys_clear();
    if (status == 0)
        core_log(CORE_LOG_INFO, "serve", "stopped");
    return status;
}
