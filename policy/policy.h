/* Per-client policy: name filters (globs), the servers a client may use, and the token bucket
 * behind its tools/call rate limit. */
#ifndef GW_POLICY_POLICY_H
#define GW_POLICY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

struct core_client_cfg;

/* True when the whole of s matches pattern. '*' matches any run of bytes (also empty, also
 * across '/' and '_'), '?' matches exactly one character (one UTF-8 sequence), every other byte
 * matches itself; there is no escape character. Iterative: time is O(len(pattern) * len(s)) at
 * worst and linear for the usual patterns, whatever the number of stars. */
bool pol_glob_match(const char *pattern, const char *s);

/* May client c see `name` (an exposed tool or prompt name, or a resource URI or URI template) of
 * server `server`? c == NULL (anonymous) -> yes. Otherwise the server must be in c's servers list
 * (NULL = all servers), name must match one of c's allow globs (none = everything), and it must
 * match none of its deny globs (deny wins). */
bool pol_client_allows(const struct core_client_cfg *c, const char *server, const char *name);

/* May client c use server `server` at all? c == NULL or c->servers == NULL -> yes. */
bool pol_client_has_server(const struct core_client_cfg *c, const char *server);

/* A token bucket in the caller's storage; zero it (or set last_ms = 0) to start it full. */
struct pol_bucket {
    double tokens;    /* whole calls available now, 0 .. burst */
    uint64_t last_ms; /* now_ms of the last refill; 0 = fresh */
};

/* Token bucket with `rate` tokens per second and capacity `burst` (values below 1 count as 1).
 * Refills rate * elapsed up to burst, then returns true and takes one token, or returns false and
 * sets *retry_ms (when retry_ms is not NULL) to the ms until one token is available, at least 1.
 * A fresh bucket (last_ms == 0) starts full. rate <= 0 means unlimited: always true, b untouched.
 * now_ms is a monotonic clock in ms (e.g. uv_now); a clock that goes back refills nothing. */
bool pol_bucket_take(struct pol_bucket *b, double rate, double burst, uint64_t now_ms,
                     uint64_t *retry_ms);

#endif
