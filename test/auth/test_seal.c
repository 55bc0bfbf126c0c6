/* Tests for AES-256-GCM sealing and the session key ring (auth/seal.c). */
#include "auth/seal.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

/* Internal (GW_STATIC) in auth/seal.c. */
int seal_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
             const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
             unsigned char *out);
int open_gcm(enum auth_backend b, const unsigned char *key, const unsigned char *nonce,
             const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
             unsigned char *out);

#define OVERHEAD 33 /* version 1 + key id 4 + nonce 12 + tag 16 */
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* One mkdtemp directory per run, made and removed by the parent process so that a crashed or
 * failed test still leaves nothing behind; each test works in its own subdirectory. */
static char base_dir[64];
static char dir[128];
static long live_at_start;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

static void make_base(void)
{
    snprintf(base_dir, sizeof base_dir, "/tmp/test_seal.XXXXXX");
    if (mkdtemp(base_dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

static void remove_base(void)
{
    if (nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        perror("removing the test directory");
}

static void setup(void)
{
    live_at_start = core_alloc_live();
    unsetenv("AGENTGATE_AES");
    snprintf(dir, sizeof dir, "%s/t.XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(auth_set_backend(AUTH_BACKEND_AUTO), 0);
}

static void teardown(void)
{
    auth_keys_clear();
    ck_assert_int_eq(core_alloc_live(), live_at_start);
}

static bool sodium_aes_ok(void)
{
    return sodium_init() >= 0 && crypto_aead_aes256gcm_is_available() == 1;
}

/* The backends this machine can run: mbedTLS always, libsodium when the CPU allows. */
static int backends(enum auth_backend out[2])
{
    int n = 0;
    out[n++] = AUTH_BACKEND_MBEDTLS;
    if (sodium_aes_ok())
        out[n++] = AUTH_BACKEND_SODIUM;
    return n;
}

static void path_in(char *out, size_t cap, const char *name)
{
    ck_assert_int_lt(snprintf(out, cap, "%s/%s", dir, name), (int)cap);
}

static void write_file(const char *name, const void *p, size_t n, mode_t mode)
{
    char path[256];
    path_in(path, sizeof path, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Reads a whole small file; returns its size. */
static size_t read_file(const char *name, unsigned char *buf, size_t cap)
{
    char path[256];
    path_in(path, sizeof path, name);
    int fd = open(path, O_RDONLY);
    ck_assert_msg(fd >= 0, "cannot open %s", path);
    ssize_t r = read(fd, buf, cap);
    ck_assert_int_ge(r, 0);
    close(fd);
    return (size_t)r;
}

static mode_t file_mode(const char *name)
{
    char path[256];
    struct stat st;
    path_in(path, sizeof path, name);
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static bool file_exists(const char *name)
{
    char path[256];
    struct stat st;
    path_in(path, sizeof path, name);
    return lstat(path, &st) == 0;
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Decodes a token into raw (at least 4096 bytes); returns the length. */
static size_t decode(const char *tok, size_t n, unsigned char *raw)
{
    size_t len = 0;
    ck_assert_int_eq(sodium_base642bin(raw, 4096, tok, n, NULL, &len, NULL, B64), 0);
    return len;
}

static void encode(const unsigned char *raw, size_t n, struct core_buf *out)
{
    core_buf_reset(out);
    size_t size = sodium_base64_ENCODED_LEN(n, B64);
    ck_assert_int_eq(core_buf_reserve(out, size), 0);
    sodium_bin2base64(out->data, size, raw, n, B64);
    out->len = size - 1;
}

/* The key id a token carries. */
static void token_id(const struct core_buf *tok, unsigned char id[4])
{
    unsigned char raw[4096];
    ck_assert_uint_ge(decode(tok->data, tok->len, raw), OVERHEAD);
    memcpy(id, raw + 1, 4);
}

/* The key id of a key file: the first 4 bytes of SHA-256 of its contents. */
static void file_id(const char *name, unsigned char id[4])
{
    unsigned char key[64], h[32];
    ck_assert_uint_eq(read_file(name, key, sizeof key), 32);
    crypto_hash_sha256(h, key, 32);
    memcpy(id, h, 4);
}

static void seal_str(const char *s, struct core_buf *tok)
{
    core_buf_reset(tok);
    ck_assert_int_eq(auth_seal(s, strlen(s), tok), 0);
}

/* Asserts that tok opens (ad "cursor") to exactly s. */
static void assert_opens(const struct core_buf *tok, const char *s)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    ck_assert_int_eq(auth_open(tok->data, tok->len, &out), 0);
    ck_assert_uint_eq(out.len, strlen(s));
    ck_assert(memcmp(out.data, s, out.len) == 0);
    core_buf_dispose(&out);
}

static int open_rc(const struct core_buf *tok)
{
    struct core_buf out;
    core_buf_init(&out, 0);
    int rc = auth_open(tok->data, tok->len, &out);
    if (rc != 0)
        ck_assert_uint_eq(out.len, 0);
    core_buf_dispose(&out);
    return rc;
}

static int load(uint64_t ttl_ms, char *err, size_t errlen)
{
    return auth_keys_load(dir, ttl_ms, err, errlen);
}

/* Renames the only retired key file to session.key.<t>. */
static void set_retired_time(long long t)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    char from[256] = "", to[256];
    while ((de = readdir(d)) != NULL) {
        const char *digits = de->d_name + 12;
        if (strncmp(de->d_name, "session.key.", 12) == 0 && *digits != '\0' &&
            strspn(digits, "0123456789") == strlen(digits))
            path_in(from, sizeof from, de->d_name);
    }
    closedir(d);
    ck_assert_str_ne(from, "");
    snprintf(to, sizeof to, "%s/session.key.%lld", dir, t);
    ck_assert_int_eq(rename(from, to), 0);
}

/* ---- the cipher itself ---- */

static void unhex(const char *hex, unsigned char *out, size_t n)
{
    ck_assert_uint_eq(strlen(hex), 2 * n);
    ck_assert_int_eq(sodium_hex2bin(out, n, hex, 2 * n, NULL, NULL, NULL), 0);
}

/* Test cases 13, 14 and 16 of McGrew & Viega, "The Galois/Counter Mode of Operation". */
START_TEST(test_known_answers)
{
    static const struct {
        const char *key, *iv, *pt, *ad, *ct_tag;
    } v[] = {
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "00000000000000000000000000000000", "",
         "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"},
        {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
         "cafebabefacedbaddecaf888",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e"
         "2449a6b525b16aedf5aa0de657ba637b39",
         "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b"
         "1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b"},
    };
    enum auth_backend bs[2];
    int nb = backends(bs);
    for (int b = 0; b < nb; b++) {
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            unsigned char key[32], iv[12], pt[64], ad[32], want[80], got[80], back[64];
            size_t n = strlen(v[i].pt) / 2, adlen = strlen(v[i].ad) / 2;
            unhex(v[i].key, key, 32);
            unhex(v[i].iv, iv, 12);
            unhex(v[i].pt, pt, n);
            unhex(v[i].ad, ad, adlen);
            unhex(v[i].ct_tag, want, n + 16);
            ck_assert_int_eq(seal_gcm(bs[b], key, iv, ad, adlen, pt, n, got), 0);
            ck_assert_msg(memcmp(got, want, n + 16) == 0, "backend %d vector %zu", (int)bs[b], i);
            ck_assert_int_eq(open_gcm(bs[b], key, iv, ad, adlen, got, n, back), 0);
            ck_assert(memcmp(back, pt, n) == 0);
            got[n + 15] ^= 1;
            ck_assert_int_eq(open_gcm(bs[b], key, iv, ad, adlen, got, n, back), CORE_EINVAL);
        }
    }
}
END_TEST

/* ---- sealing through the ring ---- */

START_TEST(test_roundtrip_per_backend)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 4000};
    static const char sess_ad[] = "session\0claude";
    enum auth_backend bs[2];
    int nb = backends(bs);
    unsigned char data[4000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    for (int b = 0; b < nb; b++) {
        ck_assert_int_eq(auth_set_backend(bs[b]), 0);
        ck_assert_str_eq(auth_backend_name(),
                         bs[b] == AUTH_BACKEND_SODIUM ? "libsodium" : "mbedtls");
        ck_assert_int_eq(auth_seal_init(), 0);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            struct core_buf tok, tok2, out;
            core_buf_init(&tok, 0);
            core_buf_init(&tok2, 0);
            core_buf_init(&out, 0);
            /* Appends after what the buffers already hold. */
            ck_assert_int_eq(core_buf_append_str(&tok, "x"), 0);
            ck_assert_int_eq(core_buf_append_str(&out, "y"), 0);
            ck_assert_int_eq(auth_seal(data, n, &tok), 0);
            ck_assert_uint_eq(tok.len, 1 + sodium_base64_ENCODED_LEN(n + OVERHEAD, B64) - 1);
            ck_assert_uint_eq(strlen(tok.data), tok.len);
            ck_assert_uint_eq(strspn(tok.data + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                   "vwxyz0123456789-_"),
                              tok.len - 1);
            ck_assert_int_eq(auth_open(tok.data + 1, tok.len - 1, &out), 0);
            ck_assert_uint_eq(out.len, n + 1);
            ck_assert(out.data[0] == 'y' && memcmp(out.data + 1, data, n) == 0);
            ck_assert_int_eq(out.data[out.len], '\0');

            /* Random nonces: sealing the same data twice gives different tokens. */
            ck_assert_int_eq(auth_seal(data, n, &tok2), 0);
            ck_assert(tok2.len != tok.len - 1 || memcmp(tok2.data, tok.data + 1, tok2.len) != 0);

            /* With additional data holding a NUL. */
            core_buf_reset(&tok);
            core_buf_reset(&out);
            ck_assert_int_eq(auth_seal_ad(sess_ad, sizeof sess_ad - 1, data, n, &tok), 0);
            ck_assert_int_eq(auth_open_ad(sess_ad, sizeof sess_ad - 1, tok.data, tok.len, &out), 0);
            ck_assert_uint_eq(out.len, n);
            ck_assert(memcmp(out.data, data, n) == 0);
            core_buf_dispose(&tok);
            core_buf_dispose(&tok2);
            core_buf_dispose(&out);
        }
    }
}
END_TEST

START_TEST(test_cross_backend)
{
    if (!sodium_aes_ok()) {
        printf("test_seal: libsodium AES-256-GCM is unavailable on this CPU; skipping the "
               "libsodium half of the cross-backend test\n");
        ck_assert_int_eq(auth_set_backend(AUTH_BACKEND_SODIUM), CORE_EINVAL);
        ck_assert_str_eq(auth_backend_name(), "mbedtls");
        return;
    }
    static const char ad[] = "session\0c";
    static const char *const msgs[] = {"", "a", "{\"g\":1,\"l\":2,\"c\":[\"x\"]}",
                                       "0123456789abcdef0123456789abcdef!"};
    ck_assert_int_eq(auth_seal_init(), 0);
    for (int dir_ = 0; dir_ < 2; dir_++) {
        enum auth_backend from = dir_ ? AUTH_BACKEND_MBEDTLS : AUTH_BACKEND_SODIUM;
        enum auth_backend to = dir_ ? AUTH_BACKEND_SODIUM : AUTH_BACKEND_MBEDTLS;
        for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
            struct core_buf tok, out;
            core_buf_init(&tok, 0);
            core_buf_init(&out, 0);
            ck_assert_int_eq(auth_set_backend(from), 0);
            ck_assert_int_eq(auth_seal_ad(ad, sizeof ad - 1, msgs[i], strlen(msgs[i]), &tok), 0);
            ck_assert_int_eq(auth_set_backend(to), 0);
            ck_assert_int_eq(auth_open_ad(ad, sizeof ad - 1, tok.data, tok.len, &out), 0);
            ck_assert_uint_eq(out.len, strlen(msgs[i]));
            ck_assert(memcmp(out.data, msgs[i], out.len) == 0);
            /* And the receiving backend still checks the tag and the ad. */
            core_buf_reset(&out);
            ck_assert_int_eq(auth_open_ad("session", 7, tok.data, tok.len, &out), CORE_EINVAL);
            core_buf_dispose(&tok);
            core_buf_dispose(&out);
        }
    }
}
END_TEST

/* Tokens made independently with Python's `cryptography` (AESGCM) for key bytes 0..31 and nonce
 * bytes 100..111, following the wire format of seal.h. */
START_TEST(test_foreign_vectors)
{
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    write_file("session.key", key, sizeof key, 0600);
    static const char cursor_tok[] =
        "AWMNzSlkZWZnaGlqa2xtbm8zOblEQ9h6vFJAZdr2RwnfeJlbdymIAX0OpaKE0QDodKeg2f0";
    static const char sess_tok[] = "AWMNzSlkZWZnaGlqa2xtbm8gfrIKFsG0GZrKZEK8cAIq_9Auf_k";
    enum auth_backend bs[2];
    int nb = backends(bs);
    char err[512];
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    for (int b = 0; b < nb; b++) {
        ck_assert_int_eq(auth_set_backend(bs[b]), 0);
        struct core_buf out;
        core_buf_init(&out, 0);
        ck_assert_int_eq(auth_open(cursor_tok, strlen(cursor_tok), &out), 0);
        ck_assert_str_eq(out.data, "{\"g\":1,\"l\":2,\"c\":[]}");
        core_buf_reset(&out);
        ck_assert_int_eq(auth_open_ad("session\0claude", 14, sess_tok, strlen(sess_tok), &out), 0);
        ck_assert_str_eq(out.data, "hello");
        core_buf_reset(&out);
        ck_assert_int_eq(auth_open(sess_tok, strlen(sess_tok), &out), CORE_EINVAL);
        core_buf_dispose(&out);

        struct core_buf tok;
        core_buf_init(&tok, 0);
        seal_str("z", &tok);
        unsigned char id[4];
        token_id(&tok, id);
        ck_assert(memcmp(id, "\x63\x0d\xcd\x29", 4) == 0);
        core_buf_dispose(&tok);
    }
}
END_TEST

START_TEST(test_tamper_every_byte)
{
    enum auth_backend bs[2];
    int nb = backends(bs);
    for (int b = 0; b < nb; b++) {
        ck_assert_int_eq(auth_set_backend(bs[b]), 0);
        ck_assert_int_eq(auth_seal_init(), 0);
        struct core_buf tok, forged;
        core_buf_init(&tok, 0);
        core_buf_init(&forged, 0);
        seal_str("{\"g\":7,\"l\":10,\"c\":[\"abc\"]}", &tok);
        unsigned char raw[4096];
        size_t n = decode(tok.data, tok.len, raw);
        for (size_t i = 0; i < n; i++) {
            for (int bit = 0; bit < 8; bit += 7) {
                raw[i] ^= (unsigned char)(1u << bit);
                encode(raw, n, &forged);
                /* The version byte makes it unparseable; any other byte fails the tag or the
                 * key id. */
                ck_assert_int_eq(open_rc(&forged), i == 0 ? CORE_EPARSE : CORE_EINVAL);
                raw[i] ^= (unsigned char)(1u << bit);
            }
        }
        /* Truncated or extended. */
        encode(raw, n - 1, &forged);
        ck_assert_int_eq(open_rc(&forged), CORE_EINVAL);
        raw[n] = 0;
        encode(raw, n + 1, &forged);
        ck_assert_int_eq(open_rc(&forged), CORE_EINVAL);
        /* Every character of the text replaced by another base64url character. */
        for (size_t i = 0; i < tok.len; i++) {
            core_buf_reset(&forged);
            ck_assert_int_eq(core_buf_append(&forged, tok.data, tok.len), 0);
            forged.data[i] = forged.data[i] == 'A' ? 'B' : 'A';
            int rc = open_rc(&forged);
            ck_assert_msg(rc == CORE_EINVAL || rc == CORE_EPARSE, "char %zu: %d", i, rc);
        }
        assert_opens(&tok, "{\"g\":7,\"l\":10,\"c\":[\"abc\"]}");
        core_buf_dispose(&tok);
        core_buf_dispose(&forged);
    }
}
END_TEST

START_TEST(test_wrong_ad)
{
    ck_assert_int_eq(auth_seal_init(), 0);
    struct core_buf tok, out;
    core_buf_init(&tok, 0);
    core_buf_init(&out, 0);
    ck_assert_int_eq(auth_seal_ad("session\0alice", 13, "s", 1, &tok), 0);
    ck_assert_int_eq(auth_open_ad("session\0bob", 11, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad("session\0alice", 12, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad("session\0alice\0", 14, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad(NULL, 0, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open(tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(auth_open_ad("session\0alice", 13, tok.data, tok.len, &out), 0);
    ck_assert_str_eq(out.data, "s");

    /* A cursor is not a session token, and an empty ad is an ad of its own. */
    seal_str("c", &tok);
    core_buf_reset(&out);
    ck_assert_int_eq(auth_open_ad("session\0", 8, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad("cursor", 7, tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad("cursor", 6, tok.data, tok.len, &out), 0);
    core_buf_reset(&tok);
    core_buf_reset(&out);
    ck_assert_int_eq(auth_seal_ad(NULL, 0, "e", 1, &tok), 0);
    ck_assert_int_eq(auth_open(tok.data, tok.len, &out), CORE_EINVAL);
    ck_assert_int_eq(auth_open_ad("", 0, tok.data, tok.len, &out), 0);
    ck_assert_str_eq(out.data, "e");
    core_buf_dispose(&tok);
    core_buf_dispose(&out);
}
END_TEST

START_TEST(test_garbage)
{
    ck_assert_int_eq(auth_seal_init(), 0);
    struct core_buf out;
    core_buf_init(&out, 0);
    static const char *const bad[] = {
        "", "A", "AQ", "abc", "!!!!", "AQID BAUG", "a+b/cdefgh", "AQ==", "AQID\nBAUG",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(auth_open(bad[i], strlen(bad[i]), &out) == CORE_EPARSE, "%s", bad[i]);
        ck_assert_uint_eq(out.len, 0);
    }
    ck_assert_int_eq(auth_open(NULL, 0, &out), CORE_EPARSE);

    unsigned char raw[64] = {1};
    struct core_buf t;
    core_buf_init(&t, 0);
    /* 32 bytes: one short of the smallest token. */
    encode(raw, OVERHEAD - 1, &t);
    ck_assert_int_eq(open_rc(&t), CORE_EPARSE);
    /* 33 bytes, version 1: parses, but no key has id 0. */
    encode(raw, OVERHEAD, &t);
    ck_assert_int_eq(open_rc(&t), CORE_EINVAL);
    /* Unknown version. */
    raw[0] = 2;
    encode(raw, OVERHEAD, &t);
    ck_assert_int_eq(open_rc(&t), CORE_EPARSE);
    /* Non-canonical base64: the unused low bits of the last character set. */
    raw[0] = 1;
    encode(raw, OVERHEAD + 1, &t);
    ck_assert_int_eq(t.data[t.len - 1], 'A');
    t.data[t.len - 1] = 'B';
    ck_assert_int_eq(open_rc(&t), CORE_EPARSE);
    core_buf_dispose(&t);

    /* A valid token followed by padding, a NUL or a space. */
    struct core_buf tok;
    core_buf_init(&tok, 0);
    seal_str("v", &tok);
    for (int i = 0; i < 3; i++) {
        struct core_buf t2;
        core_buf_init(&t2, 0);
        ck_assert_int_eq(core_buf_append(&t2, tok.data, tok.len), 0);
        ck_assert_int_eq(core_buf_append(&t2, i == 0 ? "=" : i == 1 ? "\0" : " ", 1), 0);
        ck_assert_int_eq(auth_open(t2.data, t2.len, &out), CORE_EPARSE);
        core_buf_dispose(&t2);
    }
    /* Over the length limit: refused before decoding. */
    size_t big = (1u << 20) + 4;
    char *huge = core_xmalloc(big);
    memset(huge, 'A', big);
    ck_assert_int_eq(auth_open(huge, big, &out), CORE_EPARSE);
    core_free(huge);

    /* out's own limit. */
    struct core_buf small;
    core_buf_init(&small, 4);
    seal_str("longer than four", &tok);
    ck_assert_int_eq(auth_open(tok.data, tok.len, &small), CORE_ETOOBIG);
    ck_assert_uint_eq(small.len, 0);
    core_buf_reset(&small);
    ck_assert_int_eq(auth_seal("x", 1, &small), CORE_ETOOBIG);
    ck_assert_uint_eq(small.len, 0);
    core_buf_dispose(&small);

    /* No key at all. */
    auth_keys_clear();
    ck_assert_int_eq(auth_open(tok.data, tok.len, &out), CORE_EINVAL);
    core_buf_reset(&tok);
    ck_assert_int_eq(auth_seal("x", 1, &tok), CORE_EINVAL);
    ck_assert_uint_eq(tok.len, 0);
    core_buf_dispose(&tok);
    core_buf_dispose(&out);
}
END_TEST

/* ---- key files ---- */

START_TEST(test_key_file_created_and_reloaded)
{
    char err[512] = "";
    char state[160];
    /* A missing state directory is created, 0700. */
    snprintf(state, sizeof state, "%s/state/sub", dir);
    ck_assert_msg(auth_keys_load(state, 0, err, sizeof err) == 0, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(state, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    /* The rest of the test works in the new directory. */
    ck_assert_int_lt(snprintf(dir, sizeof dir, "%s", state), (int)sizeof dir);
    ck_assert_int_eq(file_mode("session.key"), 0600);
    unsigned char key1[64], key2[64];
    ck_assert_uint_eq(read_file("session.key", key1, sizeof key1), 32);
    ck_assert_int_eq(count_entries(), 1);

    struct core_buf tok;
    core_buf_init(&tok, 0);
    seal_str("before reload", &tok);
    unsigned char id[4], fid[4];
    token_id(&tok, id);
    file_id("session.key", fid);
    ck_assert(memcmp(id, fid, 4) == 0);

    /* Reloading keeps the file and the key. */
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    ck_assert_uint_eq(read_file("session.key", key2, sizeof key2), 32);
    ck_assert(memcmp(key1, key2, 32) == 0);
    assert_opens(&tok, "before reload");

    /* Also from an empty ring, as in a restarted process. */
    auth_keys_clear();
    ck_assert_int_eq(open_rc(&tok), CORE_EINVAL);
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    assert_opens(&tok, "before reload");

    /* An ephemeral key replaces the ring. */
    ck_assert_int_eq(auth_seal_init(), 0);
    ck_assert_int_eq(open_rc(&tok), CORE_EINVAL);
    core_buf_dispose(&tok);
}
END_TEST

/* Asserts a refused load: CORE_EINVAL, one line, naming the file, and the old ring still works. */
static void assert_refused(const char *name, const char *want1, const char *want2,
                           const struct core_buf *tok)
{
    char err[512] = "";
    char path[256];
    path_in(path, sizeof path, name);
    ck_assert_int_eq(load(86400000, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, path) != NULL, "%s", err);
    ck_assert_msg(strstr(err, want1) != NULL, "%s", err);
    ck_assert_msg(want2 == NULL || strstr(err, want2) != NULL, "%s", err);
    ck_assert_ptr_null(strchr(err, '\n'));
    assert_opens(tok, "kept");
    struct core_buf t2;
    core_buf_init(&t2, 0);
    seal_str("still sealing", &t2);
    assert_opens(&t2, "still sealing");
    core_buf_dispose(&t2);
}

START_TEST(test_refuse_permissions)
{
    char err[512] = "";
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    struct core_buf tok;
    core_buf_init(&tok, 0);
    seal_str("kept", &tok);
    char path[256], fix[300];
    path_in(path, sizeof path, "session.key");
    snprintf(fix, sizeof fix, "chmod 600 %s", path);

    static const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0610, 0601, 0660};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char want[8];
        snprintf(want, sizeof want, "0%o", (unsigned)modes[i]);
        ck_assert_int_eq(chmod(path, modes[i]), 0);
        assert_refused("session.key", want, fix, &tok);
    }
    ck_assert_int_eq(chmod(path, 0400), 0);
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(load(0, err, sizeof err), 0);

    /* A retired key file is held to the same rule. */
    unsigned char other[32];
    memset(other, 7, sizeof other);
    char name[64], rpath[256];
    snprintf(name, sizeof name, "session.key.%lld", (long long)time(NULL));
    write_file(name, other, sizeof other, 0644);
    path_in(rpath, sizeof rpath, name);
    snprintf(fix, sizeof fix, "chmod 600 %s", rpath);
    assert_refused(name, "0644", fix, &tok);
    ck_assert_int_eq(chmod(rpath, 0600), 0);
    ck_assert_int_eq(load(86400000, err, sizeof err), 0);
    core_buf_dispose(&tok);
}
END_TEST

START_TEST(test_refuse_wrong_size)
{
    char err[512] = "";
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    struct core_buf tok;
    core_buf_init(&tok, 0);
    seal_str("kept", &tok);
    unsigned char buf[64];
    memset(buf, 1, sizeof buf);
    write_file("session.key", buf, 31, 0600);
    assert_refused("session.key", "31 bytes", NULL, &tok);
    write_file("session.key", buf, 33, 0600);
    assert_refused("session.key", "33 bytes", NULL, &tok);
    write_file("session.key", buf, 0, 0600);
    assert_refused("session.key", "0 bytes", NULL, &tok);

    /* Not a regular file. */
    char path[256];
    path_in(path, sizeof path, "session.key");
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    assert_refused("session.key", "not a regular file", NULL, &tok);
    ck_assert_int_eq(rmdir(path), 0);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    assert_refused("session.key", "not a regular file", NULL, &tok);
    ck_assert_int_eq(unlink(path), 0);

    /* A retired file of the wrong size, too. */
    write_file("session.key", buf, 32, 0600);
    char name[64];
    snprintf(name, sizeof name, "session.key.%lld", (long long)time(NULL));
    write_file(name, buf, 16, 0600);
    assert_refused(name, "16 bytes", NULL, &tok);
    core_buf_dispose(&tok);
}
END_TEST

/* A symlink at a key file's name is refused, never read through, and rotation does not write
 * through it either; nor is a state directory that is a symlink or open to others used. */
START_TEST(test_refuse_symlinks)
{
    char err[512] = "";
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    struct core_buf tok;
    core_buf_init(&tok, 0);
    seal_str("kept", &tok);

    /* A key someone else chose, in a file that passes every other check. */
    unsigned char theirs[32], now[64];
    memset(theirs, 0x5a, sizeof theirs);
    write_file("elsewhere", theirs, sizeof theirs, 0600);
    char key[256], target[256];
    path_in(key, sizeof key, "session.key");
    path_in(target, sizeof target, "elsewhere");
    ck_assert_int_eq(unlink(key), 0);
    ck_assert_int_eq(symlink(target, key), 0);
    assert_refused("session.key", "symbolic link", NULL, &tok);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
    struct stat st;
    ck_assert_int_eq(lstat(key, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_uint_eq(read_file("elsewhere", now, sizeof now), 32);
    ck_assert(memcmp(now, theirs, 32) == 0);
    ck_assert_int_eq(unlink(key), 0);

    /* A retired key name, too (with a fresh key: the old one is gone). */
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    core_buf_reset(&tok);
    seal_str("kept", &tok);
    char name[64], rpath[256];
    snprintf(name, sizeof name, "session.key.%lld", (long long)time(NULL));
    path_in(rpath, sizeof rpath, name);
    ck_assert_int_eq(symlink(target, rpath), 0);
    assert_refused(name, "symbolic link", NULL, &tok);
    ck_assert_int_eq(unlink(rpath), 0);
    ck_assert_int_eq(load(0, err, sizeof err), 0);

    /* The state directory itself. */
    char link[256];
    path_in(link, sizeof link, "state-link");
    ck_assert_int_eq(symlink(dir, link), 0);
    ck_assert_int_eq(auth_keys_load(link, 0, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, link) != NULL && strstr(err, "symbolic link") != NULL, "%s", err);
    ck_assert_int_eq(chmod(dir, 0777), 0);
    ck_assert_int_eq(load(0, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, "0777") != NULL, "%s", err);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), CORE_EINVAL);
    ck_assert_int_eq(chmod(dir, 0700), 0);
    assert_opens(&tok, "kept");
    core_buf_dispose(&tok);
}
END_TEST

START_TEST(test_rotation)
{
    char err[512] = "";
    ck_assert_int_eq(load(3600000, err, sizeof err), 0);
    unsigned char old_key[64], new_key[64], kept[64];
    ck_assert_uint_eq(read_file("session.key", old_key, sizeof old_key), 32);
    struct core_buf a, b;
    core_buf_init(&a, 0);
    core_buf_init(&b, 0);
    seal_str("sealed before rotation", &a);
    unsigned char id_a[4], id_b[4], fid[4];
    token_id(&a, id_a);

    long long t0 = (long long)time(NULL);
    ck_assert_msg(auth_keys_rotate(dir, err, sizeof err) == 0, "%s", err);
    long long t1 = (long long)time(NULL);

    /* Exactly session.key and session.key.<now>, both 0600; the old key was kept verbatim. */
    ck_assert_int_eq(count_entries(), 2);
    char name[64] = "";
    for (long long t = t0; t <= t1 + 1 && name[0] == '\0'; t++) {
        char n[64];
        snprintf(n, sizeof n, "session.key.%lld", t);
        if (file_exists(n))
            snprintf(name, sizeof name, "%s", n);
    }
    ck_assert_str_ne(name, "");
    ck_assert_int_eq(file_mode(name), 0600);
    ck_assert_int_eq(file_mode("session.key"), 0600);
    ck_assert_uint_eq(read_file(name, kept, sizeof kept), 32);
    ck_assert(memcmp(kept, old_key, 32) == 0);
    ck_assert_uint_eq(read_file("session.key", new_key, sizeof new_key), 32);
    ck_assert(memcmp(new_key, old_key, 32) != 0);

    /* The ring in memory is untouched until a load. */
    seal_str("x", &b);
    token_id(&b, id_b);
    ck_assert(memcmp(id_a, id_b, 4) == 0);

    ck_assert_int_eq(load(3600000, err, sizeof err), 0);
    assert_opens(&a, "sealed before rotation");
    seal_str("sealed after rotation", &b);
    token_id(&b, id_b);
    file_id("session.key", fid);
    ck_assert(memcmp(id_b, fid, 4) == 0);
    ck_assert(memcmp(id_b, id_a, 4) != 0);
    assert_opens(&b, "sealed after rotation");

    /* Two more rotations within the same second keep every key under its own name. */
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), 0);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), 0);
    ck_assert_int_eq(count_entries(), 4);
    ck_assert_int_eq(load(3600000, err, sizeof err), 0);
    assert_opens(&a, "sealed before rotation");
    assert_opens(&b, "sealed after rotation");

    /* A ring from files only, as after a restart. */
    auth_keys_clear();
    ck_assert_int_eq(load(3600000, err, sizeof err), 0);
    assert_opens(&a, "sealed before rotation");

    /* Rotation refuses a key file that load would refuse, and changes nothing. */
    char path[256];
    path_in(path, sizeof path, "session.key");
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, "chmod 600") != NULL, "%s", err);
    ck_assert_int_eq(count_entries(), 4);
    ck_assert_int_eq(chmod(path, 0600), 0);

    /* With no session.key, rotation just makes one. */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), 0);
    ck_assert_int_eq(count_entries(), 4);
    ck_assert_int_eq(file_mode("session.key"), 0600);
    core_buf_dispose(&a);
    core_buf_dispose(&b);
}
END_TEST

START_TEST(test_retired_expiry)
{
    char err[512] = "";
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    struct core_buf a, b;
    core_buf_init(&a, 0);
    core_buf_init(&b, 0);
    seal_str("old", &a);
    ck_assert_int_eq(auth_keys_rotate(dir, err, sizeof err), 0);
    long long now = (long long)time(NULL);

    /* Retired 5 s ago with a 60 s ttl: kept. */
    set_retired_time(now - 5);
    ck_assert_int_eq(load(60000, err, sizeof err), 0);
    ck_assert_int_eq(count_entries(), 2);
    assert_opens(&a, "old");

    /* Files that only look like retired keys are neither loaded nor deleted. */
    unsigned char junk[4] = {1, 2, 3, 4};
    write_file("session.key.12x", junk, sizeof junk, 0644);
    write_file("session.key.new-abc", junk, sizeof junk, 0644);
    write_file("session.key.", junk, sizeof junk, 0644);
    ck_assert_int_eq(load(60000, err, sizeof err), 0);
    ck_assert_int_eq(count_entries(), 5);

    /* Retired 100 s ago with a 10 s ttl: deleted at load, and its tokens fail. */
    set_retired_time(now - 100);
    ck_assert_int_eq(load(10000, err, sizeof err), 0);
    ck_assert_int_eq(count_entries(), 4);
    ck_assert(file_exists("session.key.12x"));
    ck_assert_int_eq(open_rc(&a), CORE_EINVAL);
    seal_str("new", &b);
    assert_opens(&b, "new");

    /* An expired file is deleted even when its mode would be refused. */
    unsigned char k[32] = {0};
    char name[64];
    snprintf(name, sizeof name, "session.key.%lld", now - 1000);
    write_file(name, k, sizeof k, 0644);
    ck_assert_int_eq(load(10000, err, sizeof err), 0);
    ck_assert(!file_exists(name));
    core_buf_dispose(&a);
    core_buf_dispose(&b);
}
END_TEST

START_TEST(test_env_backend)
{
    char err[512] = "";
    setenv("AGENTGATE_AES", "mbedtls", 1);
    ck_assert_int_eq(auth_seal_init(), 0);
    ck_assert_str_eq(auth_backend_name(), "mbedtls");
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    ck_assert_str_eq(auth_backend_name(), "mbedtls");

    setenv("AGENTGATE_AES", "sodium", 1);
    if (sodium_aes_ok()) {
        ck_assert_int_eq(load(0, err, sizeof err), 0);
        ck_assert_str_eq(auth_backend_name(), "libsodium");
    } else {
        ck_assert_int_eq(load(0, err, sizeof err), CORE_EINVAL);
        ck_assert_msg(strstr(err, "AGENTGATE_AES=sodium") != NULL, "%s", err);
    }

    setenv("AGENTGATE_AES", "openssl", 1);
    ck_assert_int_eq(auth_seal_init(), CORE_EINVAL);
    ck_assert_int_eq(load(0, err, sizeof err), CORE_EINVAL);
    ck_assert_msg(strstr(err, "AGENTGATE_AES=openssl") != NULL, "%s", err);
    ck_assert_ptr_null(strchr(err, '\n'));

    /* Unset: the choice made with auth_set_backend stands. */
    unsetenv("AGENTGATE_AES");
    ck_assert_int_eq(auth_set_backend(AUTH_BACKEND_MBEDTLS), 0);
    ck_assert_int_eq(load(0, err, sizeof err), 0);
    ck_assert_str_eq(auth_backend_name(), "mbedtls");
    ck_assert_int_eq(auth_set_backend(AUTH_BACKEND_AUTO), 0);
    ck_assert_str_eq(auth_backend_name(), sodium_aes_ok() ? "libsodium" : "mbedtls");
}
END_TEST

/* The router's use: a JSON cursor sealed into nextCursor and opened into a limited buffer. */
START_TEST(test_cursor_values)
{
    ck_assert_int_eq(auth_seal_init(), 0);
    const char *cur = "{\"g\":3,\"l\":50,\"c\":[\"c3Vi\",null,\"eA\"]}";
    struct core_buf sealed, plain;
    core_buf_init(&sealed, 0);
    core_buf_init(&plain, 65536);
    ck_assert_int_eq(auth_seal(cur, strlen(cur), &sealed), 0);
    ck_assert_ptr_nonnull(sealed.data);
    ck_assert_uint_eq(strlen(sealed.data), sealed.len);
    ck_assert_int_eq(auth_open(sealed.data, sealed.len, &plain), 0);
    ck_assert_str_eq(plain.data, cur);
    core_buf_reset(&plain);
    ck_assert_int_eq(auth_open_ad("cursor", 6, sealed.data, sealed.len, &plain), 0);
    ck_assert_str_eq(plain.data, cur);
    core_buf_dispose(&sealed);
    core_buf_dispose(&plain);
}
END_TEST

START_TEST(test_helpers)
{
    char r1[161], r2[161];
    memset(r1, 'z', sizeof r1);
    auth_random_hex(r1, 80);
    ck_assert_uint_eq(strlen(r1), 160);
    ck_assert_uint_eq(strspn(r1, "0123456789abcdef"), 160);
    auth_random_hex(r2, 80);
    ck_assert_str_ne(r1, r2);
    auth_random_hex(r1, 0);
    ck_assert_str_eq(r1, "");
    unsigned char b1[32] = {0}, b2[32] = {0};
    auth_random(b1, sizeof b1);
    auth_random(b2, sizeof b2);
    ck_assert(memcmp(b1, b2, sizeof b1) != 0);
}
END_TEST

static Suite *seal_suite(void)
{
    Suite *s = suite_create("seal");
    TCase *tc = tcase_create("auth");
    tcase_add_unchecked_fixture(tc, make_base, remove_base);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_known_answers);
    tcase_add_test(tc, test_roundtrip_per_backend);
    tcase_add_test(tc, test_cross_backend);
    tcase_add_test(tc, test_foreign_vectors);
    tcase_add_test(tc, test_tamper_every_byte);
    tcase_add_test(tc, test_wrong_ad);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_key_file_created_and_reloaded);
    tcase_add_test(tc, test_refuse_permissions);
    tcase_add_test(tc, test_refuse_wrong_size);
    tcase_add_test(tc, test_refuse_symlinks);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_retired_expiry);
    tcase_add_test(tc, test_env_backend);
    tcase_add_test(tc, test_cursor_values);
    tcase_add_test(tc, test_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Quiet the INFO lines about created and deleted key files; errors still show. */
    core_log_set_level(CORE_LOG_WARN);
    SRunner *sr = srunner_create(seal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
