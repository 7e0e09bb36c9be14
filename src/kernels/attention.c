/* attention.c - reference causal GQA attention over a paged KV cache. */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "../core/dtype.h"
#include "matmul.h"
#include "ops.h"
#include "qdot.h"

bool slm_attention_simd_available(void) {
    /* the AVX2 kernel table exists only when the CPU has AVX2, FMA and F16C */
    return slm_kernels_get(SLM_ISA_AVX2) != NULL;
}

float slm_kv_dot(const float *q, const void *k, slm_kv_type t, int n, bool simd) {
#if defined(__x86_64__)
    if (simd) return t == SLM_KV_F16 ? slm_kv_dot_f16_avx2(q, k, n) : slm_kv_dot_f32_avx2(q, k, n);
#else
    (void)simd;
#endif
    if (t == SLM_KV_F32) return slm_dot_f32(q, k, n);
    const uint16_t *h = k;
    float s = 0;
    for (int i = 0; i < n; i++) s += q[i] * slm_f16_to_f32(h[i]);
    return s;
}

void slm_kv_axpy(float *out, float p, const void *v, slm_kv_type t, int n, bool simd) {
#if defined(__x86_64__)
    if (simd) {
        if (t == SLM_KV_F16) slm_kv_axpy_f16_avx2(out, p, v, n);
        else slm_kv_axpy_f32_avx2(out, p, v, n);
        return;
    }
#else
    (void)simd;
#endif
    if (t == SLM_KV_F32) {
        const float *f = v;
        for (int i = 0; i < n; i++) out[i] += p * f[i];
    } else {
        const uint16_t *h = v;
        for (int i = 0; i < n; i++) out[i] += p * slm_f16_to_f32(h[i]);
    }
}

void slm_attention(const slm_kv *kv, const slm_seq *seq, int layer, const float *q, int n_tok, int pos0, int n_heads,
                   int n_kv_heads, int head_dim, float *out, float *scores, long lo, long hi, bool simd) {
    const int group = n_heads / n_kv_heads;
    const int qd = n_heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t esz = kv->elem_size;
    (void)n_tok;
    for (long item = lo; item < hi; item++) {
        const int t = (int)(item / n_heads), h = (int)(item % n_heads);
        const int pos = pos0 + t;
        const float *qh = q + (size_t)t * qd + (size_t)h * head_dim;
        const size_t kvoff = (size_t)(h / group) * head_dim * esz;
        for (int j = 0; j <= pos; j++)
            scores[j] = slm_kv_dot(qh, (const char *)slm_kv_key(kv, seq, layer, j) + kvoff, kv->type, head_dim, simd) *
                        scale;
        slm_softmax(scores, pos + 1);
        float *o = out + (size_t)t * qd + (size_t)h * head_dim;
        memset(o, 0, (size_t)head_dim * sizeof(float));
        for (int j = 0; j <= pos; j++)
            slm_kv_axpy(o, scores[j], (const char *)slm_kv_value(kv, seq, layer, j) + kvoff, kv->type, head_dim, simd);
    }
}
