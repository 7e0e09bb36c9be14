/* sgemm.c - training matrix products: dispatch and the scalar kernel (the reference the
 * vector kernels are tested against). Rows of C are split between threads; each element is
 * summed over k in order, so the result does not depend on the thread count. */
#include "sgemm.h"

#include <stddef.h>

typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float beta;
    float *C;
} sg_args;

static void sg_rows(void *arg, int ith, int nth) {
    const sg_args *a = arg;
    long lo, hi;
    slm_pool_split(a->M, ith, nth, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *c = a->C + (size_t)i * a->ldc;
        for (int j = 0; j < a->N; j++) {
            float s = 0;
            for (int k = 0; k < a->K; k++) {
                const float x = a->ta ? a->A[(size_t)k * a->lda + i] : a->A[(size_t)i * a->lda + k];
                const float y = a->tb ? a->B[(size_t)j * a->ldb + k] : a->B[(size_t)k * a->ldb + j];
                s += x * y;
            }
            c[j] = a->beta != 0 ? a->beta * c[j] + s : s;
        }
    }
}

void slm_sgemm(slm_pool *pool, bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc) {
    sg_args a = {ta, tb, M, N, K, lda, ldb, ldc, A, B, beta, C};
    if (M <= 0 || N <= 0) return;
    slm_pool_run(pool, sg_rows, &a);
}

const char *slm_sgemm_isa(void) { return "scalar"; }
