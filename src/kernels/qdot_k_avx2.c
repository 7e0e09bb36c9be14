/* qdot_k_avx2.c - AVX2 dot products of the k-quant weight formats (Q2_K .. Q6_K) with Q8_K
 * activations, and an AVX2 f32 -> Q8_K quantizer. Compiled with -mavx2 -mfma -mf16c and used
 * only after a cpuid check; the scalar twins are in qdot_k_scalar.c.
 *
 * Every kernel follows the same pattern per 256-element super-block: weight quants are
 * unpacked to unsigned bytes, _mm256_maddubs_epi16 multiplies them with the signed activation
 * bytes (pair sums stay below 2^15: at most 2 * 63 * 127), _mm256_madd_epi16 applies the
 * sub-block's integer scale and widens to int32, and the block's int32 sums are converted to
 * float once and accumulated with the block's float scale. Offsets (the mins of Q2_K/Q4_K/
 * Q5_K, the -32 of Q6_K, the -4 of Q3_K) are applied through the activation block sums.
 * The integer sums are exactly those of the scalar twin; only the float summation order
 * differs. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qdot_impl.h"

enum { QK_K = 256 };

/* Byte offsets of the block fields (GGUF layouts; see src/core/dtype.c). */
enum {
    Q2_SCALES = 0, Q2_QS = 16, Q2_D = 80, Q2_DMIN = 82, Q2_BYTES = 84,
    Q3_HMASK = 0, Q3_QS = 32, Q3_SCALES = 96, Q3_D = 108, Q3_BYTES = 110,
    Q4_D = 0, Q4_DMIN = 2, Q4_SCALES = 4, Q4_QS = 16, Q4_BYTES = 144,
    Q5_D = 0, Q5_DMIN = 2, Q5_SCALES = 4, Q5_QH = 16, Q5_QS = 48, Q5_BYTES = 176,
    Q6_QL = 0, Q6_QH = 128, Q6_SCALES = 192, Q6_D = 208, Q6_BYTES = 210,
    Q8_D = 0, Q8_QS = 4, Q8_BSUMS = 260, Q8_BYTES = 292,
};

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

static inline float load_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

static inline __m256i loadu256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i loadu128(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Shuffle masks for the 16-element sub-block formats: pair p puts scale byte 2p in bytes 0..7
 * and scale byte 2p+1 in bytes 8..15, so that after widening to int16 the low 128-bit lane
 * holds the scale of the first 16 elements of a 32-element group and the high lane the next. */
static const uint8_t k_pair_shuffle[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* int16 scale vector for 32-element group p of a 16-sub-block format (scales: 16 int8). */
static inline __m256i pair_scales(__m128i scales, int p) {
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, loadu128(k_pair_shuffle[p])));
}

/* ---- f32 -> Q8_K (same rule and same bytes as the scalar quantizer) ----------------------- */

static void q8_k_block_quant(const float *x, uint8_t *dst) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amaxv = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8) /* max_ps returns its second operand on NaN: NaN is skipped */
        amaxv = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), amaxv);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amaxv), _mm256_extractf128_ps(amaxv, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);

    float iscale = 0.0f;
    if (amax != 0.0f) {
        /* the first element of largest magnitude decides the sign */
        const __m256 av = _mm256_set1_ps(amax);
        int first = 0;
        for (int j = 0; j < QK_K; j += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j));
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(a, av, _CMP_EQ_OQ));
            if (mask) {
                first = j + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        iscale = -127.0f / x[first];
    }
    if (amax == 0.0f || isinf(iscale)) {
        memset(dst, 0, Q8_BYTES);
        return;
    }
    const __m256 isv = _mm256_set1_ps(iscale);

    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i part[8]; /* per 32 quants: int32 sums of 4 consecutive quants (lane-interleaved) */
    for (int j = 0; j < QK_K; j += 32) {
        __m256i iv[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), isv);
            v = _mm256_max_ps(v, lo); /* NaN -> -127 */
            v = _mm256_min_ps(v, hi);
            v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            iv[k] = _mm256_cvtps_epi32(v);
        }
        const __m256i p01 = _mm256_packs_epi32(iv[0], iv[1]);
        const __m256i p23 = _mm256_packs_epi32(iv[2], iv[3]);
        const __m256i q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), order);
        _mm256_storeu_si256((__m256i *)(dst + Q8_QS + j), q);
        part[j / 32] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
    }
    /* part[k] lanes 0..3 hold bsum 2k in four pieces, lanes 4..7 bsum 2k+1 */
    __m256i bs[2];
    for (int h = 0; h < 2; h++) {
        const __m256i *p = part + 4 * h;
        const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        bs[h] = _mm256_permutevar8x32_epi32(t, order);
    }
    const __m256i bsums = _mm256_permute4x64_epi64(_mm256_packs_epi32(bs[0], bs[1]), 0xd8);
    _mm256_storeu_si256((__m256i *)(dst + Q8_BSUMS), bsums);
    const float d = 1.0f / iscale;
    memcpy(dst + Q8_D, &d, sizeof d);
}

static void quant_q8_k(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK_K <= n; i += QK_K, p += Q8_BYTES) q8_k_block_quant(x + i, p);
}

/* ---- Q2_K --------------------------------------------------------------------------------- */

static float vec_dot_q2_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q2_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const uint8_t *yq = x + Q8_QS;
        const __m128i sc = loadu128(w + Q2_SCALES);
        const __m128i scl = _mm_and_si128(sc, m4);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i summ = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), mins);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q2_DMIN)), _mm256_cvtepi32_ps(summ), accm);

        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu256(w + Q2_QS + 32 * h);
            #pragma GCC unroll 8
            for (int s = 0; s < 4; s++) { /* elements 128h + 32s + 0..31 */
                const __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(q, m3), loadu256(yq + 128 * h + 32 * s));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(scl, 4 * h + s)));
                q = _mm256_srli_epi16(q, 2);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q2_D)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

/* ---- Q3_K --------------------------------------------------------------------------------- */

/* The 16 signed scales (sc - 32) of a Q3_K block, as int8. */
static inline __m128i q3_scales(const uint8_t *s) {
    uint32_t a[3];
    memcpy(a, s, sizeof a);
    const __m128i v = _mm_setr_epi32((int)((a[0] & 0x0f0f0f0fu) | ((a[2] << 4) & 0x30303030u)),
                                     (int)((a[1] & 0x0f0f0f0fu) | ((a[2] << 2) & 0x30303030u)),
                                     (int)(((a[0] >> 4) & 0x0f0f0f0fu) | (a[2] & 0x30303030u)),
                                     (int)(((a[1] >> 4) & 0x0f0f0f0fu) | ((a[2] >> 2) & 0x30303030u)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

static float vec_dot_q3_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q3_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const uint8_t *yq = x + Q8_QS;
        const __m128i sc = q3_scales(w + Q3_SCALES);
        /* quants are stored as u = lo + 4 * hbit in 0..7 and q = u - 4: subtract 4 * bsums */
        const __m256i corr = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), _mm256_cvtepi8_epi16(sc));
        __m256i hm = loadu256(w + Q3_HMASK);
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu256(w + Q3_QS + 32 * h);
            #pragma GCC unroll 8
            for (int s = 0; s < 4; s++) { /* elements 128h + 32s + 0..31, high bit 4h + s */
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, m1), 2);
                const __m256i u = _mm256_or_si256(_mm256_and_si256(q, m3), hb);
                const __m256i p = _mm256_maddubs_epi16(u, loadu256(yq + 128 * h + 32 * s));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(sc, 4 * h + s)));
                q = _mm256_srli_epi16(q, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q3_D)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* ---- Q4_K / Q5_K -------------------------------------------------------------------------- */

/* The 8 six-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K / Q5_K block. */
static inline __m128i k4_scales(const uint8_t *s) {
    uint32_t a[3];
    memcpy(a, s, sizeof a);
    return _mm_setr_epi32((int)(a[0] & 0x3f3f3f3fu),                                        /* sc 0..3 */
                          (int)((a[2] & 0x0f0f0f0fu) | ((a[0] >> 2) & 0x30303030u)),        /* sc 4..7 */
                          (int)(a[1] & 0x3f3f3f3fu),                                        /* mn 0..3 */
                          (int)(((a[2] >> 4) & 0x0f0f0f0fu) | ((a[1] >> 2) & 0x30303030u))); /* mn 4..7 */
}

/* Mins as int16, each twice (mn0, mn0, mn1, mn1, ..), to pair with the 16 bsums. */
static inline __m256i k4_mins_x2(__m128i scmn) {
    const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scmn, dup));
}

/* Scale byte j of scb (a 16-byte vector repeated in both lanes) in every int16 lane. */
static inline __m256i bcast_scale16(__m256i scb, int j) {
    /* shuffle control: low byte j, high byte 0x80 (which writes a zero) */
    return _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(j - 32768)));
}

/* Shared body of Q4_K and Q5_K; off_qh < 0 for Q4_K. */
static inline float dot_q45(const uint8_t *w, const uint8_t *x, int64_t nb, size_t wbytes, int off_scales,
                            int off_qs, int off_qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += wbytes, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const uint8_t *yq = x + Q8_QS;
        const __m128i scmn = k4_scales(w + off_scales);
        const __m256i scb = _mm256_broadcastsi128_si256(scmn);
        /* sum over sub-blocks j of mn[j] * (bsums[2j] + bsums[2j+1]), in 8 int32 parts */
        const __m256i summ = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), k4_mins_x2(scmn));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q4_DMIN)), _mm256_cvtepi32_ps(summ), accm);

        __m256i hb = off_qh >= 0 ? loadu256(w + off_qh) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles) and 2c+1 (high nibbles) */
            const __m256i q = loadu256(w + off_qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (off_qh >= 0) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), m1), 4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            const __m256i p0 = _mm256_maddubs_epi16(lo, loadu256(yq + 64 * c));
            const __m256i p1 = _mm256_maddubs_epi16(hi, loadu256(yq + 64 * c + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, bcast_scale16(scb, 2 * c)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, bcast_scale16(scb, 2 * c + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q4_D)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

static float vec_dot_q4_k(const void *w, const void *x, int64_t n) {
    return dot_q45(w, x, n / QK_K, Q4_BYTES, Q4_SCALES, Q4_QS, -1);
}

static float vec_dot_q5_k(const void *w, const void *x, int64_t n) {
    return dot_q45(w, x, n / QK_K, Q5_BYTES, Q5_SCALES, Q5_QS, Q5_QH);
}

/* ---- Q6_K --------------------------------------------------------------------------------- */

static float vec_dot_q6_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q6_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const uint8_t *yq = x + Q8_QS;
        const __m128i sc = loadu128(w + Q6_SCALES);
        /* quants are stored as u = q + 32 in 0..63: subtract 32 * sum(sc * bsums) */
        const __m256i corr = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), _mm256_cvtepi8_epi16(sc));
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = loadu256(w + Q6_QL + 64 * h);
            const __m256i ql1 = loadu256(w + Q6_QL + 64 * h + 32);
            __m256i qh = loadu256(w + Q6_QH + 32 * h);
            /* groups of 32: element 128h + 32g + l */
            const __m256i low[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
            #pragma GCC unroll 8
            for (int g = 0; g < 4; g++) {
                const __m256i u = _mm256_or_si256(low[g], _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
                const __m256i p = _mm256_maddubs_epi16(u, loadu256(yq + 128 * h + 32 * g));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(sc, 4 * h + g)));
                qh = _mm256_srli_epi16(qh, 2);
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q6_D)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

void slm_qdot_k_fill_avx2(slm_kernels *k) {
    k->quant_act[SLM_DT_Q8_K] = quant_q8_k;
    k->vec_dot[SLM_DT_Q2_K] = vec_dot_q2_k;
    k->vec_dot[SLM_DT_Q3_K] = vec_dot_q3_k;
    k->vec_dot[SLM_DT_Q4_K] = vec_dot_q4_k;
    k->vec_dot[SLM_DT_Q5_K] = vec_dot_q5_k;
    k->vec_dot[SLM_DT_Q6_K] = vec_dot_q6_k;
}
