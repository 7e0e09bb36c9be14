/* attention.c - reference causal GQA attention over a paged KV cache. */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "matmul.h"
#include "ops.h"

void slm_attention(const slm_kv *kv, const slm_seq *seq, int layer, const float *q, int n_tok, int pos0, int n_heads,
                   int n_kv_heads, int head_dim, float *out, float *scores) {
    const int group = n_heads / n_kv_heads;
    const int qd = n_heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    for (int t = 0; t < n_tok; t++) {
        const int pos = pos0 + t;
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (size_t)t * qd + (size_t)h * head_dim;
            const int kvoff = (h / group) * head_dim;
            for (int j = 0; j <= pos; j++)
                scores[j] = slm_dot_f32(qh, slm_kv_key(kv, seq, layer, j) + kvoff, head_dim) * scale;
            slm_softmax(scores, pos + 1);
            float *o = out + (size_t)t * qd + (size_t)h * head_dim;
            memset(o, 0, (size_t)head_dim * sizeof(float));
            for (int j = 0; j <= pos; j++) {
                const float *vj = slm_kv_value(kv, seq, layer, j) + kvoff;
                const float p = scores[j];
                for (int d = 0; d < head_dim; d++) o[d] += p * vj[d];
            }
        }
    }
}
