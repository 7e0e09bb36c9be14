/* optim.h - AdamW, the learning-rate schedule and gradient clipping for training.
 *
 * Deterministic: sums over gradients are taken in a fixed order (in double), so a resumed run
 * steps exactly as an uninterrupted one. */
#ifndef SLM_OPTIM_H
#define SLM_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/threadpool.h"

typedef struct {
    float beta1, beta2, eps, weight_decay; /* 0.9, 0.95, 1e-8, 0.0 by slm_adamw_defaults */
} slm_adamw;

void slm_adamw_defaults(slm_adamw *o);

/* One AdamW step (decoupled weight decay, bias-corrected moments) over n parameters:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * ( (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + (decay ? wd * p : 0) )
 * t is the step number starting at 1. g is read only (the caller scales it beforehand). */
void slm_adamw_update(slm_pool *pool, const slm_adamw *o, int64_t t, float lr, bool decay, float *p, const float *g,
                      float *m, float *v, size_t n);

/* Learning rate at step (0-based) of total: linear warmup from lr_max/warmup to lr_max over
 * `warmup` steps, then cosine decay to lr_min at the last step. */
/* Exactly: step < warmup gives lr_max * (step + 1) / warmup; from step warmup (lr_max) to step
 * total - 1 (lr_min) the cosine. warmup 0: no warmup. No step after the warmup to decay over
 * (total <= warmup + 1, e.g. total 1): lr_max. Steps past the end: lr_min; negative: step 0. */
float slm_lr_at(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min);

/* Sum of squares of g[0..n) in double, in a fixed order. */
double slm_sumsq(const float *g, size_t n);
/* Multiply g[0..n) by s. */
void slm_scale(float *g, size_t n, float s);

#endif
