/* forward.h - an inference context: one sequence over a model, its KV cache and scratch.
 *
 * All memory is allocated once in slm_ctx_create (sized for n_ctx positions and batches of up
 * to max_batch tokens); slm_ctx_eval allocates nothing. */
#ifndef SLM_FORWARD_H
#define SLM_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/threadpool.h"
#include "../kernels/qdot.h"

#include "../runtime/kvcache.h"
#include "../kernels/matmul.h"
#include "model.h"

typedef struct {
    int n_ctx;      /* positions this context can hold (0: min(model context, 4096)) */
    int max_batch;  /* tokens per forward pass (0: 256); longer inputs are split */
    int block_size; /* KV block size in tokens (0: SLM_KV_DEFAULT_BLOCK) */
    int n_threads;  /* worker threads (0: all online CPUs) */
    slm_kv_type kv_type; /* SLM_KV_F16 (default) or SLM_KV_F32 */
    bool isa_set;   /* false: kernel set slm_isa_default() (honours $SLIMLM_ISA) */
    slm_isa isa;    /* the kernel set when isa_set */
} slm_ctx_params;

typedef struct slm_ctx {
    const slm_model *model;
    slm_ctx_params p;
    slm_kv *kv;
    slm_seq seq;
    int32_t *tokens; /* [n_ctx] ids of the positions held, for prefix reuse */
    /* scratch, [max_batch][...] */
    float *x;      /* [B][dim] residual stream */
    float *xb;     /* [B][dim] normalized input */
    float *xb2;    /* [B][dim] sub-layer output */
    float *q;      /* [B][n_heads*head_dim] */
    float *k, *v;  /* [B][n_kv_heads*head_dim] */
    float *att;    /* [B][n_heads*head_dim] */
    float *hb;     /* [B][ffn_dim] gate, then swiglu */
    float *hb2;    /* [B][ffn_dim] up */
    float *rope_cos, *rope_sin; /* [B][rope_dim/2] */
    float *fa_scratch; /* [n_threads][slm_fa_scratch_floats()] tiled attention tiles */
    float *fa_parts;   /* [n_threads][slm_fa_part_floats()] split-key decode partial results */
    slm_pool *pool;
    slm_isa isa;   /* kernel set in use */
    slm_mm mm;     /* matmul scratch and kernels */
    bool simd_attn;
} slm_ctx;

slm_status slm_ctx_create(const slm_model *m, const slm_ctx_params *p, slm_ctx **out);
void slm_ctx_free(slm_ctx *c); /* NULL is a no-op */

/* Append n tokens to the sequence and run the model over them. Logits of the last n_out
 * positions (0 <= n_out <= n) are written to logits ([n_out][vocab]); logits may be NULL when
 * n_out is 0. SLM_ERR_FULL if the context would exceed n_ctx; SLM_ERR_ARG for a token id out
 * of range. On error the sequence is left as it was before the call. */
slm_status slm_ctx_eval(slm_ctx *c, const int32_t *tokens, int n, int n_out, float *logits);

/* Number of positions in the sequence. */
int slm_ctx_len(const slm_ctx *c);
/* Drop positions >= n (n <= current length); slm_ctx_truncate(c, 0) starts over. */
void slm_ctx_truncate(slm_ctx *c, int n);

#endif
