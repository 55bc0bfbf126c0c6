#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void core_buf_init(struct core_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX - 1;
}

void core_buf_dispose(struct core_buf *b)
{
    core_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int core_buf_reserve(struct core_buf *b, size_t extra)
{
    if (extra > b->limit - b->len)
        return CORE_ETOOBIG;
    size_t need = b->len + extra;
    if (need <= b->cap && b->data != NULL)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->limit)
        cap = b->limit > need ? b->limit : need;
    b->data = core_xrealloc(b->data, cap + 1);
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

int core_buf_append(struct core_buf *b, const void *p, size_t n)
{
    int rc = core_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int core_buf_append_str(struct core_buf *b, const char *s)
{
    return core_buf_append(b, s, strlen(s));
}

int core_buf_appendf(struct core_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CORE_EINVAL;
    int rc = core_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void core_buf_consume(struct core_buf *b, size_t n)
{
    if (n == 0)
        return;
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void core_buf_reset(struct core_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *core_buf_take(struct core_buf *b, size_t *len)
{
    if (b->data == NULL) {
        int rc = core_buf_reserve(b, 0);
        (void)rc; /* reserving 0 bytes cannot pass the limit */
    }
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
