/* forward.h - an inference context: a model, a paged KV cache, scratch, and the forward pass.
 *
 * All memory is allocated once in slm_ctx_create (sized for n_ctx positions and batches of up
 * to max_batch tokens); evaluation allocates nothing. The context's own sequence (seq) serves
 * the single-stream commands through slm_ctx_eval; a server keeps many sequences in the same
 * KV pool and evaluates new tokens of several of them in one pass with slm_ctx_eval_runs. */
#ifndef SLM_FORWARD_H
#define SLM_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/threadpool.h"
#include "../kernels/qdot.h"

#include "../runtime/kvcache.h"
#include "../kernels/matmul.h"
#include "model.h"

/* The inputs of the linear layers of each block, as seen by a tap. */
typedef enum {
    SLM_TAP_ATTN_IN,  /* attention RMSNorm output, input of wq/wk/wv: [n][dim] */
    SLM_TAP_ATTN_OUT, /* attention output, input of wo: [n][n_heads*head_dim] */
    SLM_TAP_FFN_IN,   /* FFN RMSNorm output, input of w_gate/w_up: [n][dim] */
    SLM_TAP_FFN_MID,  /* SwiGLU output, input of w_down: [n][ffn_dim] */
    SLM_TAP_COUNT,
    /* Not a linear input: the residual stream entering layer `layer` ([n][dim]); after the
     * last layer it is reported once more with layer = n_layers. Observers of the linear
     * inputs ignore it. */
    SLM_TAP_RESID = SLM_TAP_COUNT
} slm_tap_point;

/* Observer of activations: x is [n_tokens][dim] row-major, valid only during the call.
 * point is an slm_tap_point. */
typedef void (*slm_tap_fn)(void *user, int layer, int point, const float *x, int n_tokens, int dim);

typedef struct {
    int n_ctx;      /* positions this context can hold (0: min(model context, 4096)) */
    int max_batch;  /* tokens per forward pass (0: 256); longer inputs are split */
    int block_size; /* KV block size in tokens (0: SLM_KV_DEFAULT_BLOCK) */
    int n_threads;  /* worker threads (0: all online CPUs) */
    slm_kv_type kv_type; /* SLM_KV_F16 (default) or SLM_KV_F32 */
    int n_layers;   /* 0: all; K: run only the first K layers, then the output norm and head
                       (the model's own shallow copy: self-speculative drafting) */
    /* Early exit (CALM-style, single-token passes only): after layer l >= exit_min - 1, when
     * the cosine between the layer's output and its input (the residual stream before and
     * after it) reaches early_exit, the token leaves: the later layers only compute and cache
     * its keys and values from the exited state (with their own norms and projections), and
     * the head reads the exited state. early_exit 0: off. exit_min 0: a quarter of the layers. */
    float early_exit;
    int exit_min;
    /* true: results independent of the thread count (single-token attention does not split
     * the keys between threads; training's teacher needs this) */
    bool deterministic;
    bool isa_set;   /* false: kernel set slm_isa_default() (honours $SLIMLM_ISA) */
    slm_isa isa;    /* the kernel set when isa_set */
    slm_pool *shared_pool; /* non-NULL: run on this pool (n_threads ignored; not freed with the
                            * context), e.g. a draft model's context on its target's pool */
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
    float *lr_t, *lr_y; /* [B][max delta rank], [B][rowmax]: low-rank delta side products (NULL: none) */
    float *rope_cos, *rope_sin; /* [B][rope_dim/2] */
    float *fa_scratch; /* [n_threads][slm_fa_scratch_floats()] tiled attention tiles */
    float *fa_parts;   /* [n_threads][slm_fa_part_floats()] split-key decode partial results */
    slm_pool *pool;
    bool owns_pool;
    slm_isa isa;   /* kernel set in use */
    slm_mm mm;     /* matmul scratch and kernels */
    bool simd_attn;
    float *h_prev;  /* [dim] early exit: the residual stream entering the current layer */
    long exit_tokens;      /* single-token passes seen with early exit on */
    long exit_layers;      /* layers run by them in full (sum) */
    slm_tap_fn tap; /* NULL: no observer */
    void *tap_user;
    /* per-pass bookkeeping, [max_batch] */
    int32_t *tok_buf;  /* token ids of all runs */
    struct slm_span *spans; /* one per run: sequence, first token, count, first position */
    int32_t *out_rows; /* tokens whose logits are wanted */
    void *fa_args;     /* slm_fa_args per run */
    long *fa_items;    /* [max_batch + 1] prefix sums of attention work items */
} slm_ctx;

slm_status slm_ctx_create(const slm_model *m, const slm_ctx_params *p, slm_ctx **out);
void slm_ctx_free(slm_ctx *c); /* NULL is a no-op */

/* Append n tokens to the sequence and run the model over them. Logits of the last n_out
 * positions (0 <= n_out <= n) are written to logits ([n_out][vocab]); logits may be NULL when
 * n_out is 0. SLM_ERR_FULL if the context would exceed n_ctx; SLM_ERR_ARG for a token id out
 * of range. On error the sequence is left as it was before the call. */
slm_status slm_ctx_eval(slm_ctx *c, const int32_t *tokens, int n, int n_out, float *logits);

/* New tokens of one sequence of c->kv, for slm_ctx_eval_runs. */
typedef struct {
    slm_seq *seq;          /* a sequence of c->kv (zero-initialized, forked, or grown by earlier runs) */
    const int32_t *tokens; /* appended at positions seq->n_tokens .. + n - 1 */
    int n;                 /* >= 1 */
    int n_out;             /* logits of the last n_out tokens of the run (0..n) */
} slm_run;

/* Evaluate the new tokens of several sequences in one forward pass (the weights are read once
 * for all of them). The runs' n add up to at most max_batch and name distinct sequences; no
 * sequence may grow beyond n_ctx positions. Logits go to logits [sum of n_out][vocab] in run
 * order. Blocks for all runs are reserved first: if the pool cannot hold them, nothing is
 * evaluated, every sequence is as before and SLM_ERR_FULL is returned (the caller may free
 * blocks and retry). On success each seq->n_tokens grew by its run's n. */
slm_status slm_ctx_eval_runs(slm_ctx *c, const slm_run *runs, int n_runs, float *logits);

/* Observe the linear-layer inputs of every later forward pass: fn is called on the calling
 * thread at the four linear-input places of every layer (and SLM_TAP_RESID) for every batch (a long input is
 * split into batches of max_batch tokens). fn NULL removes the tap. */
void slm_ctx_set_tap(slm_ctx *c, slm_tap_fn fn, void *user);

/* Number of positions in the sequence. */
int slm_ctx_len(const slm_ctx *c);

/* Layer-major evaluation (calibration that touches one layer's weights at a time): the
 * token embeddings of tokens into x [n][dim]; then layers [l0, l1) over the residual-stream
 * rows x [n][dim], in place, as positions 0..n-1 of the context's sequence (its cache is
 * cleared first and then holds those layers' keys and values). Taps fire as in slm_ctx_eval
 * (the final residual tap only when l1 is the last layer). Running layer 0, then 1, ... on the
 * same rows gives bit-for-bit the residual stream, taps and cache of one slm_ctx_eval. */
slm_status slm_ctx_embed(const slm_ctx *c, const int32_t *tokens, int n, float *x);
slm_status slm_ctx_eval_layers(slm_ctx *c, float *x, int n, int l0, int l1);
/* Drop positions >= n (n <= current length); slm_ctx_truncate(c, 0) starts over. */
void slm_ctx_truncate(slm_ctx *c, int n);

#endif
