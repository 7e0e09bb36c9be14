/* qdot_g.h - kernels of the group-wise formats (core/gq.h), internal to src/kernels.
 *
 * One kernel per instruction set serves all 24 formats: the format (bits, group, sym/asym)
 * is an argument. Activations are Q8_0 blocks for the symmetric formats and Q8_1 blocks (with
 * the block sum) for the asymmetric ones; a 32-weight sub-block meets one activation block:
 *   symmetric:  (d_w * d_x) * sum_e (u_e - o) * q_e     o = 2^(bits-1), or 0 for 8 bits
 *   asymmetric: (d_w * d_x) * sum_e u_e * q_e + m_w * s_x
 * The integer sums are exact; the scalar twin adds the sub-block results in double, and SIMD
 * kernels must agree with it to float rounding. qdot_g.c binds the kernels to the per-dtype
 * table entries. */
#ifndef SLM_QDOT_G_H
#define SLM_QDOT_G_H

#include "core/gq.h"
#include "qdot_impl.h"

typedef float (*slm_gq_dot_fn)(const slm_gq_format *f, const void *w, const void *x, int64_t n);
/* as slm_gemm_fn, for one format */
typedef void (*slm_gq_gemm_fn)(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr,
                               const void *x, size_t x_stride, int nc, float *y, size_t ldy);

float slm_gq_dot_scalar(const slm_gq_format *f, const void *w, const void *x, int64_t n);
void slm_gq_gemm_scalar(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                        size_t x_stride, int nc, float *y, size_t ldy);
#if defined(__x86_64__)
float slm_gq_dot_avx2(const slm_gq_format *f, const void *w, const void *x, int64_t n);
float slm_gq_dot_avx512(const slm_gq_format *f, const void *w, const void *x, int64_t n);
void slm_gq_gemm_avx2(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                      size_t x_stride, int nc, float *y, size_t ldy);
void slm_gq_gemm_avx512(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                        size_t x_stride, int nc, float *y, size_t ldy);
#endif

#endif
