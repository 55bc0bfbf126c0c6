/* Sealing of opaque values the gateway mints (pagination cursors, session tokens, later MRTR
 * state): the client may hold them but can neither read, forge nor tamper with them.
 *
 * A sealed value is base64url (no padding) of
 *     version (1 byte, 0x01) | key id (4 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
 * sealed with AES-256-GCM. The key id is the first 4 bytes of SHA-256(key); the additional data
 * is the 5 header bytes followed by the caller's `ad`. Two backends produce the same format and
 * open each other's values: libsodium (only where the CPU has AES-NI and PCLMUL) and mbedTLS.
 *
 * Keys live in one process-global ring: the current key, which seals and opens, and retired
 * keys, which only open. Not thread-safe: call from the loop thread only. */
#ifndef GW_AUTH_SEAL_H
#define GW_AUTH_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

enum auth_backend {
    AUTH_BACKEND_AUTO = 0, /* libsodium when its AES-GCM is usable here, else mbedTLS */
    AUTH_BACKEND_SODIUM,
    AUTH_BACKEND_MBEDTLS,
};

/* Replaces the ring with one fresh random key that lives only in this process (wrap, tests),
 * wiping the previous keys. Applies AGENTGATE_AES (see auth_keys_load) when it is set. Returns
 * 0, or CORE_EINVAL (libsodium failed to initialise, or a bad AGENTGATE_AES, logged here). */
GW_MUST_CHECK int auth_seal_init(void);

/* Chooses the AES-GCM implementation; AUTO picks libsodium when usable, else mbedTLS. The key
 * ring is unchanged. Returns 0, or CORE_EINVAL when libsodium's AES-GCM is unavailable on this
 * CPU (the previous choice stays). */
GW_MUST_CHECK int auth_set_backend(enum auth_backend b);
/* The implementation in use: "libsodium" or "mbedtls" (static string). */
const char *auth_backend_name(void);

/* Loads the key ring from state_dir (created with mode 0700 if missing; refused unless it is a
 * private directory, see core_path_ensure_private_dir):
 * - session.key, the current key: exactly 32 bytes. When missing it is created with 32 random
 *   bytes, mode 0600, O_EXCL, and fsync'd.
 * - session.key.<UNIXTIME>, retired keys (UNIXTIME = when rotation retired them), kept while
 *   UNIXTIME * 1000 + ttl_ms is in the future; older ones are deleted.
 * Any key file with group/other permission bits (mode & 077), a size other than 32 bytes, or
 * that is not a regular file (a symlink is refused, not followed) is refused with a one-line
 * message in err naming the file (and for permissions its octal mode and the `chmod 600 FILE`
 * fix).
 * The environment variable AGENTGATE_AES=sodium|mbedtls forces a backend (auto = default).
 * The ring is replaced only on success; on failure the previous ring stays in use.
 * err (may be NULL when errlen is 0) gets a message on failure. Returns 0 or CORE_EINVAL. */
GW_MUST_CHECK int auth_keys_load(const char *state_dir, uint64_t ttl_ms, char *err, size_t errlen);

/* Offline rotation: writes a fresh key to a temporary file (0600, O_EXCL, fsync'd), keeps the
 * current session.key as session.key.<now> (a later second if that name is taken) and renames
 * the new key over session.key, so a session.key exists at every moment. With no session.key it
 * just creates one. The current key file is checked like auth_keys_load does. The in-memory
 * ring is untouched (the daemon picks the new key up on reload). Returns 0 or CORE_EINVAL with
 * a message in err; on failure the files are as before. */
GW_MUST_CHECK int auth_keys_rotate(const char *state_dir, char *err, size_t errlen);

/* Seals n bytes of data with the current key and additional data ad (purpose and identity,
 * e.g. "session\0claude"; the same ad must be given to open), appending the token to out (kept
 * NUL-terminated). Returns 0, CORE_ETOOBIG (out's limit; out unchanged) or CORE_EINVAL (no key:
 * neither auth_seal_init nor auth_keys_load succeeded). */
GW_MUST_CHECK int auth_seal_ad(const void *ad, size_t adlen, const void *data, size_t n,
                               struct core_buf *out);
/* Opens a token made by auth_seal_ad with any key of the ring and appends the data to out.
 * Returns 0, CORE_EPARSE (not base64url, too short or too long, unknown version), CORE_EINVAL (no
 * key with that id, or the tag does not match: tampered, foreign, or a different ad) or
 * CORE_ETOOBIG (out's limit). out is unchanged on failure. */
GW_MUST_CHECK int auth_open_ad(const void *ad, size_t adlen, const char *tok, size_t n,
                               struct core_buf *out);

/* auth_seal_ad / auth_open_ad with ad "cursor" (pagination cursors). */
GW_MUST_CHECK int auth_seal(const void *data, size_t n, struct core_buf *out);
GW_MUST_CHECK int auth_open(const char *tok, size_t n, struct core_buf *out);

/* Fills buf with n random bytes. */
void auth_random(void *buf, size_t n);
/* Writes 2*n lowercase hex chars of n random bytes plus a NUL into out (size 2*n+1). */
void auth_random_hex(char *out, size_t n);
/* Wipes every key of the ring (sodium_memzero) and frees it; sealing fails until the next
 * auth_seal_init or auth_keys_load. */
void auth_keys_clear(void);

#endif
