/* perplexity.h - perplexity over a token stream, and KL divergence against a base model.
 *
 * Chunking (the scheme llama.cpp's perplexity tool uses, so numbers are comparable): the
 * token stream is cut into non-overlapping windows of n_ctx tokens (a trailing partial
 * window is dropped); each window is evaluated from an empty KV cache; the positions in the
 * second half of the window are scored: the logits at position j (n_ctx/2 <= j <= n_ctx-2)
 * predict token j+1, so each window scores n_ctx - 1 - n_ctx/2 tokens. If the tokenizer adds
 * BOS, the first token of every window is replaced by BOS.
 *
 * KL base file (--kl-base): for every scored position, the base model's top-k tokens and
 * their log-probabilities (see docs/FORMATS.md). Another model run against it reports
 * KL(base || model) over the partition {each top-k token, all other tokens lumped together}
 * (a lower bound of the full-vocabulary KL that tightens as k grows), top-1 agreement, and
 * the perplexity ratio. */
#ifndef SLM_PERPLEXITY_H
#define SLM_PERPLEXITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../model/forward.h"

typedef struct {
    int n_ctx;              /* window size (default 512) */
    int n_chunks;           /* windows to evaluate, 0: all */
    int32_t bos;            /* >= 0: replace the first token of each window */
    const char *save_base;  /* write a KL base file here */
    const char *kl_base;    /* compare against this KL base file */
    int top_k;              /* entries per position in a saved base file (default 32) */
    bool progress;          /* progress to stderr */
} slm_ppl_params;

typedef struct {
    int n_chunks;
    long n_scored;
    double ppl, nll_mean, nll_stderr; /* perplexity = exp(nll_mean) */
    double tokens_per_s;
    /* with kl_base */
    bool has_kl;
    double kl_mean, kl_stderr, kl_p99, kl_max;
    double top1_agree;    /* fraction of positions whose argmax equals the base's */
    double base_ppl, ppl_ratio;
} slm_ppl_result;

slm_status slm_perplexity(slm_ctx *ctx, const int32_t *tokens, size_t n_tokens, const slm_ppl_params *p,
                          slm_ppl_result *r);

#endif
