/* `agentgate import claude|cursor|vscode [PATH] [--rewrite]`. */
#ifndef GW_CMD_IMPORT_H
#define GW_CMD_IMPORT_H

/* argv[0] is "import". Returns the exit status. */
int cmd_import_main(int argc, char **argv);

#endif
