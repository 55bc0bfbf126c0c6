/* `agentgate demo-server`: a stdio MCP server with a few tools, resources and prompts.
 *
 * One libuv loop reads stdin through the newline framer; each frame is parsed with cJSON and
 * answered at once, except `sleep`, which runs on a timer (many at a time) and can be cancelled.
 * Replies are printed by cJSON and collected as iovecs; they go to fd 1 with writev(2) at the
 * end of each loop callback, so a burst of pipelined requests costs one write. Request ids and
 * progress tokens are echoed as the client's own bytes, so every JSON type and every integer
 * (even beyond 2^53) comes back exactly. */
#include "cmd/demo.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/frame.h"
#include "core/log.h"

#ifndef AG_VERSION
#define AG_VERSION "0"
#endif

#define DEMO_MAX_FRAME ((size_t)16 << 20)
#define FRAMES_PER_ROUND 64          /* frames handled per read callback before yielding */
#define OUT_MAX 64                   /* replies collected before a write is forced */
#define BLOB_MAX ((size_t)16 << 20)  /* largest `blob` reply */
#define SLEEP_MAX_MS 3600000.0       /* longest `sleep` */
#define PROGRESS_EVERY_MS 100
#define LATEST_VERSION "2025-11-25"

enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_RESOURCE_NOT_FOUND = -32002,
};

static const char *const versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};

/* RFC 5424 severities as MCP names them, least severe first. */
static const char *const levels[] = {"debug", "info",     "notice", "warning",
                                     "error", "critical", "alert",  "emergency"};
#define N_LEVELS (sizeof levels / sizeof levels[0])

/* Where stdin is read from. */
enum input_state {
    INPUT_READING, /* a read is pending (stream read started, or a file read in flight) */
    INPUT_PAUSED,  /* a round hit FRAMES_PER_ROUND: the idle handle drains the framer */
    INPUT_DONE,    /* EOF, error or shutdown: nothing more is read */
};

enum input_kind {
    KIND_STREAM, /* pipe, socket or tty: uv_read_start */
    KIND_FILE,   /* regular file or character device: chained uv_fs_read */
    KIND_NONE,   /* fd 0 is closed or unusable: immediate EOF */
};

struct demo_srv;

/* A `sleep` tools/call in progress. */
struct demo_sleep {
    struct demo_srv *srv;
    uv_timer_t timer;
    struct demo_sleep *prev;
    struct demo_sleep *next;
    char *id_raw;    /* the request id's bytes, NUL-terminated */
    cJSON *id;       /* the same id parsed, for matching notifications/cancelled */
    char *token_raw; /* params._meta.progressToken's bytes, or NULL */
    uint64_t start;  /* loop time at the start, ms */
    uint64_t ms;     /* requested duration */
    int64_t last;    /* last progress value sent, -1 = none */
    cJSON *deferred; /* a reply to send when the time is up instead of "slept", or NULL */
};

struct demo_srv {
    uv_loop_t loop;
    enum input_kind kind;
    enum input_state in_st;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
        uv_tty_t tty;
    } in;
    bool in_open; /* `in` was initialised and not yet closed */
    uv_fs_t fs_req;
    bool fs_busy; /* fs_req in flight */
    uv_idle_t drain;
    struct core_framer framer;
    size_t round; /* frames handled in the current round */

    char *out[OUT_MAX]; /* printed replies waiting for the write, each written with a "\n" */
    size_t n_out;
    bool out_broken; /* stdout failed: nothing more is written */

    struct demo_sleep *sleeps; /* in-flight sleeps, newest first */
    char **subs;               /* subscribed resource URIs */
    size_t n_subs;
    size_t level; /* index into levels[]: messages below it are filtered */
    int status;   /* exit status */
};

/* One incoming message while it is being handled. */
struct demo_req {
    struct demo_srv *srv;
    const char *frame; /* the raw frame, for exact byte copies of the id and tokens */
    size_t frame_len;
    cJSON *msg;
    cJSON *id;       /* NULL for a notification */
    cJSON *params;   /* an object, or NULL */
    char *id_raw;    /* the id's bytes (allocated), or NULL */
};

static void input_stop(struct demo_srv *s);
static void sleep_end(struct demo_sleep *z);

/* ---- raw JSON member lookup ---------------------------------------------------------------
 * cJSON has validated the frame already; these only find the byte range of a member's value,
 * so ids and progress tokens can be echoed byte for byte. */

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

static size_t skip_string(const char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

static size_t skip_value(const char *p, size_t n, size_t i)
{
    if (i >= n)
        return n;
    if (p[i] == '"')
        return skip_string(p, n, i);
    if (p[i] == '{' || p[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char ch = p[i];
            if (ch == '"') {
                i = skip_string(p, n, i);
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' && p[i] != '\t' &&
           p[i] != '\r' && p[i] != '\n')
        i++;
    return i;
}

/* Finds the first member `key` (compared as raw bytes) of the object at p[0..n). */
static bool raw_member(const char *p, size_t n, const char *key, const char **vp, size_t *vn)
{
    size_t klen = strlen(key);
    size_t i = skip_ws(p, n, 0);
    if (i >= n || p[i] != '{')
        return false;
    i++;
    for (;;) {
        i = skip_ws(p, n, i);
        if (i >= n || p[i] != '"')
            return false;
        size_t ks = i + 1;
        i = skip_string(p, n, i);
        size_t ke = i - 1;
        i = skip_ws(p, n, i);
        if (i >= n || p[i] != ':')
            return false;
        i = skip_ws(p, n, i + 1);
        size_t vs = i;
        i = skip_value(p, n, i);
        if (ke - ks == klen && memcmp(p + ks, key, klen) == 0) {
            *vp = p + vs;
            *vn = i - vs;
            return true;
        }
        i = skip_ws(p, n, i);
        if (i >= n || p[i] != ',')
            return false;
        i++;
    }
}

/* The bytes of the value at path (keys from the top-level object down), copied, or the value
 * re-printed by cJSON when the raw lookup misses (e.g. an escaped key). */
static char *raw_dup(const struct demo_req *r, const char *const *path, size_t depth,
                     const cJSON *fallback)
{
    const char *p = r->frame;
    size_t n = r->frame_len;
    for (size_t d = 0; d < depth; d++) {
        if (!raw_member(p, n, path[d], &p, &n))
            return cJSON_PrintUnformatted(fallback);
    }
    return core_xstrndup(p, n);
}

/* ---- output ------------------------------------------------------------------------------ */

static void out_fail(struct demo_srv *s, int err)
{
    if (!s->out_broken)
        core_log(CORE_LOG_WARN, "demo", "stdout: %s", strerror(err));
    s->out_broken = true;
    s->status = 1;
}

/* Writes the collected replies. Blocks only while stdout is full (the reader is slow), which
 * is this process's back-pressure. */
static void flush(struct demo_srv *s)
{
    struct iovec iov[OUT_MAX * 2];
    size_t n_iov = 0;
    for (size_t i = 0; i < s->n_out && !s->out_broken; i++) {
        iov[n_iov].iov_base = s->out[i];
        iov[n_iov].iov_len = strlen(s->out[i]);
        n_iov++;
        iov[n_iov].iov_base = (void *)"\n";
        iov[n_iov].iov_len = 1;
        n_iov++;
    }
    size_t first = 0;
    while (first < n_iov && !s->out_broken) {
        int cnt = (int)(n_iov - first > IOV_MAX ? IOV_MAX : n_iov - first);
        ssize_t w = writev(1, iov + first, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = 1, .events = POLLOUT};
                (void)poll(&pfd, 1, -1); /* an error shows in the next writev */
                continue;
            }
            out_fail(s, errno);
            break;
        }
        size_t left = (size_t)w;
        while (first < n_iov && left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            first++;
        }
        if (left > 0) {
            iov[first].iov_base = (char *)iov[first].iov_base + left;
            iov[first].iov_len -= left;
        }
    }
    for (size_t i = 0; i < s->n_out; i++)
        cJSON_free(s->out[i]);
    s->n_out = 0;
    if (s->out_broken) {
        /* Nobody can hear us any more: stop reading and drop the sleeps. */
        input_stop(s);
        while (s->sleeps != NULL)
            sleep_end(s->sleeps);
    }
}

/* Prints and queues msg (takes ownership). */
static void emit(struct demo_srv *s, cJSON *msg)
{
    if (s->out_broken) {
        cJSON_Delete(msg);
        return;
    }
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (text == NULL) {
        core_log(CORE_LOG_ERROR, "demo", "cannot print a reply");
        return;
    }
    s->out[s->n_out++] = text;
    if (s->n_out == OUT_MAX)
        flush(s);
}

static cJSON *envelope(const char *id_raw)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "jsonrpc", "2.0");
    if (id_raw != NULL)
        cJSON_AddRawToObject(m, "id", id_raw);
    return m;
}

static void send_result(struct demo_srv *s, const char *id_raw, cJSON *result)
{
    cJSON *m = envelope(id_raw);
    cJSON_AddItemToObject(m, "result", result);
    emit(s, m);
}

static void send_error(struct demo_srv *s, const char *id_raw, int code, const char *message,
                       cJSON *data)
{
    cJSON *m = envelope(id_raw ? id_raw : "null");
    cJSON *e = cJSON_AddObjectToObject(m, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    if (data != NULL)
        cJSON_AddItemToObject(e, "data", data);
    emit(s, m);
}

static void send_notification(struct demo_srv *s, const char *method, cJSON *params)
{
    cJSON *m = envelope(NULL);
    cJSON_AddStringToObject(m, "method", method);
    cJSON_AddItemToObject(m, "params", params);
    emit(s, m);
}

static void reply(struct demo_req *r, cJSON *result)
{
    send_result(r->srv, r->id_raw, result);
}

static void reply_error(struct demo_req *r, int code, const char *message)
{
    send_error(r->srv, r->id_raw, code, message, NULL);
}

/* A tool result with one text content (borrowed text: printed before the caller frees it). */
static cJSON *text_result(const char *text, bool by_reference)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(res, "content");
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "type", "text");
    cJSON_AddItemToObject(item, "text",
                          by_reference ? cJSON_CreateStringReference(text)
                                       : cJSON_CreateString(text));
    cJSON_AddItemToArray(content, item);
    return res;
}

/* ---- parameter helpers ------------------------------------------------------------------- */

static const char *get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON number holding an integer in [0, max]. */
static bool get_uint(const cJSON *obj, const char *key, double max, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= max) || floor(d) != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static int level_index(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_LEVELS; i++) {
        if (strcmp(name, levels[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* ---- schemas and catalogues -------------------------------------------------------------- */

static cJSON *schema(const char *const *props, const char *const *types, size_t n,
                     const char *const *required, size_t n_req)
{
    cJSON *sc = cJSON_CreateObject();
    cJSON_AddStringToObject(sc, "type", "object");
    cJSON *pr = cJSON_AddObjectToObject(sc, "properties");
    for (size_t i = 0; i < n; i++) {
        cJSON *p = cJSON_AddObjectToObject(pr, props[i]);
        cJSON_AddStringToObject(p, "type", types[i]);
    }
    cJSON *req = cJSON_AddArrayToObject(sc, "required");
    for (size_t i = 0; i < n_req; i++)
        cJSON_AddItemToArray(req, cJSON_CreateString(required[i]));
    return sc;
}

static void add_tool(cJSON *tools, const char *name, const char *title, const char *desc,
                     cJSON *input, cJSON *output)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "title", title);
    cJSON_AddStringToObject(t, "description", desc);
    cJSON_AddItemToObject(t, "inputSchema", input);
    if (output != NULL)
        cJSON_AddItemToObject(t, "outputSchema", output);
    cJSON_AddItemToArray(tools, t);
}

/* The echo tool's description (--echo-description: lets tests change a tool between runs). */
static const char *echo_description = "Returns the message unchanged.";

/* Whether the `extra` tool is listed (flipped by the `toggle` tool, to exercise list_changed). */
static bool extra_tool;

static cJSON *tools_list(void)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *tools = cJSON_AddArrayToObject(res, "tools");
    add_tool(tools, "echo", "Echo", echo_description,
             schema((const char *[]){"message"}, (const char *[]){"string"}, 1,
                    (const char *[]){"message"}, 1),
             NULL);
    add_tool(tools, "blob", "Blob", "Returns a text of `bytes` 'x' characters.",
             schema((const char *[]){"bytes"}, (const char *[]){"integer"}, 1,
                    (const char *[]){"bytes"}, 1),
             NULL);
    add_tool(tools, "sum", "Sum", "Adds two numbers.",
             schema((const char *[]){"a", "b"}, (const char *[]){"number", "number"}, 2,
                    (const char *[]){"a", "b"}, 2),
             schema((const char *[]){"sum"}, (const char *[]){"number"}, 1,
                    (const char *[]){"sum"}, 1));
    add_tool(tools, "sleep", "Sleep",
             "Waits `ms` milliseconds, reporting progress about every 100 ms when asked.",
             schema((const char *[]){"ms"}, (const char *[]){"integer"}, 1,
                    (const char *[]){"ms"}, 1),
             NULL);
    add_tool(tools, "fail", "Fail", "Always returns a tool error (isError).",
             schema(NULL, NULL, 0, NULL, 0), NULL);
    add_tool(tools, "touch", "Touch", "Sends notifications/resources/updated for a subscribed URI.",
             schema((const char *[]){"uri"}, (const char *[]){"string"}, 1,
                    (const char *[]){"uri"}, 1),
             NULL);
    cJSON *log_schema = schema((const char *[]){"level", "text"},
                               (const char *[]){"string", "string"}, 2,
                               (const char *[]){"level", "text"}, 2);
    cJSON *lv = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(log_schema, "properties"), "level");
    cJSON_AddItemToObject(lv, "enum", cJSON_CreateStringArray(levels, (int)N_LEVELS));
    add_tool(tools, "log", "Log", "Sends notifications/message at `level` if the level admits it.",
             log_schema, NULL);
    add_tool(tools, "toggle", "Toggle",
             "Adds or removes the `extra` tool and sends notifications/tools/list_changed.",
             schema(NULL, NULL, 0, NULL, 0), NULL);
    if (extra_tool)
        add_tool(tools, "extra", "Extra", "Listed only while toggled on.",
                 schema(NULL, NULL, 0, NULL, 0), NULL);
    return res;
}

/* Tools per tools/list page; 0 = all in one page. Lets tests exercise cursors. */
static long page_size;
/* Milliseconds tools/list waits before answering (a slow server, for fan-out tests). */
static long list_delay_ms;

/* Pages a full tools/list result when --page-size is set: the cursor is the offset. */
static cJSON *tools_page(const struct demo_req *r)
{
    cJSON *res = tools_list();
    if (page_size <= 0)
        return res;
    long off = 0;
    cJSON *cur = r->params ? cJSON_GetObjectItemCaseSensitive(r->params, "cursor") : NULL;
    if (cJSON_IsString(cur)) {
        char *end;
        off = strtol(cur->valuestring, &end, 10);
        if (*end != '\0' || off < 0)
            off = 0;
    }
    cJSON *all = cJSON_DetachItemFromObjectCaseSensitive(res, "tools");
    cJSON *page = cJSON_AddArrayToObject(res, "tools");
    long n = cJSON_GetArraySize(all);
    for (long i = off; i < n && i < off + page_size; i++)
        cJSON_AddItemToArray(page, cJSON_Duplicate(cJSON_GetArrayItem(all, (int)i), 1));
    if (off + page_size < n) {
        char next[32];
        snprintf(next, sizeof next, "%ld", off + page_size);
        cJSON_AddStringToObject(res, "nextCursor", next);
    }
    cJSON_Delete(all);
    return res;
}


static const char readme_text[] =
    "agentgate demo server\n"
    "Tools: echo, blob, sum, sleep, fail, touch, log.\n"
    "Resources: demo://readme and the template demo://items/{id}.\n"
    "Prompts: greeting.\n";

/* The id of demo://items/<id>, or NULL when uri is not such an item. */
static const char *item_id(const char *uri)
{
    static const char prefix[] = "demo://items/";
    if (strncmp(uri, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *id = uri + sizeof prefix - 1;
    if (*id == '\0' || strchr(id, '/') != NULL)
        return NULL;
    return id;
}

static bool known_uri(const char *uri)
{
    return strcmp(uri, "demo://readme") == 0 || item_id(uri) != NULL;
}

static bool is_subscribed(const struct demo_srv *s, const char *uri)
{
    for (size_t i = 0; i < s->n_subs; i++) {
        if (strcmp(s->subs[i], uri) == 0)
            return true;
    }
    return false;
}

/* ---- sleep ------------------------------------------------------------------------------- */

static void on_sleep_closed(uv_handle_t *h)
{
    struct demo_sleep *z = h->data;
    core_free(z->id_raw);
    core_free(z->token_raw);
    cJSON_Delete(z->id);
    cJSON_Delete(z->deferred);
    core_free(z);
}

static void sleep_end(struct demo_sleep *z)
{
    struct demo_srv *s = z->srv;
    if (z->prev != NULL)
        z->prev->next = z->next;
    else
        s->sleeps = z->next;
    if (z->next != NULL)
        z->next->prev = z->prev;
    uv_timer_stop(&z->timer);
    uv_close((uv_handle_t *)&z->timer, on_sleep_closed);
}

static void sleep_progress(struct demo_sleep *z, uint64_t done)
{
    if (z->token_raw == NULL || (int64_t)done <= z->last)
        return;
    z->last = (int64_t)done;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddRawToObject(p, "progressToken", z->token_raw);
    cJSON_AddNumberToObject(p, "progress", (double)done);
    cJSON_AddNumberToObject(p, "total", (double)z->ms);
    char msg[96];
    snprintf(msg, sizeof msg, "slept %llu of %llu ms", (unsigned long long)done,
             (unsigned long long)z->ms);
    cJSON_AddStringToObject(p, "message", msg);
    send_notification(z->srv, "notifications/progress", p);
}

static void on_sleep_tick(uv_timer_t *t)
{
    struct demo_sleep *z = t->data;
    struct demo_srv *s = z->srv;
    uint64_t elapsed = uv_now(&s->loop) - z->start;
    if (elapsed >= z->ms) {
        sleep_progress(z, z->ms);
        if (z->deferred) {
            send_result(s, z->id_raw, z->deferred);
            z->deferred = NULL;
        } else {
            char text[64];
            snprintf(text, sizeof text, "slept %llu ms", (unsigned long long)z->ms);
            send_result(s, z->id_raw, text_result(text, true));
        }
        sleep_end(z);
    } else {
        sleep_progress(z, elapsed);
        uint64_t next = z->ms - elapsed;
        if (next > PROGRESS_EVERY_MS)
            next = PROGRESS_EVERY_MS;
        uv_timer_start(&z->timer, on_sleep_tick, next, 0);
    }
    flush(s);
}

/* Starts a timed wait that answers request r after ms (progress on the way if asked);
 * `deferred` (taken, may be NULL) is the result to send then. */
static void sleep_start(struct demo_req *r, uint64_t ms, cJSON *deferred)
{
    struct demo_srv *s = r->srv;
    struct demo_sleep *z = core_xcalloc(1, sizeof *z);
    z->srv = s;
    z->id_raw = r->id_raw;
    r->id_raw = NULL; /* the sleep owns it now */
    z->id = cJSON_Duplicate(r->id, true);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(r->params, "_meta");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (cJSON_IsString(token) || cJSON_IsNumber(token)) {
        static const char *const path[] = {"params", "_meta", "progressToken"};
        z->token_raw = raw_dup(r, path, 3, token);
    }
    z->start = uv_now(&s->loop);
    z->ms = ms;
    z->last = -1;
    z->deferred = deferred;
    uv_timer_init(&s->loop, &z->timer);
    z->timer.data = z;
    z->next = s->sleeps;
    if (s->sleeps != NULL)
        s->sleeps->prev = z;
    s->sleeps = z;
    uv_timer_start(&z->timer, on_sleep_tick, ms < PROGRESS_EVERY_MS ? ms : PROGRESS_EVERY_MS, 0);
}

static void tool_sleep(struct demo_req *r, const cJSON *args)
{
    uint64_t ms;
    if (!get_uint(args, "ms", SLEEP_MAX_MS, &ms)) {
        reply_error(r, RPC_INVALID_PARAMS, "sleep: `ms` must be an integer from 0 to 3600000");
        return;
    }
    sleep_start(r, ms, NULL);
}

/* ---- tools ------------------------------------------------------------------------------- */

static void format_number(double d, char *out, size_t cap)
{
    if (isfinite(d) && floor(d) == d && fabs(d) < 1e15)
        snprintf(out, cap, "%.0f", d);
    else
        snprintf(out, cap, "%.17g", d);
}

static void tools_call(struct demo_req *r)
{
    const char *name = get_str(r->params, "name");
    if (name == NULL) {
        reply_error(r, RPC_INVALID_PARAMS, "tools/call: `name` must be a string");
        return;
    }
    cJSON *args = cJSON_GetObjectItemCaseSensitive(r->params, "arguments");
    if (args != NULL && !cJSON_IsObject(args) && !cJSON_IsNull(args)) {
        reply_error(r, RPC_INVALID_PARAMS, "tools/call: `arguments` must be an object");
        return;
    }
    struct demo_srv *s = r->srv;

    if (strcmp(name, "echo") == 0) {
        const char *msg = get_str(args, "message");
        if (msg == NULL) {
            reply_error(r, RPC_INVALID_PARAMS, "echo: `message` must be a string");
            return;
        }
        reply(r, text_result(msg, true));
    } else if (strcmp(name, "blob") == 0) {
        uint64_t n;
        if (!get_uint(args, "bytes", (double)BLOB_MAX, &n)) {
            reply_error(r, RPC_INVALID_PARAMS, "blob: `bytes` must be an integer up to 16777216");
            return;
        }
        char *text = core_xmalloc(n + 1);
        memset(text, 'x', n);
        text[n] = '\0';
        reply(r, text_result(text, true));
        core_free(text);
    } else if (strcmp(name, "sum") == 0) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(args, "a");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(args, "b");
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b)) {
            reply_error(r, RPC_INVALID_PARAMS, "sum: `a` and `b` must be numbers");
            return;
        }
        double sum = a->valuedouble + b->valuedouble;
        char text[64];
        format_number(sum, text, sizeof text);
        cJSON *res = text_result(text, false);
        cJSON *sc = cJSON_AddObjectToObject(res, "structuredContent");
        cJSON_AddNumberToObject(sc, "sum", sum);
        reply(r, res);
    } else if (strcmp(name, "sleep") == 0) {
        tool_sleep(r, args);
    } else if (strcmp(name, "fail") == 0) {
        cJSON *res = text_result("The fail tool always fails.", true);
        cJSON_AddBoolToObject(res, "isError", true);
        reply(r, res);
    } else if (strcmp(name, "touch") == 0) {
        const char *uri = get_str(args, "uri");
        if (uri == NULL) {
            reply_error(r, RPC_INVALID_PARAMS, "touch: `uri` must be a string");
            return;
        }
        struct core_buf text;
        core_buf_init(&text, 0);
        int rc;
        if (is_subscribed(s, uri)) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "uri", uri);
            send_notification(s, "notifications/resources/updated", p);
            rc = core_buf_appendf(&text, "touched %s", uri);
        } else {
            rc = core_buf_appendf(&text, "%s is not subscribed", uri);
        }
        (void)rc; /* the buffer has no limit */
        reply(r, text_result(text.data, false));
        core_buf_dispose(&text);
    } else if (strcmp(name, "toggle") == 0) {
        extra_tool = !extra_tool;
        send_notification(s, "notifications/tools/list_changed", NULL);
        reply(r, text_result(extra_tool ? "extra on" : "extra off", false));
    } else if (strcmp(name, "extra") == 0 && extra_tool) {
        reply(r, text_result("extra", false));
    } else if (strcmp(name, "log") == 0) {
        const char *level = get_str(args, "level");
        const char *text = get_str(args, "text");
        int li = level_index(level);
        if (li < 0 || text == NULL) {
            reply_error(r, RPC_INVALID_PARAMS,
                        "log: `level` must be a logging level and `text` a string");
            return;
        }
        bool admitted = (size_t)li >= s->level;
        if (admitted) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "level", level);
            cJSON_AddStringToObject(p, "logger", "demo");
            cJSON_AddStringToObject(p, "data", text);
            send_notification(s, "notifications/message", p);
        }
        reply(r, text_result(admitted ? "logged" : "filtered", true));
    } else {
        struct core_buf msg;
        core_buf_init(&msg, 0);
        int rc = core_buf_appendf(&msg, "Unknown tool: %s", name);
        (void)rc; /* the buffer has no limit */
        reply_error(r, RPC_INVALID_PARAMS, msg.data);
        core_buf_dispose(&msg);
    }
}

/* ---- methods ----------------------------------------------------------------------------- */

static void m_initialize(struct demo_req *r)
{
    const char *asked = get_str(r->params, "protocolVersion");
    const char *version = LATEST_VERSION;
    for (size_t i = 0; asked != NULL && i < sizeof versions / sizeof versions[0]; i++) {
        if (strcmp(asked, versions[i]) == 0)
            version = versions[i];
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "protocolVersion", version);
    cJSON *caps = cJSON_AddObjectToObject(res, "capabilities");
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(caps, "tools"), "listChanged", true);
    cJSON *rc = cJSON_AddObjectToObject(caps, "resources");
    cJSON_AddBoolToObject(rc, "subscribe", true);
    cJSON_AddBoolToObject(rc, "listChanged", true);
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(caps, "prompts"), "listChanged", true);
    cJSON_AddObjectToObject(caps, "logging");
    cJSON_AddObjectToObject(caps, "completions");
    cJSON *info = cJSON_AddObjectToObject(res, "serverInfo");
    cJSON_AddStringToObject(info, "name", "agentgate-demo");
    cJSON_AddStringToObject(info, "version", AG_VERSION);
    cJSON_AddStringToObject(res, "instructions",
                            "A demo server for trying agentgate: call echo, sum or sleep.");
    reply(r, res);
}

static void m_resources_list(struct demo_req *r)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(res, "resources");
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "uri", "demo://readme");
    cJSON_AddStringToObject(item, "name", "readme");
    cJSON_AddStringToObject(item, "title", "Read me");
    cJSON_AddStringToObject(item, "description", "What this demo server offers.");
    cJSON_AddStringToObject(item, "mimeType", "text/plain");
    cJSON_AddItemToArray(list, item);
    reply(r, res);
}

static void m_templates_list(struct demo_req *r)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(res, "resourceTemplates");
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "uriTemplate", "demo://items/{id}");
    cJSON_AddStringToObject(item, "name", "item");
    cJSON_AddStringToObject(item, "title", "Item");
    cJSON_AddStringToObject(item, "description", "A numbered item.");
    cJSON_AddStringToObject(item, "mimeType", "text/plain");
    cJSON_AddItemToArray(list, item);
    reply(r, res);
}

static void not_found(struct demo_req *r, const char *uri)
{
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "uri", uri);
    send_error(r->srv, r->id_raw, RPC_RESOURCE_NOT_FOUND, "Resource not found", data);
}

static void m_resources_read(struct demo_req *r)
{
    const char *uri = get_str(r->params, "uri");
    if (uri == NULL) {
        reply_error(r, RPC_INVALID_PARAMS, "resources/read: `uri` must be a string");
        return;
    }
    struct core_buf text;
    core_buf_init(&text, 0);
    const char *id = item_id(uri);
    int rc;
    if (strcmp(uri, "demo://readme") == 0) {
        rc = core_buf_append_str(&text, readme_text);
    } else if (id != NULL) {
        rc = core_buf_appendf(&text, "item %s", id);
    } else {
        not_found(r, uri);
        return;
    }
    (void)rc; /* the buffer has no limit */
    cJSON *res = cJSON_CreateObject();
    cJSON *contents = cJSON_AddArrayToObject(res, "contents");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "uri", uri);
    cJSON_AddStringToObject(c, "mimeType", "text/plain");
    cJSON_AddStringToObject(c, "text", text.data);
    cJSON_AddItemToArray(contents, c);
    core_buf_dispose(&text);
    reply(r, res);
}

static void m_subscribe(struct demo_req *r, bool on)
{
    struct demo_srv *s = r->srv;
    const char *uri = get_str(r->params, "uri");
    if (uri == NULL) {
        reply_error(r, RPC_INVALID_PARAMS, "`uri` must be a string");
        return;
    }
    if (on) {
        if (!known_uri(uri)) {
            not_found(r, uri);
            return;
        }
        if (!is_subscribed(s, uri)) {
            s->subs = core_xrealloc(s->subs, (s->n_subs + 1) * sizeof *s->subs);
            s->subs[s->n_subs++] = core_xstrdup(uri);
        }
    } else {
        for (size_t i = 0; i < s->n_subs; i++) {
            if (strcmp(s->subs[i], uri) == 0) {
                core_free(s->subs[i]);
                s->subs[i] = s->subs[--s->n_subs];
                break;
            }
        }
    }
    reply(r, cJSON_CreateObject());
}

static void m_prompts_list(struct demo_req *r)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(res, "prompts");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", "greeting");
    cJSON_AddStringToObject(p, "title", "Greeting");
    cJSON_AddStringToObject(p, "description", "Asks the model to greet someone.");
    cJSON *args = cJSON_AddArrayToObject(p, "arguments");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "name", "name");
    cJSON_AddStringToObject(a, "description", "Who to greet.");
    cJSON_AddBoolToObject(a, "required", true);
    cJSON_AddItemToArray(args, a);
    cJSON_AddItemToArray(list, p);
    reply(r, res);
}

static void m_prompts_get(struct demo_req *r)
{
    const char *name = get_str(r->params, "name");
    if (name == NULL || strcmp(name, "greeting") != 0) {
        struct core_buf msg;
        core_buf_init(&msg, 0);
        int rc = core_buf_appendf(&msg, "Unknown prompt: %s", name ? name : "(none)");
        (void)rc; /* the buffer has no limit */
        reply_error(r, RPC_INVALID_PARAMS, msg.data);
        core_buf_dispose(&msg);
        return;
    }
    const char *who = get_str(cJSON_GetObjectItemCaseSensitive(r->params, "arguments"), "name");
    if (who == NULL) {
        reply_error(r, RPC_INVALID_PARAMS, "greeting: missing required argument `name`");
        return;
    }
    struct core_buf text;
    core_buf_init(&text, 0);
    int rc = core_buf_appendf(&text, "Say hello to %s.", who);
    (void)rc; /* the buffer has no limit */
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "description", "A greeting");
    cJSON *msgs = cJSON_AddArrayToObject(res, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON *content = cJSON_AddObjectToObject(m, "content");
    cJSON_AddStringToObject(content, "type", "text");
    cJSON_AddStringToObject(content, "text", text.data);
    cJSON_AddItemToArray(msgs, m);
    core_buf_dispose(&text);
    reply(r, res);
}

static void m_complete(struct demo_req *r)
{
    static const char *const names[] = {"Alice", "Bob", "Carol"};
    static const char *const ids[] = {"1", "2", "42"};
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(r->params, "ref");
    const cJSON *arg = cJSON_GetObjectItemCaseSensitive(r->params, "argument");
    const char *type = get_str(ref, "type");
    const char *arg_name = get_str(arg, "name");
    const char *value = get_str(arg, "value");
    if (type == NULL || arg_name == NULL || value == NULL) {
        reply_error(r, RPC_INVALID_PARAMS,
                    "completion/complete: needs `ref.type`, `argument.name`, `argument.value`");
        return;
    }
    const char *const *pool = NULL;
    size_t n_pool = 0;
    if (strcmp(type, "ref/prompt") == 0) {
        const char *pname = get_str(ref, "name");
        if (pname == NULL || strcmp(pname, "greeting") != 0) {
            reply_error(r, RPC_INVALID_PARAMS, "completion/complete: unknown prompt");
            return;
        }
        if (strcmp(arg_name, "name") == 0) {
            pool = names;
            n_pool = 3;
        }
    } else if (strcmp(type, "ref/resource") == 0) {
        const char *uri = get_str(ref, "uri");
        if (uri == NULL || strcmp(uri, "demo://items/{id}") != 0) {
            reply_error(r, RPC_INVALID_PARAMS, "completion/complete: unknown resource template");
            return;
        }
        if (strcmp(arg_name, "id") == 0) {
            pool = ids;
            n_pool = 3;
        }
    } else {
        reply_error(r, RPC_INVALID_PARAMS, "completion/complete: unknown ref type");
        return;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON *comp = cJSON_AddObjectToObject(res, "completion");
    cJSON *values = cJSON_AddArrayToObject(comp, "values");
    size_t vlen = strlen(value);
    int total = 0;
    for (size_t i = 0; i < n_pool; i++) {
        if (strncasecmp(pool[i], value, vlen) == 0) {
            cJSON_AddItemToArray(values, cJSON_CreateString(pool[i]));
            total++;
        }
    }
    cJSON_AddNumberToObject(comp, "total", total);
    cJSON_AddBoolToObject(comp, "hasMore", false);
    reply(r, res);
}

static void m_set_level(struct demo_req *r)
{
    int li = level_index(get_str(r->params, "level"));
    if (li < 0) {
        reply_error(r, RPC_INVALID_PARAMS, "logging/setLevel: unknown level");
        return;
    }
    r->srv->level = (size_t)li;
    reply(r, cJSON_CreateObject());
}

static void n_cancelled(struct demo_req *r)
{
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r->params, "requestId");
    if (rid == NULL)
        return;
    for (struct demo_sleep *z = r->srv->sleeps; z != NULL; z = z->next) {
        if (cJSON_Compare(z->id, rid, true)) {
            sleep_end(z); /* cancelled: no response */
            return;
        }
    }
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static bool only_ws(const char *p, size_t n)
{
    return skip_ws(p, n, 0) == n;
}

static void handle_frame(void *ctx, const char *p, size_t n)
{
    struct demo_srv *s = ctx;
    s->round++;
    if (s->out_broken || only_ws(p, n)) /* blank lines are not messages */
        return;
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(p, n, &end, false);
    if (msg == NULL || end == NULL || !only_ws(end, n - (size_t)(end - p))) {
        cJSON_Delete(msg);
        send_error(s, NULL, RPC_PARSE_ERROR, "Parse error", NULL);
        return;
    }
    struct demo_req r = {.srv = s, .frame = p, .frame_len = n, .msg = msg};
    if (!cJSON_IsObject(msg)) {
        send_error(s, NULL, RPC_INVALID_REQUEST,
                   cJSON_IsArray(msg) ? "Batches are not supported" : "Invalid Request", NULL);
        goto out;
    }
    r.id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (r.id != NULL) {
        static const char *const path[] = {"id"};
        r.id_raw = raw_dup(&r, path, 1, r.id);
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    if (method == NULL && r.id != NULL &&
        (cJSON_HasObjectItem(msg, "result") || cJSON_HasObjectItem(msg, "error")))
        goto out; /* a response; we never send requests */
    if (!cJSON_IsString(method) || (r.id != NULL && !cJSON_IsString(r.id) &&
                                    !cJSON_IsNumber(r.id) && !cJSON_IsNull(r.id))) {
        if (r.id != NULL)
            reply_error(&r, RPC_INVALID_REQUEST, "Invalid Request");
        else
            send_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request", NULL);
        goto out;
    }
    r.params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    if (r.params != NULL && !cJSON_IsObject(r.params)) {
        if (r.id != NULL)
            reply_error(&r, RPC_INVALID_PARAMS, "`params` must be an object");
        goto out;
    }
    const char *m = method->valuestring;
    if (r.id == NULL) {
        /* Notifications get no answer, not even an error. */
        if (strcmp(m, "notifications/cancelled") == 0)
            n_cancelled(&r);
        goto out;
    }
    if (strcmp(m, "tools/call") == 0)
        tools_call(&r);
    else if (strcmp(m, "initialize") == 0)
        m_initialize(&r);
    else if (strcmp(m, "ping") == 0)
        reply(&r, cJSON_CreateObject());
    else if (strcmp(m, "tools/list") == 0)
        if (list_delay_ms > 0)
            sleep_start(&r, (uint64_t)list_delay_ms, tools_page(&r));
        else
            reply(&r, tools_page(&r));
    else if (strcmp(m, "resources/list") == 0)
        m_resources_list(&r);
    else if (strcmp(m, "resources/templates/list") == 0)
        m_templates_list(&r);
    else if (strcmp(m, "resources/read") == 0)
        m_resources_read(&r);
    else if (strcmp(m, "resources/subscribe") == 0)
        m_subscribe(&r, true);
    else if (strcmp(m, "resources/unsubscribe") == 0)
        m_subscribe(&r, false);
    else if (strcmp(m, "prompts/list") == 0)
        m_prompts_list(&r);
    else if (strcmp(m, "prompts/get") == 0)
        m_prompts_get(&r);
    else if (strcmp(m, "completion/complete") == 0)
        m_complete(&r);
    else if (strcmp(m, "logging/setLevel") == 0)
        m_set_level(&r);
    else
        reply_error(&r, RPC_METHOD_NOT_FOUND, "Method not found");
out:
    core_free(r.id_raw);
    cJSON_Delete(msg);
}

/* ---- input ------------------------------------------------------------------------------- */

static void on_in_closed(uv_handle_t *h)
{
    GW_UNUSED(h);
}

static void input_stop(struct demo_srv *s)
{
    if (s->in_st == INPUT_DONE)
        return;
    s->in_st = INPUT_DONE;
    uv_idle_stop(&s->drain);
    if (s->in_open) {
        s->in_open = false;
        uv_close(&s->in.handle, on_in_closed);
    }
    /* The framer is freed at exit: this may run inside one of its callbacks, or while a file
     * read into its buffer is in flight (that read finishes and sees INPUT_DONE). */
}

static void on_eof(struct demo_srv *s)
{
    /* A last line without its newline still counts as a frame. */
    int rc = core_framer_push(&s->framer, "\n", 1, handle_frame, s);
    if (rc != 0)
        send_error(s, NULL, RPC_INVALID_REQUEST, "Frame too large", NULL);
    input_stop(s);
}

static void read_more(struct demo_srv *s);
static void on_drain(uv_idle_t *idle);

/* After a round: pause when it was full, otherwise go on reading. */
static void after_round(struct demo_srv *s, int rc)
{
    if (s->in_st == INPUT_DONE)
        return;
    if (rc == CORE_ETOOBIG) {
        core_log(CORE_LOG_WARN, "demo", "a frame is longer than %zu bytes", DEMO_MAX_FRAME);
        send_error(s, NULL, RPC_INVALID_REQUEST, "Frame too large", NULL);
        s->status = 1;
        input_stop(s);
        return;
    }
    if (s->round >= FRAMES_PER_ROUND) {
        if (s->in_st == INPUT_READING && s->kind == KIND_STREAM)
            uv_read_stop(&s->in.stream);
        s->in_st = INPUT_PAUSED;
        uv_idle_start(&s->drain, on_drain);
        return;
    }
    bool was_paused = s->in_st == INPUT_PAUSED;
    if (was_paused) {
        uv_idle_stop(&s->drain);
        s->in_st = INPUT_READING;
    }
    if (s->kind == KIND_FILE || was_paused)
        read_more(s);
}

static void on_drain(uv_idle_t *idle)
{
    struct demo_srv *s = idle->data;
    s->round = 0;
    int rc = core_framer_feed(&s->framer, 0, handle_frame, s, FRAMES_PER_ROUND);
    after_round(s, rc);
    flush(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct demo_srv *s = h->data;
    size_t got = 0;
    char *p = core_framer_space(&s->framer, suggested, &got);
    buf->base = p;
    buf->len = p ? got : 0;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct demo_srv *s = st->data;
    if (s->in_st == INPUT_DONE || nread == 0)
        return;
    if (nread > 0) {
        s->round = 0;
        int rc = core_framer_feed(&s->framer, (size_t)nread, handle_frame, s, FRAMES_PER_ROUND);
        after_round(s, rc);
    } else if (nread == UV_ENOBUFS) {
        after_round(s, CORE_ETOOBIG);
    } else {
        if (nread != UV_EOF)
            core_log(CORE_LOG_WARN, "demo", "stdin: %s", uv_strerror((int)nread));
        on_eof(s);
    }
    flush(s);
}

static void on_fs_read(uv_fs_t *req)
{
    struct demo_srv *s = req->data;
    ssize_t res = req->result;
    uv_fs_req_cleanup(req);
    s->fs_busy = false;
    if (s->in_st == INPUT_DONE)
        return;
    if (res > 0) {
        s->round = 0;
        int rc = core_framer_feed(&s->framer, (size_t)res, handle_frame, s, FRAMES_PER_ROUND);
        after_round(s, rc);
    } else {
        if (res < 0)
            core_log(CORE_LOG_WARN, "demo", "stdin: %s", uv_strerror((int)res));
        on_eof(s);
    }
    flush(s);
}

/* Starts (or restarts) reading stdin. */
static void read_more(struct demo_srv *s)
{
    if (s->kind == KIND_STREAM) {
        int rc = uv_read_start(&s->in.stream, on_alloc, on_read);
        if (rc < 0) {
            core_log(CORE_LOG_WARN, "demo", "stdin: %s", uv_strerror(rc));
            on_eof(s);
        }
        return;
    }
    size_t got = 0;
    char *p = core_framer_space(&s->framer, 65536, &got);
    if (p == NULL) {
        after_round(s, CORE_ETOOBIG);
        return;
    }
    uv_buf_t b = uv_buf_init(p, got > UINT32_MAX ? UINT32_MAX : (unsigned)got);
    s->fs_req.data = s;
    int rc = uv_fs_read(&s->loop, &s->fs_req, 0, &b, 1, -1, on_fs_read);
    if (rc < 0) {
        core_log(CORE_LOG_WARN, "demo", "stdin: %s", uv_strerror(rc));
        on_eof(s);
        return;
    }
    s->fs_busy = true;
}

static void input_start(struct demo_srv *s)
{
    int rc = 0;
    switch (uv_guess_handle(0)) {
    case UV_NAMED_PIPE:
        s->kind = KIND_STREAM;
        uv_pipe_init(&s->loop, &s->in.pipe, 0);
        s->in_open = true;
        rc = uv_pipe_open(&s->in.pipe, 0);
        break;
    case UV_TCP:
        s->kind = KIND_STREAM;
        uv_tcp_init(&s->loop, &s->in.tcp);
        s->in_open = true;
        rc = uv_tcp_open(&s->in.tcp, 0);
        break;
    case UV_TTY:
        s->kind = KIND_STREAM;
        rc = uv_tty_init(&s->loop, &s->in.tty, 0, 1);
        s->in_open = rc == 0;
        break;
    case UV_FILE:
        s->kind = KIND_FILE;
        break;
    default:
        s->kind = KIND_NONE;
        break;
    }
    if (s->in_open)
        s->in.handle.data = s;
    if (rc < 0) {
        core_log(CORE_LOG_WARN, "demo", "stdin: %s", uv_strerror(rc));
        s->kind = KIND_NONE;
    }
    if (s->kind == KIND_NONE) {
        input_stop(s);
        return;
    }
    read_more(s);
}

/* ---- main -------------------------------------------------------------------------------- */

int cmd_demo_main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fprintf(stderr, "usage: agentgate demo-server [--page-size N] [--list-delay MS]\n"
                            "                             [--echo-description TEXT]\n"
                            "A demo MCP server on stdin/stdout (newline-delimited JSON-RPC).\n"
                            "  --page-size N    answer tools/list in pages of N tools\n"
                            "  --list-delay MS  answer tools/list after MS milliseconds\n"
                            "  --echo-description TEXT  the echo tool's description\n");
            return 0;
        }
        if (strcmp(argv[i], "--echo-description") == 0 && i + 1 < argc) {
            echo_description = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--list-delay") == 0 && i + 1 < argc) {
            char *end;
            list_delay_ms = strtol(argv[++i], &end, 10);
            if (*end != '\0' || list_delay_ms < 0 || list_delay_ms > 3600000) {
                fprintf(stderr, "agentgate: demo-server: --list-delay wants milliseconds\n");
                return 2;
            }
            continue;
        }
        if (strcmp(argv[i], "--page-size") == 0 && i + 1 < argc) {
            char *end;
            page_size = strtol(argv[++i], &end, 10);
            if (*end != '\0' || page_size < 0) {
                fprintf(stderr, "agentgate: demo-server: --page-size wants a number\n");
                return 2;
            }
        }
    }
    signal(SIGPIPE, SIG_IGN);
    core_alloc_hook_cjson();
    /* A closed stdio descriptor would be taken by the loop's own descriptors, and then read
     * (fd 0) or written with replies (fd 1): put /dev/null there first. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int nul = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (nul >= 0 && nul != fd) {
                dup2(nul, fd);
                close(nul);
            }
        }
    }

    struct demo_srv *s = core_xcalloc(1, sizeof *s);
    s->level = 1; /* info */
    int rc = uv_loop_init(&s->loop);
    if (rc < 0) {
        core_log(CORE_LOG_ERROR, "demo", "uv_loop_init: %s", uv_strerror(rc));
        core_free(s);
        return 1;
    }
    core_framer_init(&s->framer, DEMO_MAX_FRAME);
    uv_idle_init(&s->loop, &s->drain);
    s->drain.data = s;

    input_start(s);
    flush(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);

    /* Only reachable once input is done and no sleep is left; close what remains. */
    if (s->in_open) {
        s->in_open = false;
        uv_close(&s->in.handle, on_in_closed);
    }
    uv_close((uv_handle_t *)&s->drain, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&s->loop);
    if (rc != 0)
        core_log(CORE_LOG_ERROR, "demo", "uv_loop_close: %s", uv_strerror(rc));
    flush(s);
    core_framer_dispose(&s->framer);
    for (size_t i = 0; i < s->n_subs; i++)
        core_free(s->subs[i]);
    core_free(s->subs);
    int status = s->status;
    core_free(s);
    return status;
}
