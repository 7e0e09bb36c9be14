/* fuzz_model.c - libFuzzer target for the model loader.
 *
 * Parses the input as a GGUF file and binds it as a model (config, shapes, dtypes, sparse
 * rows, shared-layer and KV maps, low-rank deltas, per-tensor codebooks, outlier tables).
 * When it loads: checks the bound views against the file, decodes the first and last row of
 * every matrix (tables and outliers included) and compares the reference product of small
 * matrices with those rows; a small model also runs two tokens through the exact reference
 * forward pass, twice, and must give the same logits both times.
 *   make fuzz FUZZ_SECONDS=300 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "core/status.h"
#include "kernels/matmul.h"
#include "model/forward.h"
#include "model/model.h"

/* Matrices up to this many weights (rows up to MATMUL_MAX_COLS long, so that float rounding
 * of the dot stays far below the tolerance) are also multiplied on the reference path. */
#define MATMUL_MAX_WEIGHTS (1 << 18)
#define MATMUL_MAX_COLS 4096

static volatile float g_sink;

static void release_buf(void *buf, size_t size) {
    (void)size;
    free(buf);
}

static void check_failure(slm_status s) {
    const char *msg = slm_last_error();
    if (s <= SLM_OK || s >= SLM_ERR_COUNT || !msg[0] || strchr(msg, '\n')) abort();
}

/* Deterministic activations in [-1, 1). */
static void fill_x(float *x, int64_t n, uint32_t seed) {
    uint32_t h = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        h = h * 1664525u + 1013904223u;
        x[i] = (float)(h >> 8) / (float)(1u << 23) - 1.0f;
    }
}

/* The view must lie inside the file and agree with its outlier table. */
static void check_view(const slm_gguf *g, const slm_mat *w) {
    const uint8_t *lo = g->buf, *hi = g->buf + g->size, *d = w->data;
    if (w->rows < 1 || w->cols < 1 || w->row_bytes < 1) abort();
    if (d < lo || d > hi || (uint64_t)w->rows > (uint64_t)(hi - d) / w->row_bytes) abort();
    if (w->outl.nnz) {
        if (w->outl.off[0] != 0 || w->outl.off[w->rows] != w->outl.nnz) abort();
    }
}

/* Row r decoded, then its dot with x; *mag the sum of |w_i x_i|. */
static float row_dot(const slm_mat *w, int64_t r, const float *x, float *row, double *mag, int *finite) {
    slm_mat_row(w, r, row);
    double acc = 0, m = 0;
    int ok = 1;
    for (int64_t i = 0; i < w->cols; i++) {
        if (!isfinite(row[i])) ok = 0;
        acc += (double)row[i] * x[i];
        m += fabs((double)row[i] * x[i]);
    }
    *mag = m;
    *finite = ok && isfinite(acc) && m < 1e30;
    return (float)acc;
}

/* First and last row of w; for a small matrix also y = W x on the reference path, whose rows
 * must equal the decoded rows' dots (the dtype's dot_f32 against its to_float). */
static void check_mat(const slm_gguf *g, const slm_mat *w, uint32_t seed) {
    if (!w->data) return;
    check_view(g, w);
    float *row = malloc((size_t)w->cols * sizeof *row);
    float *x = malloc((size_t)w->cols * sizeof *x);
    if (!row || !x) abort();
    fill_x(x, w->cols, seed);
    const int64_t pick[2] = {0, w->rows - 1};
    float dots[2];
    double mags[2];
    int fin[2];
    for (int i = 0; i < 2; i++) dots[i] = row_dot(w, pick[i], x, row, &mags[i], &fin[i]);
    if ((uint64_t)w->rows * (uint64_t)w->cols <= MATMUL_MAX_WEIGHTS && w->cols <= MATMUL_MAX_COLS) {
        slm_mm mm;
        float *y = malloc((size_t)w->rows * sizeof *y);
        if (!y || slm_mm_init(&mm, NULL, NULL, 1, w->cols) != SLM_OK) abort();
        slm_matmul(&mm, w, x, 1, y);
        for (int i = 0; i < 2; i++) {
            const float v = y[pick[i]];
            if (fin[i] && isfinite(v) && fabs((double)v - dots[i]) > 1e-3 * mags[i] + 1e-6) abort();
        }
        slm_mm_free(&mm);
        free(y);
    }
    g_sink = dots[0] + dots[1];
    free(x);
    free(row);
}

static void check_vec(const float *v, int64_t n, int required) {
    if (!v) {
        if (required) abort();
        return;
    }
    g_sink = v[0] + v[n - 1];
}

static void check_layers(const slm_model *m) {
    const slm_config *c = &m->cfg;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int n_kv = 0, n_shared = 0, max_rank = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const slm_layer *L = &m->layers[i];
        if (L->share_src < 0 || L->share_src >= c->n_layers || m->layers[L->share_src].share_src != L->share_src)
            abort();
        if (L->kv_src < 0 || L->kv_src > i || m->layers[L->kv_src].kv_src != L->kv_src) abort();
        const int own_kv = L->kv_src == i;
        if (own_kv ? L->kv_slot != n_kv++ : L->kv_slot != m->layers[L->kv_src].kv_slot) abort();
        n_shared += L->share_src != i;
        const slm_mat *mats[SLM_N_LIN] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        const int64_t rows[SLM_N_LIN] = {qd, kvd, kvd, c->dim, c->ffn_dim, c->ffn_dim, c->dim};
        const int64_t cols[SLM_N_LIN] = {c->dim, c->dim, c->dim, qd, c->dim, c->dim, c->ffn_dim};
        for (int j = 0; j < SLM_N_LIN; j++) {
            const int kv = j == SLM_LIN_K || j == SLM_LIN_V;
            if (kv && !own_kv) {
                if (mats[j]->data || L->delta[j].rank) abort();
                continue;
            }
            if (!mats[j]->data || mats[j]->rows != rows[j] || mats[j]->cols != cols[j]) abort();
            const slm_lowrank *d = &L->delta[j];
            if (d->rank < 0 || d->rank > m->max_delta_rank) abort();
            if (d->rank > max_rank) max_rank = d->rank;
            if (d->rank && (d->a.rows != d->rank || d->a.cols != cols[j] || d->b.rows != rows[j] || d->b.cols != d->rank))
                abort();
        }
        check_vec(L->attn_norm, c->dim, 1);
        check_vec(L->ffn_norm, c->dim, 1);
        check_vec(L->bq, qd, c->arch == SLM_ARCH_QWEN2);
        check_vec(L->bk, kvd, c->arch == SLM_ARCH_QWEN2 && own_kv);
        check_vec(L->bv, kvd, c->arch == SLM_ARCH_QWEN2 && own_kv);
    }
    if (n_kv != m->n_kv_layers || n_shared != m->n_shared || max_rank != m->max_delta_rank) abort();
}

static void check_rows(const slm_model *m) {
    const slm_gguf *g = m->gguf;
    uint32_t seed = 1;
    check_mat(g, &m->tok_embd, seed++);
    if (!m->tied_output) check_mat(g, &m->output, seed++);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const slm_layer *L = &m->layers[i];
        const slm_mat *mats[SLM_N_LIN] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int j = 0; j < SLM_N_LIN; j++) {
            check_mat(g, mats[j], seed++);
            if (L->delta[j].rank) {
                check_mat(g, &L->delta[j].a, seed++);
                check_mat(g, &L->delta[j].b, seed++);
            }
        }
    }
}

static int is_small(const slm_config *c) {
    return c->dim <= 256 && c->n_layers <= 4 && c->vocab_size <= 1024 && c->ffn_dim <= 1024 &&
           (int64_t)c->n_heads * c->head_dim <= 1024;
}

/* Two tokens through the reference forward pass, twice: the same logits both times; a token
 * out of range is refused and leaves the sequence as it was. */
static void run_forward(const slm_model *m) {
    const int vocab = m->cfg.vocab_size;
    slm_ctx_params p = {.n_ctx = 8, .max_batch = 4, .n_threads = 1, .kv_type = SLM_KV_F32, .isa_set = true,
                        .isa = SLM_ISA_REF, .deterministic = true};
    slm_ctx *c = NULL;
    if (slm_ctx_create(m, &p, &c) != SLM_OK || !c) abort();
    float *a = malloc((size_t)vocab * sizeof *a), *b = malloc((size_t)vocab * sizeof *b);
    if (!a || !b) abort();
    const int32_t tok[2] = {0, vocab - 1};
    if (slm_ctx_eval(c, tok, 2, 1, a) != SLM_OK || slm_ctx_len(c) != 2) abort();
    const int32_t bad = vocab;
    if (slm_ctx_eval(c, &bad, 1, 1, b) != SLM_ERR_ARG || slm_ctx_len(c) != 2) abort();
    slm_ctx_truncate(c, 0);
    if (slm_ctx_eval(c, tok, 2, 1, b) != SLM_OK || slm_ctx_len(c) != 2) abort();
    /* bitwise (NaN logits from fuzzed weights must repeat too): one thread on the reference
     * path is deterministic, so only a stale or uninitialized read makes the passes differ */
    if (memcmp(a, b, (size_t)vocab * sizeof *a) != 0) abort();
    g_sink = a[0];
    free(a);
    free(b);
    slm_ctx_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    void *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open_memory(buf, size, release_buf, &g);
    if (s != SLM_OK) {
        if (g) abort();
        check_failure(s);
        return 0;
    }
    slm_model *m = NULL;
    s = slm_model_from_gguf(g, &m);
    if (s != SLM_OK) {
        if (m) abort();
        check_failure(s);
        return 0;
    }
    const slm_config *c = &m->cfg;
    if (c->vocab_size < 1 || c->n_layers < 1 || c->dim < 1 || !m->layers || !m->out_norm) abort();
    if (m->tied_output && m->output.data != m->tok_embd.data) abort();
    if (m->output.rows != c->vocab_size || m->output.cols != c->dim) abort();
    uint64_t n_params = 0, n_bytes = 0;
    slm_model_size(m, &n_params, &n_bytes);
    if (n_bytes > size) abort();
    check_vec(m->out_norm, c->dim, 1);
    check_layers(m);
    check_rows(m);
    if (is_small(c)) run_forward(m);
    slm_model_free(m);
    return 0;
}
