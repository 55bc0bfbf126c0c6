/* ag-load: the benchmark's load generator (issue 3).
 *
 * One thread, one epoll loop, plain non-blocking sockets and a minimal HTTP/1.1 client, so the
 * generator costs a few microseconds of CPU per request and is never the bottleneck. Buffers
 * belong to connections (or stdio slots) and are reused, so the steady state allocates nothing.
 * Replies are verified with a small JSON walker that skips strings with memchr, which keeps a
 * 64 KiB blob reply at one pass over its bytes.
 *
 * Every subcommand prints human-readable lines to stderr and one `RESULT key=value ...` line to
 * stdout, and is bounded in time by --timeout. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"

extern char **environ;

#define PROTO_VERSION "2025-11-25"
#define MAX_ERRORS_SHOWN 5
#define HEAD_MAX 65536             /* longest response header block */
#define BODY_MAX ((size_t)64 << 20) /* longest de-chunked body */
#define READ_CHUNK 65536           /* free tail offered to each read() */
#define HEADERS_MAX 16             /* --header options */
#define HEADER_LEN_MAX 4096        /* one --header's length */

/* ---- options ------------------------------------------------------------------------------ */

enum tool { TOOL_ECHO, TOOL_BLOB };

struct opts {
    const char *mode;
    const char *target;
    const char *label;
    long c;           /* connections (http, sessions) or outstanding requests (stdio) */
    double d;         /* measured duration, seconds */
    double warmup;    /* seconds before measuring */
    double timeout;   /* hard bound on the whole run, seconds; 0 = default */
    long n;           /* startup, sessions, list: how many */
    enum tool tool;
    size_t bytes;     /* blob size */
    const char *name; /* the tool name to call (default: echo or blob) */
    char **cmd;       /* the command after `--` */
    const char *headers[HEADERS_MAX]; /* --header "Name: value" lines (http, sessions, list) */
    size_t nheaders;
};

static struct opts g_opt = {.c = 1, .d = 5, .warmup = 1, .n = 10, .tool = TOOL_ECHO};

/* ---- time, errors, randomness ------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t g_deadline; /* the --timeout bound, CLOCK_MONOTONIC ns */
static uint64_t g_errors;
static void (*g_report)(void); /* prints the mode's RESULT line */
static pid_t g_child_pgid;     /* a spawned process group to kill on timeout, or 0 */

__attribute__((format(printf, 1, 2))) static void fail_one(const char *fmt, ...)
{
    g_errors++;
    if (g_errors == MAX_ERRORS_SHOWN + 1)
        fputs("ag-load: (further errors are counted, not shown)\n", stderr);
    if (g_errors > MAX_ERRORS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ag-load: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

__attribute__((noreturn)) static void die_timeout(void)
{
    fprintf(stderr, "ag-load: --timeout passed; stopping\n");
    if (g_child_pgid > 0)
        kill(-g_child_pgid, SIGKILL);
    g_errors++;
    if (g_report)
        g_report();
    exit(1);
}

/* Milliseconds to wait in one poll: up to the deadline, at most 100 ms so the loops that
 * also watch other clocks wake up. Dies when the deadline has passed. */
static int wait_ms(void)
{
    uint64_t now = now_ns();
    if (now >= g_deadline)
        die_timeout();
    uint64_t ms = (g_deadline - now) / 1000000u + 1;
    return ms > 100 ? 100 : (int)ms;
}

static uint64_t g_rng;

static uint64_t rng_next(void)
{
    /* xorshift64* */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}

/* Writes v in decimal to p (at least 20 bytes of room); returns the length. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static void bput(struct core_buf *b, const void *p, size_t n)
{
    if (core_buf_append(b, p, n) != 0) {
        fprintf(stderr, "ag-load: buffer limit passed\n");
        exit(1);
    }
}

#define BPUT_LIT(b, s) bput((b), (s), sizeof(s) - 1)

/* The echo message: 16 random characters, then the request's id as the per-request counter.
 * Only [A-Za-z0-9_-], so its JSON string is exactly its bytes in quotes. Returns the length. */
static size_t make_message(char *out, uint64_t id)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t r1 = rng_next();
    uint64_t r2 = rng_next();
    for (int i = 0; i < 8; i++) {
        out[i] = alpha[(r1 >> (6 * i)) & 63];
        out[8 + i] = alpha[(r2 >> (6 * i)) & 63];
    }
    return 16 + put_u64(out + 16, id);
}

/* ---- latency histogram -------------------------------------------------------------------- */

/* Log-linear in nanoseconds: exact below 1024 ns, then 512 buckets per power of two, so any
 * reported percentile is within 0.2% of the true sample. */
#define HIST_SUB_BITS 9
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64u * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    uint32_t b[HIST_BUCKETS];
};

static struct hist g_hist;

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

static void hist_add(struct hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->b[hist_index(v)]++;
}

/* The q-quantile (0 < q <= 1) in ns: the middle of the bucket holding the sample of rank
 * ceil(q * count), clamped to the exact min and max. */
static double hist_pct(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen < rank)
            continue;
        double v;
        if (i < 2 * HIST_SUB) {
            v = i;
        } else {
            unsigned shift = i / HIST_SUB - 1;
            uint64_t lo = (uint64_t)(i - shift * HIST_SUB) << shift;
            v = (double)lo + (double)((uint64_t)1 << shift) / 2;
        }
        if (v < (double)h->min)
            v = (double)h->min;
        if (v > (double)h->max)
            v = (double)h->max;
        return v;
    }
    return (double)h->max;
}

/* ---- a minimal JSON walker ---------------------------------------------------------------- */

/* It trusts the peer's syntax (replies are checked for the values that matter, not validated),
 * compares keys as raw bytes, and skips strings with memchr. */

static const char *js_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p is at an opening quote; returns just past the closing quote, or NULL. */
static const char *js_str(const char *p, const char *e)
{
    const char *q = p + 1;
    for (;;) {
        q = q < e ? memchr(q, '"', (size_t)(e - q)) : NULL;
        if (q == NULL)
            return NULL;
        const char *b = q;
        while (b > p + 1 && b[-1] == '\\')
            b--;
        if (((q - b) & 1) == 0)
            return q + 1;
        q++;
    }
}

/* Skips one value starting at p (after whitespace); returns the end, or NULL. */
static const char *js_skip(const char *p, const char *e)
{
    p = js_ws(p, e);
    if (p >= e)
        return NULL;
    if (*p == '"')
        return js_str(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            char ch = *p;
            if (ch == '"') {
                p = js_str(p, e);
                if (p == NULL)
                    return NULL;
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    const char *s = p;
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p > s ? p : NULL;
}

/* Finds member `key` of the object at p and returns the start of its value (not skipped), or
 * NULL. Members before it are skipped. */
static const char *js_find(const char *p, const char *e, const char *key)
{
    size_t kl = strlen(key);
    p = js_ws(p, e);
    if (p >= e || *p != '{')
        return NULL;
    p++;
    for (;;) {
        p = js_ws(p, e);
        if (p >= e || *p != '"')
            return NULL;
        const char *k = p + 1;
        const char *ke = js_str(p, e);
        if (ke == NULL)
            return NULL;
        p = js_ws(ke, e);
        if (p >= e || *p != ':')
            return NULL;
        const char *v = js_ws(p + 1, e);
        if ((size_t)(ke - 1 - k) == kl && memcmp(k, key, kl) == 0)
            return v < e ? v : NULL;
        const char *ve = js_skip(v, e);
        if (ve == NULL)
            return NULL;
        p = js_ws(ve, e);
        if (p >= e || *p != ',')
            return NULL;
        p++;
    }
}

/* The top-level members of a JSON-RPC message that the checks need. */
struct rpc_top {
    const char *id; /* value start, or NULL when absent */
    const char *id_end;
    const char *result; /* value start (not skipped), or NULL */
    const char *error;
    const char *method;
};

/* Walks the top-level object p[0..e). Stops once it has the id and a result or error, without
 * skipping that value (a blob's bytes are then passed over once, by the text check).
 * Returns false when the text is not an object it can walk. */
static bool rpc_top(const char *p, const char *e, struct rpc_top *t)
{
    memset(t, 0, sizeof *t);
    p = js_ws(p, e);
    if (p >= e || *p != '{')
        return false;
    p++;
    p = js_ws(p, e);
    if (p < e && *p == '}')
        return true;
    for (;;) {
        p = js_ws(p, e);
        if (p >= e || *p != '"')
            return false;
        const char *k = p + 1;
        const char *ke = js_str(p, e);
        if (ke == NULL)
            return false;
        size_t kl = (size_t)(ke - 1 - k);
        p = js_ws(ke, e);
        if (p >= e || *p != ':')
            return false;
        const char *v = js_ws(p + 1, e);
        if (v >= e)
            return false;
        bool is_id = kl == 2 && memcmp(k, "id", 2) == 0;
        bool is_res = kl == 6 && memcmp(k, "result", 6) == 0;
        bool is_err = kl == 5 && memcmp(k, "error", 5) == 0;
        if (is_res)
            t->result = v;
        else if (is_err)
            t->error = v;
        else if (kl == 6 && memcmp(k, "method", 6) == 0)
            t->method = v;
        if ((is_res || is_err) && t->id != NULL)
            return true;
        const char *ve = js_skip(v, e);
        if (ve == NULL)
            return false;
        if (is_id) {
            t->id = v;
            t->id_end = ve;
        }
        p = js_ws(ve, e);
        if (p < e && *p == '}')
            return true;
        if (p >= e || *p != ',')
            return false;
        p++;
    }
}

static bool id_is(const struct rpc_top *t, uint64_t id)
{
    char b[24];
    size_t n = put_u64(b, id);
    return t->id != NULL && (size_t)(t->id_end - t->id) == n && memcmp(t->id, b, n) == 0;
}

/* Parses an unsigned integer id; false when the id is absent or not one. */
static bool id_value(const struct rpc_top *t, uint64_t *out)
{
    if (t->id == NULL || t->id_end - t->id > 19 || t->id_end == t->id)
        return false;
    uint64_t v = 0;
    for (const char *p = t->id; p < t->id_end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* Prints an excerpt of a frame that failed a check (shown errors only). */
static void show_frame(const char *p, size_t n)
{
    if (g_errors > MAX_ERRORS_SHOWN)
        return;
    fprintf(stderr, "ag-load:   frame (%zu bytes): %.*s%s\n", n, (int)(n > 300 ? 300 : n), p,
            n > 300 ? "..." : "");
}

/* Checks a tools/call reply p[0..e) already walked into *t: the id is ours, it is a result,
 * and content[0].text is the echo message or `bytes` x's. Returns NULL or what is wrong. */
static const char *check_call(const char *e, const struct rpc_top *t, uint64_t id, const char *msg,
                              size_t msg_len)
{
    if (t->id == NULL)
        return "reply has no id";
    if (!id_is(t, id))
        return "reply id differs from the request's";
    if (t->error != NULL)
        return "JSON-RPC error reply";
    if (t->result == NULL)
        return "reply has neither result nor error";
    const char *v = js_find(t->result, e, "content");
    if (v == NULL || *v != '[')
        return "result has no content array";
    v = js_ws(v + 1, e);
    if (v >= e || *v != '{')
        return "content[0] is not an object";
    v = js_find(v, e, "text");
    if (v == NULL || *v != '"')
        return "content[0] has no text string";
    const char *ve = js_str(v, e);
    if (ve == NULL)
        return "content[0].text is not terminated";
    size_t tl = (size_t)(ve - v) - 2;
    const char *why = NULL;
    if (g_opt.tool == TOOL_ECHO) {
        if (tl != msg_len || memcmp(v + 1, msg, tl) != 0)
            why = "echo text differs from the message";
    } else if (tl != g_opt.bytes) {
        why = "blob text has the wrong length";
    } else if (tl > 0 && (v[1] != 'x' || v[tl] != 'x')) {
        why = "blob text is not a run of x";
    }
    if (why != NULL) { /* only now look past the content for a better diagnosis */
        const char *ie = js_find(t->result, e, "isError");
        if (ie != NULL && e - ie >= 4 && memcmp(ie, "true", 4) == 0)
            why = "the tool reported an error (isError: true)";
    }
    return why;
}

/* Counts the elements of result.tools in a tools/list reply; -1 if there is none. */
static long count_tools(const char *e, const struct rpc_top *t)
{
    if (t->result == NULL)
        return -1;
    const char *p = js_find(t->result, e, "tools");
    if (p == NULL || *p != '[')
        return -1;
    p = js_ws(p + 1, e);
    long n = 0;
    if (p < e && *p == ']')
        return 0;
    for (;;) {
        p = js_skip(p, e);
        if (p == NULL)
            return -1;
        n++;
        p = js_ws(p, e);
        if (p < e && *p == ']')
            return n;
        if (p >= e || *p != ',')
            return -1;
        p++;
    }
}

/* ---- request bodies ----------------------------------------------------------------------- */

/* The tool name sent by tools/call: --name, else echo or blob. Only [A-Za-z0-9_./-], so it
 * needs no JSON escaping. */
#define TOOL_NAME_MAX 128
static char g_tool_name[TOOL_NAME_MAX];
static size_t g_tool_name_len;

/* Builds a tools/call body for the configured tool into out (at least 320 bytes); for echo the
 * message goes to msg. Returns the body length. */
static size_t body_call(char *out, uint64_t id, char *msg, size_t *msg_len)
{
    static const char a[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    static const char b[] = ",\"method\":\"tools/call\",\"params\":{\"name\":\"";
    static const char echo_c[] = "\",\"arguments\":{\"message\":\"";
    static const char echo_d[] = "\"}}}";
    static const char blob_c[] = "\",\"arguments\":{\"bytes\":";
    static const char blob_d[] = "}}}";
    char *p = out;
    memcpy(p, a, sizeof a - 1);
    p += sizeof a - 1;
    p += put_u64(p, id);
    memcpy(p, b, sizeof b - 1);
    p += sizeof b - 1;
    memcpy(p, g_tool_name, g_tool_name_len);
    p += g_tool_name_len;
    if (g_opt.tool == TOOL_ECHO) {
        memcpy(p, echo_c, sizeof echo_c - 1);
        p += sizeof echo_c - 1;
        *msg_len = make_message(msg, id);
        memcpy(p, msg, *msg_len);
        p += *msg_len;
        memcpy(p, echo_d, sizeof echo_d - 1);
        p += sizeof echo_d - 1;
    } else {
        memcpy(p, blob_c, sizeof blob_c - 1);
        p += sizeof blob_c - 1;
        p += put_u64(p, g_opt.bytes);
        memcpy(p, blob_d, sizeof blob_d - 1);
        p += sizeof blob_d - 1;
        *msg_len = 0;
    }
    return (size_t)(p - out);
}

static size_t body_initialize(char *out, size_t cap, uint64_t id)
{
    int n = snprintf(out, cap,
                     "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64
                     ",\"method\":\"initialize\",\"params\":{"
                     "\"protocolVersion\":\"" PROTO_VERSION "\",\"capabilities\":{},"
                     "\"clientInfo\":{\"name\":\"ag-load\",\"version\":\"0.1.0\"}}}",
                     id);
    return (size_t)n;
}

static const char k_initialized[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

static size_t body_list(char *out, size_t cap, uint64_t id)
{
    int n = snprintf(out, cap, "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"tools/list\"}",
                     id);
    return (size_t)n;
}

/* Copies the protocolVersion string of an initialize result into out (bare, no quotes).
 * Returns false when it is missing. */
static bool init_version(const char *e, const struct rpc_top *t, char *out, size_t cap)
{
    if (t->result == NULL)
        return false;
    const char *v = js_find(t->result, e, "protocolVersion");
    if (v == NULL || *v != '"')
        return false;
    const char *ve = js_str(v, e);
    if (ve == NULL || (size_t)(ve - v - 2) >= cap || ve - v - 2 == 0)
        return false;
    memcpy(out, v + 1, (size_t)(ve - v - 2));
    out[ve - v - 2] = '\0';
    return true;
}

/* ---- HTTP client -------------------------------------------------------------------------- */

struct target {
    bool is_unix;
    struct sockaddr_storage sa;
    socklen_t salen;
    char path[256]; /* the HTTP path, e.g. /mcp */
    char host[300]; /* the Host header */
};

static struct target g_target;

/* Parses tcp:HOST:PORT/PATH or unix:/path/to/sock:/PATH. Only loopback hosts are accepted. */
static int parse_target(const char *t, struct target *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(t, "unix:", 5) == 0) {
        const char *s = t + 5;
        const char *sep = NULL;
        for (const char *q = strstr(s, ":/"); q != NULL; q = strstr(q + 1, ":/"))
            sep = q;
        size_t sl = sep ? (size_t)(sep - s) : strlen(s);
        struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
        if (sl == 0 || sl >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, s, sl);
        out->salen = (socklen_t)sizeof *un;
        out->is_unix = true;
        snprintf(out->path, sizeof out->path, "%s", sep ? sep + 1 : "/mcp");
        snprintf(out->host, sizeof out->host, "localhost");
        return 0;
    }
    if (strncmp(t, "tcp:", 4) != 0)
        return -1;
    const char *hp = t + 4;
    const char *slash = strchr(hp, '/');
    size_t hpl = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hpl == 0 || hpl >= sizeof out->host)
        return -1;
    memcpy(out->host, hp, hpl);
    out->host[hpl] = '\0';
    snprintf(out->path, sizeof out->path, "%s", slash ? slash : "/mcp");
    char *colon = strrchr(out->host, ':');
    if (colon == NULL)
        return -1;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end != '\0' || port == 0 || port > 65535)
        return -1;
    char name[256];
    size_t nl = (size_t)(colon - out->host);
    if (nl >= sizeof name)
        return -1;
    memcpy(name, out->host, nl);
    name[nl] = '\0';
    if (strcmp(name, "localhost") == 0)
        snprintf(name, sizeof name, "127.0.0.1");
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, name, &in4->sin_addr) == 1) {
        if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
            return -1;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->salen = (socklen_t)sizeof *in4;
        return 0;
    }
    if (strcmp(name, "[::1]") == 0) {
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons((uint16_t)port);
        out->salen = (socklen_t)sizeof *in6;
        return 0;
    }
    return -1;
}

/* Connects (blocking: loopback connects at once) and makes the socket non-blocking.
 * Returns the fd or -errno. */
static int target_connect(const struct target *t)
{
    int fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&t->sa, t->salen) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!t->is_unix) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Response parser states. */
enum rstate {
    RS_HEAD,       /* waiting for the end of the header block */
    RS_BODY_LEN,   /* Content-Length body */
    RS_CHUNK_SIZE, /* waiting for a chunk-size line */
    RS_CHUNK_DATA, /* inside a chunk */
    RS_CHUNK_CRLF, /* the CRLF after a chunk's data */
    RS_TRAILER,    /* trailer lines after the last chunk */
    RS_BODY_EOF,   /* the body ends when the server closes */
    RS_DONE,       /* complete: body/body_len are valid */
};

struct hresp {
    enum rstate state;
    int status;
    bool chunked;
    bool has_len;
    bool sse;   /* Content-Type: text/event-stream */
    bool close; /* the connection ends after this response */
    size_t clen;
    size_t pos;        /* parse offset in the connection's input */
    size_t scan;       /* where the header-end search resumes */
    size_t chunk_left; /* bytes left in the current chunk */
    const char *body;  /* RS_DONE: the body (in the input, or the de-chunked copy) */
    size_t body_len;
    char sid[1024]; /* Mcp-Session-Id (agentgate's are sealed tokens of ~300 bytes), or "" */
};

struct hconn {
    int fd;
    unsigned idx;
    bool busy;     /* a request is in flight */
    bool want_out; /* EPOLLOUT is registered */
    bool finished; /* the driver has no more work for it */
    struct core_buf out;
    size_t out_off;
    struct core_buf in;
    struct core_buf body; /* the de-chunked body */
    struct hresp r;
    uint64_t t_sent;
    uint64_t id; /* the in-flight request's id */
    int phase;   /* driver state (sessions: 0 initialize next, 1 initialized next) */
    char msg[48];
    size_t msg_len;
    char sid[1024]; /* sessions: the session being initialized */
    char ver[40];  /* sessions: the negotiated protocol version */
    char hdr[1152]; /* sessions: the session's header lines */
    size_t hdr_len;
};

static void hresp_reset(struct hresp *r)
{
    r->state = RS_HEAD;
    r->status = 0;
    r->chunked = false;
    r->has_len = false;
    r->sse = false;
    r->close = false;
    r->clen = 0;
    r->pos = 0;
    r->scan = 0;
    r->chunk_left = 0;
    r->body = NULL;
    r->body_len = 0;
    r->sid[0] = '\0';
}

static bool ci_contains(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(p + i, needle, k) == 0)
            return true;
    return false;
}

/* Parses the header block in[0..hend). Returns 0, 1 for an interim (1xx) response, or -1. */
static int parse_head(struct hresp *r, const char *in, size_t hend)
{
    const char *p = in;
    const char *e = in + hend;
    if (hend < 16 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    bool http10 = p[7] == '0';
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        st = st * 10 + (p[i] - '0');
    }
    r->status = st;
    if (st >= 100 && st < 200)
        return 1;
    bool keep_alive = false;
    const char *line = memchr(p, '\n', (size_t)(e - p));
    if (line == NULL)
        return -1;
    line++;
    while (line < e) {
        const char *nl = memchr(line, '\n', (size_t)(e - line));
        if (nl == NULL)
            break;
        const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon != NULL) {
            size_t kl = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (kl == 14 && strncasecmp(line, "content-length", 14) == 0) {
                size_t n = 0;
                if (vl == 0 || vl > 15)
                    return -1;
                for (const char *q = v; q < ve; q++) {
                    if (*q < '0' || *q > '9')
                        return -1;
                    n = n * 10 + (size_t)(*q - '0');
                }
                r->clen = n;
                r->has_len = true;
            } else if (kl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                if (ci_contains(v, vl, "chunked"))
                    r->chunked = true;
            } else if (kl == 12 && strncasecmp(line, "content-type", 12) == 0) {
                r->sse = vl >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
            } else if (kl == 10 && strncasecmp(line, "connection", 10) == 0) {
                if (ci_contains(v, vl, "close"))
                    r->close = true;
                if (ci_contains(v, vl, "keep-alive"))
                    keep_alive = true;
            } else if (kl == 14 && strncasecmp(line, "mcp-session-id", 14) == 0) {
                if (vl >= sizeof r->sid)
                    return -1;
                memcpy(r->sid, v, vl);
                r->sid[vl] = '\0';
            }
        }
        line = nl + 1;
    }
    if (http10 && !keep_alive)
        r->close = true;
    if (st == 204 || st == 304) {
        r->has_len = true;
        r->clen = 0;
        r->chunked = false;
    }
    if (r->chunked) {
        r->state = RS_CHUNK_SIZE;
    } else if (r->has_len) {
        r->state = RS_BODY_LEN;
    } else {
        r->state = RS_BODY_EOF;
        r->close = true;
    }
    r->pos = hend;
    return 0;
}

/* Advances the parser over c->in. Returns 1 when the response is complete, 0 for more input,
 * -1 on a protocol error. */
static int hresp_feed(struct hconn *c)
{
    struct hresp *r = &c->r;
    for (;;) {
        const char *in = c->in.data;
        size_t len = c->in.len;
        switch (r->state) {
        case RS_HEAD: {
            size_t from = r->scan > 3 ? r->scan - 3 : 0;
            const char *h = len > from ? memmem(in + from, len - from, "\r\n\r\n", 4) : NULL;
            if (h == NULL) {
                r->scan = len;
                return len > HEAD_MAX ? -1 : 0;
            }
            size_t hend = (size_t)(h - in) + 4;
            int rc = parse_head(r, in, hend);
            if (rc < 0)
                return -1;
            if (rc == 1) { /* interim response: drop it and wait for the real one */
                core_buf_consume(&c->in, hend);
                hresp_reset(r);
            }
            continue;
        }
        case RS_BODY_LEN:
            if (len - r->pos < r->clen)
                return 0;
            r->body = in + r->pos;
            r->body_len = r->clen;
            r->pos += r->clen;
            r->state = RS_DONE;
            return 1;
        case RS_CHUNK_SIZE: {
            const char *nl = memchr(in + r->pos, '\n', len - r->pos);
            if (nl == NULL)
                return len - r->pos > 1024 ? -1 : 0;
            size_t size = 0;
            int digits = 0;
            for (const char *q = in + r->pos; q < nl; q++, digits++) {
                int v;
                if (*q >= '0' && *q <= '9')
                    v = *q - '0';
                else if (*q >= 'a' && *q <= 'f')
                    v = *q - 'a' + 10;
                else if (*q >= 'A' && *q <= 'F')
                    v = *q - 'A' + 10;
                else
                    break;
                if (digits >= 15)
                    return -1;
                size = size * 16 + (size_t)v;
            }
            if (digits == 0)
                return -1;
            r->pos = (size_t)(nl - in) + 1;
            if (size == 0) {
                r->state = RS_TRAILER;
            } else {
                r->chunk_left = size;
                r->state = RS_CHUNK_DATA;
            }
            continue;
        }
        case RS_CHUNK_DATA: {
            size_t avail = len - r->pos;
            if (avail == 0)
                return 0;
            size_t take = avail < r->chunk_left ? avail : r->chunk_left;
            if (core_buf_append(&c->body, in + r->pos, take) != 0)
                return -1;
            r->pos += take;
            r->chunk_left -= take;
            if (r->chunk_left)
                return 0;
            r->state = RS_CHUNK_CRLF;
            continue;
        }
        case RS_CHUNK_CRLF:
            if (len - r->pos < 2)
                return 0;
            if (in[r->pos] != '\r' || in[r->pos + 1] != '\n')
                return -1;
            r->pos += 2;
            r->state = RS_CHUNK_SIZE;
            continue;
        case RS_TRAILER: {
            const char *nl = memchr(in + r->pos, '\n', len - r->pos);
            if (nl == NULL)
                return len - r->pos > HEAD_MAX ? -1 : 0;
            bool empty = nl == in + r->pos || (nl == in + r->pos + 1 && in[r->pos] == '\r');
            r->pos = (size_t)(nl - in) + 1;
            if (empty) {
                r->body = c->body.data ? c->body.data : "";
                r->body_len = c->body.len;
                r->state = RS_DONE;
                return 1;
            }
            continue;
        }
        case RS_BODY_EOF:
            return 0;
        case RS_DONE:
            return 1;
        }
    }
}

static struct core_buf g_sse_data; /* joined data lines of a multi-line SSE event */

/* Finds the JSON-RPC response to request `id` in a complete HTTP body: the body itself for
 * JSON, or the data of the event that carries it for SSE (notifications and requests from the
 * server are skipped). Fills *t and *end. Returns the frame, or NULL with *why set. */
static const char *resp_frame(struct hconn *c, uint64_t id, struct rpc_top *t, const char **end,
                              const char **why)
{
    const char *b = c->r.body;
    size_t n = c->r.body_len;
    if (!c->r.sse) {
        if (!rpc_top(b, b + n, t)) {
            *why = "reply body is not a JSON object";
            return NULL;
        }
        *end = b + n;
        return b;
    }
    const char *p = b;
    const char *e = b + n;
    const char *d1 = NULL; /* the single data line of this event, if one */
    const char *d1e = NULL;
    int ndata = 0;
    core_buf_reset(&g_sse_data);
    while (p <= e) {
        const char *nl = p < e ? memchr(p, '\n', (size_t)(e - p)) : NULL;
        const char *le = nl ? nl : e;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) { /* a blank line (or the end) dispatches the event */
            const char *f = d1;
            const char *fe = d1e;
            if (ndata > 1) {
                f = g_sse_data.data;
                fe = f + g_sse_data.len;
            }
            /* An event with empty data (a resumability priming event) carries no message. */
            if (ndata > 0 && fe > f) {
                if (!rpc_top(f, fe, t)) {
                    *why = "SSE event data is not a JSON object";
                    return NULL;
                }
                if (t->method == NULL) {
                    if (!id_is(t, id)) {
                        *why = "SSE response id differs from the request's";
                        return NULL;
                    }
                    *end = fe;
                    return f;
                }
            }
            ndata = 0;
            core_buf_reset(&g_sse_data);
        } else if ((size_t)(le - p) >= 5 && memcmp(p, "data:", 5) == 0) {
            const char *v = p + 5;
            if (v < le && *v == ' ')
                v++;
            if (ndata == 0) {
                d1 = v;
                d1e = le;
            } else {
                if (ndata == 1)
                    bput(&g_sse_data, d1, (size_t)(d1e - d1));
                BPUT_LIT(&g_sse_data, "\n");
                bput(&g_sse_data, v, (size_t)(le - v));
            }
            ndata++;
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    *why = "SSE stream ended without the response";
    return NULL;
}

/* The prebuilt start of every request: request line, Host, Content-Type, Accept. */
static struct core_buf g_req_prefix;
/* Mcp-Session-Id and MCP-Protocol-Version lines of the run's session (http, list modes). */
static struct core_buf g_sess_hdr;

static void build_prefix(void)
{
    core_buf_init(&g_req_prefix, 0);
    BPUT_LIT(&g_req_prefix, "POST ");
    bput(&g_req_prefix, g_target.path, strlen(g_target.path));
    BPUT_LIT(&g_req_prefix, " HTTP/1.1\r\nHost: ");
    bput(&g_req_prefix, g_target.host, strlen(g_target.host));
    BPUT_LIT(&g_req_prefix, "\r\nContent-Type: application/json\r\n"
                            "Accept: application/json, text/event-stream\r\n");
    for (size_t i = 0; i < g_opt.nheaders; i++) {
        bput(&g_req_prefix, g_opt.headers[i], strlen(g_opt.headers[i]));
        BPUT_LIT(&g_req_prefix, "\r\n");
    }
}

/* A --header value: "Name: value", Name an HTTP token, no control characters anywhere, and
 * not one of the headers ag-load writes itself. */
static bool header_ok(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > HEADER_LEN_MAX)
        return false;
    size_t nl = strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                          "!#$%&'*+-.^_`|~");
    if (nl == 0 || h[nl] != ':')
        return false;
    for (const char *p = h; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return false;
    static const char *const own[] = {"host", "content-type", "content-length", "accept",
                                      "mcp-session-id", "mcp-protocol-version",
                                      "transfer-encoding", "connection"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strlen(own[i]) == nl && strncasecmp(h, own[i], nl) == 0)
            return false;
    return true;
}

static void sess_hdr(struct core_buf *b, const char *sid, const char *ver)
{
    BPUT_LIT(b, "Mcp-Session-Id: ");
    bput(b, sid, strlen(sid));
    BPUT_LIT(b, "\r\nMCP-Protocol-Version: ");
    bput(b, ver, strlen(ver));
    BPUT_LIT(b, "\r\n");
}

/* Puts a complete POST into c->out; hdr holds extra header lines (or is NULL). */
static void http_build(struct hconn *c, const char *body, size_t blen, const char *hdr,
                       size_t hdr_len)
{
    core_buf_reset(&c->out);
    c->out_off = 0;
    bput(&c->out, g_req_prefix.data, g_req_prefix.len);
    if (hdr_len)
        bput(&c->out, hdr, hdr_len);
    char cl[48];
    memcpy(cl, "Content-Length: ", 16);
    size_t n = 16 + put_u64(cl + 16, blen);
    memcpy(cl + n, "\r\n\r\n", 4);
    bput(&c->out, cl, n + 4);
    bput(&c->out, body, blen);
}

/* ---- the epoll engine --------------------------------------------------------------------- */

/* A driver gives each connection its work: `next` builds the next request into c->out (and
 * sets c->t_sent = now) or returns false when the connection is finished; `done` handles a
 * complete response in c->r. */
struct driver {
    bool (*next)(struct hconn *c, uint64_t now);
    void (*done)(struct hconn *c, uint64_t now);
};

static int g_ep = -1;
static unsigned g_active;          /* connections not yet finished */
static uint64_t g_bytes_in;        /* bytes of counted responses */
static uint64_t g_total_done;      /* responses verified, warm-up included */
static struct epoll_event g_evs[256];

static void conn_set_out(struct hconn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
}

/* Writes what c->out holds. Returns 0 (EPOLLOUT armed if it would block) or -1. */
static int conn_flush(struct hconn *c)
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
            conn_set_out(c, true);
            return 0;
        }
        return -1;
    }
    conn_set_out(c, false);
    return 0;
}

static int conn_open(struct hconn *c)
{
    int fd = target_connect(&g_target);
    if (fd < 0)
        return fd;
    c->fd = fd;
    c->want_out = false;
    /* Edge-triggered: a level-triggered item is polled again on every epoll_wait after it
     * reported, which costs a tcp_poll per request. Reads go on until a short read. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = -errno;
        close(fd);
        c->fd = -1;
        return e;
    }
    core_buf_reset(&c->in);
    core_buf_reset(&c->body);
    hresp_reset(&c->r);
    return 0;
}

static void conn_close(struct hconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->want_out = false;
}

static void conn_finish(struct hconn *c)
{
    if (!c->finished) {
        c->finished = true;
        g_active--;
    }
}

/* Starts the connection's next request (reconnecting if needed), or finishes it. A send that
 * fails is counted and retried on a fresh connection, at most twice. */
static void conn_next(struct hconn *c, const struct driver *d, uint64_t now)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (c->finished)
            return;
        if (!d->next(c, now)) {
            conn_finish(c);
            return;
        }
        if (c->fd < 0) {
            int rc = conn_open(c);
            if (rc != 0) {
                fail_one("conn %u: reconnect: %s", c->idx, strerror(-rc));
                conn_finish(c);
                return;
            }
        }
        c->busy = true;
        hresp_reset(&c->r);
        core_buf_reset(&c->body);
        if (conn_flush(c) == 0)
            return;
        fail_one("conn %u: send failed: %s", c->idx, strerror(errno));
        c->busy = false;
        conn_close(c);
    }
    conn_finish(c);
}

/* The in-flight request failed at the transport level: count it, reconnect, go on. */
static void conn_fail(struct hconn *c, const struct driver *d, const char *why)
{
    fail_one("conn %u: %s", c->idx, why);
    c->busy = false;
    conn_close(c);
    conn_next(c, d, now_ns());
}

static void conn_complete(struct hconn *c, const struct driver *d)
{
    uint64_t now = now_ns();
    c->busy = false;
    d->done(c, now);
    bool close_after = c->r.close;
    core_buf_consume(&c->in, c->r.pos);
    if (close_after)
        conn_close(c);
    conn_next(c, d, now);
}

static void conn_readable(struct hconn *c, const struct driver *d)
{
    for (;;) {
        if (core_buf_reserve(&c->in, READ_CHUNK) != 0) {
            conn_fail(c, d, "response too large");
            return;
        }
        size_t space = c->in.cap - c->in.len;
        ssize_t n = read(c->fd, c->in.data + c->in.len, space);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (c->finished)
                conn_close(c);
            else
                conn_fail(c, d, strerror(errno));
            return;
        }
        if (c->finished) { /* idle at the end of its work: whatever came, just close */
            conn_close(c);
            return;
        }
        if (n == 0) {
            if (c->busy && c->r.state == RS_BODY_EOF) {
                c->r.body = c->in.data + c->r.pos;
                c->r.body_len = c->in.len - c->r.pos;
                c->r.pos = c->in.len;
                c->r.state = RS_DONE;
                c->r.close = true;
                conn_complete(c, d);
            } else if (c->busy) {
                conn_fail(c, d, "the server closed the connection mid-response");
            } else {
                conn_close(c); /* idle close: reconnect for the next request */
                conn_next(c, d, now_ns());
            }
            return;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        if (!c->busy) {
            conn_fail(c, d, "unexpected bytes from the server while idle");
            return;
        }
        int rc = hresp_feed(c);
        if (rc < 0) {
            conn_fail(c, d, "malformed HTTP response");
            return;
        }
        if (rc == 1) {
            conn_complete(c, d); /* one request in flight: nothing else can be pending */
            return;
        }
        if ((size_t)n < space)
            return; /* a short read drained the socket; the next bytes raise a new edge */
    }
}

/* Runs n connections under driver d until every one is finished. */
static void engine_run(struct hconn *conns, unsigned n, const struct driver *d)
{
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("ag-load: epoll_create1");
        exit(1);
    }
    g_active = n;
    uint64_t now = now_ns();
    for (unsigned i = 0; i < n; i++) {
        struct hconn *c = &conns[i];
        c->idx = i;
        c->fd = -1;
        int rc = conn_open(c);
        if (rc != 0) {
            fail_one("conn %u: connect: %s", i, strerror(-rc));
            conn_finish(c);
            continue;
        }
        conn_next(c, d, now);
    }
    while (g_active > 0) {
        int nev = epoll_wait(g_ep, g_evs, (int)(sizeof g_evs / sizeof g_evs[0]), wait_ms());
        if (nev < 0) {
            if (errno == EINTR)
                continue;
            perror("ag-load: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < nev; i++) {
            struct hconn *c = g_evs[i].data.ptr;
            uint32_t ev = g_evs[i].events;
            if (c->fd < 0)
                continue;
            if ((ev & EPOLLOUT) && conn_flush(c) != 0) {
                conn_fail(c, d, "send failed");
                continue;
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_readable(c, d);
        }
    }
    close(g_ep);
    g_ep = -1;
}

static struct hconn *conns_new(unsigned n)
{
    struct hconn *cs = core_xcalloc(n, sizeof *cs);
    for (unsigned i = 0; i < n; i++) {
        core_buf_init(&cs[i].out, 0);
        core_buf_init(&cs[i].in, 0);
        core_buf_init(&cs[i].body, BODY_MAX);
        cs[i].fd = -1;
    }
    return cs;
}

static void conns_free(struct hconn *cs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        conn_close(&cs[i]);
        core_buf_dispose(&cs[i].out);
        core_buf_dispose(&cs[i].in);
        core_buf_dispose(&cs[i].body);
    }
    core_free(cs);
}

static uint64_t g_next_id = 1;

/* ---- driver: sessions (initialize + notifications/initialized) ---------------------------- */

static long g_sess_target;  /* sessions to create */
static long g_sess_started; /* initialize requests sent */
static long g_sess_done;    /* sessions initialized */
static char g_sid[1024];     /* the last session created, and its protocol version */
static char g_ver[40];

static bool sess_next(struct hconn *c, uint64_t now)
{
    char body[512];
    if (c->phase == 0) {
        if (g_sess_started >= g_sess_target)
            return false;
        g_sess_started++;
        c->id = g_next_id++;
        size_t n = body_initialize(body, sizeof body, c->id);
        http_build(c, body, n, NULL, 0);
    } else {
        http_build(c, k_initialized, sizeof k_initialized - 1, c->hdr, c->hdr_len);
    }
    c->t_sent = now;
    return true;
}

static void sess_done(struct hconn *c, uint64_t now)
{
    (void)now;
    if (c->phase == 1) {
        c->phase = 0;
        if (c->r.status != 202) {
            fail_one("notifications/initialized: HTTP %d (want 202)", c->r.status);
            return;
        }
        g_sess_done++;
        snprintf(g_sid, sizeof g_sid, "%s", c->sid);
        snprintf(g_ver, sizeof g_ver, "%s", c->ver);
        return;
    }
    if (c->r.status != 200) {
        fail_one("initialize: HTTP %d", c->r.status);
        show_frame(c->r.body, c->r.body_len);
        return;
    }
    if (c->r.sid[0] == '\0') {
        fail_one("initialize: no Mcp-Session-Id header in the response");
        return;
    }
    struct rpc_top t;
    const char *end;
    const char *why = NULL;
    const char *f = resp_frame(c, c->id, &t, &end, &why);
    if (f == NULL) {
        fail_one("initialize: %s", why);
        show_frame(c->r.body, c->r.body_len);
        return;
    }
    if (!id_is(&t, c->id) || t.error != NULL || !init_version(end, &t, c->ver, sizeof c->ver)) {
        fail_one("initialize: not a result with our id and a protocolVersion");
        show_frame(f, (size_t)(end - f));
        return;
    }
    int n = snprintf(c->hdr, sizeof c->hdr, "Mcp-Session-Id: %s\r\nMCP-Protocol-Version: %s\r\n",
                     c->r.sid, c->ver);
    if (n <= 0 || (size_t)n >= sizeof c->hdr) {
        fail_one("initialize: session id too long");
        return;
    }
    c->hdr_len = (size_t)n;
    snprintf(c->sid, sizeof c->sid, "%s", c->r.sid);
    c->phase = 1;
}

static const struct driver sess_driver = {sess_next, sess_done};

/* Creates one session over one connection and leaves it in g_sid/g_ver, with the request
 * headers for it in g_sess_hdr. Returns false on failure (already counted). */
static bool handshake(void)
{
    g_sess_target = 1;
    g_sess_started = 0;
    g_sess_done = 0;
    struct hconn *c = conns_new(1);
    engine_run(c, 1, &sess_driver);
    conns_free(c, 1);
    if (g_sess_done != 1)
        return false;
    core_buf_init(&g_sess_hdr, 0);
    sess_hdr(&g_sess_hdr, g_sid, g_ver);
    fprintf(stderr, "ag-load: session %s (protocol %s)\n", g_sid, g_ver);
    return true;
}

/* ---- driver: tools/call for a duration ---------------------------------------------------- */

static uint64_t g_t_start; /* end of warm-up: requests sent from here on are counted */
static uint64_t g_t_end;   /* no request is sent from here on */
static uint64_t g_t_last;  /* completion time of the last counted request */

static bool call_next(struct hconn *c, uint64_t now)
{
    if (now >= g_t_end)
        return false;
    char body[320];
    c->id = g_next_id++;
    size_t n = body_call(body, c->id, c->msg, &c->msg_len);
    http_build(c, body, n, g_sess_hdr.data, g_sess_hdr.len);
    c->t_sent = now;
    return true;
}

static void call_done(struct hconn *c, uint64_t now)
{
    if (c->r.status != 200) {
        fail_one("tools/call id %" PRIu64 ": HTTP %d", c->id, c->r.status);
        show_frame(c->r.body, c->r.body_len);
        return;
    }
    struct rpc_top t;
    const char *end;
    const char *why = NULL;
    const char *f = resp_frame(c, c->id, &t, &end, &why);
    if (f != NULL)
        why = check_call(end, &t, c->id, c->msg, c->msg_len);
    if (why != NULL) {
        fail_one("tools/call id %" PRIu64 ": %s", c->id, why);
        show_frame(c->r.body, c->r.body_len);
        return;
    }
    g_total_done++;
    if (c->t_sent >= g_t_start) {
        hist_add(&g_hist, now - c->t_sent);
        g_bytes_in += c->r.pos;
        g_t_last = now;
    }
}

static const struct driver call_driver = {call_next, call_done};

/* ---- driver: sequential tools/list -------------------------------------------------------- */

static long g_list_sent;
static long g_tools = -1;

static bool list_next(struct hconn *c, uint64_t now)
{
    if (g_list_sent >= g_opt.n)
        return false;
    g_list_sent++;
    char body[128];
    c->id = g_next_id++;
    size_t n = body_list(body, sizeof body, c->id);
    http_build(c, body, n, g_sess_hdr.data, g_sess_hdr.len);
    c->t_sent = now;
    return true;
}

static void list_done(struct hconn *c, uint64_t now)
{
    if (c->r.status != 200) {
        fail_one("tools/list: HTTP %d", c->r.status);
        return;
    }
    struct rpc_top t;
    const char *end;
    const char *why = NULL;
    const char *f = resp_frame(c, c->id, &t, &end, &why);
    long tools = -1;
    if (f != NULL && (t.error != NULL || !id_is(&t, c->id)))
        why = "not a result with our id";
    else if (f != NULL && (tools = count_tools(end, &t)) < 0)
        why = "result has no tools array";
    if (why != NULL) {
        fail_one("tools/list: %s", why);
        show_frame(c->r.body, c->r.body_len);
        return;
    }
    g_tools = tools;
    hist_add(&g_hist, now - c->t_sent);
}

static const struct driver list_driver = {list_next, list_done};

/* ---- RESULT lines ------------------------------------------------------------------------- */

static char g_label[128];

/* The generator's own CPU time (user + system) per request, in µs, over the whole run. */
static double gen_cpu_us(void)
{
    struct rusage ru;
    if (g_total_done == 0 || getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    double us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return us / (double)g_total_done;
}

static void report_load(void)
{
    double secs = g_t_last > g_t_start ? (double)(g_t_last - g_t_start) / 1e9 : 0;
    double rps = secs > 0 ? (double)g_hist.count / secs : 0;
    double p50 = hist_pct(&g_hist, 0.50) / 1e3;
    double p90 = hist_pct(&g_hist, 0.90) / 1e3;
    double p99 = hist_pct(&g_hist, 0.99) / 1e3;
    double mx = (double)g_hist.max / 1e3;
    double cpu = gen_cpu_us();
    fprintf(stderr,
            "ag-load %s [%s]: c=%ld d=%gs: %" PRIu64 " requests in %.2fs, %.0f req/s; "
            "latency p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us; %" PRIu64
            " errors; %.1f MB in; generator CPU %.2f us/request\n",
            g_opt.mode, g_label, g_opt.c, g_opt.d, g_hist.count, secs, rps, p50, p90, p99, mx,
            g_errors, (double)g_bytes_in / 1e6, cpu);
    printf("RESULT label=%s mode=%s c=%ld d=%g reqs=%" PRIu64 " rps=%.0f p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f max_us=%.1f errors=%" PRIu64 " bytes_in=%" PRIu64 " gen_cpu_us=%.2f\n",
           g_label, g_opt.mode, g_opt.c, g_opt.d, g_hist.count, rps, p50, p90, p99, mx, g_errors,
           g_bytes_in, cpu);
    fflush(stdout);
}

static void report_timing(const char *extra_key, long extra)
{
    double p50 = hist_pct(&g_hist, 0.50) / 1e3;
    double mn = (double)g_hist.min / 1e3;
    double mx = (double)g_hist.max / 1e3;
    fprintf(stderr, "ag-load %s [%s]: n=%" PRIu64 ": median %.1f us, min %.1f us, max %.1f us",
            g_opt.mode, g_label, g_hist.count, p50, mn, mx);
    if (extra_key)
        fprintf(stderr, ", %s %ld", extra_key, extra);
    fprintf(stderr, "; %" PRIu64 " errors\n", g_errors);
    printf("RESULT label=%s mode=%s n=%" PRIu64 " p50_us=%.1f min_us=%.1f max_us=%.1f", g_label,
           g_opt.mode, g_hist.count, p50, mn, mx);
    if (extra_key)
        printf(" %s=%ld", extra_key, extra);
    printf(" errors=%" PRIu64 "\n", g_errors);
    fflush(stdout);
}

static void report_startup(void)
{
    report_timing(NULL, 0);
}

static void report_list(void)
{
    report_timing("tools", g_tools);
}

static uint64_t g_sess_t0;

static void report_sessions(void)
{
    double secs = (double)(now_ns() - g_sess_t0) / 1e9;
    fprintf(stderr, "ag-load sessions [%s]: %ld sessions in %.2fs (%.0f/s); %" PRIu64 " errors\n",
            g_label, g_sess_done, secs, secs > 0 ? (double)g_sess_done / secs : 0, g_errors);
    printf("RESULT label=%s mode=sessions n=%ld secs=%.3f errors=%" PRIu64 "\n", g_label,
           g_sess_done, secs, g_errors);
    fflush(stdout);
}

/* ---- HTTP subcommands --------------------------------------------------------------------- */

static int cmd_http(void)
{
    g_report = report_load;
    if (!handshake()) {
        report_load();
        return 1;
    }
    unsigned n = (unsigned)g_opt.c;
    struct hconn *cs = conns_new(n);
    uint64_t now = now_ns();
    g_t_start = now + (uint64_t)(g_opt.warmup * 1e9);
    g_t_end = g_t_start + (uint64_t)(g_opt.d * 1e9);
    g_t_last = g_t_start;
    engine_run(cs, n, &call_driver);
    conns_free(cs, n);
    report_load();
    return g_errors ? 1 : 0;
}

static int cmd_sessions(void)
{
    g_report = report_sessions;
    g_sess_t0 = now_ns();
    g_sess_target = g_opt.n;
    long c = g_opt.c;
    if (c > g_opt.n)
        c = g_opt.n;
    if (c < 1)
        c = 1;
    struct hconn *cs = conns_new((unsigned)c);
    engine_run(cs, (unsigned)c, &sess_driver);
    conns_free(cs, (unsigned)c);
    report_sessions();
    return g_errors ? 1 : 0;
}

static int cmd_list(void)
{
    g_report = report_list;
    if (!handshake()) {
        report_list();
        return 1;
    }
    struct hconn *c = conns_new(1);
    engine_run(c, 1, &list_driver);
    conns_free(c, 1);
    report_list();
    return g_errors ? 1 : 0;
}

/* ---- stdio children ----------------------------------------------------------------------- */

struct child {
    pid_t pid; /* also the process group id */
    int wfd;   /* its stdin, non-blocking */
    int rfd;   /* its stdout, non-blocking */
};

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Spawns argv in its own process group with socketpairs on stdin and stdout (stderr is inherited).
 * Returns 0 or -1 (reported). */
static int child_spawn(char **argv, struct child *ch)
{
    /* Socketpairs, as libuv gives the gateway's own children: the floor and the gateway then
     * pay the same for their stdio. */
    int in[2];
    int out[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawnattr_init(&at);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE); /* ignored here; ignoring would be inherited across exec */
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        fail_one("spawn %s: %s", argv[0], strerror(rc));
        close(in[1]);
        close(out[0]);
        return -1;
    }
    ch->pid = pid;
    ch->wfd = in[1];
    ch->rfd = out[0];
    g_child_pgid = pid;
    if (set_nonblock(ch->wfd) != 0 || set_nonblock(ch->rfd) != 0) {
        fail_one("fcntl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Stops a child: with `graceful`, closes its stdin and waits up to 2 s for it to exit; then
 * kills its process group and reaps it. */
static void child_stop(struct child *ch, bool graceful)
{
    if (ch->wfd >= 0)
        close(ch->wfd);
    ch->wfd = -1;
    if (graceful) {
        uint64_t until = now_ns() + 2000000000u;
        siginfo_t si;
        for (;;) {
            memset(&si, 0, sizeof si);
            /* WNOWAIT: the leader stays unreaped, so its pid (the group id) is not reused
             * before the kill below. */
            if (waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
                si.si_pid == ch->pid)
                break;
            if (now_ns() >= until) {
                fprintf(stderr, "ag-load: the child did not exit within 2 s of EOF; killing\n");
                break;
            }
            usleep(2000);
        }
    }
    kill(-ch->pid, SIGKILL);
    int st;
    while (waitpid(ch->pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (ch->rfd >= 0)
        close(ch->rfd);
    ch->rfd = -1;
    g_child_pgid = 0;
}

/* Writes all of p to the child (blocking with poll). Returns 0 or -1. */
static int child_write_all(struct child *ch, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(ch->wfd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        struct pollfd pf = {.fd = ch->wfd, .events = POLLOUT};
        (void)poll(&pf, 1, wait_ms()); /* woken by readiness or the 100 ms tick */
    }
    return 0;
}

/* Waits for the reply to `id` on the child's stdout (other lines are skipped). On success the
 * frame is in[0..*len) with *t filled, and the caller consumes *used bytes after using it.
 * Returns 0, or -1 when the child closed its stdout. */
static int child_wait_reply(struct child *ch, struct core_buf *in, uint64_t id, size_t *off,
                            size_t *len, struct rpc_top *t, size_t *used)
{
    size_t start = 0;
    if (core_buf_reserve(in, READ_CHUNK) != 0)
        return -1;
    for (;;) {
        const char *nl;
        while ((nl = memchr(in->data + start, '\n', in->len - start)) != NULL) {
            const char *f = in->data + start;
            size_t fl = (size_t)(nl - f);
            if (rpc_top(f, nl, t) && t->method == NULL && id_is(t, id)) {
                *off = start;
                *len = fl;
                *used = start + fl + 1;
                return 0;
            }
            start += fl + 1;
        }
        core_buf_consume(in, start);
        start = 0;
        if (core_buf_reserve(in, READ_CHUNK) != 0)
            return -1;
        ssize_t r = read(ch->rfd, in->data + in->len, in->cap - in->len);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                return -1;
            struct pollfd pf = {.fd = ch->rfd, .events = POLLIN};
            (void)poll(&pf, 1, wait_ms()); /* woken by readiness or the 100 ms tick */
            continue;
        }
        in->len += (size_t)r;
        in->data[in->len] = '\0';
    }
}

/* initialize + notifications/initialized over the child's pipes. Returns 0 or -1 (counted). */
static int child_handshake(struct child *ch, struct core_buf *in, uint64_t id, bool with_list)
{
    char line[512];
    size_t n = body_initialize(line, sizeof line - 1, id);
    line[n++] = '\n';
    if (child_write_all(ch, line, n) != 0) {
        fail_one("write initialize: %s", strerror(errno));
        return -1;
    }
    struct rpc_top t;
    size_t off, len, used;
    if (child_wait_reply(ch, in, id, &off, &len, &t, &used) != 0) {
        fail_one("no initialize reply (the child closed its stdout)");
        return -1;
    }
    char ver[40];
    bool ok = t.error == NULL && init_version(in->data + off + len, &t, ver, sizeof ver);
    if (!ok) {
        fail_one("initialize failed");
        show_frame(in->data + off, len);
    }
    core_buf_consume(in, used);
    if (!ok)
        return -1;
    n = sizeof k_initialized - 1;
    memcpy(line, k_initialized, n);
    line[n++] = '\n';
    if (with_list) {
        n += body_list(line + n, sizeof line - n - 1, id + 1);
        line[n++] = '\n';
    }
    if (child_write_all(ch, line, n) != 0) {
        fail_one("write initialized: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- stdio: pipelined tools/call ---------------------------------------------------------- */

/* One outstanding request. Slot i uses ids base + i + k*C, so a reply's id names its slot. */
struct slot {
    uint64_t id;
    uint64_t t_sent;
    bool busy;
    size_t msg_len;
    char msg[48];
};

static void slot_issue(struct slot *s, struct core_buf *out, uint64_t id, uint64_t now)
{
    char body[320];
    s->id = id;
    size_t n = body_call(body, id, s->msg, &s->msg_len);
    body[n++] = '\n';
    bput(out, body, n);
    s->t_sent = now;
    s->busy = true;
}

static int cmd_stdio(void)
{
    g_report = report_load;
    struct child ch = {.pid = 0, .wfd = -1, .rfd = -1};
    struct core_buf in;
    struct core_buf out;
    core_buf_init(&in, BODY_MAX);
    core_buf_init(&out, 0);
    if (child_spawn(g_opt.cmd, &ch) != 0) {
        report_load();
        return 1;
    }
    if (child_handshake(&ch, &in, 1, false) != 0) {
        child_stop(&ch, false);
        report_load();
        return 1;
    }

    unsigned C = (unsigned)g_opt.c;
    const uint64_t base = 100;
    struct slot *slots = core_xcalloc(C, sizeof *slots);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    (void)epoll_ctl(ep, EPOLL_CTL_ADD, ch.rfd, &ev); /* fresh pipe fds: cannot fail */
    ev.events = 0;
    ev.data.u32 = 1;
    (void)epoll_ctl(ep, EPOLL_CTL_ADD, ch.wfd, &ev);
    bool want_out = false;

    uint64_t now = now_ns();
    g_t_start = now + (uint64_t)(g_opt.warmup * 1e9);
    g_t_end = g_t_start + (uint64_t)(g_opt.d * 1e9);
    g_t_last = g_t_start;
    unsigned outstanding = 0;
    for (unsigned i = 0; i < C; i++) {
        slot_issue(&slots[i], &out, base + i, now);
        outstanding++;
    }
    size_t out_off = 0;
    size_t scan = 0; /* lines before this offset in `in` are handled */
    size_t look = 0; /* the newline search resumes here (>= scan) */
    bool dead = false;
    while (outstanding > 0 && !dead) {
        /* Write whatever is queued, in one call when the pipe has room. */
        while (out_off < out.len) {
            ssize_t w = write(ch.wfd, out.data + out_off, out.len - out_off);
            if (w > 0) {
                out_off += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno != EAGAIN) {
                fail_one("write to the child: %s", strerror(errno));
                dead = true;
            }
            break;
        }
        if (out_off == out.len) {
            core_buf_reset(&out);
            out_off = 0;
        }
        bool need_out = out_off < out.len;
        if (need_out != want_out) {
            ev.events = need_out ? EPOLLOUT : 0;
            ev.data.u32 = 1;
            (void)epoll_ctl(ep, EPOLL_CTL_MOD, ch.wfd, &ev); /* our own registered fd */
            want_out = need_out;
        }
        if (dead)
            break;
        int nev = epoll_wait(ep, g_evs, 2, wait_ms());
        if (nev < 0 && errno != EINTR) {
            perror("ag-load: epoll_wait");
            break;
        }
        bool readable = false;
        for (int i = 0; i < nev; i++) {
            if (g_evs[i].data.u32 == 0) {
                readable = true;
            } else if (g_evs[i].events & (EPOLLERR | EPOLLHUP)) {
                fail_one("the child closed its stdin with %u requests outstanding", outstanding);
                dead = true;
            }
        }
        if (!readable)
            continue;
        if (core_buf_reserve(&in, READ_CHUNK) != 0) {
            fail_one("a reply line passed %zu bytes", BODY_MAX);
            break;
        }
        ssize_t r = read(ch.rfd, in.data + in.len, in.cap - in.len);
        if (r == 0) {
            fail_one("the child closed its stdout with %u requests outstanding", outstanding);
            break;
        }
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                fail_one("read from the child: %s", strerror(errno));
                break;
            }
            continue;
        }
        in.len += (size_t)r;
        in.data[in.len] = '\0';
        now = now_ns();
        const char *nl;
        while ((nl = memchr(in.data + look, '\n', in.len - look)) != NULL) {
            const char *f = in.data + scan;
            size_t fl = (size_t)(nl - f);
            size_t line_bytes = fl + 1;
            scan += line_bytes;
            look = scan;
            struct rpc_top t;
            uint64_t id;
            if (!rpc_top(f, nl, &t)) {
                fail_one("a line from the child is not a JSON object");
                show_frame(f, fl);
                continue;
            }
            if (t.method != NULL)
                continue; /* a notification or a request from the server */
            struct slot *s = NULL;
            if (id_value(&t, &id) && id >= base && slots[(id - base) % C].busy &&
                slots[(id - base) % C].id == id)
                s = &slots[(id - base) % C];
            if (s == NULL) {
                fail_one("a reply with an unknown id");
                show_frame(f, fl);
                continue;
            }
            s->busy = false;
            outstanding--;
            const char *why = check_call(nl, &t, s->id, s->msg, s->msg_len);
            if (why != NULL) {
                fail_one("tools/call id %" PRIu64 ": %s", s->id, why);
                show_frame(f, fl);
            } else {
                g_total_done++;
                if (s->t_sent >= g_t_start) {
                    hist_add(&g_hist, now - s->t_sent);
                    g_bytes_in += line_bytes;
                    g_t_last = now;
                }
            }
            if (now < g_t_end) {
                slot_issue(s, &out, s->id + C, now);
                outstanding++;
            }
        }
        /* Compact once per read; keep a partial line, and do not search its bytes again. */
        look = in.len - scan;
        core_buf_consume(&in, scan);
        scan = 0;
    }
    close(ep);
    child_stop(&ch, true);
    core_free(slots);
    core_buf_dispose(&in);
    core_buf_dispose(&out);
    report_load();
    return g_errors ? 1 : 0;
}

/* ---- stdio: startup time ------------------------------------------------------------------ */

static int cmd_startup(void)
{
    g_report = report_startup;
    struct core_buf in;
    core_buf_init(&in, BODY_MAX);
    for (long i = 0; i < g_opt.n; i++) {
        struct child ch = {.pid = 0, .wfd = -1, .rfd = -1};
        core_buf_reset(&in);
        uint64_t t0 = now_ns();
        if (child_spawn(g_opt.cmd, &ch) != 0)
            continue;
        if (child_handshake(&ch, &in, 1, true) == 0) {
            struct rpc_top t;
            size_t off, len, used;
            if (child_wait_reply(&ch, &in, 2, &off, &len, &t, &used) != 0) {
                fail_one("no tools/list reply (the child closed its stdout)");
            } else {
                uint64_t t1 = now_ns();
                if (t.error != NULL || count_tools(in.data + off + len, &t) < 0) {
                    fail_one("tools/list failed");
                    show_frame(in.data + off, len);
                } else {
                    hist_add(&g_hist, t1 - t0);
                }
            }
        }
        child_stop(&ch, false);
    }
    core_buf_dispose(&in);
    report_startup();
    return g_errors ? 1 : 0;
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs(
        "usage: ag-load <mode> [options] [-- COMMAND ARGS...]\n"
        "\n"
        "The benchmark's load generator: one epoll thread, plain sockets, every reply verified.\n"
        "Each mode prints human-readable lines to stderr and one line to stdout:\n"
        "  RESULT key=value ...\n"
        "\n"
        "modes:\n"
        "  http --target T -c C -d SECS [--tool echo|blob] [--bytes N] [--name NAME]\n"
        "       [--warmup SECS] [--header H]...\n"
        "      One Streamable HTTP session (initialize, notifications/initialized), then C\n"
        "      keep-alive connections each with one tools/call in flight for SECS seconds.\n"
        "      RESULT: label mode=http c d reqs rps p50_us p90_us p99_us max_us errors bytes_in\n"
        "              gen_cpu_us (the generator's own CPU per request, warm-up included)\n"
        "  stdio -c C -d SECS [--tool echo|blob] [--bytes N] [--name NAME] [--warmup SECS]\n"
        "        -- CMD ARGS...\n"
        "      Spawns CMD (own process group), initializes over newline-delimited JSON-RPC on\n"
        "      its stdin/stdout, then keeps C tools/call requests outstanding (pipelined).\n"
        "      At the end closes its stdin, waits up to 2 s, kills its process group.\n"
        "      RESULT: same keys as http, mode=stdio\n"
        "  startup -n N -- CMD ARGS...\n"
        "      N times: spawn CMD, initialize, notifications/initialized, tools/list; time\n"
        "      from spawn to the tools/list reply; kill the group.\n"
        "      RESULT: label mode=startup n p50_us min_us max_us errors\n"
        "  sessions --target T -n N [-c CONNS] [--header H]...\n"
        "      Creates N initialized sessions over CONNS keep-alive connections (default 8)\n"
        "      and exits leaving them alive on the server (no DELETE).\n"
        "      RESULT: label mode=sessions n secs errors\n"
        "  list --target T -n N [--header H]...\n"
        "      One session, then N sequential tools/list requests.\n"
        "      RESULT: label mode=list n p50_us min_us max_us tools errors\n"
        "\n"
        "options:\n"
        "  --target T     tcp:HOST:PORT/PATH (HOST: 127.0.0.1, localhost or [::1]),\n"
        "                 or unix:/path/to/sock:/PATH; PATH defaults to /mcp\n"
        "  -c C           concurrency (default 1; sessions: 8)\n"
        "  -d SECS        measured duration (default 5)\n"
        "  --warmup SECS  unmeasured warm-up before it (default 1)\n"
        "  --tool T       echo (default): arguments {message: 16 random characters and a\n"
        "                 counter}, the reply's text must equal it; blob: the reply's text\n"
        "                 must be --bytes N x's (default 0)\n"
        "  -n N           count for startup, sessions, list (default 10)\n"
        "  --name NAME    the tool name to call (default: echo or blob, as --tool), e.g.\n"
        "                 demo__echo behind a gateway that prefixes names\n"
        "  --label L      the RESULT line's label (default: the mode)\n"
        "  --header H     an extra request header \"Name: value\" on every HTTP request\n"
        "                 (http, sessions, list), e.g. \"Authorization: Bearer TOKEN\";\n"
        "                 repeatable, up to 16; not Host, Content-Type, Content-Length,\n"
        "                 Accept, Mcp-Session-Id, MCP-Protocol-Version, Transfer-Encoding\n"
        "                 or Connection, which ag-load writes itself\n"
        "  --timeout SECS hard bound on the whole run (default: warmup + duration + 30 s for\n"
        "                 http and stdio, 120 s otherwise); when it passes, the run stops,\n"
        "                 kills any child, counts an error, prints RESULT and exits 1\n"
        "  -h, --help     this text\n"
        "\n"
        "Requests carry Content-Type: application/json, Accept: application/json,\n"
        "text/event-stream, Mcp-Session-Id and MCP-Protocol-Version (the version the server\n"
        "chose; initialize asks for " PROTO_VERSION "). Replies may be JSON (Content-Length\n"
        "or chunked) or SSE, whose notifications are skipped. A wrong id, a wrong text, an\n"
        "HTTP error or a JSON-RPC error counts as an error; the first few are printed.\n"
        "Latency: CLOCK_MONOTONIC per request, log-linear histogram (0.2% resolution).\n"
        "Exit status: 0 with no errors, 1 with errors, 2 on bad usage.\n",
        f);
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= 0))
        return false;
    *out = v;
    return true;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "ag-load: %s%s%s\n(see ag-load --help)\n", what, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return bad_usage("missing mode", NULL);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    g_opt.mode = argv[1];
    const char *modes[] = {"http", "stdio", "startup", "sessions", "list"};
    bool known = false;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        known = known || strcmp(g_opt.mode, modes[i]) == 0;
    if (!known)
        return bad_usage("unknown mode", g_opt.mode);
    bool c_given = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            g_opt.cmd = &argv[i + 1];
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL)
            return bad_usage("option needs a value (or is unknown)", a);
        i++;
        if (strcmp(a, "--target") == 0) {
            g_opt.target = v;
        } else if (strcmp(a, "-c") == 0) {
            if (!parse_long(v, &g_opt.c) || g_opt.c < 1 || g_opt.c > 100000)
                return bad_usage("-c needs 1..100000", v);
            c_given = true;
        } else if (strcmp(a, "-d") == 0) {
            if (!parse_double(v, &g_opt.d) || g_opt.d <= 0)
                return bad_usage("-d needs a positive number of seconds", v);
        } else if (strcmp(a, "--warmup") == 0) {
            if (!parse_double(v, &g_opt.warmup))
                return bad_usage("--warmup needs seconds", v);
        } else if (strcmp(a, "--timeout") == 0) {
            if (!parse_double(v, &g_opt.timeout) || g_opt.timeout <= 0)
                return bad_usage("--timeout needs a positive number of seconds", v);
        } else if (strcmp(a, "-n") == 0) {
            if (!parse_long(v, &g_opt.n) || g_opt.n < 1)
                return bad_usage("-n needs a positive count", v);
        } else if (strcmp(a, "--tool") == 0) {
            if (strcmp(v, "echo") == 0)
                g_opt.tool = TOOL_ECHO;
            else if (strcmp(v, "blob") == 0)
                g_opt.tool = TOOL_BLOB;
            else
                return bad_usage("--tool is echo or blob", v);
        } else if (strcmp(a, "--bytes") == 0) {
            long b;
            if (!parse_long(v, &b) || b > (16L << 20))
                return bad_usage("--bytes needs 0..16777216", v);
            g_opt.bytes = (size_t)b;
        } else if (strcmp(a, "--name") == 0) {
            size_t nl = strlen(v);
            if (nl == 0 || nl >= TOOL_NAME_MAX || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"
                                                            "mnopqrstuvwxyz0123456789_./-") != nl)
                return bad_usage("--name needs 1..127 of [A-Za-z0-9_./-]", v);
            g_opt.name = v;
        } else if (strcmp(a, "--label") == 0) {
            g_opt.label = v;
        } else if (strcmp(a, "--header") == 0) {
            if (g_opt.nheaders == HEADERS_MAX)
                return bad_usage("at most 16 --header options", v);
            if (!header_ok(v))
                return bad_usage("--header needs \"Name: value\" (a token name, no control "
                                 "characters, not a header ag-load sets itself)",
                                 v);
            g_opt.headers[g_opt.nheaders++] = v;
        } else {
            return bad_usage("unknown option", a);
        }
    }
    if (strcmp(g_opt.mode, "sessions") == 0 && !c_given)
        g_opt.c = 8;
    bool needs_cmd = strcmp(g_opt.mode, "stdio") == 0 || strcmp(g_opt.mode, "startup") == 0;
    if (needs_cmd && (g_opt.cmd == NULL || g_opt.cmd[0] == NULL))
        return bad_usage("this mode needs -- COMMAND ARGS...", NULL);
    if (needs_cmd && g_opt.nheaders > 0)
        return bad_usage("--header is for the HTTP modes (http, sessions, list)", NULL);
    if (!needs_cmd) {
        if (g_opt.target == NULL)
            return bad_usage("this mode needs --target", NULL);
        if (parse_target(g_opt.target, &g_target) != 0)
            return bad_usage("bad --target (tcp:127.0.0.1:PORT/PATH or unix:/sock:/PATH)",
                             g_opt.target);
        build_prefix();
    }
    snprintf(g_tool_name, sizeof g_tool_name, "%s",
             g_opt.name ? g_opt.name : g_opt.tool == TOOL_ECHO ? "echo" : "blob");
    g_tool_name_len = strlen(g_tool_name);
    /* The label goes into a key=value line: no spaces or '='. */
    snprintf(g_label, sizeof g_label, "%s", g_opt.label ? g_opt.label : g_opt.mode);
    for (char *p = g_label; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '=')
            *p = '_';

    double bound = g_opt.timeout;
    if (bound <= 0) {
        bool timed = strcmp(g_opt.mode, "http") == 0 || strcmp(g_opt.mode, "stdio") == 0;
        bound = timed ? g_opt.warmup + g_opt.d + 30 : 120;
    }
    g_deadline = now_ns() + (uint64_t)(bound * 1e9);
    g_rng = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (g_rng == 0)
        g_rng = 1;
    signal(SIGPIPE, SIG_IGN);
    core_buf_init(&g_sse_data, BODY_MAX);

    if (strcmp(g_opt.mode, "http") == 0)
        return cmd_http();
    if (strcmp(g_opt.mode, "stdio") == 0)
        return cmd_stdio();
    if (strcmp(g_opt.mode, "startup") == 0)
        return cmd_startup();
    if (strcmp(g_opt.mode, "sessions") == 0)
        return cmd_sessions();
    return cmd_list();
}
