/* SHA-256 as lowercase hex: the one digest the config (token_sha256), the client identities
 * (bearer tokens) and the tool pins (definitions) compare by. */
#ifndef GW_CORE_HASH_H
#define GW_CORE_HASH_H

#include <stddef.h>

/* Bytes of a SHA-256 hex string with its NUL. */
#define CORE_SHA256_HEX_SIZE 65

/* Writes the lowercase hex SHA-256 of data[0..n) plus a NUL into out. Needs no sodium_init(). */
void core_sha256_hex(const void *data, size_t n, char out[CORE_SHA256_HEX_SIZE]);

#endif
