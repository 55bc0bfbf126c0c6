#include "core/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
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

int core_path_tmp_base(char *out, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] != '/')
        tmp = "/tmp";
    /* The effective uid: it is the one that owns what we create and that the checks expect. */
    unsigned uid = (unsigned)geteuid();
    int n = snprintf(out, cap, "%s/agentgate-%u", tmp, uid);
    if (n < 0 || (size_t)n >= cap) /* a TMPDIR too long to use: as if it were not set */
        n = snprintf(out, cap, "/tmp/agentgate-%u", uid);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

void core_path_default_state(char *out, size_t cap)
{
    if (core_path_xdg(out, cap, "XDG_STATE_HOME", ".local/state", "agentgate") == 0)
        return;
    char base[PATH_MAX];
    if (core_path_tmp_base(base, sizeof base) == 0)
        snprintf(out, cap, "%s/state", base);
    else if (cap > 0)
        out[0] = '\0'; /* cannot happen: PATH_MAX holds "/tmp/agentgate-UID" */
}

int core_path_default_socket(char *out, size_t cap)
{
    const char *rt = getenv("XDG_RUNTIME_DIR");
    int n;
    if (rt && rt[0] == '/') {
        n = snprintf(out, cap, "%s/agentgate/agentgate.sock", rt);
    } else {
        char base[PATH_MAX];
        if (core_path_tmp_base(base, sizeof base) != 0)
            return -1;
        n = snprintf(out, cap, "%s/agentgate.sock", base);
    }
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int core_path_dir_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int n;
    if (slash == NULL)
        n = snprintf(out, cap, ".");
    else if (slash == path)
        n = snprintf(out, cap, "/");
    else
        n = snprintf(out, cap, "%.*s", (int)(slash - path), path);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ------------------------------------------------------------------ private directories */

/* Whether dir is the tmp base (*is_base set) or inside it; base receives the base. */
static bool under_tmp_base(const char *dir, char *base, size_t cap, bool *is_base)
{
    if (core_path_tmp_base(base, cap) != 0)
        return false;
    size_t n = strlen(base);
    if (strncmp(dir, base, n) != 0 || (dir[n] != '\0' && dir[n] != '/'))
        return false;
    *is_base = dir[n] == '\0' || strspn(dir + n, "/") == strlen(dir + n);
    return true;
}

/* What to do about an unacceptable tmp base: it is there because XDG_RUNTIME_DIR is not set
 * (and, for the state, neither XDG_STATE_HOME nor HOME). */
static const char *base_fix(void)
{
    char probe[PATH_MAX];
    if (core_path_xdg(probe, sizeof probe, "XDG_STATE_HOME", ".local/state", "agentgate") != 0)
        return "remove it, or set XDG_RUNTIME_DIR and XDG_STATE_HOME";
    return "remove it or set XDG_RUNTIME_DIR";
}

/* The check of one directory, without looking at the tmp base. */
static int check_one(const char *dir, bool is_base, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        int rc = -errno;
        core_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return rc;
    }
    const char *fix = is_base ? base_fix() : "remove it or use another directory";
    uid_t me = geteuid();
    if (S_ISLNK(st.st_mode)) {
        core_set_err(err, errlen,
                     "%s: is a symbolic link, which agentgate does not follow there; %s", dir, fix);
        return CORE_EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        core_set_err(err, errlen, "%s: not a directory; %s", dir, fix);
        return CORE_EINVAL;
    }
    if (st.st_uid != me) {
        core_set_err(err, errlen, "%s: owned by uid %u, not you (uid %u); %s", dir,
                     (unsigned)st.st_uid, (unsigned)me, fix);
        return CORE_EINVAL;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        /* Ours but open: chmod closes it, though whatever others put there meanwhile stays. */
        char chmod_fix[PATH_MAX + 32];
        snprintf(chmod_fix, sizeof chmod_fix, "run `chmod 700 %s`", dir);
        core_set_err(err, errlen, "%s: mode %04o lets other users write to it; %s", dir,
                     (unsigned)(st.st_mode & 07777), is_base ? fix : chmod_fix);
        return CORE_EINVAL;
    }
    return 0;
}

int core_path_check_private_dir(const char *dir, char *err, size_t errlen)
{
    char base[PATH_MAX];
    bool is_base = false;
    if (under_tmp_base(dir, base, sizeof base, &is_base)) {
        int rc = check_one(base, true, err, errlen);
        if (rc != 0 || is_base)
            return rc;
    }
    return check_one(dir, false, err, errlen);
}

/* mkdir(dir, 0700) unless something is there already, then the check. */
static int make_one(const char *dir, bool is_base, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int rc = -errno;
        core_set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return rc;
    }
    return check_one(dir, is_base, err, errlen);
}

int core_path_ensure_private_dir(const char *dir, char *err, size_t errlen)
{
    char base[PATH_MAX];
    bool is_base = false;
    if (under_tmp_base(dir, base, sizeof base, &is_base)) {
        int rc = make_one(base, true, err, errlen);
        if (rc != 0 || is_base)
            return rc;
    }
    if (core_path_mkdirs(dir, 0700) != 0) {
        int rc = -errno;
        core_set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return rc;
    }
    return check_one(dir, false, err, errlen);
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
