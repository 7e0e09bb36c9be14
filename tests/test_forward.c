/* test_forward.c - the forward pass on the real model: batched prefill equals token-by-token
 * decoding, results do not depend on the KV block size or on sub-batch splits, truncation and
 * re-evaluation reproduce the logits, a context of the first K layers gives the head of the
 * layer-K residual stream, and bad calls are rejected without side effects.
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

/* The residual stream entering layer `want` (SLM_TAP_RESID), captured from a full pass. */
typedef struct {
    int want;
    float *x;
} resid_tap;

static void grab_resid(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    resid_tap *r = user;
    if (point == SLM_TAP_RESID && layer == r->want) memcpy(r->x, x, (size_t)n_tokens * dim * sizeof *x);
}

/* A context that runs only the first K layers (self-speculative drafting) gives the logits of
 * the output norm and head applied to the residual stream entering layer K of a full pass
 * (exact reference path, computed here with the model's own norm weights and head rows). */
static void check_first_layers(const slm_model *m, const int32_t *toks, int n, int K) {
    const int V = m->cfg.vocab_size, D = m->cfg.dim;
    slm_ctx *full = NULL, *part = NULL;
    slm_ctx_params p = {.n_ctx = 64, .max_batch = 64, .isa_set = true, .isa = SLM_ISA_REF, .kv_type = SLM_KV_F32};
    slm_ctx_params pk = p;
    pk.n_layers = K;
    CHECK(slm_ctx_create(m, &p, &full) == SLM_OK && slm_ctx_create(m, &pk, &part) == SLM_OK, "contexts of %d layers", K);
    float *x = malloc((size_t)n * D * sizeof *x), *lg = malloc((size_t)n * V * sizeof *lg), *row = malloc((size_t)D * sizeof *row);
    resid_tap rt = {K, x};
    if (full && part) {
        slm_ctx_set_tap(full, grab_resid, &rt);
        CHECK(slm_ctx_eval(full, toks, n, 0, NULL) == SLM_OK, "full pass");
        CHECK(slm_ctx_eval(part, toks, n, n, lg) == SLM_OK, "first %d layers", K);
        double worst = 0;
        for (int t = 0; t < n; t += 5) {
            const float *xt = x + (size_t)t * D;
            double ss = 0;
            for (int i = 0; i < D; i++) ss += (double)xt[i] * xt[i];
            const double r = 1.0 / sqrt(ss / D + m->cfg.norm_eps);
            for (int v = 0; v < V; v += 97) {
                slm_mat_row(&m->output, v, row);
                double y = 0;
                for (int i = 0; i < D; i++) y += (double)row[i] * xt[i] * r * m->out_norm[i];
                const double e = fabs(y - lg[(size_t)t * V + v]) / (fabs(y) + 1);
                if (e > worst) worst = e;
            }
        }
        CHECK(worst < 1e-3, "first %d layers: logits differ from norm + head of the layer-%d residual by %.3g", K, K, worst);
    }
    slm_ctx_params bad = p;
    bad.n_layers = m->cfg.n_layers + 1;
    slm_ctx *c = NULL;
    CHECK(slm_ctx_create(m, &bad, &c) == SLM_ERR_ARG && !c, "a context of more layers than the model is refused");
    free(x), free(lg), free(row);
    slm_ctx_free(full);
    slm_ctx_free(part);
}

/* Early exit: a threshold no cosine reaches changes nothing; one every cosine reaches makes
 * every token leave at exit_min = K, and since layers below K then see exactly what they see
 * in a context of the first K layers, the logits equal that context's, token by token. */
static void check_early_exit(const slm_model *m, const int32_t *toks, int n, int K) {
    const int V = m->cfg.vocab_size;
    slm_ctx_params p = {.n_ctx = 64, .max_batch = 64, .isa_set = true, .isa = SLM_ISA_REF, .kv_type = SLM_KV_F32};
    slm_ctx_params never = p, always = p, first = p;
    never.early_exit = 1.5f;
    always.early_exit = -1.0f;
    always.exit_min = K;
    first.n_layers = K;
    slm_ctx *c[4] = {0};
    const slm_ctx_params *ps[4] = {&p, &never, &always, &first};
    float *lg[4];
    for (int i = 0; i < 4; i++) {
        lg[i] = malloc((size_t)n * V * sizeof *lg[i]);
        CHECK(slm_ctx_create(m, ps[i], &c[i]) == SLM_OK, "early exit context %d", i);
        for (int t = 0; t < n && c[i]; t++) CHECK(slm_ctx_eval(c[i], toks + t, 1, 1, lg[i] + (size_t)t * V) == SLM_OK, "eval");
    }
    float range;
    CHECK(max_abs_diff(lg[0], lg[1], (size_t)n * V, &range) == 0, "early exit never taken: logits unchanged");
    CHECK(c[1] && c[1]->exit_tokens == n && c[1]->exit_layers == (long)n * m->cfg.n_layers, "never taken: %ld layers run",
          c[1] ? c[1]->exit_layers : -1L);
    const float d = max_abs_diff(lg[3], lg[2], (size_t)n * V, &range);
    CHECK(d <= 1e-4f * range, "always taken at layer %d: logits differ from the first-%d-layer context by %g", K, K, d);
    CHECK(c[2] && c[2]->exit_layers == (long)n * K, "always taken: %ld layers run", c[2] ? c[2]->exit_layers : -1L);
    for (int i = 0; i < 4; i++) {
        slm_ctx_free(c[i]);
        free(lg[i]);
    }
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
    check_first_layers(m, toks, T, 1);
    check_first_layers(m, toks, T, 12);
    check_early_exit(m, toks, 10, 9);
    slm_model_free(m);
    return test_summary("test_forward");
}
