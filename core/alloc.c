/* The one place that calls malloc and free. */
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long live;
static atomic_size_t live_bytes; /* as malloc_usable_size tells: what the heap really holds */

static void oom(size_t n)
{
    fprintf(stderr, "agentgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *core_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    atomic_fetch_add(&live, 1);
    atomic_fetch_add(&live_bytes, malloc_usable_size(p));
    return p;
}

void *core_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    atomic_fetch_add(&live, 1);
    atomic_fetch_add(&live_bytes, malloc_usable_size(p));
    return p;
}

void *core_xrealloc(void *p, size_t n)
{
    size_t was = p ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    if (p == NULL)
        atomic_fetch_add(&live, 1);
    atomic_fetch_sub(&live_bytes, was);
    atomic_fetch_add(&live_bytes, malloc_usable_size(q));
    return q;
}

char *core_xstrdup(const char *s)
{
    return core_xmemdup(s, strlen(s) + 1);
}

char *core_xstrndup(const char *s, size_t n)
{
    char *p = core_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *core_xmemdup(const void *p, size_t n)
{
    void *q = core_xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

void core_free(void *p)
{
    if (p == NULL)
        return;
    atomic_fetch_sub(&live, 1);
    atomic_fetch_sub(&live_bytes, malloc_usable_size(p));
    free(p);
}

static void *cjson_malloc(size_t n)
{
    return core_xmalloc(n);
}

void core_alloc_hook_cjson(void)
{
    cJSON_Hooks hooks = {.malloc_fn = cjson_malloc, .free_fn = core_free};
    cJSON_InitHooks(&hooks);
}

long core_alloc_live(void)
{
    return atomic_load(&live);
}

size_t core_alloc_live_bytes(void)
{
    return atomic_load(&live_bytes);
}
