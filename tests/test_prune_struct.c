/* test_prune_struct.c - structured pruning.
 *
 * Surgery: the pruned model's logits equal those of the zero-only model (same shapes, removed
 * parts' contributions zeroed) on the exact reference path, on small synthetic GQA models
 * (llama and qwen2 with biases, block-quantized, f16 and f32 matrices) and on the fixture;
 * the pruned file's metadata and shapes, kept rows bit-identical; a zero-only model with
 * nothing removed equals the original. Importance: chosen channels are the top ones of an
 * independent recomputation from hand-fed statistics, heads and groups from hand-made scores;
 * a layer whose wo and w_down are zero has BI 0, is dropped first, and dropping it leaves the
 * logits unchanged. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/calib.h"
#include "compress/prune_struct.h"
#include "core/dtype.h"
#include "core/gguf_write.h"
#include "test.h"

static uint64_t rng = 99;
static float gauss(void) {
    double u = 0, v;
    while (u <= 1e-12) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(rng >> 11) / 9007199254740992.0;
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    v = (double)(rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static char dir[64];
static const char *path_in(const char *name) {
    static char buf[8][128];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 128, "%s/%s", dir, name);
    return b;
}

/* ---- a small synthetic model ------------------------------------------------------------ */

enum { DIM = 64, HEADS = 6, KV = 3, HD = 16, QD = HEADS * HD, KVD = KV * HD, FFN = 128, VOCAB = 96, NL = 5 };

typedef struct {
    void *bufs[256];
    int n;
} store;

static void *keep(store *s, size_t bytes) {
    void *p = calloc(1, bytes);
    s->bufs[s->n++] = p;
    return p;
}

/* A random [rows][cols] matrix of `type`, scaled by sc (zero when sc is 0). */
static void add_mat(slm_gguf_writer *w, store *st, const char *name, int64_t rows, int64_t cols, uint32_t type,
                    float sc) {
    float *f = malloc((size_t)(rows * cols) * sizeof *f);
    for (int64_t i = 0; i < rows * cols; i++) f[i] = sc * gauss();
    size_t rb;
    slm_row_bytes(type, cols, &rb);
    void *d = keep(st, (size_t)rows * rb);
    for (int64_t r = 0; r < rows; r++) slm_dtype_get(type)->from_float(f + r * cols, (char *)d + r * rb, cols);
    free(f);
    const int64_t ne[2] = {cols, rows};
    CHECK(slm_gguf_writer_add_tensor(w, name, 2, ne, type, d, (size_t)rows * rb) == SLM_OK, "%s", slm_last_error());
}

static void add_vec(slm_gguf_writer *w, store *st, const char *name, int64_t n, float base, float sc) {
    float *d = keep(st, (size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = base + sc * gauss();
    const int64_t ne[1] = {n};
    CHECK(slm_gguf_writer_add_tensor(w, name, 1, ne, SLM_DT_F32, d, (size_t)n * sizeof *d) == SLM_OK, "%s",
          slm_last_error());
}

/* qwen2: with q/k/v biases. zero_layer >= 0: that layer's wo and w_down are zero (f32). */
static void write_model(const char *path, bool qwen2, int zero_layer) {
    const char *ar = qwen2 ? "qwen2" : "llama";
    slm_gguf_writer *w;
    store st = {.n = 0};
    char k[128];
    slm_gguf_writer_create(&w);
    slm_gguf_writer_set_str(w, "general.architecture", ar);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, ar), k)
    slm_gguf_writer_set_u32(w, KEY("block_count"), NL);
    slm_gguf_writer_set_u32(w, KEY("embedding_length"), DIM);
    slm_gguf_writer_set_u32(w, KEY("feed_forward_length"), FFN);
    slm_gguf_writer_set_u32(w, KEY("attention.head_count"), HEADS);
    slm_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), KV);
    slm_gguf_writer_set_u32(w, KEY("attention.key_length"), HD);
    slm_gguf_writer_set_u32(w, KEY("context_length"), 128);
    slm_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    add_mat(w, &st, "token_embd.weight", VOCAB, DIM, SLM_DT_Q8_0, 1.0f);
    /* the layers' wo / w_down types cycle through block-quantized and float types */
    const uint32_t o_types[NL] = {SLM_DT_Q4_1, SLM_DT_F16, SLM_DT_F32, SLM_DT_Q8_0, SLM_DT_BF16};
    const uint32_t d_types[NL] = {SLM_DT_Q8_0, SLM_DT_Q4_1, SLM_DT_F16, SLM_DT_F32, SLM_DT_Q4_0};
    for (int l = 0; l < NL; l++) {
        char n[64];
        const float si = 1.0f / sqrtf((float)DIM);
#define T(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        add_vec(w, &st, T("attn_norm.weight"), DIM, 1.0f, 0.1f);
        add_mat(w, &st, T("attn_q.weight"), QD, DIM, SLM_DT_Q4_1, 2.0f * si);
        add_mat(w, &st, T("attn_k.weight"), KVD, DIM, SLM_DT_Q4_1, 2.0f * si);
        add_mat(w, &st, T("attn_v.weight"), KVD, DIM, SLM_DT_Q8_0, si);
        if (qwen2) {
            add_vec(w, &st, T("attn_q.bias"), QD, 0.0f, 0.5f);
            add_vec(w, &st, T("attn_k.bias"), KVD, 0.0f, 0.5f);
            add_vec(w, &st, T("attn_v.bias"), KVD, 0.0f, 0.5f);
        }
        const bool z = l == zero_layer;
        add_mat(w, &st, T("attn_output.weight"), DIM, QD, z ? SLM_DT_F32 : o_types[l], z ? 0.0f : 1.0f / sqrtf(QD));
        add_vec(w, &st, T("ffn_norm.weight"), DIM, 1.0f, 0.1f);
        add_mat(w, &st, T("ffn_gate.weight"), FFN, DIM, SLM_DT_Q4_1, si);
        add_mat(w, &st, T("ffn_up.weight"), FFN, DIM, SLM_DT_Q8_0, si);
        add_mat(w, &st, T("ffn_down.weight"), DIM, FFN, z ? SLM_DT_F32 : d_types[l], z ? 0.0f : 1.0f / sqrtf(FFN));
#undef T
    }
    add_vec(w, &st, "output_norm.weight", DIM, 1.0f, 0.1f);
    CHECK(slm_gguf_writer_write(w, path) == SLM_OK, "write %s: %s", path, slm_last_error());
    slm_gguf_writer_free(w);
    for (int i = 0; i < st.n; i++) free(st.bufs[i]);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static slm_ctx *ref_ctx(const slm_model *m, int n_ctx) {
    slm_ctx_params p = {.n_ctx = n_ctx, .max_batch = n_ctx, .n_threads = 1, .kv_type = SLM_KV_F32,
                        .isa_set = true, .isa = SLM_ISA_REF};
    slm_ctx *c = NULL;
    CHECK(slm_ctx_create(m, &p, &c) == SLM_OK, "context: %s", slm_last_error());
    return c;
}

/* Logits of the last position after tokens[0..n) on the exact path, malloc'd [vocab]. */
static float *logits_of(const char *path, const int32_t *tokens, int n) {
    slm_model *m = NULL;
    if (slm_model_load(path, &m)) {
        CHECK(0, "load %s: %s", path, slm_last_error());
        return NULL;
    }
    slm_ctx *c = ref_ctx(m, n);
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof *lg);
    CHECK(c && slm_ctx_eval(c, tokens, n, 1, lg) == SLM_OK, "eval %s: %s", path, slm_last_error());
    slm_ctx_free(c);
    slm_model_free(m);
    return lg;
}

/* max |a - b| over n; *scale = max |b|. */
static double max_diff(const float *a, const float *b, int n, double *scale) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale) *scale = s;
    return d;
}

static uint32_t key_u32(const slm_gguf *g, const char *key) {
    uint32_t v = 0;
    CHECK(slm_gguf_get_u32(g, key, &v) == SLM_OK, "key %s", key);
    return v;
}

/* Calibration statistics and BI of model m on random windows; the plan for p. */
static void plan_for(const slm_model *m, const slm_ps_params *p, int n_tok, slm_ps_plan *pl) {
    const slm_config *c = &m->cfg;
    slm_ctx *ctx = ref_ctx(m, n_tok);
    int32_t *win = malloc(2 * (size_t)n_tok * sizeof *win);
    for (int i = 0; i < 2 * n_tok; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        win[i] = (int32_t)((rng >> 33) % (uint64_t)c->vocab_size);
    }
    slm_calib *cal = NULL;
    CHECK(slm_calib_create(m, 2, 1, &cal) == SLM_OK, "calib");
    for (int w = 0; w < 2; w++) CHECK(slm_calib_eval(cal, ctx, win + w * n_tok, n_tok) == SLM_OK, "calib eval");
    float *fs = malloc((size_t)c->n_layers * c->ffn_dim * sizeof *fs);
    float *hs = malloc((size_t)c->n_layers * c->n_heads * sizeof *hs);
    double *bi = malloc((size_t)c->n_layers * sizeof *bi);
    CHECK(slm_ps_scores(m, cal, fs, hs) == SLM_OK, "scores: %s", slm_last_error());
    CHECK(slm_ps_block_influence(ctx, win, 2, n_tok, false, bi) == SLM_OK, "bi: %s", slm_last_error());
    CHECK(slm_ps_select(c, fs, hs, bi, p, pl) == SLM_OK, "select: %s", slm_last_error());
    free(fs);
    free(hs);
    free(bi);
    free(win);
    slm_calib_free(cal);
    slm_ctx_free(ctx);
}

/* Prune and zero `in` by p; the two models' logits agree; returns the plan (caller frees). */
static void check_surgery(const char *label, const char *in, const slm_ps_params *p0, const int32_t *tok, int n,
                          double tol, slm_ps_plan *pl) {
    slm_model *m = NULL;
    CHECK(slm_model_load(in, &m) == SLM_OK, "%s: load %s", label, slm_last_error());
    if (!m) return;
    plan_for(m, p0, 32, pl);
    slm_ps_params p = *p0;
    slm_ps_totals tp = {0}, tz = {0};
    const char *pruned = path_in("pruned.gguf"), *zeroed = path_in("zeroed.gguf");
    CHECK(slm_ps_write(m, pl, &p, pruned, &tp) == SLM_OK, "%s: write pruned: %s", label, slm_last_error());
    p.zero_only = true;
    CHECK(slm_ps_write(m, pl, &p, zeroed, &tz) == SLM_OK, "%s: write zeroed: %s", label, slm_last_error());
    CHECK(tp.params_after < tp.params_before && tz.params_after == tz.params_before &&
              tp.params_before == tz.params_before,
          "%s: params %llu -> %llu, zeroed %llu -> %llu", label, (unsigned long long)tp.params_before,
          (unsigned long long)tp.params_after, (unsigned long long)tz.params_before,
          (unsigned long long)tz.params_after);
    float *a = logits_of(pruned, tok, n), *b = logits_of(zeroed, tok, n);
    if (a && b) {
        double scale;
        const double d = max_diff(a, b, m->cfg.vocab_size, &scale);
        CHECK(d < tol && scale > 0.5, "%s: pruned vs zeroed logits differ by %g (scale %g)", label, d, scale);
        if (getenv("SLM_TEST_VERBOSE")) fprintf(stderr, "%s: max diff %g, scale %g\n", label, d, scale);
    }
    free(a);
    free(b);
    /* metadata and shapes of the pruned file; kept rows of wq bit-identical */
    slm_gguf *g = NULL;
    CHECK(slm_gguf_open(pruned, &g) == SLM_OK, "%s: open pruned", label);
    if (g) {
        char k[128];
        const char *ar = m->cfg.arch_name;
        const int hk = pl->kv_kept * pl->heads_kept, hd = m->cfg.head_dim;
#define KEY(s) (snprintf(k, sizeof k, "%s." s, ar), k)
        CHECK(key_u32(g, KEY("block_count")) == (uint32_t)pl->layers_kept, "%s: block_count", label);
        CHECK(key_u32(g, KEY("feed_forward_length")) == (uint32_t)pl->ffn_kept, "%s: ffn", label);
        CHECK(key_u32(g, KEY("attention.head_count")) == (uint32_t)hk, "%s: heads", label);
        CHECK(key_u32(g, KEY("attention.head_count_kv")) == (uint32_t)pl->kv_kept, "%s: kv heads", label);
        CHECK(key_u32(g, KEY("attention.key_length")) == (uint32_t)hd &&
                  key_u32(g, KEY("attention.value_length")) == (uint32_t)hd,
              "%s: head dim", label);
#undef KEY
        slm_gguf_str meth;
        CHECK(slm_gguf_get_str(g, "slimlm.prune.method", &meth) == SLM_OK, "%s: provenance", label);
        const slm_gguf_tensor *q = slm_gguf_find_tensor(g, "blk.0.attn_q.weight"),
                              *o = slm_gguf_find_tensor(g, "blk.0.attn_output.weight"),
                              *dn = slm_gguf_find_tensor(g, "blk.0.ffn_down.weight"),
                              *up = slm_gguf_find_tensor(g, "blk.0.ffn_up.weight");
        char last[64];
        snprintf(last, sizeof last, "blk.%d.attn_norm.weight", pl->layers_kept);
        CHECK(!slm_gguf_find_tensor(g, last), "%s: a layer beyond the new count", label);
        CHECK(q && q->ne[1] == hk * hd && q->ne[0] == m->cfg.dim, "%s: wq shape", label);
        CHECK(o && o->ne[0] == hk * hd && o->ne[1] == m->cfg.dim, "%s: wo shape", label);
        CHECK(dn && dn->ne[0] == pl->ffn_kept && up && up->ne[1] == pl->ffn_kept, "%s: ffn shapes", label);
        int first = 0;
        while (pl->dropped[first]) first++;
        const slm_mat *wq = &m->layers[first].wq;
        int bad = 0;
        for (int i = 0; q && i < hk * hd; i++) {
            const int src = pl->head_idx[(size_t)first * hk + i / hd] * hd + i % hd;
            bad += memcmp((const char *)q->data + (size_t)i * wq->row_bytes,
                          (const char *)wq->data + (size_t)src * wq->row_bytes, wq->row_bytes) != 0;
        }
        CHECK(q && q->type == wq->type && bad == 0, "%s: %d wq rows not copied as is", label, bad);
        uint64_t n_par = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            uint64_t e = 1;
            for (uint32_t d = 0; d < g->tensors[i].n_dims; d++) e *= (uint64_t)g->tensors[i].ne[d];
            n_par += e;
        }
        CHECK(n_par == tp.params_after, "%s: file has %llu params, reported %llu", label, (unsigned long long)n_par,
              (unsigned long long)tp.params_after);
        slm_gguf_free(g);
    }
    if (getenv("SLM_TEST_VERBOSE")) slm_ps_print_report(stderr, pl, &tp);
    slm_model_free(m);
}

/* ---- importance on hand-made statistics --------------------------------------------------- */

static void test_selection(void) {
    slm_config cfg = {.n_layers = 2, .dim = 8, .ffn_dim = 128, .n_heads = 9, .n_kv_heads = 3, .head_dim = 4};
    slm_ps_params p = slm_ps_params_default();
    int f, h, g;
    slm_config big = {.ffn_dim = 1536, .n_heads = 9, .n_kv_heads = 3};
    p.ffn_keep = 0.75f, p.heads_keep = 0.67f, p.kv_keep = 0.67f;
    slm_ps_counts(&big, &p, &f, &h, &g);
    CHECK(f == 1152 && h == 2 && g == 2, "counts %d %d %d", f, h, g);
    p.ffn_keep = 0.7f;
    slm_ps_counts(&big, &p, &f, &h, &g);
    CHECK(f == 1056, "0.7 of 1536 rounds down to %d, want 1056", f);
    p.ffn_keep = 0.001f, p.heads_keep = 0.01f, p.kv_keep = 0.01f;
    slm_ps_counts(&big, &p, &f, &h, &g);
    CHECK(f == 32 && h == 1 && g == 1, "minimum counts %d %d %d", f, h, g);

    /* heads: group sums 9, 10.3, 5 -> groups 0 and 1; best two of each */
    float heads[2 * 9] = {1, 5, 3, 10, 0.1f, 0.2f, 2, 2.5f, 0.5f,   /* layer 0 */
                          0, 0, 0, 1, 1, 1, 4, 0.5f, 3};           /* layer 1: groups 2 (7.5), 1 (3) */
    float ffn[2 * 128];
    for (int i = 0; i < 2 * 128; i++) ffn[i] = (float)((i * 37) % 128); /* a permutation per layer */
    p = slm_ps_params_default();
    p.heads_keep = 0.67f, p.kv_keep = 0.67f, p.ffn_keep = 0.5f;
    const double bi[2] = {0.3, 0.1};
    p.drop_layers = 1;
    slm_ps_plan pl;
    CHECK(slm_ps_select(&cfg, ffn, heads, bi, &p, &pl) == SLM_OK, "select: %s", slm_last_error());
    const int32_t want0[4] = {1, 2, 3, 5}, want1[4] = {3, 4, 6, 8};
    CHECK(pl.heads_kept == 2 && pl.kv_kept == 2 && !memcmp(pl.head_idx, want0, sizeof want0) &&
              !memcmp(pl.head_idx + 4, want1, sizeof want1),
          "heads %d %d %d %d / %d %d %d %d", pl.head_idx[0], pl.head_idx[1], pl.head_idx[2], pl.head_idx[3],
          pl.head_idx[4], pl.head_idx[5], pl.head_idx[6], pl.head_idx[7]);
    CHECK(pl.kv_idx[0] == 0 && pl.kv_idx[1] == 1 && pl.kv_idx[2] == 1 && pl.kv_idx[3] == 2, "groups");
    /* ffn: 64 channels, those with scores >= 64, ascending */
    int bad = 0;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < pl.ffn_kept; i++) {
            const int j = pl.ffn_idx[l * pl.ffn_kept + i];
            bad += ffn[l * 128 + j] < 64 || (i > 0 && j <= pl.ffn_idx[l * pl.ffn_kept + i - 1]);
        }
    CHECK(pl.ffn_kept == 64 && bad == 0, "ffn kept %d, %d wrong", pl.ffn_kept, bad);
    CHECK(pl.dropped[1] && !pl.dropped[0] && pl.layers_kept == 1, "layer with the lower BI dropped");
    slm_ps_plan_free(&pl);
    /* errors: all layers, bad fractions, duplicate list entries */
    p.drop_layers = 2;
    CHECK(slm_ps_select(&cfg, ffn, heads, bi, &p, &pl) == SLM_ERR_ARG, "dropping every layer refused");
    p.drop_layers = 0, p.kv_keep = 0;
    CHECK(slm_ps_select(&cfg, ffn, heads, bi, &p, &pl) == SLM_ERR_ARG, "kv_keep 0 refused");
    p.kv_keep = 1;
    const int dup[2] = {1, 1};
    p.drop_list = dup, p.n_drop_list = 2;
    CHECK(slm_ps_select(&cfg, ffn, heads, bi, &p, &pl) == SLM_ERR_ARG, "duplicate layer refused");
}

/* FFN scores from hand-fed statistics against a recomputation in double. */
static void test_scores(const char *path) {
    slm_model *m = NULL;
    CHECK(slm_model_load(path, &m) == SLM_OK, "load: %s", slm_last_error());
    if (!m) return;
    slm_calib *cal = NULL;
    CHECK(slm_calib_create(m, 0, 1, &cal) == SLM_OK, "calib");
    enum { R = 4 };
    static float x[R * FFN];
    float ms_want[NL][FFN], msa[NL][QD];
    static float xa[R * QD];
    for (int l = 0; l < NL; l++) {
        for (int j = 0; j < FFN; j++) {
            const float a = (float)((j * 29 + l * 7) % FFN) / 16.0f; /* rows +-a: mean square a^2 */
            for (int r = 0; r < R; r++) x[r * FFN + j] = r % 2 ? a : -a;
            ms_want[l][j] = a * a;
        }
        for (int j = 0; j < QD; j++) {
            const float a = 0.1f + (float)((j * 13 + l) % 11);
            for (int r = 0; r < R; r++) xa[r * QD + j] = r % 2 ? a : -a;
            msa[l][j] = a * a;
        }
        slm_calib_observe(cal, l, SLM_TAP_FFN_MID, x, R, FFN);
        slm_calib_observe(cal, l, SLM_TAP_ATTN_OUT, xa, R, QD);
    }
    static float fs[NL * FFN], hs[NL * HEADS];
    CHECK(slm_ps_scores(m, cal, fs, hs) == SLM_OK, "scores: %s", slm_last_error());
    int bad = 0;
    float row[QD > FFN ? QD : FFN];
    for (int l = 0; l < NL; l++) {
        double cn[FFN] = {0}, co[QD] = {0};
        for (int r = 0; r < DIM; r++) {
            slm_mat_row(&m->layers[l].w_down, r, row);
            for (int j = 0; j < FFN; j++) cn[j] += (double)row[j] * row[j];
            slm_mat_row(&m->layers[l].wo, r, row);
            for (int j = 0; j < QD; j++) co[j] += (double)row[j] * row[j];
        }
        for (int j = 0; j < FFN; j++) {
            const double want = sqrt((double)ms_want[l][j]) * sqrt(cn[j]);
            bad += fabs(fs[l * FFN + j] - want) > 1e-4 * want + 1e-7;
        }
        for (int h = 0; h < HEADS; h++) {
            double a = 0, w = 0;
            for (int i = h * HD; i < (h + 1) * HD; i++) a += msa[l][i], w += co[i];
            const double want = sqrt(a) * sqrt(w);
            bad += fabs(hs[l * HEADS + h] - want) > 1e-4 * want;
        }
    }
    CHECK(bad == 0, "%d scores differ from the recomputation", bad);
    /* the channels kept are the top ones of the recomputed scores */
    slm_ps_params p = slm_ps_params_default();
    p.ffn_keep = 0.5f;
    slm_ps_plan pl;
    CHECK(slm_ps_select(&m->cfg, fs, hs, NULL, &p, &pl) == SLM_OK, "select");
    bad = 0;
    for (int l = 0; l < NL; l++) {
        /* threshold: the 64th largest score */
        float sorted[FFN];
        memcpy(sorted, fs + l * FFN, sizeof sorted);
        for (int i = 0; i < FFN; i++)
            for (int j = i + 1; j < FFN; j++)
                if (sorted[j] > sorted[i]) {
                    const float t = sorted[i];
                    sorted[i] = sorted[j], sorted[j] = t;
                }
        for (int i = 0; i < pl.ffn_kept; i++) bad += fs[l * FFN + pl.ffn_idx[l * pl.ffn_kept + i]] < sorted[63];
    }
    CHECK(pl.ffn_kept == 64 && bad == 0, "%d kept channels below the top 64", bad);
    slm_ps_plan_free(&pl);
    slm_calib_free(cal);
    slm_model_free(m);
}

/* A layer with zero wo and w_down: BI 0, dropped first, logits unchanged without it. */
static void test_identity_layer(const int32_t *tok, int n) {
    const char *in = path_in("zl.gguf"), *out = path_in("zl-pruned.gguf");
    write_model(in, false, 2);
    slm_model *m = NULL;
    CHECK(slm_model_load(in, &m) == SLM_OK, "load: %s", slm_last_error());
    if (!m) return;
    slm_ps_params p = slm_ps_params_default();
    p.drop_layers = 1;
    slm_ps_plan pl;
    plan_for(m, &p, 32, &pl);
    if (!pl.bi) {
        slm_model_free(m);
        return;
    }
    CHECK(fabs(pl.bi[2]) < 1e-6, "BI of the identity layer %g", pl.bi[2]);
    int others = 0;
    for (int l = 0; l < NL; l++) others += l != 2 && pl.bi[l] > 1e-3;
    CHECK(others == NL - 1, "other layers have BI > 1e-3 (%d of %d)", others, NL - 1);
    CHECK(pl.dropped[2] && pl.layers_kept == NL - 1, "identity layer dropped first");
    CHECK(slm_ps_write(m, &pl, &p, out, NULL) == SLM_OK, "write: %s", slm_last_error());
    float *a = logits_of(in, tok, n), *b = logits_of(out, tok, n);
    if (a && b) {
        double sc;
        const double d = max_diff(a, b, VOCAB, &sc);
        CHECK(d < 1e-5 * sc, "dropping the identity layer changes the logits by %g", d);
    }
    free(a);
    free(b);
    slm_ps_plan_free(&pl);
    slm_model_free(m);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/slm-prune-XXXXXX");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return test_summary("prune_struct");
    }
    int32_t tok[24];
    for (int i = 0; i < 24; i++) tok[i] = (i * 41 + 7) % VOCAB;

    test_selection();

    const char *llama = path_in("llama.gguf"), *qwen = path_in("qwen2.gguf");
    write_model(llama, false, -1);
    write_model(qwen, true, -1);
    test_scores(llama);
    test_identity_layer(tok, 24);

    slm_ps_params p = slm_ps_params_default();
    slm_ps_plan pl;
    /* nothing removed: the zero-only model is the original */
    p.zero_only = true;
    {
        slm_model *m = NULL;
        CHECK(slm_model_load(llama, &m) == SLM_OK, "load");
        plan_for(m, &p, 32, &pl);
        CHECK(slm_ps_write(m, &pl, &p, path_in("same.gguf"), NULL) == SLM_OK, "write: %s", slm_last_error());
        float *a = logits_of(llama, tok, 24), *b = logits_of(path_in("same.gguf"), tok, 24);
        CHECK(a && b && max_diff(a, b, VOCAB, NULL) == 0, "zero-only with nothing removed differs");
        free(a);
        free(b);
        slm_ps_plan_free(&pl);
        slm_model_free(m);
    }
    p = slm_ps_params_default();
    p.ffn_keep = 0.75f, p.heads_keep = 0.67f, p.drop_layers = 2;
    check_surgery("llama ffn/heads/layers", llama, &p, tok, 24, 1e-4, &pl);
    CHECK(pl.ffn_kept == 96 && pl.heads_kept == 1 && pl.kv_kept == KV && pl.layers_kept == NL - 2, "plan counts");
    slm_ps_plan_free(&pl);
    p = slm_ps_params_default();
    p.kv_keep = 0.67f, p.heads_keep = 0.5f, p.ffn_keep = 0.5f;
    const int drop[1] = {3};
    p.drop_list = drop, p.n_drop_list = 1;
    check_surgery("qwen2 kv groups", qwen, &p, tok, 24, 1e-4, &pl);
    CHECK(pl.kv_kept == 2 && pl.heads_kept == 1 && pl.dropped[3] && pl.layers_kept == NL - 1, "plan counts");
    slm_ps_plan_free(&pl);

    /* the fixture */
    if (access(test_model_path(), R_OK) == 0) {
        slm_model *m = NULL;
        CHECK(slm_model_load(test_model_path(), &m) == SLM_OK, "fixture: %s", slm_last_error());
        int32_t ft[24];
        for (int i = 0; i < 24; i++) ft[i] = (int32_t)((i * 7919 + 13) % (m ? m->cfg.vocab_size : 1));
        slm_model_free(m);
        p = slm_ps_params_default();
        p.ffn_keep = 0.75f, p.heads_keep = 0.67f, p.drop_layers = 2;
        check_surgery("fixture", test_model_path(), &p, ft, 24, 1e-3, &pl);
        slm_ps_plan_free(&pl);
    } else {
        printf("prune_struct: fixture %s absent, its case skipped\n", test_model_path());
    }
    const char *files[] = {"llama.gguf", "qwen2.gguf", "zl.gguf", "zl-pruned.gguf", "same.gguf", "pruned.gguf",
                           "zeroed.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(path_in(files[i]));
    rmdir(dir);
    return test_summary("prune_struct");
}
