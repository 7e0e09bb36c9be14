/* qdot_cbt.h - the per-set kernels of the per-tensor codebook formats (internal to src/kernels
 * and its tests; the tables reach them through slm_kernels.vec_dot_tab / gemm_tab). Each set's
 * gemm computes every output exactly as its dot does. */
#ifndef SLM_QDOT_CBT_H
#define SLM_QDOT_CBT_H

#include <stddef.h>
#include <stdint.h>

#include "core/cbt.h"

#define SLM_CBT_KERNELS(isa)                                                                                       \
    float slm_cbt_dot_##isa(const slm_cbt_format *f, const int8_t *tab, const void *w, const void *x, int64_t n); \
    void slm_cbt_gemm_##isa(const slm_cbt_format *f, const int8_t *tab, int64_t n, const void *w, size_t ws,      \
                            int nr, const void *x, size_t xs, int nc, float *y, size_t ldy);

SLM_CBT_KERNELS(scalar)
#if defined(__x86_64__)
SLM_CBT_KERNELS(avx2)
SLM_CBT_KERNELS(avx512) /* AVX-512 BW/VNNI, the table looked up by pshufb slices */
SLM_CBT_KERNELS(vbmi2)  /* the same with vpermb / vpermi2b (needs AVX-512 VBMI) */
#endif
#undef SLM_CBT_KERNELS

#endif
