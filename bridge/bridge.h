/* `agentgate bridge`: a stdio MCP server whose other end is the daemon's Unix socket. */
#ifndef GW_BRIDGE_BRIDGE_H
#define GW_BRIDGE_BRIDGE_H

/* argv[0] is "bridge". Returns the exit status. */
int br_bridge_main(int argc, char **argv);

#endif
