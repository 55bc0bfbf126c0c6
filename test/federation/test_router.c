/* The router in-process against a real upstream (the demo server, run from this test binary):
 * request-id mapping with every JSON id type, progress-token mapping between two sessions
 * using the same token, naming, fan-out, errors, and crash handling. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/seal.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "cmd/demo.h"
#include "federation/internal.h"
#include "federation/router.h"
#include "federation/session.h"
#include "federation/upstream.h"
#include "transports/child.h"

static char self_exe[4096];

/* What one call received. */
struct got {
    int messages;
    char *last_message;
    char *response;
    bool responded;
};

static void got_message(void *ctx, struct fed_call *c, const uv_buf_t *b, unsigned n)
{
    (void)c;
    struct got *g = ctx;
    struct core_buf t;
    core_buf_init(&t, 0);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(core_buf_append(&t, b[i].base, b[i].len), 0);
    core_free(g->last_message);
    g->last_message = core_buf_take(&t, NULL);
    g->messages++;
}

static void got_respond(void *ctx, struct fed_call *c, const uv_buf_t *b, unsigned n)
{
    (void)c;
    struct got *g = ctx;
    struct core_buf t;
    core_buf_init(&t, 0);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(core_buf_append(&t, b[i].base, b[i].len), 0);
    g->response = core_buf_take(&t, NULL);
    g->responded = true;
}

static const struct fed_call_ops ops = {.message = got_message, .respond = got_respond};

static void notify_drop(void *ctx, struct fed_session *s, const uv_buf_t *b, unsigned n)
{
    (void)ctx, (void)s, (void)b, (void)n;
}
static void ended_noop(void *ctx, struct fed_session *s)
{
    (void)ctx, (void)s;
}
static const struct fed_session_ops sops = {.notify = notify_drop, .ended = ended_noop};

struct fixture {
    uv_loop_t loop;
    struct core_config *cfg;
    struct fed_gateway *gw;
    bool done;
};

static void run_until(struct fixture *f, bool *flag, int ms)
{
    for (int i = 0; i < ms / 5 && !*flag; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(5000);
}

static void setup_cfg(struct fixture *f, const char *ini)
{
    ck_assert_int_eq(auth_seal_init(), 0);
    f->done = false; /* the fixture lives uninitialised on the test's stack */
    uv_loop_init(&f->loop);
    if (ini) {
        char err[256];
        ck_assert_int_eq(core_config_parse(ini, strlen(ini), "t.ini", &f->cfg, err, sizeof err), 0);
    } else {
        f->cfg = core_config_default(self_exe);
    }
    f->gw = fed_gateway_new(&f->loop, f->cfg, &(struct fed_gateway_opts){.self_exe = NULL});
    fed_gateway_start(f->gw);
    bool ready = false;
    for (int i = 0; i < 400 && !ready; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
        ready = true;
        for (size_t j = 0; j < f->gw->n_servers; j++)
            ready = ready && fed_upstream_is_ready(f->gw->servers[j]->shared);
    }
    ck_assert_msg(ready, "demo upstream did not become ready");
    /* Let the initial list fetches settle. */
    for (int i = 0; i < 20; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(2000);
}

static void setup(struct fixture *f)
{
    setup_cfg(f, NULL);
}

static void on_done(void *ctx)
{
    ((struct fixture *)ctx)->done = true;
}

static void teardown(struct fixture *f)
{
    fed_gateway_shutdown(f->gw, on_done, f);
    run_until(f, &f->done, 8000);
    ck_assert(f->done);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&f->loop), 0);
    /* The gateway owned and freed the config. */
}

/* Sends one request frame on a session and returns the call's record (answered or not). */
static struct got *send_req(struct fed_session *s, const char *frame)
{
    struct core_rpc_env env;
    ck_assert_int_eq(core_rpc_scan(frame, strlen(frame), &env), 0);
    ck_assert_int_eq(env.kind, CORE_RPC_REQUEST);
    struct got *g = core_xcalloc(1, sizeof *g);
    struct fed_call *c = fed_call_new(s, frame, &env, &ops, g);
    fed_router_request(c, frame, strlen(frame), &env);
    return g;
}

static void got_free(struct got *g)
{
    core_free(g->last_message);
    core_free(g->response);
    core_free(g);
}

/* Internal (GW_STATIC) in federation/router.c. */
struct fed_call *router_attribute(struct fed_upstream *up, const char *frame,
                                  const struct core_rpc_env *env, bool *unattributed);

static struct fed_session *session_of(struct fixture *f, const struct core_client_cfg *client)
{
    char why[300];
    struct fed_session *s = fed_session_new(f->gw, client, &sops, NULL, why, sizeof why);
    ck_assert_msg(s != NULL, "%s", why);
    struct got *g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
                                "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
                                "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}");
    run_until(f, &g->responded, 3000);
    ck_assert(g->responded);
    ck_assert_ptr_nonnull(strstr(g->response, "\"protocolVersion\":\"2025-06-18\""));
    got_free(g);
    return s;
}

static struct fed_session *new_session(struct fixture *f)
{
    return session_of(f, NULL);
}

START_TEST(test_id_types_round_trip)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    static const char *const ids[] = {"7", "-3", "\"abc\"", "\"\\u00e9\\\"x\"", "1.5e3",
                                      "123456789012345678901234567890", "0"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char frame[512];
        snprintf(frame, sizeof frame,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":"
                 "{\"name\":\"demo__echo\",\"arguments\":{\"message\":\"m%zu\"}}}",
                 ids[i], i);
        struct got *g = send_req(s, frame);
        run_until(&f, &g->responded, 3000);
        ck_assert(g->responded);
        char want[256];
        snprintf(want, sizeof want, "\"id\":%s,", ids[i]);
        ck_assert_msg(strstr(g->response, want) != NULL, "id %s came back as %s", ids[i],
                      g->response);
        snprintf(want, sizeof want, "\"text\":\"m%zu\"", i);
        ck_assert_ptr_nonnull(strstr(g->response, want));
        got_free(g);
    }
    teardown(&f);
}
END_TEST

START_TEST(test_progress_tokens_isolated)
{
    struct fixture f;
    setup(&f);
    struct fed_session *a = new_session(&f);
    struct fed_session *b = new_session(&f);
    const char *req_a = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                        "\"demo__sleep\",\"arguments\":{\"ms\":300},\"_meta\":{\"progressToken\":\"same\"}}}";
    const char *req_b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                        "\"demo__sleep\",\"arguments\":{\"ms\":150},\"_meta\":{\"progressToken\":\"same\"}}}";
    struct got *ga = send_req(a, req_a);
    struct got *gb = send_req(b, req_b);
    bool both = false;
    for (int i = 0; i < 600 && !both; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(5000);
        both = ga->responded && gb->responded;
    }
    ck_assert(both);
    /* Each sees its own progress, with its own token, and with its own total. */
    ck_assert_int_ge(ga->messages, 2);
    ck_assert_int_ge(gb->messages, 1);
    ck_assert_ptr_nonnull(strstr(ga->last_message, "\"progressToken\":\"same\""));
    ck_assert_ptr_nonnull(strstr(gb->last_message, "\"progressToken\":\"same\""));
    ck_assert_ptr_nonnull(strstr(ga->last_message, "\"total\":300"));
    ck_assert_ptr_nonnull(strstr(gb->last_message, "\"total\":150"));
    ck_assert_ptr_nonnull(strstr(ga->response, "slept 300 ms"));
    ck_assert_ptr_nonnull(strstr(gb->response, "slept 150 ms"));
    got_free(ga);
    got_free(gb);
    teardown(&f);
}
END_TEST

START_TEST(test_lists_and_errors)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    struct got *g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    run_until(&f, &g->responded, 3000);
    ck_assert_ptr_nonnull(strstr(g->response, "\"name\":\"demo__echo\""));
    ck_assert_ptr_nonnull(strstr(g->response, "\"name\":\"demo__sleep\""));
    ck_assert_ptr_null(strstr(g->response, "\"name\":\"echo\""));
    got_free(g);

    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no/such\"}");
    ck_assert(g->responded); /* answered at once, without an upstream */
    ck_assert_ptr_nonnull(strstr(g->response, "-32601"));
    got_free(g);

    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
                    "\"nobody__x\",\"arguments\":{}}}");
    ck_assert(g->responded);
    ck_assert_ptr_nonnull(strstr(g->response, "\"isError\":true"));
    ck_assert_ptr_nonnull(strstr(g->response, "nobody__x"));
    got_free(g);

    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"prompts/get\",\"params\":{\"name\":"
                    "\"demo__greeting\",\"arguments\":{\"name\":\"Ada\"}}}");
    run_until(&f, &g->responded, 3000);
    ck_assert_ptr_nonnull(strstr(g->response, "Ada"));
    got_free(g);

    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{\"uri\":"
                    "\"demo://items/42\"}}");
    run_until(&f, &g->responded, 3000);
    ck_assert_ptr_nonnull(strstr(g->response, "item 42"));
    got_free(g);

    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/list\",\"params\":{\"cursor\":"
                    "\"forged\"}}");
    ck_assert(g->responded);
    ck_assert_ptr_nonnull(strstr(g->response, "-32602"));
    got_free(g);
    teardown(&f);
}
END_TEST

START_TEST(test_crash_fails_inflight_and_restarts)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    struct got *g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":\"slow\",\"method\":\"tools/call\","
                                "\"params\":{\"name\":\"demo__sleep\",\"arguments\":{\"ms\":5000}}}");
    for (int i = 0; i < 20; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
    int pid = tp_child_pid(f.gw->servers[0]->shared->child);
    ck_assert_int_gt(pid, 0);
    kill(pid, SIGKILL);
    run_until(&f, &g->responded, 1000);
    ck_assert_msg(g->responded, "in-flight call not failed within 1 s");
    ck_assert_ptr_nonnull(strstr(g->response, "\"id\":\"slow\""));
    ck_assert_ptr_nonnull(strstr(g->response, "server 'demo' exited (signal 9)"));
    got_free(g);
    bool ready = false;
    for (int i = 0; i < 400 && !ready; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(5000);
        ready = fed_upstream_is_ready(f.gw->servers[0]->shared);
    }
    ck_assert_msg(ready, "not ready again within 2 s");
    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":"
                    "\"demo__echo\",\"arguments\":{\"message\":\"again\"}}}");
    run_until(&f, &g->responded, 3000);
    ck_assert_ptr_nonnull(strstr(g->response, "again"));
    got_free(g);
    teardown(&f);
}
END_TEST

/* Two upstreams, one answering tools/list two tools a page: the gateway's cursors walk both. */
START_TEST(test_duplicate_keys_never_reach_the_server)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    struct fed_upstream *up = f.gw->servers[0]->shared;
    static const char *const frames[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"demo__touch\","
        "\"name\":\"demo__echo\",\"arguments\":{\"message\":\"x\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\",\"params\":{\"uri\":\"demo://readme\","
        "\"u\\u0072i\":\"demo://items/1\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"demo__echo\","
        "\"arguments\":{\"message\":\"x\"},\"_meta\":{\"progressToken\":1,\"progressToken\":2}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"completion/complete\",\"params\":{\"ref\":{\"type\":"
        "\"ref/prompt\",\"name\":\"demo__greeting\",\"name\":\"x\"},\"argument\":{\"name\":\"n\","
        "\"value\":\"v\"}}}",
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        struct got *g = send_req(s, frames[i]);
        /* Answered at once, and nothing went to the upstream. */
        ck_assert_msg(g->responded, "frame %zu not answered at once", i);
        ck_assert_msg(strstr(g->response, "\"code\":-32600") != NULL, "%s", g->response);
        ck_assert_ptr_nonnull(strstr(g->response, "duplicate"));
        ck_assert_uint_eq(core_map_u64_len(&up->pending), 0);
        got_free(g);
    }
    /* A repeated id: the answer cannot name one, so its id is null. */
    struct got *g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"id\":6,\"method\":\"ping\"}");
    ck_assert_ptr_nonnull(strstr(g->response, "\"id\":null"));
    got_free(g);
    teardown(&f);
}
END_TEST

START_TEST(test_only_exposed_names_route)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    /* Names that would be sanitised on the way out are not exposed names. */
    static const char *const raw[] = {"demo__echo ", "demo__ec ho", "demo__echo\\u0000x", "echo",
                                      "demo__"};
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        char frame[300];
        snprintf(frame, sizeof frame,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","
                 "\"arguments\":{\"message\":\"x\"}}}",
                 raw[i]);
        struct got *g = send_req(s, frame);
        ck_assert_msg(g->responded, "%s not answered at once", raw[i]);
        ck_assert_msg(strstr(g->response, "\"isError\":true") != NULL ||
                          strstr(g->response, "\"error\"") != NULL,
                      "%s: %s", raw[i], g->response);
        got_free(g);
    }
    teardown(&f);
}
END_TEST

/* The upstream id of the forwarded request of session s on up. */
static uint64_t pending_of(struct fed_upstream *up, struct fed_session *s)
{
    size_t it = 0;
    uint64_t k;
    void *v;
    while (core_map_u64_next(&up->pending, &it, &k, &v)) {
        struct fed_pending *p = v;
        if (p->kind == FED_PEND_FORWARD && p->serial == s->serial)
            return p->id;
    }
    return 0;
}

START_TEST(test_attribution_on_a_shared_child)
{
    char ini[5000];
    snprintf(ini, sizeof ini,
             "[server.demo]\ncommand = %s\nargs = [\"demo-server\"]\nisolation = shared\n"
             "[client.a]\n[client.b]\n",
             self_exe);
    struct fixture f;
    setup_cfg(&f, ini);
    struct fed_upstream *up = f.gw->servers[0]->shared;
    struct fed_session *sa = session_of(&f, &f.gw->cfg->clients[0]);
    struct fed_session *sb = session_of(&f, &f.gw->cfg->clients[1]);
#define SLEEP_REQ(ms)                                                                              \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"demo__sleep\","          \
    "\"arguments\":{\"ms\":" #ms "}}}"
    struct got *ga = send_req(sa, SLEEP_REQ(600));
    struct got *gb = send_req(sb, SLEEP_REQ(200));
    uint64_t ida = pending_of(up, sa);
    ck_assert_uint_ne(ida, 0);
    bool unattributed;
    const char *ask = "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\","
                      "\"params\":{\"messages\":[]}}";
    struct core_rpc_env env;
    ck_assert_int_eq(core_rpc_scan(ask, strlen(ask), &env), 0);
    /* Two identities in flight: nobody gets it, and the caller can say why. */
    ck_assert_ptr_null(router_attribute(up, ask, &env, &unattributed));
    ck_assert(unattributed);
    /* The progress token the gateway gave alice's request names it. */
    char named[400];
    snprintf(named, sizeof named,
             "{\"jsonrpc\":\"2.0\",\"id\":\"s2\",\"method\":\"sampling/createMessage\",\"params\":"
             "{\"messages\":[],\"_meta\":{\"progressToken\":%llu}}}",
             (unsigned long long)ida);
    ck_assert_int_eq(core_rpc_scan(named, strlen(named), &env), 0);
    struct fed_call *c = router_attribute(up, named, &env, &unattributed);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_eq(c->sess, sa);
    /* Once b's call is done, a's session is the only one in flight. */
    run_until(&f, &gb->responded, 3000);
    ck_assert(gb->responded);
    ck_assert_int_eq(core_rpc_scan(ask, strlen(ask), &env), 0);
    c = router_attribute(up, ask, &env, &unattributed);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_eq(c->sess, sa);
    run_until(&f, &ga->responded, 3000);
    ck_assert(ga->responded);
    /* Nothing in flight: nobody, but not for want of attribution. */
    ck_assert_ptr_null(router_attribute(up, ask, &env, &unattributed));
    ck_assert(!unattributed);
    got_free(ga);
    got_free(gb);
    teardown(&f);
}
END_TEST

START_TEST(test_one_identity_gets_its_newest_call)
{
    struct fixture f;
    setup(&f);
    struct fed_upstream *up = f.gw->servers[0]->shared;
    struct fed_session *s1 = new_session(&f);
    struct fed_session *s2 = new_session(&f);
    struct got *g1 = send_req(s1, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                                  "{\"name\":\"demo__sleep\",\"arguments\":{\"ms\":300}}}");
    struct got *g2 = send_req(s2, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                                  "{\"name\":\"demo__sleep\",\"arguments\":{\"ms\":300}}}");
    const char *ask = "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"roots/list\"}";
    struct core_rpc_env env;
    ck_assert_int_eq(core_rpc_scan(ask, strlen(ask), &env), 0);
    bool unattributed;
    struct fed_call *c = router_attribute(up, ask, &env, &unattributed);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_eq(c->sess, s2);
    run_until(&f, &g1->responded, 3000);
    run_until(&f, &g2->responded, 3000);
    got_free(g1);
    got_free(g2);
    teardown(&f);
}
END_TEST

START_TEST(test_calls_in_flight_bounded)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    enum { N = FED_MAX_CALLS + 44 };
    struct got *g[N];
    int refused = 0;
    for (int i = 0; i < N; i++) {
        g[i] = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                           "{\"name\":\"demo__sleep\",\"arguments\":{\"ms\":300}}}");
        if (g[i]->responded) {
            ck_assert_msg(strstr(g[i]->response, "too many requests in flight") != NULL, "%s",
                          g[i]->response);
            refused++;
        }
    }
    ck_assert_int_eq(refused, 44);
    ck_assert_uint_eq(s->n_calls, FED_MAX_CALLS);
    /* Once they are answered there is room again. */
    run_until(&f, &g[FED_MAX_CALLS - 1]->responded, 5000);
    for (int i = 0; i < 200 && s->n_calls > 0; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
    ck_assert_uint_eq(s->n_calls, 0);
    struct got *again = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
    ck_assert(again->responded);
    ck_assert_ptr_null(strstr(again->response, "error"));
    got_free(again);
    for (int i = 0; i < N; i++)
        got_free(g[i]);
    teardown(&f);
}
END_TEST

START_TEST(test_subscriptions_bounded)
{
    struct fixture f;
    setup(&f);
    struct fed_session *s = new_session(&f);
    int ok = 0, refused = 0;
    for (int i = 0; i < 140; i++) {
        char frame[300];
        snprintf(frame, sizeof frame,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"resources/subscribe\",\"params\":"
                 "{\"uri\":\"demo://items/%d\"}}",
                 i, i);
        struct got *g = send_req(s, frame);
        run_until(&f, &g->responded, 3000);
        ck_assert(g->responded);
        if (strstr(g->response, "too many subscriptions"))
            refused++;
        else if (strstr(g->response, "\"result\""))
            ok++;
        got_free(g);
    }
    ck_assert_int_eq(ok, 128);
    ck_assert_int_eq(refused, 12);
    ck_assert_uint_eq(core_map_str_len(&s->subs), 128);
    teardown(&f);
}
END_TEST

START_TEST(test_pagination_across_upstreams)
{
    char ini[10000];
    snprintf(ini, sizeof ini,
             "[server.a]\ncommand = %s\nargs = [\"demo-server\", \"--page-size\", \"2\"]\n"
             "[server.b]\ncommand = %s\nargs = [\"demo-server\"]\n",
             self_exe, self_exe);
    struct fixture f;
    setup_cfg(&f, ini);
    struct fed_session *s = new_session(&f);
    int a_tools = 0, b_tools = 0, pages = 0;
    char cursor[1024] = "";
    char first_cursor[1024] = "";
    do {
        char frame[1500];
        if (cursor[0])
            snprintf(frame, sizeof frame,
                     "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/list\",\"params\":{\"cursor\":\"%s\"}}",
                     pages, cursor);
        else
            snprintf(frame, sizeof frame, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/list\"}",
                     pages);
        struct got *g = send_req(s, frame);
        run_until(&f, &g->responded, 3000);
        ck_assert(g->responded);
        cJSON *msg = cJSON_Parse(g->response);
        cJSON *res = cJSON_GetObjectItem(msg, "result");
        ck_assert_msg(res != NULL, "page %d: %s", pages, g->response);
        cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(res, "tools"))
        {
            const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
            if (strncmp(name, "a__", 3) == 0)
                a_tools++;
            else if (strncmp(name, "b__", 3) == 0)
                b_tools++;
        }
        cJSON *next = cJSON_GetObjectItem(res, "nextCursor");
        snprintf(cursor, sizeof cursor, "%s", cJSON_IsString(next) ? next->valuestring : "");
        if (pages == 0) {
            ck_assert(cursor[0]);
            snprintf(first_cursor, sizeof first_cursor, "%s", cursor);
            /* The cursor is opaque: the upstream's own cursor is not readable in it. */
            ck_assert_ptr_null(strstr(cursor, "\"2\""));
        }
        cJSON_Delete(msg);
        got_free(g);
        pages++;
    } while (cursor[0] && pages < 20);
    ck_assert_int_ge(pages, 3);
    ck_assert_int_gt(b_tools, 2);
    ck_assert_int_eq(a_tools, b_tools); /* every tool of the paged upstream arrived, once */

    /* A tampered cursor is refused. */
    first_cursor[strlen(first_cursor) / 2] ^= 1;
    char frame[1500];
    snprintf(frame, sizeof frame,
             "{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"tools/list\",\"params\":{\"cursor\":\"%s\"}}",
             first_cursor);
    struct got *g = send_req(s, frame);
    ck_assert(g->responded);
    ck_assert_ptr_nonnull(strstr(g->response, "-32602"));
    got_free(g);
    teardown(&f);
}
END_TEST

static int count_prefix(const char *json, const char *prefix)
{
    int n = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\"name\":\"%s", prefix);
    for (const char *p = strstr(json, pat); p; p = strstr(p + 1, pat))
        n++;
    return n;
}

/* A server slower than the list deadline is left out of the first list, then served from the
 * gateway's cache without waiting for it again. */
START_TEST(test_late_upstream_left_out_then_cached)
{
    char ini[10000];
    snprintf(ini, sizeof ini,
             "[gateway]\nlist_timeout = 150ms\n"
             "[server.a]\ncommand = %s\nargs = [\"demo-server\"]\n"
             "[server.b]\ncommand = %s\nargs = [\"demo-server\", \"--list-delay\", \"1500\"]\n",
             self_exe, self_exe);
    struct fixture f;
    setup_cfg(&f, ini);
    struct fed_session *s = new_session(&f);
    uint64_t t0 = uv_now(&f.loop);
    struct got *g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    run_until(&f, &g->responded, 5000);
    ck_assert(g->responded);
    uv_update_time(&f.loop);
    ck_assert_msg(uv_now(&f.loop) - t0 < 1200, "the list waited for the late server");
    ck_assert_int_gt(count_prefix(g->response, "a__"), 2);
    ck_assert_int_eq(count_prefix(g->response, "b__"), 0);
    got_free(g);
    /* Give the slow server time to fill the cache (its first list answer). */
    for (int i = 0; i < 400; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
    uv_update_time(&f.loop);
    t0 = uv_now(&f.loop);
    g = send_req(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    run_until(&f, &g->responded, 5000);
    ck_assert(g->responded);
    uv_update_time(&f.loop);
    ck_assert_msg(uv_now(&f.loop) - t0 < 1200, "the cached list was not used");
    ck_assert_int_eq(count_prefix(g->response, "a__"), count_prefix(g->response, "b__"));
    got_free(g);
    teardown(&f);
}
END_TEST

int main(int argc, char **argv)
{
    /* The test binary doubles as the upstream: `test_router demo-server`. */
    if (argc > 1 && strcmp(argv[1], "demo-server") == 0)
        return cmd_demo_main(argc - 1, argv + 1);
    core_alloc_hook_cjson();
    core_log_set_level(CORE_LOG_WARN);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return EXIT_FAILURE;
    self_exe[n] = '\0';
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_id_types_round_trip);
    tcase_add_test(tc, test_progress_tokens_isolated);
    tcase_add_test(tc, test_lists_and_errors);
    tcase_add_test(tc, test_crash_fails_inflight_and_restarts);
    tcase_add_test(tc, test_pagination_across_upstreams);
    tcase_add_test(tc, test_late_upstream_left_out_then_cached);
    tcase_add_test(tc, test_duplicate_keys_never_reach_the_server);
    tcase_add_test(tc, test_only_exposed_names_route);
    tcase_add_test(tc, test_attribution_on_a_shared_child);
    tcase_add_test(tc, test_one_identity_gets_its_newest_call);
    tcase_add_test(tc, test_calls_in_flight_bounded);
    tcase_add_test(tc, test_subscriptions_bounded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
