/* Parsing of WWW-Authenticate values (RFC 9110 §11.6.1) for the Bearer challenge of OAuth
 * protected resources (RFC 6750 §3, RFC 9728 §5.1): resource_metadata, scope, error and
 * error_description. Pure; peer input. */
#ifndef GW_AUTH_WWWAUTH_H
#define GW_AUTH_WWWAUTH_H

#include <stddef.h>

#include "core/err.h"

/* Longest value parsed; longer ones are refused with CORE_ETOOBIG before any allocation. */
#define AUTH_WWWAUTH_MAX 16384

/* The parameters of the first Bearer challenge. Each field is a heap string (quoted-string
 * escapes removed) or NULL when absent. */
struct auth_bearer {
    char *resource_metadata;
    char *scope;
    char *error;
    char *error_description;
};

/* Parses n bytes of a WWW-Authenticate value: one or several challenges separated by commas
 * (several header lines may be joined with ", "), each a scheme followed by a token68 or by
 * auth-params (token = token / quoted-string with backslash escapes; names and the scheme are
 * case-insensitive). Fills *out from the first Bearer challenge; a parameter given twice keeps
 * its first value. Returns 0; CORE_ENOTFOUND when no challenge is Bearer; CORE_EPARSE for a
 * malformed value (an unterminated quoted string, a missing value, a control character ...);
 * CORE_ETOOBIG past AUTH_WWWAUTH_MAX. *out is written only on success (dispose it then). */
GW_MUST_CHECK int auth_wwwauth_parse(const char *s, size_t n, struct auth_bearer *out);
/* Frees the strings of b and zeroes it. */
void auth_bearer_dispose(struct auth_bearer *b);

#endif
