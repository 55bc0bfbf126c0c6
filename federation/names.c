/* Exposed names for federated tools and prompts. */
#include <stdio.h>
#include <string.h>

#include "core/map.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/upstream.h"

#define NAME_MAX_LEN 64

const char *const fed_versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
const size_t fed_n_versions = sizeof fed_versions / sizeof fed_versions[0];

bool fed_version_supported(const char *v, size_t n)
{
    for (size_t i = 0; i < fed_n_versions; i++)
        if (strlen(fed_versions[i]) == n && memcmp(fed_versions[i], v, n) == 0)
            return true;
    return false;
}

static bool name_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool fed_name_expose(const char *prefix, const char *name, char out[65])
{
    size_t pl = strlen(prefix), nl = strlen(name);
    size_t full = pl + (pl ? 2 : 0) + nl;
    bool changed = false;
    size_t o = 0;
    /* Sanitise into a scratch copy first; the hash is taken over the original so it is stable. */
    char tmp[NAME_MAX_LEN + 1];
    size_t keep = full > NAME_MAX_LEN ? NAME_MAX_LEN - 9 : full;
    for (size_t i = 0; i < keep; i++) {
        char c;
        if (i < pl)
            c = prefix[i];
        else if (pl && i < pl + 2)
            c = '_';
        else
            c = name[i - pl - (pl ? 2 : 0)];
        if (!name_char_ok(c)) {
            c = '_';
            changed = true;
        }
        tmp[o++] = c;
    }
    if (full > NAME_MAX_LEN || (full == 0)) {
        uint64_t h = core_hash64(name, nl) ^ (core_hash64(prefix, pl) * 31);
        o += (size_t)snprintf(tmp + o, sizeof tmp - o, "_%08x", (unsigned)(h & 0xffffffffu));
        changed = true;
    }
    tmp[o] = '\0';
    memcpy(out, tmp, o + 1);
    return changed;
}
