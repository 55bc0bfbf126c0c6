/* struct ucred needs _GNU_SOURCE, which the build defines. */
#include "core/peer.h"

#include <sys/socket.h>

int core_peer_uid(int fd, uid_t *uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -1;
    *uid = cred.uid;
    return 0;
}
