/* Tool pins kept in a cJSON tree shaped exactly like the file, so loading validates once and
 * saving prints it. Sets are small (tools per server), so the linear key lookups of cJSON are
 * fine. */
#include "policy/pins.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/map.h"

/* Largest pins file we read; thousands of tools take well under 1 MiB. */
#define PINS_MAX_FILE (64u << 20)

/* The file format written, and the one before it (see pins.h). */
#define PINS_VERSION 2
#define PINS_VERSION_1 1

/* The definition fields that make up a tool's pin, in the order `what` names them. A title is
 * shown to the model as much as a description is, and an outputSchema steers how it reads a
 * result, so both are pinned. */
static const char *const pin_fields[] = {"name",        "title",        "description",
                                         "inputSchema", "outputSchema", "annotations"};
#define N_PIN_FIELDS (sizeof pin_fields / sizeof pin_fields[0])

/* What version 1 pinned, for pins carried over from a version-1 file (marked "v1"). */
static const char *const v1_fields[] = {"name", "description", "inputSchema", "annotations"};
#define N_V1_FIELDS (sizeof v1_fields / sizeof v1_fields[0])

struct pol_pins {
    cJSON *root;               /* {"version":2,"servers":{...}}, owned */
    cJSON *servers;            /* root's "servers" object, borrowed */
    struct core_map_str fresh; /* servers whose first listing is being pinned (values: &marker) */
    /* Servers whose version-1 pins were migrated since the last save, to log at the next one;
     * values: how many, cast to a pointer. */
    struct core_map_str migrated;
    bool dirty; /* changed since load or the last save */
};

static char marker;

/* Internal (GW_STATIC, reached by the tests). */
GW_STATIC void pins_describe_change(const cJSON *old_fields, const cJSON *new_fields, char *what,
                                    size_t cap);


/* ---- canonical JSON and hashes ---- */

struct keyed {
    cJSON *item;
    size_t idx; /* original position, so equal keys keep their order (a stable sort) */
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a;
    const struct keyed *y = b;
    const char *kx = x->item->string ? x->item->string : "";
    const char *ky = y->item->string ? y->item->string : "";
    int c = strcmp(kx, ky);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts the keys of every object in j by byte value (strcmp compares unsigned bytes). The
 * recursion is bounded by cJSON's nesting limit on whatever was parsed. */
static void sort_keys(cJSON *j)
{
    size_t n = 0;
    for (cJSON *c = j->child; c != NULL; c = c->next) {
        sort_keys(c);
        n++;
    }
    if (!cJSON_IsObject(j) || n < 2)
        return;
    struct keyed *v = core_xmalloc(n * sizeof *v);
    size_t i = 0;
    for (cJSON *c = j->child; c != NULL; c = c->next, i++) {
        v[i].item = c;
        v[i].idx = i;
    }
    qsort(v, n, sizeof *v, cmp_keyed);
    /* cJSON's list: head->prev is the tail, tail->next is NULL. */
    for (i = 0; i < n; i++) {
        v[i].item->next = i + 1 < n ? v[i + 1].item : NULL;
        v[i].item->prev = i > 0 ? v[i - 1].item : v[n - 1].item;
    }
    j->child = v[0].item;
    core_free(v);
}

/* SHA-256 (lowercase hex) of the canonical JSON of j. */
static void canonical_sha256(const cJSON *j, char hex[65])
{
    cJSON *dup = cJSON_Duplicate(j, 1);
    if (dup == NULL)
        abort(); /* allocation failure, as core_xmalloc would */
    sort_keys(dup);
    char *text = cJSON_PrintUnformatted(dup);
    if (text == NULL)
        abort();
    core_sha256_hex(text, strlen(text), hex);
    cJSON_free(text);
    cJSON_Delete(dup);
}

/* Hashes a tool definition as version 2 pins it (v1: as version 1 did): the whole pin into
 * sha, and a new "fields" object of short hashes (caller owns it). */
static cJSON *tool_digest(const cJSON *tool, bool v1, char sha[65])
{
    const char *const *names = v1 ? v1_fields : pin_fields;
    size_t n = v1 ? N_V1_FIELDS : N_PIN_FIELDS;
    cJSON *def = cJSON_CreateObject();
    cJSON *fields = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tool, names[i]);
        if (v == NULL)
            continue;
        char hex[65];
        canonical_sha256(v, hex);
        hex[8] = '\0';
        cJSON_AddStringToObject(fields, names[i], hex);
        cJSON_AddItemToObject(def, names[i], cJSON_Duplicate(v, 1));
    }
    canonical_sha256(def, sha);
    cJSON_Delete(def);
    return fields;
}

static const char *str_item(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Writes "a changed", "a and b changed" or "a, b and c changed" for the fields whose short
 * hashes differ (present on one side only counts as changed). */
GW_STATIC void pins_describe_change(const cJSON *old_fields, const cJSON *new_fields, char *what,
                                    size_t cap)
{
    if (what == NULL || cap == 0)
        return;
    const char *names[N_PIN_FIELDS];
    size_t n = 0;
    for (size_t i = 0; i < N_PIN_FIELDS; i++) {
        const char *a = str_item(old_fields, pin_fields[i]);
        const char *b = str_item(new_fields, pin_fields[i]);
        if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
            names[n++] = pin_fields[i];
    }
    if (n == 0) {
        /* Only possible when the pin has no usable field hashes (an edited file). */
        snprintf(what, cap, "definition changed");
        return;
    }
    size_t len = 0;
    what[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " and " : ", ";
        int w = snprintf(what + len, cap - len, "%s%s", sep, names[i]);
        if (w < 0)
            return;
        len += (size_t)w;
    }
    if (len < cap)
        snprintf(what + len, cap - len, " changed");
}

/* Sets obj[key] = item (takes ownership of item), replacing any existing value. */
static void set_item(cJSON *obj, const char *key, cJSON *item)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
}

/* ---- the set ---- */

static struct pol_pins *pins_new(cJSON *root)
{
    struct pol_pins *p = core_xcalloc(1, sizeof *p);
    p->root = root;
    p->servers = cJSON_GetObjectItemCaseSensitive(root, "servers");
    core_map_str_init(&p->fresh);
    core_map_str_init(&p->migrated);
    return p;
}

void pol_pins_free(struct pol_pins *p)
{
    if (p == NULL)
        return;
    cJSON_Delete(p->root);
    core_map_str_dispose(&p->fresh);
    core_map_str_dispose(&p->migrated);
    core_free(p);
}

static bool is_hex(const char *s, size_t len)
{
    if (s == NULL || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static bool is_string_object(const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return false;
    for (const cJSON *c = o->child; c != NULL; c = c->next) {
        if (!cJSON_IsString(c))
            return false;
    }
    return true;
}

/* Checks the shape of a parsed pins file; writes a message and returns false when it is wrong. */
static bool validate(const char *path, const cJSON *root, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        core_set_err(err, errlen, "%s: not a JSON object", path);
        return false;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(ver) ||
        (ver->valuedouble != PINS_VERSION && ver->valuedouble != PINS_VERSION_1)) {
        core_set_err(err, errlen, "%s: unsupported or missing \"version\" (want 1 or 2)", path);
        return false;
    }
    bool v2 = ver->valuedouble == PINS_VERSION;
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(root, "servers");
    if (!cJSON_IsObject(servers)) {
        core_set_err(err, errlen, "%s: \"servers\" is missing or not an object", path);
        return false;
    }
    for (const cJSON *s = servers->child; s != NULL; s = s->next) {
        if (!cJSON_IsObject(s)) {
            core_set_err(err, errlen, "%s: server \"%s\" is not an object", path, s->string);
            return false;
        }
        for (const cJSON *t = s->child; t != NULL; t = t->next) {
            const char *why = NULL;
            const cJSON *pend = cJSON_GetObjectItemCaseSensitive(t, "pending");
            const cJSON *pf = cJSON_GetObjectItemCaseSensitive(t, "pending_fields");
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(t, "fields");
            const cJSON *v1 = cJSON_GetObjectItemCaseSensitive(t, "v1");
            if (!cJSON_IsObject(t))
                why = "not an object";
            else if (!is_hex(str_item(t, "sha256"), 64))
                why = "\"sha256\" is not 64 lowercase hex digits";
            else if (fields != NULL && !is_string_object(fields))
                why = "\"fields\" is not an object of strings";
            else if (pend != NULL && !is_hex(str_item(t, "pending"), 64))
                why = "\"pending\" is not 64 lowercase hex digits";
            else if (pf != NULL && !is_string_object(pf))
                why = "\"pending_fields\" is not an object of strings";
            else if (v2 && v1 != NULL && !cJSON_IsTrue(v1))
                why = "\"v1\" is not true";
            if (why != NULL) {
                core_set_err(err, errlen, "%s: server \"%s\" tool \"%s\": %s", path, s->string,
                        t->string, why);
                return false;
            }
        }
    }
    return true;
}

/* Turns a validated version-1 tree into version 2 in memory: every pin is marked "v1", so
 * that it is checked with the version-1 hash until its tool is seen again (pol_pins_check).
 * Nothing is quarantined and nothing written: the set is not dirty, and until it is saved the
 * file on disk means the same. A version-2 tree is left alone. */
static void upgrade(cJSON *root)
{
    cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver->valuedouble == PINS_VERSION)
        return;
    cJSON_SetNumberValue(ver, PINS_VERSION);
    cJSON *servers = cJSON_GetObjectItemCaseSensitive(root, "servers");
    for (cJSON *s = servers->child; s != NULL; s = s->next) {
        for (cJSON *t = s->child; t != NULL; t = t->next)
            set_item(t, "v1", cJSON_CreateTrue());
    }
}

int pol_pins_load(const char *path, struct pol_pins **out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t got = 0;
    /* A symlink at path is refused, not followed: the pins decide which tool definitions are
     * trusted, so they come only from the (private) file in the (private) state directory. */
    int rc = core_file_read_all(path, CORE_FILE_NOFOLLOW | CORE_FILE_PRIVATE, PINS_MAX_FILE, &text,
                                &got, NULL, err, errlen);
    if (rc == -ENOENT) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "version", PINS_VERSION);
        cJSON_AddObjectToObject(root, "servers");
        *out = pins_new(root);
        return 0;
    }
    if (rc != 0)
        return rc == -ELOOP ? CORE_EINVAL : rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, got, &end, 0);
    if (root == NULL) {
        rc = CORE_EPARSE;
        size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
        core_set_err(err, errlen, "%s: invalid JSON near byte %zu", path, at);
        goto out;
    }
    if (!validate(path, root, err, errlen)) {
        cJSON_Delete(root);
        rc = CORE_EPARSE;
        goto out;
    }
    upgrade(root);
    *out = pins_new(root);
out:
    core_free(text);
    return rc;
}

/* Records the definition hashed to sha and fields (takes ownership of fields) as the pending
 * change of pin, unless it is pending already, and says what changed. Returns CHANGED. */
static enum pol_pin_verdict changed(struct pol_pins *p, cJSON *pin, const char *sha, cJSON *fields,
                                    char *what, size_t cap)
{
    pins_describe_change(cJSON_GetObjectItemCaseSensitive(pin, "fields"), fields, what, cap);
    const char *pending = str_item(pin, "pending");
    if (pending != NULL && strcmp(pending, sha) == 0) {
        cJSON_Delete(fields);
    } else {
        set_item(pin, "pending", cJSON_CreateString(sha));
        set_item(pin, "pending_fields", fields);
        p->dirty = true;
    }
    return POL_PIN_CHANGED;
}

enum pol_pin_verdict pol_pins_check(struct pol_pins *p, const char *server, const cJSON *tool,
                                    char *what, size_t cap)
{
    if (what != NULL && cap > 0)
        what[0] = '\0';
    const char *name = str_item(tool, "name");
    if (p == NULL || name == NULL)
        return POL_PIN_SAME;

    char sha[65];
    cJSON *fields = tool_digest(tool, false, sha);
    size_t slen = strlen(server);
    cJSON *srv = cJSON_GetObjectItemCaseSensitive(p->servers, server);
    if (srv == NULL)
        srv = cJSON_AddObjectToObject(p->servers, server);
    cJSON *pin = cJSON_GetObjectItemCaseSensitive(srv, name);
    if (pin == NULL) {
        bool first = srv->child == NULL || core_map_str_get(&p->fresh, server, slen) != NULL;
        pin = cJSON_AddObjectToObject(srv, name);
        cJSON_AddStringToObject(pin, "sha256", sha);
        cJSON_AddItemToObject(pin, "fields", fields);
        p->dirty = true;
        if (!first)
            return POL_PIN_NEW;
        core_map_str_put(&p->fresh, server, slen, &marker);
        return POL_PIN_FIRST;
    }
    /* A pinned tool seen again: the server's first listing is over. */
    (void)core_map_str_del(&p->fresh, server, slen); /* NULL when it was not fresh */

    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pin, "v1"))) {
        /* Pinned by version 1, which did not hash title and outputSchema: compare the way it
         * did. A match is the definition that was pinned (as far as version 1 could tell), so
         * it is pinned again, whole; anything else is a change like any other, kept in
         * version-1 terms until it is approved and seen again. */
        char old_sha[65];
        cJSON *old_fields = tool_digest(tool, true, old_sha);
        if (strcmp(str_item(pin, "sha256"), old_sha) != 0) {
            cJSON_Delete(fields);
            return changed(p, pin, old_sha, old_fields, what, cap);
        }
        cJSON_Delete(old_fields);
        set_item(pin, "sha256", cJSON_CreateString(sha));
        set_item(pin, "fields", fields);
        cJSON_DeleteItemFromObjectCaseSensitive(pin, "pending");
        cJSON_DeleteItemFromObjectCaseSensitive(pin, "pending_fields");
        cJSON_DeleteItemFromObjectCaseSensitive(pin, "v1");
        uintptr_t n = (uintptr_t)core_map_str_get(&p->migrated, server, slen);
        core_map_str_put(&p->migrated, server, slen, (void *)(n + 1));
        p->dirty = true;
        return POL_PIN_SAME;
    }

    enum pol_pin_verdict v;
    if (strcmp(str_item(pin, "sha256"), sha) == 0) {
        if (cJSON_GetObjectItemCaseSensitive(pin, "pending") != NULL ||
            cJSON_GetObjectItemCaseSensitive(pin, "pending_fields") != NULL) {
            cJSON_DeleteItemFromObjectCaseSensitive(pin, "pending");
            cJSON_DeleteItemFromObjectCaseSensitive(pin, "pending_fields");
            p->dirty = true;
        }
        cJSON_Delete(fields);
        v = POL_PIN_SAME;
    } else {
        v = changed(p, pin, sha, fields, what, cap);
    }
    return v;
}

/* Moves a tool's pending definition into its pin. */
static void accept_pending(cJSON *pin)
{
    cJSON *pending = cJSON_DetachItemFromObjectCaseSensitive(pin, "pending");
    cJSON *pf = cJSON_DetachItemFromObjectCaseSensitive(pin, "pending_fields");
    set_item(pin, "sha256", pending);
    if (pf != NULL)
        set_item(pin, "fields", pf);
    else
        cJSON_DeleteItemFromObjectCaseSensitive(pin, "fields");
}

static bool has_pending(const cJSON *pin)
{
    return str_item(pin, "pending") != NULL;
}

int pol_pins_approve(struct pol_pins *p, const char *server, const char *tool, int *n, char *err,
                     size_t errlen)
{
    cJSON *srv = p ? cJSON_GetObjectItemCaseSensitive(p->servers, server) : NULL;
    if (srv == NULL || srv->child == NULL) {
        core_set_err(err, errlen, "no tools of server %s are pinned", server);
        return CORE_ENOTFOUND;
    }
    if (tool != NULL) {
        cJSON *pin = cJSON_GetObjectItemCaseSensitive(srv, tool);
        if (pin == NULL) {
            core_set_err(err, errlen, "server %s has no pinned tool %s", server, tool);
            return CORE_ENOTFOUND;
        }
        if (!has_pending(pin)) {
            core_set_err(err, errlen, "tool %s of server %s has no change waiting for approval", tool,
                    server);
            return CORE_ENOTFOUND;
        }
        accept_pending(pin);
        p->dirty = true;
        *n = 1;
        return 0;
    }
    int count = 0;
    for (cJSON *pin = srv->child; pin != NULL; pin = pin->next) {
        if (has_pending(pin)) {
            accept_pending(pin);
            count++;
        }
    }
    if (count == 0) {
        core_set_err(err, errlen, "server %s has no changes waiting for approval", server);
        return CORE_ENOTFOUND;
    }
    p->dirty = true;
    *n = count;
    return 0;
}

bool pol_pins_is_pending(const struct pol_pins *p, const char *server, const char *tool)
{
    if (p == NULL)
        return false;
    const cJSON *srv = cJSON_GetObjectItemCaseSensitive(p->servers, server);
    return has_pending(cJSON_GetObjectItemCaseSensitive(srv, tool));
}

bool pol_pins_has_server(const struct pol_pins *p, const char *server)
{
    if (p == NULL)
        return false;
    const cJSON *srv = cJSON_GetObjectItemCaseSensitive(p->servers, server);
    return srv != NULL && srv->child != NULL;
}

bool pol_pins_dirty(const struct pol_pins *p)
{
    return p != NULL && p->dirty;
}

int pol_pins_save(struct pol_pins *p, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    cJSON *dup = cJSON_Duplicate(p->root, 1);
    if (dup == NULL)
        abort();
    sort_keys(dup); /* a stable file: the same pins always print the same bytes */
    char *text = cJSON_Print(dup);
    cJSON_Delete(dup);
    if (text == NULL)
        abort();
    /* The text and its final newline, written whole or not at all. */
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the buffer is not a string any more */
    rc = core_file_write_atomic(path, text, len + 1, 0600);
    if (rc != 0) {
        core_set_err(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
        goto out;
    }
    p->dirty = false;
    core_map_str_dispose(&p->fresh);
    core_map_str_init(&p->fresh);
    /* Said once the new pins are on disk: one line per server, however many tools it has. */
    size_t it = 0;
    const char *server;
    void *n;
    while (core_map_str_next(&p->migrated, &it, &server, &n))
        core_log(CORE_LOG_INFO, "pins",
                 "%s: %zu pin(s) from a version-1 pins file matched and were re-pinned with "
                 "title and outputSchema",
                 server, (size_t)(uintptr_t)n);
    core_map_str_dispose(&p->migrated);
    core_map_str_init(&p->migrated);
out:
    cJSON_free(text);
    return rc;
}
