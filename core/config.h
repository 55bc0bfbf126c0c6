/* The INI configuration (parsed with inih) and its defaults. */
#ifndef GW_CORE_CONFIG_H
#define GW_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum core_isolation {
    CORE_ISOLATION_SHARED = 0,  /* one child serves every client session */
    CORE_ISOLATION_SESSION,     /* one child per client session */
};

enum core_restart {
    CORE_RESTART_ON_FAILURE = 0, /* restart after a non-zero exit, a signal or an invalid frame */
    CORE_RESTART_ALWAYS,
    CORE_RESTART_NEVER,
};

struct core_server_cfg {
    char *name;          /* the part after "server." */
    int line;            /* line of the section header, for later error messages */
    char *command;       /* required */
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
};

struct core_config {
    char *path;          /* the file read, or NULL for the embedded default */
    char *listen;        /* "HOST:PORT", default "127.0.0.1:7821"; "" or "off" disables TCP */
    char *socket;        /* Unix socket path; NULL = default under $XDG_RUNTIME_DIR; "off" disables */
    int log_level;       /* core_log_level value, default INFO */
    char *auth;          /* "none" */
    size_t max_body;     /* longest HTTP request body, default 4 MiB */
    uint64_t list_timeout_ms;   /* fan-out deadline for lists, default 5000 */
    uint64_t idle_timeout_ms;   /* idle HTTP connections are closed after this, default 120000 */
    struct core_server_cfg *servers; /* config order */
    size_t n_servers;
};

/* Parses the file at path. On success returns 0 and *out (free with core_config_free).
 * On failure returns CORE_EPARSE (bad content, or a file over 1 MiB) or a UV_E* code (cannot
 * read) and writes a one-line message "PATH:LINE: what is wrong" (or "PATH: ..." when no line
 * applies) into err (NUL-terminated, truncated to errlen; err may be NULL). *out is written
 * only on success. ${env:NAME} in values expands from the process environment (an unset
 * variable is an error naming it). Lines may be of any length. ';' or '#' starts a comment
 * line, and ';' after a blank starts a comment anywhere, so no value can contain " ;". */
GW_MUST_CHECK int core_config_load(const char *path, struct core_config **out, char *err,
                                   size_t errlen);

/* Same, from len bytes in memory (no NUL needed); `name` is used in messages in place of the
 * path and stored as cfg->path (NULL: "<config>" in messages, path NULL). */
GW_MUST_CHECK int core_config_parse(const char *text, size_t len, const char *name,
                                    struct core_config **out, char *err, size_t errlen);

/* The embedded default: one server "demo" running `<self_exe> demo-server`, prefix "demo".
 * The caller owns the result (core_config_free); it never fails. */
struct core_config *core_config_default(const char *self_exe);

/* Frees cfg and everything it holds; NULL does nothing. */
void core_config_free(struct core_config *cfg);

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
