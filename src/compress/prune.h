/* prune.h - unstructured and N:M (2:4) pruning masks for the layer matrices of a model.
 *
 * A weight's score is |w| (magnitude) or |w| * sqrt(E[x_j^2]) (Wanda: the weight times the
 * norm of its input channel j over calibration tokens). Unstructured pruning removes the
 * lowest-scoring fraction of a matrix, either within every output row (Wanda's comparison
 * group; every row keeps the same count) or over the whole matrix (classic magnitude
 * pruning); N:M pruning keeps the n best of every m consecutive weights of a row.
 *
 * A mask is a bitset over the matrix (bit r*cols + c set = kept). The model-level plan holds
 * one mask per pruned tensor and the statistics of what was removed; it serves as the fold
 * hook of the requant module (src/compress/requant.h), which zeroes the removed weights of
 * each row before the row is stored in its output type. */
#ifndef SLM_PRUNE_H
#define SLM_PRUNE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/gguf.h"
#include "../core/status.h"
#include "../core/threadpool.h"
#include "calib.h"
#include "requant.h"

typedef enum { SLM_PRUNE_MAGNITUDE = 0, SLM_PRUNE_WANDA = 1 } slm_prune_method;

typedef struct {
    slm_prune_method method;
    double sparsity; /* unstructured: fraction of the weights removed, [0, 1) */
    int nm_n, nm_m;  /* N:M: keep nm_n of every nm_m consecutive weights of a row; 0: unstructured */
    bool per_row;    /* unstructured: remove the fraction from every row (else over the matrix) */
} slm_prune_opts;

/* Keep-mask of one rows x cols matrix w (f32, row-major): keep has (rows*cols + 63) / 64
 * words and is overwritten. col_scale[cols] multiplies |w| column-wise (NULL: magnitude).
 * Ties between equal scores are broken by position (the earlier weight is removed first), so
 * masks are deterministic and counts exact. */
slm_status slm_prune_mask(const float *w, int64_t rows, int64_t cols, const float *col_scale,
                          const slm_prune_opts *o, uint64_t *keep);

static inline bool slm_prune_kept(const uint64_t *keep, int64_t i) { return (keep[i >> 6] >> (i & 63)) & 1u; }

/* Per-tensor rule: tensors matching the glob get their own sparsity (unstructured only). */
typedef struct {
    const char *glob;
    double sparsity;
} slm_prune_rule;

typedef struct {
    char name[128];
    int layer;           /* blk index, or -1 */
    int point;           /* slm_tap_point of its input */
    int64_t rows, cols;
    double sparsity;     /* asked */
    uint64_t *keep;      /* the mask */
    int64_t kept;        /* weights kept */
    int64_t max_row_kept, min_row_kept;
    double w2, w2_removed; /* sum of w^2 and of the removed ones' */
    double s2, s2_removed; /* the same for (w * sqrt(E[x^2]))^2 (output energy proxy); 0 without calibration */
} slm_prune_tensor;

typedef struct slm_prune_plan slm_prune_plan;

/* The layer matrices of g (blk.N.attn_q/k/v/output, blk.N.ffn_gate/up/down) get masks. cal
 * supplies E[x^2] per input channel: required for Wanda, optional for magnitude (then the
 * report also shows the output-energy proxy). rules (n_rules, may be 0) override o->sparsity
 * per tensor; the last matching rule wins. progress: a bar on stderr. */
slm_status slm_prune_plan_create(const slm_gguf *g, const slm_calib *cal, const slm_prune_opts *o,
                                 const slm_prune_rule *rules, int n_rules, slm_pool *pool, bool progress,
                                 slm_prune_plan **out);
void slm_prune_plan_free(slm_prune_plan *p); /* NULL is a no-op */

int slm_prune_plan_count(const slm_prune_plan *p);
const slm_prune_tensor *slm_prune_plan_tensor(const slm_prune_plan *p, int i);
/* The tensor's entry, or NULL when it is not pruned. */
const slm_prune_tensor *slm_prune_plan_find(const slm_prune_plan *p, const char *name);

/* Requant hooks that zero the removed weights (user = the plan). */
slm_rq_hooks slm_prune_hooks(const slm_prune_plan *p);

/* Per-layer table (sparsity, removed weight energy, removed output-energy proxy) and totals. */
void slm_prune_report(FILE *f, const slm_prune_plan *p, const slm_prune_opts *o);

#endif
