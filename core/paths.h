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
/* The fallback directory for the socket (and for the state when there is no HOME either):
 * "$TMPDIR/agentgate-EUID" when $TMPDIR is an absolute path (and short enough for cap), else
 * "/tmp/agentgate-EUID". It sits in a directory every user can write to, so
 * core_path_check_private_dir checks it before anything inside it is used. Returns 0, or -1 when
 * even the /tmp form does not fit in cap. */
GW_MUST_CHECK int core_path_tmp_base(char *out, size_t cap);
/* $XDG_STATE_HOME/agentgate (else ~/.local/state/agentgate, else TMP_BASE/state). */
void core_path_default_state(char *out, size_t cap);
/* $XDG_RUNTIME_DIR/agentgate/agentgate.sock (else TMP_BASE/agentgate.sock). Returns 0 or -1
 * (too long). */
GW_MUST_CHECK int core_path_default_socket(char *out, size_t cap);
/* The directory part of path ("." for a bare name, "/" for "/name") into out. Returns 0 or -1
 * (too long). */
GW_MUST_CHECK int core_path_dir_of(const char *path, char *out, size_t cap);

/* Directories that hold the socket, keys, pins, logs and the audit log must be ours alone:
 * whoever can write to one can plant a listener, a symlink or a file there. */

/* Checks that dir can be trusted: looked at with lstat (a symlink there is refused, never
 * followed; symlinks in its parents are followed), it must be a directory owned by the effective
 * user with no group or other write bit. When dir is the tmp fallback base or inside it (see
 * core_path_tmp_base), the base is checked first, by the same rule. Returns 0; -ENOENT when dir
 * (or the base) does not exist; CORE_EINVAL when it exists but is not acceptable; or another
 * -errno from lstat. On failure err gets one line naming the path, what is wrong and the fix,
 * e.g. "/tmp/agentgate-1000: owned by uid 65534, not you (uid 1000); remove it or set
 * XDG_RUNTIME_DIR". */
GW_MUST_CHECK int core_path_check_private_dir(const char *dir, char *err, size_t errlen);
/* Creates dir when missing (and its missing parents, mode 0700), then checks it as
 * core_path_check_private_dir does. The tmp fallback base is created (0700) and checked before
 * anything is created inside it, so nothing is ever made in a directory someone else controls.
 * Existing directories are never changed. Returns 0, CORE_EINVAL, or -errno (lstat or mkdir
 * failed), with a one-line message in err on failure. */
GW_MUST_CHECK int core_path_ensure_private_dir(const char *dir, char *err, size_t errlen);

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
