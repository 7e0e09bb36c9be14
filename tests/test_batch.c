/* test_batch.c - several sequences in one forward pass (slm_ctx_eval_runs) against each
 * sequence evaluated alone: prompts of different lengths prefilled together, then decode steps
 * with all sequences together, with forked sequences sharing a prompt, and a pool too small
 * for a step leaves every sequence untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/sampler.h"
#include "test.h"

enum { NSEQ = 5, STEPS = 6 };

static double max_rel(const float *a, const float *b, int n) {
    double d = 0, r = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        r = fmax(r, fabs((double)a[i]));
    }
    return d / (r > 0 ? r : 1);
}

int main(void) {
    slm_model *m = NULL;
    if (slm_model_load(test_model_path(), &m)) {
        CHECK(0, "model fixture missing");
        return test_summary("batch");
    }
    const int V = m->cfg.vocab_size;
    /* prompts of lengths 1..40, arbitrary ids */
    static const int lens[NSEQ] = {7, 1, 40, 19, 33};
    int32_t prompt[NSEQ][40];
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < lens[s]; i++) prompt[s][i] = (int32_t)((s * 7919 + i * 104729 + 13) % 20000);

    /* reference: each sequence alone, greedy continuation */
    slm_ctx_params cp = {.n_ctx = 512, .max_batch = 128, .n_threads = 2};
    float *ref_logits = malloc((size_t)NSEQ * (STEPS + 1) * V * sizeof(float));
    int32_t ref_tok[NSEQ][STEPS + 1];
    for (int s = 0; s < NSEQ; s++) {
        slm_ctx *c;
        CHECK(slm_ctx_create(m, &cp, &c) == SLM_OK, "ctx");
        float *lg = ref_logits + (size_t)s * (STEPS + 1) * V;
        CHECK(slm_ctx_eval(c, prompt[s], lens[s], 1, lg) == SLM_OK, "prefill alone");
        for (int k = 0; k < STEPS; k++) {
            ref_tok[s][k] = slm_argmax(lg + (size_t)k * V, V);
            CHECK(slm_ctx_eval(c, &ref_tok[s][k], 1, 1, lg + (size_t)(k + 1) * V) == SLM_OK, "decode alone");
        }
        ref_tok[s][STEPS] = slm_argmax(lg + (size_t)STEPS * V, V);
        slm_ctx_free(c);
    }

    /* together: all prompts in one pass, then every decode step in one pass */
    slm_ctx *c;
    CHECK(slm_ctx_create(m, &cp, &c) == SLM_OK, "shared ctx");
    slm_seq seqs[NSEQ];
    memset(seqs, 0, sizeof seqs);
    slm_run runs[NSEQ];
    float *lg = malloc((size_t)NSEQ * V * sizeof(float));
    for (int s = 0; s < NSEQ; s++) runs[s] = (slm_run){&seqs[s], prompt[s], lens[s], 1};
    CHECK(slm_ctx_eval_runs(c, runs, NSEQ, lg) == SLM_OK, "prefill together");
    double worst = 0;
    int tok_bad = 0;
    int32_t next[NSEQ];
    for (int k = 0; k <= STEPS; k++) {
        for (int s = 0; s < NSEQ; s++) {
            worst = fmax(worst, max_rel(ref_logits + ((size_t)s * (STEPS + 1) + k) * V, lg + (size_t)s * V, V));
            next[s] = slm_argmax(lg + (size_t)s * V, V);
            tok_bad += next[s] != ref_tok[s][k];
            CHECK(seqs[s].n_tokens == lens[s] + k, "seq %d length %d", s, seqs[s].n_tokens);
        }
        if (k == STEPS) break;
        for (int s = 0; s < NSEQ; s++) runs[s] = (slm_run){&seqs[s], &next[s], 1, 1};
        CHECK(slm_ctx_eval_runs(c, runs, NSEQ, lg) == SLM_OK, "decode together");
    }
    CHECK(worst < 1e-4, "batched logits differ from solo ones by %.3g (relative)", worst);
    CHECK(tok_bad == 0, "%d greedy tokens differ", tok_bad);

    /* mixed pass: one sequence prefills a continuation chunk while others decode one token */
    {
        int32_t chunk[5] = {100, 200, 300, 400, 500};
        slm_seq lone = {0};
        slm_ctx *c2;
        slm_ctx_create(m, &cp, &c2);
        float *l1 = malloc((size_t)V * sizeof(float)), *l2 = malloc((size_t)2 * V * sizeof(float));
        /* reference: seq 2 alone, prompt + its greedy tokens + chunk */
        int32_t hist[40 + STEPS + 1 + 5];
        int nh = 0;
        for (int i = 0; i < lens[2]; i++) hist[nh++] = prompt[2][i];
        for (int k = 0; k < STEPS; k++) hist[nh++] = ref_tok[2][k];
        hist[nh++] = next[2];
        for (int i = 0; i < 5; i++) hist[nh++] = chunk[i];
        slm_run r1 = {&lone, hist, nh, 1};
        CHECK(slm_ctx_eval_runs(c2, &r1, 1, l1) == SLM_OK, "alone in one run");
        slm_run mix[2] = {{&seqs[0], &next[0], 1, 0}, {&seqs[2], NULL, 6, 1}};
        int32_t tail[6] = {next[2], 100, 200, 300, 400, 500};
        mix[1].tokens = tail;
        CHECK(slm_ctx_eval_runs(c, mix, 2, l2) == SLM_OK, "mixed pass");
        CHECK(max_rel(l1, l2, V) < 1e-4, "mixed prefill+decode logits differ: %.3g", max_rel(l1, l2, V));
        slm_seq_release(c2->kv, &lone);
        slm_ctx_free(c2);
        free(l1);
        free(l2);
    }

    /* forks share the prompt's blocks and diverge copy-on-write */
    {
        slm_seq a = {0}, b = {0};
        const int len = seqs[3].n_tokens;
        CHECK(slm_seq_fork(c->kv, &seqs[3], &a) == SLM_OK && slm_seq_fork(c->kv, &seqs[3], &b) == SLM_OK, "fork");
        int32_t ta = 11, tb = 12;
        slm_run fr[2] = {{&a, &ta, 1, 1}, {&b, &tb, 1, 1}};
        float *l2 = malloc((size_t)2 * V * sizeof(float)), *l1 = malloc((size_t)V * sizeof(float));
        CHECK(slm_ctx_eval_runs(c, fr, 2, l2) == SLM_OK, "forks together");
        /* seq 3 continues with tb: must match fork b */
        slm_run r3 = {&seqs[3], &tb, 1, 1};
        CHECK(slm_ctx_eval_runs(c, &r3, 1, l1) == SLM_OK, "original after forks");
        CHECK(max_rel(l1, l2 + V, V) < 1e-4 && a.n_tokens == len + 1, "fork b equals the original continued");
        CHECK(max_rel(l2, l2 + V, V) > 1e-3, "forks with different tokens differ");
        slm_seq_release(c->kv, &a);
        slm_seq_release(c->kv, &b);
        free(l1);
        free(l2);
    }

    /* a pool that cannot hold the step: nothing changes */
    {
        slm_ctx_params small = cp;
        small.n_ctx = 48; /* 3 blocks of 16 */
        slm_ctx *c3;
        CHECK(slm_ctx_create(m, &small, &c3) == SLM_OK, "small ctx");
        slm_seq x = {0}, y = {0};
        slm_run ok = {&x, prompt[2], 30, 0};
        CHECK(slm_ctx_eval_runs(c3, &ok, 1, NULL) == SLM_OK, "fits");
        const int free_before = c3->kv->n_free;
        slm_run two[2] = {{&y, prompt[4], 10, 0}, {&x, prompt[3], 19, 0}};
        CHECK(slm_ctx_eval_runs(c3, two, 2, NULL) == SLM_ERR_FULL, "does not fit");
        CHECK(x.n_tokens == 30 && y.n_tokens == 0 && c3->kv->n_free == free_before && y.n_blocks == 0,
              "sequences and pool unchanged after a refused step");
        slm_run same[2] = {{&x, prompt[0], 1, 0}, {&x, prompt[0], 1, 0}};
        CHECK(slm_ctx_eval_runs(c3, same, 2, NULL) == SLM_ERR_ARG, "same sequence twice refused");
        slm_seq_release(c3->kv, &x);
        slm_seq_release(c3->kv, &y);
        slm_ctx_free(c3);
    }

    for (int s = 0; s < NSEQ; s++) slm_seq_release(c->kv, &seqs[s]);
    CHECK(c->kv->n_free == c->kv->n_blocks, "every block back in the pool");
    slm_ctx_free(c);
    free(lg);
    free(ref_logits);
    slm_model_free(m);
    return test_summary("batch");
}
