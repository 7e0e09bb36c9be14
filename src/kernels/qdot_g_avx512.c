/* qdot_g_avx512.c - AVX-512 (BW, VL) + VNNI kernels of the group formats (see qdot_g.h).
 * Scalar twin: qdot_g_scalar.c (same integer sums, float summation order differs).
 *
 * A 64-byte register holds two consecutive 32-weight sub-blocks of a row (lanes 0..7 the
 * first, 8..15 the second; they may lie in different groups), unpacked to one byte per quant:
 *   4 bits: the 16 bytes of each sub-block twice, the second copy shifted to its high nibbles;
 *   2 bits: the 8 bytes broadcast to four 64-bit lanes shifted by 0, 2, 4, 6, masked to 3;
 *   3 bits: the 2-bit plane, or 4 where bit e of the high-bit word is set (a byte mask move);
 *   8 bits: the signed quants + 128.
 * dpbusd (u8 x s8, no saturation) then sums 4 products per int32 lane. With a bias B
 * subtracted from the unpacked quants (B = 2^(bits-1) for symmetric 2..4 bits, 128 for 8 bits,
 * 0 for asymmetric 2..4 bits), the sum starts from -B * sum(q_x), so each lane holds an exact
 * partial of sum_e (u_e - B) * q_e. The lanes are converted to float and accumulated with the
 * pair of scale products d_w * d_x; asymmetric formats add m_w * s_x in lanes 0 and 8.
 * An odd last sub-block is paired with itself, its second half given activation scale 0.
 *
 * The gemm computes tiles of RT weight rows x CT activation rows: each weight pair is unpacked
 * once per tile and each activation pair (with its bias sum) loaded once per tile. The dot is
 * the 1 x 1 tile. With fewer than CT activation rows the gemm takes the few-rows path below,
 * which converts each row's group scales once per chunk of sub-blocks. */
#include <immintrin.h>
#include <string.h>

#include "qdot_g.h"

enum {
    Q8_0_BYTES = 34, /* f16 d, i8 q[32] */
    Q8_1_BYTES = 36, /* f16 d, f16 s, i8 q[32] */
    RT = 4,          /* weight rows per tile */
    CT = 4,          /* activation rows per tile */
    CB = 64,         /* activation rows per chunk (kept in L2 while the weight rows are swept) */
    KB = 64,         /* sub-blocks per chunk of the few-rows path (a multiple of any group's) */
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

/* 32 bytes at p0 then 32 at p1 */
static inline __m512i load_pair(const uint8_t *p0, const uint8_t *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* a in lanes 0..7, b in lanes 8..15 */
static inline __m512 pair_ps(float a, float b) {
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(a), 0xff00, _mm_set_ss(b));
}

/* The quants of the packed sub-blocks at p0 and p1, one byte each in element order: u for
 * 2..4 bits, s + 128 for 8 bits. */
static inline __attribute__((always_inline)) __m512i unpack_pair(const int bits, const uint8_t *p0,
                                                                const uint8_t *p1) {
    if (bits == 8) return _mm512_xor_si512(load_pair(p0, p1), _mm512_set1_epi8((char)0x80));
    if (bits == 4) {
        const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
                                                  _mm_loadu_si128((const __m128i *)p1), 1);
        /* 128-bit lanes p0, p0, p1, p1; the second copy of each shifted to its high nibbles */
        const __m512i d = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(b));
        return _mm512_and_si512(_mm512_srlv_epi64(d, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
                                _mm512_set1_epi8(0x0f));
    }
    /* 2-bit plane: byte e % 8 of lane e / 8 shifted right by 2 * (e / 8) */
    const __m128i b = _mm_set_epi64x((long long)load_u64(p1), (long long)load_u64(p0));
    const __m512i d = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1), _mm512_castsi128_si512(b));
    __m512i q = _mm512_and_si512(_mm512_srlv_epi64(d, _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6)), _mm512_set1_epi8(3));
    if (bits == 3) {
        const __mmask64 hi = (__mmask64)load_u32(p0 + 8) | ((__mmask64)load_u32(p1 + 8) << 32);
        q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(hi, _mm512_set1_epi8(4)));
    }
    return q;
}

/* The tile loops over weight and activation rows have constant bounds after inlining; they are
 * unrolled so the accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 4")

/* the bias B subtracted from the unpacked quants (see the top of the file) */
static inline int quant_bias(const int bits, const bool asym) { return bits == 8 ? 128 : asym ? 0 : 1 << (bits - 1); }

/* Dots of whole rows for a tile of rn weight rows (w[r]) x cn activation rows (x[c]), rn <= RT
 * and cn <= CT constants after inlining: y[c * ldy + r] = dot(w[r], x[c]). */
static inline __attribute__((always_inline)) void tile(const int bits, const bool asym, const int rn, const int cn,
                                                       const row_layout *L, const uint8_t *const *w,
                                                       const uint8_t *const *x, float *y, size_t ldy) {
    const size_t xb = asym ? Q8_1_BYTES : Q8_0_BYTES, xq = asym ? 4 : 2;
    const int bias = quant_bias(bits, asym);
    __m512 acc[RT][CT];
    UNROLL
    for (int r = 0; r < rn; r++)
        UNROLL
        for (int c = 0; c < cn; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < L->nsb; sb += 2) {
        const bool two = sb + 1 < L->nsb;
        const int64_t sb1 = two ? sb + 1 : sb;
        const size_t h0 = head_at(L, sb), h1 = head_at(L, sb1);
        const size_t q0 = quants_at(L, sb), q1 = quants_at(L, sb1);
        __m512i wq[RT];
        __m512 wd[RT], wm[RT];
        UNROLL
        for (int r = 0; r < rn; r++) {
            wq[r] = unpack_pair(bits, w[r] + q0, w[r] + q1);
            wd[r] = pair_ps(load_f16(w[r] + h0), load_f16(w[r] + h1));
            if (asym) wm[r] = pair_ps(load_f16(w[r] + h0 + 2), load_f16(w[r] + h1 + 2));
        }
        UNROLL
        for (int c = 0; c < cn; c++) {
            const uint8_t *x0 = x[c] + (size_t)sb * xb, *x1 = x[c] + (size_t)sb1 * xb;
            const __m512i xv = load_pair(x0 + xq, x1 + xq);
            const __m512 xd = pair_ps(load_f16(x0), two ? load_f16(x1) : 0.0f);
            __m512i init = _mm512_setzero_si512();
            if (bias) init = _mm512_sub_epi32(init, _mm512_dpbusd_epi32(init, _mm512_set1_epi8((char)bias), xv));
            __m512 xs = _mm512_setzero_ps();
            if (asym) xs = _mm512_maskz_mov_ps(0x0101, pair_ps(load_f16(x0 + 2), two ? load_f16(x1 + 2) : 0.0f));
            UNROLL
            for (int r = 0; r < rn; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wq[r], xv));
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(wd[r], xd), s, acc[r][c]);
                if (asym) acc[r][c] = _mm512_fmadd_ps(wm[r], xs, acc[r][c]);
            }
        }
    }
    UNROLL
    for (int c = 0; c < cn; c++)
        UNROLL
        for (int r = 0; r < rn; r++) y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ---- one to three activation rows (generating, verifying drafts) ----------------------------
 * The rows are swept in chunks of KB sub-blocks. Per chunk, each activation row's scales d_x
 * (and s_x) are converted once per sub-block, and the byte offsets of the group headers of
 * the chunk's sub-blocks computed once (they are the same in every row). Per tile of weight
 * rows a first pass reads the headers row by row, giving the products d_w * d_x of every
 * sub-block (and m_w per sub-block). Reading each row in order also brings it into the cache
 * ahead of the dot loop (the hardware prefetchers follow these loads; they did not follow the
 * interleaved reads of the rows of a tile, which left the loop waiting on memory), and the
 * dot loop then only unpacks, dots and scales. The offset terms m_w * s_x are a 16-wide float
 * dot per chunk; sums stay in vector accumulators until the end of the chunk. */

/* Scales of one activation row over a chunk of kn sub-blocks; s is 0 from kn to the next
 * multiple of 16. */
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
        for (int b = kn; b < ((kn + 15) & ~15); b++) a->s[b] = 0.0f;
}

/* Adds the chunk's sums of rn weight rows (w[r]: row starts) against one activation row x into
 * acc[r] (16 lanes each). */
static inline __attribute__((always_inline)) void gen_tile(const int bits, const bool asym, const int rn,
                                                           const row_layout *L, const uint8_t *const *w,
                                                           const uint8_t *x, int64_t sb0, int kn,
                                                           const act_scales *a, const size_t *off, __m512 *acc) {
    const size_t xb = asym ? Q8_1_BYTES : Q8_0_BYTES, xq = asym ? 4 : 2;
    const int bias = quant_bias(bits, asym);
    float p[RT][KB + 1], m[RT][KB];
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
        p[r][kn] = 0.0f;
    }
    if (asym) {
        UNROLL
        for (int r = 0; r < rn; r++)
            for (int j = 0; 16 * j < kn; j++) {
                const __mmask16 k = kn - 16 * j >= 16 ? 0xffff : (__mmask16)((1u << (kn - 16 * j)) - 1u);
                acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, m[r] + 16 * j), _mm512_loadu_ps(a->s + 16 * j),
                                         acc[r]);
            }
    }
    for (int b = 0; b < kn; b += 2) {
        const int b1 = b + 1 < kn ? b + 1 : b;
        const size_t q0 = quants_at(L, sb0 + b), q1 = quants_at(L, sb0 + b1);
        const __m512i xv = load_pair(x + (size_t)(sb0 + b) * xb + xq, x + (size_t)(sb0 + b1) * xb + xq);
        __m512i init = _mm512_setzero_si512();
        if (bias) init = _mm512_sub_epi32(init, _mm512_dpbusd_epi32(init, _mm512_set1_epi8((char)bias), xv));
        UNROLL
        for (int r = 0; r < rn; r++) {
            const __m512i wq = unpack_pair(bits, w[r] + q0, w[r] + q1);
            const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, wq, xv));
            acc[r] = _mm512_fmadd_ps(pair_ps(p[r][b], p[r][b + 1]), s, acc[r]);
        }
    }
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
                __m512 acc[RT];
                for (int r = 0; r < RT; r++) acc[r] = _mm512_setzero_ps();
                if (rn == RT) gen_tile(bits, asym, RT, L, wr, xr, sb0, kn, &a[c], off, acc);
                else
                    for (int r = 0; r < rn; r++) gen_tile(bits, asym, 1, L, wr + r, xr, sb0, kn, &a[c], off, acc + r);
                float *yp = y + (size_t)c * ldy + (size_t)r0;
                for (int r = 0; r < rn; r++) {
                    const float v = _mm512_reduce_add_ps(acc[r]);
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

float slm_gq_dot_avx512(const slm_gq_format *f, const void *w, const void *x, int64_t n) {
    const row_layout L = layout_of(f, n);
    switch (f->bits) {
    case 2: return f->asym ? dot_q2a(&L, w, x) : dot_q2(&L, w, x);
    case 3: return f->asym ? dot_q3a(&L, w, x) : dot_q3(&L, w, x);
    case 4: return f->asym ? dot_q4a(&L, w, x) : dot_q4(&L, w, x);
    default: return f->asym ? dot_q8a(&L, w, x) : dot_q8(&L, w, x);
    }
}

void slm_gq_gemm_avx512(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
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
