/* speculative.h - speculative decoding with exact verification.
 *
 * A drafter proposes up to gamma tokens that continue the accepted text; the target model
 * evaluates [last accepted token, d1..dg] in one slm_ctx_eval (its weights are read once for
 * g+1 positions) and keeps the longest acceptable prefix of the draft plus one token of its
 * own, so every step yields at least one token. Rejected positions are dropped from the
 * target's KV cache with slm_ctx_truncate.
 *
 * Greedy (temperature 0): d_i is accepted while it equals the target's argmax at its
 * position; the first mismatch is replaced by that argmax; when all are accepted the last
 * logits give one more token. The output is the plain greedy output.
 * Sampling: with p and q the target's and the drafter's final distributions (after the
 * repetition penalty, temperature, top-k, top-p, min-p), d_i is accepted with probability
 * min(1, p(d_i) / q(d_i)); on rejection the token is drawn from norm(max(0, p - q)). The
 * output then has exactly the target's distribution (Leviathan et al. 2023, Chen et al.
 * 2023). A deterministic drafter has a point mass q: acceptance with probability p(d_i),
 * the replacement from p with d_i removed.
 * Repetition penalty: applied to p and to q alike, from the same window of the last
 * repeat_last_n tokens of the text (accepted tokens plus the drafts before the position). */
#ifndef SLM_SPECULATIVE_H
#define SLM_SPECULATIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "generate.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct slm_drafter slm_drafter;

struct slm_drafter {
    const char *name;   /* "draft-model", "lookup" */
    bool point_mass;    /* proposals are deterministic: q is a point mass, no q rows written */
    void *state;
    /* Propose up to max (>= 1) tokens continuing hist[0..n_hist): out [max], and unless
     * point_mass, q [max][n_vocab] the distribution each token was drawn from. *n_out in
     * [0, max]. */
    slm_status (*propose)(slm_drafter *d, const int32_t *hist, int n_hist, int max, int32_t *out, float *q,
                          int *n_out);
    /* The text hist[0..n_hist) is about to be continued (called with the prompt, timed as
     * prompt processing): a drafter may process all of it but the last token now. May be NULL. */
    slm_status (*begin)(slm_drafter *d, const int32_t *hist, int n_hist);
    /* Of the n_drafted tokens last proposed, the first n_accepted were kept. May be NULL. */
    void (*accepted)(slm_drafter *d, int n_drafted, int n_accepted);
    void (*destroy)(slm_drafter *d);
};

void slm_drafter_free(slm_drafter *d); /* NULL is a no-op */

/* The draft model and the target must share the vocabulary: the same size and, when both
 * tokenizers are given, the same token text for every id. SLM_ERR_ARG with the first
 * difference otherwise. */
slm_status slm_spec_check_vocab(const slm_model *target, const slm_tokenizer *target_tok, const slm_model *draft,
                                const slm_tokenizer *draft_tok);

/* Drafter 1: a smaller model with its own context (created from cp) kept in step with the
 * accepted text. It drafts from its own final distribution under sp (argmax when greedy;
 * a draw from its own RNG, seeded from sp->seed, otherwise) and stops early when that
 * distribution's top probability falls below stop_p (0: never). The model must outlive the
 * drafter. */
slm_status slm_drafter_model_create(const slm_model *draft, const slm_ctx_params *cp, const slm_sampler_params *sp,
                                    float stop_p, slm_drafter **out);

/* Drafter 2: prompt lookup. Finds the longest suffix n-gram of the text (n from n_gram down
 * to 1) that occurred earlier (the most recent occurrence) and proposes the tokens that
 * followed it: up to max of them, at most n after a match of n < 3 tokens. */
slm_status slm_drafter_lookup_create(int n_gram, slm_drafter **out);

typedef struct {
    int draft_max;  /* most tokens drafted per step, >= 1 */
    bool adaptive;  /* adapt the draft length: +1 after a fully accepted draft, -1 after a
                       rejection of the first drafted token, within [1, draft_max]; when a
                       single drafted token is rejected, no drafting for 1, 2, 4 .. 16 steps
                       (doubling while drafts keep failing, back to 1 after an acceptance) */
} slm_spec_params;

/* The draft length control of one sequence under slm_spec_params. */
typedef struct {
    int draft_max, gamma; /* the current length cap, in [1, draft_max] */
    int cool, backoff;    /* verification steps left without drafting; the next pause */
    bool adaptive;
} slm_spec_adapt;

void slm_spec_adapt_init(slm_spec_adapt *a, const slm_spec_params *sp);
/* Most tokens to draft at the next step (0 while drafting is paused). */
int slm_spec_adapt_len(const slm_spec_adapt *a);
/* After a verification step that drafted n_drafted of at most cap tokens and kept the first
 * n_accepted of them. Call it once per step, also when nothing was drafted. */
void slm_spec_adapt_update(slm_spec_adapt *a, int cap, int n_drafted, int n_accepted);

/* The acceptance rule at one position of a verification step: row [n_vocab] is the target's
 * logits there (modified), seq[0..pos) the text before the position (accepted tokens, then the
 * drafts before pos: the penalty window), draft the drafted token at pos (-1 after the last
 * draft) and q its distribution under the drafter (NULL: a point mass). probs and cand are
 * scratch [n_vocab]. Returns the token to emit and sets *accept when it is the draft. smp
 * supplies the settings and the RNG; its penalty history is not used or changed. */
int32_t slm_spec_verify(slm_sampler *smp, float *row, const int32_t *seq, int pos, int32_t draft, const float *q,
                        float *probs, slm_candidate *cand, bool *accept);

typedef struct {
    slm_gen_stats gen;      /* prompt and generation counts and times, as slm_generate */
    int n_steps;            /* verification passes of the target */
    int n_drafted, n_accepted;
    double draft_s, verify_s; /* time in the drafter and in target evaluation + acceptance */
} slm_spec_stats;

/* As slm_generate, with a drafter: make the context hold the prompt (reusing the cached
 * prefix), then generate up to n_max tokens, calling on_token for each. On return the
 * context holds the prompt and the generated tokens except the last one (all of them when
 * stopped by an end-of-generation token), as slm_generate leaves it. smp supplies the
 * settings and the RNG for acceptance and replacement draws. */
slm_status slm_spec_generate(slm_ctx *ctx, const slm_tokenizer *tok, slm_sampler *smp, slm_drafter *d,
                             const slm_spec_params *sp, const int32_t *prompt, int n_prompt, int n_max,
                             slm_token_fn on_token, void *user, slm_spec_stats *st);

#endif
