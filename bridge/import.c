/* Placeholder until import lands. */
#include "bridge/import.h"

#include <stdio.h>

int br_import_main(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "agentgate: import is not built yet\n");
    return 1;
}
