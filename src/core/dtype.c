/* dtype.c - tensor element types: block formats, the traits table, and the scalar reference
 * dequantize / dot / quantize functions.
 *
 * The block structs below are the on-disk GGUF layouts (identical to llama.cpp's). All
 * multi-byte fields are little-endian; "f16" fields hold IEEE binary16 bits. A block is always
 * copied into a local struct with memcpy before use, so the functions accept any alignment.
 *
 * Arithmetic order: every to_float computes exactly the float32 operations of the format's
 * definition, in the order written in the comments (scale products first, then the multiply,
 * then the offset), so the results are bit-identical to a float32 numpy reference. Every
 * product that is followed by an addition is exact in float32 (an f16 scale times small
 * integers), so fused multiply-add contraction cannot change a result either.
 * The dot products dequantize one block into a stack buffer and accumulate in double: they
 * are the accurate reference that faster kernels are compared with. */
#include "core/dtype.h"
#include "core/cbt.h"
#include "core/codebook.h"
#include "core/gq.h"
#include "core/sparse.h"
#include "core/quant_k.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slimlm reads little-endian block formats in place and needs a little-endian host"
#endif

static_assert(sizeof(float) == 4, "float must be IEEE binary32");

enum {
    QK32 = 32,  /* elements per block of the 32-element formats (q4_0 .. q8_1) */
    QK_K = 256, /* elements per super-block of the k-quant formats */
    K_SCALE_BYTES = 12, /* packed 6-bit scales and mins of q4_k / q5_k */
};

/* ---- block layouts ---------------------------------------------------------------------- */

/* q4_0: x = d * (q - 8), q in 0..15. 4.5 bits per weight. */
typedef struct {
    uint16_t d;           /* scale, f16 */
    uint8_t qs[QK32 / 2]; /* quant j in the low nibble of qs[j], quant j+16 in the high one */
} slm_block_q4_0;
static_assert(sizeof(slm_block_q4_0) == 18, "q4_0 block size");

/* q4_1: x = d * q + m, q in 0..15. 5 bits per weight. */
typedef struct {
    uint16_t d;           /* scale, f16 */
    uint16_t m;           /* offset (block minimum), f16 */
    uint8_t qs[QK32 / 2]; /* as in q4_0 */
} slm_block_q4_1;
static_assert(sizeof(slm_block_q4_1) == 20, "q4_1 block size");

/* q5_0: x = d * (q - 16), q in 0..31. 5.5 bits per weight. */
typedef struct {
    uint16_t d;           /* scale, f16 */
    uint8_t qh[4];        /* bit j of this little-endian u32 is bit 4 of quant j */
    uint8_t qs[QK32 / 2]; /* low 4 bits: quant j in the low nibble of qs[j], j+16 high */
} slm_block_q5_0;
static_assert(sizeof(slm_block_q5_0) == 22, "q5_0 block size");

/* q5_1: x = d * q + m, q in 0..31. 6 bits per weight. */
typedef struct {
    uint16_t d;           /* scale, f16 */
    uint16_t m;           /* offset (block minimum), f16 */
    uint8_t qh[4];        /* as in q5_0 */
    uint8_t qs[QK32 / 2]; /* as in q5_0 */
} slm_block_q5_1;
static_assert(sizeof(slm_block_q5_1) == 24, "q5_1 block size");

/* q8_0: x = d * q, q in -127..127. 8.5 bits per weight. */
typedef struct {
    uint16_t d;       /* scale, f16 */
    int8_t qs[QK32];  /* quants */
} slm_block_q8_0;
static_assert(sizeof(slm_block_q8_0) == 34, "q8_0 block size");

/* q8_1: x = d * q; s caches d * sum(q). An activation format of the matmul kernels; its
 * layout is known (files may name it) but it has no conversion here. */
typedef struct {
    uint16_t d;       /* scale, f16 */
    uint16_t s;       /* d * sum of qs, f16 */
    int8_t qs[QK32];  /* quants */
} slm_block_q8_1;
static_assert(sizeof(slm_block_q8_1) == 36, "q8_1 block size");

/* q2_k: 16 sub-blocks of 16; x = (d * sc) * q - (dmin * mn), q in 0..3. 2.625 bits/weight.
 * Element e = 128*h + 32*s + l (h 0..1, s 0..3, l 0..31) is bits 2s..2s+1 of qs[32*h + l];
 * its sub-block is e / 16. */
typedef struct {
    uint8_t scales[QK_K / 16]; /* sub-block i: scale sc in the low nibble, min mn in the high */
    uint8_t qs[QK_K / 4];      /* 2-bit quants, four per byte */
    uint16_t d;                /* super-block scale of the scales, f16 */
    uint16_t dmin;             /* super-block scale of the mins, f16 */
} slm_block_q2_k;
static_assert(sizeof(slm_block_q2_k) == 84, "q2_k block size");

/* q3_k: 16 sub-blocks of 16; x = (d * (sc - 32)) * (q - 4 * !hbit), q low 2 bits in 0..3.
 * 3.4375 bits per weight. Element e = 128*h + 32*s + l has its low bits at bits 2s..2s+1 of
 * qs[32*h + l] and its high bit at bit (e / 32) of hmask[l]; when that bit is clear, 4 is
 * subtracted. Sub-block i's 6-bit scale: low 4 bits are scales[i] & 15 for i < 8 and
 * scales[i-8] >> 4 for i >= 8; high 2 bits are bits 2*(i/4)..+1 of scales[8 + i%4]. */
typedef struct {
    uint8_t hmask[QK_K / 8];   /* high bits of the quants */
    uint8_t qs[QK_K / 4];      /* low 2 bits of the quants */
    uint8_t scales[12];        /* 16 packed 6-bit scales, stored with +32 */
    uint16_t d;                /* super-block scale, f16 */
} slm_block_q3_k;
static_assert(sizeof(slm_block_q3_k) == 110, "q3_k block size");

/* q4_k: 8 sub-blocks of 32; x = (d * sc) * q - (dmin * mn), q in 0..15. 4.5 bits/weight.
 * Sub-block 2c+i (c 0..3, i 0..1) element l is nibble i of qs[32*c + l].
 * 6-bit sc/mn of sub-block j: for j < 4, sc = scales[j] & 63, mn = scales[j+4] & 63; for
 * j >= 4, sc = (scales[j+4] & 15) | ((scales[j-4] >> 6) << 4) and
 * mn = (scales[j+4] >> 4) | ((scales[j] >> 6) << 4). */
typedef struct {
    uint16_t d;                     /* super-block scale of the scales, f16 */
    uint16_t dmin;                  /* super-block scale of the mins, f16 */
    uint8_t scales[K_SCALE_BYTES];  /* 8 packed 6-bit scales and 8 mins */
    uint8_t qs[QK_K / 2];           /* 4-bit quants */
} slm_block_q4_k;
static_assert(sizeof(slm_block_q4_k) == 144, "q4_k block size");

/* q5_k: as q4_k with a fifth bit: bit j of qh[l] is bit 4 of element l of sub-block j.
 * 5.5 bits per weight. */
typedef struct {
    uint16_t d;                     /* super-block scale of the scales, f16 */
    uint16_t dmin;                  /* super-block scale of the mins, f16 */
    uint8_t scales[K_SCALE_BYTES];  /* as in q4_k */
    uint8_t qh[QK_K / 8];           /* high bits of the quants */
    uint8_t qs[QK_K / 2];           /* low 4 bits of the quants, as in q4_k */
} slm_block_q5_k;
static_assert(sizeof(slm_block_q5_k) == 176, "q5_k block size");

/* q6_k: 16 sub-blocks of 16; x = (d * sc) * (q - 32), q in 0..63. 6.5625 bits per weight.
 * Element e = 128*h + 64*i + m (h 0..1, i 0..1, m 0..63): low 4 bits are nibble i of
 * ql[64*h + m]; with m = 32*s2 + l (s2 0..1), its high 2 bits are bits 2*(2*i+s2)..+1 of
 * qh[32*h + l]. Its sub-block is e / 16. */
typedef struct {
    uint8_t ql[QK_K / 2];      /* low 4 bits of the quants */
    uint8_t qh[QK_K / 4];      /* high 2 bits of the quants */
    int8_t scales[QK_K / 16];  /* 8-bit signed sub-block scales */
    uint16_t d;                /* super-block scale, f16 */
} slm_block_q6_k;
static_assert(sizeof(slm_block_q6_k) == 210, "q6_k block size");

/* q8_k: x = d * q. The activation format of the k-quant dot products. */
typedef struct {
    float d;                   /* scale, f32 */
    int8_t qs[QK_K];           /* quants */
    int16_t bsums[QK_K / 16];  /* sums of the quants in groups of 16 */
} slm_block_q8_k;
static_assert(sizeof(slm_block_q8_k) == 292, "q8_k block size");

/* ---- half-precision conversions --------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float slm_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* Inf, or NaN with its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal man * 2^-24: shift the leading one up to the implicit-bit position */
        uint32_t e = 113; /* biased f32 exponent of 2^-14 */
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    return f32_from_bits(bits);
}

/* Round-to-nearest-even of m >> shift (1 <= shift <= 31). */
static uint32_t shift_round_even(uint32_t m, unsigned shift) {
    const uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    return (rem > half || (rem == half && (q & 1u))) ? q + 1u : q;
}

uint16_t slm_f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet it, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* Inf, or >= 65520 which rounds past 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) /* normal half (>= 2^-14): rebias 127 -> 15, drop 13 bits */
        return (uint16_t)(sign | shift_round_even(a - 0x38000000u, 13));
    if (a <= 0x33000000u) /* <= 2^-25, half the smallest subnormal: ties to even zero */
        return sign;
    /* subnormal half: value = m * 2^(e-150) = (m >> (126 - e)) units of 2^-24 */
    const uint32_t e = a >> 23; /* 102..112 */
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(m, 126u - e));
}

float slm_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t slm_f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet it, keep sign and top payload bits */
        return (uint16_t)((u >> 16) | 0x40u);
    /* round to nearest even; a carry into the exponent gives the next binade or Inf */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ---- per-block dequantization ----------------------------------------------------------- */

typedef void (*block_to_float_fn)(const void *blk, float *y);

static void q4_0_block_to_float(const void *blk, float *y) {
    slm_block_q4_0 b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    for (int j = 0; j < QK32 / 2; j++) {
        y[j] = d * (float)((b.qs[j] & 0x0f) - 8);
        y[j + QK32 / 2] = d * (float)((b.qs[j] >> 4) - 8);
    }
}

static void q4_1_block_to_float(const void *blk, float *y) {
    slm_block_q4_1 b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const float m = slm_f16_to_f32(b.m);
    for (int j = 0; j < QK32 / 2; j++) {
        const float v0 = d * (float)(b.qs[j] & 0x0f);
        const float v1 = d * (float)(b.qs[j] >> 4);
        y[j] = v0 + m;
        y[j + QK32 / 2] = v1 + m;
    }
}

static uint32_t le32(const uint8_t p[4]) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void q5_0_block_to_float(const void *blk, float *y) {
    slm_block_q5_0 b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const uint32_t qh = le32(b.qh);
    for (int j = 0; j < QK32 / 2; j++) {
        const int q0 = (b.qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        const int q1 = (b.qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(q0 - 16);
        y[j + QK32 / 2] = d * (float)(q1 - 16);
    }
}

static void q5_1_block_to_float(const void *blk, float *y) {
    slm_block_q5_1 b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const float m = slm_f16_to_f32(b.m);
    const uint32_t qh = le32(b.qh);
    for (int j = 0; j < QK32 / 2; j++) {
        const int q0 = (b.qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        const int q1 = (b.qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        const float v0 = d * (float)q0;
        const float v1 = d * (float)q1;
        y[j] = v0 + m;
        y[j + QK32 / 2] = v1 + m;
    }
}

static void q8_0_block_to_float(const void *blk, float *y) {
    slm_block_q8_0 b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    for (int j = 0; j < QK32; j++) y[j] = d * (float)b.qs[j];
}

static void q2_k_block_to_float(const void *blk, float *y) {
    slm_block_q2_k b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const float dmin = slm_f16_to_f32(b.dmin);
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int q = (b.qs[32 * h + l] >> (2 * s)) & 3;
        const uint8_t sm = b.scales[e / 16];
        const float dl = d * (float)(sm & 0x0f);
        const float ml = dmin * (float)(sm >> 4);
        const float v = dl * (float)q;
        y[e] = v - ml;
    }
}

/* 6-bit scale i (0..15) of a q3_k block, without the +32 bias removed. */
static int q3_k_scale(const uint8_t sc[12], int i) {
    const int lo = i < 8 ? (sc[i] & 0x0f) : (sc[i - 8] >> 4);
    const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    return lo | (hi << 4);
}

static void q3_k_block_to_float(const void *blk, float *y) {
    slm_block_q3_k b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int lo = (b.qs[32 * h + l] >> (2 * s)) & 3;
        const int hbit = (b.hmask[l] >> (e / 32)) & 1;
        const int q = lo - (hbit ? 0 : 4);
        const float dl = d * (float)(q3_k_scale(b.scales, e / 16) - 32);
        y[e] = dl * (float)q;
    }
}

/* Scale and min (6 bits each) of sub-block j (0..7) of a q4_k / q5_k block. */
static void k_scale_min(const uint8_t s[K_SCALE_BYTES], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void q4_k_block_to_float(const void *blk, float *y) {
    slm_block_q4_k b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const float dmin = slm_f16_to_f32(b.dmin);
    for (int j = 0; j < 8; j++) { /* sub-block j = 2c + i */
        int sc, mn;
        k_scale_min(b.scales, j, &sc, &mn);
        const float ds = d * (float)sc;
        const float dm = dmin * (float)mn;
        const int c = j / 2, shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            const int q = (b.qs[32 * c + l] >> shift) & 0x0f;
            const float v = ds * (float)q;
            y[32 * j + l] = v - dm;
        }
    }
}

static void q5_k_block_to_float(const void *blk, float *y) {
    slm_block_q5_k b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    const float dmin = slm_f16_to_f32(b.dmin);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(b.scales, j, &sc, &mn);
        const float ds = d * (float)sc;
        const float dm = dmin * (float)mn;
        const int c = j / 2, shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            const int q = ((b.qs[32 * c + l] >> shift) & 0x0f) | (((b.qh[l] >> j) & 1) << 4);
            const float v = ds * (float)q;
            y[32 * j + l] = v - dm;
        }
    }
}

static void q6_k_block_to_float(const void *blk, float *y) {
    slm_block_q6_k b;
    memcpy(&b, blk, sizeof b);
    const float d = slm_f16_to_f32(b.d);
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, i = (e / 64) % 2, m = e % 64;
        const int s2 = m / 32, l = m % 32;
        const int lo = (b.ql[64 * h + m] >> (4 * i)) & 0x0f;
        const int hi = (b.qh[32 * h + l] >> (2 * (2 * i + s2))) & 3;
        const int q = (lo | (hi << 4)) - 32;
        const float ds = d * (float)b.scales[e / 16];
        y[e] = ds * (float)q;
    }
}

/* ---- row functions over blocks ---------------------------------------------------------- */

static void blocks_to_float(block_to_float_fn f, size_t block_bytes, int block_size,
                            const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i + block_size <= n; i += block_size, p += block_bytes) f(p, dst + i);
}

static float blocks_dot(block_to_float_fn f, size_t block_bytes, int block_size,
                        const void *w, const float *x, int64_t n) {
    float buf[QK_K]; /* one dequantized block */
    const uint8_t *p = w;
    double sum = 0.0;
    for (int64_t i = 0; i + block_size <= n; i += block_size, p += block_bytes) {
        f(p, buf);
        for (int j = 0; j < block_size; j++) sum += (double)buf[j] * (double)x[i + j];
    }
    return (float)sum;
}

static void q4_0_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q4_0_block_to_float, sizeof(slm_block_q4_0), QK32, s, y, n);
}
static float q4_0_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q4_0_block_to_float, sizeof(slm_block_q4_0), QK32, w, x, n);
}
static void q4_1_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q4_1_block_to_float, sizeof(slm_block_q4_1), QK32, s, y, n);
}
static float q4_1_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q4_1_block_to_float, sizeof(slm_block_q4_1), QK32, w, x, n);
}
static void q5_0_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q5_0_block_to_float, sizeof(slm_block_q5_0), QK32, s, y, n);
}
static float q5_0_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q5_0_block_to_float, sizeof(slm_block_q5_0), QK32, w, x, n);
}
static void q5_1_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q5_1_block_to_float, sizeof(slm_block_q5_1), QK32, s, y, n);
}
static float q5_1_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q5_1_block_to_float, sizeof(slm_block_q5_1), QK32, w, x, n);
}
static void q8_0_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q8_0_block_to_float, sizeof(slm_block_q8_0), QK32, s, y, n);
}
static float q8_0_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q8_0_block_to_float, sizeof(slm_block_q8_0), QK32, w, x, n);
}
static void q2_k_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q2_k_block_to_float, sizeof(slm_block_q2_k), QK_K, s, y, n);
}
static float q2_k_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q2_k_block_to_float, sizeof(slm_block_q2_k), QK_K, w, x, n);
}
static void q3_k_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q3_k_block_to_float, sizeof(slm_block_q3_k), QK_K, s, y, n);
}
static float q3_k_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q3_k_block_to_float, sizeof(slm_block_q3_k), QK_K, w, x, n);
}
static void q4_k_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q4_k_block_to_float, sizeof(slm_block_q4_k), QK_K, s, y, n);
}
static float q4_k_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q4_k_block_to_float, sizeof(slm_block_q4_k), QK_K, w, x, n);
}
static void q5_k_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q5_k_block_to_float, sizeof(slm_block_q5_k), QK_K, s, y, n);
}
static float q5_k_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q5_k_block_to_float, sizeof(slm_block_q5_k), QK_K, w, x, n);
}
static void q6_k_to_float(const void *s, float *y, int64_t n) {
    blocks_to_float(q6_k_block_to_float, sizeof(slm_block_q6_k), QK_K, s, y, n);
}
static float q6_k_dot(const void *w, const float *x, int64_t n) {
    return blocks_dot(q6_k_block_to_float, sizeof(slm_block_q6_k), QK_K, w, x, n);
}

/* ---- plain float types ------------------------------------------------------------------ */

static void f32_to_float(const void *src, float *y, int64_t n) {
    if (n > 0) memcpy(y, src, (size_t)n * sizeof(float));
}

static float f32_dot(const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, p + 4 * i, sizeof v);
        sum += (double)v * (double)x[i];
    }
    return (float)sum;
}

static void f32_from_float(const float *src, void *dst, int64_t n) {
    if (n > 0) memcpy(dst, src, (size_t)n * sizeof(float));
}

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void store_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void f16_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) y[i] = slm_f16_to_f32(load_u16(p + 2 * i));
}

static float f16_dot(const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)slm_f16_to_f32(load_u16(p + 2 * i)) * (double)x[i];
    return (float)sum;
}

static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) store_u16(p + 2 * i, slm_f32_to_f16(src[i]));
}

static void bf16_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) y[i] = slm_bf16_to_f32(load_u16(p + 2 * i));
}

static float bf16_dot(const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)slm_bf16_to_f32(load_u16(p + 2 * i)) * (double)x[i];
    return (float)sum;
}

static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) store_u16(p + 2 * i, slm_f32_to_bf16(src[i]));
}

/* ---- reference quantizers ---------------------------------------------------------------
 * Round to nearest with each format's usual scale: symmetric formats take the element of
 * largest magnitude (the first one on ties) and map it to the most negative quant; the
 * offset formats map [min, max] onto [0, qmax]. The inverse scale is computed from the
 * unrounded f32 scale; the stored scale is its f16 rounding. These match llama.cpp's
 * reference quantizers bit for bit on finite input. Non-finite input gives unspecified
 * quants but never undefined behaviour. */

/* Truncate v (expected in [0, hi + 1)) to an integer quant clamped to [0, hi]. */
static int quant_trunc(float v, int hi) {
    if (!(v >= 0.0f)) return 0; /* also catches NaN */
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* Element of largest magnitude (first on ties), with its sign. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        if (amax < a) {
            amax = a;
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void q8_0_block_from_float(const float *x, void *dst) {
    slm_block_q8_0 b;
    float amax = 0.0f;
    for (int j = 0; j < QK32; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = slm_f32_to_f16(d);
    for (int j = 0; j < QK32; j++) {
        float v = roundf(x[j] * id); /* half away from zero */
        if (isnan(v)) v = 0.0f;
        else if (v < -127.0f) v = -127.0f;
        else if (v > 127.0f) v = 127.0f;
        b.qs[j] = (int8_t)v;
    }
    memcpy(dst, &b, sizeof b);
}

static void q4_0_block_from_float(const float *x, void *dst) {
    slm_block_q4_0 b;
    const float d = signed_absmax(x, QK32) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = slm_f32_to_f16(d);
    for (int j = 0; j < QK32 / 2; j++) {
        const float s0 = x[j] * id;
        const float s1 = x[j + QK32 / 2] * id;
        const int q0 = quant_trunc(s0 + 8.5f, 15);
        const int q1 = quant_trunc(s1 + 8.5f, 15);
        b.qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
    memcpy(dst, &b, sizeof b);
}

static void q4_1_block_from_float(const float *x, void *dst) {
    slm_block_q4_1 b;
    float mn, mx;
    min_max(x, QK32, &mn, &mx);
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = slm_f32_to_f16(d);
    b.m = slm_f32_to_f16(mn);
    for (int j = 0; j < QK32 / 2; j++) {
        const float s0 = (x[j] - mn) * id;
        const float s1 = (x[j + QK32 / 2] - mn) * id;
        const int q0 = quant_trunc(s0 + 0.5f, 15);
        const int q1 = quant_trunc(s1 + 0.5f, 15);
        b.qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
    memcpy(dst, &b, sizeof b);
}

static void put_le32(uint8_t p[4], uint32_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)((v >> 8) & 0xff);
    p[2] = (uint8_t)((v >> 16) & 0xff);
    p[3] = (uint8_t)(v >> 24);
}

static void q5_0_block_from_float(const float *x, void *dst) {
    slm_block_q5_0 b;
    const float d = signed_absmax(x, QK32) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    b.d = slm_f32_to_f16(d);
    for (int j = 0; j < QK32 / 2; j++) {
        const float s0 = x[j] * id;
        const float s1 = x[j + QK32 / 2] * id;
        const int q0 = quant_trunc(s0 + 16.5f, 31);
        const int q1 = quant_trunc(s1 + 16.5f, 31);
        b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= (uint32_t)(q0 >> 4) << j;
        qh |= (uint32_t)(q1 >> 4) << (j + QK32 / 2);
    }
    put_le32(b.qh, qh);
    memcpy(dst, &b, sizeof b);
}

static void q5_1_block_from_float(const float *x, void *dst) {
    slm_block_q5_1 b;
    float mn, mx;
    min_max(x, QK32, &mn, &mx);
    const float d = (mx - mn) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    b.d = slm_f32_to_f16(d);
    b.m = slm_f32_to_f16(mn);
    for (int j = 0; j < QK32 / 2; j++) {
        const float s0 = (x[j] - mn) * id;
        const float s1 = (x[j + QK32 / 2] - mn) * id;
        const int q0 = quant_trunc(s0 + 0.5f, 31);
        const int q1 = quant_trunc(s1 + 0.5f, 31);
        b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= (uint32_t)(q0 >> 4) << j;
        qh |= (uint32_t)(q1 >> 4) << (j + QK32 / 2);
    }
    put_le32(b.qh, qh);
    memcpy(dst, &b, sizeof b);
}

typedef void (*block_from_float_fn)(const float *x, void *dst);

/* All reference quantizers work on 32-element blocks. */
static void blocks_from_float(block_from_float_fn f, size_t block_bytes, const float *src,
                              void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i + QK32 <= n; i += QK32, p += block_bytes) f(src + i, p);
}

static void q8_0_from_float(const float *x, void *dst, int64_t n) {
    blocks_from_float(q8_0_block_from_float, sizeof(slm_block_q8_0), x, dst, n);
}
static void q4_0_from_float(const float *x, void *dst, int64_t n) {
    blocks_from_float(q4_0_block_from_float, sizeof(slm_block_q4_0), x, dst, n);
}
static void q4_1_from_float(const float *x, void *dst, int64_t n) {
    blocks_from_float(q4_1_block_from_float, sizeof(slm_block_q4_1), x, dst, n);
}
static void q5_0_from_float(const float *x, void *dst, int64_t n) {
    blocks_from_float(q5_0_block_from_float, sizeof(slm_block_q5_0), x, dst, n);
}
static void q5_1_from_float(const float *x, void *dst, int64_t n) {
    blocks_from_float(q5_1_block_from_float, sizeof(slm_block_q5_1), x, dst, n);
}

/* ---- the traits table ------------------------------------------------------------------- */

static const slm_dtype_traits g_traits[SLM_DT_GQ_FIRST] = {
    [SLM_DT_F32] = {.name = "f32", .block_size = 1, .block_bytes = 4,
                    .to_float = f32_to_float, .dot_f32 = f32_dot,
                    .from_float = f32_from_float},
    [SLM_DT_F16] = {.name = "f16", .block_size = 1, .block_bytes = 2,
                    .to_float = f16_to_float, .dot_f32 = f16_dot,
                    .from_float = f16_from_float},
    [SLM_DT_Q4_0] = {.name = "q4_0", .block_size = QK32, .block_bytes = sizeof(slm_block_q4_0),
                     .to_float = q4_0_to_float, .dot_f32 = q4_0_dot,
                     .from_float = q4_0_from_float},
    [SLM_DT_Q4_1] = {.name = "q4_1", .block_size = QK32, .block_bytes = sizeof(slm_block_q4_1),
                     .to_float = q4_1_to_float, .dot_f32 = q4_1_dot,
                     .from_float = q4_1_from_float},
    [SLM_DT_Q5_0] = {.name = "q5_0", .block_size = QK32, .block_bytes = sizeof(slm_block_q5_0),
                     .to_float = q5_0_to_float, .dot_f32 = q5_0_dot,
                     .from_float = q5_0_from_float},
    [SLM_DT_Q5_1] = {.name = "q5_1", .block_size = QK32, .block_bytes = sizeof(slm_block_q5_1),
                     .to_float = q5_1_to_float, .dot_f32 = q5_1_dot,
                     .from_float = q5_1_from_float},
    [SLM_DT_Q8_0] = {.name = "q8_0", .block_size = QK32, .block_bytes = sizeof(slm_block_q8_0),
                     .to_float = q8_0_to_float, .dot_f32 = q8_0_dot,
                     .from_float = q8_0_from_float},
    [SLM_DT_Q8_1] = {.name = "q8_1", .block_size = QK32, .block_bytes = sizeof(slm_block_q8_1)},
    [SLM_DT_Q2_K] = {.name = "q2_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q2_k),
                     .to_float = q2_k_to_float, .dot_f32 = q2_k_dot,
                     .from_float = slm_quantize_q2_k},
    [SLM_DT_Q3_K] = {.name = "q3_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q3_k),
                     .to_float = q3_k_to_float, .dot_f32 = q3_k_dot,
                     .from_float = slm_quantize_q3_k},
    [SLM_DT_Q4_K] = {.name = "q4_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q4_k),
                     .to_float = q4_k_to_float, .dot_f32 = q4_k_dot,
                     .from_float = slm_quantize_q4_k},
    [SLM_DT_Q5_K] = {.name = "q5_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q5_k),
                     .to_float = q5_k_to_float, .dot_f32 = q5_k_dot,
                     .from_float = slm_quantize_q5_k},
    [SLM_DT_Q6_K] = {.name = "q6_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q6_k),
                     .to_float = q6_k_to_float, .dot_f32 = q6_k_dot,
                     .from_float = slm_quantize_q6_k},
    [SLM_DT_Q8_K] = {.name = "q8_k", .block_size = QK_K, .block_bytes = sizeof(slm_block_q8_k)},
    [SLM_DT_I8] = {.name = "i8", .block_size = 1, .block_bytes = 1},
    [SLM_DT_I16] = {.name = "i16", .block_size = 1, .block_bytes = 2},
    [SLM_DT_I32] = {.name = "i32", .block_size = 1, .block_bytes = 4},
    [SLM_DT_I64] = {.name = "i64", .block_size = 1, .block_bytes = 8},
    [SLM_DT_F64] = {.name = "f64", .block_size = 1, .block_bytes = 8},
    [SLM_DT_BF16] = {.name = "bf16", .block_size = 1, .block_bytes = 2,
                     .to_float = bf16_to_float, .dot_f32 = bf16_dot,
                     .from_float = bf16_from_float},
};

const slm_dtype_traits *slm_dtype_get(uint32_t t) {
    if (t >= SLM_DT_COUNT) return NULL;
    if (t >= SLM_DT_CBT_FIRST && t < SLM_DT_CBT_FIRST + SLM_CBT_N_TYPES) return slm_cbt_traits(t);
    if (t >= SLM_DT_CB_FIRST) return slm_cb_traits(t);
    if (t >= SLM_DT_SP_FIRST) return slm_sp_traits(t);
    if (t >= SLM_DT_GQ_FIRST) return slm_gq_traits(t);
    if (g_traits[t].name == NULL) return NULL;
    return &g_traits[t];
}

const char *slm_dtype_name(uint32_t t) {
    const slm_dtype_traits *tr = slm_dtype_get(t);
    return tr ? tr->name : "unknown";
}

static int ascii_lower(int c) { return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c; }

static bool name_equal(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b)) return false;
    return *a == *b;
}

int slm_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < SLM_DT_COUNT; t++) {
        const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
        if (tr && name_equal(tr->name, name)) return t;
    }
    return -1;
}

bool slm_row_bytes(uint32_t t, int64_t n, size_t *out) {
    const slm_dtype_traits *tr = slm_dtype_get(t);
    if (!tr || n < 0 || n % tr->block_size != 0) return false;
    if (tr->row_bytes) {
        if (n > 0) return tr->row_bytes(t, n, out);
        if (out) *out = 0;
        return true;
    }
    const uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > SIZE_MAX / tr->block_bytes) return false;
    if (out) *out = (size_t)blocks * tr->block_bytes;
    return true;
}
