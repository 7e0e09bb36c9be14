/* layers.h - per-layer figures of compression steps (the heatmap of `slimlm report`).
 *
 * A layers file is text, one value per line, fields separated by blanks or tabs:
 *
 *     # comment
 *     STEP LAYER COLUMN VALUE
 *     2-awq 0 qkv 0.939
 *
 * STEP names the step (compress writes N-command), LAYER is the block index, COLUMN the
 * quantity within the layer (a matrix such as attn_q, or an AWQ group), VALUE a number.
 *
 * slm_layers_scan reads the tables the commands print on stdout:
 *   quantize, cluster  per tensor "blk.L.NAME.weight ... REL_RMSE" -> column NAME, relative RMSE
 *   awq                per layer alpha and err/plain per group    -> columns qkv, gate/up, o,
 *                      down: output error relative to plain round-to-nearest
 *   prune              per layer sparsity, w^2 and (w x)^2 removed -> columns w2_removed,
 *                      wx2_removed (fractions) */
#ifndef SLM_LAYERS_H
#define SLM_LAYERS_H

#include "../core/status.h"

typedef struct {
    char step[32];
    int layer;
    char column[32];
    double value;
} slm_layer_val;

typedef struct {
    int n, cap;
    slm_layer_val *v;
} slm_layers;

/* Append the values found in text (a command's stdout) under the name step. */
slm_status slm_layers_scan(slm_layers *L, const char *step, const char *text);
/* Append one value. */
slm_status slm_layers_add(slm_layers *L, const char *step, int layer, const char *column, double value);
/* Write atomically / read (appending) the file format above. */
slm_status slm_layers_write(const slm_layers *L, const char *path);
slm_status slm_layers_read(slm_layers *L, const char *path);
void slm_layers_free(slm_layers *L);

#endif
