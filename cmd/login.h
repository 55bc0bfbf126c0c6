/* `agentgate login` and `agentgate logout`: the OAuth authorization-code flow for a remote
 * server of the config (auth = oauth), and forgetting its tokens. */
#ifndef GW_CMD_LOGIN_H
#define GW_CMD_LOGIN_H

/* `agentgate login SERVER ...`: argv[0] is "login". Returns the exit status (0, 1 failed,
 * 2 usage). */
int cmd_login(int argc, char **argv);
/* `agentgate logout SERVER ...`: argv[0] is "logout". Returns the exit status. */
int cmd_logout(int argc, char **argv);
/* `agentgate __oauth-token SERVER ...` (hidden, for tests): asks the OAuth client for the
 * server's token N times at once and prints, per answer, "ok sha256:PREFIX" or "error ...",
 * never the token; with --check, also the HTTP status of an initialize sent with it. */
int cmd_oauth_token(int argc, char **argv);

#endif
