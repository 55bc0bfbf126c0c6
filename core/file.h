/* Reading whole files, opening state files without following symlinks, and writing files so that a crash leaves
 * either the old content or the new, never half of it. */
#ifndef GW_CORE_FILE_H
#define GW_CORE_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"

/* Opens the regular file at path for agentgate's own state (audit log, revoked, logs, pins):
 * open(2) with flags (O_RDONLY, O_WRONLY | O_APPEND | O_CREAT, ...) plus O_NOFOLLOW, O_CLOEXEC
 * and O_NOCTTY, and mode for a file it creates. A symlink at path is refused, never followed
 * (symlinks in the directories above are: core_path_check_private_dir covers those), and so is
 * anything but a regular file; a FIFO cannot block the open. On success *fd_out is the
 * descriptor, in blocking mode (the caller closes it). Returns 0; -ENOENT when path does not
 * exist (without O_CREAT); -ELOOP for a symlink; CORE_EINVAL for a FIFO, device, socket or
 * directory; or another -errno; on failure err gets one line naming the file. */
GW_MUST_CHECK int core_file_open(const char *path, int flags, mode_t mode, int *fd_out, char *err,
                                 size_t errlen);
/* Flags for core_file_read_all. */
#define CORE_FILE_NOFOLLOW 1u /* refuse a symlink at path, as core_file_open does */
#define CORE_FILE_PRIVATE 2u  /* refuse a file with any group/other permission bit */

/* Reads the whole regular file at path into a new NUL-terminated buffer: *out (the caller frees
 * it with core_free, after wiping it if it holds a secret; no other copy is left behind), its
 * length without the NUL in *len_out and its permission bits in *mode_out (either may be NULL).
 * At most max bytes are read, even from a file that grows meanwhile. A symlink at path is
 * followed unless flags has CORE_FILE_NOFOLLOW; a FIFO, device or directory is refused without
 * blocking. Returns 0; -ENOENT when path does not exist; -ELOOP for a symlink (NOFOLLOW);
 * CORE_EINVAL for anything but a regular file, or a non-private one (PRIVATE); CORE_ETOOBIG
 * when longer than max; or another -errno. On failure err gets one line naming the file and
 * the out-parameters are untouched. */
GW_MUST_CHECK int core_file_read_all(const char *path, unsigned flags, size_t max, char **out,
                                     size_t *len_out, mode_t *mode_out, char *err, size_t errlen);
/* Rotation: path.(keep-1) -> path.keep (the old one replaced), ..., path.1 -> path.2, then
 * path -> path.1; missing files are skipped. rename(2) moves directory entries, so a symlink
 * among them is moved or replaced, never followed. The caller opens a fresh path afterwards.
 * Returns 0, or -errno with a one-line message naming the file in err. */
GW_MUST_CHECK int core_file_shift(const char *path, int keep, char *err, size_t errlen);
/* Writes all n bytes to fd (retrying short writes and EINTR). Returns 0 or -errno. */
GW_MUST_CHECK int core_file_write_all(int fd, const void *data, size_t n);
/* Writes data to a new temporary file next to path ("PATH.agentgate-tmp-XXXXXX") with the given
 * mode, fsynced and closed. On success *tmp_out holds its name (the caller frees it, and commits
 * or unlinks the file). Returns 0 or -errno (nothing is left behind). */
GW_MUST_CHECK int core_file_write_temp(const char *path, const void *data, size_t n, mode_t mode,
                                       char **tmp_out);
/* Renames tmp over path and fsyncs the directory (best effort). On failure tmp is unlinked.
 * rename(2) replaces the directory entry at path: a symlink there is replaced by the new file,
 * never followed, so its target is left untouched. Returns 0 or -errno. */
GW_MUST_CHECK int core_file_commit(const char *tmp, const char *path);
/* Both: replaces the file at path with data (a symlink at path is replaced, not followed; the
 * temporary file is made with O_EXCL, so a planted name cannot redirect it). Returns 0 or
 * -errno. */
GW_MUST_CHECK int core_file_write_atomic(const char *path, const void *data, size_t n,
                                         mode_t mode);

#endif
