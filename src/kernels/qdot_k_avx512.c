/* qdot_k_avx512.c - AVX-512 (F/BW/VL + VNNI) dot products of the k-quant weight formats
 * (Q2_K .. Q6_K) with Q8_K activations. Used only after a cpuid check; the scalar twins are in
 * qdot_k_scalar.c. The Q8_K quantizer of this table is the AVX2 one (qdot.c fills the AVX2
 * entries first; a 512-bit version would gain little on a step done once per matrix).
 *
 * Per 256-element super-block: weight quants are unpacked to unsigned bytes 64 at a time and
 * lined up with 64 consecutive activation bytes. For the 16-element sub-block formats (Q2_K,
 * Q3_K, Q6_K), _mm512_dpbusd_epi32 (VNNI) sums groups of four u8 * s8 products into 16 int32
 * lanes; each lane lies in one sub-block, so one multiply by a per-lane vector of the integer
 * sub-block scales weights it. For the 32-element sub-blocks of Q4_K / Q5_K, maddubs pair sums
 * are weighted and accumulated by _mm512_dpwssd_epi32 (VNNI, int16). The block's int32 sums are
 * then converted to float once. Offsets (mins, the -32 of Q6_K, the -4 of Q3_K) go through the
 * activation block sums, as in the AVX2 kernels. The integer sums are exactly those of the
 * scalar twin; only the float summation order differs. */
#include <immintrin.h>
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

static inline __m512i loadu512(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
static inline __m256i loadu256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i loadu128(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

/* 32 bytes at p in both 256-bit halves. */
static inline __m512i load_both_halves(const uint8_t *p) { return _mm512_broadcast_i64x4(loadu256(p)); }

/* A vector of 16-bit shift counts: lo in the low 256-bit half, hi in the high half. */
static inline __m512i half_counts(short lo, short hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(lo)), _mm256_set1_epi16(hi), 1);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 16 int32 lanes of v folded to 8. */
static inline __m256i fold512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/* Permutation indices for the 16-element sub-block formats: 64 elements starting at sub-block
 * 4t cover sub-blocks 4t..4t+3, four int32 lanes each (lane k is in sub-block 4t + k/4). */
static inline __m512i sub16_index(int t) {
    const __m512i k = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_add_epi32(k, _mm512_set1_epi32(4 * t));
}

/* Sum of the four 64-element groups t = 0..3 of a 16-sub-block format: dpbusd of u[t] with the
 * activations, each lane weighted by its sub-block scale (sc32: 16 int32 scales). */
static inline __m512i weighted_dots16(const __m512i u[4], const uint8_t *yq, __m512i sc32) {
    __m512i sumi = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[t], loadu512(yq + 64 * t));
        sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dp, _mm512_permutexvar_epi32(sub16_index(t), sc32)));
    }
    return sumi;
}

/* ---- Q2_K --------------------------------------------------------------------------------- */

static float vec_dot_q2_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i shift02 = half_counts(0, 2);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q2_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const __m128i sc = loadu128(w + Q2_SCALES);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i summ = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), mins);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q2_DMIN)), _mm256_cvtepi32_ps(summ), accm);

        __m512i u[4]; /* group t: elements 64t .. 64t+63 */
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            /* element 128h + 32s + l is bits 2s..2s+1 of qs[32h + l] */
            const __m512i q = _mm512_srlv_epi16(load_both_halves(w + Q2_QS + 32 * h), shift02);
            u[2 * h] = _mm512_and_si512(q, m3);
            u[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m3);
        }
        const __m512i sumi = weighted_dots16(u, x + Q8_QS, _mm512_cvtepu8_epi32(_mm_and_si128(sc, m4)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q2_D)), _mm256_cvtepi32_ps(fold512(sumi)), acc);
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
    const __m512i m3 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(1);
    const __m512i shift02 = half_counts(0, 2), shift01 = half_counts(0, 1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q3_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const __m128i sc = q3_scales(w + Q3_SCALES);
        /* quants are stored as u = lo + 4 * hbit in 0..7 and q = u - 4: subtract 4 * bsums */
        const __m256i corr = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), _mm256_cvtepi8_epi16(sc));
        /* the high bit of element 128h + 32s + l is bit 4h + s of hmask[l] */
        __m512i hm = _mm512_srlv_epi16(load_both_halves(w + Q3_HMASK), shift01);
        __m512i u[4];
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_srlv_epi16(load_both_halves(w + Q3_QS + 32 * h), shift02);
            #pragma GCC unroll 8
            for (int g = 0; g < 2; g++) {
                const __m512i hb = _mm512_slli_epi16(_mm512_and_si512(hm, m1), 2);
                u[2 * h + g] = _mm512_or_si512(_mm512_and_si512(q, m3), hb);
                q = _mm512_srli_epi16(q, 4);
                hm = _mm512_srli_epi16(hm, 2);
            }
        }
        const __m512i sumi = weighted_dots16(u, x + Q8_QS, _mm512_cvtepi8_epi32(sc));
        const __m256i s = _mm256_sub_epi32(fold512(sumi), _mm256_slli_epi32(corr, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q3_D)), _mm256_cvtepi32_ps(s), acc);
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

/* Shared body of Q4_K and Q5_K; off_qh < 0 for Q4_K. Sub-blocks are 32 elements here, so
 * the scales are applied to int16 pair sums (_mm512_maddubs_epi16, at most 2 * 31 * 127) by the
 * VNNI int16 dot product, which also accumulates: two instructions per 64 quants. */
static inline float dot_q45(const uint8_t *w, const uint8_t *x, int64_t nb, size_t wbytes, int off_scales,
                            int off_qs, int off_qh) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m1 = _mm512_set1_epi8(1);
    const __m512i shift04 = half_counts(0, 4), shift01 = half_counts(0, 1);
    /* shuffle control putting scale byte 2c (low half) / 2c+1 (high half) in every int16 lane:
     * low byte the index, high byte 0x80 (which writes a zero) */
    const __m512i pick = half_counts(-32768, -32767);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += wbytes, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const uint8_t *yq = x + Q8_QS;
        const __m128i scmn = k4_scales(w + off_scales);
        /* sum over sub-blocks j of mn[j] * (bsums[2j] + bsums[2j+1]), in 8 int32 parts */
        const __m256i summ = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), k4_mins_x2(scmn));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q4_DMIN)), _mm256_cvtepi32_ps(summ), accm);

        const __m512i scb = _mm512_broadcast_i32x4(scmn);
        __m512i hb = off_qh >= 0 ? _mm512_srlv_epi16(load_both_halves(w + off_qh), shift01) : _mm512_setzero_si512();
        __m512i sumi = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int c = 0; c < 4; c++) {
            /* low nibbles of qs[32c..] are sub-block 2c, high nibbles sub-block 2c+1 */
            __m512i q = _mm512_and_si512(_mm512_srlv_epi16(load_both_halves(w + off_qs + 32 * c), shift04), m4);
            if (off_qh >= 0) { /* bit j of qh[l] is bit 4 of element l of sub-block j */
                q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(hb, m1), 4));
                hb = _mm512_srli_epi16(hb, 2);
            }
            const __m512i p = _mm512_maddubs_epi16(q, loadu512(yq + 64 * c));
            const __m512i scv = _mm512_shuffle_epi8(scb, _mm512_add_epi16(pick, _mm512_set1_epi16((short)(2 * c))));
            sumi = _mm512_dpwssd_epi32(sumi, p, scv);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q4_D)), _mm256_cvtepi32_ps(fold512(sumi)), acc);
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
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
    const __m512i shift02 = half_counts(0, 2);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q6_BYTES, x += Q8_BYTES) {
        const float yd = load_f32(x + Q8_D);
        const __m128i sc = loadu128(w + Q6_SCALES);
        /* quants are stored as u = q + 32 in 0..63: subtract 32 * sum(sc * bsums) */
        const __m256i corr = _mm256_madd_epi16(loadu256(x + Q8_BSUMS), _mm256_cvtepi8_epi16(sc));
        __m512i u[4];
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            /* element 128h + 64i + m: nibble i of ql[64h + m]; high bits 2(2i + m/32).. of qh[32h + m%32] */
            const __m512i ql = loadu512(w + Q6_QL + 64 * h);
            const __m512i qh = _mm512_srlv_epi16(load_both_halves(w + Q6_QH + 32 * h), shift02);
            const __m512i hi0 = _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4);
            const __m512i hi1 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4);
            u[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), hi0);
            u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hi1);
        }
        const __m512i sumi = weighted_dots16(u, x + Q8_QS, _mm512_cvtepi8_epi32(sc));
        const __m256i s = _mm256_sub_epi32(fold512(sumi), _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * load_f16(w + Q6_D)), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum_ps(acc);
}

void slm_qdot_k_fill_avx512(slm_kernels *k) {
    k->vec_dot[SLM_DT_Q2_K] = vec_dot_q2_k;
    k->vec_dot[SLM_DT_Q3_K] = vec_dot_q3_k;
    k->vec_dot[SLM_DT_Q4_K] = vec_dot_q4_k;
    k->vec_dot[SLM_DT_Q5_K] = vec_dot_q5_k;
    k->vec_dot[SLM_DT_Q6_K] = vec_dot_q6_k;
}
