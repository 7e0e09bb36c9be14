/* flash_attn_avx512.c - AVX-512 F/VL twin of the attention row kernel: one online-softmax
 * step over a key/value tile. Any head size: 16 columns per vector, a masked vector for the
 * rest. Scalar twin: slm_fa_row_ref in flash_attn.c. */
#include <immintrin.h>
#include <math.h>

#include "flash_attn.h"
#include "simd_exp.h"

/* Fold a 512-bit accumulator to 256 bits (sum of its halves). */
static inline __m256 half(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* [sum a0, sum a1, ..., sum a7] */
static inline __m256 fold8(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5, __m512 a6, __m512 a7) {
    const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(half(a0), half(a1)), _mm256_hadd_ps(half(a2), half(a3)));
    const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(half(a4), half(a5)), _mm256_hadd_ps(half(a6), half(a7)));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* q . k over hd floats: full vectors, then the masked tail (mask tm, columns from full*16). */
static inline float dot(const float *q, const float *k, int full, __mmask16 tm) {
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < full; i++) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * i), _mm512_loadu_ps(k + 16 * i), acc);
    if (tm)
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, q + 16 * full), _mm512_maskz_loadu_ps(tm, k + 16 * full), acc);
    return _mm512_reduce_add_ps(acc);
}

/* Online-softmax update of one row from its scores s[0..n): the new max m', p = exp(s - m')
 * in place, l = l * alpha + sum p, m = m'; returns alpha = exp(m - m'), the factor for o. */
static inline float softmax_step(float *s, int n, float *m, float *l) {
    /* running max */
    __m512 vmax = _mm512_set1_ps(*m);
    int c;
    for (c = 0; c + 16 <= n; c += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + c));
    const __mmask16 nm = (__mmask16)((1u << (n - c)) - 1);
    if (nm) vmax = _mm512_mask_max_ps(vmax, nm, vmax, _mm512_maskz_loadu_ps(nm, s + c));
    const float mx = _mm512_reduce_max_ps(vmax);
    const float alpha = expf(*m - mx); /* 0 on the first tile (m = -inf) */

    /* p = exp(s - mx) and its sum */
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (c = 0; c + 16 <= n; c += 16) {
        const __m512 p = slm_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + c), vmx));
        _mm512_storeu_ps(s + c, p);
        vsum = _mm512_add_ps(vsum, p);
    }
    if (nm) {
        const __m512 p = _mm512_maskz_mov_ps(nm, slm_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(nm, s + c), vmx)));
        _mm512_mask_storeu_ps(s + c, nm, p);
        vsum = _mm512_add_ps(vsum, p);
    }
    const float sum = _mm512_reduce_add_ps(vsum);
    *l = *l * alpha + sum;
    *m = mx;
    return alpha;
}

void slm_fa_row_avx512(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                       float *o) {
    if (n <= 0) return;
    const int full = hd / 16;
    const __mmask16 tm = (__mmask16)((1u << (hd % 16)) - 1);

    /* scores, eight keys at a time sharing the loads of q */
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        const float *k0 = K + (size_t)c * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        const float *k4 = k3 + hd, *k5 = k4 + hd, *k6 = k5 + hd, *k7 = k6 + hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < hd; d += 16) {
            /* the last step is masked when hd % 16 != 0 */
            const __mmask16 mk = d + 16 <= hd ? (__mmask16)0xffff : tm;
            const __m512 qv = _mm512_maskz_loadu_ps(mk, q + d);
            a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k0 + d), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k1 + d), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k2 + d), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k3 + d), a3);
            a4 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k4 + d), a4);
            a5 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k5 + d), a5);
            a6 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k6 + d), a6);
            a7 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k7 + d), a7);
        }
        _mm256_storeu_ps(s + c, fold8(a0, a1, a2, a3, a4, a5, a6, a7));
    }
    for (; c < n; c++) s[c] = dot(q, K + (size_t)c * hd, full, tm);

    const float alpha = softmax_step(s, n, m, l);

    /* o = alpha * o + sum_c p[c] V[c]: 64 output columns at a time, even and odd keys in
     * separate accumulators (eight independent FMA chains) */
    const __m512 va = _mm512_set1_ps(alpha);
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        __m512 e0 = _mm512_mul_ps(va, _mm512_loadu_ps(o + d)), e1 = _mm512_mul_ps(va, _mm512_loadu_ps(o + d + 16));
        __m512 e2 = _mm512_mul_ps(va, _mm512_loadu_ps(o + d + 32)), e3 = _mm512_mul_ps(va, _mm512_loadu_ps(o + d + 48));
        __m512 f0 = _mm512_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
        for (c = 0; c + 2 <= n; c += 2) {
            const __m512 p0 = _mm512_set1_ps(s[c]), p1 = _mm512_set1_ps(s[c + 1]);
            const float *v0 = V + (size_t)c * hd + d, *v1 = v0 + hd;
            e0 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0), e0);
            e1 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16), e1);
            e2 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 32), e2);
            e3 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 48), e3);
            f0 = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1), f0);
            f1 = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16), f1);
            f2 = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 32), f2);
            f3 = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 48), f3);
        }
        if (c < n) {
            const __m512 p0 = _mm512_set1_ps(s[c]);
            const float *v0 = V + (size_t)c * hd + d;
            e0 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0), e0);
            e1 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16), e1);
            e2 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 32), e2);
            e3 = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 48), e3);
        }
        _mm512_storeu_ps(o + d, _mm512_add_ps(e0, f0));
        _mm512_storeu_ps(o + d + 16, _mm512_add_ps(e1, f1));
        _mm512_storeu_ps(o + d + 32, _mm512_add_ps(e2, f2));
        _mm512_storeu_ps(o + d + 48, _mm512_add_ps(e3, f3));
    }
    for (; d < hd; d += 16) {
        const __mmask16 mk = hd - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hd - d)) - 1);
        __m512 e = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mk, o + d));
        for (c = 0; c < n; c++)
            e = _mm512_fmadd_ps(_mm512_set1_ps(s[c]), _mm512_maskz_loadu_ps(mk, V + (size_t)c * hd + d), e);
        _mm512_mask_storeu_ps(o + d, mk, e);
    }
}
