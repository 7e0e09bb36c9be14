/* matmul.c - reference matrix products over any dtype with a dot kernel.
 *
 * One token: each row is dotted directly from its blocks (dtype dot_f32). A batch: each row is
 * dequantized once into scratch and dotted with every activation row, so the dequantization
 * cost is shared by the batch. */
#include "matmul.h"

#include "../core/dtype.h"

float slm_dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void slm_mat_row(const slm_mat *w, int64_t r, float *dst) {
    const slm_dtype_traits *tr = slm_dtype_get(w->type);
    tr->to_float((const char *)w->data + (size_t)r * w->row_bytes, dst, w->cols);
}

void slm_matmul(const slm_mat *w, const float *x, int n_tok, float *y, float *scratch) {
    const slm_dtype_traits *tr = slm_dtype_get(w->type);
    const char *base = w->data;
    const int64_t rows = w->rows, cols = w->cols;
    if (n_tok == 1) {
        for (int64_t r = 0; r < rows; r++) y[r] = tr->dot_f32(base + (size_t)r * w->row_bytes, x, cols);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        tr->to_float(base + (size_t)r * w->row_bytes, scratch, cols);
        for (int t = 0; t < n_tok; t++) y[(size_t)t * rows + r] = slm_dot_f32(scratch, x + (size_t)t * cols, cols);
    }
}
