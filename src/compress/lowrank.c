/* lowrank.c - randomized truncated SVD (see lowrank.h). */
#include "lowrank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

/* Orthonormalize the k columns of q [n][k] in place (modified Gram-Schmidt, twice). A column
 * that is (numerically) in the span of the earlier ones becomes zero. col_norm0: [k] scratch. */
static void orthonormalize(double *q, int n, int k, double *col_norm0) {
    for (int j = 0; j < k; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += q[(size_t)i * k + j] * q[(size_t)i * k + j];
        col_norm0[j] = sqrt(s);
    }
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < k; j++) {
            for (int p = 0; p < j; p++) {
                double dot = 0;
                for (int i = 0; i < n; i++) dot += q[(size_t)i * k + p] * q[(size_t)i * k + j];
                for (int i = 0; i < n; i++) q[(size_t)i * k + j] -= dot * q[(size_t)i * k + p];
            }
            double s = 0;
            for (int i = 0; i < n; i++) s += q[(size_t)i * k + j] * q[(size_t)i * k + j];
            s = sqrt(s);
            const double inv = s > 1e-12 * (col_norm0[j] > 0 ? col_norm0[j] : 1) && s > 1e-300 ? 1.0 / s : 0.0;
            for (int i = 0; i < n; i++) q[(size_t)i * k + j] *= inv;
        }
}

/* y [rows][k] = d [rows][cols] x [cols][k] */
static void mul_dx(const float *d, int rows, int cols, const double *x, int k, double *y) {
    memset(y, 0, (size_t)rows * k * sizeof *y);
    for (int i = 0; i < rows; i++) {
        double *yr = y + (size_t)i * k;
        const float *dr = d + (size_t)i * cols;
        for (int c = 0; c < cols; c++) {
            const double v = dr[c];
            if (v == 0) continue;
            const double *xr = x + (size_t)c * k;
            for (int j = 0; j < k; j++) yr[j] += v * xr[j];
        }
    }
}

/* z [cols][k] = d^T [cols][rows] q [rows][k] */
static void mul_dtq(const float *d, int rows, int cols, const double *q, int k, double *z) {
    memset(z, 0, (size_t)cols * k * sizeof *z);
    for (int i = 0; i < rows; i++) {
        const float *dr = d + (size_t)i * cols;
        const double *qr = q + (size_t)i * k;
        for (int c = 0; c < cols; c++) {
            const double v = dr[c];
            if (v == 0) continue;
            double *zr = z + (size_t)c * k;
            for (int j = 0; j < k; j++) zr[j] += v * qr[j];
        }
    }
}

void slm_sym_eigen(double *m, int n, double *w, double *v) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) v[(size_t)i * n + j] = i == j;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++) {
            diag += m[(size_t)i * n + i] * m[(size_t)i * n + i];
            for (int j = i + 1; j < n; j++) off += m[(size_t)i * n + j] * m[(size_t)i * n + j];
        }
        if (off <= 1e-30 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                const double apq = m[(size_t)p * n + q];
                if (fabs(apq) < 1e-300) continue;
                const double app = m[(size_t)p * n + p], aqq = m[(size_t)q * n + q];
                const double theta = (aqq - app) / (2 * apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                const double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    const double mkp = m[(size_t)k * n + p], mkq = m[(size_t)k * n + q];
                    m[(size_t)k * n + p] = c * mkp - s * mkq;
                    m[(size_t)k * n + q] = s * mkp + c * mkq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    const double mpk = m[(size_t)p * n + k], mqk = m[(size_t)q * n + k];
                    m[(size_t)p * n + k] = c * mpk - s * mqk;
                    m[(size_t)q * n + k] = s * mpk + c * mqk;
                }
                for (int k = 0; k < n; k++) {
                    const double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                    v[(size_t)k * n + p] = c * vkp - s * vkq;
                    v[(size_t)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    /* sort by decreasing eigenvalue (selection sort; n is small) */
    for (int i = 0; i < n; i++) w[i] = m[(size_t)i * n + i];
    for (int i = 0; i < n; i++) {
        int best = i;
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[best]) best = j;
        if (best != i) {
            double t = w[i];
            w[i] = w[best];
            w[best] = t;
            for (int k = 0; k < n; k++) {
                t = v[(size_t)k * n + i];
                v[(size_t)k * n + i] = v[(size_t)k * n + best];
                v[(size_t)k * n + best] = t;
            }
        }
    }
}

slm_status slm_lowrank_svd(const float *d, int rows, int cols, int rank, uint64_t seed, float *b, float *a,
                           double *s_out) {
    const int mn = rows < cols ? rows : cols;
    if (rows < 1 || cols < 1 || rank < 1 || rank > mn)
        return slm_error(SLM_ERR_ARG, "svd: rank %d of a %d x %d matrix", rank, rows, cols);
    int k = rank + 8;
    if (k > mn) k = mn;
    double *q = malloc((size_t)rows * k * sizeof *q);
    double *z = malloc((size_t)cols * k * sizeof *z);
    double *bs = malloc((size_t)k * cols * sizeof *bs); /* Q^T D [k][cols] */
    double *g = malloc((size_t)k * k * sizeof *g);
    double *w = malloc((size_t)k * sizeof *w);
    double *v = malloc((size_t)k * k * sizeof *v);
    double *cn = malloc((size_t)k * sizeof *cn);
    if (!q || !z || !bs || !g || !w || !v || !cn) {
        free(q), free(z), free(bs), free(g), free(w), free(v), free(cn);
        return slm_error(SLM_ERR_NOMEM, "svd: out of memory (%d x %d, rank %d)", rows, cols, rank);
    }
    uint64_t st = seed ^ 0x5eedULL;
    for (size_t i = 0; i < (size_t)cols * k; i++) z[i] = slm_rng_normal(&st);
    mul_dx(d, rows, cols, z, k, q);
    orthonormalize(q, rows, k, cn);
    for (int it = 0; it < 2; it++) {
        mul_dtq(d, rows, cols, q, k, z);
        orthonormalize(z, cols, k, cn);
        mul_dx(d, rows, cols, z, k, q);
        orthonormalize(q, rows, k, cn);
    }
    /* bs = Q^T D, i.e. bs^T = D^T Q = z */
    mul_dtq(d, rows, cols, q, k, z);
    for (int i = 0; i < k; i++)
        for (int c = 0; c < cols; c++) bs[(size_t)i * cols + c] = z[(size_t)c * k + i];
    /* G = bs bs^T = W diag(s^2) W^T */
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) {
            double acc = 0;
            const double *ri = bs + (size_t)i * cols, *rj = bs + (size_t)j * cols;
            for (int c = 0; c < cols; c++) acc += ri[c] * rj[c];
            g[(size_t)i * k + j] = g[(size_t)j * k + i] = acc;
        }
    slm_sym_eigen(g, k, w, v);
    /* D ~= (Q W) diag(s) (diag(1/s) W^T bs): b = Q W diag(sqrt s), a = diag(1/sqrt s) W^T bs */
    for (int r = 0; r < rank; r++) {
        const double sv = w[r] > 0 ? sqrt(w[r]) : 0;
        if (s_out) s_out[r] = sv;
        const double hs = sqrt(sv), inv = sv > 0 ? 1.0 / hs : 0;
        for (int i = 0; i < rows; i++) {
            double acc = 0;
            for (int j = 0; j < k; j++) acc += q[(size_t)i * k + j] * v[(size_t)j * k + r];
            b[(size_t)i * rank + r] = (float)(acc * hs);
        }
        for (int c = 0; c < cols; c++) {
            double acc = 0;
            for (int j = 0; j < k; j++) acc += v[(size_t)j * k + r] * bs[(size_t)j * cols + c];
            a[(size_t)r * cols + c] = (float)(acc * inv);
        }
    }
    free(q), free(z), free(bs), free(g), free(w), free(v), free(cn);
    return SLM_OK;
}
