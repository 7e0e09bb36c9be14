/* sparse.c - sparse weight formats (layouts in sparse.h): descriptors, the pruning
 * quantizers, the scalar reference dequantize / dot (safe on malformed rows) and the row
 * check that lets kernels trust the masks. */
#include "core/sparse.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum { SP_FIRST = SLM_DT_SP_FIRST, QK = 32, N_TYPES = 2 + 2 * SLM_SP_N_CLASSES };

bool slm_sp_format_of(uint32_t t, slm_sp_format *out) {
    if (t < SP_FIRST || t >= SP_FIRST + N_TYPES) return false;
    const int k = (int)(t - SP_FIRST);
    if (out) {
        if (k < 2) *out = (slm_sp_format){.kind = SLM_SP_24, .bits = k == 0 ? 8 : 4, .cls = 32};
        else if (k < 2 + SLM_SP_N_CLASSES) *out = (slm_sp_format){.kind = SLM_SP_UNSTRUCTURED, .bits = 8, .cls = k - 1};
        else *out = (slm_sp_format){.kind = SLM_SP_UNSTRUCTURED, .bits = 4, .cls = k - 1 - SLM_SP_N_CLASSES};
    }
    return true;
}

int64_t slm_sp_capacity(const slm_sp_format *f, int64_t n) {
    return f->kind == SLM_SP_24 ? n / 2 : (int64_t)f->cls * (n / 64);
}

int slm_sp_unstructured_type(int bits, int64_t n, int64_t max_row_nnz) {
    if ((bits != 8 && bits != 4) || n <= 0 || n % 64 != 0 || max_row_nnz < 0) return -1;
    for (int c = 1; c <= SLM_SP_N_CLASSES; c++)
        if ((int64_t)c * (n / 64) >= max_row_nnz) return (bits == 8 ? SLM_SP_Q8S_FIRST : SLM_SP_Q4S_FIRST) + c - 1;
    return -1;
}

int slm_sp_24_type(int bits) { return bits == 8 ? SLM_SP_24_Q8 : bits == 4 ? SLM_SP_24_Q4 : -1; }

int slm_sp_act_type(uint32_t t) { return slm_sp_format_of(t, NULL) ? SLM_DT_Q8_0 : -1; }

/* ---- little-endian fields ------------------------------------------------------------------ */

static float load_f16(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void store_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void store_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int popcount32(uint32_t v) {
    int c = 0;
    for (; v; v &= v - 1) c++;
    return c;
}

/* Order of magnitudes: the bits of |w| (NaN above infinity, -0 equal to 0). */
static uint32_t mag_key(float w) {
    const float a = fabsf(w);
    uint32_t k;
    memcpy(&k, &a, sizeof k);
    return k;
}

/* ---- the value rules on a pruned 32-weight block (q8_0's and q4_0's, see dtype.c) ------------ */

/* q8_0: d = max|x| / 127, q = round(x / d) half away from zero, clamped to [-127, 127]. */
static uint16_t rule_q8(const float *x, int q[QK]) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        float v = roundf(x[j] * id);
        if (isnan(v)) v = 0.0f;
        else if (v < -127.0f) v = -127.0f;
        else if (v > 127.0f) v = 127.0f;
        q[j] = (int)v;
    }
    return slm_f32_to_f16(d);
}

/* q4_0: d = (element of largest magnitude, first on ties) / -8, u = trunc(x / d + 8.5) in
 * [0, 15]. */
static uint16_t rule_q4(const float *x, int q[QK]) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float a = fabsf(x[j]);
        if (amax < a) {
            amax = a;
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        const float s = x[j] * id;
        const float v = s + 8.5f;
        q[j] = !(v >= 0.0f) ? 0 : v >= 15.0f ? 15 : (int)v;
    }
    return slm_f32_to_f16(d);
}

/* ---- 2:4 ------------------------------------------------------------------------------------ */

static size_t block24_bytes(int bits) { return bits == 8 ? SLM_SP_24_BLOCK_Q8 : SLM_SP_24_BLOCK_Q4; }

/* Kept value k (0..15) of a block's value bytes p, as a signed integer. */
static int kept24(int bits, const uint8_t *p, int k) {
    if (bits == 8) return (int8_t)p[k];
    return (k < 8 ? (p[k] & 15) : (p[k - 8] >> 4)) - 8;
}

/* Positions of the kept weights of group g. */
static void meta24(const uint8_t *meta, int g, int *p0, int *p1) {
    const int nib = (meta[g / 2] >> (4 * (g % 2))) & 15;
    *p0 = nib & 3;
    *p1 = nib >> 2;
}

static void s24_to_float(int bits, const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i + QK <= n; i += QK, p += block24_bytes(bits)) {
        const float d = load_f16(p);
        memset(y + i, 0, QK * sizeof *y);
        for (int g = 0; g < 8; g++) {
            int p0, p1;
            meta24(p + 2, g, &p0, &p1);
            y[i + 4 * g + p0] = d * (float)kept24(bits, p + 6, 2 * g);
            y[i + 4 * g + p1] = d * (float)kept24(bits, p + 6, 2 * g + 1);
        }
    }
}

static float s24_dot(int bits, const void *w, const float *x, int64_t n) {
    const uint8_t *p = w;
    double sum = 0.0;
    for (int64_t i = 0; i + QK <= n; i += QK, p += block24_bytes(bits)) {
        const float d = load_f16(p);
        for (int g = 0; g < 8; g++) {
            int p0, p1;
            meta24(p + 2, g, &p0, &p1);
            sum += (double)(d * (float)kept24(bits, p + 6, 2 * g)) * (double)x[i + 4 * g + p0];
            sum += (double)(d * (float)kept24(bits, p + 6, 2 * g + 1)) * (double)x[i + 4 * g + p1];
        }
    }
    return (float)sum;
}

static void s24_from_float(int bits, const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i + QK <= n; i += QK, p += block24_bytes(bits)) {
        const float *x = src + i;
        float pruned[QK] = {0};
        int pos[8][2];
        for (int g = 0; g < 8; g++) {
            /* the largest |w|, then the largest of the rest; ties go to the lower position */
            int a = 0;
            for (int j = 1; j < 4; j++)
                if (mag_key(x[4 * g + j]) > mag_key(x[4 * g + a])) a = j;
            int b = a == 0 ? 1 : 0;
            for (int j = 0; j < 4; j++)
                if (j != a && mag_key(x[4 * g + j]) > mag_key(x[4 * g + b])) b = j;
            pos[g][0] = a < b ? a : b;
            pos[g][1] = a < b ? b : a;
            pruned[4 * g + a] = x[4 * g + a];
            pruned[4 * g + b] = x[4 * g + b];
        }
        int q[QK];
        store_f16(p, bits == 8 ? rule_q8(pruned, q) : rule_q4(pruned, q));
        memset(p + 2, 0, block24_bytes(bits) - 2);
        for (int g = 0; g < 8; g++) {
            p[2 + g / 2] |= (uint8_t)((pos[g][0] | (pos[g][1] << 2)) << (4 * (g % 2)));
            for (int s = 0; s < 2; s++) {
                const int k = 2 * g + s, v = q[4 * g + pos[g][s]];
                if (bits == 8) p[6 + k] = (uint8_t)(int8_t)v;
                else p[6 + k % 8] |= (uint8_t)(v << (k < 8 ? 0 : 4));
            }
        }
    }
}

/* Every group names two different positions, in increasing order. */
static bool s24_check_rows(uint32_t t, const void *data, int64_t n, int64_t rows) {
    slm_sp_format f;
    if (!slm_sp_format_of(t, &f) || n < 0 || n % QK || rows < 0) return false;
    const uint8_t *p = data;
    const int64_t blocks = rows * (n / QK);
    for (int64_t b = 0; b < blocks; b++, p += block24_bytes(f.bits))
        for (int g = 0; g < 8; g++) {
            int p0, p1;
            meta24(p + 2, g, &p0, &p1);
            if (p0 >= p1) return false;
        }
    return true;
}

/* ---- unstructured ------------------------------------------------------------------------------ */

/* Which weights of a row are stored: the nonzero ones (the C of largest magnitude when there
 * are more, ties to the lower index), then zero weights from the lowest index until C. */
typedef struct {
    bool by_key;      /* more nonzero weights than C: keep key > thr, then ties */
    uint32_t thr;     /* the C-th largest key */
    int64_t ties;     /* weights with key == thr still to keep */
    int64_t pad;      /* zero weights still to keep (not by_key) */
} keep_rule;

static keep_rule keep_plan(const float *x, int64_t n, int64_t cap) {
    keep_rule k = {0};
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) nnz += x[i] != 0.0f;
    if (nnz <= cap) {
        k.pad = cap - nnz;
        return k;
    }
    /* largest thr with count(key >= thr) >= cap */
    uint64_t lo = 1, hi = UINT32_MAX; /* cap < nnz, so some key >= 1 is kept */
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo + 1) / 2;
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++) c += mag_key(x[i]) >= mid;
        if (c >= cap) lo = mid;
        else hi = mid - 1;
    }
    int64_t above = 0;
    for (int64_t i = 0; i < n; i++) above += mag_key(x[i]) > lo;
    k.by_key = true;
    k.thr = (uint32_t)lo;
    k.ties = cap - above;
    return k;
}

static bool keep_next(keep_rule *k, float w) {
    if (k->by_key) {
        const uint32_t key = mag_key(w);
        if (key > k->thr) return true;
        if (key == k->thr && k->ties > 0) {
            k->ties--;
            return true;
        }
        return false;
    }
    if (w != 0.0f) return true;
    if (k->pad > 0) {
        k->pad--;
        return true;
    }
    return false;
}

/* Bytes of the stored values of a row: C, or (C + 1) / 2 for 4-bit values. */
static int64_t us_value_bytes(int bits, int64_t cap) { return bits == 8 ? cap : (cap + 1) / 2; }

/* Stored value k of a row's value bytes, as a signed integer. */
static int us_value(int bits, const uint8_t *val, int64_t k) {
    if (bits == 8) return (int8_t)val[k];
    return ((k & 1) ? val[k >> 1] >> 4 : val[k >> 1] & 15) - 8;
}

static void us_from_float(int bits, int cls, const float *src, void *dst, int64_t n) {
    if (n <= 0 || n % 64) return;
    const int64_t cap = (int64_t)cls * (n / 64);
    keep_rule k = keep_plan(src, n, cap);
    uint8_t *hdr = dst;
    uint8_t *val = (uint8_t *)dst + (n / QK) * SLM_SP_HDR;
    if (bits == 4) memset(val, 0, (size_t)us_value_bytes(4, cap));
    int64_t used = 0;
    for (int64_t i = 0; i < n; i += QK, hdr += SLM_SP_HDR) {
        float pruned[QK];
        uint32_t mask = 0;
        for (int j = 0; j < QK; j++) {
            const bool keep = keep_next(&k, src[i + j]);
            pruned[j] = keep ? src[i + j] : 0.0f;
            if (keep) mask |= 1u << j;
        }
        int q[QK];
        store_f16(hdr, bits == 8 ? rule_q8(pruned, q) : rule_q4(pruned, q));
        store_u32(hdr + 2, mask);
        for (int j = 0; j < QK; j++) {
            if (!(mask >> j & 1)) continue;
            if (bits == 8) val[used] = (uint8_t)(int8_t)q[j];
            else val[used >> 1] |= (uint8_t)(q[j] << ((used & 1) ? 4 : 0));
            used++;
        }
    }
}

/* Reference decoders: stored values past the row's capacity are never read (a malformed row
 * decodes as if they were 0). */
static void us_to_float(int bits, int cls, const void *src, float *y, int64_t n) {
    if (n <= 0 || n % 64) return;
    const int64_t cap = (int64_t)cls * (n / 64);
    const uint8_t *hdr = src;
    const uint8_t *val = (const uint8_t *)src + (n / QK) * SLM_SP_HDR;
    int64_t used = 0;
    for (int64_t i = 0; i < n; i += QK, hdr += SLM_SP_HDR) {
        const float d = load_f16(hdr);
        const uint32_t mask = load_u32(hdr + 2);
        for (int j = 0; j < QK; j++) {
            int q = 0;
            if (mask >> j & 1 && used < cap) q = us_value(bits, val, used++);
            y[i + j] = d * (float)q;
        }
    }
}

static float us_dot(int bits, int cls, const void *w, const float *x, int64_t n) {
    if (n <= 0 || n % 64) return 0.0f;
    const int64_t cap = (int64_t)cls * (n / 64);
    const uint8_t *hdr = w;
    const uint8_t *val = (const uint8_t *)w + (n / QK) * SLM_SP_HDR;
    int64_t used = 0;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += QK, hdr += SLM_SP_HDR) {
        const float d = load_f16(hdr);
        const uint32_t mask = load_u32(hdr + 2);
        for (int j = 0; j < QK && used < cap; j++)
            if (mask >> j & 1) sum += (double)(d * (float)us_value(bits, val, used++)) * (double)x[i + j];
    }
    return (float)sum;
}

/* Rows of n weights: headers and the value bytes. */
static bool us_row_bytes(uint32_t t, int64_t n, size_t *out) {
    slm_sp_format f;
    if (!slm_sp_format_of(t, &f) || f.kind != SLM_SP_UNSTRUCTURED || n <= 0 || n % 64) return false;
    const uint64_t b = (uint64_t)(n / QK) * SLM_SP_HDR + (uint64_t)us_value_bytes(f.bits, slm_sp_capacity(&f, n));
    if (b > SIZE_MAX / 2) return false;
    if (out) *out = (size_t)b;
    return true;
}

/* The masks of every row have exactly C bits set. */
static bool us_check_rows(uint32_t t, const void *data, int64_t n, int64_t rows) {
    slm_sp_format f;
    if (!slm_sp_format_of(t, &f) || f.kind != SLM_SP_UNSTRUCTURED || n < 0 || n % 64 || rows < 0) return false;
    const int64_t cap = slm_sp_capacity(&f, n);
    const size_t row_bytes = (size_t)(n / QK * SLM_SP_HDR + us_value_bytes(f.bits, cap));
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *hdr = (const uint8_t *)data + (size_t)r * row_bytes;
        int64_t bits = 0;
        for (int64_t b = 0; b < n / QK; b++) bits += popcount32(load_u32(hdr + b * SLM_SP_HDR + 2));
        if (bits != cap) return false;
    }
    return true;
}

/* ---- the traits entries ------------------------------------------------------------------ */

static void s24q8_to_float(const void *s, float *y, int64_t n) { s24_to_float(8, s, y, n); }
static void s24q4_to_float(const void *s, float *y, int64_t n) { s24_to_float(4, s, y, n); }
static float s24q8_dot(const void *w, const float *x, int64_t n) { return s24_dot(8, w, x, n); }
static float s24q4_dot(const void *w, const float *x, int64_t n) { return s24_dot(4, w, x, n); }
static void s24q8_from_float(const float *x, void *y, int64_t n) { s24_from_float(8, x, y, n); }
static void s24q4_from_float(const float *x, void *y, int64_t n) { s24_from_float(4, x, y, n); }

/* The table's functions take no type argument: one wrapper triple per value width and density
 * class. */
#define US_FNS(C)                                                                                         \
    static void us8_to_float_##C(const void *s, float *y, int64_t n) { us_to_float(8, C, s, y, n); }      \
    static float us8_dot_##C(const void *w, const float *x, int64_t n) { return us_dot(8, C, w, x, n); } \
    static void us8_from_float_##C(const float *x, void *y, int64_t n) { us_from_float(8, C, x, y, n); }  \
    static void us4_to_float_##C(const void *s, float *y, int64_t n) { us_to_float(4, C, s, y, n); }      \
    static float us4_dot_##C(const void *w, const float *x, int64_t n) { return us_dot(4, C, w, x, n); } \
    static void us4_from_float_##C(const float *x, void *y, int64_t n) { us_from_float(4, C, x, y, n); }
SLM_SP_CLASSES(US_FNS)
#undef US_FNS

typedef struct {
    slm_to_float_fn to_float;
    slm_dot_f32_fn dot;
    slm_from_float_fn from_float;
} us_fns;
static const us_fns g_us8_fns[SLM_SP_N_CLASSES] = {
#define E(C) {us8_to_float_##C, us8_dot_##C, us8_from_float_##C},
    SLM_SP_CLASSES(E)
#undef E
};
static const us_fns g_us4_fns[SLM_SP_N_CLASSES] = {
#define E(C) {us4_to_float_##C, us4_dot_##C, us4_from_float_##C},
    SLM_SP_CLASSES(E)
#undef E
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static slm_dtype_traits g_tr[N_TYPES];
static char g_names[2 * SLM_SP_N_CLASSES][16];

static void init_traits(void) {
    g_tr[0] = (slm_dtype_traits){.name = "s24q8", .block_size = QK, .block_bytes = SLM_SP_24_BLOCK_Q8,
                                 .to_float = s24q8_to_float, .dot_f32 = s24q8_dot,
                                 .from_float = s24q8_from_float, .check_rows = s24_check_rows};
    g_tr[1] = (slm_dtype_traits){.name = "s24q4", .block_size = QK, .block_bytes = SLM_SP_24_BLOCK_Q4,
                                 .to_float = s24q4_to_float, .dot_f32 = s24q4_dot,
                                 .from_float = s24q4_from_float, .check_rows = s24_check_rows};
    for (int c = 1; c <= SLM_SP_N_CLASSES; c++) {
        for (int w = 0; w < 2; w++) {
            const int k = w * SLM_SP_N_CLASSES + c - 1; /* q8sC, then q4sC */
            const us_fns *fn = w ? &g_us4_fns[c - 1] : &g_us8_fns[c - 1];
            snprintf(g_names[k], sizeof g_names[k], "q%ds%d", w ? 4 : 8, c);
            /* 64 weights: two block headers and c values (block_bytes rounds 4-bit classes up;
             * row_bytes is exact) */
            g_tr[2 + k] = (slm_dtype_traits){.name = g_names[k], .block_size = 64,
                                             .block_bytes = (size_t)(12 + (w ? (c + 1) / 2 : c)),
                                             .to_float = fn->to_float, .dot_f32 = fn->dot,
                                             .from_float = fn->from_float, .row_bytes = us_row_bytes,
                                             .check_rows = us_check_rows};
        }
    }
}

const slm_dtype_traits *slm_sp_traits(uint32_t t) {
    if (!slm_sp_format_of(t, NULL)) return NULL;
    pthread_once(&g_once, init_traits);
    return &g_tr[t - SP_FIRST];
}
