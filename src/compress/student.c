/* student.c - layer lists, the angular-distance block choice, and the GGUF export of a
 * trained student. */
#include "student.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/dtype.h"
#include "../core/gguf_write.h"
#include "pack.h"
#include "requant.h"

/* ---- layer lists ---- */

static bool parse_num(const char **p, long *v) {
    char *end;
    if (**p < '0' || **p > '9') return false;
    *v = strtol(*p, &end, 10);
    *p = end;
    return *v <= 1000000;
}

slm_status slm_student_parse_layers(const char *spec, int n_layers, int **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    bool *keep = calloc((size_t)(n_layers > 0 ? n_layers : 1), sizeof *keep);
    if (!keep) return slm_error(SLM_ERR_NOMEM, "out of memory");
    const char *p = spec;
    slm_status s = SLM_OK;
    while (!s) {
        const char *item = p;
        long a, b;
        if (!parse_num(&p, &a)) {
            s = slm_error(SLM_ERR_ARG, "layer list '%s': expected a layer number at '%s'", spec, item);
            break;
        }
        b = a;
        if (*p == '-') {
            p++;
            if (!parse_num(&p, &b) || b < a) {
                s = slm_error(SLM_ERR_ARG, "layer list '%s': bad range at '%s'", spec, item);
                break;
            }
        }
        if (b >= n_layers) {
            s = slm_error(SLM_ERR_ARG, "layer list '%s': layer %ld does not exist (the teacher has %d layers)", spec, b,
                          n_layers);
            break;
        }
        for (long l = a; l <= b; l++) {
            if (keep[l]) s = slm_error(SLM_ERR_ARG, "layer list '%s': layer %ld given twice", spec, l);
            keep[l] = true;
        }
        if (*p == 0) break;
        if (*p != ',') {
            s = slm_error(SLM_ERR_ARG, "layer list '%s': unexpected '%c'", spec, *p);
            break;
        }
        p++;
    }
    int n = 0;
    for (int l = 0; l < n_layers; l++) n += keep[l];
    if (!s && n == 0) s = slm_error(SLM_ERR_ARG, "layer list '%s' is empty", spec);
    if (!s && !(*out = malloc((size_t)n * sizeof **out))) s = slm_error(SLM_ERR_NOMEM, "out of memory");
    if (!s) {
        for (int l = 0; l < n_layers; l++)
            if (keep[l]) (*out)[(*n_out)++] = l;
    }
    free(keep);
    return s;
}

int slm_student_every_other(int n_layers, int *out) {
    int n = 0;
    for (int l = 0; l < n_layers; l += 2) out[n++] = l;
    return n;
}

int slm_student_drop_block(int n_layers, int first, int n, int *out) {
    int k = 0;
    for (int l = 0; l < n_layers; l++)
        if (l < first || l >= first + n) out[k++] = l;
    return k;
}

void slm_student_layers_str(const int *layers, int n, char *buf, size_t cap) {
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < n && len + 1 < cap; i++) {
        const int w = snprintf(buf + len, cap - len, i ? ",%d" : "%d", layers[i]);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
}

/* ---- angular distances ---- */

typedef struct {
    float *h;    /* [n_layers + 1][seq_len][dim] residual streams of one window */
    int *filled; /* [n_layers + 1] rows received */
    int n_layers, seq_len, dim;
    bool bad;
} resid_capture;

static void capture(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    resid_capture *c = user;
    if (point != SLM_TAP_RESID) return;
    if (layer < 0 || layer > c->n_layers || dim != c->dim || c->filled[layer] + n_tokens > c->seq_len) {
        c->bad = true;
        return;
    }
    memcpy(c->h + ((size_t)layer * c->seq_len + (size_t)c->filled[layer]) * (size_t)dim, x,
           (size_t)n_tokens * (size_t)dim * sizeof *x);
    c->filled[layer] += n_tokens;
}

static double angular(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 || bb == 0) return 0.5;
    double c = ab / sqrt(aa * bb);
    c = c > 1 ? 1 : c < -1 ? -1 : c;
    return acos(c) / M_PI;
}

slm_status slm_student_block_distances(slm_ctx *ctx, const int32_t *windows, int n_windows, int seq_len, int n,
                                       double *dist) {
    const int L = ctx->model->cfg.n_layers, dim = ctx->model->cfg.dim;
    if (n < 1 || n >= L) return slm_error(SLM_ERR_ARG, "drop block: %d layers of %d cannot be removed", n, L);
    if (seq_len < 1 || seq_len > ctx->p.n_ctx) return slm_error(SLM_ERR_ARG, "drop block: window of %d tokens", seq_len);
    resid_capture c = {.n_layers = L, .seq_len = seq_len, .dim = dim};
    c.h = malloc((size_t)(L + 1) * (size_t)seq_len * (size_t)dim * sizeof *c.h);
    c.filled = calloc((size_t)L + 1, sizeof *c.filled);
    if (!c.h || !c.filled) {
        free(c.h);
        free(c.filled);
        return slm_error(SLM_ERR_NOMEM, "drop block: out of memory");
    }
    const int n_cand = L - n + 1;
    for (int l = 0; l < n_cand; l++) dist[l] = 0;
    const slm_tap_fn old_tap = ctx->tap;
    void *old_user = ctx->tap_user;
    slm_status s = SLM_OK;
    for (int w = 0; w < n_windows && !s; w++) {
        memset(c.filled, 0, (size_t)(L + 1) * sizeof *c.filled);
        slm_ctx_truncate(ctx, 0);
        slm_ctx_set_tap(ctx, capture, &c);
        s = slm_ctx_eval(ctx, windows + (size_t)w * seq_len, seq_len, 0, NULL);
        slm_ctx_set_tap(ctx, old_tap, old_user);
        slm_ctx_truncate(ctx, 0);
        if (s) break;
        for (int l = 0; l <= L && !c.bad; l++) c.bad = c.filled[l] != seq_len;
        if (c.bad) {
            s = slm_error(SLM_ERR_ARG, "drop block: the residual stream was not observed as expected");
            break;
        }
        for (int l = 0; l < n_cand; l++) {
            const float *a = c.h + (size_t)l * seq_len * dim, *b = c.h + (size_t)(l + n) * seq_len * dim;
            for (int t = 0; t < seq_len; t++) dist[l] += angular(a + (size_t)t * dim, b + (size_t)t * dim, dim);
        }
    }
    if (!s)
        for (int l = 0; l < n_cand; l++) dist[l] /= (double)n_windows * seq_len;
    free(c.h);
    free(c.filled);
    return s;
}

/* ---- export ---- */

static bool is_float_type(uint32_t t) { return t == SLM_DT_F32 || t == SLM_DT_F16; }

/* Write the table's tensors (matrices as `type`, F32 or F16; vectors F32) with o's metadata. */
static slm_status write_float(slm_tmodel *m, const slm_student_export_opts *o, uint32_t type, uint32_t file_type,
                              const char *path) {
    int np = 0;
    const slm_tparam *tp = slm_tmodel_params(m, &np);
    const float *wts = slm_tmodel_weights(m);
    const slm_tcfg *tc = slm_tmodel_cfg(m);
    slm_gguf_writer *w = NULL;
    uint16_t **half = calloc((size_t)np, sizeof *half);
    if (!half) return slm_error(SLM_ERR_NOMEM, "out of memory");
    char key[96];
    snprintf(key, sizeof key, "%s.block_count", tc->cfg.arch_name);
    slm_status s;
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, o->meta)) ||
        (s = slm_gguf_writer_set_u32(w, key, (uint32_t)tc->cfg.n_layers)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", file_type)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.distill.teacher", o->teacher ? o->teacher : "")) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.distill.layers", o->layers ? o->layers : "")) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.distill.loss", o->objective ? o->objective : "")) ||
        (s = slm_gguf_writer_set_u64(w, "slimlm.distill.tokens", o->tokens)) ||
        (s = slm_gguf_writer_set_u64(w, "slimlm.distill.steps", (uint64_t)o->steps)) ||
        (s = slm_gguf_writer_set_f32(w, "slimlm.distill.final_loss", o->final_loss)))
        goto done;
    /* sharing metadata describes the student, not its source: a student trained unshared (LoRA,
     * a layer subset) has its own matrices in every layer */
    static const char *const share_keys[] = {"slimlm.share.layer_map", "slimlm.share.kv_map", "slimlm.share.unique_layers",
                                             "slimlm.share.rank", "slimlm.share.init"};
    for (size_t k = 0; k < sizeof share_keys / sizeof *share_keys; k++) slm_gguf_writer_remove(w, share_keys[k]);
    int32_t lmap[SLM_TMAX_SHARED_LAYERS], kmap[SLM_TMAX_SHARED_LAYERS];
    const int nl = tc->cfg.n_layers;
    slm_gguf_value mv = {.type = SLM_GGUF_ARRAY};
    mv.arr.type = SLM_GGUF_INT32;
    mv.arr.n = (uint64_t)nl;
    slm_gguf_value kv = mv;
    if (tc->shared) {
        int unique = 0;
        for (int l = 0; l < nl; l++) lmap[l] = tc->share_map[l], unique += tc->share_map[l] == l;
        mv.arr.raw = (const uint8_t *)lmap;
        if ((s = slm_gguf_writer_set(w, "slimlm.share.layer_map", &mv)) ||
            (s = slm_gguf_writer_set_u32(w, "slimlm.share.unique_layers", (uint32_t)unique)) ||
            (s = slm_gguf_writer_set_u32(w, "slimlm.share.rank", tc->deltas ? (uint32_t)tc->lora_rank : 0)))
            goto done;
    }
    if (tc->kv_shared) {
        for (int l = 0; l < nl; l++) kmap[l] = tc->kv_map[l];
        kv.arr.raw = (const uint8_t *)kmap;
        if ((s = slm_gguf_writer_set(w, "slimlm.share.kv_map", &kv))) goto done;
    }
    for (int i = 0; i < np && !s; i++) {
        const slm_tparam *p = &tp[i];
        if (p->kind == SLM_TP_LORA) continue;
        const float *src = wts + p->offset;
        if (p->rows > 1 && type == SLM_DT_F16) {
            if (!(half[i] = malloc(p->n * sizeof *half[i]))) {
                s = slm_error(SLM_ERR_NOMEM, "out of memory");
                break;
            }
            for (size_t j = 0; j < p->n; j++) half[i][j] = slm_f32_to_f16(src[j]);
            const int64_t ne[2] = {p->cols, p->rows};
            s = slm_gguf_writer_add_tensor(w, p->name, 2, ne, SLM_DT_F16, half[i], p->n * sizeof *half[i]);
        } else if (p->rows > 1) {
            const int64_t ne[2] = {p->cols, p->rows};
            s = slm_gguf_writer_add_tensor(w, p->name, 2, ne, SLM_DT_F32, src, p->n * sizeof *src);
        } else {
            const int64_t ne[1] = {p->cols};
            s = slm_gguf_writer_add_tensor(w, p->name, 1, ne, SLM_DT_F32, src, p->n * sizeof *src);
        }
    }
    if (!s) s = slm_gguf_writer_write(w, path);
done:
    slm_gguf_writer_free(w);
    for (int i = 0; i < np; i++) free(half[i]);
    free(half);
    return s;
}

/* Quantize every weight matrix of the F32 file `in` to type and write `path`. */
static slm_status requantize(const char *in, uint32_t type, slm_pool *pool, const char *path) {
    slm_gguf *g = NULL;
    slm_rq_tensor *ts = NULL;
    slm_gguf_writer *w = NULL;
    int *want = NULL;
    slm_status s = slm_pack_open_gguf(in, &g);
    if (s) return s;
    const size_t nt = (size_t)g->n_tensors;
    if (!(want = malloc((nt ? nt : 1) * sizeof *want))) {
        s = slm_error(SLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nt; i++) {
        char name[128];
        slm_gguf_str_copy(g->tensors[i].name, name, sizeof name);
        want[i] = slm_rq_is_weight_matrix(&g->tensors[i], name) ? (int)type : -1;
    }
    const slm_rq_opts ro = {.progress = 0, .label = "distill"};
    if ((s = slm_rq_plan(g, want, &ro, &ts)) || (s = slm_rq_convert(pool, g, ts, &ro)) ||
        (s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", slm_rq_file_type(type))) ||
        (s = slm_rq_add_tensors(w, g, ts)) || (s = slm_gguf_writer_write(w, path)))
        goto done;
done:
    slm_gguf_writer_free(w);
    slm_rq_free(ts, nt);
    free(want);
    slm_gguf_free(g);
    return s;
}

slm_status slm_student_export(slm_tmodel *m, const slm_student_export_opts *o, const char *path) {
    const slm_dtype_traits *tr = slm_dtype_get(o->type);
    if (!tr || !tr->from_float)
        return slm_error(SLM_ERR_ARG, "export: type %s has no quantizer", tr ? slm_dtype_name(o->type) : "?");
    if (is_float_type(o->type)) return write_float(m, o, o->type, slm_rq_file_type(o->type), path);
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return slm_error(SLM_ERR_NOMEM, "out of memory");
    snprintf(tmp, len, "%s.f32-%ld.tmp", path, (long)getpid());
    slm_status s = write_float(m, o, SLM_DT_F32, slm_rq_file_type(SLM_DT_F32), tmp);
    if (!s) s = requantize(tmp, o->type, o->pool, path);
    unlink(tmp);
    free(tmp);
    return s;
}
