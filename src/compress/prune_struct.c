/* prune_struct.c - structured pruning: importance, selection, surgery (see prune_struct.h). */
#include "compress/prune_struct.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/gguf_write.h"
#include "kernels/matmul.h"

slm_ps_params slm_ps_params_default(void) {
    return (slm_ps_params){.ffn_keep = 1.0f, .heads_keep = 1.0f, .kv_keep = 1.0f};
}

static int round_count(float frac, int n) { return (int)lround((double)frac * (double)n); }

void slm_ps_counts(const slm_config *cfg, const slm_ps_params *p, int *ffn_kept, int *heads_kept, int *kv_kept) {
    int f = round_count(p->ffn_keep, cfg->ffn_dim);
    if (f < cfg->ffn_dim) {
        f -= f % SLM_PS_FFN_MULTIPLE;
        if (f < SLM_PS_FFN_MULTIPLE) f = SLM_PS_FFN_MULTIPLE;
    }
    if (f > cfg->ffn_dim) f = cfg->ffn_dim;
    const int hpg = cfg->n_heads / cfg->n_kv_heads;
    int h = round_count(p->heads_keep, hpg), g = round_count(p->kv_keep, cfg->n_kv_heads);
    *ffn_kept = f;
    *heads_kept = h < 1 ? 1 : h > hpg ? hpg : h;
    *kv_kept = g < 1 ? 1 : g > cfg->n_kv_heads ? cfg->n_kv_heads : g;
}

/* ---- importance --------------------------------------------------------------------------- */

/* colsq[j] = sum over rows of W[r][j]^2 (row is scratch of cols floats). */
static void col_sq_norms(const slm_mat *w, float *row, double *colsq) {
    memset(colsq, 0, (size_t)w->cols * sizeof *colsq);
    for (int64_t r = 0; r < w->rows; r++) {
        slm_mat_row(w, r, row);
        for (int64_t j = 0; j < w->cols; j++) colsq[j] += (double)row[j] * row[j];
    }
}

slm_status slm_ps_scores(const slm_model *m, const slm_calib *cal, float *ffn, float *heads) {
    const slm_config *c = &m->cfg;
    const int qd = c->n_heads * c->head_dim;
    if (slm_calib_n_layers(cal) != c->n_layers || slm_calib_dim(cal, SLM_TAP_FFN_MID) != c->ffn_dim ||
        slm_calib_dim(cal, SLM_TAP_ATTN_OUT) != qd)
        return slm_error(SLM_ERR_ARG, "prune: the calibration does not match the model (%d layers, ffn %d, heads %d)",
                         c->n_layers, c->ffn_dim, qd);
    const int wmax = c->ffn_dim > qd ? c->ffn_dim : qd;
    float *row = malloc((size_t)wmax * sizeof *row);
    double *colsq = malloc((size_t)wmax * sizeof *colsq);
    if (!row || !colsq) {
        free(row);
        free(colsq);
        return slm_error(SLM_ERR_NOMEM, "prune: out of memory for importance scores");
    }
    for (int l = 0; l < c->n_layers; l++) {
        const slm_layer *L = &m->layers[l];
        const float *ms = slm_calib_mean_sq(cal, l, SLM_TAP_FFN_MID);
        col_sq_norms(&L->w_down, row, colsq);
        for (int j = 0; j < c->ffn_dim; j++)
            ffn[(size_t)l * c->ffn_dim + j] = (float)(sqrt(fmax(ms[j], 0.0)) * sqrt(colsq[j]));
        ms = slm_calib_mean_sq(cal, l, SLM_TAP_ATTN_OUT);
        col_sq_norms(&L->wo, row, colsq);
        for (int h = 0; h < c->n_heads; h++) {
            double a = 0, w = 0;
            for (int i = h * c->head_dim; i < (h + 1) * c->head_dim; i++) {
                a += fmax(ms[i], 0.0);
                w += colsq[i];
            }
            heads[(size_t)l * c->n_heads + h] = (float)(sqrt(a) * sqrt(w));
        }
    }
    free(row);
    free(colsq);
    return SLM_OK;
}

/* ---- block influence ---------------------------------------------------------------------- */

typedef struct {
    int n_layers, dim, max_tok;
    float *prev;    /* [max_tok][dim] residual entering the previous layer, this batch */
    double *cos_sum; /* [n_layers] */
    uint64_t n_tok;
    bool bad;
} bi_acc;

static double cosine(const float *a, const float *b, int n) {
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (na == 0 || nb == 0) return na == nb ? 1.0 : 0.0;
    return d / sqrt(na * nb);
}

static void bi_tap(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    bi_acc *a = user;
    if (point != SLM_TAP_RESID) return;
    if (layer < 0 || layer > a->n_layers || dim != a->dim || n_tokens < 0 || n_tokens > a->max_tok) {
        a->bad = true;
        return;
    }
    if (layer == 0) a->n_tok += (uint64_t)n_tokens;
    if (layer > 0)
        for (int t = 0; t < n_tokens; t++)
            a->cos_sum[layer - 1] += cosine(a->prev + (size_t)t * dim, x + (size_t)t * dim, dim);
    memcpy(a->prev, x, (size_t)n_tokens * (size_t)dim * sizeof *x);
}

slm_status slm_ps_block_influence(slm_ctx *ctx, const int32_t *windows, int n_windows, int seq_len, bool progress,
                                  double *bi) {
    const slm_config *c = &ctx->model->cfg;
    if (n_windows < 1 || seq_len < 1 || seq_len > ctx->p.n_ctx)
        return slm_error(SLM_ERR_ARG, "prune: %d windows of %d tokens (context %d)", n_windows, seq_len, ctx->p.n_ctx);
    bi_acc a = {.n_layers = c->n_layers, .dim = c->dim, .max_tok = ctx->p.max_batch};
    a.prev = malloc((size_t)a.max_tok * (size_t)a.dim * sizeof *a.prev);
    a.cos_sum = calloc((size_t)c->n_layers, sizeof *a.cos_sum);
    if (!a.prev || !a.cos_sum) {
        free(a.prev);
        free(a.cos_sum);
        return slm_error(SLM_ERR_NOMEM, "prune: out of memory for block influence");
    }
    const slm_tap_fn old = ctx->tap;
    void *old_user = ctx->tap_user;
    slm_status s = SLM_OK;
    for (int w = 0; w < n_windows && !s; w++) {
        slm_ctx_truncate(ctx, 0);
        slm_ctx_set_tap(ctx, bi_tap, &a);
        s = slm_ctx_eval(ctx, windows + (size_t)w * seq_len, seq_len, 0, NULL);
        slm_ctx_set_tap(ctx, old, old_user);
        if (progress) fprintf(stderr, "\rprune: block influence %d/%d windows", w + 1, n_windows);
    }
    if (progress) fputc('\n', stderr);
    slm_ctx_truncate(ctx, 0);
    if (!s && (a.bad || a.n_tok == 0)) s = slm_error(SLM_ERR_ARG, "prune: unexpected residual rows observed");
    if (!s)
        for (int l = 0; l < c->n_layers; l++) bi[l] = 1.0 - a.cos_sum[l] / (double)a.n_tok;
    free(a.prev);
    free(a.cos_sum);
    return s;
}

/* ---- selection ---------------------------------------------------------------------------- */

typedef struct {
    double s;
    int32_t i;
} scored;

/* Descending score, then ascending index (deterministic). */
static int by_score_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int by_int(const void *pa, const void *pb) {
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

/* The k best of s[0..n) (ids base + i) into out, ascending. tmp has n entries. */
static void top_k(const float *s, int n, int k, int32_t base, scored *tmp, int32_t *out) {
    for (int i = 0; i < n; i++) tmp[i] = (scored){s ? s[i] : 0.0, base + i};
    qsort(tmp, (size_t)n, sizeof *tmp, by_score_desc);
    for (int i = 0; i < k; i++) out[i] = tmp[i].i;
    qsort(out, (size_t)k, sizeof *out, by_int);
}

static bool frac_ok(float f) { return f > 0.0f && f <= 1.0f; }

void slm_ps_plan_free(slm_ps_plan *pl) {
    if (!pl) return;
    free(pl->ffn_idx);
    free(pl->kv_idx);
    free(pl->head_idx);
    free(pl->dropped);
    free(pl->bi);
    memset(pl, 0, sizeof *pl);
}

static slm_status choose_layers(const slm_config *cfg, const double *bi, const slm_ps_params *p, bool *dropped) {
    const int L = cfg->n_layers;
    if (p->n_drop_list > 0 && p->drop_layers > 0)
        return slm_error(SLM_ERR_ARG, "prune: give either a number of layers to drop or a list, not both");
    if (p->n_drop_list > 0) {
        if (!p->drop_list) return slm_error(SLM_ERR_ARG, "prune: no list of layers to drop");
        if (p->n_drop_list >= L)
            return slm_error(SLM_ERR_ARG, "prune: cannot drop %d of %d layers", p->n_drop_list, L);
        for (int i = 0; i < p->n_drop_list; i++) {
            const int l = p->drop_list[i];
            if (l < 0 || l >= L) return slm_error(SLM_ERR_ARG, "prune: layer %d out of range [0, %d)", l, L);
            if (dropped[l]) return slm_error(SLM_ERR_ARG, "prune: layer %d listed twice", l);
            dropped[l] = true;
        }
        return SLM_OK;
    }
    if (p->drop_layers < 0 || p->drop_layers >= L)
        return slm_error(SLM_ERR_ARG, "prune: cannot drop %d of %d layers", p->drop_layers, L);
    if (p->drop_layers == 0) return SLM_OK;
    if (!bi) return slm_error(SLM_ERR_ARG, "prune: dropping layers by importance needs the block influence");
    scored *t = malloc((size_t)L * sizeof *t);
    if (!t) return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
    for (int l = 0; l < L; l++) {
        if (!isfinite(bi[l])) {
            free(t);
            return slm_error(SLM_ERR_ARG, "prune: block influence of layer %d is not a number", l);
        }
        t[l] = (scored){-bi[l], l}; /* lowest BI first */
    }
    qsort(t, (size_t)L, sizeof *t, by_score_desc);
    for (int i = 0; i < p->drop_layers; i++) dropped[t[i].i] = true;
    free(t);
    return SLM_OK;
}

slm_status slm_ps_select(const slm_config *cfg, const float *ffn, const float *heads, const double *bi,
                         const slm_ps_params *p, slm_ps_plan *out) {
    memset(out, 0, sizeof *out);
    if (!frac_ok(p->ffn_keep) || !frac_ok(p->heads_keep) || !frac_ok(p->kv_keep))
        return slm_error(SLM_ERR_ARG, "prune: keep fractions must be in (0, 1] (ffn %g, heads %g, kv %g)",
                         (double)p->ffn_keep, (double)p->heads_keep, (double)p->kv_keep);
    slm_ps_plan *pl = out;
    pl->n_layers = cfg->n_layers;
    pl->ffn_dim = cfg->ffn_dim;
    pl->n_heads = cfg->n_heads;
    pl->n_kv_heads = cfg->n_kv_heads;
    pl->head_dim = cfg->head_dim;
    pl->heads_per_group = cfg->n_heads / cfg->n_kv_heads;
    slm_ps_counts(cfg, p, &pl->ffn_kept, &pl->heads_kept, &pl->kv_kept);
    if (!ffn && pl->ffn_kept < pl->ffn_dim) return slm_error(SLM_ERR_ARG, "prune: FFN scores needed");
    if (!heads && (pl->heads_kept < pl->heads_per_group || pl->kv_kept < pl->n_kv_heads))
        return slm_error(SLM_ERR_ARG, "prune: head scores needed");
    const size_t L = (size_t)cfg->n_layers, hk = (size_t)pl->kv_kept * (size_t)pl->heads_kept;
    const int tmp_n = cfg->ffn_dim > cfg->n_heads ? cfg->ffn_dim : cfg->n_heads;
    scored *tmp = malloc((size_t)tmp_n * sizeof *tmp);
    float *gs = malloc((size_t)cfg->n_kv_heads * sizeof *gs);
    int32_t *hsel = malloc((size_t)cfg->n_heads * sizeof *hsel);
    pl->ffn_idx = malloc(L * (size_t)pl->ffn_kept * sizeof *pl->ffn_idx);
    pl->kv_idx = malloc(L * (size_t)pl->kv_kept * sizeof *pl->kv_idx);
    pl->head_idx = malloc(L * hk * sizeof *pl->head_idx);
    pl->dropped = calloc(L, sizeof *pl->dropped);
    pl->bi = malloc(L * sizeof *pl->bi);
    slm_status s = SLM_OK;
    if (!tmp || !gs || !hsel || !pl->ffn_idx || !pl->kv_idx || !pl->head_idx || !pl->dropped || !pl->bi) {
        s = slm_error(SLM_ERR_NOMEM, "prune: out of memory for the plan");
        goto done;
    }
    const int hpg = pl->heads_per_group;
    for (size_t l = 0; l < L; l++) {
        top_k(ffn ? ffn + l * (size_t)cfg->ffn_dim : NULL, cfg->ffn_dim, pl->ffn_kept, 0, tmp,
              pl->ffn_idx + l * (size_t)pl->ffn_kept);
        const float *hs = heads ? heads + l * (size_t)cfg->n_heads : NULL;
        for (int g = 0; g < cfg->n_kv_heads; g++) {
            top_k(hs ? hs + g * hpg : NULL, hpg, pl->heads_kept, g * hpg, tmp, hsel + g * pl->heads_kept);
            double sum = 0;
            for (int h = 0; h < hpg; h++) sum += hs ? hs[g * hpg + h] : 0.0;
            gs[g] = (float)sum;
        }
        int32_t *kv = pl->kv_idx + l * (size_t)pl->kv_kept;
        top_k(gs, cfg->n_kv_heads, pl->kv_kept, 0, tmp, kv);
        for (int k = 0; k < pl->kv_kept; k++)
            memcpy(pl->head_idx + l * hk + (size_t)k * pl->heads_kept, hsel + kv[k] * pl->heads_kept,
                   (size_t)pl->heads_kept * sizeof *hsel);
        pl->bi[l] = bi ? bi[l] : NAN;
    }
    if ((s = choose_layers(cfg, bi, p, pl->dropped))) goto done;
    for (size_t l = 0; l < L; l++) pl->layers_kept += !pl->dropped[l];
done:
    free(tmp);
    free(gs);
    free(hsel);
    if (s) slm_ps_plan_free(pl);
    return s;
}

/* ---- surgery ------------------------------------------------------------------------------ */

/* Buffers that must live until the writer has written. */
typedef struct {
    void **p;
    size_t n, cap;
} owned_list;

static void *own(owned_list *o, size_t bytes) {
    if (o->n == o->cap) {
        const size_t cap = o->cap ? 2 * o->cap : 64;
        void **q = realloc(o->p, cap * sizeof *q);
        if (!q) return NULL;
        o->p = q;
        o->cap = cap;
    }
    void *b = calloc(bytes ? bytes : 1, 1);
    if (b) o->p[o->n++] = b;
    return b;
}

/* The output of one tensor. */
typedef struct {
    int64_t ne[2];
    uint32_t n_dims, type;
    const void *data;
    size_t nbytes;
} out_tensor;

/* Keep the rows rows[0..n) (n_dims 2) or elements (n_dims 1) of t. Rows are copied as bytes;
 * elements of a block-quantized vector are dequantized to f32. */
static slm_status keep_rows(const slm_gguf_tensor *t, const int32_t *rows, int64_t n, owned_list *o, out_tensor *r) {
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    if (t->n_dims == 1) {
        if (tr->block_size == 1) {
            const size_t eb = tr->block_bytes;
            char *d = own(o, (size_t)n * eb);
            if (!d) return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
            for (int64_t i = 0; i < n; i++)
                memcpy(d + (size_t)i * eb, (const char *)t->data + (size_t)rows[i] * eb, eb);
            *r = (out_tensor){{n, 1}, 1, t->type, d, (size_t)n * eb};
            return SLM_OK;
        }
        float *v = malloc((size_t)t->ne[0] * sizeof *v), *d = own(o, (size_t)n * sizeof *d);
        if (!v || !d) {
            free(v);
            return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
        }
        tr->to_float(t->data, v, t->ne[0]);
        for (int64_t i = 0; i < n; i++) d[i] = v[rows[i]];
        free(v);
        *r = (out_tensor){{n, 1}, 1, SLM_DT_F32, d, (size_t)n * sizeof *d};
        return SLM_OK;
    }
    size_t rb;
    if (!slm_row_bytes(t->type, t->ne[0], &rb)) return slm_error(SLM_ERR_FORMAT, "prune: bad row size");
    char *d = own(o, (size_t)n * rb);
    if (!d) return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
    for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * rb, (const char *)t->data + (size_t)rows[i] * rb, rb);
    *r = (out_tensor){{t->ne[0], n}, 2, t->type, d, (size_t)n * rb};
    return SLM_OK;
}

/* Keep the columns cols[0..n) of matrix t: element types sliced in their type, others
 * dequantized to f32. */
static slm_status keep_cols(const slm_gguf_tensor *t, const int32_t *cols, int64_t n, owned_list *o, out_tensor *r) {
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    const int64_t in = t->ne[0], rows = t->ne[1];
    size_t rb;
    if (!slm_row_bytes(t->type, in, &rb)) return slm_error(SLM_ERR_FORMAT, "prune: bad row size");
    if (tr->block_size == 1) {
        const size_t eb = tr->block_bytes;
        char *d = own(o, (size_t)rows * (size_t)n * eb);
        if (!d) return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
        for (int64_t i = 0; i < rows; i++) {
            const char *src = (const char *)t->data + (size_t)i * rb;
            char *dst = d + (size_t)i * (size_t)n * eb;
            for (int64_t j = 0; j < n; j++) memcpy(dst + (size_t)j * eb, src + (size_t)cols[j] * eb, eb);
        }
        *r = (out_tensor){{n, rows}, 2, t->type, d, (size_t)rows * (size_t)n * eb};
        return SLM_OK;
    }
    float *row = malloc((size_t)in * sizeof *row), *d = own(o, (size_t)rows * (size_t)n * sizeof *d);
    if (!row || !d) {
        free(row);
        return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
    }
    for (int64_t i = 0; i < rows; i++) {
        tr->to_float((const char *)t->data + (size_t)i * rb, row, in);
        for (int64_t j = 0; j < n; j++) d[(size_t)i * (size_t)n + (size_t)j] = row[cols[j]];
    }
    free(row);
    *r = (out_tensor){{n, rows}, 2, SLM_DT_F32, d, (size_t)rows * (size_t)n * sizeof *d};
    return SLM_OK;
}

/* Matrix t as f32 with the columns not in keep[0..n) zeroed (n 0: all zero). */
static slm_status zero_cols(const slm_gguf_tensor *t, const int32_t *keep, int64_t n, owned_list *o, out_tensor *r) {
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    const int64_t in = t->ne[0], rows = t->ne[1];
    size_t rb;
    if (!slm_row_bytes(t->type, in, &rb)) return slm_error(SLM_ERR_FORMAT, "prune: bad row size");
    float *row = malloc((size_t)in * sizeof *row), *d = own(o, (size_t)rows * (size_t)in * sizeof *d);
    if (!row || !d) {
        free(row);
        return slm_error(SLM_ERR_NOMEM, "prune: out of memory");
    }
    for (int64_t i = 0; i < rows && n > 0; i++) {
        tr->to_float((const char *)t->data + (size_t)i * rb, row, in);
        for (int64_t j = 0; j < n; j++) d[(size_t)i * (size_t)in + (size_t)keep[j]] = row[keep[j]];
    }
    free(row);
    *r = (out_tensor){{in, rows}, 2, SLM_DT_F32, d, (size_t)rows * (size_t)in * sizeof *d};
    return SLM_OK;
}

/* idx[k] of width w each expanded to w consecutive ids: out[k*w + i] = idx[k]*w + i. */
static void expand(const int32_t *idx, int n, int w, int32_t *out) {
    for (int k = 0; k < n; k++)
        for (int i = 0; i < w; i++) out[(size_t)k * w + i] = idx[k] * w + i;
}

typedef enum { OP_COPY, OP_Q_ROWS, OP_KV_ROWS, OP_FFN_ROWS, OP_O_COLS, OP_DOWN_COLS } tensor_op;

static tensor_op op_of(const char *suffix) {
    static const struct {
        const char *s;
        tensor_op op;
    } t[] = {{"attn_q.weight", OP_Q_ROWS},     {"attn_q.bias", OP_Q_ROWS},       {"attn_k.weight", OP_KV_ROWS},
             {"attn_k.bias", OP_KV_ROWS},      {"attn_v.weight", OP_KV_ROWS},    {"attn_v.bias", OP_KV_ROWS},
             {"ffn_gate.weight", OP_FFN_ROWS}, {"ffn_up.weight", OP_FFN_ROWS},   {"attn_output.weight", OP_O_COLS},
             {"ffn_down.weight", OP_DOWN_COLS}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(suffix, t[i].s)) return t[i].op;
    return OP_COPY;
}

/* Layer number and suffix of "blk.N.suffix"; -1 for other names. */
static int parse_blk(const char *name, const char **suffix) {
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    const long l = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || l < 0 || l > 1 << 20) return -1;
    *suffix = end + 1;
    return (int)l;
}

typedef struct {
    const slm_ps_plan *pl;
    int32_t *q_ids;   /* [kv_kept * heads_kept * head_dim] q rows / wo columns, per layer */
    int32_t *kv_ids;  /* [kv_kept * head_dim] */
} layer_ids;

static void fill_ids(layer_ids *li, int l) {
    const slm_ps_plan *pl = li->pl;
    const int hk = pl->kv_kept * pl->heads_kept;
    expand(pl->head_idx + (size_t)l * hk, hk, pl->head_dim, li->q_ids);
    expand(pl->kv_idx + (size_t)l * pl->kv_kept, pl->kv_kept, pl->head_dim, li->kv_ids);
}

/* The output of tensor t of layer l (op), pruned or zeroed. */
static slm_status do_tensor(const slm_gguf_tensor *t, const char *name, tensor_op op, int l, const layer_ids *li,
                            bool zero_only, owned_list *o, out_tensor *r) {
    const slm_ps_plan *pl = li->pl;
    const int hd = pl->head_dim;
    const int64_t qd = (int64_t)pl->n_heads * hd, kvd = (int64_t)pl->n_kv_heads * hd;
    const int64_t nq = (int64_t)pl->kv_kept * pl->heads_kept * hd, nkv = (int64_t)pl->kv_kept * hd;
    *r = (out_tensor){{t->ne[0], t->ne[1]}, t->n_dims, t->type, t->data, t->nbytes};
    if (op == OP_COPY || t->n_dims > 2) return SLM_OK;
    const int64_t outer = t->n_dims == 1 ? t->ne[0] : t->ne[1];
    int64_t want = 0;
    switch (op) {
    case OP_Q_ROWS: want = qd; break;
    case OP_KV_ROWS: want = kvd; break;
    case OP_FFN_ROWS: want = pl->ffn_dim; break;
    case OP_O_COLS: want = qd; break;
    default: want = pl->ffn_dim; break;
    }
    const bool cols = op == OP_O_COLS || op == OP_DOWN_COLS;
    if ((cols ? t->n_dims != 2 || t->ne[0] != want : outer != want))
        return slm_error(SLM_ERR_FORMAT, "prune: tensor '%s' does not have %" PRId64 " %s", name, want,
                         cols ? "columns" : "rows");
    const bool dropped = pl->dropped[l];
    if (zero_only) {
        if (op == OP_O_COLS && (dropped || nq < qd))
            return zero_cols(t, dropped ? NULL : li->q_ids, dropped ? 0 : nq, o, r);
        if (op == OP_DOWN_COLS && (dropped || pl->ffn_kept < pl->ffn_dim))
            return zero_cols(t, dropped ? NULL : pl->ffn_idx + (size_t)l * pl->ffn_kept, dropped ? 0 : pl->ffn_kept,
                             o, r);
        return SLM_OK;
    }
    const int32_t *ffn = pl->ffn_idx + (size_t)l * pl->ffn_kept;
    switch (op) {
    case OP_Q_ROWS: return nq < qd ? keep_rows(t, li->q_ids, nq, o, r) : SLM_OK;
    case OP_KV_ROWS: return nkv < kvd ? keep_rows(t, li->kv_ids, nkv, o, r) : SLM_OK;
    case OP_FFN_ROWS: return pl->ffn_kept < pl->ffn_dim ? keep_rows(t, ffn, pl->ffn_kept, o, r) : SLM_OK;
    case OP_O_COLS: return nq < qd ? keep_cols(t, li->q_ids, nq, o, r) : SLM_OK;
    default: return pl->ffn_kept < pl->ffn_dim ? keep_cols(t, ffn, pl->ffn_kept, o, r) : SLM_OK;
    }
}

static slm_status set_meta(slm_gguf_writer *w, const slm_model *m, const slm_ps_plan *pl, const slm_ps_params *p) {
    const char *ar = m->cfg.arch_name;
    char key[160], list[1024] = "";
    slm_status s;
    if (!p->zero_only) {
        const struct {
            const char *k;
            int v;
        } kv[] = {{"block_count", pl->layers_kept},
                  {"feed_forward_length", pl->ffn_kept},
                  {"attention.head_count", pl->kv_kept * pl->heads_kept},
                  {"attention.head_count_kv", pl->kv_kept},
                  {"attention.key_length", pl->head_dim},
                  {"attention.value_length", pl->head_dim}};
        for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
            snprintf(key, sizeof key, "%s.%s", ar, kv[i].k);
            if ((s = slm_gguf_writer_set_u32(w, key, (uint32_t)kv[i].v))) return s;
        }
    }
    size_t len = 0;
    for (int l = 0; l < pl->n_layers && len + 16 < sizeof list; l++)
        if (pl->dropped[l]) len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? "," : "", l);
    if ((s = slm_gguf_writer_set_str(w, "slimlm.prune.method",
                                     p->zero_only ? "structured (zero-only reference)" : "structured")) ||
        (s = slm_gguf_writer_set_f32(w, "slimlm.prune.ffn_keep", p->ffn_keep)) ||
        (s = slm_gguf_writer_set_f32(w, "slimlm.prune.heads_keep", p->heads_keep)) ||
        (s = slm_gguf_writer_set_f32(w, "slimlm.prune.kv_keep", p->kv_keep)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.prune.ffn_channels", (uint32_t)pl->ffn_kept)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.prune.heads_per_group", (uint32_t)pl->heads_kept)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.prune.kv_groups", (uint32_t)pl->kv_kept)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.prune.source_layers", (uint32_t)pl->n_layers)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.prune.dropped_layers", list)))
        return s;
    return SLM_OK;
}

static uint64_t n_elems(const int64_t *ne, uint32_t n_dims) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) n *= (uint64_t)ne[d];
    return n;
}

slm_status slm_ps_check_model(const slm_model *m) {
    const slm_gguf *g = m->gguf;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (slm_model_is_companion(g->tensors[i].name.ptr, g->tensors[i].name.len))
            return slm_error(SLM_ERR_UNSUPPORTED,
                             "prune: structured pruning of a model with codebook or outlier tables (%.*s) is not "
                             "supported; prune the model before clustering it",
                             (int)g->tensors[i].name.len, g->tensors[i].name.ptr);
    return SLM_OK;
}

slm_status slm_ps_write(const slm_model *m, const slm_ps_plan *pl, const slm_ps_params *p, const char *path,
                        slm_ps_totals *tot) {
    const slm_config *c = &m->cfg;
    const slm_gguf *g = m->gguf;
    slm_status cs = slm_ps_check_model(m);
    if (cs) return cs;
    if (pl->n_layers != c->n_layers || pl->ffn_dim != c->ffn_dim || pl->n_heads != c->n_heads ||
        pl->n_kv_heads != c->n_kv_heads || pl->head_dim != c->head_dim)
        return slm_error(SLM_ERR_ARG, "prune: the plan was made for another model shape");
    const size_t nq = (size_t)pl->kv_kept * pl->heads_kept * pl->head_dim;
    layer_ids li = {.pl = pl, .q_ids = malloc(nq * sizeof *li.q_ids),
                    .kv_ids = malloc((size_t)pl->kv_kept * pl->head_dim * sizeof *li.kv_ids)};
    int *new_idx = malloc((size_t)c->n_layers * sizeof *new_idx);
    owned_list o = {0};
    slm_gguf_writer *w = NULL;
    slm_ps_totals tt = {0};
    slm_status s = SLM_OK;
    if (!li.q_ids || !li.kv_ids || !new_idx) {
        s = slm_error(SLM_ERR_NOMEM, "prune: out of memory");
        goto done;
    }
    for (int l = 0, k = 0; l < c->n_layers; l++) new_idx[l] = pl->dropped[l] ? -1 : k++;
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) || (s = set_meta(w, m, pl, p)))
        goto done;
    int cur = -1;
    for (uint64_t i = 0; i < g->n_tensors && !s; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        char name[256], out_name[280];
        slm_gguf_str_copy(t->name, name, sizeof name);
        const char *suffix = NULL;
        const int l = parse_blk(name, &suffix);
        out_tensor r = {{t->ne[0], t->ne[1]}, t->n_dims, t->type, t->data, t->nbytes};
        snprintf(out_name, sizeof out_name, "%s", name);
        if (l >= 0 && l < c->n_layers) {
            if (pl->dropped[l] && !p->zero_only) {
                tt.params_before += n_elems(t->ne, t->n_dims);
                tt.bytes_before += t->nbytes;
                continue;
            }
            if (l != cur) fill_ids(&li, cur = l);
            if ((s = do_tensor(t, name, op_of(suffix), l, &li, p->zero_only, &o, &r))) break;
            if (!p->zero_only) snprintf(out_name, sizeof out_name, "blk.%d.%s", new_idx[l], suffix);
        }
        int64_t ne[SLM_GGUF_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        ne[0] = r.ne[0];
        if (r.n_dims > 1) ne[1] = r.ne[1];
        tt.params_before += n_elems(t->ne, t->n_dims);
        tt.bytes_before += t->nbytes;
        tt.params_after += n_elems(ne, t->n_dims);
        tt.bytes_after += r.nbytes;
        tt.f32_matrices += r.type == SLM_DT_F32 && t->type != SLM_DT_F32;
        s = slm_gguf_writer_add_tensor(w, out_name, t->n_dims, ne, r.type, r.data, r.nbytes);
        if (p->progress) fprintf(stderr, "\rprune: tensor %" PRIu64 "/%" PRIu64, i + 1, g->n_tensors);
    }
    if (p->progress) fputc('\n', stderr);
    if (!s && (s = slm_gguf_writer_write(w, path))) goto done;
    if (!s && tot) *tot = tt;
done:
    slm_gguf_writer_free(w);
    for (size_t i = 0; i < o.n; i++) free(o.p[i]);
    free(o.p);
    free(li.q_ids);
    free(li.kv_ids);
    free(new_idx);
    return s;
}

/* ---- report ------------------------------------------------------------------------------- */

void slm_ps_print_report(FILE *f, const slm_ps_plan *pl, const slm_ps_totals *tot) {
    fprintf(f, "%-6s %9s %11s %13s %9s  %s\n", "layer", "BI", "ffn kept", "heads/group", "kv kept", "status");
    for (int l = 0; l < pl->n_layers; l++) {
        char bi[32], ffn[32], hg[32], kv[32];
        if (isnan(pl->bi[l]))
            snprintf(bi, sizeof bi, "-");
        else
            snprintf(bi, sizeof bi, "%.5f", pl->bi[l]);
        snprintf(ffn, sizeof ffn, "%d/%d", pl->ffn_kept, pl->ffn_dim);
        snprintf(hg, sizeof hg, "%d/%d", pl->heads_kept, pl->heads_per_group);
        snprintf(kv, sizeof kv, "%d/%d", pl->kv_kept, pl->n_kv_heads);
        const bool d = pl->dropped[l];
        fprintf(f, "%-6d %9s %11s %13s %9s  %s\n", l, bi, d ? "-" : ffn, d ? "-" : hg, d ? "-" : kv,
                d ? "dropped" : "kept");
    }
    fprintf(f, "layers %d -> %d, ffn %d -> %d, query heads %d -> %d, kv heads %d -> %d\n", pl->n_layers,
            pl->layers_kept, pl->ffn_dim, pl->ffn_kept, pl->n_heads, pl->kv_kept * pl->heads_kept, pl->n_kv_heads,
            pl->kv_kept);
    if (!tot) return;
    const double pct = tot->params_before ? 100.0 * (double)tot->params_after / (double)tot->params_before : 0.0;
    fprintf(f, "params %" PRIu64 " -> %" PRIu64 " (%.1f%%), bytes %" PRIu64 " -> %" PRIu64 "\n", tot->params_before,
            tot->params_after, pct, tot->bytes_before, tot->bytes_after);
    if (tot->f32_matrices)
        fprintf(f, "note: %d block-quantized wo / w_down matrices were written as f32 (quantize the output to shrink "
                   "them)\n",
                tot->f32_matrices);
}
