/* sampler.c - penalties, truncation (top-k, top-p, min-p), temperature and the draw. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

slm_sampler_params slm_sampler_defaults(void) {
    return (slm_sampler_params){.temperature = 0.8f,
                                .top_k = 40,
                                .top_p = 0.95f,
                                .min_p = 0.05f,
                                .repeat_penalty = 1.0f,
                                .repeat_last_n = 64,
                                .seed = 0};
}

slm_status slm_sampler_check(const slm_sampler_params *p) {
    if (!(p->temperature >= 0 && p->temperature <= 100))
        return slm_error(SLM_ERR_ARG, "temperature %g is out of range [0, 100]", p->temperature);
    if (p->top_k < 0) return slm_error(SLM_ERR_ARG, "top-k %d is negative", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return slm_error(SLM_ERR_ARG, "top-p %g is out of range (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p < 1)) return slm_error(SLM_ERR_ARG, "min-p %g is out of range [0, 1)", p->min_p);
    if (!(p->repeat_penalty > 0 && p->repeat_penalty <= 100))
        return slm_error(SLM_ERR_ARG, "repeat penalty %g is out of range (0, 100]", p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > (1 << 20))
        return slm_error(SLM_ERR_ARG, "repeat-last-n %d is out of range", p->repeat_last_n);
    return SLM_OK;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static float next_uniform(slm_sampler *s) {
    uint64_t s0 = s->rng[0], s1 = s->rng[1], r = s0 + s1;
    s1 ^= s0;
    s->rng[0] = rotl(s0, 24) ^ s1 ^ (s1 << 16);
    s->rng[1] = rotl(s1, 37);
    return (float)(r >> 40) / (float)(1ull << 24); /* 24 random bits: exact in a float, < 1 */
}

slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out) {
    *out = NULL;
    slm_status st = slm_sampler_check(p);
    if (st) return st;
    if (n_vocab <= 0) return slm_error(SLM_ERR_ARG, "sampler: vocabulary size %d", n_vocab);
    slm_sampler *s = calloc(1, sizeof *s);
    if (!s) return slm_error(SLM_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->history = malloc((size_t)(p->repeat_last_n ? p->repeat_last_n : 1) * sizeof *s->history);
    if (!s->cand || !s->history) {
        slm_sampler_free(s);
        return slm_error(SLM_ERR_NOMEM, "sampler: out of memory");
    }
    uint64_t x = p->seed;
    s->rng[0] = slm_splitmix64(&x);
    s->rng[1] = slm_splitmix64(&x);
    *out = s;
    return SLM_OK;
}

void slm_sampler_free(slm_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->history);
    free(s);
}

void slm_sampler_accept(slm_sampler *s, int32_t id) {
    if (s->p.repeat_last_n == 0) return;
    s->history[s->history_pos] = id;
    s->history_pos = (s->history_pos + 1) % s->p.repeat_last_n;
    if (s->n_history < s->p.repeat_last_n) s->n_history++;
}

int32_t slm_argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cmp_cand_desc(const void *a, const void *b) {
    const slm_candidate *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return x->id < y->id ? -1 : x->id > y->id; /* deterministic order on ties */
}

/* Move the k largest candidates to the front, sorted descending (partial selection, then a
 * sort of those k only: O(n + k log k) on average). */
static void select_top(slm_candidate *c, int n, int k) {
    if (k < n) {
        int lo = 0, hi = n - 1;
        while (lo < hi) { /* quickselect on descending order so that [0, k) holds the top k */
            slm_candidate pivot = c[(lo + hi) / 2];
            int i = lo, j = hi;
            while (i <= j) {
                while (cmp_cand_desc(&c[i], &pivot) < 0) i++;
                while (cmp_cand_desc(&c[j], &pivot) > 0) j--;
                if (i <= j) {
                    slm_candidate t = c[i];
                    c[i] = c[j];
                    c[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }
    qsort(c, (size_t)(k < n ? k : n), sizeof *c, cmp_cand_desc);
}

/* Temperature, top-k, softmax over the k survivors (sorted descending), top-p, min-p:
 * cand[0..keep) are the kept tokens with their probabilities (normalized over the top-k
 * survivors); returns keep. temperature > 0. */
static int keep_candidates(const float *logits, int n, const slm_sampler_params *p, slm_candidate *cand) {
    for (int i = 0; i < n; i++) cand[i] = (slm_candidate){i, logits[i] / p->temperature};
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    select_top(cand, n, k);
    float mx = cand[0].p;
    double sum = 0;
    for (int i = 0; i < k; i++) {
        cand[i].p = expf(cand[i].p - mx);
        sum += cand[i].p;
    }
    for (int i = 0; i < k; i++) cand[i].p = (float)(cand[i].p / sum);
    /* top-p: smallest prefix with cumulative probability >= top_p */
    int keep = k;
    if (p->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < k; i++) {
            cum += cand[i].p;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    /* min-p: drop tokens below min_p times the top probability */
    if (p->min_p > 0) {
        float floor_p = p->min_p * cand[0].p;
        int m = 1;
        while (m < keep && cand[m].p >= floor_p) m++;
        keep = m;
    }
    return keep;
}

int32_t slm_sample_logits(const float *logits, int n, const slm_sampler_params *p, float u, slm_candidate *cand) {
    if (p->temperature <= 0) return slm_argmax(logits, n);
    const int keep = keep_candidates(logits, n, p, cand);
    double total = 0;
    for (int i = 0; i < keep; i++) total += cand[i].p;
    double r = (double)u * total, cum = 0;
    for (int i = 0; i < keep; i++) {
        cum += cand[i].p;
        if (r < cum) return cand[i].id;
    }
    return cand[keep - 1].id;
}

int32_t slm_sampler_sample(slm_sampler *s, float *logits) {
    const slm_sampler_params *p = &s->p;
    slm_penalize(p, logits, s->n_vocab, s->history, s->n_history); /* each distinct recent token once */
    float u = next_uniform(s);
    int32_t id = slm_sample_logits(logits, s->n_vocab, p, u, s->cand);
    slm_sampler_accept(s, id);
    return id;
}

float slm_sampler_uniform(slm_sampler *s) { return next_uniform(s); }

void slm_penalize(const slm_sampler_params *p, float *logits, int n_vocab, const int32_t *recent, int n_recent) {
    if (p->repeat_penalty == 1.0f) return;
    for (int i = 0; i < n_recent; i++) {
        int32_t id = recent[i];
        if (id < 0 || id >= n_vocab) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = recent[j] == id;
        if (seen) continue;
        logits[id] = logits[id] > 0 ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
    }
}

int32_t slm_sample_probs(const float *logits, int n, const slm_sampler_params *p, slm_candidate *cand, float *probs) {
    memset(probs, 0, (size_t)n * sizeof *probs);
    if (p->temperature <= 0) {
        int32_t id = slm_argmax(logits, n);
        probs[id] = 1.0f;
        return id;
    }
    /* the same steps as slm_sample_logits, keeping the kept set instead of drawing */
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    if (k == n && p->top_p >= 1) { /* no ordering needed: softmax, then the min-p floor */
        int32_t best = slm_argmax(logits, n);
        float mx = logits[best] / p->temperature;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (probs[i] = expf(logits[i] / p->temperature - mx));
        float floor_p = p->min_p > 0 ? p->min_p * (float)(1.0 / sum) : 0; /* min-p of the top probability */
        double total = 0;
        for (int i = 0; i < n; i++) {
            float q = (float)(probs[i] / sum);
            probs[i] = q >= floor_p ? q : 0;
            total += probs[i];
        }
        for (int i = 0; i < n; i++) probs[i] = (float)(probs[i] / total);
        return best;
    }
    const int keep = keep_candidates(logits, n, p, cand);
    double total = 0;
    for (int i = 0; i < keep; i++) total += cand[i].p;
    for (int i = 0; i < keep; i++) probs[cand[i].id] = (float)(cand[i].p / total);
    return cand[0].id;
}

int32_t slm_sample_from_probs(const float *probs, int n, float u) {
    double total = 0;
    int32_t last = -1;
    for (int i = 0; i < n; i++)
        if (probs[i] > 0) {
            total += probs[i];
            last = i;
        }
    if (last < 0) return -1;
    double r = (double)u * total, cum = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        cum += probs[i];
        if (r < cum) return i;
    }
    return last;
}
