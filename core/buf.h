/* Growable byte buffer with a hard limit, for anything whose size a peer controls. */
#ifndef GW_CORE_BUF_H
#define GW_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/err.h"

struct core_buf {
    /* private: use the API */
    char *data;   /* NULL until the first reserve; always NUL-terminated past len when non-NULL */
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated (excluding the NUL slot) */
    size_t limit; /* hard limit on len; 0 means SIZE_MAX */
};

void core_buf_init(struct core_buf *b, size_t limit);
/* Frees the storage; the buffer can be used again after core_buf_init. */
void core_buf_dispose(struct core_buf *b);
/* Makes room for `extra` more bytes. Returns 0 or CORE_ETOOBIG (nothing allocated then). */
GW_MUST_CHECK int core_buf_reserve(struct core_buf *b, size_t extra);
GW_MUST_CHECK int core_buf_append(struct core_buf *b, const void *p, size_t n);
GW_MUST_CHECK int core_buf_append_str(struct core_buf *b, const char *s);
GW_MUST_CHECK int core_buf_appendf(struct core_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (memmove of the rest). */
void core_buf_consume(struct core_buf *b, size_t n);
/* Sets len to 0, keeps the storage. */
void core_buf_reset(struct core_buf *b);
/* Returns the storage (NUL-terminated, caller frees with core_free) and leaves the buffer empty. */
char *core_buf_take(struct core_buf *b, size_t *len);

#endif
