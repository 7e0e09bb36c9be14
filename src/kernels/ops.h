/* ops.h - elementwise and normalization kernels of the Llama block. slm_rmsnorm and slm_swiglu
 * choose an AVX2 / AVX-512 twin at run time (when the CPU's kernel table for that instruction
 * set exists, src/kernels/qdot.h); the _ref functions are the scalar twins they are tested
 * against. */
#ifndef SLM_OPS_H
#define SLM_OPS_H

/* out = x / rms(x) * w, n elements (out may alias x). The sum of squares is taken in double,
 * so the twins differ only by its summation order (outputs agree to about 1 ulp). */
void slm_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void slm_rmsnorm_ref(float *out, const float *x, const float *w, int n, float eps);
void slm_rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps);

/* Rotate the first rope_dim dims of each of n_heads vectors of head_dim floats by the angles
 * given as cos/sin tables [rope_dim/2]. neox: pairs (i, i+rope_dim/2), else (2i, 2i+1). */
void slm_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t, const float *sin_t, int neox);

/* cos/sin tables for position pos: angle_i = pos * scale * base^(-2i/rope_dim). */
void slm_rope_table(float *cos_t, float *sin_t, int rope_dim, float pos, float base);

/* In-place softmax of n values. */
void slm_softmax(float *x, int n);

/* gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. The SIMD twins use
 * a polynomial exp (about 2 ulp; exp(-g) clamped to [exp(-87.3), exp(88)], so for g < -88 they
 * give a value of order 1e-36 * |g * up| where the scalar one gives 0). */
void slm_swiglu(float *gate, const float *up, int n);
void slm_swiglu_ref(float *gate, const float *up, int n);
void slm_swiglu_avx2(float *gate, const float *up, int n);
void slm_swiglu_avx512(float *gate, const float *up, int n);

#endif
