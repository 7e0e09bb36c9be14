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

static const float *hook_importance(void *user, const char *name, float *buf, int64_t n) {
    const slm_cluster_opts *o = user;
    return o->calib ? slm_cluster_importance(o->calib, name, buf, n) : NULL;
}

static bool hook_quantize_row(void *user, const slm_rq_tensor *p, int64_t row, float *x, const float *imp, void *dst) {
    const slm_cluster_opts *o = user;
    for (int64_t i = 0; i < p->cols; i++)
        if (!isfinite(x[i])) x[i] = 0.0f;
    if (!slm_cb_format_of(p->out_type, NULL)) return false;
    /* seeds: per tensor (its name) and row, so the result does not depend on the threads */
    const uint64_t seed = mix(o->seed ^ name_hash(p->name));
    slm_cluster_row(p->out_type, x, imp, p->cols, mix(seed + (uint64_t)row), dst);
    return true;
}

/* Both entry points: the requant options with this quantizer as the hook. w NULL: convert in
 * memory; else convert while writing w to path. */
static slm_status run(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_cluster_opts *o,
                      slm_gguf_writer *w, const char *path) {
    slm_cluster_opts oo = o ? *o : (slm_cluster_opts){.seed = 1};
    const slm_rq_hooks hooks = {.user = &oo, .importance = hook_importance, .quantize_row = hook_quantize_row};
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
