/* Server-side TLS over caller-owned buffers (mbedTLS 2.28).
 *
 * mbedTLS never sees a socket: its receive callback takes bytes from `in` (filled by the
 * caller's read callback) and its send callback appends to `out` (written by the caller). An
 * empty `in` is MBEDTLS_ERR_SSL_WANT_READ, so the handshake and record decryption simply stop
 * and go on when more ciphertext has arrived. `out` has no limit of its own: the caller drains
 * it after every call, and it only ever holds what one call produced. */
#include "transports/tls.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

#define MOD "tls"
#define IN_CAP (128u * 1024) /* buffered ciphertext; a record is at most ~17 KiB */

struct tp_tls_config {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

struct tp_tls_conn {
    mbedtls_ssl_context ssl;
    struct core_buf in; /* received ciphertext; bytes before in_pos are consumed */
    size_t in_pos;
    struct core_buf out; /* ciphertext to send */
    bool failed;         /* a fatal error was seen; every later call fails */
    bool notified;       /* close_notify was queued */
    char name[16];
};

/* Only advertised, never required: a client without ALPN is served as well. */
static const char *alpn_list[] = {"http/1.1", NULL};

static void describe(int rc, char *buf, size_t len)
{
    mbedtls_strerror(rc, buf, len);
}

static void set_err(char *err, size_t errlen, const char *what, const char *path, int rc)
{
    char msg[160];
    describe(rc, msg, sizeof msg);
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s %s: %s", what, path, msg);
}

int tp_tls_config_new(const char *cert_path, const char *key_path, struct tp_tls_config **out,
                      char *err, size_t errlen)
{
    static const unsigned char pers[] = "agentgate tls";
    if (cert_path == NULL || key_path == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "TLS needs both a certificate and a key");
        return CORE_EINVAL;
    }
    struct tp_tls_config *cfg = core_xcalloc(1, sizeof *cfg);
    mbedtls_ssl_config_init(&cfg->conf);
    mbedtls_x509_crt_init(&cfg->chain);
    mbedtls_pk_init(&cfg->key);
    mbedtls_entropy_init(&cfg->entropy);
    mbedtls_ctr_drbg_init(&cfg->drbg);

    int rc = mbedtls_x509_crt_parse_file(&cfg->chain, cert_path);
    if (rc != 0) {
        /* A positive result counts certificates that failed to parse. */
        set_err(err, errlen, "cannot load the certificate", cert_path,
                rc > 0 ? MBEDTLS_ERR_X509_INVALID_FORMAT : rc);
        goto fail;
    }
    rc = mbedtls_pk_parse_keyfile(&cfg->key, key_path, NULL);
    if (rc != 0) {
        set_err(err, errlen, "cannot load the private key", key_path, rc);
        goto fail;
    }
    rc = mbedtls_pk_check_pair(&cfg->chain.pk, &cfg->key);
    if (rc != 0) {
        set_err(err, errlen, "the key does not match the certificate", cert_path, rc);
        goto fail;
    }
    rc = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy, pers,
                               sizeof pers - 1);
    if (rc != 0) {
        set_err(err, errlen, "cannot seed the random generator for", cert_path, rc);
        goto fail;
    }
    rc = mbedtls_ssl_config_defaults(&cfg->conf, MBEDTLS_SSL_IS_SERVER,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0) {
        mbedtls_ssl_conf_rng(&cfg->conf, mbedtls_ctr_drbg_random, &cfg->drbg);
        mbedtls_ssl_conf_min_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_NONE);
        rc = mbedtls_ssl_conf_alpn_protocols(&cfg->conf, alpn_list);
    }
    if (rc == 0)
        rc = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->chain, &cfg->key);
    if (rc != 0) {
        set_err(err, errlen, "cannot configure TLS with", cert_path, rc);
        goto fail;
    }
    *out = cfg;
    return 0;
fail:
    tp_tls_config_free(cfg);
    return CORE_EINVAL;
}

void tp_tls_config_free(struct tp_tls_config *cfg)
{
    if (cfg == NULL)
        return;
    mbedtls_ssl_config_free(&cfg->conf);
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    mbedtls_pk_free(&cfg->key);
    mbedtls_x509_crt_free(&cfg->chain);
    core_free(cfg);
}

/* ---- BIO callbacks: our buffers, never a socket ------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
    struct tp_tls_conn *t = ctx;
    if (core_buf_append(&t->out, p, n) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED; /* unreachable: out has no limit */
    return (int)n;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
    struct tp_tls_conn *t = ctx;
    size_t avail = t->in.len - t->in_pos;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > avail)
        n = avail;
    memcpy(p, t->in.data + t->in_pos, n);
    t->in_pos += n;
    if (t->in_pos == t->in.len) {
        t->in_pos = 0;
        core_buf_reset(&t->in);
    }
    return (int)n;
}

/* ---- connections -------------------------------------------------------------------------- */

int tp_tls_conn_new(struct tp_tls_config *cfg, const char *name, struct tp_tls_conn **out)
{
    struct tp_tls_conn *t = core_xcalloc(1, sizeof *t);
    mbedtls_ssl_init(&t->ssl);
    core_buf_init(&t->in, IN_CAP);
    core_buf_init(&t->out, 0);
    snprintf(t->name, sizeof t->name, "%s", name != NULL ? name : "?");
    int rc = mbedtls_ssl_setup(&t->ssl, &cfg->conf);
    if (rc != 0) {
        char msg[160];
        describe(rc, msg, sizeof msg);
        core_log(CORE_LOG_WARN, MOD, "%s: TLS setup: %s", t->name, msg);
        tp_tls_conn_free(t);
        return CORE_EINVAL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    *out = t;
    return 0;
}

void tp_tls_conn_free(struct tp_tls_conn *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    core_buf_dispose(&t->in);
    core_buf_dispose(&t->out);
    core_free(t);
}

int tp_tls_conn_in_space(struct tp_tls_conn *t, size_t want, char **p, size_t *n)
{
    if (t->in_pos > 0) {
        core_buf_consume(&t->in, t->in_pos);
        t->in_pos = 0;
    }
    size_t room = IN_CAP - t->in.len;
    if (want > room)
        want = room;
    if (want == 0 || core_buf_reserve(&t->in, want) != 0)
        return CORE_ETOOBIG;
    *p = t->in.data + t->in.len;
    *n = want;
    return 0;
}

void tp_tls_conn_in_commit(struct tp_tls_conn *t, size_t n)
{
    t->in.len += n;
    t->in.data[t->in.len] = '\0';
}

void tp_tls_conn_in_discard(struct tp_tls_conn *t)
{
    t->in_pos = 0;
    core_buf_reset(&t->in);
}

static int fail(struct tp_tls_conn *t, const char *what, int rc)
{
    char msg[160];
    describe(rc, msg, sizeof msg);
    core_log(CORE_LOG_DEBUG, MOD, "%s: %s: %s", t->name, what, msg);
    t->failed = true;
    return CORE_EPROTO;
}

int tp_tls_conn_read(struct tp_tls_conn *t, char *dst, size_t cap)
{
    if (t->failed)
        return CORE_EPROTO;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    bool was_handshaking = t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER;
    int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)dst, cap);
    if (was_handshaking && t->ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER)
        core_log(CORE_LOG_DEBUG, MOD, "%s: handshake done: %s, %s", t->name,
                 mbedtls_ssl_get_version(&t->ssl), mbedtls_ssl_get_ciphersuite(&t->ssl));
    if (rc > 0)
        return rc;
    switch (rc) {
    case MBEDTLS_ERR_SSL_WANT_READ:
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        return 0;
    case 0:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        core_log(CORE_LOG_DEBUG, MOD, "%s: peer sent close_notify", t->name);
        return CORE_ECLOSED;
    default:
        return fail(t, was_handshaking ? "handshake failed" : "bad record", rc);
    }
}

bool tp_tls_conn_has_input(const struct tp_tls_conn *t)
{
    return t->in.len > t->in_pos || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0;
}

int tp_tls_conn_write(struct tp_tls_conn *t, const char *data, size_t n)
{
    if (t->failed)
        return CORE_EPROTO;
    while (n > 0) {
        /* One call writes at most one record; the send callback never blocks. */
        int rc = mbedtls_ssl_write(&t->ssl, (const unsigned char *)data, n);
        if (rc < 0)
            return fail(t, "write", rc);
        data += rc;
        n -= (size_t)rc;
    }
    return 0;
}

void tp_tls_conn_close_notify(struct tp_tls_conn *t)
{
    if (t->failed || t->notified || t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER)
        return;
    t->notified = true;
    /* Only the alert is written, into our buffer: it cannot block. */
    int rc = mbedtls_ssl_close_notify(&t->ssl);
    if (rc != 0)
        (void)fail(t, "close_notify", rc);
}

size_t tp_tls_conn_out_len(const struct tp_tls_conn *t)
{
    return t->out.len;
}

size_t tp_tls_conn_out_take(struct tp_tls_conn *t, char *dst, size_t cap)
{
    size_t n = t->out.len < cap ? t->out.len : cap;
    if (n == 0)
        return 0;
    memcpy(dst, t->out.data, n);
    core_buf_consume(&t->out, n);
    return n;
}
