#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

void core_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *core_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case CORE_ETOOBIG:
        return "too big";
    case CORE_EPARSE:
        return "parse error";
    case CORE_EINVAL:
        return "invalid value";
    case CORE_ENOTFOUND:
        return "not found";
    case CORE_ECLOSED:
        return "closed";
    case CORE_ETIMEDOUT:
        return "timed out";
    case CORE_EPROTO:
        return "protocol error";
    case CORE_EBUSY:
        return "busy";
    case CORE_EDUP:
        return "duplicate key";
    default:
        return uv_strerror(code);
    }
}
