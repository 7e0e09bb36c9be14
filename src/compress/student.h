/* student.h - which layers a distilled student keeps, and writing a trained student as GGUF.
 *
 * Layer choice: an explicit list ("0-7,22-29"), every other layer, or the contiguous block of
 * n layers whose removal changes the hidden state least, measured by the angular distance
 *   d(l, n) = mean over tokens of arccos(cos(h_l, h_{l+n})) / pi
 * between the residual stream entering layer l and the one entering layer l + n (l + n =
 * n_layers: the stream after the last layer), over calibration windows.
 *
 * Export: the parameter table of a trained model (adapters excluded: merge them first) written
 * as a GGUF the engine loads, with the metadata of the file the student came from, the layer
 * count set and slimlm.distill.* keys added; matrices F32 or F16, or any quantized type through
 * requant (the F32 file is written to a temporary name next to the output and converted). */
#ifndef SLM_STUDENT_H
#define SLM_STUDENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/gguf.h"
#include "../core/status.h"
#include "../core/threadpool.h"
#include "../model/forward.h"
#include "../train/tmodel.h"

/* Parse a list of layers ("0-7,22-29", "3", "0,2,5-6") into ascending distinct ids below
 * n_layers. *out is malloc'd [*n_out]. SLM_ERR_ARG with a message naming the bad part. */
slm_status slm_student_parse_layers(const char *spec, int n_layers, int **out, int *n_out);

/* Layers 0, 2, 4, ... of n_layers into out (room for (n_layers + 1) / 2); returns the count. */
int slm_student_every_other(int n_layers, int *out);

/* The layers kept when the block [first, first + n) is removed, into out (room for
 * n_layers - n); returns the count. */
int slm_student_drop_block(int n_layers, int first, int n, int *out);

/* d(l, n) for l = 0 .. n_layers - n (dist [n_layers - n + 1]) over n_windows windows
 * [n_windows][seq_len] evaluated from an empty context (left empty, its tap restored).
 * ctx->p.n_ctx must be at least seq_len; 1 <= n < n_layers. */
slm_status slm_student_block_distances(slm_ctx *ctx, const int32_t *windows, int n_windows, int seq_len, int n,
                                       double *dist);

/* "0,2,4" for a layer list (truncated to cap). */
void slm_student_layers_str(const int *layers, int n, char *buf, size_t cap);

typedef struct {
    const slm_gguf *meta;    /* metadata source: the student's file (the teacher's for a layer subset) */
    uint32_t type;           /* SLM_DT_F32, SLM_DT_F16, or a type every weight matrix is quantized to */
    const char *teacher;     /* slimlm.distill.teacher */
    const char *layers;      /* slimlm.distill.layers ("" when the student is its own file) */
    const char *objective;   /* slimlm.distill.loss ("kl", ...) */
    uint64_t tokens;         /* slimlm.distill.tokens */
    int64_t steps;           /* slimlm.distill.steps */
    float final_loss;        /* slimlm.distill.final_loss */
    slm_pool *pool;          /* threads for quantizing (may be NULL) */
} slm_student_export_opts;

/* Write m (its non-adapter tensors) to path atomically. */
slm_status slm_student_export(slm_tmodel *m, const slm_student_export_opts *o, const char *path);

#endif
