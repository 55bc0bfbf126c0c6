/* agentgate: subcommand dispatch. No protocol logic lives here. */
#include <stdio.h>
#include <string.h>

#include "bridge/bridge.h"
#include "cmd/admin.h"
#include "cmd/demo.h"
#include "cmd/import.h"
#include "cmd/probe.h"
#include "cmd/login.h"
#include "cmd/serve.h"
#include "cmd/wrap.h"
#include "transports/child.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: agentgate <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve        run the gateway daemon (see: agentgate serve --help)\n"
               "  bridge       stdio MCP server for Claude Desktop / IDEs, connected to the daemon\n"
               "  import       copy a client's MCP servers into the agentgate config\n"
               "  wrap         expose one stdio server over HTTP with a token: wrap -- CMD ARGS\n"
               "  reload       make the running daemon re-read its config, keys and pins\n"
               "  status       what the running daemon serves: servers, states, last errors\n"
               "  approve      accept changed tool definitions: approve SERVER [TOOL]\n"
               "  rotate-key   replace the session key and reload the daemon\n"
               "  token        client bearer tokens: token create NAME\n"
               "  probe        connect to a remote MCP server, list its tools, call one: probe URL\n"
               "  login        log in to a remote server with OAuth: login SERVER\n"
               "  logout       forget a remote server's OAuth tokens: logout SERVER\n"
               "  demo-server  a small built-in stdio MCP server (echo, sum, sleep ...)\n"
               "  version      print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "wrap") == 0)
        return cmd_wrap(argc - 1, argv + 1);
    if (strcmp(cmd, "bridge") == 0)
        return br_bridge_main(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0)
        return cmd_import_main(argc - 1, argv + 1);
    if (strcmp(cmd, "reload") == 0)
        return cmd_reload(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "approve") == 0)
        return cmd_approve(argc - 1, argv + 1);
    if (strcmp(cmd, "rotate-key") == 0)
        return cmd_rotate_key(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(cmd, "probe") == 0)
        return cmd_probe(argc - 1, argv + 1);
    if (strcmp(cmd, "login") == 0)
        return cmd_login(argc - 1, argv + 1);
    if (strcmp(cmd, "logout") == 0)
        return cmd_logout(argc - 1, argv + 1);
    if (strcmp(cmd, "__oauth-token") == 0)
        return cmd_oauth_token(argc - 1, argv + 1);
    if (strcmp(cmd, "demo-server") == 0)
        return cmd_demo_main(argc - 1, argv + 1);
    if (strcmp(cmd, "__exec") == 0)
        return tp_child_exec_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("agentgate %s\n", AG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "agentgate: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
