/* sgemm_impl.h - the micro-kernel interface shared by the sgemm driver and its SIMD files.
 *
 * The driver (sgemm.c) packs op(A) into panels of MR rows (a[k * MR + i], rows past the edge
 * zero) and op(B) into panels of NR columns (b[k * NR + j], columns past the edge zero), one
 * K block of kc values at a time. A micro-kernel multiplies one A panel by one B panel into
 * MR x NR accumulators, each an FMA chain over k = 0..kc-1 in order, and then combines them
 * with the mr x nr valid part of C:
 *   SG_STORE: C = acc    SG_ADD: C = C + acc    SG_BETA: C = beta * C + acc (multiply, then add)
 * Every element therefore gets the same arithmetic whatever tile or thread computes it. */
#ifndef SLM_SGEMM_IMPL_H
#define SLM_SGEMM_IMPL_H

enum { SG_STORE = 0, SG_ADD = 1, SG_BETA = 2 };

/* Bounds every kernel set stays within (the driver's fallback buffer is sized by them). */
enum { SG_KC_MAX = 256, SG_MR_MAX = 16, SG_NR_MAX = 32 };

typedef void (*sg_kernel_fn)(int kc, const float *a, const float *b, float *c, long ldc, int mr, int nr, int mode,
                             float beta);

/* dst[k * w + r] = src[r * lds + k] for rows r < rows (rows <= w) and k < kc; rows past `rows`
 * up to w are zero. Packs the operands that arrive transposed (op(A) from A [M][K], op(B) from
 * B [N][K]). */
typedef void (*sg_transpose_fn)(const float *src, long lds, int rows, int kc, int w, float *dst);

typedef struct {
    const char *name;  /* "avx2", "avx512" */
    int mr, nr;        /* micro-tile: rows of A panels, columns of B panels */
    int kc;            /* K block (fixed per kernel set: it fixes the summation order) */
    int nc;            /* columns of B packed at once (a multiple of nr) */
    sg_kernel_fn kernel;
    sg_transpose_fn transpose;
} sg_kernel_set;

#if defined(__x86_64__)
extern const sg_kernel_set slm_sgemm_avx2;
extern const sg_kernel_set slm_sgemm_avx512;
void slm_sgemm_transpose_avx2(const float *src, long lds, int rows, int kc, int w, float *dst);
#endif

#endif
