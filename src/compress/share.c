/* share.c - convert a model to shared layers with low-rank deltas (see share.h). */
#include "share.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/dtype.h"
#include "../core/gguf_write.h"
#include "../model/config.h"
#include "../model/model.h"
#include "lowrank.h"

slm_status slm_share_layer_map(const slm_share_opts *o, int n, int *map, int *kv) {
    if (n < 1) return slm_error(SLM_ERR_ARG, "share: no layers");
    if ((o->groups > 0) + (o->loop > 0) + (o->n_keep > 0) > 1)
        return slm_error(SLM_ERR_ARG, "share: give one of groups / loop / keep-layers");
    if (o->kv_share < 0 || o->kv_share > n)
        return slm_error(SLM_ERR_ARG, "share: KV groups of %d layers (the model has %d)", o->kv_share, n);
    for (int l = 0; l < n; l++) kv[l] = o->kv_share > 1 ? l - l % o->kv_share : l;
    if (o->n_keep > 0) {
        for (int i = 0; i < o->n_keep; i++)
            if (o->keep[i] < 0 || o->keep[i] >= n || (i && o->keep[i] <= o->keep[i - 1]))
                return slm_error(SLM_ERR_ARG, "share: kept layers must be ascending layers of 0..%d", n - 1);
        if (o->n_keep == n) return slm_error(SLM_ERR_ARG, "share: every layer is kept: nothing to share");
        /* the last kept layer at or before l (training needs a source earlier than its
         * readers); layers before the first kept one use the first */
        for (int l = 0; l < n; l++) {
            int src = o->keep[0];
            for (int i = 0; i < o->n_keep && o->keep[i] <= l; i++) src = o->keep[i];
            map[l] = src;
        }
    } else if (o->groups <= 0 && o->loop <= 0) {
        if (o->kv_share <= 1) return slm_error(SLM_ERR_ARG, "share: nothing to share (groups, loop or KV sharing)");
        for (int l = 0; l < n; l++) map[l] = l;
    } else if (o->groups > 0) {
        if (o->groups > n) return slm_error(SLM_ERR_ARG, "share: %d groups of %d layers", o->groups, n);
        /* group g holds layers [g*n/G, (g+1)*n/G) */
        for (int g = 0; g < o->groups; g++) {
            const int lo = (int)((long)g * n / o->groups), hi = (int)((long)(g + 1) * n / o->groups);
            for (int l = lo; l < hi; l++) map[l] = lo;
        }
    } else {
        if (o->loop > n) return slm_error(SLM_ERR_ARG, "share: loop of %d unique layers over %d layers", o->loop, n);
        for (int l = 0; l < n; l++) map[l] = l % o->loop;
    }
    return SLM_OK;
}

typedef struct {
    char name[96];
    uint32_t type;
    int64_t ne[2];
    void *data;
    size_t nbytes;
} out_tensor;

typedef struct {
    out_tensor *t;
    int n, cap;
} out_list;

static slm_status add_out(out_list *L, const char *name, const float *x, int64_t rows, int64_t cols, uint32_t type) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        out_tensor *t = realloc(L->t, (size_t)cap * sizeof *t);
        if (!t) return slm_error(SLM_ERR_NOMEM, "share: out of memory");
        L->t = t;
        L->cap = cap;
    }
    out_tensor *o = &L->t[L->n];
    const size_t n = (size_t)rows * (size_t)cols;
    o->nbytes = n * (type == SLM_DT_F16 ? 2 : 4);
    o->data = malloc(o->nbytes ? o->nbytes : 1);
    if (!o->data) return slm_error(SLM_ERR_NOMEM, "share: out of memory for '%s'", name);
    if (type == SLM_DT_F16) {
        uint16_t *h = o->data;
        for (size_t i = 0; i < n; i++) h[i] = slm_f32_to_f16(x[i]);
    } else {
        memcpy(o->data, x, n * sizeof(float));
    }
    snprintf(o->name, sizeof o->name, "%s", name);
    o->type = type;
    o->ne[0] = cols;
    o->ne[1] = rows;
    L->n++;
    return SLM_OK;
}

/* Dequantize a 2-D tensor to rows x cols floats. */
/* A layer matrix in f32 as the engine computes it (its dtype, codebook table and outliers). */
static slm_status load_mat(const slm_gguf *g, const char *name, int64_t *rows, int64_t *cols, float **out) {
    slm_mat m;
    slm_status s = slm_model_bind_matrix(g, name, &m);
    if (s) return slm_error_prefix(s, "share");
    *rows = m.rows;
    *cols = m.cols;
    float *x = malloc((size_t)*rows * (size_t)*cols * sizeof *x);
    if (!x) return slm_error(SLM_ERR_NOMEM, "share: out of memory for '%s'", name);
    for (int64_t r = 0; r < *rows; r++) slm_mat_row(&m, r, x + (size_t)r * (size_t)*cols);
    *out = x;
    return SLM_OK;
}

static double sqdist(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* Is name a layer matrix ("blk.L.NAME.weight" with NAME one of the seven linears)? */
static bool layer_matrix(const char *name, int *layer) {
    int l, pos = 0;
    if (sscanf(name, "blk.%d.%n", &l, &pos) != 1 || pos == 0) return false;
    for (int j = 0; j < SLM_N_LIN; j++) {
        const char *ln = slm_lin_name(j);
        const size_t n = strlen(ln);
        if (!strncmp(name + pos, ln, n) && !strcmp(name + pos + n, ".weight")) {
            *layer = l;
            return true;
        }
    }
    return false;
}

/* Is name blk.L.attn_k.bias or blk.L.attn_v.bias? */
/* What an identity-initialized layer changes: blk.N.attn_norm.weight and blk.N.attn_v.bias are
 * zeroed (the attention sees a zero input and its values are zero even where q / k / v have
 * biases, so it adds nothing), blk.N.ffn_norm.weight is scaled by IDENTITY_FFN_SCALE. */
#define IDENTITY_FFN_SCALE 1e-3f

static bool identity_zero(const char *name, int *layer) {
    static const char *const suffix[] = {"attn_norm.weight", "ffn_norm.weight", "attn_v.bias"};
    int l, len = 0;
    if (sscanf(name, "blk.%d.%n", &l, &len) != 1 || len == 0) return false;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++)
        if (!strcmp(name + len, suffix[i])) {
            *layer = l;
            return true;
        }
    return false;
}

static bool kv_bias(const char *name, int *layer) {
    int pos = 0;
    if (sscanf(name, "blk.%d.%n", layer, &pos) != 1 || pos == 0) return false;
    return !strcmp(name + pos, "attn_k.bias") || !strcmp(name + pos, "attn_v.bias");
}

/* Does a layer that uses source l's matrices compute its own keys (so l's wk / wv stay)? True
 * for every other matrix. */
static bool kv_needed(const char *name, int l, int n, const int *map, const int *kv) {
    if (!strstr(name, ".attn_k.") && !strstr(name, ".attn_v.")) return true;
    for (int m = 0; m < n; m++)
        if (map[m] == l && kv[m] == m) return true;
    return false;
}

slm_status slm_share_convert(const slm_gguf *g, const slm_share_opts *o, const char *out_path, FILE *report) {
    slm_config cfg;
    slm_status s = slm_config_from_gguf(g, &cfg);
    if (s) return s;
    if (o->rank < 0) return slm_error(SLM_ERR_ARG, "share: negative rank");
    if (slm_gguf_find(g, "slimlm.share.layer_map"))
        return slm_error(SLM_ERR_ARG, "share: the model is already shared");
    const int n = cfg.n_layers;
    int *map = malloc((size_t)n * sizeof *map), *kv = malloc((size_t)n * sizeof *kv);
    double *err2 = calloc((size_t)n, sizeof *err2), *ref2 = calloc((size_t)n, sizeof *ref2);
    int *rank_used = calloc((size_t)n, sizeof *rank_used);
    int *members = malloc((size_t)n * sizeof *members);
    int32_t *map32 = malloc((size_t)n * sizeof *map32), *kv32 = malloc((size_t)n * sizeof *kv32);
    float **mem = calloc((size_t)n, sizeof *mem);
    out_list out = {0};
    slm_gguf_writer *w = NULL;
    float *ba = NULL, *bm = NULL, *am = NULL, *shared = NULL;
    void *zeros = NULL;
    size_t zeros_len = 0;
    float **owned = NULL; /* scaled FFN norms */
    int n_owned = 0;
    if (!map || !kv || !err2 || !ref2 || !rank_used || !mem || !members || !map32 || !kv32) {
        s = slm_error(SLM_ERR_NOMEM, "share: out of memory");
        goto done;
    }
    if ((s = slm_share_layer_map(o, n, map, kv))) goto done;
    int n_unique = 0;
    for (int l = 0; l < n; l++) n_unique += map[l] == l;
    const bool tty = o->progress && isatty(2);
    const int total = n_unique * SLM_N_LIN;
    int done_units = 0;
    for (int src = 0; src < n; src++) {
        if (map[src] != src) continue;
        for (int j = 0; j < SLM_N_LIN; j++) {
            char name[96];
            int64_t rows = 0, cols = 0;
            int n_mem = 0;
            for (int l = 0; l < n; l++)
                if (map[l] == src) members[n_mem++] = l;
            for (int i = 0; i < n_mem; i++) {
                int64_t r = 0, c = 0;
                snprintf(name, sizeof name, "blk.%d.%s.weight", members[i], slm_lin_name(j));
                if ((s = load_mat(g, name, &r, &c, &mem[i]))) goto done;
                if (i == 0) rows = r, cols = c;
                else if (r != rows || c != cols) {
                    s = slm_error(SLM_ERR_FORMAT, "share: '%s' has another shape than layer %d's", name, src);
                    goto done;
                }
            }
            const size_t len = (size_t)rows * (size_t)cols;
            free(shared);
            shared = malloc(len * sizeof *shared);
            if (!shared) {
                s = slm_error(SLM_ERR_NOMEM, "share: out of memory");
                goto done;
            }
            if (o->init_source) {
                for (int i = 0; i < n_mem; i++)
                    if (members[i] == src) memcpy(shared, mem[i], len * sizeof *shared);
            } else if (o->init_best) {
                int best = 0;
                double best_d = INFINITY;
                for (int c = 0; c < n_mem; c++) {
                    double d = 0;
                    for (int i = 0; i < n_mem; i++)
                        if (i != c) d += sqdist(mem[i], mem[c], len);
                    if (d < best_d) best_d = d, best = c;
                }
                memcpy(shared, mem[best], len * sizeof *shared);
            } else {
                for (size_t e = 0; e < len; e++) {
                    double acc = 0;
                    for (int i = 0; i < n_mem; i++) acc += mem[i][e];
                    shared[e] = (float)(acc / n_mem);
                }
            }
            snprintf(name, sizeof name, "blk.%d.%s.weight", src, slm_lin_name(j));
            if ((s = add_out(&out, name, shared, rows, cols, o->mat_type))) goto done;
            /* what the engine will use: the shared matrix as stored */
            if (o->mat_type == SLM_DT_F16)
                for (size_t e = 0; e < len; e++) shared[e] = slm_f16_to_f32(slm_f32_to_f16(shared[e]));
            const int mn = (int)(rows < cols ? rows : cols);
            const int rank = o->rank < mn ? o->rank : mn;
            for (int i = 0; i < n_mem; i++) {
                const int l = members[i];
                float *d = mem[i]; /* becomes W_l - W_shared */
                double r2 = 0, d2 = 0;
                for (size_t e = 0; e < len; e++) {
                    r2 += (double)d[e] * d[e];
                    d[e] -= shared[e];
                    d2 += (double)d[e] * d[e];
                }
                if ((j == SLM_LIN_K || j == SLM_LIN_V) && kv[l] != l) continue; /* no keys of its own */
                ref2[l] += r2;
                if (rank == 0 || d2 == 0) {
                    err2[l] += d2;
                    continue;
                }
                free(bm), free(am), free(ba);
                bm = malloc((size_t)rows * rank * sizeof *bm);
                am = malloc((size_t)rank * cols * sizeof *am);
                ba = NULL;
                if (!bm || !am) {
                    s = slm_error(SLM_ERR_NOMEM, "share: out of memory");
                    goto done;
                }
                if ((s = slm_lowrank_svd(d, (int)rows, (int)cols, rank, o->seed + (uint64_t)l * 131 + (uint64_t)j, bm, am,
                                         NULL)))
                    goto done;
                char na[96];
                snprintf(na, sizeof na, "blk.%d.%s.delta_a", l, slm_lin_name(j));
                if ((s = add_out(&out, na, am, rank, cols, o->delta_type))) goto done;
                snprintf(na, sizeof na, "blk.%d.%s.delta_b", l, slm_lin_name(j));
                if ((s = add_out(&out, na, bm, rows, rank, o->delta_type))) goto done;
                if (o->delta_type == SLM_DT_F16) {
                    for (size_t e = 0; e < (size_t)rows * rank; e++) bm[e] = slm_f16_to_f32(slm_f32_to_f16(bm[e]));
                    for (size_t e = 0; e < (size_t)rank * cols; e++) am[e] = slm_f16_to_f32(slm_f32_to_f16(am[e]));
                }
                /* residual of the stored factors */
                double e2 = 0;
                float *row = malloc((size_t)cols * sizeof *row);
                if (!row) {
                    s = slm_error(SLM_ERR_NOMEM, "share: out of memory");
                    goto done;
                }
                for (int64_t r = 0; r < rows; r++) {
                    for (int64_t c = 0; c < cols; c++) row[c] = 0;
                    for (int k = 0; k < rank; k++) {
                        const float bk = bm[(size_t)r * rank + k];
                        const float *ak = am + (size_t)k * cols;
                        for (int64_t c = 0; c < cols; c++) row[c] += bk * ak[c];
                    }
                    for (int64_t c = 0; c < cols; c++) {
                        const double x = (double)d[(size_t)r * cols + c] - row[c];
                        e2 += x * x;
                    }
                }
                free(row);
                err2[l] += e2;
                rank_used[l] = rank;
            }
            for (int i = 0; i < n_mem; i++) free(mem[i]), mem[i] = NULL;
            done_units++;
            if (o->progress) {
                if (tty) fprintf(stderr, "\rshare: %d/%d matrices", done_units, total);
                else if (done_units % SLM_N_LIN == 0) fprintf(stderr, "share: layer group %d done (%d/%d)\n", src, done_units, total);
            }
        }
    }
    if (tty) fprintf(stderr, "\n");

    if ((s = slm_gguf_writer_create(&w))) goto done;
    if ((s = slm_gguf_writer_copy_kvs(w, g))) goto done;
    slm_gguf_value mv = {.type = SLM_GGUF_ARRAY};
    for (int l = 0; l < n; l++) map32[l] = map[l];
    mv.arr.type = SLM_GGUF_INT32;
    mv.arr.n = (uint64_t)n;
    mv.arr.raw = (const uint8_t *)map32;
    if ((s = slm_gguf_writer_set(w, "slimlm.share.layer_map", &mv))) goto done;
    if ((s = slm_gguf_writer_set_u32(w, "slimlm.share.unique_layers", (uint32_t)n_unique))) goto done;
    slm_gguf_value kvv = mv;
    kvv.arr.raw = (const uint8_t *)kv32;
    for (int l = 0; l < n; l++) kv32[l] = kv[l];
    if (o->kv_share > 1 && (s = slm_gguf_writer_set(w, "slimlm.share.kv_map", &kvv))) goto done;
    if ((s = slm_gguf_writer_set_u32(w, "slimlm.share.rank", (uint32_t)o->rank))) goto done;
    const char *init = o->init_source ? "source" : o->init_best ? "best" : "mean";
    if ((s = slm_gguf_writer_set_str(w, "slimlm.share.init", init))) goto done;
    if (o->identity && (s = slm_gguf_writer_set_u32(w, "slimlm.share.identity", 1))) goto done;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        int l;
        if (layer_matrix(name, &l)) {
            if (l < 0 || l >= n) {
                s = slm_error(SLM_ERR_FORMAT, "share: tensor '%s' names layer %d of %d", name, l, n);
                goto done;
            }
            if (map[l] != l || !kv_needed(name, l, n, map, kv)) continue;
            /* the shared matrix in its place */
            const out_tensor *ot = NULL;
            for (int k = 0; k < out.n; k++)
                if (!strcmp(out.t[k].name, name)) ot = &out.t[k];
            if (!ot) {
                s = slm_error(SLM_ERR_FORMAT, "share: '%s' was not converted", name);
                goto done;
            }
            if ((s = slm_gguf_writer_add_tensor(w, ot->name, 2, ot->ne, ot->type, ot->data, ot->nbytes))) goto done;
            continue;
        }
        if (slm_model_is_companion(name, strlen(name))) {
            /* a table of a layer matrix, which is rewritten in a float type: not copied */
            char base[128];
            snprintf(base, sizeof base, "%.*s.weight", (int)(strrchr(name, '.') - name), name);
            if (layer_matrix(base, &l)) continue;
        }
        if (kv_bias(name, &l) && l >= 0 && l < n && kv[l] != l) continue; /* a KV reader's k / v bias */
        if (o->identity && identity_zero(name, &l) && l >= 0 && l < n && map[l] != l) {
            /* all-zero bytes are 0.0 in every float type; one buffer (the writer keeps the
             * pointer until it writes) sized for the largest norm */
            if (!zeros) {
                for (uint64_t k = 0; k < g->n_tensors; k++) {
                    char nk[128];
                    int lk;
                    snprintf(nk, sizeof nk, "%.*s", (int)g->tensors[k].name.len, g->tensors[k].name.ptr);
                    if (identity_zero(nk, &lk) && g->tensors[k].nbytes > zeros_len) zeros_len = g->tensors[k].nbytes;
                }
                if (!(zeros = calloc(1, zeros_len ? zeros_len : 1))) {
                    s = slm_error(SLM_ERR_NOMEM, "share: out of memory");
                    goto done;
                }
            }
            if (strstr(name, ".ffn_norm.")) {
                /* the FFN norm scaled down, not zeroed: at zero both factors of the FFN vanish and
                 * so does every gradient that could revive it; 1e-3 leaves ~1e-6 of its output */
                const slm_dtype_traits *tr = slm_dtype_get(t->type);
                float *v = t->n_dims == 1 && tr && tr->to_float ? malloc((size_t)t->ne[0] * sizeof *v) : NULL;
                float **ov = v ? realloc(owned, (size_t)(n_owned + 1) * sizeof *ov) : NULL;
                if (!ov) {
                    free(v);
                    s = slm_error(SLM_ERR_NOMEM, "share: cannot scale '%s'", name);
                    goto done;
                }
                owned = ov;
                owned[n_owned++] = v;
                tr->to_float(t->data, v, t->ne[0]);
                for (int64_t e = 0; e < t->ne[0]; e++) v[e] *= IDENTITY_FFN_SCALE;
                if ((s = slm_gguf_writer_add_tensor(w, name, 1, t->ne, SLM_DT_F32, v, (size_t)t->ne[0] * sizeof *v)))
                    goto done;
                continue;
            }
            if ((s = slm_gguf_writer_add_tensor(w, name, t->n_dims, t->ne, t->type, zeros, t->nbytes))) goto done;
            continue;
        }
        if ((s = slm_gguf_writer_add_tensor(w, name, t->n_dims, t->ne, t->type, t->data, t->nbytes))) goto done;
    }
    for (int k = 0; k < out.n; k++) {
        const out_tensor *ot = &out.t[k];
        if (!strstr(ot->name, ".delta_")) continue;
        if ((s = slm_gguf_writer_add_tensor(w, ot->name, 2, ot->ne, ot->type, ot->data, ot->nbytes))) goto done;
    }
    if ((s = slm_gguf_writer_write(w, out_path))) goto done;

    if (report) {
        fprintf(report, "layer  uses  delta rank  rel. error (7 linears, Frobenius)\n");
        double te = 0, tr = 0;
        for (int l = 0; l < n; l++) {
            fprintf(report, "%5d  %4d  %10d  %.5f\n", l, map[l], rank_used[l], ref2[l] > 0 ? sqrt(err2[l] / ref2[l]) : 0.0);
            te += err2[l];
            tr += ref2[l];
        }
        fprintf(report, "total: %d layers -> %d unique, rank %d, init %s%s, relative error %.5f\n", n, n_unique,
                o->rank, init, o->identity ? " (shared layers start as identity)" : "", tr > 0 ? sqrt(te / tr) : 0.0);
    }
done:
    slm_gguf_writer_free(w);
    for (int k = 0; k < out.n; k++) free(out.t[k].data);
    free(out.t);
    if (mem)
        for (int i = 0; i < n; i++) free(mem[i]);
    free(mem);
    free(map), free(err2), free(ref2), free(rank_used), free(members), free(map32), free(kv), free(kv32);
    free(ba), free(bm), free(am), free(shared), free(zeros);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    return s;
}
