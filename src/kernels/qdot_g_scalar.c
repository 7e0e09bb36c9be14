/* qdot_g_scalar.c - the portable twin of the group-format kernels (see qdot_g.h): exact
 * integer sums per 32-weight sub-block, scales applied per sub-block, summed in double. */
#include "qdot_g.h"

enum { Q8_0_BYTES = 34, Q8_1_BYTES = 36 };

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* Quant e (0..31) of a packed sub-block. */
static int quant_at(int bits, const uint8_t *p, int e) {
    switch (bits) {
    case 8:
        return (int8_t)p[e];
    case 4:
        return e < 16 ? (p[e] & 15) : (p[e - 16] >> 4);
    default: {
        int q = (p[e % 8] >> (2 * (e / 8))) & 3;
        if (bits == 3) q |= ((p[8 + e / 8] >> (e % 8)) & 1) << 2;
        return q;
    }
    }
}

float slm_gq_dot_scalar(const slm_gq_format *f, const void *w, const void *x, int64_t n) {
    const uint8_t *pw = w, *px = x;
    const int o = (f->asym || f->bits == 8) ? 0 : 1 << (f->bits - 1);
    const int xb = f->asym ? Q8_1_BYTES : Q8_0_BYTES, xq = f->asym ? 4 : 2;
    double sum = 0.0;
    for (int64_t off = 0; off < n;) {
        const int gl = n - off < f->group ? (int)(n - off) : f->group;
        const float dw = load_f16(pw), mw = f->asym ? load_f16(pw + 2) : 0.0f;
        pw += f->hdr;
        for (int s = 0; s < gl; s += SLM_GQ_SUB, pw += f->sub, px += xb) {
            const int8_t *qx = (const int8_t *)(px + xq);
            int isum = 0;
            for (int e = 0; e < SLM_GQ_SUB; e++) isum += (quant_at(f->bits, pw, e) - o) * qx[e];
            const float dd = dw * load_f16(px);
            sum += (double)(dd * (float)isum);
            if (f->asym) sum += (double)(mw * load_f16(px + 2));
        }
        off += gl;
    }
    return (float)sum;
}

void slm_gq_gemm_scalar(const slm_gq_format *f, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                        size_t x_stride, int nc, float *y, size_t ldy) {
    const char *wp = w, *xp = x;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            y[(size_t)c * ldy + (size_t)r] = slm_gq_dot_scalar(f, wp + (size_t)r * w_stride, xp + (size_t)c * x_stride, n);
}
