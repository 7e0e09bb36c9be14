/* forward.c - the Llama-family forward pass over a batch of tokens of one sequence.
 *
 * Read it top to bottom: embed, then per layer attention (RMSNorm, Q/K/V, RoPE, cache
 * append, causal GQA, output projection, residual) and feed-forward (RMSNorm, gate/up,
 * SwiGLU, down, residual), then the final norm and the output head for the requested rows. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../kernels/attention.h"
#include "../kernels/flash_attn.h"
#include "../kernels/matmul.h"
#include "../kernels/ops.h"

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

    slm_ctx *c = calloc(1, sizeof *c);
    if (!c) return slm_error(SLM_ERR_NOMEM, "context: out of memory");
    c->model = m;
    c->p = p;
    const int kvd = cfg->n_kv_heads * cfg->head_dim;
    slm_status s = slm_kv_create(p.kv_type, cfg->n_layers, kvd, p.block_size, p.n_ctx, &c->kv);
    if (s) {
        free(c);
        return s;
    }
    if ((s = slm_pool_create(p.n_threads, &c->pool))) {
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
    c->rope_cos = alloc_f(B * (cfg->rope_dim / 2), &ok);
    c->rope_sin = alloc_f(B * (cfg->rope_dim / 2), &ok);
    const size_t fa_n = slm_fa_scratch_floats(cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    c->fa_scratch = alloc_f((size_t)slm_pool_size(c->pool) * fa_n, &ok);
    c->fa_parts = alloc_f((size_t)slm_pool_size(c->pool) * slm_fa_part_floats(cfg->n_heads, cfg->head_dim), &ok);
    c->tokens = malloc((size_t)p.n_ctx * sizeof *c->tokens);
    if (!c->tokens) ok = 0;
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
    slm_pool_free(c->pool);
    float *bufs[] = {c->x,  c->xb,  c->xb2,      c->q,        c->k,     c->v,
                     c->att, c->hb, c->hb2, c->rope_cos, c->rope_sin,
                     c->fa_scratch, c->fa_parts};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(c->tokens);
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

/* Attention of one layer: tiled prefill split by (query tile, KV head) items, or for a single
 * token with a long context, split-key decoding whose per-thread parts are merged after the run. */
typedef struct {
    slm_ctx *c;
    slm_fa_args a;
    bool split_keys;
} attn_job;

static void attention_task(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const slm_config *cfg = &j->c->model->cfg;
    const size_t fa_n = slm_fa_scratch_floats(cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    float *scratch = j->c->fa_scratch + (size_t)ith * fa_n;
    if (j->split_keys) {
        long lo, hi;
        slm_pool_split((long)j->a.pos0 + 1, ith, nth, SLM_FA_KTILE, &lo, &hi);
        slm_fa_decode_part(&j->a, (int)lo, (int)hi, scratch,
                           j->c->fa_parts + (size_t)ith * slm_fa_part_floats(cfg->n_heads, cfg->head_dim));
        return;
    }
    /* items interleaved across threads: later query tiles see more keys */
    const long n_items = slm_fa_prefill_items(&j->a);
    for (long it = ith; it < n_items; it += nth) slm_fa_prefill(&j->a, it, it + 1, scratch);
}

static void attention(slm_ctx *c, int layer, int n, int pos0) {
    const slm_config *cfg = &c->model->cfg;
    const int nth = slm_pool_size(c->pool);
    attn_job aj = {c,
                   {c->kv, &c->seq, layer, c->q, n, pos0, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, c->att,
                    c->simd_attn, c->simd_attn && c->isa == SLM_ISA_AVX512 && slm_fa_avx512_available()},
                   n == 1 && nth > 1 && pos0 + 1 >= SLM_FA_SPLIT_MIN};
    slm_pool_run(c->pool, attention_task, &aj);
    if (aj.split_keys) slm_fa_decode_merge(c->fa_parts, nth, cfg->n_heads, cfg->head_dim, c->att);
}

/* One forward pass over n <= max_batch tokens at positions pos0.. ; blocks already reserved. */
static void forward_batch(slm_ctx *c, const int32_t *tokens, int n, int pos0, int n_out, float *logits) {
    const slm_model *m = c->model;
    const slm_config *cfg = &m->cfg;
    const int dim = cfg->dim, hd = cfg->head_dim, ffn = cfg->ffn_dim;
    const int qd = cfg->n_heads * hd, kvd = cfg->n_kv_heads * hd, half = cfg->rope_dim / 2;
    const int neox = cfg->rope_mode == SLM_ROPE_NEOX;

    for (int t = 0; t < n; t++) {
        slm_mat_row(&m->tok_embd, tokens[t], c->x + (size_t)t * dim);
        slm_rope_table(c->rope_cos + (size_t)t * half, c->rope_sin + (size_t)t * half, cfg->rope_dim,
                       (float)(pos0 + t) * cfg->rope_scale, cfg->rope_base);
    }

    for (int l = 0; l < cfg->n_layers; l++) {
        const slm_layer *L = &m->layers[l];
        /* attention */
        for (int t = 0; t < n; t++)
            slm_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->attn_norm, dim, cfg->norm_eps);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_ATTN_IN, c->xb, n, dim);
        slm_matmul(&c->mm, &L->wq, c->xb, n, c->q);
        slm_matmul(&c->mm, &L->wk, c->xb, n, c->k);
        slm_matmul(&c->mm, &L->wv, c->xb, n, c->v);
        for (int t = 0; t < n; t++) {
            float *q = c->q + (size_t)t * qd, *k = c->k + (size_t)t * kvd, *v = c->v + (size_t)t * kvd;
            if (L->bq)
                for (int i = 0; i < qd; i++) q[i] += L->bq[i];
            if (L->bk)
                for (int i = 0; i < kvd; i++) k[i] += L->bk[i];
            if (L->bv)
                for (int i = 0; i < kvd; i++) v[i] += L->bv[i];
            const float *ct = c->rope_cos + (size_t)t * half, *st = c->rope_sin + (size_t)t * half;
            slm_rope(q, cfg->n_heads, hd, cfg->rope_dim, ct, st, neox);
            slm_rope(k, cfg->n_kv_heads, hd, cfg->rope_dim, ct, st, neox);
            slm_kv_store(c->kv, &c->seq, l, pos0 + t, k, v);
        }
        attention(c, l, n, pos0);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_ATTN_OUT, c->att, n, qd);
        slm_matmul(&c->mm, &L->wo, c->att, n, c->xb2);
        for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb2[i];

        /* feed-forward */
        for (int t = 0; t < n; t++)
            slm_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->ffn_norm, dim, cfg->norm_eps);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_FFN_IN, c->xb, n, dim);
        slm_matmul(&c->mm, &L->w_gate, c->xb, n, c->hb);
        slm_matmul(&c->mm, &L->w_up, c->xb, n, c->hb2);
        slm_swiglu(c->hb, c->hb2, n * ffn);
        if (c->tap) c->tap(c->tap_user, l, SLM_TAP_FFN_MID, c->hb, n, ffn);
        slm_matmul(&c->mm, &L->w_down, c->hb, n, c->xb2);
        for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb2[i];
    }

    if (n_out > 0) {
        const int first = n - n_out;
        for (int t = first; t < n; t++)
            slm_rmsnorm(c->xb + (size_t)(t - first) * dim, c->x + (size_t)t * dim, m->out_norm, dim, cfg->norm_eps);
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
        forward_batch(c, tokens + done, nb, pos0 + done, nb_out, dst);
        done += nb;
        c->seq.n_tokens = pos0 + done;
    }
    return SLM_OK;
}
