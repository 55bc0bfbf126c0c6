/* Where agentgate keeps things by default (XDG base directories), shared by every command. */
#ifndef GW_CORE_PATHS_H
#define GW_CORE_PATHS_H

#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"

/* "$VAR/leaf" when $VAR is an absolute path, else "$HOME/home_rel/leaf". Returns 0, or -1 when
 * there is no HOME or the result does not fit. */
GW_MUST_CHECK int core_path_xdg(char *out, size_t cap, const char *var, const char *home_rel,
                                const char *leaf);
/* mkdir -p; directories it creates get `mode`. Returns 0 or -1 (errno set). */
GW_MUST_CHECK int core_path_mkdirs(const char *path, mode_t mode);
/* $XDG_CONFIG_HOME/agentgate/agentgate.ini (else ~/.config/...). Returns 0 or -1. */
GW_MUST_CHECK int core_path_default_config(char *out, size_t cap);
/* $XDG_STATE_HOME/agentgate (else ~/.local/state/agentgate, else /tmp/agentgate-UID/state). */
void core_path_default_state(char *out, size_t cap);
/* $XDG_RUNTIME_DIR/agentgate/agentgate.sock (else /tmp/agentgate-UID/agentgate.sock). Returns 0
 * or -1 (too long). */
GW_MUST_CHECK int core_path_default_socket(char *out, size_t cap);

/* Where every command (serve, bridge, the admin commands) finds things, so that they agree. */
struct core_config;
/* The config file to load: opt_config when given, else the default path
 * ($XDG_CONFIG_HOME/agentgate/agentgate.ini) when that file exists, written into buf (cap
 * bytes). Returns opt_config, buf, or NULL: no file, the built-in config applies. */
const char *core_path_config(const char *opt_config, char *buf, size_t cap);
/* The state directory: opt_state when given, else the default. Does not create it. */
void core_path_state(const char *opt_state, char *out, size_t cap);
/* The daemon's Unix socket: opt_socket when given, else the config's `socket` key (cfg may be
 * NULL: no config), else the default. Writes "" when that is "off". Returns 0, or -1 when the
 * path does not fit in cap bytes. */
GW_MUST_CHECK int core_path_socket(const char *opt_socket, const struct core_config *cfg,
                                   char *out, size_t cap);

#endif
