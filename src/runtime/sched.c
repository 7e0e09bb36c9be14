/* sched.c - continuous batching over the shared paged KV cache (see sched.h).
 *
 * Every sample (one sequence) keeps all its known tokens: the prompt and what it generated.
 * Its KV cache holds the first n_computed of them (seq.n_tokens). A step feeds each sample
 * the tokens it knows but has not computed: one for a decoding sample (the token it sampled
 * last step), a chunk of the prompt for a prefilling one, or everything again after a
 * preemption (recompute). Logits come back for a sample only when its run reaches its last
 * known token; then it samples the next one. Requests with n > 1 prefill on sample 0 and fork
 * the prompt's blocks to the others when the prompt's last logits are known.
 *
 * With prompt lookup, a run that reaches a sample's last known token also carries the tokens
 * drafted for it, stored past the known ones in `tokens` (they become known only if
 * accepted). The run's logits cover the last known token and every draft; after the pass the
 * sample verifies and reports them, and its sequence is cut back to the accepted text minus
 * its new last token (which the next step feeds, as for a plain decoding sample). A greedy
 * sample's drafts may be trimmed to fit the batch; a sampling sample's drafts are all or
 * nothing (its run then stops short of the end and takes no logits this step), so the random
 * draws it makes never depend on the other requests.
 *
 * Locking: `mu` guards the queue, the request list, the ids and the metrics; the engine
 * thread alone touches sequences, samplers and the KV cache, and calls callbacks without
 * holding `mu` (so they may call slm_sched_cancel). */
#include "runtime/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/forward.h"
#include "model/speculative.h"

enum { Q_WAIT = 0, Q_RUN = 1 };

typedef struct request request;

typedef struct {
    request *req;
    int index;
    slm_seq seq;
    slm_sampler *smp;
    int32_t *tokens;  /* [max_ctx] prompt, then generated tokens */
    int n_tokens;     /* known */
    int n_generated;
    bool active;      /* has a sequence of its own (sample 0 always; the others after the fork) */
    bool done;
    slm_spec_adapt ad; /* draft length control (prompt lookup) */
    int n_draft;       /* drafts in this step's run, at tokens[n_tokens ..] */
    int draft_cap;     /* the most this step's run could have drafted */
} sample;

struct request {
    uint64_t id;
    slm_req_params p;
    slm_event_fn fn;
    void *user;
    sample *s;        /* [p.n] */
    int n_done;
    int n_cached;     /* prompt tokens taken from the prefix cache */
    bool cancel;      /* set under mu */
    bool forked;
    int state;
    uint64_t admitted; /* admission order (preemption takes the newest first) */
    request *next;    /* in the waiting queue or the running list */
};

/* One cached prompt block: chained hash of the tokens of blocks 0..j, the block id. */
typedef struct {
    uint64_t hash;
    int32_t block;
    uint64_t last_use;
} cache_entry;

struct slm_sched {
    const slm_model *m;
    const slm_tokenizer *tok;
    slm_sched_params p;
    slm_ctx *ctx;
    int vocab;
    float *logits;    /* [max_seqs * (1 + drafts per sample)][vocab] */
    float *raw;       /* [vocab] logits before the sampler changes them */
    float *row;       /* [vocab] a sample's copy of shared logits */
    int32_t *top_ids; /* [SLM_SCHED_MAX_LOGPROBS] */
    float *top_lp;
    slm_run *runs;    /* [max_seqs] */
    sample **run_sample;
    slm_drafter *lookup;  /* prompt lookup drafter, NULL: off */
    float *probs;         /* [vocab] verification scratch */
    slm_candidate *cand;  /* [vocab] */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    request *queue_head, *queue_tail; /* waiting, FIFO */
    int n_queued;
    request *running;                 /* admitted, in admission order */
    int n_running_samples;
    bool stopping;
    uint64_t next_id, admit_counter;

    cache_entry *cache;
    int n_cache, cap_cache;
    uint64_t use_clock;

    slm_sched_metrics met;
    double rate_t0;
    uint64_t rate_tokens0;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- creation -------------------------------------------------------------------------- */

slm_status slm_sched_create(const slm_model *m, const slm_tokenizer *tok, const slm_sched_params *params,
                            slm_sched **out) {
    *out = NULL;
    slm_sched_params p = params ? *params : (slm_sched_params){0};
    const int model_ctx = m->cfg.ctx_len;
    if (p.max_seqs < 0 || p.max_batch_tokens < 0 || p.kv_tokens < 0 || p.max_ctx < 0 || p.max_queue < 0)
        return slm_error(SLM_ERR_ARG, "scheduler: negative size");
    if (p.max_seqs == 0) p.max_seqs = 16;
    if (p.max_batch_tokens == 0) p.max_batch_tokens = 512;
    if (p.max_ctx == 0) p.max_ctx = model_ctx < 8192 ? model_ctx : 8192;
    if (p.max_ctx > model_ctx) return slm_error(SLM_ERR_ARG, "scheduler: max context %d exceeds the model's %d", p.max_ctx, model_ctx);
    if (p.kv_tokens == 0) {
        /* 512 MiB of keys and values, and at least one longest sequence */
        const int kvd = m->cfg.n_kv_heads * m->cfg.head_dim;
        p.kv_tokens = slm_kv_tokens_for_bytes(SLM_KV_F16, m->n_kv_layers, kvd, SLM_KV_DEFAULT_BLOCK, (size_t)512 << 20);
        if (p.kv_tokens < p.max_ctx) p.kv_tokens = p.max_ctx;
    }
    if (p.max_queue == 0) p.max_queue = 256;
    if (p.max_seqs > 256) return slm_error(SLM_ERR_ARG, "scheduler: at most 256 sequences");
    if (p.max_batch_tokens < p.max_seqs) p.max_batch_tokens = p.max_seqs;
    if (p.lookup_ngram < 0 || p.lookup_ngram > 64)
        return slm_error(SLM_ERR_ARG, "scheduler: lookup n-gram size %d is not in [0, 64]", p.lookup_ngram);
    if (p.draft_max < 0 || p.draft_max > SLM_SCHED_MAX_DRAFT)
        return slm_error(SLM_ERR_ARG, "scheduler: draft length %d is not in [1, %d]", p.draft_max, SLM_SCHED_MAX_DRAFT);
    if (p.draft_max == 0) p.draft_max = 4;
    const int per_seq = p.lookup_ngram ? 1 + p.draft_max : 1; /* logit rows of one run */
    /* every decoding sample and all its drafts fit in one step */
    if (p.max_batch_tokens < p.max_seqs * per_seq) p.max_batch_tokens = p.max_seqs * per_seq;
    if (p.max_batch_tokens > p.kv_tokens) p.max_batch_tokens = p.kv_tokens; /* a pass holds no more */
    if (p.max_batch_tokens < p.max_seqs * per_seq)
        return slm_error(SLM_ERR_ARG, "scheduler: a KV pool of %d tokens cannot hold %d sequences with %d drafts each",
                         p.kv_tokens, p.max_seqs, per_seq - 1);
    if (p.kv_tokens < p.max_ctx)
        return slm_error(SLM_ERR_ARG, "scheduler: a KV pool of %d tokens cannot hold one sequence of %d", p.kv_tokens,
                         p.max_ctx);
    slm_sched *s = calloc(1, sizeof *s);
    if (!s) return slm_error(SLM_ERR_NOMEM, "scheduler: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->m = m;
    s->tok = tok;
    s->p = p;
    s->vocab = m->cfg.vocab_size;
    s->next_id = 1;
    slm_ctx_params cp = {.n_ctx = p.kv_tokens, .max_batch = p.max_batch_tokens, .n_threads = p.n_threads};
    slm_status st = slm_ctx_create(m, &cp, &s->ctx);
    if (st) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return st;
    }
    if (p.lookup_ngram && (st = slm_drafter_lookup_create(p.lookup_ngram, &s->lookup))) {
        slm_sched_free(s);
        return st;
    }
    s->logits = malloc((size_t)p.max_seqs * (size_t)per_seq * (size_t)s->vocab * sizeof(float));
    s->probs = malloc((size_t)s->vocab * sizeof(float));
    s->cand = malloc((size_t)s->vocab * sizeof *s->cand);
    s->raw = malloc((size_t)s->vocab * sizeof(float));
    s->row = malloc((size_t)s->vocab * sizeof(float));
    s->top_ids = malloc(SLM_SCHED_MAX_LOGPROBS * sizeof(int32_t));
    s->top_lp = malloc(SLM_SCHED_MAX_LOGPROBS * sizeof(float));
    s->runs = malloc((size_t)p.max_seqs * sizeof *s->runs);
    s->run_sample = malloc((size_t)p.max_seqs * sizeof *s->run_sample);
    if (!s->logits || !s->raw || !s->row || !s->top_ids || !s->top_lp || !s->runs || !s->run_sample || !s->probs ||
        !s->cand) {
        slm_sched_free(s);
        return slm_error(SLM_ERR_NOMEM, "scheduler: out of memory");
    }
    s->rate_t0 = now_s();
    *out = s;
    return SLM_OK;
}

static void free_request(slm_sched *s, request *r) {
    if (!r) return;
    for (int i = 0; i < r->p.n; i++) {
        slm_seq_release(s->ctx->kv, &r->s[i].seq);
        slm_sampler_free(r->s[i].smp);
        free(r->s[i].tokens);
    }
    free(r->s);
    free((void *)r->p.prompt);
    free(r);
}

/* ---- events ----------------------------------------------------------------------------- */

static void finish_sample(slm_sched *s, sample *sm, slm_finish why, const char *err) {
    if (sm->done) return;
    sm->done = true;
    request *r = sm->req;
    r->n_done++;
    if (sm->active) slm_seq_release(s->ctx->kv, &sm->seq);
    sm->active = false;
    slm_event ev = {.kind = SLM_EV_DONE, .id = r->id, .index = sm->index, .finish = why,
                    .n_generated = sm->n_generated, .n_prompt = r->p.n_prompt, .n_cached = r->n_cached,
                    .error = err};
    r->fn(r->user, &ev);
}

static void finish_request(slm_sched *s, request *r, slm_finish why, const char *err) {
    for (int i = 0; i < r->p.n; i++) finish_sample(s, &r->s[i], why, err);
}

/* ---- submission ---------------------------------------------------------------------------- */

slm_status slm_sched_submit(slm_sched *s, const slm_req_params *rp, slm_event_fn fn, void *user, uint64_t *id) {
    if (!rp || !fn) return slm_error(SLM_ERR_ARG, "submit: no request or callback");
    if (rp->n_prompt < 1 || !rp->prompt) return slm_error(SLM_ERR_ARG, "the prompt is empty");
    if (rp->max_tokens < 1) return slm_error(SLM_ERR_ARG, "max_tokens must be at least 1");
    if (rp->n < 1 || rp->n > SLM_SCHED_MAX_N) return slm_error(SLM_ERR_ARG, "n must be in [1, %d]", SLM_SCHED_MAX_N);
    if (rp->n > s->p.max_seqs)
        return slm_error(SLM_ERR_ARG, "n = %d exceeds the server's %d sequences", rp->n, s->p.max_seqs);
    if (rp->logprobs > SLM_SCHED_MAX_LOGPROBS)
        return slm_error(SLM_ERR_ARG, "logprobs must be at most %d", SLM_SCHED_MAX_LOGPROBS);
    if ((long)rp->n_prompt + rp->max_tokens > s->p.max_ctx)
        return slm_error(SLM_ERR_ARG, "prompt (%d tokens) + max_tokens (%d) exceed the context of %d tokens",
                         rp->n_prompt, rp->max_tokens, s->p.max_ctx);
    for (int i = 0; i < rp->n_prompt; i++)
        if (rp->prompt[i] < 0 || rp->prompt[i] >= s->vocab)
            return slm_error(SLM_ERR_ARG, "prompt token %d out of range [0, %d)", rp->prompt[i], s->vocab);
    slm_status st = slm_sampler_check(&rp->sp);
    if (st) return st;

    request *r = calloc(1, sizeof *r);
    int32_t *prompt = malloc((size_t)rp->n_prompt * sizeof *prompt);
    sample *sm = calloc((size_t)rp->n, sizeof *sm);
    if (!r || !prompt || !sm) {
        free(r);
        free(prompt);
        free(sm);
        return slm_error(SLM_ERR_NOMEM, "submit: out of memory");
    }
    memcpy(prompt, rp->prompt, (size_t)rp->n_prompt * sizeof *prompt);
    r->p = *rp;
    r->p.prompt = prompt;
    r->fn = fn;
    r->user = user;
    r->s = sm;
    for (int i = 0; i < rp->n; i++) {
        sm[i].req = r;
        sm[i].index = i;
        slm_sampler_params sp = rp->sp;
        sp.seed = rp->sp.seed + (uint64_t)i;
        sm[i].tokens = malloc((size_t)s->p.max_ctx * sizeof(int32_t));
        if (!sm[i].tokens || (st = slm_sampler_create(&sp, s->vocab, &sm[i].smp))) {
            r->p.n = i + 1;
            free_request(s, r);
            return st ? st : slm_error(SLM_ERR_NOMEM, "submit: out of memory");
        }
        memcpy(sm[i].tokens, prompt, (size_t)rp->n_prompt * sizeof *prompt);
        slm_spec_adapt_init(&sm[i].ad, &(slm_spec_params){.draft_max = s->p.draft_max, .adaptive = true});
        sm[i].n_tokens = rp->n_prompt;
        for (int j = 0; j < rp->n_prompt; j++) slm_sampler_accept(sm[i].smp, prompt[j]);
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        free_request(s, r);
        return slm_error(SLM_ERR_UNSUPPORTED, "the server is shutting down");
    }
    if (s->n_queued >= s->p.max_queue) {
        pthread_mutex_unlock(&s->mu);
        free_request(s, r);
        return slm_error(SLM_ERR_FULL, "too many queued requests (%d)", s->p.max_queue);
    }
    r->id = s->next_id++;
    r->state = Q_WAIT;
    if (s->queue_tail) s->queue_tail->next = r;
    else s->queue_head = r;
    s->queue_tail = r;
    s->n_queued++;
    if (id) *id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return SLM_OK;
}

void slm_sched_cancel(slm_sched *s, uint64_t id) {
    pthread_mutex_lock(&s->mu);
    for (request *r = s->queue_head; r; r = r->next)
        if (r->id == id) r->cancel = true;
    for (request *r = s->running; r; r = r->next)
        if (r->id == id) r->cancel = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- prefix cache -------------------------------------------------------------------------- */

static uint64_t hash_block(uint64_t h, const int32_t *t, int n) {
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)t[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
    }
    return h ^ (h >> 29);
}

static cache_entry *cache_find(slm_sched *s, uint64_t h) {
    for (int i = 0; i < s->n_cache; i++)
        if (s->cache[i].hash == h) return &s->cache[i];
    return NULL;
}

/* Attach the cached blocks of r's prompt to sample 0 (at least one prompt token is left to
 * compute, for the logits). */
static void cache_attach(slm_sched *s, request *r) {
    r->n_cached = 0;
    if (s->p.no_prefix_cache) return;
    sample *sm = &r->s[0];
    const int bs = s->ctx->kv->block_size;
    uint64_t h = 0x243f6a8885a308d3ull;
    for (int j = 0; (j + 1) * bs <= r->p.n_prompt; j++) {
        h = hash_block(h, r->p.prompt + j * bs, bs);
        cache_entry *e = cache_find(s, h);
        if (!e || slm_seq_append_block(s->ctx->kv, &sm->seq, e->block)) break;
        e->last_use = ++s->use_clock;
    }
    if (sm->seq.n_tokens >= r->p.n_prompt) slm_seq_truncate(s->ctx->kv, &sm->seq, r->p.n_prompt - 1);
    r->n_cached = sm->seq.n_tokens;
}

/* Remember the full prompt blocks of a sample whose prompt is computed. */
static void cache_register(slm_sched *s, const request *r, const sample *sm) {
    if (s->p.no_prefix_cache) return;
    const int bs = s->ctx->kv->block_size;
    uint64_t h = 0x243f6a8885a308d3ull;
    for (int j = 0; (j + 1) * bs <= r->p.n_prompt && j < sm->seq.n_blocks; j++) {
        h = hash_block(h, r->p.prompt + j * bs, bs);
        cache_entry *e = cache_find(s, h);
        if (e) {
            e->last_use = ++s->use_clock;
            continue;
        }
        if (s->n_cache == s->cap_cache) {
            int cap = s->cap_cache ? 2 * s->cap_cache : 64;
            cache_entry *c = realloc(s->cache, (size_t)cap * sizeof *c);
            if (!c) return;
            s->cache = c;
            s->cap_cache = cap;
        }
        slm_kv_block_ref(s->ctx->kv, sm->seq.blocks[j]);
        s->cache[s->n_cache++] = (cache_entry){h, sm->seq.blocks[j], ++s->use_clock};
    }
}

/* Cached blocks no sequence holds (they can be given back to the pool). */
static int cache_evictable(const slm_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_cache; i++) n += s->ctx->kv->refs[s->cache[i].block] == 1;
    return n;
}

/* Drop the least recently used cached block that no sequence holds; false if none. */
static bool cache_evict_one(slm_sched *s) {
    int best = -1;
    for (int i = 0; i < s->n_cache; i++)
        if (s->ctx->kv->refs[s->cache[i].block] == 1 && (best < 0 || s->cache[i].last_use < s->cache[best].last_use))
            best = i;
    if (best < 0) return false;
    slm_kv_block_unref(s->ctx->kv, s->cache[best].block);
    s->cache[best] = s->cache[--s->n_cache];
    return true;
}

/* ---- one step ------------------------------------------------------------------------------ */

/* Sample count of the running requests. */
static int running_samples(const slm_sched *s) {
    int n = 0;
    for (request *r = s->running; r; r = r->next) n += r->p.n - r->n_done;
    return n;
}

/* Move a request back to the front of the queue, freeing its blocks (recomputed later). */
static void preempt(slm_sched *s, request *r) {
    for (int i = 0; i < r->p.n; i++) {
        sample *sm = &r->s[i];
        if (sm->active) slm_seq_release(s->ctx->kv, &sm->seq);
        sm->active = false;
    }
    r->forked = false;
    /* a request whose samples were forked recomputes each sample on its own */
    pthread_mutex_lock(&s->mu);
    request **pp = &s->running;
    while (*pp && *pp != r) pp = &(*pp)->next;
    if (*pp) *pp = r->next;
    r->state = Q_WAIT;
    r->next = s->queue_head;
    s->queue_head = r;
    if (!s->queue_tail) s->queue_tail = r;
    s->n_queued++;
    s->met.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* Remove finished requests from the running list and free them. */
static void reap(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    request **pp = &s->running;
    while (*pp) {
        request *r = *pp;
        if (r->n_done == r->p.n) {
            *pp = r->next;
            s->met.requests_done++;
            pthread_mutex_unlock(&s->mu);
            free_request(s, r);
            pthread_mutex_lock(&s->mu);
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* Cancellations, then admission of waiting requests while sequence slots are free. */
static void admit(slm_sched *s) {
    /* cancelled requests (queued or running) finish now */
    for (;;) {
        request *victim = NULL;
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        for (request *r = s->running; r && !victim; r = r->next)
            if ((r->cancel || stopping) && r->n_done < r->p.n) victim = r;
        request **pp = &s->queue_head, *prev = NULL;
        while (!victim && *pp) {
            if ((*pp)->cancel || stopping) {
                victim = *pp;
                *pp = victim->next;
                if (s->queue_tail == victim) s->queue_tail = prev;
                s->n_queued--;
                victim->next = NULL;
                victim->state = -1;
                break;
            }
            prev = *pp;
            pp = &(*pp)->next;
        }
        pthread_mutex_unlock(&s->mu);
        if (!victim) break;
        finish_request(s, victim, SLM_FINISH_CANCELLED, NULL);
        if (victim->state == -1) {
            pthread_mutex_lock(&s->mu);
            s->met.requests_done++;
            pthread_mutex_unlock(&s->mu);
            free_request(s, victim);
        }
    }
    reap(s);
    pthread_mutex_lock(&s->mu);
    int used = running_samples(s);
    while (s->queue_head) {
        request *r = s->queue_head;
        const int need = r->p.n - r->n_done;
        if (s->p.no_batching ? s->running != NULL : used + need > s->p.max_seqs) break;
        /* room in the pool for its known tokens (a request alone is always tried) */
        const int bs = s->ctx->kv->block_size;
        long blocks = 0;
        for (int i = 0; i < r->p.n; i++)
            if (!r->s[i].done) blocks += (r->s[i].n_tokens + bs) / bs;
        if (s->running && blocks > s->ctx->kv->n_free + cache_evictable(s)) break;
        s->queue_head = r->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        r->next = NULL;
        r->state = Q_RUN;
        const bool first_time = r->admitted == 0;
        r->admitted = ++s->admit_counter;
        request **pp = &s->running;
        while (*pp) pp = &(*pp)->next;
        *pp = r;
        used += need;
        pthread_mutex_unlock(&s->mu);
        /* a fresh request prefills on sample 0; a preempted one recomputes every live sample */
        bool any_generated = false;
        for (int i = 0; i < r->p.n; i++) any_generated |= r->s[i].n_generated > 0 && !r->s[i].done;
        if (!any_generated) {
            r->s[0].active = true;
            cache_attach(s, r);
        } else {
            for (int i = 0; i < r->p.n; i++)
                if (!r->s[i].done) r->s[i].active = true;
            r->forked = true;
        }
        pthread_mutex_lock(&s->mu);
        if (first_time) {
            s->met.prompt_tokens += (uint64_t)r->p.n_prompt;
            s->met.prompt_tokens_cached += (uint64_t)r->n_cached;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* Log-softmax of the raw logits: the chosen token's log-probability and the top alternatives. */
static float logprobs(slm_sched *s, const float *raw, int32_t tok, int n_top) {
    float mx = raw[0];
    for (int i = 1; i < s->vocab; i++) mx = fmaxf(mx, raw[i]);
    double sum = 0;
    for (int i = 0; i < s->vocab; i++) sum += exp((double)raw[i] - mx);
    const float lz = mx + (float)log(sum);
    /* one pass keeping the n_top largest in descending order (the first index on ties) */
    int n = 0;
    for (int i = 0; i < s->vocab && n_top > 0; i++) {
        if (n == n_top && raw[i] <= raw[s->top_ids[n - 1]]) continue;
        int j = n < n_top ? n++ : n - 1;
        while (j > 0 && raw[s->top_ids[j - 1]] < raw[i]) {
            s->top_ids[j] = s->top_ids[j - 1];
            j--;
        }
        s->top_ids[j] = i;
    }
    for (int k = 0; k < n_top; k++) s->top_lp[k] = raw[s->top_ids[k]] - lz;
    return raw[tok] - lz;
}

/* Report token tok of a sample whose raw logits at that position are in s->raw: the event,
 * stop conditions. Returns whether the sample goes on. */
static bool emit_token(slm_sched *s, sample *sm, int32_t tok) {
    request *r = sm->req;
    if (!r->p.ignore_eog && s->tok && slm_tokenizer_is_eog(s->tok, tok)) {
        finish_sample(s, sm, SLM_FINISH_STOP, NULL);
        return false;
    }
    const int n_top = r->p.logprobs > 0 ? r->p.logprobs : 0;
    slm_event ev = {.kind = SLM_EV_TOKEN, .id = r->id, .index = sm->index, .token = tok};
    ev.logprob = logprobs(s, s->raw, tok, n_top);
    if (r->p.logprobs >= 0) {
        ev.n_top = n_top;
        ev.top_ids = s->top_ids;
        ev.top_logprobs = s->top_lp;
    }
    sm->tokens[sm->n_tokens++] = tok;
    sm->n_generated++;
    pthread_mutex_lock(&s->mu);
    s->met.tokens_generated++;
    pthread_mutex_unlock(&s->mu);
    const bool go_on = r->fn(r->user, &ev);
    if (!go_on) finish_sample(s, sm, SLM_FINISH_STOP, NULL);
    else if (sm->n_generated >= r->p.max_tokens || sm->n_tokens >= s->p.max_ctx)
        finish_sample(s, sm, SLM_FINISH_LENGTH, NULL);
    return !sm->done;
}

/* A sample's next token from its logits row. */
static void take_token(slm_sched *s, sample *sm, float *row) {
    memcpy(s->raw, row, (size_t)s->vocab * sizeof *row);
    emit_token(s, sm, slm_sampler_sample(sm->smp, row));
}

/* Whether a sample drafts when its run reaches its last known token (not at the fork of a
 * request with n > 1: the other samples draw their first token from the same logits). */
static bool drafts_here(const slm_sched *s, const sample *sm) {
    const request *r = sm->req;
    return s->lookup && !(sm->index == 0 && !r->forked && r->p.n > 1);
}

/* Propose the drafts of a run ending at sm's last known token, with `room` more tokens left
 * in the batch: into tokens[n_tokens ..], sm->n_draft and sm->draft_cap set. Returns false when
 * a sampling sample's drafts do not fit (all or nothing, see above). */
static bool plan_drafts(slm_sched *s, sample *sm, int room) {
    const request *r = sm->req;
    int cap = slm_spec_adapt_len(&sm->ad);
    const int want = r->p.max_tokens - sm->n_generated - 1, ctx_room = s->p.max_ctx - sm->n_tokens - 1;
    if (cap > want) cap = want;
    if (cap > ctx_room) cap = ctx_room;
    if (cap < 0) cap = 0;
    int nd = 0;
    if (cap > 0 && s->lookup->propose(s->lookup, sm->tokens, sm->n_tokens, cap, sm->tokens + sm->n_tokens, NULL, &nd))
        nd = 0; /* lookup cannot fail; no drafts if it did */
    sm->draft_cap = cap;
    sm->n_draft = nd;
    if (nd <= room) return true;
    if (r->p.sp.temperature > 0) return false;
    sm->n_draft = room;
    return true;
}

/* Verify a run's drafts against its logits lg [1 + n_draft][vocab] (the rule of
 * model/speculative.h), report the accepted drafts and the model's own next token, and cut
 * the rejected positions from the sequence. */
static void verify_drafts(slm_sched *s, sample *sm, float *lg) {
    const int n0 = sm->n_tokens, nd = sm->n_draft;
    int k = 0;
    for (int i = 0; i <= nd; i++) {
        float *row = lg + (size_t)i * s->vocab;
        memcpy(s->raw, row, (size_t)s->vocab * sizeof *row);
        bool acc;
        const int32_t t = slm_spec_verify(sm->smp, row, sm->tokens, n0 + i, i < nd ? sm->tokens[n0 + i] : -1, NULL,
                                          s->probs, s->cand, &acc);
        k += acc;
        slm_sampler_accept(sm->smp, t);
        if (!emit_token(s, sm, t) || !acc) break; /* a stop inside the accepted drafts ends here */
    }
    pthread_mutex_lock(&s->mu);
    s->met.spec_drafted += (uint64_t)nd;
    s->met.spec_accepted += (uint64_t)k;
    s->met.spec_verify_steps += nd > 0;
    pthread_mutex_unlock(&s->mu);
    if (sm->done) return;
    slm_spec_adapt_update(&sm->ad, sm->draft_cap, nd, k);
    /* the sequence keeps every known token but the new last one */
    slm_seq_truncate(s->ctx->kv, &sm->seq, sm->n_tokens - 1);
}

/* Fork sample 0's prompt to the other samples of r and let each sample its first token from
 * the prompt's last logits. */
static void fork_samples(slm_sched *s, request *r, const float *lg) {
    for (int i = 1; i < r->p.n; i++) {
        sample *sm = &r->s[i];
        if (sm->done) continue;
        if (slm_seq_fork(s->ctx->kv, &r->s[0].seq, &sm->seq)) {
            finish_sample(s, sm, SLM_FINISH_ERROR, "out of memory");
            continue;
        }
        sm->active = true;
        memcpy(s->row, lg, (size_t)s->vocab * sizeof *lg); /* the sampler modifies its row */
        take_token(s, sm, s->row);
    }
    r->forked = true;
    memcpy(s->row, lg, (size_t)s->vocab * sizeof *lg);
    take_token(s, &r->s[0], s->row);
}

/* Running sequences and their KV use, published for the metrics at the end of every step
 * (engine thread). */
static void account(slm_sched *s) {
    enum { MAXS = 256 };
    const slm_seq *seqs[MAXS];
    int n = 0;
    for (request *r = s->running; r; r = r->next)
        for (int i = 0; i < r->p.n && n < MAXS; i++)
            if (r->s[i].active && !r->s[i].done) seqs[n++] = &r->s[i].seq;
    slm_kv_usage u = {0};
    if (n) slm_kv_account(s->ctx->kv, seqs, n, s->p.max_ctx, &u);
    pthread_mutex_lock(&s->mu);
    s->met.running = n;
    s->met.kv_tokens = u.tokens;
    s->met.kv_waste_paged = u.paged_waste;
    s->met.kv_waste_reserved = u.reserved_waste;
    pthread_mutex_unlock(&s->mu);
}

static bool step(slm_sched *s);

bool slm_sched_step(slm_sched *s) {
    const bool busy = step(s);
    account(s);
    return busy;
}

static bool step(slm_sched *s) {
    admit(s);
    for (;;) {
        /* build the batch: decoding samples first (one token each), then prefill chunks */
        int n_runs = 0, budget = s->p.max_batch_tokens;
        for (int pass = 0; pass < 2; pass++)
            for (request *r = s->running; r; r = r->next)
                for (int i = 0; i < r->p.n; i++) {
                    sample *sm = &r->s[i];
                    if (!sm->active || sm->done || budget == 0 || n_runs == s->p.max_seqs) continue;
                    const int uncomputed = sm->n_tokens - sm->seq.n_tokens;
                    if (uncomputed <= 0 || (pass == 0) != (uncomputed == 1)) continue;
                    int n = uncomputed < budget ? uncomputed : budget;
                    sm->n_draft = 0;
                    if (n == uncomputed && drafts_here(s, sm) && !plan_drafts(s, sm, budget - n)) {
                        sm->n_draft = 0;
                        if (--n == 0) continue; /* drafts that do not fit: next step */
                    }
                    /* logits only when the run reaches the sample's last known token */
                    const int nd = sm->n_draft, n_out = n == uncomputed ? 1 + nd : 0;
                    s->runs[n_runs] = (slm_run){&sm->seq, sm->tokens + sm->seq.n_tokens, n + nd, n_out};
                    s->run_sample[n_runs++] = sm;
                    budget -= n + nd;
                }
        if (n_runs == 0) return s->running != NULL;
        slm_status st = slm_ctx_eval_runs(s->ctx, s->runs, n_runs, s->logits);
        if (st == SLM_ERR_FULL) {
            /* free memory: cached blocks nobody uses, then the newest request */
            if (cache_evict_one(s)) continue;
            request *newest = NULL;
            for (request *r = s->running; r; r = r->next)
                if (r->n_done < r->p.n && (!newest || r->admitted > newest->admitted)) newest = r;
            if (newest && newest != s->running) {
                preempt(s, newest);
                continue;
            }
            /* alone and still too big */
            if (newest) finish_request(s, newest, SLM_FINISH_ERROR, "the KV cache cannot hold this request");
            reap(s);
            return true;
        }
        if (st) {
            for (int i = 0; i < n_runs; i++) finish_request(s, s->run_sample[i]->req, SLM_FINISH_ERROR, slm_last_error());
            reap(s);
            return true;
        }
        pthread_mutex_lock(&s->mu);
        s->met.steps++;
        pthread_mutex_unlock(&s->mu);
        int row = 0;
        for (int i = 0; i < n_runs; i++) {
            sample *sm = s->run_sample[i];
            request *r = sm->req;
            if (!s->runs[i].n_out) continue;
            float *lg = s->logits + (size_t)row * s->vocab;
            row += s->runs[i].n_out;
            /* full prompt blocks only: drafts sit at positions >= n_tokens = n_prompt */
            if (sm->index == 0 && !r->forked && sm->n_tokens == r->p.n_prompt) cache_register(s, r, sm);
            if (sm->index == 0 && !r->forked && r->p.n > 1) fork_samples(s, r, lg);
            else if (s->lookup) verify_drafts(s, sm, lg);
            else take_token(s, sm, lg);
        }
        reap(s);
        return true;
    }
}

/* ---- the loop -------------------------------------------------------------------------------- */

void slm_sched_run(slm_sched *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->queue_head && !s->running) pthread_cond_wait(&s->cv, &s->mu);
        const bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        slm_sched_step(s);
        if (stop) {
            /* the step above cancelled everything */
            pthread_mutex_lock(&s->mu);
            const bool empty = !s->queue_head && !s->running;
            pthread_mutex_unlock(&s->mu);
            if (empty) return;
        }
    }
}

void slm_sched_stop(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void slm_sched_metrics_get(slm_sched *s, slm_sched_metrics *m) {
    pthread_mutex_lock(&s->mu);
    s->met.queued = s->n_queued;
    s->met.kv_blocks_total = s->ctx->kv->n_blocks;
    s->met.kv_blocks_used = s->ctx->kv->n_blocks - s->ctx->kv->n_free;
    const double t = now_s();
    if (t - s->rate_t0 >= 2.0) {
        s->met.tokens_per_s = (double)(s->met.tokens_generated - s->rate_tokens0) / (t - s->rate_t0);
        s->rate_t0 = t;
        s->rate_tokens0 = s->met.tokens_generated;
    }
    *m = s->met;
    pthread_mutex_unlock(&s->mu);
}

void slm_sched_free(slm_sched *s) {
    if (!s) return;
    slm_sched_stop(s);
    /* whatever is left gets its DONE events */
    admit(s);
    request *r = s->running;
    while (r) {
        request *n = r->next;
        free_request(s, r);
        r = n;
    }
    for (int i = 0; i < s->n_cache; i++) slm_kv_block_unref(s->ctx->kv, s->cache[i].block);
    free(s->cache);
    slm_ctx_free(s->ctx);
    free(s->logits);
    free(s->raw);
    free(s->row);
    free(s->top_ids);
    free(s->top_lp);
    free(s->runs);
    free(s->run_sample);
    free(s->probs);
    free(s->cand);
    slm_drafter_free(s->lookup);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
