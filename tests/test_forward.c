/* test_forward.c - the forward pass on the real model: batched prefill equals token-by-token
 * decoding, results do not depend on the KV block size or on sub-batch splits, truncation and
 * re-evaluation reproduce the logits, and bad calls are rejected without side effects.
 * (Agreement with an independent implementation is tests/oracle_logits.py.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "test.h"

enum { T = 24 };

static float max_abs_diff(const float *a, const float *b, size_t n, float *range) {
    float d = 0, lo = a[0], hi = a[0];
    for (size_t i = 0; i < n; i++) {
        float x = fabsf(a[i] - b[i]);
        if (!(x <= d)) d = x; /* NaN propagates as a failure */
        if (a[i] < lo) lo = a[i];
        if (a[i] > hi) hi = a[i];
    }
    *range = hi - lo;
    return d;
}

static float *run(const slm_model *m, int block, int batch, const int32_t *toks, int n, int per_token) {
    slm_ctx *c;
    slm_ctx_params p = {.n_ctx = 64, .max_batch = batch, .block_size = block};
    if (slm_ctx_create(m, &p, &c)) return NULL;
    const int V = m->cfg.vocab_size;
    float *lg = malloc((size_t)n * V * sizeof *lg);
    slm_status s = SLM_OK;
    if (per_token)
        for (int i = 0; i < n && !s; i++) s = slm_ctx_eval(c, toks + i, 1, 1, lg + (size_t)i * V);
    else
        s = slm_ctx_eval(c, toks, n, n, lg);
    slm_ctx_free(c);
    if (s) {
        free(lg);
        return NULL;
    }
    return lg;
}

int main(void) {
    slm_model *m;
    slm_status s = slm_model_load(test_model_path(), &m);
    CHECK(s == SLM_OK, "load %s: %s (run scripts/fetch-model.sh)", test_model_path(), slm_last_error());
    if (s) return test_summary("test_forward");
    const int V = m->cfg.vocab_size;
    CHECK(m->cfg.n_layers == 30 && m->cfg.dim == 576 && m->cfg.n_heads == 9 && m->cfg.n_kv_heads == 3 && V == 49152,
          "config of SmolLM2-135M");
    CHECK(m->tied_output, "output tied to the embedding");

    int32_t toks[T];
    for (int i = 0; i < T; i++) toks[i] = (int32_t)((i * 7919 + 13) % 20000);
    float range;
    float *ref = run(m, 16, 64, toks, T, 0);
    CHECK(ref != NULL, "batched eval");
    float *tok = run(m, 16, 64, toks, T, 1);
    CHECK(tok != NULL, "token-by-token eval");
    if (ref && tok) {
        float d = max_abs_diff(ref, tok, (size_t)T * V, &range);
        CHECK(d < 1e-3f * range, "batched vs token-by-token: max diff %g (range %g)", d, range);
    }
    const int blocks[] = {1, 5, 64};
    for (int i = 0; i < 3; i++) {
        float *x = run(m, blocks[i], 7, toks, T, 0);
        CHECK(x != NULL, "eval with block %d, batch 7", blocks[i]);
        if (x && ref) {
            float d = max_abs_diff(ref, x, (size_t)T * V, &range);
            CHECK(d < 1e-3f * range, "block size %d / sub-batches of 7: max diff %g", blocks[i], d);
        }
        free(x);
    }

    /* truncate and re-evaluate the tail: same logits */
    slm_ctx *c;
    slm_ctx_params p = {.n_ctx = 32, .block_size = 4};
    CHECK(slm_ctx_create(m, &p, &c) == SLM_OK, "ctx");
    float *lg = malloc((size_t)T * V * sizeof *lg);
    CHECK(slm_ctx_eval(c, toks, T, 1, lg) == SLM_OK, "eval");
    slm_ctx_truncate(c, 10);
    CHECK(slm_ctx_len(c) == 10, "truncated to 10");
    CHECK(slm_ctx_eval(c, toks + 10, T - 10, T - 10, lg) == SLM_OK, "re-eval tail");
    if (ref) {
        float d = max_abs_diff(ref + (size_t)10 * V, lg, (size_t)(T - 10) * V, &range);
        CHECK(d < 1e-3f * range, "truncate + re-eval: max diff %g", d);
    }
    /* errors leave the sequence unchanged */
    int32_t bad = V;
    CHECK(slm_ctx_eval(c, &bad, 1, 1, lg) == SLM_ERR_ARG && slm_ctx_len(c) == T, "token id out of range rejected");
    int32_t many[16] = {0};
    CHECK(slm_ctx_eval(c, many, 9, 1, lg) == SLM_ERR_FULL && slm_ctx_len(c) == T, "context overflow rejected");
    CHECK(slm_ctx_eval(c, many, 8, 1, lg) == SLM_OK && slm_ctx_len(c) == 32, "filling exactly to n_ctx works");
    CHECK(slm_ctx_eval(c, many, 2, 3, lg) == SLM_ERR_ARG, "n_out > n rejected");
    free(lg);
    slm_ctx_free(c);
    free(ref);
    free(tok);
    slm_model_free(m);
    return test_summary("test_forward");
}
