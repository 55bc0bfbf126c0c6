/* The OAuth 2.1 client for remote MCP servers (MCP authorization spec 2025-11-25 and
 * 2026-07-28): discovery from a 401/403 challenge (RFC 9728 protected resource metadata, RFC 8414
 * / OpenID authorization-server metadata), client registration (pre-registered, Client ID
 * Metadata Document, Dynamic Client Registration), the authorization-code grant with PKCE S256
 * and a loopback redirect, client_credentials, refresh before expiry with rotation (one refresh
 * at a time per token however many calls wait), step-up on 403 insufficient_scope, and the
 * encrypted credential store (auth/oauth_store.h).
 *
 * One object per process, on the loop thread. The daemon and `agentgate probe` ask it for an
 * Authorization value before a request to a remote server and again when that server answers
 * 401 or 403; `agentgate login` runs the interactive flow. Tokens are handed out only for the
 * server URL (resource) they were issued for, and never logged. */
#ifndef GW_AUTH_OAUTH_H
#define GW_AUTH_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"

struct tp_hclient;
struct auth_oauth;
struct auth_oauth_req;

/* A remote server's OAuth settings (from its [server.NAME] section). Borrowed for the call;
 * copied where kept. */
struct auth_oauth_server {
    const char *name;          /* the server's name, for messages ("run agentgate login NAME") */
    const char *url;           /* the MCP endpoint URL: the protected resource */
    const char *client_id;     /* pre-registered client_id; NULL = register (CIMD or DCR) */
    const char *client_secret; /* with client_id: a confidential client; NULL = public */
    /* An https URL serving this client's Client ID Metadata Document, used as client_id when
     * the authorization server advertises client_id_metadata_document_supported. The gateway
     * cannot host the document itself, so this is only used when configured. NULL = none. */
    const char *client_metadata_url;
    const char *scopes;      /* space-separated scopes to ask for; NULL = from the challenge,
                              * else the resource's scopes_supported, else none */
    bool client_credentials; /* oauth_grant = client_credentials: no user, the client's own
                              * token (needs client_id and client_secret) */
    const char *ca_file;     /* PEM CA bundle for this server and its authorization server;
                              * NULL = the system store */
};

struct core_server_cfg;
/* Fills *out from a [server.NAME] section with url and auth = oauth (pointers borrowed from
 * cfg: keep cfg alive while out is used). */
void auth_oauth_server_from_config(const struct core_server_cfg *cfg,
                                   struct auth_oauth_server *out);

/* What the server answered, when the call follows a challenge. */
struct auth_oauth_challenge {
    int status;                   /* 401 or 403; 0 = no challenge (use what is stored) */
    const char *www_authenticate; /* the WWW-Authenticate value(s), or NULL */
    /* The Authorization value the rejected request carried ("Bearer ..."), or NULL. When the
     * stored token is already a different one (another caller refreshed meanwhile), that one is
     * returned without asking the authorization server again. */
    const char *rejected;
};

/* Why no token could be given (the err of auth_oauth_token_cb, beside a one-line `why`). */
enum {
    AUTH_OAUTH_ENEEDLOGIN = -10101, /* no usable tokens: nobody logged in, the refresh token was
                                     * revoked or expired, or a new scope needs the user; `why`
                                     * says which and names `agentgate login NAME` */
    AUTH_OAUTH_EFAILED = -10102,    /* discovery, registration or a token request failed, or the
                                     * server's metadata is not acceptable (no PKCE S256, issuer
                                     * or resource mismatch ...); `why` says what */
    AUTH_OAUTH_ECANCELED = -10103,  /* auth_oauth_cancel, or the object is closing */
};

/* err 0: authorization is the header value to send ("Bearer ..."), borrowed for the call (wipe
 * any copy after use). Otherwise authorization is NULL and why is a one-line reason without
 * secrets, borrowed for the call. */
typedef void (*auth_oauth_token_cb)(void *ctx, int err, const char *authorization, const char *why);
/* The authorization URL the user must open (interactive login). Borrowed for the call. */
typedef void (*auth_oauth_url_cb)(void *ctx, const char *url);

/* Creates the client: hc (borrowed; must outlive the object) carries every request, state_dir
 * holds oauth.key and oauth.store (created 0600 on first use; the directory must be private,
 * see core_path_ensure_private_dir). Returns 0 or CORE_EINVAL (err gets a line). */
GW_MUST_CHECK int auth_oauth_new(uv_loop_t *loop, struct tp_hclient *hc, const char *state_dir,
                                 struct auth_oauth **out, char *err, size_t errlen);
/* Ends every pending request (their callbacks run with AUTH_OAUTH_ECANCELED, from the loop),
 * then frees the object once nothing of it is in flight; done (may be NULL) runs then. */
void auth_oauth_close(struct auth_oauth *o, void (*done)(void *ctx), void *ctx);

/* Headless logins: when set, a call to auth_oauth_get_token that needs the user runs the
 * authorization-code flow itself, fetching the authorization URL without a browser and taking
 * the code from its redirect (for authorization servers that approve at once, as the MCP
 * conformance suite's does; `agentgate probe`). Off by default: the daemon never logs in by
 * itself, it answers AUTH_OAUTH_ENEEDLOGIN. */
void auth_oauth_set_headless(struct auth_oauth *o, bool on);

/* Asks for the Authorization value to send to srv->url.
 * - ch NULL or status 0: the stored token when it is valid for more than 60 s; one that
 *   expires sooner is refreshed first (concurrent callers wait on the same refresh). Nothing
 *   stored: client_credentials when configured, else AUTH_OAUTH_ENEEDLOGIN.
 * - ch 401: the token was refused: refresh it (or re-run client_credentials); with nothing to
 *   refresh, discovery starts from the challenge and ends in AUTH_OAUTH_ENEEDLOGIN (or a
 *   headless login).
 * - ch 403 with error="insufficient_scope": step-up, a new authorization for the union of the
 *   granted and the challenged scopes (AUTH_OAUTH_ENEEDLOGIN unless headless), at most 3 times
 *   per server and 10 minutes.
 * cb runs exactly once, from the loop (never inside this call). *out (may be NULL) is the
 * request for auth_oauth_cancel, valid until cb runs. Returns 0, or CORE_EINVAL (srv->url is
 * not an http(s) URL) or CORE_ECLOSED (the object is closing), and then cb never runs. */
GW_MUST_CHECK int auth_oauth_get_token(struct auth_oauth *o, const struct auth_oauth_server *srv,
                                       const struct auth_oauth_challenge *ch,
                                       auth_oauth_token_cb cb, void *ctx,
                                       struct auth_oauth_req **out);

struct auth_oauth_login_opts {
    bool headless;            /* fetch the URL ourselves (see auth_oauth_set_headless) */
    uint64_t timeout_ms;      /* how long to wait for the redirect; 0 = 5 minutes */
    auth_oauth_url_cb on_url; /* gets the authorization URL (not called when headless) */
    void *url_ctx;
    /* A challenge to start discovery from (may be NULL: the flow first sends an unauthenticated
     * request to srv->url to get one, then falls back to the well-known URLs). */
    const struct auth_oauth_challenge *ch;
};

/* The interactive authorization-code flow for srv: discovery, registration, a redirect listener
 * on 127.0.0.1 (a random port; it accepts exactly one callback with the right state, and iss
 * when the server advertises RFC 9207), the URL handed to opts->on_url, the code exchanged with
 * PKCE and the resource indicator, the tokens stored. With srv->client_credentials it just runs
 * that grant. cb runs exactly once, from the loop, with the Authorization value or an error;
 * *out (may be NULL) is the request for auth_oauth_cancel. Returns 0, CORE_EINVAL or
 * CORE_ECLOSED, as auth_oauth_get_token. */
GW_MUST_CHECK int auth_oauth_login(struct auth_oauth *o, const struct auth_oauth_server *srv,
                                   const struct auth_oauth_login_opts *opts, auth_oauth_token_cb cb,
                                   void *ctx, struct auth_oauth_req **out);

/* Stops a pending request; its callback does not run. May be called from any callback. */
void auth_oauth_cancel(struct auth_oauth_req *r);

/* Forgets the tokens stored for server_url (every issuer), synchronously; client registrations
 * stay (they hold no user grant). Returns the number of token sets removed (>= 0) or an error
 * code with a line in err. */
GW_MUST_CHECK int auth_oauth_logout(struct auth_oauth *o, const char *server_url, char *err,
                                    size_t errlen);

/* Drops what this process cached from the store, so the next call reads it again (the daemon
 * calls this when `agentgate login` / `logout` report a change over the control socket; the
 * store file's change is also noticed by itself on the next call). */
void auth_oauth_reload(struct auth_oauth *o);

/* True when a token is stored for server_url (status, tests). */
bool auth_oauth_has_token(struct auth_oauth *o, const char *server_url);

#endif
