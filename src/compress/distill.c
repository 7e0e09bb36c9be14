/* distill.c - the distillation loop (see distill.h): data windows, teacher logits, student
 * forward/backward, clipping, AdamW, evaluation, JSON log, checkpoints, progress. */
#include "distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/rng.h"
#include "../core/sha256.h"
#include "../core/strbuf.h"
#include "../model/sampler.h"
#include "../train/ckpt.h"
#include "../train/optim.h"

#define GEN_PROMPT 16
#define GEN_KEY 0x67656e6572617465ull /* separates the sampling stream from the offsets */

const char *slm_distill_loss_name(slm_distill_loss l) {
    switch (l) {
    case SLM_DL_KL: return "kl";
    case SLM_DL_RKL: return "rkl";
    case SLM_DL_CE: return "ce";
    case SLM_DL_MIX: return "mix";
    }
    return "?";
}

/* High 64 bits of a * b. */
static uint64_t mulhi64(uint64_t a, uint64_t b) {
    const uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    const uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

static uint64_t key4(uint64_t seed, int64_t step, int a, int b) {
    return slm_mix64(slm_mix64(slm_mix64(slm_mix64(seed) ^ (uint64_t)step) ^ (uint64_t)a) ^ (uint64_t)b);
}

uint64_t slm_distill_offset(uint64_t seed, int64_t step, int a, int b, size_t n_train, int seq) {
    return mulhi64(key4(seed, step, a, b), (uint64_t)(n_train - (size_t)seq));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    slm_tmodel *m;
    slm_ctx *t;
    const slm_distill_data *d;
    const slm_distill_params *p;
    slm_pool *pool;
    int V, B, L, A, N, n_gen;
    int32_t *tokens;    /* [N] student input */
    int32_t *targets;   /* [N] next tokens */
    float *tl;          /* [N][V] teacher logits */
    treal *logits;      /* [N][V] */
    treal *dlogits;     /* [N][V] */
    float *ms, *vs;     /* [n_state] AdamW moments of the trainable tensors, table order */
    size_t n_state;
    uint64_t *offsets;  /* [A*B] of the current step */
    slm_candidate *cand; /* [V] */
    double *part;       /* [N / LOSS_CHUNK + 1] per-chunk loss sums */
    double teacher_s;   /* time spent in fill_sequence */
} dstate;

/* Losses over rows in chunks of LOSS_CHUNK rows on the pool; the chunk sums are added in
 * order, so the result does not depend on the thread count. */
enum { LOSS_CHUNK = 8 };

typedef struct {
    dstate *st;
    slm_distill_loss kind; /* KL, RKL or CE */
    int N;
    float temp;
    double scale;
    treal *dl; /* NULL: value only */
} loss_job;

static void loss_task(void *arg, int ith, int nth) {
    const loss_job *j = arg;
    const dstate *st = j->st;
    const int V = st->V, n_chunks = (j->N + LOSS_CHUNK - 1) / LOSS_CHUNK;
    for (int c = ith; c < n_chunks; c += nth) {
        const int r0 = c * LOSS_CHUNK, n = j->N - r0 < LOSS_CHUNK ? j->N - r0 : LOSS_CHUNK;
        const size_t off = (size_t)r0 * V;
        treal *dl = j->dl ? j->dl + off : NULL;
        switch (j->kind) {
        case SLM_DL_KL: st->part[c] = slm_t_kl_loss(st->logits + off, st->tl + off, n, V, j->temp, j->scale, dl); break;
        case SLM_DL_RKL: st->part[c] = slm_t_rkl_loss(st->logits + off, st->tl + off, n, V, j->temp, j->scale, dl); break;
        default: st->part[c] = slm_t_ce_loss(st->logits + off, st->targets + r0, n, V, j->scale, dl); break;
        }
    }
}

static double loss_rows(dstate *st, slm_distill_loss kind, int N, float temp, double scale, treal *dl) {
    loss_job j = {st, kind, N, temp, scale, dl};
    slm_pool_run(st->pool, loss_task, &j);
    double sum = 0;
    for (int c = 0; c < (N + LOSS_CHUNK - 1) / LOSS_CHUNK; c++) sum += st->part[c];
    return sum;
}

/* Sequence b of micro-batch a of step s: input, targets and teacher logits (rows of L). */
static slm_status fill_sequence(dstate *st, int64_t step, int a, int b, int32_t *in, int32_t *tgt, float *tl) {
    const int L = st->L, V = st->V;
    const uint64_t off = slm_distill_offset(st->p->seed, step, a, b, st->d->n_train, L);
    st->offsets[a * st->B + b] = off;
    const int32_t *src = st->d->train + off;
    memcpy(in, src, (size_t)L * sizeof *in);
    memcpy(tgt, src + 1, (size_t)L * sizeof *tgt);
    if (st->d->bos >= 0) in[0] = st->d->bos;
    slm_ctx_truncate(st->t, 0);
    const bool gen = b >= st->B - st->n_gen && L > GEN_PROMPT;
    if (!gen) return slm_ctx_eval(st->t, in, L, L, tl);
    slm_status s = slm_ctx_eval(st->t, in, GEN_PROMPT, GEN_PROMPT, tl);
    slm_sampler_params sp = slm_sampler_defaults();
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    uint64_t rng = key4(st->p->seed ^ GEN_KEY, step, a, b);
    for (int i = GEN_PROMPT; i <= L && !s; i++) {
        rng += 0x9E3779B97F4A7C15ull;
        const float u = (float)(slm_mix64(rng) >> 40) * (1.0f / 16777216.0f);
        const int32_t tok = slm_sample_logits(tl + (size_t)(i - 1) * V, V, &sp, u, st->cand);
        tgt[i - 1] = tok;
        if (i == L) break;
        in[i] = tok;
        s = slm_ctx_eval(st->t, &in[i], 1, 1, tl + (size_t)i * V);
    }
    slm_ctx_truncate(st->t, 0);
    return s;
}

/* One optimizer step. */
static slm_status train_step(dstate *st, int64_t s, double *loss, double *norm, float *lr) {
    const slm_distill_params *p = st->p;
    const int N = st->N, V = st->V;
    const double scale = 1.0 / ((double)N * st->A);
    const float w = p->loss == SLM_DL_MIX ? p->ce_weight : 0.0f;
    double sum = 0;
    slm_tmodel_zero_grad(st->m);
    for (int a = 0; a < st->A; a++) {
        for (int b = 0; b < st->B; b++) {
            const size_t r = (size_t)b * st->L;
            const double t0 = now_s();
            slm_status e = fill_sequence(st, s, a, b, st->tokens + r, st->targets + r, st->tl + r * V);
            st->teacher_s += now_s() - t0;
            if (e) return e;
        }
        slm_tmodel_forward(st->m, st->tokens, st->B, st->L, st->logits);
        memset(st->dlogits, 0, (size_t)N * V * sizeof *st->dlogits);
        switch (p->loss) {
        case SLM_DL_KL:
        case SLM_DL_RKL:
        case SLM_DL_CE: sum += loss_rows(st, p->loss, N, p->temp, scale, st->dlogits); break;
        case SLM_DL_MIX:
            if (w < 1) sum += (1.0 - w) * loss_rows(st, SLM_DL_KL, N, p->temp, scale * (1.0 - w), st->dlogits);
            if (w > 0) sum += w * loss_rows(st, SLM_DL_CE, N, p->temp, scale * w, st->dlogits);
            break;
        }
        slm_tmodel_backward(st->m, st->dlogits);
    }
    *loss = sum * scale;
    int np = 0;
    const slm_tparam *tp = slm_tmodel_params(st->m, &np);
    float *wt = slm_tmodel_weights(st->m), *g = slm_tmodel_grads(st->m);
    double ss = 0;
    for (int i = 0; i < np; i++)
        if (tp[i].trainable) ss += slm_sumsq(g + tp[i].offset, tp[i].n);
    *norm = sqrt(ss);
    if (p->clip > 0 && *norm > p->clip) {
        const float c = (float)(p->clip / *norm);
        for (int i = 0; i < np; i++)
            if (tp[i].trainable) slm_scale(g + tp[i].offset, tp[i].n, c);
    }
    *lr = slm_lr_at(s, p->warmup, p->total_steps, p->lr, p->min_lr);
    slm_adamw o;
    slm_adamw_defaults(&o);
    o.weight_decay = p->weight_decay;
    size_t so = 0;
    for (int i = 0; i < np; i++) {
        if (!tp[i].trainable) continue;
        slm_adamw_update(st->pool, &o, s + 1, *lr, tp[i].kind != SLM_TP_VECTOR, wt + tp[i].offset, g + tp[i].offset,
                         st->ms + so, st->vs + so, tp[i].n);
        so += tp[i].n;
    }
    return SLM_OK;
}

/* KL (tau 1) and CE of the student against the teacher over held-out windows of L. */
static slm_status evaluate(dstate *st, double *kl, double *ce, long *n_tok) {
    const int L = st->L;
    const slm_distill_data *d = st->d;
    int64_t budget = st->p->eval_tokens;
    const size_t usable = d->n_eval > 0 ? d->n_eval - 1 : 0;
    if ((uint64_t)budget > usable) budget = (int64_t)usable;
    const int64_t n_win = budget / L;
    double skl = 0, sce = 0;
    for (int64_t w = 0; w < n_win; w++) {
        const int32_t *src = d->eval + w * L;
        memcpy(st->tokens, src, (size_t)L * sizeof *st->tokens);
        memcpy(st->targets, src + 1, (size_t)L * sizeof *st->targets);
        if (d->bos >= 0) st->tokens[0] = d->bos;
        slm_ctx_truncate(st->t, 0);
        slm_status s = slm_ctx_eval(st->t, st->tokens, L, L, st->tl);
        slm_ctx_truncate(st->t, 0);
        if (s) return s;
        slm_tmodel_forward(st->m, st->tokens, 1, L, st->logits);
        skl += loss_rows(st, SLM_DL_KL, L, 1.0f, 0.0, NULL);
        sce += loss_rows(st, SLM_DL_CE, L, 1.0f, 0.0, NULL);
    }
    *n_tok = (long)(n_win * L);
    *kl = n_win ? skl / (double)*n_tok : NAN;
    *ce = n_win ? sce / (double)*n_tok : NAN;
    return SLM_OK;
}

/* The checkpoint configuration: the caller's lines, then everything of the run that shapes
 * the weights. */
static char *make_config(const dstate *st) {
    const slm_distill_params *p = st->p;
    const slm_tcfg *tc = slm_tmodel_cfg(st->m);
    slm_sb b = {0};
    slm_sb_printf(&b, "%s", p->config ? p->config : "");
    slm_sb_printf(&b, "batch=%d\nseq=%d\naccum=%d\nloss=%s\ntemp=%.9g\nce_weight=%.9g\n", p->batch, p->seq, p->accum,
                  slm_distill_loss_name(p->loss), p->temp, p->loss == SLM_DL_MIX ? p->ce_weight : 0.0f);
    slm_sb_printf(&b, "lr=%.9g\nmin_lr=%.9g\nwarmup=%lld\nwd=%.9g\nclip=%.9g\ngen_frac=%.9g\nseed=%llu\n", p->lr,
                  p->min_lr, (long long)p->warmup, p->weight_decay, p->clip, p->gen_frac,
                  (unsigned long long)p->seed);
    slm_sb_printf(&b, "total_steps=%lld\n", (long long)p->total_steps);
    char hex[65];
    slm_sha256 h;
    uint8_t dig[32];
    slm_sha256_init(&h);
    slm_sha256_update(&h, st->d->train, st->d->n_train * sizeof *st->d->train);
    if (st->d->n_eval) slm_sha256_update(&h, st->d->eval, st->d->n_eval * sizeof *st->d->eval);
    slm_sha256_final(&h, dig);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dig[i]);
    slm_sb_printf(&b, "train_tokens=%zu\nheld_out_tokens=%zu\nbos=%d\ntokens_sha256=%s\n", st->d->n_train,
                  st->d->n_eval, st->d->bos, hex);
    slm_sb_printf(&b, "student_layers=%d\ndim=%d\nvocab=%d\nlora_rank=%d\nlora_alpha=%.9g\n", tc->cfg.n_layers,
                  tc->cfg.dim, tc->cfg.vocab_size, tc->lora_rank, tc->lora_alpha);
    int np = 0;
    const slm_tparam *tp = slm_tmodel_params(st->m, &np);
    for (int i = 0; i < np; i++)
        slm_sb_printf(&b, "param.%s=%lldx%lld kind %d%s\n", tp[i].name, (long long)tp[i].rows, (long long)tp[i].cols,
                      (int)tp[i].kind, tp[i].trainable ? " trained" : " frozen");
    if (b.oom) {
        slm_sb_free(&b);
        return NULL;
    }
    return b.p;
}

static void log_step(FILE *f, const dstate *st, int64_t done, uint64_t tokens, double loss, float lr, double norm) {
    fprintf(f, "{\"step\":%lld,\"tokens\":%llu,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"offsets\":[",
            (long long)done, (unsigned long long)tokens, loss, (double)lr, norm);
    for (int i = 0; i < st->A * st->B; i++) fprintf(f, i ? ",%llu" : "%llu", (unsigned long long)st->offsets[i]);
    fputs("]}\n", f);
    fflush(f);
}

static void fmt_eta(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    const long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void progress(const slm_distill_params *p, int64_t done, double run_loss, double tok_s, double eta, bool last) {
    char e[32];
    fmt_eta(eta, e, sizeof e);
    if (p->progress == 1) {
        const int width = 24;
        const int fill = (int)((double)done / (double)p->total_steps * width);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\rdistill [%s] %lld/%lld loss %.4f %.0f tok/s ETA %s  ", bar, (long long)done,
                (long long)p->total_steps, run_loss, tok_s, e);
        if (last) fputc('\n', stderr);
    } else if (p->progress == 2) {
        fprintf(stderr, "distill: step %lld/%lld loss %.4f %.0f tok/s ETA %s\n", (long long)done,
                (long long)p->total_steps, run_loss, tok_s, e);
    }
}

slm_status slm_distill_run(slm_tmodel *student, slm_ctx *teacher, const slm_distill_data *d,
                           const slm_distill_params *p, slm_distill_result *r) {
    memset(r, 0, sizeof *r);
    r->first_loss = r->final_loss = NAN;
    r->eval_kl = r->eval_ce = NAN;
    const slm_tcfg *tc = slm_tmodel_cfg(student);
    dstate st = {.m = student, .t = teacher, .d = d, .p = p, .pool = teacher->pool, .V = tc->cfg.vocab_size,
                 .B = p->batch, .L = p->seq, .A = p->accum};
    st.N = st.B * st.L;
    st.n_gen = (int)floor((double)p->gen_frac * st.B + 0.5);
    if (st.n_gen > st.B) st.n_gen = st.B;
    if (teacher->model->cfg.vocab_size != st.V)
        return slm_error(SLM_ERR_ARG, "distill: the student has %d tokens, the teacher %d", st.V,
                         teacher->model->cfg.vocab_size);
    if (d->n_train < (size_t)st.L + 2)
        return slm_error(SLM_ERR_ARG, "distill: %zu training tokens, need more than a sequence of %d", d->n_train,
                         st.L);
    if (teacher->p.n_ctx < st.L) return slm_error(SLM_ERR_ARG, "distill: teacher context %d < %d", teacher->p.n_ctx, st.L);
    int np = 0;
    const slm_tparam *tp = slm_tmodel_params(student, &np);
    for (int i = 0; i < np; i++)
        if (tp[i].trainable) st.n_state += tp[i].n;
    const size_t nv = (size_t)st.N * st.V;
    slm_status s = SLM_OK;
    char *config = make_config(&st);
    st.tokens = malloc((size_t)st.N * sizeof *st.tokens);
    st.targets = malloc((size_t)st.N * sizeof *st.targets);
    st.tl = malloc(nv * sizeof *st.tl);
    st.logits = malloc(nv * sizeof *st.logits);
    st.dlogits = malloc(nv * sizeof *st.dlogits);
    st.ms = calloc(st.n_state ? st.n_state : 1, sizeof *st.ms);
    st.vs = calloc(st.n_state ? st.n_state : 1, sizeof *st.vs);
    st.offsets = calloc((size_t)st.A * st.B, sizeof *st.offsets);
    st.cand = malloc((size_t)st.V * sizeof *st.cand);
    st.part = malloc(((size_t)st.N / LOSS_CHUNK + 1) * sizeof *st.part);
    if (!config || !st.tokens || !st.targets || !st.tl || !st.logits || !st.dlogits || !st.ms || !st.vs ||
        !st.offsets || !st.cand || !st.part) {
        s = slm_error(SLM_ERR_NOMEM, "distill: out of memory (batch of %d x %d positions of %d logits)", st.B, st.L,
                      st.V);
        goto done;
    }
    int64_t step = 0;
    uint64_t tokens = 0;
    if (p->resume_path) {
        if ((s = slm_ckpt_read(p->resume_path, config, slm_tmodel_n_params(student), st.n_state,
                               slm_tmodel_weights(student), st.ms, st.vs, &step, &tokens)))
            goto done;
        if (step > p->total_steps) {
            s = slm_error(SLM_ERR_ARG, "distill: checkpoint at step %lld is past the run's %lld steps",
                          (long long)step, (long long)p->total_steps);
            goto done;
        }
    }
    r->first_step = step;
    int64_t end = p->total_steps;
    if (p->stop_after > 0 && p->stop_after < end) end = p->stop_after;
    const int64_t every10 = p->total_steps >= 10 ? p->total_steps / 10 : 1;
    double ring[10];
    int n_ring = 0;
    if (p->eval_every > 0 && step == 0) {
        /* the untrained student: the start of the KL-vs-tokens curve */
        long nt = 0;
        double kl, ce;
        if ((s = evaluate(&st, &kl, &ce, &nt))) goto done;
        if (p->log && nt > 0) {
            fprintf(p->log, "{\"step\":0,\"tokens\":0,\"eval_kl\":%.9g,\"eval_ce\":%.9g,\"eval_tokens\":%ld}\n", kl, ce, nt);
            fflush(p->log);
        }
    }
    const double t0 = now_s();
    for (; step < end; step++) {
        double loss, norm;
        float lr;
        if ((s = train_step(&st, step, &loss, &norm, &lr))) goto done;
        tokens += (uint64_t)st.N * st.A;
        r->run_tokens += (uint64_t)st.N * st.A;
        if (isnan(r->first_loss)) r->first_loss = loss;
        r->final_loss = loss;
        ring[n_ring++ % 10] = loss;
        const int64_t done = step + 1;
        if (p->log) log_step(p->log, &st, done, tokens, loss, lr, norm);
        if (p->eval_every > 0 && (done % p->eval_every == 0 || done == end)) {
            long nt = 0;
            if ((s = evaluate(&st, &r->eval_kl, &r->eval_ce, &nt))) goto done;
            r->has_eval = nt > 0;
            if (p->log && nt > 0) {
                fprintf(p->log, "{\"step\":%lld,\"tokens\":%llu,\"eval_kl\":%.9g,\"eval_ce\":%.9g,\"eval_tokens\":%ld}\n",
                        (long long)done, (unsigned long long)tokens, r->eval_kl, r->eval_ce, nt);
                fflush(p->log);
            }
        }
        if (p->ckpt_path && (done % p->ckpt_every == 0 || done == end)) {
            const slm_ckpt c = {.config = config, .step = done, .tokens = tokens,
                                .weights = slm_tmodel_weights(student), .n_weights = slm_tmodel_n_params(student),
                                .m = st.ms, .v = st.vs, .n_state = st.n_state};
            if ((s = slm_ckpt_write(p->ckpt_path, &c))) goto done;
        }
        if (p->progress) {
            const double el = now_s() - t0;
            const int k = n_ring < 10 ? n_ring : 10;
            double run = 0;
            for (int i = 0; i < k; i++) run += ring[i];
            const double tps = el > 0 ? (double)r->run_tokens / el : 0;
            const double eta = (double)(end - done) * el / (double)(done - r->first_step);
            if (p->progress == 1 || done % every10 == 0 || done == end) progress(p, done, run / k, tps, eta, done == end);
        }
    }
    r->seconds = now_s() - t0;
    r->teacher_seconds = st.teacher_s;
    r->steps_done = step;
    r->tokens = tokens;
done:
    free(config);
    free(st.tokens);
    free(st.targets);
    free(st.tl);
    free(st.logits);
    free(st.dlogits);
    free(st.ms);
    free(st.vs);
    free(st.offsets);
    free(st.cand);
    free(st.part);
    return s;
}
