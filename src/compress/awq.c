/* awq.c - the AWQ scale search and its folding into the model's tensors (see awq.h). */
#include "compress/awq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/dtype.h"
#include "kernels/matmul.h"

/* ---- one group's search ------------------------------------------------------------------- */

typedef struct {
    const slm_mat *mats[3];
    int n_mats;
    int point;          /* calibration tap of the shared input */
    int in;             /* input dim */
    int64_t out;        /* total rows */
} group_def;

/* The calibration tap that holds each group's shared input. */
static const int group_point[SLM_AWQ_N_GROUPS] = {SLM_TAP_ATTN_IN, SLM_TAP_FFN_IN, SLM_TAP_ATTN_OUT, SLM_TAP_FFN_MID};

static void group_of(const slm_model *m, int l, int g, group_def *d) {
    const slm_layer *L = &m->layers[l];
    memset(d, 0, sizeof *d);
    switch (g) {
    case SLM_AWQ_QKV:
        d->mats[0] = &L->wq, d->mats[1] = &L->wk, d->mats[2] = &L->wv, d->n_mats = 3;
        break;
    case SLM_AWQ_GATE_UP:
        d->mats[0] = &L->w_gate, d->mats[1] = &L->w_up, d->n_mats = 2;
        break;
    case SLM_AWQ_O:
        d->mats[0] = &L->wo, d->n_mats = 1;
        break;
    default:
        d->mats[0] = &L->w_down, d->n_mats = 1;
        break;
    }
    d->point = group_point[g];
    d->in = (int)d->mats[0]->cols;
    for (int i = 0; i < d->n_mats; i++) d->out += d->mats[i]->rows;
}

typedef struct {
    const float *w;   /* [out][in] exact weights */
    float *dw;        /* [out][in] quantization error in the original coordinates */
    const float *s;   /* [in] */
    int64_t out;
    int in;
    const slm_dtype_traits *tr;
    void *qbuf;       /* [nth][row bytes] */
    float *fbuf;      /* [nth][2 * in] */
    size_t row_bytes;
} qjob;

/* dw = Q(w diag(s)) diag(1/s) - w, rows split over the pool. */
static void quant_rows(void *arg, int ith, int nth) {
    qjob *j = arg;
    long lo, hi;
    slm_pool_split((long)j->out, ith, nth, 1, &lo, &hi);
    float *a = j->fbuf + (size_t)ith * 2 * (size_t)j->in, *b = a + j->in;
    void *q = (char *)j->qbuf + (size_t)ith * j->row_bytes;
    for (long r = lo; r < hi; r++) {
        const float *w = j->w + (size_t)r * (size_t)j->in;
        for (int c = 0; c < j->in; c++) a[c] = w[c] * j->s[c];
        j->tr->from_float(a, q, j->in);
        j->tr->to_float(q, b, j->in);
        float *dw = j->dw + (size_t)r * (size_t)j->in;
        for (int c = 0; c < j->in; c++) dw[c] = b[c] / j->s[c] - w[c];
    }
}

static double sum_sq(const float *y, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * y[i];
    return s;
}

/* Scales for one alpha: s = sx^alpha (at least 1e-4), normalized to max * min = 1; with tie
 * (the O group under grouped-query attention) the statistic is first averaged over the heads
 * that share a KV head. */
static void make_scales(const float *sx, int in, float alpha, int tie_heads, int head_dim, int kv_dim, float *s) {
    if (tie_heads > 1) {
        for (int kc = 0; kc < kv_dim; kc++) {
            const int kvh = kc / head_dim, i = kc % head_dim;
            double acc = 0;
            for (int h = 0; h < tie_heads; h++) acc += sx[(kvh * tie_heads + h) * head_dim + i];
            const float v = powf(fmaxf((float)(acc / tie_heads), 0.0f), alpha);
            for (int h = 0; h < tie_heads; h++) s[(kvh * tie_heads + h) * head_dim + i] = fmaxf(v, 1e-4f);
        }
    } else {
        for (int c = 0; c < in; c++) s[c] = fmaxf(powf(fmaxf(sx[c], 0.0f), alpha), 1e-4f);
    }
    float mx = s[0], mn = s[0];
    for (int c = 1; c < in; c++) {
        if (s[c] > mx) mx = s[c];
        if (s[c] < mn) mn = s[c];
    }
    const float norm = 1.0f / sqrtf(mx * mn);
    for (int c = 0; c < in; c++) s[c] *= norm;
}

static slm_status search_group(const slm_model *m, const slm_calib *cal, slm_pool *pool, slm_mm *mm,
                               const slm_awq_params *p, int l, int g, const slm_awq_result *r, slm_awq_choice *ch) {
    group_def d;
    group_of(m, l, g, &d);
    const slm_dtype_traits *tr = slm_dtype_get(p->type);
    size_t row_bytes;
    if (!tr || !tr->from_float || !tr->to_float || !slm_row_bytes(p->type, d.in, &row_bytes))
        return slm_error(SLM_ERR_ARG, "awq: layer %d: %s cannot hold rows of %d", l, slm_dtype_name(p->type), d.in);
    int nr;
    const float *x = slm_calib_rows(cal, l, d.point, &nr);
    const float *sx = slm_calib_mean_abs(cal, l, d.point);
    if (!x || !sx || nr <= 0 || slm_calib_dim(cal, d.point) != d.in)
        return slm_error(SLM_ERR_ARG, "awq: layer %d has no calibration rows for this input", l);
    if (p->max_rows > 0 && nr > p->max_rows) nr = p->max_rows;
    const int nth = slm_pool_size(pool);
    const size_t wn = (size_t)d.out * (size_t)d.in;
    float *w = malloc(wn * sizeof *w), *dw = malloc(wn * sizeof *dw);
    float *s = malloc((size_t)d.in * sizeof *s), *y = malloc((size_t)nr * (size_t)d.out * sizeof *y);
    float *fbuf = malloc((size_t)nth * 2 * (size_t)d.in * sizeof *fbuf);
    void *qbuf = malloc((size_t)nth * row_bytes);
    ch->scale = malloc((size_t)d.in * sizeof *ch->scale);
    slm_status st = SLM_OK;
    if (!w || !dw || !s || !y || !fbuf || !qbuf || !ch->scale) {
        st = slm_error(SLM_ERR_NOMEM, "awq: out of memory");
        goto out;
    }
    int64_t r0 = 0;
    for (int i = 0; i < d.n_mats; i++)
        for (int64_t rr = 0; rr < d.mats[i]->rows; rr++, r0++) slm_mat_row(d.mats[i], rr, w + (size_t)r0 * d.in);
    /* the exact output's size, for relative errors */
    const slm_mat wm = {.data = w, .type = SLM_DT_F32, .rows = d.out, .cols = d.in, .row_bytes = (size_t)d.in * 4};
    slm_matmul(mm, &wm, x, nr, y);
    ch->ref = sum_sq(y, (size_t)nr * (size_t)d.out) / nr;

    const int tie = g == SLM_AWQ_O ? r->group_heads : 1;
    qjob j = {.w = w, .dw = dw, .s = s, .out = d.out, .in = d.in, .tr = tr, .qbuf = qbuf, .fbuf = fbuf,
              .row_bytes = row_bytes};
    const slm_mat dm = {.data = dw, .type = SLM_DT_F32, .rows = d.out, .cols = d.in, .row_bytes = (size_t)d.in * 4};
    double best = INFINITY;
    for (int a = 0; a < p->grid; a++) {
        const float alpha = (float)a / (float)p->grid;
        make_scales(sx, d.in, alpha, tie, r->head_dim, r->kv_dim, s);
        slm_pool_run(pool, quant_rows, &j);
        slm_matmul(mm, &dm, x, nr, y);
        const double e = sum_sq(y, (size_t)nr * (size_t)d.out) / nr;
        if (a == 0) ch->err_rtn = e;
        if (e < best) {
            best = e;
            ch->alpha = alpha;
            memcpy(ch->scale, s, (size_t)d.in * sizeof *s);
        }
    }
    ch->err = best;
out:
    free(w);
    free(dw);
    free(s);
    free(y);
    free(fbuf);
    free(qbuf);
    if (st) {
        free(ch->scale);
        ch->scale = NULL;
    }
    return st;
}

slm_status slm_awq_search(const slm_model *m, const slm_calib *cal, slm_pool *pool, const slm_awq_params *p,
                          slm_awq_result *r) {
    const slm_config *cfg = &m->cfg;
    memset(r, 0, sizeof *r);
    if (p->grid < 1 || p->grid > 1000) return slm_error(SLM_ERR_ARG, "awq: grid %d out of range [1, 1000]", p->grid);
    if (slm_calib_n_layers(cal) != cfg->n_layers)
        return slm_error(SLM_ERR_ARG, "awq: calibration has %d layers, the model %d", slm_calib_n_layers(cal),
                         cfg->n_layers);
    r->n_layers = cfg->n_layers;
    r->head_dim = cfg->head_dim;
    r->q_dim = cfg->n_heads * cfg->head_dim;
    r->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    r->group_heads = cfg->n_heads / cfg->n_kv_heads;
    r->g = calloc((size_t)cfg->n_layers * SLM_AWQ_N_GROUPS, sizeof *r->g);
    if (!r->g) return slm_error(SLM_ERR_NOMEM, "awq: out of memory");
    int max_rows = 0, max_in = cfg->ffn_dim > cfg->dim ? cfg->ffn_dim : cfg->dim;
    if (r->q_dim > max_in) max_in = r->q_dim;
    for (int g = 0; g < SLM_AWQ_N_GROUPS; g++) {
        int nr;
        if (slm_calib_rows(cal, 0, group_point[g], &nr) && nr > max_rows) max_rows = nr;
    }
    if (p->max_rows > 0 && max_rows > p->max_rows) max_rows = p->max_rows;
    slm_mm mm;
    slm_status st = slm_mm_init(&mm, pool, slm_kernels_get(slm_isa_detect()), max_rows > 0 ? max_rows : 1, max_in);
    if (st) {
        slm_awq_result_free(r);
        return st;
    }
    for (int l = 0; l < cfg->n_layers && !st; l++) {
        for (int g = 0; g < SLM_AWQ_N_GROUPS && !st; g++)
            st = search_group(m, cal, pool, &mm, p, l, g, r, &r->g[l * SLM_AWQ_N_GROUPS + g]);
        /* one layer's weights at a time: the mapped (read-only, reloadable) pages are dropped */
        if (m->gguf && m->gguf->map) (void)madvise(m->gguf->map, m->gguf->size, MADV_DONTNEED);
        if (!st && p->progress) {
            const slm_awq_choice *c = &r->g[l * SLM_AWQ_N_GROUPS];
            fprintf(stderr, "awq: layer %2d/%d  alpha qkv %.2f gate/up %.2f o %.2f down %.2f  error vs plain %.0f%% %.0f%% %.0f%% %.0f%%\n",
                    l + 1, cfg->n_layers, c[0].alpha, c[1].alpha, c[2].alpha, c[3].alpha,
                    100.0 * c[0].err / (c[0].err_rtn > 0 ? c[0].err_rtn : 1), 100.0 * c[1].err / (c[1].err_rtn > 0 ? c[1].err_rtn : 1),
                    100.0 * c[2].err / (c[2].err_rtn > 0 ? c[2].err_rtn : 1), 100.0 * c[3].err / (c[3].err_rtn > 0 ? c[3].err_rtn : 1));
        }
    }
    slm_mm_free(&mm);
    if (st) slm_awq_result_free(r);
    return st;
}

void slm_awq_result_free(slm_awq_result *r) {
    if (!r || !r->g) return;
    for (int i = 0; i < r->n_layers * SLM_AWQ_N_GROUPS; i++) free(r->g[i].scale);
    free(r->g);
    r->g = NULL;
}

/* ---- folding ------------------------------------------------------------------------------ */

typedef enum {
    T_NONE,
    T_ATTN_NORM,
    T_Q,
    T_K,
    T_V,
    T_V_BIAS,
    T_O,
    T_FFN_NORM,
    T_GATE,
    T_UP,
    T_DOWN
} tensor_kind;

static tensor_kind kind_of(const slm_awq_result *r, const char *name, int *layer) {
    static const struct {
        const char *suffix;
        tensor_kind k;
    } names[] = {{"attn_norm.weight", T_ATTN_NORM}, {"attn_q.weight", T_Q},       {"attn_k.weight", T_K},
                 {"attn_v.weight", T_V},            {"attn_v.bias", T_V_BIAS},    {"attn_output.weight", T_O},
                 {"ffn_norm.weight", T_FFN_NORM},   {"ffn_gate.weight", T_GATE}, {"ffn_up.weight", T_UP},
                 {"ffn_down.weight", T_DOWN}};
    if (strncmp(name, "blk.", 4)) return T_NONE;
    char *end;
    const long l = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || l < 0 || l >= r->n_layers) return T_NONE;
    *layer = (int)l;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(end + 1, names[i].suffix)) return names[i].k;
    return T_NONE;
}

static const float *scale_of(const slm_awq_result *r, int l, int g) { return r->g[l * SLM_AWQ_N_GROUPS + g].scale; }

bool slm_awq_affects(const slm_awq_result *r, const char *name) {
    int l;
    return r && r->g && kind_of(r, name, &l) != T_NONE;
}

/* The O scale of v channel kc (the same for every head sharing the KV head). */
static float v_scale(const slm_awq_result *r, const float *so, int64_t kc) {
    const int64_t kvh = kc / r->head_dim, i = kc % r->head_dim;
    return so[(kvh * r->group_heads) * r->head_dim + i];
}

void slm_awq_fold_row(const slm_awq_result *r, const char *name, int64_t row, float *x, int64_t n) {
    int l;
    const tensor_kind k = kind_of(r, name, &l);
    const float *sq = scale_of(r, l, SLM_AWQ_QKV), *sg = scale_of(r, l, SLM_AWQ_GATE_UP);
    const float *so = scale_of(r, l, SLM_AWQ_O), *sd = scale_of(r, l, SLM_AWQ_DOWN);
    switch (k) {
    case T_ATTN_NORM:
        if (sq) for (int64_t j = 0; j < n; j++) x[j] /= sq[j];
        break;
    case T_FFN_NORM:
        if (sg) for (int64_t j = 0; j < n; j++) x[j] /= sg[j];
        break;
    case T_Q:
    case T_K:
    case T_V:
        if (sq) for (int64_t j = 0; j < n; j++) x[j] *= sq[j];
        if (k == T_V && so) {
            const float inv = 1.0f / v_scale(r, so, row);
            for (int64_t j = 0; j < n; j++) x[j] *= inv;
        }
        break;
    case T_V_BIAS:
        if (so) for (int64_t j = 0; j < n; j++) x[j] /= v_scale(r, so, j);
        break;
    case T_O:
        if (so) for (int64_t j = 0; j < n; j++) x[j] *= so[j];
        break;
    case T_GATE:
    case T_UP:
        if (sg) for (int64_t j = 0; j < n; j++) x[j] *= sg[j];
        if (k == T_UP && sd) {
            const float inv = 1.0f / sd[row];
            for (int64_t j = 0; j < n; j++) x[j] *= inv;
        }
        break;
    case T_DOWN:
        if (sd) for (int64_t j = 0; j < n; j++) x[j] *= sd[j];
        break;
    default:
        break;
    }
}

const float *slm_awq_importance(const slm_awq_result *r, const slm_calib *cal, const char *name, float *buf,
                                int64_t n) {
    int l, g;
    switch (kind_of(r, name, &l)) {
    case T_Q:
    case T_K:
    case T_V: g = SLM_AWQ_QKV; break;
    case T_GATE:
    case T_UP: g = SLM_AWQ_GATE_UP; break;
    case T_O: g = SLM_AWQ_O; break;
    case T_DOWN: g = SLM_AWQ_DOWN; break;
    default: return NULL;
    }
    const int point = group_point[g];
    const float *ms = slm_calib_mean_sq(cal, l, point), *s = scale_of(r, l, g);
    if (!ms || slm_calib_dim(cal, point) != n) return NULL;
    for (int64_t j = 0; j < n; j++) {
        const float sj = s ? s[j] : 1.0f;
        buf[j] = ms[j] / (sj * sj) + 1e-12f;
    }
    return buf;
}
