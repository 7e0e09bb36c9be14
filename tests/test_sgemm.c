/* test_sgemm.c - the training sgemm against a double-precision reference, for every kernel set
 * this CPU runs: all four (ta, tb), beta 0 and 1, odd sizes, padded leading dimensions, several
 * K and column blocks; C's padding must stay untouched and beta 0 must not read C. Then the
 * bit-identity of the result for 1, 2 and 3 threads (and no pool). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qdot.h"
#include "test.h"
#include "train/sgemm.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float rnd(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) * 0x1.0p-23 - 1.0);
}

typedef struct {
    int M, N, K;
} shape;

/* A, B, C with padded rows for op shapes (M, N, K); C's pad holds a sentinel. */
typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    float *A, *B, *C0, *C;
} problem;

static const float SENTINEL = 12345.0f;

static void problem_make(problem *p, bool ta, bool tb, shape s) {
    p->ta = ta, p->tb = tb, p->M = s.M, p->N = s.N, p->K = s.K;
    const int arows = ta ? s.K : s.M, acols = ta ? s.M : s.K;
    const int brows = tb ? s.N : s.K, bcols = tb ? s.K : s.N;
    p->lda = acols + 3, p->ldb = bcols + 5, p->ldc = s.N + 7;
    p->A = malloc(sizeof(float) * (size_t)arows * p->lda);
    p->B = malloc(sizeof(float) * (size_t)brows * p->ldb);
    p->C0 = malloc(sizeof(float) * (size_t)s.M * p->ldc);
    p->C = malloc(sizeof(float) * (size_t)s.M * p->ldc);
    for (size_t i = 0; i < (size_t)arows * p->lda; i++) p->A[i] = rnd();
    for (size_t i = 0; i < (size_t)brows * p->ldb; i++) p->B[i] = rnd();
    for (int i = 0; i < s.M; i++)
        for (int j = 0; j < p->ldc; j++) p->C0[(size_t)i * p->ldc + j] = j < s.N ? rnd() : SENTINEL;
}

static void problem_free(problem *p) {
    free(p->A);
    free(p->B);
    free(p->C0);
    free(p->C);
}

static float op_a(const problem *p, int i, int k) {
    return p->ta ? p->A[(size_t)k * p->lda + i] : p->A[(size_t)i * p->lda + k];
}
static float op_b(const problem *p, int k, int j) {
    return p->tb ? p->B[(size_t)j * p->ldb + k] : p->B[(size_t)k * p->ldb + j];
}

/* Run slm_sgemm from C0 (beta 0: C starts as NaN, which must not leak into the result). */
static void run(const problem *p, slm_pool *pool, float beta) {
    memcpy(p->C, p->C0, sizeof(float) * (size_t)p->M * p->ldc);
    if (beta == 0)
        for (int i = 0; i < p->M; i++)
            for (int j = 0; j < p->N; j++) p->C[(size_t)i * p->ldc + j] = NAN;
    slm_sgemm(pool, p->ta, p->tb, p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb, beta, p->C, p->ldc);
}

/* Worst |C - ref| / tolerance over C; padding checked. Returns false on a failure. */
static bool check_ref(const problem *p, float beta, const char *isa) {
    double worst = 0;
    bool pad_ok = true, finite = true;
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->N; j++) {
            const double c0 = beta != 0 ? p->C0[(size_t)i * p->ldc + j] : 0;
            double ref = beta * c0, mag = fabs(beta * c0);
            for (int k = 0; k < p->K; k++) {
                const double x = op_a(p, i, k), y = op_b(p, k, j);
                ref += x * y;
                mag += fabs(x * y);
            }
            const double got = p->C[(size_t)i * p->ldc + j];
            if (!isfinite(got)) finite = false;
            /* float summation: error within about (K + 2) roundings of the magnitude */
            const double tol = (p->K + 2) * 0x1.0p-23 * mag + 1e-30;
            const double r = fabs(got - ref) / tol;
            if (r > worst) worst = r;
        }
        for (int j = p->N; j < p->ldc; j++)
            if (p->C[(size_t)i * p->ldc + j] != SENTINEL) pad_ok = false;
    }
    CHECK(finite && worst <= 1.0 && pad_ok, "%s ta=%d tb=%d beta=%g %dx%dx%d: error/tol %.3g%s%s", isa, p->ta,
          p->tb, beta, p->M, p->N, p->K, worst, pad_ok ? "" : ", padding overwritten", finite ? "" : ", not finite");
    return finite && worst <= 1.0 && pad_ok;
}

static const shape g_shapes[] = {
    {1, 1, 1},    {1, 7, 3},    {5, 1, 9},     {7, 13, 1},    {11, 17, 33},  {13, 31, 64},   {12, 32, 16},
    {6, 16, 70},  {25, 48, 37}, {33, 65, 2},   {70, 70, 70},  {69, 3, 45},   {3, 69, 255},   {47, 53, 257},
    {40, 600, 9}, {257, 129, 300}, {100, 37, 513}, {37, 700, 70}, {130, 1030, 20},
};

int main(void) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    slm_pool *pools[3] = {0};
    for (int t = 0; t < 3; t++) {
        const slm_status st = slm_pool_create(t + 1, &pools[t]);
        CHECK(st == SLM_OK, "pool of %d threads", t + 1);
        if (st != SLM_OK) return test_summary("sgemm");
    }
    int n_isa = 0;
    for (int s = 0; s < 3; s++) {
        if (!slm_sgemm_set_isa(isas[s])) {
            printf("sgemm: kernel set %s not available here, skipped\n", isas[s]);
            continue;
        }
        CHECK(strcmp(slm_sgemm_isa(), isas[s]) == 0, "slm_sgemm_isa reports %s", slm_sgemm_isa());
        n_isa++;
        for (size_t si = 0; si < sizeof g_shapes / sizeof g_shapes[0]; si++) {
            for (int t = 0; t < 4; t++) {
                problem p;
                problem_make(&p, t & 1, t >> 1, g_shapes[si]);
                for (int bi = 0; bi < 2; bi++) {
                    const float beta = (float)bi;
                    run(&p, pools[1], beta);
                    check_ref(&p, beta, isas[s]);
                    /* the same bits from any split */
                    const size_t bytes = sizeof(float) * (size_t)p.M * p.ldc;
                    float *c2 = malloc(bytes);
                    memcpy(c2, p.C, bytes);
                    bool same = true;
                    for (int pi = -1; pi < 3; pi++) {
                        if (pi == 1) continue;
                        run(&p, pi < 0 ? NULL : pools[pi], beta);
                        if (memcmp(c2, p.C, bytes) != 0) same = false;
                    }
                    CHECK(same, "%s ta=%d tb=%d beta=%g %dx%dx%d: results differ between 1, 2, 3 threads", isas[s],
                          p.ta, p.tb, beta, p.M, p.N, p.K);
                    free(c2);
                }
                problem_free(&p);
            }
        }
    }
    CHECK(n_isa >= 1, "the scalar kernel set is always available");
    CHECK(!slm_sgemm_set_isa("nonsense"), "unknown kernel set rejected");
    CHECK(slm_sgemm_set_isa(NULL), "back to the default");
    /* the default follows the qdot choice ($SLIMLM_ISA caps it; "ref" means scalar here) */
    const slm_isa d = slm_isa_default();
    const char *want = d == SLM_ISA_REF ? "scalar" : slm_isa_name(d);
    CHECK(strcmp(slm_sgemm_isa(), want) == 0, "default kernel set %s, expected %s", slm_sgemm_isa(), want);

    /* K = 0: C = beta C */
    float c[4] = {1, 2, 3, 4}, dummy = 0;
    slm_sgemm(pools[1], false, false, 2, 2, 0, &dummy, 1, &dummy, 1, 1.0f, c, 2);
    CHECK(c[0] == 1 && c[3] == 4, "K = 0, beta 1 keeps C");
    slm_sgemm(pools[1], false, false, 2, 2, 0, &dummy, 1, &dummy, 1, 0.0f, c, 2);
    CHECK(c[0] == 0 && c[3] == 0, "K = 0, beta 0 zeroes C");

    for (int t = 0; t < 3; t++) slm_pool_free(pools[t]);
    return test_summary("sgemm");
}
