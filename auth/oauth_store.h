/* The OAuth credential store: tokens (per issuer and resource) and client registrations (per
 * issuer), in one file encrypted with libsodium's secretbox (XSalsa20-Poly1305).
 *
 * Files in the state directory (which must be private, see core_path_ensure_private_dir):
 * - oauth.key: 32 random bytes, mode 0600, made on first use;
 * - oauth.store: "AGOAUTH1" | nonce (24 bytes) | secretbox(JSON), mode 0600, replaced
 *   atomically on every change;
 * - oauth.lock: empty; flock(2) on it serialises read-modify-write between processes (the daemon
 *   refreshing, `agentgate login` storing).
 * A key or store file readable by others, a symlink, or a store that does not decrypt (tampered,
 * or the key replaced) is refused with a line naming the file and the fix. The JSON plaintext
 * only exists in memory and is wiped after use. The calls block on small local files (and on
 * the lock for as long as another process writes): call them outside hot paths. */
#ifndef GW_AUTH_OAUTH_STORE_H
#define GW_AUTH_OAUTH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct auth_store;

/* Opens (creating oauth.key when missing) the store in dir. Returns 0 or a negative code with a
 * line in err. */
GW_MUST_CHECK int auth_store_open(const char *dir, struct auth_store **out, char *err,
                                  size_t errlen);
void auth_store_free(struct auth_store *s);

/* One token set. Heap strings (wiped on dispose); NULL when absent. */
struct auth_store_tokens {
    char *issuer;
    char *resource;     /* the canonical server URL the tokens are for (lookup key) */
    char *server;       /* the server's config name (messages) */
    char *access_token; /* NULL in a tombstone: see reason */
    char *refresh_token;
    char *scope;          /* granted scopes */
    int64_t expires_at;   /* Unix seconds; 0 = unknown */
    char *token_endpoint; /* what a refresh needs, so it needs no discovery */
    char *resource_param; /* the `resource` indicator sent */
    char *client_id;
    char *client_secret;
    unsigned auth_method; /* AUTH_TEAM_* (oauth_proto.h) */
    char *reason;         /* why the user must log in again (a revoked refresh token) */
};
void auth_store_tokens_dispose(struct auth_store_tokens *t);

/* The token set for resource (newest when several issuers have one) into *out. Returns 0,
 * CORE_ENOTFOUND, or an error (unreadable or tampered store) with a line in err. */
GW_MUST_CHECK int auth_store_tokens_get(struct auth_store *s, const char *resource,
                                        struct auth_store_tokens *out, char *err, size_t errlen);
/* Adds or replaces (same issuer and resource) a token set, under the lock. Returns 0 or an
 * error with a line in err. */
GW_MUST_CHECK int auth_store_tokens_put(struct auth_store *s, const struct auth_store_tokens *t,
                                        char *err, size_t errlen);
/* Removes every token set for resource; returns how many (>= 0) or an error. */
GW_MUST_CHECK int auth_store_tokens_forget(struct auth_store *s, const char *resource, char *err,
                                           size_t errlen);

/* A client registration at an issuer (from Dynamic Client Registration). */
struct auth_store_client {
    char *issuer;
    char *client_id;
    char *client_secret;  /* NULL for a public client */
    char *redirect_uri;   /* the loopback URI it was registered with */
    unsigned auth_method; /* AUTH_TEAM_* */
};
void auth_store_client_dispose(struct auth_store_client *c);
GW_MUST_CHECK int auth_store_client_get(struct auth_store *s, const char *issuer,
                                        struct auth_store_client *out, char *err, size_t errlen);
GW_MUST_CHECK int auth_store_client_put(struct auth_store *s, const struct auth_store_client *c,
                                        char *err, size_t errlen);

/* Forgets the cached plaintext view, so the next get reads the file again. */
void auth_store_invalidate(struct auth_store *s);

#endif
