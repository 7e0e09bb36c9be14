/* tmodel.h - a trainable Llama-family model: fp32 parameters and gradients in one allocation
 * each, activations for a fixed batch shape allocated once, and a forward and a backward that
 * read as flat lists of tops.h calls.
 *
 * The parameter table lists every tensor with its GGUF name, shape and place in the flat
 * arrays; the optimizer, the checkpoint and the exporter walk it. With LoRA (rank R > 0) every
 * linear of every layer (q, k, v, o, gate, up, down) gets A [R][in] and B [out][R] adapters,
 * the base weights are frozen and y = W x + (alpha / R) B A x; merging folds the adapters into
 * the base weights.
 *
 * Built with SLM_TRAIN_DOUBLE (see tops.h) the whole model runs in double precision for the
 * finite-difference tests. */
#ifndef SLM_TMODEL_H
#define SLM_TMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "../model/config.h"
#include "tops.h"

struct slm_model;

#define SLM_TMAX_SHARED_LAYERS 512

typedef struct {
    slm_config cfg;    /* architecture; cfg.n_layers is the student's layer count, cfg.vocab_size set */
    bool tied;         /* output head = token embedding */
    bool qkv_bias;     /* q/k/v biases (qwen2) */
    int lora_rank;     /* 0: no adapters */
    float lora_alpha;  /* adapter scale alpha / rank (0: alpha = rank) */
    /* Parameter sharing (model/model.h): layer l uses the seven matrices of layer
     * share_map[l] (<= l; a source maps to itself), which exist once in the table and collect
     * the gradients of every layer using them. With deltas, the rank-lora_rank adapters are
     * the per-layer low-rank deltas (scale 1, kind SLM_TP_DELTA, named blk.N.NAME.delta_a /
     * _b): trained with everything else and kept, not merged, at export. */
    bool shared;
    bool deltas;
    int share_map[SLM_TMAX_SHARED_LAYERS];
    /* Cross-layer KV sharing: layer l attends to the (RoPE'd) keys and values of layer
     * kv_map[l] (<= l, which computes its own); a reading layer has no wk / wv (nor their
     * biases and adapters), and its key / value gradients flow into the source layer's. */
    bool kv_shared;
    int kv_map[SLM_TMAX_SHARED_LAYERS];
} slm_tcfg;

typedef enum { SLM_TP_MATRIX = 0, SLM_TP_VECTOR = 1, SLM_TP_LORA = 2, SLM_TP_DELTA = 3 } slm_tparam_kind;

typedef struct {
    char name[64];        /* GGUF name ("blk.3.attn_q.weight"); adapters "blk.3.attn_q.lora_a" / "_b" */
    int64_t rows, cols;   /* vectors: rows = 1 */
    size_t offset;        /* into params / grads */
    size_t n;             /* rows * cols */
    slm_tparam_kind kind; /* matrices and adapters take weight decay, vectors do not */
    bool trainable;       /* false: no gradient is computed or applied */
} slm_tparam;

/* Views of one layer's tensors (NULL where absent). */
typedef struct {
    treal *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
    /* LoRA adapters of wq, wk, wv, wo, w_gate, w_up, w_down, in that order (NULL without LoRA) */
    treal *lora_a[7], *lora_b[7];
} slm_tlayer;

typedef struct slm_tmodel slm_tmodel; /* defined in tmodel.c */

/* Allocate a model (parameters zeroed) for batches of up to max_B sequences of max_T tokens.
 * pool may be NULL (one thread). */
slm_status slm_tmodel_create(const slm_tcfg *cfg, int max_B, int max_T, slm_pool *pool, slm_tmodel **out);
void slm_tmodel_free(slm_tmodel *m); /* NULL is a no-op */

const slm_tcfg *slm_tmodel_cfg(const slm_tmodel *m);
const slm_tparam *slm_tmodel_params(const slm_tmodel *m, int *n); /* the table */
size_t slm_tmodel_n_params(const slm_tmodel *m);                   /* length of the flat arrays */
treal *slm_tmodel_weights(slm_tmodel *m);                          /* [n_params] */
treal *slm_tmodel_grads(slm_tmodel *m);                            /* [n_params] */
const slm_tlayer *slm_tmodel_layer(const slm_tmodel *m, int l);
treal *slm_tmodel_tok_embd(slm_tmodel *m);
treal *slm_tmodel_out_norm(slm_tmodel *m);
treal *slm_tmodel_output(slm_tmodel *m); /* == tok_embd when tied */
/* Find a tensor of the table by name (NULL if absent). */
const slm_tparam *slm_tmodel_find(const slm_tmodel *m, const char *name);

/* Fill the weights from a loaded inference model (every tensor dequantized): student layer i
 * takes source layer layer_map[i] (layer_map NULL: the identity; the source then needs the same
 * layer count). Shapes must match cfg. LoRA adapters start as A small random (seeded), B zero,
 * so the adapted model equals the source at step 0. */
slm_status slm_tmodel_load(slm_tmodel *m, const struct slm_model *src, const int *layer_map, uint64_t seed);
/* The config a student of src with n_layers layers (and optional LoRA) would have. A
 * parameter-shared src used whole (n_layers = its layer count, no LoRA) gives a shared
 * config: its layer map, and its deltas as trainable adapters of its largest delta rank. */
void slm_tmodel_cfg_from(const struct slm_model *src, int n_layers, int lora_rank, float lora_alpha, slm_tcfg *out);

/* Trainable sets: everything (adapters are absent without LoRA), or with LoRA only the
 * adapters (the default with rank > 0). freeze_embd keeps the token embedding / output head
 * fixed (the tied head's weight gradient is a third of a small model's training cost). */
void slm_tmodel_set_trainable(slm_tmodel *m, bool lora_only, bool freeze_embd);

/* Forward over tokens [B][T] (B <= max_B, T <= max_T): logits [B*T][vocab]. Keeps the
 * activations for the backward. */
void slm_tmodel_forward(slm_tmodel *m, const int32_t *tokens, int B, int T, treal *logits);
/* Set every gradient to zero. */
void slm_tmodel_zero_grad(slm_tmodel *m);
/* Backward of the last forward: ADDS d(loss)/d(param) into the gradients of the trainable
 * tensors, given dlogits [B*T][vocab] (overwritten as scratch). */
void slm_tmodel_backward(slm_tmodel *m, treal *dlogits);

/* Fold the LoRA adapters into the base weights (W += (alpha/R) B A) and zero the B's. Does
 * nothing for per-layer deltas of a shared model. */
void slm_tmodel_merge_lora(slm_tmodel *m);

#endif
