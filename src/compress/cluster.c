/* cluster.c - codebook rewriting of a model's matrices (see cluster.h). */
#include "compress/cluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/kmeans.h"
#include "core/codebook.h"
#include "core/dtype.h"

const float *slm_cluster_importance(const slm_calib *cal, const char *name, float *buf, int64_t n) {
    static const struct {
        const char *suffix;
        int point;
    } map[] = {
        {".attn_q.weight", SLM_TAP_ATTN_IN},  {".attn_k.weight", SLM_TAP_ATTN_IN},
        {".attn_v.weight", SLM_TAP_ATTN_IN},  {".attn_output.weight", SLM_TAP_ATTN_OUT},
        {".ffn_gate.weight", SLM_TAP_FFN_IN}, {".ffn_up.weight", SLM_TAP_FFN_IN},
        {".ffn_down.weight", SLM_TAP_FFN_MID},
    };
    if (!cal || strncmp(name, "blk.", 4) || name[4] < '0' || name[4] > '9') return NULL;
    char *end;
    const long layer = strtol(name + 4, &end, 10);
    if (layer < 0 || layer >= slm_calib_n_layers(cal)) return NULL;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (strcmp(end, map[i].suffix)) continue;
        const float *ms = slm_calib_mean_sq(cal, (int)layer, map[i].point);
        if (!ms || slm_calib_dim(cal, map[i].point) != n) return NULL;
        double mean = 0.0;
        for (int64_t j = 0; j < n; j++) mean += isfinite(ms[j]) ? (double)ms[j] : 0.0;
        mean /= (double)n;
        for (int64_t j = 0; j < n; j++) buf[j] = (float)((isfinite(ms[j]) ? (double)ms[j] : 0.0) + 1e-3 * mean);
        return buf;
    }
    return NULL;
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

/* ---- conversion ---------------------------------------------------------------------------- */

typedef struct {
    slm_rq_tensor *p;
    size_t in_row, out_row;
    uint64_t seed;
    float *scratch;      /* [nth][2 * cols] */
    double *err2, *ref2; /* [nth] */
    const float *imp;
} job;

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void convert_rows(void *arg, int ith, int nth) {
    job *j = arg;
    slm_rq_tensor *p = j->p;
    const slm_dtype_traits *ti = slm_dtype_get(p->in_type), *to = slm_dtype_get(p->out_type);
    const bool cb = slm_cb_format_of(p->out_type, NULL);
    const int64_t cols = p->cols;
    float *x = j->scratch + (size_t)ith * 2 * (size_t)cols, *y = x + cols;
    long lo, hi;
    slm_pool_split((long)p->rows, ith, nth, 1, &lo, &hi);
    double e2 = 0, r2 = 0;
    for (long r = lo; r < hi; r++) {
        uint8_t *dst = (uint8_t *)p->dst + (size_t)r * j->out_row;
        ti->to_float((const uint8_t *)p->src + (size_t)r * j->in_row, x, cols);
        for (int64_t i = 0; i < cols; i++)
            if (!isfinite(x[i])) x[i] = 0.0f;
        if (cb) slm_cluster_row(p->out_type, x, j->imp, cols, mix(j->seed + (uint64_t)r), dst);
        else to->from_float(x, dst, cols);
        to->to_float(dst, y, cols);
        for (int64_t i = 0; i < cols; i++) {
            const double d = (double)x[i] - (double)y[i];
            e2 += d * d;
            r2 += (double)x[i] * (double)x[i];
        }
    }
    j->err2[ith] = e2;
    j->ref2[ith] = r2;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static slm_status convert_one(slm_pool *pool, slm_rq_tensor *p, const slm_cluster_opts *o) {
    const int nth = slm_pool_size(pool);
    job j = {.p = p, .seed = mix((o ? o->seed : 1) ^ name_hash(p->name))};
    if (!slm_row_bytes(p->in_type, p->cols, &j.in_row) || !slm_row_bytes(p->out_type, p->cols, &j.out_row))
        return slm_error(SLM_ERR_ARG, "tensor '%s': bad row length", p->name);
    const size_t cols = (size_t)(p->cols ? p->cols : 1);
    p->dst = malloc(p->out_bytes ? p->out_bytes : 1);
    j.scratch = malloc((size_t)nth * 2 * cols * sizeof(float));
    float *imp_buf = malloc(cols * sizeof(float));
    j.err2 = calloc((size_t)nth, sizeof(double));
    j.ref2 = calloc((size_t)nth, sizeof(double));
    slm_status s = SLM_OK;
    if (!p->dst || !j.scratch || !j.err2 || !j.ref2 || !imp_buf) {
        s = slm_error(SLM_ERR_NOMEM, "tensor '%s': out of memory (%zu bytes)", p->name, p->out_bytes);
    } else {
        if (o && o->calib) j.imp = slm_cluster_importance(o->calib, p->name, imp_buf, p->cols);
        if (p->rows) {
            slm_pool_run(pool, convert_rows, &j);
            for (int i = 0; i < nth; i++) {
                p->err2 += j.err2[i];
                p->ref2 += j.ref2[i];
            }
        }
    }
    free(j.scratch);
    free(imp_buf);
    free(j.err2);
    free(j.ref2);
    return s;
}

slm_status slm_cluster_convert(slm_pool *pool, slm_rq_tensor *ts, size_t nt, const slm_cluster_opts *o) {
    const int progress = o ? o->progress : 0;
    const char *label = o && o->label ? o->label : "cluster";
    uint64_t work_all = 0, work_done = 0;
    for (size_t i = 0; i < nt; i++)
        if (ts[i].convert) work_all += (uint64_t)ts[i].n;
    for (size_t i = 0; i < nt; i++) {
        slm_rq_tensor *p = &ts[i];
        if (!p->convert) continue;
        if (progress == 1) {
            const int width = 30, fill = work_all ? (int)(width * work_done / work_all) : width;
            fprintf(stderr, "\r\033[K%s: [%.*s%*s] %3d%% %zu/%zu %s", label, fill, "##############################",
                    width - fill, "", work_all ? (int)(100 * work_done / work_all) : 100, i + 1, nt, p->name);
        } else if (progress == 2) {
            fprintf(stderr, "%s: [%zu/%zu] %s %s -> %s\n", label, i + 1, nt, p->name, slm_dtype_name(p->in_type),
                    slm_dtype_name(p->out_type));
        }
        slm_status s = convert_one(pool, p, o);
        if (s) {
            if (progress == 1) fputc('\n', stderr);
            return s;
        }
        work_done += (uint64_t)p->n;
    }
    if (progress == 1) fprintf(stderr, "\r\033[K");
    return SLM_OK;
}
