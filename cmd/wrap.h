#ifndef GW_CMD_WRAP_H
#define GW_CMD_WRAP_H

/* `agentgate wrap`: argv[0] is "wrap". Returns the exit status. */
int cmd_wrap(int argc, char **argv);

#endif
