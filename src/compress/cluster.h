/* cluster.h - rewrite a model's weight matrices in a codebook format: with k <= 16 every row
 * gets its own k-level codebook from 1-D k-means of its weights (core/codebook.h); with k >= 32
 * one table of k int8 levels serves a whole matrix, each row scaled by its largest weight
 * (core/cbt.h), the levels chosen optimally for the matrix by compress/intlevels. Errors are
 * optionally weighted per input channel by an importance (the calibration mean x^2 of that
 * channel, so weights that meet large inputs are matched more closely, as in SqueezeLLM's
 * weighted k-means).
 *
 * Options: outliers, the given fraction of a matrix's weights of largest |w| sqrt(importance),
 * are left out of the codebook fit and kept exactly (their residual in a sparse side table the
 * engine adds to the product); exact zeros of a pruned matrix (at least 1 / (2 k) of a row, or of
 * a matrix for the shared table) get a level of their own that decodes to exactly 0, fitted
 * without them, so pruning survives clustering.
 *
 * Per row two solutions are computed and the one with the smaller weighted squared error (after
 * the int8 rounding of the codebook) is stored: the codebook quantizer's (centroids started at
 * weighted quantiles) and slm_kmeans' (k-means++ start drawn with a seed derived from the
 * tensor and row, so results do not depend on the thread count). */
#ifndef SLM_CLUSTER_H
#define SLM_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "calib.h"
#include "requant.h"

typedef struct {
    const slm_calib *calib; /* importance source; NULL: unweighted */
    uint64_t seed;          /* k-means++ draws (1) */
    double outliers;        /* fraction of each matrix's weights kept exactly in an outlier table
                               (the largest |w| sqrt(importance)); 0: none */
    int progress;           /* 0 none, 1 a bar on a terminal, 2 a line per tensor */
    const char *label;      /* progress prefix ("cluster") */
} slm_cluster_opts;

/* Per-column importance of the matrix `name` (blk.N.attn_{q,k,v,output}, blk.N.ffn_{gate,up,down}
 * weights) from cal: mean x^2 of the input channel plus 1e-3 of its mean over the channels (no
 * channel is ignored). Fills buf[n] and returns it, or NULL when cal has no statistics for it. */
const float *slm_cluster_importance(const slm_calib *cal, const char *name, float *buf, int64_t n);

/* Quantize one row x[n] (finite values) to codebook type t (imp NULL: unweighted). */
void slm_cluster_row(uint32_t t, const float *x, const float *imp, int64_t n, uint64_t seed, void *dst);

/* Outlier entries of a matrix of n weights at fraction f (what slm_cluster_plan reserves). */
int64_t slm_cluster_n_outliers(int64_t n, double f);

/* Give every converted tensor of ts[nt] its companions: the table "<base>.codebook" of a
 * per-tensor codebook type (core/cbt.h), and with o->outliers the outlier table
 * "<base>.outlier_rows / _cols / _vals" (model/model.h describes how they are read). Call
 * after slm_rq_plan and before converting. */
slm_status slm_cluster_plan(slm_rq_tensor *ts, size_t nt, const slm_cluster_opts *o);

/* Convert every tensor of ts (slm_rq_plan of g with codebook targets) through the requant loop
 * with slm_cluster_row as its quantizer, threads splitting the rows; fills dst, err2 and ref2.
 * Tensors planned to another type go through their from_float. */
slm_status slm_cluster_convert(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o);
/* The same, streamed: converts each tensor while w is written to path (slm_rq_convert_write). */
slm_status slm_cluster_convert_write(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o,
                                     slm_gguf_writer *w, const char *path);

#endif
