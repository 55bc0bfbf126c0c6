/* `agentgate probe`: a one-shot MCP client over tp_remote on its own loop. It initializes,
 * lists every page of tools, optionally calls one tool, and prints what it got as one JSON
 * object on stdout. It is also the client under test for the conformance suite. */
#include "cmd/probe.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "auth/oauth.h"
#include "core/alloc.h"
#include "core/log.h"
#include "federation/upstream.h"
#include "transports/hclient.h"
#include "transports/remote.h"

#define PROBE_DEFAULT_TIMEOUT_MS 30000u
#define PROBE_MAX_PAGES 1000
#define PROBE_MAX_HEADERS 32
#define PROBE_DRAIN_MS 1000u /* how long the DELETE may take at the end */
#define PROBE_MAX_AUTH 3     /* authorizations per run (a server that keeps refusing) */

enum probe_step {
    STEP_INIT, /* initialize sent */
    STEP_LIST, /* tools/list (a page) sent */
    STEP_CALL, /* tools/call sent */
    STEP_DONE, /* finished, shutting down */
};

static const char *const step_names[] = {"the initialize result", "the tools/list result",
                                         "the tools/call result", "shutdown"};

struct probe {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t drain;
    uint64_t drain_start;
    struct tp_hclient *hc;
    struct tp_remote *r;
    enum probe_step step;
    long next_id;
    long want_id; /* the id of the request we wait for */
    int pages;
    const char *call_tool;
    cJSON *call_args;
    cJSON *out;   /* what is printed */
    cJSON *tools; /* borrowed from out */
    char *proto;
    int exit_code;
    bool stopping;
    uint64_t timeout_ms;
    /* OAuth, made at the first challenge: headless, with a throw-away store. */
    struct auth_oauth *oauth;
    struct auth_oauth_req *oreq;
    struct auth_oauth_server srv;
    char state_dir[256]; /* the temporary store's directory, "" until made */
    bool oauth_open;     /* oauth made and not yet closed */
    char *bearer;        /* the Authorization value in use */
    int auth_rounds;
    int auth_status; /* the last challenge's status */
};

static void probe_usage(FILE *f)
{
    fprintf(f,
            "usage: agentgate probe URL [--call TOOL] [--args JSON] [--header K:V]...\n"
            "                       [--transport auto|streamable-http|sse] [--bearer-env VAR]\n"
            "                       [--ca-file FILE] [--timeout MS] [--client-id ID]\n"
            "                       [--client-secret-env VAR] [--client-credentials]\n"
            "                       [--client-metadata-url URL]\n"
            "\n"
            "Connects to the remote MCP server at URL, initializes, lists its tools (every page)\n"
            "and, with --call, calls TOOL with the JSON object --args (default {}). Prints one\n"
            "JSON object on stdout: transport, protocolVersion, serverInfo, tools and, with\n"
            "--call, result. Exit status: 0 success; 1 failure, with one line on stderr (a tool\n"
            "result with isError true counts as failure: it is printed, then reported); 2 usage.\n"
            "--bearer-env VAR sends `Authorization: Bearer $VAR`; --header adds a header to\n"
            "every request; --ca-file trusts a private CA; --timeout bounds the whole run\n"
            "(default 30000 ms). A server that answers 401 (or 403 insufficient_scope) gets an\n"
            "OAuth authorization-code login without a browser (for authorization servers that\n"
            "approve at once), with a pre-registered --client-id (--client-secret-env VAR holds\n"
            "its secret), else a Client ID Metadata Document URL, else dynamic registration;\n"
            "--client-credentials uses the client_credentials grant instead (no user; needs\n"
            "--client-id and --client-secret-env). Tokens live in a temporary directory\n"
            "removed at exit.\n");
}

static void fail(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void finish(struct probe *p);

static void on_handle_closed(uv_handle_t *h)
{
    GW_UNUSED(h);
}

static void on_hc_closed(void *ctx)
{
    GW_UNUSED(ctx);
}

static void on_oauth_closed(void *ctx)
{
    struct probe *p = ctx;
    p->oauth = NULL;
    p->oauth_open = false;
}

static void on_drain(uv_timer_t *t)
{
    struct probe *p = container_of(t, struct probe, drain);
    if ((tp_hclient_active(p->hc) > 0 || p->oauth_open) &&
        uv_now(&p->loop) - p->drain_start < PROBE_DRAIN_MS)
        return;
    uv_timer_stop(&p->drain);
    tp_hclient_close(p->hc, on_hc_closed, p);
    uv_close((uv_handle_t *)&p->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&p->drain, on_handle_closed);
}

/* Ends the session (the DELETE gets up to PROBE_DRAIN_MS), then lets the loop run dry. */
static void stop(struct probe *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    p->step = STEP_DONE;
    uv_timer_stop(&p->deadline);
    if (p->r) {
        tp_remote_close(p->r);
        p->r = NULL;
    }
    if (p->oreq) {
        auth_oauth_cancel(p->oreq);
        p->oreq = NULL;
    }
    if (p->oauth)
        auth_oauth_close(p->oauth, on_oauth_closed, p);
    p->drain_start = uv_now(&p->loop);
    uv_timer_start(&p->drain, on_drain, 0, 10);
}

static void fail(struct probe *p, const char *fmt, ...)
{
    if (p->stopping)
        return;
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "agentgate probe: %s\n", why);
    p->exit_code = 1;
    stop(p);
}

static void send_json(struct probe *p, cJSON *msg)
{
    char *txt = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    int rc = txt ? tp_remote_write(p->r, txt, strlen(txt)) : CORE_EINVAL;
    cJSON_free(txt);
    if (rc != 0)
        fail(p, "cannot send to the server: %s", core_strerror(rc));
}

static cJSON *request(struct probe *p, const char *method, cJSON *params)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "jsonrpc", "2.0");
    p->want_id = p->next_id++;
    cJSON_AddNumberToObject(m, "id", (double)p->want_id);
    cJSON_AddStringToObject(m, "method", method);
    cJSON_AddItemToObject(m, "params", params ? params : cJSON_CreateObject());
    return m;
}

static void send_initialize(struct probe *p)
{
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "protocolVersion", FED_LATEST_VERSION);
    cJSON_AddObjectToObject(params, "capabilities");
    cJSON *info = cJSON_AddObjectToObject(params, "clientInfo");
    cJSON_AddStringToObject(info, "name", "agentgate-probe");
    cJSON_AddStringToObject(info, "version", AG_VERSION);
    p->step = STEP_INIT;
    send_json(p, request(p, "initialize", params));
}

static void send_list(struct probe *p, const cJSON *cursor)
{
    cJSON *params = cJSON_CreateObject();
    if (cursor)
        cJSON_AddItemToObject(params, "cursor", cJSON_Duplicate(cursor, true));
    p->step = STEP_LIST;
    p->pages++;
    send_json(p, request(p, "tools/list", params));
}

static void send_call(struct probe *p)
{
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "name", p->call_tool);
    cJSON_AddItemToObject(params, "arguments",
                          p->call_args ? cJSON_Duplicate(p->call_args, true)
                                       : cJSON_CreateObject());
    p->step = STEP_CALL;
    send_json(p, request(p, "tools/call", params));
}

/* Server-to-client requests: ping is answered, elicitation declined, sampling refused, and
 * anything else is a method the probe does not have. */
static void answer_server_request(struct probe *p, const cJSON *msg)
{
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "jsonrpc", "2.0");
    cJSON_AddItemToObject(a, "id", cJSON_Duplicate(id, true));
    const char *m = method->valuestring;
    if (strcmp(m, "ping") == 0) {
        cJSON_AddObjectToObject(a, "result");
    } else if (strcmp(m, "elicitation/create") == 0) {
        cJSON *res = cJSON_AddObjectToObject(a, "result");
        cJSON_AddStringToObject(res, "action", "decline");
    } else {
        cJSON *err = cJSON_AddObjectToObject(a, "error");
        if (strcmp(m, "sampling/createMessage") == 0) {
            cJSON_AddNumberToObject(err, "code", -1);
            cJSON_AddStringToObject(err, "message", "agentgate probe does no sampling");
        } else {
            cJSON_AddNumberToObject(err, "code", -32601);
            cJSON_AddStringToObject(err, "message", "method not found");
        }
    }
    send_json(p, a);
}

static bool id_is(const cJSON *id, long want)
{
    return cJSON_IsNumber(id) && id->valuedouble == (double)want;
}

static void on_result(struct probe *p, const cJSON *result)
{
    switch (p->step) {
    case STEP_INIT: {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
        if (!cJSON_IsString(v)) {
            fail(p, "the initialize result has no protocolVersion");
            return;
        }
        if (!fed_version_supported(v->valuestring, strlen(v->valuestring))) {
            fail(p, "the server chose protocol version '%s', which agentgate does not speak",
                 v->valuestring);
            return;
        }
        p->proto = core_xstrdup(v->valuestring);
        cJSON_AddStringToObject(p->out, "protocolVersion", v->valuestring);
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(result, "serverInfo");
        cJSON_AddItemToObject(p->out, "serverInfo",
                              info ? cJSON_Duplicate(info, true) : cJSON_CreateNull());
        p->tools = cJSON_AddArrayToObject(p->out, "tools");
        tp_remote_ready(p->r, p->proto);
        send_json(p, cJSON_Parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
        if (!p->stopping)
            send_list(p, NULL);
        return;
    }
    case STEP_LIST: {
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
        if (!cJSON_IsArray(tools)) {
            fail(p, "the tools/list result has no tools array");
            return;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, tools)
        {
            cJSON_AddItemToArray(p->tools, cJSON_Duplicate(t, true));
        }
        const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(result, "nextCursor");
        if (cJSON_IsString(cursor) && cursor->valuestring[0]) {
            if (p->pages >= PROBE_MAX_PAGES) {
                fail(p, "tools/list did not end after %d pages", PROBE_MAX_PAGES);
                return;
            }
            send_list(p, cursor);
            return;
        }
        if (p->call_tool) {
            send_call(p);
            return;
        }
        finish(p);
        return;
    }
    case STEP_CALL: {
        cJSON_AddItemToObject(p->out, "result", cJSON_Duplicate(result, true));
        const cJSON *is_err = cJSON_GetObjectItemCaseSensitive(result, "isError");
        if (cJSON_IsTrue(is_err)) {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(result, "content");
            const cJSON *first = cJSON_IsArray(content) ? cJSON_GetArrayItem(content, 0) : NULL;
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(first, "text");
            finish(p);
            p->exit_code = 1;
            fprintf(stderr, "agentgate probe: tool '%s' returned an error: %.300s\n", p->call_tool,
                    cJSON_IsString(text) ? text->valuestring : "(no text)");
            return;
        }
        finish(p);
        return;
    }
    case STEP_DONE:
        return;
    }
}

static void on_frame(void *ctx, const char *d, size_t n)
{
    struct probe *p = ctx;
    if (p->stopping)
        return;
    cJSON *msg = cJSON_ParseWithLength(d, n);
    if (!cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        fail(p, "the server sent a message that is not a JSON object");
        return;
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (cJSON_IsString(method)) {
        if (id && !cJSON_IsNull(id))
            answer_server_request(p, msg);
        cJSON_Delete(msg); /* notifications (progress, logging, list changes) are ignored */
        return;
    }
    if (!id_is(id, p->want_id)) {
        cJSON_Delete(msg); /* a late answer to something we no longer wait for */
        return;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(msg, "error");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
    if (err) {
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(err, "message");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        static const char *const what[] = {"initialize", "tools/list", "tools/call", ""};
        fail(p, "%s failed: %s (code %d)", what[p->step],
             cJSON_IsString(em) ? em->valuestring : "no message",
             cJSON_IsNumber(code) ? code->valueint : 0);
    } else if (!cJSON_IsObject(result)) {
        fail(p, "the server answered without a result object");
    } else {
        on_result(p, result);
    }
    cJSON_Delete(msg);
}

static void on_token(void *ctx, int err, const char *authorization, const char *why)
{
    struct probe *p = ctx;
    p->oreq = NULL;
    if (p->stopping)
        return;
    if (err != 0) {
        fail(p, "server requires authorization (HTTP %d), and OAuth failed: %s", p->auth_status,
             why ? why : "no reason");
        return;
    }
    if (p->bearer) {
        memset(p->bearer, 0, strlen(p->bearer));
        core_free(p->bearer);
    }
    p->bearer = core_xstrdup(authorization);
    tp_remote_set_bearer(p->r, p->bearer);
    tp_remote_resume(p->r);
}

/* A private temporary directory for the OAuth store: $TMPDIR (when absolute) or /tmp. */
static bool make_state_dir(struct probe *p)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || tmp[0] != '/')
        tmp = "/tmp";
    int n = snprintf(p->state_dir, sizeof p->state_dir, "%s/agentgate-probe-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof p->state_dir || !mkdtemp(p->state_dir)) {
        p->state_dir[0] = '\0';
        return false;
    }
    return true;
}

static void remove_state_dir(struct probe *p)
{
    if (!p->state_dir[0])
        return;
    DIR *d = opendir(p->state_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                (void)unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    (void)rmdir(p->state_dir);
    p->state_dir[0] = '\0';
}

static void on_auth(void *ctx, int status, const char *www)
{
    struct probe *p = ctx;
    if (p->stopping)
        return;
    p->auth_status = status;
    if (++p->auth_rounds > PROBE_MAX_AUTH) {
        fail(p, "server requires authorization (HTTP %d) and refused %d authorizations", status,
             PROBE_MAX_AUTH);
        return;
    }
    if (!p->oauth) {
        char err[256];
        if (!make_state_dir(p)) {
            fail(p, "server requires authorization (HTTP %d); no temporary directory for OAuth",
                 status);
            return;
        }
        if (auth_oauth_new(&p->loop, p->hc, p->state_dir, &p->oauth, err, sizeof err) != 0) {
            p->oauth = NULL;
            fail(p, "server requires authorization (HTTP %d); OAuth: %s", status, err);
            return;
        }
        p->oauth_open = true;
        auth_oauth_set_headless(p->oauth, true);
    }
    struct auth_oauth_challenge ch = {
        .status = status, .www_authenticate = www, .rejected = p->bearer};
    if (auth_oauth_get_token(p->oauth, &p->srv, &ch, on_token, p, &p->oreq) != 0) {
        p->oreq = NULL;
        fail(p, "server requires authorization (HTTP %d); OAuth cannot start", status);
    }
}

static void on_down(void *ctx, int err, const char *why)
{
    struct probe *p = ctx;
    GW_UNUSED(err);
    if (p->r) {
        tp_remote_close(p->r);
        p->r = NULL;
    }
    fail(p, "%s", why);
}

static void on_deadline(uv_timer_t *t)
{
    struct probe *p = container_of(t, struct probe, deadline);
    fail(p, "no answer within %llu ms (waiting for %s)", (unsigned long long)p->timeout_ms,
         step_names[p->step]);
}

static void finish(struct probe *p)
{
    if (p->stopping)
        return;
    if (p->r)
        cJSON_ReplaceItemInObjectCaseSensitive(p->out, "transport",
                                               cJSON_CreateString(tp_remote_kind_name(p->r)));
    char *txt = cJSON_Print(p->out);
    if (txt) {
        fputs(txt, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    cJSON_free(txt);
    p->exit_code = 0;
    stop(p);
}

/* "K:V" or "K: V" becomes "K: V"; false for a bad name or a line break. */
static bool header_line(const char *kv, char *out, size_t cap)
{
    const char *colon = strchr(kv, ':');
    if (!colon || colon == kv || strpbrk(kv, "\r\n"))
        return false;
    for (const char *c = kv; c < colon; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
            return false;
    }
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    int n = snprintf(out, cap, "%.*s: %s", (int)(colon - kv), kv, v);
    return n > 0 && (size_t)n < cap;
}

int cmd_probe(int argc, char **argv)
{
    const char *url = NULL, *call = NULL, *args = NULL, *transport = "auto";
    const char *bearer_env = NULL, *ca_file = NULL, *timeout = NULL;
    const char *client_id = NULL, *client_secret_env = NULL, *client_metadata_url = NULL;
    const char *header_args[PROBE_MAX_HEADERS];
    size_t nheaders = 0;
    bool client_credentials = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            probe_usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (url) {
                fprintf(stderr, "agentgate: probe: one URL only ('%s' and '%s')\n", url, a);
                return 2;
            }
            url = a;
            continue;
        }
        if (strcmp(a, "--client-credentials") == 0) {
            client_credentials = true;
            continue;
        }
        if (strcmp(a, "--header") == 0 && i + 1 < argc) {
            if (nheaders == PROBE_MAX_HEADERS) {
                fprintf(stderr, "agentgate: probe: at most %d --header options\n",
                        PROBE_MAX_HEADERS);
                return 2;
            }
            header_args[nheaders++] = argv[++i];
            continue;
        }
        const char **slot = strcmp(a, "--call") == 0                  ? &call
                            : strcmp(a, "--args") == 0                ? &args
                            : strcmp(a, "--transport") == 0           ? &transport
                            : strcmp(a, "--bearer-env") == 0          ? &bearer_env
                            : strcmp(a, "--ca-file") == 0             ? &ca_file
                            : strcmp(a, "--timeout") == 0             ? &timeout
                            : strcmp(a, "--client-id") == 0           ? &client_id
                            : strcmp(a, "--client-secret-env") == 0   ? &client_secret_env
                            : strcmp(a, "--client-metadata-url") == 0 ? &client_metadata_url
                                                                      : NULL;
        bool known = slot || strcmp(a, "--header") == 0;
        if (!known || i + 1 >= argc) {
            fprintf(stderr, "agentgate: probe: %s '%s'\n",
                    known ? "missing value for" : "unknown option", a);
            probe_usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!url) {
        fprintf(stderr, "agentgate: probe: no URL given\n");
        probe_usage(stderr);
        return 2;
    }
    enum tp_remote_kind kind;
    if (strcmp(transport, "auto") == 0)
        kind = TP_REMOTE_AUTO;
    else if (strcmp(transport, "streamable-http") == 0)
        kind = TP_REMOTE_STREAMABLE;
    else if (strcmp(transport, "sse") == 0)
        kind = TP_REMOTE_SSE;
    else {
        fprintf(stderr, "agentgate: probe: --transport is auto, streamable-http or sse, not '%s'\n",
                transport);
        return 2;
    }
    if (args && !call) {
        fprintf(stderr, "agentgate: probe: --args goes with --call\n");
        return 2;
    }
    uint64_t timeout_ms = PROBE_DEFAULT_TIMEOUT_MS;
    if (timeout) {
        char *end;
        unsigned long long v = strtoull(timeout, &end, 10);
        if (*end || end == timeout || v == 0 || v > 3600000ull) {
            fprintf(stderr,
                    "agentgate: probe: --timeout is milliseconds (1 .. 3600000), not '%s'\n",
                    timeout);
            return 2;
        }
        timeout_ms = v;
    }
    core_alloc_hook_cjson();
    /* stderr carries the one-line verdict; AGENTGATE_PROBE_LOG=debug|trace|... shows more. */
    int level = CORE_LOG_ERROR;
    const char *lv = getenv("AGENTGATE_PROBE_LOG");
    if (lv && core_log_parse_level(lv, &level) != 0)
        level = CORE_LOG_ERROR;
    core_log_set_level(level);
    cJSON *call_args = NULL;
    if (args) {
        call_args = cJSON_Parse(args);
        if (!cJSON_IsObject(call_args)) {
            cJSON_Delete(call_args);
            fprintf(stderr, "agentgate: probe: --args must be a JSON object\n");
            return 2;
        }
    }
    char hbuf[PROBE_MAX_HEADERS][1024];
    const char *headers[PROBE_MAX_HEADERS + 1];
    for (size_t i = 0; i < nheaders; i++) {
        if (!header_line(header_args[i], hbuf[i], sizeof hbuf[i])) {
            fprintf(stderr, "agentgate: probe: --header wants NAME:VALUE, not '%s'\n",
                    header_args[i]);
            cJSON_Delete(call_args);
            return 2;
        }
        headers[i] = hbuf[i];
    }
    headers[nheaders] = NULL;
    const char *client_secret = NULL;
    if (client_credentials && !client_secret_env) {
        fprintf(stderr, "agentgate: probe: --client-credentials needs --client-id and "
                        "--client-secret-env\n");
        cJSON_Delete(call_args);
        return 2;
    }
    if (client_secret_env) {
        client_secret = getenv(client_secret_env);
        if (!client_secret || !*client_secret || !client_id) {
            fprintf(stderr,
                    "agentgate: probe: --client-secret-env needs --client-id and a set "
                    "variable %s\n",
                    client_secret_env);
            cJSON_Delete(call_args);
            return 2;
        }
    }
    char *bearer = NULL;
    if (bearer_env) {
        const char *tok = getenv(bearer_env);
        if (!tok || !*tok) {
            fprintf(stderr, "agentgate: probe: environment variable %s is not set\n", bearer_env);
            cJSON_Delete(call_args);
            return 2;
        }
        size_t n = strlen(tok) + 8;
        bearer = core_xmalloc(n);
        (void)snprintf(bearer, n, "Bearer %s", tok);
    }

    struct probe p;
    memset(&p, 0, sizeof p);
    p.next_id = 1;
    p.call_tool = call;
    p.call_args = call_args;
    p.timeout_ms = timeout_ms;
    p.srv = (struct auth_oauth_server){
        .name = "probe",
        .url = url,
        .client_id = client_id,
        .client_secret = client_secret,
        .client_metadata_url = client_metadata_url,
        .client_credentials = client_credentials,
        .ca_file = ca_file,
    };
    p.bearer = bearer ? core_xstrdup(bearer) : NULL;
    p.out = cJSON_CreateObject();
    p.exit_code = 1;
    int rc = uv_loop_init(&p.loop);
    if (rc != 0) {
        fprintf(stderr, "agentgate probe: %s\n", uv_strerror(rc));
        return 1;
    }
    (void)uv_timer_init(&p.loop, &p.deadline);
    (void)uv_timer_init(&p.loop, &p.drain);
    rc = tp_hclient_new(&p.loop, &p.hc);
    if (rc != 0) {
        fprintf(stderr, "agentgate probe: cannot start the HTTP client: %s\n", core_strerror(rc));
        uv_close((uv_handle_t *)&p.deadline, on_handle_closed);
        uv_close((uv_handle_t *)&p.drain, on_handle_closed);
        goto out;
    }
    struct tp_remote_opts ro = {
        .url = url,
        .kind = kind,
        .headers = headers,
        .bearer = bearer,
        .ca_file = ca_file,
    };
    struct tp_remote_cbs cbs = {.on_frame = on_frame, .on_auth = on_auth, .on_down = on_down};
    rc = tp_remote_new(p.hc, &ro, &cbs, &p, &p.r);
    if (rc != 0) {
        fprintf(stderr, "agentgate probe: '%s' is not an http:// or https:// URL\n", url);
        p.exit_code = 2;
        p.stopping = true;
        tp_hclient_close(p.hc, on_hc_closed, &p);
        uv_close((uv_handle_t *)&p.deadline, on_handle_closed);
        uv_close((uv_handle_t *)&p.drain, on_handle_closed);
        goto out;
    }
    cJSON_AddStringToObject(p.out, "url", url);
    cJSON_AddStringToObject(p.out, "transport", "auto"); /* settled by the first answer */
    uv_timer_start(&p.deadline, on_deadline, timeout_ms, 0);
    send_initialize(&p);
out:
    /* Runs until every handle has closed (stop() starts that). */
    uv_run(&p.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&p.loop);
    if (rc != 0)
        core_log(CORE_LOG_WARN, "probe", "loop not empty at exit: %s", uv_strerror(rc));
    remove_state_dir(&p);
    cJSON_Delete(p.out);
    cJSON_Delete(call_args);
    core_free(p.proto);
    if (p.bearer) {
        memset(p.bearer, 0, strlen(p.bearer));
        core_free(p.bearer);
    }
    if (bearer) {
        memset(bearer, 0, strlen(bearer));
        core_free(bearer);
    }
    return p.exit_code;
}
