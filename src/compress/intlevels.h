/* intlevels.h - the best k integer levels in [-127, 127] for a weighted set of values: the
 * shared table of a per-tensor codebook (core/cbt.h), where every weight is a row scale times
 * one int8 level.
 *
 * Values (already divided by their row's scale, so they lie in [-127, 127]) are gathered in a
 * histogram of half-unit bins holding the sums of w, w u and w u^2. Nearest-level assignment
 * splits the line at midpoints of neighbouring integer levels, which are half-integers and so
 * bin edges: the cost of any set of levels is exact from the bin sums. A dynamic program over
 * the 255 candidate levels (O(k * 255^2)) then finds the set of k levels of least weighted
 * squared error exactly (1-D quantization has contiguous clusters), not a local optimum as
 * Lloyd iterations would. */
#ifndef SLM_INTLEVELS_H
#define SLM_INTLEVELS_H

#include <stdbool.h>
#include <stdint.h>

enum {
    SLM_IL_MAX = 127,                     /* levels are integers in [-127, 127] */
    SLM_IL_LEVELS = 2 * SLM_IL_MAX + 1,   /* 255 candidates */
    SLM_IL_BINS = 2 * SLM_IL_LEVELS,      /* half-unit bins covering [-127.5, 127.5) */
};

typedef struct {
    double w[SLM_IL_BINS], wu[SLM_IL_BINS], wu2[SLM_IL_BINS];
} slm_il_hist;

void slm_il_clear(slm_il_hist *h);
/* Add value u (clamped to [-127.5, 127.5); non-finite: ignored) with weight w >= 0. */
void slm_il_add(slm_il_hist *h, float u, double w);
/* Add every bin of src to dst. */
void slm_il_merge(slm_il_hist *dst, const slm_il_hist *src);

/* The k (>= 1) levels of least sum w (u - nearest level)^2 into levels[], ascending; returns
 * how many were chosen: min(k, 255), or fewer when the histogram is empty (then the level 0).
 * With pin0 the set must contain 0 (the best such set). *cost (may be NULL) receives that
 * least cost. */
int slm_il_optimal(const slm_il_hist *h, int k, bool pin0, int8_t *levels, double *cost);

/* Cost of the given levels (any order, n >= 1) for the histogram (for tests and reports). */
double slm_il_cost(const slm_il_hist *h, const int8_t *levels, int n);

#endif
