/* gq.c - group-wise integer formats (layout in gq.h): packing, the scalar reference
 * dequantize / dot, and the quantizers (round to nearest, and clipping-range search).
 *
 * Arithmetic: a weight is d * u + m with d, m the f16 values read back as f32. For the
 * symmetric formats m = -2^(bits-1) * d is exact in f32 (an f16 times a power of two), and so
 * is d * u, so every dequantized value is rounded once at most. The quantizers round x with
 * the stored (f16-rounded) scale and offset, so the quants are the nearest ones to what will
 * actually be decoded. */
#include "core/gq.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

enum { GQ_FIRST = SLM_DT_GQ_FIRST };

static const int g_bits[SLM_GQ_N_BITS] = {2, 3, 4, 8};
static const int g_groups[SLM_GQ_N_GROUPS] = {32, 64, 128};

bool slm_gq_format_of(uint32_t t, slm_gq_format *f) {
    if (t < GQ_FIRST || t >= GQ_FIRST + SLM_GQ_N_TYPES) return false;
    const int k = (int)(t - GQ_FIRST);
    if (f) {
        f->asym = k & 1;
        f->group = g_groups[(k >> 1) % SLM_GQ_N_GROUPS];
        f->bits = g_bits[(k >> 1) / SLM_GQ_N_GROUPS];
        f->hdr = f->asym ? 4 : 2;
        f->sub = f->bits * 4;
    }
    return true;
}

int slm_gq_type(int bits, int group, bool asym) {
    int bi = -1, gi = -1;
    for (int i = 0; i < SLM_GQ_N_BITS; i++)
        if (g_bits[i] == bits) bi = i;
    for (int i = 0; i < SLM_GQ_N_GROUPS; i++)
        if (g_groups[i] == group) gi = i;
    if (bi < 0 || gi < 0) return -1;
    return GQ_FIRST + (bi * SLM_GQ_N_GROUPS + gi) * 2 + (asym ? 1 : 0);
}

bool slm_gq_row_bytes(uint32_t t, int64_t n, size_t *out) {
    slm_gq_format f;
    if (!slm_gq_format_of(t, &f) || n <= 0 || n % SLM_GQ_SUB != 0) return false;
    const uint64_t full = (uint64_t)(n / f.group), tail = (uint64_t)(n % f.group);
    const uint64_t gbytes = (uint64_t)f.hdr + (uint64_t)(f.group / SLM_GQ_SUB) * (uint64_t)f.sub;
    if (full > (uint64_t)SIZE_MAX / 2 / gbytes) return false;
    uint64_t b = full * gbytes;
    if (tail) b += (uint64_t)f.hdr + tail / SLM_GQ_SUB * (uint64_t)f.sub;
    if (out) *out = (size_t)b;
    return true;
}

/* ---- packing ----------------------------------------------------------------------------- */

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void store_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* 32 quants of one sub-block (signed for 8 bits, unsigned otherwise). */
static void unpack_sub(int bits, const uint8_t *p, int q[SLM_GQ_SUB]) {
    switch (bits) {
    case 8:
        for (int e = 0; e < 32; e++) q[e] = (int8_t)p[e];
        break;
    case 4:
        for (int e = 0; e < 16; e++) {
            q[e] = p[e] & 15;
            q[e + 16] = p[e] >> 4;
        }
        break;
    default: /* 2 and 3: the 2-bit plane, then the high bits of 3-bit quants */
        for (int e = 0; e < 32; e++) q[e] = (p[e % 8] >> (2 * (e / 8))) & 3;
        if (bits == 3) {
            const uint32_t h = (uint32_t)p[8] | ((uint32_t)p[9] << 8) | ((uint32_t)p[10] << 16) | ((uint32_t)p[11] << 24);
            for (int e = 0; e < 32; e++) q[e] |= (int)((h >> e) & 1) << 2;
        }
        break;
    }
}

static void pack_sub(int bits, const int q[SLM_GQ_SUB], uint8_t *p) {
    switch (bits) {
    case 8:
        for (int e = 0; e < 32; e++) p[e] = (uint8_t)(int8_t)q[e];
        break;
    case 4:
        for (int e = 0; e < 16; e++) p[e] = (uint8_t)((q[e] & 15) | ((q[e + 16] & 15) << 4));
        break;
    default: {
        memset(p, 0, 8);
        for (int e = 0; e < 32; e++) p[e % 8] |= (uint8_t)((q[e] & 3) << (2 * (e / 8)));
        if (bits == 3) {
            uint32_t h = 0;
            for (int e = 0; e < 32; e++) h |= (uint32_t)((q[e] >> 2) & 1) << e;
            for (int i = 0; i < 4; i++) p[8 + i] = (uint8_t)(h >> (8 * i));
        }
        break;
    }
    }
}

/* Scale and offset of a group as stored. */
static void group_dm(const slm_gq_format *f, const uint8_t *g, float *d, float *m) {
    *d = load_f16(g);
    if (f->asym) *m = load_f16(g + 2);
    else *m = f->bits == 8 ? 0.0f : -(float)(1 << (f->bits - 1)) * *d;
}

/* ---- reference dequantize and dot ---------------------------------------------------------- */

static void gq_to_float(const slm_gq_format *f, const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    int q[SLM_GQ_SUB];
    for (int64_t off = 0; off < n;) {
        const int gl = n - off < f->group ? (int)(n - off) : f->group;
        float d, m;
        group_dm(f, p, &d, &m);
        p += f->hdr;
        for (int s = 0; s < gl; s += SLM_GQ_SUB, p += f->sub) {
            unpack_sub(f->bits, p, q);
            for (int e = 0; e < SLM_GQ_SUB; e++) y[off + s + e] = d * (float)q[e] + m;
        }
        off += gl;
    }
}

static float gq_dot(const slm_gq_format *f, const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    int q[SLM_GQ_SUB];
    double sum = 0.0;
    for (int64_t off = 0; off < n;) {
        const int gl = n - off < f->group ? (int)(n - off) : f->group;
        float d, m;
        group_dm(f, p, &d, &m);
        p += f->hdr;
        for (int s = 0; s < gl; s += SLM_GQ_SUB, p += f->sub) {
            unpack_sub(f->bits, p, q);
            for (int e = 0; e < SLM_GQ_SUB; e++) sum += (double)(d * (float)q[e] + m) * (double)x[off + s + e];
        }
        off += gl;
    }
    return (float)sum;
}

/* ---- quantizers ----------------------------------------------------------------------------- */

/* Range of the quants: [lo, hi]. */
static void quant_range(const slm_gq_format *f, int *lo, int *hi) {
    if (f->bits == 8) {
        *lo = f->asym ? -128 : -127;
        *hi = 127;
    } else {
        *lo = 0;
        *hi = (1 << f->bits) - 1;
    }
}

/* Quants of g values for the decoded scale d and offset m: nearest level, clamped. Returns
 * the weighted squared error. */
static double quant_group(const slm_gq_format *f, const float *x, const float *imp, int g, float d, float m,
                          int *q) {
    int lo, hi;
    quant_range(f, &lo, &hi);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    double err = 0.0;
    for (int j = 0; j < g; j++) {
        const float v = (x[j] - m) * id;
        int u;
        if (!(v > (float)lo)) u = lo; /* also NaN */
        else if (v >= (float)hi) u = hi;
        else u = (int)lrintf(v);
        if (u < lo) u = lo;
        if (u > hi) u = hi;
        q[j] = u;
        const double e = (double)x[j] - (double)(d * (float)u + m);
        err += (imp ? (double)imp[j] : 1.0) * e * e;
    }
    return err;
}

/* Candidate (d, m) for a range shrunk by factor s, rounded to what is stored. */
static void candidate(const slm_gq_format *f, const float *x, int g, float s, uint16_t *d16, uint16_t *m16,
                      float *d, float *m) {
    float mn = x[0], mx = x[0], amax = 0.0f, smax = 0.0f;
    for (int j = 0; j < g; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            smax = x[j];
        }
    }
    if (f->asym) {
        const int levels = (1 << f->bits) - 1;
        const float lo = mn * s, hi = mx * s;
        const float dd = (hi - lo) / (float)levels;
        /* 8 bits: quants are signed, so the offset sits at level 128 */
        const float mm = f->bits == 8 ? lo + 128.0f * dd : lo;
        *d16 = slm_f32_to_f16(dd);
        *m16 = slm_f32_to_f16(mm);
        *d = slm_f16_to_f32(*d16);
        *m = slm_f16_to_f32(*m16);
    } else {
        /* the element of largest magnitude maps to the most negative level (the other side
         * then has one level less); 8 bits use the symmetric range [-127, 127] */
        const float dd = f->bits == 8 ? s * amax / 127.0f : s * smax / -(float)(1 << (f->bits - 1));
        *d16 = slm_f32_to_f16(dd);
        *m16 = 0;
        *d = slm_f16_to_f32(*d16);
        *m = f->bits == 8 ? 0.0f : -(float)(1 << (f->bits - 1)) * *d;
    }
}

/* Least-squares (d, m) for fixed quants: symmetric formats fit d alone (m follows d). */
static bool refit(const slm_gq_format *f, const float *x, const float *imp, int g, const int *q, uint16_t *d16,
                  uint16_t *m16, float *d, float *m) {
    const double off = (f->bits == 8 || f->asym) ? 0.0 : (double)(1 << (f->bits - 1));
    double sw = 0, su = 0, suu = 0, sx = 0, sux = 0;
    for (int j = 0; j < g; j++) {
        const double h = imp ? (double)imp[j] : 1.0, u = (double)q[j] - off;
        sw += h;
        su += h * u;
        suu += h * u * u;
        sx += h * x[j];
        sux += h * u * x[j];
    }
    double dd, mm = 0.0;
    if (f->asym) {
        const double det = sw * suu - su * su;
        if (!(fabs(det) > 1e-30 * (sw * suu + 1e-300))) return false;
        dd = (sw * sux - su * sx) / det;
        mm = (sx - dd * su) / sw;
    } else {
        if (!(suu > 0.0)) return false;
        dd = sux / suu;
    }
    if (!isfinite(dd) || !isfinite(mm) || fabs(dd) > 65000.0 || fabs(mm) > 65000.0) return false;
    *d16 = slm_f32_to_f16((float)dd);
    *d = slm_f16_to_f32(*d16);
    if (f->asym) {
        *m16 = slm_f32_to_f16((float)mm);
        *m = slm_f16_to_f32(*m16);
    } else {
        *m16 = 0;
        *m = f->bits == 8 ? 0.0f : -(float)(1 << (f->bits - 1)) * *d;
    }
    return true;
}

static void store_group(const slm_gq_format *f, uint8_t *p, uint16_t d16, uint16_t m16, const int *q, int g) {
    store_f16(p, d16);
    if (f->asym) store_f16(p + 2, m16);
    p += f->hdr;
    for (int s = 0; s < g; s += SLM_GQ_SUB, p += f->sub) pack_sub(f->bits, q + s, p);
}

static void gq_quantize(const slm_gq_format *f, const float *src, void *dst, int64_t n, const slm_gq_opts *o) {
    uint8_t *p = dst;
    int q[128], best[128];
    const bool search = o && o->clip_search;
    const float min_shrink = search && o->min_shrink > 0.0f && o->min_shrink < 1.0f ? o->min_shrink : 0.5f;
    for (int64_t off = 0; off < n;) {
        const int gl = n - off < f->group ? (int)(n - off) : f->group;
        const float *x = src + off, *imp = o && o->importance ? o->importance + off : NULL;
        uint16_t bd16, bm16;
        float d, m;
        candidate(f, x, gl, 1.0f, &bd16, &bm16, &d, &m);
        double best_err = quant_group(f, x, imp, gl, d, m, best);
        if (search) {
            for (int k = 1;; k++) {
                const float s = 1.0f - (float)k / 40.0f;
                if (s < min_shrink - 1e-6f) break;
                uint16_t d16, m16;
                candidate(f, x, gl, s, &d16, &m16, &d, &m);
                const double e = quant_group(f, x, imp, gl, d, m, q);
                if (e < best_err) {
                    best_err = e;
                    bd16 = d16;
                    bm16 = m16;
                    memcpy(best, q, (size_t)gl * sizeof *q);
                }
            }
            for (int it = 0; it < 2; it++) {
                uint16_t d16, m16;
                if (!refit(f, x, imp, gl, best, &d16, &m16, &d, &m)) break;
                const double e = quant_group(f, x, imp, gl, d, m, q);
                if (!(e < best_err)) break;
                best_err = e;
                bd16 = d16;
                bm16 = m16;
                memcpy(best, q, (size_t)gl * sizeof *q);
            }
        }
        store_group(f, p, bd16, bm16, best, gl);
        p += f->hdr + gl / SLM_GQ_SUB * f->sub;
        off += gl;
    }
}

void slm_gq_quantize_row(uint32_t t, const float *src, void *dst, int64_t n, const slm_gq_opts *opts) {
    slm_gq_format f;
    if (!slm_gq_format_of(t, &f) || n <= 0 || n % SLM_GQ_SUB) return;
    gq_quantize(&f, src, dst, n, opts);
}

double slm_gq_row_error(uint32_t t, const float *src, const void *qd, int64_t n, const float *imp) {
    slm_gq_format f;
    if (!slm_gq_format_of(t, &f) || n <= 0 || n % SLM_GQ_SUB) return 0.0;
    float buf[128];
    const uint8_t *p = qd;
    double err = 0.0;
    for (int64_t off = 0; off < n;) {
        const int gl = n - off < f.group ? (int)(n - off) : f.group;
        /* decode one group through the row decoder on a group-sized "row" */
        gq_to_float(&f, p, buf, gl);
        for (int j = 0; j < gl; j++) {
            const double e = (double)src[off + j] - (double)buf[j];
            err += (imp ? (double)imp[off + j] : 1.0) * e * e;
        }
        p += f.hdr + gl / SLM_GQ_SUB * f.sub;
        off += gl;
    }
    return err;
}

/* ---- the traits entries ------------------------------------------------------------------ */

/* The table's functions take no type argument: one thin wrapper triple per format. */
#define GQ_FNS(K)                                                                                       \
    static void gq_to_float_##K(const void *s, float *y, int64_t n) {                                     \
        slm_gq_format f;                                                                                \
        slm_gq_format_of(GQ_FIRST + K, &f);                                                             \
        gq_to_float(&f, s, y, n);                                                                       \
    }                                                                                                   \
    static float gq_dot_##K(const void *w, const float *x, int64_t n) {                                  \
        slm_gq_format f;                                                                                \
        slm_gq_format_of(GQ_FIRST + K, &f);                                                             \
        return gq_dot(&f, w, x, n);                                                                     \
    }                                                                                                   \
    static void gq_from_float_##K(const float *x, void *y, int64_t n) {                                  \
        slm_gq_quantize_row(GQ_FIRST + K, x, y, n, NULL);                                               \
    }
GQ_FNS(0) GQ_FNS(1) GQ_FNS(2) GQ_FNS(3) GQ_FNS(4) GQ_FNS(5) GQ_FNS(6) GQ_FNS(7)
GQ_FNS(8) GQ_FNS(9) GQ_FNS(10) GQ_FNS(11) GQ_FNS(12) GQ_FNS(13) GQ_FNS(14) GQ_FNS(15)
GQ_FNS(16) GQ_FNS(17) GQ_FNS(18) GQ_FNS(19) GQ_FNS(20) GQ_FNS(21) GQ_FNS(22) GQ_FNS(23)
#undef GQ_FNS

static const struct {
    slm_to_float_fn to_float;
    slm_dot_f32_fn dot;
    slm_from_float_fn from_float;
} g_fns[SLM_GQ_N_TYPES] = {
#define E(K) {gq_to_float_##K, gq_dot_##K, gq_from_float_##K}
    E(0),  E(1),  E(2),  E(3),  E(4),  E(5),  E(6),  E(7),  E(8),  E(9),  E(10), E(11),
    E(12), E(13), E(14), E(15), E(16), E(17), E(18), E(19), E(20), E(21), E(22), E(23),
#undef E
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static slm_dtype_traits g_tr[SLM_GQ_N_TYPES];
static char g_names[SLM_GQ_N_TYPES][12];

/* Filled once, on first use. */
static void init_traits(void) {
    for (int k = 0; k < SLM_GQ_N_TYPES; k++) {
        slm_gq_format f;
        slm_gq_format_of((uint32_t)(GQ_FIRST + k), &f);
        char *nm = g_names[k];
        int len = 0;
        nm[len++] = 'q';
        nm[len++] = (char)('0' + f.bits);
        nm[len++] = 'g';
        if (f.group >= 100) nm[len++] = (char)('0' + f.group / 100);
        nm[len++] = (char)('0' + f.group / 10 % 10);
        nm[len++] = (char)('0' + f.group % 10);
        if (f.asym) nm[len++] = 'a';
        nm[len] = 0;
        g_tr[k] = (slm_dtype_traits){
            .name = nm,
            .block_size = SLM_GQ_SUB,
            .block_bytes = (size_t)(f.hdr + f.group / SLM_GQ_SUB * f.sub),
            .to_float = g_fns[k].to_float,
            .dot_f32 = g_fns[k].dot,
            .from_float = g_fns[k].from_float,
            .row_bytes = slm_gq_row_bytes,
        };
    }
}

const slm_dtype_traits *slm_gq_traits(uint32_t t) {
    if (!slm_gq_format_of(t, NULL)) return NULL;
    pthread_once(&g_once, init_traits);
    return &g_tr[t - GQ_FIRST];
}
