/* calib.h - activation statistics of a model over calibration text.
 *
 * For every layer and every linear-layer input (slm_tap_point) a calibration holds the
 * per-channel mean |x| and mean x^2 over all tokens seen, and a uniform random sample of at
 * most keep_rows input rows (reservoir sampling), so memory is bounded by keep_rows whatever
 * the amount of text. Quantizers that weigh channels by activation size, or fit against real
 * inputs, read these.
 *
 * Two ways to fill one: slm_calib_run (text file -> random windows -> forward passes), or by
 * hand: slm_calib_create, then feed rows with slm_calib_observe (it has the slm_tap_fn
 * signature, so it can be installed as a context tap directly) or slm_calib_eval. */
#ifndef SLM_CALIB_H
#define SLM_CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../model/forward.h"
#include "../model/model.h"
#include "../model/tokenizer.h"

#define SLM_CALIB_MAX_KEEP (1 << 20)

typedef struct {
    const char *text_path; /* UTF-8 calibration text (required for slm_calib_run) */
    int n_samples;         /* windows evaluated (64) */
    int seq_len;           /* tokens per window, BOS included when the model adds one (256) */
    int keep_rows;         /* rows sampled per (layer, point), 0..SLM_CALIB_MAX_KEEP (512) */
    uint64_t seed;         /* window offsets and reservoirs (1) */
    bool progress;         /* a progress line on stderr */
} slm_calib_params;

typedef struct slm_calib slm_calib;

/* The defaults above, text_path NULL. */
slm_calib_params slm_calib_params_default(void);

/* An empty calibration for model m (dimensions taken from its config). */
slm_status slm_calib_create(const slm_model *m, int keep_rows, uint64_t seed, slm_calib **out);
void slm_calib_free(slm_calib *c); /* NULL is a no-op */

/* Add n_tokens rows x [n_tokens][dim] for (layer, point); user is the slm_calib. A layer,
 * point or dim that does not match the model marks the calibration bad (slm_calib_eval and
 * slm_calib_run then fail with SLM_ERR_ARG) and adds nothing. */
void slm_calib_observe(void *user, int layer, int point, const float *x, int n_tokens, int dim);

/* Evaluate tokens[0..n) from an empty context with c observing (no logits); the context is
 * left empty and its previous tap restored. ctx must belong to the same model. */
slm_status slm_calib_eval(slm_calib *c, slm_ctx *ctx, const int32_t *tokens, int n);

/* The windows slm_calib_run evaluates: ids is the tokenized text (no special tokens); each
 * window is bos (when >= 0) then seq_len - 1 text tokens, else seq_len text tokens, at an
 * offset drawn uniformly with p->seed. *out (malloc'd) is [n_samples][seq_len]. */
slm_status slm_calib_windows(const int32_t *ids, size_t n_ids, int32_t bos, const slm_calib_params *p,
                             int32_t **out);

/* The whole pipeline: read and tokenize p->text_path, draw the windows, evaluate each.
 * ctx->p.n_ctx must be at least seq_len; ctx is left empty. */
slm_status slm_calib_run(slm_ctx *ctx, const slm_tokenizer *tok, const slm_calib_params *p, slm_calib **out);

/* Accessors; layer and point must be in range (else NULL / 0). Arrays are [dim]. */
int slm_calib_n_layers(const slm_calib *c);
int slm_calib_dim(const slm_calib *c, int point);
int slm_calib_keep_rows(const slm_calib *c);
uint64_t slm_calib_n_tokens(const slm_calib *c); /* tokens seen (rows per (layer, point)) */
int slm_calib_n_samples(const slm_calib *c);     /* windows evaluated by slm_calib_run */
int slm_calib_seq_len(const slm_calib *c);
uint64_t slm_calib_seed(const slm_calib *c);
const float *slm_calib_mean_abs(const slm_calib *c, int layer, int point);
const float *slm_calib_mean_sq(const slm_calib *c, int layer, int point);
/* The sampled rows [*n_rows][dim], *n_rows = min(keep_rows, tokens seen), in slot order. */
const float *slm_calib_rows(const slm_calib *c, int layer, int point, int *n_rows);
/* Whether c was computed on a file with the same size and header (metadata and tensor
 * directory) as m's. slm_calib_load checks dimensions only, so a calibration may be applied
 * to another encoding of the same network; callers that need the very file check this. */
bool slm_calib_same_model(const slm_calib *c, const slm_model *m);

/* The tap point whose statistics describe the input channels of a layer matrix named
 * blk.N.attn_{q,k,v,output}.weight or blk.N.ffn_{gate,up,down}.weight (*layer = N), or -1. */
int slm_calib_point_of(const char *name, int *layer);

/* Write atomically (format: docs/FORMATS.md, "Calibration file"). */
slm_status slm_calib_save(const slm_calib *c, const char *path);
/* Read and verify (size, checksum, dimensions against m): a malformed file is SLM_ERR_FORMAT,
 * one for another architecture SLM_ERR_ARG. */
slm_status slm_calib_load(const char *path, const slm_model *m, slm_calib **out);

#endif
