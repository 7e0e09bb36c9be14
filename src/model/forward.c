/* forward.c - the Llama-family forward pass over a batch of tokens of one or more sequences.
 *
 * Read it top to bottom: embed, then per layer attention (RMSNorm, Q/K/V, RoPE, cache
 * append, causal GQA, output projection, residual) and feed-forward (RMSNorm, gate/up,
 * SwiGLU, down, residual), then the final norm and the output head for the requested rows.
 * A batch is a list of spans (consecutive tokens of one sequence); everything but the cache
 * append and the attention treats the batch as one matrix of token rows. */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../kernels/attention.h"
#include "../kernels/flash_attn.h"
#include "../kernels/matmul.h"
#include "../kernels/ops.h"

/* Consecutive batch rows [t0, t0 + n) of one sequence, at positions pos0.. */
struct slm_span {
    slm_seq *seq;
    int t0, n, pos0;
};

static float *alloc_f(size_t n, int *ok) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) *ok = 0;
    return p;
}

slm_status slm_ctx_create(const slm_model *m, const slm_ctx_params *params, slm_ctx **out) {
    *out = NULL;
    const slm_config *cfg = &m->cfg;
    slm_ctx_params p = params ? *params : (slm_ctx_params){0};
    if (p.n_ctx < 0 || p.max_batch < 0 || p.block_size < 0)
        return slm_error(SLM_ERR_ARG, "context: negative size");
    if (p.n_ctx == 0) p.n_ctx = cfg->ctx_len < 4096 ? cfg->ctx_len : 4096;
    if (p.n_ctx > (1 << 22)) return slm_error(SLM_ERR_ARG, "context: n_ctx %d is too large", p.n_ctx);
    if (p.max_batch == 0) p.max_batch = 256;
    if (p.max_batch > p.n_ctx) p.max_batch = p.n_ctx;
    if (p.block_size == 0) p.block_size = SLM_KV_DEFAULT_BLOCK;
    if (p.n_layers < 0 || p.n_layers > cfg->n_layers)
        return slm_error(SLM_ERR_ARG, "context: %d layers of a %d-layer model", p.n_layers, cfg->n_layers);
    if (p.n_layers == 0) p.n_layers = cfg->n_layers;
    if (!(p.early_exit >= -1 && p.early_exit <= 1.5f))
        return slm_error(SLM_ERR_ARG, "context: early-exit threshold %g outside [-1, 1.5]", p.early_exit);
    if (p.exit_min < 0 || p.exit_min > cfg->n_layers)
        return slm_error(SLM_ERR_ARG, "context: early exit from layer %d of a %d-layer model", p.exit_min, cfg->n_layers);
    if (p.exit_min == 0) p.exit_min = cfg->n_layers / 4 > 1 ? cfg->n_layers / 4 : 1;
    /* KV cache slots of the layers run (slots are numbered over the layers computing their own keys) */
    int n_slots = 0;
    for (int l = 0; l < p.n_layers; l++) n_slots += m->layers[l].kv_src == l;

    slm_ctx *c = calloc(1, sizeof *c);
    if (!c) return slm_error(SLM_ERR_NOMEM, "context: out of memory");
    c->model = m;
    c->p = p;
    const int kvd = cfg->n_kv_heads * cfg->head_dim;
    slm_status s = slm_kv_create(p.kv_type, n_slots, kvd, p.block_size, p.n_ctx, &c->kv);
    if (s) {
        free(c);
        return s;
    }
    c->owns_pool = !p.shared_pool;
    if (p.shared_pool) c->pool = p.shared_pool;
    else if ((s = slm_pool_create(p.n_threads, &c->pool))) {
        slm_ctx_free(c);
        return s;
    }
    c->isa = p.isa_set ? p.isa : slm_isa_default();
    const slm_kernels *k = NULL;
    if (c->isa != SLM_ISA_REF && !(k = slm_kernels_get(c->isa))) {
        slm_ctx_free(c);
        return slm_error(SLM_ERR_UNSUPPORTED, "context: kernel set '%s' is not supported on this CPU",
                         slm_isa_name(c->isa));
    }
    c->simd_attn = c->isa >= SLM_ISA_AVX2 && slm_attention_simd_available();
    const size_t B = (size_t)p.max_batch, qd = (size_t)cfg->n_heads * cfg->head_dim;
    size_t rowmax = (size_t)cfg->dim;
    if ((size_t)cfg->ffn_dim > rowmax) rowmax = (size_t)cfg->ffn_dim;
    if (qd > rowmax) rowmax = qd;
    int ok = 1;
    c->x = alloc_f(B * cfg->dim, &ok);
    c->xb = alloc_f(B * cfg->dim, &ok);
    c->xb2 = alloc_f(B * cfg->dim, &ok);
    c->q = alloc_f(B * qd, &ok);
    c->k = alloc_f(B * kvd, &ok);
    c->v = alloc_f(B * kvd, &ok);
    c->att = alloc_f(B * qd, &ok);
    c->hb = alloc_f(B * cfg->ffn_dim, &ok);
    c->hb2 = alloc_f(B * cfg->ffn_dim, &ok);
    if (m->max_delta_rank > 0) {
        c->lr_t = alloc_f(B * (size_t)m->max_delta_rank, &ok);
        c->lr_y = alloc_f(B * rowmax, &ok);
        if ((size_t)m->max_delta_rank > rowmax) rowmax = (size_t)m->max_delta_rank;
    }
    if (p.early_exit != 0) c->h_prev = alloc_f((size_t)cfg->dim, &ok);
    c->rope_cos = alloc_f(B * (cfg->rope_dim / 2), &ok);
    c->rope_sin = alloc_f(B * (cfg->rope_dim / 2), &ok);
    const size_t fa_n = slm_fa_scratch_floats(cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    c->fa_scratch = alloc_f((size_t)slm_pool_size(c->pool) * fa_n, &ok);
    c->fa_parts = alloc_f((size_t)slm_pool_size(c->pool) * slm_fa_part_floats(cfg->n_heads, cfg->head_dim), &ok);
    c->tokens = malloc((size_t)p.n_ctx * sizeof *c->tokens);
    c->tok_buf = malloc(B * sizeof *c->tok_buf);
    c->spans = malloc(B * sizeof *c->spans);
    c->out_rows = malloc(B * sizeof *c->out_rows);
    c->fa_args = malloc(B * sizeof(slm_fa_args));
    c->fa_items = malloc((B + 1) * sizeof *c->fa_items);
    if (!c->tokens || !c->tok_buf || !c->spans || !c->out_rows || !c->fa_args || !c->fa_items) ok = 0;
    if (!ok) {
        slm_ctx_free(c);
        return slm_error(SLM_ERR_NOMEM, "context: out of memory for scratch buffers");
    }
    if ((s = slm_mm_init(&c->mm, c->pool, k, p.max_batch, (int64_t)rowmax))) {
        slm_ctx_free(c);
        return s;
    }
    *out = c;
    return SLM_OK;
}

void slm_ctx_free(slm_ctx *c) {
    if (!c) return;
    if (c->kv) slm_seq_release(c->kv, &c->seq);
    slm_kv_free(c->kv);
    slm_mm_free(&c->mm);
    if (c->owns_pool) slm_pool_free(c->pool);
    float *bufs[] = {c->x,  c->xb,  c->xb2,      c->q,        c->k,     c->v,
                     c->att, c->hb, c->hb2, c->rope_cos, c->rope_sin,
                     c->fa_scratch, c->fa_parts, c->lr_t, c->lr_y, c->h_prev};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(c->tokens);
    free(c->tok_buf);
    free(c->spans);
    free(c->out_rows);
    free(c->fa_args);
    free(c->fa_items);
    free(c);
}

void slm_ctx_set_tap(slm_ctx *c, slm_tap_fn fn, void *user) {
    c->tap = fn;
    c->tap_user = fn ? user : NULL;
}

int slm_ctx_len(const slm_ctx *c) { return c->seq.n_tokens; }

void slm_ctx_truncate(slm_ctx *c, int n) {
    if (n < c->seq.n_tokens) slm_seq_truncate(c->kv, &c->seq, n);
}

/* Attention of one layer. One span: tiled prefill split by (query tile, KV head) items, or
 * for a single token with a long context, split-key decoding whose per-thread parts are merged
 * after the run. Several spans: the work items of all spans are dealt out together. */
typedef struct {
    slm_ctx *c;
    const slm_fa_args *a; /* [n_spans] */
    int n_spans;
    const long *items;    /* [n_spans + 1] prefix sums */
    bool split_keys;
} attn_job;

static void attention_task(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const slm_config *cfg = &j->c->model->cfg;
    const size_t fa_n = slm_fa_scratch_floats(cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    float *scratch = j->c->fa_scratch + (size_t)ith * fa_n;
    if (j->split_keys) {
        long lo, hi;
        slm_pool_split((long)j->a[0].pos0 + 1, ith, nth, SLM_FA_KTILE, &lo, &hi);
        slm_fa_decode_part(&j->a[0], (int)lo, (int)hi, scratch,
                           j->c->fa_parts + (size_t)ith * slm_fa_part_floats(cfg->n_heads, cfg->head_dim));
        return;
    }
    /* items interleaved across threads: later query tiles see more keys */
    int s = 0;
    for (long it = ith; it < j->items[j->n_spans]; it += nth) {
        while (it >= j->items[s + 1]) s++;
        slm_fa_prefill(&j->a[s], it - j->items[s], it - j->items[s] + 1, scratch);
    }
}

static void attention(slm_ctx *c, int layer, const struct slm_span *sp, int n_spans) {
    const slm_config *cfg = &c->model->cfg;
    const int nth = slm_pool_size(c->pool), qd = cfg->n_heads * cfg->head_dim;
    slm_fa_args *a = c->fa_args;
    c->fa_items[0] = 0;
    for (int i = 0; i < n_spans; i++) {
        a[i] = (slm_fa_args){c->kv, sp[i].seq, layer, c->q + (size_t)sp[i].t0 * qd, sp[i].n, sp[i].pos0,
                             cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, c->att + (size_t)sp[i].t0 * qd,
                             c->simd_attn, c->simd_attn && c->isa == SLM_ISA_AVX512 && slm_fa_avx512_available()};
        c->fa_items[i + 1] = c->fa_items[i] + slm_fa_prefill_items(&a[i]);
    }
    attn_job aj = {c, a, n_spans, c->fa_items,
                   !c->p.deterministic && n_spans == 1 && sp[0].n == 1 && nth > 1 && sp[0].pos0 + 1 >= SLM_FA_SPLIT_MIN};
    slm_pool_run(c->pool, attention_task, &aj);
    if (aj.split_keys) slm_fa_decode_merge(c->fa_parts, nth, cfg->n_heads, cfg->head_dim, a[0].out);
}

/* y [n][W rows] += B (A x) for a layer's low-rank delta (nothing for rank 0). */
static void add_delta(slm_ctx *c, const slm_lowrank *d, const float *x, int n, float *y) {
    if (!d->rank) return;
    slm_matmul(&c->mm, &d->a, x, n, c->lr_t);
    slm_matmul(&c->mm, &d->b, c->lr_t, n, c->lr_y);
    const size_t len = (size_t)n * (size_t)d->b.rows;
    for (size_t i = 0; i < len; i++) y[i] += c->lr_y[i];
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

/* Early exit of a single token at position pos of sequence seq: layers [from, n_layers) only
 * compute and cache its keys and values from the exited residual stream c->x. */
static void exit_fill_kv(slm_ctx *c, int from, slm_seq *seq, int pos) {
    const slm_model *m = c->model;
    const slm_config *cfg = &m->cfg;
    const int dim = cfg->dim, hd = cfg->head_dim, kvd = cfg->n_kv_heads * hd;
    for (int l = from; l < c->p.n_layers; l++) {
        const slm_layer *L = &m->layers[l];
        if (L->kv_src != l) continue;
        slm_rmsnorm(c->xb, c->x, L->attn_norm, dim, cfg->norm_eps);
        slm_matmul(&c->mm, &L->wk, c->xb, 1, c->k);
        slm_matmul(&c->mm, &L->wv, c->xb, 1, c->v);
        add_delta(c, &L->delta[SLM_LIN_K], c->xb, 1, c->k);
        add_delta(c, &L->delta[SLM_LIN_V], c->xb, 1, c->v);
        if (L->bk)
            for (int i = 0; i < kvd; i++) c->k[i] += L->bk[i];
        if (L->bv)
            for (int i = 0; i < kvd; i++) c->v[i] += L->bv[i];
        slm_rope(c->k, cfg->n_kv_heads, hd, cfg->rope_dim, c->rope_cos, c->rope_sin, cfg->rope_mode == SLM_ROPE_NEOX);
        slm_kv_store(c->kv, seq, L->kv_slot, pos, c->k, c->v);
    }
}

/* One forward pass over n <= max_batch tokens in spans (blocks already reserved); logits of
 * the rows out_rows[0..n_out) to logits [n_out][vocab]. */
static void forward_batch(slm_ctx *c, const int32_t *tokens, int n, const struct slm_span *sp, int n_spans,
                          const int32_t *out_rows, int n_out, float *logits, int l0, int l1) {
    const slm_model *m = c->model;
    const slm_config *cfg = &m->cfg;
    const int dim = cfg->dim, hd = cfg->head_dim, ffn = cfg->ffn_dim;
    const int qd = cfg->n_heads * hd, kvd = cfg->n_kv_heads * hd, half = cfg->rope_dim / 2;
    const int neox = cfg->rope_mode == SLM_ROPE_NEOX;

    for (int i = 0; i < n_spans; i++)
        for (int t = sp[i].t0; t < sp[i].t0 + sp[i].n; t++) {
            if (tokens) slm_mat_row(&m->tok_embd, tokens[t], c->x + (size_t)t * dim);
            slm_rope_table(c->rope_cos + (size_t)t * half, c->rope_sin + (size_t)t * half, cfg->rope_dim,
                           (float)(sp[i].pos0 + t - sp[i].t0) * cfg->rope_scale, cfg->rope_base);
        }

    const int n_layers = l1;
    const bool may_exit = c->p.early_exit != 0 && n == 1 && l0 == 0 && l1 == c->p.n_layers;
    int layers_run = n_layers;
    for (int l = l0; l < n_layers; l++) {
        const slm_layer *L = &m->layers[l];
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_RESID, c->x, n, dim);
        if (may_exit) memcpy(c->h_prev, c->x, (size_t)dim * sizeof *c->x);
        /* attention */
        for (int t = 0; t < n; t++)
            slm_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->attn_norm, dim, cfg->norm_eps);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_ATTN_IN, c->xb, n, dim);
        const bool own_kv = L->kv_src == l; /* else attend to an earlier layer's cached keys */
        slm_matmul(&c->mm, &L->wq, c->xb, n, c->q);
        add_delta(c, &L->delta[SLM_LIN_Q], c->xb, n, c->q);
        if (own_kv) {
            slm_matmul(&c->mm, &L->wk, c->xb, n, c->k);
            slm_matmul(&c->mm, &L->wv, c->xb, n, c->v);
            add_delta(c, &L->delta[SLM_LIN_K], c->xb, n, c->k);
            add_delta(c, &L->delta[SLM_LIN_V], c->xb, n, c->v);
        }
        for (int i = 0; i < n_spans; i++)
        for (int t = sp[i].t0; t < sp[i].t0 + sp[i].n; t++) {
            float *q = c->q + (size_t)t * qd, *k = c->k + (size_t)t * kvd, *v = c->v + (size_t)t * kvd;
            if (L->bq)
                for (int i = 0; i < qd; i++) q[i] += L->bq[i];
            const float *ct = c->rope_cos + (size_t)t * half, *st = c->rope_sin + (size_t)t * half;
            slm_rope(q, cfg->n_heads, hd, cfg->rope_dim, ct, st, neox);
            if (!own_kv) continue;
            if (L->bk)
                for (int i = 0; i < kvd; i++) k[i] += L->bk[i];
            if (L->bv)
                for (int i = 0; i < kvd; i++) v[i] += L->bv[i];
            slm_rope(k, cfg->n_kv_heads, hd, cfg->rope_dim, ct, st, neox);
            slm_kv_store(c->kv, sp[i].seq, L->kv_slot, sp[i].pos0 + t - sp[i].t0, k, v);
        }
        attention(c, L->kv_slot, sp, n_spans);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_ATTN_OUT, c->att, n, qd);
        slm_matmul(&c->mm, &L->wo, c->att, n, c->xb2);
        add_delta(c, &L->delta[SLM_LIN_O], c->att, n, c->xb2);
        for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb2[i];

        /* feed-forward */
        for (int t = 0; t < n; t++)
            slm_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->ffn_norm, dim, cfg->norm_eps);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_FFN_IN, c->xb, n, dim);
        slm_matmul(&c->mm, &L->w_gate, c->xb, n, c->hb);
        slm_matmul(&c->mm, &L->w_up, c->xb, n, c->hb2);
        add_delta(c, &L->delta[SLM_LIN_GATE], c->xb, n, c->hb);
        add_delta(c, &L->delta[SLM_LIN_UP], c->xb, n, c->hb2);
        slm_swiglu(c->hb, c->hb2, n * ffn);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_FFN_MID, c->hb, n, ffn);
        slm_matmul(&c->mm, &L->w_down, c->hb, n, c->xb2);
        add_delta(c, &L->delta[SLM_LIN_DOWN], c->hb, n, c->xb2);
        for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb2[i];
        if (may_exit && l + 1 < n_layers && l + 1 >= c->p.exit_min && cosine(c->x, c->h_prev, dim) >= c->p.early_exit) {
            exit_fill_kv(c, l + 1, sp[0].seq, sp[0].pos0);
            layers_run = l + 1;
            break;
        }
    }
    if (may_exit) {
        c->exit_tokens++;
        c->exit_layers += layers_run;
    }
    if (c->tap && l1 == c->p.n_layers) c->tap(c->tap_user, n_layers, SLM_TAP_RESID, c->x, n, dim);

    if (n_out > 0) {
        for (int i = 0; i < n_out; i++)
            slm_rmsnorm(c->xb + (size_t)i * dim, c->x + (size_t)out_rows[i] * dim, m->out_norm, dim, cfg->norm_eps);
        slm_matmul(&c->mm, &m->output, c->xb, n_out, logits);
    }
}

slm_status slm_ctx_eval(slm_ctx *c, const int32_t *tokens, int n, int n_out, float *logits) {
    const int vocab = c->model->cfg.vocab_size;
    if (n < 0 || n_out < 0 || n_out > n) return slm_error(SLM_ERR_ARG, "eval: bad token count %d / %d", n, n_out);
    if (n_out > 0 && !logits) return slm_error(SLM_ERR_ARG, "eval: no logits buffer");
    const int pos0 = c->seq.n_tokens;
    if (n > c->p.n_ctx - pos0)
        return slm_error(SLM_ERR_FULL, "context full: %d tokens + %d new exceed the context size %d", pos0, n,
                         c->p.n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return slm_error(SLM_ERR_ARG, "eval: token id %d out of range [0, %d)", tokens[i], vocab);
    slm_status s = slm_seq_reserve(c->kv, &c->seq, pos0 + n);
    if (s) return s;
    memcpy(c->tokens + pos0, tokens, (size_t)n * sizeof *tokens);
    for (int done = 0; done < n;) {
        int nb = n - done < c->p.max_batch ? n - done : c->p.max_batch;
        /* rows of this sub-batch that fall in the last n_out positions */
        int out_first = n - n_out; /* index of the first position with logits */
        int lo = out_first > done ? out_first : done;
        int nb_out = done + nb > lo ? done + nb - lo : 0;
        float *dst = nb_out ? logits + (size_t)(lo - out_first) * vocab : NULL;
        struct slm_span sp = {&c->seq, 0, nb, pos0 + done};
        for (int i = 0; i < nb_out; i++) c->out_rows[i] = lo - done + i;
        forward_batch(c, tokens + done, nb, &sp, 1, c->out_rows, nb_out, dst, 0, c->p.n_layers);
        done += nb;
        c->seq.n_tokens = pos0 + done;
    }
    return SLM_OK;
}

slm_status slm_ctx_eval_runs(slm_ctx *c, const slm_run *runs, int n_runs, float *logits) {
    const int vocab = c->model->cfg.vocab_size;
    int total = 0, total_out = 0;
    if (n_runs < 1 || n_runs > c->p.max_batch) return slm_error(SLM_ERR_ARG, "eval: %d runs", n_runs);
    for (int r = 0; r < n_runs; r++) {
        const slm_run *u = &runs[r];
        if (!u->seq || u->n < 1 || u->n_out < 0 || u->n_out > u->n)
            return slm_error(SLM_ERR_ARG, "eval: run %d: bad token count %d / %d", r, u->n, u->n_out);
        if (u->n > c->p.max_batch - total)
            return slm_error(SLM_ERR_ARG, "eval: more than %d tokens in one pass", c->p.max_batch);
        if (u->seq->n_tokens + u->n > c->p.n_ctx)
            return slm_error(SLM_ERR_FULL, "context full: %d tokens + %d new exceed the context size %d",
                             u->seq->n_tokens, u->n, c->p.n_ctx);
        for (int q = 0; q < r; q++)
            if (runs[q].seq == u->seq) return slm_error(SLM_ERR_ARG, "eval: runs %d and %d name the same sequence", q, r);
        for (int i = 0; i < u->n; i++)
            if (u->tokens[i] < 0 || u->tokens[i] >= vocab)
                return slm_error(SLM_ERR_ARG, "eval: token id %d out of range [0, %d)", u->tokens[i], vocab);
        total += u->n;
        total_out += u->n_out;
    }
    if (total_out > 0 && !logits) return slm_error(SLM_ERR_ARG, "eval: no logits buffer");
    /* reserve everything first; undo on failure */
    for (int r = 0; r < n_runs; r++) {
        slm_status s = slm_seq_reserve(c->kv, runs[r].seq, runs[r].seq->n_tokens + runs[r].n);
        if (s) {
            for (int q = 0; q < r; q++) slm_seq_truncate(c->kv, runs[q].seq, runs[q].seq->n_tokens);
            return s;
        }
    }
    int t = 0, o = 0;
    for (int r = 0; r < n_runs; r++) {
        const slm_run *u = &runs[r];
        c->spans[r] = (struct slm_span){u->seq, t, u->n, u->seq->n_tokens};
        memcpy(c->tok_buf + t, u->tokens, (size_t)u->n * sizeof *u->tokens);
        for (int i = u->n - u->n_out; i < u->n; i++) c->out_rows[o++] = t + i;
        t += u->n;
    }
    forward_batch(c, c->tok_buf, total, c->spans, n_runs, c->out_rows, total_out, logits, 0, c->p.n_layers);
    for (int r = 0; r < n_runs; r++) runs[r].seq->n_tokens += runs[r].n;
    return SLM_OK;
}

slm_status slm_ctx_embed(const slm_ctx *c, const int32_t *tokens, int n, float *x) {
    const slm_model *m = c->model;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return slm_error(SLM_ERR_ARG, "eval: token id %d out of range [0, %d)", tokens[i], m->cfg.vocab_size);
    for (int i = 0; i < n; i++) slm_mat_row(&m->tok_embd, tokens[i], x + (size_t)i * m->cfg.dim);
    return SLM_OK;
}

slm_status slm_ctx_eval_layers(slm_ctx *c, float *x, int n, int l0, int l1) {
    const int dim = c->model->cfg.dim;
    if (n < 1 || l0 < 0 || l1 > c->p.n_layers || l0 >= l1)
        return slm_error(SLM_ERR_ARG, "eval: layers [%d, %d) of %d over %d rows", l0, l1, c->p.n_layers, n);
    if (n > c->p.n_ctx) return slm_error(SLM_ERR_FULL, "eval: %d rows exceed the context size %d", n, c->p.n_ctx);
    slm_ctx_truncate(c, 0);
    slm_status s = slm_seq_reserve(c->kv, &c->seq, n);
    if (s) return s;
    for (int done = 0; done < n;) {
        const int nb = n - done < c->p.max_batch ? n - done : c->p.max_batch;
        struct slm_span sp = {&c->seq, 0, nb, done};
        memcpy(c->x, x + (size_t)done * dim, (size_t)nb * dim * sizeof *x);
        forward_batch(c, NULL, nb, &sp, 1, NULL, 0, NULL, l0, l1);
        memcpy(x + (size_t)done * dim, c->x, (size_t)nb * dim * sizeof *x);
        done += nb;
        c->seq.n_tokens = done;
    }
    return SLM_OK;
}
