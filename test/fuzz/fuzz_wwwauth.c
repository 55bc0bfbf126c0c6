/* libFuzzer target: WWW-Authenticate parsing (auth/wwwauth.c). */
#include <stddef.h>
#include <stdint.h>

#include "auth/wwwauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_bearer b;
    if (auth_wwwauth_parse((const char *)data, size, &b) == 0)
        auth_bearer_dispose(&b);
    return 0;
}
