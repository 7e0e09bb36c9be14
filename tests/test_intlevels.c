/* test_intlevels.c - the optimal integer levels against exhaustive search, and the binned cost
 * against the cost summed over the raw values. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "compress/intlevels.h"
#include "core/rng.h"
#include "test.h"

/* sum w (u - nearest level)^2 over raw values */
static double raw_cost(const float *u, const double *w, int n, const int8_t *lv, int k) {
    double c = 0.0;
    for (int i = 0; i < n; i++) {
        double best = INFINITY;
        for (int j = 0; j < k; j++) {
            const double d = (double)u[i] - lv[j];
            if (d * d < best) best = d * d;
        }
        c += w[i] * best;
    }
    return c;
}

/* least raw cost over every k-subset of the integers lo..hi */
static double brute(const float *u, const double *w, int n, int lo, int hi, int k) {
    const int m = hi - lo + 1;
    double best = INFINITY;
    for (uint32_t mask = 0; mask < (1u << m); mask++) {
        if (__builtin_popcount(mask) != k) continue;
        int8_t lv[32];
        int c = 0;
        for (int b = 0; b < m; b++)
            if (mask >> b & 1) lv[c++] = (int8_t)(lo + b);
        const double v = raw_cost(u, w, n, lv, k);
        if (v < best) best = v;
    }
    return best;
}

int main(void) {
    slm_il_hist h;
    uint64_t st = 12345;
    enum { N = 400 };
    float u[N];
    double w[N];
    /* small ranges: every subset of the candidate levels inside the values' hull is tried */
    for (int trial = 0; trial < 24; trial++) {
        const double span = 2.0 + trial % 6;
        slm_il_clear(&h);
        for (int i = 0; i < N; i++) {
            const double g = slm_rng_normal(&st);
            u[i] = (float)(g * span / 3.0 + (trial % 3 == 0 ? 0.3 : 0.0));
            if (u[i] > span) u[i] = (float)span;
            if (u[i] < -span) u[i] = (float)-span;
            w[i] = trial % 2 ? 0.1 + (double)(slm_splitmix64(&st) % 1000) / 100.0 : 1.0;
            slm_il_add(&h, u[i], w[i]);
        }
        const int lo = (int)floor(-span), hi = (int)ceil(span);
        for (int k = 1; k <= 5; k++) {
            int8_t lv[8];
            double cost;
            const int got = slm_il_optimal(&h, k, false, lv, &cost);
            CHECK(got == k, "trial %d k %d: %d levels", trial, k, got);
            for (int j = 1; j < got; j++) CHECK(lv[j] > lv[j - 1], "trial %d k %d: levels not ascending", trial, k);
            const double rc = raw_cost(u, w, N, lv, got);
            CHECK(fabs(rc - cost) <= 1e-9 * (1.0 + rc), "trial %d k %d: reported cost %.12g, raw %.12g", trial, k, cost,
                  rc);
            CHECK(fabs(slm_il_cost(&h, lv, got) - rc) <= 1e-9 * (1.0 + rc), "trial %d k %d: binned cost differs", trial,
                  k);
            const double b = brute(u, w, N, lo, hi, k);
            CHECK(rc <= b * (1.0 + 1e-12) + 1e-12, "trial %d k %d: %.12g worse than exhaustive %.12g", trial, k, rc, b);
        }
    }
    /* wide range: no level set found by perturbing the optimum is better */
    slm_il_clear(&h);
    for (int i = 0; i < N; i++) {
        u[i] = (float)(slm_rng_normal(&st) * 30.0);
        w[i] = 1.0;
        slm_il_add(&h, u[i], w[i]);
    }
    for (int k = 8; k <= 64; k *= 2) {
        int8_t lv[64];
        double cost;
        const int got = slm_il_optimal(&h, k, false, lv, &cost);
        CHECK(got == k, "k %d: %d levels", k, got);
        int worse = 0;
        for (int j = 0; j < k; j++)
            for (int d = -2; d <= 2; d += 4) {
                int8_t alt[64];
                memcpy(alt, lv, (size_t)k);
                const int v = alt[j] + d;
                if (v < -127 || v > 127) continue;
                alt[j] = (int8_t)v;
                worse += raw_cost(u, w, N, alt, k) >= cost - 1e-9;
            }
        CHECK(worse > 0, "k %d: no perturbation tried", k);
        int better = 0;
        for (int j = 0; j < k; j++)
            for (int d = -3; d <= 3; d++) {
                int8_t alt[64];
                memcpy(alt, lv, (size_t)k);
                const int v = alt[j] + d;
                if (d == 0 || v < -127 || v > 127) continue;
                alt[j] = (int8_t)v;
                better += raw_cost(u, w, N, alt, k) < cost - 1e-9 * cost;
            }
        CHECK(better == 0, "k %d: %d single-level moves beat the optimum", k, better);
    }
    /* all 255 levels when k >= 255; empty histogram: one level 0 */
    int8_t all[256];
    CHECK(slm_il_optimal(&h, 256, false, all, NULL) == 255, "k 256 gives 255 levels");
    CHECK(all[0] == -127 && all[254] == 127, "k 256 spans the grid");
    slm_il_clear(&h);
    CHECK(slm_il_optimal(&h, 16, false, all, NULL) == 1 && all[0] == 0, "empty histogram: level 0");
    /* a pinned zero: a huge weight at 0 forces the level */
    for (int i = 0; i < N; i++) slm_il_add(&h, (float)(40.0 + slm_rng_normal(&st)), 1.0);
    int8_t two[2];
    slm_il_optimal(&h, 2, true, two, NULL);
    CHECK(two[0] == 0 && two[1] >= 38 && two[1] <= 42, "pinned zero kept: %d %d", two[0], two[1]);
    slm_il_optimal(&h, 2, false, two, NULL);
    CHECK(two[0] > 30, "unpinned: both levels near the values: %d %d", two[0], two[1]);
    /* pinned against exhaustive search: the best subset containing 0 */
    for (int trial = 0; trial < 8; trial++) {
        slm_il_clear(&h);
        for (int i = 0; i < N; i++) {
            u[i] = (float)(2.0 + slm_rng_normal(&st) * 1.5);
            w[i] = 1.0;
            slm_il_add(&h, u[i], w[i]);
        }
        for (int k = 2; k <= 4; k++) {
            int8_t lv[8];
            double cost;
            slm_il_optimal(&h, k, true, lv, &cost);
            int has0 = 0;
            for (int j = 0; j < k; j++) has0 |= lv[j] == 0;
            CHECK(has0, "pinned k %d: no 0 level", k);
            /* exhaustive: 0 plus every (k-1)-subset of -6..8 without 0 */
            double best = INFINITY;
            for (uint32_t mask = 0; mask < (1u << 15); mask++) {
                if (__builtin_popcount(mask) != k - 1 || (mask >> 6 & 1)) continue;
                int8_t c[8] = {0};
                int m = 1;
                for (int b = 0; b < 15; b++)
                    if (mask >> b & 1) c[m++] = (int8_t)(b - 6);
                const double v = raw_cost(u, w, N, c, k);
                if (v < best) best = v;
            }
            CHECK(cost <= best * (1.0 + 1e-12) + 1e-12, "pinned k %d: %.12g vs exhaustive %.12g", k, cost, best);
        }
    }
    /* values beyond the grid are clamped, non-finite and zero-weight ones ignored */
    slm_il_clear(&h);
    slm_il_add(&h, 500.0f, 1.0);
    slm_il_add(&h, NAN, 1.0);
    slm_il_add(&h, 3.0f, 0.0);
    int8_t one[1];
    slm_il_optimal(&h, 1, false, one, NULL);
    CHECK(one[0] == 127, "clamped value lands on 127: %d", one[0]);
    return test_summary("intlevels");
}
