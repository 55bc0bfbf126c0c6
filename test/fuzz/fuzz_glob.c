/* libFuzzer target for the policy glob matcher: the input is PATTERN NUL STRING, and for valid
 * UTF-8 the answer must equal a plain memoised reference matcher's (short inputs only). Invalid
 * UTF-8 only has to terminate without a memory error: exposed tool and prompt names are ASCII
 * (fed_name_expose), and patterns come from the user's config. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* '?' matches one character, as in pol_glob_match: a lead byte (>= 0xc0) with the continuation
 * bytes after it, four bytes at most; any other byte alone. */
static size_t char_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 1;
    if (u[0] >= 0xc0)
        while (n < 4 && (u[n] & 0xc0) == 0x80)
            n++;
    return n;
}

static bool valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        size_t n = *u < 0x80 ? 1 : (*u >= 0xc2 && *u < 0xe0) ? 2 : (*u >= 0xe0 && *u < 0xf0) ? 3
                   : (*u >= 0xf0 && *u < 0xf5) ? 4 : 0;
        if (n == 0)
            return false;
        for (size_t i = 1; i < n; i++)
            if ((u[i] & 0xc0) != 0x80)
                return false;
        u += n;
    }
    return true;
}

/* Memoised recursion over (pattern position, string position): 0 unknown, 1 no, 2 yes. */
static unsigned char memo[50][50];

static bool ref(const char *p0, const char *s0, size_t pi, size_t si)
{
    unsigned char *m = &memo[pi][si];
    if (*m)
        return *m == 2;
    const char *p = p0 + pi, *s = s0 + si;
    bool r;
    if (*p == '\0')
        r = *s == '\0';
    else if (*p == '*') /* a star takes whole characters */
        r = ref(p0, s0, pi + 1, si) || (*s && ref(p0, s0, pi, si + char_len(s)));
    else if (*s == '\0')
        r = false;
    else if (*p == '?')
        r = ref(p0, s0, pi + 1, si + char_len(s));
    else
        r = *p == *s && ref(p0, s0, pi + 1, si + 1);
    *m = r ? 2 : 1;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 48)
        return 0;
    char buf[50];
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *pat = buf;
    size_t pl = strlen(pat);
    const char *str = pl < size ? buf + pl + 1 : "";
    bool got = pol_glob_match(pat, str);
    if (!valid_utf8(pat) || !valid_utf8(str))
        return 0;
    memset(memo, 0, sizeof memo);
    if (got != ref(pat, str, 0, 0)) {
        fprintf(stderr, "glob mismatch: pattern '%s' string '%s'\n", pat, str);
        abort();
    }
    return 0;
}
