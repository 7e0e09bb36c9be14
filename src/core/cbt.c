/* cbt.c - per-tensor codebook formats (layout in cbt.h): packing, the reference decoding with
 * a given table, nearest-level encoding and the traits entries.
 *
 * The reference dot sums the products tab[idx_j] * x_j in double and multiplies by the row
 * scale at the end (one rounding to float).
 *
 * Encoding: the decoded levels L_i = s * tab[i] (s rounded to f16; the product is exact in
 * float) are sorted once per row with duplicates merged (the lowest index of equal values
 * kept); each weight v finds its place among them by binary search. The distance is
 * |(double)v - (double)L_i|; it does not grow towards v on either side, so the nearest levels
 * are the run of sorted levels around v's place whose distance equals the least one, and the
 * lowest index of that run wins (in practice the run has one or two members). */
#include "core/cbt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CBT_FIRST = SLM_DT_CBT_FIRST };

bool slm_cbt_format_of(uint32_t t, slm_cbt_format *f) {
    if (t < (uint32_t)CBT_FIRST || t >= (uint32_t)CBT_FIRST + SLM_CBT_N_TYPES) return false;
    if (f) {
        const int i = (int)(t - (uint32_t)CBT_FIRST);
        f->k = 32 << i;
        f->bits = 5 + i;
        f->sub = 4 * f->bits;
    }
    return true;
}

int slm_cbt_type(int k) {
    for (int i = 0; i < SLM_CBT_N_TYPES; i++)
        if ((32 << i) == k) return CBT_FIRST + i;
    return -1;
}

bool slm_cbt_row_bytes(uint32_t t, int64_t n, size_t *out) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || n <= 0 || n % SLM_CBT_SUB != 0) return false;
    const uint64_t subs = (uint64_t)(n / SLM_CBT_SUB);
    if (subs > ((uint64_t)SIZE_MAX / 2) / (uint64_t)f.sub) return false;
    if (out) *out = (size_t)(subs * (uint64_t)f.sub + 2u);
    return true;
}

bool slm_cbt_check_table(const int8_t *tab, int k) {
    if (!tab || k <= 0) return false;
    for (int i = 0; i < k; i++)
        if (tab[i] < -127) return false;
    return true;
}

/* ---- packing ----------------------------------------------------------------------------- */

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void unpack_sub(int bits, const uint8_t *p, int idx[SLM_CBT_SUB]) {
    if (bits == 8) {
        for (int e = 0; e < SLM_CBT_SUB; e++) idx[e] = p[e];
        return;
    }
    for (int e = 0; e < 16; e++) {
        idx[e] = p[e] & 15;
        idx[e + 16] = p[e] >> 4;
    }
    if (bits == 5) {
        const uint32_t h = load_u32(p + 16);
        for (int e = 0; e < SLM_CBT_SUB; e++) idx[e] |= (int)((h >> e) & 1) << 4;
        return;
    }
    for (int e = 0; e < SLM_CBT_SUB; e++) idx[e] |= ((p[16 + e % 8] >> (2 * (e / 8))) & 3) << 4;
    if (bits == 7) {
        const uint32_t h = load_u32(p + 24);
        for (int e = 0; e < SLM_CBT_SUB; e++) idx[e] |= (int)((h >> e) & 1) << 6;
    }
}

static void pack_sub(int bits, const uint8_t idx[SLM_CBT_SUB], uint8_t *p) {
    if (bits == 8) {
        memcpy(p, idx, SLM_CBT_SUB);
        return;
    }
    for (int e = 0; e < 16; e++) p[e] = (uint8_t)((idx[e] & 15) | ((idx[e + 16] & 15) << 4));
    uint32_t h = 0;
    if (bits == 5) {
        for (int e = 0; e < SLM_CBT_SUB; e++) h |= (uint32_t)((idx[e] >> 4) & 1) << e;
        for (int i = 0; i < 4; i++) p[16 + i] = (uint8_t)(h >> (8 * i));
        return;
    }
    memset(p + 16, 0, 8);
    for (int e = 0; e < SLM_CBT_SUB; e++) p[16 + e % 8] |= (uint8_t)(((idx[e] >> 4) & 3) << (2 * (e / 8)));
    if (bits == 7) {
        for (int e = 0; e < SLM_CBT_SUB; e++) h |= (uint32_t)((idx[e] >> 6) & 1) << e;
        for (int i = 0; i < 4; i++) p[24 + i] = (uint8_t)(h >> (8 * i));
    }
}

static float row_scale(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

int slm_cbt_index(uint32_t t, const void *row, int64_t j) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || j < 0) return -1;
    int idx[SLM_CBT_SUB];
    unpack_sub(f.bits, (const uint8_t *)row + 2 + (size_t)(j / SLM_CBT_SUB) * (size_t)f.sub, idx);
    return idx[j % SLM_CBT_SUB];
}

static void put_scale(uint8_t *p, uint16_t s16) {
    p[0] = (uint8_t)(s16 & 0xff);
    p[1] = (uint8_t)(s16 >> 8);
}

void slm_cbt_pack_row(uint32_t t, float scale, const uint8_t *idx, void *row, int64_t n) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || n <= 0 || n % SLM_CBT_SUB) return;
    uint8_t *p = row;
    put_scale(p, slm_f32_to_f16(scale));
    p += 2;
    for (int64_t off = 0; off < n; off += SLM_CBT_SUB, p += f.sub) pack_sub(f.bits, idx + off, p);
}

/* ---- reference decoding ------------------------------------------------------------------ */

void slm_cbt_to_float(uint32_t t, const int8_t *tab, const void *row, float *dst, int64_t n) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || n <= 0 || n % SLM_CBT_SUB) return;
    const uint8_t *p = row;
    const float s = row_scale(p);
    p += 2;
    int idx[SLM_CBT_SUB];
    for (int64_t off = 0; off < n; off += SLM_CBT_SUB, p += f.sub) {
        unpack_sub(f.bits, p, idx);
        for (int e = 0; e < SLM_CBT_SUB; e++) dst[off + e] = s * (float)tab[idx[e]];
    }
}

float slm_cbt_dot_f32(uint32_t t, const int8_t *tab, const void *row, const float *x, int64_t n) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || n <= 0 || n % SLM_CBT_SUB) return 0.0f;
    const uint8_t *p = row;
    const float s = row_scale(p);
    p += 2;
    int idx[SLM_CBT_SUB];
    double sum = 0.0;
    for (int64_t off = 0; off < n; off += SLM_CBT_SUB, p += f.sub) {
        unpack_sub(f.bits, p, idx);
        for (int e = 0; e < SLM_CBT_SUB; e++) sum += (double)tab[idx[e]] * (double)x[off + e];
    }
    return (float)((double)s * sum);
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct {
    float v;   /* decoded level s * tab[i] */
    uint8_t i; /* lowest table index with this value */
} level;

/* Insertion sort by value (k <= 256, once per row), then equal values merged. */
static int sorted_levels(const int8_t *tab, int k, float s, level *lv) {
    int m = 0;
    for (int i = 0; i < k; i++) {
        const float v = s * (float)tab[i];
        int at = m;
        while (at > 0 && lv[at - 1].v > v) at--;
        if (at > 0 && lv[at - 1].v == v) continue; /* an earlier (lower) index has this value */
        memmove(lv + at + 1, lv + at, (size_t)(m - at) * sizeof *lv);
        lv[at] = (level){v, (uint8_t)i};
        m++;
    }
    return m;
}

static double dist(float v, float l) { return fabs((double)v - (double)l); }

/* Index of the level nearest v among the m sorted levels (ties: the lower table index). */
static int nearest(const level *lv, int m, float v) {
    int lo = 0, hi = m; /* first level > v */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (lv[mid].v > v) hi = mid;
        else lo = mid + 1;
    }
    /* candidates lo - 1 (<= v) and lo (> v) */
    double best = INFINITY;
    if (lo > 0) best = dist(v, lv[lo - 1].v);
    if (lo < m && dist(v, lv[lo].v) < best) best = dist(v, lv[lo].v);
    int idx = 256;
    for (int a = lo - 1; a >= 0 && dist(v, lv[a].v) == best; a--)
        if (lv[a].i < idx) idx = lv[a].i;
    for (int a = lo; a < m && dist(v, lv[a].v) == best; a++)
        if (lv[a].i < idx) idx = lv[a].i;
    return idx;
}

void slm_cbt_encode_row(uint32_t t, const int8_t *tab, float s, const float *src, void *dst, int64_t n) {
    slm_cbt_format f;
    if (!slm_cbt_format_of(t, &f) || n <= 0 || n % SLM_CBT_SUB) return;
    uint16_t s16 = slm_f32_to_f16(s);
    float sd = slm_f16_to_f32(s16);
    if (!isfinite(sd)) { /* non-finite (or beyond f16): stored as 0 */
        s16 = 0;
        sd = 0.0f;
    }
    uint8_t *p = dst;
    put_scale(p, s16);
    p += 2;
    uint8_t idx[SLM_CBT_SUB];
    if (sd == 0.0f) {
        int least = 0;
        for (int i = 1; i < f.k; i++)
            if (abs(tab[i]) < abs(tab[least])) least = i;
        memset(idx, least, sizeof idx);
        for (int64_t off = 0; off < n; off += SLM_CBT_SUB, p += f.sub) pack_sub(f.bits, idx, p);
        return;
    }
    level lv[SLM_CBT_MAX_K];
    const int m = sorted_levels(tab, f.k, sd, lv);
    for (int64_t off = 0; off < n; off += SLM_CBT_SUB, p += f.sub) {
        for (int e = 0; e < SLM_CBT_SUB; e++) {
            const float v = src[off + e];
            idx[e] = (uint8_t)nearest(lv, m, isfinite(v) ? v : 0.0f);
        }
        pack_sub(f.bits, idx, p);
    }
}

/* ---- the traits entries ------------------------------------------------------------------ */

static const slm_dtype_traits g_tr[SLM_CBT_N_TYPES] = {
    {.name = "cbt32", .block_size = SLM_CBT_SUB, .block_bytes = 20, .row_bytes = slm_cbt_row_bytes},
    {.name = "cbt64", .block_size = SLM_CBT_SUB, .block_bytes = 24, .row_bytes = slm_cbt_row_bytes},
    {.name = "cbt128", .block_size = SLM_CBT_SUB, .block_bytes = 28, .row_bytes = slm_cbt_row_bytes},
    {.name = "cbt256", .block_size = SLM_CBT_SUB, .block_bytes = 32, .row_bytes = slm_cbt_row_bytes},
};

const slm_dtype_traits *slm_cbt_traits(uint32_t t) {
    if (!slm_cbt_format_of(t, NULL)) return NULL;
    return &g_tr[t - (uint32_t)CBT_FIRST];
}
