/* generate.c - prompt evaluation with prefix reuse, then the sample/feed loop. */
#include "generate.h"

#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

slm_status slm_generate(slm_ctx *ctx, const slm_tokenizer *tok, slm_sampler *smp, const int32_t *prompt, int n_prompt,
                        int n_max, float *logits, slm_token_fn on_token, void *user, slm_gen_stats *st) {
    memset(st, 0, sizeof *st);
    if (n_prompt <= 0) return slm_error(SLM_ERR_ARG, "generate: empty prompt");
    /* keep the cached prefix, but always evaluate at least the last prompt token */
    int keep = 0, held = slm_ctx_len(ctx);
    while (keep < held && keep < n_prompt - 1 && ctx->tokens[keep] == prompt[keep]) keep++;
    slm_ctx_truncate(ctx, keep);
    double t0 = now_s();
    slm_status s = slm_ctx_eval(ctx, prompt + keep, n_prompt - keep, 1, logits);
    if (s) return s;
    st->n_reused = keep;
    st->n_prompt = n_prompt - keep;
    st->prompt_s = now_s() - t0;
    for (int i = 0; i < n_prompt; i++) slm_sampler_accept(smp, prompt[i]);
    t0 = now_s();
    for (int i = 0; i < n_max; i++) {
        int32_t id = slm_sampler_sample(smp, logits);
        if (tok && slm_tokenizer_is_eog(tok, id)) {
            st->hit_eog = true;
            break;
        }
        st->n_generated++;
        if (on_token && !on_token(user, id)) break;
        if (i + 1 == n_max) break;
        if ((s = slm_ctx_eval(ctx, &id, 1, 1, logits))) break;
    }
    st->gen_s = now_s() - t0;
    return s;
}
