/* Tests for the pure OAuth pieces (auth/oauth_proto.c): URLs and discovery URLs, metadata and
 * token responses, PKCE, forms and queries, scope sets. */
#include "auth/oauth_proto.h"

#include <check.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static void free_urls(char **u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        core_free(u[i]);
}

START_TEST(test_url_parse)
{
    struct auth_url u;
    ck_assert_int_eq(auth_url_parse("HTTPS://MCP.Example.com:443/a/b?x=1#frag", &u), 0);
    ck_assert_str_eq(u.scheme, "https");
    ck_assert_str_eq(u.host, "mcp.example.com");
    ck_assert_int_eq(u.port, 443);
    ck_assert_str_eq(u.origin, "https://mcp.example.com");
    ck_assert_str_eq(u.path, "/a/b");
    ck_assert_str_eq(u.query, "x=1");
    ck_assert(!auth_url_is_loopback(&u));
    auth_url_dispose(&u);
    ck_assert_int_eq(auth_url_parse("http://127.0.0.1:8080", &u), 0);
    ck_assert_str_eq(u.origin, "http://127.0.0.1:8080");
    ck_assert_str_eq(u.path, "");
    ck_assert(auth_url_is_loopback(&u));
    auth_url_dispose(&u);
    ck_assert_int_eq(auth_url_parse("http://[::1]:9/mcp", &u), 0);
    ck_assert_str_eq(u.host, "[::1]");
    ck_assert(auth_url_is_loopback(&u));
    auth_url_dispose(&u);
    const char *bad[] = {"ftp://x/",
                         "https://",
                         "https://user:pw@host/",
                         "https://h:0/",
                         "https://h:99999/",
                         "https://h:x/",
                         "https://h /",
                         "//h/p",
                         "https://[::1/",
                         "https://a\x01b/",
                         NULL};
    for (size_t i = 0; bad[i]; i++)
        ck_assert_msg(auth_url_parse(bad[i], &u) == CORE_EINVAL, "%s", bad[i]);
    char *c = auth_url_canonical("HTTPS://Mcp.Example.COM:443/mcp#x");
    ck_assert_str_eq(c, "https://mcp.example.com/mcp");
    core_free(c);
    ck_assert(auth_url_is_secure("https://as.example/token"));
    ck_assert(auth_url_is_secure("http://localhost:3000/token"));
    ck_assert(!auth_url_is_secure("http://as.example/token"));
}
END_TEST

START_TEST(test_discovery_urls)
{
    char *u[4];
    size_t n = auth_proto_prm_urls("https://ex.com/public/mcp", u, 4);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(u[0], "https://ex.com/.well-known/oauth-protected-resource/public/mcp");
    ck_assert_str_eq(u[1], "https://ex.com/.well-known/oauth-protected-resource");
    free_urls(u, n);
    n = auth_proto_prm_urls("https://ex.com", u, 4);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(u[0], "https://ex.com/.well-known/oauth-protected-resource");
    free_urls(u, n);
    /* Issuer with a path: the spec's three variants in order. */
    n = auth_proto_as_urls("https://auth.ex.com/tenant1/", u, 4);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(u[0], "https://auth.ex.com/.well-known/oauth-authorization-server/tenant1");
    ck_assert_str_eq(u[1], "https://auth.ex.com/.well-known/openid-configuration/tenant1");
    ck_assert_str_eq(u[2], "https://auth.ex.com/tenant1/.well-known/openid-configuration");
    free_urls(u, n);
    n = auth_proto_as_urls("https://auth.ex.com", u, 4);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(u[0], "https://auth.ex.com/.well-known/oauth-authorization-server");
    ck_assert_str_eq(u[1], "https://auth.ex.com/.well-known/openid-configuration");
    free_urls(u, n);
    ck_assert_uint_eq(auth_proto_as_urls("not a url", u, 4), 0);
}
END_TEST

START_TEST(test_prm)
{
    struct auth_prm p;
    char err[256];
    const char *j = "{\"resource\":\"https://ex.com/mcp\",\"authorization_servers\":"
                    "[\"https://auth.ex.com\"],\"scopes_supported\":[\"a\",\"b c\",7,\"d\"]}";
    ck_assert_int_eq(auth_prm_parse(j, strlen(j), &p, err, sizeof err), 0);
    ck_assert_str_eq(p.resource, "https://ex.com/mcp");
    ck_assert_uint_eq(p.n_auth_servers, 1);
    ck_assert_str_eq(p.auth_servers[0], "https://auth.ex.com");
    ck_assert_str_eq(p.scopes, "a d");
    auth_prm_dispose(&p);
    const char *bad[] = {
        "[]",
        "{\"resource\":\"x\"}",
        "{\"resource\":\"https://a\",\"authorization_servers\":[]}",
        "{\"resource\":\"https://a\",\"authorization_servers\":[\"javascript:1\"]}",
        "{",
        NULL};
    for (size_t i = 0; bad[i]; i++)
        ck_assert_int_eq(auth_prm_parse(bad[i], strlen(bad[i]), &p, err, sizeof err), CORE_EPARSE);
    ck_assert(auth_proto_resource_matches("https://ex.com/mcp", "https://ex.com/mcp"));
    ck_assert(auth_proto_resource_matches("https://ex.com/", "https://ex.com/mcp"));
    ck_assert(auth_proto_resource_matches("https://EX.com/mcp/", "https://ex.com/mcp"));
    ck_assert(!auth_proto_resource_matches("https://ex.com/mc", "https://ex.com/mcp"));
    ck_assert(!auth_proto_resource_matches("https://evil.com/mcp", "https://ex.com/mcp"));
    ck_assert(!auth_proto_resource_matches("https://ex.com/other", "https://ex.com/mcp"));
    ck_assert(!auth_proto_resource_matches("http://ex.com/mcp", "https://ex.com/mcp"));
}
END_TEST

START_TEST(test_asmeta)
{
    struct auth_asmeta m;
    char err[256];
    const char *j =
        "{\"issuer\":\"https://auth.ex.com/t1\",\"authorization_endpoint\":"
        "\"https://auth.ex.com/t1/authorize\",\"token_endpoint\":\"https://auth.ex.com/t1/token\","
        "\"registration_endpoint\":\"https://auth.ex.com/t1/register\","
        "\"code_challenge_methods_supported\":[\"plain\",\"S256\"],"
        "\"token_endpoint_auth_methods_supported\":[\"none\",\"client_secret_post\"],"
        "\"authorization_response_iss_parameter_supported\":true,"
        "\"client_id_metadata_document_supported\":true}";
    ck_assert_int_eq(auth_asmeta_parse(j, strlen(j), "https://auth.ex.com/t1", &m, err, sizeof err),
                     0);
    ck_assert(m.pkce_s256);
    ck_assert(m.iss_param);
    ck_assert(m.cimd);
    ck_assert_uint_eq(m.auth_methods, AUTH_TEAM_NONE | AUTH_TEAM_POST);
    ck_assert_str_eq(m.registration_endpoint, "https://auth.ex.com/t1/register");
    auth_asmeta_dispose(&m);
    /* Issuer mismatch (RFC 8414 §3.3). */
    ck_assert_int_eq(auth_asmeta_parse(j, strlen(j), "https://evil.com/t1", &m, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "issuer"));
    /* No S256: parsed, the flag says so (the caller refuses). */
    const char *nopkce = "{\"issuer\":\"https://a\",\"token_endpoint\":\"https://a/t\"}";
    ck_assert_int_eq(auth_asmeta_parse(nopkce, strlen(nopkce), "https://a/", &m, err, sizeof err),
                     0);
    ck_assert(!m.pkce_s256);
    ck_assert_uint_eq(m.auth_methods, 0);
    auth_asmeta_dispose(&m);
    /* Cleartext endpoint to a remote host. */
    const char *http = "{\"issuer\":\"https://a\",\"token_endpoint\":\"http://a/t\"}";
    ck_assert_int_eq(auth_asmeta_parse(http, strlen(http), "https://a", &m, err, sizeof err),
                     CORE_EINVAL);
    const char *notok = "{\"issuer\":\"https://a\"}";
    ck_assert_int_eq(auth_asmeta_parse(notok, strlen(notok), "https://a", &m, err, sizeof err),
                     CORE_EPARSE);
    auth_asmeta_default("http://127.0.0.1:5", &m);
    ck_assert_str_eq(m.token_endpoint, "http://127.0.0.1:5/token");
    ck_assert_str_eq(m.authorization_endpoint, "http://127.0.0.1:5/authorize");
    auth_asmeta_dispose(&m);
}
END_TEST

START_TEST(test_tokens)
{
    struct auth_tokens t;
    char err[256];
    const char *j = "{\"access_token\":\"at-1\",\"token_type\":\"bearer\",\"expires_in\":3600,"
                    "\"refresh_token\":\"rt-1\",\"scope\":\"a b\"}";
    ck_assert_int_eq(auth_tokens_parse(j, strlen(j), &t, err, sizeof err), 0);
    ck_assert_str_eq(t.access_token, "at-1");
    ck_assert_str_eq(t.refresh_token, "rt-1");
    ck_assert_str_eq(t.scope, "a b");
    ck_assert_int_eq(t.expires_in, 3600);
    auth_tokens_dispose(&t);
    const char *min = "{\"access_token\":\"x\"}";
    ck_assert_int_eq(auth_tokens_parse(min, strlen(min), &t, err, sizeof err), 0);
    ck_assert_int_eq(t.expires_in, -1);
    ck_assert_ptr_null(t.refresh_token);
    auth_tokens_dispose(&t);
    const char *bad[] = {"{\"access_token\":\"x\",\"token_type\":\"DPoP\"}",
                         "{}",
                         "{\"access_token\":\"a b\"}",
                         "{\"access_token\":\"a\\r\\nX: y\"}",
                         "null",
                         NULL};
    for (size_t i = 0; bad[i]; i++)
        ck_assert_int_eq(auth_tokens_parse(bad[i], strlen(bad[i]), &t, err, sizeof err),
                         CORE_EPARSE);
    char txt[128];
    const char *e = "{\"error\":\"invalid_grant\",\"error_description\":\"revoked\\n!\"}";
    auth_proto_error_text(e, strlen(e), txt, sizeof txt);
    ck_assert_str_eq(txt, "invalid_grant: revoked?!");
    ck_assert(auth_proto_error_is(e, strlen(e), "invalid_grant"));
    ck_assert(!auth_proto_error_is(e, strlen(e), "invalid_client"));
    auth_proto_error_text("<html>", 6, txt, sizeof txt);
    ck_assert_str_eq(txt, "");
}
END_TEST

START_TEST(test_pkce)
{
    /* RFC 7636 appendix B. */
    char ch[AUTH_PKCE_LEN + 1];
    ck_assert_int_eq(auth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch), 0);
    ck_assert_str_eq(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    ck_assert_int_eq(auth_pkce_challenge("short", ch), CORE_EINVAL);
    char v1[AUTH_PKCE_LEN + 1], c1[AUTH_PKCE_LEN + 1], v2[AUTH_PKCE_LEN + 1], c2[AUTH_PKCE_LEN + 1];
    auth_pkce_new(v1, c1);
    auth_pkce_new(v2, c2);
    ck_assert_uint_eq(strlen(v1), 43);
    ck_assert_str_ne(v1, v2);
    ck_assert_int_eq(auth_pkce_challenge(v1, ch), 0);
    ck_assert_str_eq(ch, c1);
    ck_assert_uint_eq(
        strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
}
END_TEST

START_TEST(test_form_query)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(auth_form_add(&b, "redirect_uri", "http://127.0.0.1:5/cb?x=1&y"), 0);
    ck_assert_int_eq(auth_form_add(&b, "scope", "a b~"), 0);
    ck_assert_str_eq(b.data,
                     "redirect_uri=http%3A%2F%2F127.0.0.1%3A5%2Fcb%3Fx%3D1%26y&scope=a%20b~");
    core_buf_dispose(&b);
    bool dup;
    char *v = auth_query_get("code=ab%2Fc+d&state=s1&iss=https%3A%2F%2Fa", "code", &dup);
    ck_assert_str_eq(v, "ab/c d");
    ck_assert(!dup);
    core_free(v);
    v = auth_query_get("state=1&state=2", "state", &dup);
    ck_assert_str_eq(v, "1");
    ck_assert(dup);
    core_free(v);
    ck_assert_ptr_null(auth_query_get("a=1", "code", NULL));
    ck_assert_ptr_null(auth_query_get("code=%zz", "code", NULL));
    ck_assert_ptr_null(auth_query_get("code=%00", "code", NULL));
    ck_assert_ptr_null(auth_query_get("code=%4", "code", NULL));
    v = auth_query_get("code", "code", NULL);
    ck_assert_str_eq(v, "");
    core_free(v);
}
END_TEST

START_TEST(test_scopes)
{
    char *u = auth_scope_union("a b", " b  c a ");
    ck_assert_str_eq(u, "a b c");
    core_free(u);
    u = auth_scope_union(NULL, "x");
    ck_assert_str_eq(u, "x");
    core_free(u);
    ck_assert_ptr_null(auth_scope_union(NULL, " "));
    ck_assert(auth_scope_covers("a b c", "c a"));
    ck_assert(!auth_scope_covers("a b", "a d"));
    ck_assert(auth_scope_covers(NULL, NULL));
    ck_assert(!auth_scope_covers(NULL, "a"));
    ck_assert(!auth_scope_covers("ab", "a"));
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("oauth_proto");
    TCase *tc = tcase_create("proto");
    tcase_add_test(tc, test_url_parse);
    tcase_add_test(tc, test_discovery_urls);
    tcase_add_test(tc, test_prm);
    tcase_add_test(tc, test_asmeta);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_pkce);
    tcase_add_test(tc, test_form_query);
    tcase_add_test(tc, test_scopes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    SRunner *sr = srunner_create(proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
