/* lowrank.h - truncated singular value decomposition of a dense matrix, for low-rank
 * corrections (parameter sharing's per-layer deltas).
 *
 * Randomized subspace iteration (Halko, Martinsson and Tropp 2011): a Gaussian sketch of the
 * column space, two power iterations with re-orthonormalization, then the exact SVD of the
 * small projected matrix through a Jacobi eigen-decomposition. In double precision. With
 * rank >= min(rows, cols) the factors reproduce the matrix to rounding. */
#ifndef SLM_LOWRANK_H
#define SLM_LOWRANK_H

#include <stdint.h>

#include "../core/status.h"

/* d [rows][cols] ~= b a with b [rows][rank] (U S^1/2) and a [rank][cols] (S^1/2 V^T), the
 * rank largest singular values; s (optional, [rank]) gets them in decreasing order. rank is
 * clipped to min(rows, cols) by the caller's choice of buffers: pass rank <= min(rows, cols).
 * seed fixes the sketch. */
slm_status slm_lowrank_svd(const float *d, int rows, int cols, int rank, uint64_t seed, float *b, float *a,
                           double *s);

/* Jacobi eigen-decomposition of the symmetric n x n matrix m (destroyed): eigenvalues to w
 * in decreasing order, eigenvectors as the COLUMNS of v [n][n]. */
void slm_sym_eigen(double *m, int n, double *w, double *v);

#endif
