/* JSON-RPC 2.0 envelope scanning: finds the top-level members of a frame without building a
 * tree, so results can be forwarded as the peer's own bytes with only the id spliced. */
#ifndef GW_CORE_JSONRPC_H
#define GW_CORE_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* JSON value types as the scanner sees them. */
enum core_json_type {
    CORE_JSON_ABSENT = 0,
    CORE_JSON_NULL,
    CORE_JSON_FALSE,
    CORE_JSON_TRUE,
    CORE_JSON_NUMBER,
    CORE_JSON_STRING,
    CORE_JSON_ARRAY,
    CORE_JSON_OBJECT,
};

/* What kind of JSON-RPC message a frame holds. */
enum core_rpc_kind {
    CORE_RPC_INVALID = 0,  /* valid JSON but not a JSON-RPC message */
    CORE_RPC_REQUEST,      /* method + id */
    CORE_RPC_NOTIFICATION, /* method, no id */
    CORE_RPC_RESULT,       /* id + result */
    CORE_RPC_ERROR,        /* id + error */
    CORE_RPC_BATCH,        /* top-level array; scan the elements with core_rpc_batch_next */
};

/* A byte range inside the scanned frame. len == 0 means absent. */
struct core_span {
    size_t off;
    size_t len;
};

#define CORE_RPC_METHOD_MAX 128

/* The members of an object `params` that the gateway reads to decide anything. The scan records
 * where each sits, so routing never scans params again, and notices when one is repeated. */
enum core_rpc_param {
    CORE_P_NAME = 0,          /* tools/call, prompts/get */
    CORE_P_URI,               /* resources/ requests, notifications/resources/updated */
    CORE_P_CURSOR,            /* list requests */
    CORE_P_META,              /* _meta (its progressToken) */
    CORE_P_REF,               /* completion/complete */
    CORE_P_LEVEL,             /* logging/setLevel, notifications/message */
    CORE_P_REQUEST_ID,        /* notifications/cancelled */
    CORE_P_REASON,            /* notifications/cancelled */
    CORE_P_PROGRESS_TOKEN,    /* notifications/progress */
    CORE_P_PROTOCOL_VERSION,  /* initialize */
    CORE_P_CAPABILITIES,      /* initialize */
    CORE_P_CLIENT_INFO,       /* initialize */
    CORE_P_COUNT,
};

struct core_rpc_env {
    enum core_rpc_kind kind;
    struct core_span id;       /* the id value's exact bytes, e.g. `17`, `"abc"` */
    enum core_json_type id_type;
    struct core_span params;   /* the params value's bytes (object or array) */
    struct core_span result;   /* the result value's bytes */
    struct core_span error;    /* the error value's bytes */
    struct core_span method;   /* the method string token's bytes, quotes included */
    /* The method decoded (escapes resolved), NUL-terminated; empty if absent.
     * A method longer than CORE_RPC_METHOD_MAX-1 bytes makes the frame CORE_RPC_INVALID. */
    char method_str[CORE_RPC_METHOD_MAX];
    bool has_jsonrpc;          /* "jsonrpc":"2.0" was present */
    /* The members of params named by enum core_rpc_param (value spans; len 0 = absent). Only
     * recorded when params is an object. */
    struct core_span param[CORE_P_COUNT];
    /* A recorded member (a top-level one, or one of param[]) appears more than once: the frame
     * means different things to parsers that keep the first and those that keep the last, so
     * the gateway must refuse it. dup_key names the first repeated key seen. */
    bool dup;
    const char *dup_key;       /* static string, NULL unless dup */
};

/* Scans one complete JSON text p[0..n). Validates the whole text's JSON syntax (nesting depth
 * limited to 256), including inside params/result (they are skipped, not parsed).
 * Returns 0 and fills *env (kind may be CORE_RPC_INVALID for valid JSON that is not a
 * JSON-RPC message, e.g. a string, or an object with neither method nor id),
 * or CORE_EPARSE for malformed JSON (env then untouched). Leading/trailing whitespace is allowed.
 * A repeated top-level member or recorded params member sets env->dup (the spans then hold the
 * last one; callers must refuse such a frame). Keys are compared decoded ("\u0069d" is "id").
 * Allocates nothing. UTF-8 is not validated, and \u escapes may hold lone surrogates.
 * Classification is strict; these are CORE_RPC_INVALID:
 * - an id that is not a string, number or null (a null id is accepted everywhere; MCP forbids
 *   it in requests, so callers check id_type);
 * - a method that is not a string, decodes to more than CORE_RPC_METHOD_MAX-1 bytes, contains
 *   an escaped NUL or an unpaired surrogate, or comes with result or error;
 * - params that is not an object or array (in a request or notification);
 * - a response without id, or with both or neither of result and error.
 * The error member's type is not checked, so a sloppy error reply still resolves its request.
 * has_jsonrpc does not affect kind. An empty batch "[]" is CORE_RPC_BATCH with no elements. */
GW_MUST_CHECK int core_rpc_scan(const char *p, size_t n, struct core_rpc_env *env);

/* Iterates the elements of a batch (a top-level array). *pos starts at 0.
 * On each call writes the next element's span to *elem and returns 1, returns 0 at the end,
 * or CORE_EPARSE. The frame must already have passed core_rpc_scan. */
GW_MUST_CHECK int core_rpc_batch_next(const char *p, size_t n, size_t *pos, struct core_span *elem);

/* Decodes a JSON string token (with quotes) into out (NUL-terminated, at most cap-1 bytes).
 * Returns the decoded length, or CORE_ETOOBIG / CORE_EPARSE. \u escapes become UTF-8. */
GW_MUST_CHECK int core_json_unescape(const char *tok, size_t n, char *out, size_t cap);

/* Returns true if the span holds exactly this JSON string (compared decoded). */
bool core_json_str_eq(const char *p, struct core_span s, const char *want);

/* Finds a member of the JSON object at p[span] by key (top level of that object only, keys
 * compared decoded). Returns 0 and writes the value's span (offsets relative to p) and type
 * (type may be NULL), CORE_ENOTFOUND, CORE_EDUP when the key appears more than once (nothing
 * written: what it means depends on the reader), or CORE_EPARSE when the span does not hold an
 * object. The object must already be valid JSON. */
int core_json_obj_get(const char *p, struct core_span obj, const char *key, struct core_span *val,
                      enum core_json_type *type);

#endif
