/* share.h - cross-layer parameter sharing: several layers use one stored set of matrices,
 * with optional per-layer low-rank deltas (W_l ~= W_shared + B_l A_l).
 *
 * Grouping: --groups N cuts the layers into N groups of adjacent layers (sizes differ by at
 * most one); --loop K repeats K unique layers (layer l uses l mod K, the recursive pattern);
 * --keep-layers LIST stores the listed layers and every other layer uses the last kept layer
 * before it (the first kept one if none is before it). A group's shared matrix is the mean of its members' matrices, the
 * member that reconstructs the group best (least summed squared difference), or the stored
 * layer's own (source; the default with a keep list). Each member's delta is the truncated
 * SVD of W_l - W_shared at the given rank (none for rank 0, or where the difference is zero).
 * Norm weights and biases stay per layer. With identity, every layer that uses another
 * layer's matrices starts as (nearly) the identity: zero attention norm weights and value
 * bias (its attention adds exactly nothing) and FFN norm weights scaled by 1e-3 (its FFN, a
 * product of two linear maps of the normed input, adds ~1e-6 of its usual output; an exact
 * zero would leave its gradients zero for ever). With source matrices the model then starts
 * as the model of the stored layers alone (a depth-pruned model), and healing adds to it.
 *
 * File format (read by model/model.c): metadata slimlm.share.layer_map (int32 per layer:
 * the layer whose blk.N.* matrices it uses; only those layers store them) and the delta
 * tensors blk.N.NAME.delta_a [rank][cols] / blk.N.NAME.delta_b [rows][rank]; with KV
 * sharing slimlm.share.kv_map (int32 per layer: the layer whose cached keys and values it
 * attends to, itself or an earlier one). */
#ifndef SLM_SHARE_H
#define SLM_SHARE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/gguf.h"
#include "../core/status.h"

typedef struct {
    int groups;          /* > 0: adjacent groups */
    int loop;            /* > 0: K unique layers looped (exclusive with groups) */
    int rank;            /* delta rank (0: none); clipped to each matrix's min(rows, cols) */
    int kv_share;        /* > 1: groups of this many adjacent layers attend to the first one's keys
                            and values (cross-layer attention); the others lose wk / wv */
    const int *keep;     /* with n_keep > 0: the layers that store matrices (ascending) */
    int n_keep;
    bool init_best;      /* shared = the best member (else the mean) */
    bool init_source;    /* shared = the stored layer's own matrices */
    bool identity;       /* layers using another's matrices start as (nearly) the identity */
    uint32_t mat_type;   /* SLM_DT_F32 or SLM_DT_F16 for shared matrices */
    uint32_t delta_type; /* SLM_DT_F32 or SLM_DT_F16 for deltas */
    uint64_t seed;
    int progress;        /* 0 none, 1 bar on a terminal / lines otherwise */
} slm_share_opts;

/* The layer map the options give for n layers (map[l] = stored layer of l; the identity when
 * neither groups nor loop is set), and the KV map (kv[l] = layer whose keys l reads). */
slm_status slm_share_layer_map(const slm_share_opts *o, int n_layers, int *map, int *kv);

/* Convert the model in g to a shared model at out_path (atomic). Writes the per-layer
 * reconstruction table to report (NULL: none). */
slm_status slm_share_convert(const slm_gguf *g, const slm_share_opts *o, const char *out_path, FILE *report);

#endif
