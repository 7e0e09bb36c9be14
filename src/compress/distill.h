/* distill.h - knowledge distillation: train a student (slm_tmodel) on the logits of a teacher
 * run through the inference engine.
 *
 * Data: a token stream split into a training part and an optional held-out part. Sequence b of
 * micro-batch a of step s starts at slm_distill_offset(seed, s, a, b, n_train, L), a pure
 * function, so a resumed run needs only the step. The input is stream[off .. off+L) with the
 * first token replaced by BOS (when the model has one); the next-token targets are
 * stream[off+1 .. off+L]. With gen_frac > 0 the last round(gen_frac * B) sequences of every
 * micro-batch are written by the teacher itself: the first 16 tokens of the window, then
 * tokens sampled at temperature 1 (seeded by seed, s, a, b), one more sampled as the last
 * target.
 *
 * Step: zero the gradients; for each of A micro-batches: teacher logits of every position,
 * student forward, loss gradients with scale 1/(B*L*A) (mix: (1-w) kl + w ce), backward. Then
 * the global gradient norm over the trainable tensors in table order, clipping to `clip`,
 * lr = slm_lr_at(step, warmup, total, lr, min_lr), AdamW (t = step + 1; weight decay on
 * matrices and adapters only). Loss per step = mean over the B*L*A positions of
 *   kl: tau^2 KL(p_teacher,tau || q_student,tau)   rkl: tau^2 KL(q || p)
 *   ce: -log q(next token)                          mix: (1-w) kl + w ce
 *
 * Offsets: k = mix(mix(mix(mix(seed) ^ step) ^ a) ^ b) with mix the splitmix64 finalizer
 * (z += 0x9E3779B97F4A7C15 first); off = floor(k * (n_train - L) / 2^64), a uniform integer in
 * [0, n_train - L - 1]. */
#ifndef SLM_DISTILL_H
#define SLM_DISTILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "../model/forward.h"
#include "../train/tmodel.h"

typedef enum { SLM_DL_KL = 0, SLM_DL_RKL, SLM_DL_CE, SLM_DL_MIX } slm_distill_loss;

const char *slm_distill_loss_name(slm_distill_loss l);

typedef struct {
    int batch, seq, accum;      /* B, L, A */
    float lr, min_lr;
    int64_t warmup;             /* steps */
    float weight_decay, clip;   /* clip <= 0: off */
    slm_distill_loss loss;
    float temp, ce_weight;      /* tau; w of mix */
    float gen_frac;             /* fraction of sequences sampled by the teacher */
    uint64_t seed;
    int64_t total_steps;
    const char *ckpt_path;      /* NULL: no checkpoints */
    int64_t ckpt_every;         /* steps between checkpoints (> 0) */
    const char *resume_path;    /* NULL: start at step 0 */
    int64_t stop_after;         /* > 0: stop after this step (1-based count of steps done) */
    FILE *log;                  /* JSON lines, or NULL */
    int64_t eval_every;         /* > 0: evaluate on the held-out tokens every this many steps and at the end */
    int64_t eval_tokens;        /* at most this many held-out tokens (windows of L) */
    int progress;               /* 0 none, 1 a bar on a terminal, 2 a line every ~10% (stderr) */
    const char *config;         /* the caller's part of the checkpoint configuration ("key=value" lines) */
} slm_distill_params;

typedef struct {
    const int32_t *train; /* [n_train] */
    size_t n_train;
    const int32_t *eval;  /* [n_eval] held-out tokens (may be NULL) */
    size_t n_eval;
    int32_t bos;          /* >= 0: replaces the first token of every input */
} slm_distill_data;

typedef struct {
    int64_t first_step;   /* step the run started at (after a resume) */
    int64_t steps_done;   /* steps completed overall */
    uint64_t tokens;      /* training tokens overall */
    double first_loss, final_loss; /* of the first and last step of this run (NaN if none) */
    double seconds;       /* wall time of the steps of this run */
    double teacher_seconds; /* of which the teacher's forward passes (and sampling) */
    uint64_t run_tokens;  /* tokens trained by this run */
    bool has_eval;
    double eval_kl, eval_ce; /* the last evaluation */
} slm_distill_result;

uint64_t slm_distill_offset(uint64_t seed, int64_t step, int a, int b, size_t n_train, int seq);

/* Train student against teacher (a context of the teacher model with n_ctx >= L, evaluated
 * from empty for every sequence). The student's trainable set must be chosen beforehand. */
slm_status slm_distill_run(slm_tmodel *student, slm_ctx *teacher, const slm_distill_data *d,
                           const slm_distill_params *p, slm_distill_result *r);

#endif
