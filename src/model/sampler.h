/* sampler.h - choosing the next token from logits.
 *
 * Order: repetition penalty, then greedy (temperature 0) or: temperature, top-k, top-p,
 * min-p, and a draw. The draw is a pure function of the logits, the settings and a uniform
 * random number; the sampler object owns the seeded RNG and the recent-token history, so
 * the same seed gives the same tokens. */
#ifndef SLM_SAMPLER_H
#define SLM_SAMPLER_H

#include <stdint.h>

#include "../core/status.h"

typedef struct {
    float temperature;    /* 0: greedy */
    int top_k;            /* 0: off */
    float top_p;          /* 1: off */
    float min_p;          /* 0: off */
    float repeat_penalty; /* 1: off; >1 divides positive / multiplies negative logits of recent tokens */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} slm_sampler_params;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off),
 * repeat_last_n 64, seed 0. */
slm_sampler_params slm_sampler_defaults(void);
/* Range checks with a message naming the bad field. */
slm_status slm_sampler_check(const slm_sampler_params *p);

typedef struct {
    int32_t id;
    float p; /* logit, then probability */
} slm_candidate;

typedef struct slm_sampler {
    slm_sampler_params p;
    int n_vocab;
    uint64_t rng[2];       /* xoroshiro128+ state */
    slm_candidate *cand;   /* [n_vocab] */
    int32_t *history;      /* ring of the last repeat_last_n tokens */
    int n_history, history_pos;
} slm_sampler;

slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out);
void slm_sampler_free(slm_sampler *s); /* NULL is a no-op */

/* Pick a token from logits [n_vocab] (modified in place by the penalty) and record it in the
 * history. */
int32_t slm_sampler_sample(slm_sampler *s, float *logits);
/* Record a token that was not sampled (e.g. the prompt) in the penalty history. */
void slm_sampler_accept(slm_sampler *s, int32_t id);

/* The pure draw: given penalized logits, settings and a uniform u in [0,1), return the token.
 * cand is scratch of n entries. */
int32_t slm_sample_logits(const float *logits, int n, const slm_sampler_params *p, float u, slm_candidate *cand);

/* Index of the largest value (the first one on ties). */
int32_t slm_argmax(const float *x, int n);

/* ---- distributions (speculative decoding needs p and q explicitly) ---- */

/* Apply the repetition penalty to logits [n_vocab] from an explicit window of recent tokens
 * (each distinct id once, as slm_sampler_sample does with its history); no-op when
 * p->repeat_penalty is 1. */
void slm_penalize(const slm_sampler_params *p, float *logits, int n_vocab, const int32_t *recent, int n_recent);

/* The distribution slm_sample_logits draws from: probs [n] receives the probability of every
 * token after temperature, top-k, top-p and min-p (0 outside the kept set; sums to 1). With
 * temperature 0 it is a point mass on the argmax. cand is scratch of n entries. Returns the
 * most probable token. */
int32_t slm_sample_probs(const float *logits, int n, const slm_sampler_params *p, slm_candidate *cand, float *probs);

/* Draw from probs [n] (non-negative, any positive total) with a uniform u in [0,1): the first
 * token whose cumulative mass exceeds u * total; -1 if the total is 0. */
int32_t slm_sample_from_probs(const float *probs, int n, float u);

/* The next uniform number in [0,1) from the sampler's RNG. */
float slm_sampler_uniform(slm_sampler *s);

#endif
