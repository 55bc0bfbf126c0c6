#include "core/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "core/err.h"

int core_log_level = CORE_LOG_INFO;
static FILE *log_file;

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

void core_log_write(int level, const char *module, const char *fmt, ...)
{
    FILE *f = log_file ? log_file : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%s.%03d %-5s %-6s ", ts, (int)(tv.tv_usec / 1000),
                     names[level < 0 ? 0 : level > 4 ? 4 : level], module);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, f);
    fflush(f);
}
