/* The encrypted OAuth credential store (see oauth_store.h). */
#include "auth/oauth_store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/paths.h"

#define KEY_FILE "oauth.key"
#define STORE_FILE "oauth.store"
#define LOCK_FILE "oauth.lock"
#define MAGIC "AGOAUTH1"
#define MAGIC_LEN 8
#define HDR_LEN (MAGIC_LEN + crypto_secretbox_NONCEBYTES)
#define STORE_MAX (4u << 20) /* a store larger than this is refused */
#define PATH_CAP 4096

struct auth_store {
    char store_path[PATH_CAP];
    char lock_path[PATH_CAP];
    unsigned char key[crypto_secretbox_KEYBYTES];
    cJSON *doc;         /* cached plaintext view; NULL = read the file */
    struct stat doc_st; /* the file it came from (st_ino 0: there was none) */
};

/* Wipes every string in a tree (recursively), so plaintext secrets do not linger in freed
 * memory. */
static void wipe_strings(cJSON *j)
{
    for (cJSON *c = j; c != NULL; c = c->next) {
        if (cJSON_IsString(c) && c->valuestring != NULL)
            sodium_memzero(c->valuestring, strlen(c->valuestring));
        if (c->child != NULL)
            wipe_strings(c->child);
    }
}

static void wipe_delete(cJSON *j)
{
    if (j != NULL) {
        if (j->child != NULL)
            wipe_strings(j->child);
        cJSON_Delete(j);
    }
}

static int join(char *out, const char *dir, const char *leaf, char *err, size_t errlen)
{
    int n = snprintf(out, PATH_CAP, "%s/%s", dir, leaf);
    if (n < 0 || n >= PATH_CAP) {
        core_set_err(err, errlen, "%s: path too long", dir);
        return CORE_EINVAL;
    }
    return 0;
}

/* Reads a whole private file (refusing group/other permission bits) into a heap buffer. */
static int read_private(const char *path, size_t max, unsigned char **out, size_t *len, char *err,
                        size_t errlen)
{
    int fd;
    int rc = core_file_open(path, O_RDONLY, 0, &fd, err, errlen);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        core_set_err(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((st.st_mode & 077) != 0) {
        core_set_err(err, errlen, "%s: mode %03o lets others read it; run chmod 600 %s", path,
                     (unsigned)(st.st_mode & 0777), path);
        rc = CORE_EINVAL;
        goto fail;
    }
    if ((size_t)st.st_size > max) {
        core_set_err(err, errlen, "%s: larger than %zu bytes", path, max);
        rc = CORE_ETOOBIG;
        goto fail;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = core_xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            core_set_err(err, errlen, "%s: short read", path);
            sodium_memzero(buf, n);
            core_free(buf);
            rc = CORE_EINVAL;
            goto fail;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
fail:
    close(fd);
    return rc;
}

static int lock_open(struct auth_store *s, int *fd_out, char *err, size_t errlen)
{
    int fd;
    int rc = core_file_open(s->lock_path, O_RDWR | O_CREAT, 0600, &fd, err, errlen);
    if (rc != 0)
        return rc;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            core_set_err(err, errlen, "%s: flock: %s", s->lock_path, strerror(errno));
            close(fd);
            return -errno;
        }
    }
    *fd_out = fd;
    return 0;
}

static void lock_close(int fd)
{
    (void)flock(fd, LOCK_UN); /* closing releases it anyway */
    close(fd);
}

int auth_store_open(const char *dir, struct auth_store **out, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        core_set_err(err, errlen, "libsodium failed to initialise");
        return CORE_EINVAL;
    }
    if (core_path_ensure_private_dir(dir, err, errlen) != 0)
        return CORE_EINVAL;
    struct auth_store *s = core_xcalloc(1, sizeof *s);
    char key_path[PATH_CAP];
    int rc = join(key_path, dir, KEY_FILE, err, errlen);
    if (rc == 0)
        rc = join(s->store_path, dir, STORE_FILE, err, errlen);
    if (rc == 0)
        rc = join(s->lock_path, dir, LOCK_FILE, err, errlen);
    if (rc != 0)
        goto fail;
    int lfd;
    rc = lock_open(s, &lfd, err, errlen);
    if (rc != 0)
        goto fail;
    unsigned char *k = NULL;
    size_t klen = 0;
    rc = read_private(key_path, 64, &k, &klen, err, errlen);
    if (rc == -ENOENT) {
        randombytes_buf(s->key, sizeof s->key);
        rc = core_file_write_atomic(key_path, s->key, sizeof s->key, 0600);
        if (rc != 0)
            core_set_err(err, errlen, "%s: cannot write: %s", key_path, strerror(-rc));
    } else if (rc == 0) {
        if (klen != sizeof s->key) {
            core_set_err(err, errlen, "%s: must hold exactly %zu bytes", key_path, sizeof s->key);
            rc = CORE_EINVAL;
        } else {
            memcpy(s->key, k, sizeof s->key);
        }
        sodium_memzero(k, klen);
        core_free(k);
    }
    lock_close(lfd);
    if (rc != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    sodium_memzero(s->key, sizeof s->key);
    core_free(s);
    return rc;
}

void auth_store_free(struct auth_store *s)
{
    if (s == NULL)
        return;
    wipe_delete(s->doc);
    sodium_memzero(s->key, sizeof s->key);
    core_free(s);
}

void auth_store_invalidate(struct auth_store *s)
{
    wipe_delete(s->doc);
    s->doc = NULL;
}

static cJSON *empty_doc(void)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "v", 1);
    cJSON_AddItemToObject(d, "clients", cJSON_CreateArray());
    cJSON_AddItemToObject(d, "tokens", cJSON_CreateArray());
    return d;
}

/* Reads and decrypts the store file into a fresh tree (an empty one when there is no file). */
static int load_file(struct auth_store *s, cJSON **out, struct stat *st_out, char *err,
                     size_t errlen)
{
    memset(st_out, 0, sizeof *st_out);
    unsigned char *buf = NULL;
    size_t n = 0;
    int rc = read_private(s->store_path, STORE_MAX, &buf, &n, err, errlen);
    if (rc == -ENOENT) {
        *out = empty_doc();
        return 0;
    }
    if (rc != 0)
        return rc;
    if (lstat(s->store_path, st_out) != 0)
        memset(st_out, 0, sizeof *st_out);
    if (n < HDR_LEN + crypto_secretbox_MACBYTES || memcmp(buf, MAGIC, MAGIC_LEN) != 0) {
        core_set_err(err, errlen, "%s: not an agentgate OAuth store; remove it and log in again",
                     s->store_path);
        core_free(buf);
        return CORE_EPARSE;
    }
    size_t clen = n - HDR_LEN;
    size_t plen = clen - crypto_secretbox_MACBYTES;
    unsigned char *plain = core_xmalloc(plen + 1);
    if (crypto_secretbox_open_easy(plain, buf + HDR_LEN, clen, buf + MAGIC_LEN, s->key) != 0) {
        core_set_err(err, errlen,
                     "%s: does not decrypt with oauth.key (tampered with, or the key was "
                     "replaced); remove it and log in again",
                     s->store_path);
        core_free(plain);
        core_free(buf);
        return CORE_EINVAL;
    }
    core_free(buf);
    cJSON *d = cJSON_ParseWithLength((const char *)plain, plen);
    sodium_memzero(plain, plen);
    core_free(plain);
    if (d == NULL || !cJSON_IsObject(d)) {
        wipe_delete(d);
        core_set_err(err, errlen, "%s: holds no valid JSON", s->store_path);
        return CORE_EPARSE;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItem(d, "clients")))
        cJSON_AddItemToObject(d, "clients", cJSON_CreateArray());
    if (!cJSON_IsArray(cJSON_GetObjectItem(d, "tokens")))
        cJSON_AddItemToObject(d, "tokens", cJSON_CreateArray());
    *out = d;
    return 0;
}

static int save_file(struct auth_store *s, const cJSON *doc, char *err, size_t errlen)
{
    char *plain = cJSON_PrintUnformatted(doc);
    size_t plen = strlen(plain);
    size_t n = HDR_LEN + crypto_secretbox_MACBYTES + plen;
    unsigned char *buf = core_xmalloc(n);
    memcpy(buf, MAGIC, MAGIC_LEN);
    randombytes_buf(buf + MAGIC_LEN, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(buf + HDR_LEN, (const unsigned char *)plain, plen, buf + MAGIC_LEN,
                          s->key);
    sodium_memzero(plain, plen);
    cJSON_free(plain);
    int rc = core_file_write_atomic(s->store_path, buf, n, 0600);
    core_free(buf);
    if (rc != 0)
        core_set_err(err, errlen, "%s: cannot write: %s", s->store_path, strerror(-rc));
    return rc;
}

/* The cached view, re-read when the file changed (another process wrote it). */
static int view(struct auth_store *s, cJSON **out, char *err, size_t errlen)
{
    struct stat st;
    bool exists = lstat(s->store_path, &st) == 0;
    if (s->doc != NULL) {
        bool same = exists ? (st.st_ino == s->doc_st.st_ino && st.st_size == s->doc_st.st_size &&
                              st.st_mtim.tv_sec == s->doc_st.st_mtim.tv_sec &&
                              st.st_mtim.tv_nsec == s->doc_st.st_mtim.tv_nsec)
                           : s->doc_st.st_ino == 0;
        if (same) {
            *out = s->doc;
            return 0;
        }
        auth_store_invalidate(s);
    }
    cJSON *d;
    struct stat dst;
    int rc = load_file(s, &d, &dst, err, errlen);
    if (rc != 0)
        return rc;
    s->doc = d;
    s->doc_st = dst;
    *out = d;
    return 0;
}

/* Read-modify-write under the lock: loads the file fresh, lets fn change the tree, writes it
 * back when fn returns > 0 (fn's return value, or an error, is returned). */
static int modify(struct auth_store *s, int (*fn)(cJSON *doc, const void *arg), const void *arg,
                  char *err, size_t errlen)
{
    int lfd;
    int rc = lock_open(s, &lfd, err, errlen);
    if (rc != 0)
        return rc;
    cJSON *d = NULL;
    struct stat st;
    rc = load_file(s, &d, &st, err, errlen);
    if (rc == 0) {
        rc = fn(d, arg);
        if (rc > 0) {
            int w = save_file(s, d, err, errlen);
            if (w != 0)
                rc = w;
        }
    }
    lock_close(lfd);
    wipe_delete(d);
    auth_store_invalidate(s);
    return rc;
}

static char *str_dup(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? core_xstrdup(v->valuestring) : NULL;
}

static const char *str_get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void add_str(cJSON *o, const char *key, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, key, v);
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        core_free(s);
    }
}

void auth_store_tokens_dispose(struct auth_store_tokens *t)
{
    core_free(t->issuer);
    core_free(t->resource);
    core_free(t->server);
    wipe_free(t->access_token);
    wipe_free(t->refresh_token);
    core_free(t->scope);
    core_free(t->token_endpoint);
    core_free(t->resource_param);
    core_free(t->client_id);
    wipe_free(t->client_secret);
    core_free(t->reason);
    memset(t, 0, sizeof *t);
}

int auth_store_tokens_get(struct auth_store *s, const char *resource, struct auth_store_tokens *out,
                          char *err, size_t errlen)
{
    cJSON *d;
    int rc = view(s, &d, err, errlen);
    if (rc != 0)
        return rc;
    const cJSON *best = NULL;
    double best_at = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(d, "tokens"))
    {
        const char *r = str_get(it, "resource");
        if (r == NULL || strcmp(r, resource) != 0)
            continue;
        double at = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "stored_at"));
        if (best == NULL || at > best_at) {
            best = it;
            best_at = at;
        }
    }
    if (best == NULL)
        return CORE_ENOTFOUND;
    struct auth_store_tokens t = {0};
    t.issuer = str_dup(best, "issuer");
    t.resource = str_dup(best, "resource");
    t.server = str_dup(best, "server");
    t.access_token = str_dup(best, "access_token");
    t.refresh_token = str_dup(best, "refresh_token");
    t.scope = str_dup(best, "scope");
    t.token_endpoint = str_dup(best, "token_endpoint");
    t.resource_param = str_dup(best, "resource_param");
    t.client_id = str_dup(best, "client_id");
    t.client_secret = str_dup(best, "client_secret");
    t.reason = str_dup(best, "reason");
    const cJSON *ea = cJSON_GetObjectItem(best, "expires_at");
    t.expires_at = cJSON_IsNumber(ea) ? (int64_t)ea->valuedouble : 0;
    const cJSON *am = cJSON_GetObjectItem(best, "auth_method");
    t.auth_method = cJSON_IsNumber(am) ? (unsigned)am->valueint : 0;
    *out = t;
    return 0;
}

static bool same_str(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int put_tokens(cJSON *d, const void *arg)
{
    const struct auth_store_tokens *t = arg;
    cJSON *arr = cJSON_GetObjectItem(d, "tokens");
    for (int i = cJSON_GetArraySize(arr) - 1; i >= 0; i--) {
        cJSON *it = cJSON_GetArrayItem(arr, i);
        if (same_str(str_get(it, "issuer"), t->issuer) &&
            same_str(str_get(it, "resource"), t->resource))
            wipe_delete(cJSON_DetachItemFromArray(arr, i));
    }
    cJSON *e = cJSON_CreateObject();
    add_str(e, "issuer", t->issuer);
    add_str(e, "resource", t->resource);
    add_str(e, "server", t->server);
    add_str(e, "access_token", t->access_token);
    add_str(e, "refresh_token", t->refresh_token);
    add_str(e, "scope", t->scope);
    cJSON_AddNumberToObject(e, "expires_at", (double)t->expires_at);
    add_str(e, "token_endpoint", t->token_endpoint);
    add_str(e, "resource_param", t->resource_param);
    add_str(e, "client_id", t->client_id);
    add_str(e, "client_secret", t->client_secret);
    cJSON_AddNumberToObject(e, "auth_method", t->auth_method);
    add_str(e, "reason", t->reason);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cJSON_AddNumberToObject(e, "stored_at", (double)ts.tv_sec + ts.tv_nsec / 1e9);
    cJSON_AddItemToArray(arr, e);
    return 1;
}

int auth_store_tokens_put(struct auth_store *s, const struct auth_store_tokens *t, char *err,
                          size_t errlen)
{
    if (t->issuer == NULL || t->resource == NULL)
        return CORE_EINVAL;
    int rc = modify(s, put_tokens, t, err, errlen);
    return rc > 0 ? 0 : rc;
}

struct forget_arg {
    const char *resource;
    int removed;
};

static int forget_tokens(cJSON *d, const void *arg)
{
    struct forget_arg *fa = (struct forget_arg *)arg;
    cJSON *arr = cJSON_GetObjectItem(d, "tokens");
    for (int i = cJSON_GetArraySize(arr) - 1; i >= 0; i--) {
        cJSON *it = cJSON_GetArrayItem(arr, i);
        if (same_str(str_get(it, "resource"), fa->resource)) {
            wipe_delete(cJSON_DetachItemFromArray(arr, i));
            fa->removed++;
        }
    }
    return fa->removed > 0 ? 1 : 0;
}

int auth_store_tokens_forget(struct auth_store *s, const char *resource, char *err, size_t errlen)
{
    struct forget_arg fa = {resource, 0};
    int rc = modify(s, forget_tokens, &fa, err, errlen);
    return rc < 0 ? rc : fa.removed;
}

void auth_store_client_dispose(struct auth_store_client *c)
{
    core_free(c->issuer);
    core_free(c->client_id);
    wipe_free(c->client_secret);
    core_free(c->redirect_uri);
    memset(c, 0, sizeof *c);
}

int auth_store_client_get(struct auth_store *s, const char *issuer, struct auth_store_client *out,
                          char *err, size_t errlen)
{
    cJSON *d;
    int rc = view(s, &d, err, errlen);
    if (rc != 0)
        return rc;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(d, "clients"))
    {
        if (!same_str(str_get(it, "issuer"), issuer) || str_get(it, "client_id") == NULL)
            continue;
        struct auth_store_client c = {0};
        c.issuer = str_dup(it, "issuer");
        c.client_id = str_dup(it, "client_id");
        c.client_secret = str_dup(it, "client_secret");
        c.redirect_uri = str_dup(it, "redirect_uri");
        const cJSON *am = cJSON_GetObjectItem(it, "auth_method");
        c.auth_method = cJSON_IsNumber(am) ? (unsigned)am->valueint : 0;
        *out = c;
        return 0;
    }
    return CORE_ENOTFOUND;
}

static int put_client(cJSON *d, const void *arg)
{
    const struct auth_store_client *c = arg;
    cJSON *arr = cJSON_GetObjectItem(d, "clients");
    for (int i = cJSON_GetArraySize(arr) - 1; i >= 0; i--) {
        if (same_str(str_get(cJSON_GetArrayItem(arr, i), "issuer"), c->issuer))
            wipe_delete(cJSON_DetachItemFromArray(arr, i));
    }
    cJSON *e = cJSON_CreateObject();
    add_str(e, "issuer", c->issuer);
    add_str(e, "client_id", c->client_id);
    add_str(e, "client_secret", c->client_secret);
    add_str(e, "redirect_uri", c->redirect_uri);
    cJSON_AddNumberToObject(e, "auth_method", c->auth_method);
    cJSON_AddItemToArray(arr, e);
    return 1;
}

int auth_store_client_put(struct auth_store *s, const struct auth_store_client *c, char *err,
                          size_t errlen)
{
    if (c->issuer == NULL || c->client_id == NULL)
        return CORE_EINVAL;
    int rc = modify(s, put_client, c, err, errlen);
    return rc > 0 ? 0 : rc;
}
