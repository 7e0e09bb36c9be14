/* kmeans.h - weighted k-means of points in d dimensions: k-means++ start, Lloyd iterations.
 *
 * Deterministic for a seed. Every point has a weight >= 0 (NULL: all ones); the objective is
 * sum_i w_i |x_i - c(i)|^2. A cluster left empty by an assignment step takes over the point
 * that costs the most where it is. The result is never worse than the k-means++ start (the
 * best centers seen are kept). In one dimension the points are sorted once and clusters are
 * runs of the sorted points between midpoints of neighbouring centers: assignment is a binary
 * search per center, and the means come from prefix sums. */
#ifndef SLM_KMEANS_H
#define SLM_KMEANS_H

#include <stdint.h>

#include "../core/status.h"

typedef struct {
    int k;         /* clusters, >= 1 */
    int max_iters; /* Lloyd steps at most (0: 100) */
    uint64_t seed; /* k-means++ sampling */
} slm_kmeans_params;

typedef struct {
    double init_cost; /* objective at the k-means++ start */
    double cost;      /* objective of the returned centers */
    int iters;        /* Lloyd steps run */
} slm_kmeans_info;

/* x is [n][d], w [n] or NULL; centers receives [k][d], assign (NULL: not wanted) [n] cluster
 * indices. With fewer than k distinct points, the surplus centers repeat existing ones. */
slm_status slm_kmeans(const float *x, const float *w, int64_t n, int d, const slm_kmeans_params *p,
                      float *centers, int32_t *assign, slm_kmeans_info *info);

#endif
