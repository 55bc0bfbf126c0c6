/* A supervised stdio child process.
 *
 * The child runs in its own session and process group (UV_PROCESS_DETACHED makes libuv call
 * setsid()), so pgid == pid and the whole tree it starts can be signalled with kill(-pid, ...).
 * With opts->self_exe the child is first our own binary in `__exec` mode, which sets
 * PR_SET_PDEATHSIG before exec'ing the real program, so nothing outlives the daemon.
 *
 * Lifetime: the object embeds six libuv handles (process, three pipes, the stop timer and the
 * drain idle). on_exit fires once the process has been reaped, stdout and stderr have reached
 * EOF (every frame was delivered) and the stderr log file is flushed. tp_child_free() marks the
 * object closing and closes the handles; the last close callback (or the last log write) frees
 * the memory, so free is safe from inside any of our callbacks. */
#include "transports/child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/frame.h"
#include "core/log.h"

extern char **environ;

#define DEFAULT_MAX_FRAME ((size_t)16 << 20)
#define DEFAULT_GRACE_MS 2000
#define FRAMES_PER_ROUND 64            /* frames handed out per read (or drain) callback */
#define BIG_FRAME ((size_t)256 << 10)  /* after a frame this long, give the buffer back */
#define STDERR_RING 16384              /* bytes of recent stderr lines kept in memory */
#define STDERR_LINE_MAX 4096           /* longer stderr lines are split */
#define LOG_PENDING_MAX ((size_t)1 << 20) /* stderr bytes queued for the log file at most */
#define LOG_KEEP 3                        /* rotated log files kept: NAME.log.1 .. .3 */
#define WRITE_KEEP_CAP ((size_t)64 << 10) /* stdin buffers above this are freed when idle */
#define SCRATCH_SIZE 8192
#define PARENT_ENV "AGENTGATE_PARENT_PID"

/* Internal (GW_STATIC, reached by the tests). */
GW_STATIC char **child_build_env(char *const *base, const struct tp_child_opts *opts, char *extra);

/* The stop sequence. Each STOP_* stage lasts stop_grace_ms unless the child is gone first. */
enum child_state {
    CHILD_RUNNING,   /* spawned; stdin open; no stop requested */
    CHILD_STOP_EOF,  /* stdin closing (queued bytes are flushed first); waiting for the exit */
    CHILD_STOP_TERM, /* SIGTERM sent to the process group */
    CHILD_STOP_KILL, /* SIGKILL sent to the process group; waiting for the exit and the EOFs */
    CHILD_EXITED,    /* on_exit was delivered; no more callbacks */
};

/* Our write end of the child's stdin. */
enum stdin_state {
    IN_OPEN,     /* accepting writes */
    IN_FLUSHING, /* stop requested: close once everything queued is written */
    IN_CLOSED,   /* uv_close called */
};

/* Our read end of the child's stdout. */
enum stdout_state {
    OUT_READING,    /* uv_read_start active, frames go to on_frame */
    OUT_PAUSED,     /* a round hit FRAMES_PER_ROUND: reading stopped, the idle drains the rest */
    OUT_DISCARDING, /* the output was invalid: read into scratch and drop it until EOF */
    OUT_DONE,       /* EOF (or read error, or given up) and every frame delivered */
};

struct tp_child {
    uv_loop_t *loop;
    char *name;
    struct tp_child_cbs cbs;
    void *ctx;
    uint64_t grace_ms;

    uv_process_t proc;
    uv_pipe_t in;
    uv_pipe_t out;
    uv_pipe_t err;
    uv_timer_t timer; /* the stop sequence's stage timer */
    uv_idle_t drain;  /* delivers frames left over after a bounded round */
    int open_handles; /* initialised handles whose close callback has not run yet */
    bool closing;     /* tp_child_free was called (or the spawn failed): no more callbacks */

    enum child_state state;
    enum stdin_state in_st;
    enum stdout_state out_st;
    bool err_done;    /* stderr reached EOF (or was given up) */
    bool proc_exited; /* the exit callback ran; the pid is reaped */
    int pid;
    int64_t exit_status;
    int term_signal;

    /* stdin double buffering: `pending` collects writes while `inflight` is being written. */
    struct core_buf pending;
    struct core_buf inflight;
    uv_write_t wreq;
    bool writing; /* wreq is in flight */

    struct core_framer framer;
    size_t round_frames; /* frames delivered in the current round */
    bool trim;           /* a big frame went through: give the framer's buffer back */

    struct core_buf errline; /* the incomplete stderr line */
    char ring[STDERR_RING];  /* recent stderr lines, '\n'-terminated, circular */
    size_t ring_head;        /* offset of the oldest byte */
    size_t ring_len;

    int log_fd; /* -1 = no log file */
    char *log_path;  /* for rotation; NULL without a log file */
    size_t log_size; /* bytes in the current file */
    size_t log_max;  /* rotate past this; 0 = never */
    struct core_buf log_pending;
    struct core_buf log_inflight;
    uv_fs_t log_req;
    bool log_busy;      /* log_req is in flight on the thread pool */
    size_t log_dropped; /* bytes dropped because log_pending was full */

    char scratch[SCRATCH_SIZE]; /* read buffer for stderr and for discarded stdout */
};

static const char *state_name(enum child_state s)
{
    switch (s) {
    case CHILD_RUNNING:
        return "running";
    case CHILD_STOP_EOF:
        return "stop-eof";
    case CHILD_STOP_TERM:
        return "stop-term";
    case CHILD_STOP_KILL:
        return "stop-kill";
    case CHILD_EXITED:
        return "exited";
    }
    return "?";
}

static void set_state(struct tp_child *c, enum child_state s)
{
    if (c->state == s)
        return;
    core_log(CORE_LOG_DEBUG, "child", "%s[%d]: %s -> %s", c->name, c->pid, state_name(c->state),
             state_name(s));
    c->state = s;
}

/* ---- teardown ---------------------------------------------------------------------------- */

static void try_finish(struct tp_child *c)
{
    if (!c->closing || c->open_handles > 0 || c->log_busy)
        return;
    if (c->log_fd >= 0)
        close(c->log_fd);
    core_free(c->log_path);
    core_buf_dispose(&c->pending);
    core_buf_dispose(&c->inflight);
    core_buf_dispose(&c->errline);
    core_buf_dispose(&c->log_pending);
    core_buf_dispose(&c->log_inflight);
    core_framer_dispose(&c->framer);
    core_free(c->name);
    core_free(c);
}

static void on_close(uv_handle_t *h)
{
    struct tp_child *c = h->data;
    c->open_handles--;
    try_finish(c);
}

static void close_handle(struct tp_child *c, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_close);
}

static void close_stdin(struct tp_child *c)
{
    if (c->in_st == IN_CLOSED)
        return;
    c->in_st = IN_CLOSED;
    core_buf_reset(&c->pending);
    close_handle(c, (uv_handle_t *)&c->in);
}

/* Signals the child's process group. Once the leader is reaped this is only done while its
 * pipes are still held open, i.e. while the group still has members and its id cannot have
 * been reused. */
static void signal_group(struct tp_child *c, int sig)
{
    if (c->pid <= 0)
        return;
    if (kill(-c->pid, sig) == 0)
        return;
    if (errno != ESRCH) {
        core_log(CORE_LOG_WARN, "child", "%s[%d]: kill(-pgid, %d): %s", c->name, c->pid, sig,
                 strerror(errno));
    }
    /* The leader left its group (it cannot as a session leader, but be safe). */
    if (!c->proc_exited)
        (void)kill(c->pid, sig); /* ESRCH here only means it is already gone */
}

/* ---- exit reporting ---------------------------------------------------------------------- */

static bool log_idle(const struct tp_child *c)
{
    return c->log_fd < 0 || (!c->log_busy && c->log_pending.len == 0);
}

/* Delivers on_exit once everything has been seen. The caller returns right after this: the
 * callback may have called tp_child_free. */
static void maybe_report_exit(struct tp_child *c)
{
    if (c->closing || c->state == CHILD_EXITED)
        return;
    if (!c->proc_exited || c->out_st != OUT_DONE || !c->err_done || !log_idle(c))
        return;
    uv_timer_stop(&c->timer);
    uv_idle_stop(&c->drain);
    close_stdin(c);
    set_state(c, CHILD_EXITED);
    c->cbs.on_exit(c->ctx, c->exit_status, c->term_signal);
}

static void begin_stop(struct tp_child *c);

static void on_proc_exit(uv_process_t *p, int64_t status, int term_signal)
{
    struct tp_child *c = p->data;
    c->proc_exited = true;
    c->exit_status = status;
    c->term_signal = term_signal;
    core_log(CORE_LOG_DEBUG, "child", "%s[%d]: exited, status %lld, signal %d", c->name, c->pid,
             (long long)status, term_signal);
    if (c->closing) {
        /* Closed only now so that libuv reaps the pid instead of leaving a zombie. */
        close_handle(c, (uv_handle_t *)&c->proc);
        return;
    }
    close_stdin(c);
    /* Something else in the group still holds stdout or stderr: run the stop sequence on the
     * group so that on_exit cannot wait forever. */
    if (c->state == CHILD_RUNNING && (c->out_st != OUT_DONE || !c->err_done))
        begin_stop(c);
    maybe_report_exit(c);
}

/* ---- stop sequence ----------------------------------------------------------------------- */

static void pump_stdin(struct tp_child *c);

static void on_stop_timer(uv_timer_t *t)
{
    struct tp_child *c = t->data;
    switch (c->state) {
    case CHILD_STOP_EOF:
        close_stdin(c);
        signal_group(c, SIGTERM);
        set_state(c, CHILD_STOP_TERM);
        uv_timer_start(&c->timer, on_stop_timer, c->grace_ms, 0);
        break;
    case CHILD_STOP_TERM:
        signal_group(c, SIGKILL);
        set_state(c, CHILD_STOP_KILL);
        uv_timer_start(&c->timer, on_stop_timer, c->grace_ms, 0);
        break;
    case CHILD_STOP_KILL:
        if (!c->proc_exited) {
            /* Not reaped yet (e.g. stuck in the kernel): keep insisting. */
            signal_group(c, SIGKILL);
            uv_timer_start(&c->timer, on_stop_timer, c->grace_ms, 0);
            break;
        }
        /* A process outside the group (it left with setsid) still holds our pipes. */
        core_log(CORE_LOG_WARN, "child", "%s[%d]: output still open after SIGKILL, giving up",
                 c->name, c->pid);
        if (c->out_st != OUT_DONE) {
            uv_read_stop((uv_stream_t *)&c->out);
            uv_idle_stop(&c->drain);
            c->out_st = OUT_DONE;
        }
        if (!c->err_done) {
            uv_read_stop((uv_stream_t *)&c->err);
            c->err_done = true;
        }
        maybe_report_exit(c);
        break;
    case CHILD_RUNNING:
    case CHILD_EXITED:
        break;
    }
}

static void begin_stop(struct tp_child *c)
{
    set_state(c, CHILD_STOP_EOF);
    if (c->in_st == IN_OPEN)
        c->in_st = IN_FLUSHING;
    pump_stdin(c);
    uv_timer_start(&c->timer, on_stop_timer, c->grace_ms, 0);
}

void tp_child_stop(struct tp_child *c)
{
    if (c == NULL || c->closing || c->state != CHILD_RUNNING)
        return;
    begin_stop(c);
}

void tp_child_kill(struct tp_child *c)
{
    if (c == NULL || c->closing || c->state == CHILD_EXITED)
        return;
    close_stdin(c);
    if (!c->proc_exited)
        signal_group(c, SIGKILL);
    if (c->state != CHILD_STOP_KILL) {
        set_state(c, CHILD_STOP_KILL);
        uv_timer_start(&c->timer, on_stop_timer, c->grace_ms, 0);
    }
}

/* ---- stdin ------------------------------------------------------------------------------- */

static void stdin_failed(struct tp_child *c, int err)
{
    if (err != UV_ECANCELED) {
        core_log(CORE_LOG_DEBUG, "child", "%s[%d]: stdin closed: %s", c->name, c->pid,
                 uv_strerror(err));
    }
    close_stdin(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct tp_child *c = container_of(req, struct tp_child, wreq);
    c->writing = false;
    if (c->inflight.cap > WRITE_KEEP_CAP)
        core_buf_dispose(&c->inflight);
    else
        core_buf_reset(&c->inflight);
    if (status < 0) {
        stdin_failed(c, status);
        return;
    }
    pump_stdin(c);
}

/* Starts a write of everything pending if none is in flight; closes stdin when a requested
 * flush is complete. */
static void pump_stdin(struct tp_child *c)
{
    if (c->writing || c->in_st == IN_CLOSED)
        return;
    if (c->pending.len == 0) {
        if (c->in_st == IN_FLUSHING)
            close_stdin(c);
        return;
    }
    struct core_buf tmp = c->inflight; /* empty: no write is in flight */
    c->inflight = c->pending;
    c->pending = tmp;
    uv_buf_t b;
    b.base = c->inflight.data;
    b.len = c->inflight.len;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->in, &b, 1, on_written);
    if (rc < 0) {
        core_buf_reset(&c->inflight);
        stdin_failed(c, rc);
        return;
    }
    c->writing = true;
}

int tp_child_write(struct tp_child *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->closing || c->in_st != IN_OPEN)
        return CORE_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    int rc = core_buf_reserve(&c->pending, total);
    if (rc < 0)
        return rc; /* the buffer has no limit: cannot happen */
    for (unsigned i = 0; i < n; i++) {
        rc = core_buf_append(&c->pending, bufs[i].base, bufs[i].len);
        (void)rc; /* space was reserved above */
    }
    pump_stdin(c);
    return 0;
}

size_t tp_child_queued(const struct tp_child *c)
{
    return c->pending.len + c->inflight.len;
}

/* ---- stdout ------------------------------------------------------------------------------ */

static void out_done(struct tp_child *c)
{
    uv_idle_stop(&c->drain);
    c->out_st = OUT_DONE;
    maybe_report_exit(c);
}

static void on_out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_drain(uv_idle_t *idle);

/* The output broke the framing (or the pipe failed): report it, drop the rest of stdout and
 * stop the child. */
static void out_invalid(struct tp_child *c, int err)
{
    core_log(CORE_LOG_WARN, "child", "%s[%d]: invalid output: %s", c->name, c->pid,
             core_strerror(err));
    bool was_paused = c->out_st == OUT_PAUSED;
    c->out_st = OUT_DISCARDING;
    uv_idle_stop(&c->drain);
    core_framer_dispose(&c->framer);
    if (was_paused && uv_read_start((uv_stream_t *)&c->out, on_out_alloc, on_out_read) < 0)
        c->out_st = OUT_DONE; /* cannot drain it: do not wait for its EOF */
    if (c->cbs.on_invalid)
        c->cbs.on_invalid(c->ctx, err);
    if (!c->closing)
        tp_child_stop(c);
}

static void on_framer_frame(void *ctx, const char *p, size_t n)
{
    struct tp_child *c = ctx;
    c->round_frames++;
    if (n >= BIG_FRAME)
        c->trim = true;
    if (c->closing || c->out_st == OUT_DISCARDING || c->state == CHILD_EXITED)
        return;
    c->cbs.on_frame(c->ctx, p, n);
}

/* After a round of frames: pause when the round was full, resume when it was not. */
static void after_round(struct tp_child *c, int rc)
{
    if (c->closing || c->out_st == OUT_DISCARDING || c->out_st == OUT_DONE)
        return;
    if (rc == CORE_ETOOBIG) {
        out_invalid(c, rc);
        return;
    }
    if (c->round_frames >= FRAMES_PER_ROUND) {
        if (c->out_st == OUT_READING) {
            uv_read_stop((uv_stream_t *)&c->out);
            uv_idle_start(&c->drain, on_drain);
            c->out_st = OUT_PAUSED;
        }
        return;
    }
    if (c->trim) {
        c->trim = false;
        core_framer_trim(&c->framer);
    }
    if (c->out_st == OUT_PAUSED) {
        uv_idle_stop(&c->drain);
        c->out_st = OUT_READING;
        int e = uv_read_start((uv_stream_t *)&c->out, on_out_alloc, on_out_read);
        if (e < 0) {
            out_invalid(c, e);
            return;
        }
    }
}

static void on_drain(uv_idle_t *idle)
{
    struct tp_child *c = idle->data;
    c->round_frames = 0;
    int rc = core_framer_feed(&c->framer, 0, on_framer_frame, c, FRAMES_PER_ROUND);
    after_round(c, rc);
}

static void on_out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_child *c = h->data;
    if (c->out_st == OUT_DISCARDING) {
        buf->base = c->scratch;
        buf->len = sizeof c->scratch;
        return;
    }
    size_t got = 0;
    char *p = core_framer_space(&c->framer, suggested, &got);
    if (p == NULL) {
        /* The pending partial frame is already over the limit: read_cb sees UV_ENOBUFS. */
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = p;
    buf->len = got;
}

static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_child *c = s->data;
    if (c->closing || c->out_st == OUT_DONE)
        return;
    if (nread == 0)
        return;
    if (c->out_st == OUT_DISCARDING) {
        if (nread < 0)
            out_done(c);
        return;
    }
    if (nread > 0) {
        c->round_frames = 0;
        int rc = core_framer_feed(&c->framer, (size_t)nread, on_framer_frame, c, FRAMES_PER_ROUND);
        after_round(c, rc);
        return;
    }
    if (nread == UV_EOF) {
        /* A last line without its newline is not a frame (MCP stdio): it is dropped. */
        core_framer_dispose(&c->framer);
        out_done(c);
        return;
    }
    /* UV_ENOBUFS (the frame outgrew the limit) or a read error. */
    out_invalid(c, nread == UV_ENOBUFS ? CORE_ETOOBIG : (int)nread);
    if (c->closing)
        return;
    if (nread != UV_ENOBUFS) {
        uv_read_stop(s);
        out_done(c);
    }
}

/* ---- stderr ------------------------------------------------------------------------------ */

static void on_log_written(uv_fs_t *req);

/* Opens the log file (appending; a symlink there is refused, not written through) and takes
 * its size. On failure the child goes on without a log file. */
static void log_open(struct tp_child *c)
{
    char why[600];
    if (core_file_open(c->log_path, O_WRONLY | O_APPEND | O_CREAT, 0600, &c->log_fd, why,
                       sizeof why) != 0) {
        core_log(CORE_LOG_WARN, "child", "%s: cannot open its log: %s", c->name, why);
        c->log_fd = -1;
        return;
    }
    struct stat st;
    c->log_size = fstat(c->log_fd, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The log file passed log_max: NAME.log becomes NAME.log.1 (three old files are kept) and a
 * fresh one starts. A few renames, done between two writes. */
static void log_rotate(struct tp_child *c)
{
    char why[600];
    close(c->log_fd);
    c->log_fd = -1;
    if (core_file_shift(c->log_path, LOG_KEEP, why, sizeof why) != 0)
        core_log(CORE_LOG_WARN, "child", "%s: %s", c->name, why);
    log_open(c);
}

static void log_pump(struct tp_child *c)
{
    if (c->log_fd < 0 || c->log_busy)
        return;
    if (c->log_inflight.len == 0) {
        if (c->log_pending.len == 0)
            return;
        struct core_buf tmp = c->log_inflight;
        c->log_inflight = c->log_pending;
        c->log_pending = tmp;
    }
    if (c->log_max > 0 && c->log_size > 0 && c->log_size + c->log_inflight.len > c->log_max) {
        log_rotate(c);
        if (c->log_fd < 0)
            return;
    }
    uv_buf_t b;
    b.base = c->log_inflight.data;
    b.len = c->log_inflight.len;
    int rc = uv_fs_write(c->loop, &c->log_req, c->log_fd, &b, 1, -1, on_log_written);
    if (rc < 0) {
        core_log(CORE_LOG_WARN, "child", "%s: log file write: %s", c->name, uv_strerror(rc));
        close(c->log_fd);
        c->log_fd = -1;
        return;
    }
    c->log_busy = true;
}

static void on_log_written(uv_fs_t *req)
{
    struct tp_child *c = container_of(req, struct tp_child, log_req);
    ssize_t res = req->result;
    uv_fs_req_cleanup(req);
    c->log_busy = false;
    if (res < 0) {
        core_log(CORE_LOG_WARN, "child", "%s: log file write: %s", c->name,
                 uv_strerror((int)res));
        close(c->log_fd);
        c->log_fd = -1;
        core_buf_dispose(&c->log_pending);
        core_buf_dispose(&c->log_inflight);
    } else {
        c->log_size += (size_t)res;
        core_buf_consume(&c->log_inflight, (size_t)res);
        log_pump(c);
    }
    if (c->closing) {
        /* Flush what is left, then let the last one out free the object. */
        try_finish(c);
        return;
    }
    maybe_report_exit(c);
}

static void log_append(struct tp_child *c, const char *p, size_t n)
{
    if (c->log_fd < 0)
        return;
    if (c->log_pending.len + n + 1 > LOG_PENDING_MAX) {
        c->log_dropped += n + 1;
        return;
    }
    if (c->log_dropped > 0) {
        int rc = core_buf_appendf(&c->log_pending, "[agentgate: %zu bytes of stderr dropped]\n",
                                  c->log_dropped);
        (void)rc; /* the buffer has no limit */
        c->log_dropped = 0;
    }
    int rc = core_buf_append(&c->log_pending, p, n);
    if (rc == 0)
        rc = core_buf_append(&c->log_pending, "\n", 1);
    (void)rc; /* the buffer has no limit */
    log_pump(c);
}

void tp_child_log_line(struct tp_child *c, const char *p, size_t n)
{
    /* A frame read from stdout holds no newline (the framing splits at them), so it is one
     * line as it is. */
    if (c->closing || memchr(p, '\n', n) != NULL)
        return;
    log_append(c, p, n);
}

static void ring_drop_line(struct tp_child *c)
{
    while (c->ring_len > 0) {
        char ch = c->ring[c->ring_head];
        c->ring_head = (c->ring_head + 1) % STDERR_RING;
        c->ring_len--;
        if (ch == '\n')
            return;
    }
}

static void ring_append(struct tp_child *c, const char *p, size_t n)
{
    if (n > STDERR_RING - 1) {
        p += n - (STDERR_RING - 1);
        n = STDERR_RING - 1;
    }
    while (c->ring_len + n + 1 > STDERR_RING)
        ring_drop_line(c);
    size_t pos = (c->ring_head + c->ring_len) % STDERR_RING;
    size_t first = STDERR_RING - pos;
    if (first > n)
        first = n;
    memcpy(c->ring + pos, p, first);
    memcpy(c->ring, p + first, n - first);
    c->ring[(pos + n) % STDERR_RING] = '\n';
    c->ring_len += n + 1;
}

static void emit_stderr_line(struct tp_child *c, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    ring_append(c, p, n);
    log_append(c, p, n);
    core_log(CORE_LOG_DEBUG, "child", "%s: %.*s", c->name, (int)n, p);
}

static void flush_errline(struct tp_child *c)
{
    emit_stderr_line(c, c->errline.data ? c->errline.data : "", c->errline.len);
    core_buf_reset(&c->errline);
}

static void on_err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_child *c = h->data;
    buf->base = c->scratch;
    buf->len = sizeof c->scratch;
}

static void on_err_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_child *c = s->data;
    if (c->closing || c->err_done || nread == 0)
        return;
    if (nread < 0) {
        if (c->errline.len > 0)
            flush_errline(c);
        core_buf_dispose(&c->errline);
        c->err_done = true;
        maybe_report_exit(c);
        return;
    }
    const char *p = buf->base;
    size_t n = (size_t)nread;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = STDERR_LINE_MAX - c->errline.len;
        bool split = take > room;
        if (split)
            take = room;
        int rc = core_buf_append(&c->errline, p, take);
        (void)rc; /* bounded by STDERR_LINE_MAX */
        p += take;
        n -= take;
        if (nl != NULL && !split) {
            p++; /* the newline */
            n--;
            flush_errline(c);
        } else if (split || c->errline.len == STDERR_LINE_MAX) {
            flush_errline(c);
        }
    }
}

size_t tp_child_stderr_tail(const struct tp_child *c, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t want = cap - 1;
    size_t skip = 0;
    if (c->ring_len > want) {
        skip = c->ring_len - want;
        /* Start on a line boundary: skip the rest of a cut line. */
        while (skip < c->ring_len && c->ring[(c->ring_head + skip - 1) % STDERR_RING] != '\n')
            skip++;
    }
    size_t n = c->ring_len - skip;
    for (size_t i = 0; i < n; i++)
        out[i] = c->ring[(c->ring_head + skip + i) % STDERR_RING];
    out[n] = '\0';
    return n;
}

/* ---- spawn ------------------------------------------------------------------------------- */

/* What a child inherits from the daemon's environment when it does not inherit everything.
 * The aim is what any program needs (its PATH, home, user, shell, terminal, locale, time zone
 * and temporary and XDG directories) and what the usual launchers need to fetch and start a
 * server: npx/node (NODE_OPTIONS, NODE_PATH, extra CA certificates, npm's and nvm's settings)
 * and uvx/python (uv's settings, an active virtualenv), plus CA bundles and proxies (both
 * spellings, since tools differ) for their downloads. NODE_OPTIONS matters beyond npx: on old
 * Node versions the MCP SDK needs a flag from it. npm_config_* and UV_* may carry a private
 * registry's credentials and a proxy URL may carry a password; they pass anyway, because the
 * launcher cannot start the server without them and they are the user's own settings for
 * every package download, not one section's secret (a name the config uses as a secret is
 * still denied). Anything else, API keys above all, reaches a server only through its env.*,
 * env_pass or env_inherit = all. A trailing '*' matches every name with that prefix. One line
 * per purpose, hence no clang-format. */
/* clang-format off */
static const char *const default_env[] = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "XDG_*",
    "LANG", "LANGUAGE", "LC_*",
    "NODE_OPTIONS", "NODE_PATH", "NODE_EXTRA_CA_CERTS", "npm_config_*", "NPM_CONFIG_*",
    "NVM_DIR", "NVM_BIN",
    "UV_*", "VIRTUAL_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    NULL,
};
/* clang-format on */

/* Length of the name in "NAME=VALUE" (the whole string when it has no '='). */
static size_t env_name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* True when the name (n bytes) is pat, or starts with pat's prefix when pat ends in '*'. */
static bool env_name_matches(const char *name, size_t n, const char *pat)
{
    size_t plen = strlen(pat);
    if (plen > 0 && pat[plen - 1] == '*')
        return n >= plen - 1 && memcmp(name, pat, plen - 1) == 0;
    return n == plen && memcmp(name, pat, n) == 0;
}

/* True when the name matches an entry of the NULL-terminated list (NULL: no entries). */
static bool env_name_listed(const char *name, size_t n, const char *const *list)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (env_name_matches(name, n, list[i]))
            return true;
    }
    return false;
}

static bool env_key_eq(const char *a, const char *b)
{
    size_t la = env_name_len(a);
    return la == env_name_len(b) && memcmp(a, b, la) == 0;
}

/* The child's environment: what it inherits from `base` (the daemon's environ; see
 * struct tp_child_opts for the rules), minus names that env_add or extra set, plus env_add,
 * plus extra. The strings are borrowed; only the array is allocated (caller frees). */
GW_STATIC char **child_build_env(char *const *base, const struct tp_child_opts *opts, char *extra)
{
    char *const *env_add = opts->env_add;
    size_t n_env = 0;
    size_t n_add = 0;
    while (base != NULL && base[n_env] != NULL)
        n_env++;
    while (env_add != NULL && env_add[n_add] != NULL)
        n_add++;
    char **env = core_xcalloc(n_env + n_add + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *e = base[i];
        size_t n = env_name_len(e);
        if (n == 0 || e[n] != '=')
            continue; /* not NAME=VALUE: nothing a program could look up */
        /* The deny list wins over every way of inheriting, never over env_add. */
        if (env_name_listed(e, n, (const char *const *)opts->env_deny))
            continue;
        if (!opts->env_inherit_all && !env_name_listed(e, n, default_env) &&
            !env_name_listed(e, n, (const char *const *)opts->env_pass))
            continue;
        bool replaced = extra != NULL && env_key_eq(e, extra);
        for (size_t j = 0; j < n_add && !replaced; j++)
            replaced = env_key_eq(e, env_add[j]);
        if (!replaced)
            env[k++] = base[i];
    }
    for (size_t j = 0; j < n_add; j++) {
        bool dup = false;
        for (size_t m = j + 1; m < n_add && !dup; m++)
            dup = env_key_eq(env_add[j], env_add[m]); /* the last one wins */
        if (!dup && !(extra != NULL && env_key_eq(env_add[j], extra)))
            env[k++] = env_add[j];
    }
    if (extra != NULL)
        env[k++] = extra;
    env[k] = NULL;
    return env;
}

static char **build_args(const struct tp_child_opts *opts)
{
    size_t n = 0;
    while (opts->args != NULL && opts->args[n] != NULL)
        n++;
    char **argv = core_xcalloc(n + 4, sizeof *argv);
    size_t k = 0;
    if (opts->self_exe != NULL) {
        argv[k++] = (char *)opts->self_exe;
        argv[k++] = (char *)"__exec";
    }
    argv[k++] = (char *)opts->file;
    for (size_t i = 0; i < n; i++)
        argv[k++] = opts->args[i];
    argv[k] = NULL;
    return argv;
}

static void init_handle(struct tp_child *c, uv_handle_t *h)
{
    h->data = c;
    c->open_handles++;
}

/* Tears down a child whose spawn failed part way. No callback fires; memory goes once the
 * handles have closed. */
static void abandon(struct tp_child *c)
{
    c->closing = true;
    if (c->pid > 0 && !c->proc_exited)
        signal_group(c, SIGKILL);
    close_handle(c, (uv_handle_t *)&c->timer);
    close_handle(c, (uv_handle_t *)&c->drain);
    close_handle(c, (uv_handle_t *)&c->in);
    close_handle(c, (uv_handle_t *)&c->out);
    close_handle(c, (uv_handle_t *)&c->err);
    if (c->pid <= 0 || c->proc_exited)
        close_handle(c, (uv_handle_t *)&c->proc);
    c->in_st = IN_CLOSED;
}

int tp_child_spawn(uv_loop_t *loop, const struct tp_child_opts *opts,
                   const struct tp_child_cbs *cbs, void *ctx, struct tp_child **out)
{
    if (opts == NULL || opts->file == NULL || cbs == NULL || cbs->on_frame == NULL ||
        cbs->on_exit == NULL)
        return CORE_EINVAL;

    struct tp_child *c = core_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->name = core_xstrdup(opts->name ? opts->name : opts->file);
    c->cbs = *cbs;
    c->ctx = ctx;
    c->grace_ms = opts->stop_grace_ms ? opts->stop_grace_ms : DEFAULT_GRACE_MS;
    c->state = CHILD_RUNNING;
    c->in_st = IN_OPEN;
    c->out_st = OUT_READING;
    c->log_fd = -1;
    core_buf_init(&c->pending, 0);
    core_buf_init(&c->inflight, 0);
    core_buf_init(&c->errline, STDERR_LINE_MAX);
    core_buf_init(&c->log_pending, 0);
    core_buf_init(&c->log_inflight, 0);
    core_framer_init(&c->framer, opts->max_frame ? opts->max_frame : DEFAULT_MAX_FRAME);

    /* These cannot fail on a valid loop. */
    uv_timer_init(loop, &c->timer);
    init_handle(c, (uv_handle_t *)&c->timer);
    uv_idle_init(loop, &c->drain);
    init_handle(c, (uv_handle_t *)&c->drain);
    uv_pipe_init(loop, &c->in, 0);
    init_handle(c, (uv_handle_t *)&c->in);
    uv_pipe_init(loop, &c->out, 0);
    init_handle(c, (uv_handle_t *)&c->out);
    uv_pipe_init(loop, &c->err, 0);
    init_handle(c, (uv_handle_t *)&c->err);

    if (opts->log_path != NULL) {
        /* A small synchronous open, like the fork itself; the writes go to the thread pool. */
        c->log_path = core_xstrdup(opts->log_path);
        c->log_max = opts->log_max;
        log_open(c);
    }

    char parent_env[64];
    char *extra = NULL;
    if (opts->self_exe != NULL) {
        snprintf(parent_env, sizeof parent_env, "%s=%ld", PARENT_ENV, (long)getpid());
        extra = parent_env;
    }
    char **env = child_build_env(environ, opts, extra);
    char **args = build_args(opts);

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&c->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&c->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&c->err;

    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.exit_cb = on_proc_exit;
    po.file = args[0];
    po.args = args;
    po.env = env;
    po.cwd = opts->cwd;
    po.flags = UV_PROCESS_DETACHED; /* setsid(): own session and process group */
    po.stdio_count = 3;
    po.stdio = stdio;

    int rc = uv_spawn(loop, &c->proc, &po);
    init_handle(c, (uv_handle_t *)&c->proc); /* initialised even when the spawn fails */
    if (rc < 0) {
        core_log(CORE_LOG_WARN, "child", "%s: spawn %s: %s", c->name, args[0], uv_strerror(rc));
        core_free(args);
        core_free(env);
        abandon(c);
        return rc;
    }
    core_free(args);
    core_free(env);
    c->pid = c->proc.pid;
    core_log(CORE_LOG_DEBUG, "child", "%s[%d]: spawned %s%s", c->name, c->pid, opts->file,
             opts->self_exe ? " via trampoline" : "");

    rc = uv_read_start((uv_stream_t *)&c->out, on_out_alloc, on_out_read);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->err, on_err_alloc, on_err_read);
    if (rc < 0) {
        abandon(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tp_child_pid(const struct tp_child *c)
{
    return c->pid;
}

bool tp_child_exited(const struct tp_child *c)
{
    return c->state == CHILD_EXITED;
}

void tp_child_free(struct tp_child *c)
{
    if (c == NULL || c->closing)
        return;
    if (!c->proc_exited)
        core_log(CORE_LOG_DEBUG, "child", "%s[%d]: freed while running, killing", c->name, c->pid);
    abandon(c);
    try_finish(c);
}

/* ---- descriptors ------------------------------------------------------------------------- */

/* close_range(2) came with glibc 2.34 (the system call with Linux 5.9, CLOSE_RANGE_CLOEXEC
 * with 5.11); older systems take the walks below. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_CLOSE_RANGE 1
#endif

static void fd_drop(int fd, bool cloexec)
{
    if (!cloexec) {
        (void)close(fd); /* EBADF: it was not open */
        return;
    }
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC))
        (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC); /* it is open: this cannot fail */
}

/* Closes every descriptor from 3 up, or with cloexec marks it close-on-exec. */
static void fds_above_stderr(bool cloexec)
{
#ifdef HAVE_CLOSE_RANGE
    if (close_range(3, ~0U, cloexec ? CLOSE_RANGE_CLOEXEC : 0) == 0)
        return;
#endif
    /* Only the open ones, from /proc: there may be a million possible numbers. Closing while
     * reading is fine here, since the kernel lists /proc/self/fd by descriptor number. */
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end = NULL;
            errno = 0;
            long fd = strtol(e->d_name, &end, 10);
            if (errno != 0 || end == e->d_name || *end != '\0' || fd < 3 || fd > INT_MAX ||
                fd == self)
                continue;
            fd_drop((int)fd, cloexec);
        }
        closedir(d);
        return;
    }
    /* No /proc (a chroot, an early boot): every number the process may have open. */
    struct rlimit rl;
    int max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max = rl.rlim_cur < (rlim_t)INT_MAX ? (int)rl.rlim_cur : INT_MAX;
    for (int fd = 3; fd < max; fd++)
        fd_drop(fd, cloexec);
}

void tp_child_cloexec_inherited(void)
{
    fds_above_stderr(true);
}

/* ---- trampoline -------------------------------------------------------------------------- */

int tp_child_exec_main(int argc, char **argv)
{
    if (argc < 2 || argv[1] == NULL) {
        fprintf(stderr, "usage: agentgate __exec PROGRAM [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        fprintf(stderr, "agentgate __exec: prctl: %s\n", strerror(errno));
        return 1;
    }
    /* The parent may have died between fork and prctl: then nobody would kill us later. */
    const char *want = getenv(PARENT_ENV);
    if (want != NULL) {
        char *end = NULL;
        errno = 0;
        long ppid = strtol(want, &end, 10);
        if (errno != 0 || end == want || *end != '\0' || ppid != (long)getppid())
            return 1;
        unsetenv(PARENT_ENV);
    }
    /* libuv's spawn leaves alone every descriptor that is not close-on-exec, which includes
     * whatever the daemon itself inherited: nothing but stdin, stdout and stderr may reach a
     * server. */
    fds_above_stderr(false);
    execvp(argv[1], argv + 1);
    int e = errno;
    fprintf(stderr, "agentgate __exec: %s: %s\n", argv[1], strerror(e));
    return e == ENOENT ? 127 : 126;
}
