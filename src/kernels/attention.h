/* attention.h - causal grouped-query attention reading keys/values from the paged KV cache
 * (reference implementation: scores for one query at a time, exact softmax). */
#ifndef SLM_ATTENTION_H
#define SLM_ATTENTION_H

#include "../runtime/kvcache.h"

/* For n_tok queries at positions pos0 .. pos0+n_tok-1 (keys 0..pos visible to position pos):
 * q is [n_tok][n_heads*head_dim], out is [n_tok][n_heads*head_dim]. Query head h reads KV
 * head h / (n_heads / n_kv_heads). scores is scratch of at least pos0+n_tok floats. */
void slm_attention(const slm_kv *kv, const slm_seq *seq, int layer, const float *q, int n_tok, int pos0, int n_heads,
                   int n_kv_heads, int head_dim, float *out, float *scores);

#endif
