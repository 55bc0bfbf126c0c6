/* Forwarding one downstream HTTP request to one upstream URL: see fwd.h.
 *
 * Lifetime: f lives from fed_fwd_start until on_end has returned; then its timer handle is
 * closed and the close callback frees it. finish() is the only place on_end is called, and it
 * runs at most once: from an hclient callback, from the client's close callback, or from the
 * timer that fed_fwd_abort starts (so on_end never runs inside a call of the owner's). */
#include "federation/fwd.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"

#define MOD "fwd"
#define DEFAULT_HIGH_WATER (256 * 1024)
#define DEFAULT_BUFFER_MAX (16u * 1024 * 1024)
#define MAX_RESP_HEADERS 256

struct fed_fwd {
    struct tp_http_req *req; /* the client's request; NULL once answered, gone or handed back */
    struct tp_hreq *up;      /* NULL once the transfer ended or was aborted */
    struct fed_fwd_cbs cbs;
    void *ctx;
    uv_timer_t timer; /* runs on_end after fed_fwd_abort; closing it frees f */
    size_t high;
    int status;
    int verdict;
    bool sent;     /* the status line went to the client */
    bool finished; /* on_end has run (or is about to) */
    bool aborting; /* fed_fwd_abort was called; the timer finishes */
    size_t sent_bytes;
    struct core_buf acc; /* FED_FWD_BUFFER: the whole upstream body */
    struct core_buf out; /* the filter's output for one delivery */
    /* FED_FWD_BUFFER: the upstream's headers kept for the answer (name, value pairs). */
    char **kept;
    size_t n_kept;
    const struct tp_http_header *extra; /* from on_head, borrowed until on_end */
    size_t n_extra;
};

/* Response headers never passed to the client: hop-by-hop ones, the framing we redo, and what
 * belongs to the upstream's origin, not ours. */
static bool resp_header_dropped(const char *name)
{
    static const char *const drop[] = {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
        "content-length", "content-encoding", "set-cookie", "alt-svc",
        "strict-transport-security",
    };
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        if (strcasecmp(name, drop[i]) == 0)
            return true;
    }
    return false;
}

bool fed_fwd_header_is_private(const char *name)
{
    static const char *const priv[] = {
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host",
        "content-length", "authorization", "x-api-key", "api-key", "cookie", "expect",
    };
    if (strncasecmp(name, "proxy-", 6) == 0)
        return true;
    for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++) {
        if (strcasecmp(name, priv[i]) == 0)
            return true;
    }
    return false;
}

static bool in_extra(const struct fed_fwd *f, const char *name)
{
    for (size_t i = 0; i < f->n_extra; i++) {
        if (strcasecmp(f->extra[i].name, name) == 0)
            return true;
    }
    return false;
}

/* ---- ending ------------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    struct fed_fwd *f = h->data;
    for (size_t i = 0; i < f->n_kept; i++)
        core_free(f->kept[i]);
    core_free(f->kept);
    core_buf_dispose(&f->acc);
    core_buf_dispose(&f->out);
    core_free(f);
}

static void release(struct fed_fwd *f)
{
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

/* Ends the forwarding with err (0: the client has the whole answer already) and calls on_end.
 * Safe from any callback; does nothing the second time. */
static void finish(struct fed_fwd *f, int err, const char *why)
{
    if (f->finished)
        return;
    f->finished = true;
    if (f->up != NULL) {
        tp_hreq_abort(f->up);
        f->up = NULL;
    }
    struct tp_http_req *back = NULL;
    if (f->req != NULL) {
        struct tp_http_req *req = f->req;
        f->req = NULL;
        tp_http_req_set_close_cb(req, NULL, NULL);
        tp_http_req_set_drain_cb(req, NULL, NULL, 0);
        if (!f->sent) {
            back = req; /* the owner answers it (or forwards it again) */
        } else {
            /* Bytes went out: the client gets the owner's last words, then the end. */
            if (f->cbs.tail != NULL) {
                core_buf_reset(&f->out);
                f->cbs.tail(f->ctx, f, err, why != NULL ? why : core_strerror(err), &f->out);
                if (f->out.len > 0) {
                    uv_buf_t b = uv_buf_init(f->out.data, (unsigned)f->out.len);
                    if (tp_http_stream_write(req, &b, 1) == 0)
                        f->sent_bytes += f->out.len;
                }
            }
            tp_http_stream_end(req);
        }
    }
    if (err != 0 && why == NULL)
        why = core_strerror(err);
    f->cbs.on_end(f->ctx, f, err, why, back, f->sent);
    release(f);
}

static void on_abort_timer(uv_timer_t *t)
{
    finish(t->data, UV_ECANCELED, "forwarding aborted");
}

void fed_fwd_abort(struct fed_fwd *f)
{
    if (f == NULL || f->finished || f->aborting)
        return;
    f->aborting = true;
    if (f->up != NULL) {
        tp_hreq_abort(f->up);
        f->up = NULL;
    }
    uv_timer_start(&f->timer, on_abort_timer, 0, 0);
}

/* The client went away: its request is invalid once this returns. */
static void on_client_close(void *ud, struct tp_http_req *req)
{
    struct fed_fwd *f = ud;
    GW_UNUSED(req);
    f->req = NULL;
    finish(f, CORE_ECLOSED, "the client went away");
}

static void on_drain(void *ud, struct tp_http_req *req)
{
    struct fed_fwd *f = ud;
    GW_UNUSED(req);
    if (f->up != NULL)
        tp_hreq_resume(f->up);
}

/* ---- the upstream transfer ---------------------------------------------------------------- */

struct hdr_list {
    struct fed_fwd *f;
    struct tp_http_header *h;
    size_t n;
    bool copy; /* keep copies (FED_FWD_BUFFER) instead of borrowing */
};

static int collect_header(void *ctx, const char *name, const char *value)
{
    struct hdr_list *l = ctx;
    if (resp_header_dropped(name) || in_extra(l->f, name) || l->n >= MAX_RESP_HEADERS)
        return 0;
    if (l->copy) {
        struct fed_fwd *f = l->f;
        f->kept = core_xrealloc(f->kept, (f->n_kept + 2) * sizeof *f->kept);
        f->kept[f->n_kept++] = core_xstrdup(name);
        f->kept[f->n_kept++] = core_xstrdup(value);
    } else {
        l->h[l->n].name = name;
        l->h[l->n].value = value;
        l->n++;
    }
    return 0;
}

/* The answer's headers: the kept or borrowed upstream ones, then the owner's extra ones.
 * Returns the array (caller frees) and its length. */
static struct tp_http_header *answer_headers(struct fed_fwd *f, const struct hdr_list *l,
                                             size_t *n)
{
    size_t base = l != NULL ? l->n : f->n_kept / 2;
    struct tp_http_header *h = core_xcalloc(base + f->n_extra + 1, sizeof *h);
    for (size_t i = 0; i < base; i++) {
        if (l != NULL) {
            h[i] = l->h[i];
        } else {
            h[i].name = f->kept[2 * i];
            h[i].value = f->kept[2 * i + 1];
        }
    }
    for (size_t i = 0; i < f->n_extra; i++)
        h[base + i] = f->extra[i];
    *n = base + f->n_extra;
    return h;
}

static void up_headers(void *ctx, struct tp_hreq *r, int status, const struct tp_hheaders *h)
{
    struct fed_fwd *f = ctx;
    GW_UNUSED(r);
    f->status = status;
    int v = FED_FWD_PASS;
    if (f->cbs.on_head != NULL)
        v = f->cbs.on_head(f->ctx, f, status, h, &f->extra, &f->n_extra);
    if (f->finished || f->aborting)
        return;
    if (f->req == NULL) {
        finish(f, CORE_ECLOSED, "the client went away");
        return;
    }
    if (v == FED_FWD_RETRY) {
        char why[64];
        snprintf(why, sizeof why, "upstream answered %d", status);
        finish(f, FED_FWD_ERETRY, why);
        return;
    }
    f->verdict = v;
    struct tp_http_header *arr = core_xcalloc(MAX_RESP_HEADERS, sizeof *arr);
    struct hdr_list l = {f, arr, 0, v == FED_FWD_BUFFER};
    tp_hheaders_each(h, collect_header, &l);
    if (v != FED_FWD_BUFFER) {
        size_t n;
        struct tp_http_header *all = answer_headers(f, &l, &n);
        f->sent = true;
        /* CORE_ECLOSED: the close callback follows and finishes. */
        (void)tp_http_stream_start(f->req, status, all, n);
        core_free(all);
    }
    core_free(arr);
}

static int up_data(void *ctx, struct tp_hreq *r, const char *p, size_t n)
{
    struct fed_fwd *f = ctx;
    GW_UNUSED(r);
    if (f->finished || f->aborting || f->req == NULL)
        return 0;
    if (f->verdict == FED_FWD_BUFFER) {
        if (core_buf_append(&f->acc, p, n) != 0)
            finish(f, CORE_ETOOBIG, "the upstream's answer is too large");
        return 0;
    }
    const char *q = p;
    size_t qn = n;
    if (f->cbs.filter != NULL) {
        core_buf_reset(&f->out);
        int rc = f->cbs.filter(f->ctx, f, p, n, false, &f->out);
        if (f->finished || f->aborting || f->req == NULL)
            return 0;
        if (rc != 0) {
            finish(f, rc, "the upstream's answer could not be passed on");
            return 0;
        }
        q = f->out.data;
        qn = f->out.len;
    }
    if (qn > 0) {
        uv_buf_t b = uv_buf_init((char *)q, (unsigned)qn);
        if (tp_http_stream_write(f->req, &b, 1) != 0)
            return 0; /* the close callback follows */
        f->sent_bytes += qn;
    }
    if (tp_http_req_queued(f->req) > f->high) {
        tp_http_req_set_drain_cb(f->req, on_drain, f, f->high / 2);
        return TP_HREQ_PAUSE;
    }
    return 0;
}

/* The upstream's answer is complete: the last of it goes to the client. Returns 0 or the
 * filter's error. */
static int complete(struct fed_fwd *f)
{
    core_buf_reset(&f->out);
    if (f->verdict == FED_FWD_BUFFER) {
        const char *body = f->acc.data != NULL ? f->acc.data : "";
        size_t len = f->acc.len;
        if (f->cbs.filter != NULL) {
            int rc = f->cbs.filter(f->ctx, f, body, len, true, &f->out);
            if (rc != 0 || f->finished || f->aborting || f->req == NULL)
                return rc;
            body = f->out.data != NULL ? f->out.data : "";
            len = f->out.len;
        }
        size_t n;
        struct tp_http_header *all = answer_headers(f, NULL, &n);
        uv_buf_t b = uv_buf_init((char *)body, (unsigned)len);
        struct tp_http_req *req = f->req;
        f->req = NULL;
        tp_http_req_set_close_cb(req, NULL, NULL);
        f->sent = true;
        f->sent_bytes = len;
        (void)tp_http_respond(req, f->status, all, n, &b, 1);
        core_free(all);
        return 0;
    }
    if (f->cbs.filter != NULL) {
        int rc = f->cbs.filter(f->ctx, f, NULL, 0, true, &f->out);
        if (rc != 0 || f->finished || f->aborting || f->req == NULL)
            return rc;
        if (f->out.len > 0) {
            uv_buf_t b = uv_buf_init(f->out.data, (unsigned)f->out.len);
            if (tp_http_stream_write(f->req, &b, 1) == 0)
                f->sent_bytes += f->out.len;
        }
    }
    struct tp_http_req *req = f->req;
    f->req = NULL;
    tp_http_req_set_close_cb(req, NULL, NULL);
    tp_http_req_set_drain_cb(req, NULL, NULL, 0);
    tp_http_stream_end(req);
    return 0;
}

static void up_done(void *ctx, struct tp_hreq *r, int err, const char *why)
{
    struct fed_fwd *f = ctx;
    GW_UNUSED(r);
    f->up = NULL; /* hclient frees r when this returns */
    if (f->finished || f->aborting)
        return;
    if (f->req == NULL) {
        finish(f, CORE_ECLOSED, "the client went away");
        return;
    }
    if (err == 0 && f->status == 0)
        err = CORE_EPROTO; /* cannot happen with hclient; never answer without a status */
    if (err != 0) {
        finish(f, err, why);
        return;
    }
    int rc = complete(f);
    if (rc != 0)
        finish(f, rc, "the upstream's answer could not be passed on");
    else
        finish(f, 0, NULL);
}

static const struct tp_hreq_cbs HCBS = {up_headers, up_data, NULL, up_done};

int fed_fwd_start(struct tp_hclient *hc, struct tp_http_req *req, const struct fed_fwd_opts *o,
                  const struct fed_fwd_cbs *cbs, void *ctx, struct fed_fwd **out)
{
    if (hc == NULL || req == NULL || o == NULL || cbs == NULL || cbs->on_end == NULL ||
        o->up.stream_body)
        return CORE_EINVAL;
    struct fed_fwd *f = core_xcalloc(1, sizeof *f);
    f->req = req;
    f->cbs = *cbs;
    f->ctx = ctx;
    f->high = o->high_water != 0 ? o->high_water : DEFAULT_HIGH_WATER;
    core_buf_init(&f->acc, o->up.max_body != 0 ? o->up.max_body : DEFAULT_BUFFER_MAX);
    core_buf_init(&f->out, 0);
    uv_timer_init(tp_hclient_loop(hc), &f->timer);
    f->timer.data = f;
    int rc = tp_hreq_start(hc, &o->up, &HCBS, f, &f->up);
    if (rc != 0) {
        f->finished = true;
        release(f);
        return rc;
    }
    tp_http_req_set_close_cb(req, on_client_close, f);
    *out = f;
    return 0;
}

int fed_fwd_status(const struct fed_fwd *f)
{
    return f->status;
}

size_t fed_fwd_sent_bytes(const struct fed_fwd *f)
{
    return f->sent_bytes;
}
