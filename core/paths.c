#include "core/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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
