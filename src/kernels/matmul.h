/* matmul.h - weight matrix views and y = W x for a batch of activation rows, threaded. */
#ifndef SLM_MATMUL_H
#define SLM_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "qdot.h"

/* Weights kept exactly beside a compressed matrix, added to its product: a sparse matrix in
 * compressed rows (row r holds entries off[r] .. off[r+1]-1: columns col[i], values val[i]). */
typedef struct {
    const int32_t *off; /* [rows + 1], off[0] == 0, non-decreasing */
    const int32_t *col; /* [nnz], each < cols, increasing within a row */
    const float *val;   /* [nnz] */
    int64_t nnz;
} slm_outliers;

/* A weight matrix of `rows` rows, each `cols` elements of dtype `type`, rows contiguous
 * (GGUF ne = [cols, rows]). y = W x means y[r] = dot(row r, x). A matrix of a per-tensor
 * codebook dtype (core/cbt.h) carries its table; any matrix may carry an outlier table, whose
 * entries are added to the decoded weights (W = decoded + outliers). */
typedef struct {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
    const int8_t *tab;     /* per-tensor codebook [k] (cbt dtypes), else NULL */
    slm_outliers outl;     /* nnz 0: none */
} slm_mat;

/* What a matrix product needs besides its operands: the pool, the kernel set, and scratch
 * allocated once (slm_mm_init) for batches of up to max_tok rows of up to max_cols. */
typedef struct {
    slm_pool *pool;
    const slm_kernels *k; /* NULL: the exact reference path (f32 activations, dtype dot_f32) */
    void *act;            /* quantized activations [max_tok][act row bytes] */
    size_t act_cap;       /* bytes */
    float *row;           /* reference path: a dequantized weight row per thread [nth][max_cols] */
    int64_t max_cols;
    int max_tok;
} slm_mm;

/* Allocate scratch; k NULL selects the reference path. */
slm_status slm_mm_init(slm_mm *mm, slm_pool *pool, const slm_kernels *k, int max_tok, int64_t max_cols);
void slm_mm_free(slm_mm *mm);

/* y[t][r] = dot(W row r, x[t]) for t < n_tok: x is [n_tok][cols] f32, y is [n_tok][rows]. */
void slm_matmul(slm_mm *mm, const slm_mat *w, const float *x, int n_tok, float *y);

/* Row r of W as f32 (dst has cols floats). */
void slm_mat_row(const slm_mat *w, int64_t r, float *dst);

/* Plain f32 dot product. */
float slm_dot_f32(const float *a, const float *b, int64_t n);

#endif
