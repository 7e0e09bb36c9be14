/* membw.h - main-memory bandwidth probe (STREAM-style copy and triad).
 *
 * Three arrays of doubles a, b, c, each array_bytes long (much larger than the last-level
 * cache), split into contiguous chunks, one per thread; each thread first touches its own
 * chunk so its pages are local to it. Kernels, as in STREAM:
 *   copy:  a[i] = b[i]             16 bytes moved per element (8 read + 8 written)
 *   triad: a[i] = b[i] + s * c[i]  24 bytes moved per element (16 read + 8 written)
 * Bandwidth counts bytes read plus bytes written (cache write-allocate traffic is not
 * counted), in GB/s (1e9 bytes per second), best pass of `passes`. The results are checked
 * after the timed passes; a wrong value is an error, not a number. */
#ifndef SLM_MEMBW_H
#define SLM_MEMBW_H

#include <stddef.h>

#include "../core/status.h"

#define SLM_MEMBW_DEFAULT_BYTES ((size_t)128 << 20)
#define SLM_MEMBW_DEFAULT_PASSES 5

typedef struct {
    size_t array_bytes; /* bytes per array, three arrays (0: SLM_MEMBW_DEFAULT_BYTES) */
    int n_threads;      /* threads (<= 0: all online CPUs) */
    int passes;         /* timed passes per kernel, the best is kept (0: SLM_MEMBW_DEFAULT_PASSES) */
} slm_membw_params;

typedef struct {
    int n_threads;      /* threads used */
    size_t array_bytes; /* bytes per array actually used (rounded down to whole elements) */
    int passes;
    double copy_gbs;    /* best copy pass, GB/s */
    double triad_gbs;   /* best triad pass, GB/s */
} slm_membw_result;

/* Run the probe. SLM_ERR_ARG for arrays smaller than 4 KiB per thread or more than 1 << 40
 * bytes; SLM_ERR_NOMEM when the arrays cannot be allocated; SLM_ERR_IO when a thread cannot
 * be started; SLM_ERR_FORMAT if a kernel produced a wrong value. */
slm_status slm_membw_run(const slm_membw_params *p, slm_membw_result *r);

/* Size of the largest data cache of CPU 0 in bytes (Linux sysfs, else sysconf), 0 if unknown:
 * the probe's arrays should be several times larger. */
size_t slm_membw_llc_bytes(void);

#endif
