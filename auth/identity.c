/* Who is asking: the client identity behind a request (auth/identity.h). */
#include "auth/identity.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/config.h"
#include "core/hash.h"

bool auth_is_none(const struct core_config *cfg, const char *override)
{
    const char *a = override ? override : cfg->auth;
    return a != NULL && strcmp(a, "none") == 0;
}

const struct core_client_cfg *auth_client_named(const struct core_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_clients; i++)
        if (strcmp(cfg->clients[i].name, name) == 0)
            return &cfg->clients[i];
    return NULL;
}

/* The client whose token_sha256 is the SHA-256 of tok, or NULL. */
static const struct core_client_cfg *client_by_token(const struct core_config *cfg,
                                                     const char *tok, size_t n)
{
    char hex[65];
    core_sha256_hex(tok, n, hex);
    const struct core_client_cfg *found = NULL;
    /* Every client is compared, in constant time each, so timing says nothing about which. */
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct core_client_cfg *c = &cfg->clients[i];
        if (c->token_sha256[0] && sodium_memcmp(c->token_sha256, hex, 64) == 0)
            found = c;
    }
    sodium_memzero(hex, sizeof hex);
    return found;
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer_of(const char *h)
{
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

int auth_identify(const struct core_config *cfg, const char *override,
                  const struct auth_peer *peer, const struct core_client_cfg **client,
                  const char **why)
{
    *client = NULL;
    const char *tok = bearer_of(peer->authorization);
    if (peer->is_unix && !(peer->uid_known && peer->uid == geteuid())) {
        *why = "Forbidden: the socket peer runs as another user\n";
        return 403;
    }
    if (tok) {
        *client = client_by_token(cfg, tok, strlen(tok));
        if (*client == NULL) {
            *why = "Unauthorized: unknown bearer token\n";
            return 401;
        }
        return 0;
    }
    if (!peer->is_unix && !auth_is_none(cfg, override)) {
        *why = "Unauthorized: send Authorization: Bearer <token> (agentgate token create NAME)\n";
        return 401;
    }
    /* Without any [client.*] section, names are only labels: everyone is anonymous. */
    if (peer->name && peer->name[0] && cfg->n_clients > 0) {
        *client = auth_client_named(cfg, peer->name);
        if (*client == NULL) {
            *why = "Unauthorized: no such client in the config\n";
            return 401;
        }
        return 0;
    }
    /* With identities configured, nobody is anonymous: an unnamed peer would get no policy
     * at all, on the socket and (auth = none) on TCP alike. */
    if (cfg->n_clients > 0) {
        *why = "Unauthorized: name your client (X-Agentgate-Client header, or agentgate bridge "
               "--client NAME)\n";
        return 401;
    }
    return 0; /* anonymous */
}
