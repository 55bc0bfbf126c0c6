/* `agentgate wrap`: one stdio server exposed as a remote MCP target (Streamable HTTP at /mcp,
 * legacy HTTP+SSE at /sse), in the foreground, behind a bearer token. */
#include "cmd/wrap.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/config.h"
#include "cmd/serve.h"

#define WRAP_DEFAULT_LISTEN "127.0.0.1:8808"

static void wrap_usage(FILE *f)
{
    fprintf(f,
            "usage: agentgate wrap [--listen HOST:PORT] [--token TOKEN | --no-auth]\n"
            "                      [--isolation shared|session] [--state-dir DIR]\n"
            "                      [--tls-cert FILE --tls-key FILE] -- CMD ARGS...\n"
            "\n"
            "Runs CMD (a stdio MCP server) under agentgate's supervision and serves it at\n"
            "http://HOST:PORT/mcp (Streamable HTTP) and /sse (legacy HTTP+SSE); https:// with TLS.\n"
            "  --listen ADDR    default " WRAP_DEFAULT_LISTEN "\n"
            "  --token TOKEN    the bearer token clients must send (default: a new random one,\n"
            "                   printed at start; also $AGENTGATE_WRAP_TOKEN)\n"
            "  --no-auth        no token (only on a loopback address)\n"
            "  --isolation M    shared (one child for every client, default) or session\n"
            "  --tls-cert FILE  serve HTTPS: the PEM certificate chain (server certificate first)\n"
            "  --tls-key FILE   the certificate's PEM private key (unencrypted); both or neither\n");
}

static bool loopback_host(const char *listen)
{
    return strncmp(listen, "127.", 4) == 0 || strncmp(listen, "[::1]:", 6) == 0 ||
           strncmp(listen, "localhost:", 10) == 0;
}

static char url_buf[300];

static void wrap_banner(const struct cmd_run *r, const char *host, int port, const char *sock)
{
    (void)sock;
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url_buf, sizeof url_buf, "%s://%s%s%s:%d", r->tls_cert ? "https" : "http",
             v6 ? "[" : "", host, v6 ? "]" : "", port);
    printf("agentgate %s wrapping: %s\n", AG_VERSION, r->cfg->servers[0].command);
    printf("  Streamable HTTP: %s/mcp\n  legacy SSE:      %s/sse\n", url_buf, url_buf);
    if (r->bearer) {
        printf("  token:           %s\n", r->bearer);
        printf("\nClient config:\n"
               "  \"%s\": { \"type\": \"http\", \"url\": \"%s/mcp\",\n"
               "    \"headers\": { \"Authorization\": \"Bearer %s\" } }\n\n",
               r->cfg->servers[0].name, url_buf, r->bearer);
    } else {
        printf("  auth:            none (--no-auth)\n\nClient config:\n"
               "  \"%s\": { \"type\": \"http\", \"url\": \"%s/mcp\" }\n\n",
               r->cfg->servers[0].name, url_buf);
    }
    fflush(stdout);
}

int cmd_wrap(int argc, char **argv)
{
    const char *listen = WRAP_DEFAULT_LISTEN, *token = getenv("AGENTGATE_WRAP_TOKEN");
    const char *isolation = "shared", *state = NULL, *tls_cert = NULL, *tls_key = NULL;
    bool no_auth = false;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            wrap_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--no-auth") == 0) {
            no_auth = true;
            continue;
        }
        const char **slot = strcmp(a, "--listen") == 0      ? &listen
                            : strcmp(a, "--token") == 0     ? &token
                            : strcmp(a, "--isolation") == 0 ? &isolation
                            : strcmp(a, "--state-dir") == 0 ? &state
                            : strcmp(a, "--tls-cert") == 0  ? &tls_cert
                            : strcmp(a, "--tls-key") == 0   ? &tls_key
                                                            : NULL;
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "agentgate: wrap: %s '%s'\n", slot ? "missing value for" : "unknown option", a);
            wrap_usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    if (i >= argc) {
        fprintf(stderr, "agentgate: wrap: no command given (agentgate wrap [options] -- CMD ARGS...)\n");
        return 2;
    }
    if (no_auth && token) {
        fprintf(stderr, "agentgate: wrap: --token and --no-auth exclude each other\n");
        return 2;
    }
    if (no_auth && !loopback_host(listen)) {
        fprintf(stderr, "agentgate: wrap: --no-auth is refused on %s: only a loopback address may "
                        "go without a token\n", listen);
        return 2;
    }
    if ((tls_cert == NULL) != (tls_key == NULL)) {
        fprintf(stderr, "agentgate: wrap: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (strcmp(isolation, "shared") != 0 && strcmp(isolation, "session") != 0) {
        fprintf(stderr, "agentgate: wrap: --isolation is shared or session, not '%s'\n", isolation);
        return 2;
    }
    core_alloc_hook_cjson();
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "agentgate: cannot find our own binary\n");
        return 1;
    }
    self[sl] = '\0';
    if (auth_seal_init() != 0)
        return 1;
    char gen[65];
    if (!no_auth && token == NULL) {
        auth_random_hex(gen, 32);
        token = gen;
    }

    /* A one-server config: the name is the command's base name, with no prefix so the tools
     * keep their own names. The command is run from the user's own shell, like `env CMD`, with
     * no config file that could give it env_pass: it inherits the whole environment, except
     * the variable our bearer token may come from. */
    const char *base = strrchr(argv[i], '/');
    base = base ? base + 1 : argv[i];
    char name[65];
    size_t nl = 0;
    for (const char *p = base; *p && nl < 64; p++)
        name[nl++] = (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-",
                             *p) && *p) ? *p : '-';
    name[nl] = '\0';
    if (nl == 0)
        snprintf(name, sizeof name, "server");
    char ini[512];
    snprintf(ini, sizeof ini,
             "[gateway]\nsocket = off\n[server.%s]\ncommand = placeholder\nprefix =\n"
             "isolation = %s\nenv_inherit = all\n",
             name, isolation);
    struct core_config *cfg;
    char err[256];
    if (core_config_parse(ini, strlen(ini), "wrap", &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: wrap: %s\n", err);
        return 2;
    }
    cfg->secret_env = core_xrealloc(cfg->secret_env, (cfg->n_secret_env + 2) * sizeof(char *));
    cfg->secret_env[cfg->n_secret_env++] = core_xstrdup("AGENTGATE_WRAP_TOKEN");
    cfg->secret_env[cfg->n_secret_env] = NULL;
    /* The command and its arguments are taken exactly, never through the INI syntax. */
    struct core_server_cfg *sc = &cfg->servers[0];
    core_free(sc->command);
    sc->command = core_xstrdup(argv[i]);
    for (size_t k = 0; k < sc->n_args; k++)
        core_free(sc->args[k]);
    core_free(sc->args);
    sc->n_args = (size_t)(argc - i - 1);
    sc->args = core_xcalloc(sc->n_args + 1, sizeof *sc->args);
    for (size_t k = 0; k < sc->n_args; k++)
        sc->args[k] = core_xstrdup(argv[i + 1 + (int)k]);

    struct cmd_run run = {
        .cfg = cfg,
        .cfg_path = NULL,
        .listen = listen,
        .socket = "off",
        .state_dir = state,
        .self = self,
        .bearer = no_auth ? NULL : token,
        .auth = no_auth ? "none" : NULL,
        .tls_cert = tls_cert,
        .tls_key = tls_key,
        .banner = wrap_banner,
    };
    return cmd_run_gateway(&run);
}
