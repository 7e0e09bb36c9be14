/* test_ops.c - the SIMD twins of RMSNorm and SwiGLU against the scalar twins and a double
 * reference.
 *
 * Tolerances:
 *   RMSNorm: |simd - scalar| <= 1e-6 |scalar| per element (both sum squares in double and
 *     differ only by summation order, so the scale agrees to about 1 ulp); both within 1e-6
 *     relative of the double reference.
 *   SwiGLU: |simd - scalar| <= 2e-6 |scalar| + 1e-30 per element (polynomial exp of about
 *     2 ulp, one division); the absolute term covers g < -88, where the scalar exp overflows
 *     to give 0 and the SIMD one gives about 1e-38 * |g u|.
 * Lengths 1..40 and around multiples of 8 and 16 (tails), model sizes; inputs small (1e-3),
 * moderate, large (up to +-200, past the exp clamp), all negative; a sentinel after n
 * catches writes past the end; the dispatched functions match their twins. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd_f(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(uint32_t)(rng >> 32) / 2147483648.0f - 1.0f;
}

#define MAXN 1600
#define SENTINEL 12345.0f

static const int lens[] = {1,  2,  3,  4,  5,  7,  8,  9,  12, 15, 16, 17, 20, 23, 24, 25,
                           31, 32, 33, 39, 40, 47, 63, 64, 65, 100, 576, 577, 1000, 1536};
#define N_LENS ((int)(sizeof lens / sizeof lens[0]))

/* Input of kind k: 0 small, 1 moderate, 2 large (past the exp clamp), 3 all negative. */
static float input(int kind) {
    switch (kind) {
    case 0: return 1e-3f * rnd_f();
    case 1: return 4.0f * rnd_f();
    case 2: return 200.0f * rnd_f();
    default: return -fabsf(8.0f * rnd_f()) - 1e-3f;
    }
}

static int level(void) {
#if defined(__x86_64__)
    if (slm_kernels_get(SLM_ISA_AVX512)) return 2;
    if (slm_kernels_get(SLM_ISA_AVX2)) return 1;
#endif
    return 0;
}

static void test_rmsnorm(void) {
#if defined(__x86_64__)
    if (level() < 1) return;
    static float x[MAXN + 1], w[MAXN], a[MAXN + 1], b[MAXN + 1], c[MAXN + 1];
    int bad = 0, bad_ref = 0, bad_alias = 0, bad_disp = 0, cases = 0;
    for (int li = 0; li < N_LENS; li++)
        for (int kind = 0; kind < 4; kind++, cases++) {
            const int n = lens[li];
            for (int i = 0; i < n; i++) x[i] = input(kind), w[i] = 1.0f + 0.5f * rnd_f();
            a[n] = b[n] = SENTINEL;
            slm_rmsnorm_ref(a, x, w, n, 1e-5f);
            slm_rmsnorm_avx2(b, x, w, n, 1e-5f);
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            const double scale = 1.0 / sqrt(ss / n + 1e-5f);
            for (int i = 0; i < n; i++) {
                const double r = (double)x[i] * scale * w[i];
                bad += !(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(a[i]));
                bad_ref += !(fabs(a[i] - r) <= 1e-6 * fabs(r) && fabs(b[i] - r) <= 1e-6 * fabs(r));
            }
            bad += b[n] != SENTINEL;
            /* in place, and the dispatched entry point */
            memcpy(c, x, (size_t)n * sizeof(float));
            slm_rmsnorm_avx2(c, c, w, n, 1e-5f);
            bad_alias += memcmp(c, b, (size_t)n * sizeof(float)) != 0;
            slm_rmsnorm(c, x, w, n, 1e-5f);
            bad_disp += memcmp(c, b, (size_t)n * sizeof(float)) != 0;
        }
    CHECK(bad == 0, "rmsnorm avx2 vs scalar within 1e-6: %d mismatches in %d cases", bad, cases);
    CHECK(bad_ref == 0, "rmsnorm twins vs double within 1e-6: %d mismatches", bad_ref);
    CHECK(bad_alias == 0, "rmsnorm avx2 in place gives the same result (%d differ)", bad_alias);
    CHECK(bad_disp == 0, "slm_rmsnorm dispatches to the avx2 twin (%d differ)", bad_disp);
#endif
}

typedef void (*swiglu_fn)(float *, const float *, int);

static void test_swiglu_variant(swiglu_fn f, const char *name) {
    static float g[MAXN + 1], u[MAXN], a[MAXN + 1], b[MAXN + 1];
    int bad = 0, bad_ref = 0, cases = 0;
    double worst = 0;
    for (int li = 0; li < N_LENS; li++)
        for (int kind = 0; kind < 4; kind++, cases++) {
            const int n = lens[li];
            for (int i = 0; i < n; i++) g[i] = input(kind), u[i] = input(kind == 3 ? 1 : kind);
            memcpy(a, g, (size_t)n * sizeof(float));
            memcpy(b, g, (size_t)n * sizeof(float));
            a[n] = b[n] = SENTINEL;
            slm_swiglu_ref(a, u, n);
            f(b, u, n);
            for (int i = 0; i < n; i++) {
                const double e = fabs((double)a[i] - b[i]);
                bad += !(e <= 2e-6 * fabs(a[i]) + 1e-30);
                if (fabs(a[i]) > 1e-30 && e / fabs(a[i]) > worst) worst = e / fabs(a[i]);
                const double r = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
                bad_ref += !(fabs(b[i] - r) <= 2e-6 * fabs(r) + 1e-30);
            }
            bad += b[n] != SENTINEL;
        }
    CHECK(bad == 0, "swiglu %s vs scalar within 2e-6: %d mismatches in %d cases (worst rel %.3g)", name, bad, cases,
          worst);
    CHECK(bad_ref == 0, "swiglu %s vs double within 2e-6: %d mismatches", name, bad_ref);
}

/* The dispatched entry point gives exactly what the best twin gives. */
static void test_swiglu_dispatch(void) {
    static float g[1000], u[1000], a[1000], b[1000];
    for (int i = 0; i < 1000; i++) g[i] = input(1), u[i] = input(1);
    memcpy(a, g, sizeof g);
    memcpy(b, g, sizeof g);
    slm_swiglu(a, u, 997);
    const int lv = level();
#if defined(__x86_64__)
    if (lv == 2)
        slm_swiglu_avx512(b, u, 997);
    else if (lv == 1)
        slm_swiglu_avx2(b, u, 997);
    else
#endif
        slm_swiglu_ref(b, u, 997);
    CHECK(memcmp(a, b, sizeof a) == 0, "slm_swiglu dispatches to the level-%d twin", lv);
    /* exact values: silu(0) = 0, silu(x) -> x for large x, -> 0 for very negative x */
    float x[3] = {0.0f, 100.0f, -200.0f}, one[3] = {1.0f, 1.0f, 1.0f};
    slm_swiglu(x, one, 3);
    CHECK(x[0] == 0.0f && x[1] == 100.0f && fabsf(x[2]) < 1e-30f, "swiglu of 0, 100, -200: %g %g %g", x[0], x[1],
          x[2]);
}

int main(void) {
    printf("simd level: %d\n", level());
    test_rmsnorm();
    test_swiglu_variant(slm_swiglu_ref, "scalar");
#if defined(__x86_64__)
    if (level() >= 1) test_swiglu_variant(slm_swiglu_avx2, "avx2");
    if (level() >= 2) test_swiglu_variant(slm_swiglu_avx512, "avx512");
#endif
    test_swiglu_dispatch();
    return test_summary("test_ops");
}
