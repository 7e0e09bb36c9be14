/* qdot_impl.h - how the kernel tables are filled (internal to src/kernels).
 *
 * Each dtype family provides one fill function per instruction set; a fill function sets the
 * entries it implements and leaves the others untouched. qdot.c builds each table from the
 * scalar fills first, then overlays the SIMD ones. */
#ifndef SLM_QDOT_IMPL_H
#define SLM_QDOT_IMPL_H

#include "qdot.h"

/* legacy block quants (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), float weights (F32, F16, BF16) and the
 * activation quantizers Q8_0, Q8_1, F32 */
void slm_qdot_fill_scalar(slm_kernels *k);
void slm_qdot_fill_avx2(slm_kernels *k);
void slm_qdot_fill_avx512(slm_kernels *k);

/* K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and the Q8_K activation quantizer */
void slm_qdot_k_fill_scalar(slm_kernels *k);
void slm_qdot_k_fill_avx2(slm_kernels *k);
void slm_qdot_k_fill_avx512(slm_kernels *k);

/* group formats (core/gq.h), all 24 entries for one instruction set (qdot_g.c) */
void slm_qdot_g_fill(slm_kernels *k, slm_isa isa);
/* sparse formats (qdot_sp.c) and codebook formats (qdot_cb.c): set the entries of one table */
void slm_qdot_sp_fill(slm_kernels *k, slm_isa isa);
void slm_qdot_cb_fill(slm_kernels *k, slm_isa isa);
/* per-tensor codebook formats (qdot_cbt.c): the vec_dot_tab / gemm_tab entries of one table */
void slm_qdot_cbt_fill(slm_kernels *k, slm_isa isa);

/* The scalar twins' step of a 32-weight sub-block b decoded to int8 w[32] against nc Q8_0
 * activation rows (x, row stride xs bytes): acc[c] += d_x * sum_e w[e] * q_x[e], the integer
 * sum exact, the term added in double. */
static inline void slm_q8_0_block_acc(const int8_t w[32], const void *x, size_t xs, int64_t b, int nc, double *acc) {
    for (int c = 0; c < nc; c++) {
        const uint8_t *xb = (const uint8_t *)x + (size_t)c * xs + (size_t)b * 34;
        const int8_t *q = (const int8_t *)(xb + 2);
        int32_t isum = 0;
        for (int e = 0; e < 32; e++) isum += (int32_t)w[e] * (int32_t)q[e];
        acc[c] += (double)slm_f16_to_f32((uint16_t)(xb[0] | (xb[1] << 8))) * (double)isum;
    }
}

/* A gemm built from vec_dot (used where no specialized gemm exists). */
void slm_gemm_generic(slm_vec_dot_fn dot, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                      size_t x_stride, int nc, float *y, size_t ldy);

#endif
