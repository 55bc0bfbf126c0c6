#ifndef GW_CMD_PROBE_H
#define GW_CMD_PROBE_H

/* `agentgate probe URL ...`: a one-shot MCP client for a remote server (initialize, tools/list,
 * optionally one tools/call), printing what it got as JSON. argv[0] is "probe". Returns the
 * exit status: 0 success, 1 failure (one line on stderr), 2 usage. */
int cmd_probe(int argc, char **argv);

#endif
