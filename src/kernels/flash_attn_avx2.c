/* flash_attn_avx2.c - AVX2 + FMA + F16C kernels of the tiled attention: one online-softmax row
 * step over a key/value tile, vector exp, f16 row conversion. Scalar twins in flash_attn.c. */
#include <immintrin.h>
#include <math.h>

#include "flash_attn.h"
#include "simd_exp.h"

void slm_fa_exp_avx2(float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, slm_exp256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        for (int j = i; j < n; j++) t[j - i] = x[j];
        _mm256_storeu_ps(t, slm_exp256(_mm256_loadu_ps(t)));
        for (int j = i; j < n; j++) x[j] = t[j - i];
    }
}

void slm_fa_f16_to_f32_avx2(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float dot(const float *q, const float *k, int hd) {
    __m256 acc = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= hd; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
    float s = hsum256(acc);
    for (; d < hd; d++) s += q[d] * k[d];
    return s;
}

void slm_fa_row_avx2(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                     float *o) {
    if (n <= 0) return;
    /* scores, four keys at a time sharing the loads of q */
    int c = 0;
    if (hd % 8 == 0)
        for (; c + 4 <= n; c += 4) {
            const float *k0 = K + (size_t)c * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int d = 0; d < hd; d += 8) {
                const __m256 qv = _mm256_loadu_ps(q + d);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
            }
            const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_storeu_ps(s + c, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
        }
    for (; c < n; c++) s[c] = dot(q, K + (size_t)c * hd, hd);

    float mx = *m;
    for (c = 0; c < n; c++)
        if (s[c] > mx) mx = s[c];
    const float alpha = expf(*m - mx); /* 0 on the first tile (m = -inf) */

    /* p = exp(s - mx) and its sum */
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    for (c = 0; c + 8 <= n; c += 8) {
        const __m256 p = slm_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + c), vmx));
        _mm256_storeu_ps(s + c, p);
        vsum = _mm256_add_ps(vsum, p);
    }
    float sum = hsum256(vsum);
    if (c < n) {
        for (int j = c; j < n; j++) s[j] -= mx;
        slm_fa_exp_avx2(s + c, n - c);
        for (int j = c; j < n; j++) sum += s[j];
    }

    /* o = alpha * o + sum_c p[c] V[c], 32 output columns at a time in registers */
    const __m256 va = _mm256_set1_ps(alpha);
    int d = 0;
    for (; d + 32 <= hd; d += 32) {
        __m256 o0 = _mm256_mul_ps(va, _mm256_loadu_ps(o + d)), o1 = _mm256_mul_ps(va, _mm256_loadu_ps(o + d + 8));
        __m256 o2 = _mm256_mul_ps(va, _mm256_loadu_ps(o + d + 16)), o3 = _mm256_mul_ps(va, _mm256_loadu_ps(o + d + 24));
        for (c = 0; c < n; c++) {
            const __m256 p = _mm256_broadcast_ss(s + c);
            const float *v = V + (size_t)c * hd + d;
            o0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v), o0);
            o1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8), o1);
            o2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 16), o2);
            o3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 24), o3);
        }
        _mm256_storeu_ps(o + d, o0);
        _mm256_storeu_ps(o + d + 8, o1);
        _mm256_storeu_ps(o + d + 16, o2);
        _mm256_storeu_ps(o + d + 24, o3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 o0 = _mm256_mul_ps(va, _mm256_loadu_ps(o + d));
        for (c = 0; c < n; c++) o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + c), _mm256_loadu_ps(V + (size_t)c * hd + d), o0);
        _mm256_storeu_ps(o + d, o0);
    }
    for (; d < hd; d++) {
        float acc = alpha * o[d];
        for (c = 0; c < n; c++) acc += s[c] * V[(size_t)c * hd + d];
        o[d] = acc;
    }
    *l = *l * alpha + sum;
    *m = mx;
}
