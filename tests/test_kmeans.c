/* test_kmeans.c - weighted k-means (compress/kmeans.h).
 *
 *   1. points drawn around known, well-separated centers (1-D and 3-D): the centers are
 *      recovered within the noise and the assignments equal the generating labels up to a
 *      renaming of the clusters;
 *   2. the same seed gives the same bytes;
 *   3. weights: a heavy point pulls its centroid to the weighted mean computed here;
 *   4. k >= the number of distinct points: every point is a center (cost 0);
 *   5. the result is never worse than the k-means++ start, and the reported cost is the
 *      objective recomputed here for the returned centers;
 *   6. the 1-D fast path (sorted runs, prefix sums) agrees with the general path on the same
 *      points embedded in 2-D with a zero second coordinate. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/kmeans.h"
#include "test.h"

static uint64_t g_rng = 0x13198a2e03707344ull;
static uint64_t rng_next(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_uniform(void) { return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

static double cost_of(const float *x, const float *w, int64_t n, int d, const float *c, int k) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double best = INFINITY;
        for (int j = 0; j < k; j++) {
            double e = 0;
            for (int t = 0; t < d; t++) e += ((double)x[i * d + t] - c[j * d + t]) * ((double)x[i * d + t] - c[j * d + t]);
            if (e < best) best = e;
        }
        s += (w ? w[i] : 1.0) * best;
    }
    return s;
}

enum { N = 2000, KMAX = 8 };
static float g_x[N * 3], g_c[KMAX * 3], g_c2[KMAX * 3];
static int32_t g_as[N], g_lab[N];

static void test_recover(int d, int k) {
    float truth[KMAX * 3];
    for (int j = 0; j < k; j++)
        for (int t = 0; t < d; t++) truth[j * d + t] = (float)(10 * j) * (t == 0 ? 1.0f : -0.5f) + (float)t;
    for (int i = 0; i < N; i++) {
        g_lab[i] = (int32_t)(rng_next() % (uint64_t)k);
        for (int t = 0; t < d; t++) g_x[i * d + t] = truth[g_lab[i] * d + t] + 0.5f * rng_uniform();
    }
    for (uint64_t seed = 1; seed <= 3; seed++) {
        const slm_kmeans_params p = {.k = k, .seed = seed};
        slm_kmeans_info info;
        CHECK(slm_kmeans(g_x, NULL, N, d, &p, g_c, g_as, &info) == SLM_OK, "kmeans d=%d k=%d", d, k);
        /* each true center has a found center within the noise, and the map is a bijection */
        int map[KMAX], used[KMAX] = {0}, ok = 1;
        for (int j = 0; j < k; j++) {
            int best = -1;
            double bd = INFINITY;
            for (int m = 0; m < k; m++) {
                double e = 0;
                for (int t = 0; t < d; t++) e += ((double)truth[j * d + t] - g_c[m * d + t]) * ((double)truth[j * d + t] - g_c[m * d + t]);
                if (e < bd) {
                    bd = e;
                    best = m;
                }
            }
            ok &= sqrt(bd) < 0.1 && !used[best];
            used[best] = 1;
            map[j] = best;
        }
        CHECK(ok, "d=%d k=%d seed %llu: centers recovered", d, k, (unsigned long long)seed);
        int mis = 0;
        for (int i = 0; ok && i < N; i++) mis += g_as[i] != map[g_lab[i]];
        CHECK(ok && mis == 0, "d=%d k=%d seed %llu: %d assignments differ from the labels", d, k, (unsigned long long)seed, mis);
        CHECK(info.cost <= info.init_cost, "never worse than the start");
    }
}

static void test_determinism(void) {
    for (int i = 0; i < N; i++) g_x[i] = rng_uniform() * rng_uniform();
    const slm_kmeans_params p = {.k = 7, .seed = 42};
    slm_kmeans(g_x, NULL, N, 1, &p, g_c, NULL, NULL);
    slm_kmeans(g_x, NULL, N, 1, &p, g_c2, NULL, NULL);
    CHECK(!memcmp(g_c, g_c2, 7 * sizeof(float)), "1-D: same seed, same centers");
    slm_kmeans(g_x, NULL, N / 2, 2, &p, g_c, NULL, NULL);
    slm_kmeans(g_x, NULL, N / 2, 2, &p, g_c2, NULL, NULL);
    CHECK(!memcmp(g_c, g_c2, 14 * sizeof(float)), "2-D: same seed, same centers");
}

static void test_weights(void) {
    const float x[] = {0, 1, 10, 11};
    float w[] = {1, 1, 1, 1}, c[2];
    const slm_kmeans_params p = {.k = 2, .seed = 3};
    CHECK(slm_kmeans(x, w, 4, 1, &p, c, NULL, NULL) == SLM_OK, "weighted");
    const float lo = fminf(c[0], c[1]), hi = fmaxf(c[0], c[1]);
    CHECK(fabsf(lo - 0.5f) < 1e-6f && fabsf(hi - 10.5f) < 1e-6f, "unit weights: %g %g", lo, hi);
    w[3] = 9;
    slm_kmeans(x, w, 4, 1, &p, c, NULL, NULL);
    CHECK(fabsf(fmaxf(c[0], c[1]) - 10.9f) < 1e-5f && fabsf(fminf(c[0], c[1]) - 0.5f) < 1e-6f,
          "heavy point pulls its centroid to 10.9: %g", fmaxf(c[0], c[1]));
    /* in 2-D, general path */
    const float x2[] = {0, 0, 1, 0, 10, 0, 11, 0};
    float c2[4];
    slm_kmeans(x2, w, 4, 2, &p, c2, NULL, NULL);
    CHECK(fabsf(fmaxf(c2[0], c2[2]) - 10.9f) < 1e-5f, "2-D: heavy point pulls its centroid: %g", fmaxf(c2[0], c2[2]));
}

static void test_exact(void) {
    static const float vals[] = {-3, 0.25f, 7, 100, -50};
    for (int i = 0; i < 500; i++) g_x[i] = vals[rng_next() % 5];
    for (int k = 5; k <= 8; k++) {
        const slm_kmeans_params p = {.k = k, .seed = (uint64_t)k};
        slm_kmeans_info info;
        slm_kmeans(g_x, NULL, 500, 1, &p, g_c, g_as, &info);
        int found = 0;
        for (int v = 0; v < 5; v++)
            for (int j = 0; j < k; j++)
                if (g_c[j] == vals[v]) {
                    found++;
                    break;
                }
        int asg = 1;
        for (int i = 0; i < 500; i++) asg &= g_c[g_as[i]] == g_x[i];
        CHECK(found == 5 && info.cost == 0.0 && asg, "k=%d >= 5 distinct values: exact (found %d, cost %g)", k, found, info.cost);
    }
}

static void test_never_worse(void) {
    int bad = 0, mism = 0;
    float w[N];
    for (int rep = 0; rep < 40; rep++) {
        const int d = 1 + rep % 3, k = 2 + rep % 7, n = 300;
        for (int i = 0; i < n * d; i++) g_x[i] = rng_uniform() * (rep % 2 ? 1.0f : rng_uniform());
        for (int i = 0; i < n; i++) w[i] = rep % 4 == 3 ? 0.0f : (float)(rng_next() % 5);
        const slm_kmeans_params p = {.k = k, .seed = (uint64_t)rep};
        slm_kmeans_info info;
        slm_kmeans(g_x, w, n, d, &p, g_c, NULL, &info);
        bad += !(info.cost <= info.init_cost);
        const double c = cost_of(g_x, w, n, d, g_c, k);
        mism += !(fabs(c - info.cost) <= 1e-9 * (c + 1e-30) + 1e-12);
    }
    CHECK(bad == 0, "%d runs ended worse than their k-means++ start", bad);
    CHECK(mism == 0, "%d reported costs differ from the recomputed objective", mism);
}

static void test_fast_path(void) {
    float x2[2 * 1000], w[1000];
    int diff = 0;
    for (int rep = 0; rep < 10; rep++) {
        for (int i = 0; i < 1000; i++) {
            g_x[i] = rng_uniform() + (float)(i % 3) * 0.7f;
            x2[2 * i] = g_x[i];
            x2[2 * i + 1] = 0.0f;
            w[i] = 1.0f + (float)(rng_next() % 3);
        }
        const slm_kmeans_params p = {.k = 6, .seed = (uint64_t)rep + 100};
        slm_kmeans_info a, b;
        slm_kmeans(g_x, w, 1000, 1, &p, g_c, NULL, &a);
        slm_kmeans(x2, w, 1000, 2, &p, g_c2, NULL, &b);
        diff += !(fabs(a.cost - b.cost) <= 1e-6 * b.cost);
    }
    CHECK(diff == 0, "1-D fast path and general path: %d of 10 runs end at different costs", diff);
}

static void test_errors(void) {
    const float x[] = {1, NAN};
    float c[2];
    const slm_kmeans_params p = {.k = 1};
    CHECK(slm_kmeans(x, NULL, 2, 1, &p, c, NULL, NULL) == SLM_ERR_ARG, "non-finite point rejected");
    const slm_kmeans_params p0 = {.k = 0};
    CHECK(slm_kmeans(x, NULL, 1, 1, &p0, c, NULL, NULL) == SLM_ERR_ARG, "k = 0 rejected");
}

int main(void) {
    test_recover(1, 4);
    test_recover(1, 8);
    test_recover(3, 5);
    test_determinism();
    test_weights();
    test_exact();
    test_never_worse();
    test_fast_path();
    test_errors();
    return test_summary("kmeans");
}
