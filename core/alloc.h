/* The only place that calls malloc/free. Allocation failure aborts (as in redis and h2o):
 * anything sized by a peer must go through a struct core_buf with a hard limit first. */
#ifndef GW_CORE_ALLOC_H
#define GW_CORE_ALLOC_H

#include <stddef.h>

void *core_xmalloc(size_t n);
void *core_xcalloc(size_t count, size_t size);
void *core_xrealloc(void *p, size_t n);
char *core_xstrdup(const char *s);
/* Copies n bytes of s and adds a NUL. */
char *core_xstrndup(const char *s, size_t n);
void *core_xmemdup(const void *p, size_t n);
void core_free(void *p);

/* Makes cJSON allocate through core_xmalloc/core_free. Call once at start. */
void core_alloc_hook_cjson(void);

/* Number of live allocations made through this module (for leak tests). */
long core_alloc_live(void);
/* Bytes those allocations hold, as the allocator counts them (malloc_usable_size): what the
 * daemon's own data takes, whatever the allocator or a sanitizer keeps besides. */
size_t core_alloc_live_bytes(void);

#endif
