/* The pure pieces of the OAuth client (no I/O): URLs and the discovery URLs derived from them,
 * protected resource metadata (RFC 9728), authorization-server metadata (RFC 8414 / OpenID
 * Connect Discovery), token and error responses (RFC 6749), PKCE S256 (RFC 7636), form and
 * query encoding, scope sets. Everything here parses peer input: bounded, never trusted. */
#ifndef GW_AUTH_OAUTH_PROTO_H
#define GW_AUTH_OAUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

/* Longest metadata or token response body accepted (they are small JSON documents). */
#define AUTH_PROTO_BODY_MAX (256 * 1024)

/* An absolute http(s) URL, split. Heap strings; dispose with auth_url_dispose. */
struct auth_url {
    char *scheme; /* "http" or "https" */
    char *host;   /* lowercase; an IPv6 literal keeps its brackets */
    int port;     /* the explicit port, else 80 / 443 */
    char *origin; /* scheme://host[:port], the port only when not the scheme's default */
    char *path;   /* "" or starting with '/' */
    char *query;  /* after '?', or NULL */
};

/* Parses an absolute http:// or https:// URL (the fragment is dropped). Refused with
 * CORE_EINVAL: another scheme, userinfo, an empty or malformed host or port, control characters
 * or blanks. *out is written only on success. */
GW_MUST_CHECK int auth_url_parse(const char *url, struct auth_url *out);
void auth_url_dispose(struct auth_url *u);
/* True when the host is 127.0.0.0/8, ::1 or localhost. */
bool auth_url_is_loopback(const struct auth_url *u);
/* The canonical URI of a resource (the MCP server): origin + path (+ '?' query), with scheme
 * and host lowercased, the default port and the fragment dropped. Heap string, or NULL when
 * url is not acceptable to auth_url_parse. */
char *auth_url_canonical(const char *url);
/* True when url is https, or http to a loopback host (what OAuth endpoints must be). */
bool auth_url_is_secure(const char *url);

/* Discovery URLs, in the order to try them; each a heap string stored in urls[0..ret), cap >=
 * 3. Protected resource metadata for a resource URL (RFC 9728 §3.1):
 * origin/.well-known/oauth-protected-resource/PATH (when there is a path), then
 * origin/.well-known/oauth-protected-resource. */
size_t auth_proto_prm_urls(const char *resource_url, char **urls, size_t cap);
/* Authorization-server metadata for an issuer (MCP 2025-11-25): with a path,
 * origin/.well-known/oauth-authorization-server/PATH, origin/.well-known/openid-configuration/PATH,
 * origin/PATH/.well-known/openid-configuration; without, origin/.well-known/oauth-authorization-
 * server, origin/.well-known/openid-configuration. A trailing '/' of the path is dropped. */
size_t auth_proto_as_urls(const char *issuer, char **urls, size_t cap);

/* Protected resource metadata. */
struct auth_prm {
    char *resource;
    char **auth_servers; /* issuer URLs, n_auth_servers >= 1 */
    size_t n_auth_servers;
    char *scopes; /* scopes_supported joined with ' ', or NULL when absent */
};
/* Parses and checks a PRM document: `resource` a string, `authorization_servers` a non-empty
 * array of http(s) URLs. Returns 0 or CORE_EPARSE with a line in err. */
GW_MUST_CHECK int auth_prm_parse(const char *json, size_t n, struct auth_prm *out, char *err,
                                 size_t errlen);
void auth_prm_dispose(struct auth_prm *p);
/* True when the PRM's resource identifies the server at server_url: the same origin, and its
 * path equal to the server's or a parent of it on a '/' boundary (RFC 9728 §3.3 with the MCP
 * SDKs' allowance for a resource covering several endpoints). */
bool auth_proto_resource_matches(const char *prm_resource, const char *server_url);

/* token_endpoint_auth_methods_supported, as bits. */
enum {
    AUTH_TEAM_NONE = 1,
    AUTH_TEAM_BASIC = 2, /* client_secret_basic */
    AUTH_TEAM_POST = 4,  /* client_secret_post */
};

/* Authorization-server metadata. */
struct auth_asmeta {
    char *issuer;
    char *authorization_endpoint; /* NULL when absent (client_credentials only) */
    char *token_endpoint;
    char *registration_endpoint; /* NULL = no DCR */
    char *scopes;                /* scopes_supported joined, or NULL */
    unsigned auth_methods;       /* AUTH_TEAM_* bits; 0 = not given (then basic, RFC 8414) */
    bool pkce_s256;              /* code_challenge_methods_supported contains S256 */
    bool iss_param;              /* authorization_response_iss_parameter_supported */
    bool cimd;                   /* client_id_metadata_document_supported */
};
/* Parses and checks AS metadata fetched for expected_issuer: `issuer` must equal it (RFC 8414
 * §3.3; a trailing '/' difference is tolerated), token_endpoint is required, and every
 * endpoint must be https (http only to a loopback host). PKCE is checked by the caller (a
 * client_credentials grant does not need it). Returns 0 or CORE_EPARSE / CORE_EINVAL with a
 * line in err. */
GW_MUST_CHECK int auth_asmeta_parse(const char *json, size_t n, const char *expected_issuer,
                                    struct auth_asmeta *out, char *err, size_t errlen);
void auth_asmeta_dispose(struct auth_asmeta *m);
/* The endpoints a 2025-03-26 server without metadata has: ORIGIN/authorize, /token, /register,
 * PKCE S256 assumed, issuer = ORIGIN. */
void auth_asmeta_default(const char *origin, struct auth_asmeta *out);

/* A successful token response. Strings are heap copies wiped on dispose. */
struct auth_tokens {
    char *access_token;
    char *refresh_token; /* NULL when none was issued */
    char *scope;         /* NULL when the server did not say (then: what was asked for) */
    int64_t expires_in;  /* seconds, -1 when not given */
};
/* Parses a token endpoint's 200 JSON: access_token required; token_type, when present, must be
 * Bearer (case-insensitive). Returns 0 or CORE_EPARSE with a line in err. */
GW_MUST_CHECK int auth_tokens_parse(const char *json, size_t n, struct auth_tokens *out, char *err,
                                    size_t errlen);
void auth_tokens_dispose(struct auth_tokens *t);
/* The `error` (and error_description) of an OAuth error response, as "invalid_grant: The
 * refresh token was revoked" (sanitised: printable ASCII, at most 200 bytes) into out; "" when
 * the body is not one. */
void auth_proto_error_text(const char *json, size_t n, char *out, size_t cap);
/* True when the error response's code is `code`. */
bool auth_proto_error_is(const char *json, size_t n, const char *code);

/* PKCE: a verifier of 43 base64url characters from 32 random bytes, and its S256 challenge. */
#define AUTH_PKCE_LEN 43
void auth_pkce_new(char verifier[AUTH_PKCE_LEN + 1], char challenge[AUTH_PKCE_LEN + 1]);
/* The S256 challenge BASE64URL(SHA256(verifier)) of a verifier (any length 43..128). Returns 0
 * or CORE_EINVAL. */
GW_MUST_CHECK int auth_pkce_challenge(const char *verifier, char challenge[AUTH_PKCE_LEN + 1]);

/* Appends "name=value" (with a leading '&' when b is not empty), both percent-encoded for
 * application/x-www-form-urlencoded and URL queries (unreserved characters kept). */
GW_MUST_CHECK int auth_form_add(struct core_buf *b, const char *name, const char *value);
/* Percent-encodes s into b (unreserved characters kept). */
GW_MUST_CHECK int auth_pct_encode(struct core_buf *b, const char *s);
/* The decoded value of parameter name in a query string (no '?'; '+' is a blank), a heap
 * string; NULL when absent or when it holds a NUL or a malformed escape. The first occurrence
 * wins; *dup (may be NULL) is set when the name occurs more than once. */
char *auth_query_get(const char *query, const char *name, bool *dup);

/* Scope sets as space-separated strings. The union of a and b (either may be NULL), each scope
 * once, a's order first; a heap string, or NULL when both are empty. */
char *auth_scope_union(const char *a, const char *b);
/* True when every scope of wanted is in have (NULL or "" wanted: true). */
bool auth_scope_covers(const char *have, const char *wanted);

#endif
