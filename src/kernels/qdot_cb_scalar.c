/* qdot_cb_scalar.c - portable kernels of the codebook formats (see qdot_cb.c): the twin the
 * SIMD kernels are tested against. Integer sums per sub-block are exact; the sub-block terms
 * d_x * isum are added in double, and the row scale multiplies at the end. */
#include <string.h>

#include "core/codebook.h"
#include "qdot_impl.h"

float slm_cb_dot_scalar(const slm_cb_format *f, const void *w, const void *x, int64_t n);
void slm_cb_gemm_scalar(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy);

enum { CT = 8 /* activation rows per tile */ };

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* The 32 int8 weights of sub-block p, looked up in the codebook lv. */
static void decode_sub(int bits, const uint8_t *p, const int8_t *lv, int8_t out[32]) {
    if (bits == 4) {
        for (int e = 0; e < 16; e++) {
            out[e] = lv[p[e] & 15];
            out[e + 16] = lv[p[e] >> 4];
        }
        return;
    }
    const uint32_t h = bits == 3 ? (uint32_t)p[8] | ((uint32_t)p[9] << 8) | ((uint32_t)p[10] << 16) |
                                       ((uint32_t)p[11] << 24)
                                 : 0;
    for (int e = 0; e < 32; e++) {
        const int i = ((p[e % 8] >> (2 * (e / 8))) & 3) | (int)(((h >> e) & 1) << 2);
        out[e] = lv[i];
    }
}

/* Row w against nc (<= CT) activation rows; out[c] the dots. */
static void row_tile(const slm_cb_format *f, int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int nc,
                     float *out) {
    int8_t lv[16] = {0};
    memcpy(lv, w + 2, (size_t)f->k);
    const float s = load_f16(w);
    const uint8_t *p = w + f->hdr;
    double acc[CT] = {0};
    int8_t wv[32];
    for (int64_t b = 0; b < n / 32; b++, p += f->sub) {
        decode_sub(f->bits, p, lv, wv);
        slm_q8_0_block_acc(wv, x, xs, b, nc, acc);
    }
    for (int c = 0; c < nc; c++) out[c] = (float)((double)s * acc[c]);
}

float slm_cb_dot_scalar(const slm_cb_format *f, const void *w, const void *x, int64_t n) {
    float r;
    row_tile(f, n, w, x, 0, 1, &r);
    return r;
}

void slm_cb_gemm_scalar(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy) {
    float out[CT];
    for (int c0 = 0; c0 < nc; c0 += CT) {
        const int tc = nc - c0 < CT ? nc - c0 : CT;
        for (int r = 0; r < nr; r++) {
            row_tile(f, n, (const uint8_t *)w + (size_t)r * ws, (const uint8_t *)x + (size_t)c0 * xs, xs, tc, out);
            for (int c = 0; c < tc; c++) y[(size_t)(c0 + c) * ldy + (size_t)r] = out[c];
        }
    }
}
