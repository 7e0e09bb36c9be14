/* sgemm_avx512.c - AVX-512 micro-kernel of the training sgemm: 12 rows x 32 columns, 24 zmm
 * accumulators, one FMA chain per element over k (see sgemm_impl.h for the contract). */
#include <immintrin.h>

#include "sgemm_impl.h"

enum { MR = 12, NR = 32 };

static inline void combine(float *c, __mmask16 m, __m512 acc, int mode, __m512 beta) {
    if (mode == SG_STORE) {
        _mm512_mask_storeu_ps(c, m, acc);
        return;
    }
    __m512 old = _mm512_maskz_loadu_ps(m, c);
    if (mode == SG_BETA) old = _mm512_mul_ps(old, beta);
    _mm512_mask_storeu_ps(c, m, _mm512_add_ps(old, acc));
}

static void kernel_12x32(int kc, const float *a, const float *b, float *c, long ldc, int mr, int nr, int mode,
                         float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            combine(c + i * ldc, m0, acc[i][0], mode, vb);
            if (nr > 16) combine(c + i * ldc + 16, m1, acc[i][1], mode, vb);
        }
    }
}

const sg_kernel_set slm_sgemm_avx512 = {"avx512", MR, NR, 256, 768, kernel_12x32, slm_sgemm_transpose_avx2};
