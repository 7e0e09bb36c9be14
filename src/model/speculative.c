/* speculative.c - drafters (draft model, prompt lookup) and the verification loop. */
#include "speculative.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void slm_drafter_free(slm_drafter *d) {
    if (d && d->destroy) d->destroy(d);
}

/* The penalty window ending before position pos of seq. */
static void penalize_at(const slm_sampler_params *p, float *logits, int n_vocab, const int32_t *seq, int pos) {
    if (p->repeat_penalty == 1.0f || p->repeat_last_n == 0) return;
    int from = pos > p->repeat_last_n ? pos - p->repeat_last_n : 0;
    slm_penalize(p, logits, n_vocab, seq + from, pos - from);
}

slm_status slm_spec_check_vocab(const slm_model *target, const slm_tokenizer *target_tok, const slm_model *draft,
                                const slm_tokenizer *draft_tok) {
    int nv = target->cfg.vocab_size;
    if (draft->cfg.vocab_size != nv)
        return slm_error(SLM_ERR_ARG, "draft model: vocabulary of %d tokens, the target has %d", draft->cfg.vocab_size,
                         nv);
    if (!target_tok || !draft_tok) return SLM_OK;
    if (slm_tokenizer_n_vocab(target_tok) != slm_tokenizer_n_vocab(draft_tok))
        return slm_error(SLM_ERR_ARG, "draft model: tokenizer of %d tokens, the target's has %d",
                         slm_tokenizer_n_vocab(draft_tok), slm_tokenizer_n_vocab(target_tok));
    char a[512], b[512];
    int n = slm_tokenizer_n_vocab(target_tok);
    for (int32_t id = 0; id < n; id++) {
        int la = slm_tokenizer_piece(target_tok, id, true, a, sizeof a);
        int lb = slm_tokenizer_piece(draft_tok, id, true, b, sizeof b);
        if (la != lb || (la > 0 && memcmp(a, b, (size_t)la) != 0))
            return slm_error(SLM_ERR_ARG, "draft model: token %d differs from the target's (another tokenizer)", id);
    }
    return SLM_OK;
}

/* ---- drafter 1: a draft model ---- */

typedef struct {
    slm_ctx *ctx;
    slm_sampler *rng;       /* only its RNG is used */
    slm_sampler_params sp;
    float stop_p;
    int n_vocab;
    float *logits;          /* [n_vocab] */
    slm_candidate *cand;    /* [n_vocab] */
    float *qbuf;            /* [n_vocab] when the caller wants no q rows */
    int32_t *seq;           /* [n_ctx + 1] hist + drafts, for the penalty window */
    int n_hist;             /* length of the text at the last proposal */
} draft_model;

static void draft_model_destroy(slm_drafter *d) {
    draft_model *m = d->state;
    if (m) {
        slm_ctx_free(m->ctx);
        slm_sampler_free(m->rng);
        free(m->logits);
        free(m->cand);
        free(m->qbuf);
        free(m->seq);
        free(m);
    }
    free(d);
}

/* The drafter's top probability: from q when sampling; when greedy (q is a point mass) from
 * the softmax of the logits at temperature 1. */
static float confidence(const draft_model *m, const float *q, int32_t top) {
    if (m->sp.temperature > 0) return q[top];
    const float mx = m->logits[top];
    double sum = 0;
    for (int v = 0; v < m->n_vocab; v++) sum += expf(m->logits[v] - mx);
    return (float)(1.0 / sum);
}

static slm_status draft_model_propose(slm_drafter *d, const int32_t *hist, int n_hist, int max, int32_t *out,
                                      float *q, int *n_out) {
    draft_model *m = d->state;
    slm_ctx *c = m->ctx;
    *n_out = 0;
    if (n_hist < 1) return slm_error(SLM_ERR_ARG, "draft model: empty text");
    int room = c->p.n_ctx - n_hist; /* each drafted token but the last is evaluated */
    if (max > room + 1) max = room + 1;
    if (max < 1) return SLM_OK;
    /* bring the draft context to exactly hist: keep the common prefix (rolling back rejected
     * drafts), evaluate the rest; the last token always, for its logits */
    int keep = 0, held = slm_ctx_len(c);
    while (keep < held && keep < n_hist - 1 && c->tokens[keep] == hist[keep]) keep++;
    slm_ctx_truncate(c, keep);
    slm_status s = slm_ctx_eval(c, hist + keep, n_hist - keep, 1, m->logits);
    if (s) return s;
    memcpy(m->seq, hist, (size_t)n_hist * sizeof *hist);
    m->n_hist = n_hist;
    for (int i = 0; i < max; i++) {
        float *qi = q ? q + (size_t)i * m->n_vocab : m->qbuf;
        penalize_at(&m->sp, m->logits, m->n_vocab, m->seq, n_hist + i);
        int32_t top = slm_sample_probs(m->logits, m->n_vocab, &m->sp, m->cand, qi);
        if (m->stop_p > 0 && confidence(m, qi, top) < m->stop_p) break; /* unsure: leave the rest to the target */
        int32_t t = m->sp.temperature <= 0 ? top : slm_sample_from_probs(qi, m->n_vocab, slm_sampler_uniform(m->rng));
        out[i] = t;
        m->seq[n_hist + i] = t;
        *n_out = i + 1;
        if (i + 1 < max && (s = slm_ctx_eval(c, &t, 1, 1, m->logits))) return s;
    }
    return SLM_OK;
}

static slm_status draft_model_begin(slm_drafter *d, const int32_t *hist, int n_hist) {
    draft_model *m = d->state;
    slm_ctx *c = m->ctx;
    if (n_hist < 2 || n_hist > c->p.n_ctx) return SLM_OK;
    int keep = 0, held = slm_ctx_len(c);
    while (keep < held && keep < n_hist - 1 && c->tokens[keep] == hist[keep]) keep++;
    slm_ctx_truncate(c, keep);
    return keep < n_hist - 1 ? slm_ctx_eval(c, hist + keep, n_hist - 1 - keep, 0, NULL) : SLM_OK;
}

static void draft_model_accepted(slm_drafter *d, int n_drafted, int n_accepted) {
    /* drafts past the accepted ones are dropped now; the next propose does the rest */
    (void)n_drafted;
    draft_model *m = d->state;
    if (slm_ctx_len(m->ctx) > m->n_hist + n_accepted) slm_ctx_truncate(m->ctx, m->n_hist + n_accepted);
}

slm_status slm_drafter_model_create(const slm_model *draft, const slm_ctx_params *cp, const slm_sampler_params *sp,
                                    float stop_p, slm_drafter **out) {
    *out = NULL;
    if (!(stop_p >= 0 && stop_p <= 1)) return slm_error(SLM_ERR_ARG, "draft model: stop probability %g", stop_p);
    slm_status s = slm_sampler_check(sp);
    if (s) return s;
    slm_drafter *d = calloc(1, sizeof *d);
    draft_model *m = calloc(1, sizeof *m);
    if (!d || !m) {
        free(d);
        free(m);
        return slm_error(SLM_ERR_NOMEM, "draft model: out of memory");
    }
    *d = (slm_drafter){.name = "draft-model", .state = m, .propose = draft_model_propose,
                       .begin = draft_model_begin, .accepted = draft_model_accepted, .destroy = draft_model_destroy};
    m->sp = *sp;
    m->stop_p = stop_p;
    m->n_vocab = draft->cfg.vocab_size;
    slm_sampler_params rp = *sp;
    rp.seed = sp->seed ^ 0x5bd1e995a5a5a5a5ull; /* its own stream, independent of the target's */
    if ((s = slm_ctx_create(draft, cp, &m->ctx)) || (s = slm_sampler_create(&rp, m->n_vocab, &m->rng))) {
        slm_drafter_free(d);
        return s;
    }
    m->logits = malloc((size_t)m->n_vocab * sizeof *m->logits);
    m->cand = malloc((size_t)m->n_vocab * sizeof *m->cand);
    m->qbuf = malloc((size_t)m->n_vocab * sizeof *m->qbuf);
    m->seq = malloc((size_t)(m->ctx->p.n_ctx + 1) * sizeof *m->seq);
    if (!m->logits || !m->cand || !m->qbuf || !m->seq) {
        slm_drafter_free(d);
        return slm_error(SLM_ERR_NOMEM, "draft model: out of memory");
    }
    *out = d;
    return SLM_OK;
}

/* ---- drafter 2: prompt lookup ---- */

typedef struct {
    int n_gram;
} lookup;

static void lookup_destroy(slm_drafter *d) {
    free(d->state);
    free(d);
}

static slm_status lookup_propose(slm_drafter *d, const int32_t *hist, int n_hist, int max, int32_t *out, float *q,
                                 int *n_out) {
    (void)q;
    const lookup *l = d->state;
    *n_out = 0;
    for (int n = l->n_gram < n_hist - 1 ? l->n_gram : n_hist - 1; n >= 1; n--) {
        const int32_t *suffix = hist + n_hist - n;
        /* the most recent earlier occurrence, followed by at least one token */
        for (int j = n_hist - n - 1; j >= 0; j--) {
            if (hist[j] != suffix[0] || memcmp(hist + j, suffix, (size_t)n * sizeof *hist) != 0) continue;
            /* short matches predict poorly (measured on chat prompts: the first drafted token
             * is accepted after 25% of 1-token matches, 53% of 2-token and 71% of 3-token
             * ones), and each drafted token costs a row of verification: a match of n < 3
             * tokens proposes at most n */
            int cap = n < 3 && n < max ? n : max;
            int k = 0;
            while (k < cap && j + n + k < n_hist) {
                out[k] = hist[j + n + k];
                k++;
            }
            *n_out = k;
            return SLM_OK;
        }
    }
    return SLM_OK;
}

slm_status slm_drafter_lookup_create(int n_gram, slm_drafter **out) {
    *out = NULL;
    if (n_gram < 1 || n_gram > 64) return slm_error(SLM_ERR_ARG, "prompt lookup: n-gram size %d is not in [1, 64]", n_gram);
    slm_drafter *d = calloc(1, sizeof *d);
    lookup *l = calloc(1, sizeof *l);
    if (!d || !l) {
        free(d);
        free(l);
        return slm_error(SLM_ERR_NOMEM, "prompt lookup: out of memory");
    }
    l->n_gram = n_gram;
    *d = (slm_drafter){.name = "lookup", .point_mass = true, .state = l, .propose = lookup_propose,
                       .destroy = lookup_destroy};
    *out = d;
    return SLM_OK;
}

/* ---- verification ---- */

typedef struct {
    int32_t *seq;         /* [n_ctx + draft_max + 1] accepted tokens, then the current drafts */
    int32_t *drafts;      /* [draft_max] */
    float *q;             /* [draft_max][vocab] */
    float *logits;        /* [draft_max + 1][vocab] */
    float *p;             /* [vocab] */
    slm_candidate *cand;  /* [vocab] */
} spec_buf;

static void spec_buf_free(spec_buf *b) {
    free(b->seq);
    free(b->drafts);
    free(b->q);
    free(b->logits);
    free(b->p);
    free(b->cand);
}

int32_t slm_spec_verify(slm_sampler *smp, float *row, const int32_t *seq, int pos, int32_t draft, const float *q,
                        float *probs, slm_candidate *cand, bool *accept) {
    const slm_sampler_params *p = &smp->p;
    const int nv = smp->n_vocab;
    *accept = false;
    penalize_at(p, row, nv, seq, pos);
    if (p->temperature <= 0) {
        int32_t t = slm_argmax(row, nv);
        *accept = t == draft;
        return t;
    }
    slm_sample_probs(row, nv, p, cand, probs);
    if (draft < 0) return slm_sample_from_probs(probs, nv, slm_sampler_uniform(smp));
    float pd = probs[draft], qd = q ? q[draft] : 1.0f;
    float u = slm_sampler_uniform(smp);
    if (qd > 0 && u * qd < pd) { /* u < p/q: probability min(1, p/q) */
        *accept = true;
        return draft;
    }
    /* the residual norm(max(0, p - q)) */
    double left = 0;
    for (int v = 0; v < nv; v++) {
        float r = probs[v] - (q ? q[v] : (v == draft ? 1.0f : 0.0f));
        probs[v] = r > 0 ? r : 0;
        left += probs[v];
    }
    if (left <= 0) { /* p == q up to rounding: the draft was acceptable after all */
        *accept = true;
        return draft;
    }
    return slm_sample_from_probs(probs, nv, slm_sampler_uniform(smp));
}

void slm_spec_adapt_init(slm_spec_adapt *a, const slm_spec_params *sp) {
    *a = (slm_spec_adapt){.draft_max = sp->draft_max, .gamma = sp->draft_max, .backoff = 1, .adaptive = sp->adaptive};
}

int slm_spec_adapt_len(const slm_spec_adapt *a) { return a->cool > 0 ? 0 : a->gamma; }

void slm_spec_adapt_update(slm_spec_adapt *a, int cap, int n_drafted, int n_accepted) {
    if (a->cool > 0) { /* this step was paused */
        a->cool--;
        return;
    }
    if (!a->adaptive || n_drafted == 0) return;
    if (n_accepted == n_drafted && n_drafted == cap && a->gamma < a->draft_max) a->gamma++;
    if (n_accepted > 0) {
        a->backoff = 1;
    } else if (a->gamma > 1) {
        a->gamma--;
    } else { /* even single drafts fail: pause drafting, longer each time (up to 16 steps) */
        a->cool = a->backoff;
        if (a->backoff < 16) a->backoff *= 2;
    }
}

slm_status slm_spec_generate(slm_ctx *ctx, const slm_tokenizer *tok, slm_sampler *smp, slm_drafter *d,
                             const slm_spec_params *sp, const int32_t *prompt, int n_prompt, int n_max,
                             slm_token_fn on_token, void *user, slm_spec_stats *st) {
    memset(st, 0, sizeof *st);
    if (n_prompt <= 0) return slm_error(SLM_ERR_ARG, "speculative: empty prompt");
    if (sp->draft_max < 1 || sp->draft_max > 256)
        return slm_error(SLM_ERR_ARG, "speculative: draft length %d is not in [1, 256]", sp->draft_max);
    const int n_ctx = ctx->p.n_ctx, nv = ctx->model->cfg.vocab_size, gmax = sp->draft_max;
    if (n_prompt > n_ctx) return slm_error(SLM_ERR_FULL, "speculative: %d prompt tokens exceed the context of %d", n_prompt, n_ctx);
    if (smp->n_vocab != nv) return slm_error(SLM_ERR_ARG, "speculative: sampler vocabulary %d, model %d", smp->n_vocab, nv);
    spec_buf b = {0};
    b.seq = malloc((size_t)(n_ctx + gmax + 1) * sizeof *b.seq);
    b.drafts = malloc((size_t)gmax * sizeof *b.drafts);
    b.q = d->point_mass ? NULL : malloc((size_t)gmax * nv * sizeof *b.q);
    b.logits = malloc((size_t)(gmax + 1) * nv * sizeof *b.logits);
    b.p = malloc((size_t)nv * sizeof *b.p);
    b.cand = malloc((size_t)nv * sizeof *b.cand);
    if (!b.seq || !b.drafts || (!d->point_mass && !b.q) || !b.logits || !b.p || !b.cand) {
        spec_buf_free(&b);
        return slm_error(SLM_ERR_NOMEM, "speculative: out of memory");
    }
    /* the target holds every accepted token but the last, which opens the next batch */
    int keep = 0, held = slm_ctx_len(ctx);
    while (keep < held && keep < n_prompt - 1 && ctx->tokens[keep] == prompt[keep]) keep++;
    slm_ctx_truncate(ctx, keep);
    double t0 = now_s();
    slm_status s = SLM_OK;
    if (n_prompt - 1 > keep) s = slm_ctx_eval(ctx, prompt + keep, n_prompt - 1 - keep, 0, NULL);
    if (!s && d->begin) s = d->begin(d, prompt, n_prompt);
    st->gen.n_reused = keep;
    st->gen.n_prompt = n_prompt - 1 > keep ? n_prompt - 1 - keep : 0; /* the last one opens the first step */
    st->gen.prompt_s = now_s() - t0;
    if (s) {
        spec_buf_free(&b);
        return s;
    }
    memcpy(b.seq, prompt, (size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++) slm_sampler_accept(smp, prompt[i]);
    int n = n_prompt; /* accepted tokens in seq; the context holds n - 1 */
    slm_spec_adapt ad;
    slm_spec_adapt_init(&ad, sp);
    bool stop = false;
    t0 = now_s();
    while (!stop && st->gen.n_generated < n_max) {
        /* draft: at most what is still wanted and what the context can take */
        int g = slm_spec_adapt_len(&ad), want = n_max - st->gen.n_generated - 1, room = n_ctx - n;
        if (g > want) g = want;
        if (g > room) g = room;
        int nd = 0;
        double ta = now_s();
        if (g > 0 && (s = d->propose(d, b.seq, n, g, b.drafts, b.q, &nd))) break;
        double tb = now_s();
        st->draft_s += tb - ta;
        /* verify: one pass over [last accepted, d1..dnd] */
        memcpy(b.seq + n, b.drafts, (size_t)nd * sizeof *b.drafts);
        if ((s = slm_ctx_eval(ctx, b.seq + n - 1, nd + 1, nd + 1, b.logits))) break;
        int k = 0;
        int32_t t = -1;
        for (int i = 0; i <= nd; i++) {
            bool acc;
            t = slm_spec_verify(smp, b.logits + (size_t)i * nv, b.seq, n + i, i < nd ? b.drafts[i] : -1,
                                b.q && i < nd ? b.q + (size_t)i * nv : NULL, b.p, b.cand, &acc);
            if (!acc) break;
            k++;
        }
        st->n_steps++;
        st->n_drafted += nd;
        st->n_accepted += k;
        if (d->accepted) d->accepted(d, nd, k);
        slm_spec_adapt_update(&ad, g, nd, k);
        /* drop the rejected drafts from the target; the new token t is not evaluated yet */
        slm_ctx_truncate(ctx, n + k);
        st->verify_s += now_s() - tb;
        /* emit d1..dk, t */
        b.seq[n + k] = t;
        for (int i = 0; i <= k; i++) {
            int32_t id = b.seq[n];
            if (tok && slm_tokenizer_is_eog(tok, id)) {
                st->gen.hit_eog = true;
                stop = true;
                slm_ctx_truncate(ctx, n); /* every emitted token is in the context */
                break;
            }
            slm_sampler_accept(smp, id);
            n++;
            st->gen.n_generated++;
            if ((on_token && !on_token(user, id)) || st->gen.n_generated == n_max) {
                stop = true;
                slm_ctx_truncate(ctx, n - 1);
                break;
            }
        }
    }
    if (!s && n_max <= 0) s = slm_ctx_eval(ctx, prompt + n_prompt - 1, 1, 0, NULL); /* the whole prompt, as slm_generate */
    st->gen.gen_s = now_s() - t0;
    spec_buf_free(&b);
    return s;
}
