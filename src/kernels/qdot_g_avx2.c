/* qdot_g_avx2.c - group-format kernels for avx2 (see qdot_g.h). */
#include "qdot_g.h"

float slm_gq_dot_avx2(const slm_gq_format *f, const void *w, const void *x, int64_t n) {
    return slm_gq_dot_scalar(f, w, x, n);
}

void slm_gq_gemm_avx2(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                        size_t x_stride, int nc, float *y, size_t ldy) {
    slm_gq_gemm_scalar(f, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}
