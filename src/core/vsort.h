/* vsort.h - (value, weight) points sorted by value: the stable radix sort and the search behind
 * the 1-D k-means of the codebook formats and of compress/kmeans. */
#ifndef SLM_VSORT_H
#define SLM_VSORT_H

#include <stdint.h>

typedef struct {
    float v; /* value */
    float w; /* weight */
} slm_vw;

/* Stable LSD radix sort of a[n] by value in float order (-0 just below +0); tmp has n
 * elements. */
void slm_vw_sort(slm_vw *a, slm_vw *tmp, int64_t n);

/* First i in [0, n) of sorted a with a[i].v >= v (n if none). */
int64_t slm_vw_lower_bound(const slm_vw *a, int64_t n, double v);

#endif
