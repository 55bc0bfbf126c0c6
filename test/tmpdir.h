/* For Check tests: a fresh directory under /tmp per test, removed (with the files in it) at
 * teardown. Header-only: each test executable is built from one source file. */
#ifndef GW_TEST_TMPDIR_H
#define GW_TEST_TMPDIR_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Makes /tmp/ag-TAG-XXXXXX into dir (at least 64 bytes). */
static inline void tmpdir_make(char *dir, size_t cap, const char *tag)
{
    snprintf(dir, cap, "/tmp/ag-%s-XXXXXX", tag);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Removes dir and the plain files in it (the tests make no subdirectories). */
static inline void tmpdir_remove(const char *dir)
{
    DIR *dh = opendir(dir);
    if (dh == NULL)
        return;
    char p[512];
    for (struct dirent *e = readdir(dh); e != NULL; e = readdir(dh)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(unlink(p), 0);
    }
    closedir(dh);
    ck_assert_int_eq(rmdir(dir), 0);
}

#endif
