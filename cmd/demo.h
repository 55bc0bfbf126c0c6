/* `agentgate demo-server`: a small stdio MCP server built into the binary. It is the gateway's
 * embedded default upstream, a test fixture and the benchmark backend. */
#ifndef GW_CMD_DEMO_H
#define GW_CMD_DEMO_H

/* Serves MCP (newline-delimited JSON-RPC) on stdin/stdout until stdin reaches EOF and every
 * request in progress (sleeps) has been answered, then frees everything and returns the exit
 * status: 0, or 1 when stdout failed or a frame exceeded 16 MiB. stdout carries only JSON-RPC
 * frames; diagnostics go to stderr. stdin may be a pipe, a socket, a tty or a file.
 * Sets SIGPIPE to SIG_IGN and installs the cJSON allocation hooks (process-wide).
 * argv is `... demo-server [--help]`; other arguments are ignored. */
int cmd_demo_main(int argc, char **argv);

#endif
