/* Tool pins kept in a cJSON tree shaped exactly like the file, so loading validates once and
 * saving prints it. Sets are small (tools per server), so the linear key lookups of cJSON are
 * fine. */
#include "policy/pins.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/map.h"

/* Largest pins file we read; thousands of tools take well under 1 MiB. */
#define PINS_MAX_FILE (64u << 20)

/* The definition fields that make up a tool's pin, in the order `what` names them. */
static const char *const pin_fields[] = {"name", "description", "inputSchema", "annotations"};
#define N_PIN_FIELDS (sizeof pin_fields / sizeof pin_fields[0])

struct pol_pins {
    cJSON *root;               /* {"version":1,"servers":{...}}, owned */
    cJSON *servers;            /* root's "servers" object, borrowed */
    struct core_map_str fresh; /* servers whose first listing is being pinned (values: &marker) */
    bool dirty;                /* changed since load or the last save */
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
    unsigned char bin[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(bin, (const unsigned char *)text, strlen(text));
    sodium_bin2hex(hex, 65, bin, sizeof bin);
    cJSON_free(text);
    cJSON_Delete(dup);
}

/* Hashes a tool definition: the whole pin into sha, and a new "fields" object of short hashes
 * (caller owns it). */
static cJSON *tool_digest(const cJSON *tool, char sha[65])
{
    cJSON *def = cJSON_CreateObject();
    cJSON *fields = cJSON_CreateObject();
    for (size_t i = 0; i < N_PIN_FIELDS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tool, pin_fields[i]);
        if (v == NULL)
            continue;
        char hex[65];
        canonical_sha256(v, hex);
        hex[8] = '\0';
        cJSON_AddStringToObject(fields, pin_fields[i], hex);
        cJSON_AddItemToObject(def, pin_fields[i], cJSON_Duplicate(v, 1));
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
    return p;
}

void pol_pins_free(struct pol_pins *p)
{
    if (p == NULL)
        return;
    cJSON_Delete(p->root);
    core_map_str_dispose(&p->fresh);
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
    if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
        core_set_err(err, errlen, "%s: unsupported or missing \"version\" (want 1)", path);
        return false;
    }
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
            if (why != NULL) {
                core_set_err(err, errlen, "%s: server \"%s\" tool \"%s\": %s", path, s->string,
                        t->string, why);
                return false;
            }
        }
    }
    return true;
}

int pol_pins_load(const char *path, struct pol_pins **out, char *err, size_t errlen)
{
    int rc = 0;
    char *text = NULL;
    /* A symlink at path is refused, not followed: the pins decide which tool definitions are
     * trusted, so they come only from the file in the (private) state directory. */
    int fd;
    rc = core_file_open(path, O_RDONLY, 0, &fd, err, errlen);
    if (rc == -ENOENT) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "version", 1);
        cJSON_AddObjectToObject(root, "servers");
        *out = pins_new(root);
        return 0;
    }
    if (rc != 0)
        return rc == -ELOOP ? CORE_EINVAL : rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        core_set_err(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        rc = CORE_EINVAL;
        core_set_err(err, errlen, "%s: mode %04o lets group/others read it; run chmod 600 on it", path,
                (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size > (off_t)PINS_MAX_FILE) {
        rc = CORE_ETOOBIG;
        core_set_err(err, errlen, "%s: larger than %u bytes", path, PINS_MAX_FILE);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    text = core_xmalloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, text + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            core_set_err(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break; /* shrank under us: parse what is there */
        got += (size_t)r;
    }
    text[got] = '\0';
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
    *out = pins_new(root);
out:
    core_free(text);
    close(fd);
    return rc;
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
    cJSON *fields = tool_digest(tool, sha);
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
        pins_describe_change(cJSON_GetObjectItemCaseSensitive(pin, "fields"), fields, what, cap);
        const char *pending = str_item(pin, "pending");
        if (pending != NULL && strcmp(pending, sha) == 0) {
            cJSON_Delete(fields);
        } else {
            set_item(pin, "pending", cJSON_CreateString(sha));
            set_item(pin, "pending_fields", fields);
            p->dirty = true;
        }
        v = POL_PIN_CHANGED;
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
out:
    cJSON_free(text);
    return rc;
}
