/* qdot.h - dot-product kernels over quantized weights, per instruction set, chosen at run time.
 *
 * Matrix products quantize the activations once per matrix into the activation format that
 * pairs with the weight dtype (slm_act_type: Q8_0 blocks for Q4_0/Q5_0/Q8_0, Q8_1 blocks
 * (with the block sum) for Q4_1/Q5_1, Q8_K for the K-quants, F32 for float weights) and use
 * integer dot products. Each instruction set has a table; a missing entry falls back to the
 * scalar twin, which is the reference every SIMD kernel is tested against.
 *
 * SLM_ISA_REF is not a kernel set: it means the exact f32 path (dtype dot_f32 with f32
 * activations) used as the oracle-grade reference. */
#ifndef SLM_QDOT_H
#define SLM_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"

typedef enum {
    SLM_ISA_REF = 0,    /* f32 activations, scalar dot_f32 (exact reference) */
    SLM_ISA_SCALAR = 1, /* quantized activations, portable C */
    SLM_ISA_AVX2 = 2,   /* AVX2 + FMA + F16C */
    SLM_ISA_AVX512 = 3, /* AVX-512 F/BW/VL (+VNNI where present) */
    SLM_ISA_COUNT
} slm_isa;

/* Dot product of n elements: weight row w (weight dtype) with activation row x (in
 * slm_act_type of that dtype). n is a multiple of both block sizes. */
typedef float (*slm_vec_dot_fn)(const void *w, const void *x, int64_t n);

/* f32 -> activation format, n elements (a multiple of the format's block size). */
typedef void (*slm_quant_act_fn)(const float *x, void *y, int64_t n);

/* Several rows times several activation rows:
 *   y[c * ldy + r] = dot(w + r * w_stride, x + c * x_stride)  for r < nr, c < nc.
 * Strides in bytes (w, x) and floats (ldy). */
typedef void (*slm_gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                            int nc, float *y, size_t ldy);

/* Kernels of the per-tensor codebook formats (core/cbt.h), which take the tensor's table
 * tab[k] besides the operands; same meaning as slm_vec_dot_fn / slm_gemm_fn otherwise. */
typedef float (*slm_vec_dot_tab_fn)(const int8_t *tab, const void *w, const void *x, int64_t n);
typedef void (*slm_gemm_tab_fn)(const int8_t *tab, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                                size_t x_stride, int nc, float *y, size_t ldy);

typedef struct {
    slm_isa isa;
    const char *name;                        /* "scalar", "avx2", "avx512" */
    slm_vec_dot_fn vec_dot[SLM_DT_COUNT];    /* by weight dtype */
    slm_gemm_fn gemm[SLM_DT_COUNT];          /* by weight dtype; a generic loop when not specialized */
    slm_quant_act_fn quant_act[SLM_DT_COUNT]; /* by activation dtype (SLM_DT_Q8_0, Q8_1, Q8_K, F32) */
    slm_vec_dot_tab_fn vec_dot_tab[SLM_DT_COUNT]; /* per-tensor codebook dtypes only (core/cbt.h) */
    slm_gemm_tab_fn gemm_tab[SLM_DT_COUNT];
} slm_kernels;

/* Activation dtype for weights of dtype wt: SLM_DT_Q8_0, SLM_DT_Q8_1, SLM_DT_Q8_K or SLM_DT_F32;
 * -1 if wt has no kernel. */
int slm_act_type(uint32_t wt);

/* Kernel table for an instruction set, or NULL if this CPU (or this build) cannot run it.
 * SLM_ISA_REF has no table (NULL). Tables are complete: every dtype with a scalar kernel has an
 * entry in every table. */
const slm_kernels *slm_kernels_get(slm_isa isa);

/* Best instruction set this CPU supports. */
slm_isa slm_isa_detect(void);
/* The one to use: $SLIMLM_ISA (ref, scalar, avx2, avx512) if set and supported, else detect(). */
slm_isa slm_isa_default(void);
const char *slm_isa_name(slm_isa isa);
/* Parse a name; -1 if unknown. */
int slm_isa_from_name(const char *name);

#endif
