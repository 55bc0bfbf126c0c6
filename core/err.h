/* Error codes and small compiler helpers shared by every module. */
#ifndef GW_CORE_ERR_H
#define GW_CORE_ERR_H

/* Our own codes sit below -10000 so they never collide with libuv's UV_E* codes,
 * which pass through unchanged. */
enum {
    CORE_ETOOBIG = -10001,   /* a peer-sized input passed its hard limit */
    CORE_EPARSE = -10002,    /* malformed input (JSON, HTTP, INI ...) */
    CORE_EINVAL = -10003,    /* an argument or value is not acceptable */
    CORE_ENOTFOUND = -10004, /* no such name, id, session ... */
    CORE_ECLOSED = -10005,   /* the other end or the object is closed */
    CORE_ETIMEDOUT = -10006, /* a deadline passed */
    CORE_EPROTO = -10007,    /* the peer broke the protocol */
    CORE_EBUSY = -10008,     /* try again later */
    CORE_EDUP = -10009,      /* a JSON key appears more than once where it is read */
};

/* Returns a static description of a CORE_E* or UV_E* code. */
const char *core_strerror(int code);

#include <stddef.h>
/* Formats a one-line message into err[0..errlen) (truncated, NUL-terminated); err may be NULL
 * or errlen 0, then nothing is written. For the `char *err, size_t errlen` out-parameters. */
void core_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define GW_MUST_CHECK __attribute__((warn_unused_result))
#define GW_UNUSED(x) ((void)(x))

/* GW_STATIC is `static` except in test builds, so tests can reach internals. */
#ifdef GW_TESTING
#define GW_STATIC
#else
#define GW_STATIC static
#endif

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
