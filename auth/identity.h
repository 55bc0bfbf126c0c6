/* Who is asking: the client identity ([client.NAME] in the config) behind a request, from its
 * bearer token, its Unix-socket peer and the name it gives. Every front (Streamable HTTP, legacy
 * SSE, the bridge) asks here; nothing here knows about sessions or upstreams. */
#ifndef GW_AUTH_IDENTITY_H
#define GW_AUTH_IDENTITY_H

#include <stdbool.h>
#include <sys/types.h>

struct core_config;
struct core_client_cfg;

/* What a front knows about who is asking. */
struct auth_peer {
    bool is_unix;              /* came in on the Unix socket */
    bool uid_known;            /* is_unix: the kernel told the peer's uid */
    uid_t uid;
    const char *authorization; /* the Authorization header, or NULL */
    const char *name;          /* the client name it gives (X-Agentgate-Client, bridge hello) */
};

/* Whether auth = none is in force: override (serve --auth, NULL when not given) wins over the
 * config's `auth`. */
bool auth_is_none(const struct core_config *cfg, const char *override);
/* The [client.NAME] section of cfg called name (borrowed from cfg), or NULL. */
const struct core_client_cfg *auth_client_named(const struct core_config *cfg, const char *name);
/* Identifies peer under cfg and the auth override (as for auth_is_none). Returns 0 with
 * *client (borrowed from cfg; NULL = anonymous), or an HTTP status (401, 403) with a static
 * one-line reason for the peer in *why. Socket peers must run as our uid; TCP needs a bearer
 * token unless auth = none; with [client.*] sections configured nobody is anonymous. A bearer
 * token is compared by SHA-256 against every client's token_sha256, in constant time each. */
int auth_identify(const struct core_config *cfg, const char *override,
                  const struct auth_peer *peer, const struct core_client_cfg **client,
                  const char **why);

#endif
