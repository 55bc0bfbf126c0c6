#ifndef GW_CMD_SERVE_H
#define GW_CMD_SERVE_H

struct core_config;

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
