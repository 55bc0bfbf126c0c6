/* Open-addressing hash maps with linear probing. A slot is empty when its value is NULL and a
 * tombstone when its value is the address of `tomb`; removal only ever writes tombstones, so
 * entries never move outside put, which keeps removal during iteration safe. */
#include "core/map.h"

#include <assert.h>
#include <string.h>

#include "core/alloc.h"

struct core_map_u64_slot {
    uint64_t key;
    void *val; /* NULL: empty; TOMB: removed */
};

struct core_map_str_slot {
    char *key; /* owned copy, NUL-terminated */
    size_t klen;
    uint64_t hash; /* of the key, kept so that resizing does not rehash the strings */
    void *val;     /* NULL: empty; TOMB: removed */
};

static char tomb;
#define TOMB ((void *)&tomb)

#define MIN_CAP 8

/* True when one more entry would push live entries plus tombstones past 3/4 of the slots. */
static bool needs_resize(size_t cap, size_t len, size_t tombs)
{
    return cap == 0 || (len + tombs + 1) * 4 > cap * 3;
}

/* A capacity that leaves the map at most half full after the next insertion. Tombstones are
 * dropped by the rehash, so a map full of them is cleaned without growing. */
static size_t resize_cap(size_t len)
{
    size_t cap = MIN_CAP;
    while (cap < (len + 1) * 2)
        cap *= 2;
    return cap;
}

/* The splitmix64 finaliser: a cheap mix that spreads sequential ids over the whole table. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

uint64_t core_hash64(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* The string maps' own hash: eight bytes a step (session tokens are a few hundred bytes long
 * and looked up on every request), finished with mix64. Only used inside this process, unlike
 * core_hash64, whose values must stay the same from run to run. */
static uint64_t str_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, s, n);
    return mix64(h ^ tail);
}

void core_map_u64_init(struct core_map_u64 *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
    m->tombs = 0;
}

void core_map_u64_dispose(struct core_map_u64 *m)
{
    core_free(m->slots);
    core_map_u64_init(m);
}

/* Returns the slot holding key, or NULL. */
static struct core_map_u64_slot *u64_find(const struct core_map_u64 *m, uint64_t key)
{
    if (m->len == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        struct core_map_u64_slot *s = &m->slots[i];
        if (s->val == NULL)
            return NULL;
        if (s->val != TOMB && s->key == key)
            return s;
    }
}

static void u64_resize(struct core_map_u64 *m)
{
    struct core_map_u64_slot *old = m->slots;
    size_t old_cap = m->cap;
    size_t cap = resize_cap(m->len);

    m->slots = core_xcalloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->tombs = 0;
    for (size_t j = 0; j < old_cap; j++) {
        if (old[j].val == NULL || old[j].val == TOMB)
            continue;
        size_t i = mix64(old[j].key) & (cap - 1);
        while (m->slots[i].val != NULL)
            i = (i + 1) & (cap - 1);
        m->slots[i] = old[j];
    }
    core_free(old);
}

void core_map_u64_put(struct core_map_u64 *m, uint64_t key, void *val)
{
    assert(val != NULL && val != TOMB);
    struct core_map_u64_slot *s = u64_find(m, key);
    if (s != NULL) {
        s->val = val;
        return;
    }
    if (needs_resize(m->cap, m->len, m->tombs))
        u64_resize(m);
    size_t mask = m->cap - 1;
    size_t i = mix64(key) & mask;
    /* The key is absent, so the first empty or removed slot on its probe path is its place. */
    while (m->slots[i].val != NULL && m->slots[i].val != TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].val == TOMB)
        m->tombs--;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->len++;
}

void *core_map_u64_get(const struct core_map_u64 *m, uint64_t key)
{
    struct core_map_u64_slot *s = u64_find(m, key);
    return s != NULL ? s->val : NULL;
}

void *core_map_u64_del(struct core_map_u64 *m, uint64_t key)
{
    struct core_map_u64_slot *s = u64_find(m, key);
    if (s == NULL)
        return NULL;
    void *val = s->val;
    s->val = TOMB;
    m->len--;
    m->tombs++;
    return val;
}

size_t core_map_u64_len(const struct core_map_u64 *m)
{
    return m->len;
}

bool core_map_u64_next(const struct core_map_u64 *m, size_t *it, uint64_t *key, void **val)
{
    for (size_t i = *it; i < m->cap; i++) {
        const struct core_map_u64_slot *s = &m->slots[i];
        if (s->val == NULL || s->val == TOMB)
            continue;
        if (key != NULL)
            *key = s->key;
        if (val != NULL)
            *val = s->val;
        *it = i + 1;
        return true;
    }
    *it = m->cap;
    return false;
}

void core_map_str_init(struct core_map_str *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
    m->tombs = 0;
}

void core_map_str_dispose(struct core_map_str *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val != NULL && m->slots[i].val != TOMB)
            core_free(m->slots[i].key);
    }
    core_free(m->slots);
    core_map_str_init(m);
}

static struct core_map_str_slot *str_find(const struct core_map_str *m, const char *key,
                                          size_t klen, uint64_t hash)
{
    if (m->len == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        struct core_map_str_slot *s = &m->slots[i];
        if (s->val == NULL)
            return NULL;
        if (s->val != TOMB && s->hash == hash && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

static void str_resize(struct core_map_str *m)
{
    struct core_map_str_slot *old = m->slots;
    size_t old_cap = m->cap;
    size_t cap = resize_cap(m->len);

    m->slots = core_xcalloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->tombs = 0;
    for (size_t j = 0; j < old_cap; j++) {
        if (old[j].val == NULL || old[j].val == TOMB)
            continue;
        size_t i = old[j].hash & (cap - 1);
        while (m->slots[i].val != NULL)
            i = (i + 1) & (cap - 1);
        m->slots[i] = old[j];
    }
    core_free(old);
}

void core_map_str_put(struct core_map_str *m, const char *key, size_t klen, void *val)
{
    assert(val != NULL && val != TOMB);
    uint64_t hash = str_hash(key, klen);
    struct core_map_str_slot *s = str_find(m, key, klen, hash);
    if (s != NULL) {
        s->val = val;
        return;
    }
    if (needs_resize(m->cap, m->len, m->tombs))
        str_resize(m);
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    while (m->slots[i].val != NULL && m->slots[i].val != TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].val == TOMB)
        m->tombs--;
    s = &m->slots[i];
    s->key = core_xstrndup(key, klen);
    s->klen = klen;
    s->hash = hash;
    s->val = val;
    m->len++;
}

void *core_map_str_get(const struct core_map_str *m, const char *key, size_t klen)
{
    struct core_map_str_slot *s = str_find(m, key, klen, str_hash(key, klen));
    return s != NULL ? s->val : NULL;
}

void *core_map_str_del(struct core_map_str *m, const char *key, size_t klen)
{
    struct core_map_str_slot *s = str_find(m, key, klen, str_hash(key, klen));
    if (s == NULL)
        return NULL;
    void *val = s->val;
    core_free(s->key);
    s->key = NULL;
    s->val = TOMB;
    m->len--;
    m->tombs++;
    return val;
}

size_t core_map_str_len(const struct core_map_str *m)
{
    return m->len;
}

bool core_map_str_next(const struct core_map_str *m, size_t *it, const char **key, void **val)
{
    for (size_t i = *it; i < m->cap; i++) {
        const struct core_map_str_slot *s = &m->slots[i];
        if (s->val == NULL || s->val == TOMB)
            continue;
        if (key != NULL)
            *key = s->key;
        if (val != NULL)
            *val = s->val;
        *it = i + 1;
        return true;
    }
    *it = m->cap;
    return false;
}
