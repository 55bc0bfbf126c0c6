/* Tests for the OAuth client engine (auth/oauth.c) against a small authorization server and
 * protected resource served here on 127.0.0.1 (transports/http): single-flight refresh with
 * rotation (and a shifted clock), a revoked refresh token, the "someone else renewed it" 401
 * shortcut, cancellation, callbacks never inside the call, and the headless authorization-code
 * flow with its RFC 9207 iss check. */
#include "auth/oauth.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/oauth_proto.h"
#include "auth/oauth_store.h"
#include "core/alloc.h"
#include "core/log.h"
#include "test/tmpdir.h"
#include "transports/hclient.h"
#include "transports/http.h"

/* Internal (GW_STATIC) in auth/oauth.c: seconds added to the wall clock. */
extern int64_t auth_oauth_clock_skew;

#define MAX_CALLS 16

struct call {
    bool done;
    int err;
    char authz[256];
    char why[320];
};

static struct {
    uv_loop_t loop;
    uv_timer_t watchdog;
    uv_timer_t delay;
    uv_timer_t ticker; /* wakes uv_run(UV_RUN_ONCE) every few ms, so run_until sees results */
    struct tp_http_server *srv;
    struct tp_hclient *hc;
    struct auth_oauth *o;
    int port;
    char base[64];
    char url[96];
    char dir[64];
    /* server behaviour and counters */
    int n_token;   /* token endpoint requests */
    int n_refresh; /* ... with grant_type=refresh_token */
    int n_code;    /* ... with grant_type=authorization_code */
    int n_authorize;
    bool revoke;          /* refresh answers 400 invalid_grant */
    bool iss_param;       /* the metadata advertises RFC 9207 */
    const char *iss_sent; /* iss put on the redirect (NULL: none; "" : the right one) */
    char last_form[1024];
    char last_scope[128];      /* scope of the last authorization request */
    char last_token_auth[256]; /* Authorization header of the last token request */
    char last_location[1024];  /* Location the authorize endpoint answered */
    struct tp_http_req *held;  /* a token request answered after a delay */
    int next_token;
    /* calls */
    struct call calls[MAX_CALLS];
    bool in_call; /* set while auth_oauth_* runs: a callback then is a bug */
    int closes;
} H;

/* ---- the server ---- */

static void answer_token(struct tp_http_req *req)
{
    char body[512];
    if (H.revoke && strstr(H.last_form, "grant_type=refresh_token") != NULL) {
        ck_assert_int_eq(tp_http_respond_simple(req, 400, "application/json",
                                                "{\"error\":\"invalid_grant\","
                                                "\"error_description\":\"revoked\"}"),
                         0);
        return;
    }
    H.next_token++;
    snprintf(body, sizeof body,
             "{\"access_token\":\"at%d\",\"token_type\":\"Bearer\",\"expires_in\":3600,"
             "\"refresh_token\":\"rt%d\",\"scope\":\"s1\"}",
             H.next_token, H.next_token);
    ck_assert_int_eq(tp_http_respond_simple(req, 200, "application/json", body), 0);
}

static void on_delay(uv_timer_t *t)
{
    (void)t;
    if (H.held != NULL) {
        struct tp_http_req *req = H.held;
        H.held = NULL;
        answer_token(req);
    }
}

static void on_request(void *ctx, struct tp_http_req *req)
{
    (void)ctx;
    const char *path = tp_http_req_path(req);
    char body[1024];
    if (strcmp(path, "/.well-known/oauth-protected-resource/mcp") == 0) {
        snprintf(body, sizeof body,
                 "{\"resource\":\"%s\",\"authorization_servers\":[\"%s\"],"
                 "\"scopes_supported\":[\"s1\"]}",
                 H.url, H.base);
        ck_assert_int_eq(tp_http_respond_simple(req, 200, "application/json", body), 0);
    } else if (strcmp(path, "/.well-known/oauth-authorization-server") == 0) {
        snprintf(body, sizeof body,
                 "{\"issuer\":\"%s\",\"authorization_endpoint\":\"%s/authorize\","
                 "\"token_endpoint\":\"%s/token\",\"code_challenge_methods_supported\":[\"S256\"],"
                 "\"authorization_response_iss_parameter_supported\":%s}",
                 H.base, H.base, H.base, H.iss_param ? "true" : "false");
        ck_assert_int_eq(tp_http_respond_simple(req, 200, "application/json", body), 0);
    } else if (strcmp(path, "/authorize") == 0) {
        H.n_authorize++;
        const char *q = tp_http_req_query(req);
        char *ru = auth_query_get(q, "redirect_uri", NULL);
        char *state = auth_query_get(q, "state", NULL);
        ck_assert_ptr_nonnull(ru);
        ck_assert_ptr_nonnull(state);
        char *sc = auth_query_get(q, "scope", NULL);
        snprintf(H.last_scope, sizeof H.last_scope, "%s", sc != NULL ? sc : "");
        core_free(sc);
        char *res = auth_query_get(q, "resource", NULL);
        ck_assert_str_eq(res, H.url);
        core_free(res);
        char loc[1024];
        int n = snprintf(loc, sizeof loc, "%s?code=c%d&state=%s", ru, H.n_authorize, state);
        if (H.iss_sent != NULL) {
            struct core_buf e;
            core_buf_init(&e, 0);
            ck_assert_int_eq(auth_pct_encode(&e, H.iss_sent[0] ? H.iss_sent : H.base), 0);
            snprintf(loc + n, sizeof loc - (size_t)n, "&iss=%s", e.data);
            core_buf_dispose(&e);
        }
        core_free(ru);
        core_free(state);
        snprintf(H.last_location, sizeof H.last_location, "%s", loc);
        struct tp_http_header h[] = {{"Location", loc}};
        ck_assert_int_eq(tp_http_respond(req, 302, h, 1, NULL, 0), 0);
    } else if (strcmp(path, "/token") == 0) {
        size_t len;
        const char *b = tp_http_req_body(req, &len);
        snprintf(H.last_form, sizeof H.last_form, "%.*s", (int)len, b);
        const char *ah = tp_http_req_header(req, "authorization");
        snprintf(H.last_token_auth, sizeof H.last_token_auth, "%s", ah != NULL ? ah : "");
        H.n_token++;
        if (strstr(H.last_form, "grant_type=refresh_token") != NULL)
            H.n_refresh++;
        if (strstr(H.last_form, "grant_type=authorization_code") != NULL)
            H.n_code++;
        /* Answer later, so that other callers arrive while the refresh is in flight. */
        ck_assert_ptr_null(H.held);
        H.held = req;
        uv_timer_start(&H.delay, on_delay, 50, 0);
    } else {
        ck_assert_int_eq(tp_http_respond_simple(req, 404, "text/plain", "no"), 0);
    }
}

/* ---- fixture ---- */

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    ck_abort_msg("the test did not finish in time");
}

static long live_at_start;

static void on_ticker(uv_timer_t *t)
{
    (void)t;
}

static void setup(void)
{
    memset(&H, 0, sizeof H);
    auth_oauth_clock_skew = 0;
    core_log_set_level(getenv("GW_TEST_DEBUG") != NULL ? CORE_LOG_DEBUG : CORE_LOG_ERROR);
    core_alloc_hook_cjson();
    live_at_start = core_alloc_live();
    tmpdir_make(H.dir, sizeof H.dir, "oauth");
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    uv_timer_init(&H.loop, &H.watchdog);
    uv_timer_start(&H.watchdog, on_watchdog, 20000, 0);
    uv_timer_init(&H.loop, &H.delay);
    uv_timer_init(&H.loop, &H.ticker);
    uv_timer_start(&H.ticker, on_ticker, 5, 5);
    struct tp_http_limits lim = {.idle_ms = 0};
    H.srv = tp_http_server_new(&H.loop, &lim, on_request, NULL);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    H.port = tp_http_server_port(H.srv);
    snprintf(H.base, sizeof H.base, "http://127.0.0.1:%d", H.port);
    snprintf(H.url, sizeof H.url, "%s/mcp", H.base);
    ck_assert_int_eq(tp_hclient_new(&H.loop, &H.hc), 0);
    char err[256];
    ck_assert_int_eq(auth_oauth_new(&H.loop, H.hc, H.dir, &H.o, err, sizeof err), 0);
}

static void on_closed(void *ctx)
{
    (void)ctx;
    H.closes--;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void teardown(void)
{
    H.closes = 3;
    auth_oauth_close(H.o, on_closed, NULL);
    tp_hclient_close(H.hc, on_closed, NULL);
    tp_http_server_close(H.srv, on_closed, NULL);
    uv_close((uv_handle_t *)&H.watchdog, on_handle_closed);
    uv_close((uv_handle_t *)&H.delay, on_handle_closed);
    uv_close((uv_handle_t *)&H.ticker, on_handle_closed);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(H.closes, 0);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    tmpdir_remove(H.dir);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* ---- helpers ---- */

static void on_token(void *ctx, int err, const char *authz, const char *why)
{
    struct call *c = ctx;
    ck_assert_msg(!H.in_call, "callback inside the call");
    ck_assert(!c->done);
    c->done = true;
    c->err = err;
    snprintf(c->authz, sizeof c->authz, "%s", authz != NULL ? authz : "");
    snprintf(c->why, sizeof c->why, "%s", why != NULL ? why : "");
}

static struct auth_oauth_server server(void)
{
    struct auth_oauth_server s = {.name = "t", .url = H.url, .client_id = "cid"};
    return s;
}

static struct auth_oauth_req *get(int i, const struct auth_oauth_challenge *ch)
{
    struct auth_oauth_server s = server();
    struct auth_oauth_req *r = NULL;
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_get_token(H.o, &s, ch, on_token, &H.calls[i], &r), 0);
    H.in_call = false;
    return r;
}

static void run_until(int n)
{
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && H.calls[i].done;
        if (all)
            return;
        uv_run(&H.loop, UV_RUN_ONCE);
    }
}

/* Stores a token set for the server directly. */
static void seed(const char *at, const char *rt, int64_t expires_in)
{
    struct auth_store *st;
    char err[256];
    ck_assert_int_eq(auth_store_open(H.dir, &st, err, sizeof err), 0);
    char tep[96];
    snprintf(tep, sizeof tep, "%s/token", H.base);
    struct auth_store_tokens t = {.issuer = H.base,
                                  .resource = H.url,
                                  .server = (char *)"t",
                                  .access_token = (char *)at,
                                  .refresh_token = (char *)rt,
                                  .scope = (char *)"s1",
                                  .expires_at = time(NULL) + expires_in,
                                  .token_endpoint = tep,
                                  .resource_param = H.url,
                                  .client_id = (char *)"cid",
                                  .auth_method = AUTH_TEAM_NONE};
    ck_assert_int_eq(auth_store_tokens_put(st, &t, err, sizeof err), 0);
    auth_store_free(st);
}

/* ---- tests ---- */

START_TEST(test_valid_token_no_network)
{
    seed("at-fresh", "rt0", 3600);
    get(0, NULL);
    ck_assert(!H.calls[0].done); /* never inside the call */
    run_until(1);
    ck_assert_int_eq(H.calls[0].err, 0);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at-fresh");
    ck_assert_int_eq(H.n_token, 0);
    ck_assert(auth_oauth_has_token(H.o, H.url));
}
END_TEST

START_TEST(test_single_flight_refresh)
{
    seed("at-old", "rt0", 30); /* inside the 60 s margin */
    for (int i = 0; i < 5; i++)
        get(i, NULL);
    run_until(5);
    ck_assert_int_eq(H.n_refresh, 1);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(H.calls[i].err, 0);
        ck_assert_str_eq(H.calls[i].authz, "Bearer at1");
    }
    ck_assert_ptr_nonnull(strstr(H.last_form, "refresh_token=rt0"));
    ck_assert_ptr_nonnull(strstr(H.last_form, "client_id=cid"));
    ck_assert_ptr_nonnull(strstr(H.last_form, "resource=http%3A%2F%2F127.0.0.1"));
    /* Fresh now: no refresh. */
    memset(H.calls, 0, sizeof H.calls);
    get(0, NULL);
    run_until(1);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at1");
    ck_assert_int_eq(H.n_refresh, 1);
    /* An hour later (the fake clock), the rotated refresh token is used, once. */
    auth_oauth_clock_skew = 3600;
    memset(H.calls, 0, sizeof H.calls);
    for (int i = 0; i < 3; i++)
        get(i, NULL);
    run_until(3);
    ck_assert_int_eq(H.n_refresh, 2);
    ck_assert_ptr_nonnull(strstr(H.last_form, "refresh_token=rt1"));
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(H.calls[i].authz, "Bearer at2");
}
END_TEST

START_TEST(test_revoked_refresh)
{
    seed("at-old", "rt0", 10);
    H.revoke = true;
    get(0, NULL);
    get(1, NULL);
    run_until(2);
    ck_assert_int_eq(H.n_refresh, 1);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(H.calls[i].err, AUTH_OAUTH_ENEEDLOGIN);
        ck_assert_ptr_nonnull(strstr(H.calls[i].why, "invalid_grant: revoked"));
        ck_assert_ptr_nonnull(strstr(H.calls[i].why, "agentgate login t"));
    }
    /* Kept: the next call says so without the network. */
    memset(H.calls, 0, sizeof H.calls);
    get(0, NULL);
    run_until(1);
    ck_assert_int_eq(H.calls[0].err, AUTH_OAUTH_ENEEDLOGIN);
    ck_assert_ptr_nonnull(strstr(H.calls[0].why, "invalid_grant"));
    ck_assert_int_eq(H.n_refresh, 1);
    ck_assert(!auth_oauth_has_token(H.o, H.url));
}
END_TEST

START_TEST(test_401_shortcut_and_refresh)
{
    seed("at-new", "rt0", 3600);
    /* The server refused an older token: the stored one is newer, use it. */
    struct auth_oauth_challenge ch = {401, "Bearer error=\"invalid_token\"", "Bearer at-gone"};
    get(0, &ch);
    run_until(1);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at-new");
    ck_assert_int_eq(H.n_token, 0);
    /* It refused the stored one: refresh. */
    struct auth_oauth_challenge ch2 = {401, "Bearer error=\"invalid_token\"", "Bearer at-new"};
    get(1, &ch2);
    run_until(2);
    ck_assert_str_eq(H.calls[1].authz, "Bearer at1");
    ck_assert_int_eq(H.n_refresh, 1);
    /* 403 insufficient_scope without a user: needs login, naming the scope. */
    struct auth_oauth_challenge ch3 = {403, "Bearer error=\"insufficient_scope\", scope=\"s2\"",
                                       "Bearer at1"};
    get(2, &ch3);
    run_until(3);
    ck_assert_int_eq(H.calls[2].err, AUTH_OAUTH_ENEEDLOGIN);
    ck_assert_ptr_nonnull(strstr(H.calls[2].why, "s2"));
}
END_TEST

START_TEST(test_not_logged_in_and_cancel)
{
    get(0, NULL);
    run_until(1);
    ck_assert_int_eq(H.calls[0].err, AUTH_OAUTH_ENEEDLOGIN);
    ck_assert_str_eq(H.calls[0].why, "not logged in: run `agentgate login t`");
    /* A canceled waiter is not called back; the others are. */
    seed("at-old", "rt0", 10);
    memset(H.calls, 0, sizeof H.calls);
    get(0, NULL);
    struct auth_oauth_req *r1 = get(1, NULL);
    get(2, NULL);
    auth_oauth_cancel(r1);
    H.calls[1].done = true; /* run_until must not wait for it */
    run_until(3);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at1");
    ck_assert_str_eq(H.calls[2].authz, "Bearer at1");
    ck_assert_str_eq(H.calls[1].authz, "");
    ck_assert_int_eq(H.n_refresh, 1);
    /* Canceled after it finished, before the callback: not called either. */
    memset(H.calls, 0, sizeof H.calls);
    struct auth_oauth_req *r = get(0, NULL);
    auth_oauth_cancel(r);
    for (int i = 0; i < 5; i++)
        uv_run(&H.loop, UV_RUN_NOWAIT);
    ck_assert(!H.calls[0].done);
}
END_TEST

static void login_headless(int i)
{
    struct auth_oauth_server s = server();
    struct auth_oauth_login_opts lo = {.headless = true, .timeout_ms = 10000};
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_login(H.o, &s, &lo, on_token, &H.calls[i], NULL), 0);
    H.in_call = false;
    run_until(i + 1);
}

START_TEST(test_headless_login_iss)
{
    /* Advertised, sent and right. */
    H.iss_param = true;
    H.iss_sent = "";
    login_headless(0);
    ck_assert_msg(H.calls[0].err == 0, "%s", H.calls[0].why);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at1");
    ck_assert_int_eq(H.n_code, 1);
    ck_assert_ptr_nonnull(strstr(H.last_form, "code_verifier="));
    ck_assert_ptr_nonnull(strstr(H.last_form, "code=c1"));
    ck_assert_ptr_nonnull(strstr(H.last_form, "redirect_uri=http%3A%2F%2F127.0.0.1%3A"));
    /* Advertised but missing: refused, no code exchange. */
    H.iss_sent = NULL;
    login_headless(1);
    ck_assert_int_eq(H.calls[1].err, AUTH_OAUTH_EFAILED);
    ck_assert_ptr_nonnull(strstr(H.calls[1].why, "RFC 9207"));
    ck_assert_int_eq(H.n_code, 1);
    /* Sent by another issuer: refused even when not advertised. */
    H.iss_param = false;
    H.iss_sent = "https://evil.example";
    login_headless(2);
    ck_assert_int_eq(H.calls[2].err, AUTH_OAUTH_EFAILED);
    ck_assert_ptr_nonnull(strstr(H.calls[2].why, "evil.example"));
    ck_assert_int_eq(H.n_code, 1);
    /* Not advertised, not sent: accepted. */
    H.iss_sent = NULL;
    login_headless(3);
    ck_assert_int_eq(H.calls[3].err, 0);
    ck_assert_int_eq(H.n_code, 2);
}
END_TEST

START_TEST(test_stepup_headless_and_limit)
{
    seed("at-old", "rt0", 3600);
    auth_oauth_set_headless(H.o, true);
    struct auth_oauth_challenge ch = {403, "Bearer error=\"insufficient_scope\", scope=\"s2\"",
                                      "Bearer at-old"};
    for (int i = 0; i < 3; i++) {
        get(i, &ch);
        run_until(i + 1);
        ck_assert_msg(H.calls[i].err == 0, "%s", H.calls[i].why);
        /* The union of what was granted and what the challenge asks for. */
        ck_assert_str_eq(H.last_scope, "s2 s1");
    }
    ck_assert_int_eq(H.n_authorize, 3);
    get(3, &ch);
    run_until(4);
    ck_assert_int_eq(H.calls[3].err, AUTH_OAUTH_EFAILED);
    ck_assert_ptr_nonnull(strstr(H.calls[3].why, "step-ups"));
    ck_assert_int_eq(H.n_authorize, 3);
    /* A 403 for another reason is no step-up. */
    struct auth_oauth_challenge other = {403, "Bearer error=\"invalid_token\"", NULL};
    get(4, &other);
    run_until(5);
    ck_assert_int_eq(H.calls[4].err, AUTH_OAUTH_EFAILED);
    ck_assert_int_eq(H.n_authorize, 3);
}
END_TEST

START_TEST(test_client_credentials)
{
    struct auth_oauth_server s = {.name = "t",
                                  .url = H.url,
                                  .client_id = "svc",
                                  .client_secret = "pa:ss",
                                  .client_credentials = true,
                                  .scopes = "s9"};
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_get_token(H.o, &s, NULL, on_token, &H.calls[0], NULL), 0);
    H.in_call = false;
    run_until(1);
    ck_assert_msg(H.calls[0].err == 0, "%s", H.calls[0].why);
    ck_assert_str_eq(H.calls[0].authz, "Bearer at1");
    ck_assert_ptr_nonnull(strstr(H.last_form, "grant_type=client_credentials"));
    ck_assert_ptr_nonnull(strstr(H.last_form, "scope=s9"));
    ck_assert_ptr_null(strstr(H.last_form, "client_secret"));
    /* client_secret_basic (the default when the server lists no method): "svc:pa%3Ass". */
    ck_assert_str_eq(H.last_token_auth, "Basic c3ZjOnBhJTNBc3M=");
    ck_assert_int_eq(H.n_authorize, 0);
    /* Expired (the fake clock): renewed (with the refresh token this server also issued). */
    auth_oauth_clock_skew = 7200;
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_get_token(H.o, &s, NULL, on_token, &H.calls[1], NULL), 0);
    H.in_call = false;
    run_until(2);
    ck_assert_str_eq(H.calls[1].authz, "Bearer at2");
    ck_assert_int_eq(H.n_token, 2);
}
END_TEST

/* ---- the loopback redirect listener ---- */

struct fetch {
    bool done;
    int status;
    int err;
};

static void f_headers(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h)
{
    (void)r, (void)h;
    ((struct fetch *)ctx)->status = status;
}

static int f_data(void *ctx, struct tp_hreq *r, const char *p, size_t n)
{
    (void)ctx, (void)r, (void)p, (void)n;
    return 0;
}

static void f_done(void *ctx, struct tp_hreq *r, int err, const char *why)
{
    (void)r, (void)why;
    struct fetch *f = ctx;
    f->err = err;
    f->done = true;
}

static struct fetch fetch_url(const char *url)
{
    struct fetch f = {0};
    struct tp_hreq_opts o = {.url = url, .deadline_ms = 5000};
    static const struct tp_hreq_cbs cbs = {f_headers, f_data, NULL, f_done};
    struct tp_hreq *r;
    if (tp_hreq_start(H.hc, &o, &cbs, &f, &r) != 0) {
        f.err = -1;
        return f;
    }
    while (!f.done)
        uv_run(&H.loop, UV_RUN_ONCE);
    return f;
}

static char auth_url[2048];

static void on_url(void *ctx, const char *url)
{
    (void)ctx;
    ck_assert_msg(!H.in_call, "on_url inside the call");
    snprintf(auth_url, sizeof auth_url, "%s", url);
}

START_TEST(test_redirect_listener)
{
    struct auth_oauth_server s = server();
    struct auth_oauth_login_opts lo = {.timeout_ms = 10000, .on_url = on_url};
    auth_url[0] = '\0';
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_login(H.o, &s, &lo, on_token, &H.calls[0], NULL), 0);
    H.in_call = false;
    while (auth_url[0] == '\0')
        uv_run(&H.loop, UV_RUN_ONCE);
    ck_assert_ptr_nonnull(strstr(auth_url, "code_challenge_method=S256"));
    ck_assert_ptr_nonnull(strstr(auth_url, "response_type=code"));
    /* "The browser": the authorization endpoint redirects back. */
    struct fetch a = fetch_url(auth_url);
    ck_assert_int_eq(a.status, 302);
    char *q = strchr(H.last_location, '?');
    ck_assert_ptr_nonnull(q);
    char base[256];
    snprintf(base, sizeof base, "%.*s", (int)(q - H.last_location), H.last_location);
    ck_assert_ptr_nonnull(strstr(base, "http://127.0.0.1:"));
    /* A forged callback (wrong state) is refused and the listener keeps waiting. */
    char bad[512];
    snprintf(bad, sizeof bad, "%s?code=evil&state=0123456789abcdef0123456789abcdef", base);
    ck_assert_int_eq(fetch_url(bad).status, 400);
    char other[300];
    snprintf(other, sizeof other, "%.*s/favicon.ico", (int)(strstr(base, "/callback") - base),
             base);
    ck_assert_int_eq(fetch_url(other).status, 404);
    ck_assert(!H.calls[0].done);
    ck_assert_int_eq(H.n_code, 0);
    /* The real one. */
    ck_assert_int_eq(fetch_url(H.last_location).status, 200);
    run_until(1);
    ck_assert_msg(H.calls[0].err == 0, "%s", H.calls[0].why);
    ck_assert_int_eq(H.n_code, 1);
    ck_assert_ptr_nonnull(strstr(H.last_form, "code=c1"));
    /* Exactly one: nobody listens any more. */
    struct fetch again = fetch_url(H.last_location);
    ck_assert_int_ne(again.err, 0);
    ck_assert_int_eq(again.status, 0);
}
END_TEST

START_TEST(test_login_timeout_and_close)
{
    struct auth_oauth_server s = server();
    struct auth_oauth_login_opts lo = {.timeout_ms = 100, .on_url = on_url};
    auth_url[0] = '\0';
    ck_assert_int_eq(auth_oauth_login(H.o, &s, &lo, on_token, &H.calls[0], NULL), 0);
    run_until(1);
    ck_assert_int_eq(H.calls[0].err, AUTH_OAUTH_EFAILED);
    ck_assert_ptr_nonnull(strstr(H.calls[0].why, "no login within"));
    /* A login still waiting when the object closes ends with ECANCELED (teardown closes). */
    lo.timeout_ms = 10000;
    auth_url[0] = '\0';
    ck_assert_int_eq(auth_oauth_login(H.o, &s, &lo, on_token, &H.calls[1], NULL), 0);
    while (auth_url[0] == '\0')
        uv_run(&H.loop, UV_RUN_ONCE);
    H.closes = 1;
    auth_oauth_close(H.o, on_closed, NULL);
    run_until(2);
    ck_assert_int_eq(H.calls[1].err, AUTH_OAUTH_ECANCELED);
    while (H.closes > 0)
        uv_run(&H.loop, UV_RUN_ONCE);
    /* A fresh one for the teardown to close. */
    char err[128];
    ck_assert_int_eq(auth_oauth_new(&H.loop, H.hc, H.dir, &H.o, err, sizeof err), 0);
}
END_TEST

START_TEST(test_unreachable_server)
{
    /* Nothing listens there: a clear error, no guessing of 2025-03-26 endpoints. */
    auth_oauth_set_headless(H.o, true);
    struct auth_oauth_server s = {.name = "t", .url = "http://127.0.0.1:1/mcp", .client_id = "c"};
    struct auth_oauth_challenge ch = {401, "Bearer", NULL};
    H.in_call = true;
    ck_assert_int_eq(auth_oauth_get_token(H.o, &s, &ch, on_token, &H.calls[0], NULL), 0);
    H.in_call = false;
    run_until(1);
    ck_assert_int_eq(H.calls[0].err, AUTH_OAUTH_EFAILED);
    ck_assert_ptr_nonnull(strstr(H.calls[0].why, "cannot reach http://127.0.0.1:1/mcp"));
    /* Not an http(s) URL: refused at the call, no callback. */
    s.url = "ftp://x/";
    ck_assert_int_eq(auth_oauth_get_token(H.o, &s, NULL, on_token, &H.calls[1], NULL), CORE_EINVAL);
}
END_TEST

static Suite *oauth_suite(void)
{
    Suite *s = suite_create("oauth");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_token_no_network);
    tcase_add_test(tc, test_single_flight_refresh);
    tcase_add_test(tc, test_revoked_refresh);
    tcase_add_test(tc, test_401_shortcut_and_refresh);
    tcase_add_test(tc, test_not_logged_in_and_cancel);
    tcase_add_test(tc, test_headless_login_iss);
    tcase_add_test(tc, test_stepup_headless_and_limit);
    tcase_add_test(tc, test_client_credentials);
    tcase_add_test(tc, test_redirect_listener);
    tcase_add_test(tc, test_login_timeout_and_close);
    tcase_add_test(tc, test_unreachable_server);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    SRunner *sr = srunner_create(oauth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
