/* qdot_sp_avx512.c - AVX-512 (BW, VL) + VNNI kernels of the 2:4 formats (core/sparse.h)
 * against Q8_0 activations. Scalar twin: qdot_sp_scalar.c (same integer sums, float
 * summation order differs). The unstructured formats run the AVX2 kernels here, or the VBMI2
 * ones (qdot_sp_vbmi2.c) where the CPU has byte expand.
 *
 * A 64-byte register holds two consecutive 32-weight blocks of a row expanded to one signed
 * byte per weight (pruned ones 0): the 16 kept values of each block (4-bit ones unpacked and
 * shifted to -8..7) sit in both 128-bit lanes of its half, and one in-lane byte shuffle puts
 * them at their positions, the indices coming from a table indexed by a metadata byte (two
 * groups; 0x80 for pruned weights), offset by 4 per metadata byte within the lane.
 * dpbusd then sums |w| * (x with the sign of w) four at a time into int32 lanes (exact),
 * which are converted and accumulated with the pair of scale products d_w * d_x (lanes 0..7
 * the first block, 8..15 the second). An odd last block is paired with itself, its second
 * half given zero activations and scale 0.
 *
 * With fewer than CT activation rows the gemm computes tiles of RT weight rows x the activation
 * rows, each weight pair expanded once per tile; the dot is the 1 x 1 tile. With more, the
 * packed path below expands each tile of rows once per chunk of blocks for all activation
 * rows. */
#include <immintrin.h>
#include <string.h>

#include "core/sparse.h"
#include "qdot_impl.h"

enum {
    QK = 32,
    Q8_0_BYTES = 34, /* f16 d, i8 q[32] */
    RT = 4,          /* weight rows per tile */
    CT = 4,          /* activation rows per tile */
};

static uint64_t g_tab24[256]; /* shuffle indices of the 8 weights of a metadata byte */

static void init_table(void) {
    for (int m = 0; m < 256; m++) {
        uint64_t t = 0;
        for (int j = 0; j < 2; j++) {
            const int nib = (m >> (4 * j)) & 15, p0 = nib & 3, p1 = nib >> 2;
            for (int p = 0; p < 4; p++) {
                const uint64_t ix = p == p0 ? (uint64_t)(2 * j) : p == p1 ? (uint64_t)(2 * j + 1) : 0x80;
                t |= ix << (8 * (4 * j + p));
            }
        }
        g_tab24[m] = t;
    }
}

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* v added to every byte of a table entry (no carries: entries are at most 0x80 + 12) */
#define BYTES(v) ((uint64_t)(v) * 0x0101010101010101ull)

/* a in lanes 0..7, b in lanes 8..15 */
static inline __m512 pair_ps(float a, float b) {
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(a), 0xff00, _mm_set_ss(b));
}

/* the 16 kept values of the block at p, signed */
static inline __attribute__((always_inline)) __m128i kept(const int bits, const uint8_t *p) {
    if (bits == 8) return _mm_loadu_si128((const __m128i *)(p + 6));
    const __m128i b = _mm_loadl_epi64((const __m128i *)(p + 6));
    const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15));
    return _mm_sub_epi8(_mm_unpacklo_epi64(lo, hi), _mm_set1_epi8(8));
}

/* 64 signed weights of the blocks at p0 and p1 */
static inline __attribute__((always_inline)) __m512i expand_pair(const int bits, const uint8_t *p0,
                                                                const uint8_t *p1) {
    const __m512i src = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(kept(bits, p0))),
                                           _mm256_broadcastsi128_si256(kept(bits, p1)), 1);
    const uint8_t *m0 = p0 + 2, *m1 = p1 + 2;
    const __m512i ctrl = _mm512_setr_epi64(
        (long long)g_tab24[m0[0]], (long long)(g_tab24[m0[1]] + BYTES(4)), (long long)(g_tab24[m0[2]] + BYTES(8)),
        (long long)(g_tab24[m0[3]] + BYTES(12)), (long long)g_tab24[m1[0]], (long long)(g_tab24[m1[1]] + BYTES(4)),
        (long long)(g_tab24[m1[2]] + BYTES(8)), (long long)(g_tab24[m1[3]] + BYTES(12)));
    return _mm512_shuffle_epi8(src, ctrl);
}

#define UNROLL _Pragma("GCC unroll 4")

/* y[c * ldy + r] = dot(w[r], x[c]) for a tile of rn x cn (constants after inlining) */
static inline __attribute__((always_inline)) void tile(const int bits, const int rn, const int cn, int64_t n,
                                                       const uint8_t *const *w, const uint8_t *const *x, float *y,
                                                       size_t ldy) {
    const size_t bb = bits == 8 ? SLM_SP_24_BLOCK_Q8 : SLM_SP_24_BLOCK_Q4;
    const int64_t nb = n / QK;
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const bool two = b + 1 < nb;
        __m512i wq[RT], wa[RT];
        __mmask64 neg[RT];
        __m512 wd[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            const uint8_t *p0 = w[r] + (size_t)b * bb, *p1 = two ? p0 + bb : p0;
            wq[r] = expand_pair(bits, p0, p1);
            wa[r] = _mm512_abs_epi8(wq[r]);
            neg[r] = _mm512_movepi8_mask(wq[r]);
            wd[r] = pair_ps(load_f16(p0), two ? load_f16(p1) : 0.0f);
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)b * Q8_0_BYTES;
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xp + 2));
            const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)(xp + Q8_0_BYTES + 2)) : _mm256_setzero_si256();
            const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
            const __m512 xd = pair_ps(load_f16(xp), two ? load_f16(xp + Q8_0_BYTES) : 0.0f);
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512i xs = _mm512_mask_sub_epi8(xv, neg[r], _mm512_setzero_si512(), xv);
                const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wa[r], xs);
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(wd[r], xd), _mm512_cvtepi32_ps(s), acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ---- the packed gemm (several activation rows) --------------------------------------------
 * Per tile of RT weight rows and chunk of KB blocks, the rows are expanded once (by the
 * format's expander) into a buffer as weights + 128, unsigned, with the scale pairs; every tile
 * of CT activation rows then reads them from there. dpbusd of the unsigned weights starts from
 * -128 * (the sums of the activation quants, by 4-byte lane), so each int32 lane is the exact
 * sum of w * x. Also used by the VBMI2 file for the unstructured formats. */

enum { KB = 64, KP = KB / 2 }; /* blocks per chunk, block pairs per chunk */

/* Expanded weights + 128 of one row (row: its first byte, n weights) for blocks b0 .. b0 + kn
 * (b0 even), by pairs of blocks, and the scale pairs (0 for the missing half of an odd last
 * block). */
typedef void (*sp_expand_fn)(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd);
void slm_sp_gemm_packed_avx512(sp_expand_fn expand, int64_t n, const void *w, size_t w_stride, int nr,
                               const void *x, size_t x_stride, int nc, float *y, size_t ldy);

/* sums over the chunk's kn blocks (from block k0) for rn x cn rows, added to y unless first */
static inline __attribute__((always_inline)) void tile_packed(const int rn, const int cn, int64_t k0, int kn,
                                                              __m512i wu[RT][KP], __m512 wd[RT][KP],
                                                              const uint8_t *const *x, bool first, float *y,
                                                              size_t ldy) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    for (int p = 0; 2 * p < kn; p++) {
        const bool two = 2 * p + 1 < kn;
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)(k0 + 2 * p) * Q8_0_BYTES;
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xp + 2));
            const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)(xp + Q8_0_BYTES + 2)) : _mm256_setzero_si256();
            const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
            const __m512 xd = pair_ps(load_f16(xp), two ? load_f16(xp + Q8_0_BYTES) : 0.0f);
            const __m512i init = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, xv));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wu[r][p], xv));
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(wd[r][p], xd), s, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) {
            const float v = _mm512_reduce_add_ps(acc[r][c]);
            float *o = y + (size_t)c * ldy + (size_t)r;
            *o = first ? v : *o + v;
        }
}

void slm_sp_gemm_packed_avx512(sp_expand_fn expand, int64_t n, const void *w, size_t w_stride, int nr,
                               const void *x, size_t x_stride, int nc, float *y, size_t ldy) {
    const uint8_t *w0 = w, *x0 = x;
    const int64_t nb = n / QK;
    __m512i wu[RT][KP];
    __m512 wd[RT][KP];
    for (int r0 = 0; r0 < nr; r0 += RT) {
        const int rn = nr - r0 < RT ? nr - r0 : RT;
        for (int64_t k0 = 0; k0 < nb; k0 += KB) {
            const int kn = nb - k0 < KB ? (int)(nb - k0) : KB;
            for (int r = 0; r < rn; r++) expand(w0 + (size_t)(r0 + r) * w_stride, n, k0, kn, wu[r], wd[r]);
            for (int c0 = 0; c0 < nc; c0 += CT) {
                const int cn = nc - c0 < CT ? nc - c0 : CT;
                const uint8_t *xr[CT];
                for (int c = 0; c < cn; c++) xr[c] = x0 + (size_t)(c0 + c) * x_stride;
                float *yt = y + (size_t)c0 * ldy + (size_t)r0;
                if (rn == RT && cn == CT) {
                    tile_packed(RT, CT, k0, kn, wu, wd, xr, k0 == 0, yt, ldy);
                } else if (rn == RT) {
                    for (int c = 0; c < cn; c++) tile_packed(RT, 1, k0, kn, wu, wd, xr + c, k0 == 0, yt + (size_t)c * ldy, ldy);
                } else {
                    for (int r = 0; r < rn; r++)
                        for (int c = 0; c < cn; c++)
                            tile_packed(1, 1, k0, kn, wu + r, wd + r, xr + c, k0 == 0, yt + (size_t)c * ldy + r, ldy);
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void expand_s24(const int bits, const uint8_t *row, int64_t b0, int kn,
                                                             __m512i *wu, __m512 *wd) {
    const size_t bb = bits == 8 ? SLM_SP_24_BLOCK_Q8 : SLM_SP_24_BLOCK_Q4;
    for (int p = 0; 2 * p < kn; p++) {
        const bool two = 2 * p + 1 < kn;
        const uint8_t *p0 = row + (size_t)(b0 + 2 * p) * bb, *p1 = two ? p0 + bb : p0;
        wu[p] = _mm512_xor_si512(expand_pair(bits, p0, p1), _mm512_set1_epi8((char)0x80));
        wd[p] = pair_ps(load_f16(p0), two ? load_f16(p1) : 0.0f);
    }
}
static void expand_s24q8(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    (void)n;
    expand_s24(8, row, b0, kn, wu, wd);
}
static void expand_s24q4(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    (void)n;
    expand_s24(4, row, b0, kn, wu, wd);
}

/* one or a few activation rows: the direct tiles; more: the packed path */
static inline __attribute__((always_inline)) void gemm_bits(const int bits, int64_t n, const void *w,
                                                            size_t w_stride, int nr, const void *x, size_t x_stride,
                                                            int nc, float *y, size_t ldy) {
    if (nc >= CT) {
        slm_sp_gemm_packed_avx512(bits == 8 ? expand_s24q8 : expand_s24q4, n, w, w_stride, nr, x, x_stride, nc, y,
                                  ldy);
        return;
    }
    const uint8_t *w0 = w, *x0 = x;
    for (int r0 = 0; r0 < nr; r0 += RT) {
        const int rn = nr - r0 < RT ? nr - r0 : RT;
        const uint8_t *wr[RT];
        for (int r = 0; r < rn; r++) wr[r] = w0 + (size_t)(r0 + r) * w_stride;
        for (int c = 0; c < nc; c++) {
            const uint8_t *xr = x0 + (size_t)c * x_stride;
            float *yt = y + (size_t)c * ldy + (size_t)r0;
            if (rn == RT) tile(bits, RT, 1, n, wr, &xr, yt, ldy);
            else
                for (int r = 0; r < rn; r++) tile(bits, 1, 1, n, wr + r, &xr, yt + r, ldy);
        }
    }
}

static float dot_s24q8(const void *w, const void *x, int64_t n) {
    const uint8_t *wr = w, *xr = x;
    float out;
    tile(8, 1, 1, n, &wr, &xr, &out, 1);
    return out;
}
static float dot_s24q4(const void *w, const void *x, int64_t n) {
    const uint8_t *wr = w, *xr = x;
    float out;
    tile(4, 1, 1, n, &wr, &xr, &out, 1);
    return out;
}
static void gemm_s24q8(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                       size_t ldy) {
    gemm_bits(8, n, w, ws, nr, x, xs, nc, y, ldy);
}
static void gemm_s24q4(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                       size_t ldy) {
    gemm_bits(4, n, w, ws, nr, x, xs, nc, y, ldy);
}

void slm_qdot_sp_fill_avx512(slm_kernels *k);
void slm_qdot_sp_fill_avx512(slm_kernels *k) {
    init_table();
    k->vec_dot[SLM_SP_24_Q8] = dot_s24q8;
    k->gemm[SLM_SP_24_Q8] = gemm_s24q8;
    k->vec_dot[SLM_SP_24_Q4] = dot_s24q4;
    k->gemm[SLM_SP_24_Q4] = gemm_s24q4;
}
