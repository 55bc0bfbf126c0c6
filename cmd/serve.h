#ifndef GW_CMD_SERVE_H
#define GW_CMD_SERVE_H

/* `agentgate serve`: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv);

#endif
