/* Placeholder until the bridge lands. */
#include "bridge/bridge.h"

#include <stdio.h>

int br_bridge_main(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "agentgate: bridge is not built yet\n");
    return 1;
}
