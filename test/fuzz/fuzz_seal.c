/* libFuzzer target for sealed values (session tokens, cursors). The input is opened as a
 * token: it must be refused (never crash, never open without the key's tag). Then the input
 * is sealed under an additional data taken from its first byte and must open to itself, and
 * must not open under any other additional data. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/seal.h"
#include "core/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        CHECK(auth_seal_init() == 0);
        ready = 1;
    }
    struct core_buf out;
    core_buf_init(&out, 0);
    /* Random bytes never open: forging needs the key. */
    int rc = auth_open_ad("session", 7, (const char *)data, size, &out);
    CHECK(rc == CORE_EPARSE || rc == CORE_EINVAL);
    CHECK(out.len == 0);

    char ad[2] = {'a', size ? (char)data[0] : 0};
    struct core_buf tok;
    core_buf_init(&tok, 0);
    CHECK(auth_seal_ad(ad, sizeof ad, data, size, &tok) == 0);
    CHECK(auth_open_ad(ad, sizeof ad, tok.data, tok.len, &out) == 0);
    CHECK(out.len == size && (size == 0 || memcmp(out.data, data, size) == 0));
    core_buf_reset(&out);
    char other[2] = {'a', (char)(ad[1] + 1)};
    CHECK(auth_open_ad(other, sizeof other, tok.data, tok.len, &out) == CORE_EINVAL);
    /* A flipped character of the token never opens. */
    if (tok.len > 0) {
        size_t at = size ? data[size - 1] % tok.len : 0;
        tok.data[at] = tok.data[at] == 'A' ? 'B' : 'A';
        rc = auth_open_ad(ad, sizeof ad, tok.data, tok.len, &out);
        CHECK(rc == CORE_EPARSE || rc == CORE_EINVAL);
    }
    core_buf_dispose(&tok);
    core_buf_dispose(&out);
    return 0;
}
