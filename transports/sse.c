/* Server-Sent Events encoder and decoder (WHATWG HTML, "Interpreting an event stream"). */
#include "transports/sse.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MAX_EVENT (4u * 1024 * 1024)

/* ---- encoding ----------------------------------------------------------------------------- */

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* Number of lines in p[0..n) when \n, \r\n and \r all end a line (an empty input is one
 * line); *text gets the bytes that are not line breaks. */
static size_t count_lines(const char *p, size_t n, size_t *text)
{
    size_t lines = 1;
    size_t breaks = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            lines++;
            breaks++;
        } else if (p[i] == '\r') {
            lines++;
            breaks++;
            if (i + 1 < n && p[i + 1] == '\n') {
                i++;
                breaks++;
            }
        }
    }
    *text = n - breaks;
    return lines;
}

/* Appends every line of p[0..n) as "<prefix><line>\n". The caller reserved the room, so the
 * appends cannot fail; their codes are still folded into the result. */
static int append_lines(struct core_buf *out, const char *prefix, size_t plen, const char *p,
                        size_t n)
{
    int rc = 0;
    size_t start = 0;
    for (size_t i = 0;; i++) {
        if (i < n && p[i] != '\n' && p[i] != '\r')
            continue;
        rc |= core_buf_append(out, prefix, plen);
        rc |= core_buf_append(out, p + start, i - start);
        rc |= core_buf_append(out, "\n", 1);
        if (i >= n)
            break;
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    return rc ? CORE_ETOOBIG : 0;
}

int tp_sse_encode(struct core_buf *out, const char *id, const char *event, const char *data,
                  size_t n)
{
    if ((id != NULL && has_line_break(id)) || (event != NULL && has_line_break(event)))
        return CORE_EINVAL;
    if (data == NULL)
        n = 0;
    /* Reserve the exact size first so that a failure leaves out unchanged. Sizes come from
     * memory we were given, so the sums below cannot overflow. */
    size_t text;
    size_t lines = count_lines(data, n, &text);
    size_t idlen = id != NULL ? strlen(id) : 0;
    size_t evlen = event != NULL ? strlen(event) : 0;
    size_t need = text + lines * 7 + 1; /* "data: " and "\n" per line, the blank line */
    need += id != NULL ? idlen + 5 : 0;
    need += event != NULL ? evlen + 8 : 0;
    int rc = core_buf_reserve(out, need);
    if (rc != 0)
        return rc;
    if (id != NULL) {
        rc |= core_buf_append(out, "id: ", 4);
        rc |= core_buf_append(out, id, idlen);
        rc |= core_buf_append(out, "\n", 1);
    }
    if (event != NULL) {
        rc |= core_buf_append(out, "event: ", 7);
        rc |= core_buf_append(out, event, evlen);
        rc |= core_buf_append(out, "\n", 1);
    }
    rc |= append_lines(out, "data: ", 6, data, n);
    rc |= core_buf_append(out, "\n", 1);
    return rc ? CORE_ETOOBIG : 0;
}

int tp_sse_comment(struct core_buf *out, const char *text)
{
    if (text == NULL)
        text = "";
    size_t bytes;
    size_t lines = count_lines(text, strlen(text), &bytes);
    int rc = core_buf_reserve(out, bytes + lines * 3 + 1); /* ": " and "\n" per line */
    if (rc != 0)
        return rc;
    rc = append_lines(out, ": ", 2, text, strlen(text));
    if (rc == 0)
        rc = core_buf_append(out, "\n", 1);
    return rc;
}

int tp_sse_retry(struct core_buf *out, unsigned ms)
{
    return core_buf_appendf(out, "retry: %u\n\n", ms);
}

/* ---- decoding ----------------------------------------------------------------------------- */

void tp_sse_decoder_init(struct tp_sse_decoder *d, size_t max_event)
{
    if (max_event == 0)
        max_event = DEFAULT_MAX_EVENT;
    if (max_event > SIZE_MAX / 2)
        max_event = SIZE_MAX / 2;
    d->max_line = max_event + 64;
    core_buf_init(&d->line, d->max_line);
    core_buf_init(&d->data, max_event + 1); /* each data line is stored with its \n */
    d->event[0] = '\0';
    d->id[0] = '\0';
    d->has_id = 0;
    d->last_cr = 0;
    d->retry_ms = 0;
    d->last_id[0] = '\0';
    d->bom_done = 0;
}

void tp_sse_decoder_dispose(struct tp_sse_decoder *d)
{
    core_buf_dispose(&d->line);
    core_buf_dispose(&d->data);
}

static void dispatch(struct tp_sse_decoder *d, tp_sse_event_cb cb, void *ctx)
{
    if (d->has_id)
        memcpy(d->last_id, d->id, sizeof d->last_id);
    if (d->data.len > 0) {
        /* The data buffer ends with the \n of its last line, which is not part of the data. */
        size_t n = d->data.len - 1;
        d->data.data[n] = '\0';
        cb(ctx, d->event[0] != '\0' ? d->event : "message", d->has_id ? d->id : NULL,
           d->data.data, n);
    }
    core_buf_reset(&d->data);
    d->event[0] = '\0';
    d->id[0] = '\0';
    d->has_id = 0;
}

static bool field_is(const char *name, size_t nlen, const char *want)
{
    size_t wlen = strlen(want);
    return nlen == wlen && memcmp(name, want, wlen) == 0;
}

static int process_line(struct tp_sse_decoder *d, const char *line, size_t len,
                        tp_sse_event_cb cb, void *ctx)
{
    if (!d->bom_done) {
        d->bom_done = 1;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0) {
        dispatch(d, cb, ctx);
        return 0;
    }
    if (line[0] == ':')
        return 0; /* comment */
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon != NULL ? (size_t)(colon - line) : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    size_t vlen = colon != NULL ? len - nlen - 1 : 0;
    if (vlen > 0 && value[0] == ' ') {
        value++;
        vlen--;
    }
    if (field_is(line, nlen, "data")) {
        int rc = core_buf_append(&d->data, value, vlen);
        if (rc == 0)
            rc = core_buf_append(&d->data, "\n", 1);
        return rc;
    }
    if (field_is(line, nlen, "event")) {
        if (vlen >= sizeof d->event)
            return CORE_ETOOBIG;
        memcpy(d->event, value, vlen);
        d->event[vlen] = '\0';
        return 0;
    }
    if (field_is(line, nlen, "id")) {
        if (memchr(value, '\0', vlen) != NULL)
            return 0; /* ignored, per the spec */
        if (vlen >= sizeof d->id)
            return CORE_ETOOBIG;
        memcpy(d->id, value, vlen);
        d->id[vlen] = '\0';
        d->has_id = 1;
        return 0;
    }
    if (field_is(line, nlen, "retry")) {
        unsigned long long v = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9')
                return 0; /* not all digits: ignored */
            if (v < 0xFFFFFFFFull)
                v = v * 10 + (unsigned)(value[i] - '0');
        }
        if (vlen > 0)
            d->retry_ms = v > 0xFFFFFFFFull ? 0xFFFFFFFFu : (unsigned)v;
        return 0;
    }
    return 0; /* unknown fields are ignored */
}

int tp_sse_decoder_feed(struct tp_sse_decoder *d, const char *p, size_t n, tp_sse_event_cb cb,
                        void *ctx)
{
    size_t i = 0;
    if (d->last_cr && n > 0) {
        d->last_cr = 0;
        if (p[0] == '\n')
            i = 1; /* the \n of a \r\n split between two feeds */
    }
    size_t start = i;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (j == n)
            break;
        int rc;
        if (d->line.len > 0) {
            /* The line began in an earlier feed. */
            rc = core_buf_append(&d->line, p + start, j - start);
            if (rc == 0)
                rc = process_line(d, d->line.data, d->line.len, cb, ctx);
            core_buf_reset(&d->line);
        } else if (j - start > d->max_line) {
            rc = CORE_ETOOBIG;
        } else {
            rc = process_line(d, p + start, j - start, cb, ctx);
        }
        if (rc != 0)
            return rc;
        if (p[j] == '\r') {
            if (j + 1 == n)
                d->last_cr = 1;
            else if (p[j + 1] == '\n')
                j++;
        }
        i = start = j + 1;
    }
    if (start < n)
        return core_buf_append(&d->line, p + start, n - start);
    return 0;
}

unsigned tp_sse_decoder_retry_ms(const struct tp_sse_decoder *d)
{
    return d->retry_ms;
}

const char *tp_sse_decoder_last_id(const struct tp_sse_decoder *d)
{
    return d->last_id[0] != '\0' ? d->last_id : NULL;
}
