/* qdot_sp_vbmi2.c - AVX-512 (BW, VL) + VNNI + VBMI/VBMI2 kernels of the sparse formats
 * (core/sparse.h) against Q8_0 activations; installed in the AVX-512 table only when the CPU
 * has VBMI2 (qdot_sp.c). Scalar twin: qdot_sp_scalar.c (same integer sums, float summation
 * order differs).
 *
 * A 64-byte register holds two consecutive 32-weight blocks of a row, expanded by vpexpandb
 * to one signed byte per weight (0 where pruned):
 *   unstructured: the two masks form one 64-bit mask, and one expanding load puts the stored
 *                 values, consecutive in the row, at their positions; it reads exactly
 *                 popcount(mask) bytes, so nothing past the row is touched; the value pointer
 *                 then moves by that popcount; 4-bit values are first unpacked from the
 *                 bytes that hold them (a masked load) to one byte each by a two-source
 *                 byte permute of the low and high nibbles, then expanded in the register;
 *   2:4:          the kept values of both blocks (4-bit ones unpacked and shifted to -8..7)
 *                 expanded by the mask of kept positions, which is computed in the register:
 *                 each byte takes its group's metadata nibble (vpmultishiftqb), looks up the
 *                 group's 4-bit kept mask and tests the bit of its own position.
 * dpbusd sums (w + 128) * x four at a time into int32 lanes starting from -128 * the sums of
 * the activation quants, so each lane is exact; the lanes are converted and accumulated with
 * the pair of scale products d_w * d_x (lanes 0..7 the first block, 8..15 the second). An odd
 * last block is paired with itself, its pair given zero activations and scale 0.
 *
 * With fewer than CT activation rows the gemm computes tiles of RT weight rows x 1 activation
 * row, each weight pair expanded once per tile; the dot is the 1 x 1 tile. With more it takes
 * the packed path of qdot_sp_avx512.c (each tile of rows expanded once per chunk of blocks, for
 * all activation rows) with the expanders below. */
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

/* a in lanes 0..7, b in lanes 8..15 */
static inline __m512 pair_ps(float a, float b) {
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(a), 0xff00, _mm_set_ss(b));
}

#define UNROLL _Pragma("GCC unroll 4")

typedef enum { K_S24Q8, K_S24Q4, K_US, K_US4 } kind;

/* 4-bit unstructured values: byte j of a pair's values is nibble j + s of the loaded bytes
 * (s = 0, 1: the parity of the first value's index), as a two-source byte permute of the low
 * nibbles (bytes 0..63) and the high nibbles (bytes 64..127) */
static uint8_t g_nibble_idx[2][64];

static void init_tables(void) {
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < 64; j++) g_nibble_idx[s][j] = (uint8_t)(((j + s) >> 1) | (((j + s) & 1) << 6));
}

/* 2:4: which of the 64 weights of a pair of blocks are kept, from the two metadata words: each
 * byte takes the nibble of its group (multishift), looks up the group's 4-bit kept mask
 * (1 << p0 | 1 << p1) and tests its own position's bit */
static inline __mmask64 kept_mask(uint32_t meta0, uint32_t meta1) {
    const __m512i words = _mm512_mask_set1_epi64(_mm512_set1_epi64((long long)meta0), 0xf0, (long long)meta1);
    /* byte j: bit offset 4 * (group of weight j % 32) within its block's word */
    const __m512i shifts = _mm512_set_epi64(0x1c1c1c1c18181818ll, 0x1414141410101010ll, 0x0c0c0c0c08080808ll,
                                            0x0404040400000000ll, 0x1c1c1c1c18181818ll, 0x1414141410101010ll,
                                            0x0c0c0c0c08080808ll, 0x0404040400000000ll);
    const __m512i nib = _mm512_and_si512(_mm512_multishift_epi64_epi8(shifts, words), _mm512_set1_epi8(15));
    /* nibble (p1 << 2 | p0) -> 1 << p0 | 1 << p1 */
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 3, 5, 9, 3, 2, 6, 10, 5, 6, 4, 12, 9, 10, 12, 8));
    return _mm512_test_epi8_mask(_mm512_shuffle_epi8(lut, nib), _mm512_set1_epi32(0x08040201));
}

/* the 16 kept values of the 2:4 block at p, signed */
static inline __attribute__((always_inline)) __m128i kept_values(const kind kd, const uint8_t *p) {
    if (kd == K_S24Q8) return _mm_loadu_si128((const __m128i *)(p + 6));
    const __m128i b = _mm_loadl_epi64((const __m128i *)(p + 6));
    const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15));
    return _mm_sub_epi8(_mm_unpacklo_epi64(lo, hi), _mm_set1_epi8(8));
}

/* Where a row's blocks lie: the next block (2:4) or block header (unstructured), and the next
 * stored value (unstructured). */
typedef struct {
    const uint8_t *p;
    const int8_t *v; /* 8-bit values: the next one; 4-bit values: the first */
    int64_t k;       /* 4-bit values: index of the next one */
} cursor;

static inline size_t block_bytes(const kind kd) {
    return kd == K_S24Q8 ? SLM_SP_24_BLOCK_Q8 : kd == K_S24Q4 ? SLM_SP_24_BLOCK_Q4 : SLM_SP_HDR;
}

/* the 4-bit values k .. k + cnt of a row's value bytes v, one signed byte each (a masked load
 * reads only the bytes that hold them) */
static inline __m512i nibbles_at(const int8_t *v, int64_t k, int cnt) {
    const int s = (int)(k & 1), nbytes = (s + cnt + 1) >> 1; /* at most 33 */
    const __m512i raw = _mm512_maskz_loadu_epi8(((__mmask64)1 << nbytes) - 1, v + (k >> 1));
    const __m512i lo = _mm512_and_si512(raw, _mm512_set1_epi8(15));
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), _mm512_set1_epi8(15));
    const __m512i idx = _mm512_loadu_si512((const void *)g_nibble_idx[s]);
    return _mm512_sub_epi8(_mm512_permutex2var_epi8(lo, idx, hi), _mm512_set1_epi8(8));
}

/* The 64 signed weights of the next pair of blocks (two: both exist) and their scale pair;
 * moves the cursor past them. */
static inline __attribute__((always_inline)) __m512i next_pair(const kind kd, cursor *cur, bool two, __m512 *wd) {
    const size_t bb = block_bytes(kd);
    const uint8_t *p0 = cur->p, *p1 = two ? p0 + bb : p0;
    *wd = pair_ps(load_f16(p0), two ? load_f16(p1) : 0.0f);
    cur->p += 2 * bb;
    if (kd == K_US) {
        const __mmask64 m = (__mmask64)load_u32(p0 + 2) | (two ? (__mmask64)load_u32(p1 + 2) << 32 : 0);
        const __m512i w = _mm512_maskz_expandloadu_epi8(m, cur->v);
        cur->v += __builtin_popcountll(m);
        return w;
    }
    if (kd == K_US4) {
        const __mmask64 m = (__mmask64)load_u32(p0 + 2) | (two ? (__mmask64)load_u32(p1 + 2) << 32 : 0);
        const int cnt = __builtin_popcountll(m);
        const __m512i w = _mm512_maskz_expand_epi8(m, nibbles_at(cur->v, cur->k, cnt));
        cur->k += cnt;
        return w;
    }
    const __m256i vals = _mm256_inserti128_si256(_mm256_castsi128_si256(kept_values(kd, p0)), kept_values(kd, p1), 1);
    return _mm512_maskz_expand_epi8(kept_mask(load_u32(p0 + 2), load_u32(p1 + 2)), _mm512_castsi256_si512(vals));
}

static inline cursor cursor_at(const kind kd, const uint8_t *row, int64_t n, int64_t b0) {
    cursor c = {.p = row + (size_t)b0 * block_bytes(kd)};
    if (kd == K_US || kd == K_US4) {
        c.v = (const int8_t *)row + (n / QK) * SLM_SP_HDR;
        int64_t k = 0;
        for (int64_t b = 0; b < b0; b++) k += __builtin_popcount(load_u32(row + (size_t)b * SLM_SP_HDR + 2));
        if (kd == K_US) c.v += k;
        else c.k = k;
    }
    return c;
}

/* y[c * ldy + r] = dot(w[r], x[c]) for a tile of rn x cn (constants after inlining). The
 * weights enter dpbusd as w + 128 (unsigned), starting from -128 * the activation sums. */
static inline __attribute__((always_inline)) void tile(const kind kd, const int rn, const int cn, int64_t n,
                                                       const uint8_t *const *w, const uint8_t *const *x, float *y,
                                                       size_t ldy) {
    const int64_t nb = n / QK;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    cursor cur[RT];
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++) {
        cur[r] = cursor_at(kd, w[r], n, 0);
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b += 2) {
        const bool two = b + 1 < nb;
        __m512i wu[RT];
        __m512 wd[RT];
        UNROLL
        for (int r = 0; r < rn; r++) wu[r] = _mm512_xor_si512(next_pair(kd, &cur[r], two, &wd[r]), bias);
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)b * Q8_0_BYTES;
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xp + 2));
            const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)(xp + Q8_0_BYTES + 2)) : _mm256_setzero_si256();
            const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
            const __m512 xd = pair_ps(load_f16(xp), two ? load_f16(xp + Q8_0_BYTES) : 0.0f);
            const __m512i init = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, xv));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wu[r], xv));
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(wd[r], xd), s, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* the packed gemm of qdot_sp_avx512.c and its expander type (see there) */
typedef void (*sp_expand_fn)(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd);
void slm_sp_gemm_packed_avx512(sp_expand_fn expand, int64_t n, const void *w, size_t w_stride, int nr,
                               const void *x, size_t x_stride, int nc, float *y, size_t ldy);

/* weights + 128 and scale pairs of blocks b0 .. b0 + kn of a row (the packed gemm's expander) */
static inline __attribute__((always_inline)) void expand_kind(const kind kd, const uint8_t *row, int64_t n, int64_t b0,
                                                              int kn, __m512i *wu, __m512 *wd) {
    cursor cur = cursor_at(kd, row, n, b0);
    for (int p = 0; 2 * p < kn; p++)
        wu[p] = _mm512_xor_si512(next_pair(kd, &cur, 2 * p + 1 < kn, &wd[p]), _mm512_set1_epi8((char)0x80));
}
static void expand_s24q8(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    expand_kind(K_S24Q8, row, n, b0, kn, wu, wd);
}
static void expand_s24q4(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    expand_kind(K_S24Q4, row, n, b0, kn, wu, wd);
}
static void expand_us(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    expand_kind(K_US, row, n, b0, kn, wu, wd);
}
static void expand_us4(const uint8_t *row, int64_t n, int64_t b0, int kn, __m512i *wu, __m512 *wd) {
    expand_kind(K_US4, row, n, b0, kn, wu, wd);
}

/* one or a few activation rows: the direct tiles; more: the packed path */
static inline __attribute__((always_inline)) void gemm_kind(const kind kd, sp_expand_fn expand, int64_t n,
                                                            const void *w, size_t w_stride, int nr, const void *x,
                                                            size_t x_stride, int nc, float *y, size_t ldy) {
    if (nc >= CT) {
        slm_sp_gemm_packed_avx512(expand, n, w, w_stride, nr, x, x_stride, nc, y, ldy);
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
            if (rn == RT) tile(kd, RT, 1, n, wr, &xr, yt, ldy);
            else
                for (int r = 0; r < rn; r++) tile(kd, 1, 1, n, wr + r, &xr, yt + r, ldy);
        }
    }
}

#define KIND_FNS(KD, NAME)                                                                                    \
    static float dot_##NAME(const void *w, const void *x, int64_t n) {                                       \
        const uint8_t *wr = w, *xr = x;                                                                       \
        float out;                                                                                            \
        tile(KD, 1, 1, n, &wr, &xr, &out, 1);                                                                 \
        return out;                                                                                           \
    }                                                                                                         \
    static void gemm_##NAME(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,   \
                            float *y, size_t ldy) {                                                           \
        gemm_kind(KD, expand_##NAME, n, w, ws, nr, x, xs, nc, y, ldy);                                        \
    }
KIND_FNS(K_S24Q8, s24q8)
KIND_FNS(K_S24Q4, s24q4)
KIND_FNS(K_US, us)
KIND_FNS(K_US4, us4)
#undef KIND_FNS

void slm_qdot_sp_fill_vbmi2(slm_kernels *k);
void slm_qdot_sp_fill_vbmi2(slm_kernels *k) {
    init_tables();
    k->vec_dot[SLM_SP_24_Q8] = dot_s24q8;
    k->gemm[SLM_SP_24_Q8] = gemm_s24q8;
    k->vec_dot[SLM_SP_24_Q4] = dot_s24q4;
    k->gemm[SLM_SP_24_Q4] = gemm_s24q4;
    for (int c = 1; c <= SLM_SP_N_CLASSES; c++) {
        k->vec_dot[SLM_SP_Q8S_FIRST + c - 1] = dot_us;
        k->gemm[SLM_SP_Q8S_FIRST + c - 1] = gemm_us;
        k->vec_dot[SLM_SP_Q4S_FIRST + c - 1] = dot_us4;
        k->gemm[SLM_SP_Q4S_FIRST + c - 1] = gemm_us4;
    }
}
