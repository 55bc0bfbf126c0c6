/* The pure pieces of the OAuth client (see oauth_proto.h). */
#include "auth/oauth_proto.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/seal.h"
#include "core/alloc.h"

#define WK_PRM "/.well-known/oauth-protected-resource"
#define WK_AS "/.well-known/oauth-authorization-server"
#define WK_OIDC "/.well-known/openid-configuration"
#define URL_MAX 4096
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* For buffers without a limit, where appending cannot fail. */
#define UNLIMITED(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        (void)rc_;                                                                                 \
    } while (0)

/* ---- URLs ---- */

static char *lower_dup(const char *p, size_t n)
{
    char *s = core_xstrndup(p, n);
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
    }
    return s;
}

int auth_url_parse(const char *url, struct auth_url *out)
{
    if (url == NULL)
        return CORE_EINVAL;
    size_t len = strlen(url);
    if (len == 0 || len > URL_MAX)
        return CORE_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f)
            return CORE_EINVAL;
    }
    int def_port;
    size_t skip;
    if (strncasecmp(url, "https://", 8) == 0) {
        def_port = 443;
        skip = 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        def_port = 80;
        skip = 7;
    } else {
        return CORE_EINVAL;
    }
    const char *auth = url + skip;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || memchr(auth, '@', alen) != NULL)
        return CORE_EINVAL;
    const char *host = auth;
    size_t hlen;
    const char *port_s = NULL;
    size_t plen = 0;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL)
            return CORE_EINVAL;
        hlen = (size_t)(close - auth) + 1;
        if (hlen < 3)
            return CORE_EINVAL;
        if (hlen < alen) {
            if (auth[hlen] != ':')
                return CORE_EINVAL;
            port_s = auth + hlen + 1;
            plen = alen - hlen - 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - auth) : alen;
        if (colon != NULL) {
            port_s = colon + 1;
            plen = alen - hlen - 1;
        }
        if (hlen == 0)
            return CORE_EINVAL;
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return CORE_EINVAL;
        }
    }
    int port = def_port;
    if (port_s != NULL) {
        if (plen == 0 || plen > 5)
            return CORE_EINVAL;
        port = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port_s[i] < '0' || port_s[i] > '9')
                return CORE_EINVAL;
            port = port * 10 + (port_s[i] - '0');
        }
        if (port < 1 || port > 65535)
            return CORE_EINVAL;
    }
    const char *rest = auth + alen;
    size_t path_len = strcspn(rest, "?#");
    const char *q = rest[path_len] == '?' ? rest + path_len + 1 : NULL;
    struct auth_url u = {0};
    u.scheme = core_xstrdup(def_port == 443 ? "https" : "http");
    u.host = lower_dup(host, hlen);
    u.port = port;
    struct core_buf o;
    core_buf_init(&o, 0);
    if (port == def_port)
        UNLIMITED(core_buf_appendf(&o, "%s://%s", u.scheme, u.host)); /* no limit: cannot fail */
    else
        UNLIMITED(core_buf_appendf(&o, "%s://%s:%d", u.scheme, u.host, port));
    u.origin = core_buf_take(&o, NULL);
    u.path = core_xstrndup(rest, path_len);
    if (q != NULL)
        u.query = core_xstrndup(q, strcspn(q, "#"));
    *out = u;
    return 0;
}

void auth_url_dispose(struct auth_url *u)
{
    core_free(u->scheme);
    core_free(u->host);
    core_free(u->origin);
    core_free(u->path);
    core_free(u->query);
    memset(u, 0, sizeof *u);
}

bool auth_url_is_loopback(const struct auth_url *u)
{
    return strcmp(u->host, "localhost") == 0 || strcmp(u->host, "[::1]") == 0 ||
           strncmp(u->host, "127.", 4) == 0;
}

char *auth_url_canonical(const char *url)
{
    struct auth_url u;
    if (auth_url_parse(url, &u) != 0)
        return NULL;
    struct core_buf b;
    core_buf_init(&b, 0);
    UNLIMITED(core_buf_appendf(&b, "%s%s", u.origin, u.path)); /* no limit: cannot fail */
    if (u.query != NULL)
        UNLIMITED(core_buf_appendf(&b, "?%s", u.query));
    auth_url_dispose(&u);
    return core_buf_take(&b, NULL);
}

bool auth_url_is_secure(const char *url)
{
    struct auth_url u;
    if (auth_url_parse(url, &u) != 0)
        return false;
    bool ok = strcmp(u.scheme, "https") == 0 || auth_url_is_loopback(&u);
    auth_url_dispose(&u);
    return ok;
}

static char *join3(const char *a, const char *b, const char *c)
{
    struct core_buf s;
    core_buf_init(&s, 0);
    UNLIMITED(core_buf_appendf(&s, "%s%s%s", a, b, c)); /* no limit: cannot fail */
    return core_buf_take(&s, NULL);
}

/* The path without a trailing '/' ("" for "/"), a heap string. */
static char *trimmed_path(const char *path)
{
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    return core_xstrndup(path, n);
}

size_t auth_proto_prm_urls(const char *resource_url, char **urls, size_t cap)
{
    struct auth_url u;
    if (cap < 3 || auth_url_parse(resource_url, &u) != 0)
        return 0;
    size_t k = 0;
    char *p = trimmed_path(u.path);
    if (p[0] != '\0')
        urls[k++] = join3(u.origin, WK_PRM, p);
    urls[k++] = join3(u.origin, WK_PRM, "");
    core_free(p);
    auth_url_dispose(&u);
    return k;
}

size_t auth_proto_as_urls(const char *issuer, char **urls, size_t cap)
{
    struct auth_url u;
    if (cap < 3 || auth_url_parse(issuer, &u) != 0)
        return 0;
    size_t k = 0;
    char *p = trimmed_path(u.path);
    if (p[0] != '\0') {
        urls[k++] = join3(u.origin, WK_AS, p);
        urls[k++] = join3(u.origin, WK_OIDC, p);
        urls[k++] = join3(u.origin, p, WK_OIDC);
    } else {
        urls[k++] = join3(u.origin, WK_AS, "");
        urls[k++] = join3(u.origin, WK_OIDC, "");
    }
    core_free(p);
    auth_url_dispose(&u);
    return k;
}

/* ---- JSON documents ---- */

static cJSON *parse_object(const char *json, size_t n, char *err, size_t errlen, const char *what)
{
    if (n > AUTH_PROTO_BODY_MAX) {
        core_set_err(err, errlen, "%s is too large (%zu bytes)", what, n);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(json, n);
    if (j == NULL || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        core_set_err(err, errlen, "%s is not a JSON object", what);
        return NULL;
    }
    return j;
}

static char *opt_string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] != '\0' ? core_xstrdup(v->valuestring) : NULL;
}

/* A string array joined with ' ' (non-string or blank-containing items skipped); NULL when the
 * key is absent or not an array. */
static char *joined_array(const cJSON *o, const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a))
        return NULL;
    struct core_buf b;
    core_buf_init(&b, 0);
    UNLIMITED(core_buf_append(&b, "", 0));
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0' || strchr(it->valuestring, ' '))
            continue;
        UNLIMITED(core_buf_appendf(&b, "%s%s", b.len > 0 ? " " : "", it->valuestring));
    }
    return core_buf_take(&b, NULL);
}

static bool array_has(const cJSON *o, const char *key, const char *val)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, val) == 0)
            return true;
    }
    return false;
}

int auth_prm_parse(const char *json, size_t n, struct auth_prm *out, char *err, size_t errlen)
{
    cJSON *j = parse_object(json, n, err, errlen, "protected resource metadata");
    if (j == NULL)
        return CORE_EPARSE;
    struct auth_prm p = {0};
    int rc = CORE_EPARSE;
    p.resource = opt_string(j, "resource");
    if (p.resource == NULL) {
        core_set_err(err, errlen, "protected resource metadata has no resource");
        goto out;
    }
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(j, "authorization_servers");
    const cJSON *it;
    size_t count = (size_t)cJSON_GetArraySize(as);
    if (!cJSON_IsArray(as) || count == 0 || count > 16) {
        core_set_err(err, errlen, "protected resource metadata lists no authorization_servers");
        goto out;
    }
    p.auth_servers = core_xcalloc(count, sizeof *p.auth_servers);
    cJSON_ArrayForEach(it, as)
    {
        struct auth_url u;
        if (!cJSON_IsString(it) || auth_url_parse(it->valuestring, &u) != 0) {
            core_set_err(err, errlen,
                         "protected resource metadata: an authorization server "
                         "is not an http(s) URL");
            goto out;
        }
        auth_url_dispose(&u);
        p.auth_servers[p.n_auth_servers++] = core_xstrdup(it->valuestring);
    }
    p.scopes = joined_array(j, "scopes_supported");
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc != 0)
        auth_prm_dispose(&p);
    else
        *out = p;
    return rc;
}

void auth_prm_dispose(struct auth_prm *p)
{
    core_free(p->resource);
    for (size_t i = 0; i < p->n_auth_servers; i++)
        core_free(p->auth_servers[i]);
    core_free(p->auth_servers);
    core_free(p->scopes);
    memset(p, 0, sizeof *p);
}

bool auth_proto_resource_matches(const char *prm_resource, const char *server_url)
{
    struct auth_url r, s;
    if (auth_url_parse(prm_resource, &r) != 0)
        return false;
    if (auth_url_parse(server_url, &s) != 0) {
        auth_url_dispose(&r);
        return false;
    }
    bool ok = false;
    if (strcmp(r.origin, s.origin) == 0) {
        char *rp = trimmed_path(r.path);
        char *sp = trimmed_path(s.path);
        size_t rl = strlen(rp);
        ok = strncmp(rp, sp, rl) == 0 && (sp[rl] == '\0' || sp[rl] == '/');
        core_free(rp);
        core_free(sp);
    }
    auth_url_dispose(&r);
    auth_url_dispose(&s);
    return ok;
}

static bool issuer_equal(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    while (la > 0 && a[la - 1] == '/')
        la--;
    while (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

int auth_asmeta_parse(const char *json, size_t n, const char *expected_issuer,
                      struct auth_asmeta *out, char *err, size_t errlen)
{
    cJSON *j = parse_object(json, n, err, errlen, "authorization server metadata");
    if (j == NULL)
        return CORE_EPARSE;
    struct auth_asmeta m = {0};
    int rc = CORE_EPARSE;
    m.issuer = opt_string(j, "issuer");
    if (m.issuer == NULL) {
        core_set_err(err, errlen, "authorization server metadata has no issuer");
        goto out;
    }
    if (!issuer_equal(m.issuer, expected_issuer)) {
        core_set_err(err, errlen, "authorization server metadata names issuer %.200s, not %.200s",
                     m.issuer, expected_issuer);
        rc = CORE_EINVAL;
        goto out;
    }
    m.authorization_endpoint = opt_string(j, "authorization_endpoint");
    m.token_endpoint = opt_string(j, "token_endpoint");
    m.registration_endpoint = opt_string(j, "registration_endpoint");
    if (m.token_endpoint == NULL) {
        core_set_err(err, errlen, "authorization server metadata has no token_endpoint");
        goto out;
    }
    const char *eps[] = {m.authorization_endpoint, m.token_endpoint, m.registration_endpoint};
    for (size_t i = 0; i < 3; i++) {
        if (eps[i] != NULL && !auth_url_is_secure(eps[i])) {
            core_set_err(err, errlen, "authorization server endpoint %.200s is not https", eps[i]);
            rc = CORE_EINVAL;
            goto out;
        }
    }
    m.scopes = joined_array(j, "scopes_supported");
    m.pkce_s256 = array_has(j, "code_challenge_methods_supported", "S256");
    m.iss_param = cJSON_IsTrue(
        cJSON_GetObjectItemCaseSensitive(j, "authorization_response_iss_parameter_supported"));
    m.cimd =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "client_id_metadata_document_supported"));
    const char *team = "token_endpoint_auth_methods_supported";
    if (array_has(j, team, "none"))
        m.auth_methods |= AUTH_TEAM_NONE;
    if (array_has(j, team, "client_secret_basic"))
        m.auth_methods |= AUTH_TEAM_BASIC;
    if (array_has(j, team, "client_secret_post"))
        m.auth_methods |= AUTH_TEAM_POST;
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc != 0)
        auth_asmeta_dispose(&m);
    else
        *out = m;
    return rc;
}

void auth_asmeta_dispose(struct auth_asmeta *m)
{
    core_free(m->issuer);
    core_free(m->authorization_endpoint);
    core_free(m->token_endpoint);
    core_free(m->registration_endpoint);
    core_free(m->scopes);
    memset(m, 0, sizeof *m);
}

void auth_asmeta_default(const char *origin, struct auth_asmeta *out)
{
    memset(out, 0, sizeof *out);
    out->issuer = core_xstrdup(origin);
    out->authorization_endpoint = join3(origin, "/authorize", "");
    out->token_endpoint = join3(origin, "/token", "");
    out->registration_endpoint = join3(origin, "/register", "");
    out->pkce_s256 = true;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        core_free(s);
    }
}

int auth_tokens_parse(const char *json, size_t n, struct auth_tokens *out, char *err, size_t errlen)
{
    cJSON *j = parse_object(json, n, err, errlen, "token response");
    if (j == NULL)
        return CORE_EPARSE;
    struct auth_tokens t = {.expires_in = -1};
    int rc = CORE_EPARSE;
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(j, "token_type");
    if (tt != NULL && (!cJSON_IsString(tt) || strcasecmp(tt->valuestring, "bearer") != 0)) {
        core_set_err(err, errlen, "token response: token_type is not Bearer");
        goto out;
    }
    t.access_token = opt_string(j, "access_token");
    if (t.access_token == NULL || strlen(t.access_token) > 16384) {
        core_set_err(err, errlen, "token response has no usable access_token");
        goto out;
    }
    for (const char *p = t.access_token; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            core_set_err(err, errlen, "token response: access_token has invalid characters");
            goto out;
        }
    }
    t.refresh_token = opt_string(j, "refresh_token");
    t.scope = opt_string(j, "scope");
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    if (cJSON_IsNumber(ei) && ei->valuedouble >= 0 && ei->valuedouble < 1e10)
        t.expires_in = (int64_t)ei->valuedouble;
    else if (cJSON_IsString(ei)) /* some servers send a string */
        t.expires_in = strtoll(ei->valuestring, NULL, 10);
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc != 0)
        auth_tokens_dispose(&t);
    else
        *out = t;
    return rc;
}

void auth_tokens_dispose(struct auth_tokens *t)
{
    wipe_free(t->access_token);
    wipe_free(t->refresh_token);
    core_free(t->scope);
    memset(t, 0, sizeof *t);
}

static void sanitize_into(char *out, size_t cap, size_t *at, const char *s, size_t max)
{
    for (size_t i = 0; s[i] != '\0' && i < max && *at + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[(*at)++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[*at] = '\0';
}

void auth_proto_error_text(const char *json, size_t n, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    cJSON *j = n <= AUTH_PROTO_BODY_MAX ? cJSON_ParseWithLength(json, n) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "error_description");
    size_t at = 0;
    if (cJSON_IsString(e)) {
        sanitize_into(out, cap, &at, e->valuestring, 64);
        if (cJSON_IsString(d) && at + 3 < cap) {
            sanitize_into(out, cap, &at, ": ", 2);
            sanitize_into(out, cap, &at, d->valuestring, 200);
        }
    }
    cJSON_Delete(j);
}

bool auth_proto_error_is(const char *json, size_t n, const char *code)
{
    cJSON *j = n <= AUTH_PROTO_BODY_MAX ? cJSON_ParseWithLength(json, n) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    bool is = cJSON_IsString(e) && strcmp(e->valuestring, code) == 0;
    cJSON_Delete(j);
    return is;
}

/* ---- PKCE ---- */

int auth_pkce_challenge(const char *verifier, char challenge[AUTH_PKCE_LEN + 1])
{
    size_t n = strlen(verifier);
    if (n < 43 || n > 128)
        return CORE_EINVAL;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)verifier, n);
    sodium_bin2base64(challenge, AUTH_PKCE_LEN + 1, h, sizeof h, B64);
    return 0;
}

void auth_pkce_new(char verifier[AUTH_PKCE_LEN + 1], char challenge[AUTH_PKCE_LEN + 1])
{
    unsigned char r[32];
    auth_random(r, sizeof r);
    sodium_bin2base64(verifier, AUTH_PKCE_LEN + 1, r, sizeof r, B64);
    sodium_memzero(r, sizeof r);
    int rc = auth_pkce_challenge(verifier, challenge);
    (void)rc; /* a 43-character verifier is always accepted */
}

/* ---- forms and queries ---- */

int auth_pct_encode(struct core_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[3];
        size_t k = 0;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            enc[k++] = (char)*p;
        } else {
            enc[k++] = '%';
            enc[k++] = hex[*p >> 4];
            enc[k++] = hex[*p & 15];
        }
        int rc = core_buf_append(b, enc, k);
        if (rc != 0)
            return rc;
    }
    return core_buf_append(b, "", 0);
}

int auth_form_add(struct core_buf *b, const char *name, const char *value)
{
    int rc = b->len > 0 ? core_buf_append(b, "&", 1) : 0;
    if (rc == 0)
        rc = auth_pct_encode(b, name);
    if (rc == 0)
        rc = core_buf_append(b, "=", 1);
    if (rc == 0)
        rc = auth_pct_encode(b, value);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n bytes of a query component; NULL on a bad escape or an encoded NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = core_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[k++] = ' ';
        } else if (s[i] == '%') {
            int a = i + 1 < n ? hexval(s[i + 1]) : -1;
            int c = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (a < 0 || c < 0 || (a == 0 && c == 0)) {
                core_free(out);
                return NULL;
            }
            out[k++] = (char)(a * 16 + c);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

char *auth_query_get(const char *query, const char *name, bool *dup)
{
    if (dup != NULL)
        *dup = false;
    if (query == NULL)
        return NULL;
    size_t nl = strlen(name);
    char *found = NULL;
    const char *p = query;
    while (*p) {
        size_t plen = strcspn(p, "&");
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        if (klen == nl && memcmp(p, name, nl) == 0) {
            if (found != NULL) {
                if (dup != NULL)
                    *dup = true;
            } else {
                found = eq != NULL ? pct_decode(eq + 1, plen - klen - 1) : core_xstrdup("");
                if (found == NULL)
                    return NULL;
            }
        }
        p += plen;
        if (*p == '&')
            p++;
    }
    return found;
}

/* ---- scopes ---- */

static bool scope_in(const char *set, const char *s, size_t n)
{
    if (set == NULL)
        return false;
    const char *p = set;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l == n && l > 0 && memcmp(p, s, n) == 0)
            return true;
        p += l;
    }
    return false;
}

static void add_scopes(struct core_buf *b, const char *set)
{
    if (set == NULL)
        return;
    const char *p = set;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l > 0 && !scope_in(b->data, p, l)) {
            if (b->len > 0)
                UNLIMITED(core_buf_append(b, " ", 1)); /* no limit: cannot fail */
            UNLIMITED(core_buf_append(b, p, l));
        }
        p += l;
    }
}

char *auth_scope_union(const char *a, const char *b)
{
    struct core_buf s;
    core_buf_init(&s, 0);
    add_scopes(&s, a);
    add_scopes(&s, b);
    if (s.len == 0) {
        core_buf_dispose(&s);
        return NULL;
    }
    return core_buf_take(&s, NULL);
}

bool auth_scope_covers(const char *have, const char *wanted)
{
    if (wanted == NULL)
        return true;
    const char *p = wanted;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l > 0 && !scope_in(have, p, l))
            return false;
        p += l;
    }
    return true;
}
