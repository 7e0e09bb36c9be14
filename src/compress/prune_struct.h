/* prune_struct.h - structured pruning: remove whole FFN channels, query heads, KV groups and
 * layers of a llama-family model, and write a smaller dense GGUF that runs unchanged.
 *
 * Importance (per layer; the counts kept are the same in every layer, as the config has one
 * ffn_dim and one head count):
 *   FFN channel j    sqrt(E[h_j^2]) * ||W_down[:, j]||          h: input of w_down (calibration)
 *   query head h     sqrt(sum_i E[a_i^2]) * ||W_o[:, cols(h)]||_F  a: input of wo, i over h's channels
 *   KV group g       sum of the scores of its query heads
 *   layer l          block influence BI_l = 1 - mean over tokens of cos(x_l, x_{l+1}), x_l the
 *                    residual stream entering layer l
 * Counts: FFN channels round(ffn_keep * ffn_dim) rounded down to a multiple of 32 and at least 32
 * (so that block-quantized types with 32-element blocks still fit the rows), or all of them when
 * that is not fewer; query heads per group round(heads_keep * heads_per_group) (>= 1), the best
 * of each group; groups round(kv_keep * n_kv_heads) (>= 1). Removing a group removes its k/v rows
 * and all its query heads. The drop_layers layers with the lowest BI are removed (never all).
 *
 * Surgery: wq/wk/wv/w_gate/w_up lose rows (row bytes copied as is, so quantized rows stay
 * bit-identical; qwen2 biases sliced); wo and w_down lose columns: element types (f32, f16,
 * bf16) are sliced exactly in their own type, block-quantized types are dequantized and written
 * f32 (quantize the result afterwards if wanted). Layers are renumbered; the config keys are
 * updated; slimlm.prune.* keys record what was done.
 *
 * zero_only writes a model of the original shapes in which the removed parts contribute nothing
 * (wo columns of removed heads, w_down columns of removed channels, wo and w_down of dropped
 * layers zeroed, those matrices written f32): it computes the same function as the pruned model
 * and is the reference the surgery is tested against. */
#ifndef SLM_PRUNE_STRUCT_H
#define SLM_PRUNE_STRUCT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "../model/forward.h"
#include "../model/model.h"
#include "calib.h"

#define SLM_PS_FFN_MULTIPLE 32

typedef struct {
    float ffn_keep;        /* fraction of FFN channels kept, (0, 1] (1) */
    float heads_keep;      /* fraction of the query heads of each KV group kept, (0, 1] (1) */
    float kv_keep;         /* fraction of KV groups kept, (0, 1] (1) */
    int drop_layers;       /* layers with the lowest BI removed (0); needs bi */
    const int *drop_list;  /* explicit layers to remove instead (n_drop_list > 0) */
    int n_drop_list;
    bool zero_only;        /* write the zeroed reference instead of the smaller model */
    bool progress;         /* progress lines on stderr */
} slm_ps_params;

/* What is kept. Index arrays are ascending (original order). */
typedef struct {
    int n_layers, ffn_dim, n_heads, n_kv_heads, head_dim; /* the original model */
    int ffn_kept;          /* channels kept per layer */
    int heads_per_group;   /* n_heads / n_kv_heads */
    int heads_kept;        /* query heads kept per kept group */
    int kv_kept;           /* groups kept per layer */
    int layers_kept;
    int32_t *ffn_idx;      /* [n_layers][ffn_kept] kept channels */
    int32_t *kv_idx;       /* [n_layers][kv_kept] kept groups */
    int32_t *head_idx;     /* [n_layers][kv_kept * heads_kept] kept query heads (original ids) */
    bool *dropped;         /* [n_layers] */
    double *bi;            /* [n_layers] block influence; NaN where not measured */
} slm_ps_plan;

/* ffn_keep = heads_keep = kv_keep = 1, nothing dropped. */
slm_ps_params slm_ps_params_default(void);

/* The counts the rules above give for cfg: FFN channels, heads per group, groups. */
void slm_ps_counts(const slm_config *cfg, const slm_ps_params *p, int *ffn_kept, int *heads_kept, int *kv_kept);

/* Importance scores from the calibration statistics and the weights:
 * ffn [n_layers][ffn_dim] and heads [n_layers][n_heads] (caller-allocated). */
slm_status slm_ps_scores(const slm_model *m, const slm_calib *cal, float *ffn, float *heads);

/* Block influence of every layer (bi [n_layers]) over n_windows windows of seq_len tokens
 * (e.g. those of slm_calib_windows), evaluated from an empty context; ctx is left empty and
 * its tap restored. ctx->p.n_ctx must be at least seq_len. */
slm_status slm_ps_block_influence(slm_ctx *ctx, const int32_t *windows, int n_windows, int seq_len, bool progress,
                                  double *bi);

/* Choose what to keep. ffn / heads may be NULL when nothing of that kind is removed; bi may be
 * NULL unless drop_layers > 0 (it is copied into the plan). */
slm_status slm_ps_select(const slm_config *cfg, const float *ffn, const float *heads, const double *bi,
                         const slm_ps_params *p, slm_ps_plan *out);
void slm_ps_plan_free(slm_ps_plan *pl); /* zeroes it; a zeroed plan is a no-op */

/* What a write did. */
typedef struct {
    uint64_t params_before, params_after; /* elements over all tensors of the input / output */
    uint64_t bytes_before, bytes_after;
    int f32_matrices; /* wo / w_down matrices written f32 (block-quantized input sliced or zeroed) */
} slm_ps_totals;

/* SLM_ERR_UNSUPPORTED if m cannot be pruned structurally (its matrices carry codebook or outlier
 * tables, which the column surgery does not rewrite); checked before any work is done. */
slm_status slm_ps_check_model(const slm_model *m);

/* Write m's file pruned (or zeroed, p->zero_only) by the plan to path, atomically. tot may be
 * NULL. */
slm_status slm_ps_write(const slm_model *m, const slm_ps_plan *pl, const slm_ps_params *p, const char *path,
                        slm_ps_totals *tot);

/* Per layer: BI, FFN channels kept, heads kept per group and groups kept, dropped or not; then
 * the totals of tot (NULL: not printed). */
void slm_ps_print_report(FILE *f, const slm_ps_plan *pl, const slm_ps_totals *tot);

#endif
