/* Name filters, server lists and token buckets for per-client policy. */
#include "policy/policy.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/config.h"

/* Length of the UTF-8 sequence starting at s (a lead byte and its continuation bytes); a stray
 * or truncated sequence counts byte by byte. s[0] is not NUL. */
static size_t char_len(const unsigned char *s)
{
    size_t n = 1;
    if (s[0] >= 0xc0) {
        while (n < 4 && (s[n] & 0xc0) == 0x80)
            n++;
    }
    return n;
}

bool pol_glob_match(const char *pattern, const char *s)
{
    const unsigned char *p = (const unsigned char *)pattern;
    const unsigned char *t = (const unsigned char *)s;
    /* The last star seen and the text position it is currently assumed to stop at. Only the
     * last star ever needs to be retried: whatever an earlier star would absorb extra, the
     * later one can absorb as well, so backtracking never goes further back. */
    const unsigned char *star_p = NULL;
    const unsigned char *star_t = NULL;

    while (*t != '\0') {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (*p == '\0')
                return true; /* a trailing star takes the rest */
            star_p = p;
            star_t = t;
            continue;
        }
        if (*p == '?') {
            p++;
            t += char_len(t);
            continue;
        }
        if (*p != '\0' && *p == *t) {
            p++;
            t++;
            continue;
        }
        if (star_p == NULL)
            return false;
        /* Let the last star take one more character and retry what follows it. */
        star_t += char_len(star_t);
        t = star_t;
        p = star_p;
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static bool any_match(char *const *globs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (globs[i] != NULL && pol_glob_match(globs[i], name))
            return true;
    }
    return false;
}

bool pol_client_has_server(const struct core_client_cfg *c, const char *server)
{
    if (c == NULL || c->servers == NULL)
        return true;
    for (size_t i = 0; i < c->n_servers; i++) {
        if (c->servers[i] != NULL && strcmp(c->servers[i], server) == 0)
            return true;
    }
    return false;
}

bool pol_client_allows(const struct core_client_cfg *c, const char *server, const char *name)
{
    if (c == NULL)
        return true;
    if (!pol_client_has_server(c, server))
        return false;
    if (c->n_allow > 0 && !any_match(c->allow, c->n_allow, name))
        return false;
    return !any_match(c->deny, c->n_deny, name);
}

/* Floating-point slack: a bucket that waited exactly the advertised retry time must not be
 * refused because rate * elapsed rounded to 0.9999999999. */
#define TOKEN_EPSILON 1e-9
/* Upper bound for retry_ms with absurdly small rates (about 31 years). */
#define MAX_RETRY_MS 1e12

bool pol_bucket_take(struct pol_bucket *b, double rate, double burst, uint64_t now_ms,
                     uint64_t *retry_ms)
{
    if (!(rate > 0))
        return true;
    if (!(burst >= 1))
        burst = 1;
    if (b->last_ms == 0) {
        b->tokens = burst;
        /* 0 marks a fresh bucket, so a clock reading of 0 is stored as 1. */
        b->last_ms = now_ms ? now_ms : 1;
    } else if (now_ms > b->last_ms) {
        b->tokens += rate * (double)(now_ms - b->last_ms) / 1000.0;
        b->last_ms = now_ms;
    }
    if (b->tokens > burst)
        b->tokens = burst;
    if (b->tokens >= 1 - TOKEN_EPSILON) {
        b->tokens -= 1;
        if (b->tokens < 0)
            b->tokens = 0;
        return true;
    }
    if (retry_ms != NULL) {
        /* The slack keeps 300.00000000000006 (from 0.6 / 2 * 1000) at 300. */
        double ms = ceil((1 - b->tokens) / rate * 1000.0 - 1e-6);
        if (!(ms >= 1))
            ms = 1;
        if (ms > MAX_RETRY_MS)
            ms = MAX_RETRY_MS;
        *retry_ms = (uint64_t)ms;
    }
    return false;
}
