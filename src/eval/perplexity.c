/* perplexity.c - windowed perplexity and KL divergence against a saved base model. */
#include "perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/atomic_file.h"
#include "../model/sampler.h"

/* KL base file: a 64-byte header, then one record per scored position:
 *   top_k x { int32 id, float32 log-probability } (descending), float32 nll of the true token. */
#define KLB_MAGIC "SLMKLB1"
typedef struct {
    char magic[8];
    uint32_t version, n_vocab, n_ctx, top_k, n_chunks, per_chunk;
    uint64_t tokens_hash, n_positions;
    uint8_t reserved[16];
} klb_header;
_Static_assert(sizeof(klb_header) == 64, "KL base header is 64 bytes");

typedef struct {
    int32_t id;
    float logp;
} klb_entry;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* log-sum-exp of n logits */
static double logsumexp(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
    return m + log(s);
}

/* top-k of logits, descending, via a small min-heap */
static void top_k(const float *x, int n, int k, klb_entry *out) {
    int h = 0;
    for (int i = 0; i < n; i++) {
        if (h < k) {
            int j = h++;
            out[j] = (klb_entry){i, x[i]};
            while (j > 0 && out[(j - 1) / 2].logp > out[j].logp) {
                klb_entry t = out[j];
                out[j] = out[(j - 1) / 2];
                out[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else if (x[i] > out[0].logp) {
            out[0] = (klb_entry){i, x[i]};
            int j = 0;
            for (;;) {
                int l = 2 * j + 1, r = l + 1, s = j;
                if (l < k && out[l].logp < out[s].logp) s = l;
                if (r < k && out[r].logp < out[s].logp) s = r;
                if (s == j) break;
                klb_entry t = out[j];
                out[j] = out[s];
                out[s] = t;
                j = s;
            }
        }
    }
    /* heap -> descending order (ties: lower id first) */
    for (int a = 1; a < k; a++)
        for (int b = a; b > 0; b--) {
            klb_entry *p = &out[b - 1], *q = &out[b];
            if (p->logp > q->logp || (p->logp == q->logp && p->id < q->id)) break;
            klb_entry t = *p;
            *p = *q;
            *q = t;
        }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    FILE *f;
    klb_header h;
} klb_reader;

static slm_status klb_open(const char *path, klb_reader *r, int n_vocab) {
    r->f = fopen(path, "rb");
    if (!r->f) return slm_error(SLM_ERR_IO, "%s: cannot open KL base file", path);
    if (fread(&r->h, sizeof r->h, 1, r->f) != 1 || memcmp(r->h.magic, KLB_MAGIC, 8) != 0 || r->h.version != 1)
        return slm_error(SLM_ERR_FORMAT, "%s: not a KL base file (bad magic or version)", path);
    if ((int)r->h.n_vocab != n_vocab)
        return slm_error(SLM_ERR_FORMAT, "%s: saved with a vocabulary of %u tokens, this model has %d", path,
                         r->h.n_vocab, n_vocab);
    if (r->h.top_k < 1 || r->h.top_k > 4096 || r->h.top_k > r->h.n_vocab)
        return slm_error(SLM_ERR_FORMAT, "%s: bad top-k %u", path, r->h.top_k);
    if (fseek(r->f, 0, SEEK_END) != 0) return slm_error(SLM_ERR_IO, "%s: cannot seek", path);
    long size = ftell(r->f);
    uint64_t rec = (uint64_t)r->h.top_k * sizeof(klb_entry) + sizeof(float), need;
    if (__builtin_mul_overflow(rec, r->h.n_positions, &need) || size < 0 ||
        need != (uint64_t)size - sizeof(klb_header))
        return slm_error(SLM_ERR_FORMAT, "%s: size %ld does not match %llu positions of top-%u", path, size,
                         (unsigned long long)r->h.n_positions, r->h.top_k);
    fseek(r->f, (long)sizeof(klb_header), SEEK_SET);
    return SLM_OK;
}

slm_status slm_perplexity(slm_ctx *ctx, const int32_t *tokens, size_t n_tokens, const slm_ppl_params *pp,
                          slm_ppl_result *res) {
    memset(res, 0, sizeof *res);
    const int n_ctx = pp->n_ctx ? pp->n_ctx : 512;
    const int vocab = ctx->model->cfg.vocab_size;
    const int k = pp->top_k ? pp->top_k : 32;
    if (n_ctx < 4 || n_ctx > ctx->p.n_ctx)
        return slm_error(SLM_ERR_ARG, "perplexity: window %d must be in [4, %d] (the context size)", n_ctx, ctx->p.n_ctx);
    if (k < 1 || k > 4096 || k > vocab) return slm_error(SLM_ERR_ARG, "perplexity: top-k %d out of range", k);
    size_t avail = n_tokens / (size_t)n_ctx;
    if (avail == 0)
        return slm_error(SLM_ERR_ARG, "perplexity: the text has %zu tokens, fewer than one window of %d", n_tokens,
                         n_ctx);
    int n_chunks = pp->n_chunks > 0 && (size_t)pp->n_chunks < avail ? pp->n_chunks : (int)avail;
    const int first = n_ctx / 2, per_chunk = n_ctx - 1 - first, n_out = n_ctx - first;

    uint64_t hash = 0xcbf29ce484222325ull;
    for (int c = 0; c < n_chunks; c++) {
        const int32_t *w = tokens + (size_t)c * n_ctx;
        if (pp->bos >= 0) {
            hash = fnv1a(hash, &pp->bos, sizeof pp->bos);
            hash = fnv1a(hash, w + 1, (size_t)(n_ctx - 1) * sizeof *w);
        } else {
            hash = fnv1a(hash, w, (size_t)n_ctx * sizeof *w);
        }
    }

    slm_status s = SLM_OK;
    float *logits = malloc((size_t)n_out * vocab * sizeof(float));
    int32_t *win = malloc((size_t)n_ctx * sizeof(int32_t));
    klb_entry *ents = malloc((size_t)k * sizeof(klb_entry));
    klb_entry *base = NULL;
    double *kls = NULL;
    slm_afile out = {0};
    klb_reader in = {0};
    if (!logits || !win || !ents) {
        s = slm_error(SLM_ERR_NOMEM, "perplexity: out of memory");
        goto done;
    }
    if (pp->save_base) {
        if ((s = slm_afile_open(&out, pp->save_base))) goto done;
        klb_header h = {.version = 1, .n_vocab = (uint32_t)vocab, .n_ctx = (uint32_t)n_ctx, .top_k = (uint32_t)k,
                        .n_chunks = (uint32_t)n_chunks, .per_chunk = (uint32_t)per_chunk, .tokens_hash = hash,
                        .n_positions = (uint64_t)n_chunks * per_chunk};
        memcpy(h.magic, KLB_MAGIC, 8);
        slm_afile_write(&out, &h, sizeof h);
    }
    if (pp->kl_base) {
        if ((s = klb_open(pp->kl_base, &in, vocab))) goto done;
        if (in.h.n_ctx != (uint32_t)n_ctx || in.h.tokens_hash != hash || in.h.n_chunks != (uint32_t)n_chunks) {
            s = slm_error(SLM_ERR_ARG,
                          "perplexity: %s was made from other tokens or settings (ctx %u, %u chunks; now ctx %d, "
                          "%d chunks): use the same text, --ctx and --chunks",
                          pp->kl_base, in.h.n_ctx, in.h.n_chunks, n_ctx, n_chunks);
            goto done;
        }
        base = malloc((size_t)in.h.top_k * sizeof *base);
        kls = malloc((size_t)n_chunks * per_chunk * sizeof *kls);
        if (!base || !kls) {
            s = slm_error(SLM_ERR_NOMEM, "perplexity: out of memory");
            goto done;
        }
        res->has_kl = true;
    }

    double nll = 0, nll2 = 0, base_nll = 0, kl_sum = 0, kl_sum2 = 0;
    long n_scored = 0, agree = 0;
    const bool tty = isatty(2);
    const double t0 = now_s();
    for (int c = 0; c < n_chunks; c++) {
        memcpy(win, tokens + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *win);
        if (pp->bos >= 0) win[0] = pp->bos;
        slm_ctx_truncate(ctx, 0);
        if (ctx->p.early_exit != 0) {
            /* early exit applies to single-token passes: score the window token by token */
            for (int i = 0; i < n_ctx && !s; i++) {
                const int out = i >= n_ctx - n_out;
                s = slm_ctx_eval(ctx, win + i, 1, out, out ? logits + (size_t)(i - (n_ctx - n_out)) * vocab : NULL);
            }
            if (s) goto done;
        } else if ((s = slm_ctx_eval(ctx, win, n_ctx, n_out, logits))) {
            goto done;
        }
        for (int j = 0; j < per_chunk; j++) {
            const float *lg = logits + (size_t)j * vocab;
            const int32_t next = win[first + j + 1];
            const double lse = logsumexp(lg, vocab);
            const double l = lse - lg[next];
            nll += l;
            nll2 += l * l;
            if (pp->save_base) {
                top_k(lg, vocab, k, ents);
                for (int i = 0; i < k; i++) ents[i].logp = (float)(ents[i].logp - lse);
                float fl = (float)l;
                slm_afile_write(&out, ents, (size_t)k * sizeof *ents);
                slm_afile_write(&out, &fl, sizeof fl);
            }
            if (pp->kl_base) {
                const int bk = (int)in.h.top_k;
                float bnll;
                if (fread(base, sizeof *base, (size_t)bk, in.f) != (size_t)bk || fread(&bnll, sizeof bnll, 1, in.f) != 1) {
                    s = slm_error(SLM_ERR_IO, "perplexity: %s: read failed", pp->kl_base);
                    goto done;
                }
                double kl = 0, psum = 0, qsum = 0;
                for (int i = 0; i < bk; i++) {
                    if (base[i].id < 0 || base[i].id >= vocab || !(base[i].logp <= 0)) {
                        s = slm_error(SLM_ERR_FORMAT, "perplexity: %s: bad entry at position %ld", pp->kl_base, n_scored);
                        goto done;
                    }
                    const double lp = base[i].logp, p = exp(lp), lq = (double)lg[base[i].id] - lse;
                    kl += p * (lp - lq);
                    psum += p;
                    qsum += exp(lq);
                }
                const double prest = 1 - psum, qrest = 1 - qsum;
                if (prest > 1e-9) kl += prest * (log(prest) - log(qrest > 1e-30 ? qrest : 1e-30));
                if (kl < 0) kl = 0; /* rounding */
                kls[n_scored] = kl;
                kl_sum += kl;
                kl_sum2 += kl * kl;
                base_nll += bnll;
                if (slm_argmax(lg, vocab) == base[0].id) agree++;
            }
            n_scored++;
        }
        if (pp->progress) {
            double el = now_s() - t0;
            double eta = el / (c + 1) * (n_chunks - c - 1);
            fprintf(stderr, "%s[%d/%d] ppl %.4f%s  %.0f tok/s  eta %.0fs%s", tty ? "\r" : "", c + 1, n_chunks,
                    exp(nll / n_scored), "", (double)(c + 1) * n_ctx / el, eta, tty ? "   " : "\n");
        }
    }
    if (pp->progress && tty) fputc('\n', stderr);
    res->n_chunks = n_chunks;
    res->n_scored = n_scored;
    res->nll_mean = nll / n_scored;
    res->ppl = exp(res->nll_mean);
    {
        double var = nll2 / n_scored - res->nll_mean * res->nll_mean;
        res->nll_stderr = n_scored > 1 && var > 0 ? sqrt(var / (n_scored - 1)) : 0;
    }
    res->tokens_per_s = (double)n_chunks * n_ctx / (now_s() - t0);
    if (pp->kl_base) {
        res->kl_mean = kl_sum / n_scored;
        double var = kl_sum2 / n_scored - res->kl_mean * res->kl_mean;
        res->kl_stderr = n_scored > 1 && var > 0 ? sqrt(var / (n_scored - 1)) : 0;
        qsort(kls, (size_t)n_scored, sizeof *kls, cmp_double);
        res->kl_p99 = kls[(size_t)((n_scored - 1) * 0.99)];
        res->kl_max = kls[n_scored - 1];
        res->top1_agree = (double)agree / n_scored;
        res->base_ppl = exp(base_nll / n_scored);
        res->ppl_ratio = res->ppl / res->base_ppl;
    }
    if (pp->save_base) s = slm_afile_commit(&out);
done:
    slm_afile_abort(&out);
    if (in.f) fclose(in.f);
    free(logits);
    free(win);
    free(ents);
    free(base);
    free(kls);
    slm_ctx_truncate(ctx, 0);
    return s;
}
