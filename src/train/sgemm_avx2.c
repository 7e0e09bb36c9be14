/* sgemm_avx2.c - AVX2+FMA micro-kernel of the training sgemm: 6 rows x 16 columns, 12 ymm
 * accumulators, one FMA chain per element over k (see sgemm_impl.h for the contract). */
#include <immintrin.h>

#include "sgemm_impl.h"

enum { MR = 6, NR = 16 };

static inline __m256i lane_mask(int n) { /* lanes [0, n) set, n in 0..8 */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* The first n (>= 1) lanes of c (all 8 when n >= 8; m masks them otherwise) combined with acc. */
static inline void combine(float *c, int n, __m256i m, __m256 acc, int mode, __m256 beta) {
    if (n >= 8) {
        if (mode == SG_STORE) {
            _mm256_storeu_ps(c, acc);
            return;
        }
        __m256 old = _mm256_loadu_ps(c);
        if (mode == SG_BETA) old = _mm256_mul_ps(old, beta);
        _mm256_storeu_ps(c, _mm256_add_ps(old, acc));
        return;
    }
    if (mode == SG_STORE) {
        _mm256_maskstore_ps(c, m, acc);
        return;
    }
    __m256 old = _mm256_maskload_ps(c, m);
    if (mode == SG_BETA) old = _mm256_mul_ps(old, beta);
    _mm256_maskstore_ps(c, m, _mm256_add_ps(old, acc));
}

static void kernel_6x16(int kc, const float *a, const float *b, float *c, long ldc, int mr, int nr, int mode,
                        float beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    const __m256i m0 = lane_mask(nr < 8 ? nr : 8), m1 = lane_mask(nr - 8 < 0 ? 0 : nr - 8 < 8 ? nr - 8 : 8);
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            combine(c + i * ldc, nr, m0, acc[i][0], mode, vb);
            if (nr > 8) combine(c + i * ldc + 8, nr - 8, m1, acc[i][1], mode, vb);
        }
    }
}

/* 8 rows x 8 k of src into 8 columns of dst (column c at dst + c * w). */
static inline __attribute__((always_inline)) void transpose_8x8(const float *src, long lds, float *dst, int w) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) {
        r[i] = _mm256_loadu_ps(src + i * lds);
        _mm_prefetch((const char *)(src + i * lds + 64), _MM_HINT_T0);
    }
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * w, _mm256_permute2f128_ps(u[c], u[c + 4], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * w, _mm256_permute2f128_ps(u[c], u[c + 4], 0x31));
    }
}

/* 4 rows x 8 k of src into 8 columns of 4 (column c at dst + c * w). */
static inline __attribute__((always_inline)) void transpose_4x8(const float *src, long lds, float *dst, int w) {
    for (int h = 0; h < 8; h += 4) {
        __m128 r0 = _mm_loadu_ps(src + h), r1 = _mm_loadu_ps(src + lds + h);
        __m128 r2 = _mm_loadu_ps(src + 2 * lds + h), r3 = _mm_loadu_ps(src + 3 * lds + h);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + (h + 0) * w, r0);
        _mm_storeu_ps(dst + (h + 1) * w, r1);
        _mm_storeu_ps(dst + (h + 2) * w, r2);
        _mm_storeu_ps(dst + (h + 3) * w, r3);
    }
}

void slm_sgemm_transpose_avx2(const float *src, long lds, int rows, int kc, int w, float *dst) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        float *d = dst + (long)k * w;
        const float *s = src + k;
        int r = 0;
        for (; r + 8 <= rows; r += 8) transpose_8x8(s + r * lds, lds, d + r, w);
        for (; r + 4 <= rows; r += 4) transpose_4x8(s + r * lds, lds, d + r, w);
        for (; r < rows; r++)
            for (int c = 0; c < 8; c++) d[c * w + r] = s[r * lds + c];
        for (int c = 0; c < 8; c++)
            for (int z = rows; z < w; z++) d[c * w + z] = 0;
    }
    for (; k < kc; k++) {
        float *d = dst + (long)k * w;
        for (int r = 0; r < rows; r++) d[r] = src[r * lds + k];
        for (int r = rows; r < w; r++) d[r] = 0;
    }
}

const sg_kernel_set slm_sgemm_avx2 = {"avx2", MR, NR, 256, 768, kernel_6x16, slm_sgemm_transpose_avx2};
