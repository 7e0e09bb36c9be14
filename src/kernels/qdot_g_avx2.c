/* qdot_g_avx2.c - AVX2 + FMA + F16C kernels of the group formats (see qdot_g.h). Scalar twin:
 * qdot_g_scalar.c (same integer sums, float summation order differs).
 *
 * Each 32-weight sub-block is unpacked to one byte per quant in a 32-byte register:
 *   4 bits: the 16 bytes in the low half, the same shifted to their high nibbles in the high
 *           half, masked to 15;
 *   2 bits: the 8 bytes broadcast to four 64-bit lanes shifted by 0, 2, 4, 6, masked to 3;
 *   3 bits: the 2-bit plane, or 4 where bit e of the high-bit word is set (the word's bytes
 *           spread 8 to a byte lane by a shuffle, tested against the bit masks);
 *   8 bits: the signed quants as stored.
 * The integer dots use maddubs (u8 x s8, pairs summed to int16) and madd (pairs to int32):
 *   asymmetric 2..4 bits: u * q directly (|pair| <= 2 * 15 * 128, no saturation);
 *   symmetric 2..4 bits:  u * q - o * q in int16 (|each| <= 2 * 15 * 128), o = 2^(bits-1);
 *   8 bits:               |s| * (q with the sign of s), as |s| <= 128 and |q| <= 127 in
 *                         activation blocks, a pair stays below 2^15.
 * So each int32 lane holds an exact partial sum; lanes are converted to float and accumulated
 * with the scale product d_w * d_x (and m_w * s_x in lane 0 for the asymmetric formats).
 *
 * The gemm computes tiles of RT weight rows x CT activation rows: each weight sub-block is
 * unpacked once per tile and each activation block loaded once per tile. The dot is the 1 x 1
 * tile. With fewer than CT activation rows the gemm takes the few-rows path below, which
 * converts each row's group scales once per chunk of sub-blocks. */
#include <immintrin.h>
#include <string.h>

#include "qdot_g.h"

enum {
    Q8_0_BYTES = 34, /* f16 d, i8 q[32] */
    Q8_1_BYTES = 36, /* f16 d, f16 s, i8 q[32] */
    RT = 2,          /* weight rows per tile */
    CT = 4,          /* activation rows per tile */
    CB = 64,         /* activation rows per chunk (kept in L2 while the weight rows are swept) */
    KB = 64,         /* sub-blocks per chunk of the few-rows path (a multiple of 8) */
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

static inline uint64_t load_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Where sub-block sb of a row lies: all groups before the last are full, so its group
 * header is at (sb / subs per group) * group bytes. */
typedef struct {
    int lg;        /* log2 of sub-blocks per full group */
    size_t gbytes; /* bytes of a full group */
    size_t hdr;    /* header bytes per group */
    size_t sub;    /* bytes per packed sub-block */
    int64_t nsb;   /* sub-blocks in the row */
} row_layout;

static inline row_layout layout_of(const slm_gq_format *f, int64_t n) {
    row_layout L;
    const int spg = f->group / SLM_GQ_SUB;
    L.lg = spg == 4 ? 2 : spg == 2 ? 1 : 0;
    L.hdr = (size_t)f->hdr;
    L.sub = (size_t)f->sub;
    L.gbytes = L.hdr + (size_t)spg * L.sub;
    L.nsb = n / SLM_GQ_SUB;
    return L;
}

static inline size_t head_at(const row_layout *L, int64_t sb) { return (size_t)(sb >> L->lg) * L->gbytes; }

static inline size_t quants_at(const row_layout *L, int64_t sb) {
    return head_at(L, sb) + L->hdr + (size_t)(sb & ((1 << L->lg) - 1)) * L->sub;
}

/* The quants of the packed sub-block at p, one byte each in element order: u for 2..4 bits,
 * s for 8 bits. */
static inline __attribute__((always_inline)) __m256i unpack(const int bits, const uint8_t *p) {
    if (bits == 8) return _mm256_loadu_si256((const __m256i *)p);
    if (bits == 4) {
        const __m128i b = _mm_loadu_si128((const __m128i *)p);
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
    }
    const __m256i d = _mm256_set1_epi64x((long long)load_u64(p));
    __m256i q = _mm256_and_si256(_mm256_srlv_epi64(d, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
    if (bits == 3) {
        /* byte e gets byte e / 8 of the word, then bit e % 8 of it is tested */
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,
                                                2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        const __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)load_u32(p + 8)), spread);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
        q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    return q;
}

/* The tile loops over weight and activation rows have constant bounds after inlining; they are
 * unrolled so the accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 4")

/* Dots of whole rows for a tile of rn weight rows (w[r]) x cn activation rows (x[c]), rn <= RT
 * and cn <= CT constants after inlining: y[c * ldy + r] = dot(w[r], x[c]). */
static inline __attribute__((always_inline)) void tile(const int bits, const bool asym, const int rn, const int cn,
                                                       const row_layout *L, const uint8_t *const *w,
                                                       const uint8_t *const *x, float *y, size_t ldy) {
    const size_t xb = asym ? Q8_1_BYTES : Q8_0_BYTES, xq = asym ? 4 : 2;
    const bool sym_small = !asym && bits < 8; /* subtracts o * q */
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < L->nsb; sb++) {
        const size_t h = head_at(L, sb), q = quants_at(L, sb);
        __m256i wq[RT], wa[RT];
        __m256 wd[RT], wm[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            wq[r] = unpack(bits, w[r] + q);
            if (bits == 8) wa[r] = _mm256_abs_epi8(wq[r]);
            wd[r] = _mm256_set1_ps(load_f16(w[r] + h));
            if (asym) wm[r] = _mm256_set1_ps(load_f16(w[r] + h + 2));
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *xp = x[c] + (size_t)sb * xb;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xp + xq));
            const __m256 xd = _mm256_set1_ps(load_f16(xp));
            __m256i corr = _mm256_setzero_si256();
            if (sym_small) corr = _mm256_maddubs_epi16(_mm256_set1_epi8((char)(1 << (bits - 1))), xv);
            __m256 xs = _mm256_setzero_ps();
            if (asym) xs = _mm256_blend_ps(_mm256_setzero_ps(), _mm256_set1_ps(load_f16(xp + 2)), 1);
            UNROLL
            for (int r = 0; r < rn; r++) {
                __m256i p16;
                if (bits == 8) {
                    p16 = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, wq[r]));
                } else {
                    p16 = _mm256_maddubs_epi16(wq[r], xv);
                    if (sym_small) p16 = _mm256_sub_epi16(p16, corr);
                }
                const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wd[r], xd), s, acc[r][c]);
                if (asym) acc[r][c] = _mm256_fmadd_ps(wm[r], xs, acc[r][c]);
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

/* ---- one to three activation rows (generating, verifying drafts) ----------------------------
 * The rows are swept in chunks of KB sub-blocks. Per chunk, each activation row's scales d_x
 * (and s_x) are converted once per sub-block and the byte offsets of the group headers of the
 * chunk's sub-blocks computed once (they are the same in every row). Per tile of weight rows a
 * first pass reads the headers row by row, giving the products d_w * d_x of every sub-block
 * (and m_w per sub-block); reading each row in order also brings it into the cache ahead of
 * the dot loop, which then only unpacks, dots and scales. The offset terms m_w * s_x are an
 * 8-wide float dot per chunk; sums stay in vector accumulators until the end of the chunk. */

/* Scales of one activation row over a chunk of kn sub-blocks; s is 0 from kn to the next
 * multiple of 8. */
typedef struct {
    float d[KB]; /* d_x per sub-block */
    float s[KB]; /* s_x per sub-block (asymmetric formats) */
} act_scales;

static inline __attribute__((always_inline)) void act_chunk(const bool asym, const uint8_t *x, int64_t sb0, int kn,
                                                            act_scales *a) {
    const size_t xb = asym ? Q8_1_BYTES : Q8_0_BYTES;
    const uint8_t *p = x + (size_t)sb0 * xb;
    for (int b = 0; b < kn; b++, p += xb) {
        a->d[b] = load_f16(p);
        if (asym) a->s[b] = load_f16(p + 2);
    }
    if (asym)
        for (int b = kn; b < ((kn + 7) & ~7); b++) a->s[b] = 0.0f;
}

/* Adds the chunk's sums of rn weight rows (w[r]: row starts) against one activation row x into
 * acc[r] (8 lanes each); off[b]: header offset of sub-block sb0 + b. */
static inline __attribute__((always_inline)) void gen_tile(const int bits, const bool asym, const int rn,
                                                           const row_layout *L, const uint8_t *const *w,
                                                           const uint8_t *x, int64_t sb0, int kn,
                                                           const act_scales *a, const size_t *off, __m256 *acc) {
    const size_t xb = asym ? Q8_1_BYTES : Q8_0_BYTES, xq = asym ? 4 : 2;
    const bool sym_small = !asym && bits < 8; /* subtracts o * q */
    const __m256i ones = _mm256_set1_epi16(1);
    float p[RT][KB], m[RT][KB];
    UNROLL
    for (int r = 0; r < rn; r++) {
        for (int b = 0; b < kn; b++) {
            const uint8_t *h = w[r] + off[b];
            /* a group of 128 8-bit weights spans three cache lines: the headers alone would
             * skip the middle one */
            if (bits == 8 && L->lg == 2 && (b & 3) == 0) _mm_prefetch((const char *)h + 64, _MM_HINT_T0);
            p[r][b] = load_f16(h) * a->d[b];
            if (asym) m[r][b] = load_f16(h + 2);
        }
        if (asym)
            for (int b = kn; b < ((kn + 7) & ~7); b++) m[r][b] = 0.0f;
    }
    if (asym) {
        UNROLL
        for (int r = 0; r < rn; r++)
            for (int b = 0; b < kn; b += 8)
                acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(m[r] + b), _mm256_loadu_ps(a->s + b), acc[r]);
    }
    for (int b = 0; b < kn; b++) {
        const size_t q = quants_at(L, sb0 + b);
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (size_t)(sb0 + b) * xb + xq));
        __m256i corr = _mm256_setzero_si256();
        if (sym_small) corr = _mm256_maddubs_epi16(_mm256_set1_epi8((char)(1 << (bits - 1))), xv);
        UNROLL
        for (int r = 0; r < rn; r++) {
            const __m256i wq = unpack(bits, w[r] + q);
            __m256i p16;
            if (bits == 8) {
                p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(wq), _mm256_sign_epi8(xv, wq));
            } else {
                p16 = _mm256_maddubs_epi16(wq, xv);
                if (sym_small) p16 = _mm256_sub_epi16(p16, corr);
            }
            const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(p[r][b]), s, acc[r]);
        }
    }
}

static inline float hsum(__m256 a) {
    const __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 v2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
}

/* y[c * ldy + r] = dot(row r of w, row c of x) for nc < CT activation rows */
static inline __attribute__((always_inline)) void gemm_gen(const int bits, const bool asym, const row_layout *L,
                                                           const void *w, size_t w_stride, int nr, const void *x,
                                                           size_t x_stride, int nc, float *y, size_t ldy) {
    const uint8_t *w0 = w, *x0 = x;
    act_scales a[CT - 1];
    size_t off[KB]; /* head_at of the chunk's sub-blocks, the same in every row */
    for (int64_t sb0 = 0; sb0 < L->nsb; sb0 += KB) {
        const int kn = L->nsb - sb0 < KB ? (int)(L->nsb - sb0) : KB;
        for (int c = 0; c < nc; c++) act_chunk(asym, x0 + (size_t)c * x_stride, sb0, kn, &a[c]);
        for (int b = 0; b < kn; b++) off[b] = head_at(L, sb0 + b);
        for (int r0 = 0; r0 < nr; r0 += RT) {
            const int rn = nr - r0 < RT ? nr - r0 : RT;
            const uint8_t *wr[RT];
            for (int r = 0; r < rn; r++) wr[r] = w0 + (size_t)(r0 + r) * w_stride;
            for (int c = 0; c < nc; c++) {
                const uint8_t *xr = x0 + (size_t)c * x_stride;
                __m256 acc[RT];
                for (int r = 0; r < RT; r++) acc[r] = _mm256_setzero_ps();
                if (rn == RT) gen_tile(bits, asym, RT, L, wr, xr, sb0, kn, &a[c], off, acc);
                else
                    for (int r = 0; r < rn; r++) gen_tile(bits, asym, 1, L, wr + r, xr, sb0, kn, &a[c], off, acc + r);
                float *yp = y + (size_t)c * ldy + (size_t)r0;
                for (int r = 0; r < rn; r++) {
                    const float v = hsum(acc[r]);
                    yp[r] = sb0 == 0 ? v : yp[r] + v;
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) float dot_fmt(const int bits, const bool asym, const row_layout *L,
                                                           const void *w, const void *x) {
    const uint8_t *wr = w, *xr = x;
    float out;
    tile(bits, asym, 1, 1, L, &wr, &xr, &out, 1);
    return out;
}

static inline __attribute__((always_inline)) void gemm_fmt(const int bits, const bool asym, const row_layout *L,
                                                           const void *w, size_t w_stride, int nr, const void *x,
                                                           size_t x_stride, int nc, float *y, size_t ldy) {
    if (nc < CT) {
        gemm_gen(bits, asym, L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        return;
    }
    const uint8_t *w0 = w, *x0 = x;
    for (int cb = 0; cb < nc; cb += CB) {
        const int cbn = nc - cb < CB ? nc - cb : CB;
        for (int r0 = 0; r0 < nr; r0 += RT) {
            const int rn = nr - r0 < RT ? nr - r0 : RT;
            const uint8_t *wr[RT];
            for (int r = 0; r < rn; r++) wr[r] = w0 + (size_t)(r0 + r) * w_stride;
            for (int c0 = cb; c0 < cb + cbn; c0 += CT) {
                const int cn = cb + cbn - c0 < CT ? cb + cbn - c0 : CT;
                const uint8_t *xr[CT];
                for (int c = 0; c < cn; c++) xr[c] = x0 + (size_t)(c0 + c) * x_stride;
                float *yt = y + (size_t)c0 * ldy + (size_t)r0;
                if (rn == RT && cn == CT) {
                    tile(bits, asym, RT, CT, L, wr, xr, yt, ldy);
                } else if (rn == RT) { /* few activation rows (one when generating) */
                    for (int c = 0; c < cn; c++) tile(bits, asym, RT, 1, L, wr, xr + c, yt + (size_t)c * ldy, ldy);
                } else if (cn == CT) {
                    for (int r = 0; r < rn; r++) tile(bits, asym, 1, CT, L, wr + r, xr, yt + r, ldy);
                } else {
                    for (int r = 0; r < rn; r++)
                        for (int c = 0; c < cn; c++)
                            tile(bits, asym, 1, 1, L, wr + r, xr + c, yt + (size_t)c * ldy + r, ldy);
                }
            }
        }
    }
}

/* one specialized function per (bits, asym) */
#define GQ_FORMAT_FNS(B, A, NAME)                                                                             \
    static float dot_##NAME(const row_layout *L, const void *w, const void *x) {                            \
        return dot_fmt(B, A, L, w, x);                                                                        \
    }                                                                                                         \
    static void gemm_##NAME(const row_layout *L, const void *w, size_t ws, int nr, const void *x, size_t xs, \
                            int nc, float *y, size_t ldy) {                                                   \
        gemm_fmt(B, A, L, w, ws, nr, x, xs, nc, y, ldy);                                                      \
    }
GQ_FORMAT_FNS(2, false, q2)
GQ_FORMAT_FNS(2, true, q2a)
GQ_FORMAT_FNS(3, false, q3)
GQ_FORMAT_FNS(3, true, q3a)
GQ_FORMAT_FNS(4, false, q4)
GQ_FORMAT_FNS(4, true, q4a)
GQ_FORMAT_FNS(8, false, q8)
GQ_FORMAT_FNS(8, true, q8a)

float slm_gq_dot_avx2(const slm_gq_format *f, const void *w, const void *x, int64_t n) {
    const row_layout L = layout_of(f, n);
    switch (f->bits) {
    case 2: return f->asym ? dot_q2a(&L, w, x) : dot_q2(&L, w, x);
    case 3: return f->asym ? dot_q3a(&L, w, x) : dot_q3(&L, w, x);
    case 4: return f->asym ? dot_q4a(&L, w, x) : dot_q4(&L, w, x);
    default: return f->asym ? dot_q8a(&L, w, x) : dot_q8(&L, w, x);
    }
}

void slm_gq_gemm_avx2(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                      size_t x_stride, int nc, float *y, size_t ldy) {
    const row_layout L = layout_of(f, n);
    switch (f->bits) {
    case 2:
        if (f->asym) gemm_q2a(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        else gemm_q2(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        break;
    case 3:
        if (f->asym) gemm_q3a(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        else gemm_q3(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        break;
    case 4:
        if (f->asym) gemm_q4a(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        else gemm_q4(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        break;
    default:
        if (f->asym) gemm_q8a(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        else gemm_q8(&L, w, w_stride, nr, x, x_stride, nc, y, ldy);
        break;
    }
}
