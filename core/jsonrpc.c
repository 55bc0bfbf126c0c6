/* JSON-RPC envelope scanning. One pass over the frame validates the whole JSON text and records
 * where the top-level members sit; nothing is allocated and no tree is built, so a megabyte
 * tool result costs one linear scan and is then forwarded as the peer's own bytes. */
#include "core/jsonrpc.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* Containers (objects and arrays) open at once; one more is a parse error. */
#define MAX_DEPTH 256

/* Returned by the position-returning scanners instead of a position on malformed input. No
 * real position can take this value, since a frame cannot fill the whole address space. */
#define SCAN_FAIL SIZE_MAX

/* Byte-wise SWAR helpers: each yields a non-zero word when some byte of w matches. They are
 * exact about whether a match exists, which is all the string skipper needs. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* The top-level members the envelope scanner records. */
enum member {
    M_OTHER = 0,
    M_JSONRPC,
    M_ID,
    M_METHOD,
    M_PARAMS,
    M_RESULT,
    M_ERROR,
};

static inline size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    return i;
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads four hex digits at p (the caller checked they are in bounds); -1 if one is not hex. */
static long hex4(const char *p)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hex_val(p[k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* True when one of the eight bytes in w is '"', '\\' or a control character (< 0x20), i.e.
 * when a string scanner has to look at this word byte by byte. */
static inline bool word_is_special(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"');
    uint64_t bslash = w ^ (ONES * '\\');
    uint64_t m = ((quote - ONES) & ~quote) | ((bslash - ONES) & ~bslash) | ((w - ONES * 0x20) & ~w);
    return (m & HIGHS) != 0;
}

/* Scans the string token whose opening quote is at p[i]. Returns the position after the
 * closing quote, or SCAN_FAIL. Runs of plain bytes are skipped a word at a time, because tool
 * results are mostly long strings. UTF-8 is not validated: bytes >= 0x80 pass through. */
static size_t scan_string(const char *p, size_t n, size_t i)
{
    i++;
    for (;;) {
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (word_is_special(w))
                break;
            i += 8;
        }
        if (i >= n)
            return SCAN_FAIL;
        unsigned char c = (unsigned char)p[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return SCAN_FAIL;
        if (c != '\\') {
            i++;
            continue;
        }
        if (n - i < 2)
            return SCAN_FAIL;
        switch (p[i + 1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            i += 2;
            break;
        case 'u':
            /* The grammar accepts any four hex digits, lone surrogates included; only
             * core_json_unescape, which must produce UTF-8, insists on proper pairs. */
            if (n - i < 6 || hex4(p + i + 2) < 0)
                return SCAN_FAIL;
            i += 6;
            break;
        default:
            return SCAN_FAIL;
        }
    }
}

/* Scans a number per RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * A leading zero followed by a digit ends the number after the zero, and the caller then
 * fails on the unexpected digit. */
static size_t scan_number(const char *p, size_t n, size_t i)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n)
        return SCAN_FAIL;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        while (i < n && is_digit(p[i]))
            i++;
    } else {
        return SCAN_FAIL;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !is_digit(p[i]))
            return SCAN_FAIL;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return SCAN_FAIL;
        while (i < n && is_digit(p[i]))
            i++;
    }
    return i;
}

static size_t scan_literal(const char *p, size_t n, size_t i, const char *lit, size_t len)
{
    if (n - i < len || memcmp(p + i, lit, len) != 0)
        return SCAN_FAIL;
    return i + len;
}

/* Scans `"key" :` with surrounding whitespace, starting at i. Returns the position after the
 * colon and writes the key token's span, or returns SCAN_FAIL. */
static size_t scan_key(const char *p, size_t n, size_t i, struct core_span *key)
{
    i = skip_ws(p, n, i);
    if (i >= n || p[i] != '"')
        return SCAN_FAIL;
    size_t start = i;
    i = scan_string(p, n, i);
    if (i == SCAN_FAIL)
        return SCAN_FAIL;
    key->off = start;
    key->len = i - start;
    i = skip_ws(p, n, i);
    if (i >= n || p[i] != ':')
        return SCAN_FAIL;
    return i + 1;
}

static enum core_json_type type_of(char c)
{
    switch (c) {
    case '{':
        return CORE_JSON_OBJECT;
    case '[':
        return CORE_JSON_ARRAY;
    case '"':
        return CORE_JSON_STRING;
    case 't':
        return CORE_JSON_TRUE;
    case 'f':
        return CORE_JSON_FALSE;
    case 'n':
        return CORE_JSON_NULL;
    default:
        return CORE_JSON_NUMBER;
    }
}

/* Validates one JSON value starting at p[i] (no leading whitespace) that sits inside `depth`
 * open containers. Returns the position just after it, or SCAN_FAIL. Iterative, so hostile
 * nesting costs a bit per level instead of a stack frame. */
static size_t skip_value(const char *p, size_t n, size_t i, unsigned depth)
{
    /* Bit d tells whether the container at nesting level d is an object (1) or an array. */
    uint64_t is_obj[MAX_DEPTH / 64] = {0};
    unsigned d = depth;
    struct core_span key;

    for (;;) {
        /* Here a value is expected at i. */
        i = skip_ws(p, n, i);
        if (i >= n)
            return SCAN_FAIL;
        switch (p[i]) {
        case '{':
        case '[': {
            bool obj = p[i] == '{';
            if (d >= MAX_DEPTH)
                return SCAN_FAIL;
            if (obj)
                is_obj[d / 64] |= UINT64_C(1) << (d % 64);
            else
                is_obj[d / 64] &= ~(UINT64_C(1) << (d % 64));
            d++;
            i = skip_ws(p, n, i + 1);
            if (i < n && p[i] == (obj ? '}' : ']')) {
                i++;
                d--;
                break;
            }
            if (obj) {
                i = scan_key(p, n, i, &key);
                if (i == SCAN_FAIL)
                    return SCAN_FAIL;
            }
            continue;
        }
        case '"':
            i = scan_string(p, n, i);
            break;
        case 't':
            i = scan_literal(p, n, i, "true", 4);
            break;
        case 'f':
            i = scan_literal(p, n, i, "false", 5);
            break;
        case 'n':
            i = scan_literal(p, n, i, "null", 4);
            break;
        default:
            i = scan_number(p, n, i);
            break;
        }
        if (i == SCAN_FAIL)
            return SCAN_FAIL;

        /* A value ended: close the containers it completes, or move on to the next element. */
        for (;;) {
            if (d == depth)
                return i;
            i = skip_ws(p, n, i);
            if (i >= n)
                return SCAN_FAIL;
            bool obj = (is_obj[(d - 1) / 64] >> ((d - 1) % 64)) & 1;
            if (p[i] == ',') {
                i++;
                if (obj) {
                    i = scan_key(p, n, i, &key);
                    if (i == SCAN_FAIL)
                        return SCAN_FAIL;
                }
                break;
            }
            if (p[i] != (obj ? '}' : ']'))
                return SCAN_FAIL;
            i++;
            d--;
        }
    }
}

/* Steps through the members of the object whose '{' was consumed: *i is just after the '{'
 * (first == true) or just after the previous member's value. Returns 1 and writes the member,
 * 0 after the closing '}' (*i then just after it), or -1 on malformed input. `depth` counts the
 * containers around the members' values, this object included. */
static int member_next(const char *p, size_t n, size_t *i, bool first, unsigned depth,
                       struct core_span *key, struct core_span *val)
{
    size_t j = skip_ws(p, n, *i);
    if (j >= n)
        return -1;
    if (p[j] == '}') {
        *i = j + 1;
        return 0;
    }
    if (!first) {
        if (p[j] != ',')
            return -1;
        j++;
    }
    j = scan_key(p, n, j, key);
    if (j == SCAN_FAIL)
        return -1;
    j = skip_ws(p, n, j);
    if (j >= n)
        return -1;
    size_t start = j;
    j = skip_value(p, n, j, depth);
    if (j == SCAN_FAIL)
        return -1;
    val->off = start;
    val->len = j - start;
    *i = j;
    return 1;
}

/* Decodes one character of a string body at tok[*i], tok[end] being the closing quote's
 * position. Writes its UTF-8 bytes to u and returns their count (1..4), or -1 when the body
 * is malformed: a raw quote or control character, a bad escape, or an unpaired surrogate. */
static int decode_char(const char *tok, size_t end, size_t *i, char u[4])
{
    size_t j = *i;
    unsigned char c = (unsigned char)tok[j];
    if (c == '"' || c < 0x20)
        return -1;
    if (c != '\\') {
        u[0] = (char)c;
        *i = j + 1;
        return 1;
    }
    if (end - j < 2)
        return -1;
    char e = tok[j + 1];
    long cp;
    switch (e) {
    case '"':
    case '\\':
    case '/':
        u[0] = e;
        *i = j + 2;
        return 1;
    case 'b':
        u[0] = '\b';
        *i = j + 2;
        return 1;
    case 'f':
        u[0] = '\f';
        *i = j + 2;
        return 1;
    case 'n':
        u[0] = '\n';
        *i = j + 2;
        return 1;
    case 'r':
        u[0] = '\r';
        *i = j + 2;
        return 1;
    case 't':
        u[0] = '\t';
        *i = j + 2;
        return 1;
    case 'u':
        break;
    default:
        return -1;
    }
    if (end - j < 6)
        return -1;
    cp = hex4(tok + j + 2);
    if (cp < 0)
        return -1;
    j += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high surrogate must be followed by an escaped low one; together they name a
         * code point above the Basic Multilingual Plane. */
        if (end - j < 6 || tok[j] != '\\' || tok[j + 1] != 'u')
            return -1;
        long lo = hex4(tok + j + 2);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        j += 6;
    }
    *i = j;
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool is_string_token(const char *tok, size_t n)
{
    return n >= 2 && tok[0] == '"' && tok[n - 1] == '"';
}

int core_json_unescape(const char *tok, size_t n, char *out, size_t cap)
{
    char u[4];
    size_t i = 1;
    size_t len = 0;

    if (!is_string_token(tok, n))
        return CORE_EPARSE;
    /* Most strings have no escapes: check the bytes once and copy them. */
    size_t body = n - 2;
    bool plain = true;
    for (size_t j = 1; j < n - 1; j++) {
        unsigned char c = (unsigned char)tok[j];
        if (c == '\\') {
            plain = false;
            break;
        }
        if (c < 0x20 || c == '"')
            return CORE_EPARSE;
    }
    if (plain) {
        if (cap == 0 || body > cap - 1 || body > INT_MAX)
            return CORE_ETOOBIG;
        memcpy(out, tok + 1, body);
        out[body] = '\0';
        return (int)body;
    }
    /* The first pass validates and measures, so `out` is written only on success. */
    while (i < n - 1) {
        int k = decode_char(tok, n - 1, &i, u);
        if (k < 0)
            return CORE_EPARSE;
        len += (size_t)k;
    }
    if (cap == 0 || len > cap - 1 || len > INT_MAX)
        return CORE_ETOOBIG;
    i = 1;
    len = 0;
    while (i < n - 1) {
        int k = decode_char(tok, n - 1, &i, u);
        memcpy(out + len, u, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    return (int)len;
}

bool core_json_str_eq(const char *p, struct core_span s, const char *want)
{
    const char *tok = p + s.off;
    size_t want_len = strlen(want);
    size_t w = 0;
    size_t i = 1;
    char u[4];

    if (!is_string_token(tok, s.len))
        return false;
    if (memchr(tok + 1, '\\', s.len - 2) == NULL)
        return s.len - 2 == want_len && memcmp(tok + 1, want, want_len) == 0;
    while (i < s.len - 1) {
        int k = decode_char(tok, s.len - 1, &i, u);
        if (k < 0 || (size_t)k > want_len - w || memcmp(want + w, u, (size_t)k) != 0)
            return false;
        w += (size_t)k;
    }
    return w == want_len;
}

/* Decodes a key token into buf when it could name a recorded member (at most cap-1 decoded
 * bytes); returns the decoded length, or -1 when it is longer (then it names none). Keys are
 * compared decoded, so "\u0069d" is "id" here exactly as it is for cJSON and for the peer: a
 * key that only looks different must not slip past the gateway. */
static int key_text(const char *p, struct core_span key, char *buf, size_t cap, const char **out)
{
    const char *s = p + key.off + 1;
    size_t len = key.len - 2;

    /* Even written as \uXXXX escapes throughout, a recorded name takes at most 6 bytes a
     * character. */
    if (len > (cap - 1) * 6)
        return -1;
    if (memchr(s, '\\', len) == NULL) {
        if (len > cap - 1)
            return -1;
        *out = s;
        return (int)len;
    }
    int rc = core_json_unescape(p + key.off, key.len, buf, cap);
    if (rc < 0)
        return -1;
    *out = buf;
    return rc;
}

/* Tells which recorded top-level member a key token names. */
static enum member member_of(const char *p, struct core_span key)
{
    char buf[8];
    const char *s;
    int len = key_text(p, key, buf, sizeof buf, &s);

    switch (len) {
    case 2:
        return memcmp(s, "id", 2) == 0 ? M_ID : M_OTHER;
    case 5:
        return memcmp(s, "error", 5) == 0 ? M_ERROR : M_OTHER;
    case 6:
        if (memcmp(s, "method", 6) == 0)
            return M_METHOD;
        if (memcmp(s, "params", 6) == 0)
            return M_PARAMS;
        if (memcmp(s, "result", 6) == 0)
            return M_RESULT;
        return M_OTHER;
    case 7:
        return memcmp(s, "jsonrpc", 7) == 0 ? M_JSONRPC : M_OTHER;
    default:
        return M_OTHER;
    }
}

static const char *const param_names[CORE_P_COUNT] = {
    [CORE_P_NAME] = "name",
    [CORE_P_URI] = "uri",
    [CORE_P_CURSOR] = "cursor",
    [CORE_P_META] = "_meta",
    [CORE_P_REF] = "ref",
    [CORE_P_LEVEL] = "level",
    [CORE_P_REQUEST_ID] = "requestId",
    [CORE_P_REASON] = "reason",
    [CORE_P_PROGRESS_TOKEN] = "progressToken",
    [CORE_P_PROTOCOL_VERSION] = "protocolVersion",
    [CORE_P_CAPABILITIES] = "capabilities",
    [CORE_P_CLIENT_INFO] = "clientInfo",
};

/* Which recorded params member a key token names, or -1. */
static int param_of(const char *p, struct core_span key)
{
    char buf[16];
    const char *s;
    int len = key_text(p, key, buf, sizeof buf, &s);

    if (len < 3)
        return -1;
    /* The first letter and the length tell the names apart before one memcmp. */
    for (int k = 0; k < CORE_P_COUNT; k++) {
        const char *nm = param_names[k];
        if (nm[0] == s[0] && strlen(nm) == (size_t)len && memcmp(nm, s, (size_t)len) == 0)
            return k;
    }
    return -1;
}

/* Sets kind (and method_str) once the whole text is known to be valid. The rules are JSON-RPC
 * 2.0's, applied strictly enough that the router never has to guess:
 * - an id must be a string, a number or null (a null id is allowed: error replies to
 *   unparsable requests carry one; MCP forbids it in requests, which callers check);
 * - a request or notification has a string method, no result or error, and params, when
 *   present, is an object or an array;
 * - a response has an id and exactly one of result and error. */
static void classify(const char *p, struct core_rpc_env *e)
{
    bool has_id = e->id_type != CORE_JSON_ABSENT;
    bool has_result = e->result.len > 0;
    bool has_error = e->error.len > 0;

    e->kind = CORE_RPC_INVALID;
    if (e->method.len > 0 && p[e->method.off] == '"') {
        int rc = core_json_unescape(p + e->method.off, e->method.len, e->method_str,
                                    sizeof(e->method_str));
        /* A decoded NUL would make method_str look shorter than the method the peer sent. */
        if (rc < 0 || memchr(e->method_str, '\0', (size_t)rc) != NULL) {
            e->method_str[0] = '\0';
            return;
        }
    }
    if (has_id && e->id_type != CORE_JSON_STRING && e->id_type != CORE_JSON_NUMBER &&
        e->id_type != CORE_JSON_NULL)
        return;
    if (e->method.len > 0) {
        if (p[e->method.off] != '"' || has_result || has_error)
            return;
        if (e->params.len > 0 && p[e->params.off] != '{' && p[e->params.off] != '[')
            return;
        e->kind = has_id ? CORE_RPC_REQUEST : CORE_RPC_NOTIFICATION;
        return;
    }
    if (!has_id || has_result == has_error)
        return;
    e->kind = has_result ? CORE_RPC_RESULT : CORE_RPC_ERROR;
}

static void note_dup(struct core_rpc_env *e, const char *key)
{
    if (!e->dup) {
        e->dup = true;
        e->dup_key = key;
    }
}

/* Records one member into *slot, noticing a repeat. */
static void record(struct core_rpc_env *e, struct core_span *slot, struct core_span val,
                   const char *key)
{
    if (slot->len > 0)
        note_dup(e, key);
    *slot = val;
}

/* Walks the members of the object whose '{' is at p[i], `depth` containers deep (itself
 * included), calling visit for each. Returns the position after the closing '}', or
 * SCAN_FAIL. */
static size_t walk_object(const char *p, size_t n, size_t i, unsigned depth,
                          void (*visit)(const char *p, struct core_span key, struct core_span val,
                                        void *ctx),
                          void *ctx)
{
    struct core_span key;
    struct core_span val;
    bool first = true;
    int rc;

    i++;
    for (;;) {
        rc = member_next(p, n, &i, first, depth, &key, &val);
        if (rc != 1)
            break;
        first = false;
        visit(p, key, val, ctx);
    }
    return rc == 0 ? i : SCAN_FAIL;
}

static void visit_param(const char *p, struct core_span key, struct core_span val, void *ctx)
{
    struct core_rpc_env *e = ctx;
    int k = param_of(p, key);
    if (k >= 0)
        record(e, &e->param[k], val, param_names[k]);
}

/* Scans the top-level object whose '{' is at p[i], recording the envelope members and, when
 * params is an object, its recorded members, in the same pass. Returns the position after the
 * closing '}', or SCAN_FAIL. */
static size_t scan_envelope(const char *p, size_t n, size_t i, struct core_rpc_env *e)
{
    struct core_span key;
    bool first = true;
    bool seen_jsonrpc = false;

    i++;
    for (;;) {
        size_t j = skip_ws(p, n, i);
        if (j >= n)
            return SCAN_FAIL;
        if (p[j] == '}')
            return j + 1;
        if (!first) {
            if (p[j] != ',')
                return SCAN_FAIL;
            j++;
        }
        first = false;
        j = scan_key(p, n, j, &key);
        if (j == SCAN_FAIL)
            return SCAN_FAIL;
        j = skip_ws(p, n, j);
        if (j >= n)
            return SCAN_FAIL;
        enum member m = member_of(p, key);
        size_t start = j;
        if (m == M_PARAMS && p[j] == '{') {
            if (e->params.len > 0) /* a second params object: its members start afresh */
                memset(e->param, 0, sizeof e->param);
            j = walk_object(p, n, j, 2, visit_param, e);
        } else {
            j = skip_value(p, n, j, 1);
        }
        if (j == SCAN_FAIL)
            return SCAN_FAIL;
        struct core_span val = {start, j - start};
        i = j;
        switch (m) {
        case M_JSONRPC:
            if (seen_jsonrpc)
                note_dup(e, "jsonrpc");
            seen_jsonrpc = true;
            e->has_jsonrpc = core_json_str_eq(p, val, "2.0");
            break;
        case M_ID:
            record(e, &e->id, val, "id");
            e->id_type = type_of(p[val.off]);
            break;
        case M_METHOD:
            record(e, &e->method, val, "method");
            break;
        case M_PARAMS:
            record(e, &e->params, val, "params");
            break;
        case M_RESULT:
            record(e, &e->result, val, "result");
            break;
        case M_ERROR:
            record(e, &e->error, val, "error");
            break;
        case M_OTHER:
            break;
        }
    }
}

int core_rpc_scan(const char *p, size_t n, struct core_rpc_env *env)
{
    struct core_rpc_env e;
    size_t i;

    memset(&e, 0, sizeof(e));
    i = skip_ws(p, n, 0);
    if (i >= n)
        return CORE_EPARSE;
    if (p[i] == '{') {
        i = scan_envelope(p, n, i, &e);
        if (i == SCAN_FAIL)
            return CORE_EPARSE;
        classify(p, &e);
    } else {
        bool array = p[i] == '[';
        i = skip_value(p, n, i, 0);
        if (i == SCAN_FAIL)
            return CORE_EPARSE;
        e.kind = array ? CORE_RPC_BATCH : CORE_RPC_INVALID;
    }
    if (skip_ws(p, n, i) != n)
        return CORE_EPARSE;
    *env = e;
    return 0;
}

int core_rpc_batch_next(const char *p, size_t n, size_t *pos, struct core_span *elem)
{
    size_t i = *pos;

    if (i == 0) {
        i = skip_ws(p, n, 0);
        if (i >= n || p[i] != '[')
            return CORE_EPARSE;
        i = skip_ws(p, n, i + 1);
        if (i < n && p[i] == ']') {
            *pos = n;
            return 0;
        }
    } else {
        /* After an element *pos sits just past it, which is always before the closing ']'; at
         * the end it is n. */
        if (i >= n)
            return 0;
        i = skip_ws(p, n, i);
        if (i >= n)
            return CORE_EPARSE;
        if (p[i] == ']') {
            *pos = n;
            return 0;
        }
        if (p[i] != ',')
            return CORE_EPARSE;
        i = skip_ws(p, n, i + 1);
    }
    if (i >= n)
        return CORE_EPARSE;
    size_t start = i;
    i = skip_value(p, n, i, 1);
    if (i == SCAN_FAIL)
        return CORE_EPARSE;
    elem->off = start;
    elem->len = i - start;
    *pos = i;
    return 1;
}

int core_json_obj_get(const char *p, struct core_span obj, const char *key, struct core_span *val,
                      enum core_json_type *type)
{
    size_t n = obj.off + obj.len;
    size_t i = skip_ws(p, n, obj.off);
    struct core_span k;
    struct core_span v;
    struct core_span found = {0, 0};
    bool first = true;
    bool dup = false;
    int rc;

    if (i >= n || p[i] != '{')
        return CORE_EPARSE;
    i++;
    /* Every member is visited: a repeated key is refused, never resolved by position. */
    for (;;) {
        rc = member_next(p, n, &i, first, 1, &k, &v);
        if (rc != 1)
            break;
        first = false;
        if (core_json_str_eq(p, k, key)) {
            dup = dup || found.len > 0;
            found = v;
        }
    }
    if (rc < 0)
        return CORE_EPARSE;
    if (found.len == 0)
        return CORE_ENOTFOUND;
    if (dup)
        return CORE_EDUP;
    *val = found;
    if (type != NULL)
        *type = type_of(p[found.off]);
    return 0;
}
