/* `agentgate bridge`: a stdio MCP server whose other end is the daemon's Unix socket.
 *
 * Frames pass through unchanged in both directions (newline-delimited JSON-RPC). The bridge
 * only looks at envelopes: it records the ids of client requests until their responses pass
 * back, and the client's initialize, subscriptions and log level, so that when the daemon goes
 * away it can fail what was in flight, reconnect (starting the daemon if none answers), replay
 * that state under its own ids and carry on without the client re-initialising. */
#include "bridge/bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/file.h"
#include "core/frame.h"
#include "core/jsonrpc.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/peer.h"
#include "transports/bridge_hello.h"

#define MOD "bridge"

#define MAX_FRAME (64u << 20)     /* longest frame accepted in either direction */
#define QUEUE_LIMIT (16u << 20)   /* client bytes held while the daemon is away */
#define OUT_HIGH_WATER (8u << 20) /* stop reading the other side past this many queued bytes */
#define OUT_LOW_WATER (1u << 20)  /* ... and resume below this */
#define POLL_MS 20                /* connect retry interval while a daemon starts */
#define SPAWN_WAIT_MS 5000        /* how long a daemon we started may take to listen */
#define OTHER_WAIT_MS 10000       /* how long we wait for a daemon another bridge starts */
#define REPLAY_MS 5000            /* how long the replayed initialize may take */
#define SPAWN_RETRIES 3           /* daemon starts tried after a reconnect before giving up */
#define DRAIN_MS 2000             /* after stdin EOF, how long replies in flight may take */
#define FLUSH_MS 2000             /* at exit, how long stdout may take to drain */
#define INTERNAL_ID "agentgate-bridge-"

/* Where the daemon connection stands. */
enum br_state {
    BR_CONNECTING, /* no connection: polling the socket, maybe starting a daemon */
    BR_REPLAYING,  /* connected again; waiting for the reply to the replayed initialize */
    BR_UP,         /* pumping frames both ways */
    BR_DRAINING,   /* stdin ended; waiting (bounded) for the replies still in flight */
    BR_CLOSING,    /* handles are closing; the loop ends when they are gone */
};

/* What fd 0 / fd 1 turned out to be. */
enum br_io_kind {
    BR_IO_PIPE, /* pipe or Unix socket: a uv_pipe_t */
    BR_IO_TTY,  /* a terminal: a uv_tty_t */
    BR_IO_FILE, /* a regular file: uv_fs_read for stdin, plain write(2) for stdout */
};

struct br_conn {
    uv_pipe_t pipe;
    struct bridge *br;
    uint64_t since; /* loop time when connected, for the reconnect backoff */
};

struct br_proc {
    uv_process_t proc;
    struct bridge *br;
    struct br_proc *next;
    int exited; /* set by the exit callback */
};

struct br_wreq {
    uv_write_t req;
    struct bridge *br;
    bool to_stdout;
    size_t len;
    char data[];
};

struct bridge {
    uv_loop_t loop;
    enum br_state state;
    int exit_status;

    /* options */
    const char *client;
    const char *config; /* absolute, or NULL */
    const char *state_dir_opt;
    char sock_path[PATH_MAX];

    /* stdio */
    enum br_io_kind in_kind, out_kind;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } in, out;
    uv_fs_t in_fs; /* BR_IO_FILE stdin: the read in progress */
    bool in_fs_busy;
    bool in_reading; /* stdin read interest is on */
    bool in_open, out_open;
    bool stdin_eof;
    size_t out_pending; /* stdout write requests not yet completed */
    struct core_framer in_fr, sock_fr;

    /* the daemon */
    struct br_conn *conn; /* NULL while disconnected */
    bool sock_reading;
    uv_timer_t timer;        /* connect polling, drain and flush deadlines */
    uint64_t deadline;       /* loop time when the current wait gives up; 0 = none */
    int lock_fd;             /* start.lock, held while we start a daemon; -1 otherwise */
    struct br_proc *procs;   /* daemons we spawned whose handles are still open */
    struct br_proc *spawned; /* the one we are waiting for, while we hold the lock */
    unsigned backoff_ms;     /* delay before the next reconnect when connections die young */
    unsigned spawn_failures; /* daemons we started that never listened, since the last attach */
    bool ever_connected;

    /* what the client said, for the replay */
    char *init_params; /* the client's initialize params (raw bytes), or NULL */
    size_t init_params_len;
    bool saw_initialized;
    char *level_params; /* the last logging/setLevel params, or NULL */
    size_t level_params_len;
    char **subs; /* resources/subscribe uri tokens (raw JSON strings) */
    size_t n_subs, cap_subs;
    unsigned replay_seq;
    char replay_init_id[48]; /* the internal id of the initialize being replayed, quoted */

    /* in flight: raw id bytes of client requests sent to the daemon */
    char **inflight;
    size_t *inflight_len;
    size_t n_inflight, cap_inflight;

    struct core_buf queue; /* client frames ("\n"-terminated) held while not BR_UP */
};

static void set_state(struct bridge *br, enum br_state st);
static void finish(struct bridge *br, int status);
static void connect_tick(struct bridge *br);
static void daemon_gone(struct bridge *br, const char *why);
static void start_sock_read(struct bridge *br);
static void start_stdin_read(struct bridge *br);
static void arm(struct bridge *br, uint64_t ms);
static void give_up(struct bridge *br, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *state_name(enum br_state st)
{
    switch (st) {
    case BR_CONNECTING:
        return "connecting";
    case BR_REPLAYING:
        return "replaying";
    case BR_UP:
        return "up";
    case BR_DRAINING:
        return "draining";
    case BR_CLOSING:
        return "closing";
    }
    return "?";
}

static void set_state(struct bridge *br, enum br_state st)
{
    core_log(CORE_LOG_DEBUG, MOD, "%s -> %s", state_name(br->state), state_name(st));
    br->state = st;
}

/* ------------------------------------------------------------------ output */

static uv_stream_t *out_stream(struct bridge *br)
{
    return (uv_stream_t *)&br->out;
}

static void on_write_done(uv_write_t *req, int status)
{
    struct br_wreq *w = container_of(req, struct br_wreq, req);
    struct bridge *br = w->br;
    bool to_stdout = w->to_stdout;
    core_free(w);
    if (to_stdout) {
        if (br->out_pending > 0)
            br->out_pending--;
        if (status != 0 && status != UV_ECANCELED) {
            core_log(CORE_LOG_INFO, MOD, "stdout: %s; the client is gone", uv_strerror(status));
            finish(br, br->exit_status);
            return;
        }
        if (br->state == BR_CLOSING) {
            if (br->out_pending == 0)
                finish(br, br->exit_status);
            return;
        }
        /* Back-pressure: resume reading the daemon once the client caught up. */
        if (br->conn && !br->sock_reading && out_stream(br)->write_queue_size < OUT_LOW_WATER)
            start_sock_read(br);
    } else {
        if (status != 0 && status != UV_ECANCELED)
            core_log(CORE_LOG_DEBUG, MOD, "socket write: %s", uv_strerror(status));
        if (br->conn && !br->in_reading && !br->stdin_eof && br->state != BR_CLOSING &&
            br->conn->pipe.write_queue_size < OUT_LOW_WATER)
            start_stdin_read(br);
    }
}

/* Writes p[0..n) and, if nl, a newline. Tries a direct write first; what does not fit is
 * copied and queued. Errors surface in the write callback or on the read side. */
static void stream_write(struct bridge *br, uv_stream_t *s, bool to_stdout, const char *p, size_t n,
                         bool nl)
{
    uv_buf_t bufs[2] = {uv_buf_init((char *)p, (unsigned)n), uv_buf_init("\n", 1)};
    unsigned nbufs = nl ? 2 : 1;
    size_t total = n + (nl ? 1 : 0);
    size_t done = 0;
    if (s->write_queue_size == 0) {
        int rc = uv_try_write(s, bufs, nbufs);
        if (rc > 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN && rc != UV_ENOSYS)
            core_log(CORE_LOG_DEBUG, MOD, "try_write: %s", uv_strerror(rc));
    }
    if (done == total)
        return;
    struct br_wreq *w = core_xmalloc(sizeof *w + (total - done));
    w->br = br;
    w->to_stdout = to_stdout;
    w->len = total - done;
    size_t off = 0;
    if (done < n) {
        memcpy(w->data, p + done, n - done);
        off = n - done;
    }
    if (nl)
        w->data[off++] = '\n';
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, s, &b, 1, on_write_done);
    if (rc != 0) {
        core_log(CORE_LOG_DEBUG, MOD, "write: %s", uv_strerror(rc));
        core_free(w);
        return;
    }
    if (to_stdout)
        br->out_pending++;
}

/* One complete frame to the client. */
static void to_client(struct bridge *br, const char *p, size_t n)
{
    if (!br->out_open)
        return;
    if (br->out_kind == BR_IO_FILE) {
        const char *parts[2] = {p, "\n"};
        size_t lens[2] = {n, 1};
        for (int i = 0; i < 2; i++) {
            size_t off = 0;
            while (off < lens[i]) {
                ssize_t w = write(1, parts[i] + off, lens[i] - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    core_log(CORE_LOG_INFO, MOD, "stdout: %s", strerror(errno));
                    return;
                }
                off += (size_t)w;
            }
        }
        return;
    }
    stream_write(br, out_stream(br), true, p, n, true);
    if (br->conn && br->sock_reading && out_stream(br)->write_queue_size > OUT_HIGH_WATER) {
        uv_read_stop((uv_stream_t *)&br->conn->pipe);
        br->sock_reading = false;
    }
}

/* One frame to the daemon (the connection must be up). */
static void to_daemon(struct bridge *br, const char *p, size_t n)
{
    uv_stream_t *s = (uv_stream_t *)&br->conn->pipe;
    stream_write(br, s, false, p, n, true);
    if (br->in_reading && s->write_queue_size > OUT_HIGH_WATER) {
        if (br->in_kind != BR_IO_FILE)
            uv_read_stop((uv_stream_t *)&br->in);
        br->in_reading = false;
    }
}

/* A JSON-RPC error reply to the client for the request with raw id bytes. */
static void error_to_client(struct bridge *br, const char *id, size_t id_len, const char *msg)
{
    struct core_buf b;
    core_buf_init(&b, 0);
    if (core_buf_appendf(
            &b, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"error\":{\"code\":-32603,\"message\":\"%s\"}}",
            (int)id_len, id, msg) == 0)
        to_client(br, b.data, b.len);
    core_buf_dispose(&b);
}

/* ------------------------------------------------------------------ tracking */

static bool span_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

static void inflight_add(struct bridge *br, const char *id, size_t n)
{
    if (br->n_inflight == br->cap_inflight) {
        br->cap_inflight = br->cap_inflight ? br->cap_inflight * 2 : 16;
        br->inflight = core_xrealloc(br->inflight, br->cap_inflight * sizeof *br->inflight);
        br->inflight_len =
            core_xrealloc(br->inflight_len, br->cap_inflight * sizeof *br->inflight_len);
    }
    br->inflight[br->n_inflight] = core_xmemdup(id, n);
    br->inflight_len[br->n_inflight] = n;
    br->n_inflight++;
}

static void inflight_remove(struct bridge *br, const char *id, size_t n)
{
    for (size_t i = 0; i < br->n_inflight; i++) {
        if (!span_eq(br->inflight[i], br->inflight_len[i], id, n))
            continue;
        core_free(br->inflight[i]);
        br->n_inflight--;
        br->inflight[i] = br->inflight[br->n_inflight];
        br->inflight_len[i] = br->inflight_len[br->n_inflight];
        return;
    }
}

/* Answers every request in flight with an error (the daemon that had them is gone). */
static void inflight_fail(struct bridge *br, const char *msg)
{
    for (size_t i = 0; i < br->n_inflight; i++) {
        error_to_client(br, br->inflight[i], br->inflight_len[i], msg);
        core_free(br->inflight[i]);
    }
    br->n_inflight = 0;
}

static void subs_remove(struct bridge *br, const char *uri, size_t n)
{
    for (size_t i = 0; i < br->n_subs; i++) {
        if (strlen(br->subs[i]) == n && memcmp(br->subs[i], uri, n) == 0) {
            core_free(br->subs[i]);
            br->subs[i] = br->subs[--br->n_subs];
            return;
        }
    }
}

static void subs_add(struct bridge *br, const char *uri, size_t n)
{
    subs_remove(br, uri, n);
    if (br->n_subs == br->cap_subs) {
        br->cap_subs = br->cap_subs ? br->cap_subs * 2 : 8;
        br->subs = core_xrealloc(br->subs, br->cap_subs * sizeof *br->subs);
    }
    br->subs[br->n_subs++] = core_xstrndup(uri, n);
}

static void save_copy(char **slot, size_t *len, const char *p, size_t n)
{
    core_free(*slot);
    *slot = core_xmemdup(p, n);
    *len = n;
}

/* Records what one client message (not a batch) means for the replay and the in-flight set. */
static void track_client(struct bridge *br, const char *p, const struct core_rpc_env *env)
{
    if (env->kind == CORE_RPC_REQUEST) {
        inflight_add(br, p + env->id.off, env->id.len);
        struct core_span v;
        if (strcmp(env->method_str, "initialize") == 0 && env->params.len) {
            save_copy(&br->init_params, &br->init_params_len, p + env->params.off, env->params.len);
        } else if (strcmp(env->method_str, "logging/setLevel") == 0 && env->params.len) {
            save_copy(&br->level_params, &br->level_params_len, p + env->params.off,
                      env->params.len);
        } else if (strcmp(env->method_str, "resources/subscribe") == 0 && env->params.len &&
                   core_json_obj_get(p, env->params, "uri", &v, NULL) == 0) {
            subs_add(br, p + v.off, v.len);
        } else if (strcmp(env->method_str, "resources/unsubscribe") == 0 && env->params.len &&
                   core_json_obj_get(p, env->params, "uri", &v, NULL) == 0) {
            subs_remove(br, p + v.off, v.len);
        }
    } else if (env->kind == CORE_RPC_NOTIFICATION) {
        struct core_span v;
        if (strcmp(env->method_str, "notifications/initialized") == 0)
            br->saw_initialized = true;
        else if (strcmp(env->method_str, "notifications/cancelled") == 0 && env->params.len &&
                 core_json_obj_get(p, env->params, "requestId", &v, NULL) == 0)
            inflight_remove(br, p + v.off, v.len); /* the daemon will not answer it */
    }
}

/* Sends one client frame to the daemon, recording it first. */
static void send_client_frame(struct bridge *br, const char *p, size_t n)
{
    struct core_rpc_env env;
    if (core_rpc_scan(p, n, &env) == 0) {
        if (env.kind == CORE_RPC_BATCH) {
            size_t pos = 0;
            struct core_span e;
            while (core_rpc_batch_next(p, n, &pos, &e) == 1) {
                struct core_rpc_env ee;
                if (core_rpc_scan(p + e.off, e.len, &ee) == 0)
                    track_client(br, p + e.off, &ee);
            }
        } else {
            track_client(br, p, &env);
        }
    }
    to_daemon(br, p, n);
}

/* Answers the requests in a frame that will never be sent. */
static void refuse_client_frame(struct bridge *br, const char *p, size_t n, const char *msg)
{
    struct core_rpc_env env;
    if (core_rpc_scan(p, n, &env) != 0)
        return;
    if (env.kind == CORE_RPC_REQUEST) {
        error_to_client(br, p + env.id.off, env.id.len, msg);
    } else if (env.kind == CORE_RPC_BATCH) {
        size_t pos = 0;
        struct core_span e;
        while (core_rpc_batch_next(p, n, &pos, &e) == 1) {
            struct core_rpc_env ee;
            if (core_rpc_scan(p + e.off, e.len, &ee) == 0 && ee.kind == CORE_RPC_REQUEST)
                error_to_client(br, p + e.off + ee.id.off, ee.id.len, msg);
        }
    }
}

/* Sends (or, for refuse, answers) every queued client frame and empties the queue. */
static void queue_flush(struct bridge *br, bool refuse)
{
    struct core_buf q = br->queue; /* sending may queue nothing new: we are past BR_REPLAYING */
    core_buf_init(&br->queue, QUEUE_LIMIT);
    size_t off = 0;
    while (off < q.len) {
        char *nl = memchr(q.data + off, '\n', q.len - off);
        size_t n = (size_t)(nl - (q.data + off));
        if (refuse)
            refuse_client_frame(br, q.data + off, n, "agentgate daemon unavailable");
        else
            send_client_frame(br, q.data + off, n);
        off += n + 1;
    }
    core_buf_dispose(&q);
}

/* ------------------------------------------------------------------ frames */

static void on_client_frame(void *ctx, const char *p, size_t n)
{
    struct bridge *br = ctx;
    switch (br->state) {
    case BR_UP:
    case BR_DRAINING:
        send_client_frame(br, p, n);
        return;
    case BR_CONNECTING:
    case BR_REPLAYING:
        if (core_buf_reserve(&br->queue, n + 1) != 0) {
            core_log(CORE_LOG_WARN, MOD, "queue full while the daemon is away; refusing a frame");
            refuse_client_frame(br, p, n, "agentgate daemon unavailable; request dropped");
            return;
        }
        if (core_buf_append(&br->queue, p, n) != 0 || core_buf_append(&br->queue, "\n", 1) != 0)
            abort(); /* reserved above */
        return;
    case BR_CLOSING:
        return;
    }
}

static bool is_internal_id(const char *p, const struct core_rpc_env *env)
{
    return env->id_type == CORE_JSON_STRING && env->id.len > sizeof INTERNAL_ID &&
           memcmp(p + env->id.off + 1, INTERNAL_ID, sizeof INTERNAL_ID - 1) == 0;
}

static void replay_rest(struct bridge *br);

/* A daemon message (not a batch): returns false when it must not reach the client. */
static bool track_daemon(struct bridge *br, const char *p, const struct core_rpc_env *env)
{
    if (env->kind != CORE_RPC_RESULT && env->kind != CORE_RPC_ERROR)
        return true;
    if (is_internal_id(p, env)) {
        if (br->state == BR_REPLAYING &&
            span_eq(p + env->id.off, env->id.len, br->replay_init_id, strlen(br->replay_init_id))) {
            if (env->kind == CORE_RPC_ERROR)
                core_log(CORE_LOG_WARN, MOD, "the daemon refused the replayed initialize");
            replay_rest(br);
        }
        return false;
    }
    inflight_remove(br, p + env->id.off, env->id.len);
    return true;
}

/* The daemon's refusal of the hello: an error with id null whose message starts
 * TP_BRIDGE_REFUSED. */
static bool refused(const char *p, const struct core_rpc_env *env)
{
    static const char mark[] = "\"" TP_BRIDGE_REFUSED;
    struct core_span msg;
    enum core_json_type t;
    return env->kind == CORE_RPC_ERROR && env->id_type == CORE_JSON_NULL &&
           core_json_obj_get(p, env->error, "message", &msg, &t) == 0 && t == CORE_JSON_STRING &&
           msg.len > sizeof mark && memcmp(p + msg.off, mark, sizeof mark - 1) == 0;
}

static void on_daemon_frame(void *ctx, const char *p, size_t n)
{
    struct bridge *br = ctx;
    if (br->state == BR_CLOSING)
        return;
    struct core_rpc_env env;
    if (core_rpc_scan(p, n, &env) != 0) {
        core_log(CORE_LOG_WARN, MOD, "dropping a malformed frame from the daemon (%zu bytes)", n);
        return;
    }
    if (env.kind == CORE_RPC_BATCH) {
        size_t pos = 0;
        struct core_span e;
        while (core_rpc_batch_next(p, n, &pos, &e) == 1) {
            struct core_rpc_env ee;
            if (core_rpc_scan(p + e.off, e.len, &ee) == 0)
                (void)track_daemon(br, p + e.off, &ee); /* batches pass whole */
        }
    } else if (refused(p, &env)) {
        /* The daemon will not take this client (unknown --client, another user): retrying
         * cannot help. */
        struct core_span msg;
        enum core_json_type t;
        (void)core_json_obj_get(p, env.error, "message", &msg, &t);
        fprintf(stderr, "%.*s\n", (int)(msg.len - 2), p + msg.off + 1);
        to_client(br, p, n);
        finish(br, 1);
        return;
    } else if (!track_daemon(br, p, &env)) {
        return;
    }
    to_client(br, p, n);
    if (br->state == BR_DRAINING && br->n_inflight == 0)
        finish(br, 0);
}

/* ------------------------------------------------------------------ stdin */

static void on_in_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    struct bridge *br = h->data;
    size_t got = 0;
    char *p = core_framer_space(&br->in_fr, want, &got);
    *buf = uv_buf_init(p, p ? (unsigned)got : 0);
}

static void stdin_ended(struct bridge *br)
{
    br->stdin_eof = true;
    br->in_reading = false;
    core_log(CORE_LOG_DEBUG, MOD, "stdin closed");
    switch (br->state) {
    case BR_UP:
        if (br->n_inflight == 0) {
            finish(br, 0);
        } else {
            set_state(br, BR_DRAINING);
            br->deadline = uv_now(&br->loop) + DRAIN_MS;
            arm(br, DRAIN_MS);
        }
        return;
    case BR_CONNECTING:
    case BR_REPLAYING:
        return; /* the queue goes out once connected; then we drain */
    case BR_DRAINING:
    case BR_CLOSING:
        return;
    }
}

static void in_bytes(struct bridge *br, ssize_t nread)
{
    if (nread > 0) {
        int rc = core_framer_feed(&br->in_fr, (size_t)nread, on_client_frame, br, 0);
        if (rc != 0) {
            core_log(CORE_LOG_ERROR, MOD, "stdin: a frame is longer than %u bytes", MAX_FRAME);
            static const char too_long[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{"
                                           "\"code\":-32600,\"message\":\"frame too long\"}}";
            to_client(br, too_long, sizeof too_long - 1);
            finish(br, 1);
        }
        return;
    }
    if (nread == 0)
        return;
    if (nread != UV_EOF)
        core_log(CORE_LOG_INFO, MOD, "stdin: %s", uv_strerror((int)nread));
    if (br->in_kind != BR_IO_FILE)
        uv_read_stop((uv_stream_t *)&br->in);
    stdin_ended(br);
}

static void on_in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct bridge *br = s->data;
    if (br->state == BR_CLOSING)
        return;
    in_bytes(br, nread);
}

static void on_in_fs_read(uv_fs_t *req)
{
    struct bridge *br = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    br->in_fs_busy = false;
    if (br->state == BR_CLOSING)
        return;
    in_bytes(br, r == 0 ? UV_EOF : r);
    if (r > 0 && br->in_reading && !br->in_fs_busy)
        start_stdin_read(br);
}

static void start_stdin_read(struct bridge *br)
{
    if (br->stdin_eof || br->state == BR_CLOSING)
        return;
    br->in_reading = true;
    if (br->in_kind != BR_IO_FILE) {
        int rc = uv_read_start((uv_stream_t *)&br->in, on_in_alloc, on_in_read);
        if (rc != 0 && rc != UV_EALREADY) {
            core_log(CORE_LOG_ERROR, MOD, "stdin: %s", uv_strerror(rc));
            stdin_ended(br);
        }
        return;
    }
    if (br->in_fs_busy)
        return;
    size_t got = 0;
    char *p = core_framer_space(&br->in_fr, 65536, &got);
    if (p == NULL) {
        stdin_ended(br);
        return;
    }
    uv_buf_t b = uv_buf_init(p, (unsigned)got);
    br->in_fs.data = br;
    if (uv_fs_read(&br->loop, &br->in_fs, 0, &b, 1, -1, on_in_fs_read) == 0)
        br->in_fs_busy = true;
    else
        stdin_ended(br);
}

/* ------------------------------------------------------------------ the daemon socket */

static void on_sock_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    struct br_conn *c = h->data;
    size_t got = 0;
    char *p = core_framer_space(&c->br->sock_fr, want, &got);
    *buf = uv_buf_init(p, p ? (unsigned)got : 0);
}

static void on_sock_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct br_conn *c = s->data;
    struct bridge *br = c->br;
    if (br->conn != c || br->state == BR_CLOSING)
        return;
    if (nread > 0) {
        int rc = core_framer_feed(&br->sock_fr, (size_t)nread, on_daemon_frame, br, 0);
        if (rc != 0 && br->state != BR_CLOSING)
            daemon_gone(br, "a frame from the daemon is too long");
        return;
    }
    if (nread == 0)
        return;
    daemon_gone(br, nread == UV_EOF ? "closed" : uv_strerror((int)nread));
}

static void start_sock_read(struct bridge *br)
{
    int rc = uv_read_start((uv_stream_t *)&br->conn->pipe, on_sock_alloc, on_sock_read);
    br->sock_reading = rc == 0 || rc == UV_EALREADY;
}

static void on_conn_closed(uv_handle_t *h)
{
    core_free(h->data);
}

static void conn_close(struct bridge *br)
{
    struct br_conn *c = br->conn;
    if (c == NULL)
        return;
    br->conn = NULL;
    br->sock_reading = false;
    /* The framer is reset in attach(): this may run inside its own callback. */
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* Connects synchronously (a Unix socket connect does not wait for the peer's accept).
 * Returns 0 and the fd, or a UV_E* code. */
GW_MUST_CHECK static int try_connect(const char *path, int *out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path)
        return UV_ENAMETOOLONG;
    memcpy(sa.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        if (errno == EINTR)
            continue;
        int err = uv_translate_sys_error(errno);
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

/* Appends s as a JSON string body (without quotes). */
GW_MUST_CHECK static int append_json_str(struct core_buf *b, const char *s)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            rc = core_buf_appendf(b, "\\%c", ch);
        else if (ch < 0x20)
            rc = core_buf_appendf(b, "\\u%04x", ch);
        else
            rc = core_buf_append(b, s, 1);
    }
    return rc;
}

/* Builds an internal request frame and sends it. */
static void send_internal(struct bridge *br, const char *kind, const char *method,
                          const char *params, size_t params_len, char *id_out, size_t id_cap)
{
    char id[48];
    snprintf(id, sizeof id, "\"" INTERNAL_ID "%s-%u\"", kind, ++br->replay_seq);
    if (id_out)
        snprintf(id_out, id_cap, "%s", id);
    struct core_buf b;
    core_buf_init(&b, 0);
    int rc = core_buf_appendf(
        &b, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"%s\",\"params\":", id, method);
    if (rc == 0)
        rc = core_buf_append(&b, params, params_len);
    if (rc == 0)
        rc = core_buf_append(&b, "}", 1);
    if (rc == 0)
        to_daemon(br, b.data, b.len);
    core_buf_dispose(&b);
}

/* After the replayed initialize was answered: the rest of the client's state, then its queue. */
static void replay_rest(struct bridge *br)
{
    uv_timer_stop(&br->timer);
    br->deadline = 0;
    static const char initialized[] =
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    if (br->saw_initialized)
        to_daemon(br, initialized, sizeof initialized - 1);
    for (size_t i = 0; i < br->n_subs; i++) {
        struct core_buf b;
        core_buf_init(&b, 0);
        if (core_buf_appendf(&b, "{\"uri\":%s}", br->subs[i]) == 0)
            send_internal(br, "sub", "resources/subscribe", b.data, b.len, NULL, 0);
        core_buf_dispose(&b);
    }
    if (br->level_params)
        send_internal(br, "level", "logging/setLevel", br->level_params, br->level_params_len, NULL,
                      0);
    core_log(CORE_LOG_INFO, MOD, "reconnected to the daemon; session restored");
    set_state(br, BR_UP);
    queue_flush(br, false);
    if (br->stdin_eof && br->state == BR_UP) {
        br->stdin_eof = false; /* stdin_ended sets it again */
        stdin_ended(br);
    }
}

static void begin_connecting(struct bridge *br, unsigned delay_ms);

static void release_lock(struct bridge *br)
{
    if (br->lock_fd >= 0) {
        close(br->lock_fd); /* drops the flock */
        br->lock_fd = -1;
    }
    br->spawned = NULL;
}

/* A connection is open on fd: check who listens, then hello, then the replay or straight to
 * pumping. */
static void attach(struct bridge *br, int fd)
{
    /* Whoever listens gets the client's every request: it must be us. A listener of another
     * user (a socket planted where ours should be) gets nothing, not even the hello, and
     * retrying cannot help. */
    uid_t me = geteuid(), peer = me;
    if (core_peer_uid(fd, &peer) != 0) {
        int e = errno;
        close(fd);
        give_up(br, "%s: cannot tell who listens: %s", br->sock_path, strerror(e));
        return;
    }
    if (peer != me) {
        close(fd);
        give_up(br, "%s: the listener runs as uid %u, not as you (uid %u); refusing to talk to it",
                br->sock_path, (unsigned)peer, (unsigned)me);
        return;
    }
    release_lock(br);
    uv_timer_stop(&br->timer);
    br->deadline = 0;
    struct br_conn *c = core_xcalloc(1, sizeof *c);
    c->br = br;
    uv_pipe_init(&br->loop, &c->pipe, 0);
    c->pipe.data = c;
    int rc = uv_pipe_open(&c->pipe, fd);
    if (rc != 0) {
        close(fd);
        core_log(CORE_LOG_ERROR, MOD, "socket: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
        finish(br, 1);
        return;
    }
    c->since = uv_now(&br->loop);
    br->conn = c;
    br->spawn_failures = 0;
    core_framer_dispose(&br->sock_fr); /* a partial frame of the old connection is garbage */
    core_framer_init(&br->sock_fr, MAX_FRAME);

    struct core_buf hello;
    core_buf_init(&hello, 0);
    rc = core_buf_appendf(&hello, "{\"%s\":%d,\"%s\":\"", TP_BRIDGE_HELLO_KEY,
                          TP_BRIDGE_HELLO_VERSION, TP_BRIDGE_HELLO_CLIENT);
    if (rc == 0)
        rc = append_json_str(&hello, br->client);
    if (rc == 0)
        rc = core_buf_append_str(&hello, "\"}");
    if (rc == 0)
        to_daemon(br, hello.data, hello.len);
    core_buf_dispose(&hello);
    start_sock_read(br);

    bool again = br->ever_connected;
    br->ever_connected = true;
    if (again && br->init_params) {
        set_state(br, BR_REPLAYING);
        br->deadline = uv_now(&br->loop) + REPLAY_MS;
        arm(br, REPLAY_MS);
        send_internal(br, "init", "initialize", br->init_params, br->init_params_len,
                      br->replay_init_id, sizeof br->replay_init_id);
        return;
    }
    if (again)
        core_log(CORE_LOG_INFO, MOD, "reconnected to the daemon");
    set_state(br, BR_UP);
    queue_flush(br, false);
    if (br->stdin_eof && br->state == BR_UP) {
        br->stdin_eof = false;
        stdin_ended(br);
    }
}

/* ------------------------------------------------------------------ starting a daemon */


/* The daemon's state directory, as `serve` computes it. */
static void state_dir(struct bridge *br, char *out, size_t cap)
{
    if (br->state_dir_opt) {
        snprintf(out, cap, "%s", br->state_dir_opt);
        return;
    }
    core_path_default_state(out, cap);
}

/* Prints the last lines of <state dir>/daemon.log to stderr. */
static void print_log_tail(struct bridge *br)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    state_dir(br, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/daemon.log", dir);
    int fd;
    if (core_file_open(path, O_RDONLY, 0, &fd, NULL, 0) != 0)
        return;
    char tail[4096];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0;
    ssize_t n = pread(fd, tail, sizeof tail - 1, start);
    close(fd);
    if (n <= 0)
        return;
    tail[n] = '\0';
    const char *p = tail;
    if (start > 0 && (p = strchr(tail, '\n')) != NULL)
        p++;
    else if (p == NULL)
        p = tail;
    fprintf(stderr, "agentgate: bridge: the daemon's log (%s) ends with:\n%s%s", path, p,
            n > 0 && tail[n - 1] != '\n' ? "\n" : "");
}

static void on_proc_closed(uv_handle_t *h)
{
    core_free(container_of((uv_process_t *)h, struct br_proc, proc));
}

static void proc_close(struct bridge *br, struct br_proc *bp)
{
    for (struct br_proc **pp = &br->procs; *pp; pp = &(*pp)->next) {
        if (*pp == bp) {
            *pp = bp->next;
            break;
        }
    }
    if (br->spawned == bp)
        br->spawned = NULL;
    uv_close((uv_handle_t *)&bp->proc, on_proc_closed);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
    struct br_proc *bp = container_of(p, struct br_proc, proc);
    struct bridge *br = bp->br;
    core_log(CORE_LOG_INFO, MOD, "daemon pid %d exited (status %lld, signal %d)", p->pid,
             (long long)status, sig);
    bool waiting = br->spawned == bp;
    proc_close(br, bp);
    if (waiting && br->state == BR_CONNECTING) {
        br->deadline = uv_now(&br->loop); /* the next tick decides */
        uv_timer_stop(&br->timer);
        connect_tick(br);
    }
}

/* Starts `<self> serve ...` detached. Returns 0 or a UV_E* code with a message in err. */
GW_MUST_CHECK static int spawn_daemon(struct bridge *br, char *err, size_t errlen)
{
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        core_set_err(err, errlen, "cannot find our own binary: %s", strerror(errno));
        return uv_translate_sys_error(errno);
    }
    self[sl] = '\0';
    char dir[PATH_MAX], logp[PATH_MAX + 16];
    state_dir(br, dir, sizeof dir);
    /* As serve checks it: daemon.log must not land in (or through) someone else's directory. */
    int rc = core_path_ensure_private_dir(dir, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(logp, sizeof logp, "%s/daemon.log", dir);
    int logfd;
    rc = core_file_open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600, &logfd, err, errlen);
    if (rc != 0)
        return rc;

    char *args[14];
    int n = 0;
    args[n++] = self;
    args[n++] = "serve";
    if (br->config) {
        args[n++] = "--config";
        args[n++] = (char *)br->config;
    }
    args[n++] = "--socket";
    args[n++] = br->sock_path;
    /* The daemon logs there itself, so that it can rotate the file; stdout and stderr go there
     * too until it does (an early failure is read back from it). */
    args[n++] = "--log-file";
    args[n++] = logp;
    if (br->state_dir_opt) {
        args[n++] = "--state-dir";
        args[n++] = dir;
    }
    args[n] = NULL;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = logfd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = logfd;
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.file = self;
    opts.args = args;
    opts.cwd = "/";
    opts.flags = UV_PROCESS_DETACHED;
    opts.stdio = stdio;
    opts.stdio_count = 3;
    opts.exit_cb = on_proc_exit;

    struct br_proc *bp = core_xcalloc(1, sizeof *bp);
    bp->br = br;
    rc = uv_spawn(&br->loop, &bp->proc, &opts);
    close(logfd);
    if (rc != 0) {
        core_set_err(err, errlen, "%s: %s", self, uv_strerror(rc));
        uv_close((uv_handle_t *)&bp->proc, on_proc_closed);
        return rc;
    }
    uv_unref((uv_handle_t *)&bp->proc);
    bp->next = br->procs;
    br->procs = bp;
    br->spawned = bp;
    core_log(CORE_LOG_INFO, MOD, "started the daemon (pid %d); log in %s", bp->proc.pid, logp);
    return 0;
}

/* Takes start.lock without blocking: 0, UV_EAGAIN when another bridge holds it, or an error
 * with a message in err. */
GW_MUST_CHECK static int take_lock(struct bridge *br, char *err, size_t errlen)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (core_path_dir_of(br->sock_path, dir, sizeof dir) != 0) {
        core_set_err(err, errlen, "%s: path too long", br->sock_path);
        return UV_ENAMETOOLONG;
    }
    /* The daemon we start will listen here: the directory must be ours alone. */
    int rc = core_path_ensure_private_dir(dir, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof path, "%s/start.lock", dir);
    int fd;
    rc = core_file_open(path, O_RDWR | O_CREAT, 0600, &fd, err, errlen);
    if (rc != 0)
        return rc;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        core_set_err(err, errlen, "%s: %s", path, strerror(e));
        return e == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(e);
    }
    br->lock_fd = fd;
    return 0;
}

static void give_up(struct bridge *br, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("agentgate: bridge: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    release_lock(br);
    queue_flush(br, true);
    finish(br, 1);
}

static void on_timer(uv_timer_t *t)
{
    struct bridge *br = container_of(t, struct bridge, timer);
    connect_tick(br);
}

static void arm(struct bridge *br, uint64_t ms)
{
    uv_timer_start(&br->timer, on_timer, ms, 0);
}

/* One step of "connect, else start a daemon and wait for it"; also the drain deadline. */
static void connect_tick(struct bridge *br)
{
    uint64_t now = uv_now(&br->loop);
    if (br->state == BR_DRAINING) {
        if (now >= br->deadline) {
            core_log(CORE_LOG_INFO, MOD, "%zu repl%s still in flight at exit", br->n_inflight,
                     br->n_inflight == 1 ? "y" : "ies");
            finish(br, 0);
        } else {
            arm(br, br->deadline - now);
        }
        return;
    }
    if (br->state == BR_REPLAYING) {
        if (now >= br->deadline) {
            core_log(CORE_LOG_WARN, MOD, "no reply to the replayed initialize; carrying on");
            replay_rest(br);
        } else {
            arm(br, br->deadline - now);
        }
        return;
    }
    if (br->state != BR_CONNECTING)
        return;
    int fd = -1;
    int rc = try_connect(br->sock_path, &fd);
    if (rc == 0) {
        attach(br, fd);
        return;
    }
    if (rc != UV_ENOENT && rc != UV_ECONNREFUSED) {
        give_up(br, "cannot connect to %s: %s", br->sock_path, uv_strerror(rc));
        return;
    }
    if (br->lock_fd < 0) {
        char err[PATH_MAX + 200];
        rc = take_lock(br, err, sizeof err);
        if (rc == UV_EAGAIN) {
            /* Another bridge is starting the daemon: keep polling the socket. */
            if (br->deadline == 0)
                br->deadline = now + OTHER_WAIT_MS;
            if (now >= br->deadline) {
                give_up(br, "timed out waiting for the daemon another bridge is starting");
                return;
            }
            arm(br, POLL_MS);
            return;
        }
        if (rc != 0) {
            give_up(br, "cannot lock the start of the daemon: %s", err);
            return;
        }
        /* Whoever held the lock before us may have started one meanwhile. */
        if (try_connect(br->sock_path, &fd) == 0) {
            attach(br, fd);
            return;
        }
        rc = spawn_daemon(br, err, sizeof err);
        if (rc != 0) {
            give_up(br, "cannot start the daemon: %s", err);
            return;
        }
        br->deadline = now + SPAWN_WAIT_MS;
        arm(br, POLL_MS);
        return;
    }
    if (br->spawned == NULL || now >= br->deadline) {
        const char *what = br->spawned ? "did not start listening within 5 s" : "exited early";
        if (br->ever_connected && ++br->spawn_failures < SPAWN_RETRIES) {
            /* Maybe the old daemon was still shutting down and held the socket: try again. */
            core_log(CORE_LOG_WARN, MOD, "the daemon we started %s; retrying", what);
            release_lock(br);
            begin_connecting(br, 500 * br->spawn_failures);
            return;
        }
        print_log_tail(br);
        give_up(br, "the daemon %s (socket %s)", what, br->sock_path);
        return;
    }
    arm(br, POLL_MS);
}

static void begin_connecting(struct bridge *br, unsigned delay_ms)
{
    set_state(br, BR_CONNECTING);
    br->deadline = 0;
    if (delay_ms)
        arm(br, delay_ms);
    else
        connect_tick(br);
}

/* The connection ended: fail what was in flight and reconnect (or finish after stdin EOF). */
static void daemon_gone(struct bridge *br, const char *why)
{
    uint64_t lived = br->conn ? uv_now(&br->loop) - br->conn->since : 0;
    core_log(CORE_LOG_WARN, MOD, "daemon connection lost (%s)", why);
    conn_close(br);
    inflight_fail(br, "agentgate daemon went away; retrying");
    if (br->state == BR_DRAINING || br->stdin_eof) {
        finish(br, 0);
        return;
    }
    if (lived > 2000)
        br->backoff_ms = 0;
    unsigned delay = br->backoff_ms;
    br->backoff_ms = br->backoff_ms ? (br->backoff_ms * 2 > 2000 ? 2000 : br->backoff_ms * 2) : 100;
    begin_connecting(br, delay);
}

/* ------------------------------------------------------------------ teardown */

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void on_flush_timeout(uv_timer_t *t)
{
    struct bridge *br = container_of(t, struct bridge, timer);
    core_log(CORE_LOG_INFO, MOD, "stdout did not drain; exiting anyway");
    br->out_pending = 0;
    finish(br, br->exit_status);
}

/* Ends the session: closes the socket and stdin at once, stdout once drained (bounded). May be
 * called again; the last call closes what is left. */
static void finish(struct bridge *br, int status)
{
    if (br->state != BR_CLOSING) {
        set_state(br, BR_CLOSING);
        br->exit_status = status;
        release_lock(br);
        conn_close(br);
        if (br->in_open) {
            br->in_open = false;
            if (br->in_kind != BR_IO_FILE)
                uv_close((uv_handle_t *)&br->in, on_closed_noop);
        }
        while (br->procs)
            proc_close(br, br->procs);
        uv_timer_stop(&br->timer);
        if (br->out_pending > 0) {
            uv_timer_start(&br->timer, on_flush_timeout, FLUSH_MS, 0);
            return;
        }
    }
    if (br->out_pending > 0)
        return;
    if (br->out_open) {
        br->out_open = false;
        if (br->out_kind != BR_IO_FILE)
            uv_close((uv_handle_t *)&br->out, on_closed_noop);
    }
    if (!uv_is_closing((uv_handle_t *)&br->timer))
        uv_close((uv_handle_t *)&br->timer, on_closed_noop);
}

/* ------------------------------------------------------------------ setup */

GW_MUST_CHECK static int open_stdio(struct bridge *br, int fd, bool readable)
{
    uv_handle_type t = uv_guess_handle(fd);
    void *h = readable ? (void *)&br->in : (void *)&br->out;
    enum br_io_kind *kind = readable ? &br->in_kind : &br->out_kind;
    int rc;
    switch (t) {
    case UV_TTY:
        *kind = BR_IO_TTY;
        rc = uv_tty_init(&br->loop, h, fd, readable);
        break;
    case UV_FILE:
        *kind = BR_IO_FILE;
        return 0;
    case UV_NAMED_PIPE:
    case UV_TCP:
    case UV_UDP:
    default:
        *kind = BR_IO_PIPE;
        rc = uv_pipe_init(&br->loop, h, 0);
        if (rc == 0) {
            rc = uv_pipe_open(h, fd);
            if (rc != 0)
                uv_close(h, on_closed_noop);
        }
        break;
    }
    if (rc == 0)
        ((uv_handle_t *)h)->data = br;
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: agentgate bridge [--client NAME] [--socket PATH] [--config FILE]\n"
               "                        [--state-dir DIR]\n"
               "\n"
               "A stdio MCP server connected to the agentgate daemon (started if none runs).\n"
               "  --client NAME    the [client.NAME] this is (needed once the config has clients)\n"
               "  --socket PATH    the daemon's socket, default "
               "$XDG_RUNTIME_DIR/agentgate/agentgate.sock\n"
               "  --config FILE    the config a daemon started by the bridge uses\n"
               "  --state-dir DIR  the daemon's state directory (daemon.log goes there)\n");
}

static void free_state(struct bridge *br)
{
    core_framer_dispose(&br->in_fr);
    core_framer_dispose(&br->sock_fr);
    core_buf_dispose(&br->queue);
    for (size_t i = 0; i < br->n_inflight; i++)
        core_free(br->inflight[i]);
    core_free(br->inflight);
    core_free(br->inflight_len);
    for (size_t i = 0; i < br->n_subs; i++)
        core_free(br->subs[i]);
    core_free(br->subs);
    core_free(br->init_params);
    core_free(br->level_params);
}

int br_bridge_main(int argc, char **argv)
{
    const char *opt_client = "", *opt_socket = NULL, *opt_config = NULL, *opt_state = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--client") == 0      ? &opt_client
                            : strcmp(a, "--socket") == 0    ? &opt_socket
                            : strcmp(a, "--config") == 0    ? &opt_config
                            : strcmp(a, "--state-dir") == 0 ? &opt_state
                                                            : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "agentgate: bridge: %s '%s'\n",
                    slot ? "missing value for" : "unknown option", a);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    signal(SIGPIPE, SIG_IGN);

    static struct bridge bridge; /* one per process; static keeps main's stack small */
    struct bridge *br = &bridge;
    memset(br, 0, sizeof *br);
    br->client = opt_client;
    br->state_dir_opt = opt_state;
    br->lock_fd = -1;

    /* Paths handed to a daemon we start are absolute: it runs in "/". Without --config, the
     * default config file (when there is one) says where the daemon's socket is, as for serve. */
    char config_abs[PATH_MAX], default_config[PATH_MAX];
    opt_config = core_path_config(opt_config, default_config, sizeof default_config);
    if (opt_config) {
        if (realpath(opt_config, config_abs) == NULL) {
            fprintf(stderr, "agentgate: bridge: config %s: %s\n", opt_config, strerror(errno));
            return 2;
        }
        br->config = config_abs;
    }
    const char *sock = opt_socket;
    struct core_config *cfg = NULL;
    if (sock == NULL && br->config) {
        char err[512];
        if (core_config_load(br->config, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "agentgate: bridge: %s\n", err);
            return 2;
        }
        if (cfg->socket && strcmp(cfg->socket, "off") == 0) {
            fprintf(stderr, "agentgate: bridge: %s sets socket = off; the bridge needs it\n",
                    br->config);
            core_config_free(cfg);
            return 2;
        }
        sock = cfg->socket;
    }
    int n;
    if (sock) {
        char cwd[PATH_MAX];
        if (sock[0] != '/' && getcwd(cwd, sizeof cwd) != NULL)
            n = snprintf(br->sock_path, sizeof br->sock_path, "%s/%s", cwd, sock);
        else
            n = snprintf(br->sock_path, sizeof br->sock_path, "%s", sock);
    } else {
        n = core_path_default_socket(br->sock_path, sizeof br->sock_path) == 0
                ? (int)strlen(br->sock_path)
                : -1;
    }
    core_config_free(cfg);
    if (n < 0 || (size_t)n >= sizeof br->sock_path) {
        fprintf(stderr, "agentgate: bridge: socket path too long\n");
        return 2;
    }
    /* Nothing goes to a socket in a directory that someone else owns or can write to: they
     * could listen there in the daemon's place. A missing directory is made (0700) before a
     * daemon is started in it (take_lock). */
    char sock_dir[PATH_MAX], perr[PATH_MAX + 200];
    if (core_path_dir_of(br->sock_path, sock_dir, sizeof sock_dir) == 0) {
        int prc = core_path_check_private_dir(sock_dir, perr, sizeof perr);
        if (prc != 0 && prc != -ENOENT) {
            fprintf(stderr, "agentgate: bridge: %s\n", perr);
            return 1;
        }
    }

    uv_loop_init(&br->loop);
    core_framer_init(&br->in_fr, MAX_FRAME);
    core_framer_init(&br->sock_fr, MAX_FRAME);
    core_buf_init(&br->queue, QUEUE_LIMIT);
    uv_timer_init(&br->loop, &br->timer);

    int rc = open_stdio(br, 0, true);
    if (rc == 0) {
        br->in_open = br->in_kind != BR_IO_FILE;
        rc = open_stdio(br, 1, false);
        if (rc != 0 && br->in_open) {
            uv_close((uv_handle_t *)&br->in, on_closed_noop);
            br->in_open = false;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "agentgate: bridge: cannot use stdin/stdout: %s\n", uv_strerror(rc));
        uv_close((uv_handle_t *)&br->timer, on_closed_noop);
        uv_run(&br->loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&br->loop); /* best effort on this error path */
        free_state(br);
        return 1;
    }
    br->out_open = true;

    /* The fast path: a daemon is running; connect before anything else. */
    set_state(br, BR_CONNECTING);
    int fd = -1;
    rc = try_connect(br->sock_path, &fd);
    if (rc == 0) {
        attach(br, fd);
    } else if (rc == UV_ENOENT || rc == UV_ECONNREFUSED) {
        connect_tick(br);
    } else {
        give_up(br, "cannot connect to %s: %s", br->sock_path, uv_strerror(rc));
    }
    if (br->state != BR_CLOSING)
        start_stdin_read(br);

    uv_run(&br->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&br->loop) != 0)
        core_log(CORE_LOG_DEBUG, MOD, "some handles were still open at exit");
    free_state(br);
    return br->exit_status;
}
