/* The blocking client of the daemon's control API: one HTTP/1.1 POST to /agentgate/... on the
 * daemon's Unix socket, for the admin commands (cmd/admin.c). Only a socket in a private
 * directory with a listener of our own uid is ever written to. */
#ifndef GW_CMD_CTL_H
#define GW_CMD_CTL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* A control request's answer. */
struct cmd_ctl_reply {
    int status;        /* HTTP status */
    cJSON *json;       /* the body when it is a JSON object, else NULL */
    char excerpt[200]; /* the start of the body, for messages */
};

/* POSTs the JSON text body to target (e.g. "/agentgate/reload") on the daemon's socket at
 * sock and reads the whole answer, all within 10 s. Returns 0 (reply filled; the caller frees
 * reply->json with cJSON_Delete), or a negative code with a one-line message in err:
 * cmd_ctl_is_no_daemon() tells when nothing listens; CORE_EINVAL that the socket's directory or
 * its listener is not ours (nothing was sent); CORE_ETIMEDOUT, CORE_EPROTO (not HTTP, or a
 * malformed answer), CORE_ETOOBIG (answer over 1 MiB) or -errno otherwise. */
GW_MUST_CHECK int cmd_ctl_post(const char *sock, const char *target, const char *body,
                               struct cmd_ctl_reply *reply, char *err, size_t errlen);
/* Whether a cmd_ctl_post error means that no daemon listens on the socket (no socket file, or
 * one that nobody accepts on). */
bool cmd_ctl_is_no_daemon(int rc);
/* The string member key of the reply's JSON object (borrowed), or NULL. */
const char *cmd_ctl_reply_str(const struct cmd_ctl_reply *r, const char *key);
/* Whether the reply says {"ok":true}. */
bool cmd_ctl_reply_ok(const struct cmd_ctl_reply *r);
/* Describes in msg an answer that is neither ok nor a refusal with an error. */
void cmd_ctl_describe_odd(const struct cmd_ctl_reply *r, char *msg, size_t cap);

#endif
