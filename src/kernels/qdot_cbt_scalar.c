/* qdot_cbt_scalar.c - portable kernels of the per-tensor codebook formats (see qdot_cbt.c): the
 * twin the SIMD kernels are tested against. Each sub-block's 32 indices are looked up in the
 * table; the integer sum with the Q8_0 block is exact; the sub-block terms d_x * isum are
 * added in double, and the row scale multiplies at the end. */
#include <string.h>

#include "core/cbt.h"
#include "qdot_impl.h"
#include "qdot_cbt.h"


enum { CT = 8 /* activation rows per tile */ };

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The 32 int8 weights of sub-block p, looked up in the table (256 entries, zero padded). */
static void decode_sub(int bits, const uint8_t *p, const int8_t *tab, int8_t out[32]) {
    if (bits == 8) {
        for (int e = 0; e < 32; e++) out[e] = tab[p[e]];
        return;
    }
    const uint32_t h5 = bits == 5 ? load_u32(p + 16) : 0;
    const uint32_t h7 = bits == 7 ? load_u32(p + 24) : 0;
    for (int e = 0; e < 32; e++) {
        int i = e < 16 ? (p[e] & 15) : (p[e - 16] >> 4);
        if (bits == 5) i |= (int)((h5 >> e) & 1) << 4;
        else i |= ((p[16 + e % 8] >> (2 * (e / 8))) & 3) << 4;
        i |= (int)((h7 >> e) & 1) << 6;
        out[e] = tab[i];
    }
}

/* Row w against nc (<= CT) activation rows; out[c] the dots. */
static void row_tile(const slm_cbt_format *f, const int8_t *tab, int64_t n, const uint8_t *w, const uint8_t *x,
                     size_t xs, int nc, float *out) {
    const float s = load_f16(w);
    const uint8_t *p = w + 2;
    double acc[CT] = {0};
    int8_t wv[32];
    for (int64_t b = 0; b < n / 32; b++, p += f->sub) {
        decode_sub(f->bits, p, tab, wv);
        slm_q8_0_block_acc(wv, x, xs, b, nc, acc);
    }
    for (int c = 0; c < nc; c++) out[c] = (float)((double)s * acc[c]);
}

static void pad_table(const slm_cbt_format *f, const int8_t *tab, int8_t full[SLM_CBT_MAX_K]) {
    memset(full, 0, SLM_CBT_MAX_K);
    memcpy(full, tab, (size_t)f->k);
}

float slm_cbt_dot_scalar(const slm_cbt_format *f, const int8_t *tab, const void *w, const void *x, int64_t n) {
    int8_t full[SLM_CBT_MAX_K];
    pad_table(f, tab, full);
    float r;
    row_tile(f, full, n, w, x, 0, 1, &r);
    return r;
}

void slm_cbt_gemm_scalar(const slm_cbt_format *f, const int8_t *tab, int64_t n, const void *w, size_t ws, int nr,
                         const void *x, size_t xs, int nc, float *y, size_t ldy) {
    int8_t full[SLM_CBT_MAX_K];
    pad_table(f, tab, full);
    float out[CT];
    for (int c0 = 0; c0 < nc; c0 += CT) {
        const int tc = nc - c0 < CT ? nc - c0 : CT;
        for (int r = 0; r < nr; r++) {
            row_tile(f, full, n, (const uint8_t *)w + (size_t)r * ws, (const uint8_t *)x + (size_t)c0 * xs, xs, tc,
                     out);
            for (int c = 0; c < tc; c++) y[(size_t)(c0 + c) * ldy + (size_t)r] = out[c];
        }
    }
}
