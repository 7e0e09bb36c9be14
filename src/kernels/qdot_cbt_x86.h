/* qdot_cbt_x86.h - pieces shared by the x86 kernels of the per-tensor codebook formats
 * (qdot_cbt_avx2.c, qdot_cbt_avx512.c, qdot_cbt_vbmi2.c; internal to src/kernels).
 *
 * cbt_unpack_idx: a sub-block's 32 indices, one byte each, in a 32-byte register (AVX2):
 *   low four bits: the 16 bytes in the low lane, the same shifted right by 4 in the high lane;
 *   bit 4 (b = 5) / bit 6 (b = 7): byte e takes byte e/8 of the little-endian word, then
 *     tests bit e%8;
 *   bits 4-5 (b = 6, 7): the 8 plane bytes broadcast to four 64-bit lanes shifted right by
 *     0, 2, 4, 6, & 3, then shifted left by 4.
 *
 * With AVX-512 (BW, VNNI) the file that includes this defines the table it looks up in
 * (cbt_tab512) and cbt_lookup512 first; cbt_tile512 is then the kernel body: two sub-blocks
 * per step in one 512-bit register, looked up to 64 int8 weights and multiplied with the two
 * activation blocks by vpdpbusd(|w|, q with the sign of w) into sixteen exact int32 sums
 * (lanes 0-7 the first sub-block, 8-15 the second), scaled by [d_x0 x 8, d_x1 x 8] and
 * accumulated by FMA; an odd last sub-block pairs with zero activations and d = 0. The row
 * scale multiplies the horizontal sum at the end. Every output of a tile is computed by the
 * same operations whatever the tile's width, so gemm and dot agree bit for bit. */
#ifndef SLM_QDOT_CBT_X86_H
#define SLM_QDOT_CBT_X86_H

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "core/cbt.h"

enum { CBT_Q8_0_BYTES = 34, CBT_CT = 4 /* activation rows per tile */ };

static inline float cbt_load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* 0xff in byte e where bit e of word h is set. */
static inline __m256i cbt_bit_mask(uint32_t h) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll, 0x0101010101010101ll, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

static inline __attribute__((always_inline)) __m256i cbt_unpack_idx(int bits, const uint8_t *p) {
    if (bits == 8) return _mm256_loadu_si256((const __m256i *)p);
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15));
    uint32_t h;
    if (bits == 5) {
        memcpy(&h, p + 16, sizeof h);
        return _mm256_or_si256(v, _mm256_and_si256(cbt_bit_mask(h), _mm256_set1_epi8(16)));
    }
    uint64_t pl;
    memcpy(&pl, p + 16, sizeof pl);
    __m256i v2 = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)pl), _mm256_set_epi64x(6, 4, 2, 0));
    v2 = _mm256_slli_epi16(_mm256_and_si256(v2, _mm256_set1_epi8(3)), 4);
    v = _mm256_or_si256(v, v2);
    if (bits == 7) {
        memcpy(&h, p + 24, sizeof h);
        v = _mm256_or_si256(v, _mm256_and_si256(cbt_bit_mask(h), _mm256_set1_epi8(64)));
    }
    return v;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
static inline __attribute__((always_inline)) void cbt_tile512(const cbt_tab512 *tb, int bits, int sub, int64_t n,
                                                              const uint8_t *w, const uint8_t *x, size_t xs, int nc,
                                                              float *out) {
    const float s = cbt_load_f16(w);
    const uint8_t *p = w + 2;
    const int64_t nsb = n / 32;
    __m512 acc[CBT_CT];
    for (int c = 0; c < CBT_CT; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b += 2, p += 2 * (size_t)sub) {
        const bool two = b + 1 < nsb;
        const __m256i i0 = cbt_unpack_idx(bits, p);
        const __m256i i1 = two ? cbt_unpack_idx(bits, p + sub) : _mm256_setzero_si256();
        const __m512i wv = cbt_lookup512(tb, _mm512_inserti64x4(_mm512_castsi256_si512(i0), i1, 1), bits);
        const __m512i aw = _mm512_abs_epi8(wv);
        const __mmask64 neg = _mm512_movepi8_mask(wv);
        for (int c = 0; c < nc; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)b * CBT_Q8_0_BYTES;
            const __m256i q0 = _mm256_loadu_si256((const __m256i *)(xb + 2));
            const __m256i q1 =
                two ? _mm256_loadu_si256((const __m256i *)(xb + CBT_Q8_0_BYTES + 2)) : _mm256_setzero_si256();
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
            q = _mm512_mask_sub_epi8(q, neg, _mm512_setzero_si512(), q);
            const __m512 sum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, q));
            const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(cbt_load_f16(xb)),
                                                _mm256_set1_ps(two ? cbt_load_f16(xb + CBT_Q8_0_BYTES) : 0.0f), 1);
            acc[c] = _mm512_fmadd_ps(d, sum, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c] = s * _mm512_reduce_add_ps(acc[c]);
}

#define CBT_TILE_NC(B)                                                             \
    switch (nc) {                                                                   \
    case 1: cbt_tile512(tb, B, 4 * (B), n, w, x, xs, 1, out); break;               \
    case 2: cbt_tile512(tb, B, 4 * (B), n, w, x, xs, 2, out); break;               \
    case 3: cbt_tile512(tb, B, 4 * (B), n, w, x, xs, 3, out); break;               \
    default: cbt_tile512(tb, B, 4 * (B), n, w, x, xs, CBT_CT, out); break;         \
    }

/* One weight row against nc (<= CBT_CT) activation rows, bits and nc made constants. */
static inline void cbt_tile512_n(const cbt_tab512 *tb, int bits, int64_t n, const uint8_t *w, const uint8_t *x,
                                 size_t xs, int nc, float *out) {
    switch (bits) {
    case 5: CBT_TILE_NC(5) break;
    case 6: CBT_TILE_NC(6) break;
    case 7: CBT_TILE_NC(7) break;
    default: CBT_TILE_NC(8) break;
    }
}
#undef CBT_TILE_NC

static inline void cbt_gemm512(const cbt_tab512 *tb, int bits, int64_t n, const void *w, size_t ws, int nr,
                               const void *x, size_t xs, int nc, float *y, size_t ldy) {
    float out[CBT_CT];
    for (int c0 = 0; c0 < nc; c0 += CBT_CT) {
        const int tc = nc - c0 < CBT_CT ? nc - c0 : CBT_CT;
        for (int r = 0; r < nr; r++) {
            cbt_tile512_n(tb, bits, n, (const uint8_t *)w + (size_t)r * ws, (const uint8_t *)x + (size_t)c0 * xs, xs,
                          tc, out);
            for (int c = 0; c < tc; c++) y[(size_t)(c0 + c) * ldy + (size_t)r] = out[c];
        }
    }
}
#endif

#endif
