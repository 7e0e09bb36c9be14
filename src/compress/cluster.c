/* cluster.c - codebook rewriting of a model's matrices (see cluster.h). */
#include "compress/cluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/intlevels.h"
#include "compress/kmeans.h"
#include "core/cbt.h"
#include "core/codebook.h"
#include "core/dtype.h"

const float *slm_cluster_importance(const slm_calib *cal, const char *name, float *buf, int64_t n) {
    int layer;
    const int point = cal ? slm_calib_point_of(name, &layer) : -1;
    if (point < 0 || layer >= slm_calib_n_layers(cal)) return NULL;
    const float *ms = slm_calib_mean_sq(cal, layer, point);
    if (!ms || slm_calib_dim(cal, point) != n) return NULL;
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++) mean += isfinite(ms[j]) ? (double)ms[j] : 0.0;
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) buf[j] = (float)((isfinite(ms[j]) ? (double)ms[j] : 0.0) + 1e-3 * mean);
    return buf;
}

void slm_cluster_row(uint32_t t, const float *x, const float *imp, int64_t n, uint64_t seed, void *dst) {
    slm_cb_format f;
    size_t rb;
    if (!slm_cb_format_of(t, &f) || !slm_cb_row_bytes(t, n, &rb)) return;
    /* the codebook quantizer's solution first; it stays when k-means++ cannot be run */
    slm_cb_quantize_row(t, x, imp, dst, n);
    const double e0 = slm_cb_row_error(t, x, imp, dst, n);
    float c[SLM_CB_MAX_K];
    const slm_kmeans_params kp = {.k = f.k, .max_iters = 100, .seed = seed};
    if (slm_kmeans(x, imp, n, 1, &kp, c, NULL, NULL) != SLM_OK) return;
    uint8_t *alt = malloc(rb);
    if (!alt) return;
    slm_cb_encode_row(t, x, c, f.k, alt, n);
    if (slm_cb_row_error(t, x, imp, alt, n) < e0) memcpy(dst, alt, rb);
    free(alt);
}

/* A row with its exact zeros on a level of their own: k - 1 centroids by k-means of the other
 * weights (w: their weights, the zeros' set to 0), plus 0. */
static void cluster_row_pinned(uint32_t t, const float *x, const float *w, int64_t n, uint64_t seed, void *dst) {
    slm_cb_format f;
    slm_cb_format_of(t, &f);
    float c[SLM_CB_MAX_K];
    const slm_kmeans_params kp = {.k = f.k - 1, .max_iters = 100, .seed = seed};
    int nc = 0;
    if (slm_kmeans(x, w, n, 1, &kp, c, NULL, NULL) == SLM_OK) nc = f.k - 1;
    c[nc++] = 0.0f;
    slm_cb_encode_row(t, x, c, nc, dst, n);
}

/* True when the zeros of a matrix of n weights (nz of them) make it a pruned one whose zeros
 * deserve a level of their own: at least 1 / (2 k) of its weights. */
static bool pin_zeros(int64_t nz, int64_t n, int k) { return nz > 0 && nz < n && 2 * (int64_t)k * nz >= n; }

int64_t slm_cluster_n_outliers(int64_t n, double f) {
    if (!(f > 0.0) || n <= 0) return 0;
    const double m = floor(f * (double)n + 0.5);
    return m >= (double)n ? n : (int64_t)m;
}

/* ---- conversion: the requant module's loop with this quantizer as its hook ------------------ */

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* What the hooks keep for the tensor being converted. */
typedef struct {
    const slm_cluster_opts *o;
    const float *imp;  /* the tensor's column importance, or NULL */
    bool cbt;          /* per-tensor codebook type */
    int8_t tab[SLM_CBT_MAX_K];
    bool pin;          /* a pruned matrix: exact zeros keep a level 0 */
    float *scale;      /* cbt: per-row scale [rows] */
    int32_t *off, *col; /* outliers: the companions' bytes (NULL: none) */
    float *val;
} cl_state;

static const float *hook_importance(void *user, const char *name, float *buf, int64_t n) {
    const cl_state *st = user;
    return st->o->calib ? slm_cluster_importance(st->o->calib, name, buf, n) : NULL;
}

static double imp_at(const float *imp, int64_t j) { return imp ? (double)imp[j] : 1.0; }

/* Rows of p as f32 (the input dtype's decoding), or NULL when out of memory. */
static float *tensor_rows(const slm_rq_tensor *p) {
    float *x = malloc((size_t)p->n * sizeof *x);
    if (!x) return NULL;
    const slm_dtype_traits *tr = slm_dtype_get(p->in_type);
    size_t rb = 0;
    slm_row_bytes(p->in_type, p->cols, &rb);
    for (int64_t r = 0; r < p->rows; r++) {
        float *y = x + (size_t)r * (size_t)p->cols;
        tr->to_float((const uint8_t *)p->src + (size_t)r * rb, y, p->cols);
        for (int64_t j = 0; j < p->cols; j++)
            if (!isfinite(y[j])) y[j] = 0.0f;
    }
    return x;
}

/* k-th largest of a[n] (k in 1..n); a is reordered. */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        const float piv = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > piv) i++;
            while (a[j] < piv) j--;
            if (i <= j) {
                const float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* The outliers of x (the m largest |w| sqrt(importance); ties: the first in row order) into
 * the offsets and columns. */
static slm_status pick_outliers(cl_state *st, const slm_rq_tensor *p, const float *x, int64_t m) {
    const int64_t n = p->n, cols = p->cols;
    if (m < 1 || m > n || cols < 1) return slm_error(SLM_ERR_ARG, "tensor '%s': bad outlier count", p->name);
    float *score = malloc((size_t)n * sizeof *score), *tmp = malloc((size_t)n * sizeof *tmp);
    if (!score || !tmp) {
        free(score);
        free(tmp);
        return slm_error(SLM_ERR_NOMEM, "tensor '%s': out of memory choosing outliers", p->name);
    }
    for (int64_t i = 0; i < n; i++) score[i] = tmp[i] = (float)(fabs((double)x[i]) * sqrt(imp_at(st->imp, i % cols)));
    const float thr = kth_largest(tmp, n, m);
    int64_t above = 0;
    for (int64_t i = 0; i < n; i++) above += score[i] > thr;
    int64_t ties = m - above, got = 0;
    for (int64_t r = 0; r < p->rows; r++) {
        st->off[r] = (int32_t)got;
        for (int64_t j = 0; j < cols; j++) {
            const float sc = score[r * cols + j];
            if (sc > thr || (sc == thr && ties > 0)) {
                if (!(sc > thr)) ties--;
                st->col[got++] = (int32_t)j;
            }
        }
    }
    st->off[p->rows] = (int32_t)got;
    free(score);
    free(tmp);
    return SLM_OK;
}

static bool is_outlier_row(const cl_state *st, int64_t r, int64_t j) {
    if (!st->off) return false;
    for (int32_t i = st->off[r]; i < st->off[r + 1]; i++)
        if (st->col[i] == j) return true;
    return false;
}

/* The shared table and the row scales of a per-tensor codebook: each row scaled so its largest
 * |w| (outliers aside) is 127, rounded to f16; levels from the weighted histogram of all rows
 * (weight importance * scale^2, so the error is counted in weight units), exact zeros pinned
 * to a level 0 when there are enough of them. */
static void fit_table(cl_state *st, const slm_rq_tensor *p, const float *x) {
    slm_cbt_format f;
    slm_cbt_format_of(p->out_type, &f);
    slm_il_hist *h = malloc(sizeof *h);
    for (int64_t r = 0; r < p->rows; r++) {
        const float *xr = x + (size_t)r * (size_t)p->cols;
        double mx = 0.0;
        for (int64_t j = 0; j < p->cols; j++)
            if (!is_outlier_row(st, r, j)) mx = fmax(mx, fabs((double)xr[j]));
        st->scale[r] = slm_f16_to_f32(slm_f32_to_f16((float)(mx / 127.0)));
    }
    const bool pin = st->pin;
    int used = 0;
    if (h) {
        slm_il_clear(h);
        for (int64_t r = 0; r < p->rows; r++) {
            const double s = st->scale[r];
            if (!(s > 0.0) || !isfinite(s)) continue;
            const float *xr = x + (size_t)r * (size_t)p->cols;
            for (int64_t j = 0; j < p->cols; j++) {
                if (is_outlier_row(st, r, j) || (pin && xr[j] == 0.0f)) continue;
                slm_il_add(h, (float)(xr[j] / s), imp_at(st->imp, j) * s * s);
            }
        }
        used = slm_il_optimal(h, f.k, pin, st->tab, NULL);
        free(h);
    }
    if (used < 1) st->tab[used++] = 0;
    for (int i = used; i < f.k; i++) st->tab[i] = st->tab[used - 1]; /* unused entries repeat the last */
}

static slm_status hook_begin(void *user, slm_rq_tensor *p, const float *imp) {
    cl_state *st = user;
    st->imp = imp;
    st->cbt = slm_cbt_format_of(p->out_type, NULL);
    st->off = st->col = NULL;
    st->val = NULL;
    st->scale = NULL;
    int xi = 0;
    int8_t *tab_out = NULL;
    if (st->cbt && p->n_extra > 0) tab_out = p->extra[xi++].data;
    if (p->n_extra >= xi + 3) {
        st->off = p->extra[xi].data;
        st->col = p->extra[xi + 1].data;
        st->val = p->extra[xi + 2].data;
    }
    if (st->cbt && !tab_out)
        return slm_error(SLM_ERR_ARG, "tensor '%s': no table planned for %s", p->name, slm_dtype_name(p->out_type));
    float *x = tensor_rows(p);
    if (!x) return slm_error(SLM_ERR_NOMEM, "tensor '%s': out of memory", p->name);
    slm_status s = SLM_OK;
    if (st->off) s = pick_outliers(st, p, x, p->extra[xi + 1].ne0);
    int64_t nz = 0;
    for (int64_t i = 0; i < p->n; i++) nz += x[i] == 0.0f;
    slm_cb_format fc;
    slm_cbt_format ft;
    st->pin = pin_zeros(nz, p->n, slm_cb_format_of(p->out_type, &fc) ? fc.k : slm_cbt_format_of(p->out_type, &ft) ? ft.k : 2);
    if (!s && st->cbt) {
        if (!(st->scale = malloc((size_t)(p->rows ? p->rows : 1) * sizeof *st->scale))) {
            s = slm_error(SLM_ERR_NOMEM, "tensor '%s': out of memory", p->name);
        } else {
            slm_cbt_format f;
            slm_cbt_format_of(p->out_type, &f);
            fit_table(st, p, x);
            memcpy(tab_out, st->tab, (size_t)f.k);
        }
    }
    free(x);
    return s;
}

static void hook_end(void *user, slm_rq_tensor *p) {
    (void)p;
    cl_state *st = user;
    free(st->scale);
    st->scale = NULL;
}

/* sum_j w_j (x_j - s tab[idx_j])^2 of a cbt row */
static double cbt_error(const cl_state *st, uint32_t t, const float *x, const float *w, const void *q, int64_t n,
                        float *y) {
    slm_cbt_to_float(t, st->tab, q, y, n);
    double e = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const double d = (double)x[j] - (double)y[j];
        e += (w ? (double)w[j] : 1.0) * d * d;
    }
    return e;
}

/* A cbt row: encoded under the planned scale, then under the least-squares scale of that
 * assignment (kept when its weighted error is smaller). */
static void encode_cbt_row(const cl_state *st, const slm_rq_tensor *p, int64_t r, const float *x, const float *w,
                           void *dst) {
    const uint32_t t = p->out_type;
    const int64_t n = p->cols;
    slm_cbt_encode_row(t, st->tab, st->scale[r], x, dst, n);
    size_t rb = 0;
    slm_cbt_row_bytes(t, n, &rb);
    uint8_t *alt = malloc(rb);
    float *y = malloc((size_t)n * sizeof *y);
    if (alt && y) {
        double num = 0.0, den = 0.0;
        for (int64_t j = 0; j < n; j++) {
            const double q = st->tab[slm_cbt_index(t, dst, j)], wj = w ? (double)w[j] : 1.0;
            num += wj * (double)x[j] * q;
            den += wj * q * q;
        }
        if (den > 0.0 && num > 0.0) {
            slm_cbt_encode_row(t, st->tab, (float)(num / den), x, alt, n);
            if (cbt_error(st, t, x, w, alt, n, y) < cbt_error(st, t, x, w, dst, n, y)) memcpy(dst, alt, rb);
        }
    }
    free(alt);
    free(y);
}

static bool hook_quantize_row(void *user, const slm_rq_tensor *p, int64_t row, float *x, const float *imp, void *dst) {
    const cl_state *st = user;
    const slm_cluster_opts *o = st->o;
    const int64_t n = p->cols;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) x[i] = 0.0f;
    slm_cb_format f;
    const bool cb = slm_cb_format_of(p->out_type, &f);
    if (!cb && !st->cbt) return false;
    /* the row's weights: importance, 0 at outliers */
    float *w = NULL;
    if (st->off || cb) {
        if (!(w = malloc((size_t)n * sizeof *w))) return false;
        for (int64_t j = 0; j < n; j++) w[j] = (float)imp_at(imp, j);
        if (st->off)
            for (int32_t i = st->off[row]; i < st->off[row + 1]; i++) w[st->col[i]] = 0.0f;
    }
    if (st->cbt) {
        encode_cbt_row(st, p, row, x, w ? w : imp, dst);
    } else {
        /* seeds: per tensor (its name) and row, so the result does not depend on the threads */
        const uint64_t seed = mix(mix(o->seed ^ name_hash(p->name)) + (uint64_t)row);
        int64_t nz = 0;
        for (int64_t j = 0; j < n; j++) nz += x[j] == 0.0f && w[j] > 0.0f;
        if (st->pin && nz > 0) {
            for (int64_t j = 0; j < n; j++)
                if (x[j] == 0.0f) w[j] = 0.0f;
            cluster_row_pinned(p->out_type, x, w, n, seed, dst);
        } else {
            slm_cluster_row(p->out_type, x, (st->off || imp) ? w : NULL, n, seed, dst);
        }
    }
    /* outliers keep what the codebook misses */
    if (st->off) {
        float lv;
        for (int32_t i = st->off[row]; i < st->off[row + 1]; i++) {
            const int64_t j = st->col[i];
            uint16_t hb;
            memcpy(&hb, dst, 2);
            const float sc = slm_f16_to_f32(hb);
            if (st->cbt) lv = sc * (float)st->tab[slm_cbt_index(p->out_type, dst, j)];
            else lv = sc * (float)(int8_t)((const uint8_t *)dst)[2 + slm_cb_index(p->out_type, dst, j)];
            st->val[i] = x[j] - lv;
        }
    }
    free(w);
    return true;
}

static bool hook_decode_row(void *user, const slm_rq_tensor *p, int64_t row, const void *q, float *y) {
    const cl_state *st = user;
    if (st->cbt) slm_cbt_to_float(p->out_type, st->tab, q, y, p->cols);
    else if (st->off) slm_dtype_get(p->out_type)->to_float(q, y, p->cols);
    else return false;
    if (st->off)
        for (int32_t i = st->off[row]; i < st->off[row + 1]; i++) y[st->col[i]] += st->val[i];
    return true;
}

slm_status slm_cluster_plan(slm_rq_tensor *ts, size_t nt, const slm_cluster_opts *o) {
    for (size_t i = 0; i < nt; i++) {
        slm_rq_tensor *p = &ts[i];
        if (!p->convert) continue;
        const size_t len = strlen(p->name), wl = strlen(".weight");
        const int bl = len > wl && !strcmp(p->name + len - wl, ".weight") ? (int)(len - wl) : (int)len;
        char name[192];
        slm_cbt_format f;
        slm_status s = SLM_OK;
        if (slm_cbt_format_of(p->out_type, &f)) {
            snprintf(name, sizeof name, "%.*s.codebook", bl, p->name);
            s = slm_rq_add_extra(p, name, SLM_DT_I8, f.k);
        }
        const int64_t m = slm_cluster_n_outliers(p->n, o ? o->outliers : 0.0);
        if (!s && m > 0) {
            if (m >= INT32_MAX || p->rows >= INT32_MAX)
                return slm_error(SLM_ERR_ARG, "tensor '%s' is too large for an outlier table", p->name);
            snprintf(name, sizeof name, "%.*s.outlier_rows", bl, p->name);
            if (!s) s = slm_rq_add_extra(p, name, SLM_DT_I32, p->rows + 1);
            snprintf(name, sizeof name, "%.*s.outlier_cols", bl, p->name);
            if (!s) s = slm_rq_add_extra(p, name, SLM_DT_I32, m);
            snprintf(name, sizeof name, "%.*s.outlier_vals", bl, p->name);
            if (!s) s = slm_rq_add_extra(p, name, SLM_DT_F32, m);
        }
        if (s) return s;
    }
    return SLM_OK;
}

/* Both entry points: the requant options with this quantizer as the hook. w NULL: convert in
 * memory; else convert while writing w to path. */
static slm_status run(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o,
                      slm_gguf_writer *w, const char *path) {
    slm_cluster_opts oo = o ? *o : (slm_cluster_opts){.seed = 1};
    cl_state st = {.o = &oo};
    const slm_rq_hooks hooks = {.user = &st,
                                .importance = hook_importance,
                                .quantize_row = hook_quantize_row,
                                .begin_tensor = hook_begin,
                                .decode_row = hook_decode_row,
                                .end_tensor = hook_end};
    const slm_rq_opts ro = {.hooks = &hooks, .progress = oo.progress, .label = oo.label ? oo.label : "cluster"};
    return w ? slm_rq_convert_write(pool, g, ts, &ro, w, path) : slm_rq_convert(pool, g, ts, &ro);
}

slm_status slm_cluster_convert(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o) {
    return run(pool, g, ts, o, NULL, NULL);
}

slm_status slm_cluster_convert_write(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o,
                                     slm_gguf_writer *w, const char *path) {
    return run(pool, g, ts, o, w, path);
}
