/* ag-floor: the benchmark's HTTP floor (issue 3).
 *
 * A single-threaded epoll HTTP/1.1 keep-alive server that answers each MCP POST itself, with no
 * upstream: it shows what HTTP alone costs on the machine, and that ag-load is not the
 * bottleneck. It speaks just enough MCP for ag-load: initialize (with Mcp-Session-Id: floor),
 * notifications and responses (202), tools/list (one tool), tools/call echo and blob, ping.
 * Pipelined requests are answered in order with one write. Exits on SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/jsonrpc.h"

#define HEAD_MAX 65536             /* longest request header block */
#define BODY_MAX ((size_t)4 << 20) /* longest request body */
#define BLOB_MAX ((size_t)16 << 20) /* largest blob reply */
#define READ_CHUNK 65536

struct fconn {
    int fd;
    bool want_out; /* EPOLLOUT registered (reading paused until the output drains) */
    bool closing;  /* close once the output is written */
    struct core_buf in;
    struct core_buf out;
    size_t out_off;
};

static volatile sig_atomic_t g_stop;
static int g_ep = -1;
static int g_lfd = -1;
static char g_sock_path[108];
static char *g_xs; /* BLOB_MAX 'x' bytes, made on first use */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void bput(struct core_buf *b, const void *p, size_t n)
{
    if (core_buf_append(b, p, n) != 0) {
        fprintf(stderr, "ag-floor: buffer limit passed\n");
        exit(1);
    }
}

#define BPUT_LIT(b, s) bput((b), (s), sizeof(s) - 1)

static size_t put_size(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* One piece of a reply body. */
struct piece {
    const char *p;
    size_t n;
};

#define LIT(s) ((struct piece){(s), sizeof(s) - 1})

/* Appends a complete response to c->out: status line, headers, Content-Length and the body
 * made of the pieces (no copy into a scratch buffer first). */
static void respond(struct fconn *c, int status, const char *extra_hdr, const struct piece *pc,
                    int npc)
{
    size_t len = 0;
    for (int i = 0; i < npc; i++)
        len += pc[i].n;
    switch (status) {
    case 200:
        BPUT_LIT(&c->out, "HTTP/1.1 200 OK\r\n");
        break;
    case 202:
        BPUT_LIT(&c->out, "HTTP/1.1 202 Accepted\r\n");
        break;
    case 400:
        BPUT_LIT(&c->out, "HTTP/1.1 400 Bad Request\r\n");
        break;
    case 405:
        BPUT_LIT(&c->out, "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST, DELETE\r\n");
        break;
    case 411:
        BPUT_LIT(&c->out, "HTTP/1.1 411 Length Required\r\n");
        break;
    case 413:
        BPUT_LIT(&c->out, "HTTP/1.1 413 Content Too Large\r\n");
        break;
    default:
        BPUT_LIT(&c->out, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
        break;
    }
    if (len > 0)
        BPUT_LIT(&c->out, "Content-Type: application/json\r\n");
    if (extra_hdr)
        bput(&c->out, extra_hdr, strlen(extra_hdr));
    if (c->closing)
        BPUT_LIT(&c->out, "Connection: close\r\n");
    char cl[48];
    memcpy(cl, "Content-Length: ", 16);
    size_t n = 16 + put_size(cl + 16, len);
    memcpy(cl + n, "\r\n\r\n", 4);
    bput(&c->out, cl, n + 4);
    for (int i = 0; i < npc; i++)
        bput(&c->out, pc[i].p, pc[i].n);
}

/* A JSON-RPC error reply (HTTP 200 for a request, 400 when the body is unusable). */
static void respond_rpc_error(struct fconn *c, int status, const char *id, size_t id_len,
                              const char *code_and_message)
{
    struct piece pc[] = {LIT("{\"jsonrpc\":\"2.0\",\"id\":"),
                         {id, id_len},
                         LIT(",\"error\":{\"code\":"),
                         {code_and_message, strlen(code_and_message)},
                         LIT("}}")};
    respond(c, status, NULL, pc, 5);
}

static void handle_call(struct fconn *c, const char *b, const struct core_rpc_env *env)
{
    const char *id = b + env->id.off;
    size_t idl = env->id.len;
    struct core_span name, args, v;
    enum core_json_type ty;
    if (env->params.len == 0 || core_json_obj_get(b, env->params, "name", &name, &ty) != 0 ||
        ty != CORE_JSON_STRING) {
        respond_rpc_error(c, 200, id, idl, "-32602,\"message\":\"tools/call needs a name\"");
        return;
    }
    bool have_args = core_json_obj_get(b, env->params, "arguments", &args, &ty) == 0 &&
                     ty == CORE_JSON_OBJECT;
    static const char head[] = ",\"result\":{\"content\":[{\"type\":\"text\",\"text\":";
    if (core_json_str_eq(b, name, "echo")) {
        if (!have_args || core_json_obj_get(b, args, "message", &v, &ty) != 0 ||
            ty != CORE_JSON_STRING) {
            respond_rpc_error(c, 200, id, idl, "-32602,\"message\":\"echo needs a message\"");
            return;
        }
        /* The message's JSON string bytes go back unchanged. */
        struct piece pc[] = {LIT("{\"jsonrpc\":\"2.0\",\"id\":"), {id, idl}, LIT(head),
                             {b + v.off, v.len}, LIT("}]}}")};
        respond(c, 200, NULL, pc, 5);
        return;
    }
    if (core_json_str_eq(b, name, "blob")) {
        size_t n = 0;
        bool ok = have_args && core_json_obj_get(b, args, "bytes", &v, &ty) == 0 &&
                  ty == CORE_JSON_NUMBER && v.len <= 9;
        for (size_t i = 0; ok && i < v.len; i++) {
            char ch = b[v.off + i];
            ok = ch >= '0' && ch <= '9';
            n = n * 10 + (size_t)(ch - '0');
        }
        if (!ok || n > BLOB_MAX) {
            respond_rpc_error(c, 200, id, idl,
                              "-32602,\"message\":\"blob needs bytes up to 16777216\"");
            return;
        }
        if (g_xs == NULL) {
            g_xs = core_xmalloc(BLOB_MAX);
            memset(g_xs, 'x', BLOB_MAX);
        }
        struct piece pc[] = {LIT("{\"jsonrpc\":\"2.0\",\"id\":"), {id, idl}, LIT(head), LIT("\""),
                             {g_xs, n}, LIT("\"}]}}")};
        respond(c, 200, NULL, pc, 6);
        return;
    }
    respond_rpc_error(c, 200, id, idl, "-32602,\"message\":\"unknown tool\"");
}

static void handle_post(struct fconn *c, const char *b, size_t n)
{
    struct core_rpc_env env;
    if (core_rpc_scan(b, n, &env) != 0) {
        respond_rpc_error(c, 400, "null", 4, "-32700,\"message\":\"Parse error\"");
        return;
    }
    switch (env.kind) {
    case CORE_RPC_NOTIFICATION:
    case CORE_RPC_RESULT:
    case CORE_RPC_ERROR:
        respond(c, 202, NULL, NULL, 0);
        return;
    case CORE_RPC_REQUEST:
        break;
    default:
        respond_rpc_error(c, 400, "null", 4, "-32600,\"message\":\"Invalid Request\"");
        return;
    }
    const char *id = b + env.id.off;
    size_t idl = env.id.len;
    const char *m = env.method_str;
    if (strcmp(m, "tools/call") == 0) {
        handle_call(c, b, &env);
    } else if (strcmp(m, "initialize") == 0) {
        /* Agree to the client's version (any string), else offer ours. */
        struct core_span pv = {0, 0};
        enum core_json_type ty = CORE_JSON_ABSENT;
        struct piece ver = LIT("\"2025-11-25\"");
        if (env.params.len && core_json_obj_get(b, env.params, "protocolVersion", &pv, &ty) == 0 &&
            ty == CORE_JSON_STRING)
            ver = (struct piece){b + pv.off, pv.len};
        struct piece pc[] = {LIT("{\"jsonrpc\":\"2.0\",\"id\":"), {id, idl},
                             LIT(",\"result\":{\"protocolVersion\":"), ver,
                             LIT(",\"capabilities\":{\"tools\":{}},"
                                 "\"serverInfo\":{\"name\":\"ag-floor\",\"version\":\"0.1.0\"}}}")};
        respond(c, 200, "Mcp-Session-Id: floor\r\n", pc, 5);
    } else if (strcmp(m, "tools/list") == 0) {
        struct piece pc[] = {
            LIT("{\"jsonrpc\":\"2.0\",\"id\":"), {id, idl},
            LIT(",\"result\":{\"tools\":[{\"name\":\"echo\",\"description\":\"Returns the message "
                "unchanged.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"message\":"
                "{\"type\":\"string\"}},\"required\":[\"message\"]}}]}}")};
        respond(c, 200, NULL, pc, 3);
    } else if (strcmp(m, "ping") == 0) {
        struct piece pc[] = {LIT("{\"jsonrpc\":\"2.0\",\"id\":"), {id, idl},
                             LIT(",\"result\":{}}")};
        respond(c, 200, NULL, pc, 3);
    } else {
        respond_rpc_error(c, 200, id, idl, "-32601,\"message\":\"Method not found\"");
    }
}

static bool ci_contains(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(p + i, needle, k) == 0)
            return true;
    return false;
}

/* Handles every complete request in c->in. Returns false when the connection must close now
 * (after what is queued is written). */
static bool handle_input(struct fconn *c)
{
    size_t pos = 0;
    while (!c->closing) {
        const char *p = c->in.data + pos;
        size_t avail = c->in.len - pos;
        const char *h = avail >= 4 ? memmem(p, avail, "\r\n\r\n", 4) : NULL;
        if (h == NULL) {
            if (avail > HEAD_MAX) {
                c->closing = true;
                respond(c, 431, NULL, NULL, 0);
            }
            break;
        }
        size_t hlen = (size_t)(h - p) + 4;
        const char *he = p + hlen;
        /* Request line: METHOD SP TARGET SP HTTP/1.x */
        const char *sp = memchr(p, ' ', hlen);
        const char *eol = memchr(p, '\n', hlen);
        if (sp == NULL || eol == NULL || sp > eol) {
            c->closing = true;
            respond(c, 400, NULL, NULL, 0);
            break;
        }
        size_t ml = (size_t)(sp - p);
        bool http10 = eol - p >= 9 && memcmp(eol - 9, "HTTP/1.0", 8) == 0;
        size_t clen = 0;
        bool chunked = false;
        bool conn_close = false;
        bool keep_alive = false;
        bool bad = false;
        for (const char *line = eol + 1; line < he;) {
            const char *nl = memchr(line, '\n', (size_t)(he - line));
            if (nl == NULL)
                break;
            const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
            const char *colon = memchr(line, ':', (size_t)(le - line));
            if (colon != NULL) {
                size_t kl = (size_t)(colon - line);
                const char *v = colon + 1;
                while (v < le && (*v == ' ' || *v == '\t'))
                    v++;
                size_t vl = (size_t)(le - v);
                if (kl == 14 && strncasecmp(line, "content-length", 14) == 0) {
                    clen = 0;
                    if (vl == 0 || vl > 12)
                        bad = true;
                    for (size_t i = 0; i < vl && !bad; i++) {
                        if (v[i] < '0' || v[i] > '9')
                            bad = v[i] != ' ' && v[i] != '\t';
                        else
                            clen = clen * 10 + (size_t)(v[i] - '0');
                    }
                } else if (kl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                    chunked = true;
                } else if (kl == 10 && strncasecmp(line, "connection", 10) == 0) {
                    conn_close = ci_contains(v, vl, "close");
                    keep_alive = ci_contains(v, vl, "keep-alive");
                }
            }
            line = nl + 1;
        }
        if (bad || chunked || clen > BODY_MAX) {
            c->closing = true;
            respond(c, bad ? 400 : chunked ? 411 : 413, NULL, NULL, 0);
            break;
        }
        if (avail - hlen < clen)
            break; /* the body is not all here yet */
        if (conn_close || (http10 && !keep_alive))
            c->closing = true;
        const char *body = p + hlen;
        if (ml == 4 && memcmp(p, "POST", 4) == 0)
            handle_post(c, body, clen);
        else if (ml == 6 && memcmp(p, "DELETE", 6) == 0)
            respond(c, 200, NULL, NULL, 0);
        else
            respond(c, 405, NULL, NULL, 0);
        pos += hlen + clen;
    }
    core_buf_consume(&c->in, pos);
    return true;
}

static void conn_free(struct fconn *c)
{
    close(c->fd); /* also drops its epoll registration */
    core_buf_dispose(&c->in);
    core_buf_dispose(&c->out);
    core_free(c);
}

static void set_out(struct fconn *c, bool on)
{
    if (c->want_out == on)
        return;
    /* Switching back to EPOLLIN re-arms the edge, so input that came meanwhile is reported. */
    struct epoll_event ev = {.events = (on ? EPOLLOUT : EPOLLIN) | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
}

/* Writes the queued output. Returns false when the connection is done (error, or closing
 * and everything written). While output is pending, the connection waits for EPOLLOUT only:
 * reading is paused until the client takes its answers. */
static bool flush_out(struct fconn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(c, true);
            return true;
        }
        return false;
    }
    core_buf_reset(&c->out);
    c->out_off = 0;
    if (c->closing)
        return false;
    set_out(c, false);
    return true;
}

/* Reads until a short read (edge-triggered), answering as it goes; stops reading while output
 * is pending. Returns false when the connection is to be freed. */
static bool on_readable(struct fconn *c)
{
    while (!c->want_out) {
        if (core_buf_reserve(&c->in, READ_CHUNK) != 0)
            return false;
        size_t space = c->in.cap - c->in.len;
        ssize_t n = read(c->fd, c->in.data + c->in.len, space);
        if (n == 0)
            return false;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        if (!handle_input(c) || !flush_out(c))
            return false;
        if ((size_t)n < space)
            break;
    }
    return true;
}

static void on_accept(void)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(g_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error such as EMFILE: try on the next event */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix */
        struct fconn *c = core_xcalloc(1, sizeof *c);
        c->fd = fd;
        core_buf_init(&c->in, HEAD_MAX + BODY_MAX + READ_CHUNK);
        core_buf_init(&c->out, 0);
        /* Edge-triggered (see set_out); reads go on until a short read. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            conn_free(c);
    }
}

static int listen_tcp(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end != '\0' || port > 65535)
        return -1;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* best effort */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        perror("ag-floor: bind/listen");
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from an earlier run */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        perror("ag-floor: bind/listen");
        close(fd);
        return -1;
    }
    snprintf(g_sock_path, sizeof g_sock_path, "%s", path);
    return fd;
}

static void usage(FILE *f)
{
    fputs("usage: ag-floor --listen HOST:PORT | --socket PATH\n"
          "\n"
          "The benchmark's HTTP floor: a single-threaded epoll HTTP/1.1 keep-alive server that\n"
          "answers every MCP POST itself, with no upstream:\n"
          "  initialize          a minimal InitializeResult, header Mcp-Session-Id: floor\n"
          "  notifications       202\n"
          "  tools/call echo     text = the message's JSON string bytes, id = the request's bytes\n"
          "  tools/call blob     text of `bytes` x's\n"
          "  tools/list          one tool (echo)\n"
          "  DELETE              200\n"
          "Any path is accepted. HOST is an IPv4 address (or localhost).\n"
          "Stops on SIGTERM/SIGINT.\n",
          f);
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL;
    const char *sock = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--listen") == 0) {
            listen_at = argv[++i];
        } else if (strcmp(argv[i], "--socket") == 0) {
            sock = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if ((listen_at == NULL) == (sock == NULL)) {
        usage(stderr);
        return 2;
    }
    g_lfd = listen_at ? listen_tcp(listen_at) : listen_unix(sock);
    if (g_lfd < 0) {
        fprintf(stderr, "ag-floor: cannot listen on %s\n", listen_at ? listen_at : sock);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (g_ep < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, g_lfd, &lev) != 0) {
        perror("ag-floor: epoll");
        return 1;
    }
    fprintf(stderr, "ag-floor: listening on %s%s\n", listen_at ? "" : "unix:",
            listen_at ? listen_at : sock);
    struct epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_wait(g_ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("ag-floor: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct fconn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept();
                continue;
            }
            bool keep;
            if (evs[i].events & EPOLLOUT) {
                /* Output drained: answer whatever arrived meanwhile, then read again. */
                keep = flush_out(c);
                if (keep && !c->want_out)
                    keep = handle_input(c) && flush_out(c);
            } else {
                keep = on_readable(c);
            }
            if (!keep)
                conn_free(c);
        }
    }
    fprintf(stderr, "ag-floor: stopping\n");
    close(g_lfd);
    if (g_sock_path[0])
        unlink(g_sock_path);
    core_free(g_xs);
    return 0;
}
