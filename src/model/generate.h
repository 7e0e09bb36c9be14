/* generate.h - the decode loop: evaluate a prompt, then sample and feed tokens one by one. */
#ifndef SLM_GENERATE_H
#define SLM_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"
#include "tokenizer.h"

/* Called for each generated token (never for the end-of-generation token); return false to stop. */
typedef bool (*slm_token_fn)(void *user, int32_t id);

typedef struct {
    int n_prompt;        /* prompt tokens evaluated (after reuse of the cached prefix) */
    int n_reused;        /* prompt tokens already in the cache */
    int n_generated;
    bool hit_eog;        /* stopped on an end-of-generation token */
    double prompt_s, gen_s;
} slm_gen_stats;

/* Make the context hold exactly `prompt` (keeping the longest common prefix already cached,
 * re-evaluating the rest; at least the last prompt token is evaluated to get logits), then
 * generate up to n_max tokens. logits is scratch of vocab floats. tok may be NULL (then no
 * end-of-generation detection). The sampled tokens stay in the context. */
slm_status slm_generate(slm_ctx *ctx, const slm_tokenizer *tok, slm_sampler *smp, const int32_t *prompt, int n_prompt,
                        int n_max, float *logits, slm_token_fn on_token, void *user, slm_gen_stats *stats);

#endif
