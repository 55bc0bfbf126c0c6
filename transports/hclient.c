/* The outbound HTTP client: one libcurl multi handle driven by the libuv loop.
 *
 * How curl and libuv meet (curl's multi-uv.c example is the model):
 * - curl tells us which sockets to watch through on_curl_socket (CURLMOPT_SOCKETFUNCTION). Each
 *   socket gets a struct hsock holding a uv_poll_t, attached to curl's socket with
 *   curl_multi_assign. When curl says CURL_POLL_REMOVE the poll handle is closed (async) and
 *   detached, so a later socket that reuses the same fd number gets a fresh hsock.
 * - curl asks for one timer through on_curl_timer (CURLMOPT_TIMERFUNCTION); it is c->timer,
 *   where 0 ms means "on the next loop iteration" (never a call into curl from inside curl).
 * - Socket readiness and the timer call curl_multi_socket_action (drive()), after which
 *   finished transfers are collected with curl_multi_info_read (collect_done()).
 *
 * Re-entrancy, the one rule: nothing is freed and no easy handle is removed from the multi
 * while our code or curl's is on the stack. Every entry point (a libuv callback, or a public
 * call that calls into curl) brackets its work with enter()/leave(); a request that ends,
 * whether it finished or was aborted from inside any callback, only changes state and goes on
 * the graveyard list, and the outermost leave() runs settle(), which removes its easy handle
 * from the multi, cleans it up and closes its timer (the struct is freed in the timer's close
 * callback). A user callback may therefore abort any request, start new ones (added to the
 * multi once curl has returned) or close the client (torn down in settle()).
 *
 * Redirects are handled here, not by curl (CURLOPT_FOLLOWLOCATION stays off): when the header
 * block of a 3xx response with a Location of the same origin (scheme, host and port) ends and
 * redirects are left, its body is discarded, and once that transfer completes the same easy
 * handle is re-issued at the new URL (so the connection is reused). Anything else, a
 * cross-origin Location in particular, ends the transfer with the 3xx as the final response:
 * the other origin is never contacted and the request's headers (credentials) never go there.
 *
 * Proxies: curl's default of honouring http_proxy / https_proxy / no_proxy from the
 * environment is kept, since on a user's laptop the proxy settings are the user's, except that
 * loopback destinations always go direct (CURLOPT_NOPROXY is no_proxy plus localhost,
 * 127.0.0.1 and ::1). Custom headers are never sent to a proxy (CURLHEADER_SEPARATE, curl's
 * default).
 *
 * Never log header values or whole URLs' queries: they may carry credentials. */
#include "transports/hclient.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

#define MOD "hclient"
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
/* Response headers of one response: more bytes or lines than this fail the transfer with
 * CORE_ETOOBIG (a peer-controlled size). */
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_HEADER_LINES 256
/* Connections to one host at once; further transfers wait inside curl for a free one (HTTP/2
 * multiplexes many transfers over one connection anyway). */
#define MAX_HOST_CONNECTIONS 64

#ifdef CURL_WRITEFUNC_ERROR
#define WRITE_FAIL CURL_WRITEFUNC_ERROR
#else
#define WRITE_FAIL 0 /* any count other than the one given fails the transfer */
#endif

/* ---- structures --------------------------------------------------------------------------- */

struct hheader {
    char *name;  /* NUL-terminated; the value follows in the same allocation */
    char *value; /* points into the same allocation as name */
};

struct tp_hheaders {
    struct hheader *v;
    size_t n;
    size_t cap;
    size_t bytes; /* header bytes received for this response, for MAX_HEADER_BYTES */
};

/* One curl socket we watch. Freed in its poll handle's close callback. */
struct hsock {
    uv_poll_t poll;
    struct tp_hclient *c;
    curl_socket_t fd;
    bool closing;
    struct hsock *prev, *next; /* c->socks: every hsock whose poll is not closed yet */
};

enum req_state {
    RQ_QUEUED,  /* started from inside curl: waits for settle() to add it to the multi */
    RQ_RUNNING, /* in the multi; callbacks may fire */
    RQ_DONE,    /* on_done has been (or is being) called; on the graveyard */
    RQ_ABORTED, /* tp_hreq_abort was called; on the graveyard, no callback ever again */
};

struct tp_hreq {
    struct tp_hclient *c;
    CURL *easy;
    enum req_state state;
    unsigned id;                 /* for logs: "r12" */
    struct tp_hreq *prev, *next; /* c->reqs: every request not yet reaped */
    struct tp_hreq *next_dead;   /* c->dead: the graveyard */
    struct tp_hreq_cbs cbs;
    void *ctx;
    bool in_multi; /* the easy handle is added to c->multi */
    bool reusable; /* curl completed the transfer: the easy handle may serve another */

    /* The request, kept for redirects. */
    char *url;      /* the current URL (after redirects) */
    char *origin;   /* "scheme://host:port" of the first URL, lower case */
    char *hostport; /* "host:port" for error messages */
    char *method;   /* upper-case method as sent */
    char *body;     /* copied request body, or NULL */
    size_t body_len;
    bool stream_body;
    struct curl_slist *hdrs; /* the caller's headers plus ours */
    unsigned redirects_left;

    /* Timers: one uv_timer_t serves the deadline and the idle timeout. */
    uv_timer_t timer;
    uint64_t deadline_at; /* loop time (ms) at which the transfer fails; 0 = none */
    uint64_t deadline_ms;
    uint64_t connect_ms; /* curl's connect timeout */
    uint64_t idle_ms;    /* 0 = no idle timeout */
    uint64_t last_io;    /* loop time of the last byte moved (or of the last resume) */

    /* The response. */
    struct tp_hheaders resp;
    int line_status;        /* status of the response whose headers are being received */
    int status;             /* the final response's status (0 before on_headers) */
    bool headers_delivered; /* on_headers has been called */
    bool following;         /* this response is a redirect we follow: its body is dropped */
    char *redirect_to;      /* the resolved Location to follow */
    int redirect_status;
    size_t max_body;
    size_t body_seen;
    bool recv_paused;      /* the caller paused delivery (TP_HREQ_PAUSE or tp_hreq_pause) */
    bool curl_recv_paused; /* curl holds data for us (we returned CURL_WRITEFUNC_PAUSE) */
    bool unpause_pending;  /* resumed: on_kick tells curl (which may deliver at once) */

    /* Streaming upload. */
    struct core_buf up; /* bytes given to tp_hreq_send; up_off of them already taken */
    size_t up_off;
    bool up_ended;         /* tp_hreq_send_end was called */
    bool up_paused;        /* curl's read side is paused waiting for tp_hreq_send */
    bool writable_pending; /* on_writable is due (delivered by c->kick) */

    /* A failure decided inside a curl callback, reported when curl ends the transfer. */
    int fail_err;
    char why[256];
    char errbuf[CURL_ERROR_SIZE];
};

#define HC_SPARE_MAX 8

struct tp_hclient {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timer */
    uv_timer_t kick;  /* delivers on_writable and resumes from the loop */
    struct hsock *socks;
    struct tp_hreq *reqs;
    struct tp_hreq *dead;
    size_t n_active;  /* requests RQ_QUEUED or RQ_RUNNING */
    size_t n_queued;  /* requests RQ_QUEUED */
    unsigned depth;   /* enter() nesting: our code or curl's is on the stack */
    unsigned in_curl; /* inside a curl call: curl_multi_* functions must not be called */
    unsigned next_id;
    unsigned n_handles; /* libuv handles not closed yet (timer, kick, polls, request timers) */
    char *noproxy;
    /* The last URL tp_hreq_start parsed and what parse_url made of it: a client mostly talks
     * to the same few URLs, and curl's URL parser is a good part of a small request's cost. */
    char *url_in, *url_full, *url_origin, *url_hostport;
    /* Easy handles of finished transfers, reset and ready for the next one (creating and
     * destroying one costs more than resetting it). */
    CURL *spare[HC_SPARE_MAX];
    unsigned n_spare;
    bool closing;    /* tp_hclient_close was called */
    bool failed_all; /* every transfer got its CORE_ECLOSED */
    bool torn_down;  /* the multi is cleaned up and our handles are closing */
    void (*done)(void *ctx);
    void *done_ctx;
};

static void settle(struct tp_hclient *c);

/* ---- small helpers ------------------------------------------------------------------------ */

static void enter(struct tp_hclient *c)
{
    c->depth++;
}

/* Leaves an entry point; the outermost one reaps what ended meanwhile. */
static void leave(struct tp_hclient *c)
{
    if (--c->depth == 0)
        settle(c);
}

/* "30 s" or "1500 ms". */
static void fmt_ms(char *out, size_t n, uint64_t ms)
{
    if (ms >= 1000 && ms % 1000 == 0)
        snprintf(out, n, "%llu s", (unsigned long long)(ms / 1000));
    else
        snprintf(out, n, "%llu ms", (unsigned long long)ms);
}

/* Drops trailing CR, LF, blanks and tabs of p[0..*n). */
static void trim_end(const char *p, size_t *n)
{
    while (*n > 0 &&
           (p[*n - 1] == '\r' || p[*n - 1] == '\n' || p[*n - 1] == ' ' || p[*n - 1] == '\t'))
        (*n)--;
}

/* ---- response headers --------------------------------------------------------------------- */

static void headers_clear(struct tp_hheaders *h)
{
    for (size_t i = 0; i < h->n; i++)
        core_free(h->v[i].name);
    h->n = 0;
    h->bytes = 0;
}

static void headers_dispose(struct tp_hheaders *h)
{
    headers_clear(h);
    core_free(h->v);
    h->v = NULL;
    h->cap = 0;
}

/* Adds "name: value" from one header line (CRLF already trimmed). Lines without a colon are
 * ignored. */
static void headers_add(struct tp_hheaders *h, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return;
    size_t nlen = (size_t)(colon - p);
    while (nlen > 0 && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
        nlen--;
    const char *v = colon + 1;
    size_t vlen = n - (size_t)(v - p);
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->v = core_xrealloc(h->v, h->cap * sizeof h->v[0]);
    }
    char *s = core_xmalloc(nlen + 1 + vlen + 1);
    memcpy(s, p, nlen);
    s[nlen] = '\0';
    memcpy(s + nlen + 1, v, vlen);
    s[nlen + 1 + vlen] = '\0';
    h->v[h->n].name = s;
    h->v[h->n].value = s + nlen + 1;
    h->n++;
}

/* An obsolete folded line (starting with a blank) continues the previous header's value. */
static void headers_fold(struct tp_hheaders *h, const char *p, size_t n)
{
    if (h->n == 0)
        return;
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    struct hheader *last = &h->v[h->n - 1];
    size_t nlen = strlen(last->name);
    size_t vlen = strlen(last->value);
    char *s = core_xmalloc(nlen + 1 + vlen + 1 + n + 1);
    memcpy(s, last->name, nlen + 1);
    memcpy(s + nlen + 1, last->value, vlen);
    s[nlen + 1 + vlen] = ' ';
    memcpy(s + nlen + 1 + vlen + 1, p, n);
    s[nlen + 1 + vlen + 1 + n] = '\0';
    core_free(last->name);
    last->name = s;
    last->value = s + nlen + 1;
}

const char *tp_hheaders_get(const struct tp_hheaders *h, const char *name)
{
    for (size_t i = h->n; i > 0; i--) {
        if (strcasecmp(h->v[i - 1].name, name) == 0)
            return h->v[i - 1].value;
    }
    return NULL;
}

void tp_hheaders_each(const struct tp_hheaders *h,
                      int (*cb)(void *ctx, const char *name, const char *value), void *ctx)
{
    for (size_t i = 0; i < h->n; i++) {
        if (cb(ctx, h->v[i].name, h->v[i].value) != 0)
            return;
    }
}

/* ---- URLs and origins --------------------------------------------------------------------- */

/* Parses url (absolute, or relative to base when base is not NULL). On success returns 0 and
 * new strings: *full (the normalised URL), *origin ("scheme://host:port", lower case) and
 * *hostport ("host:port"). Only http and https are accepted. */
static int parse_url(const char *base, const char *url, char **full, char **origin, char **hostport)
{
    int rc = CORE_EINVAL;
    char *scheme = NULL, *host = NULL, *port = NULL, *whole = NULL;
    CURLU *u = curl_url();
    if (u == NULL)
        return CORE_EINVAL;
    if (base != NULL && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        goto out;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &whole, 0) != CURLUE_OK)
        goto out;
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        goto out;
    if (host[0] == '\0')
        goto out;
    size_t olen = strlen(scheme) + strlen(host) + strlen(port) + 8;
    char *o = core_xmalloc(olen);
    snprintf(o, olen, "%s://%s:%s", scheme, host, port);
    for (char *q = o; *q; q++) {
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    }
    size_t hlen = strlen(host) + strlen(port) + 2;
    char *hp = core_xmalloc(hlen);
    snprintf(hp, hlen, "%s:%s", host, port);
    *full = core_xstrdup(whole);
    *origin = o;
    *hostport = hp;
    rc = 0;
out:
    curl_free(whole);
    curl_free(port);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

/* parse_url(NULL, url, ...) through the client's one-entry cache (same contract). */
static int parse_url_cached(struct tp_hclient *c, const char *url, char **full, char **origin,
                            char **hostport)
{
    if (c->url_in == NULL || strcmp(c->url_in, url) != 0) {
        char *f, *o, *hp;
        int rc = parse_url(NULL, url, &f, &o, &hp);
        if (rc != 0)
            return rc;
        core_free(c->url_in);
        core_free(c->url_full);
        core_free(c->url_origin);
        core_free(c->url_hostport);
        c->url_in = core_xstrdup(url);
        c->url_full = f;
        c->url_origin = o;
        c->url_hostport = hp;
    }
    *full = core_xstrdup(c->url_full);
    *origin = core_xstrdup(c->url_origin);
    *hostport = core_xstrdup(c->url_hostport);
    return 0;
}

/* An HTTP method is a token: letters, digits and a few symbols, nothing else. */
static bool method_ok(const char *m)
{
    if (m[0] == '\0' || strlen(m) > 32)
        return false;
    for (const char *p = m; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p) != NULL))
            return false;
    }
    return true;
}

/* ---- the request's timer: deadline and idle timeout --------------------------------------- */

static void on_req_timer(uv_timer_t *t);

/* True while the transfer waits for our caller rather than the server: delivery paused, or
 * a streamed upload waiting for tp_hreq_send. Idle time does not count then. */
static bool waiting_for_caller(const struct tp_hreq *r)
{
    return r->recv_paused || (r->up_paused && !r->up_ended);
}

/* Arms the timer for the earliest of the deadline and the idle limit (or stops it). */
static void arm_timer(struct tp_hreq *r)
{
    uint64_t now = uv_now(r->c->loop);
    uint64_t due = 0;
    if (r->deadline_at != 0)
        due = r->deadline_at;
    if (r->idle_ms != 0 && !waiting_for_caller(r)) {
        uint64_t idle_due = r->last_io + r->idle_ms;
        if (due == 0 || idle_due < due)
            due = idle_due;
    }
    if (due == 0) {
        uv_timer_stop(&r->timer);
        return;
    }
    (void)uv_timer_start(&r->timer, on_req_timer, due > now ? due - now : 0, 0);
}

/* ---- ending requests ---------------------------------------------------------------------- */

static const char *const state_names[] = {"QUEUED", "RUNNING", "DONE", "ABORTED"};

/* The only place a request's state changes. */
static void set_state(struct tp_hreq *r, enum req_state s)
{
    core_log(CORE_LOG_DEBUG, MOD, "r%u: %s -> %s", r->id, state_names[r->state], state_names[s]);
    r->state = s;
}

static void bury(struct tp_hreq *r)
{
    struct tp_hclient *c = r->c;
    if (r->state == RQ_QUEUED)
        c->n_queued--;
    c->n_active--;
    uv_timer_stop(&r->timer);
    r->next_dead = c->dead;
    c->dead = r;
}

/* Ends a running or queued request with on_done(err, why); r is reaped after the outermost
 * entry point returns. */
static void finish(struct tp_hreq *r, int err, const char *why)
{
    struct tp_hclient *c = r->c;
    bury(r);
    set_state(r, RQ_DONE);
    if (err != 0)
        core_log(CORE_LOG_DEBUG, MOD, "r%u: %s %s failed: %s", r->id, r->method, r->origin, why);
    else
        core_log(CORE_LOG_DEBUG, MOD, "r%u: %s %s -> %d", r->id, r->method, r->origin, r->status);
    enter(c);
    r->cbs.on_done(r->ctx, r, err, why != NULL ? why : "");
    leave(c);
}

static void on_req_closed(uv_handle_t *h)
{
    struct tp_hreq *r = container_of(h, struct tp_hreq, timer);
    struct tp_hclient *c = r->c;
    core_free(r);
    c->n_handles--;
    settle(c);
}

/* Frees everything of a buried request but the struct, which waits for its timer to close.
 * Removing a transfer that is still in progress from the multi makes curl close its
 * connection, so the server sees us go away. */
static void reap(struct tp_hreq *r)
{
    struct tp_hclient *c = r->c;
    if (r->in_multi) {
        curl_multi_remove_handle(c->multi, r->easy);
        r->in_multi = false;
    }
    if (r->reusable && !c->closing && c->n_spare < HC_SPARE_MAX) {
        /* Every option back to its default (the connection stays in the multi's cache). */
        curl_easy_reset(r->easy);
        c->spare[c->n_spare++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    curl_slist_free_all(r->hdrs);
    headers_dispose(&r->resp);
    core_buf_dispose(&r->up);
    core_free(r->url);
    core_free(r->origin);
    core_free(r->hostport);
    core_free(r->method);
    core_free(r->body);
    core_free(r->redirect_to);
    uv_close((uv_handle_t *)&r->timer, on_req_closed);
}

/* ---- the client's handles ----------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct tp_hclient *c = h->data;
    c->n_handles--;
    settle(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct hsock *s = container_of(h, struct hsock, poll);
    struct tp_hclient *c = s->c;
    core_free(s);
    c->n_handles--;
    settle(c);
}

static void sock_close(struct hsock *s)
{
    struct tp_hclient *c = s->c;
    if (s->closing)
        return;
    s->closing = true;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* Cleans up the multi and closes our handles; the client is freed when the last has closed. */
static void teardown(struct tp_hclient *c)
{
    c->torn_down = true;
    /* Stop watching the sockets before curl closes them (uv_close stops a poll at once). */
    while (c->socks != NULL)
        sock_close(c->socks);
    while (c->n_spare > 0)
        curl_easy_cleanup(c->spare[--c->n_spare]);
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
}

/* Runs when no entry point is on the stack (and from close callbacks): adds requests started
 * from inside curl, fails everything once the client is closing, reaps the graveyard, and
 * finishes the client's teardown. */
static void settle(struct tp_hclient *c)
{
    if (c->depth != 0)
        return;
    c->depth++;
    for (;;) {
        if (c->closing && !c->failed_all) {
            c->failed_all = true;
            for (struct tp_hreq *r = c->reqs; r != NULL; r = r->next) {
                if (r->state == RQ_QUEUED || r->state == RQ_RUNNING)
                    finish(r, CORE_ECLOSED, "the HTTP client was closed");
            }
            continue;
        }
        if (c->n_queued == 0 || c->closing)
            break;
        struct tp_hreq *r = c->reqs;
        while (r != NULL && r->state != RQ_QUEUED)
            r = r->next;
        if (r == NULL)
            break;
        if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
            finish(r, CORE_EINVAL, "the transfer could not be started");
            continue;
        }
        c->n_queued--;
        set_state(r, RQ_RUNNING);
        r->in_multi = true;
        arm_timer(r);
    }
    while (c->dead != NULL) {
        struct tp_hreq *r = c->dead;
        c->dead = r->next_dead;
        reap(r);
    }
    c->depth--;
    if (c->closing && !c->torn_down && c->reqs == NULL)
        teardown(c);
    if (c->torn_down && c->n_handles == 0) {
        void (*done)(void *) = c->done;
        void *ctx = c->done_ctx;
        core_free(c->noproxy);
        core_free(c->url_in);
        core_free(c->url_full);
        core_free(c->url_origin);
        core_free(c->url_hostport);
        core_free(c);
        if (done != NULL)
            done(ctx);
    }
}

/* ---- curl's error codes to ours ----------------------------------------------------------- */

/* Writes a one-line reason for a failed transfer into r->why and returns our code. */
static int map_error(struct tp_hreq *r, CURLcode res)
{
    const char *detail = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(res);
    long oserr = 0;
    (void)curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &oserr);
    switch (res) {
    case CURLE_COULDNT_CONNECT:
        core_set_err(r->why, sizeof r->why, "connect to %s failed: %s", r->hostport,
                     oserr != 0 ? strerror((int)oserr) : detail);
        return oserr != 0 ? -(int)oserr : UV_ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
        core_set_err(r->why, sizeof r->why, "cannot resolve the host of %s: %s", r->hostport,
                     detail);
        return UV_EAI_NONAME;
    case CURLE_COULDNT_RESOLVE_PROXY:
        core_set_err(r->why, sizeof r->why, "cannot resolve the proxy: %s", detail);
        return UV_EAI_NONAME;
    case CURLE_OPERATION_TIMEDOUT: {
        /* Only the connect timeout is curl's; deadlines and idle limits are our timer's. */
        char ms[32];
        fmt_ms(ms, sizeof ms, r->connect_ms);
        core_set_err(r->why, sizeof r->why, "connect to %s timed out after %s", r->hostport, ms);
        return CORE_ETIMEDOUT;
    }
    case CURLE_PEER_FAILED_VERIFICATION:
        core_set_err(r->why, sizeof r->why, "TLS certificate of %s did not verify: %s", r->hostport,
                     detail);
        return CORE_EPROTO;
    case CURLE_SSL_CACERT_BADFILE:
        core_set_err(r->why, sizeof r->why, "cannot use the CA file: %s", detail);
        return CORE_EINVAL;
    case CURLE_SSL_CONNECT_ERROR:
        core_set_err(r->why, sizeof r->why, "TLS handshake with %s failed: %s", r->hostport,
                     detail);
        return CORE_EPROTO;
    case CURLE_GOT_NOTHING:
        core_set_err(r->why, sizeof r->why, "%s closed the connection without a response",
                     r->hostport);
        return CORE_ECLOSED;
    case CURLE_PARTIAL_FILE:
        core_set_err(r->why, sizeof r->why, "%s closed the connection before the response ended",
                     r->hostport);
        return CORE_ECLOSED;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        core_set_err(r->why, sizeof r->why, "connection to %s broke: %s", r->hostport, detail);
        return CORE_ECLOSED;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        core_set_err(r->why, sizeof r->why, "%s sent an invalid HTTP response: %s", r->hostport,
                     detail);
        return CORE_EPROTO;
    default:
        core_set_err(r->why, sizeof r->why, "request to %s failed: %s", r->hostport, detail);
        return CORE_EPROTO;
    }
}

/* ---- curl callbacks (run inside curl: never remove or free anything here) ---------------- */

/* Called when we end a transfer before its response is complete (abort, timeout, too big),
 * so the server learns at once that nobody listens any more. On HTTP/1.1 curl closes the
 * connection of a transfer removed early anyway. On HTTP/2 it only queues an RST_STREAM, and
 * curl 7.88 holds small frames back until the connection's next use, so an aborted LLM stream
 * could go on generating. When no other transfer of ours runs to the same origin, the
 * connection is closed instead (CURLOPT_FORBID_REUSE); when others share it, their traffic
 * flushes the RST_STREAM and the connection stays. */
static void end_early(struct tp_hreq *r)
{
    if (r->state != RQ_RUNNING || r->easy == NULL)
        return;
    for (struct tp_hreq *o = r->c->reqs; o != NULL; o = o->next) {
        if (o != r && o->state == RQ_RUNNING && strcmp(o->origin, r->origin) == 0)
            return;
    }
    curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
}

/* A failure found inside a callback: recorded now, reported when curl ends the transfer. */
static void fail_later(struct tp_hreq *r, int err, const char *what, size_t limit)
{
    if (r->fail_err != 0)
        return;
    end_early(r);
    r->fail_err = err;
    core_set_err(r->why, sizeof r->why, "%s larger than %zu bytes", what, limit);
}

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* A redirect's method: 303 (and 301/302 after POST, as browsers and curl do) turn into GET. */
static bool redirect_to_get(const struct tp_hreq *r, int status)
{
    if (strcmp(r->method, "HEAD") == 0)
        return false;
    return status == 303 || ((status == 301 || status == 302) && strcmp(r->method, "POST") == 0);
}

/* Decides whether the 3xx whose headers just ended is followed (same origin, redirects left,
 * and the request can be sent again); on yes sets r->redirect_to. */
static bool want_follow(struct tp_hreq *r, int status)
{
    if (!is_redirect(status) || r->redirects_left == 0)
        return false;
    const char *loc = tp_hheaders_get(&r->resp, "location");
    if (loc == NULL)
        return false;
    if (r->stream_body && !redirect_to_get(r, status))
        return false; /* a streamed body cannot be sent twice */
    char *full = NULL, *origin = NULL, *hp = NULL;
    if (parse_url(r->url, loc, &full, &origin, &hp) != 0)
        return false;
    bool same = strcmp(origin, r->origin) == 0;
    core_free(origin);
    core_free(hp);
    if (!same) {
        core_log(CORE_LOG_DEBUG, MOD, "r%u: %d to another origin, not followed", r->id, status);
        core_free(full);
        return false;
    }
    core_free(r->redirect_to);
    r->redirect_to = full;
    r->redirect_status = status;
    return true;
}

/* The header block of a final (non-1xx) response ended. Returns false to fail the transfer. */
static bool final_headers(struct tp_hreq *r)
{
    int status = r->line_status;
    if (want_follow(r, status)) {
        r->following = true;
        return true;
    }
    r->status = status;
    /* A Content-Length over max_body fails at once (not for HEAD, 204 and 304, which have no
     * body whatever it says, nor for an encoded body, which is counted once decoded). */
    const char *cl = tp_hheaders_get(&r->resp, "content-length");
    bool bodyless = strcmp(r->method, "HEAD") == 0 || status == 204 || status == 304;
    if (r->max_body != 0 && cl != NULL && !bodyless &&
        tp_hheaders_get(&r->resp, "content-encoding") == NULL) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && v > r->max_body) {
            fail_later(r, CORE_ETOOBIG, "response", r->max_body);
            return false;
        }
    }
    r->headers_delivered = true;
    if (r->cbs.on_headers != NULL)
        r->cbs.on_headers(r->ctx, r, status, &r->resp);
    return r->state == RQ_RUNNING;
}

static size_t on_curl_header(char *p, size_t size, size_t nitems, void *ud)
{
    struct tp_hreq *r = ud;
    size_t len = size * nitems;
    if (r->state != RQ_RUNNING)
        return 0;
    r->last_io = uv_now(r->c->loop);
    if (r->headers_delivered)
        return len; /* trailers after a chunked body: not kept */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A status line starts a new response (after a 1xx or a followed redirect). */
        headers_clear(&r->resp);
        r->following = false;
        r->line_status = 0;
        const char *s = memchr(p, ' ', len);
        if (s != NULL) {
            int v = 0;
            size_t i = (size_t)(s - p) + 1;
            for (int k = 0; k < 3 && i < len && p[i] >= '0' && p[i] <= '9'; k++, i++)
                v = v * 10 + (p[i] - '0');
            r->line_status = v;
        }
        return len;
    }
    size_t n = len;
    trim_end(p, &n);
    if (n == 0) {
        if (r->line_status >= 100 && r->line_status < 200 && r->line_status != 101) {
            headers_clear(&r->resp); /* an interim response: the real one follows */
            return len;
        }
        if (r->following)
            return len;
        return final_headers(r) ? len : 0;
    }
    if (r->following)
        return len;
    r->resp.bytes += len;
    if (r->resp.bytes > MAX_HEADER_BYTES || r->resp.n >= MAX_HEADER_LINES) {
        fail_later(r, CORE_ETOOBIG, "response headers", (size_t)MAX_HEADER_BYTES);
        return 0;
    }
    if (p[0] == ' ' || p[0] == '\t')
        headers_fold(&r->resp, p, n);
    else
        headers_add(&r->resp, p, n);
    return len;
}

static size_t on_curl_write(char *p, size_t size, size_t nitems, void *ud)
{
    struct tp_hreq *r = ud;
    size_t len = size * nitems;
    if (r->state != RQ_RUNNING)
        return WRITE_FAIL;
    if (r->recv_paused) {
        /* Not consumed: curl keeps these bytes and stops reading until tp_hreq_resume (on
         * HTTP/2 it closes the stream's flow-control window). */
        r->curl_recv_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    r->last_io = uv_now(r->c->loop);
    if (r->following)
        return len; /* the body of a redirect we follow */
    if (!r->headers_delivered && !final_headers(r))
        return WRITE_FAIL;
    if (r->max_body != 0 && len > r->max_body - r->body_seen) {
        fail_later(r, CORE_ETOOBIG, "response", r->max_body);
        return WRITE_FAIL;
    }
    r->body_seen += len;
    if (r->cbs.on_data == NULL || len == 0)
        return len;
    int rc = r->cbs.on_data(r->ctx, r, p, len);
    if (r->state != RQ_RUNNING)
        return WRITE_FAIL; /* aborted (or the client closed) from inside on_data */
    if (rc == TP_HREQ_PAUSE)
        r->recv_paused = true;
    return len;
}

static void on_kick(uv_timer_t *t);

/* on_writable is due: delivered from the loop by on_kick, never from inside curl. */
static void notify_writable(struct tp_hreq *r)
{
    if (r->writable_pending || r->cbs.on_writable == NULL)
        return;
    r->writable_pending = true;
    (void)uv_timer_start(&r->c->kick, on_kick, 0, 0);
}

static size_t on_curl_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct tp_hreq *r = ud;
    size_t cap = size * nitems;
    if (r->state != RQ_RUNNING)
        return CURL_READFUNC_ABORT;
    size_t avail = r->up.len - r->up_off;
    if (avail == 0) {
        if (r->up_ended)
            return 0; /* the end of the body */
        r->up_paused = true;
        notify_writable(r);
        return CURL_READFUNC_PAUSE;
    }
    size_t k = avail < cap ? avail : cap;
    memcpy(buf, r->up.data + r->up_off, k);
    r->up_off += k;
    if (r->up_off == r->up.len) {
        core_buf_reset(&r->up);
        r->up_off = 0;
        if (!r->up_ended)
            notify_writable(r);
    } else if (r->up_off > 65536 && r->up_off > r->up.len / 2) {
        core_buf_consume(&r->up, r->up_off);
        r->up_off = 0;
    }
    r->last_io = uv_now(r->c->loop);
    return k;
}

/* ---- driving the multi from libuv --------------------------------------------------------- */

/* Starts the next request of a followed redirect on the same easy handle. */
static void follow(struct tp_hreq *r)
{
    struct tp_hclient *c = r->c;
    curl_multi_remove_handle(c->multi, r->easy);
    r->in_multi = false;
    core_log(CORE_LOG_DEBUG, MOD, "r%u: following a %d within %s", r->id, r->redirect_status,
             r->origin);
    core_free(r->url);
    r->url = r->redirect_to;
    r->redirect_to = NULL;
    r->redirects_left--;
    r->following = false;
    r->line_status = 0;
    r->body_seen = 0;
    r->errbuf[0] = '\0';
    headers_clear(&r->resp);
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    if (redirect_to_get(r, r->redirect_status)) {
        core_free(r->method);
        r->method = core_xstrdup("GET");
        r->stream_body = false; /* tp_hreq_send now answers CORE_EINVAL */
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
    }
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        finish(r, CORE_EINVAL, "the redirected transfer could not be started");
        return;
    }
    r->in_multi = true;
}

/* Reports every transfer curl has finished. */
static void collect_done(struct tp_hclient *c)
{
    CURLMsg *m;
    int left;
    while (c->multi != NULL && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode res = m->data.result;
        void *priv = NULL;
        (void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        struct tp_hreq *r = priv;
        if (r == NULL || r->state != RQ_RUNNING)
            continue;
        if (res == CURLE_OK && r->following) {
            follow(r);
        } else if (r->fail_err != 0) {
            finish(r, r->fail_err, r->why);
        } else if (res == CURLE_OK) {
            if (!r->headers_delivered && !final_headers(r)) {
                if (r->state == RQ_RUNNING)
                    finish(r, r->fail_err, r->why);
                continue;
            }
            if (r->state == RQ_RUNNING) {
                r->reusable = true;
                finish(r, 0, "");
            }
        } else {
            int err = map_error(r, res);
            finish(r, err, r->why);
        }
    }
}

/* One call into curl for a socket event or the timer, then the transfers it finished. */
static void drive(struct tp_hclient *c, curl_socket_t fd, int flags)
{
    if (c->multi == NULL)
        return;
    int running;
    enter(c);
    c->in_curl++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_curl--;
    collect_done(c);
    leave(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct hsock *s = container_of(h, struct hsock, poll);
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    drive(s->c, s->fd, flags);
}

static void on_timeout(uv_timer_t *t)
{
    struct tp_hclient *c = container_of(t, struct tp_hclient, timer);
    drive(c, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct tp_hclient *c = userp;
    if (c->torn_down)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        (void)uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct tp_hclient *c = userp;
    struct hsock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            sock_close(s);
            if (!c->torn_down)
                curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (c->torn_down)
        return 0;
    if (s == NULL) {
        s = core_xcalloc(1, sizeof *s);
        s->c = c;
        s->fd = fd;
        int rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        if (rc == UV_EEXIST) {
            /* curl closed a socket without telling us and got the same number again: drop the
             * stale watcher first. */
            for (struct hsock *o = c->socks; o != NULL; o = o->next) {
                if (o->fd == fd) {
                    sock_close(o);
                    break;
                }
            }
            rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        }
        if (rc != 0) {
            core_log(CORE_LOG_ERROR, MOD, "cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
            core_free(s);
            return -1;
        }
        c->n_handles++;
        s->next = c->socks;
        if (c->socks != NULL)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc != 0)
        core_log(CORE_LOG_ERROR, MOD, "cannot poll socket %d: %s", (int)fd, uv_strerror(rc));
    return 0;
}

static void update_pause(struct tp_hreq *r);

/* Work deferred to the loop, so that no callback runs inside tp_hreq_send / tp_hreq_resume:
 * on_writable, and resuming a transfer curl holds paused (curl_easy_pause hands the held bytes
 * to on_curl_write from inside the call). */
static void on_kick(uv_timer_t *t)
{
    struct tp_hclient *c = container_of(t, struct tp_hclient, kick);
    enter(c);
    for (struct tp_hreq *r = c->reqs; r != NULL; r = r->next) {
        if (r->state == RQ_RUNNING && r->unpause_pending) {
            r->unpause_pending = false;
            if (!r->recv_paused && r->curl_recv_paused) {
                r->curl_recv_paused = false;
                update_pause(r);
            }
        }
        if (r->state == RQ_RUNNING && r->writable_pending) {
            r->writable_pending = false;
            if (!r->up_ended)
                r->cbs.on_writable(r->ctx, r);
        }
    }
    leave(c);
}

/* ---- the client --------------------------------------------------------------------------- */

/* no_proxy from the environment plus the loopback names, which always go direct. */
static char *make_noproxy(void)
{
    const char *env = getenv("no_proxy");
    if (env == NULL || env[0] == '\0')
        env = getenv("NO_PROXY");
    const char *mine = "localhost,127.0.0.1,::1";
    if (env == NULL || env[0] == '\0')
        return core_xstrdup(mine);
    if (strcmp(env, "*") == 0)
        return core_xstrdup("*");
    size_t n = strlen(mine) + 1 + strlen(env) + 1;
    char *s = core_xmalloc(n);
    snprintf(s, n, "%s,%s", mine, env);
    return s;
}

int tp_hclient_new(uv_loop_t *loop, struct tp_hclient **out)
{
    static bool global_done;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return CORE_EINVAL;
        global_done = true;
    }
    struct tp_hclient *c = core_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        core_free(c);
        return CORE_EINVAL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)MAX_HOST_CONNECTIONS);
    (void)uv_timer_init(loop, &c->timer);
    (void)uv_timer_init(loop, &c->kick);
    c->timer.data = c;
    c->kick.data = c;
    c->n_handles = 2;
    c->noproxy = make_noproxy();
    *out = c;
    return 0;
}

void tp_hclient_close(struct tp_hclient *c, void (*done)(void *ctx), void *ctx)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    c->done = done;
    c->done_ctx = ctx;
    settle(c);
}

size_t tp_hclient_active(const struct tp_hclient *c)
{
    return c->n_active;
}

uv_loop_t *tp_hclient_loop(const struct tp_hclient *c)
{
    return c->loop;
}

/* ---- requests ----------------------------------------------------------------------------- */

static bool has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return true;
    }
    return false;
}

/* Sets every option of a new easy handle. Returns 0 or CORE_EINVAL (an option curl refuses,
 * e.g. a libcurl too old for one of them). */
static int setup_easy(struct tp_hreq *r, const struct tp_hreq_opts *o)
{
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file != NULL) {
        SET(CURLOPT_CAINFO, o->ca_file);
        SET(CURLOPT_CAPATH, NULL); /* only the given CAs, not the system store as well */
    }
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_NOPROXY, r->c->noproxy);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_HTTP09_ALLOWED, 0L);
    SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding curl can decode */
    SET(CURLOPT_USERAGENT, "agentgate/" AG_VERSION);
    if (strncmp(r->url, "https:", 6) == 0)
        SET(CURLOPT_PIPEWAIT, 1L); /* wait to learn whether HTTP/2 can multiplex */
    SET(CURLOPT_HEADERFUNCTION, on_curl_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, on_curl_write);
    SET(CURLOPT_WRITEDATA, (void *)r);

    bool is_get = strcmp(r->method, "GET") == 0;
    bool is_head = strcmp(r->method, "HEAD") == 0;
    bool is_post = strcmp(r->method, "POST") == 0;
    if (r->stream_body) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_READFUNCTION, on_curl_read);
        SET(CURLOPT_READDATA, (void *)r);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1); /* unknown: chunked on HTTP/1.1 */
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
    } else if (r->body != NULL) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_POSTFIELDS, r->body);
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
    } else if (is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        SET(CURLOPT_HTTPGET, 1L);
        if (!is_get)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
    }
    SET(CURLOPT_HTTPHEADER, r->hdrs);
#undef SET
    if (rc != CURLE_OK) {
        core_log(CORE_LOG_ERROR, MOD, "curl refused an option: %s", curl_easy_strerror(rc));
        return CORE_EINVAL;
    }
    return 0;
}

int tp_hreq_start(struct tp_hclient *c, const struct tp_hreq_opts *o, const struct tp_hreq_cbs *cbs,
                  void *ctx, struct tp_hreq **out)
{
    if (c->closing)
        return CORE_ECLOSED;
    if (o == NULL || o->url == NULL || cbs == NULL || cbs->on_done == NULL)
        return CORE_EINVAL;
    const char *method = o->method;
    if (method == NULL)
        method = (o->body != NULL || o->stream_body) ? "POST" : "GET";
    if (!method_ok(method))
        return CORE_EINVAL;
    for (size_t i = 0; o->headers != NULL && o->headers[i] != NULL; i++) {
        const char *h = o->headers[i];
        if (strpbrk(h, "\r\n") != NULL || strchr(h, ':') == NULL || h[0] == ':')
            return CORE_EINVAL;
    }
    struct tp_hreq *r = core_xcalloc(1, sizeof *r);
    r->c = c;
    if (parse_url_cached(c, o->url, &r->url, &r->origin, &r->hostport) != 0) {
        core_free(r);
        return CORE_EINVAL;
    }
    r->method = core_xstrdup(method);
    for (char *p = r->method; *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    }
    r->stream_body = o->stream_body;
    if (!o->stream_body && o->body != NULL) {
        r->body = core_xmalloc(o->body_len + 1);
        memcpy(r->body, o->body, o->body_len);
        r->body[o->body_len] = '\0';
        r->body_len = o->body_len;
    }
    core_buf_init(&r->up, 0);
    r->cbs = *cbs;
    r->ctx = ctx;
    r->max_body = o->max_body;
    r->idle_ms = o->idle_timeout_ms;
    r->deadline_ms = o->deadline_ms;
    r->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    r->redirects_left = o->max_redirects;
    r->id = ++c->next_id;
    int rc = 0;
    for (size_t i = 0; o->headers != NULL && o->headers[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(r->hdrs, o->headers[i]);
        if (n == NULL) {
            rc = CORE_EINVAL;
            break;
        }
        r->hdrs = n;
    }
    /* No "Expect: 100-continue" round trip unless the caller asks for it. */
    if (rc == 0 && !has_header(o->headers, "expect")) {
        struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
        if (n == NULL)
            rc = CORE_EINVAL;
        else
            r->hdrs = n;
    }
    if (rc == 0) {
        r->easy = c->n_spare > 0 ? c->spare[--c->n_spare] : curl_easy_init();
        if (r->easy == NULL)
            rc = CORE_EINVAL;
    }
    if (rc == 0)
        rc = setup_easy(r, o);
    if (rc == 0 && c->in_curl == 0 && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        rc = CORE_EINVAL;
    if (rc != 0) {
        if (r->easy != NULL)
            curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->hdrs);
        core_buf_dispose(&r->up);
        core_free(r->url);
        core_free(r->origin);
        core_free(r->hostport);
        core_free(r->method);
        core_free(r->body);
        core_free(r);
        return rc;
    }
    /* From here on the request is live. */
    (void)uv_timer_init(c->loop, &r->timer);
    c->n_handles++;
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    c->n_active++;
    uint64_t now = uv_now(c->loop);
    r->last_io = now;
    if (r->deadline_ms != 0)
        r->deadline_at = now + r->deadline_ms;
    if (c->in_curl == 0) {
        set_state(r, RQ_RUNNING);
        r->in_multi = true;
        arm_timer(r);
    } else {
        /* curl must not be re-entered: settle() adds it once curl has returned. */
        c->n_queued++; /* r->state is RQ_QUEUED from the start */
    }
    core_log(CORE_LOG_DEBUG, MOD, "r%u: %s %s", r->id, r->method, r->origin);
    *out = r;
    return 0;
}

static void on_req_timer(uv_timer_t *t)
{
    struct tp_hreq *r = container_of(t, struct tp_hreq, timer);
    if (r->state != RQ_RUNNING)
        return;
    uint64_t now = uv_now(r->c->loop);
    char ms[32];
    if (r->deadline_at != 0 && now >= r->deadline_at) {
        fmt_ms(ms, sizeof ms, r->deadline_ms);
        end_early(r);
        core_set_err(r->why, sizeof r->why, "no complete response from %s within %s", r->hostport,
                     ms);
        finish(r, CORE_ETIMEDOUT, r->why);
        return;
    }
    if (r->idle_ms != 0 && !waiting_for_caller(r) && now >= r->last_io + r->idle_ms) {
        fmt_ms(ms, sizeof ms, r->idle_ms);
        end_early(r);
        core_set_err(r->why, sizeof r->why, "no response from %s for %s", r->hostport, ms);
        finish(r, CORE_ETIMEDOUT, r->why);
        return;
    }
    arm_timer(r);
}

void tp_hreq_abort(struct tp_hreq *r)
{
    if (r == NULL || r->state == RQ_DONE || r->state == RQ_ABORTED)
        return;
    core_log(CORE_LOG_DEBUG, MOD, "r%u: aborted", r->id);
    end_early(r);
    bury(r);
    set_state(r, RQ_ABORTED);
    settle(r->c); /* reaps at once unless an entry point is on the stack */
}

/* Tells curl the new pause state (receiving and sending). curl may deliver held data to
 * on_curl_write from inside this call. */
static void update_pause(struct tp_hreq *r)
{
    struct tp_hclient *c = r->c;
    if (!r->in_multi)
        return;
    int mask = (r->curl_recv_paused ? CURLPAUSE_RECV : 0) | (r->up_paused ? CURLPAUSE_SEND : 0);
    enter(c);
    c->in_curl++;
    curl_easy_pause(r->easy, mask);
    c->in_curl--;
    leave(c);
}

void tp_hreq_pause(struct tp_hreq *r)
{
    if (r->state == RQ_RUNNING || r->state == RQ_QUEUED)
        r->recv_paused = true;
}

void tp_hreq_resume(struct tp_hreq *r)
{
    if ((r->state != RQ_RUNNING && r->state != RQ_QUEUED) || !r->recv_paused)
        return;
    r->recv_paused = false;
    r->last_io = uv_now(r->c->loop);
    arm_timer(r);
    if (r->curl_recv_paused && !r->unpause_pending) {
        r->unpause_pending = true;
        (void)uv_timer_start(&r->c->kick, on_kick, 0, 0);
    }
}

int tp_hreq_send(struct tp_hreq *r, const char *p, size_t n)
{
    if (r->state != RQ_RUNNING && r->state != RQ_QUEUED)
        return CORE_ECLOSED;
    if (!r->stream_body || r->up_ended)
        return CORE_EINVAL;
    if (n == 0)
        return 0;
    if (core_buf_append(&r->up, p, n) != 0)
        return CORE_ETOOBIG;
    r->writable_pending = false;
    if (r->up_paused) {
        r->up_paused = false;
        r->last_io = uv_now(r->c->loop);
        arm_timer(r);
        update_pause(r);
    }
    return 0;
}

size_t tp_hreq_send_queued(const struct tp_hreq *r)
{
    return r->up.len - r->up_off;
}

void tp_hreq_send_end(struct tp_hreq *r)
{
    if ((r->state != RQ_RUNNING && r->state != RQ_QUEUED) || !r->stream_body || r->up_ended)
        return;
    r->up_ended = true;
    r->writable_pending = false;
    if (r->up_paused) {
        r->up_paused = false;
        r->last_io = uv_now(r->c->loop);
        arm_timer(r);
        update_pause(r);
    }
}

int tp_hreq_status(const struct tp_hreq *r)
{
    return r->status;
}

const char *tp_hreq_url(const struct tp_hreq *r)
{
    return r->url;
}
