/* The audit log: one JSON line per tools/call in <state>/audit.jsonl, buffered in memory and
 * appended on pol_audit_flush, rotated by size (audit.jsonl -> .1 -> .2 -> .3, three kept).
 *
 * Line: {"time":"2026-11-22T05:20:15.123Z","client":"claude","session":"ab12cd34",
 *        "server":"everything","tool":"echo","duration_ms":1.234,"outcome":"ok",
 *        "bytes_in":123,"bytes_out":456}
 * A NULL string field is written as null (client null = anonymous). Strings are JSON-escaped,
 * bytes that are not UTF-8 become U+FFFD, and a string longer than 512 bytes is cut and ends in
 * "...". Only a regular file is used: a symlink at the path is refused, not followed, and so is a
 * FIFO or device. */
#ifndef GW_POLICY_AUDIT_H
#define GW_POLICY_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct pol_audit;

/* One finished (or refused) tools/call. Every pointer is borrowed for the call only. */
struct pol_audit_rec {
    uint64_t unix_ms;    /* wall-clock time, ms since the epoch (UTC) */
    const char *client;  /* NULL = anonymous */
    const char *session; /* short session id */
    const char *server;
    const char *tool;     /* as the client named it */
    uint64_t duration_us; /* written as duration_ms with 3 decimals */
    const char *outcome;  /* "ok" "error" "tool_error" "denied" "rate_limited" "quarantined"
                           * "unknown"; NULL = "unknown" */
    size_t bytes_in, bytes_out;
};

/* Opens (creating it with mode 0600, or tightening an existing file to 0600) the log at path for
 * appending; a symlink or anything but a regular file at path is refused (core_file_open).
 * max_bytes is the size past which the file is rotated (0 = never rotate); a single line longer
 * than that still goes whole into a fresh file. Returns a new log (the caller owns it:
 * pol_audit_close), or NULL with a one-line message in err (NUL-terminated, truncated to errlen;
 * err may be NULL) when the file cannot be opened. */
struct pol_audit *pol_audit_open(const char *path, size_t max_bytes, char *err, size_t errlen);

/* Formats one line into the memory buffer; flushes when the buffer passes 64 KiB. Never fails:
 * when the file cannot be written, one warning is logged (core_log) per run of failures and the
 * lines are dropped. a == NULL does nothing. */
void pol_audit_record(struct pol_audit *a, const struct pol_audit_rec *r);

/* Appends the buffered lines to the file with write(2), rotating it first when it would pass
 * max_bytes. Lines are never split. a == NULL does nothing. */
void pol_audit_flush(struct pol_audit *a);

/* Flushes, closes the file and frees the log; NULL does nothing. */
void pol_audit_close(struct pol_audit *a);

#endif
