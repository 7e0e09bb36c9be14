/* ops.h - elementwise and normalization kernels of the Llama block (scalar reference). */
#ifndef SLM_OPS_H
#define SLM_OPS_H

/* out = x / rms(x) * w, n elements (out may alias x). */
void slm_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotate the first rope_dim dims of each of n_heads vectors of head_dim floats by the angles
 * given as cos/sin tables [rope_dim/2]. neox: pairs (i, i+rope_dim/2), else (2i, 2i+1). */
void slm_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t, const float *sin_t, int neox);

/* cos/sin tables for position pos: angle_i = pos * scale * base^(-2i/rope_dim). */
void slm_rope_table(float *cos_t, float *sin_t, int rope_dim, float pos, float base);

/* In-place softmax of n values. */
void slm_softmax(float *x, int n);

/* gate[i] = silu(gate[i]) * up[i]. */
void slm_swiglu(float *gate, const float *up, int n);

#endif
