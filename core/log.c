#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/file.h"

int core_log_level = CORE_LOG_INFO;
static FILE *log_file;

/* core_log_to_file: stderr is this file, rotated by size. */
static struct {
    char *path;   /* NULL: stderr is left alone */
    size_t max;
    int keep;
    size_t written; /* log bytes since the file was opened (its size when it was opened too) */
} rot;

static const char *const names[] = {"error", "warn", "info", "debug", "trace"};

int core_log_parse_level(const char *s, int *out)
{
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = CORE_LOG_WARN;
        return 0;
    }
    return CORE_EINVAL;
}

void core_log_set_level(int level)
{
    core_log_level = level;
}

void core_log_set_file(FILE *f)
{
    log_file = f;
}

/* Opens path for appending and makes it stderr. */
static int redirect_stderr(const char *path, char *err, size_t errlen)
{
    int fd;
    int rc = core_file_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err, errlen);
    if (rc != 0)
        return rc;
    struct stat st;
    rot.written = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
    fflush(stderr);
    if (dup2(fd, STDERR_FILENO) < 0) {
        rc = -errno;
        core_set_err(err, errlen, "%s: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

int core_log_to_file(const char *path, size_t max_bytes, int keep, char *err, size_t errlen)
{
    int rc = redirect_stderr(path, err, errlen);
    if (rc != 0)
        return rc;
    core_free(rot.path);
    rot.path = core_xstrdup(path);
    rot.max = max_bytes;
    rot.keep = keep;
    return 0;
}

/* The log file passed its size: shifted aside, and a fresh one becomes stderr. A failure is
 * said in the file we still have, once. */
static void rotate(void)
{
    char err[600];
    if (core_file_shift(rot.path, rot.keep, err, sizeof err) != 0 ||
        redirect_stderr(rot.path, err, sizeof err) != 0) {
        fprintf(stderr, "agentgate: log rotation failed, logging on here: %s\n", err);
        rot.max = 0;
    }
}

static void log_vwrite(int level, const char *module, const char *prefix, const char *fmt,
                       va_list ap) __attribute__((format(printf, 4, 0)));

void core_log_write(int level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, module, "", fmt, ap);
    va_end(ap);
}

#define LIMIT_BURST 10.0
#define LIMIT_EVERY_MS 1000.0

void core_log_limited_write(struct core_log_limit *lim, int level, const char *module,
                            const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (!lim->started) {
        lim->started = true;
        lim->tokens = LIMIT_BURST;
        lim->last_ms = now;
    }
    lim->tokens += (double)(now - lim->last_ms) / LIMIT_EVERY_MS;
    if (lim->tokens > LIMIT_BURST)
        lim->tokens = LIMIT_BURST;
    lim->last_ms = now;
    if (lim->tokens < 1.0) {
        lim->suppressed++;
        return;
    }
    lim->tokens -= 1.0;
    char prefix[64] = "";
    if (lim->suppressed > 0)
        snprintf(prefix, sizeof prefix, "(%llu similar lines suppressed) ",
                 (unsigned long long)lim->suppressed);
    lim->suppressed = 0;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, module, prefix, fmt, ap);
    va_end(ap);
}

static void log_vwrite(int level, const char *module, const char *prefix, const char *fmt,
                       va_list ap)
{
    FILE *f = log_file ? log_file : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%s.%03d %-5s %-6s %s", ts, (int)(tv.tv_usec / 1000),
                     names[level < 0 ? 0 : level > 4 ? 4 : level], module, prefix);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, f);
    fflush(f);
    if (rot.path && f == stderr && rot.max > 0) {
        rot.written += len;
        if (rot.written > rot.max)
            rotate();
    }
}
