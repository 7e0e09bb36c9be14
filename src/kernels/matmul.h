/* matmul.h - weight matrix views and y = W x for a batch of activation rows. */
#ifndef SLM_MATMUL_H
#define SLM_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/* A weight matrix of `rows` rows, each `cols` elements of dtype `type`, rows contiguous
 * (GGUF ne = [cols, rows]). y = W x means y[r] = dot(row r, x). */
typedef struct {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
} slm_mat;

/* y[t][r] = dot(W row r, x[t]) for t < n_tok: x is [n_tok][cols], y is [n_tok][rows].
 * scratch holds at least cols floats (a dequantized row, reused across the batch). */
void slm_matmul(const slm_mat *w, const float *x, int n_tok, float *y, float *scratch);

/* Row r of W as f32 (dst has cols floats). */
void slm_mat_row(const slm_mat *w, int64_t r, float *dst);

/* Plain f32 dot product. */
float slm_dot_f32(const float *a, const float *b, int64_t n);

#endif
