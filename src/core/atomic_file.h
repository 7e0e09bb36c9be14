/* atomic_file.h - write a file so that it appears complete under its name or not at all.
 *
 * Writes go to a temporary file in the target's directory; commit flushes, fsyncs and renames
 * it into place; abort (or any failed write) removes it. */
#ifndef SLM_ATOMIC_FILE_H
#define SLM_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "status.h"

typedef struct {
    FILE *f;
    char *path, *tmp;
    int failed;
} slm_afile;

slm_status slm_afile_open(slm_afile *a, const char *path);
/* Append n bytes; errors are remembered and reported by commit. */
void slm_afile_write(slm_afile *a, const void *p, size_t n);
/* Flush buffered writes to the temporary file (a->tmp), e.g. to read it back before commit;
 * returns 0 or the errno of the first failure. */
int slm_afile_flush(slm_afile *a);
/* Flush, fsync, rename into place. On failure the temporary file is removed. */
slm_status slm_afile_commit(slm_afile *a);
/* Discard everything written (safe after commit or on a zeroed struct). */
void slm_afile_abort(slm_afile *a);

#endif
