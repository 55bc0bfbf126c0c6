/* The admin commands that talk to a running daemon or edit its files: reload, approve,
 * rotate-key and token. */
#ifndef GW_CMD_ADMIN_H
#define GW_CMD_ADMIN_H

#include <stddef.h>

#include "core/err.h"

struct core_buf;

/* `agentgate reload`: argv[0] is "reload". Returns the exit status (0, 1 failed, 2 usage). */
int cmd_reload(int argc, char **argv);
/* `agentgate approve SERVER [TOOL]`: argv[0] is "approve". Returns the exit status. */
int cmd_approve(int argc, char **argv);
/* `agentgate rotate-key`: argv[0] is "rotate-key". Returns the exit status. */
int cmd_rotate_key(int argc, char **argv);
/* `agentgate token create NAME`: argv[0] is "token". Returns the exit status. */
int cmd_token(int argc, char **argv);
/* `agentgate status [--json]`: argv[0] is "status". Prints the daemon's servers (state, remote
 * transport and url, last error) and sessions. Returns the exit status (1: no daemon). */
int cmd_status(int argc, char **argv);

/* Edits config text (len bytes, no NUL needed) so that its [client.CLIENT] section holds
 * `token_sha256 = HASH_HEX`, and appends the whole new text to out. In the first section
 * named [client.CLIENT], the first token_sha256 or token_env line is replaced (its
 * indentation and line ending kept) and any further ones are dropped; a section without one
 * gets the key right after its header; a file without the section gets
 * "\n[client.CLIENT]\ntoken_sha256 = HASH_HEX\n" at the end. Every other byte is kept, and
 * new lines use "\r\n" when the file's first line does. out stays untouched on failure.
 * Returns 0, CORE_EINVAL (client empty or holding a control character, hash_hex not 64
 * lowercase hex digits) or CORE_ETOOBIG (out's limit). Whether CLIENT is a valid name is for
 * core_config_parse to say about the result. */
GW_MUST_CHECK int cmd_set_client_token(const char *text, size_t len, const char *client,
                                       const char *hash_hex, struct core_buf *out);

#endif
