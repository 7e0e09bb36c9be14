/* model.h - a loaded model: config plus read-only views of the weights in the mmapped file.
 *
 * Matrices stay in their file dtype and are never copied; only small vectors (norm weights,
 * biases) are converted to owned f32 arrays when the file stores them in another type. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/gguf.h"
#include "../core/status.h"
#include "../kernels/matmul.h"
#include "config.h"


/* The seven linears of a layer, in the order of slm_layer's delta array. */
enum { SLM_LIN_Q, SLM_LIN_K, SLM_LIN_V, SLM_LIN_O, SLM_LIN_GATE, SLM_LIN_UP, SLM_LIN_DOWN, SLM_N_LIN };
/* The GGUF name part of linear i ("attn_q", ..., "ffn_down"). */
const char *slm_lin_name(int i);

/* A low-rank correction of a matrix W [rows][cols]: W + B A, applied as a side product
 * (y += B (A x)), never materialized. a [rank][cols], b [rows][rank]; rank 0: none. */
typedef struct {
    slm_mat a, b;
    int rank;
} slm_lowrank;

typedef struct {
    const float *attn_norm;       /* [dim] */
    slm_mat wq;                   /* [n_heads*head_dim, dim] */
    slm_mat wk;                   /* [n_kv_heads*head_dim, dim] */
    slm_mat wv;                   /* [n_kv_heads*head_dim, dim] */
    slm_mat wo;                   /* [dim, n_heads*head_dim] */
    const float *bq, *bk, *bv;    /* qwen2 biases, NULL for llama */
    const float *ffn_norm;        /* [dim] */
    slm_mat w_gate;               /* [ffn_dim, dim] */
    slm_mat w_up;                 /* [ffn_dim, dim] */
    slm_mat w_down;               /* [dim, ffn_dim] */
    /* Parameter sharing (slimlm.share.layer_map): the layer whose stored matrices this layer
     * uses (its own index when not shared; the views above then point at that layer's
     * tensors, mapped once), and per-layer low-rank deltas of the seven linears. */
    int share_src;
    slm_lowrank delta[SLM_N_LIN];
    /* Cross-layer KV sharing (slimlm.share.kv_map): the layer whose keys and values this
     * layer attends to (itself normally; another one: no wk / wv, nothing cached), and the
     * KV cache slot of that layer. */
    int kv_src;
    int kv_slot;
} slm_layer;

typedef struct slm_model {
    slm_config cfg;
    slm_gguf *gguf;        /* owns the mapping */
    slm_mat tok_embd;      /* [vocab, dim] */
    slm_layer *layers;     /* [n_layers] */
    const float *out_norm; /* [dim] */
    slm_mat output;        /* [vocab, dim]; the same data as tok_embd when tied */
    int tied_output;
    int n_shared;          /* layers using another layer's matrices */
    int n_kv_layers;       /* layers that cache keys and values (n_layers without KV sharing) */
    int max_delta_rank;    /* largest low-rank delta (0: none) */
    float **owned;         /* f32 copies made for vectors stored in other dtypes */
    int n_owned;
} slm_model;

/* mmap a GGUF file and bind the weights. Shapes and dtypes are checked against the config;
 * every matrix dtype must be computable (has a dot kernel). */
slm_status slm_model_load(const char *path, slm_model **out);
/* Bind the weights of an already parsed file; the model takes ownership of g (also on error). */
slm_status slm_model_from_gguf(slm_gguf *g, slm_model **out);
void slm_model_free(slm_model *m); /* NULL is a no-op */

/* Bind the 2-D tensor `name` of g as a matrix the way the loader does: its dtype, its
 * per-tensor codebook and outlier table (validated); slm_mat_row then decodes rows exactly
 * as the engine computes with them. SLM_ERR_NOT_FOUND if there is no such tensor. */
slm_status slm_model_bind_matrix(const slm_gguf *g, const char *name, slm_mat *m);

/* True for the companion tensors of a matrix (its per-tensor codebook, its outlier table):
 * bytes of that matrix, not weights of their own. */
bool slm_model_is_companion(const char *name, size_t len);

/* Count of weights and bytes over all tensors of the file (for bits per weight); companion
 * tensors add bytes but no weights. */
void slm_model_size(const slm_model *m, uint64_t *n_params, uint64_t *n_bytes);

#endif
