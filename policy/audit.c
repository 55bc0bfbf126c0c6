/* The audit log: lines are formatted into a memory buffer and appended with write(2) on an
 * O_APPEND descriptor from pol_audit_flush. Failures never reach the caller: a warning is logged
 * once per run of failures and the lines are dropped. */
#include "policy/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"

#define FLUSH_AT (64u << 10) /* buffered bytes that trigger a flush from pol_audit_record */
#define BUF_LIMIT (8u << 20) /* hard limit of the buffer; a record past it is dropped */
#define MAX_FIELD 512        /* input bytes kept of one string field; longer ones end in "..." */
#define N_KEEP 3             /* rotated files kept: .1 .. .3 */

struct pol_audit {
    char *path;
    int fd;               /* -1 while closed after a failure; reopened by the next flush */
    size_t size;          /* bytes in the current file, for rotation */
    size_t max_bytes;     /* 0 = never rotate */
    bool failing;         /* a warning was logged; no more until a write succeeds */
    struct core_buf buf;  /* complete lines waiting for the next flush */
};

static void warn_once(struct pol_audit *a, const char *what, int e)
{
    if (a->failing)
        return;
    a->failing = true;
    core_log(CORE_LOG_WARN, "audit", "%s: %s: %s; audit records are dropped until it works again",
             a->path, what, strerror(e));
}

/* The same for a message that already names the file. */
static void warn_once_msg(struct pol_audit *a, const char *why)
{
    if (a->failing)
        return;
    a->failing = true;
    core_log(CORE_LOG_WARN, "audit", "%s; audit records are dropped until it works again", why);
}

/* Opens the current file for appending and learns its size. Only a regular file is used: a
 * symlink planted at the path is refused rather than followed (it could point at any file the
 * daemon's user can write), and a FIFO or device is refused too. Returns 0, or a negative code
 * with a one-line message in why. */
static int open_file(struct pol_audit *a, char *why, size_t whylen)
{
    int fd;
    int rc = core_file_open(a->path, O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, why, whylen);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0 || ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0)) {
        rc = -errno;
        core_set_err(why, whylen, "%s: %s", a->path, strerror(errno));
        close(fd);
        return rc;
    }
    a->fd = fd;
    a->size = (size_t)st.st_size;
    return 0;
}

struct pol_audit *pol_audit_open(const char *path, size_t max_bytes, char *err, size_t errlen)
{
    struct pol_audit *a = core_xcalloc(1, sizeof *a);
    a->path = core_xstrdup(path);
    a->max_bytes = max_bytes;
    a->fd = -1;
    core_buf_init(&a->buf, BUF_LIMIT);
    if (open_file(a, err, errlen) != 0) {
        pol_audit_close(a);
        return NULL;
    }
    return a;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return len;
}

/* Appends s as a JSON string (quotes included), or null for NULL. Control characters are
 * escaped and bytes that are not UTF-8 become U+FFFD, so every line is valid JSON. Keeps at most
 * MAX_FIELD input bytes, cut at a character boundary. Runs of plain ASCII go in one append. */
static int put_str(struct core_buf *b, const char *s)
{
    if (s == NULL)
        return core_buf_append(b, "null", 4);
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    bool cut = n > MAX_FIELD;
    if (cut)
        n = MAX_FIELD;
    int rc = core_buf_append(b, "\"", 1);
    size_t i = 0;
    while (rc == 0 && i < n) {
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            rc = core_buf_append(b, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = utf8_len(p + i, n - i);
            if (len == 0) {
                if (cut && n - i < 4 && utf8_len(p + i, strlen(s + i)) != 0)
                    break; /* a whole character that the cut would split */
                rc = core_buf_append_str(b, "\\ufffd");
                i++;
            } else {
                rc = core_buf_append(b, p + i, len);
                i += len;
            }
            continue;
        }
        switch (c) {
        case '"':
            rc = core_buf_append_str(b, "\\\"");
            break;
        case '\\':
            rc = core_buf_append_str(b, "\\\\");
            break;
        case '\n':
            rc = core_buf_append_str(b, "\\n");
            break;
        case '\r':
            rc = core_buf_append_str(b, "\\r");
            break;
        case '\t':
            rc = core_buf_append_str(b, "\\t");
            break;
        default:
            rc = core_buf_appendf(b, "\\u%04x", c);
        }
        i++;
    }
    if (rc == 0 && cut)
        rc = core_buf_append_str(b, "...");
    if (rc == 0)
        rc = core_buf_append(b, "\"", 1);
    return rc;
}

/* Appends v in decimal, at least `width` digits (zero-padded). */
static int put_u64(struct core_buf *b, uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 20);
    while (n < width && n < 20)
        tmp[sizeof tmp - 1 - n++] = '0';
    return core_buf_append(b, tmp + sizeof tmp - n, (size_t)n);
}

/* The "YYYY-MM-DDTHH:MM:SS" of the last second formatted: records come many per second. */
static time_t cached_secs = -1;
static char cached_time[64];

static int format_rec(struct core_buf *b, const struct pol_audit_rec *r)
{
    time_t secs = (time_t)(r->unix_ms / 1000);
    if (secs != cached_secs) {
        struct tm tm;
        if (gmtime_r(&secs, &tm) == NULL)
            memset(&tm, 0, sizeof tm);
        snprintf(cached_time, sizeof cached_time, "%04d-%02d-%02dT%02d:%02d:%02d",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_secs = secs;
    }
    int rc = core_buf_append_str(b, "{\"time\":\"");
    if (rc == 0)
        rc = core_buf_append_str(b, cached_time);
    if (rc == 0)
        rc = core_buf_append(b, ".", 1);
    if (rc == 0)
        rc = put_u64(b, r->unix_ms % 1000, 3);
    if (rc == 0)
        rc = core_buf_append_str(b, "Z\",\"client\":");
    if (rc == 0)
        rc = put_str(b, r->client);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"session\":");
    if (rc == 0)
        rc = put_str(b, r->session);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"server\":");
    if (rc == 0)
        rc = put_str(b, r->server);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"tool\":");
    if (rc == 0)
        rc = put_str(b, r->tool);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"duration_ms\":");
    if (rc == 0)
        rc = put_u64(b, r->duration_us / 1000, 1);
    if (rc == 0)
        rc = core_buf_append(b, ".", 1);
    if (rc == 0)
        rc = put_u64(b, r->duration_us % 1000, 3);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"outcome\":");
    if (rc == 0)
        rc = put_str(b, r->outcome ? r->outcome : "unknown");
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"bytes_in\":");
    if (rc == 0)
        rc = put_u64(b, r->bytes_in, 1);
    if (rc == 0)
        rc = core_buf_append_str(b, ",\"bytes_out\":");
    if (rc == 0)
        rc = put_u64(b, r->bytes_out, 1);
    if (rc == 0)
        rc = core_buf_append(b, "}\n", 2);
    return rc;
}

void pol_audit_record(struct pol_audit *a, const struct pol_audit_rec *r)
{
    if (a == NULL || r == NULL)
        return;
    size_t mark = a->buf.len;
    if (format_rec(&a->buf, r) != 0) {
        a->buf.len = mark; /* no partial line */
        warn_once(a, "record dropped", ENOBUFS);
        return;
    }
    if (a->buf.len >= FLUSH_AT)
        pol_audit_flush(a);
}

/* audit.jsonl -> .1, .1 -> .2, .2 -> .3 (the old .3 is replaced), then a fresh file. Returns 0,
 * or a negative code with a message in why (with a->fd closed). */
static int rotate(struct pol_audit *a, char *why, size_t whylen)
{
    close(a->fd);
    a->fd = -1;
    int rc = core_file_shift(a->path, N_KEEP, why, whylen);
    if (rc == 0)
        rc = open_file(a, why, whylen);
    return rc;
}

void pol_audit_flush(struct pol_audit *a)
{
    if (a == NULL || a->buf.len == 0)
        return;
    const char *p = a->buf.data;
    size_t left = a->buf.len;
    char why[600];
    while (left > 0) {
        if (a->fd < 0 && open_file(a, why, sizeof why) != 0) {
            warn_once_msg(a, why);
            break;
        }
        size_t chunk = left;
        if (a->max_bytes > 0) {
            /* Whole lines that still fit under the cap. */
            size_t room = a->size < a->max_bytes ? a->max_bytes - a->size : 0;
            size_t span = room < left ? room : left;
            const char *nl = span ? memrchr(p, '\n', span) : NULL;
            chunk = nl ? (size_t)(nl - p) + 1 : 0;
            if (chunk == 0 && a->size > 0) {
                if (rotate(a, why, sizeof why) != 0) {
                    warn_once_msg(a, why);
                    break;
                }
                continue;
            }
            if (chunk == 0) {
                /* One line longer than the cap: it goes whole into the fresh file. */
                nl = memchr(p, '\n', left);
                chunk = nl ? (size_t)(nl - p) + 1 : left;
            }
        }
        int e = core_file_write_all(a->fd, p, chunk);
        if (e != 0) {
            warn_once(a, "cannot write", -e);
            /* Reopen next time, which also re-reads the size after a partial write. */
            close(a->fd);
            a->fd = -1;
            break;
        }
        if (a->failing) {
            a->failing = false;
            core_log(CORE_LOG_INFO, "audit", "%s: writing again", a->path);
        }
        a->size += chunk;
        p += chunk;
        left -= chunk;
    }
    core_buf_reset(&a->buf);
}

void pol_audit_close(struct pol_audit *a)
{
    if (a == NULL)
        return;
    pol_audit_flush(a);
    if (a->fd >= 0)
        close(a->fd);
    core_buf_dispose(&a->buf);
    core_free(a->path);
    core_free(a);
}
