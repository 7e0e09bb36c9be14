/* sgemm.h - single-precision matrix products for training, threaded over a pool.
 *
 *   C[M][N] = op(A) op(B) + beta * C       (row-major; beta 0 or 1)
 *
 * op(A) is A [M][K] (ta false) or A^T with A stored [K][M] (ta true); op(B) is B [K][N] (tb
 * false) or B^T with B stored [N][K] (tb true). lda/ldb/ldc are row strides in elements.
 * The three shapes training uses: forward out = in W^T (ta 0, tb 1), input gradient
 * din += dout W (0, 0), weight gradient dW += dout^T in (1, 0).
 *
 * Results are bit-identical for any thread count: each element of C is summed in a fixed
 * order over k that does not depend on the split, so a resumed run reproduces an
 * uninterrupted one. Kernels: scalar, AVX2+FMA, AVX-512 (cpuid dispatch once, like qdot). */
#ifndef SLM_SGEMM_H
#define SLM_SGEMM_H

#include <stdbool.h>

#include "../core/threadpool.h"

void slm_sgemm(slm_pool *pool, bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);

/* The kernel set in use ("scalar", "avx2", "avx512"); $SLIMLM_ISA=scalar|avx2|avx512 caps it. */
const char *slm_sgemm_isa(void);

/* Use the kernel set `name` ("scalar", "avx2", "avx512") from now on, for every caller;
 * NULL goes back to the default. False (nothing changed) if unknown or not runnable here. */
bool slm_sgemm_set_isa(const char *name);

#endif
