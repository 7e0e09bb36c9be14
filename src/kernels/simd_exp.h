/* simd_exp.h - vector exp for the AVX2 / AVX-512 kernel files (internal; include only from
 * files compiled with the matching instruction-set flags).
 *
 * exp(x) for x in about [-87.3, 88]: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-7
 * polynomial (minimax coefficients of the classic single-precision expf), times 2^n; about
 * 2 ulp. Inputs are clamped to that range: below -87.3 the result is 2^-126 * exp(r) (about
 * 1e-38, never 0), above 88 it is exp(88). */
#ifndef SLM_SIMD_EXP_H
#define SLM_SIMD_EXP_H

#include <immintrin.h>

#define SLM_EXP_HI 88.0f
#define SLM_EXP_LO -87.33654f
#define SLM_EXP_LOG2E 1.44269504088896341f
#define SLM_EXP_LN2_HI 0.693359375f
#define SLM_EXP_LN2_LO -2.12194440e-4f
#define SLM_EXP_P0 1.9875691500e-4f
#define SLM_EXP_P1 1.3981999507e-3f
#define SLM_EXP_P2 8.3334519073e-3f
#define SLM_EXP_P3 4.1665795894e-2f
#define SLM_EXP_P4 1.6666665459e-1f
#define SLM_EXP_P5 5.0000001201e-1f

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 slm_exp256(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(SLM_EXP_HI));
    x = _mm256_max_ps(x, _mm256_set1_ps(SLM_EXP_LO));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SLM_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SLM_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SLM_EXP_LN2_LO), r);
    __m256 y = _mm256_set1_ps(SLM_EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(SLM_EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(SLM_EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(SLM_EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(SLM_EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(SLM_EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#if defined(__AVX512F__)
static inline __m512 slm_exp512(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(SLM_EXP_HI));
    x = _mm512_max_ps(x, _mm512_set1_ps(SLM_EXP_LO));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SLM_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SLM_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SLM_EXP_LN2_LO), r);
    __m512 y = _mm512_set1_ps(SLM_EXP_P0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(SLM_EXP_P1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(SLM_EXP_P2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(SLM_EXP_P3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(SLM_EXP_P4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(SLM_EXP_P5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}
#endif

#endif
