/* Server-side TLS with mbedTLS, kept away from sockets: the caller feeds received ciphertext
 * into a connection, reads plaintext out of it, writes plaintext into it and takes the
 * ciphertext to send. mbedTLS reads and writes only these buffers (mbedtls_ssl_set_bio); the
 * caller owns the socket. No mbedTLS type appears here. */
#ifndef GW_TRANSPORTS_TLS_H
#define GW_TRANSPORTS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct tp_tls_config;
struct tp_tls_conn;

/* Loads a PEM certificate chain (server certificate first) and its unencrypted private key,
 * seeds a random generator and builds a server configuration (TLS 1.2 and later, mbedTLS's
 * default cipher suites, ALPN "http/1.1"). On success *out is a new configuration the caller
 * frees with tp_tls_config_free. Returns 0, or CORE_EINVAL with a message in err (a file that
 * cannot be read or parsed, or a key that does not match the certificate). */
GW_MUST_CHECK int tp_tls_config_new(const char *cert_path, const char *key_path,
                                    struct tp_tls_config **out, char *err, size_t errlen);
/* Frees a configuration; every connection made from it must be freed before. NULL is a no-op. */
void tp_tls_config_free(struct tp_tls_config *cfg);

/* Starts the server side of one connection; the handshake runs as ciphertext arrives. cfg is
 * borrowed and must outlive the connection; name (for DEBUG logs, e.g. "c12") is copied.
 * Returns 0 and a new connection in *out (free it with tp_tls_conn_free), or CORE_EINVAL. */
GW_MUST_CHECK int tp_tls_conn_new(struct tp_tls_config *cfg, const char *name,
                                  struct tp_tls_conn **out);
/* Frees the connection's state and buffers. NULL is a no-op. */
void tp_tls_conn_free(struct tp_tls_conn *t);

/* Free space for up to `want` bytes of received ciphertext: *p and *n describe it (n may be
 * less than want). Returns 0, or CORE_ETOOBIG when the input buffer is full (the caller stops
 * reading until tp_tls_conn_read has drained it). */
GW_MUST_CHECK int tp_tls_conn_in_space(struct tp_tls_conn *t, size_t want, char **p, size_t *n);
/* n bytes were written into the space from tp_tls_conn_in_space. */
void tp_tls_conn_in_commit(struct tp_tls_conn *t, size_t n);
/* Drops the buffered ciphertext (the caller discards input from now on, before closing). */
void tp_tls_conn_in_discard(struct tp_tls_conn *t);
/* Runs the handshake as far as the buffered ciphertext allows, then decrypts into dst[0..cap).
 * Handshake messages and alerts may be queued for sending: check tp_tls_conn_out_len after
 * every call. Returns the number of plaintext bytes (> 0), 0 when more ciphertext is needed,
 * CORE_ECLOSED when the peer sent close_notify, or CORE_EPROTO on a failed handshake or a bad
 * record (logged at DEBUG; the connection is unusable afterwards). */
GW_MUST_CHECK int tp_tls_conn_read(struct tp_tls_conn *t, char *dst, size_t cap);
/* True when ciphertext is buffered or decrypted bytes wait inside the TLS state. */
bool tp_tls_conn_has_input(const struct tp_tls_conn *t);
/* Encrypts data[0..n) into the output buffer (whole; the handshake must be complete). Returns 0
 * or CORE_EPROTO. */
GW_MUST_CHECK int tp_tls_conn_write(struct tp_tls_conn *t, const char *data, size_t n);
/* Queues a close_notify alert (once). */
void tp_tls_conn_close_notify(struct tp_tls_conn *t);
/* Ciphertext bytes waiting to be sent. */
size_t tp_tls_conn_out_len(const struct tp_tls_conn *t);
/* Moves up to cap bytes of waiting ciphertext into dst; returns how many. */
size_t tp_tls_conn_out_take(struct tp_tls_conn *t, char *dst, size_t cap);

#endif
