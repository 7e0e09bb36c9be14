/* flash_attn.c - tiled online-softmax attention over the paged KV cache (prefill and split-key
 * decode), scalar reference row kernel, run-time choice of the AVX2 or AVX-512 row kernel. */
#include "flash_attn.h"

#include <math.h>
#include <string.h>

#include "../core/dtype.h"
#include "qdot.h"

/* Per-thread scratch, in floats:
 *   Kt, Vt [KTILE][hd]   the current key / value tile of one KV head, as float
 *   s      [KTILE]       scores of one row
 *   Qs, O  [R][hd]       scaled queries and unnormalized outputs, R = group * QTILE rows
 *   m, l   [R]           running max and sum per row */
size_t slm_fa_scratch_floats(int n_heads, int n_kv_heads, int head_dim) {
    const size_t hd = (size_t)head_dim, rows = (size_t)(n_heads / n_kv_heads) * SLM_FA_QTILE;
    return 2 * SLM_FA_KTILE * hd + SLM_FA_KTILE + 2 * rows * hd + 2 * rows;
}

bool slm_fa_avx512_available(void) {
#if defined(__x86_64__)
    return slm_kernels_get(SLM_ISA_AVX512) != NULL;
#else
    return false;
#endif
}

size_t slm_fa_part_floats(int n_heads, int head_dim) { return (size_t)n_heads * ((size_t)head_dim + 2); }

long slm_fa_prefill_items(const slm_fa_args *a) {
    return (long)a->n_kv_heads * ((a->n_tok + SLM_FA_QTILE - 1) / SLM_FA_QTILE);
}

typedef struct {
    float *Kt, *Vt, *s, *Qs, *O, *m, *l;
} fa_scratch;

static fa_scratch carve(float *base, int group, int hd) {
    fa_scratch w;
    const size_t rows = (size_t)group * SLM_FA_QTILE;
    w.Kt = base;
    w.Vt = w.Kt + (size_t)SLM_FA_KTILE * hd;
    w.s = w.Vt + (size_t)SLM_FA_KTILE * hd;
    w.Qs = w.s + SLM_FA_KTILE;
    w.O = w.Qs + rows * hd;
    w.m = w.O + rows * hd;
    w.l = w.m + rows;
    return w;
}

void slm_fa_row_ref(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                    float *o) {
    if (n <= 0) return;
    float mx = *m;
    for (int c = 0; c < n; c++) {
        const float *k = K + (size_t)c * hd;
        float acc = 0;
        for (int d = 0; d < hd; d++) acc += q[d] * k[d];
        s[c] = acc;
        if (acc > mx) mx = acc;
    }
    const float alpha = expf(*m - mx); /* 0 on the first tile (m = -inf) */
    float sum = 0;
    for (int c = 0; c < n; c++) {
        s[c] = expf(s[c] - mx);
        sum += s[c];
    }
    for (int d = 0; d < hd; d++) o[d] *= alpha;
    for (int c = 0; c < n; c++) {
        const float *v = V + (size_t)c * hd, p = s[c];
        for (int d = 0; d < hd; d++) o[d] += p * v[d];
    }
    *l = *l * alpha + sum;
    *m = mx;
}

static void row(const slm_fa_args *a, const float *q, const float *K, const float *V, int n, float *s, float *m,
                float *l, float *o) {
#if defined(__x86_64__)
    if (a->simd && a->avx512) {
        slm_fa_row_avx512(q, K, V, n, a->head_dim, s, m, l, o);
        return;
    }
    if (a->simd) {
        slm_fa_row_avx2(q, K, V, n, a->head_dim, s, m, l, o);
        return;
    }
#endif
    slm_fa_row_ref(q, K, V, n, a->head_dim, s, m, l, o);
}

/* Convert n elements of one cached row to float. */
static void to_float(const slm_fa_args *a, float *dst, const void *src, int n) {
    if (a->kv->type == SLM_KV_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
#if defined(__x86_64__)
    if (a->simd) {
        slm_fa_f16_to_f32_avx2(dst, src, n);
        return;
    }
#endif
    const uint16_t *h = src;
    for (int i = 0; i < n; i++) dst[i] = slm_f16_to_f32(h[i]);
}

/* Keys and values [j0, j1) of KV head g into Kt / Vt [j1-j0][hd]: one block-table lookup per
 * block the range touches; within a block the rows are consecutive (stride kv_dim). */
static void load_tile(const slm_fa_args *a, int g, int j0, int j1, float *Kt, float *Vt) {
    const slm_kv *kv = a->kv;
    const int bs = kv->block_size, hd = a->head_dim;
    const size_t esz = kv->elem_size, row_bytes = (size_t)kv->kv_dim * esz;
    const size_t layer_off = (size_t)a->layer * kv->n_blocks;
    for (int j = j0; j < j1;) {
        const int off = j % bs;
        const int n = bs - off < j1 - j ? bs - off : j1 - j;
        const int32_t id = a->seq->blocks[j / bs];
        const size_t first = ((layer_off + (size_t)id) * bs + (size_t)off) * row_bytes + (size_t)g * hd * esz;
        const char *kp = (const char *)kv->k + first, *vp = (const char *)kv->v + first;
        for (int i = 0; i < n; i++) {
            to_float(a, Kt + (size_t)(j - j0 + i) * hd, kp + (size_t)i * row_bytes, hd);
            to_float(a, Vt + (size_t)(j - j0 + i) * hd, vp + (size_t)i * row_bytes, hd);
        }
        j += n;
    }
}

/* Rows of query heads g*group .. g*group+group-1 at tokens [t0, t0+nt), row r = hh * nt + tt:
 * scaled queries into Qs, state reset. */
static void start_rows(const slm_fa_args *a, const fa_scratch *w, int g, int t0, int nt) {
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const size_t qd = (size_t)a->n_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int hh = 0; hh < group; hh++)
        for (int tt = 0; tt < nt; tt++) {
            const int r = hh * nt + tt;
            const float *src = a->q + (size_t)(t0 + tt) * qd + (size_t)(g * group + hh) * hd;
            float *dst = w->Qs + (size_t)r * hd;
            for (int d = 0; d < hd; d++) dst[d] = src[d] * scale;
            memset(w->O + (size_t)r * hd, 0, (size_t)hd * sizeof(float));
            w->m[r] = -INFINITY;
            w->l[r] = 0;
        }
}

void slm_fa_prefill(const slm_fa_args *a, long lo, long hi, float *scratch) {
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const size_t qd = (size_t)a->n_heads * hd;
    const fa_scratch w = carve(scratch, group, hd);
    for (long item = lo; item < hi; item++) {
        const int g = (int)(item % a->n_kv_heads);
        const int t0 = (int)(item / a->n_kv_heads) * SLM_FA_QTILE;
        const int nt = a->n_tok - t0 < SLM_FA_QTILE ? a->n_tok - t0 : SLM_FA_QTILE;
        const int rows = group * nt;
        start_rows(a, &w, g, t0, nt);
        /* keys [0, kend): up to the last query of the tile; later tiles are all masked */
        const int kend = a->pos0 + t0 + nt;
        for (int j0 = 0; j0 < kend; j0 += SLM_FA_KTILE) {
            const int j1 = j0 + SLM_FA_KTILE < kend ? j0 + SLM_FA_KTILE : kend;
            load_tile(a, g, j0, j1, w.Kt, w.Vt);
            for (int r = 0; r < rows; r++) {
                const int qpos = a->pos0 + t0 + r % nt;
                if (qpos < j0) continue; /* the whole tile is after this query */
                const int n = (qpos + 1 < j1 ? qpos + 1 : j1) - j0;
                row(a, w.Qs + (size_t)r * hd, w.Kt, w.Vt, n, w.s, &w.m[r], &w.l[r], w.O + (size_t)r * hd);
            }
        }
        for (int r = 0; r < rows; r++) {
            const int hh = r / nt, tt = r % nt;
            float *dst = a->out + (size_t)(t0 + tt) * qd + (size_t)(g * group + hh) * hd;
            const float *o = w.O + (size_t)r * hd, inv = 1.0f / w.l[r];
            for (int d = 0; d < hd; d++) dst[d] = o[d] * inv;
        }
    }
}

void slm_fa_decode_part(const slm_fa_args *a, int k0, int k1, float *scratch, float *part) {
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const fa_scratch w = carve(scratch, group, hd);
    for (int g = 0; g < a->n_kv_heads; g++) {
        start_rows(a, &w, g, 0, 1);
        for (int j0 = k0; j0 < k1; j0 += SLM_FA_KTILE) {
            const int j1 = j0 + SLM_FA_KTILE < k1 ? j0 + SLM_FA_KTILE : k1;
            load_tile(a, g, j0, j1, w.Kt, w.Vt);
            for (int r = 0; r < group; r++)
                row(a, w.Qs + (size_t)r * hd, w.Kt, w.Vt, j1 - j0, w.s, &w.m[r], &w.l[r], w.O + (size_t)r * hd);
        }
        for (int r = 0; r < group; r++) {
            float *dst = part + (size_t)(g * group + r) * (hd + 2);
            memcpy(dst, w.O + (size_t)r * hd, (size_t)hd * sizeof(float));
            dst[hd] = w.m[r];
            dst[hd + 1] = w.l[r];
        }
    }
}

void slm_fa_decode_merge(const float *parts, int n_parts, int n_heads, int head_dim, float *out) {
    const size_t stride = slm_fa_part_floats(n_heads, head_dim);
    for (int h = 0; h < n_heads; h++) {
        float *o = out + (size_t)h * head_dim;
        float mx = -INFINITY;
        for (int i = 0; i < n_parts; i++) {
            const float m = parts[i * stride + (size_t)h * (head_dim + 2) + head_dim];
            if (m > mx) mx = m;
        }
        memset(o, 0, (size_t)head_dim * sizeof(float));
        if (mx == -INFINITY) continue; /* no keys at all */
        float sum = 0;
        for (int i = 0; i < n_parts; i++) {
            const float *p = parts + i * stride + (size_t)h * (head_dim + 2);
            if (p[head_dim] == -INFINITY) continue; /* empty part */
            const float c = expf(p[head_dim] - mx);
            sum += c * p[head_dim + 1];
            for (int d = 0; d < head_dim; d++) o[d] += c * p[d];
        }
        const float inv = 1.0f / sum;
        for (int d = 0; d < head_dim; d++) o[d] *= inv;
    }
}
