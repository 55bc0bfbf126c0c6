#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

/* core_file_open, with O_NOFOLLOW only when nofollow; *st_out gets the file's stat. */
static int open_regular(const char *path, int flags, mode_t mode, bool nofollow, int *fd_out,
                        struct stat *st_out, char *err, size_t errlen)
{
    /* O_NONBLOCK only for the open itself: a FIFO planted at path would otherwise block it
     * until someone opens the other end. Regular files ignore it. */
    int fd = open(path, flags | (nofollow ? O_NOFOLLOW : 0) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                  mode);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) {
            core_set_err(err, errlen,
                         "%s: is a symbolic link, which agentgate does not follow; "
                         "remove it",
                         path);
            return -ELOOP;
        }
        if (e == ENXIO || e == EISDIR) { /* a FIFO without a reader, a device, a directory */
            core_set_err(err, errlen, "%s: not a regular file", path);
            return CORE_EINVAL;
        }
        core_set_err(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        core_set_err(err, errlen, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = CORE_EINVAL;
        core_set_err(err, errlen, "%s: not a regular file", path);
    } else {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
            rc = -errno;
            core_set_err(err, errlen, "%s: %s", path, strerror(errno));
        }
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    *st_out = st;
    return 0;
}

int core_file_open(const char *path, int flags, mode_t mode, int *fd_out, char *err, size_t errlen)
{
    struct stat st;
    return open_regular(path, flags, mode, true, fd_out, &st, err, errlen);
}

/* Moves the n bytes at *p into a new block of cap bytes, wiping the old one (it may hold a
 * secret), and frees it. */
static char *grow(char *p, size_t n, size_t cap)
{
    char *q = core_xmalloc(cap);
    memcpy(q, p, n);
    explicit_bzero(p, n);
    core_free(p);
    return q;
}

int core_file_read_all(const char *path, unsigned flags, size_t max, char **out, size_t *len_out,
                       mode_t *mode_out, char *err, size_t errlen)
{
    /* Written by open_regular on success only; set here so that no path reads them unset. */
    int fd = -1;
    struct stat st;
    memset(&st, 0, sizeof st);
    int rc = open_regular(path, O_RDONLY, 0, (flags & CORE_FILE_NOFOLLOW) != 0, &fd, &st, err,
                          errlen);
    if (rc != 0)
        return rc;
    char *buf = NULL;
    size_t len = 0;
    if ((flags & CORE_FILE_PRIVATE) != 0 && (st.st_mode & 077) != 0) {
        rc = CORE_EINVAL;
        core_set_err(err, errlen, "%s: mode %04o lets group/others in; run `chmod 600 %s`", path,
                     (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > max) {
        rc = CORE_ETOOBIG;
        core_set_err(err, errlen, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    /* Sized by fstat, so a file that does not change is read with one allocation; one that grows
     * meanwhile still stops at max. The extra byte holds the NUL, or shows that there is more. */
    size_t cap = (size_t)st.st_size + 1;
    buf = core_xmalloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                rc = CORE_ETOOBIG;
                core_set_err(err, errlen, "%s: larger than %zu bytes", path, max);
                goto out;
            }
            size_t ncap = cap <= max / 2 ? cap * 2 : max + 1;
            buf = grow(buf, len, ncap);
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            core_set_err(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > max) {
        rc = CORE_ETOOBIG;
        core_set_err(err, errlen, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    if (len == cap)
        buf = grow(buf, len, len + 1);
    buf[len] = '\0';
out:
    close(fd);
    if (rc != 0) {
        if (buf != NULL) {
            explicit_bzero(buf, len);
            core_free(buf);
        }
        return rc;
    }
    *out = buf;
    if (len_out != NULL)
        *len_out = len;
    if (mode_out != NULL)
        *mode_out = st.st_mode & 07777;
    return 0;
}

int core_file_shift(const char *path, int keep, char *err, size_t errlen)
{
    size_t cap = strlen(path) + 16;
    char *from = core_xmalloc(cap);
    char *to = core_xmalloc(cap);
    int rc = 0;
    for (int i = keep - 1; i >= 0 && rc == 0; i--) {
        if (i == 0)
            snprintf(from, cap, "%s", path);
        else
            snprintf(from, cap, "%s.%d", path, i);
        snprintf(to, cap, "%s.%d", path, i + 1);
        if (rename(from, to) != 0 && errno != ENOENT) {
            rc = -errno;
            core_set_err(err, errlen, "%s: cannot rotate: %s", path, strerror(errno));
        }
    }
    core_free(from);
    core_free(to);
    return rc;
}

int core_file_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int core_file_write_temp(const char *path, const void *data, size_t n, mode_t mode,
                         char **tmp_out)
{
    size_t len = strlen(path) + sizeof(".agentgate-tmp-XXXXXX");
    char *tmp = core_xmalloc(len);
    snprintf(tmp, len, "%s.agentgate-tmp-XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        core_free(tmp);
        return rc;
    }
    int rc = 0;
    if (fchmod(fd, mode) != 0) /* exact, whatever the umask */
        rc = -errno;
    if (rc == 0)
        rc = core_file_write_all(fd, data, n);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0) {
        (void)unlink(tmp);
        core_free(tmp);
        return rc;
    }
    *tmp_out = tmp;
    return 0;
}

/* fsyncs the directory holding path, so that the rename itself survives a crash. */
static void sync_parent(const char *path)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd); /* best effort: the new file is in place either way */
    close(fd);
}

int core_file_commit(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        int rc = -errno;
        (void)unlink(tmp);
        return rc;
    }
    sync_parent(path);
    return 0;
}

int core_file_write_atomic(const char *path, const void *data, size_t n, mode_t mode)
{
    char *tmp = NULL;
    int rc = core_file_write_temp(path, data, n, mode, &tmp);
    if (rc == 0)
        rc = core_file_commit(tmp, path);
    core_free(tmp);
    return rc;
}
