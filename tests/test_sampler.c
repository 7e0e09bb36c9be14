/* test_sampler.c - sampler: greedy, truncation rules against a brute-force reference,
 * determinism by seed, repetition penalty, and the draw's distribution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sampler.h"
#include "test.h"

/* Brute-force reference of the kept set: sort all, apply top-k, top-p, min-p in order. */
static int ref_keep(const float *logits, int n, const slm_sampler_params *p, int *ids, double *probs) {
    int *idx = malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < n; i++) /* selection sort, descending, ties by id */
        for (int j = i + 1; j < n; j++)
            if (logits[idx[j]] > logits[idx[i]] || (logits[idx[j]] == logits[idx[i]] && idx[j] < idx[i])) {
                int t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    double mx = logits[idx[0]] / p->temperature, sum = 0;
    for (int i = 0; i < k; i++) sum += exp(logits[idx[i]] / p->temperature - mx);
    for (int i = 0; i < k; i++) probs[i] = exp(logits[idx[i]] / p->temperature - mx) / sum;
    int keep = k;
    double cum = 0;
    if (p->top_p < 1)
        for (int i = 0; i < k; i++) {
            cum += probs[i];
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    if (p->min_p > 0) {
        int m = 1;
        while (m < keep && probs[m] >= p->min_p * probs[0]) m++;
        keep = m;
    }
    for (int i = 0; i < keep; i++) ids[i] = idx[i];
    free(idx);
    return keep;
}

int main(void) {
    enum { N = 300 };
    float logits[N];
    slm_candidate cand[N];
    srand(7);
    for (int i = 0; i < N; i++) logits[i] = (float)(rand() % 2000) / 200.0f - 5.0f;
    logits[123] = 9.5f;

    /* greedy */
    slm_sampler_params g = slm_sampler_defaults();
    g.temperature = 0;
    CHECK(slm_sample_logits(logits, N, &g, 0.5f, cand) == 123, "greedy picks the argmax");
    CHECK(slm_argmax(logits, N) == 123, "argmax");

    /* every draw lands in the reference kept set, and the set's edges are reachable */
    const slm_sampler_params cases[] = {
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0},
        {.temperature = 0.7f, .top_k = 10, .top_p = 1.0f, .min_p = 0},
        {.temperature = 1.3f, .top_k = 0, .top_p = 0.5f, .min_p = 0},
        {.temperature = 1.0f, .top_k = 50, .top_p = 0.9f, .min_p = 0.05f},
        {.temperature = 2.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0},
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.2f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int ids[N];
        double probs[N];
        int keep = ref_keep(logits, N, &cases[c], ids, probs);
        int bad = 0, hits_first = 0;
        for (int s = 0; s < 4000; s++) {
            float u = (float)s / 4000.0f;
            int32_t t = slm_sample_logits(logits, N, &cases[c], u, cand);
            int in = 0;
            for (int i = 0; i < keep; i++) in |= ids[i] == t;
            bad += !in;
            hits_first += t == ids[0];
        }
        CHECK(bad == 0, "case %zu: %d draws outside the reference kept set (size %d)", c, bad, keep);
        CHECK(hits_first > 0, "case %zu: the top token is drawn", c);
        /* the draw with u just below 1 gives the last kept token, u = 0 the first */
        CHECK(slm_sample_logits(logits, N, &cases[c], 0.0f, cand) == ids[0], "case %zu: u=0 -> top token", c);
        CHECK(slm_sample_logits(logits, N, &cases[c], 0.99999994f, cand) == ids[keep - 1],
              "case %zu: u->1 -> last kept token", c);
    }

    /* frequencies follow the renormalized distribution (temperature 1, no truncation) */
    {
        float small[4] = {0.0f, 1.0f, 2.0f, 0.5f};
        slm_sampler_params p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0};
        int counts[4] = {0};
        const int M = 100000;
        for (int s = 0; s < M; s++) counts[slm_sample_logits(small, 4, &p, (s + 0.5f) / M, cand)]++;
        double z = exp(0.0) + exp(1.0) + exp(2.0) + exp(0.5);
        double want[4] = {exp(0.0) / z, exp(1.0) / z, exp(2.0) / z, exp(0.5) / z};
        for (int i = 0; i < 4; i++)
            CHECK(fabs(counts[i] / (double)M - want[i]) < 1e-3, "frequency of %d: %.4f vs %.4f", i, counts[i] / (double)M,
                  want[i]);
    }

    /* same seed, same sequence; other seed, other sequence */
    {
        slm_sampler_params p = slm_sampler_defaults();
        p.seed = 42;
        p.top_k = 0;
        p.min_p = 0;
        p.top_p = 1;
        p.temperature = 1.5f;
        slm_sampler *a, *b, *c;
        CHECK(slm_sampler_create(&p, N, &a) == SLM_OK, "create");
        CHECK(slm_sampler_create(&p, N, &b) == SLM_OK, "create");
        p.seed = 43;
        CHECK(slm_sampler_create(&p, N, &c) == SLM_OK, "create");
        int same = 1, differ = 0;
        for (int i = 0; i < 200; i++) {
            float l1[N], l2[N], l3[N];
            memcpy(l1, logits, sizeof l1);
            memcpy(l2, logits, sizeof l2);
            memcpy(l3, logits, sizeof l3);
            int32_t x = slm_sampler_sample(a, l1), y = slm_sampler_sample(b, l2), z = slm_sampler_sample(c, l3);
            same &= x == y;
            differ |= x != z;
        }
        CHECK(same, "same seed gives the same tokens");
        CHECK(differ, "another seed gives other tokens");
        slm_sampler_free(a);
        slm_sampler_free(b);
        slm_sampler_free(c);
    }

    /* repetition penalty: a penalized argmax loses to the runner-up */
    {
        slm_sampler_params p = slm_sampler_defaults();
        p.temperature = 0;
        p.repeat_penalty = 2.0f;
        p.repeat_last_n = 4;
        slm_sampler *s;
        CHECK(slm_sampler_create(&p, 3, &s) == SLM_OK, "create");
        float l[3] = {1.0f, 3.0f, 2.0f};
        slm_sampler_accept(s, 1);
        CHECK(slm_sampler_sample(s, l) == 2, "penalized token 1 (3/2=1.5) loses to token 2");
        float l2[3] = {-1.0f, -3.0f, -2.0f};
        slm_sampler_accept(s, 0);
        /* history now 1, 2 (sampled), 0: all penalized: -2, -6, -4 -> 0 still wins */
        CHECK(slm_sampler_sample(s, l2) == 0, "negative logits are multiplied");
        CHECK(l2[0] == -2.0f && l2[1] == -6.0f && l2[2] == -4.0f, "each recent token penalized once");
        slm_sampler_free(s);
    }

    /* parameter checks */
    {
        slm_sampler_params p = slm_sampler_defaults();
        p.top_p = 0;
        CHECK(slm_sampler_check(&p) == SLM_ERR_ARG, "top_p 0 rejected");
        p = slm_sampler_defaults();
        p.temperature = -1;
        CHECK(slm_sampler_check(&p) == SLM_ERR_ARG, "negative temperature rejected");
        p = slm_sampler_defaults();
        p.temperature = NAN;
        CHECK(slm_sampler_check(&p) == SLM_ERR_ARG, "NaN temperature rejected");
    }
    return test_summary("test_sampler");
}
