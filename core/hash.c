#include "core/hash.h"

#include <sodium.h>

void core_sha256_hex(const void *data, size_t n, char out[CORE_SHA256_HEX_SIZE])
{
    /* crypto_hash_sha256 is plain C with no CPU dispatch, so it is safe before sodium_init(),
     * which the config parser may run ahead of. The input may be a bearer token: the digest is
     * wiped from the stack. */
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, n);
    sodium_bin2hex(out, CORE_SHA256_HEX_SIZE, h, sizeof h);
    sodium_memzero(h, sizeof h);
}
