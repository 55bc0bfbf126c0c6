/* Hash maps keyed by uint64 or by string, holding borrowed pointers. Open addressing. */
#ifndef GW_CORE_MAP_H
#define GW_CORE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core_map_u64 {
    /* private: use the API */
    struct core_map_u64_slot *slots;
    size_t cap; /* power of two or 0 */
    size_t len;
    size_t tombs;
};

void core_map_u64_init(struct core_map_u64 *m);
void core_map_u64_dispose(struct core_map_u64 *m);
/* Inserts or replaces; val must not be NULL. */
void core_map_u64_put(struct core_map_u64 *m, uint64_t key, void *val);
void *core_map_u64_get(const struct core_map_u64 *m, uint64_t key);
/* Removes and returns the value, or NULL. */
void *core_map_u64_del(struct core_map_u64 *m, uint64_t key);
size_t core_map_u64_len(const struct core_map_u64 *m);
/* Iteration: *it starts at 0; returns false at the end. Removing the current entry while
 * iterating is allowed; inserting is not. */
bool core_map_u64_next(const struct core_map_u64 *m, size_t *it, uint64_t *key, void **val);

struct core_map_str {
    /* private: use the API */
    struct core_map_str_slot *slots;
    size_t cap;
    size_t len;
    size_t tombs;
};

void core_map_str_init(struct core_map_str *m);
/* Frees the map's own key copies, not the values. */
void core_map_str_dispose(struct core_map_str *m);
/* Copies the key. Inserts or replaces; val must not be NULL. */
void core_map_str_put(struct core_map_str *m, const char *key, size_t klen, void *val);
void *core_map_str_get(const struct core_map_str *m, const char *key, size_t klen);
void *core_map_str_del(struct core_map_str *m, const char *key, size_t klen);
size_t core_map_str_len(const struct core_map_str *m);
bool core_map_str_next(const struct core_map_str *m, size_t *it, const char **key, void **val);

/* 64-bit FNV-1a, for stable short hashes. */
uint64_t core_hash64(const void *p, size_t n);

#endif
