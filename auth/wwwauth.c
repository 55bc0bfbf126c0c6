/* WWW-Authenticate parsing (see wwwauth.h). The grammar is ambiguous at commas: one separates
 * two auth-params of a challenge or ends the challenge before the next scheme. A comma followed
 * by `token BWS "=" BWS (token / quoted-string)` continues the parameters; anything else starts
 * a new challenge, which is how RFC 9110 readers (curl, browsers) resolve it. */
#include "auth/wwwauth.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"

struct scan {
    const char *s;
    size_t n;
    size_t i;
};

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token68_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

static void skip_ows(struct scan *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t'))
        sc->i++;
}

static size_t token_len(const struct scan *sc, size_t at)
{
    size_t j = at;
    while (j < sc->n && is_tchar((unsigned char)sc->s[j]))
        j++;
    return j - at;
}

/* True when an auth-param (name BWS '=' BWS value-start) begins at `at`. */
static bool param_at(const struct scan *sc, size_t at)
{
    size_t j = at + token_len(sc, at);
    if (j == at)
        return false;
    while (j < sc->n && (sc->s[j] == ' ' || sc->s[j] == '\t'))
        j++;
    if (j >= sc->n || sc->s[j] != '=')
        return false;
    j++;
    while (j < sc->n && (sc->s[j] == ' ' || sc->s[j] == '\t'))
        j++;
    return j < sc->n && (sc->s[j] == '"' || is_tchar((unsigned char)sc->s[j]));
}

/* Reads a token or quoted-string value at sc->i into out (NUL-terminated). */
static int read_value(struct scan *sc, struct core_buf *out)
{
    if (sc->i < sc->n && sc->s[sc->i] == '"') {
        sc->i++;
        while (sc->i < sc->n) {
            unsigned char c = (unsigned char)sc->s[sc->i++];
            if (c == '"')
                return core_buf_append(out, "", 0);
            if (c == '\\') {
                if (sc->i >= sc->n)
                    return CORE_EPARSE;
                c = (unsigned char)sc->s[sc->i++];
            }
            /* qdtext and quoted-pair allow HTAB, SP, VCHAR and obs-text; no other controls. */
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return CORE_EPARSE;
            int rc = core_buf_append(out, (const char *)&c, 1);
            if (rc != 0)
                return rc;
        }
        return CORE_EPARSE; /* unterminated */
    }
    size_t len = token_len(sc, sc->i);
    if (len == 0)
        return CORE_EPARSE;
    int rc = core_buf_append(out, sc->s + sc->i, len);
    sc->i += len;
    return rc;
}

static char **field_for(struct auth_bearer *b, const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"resource_metadata", offsetof(struct auth_bearer, resource_metadata)},
        {"scope", offsetof(struct auth_bearer, scope)},
        {"error", offsetof(struct auth_bearer, error)},
        {"error_description", offsetof(struct auth_bearer, error_description)},
    };
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        if (strlen(fields[k].name) == len && strncasecmp(fields[k].name, name, len) == 0)
            return (char **)((char *)b + fields[k].off);
    }
    return NULL;
}

int auth_wwwauth_parse(const char *s, size_t n, struct auth_bearer *out)
{
    if (n > AUTH_WWWAUTH_MAX)
        return CORE_ETOOBIG;
    struct scan sc = {s, n, 0};
    struct auth_bearer b = {0};
    struct core_buf val;
    core_buf_init(&val, AUTH_WWWAUTH_MAX + 1);
    bool found = false;
    int rc = 0;
    for (;;) {
        /* Between challenges: blanks and empty list elements. */
        while (sc.i < sc.n && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t' || sc.s[sc.i] == ','))
            sc.i++;
        if (sc.i >= sc.n)
            break;
        size_t slen = token_len(&sc, sc.i);
        if (slen == 0) {
            rc = CORE_EPARSE;
            goto out;
        }
        bool bearer = !found && slen == 6 && strncasecmp(sc.s + sc.i, "Bearer", 6) == 0;
        sc.i += slen;
        if (sc.i < sc.n && sc.s[sc.i] != ' ' && sc.s[sc.i] != '\t' && sc.s[sc.i] != ',') {
            rc = CORE_EPARSE;
            goto out;
        }
        skip_ows(&sc);
        /* A token68 directly after the scheme (e.g. Basic's or Negotiate's). */
        if (sc.i < sc.n && !param_at(&sc, sc.i) && is_token68_char((unsigned char)sc.s[sc.i])) {
            while (sc.i < sc.n && is_token68_char((unsigned char)sc.s[sc.i]))
                sc.i++;
            while (sc.i < sc.n && sc.s[sc.i] == '=')
                sc.i++;
            skip_ows(&sc);
            if (sc.i < sc.n && sc.s[sc.i] != ',') {
                rc = CORE_EPARSE;
                goto out;
            }
        }
        /* auth-params until something that is not one. */
        for (;;) {
            size_t j = sc.i;
            while (j < sc.n && (sc.s[j] == ' ' || sc.s[j] == '\t' || sc.s[j] == ','))
                j++;
            if (j >= sc.n || !param_at(&sc, j)) {
                sc.i = j;
                break;
            }
            /* A parameter needs a comma before it unless it is the first after the scheme. */
            sc.i = j;
            size_t nlen = token_len(&sc, sc.i);
            const char *name = sc.s + sc.i;
            sc.i += nlen;
            skip_ows(&sc);
            sc.i++; /* '=' (param_at checked it) */
            skip_ows(&sc);
            core_buf_reset(&val);
            rc = read_value(&sc, &val);
            if (rc != 0)
                goto out;
            skip_ows(&sc);
            if (sc.i < sc.n && sc.s[sc.i] != ',') {
                rc = CORE_EPARSE;
                goto out;
            }
            if (bearer) {
                char **f = field_for(&b, name, nlen);
                if (f != NULL && *f == NULL)
                    *f = core_xstrndup(val.data != NULL ? val.data : "", val.len);
            }
        }
        if (bearer)
            found = true;
    }
    if (!found)
        rc = CORE_ENOTFOUND;
out:
    core_buf_dispose(&val);
    if (rc != 0) {
        auth_bearer_dispose(&b);
        return rc;
    }
    *out = b;
    return 0;
}

void auth_bearer_dispose(struct auth_bearer *b)
{
    core_free(b->resource_metadata);
    core_free(b->scope);
    core_free(b->error);
    core_free(b->error_description);
    memset(b, 0, sizeof *b);
}
