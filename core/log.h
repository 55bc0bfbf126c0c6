/* Leveled logging to stderr or a file, never stdout (stdout may carry MCP stdio). */
#ifndef GW_CORE_LOG_H
#define GW_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum core_log_level {
    CORE_LOG_ERROR = 0,
    CORE_LOG_WARN = 1,
    CORE_LOG_INFO = 2,
    CORE_LOG_DEBUG = 3,
    CORE_LOG_TRACE = 4,
};

extern int core_log_level;

/* Parses "error|warn|info|debug|trace"; returns 0 and writes *out, or CORE_EINVAL. */
int core_log_parse_level(const char *s, int *out);
void core_log_set_level(int level);
/* Borrowed FILE; NULL means stderr. */
void core_log_set_file(FILE *f);
/* Sends everything the process writes to stderr, log lines included, to the file at path
 * (appended, mode 0600; a symlink there is refused, not followed), and rotates it when the log
 * lines written pass max_bytes: path becomes path.1 (keep old files: path.1 .. path.keep) and a
 * fresh file takes over stderr. Returns 0, or a negative code with a one-line message in err
 * (stderr is then unchanged). */
int core_log_to_file(const char *path, size_t max_bytes, int keep, char *err, size_t errlen);
void core_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A budget of log lines for one noisy source (a server, a stream): at most `burst` lines,
 * refilled at one line every `every_ms`; lines past it are counted, and the next line that
 * gets through says how many were suppressed. Zero-initialised it allows 10 lines, then one a
 * second. */
struct core_log_limit {
    /* private: use core_log_limited */
    uint64_t last_ms;   /* monotonic ms of the last refill */
    double tokens;
    uint64_t suppressed;
    bool started;
};

/* core_log through a budget (see struct core_log_limit). */
void core_log_limited_write(struct core_log_limit *lim, int level, const char *module,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define core_log_limited(lim, level, mod, ...)                                                     \
    do {                                                                                           \
        if ((level) <= core_log_level)                                                             \
            core_log_limited_write((lim), (level), (mod), __VA_ARGS__);                            \
    } while (0)

/* The level is checked before the arguments are evaluated. `mod` is a short module name. */
#define core_log(level, mod, ...)                                                                  \
    do {                                                                                           \
        if ((level) <= core_log_level)                                                             \
            core_log_write((level), (mod), __VA_ARGS__);                                           \
    } while (0)

#endif
