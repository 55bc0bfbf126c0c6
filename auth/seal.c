/* HMAC-SHA-512/256 (libsodium crypto_auth) over the value, base64url encoded. The AES-GCM
 * session tokens of the identities issue will reuse this interface. */
#include "auth/seal.h"

#include <sodium.h>
#include <string.h>

#include "core/alloc.h"

static unsigned char key[crypto_auth_KEYBYTES];
static int ready;

int auth_seal_init(void)
{
    if (sodium_init() < 0)
        return CORE_EINVAL;
    crypto_auth_keygen(key);
    ready = 1;
    return 0;
}

int auth_seal(const void *data, size_t n, struct core_buf *out)
{
    size_t raw_len = crypto_auth_BYTES + n;
    unsigned char *raw = core_xmalloc(raw_len);
    crypto_auth(raw, data, n, key);
    memcpy(raw + crypto_auth_BYTES, data, n);
    size_t enc_len = sodium_base64_ENCODED_LEN(raw_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int rc = core_buf_reserve(out, enc_len);
    if (rc == 0) {
        sodium_bin2base64(out->data + out->len, enc_len, raw, raw_len,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        out->len += strlen(out->data + out->len);
    }
    core_free(raw);
    return rc;
}

int auth_open(const char *tok, size_t n, struct core_buf *out)
{
    if (!ready || n > 65536)
        return CORE_EPARSE;
    size_t cap = n * 3 / 4 + 3;
    unsigned char *raw = core_xmalloc(cap);
    size_t raw_len = 0;
    int rc = CORE_EPARSE;
    if (sodium_base642bin(raw, cap, tok, n, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        raw_len < crypto_auth_BYTES)
        goto out;
    rc = CORE_EINVAL;
    if (crypto_auth_verify(raw, raw + crypto_auth_BYTES, raw_len - crypto_auth_BYTES, key) != 0)
        goto out;
    rc = core_buf_append(out, raw + crypto_auth_BYTES, raw_len - crypto_auth_BYTES);
out:
    core_free(raw);
    return rc;
}

void auth_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

void auth_random_hex(char *out, size_t n)
{
    unsigned char raw[64];
    if (n > sizeof raw)
        n = sizeof raw;
    randombytes_buf(raw, n);
    sodium_bin2hex(out, 2 * n + 1, raw, n);
}
