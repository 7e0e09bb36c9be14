/* codebook.c - per-row codebook formats (layout in codebook.h): packing, the scalar reference
 * dequantize / dot, the row quantizer (weighted 1-D k-means on sorted values, then the int8
 * grid) and the traits entries.
 *
 * The quantizer sorts the row once; clusters of 1-D k-means are then contiguous runs of the
 * sorted values, bounded by the midpoints between neighbouring centroids, so one Lloyd step is
 * k binary searches and k range sums from prefix sums (O(k log n)), not a pass over the row. */
#include "core/codebook.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/vsort.h"

enum { CB_FIRST = SLM_DT_CB_FIRST, LLOYD_MAX_ITERS = 64 };

static const int g_k[SLM_CB_N_TYPES] = {4, 8, 16};

bool slm_cb_format_of(uint32_t t, slm_cb_format *f) {
    if (t < (uint32_t)CB_FIRST || t >= (uint32_t)CB_FIRST + SLM_CB_N_TYPES) return false;
    if (f) {
        f->k = g_k[t - CB_FIRST];
        f->bits = f->k == 4 ? 2 : f->k == 8 ? 3 : 4;
        f->sub = 4 * f->bits;
        f->hdr = 2 + f->k;
    }
    return true;
}

int slm_cb_type(int k) {
    for (int i = 0; i < SLM_CB_N_TYPES; i++)
        if (g_k[i] == k) return CB_FIRST + i;
    return -1;
}

int slm_cb_act_type(uint32_t t) { return slm_cb_format_of(t, NULL) ? SLM_DT_Q8_0 : -1; }

bool slm_cb_row_bytes(uint32_t t, int64_t n, size_t *out) {
    slm_cb_format f;
    if (!slm_cb_format_of(t, &f) || n <= 0 || n % SLM_CB_SUB != 0) return false;
    const uint64_t subs = (uint64_t)(n / SLM_CB_SUB);
    if (subs > ((uint64_t)SIZE_MAX / 2) / (uint64_t)f.sub) return false;
    if (out) *out = (size_t)(subs * (uint64_t)f.sub + (uint64_t)f.hdr);
    return true;
}

/* ---- packing ----------------------------------------------------------------------------- */

static void unpack_sub(int bits, const uint8_t *p, int idx[SLM_CB_SUB]) {
    if (bits == 4) {
        for (int e = 0; e < 16; e++) {
            idx[e] = p[e] & 15;
            idx[e + 16] = p[e] >> 4;
        }
        return;
    }
    for (int e = 0; e < 32; e++) idx[e] = (p[e % 8] >> (2 * (e / 8))) & 3;
    if (bits == 3) {
        const uint32_t h = (uint32_t)p[8] | ((uint32_t)p[9] << 8) | ((uint32_t)p[10] << 16) | ((uint32_t)p[11] << 24);
        for (int e = 0; e < 32; e++) idx[e] |= (int)((h >> e) & 1) << 2;
    }
}

static void pack_sub(int bits, const int idx[SLM_CB_SUB], uint8_t *p) {
    if (bits == 4) {
        for (int e = 0; e < 16; e++) p[e] = (uint8_t)((idx[e] & 15) | ((idx[e + 16] & 15) << 4));
        return;
    }
    memset(p, 0, 8);
    for (int e = 0; e < 32; e++) p[e % 8] |= (uint8_t)((idx[e] & 3) << (2 * (e / 8)));
    if (bits == 3) {
        uint32_t h = 0;
        for (int e = 0; e < 32; e++) h |= (uint32_t)((idx[e] >> 2) & 1) << e;
        for (int i = 0; i < 4; i++) p[8 + i] = (uint8_t)(h >> (8 * i));
    }
}

static float row_scale(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

int slm_cb_index(uint32_t t, const void *row, int64_t j) {
    slm_cb_format f;
    if (!slm_cb_format_of(t, &f) || j < 0) return -1;
    int idx[SLM_CB_SUB];
    unpack_sub(f.bits, (const uint8_t *)row + f.hdr + (size_t)(j / SLM_CB_SUB) * (size_t)f.sub, idx);
    return idx[j % SLM_CB_SUB];
}

/* ---- reference dequantize and dot ---------------------------------------------------------- */

static void cb_to_float(const slm_cb_format *f, const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    const float s = row_scale(p);
    float lv[SLM_CB_MAX_K];
    for (int i = 0; i < f->k; i++) lv[i] = s * (float)(int8_t)p[2 + i];
    p += f->hdr;
    int idx[SLM_CB_SUB];
    for (int64_t off = 0; off < n; off += SLM_CB_SUB, p += f->sub) {
        unpack_sub(f->bits, p, idx);
        for (int e = 0; e < SLM_CB_SUB; e++) y[off + e] = lv[idx[e]];
    }
}

static float cb_dot(const slm_cb_format *f, const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    const float s = row_scale(p);
    int lv[SLM_CB_MAX_K];
    for (int i = 0; i < f->k; i++) lv[i] = (int8_t)p[2 + i];
    p += f->hdr;
    int idx[SLM_CB_SUB];
    double sum = 0.0;
    for (int64_t off = 0; off < n; off += SLM_CB_SUB, p += f->sub) {
        unpack_sub(f->bits, p, idx);
        for (int e = 0; e < SLM_CB_SUB; e++) sum += (double)lv[idx[e]] * (double)x[off + e];
    }
    return (float)((double)s * sum);
}

double slm_cb_row_error(uint32_t t, const float *src, const float *w, const void *q, int64_t n) {
    slm_cb_format f;
    if (!slm_cb_format_of(t, &f) || n <= 0 || n % SLM_CB_SUB) return 0.0;
    const uint8_t *p = q;
    const float s = row_scale(p);
    float lv[SLM_CB_MAX_K];
    for (int i = 0; i < f.k; i++) lv[i] = s * (float)(int8_t)p[2 + i];
    p += f.hdr;
    int idx[SLM_CB_SUB];
    double err = 0.0;
    for (int64_t off = 0; off < n; off += SLM_CB_SUB, p += f.sub) {
        unpack_sub(f.bits, p, idx);
        for (int e = 0; e < SLM_CB_SUB; e++) {
            const double d = (double)src[off + e] - (double)lv[idx[e]];
            err += (w ? (double)w[off + e] : 1.0) * d * d;
        }
    }
    return err;
}

/* ---- encoding with given centroids --------------------------------------------------------- */

static float finite_or_zero(float v) { return isfinite(v) ? v : 0.0f; }

void slm_cb_encode_row(uint32_t t, const float *src, const float *c, int nc, void *dst, int64_t n) {
    slm_cb_format f;
    if (!slm_cb_format_of(t, &f) || n <= 0 || n % SLM_CB_SUB) return;
    if (nc > f.k) nc = f.k;
    float amax = 0.0f;
    for (int i = 0; i < nc; i++)
        if (isfinite(c[i]) && fabsf(c[i]) > amax) amax = fabsf(c[i]);
    float s = amax / 127.0f;
    if (s > 65504.0f) s = 65504.0f;
    const uint16_t s16 = slm_f32_to_f16(s);
    const float sd = slm_f16_to_f32(s16);
    /* the distinct int8 levels, ascending */
    int lv[SLM_CB_MAX_K], nl = 0;
    for (int i = 0; i < nc; i++) {
        if (!isfinite(c[i])) continue;
        long q = sd > 0.0f ? lrintf(c[i] / sd) : 0;
        if (q > 127) q = 127;
        if (q < -127) q = -127;
        int at = 0;
        while (at < nl && lv[at] < (int)q) at++;
        if (at < nl && lv[at] == (int)q) continue;
        memmove(lv + at + 1, lv + at, (size_t)(nl - at) * sizeof *lv);
        lv[at] = (int)q;
        nl++;
    }
    if (nl == 0) lv[nl++] = 0;
    uint8_t *p = dst;
    p[0] = (uint8_t)(s16 & 0xff);
    p[1] = (uint8_t)(s16 >> 8);
    for (int i = 0; i < f.k; i++) p[2 + i] = (uint8_t)(int8_t)(i < nl ? lv[i] : 0);
    /* nearest level: thresholds halfway between neighbouring decoded levels */
    float mid[SLM_CB_MAX_K];
    for (int i = 0; i + 1 < nl; i++) mid[i] = 0.5f * (sd * (float)lv[i] + sd * (float)lv[i + 1]);
    p += f.hdr;
    int idx[SLM_CB_SUB];
    for (int64_t off = 0; off < n; off += SLM_CB_SUB, p += f.sub) {
        for (int e = 0; e < SLM_CB_SUB; e++) {
            const float v = finite_or_zero(src[off + e]);
            int lo = 0, hi = nl - 1; /* first level whose upper threshold is >= v */
            while (lo < hi) {
                const int m = (lo + hi) / 2;
                if (v > mid[m]) lo = m + 1;
                else hi = m;
            }
            idx[e] = lo;
        }
        pack_sub(f.bits, idx, p);
    }
}

/* ---- weighted 1-D k-means ------------------------------------------------------------------ */

/* Centroids of sorted a[n] with prefix sums s0 (weights) and s1 (weight * value), n + 1 each:
 * weighted quantile start, Lloyd steps until the partition stops changing. Returns the count
 * (<= k), ascending in c. */
static int kmeans_sorted(const slm_vw *a, int64_t n, const double *s0, const double *s1, int k, float *c) {
    /* distinct values first: k or fewer are their own centroids (exact) */
    int nd = 0;
    for (int64_t i = 0; i < n && nd <= k; i++)
        if (i == 0 || a[i].v != a[i - 1].v) {
            if (nd < k) c[nd] = a[i].v;
            nd++;
        }
    if (nd <= k) return nd;
    const double wt = s0[n];
    int m = 0;
    for (int i = 0; i < k; i++) {
        int64_t j;
        if (wt > 0.0) {
            const double target = wt * ((double)i + 0.5) / (double)k;
            int64_t lo = 0, hi = n - 1; /* first j with s0[j + 1] >= target */
            while (lo < hi) {
                const int64_t mm = lo + (hi - lo) / 2;
                if (s0[mm + 1] < target) lo = mm + 1;
                else hi = mm;
            }
            j = lo;
        } else {
            j = (int64_t)(((double)i + 0.5) * (double)n / (double)k);
        }
        if (m == 0 || a[j].v > c[m - 1]) c[m++] = a[j].v;
    }
    int64_t bnd[SLM_CB_MAX_K + 1], prev[SLM_CB_MAX_K + 1];
    for (int i = 0; i <= m; i++) prev[i] = -1;
    for (int it = 0; it < LLOYD_MAX_ITERS; it++) {
        bnd[0] = 0;
        bnd[m] = n;
        for (int i = 1; i < m; i++) bnd[i] = slm_vw_lower_bound(a, n, 0.5 * ((double)c[i - 1] + (double)c[i]));
        if (!memcmp(bnd, prev, (size_t)(m + 1) * sizeof *bnd)) break;
        memcpy(prev, bnd, (size_t)(m + 1) * sizeof *bnd);
        for (int i = 0; i < m; i++) {
            const double w = s0[bnd[i + 1]] - s0[bnd[i]];
            if (w > 0.0) c[i] = (float)((s1[bnd[i + 1]] - s1[bnd[i]]) / w);
            else if (wt <= 0.0 && bnd[i + 1] > bnd[i]) c[i] = a[(bnd[i] + bnd[i + 1]) / 2].v;
        }
        /* keep the centroids strictly ascending (float rounding can make neighbours meet) */
        int mm = 0;
        for (int i = 0; i < m; i++)
            if (mm == 0 || c[i] > c[mm - 1]) c[mm++] = c[i];
        if (mm != m) {
            m = mm;
            for (int i = 0; i <= m; i++) prev[i] = -1;
        }
    }
    return m;
}

bool slm_cb_quantize_row(uint32_t t, const float *src, const float *w, void *dst, int64_t n) {
    slm_cb_format f;
    if (!slm_cb_format_of(t, &f) || n <= 0 || n % SLM_CB_SUB) return false;
    slm_vw *a = malloc((size_t)n * 2 * sizeof *a);
    double *s = malloc((size_t)(n + 1) * 2 * sizeof *s);
    if (!a || !s) {
        free(a);
        free(s);
        const float zero = 0.0f;
        slm_cb_encode_row(t, src, &zero, 0, dst, n); /* no levels: scale 0, every index 0 */
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        a[i].v = finite_or_zero(src[i]);
        const float wi = w ? w[i] : 1.0f;
        a[i].w = isfinite(wi) && wi > 0.0f ? wi : 0.0f;
    }
    slm_vw_sort(a, a + n, n);
    double *s0 = s, *s1 = s + n + 1;
    s0[0] = s1[0] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s0[i + 1] = s0[i] + (double)a[i].w;
        s1[i + 1] = s1[i] + (double)a[i].w * (double)a[i].v;
    }
    float c[SLM_CB_MAX_K];
    const int m = kmeans_sorted(a, n, s0, s1, f.k, c);
    free(a);
    free(s);
    slm_cb_encode_row(t, src, c, m, dst, n);
    return true;
}

/* ---- the traits entries ------------------------------------------------------------------ */

#define CB_FNS(K)                                                                        \
    static void cb_to_float_##K(const void *s, float *y, int64_t n) {                   \
        slm_cb_format f;                                                                 \
        slm_cb_format_of(CB_FIRST + K, &f);                                              \
        cb_to_float(&f, s, y, n);                                                        \
    }                                                                                    \
    static float cb_dot_##K(const void *w, const float *x, int64_t n) {                 \
        slm_cb_format f;                                                                 \
        slm_cb_format_of(CB_FIRST + K, &f);                                              \
        return cb_dot(&f, w, x, n);                                                      \
    }                                                                                    \
    static void cb_from_float_##K(const float *x, void *y, int64_t n) {                 \
        slm_cb_quantize_row(CB_FIRST + K, x, NULL, y, n);                                \
    }
CB_FNS(0) CB_FNS(1) CB_FNS(2)
#undef CB_FNS

static const slm_dtype_traits g_tr[SLM_CB_N_TYPES] = {
    {.name = "cb4", .block_size = SLM_CB_SUB, .block_bytes = 8, .to_float = cb_to_float_0, .dot_f32 = cb_dot_0,
     .from_float = cb_from_float_0, .row_bytes = slm_cb_row_bytes},
    {.name = "cb8", .block_size = SLM_CB_SUB, .block_bytes = 12, .to_float = cb_to_float_1, .dot_f32 = cb_dot_1,
     .from_float = cb_from_float_1, .row_bytes = slm_cb_row_bytes},
    {.name = "cb16", .block_size = SLM_CB_SUB, .block_bytes = 16, .to_float = cb_to_float_2, .dot_f32 = cb_dot_2,
     .from_float = cb_from_float_2, .row_bytes = slm_cb_row_bytes},
};

const slm_dtype_traits *slm_cb_traits(uint32_t t) {
    if (!slm_cb_format_of(t, NULL)) return NULL;
    return &g_tr[t - CB_FIRST];
}
