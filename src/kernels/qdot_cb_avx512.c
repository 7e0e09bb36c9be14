/* qdot_cb_avx512.c - AVX-512 BW/DQ/VNNI kernels of the codebook formats (see qdot_cb.c). Scalar
 * twin: qdot_cb_scalar.c (same integer sums, float summation order differs).
 *
 * Two sub-blocks per step in one 512-bit register: their indices are unpacked as in
 * qdot_cb_avx2.c (the lookup below), looked up with one 512-bit pshufb in the codebook broadcast to all four lanes,
 * and multiplied with the two activation blocks by vpdpbusd(|w|, q with the sign of w) into
 * sixteen exact int32 sums (lanes 0-7 the first sub-block, 8-15 the second), then scaled by
 * [d_x0 x 8, d_x1 x 8] and accumulated. An odd last sub-block pairs with zeros.
 *
 * Lookup: the row's codebook (k <= 16 int8 entries, zero padded) is broadcast to every 128-bit
 * lane; a sub-block's 32 indices are unpacked to one byte each in a 32-byte register, and one
 * pshufb maps them to the 32 int8 weights:
 *   4 bits: the 16 bytes in the low lane, the same shifted right by 4 in the high lane, & 15;
 *   2 bits: the 8 bytes broadcast to four 64-bit lanes shifted by 0, 2, 4, 6, & 3;
 *   3 bits: the 2-bit plane, | 4 where bit e of the high-bit word is set.
 * The gemm takes one weight row x CT activation rows per tile: each pair of sub-blocks is
 * decoded once per tile. The dot is the 1 x 1 tile, so gemm and dot give identical results. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "core/codebook.h"
#include "qdot_impl.h"

float slm_cb_dot_avx512(const slm_cb_format *f, const void *w, const void *x, int64_t n);
void slm_cb_gemm_avx512(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy);

enum { Q8_0_BYTES = 34, CT = 4 /* activation rows per tile */ };

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* The 32 index bytes of sub-block p. */
static inline __m256i unpack_idx(int bits, const uint8_t *p) {
    if (bits == 4) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)p);
        const __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        return _mm256_and_si256(v, _mm256_set1_epi8(15));
    }
    uint64_t lo;
    memcpy(&lo, p, sizeof lo);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)lo), _mm256_set_epi64x(6, 4, 2, 0));
    v = _mm256_and_si256(v, _mm256_set1_epi8(3));
    if (bits == 3) {
        uint32_t h;
        memcpy(&h, p + 8, sizeof h);
        /* byte e <- byte e/8 of h, then test bit e%8 */
        const __m256i spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32((int)h),
            _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll, 0x0101010101010101ll, 0));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    return v;
}

/* Row w against nc (<= CT) activation rows; called with constant bits and nc, so the index
 * unpacking has no branch and the accumulators stay in registers. */
static inline __attribute__((always_inline)) void row_tile(const slm_cb_format *f, int bits, int64_t n,
                                                           const uint8_t *w, const uint8_t *x, size_t xs, int nc,
                                                           float *out) {
    int8_t lv[16] = {0};
    memcpy(lv, w + 2, (size_t)f->k);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv));
    const float s = load_f16(w);
    const uint8_t *p = w + f->hdr;
    const int64_t nsb = n / 32;
    __m512 acc[CT];
    for (int c = 0; c < CT; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b += 2, p += 2 * (size_t)f->sub) {
        const bool two = b + 1 < nsb;
        const __m256i i0 = unpack_idx(bits, p);
        const __m256i i1 = two ? unpack_idx(bits, p + f->sub) : _mm256_setzero_si256();
        const __m512i wv = _mm512_shuffle_epi8(tbl, _mm512_inserti64x4(_mm512_castsi256_si512(i0), i1, 1));
        const __m512i aw = _mm512_abs_epi8(wv);
        const __mmask64 neg = _mm512_movepi8_mask(wv);
        for (int c = 0; c < nc; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)b * Q8_0_BYTES;
            const __m256i q0 = _mm256_loadu_si256((const __m256i *)(xb + 2));
            const __m256i q1 = two ? _mm256_loadu_si256((const __m256i *)(xb + Q8_0_BYTES + 2)) : _mm256_setzero_si256();
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
            q = _mm512_mask_sub_epi8(q, neg, _mm512_setzero_si512(), q);
            const __m512 sum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, q));
            const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(load_f16(xb)),
                                                _mm256_set1_ps(two ? load_f16(xb + Q8_0_BYTES) : 0.0f), 1);
            acc[c] = _mm512_fmadd_ps(d, sum, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c] = s * _mm512_reduce_add_ps(acc[c]);
}

#define TILE_NC(B)                                                          \
    switch (nc) {                                                            \
    case 1: row_tile(f, B, n, w, x, xs, 1, out); break;                     \
    case 2: row_tile(f, B, n, w, x, xs, 2, out); break;                     \
    case 3: row_tile(f, B, n, w, x, xs, 3, out); break;                     \
    default: row_tile(f, B, n, w, x, xs, CT, out); break;                   \
    }

static void tile_n(const slm_cb_format *f, int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int nc,
                   float *out) {
    switch (f->bits) {
    case 2: TILE_NC(2) break;
    case 3: TILE_NC(3) break;
    default: TILE_NC(4) break;
    }
}
#undef TILE_NC

float slm_cb_dot_avx512(const slm_cb_format *f, const void *w, const void *x, int64_t n) {
    float r;
    tile_n(f, n, w, x, 0, 1, &r);
    return r;
}

void slm_cb_gemm_avx512(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy) {
    float out[CT];
    for (int c0 = 0; c0 < nc; c0 += CT) {
        const int tc = nc - c0 < CT ? nc - c0 : CT;
        for (int r = 0; r < nr; r++) {
            tile_n(f, n, (const uint8_t *)w + (size_t)r * ws, (const uint8_t *)x + (size_t)c0 * xs, xs, tc, out);
            for (int c = 0; c < tc; c++) y[(size_t)(c0 + c) * ldy + (size_t)r] = out[c];
        }
    }
}
