/* model.c - bind the tensors of a GGUF file to the Llama-family weight layout. */
#include "model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/pack.h"
#include "../core/cbt.h"
#include "../core/dtype.h"

static const slm_gguf_tensor *find(const slm_gguf *g, const char *name) { return slm_gguf_find_tensor(g, name); }

/* A companion tensor "<base>.<suffix>" of matrix `name` ("<base>.weight"), or NULL. */
static const slm_gguf_tensor *companion(const slm_gguf *g, const char *name, const char *suffix, char *buf,
                                        size_t cap) {
    const size_t n = strlen(name), w = strlen(".weight");
    if (n <= w || strcmp(name + n - w, ".weight") != 0) return NULL;
    if (snprintf(buf, cap, "%.*s.%s", (int)(n - w), name, suffix) >= (int)cap) return NULL;
    return find(g, buf);
}

static bool is_vec(const slm_gguf_tensor *t, uint32_t type, int64_t n) {
    return t->type == type && t->n_dims == 1 && t->ne[0] == n && (uintptr_t)t->data % 4 == 0;
}

/* The per-tensor codebook (cbt dtypes) and the outlier table of matrix m, checked: the
 * table's entries in [-127, 127]; the outlier rows' offsets from 0 to nnz, non-decreasing,
 * columns in range and increasing within a row, values finite. */
static slm_status bind_companions(const slm_gguf *g, const char *name, slm_mat *m) {
    char nb[160];
    slm_cbt_format f;
    const slm_gguf_tensor *t = companion(g, name, "codebook", nb, sizeof nb);
    if (slm_cbt_format_of(m->type, &f)) {
        if (!t) return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' (%s) has no codebook tensor", name,
                                 slm_dtype_name(m->type));
        if (t->type != SLM_DT_I8 || t->n_dims != 1 || t->ne[0] != f.k)
            return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' must be an i8 vector of %d entries", nb, f.k);
        if (!slm_cbt_check_table(t->data, f.k))
            return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' has an entry outside [-127, 127]", nb);
        m->tab = t->data;
    } else if (t) {
        return slm_error(SLM_ERR_FORMAT, "model: '%s' has a codebook tensor but dtype %s", name,
                         slm_dtype_name(m->type));
    }
    char nc[160], nv[160];
    const slm_gguf_tensor *to = companion(g, name, "outlier_rows", nb, sizeof nb);
    const slm_gguf_tensor *tc = companion(g, name, "outlier_cols", nc, sizeof nc);
    const slm_gguf_tensor *tv = companion(g, name, "outlier_vals", nv, sizeof nv);
    if (!to && !tc && !tv) return SLM_OK;
    if (!to || !tc || !tv)
        return slm_error(SLM_ERR_FORMAT, "model: '%s' needs all three outlier tensors (rows, cols, vals)", name);
    if (m->rows >= INT32_MAX || !is_vec(to, SLM_DT_I32, m->rows + 1))
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' must be an aligned i32 vector of %lld entries", nb,
                         (long long)m->rows + 1);
    const int32_t *off = to->data;
    const int64_t nnz = off[m->rows];
    if (off[0] != 0 || nnz < 1 || !is_vec(tc, SLM_DT_I32, nnz) || !is_vec(tv, SLM_DT_F32, nnz))
        return slm_error(SLM_ERR_FORMAT, "model: outlier tensors of '%s' disagree on their count", name);
    const int32_t *col = tc->data;
    const float *val = tv->data;
    for (int64_t r = 0; r < m->rows; r++) {
        if (off[r + 1] < off[r] || off[r + 1] > nnz)
            return slm_error(SLM_ERR_FORMAT, "model: tensor '%s': offsets not increasing at row %lld", nb, (long long)r);
        for (int32_t i = off[r]; i < off[r + 1]; i++)
            if (col[i] < 0 || col[i] >= m->cols || (i > off[r] && col[i] <= col[i - 1]) || !isfinite(val[i]))
                return slm_error(SLM_ERR_FORMAT, "model: outlier %d of '%s' (row %lld) is malformed", (int)i, name,
                                 (long long)r);
    }
    m->outl = (slm_outliers){.off = off, .col = col, .val = val, .nnz = nnz};
    return SLM_OK;
}

static slm_status bind_mat(const slm_gguf *g, const char *name, int64_t rows, int64_t cols, slm_mat *m,
                           bool optional) {
    const slm_gguf_tensor *t = find(g, name);
    if (!t) {
        if (optional) {
            memset(m, 0, sizeof *m);
            return SLM_OK;
        }
        return slm_error(SLM_ERR_FORMAT, "model: missing tensor '%s'", name);
    }
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' has shape [%lld, %lld] (%u dims), expected [%lld, %lld]",
                         name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)cols, (long long)rows);
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    const bool cbt = slm_cbt_format_of(t->type, NULL);
    if (!tr || (!cbt && (!tr->dot_f32 || !tr->to_float)))
        return slm_error(SLM_ERR_UNSUPPORTED, "model: tensor '%s' has dtype %s, which cannot be computed yet", name,
                         slm_dtype_name(t->type));
    memset(m, 0, sizeof *m);
    m->data = t->data;
    m->type = t->type;
    m->rows = rows;
    m->cols = cols;
    if (!slm_row_bytes(t->type, cols, &m->row_bytes))
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s': bad row size", name);
    if (tr->check_rows && !tr->check_rows(t->type, t->data, cols, rows))
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' (%s) has malformed rows", name, tr->name);
    return bind_companions(g, name, m);
}

slm_status slm_model_bind_matrix(const slm_gguf *g, const char *name, slm_mat *m) {
    const slm_gguf_tensor *t = find(g, name);
    if (!t) return slm_error(SLM_ERR_NOT_FOUND, "model: missing tensor '%s'", name);
    if (t->n_dims != 2) return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' is not a matrix", name);
    return bind_mat(g, name, t->ne[1], t->ne[0], m, false);
}

/* A vector of n elements as f32: points into the file for F32, else converted into an owned copy. */
static slm_status bind_vec(slm_model *md, const char *name, int64_t n, const float **out, bool optional) {
    const slm_gguf_tensor *t = find(md->gguf, name);
    *out = NULL;
    if (!t) {
        if (optional) return SLM_OK;
        return slm_error(SLM_ERR_FORMAT, "model: missing tensor '%s'", name);
    }
    if (t->n_dims != 1 || t->ne[0] != n)
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' has %u dims, ne0 %lld, expected a vector of %lld", name,
                         t->n_dims, (long long)t->ne[0], (long long)n);
    if (t->type == SLM_DT_F32) {
        if ((uintptr_t)t->data % sizeof(float))
            return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' is not 4-byte aligned", name);
        *out = (const float *)t->data;
        return SLM_OK;
    }
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    if (!tr || !tr->to_float)
        return slm_error(SLM_ERR_UNSUPPORTED, "model: tensor '%s' has dtype %s, which cannot be converted", name,
                         slm_dtype_name(t->type));
    float *v = malloc((size_t)n * sizeof(float));
    float **o = realloc(md->owned, (size_t)(md->n_owned + 1) * sizeof *o);
    if (!v || !o) {
        free(v);
        if (o) md->owned = o;
        return slm_error(SLM_ERR_NOMEM, "model: out of memory converting '%s'", name);
    }
    md->owned = o;
    md->owned[md->n_owned++] = v;
    tr->to_float(t->data, v, n);
    *out = v;
    return SLM_OK;
}

static const char *const lin_names[SLM_N_LIN] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                  "ffn_gate", "ffn_up", "ffn_down"};

const char *slm_lin_name(int i) { return i >= 0 && i < SLM_N_LIN ? lin_names[i] : "?"; }

/* The low-rank delta of linear j of layer i, if the file has one: blk.i.NAME.delta_a
 * [rank][cols] and blk.i.NAME.delta_b [rows][rank], both or neither. */
static slm_status bind_delta(slm_model *md, int i, int j, int64_t rows, int64_t cols) {
    const slm_gguf *g = md->gguf;
    slm_lowrank *d = &md->layers[i].delta[j];
    char na[96], nb[96];
    snprintf(na, sizeof na, "blk.%d.%s.delta_a", i, lin_names[j]);
    snprintf(nb, sizeof nb, "blk.%d.%s.delta_b", i, lin_names[j]);
    const slm_gguf_tensor *ta = find(g, na), *tb = find(g, nb);
    if (!ta && !tb) return SLM_OK;
    if (!ta || !tb) return slm_error(SLM_ERR_FORMAT, "model: '%s' needs both delta_a and delta_b", na);
    if (ta->n_dims != 2 || ta->ne[1] < 1 || ta->ne[1] > 65536)
        return slm_error(SLM_ERR_FORMAT, "model: tensor '%s' has a bad shape", na);
    const int64_t rank = ta->ne[1];
    slm_status s;
    if ((s = bind_mat(g, na, rank, cols, &d->a, false))) return s;
    if ((s = bind_mat(g, nb, rows, rank, &d->b, false))) return s;
    d->rank = (int)rank;
    if (d->rank > md->max_delta_rank) md->max_delta_rank = d->rank;
    return SLM_OK;
}

/* slimlm.share.layer_map: per layer the index of the layer whose stored matrices it uses;
 * map[map[l]] == map[l] (a source stores its own). Absent: every layer stores its own. */
static slm_status read_layer_map(slm_model *md) {
    const int n = md->cfg.n_layers;
    for (int i = 0; i < n; i++) md->layers[i].share_src = i;
    const slm_gguf_value *v = slm_gguf_find(md->gguf, "slimlm.share.layer_map");
    if (!v) return SLM_OK;
    if (v->type != SLM_GGUF_ARRAY || (v->arr.type != SLM_GGUF_INT32 && v->arr.type != SLM_GGUF_UINT32) ||
        v->arr.n != (uint64_t)n)
        return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.layer_map must be an int32 array of %d entries", n);
    for (int i = 0; i < n; i++) {
        int32_t e;
        memcpy(&e, v->arr.raw + (size_t)i * 4, 4);
        if (e < 0 || e >= n) return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.layer_map[%d] = %d is out of range", i, e);
        md->layers[i].share_src = e;
    }
    for (int i = 0; i < n; i++) {
        const int e = md->layers[i].share_src;
        if (md->layers[e].share_src != e)
            return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.layer_map: layer %d uses layer %d, which does not store its own matrices", i, e);
        if (e != i) md->n_shared++;
    }
    return SLM_OK;
}

/* slimlm.share.kv_map: per layer the (earlier or same) layer whose keys and values it reads;
 * kv_map[kv_map[l]] == kv_map[l]. Cache slots are numbered over the layers that read their own. */
static slm_status read_kv_map(slm_model *md) {
    const int n = md->cfg.n_layers;
    for (int i = 0; i < n; i++) md->layers[i].kv_src = i;
    const slm_gguf_value *v = slm_gguf_find(md->gguf, "slimlm.share.kv_map");
    if (v) {
        if (v->type != SLM_GGUF_ARRAY || (v->arr.type != SLM_GGUF_INT32 && v->arr.type != SLM_GGUF_UINT32) ||
            v->arr.n != (uint64_t)n)
            return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.kv_map must be an int32 array of %d entries", n);
        for (int i = 0; i < n; i++) {
            int32_t e;
            memcpy(&e, v->arr.raw + (size_t)i * 4, 4);
            if (e < 0 || e > i)
                return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.kv_map[%d] = %d must name layer 0..%d", i, e, i);
            md->layers[i].kv_src = e;
        }
    }
    md->n_kv_layers = 0;
    for (int i = 0; i < n; i++) {
        slm_layer *L = &md->layers[i];
        if (md->layers[L->kv_src].kv_src != L->kv_src)
            return slm_error(SLM_ERR_FORMAT, "model: slimlm.share.kv_map: layer %d reads layer %d, which does not cache its own keys", i, L->kv_src);
        L->kv_slot = L->kv_src == i ? md->n_kv_layers++ : md->layers[L->kv_src].kv_slot;
    }
    return SLM_OK;
}

static slm_status bind_layer(slm_model *md, int i) {
    const slm_config *c = &md->cfg;
    slm_layer *L = &md->layers[i];
    const slm_gguf *g = md->gguf;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int src = L->share_src;
    char name[96];
    slm_status s;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, i), name)
#define SRC(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, src), name)
    if ((s = bind_vec(md, NAME("attn_norm.weight"), c->dim, &L->attn_norm, false))) return s;
    if ((s = bind_mat(g, SRC("attn_q.weight"), qd, c->dim, &L->wq, false))) return s;
    const bool own_kv = L->kv_src == i; /* else no keys / values of its own */
    if (own_kv && (s = bind_mat(g, SRC("attn_k.weight"), kvd, c->dim, &L->wk, false))) return s;
    if (own_kv && (s = bind_mat(g, SRC("attn_v.weight"), kvd, c->dim, &L->wv, false))) return s;
    if ((s = bind_mat(g, SRC("attn_output.weight"), c->dim, qd, &L->wo, false))) return s;
    bool bias = c->arch == SLM_ARCH_QWEN2;
    if ((s = bind_vec(md, NAME("attn_q.bias"), qd, &L->bq, !bias))) return s;
    if ((s = bind_vec(md, NAME("attn_k.bias"), kvd, &L->bk, !bias || !own_kv))) return s;
    if ((s = bind_vec(md, NAME("attn_v.bias"), kvd, &L->bv, !bias || !own_kv))) return s;
    if ((s = bind_vec(md, NAME("ffn_norm.weight"), c->dim, &L->ffn_norm, false))) return s;
    if ((s = bind_mat(g, SRC("ffn_gate.weight"), c->ffn_dim, c->dim, &L->w_gate, false))) return s;
    if ((s = bind_mat(g, SRC("ffn_up.weight"), c->ffn_dim, c->dim, &L->w_up, false))) return s;
    if ((s = bind_mat(g, SRC("ffn_down.weight"), c->dim, c->ffn_dim, &L->w_down, false))) return s;
#undef NAME
#undef SRC
    const slm_mat *mats[SLM_N_LIN] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (int j = 0; j < SLM_N_LIN; j++)
        if ((own_kv || (j != SLM_LIN_K && j != SLM_LIN_V)) && (s = bind_delta(md, i, j, mats[j]->rows, mats[j]->cols)))
            return s;
    return SLM_OK;
}

slm_status slm_model_from_gguf(slm_gguf *g, slm_model **out) {
    *out = NULL;
    slm_model *md = calloc(1, sizeof *md);
    if (!md) {
        slm_gguf_free(g);
        return slm_error(SLM_ERR_NOMEM, "model: out of memory");
    }
    md->gguf = g;
    slm_status s = slm_config_from_gguf(g, &md->cfg);
    if (s) goto fail;
    slm_config *c = &md->cfg;
    const slm_gguf_tensor *te = find(g, "token_embd.weight");
    if (!te) {
        s = slm_error(SLM_ERR_FORMAT, "model: missing tensor 'token_embd.weight'");
        goto fail;
    }
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        s = slm_error(SLM_ERR_FORMAT, "model: tensor 'token_embd.weight' has a bad shape");
        goto fail;
    }
    c->vocab_size = (int)te->ne[1];
    if ((s = bind_mat(g, "token_embd.weight", c->vocab_size, c->dim, &md->tok_embd, false))) goto fail;
    md->layers = calloc((size_t)c->n_layers, sizeof *md->layers);
    if (!md->layers) {
        s = slm_error(SLM_ERR_NOMEM, "model: out of memory");
        goto fail;
    }
    if ((s = read_layer_map(md)) || (s = read_kv_map(md))) goto fail;
    for (int i = 0; i < c->n_layers; i++)
        if ((s = bind_layer(md, i))) goto fail;
    if ((s = bind_vec(md, "output_norm.weight", c->dim, &md->out_norm, false))) goto fail;
    if ((s = bind_mat(g, "output.weight", c->vocab_size, c->dim, &md->output, true))) goto fail;
    if (!md->output.data) {
        md->output = md->tok_embd;
        md->tied_output = 1;
    }
    *out = md;
    return SLM_OK;
fail:
    slm_model_free(md);
    return s;
}

slm_status slm_model_load(const char *path, slm_model **out) {
    slm_gguf *g;
    *out = NULL;
    /* a packed model is unpacked into memory and verified, then bound like a mapped file */
    slm_status s = slm_pack_open_gguf(path, &g);
    if (s) return s;
    s = slm_model_from_gguf(g, out);
    if (s) return slm_error_prefix(s, "%s", path);
    return SLM_OK;
}

void slm_model_free(slm_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    slm_gguf_free(m->gguf);
    free(m);
}

bool slm_model_is_companion(const char *name, size_t len) {
    static const char *const suffix[] = {".codebook", ".outlier_rows", ".outlier_cols", ".outlier_vals"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        const size_t k = strlen(suffix[i]);
        if (len > k && !memcmp(name + len - k, suffix[i], k)) return true;
    }
    return false;
}

void slm_model_size(const slm_model *m, uint64_t *n_params, uint64_t *n_bytes) {
    uint64_t p = 0, b = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const slm_gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        if (!slm_model_is_companion(t->name.ptr, t->name.len)) p += n;
        b += t->nbytes;
    }
    *n_params = p;
    *n_bytes = b;
}
