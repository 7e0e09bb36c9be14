/* bench.c - pp / tg timing runs and the weight traffic of a model. */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/rng.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


void slm_bench_test_name(slm_bench_kind kind, int n_tokens, char *buf, int cap) {
    snprintf(buf, (size_t)cap, "%s%d", kind == SLM_BENCH_PP ? "pp" : "tg", n_tokens);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void slm_bench_summarize(const double *v, int n, slm_bench_stats *st) {
    memset(st, 0, sizeof *st);
    if (n <= 0) return;
    double *s = malloc((size_t)n * sizeof *s);
    double sum = 0, mn = v[0], mx = v[0];
    for (int i = 0; i < n; i++) {
        sum += v[i];
        if (v[i] < mn) mn = v[i];
        if (v[i] > mx) mx = v[i];
    }
    st->n = n;
    st->min = mn;
    st->max = mx;
    st->mean = sum / n;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (v[i] - st->mean) * (v[i] - st->mean);
    st->stddev = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
    if (s) {
        memcpy(s, v, (size_t)n * sizeof *s);
        qsort(s, (size_t)n, sizeof *s, cmp_double);
        st->median = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
        free(s);
    } else {
        st->median = st->mean; /* no memory for a sorted copy: the mean stands in */
    }
}

/* One timed run from an empty context; returns the elapsed seconds in *dt. */
static slm_status run_once(slm_ctx *ctx, const slm_bench_params *p, const int32_t *ids, float *logits, double *dt) {
    slm_ctx_truncate(ctx, 0);
    slm_status s = SLM_OK;
    double t0 = now_s();
    if (p->kind == SLM_BENCH_PP) {
        s = slm_ctx_eval(ctx, ids, p->n_tokens, 1, logits);
    } else {
        for (int i = 0; i < p->n_tokens && !s; i++) s = slm_ctx_eval(ctx, &ids[i], 1, 1, logits);
    }
    *dt = now_s() - t0;
    slm_ctx_truncate(ctx, 0);
    return s;
}

slm_status slm_bench_run(slm_ctx *ctx, const slm_bench_params *p, double *samples, slm_bench_stats *st) {
    memset(st, 0, sizeof *st);
    const int vocab = ctx->model->cfg.vocab_size;
    if (p->kind != SLM_BENCH_PP && p->kind != SLM_BENCH_TG) return slm_error(SLM_ERR_ARG, "bench: unknown test kind");
    if (p->n_tokens < 1 || p->n_tokens > ctx->p.n_ctx)
        return slm_error(SLM_ERR_ARG, "bench: %d tokens do not fit the context of %d", p->n_tokens, ctx->p.n_ctx);
    if (p->reps < 1 || p->warmup < 0) return slm_error(SLM_ERR_ARG, "bench: need at least one timed run");
    if (vocab < 1) return slm_error(SLM_ERR_ARG, "bench: model has no vocabulary");

    int32_t *ids = malloc((size_t)p->n_tokens * sizeof *ids);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    double *tps = malloc((size_t)p->reps * sizeof *tps);
    if (!ids || !logits || !tps) {
        free(ids);
        free(logits);
        free(tps);
        return slm_error(SLM_ERR_NOMEM, "bench: out of memory");
    }
    /* pp and tg draw different sequences from the same seed */
    uint64_t rng = p->seed ^ (p->kind == SLM_BENCH_PP ? 0x7070u : 0x7467u);
    for (int i = 0; i < p->n_tokens; i++) ids[i] = (int32_t)(slm_splitmix64(&rng) % (uint64_t)vocab);

    char name[32];
    slm_bench_test_name(p->kind, p->n_tokens, name, sizeof name);
    const char *label = p->label ? p->label : name;
    slm_status s = SLM_OK;
    for (int r = 0; r < p->warmup + p->reps && !s; r++) {
        double dt;
        if ((s = run_once(ctx, p, ids, logits, &dt))) break;
        double v = dt > 0 ? p->n_tokens / dt : 0.0;
        int timed = r - p->warmup;
        if (timed >= 0) tps[timed] = v;
        if (p->progress) {
            if (timed < 0)
                fprintf(stderr, "bench: %s: warm-up %d/%d: %.2f t/s (not counted)\n", label, r + 1, p->warmup, v);
            else
                fprintf(stderr, "bench: %s: run %d/%d: %.2f t/s\n", label, timed + 1, p->reps, v);
        }
    }
    if (!s) {
        slm_bench_summarize(tps, p->reps, st);
        if (samples) memcpy(samples, tps, (size_t)p->reps * sizeof *tps);
    } else {
        s = slm_error_prefix(s, "bench %s", label);
    }
    free(ids);
    free(logits);
    free(tps);
    return s;
}

static uint64_t mat_bytes(const slm_mat *w) {
    return w->data ? (uint64_t)w->rows * (uint64_t)w->row_bytes : 0;
}

static void add_mat(slm_bench_model *o, const slm_mat *w) {
    if (!w->data) return;
    o->n_matrices++;
    int k = 0;
    while (k < o->n_types && o->types[k].type != w->type) k++;
    if (k == o->n_types) {
        if (k == SLM_BENCH_MAX_TYPES) return; /* more dtypes than the table holds: count only */
        o->types[k].type = w->type;
        o->n_types++;
    }
    o->types[k].count++;
    o->types[k].bytes += mat_bytes(w);
}

void slm_bench_model_info(const slm_model *m, slm_bench_model *o) {
    memset(o, 0, sizeof *o);
    slm_model_size(m, &o->n_params, &o->n_bytes);
    o->bpw = o->n_params ? 8.0 * (double)o->n_bytes / (double)o->n_params : 0.0;
    add_mat(o, &m->tok_embd);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const slm_layer *L = &m->layers[l];
        const slm_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
            add_mat(o, ms[i]);
            o->decode_bytes += mat_bytes(ms[i]);
        }
    }
    if (!m->tied_output) add_mat(o, &m->output);
    o->decode_bytes += mat_bytes(&m->output);
}

/* ---- speculative against plain decoding ---- */

typedef struct {
    int32_t *ids;
    int n, cap;
} bench_ids;

static bool bench_collect(void *user, int32_t id) {
    bench_ids *b = user;
    if (b->n < b->cap) b->ids[b->n] = id;
    b->n++;
    return true;
}

slm_status slm_bench_spec(slm_ctx *ctx, const slm_tokenizer *tok, slm_drafter *d, const slm_spec_params *sp,
                          const int32_t *prompt, int n_prompt, int n_gen, int reps, slm_bench_spec_result *out) {
    memset(out, 0, sizeof *out);
    if (reps < 1 || n_gen < 1) return slm_error(SLM_ERR_ARG, "bench: need at least one run and one token");
    const int nv = ctx->model->cfg.vocab_size;
    slm_sampler_params gp = slm_sampler_defaults();
    gp.temperature = 0;
    slm_sampler *smp = NULL;
    slm_status s = slm_sampler_create(&gp, nv, &smp);
    if (s) return s;
    float *logits = malloc((size_t)nv * sizeof *logits);
    int32_t *a = malloc((size_t)n_gen * sizeof *a), *b = malloc((size_t)n_gen * sizeof *b);
    double *tp = malloc((size_t)reps * 3 * sizeof *tp), *ts = tp ? tp + reps : NULL, *ratio = tp ? tp + 2 * reps : NULL;
    if (!logits || !a || !b || !tp) {
        s = slm_error(SLM_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    out->identical = true;
    long drafted = 0, accepted = 0, steps = 0, generated = 0;
    double draft_s = 0, gen_s = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        bench_ids pa = {a, 0, n_gen}, pb = {b, 0, n_gen};
        slm_gen_stats gs;
        slm_spec_stats ss;
        slm_ctx_truncate(ctx, 0);
        if ((s = slm_generate(ctx, tok, smp, prompt, n_prompt, n_gen, logits, bench_collect, &pa, &gs))) goto out;
        slm_ctx_truncate(ctx, 0);
        if ((s = slm_spec_generate(ctx, tok, smp, d, sp, prompt, n_prompt, n_gen, bench_collect, &pb, &ss))) goto out;
        slm_ctx_truncate(ctx, 0);
        if (pa.n != pb.n || memcmp(a, b, (size_t)pa.n * sizeof *a) != 0) out->identical = false;
        out->n_generated = pa.n;
        if (r < 0) continue;
        tp[r] = gs.gen_s > 0 ? gs.n_generated / gs.gen_s : 0;
        ts[r] = ss.gen.gen_s > 0 ? ss.gen.n_generated / ss.gen.gen_s : 0;
        ratio[r] = tp[r] > 0 ? ts[r] / tp[r] : 0;
        drafted += ss.n_drafted;
        accepted += ss.n_accepted;
        steps += ss.n_steps;
        generated += ss.gen.n_generated;
        draft_s += ss.draft_s;
        gen_s += ss.gen.gen_s;
    }
    slm_bench_summarize(tp, reps, &out->plain);
    slm_bench_summarize(ts, reps, &out->spec);
    slm_bench_stats rs;
    slm_bench_summarize(ratio, reps, &rs);
    out->speedup = rs.median;
    out->accept_rate = drafted ? (double)accepted / drafted : 0;
    out->tokens_per_step = steps ? (double)generated / steps : 0;
    out->draft_share = gen_s > 0 ? draft_s / gen_s : 0;
out:
    slm_sampler_free(smp);
    free(logits);
    free(a);
    free(b);
    free(tp);
    return s;
}
