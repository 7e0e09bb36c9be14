/* tmodel.c - the trainable Llama-family model (see tmodel.h).
 *
 * Three allocations: parameters [n_params], gradients [n_params] (both laid out by the
 * parameter table) and one arena of activations and backward scratch for max_B x max_T
 * tokens. The forward and backward are flat lists of tops.h calls; row-wise ops are split
 * over token rows (or sequences for RoPE) by the pool, reductions over rows (norm weight
 * gradients) over columns, so results do not depend on the thread count. */
#include "tmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../core/rng.h"
#include "../model/model.h"

/* Tensors of one layer, in table order; the adapters of linear j are P_LA + 2j (A), + 1 (B). */
enum {
    P_ATTN_NORM, P_WQ, P_BQ, P_WK, P_BK, P_WV, P_BV, P_WO, P_FFN_NORM, P_GATE, P_UP, P_DOWN,
    P_LA, P_LAYER_N = P_LA + 14
};
/* The seven adapted linears, in slm_tlayer.lora_a order. */
enum { L_Q, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN, L_N };
static const int lin_weight[L_N] = {P_WQ, P_WK, P_WV, P_WO, P_GATE, P_UP, P_DOWN};
static const int lin_bias[L_N] = {P_BQ, P_BK, P_BV, -1, -1, -1, -1};
/* names: slm_lin_name (model.h), whose order the L_* values follow */

struct slm_tmodel {
    slm_tcfg cfg;
    int max_B, max_T;
    slm_pool *pool;
    slm_tparam *params; /* [n_tab] */
    int n_tab;
    size_t n_params;
    treal *w, *g;          /* [n_params] */
    int (*pidx)[P_LAYER_N]; /* [n_layers][P_LAYER_N] table index, -1 where absent */
    int p_embd, p_out_norm, p_output; /* p_output == p_embd when tied */
    slm_tlayer *layers;     /* [n_layers] views into w */
    float lora_scale;

    /* last forward */
    int B, T;
    int32_t *tokens; /* [N] */

    /* activations kept for the backward (N = max_B * max_T) */
    treal *res;        /* [L+1][N][D] residual stream: input of layer l, res[L] the final */
    treal *mid;        /* [L][N][D] after the attention residual */
    treal *xn1, *xn2;  /* [L][N][D] attention / ffn norm outputs */
    treal *rstd1, *rstd2; /* [L][N] */
    treal *q;          /* [L][N][qd] after bias and RoPE */
    treal *k, *v;      /* [L][N][kvd] */
    treal *att;        /* [L][B][H][T][T] softmax probabilities */
    treal *atty;       /* [L][N][qd] attention output */
    treal *gate, *up;  /* [L][N][ffn] */
    treal *ltmp;       /* [L][7][N][R] LoRA in A^T */
    treal *xnf, *rstdf; /* [N][D], [N] final norm */

    /* scratch */
    treal *tmp_d;      /* [N][D] */
    treal *hb;         /* [N][ffn] silu(gate) * up */
    treal *dres, *dxn; /* [N][D] */
    treal *dq, *datty; /* [N][qd] */
    treal *dk, *dv;    /* [N][kvd] */
    treal *datt;       /* [B][H][T][T] */
    treal *dgate, *dup, *dh; /* [N][ffn] */
    treal *dtmp;       /* [N][R] */
    treal *dk_acc, *dv_acc; /* [L][N][kvd] KV sharing: key / value gradients of a source layer from the layers reading it */
    treal *arena;
};

/* ---- row-parallel helpers ------------------------------------------------------------------ */

enum { R_NORM_FWD, R_NORM_BWD_IN, R_NORM_BWD_W, R_SWIGLU_FWD, R_SWIGLU_BWD, R_ROPE_FWD, R_ROPE_BWD };

typedef struct {
    int op;
    treal *out, *out2, *rstd;
    const treal *in, *in2, *in3, *w, *rs;
    int N, D, T, heads;
    float eps;
    const slm_config *c;
} rows_job;

static void rows_task(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    long lo, hi;
    const size_t D = (size_t)j->D;
    switch (j->op) {
    case R_NORM_FWD:
        slm_pool_split(j->N, ith, nth, 1, &lo, &hi);
        if (hi > lo)
            slm_t_rmsnorm_forward(j->out + lo * D, j->rstd + lo, j->in + lo * D, j->w, (int)(hi - lo), j->D, j->eps);
        break;
    case R_NORM_BWD_IN: /* out = din, in = dout, in2 = x */
        slm_pool_split(j->N, ith, nth, 1, &lo, &hi);
        if (hi > lo)
            slm_t_rmsnorm_backward(j->out + lo * D, NULL, j->in + lo * D, j->in2 + lo * D, j->w, j->rs + lo,
                                   (int)(hi - lo), j->D);
        break;
    case R_NORM_BWD_W: /* dw[i] += sum_n dout[n][i] x[n][i] rstd[n], columns split */
        slm_pool_split(j->D, ith, nth, 16, &lo, &hi);
        for (long i = lo; i < hi; i++) {
            double s = 0;
            for (int n = 0; n < j->N; n++) s += (double)j->in[n * D + i] * j->in2[n * D + i] * j->rs[n];
            j->out[i] += (treal)s;
        }
        break;
    case R_SWIGLU_FWD: /* out = silu(in) * in2 over N*D values */
        slm_pool_split((long)j->N * j->D, ith, nth, 16, &lo, &hi);
        if (hi > lo) slm_t_swiglu_forward(j->out + lo, j->in + lo, j->in2 + lo, hi - lo);
        break;
    case R_SWIGLU_BWD: /* out = dgate, out2 = dup, in = dout, in2 = gate, in3 = up */
        slm_pool_split((long)j->N * j->D, ith, nth, 16, &lo, &hi);
        if (hi > lo) slm_t_swiglu_backward(j->out + lo, j->out2 + lo, j->in + lo, j->in2 + lo, j->in3 + lo, hi - lo);
        break;
    case R_ROPE_FWD:
    case R_ROPE_BWD: /* sequences split; D is the row width */
        slm_pool_split(j->N / j->T, ith, nth, 1, &lo, &hi);
        for (long b = lo; b < hi; b++) {
            treal *x = j->out + (size_t)b * j->T * D;
            if (j->op == R_ROPE_FWD) slm_t_rope_forward(x, j->T, j->T, j->heads, j->c);
            else slm_t_rope_backward(x, j->T, j->T, j->heads, j->c);
        }
        break;
    }
}

static void rows_run(slm_tmodel *m, rows_job j) { slm_pool_run(m->pool, rows_task, &j); }

static void norm_fwd(slm_tmodel *m, treal *out, treal *rstd, const treal *in, const treal *w, int N) {
    rows_run(m, (rows_job){.op = R_NORM_FWD, .out = out, .rstd = rstd, .in = in, .w = w, .N = N,
                           .D = m->cfg.cfg.dim, .eps = m->cfg.cfg.norm_eps});
}

static void norm_bwd(slm_tmodel *m, treal *din, treal *dw, const treal *dout, const treal *x, const treal *w,
                     const treal *rstd, int N) {
    const int D = m->cfg.cfg.dim;
    rows_run(m, (rows_job){.op = R_NORM_BWD_IN, .out = din, .in = dout, .in2 = x, .w = w, .rs = rstd, .N = N, .D = D});
    if (dw) rows_run(m, (rows_job){.op = R_NORM_BWD_W, .out = dw, .in = dout, .in2 = x, .rs = rstd, .N = N, .D = D});
}

static void rope(slm_tmodel *m, bool fwd, treal *x, int N, int T, int heads) {
    rows_run(m, (rows_job){.op = fwd ? R_ROPE_FWD : R_ROPE_BWD, .out = x, .N = N, .T = T, .heads = heads,
                           .D = heads * m->cfg.cfg.head_dim, .c = &m->cfg.cfg});
}

/* ---- parameter table ----------------------------------------------------------------------- */

static int add_param(slm_tmodel *m, const char *name, int64_t rows, int64_t cols, slm_tparam_kind kind) {
    slm_tparam *p = &m->params[m->n_tab];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->rows = rows;
    p->cols = cols;
    p->n = (size_t)rows * (size_t)cols;
    p->offset = m->n_params;
    p->kind = kind;
    p->trainable = true;
    m->n_params += p->n;
    return m->n_tab++;
}

static void build_table(slm_tmodel *m) {
    const slm_config *c = &m->cfg.cfg;
    const int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t F = c->ffn_dim, R = m->cfg.lora_rank;
    char nm[64];
    m->p_embd = add_param(m, "token_embd.weight", c->vocab_size, D, SLM_TP_MATRIX);
    for (int l = 0; l < c->n_layers; l++) {
        int *ix = m->pidx[l];
        for (int i = 0; i < P_LAYER_N; i++) ix[i] = -1;
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        /* a layer sharing another's matrices points at that layer's table entries */
        const int src = m->cfg.shared ? m->cfg.share_map[l] : l;
        const bool own = src == l;
        /* keys and values: a layer reading another's has none; a weight source keeps wk / wv
         * while any layer using its matrices computes its own keys */
        bool kv_own = !m->cfg.kv_shared || m->cfg.kv_map[l] == l, kv_store = kv_own;
        for (int u = l + 1; own && m->cfg.shared && m->cfg.kv_shared && u < c->n_layers; u++)
            if (m->cfg.share_map[u] == l && m->cfg.kv_map[u] == u) kv_store = true;
        ix[P_ATTN_NORM] = add_param(m, NM("attn_norm.weight"), 1, D, SLM_TP_VECTOR);
        ix[P_WQ] = own ? add_param(m, NM("attn_q.weight"), qd, D, SLM_TP_MATRIX) : m->pidx[src][P_WQ];
        if (m->cfg.qkv_bias) ix[P_BQ] = add_param(m, NM("attn_q.bias"), 1, qd, SLM_TP_VECTOR);
        ix[P_WK] = own ? (kv_store ? add_param(m, NM("attn_k.weight"), kvd, D, SLM_TP_MATRIX) : -1)
                       : kv_own ? m->pidx[src][P_WK] : -1;
        if (m->cfg.qkv_bias && kv_own) ix[P_BK] = add_param(m, NM("attn_k.bias"), 1, kvd, SLM_TP_VECTOR);
        ix[P_WV] = own ? (kv_store ? add_param(m, NM("attn_v.weight"), kvd, D, SLM_TP_MATRIX) : -1)
                       : kv_own ? m->pidx[src][P_WV] : -1;
        if (m->cfg.qkv_bias && kv_own) ix[P_BV] = add_param(m, NM("attn_v.bias"), 1, kvd, SLM_TP_VECTOR);
        ix[P_WO] = own ? add_param(m, NM("attn_output.weight"), D, qd, SLM_TP_MATRIX) : m->pidx[src][P_WO];
        ix[P_FFN_NORM] = add_param(m, NM("ffn_norm.weight"), 1, D, SLM_TP_VECTOR);
        ix[P_GATE] = own ? add_param(m, NM("ffn_gate.weight"), F, D, SLM_TP_MATRIX) : m->pidx[src][P_GATE];
        ix[P_UP] = own ? add_param(m, NM("ffn_up.weight"), F, D, SLM_TP_MATRIX) : m->pidx[src][P_UP];
        ix[P_DOWN] = own ? add_param(m, NM("ffn_down.weight"), D, F, SLM_TP_MATRIX) : m->pidx[src][P_DOWN];
#undef NM
        const bool delta = m->cfg.deltas;
        if (R > 0)
            for (int j = 0; j < L_N; j++) {
                if (!kv_own && (j == L_K || j == L_V)) continue; /* no keys of its own */
                const slm_tparam *w = &m->params[ix[lin_weight[j]]];
                snprintf(nm, sizeof nm, "blk.%d.%s.%s", l, slm_lin_name(j), delta ? "delta_a" : "lora_a");
                ix[P_LA + 2 * j] = add_param(m, nm, R, w->cols, delta ? SLM_TP_DELTA : SLM_TP_LORA);
                snprintf(nm, sizeof nm, "blk.%d.%s.%s", l, slm_lin_name(j), delta ? "delta_b" : "lora_b");
                ix[P_LA + 2 * j + 1] = add_param(m, nm, w->rows, R, delta ? SLM_TP_DELTA : SLM_TP_LORA);
            }
    }
    m->p_out_norm = add_param(m, "output_norm.weight", 1, D, SLM_TP_VECTOR);
    m->p_output = m->cfg.tied ? m->p_embd : add_param(m, "output.weight", c->vocab_size, D, SLM_TP_MATRIX);
}

static treal *wp(const slm_tmodel *m, int idx) { return idx < 0 ? NULL : m->w + m->params[idx].offset; }
/* The gradient of a tensor, NULL when absent or frozen. */
static treal *gp(const slm_tmodel *m, int idx) {
    return idx < 0 || !m->params[idx].trainable ? NULL : m->g + m->params[idx].offset;
}

/* ---- create / free -------------------------------------------------------------------------- */

static slm_status check_cfg(const slm_tcfg *t, int max_B, int max_T) {
    const slm_config *c = &t->cfg;
    if (c->n_layers < 1 || c->dim < 1 || c->ffn_dim < 1 || c->n_heads < 1 || c->n_kv_heads < 1 || c->head_dim < 1 ||
        c->vocab_size < 1)
        return slm_error(SLM_ERR_ARG, "tmodel: sizes must be positive");
    if (c->n_heads % c->n_kv_heads)
        return slm_error(SLM_ERR_ARG, "tmodel: %d heads do not split into %d KV groups", c->n_heads, c->n_kv_heads);
    if (c->rope_dim < 0 || c->rope_dim > c->head_dim || c->rope_dim % 2)
        return slm_error(SLM_ERR_ARG, "tmodel: rope dimension %d invalid for head dimension %d", c->rope_dim,
                         c->head_dim);
    if (max_B < 1 || max_T < 1) return slm_error(SLM_ERR_ARG, "tmodel: batch %d x %d", max_B, max_T);
    if (t->shared) {
        if (c->n_layers > SLM_TMAX_SHARED_LAYERS)
            return slm_error(SLM_ERR_ARG, "tmodel: sharing supports up to %d layers", SLM_TMAX_SHARED_LAYERS);
        for (int l = 0; l < c->n_layers; l++) {
            const int s = t->share_map[l];
            if (s < 0 || s > l || t->share_map[s] != s)
                return slm_error(SLM_ERR_ARG, "tmodel: layer %d shares layer %d's matrices (must be an earlier layer that keeps its own)", l, s);
        }
    }
    if (t->kv_shared) {
        if (c->n_layers > SLM_TMAX_SHARED_LAYERS)
            return slm_error(SLM_ERR_ARG, "tmodel: KV sharing supports up to %d layers", SLM_TMAX_SHARED_LAYERS);
        for (int l = 0; l < c->n_layers; l++) {
            const int s = t->kv_map[l];
            if (s < 0 || s > l || t->kv_map[s] != s)
                return slm_error(SLM_ERR_ARG, "tmodel: layer %d reads layer %d's keys (must be an earlier layer that computes its own)", l, s);
        }
    }
    if (t->shared && t->lora_rank > 0 && !t->deltas)
        return slm_error(SLM_ERR_ARG, "tmodel: adapters on a shared model are its per-layer deltas");
    if (t->deltas && (!t->shared || t->lora_rank < 1))
        return slm_error(SLM_ERR_ARG, "tmodel: per-layer deltas need a shared model and a rank");
    if (t->lora_rank < 0 || t->lora_rank > 4096) return slm_error(SLM_ERR_ARG, "tmodel: LoRA rank %d", t->lora_rank);
    const double big = (double)max_B * max_T * (c->n_heads > c->ffn_dim ? c->n_heads : c->ffn_dim) * c->n_layers;
    if ((double)max_B * max_T > 1e8 || (double)max_B * c->n_heads * max_T * max_T * c->n_layers > 4e10 || big > 4e10)
        return slm_error(SLM_ERR_ARG, "tmodel: batch %d x %d is too large", max_B, max_T);
    return SLM_OK;
}

typedef struct {
    treal **p;
    size_t n;
} carve;

slm_status slm_tmodel_create(const slm_tcfg *cfg, int max_B, int max_T, slm_pool *pool, slm_tmodel **out) {
    *out = NULL;
    slm_status s = check_cfg(cfg, max_B, max_T);
    if (s) return s;
    slm_tmodel *m = calloc(1, sizeof *m);
    if (!m) return slm_error(SLM_ERR_NOMEM, "tmodel: out of memory");
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_T = max_T;
    m->pool = pool;
    const slm_config *c = &m->cfg.cfg;
    const int L = c->n_layers, R = cfg->lora_rank;
    m->lora_scale = cfg->deltas ? 1.0f : R > 0 ? (cfg->lora_alpha > 0 ? cfg->lora_alpha : (float)R) / (float)R : 0.0f;
    const int n_tab = 1 + L * (P_LAYER_N) + 2;
    m->params = calloc((size_t)n_tab, sizeof *m->params);
    m->pidx = calloc((size_t)L, sizeof *m->pidx);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    const size_t N = (size_t)max_B * max_T;
    m->tokens = malloc(N * sizeof *m->tokens);
    if (!m->params || !m->pidx || !m->layers || !m->tokens) goto nomem;
    build_table(m);
    m->w = calloc(m->n_params, sizeof(treal));
    m->g = calloc(m->n_params, sizeof(treal));
    if (!m->w || !m->g) goto nomem;
    for (int l = 0; l < L; l++) {
        const int *ix = m->pidx[l];
        slm_tlayer *t = &m->layers[l];
        *t = (slm_tlayer){wp(m, ix[P_ATTN_NORM]), wp(m, ix[P_WQ]), wp(m, ix[P_WK]), wp(m, ix[P_WV]),
                          wp(m, ix[P_BQ]), wp(m, ix[P_BK]), wp(m, ix[P_BV]), wp(m, ix[P_WO]),
                          wp(m, ix[P_FFN_NORM]), wp(m, ix[P_GATE]), wp(m, ix[P_UP]), wp(m, ix[P_DOWN]),
                          {0}, {0}};
        for (int j = 0; j < L_N && R > 0; j++) {
            t->lora_a[j] = wp(m, ix[P_LA + 2 * j]);
            t->lora_b[j] = wp(m, ix[P_LA + 2 * j + 1]);
        }
    }
    slm_tmodel_set_trainable(m, R > 0 && !cfg->deltas, false);

    const size_t D = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    const size_t F = (size_t)c->ffn_dim, Ls = (size_t)L, att = (size_t)max_B * c->n_heads * max_T * max_T;
    const carve parts[] = {
        {&m->res, (Ls + 1) * N * D}, {&m->mid, Ls * N * D},   {&m->xn1, Ls * N * D},   {&m->xn2, Ls * N * D},
        {&m->rstd1, Ls * N},         {&m->rstd2, Ls * N},     {&m->q, Ls * N * qd},    {&m->k, Ls * N * kvd},
        {&m->v, Ls * N * kvd},       {&m->att, Ls * att},     {&m->atty, Ls * N * qd}, {&m->gate, Ls * N * F},
        {&m->up, Ls * N * F},        {&m->ltmp, Ls * L_N * N * (size_t)R}, {&m->xnf, N * D}, {&m->rstdf, N},
        {&m->tmp_d, N * D},          {&m->hb, N * F},         {&m->dres, N * D},       {&m->dxn, N * D},
        {&m->dq, N * qd},            {&m->datty, N * qd},     {&m->dk, N * kvd},       {&m->dv, N * kvd},
        {&m->datt, att},             {&m->dgate, N * F},      {&m->dup, N * F},        {&m->dh, N * F},
        {&m->dtmp, N * (size_t)(R > 0 ? R : 1)},
        {&m->dk_acc, cfg->kv_shared ? Ls * N * kvd : 0}, {&m->dv_acc, cfg->kv_shared ? Ls * N * kvd : 0},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) total += parts[i].n;
    m->arena = calloc(total, sizeof(treal));
    if (!m->arena) {
        slm_tmodel_free(m);
        return slm_error(SLM_ERR_NOMEM, "tmodel: out of memory for %zu activation values", total);
    }
    total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        *parts[i].p = m->arena + total;
        total += parts[i].n;
    }
    *out = m;
    return SLM_OK;
nomem:
    slm_tmodel_free(m);
    return slm_error(SLM_ERR_NOMEM, "tmodel: out of memory");
}

void slm_tmodel_free(slm_tmodel *m) {
    if (!m) return;
    free(m->params);
    free(m->pidx);
    free(m->layers);
    free(m->tokens);
    free(m->w);
    free(m->g);
    free(m->arena);
    free(m);
}

/* ---- accessors ------------------------------------------------------------------------------ */

const slm_tcfg *slm_tmodel_cfg(const slm_tmodel *m) { return &m->cfg; }
const slm_tparam *slm_tmodel_params(const slm_tmodel *m, int *n) {
    *n = m->n_tab;
    return m->params;
}
size_t slm_tmodel_n_params(const slm_tmodel *m) { return m->n_params; }
treal *slm_tmodel_weights(slm_tmodel *m) { return m->w; }
treal *slm_tmodel_grads(slm_tmodel *m) { return m->g; }
const slm_tlayer *slm_tmodel_layer(const slm_tmodel *m, int l) { return &m->layers[l]; }
treal *slm_tmodel_tok_embd(slm_tmodel *m) { return wp(m, m->p_embd); }
treal *slm_tmodel_out_norm(slm_tmodel *m) { return wp(m, m->p_out_norm); }
treal *slm_tmodel_output(slm_tmodel *m) { return wp(m, m->p_output); }

const slm_tparam *slm_tmodel_find(const slm_tmodel *m, const char *name) {
    for (int i = 0; i < m->n_tab; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

void slm_tmodel_set_trainable(slm_tmodel *m, bool lora_only, bool freeze_embd) {
    const bool lora = lora_only && m->cfg.lora_rank > 0;
    for (int i = 0; i < m->n_tab; i++) m->params[i].trainable = lora ? m->params[i].kind == SLM_TP_LORA : true;
    if (freeze_embd) {
        m->params[m->p_embd].trainable = false;
        m->params[m->p_output].trainable = false;
    }
}

void slm_tmodel_zero_grad(slm_tmodel *m) { memset(m->g, 0, m->n_params * sizeof(treal)); }

/* ---- loading -------------------------------------------------------------------------------- */

/* Dequantize every row of mat into dst [rows][cols]; row is scratch of cols floats. */
static void load_mat(treal *dst, const slm_mat *mat, float *row) {
    for (int64_t r = 0; r < mat->rows; r++) {
        slm_mat_row(mat, r, row);
        treal *d = dst + (size_t)r * mat->cols;
        for (int64_t i = 0; i < mat->cols; i++) d[i] = row[i];
    }
}

/* Fold a stored low-rank delta (W + B A, parameter-shared models) into dst [rows][cols]. */
static slm_status fold_delta(treal *dst, const slm_lowrank *d, int64_t rows, int64_t cols) {
    if (d->rank <= 0) return SLM_OK;
    const int R = d->rank;
    float *a = malloc((size_t)R * cols * sizeof *a), *b = malloc((size_t)rows * R * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return slm_error(SLM_ERR_NOMEM, "tmodel load: out of memory for a low-rank delta");
    }
    for (int r = 0; r < R; r++) slm_mat_row(&d->a, r, a + (size_t)r * cols);
    for (int64_t o = 0; o < rows; o++) slm_mat_row(&d->b, o, b + (size_t)o * R);
    for (int64_t o = 0; o < rows; o++)
        for (int64_t i = 0; i < cols; i++) {
            double s = 0;
            for (int r = 0; r < R; r++) s += (double)b[o * R + r] * a[(size_t)r * cols + i];
            dst[o * cols + i] += (treal)s;
        }
    free(a);
    free(b);
    return SLM_OK;
}

static void load_vec(treal *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src ? src[i] : 0;
}

void slm_tmodel_cfg_from(const struct slm_model *src, int n_layers, int lora_rank, float lora_alpha, slm_tcfg *out) {
    memset(out, 0, sizeof *out);
    out->cfg = src->cfg;
    out->cfg.n_layers = n_layers;
    out->tied = src->tied_output != 0;
    out->qkv_bias = src->cfg.n_layers > 0 && src->layers[0].bq != NULL;
    out->lora_rank = lora_rank;
    out->lora_alpha = lora_alpha;
    const bool sharing = src->n_shared > 0 || src->max_delta_rank > 0;
    const bool kv = src->n_kv_layers != src->cfg.n_layers;
    if (kv && n_layers == src->cfg.n_layers && n_layers <= SLM_TMAX_SHARED_LAYERS) {
        out->kv_shared = true;
        for (int l = 0; l < n_layers; l++) out->kv_map[l] = src->layers[l].kv_src;
    }
    if (sharing && n_layers == src->cfg.n_layers && lora_rank == 0 && n_layers <= SLM_TMAX_SHARED_LAYERS) {
        out->shared = true;
        for (int l = 0; l < n_layers; l++) out->share_map[l] = src->layers[l].share_src;
        if (src->max_delta_rank > 0) {
            out->deltas = true;
            out->lora_rank = src->max_delta_rank;
            out->lora_alpha = 0;
        }
    }
}

slm_status slm_tmodel_load(slm_tmodel *m, const struct slm_model *src, const int *layer_map, uint64_t seed) {
    const slm_config *c = &m->cfg.cfg, *sc = &src->cfg;
    if (c->dim != sc->dim || c->ffn_dim != sc->ffn_dim || c->n_heads != sc->n_heads ||
        c->n_kv_heads != sc->n_kv_heads || c->head_dim != sc->head_dim || c->vocab_size != sc->vocab_size)
        return slm_error(SLM_ERR_ARG, "tmodel load: source shapes differ (dim %d/%d, ffn %d/%d, heads %d/%d, kv %d/%d, "
                         "head dim %d/%d, vocab %d/%d)", c->dim, sc->dim, c->ffn_dim, sc->ffn_dim, c->n_heads,
                         sc->n_heads, c->n_kv_heads, sc->n_kv_heads, c->head_dim, sc->head_dim, c->vocab_size,
                         sc->vocab_size);
    if (m->cfg.shared && layer_map)
        return slm_error(SLM_ERR_ARG, "tmodel load: a shared model loads whole (no layer map)");
    if (!layer_map && sc->n_layers != c->n_layers)
        return slm_error(SLM_ERR_ARG, "tmodel load: %d source layers for %d layers and no layer map", sc->n_layers,
                         c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        const int s = layer_map ? layer_map[l] : l;
        if (s < 0 || s >= sc->n_layers)
            return slm_error(SLM_ERR_ARG, "tmodel load: layer map entry %d = %d out of range [0, %d)", l, s,
                             sc->n_layers);
        const bool reads = src->layers[s].kv_src != s;
        if (reads != (m->cfg.kv_shared && m->cfg.kv_map[l] != l))
            return slm_error(SLM_ERR_ARG, "tmodel load: source layer %d %s another layer's keys and values, layer %d %s",
                             s, reads ? "reads" : "does not read", l, reads ? "does not" : "does");
        if (!m->cfg.qkv_bias && src->layers[s].bq)
            return slm_error(SLM_ERR_ARG, "tmodel load: source layer %d has q/k/v biases, the model has none", s);
    }
    if (m->cfg.tied && !src->tied_output)
        return slm_error(SLM_ERR_ARG, "tmodel load: the model ties its output head, the source does not");
    int64_t maxc = c->dim > c->ffn_dim ? c->dim : c->ffn_dim;
    if ((int64_t)c->n_heads * c->head_dim > maxc) maxc = (int64_t)c->n_heads * c->head_dim;
    float *row = malloc((size_t)maxc * sizeof *row);
    if (!row) return slm_error(SLM_ERR_NOMEM, "tmodel load: out of memory");

    load_mat(wp(m, m->p_embd), &src->tok_embd, row);
    for (int l = 0; l < c->n_layers; l++) {
        const slm_layer *S = &src->layers[layer_map ? layer_map[l] : l];
        const int *ix = m->pidx[l];
        const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
        load_vec(wp(m, ix[P_ATTN_NORM]), S->attn_norm, c->dim);
        /* a layer using another's matrices: they were loaded with that layer */
        const bool own = !m->cfg.shared || m->cfg.share_map[l] == l;
        if (own) load_mat(wp(m, ix[P_WQ]), &S->wq, row);
        /* keys / values: a weight source that reads another layer's keys has no wk / wv views of
         * its own, so they are loaded by the layer using them (the same table entry) */
        if (ix[P_WK] >= 0 && S->wk.data) load_mat(wp(m, ix[P_WK]), &S->wk, row);
        if (ix[P_WV] >= 0 && S->wv.data) load_mat(wp(m, ix[P_WV]), &S->wv, row);
        if (m->cfg.qkv_bias) {
            load_vec(wp(m, ix[P_BQ]), S->bq, qd);
            if (ix[P_BK] >= 0) load_vec(wp(m, ix[P_BK]), S->bk, kvd);
            if (ix[P_BV] >= 0) load_vec(wp(m, ix[P_BV]), S->bv, kvd);
        }
        if (own) load_mat(wp(m, ix[P_WO]), &S->wo, row);
        load_vec(wp(m, ix[P_FFN_NORM]), S->ffn_norm, c->dim);
        if (own) {
            load_mat(wp(m, ix[P_GATE]), &S->w_gate, row);
            load_mat(wp(m, ix[P_UP]), &S->w_up, row);
            load_mat(wp(m, ix[P_DOWN]), &S->w_down, row);
        }
        slm_status st = SLM_OK;
        if (m->cfg.shared && S->share_src != m->cfg.share_map[l])
            st = slm_error(SLM_ERR_ARG, "tmodel load: layer %d's sharing differs from the source's", l);
        for (int j = 0; j < L_N && !st && m->cfg.shared && !m->cfg.deltas; j++)
            if (S->delta[j].rank > 0) st = slm_error(SLM_ERR_ARG, "tmodel load: layer %d has deltas the model has no room for", l);
        for (int j = 0; j < L_N && !st && m->cfg.deltas; j++)
            if (S->delta[j].rank > m->cfg.lora_rank)
                st = slm_error(SLM_ERR_ARG, "tmodel load: layer %d has a delta of rank %d > %d", l, S->delta[j].rank, m->cfg.lora_rank);
        for (int j = 0; j < L_N && !st && !m->cfg.shared; j++) {
            if (ix[lin_weight[j]] < 0) continue;
            const slm_tparam *w = &m->params[ix[lin_weight[j]]];
            st = fold_delta(m->w + w->offset, &S->delta[j], w->rows, w->cols);
        }
        if (st) {
            free(row);
            return st;
        }
        for (int j = 0; j < L_N && m->cfg.lora_rank > 0; j++) {
            if (ix[P_LA + 2 * j] < 0) continue;
            const slm_tparam *a = &m->params[ix[P_LA + 2 * j]], *b = &m->params[ix[P_LA + 2 * j + 1]];
            if (m->cfg.deltas && S->delta[j].rank > 0) {
                /* the stored delta, in the first rank rows of A / columns of B */
                const int r = S->delta[j].rank, R = m->cfg.lora_rank;
                float *tmp = malloc((size_t)(a->cols > r ? a->cols : r) * sizeof *tmp);
                if (!tmp) {
                    free(row);
                    return slm_error(SLM_ERR_NOMEM, "tmodel load: out of memory");
                }
                memset(m->w + a->offset, 0, a->n * sizeof(treal));
                memset(m->w + b->offset, 0, b->n * sizeof(treal));
                for (int k = 0; k < r; k++) {
                    slm_mat_row(&S->delta[j].a, k, tmp);
                    for (int64_t i = 0; i < a->cols; i++) m->w[a->offset + (size_t)k * a->cols + i] = tmp[i];
                }
                for (int64_t o = 0; o < b->rows; o++) {
                    slm_mat_row(&S->delta[j].b, o, tmp);
                    for (int k = 0; k < r; k++) m->w[b->offset + (size_t)o * R + k] = tmp[k];
                }
                free(tmp);
                continue;
            }
            uint64_t st = seed ^ (0x5EEDull + (uint64_t)(l * L_N + j) * 0x100000001B3ull);
            const double sd = 1.0 / sqrt((double)a->cols);
            for (size_t i = 0; i < a->n; i++) m->w[a->offset + i] = (treal)(sd * slm_rng_normal(&st));
            memset(m->w + b->offset, 0, b->n * sizeof(treal));
        }
    }
    load_vec(wp(m, m->p_out_norm), src->out_norm, c->dim);
    if (!m->cfg.tied) load_mat(wp(m, m->p_output), &src->output, row);
    free(row);
    return SLM_OK;
}

/* ---- forward -------------------------------------------------------------------------------- */

#define LAYER_BUF(buf, l, per) ((buf) + (size_t)(l) * (per))

/* out = in W^T (+ bias) (+ LoRA) for linear j of layer l. */
static void lin_fwd(slm_tmodel *m, int l, int j, treal *out, const treal *in, int N) {
    const int *ix = m->pidx[l];
    const slm_tparam *w = &m->params[ix[lin_weight[j]]];
    const int I = (int)w->cols, O = (int)w->rows;
    slm_t_linear_forward(m->pool, out, in, m->w + w->offset, lin_bias[j] >= 0 ? wp(m, ix[lin_bias[j]]) : NULL, N,
                         I, O);
    const int R = m->cfg.lora_rank;
    if (R > 0) {
        treal *tmp = m->ltmp + ((size_t)l * L_N + j) * (size_t)m->max_B * m->max_T * R;
        slm_t_lora_forward(m->pool, out, tmp, in, wp(m, ix[P_LA + 2 * j]), wp(m, ix[P_LA + 2 * j + 1]),
                           m->lora_scale, N, I, O, R);
    }
}

static void lin_bwd(slm_tmodel *m, int l, int j, treal *din, const treal *dout, const treal *in, int N) {
    const int *ix = m->pidx[l];
    const int pw = ix[lin_weight[j]];
    const slm_tparam *w = &m->params[pw];
    const int I = (int)w->cols, O = (int)w->rows;
    slm_t_linear_backward(m->pool, din, gp(m, pw), lin_bias[j] >= 0 ? gp(m, ix[lin_bias[j]]) : NULL, dout, in,
                          m->w + w->offset, N, I, O);
    const int R = m->cfg.lora_rank;
    if (R > 0) {
        treal *da = gp(m, ix[P_LA + 2 * j]), *db = gp(m, ix[P_LA + 2 * j + 1]);
        if (!din && !da && !db) return;
        const treal *tmp = m->ltmp + ((size_t)l * L_N + j) * (size_t)m->max_B * m->max_T * R;
        slm_t_lora_backward(m->pool, din, da, db, m->dtmp, dout, in, tmp, wp(m, ix[P_LA + 2 * j]),
                            wp(m, ix[P_LA + 2 * j + 1]), m->lora_scale, N, I, O, R);
    }
}

static void add_into(treal *x, const treal *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void slm_tmodel_forward(slm_tmodel *m, const int32_t *tokens, int B, int T, treal *logits) {
    const slm_config *c = &m->cfg.cfg;
    const int N = B * T, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const size_t NM = (size_t)m->max_B * m->max_T, nd = (size_t)N * D;
    const size_t qd = (size_t)H * hd, kvd = (size_t)KV * hd, F = (size_t)c->ffn_dim;
    const size_t att_per = (size_t)m->max_B * H * m->max_T * m->max_T;
    m->B = B;
    m->T = T;
    memcpy(m->tokens, tokens, (size_t)N * sizeof *tokens);

    slm_t_embed_forward(m->res, tokens, wp(m, m->p_embd), N, D);
    for (int l = 0; l < c->n_layers; l++) {
        const slm_tlayer *W = &m->layers[l];
        treal *x = LAYER_BUF(m->res, l, NM * D), *mid = LAYER_BUF(m->mid, l, NM * D);
        treal *xn1 = LAYER_BUF(m->xn1, l, NM * D), *xn2 = LAYER_BUF(m->xn2, l, NM * D);
        treal *q = LAYER_BUF(m->q, l, NM * qd), *k = LAYER_BUF(m->k, l, NM * kvd), *v = LAYER_BUF(m->v, l, NM * kvd);
        treal *att = LAYER_BUF(m->att, l, att_per), *atty = LAYER_BUF(m->atty, l, NM * qd);
        treal *gate = LAYER_BUF(m->gate, l, NM * F), *up = LAYER_BUF(m->up, l, NM * F);
        treal *xout = LAYER_BUF(m->res, l + 1, NM * D);
        /* attention */
        norm_fwd(m, xn1, LAYER_BUF(m->rstd1, l, NM), x, W->attn_norm, N);  /* xn1 [N][D] */
        lin_fwd(m, l, L_Q, q, xn1, N);                                      /* q [N][qd] */
        rope(m, true, q, N, T, H);
        const int ks = m->cfg.kv_shared ? m->cfg.kv_map[l] : l; /* whose keys and values */
        if (ks == l) {
            lin_fwd(m, l, L_K, k, xn1, N);                                  /* k [N][kvd] */
            lin_fwd(m, l, L_V, v, xn1, N);                                  /* v [N][kvd] */
            rope(m, true, k, N, T, KV);
        } else {
            k = LAYER_BUF(m->k, ks, NM * kvd);
            v = LAYER_BUF(m->v, ks, NM * kvd);
        }
        slm_t_attention_forward(m->pool, atty, att, q, k, v, B, T, H, KV, hd); /* atty [N][qd] */
        lin_fwd(m, l, L_O, m->tmp_d, atty, N);                              /* [N][D] */
        memcpy(mid, x, nd * sizeof(treal));
        add_into(mid, m->tmp_d, nd);
        /* feed-forward */
        norm_fwd(m, xn2, LAYER_BUF(m->rstd2, l, NM), mid, W->ffn_norm, N);
        lin_fwd(m, l, L_GATE, gate, xn2, N);                                /* [N][F] */
        lin_fwd(m, l, L_UP, up, xn2, N);                                    /* [N][F] */
        rows_run(m, (rows_job){.op = R_SWIGLU_FWD, .out = m->hb, .in = gate, .in2 = up, .N = N, .D = (int)F});
        lin_fwd(m, l, L_DOWN, m->tmp_d, m->hb, N);                          /* [N][D] */
        memcpy(xout, mid, nd * sizeof(treal));
        add_into(xout, m->tmp_d, nd);
    }
    norm_fwd(m, m->xnf, m->rstdf, LAYER_BUF(m->res, c->n_layers, NM * D), wp(m, m->p_out_norm), N);
    slm_t_linear_forward(m->pool, logits, m->xnf, wp(m, m->p_output), NULL, N, D, c->vocab_size); /* [N][V] */
}

/* ---- backward ------------------------------------------------------------------------------- */

void slm_tmodel_backward(slm_tmodel *m, treal *dlogits) {
    const slm_config *c = &m->cfg.cfg;
    const int B = m->B, T = m->T, N = B * T, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const size_t NM = (size_t)m->max_B * m->max_T, nd = (size_t)N * D;
    const size_t qd = (size_t)H * hd, kvd = (size_t)KV * hd, F = (size_t)c->ffn_dim;
    const size_t att_per = (size_t)m->max_B * H * m->max_T * m->max_T;

    /* head and final norm: dres = d(res[L]) */
    memset(m->dxn, 0, nd * sizeof(treal));
    slm_t_linear_backward(m->pool, m->dxn, gp(m, m->p_output), NULL, dlogits, m->xnf, wp(m, m->p_output), N, D,
                          c->vocab_size);
    memset(m->dres, 0, nd * sizeof(treal));
    norm_bwd(m, m->dres, gp(m, m->p_out_norm), m->dxn, LAYER_BUF(m->res, c->n_layers, NM * D),
             wp(m, m->p_out_norm), m->rstdf, N);

    if (m->cfg.kv_shared) {
        memset(m->dk_acc, 0, (size_t)c->n_layers * NM * kvd * sizeof(treal));
        memset(m->dv_acc, 0, (size_t)c->n_layers * NM * kvd * sizeof(treal));
    }
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const slm_tlayer *W = &m->layers[l];
        const int *ix = m->pidx[l];
        const int ks = m->cfg.kv_shared ? m->cfg.kv_map[l] : l;
        treal *x = LAYER_BUF(m->res, l, NM * D), *mid = LAYER_BUF(m->mid, l, NM * D);
        treal *xn1 = LAYER_BUF(m->xn1, l, NM * D), *xn2 = LAYER_BUF(m->xn2, l, NM * D);
        treal *q = LAYER_BUF(m->q, l, NM * qd), *k = LAYER_BUF(m->k, l, NM * kvd), *v = LAYER_BUF(m->v, l, NM * kvd);
        treal *att = LAYER_BUF(m->att, l, att_per), *atty = LAYER_BUF(m->atty, l, NM * qd);
        treal *gate = LAYER_BUF(m->gate, l, NM * F), *up = LAYER_BUF(m->up, l, NM * F);
        /* feed-forward: dres is d(layer output) */
        rows_run(m, (rows_job){.op = R_SWIGLU_FWD, .out = m->hb, .in = gate, .in2 = up, .N = N, .D = (int)F});
        memset(m->dh, 0, (size_t)N * F * sizeof(treal));
        lin_bwd(m, l, L_DOWN, m->dh, m->dres, m->hb, N);
        memset(m->dgate, 0, (size_t)N * F * sizeof(treal));
        memset(m->dup, 0, (size_t)N * F * sizeof(treal));
        rows_run(m, (rows_job){.op = R_SWIGLU_BWD, .out = m->dgate, .out2 = m->dup, .in = m->dh, .in2 = gate,
                               .in3 = up, .N = N, .D = (int)F});
        memset(m->dxn, 0, nd * sizeof(treal));
        lin_bwd(m, l, L_GATE, m->dxn, m->dgate, xn2, N);
        lin_bwd(m, l, L_UP, m->dxn, m->dup, xn2, N);
        norm_bwd(m, m->dres, gp(m, ix[P_FFN_NORM]), m->dxn, mid, W->ffn_norm, LAYER_BUF(m->rstd2, l, NM), N);
        /* attention: dres is now d(mid) */
        memset(m->datty, 0, (size_t)N * qd * sizeof(treal));
        lin_bwd(m, l, L_O, m->datty, m->dres, atty, N);
        memset(m->dq, 0, (size_t)N * qd * sizeof(treal));
        if (ks != l) {
            /* keys and values of layer ks: their gradients wait for that layer's backward */
            k = LAYER_BUF(m->k, ks, NM * kvd);
            v = LAYER_BUF(m->v, ks, NM * kvd);
            slm_t_attention_backward(m->pool, m->dq, LAYER_BUF(m->dk_acc, ks, NM * kvd), LAYER_BUF(m->dv_acc, ks, NM * kvd),
                                     m->datt, m->datty, q, k, v, att, B, T, H, KV, hd);
        } else if (m->cfg.kv_shared) {
            memcpy(m->dk, LAYER_BUF(m->dk_acc, l, NM * kvd), (size_t)N * kvd * sizeof(treal));
            memcpy(m->dv, LAYER_BUF(m->dv_acc, l, NM * kvd), (size_t)N * kvd * sizeof(treal));
            slm_t_attention_backward(m->pool, m->dq, m->dk, m->dv, m->datt, m->datty, q, k, v, att, B, T, H, KV, hd);
        } else {
            memset(m->dk, 0, (size_t)N * kvd * sizeof(treal));
            memset(m->dv, 0, (size_t)N * kvd * sizeof(treal));
            slm_t_attention_backward(m->pool, m->dq, m->dk, m->dv, m->datt, m->datty, q, k, v, att, B, T, H, KV, hd);
        }
        rope(m, false, m->dq, N, T, H);
        memset(m->dxn, 0, nd * sizeof(treal));
        lin_bwd(m, l, L_Q, m->dxn, m->dq, xn1, N);
        if (ks == l) {
            rope(m, false, m->dk, N, T, KV);
            lin_bwd(m, l, L_K, m->dxn, m->dk, xn1, N);
            lin_bwd(m, l, L_V, m->dxn, m->dv, xn1, N);
        }
        norm_bwd(m, m->dres, gp(m, ix[P_ATTN_NORM]), m->dxn, x, W->attn_norm, LAYER_BUF(m->rstd1, l, NM), N);
    }
    treal *dembd = gp(m, m->p_embd);
    if (dembd) slm_t_embed_backward(dembd, m->dres, m->tokens, N, D);
}

/* ---- LoRA merge ----------------------------------------------------------------------------- */

void slm_tmodel_merge_lora(slm_tmodel *m) {
    const int R = m->cfg.lora_rank;
    if (R <= 0 || m->cfg.deltas) return;
    for (int l = 0; l < m->cfg.cfg.n_layers; l++)
        for (int j = 0; j < L_N; j++) {
            const int *ix = m->pidx[l];
            if (ix[P_LA + 2 * j] < 0) continue;
            const slm_tparam *w = &m->params[ix[lin_weight[j]]];
            const treal *a = wp(m, ix[P_LA + 2 * j]);
            treal *b = wp(m, ix[P_LA + 2 * j + 1]), *W = m->w + w->offset;
            for (int64_t o = 0; o < w->rows; o++)
                for (int64_t i = 0; i < w->cols; i++) {
                    double s = 0;
                    for (int r = 0; r < R; r++) s += (double)b[o * R + r] * a[(size_t)r * w->cols + i];
                    W[o * w->cols + i] += (treal)(m->lora_scale * s);
                }
            memset(b, 0, (size_t)w->rows * R * sizeof(treal));
        }
}
