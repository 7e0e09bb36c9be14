/* qdot_k_scalar.c - portable dot products of the k-quant weight formats (Q2_K .. Q6_K) with
 * Q8_K activations, and the f32 -> Q8_K activation quantizer.
 *
 * These are the scalar twins every SIMD k-quant kernel is tested against. Each super-block of
 * 256 elements is reduced to integer sums first: the quant products of every sub-block,
 * weighted by its integer scale, and (for the formats with a min) the mins weighted by the
 * activation block sums (bsums). Only then are the float scales applied:
 *   block = (d_y * d_w) * isum - (d_y * dmin_w) * imin
 * All integer sums fit in int32 with room to spare (the largest, Q6_K, stays below 2^28).
 *
 * Blocks are read through byte offsets of the layout structs below (the GGUF layouts, as
 * documented in src/core/dtype.c), so the functions accept any alignment. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../core/dtype.h"
#include "qdot_impl.h"

enum { QK_K = 256 };

typedef struct {
    uint8_t scales[16]; /* sub-block i: scale in the low nibble, min in the high */
    uint8_t qs[64];     /* 2-bit quants */
    uint16_t d, dmin;   /* f16 */
} k_block_q2;
typedef struct {
    uint8_t hmask[32];  /* high bits of the quants */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 packed 6-bit scales, +32 */
    uint16_t d;         /* f16 */
} k_block_q3;
typedef struct {
    uint16_t d, dmin;   /* f16 */
    uint8_t scales[12]; /* 8 packed 6-bit scales and 8 mins */
    uint8_t qs[128];    /* 4-bit quants */
} k_block_q4;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];     /* bit j of qh[l]: bit 4 of element l of sub-block j */
    uint8_t qs[128];
} k_block_q5;
typedef struct {
    uint8_t ql[128];    /* low 4 bits */
    uint8_t qh[64];     /* high 2 bits */
    int8_t scales[16];  /* signed sub-block scales */
    uint16_t d;         /* f16 */
} k_block_q6;
typedef struct {
    float d;            /* f32 scale */
    int8_t qs[QK_K];    /* quants */
    int16_t bsums[16];  /* sums of the quants in groups of 16 */
} k_block_q8;

_Static_assert(sizeof(k_block_q2) == 84, "q2_k block size");
_Static_assert(sizeof(k_block_q3) == 110, "q3_k block size");
_Static_assert(sizeof(k_block_q4) == 144, "q4_k block size");
_Static_assert(sizeof(k_block_q5) == 176, "q5_k block size");
_Static_assert(sizeof(k_block_q6) == 210, "q6_k block size");
_Static_assert(sizeof(k_block_q8) == 292, "q8_k block size");

static float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return slm_f16_to_f32(h);
}

/* The parts of a Q8_K block every kernel needs. */
typedef struct {
    float d;
    const int8_t *qs;
    int16_t bsums[16];
} q8_view;

static void q8_load(const uint8_t *b, q8_view *v) {
    memcpy(&v->d, b + offsetof(k_block_q8, d), sizeof v->d);
    v->qs = (const int8_t *)(b + offsetof(k_block_q8, qs));
    memcpy(v->bsums, b + offsetof(k_block_q8, bsums), sizeof v->bsums);
}

/* ---- f32 -> Q8_K --------------------------------------------------------------------------
 * The reference rule: the element of largest magnitude (the first one on ties) is `max`;
 * iscale = -127 / max, q = round-half-even(iscale * x) clamped to [-127, 127], d = 1 / iscale
 * (so d has the opposite sign of max). An all-zero block, or one so tiny that iscale would
 * overflow (|max| < 127 / FLT_MAX), is stored as d = 0 with zero quants. Non-finite input gives
 * unspecified quants but never undefined behaviour (NaN products clamp to -127). */

/* Round v (|v| <= 127 already) to the nearest integer, ties to even. */
static int round_half_even(float v) {
    const float t = v + 12582912.0f; /* 1.5 * 2^23: the integer lands in the low mantissa bits */
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static void q8_k_block_quant(const float *x, uint8_t *dst) {
    k_block_q8 b;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }
    const float iscale = amax != 0.0f ? -127.0f / max : 0.0f;
    if (amax == 0.0f || isinf(iscale)) {
        memset(&b, 0, sizeof b);
    } else {
        for (int j = 0; j < QK_K; j++) {
            float v = iscale * x[j];
            if (!(v >= -127.0f)) v = -127.0f; /* also NaN */
            if (v > 127.0f) v = 127.0f;
            b.qs[j] = (int8_t)round_half_even(v);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b.qs[16 * g + l];
            b.bsums[g] = (int16_t)s;
        }
        b.d = 1.0f / iscale;
    }
    memcpy(dst, &b, sizeof b);
}

static void quant_q8_k(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK_K <= n; i += QK_K, p += sizeof(k_block_q8)) q8_k_block_quant(x + i, p);
}

/* ---- Q2_K: x = (d * sc) * q - dmin * mn, q in 0..3, 16 sub-blocks of 16 ------------------- */

static float vec_dot_q2_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += sizeof(k_block_q2), x += sizeof(k_block_q8)) {
        q8_view y;
        q8_load(x, &y);
        const uint8_t *sc = w + offsetof(k_block_q2, scales);
        const uint8_t *qs = w + offsetof(k_block_q2, qs);
        int32_t isum = 0, imin = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) { /* sub-block e0 / 16 */
            const int h = e0 / 128, s = (e0 / 32) % 4, l0 = e0 % 32;
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += ((qs[32 * h + l0 + l] >> (2 * s)) & 3) * y.qs[e0 + l];
            isum += (sc[e0 / 16] & 0x0f) * dot;
            imin += (sc[e0 / 16] >> 4) * y.bsums[e0 / 16];
        }
        const float dall = y.d * load_f16(w + offsetof(k_block_q2, d));
        const float dmin = y.d * load_f16(w + offsetof(k_block_q2, dmin));
        sum += dall * (float)isum - dmin * (float)imin;
    }
    return sum;
}

/* ---- Q3_K: x = (d * (sc - 32)) * (lo - 4 * !hbit), 16 sub-blocks of 16 -------------------- */

static int q3_scale(const uint8_t sc[12], int i) {
    const int lo = i < 8 ? (sc[i] & 0x0f) : (sc[i - 8] >> 4);
    const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static float vec_dot_q3_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += sizeof(k_block_q3), x += sizeof(k_block_q8)) {
        q8_view y;
        q8_load(x, &y);
        const uint8_t *hm = w + offsetof(k_block_q3, hmask);
        const uint8_t *qs = w + offsetof(k_block_q3, qs);
        const uint8_t *sc = w + offsetof(k_block_q3, scales);
        int32_t isum = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const int h = e0 / 128, s = (e0 / 32) % 4, l0 = e0 % 32, hb = e0 / 32;
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) {
                const int lo = (qs[32 * h + l0 + l] >> (2 * s)) & 3;
                const int q = lo - (((hm[l0 + l] >> hb) & 1) ? 0 : 4);
                dot += q * y.qs[e0 + l];
            }
            isum += q3_scale(sc, e0 / 16) * dot;
        }
        const float dall = y.d * load_f16(w + offsetof(k_block_q3, d));
        sum += dall * (float)isum;
    }
    return sum;
}

/* ---- Q4_K / Q5_K: x = (d * sc) * q - dmin * mn, 8 sub-blocks of 32 ------------------------- */

/* 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static void k4_scale_min(const uint8_t s[12], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Shared body of Q4_K and Q5_K: qh is NULL for Q4_K. */
static float dot_q45_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const q8_view *y,
                           float d, float dmin) {
    int32_t isum = 0, imin = 0;
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k4_scale_min(scales, j, &sc, &mn);
        const int c = j / 2, shift = 4 * (j % 2);
        int32_t dot = 0;
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * c + l] >> shift) & 0x0f;
            if (qh) q |= ((qh[l] >> j) & 1) << 4;
            dot += q * y->qs[32 * j + l];
        }
        isum += sc * dot;
        imin += mn * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    const float dall = y->d * d;
    const float dm = y->d * dmin;
    return dall * (float)isum - dm * (float)imin;
}

static float vec_dot_q4_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += sizeof(k_block_q4), x += sizeof(k_block_q8)) {
        q8_view y;
        q8_load(x, &y);
        sum += dot_q45_block(w + offsetof(k_block_q4, scales), w + offsetof(k_block_q4, qs), NULL, &y,
                             load_f16(w + offsetof(k_block_q4, d)), load_f16(w + offsetof(k_block_q4, dmin)));
    }
    return sum;
}

static float vec_dot_q5_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += sizeof(k_block_q5), x += sizeof(k_block_q8)) {
        q8_view y;
        q8_load(x, &y);
        sum += dot_q45_block(w + offsetof(k_block_q5, scales), w + offsetof(k_block_q5, qs),
                             w + offsetof(k_block_q5, qh), &y, load_f16(w + offsetof(k_block_q5, d)),
                             load_f16(w + offsetof(k_block_q5, dmin)));
    }
    return sum;
}

/* ---- Q6_K: x = (d * sc) * (q - 32), q in 0..63, 16 sub-blocks of 16 ------------------------ */

static float vec_dot_q6_k(const void *vw, const void *vx, int64_t n) {
    const uint8_t *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += sizeof(k_block_q6), x += sizeof(k_block_q8)) {
        q8_view y;
        q8_load(x, &y);
        const uint8_t *ql = w + offsetof(k_block_q6, ql);
        const uint8_t *qh = w + offsetof(k_block_q6, qh);
        const int8_t *sc = (const int8_t *)(w + offsetof(k_block_q6, scales));
        int32_t isum = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const int h = e0 / 128, ih = (e0 / 64) % 2, m0 = e0 % 64;
            const int s2 = m0 / 32, l0 = m0 % 32;
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) {
                const int lo = (ql[64 * h + m0 + l] >> (4 * ih)) & 0x0f;
                const int hi = (qh[32 * h + l0 + l] >> (2 * (2 * ih + s2))) & 3;
                dot += ((lo | (hi << 4)) - 32) * y.qs[e0 + l];
            }
            isum += sc[e0 / 16] * dot;
        }
        const float dall = y.d * load_f16(w + offsetof(k_block_q6, d));
        sum += dall * (float)isum;
    }
    return sum;
}

void slm_qdot_k_fill_scalar(slm_kernels *k) {
    k->quant_act[SLM_DT_Q8_K] = quant_q8_k;
    k->vec_dot[SLM_DT_Q2_K] = vec_dot_q2_k;
    k->vec_dot[SLM_DT_Q3_K] = vec_dot_q3_k;
    k->vec_dot[SLM_DT_Q4_K] = vec_dot_q4_k;
    k->vec_dot[SLM_DT_Q5_K] = vec_dot_q5_k;
    k->vec_dot[SLM_DT_Q6_K] = vec_dot_q6_k;
}
