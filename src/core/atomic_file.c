/* atomic_file.c - temporary file + fsync + rename. */
#include "atomic_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

slm_status slm_afile_open(slm_afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path);
    a->path = malloc(n + 1);
    a->tmp = malloc(n + 16);
    if (!a->path || !a->tmp) {
        slm_afile_abort(a);
        return slm_error(SLM_ERR_NOMEM, "out of memory");
    }
    memcpy(a->path, path, n + 1);
    snprintf(a->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        slm_afile_abort(a);
        return slm_error(SLM_ERR_IO, "%s: cannot create a file in its directory: %s", path, strerror(e));
    }
    /* mkstemp creates the file private; give the result the permissions a plain create would */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) a->failed = errno;
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        close(fd);
        slm_afile_abort(a);
        return slm_error(SLM_ERR_IO, "%s: fdopen failed", path);
    }
    return SLM_OK;
}

void slm_afile_write(slm_afile *a, const void *p, size_t n) {
    if (a->failed || !a->f || n == 0) return;
    if (fwrite(p, 1, n, a->f) != n) a->failed = errno ? errno : EIO;
}

int slm_afile_flush(slm_afile *a) {
    if (!a->f) return EIO;
    if (!a->failed && fflush(a->f) != 0) a->failed = errno ? errno : EIO;
    return a->failed;
}

slm_status slm_afile_commit(slm_afile *a) {
    if (!a->f) return slm_error(SLM_ERR_IO, "write failed");
    int e = a->failed;
    if (!e && fflush(a->f) != 0) e = errno;
    if (!e && fsync(fileno(a->f)) != 0) e = errno;
    if (fclose(a->f) != 0 && !e) e = errno;
    a->f = NULL;
    if (!e && rename(a->tmp, a->path) != 0) e = errno;
    if (e) {
        char path[512];
        snprintf(path, sizeof path, "%s", a->path);
        slm_afile_abort(a);
        return slm_error(SLM_ERR_IO, "%s: write failed: %s (nothing was written)", path, strerror(e));
    }
    free(a->tmp);
    a->tmp = NULL;
    slm_afile_abort(a);
    return SLM_OK;
}

void slm_afile_abort(slm_afile *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}
