/* ops_avx512.c - AVX-512 F twin of the SwiGLU kernel (scalar twin in ops.c). */
#include <immintrin.h>

#include "ops.h"
#include "simd_exp.h"

/* silu(g) * u = g / (1 + exp(-g)) * u */
static inline __m512 swiglu16(__m512 g, __m512 u) {
    const __m512 e = slm_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void slm_swiglu_avx512(float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(gate + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(gate + i, m, swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
    }
}
