/* test_optim.c - AdamW against the header's formula evaluated in double over several steps
 * (weight decay on and off, 1 and 2 threads, bit-identical between them), the warmup + cosine
 * schedule at its defining points and edge cases, sum of squares against a naive double sum
 * and its independence of the input split, and scaling. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "train/optim.h"

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static float rnd(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) * 0x1.0p-23 - 1.0);
}

static bool near(double got, double want, double rel) { return fabs(got - want) <= rel * fabs(want) + 1e-12; }

/* n parameters through `steps` AdamW steps with fresh gradients each step, float vs double. */
static void check_adamw(slm_pool *pool1, slm_pool *pool2, size_t n, bool decay) {
    slm_adamw o;
    slm_adamw_defaults(&o);
    o.weight_decay = 0.1f;
    float *p = malloc(n * sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v), *g = malloc(n * sizeof *g);
    float *p2 = malloc(n * sizeof *p2), *m2 = calloc(n, sizeof *m2), *v2 = calloc(n, sizeof *v2);
    double *pd = malloc(n * sizeof *pd), *md = calloc(n, sizeof *md), *vd = calloc(n, sizeof *vd);
    for (size_t i = 0; i < n; i++) pd[i] = p2[i] = p[i] = rnd();
    double worst = 0;
    bool same = true;
    const int steps = 7;
    for (int t = 1; t <= steps; t++) {
        const float lr = 1e-3f * (float)t;
        for (size_t i = 0; i < n; i++) g[i] = rnd() * (i % 3 == 0 ? 1e-3f : 1.0f);
        slm_adamw_update(pool1, &o, t, lr, decay, p, g, m, v, n);
        slm_adamw_update(pool2, &o, t, lr, decay, p2, g, m2, v2, n);
        const double b1 = o.beta1, b2 = o.beta2, eps = o.eps, wd = decay ? o.weight_decay : 0.0;
        for (size_t i = 0; i < n; i++) {
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
            const double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
            pd[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pd[i]);
            /* float keeps p to about half an ulp per step; the update itself to a few ulps */
            const double tol = 2.0 * t * 0x1.0p-24 * (fabs(pd[i]) + 1e-3) + 1e-5 * 1e-3 * t * t;
            const double e = fabs(p[i] - pd[i]) / tol;
            if (e > worst) worst = e;
        }
        if (memcmp(p, p2, n * sizeof *p) || memcmp(m, m2, n * sizeof *m) || memcmp(v, v2, n * sizeof *v))
            same = false;
    }
    if (getenv("SLM_TEST_VERBOSE")) printf("adamw n=%zu decay=%d worst %.3g\n", n, decay, worst);
    CHECK(worst <= 1.0, "adamw n=%zu decay=%d: worst error/tolerance %.3g", n, decay, worst);
    CHECK(same, "adamw n=%zu decay=%d: 1 and 2 threads differ", n, decay);
    /* decay pulls parameters toward zero: with a zero gradient only decay moves them */
    if (decay) {
        float q = 2.0f, mq = 0, vq = 0, gz = 0;
        slm_adamw_update(NULL, &o, 1, 0.5f, true, &q, &gz, &mq, &vq, 1);
        CHECK(near(q, 2.0 - 0.5 * 0.1 * 2.0, 1e-6), "decay alone: %g", q);
    }
    free(p), free(m), free(v), free(g), free(p2), free(m2), free(v2), free(pd), free(md), free(vd);
}

static void check_schedule(void) {
    const float mx = 1e-3f, mn = 1e-4f;
    /* warmup 10, total 110: steps 0..9 warm up, 10 is the peak, 109 the last */
    CHECK(near(slm_lr_at(0, 10, 110, mx, mn), mx / 10, 1e-6), "warmup start %g", slm_lr_at(0, 10, 110, mx, mn));
    CHECK(near(slm_lr_at(4, 10, 110, mx, mn), mx * 5 / 10, 1e-6), "warmup middle");
    CHECK(near(slm_lr_at(9, 10, 110, mx, mn), mx, 1e-6), "warmup end");
    CHECK(near(slm_lr_at(10, 10, 110, mx, mn), mx, 1e-6), "decay start");
    /* middle of the cosine: step 10 + 99/2 is not whole; check 59 against the formula */
    const double x = (59.0 - 10.0) / 99.0, want = mn + 0.5 * (mx - mn) * (1 + cos(M_PI * x));
    CHECK(near(slm_lr_at(59, 10, 110, mx, mn), want, 1e-6), "cosine at 59: %g vs %g", slm_lr_at(59, 10, 110, mx, mn),
          want);
    CHECK(near(slm_lr_at(109, 10, 110, mx, mn), mn, 1e-6), "last step %g", slm_lr_at(109, 10, 110, mx, mn));
    CHECK(near(slm_lr_at(500, 10, 110, mx, mn), mn, 1e-6), "past the end");
    /* decreasing after the peak */
    bool mono = true;
    for (int s = 11; s < 110; s++)
        if (slm_lr_at(s, 10, 110, mx, mn) > slm_lr_at(s - 1, 10, 110, mx, mn)) mono = false;
    CHECK(mono, "cosine decay is non-increasing");
    /* edge cases */
    CHECK(near(slm_lr_at(0, 0, 100, mx, mn), mx, 1e-6), "warmup 0 starts at the peak");
    CHECK(near(slm_lr_at(99, 0, 100, mx, mn), mn, 1e-6), "warmup 0 ends at the minimum");
    CHECK(near(slm_lr_at(0, 0, 1, mx, mn), mx, 1e-6), "total 1: the peak");
    CHECK(near(slm_lr_at(3, 4, 4, mx, mn), mx, 1e-6), "warmup covering the run ends at the peak");
    CHECK(near(slm_lr_at(-5, 4, 10, mx, mn), mx / 4, 1e-6), "negative step is step 0");
}

static void check_sumsq(void) {
    const size_t n = 100003;
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = rnd() * (i % 11 == 0 ? 100.0f : 1.0f);
    double naive = 0;
    for (size_t i = 0; i < n; i++) naive += (double)g[i] * g[i];
    CHECK(near(slm_sumsq(g, n), naive, 1e-12), "sumsq %.17g vs %.17g", slm_sumsq(g, n), naive);
    CHECK(slm_sumsq(g, n) == slm_sumsq(g, n), "sumsq repeats exactly");
    CHECK(slm_sumsq(g, 0) == 0, "empty sumsq");
    double small = 0;
    for (size_t i = 0; i < 13; i++) small += (double)g[i] * g[i];
    CHECK(near(slm_sumsq(g, 13), small, 1e-15), "sumsq of a tail-only length");
    slm_scale(g, n, 0.5f);
    CHECK(near(slm_sumsq(g, n), naive * 0.25, 1e-12), "scale by 0.5 quarters the sum of squares");
    free(g);
}

int main(void) {
    slm_pool *p1 = NULL, *p2 = NULL;
    CHECK(slm_pool_create(1, &p1) == SLM_OK && slm_pool_create(2, &p2) == SLM_OK, "pools");
    slm_adamw o;
    slm_adamw_defaults(&o);
    CHECK(o.beta1 == 0.9f && o.beta2 == 0.95f && o.eps == 1e-8f && o.weight_decay == 0.0f, "defaults");
    check_adamw(p1, p2, 37, false);
    check_adamw(p1, p2, 37, true);
    check_adamw(p1, p2, 70001, false); /* large enough to split between threads */
    check_adamw(p1, p2, 70001, true);
    check_schedule();
    check_sumsq();
    slm_pool_free(p1);
    slm_pool_free(p2);
    return test_summary("optim");
}
