/* The blocking client of the daemon's control API (POST /agentgate/... over its Unix socket)
 * that the admin commands use: connect only to a daemon of our own user, send one HTTP/1.1
 * request, read the whole answer (Content-Length, chunked or until EOF) with one deadline. */
#include "cmd/ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/paths.h"
#include "core/peer.h"

#define CTL_TIMEOUT_MS 10000     /* whole control request: connect, write, read */
#define CTL_MAX_REPLY (1u << 20) /* longest answer we read from the daemon */

bool cmd_ctl_is_no_daemon(int rc)
{
    return rc == -ENOENT || rc == -ECONNREFUSED;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. Returns 0, CORE_ETIMEDOUT or
 * -errno. */
GW_MUST_CHECK static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return CORE_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Connects to the daemon's Unix socket at path, and only to ours: the socket's directory must
 * pass core_path_check_private_dir and the listener must run as our effective uid
 * (SO_PEERCRED), both checked before a byte is sent. Returns 0 and a non-blocking fd in *out;
 * CORE_ETIMEDOUT or -errno (see is_no_daemon); or CORE_EINVAL for a directory or listener that
 * is not ours. err gets one line on failure. */
GW_MUST_CHECK static int ctl_connect(const char *path, uint64_t deadline, int *out, char *err,
                                     size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path) {
        core_set_err(err, errlen, "cannot connect to %s: %s", path, strerror(ENAMETOOLONG));
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, n + 1);
    char dir[PATH_MAX];
    if (core_path_dir_of(path, dir, sizeof dir) == 0) {
        int rc = core_path_check_private_dir(dir, err, errlen);
        if (rc == -ENOENT) { /* no directory, no daemon */
            core_set_err(err, errlen, "cannot connect to %s: %s", path, strerror(ENOENT));
            return rc;
        }
        if (rc != 0)
            return CORE_EINVAL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        core_set_err(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = 0;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            /* A full backlog: a busy daemon; retry until the deadline. */
            struct timespec pause = {0, 20 * 1000000};
            nanosleep(&pause, NULL);
            if (now_ms() < deadline)
                continue;
            rc = CORE_ETIMEDOUT;
        } else {
            rc = -errno;
        }
        core_set_err(err, errlen, "cannot connect to %s: %s", path, core_strerror(rc));
        close(fd);
        return rc;
    }
    uid_t me = geteuid(), peer = me;
    if (core_peer_uid(fd, &peer) != 0) {
        rc = -errno;
        core_set_err(err, errlen, "%s: cannot tell who listens: %s", path, strerror(errno));
    } else if (peer != me) {
        rc = CORE_EINVAL;
        core_set_err(err, errlen,
                     "%s: the listener runs as uid %u, not as you (uid %u); refusing to talk to it",
                     path, (unsigned)peer, (unsigned)me);
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Sends n bytes before the deadline. Returns 0, CORE_ETIMEDOUT or -errno. */
GW_MUST_CHECK static int write_all(int fd, const char *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -errno;
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Where the headers of an HTTP answer in b end (just past the blank line), or 0. */
static size_t header_end(const struct core_buf *b)
{
    for (size_t i = 0; i + 3 < b->len; i++)
        if (memcmp(b->data + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

/* The value of header `name` in the head of an answer (h..h+n), or NULL; *vlen its length. */
static const char *find_header(const char *h, size_t n, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = h + n;
    const char *line = memchr(h, '\n', n); /* skip the status line */
    while (line != NULL && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol < end ? eol : NULL;
    }
    return NULL;
}

/* Decodes a complete chunked body in place (b from `start`). Returns the decoded length, or
 * -1 while incomplete or malformed (*bad set then). */
static long dechunk(char *s, size_t n, bool *bad)
{
    size_t in = 0, out = 0;
    *bad = false;
    for (;;) {
        const char *eol = memchr(s + in, '\n', n - in);
        if (eol == NULL)
            return -1;
        char *endp;
        unsigned long sz = strtoul(s + in, &endp, 16);
        if (endp == s + in || sz > CTL_MAX_REPLY) {
            *bad = true;
            return -1;
        }
        in = (size_t)(eol - s) + 1;
        if (sz == 0)
            return (long)out;
        if (n - in < sz + 2)
            return -1;
        memmove(s + out, s + in, sz);
        out += sz;
        in += sz + 2;
    }
}


int cmd_ctl_post(const char *sock, const char *target, const char *body,
                 struct cmd_ctl_reply *reply, char *err, size_t errlen)
{
    uint64_t deadline = now_ms() + CTL_TIMEOUT_MS;
    int fd = -1;
    int rc = ctl_connect(sock, deadline, &fd, err, errlen);
    if (rc != 0)
        return rc;
    struct core_buf b;
    core_buf_init(&b, CTL_MAX_REPLY);
    size_t blen = strlen(body);
    rc =
        core_buf_appendf(&b,
                         "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         target, blen, body);
    if (rc == 0)
        rc = write_all(fd, b.data, b.len, deadline);
    if (rc != 0) {
        snprintf(err, errlen, "cannot send to %s: %s", sock, core_strerror(rc));
        goto out;
    }
    core_buf_reset(&b);

    /* Read until the body is complete: Content-Length, chunked, or the end of the stream. */
    size_t head = 0;
    long want = -1; /* total bytes (head + body) when Content-Length is known */
    bool chunked = false, eof = false;
    long body_len = -1;
    for (;;) {
        if (head == 0)
            head = header_end(&b);
        if (head != 0 && want < 0 && !chunked) {
            size_t vl;
            const char *v = find_header(b.data, head, "Content-Length", &vl);
            const char *te = find_header(b.data, head, "Transfer-Encoding", &vl);
            if (te != NULL && vl >= 7 && strncasecmp(te + vl - 7, "chunked", 7) == 0)
                chunked = true;
            else if (v != NULL) {
                long cl = strtol(v, NULL, 10);
                if (cl < 0 || cl > (long)CTL_MAX_REPLY) {
                    rc = CORE_EPROTO;
                    break;
                }
                want = (long)head + cl;
            }
        }
        if (want >= 0 && (long)b.len >= want) {
            body_len = want - (long)head;
            break;
        }
        if (chunked) {
            bool bad;
            body_len = dechunk(b.data + head, b.len - head, &bad);
            if (bad) {
                rc = CORE_EPROTO;
                break;
            }
            if (body_len >= 0)
                break;
        }
        if (eof) {
            if (head != 0 && want < 0 && !chunked) {
                body_len = (long)(b.len - head);
                break;
            }
            rc = CORE_EPROTO;
            break;
        }
        rc = core_buf_reserve(&b, 4096);
        if (rc != 0)
            break;
        ssize_t r = recv(fd, b.data + b.len, b.cap - b.len, 0);
        if (r > 0) {
            b.len += (size_t)r;
            b.data[b.len] = '\0';
            continue;
        }
        if (r == 0) {
            eof = true;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            rc = -errno;
            break;
        }
        rc = wait_fd(fd, POLLIN, deadline);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "no usable answer from the daemon on %s: %s", sock,
                 rc == CORE_ETIMEDOUT ? "timed out after 10 s"
                 : rc == CORE_EPROTO  ? "malformed HTTP answer"
                 : rc == CORE_ETOOBIG ? "answer too long"
                                      : core_strerror(rc));
        goto out;
    }
    int status = 0;
    if (sscanf(b.data, "HTTP/1.%*d %d", &status) != 1) {
        rc = CORE_EPROTO;
        snprintf(err, errlen, "no usable answer from the daemon on %s: not HTTP", sock);
        goto out;
    }
    const char *bd = b.data + head;
    memset(reply, 0, sizeof *reply);
    reply->status = status;
    cJSON *j = cJSON_ParseWithLength(bd, (size_t)body_len);
    if (j != NULL && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    reply->json = j;
    size_t ex = 0;
    for (long i = 0; i < body_len && ex + 1 < sizeof reply->excerpt; i++) {
        unsigned char c = (unsigned char)bd[i];
        reply->excerpt[ex++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    reply->excerpt[ex] = '\0';
out:
    core_buf_dispose(&b);
    close(fd);
    return rc;
}

const char *cmd_ctl_reply_str(const struct cmd_ctl_reply *r, const char *key)
{
    const cJSON *v = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool cmd_ctl_reply_ok(const struct cmd_ctl_reply *r)
{
    const cJSON *v = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "ok") : NULL;
    return cJSON_IsTrue(v);
}

void cmd_ctl_describe_odd(const struct cmd_ctl_reply *r, char *msg, size_t cap)
{
    snprintf(msg, cap, "unexpected answer from the daemon (HTTP %d)%s%s", r->status,
             r->excerpt[0] ? ": " : "", r->excerpt);
}
