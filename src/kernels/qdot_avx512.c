/* qdot_avx512.c - AVX-512 (F, BW, VL, DQ) + VNNI kernels for the 32-element block formats,
 * float weights and the activation quantizers. Scalar twins: qdot_scalar.c (same results up
 * to float summation order; the quantizers give the same bytes).
 *
 * Integer dots use dpbusd (u8 x s8, four products summed into each int32 lane, no
 * intermediate saturation). A 64-byte register holds two blocks: lanes 0..7 sum block b,
 * lanes 8..15 block b+1, and a register of the two blocks' float scales is applied once.
 * dpbusd needs unsigned weights, so the signed formats are dotted with a bias added:
 *   sum((q + B) * x) - sum(B * x)   with q + B >= 0 (B = 8 for Q4_0, 16 for Q5_0, 128 for Q8_0),
 * which is exact in int32. For Q4_0 and Q5_0 the stored quants are already q + B.
 * An odd last block is dotted as a pair with itself, its second half given scale 0.
 *
 * The gemm for Q4_1 and Q8_0 computes tiles of 4 weight rows x 4 activation rows, so each
 * unpacked weight pair serves 4 activation rows and each activation pair 4 weight rows; the f16
 * scales are converted to float once per chunk of rows and blocks. */
#include <immintrin.h>
#include <string.h>

#include "qdot_impl.h"

enum {
    QK = 32,
    Q4_0_BYTES = 18, /* f16 d, u8 qs[16] */
    Q4_1_BYTES = 20, /* f16 d, f16 m, u8 qs[16] */
    Q5_0_BYTES = 22, /* f16 d, u8 qh[4], u8 qs[16] */
    Q5_1_BYTES = 24, /* f16 d, f16 m, u8 qh[4], u8 qs[16] */
    Q8_0_BYTES = 34, /* f16 d, i8 qs[32] */
    Q8_1_BYTES = 36, /* f16 d, f16 s, i8 qs[32] */
};

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

static inline uint16_t f32_to_f16(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- activation quantizers -------------------------------------------------------------- */

/* round(v) with halves away from zero (as roundf), NaN -> 0, clamped to [-127, 127], as int32.
 * v - trunc(v) is exact, so the half test is exact. */
static inline __m512i round_q8(__m512 v) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 half = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512i one = _mm512_castps_si512(_mm512_set1_ps(1.0f));
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), sign), one));
    __m512 r = _mm512_mask_add_ps(t, half, t, step);
    r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), r);
    r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvttps_epi32(r);
}

/* One block: scale to *d_out (f16), 32 quants to q; returns the quant sum. */
static inline int quant_block_8bit(const float *x, uint8_t *d_out, int8_t *q) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    /* max(|v|, acc) keeps acc in NaN lanes */
    const __m512 amax = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
    const float d = _mm512_reduce_max_ps(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    memcpy(d_out, &dh, sizeof dh);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i i0 = round_q8(_mm512_mul_ps(v0, vid));
    const __m512i i1 = round_q8(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(i1));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
}

static void quant_q8_0(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK <= n; i += QK, p += Q8_0_BYTES) quant_block_8bit(x + i, p, (int8_t *)(p + 2));
}

static void quant_q8_1(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK <= n; i += QK, p += Q8_1_BYTES) {
        const int sum = quant_block_8bit(x + i, p, (int8_t *)(p + 4));
        const uint16_t sh = f32_to_f16(load_f16(p) * (float)sum);
        memcpy(p + 2, &sh, sizeof sh);
    }
}

/* ---- two blocks per register ------------------------------------------------------------ */

/* Quants of two 4-bit blocks (16 bytes each) -> 64 bytes 0..15 in element order. */
static inline __m512i nibbles2(const uint8_t *qs0, const uint8_t *qs1) {
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                              _mm_loadu_si128((const __m128i *)qs1), 1);
    /* 128-bit lanes qs0, qs0, qs1, qs1; the second copy of each shifted to its high nibbles */
    const __m512i d = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(b));
    const __m512i s = _mm512_srlv_epi64(d, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(s, _mm512_set1_epi8(0x0f));
}

/* Bit 4 of the quants of two 5-bit blocks (qh fields at h0, h1): 0x10 where set. */
static inline __m512i high_bits2(const uint8_t *h0, const uint8_t *h1) {
    const __mmask64 k = (__mmask64)load_u32(h0) | ((__mmask64)load_u32(h1) << 32);
    return _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10));
}

/* 32 bytes at p0 then 32 at p1. */
static inline __m512i load_pair(const uint8_t *p0, const uint8_t *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* a in lanes 0..7, b in lanes 8..15 */
static inline __m512 pair_ps(float a, float b) {
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(a), 0xff00, _mm_set_ss(b));
}

static inline __m512 dot_u8s8(__m512i wu, __m512i xs) {
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wu, xs));
}

/* sum((q + bias) * x) - sum(bias * x) per lane, as float */
static inline __m512 dot_biased(__m512i wu, __m512i xs, __m512i bias) {
    const __m512i neg = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, xs));
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg, wu, xs));
}

/* ---- vec_dot, block quants --------------------------------------------------------------
 * Each loop takes two blocks; when one is left, b1 is the same block and its scale is 0. */

static float vec_dot_q4_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int64_t nb = n / QK;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2, pw += 2 * Q4_0_BYTES, px += 2 * Q8_0_BYTES) {
        const bool two = b + 1 < nb;
        const uint8_t *pw1 = two ? pw + Q4_0_BYTES : pw, *px1 = two ? px + Q8_0_BYTES : px;
        const __m512 s = dot_biased(nibbles2(pw + 2, pw1 + 2), load_pair(px + 2, px1 + 2), _mm512_set1_epi8(8));
        const __m512 scale = pair_ps(load_f16(pw) * load_f16(px), two ? load_f16(pw1) * load_f16(px1) : 0.0f);
        acc = _mm512_fmadd_ps(scale, s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static float vec_dot_q4_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int64_t nb = n / QK;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < nb; b += 2, pw += 2 * Q4_1_BYTES, px += 2 * Q8_1_BYTES) {
        const bool two = b + 1 < nb;
        const uint8_t *pw1 = two ? pw + Q4_1_BYTES : pw, *px1 = two ? px + Q8_1_BYTES : px;
        const __m512 s = dot_u8s8(nibbles2(pw + 4, pw1 + 4), load_pair(px + 4, px1 + 4));
        const __m512 scale = pair_ps(load_f16(pw) * load_f16(px), two ? load_f16(pw1) * load_f16(px1) : 0.0f);
        acc = _mm512_fmadd_ps(scale, s, acc);
        mins += load_f16(pw + 2) * load_f16(px + 2);
        if (two) mins += load_f16(pw1 + 2) * load_f16(px1 + 2);
    }
    return _mm512_reduce_add_ps(acc) + mins;
}

static float vec_dot_q5_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int64_t nb = n / QK;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2, pw += 2 * Q5_0_BYTES, px += 2 * Q8_0_BYTES) {
        const bool two = b + 1 < nb;
        const uint8_t *pw1 = two ? pw + Q5_0_BYTES : pw, *px1 = two ? px + Q8_0_BYTES : px;
        const __m512i q = _mm512_or_si512(nibbles2(pw + 6, pw1 + 6), high_bits2(pw + 2, pw1 + 2));
        const __m512 s = dot_biased(q, load_pair(px + 2, px1 + 2), _mm512_set1_epi8(16));
        const __m512 scale = pair_ps(load_f16(pw) * load_f16(px), two ? load_f16(pw1) * load_f16(px1) : 0.0f);
        acc = _mm512_fmadd_ps(scale, s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static float vec_dot_q5_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int64_t nb = n / QK;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < nb; b += 2, pw += 2 * Q5_1_BYTES, px += 2 * Q8_1_BYTES) {
        const bool two = b + 1 < nb;
        const uint8_t *pw1 = two ? pw + Q5_1_BYTES : pw, *px1 = two ? px + Q8_1_BYTES : px;
        const __m512i q = _mm512_or_si512(nibbles2(pw + 8, pw1 + 8), high_bits2(pw + 4, pw1 + 4));
        const __m512 s = dot_u8s8(q, load_pair(px + 4, px1 + 4));
        const __m512 scale = pair_ps(load_f16(pw) * load_f16(px), two ? load_f16(pw1) * load_f16(px1) : 0.0f);
        acc = _mm512_fmadd_ps(scale, s, acc);
        mins += load_f16(pw + 2) * load_f16(px + 2);
        if (two) mins += load_f16(pw1 + 2) * load_f16(px1 + 2);
    }
    return _mm512_reduce_add_ps(acc) + mins;
}

static float vec_dot_q8_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int64_t nb = n / QK;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2, pw += 2 * Q8_0_BYTES, px += 2 * Q8_0_BYTES) {
        const bool two = b + 1 < nb;
        const uint8_t *pw1 = two ? pw + Q8_0_BYTES : pw, *px1 = two ? px + Q8_0_BYTES : px;
        const __m512i q = _mm512_xor_si512(load_pair(pw + 2, pw1 + 2), bias); /* q + 128 */
        const __m512 s = dot_biased(q, load_pair(px + 2, px1 + 2), bias);
        const __m512 scale = pair_ps(load_f16(pw) * load_f16(px), two ? load_f16(pw1) * load_f16(px1) : 0.0f);
        acc = _mm512_fmadd_ps(scale, s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ---- vec_dot, float weights ------------------------------------------------------------- */

static inline __m512 load16_f32(const uint8_t *p, __mmask16 k) {
    return _mm512_maskz_loadu_ps(k, (const float *)(const void *)p);
}
static inline __m512 load16_f16(const uint8_t *p, __mmask16 k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}
static inline __m512 load16_bf16(const uint8_t *p, __mmask16 k) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

/* Four independent accumulators of 16 lanes; the tail is a masked load. */
#define FLOAT_DOT_BODY(load16, esize)                                                                \
    const uint8_t *pw = w;                                                                          \
    const float *fx = x;                                                                            \
    const __mmask16 all = 0xffff;                                                                   \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                     \
    int64_t i = 0;                                                                                  \
    for (; i + 64 <= n; i += 64) {                                                                  \
        a0 = _mm512_fmadd_ps(load16(pw + (i + 0) * (esize), all), _mm512_loadu_ps(fx + i + 0), a0); \
        a1 = _mm512_fmadd_ps(load16(pw + (i + 16) * (esize), all), _mm512_loadu_ps(fx + i + 16), a1); \
        a2 = _mm512_fmadd_ps(load16(pw + (i + 32) * (esize), all), _mm512_loadu_ps(fx + i + 32), a2); \
        a3 = _mm512_fmadd_ps(load16(pw + (i + 48) * (esize), all), _mm512_loadu_ps(fx + i + 48), a3); \
    }                                                                                               \
    for (; i < n; i += 16) {                                                                        \
        const __mmask16 k = n - i >= 16 ? all : (__mmask16)((1u << (n - i)) - 1u);                 \
        a0 = _mm512_fmadd_ps(load16(pw + i * (esize), k), _mm512_maskz_loadu_ps(k, fx + i), a0);   \
    }                                                                                               \
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));

static float vec_dot_f32(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load16_f32, 4) }
static float vec_dot_f16(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load16_f16, 2) }
static float vec_dot_bf16(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load16_bf16, 2) }

/* ---- gemm for Q4_1 and Q8_0 ------------------------------------------------------------- */

/* The tile loops over weight and activation rows have constant bounds after inlining; they are
 * unrolled so the accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 4")

enum {
    KB = 64, /* blocks per chunk whose scales are converted at once (even) */
    CB = 64, /* activation rows per chunk */
    RT = 4,  /* weight rows per tile */
    CT = 4,  /* activation rows per tile */
};

/* Float scales of one chunk: d (and m or s for the offset formats) per row and block. Entry
 * kn of wd/xd is 0, the scale of the missing partner of an odd last block. */
typedef struct {
    float xd[CB][KB + 1], xs[CB][KB]; /* activation rows: d, s (Q8_1 only) */
    float wd[RT][KB + 1], wm[RT][KB]; /* weight rows: d, m (Q4_1 only) */
} gemm_scales;

/* Sums over kn blocks for a tile of rn weight rows x cn activation rows (rn <= RT, cn <= CT,
 * constants after inlining). w[r], x[c]: first block of the chunk; wr, xc: index of the row
 * in the scale arrays. q4_1: Q4_1 weights with Q8_1 activations (adds m_w * s_x per block),
 * else Q8_0 with Q8_0. */
static inline __attribute__((always_inline)) void tile(const int rn, const int cn, const bool q4_1, int kn,
                                                       const uint8_t *const *w, const uint8_t *const *x,
                                                       const gemm_scales *sc, int wr, int xc, float out[RT][CT]) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    const size_t wb = q4_1 ? Q4_1_BYTES : Q8_0_BYTES;
    const size_t xb = q4_1 ? Q8_1_BYTES : Q8_0_BYTES;
    const size_t xq = q4_1 ? 4 : 2; /* offset of the quants in an activation block */
    for (int b = 0; b < kn; b += 2) {
        const int b1 = b + 1 < kn ? b + 1 : b;
        __m512i wq[RT];
        __m512 wd[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            const uint8_t *p0 = w[r] + (size_t)b * wb, *p1 = w[r] + (size_t)b1 * wb;
            wq[r] = q4_1 ? nibbles2(p0 + 4, p1 + 4) : _mm512_xor_si512(load_pair(p0 + 2, p1 + 2), bias);
            wd[r] = pair_ps(sc->wd[wr + r][b], sc->wd[wr + r][b + 1]);
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const __m512i xv = load_pair(x[c] + (size_t)b * xb + xq, x[c] + (size_t)b1 * xb + xq);
            const __m512 xd = pair_ps(sc->xd[xc + c][b], sc->xd[xc + c][b + 1]);
            /* Q8_0: start from -128 * sum(x) so that dpbusd with q + 128 gives sum(q * x) */
            const __m512i init = q4_1 ? _mm512_setzero_si512()
                                      : _mm512_sub_epi32(_mm512_setzero_si512(),
                                                         _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, xv));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wq[r], xv));
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(wd[r], xd), s, acc[r][c]);
            }
        }
    }
    if (q4_1) {
        UNROLL
        for (int r = 0; r < rn; r++)
            UNROLL
            for (int c = 0; c < cn; c++) {
                const float *wm = sc->wm[wr + r], *xs = sc->xs[xc + c];
                for (int b = 0; b < kn; b += 16) {
                    const __mmask16 k = kn - b >= 16 ? 0xffff : (__mmask16)((1u << (kn - b)) - 1u);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wm + b), _mm512_maskz_loadu_ps(k, xs + b),
                                                acc[r][c]);
                }
            }
    }
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) out[r][c] = _mm512_reduce_add_ps(acc[r][c]);
}

static inline __attribute__((always_inline)) void gemm_blocks(const bool q4_1, int64_t n, const void *w,
                                                              size_t w_stride, int nr, const void *x,
                                                              size_t x_stride, int nc, float *y, size_t ldy) {
    gemm_scales sc;
    const int64_t nb = n / QK;
    const size_t wb = q4_1 ? Q4_1_BYTES : Q8_0_BYTES;
    const size_t xb = q4_1 ? Q8_1_BYTES : Q8_0_BYTES;
    const uint8_t *w0 = w, *x0 = x;
    for (int c0 = 0; c0 < nc; c0 += CB) {
        const int cn = nc - c0 < CB ? nc - c0 : CB;
        for (int64_t k0 = 0; k0 < nb; k0 += KB) {
            const int kn = nb - k0 < KB ? (int)(nb - k0) : KB;
            for (int c = 0; c < cn; c++) {
                const uint8_t *p = x0 + (size_t)(c0 + c) * x_stride + (size_t)k0 * xb;
                for (int b = 0; b < kn; b++, p += xb) {
                    sc.xd[c][b] = load_f16(p);
                    if (q4_1) sc.xs[c][b] = load_f16(p + 2);
                }
                sc.xd[c][kn] = 0.0f;
            }
            for (int r0 = 0; r0 < nr; r0 += RT) {
                const int rn = nr - r0 < RT ? nr - r0 : RT;
                const uint8_t *wr[RT];
                for (int r = 0; r < rn; r++) {
                    wr[r] = w0 + (size_t)(r0 + r) * w_stride + (size_t)k0 * wb;
                    const uint8_t *p = wr[r];
                    for (int b = 0; b < kn; b++, p += wb) {
                        sc.wd[r][b] = load_f16(p);
                        if (q4_1) sc.wm[r][b] = load_f16(p + 2);
                    }
                    sc.wd[r][kn] = 0.0f;
                }
                for (int c = 0; c < cn; c += CT) {
                    const int ccn = cn - c < CT ? cn - c : CT;
                    const uint8_t *xr[CT];
                    for (int j = 0; j < ccn; j++) xr[j] = x0 + (size_t)(c0 + c + j) * x_stride + (size_t)k0 * xb;
                    float out[RT][CT], o[RT][CT];
                    if (rn == RT && ccn == CT) {
                        tile(RT, CT, q4_1, kn, wr, xr, &sc, 0, c, out);
                    } else if (rn == RT) { /* few activation rows: 1 when generating, 2-3 when verifying drafts */
                        if (ccn == 3) tile(RT, 3, q4_1, kn, wr, xr, &sc, 0, c, out);
                        else if (ccn == 2) tile(RT, 2, q4_1, kn, wr, xr, &sc, 0, c, out);
                        else tile(RT, 1, q4_1, kn, wr, xr, &sc, 0, c, out);
                    } else {
                        for (int r = 0; r < rn; r++) {
                            if (ccn == CT) {
                                tile(1, CT, q4_1, kn, wr + r, xr, &sc, r, c, o);
                                for (int j = 0; j < CT; j++) out[r][j] = o[0][j];
                            } else {
                                for (int j = 0; j < ccn; j++) {
                                    tile(1, 1, q4_1, kn, wr + r, xr + j, &sc, r, c + j, o);
                                    out[r][j] = o[0][0];
                                }
                            }
                        }
                    }
                    for (int j = 0; j < ccn; j++) {
                        float *yp = y + (size_t)(c0 + c + j) * ldy + (size_t)r0;
                        for (int r = 0; r < rn; r++) yp[r] = k0 == 0 ? out[r][j] : yp[r] + out[r][j];
                    }
                }
            }
        }
    }
}

static void gemm_q4_1(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                      float *y, size_t ldy) {
    gemm_blocks(true, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}

/* ---- gemm for Q8_0 ----------------------------------------------------------------------
 * Tiles of 4 weight rows x 4 activation rows over chunks of blocks, as above, but with the two
 * blocks of a register interleaved by 32-bit lane: even lanes hold block b, odd lanes block
 * b + 1 (the same permutation of bytes is applied to weights and activations, so each lane
 * still dots 4 matching bytes). The scale of lane pair (b, b + 1) is then one 64-bit
 * broadcast, and the products d_w * d_x of a whole tile are computed before its dot loop,
 * 16 to a register, into a small buffer.
 * The bias correction -128 * sum(x) of each activation block is computed once per chunk and
 * enters dpbusd as the starting value of one lane of its block (lanes 0 and 1, one masked
 * load), so the integer sum of each block stays exact. The activation quants are interleaved
 * once per chunk into a buffer, and with at least two tiles of activation rows so are the
 * quants + 128 of a weight tile. The 4 sums of a tile's activation row are reduced together and
 * stored as 4 adjacent outputs. With fewer than CT activation rows the tile setup would not
 * pay off, and gemm_blocks is used. */

enum { KP = KB / 2 + 1 }; /* block pairs per chunk, with room for an odd last block */

/* the scales of a pair of blocks for a weight tile fill 8 floats; sum4_ps reduces 4 rows */
_Static_assert(RT == 4, "the Q8_0 tile has 4 weight rows");

typedef struct {
    float xd[CB][KB + 2];    /* activation rows: d; entries from kn on are 0 */
    int32_t xc[CB][KB + 2];  /* activation rows: -128 * sum(q); entries from kn on are 0 */
    float wd[KP][RT][2];     /* weight rows of a tile: d of blocks 2p and 2p + 1 (0 from kn on) */
    float s[KP][CT][RT][2];  /* a tile's products d_w * d_x, per pair of blocks */
    __m512i wq[KP][RT];      /* weight rows of a tile: quants + 128 of blocks 2p and 2p + 1 interleaved */
    __m512i xq[CB][KP];      /* activation rows: quants of blocks 2p and 2p + 1 interleaved */
} q8_scales;

/* -128 * the sum of the 32 quants of a Q8_0 block */
static inline int32_t q8_bias_sum(const uint8_t *q) {
    const __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), _mm256_set1_epi8((char)0x80));
    const __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256()); /* 4 partial sums of q + 128 */
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    const int32_t t = (int32_t)_mm_cvtsi128_si64(_mm_add_epi64(h, _mm_unpackhi_epi64(h, h)));
    return -128 * (t - 32 * 128);
}

/* the 32 quants of the blocks at p0 and p1 interleaved by 32-bit lane */
static inline __m512i load_pair_il(const uint8_t *p0, const uint8_t *p1) {
    const __m512i idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    return _mm512_permutex2var_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)), idx,
                                     _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p1)));
}

/* the 64 bits at p in every 64-bit lane */
static inline __m512 bcast_pair(const float *p) {
    return _mm512_castsi512_ps(_mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}

/* the sums of a, b, c, d in lanes 0, 1, 2, 3 */
static inline __m128 sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    /* 128-bit quarter i holds 4 partial sums of the i-th argument */
    __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xb1));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4e));
    const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(first, t));
}

/* Sums over kn blocks for a tile of rn weight rows x cn activation rows (constants after
 * inlining); out[c][r] is the sum of weight row r with activation row c, 0 for r >= rn.
 * sc->wd holds the tile's weight scales, and with packed its quants in sc->wq, else they are
 * read from w; xc: index of the first activation row in sc (whose quants are in sc->xq). */
static inline __attribute__((always_inline)) void tile_q8(const int rn, const int cn, const bool packed, int kn,
                                                          const uint8_t *const *w, q8_scales *sc, int xc,
                                                          float out[CT][RT]) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const int np = (kn + 1) / 2;
    for (int p = 0; p < np; p++) {
        const __m512 wv = _mm512_broadcast_f32x8(_mm256_loadu_ps(&sc->wd[p][0][0]));
        UNROLL
        for (int c = 0; c < cn; c += 2) {
            const int c1 = c + 1 < cn ? c + 1 : c;
            const __m512 xv = _mm512_mask_mov_ps(bcast_pair(&sc->xd[xc + c][2 * p]), 0xff00,
                                                 bcast_pair(&sc->xd[xc + c1][2 * p]));
            const __m512 s = _mm512_mul_ps(wv, xv);
            if (c + 1 < cn) _mm512_storeu_ps(&sc->s[p][c][0][0], s);
            else _mm256_storeu_ps(&sc->s[p][c][0][0], _mm512_castps512_ps256(s));
        }
    }
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < RT; r++)
        UNROLL
        for (int c = 0; c < CT; c++) acc[r][c] = _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        const size_t o0 = (size_t)(2 * p) * Q8_0_BYTES + 2;
        const size_t o1 = 2 * p + 1 < kn ? o0 + Q8_0_BYTES : o0;
        __m512i wq[RT];
        UNROLL
        for (int r = 0; r < rn; r++)
            wq[r] = packed ? sc->wq[p][r] : _mm512_xor_si512(load_pair_il(w[r] + o0, w[r] + o1), bias);
        UNROLL
        for (int c = 0; c < cn; c++) {
            const __m512i xv = sc->xq[xc + c][p];
            const __m512i init = _mm512_maskz_loadu_epi32(0x3, &sc->xc[xc + c][2 * p]);
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wq[r], xv));
                acc[r][c] = _mm512_fmadd_ps(bcast_pair(sc->s[p][c][r]), s, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++) _mm_storeu_ps(out[c], sum4_ps(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
}

/* tile_q8 for a run-time number of weight rows rn <= RT */
static inline __attribute__((always_inline)) void tile_q8_rows(int rn, const int cn, const bool packed, int kn,
                                                               const uint8_t *const *w, q8_scales *sc, int xc,
                                                               float out[CT][RT]) {
    switch (rn) {
    case 4: tile_q8(4, cn, packed, kn, w, sc, xc, out); break;
    case 3: tile_q8(3, cn, packed, kn, w, sc, xc, out); break;
    case 2: tile_q8(2, cn, packed, kn, w, sc, xc, out); break;
    default: tile_q8(1, cn, packed, kn, w, sc, xc, out); break;
    }
}

static void gemm_q8_0(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                      float *y, size_t ldy) {
    if (nc < CT) { /* one or a few activation rows (generating): the tile setup would not pay off */
        gemm_blocks(false, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
        return;
    }
    q8_scales sc;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const int64_t nb = n / QK;
    const uint8_t *w0 = w, *x0 = x;
    for (int c0 = 0; c0 < nc; c0 += CB) {
        const int cn = nc - c0 < CB ? nc - c0 : CB;
        for (int64_t k0 = 0; k0 < nb; k0 += KB) {
            const int kn = nb - k0 < KB ? (int)(nb - k0) : KB;
            for (int c = 0; c < cn; c++) {
                const uint8_t *p = x0 + (size_t)(c0 + c) * x_stride + (size_t)k0 * Q8_0_BYTES;
                for (int b = 0; b < kn; b++, p += Q8_0_BYTES) {
                    sc.xd[c][b] = load_f16(p);
                    sc.xc[c][b] = q8_bias_sum(p + 2);
                }
                sc.xd[c][kn] = sc.xd[c][kn + 1] = 0.0f;
                sc.xc[c][kn] = sc.xc[c][kn + 1] = 0;
                p = x0 + (size_t)(c0 + c) * x_stride + (size_t)k0 * Q8_0_BYTES + 2;
                for (int b = 0; b < kn; b += 2) {
                    const size_t o0 = (size_t)b * Q8_0_BYTES, o1 = b + 1 < kn ? o0 + Q8_0_BYTES : o0;
                    sc.xq[c][b / 2] = load_pair_il(p + o0, p + o1);
                }
            }
            for (int r0 = 0; r0 < nr; r0 += RT) {
                const int rn = nr - r0 < RT ? nr - r0 : RT;
                const uint8_t *wr[RT];
                for (int r = 0; r < RT; r++) {
                    if (r < rn) {
                        wr[r] = w0 + (size_t)(r0 + r) * w_stride + (size_t)k0 * Q8_0_BYTES;
                        const uint8_t *p = wr[r];
                        for (int b = 0; b < kn; b++, p += Q8_0_BYTES) sc.wd[b / 2][r][b % 2] = load_f16(p);
                        if (kn % 2) sc.wd[kn / 2][r][1] = 0.0f;
                    } else {
                        for (int b = 0; b < kn + 1; b += 2) sc.wd[b / 2][r][0] = sc.wd[b / 2][r][1] = 0.0f;
                    }
                }
                /* with at least two tiles of activation rows, the weight quants are unpacked once */
                const bool packed = cn >= 2 * CT;
                for (int r = 0; r < (packed ? rn : 0); r++)
                    for (int b = 0; b < kn; b += 2) {
                        const size_t o0 = (size_t)b * Q8_0_BYTES + 2, o1 = b + 1 < kn ? o0 + Q8_0_BYTES : o0;
                        sc.wq[b / 2][r] = _mm512_xor_si512(load_pair_il(wr[r] + o0, wr[r] + o1), bias);
                    }
                const __mmask8 rm = (__mmask8)((1u << rn) - 1u);
                for (int c = 0; c < cn; c += CT) {
                    const int ccn = cn - c < CT ? cn - c : CT;
                    float out[CT][RT];
                    if (ccn == CT) {
                        if (packed) tile_q8_rows(rn, CT, true, kn, wr, &sc, c, out);
                        else tile_q8_rows(rn, CT, false, kn, wr, &sc, c, out);
                    } else { /* few activation rows (one when generating) */
                        for (int j = 0; j < ccn; j++) {
                            if (packed) tile_q8_rows(rn, 1, true, kn, wr, &sc, c + j, out + j);
                            else tile_q8_rows(rn, 1, false, kn, wr, &sc, c + j, out + j);
                        }
                    }
                    for (int j = 0; j < ccn; j++) {
                        float *yp = y + (size_t)(c0 + c + j) * ldy + (size_t)r0;
                        const __m128 v = _mm_loadu_ps(out[j]);
                        _mm_mask_storeu_ps(yp, rm, k0 == 0 ? v : _mm_add_ps(_mm_maskz_loadu_ps(rm, yp), v));
                    }
                }
            }
        }
    }
}

/* ---- gemm for float weights -------------------------------------------------------------
 * A tile of FRT weight rows x FCT activation rows keeps FRT * FCT accumulators of 16 lanes and
 * adds 16 products per FMA along k; at the end the FRT sums of one activation row are reduced
 * together into FRT adjacent outputs. k is split into chunks of at most FKC elements. With
 * enough activation rows, F16 and BF16 weight rows are converted to f32 once per chunk into a
 * buffer that every activation row of the chunk reuses; otherwise they are converted in
 * registers as they are loaded. */

/* as UNROLL, for the wider float tiles */
#define FUNROLL _Pragma("GCC unroll 8")

enum {
    FRT = 4,    /* weight rows per tile */
    FCT = 6,    /* activation rows per tile */
    FCB = 64,   /* activation rows per chunk (kept in L2 while the weight rows are swept) */
    FKC = 1024, /* elements per k chunk (a multiple of 16) */
    FCONV = 8,  /* fewest activation rows for which F16 / BF16 rows are converted to a buffer */
};

/* 16 elements of a row of dtype et at element i, as f32; lanes outside k are 0. */
static inline __m512 load16_as_f32(const int et, const void *row, int64_t i, __mmask16 k) {
    const uint8_t *p = row;
    if (et == SLM_DT_F16) return load16_f16(p + i * 2, k);
    if (et == SLM_DT_BF16) return load16_bf16(p + i * 2, k);
    return load16_f32(p + i * 4, k);
}

/* [sum a, sum b, sum c, sum d] */
static inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* per 128-bit lane: a0+a2 b0+b2 a1+a3 b1+b3, and the same for c, d */
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Dots of kn elements for rn weight rows (dtype et, w[r]) x cn f32 activation rows (x[c]),
 * rn in {1, FRT}, cn <= FCT, constants after inlining. y[c * ldy + r] is set, or added to when
 * add is true. */
static inline __attribute__((always_inline)) void ftile(const int et, const int rn, const int cn, int64_t kn,
                                                        const void *const *w, const float *const *x, float *y,
                                                        size_t ldy, bool add) {
    const __mmask16 all = 0xffff;
    __m512 acc[FRT][FCT];
    FUNROLL
    for (int r = 0; r < rn; r++)
        FUNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= kn; i += 16) {
        __m512 wv[FRT];
        FUNROLL
        for (int r = 0; r < rn; r++) wv[r] = load16_as_f32(et, w[r], i, all);
        FUNROLL
        for (int c = 0; c < cn; c++) {
            const __m512 xv = _mm512_loadu_ps(x[c] + i);
            FUNROLL
            for (int r = 0; r < rn; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    if (i < kn) {
        const __mmask16 k = (__mmask16)((1u << (kn - i)) - 1u);
        __m512 wv[FRT];
        FUNROLL
        for (int r = 0; r < rn; r++) wv[r] = load16_as_f32(et, w[r], i, k);
        FUNROLL
        for (int c = 0; c < cn; c++) {
            const __m512 xv = _mm512_maskz_loadu_ps(k, x[c] + i);
            FUNROLL
            for (int r = 0; r < rn; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    FUNROLL
    for (int c = 0; c < cn; c++) {
        float *yc = y + (size_t)c * ldy;
        if (rn == FRT) {
            __m128 s = reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
            if (add) s = _mm_add_ps(s, _mm_loadu_ps(yc));
            _mm_storeu_ps(yc, s);
        } else {
            FUNROLL
            for (int r = 0; r < rn; r++) {
                const float s = _mm512_reduce_add_ps(acc[r][c]);
                yc[r] = add ? yc[r] + s : s;
            }
        }
    }
}

/* One k chunk of a row group: rn weight rows (dtype et) against cn activation rows. */
static inline __attribute__((always_inline)) void fchunk(const int et, int rn, int cn, int64_t kn,
                                                         const void *const *w, const float *const *x, float *y,
                                                         size_t ldy, bool add) {
    for (int c = 0; c < cn; c += FCT) {
        const int ccn = cn - c < FCT ? cn - c : FCT;
        const float *const *xc = x + c;
        float *yc = y + (size_t)c * ldy;
        if (rn == FRT && ccn == FCT) {
            ftile(et, FRT, FCT, kn, w, xc, yc, ldy, add);
        } else if (rn == FRT) { /* few activation rows (one when generating) */
            for (int j = 0; j < ccn; j++) ftile(et, FRT, 1, kn, w, xc + j, yc + (size_t)j * ldy, ldy, add);
        } else {
            for (int r = 0; r < rn; r++) {
                if (ccn == FCT) {
                    ftile(et, 1, FCT, kn, w + r, xc, yc + r, ldy, add);
                } else {
                    for (int j = 0; j < ccn; j++)
                        ftile(et, 1, 1, kn, w + r, xc + j, yc + (size_t)j * ldy + r, ldy, add);
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void gemm_float(const int et, int64_t n, const void *w,
                                                             size_t w_stride, int nr, const void *x,
                                                             size_t x_stride, int nc, float *y, size_t ldy) {
    float buf[FRT][FKC];
    const size_t esize = et == SLM_DT_F32 ? 4 : 2;
    const uint8_t *w0 = w, *x0 = x;
    /* k chunks of near-equal size, multiples of 16 where n allows */
    const int64_t nk = (n + FKC - 1) / FKC;
    const int64_t kc = nk <= 1 ? n : ((n + nk - 1) / nk + 15) / 16 * 16;
    for (int c0 = 0; c0 < nc; c0 += FCB) {
        const int cn = nc - c0 < FCB ? nc - c0 : FCB;
        const bool convert = et != SLM_DT_F32 && cn >= FCONV;
        for (int r0 = 0; r0 < nr; r0 += FRT) {
            const int rn = nr - r0 < FRT ? nr - r0 : FRT;
            for (int64_t k0 = 0; k0 < n; k0 += kc) {
                const int64_t kn = n - k0 < kc ? n - k0 : kc;
                const void *wr[FRT];
                const float *xr[FCB];
                for (int r = 0; r < rn; r++) {
                    const uint8_t *p = w0 + (size_t)(r0 + r) * w_stride + (size_t)k0 * esize;
                    wr[r] = p;
                    if (convert) {
                        for (int64_t i = 0; i < kn; i += 16) {
                            const __mmask16 k = kn - i >= 16 ? 0xffff : (__mmask16)((1u << (kn - i)) - 1u);
                            _mm512_mask_storeu_ps(buf[r] + i, k, load16_as_f32(et, p, i, k));
                        }
                        wr[r] = buf[r];
                    }
                }
                for (int c = 0; c < cn; c++)
                    xr[c] = (const float *)(const void *)(x0 + (size_t)(c0 + c) * x_stride) + k0;
                float *yp = y + (size_t)c0 * ldy + (size_t)r0;
                if (et == SLM_DT_F32 || convert) fchunk(SLM_DT_F32, rn, cn, kn, wr, xr, yp, ldy, k0 > 0);
                else fchunk(et, rn, cn, kn, wr, xr, yp, ldy, k0 > 0);
            }
        }
    }
}

static void gemm_f32(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                     float *y, size_t ldy) {
    gemm_float(SLM_DT_F32, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}

static void gemm_f16(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                     float *y, size_t ldy) {
    gemm_float(SLM_DT_F16, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}

static void gemm_bf16(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                      float *y, size_t ldy) {
    gemm_float(SLM_DT_BF16, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}

void slm_qdot_fill_avx512(slm_kernels *k) {
    k->quant_act[SLM_DT_Q8_0] = quant_q8_0;
    k->quant_act[SLM_DT_Q8_1] = quant_q8_1;
    k->vec_dot[SLM_DT_Q4_0] = vec_dot_q4_0;
    k->vec_dot[SLM_DT_Q4_1] = vec_dot_q4_1;
    k->vec_dot[SLM_DT_Q5_0] = vec_dot_q5_0;
    k->vec_dot[SLM_DT_Q5_1] = vec_dot_q5_1;
    k->vec_dot[SLM_DT_Q8_0] = vec_dot_q8_0;
    k->vec_dot[SLM_DT_F32] = vec_dot_f32;
    k->vec_dot[SLM_DT_F16] = vec_dot_f16;
    k->vec_dot[SLM_DT_BF16] = vec_dot_bf16;
    k->gemm[SLM_DT_Q4_1] = gemm_q4_1;
    k->gemm[SLM_DT_Q8_0] = gemm_q8_0;
    k->gemm[SLM_DT_F32] = gemm_f32;
    k->gemm[SLM_DT_F16] = gemm_f16;
    k->gemm[SLM_DT_BF16] = gemm_bf16;
}
