/* qdot_sp_avx2.c - AVX2 + FMA + F16C kernels of the sparse formats (core/sparse.h) against
 * Q8_0 activations. Scalar twin: qdot_sp_scalar.c (same integer sums, float summation order
 * differs).
 *
 * Every 32-weight block is expanded to its 32 signed weights, one byte each, pruned ones 0, by
 * byte shuffles:
 *   2:4:          one in-lane shuffle (lane 0: weights 0..15, lane 1: 16..31) of the 16 kept
 *                 values (4-bit ones unpacked and shifted to -8..7) in both lanes; a table
 *                 indexed by a metadata byte (two groups) gives the 8 shuffle indices of its
 *                 two groups (kept value 0..3, or 0x80 for a pruned weight), offset by 4 per
 *                 metadata byte within the lane;
 *   unstructured: 8 weights at a time: 8 bytes loaded at the value pointer are spread by a
 *                 shuffle whose indices come from a table indexed by the mask byte (for each
 *                 of its 8 weights the rank of its bit among the byte's set bits, or 0x80);
 *                 the pointer then moves by the byte's popcount. A load that would pass the
 *                 row's end is moved back to end there, its indices shifted by as much.
 *                 4-bit values: the 8 bytes holding them are unpacked to 16 nibbles (signed
 *                 bytes) first, the indices shifted by the nibble offset.
 * The dense dot is then q8_0's: maddubs(|w|, x with the sign of w) sums pairs to int16 (no
 * saturation: |w| <= 128, |x| <= 127), madd with ones to int32, converted and accumulated
 * with d_w * d_x.
 *
 * With fewer than CT activation rows the gemm computes tiles of RT weight rows x 1 activation
 * row, each weight block expanded once per tile; the dot is the 1 x 1 tile. With more, each
 * tile of weight rows is expanded once per chunk of blocks into a buffer read by every tile of
 * CT activation rows. */
#include <immintrin.h>
#include <string.h>

#include "core/sparse.h"
#include "qdot_impl.h"

enum {
    QK = 32,
    Q8_0_BYTES = 34, /* f16 d, i8 q[32] */
    RT = 2,          /* weight rows per tile */
    CT = 4,          /* activation rows per tile */
};

typedef enum { K_S24Q8, K_S24Q4, K_US, K_US4 } kind;

static uint64_t g_tab24[256]; /* 2:4: shuffle indices of the 8 weights of a metadata byte */
static uint64_t g_tabus[256]; /* unstructured: rank of each set bit of a mask byte, else 0x80 */

static void init_tables(void) {
    for (int m = 0; m < 256; m++) {
        uint64_t t24 = 0, tus = 0;
        for (int j = 0; j < 2; j++) {
            const int nib = (m >> (4 * j)) & 15, p0 = nib & 3, p1 = nib >> 2;
            for (int p = 0; p < 4; p++) {
                const uint64_t ix = p == p0 ? (uint64_t)(2 * j) : p == p1 ? (uint64_t)(2 * j + 1) : 0x80;
                t24 |= ix << (8 * (4 * j + p));
            }
        }
        int rank = 0;
        for (int i = 0; i < 8; i++) tus |= (uint64_t)((m >> i & 1) ? rank++ : 0x80) << (8 * i);
        g_tab24[m] = t24;
        g_tabus[m] = tus;
    }
}

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* v added to every byte of a table entry (no carries: entries stay below 0x80 + 16) */
#define BYTES(v) ((uint64_t)(v) * 0x0101010101010101ull)

/* 32 signed weights of a 2:4 block at p */
static inline __attribute__((always_inline)) __m256i expand_s24(const kind kd, const uint8_t *p) {
    __m128i v;
    if (kd == K_S24Q8) {
        v = _mm_loadu_si128((const __m128i *)(p + 6));
    } else {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(p + 6));
        const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(15));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15));
        v = _mm_sub_epi8(_mm_unpacklo_epi64(lo, hi), _mm_set1_epi8(8));
    }
    const uint8_t *m = p + 2;
    const __m256i ctrl = _mm256_setr_epi64x((long long)g_tab24[m[0]], (long long)(g_tab24[m[1]] + BYTES(4)),
                                            (long long)(g_tab24[m[2]] + BYTES(8)),
                                            (long long)(g_tab24[m[3]] + BYTES(12)));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(v), ctrl);
}

/* 8 weights of mask byte m from the values at src: an 8-byte load spread by the table entry of
 * m. A load that would pass the end of the row's values (end) is moved back to end there (a
 * row has at least 12 header bytes before its values), its indices shifted by as much. */
static inline __m128i expand8(unsigned m, const int8_t *src, const int8_t *end) {
    const int8_t *base = end - src >= 8 ? src : end - 8;
    const __m128i vals = _mm_loadl_epi64((const __m128i *)base);
    const __m128i ctrl = _mm_add_epi8(_mm_loadl_epi64((const __m128i *)&g_tabus[m]), _mm_set1_epi8((char)(src - base)));
    return _mm_shuffle_epi8(vals, ctrl);
}

/* 32 signed weights of the unstructured block with header h, values from *v (moved past
 * them), 8 at a time; the four value offsets are popcounts of the mask's low bytes */
static inline __m256i expand_us(const uint8_t *h, const int8_t **v, const int8_t *end) {
    const uint32_t mask = load_u32(h + 2);
    const int8_t *p = *v;
    const __m128i a = expand8(mask & 0xff, p, end);
    const __m128i b = expand8((mask >> 8) & 0xff, p + __builtin_popcount(mask & 0xff), end);
    const __m128i c = expand8((mask >> 16) & 0xff, p + __builtin_popcount(mask & 0xffff), end);
    const __m128i d = expand8(mask >> 24, p + __builtin_popcount(mask & 0xffffff), end);
    *v = p + __builtin_popcount(mask);
    return _mm256_set_m128i(_mm_unpacklo_epi64(c, d), _mm_unpacklo_epi64(a, b));
}

/* 8 weights of mask byte m from the 4-bit values k.. of the row's value bytes v: 8 bytes
 * loaded at the byte of value k (moved back to end as above) unpacked to 16 nibbles, one
 * signed byte each, then spread by the table entry of m shifted by the nibble offset. */
static inline __m128i expand8_4(unsigned m, const uint8_t *v, int64_t k, const uint8_t *end) {
    const uint8_t *src = v + (k >> 1), *base = end - src >= 8 ? src : end - 8;
    const __m128i raw = _mm_loadl_epi64((const __m128i *)base);
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    const __m128i nib = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), _mm_set1_epi8(8));
    const int off = 2 * (int)(src - base) + (int)(k & 1);
    const __m128i ctrl = _mm_add_epi8(_mm_loadl_epi64((const __m128i *)&g_tabus[m]), _mm_set1_epi8((char)off));
    return _mm_shuffle_epi8(nib, ctrl);
}

/* 32 signed weights of the 4-bit unstructured block with header h, values from index *k of
 * the row's value bytes v (moved past them) */
static inline __m256i expand_us4(const uint8_t *h, const uint8_t *v, int64_t *k, const uint8_t *end) {
    const uint32_t mask = load_u32(h + 2);
    const int64_t k0 = *k;
    const __m128i a = expand8_4(mask & 0xff, v, k0, end);
    const __m128i b = expand8_4((mask >> 8) & 0xff, v, k0 + __builtin_popcount(mask & 0xff), end);
    const __m128i c = expand8_4((mask >> 16) & 0xff, v, k0 + __builtin_popcount(mask & 0xffff), end);
    const __m128i d = expand8_4(mask >> 24, v, k0 + __builtin_popcount(mask & 0xffffff), end);
    *k = k0 + __builtin_popcount(mask);
    return _mm256_set_m128i(_mm_unpacklo_epi64(c, d), _mm_unpacklo_epi64(a, b));
}

/* Where a row's blocks lie. */
typedef struct {
    const uint8_t *p;  /* 2:4: the next block; unstructured: the next header */
    const int8_t *v;   /* unstructured: the next stored value (8 bits), the first (4 bits) */
    int64_t k;         /* 4-bit unstructured: index of the next stored value */
    const int8_t *end; /* unstructured: the end of the row */
} row_cursor;

static inline row_cursor cursor_of(const kind kd, const uint8_t *w, int64_t n, int64_t cap) {
    row_cursor c = {.p = w};
    if (kd == K_US || kd == K_US4) {
        c.v = (const int8_t *)w + (n / QK) * SLM_SP_HDR;
        c.end = c.v + (kd == K_US ? cap : (cap + 1) / 2);
    }
    return c;
}

/* the 32 signed weights of the cursor's block (the value cursor moved past them) */
static inline __attribute__((always_inline)) __m256i expand(const kind kd, row_cursor *c) {
    if (kd == K_US) return expand_us(c->p, &c->v, c->end);
    if (kd == K_US4) return expand_us4(c->p, (const uint8_t *)c->v, &c->k, (const uint8_t *)c->end);
    return expand_s24(kd, c->p);
}

#define UNROLL _Pragma("GCC unroll 4")

/* y[c * ldy + r] = dot(w[r], x[c]) for a tile of rn x cn (constants after inlining) */
static inline __attribute__((always_inline)) void tile(const kind kd, const int rn, const int cn, int64_t n,
                                                       int64_t cap, const uint8_t *const *w,
                                                       const uint8_t *const *x, float *y, size_t ldy) {
    const size_t bb = kd == K_S24Q8 ? SLM_SP_24_BLOCK_Q8 : kd == K_S24Q4 ? SLM_SP_24_BLOCK_Q4 : SLM_SP_HDR;
    const __m256i ones = _mm256_set1_epi16(1);
    row_cursor cur[RT];
    __m256 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++) {
        cur[r] = cursor_of(kd, w[r], n, cap);
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i wq[RT], wa[RT];
        __m256 wd[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            wq[r] = expand(kd, &cur[r]);
            wa[r] = _mm256_abs_epi8(wq[r]);
            wd[r] = _mm256_set1_ps(load_f16(cur[r].p));
            cur[r].p += bb;
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)b * Q8_0_BYTES;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xp + 2));
            const __m256 xd = _mm256_set1_ps(load_f16(xp));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m256i p16 = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, wq[r]));
                const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wd[r], xd), s, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) {
            const __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[r][c]), _mm256_extractf128_ps(acc[r][c], 1));
            const __m128 v2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
            y[(size_t)c * ldy + (size_t)r] = _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
        }
}

static inline __attribute__((always_inline)) float dot_kind(const kind kd, int64_t cap, const void *w,
                                                            const void *x, int64_t n) {
    const uint8_t *wr = w, *xr = x;
    float out;
    tile(kd, 1, 1, n, cap, &wr, &xr, &out, 1);
    return out;
}

/* ---- the packed gemm (several activation rows) --------------------------------------------
 * Per tile of RT weight rows and chunk of KB blocks the rows are expanded once into a buffer
 * (with |w| and the scales), and every tile of CT activation rows reads them from there. */

enum { KB = 64 }; /* blocks per chunk */

typedef struct {
    __m256i wq[RT][KB]; /* expanded weights */
    __m256i wa[RT][KB]; /* their magnitudes */
    float wd[RT][KB];   /* scales */
} packed_rows;

/* sums over kn blocks (from block k0) for rn x cn rows, added to y unless first */
static inline __attribute__((always_inline)) void tile_packed(const int rn, const int cn, int64_t k0, int kn,
                                                              const packed_rows *pk, int r0,
                                                              const uint8_t *const *x, bool first, float *y,
                                                              size_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm256_setzero_ps();
    for (int b = 0; b < kn; b++) {
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)(k0 + b) * Q8_0_BYTES;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xp + 2));
            const __m256 xd = _mm256_set1_ps(load_f16(xp));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m256i p16 = _mm256_maddubs_epi16(pk->wa[r0 + r][b], _mm256_sign_epi8(xv, pk->wq[r0 + r][b]));
                const __m256 sum = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(pk->wd[r0 + r][b]), xd), sum, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) {
            const __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[r][c]), _mm256_extractf128_ps(acc[r][c], 1));
            const __m128 v2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
            const float t = _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
            float *o = y + (size_t)c * ldy + (size_t)r;
            *o = first ? t : *o + t;
        }
}

static inline __attribute__((always_inline)) void gemm_packed(const kind kd, int64_t cap, int64_t n, const void *w,
                                                              size_t w_stride, int nr, const void *x,
                                                              size_t x_stride, int nc, float *y, size_t ldy) {
    const size_t bb = kd == K_S24Q8 ? SLM_SP_24_BLOCK_Q8 : kd == K_S24Q4 ? SLM_SP_24_BLOCK_Q4 : SLM_SP_HDR;
    const uint8_t *w0 = w, *x0 = x;
    const int64_t nb = n / QK;
    packed_rows pk;
    for (int r0 = 0; r0 < nr; r0 += RT) {
        const int rn = nr - r0 < RT ? nr - r0 : RT;
        row_cursor cur[RT];
        for (int r = 0; r < rn; r++) cur[r] = cursor_of(kd, w0 + (size_t)(r0 + r) * w_stride, n, cap);
        for (int64_t k0 = 0; k0 < nb; k0 += KB) {
            const int kn = nb - k0 < KB ? (int)(nb - k0) : KB;
            for (int r = 0; r < rn; r++)
                for (int b = 0; b < kn; b++) {
                    pk.wq[r][b] = expand(kd, &cur[r]);
                    pk.wa[r][b] = _mm256_abs_epi8(pk.wq[r][b]);
                    pk.wd[r][b] = load_f16(cur[r].p);
                    cur[r].p += bb;
                }
            for (int c0 = 0; c0 < nc; c0 += CT) {
                const int cn = nc - c0 < CT ? nc - c0 : CT;
                const uint8_t *xr[CT];
                for (int c = 0; c < cn; c++) xr[c] = x0 + (size_t)(c0 + c) * x_stride;
                float *yt = y + (size_t)c0 * ldy + (size_t)r0;
                if (rn == RT && cn == CT) {
                    tile_packed(RT, CT, k0, kn, &pk, 0, xr, k0 == 0, yt, ldy);
                } else if (rn == RT) {
                    for (int c = 0; c < cn; c++)
                        tile_packed(RT, 1, k0, kn, &pk, 0, xr + c, k0 == 0, yt + (size_t)c * ldy, ldy);
                } else {
                    for (int c = 0; c < cn; c++)
                        tile_packed(1, 1, k0, kn, &pk, 0, xr + c, k0 == 0, yt + (size_t)c * ldy, ldy);
                }
            }
        }
    }
}

/* one or a few activation rows: the direct tiles; more: the packed path */
static inline __attribute__((always_inline)) void gemm_kind(const kind kd, int64_t cap, int64_t n, const void *w,
                                                            size_t w_stride, int nr, const void *x, size_t x_stride,
                                                            int nc, float *y, size_t ldy) {
    if (nc >= CT) {
        gemm_packed(kd, cap, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
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
            if (rn == RT) tile(kd, RT, 1, n, cap, wr, &xr, yt, ldy);
            else
                for (int r = 0; r < rn; r++) tile(kd, 1, 1, n, cap, wr + r, &xr, yt + r, ldy);
        }
    }
}

static float dot_s24q8(const void *w, const void *x, int64_t n) { return dot_kind(K_S24Q8, 0, w, x, n); }
static float dot_s24q4(const void *w, const void *x, int64_t n) { return dot_kind(K_S24Q4, 0, w, x, n); }
static void gemm_s24q8(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                       size_t ldy) {
    gemm_kind(K_S24Q8, 0, n, w, ws, nr, x, xs, nc, y, ldy);
}
static void gemm_s24q4(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                       size_t ldy) {
    gemm_kind(K_S24Q4, 0, n, w, ws, nr, x, xs, nc, y, ldy);
}

/* unstructured: the class only sets where a row's values end */
static float dot_us(int cls, const void *w, const void *x, int64_t n) {
    return dot_kind(K_US, (int64_t)cls * (n / 64), w, x, n);
}
static void gemm_us(int cls, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,
                    float *y, size_t ldy) {
    gemm_kind(K_US, (int64_t)cls * (n / 64), n, w, ws, nr, x, xs, nc, y, ldy);
}

static float dot_us4(int cls, const void *w, const void *x, int64_t n) {
    return dot_kind(K_US4, (int64_t)cls * (n / 64), w, x, n);
}
static void gemm_us4(int cls, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,
                     float *y, size_t ldy) {
    gemm_kind(K_US4, (int64_t)cls * (n / 64), n, w, ws, nr, x, xs, nc, y, ldy);
}

#define US_BIND(C)                                                                                            \
    static float dot_us_##C(const void *w, const void *x, int64_t n) { return dot_us(C, w, x, n); }          \
    static void gemm_us_##C(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,  \
                            float *y, size_t ldy) {                                                          \
        gemm_us(C, n, w, ws, nr, x, xs, nc, y, ldy);                                                         \
    }                                                                                                         \
    static float dot_us4_##C(const void *w, const void *x, int64_t n) { return dot_us4(C, w, x, n); }        \
    static void gemm_us4_##C(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, \
                             float *y, size_t ldy) {                                                         \
        gemm_us4(C, n, w, ws, nr, x, xs, nc, y, ldy);                                                        \
    }
SLM_SP_CLASSES(US_BIND)
#undef US_BIND

void slm_qdot_sp_fill_avx2(slm_kernels *k);
void slm_qdot_sp_fill_avx2(slm_kernels *k) {
    init_tables();
    k->vec_dot[SLM_SP_24_Q8] = dot_s24q8;
    k->gemm[SLM_SP_24_Q8] = gemm_s24q8;
    k->vec_dot[SLM_SP_24_Q4] = dot_s24q4;
    k->gemm[SLM_SP_24_Q4] = gemm_s24q4;
#define US_SET(C)                                              \
    k->vec_dot[SLM_SP_Q8S_FIRST + C - 1] = dot_us_##C;         \
    k->gemm[SLM_SP_Q8S_FIRST + C - 1] = gemm_us_##C;           \
    k->vec_dot[SLM_SP_Q4S_FIRST + C - 1] = dot_us4_##C;        \
    k->gemm[SLM_SP_Q4S_FIRST + C - 1] = gemm_us4_##C;
    SLM_SP_CLASSES(US_SET)
#undef US_SET
}
