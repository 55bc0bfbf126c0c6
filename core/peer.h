/* Who is on the other end of a Unix socket. */
#ifndef GW_CORE_PEER_H
#define GW_CORE_PEER_H

#include <sys/types.h>

/* Writes the uid of the process that connected fd (SO_PEERCRED, as of connect()). Returns 0,
 * or -1 (errno set) when fd is not a connected Unix socket. */
int core_peer_uid(int fd, uid_t *uid);

#endif
