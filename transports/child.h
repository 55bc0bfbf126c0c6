/* A supervised stdio child: spawned in its own process group, newline-framed stdin/stdout,
 * stderr lines kept in a ring buffer and appended to a log file, and a staged stop. */
#ifndef GW_TRANSPORTS_CHILD_H
#define GW_TRANSPORTS_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"

struct tp_child;

struct tp_child_opts {
    const char *name;      /* for logs */
    const char *file;      /* program (looked up in PATH) */
    char *const *args;     /* argv[1..], NULL-terminated */
    /* The environment: env_add, on top of what the child inherits from the daemon's own
     * environment. By default (env_inherit_all false) it inherits only a small default set
     * (PATH, HOME, locale, what npx/node and uvx/python need; see default_env in child.c) and
     * the names env_pass lists; with env_inherit_all, everything. A name in env_deny is never
     * inherited, in either mode; env_add still sets it. env_pass and env_deny entries are
     * names, or a prefix followed by one '*' that matches every name starting with it. */
    char *const *env_add;  /* "K=V" set over the inherited ones; may be NULL */
    bool env_inherit_all;  /* inherit all of ours but env_deny, not just the default set */
    char *const *env_pass; /* extra names or "PREFIX*" inherited in default mode; may be NULL */
    char *const *env_deny; /* names or "PREFIX*" never inherited (secrets); may be NULL */
    const char *cwd;       /* NULL = inherit */
    size_t max_frame;      /* longest stdout frame; 0 = 16 MiB */
    const char *log_path;  /* stderr lines are appended here; NULL = not kept on disk */
    size_t log_max;        /* the log file is rotated past this many bytes (3 old files
                              kept: PATH.1 .. PATH.3); 0 = never */
    const char *self_exe;  /* path of our own binary, used as a pre-exec trampoline that sets
                              PR_SET_PDEATHSIG; NULL = spawn directly */
    uint64_t stop_grace_ms; /* each stage of the stop (stdin close, SIGTERM); 0 = 2000 */
};

struct tp_child_cbs {
    /* One frame from stdout, borrowed for the call. */
    void (*on_frame)(void *ctx, const char *p, size_t n);
    /* The child wrote a frame over max_frame (err = CORE_ETOOBIG) or stdout failed. The child
     * is being stopped when this fires; on_exit follows. */
    void (*on_invalid)(void *ctx, int err);
    /* The process has exited (status, or term_signal != 0) and its pipes are closed.
     * The child object stays valid until tp_child_free. */
    void (*on_exit)(void *ctx, int64_t status, int term_signal);
};

/* Spawns the child. On success returns 0 and *out (owned by the caller: stop it, wait for
 * on_exit, then tp_child_free). Callbacks never fire before this returns.
 * Returns UV_E* when the spawn fails (e.g. UV_ENOENT: no such program), or CORE_EINVAL for
 * missing options/callbacks; *out is then untouched. Through the trampoline (self_exe) a
 * missing PROGRAM is not a spawn error: the child exits with status 127 instead.
 * Callbacks may call tp_child_stop/kill; on_exit may call tp_child_free.
 * The process must ignore SIGPIPE: a write to a dead child comes back as EPIPE. */
GW_MUST_CHECK int tp_child_spawn(uv_loop_t *loop, const struct tp_child_opts *opts,
                                 const struct tp_child_cbs *cbs, void *ctx, struct tp_child **out);
/* Queues the buffers (copied) followed by nothing else: the caller includes the "\n".
 * Everything queued before the previous write completes goes out in one write.
 * Returns 0 or CORE_ECLOSED. */
int tp_child_write(struct tp_child *c, const uv_buf_t *bufs, unsigned n);
/* Bytes queued and not yet written. */
size_t tp_child_queued(const struct tp_child *c);
/* Staged stop: close stdin; after stop_grace_ms SIGTERM to the process group; after another
 * stop_grace_ms SIGKILL to the group. on_exit fires once the process is gone. Idempotent. */
void tp_child_stop(struct tp_child *c);
/* SIGKILL to the whole process group at once. */
void tp_child_kill(struct tp_child *c);
int tp_child_pid(const struct tp_child *c);
/* True once on_exit has fired. */
bool tp_child_exited(const struct tp_child *c);
/* Appends p[0..n) (one line: text with a newline is ignored) to the child's log file after
 * what it wrote to stderr so far, the way its stderr lines go there (bounded, written off the
 * loop). Nothing happens without a log file. */
void tp_child_log_line(struct tp_child *c, const char *p, size_t n);
/* Copies up to cap-1 bytes of the most recent stderr output (whole lines) into out. */
size_t tp_child_stderr_tail(const struct tp_child *c, char *out, size_t cap);
/* Frees a child whose on_exit has fired (or that never started). Handles close asynchronously;
 * no callback fires after this call. */
void tp_child_free(struct tp_child *c);

/* Marks every open descriptor above 2 close-on-exec. Descriptors the daemon opens itself are
 * close-on-exec already; this is for those it inherited from whatever started it (a shell, a
 * service manager, a test), which would otherwise reach every child spawned without the
 * trampoline. Call once at start, before any child is spawned. Cannot fail: without
 * close_range(2) or /proc it walks every descriptor number below RLIMIT_NOFILE. */
void tp_child_cloexec_inherited(void);

/* The trampoline's entry point for `agentgate __exec PROGRAM ARGS...`, called with main's
 * argv shifted by one (argv[0] = "__exec", argv[1] = PROGRAM). Sets PR_SET_PDEATHSIG (SIGKILL),
 * returns 1 at once if the parent that spawned it (AGENTGATE_PARENT_PID, which it then removes
 * from the environment) is already gone, closes every descriptor above 2 (so nothing the
 * daemon inherited or opened reaches the server), and execs PROGRAM (PATH lookup) with ARGS.
 * Returns only on failure, the exit status to use: 2 usage, 1 parent gone, 127 PROGRAM not
 * found, 126 other exec errors. */
int tp_child_exec_main(int argc, char **argv);

#endif
