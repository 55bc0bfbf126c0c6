/* Tests for HTTPS in transports/http.c (through transports/tls.c): the server runs on a uv loop
 * in the test's main thread, and a client thread speaks TLS with mbedTLS over a blocking socket
 * (receive timeouts, no certificate verification). The certificate and key are made at test
 * time with mbedTLS into a temporary directory. */
#include "transports/http.h"
#include "transports/tls.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

/* ---- certificate -------------------------------------------------------------------------- */

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static void write_file(const char *path, const unsigned char *data)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs((const char *)data, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* Writes a new P-256 key to key_path and, if cert_path is not NULL, a self-signed certificate
 * for CN=localhost made with it. */
static void make_cert(const char *cert_path, const char *key_path)
{
    static unsigned char pem[8192];
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    ck_assert_int_eq(mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    ck_assert_int_eq(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key),
                                         mbedtls_ctr_drbg_random, &drbg),
                     0);
    ck_assert_int_eq(mbedtls_pk_write_key_pem(&key, pem, sizeof pem), 0);
    write_file(key_path, pem);
    if (cert_path != NULL) {
        mbedtls_x509write_cert crt;
        mbedtls_mpi serial;
        mbedtls_x509write_crt_init(&crt);
        mbedtls_mpi_init(&serial);
        ck_assert_int_eq(mbedtls_mpi_lset(&serial, 1), 0);
        mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
        mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
        mbedtls_x509write_crt_set_subject_key(&crt, &key);
        mbedtls_x509write_crt_set_issuer_key(&crt, &key);
        ck_assert_int_eq(mbedtls_x509write_crt_set_subject_name(&crt, "CN=localhost"), 0);
        ck_assert_int_eq(mbedtls_x509write_crt_set_issuer_name(&crt, "CN=localhost"), 0);
        ck_assert_int_eq(mbedtls_x509write_crt_set_serial(&crt, &serial), 0);
        ck_assert_int_eq(
            mbedtls_x509write_crt_set_validity(&crt, "20200101000000", "20991231235959"), 0);
        ck_assert_int_eq(mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1), 0);
        ck_assert_int_eq(
            mbedtls_x509write_crt_pem(&crt, pem, sizeof pem, mbedtls_ctr_drbg_random, &drbg), 0);
        write_file(cert_path, pem);
        mbedtls_mpi_free(&serial);
        mbedtls_x509write_crt_free(&crt);
    }
    mbedtls_pk_free(&key);
}

/* ---- server side (loop thread) ------------------------------------------------------------ */

struct harness {
    uv_loop_t loop;
    struct tp_http_server *srv;
    uv_async_t async; /* the client thread is done */
    uv_timer_t watchdog;
    uv_timer_t work; /* stream chunks */
    uv_timer_t slow; /* the deferred answer to /slow */
    struct tp_http_req *held;
    pthread_t thread;
    void (*client)(void);
    int port;
    char dir[64];
    char cert[128];
    char key[128];
    char sock_path[100];
    atomic_int n_req;
    struct tp_http_req *streaming;
    int stream_left;
    bool server_done;
};

static struct harness H;
static long live_at_start;

/* Answers /stream with a chunked body of five pieces from a timer; anything else with
 * "METHOD PATH body(N)=<body>" (plain or TLS alike). */
static void on_stream_tick(uv_timer_t *t)
{
    char piece[32];
    int n = snprintf(piece, sizeof piece, "piece %d;", 5 - H.stream_left);
    uv_buf_t b = uv_buf_init(piece, (unsigned)n);
    ck_assert_int_eq(tp_http_stream_write(H.streaming, &b, 1), 0);
    if (--H.stream_left == 0) {
        tp_http_stream_end(H.streaming);
        H.streaming = NULL;
        uv_timer_stop(t);
    }
}

static void on_slow(uv_timer_t *t)
{
    GW_UNUSED(t);
    ck_assert_int_eq(tp_http_respond_simple(H.held, 200, "text/plain", "slow"), 0);
    H.held = NULL;
}

static void on_request(void *ctx, struct tp_http_req *req)
{
    ck_assert_ptr_eq(ctx, &H);
    atomic_fetch_add(&H.n_req, 1);
    if (strcmp(tp_http_req_path(req), "/stream") == 0) {
        static const struct tp_http_header h = {"Content-Type", "text/event-stream"};
        ck_assert_int_eq(tp_http_stream_start(req, 200, &h, 1), 0);
        H.streaming = req;
        H.stream_left = 5;
        ck_assert_int_eq(uv_timer_start(&H.work, on_stream_tick, 5, 5), 0);
        return;
    }
    if (strcmp(tp_http_req_path(req), "/slow") == 0) {
        /* Answered 100 ms later: the input behind it piles up meanwhile. */
        H.held = req;
        ck_assert_int_eq(uv_timer_start(&H.slow, on_slow, 100, 0), 0);
        return;
    }
    size_t blen;
    const char *body = tp_http_req_body(req, &blen);
    if (strcmp(tp_http_req_path(req), "/len") == 0) {
        char text[32];
        snprintf(text, sizeof text, "%zu", blen);
        ck_assert_int_eq(tp_http_respond_simple(req, 200, "text/plain", text), 0);
        return;
    }
    if (strcmp(tp_http_req_path(req), "/size") == 0) {
        /* Answers with the body's length and a big body of its own (several TLS records). */
        char *big = core_xmalloc(blen + 1);
        for (size_t i = 0; i < blen; i++)
            big[i] = (char)('a' + i % 26);
        uv_buf_t b = uv_buf_init(big, (unsigned)blen);
        ck_assert_int_eq(tp_http_respond(req, 200, NULL, 0, &b, 1), 0);
        core_free(big);
        return;
    }
    struct core_buf b;
    core_buf_init(&b, 0);
    ck_assert_int_eq(core_buf_appendf(&b, "%s %s body(%zu)=<", tp_http_req_method(req),
                                      tp_http_req_path(req), blen),
                     0);
    ck_assert_int_eq(core_buf_append(&b, body, blen), 0);
    ck_assert_int_eq(core_buf_append_str(&b, ">"), 0);
    struct tp_http_header h = {"Content-Type", "text/plain"};
    uv_buf_t ub = uv_buf_init(b.data, (unsigned)b.len);
    ck_assert_int_eq(tp_http_respond(req, 200, &h, 1, &ub, 1), 0);
    core_buf_dispose(&b);
}

static void on_srv_done(void *ctx)
{
    ck_assert_ptr_eq(ctx, &H);
    H.server_done = true;
}

static void on_client_done(uv_async_t *a)
{
    GW_UNUSED(a);
    tp_http_server_close(H.srv, on_srv_done, &H);
    H.srv = NULL;
    uv_close((uv_handle_t *)&H.async, NULL);
    uv_close((uv_handle_t *)&H.watchdog, NULL);
    uv_close((uv_handle_t *)&H.work, NULL);
    uv_close((uv_handle_t *)&H.slow, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    GW_UNUSED(t);
    ck_abort_msg("watchdog: the test did not finish in time");
}

static void *client_main(void *arg)
{
    GW_UNUSED(arg);
    H.client();
    uv_async_send(&H.async);
    return NULL;
}

static void setup(void)
{
    live_at_start = core_alloc_live();
    memset(&H, 0, sizeof H);
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    snprintf(H.dir, sizeof H.dir, "/tmp/test_tls.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(H.dir));
    snprintf(H.cert, sizeof H.cert, "%s/cert.pem", H.dir);
    snprintf(H.key, sizeof H.key, "%s/key.pem", H.dir);
    snprintf(H.sock_path, sizeof H.sock_path, "%s/s.sock", H.dir);
    make_cert(H.cert, H.key);
}

static void teardown(void)
{
    unlink(H.cert);
    unlink(H.key);
    unlink(H.sock_path);
    rmdir(H.dir);
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

/* Starts a TLS server on 127.0.0.1:0 (and a plain Unix socket), runs client in a thread, and
 * closes everything once it returns. */
static void run(void (*client)(void))
{
    char err[256] = "";
    struct tp_http_limits lim = {.idle_ms = 10000};
    H.srv = tp_http_server_new(&H.loop, &lim, on_request, &H);
    ck_assert_int_eq(tp_http_server_set_tls(H.srv, H.cert, H.key, err, sizeof err), 0);
    ck_assert_int_eq(tp_http_server_listen_tcp(H.srv, "127.0.0.1", 0), 0);
    ck_assert_int_eq(tp_http_server_listen_unix(H.srv, H.sock_path), 0);
    H.port = tp_http_server_port(H.srv);
    ck_assert_int_gt(H.port, 0);
    H.client = client;
    ck_assert_int_eq(uv_async_init(&H.loop, &H.async, on_client_done), 0);
    ck_assert_int_eq(uv_timer_init(&H.loop, &H.watchdog), 0);
    ck_assert_int_eq(uv_timer_init(&H.loop, &H.work), 0);
    ck_assert_int_eq(uv_timer_init(&H.loop, &H.slow), 0);
    ck_assert_int_eq(uv_timer_start(&H.watchdog, on_watchdog, 20000, 0), 0);
    ck_assert_int_eq(pthread_create(&H.thread, NULL, client_main, NULL), 0);
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(pthread_join(H.thread, NULL), 0);
    ck_assert(H.server_done);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
}

/* ---- client side (client thread) ---------------------------------------------------------- */

struct tcl {
    mbedtls_net_context net;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    char buf[1 << 20];
    size_t len; /* bytes in buf not yet taken by a response */
};

static struct tcl *tcl_connect(void)
{
    struct tcl *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    char port[16];
    snprintf(port, sizeof port, "%d", H.port);
    mbedtls_net_init(&c->net);
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_ssl_init(&c->ssl);
    ck_assert_int_eq(mbedtls_net_connect(&c->net, "127.0.0.1", port, MBEDTLS_NET_PROTO_TCP), 0);
    ck_assert_int_eq(mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_read_timeout(&c->conf, 5000);
    ck_assert_int_eq(mbedtls_ssl_setup(&c->ssl, &c->conf), 0);
    ck_assert_int_eq(mbedtls_ssl_set_hostname(&c->ssl, "localhost"), 0);
    mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, NULL, mbedtls_net_recv_timeout);
    int rc = mbedtls_ssl_handshake(&c->ssl);
    ck_assert_msg(rc == 0, "handshake: -0x%04x", (unsigned)-rc);
    return c;
}

static void tcl_close(struct tcl *c)
{
    mbedtls_ssl_free(&c->ssl);
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_net_free(&c->net);
    free(c);
}

static void tcl_send(struct tcl *c, const char *s, size_t n)
{
    while (n > 0) {
        int rc = mbedtls_ssl_write(&c->ssl, (const unsigned char *)s, n);
        ck_assert_msg(rc > 0, "ssl_write: -0x%04x", (unsigned)-rc);
        s += rc;
        n -= (size_t)rc;
    }
}

/* Reads more plaintext; returns the count, 0 at close_notify/EOF, or < 0 on an error. */
static int tcl_more(struct tcl *c)
{
    ck_assert_uint_lt(c->len, sizeof c->buf - 1);
    int rc =
        mbedtls_ssl_read(&c->ssl, (unsigned char *)c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return 0;
    if (rc > 0) {
        c->len += (size_t)rc;
        c->buf[c->len] = '\0';
    }
    return rc;
}

struct resp {
    int status;
    char head[2048];
    char *body; /* malloc'd, NUL-terminated, framing removed */
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->body);
}

static void take(struct tcl *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

/* Reads one response (Content-Length or chunked framing) into r. */
static void tcl_response(struct tcl *c, struct resp *r)
{
    memset(r, 0, sizeof *r);
    char *end;
    while ((end = strstr(c->buf, "\r\n\r\n")) == NULL || c->len == 0)
        ck_assert_int_gt(tcl_more(c), 0);
    size_t hlen = (size_t)(end - c->buf) + 4;
    ck_assert_uint_lt(hlen, sizeof r->head);
    memcpy(r->head, c->buf, hlen);
    ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    take(c, hlen);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    if (cl != NULL) {
        size_t n = strtoul(cl + 18, NULL, 10);
        while (c->len < n)
            ck_assert_int_gt(tcl_more(c), 0);
        r->body = malloc(n + 1);
        memcpy(r->body, c->buf, n);
        r->body[n] = '\0';
        r->body_len = n;
        take(c, n);
        return;
    }
    ck_assert_ptr_nonnull(strcasestr(r->head, "\r\nTransfer-Encoding: chunked\r\n"));
    r->body = malloc(1);
    r->body[0] = '\0';
    for (;;) {
        while (strstr(c->buf, "\r\n") == NULL)
            ck_assert_int_gt(tcl_more(c), 0);
        char *e;
        size_t n = strtoul(c->buf, &e, 16);
        ck_assert(e[0] == '\r' && e[1] == '\n');
        size_t line = (size_t)(e - c->buf) + 2;
        while (c->len < line + n + 2)
            ck_assert_int_gt(tcl_more(c), 0);
        ck_assert(c->buf[line + n] == '\r' && c->buf[line + n + 1] == '\n');
        r->body = realloc(r->body, r->body_len + n + 1);
        memcpy(r->body + r->body_len, c->buf + line, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        take(c, line + n + 2);
        if (n == 0)
            return;
    }
}

static void tcl_get(struct tcl *c, const char *req, int status, const char *body)
{
    struct resp r;
    tcl_send(c, req, strlen(req));
    tcl_response(c, &r);
    ck_assert_int_eq(r.status, status);
    ck_assert_str_eq(r.body, body);
    resp_free(&r);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void client_roundtrip(void)
{
    struct tcl *c = tcl_connect();
    /* Two requests on one keep-alive connection: a GET, then a POST with a body. */
    tcl_get(c, "GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n", 200, "GET /hello body(0)=<>");
    tcl_get(c,
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: 13\r\n\r\n{\"ping\":true}",
            200, "POST /mcp body(13)=<{\"ping\":true}>");
    /* Two pipelined requests in one record. */
    const char two[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    tcl_send(c, two, sizeof two - 1);
    struct resp r;
    tcl_response(c, &r);
    ck_assert_str_eq(r.body, "GET /a body(0)=<>");
    resp_free(&r);
    tcl_response(c, &r);
    ck_assert_str_eq(r.body, "GET /b body(0)=<>");
    resp_free(&r);
    /* Connection: close gets the answer, then close_notify. */
    tcl_get(c, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200,
            "GET /last body(0)=<>");
    ck_assert_int_eq(tcl_more(c), 0);
    tcl_close(c);
    ck_assert_int_eq(atomic_load(&H.n_req), 5);
}

START_TEST(test_roundtrip_keepalive)
{
    run(client_roundtrip);
}
END_TEST

static void client_big(void)
{
    /* A body and an answer of several records each, split across many reads. */
    struct tcl *c = tcl_connect();
    size_t n = 300 * 1000;
    char *body = malloc(n);
    memset(body, 'q', n);
    char head[128];
    int hl = snprintf(head, sizeof head,
                      "POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    tcl_send(c, head, (size_t)hl);
    tcl_send(c, body, n);
    struct resp r;
    tcl_response(c, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, n);
    ck_assert_int_eq(r.body[0], 'a');
    ck_assert_int_eq(r.body[n - 1], (char)('a' + (n - 1) % 26));
    resp_free(&r);
    free(body);
    tcl_get(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 200, "GET /after body(0)=<>");
    tcl_close(c);
}

START_TEST(test_big_bodies)
{
    run(client_big);
}
END_TEST

static void client_pipeline_pressure(void)
{
    /* A held request, then 400 KB of pipelined requests behind it: more than the server
     * buffers (ciphertext and plaintext), so it stops reading and resumes afterwards. */
    struct tcl *c = tcl_connect();
    const char slow[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    tcl_send(c, slow, sizeof slow - 1);
    size_t n = 100 * 1000;
    char *body = malloc(n);
    memset(body, 'z', n);
    char head[128];
    int hl = snprintf(head, sizeof head,
                      "POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    for (int i = 0; i < 4; i++) {
        tcl_send(c, head, (size_t)hl);
        tcl_send(c, body, n);
    }
    free(body);
    struct resp r;
    tcl_response(c, &r);
    ck_assert_str_eq(r.body, "slow");
    resp_free(&r);
    for (int i = 0; i < 4; i++) {
        tcl_response(c, &r);
        ck_assert_str_eq(r.body, "100000");
        resp_free(&r);
    }
    tcl_close(c);
    ck_assert_int_eq(atomic_load(&H.n_req), 5);
}

START_TEST(test_pipeline_pressure)
{
    run(client_pipeline_pressure);
}
END_TEST

static void client_stream(void)
{
    struct tcl *c = tcl_connect();
    struct resp r;
    const char req[] = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    tcl_send(c, req, sizeof req - 1);
    tcl_response(c, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.head, "Content-Type: text/event-stream"));
    ck_assert_str_eq(r.body, "piece 0;piece 1;piece 2;piece 3;piece 4;");
    resp_free(&r);
    /* The connection goes on after the stream. */
    tcl_get(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", 200, "GET /next body(0)=<>");
    tcl_close(c);
}

START_TEST(test_chunked_stream)
{
    run(client_stream);
}
END_TEST

static int raw_tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)H.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Reads until EOF or a reset; returns what came (an alert, at most). */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0) {
            ck_assert_msg(n == 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
            break;
        }
        got += (size_t)n;
        ck_assert_uint_lt(got, cap - 1);
    }
    buf[got] = '\0';
    return got;
}

static void client_plain_on_tls(void)
{
    char buf[4096];
    /* Plain HTTP on the TLS port: no HTTP answer, the connection is closed. */
    int fd = raw_tcp();
    const char req[] = "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    drain(fd, buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "HTTP/1.1"));
    close(fd);
    /* A broken record after a good ClientHello prefix: closed too. */
    fd = raw_tcp();
    const char junk[] = "\x16\x03\x01\x00\x05"
                        "abcde"
                        "\x17\x03\x03\xff\xff";
    (void)send(fd, junk, sizeof junk - 1, MSG_NOSIGNAL);
    drain(fd, buf, sizeof buf);
    close(fd);
    /* A peer that goes away in the middle of the handshake. */
    fd = raw_tcp();
    (void)send(fd, "\x16\x03\x01", 3, MSG_NOSIGNAL);
    close(fd);
    /* The Unix socket stays plain HTTP. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", H.sock_path);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&su, sizeof su), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char ureq[] = "GET /unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(send(fd, ureq, sizeof ureq - 1, MSG_NOSIGNAL), (ssize_t)(sizeof ureq - 1));
    drain(fd, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "HTTP/1.1 200 OK"));
    ck_assert_ptr_nonnull(strstr(buf, "GET /unix body(0)=<>"));
    close(fd);
    /* The server is still well. */
    struct tcl *c = tcl_connect();
    tcl_get(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 200, "GET /ok body(0)=<>");
    tcl_close(c);
    ck_assert_int_eq(atomic_load(&H.n_req), 2);
}

START_TEST(test_plain_client_closed)
{
    run(client_plain_on_tls);
}
END_TEST

START_TEST(test_bad_files)
{
    char err[256];
    char path[160], other_key[160];
    struct tp_http_server *srv = tp_http_server_new(&H.loop, NULL, on_request, &H);

    err[0] = '\0';
    snprintf(path, sizeof path, "%s/missing.pem", H.dir);
    ck_assert_int_eq(tp_http_server_set_tls(srv, path, H.key, err, sizeof err), CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "certificate"));
    ck_assert_ptr_nonnull(strstr(err, "missing.pem"));

    err[0] = '\0';
    ck_assert_int_eq(tp_http_server_set_tls(srv, H.cert, path, err, sizeof err), CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "private key"));

    /* A file that is no PEM at all. */
    snprintf(path, sizeof path, "%s/junk.pem", H.dir);
    write_file(path, (const unsigned char *)"hello\n");
    err[0] = '\0';
    ck_assert_int_eq(tp_http_server_set_tls(srv, path, H.key, err, sizeof err), CORE_EINVAL);
    ck_assert_str_ne(err, "");
    unlink(path);

    /* A key that belongs to another certificate. */
    snprintf(other_key, sizeof other_key, "%s/other.pem", H.dir);
    make_cert(NULL, other_key);
    err[0] = '\0';
    ck_assert_int_eq(tp_http_server_set_tls(srv, H.cert, other_key, err, sizeof err), CORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "does not match"));
    unlink(other_key);

    /* The server still works without TLS after the failures, then with it. */
    ck_assert_int_eq(tp_http_server_set_tls(srv, H.cert, H.key, err, sizeof err), 0);
    tp_http_server_close(srv, on_srv_done, &H);
    ck_assert_int_eq(uv_run(&H.loop, UV_RUN_DEFAULT), 0);
    ck_assert(H.server_done);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("https");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip_keepalive);
    tcase_add_test(tc, test_big_bodies);
    tcase_add_test(tc, test_pipeline_pressure);
    tcase_add_test(tc, test_chunked_stream);
    tcase_add_test(tc, test_plain_client_closed);
    tcase_add_test(tc, test_bad_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const unsigned char pers[] = "test_tls";
    core_log_set_level(getenv("GW_TEST_DEBUG") != NULL ? CORE_LOG_DEBUG : CORE_LOG_WARN);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers, sizeof pers - 1) != 0)
        return 1;
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
