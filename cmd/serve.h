#ifndef GW_CMD_SERVE_H
#define GW_CMD_SERVE_H

#include <stddef.h>

#include "core/err.h"

struct core_config;

/* Where serve and the admin commands (cmd/admin.c) find things, so that they agree. */

/* The config file to load: opt_config when given, else the default path
 * ($XDG_CONFIG_HOME/agentgate/agentgate.ini) when that file exists, written into buf (cap
 * bytes). Returns opt_config, buf, or NULL: no file, the built-in config applies. */
const char *cmd_config_path(const char *opt_config, char *buf, size_t cap);
/* The state directory: opt_state when given, else the default. Does not create it. */
void cmd_state_dir(const char *opt_state, char *out, size_t cap);
/* The daemon's Unix socket: opt_socket when given, else the config's `socket` key (cfg may be
 * NULL: no config), else the default. Writes "" when that is "off". Returns 0, or -1 when the
 * path does not fit in cap bytes. */
GW_MUST_CHECK int cmd_socket_path(const char *opt_socket, const struct core_config *cfg, char *out,
                                  size_t cap);

/* `agentgate serve`: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv);

/* What cmd_run_gateway runs: a config and where to listen. */
struct cmd_run {
    struct core_config *cfg; /* taken: freed before cmd_run_gateway returns */
    const char *cfg_path;    /* for the banner; NULL = built in */
    const char *listen;      /* overrides of the config; NULL = the config's */
    const char *socket;
    const char *state_dir;
    const char *self;        /* our binary */
    const char *bearer;      /* HTTP clients must send Authorization: Bearer this; NULL = none */
    const char *auth;        /* "none" | "token": overrides the config's auth; NULL = the config's */
    const char *tls_cert;    /* PEM chain and key: the TCP listener speaks HTTPS; NULL = plain */
    const char *tls_key;
    /* Prints the start banner; NULL = serve's. */
    void (*banner)(const struct cmd_run *r, const char *host, int port, const char *socket);
};

/* Runs the gateway in the foreground until SIGINT/SIGTERM. Returns the exit status. */
int cmd_run_gateway(struct cmd_run *r);

#endif
