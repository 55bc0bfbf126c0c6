/* Tool pinning: the hash of every tool definition a server has shown, kept in <state>/pins, so a
 * changed definition (a "rug pull") is noticed and held until someone approves it.
 *
 * File format, version 2 (JSON, mode 0600, replaced atomically on save; always written):
 *   {"version":2,"servers":{"SERVER":{"TOOL":{"sha256":"HEX","fields":{"name":"HEX8",...},
 *    "pending":"HEX","pending_fields":{...},"v1":true}}}}
 * "pending" and "pending_fields" are present only while a changed definition awaits approval.
 * A tool's hash is the SHA-256 of the canonical JSON (object keys sorted by byte value at every
 * depth, printed without blanks) of {name, title, description, inputSchema, outputSchema,
 * annotations} taken from its definition, absent fields left out. "fields" holds, for each
 * present field, the first 8 hex digits of the SHA-256 of that field's canonical JSON, which
 * tells what changed. "v1": true (the only value allowed; absent otherwise) marks a pin carried
 * over from a version-1 file and not migrated yet: its "sha256", "fields", "pending" and
 * "pending_fields" are all still version-1 hashes.
 *
 * Version 1 (read, never written): the same shape with "version":1, no "v1" key, and hashes over
 * {name, description, inputSchema, annotations} only. Loading one marks every pin "v1" (and the
 * set not dirty). pol_pins_check compares a "v1" pin with the version-1 hash of the tool: a
 * match is re-pinned at once with the version-2 hash and fields ("v1", "pending" and
 * "pending_fields" dropped) and reads SAME; a mismatch is a change like any other (CHANGED, with
 * the pending definition in version-1 hashes, so that approving it and seeing the tool again
 * migrates it). The first save after migrations logs one INFO line per server with how many of
 * its pins were migrated. */
#ifndef GW_POLICY_PINS_H
#define GW_POLICY_PINS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct pol_pins;

/* Loads the pins file at path (version 1 or 2) into a new set (*out, free with pol_pins_free).
 * A missing file gives an empty set. Returns 0; CORE_EINVAL for a symlink at path (refused, not
 * followed), a file that is not a regular file, or one whose mode has group/other bits (message
 * names the file and its mode); CORE_EPARSE for a file that is not valid pins JSON; CORE_ETOOBIG
 * for a file over 64 MiB; or a UV_E* code when it cannot be read. On failure a one-line message
 * goes to err (NUL-terminated, truncated to errlen; err may be NULL) and *out is not written. */
GW_MUST_CHECK int pol_pins_load(const char *path, struct pol_pins **out, char *err, size_t errlen);

/* Frees the set; NULL does nothing. Unsaved changes are lost. */
void pol_pins_free(struct pol_pins *p);

enum pol_pin_verdict {
    POL_PIN_FIRST = 0, /* the server had no pins: this tool is pinned now */
    POL_PIN_NEW,       /* a new tool of an already pinned server: pinned now */
    POL_PIN_SAME,      /* matches its pin (a pending change, if any, was dropped) */
    POL_PIN_CHANGED,   /* differs from its pin: recorded as pending until approved */
};

/* Checks one tools/list entry `tool` (borrowed; its "name" is the upstream's original name) of
 * `server` against the pins and records what is new or changed. A server without pins gets
 * POL_PIN_FIRST for every tool it lists until the set is saved or one of its pinned tools is
 * checked again, so a whole first listing reads FIRST and later additions read NEW.
 * For CHANGED, `what` receives e.g. "title changed" or "name, description and annotations
 * changed" (cap bytes, NUL-terminated); otherwise it receives "". Checking the same changed
 * definition again is CHANGED again without another change to the set; when the server reverts
 * to the pinned definition the pending one is dropped and the verdict is SAME. A pin from a
 * version-1 file is checked and migrated as the header comment says. A tool without a string
 * "name" cannot be pinned and reads SAME. Marks the set dirty when it changed. */
enum pol_pin_verdict pol_pins_check(struct pol_pins *p, const char *server, const cJSON *tool,
                                    char *what, size_t cap);

/* Accepts the pending definition of `tool` of `server`, or of every tool of the server with a
 * pending definition when tool is NULL, and writes into *n how many were accepted. Returns 0, or
 * CORE_ENOTFOUND (message in err) for an unknown server or tool or when nothing is pending; *n is
 * written only on success. Marks the set dirty. */
GW_MUST_CHECK int pol_pins_approve(struct pol_pins *p, const char *server, const char *tool, int *n,
                                   char *err, size_t errlen);

/* True when a changed definition of tool `tool` of `server` waits for approval. */
bool pol_pins_is_pending(const struct pol_pins *p, const char *server, const char *tool);

/* True when at least one tool of `server` is pinned. p == NULL -> false. */
bool pol_pins_has_server(const struct pol_pins *p, const char *server);

/* True when the set changed since it was loaded or last saved. */
bool pol_pins_dirty(const struct pol_pins *p);

/* Writes the set to path (mode 0600, version 2) through a temporary file in the same directory
 * that is fsynced and renamed over path, so readers see the old or the new file, never a mix (a
 * symlink at path is replaced by the file, never followed). Returns 0, clears the dirty mark and
 * logs the version-1 pins migrated since the last save (one INFO line per server), or a UV_E*
 * code with a one-line message in err (the set stays dirty, path untouched, and the migrations
 * are logged by the next save that succeeds). */
GW_MUST_CHECK int pol_pins_save(struct pol_pins *p, const char *path, char *err, size_t errlen);

#endif
