/* test_lowrank.c - truncated SVD (compress/lowrank) against matrices with known singular
 * values: D = U diag(s) V^T from random orthonormal U, V. Checks the singular values, the
 * optimal truncation error (Eckart-Young: ||D - D_r||_F^2 = sum of the dropped s^2), exact
 * reconstruction at full rank, a zero matrix, and the symmetric eigen solver. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "compress/lowrank.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* q [n][k] with orthonormal columns (Gram-Schmidt of random columns), k <= n */
static void rand_orth(double *q, int n, int k) {
    for (int i = 0; i < n * k; i++) q[i] = nrand();
    for (int j = 0; j < k; j++) {
        for (int p = 0; p < j; p++) {
            double d = 0;
            for (int i = 0; i < n; i++) d += q[i * k + p] * q[i * k + j];
            for (int i = 0; i < n; i++) q[i * k + j] -= d * q[i * k + p];
        }
        double s = 0;
        for (int i = 0; i < n; i++) s += q[i * k + j] * q[i * k + j];
        for (int i = 0; i < n; i++) q[i * k + j] /= sqrt(s);
    }
}

static void check_case(int rows, int cols, int rank) {
    const int mn = rows < cols ? rows : cols;
    double *u = malloc(sizeof(double) * rows * mn), *v = malloc(sizeof(double) * cols * mn), *s = malloc(sizeof(double) * mn);
    float *d = malloc(sizeof(float) * rows * cols), *b = malloc(sizeof(float) * rows * rank), *a = malloc(sizeof(float) * rank * cols);
    double *sv = malloc(sizeof(double) * rank);
    rand_orth(u, rows, mn);
    rand_orth(v, cols, mn);
    for (int i = 0; i < mn; i++) s[i] = 10.0 * pow(0.8, i); /* decreasing, distinct */
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double acc = 0;
            for (int k = 0; k < mn; k++) acc += u[i * mn + k] * s[k] * v[j * mn + k];
            d[i * cols + j] = (float)acc;
        }
    CHECK(slm_lowrank_svd(d, rows, cols, rank, 7, b, a, sv) == SLM_OK, "svd %dx%d r%d: %s", rows, cols, rank, slm_last_error());
    double maxrel = 0;
    for (int k = 0; k < rank; k++) maxrel = fmax(maxrel, fabs(sv[k] - s[k]) / s[k]);
    CHECK(maxrel < 1e-4, "%dx%d rank %d: singular values off by %.3g (relative)", rows, cols, rank, maxrel);
    double e2 = 0, tail = 0, tot = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double acc = 0;
            for (int k = 0; k < rank; k++) acc += (double)b[i * rank + k] * a[k * cols + j];
            e2 += (d[i * cols + j] - acc) * (d[i * cols + j] - acc);
            tot += (double)d[i * cols + j] * d[i * cols + j];
        }
    for (int k = rank; k < mn; k++) tail += s[k] * s[k];
    if (rank == mn) CHECK(sqrt(e2 / tot) < 1e-5, "%dx%d full rank: relative error %.3g", rows, cols, sqrt(e2 / tot));
    else CHECK(fabs(e2 - tail) <= 1e-3 * tail + 1e-9, "%dx%d rank %d: error^2 %.6g vs optimal %.6g", rows, cols, rank, e2, tail);
    free(u), free(v), free(s), free(d), free(b), free(a), free(sv);
}

int main(void) {
    check_case(20, 12, 3);
    check_case(12, 20, 5);
    check_case(33, 17, 17);  /* full rank */
    check_case(16, 48, 16);  /* full rank, wide */
    check_case(64, 40, 10);
    /* a zero matrix: zero factors, no NaN */
    {
        float d[6 * 5] = {0}, b[6 * 2], a[2 * 5];
        double sv[2];
        CHECK(slm_lowrank_svd(d, 6, 5, 2, 1, b, a, sv) == SLM_OK, "zero matrix");
        bool finite = true, zero = true;
        for (int i = 0; i < 12; i++) finite &= isfinite(b[i]), zero &= b[i] * a[i % 10] == 0;
        CHECK(finite && zero && sv[0] == 0, "zero matrix: factors finite and zero (sv %g)", sv[0]);
    }
    /* bad rank */
    {
        float d[4] = {1, 2, 3, 4}, b[8], a[8];
        CHECK(slm_lowrank_svd(d, 2, 2, 3, 1, b, a, NULL) == SLM_ERR_ARG, "rank above min(rows, cols) refused");
        CHECK(slm_lowrank_svd(d, 2, 2, 0, 1, b, a, NULL) == SLM_ERR_ARG, "rank 0 refused");
    }
    /* eigen: A = Q diag(w) Q^T */
    {
        enum { N = 9 };
        double q[N * N], m[N * N], w[N], v[N * N], want[N];
        rand_orth(q, N, N);
        for (int i = 0; i < N; i++) want[i] = N - i + 0.5 * (i % 2) - 3;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double acc = 0;
                for (int k = 0; k < N; k++) acc += q[i * N + k] * want[k] * q[j * N + k];
                m[i * N + j] = acc;
            }
        slm_sym_eigen(m, N, w, v);
        /* sorted decreasing want */
        double sorted[N];
        memcpy(sorted, want, sizeof sorted);
        for (int i = 0; i < N; i++)
            for (int j = i + 1; j < N; j++)
                if (sorted[j] > sorted[i]) { double t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t; }
        double err = 0;
        for (int i = 0; i < N; i++) err = fmax(err, fabs(w[i] - sorted[i]));
        CHECK(err < 1e-10, "eigenvalues off by %.3g", err);
    }
    return test_summary("lowrank");
}
