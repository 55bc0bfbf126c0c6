/* Tests for the encrypted OAuth credential store (auth/oauth_store.c): round trip, tamper
 * detection, permissions, no plaintext on disk, concurrent writers. */
#include "auth/oauth_store.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/oauth_proto.h"
#include "core/alloc.h"
#include "core/log.h"
#include "test/tmpdir.h"

static char dir[128];
static char err[512];

static void setup(void)
{
    tmpdir_make(dir, sizeof dir, "ostore");
}

static void teardown(void)
{
    tmpdir_remove(dir);
}

static void path_of(char *out, size_t cap, const char *leaf)
{
    snprintf(out, cap, "%s/%s", dir, leaf);
}

static struct auth_store *open_store(void)
{
    struct auth_store *s = NULL;
    int rc = auth_store_open(dir, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return s;
}

static struct auth_store_tokens sample(const char *issuer, const char *resource, const char *at)
{
    struct auth_store_tokens t = {0};
    t.issuer = (char *)issuer;
    t.resource = (char *)resource;
    t.server = (char *)"linear";
    t.access_token = (char *)at;
    t.refresh_token = (char *)"refresh-SECRET-42";
    t.scope = (char *)"read write";
    t.expires_at = 1900000000;
    t.token_endpoint = (char *)"https://auth.example/token";
    t.resource_param = (char *)resource;
    t.client_id = (char *)"client-1";
    t.client_secret = (char *)"client-SECRET-7";
    t.auth_method = AUTH_TEAM_BASIC;
    return t;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++) {
        if (memcmp(buf + i, needle, nl) == 0)
            return true;
    }
    return false;
}

START_TEST(test_roundtrip)
{
    long live = core_alloc_live();
    struct auth_store *s = open_store();
    struct auth_store_tokens got;
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err),
                     CORE_ENOTFOUND);
    struct auth_store_tokens t =
        sample("https://auth.example", "https://mcp.example/mcp", "access-SECRET-1");
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), 0);
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err), 0);
    ck_assert_str_eq(got.access_token, "access-SECRET-1");
    ck_assert_str_eq(got.refresh_token, "refresh-SECRET-42");
    ck_assert_str_eq(got.issuer, "https://auth.example");
    ck_assert_str_eq(got.client_secret, "client-SECRET-7");
    ck_assert_int_eq(got.expires_at, 1900000000);
    ck_assert_uint_eq(got.auth_method, AUTH_TEAM_BASIC);
    ck_assert_ptr_null(got.reason);
    auth_store_tokens_dispose(&got);
    /* Replacing keeps one entry per issuer and resource. */
    t.access_token = (char *)"access-SECRET-2";
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), 0);
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err), 0);
    ck_assert_str_eq(got.access_token, "access-SECRET-2");
    auth_store_tokens_dispose(&got);
    struct auth_store_client c = {(char *)"https://auth.example", (char *)"dcr-client",
                                  (char *)"dcr-SECRET", (char *)"http://127.0.0.1:4242/callback",
                                  AUTH_TEAM_POST};
    ck_assert_int_eq(auth_store_client_put(s, &c, err, sizeof err), 0);
    auth_store_free(s);

    /* Another process (a fresh open) reads the same. */
    s = open_store();
    struct auth_store_client gc;
    ck_assert_int_eq(auth_store_client_get(s, "https://auth.example", &gc, err, sizeof err), 0);
    ck_assert_str_eq(gc.client_id, "dcr-client");
    ck_assert_str_eq(gc.client_secret, "dcr-SECRET");
    ck_assert_str_eq(gc.redirect_uri, "http://127.0.0.1:4242/callback");
    ck_assert_uint_eq(gc.auth_method, AUTH_TEAM_POST);
    auth_store_client_dispose(&gc);
    ck_assert_int_eq(auth_store_client_get(s, "https://other", &gc, err, sizeof err),
                     CORE_ENOTFOUND);
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err), 0);
    ck_assert_str_eq(got.access_token, "access-SECRET-2");
    auth_store_tokens_dispose(&got);
    /* Forgetting removes the tokens, not the registration. */
    ck_assert_int_eq(auth_store_tokens_forget(s, "https://mcp.example/mcp", err, sizeof err), 1);
    ck_assert_int_eq(auth_store_tokens_forget(s, "https://mcp.example/mcp", err, sizeof err), 0);
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err),
                     CORE_ENOTFOUND);
    ck_assert_int_eq(auth_store_client_get(s, "https://auth.example", &gc, err, sizeof err), 0);
    auth_store_client_dispose(&gc);
    auth_store_free(s);
    ck_assert_int_eq(core_alloc_live(), live);
}
END_TEST

START_TEST(test_no_plaintext_and_modes)
{
    struct auth_store *s = open_store();
    struct auth_store_tokens t =
        sample("https://auth.example", "https://mcp.example/mcp", "access-SECRET-1");
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), 0);
    auth_store_free(s);
    const char *leaves[] = {"oauth.key", "oauth.store", "oauth.lock"};
    for (size_t i = 0; i < 3; i++) {
        char p[256];
        path_of(p, sizeof p, leaves[i]);
        struct stat st;
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
        ck_assert(!file_contains(p, "SECRET"));
        ck_assert(!file_contains(p, "mcp.example"));
    }
    char key[256];
    path_of(key, sizeof key, "oauth.key");
    struct stat st;
    ck_assert_int_eq(stat(key, &st), 0);
    ck_assert_int_eq(st.st_size, 32);
}
END_TEST

START_TEST(test_tamper_detected)
{
    struct auth_store *s = open_store();
    struct auth_store_tokens t = sample("https://auth.example", "https://mcp.example/mcp", "at");
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), 0);
    auth_store_free(s);
    char p[256];
    path_of(p, sizeof p, "oauth.store");
    int fd = open(p, O_RDWR);
    ck_assert_int_ge(fd, 0);
    off_t size = lseek(fd, 0, SEEK_END);
    /* Flip one byte of the ciphertext. */
    unsigned char c;
    ck_assert_int_eq(pread(fd, &c, 1, size - 5), 1);
    c ^= 0x01;
    ck_assert_int_eq(pwrite(fd, &c, 1, size - 5), 1);
    close(fd);
    s = open_store();
    struct auth_store_tokens got;
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "does not decrypt"));
    /* A write refuses to replace a store it cannot read. */
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), CORE_EINVAL);
    auth_store_free(s);
    /* Garbage is refused as not a store. */
    fd = open(p, O_WRONLY | O_TRUNC);
    ck_assert_int_eq(write(fd, "hello", 5), 5);
    close(fd);
    s = open_store();
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err),
                     CORE_EPARSE);
    auth_store_free(s);
}
END_TEST

START_TEST(test_permissions_refused)
{
    struct auth_store *s = open_store();
    struct auth_store_tokens t = sample("https://auth.example", "https://mcp.example/mcp", "at");
    ck_assert_int_eq(auth_store_tokens_put(s, &t, err, sizeof err), 0);
    auth_store_free(s);
    char p[256];
    path_of(p, sizeof p, "oauth.store");
    ck_assert_int_eq(chmod(p, 0644), 0);
    s = open_store();
    struct auth_store_tokens got;
    ck_assert_int_eq(auth_store_tokens_get(s, "https://mcp.example/mcp", &got, err, sizeof err),
                     CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
    auth_store_free(s);
    char k[256];
    path_of(k, sizeof k, "oauth.key");
    ck_assert_int_eq(chmod(k, 0640), 0);
    ck_assert_int_eq(auth_store_open(dir, &s, err, sizeof err), CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "oauth.key"));
    /* A symlinked key is refused, not followed. */
    ck_assert_int_eq(unlink(k), 0);
    ck_assert_int_eq(symlink("/etc/hostname", k), 0);
    ck_assert_int_eq(auth_store_open(dir, &s, err, sizeof err), -ELOOP);
    ck_assert_int_eq(unlink(k), 0);
}
END_TEST

/* Two processes writing different entries at once lose neither (the lock). */
START_TEST(test_concurrent_writers)
{
    struct auth_store *s = open_store();
    auth_store_free(s);
    pid_t pids[2];
    for (int w = 0; w < 2; w++) {
        pids[w] = fork();
        ck_assert_int_ge(pids[w], 0);
        if (pids[w] == 0) {
            struct auth_store *cs = NULL;
            if (auth_store_open(dir, &cs, err, sizeof err) != 0)
                _exit(1);
            for (int i = 0; i < 20; i++) {
                char res[64];
                snprintf(res, sizeof res, "https://mcp.example/w%d-%d", w, i);
                struct auth_store_tokens t = sample("https://auth.example", res, "at");
                if (auth_store_tokens_put(cs, &t, err, sizeof err) != 0)
                    _exit(2);
            }
            auth_store_free(cs);
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int st;
        ck_assert_int_eq(waitpid(pids[w], &st, 0), pids[w]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    s = open_store();
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < 20; i++) {
            char res[64];
            snprintf(res, sizeof res, "https://mcp.example/w%d-%d", w, i);
            struct auth_store_tokens got;
            ck_assert_msg(auth_store_tokens_get(s, res, &got, err, sizeof err) == 0, "%s", res);
            auth_store_tokens_dispose(&got);
        }
    }
    auth_store_free(s);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("oauth_store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_no_plaintext_and_modes);
    tcase_add_test(tc, test_tamper_detected);
    tcase_add_test(tc, test_permissions_refused);
    tcase_add_test(tc, test_concurrent_writers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    core_log_set_level(CORE_LOG_ERROR);
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
