/* Writing files so that a crash leaves either the old content or the new, never half of it. */
#ifndef GW_CORE_FILE_H
#define GW_CORE_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"

/* Writes all n bytes to fd (retrying short writes and EINTR). Returns 0 or -errno. */
GW_MUST_CHECK int core_file_write_all(int fd, const void *data, size_t n);
/* Writes data to a new temporary file next to path ("PATH.agentgate-tmp-XXXXXX") with the given
 * mode, fsynced and closed. On success *tmp_out holds its name (the caller frees it, and commits
 * or unlinks the file). Returns 0 or -errno (nothing is left behind). */
GW_MUST_CHECK int core_file_write_temp(const char *path, const void *data, size_t n, mode_t mode,
                                       char **tmp_out);
/* Renames tmp over path and fsyncs the directory (best effort). On failure tmp is unlinked.
 * Returns 0 or -errno. */
GW_MUST_CHECK int core_file_commit(const char *tmp, const char *path);
/* Both: replaces the file at path with data. Returns 0 or -errno. */
GW_MUST_CHECK int core_file_write_atomic(const char *path, const void *data, size_t n,
                                         mode_t mode);

#endif
