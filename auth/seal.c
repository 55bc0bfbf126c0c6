/* AES-256-GCM sealing with a process-global key ring (wire format in seal.h). libsodium and
 * mbedTLS are two implementations of the same construction; everything above seal_gcm and
 * open_gcm is shared, so the backends differ only in who runs the cipher. */
#include "auth/seal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mbedtls/gcm.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/log.h"
#include "core/paths.h"

#define KEY_BYTES 32
#define ID_BYTES 4
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define HDR_BYTES (1 + ID_BYTES) /* version and key id: the part of the AD that is on the wire */
#define OVERHEAD (HDR_BYTES + NONCE_BYTES + TAG_BYTES)
#define VERSION 0x01
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* Longest token auth_open_ad decodes (peer input); longer ones are refused before allocating. */
#define TOKEN_MAX ((size_t)1 << 20)
/* Most data auth_seal_ad accepts, so that every token it mints stays within TOKEN_MAX. */
#define DATA_MAX (TOKEN_MAX / 4 * 3 - OVERHEAD)
#define KEY_FILE "session.key"
#define CURSOR_AD "cursor"

_Static_assert(crypto_aead_aes256gcm_KEYBYTES == KEY_BYTES, "AES-256 key size");
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == NONCE_BYTES, "GCM nonce size");
_Static_assert(crypto_aead_aes256gcm_ABYTES == TAG_BYTES, "GCM tag size");

struct key {
    unsigned char k[KEY_BYTES];
    unsigned char id[ID_BYTES]; /* first bytes of SHA-256(k), written into every token */
};

struct ring {
    bool has_current;
    struct key current;  /* seals and opens */
    struct key *retired; /* core_xmalloc'd array of n_retired keys that only open */
    size_t n_retired;
};

static struct ring ring;
static enum auth_backend backend; /* AUTH_BACKEND_AUTO until the first use resolves it */

GW_STATIC int seal_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
                       const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
                       unsigned char *out);
GW_STATIC int open_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
                       const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
                       unsigned char *out);


/* ---- backends ---- */

static bool sodium_aes_usable(void)
{
    /* sodium_init detects the CPU features that crypto_aead_aes256gcm_is_available reports. */
    return sodium_init() >= 0 && crypto_aead_aes256gcm_is_available() == 1;
}

static void resolve_auto(void)
{
    backend = sodium_aes_usable() ? AUTH_BACKEND_SODIUM : AUTH_BACKEND_MBEDTLS;
}

int auth_set_backend(enum auth_backend b)
{
    switch (b) {
    case AUTH_BACKEND_AUTO:
        resolve_auto();
        return 0;
    case AUTH_BACKEND_SODIUM:
        if (!sodium_aes_usable())
            return CORE_EINVAL;
        backend = b;
        return 0;
    case AUTH_BACKEND_MBEDTLS:
        backend = b;
        return 0;
    }
    return CORE_EINVAL;
}

static enum auth_backend current_backend(void)
{
    if (backend == AUTH_BACKEND_AUTO)
        resolve_auto();
    return backend;
}

const char *auth_backend_name(void)
{
    return current_backend() == AUTH_BACKEND_SODIUM ? "libsodium" : "mbedtls";
}

/* Applies AGENTGATE_AES when it is set and not empty. Returns 0 or CORE_EINVAL with a message. */
static int backend_from_env(char *err, size_t errlen)
{
    const char *v = getenv("AGENTGATE_AES");
    if (v == NULL || *v == '\0')
        return 0;
    if (strcmp(v, "auto") == 0) {
        resolve_auto();
        return 0;
    }
    if (strcmp(v, "mbedtls") == 0) {
        backend = AUTH_BACKEND_MBEDTLS;
        return 0;
    }
    if (strcmp(v, "sodium") != 0) {
        core_set_err(err, errlen, "AGENTGATE_AES=%.40s: expected sodium or mbedtls", v);
        return CORE_EINVAL;
    }
    if (!sodium_aes_usable()) {
        core_set_err(err, errlen,
                "AGENTGATE_AES=sodium: libsodium's AES-256-GCM needs a CPU with AES-NI and "
                "PCLMUL, which this one lacks; use AGENTGATE_AES=mbedtls or unset it");
        return CORE_EINVAL;
    }
    backend = AUTH_BACKEND_SODIUM;
    return 0;
}

/* Encrypts n bytes of in under key and nonce (NONCE_BYTES) with additional data ad, writing n
 * bytes of ciphertext and then the TAG_BYTES tag to out. Returns 0 or CORE_EINVAL. */
GW_STATIC int seal_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
                       const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
                       unsigned char *out)
{
    static const unsigned char empty[1];
    if (in == NULL)
        in = empty;
    if (b == AUTH_BACKEND_SODIUM) {
        unsigned long long clen = 0;
        if (crypto_aead_aes256gcm_encrypt(out, &clen, in, n, ad, adlen, NULL, nonce, key) != 0)
            return CORE_EINVAL;
        return 0;
    }
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    int rc = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, KEY_BYTES * 8);
    if (rc == 0)
        rc = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, n, nonce, NONCE_BYTES, ad, adlen,
                                       in, out, TAG_BYTES, out + n);
    mbedtls_gcm_free(&g); /* zeroizes the expanded key */
    return rc == 0 ? 0 : CORE_EINVAL;
}

/* Checks and decrypts in (n bytes of ciphertext followed by the tag) into out (n bytes).
 * Returns 0 or CORE_EINVAL (tag mismatch; out holds no plaintext then). */
GW_STATIC int open_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
                       const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
                       unsigned char *out)
{
    int rc;
    if (b == AUTH_BACKEND_SODIUM) {
        unsigned long long mlen = 0;
        rc = crypto_aead_aes256gcm_decrypt(out, &mlen, NULL, in, n + TAG_BYTES, ad, adlen, nonce,
                                           key);
    } else {
        mbedtls_gcm_context g;
        mbedtls_gcm_init(&g);
        rc = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, KEY_BYTES * 8);
        if (rc == 0)
            rc = mbedtls_gcm_auth_decrypt(&g, n, nonce, NONCE_BYTES, ad, adlen, in + n, TAG_BYTES,
                                          in, out);
        mbedtls_gcm_free(&g);
    }
    if (rc != 0) {
        sodium_memzero(out, n);
        return CORE_EINVAL;
    }
    return 0;
}

/* ---- the ring ---- */

static void key_set(struct key *k, const unsigned char raw[KEY_BYTES])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    memcpy(k->k, raw, KEY_BYTES);
    crypto_hash_sha256(h, raw, KEY_BYTES);
    memcpy(k->id, h, ID_BYTES);
    sodium_memzero(h, sizeof h);
}

static void ring_wipe(struct ring *r)
{
    sodium_memzero(&r->current, sizeof r->current);
    if (r->retired != NULL) {
        sodium_memzero(r->retired, r->n_retired * sizeof *r->retired);
        core_free(r->retired);
    }
    r->retired = NULL;
    r->n_retired = 0;
    r->has_current = false;
}

/* Appends a retired key. The array is copied rather than realloc'd so no stale copy of a key is
 * left in freed memory. */
static void ring_add_retired(struct ring *r, const unsigned char raw[KEY_BYTES])
{
    struct key *grown = core_xmalloc((r->n_retired + 1) * sizeof *grown);
    if (r->n_retired > 0)
        memcpy(grown, r->retired, r->n_retired * sizeof *grown);
    key_set(&grown[r->n_retired], raw);
    if (r->retired != NULL) {
        sodium_memzero(r->retired, r->n_retired * sizeof *r->retired);
        core_free(r->retired);
    }
    r->retired = grown;
    r->n_retired++;
}

/* Replaces the global ring with *next (wiping the old one) and leaves *next empty. */
static void ring_install(struct ring *next)
{
    ring_wipe(&ring);
    ring = *next;
    sodium_memzero(next, sizeof *next);
}

void auth_keys_clear(void)
{
    ring_wipe(&ring);
}

int auth_seal_init(void)
{
    char err[256];
    if (sodium_init() < 0) {
        core_log(CORE_LOG_ERROR, "auth", "libsodium failed to initialise");
        return CORE_EINVAL;
    }
    if (backend_from_env(err, sizeof err) != 0) {
        core_log(CORE_LOG_ERROR, "auth", "%s", err);
        return CORE_EINVAL;
    }
    unsigned char raw[KEY_BYTES];
    struct ring next = {0};
    randombytes_buf(raw, sizeof raw);
    key_set(&next.current, raw);
    next.has_current = true;
    sodium_memzero(raw, sizeof raw);
    ring_install(&next);
    return 0;
}

/* ---- sealing ---- */

/* Returns the GCM additional data: the token header followed by the caller's ad (core_free). */
static unsigned char *full_ad(const unsigned char *hdr, const void *ad, size_t adlen)
{
    unsigned char *p = core_xmalloc(HDR_BYTES + adlen);
    memcpy(p, hdr, HDR_BYTES);
    if (adlen > 0)
        memcpy(p + HDR_BYTES, ad, adlen);
    return p;
}

int auth_seal_ad(const void *ad, size_t adlen, const void *data, size_t n, struct core_buf *out)
{
    if (!ring.has_current)
        return CORE_EINVAL;
    if (n > DATA_MAX)
        return CORE_ETOOBIG;
    size_t raw_len = OVERHEAD + n;
    size_t enc_size = sodium_base64_ENCODED_LEN(raw_len, B64); /* with the NUL */
    /* The buffer always has a slot for the NUL past its capacity. */
    int rc = core_buf_reserve(out, enc_size - 1);
    if (rc != 0)
        return rc;
    unsigned char *raw = core_xmalloc(raw_len);
    raw[0] = VERSION;
    memcpy(raw + 1, ring.current.id, ID_BYTES);
    randombytes_buf(raw + HDR_BYTES, NONCE_BYTES);
    unsigned char *fad = full_ad(raw, ad, adlen);
    rc = seal_gcm(current_backend(), ring.current.k, raw + HDR_BYTES, fad, HDR_BYTES + adlen, data,
                  n, raw + HDR_BYTES + NONCE_BYTES);
    if (rc == 0) {
        sodium_bin2base64(out->data + out->len, enc_size, raw, raw_len, B64);
        out->len += enc_size - 1;
    }
    core_free(fad);
    core_free(raw);
    return rc;
}

/* Tries one key; returns true when it opened the token into dst. */
static bool try_key(const struct key *k, const unsigned char *raw, const unsigned char *fad,
                    size_t fadlen, size_t mlen, unsigned char *dst)
{
    if (memcmp(k->id, raw + 1, ID_BYTES) != 0)
        return false;
    return open_gcm(current_backend(), k->k, raw + HDR_BYTES, fad, fadlen,
                    raw + HDR_BYTES + NONCE_BYTES, mlen, dst) == 0;
}

int auth_open_ad(const void *ad, size_t adlen, const char *tok, size_t n, struct core_buf *out)
{
    if (tok == NULL || n > TOKEN_MAX)
        return CORE_EPARSE;
    size_t cap = n / 4 * 3 + 3;
    unsigned char *raw = core_xmalloc(cap);
    unsigned char *fad = NULL;
    size_t raw_len = 0;
    int rc = CORE_EPARSE;
    /* With no b64_end, libsodium fails unless all of tok is canonical base64url. */
    if (sodium_base642bin(raw, cap, tok, n, NULL, &raw_len, NULL, B64) != 0 || raw_len < OVERHEAD ||
        raw[0] != VERSION)
        goto out;
    size_t mlen = raw_len - OVERHEAD;
    rc = core_buf_reserve(out, mlen);
    if (rc != 0)
        goto out;
    fad = full_ad(raw, ad, adlen);
    unsigned char *dst = (unsigned char *)out->data + out->len;
    /* Ids are 32 bits, so two keys may share one: every key with the id gets a try. */
    bool opened =
        ring.has_current && try_key(&ring.current, raw, fad, HDR_BYTES + adlen, mlen, dst);
    for (size_t i = 0; !opened && i < ring.n_retired; i++)
        opened = try_key(&ring.retired[i], raw, fad, HDR_BYTES + adlen, mlen, dst);
    if (opened)
        out->len += mlen;
    out->data[out->len] = '\0';
    rc = opened ? 0 : CORE_EINVAL;
out:
    core_free(fad);
    core_free(raw);
    return rc;
}

int auth_seal(const void *data, size_t n, struct core_buf *out)
{
    return auth_seal_ad(CURSOR_AD, strlen(CURSOR_AD), data, n, out);
}

int auth_open(const char *tok, size_t n, struct core_buf *out)
{
    return auth_open_ad(CURSOR_AD, strlen(CURSOR_AD), tok, n, out);
}

/* ---- key files ---- */

/* Writes dir/name into out. Returns 0 or CORE_EINVAL (too long, message in err). */
static int join_path(char *out, size_t cap, const char *dir, const char *name, char *err,
                     size_t errlen)
{
    int w = snprintf(out, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap) {
        core_set_err(err, errlen, "state directory path too long: %.200s", dir);
        return CORE_EINVAL;
    }
    return 0;
}

/* Reads a key file after checking that it is a regular file of exactly KEY_BYTES bytes with no
 * group/other permission bits. Returns 0, CORE_ENOTFOUND (no such file) or CORE_EINVAL with a
 * message in err; raw holds nothing on failure. */
static int read_key_file(const char *path, unsigned char raw[KEY_BYTES], char *err, size_t errlen)
{
    /* A symlink there is refused rather than read through: a key is only ever the file in the
     * state directory. The limit is above KEY_BYTES so that a wrong size can be reported. */
    char *text = NULL;
    size_t len = 0;
    char why[600];
    int rc = core_file_read_all(path, CORE_FILE_NOFOLLOW | CORE_FILE_PRIVATE, 4 * KEY_BYTES, &text,
                                &len, NULL, why, sizeof why);
    if (rc == -ENOENT)
        return CORE_ENOTFOUND;
    if (rc != 0) {
        core_set_err(err, errlen, "session key file %s", why);
        return CORE_EINVAL;
    }
    rc = 0;
    if (len != KEY_BYTES) {
        core_set_err(err, errlen, "session key file %s is %zu bytes; a key is exactly %d bytes",
                     path, len, KEY_BYTES);
        rc = CORE_EINVAL;
    } else {
        memcpy(raw, text, KEY_BYTES);
    }
    sodium_memzero(text, len);
    core_free(text);
    return rc;
}

/* Creates path with O_EXCL and mode 0600 holding raw, fsync'd. Returns 0, CORE_EBUSY when path
 * already exists, or CORE_EINVAL with a message in err (nothing is left behind then). */
static int write_key_file(const char *path, const unsigned char raw[KEY_BYTES], char *err,
                          size_t errlen)
{
    /* O_EXCL already fails on any existing entry, a symlink included; O_NOFOLLOW says so. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return CORE_EBUSY;
        core_set_err(err, errlen, "cannot create session key file %s: %s", path, strerror(errno));
        return CORE_EINVAL;
    }
    const char *what = NULL;
    int e = 0;
    /* The umask can only narrow 0600; this makes the mode exact. */
    if (fchmod(fd, 0600) != 0) {
        what = "chmod";
        e = errno;
    }
    size_t put = 0;
    while (what == NULL && put < KEY_BYTES) {
        ssize_t w = write(fd, raw + put, KEY_BYTES - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            what = "write";
            e = w < 0 ? errno : EIO;
            break;
        }
        put += (size_t)w;
    }
    if (what == NULL && fsync(fd) != 0) {
        what = "fsync";
        e = errno;
    }
    if (close(fd) != 0 && what == NULL) {
        what = "close";
        e = errno;
    }
    if (what != NULL) {
        unlink(path);
        core_set_err(err, errlen, "cannot %s session key file %s: %s", what, path, strerror(e));
        return CORE_EINVAL;
    }
    return 0;
}

/* Makes renames and creations in dir durable. Best effort: a failure only risks the last change
 * after a power loss, and the key files themselves were fsync'd. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fsync(fd) != 0)
        core_log(CORE_LOG_DEBUG, "auth", "fsync of %s failed: %s", dir, strerror(errno));
    close(fd);
}

/* Returns true when name is "session.key.<UNIXTIME>" (1 to 19 digits), writing the time. */
static bool parse_retired(const char *name, uint64_t *t)
{
    static const char prefix[] = KEY_FILE ".";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *d = name + sizeof prefix - 1;
    size_t len = strlen(d);
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (d[i] < '0' || d[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    *t = v;
    return true;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Prepares state_dir and the path of its current key file. Returns 0 or CORE_EINVAL. */
static int prepare_dir(const char *state_dir, char *cur, size_t cap, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        core_set_err(err, errlen, "libsodium failed to initialise");
        return CORE_EINVAL;
    }
    if (state_dir == NULL || *state_dir == '\0') {
        core_set_err(err, errlen, "no state directory for the session keys");
        return CORE_EINVAL;
    }
    /* The keys are only as private as the directory: one that others can write to (or that is
     * someone else's) is refused. */
    if (core_path_ensure_private_dir(state_dir, err, errlen) != 0)
        return CORE_EINVAL;
    return join_path(cur, cap, state_dir, KEY_FILE, err, errlen);
}

int auth_keys_load(const char *state_dir, uint64_t ttl_ms, char *err, size_t errlen)
{
    char path[PATH_MAX];
    unsigned char raw[KEY_BYTES];
    struct ring next = {0};
    DIR *dir = NULL;
    int rc = backend_from_env(err, errlen);
    if (rc != 0)
        return rc;
    rc = prepare_dir(state_dir, path, sizeof path, err, errlen);
    if (rc != 0)
        return rc;

    rc = read_key_file(path, raw, err, errlen);
    if (rc == CORE_ENOTFOUND) {
        randombytes_buf(raw, sizeof raw);
        rc = write_key_file(path, raw, err, errlen);
        if (rc == 0) {
            sync_dir(state_dir);
            core_log(CORE_LOG_INFO, "auth", "created session key %s", path);
        } else if (rc == CORE_EBUSY) {
            /* Another process created it first: use theirs. */
            rc = read_key_file(path, raw, err, errlen);
        }
        if (rc == CORE_ENOTFOUND || rc == CORE_EBUSY)
            core_set_err(err, errlen, "session key file %s exists but cannot be opened", path);
    }
    if (rc != 0) {
        rc = CORE_EINVAL;
        goto out;
    }
    key_set(&next.current, raw);
    next.has_current = true;

    rc = CORE_EINVAL;
    dir = opendir(state_dir);
    if (dir == NULL) {
        core_set_err(err, errlen, "cannot list state directory %s: %s", state_dir, strerror(errno));
        goto out;
    }
    uint64_t now = now_ms();
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        uint64_t t;
        if (!parse_retired(de->d_name, &t))
            continue;
        if (join_path(path, sizeof path, state_dir, de->d_name, err, errlen) != 0)
            goto out;
        /* Retired at t: its tokens were all minted before t and have expired by t + ttl. */
        bool expired = t <= (UINT64_MAX - ttl_ms) / 1000 && t * 1000 + ttl_ms <= now;
        if (expired) {
            if (unlink(path) != 0 && errno != ENOENT)
                core_log(CORE_LOG_WARN, "auth", "cannot delete expired session key %s: %s", path,
                         strerror(errno));
            else
                core_log(CORE_LOG_INFO, "auth", "deleted expired session key %s", path);
            continue;
        }
        int r = read_key_file(path, raw, err, errlen);
        if (r == CORE_ENOTFOUND)
            continue; /* removed since readdir */
        if (r != 0)
            goto out;
        ring_add_retired(&next, raw);
    }
    ring_install(&next);
    rc = 0;
out:
    if (dir != NULL)
        closedir(dir);
    sodium_memzero(raw, sizeof raw);
    ring_wipe(&next);
    return rc;
}

/* Keeps the current key file as session.key.<t> for the first free t from now on. Prefers
 * link(), so session.key never disappears; where the file system has no hard links, falls back
 * to rename(). Writes the retired path to old; *linked tells which way was taken. */
static int retire_current(const char *state_dir, const char *cur, char *old, size_t cap,
                          bool *linked, char *err, size_t errlen)
{
    uint64_t t = now_ms() / 1000;
    for (int i = 0; i < 1000; i++, t++) {
        char name[64];
        snprintf(name, sizeof name, KEY_FILE ".%llu", (unsigned long long)t);
        if (join_path(old, cap, state_dir, name, err, errlen) != 0)
            return CORE_EINVAL;
        if (link(cur, old) == 0) {
            *linked = true;
            return 0;
        }
        if (errno == EEXIST)
            continue;
        if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS && errno != EMLINK) {
            core_set_err(err, errlen, "cannot keep %s as %s: %s", cur, old, strerror(errno));
            return CORE_EINVAL;
        }
        struct stat st;
        if (lstat(old, &st) == 0)
            continue;
        if (rename(cur, old) != 0) {
            core_set_err(err, errlen, "cannot rename %s to %s: %s", cur, old, strerror(errno));
            return CORE_EINVAL;
        }
        *linked = false;
        return 0;
    }
    core_set_err(err, errlen, "cannot retire %s: too many retired keys with recent times", cur);
    return CORE_EINVAL;
}

int auth_keys_rotate(const char *state_dir, char *err, size_t errlen)
{
    char cur[PATH_MAX], tmp[PATH_MAX], old[PATH_MAX];
    unsigned char raw[KEY_BYTES];
    bool have_tmp = false;
    int rc = prepare_dir(state_dir, cur, sizeof cur, err, errlen);
    if (rc != 0)
        return rc;
    /* The key being retired must pass the checks auth_keys_load applies to retired keys. */
    int have_old = read_key_file(cur, raw, err, errlen);
    sodium_memzero(raw, sizeof raw);
    rc = CORE_EINVAL;
    if (have_old != 0 && have_old != CORE_ENOTFOUND)
        goto out;

    /* The temporary name does not look like a retired key, so a crash leaves nothing loadable. */
    char name[64], hex[17];
    auth_random_hex(hex, 8);
    snprintf(name, sizeof name, KEY_FILE ".new-%s", hex);
    if (join_path(tmp, sizeof tmp, state_dir, name, err, errlen) != 0)
        goto out;
    randombytes_buf(raw, sizeof raw);
    int w = write_key_file(tmp, raw, err, errlen);
    sodium_memzero(raw, sizeof raw);
    if (w == CORE_EBUSY)
        core_set_err(err, errlen, "temporary key file %s already exists", tmp);
    if (w != 0)
        goto out;
    have_tmp = true;

    bool linked = false;
    if (have_old == 0 && retire_current(state_dir, cur, old, sizeof old, &linked, err, errlen) != 0)
        goto out;
    if (rename(tmp, cur) != 0) {
        core_set_err(err, errlen, "cannot rename %s to %s: %s", tmp, cur, strerror(errno));
        if (have_old == 0 && linked)
            unlink(old);
        else if (have_old == 0 && rename(old, cur) != 0)
            core_log(CORE_LOG_ERROR, "auth", "cannot move %s back to %s: %s", old, cur,
                     strerror(errno));
        goto out;
    }
    have_tmp = false;
    sync_dir(state_dir);
    rc = 0;
out:
    if (have_tmp)
        unlink(tmp);
    return rc;
}

/* ---- helpers ---- */

void auth_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

void auth_random_hex(char *out, size_t n)
{
    unsigned char raw[32];
    *out = '\0';
    while (n > 0) {
        size_t k = n < sizeof raw ? n : sizeof raw;
        randombytes_buf(raw, k);
        sodium_bin2hex(out, 2 * k + 1, raw, k);
        out += 2 * k;
        n -= k;
    }
    /* The hex may become a secret (bearer tokens). */
    sodium_memzero(raw, sizeof raw);
}
