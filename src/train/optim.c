/* optim.c - AdamW, the learning-rate schedule, gradient norms and scaling.
 *
 * AdamW is elementwise, so threads split the parameters freely; the bias corrections are
 * computed once per step in double. The sum of squares runs on one thread in a fixed order
 * (eight interleaved double partial sums per chunk, chunks added in order), so it does not
 * depend on how many threads the caller has. */
#include "optim.h"

#include <math.h>

void slm_adamw_defaults(slm_adamw *o) {
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.0f;
}

typedef struct {
    float lr, b1, b2, eps, wd;
    float bc1, bc2; /* 1 - b^t */
    float *p, *m, *v;
    const float *g;
    size_t n;
} adamw_job;

static void adamw_range(const adamw_job *j, size_t lo, size_t hi) {
    const float b1 = j->b1, b2 = j->b2, a1 = 1.0f - j->b1, a2 = 1.0f - j->b2;
    for (size_t i = lo; i < hi; i++) {
        const float g = j->g[i];
        const float m = b1 * j->m[i] + a1 * g;
        const float v = b2 * j->v[i] + a2 * (g * g);
        j->m[i] = m;
        j->v[i] = v;
        const float mhat = m / j->bc1, vhat = v / j->bc2;
        j->p[i] -= j->lr * (mhat / (sqrtf(vhat) + j->eps) + j->wd * j->p[i]);
    }
}

static void adamw_task(void *arg, int ith, int nth) {
    const adamw_job *j = arg;
    long lo, hi;
    slm_pool_split((long)j->n, ith, nth, 16, &lo, &hi);
    if (lo < hi) adamw_range(j, (size_t)lo, (size_t)hi);
}

/* Below this many parameters one thread does the whole update. */
enum { ADAMW_MIN_PARALLEL = 1 << 15 };

void slm_adamw_update(slm_pool *pool, const slm_adamw *o, int64_t t, float lr, bool decay, float *p, const float *g,
                      float *m, float *v, size_t n) {
    if (n == 0) return;
    if (t < 1) t = 1;
    const double bc1 = 1.0 - pow((double)o->beta1, (double)t), bc2 = 1.0 - pow((double)o->beta2, (double)t);
    adamw_job j = {
        .lr = lr,
        .b1 = o->beta1,
        .b2 = o->beta2,
        .eps = o->eps,
        .wd = decay ? o->weight_decay : 0.0f,
        .bc1 = (float)bc1,
        .bc2 = (float)bc2,
        .p = p,
        .m = m,
        .v = v,
        .g = g,
        .n = n,
    };
    if (n < ADAMW_MIN_PARALLEL) adamw_range(&j, 0, n);
    else slm_pool_run(pool, adamw_task, &j);
}

float slm_lr_at(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min) {
    if (step < 0) step = 0;
    if (warmup < 0) warmup = 0;
    if (step < warmup) return (float)((double)lr_max * (double)(step + 1) / (double)warmup);
    const int64_t span = total - 1 - warmup; /* steps from the peak to the last one */
    if (span <= 0) return lr_max;            /* no room to decay (e.g. total 1) */
    if (step - warmup >= span) return lr_min;
    const double x = (double)(step - warmup) / (double)span;
    return (float)((double)lr_min + 0.5 * ((double)lr_max - (double)lr_min) * (1.0 + cos(3.14159265358979323846 * x)));
}

enum { SUMSQ_CHUNK = 4096, SUMSQ_LANES = 8 };

double slm_sumsq(const float *g, size_t n) {
    double total = 0;
    for (size_t c0 = 0; c0 < n; c0 += SUMSQ_CHUNK) {
        const size_t c1 = n - c0 < SUMSQ_CHUNK ? n : c0 + SUMSQ_CHUNK;
        double lane[SUMSQ_LANES] = {0};
        size_t i = c0;
        for (; i + SUMSQ_LANES <= c1; i += SUMSQ_LANES)
            for (int l = 0; l < SUMSQ_LANES; l++) lane[l] += (double)g[i + l] * (double)g[i + l];
        double s = 0;
        for (int l = 0; l < SUMSQ_LANES; l++) s += lane[l];
        for (; i < c1; i++) s += (double)g[i] * (double)g[i];
        total += s;
    }
    return total;
}

void slm_scale(float *g, size_t n, float s) {
    for (size_t i = 0; i < n; i++) g[i] *= s;
}
