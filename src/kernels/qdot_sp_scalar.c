/* qdot_sp_scalar.c - the portable twin of the sparse-format kernels (layouts in
 * core/sparse.h) against Q8_0 activation blocks: per 32-weight block the exact integer sum
 * of the stored values times the activations at their positions, scaled by d_w * d_x, summed
 * in double. Like every kernel it trusts the masks (rows passed the dtype's check_rows). */
#include <string.h>

#include "core/sparse.h"
#include "qdot_impl.h"

enum { QK = 32, Q8_0_BYTES = 34 };

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* 2:4 with 8-bit (bits 8) or 4-bit values */
static float dot_s24(const int bits, const void *w, const void *x, int64_t n) {
    const size_t bb = bits == 8 ? SLM_SP_24_BLOCK_Q8 : SLM_SP_24_BLOCK_Q4;
    const uint8_t *pw = w, *px = x;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, pw += bb, px += Q8_0_BYTES) {
        const int8_t *qx = (const int8_t *)(px + 2);
        const uint8_t *v = pw + 6;
        int isum = 0;
        for (int k = 0; k < 16; k++) {
            const int g = k / 2, nib = (pw[2 + g / 2] >> (4 * (g % 2))) & 15;
            const int pos = 4 * g + (k % 2 ? nib >> 2 : nib & 3);
            const int q = bits == 8 ? (int8_t)v[k] : (k < 8 ? (v[k] & 15) : (v[k - 8] >> 4)) - 8;
            isum += q * qx[pos];
        }
        sum += (double)(load_f16(pw) * load_f16(px) * (float)isum);
    }
    return (float)sum;
}

/* unstructured with 8-bit (bits 8) or 4-bit values: values walked by the popcount of each
 * block's mask */
static float dot_us(const int bits, const void *w, const void *x, int64_t n) {
    const uint8_t *hdr = w, *px = x;
    const uint8_t *val = (const uint8_t *)w + (n / QK) * SLM_SP_HDR;
    int64_t k = 0; /* stored values so far */
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, hdr += SLM_SP_HDR, px += Q8_0_BYTES) {
        const int8_t *qx = (const int8_t *)(px + 2);
        const uint32_t mask = load_u32(hdr + 2);
        int isum = 0;
        for (int j = 0; j < QK; j++) {
            if (!(mask >> j & 1)) continue;
            const int q = bits == 8 ? (int8_t)val[k] : ((k & 1) ? val[k >> 1] >> 4 : val[k >> 1] & 15) - 8;
            isum += q * qx[j];
            k++;
        }
        sum += (double)(load_f16(hdr) * load_f16(px) * (float)isum);
    }
    return (float)sum;
}

static float dot_us8(const void *w, const void *x, int64_t n) { return dot_us(8, w, x, n); }
static float dot_us4(const void *w, const void *x, int64_t n) { return dot_us(4, w, x, n); }

static float dot_s24q8(const void *w, const void *x, int64_t n) { return dot_s24(8, w, x, n); }
static float dot_s24q4(const void *w, const void *x, int64_t n) { return dot_s24(4, w, x, n); }

#define GEMM_OF(name, dot)                                                                                  \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y, \
                     size_t ldy) {                                                                          \
        for (int r = 0; r < nr; r++)                                                                        \
            for (int c = 0; c < nc; c++)                                                                    \
                y[(size_t)c * ldy + (size_t)r] =                                                            \
                    dot((const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, n);             \
    }
GEMM_OF(gemm_s24q8, dot_s24q8)
GEMM_OF(gemm_s24q4, dot_s24q4)
GEMM_OF(gemm_us8, dot_us8)
GEMM_OF(gemm_us4, dot_us4)
#undef GEMM_OF

void slm_qdot_sp_fill_scalar(slm_kernels *k);
void slm_qdot_sp_fill_scalar(slm_kernels *k) {
    k->vec_dot[SLM_SP_24_Q8] = dot_s24q8;
    k->gemm[SLM_SP_24_Q8] = gemm_s24q8;
    k->vec_dot[SLM_SP_24_Q4] = dot_s24q4;
    k->gemm[SLM_SP_24_Q4] = gemm_s24q4;
    for (int c = 1; c <= SLM_SP_N_CLASSES; c++) {
        k->vec_dot[SLM_SP_Q8S_FIRST + c - 1] = dot_us8;
        k->gemm[SLM_SP_Q8S_FIRST + c - 1] = gemm_us8;
        k->vec_dot[SLM_SP_Q4S_FIRST + c - 1] = dot_us4;
        k->gemm[SLM_SP_Q4S_FIRST + c - 1] = gemm_us4;
    }
}
