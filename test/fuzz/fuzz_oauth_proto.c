/* libFuzzer target: the OAuth client's parsers of peer input (auth/oauth_proto.c): protected
 * resource and authorization-server metadata, token and error responses, URLs, redirect
 * queries and scope sets. Each must fail cleanly or give values that hold together. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/oauth_proto.h"
#include "core/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char err[256];
    struct auth_prm p;
    if (auth_prm_parse(s, size, &p, err, sizeof err) == 0) {
        CHECK(p.resource != NULL && p.n_auth_servers >= 1);
        auth_prm_dispose(&p);
    }
    struct auth_asmeta m;
    if (auth_asmeta_parse(s, size, "https://as.example", &m, err, sizeof err) == 0) {
        CHECK(m.token_endpoint != NULL && auth_url_is_secure(m.token_endpoint));
        auth_asmeta_dispose(&m);
    }
    struct auth_tokens t;
    if (auth_tokens_parse(s, size, &t, err, sizeof err) == 0) {
        CHECK(t.access_token != NULL && strchr(t.access_token, ' ') == NULL);
        auth_tokens_dispose(&t);
    }
    char txt[128];
    auth_proto_error_text(s, size, txt, sizeof txt);
    for (const char *c = txt; *c; c++)
        CHECK(*c >= 0x20 && *c < 0x7f);
    /* The same bytes as a NUL-terminated URL, query and scope set. */
    char *z = core_xstrndup(s, size);
    struct auth_url u;
    if (auth_url_parse(z, &u) == 0) {
        CHECK(strncmp(u.origin, u.scheme, strlen(u.scheme)) == 0);
        CHECK(u.path[0] == '\0' || u.path[0] == '/');
        char *urls[4];
        size_t n = auth_proto_prm_urls(z, urls, 4);
        for (size_t i = 0; i < n; i++)
            core_free(urls[i]);
        n = auth_proto_as_urls(z, urls, 4);
        for (size_t i = 0; i < n; i++)
            core_free(urls[i]);
        auth_url_dispose(&u);
    }
    bool dup;
    char *v = auth_query_get(z, "code", &dup);
    core_free(v);
    char *un = auth_scope_union(z, "a b");
    if (un != NULL) {
        CHECK(auth_scope_covers(un, z));
        core_free(un);
    }
    core_free(z);
    return 0;
}
