/* qdot_avx2.c - AVX2 + FMA + F16C kernels for the 32-element block formats, float weights and
 * the activation quantizers. Scalar twins: qdot_scalar.c (same results up to float summation
 * order; the quantizers give the same bytes).
 *
 * Integer dots: a 32-byte register holds one block. Unsigned weights (Q4_1, Q5_1) multiply the
 * signed activations directly with maddubs (u8 x s8 -> pairs summed to s16, no overflow since
 * |q_w * q_x| * 2 <= 31 * 127 * 2); signed weights (Q4_0, Q5_0, Q8_0) use |w| x sign(x, w).
 * madd with ones widens the pairs to 8 int32 sums; the block's float scale is applied once.
 *
 * The gemm for Q4_1 and Q8_0 computes a tile of 2 weight rows x 4 activation rows at a time,
 * so each unpacked weight block serves 4 activation rows and each activation block 2 weight
 * rows; the f16 scales are converted to float once per chunk of rows and blocks. */
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

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* ---- activation quantizers -------------------------------------------------------------- */

/* round(v) with halves away from zero (as roundf), NaN -> 0, clamped to [-127, 127], as int32.
 * v - trunc(v) is exact, so the half test is exact. */
static inline __m256i round_q8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 half = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f)); /* +-1 */
    __m256 r = _mm256_add_ps(t, _mm256_and_ps(half, step));
    r = _mm256_and_ps(r, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(r);
}

/* One block: scale to *d_out (f16), 32 quants to q; returns the quant sum. */
static inline int quant_block_8bit(const float *x, uint8_t *d_out, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), amax); /* NaN lanes keep amax */
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    memcpy(d_out, &dh, sizeof dh);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = round_q8(_mm256_mul_ps(v[k], vid));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    /* packs work per 128-bit lane: the dwords come out as 0a 1a 2a 3a 0b 1b 2b 3b */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    const __m256i ordered = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, ordered);
    return hsum_epi32(sum);
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

/* ---- weight unpacking ------------------------------------------------------------------- */

/* 16 bytes of nibbles -> 32 bytes 0..15: low nibbles are elements 0..15, high ones 16..31. */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(b, m);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm256_set_m128i(hi, lo);
}

/* 32 bits (little-endian at p) -> 32 bytes, 0xff where bit j is set. */
static inline __m256i spread_bits(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, sizeof bits);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x(0x8040201008040201LL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

/* 8 int32 sums of the products of 32 unsigned weights with 32 signed activations. */
static inline __m256i dot_u8s8(__m256i wu, __m256i xs) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xs), _mm256_set1_epi16(1));
}

/* The same for signed weights (|w| x sign(x, w)); activations are in -127..127. */
static inline __m256i dot_s8s8(__m256i ws, __m256i xs) {
    return dot_u8s8(_mm256_abs_epi8(ws), _mm256_sign_epi8(xs, ws));
}

static inline __m256i load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- vec_dot, block quants -------------------------------------------------------------- */

static float vec_dot_q4_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q4_0_BYTES, px += Q8_0_BYTES) {
        const __m256i q = _mm256_sub_epi8(unpack_nibbles(pw + 2), _mm256_set1_epi8(8));
        const __m256 s = _mm256_cvtepi32_ps(dot_s8s8(q, load32(px + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(pw) * load_f16(px)), s, acc);
    }
    return hsum_ps(acc);
}

static float vec_dot_q4_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q4_1_BYTES, px += Q8_1_BYTES) {
        const __m256 s = _mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(pw + 4), load32(px + 4)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(pw) * load_f16(px)), s, acc);
        mins += load_f16(pw + 2) * load_f16(px + 2);
    }
    return hsum_ps(acc) + mins;
}

static float vec_dot_q5_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q5_0_BYTES, px += Q8_0_BYTES) {
        /* q - 16: the nibble, with 0xf0 (-16 as int8) where bit 4 is clear */
        const __m256i hi = _mm256_andnot_si256(spread_bits(pw + 2), _mm256_set1_epi8((char)0xf0));
        const __m256i q = _mm256_or_si256(unpack_nibbles(pw + 6), hi);
        const __m256 s = _mm256_cvtepi32_ps(dot_s8s8(q, load32(px + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(pw) * load_f16(px)), s, acc);
    }
    return hsum_ps(acc);
}

static float vec_dot_q5_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q5_1_BYTES, px += Q8_1_BYTES) {
        const __m256i hi = _mm256_and_si256(spread_bits(pw + 4), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(unpack_nibbles(pw + 8), hi);
        const __m256 s = _mm256_cvtepi32_ps(dot_u8s8(q, load32(px + 4)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(pw) * load_f16(px)), s, acc);
        mins += load_f16(pw + 2) * load_f16(px + 2);
    }
    return hsum_ps(acc) + mins;
}

static float vec_dot_q8_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q8_0_BYTES, px += Q8_0_BYTES) {
        const __m256 s = _mm256_cvtepi32_ps(dot_s8s8(load32(pw + 2), load32(px + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(pw) * load_f16(px)), s, acc);
    }
    return hsum_ps(acc);
}

/* ---- vec_dot, float weights ------------------------------------------------------------- */

static inline __m256 load8_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)(const void *)p); }
static inline __m256 load8_f16(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 load8_bf16(const uint8_t *p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

static inline float scalar_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline float scalar_bf16(const uint8_t *p) {
    uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Four independent accumulators of 8 lanes; the tail (n not a multiple of 8) is scalar. */
#define FLOAT_DOT_BODY(load8, scalar1, esize)                                                          \
    const uint8_t *pw = w;                                                                            \
    const float *fx = x;                                                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                       \
    int64_t i = 0;                                                                                    \
    for (; i + 32 <= n; i += 32) {                                                                    \
        a0 = _mm256_fmadd_ps(load8(pw + (i + 0) * (esize)), _mm256_loadu_ps(fx + i + 0), a0);        \
        a1 = _mm256_fmadd_ps(load8(pw + (i + 8) * (esize)), _mm256_loadu_ps(fx + i + 8), a1);        \
        a2 = _mm256_fmadd_ps(load8(pw + (i + 16) * (esize)), _mm256_loadu_ps(fx + i + 16), a2);      \
        a3 = _mm256_fmadd_ps(load8(pw + (i + 24) * (esize)), _mm256_loadu_ps(fx + i + 24), a3);      \
    }                                                                                                 \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8(pw + i * (esize)), _mm256_loadu_ps(fx + i), a0); \
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));                 \
    for (; i < n; i++) sum += scalar1(pw + i * (esize)) * fx[i];                                      \
    return sum;

static float vec_dot_f32(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load8_f32, scalar_f32, 4) }
static float vec_dot_f16(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load8_f16, load_f16, 2) }
static float vec_dot_bf16(const void *w, const void *x, int64_t n) { FLOAT_DOT_BODY(load8_bf16, scalar_bf16, 2) }

/* ---- gemm for Q4_1 and Q8_0 ------------------------------------------------------------- */

/* The tile loops over weight and activation rows have constant bounds after inlining; they are
 * unrolled so the accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 4")

enum {
    KB = 64, /* blocks per chunk whose scales are converted at once */
    CB = 64, /* activation rows per chunk */
    RT = 2,  /* weight rows per tile */
    CT = 4,  /* activation rows per tile */
};

/* Float scales of one chunk: d (and m or s for the offset formats) per row and block. */
typedef struct {
    float xd[CB][KB], xs[CB][KB]; /* activation rows: d, s (Q8_1 only) */
    float wd[RT][KB], wm[RT][KB]; /* weight rows: d, m (Q4_1 only) */
} gemm_scales;

/* Sums over kn blocks for a tile of rn weight rows x cn activation rows (rn <= RT, cn <= CT,
 * constants after inlining). w[r], x[c]: first block of the chunk; wr, xc: index of the row
 * in the scale arrays. q4_1: Q4_1 weights with Q8_1 activations (adds m_w * s_x per block),
 * else Q8_0 with Q8_0. */
static inline __attribute__((always_inline)) void tile(const int rn, const int cn, const bool q4_1, int kn,
                                                       const uint8_t *const *w, const uint8_t *const *x,
                                                       const gemm_scales *sc, int wr, int xc, float out[RT][CT]) {
    __m256 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm256_setzero_ps();
    const size_t wb = q4_1 ? Q4_1_BYTES : Q8_0_BYTES;
    const size_t xb = q4_1 ? Q8_1_BYTES : Q8_0_BYTES;
    const size_t xq = q4_1 ? 4 : 2; /* offset of the quants in an activation block */
    for (int b = 0; b < kn; b++) {
        __m256i wq[RT], wabs[RT];
        __m256 wd[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            const uint8_t *p = w[r] + (size_t)b * wb;
            wq[r] = q4_1 ? unpack_nibbles(p + 4) : load32(p + 2);
            wabs[r] = q4_1 ? wq[r] : _mm256_abs_epi8(wq[r]);
            wd[r] = _mm256_set1_ps(sc->wd[wr + r][b]);
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const __m256i xv = load32(x[c] + (size_t)b * xb + xq);
            const __m256 xd = _mm256_set1_ps(sc->xd[xc + c][b]);
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m256i xs = q4_1 ? xv : _mm256_sign_epi8(xv, wq[r]);
                const __m256 s = _mm256_cvtepi32_ps(dot_u8s8(wabs[r], xs));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wd[r], xd), s, acc[r][c]);
            }
        }
    }
    if (q4_1) {
        UNROLL
        for (int r = 0; r < rn; r++)
            UNROLL
            for (int c = 0; c < cn; c++) {
                const float *wm = sc->wm[wr + r], *xs = sc->xs[xc + c];
                int b = 0;
                for (; b + 8 <= kn; b += 8)
                    acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(wm + b), _mm256_loadu_ps(xs + b), acc[r][c]);
                float tail = 0.0f;
                for (; b < kn; b++) tail += wm[b] * xs[b];
                out[r][c] = hsum_ps(acc[r][c]) + tail;
            }
    } else {
        UNROLL
        for (int r = 0; r < rn; r++)
            UNROLL
            for (int c = 0; c < cn; c++) out[r][c] = hsum_ps(acc[r][c]);
    }
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

static void gemm_q8_0(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, int nc,
                      float *y, size_t ldy) {
    gemm_blocks(false, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
}

/* ---- gemm for float weights -------------------------------------------------------------
 * A tile of FRT weight rows x FCT activation rows keeps FRT * FCT accumulators of 8 lanes and
 * adds 8 products per FMA along k; at the end the FRT sums of one activation row are reduced
 * together into FRT adjacent outputs. k is split into chunks of at most FKC elements. With
 * enough activation rows, F16 and BF16 weight rows are converted to f32 once per chunk into a
 * buffer that every activation row of the chunk reuses; otherwise they are converted in
 * registers as they are loaded. A last piece of fewer than 8 elements goes through a
 * zero-padded copy. */

enum {
    FRT = 4,    /* weight rows per tile */
    FCT = 2,    /* activation rows per tile */
    FCB = 64,   /* activation rows per chunk (kept in L2 while the weight rows are swept) */
    FKC = 1024, /* elements per k chunk (a multiple of 8) */
    FCONV = 8,  /* fewest activation rows for which F16 / BF16 rows are converted to a buffer */
};

/* 8 elements of a row of dtype et at element i, as f32. */
static inline __m256 load8_as_f32(const int et, const void *row, int64_t i) {
    const uint8_t *p = row;
    if (et == SLM_DT_F16) return load8_f16(p + i * 2);
    if (et == SLM_DT_BF16) return load8_bf16(p + i * 2);
    return load8_f32(p + i * 4);
}

/* Element i of a row of dtype et. */
static inline float load1_as_f32(const int et, const void *row, int64_t i) {
    const uint8_t *p = row;
    if (et == SLM_DT_F16) return load_f16(p + i * 2);
    if (et == SLM_DT_BF16) return scalar_bf16(p + i * 2);
    return scalar_f32(p + i * 4);
}

/* [sum a, sum b, sum c, sum d] */
static inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    /* per 128-bit lane: a, b, c, d partial sums */
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Dots of kn elements for rn weight rows (dtype et, w[r]) x cn f32 activation rows (x[c]),
 * rn in {1, FRT}, cn <= FCT, constants after inlining. y[c * ldy + r] is set, or added to when
 * add is true. */
static inline __attribute__((always_inline)) void ftile(const int et, const int rn, const int cn, int64_t kn,
                                                        const void *const *w, const float *const *x, float *y,
                                                        size_t ldy, bool add) {
    __m256 acc[FRT][FCT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= kn; i += 8) {
        __m256 wv[FRT];
        UNROLL
        for (int r = 0; r < rn; r++) wv[r] = load8_as_f32(et, w[r], i);
        UNROLL
        for (int c = 0; c < cn; c++) {
            const __m256 xv = _mm256_loadu_ps(x[c] + i);
            UNROLL
            for (int r = 0; r < rn; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    if (i < kn) {
        float wt[FRT][8] = {{0}}, xt[FCT][8] = {{0}};
        for (int64_t j = i; j < kn; j++) {
            for (int r = 0; r < rn; r++) wt[r][j - i] = load1_as_f32(et, w[r], j);
            for (int c = 0; c < cn; c++) xt[c][j - i] = x[c][j];
        }
        UNROLL
        for (int c = 0; c < cn; c++)
            UNROLL
            for (int r = 0; r < rn; r++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(wt[r]), _mm256_loadu_ps(xt[c]), acc[r][c]);
    }
    UNROLL
    for (int c = 0; c < cn; c++) {
        float *yc = y + (size_t)c * ldy;
        if (rn == FRT) {
            __m128 s = reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
            if (add) s = _mm_add_ps(s, _mm_loadu_ps(yc));
            _mm_storeu_ps(yc, s);
        } else {
            UNROLL
            for (int r = 0; r < rn; r++) {
                const float s = hsum_ps(acc[r][c]);
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
    /* k chunks of near-equal size, multiples of 8 where n allows */
    const int64_t nk = (n + FKC - 1) / FKC;
    const int64_t kc = nk <= 1 ? n : ((n + nk - 1) / nk + 7) / 8 * 8;
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
                        int64_t i = 0;
                        for (; i + 8 <= kn; i += 8) _mm256_storeu_ps(buf[r] + i, load8_as_f32(et, p, i));
                        for (; i < kn; i++) buf[r][i] = load1_as_f32(et, p, i);
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

void slm_qdot_fill_avx2(slm_kernels *k) {
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
