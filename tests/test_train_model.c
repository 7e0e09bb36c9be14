/* test_train_model.c - the trainable model (float build) against the inference engine.
 *
 * Small synthetic GGUF files (llama: untied head, rope_dim < head_dim, an F16 matrix; qwen2:
 * q/k/v biases, NeoX RoPE with linear position scaling, tied head) are loaded by the engine
 * and by slm_tmodel_load; the tmodel's logits for every position of several sequences must
 * equal the engine's exact reference path (SLM_ISA_REF, f32 KV cache). A layer-map student is
 * compared with an engine model written with only those layers. Also: forward and backward
 * are bit-identical with pools of 1 and 2 threads; LoRA at load leaves the function unchanged
 * and merging keeps it; frozen tensors keep exactly zero gradient; load errors. With the
 * fixture present, a 4-layer student of it is compared with the engine on the fixture cut to
 * the same 4 layers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/gguf_write.h"
#include "model/forward.h"
#include "model/model.h"
#include "train/tmodel.h"
#include "test.h"

static uint64_t rng = 7;
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

/* ---- synthetic models ----------------------------------------------------------------------- */

enum { DIM = 32, HEADS = 4, KV = 2, HD = 8, QD = HEADS * HD, KVD = KV * HD, FFN = 48, VOCAB = 64, NL = 4 };
enum { NT = 14 }; /* tensors per layer, biases included */

/* Every tensor of a full model as f32, so a subset model can be written with the same values. */
typedef struct {
    bool qwen2;
    float *embd, *out_norm, *output;
    float *t[NL][NT];
} weights;

static const char *const tname[NT] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                                      "attn_output.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias",
                                      "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
static const int64_t trows[NT] = {1, QD, KVD, KVD, DIM, 1, 1, 1, 1, FFN, FFN, DIM};
static const int64_t tcols[NT] = {DIM, DIM, DIM, DIM, QD, QD, KVD, KVD, DIM, DIM, DIM, FFN};

static float *rnd(int64_t n, float base, float sc) {
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = base + sc * gauss();
    return f;
}

static void make_weights(weights *w, bool qwen2) {
    memset(w, 0, sizeof *w);
    w->qwen2 = qwen2;
    w->embd = rnd((int64_t)VOCAB * DIM, 0, 1);
    w->out_norm = rnd(DIM, 1, 0.1f);
    if (!qwen2) w->output = rnd((int64_t)VOCAB * DIM, 0, 0.5f);
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < 12; i++) {
            if (i >= 5 && i <= 7 && !qwen2) continue;
            const bool vec = trows[i] == 1;
            const bool norm = strstr(tname[i], "norm") != NULL;
            w->t[l][i] = rnd(trows[i] * tcols[i], norm ? 1.0f : 0.0f,
                             vec ? (norm ? 0.1f : 0.5f) : 1.5f / sqrtf((float)tcols[i]));
        }
}

static void free_weights(weights *w) {
    free(w->embd);
    free(w->out_norm);
    free(w->output);
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < NT; i++) free(w->t[l][i]);
}

/* Write layers[0..n) of w (all of them when layers is NULL) as an F32 GGUF; the llama file
 * stores one matrix per layer as F16 (the same values rounded, in both models). */
static void write_model(const char *path, weights *w, const int *layers, int n) {
    const char *ar = w->qwen2 ? "qwen2" : "llama";
    slm_gguf_writer *g;
    char k[128];
    void *keep[NL * NT];
    int n_keep = 0;
    slm_gguf_writer_create(&g);
    slm_gguf_writer_set_str(g, "general.architecture", ar);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, ar), k)
    slm_gguf_writer_set_u32(g, KEY("block_count"), (uint32_t)n);
    slm_gguf_writer_set_u32(g, KEY("embedding_length"), DIM);
    slm_gguf_writer_set_u32(g, KEY("feed_forward_length"), FFN);
    slm_gguf_writer_set_u32(g, KEY("attention.head_count"), HEADS);
    slm_gguf_writer_set_u32(g, KEY("attention.head_count_kv"), KV);
    slm_gguf_writer_set_u32(g, KEY("attention.key_length"), HD);
    slm_gguf_writer_set_u32(g, KEY("context_length"), 64);
    slm_gguf_writer_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (!w->qwen2) {
        slm_gguf_writer_set_u32(g, KEY("rope.dimension_count"), 6);
        slm_gguf_writer_set_f32(g, KEY("rope.freq_base"), 500.0f);
    } else {
        slm_gguf_writer_set_str(g, KEY("rope.scaling.type"), "linear");
        slm_gguf_writer_set_f32(g, KEY("rope.scaling.factor"), 2.5f);
    }
#undef KEY
    int64_t ne[2] = {DIM, VOCAB};
    slm_gguf_writer_add_tensor(g, "token_embd.weight", 2, ne, SLM_DT_F32, w->embd, (size_t)VOCAB * DIM * 4);
    for (int s = 0; s < n; s++) {
        const int l = layers ? layers[s] : s;
        for (int i = 0; i < 12; i++) {
            if (!w->t[l][i]) continue;
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s", s, tname[i]);
            const int64_t rows = trows[i], cols = tcols[i];
            ne[0] = cols;
            ne[1] = rows;
            if (!w->qwen2 && i == 10) {
                /* ffn_up as F16: round the values so both models see the same weights */
                uint16_t *h = malloc((size_t)(rows * cols) * 2);
                slm_dtype_get(SLM_DT_F16)->from_float(w->t[l][i], h, rows * cols);
                slm_dtype_get(SLM_DT_F16)->to_float(h, w->t[l][i], rows * cols);
                keep[n_keep++] = h;
                CHECK(slm_gguf_writer_add_tensor(g, nm, 2, ne, SLM_DT_F16, h, (size_t)(rows * cols) * 2) == SLM_OK,
                      "%s", slm_last_error());
                continue;
            }
            CHECK(slm_gguf_writer_add_tensor(g, nm, rows == 1 ? 1 : 2, rows == 1 ? ne : ne, SLM_DT_F32, w->t[l][i],
                                             (size_t)(rows * cols) * 4) == SLM_OK,
                  "%s", slm_last_error());
        }
    }
    ne[0] = DIM;
    slm_gguf_writer_add_tensor(g, "output_norm.weight", 1, ne, SLM_DT_F32, w->out_norm, DIM * 4);
    if (w->output) {
        ne[1] = VOCAB;
        slm_gguf_writer_add_tensor(g, "output.weight", 2, ne, SLM_DT_F32, w->output, (size_t)VOCAB * DIM * 4);
    }
    CHECK(slm_gguf_writer_write(g, path) == SLM_OK, "write %s: %s", path, slm_last_error());
    slm_gguf_writer_free(g);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* The engine's logits of every position of B sequences of T tokens on the exact path. */
static void engine_logits(const slm_model *m, const int32_t *tok, int B, int T, float *out) {
    slm_ctx_params p = {.n_ctx = T, .max_batch = T, .n_threads = 1, .kv_type = SLM_KV_F32, .isa_set = true,
                        .isa = SLM_ISA_REF};
    slm_ctx *c = NULL;
    CHECK(slm_ctx_create(m, &p, &c) == SLM_OK, "context: %s", slm_last_error());
    if (!c) return;
    for (int b = 0; b < B; b++) {
        slm_ctx_truncate(c, 0);
        CHECK(slm_ctx_eval(c, tok + (size_t)b * T, T, T, out + (size_t)b * T * m->cfg.vocab_size) == SLM_OK,
              "eval: %s", slm_last_error());
    }
    slm_ctx_free(c);
}

/* max |a - b| / max |b| over rows of V. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / fmax(s, 1e-30);
}

static slm_tmodel *student(const slm_model *src, int n_layers, const int *map, int lora, int max_B, int max_T,
                           slm_pool *pool) {
    slm_tcfg tc;
    slm_tmodel_cfg_from(src, n_layers, lora, 0.0f, &tc);
    slm_tmodel *t = NULL;
    CHECK(slm_tmodel_create(&tc, max_B, max_T, pool, &t) == SLM_OK, "create: %s", slm_last_error());
    if (t) CHECK(slm_tmodel_load(t, src, map, 42) == SLM_OK, "load: %s", slm_last_error());
    return t;
}

enum { B = 3, T = 7, N = B * T };

/* One training step's gradients: kl against teacher logits, ce on shifted tokens. */
static void step(slm_tmodel *t, const int32_t *tok, const float *teacher, float *logits, float *dl) {
    int32_t tgt[N];
    for (int i = 0; i < N; i++) tgt[i] = (i + 1) % T ? tok[i + 1] : -1;
    slm_tmodel_zero_grad(t);
    slm_tmodel_forward(t, tok, B, T, logits);
    memset(dl, 0, (size_t)N * VOCAB * sizeof *dl);
    slm_t_kl_loss(logits, teacher, N, VOCAB, 2.0f, 1.0 / N, dl);
    slm_t_ce_loss(logits, tgt, N, VOCAB, 0.5 / N, dl);
    slm_tmodel_backward(t, dl);
}

static float lg_a[N * VOCAB], lg_b[N * VOCAB], lg_e[N * VOCAB], dl[N * VOCAB];

static void test_arch(bool qwen2, const int32_t *tok) {
    const char *label = qwen2 ? "qwen2" : "llama";
    weights w;
    make_weights(&w, qwen2);
    const char *full = path_in("full.gguf"), *sub = path_in("sub.gguf");
    write_model(full, &w, NULL, NL);
    const int map[3] = {3, 0, 2};
    write_model(sub, &w, map, 3);
    slm_model *src = NULL, *ssub = NULL;
    CHECK(slm_model_load(full, &src) == SLM_OK, "%s: load: %s", label, slm_last_error());
    CHECK(slm_model_load(sub, &ssub) == SLM_OK, "%s: load sub: %s", label, slm_last_error());
    if (!src || !ssub) goto out;
    CHECK(src->tied_output == qwen2 && (src->layers[0].bq != NULL) == qwen2, "%s: fixture shape", label);

    /* the full model */
    engine_logits(src, tok, B, T, lg_e);
    slm_tmodel *t = student(src, NL, NULL, 0, B, T + 1, NULL);
    if (t) {
        slm_tmodel_forward(t, tok, B, T, lg_a);
        const double d = rel_diff(lg_a, lg_e, (size_t)N * VOCAB);
        CHECK(d < 1e-4, "%s: logits differ from the engine by %.3g (relative)", label, d);
        CHECK(slm_tmodel_cfg(t)->tied == qwen2 && slm_tmodel_cfg(t)->qkv_bias == qwen2, "%s: cfg_from", label);
    }

    /* a layer-map student against the engine on the file of those layers */
    engine_logits(ssub, tok, B, T, lg_e);
    slm_tmodel *ts = student(src, 3, map, 0, B, T, NULL);
    if (ts) {
        slm_tmodel_forward(ts, tok, B, T, lg_b);
        const double d = rel_diff(lg_b, lg_e, (size_t)N * VOCAB);
        CHECK(d < 1e-4, "%s: layer-map student differs from the engine by %.3g", label, d);
        CHECK(rel_diff(lg_a, lg_e, (size_t)N * VOCAB) > 1e-2, "%s: the layer map changes nothing", label);
    }
    slm_tmodel_free(ts);

    /* bit-identical with 1 and 2 threads */
    {
        slm_pool *p1 = NULL, *p2 = NULL;
        CHECK(slm_pool_create(1, &p1) == SLM_OK && slm_pool_create(2, &p2) == SLM_OK, "pools");
        slm_tmodel *t1 = student(src, NL, NULL, 0, B, T, p1), *t2 = student(src, NL, NULL, 0, B, T, p2);
        engine_logits(src, tok, B, T, lg_e);
        if (t1 && t2) {
            step(t1, tok, lg_e, lg_a, dl);
            step(t2, tok, lg_e, lg_b, dl);
            const size_t n = slm_tmodel_n_params(t1);
            CHECK(!memcmp(lg_a, lg_b, sizeof lg_a), "%s: logits depend on the thread count", label);
            CHECK(!memcmp(slm_tmodel_grads(t1), slm_tmodel_grads(t2), n * sizeof(float)),
                  "%s: gradients depend on the thread count", label);
            double gs = 0;
            for (size_t i = 0; i < n; i++) gs += fabs(slm_tmodel_grads(t1)[i]);
            CHECK(gs > 0 && isfinite(gs), "%s: gradient sum %g", label, gs);
        }
        slm_tmodel_free(t1);
        slm_tmodel_free(t2);
        /* the same with LoRA, everything trainable */
        t1 = student(src, NL, NULL, 4, B, T, p1);
        t2 = student(src, NL, NULL, 4, B, T, p2);
        if (t1 && t2) {
            slm_tmodel_set_trainable(t1, false, false);
            slm_tmodel_set_trainable(t2, false, false);
            step(t1, tok, lg_e, lg_a, dl);
            step(t2, tok, lg_e, lg_b, dl);
            CHECK(!memcmp(slm_tmodel_grads(t1), slm_tmodel_grads(t2), slm_tmodel_n_params(t1) * sizeof(float)),
                  "%s: LoRA gradients depend on the thread count", label);
        }
        slm_tmodel_free(t1);
        slm_tmodel_free(t2);
        slm_pool_free(p1);
        slm_pool_free(p2);
    }

    /* LoRA: the adapted model equals the source at load; merging keeps the function */
    slm_tmodel *tl = student(src, NL, NULL, 4, B, T, NULL);
    if (t && tl) {
        slm_tmodel_forward(t, tok, B, T, lg_a);
        slm_tmodel_forward(tl, tok, B, T, lg_b);
        CHECK(!memcmp(lg_a, lg_b, sizeof lg_a), "%s: LoRA at load changes the logits", label);
        int n_tab;
        const slm_tparam *tab = slm_tmodel_params(tl, &n_tab);
        float *wt = slm_tmodel_weights(tl);
        int n_lora = 0;
        for (int i = 0; i < n_tab; i++)
            if (tab[i].kind == SLM_TP_LORA && strstr(tab[i].name, "lora_b")) {
                for (size_t j = 0; j < tab[i].n; j++) wt[tab[i].offset + j] = 0.05f * gauss();
                n_lora++;
            }
        CHECK(n_lora == 7 * NL, "%s: %d B adapters", label, n_lora);
        slm_tmodel_forward(tl, tok, B, T, lg_a);
        CHECK(rel_diff(lg_a, lg_b, (size_t)N * VOCAB) > 1e-3, "%s: adapters have no effect", label);
        slm_tmodel_merge_lora(tl);
        bool zero = true;
        for (int i = 0; i < n_tab; i++)
            if (strstr(tab[i].name, "lora_b"))
                for (size_t j = 0; j < tab[i].n; j++) zero &= wt[tab[i].offset + j] == 0;
        CHECK(zero, "%s: merge leaves B non-zero", label);
        slm_tmodel_forward(tl, tok, B, T, lg_b);
        const double d = rel_diff(lg_b, lg_a, (size_t)N * VOCAB);
        CHECK(d < 1e-5, "%s: merged model differs by %.3g", label, d);

        /* frozen tensors: LoRA only (the default), then frozen embeddings; B non-zero again so
         * every A has a gradient */
        for (int i = 0; i < n_tab; i++)
            if (strstr(tab[i].name, "lora_b"))
                for (size_t j = 0; j < tab[i].n; j++) wt[tab[i].offset + j] = 0.05f * gauss();
        engine_logits(src, tok, B, T, lg_e);
        step(tl, tok, lg_e, lg_a, dl);
        const float *g = slm_tmodel_grads(tl);
        bool frozen_zero = true, lora_nonzero = true;
        for (int i = 0; i < n_tab; i++) {
            double s = 0;
            for (size_t j = 0; j < tab[i].n; j++) s += fabs(g[tab[i].offset + j]);
            if (tab[i].kind == SLM_TP_LORA) lora_nonzero &= s > 0 && tab[i].trainable;
            else frozen_zero &= s == 0 && !tab[i].trainable;
        }
        CHECK(frozen_zero, "%s: LoRA only: a frozen tensor has a gradient", label);
        CHECK(lora_nonzero, "%s: LoRA only: an adapter has no gradient", label);
    }
    slm_tmodel_free(tl);
    if (t) {
        slm_tmodel_set_trainable(t, false, true);
        step(t, tok, lg_e, lg_a, dl);
        int n_tab;
        const slm_tparam *tab = slm_tmodel_params(t, &n_tab);
        const float *g = slm_tmodel_grads(t);
        bool ok = true;
        for (int i = 0; i < n_tab; i++) {
            double s = 0;
            for (size_t j = 0; j < tab[i].n; j++) s += fabs(g[tab[i].offset + j]);
            const bool embd = !strcmp(tab[i].name, "token_embd.weight") || !strcmp(tab[i].name, "output.weight");
            ok &= embd ? s == 0 && !tab[i].trainable : s > 0 && tab[i].trainable;
        }
        CHECK(ok, "%s: freeze_embd", label);
    }

    /* load errors */
    if (t) {
        const int bad[NL] = {0, 1, 2, NL};
        CHECK(slm_tmodel_load(t, src, bad, 1) == SLM_ERR_ARG, "%s: layer map out of range accepted", label);
        slm_tmodel *t3 = student(ssub, 3, NULL, 0, 1, 2, NULL);
        if (t3) CHECK(slm_tmodel_load(t3, src, NULL, 1) == SLM_ERR_ARG, "%s: layer count mismatch accepted", label);
        slm_tmodel_free(t3);
    }
    slm_tmodel_free(t);
out:
    slm_model_free(src);
    slm_model_free(ssub);
    free_weights(&w);
    unlink(full);
    unlink(sub);
}

/* ---- the fixture: a 4-layer student against the engine on the fixture cut to those layers */

static void test_fixture(void) {
    const char *fx = test_model_path();
    if (access(fx, R_OK) != 0) {
        printf("train_model: fixture %s absent, its case skipped\n", fx);
        return;
    }
    slm_model *src = NULL, *cut = NULL;
    CHECK(slm_model_load(fx, &src) == SLM_OK, "fixture: %s", slm_last_error());
    if (!src) return;
    const int map[4] = {0, 7, 18, 29};
    const char *path = path_in("cut.gguf");
    {
        const slm_gguf *g = src->gguf;
        slm_gguf_writer *w;
        char key[96], nm[128], from[96];
        slm_gguf_writer_create(&w);
        slm_gguf_writer_copy_kvs(w, g);
        snprintf(key, sizeof key, "%s.block_count", src->cfg.arch_name);
        slm_gguf_writer_set_u32(w, key, 4);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const slm_gguf_tensor *t = &g->tensors[i];
            char tn[96];
            snprintf(tn, sizeof tn, "%.*s", (int)(t->name.len < 95 ? t->name.len : 95), t->name.ptr);
            if (strncmp(tn, "blk.", 4)) {
                CHECK(slm_gguf_writer_add_tensor(w, tn, t->n_dims, t->ne, t->type, t->data, t->nbytes) == SLM_OK,
                      "cut: %s", slm_last_error());
                continue;
            }
            int l = -1, off = 0;
            if (sscanf(tn, "blk.%d.%n", &l, &off) != 1 || off == 0) continue;
            for (int s = 0; s < 4; s++)
                if (map[s] == l) {
                    snprintf(from, sizeof from, "%s", tn + off);
                    snprintf(nm, sizeof nm, "blk.%d.%s", s, from);
                    CHECK(slm_gguf_writer_add_tensor(w, nm, t->n_dims, t->ne, t->type, t->data, t->nbytes) == SLM_OK,
                          "cut: %s", slm_last_error());
                }
        }
        CHECK(slm_gguf_writer_write(w, path) == SLM_OK, "cut: %s", slm_last_error());
        slm_gguf_writer_free(w);
    }
    CHECK(slm_model_load(path, &cut) == SLM_OK, "cut: %s", slm_last_error());
    if (cut) {
        enum { FT = 6 };
        const int32_t tok[FT] = {1, 504, 3458, 282, 216, 7523};
        const int V = src->cfg.vocab_size;
        float *le = malloc((size_t)FT * V * sizeof *le), *lt = malloc((size_t)FT * V * sizeof *lt);
        engine_logits(cut, tok, 1, FT, le);
        slm_tmodel *t = student(src, 4, map, 0, 1, FT, NULL);
        if (t) {
            slm_tmodel_forward(t, tok, 1, FT, lt);
            const double d = rel_diff(lt, le, (size_t)FT * V);
            CHECK(d < 1e-4, "fixture: 4-layer student differs from the engine by %.3g", d);
        }
        slm_tmodel_free(t);
        free(le);
        free(lt);
    }
    slm_model_free(cut);
    slm_model_free(src);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/slm-tmodel-XXXXXX");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return test_summary("train_model");
    }
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % VOCAB);
    test_arch(false, tok);
    test_arch(true, tok);
    test_fixture();
    rmdir(dir);
    return test_summary("train_model");
}
