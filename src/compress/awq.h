/* awq.h - activation-aware weight quantization: per-channel scales that protect the weights
 * multiplying large activations, searched on calibration inputs and folded into the model.
 *
 * Four groups of linears per layer share an input and a place to fold the inverse scale:
 *   QKV:     wq, wk, wv      input: attention-norm output   fold 1/s into attn_norm
 *   GATE_UP: w_gate, w_up    input: FFN-norm output         fold 1/s into ffn_norm
 *   O:       wo              input: attention output        fold 1/s into wv's rows (and bv)
 *   DOWN:    w_down          input: SwiGLU output           fold 1/s into w_up's rows
 * The weights' input columns are multiplied by s, the folding place divided by s, so the
 * model computes the same function before quantization. With grouped-query attention one v
 * channel feeds n_heads / n_kv_heads attention-output channels, so the O scales are tied
 * across the heads that share a KV head.
 *
 * Search (per layer and group): s = sx^alpha with sx the channel's mean |x| over the
 * calibration tokens, normalized so max(s) * min(s) = 1; alpha on a grid over [0, 1); the
 * alpha whose quantized weights give the least squared output error on the sampled
 * calibration rows, || X (Q(W diag(s)) diag(1/s) - W)^T ||^2, wins. alpha = 0 is plain
 * round to nearest, so the chosen error is never larger than it. */
#ifndef SLM_AWQ_H
#define SLM_AWQ_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "../model/model.h"
#include "calib.h"

typedef enum { SLM_AWQ_QKV = 0, SLM_AWQ_GATE_UP, SLM_AWQ_O, SLM_AWQ_DOWN, SLM_AWQ_N_GROUPS } slm_awq_group;

typedef struct {
    uint32_t type; /* weight dtype the search quantizes to (any type with a reference quantizer) */
    int grid;      /* alpha values 0, 1/grid, ..., (grid-1)/grid (default 20) */
    int max_rows;  /* calibration rows used per group (0: all that were kept) */
    bool progress; /* a line per layer on stderr */
} slm_awq_params;

typedef struct {
    float alpha;            /* chosen */
    double err_rtn;         /* squared output error with alpha = 0 (plain quantization) */
    double err;             /* with the chosen alpha */
    double ref;             /* squared norm of the exact output (for relative errors) */
    float *scale;           /* [input dim] s, NULL when the group was not searched */
} slm_awq_choice;

typedef struct {
    int n_layers;
    slm_awq_choice *g; /* [n_layers * SLM_AWQ_N_GROUPS] */
    int q_dim, kv_dim, group_heads; /* n_heads * head_dim, n_kv_heads * head_dim, heads per KV head */
    int head_dim;
} slm_awq_result;

slm_status slm_awq_search(const slm_model *m, const slm_calib *cal, slm_pool *pool, const slm_awq_params *p,
                          slm_awq_result *r);
void slm_awq_result_free(slm_awq_result *r);

/* Folding, one tensor row at a time (x is row `row` of tensor `name`, dequantized, n values):
 * returns true if the tensor is one AWQ changes (its rows must then be rewritten), and scales
 * x in place. Tensors: blk.N.attn_norm / ffn_norm (1-D), attn_q/k/v/output, ffn_gate/up/down
 * weights and attn_v.bias. */
bool slm_awq_affects(const slm_awq_result *r, const char *name);
void slm_awq_fold_row(const slm_awq_result *r, const char *name, int64_t row, float *x, int64_t n);

/* Per-column weights for a clipping search on a folded matrix row: E[x_j^2] / s_j^2 of the
 * matrix's (scaled) input; NULL for tensors without calibration statistics. The array has
 * the matrix's column count and stays valid while r and cal do. */
const float *slm_awq_importance(const slm_awq_result *r, const slm_calib *cal, const char *name, float *buf,
                                int64_t n);

#endif
