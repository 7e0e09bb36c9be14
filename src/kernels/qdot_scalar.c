/* qdot_scalar.c - portable dot products of the 32-element block formats (Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0) with quantized activations, of float weights (F32, F16, BF16) with f32
 * activations, and the activation quantizers (Q8_0, Q8_1, F32).
 *
 * These are the twins every SIMD kernel is tested against. Each block is reduced to an exact
 * integer sum of quant products first; only then are the float scales applied:
 *   Q4_0/Q5_0/Q8_0:  block = (d_w * d_x) * isum                       (weights centred)
 *   Q4_1/Q5_1:       block = (d_w * d_x) * isum + m_w * s_x           (s_x = d_x * sum q_x)
 * Block results (and the products of float weights) are summed in double, so the twin adds
 * no rounding of its own beyond the per-block scale products. Blocks are read through byte offsets (layouts as in src/core/dtype.c),
 * so any alignment is accepted. */
#include <math.h>
#include <string.h>

#include "qdot_impl.h"

enum {
    QK = 32,
    /* bytes per block and field offsets */
    Q4_0_BYTES = 18, /* f16 d, u8 qs[16] */
    Q4_1_BYTES = 20, /* f16 d, f16 m, u8 qs[16] */
    Q5_0_BYTES = 22, /* f16 d, u8 qh[4], u8 qs[16] */
    Q5_1_BYTES = 24, /* f16 d, f16 m, u8 qh[4], u8 qs[16] */
    Q8_0_BYTES = 34, /* f16 d, i8 qs[32] */
    Q8_1_BYTES = 36, /* f16 d, f16 s, i8 qs[32] */
};

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void store_f16(uint8_t *p, float v) {
    const uint16_t h = slm_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- activation quantizers -------------------------------------------------------------- */

/* One block of 32 values to d = amax / 127 (stored as f16) and q = round(x / d) with halves
 * away from zero (computed as round(x * (1/d)), the reference rounding). NaN elements give 0.
 * Returns the sum of the quants. */
static int quant_block_8bit(const float *x, uint8_t *d_out, int8_t *q) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(d_out, d);
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        float v = roundf(x[j] * id);
        if (isnan(v)) v = 0.0f;
        else if (v < -127.0f) v = -127.0f;
        else if (v > 127.0f) v = 127.0f;
        q[j] = (int8_t)v;
        sum += q[j];
    }
    return sum;
}

static void quant_q8_0(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK <= n; i += QK, p += Q8_0_BYTES) quant_block_8bit(x + i, p, (int8_t *)(p + 2));
}

/* s is computed from the stored (f16-rounded) scale, so m_w * s matches the dequantized
 * activations as closely as an f16 allows. */
static void quant_q8_1(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i + QK <= n; i += QK, p += Q8_1_BYTES) {
        const int sum = quant_block_8bit(x + i, p, (int8_t *)(p + 4));
        store_f16(p + 2, load_f16(p) * (float)sum);
    }
}

static void quant_f32(const float *x, void *y, int64_t n) {
    if (n > 0) memcpy(y, x, (size_t)n * sizeof(float));
}

/* ---- block-quant weights ---------------------------------------------------------------- */

/* Weight quant j (0..31) of the 4-bit layouts: low nibbles hold 0..15, high nibbles 16..31. */
static int nibble(const uint8_t *qs, int j) { return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4); }

static float vec_dot_q4_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q4_0_BYTES, px += Q8_0_BYTES) {
        const int8_t *qx = (const int8_t *)(px + 2);
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += (nibble(pw + 2, j) - 8) * qx[j];
        const float dd = load_f16(pw) * load_f16(px);
        sum += (double)(dd * (float)isum);
    }
    return (float)sum;
}

static float vec_dot_q4_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q4_1_BYTES, px += Q8_1_BYTES) {
        const int8_t *qx = (const int8_t *)(px + 4);
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += nibble(pw + 4, j) * qx[j];
        const float dd = load_f16(pw) * load_f16(px);
        const float ms = load_f16(pw + 2) * load_f16(px + 2);
        sum += (double)(dd * (float)isum) + (double)ms;
    }
    return (float)sum;
}

static float vec_dot_q5_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q5_0_BYTES, px += Q8_0_BYTES) {
        const uint32_t qh = load_le32(pw + 2);
        const int8_t *qx = (const int8_t *)(px + 2);
        int isum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = nibble(pw + 6, j) | (int)(((qh >> j) & 1u) << 4);
            isum += (q - 16) * qx[j];
        }
        const float dd = load_f16(pw) * load_f16(px);
        sum += (double)(dd * (float)isum);
    }
    return (float)sum;
}

static float vec_dot_q5_1(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q5_1_BYTES, px += Q8_1_BYTES) {
        const uint32_t qh = load_le32(pw + 4);
        const int8_t *qx = (const int8_t *)(px + 4);
        int isum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = nibble(pw + 8, j) | (int)(((qh >> j) & 1u) << 4);
            isum += q * qx[j];
        }
        const float dd = load_f16(pw) * load_f16(px);
        const float ms = load_f16(pw + 2) * load_f16(px + 2);
        sum += (double)(dd * (float)isum) + (double)ms;
    }
    return (float)sum;
}

static float vec_dot_q8_0(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += Q8_0_BYTES, px += Q8_0_BYTES) {
        const int8_t *qw = (const int8_t *)(pw + 2);
        const int8_t *qx = (const int8_t *)(px + 2);
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += qw[j] * qx[j];
        const float dd = load_f16(pw) * load_f16(px);
        sum += (double)(dd * (float)isum);
    }
    return (float)sum;
}

/* ---- float weights ---------------------------------------------------------------------- */

static float vec_dot_f32(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w;
    const float *fx = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, pw + 4 * i, sizeof v);
        sum += (double)v * (double)fx[i];
    }
    return (float)sum;
}

static float vec_dot_f16(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w;
    const float *fx = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)load_f16(pw + 2 * i) * (double)fx[i];
    return (float)sum;
}

static float vec_dot_bf16(const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w;
    const float *fx = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)slm_bf16_to_f32((uint16_t)(pw[2 * i] | (pw[2 * i + 1] << 8))) * (double)fx[i];
    return (float)sum;
}

void slm_qdot_fill_scalar(slm_kernels *k) {
    k->quant_act[SLM_DT_Q8_0] = quant_q8_0;
    k->quant_act[SLM_DT_Q8_1] = quant_q8_1;
    k->quant_act[SLM_DT_F32] = quant_f32;
    k->vec_dot[SLM_DT_Q4_0] = vec_dot_q4_0;
    k->vec_dot[SLM_DT_Q4_1] = vec_dot_q4_1;
    k->vec_dot[SLM_DT_Q5_0] = vec_dot_q5_0;
    k->vec_dot[SLM_DT_Q5_1] = vec_dot_q5_1;
    k->vec_dot[SLM_DT_Q8_0] = vec_dot_q8_0;
    k->vec_dot[SLM_DT_F32] = vec_dot_f32;
    k->vec_dot[SLM_DT_F16] = vec_dot_f16;
    k->vec_dot[SLM_DT_BF16] = vec_dot_bf16;
}
