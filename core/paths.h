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

#endif
