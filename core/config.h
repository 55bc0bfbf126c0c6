/* The INI configuration (parsed with inih) and its defaults. */
#ifndef GW_CORE_CONFIG_H
#define GW_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum core_isolation {
    CORE_ISOLATION_DEFAULT = 0, /* not set: `client` when the config has [client.*] sections,
                                 * else `shared` (resolved when the whole file is read) */
    CORE_ISOLATION_SHARED,      /* one child serves every client session */
    CORE_ISOLATION_CLIENT,      /* one child per client identity, shared by its sessions */
    CORE_ISOLATION_SESSION,     /* one child per client session */
};

enum core_restart {
    CORE_RESTART_ON_FAILURE = 0, /* restart after a non-zero exit, a signal or an invalid frame */
    CORE_RESTART_ALWAYS,
    CORE_RESTART_NEVER,
};

/* What happens when a server's tool definition differs from its pin (policy/pins.h). */
enum core_pin {
    CORE_PIN_QUARANTINE = 0, /* the changed tool is hidden and refused until approved */
    CORE_PIN_WARN,           /* the change is logged and the new definition served */
    CORE_PIN_OFF,            /* no pinning for this server */
};

/* What a server inherits from the daemon's environment, besides its own env.* (which always
 * reaches it). Neither mode passes a name the config uses for a secret: a client's token_env,
 * or a NAME in ${env:NAME} of another server's env.* values (see secret_env). */
enum core_env_inherit {
    CORE_ENV_INHERIT_DEFAULT = 0, /* a small default set (PATH, HOME, locale, what npx/node and
                                   * uvx/python need; transports/child.c) plus env_pass */
    CORE_ENV_INHERIT_ALL,         /* every variable of the daemon */
};

/* How a remote server ([server.NAME] url = ...) is reached. */
enum core_transport {
    CORE_TRANSPORT_AUTO = 0,   /* Streamable HTTP, falling back to legacy HTTP+SSE on 400/404/405 */
    CORE_TRANSPORT_STREAMABLE, /* Streamable HTTP only */
    CORE_TRANSPORT_SSE,        /* the legacy HTTP+SSE transport (2024-11-05) */
};

/* Where a remote server's credentials come from. */
enum core_remote_auth {
    CORE_REMOTE_AUTH_NONE = 0, /* none (or a static headers.Authorization) */
    CORE_REMOTE_AUTH_BEARER,   /* "Authorization: Bearer $token_env", to this server only */
    CORE_REMOTE_AUTH_OAUTH,    /* the OAuth client (auth/oauth.h) */
};

struct core_server_cfg {
    char *name;          /* the part after "server." */
    int line;            /* line of the section header, for later error messages */
    char *command;       /* a stdio server's program; NULL for a remote server (url) */
    char **args;         /* NULL-terminated; never NULL (empty list = {NULL}) */
    size_t n_args;
    char **env;          /* NULL-terminated "KEY=VALUE" pairs added to the daemon's environment */
    size_t n_env;
    char *cwd;           /* NULL = the daemon's */
    char *prefix;        /* exposed-name prefix; defaults to name; "" = no prefix */
    enum core_isolation isolation;
    enum core_restart restart;
    uint64_t request_timeout_ms; /* default 300000 */
    char **roots;        /* NULL-terminated root URIs answered to roots/list outside a request */
    size_t n_roots;
    size_t max_frame;    /* longest stdio frame from the child, default 16 MiB */
    enum core_pin pin;   /* default CORE_PIN_QUARANTINE */
    unsigned max_instances; /* isolation = client/session: children at most, default 16 */
    enum core_env_inherit env_inherit; /* default CORE_ENV_INHERIT_DEFAULT */
    char **env_pass;     /* NULL-terminated variable names, or a prefix and a trailing '*',
                          * inherited on top of the default set; never NULL */
    size_t n_env_pass;
    char **secret_env;   /* NULL-terminated, each once: every NAME of ${env:NAME} in this
                          * server's env.* values, which no other server inherits; never NULL */
    size_t n_secret_env;
    /* A remote server: exactly one of command and url is set. The keys below apply only to
     * url servers, and args, env.*, cwd, env_inherit and env_pass only to command servers. */
    char *url;           /* http:// or https:// URL of the MCP endpoint (or the legacy SSE one) */
    enum core_transport transport; /* default CORE_TRANSPORT_AUTO */
    char **headers;      /* NULL-terminated "Name: value" lines (headers.Name = value, ${env:}
                          * expanded; each NAME read lands in secret_env); never NULL */
    size_t n_headers;
    enum core_remote_auth auth; /* default CORE_REMOTE_AUTH_NONE */
    char *token_env;     /* auth = bearer: the variable holding the token (checked set and
                          * non-empty at load, read again when the upstream connects; also in
                          * secret_env); else NULL */
    char *ca_file;       /* PEM CA bundle trusted for this server instead of the system store */
    /* auth = oauth (auth/oauth.h); all NULL / false otherwise. */
    char *client_id;     /* a pre-registered OAuth client; NULL = register (CIMD or DCR) */
    char *client_secret; /* its secret (${env:VAR} recommended; the name lands in secret_env) */
    char *client_metadata_url; /* https URL of this client's Client ID Metadata Document */
    char *scopes;        /* space-separated scopes to ask for; NULL = what the server says */
    bool oauth_client_credentials; /* oauth_grant = client_credentials (needs id and secret);
                                    * false = authorization_code (a user logs in) */
};

/* A [client.NAME] section: an identity and the policy applied to it. */
struct core_client_cfg {
    char *name;          /* the part after "client." */
    int line;            /* line of the section header */
    char token_sha256[65]; /* lowercase hex SHA-256 of the bearer token; "" = no token, so the
                            * client can only be named over the Unix socket */
    char **servers;      /* NULL = all servers; else NULL-terminated names of [server.X]
                          * sections of the same config */
    size_t n_servers;
    char **allow;        /* NULL-terminated globs; NULL (n_allow 0) = everything */
    size_t n_allow;
    char **deny;         /* NULL-terminated globs; NULL (n_deny 0) = nothing; deny wins */
    size_t n_deny;
    double rate_per_sec; /* tools/call token bucket refill per second; 0 = unlimited */
    double rate_burst;   /* bucket capacity (whole calls, >= 1); 0 when unlimited */
    unsigned max_sessions; /* live sessions of this client at most, default 1024 */
};

struct core_config {
    char *path;          /* the file read, or NULL for the embedded default */
    char *listen;        /* "HOST:PORT", default "127.0.0.1:7821"; "" or "off" disables TCP */
    char *socket;        /* Unix socket path; NULL = default under $XDG_RUNTIME_DIR; "off" disables */
    int log_level;       /* core_log_level value, default INFO */
    char *auth;          /* "token" (bearer needed on TCP) or "none"; default "token" for a
                          * parsed file, "none" for the embedded default */
    size_t max_body;     /* longest HTTP request body, default 4 MiB */
    uint64_t list_timeout_ms;   /* fan-out deadline for lists, default 5000 */
    uint64_t idle_timeout_ms;   /* idle HTTP connections are closed after this, default 120000 */
    uint64_t header_timeout_ms; /* an HTTP request's line and headers must be complete this long
                                 * after its first byte (408 then), default 10000 */
    unsigned max_connections;   /* TCP connections open at once, default 512 */
    uint64_t session_ttl_ms;    /* lifetime of a sealed session token, default 24 h */
    bool audit;                 /* write audit.jsonl, default true */
    size_t audit_max;           /* audit.jsonl size before rotation, default 10 MiB */
    unsigned max_sessions;      /* live sessions in total, default 16384 */
    struct core_server_cfg *servers; /* config order */
    size_t n_servers;
    struct core_client_cfg *clients; /* config order; names and token hashes are unique */
    size_t n_clients;
    char **secret_env;   /* NULL-terminated, each once: names of variables holding the gateway's
                          * own secrets, which no server inherits: every client's token_env
                          * (a caller may add more, as wrap does); never NULL */
    size_t n_secret_env;
};

/* Parses the file at path. On success returns 0 and *out (free with core_config_free).
 * On failure returns CORE_EPARSE (bad content, or a file over 1 MiB) or a UV_E* code (cannot
 * read) and writes a one-line message "PATH:LINE: what is wrong" (or "PATH: ..." when no line
 * applies) into err (NUL-terminated, truncated to errlen; err may be NULL). *out is written
 * only on success. ${env:NAME} in values expands from the process environment (an unset
 * variable is an error naming it). Lines may be of any length. ';' or '#' starts a comment
 * line, and ';' after a blank starts a comment anywhere, so no value can contain " ;".
 * [client.X] token_env = VAR reads VAR at load and keeps only its SHA-256 (and VAR in
 * secret_env). References between sections (a client's servers; an env_pass naming another
 * section's secret, which is an error) are checked once the whole text is read, so sections
 * may come in any order; auth = none with a listen address that is not loopback is an error. */
GW_MUST_CHECK int core_config_load(const char *path, struct core_config **out, char *err,
                                   size_t errlen);

/* Same, from len bytes in memory (no NUL needed); `name` is used in messages in place of the
 * path and stored as cfg->path (NULL: "<config>" in messages, path NULL). */
GW_MUST_CHECK int core_config_parse(const char *text, size_t len, const char *name,
                                    struct core_config **out, char *err, size_t errlen);

/* The embedded default: one server "demo" running `<self_exe> demo-server`, prefix "demo",
 * auth "none" on the loopback listen address, no clients. The caller owns the result
 * (core_config_free); it never fails. */
struct core_config *core_config_default(const char *self_exe);

/* Frees cfg and everything it holds; NULL does nothing. */
void core_config_free(struct core_config *cfg);

/* True when a and b configure the same server: every field but `line` is equal (strings by
 * content, lists element by element, a NULL cwd only equals NULL). */
bool core_server_cfg_equal(const struct core_server_cfg *a, const struct core_server_cfg *b);

/* A deep copy of srv on the heap; the caller owns it (core_server_cfg_free). Never fails. */
struct core_server_cfg *core_server_cfg_dup(const struct core_server_cfg *srv);

/* Frees a copy made by core_server_cfg_dup and everything it holds; NULL does nothing. Not for
 * the elements of core_config.servers, which core_config_free releases. */
void core_server_cfg_free(struct core_server_cfg *srv);

/* True when a and b configure the same client: every field but `line` is equal (a NULL servers
 * list, meaning all servers, only equals NULL). */
bool core_client_cfg_equal(const struct core_client_cfg *a, const struct core_client_cfg *b);

/* Parses a duration "300s", "250ms", "5m", "2h", "1.5s" or a bare number of seconds into ms
 * (fractions of a ms are dropped). Returns 0, or CORE_EINVAL for anything else, a sign, blanks
 * or overflow; *ms is written only on success. "0" is accepted here; the config keys refuse
 * it. */
GW_MUST_CHECK int core_config_parse_duration(const char *s, uint64_t *ms);
/* Parses a size "16MiB", "4M", "512KiB", "512K", "1GiB", "1G", "2TiB", "7B" or "1024" (bytes;
 * all units are binary). Returns 0, or CORE_EINVAL for anything else (e.g. "16MB", "1.5M") or
 * overflow; *bytes is written only on success. */
GW_MUST_CHECK int core_config_parse_size(const char *s, size_t *bytes);

#endif
