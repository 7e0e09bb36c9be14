/* attention.h - causal grouped-query attention reading keys/values from the paged KV cache
 * (reference formulation: scores for one query at a time, exact softmax). */
#ifndef SLM_ATTENTION_H
#define SLM_ATTENTION_H

#include <stdbool.h>

#include "../runtime/kvcache.h"

/* Work items are (token, head) pairs, item = t * n_heads + h; this computes items [lo, hi).
 * Query at token t has position pos0 + t and sees keys 0..pos0+t. q and out are
 * [n_tok][n_heads*head_dim]; query head h reads KV head h / (n_heads / n_kv_heads).
 * scores is scratch of at least pos0+n_tok floats. simd: use the AVX2/F16C helpers (only if
 * slm_attention_simd_available()). */
void slm_attention(const slm_kv *kv, const slm_seq *seq, int layer, const float *q, int n_tok, int pos0, int n_heads,
                   int n_kv_heads, int head_dim, float *out, float *scores, long lo, long hi, bool simd);

/* Whether this CPU has AVX2 + FMA + F16C (and this build has the kernels). */
bool slm_attention_simd_available(void);

/* Row helpers over cached keys/values of either element type (x86 SIMD variants in
 * attention_avx2.c). dot: q . k ; axpy: out += p * v. */
float slm_kv_dot(const float *q, const void *k, slm_kv_type t, int n, bool simd);
void slm_kv_axpy(float *out, float p, const void *v, slm_kv_type t, int n, bool simd);

/* AVX2 variants (attention_avx2.c). */
float slm_kv_dot_f16_avx2(const float *q, const uint16_t *k, int n);
float slm_kv_dot_f32_avx2(const float *q, const float *k, int n);
void slm_kv_axpy_f16_avx2(float *out, float p, const uint16_t *v, int n);
void slm_kv_axpy_f32_avx2(float *out, float p, const float *v, int n);

#endif
