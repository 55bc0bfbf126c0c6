/* The OAuth 2.1 client (see oauth.h).
 *
 * A request (struct auth_oauth_req) walks a small state machine; each step that needs the
 * network starts one HTTP exchange (struct xfer) through the shared tp_hclient and continues in
 * its completion:
 *
 *   PROBE -> PRM (each discovery URL in turn) -> ASMETA (each variant in turn) -> REGISTER ->
 *   AUTHORIZE (loopback redirect, or the headless fetch) -> TOKEN -> done
 *
 * Refreshes (and client_credentials re-grants) do not run in a request: they run in a flight,
 * one per token set (issuer and resource), which every request needing that token joins; when
 * the flight lands, all its waiters get the same result. So N concurrent callers cause one
 * refresh, and a rotated refresh token is used once.
 *
 * Callbacks never run inside the call that started the request: results are queued and
 * delivered from a zero-delay timer (the only libuv handle of the object besides the redirect
 * listeners, which live on their own and free themselves once their handles have closed).
 *
 * Secrets: tokens, client secrets, codes and verifiers are wiped after use and never logged;
 * log lines name the server, the issuer and the endpoint, nothing else. */
#include "auth/oauth.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/oauth_proto.h"
#include "auth/oauth_store.h"
#include "auth/seal.h"
#include "auth/wwwauth.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "transports/hclient.h"

#define MOD "oauth"
#define EXPIRY_MARGIN_S 60
#define STEPUP_MAX 3
#define STEPUP_WINDOW_S 600
#define HTTP_DEADLINE_MS 30000
#define LOGIN_TIMEOUT_MS (5 * 60 * 1000)
#define CALLBACK_PATH "/callback"
#define CB_HEAD_MAX 8192 /* request line and headers of a redirect callback */
#define CB_CONNS_MAX 8   /* callback connections open at once */
#define WHY_MAX 320
#define MAX_URLS 4

/* ---- small helpers ---- */

static void wipe_free(char *s)
{
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        core_free(s);
    }
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? core_xstrdup(s) : NULL;
}

/* Wall-clock seconds (token expiry is stored across processes). Tests may shift it. */
GW_STATIC int64_t auth_oauth_clock_skew;
static int64_t now_s(void)
{
    return (int64_t)time(NULL) + auth_oauth_clock_skew;
}

/* ---- deferred work ---- */

struct defer {
    struct defer *next;
    bool queued;
};

/* ---- HTTP exchanges ---- */

struct xfer {
    struct auth_oauth *o;
    struct tp_hreq *r;
    struct core_buf body;
    int status;
    char *location;
    char *www_auth;
    void (*done)(struct xfer *x, int err, const char *why);
};

/* ---- the redirect listener ---- */

struct listener;

struct lconn {
    uv_tcp_t tcp;
    struct listener *l;
    struct lconn *next;
    struct core_buf in;
    uv_write_t wr;
    uv_buf_t out;
    bool answered; /* a response is being written; close after */
};

struct listener {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct auth_oauth_req *req; /* NULL once the request is gone */
    struct auth_oauth *o;
    struct lconn *conns;
    size_t n_conns;
    int open_handles;
    bool closing;
    int port;
};

/* ---- refresh flights ---- */

struct flight {
    struct flight *next;
    struct auth_oauth *o;
    char *key;                    /* issuer "\n" resource */
    struct auth_store_tokens tok; /* the token set being renewed (template for the new one) */
    bool client_credentials;      /* a client_credentials grant instead of a refresh */
    struct xfer x;
    struct auth_oauth_req *waiters;
};

/* ---- requests ---- */

enum req_state {
    RQ_START,     /* not started */
    RQ_PROBE,     /* an unauthenticated request to the server, for its challenge */
    RQ_PRM,       /* fetching protected resource metadata (prm_urls[i_prm - 1]) */
    RQ_ASMETA,    /* fetching authorization server metadata (as_urls[i_as - 1]) */
    RQ_REGISTER,  /* dynamic client registration */
    RQ_AUTHORIZE, /* waiting for the redirect, or fetching the URL (headless) */
    RQ_TOKEN,     /* the token request (code exchange or client_credentials) */
    RQ_WAIT,      /* waiting on a flight */
    RQ_DONE,      /* the result is set; the callback is queued */
};

static const char *state_name(enum req_state s)
{
    static const char *names[] = {"start",     "probe", "prm",  "asmeta", "register",
                                  "authorize", "token", "wait", "done"};
    return names[s];
}

struct auth_oauth_req {
    struct defer d; /* first: the deferred list holds requests */
    struct auth_oauth *o;
    struct auth_oauth_req *next, *prev; /* o->reqs */
    struct auth_oauth_req *fnext;       /* flight waiters */
    struct flight *flight;
    enum req_state state;
    bool canceled;
    bool login;    /* an explicit login (vs get_token) */
    bool headless; /* take the code from the authorization URL's redirect */
    bool stepup;   /* the flow asks for more scopes after a 403 */
    uint64_t timeout_ms;
    auth_oauth_url_cb on_url;
    void *url_ctx;
    auth_oauth_token_cb cb;
    void *ctx;

    /* The server (copies). */
    char *name;
    char *url;      /* as configured */
    char *resource; /* canonical URL: the store key */
    char *cfg_client_id;
    char *cfg_client_secret;
    char *cfg_cimd_url;
    char *cfg_scopes;
    bool cfg_cc;
    char *ca_file;

    /* The challenge. */
    int ch_status;
    struct auth_bearer bearer;
    bool have_bearer;
    char *granted_scope; /* what the stored token had (step-up union) */

    /* Discovery. */
    struct xfer x;
    char *prm_urls[MAX_URLS];
    size_t n_prm, i_prm;
    struct auth_prm prm;
    bool have_prm;
    bool legacy;       /* no PRM: the 2025-03-26 rules (the server's origin is the issuer) */
    bool prm_answered; /* some PRM URL gave an HTTP answer (not only transport errors) */
    char prm_err[160]; /* the last transport error of a PRM fetch */
    char *issuer;
    char *as_urls[MAX_URLS];
    size_t n_as, i_as;
    struct auth_asmeta meta;
    bool have_meta;
    char *resource_param;
    char *scope;

    /* Client and authorization. */
    char *client_id;
    char *client_secret;
    unsigned auth_method;
    char *redirect_uri;
    struct listener *l;
    char verifier[AUTH_PKCE_LEN + 1];
    char state_param[33];
    char *code;

    /* Result. */
    int err;
    char *authz;
    char why[WHY_MAX];
};

struct stepup {
    struct stepup *next;
    char *resource;
    int64_t at[STEPUP_MAX];
    size_t n;
};

struct auth_oauth {
    uv_loop_t *loop;
    struct tp_hclient *hc;
    struct auth_store *store;
    uv_timer_t tick;
    struct auth_oauth_req *reqs;
    struct defer *deferred; /* requests whose callback is due (LIFO; order does not matter) */
    struct flight *flights;
    struct stepup *stepups;
    int listeners; /* open listeners (they free themselves) */
    bool headless;
    bool closing;
    bool tick_closed;
    void (*done)(void *ctx);
    void *done_ctx;
};

static void maybe_free_oauth(struct auth_oauth *o);
static void req_free(struct auth_oauth_req *r);
static void flow_prm_next(struct auth_oauth_req *r);
static void flow_as_next(struct auth_oauth_req *r);
static void flow_after_meta(struct auth_oauth_req *r);
static void flow_register(struct auth_oauth_req *r);
static void flow_authorize(struct auth_oauth_req *r);
static void flow_token(struct auth_oauth_req *r);
static void listener_close(struct listener *l);

static void set_state(struct auth_oauth_req *r, enum req_state s)
{
    if (r->state != s)
        core_log(CORE_LOG_DEBUG, MOD, "%s: %s -> %s", r->name, state_name(r->state), state_name(s));
    r->state = s;
}

/* ---- HTTP ---- */

/* Joins every WWW-Authenticate line with ", " (one list, RFC 9110 §5.3). */
static int collect_www_auth(void *ctx, const char *name, const char *value)
{
    struct core_buf *b = ctx;
    if (strcasecmp(name, "www-authenticate") == 0) {
        int rc = b->len > 0 ? core_buf_append(b, ", ", 2) : 0;
        if (rc == 0)
            rc = core_buf_append_str(b, value);
        if (rc != 0)
            return 1; /* too long: the parser refuses it anyway */
    }
    return 0;
}

static void x_on_headers(void *ctx, struct tp_hreq *hr, int status, const struct tp_hheaders *h)
{
    struct xfer *x = ctx;
    (void)hr;
    x->status = status;
    const char *loc = tp_hheaders_get(h, "location");
    if (loc != NULL && strlen(loc) < 8192)
        x->location = core_xstrdup(loc);
    struct core_buf wa;
    core_buf_init(&wa, AUTH_WWWAUTH_MAX);
    tp_hheaders_each(h, collect_www_auth, &wa);
    if (wa.len > 0)
        x->www_auth = core_buf_take(&wa, NULL);
    core_buf_dispose(&wa);
}

static int x_on_data(void *ctx, struct tp_hreq *hr, const char *p, size_t n)
{
    struct xfer *x = ctx;
    (void)hr;
    /* Past the limit the hclient's max_body ends the transfer; keep what fits. */
    int rc = core_buf_append(&x->body, p, n);
    (void)rc;
    return 0;
}

static void x_on_done(void *ctx, struct tp_hreq *hr, int err, const char *why)
{
    struct xfer *x = ctx;
    (void)hr;
    x->r = NULL;
    x->done(x, err, why);
}

static void x_reset(struct xfer *x)
{
    if (x->r != NULL) {
        tp_hreq_abort(x->r);
        x->r = NULL;
    }
    core_buf_dispose(&x->body);
    core_buf_init(&x->body, AUTH_PROTO_BODY_MAX);
    x->status = 0;
    core_free(x->location);
    x->location = NULL;
    core_free(x->www_auth);
    x->www_auth = NULL;
}

static void x_dispose(struct xfer *x)
{
    x_reset(x);
    if (x->body.data != NULL)
        sodium_memzero(x->body.data, x->body.len);
    core_buf_dispose(&x->body);
}

/* Starts an exchange; on a start failure x->done runs from here with the error (callers are
 * already inside a step, never inside a public call that must not call back). */
static int x_start(struct xfer *x, const char *method, const char *url, const char *const *headers,
                   const char *body, size_t body_len, const char *ca_file,
                   void (*done)(struct xfer *, int, const char *))
{
    x_reset(x);
    x->done = done;
    struct tp_hreq_opts opts = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .ca_file = ca_file,
        .deadline_ms = HTTP_DEADLINE_MS,
        .max_body = AUTH_PROTO_BODY_MAX,
        .max_redirects = 0,
    };
    static const struct tp_hreq_cbs cbs = {
        .on_headers = x_on_headers,
        .on_data = x_on_data,
        .on_done = x_on_done,
    };
    return tp_hreq_start(x->o->hc, &opts, &cbs, x, &x->r);
}

static const char *x_body(const struct xfer *x)
{
    return x->body.data != NULL ? x->body.data : "";
}

/* ---- finishing requests ---- */

static void on_tick(uv_timer_t *t)
{
    struct auth_oauth *o = container_of(t, struct auth_oauth, tick);
    while (o->deferred != NULL) {
        struct defer *d = o->deferred;
        o->deferred = d->next;
        d->queued = false;
        struct auth_oauth_req *r = (struct auth_oauth_req *)d;
        if (!r->canceled && r->cb != NULL) {
            const char *why = r->err != 0 ? r->why : "";
            r->cb(r->ctx, r->err, r->authz, why);
        }
        req_free(r);
    }
    maybe_free_oauth(o);
}

static void queue(struct auth_oauth *o, struct defer *d)
{
    if (d->queued)
        return;
    d->queued = true;
    d->next = o->deferred;
    o->deferred = d;
    if (!o->tick_closed)
        uv_timer_start(&o->tick, on_tick, 0, 0);
}

static void unqueue(struct auth_oauth *o, struct defer *d)
{
    for (struct defer **pp = &o->deferred; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            d->queued = false;
            return;
        }
    }
}

static void flight_leave(struct auth_oauth_req *r)
{
    if (r->flight == NULL)
        return;
    for (struct auth_oauth_req **pp = &r->flight->waiters; *pp != NULL; pp = &(*pp)->fnext) {
        if (*pp == r) {
            *pp = r->fnext;
            break;
        }
    }
    r->flight = NULL;
    r->fnext = NULL;
}

/* Ends r with a result: err 0 and the access token, or an error and a reason. Stops whatever
 * it was doing; the callback runs from the tick. */
static void finish(struct auth_oauth_req *r, int err, const char *token, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish(struct auth_oauth_req *r, int err, const char *token, const char *fmt, ...)
{
    if (r->state == RQ_DONE)
        return;
    set_state(r, RQ_DONE);
    flight_leave(r);
    x_reset(&r->x);
    if (r->l != NULL) {
        listener_close(r->l);
        r->l = NULL;
    }
    r->err = err;
    if (err == 0) {
        size_t n = strlen(token) + 8;
        r->authz = core_xmalloc(n);
        snprintf(r->authz, n, "Bearer %s", token);
    } else if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->why, sizeof r->why, fmt, ap);
        va_end(ap);
        core_log(err == AUTH_OAUTH_ENEEDLOGIN ? CORE_LOG_INFO : CORE_LOG_WARN, MOD, "%s: %s",
                 r->name, r->why);
    }
    queue(r->o, &r->d);
}

static void req_free(struct auth_oauth_req *r)
{
    struct auth_oauth *o = r->o;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (o->reqs == r)
        o->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    flight_leave(r);
    x_dispose(&r->x);
    if (r->l != NULL)
        listener_close(r->l);
    core_free(r->name);
    core_free(r->url);
    core_free(r->resource);
    core_free(r->cfg_client_id);
    wipe_free(r->cfg_client_secret);
    core_free(r->cfg_cimd_url);
    core_free(r->cfg_scopes);
    core_free(r->ca_file);
    auth_bearer_dispose(&r->bearer);
    core_free(r->granted_scope);
    for (size_t i = 0; i < r->n_prm; i++)
        core_free(r->prm_urls[i]);
    auth_prm_dispose(&r->prm);
    core_free(r->issuer);
    for (size_t i = 0; i < r->n_as; i++)
        core_free(r->as_urls[i]);
    auth_asmeta_dispose(&r->meta);
    core_free(r->resource_param);
    core_free(r->scope);
    core_free(r->client_id);
    wipe_free(r->client_secret);
    core_free(r->redirect_uri);
    wipe_free(r->code);
    wipe_free(r->authz);
    sodium_memzero(r->verifier, sizeof r->verifier);
    sodium_memzero(r->state_param, sizeof r->state_param);
    core_free(r);
}

/* ---- the store ---- */

/* Stores a token response for r (or a flight's template) and returns 0, or an error with a
 * line in why. */
static int store_tokens(struct auth_oauth *o, const struct auth_store_tokens *tmpl,
                        const struct auth_tokens *t, char *why, size_t whylen)
{
    struct auth_store_tokens e = *tmpl;
    e.access_token = t->access_token;
    /* No new refresh token: the old one stays valid (rotation is optional, RFC 6749 §6). */
    e.refresh_token = t->refresh_token != NULL ? t->refresh_token : tmpl->refresh_token;
    e.scope = t->scope != NULL ? t->scope : tmpl->scope;
    e.expires_at = t->expires_in >= 0 ? now_s() + t->expires_in : 0;
    e.reason = NULL;
    return auth_store_tokens_put(o->store, &e, why, whylen);
}

/* ---- flights (refresh and client_credentials re-grant) ---- */

static void token_request_headers(const char *client_id, const char *client_secret, unsigned method,
                                  char *basic, size_t cap, const char **headers,
                                  struct core_buf *form)
{
    size_t k = 0;
    headers[k++] = "Content-Type: application/x-www-form-urlencoded";
    headers[k++] = "Accept: application/json";
    if (client_secret != NULL && method == AUTH_TEAM_BASIC) {
        /* RFC 6749 §2.3.1: both parts form-encoded before base64. */
        struct core_buf cred;
        core_buf_init(&cred, 0);
        int rc = auth_pct_encode(&cred, client_id);
        if (rc == 0)
            rc = core_buf_append(&cred, ":", 1);
        if (rc == 0)
            rc = auth_pct_encode(&cred, client_secret);
        size_t pre = strlen("Authorization: Basic ");
        if (rc == 0 &&
            sodium_base64_ENCODED_LEN(cred.len, sodium_base64_VARIANT_ORIGINAL) + pre <= cap) {
            memcpy(basic, "Authorization: Basic ", pre);
            sodium_bin2base64(basic + pre, cap - pre, (const unsigned char *)cred.data, cred.len,
                              sodium_base64_VARIANT_ORIGINAL);
            headers[k++] = basic;
        }
        if (cred.data != NULL)
            sodium_memzero(cred.data, cred.len);
        core_buf_dispose(&cred);
    } else {
        int rc = auth_form_add(form, "client_id", client_id);
        if (rc == 0 && client_secret != NULL && method == AUTH_TEAM_POST)
            rc = auth_form_add(form, "client_secret", client_secret);
        (void)rc; /* the form has no limit */
    }
    headers[k] = NULL;
}

static void flight_free(struct flight *f)
{
    struct auth_oauth *o = f->o;
    for (struct flight **pp = &o->flights; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    x_dispose(&f->x);
    core_free(f->key);
    auth_store_tokens_dispose(&f->tok);
    core_free(f);
}

static void flight_land(struct flight *f, int err, const char *token, const char *why)
{
    while (f->waiters != NULL) {
        struct auth_oauth_req *r = f->waiters;
        f->waiters = r->fnext;
        r->fnext = NULL;
        r->flight = NULL;
        if (err == 0)
            finish(r, 0, token, NULL);
        else
            finish(r, err, NULL, "%s", why);
    }
    flight_free(f);
}

static void on_flight_done(struct xfer *x, int err, const char *why)
{
    struct flight *f = container_of(x, struct flight, x);
    const char *name = f->tok.server != NULL ? f->tok.server : "server";
    char msg[WHY_MAX];
    if (err != 0) {
        snprintf(msg, sizeof msg, "token endpoint %s: %s", f->tok.token_endpoint,
                 why != NULL ? why : core_strerror(err));
        flight_land(f, AUTH_OAUTH_EFAILED, NULL, msg);
        return;
    }
    if (x->status != 200) {
        char etxt[256];
        auth_proto_error_text(x_body(x), x->body.len, etxt, sizeof etxt);
        bool dead = x->status == 400 || x->status == 401;
        if (dead && !f->client_credentials) {
            /* The refresh token (or the client) is no longer accepted: keep a tombstone with
             * the reason, so every later call says why. */
            struct auth_store_tokens tomb = f->tok;
            tomb.access_token = NULL;
            tomb.refresh_token = NULL;
            snprintf(msg, sizeof msg,
                     "the authorization server refused the refresh token (%.160s); run "
                     "`agentgate login %.64s`",
                     etxt[0] != '\0' ? etxt : "HTTP error", name);
            tomb.reason = msg;
            char e2[256];
            if (auth_store_tokens_put(f->o->store, &tomb, e2, sizeof e2) != 0)
                core_log(CORE_LOG_WARN, MOD, "%s: %s", name, e2);
            flight_land(f, AUTH_OAUTH_ENEEDLOGIN, NULL, msg);
            return;
        }
        snprintf(msg, sizeof msg, "token endpoint %s answered %d%s%s", f->tok.token_endpoint,
                 x->status, etxt[0] != '\0' ? ": " : "", etxt);
        flight_land(f, AUTH_OAUTH_EFAILED, NULL, msg);
        return;
    }
    struct auth_tokens t;
    if (auth_tokens_parse(x_body(x), x->body.len, &t, msg, sizeof msg) != 0) {
        flight_land(f, AUTH_OAUTH_EFAILED, NULL, msg);
        return;
    }
    if (store_tokens(f->o, &f->tok, &t, msg, sizeof msg) != 0) {
        auth_tokens_dispose(&t);
        flight_land(f, AUTH_OAUTH_EFAILED, NULL, msg);
        return;
    }
    core_log(CORE_LOG_INFO, MOD, "%s: %s at %s", name,
             f->client_credentials ? "new client_credentials token" : "token refreshed",
             f->tok.issuer);
    flight_land(f, 0, t.access_token, NULL);
    auth_tokens_dispose(&t);
}

/* Joins (or starts) the flight renewing tok for r. cc: a client_credentials grant. */
static void join_flight(struct auth_oauth_req *r, const struct auth_store_tokens *tok, bool cc)
{
    struct auth_oauth *o = r->o;
    struct core_buf key;
    core_buf_init(&key, 0);
    int rc = core_buf_appendf(&key, "%s\n%s", tok->issuer, tok->resource);
    (void)rc;
    struct flight *f = o->flights;
    while (f != NULL && strcmp(f->key, key.data) != 0)
        f = f->next;
    if (f != NULL) {
        core_buf_dispose(&key);
        set_state(r, RQ_WAIT);
        r->flight = f;
        r->fnext = f->waiters;
        f->waiters = r;
        core_log(CORE_LOG_DEBUG, MOD, "%s: waiting on the refresh in flight", r->name);
        return;
    }
    f = core_xcalloc(1, sizeof *f);
    f->o = o;
    f->key = core_buf_take(&key, NULL);
    f->client_credentials = cc;
    f->x.o = o;
    core_buf_init(&f->x.body, AUTH_PROTO_BODY_MAX);
    struct auth_store_tokens *c = &f->tok;
    c->issuer = dup_or_null(tok->issuer);
    c->resource = dup_or_null(tok->resource);
    c->server = dup_or_null(r->name);
    c->refresh_token = dup_or_null(tok->refresh_token);
    c->scope = dup_or_null(tok->scope);
    c->token_endpoint = dup_or_null(tok->token_endpoint);
    c->resource_param = dup_or_null(tok->resource_param);
    c->client_id = dup_or_null(tok->client_id);
    c->client_secret = dup_or_null(tok->client_secret);
    c->auth_method = tok->auth_method;
    f->next = o->flights;
    o->flights = f;
    set_state(r, RQ_WAIT);
    r->flight = f;
    f->waiters = r;

    struct core_buf form;
    core_buf_init(&form, 0);
    char basic[1024];
    const char *headers[4];
    rc = auth_form_add(&form, "grant_type", cc ? "client_credentials" : "refresh_token");
    if (rc == 0 && !cc)
        rc = auth_form_add(&form, "refresh_token", c->refresh_token);
    if (rc == 0 && c->resource_param != NULL)
        rc = auth_form_add(&form, "resource", c->resource_param);
    if (rc == 0 && cc && c->scope != NULL)
        rc = auth_form_add(&form, "scope", c->scope);
    token_request_headers(c->client_id, c->client_secret, c->auth_method, basic, sizeof basic,
                          headers, &form);
    core_log(CORE_LOG_DEBUG, MOD, "%s: %s at %s", r->name,
             cc ? "client_credentials grant" : "refreshing", c->token_endpoint);
    rc = x_start(&f->x, "POST", c->token_endpoint, headers, form.data, form.len, r->ca_file,
                 on_flight_done);
    sodium_memzero(basic, sizeof basic);
    if (form.data != NULL)
        sodium_memzero(form.data, form.len);
    core_buf_dispose(&form);
    if (rc != 0) {
        char msg[WHY_MAX];
        snprintf(msg, sizeof msg, "cannot reach the token endpoint %s: %s", c->token_endpoint,
                 core_strerror(rc));
        flight_land(f, AUTH_OAUTH_EFAILED, NULL, msg);
    }
}

/* ---- discovery ---- */

static const char *const json_get_headers[] = {"Accept: application/json",
                                               "MCP-Protocol-Version: 2025-11-25", NULL};

static void http_failed(struct auth_oauth_req *r, const char *what, const char *url, int err,
                        const char *why)
{
    finish(r, AUTH_OAUTH_EFAILED, NULL, "%s %s: %s", what, url,
           why != NULL ? why : core_strerror(err));
}

static void on_probe_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    (void)err, (void)why;
    /* Whatever happened after the headers, the status and challenge are what counts. */
    if ((x->status == 401 || x->status == 403) && x->www_auth != NULL && !r->have_bearer) {
        if (auth_wwwauth_parse(x->www_auth, strlen(x->www_auth), &r->bearer) == 0) {
            r->have_bearer = true;
            r->ch_status = x->status;
        }
    }
    if (x->status == 0 && err != 0) {
        http_failed(r, "cannot reach", r->url, err, why);
        return;
    }
    flow_prm_next(r);
}

static void flow_begin(struct auth_oauth_req *r)
{
    /* PRM URLs: the challenge's first (any origin, RFC 9728 §5.1; the resource it names
     * must still match), then the well-known ones. */
    struct auth_url u;
    if (r->have_bearer && r->bearer.resource_metadata != NULL &&
        auth_url_parse(r->bearer.resource_metadata, &u) == 0) {
        r->prm_urls[r->n_prm++] = core_xstrdup(r->bearer.resource_metadata);
        auth_url_dispose(&u);
    }
    r->n_prm += auth_proto_prm_urls(r->url, r->prm_urls + r->n_prm, MAX_URLS - r->n_prm);
    if (r->login && !r->have_bearer) {
        set_state(r, RQ_PROBE);
        static const char init[] =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
            "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{"
            "\"name\":\"agentgate-login\",\"version\":\"" AG_VERSION "\"}}}";
        static const char *const hdrs[] = {"Content-Type: application/json",
                                           "Accept: application/json, text/event-stream",
                                           "MCP-Protocol-Version: 2025-11-25", NULL};
        int rc =
            x_start(&r->x, "POST", r->url, hdrs, init, sizeof init - 1, r->ca_file, on_probe_done);
        if (rc != 0)
            http_failed(r, "cannot reach", r->url, rc, NULL);
        return;
    }
    flow_prm_next(r);
}

static void on_prm_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    const char *url = r->prm_urls[r->i_prm - 1];
    if (err != 0 && x->status == 0) {
        core_log(CORE_LOG_DEBUG, MOD, "%s: %s: %s", r->name, url, why ? why : "failed");
        snprintf(r->prm_err, sizeof r->prm_err, "%s", why != NULL ? why : core_strerror(err));
        flow_prm_next(r);
        return;
    }
    r->prm_answered = true;
    if (x->status != 200) {
        flow_prm_next(r);
        return;
    }
    char msg[256];
    struct auth_prm p;
    if (auth_prm_parse(x_body(x), x->body.len, &p, msg, sizeof msg) != 0) {
        core_log(CORE_LOG_DEBUG, MOD, "%s: %s: %s", r->name, url, msg);
        flow_prm_next(r);
        return;
    }
    if (!auth_proto_resource_matches(p.resource, r->url)) {
        finish(r, AUTH_OAUTH_EFAILED, NULL,
               "protected resource metadata at %s is for %.200s, not %.200s; refusing", url,
               p.resource, r->url);
        auth_prm_dispose(&p);
        return;
    }
    r->prm = p;
    r->have_prm = true;
    r->issuer = core_xstrdup(p.auth_servers[0]);
    r->n_as = auth_proto_as_urls(r->issuer, r->as_urls, MAX_URLS);
    core_log(CORE_LOG_DEBUG, MOD, "%s: resource metadata from %s, issuer %s", r->name, url,
             r->issuer);
    flow_as_next(r);
}

static void flow_prm_next(struct auth_oauth_req *r)
{
    if (r->i_prm < r->n_prm) {
        set_state(r, RQ_PRM);
        const char *url = r->prm_urls[r->i_prm++];
        int rc = x_start(&r->x, "GET", url, json_get_headers, NULL, 0, r->ca_file, on_prm_done);
        if (rc != 0)
            http_failed(r, "cannot fetch", url, rc, NULL);
        return;
    }
    if (!r->prm_answered) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "cannot reach %s for its resource metadata: %s", r->url,
               r->prm_err[0] != '\0' ? r->prm_err : "no answer");
        return;
    }
    /* No protected resource metadata: a 2025-03-26 server, its origin is the issuer. */
    struct auth_url u;
    if (auth_url_parse(r->url, &u) != 0) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "bad server URL");
        return;
    }
    r->legacy = true;
    r->issuer = core_xstrdup(u.origin);
    auth_url_dispose(&u);
    r->n_as = auth_proto_as_urls(r->issuer, r->as_urls, MAX_URLS);
    core_log(CORE_LOG_DEBUG, MOD, "%s: no protected resource metadata; trying %s", r->name,
             r->issuer);
    flow_as_next(r);
}

static void on_as_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    const char *url = r->as_urls[r->i_as - 1];
    if ((err != 0 && x->status == 0) || x->status != 200) {
        core_log(CORE_LOG_DEBUG, MOD, "%s: %s: %s", r->name, url,
                 x->status != 0 ? "not there" : (why ? why : "failed"));
        flow_as_next(r);
        return;
    }
    char msg[256];
    int rc = auth_asmeta_parse(x_body(x), x->body.len, r->issuer, &r->meta, msg, sizeof msg);
    if (rc == CORE_EINVAL) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "%s: %s; refusing", url, msg);
        return;
    }
    if (rc != 0) {
        core_log(CORE_LOG_DEBUG, MOD, "%s: %s: %s", r->name, url, msg);
        flow_as_next(r);
        return;
    }
    r->have_meta = true;
    flow_after_meta(r);
}

static void flow_as_next(struct auth_oauth_req *r)
{
    if (r->i_as < r->n_as) {
        set_state(r, RQ_ASMETA);
        const char *url = r->as_urls[r->i_as++];
        int rc = x_start(&r->x, "GET", url, json_get_headers, NULL, 0, r->ca_file, on_as_done);
        if (rc != 0)
            http_failed(r, "cannot fetch", url, rc, NULL);
        return;
    }
    if (r->legacy) {
        /* 2025-03-26: without metadata, the default endpoints at the server's origin. */
        auth_asmeta_default(r->issuer, &r->meta);
        r->have_meta = true;
        flow_after_meta(r);
        return;
    }
    finish(r, AUTH_OAUTH_EFAILED, NULL, "no authorization server metadata found for %s", r->issuer);
}

static unsigned pick_auth_method(unsigned supported, bool has_secret)
{
    if (!has_secret)
        return AUTH_TEAM_NONE;
    if (supported == 0 || (supported & AUTH_TEAM_BASIC))
        return AUTH_TEAM_BASIC;
    if (supported & AUTH_TEAM_POST)
        return AUTH_TEAM_POST;
    return AUTH_TEAM_BASIC;
}

static void flow_after_meta(struct auth_oauth_req *r)
{
    char *canon = auth_url_canonical(r->url);
    r->resource_param = r->have_prm ? core_xstrdup(r->prm.resource) : canon;
    if (r->have_prm)
        core_free(canon);
    /* Scope: configured, else the challenge's, else the resource's scopes_supported; a step-up
     * adds what the token already had. */
    const char *base = r->cfg_scopes;
    if (base == NULL && r->have_bearer && r->bearer.scope != NULL)
        base = r->bearer.scope;
    if (base == NULL && r->have_prm)
        base = r->prm.scopes;
    char *extra = r->cfg_scopes != NULL && r->have_bearer ? r->bearer.scope : NULL;
    char *u = auth_scope_union(base, extra);
    r->scope = auth_scope_union(u, r->stepup || r->login ? r->granted_scope : NULL);
    core_free(u);

    if (r->cfg_cc) {
        if (r->cfg_client_id == NULL || r->cfg_client_secret == NULL) {
            finish(r, AUTH_OAUTH_EFAILED, NULL,
                   "oauth_grant = client_credentials needs client_id and client_secret");
            return;
        }
        r->client_id = core_xstrdup(r->cfg_client_id);
        r->client_secret = core_xstrdup(r->cfg_client_secret);
        r->auth_method = pick_auth_method(r->meta.auth_methods, true);
        flow_token(r);
        return;
    }
    if (!r->meta.pkce_s256) {
        finish(r, AUTH_OAUTH_EFAILED, NULL,
               "authorization server %s does not support PKCE with S256 "
               "(code_challenge_methods_supported); refusing to log in",
               r->meta.issuer);
        return;
    }
    if (r->meta.authorization_endpoint == NULL) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "authorization server %s has no authorization_endpoint",
               r->meta.issuer);
        return;
    }
    if (!r->login && !r->headless) {
        finish(r, AUTH_OAUTH_ENEEDLOGIN, NULL, "not logged in: run `agentgate login %s`", r->name);
        return;
    }
    flow_register(r);
}

/* ---- the redirect listener ---- */

static void listener_handle_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (h != (uv_handle_t *)&l->tcp && h != (uv_handle_t *)&l->timer) {
        struct lconn *c = (struct lconn *)h;
        core_buf_dispose(&c->in);
        core_free(c->out.base);
        core_free(c);
    }
    if (--l->open_handles == 0) {
        struct auth_oauth *o = l->o;
        core_free(l);
        o->listeners--;
        maybe_free_oauth(o);
    }
}

static void lconn_close(struct lconn *c)
{
    struct listener *l = c->l;
    for (struct lconn **pp = &l->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            l->n_conns--;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, listener_handle_closed);
}

static void listener_close(struct listener *l)
{
    if (l->closing)
        return;
    l->closing = true;
    l->req = NULL;
    while (l->conns != NULL) {
        struct lconn *c = l->conns;
        if (c->answered) {
            /* Let the response finish; on_written closes it. */
            l->conns = c->next;
            l->n_conns--;
            c->next = NULL;
            continue;
        }
        lconn_close(c);
    }
    uv_close((uv_handle_t *)&l->tcp, listener_handle_closed);
    uv_close((uv_handle_t *)&l->timer, listener_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    struct lconn *c = container_of(w, struct lconn, wr);
    (void)status;
    struct listener *l = c->l;
    bool listed = false;
    for (struct lconn *it = l->conns; it != NULL; it = it->next)
        listed = listed || it == c;
    if (listed)
        lconn_close(c);
    else
        uv_close((uv_handle_t *)&c->tcp, listener_handle_closed);
}

static void respond(struct lconn *c, int status, const char *msg)
{
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
    struct core_buf b;
    core_buf_init(&b, 0);
    int rc = core_buf_appendf(&b,
                              "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                              "Cache-Control: no-store\r\nConnection: close\r\n"
                              "Content-Length: %zu\r\n\r\n",
                              status, reason,
                              strlen(msg) + strlen("<!doctype html><title>agentgate</title><p>"));
    if (rc == 0)
        rc = core_buf_appendf(&b, "<!doctype html><title>agentgate</title><p>%s", msg);
    (void)rc;
    c->out.len = b.len;
    c->out.base = core_buf_take(&b, NULL);
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_buf_t bufs[1] = {c->out}; /* uv_write copies the array, not the bytes */
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, 1, on_written) != 0)
        lconn_close(c);
}

/* Validates a redirect's query for r: state, iss (RFC 9207), error, code. Returns 0 (r->code
 * set), 1 (not for us: wrong or missing state, keep waiting) or -1 (r finished with an
 * error). */
static int take_redirect(struct auth_oauth_req *r, const char *query, char *page, size_t cap)
{
    bool dup = false;
    char *state = auth_query_get(query, "state", &dup);
    if (state == NULL || dup || strlen(state) != strlen(r->state_param) ||
        sodium_memcmp(state, r->state_param, strlen(state)) != 0) {
        core_free(state);
        snprintf(page, cap, "This is not the login agentgate is waiting for (state mismatch).");
        return 1;
    }
    core_free(state);
    char *iss = auth_query_get(query, "iss", NULL);
    if ((iss == NULL && r->meta.iss_param) || (iss != NULL && strcmp(iss, r->meta.issuer) != 0)) {
        snprintf(page, cap,
                 "Login refused: the response did not come from the expected "
                 "authorization server.");
        finish(r, AUTH_OAUTH_EFAILED, NULL,
               "the authorization response's iss (%.100s) is not %.100s (RFC 9207); refusing",
               iss != NULL ? iss : "missing", r->meta.issuer);
        core_free(iss);
        return -1;
    }
    core_free(iss);
    char *error = auth_query_get(query, "error", NULL);
    if (error != NULL) {
        char *desc = auth_query_get(query, "error_description", NULL);
        char clean[160];
        size_t k = 0;
        for (const char *p = desc != NULL ? desc : error; *p && k + 1 < sizeof clean; p++)
            clean[k++] = (*p >= 0x20 && *p < 0x7f && *p != '<' && *p != '&') ? *p : '?';
        clean[k] = '\0';
        snprintf(page, cap, "Login failed: %s", clean);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "the authorization server refused: %.60s: %s", error,
               clean);
        core_free(error);
        core_free(desc);
        return -1;
    }
    r->code = auth_query_get(query, "code", &dup);
    if (r->code == NULL || r->code[0] == '\0' || dup) {
        snprintf(page, cap, "Login failed: no authorization code.");
        finish(r, AUTH_OAUTH_EFAILED, NULL, "the redirect carried no authorization code");
        return -1;
    }
    snprintf(page, cap, "Logged in. You can close this tab and return to the terminal.");
    return 0;
}

static void lconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct lconn *c = (struct lconn *)h;
    (void)hint;
    if (core_buf_reserve(&c->in, 1024) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    size_t room = c->in.cap - c->in.len;
    buf->base = c->in.data + c->in.len;
    buf->len = room;
}

static void lconn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct lconn *c = (struct lconn *)s;
    (void)buf;
    if (n < 0 || (n == 0 && buf->base == NULL)) {
        if (n == UV_ENOBUFS || buf->base == NULL)
            respond(c, 400, "Request too large.");
        else
            lconn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    if (strstr(c->in.data, "\r\n\r\n") == NULL && strstr(c->in.data, "\n\n") == NULL) {
        if (c->in.len >= CB_HEAD_MAX)
            respond(c, 400, "Request too large.");
        return;
    }
    /* "GET /callback?query HTTP/1.1" */
    const char *line = c->in.data;
    if (strncmp(line, "GET ", 4) != 0) {
        respond(c, 400, "Bad request.");
        return;
    }
    const char *target = line + 4;
    size_t tlen = strcspn(target, " \r\n");
    size_t plen = strcspn(target, "? \r\n");
    struct listener *l = c->l;
    struct auth_oauth_req *r = l->req;
    if (plen != strlen(CALLBACK_PATH) || strncmp(target, CALLBACK_PATH, plen) != 0 || r == NULL ||
        r->state != RQ_AUTHORIZE) {
        respond(c, 404, "Not found.");
        return;
    }
    char *query =
        target[plen] == '?' ? core_xstrndup(target + plen + 1, tlen - plen - 1) : core_xstrdup("");
    char page[256];
    int rc = take_redirect(r, query, page, sizeof page);
    sodium_memzero(query, strlen(query));
    core_free(query);
    respond(c, rc == 1 ? 400 : 200, page);
    if (rc == 0) {
        /* Exactly one valid callback: stop listening, exchange the code. */
        r->l = NULL;
        listener_close(l);
        flow_token(r);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = container_of((uv_tcp_t *)server, struct listener, tcp);
    if (status != 0 || l->closing)
        return;
    struct lconn *c = core_xcalloc(1, sizeof *c);
    c->l = l;
    core_buf_init(&c->in, CB_HEAD_MAX);
    uv_tcp_init(l->o->loop, &c->tcp);
    c->tcp.data = l;
    l->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || l->n_conns >= CB_CONNS_MAX) {
        uv_close((uv_handle_t *)&c->tcp, listener_handle_closed);
        return;
    }
    c->next = l->conns;
    l->conns = c;
    l->n_conns++;
    if (uv_read_start((uv_stream_t *)&c->tcp, lconn_alloc, lconn_read) != 0)
        lconn_close(c);
}

static void on_login_timeout(uv_timer_t *t)
{
    struct listener *l = container_of(t, struct listener, timer);
    struct auth_oauth_req *r = l->req;
    if (r != NULL)
        finish(r, AUTH_OAUTH_EFAILED, NULL, "no login within %llu s",
               (unsigned long long)(r->timeout_ms / 1000));
}

/* Listens on 127.0.0.1:port (0 = any free port). Returns 0 or a libuv error. */
static int listener_open(struct auth_oauth_req *r, int port)
{
    struct auth_oauth *o = r->o;
    struct listener *l = core_xcalloc(1, sizeof *l);
    l->o = o;
    l->req = r;
    uv_tcp_init(o->loop, &l->tcp);
    uv_timer_init(o->loop, &l->timer);
    l->tcp.data = l;
    l->timer.data = l;
    l->open_handles = 2;
    o->listeners++;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 8, on_connection);
    if (rc == 0) {
        struct sockaddr_in got;
        int len = sizeof got;
        rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&got, &len);
        l->port = ntohs(got.sin_port);
    }
    if (rc != 0) {
        listener_close(l);
        return rc;
    }
    r->l = l;
    uv_timer_start(&l->timer, on_login_timeout, r->timeout_ms, 0);
    return 0;
}

/* ---- registration ---- */

static void on_register_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    if (x->status == 0) {
        http_failed(r, "client registration at", r->meta.registration_endpoint, err, why);
        return;
    }
    if (x->status != 200 && x->status != 201) {
        char etxt[256];
        auth_proto_error_text(x_body(x), x->body.len, etxt, sizeof etxt);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "client registration at %s answered %d %s",
               r->meta.registration_endpoint, x->status, etxt);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(x_body(x), x->body.len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "client_id");
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "client_secret");
    const cJSON *am = cJSON_GetObjectItemCaseSensitive(j, "token_endpoint_auth_method");
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0') {
        cJSON_Delete(j);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "client registration at %s returned no client_id",
               r->meta.registration_endpoint);
        return;
    }
    r->client_id = core_xstrdup(id->valuestring);
    r->client_secret =
        cJSON_IsString(sec) && sec->valuestring[0] ? core_xstrdup(sec->valuestring) : NULL;
    if (cJSON_IsString(am) && strcmp(am->valuestring, "client_secret_post") == 0)
        r->auth_method = AUTH_TEAM_POST;
    else if (cJSON_IsString(am) && strcmp(am->valuestring, "client_secret_basic") == 0)
        r->auth_method = AUTH_TEAM_BASIC;
    else if (cJSON_IsString(am) && strcmp(am->valuestring, "none") == 0)
        r->auth_method = AUTH_TEAM_NONE;
    else
        r->auth_method = pick_auth_method(r->meta.auth_methods, r->client_secret != NULL);
    if (r->client_secret == NULL)
        r->auth_method = AUTH_TEAM_NONE;
    if (sec != NULL && cJSON_IsString(sec))
        sodium_memzero(sec->valuestring, strlen(sec->valuestring));
    cJSON_Delete(j);
    struct auth_store_client c = {r->meta.issuer, r->client_id, r->client_secret, r->redirect_uri,
                                  r->auth_method};
    char msg[256];
    if (auth_store_client_put(r->o->store, &c, msg, sizeof msg) != 0)
        core_log(CORE_LOG_WARN, MOD, "%s: %s", r->name, msg);
    core_log(CORE_LOG_INFO, MOD, "%s: registered a client at %s", r->name, r->meta.issuer);
    flow_authorize(r);
}

static void flow_register(struct auth_oauth_req *r)
{
    /* A stored registration whose redirect port we can listen on again. */
    struct auth_store_client sc = {0};
    char msg[256];
    bool have_sc = false;
    if (r->cfg_client_id == NULL &&
        auth_store_client_get(r->o->store, r->meta.issuer, &sc, msg, sizeof msg) == 0)
        have_sc = true;
    int port = 0;
    if (have_sc && sc.redirect_uri != NULL) {
        struct auth_url u;
        if (auth_url_parse(sc.redirect_uri, &u) == 0) {
            port = u.port;
            auth_url_dispose(&u);
        }
    }
    int rc = listener_open(r, port);
    if (rc != 0 && port != 0) {
        have_sc = false; /* that port is taken now: register again */
        rc = listener_open(r, 0);
    }
    if (rc != 0) {
        auth_store_client_dispose(&sc);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "cannot listen on 127.0.0.1 for the redirect: %s",
               uv_strerror(rc));
        return;
    }
    char ru[64];
    snprintf(ru, sizeof ru, "http://127.0.0.1:%d%s", r->l->port, CALLBACK_PATH);
    r->redirect_uri = core_xstrdup(ru);

    if (r->cfg_client_id != NULL) {
        r->client_id = core_xstrdup(r->cfg_client_id);
        r->client_secret = dup_or_null(r->cfg_client_secret);
        r->auth_method = pick_auth_method(r->meta.auth_methods, r->client_secret != NULL);
        auth_store_client_dispose(&sc);
        flow_authorize(r);
        return;
    }
    if (r->meta.cimd && r->cfg_cimd_url != NULL) {
        r->client_id = core_xstrdup(r->cfg_cimd_url);
        r->auth_method = AUTH_TEAM_NONE;
        auth_store_client_dispose(&sc);
        flow_authorize(r);
        return;
    }
    if (have_sc && sc.redirect_uri != NULL && strcmp(sc.redirect_uri, ru) == 0) {
        r->client_id = sc.client_id;
        r->client_secret = sc.client_secret;
        r->auth_method = sc.auth_method;
        sc.client_id = NULL;
        sc.client_secret = NULL;
        auth_store_client_dispose(&sc);
        flow_authorize(r);
        return;
    }
    auth_store_client_dispose(&sc);
    if (r->meta.registration_endpoint == NULL) {
        finish(r, AUTH_OAUTH_EFAILED, NULL,
               "authorization server %s offers no client registration: set client_id (and "
               "client_secret) for server %s%s",
               r->meta.issuer, r->name,
               r->meta.cimd ? ", or client_metadata_url (it accepts Client ID Metadata "
                              "Documents)"
                            : "");
        return;
    }
    set_state(r, RQ_REGISTER);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "client_name", "agentgate");
    cJSON *uris = cJSON_AddArrayToObject(j, "redirect_uris");
    cJSON_AddItemToArray(uris, cJSON_CreateString(r->redirect_uri));
    cJSON *gt = cJSON_AddArrayToObject(j, "grant_types");
    cJSON_AddItemToArray(gt, cJSON_CreateString("authorization_code"));
    cJSON_AddItemToArray(gt, cJSON_CreateString("refresh_token"));
    cJSON *rt = cJSON_AddArrayToObject(j, "response_types");
    cJSON_AddItemToArray(rt, cJSON_CreateString("code"));
    cJSON_AddStringToObject(j, "token_endpoint_auth_method", "none");
    cJSON_AddStringToObject(j, "application_type", "native");
    if (r->scope != NULL)
        cJSON_AddStringToObject(j, "scope", r->scope);
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    static const char *const hdrs[] = {"Content-Type: application/json", "Accept: application/json",
                                       NULL};
    rc = x_start(&r->x, "POST", r->meta.registration_endpoint, hdrs, body, strlen(body), r->ca_file,
                 on_register_done);
    cJSON_free(body);
    if (rc != 0)
        http_failed(r, "cannot reach", r->meta.registration_endpoint, rc, NULL);
}

/* ---- authorization ---- */

static void on_headless_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    if (x->status == 0) {
        http_failed(r, "cannot reach", r->meta.authorization_endpoint, err, why);
        return;
    }
    const char *loc = x->location;
    size_t rl = strlen(r->redirect_uri);
    if (x->status < 300 || x->status > 399 || loc == NULL ||
        strncmp(loc, r->redirect_uri, rl) != 0 || (loc[rl] != '?' && loc[rl] != '\0')) {
        finish(r, AUTH_OAUTH_EFAILED, NULL,
               "the authorization endpoint answered %d without redirecting back at once "
               "(it needs a user: run `agentgate login %s` without headless mode)",
               x->status, r->name);
        return;
    }
    char *query = core_xstrdup(loc[rl] == '?' ? loc + rl + 1 : "");
    char page[256];
    int rc = take_redirect(r, query, page, sizeof page);
    wipe_free(query);
    if (rc == 1)
        finish(r, AUTH_OAUTH_EFAILED, NULL, "the redirect's state does not match");
    else if (rc == 0)
        flow_token(r);
}

static void flow_authorize(struct auth_oauth_req *r)
{
    set_state(r, RQ_AUTHORIZE);
    char challenge[AUTH_PKCE_LEN + 1];
    auth_pkce_new(r->verifier, challenge);
    auth_random_hex(r->state_param, 16);
    struct core_buf u;
    core_buf_init(&u, 0);
    struct core_buf q;
    core_buf_init(&q, 0);
    int rc = auth_form_add(&q, "response_type", "code");
    if (rc == 0)
        rc = auth_form_add(&q, "client_id", r->client_id);
    if (rc == 0)
        rc = auth_form_add(&q, "redirect_uri", r->redirect_uri);
    if (rc == 0)
        rc = auth_form_add(&q, "code_challenge", challenge);
    if (rc == 0)
        rc = auth_form_add(&q, "code_challenge_method", "S256");
    if (rc == 0)
        rc = auth_form_add(&q, "state", r->state_param);
    if (rc == 0)
        rc = auth_form_add(&q, "resource", r->resource_param);
    if (rc == 0 && r->scope != NULL)
        rc = auth_form_add(&q, "scope", r->scope);
    const char *ep = r->meta.authorization_endpoint;
    if (rc == 0)
        rc = core_buf_appendf(&u, "%s%c%s", ep, strchr(ep, '?') != NULL ? '&' : '?', q.data);
    core_buf_dispose(&q);
    (void)rc; /* no limits */
    core_log(CORE_LOG_INFO, MOD, "%s: authorizing at %s%s%s", r->name, r->meta.issuer,
             r->scope != NULL ? " for scope " : "", r->scope != NULL ? r->scope : "");
    if (r->headless) {
        rc = x_start(&r->x, "GET", u.data, NULL, NULL, 0, r->ca_file, on_headless_done);
        if (rc != 0)
            http_failed(r, "cannot reach", ep, rc, NULL);
    } else if (r->on_url != NULL) {
        r->on_url(r->url_ctx, u.data);
    }
    core_buf_dispose(&u);
}

/* ---- the token request ---- */

static void on_token_done(struct xfer *x, int err, const char *why)
{
    struct auth_oauth_req *r = container_of(x, struct auth_oauth_req, x);
    if (x->status == 0) {
        http_failed(r, "token endpoint", r->meta.token_endpoint, err, why);
        return;
    }
    char msg[WHY_MAX];
    if (x->status != 200) {
        char etxt[256];
        auth_proto_error_text(x_body(x), x->body.len, etxt, sizeof etxt);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "token endpoint %s answered %d%s%s",
               r->meta.token_endpoint, x->status, etxt[0] ? ": " : "", etxt);
        return;
    }
    struct auth_tokens t;
    if (auth_tokens_parse(x_body(x), x->body.len, &t, msg, sizeof msg) != 0) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "%s", msg);
        return;
    }
    struct auth_store_tokens tmpl = {
        .issuer = r->meta.issuer,
        .resource = r->resource,
        .server = r->name,
        .scope = r->scope,
        .token_endpoint = r->meta.token_endpoint,
        .resource_param = r->resource_param,
        .client_id = r->client_id,
        .client_secret = r->client_secret,
        .auth_method = r->auth_method,
    };
    if (store_tokens(r->o, &tmpl, &t, msg, sizeof msg) != 0) {
        auth_tokens_dispose(&t);
        finish(r, AUTH_OAUTH_EFAILED, NULL, "%s", msg);
        return;
    }
    core_log(CORE_LOG_INFO, MOD, "%s: %s from %s", r->name,
             r->cfg_cc ? "client_credentials token" : "logged in", r->meta.issuer);
    finish(r, 0, t.access_token, NULL);
    auth_tokens_dispose(&t);
}

static void flow_token(struct auth_oauth_req *r)
{
    set_state(r, RQ_TOKEN);
    struct core_buf form;
    core_buf_init(&form, 0);
    char basic[1024];
    const char *headers[4];
    int rc;
    if (r->cfg_cc) {
        rc = auth_form_add(&form, "grant_type", "client_credentials");
        if (rc == 0 && r->scope != NULL)
            rc = auth_form_add(&form, "scope", r->scope);
    } else {
        rc = auth_form_add(&form, "grant_type", "authorization_code");
        if (rc == 0)
            rc = auth_form_add(&form, "code", r->code);
        if (rc == 0)
            rc = auth_form_add(&form, "redirect_uri", r->redirect_uri);
        if (rc == 0)
            rc = auth_form_add(&form, "code_verifier", r->verifier);
    }
    if (rc == 0)
        rc = auth_form_add(&form, "resource", r->resource_param);
    (void)rc;
    token_request_headers(r->client_id, r->client_secret, r->auth_method, basic, sizeof basic,
                          headers, &form);
    rc = x_start(&r->x, "POST", r->meta.token_endpoint, headers, form.data, form.len, r->ca_file,
                 on_token_done);
    sodium_memzero(basic, sizeof basic);
    if (form.data != NULL)
        sodium_memzero(form.data, form.len);
    core_buf_dispose(&form);
    if (rc != 0)
        http_failed(r, "cannot reach", r->meta.token_endpoint, rc, NULL);
}

/* ---- the public API ---- */

void auth_oauth_server_from_config(const struct core_server_cfg *cfg, struct auth_oauth_server *out)
{
    memset(out, 0, sizeof *out);
    out->name = cfg->name;
    out->url = cfg->url;
    out->client_id = cfg->client_id;
    out->client_secret = cfg->client_secret;
    out->client_metadata_url = cfg->client_metadata_url;
    out->scopes = cfg->scopes;
    out->client_credentials = cfg->oauth_client_credentials;
    out->ca_file = cfg->ca_file;
}

int auth_oauth_new(uv_loop_t *loop, struct tp_hclient *hc, const char *state_dir,
                   struct auth_oauth **out, char *err, size_t errlen)
{
    struct auth_store *st;
    int rc = auth_store_open(state_dir, &st, err, errlen);
    if (rc != 0)
        return CORE_EINVAL;
    struct auth_oauth *o = core_xcalloc(1, sizeof *o);
    o->loop = loop;
    o->hc = hc;
    o->store = st;
    uv_timer_init(loop, &o->tick);
    *out = o;
    return 0;
}

static void on_tick_closed(uv_handle_t *h)
{
    struct auth_oauth *o = container_of((uv_timer_t *)h, struct auth_oauth, tick);
    void (*done)(void *) = o->done;
    void *ctx = o->done_ctx;
    auth_store_free(o->store);
    while (o->stepups != NULL) {
        struct stepup *s = o->stepups;
        o->stepups = s->next;
        core_free(s->resource);
        core_free(s);
    }
    core_free(o);
    if (done != NULL)
        done(ctx);
}

static void maybe_free_oauth(struct auth_oauth *o)
{
    if (!o->closing || o->tick_closed || o->reqs != NULL || o->deferred != NULL ||
        o->flights != NULL || o->listeners > 0)
        return;
    o->tick_closed = true;
    uv_close((uv_handle_t *)&o->tick, on_tick_closed);
}

void auth_oauth_close(struct auth_oauth *o, void (*done)(void *ctx), void *ctx)
{
    if (o == NULL || o->closing)
        return;
    o->closing = true;
    o->done = done;
    o->done_ctx = ctx;
    while (o->flights != NULL)
        flight_land(o->flights, AUTH_OAUTH_ECANCELED, NULL, "closing");
    for (struct auth_oauth_req *r = o->reqs; r != NULL; r = r->next)
        finish(r, AUTH_OAUTH_ECANCELED, NULL, "closing");
    if (o->deferred == NULL)
        maybe_free_oauth(o);
}

void auth_oauth_set_headless(struct auth_oauth *o, bool on)
{
    o->headless = on;
}

void auth_oauth_reload(struct auth_oauth *o)
{
    auth_store_invalidate(o->store);
}

static struct auth_oauth_req *req_new(struct auth_oauth *o, const struct auth_oauth_server *srv,
                                      auth_oauth_token_cb cb, void *ctx)
{
    char *canon = auth_url_canonical(srv->url);
    if (canon == NULL)
        return NULL;
    struct auth_oauth_req *r = core_xcalloc(1, sizeof *r);
    r->o = o;
    r->cb = cb;
    r->ctx = ctx;
    r->name = core_xstrdup(srv->name != NULL ? srv->name : "server");
    r->url = core_xstrdup(srv->url);
    r->resource = canon;
    r->cfg_client_id = dup_or_null(srv->client_id);
    r->cfg_client_secret = dup_or_null(srv->client_secret);
    r->cfg_cimd_url = dup_or_null(srv->client_metadata_url);
    r->cfg_scopes = dup_or_null(srv->scopes);
    r->cfg_cc = srv->client_credentials;
    r->ca_file = dup_or_null(srv->ca_file);
    r->timeout_ms = LOGIN_TIMEOUT_MS;
    r->x.o = o;
    core_buf_init(&r->x.body, AUTH_PROTO_BODY_MAX);
    r->next = o->reqs;
    if (o->reqs != NULL)
        o->reqs->prev = r;
    o->reqs = r;
    return r;
}

static void take_challenge(struct auth_oauth_req *r, const struct auth_oauth_challenge *ch)
{
    if (ch == NULL || ch->status == 0)
        return;
    r->ch_status = ch->status;
    if (ch->www_authenticate != NULL &&
        auth_wwwauth_parse(ch->www_authenticate, strlen(ch->www_authenticate), &r->bearer) == 0)
        r->have_bearer = true;
}

/* True (and counted) when another step-up for resource is allowed now. */
static bool stepup_allowed(struct auth_oauth *o, const char *resource)
{
    struct stepup *s = o->stepups;
    while (s != NULL && strcmp(s->resource, resource) != 0)
        s = s->next;
    if (s == NULL) {
        s = core_xcalloc(1, sizeof *s);
        s->resource = core_xstrdup(resource);
        s->next = o->stepups;
        o->stepups = s;
    }
    int64_t now = now_s();
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (now - s->at[i] < STEPUP_WINDOW_S)
            s->at[k++] = s->at[i];
    }
    s->n = k;
    if (s->n >= STEPUP_MAX)
        return false;
    s->at[s->n++] = now;
    return true;
}

static void get_token_start(struct auth_oauth_req *r, const struct auth_oauth_challenge *ch)
{
    struct auth_oauth *o = r->o;
    struct auth_store_tokens tok;
    char msg[WHY_MAX];
    int rc = auth_store_tokens_get(o->store, r->resource, &tok, msg, sizeof msg);
    if (rc != 0 && rc != CORE_ENOTFOUND) {
        finish(r, AUTH_OAUTH_EFAILED, NULL, "%s", msg);
        return;
    }
    bool have = rc == 0;
    bool usable = have && tok.access_token != NULL;
    int status = ch != NULL ? ch->status : 0;
    if (have)
        r->granted_scope = dup_or_null(tok.scope);

    if (status == 403) {
        if (!r->have_bearer || r->bearer.error == NULL ||
            strcmp(r->bearer.error, "insufficient_scope") != 0) {
            finish(r, AUTH_OAUTH_EFAILED, NULL, "the server refused access (403)%s%s",
                   r->have_bearer && r->bearer.error ? ": " : "",
                   r->have_bearer && r->bearer.error ? r->bearer.error : "");
            goto out;
        }
        r->stepup = true;
        if (!r->headless) {
            finish(r, AUTH_OAUTH_ENEEDLOGIN, NULL,
                   "server needs more scope (%.120s): run `agentgate login %s`",
                   r->bearer.scope != NULL ? r->bearer.scope : "unspecified", r->name);
            goto out;
        }
        if (!stepup_allowed(o, r->resource)) {
            finish(r, AUTH_OAUTH_EFAILED, NULL,
                   "gave up after %d scope step-ups in %d minutes for this server", STEPUP_MAX,
                   STEPUP_WINDOW_S / 60);
            goto out;
        }
        flow_begin(r);
        goto out;
    }
    if (usable && status == 0) {
        if (tok.expires_at == 0 || tok.expires_at - now_s() > EXPIRY_MARGIN_S) {
            finish(r, 0, tok.access_token, NULL);
            goto out;
        }
    }
    if (usable && status == 401 && ch->rejected != NULL) {
        /* Someone renewed the token since this one was sent: use theirs. */
        const char *rej = ch->rejected;
        if (strncasecmp(rej, "Bearer ", 7) == 0)
            rej += 7;
        if (strcmp(rej, tok.access_token) != 0 &&
            (tok.expires_at == 0 || tok.expires_at - now_s() > EXPIRY_MARGIN_S)) {
            finish(r, 0, tok.access_token, NULL);
            goto out;
        }
    }
    if (usable && tok.refresh_token != NULL && tok.token_endpoint != NULL) {
        join_flight(r, &tok, false);
        goto out;
    }
    if (have && r->cfg_cc && tok.token_endpoint != NULL && r->cfg_client_id != NULL &&
        r->cfg_client_secret != NULL) {
        /* A new client_credentials token with what the last grant used. */
        wipe_free(tok.client_secret);
        tok.client_secret = core_xstrdup(r->cfg_client_secret);
        core_free(tok.client_id);
        tok.client_id = core_xstrdup(r->cfg_client_id);
        join_flight(r, &tok, true);
        goto out;
    }
    if (r->cfg_cc || r->headless) {
        flow_begin(r);
        goto out;
    }
    if (have && tok.reason != NULL)
        finish(r, AUTH_OAUTH_ENEEDLOGIN, NULL, "%s", tok.reason);
    else if (usable)
        finish(r, AUTH_OAUTH_ENEEDLOGIN, NULL,
               status == 401 ? "the server refused the stored token and there is no refresh "
                               "token: run `agentgate login %s`"
                             : "the stored token has expired: run `agentgate login %s`",
               r->name);
    else
        finish(r, AUTH_OAUTH_ENEEDLOGIN, NULL, "not logged in: run `agentgate login %s`", r->name);
out:
    if (have)
        auth_store_tokens_dispose(&tok);
}

int auth_oauth_get_token(struct auth_oauth *o, const struct auth_oauth_server *srv,
                         const struct auth_oauth_challenge *ch, auth_oauth_token_cb cb, void *ctx,
                         struct auth_oauth_req **out)
{
    if (o->closing)
        return CORE_ECLOSED;
    struct auth_oauth_req *r = req_new(o, srv, cb, ctx);
    if (r == NULL)
        return CORE_EINVAL;
    r->headless = o->headless;
    take_challenge(r, ch);
    if (out != NULL)
        *out = r;
    get_token_start(r, ch);
    return 0;
}

int auth_oauth_login(struct auth_oauth *o, const struct auth_oauth_server *srv,
                     const struct auth_oauth_login_opts *opts, auth_oauth_token_cb cb, void *ctx,
                     struct auth_oauth_req **out)
{
    if (o->closing)
        return CORE_ECLOSED;
    struct auth_oauth_req *r = req_new(o, srv, cb, ctx);
    if (r == NULL)
        return CORE_EINVAL;
    r->login = true;
    if (opts != NULL) {
        r->headless = opts->headless;
        if (opts->timeout_ms > 0)
            r->timeout_ms = opts->timeout_ms;
        r->on_url = opts->on_url;
        r->url_ctx = opts->url_ctx;
        take_challenge(r, opts->ch);
    }
    struct auth_store_tokens tok;
    char msg[WHY_MAX];
    if (auth_store_tokens_get(o->store, r->resource, &tok, msg, sizeof msg) == 0) {
        r->granted_scope = dup_or_null(tok.scope);
        auth_store_tokens_dispose(&tok);
    }
    if (out != NULL)
        *out = r;
    flow_begin(r);
    return 0;
}

void auth_oauth_cancel(struct auth_oauth_req *r)
{
    if (r == NULL)
        return;
    r->canceled = true;
    if (r->state == RQ_DONE)
        return; /* the tick frees it without calling back */
    set_state(r, RQ_DONE);
    unqueue(r->o, &r->d);
    struct auth_oauth *o = r->o;
    req_free(r);
    maybe_free_oauth(o);
}

int auth_oauth_logout(struct auth_oauth *o, const char *server_url, char *err, size_t errlen)
{
    char *canon = auth_url_canonical(server_url);
    if (canon == NULL) {
        core_set_err(err, errlen, "%s: not an http(s) URL", server_url);
        return CORE_EINVAL;
    }
    int rc = auth_store_tokens_forget(o->store, canon, err, errlen);
    core_free(canon);
    return rc;
}

bool auth_oauth_has_token(struct auth_oauth *o, const char *server_url)
{
    char *canon = auth_url_canonical(server_url);
    if (canon == NULL)
        return false;
    struct auth_store_tokens tok = {0};
    char msg[64];
    bool has = auth_store_tokens_get(o->store, canon, &tok, msg, sizeof msg) == 0 &&
               tok.access_token != NULL;
    if (has || tok.issuer != NULL)
        auth_store_tokens_dispose(&tok);
    core_free(canon);
    return has;
}
