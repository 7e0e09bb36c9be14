/* qdot_cbt_avx2.c - AVX2 + FMA + F16C kernels of the per-tensor codebook formats (see
 * qdot_cbt.c). Scalar twin: qdot_cbt_scalar.c (same integer sums, float summation order
 * differs).
 *
 * A sub-block's 32 indices are unpacked to bytes in a register (qdot_cbt_x86.h); AVX2's byte
 * shuffle reaches 16 entries, so each 16-entry slice of the zero-padded table is looked up with
 * the low four index bits and a tree of blends on bits 4 .. b-1 picks the slice (2^(b-4)
 * shuffles and 2^(b-4) - 1 blends per 32 weights). Product with the Q8_0 block:
 * maddubs(|w|, sign(q, w)) (|pair| <= 2 * 127 * 127 < 2^15) and madd with ones give eight
 * exact int32 partial sums, converted to float and accumulated with d_x by FMA; the row scale
 * multiplies the horizontal sum at the end.
 *
 * The gemm takes one weight row x CBT_CT activation rows per tile: each sub-block is looked
 * up once per tile. The dot is the 1 x 1 tile, so gemm and dot give identical results. */
#include <immintrin.h>
#include <string.h>

#include "qdot_cbt_x86.h"
#include "qdot_impl.h"
#include "qdot_cbt.h"


static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 32 int8 weights of sub-block p: each 16-entry slice of the table looked up by pshufb
 * with the low four index bits, then a tree of byte blends on index bits 4 .. b-1 (each moved to
 * the byte's bit 7, which blendv reads). */
static inline __attribute__((always_inline)) __m256i lookup(const __m256i *sl, int bits, const uint8_t *p) {
    const __m256i idx = cbt_unpack_idx(bits, p);
    const __m256i lo4 = _mm256_and_si256(idx, _mm256_set1_epi8(15));
    __m256i v[16];
    const int ns = 1 << (bits - 4);
    for (int j = 0; j < ns; j++) v[j] = _mm256_shuffle_epi8(sl[j], lo4);
    for (int b = 4; b < bits; b++) {
        const __m256i m = _mm256_slli_epi16(idx, 7 - b);
        for (int j = 0; j < ns >> (b - 3); j++) v[j] = _mm256_blendv_epi8(v[2 * j], v[2 * j + 1], m);
    }
    return v[0];
}

static inline __attribute__((always_inline)) void row_tile(const int8_t *tab, int bits, int64_t n, const uint8_t *w,
                                                           const uint8_t *x, size_t xs, int nc, float *out) {
    __m256i sl[16];
    for (int j = 0; j < 1 << (bits - 4); j++)
        sl[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tab + 16 * j)));
    const __m256i ones = _mm256_set1_epi16(1);
    const float s = cbt_load_f16(w);
    const uint8_t *p = w + 2;
    __m256 acc[CBT_CT];
    for (int c = 0; c < CBT_CT; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, p += 4 * bits) {
        const __m256i wv = lookup(sl, bits, p);
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        for (int c = 0; c < nc; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)b * CBT_Q8_0_BYTES;
            const __m256i q = _mm256_loadu_si256((const __m256i *)(xb + 2));
            const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(q, wv));
            const __m256 sum = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(cbt_load_f16(xb)), sum, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c] = s * hsum(acc[c]);
}

#define TILE_NC(B)                                                   \
    switch (nc) {                                                     \
    case 1: row_tile(tab, B, n, w, x, xs, 1, out); break;            \
    case 2: row_tile(tab, B, n, w, x, xs, 2, out); break;            \
    case 3: row_tile(tab, B, n, w, x, xs, 3, out); break;            \
    default: row_tile(tab, B, n, w, x, xs, CBT_CT, out); break;      \
    }

static void tile_n(const int8_t *tab, int bits, int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int nc,
                   float *out) {
    switch (bits) {
    case 5: TILE_NC(5) break;
    case 6: TILE_NC(6) break;
    case 7: TILE_NC(7) break;
    default: TILE_NC(8) break;
    }
}
#undef TILE_NC

static void pad_table(const slm_cbt_format *f, const int8_t *tab, int8_t full[SLM_CBT_MAX_K]) {
    memset(full, 0, SLM_CBT_MAX_K);
    memcpy(full, tab, (size_t)f->k);
}

float slm_cbt_dot_avx2(const slm_cbt_format *f, const int8_t *tab, const void *w, const void *x, int64_t n) {
    int8_t full[SLM_CBT_MAX_K];
    pad_table(f, tab, full);
    float r;
    tile_n(full, f->bits, n, w, x, 0, 1, &r);
    return r;
}

void slm_cbt_gemm_avx2(const slm_cbt_format *f, const int8_t *tab, int64_t n, const void *w, size_t ws, int nr,
                       const void *x, size_t xs, int nc, float *y, size_t ldy) {
    int8_t full[SLM_CBT_MAX_K];
    pad_table(f, tab, full);
    float out[CBT_CT];
    for (int c0 = 0; c0 < nc; c0 += CBT_CT) {
        const int tc = nc - c0 < CBT_CT ? nc - c0 : CBT_CT;
        for (int r = 0; r < nr; r++) {
            tile_n(full, f->bits, n, (const uint8_t *)w + (size_t)r * ws, (const uint8_t *)x + (size_t)c0 * xs, xs,
                   tc, out);
            for (int c = 0; c < tc; c++) y[(size_t)(c0 + c) * ldy + (size_t)r] = out[c];
        }
    }
}
