/* ckpt.h - training checkpoints: the fp32 weights, the AdamW moments and the step counters
 * of a run, with a description of everything a resumed run must share with it.
 *
 * File layout (little-endian):
 *   0   "SLMCKPT\0"             magic (8 bytes)
 *   8   u32 version (1)
 *   12  u32 config_len          bytes of the configuration text
 *   16  u64 n_weights           floats of the weights
 *   24  u64 n_state             floats of each AdamW moment array (m, then v)
 *   32  i64 step                optimizer steps done
 *   40  u64 tokens              training tokens seen
 *   48  u8[32] SHA-256 of the configuration text
 *   80  configuration text      "key=value" lines (student, batch shape, loss, data, ...)
 *       f32 weights[n_weights], f32 m[n_state], f32 v[n_state]
 *       u8[32] SHA-256 of every byte before it
 *
 * A resumed run passes its own configuration text: a file whose text differs is refused with
 * a message naming the first line that differs, so the caller sees what does not match. */
#ifndef SLM_CKPT_H
#define SLM_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define SLM_CKPT_VERSION 1u

typedef struct {
    const char *config;   /* NUL-terminated configuration text */
    int64_t step;         /* optimizer steps done */
    uint64_t tokens;      /* training tokens seen */
    const float *weights; /* [n_weights] */
    size_t n_weights;
    const float *m, *v;   /* [n_state] each */
    size_t n_state;
} slm_ckpt;

/* Write atomically (temporary file, fsync, rename). */
slm_status slm_ckpt_write(const char *path, const slm_ckpt *c);

/* Read a checkpoint made with configuration text `config` and arrays of n_weights / n_state
 * floats into weights, m and v (caller-owned). Errors (the buffers' contents are then
 * undefined): SLM_ERR_IO (cannot open / read), SLM_ERR_FORMAT (magic, version, size,
 * truncation, checksum), SLM_ERR_ARG (made by another configuration: the message names the
 * first differing line). */
slm_status slm_ckpt_read(const char *path, const char *config, size_t n_weights, size_t n_state, float *weights,
                         float *m, float *v, int64_t *step, uint64_t *tokens);

#endif
