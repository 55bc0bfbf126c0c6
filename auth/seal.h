/* Sealing of opaque values the gateway mints (pagination cursors now; session tokens and MRTR
 * state later): the client may hold them but can neither read-forge nor tamper with them. */
#ifndef GW_AUTH_SEAL_H
#define GW_AUTH_SEAL_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Makes a fresh random key for this process. Returns 0 or CORE_EINVAL (libsodium failed). */
GW_MUST_CHECK int auth_seal_init(void);
/* Appends base64url(mac || data) (no padding) to out. Returns 0 or CORE_ETOOBIG. */
GW_MUST_CHECK int auth_seal(const void *data, size_t n, struct core_buf *out);
/* Verifies a sealed value and appends the data to out. Returns 0, CORE_EPARSE (not
 * base64url or too short) or CORE_EINVAL (MAC mismatch: forged, tampered or from an older
 * process). */
GW_MUST_CHECK int auth_open(const char *tok, size_t n, struct core_buf *out);
/* Fills buf with n random bytes. */
void auth_random(void *buf, size_t n);
/* Writes 2*n lowercase hex chars of n random bytes plus a NUL into out (size 2*n+1). */
void auth_random_hex(char *out, size_t n);

#endif
