#include "core/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

int core_path_xdg(char *out, size_t cap, const char *var, const char *home_rel, const char *leaf)
{
    const char *base = var ? getenv(var) : NULL;
    int n;
    if (base && base[0] == '/') {
        n = snprintf(out, cap, "%s/%s", base, leaf);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0')
            return -1;
        n = snprintf(out, cap, "%s/%s/%s", home, home_rel, leaf);
    }
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int core_path_mkdirs(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int core_path_default_config(char *out, size_t cap)
{
    return core_path_xdg(out, cap, "XDG_CONFIG_HOME", ".config", "agentgate/agentgate.ini");
}

void core_path_default_state(char *out, size_t cap)
{
    if (core_path_xdg(out, cap, "XDG_STATE_HOME", ".local/state", "agentgate") != 0)
        snprintf(out, cap, "/tmp/agentgate-%u/state", (unsigned)getuid());
}

int core_path_default_socket(char *out, size_t cap)
{
    const char *rt = getenv("XDG_RUNTIME_DIR");
    int n;
    if (rt && rt[0] == '/')
        n = snprintf(out, cap, "%s/agentgate/agentgate.sock", rt);
    else
        n = snprintf(out, cap, "/tmp/agentgate-%u/agentgate.sock", (unsigned)getuid());
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

const char *core_path_config(const char *opt_config, char *buf, size_t cap)
{
    if (opt_config != NULL)
        return opt_config;
    if (core_path_default_config(buf, cap) == 0 && access(buf, F_OK) == 0)
        return buf;
    return NULL;
}

void core_path_state(const char *opt_state, char *out, size_t cap)
{
    if (opt_state != NULL)
        snprintf(out, cap, "%s", opt_state);
    else
        core_path_default_state(out, cap);
}

int core_path_socket(const char *opt_socket, const struct core_config *cfg, char *out, size_t cap)
{
    const char *s = opt_socket ? opt_socket : cfg ? cfg->socket : NULL;
    if (s != NULL && strcmp(s, "off") == 0)
        s = "";
    if (s == NULL)
        return core_path_default_socket(out, cap);
    int n = snprintf(out, cap, "%s", s);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}
