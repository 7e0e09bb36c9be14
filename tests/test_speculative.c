/* test_speculative.c - speculative decoding.
 *
 *  1. Real model, greedy: on 11 prompts (several with repeated structure) the output with the
 *     prompt-lookup drafter and with the model as its own draft equals slm_generate's token
 *     for token; the self-draft accepts every drafted token.
 *  2. KV rollback: after a speculative run with rejections, the context holds exactly the
 *     prompt and the generated tokens but the last; evaluating that last token gives the
 *     same logits as in a context filled from the same tokens by a plain run.
 *  3. Sampling exactness on tiny random models (written by tests/reference/make_tiny_model.py):
 *     the first and the second generated token, drawn 20000 times with a different tiny
 *     model as the draft (and with prompt lookup), against the target's exact distribution
 *     (softmax with the sampler's truncation rules, computed here independently; the second
 *     token's marginal sums over every first token): a chi-square test, failing below
 *     p = 1e-4.
 *  4. Errors: another vocabulary size, a bad n-gram size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/generate.h"
#include "model/speculative.h"
#include "test.h"

/* ---- generation helpers ---- */

typedef struct {
    int32_t ids[256];
    int n;
} collected;

static bool collect(void *user, int32_t id) {
    collected *c = user;
    if (c->n < 256) c->ids[c->n++] = id;
    return true;
}

static slm_ctx *make_ctx(const slm_model *m, int n_ctx, int n_threads) {
    slm_ctx_params p = {.n_ctx = n_ctx, .n_threads = n_threads};
    slm_ctx *c = NULL;
    if (slm_ctx_create(m, &p, &c)) return NULL;
    return c;
}

static slm_sampler *make_sampler(const slm_sampler_params *sp, int n_vocab) {
    slm_sampler *s = NULL;
    if (slm_sampler_create(sp, n_vocab, &s)) return NULL;
    return s;
}

static const char *const prompts[] = {
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
    "1, 2, 3, 4, 5, 6, 7, 8,",
    "Monday, Tuesday, Wednesday,",
    "The cat sat on the mat. The dog sat on the log. The bird sat on the",
    "Repeat after me: the quick brown fox jumps over the lazy dog. Again: the quick brown fox",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "A list of fruits: apple, banana, cherry, apple, banana,",
    "for (int i = 0; i < n; i++) {\n    sum += a[i];\n}\nfor (int i = 0; i < n; i++) {\n",
    "In 1999, the",
};
#define N_PROMPTS ((int)(sizeof prompts / sizeof prompts[0]))
#define N_GEN 10

static void test_greedy(const slm_model *m, const slm_tokenizer *tok) {
    const int nv = m->cfg.vocab_size;
    slm_ctx *plain = make_ctx(m, 512, 2), *spec = make_ctx(m, 512, 2);
    slm_sampler_params sp = slm_sampler_defaults();
    sp.temperature = 0;
    slm_drafter *look = NULL, *self = NULL;
    slm_ctx_params dp = {.n_ctx = 512, .n_threads = 2};
    CHECK(slm_drafter_lookup_create(3, &look) == SLM_OK, "lookup drafter: %s", slm_last_error());
    CHECK(slm_drafter_model_create(m, &dp, &sp, 0.0f, &self) == SLM_OK, "self drafter: %s", slm_last_error());
    float *logits = malloc((size_t)nv * sizeof *logits), *l2 = malloc((size_t)nv * sizeof *l2);
    if (!plain || !spec || !look || !self || !logits || !l2) {
        CHECK(0, "setup failed");
        goto out;
    }
    int look_drafted = 0, look_acc = 0, self_drafted = 0, self_acc = 0;
    for (int pi = 0; pi < N_PROMPTS; pi++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(slm_tokenizer_encode(tok, prompts[pi], strlen(prompts[pi]), true, true, &ids, &n) == SLM_OK, "encode");
        collected ref = {0}, got = {0};
        slm_gen_stats gs;
        slm_sampler *s1 = make_sampler(&sp, nv), *s2 = make_sampler(&sp, nv), *s3 = make_sampler(&sp, nv);
        slm_ctx_truncate(plain, 0);
        CHECK(slm_generate(plain, tok, s1, ids, (int)n, N_GEN, logits, collect, &ref, &gs) == SLM_OK, "plain");
        /* lookup, gamma 8 */
        slm_spec_params spp = {.draft_max = 8, .adaptive = true};
        slm_spec_stats st;
        CHECK(slm_spec_generate(spec, tok, s2, look, &spp, ids, (int)n, N_GEN, collect, &got, &st) == SLM_OK,
              "lookup run: %s", slm_last_error());
        bool same = got.n == ref.n && !memcmp(got.ids, ref.ids, (size_t)ref.n * sizeof *ref.ids);
        CHECK(same, "prompt %d: lookup output differs from plain greedy (%d vs %d tokens)", pi, got.n, ref.n);
        CHECK(st.gen.n_generated == ref.n, "prompt %d: lookup counts %d tokens, plain %d", pi, st.gen.n_generated,
              ref.n);
        CHECK(st.n_accepted <= st.n_drafted && st.n_steps >= 1 && st.n_steps + st.n_accepted >= st.gen.n_generated,
              "prompt %d: lookup stats consistent (steps %d, drafted %d, accepted %d)", pi, st.n_steps, st.n_drafted,
              st.n_accepted);
        look_drafted += st.n_drafted;
        look_acc += st.n_accepted;
        /* KV rollback: the contexts hold the same tokens; one more token gives the same logits */
        if (same && !gs.hit_eog && !st.gen.hit_eog && ref.n > 0) {
            int len = slm_ctx_len(plain);
            CHECK(slm_ctx_len(spec) == len && len == (int)n + ref.n - 1, "prompt %d: context lengths %d / %d", pi,
                  slm_ctx_len(spec), len);
            CHECK(!memcmp(spec->tokens, plain->tokens, (size_t)len * sizeof *plain->tokens),
                  "prompt %d: context tokens", pi);
            int32_t last = ref.ids[ref.n - 1];
            CHECK(slm_ctx_eval(plain, &last, 1, 1, logits) == SLM_OK && slm_ctx_eval(spec, &last, 1, 1, l2) == SLM_OK,
                  "eval after runs");
            double maxd = 0, range = 0;
            float lo = logits[0], hi = logits[0];
            for (int v = 0; v < nv; v++) {
                double dd = fabs((double)logits[v] - l2[v]);
                if (dd > maxd) maxd = dd;
                if (logits[v] < lo) lo = logits[v];
                if (logits[v] > hi) hi = logits[v];
            }
            range = hi - lo;
            /* batched and single-token passes may round differently, but a stale or missing
             * KV entry changes the logits by a large fraction of their range */
            CHECK(maxd <= 1e-3 * range, "prompt %d: logits after rollback differ by %g (range %g)", pi, maxd, range);
            CHECK(slm_argmax(logits, nv) == slm_argmax(l2, nv), "prompt %d: next token after rollback", pi);
        }
        if (pi % 4 == 0) { /* the model as its own draft: every draft is accepted */
            collected g2 = {0};
            slm_spec_params sps = {.draft_max = 4, .adaptive = false};
            CHECK(slm_spec_generate(spec, tok, s3, self, &sps, ids, (int)n, N_GEN, collect, &g2, &st) == SLM_OK,
                  "self-draft run: %s", slm_last_error());
            CHECK(g2.n == ref.n && !memcmp(g2.ids, ref.ids, (size_t)ref.n * sizeof *ref.ids),
                  "prompt %d: self-draft output differs from plain greedy", pi);
            CHECK(st.n_accepted == st.n_drafted && st.n_drafted > 0,
                  "prompt %d: self-draft accepted %d of %d", pi, st.n_accepted, st.n_drafted);
            self_drafted += st.n_drafted;
            self_acc += st.n_accepted;
        }
        slm_sampler_free(s1);
        slm_sampler_free(s2);
        slm_sampler_free(s3);
        free(ids);
    }
    printf("greedy: %d prompts x %d tokens identical; lookup accepted %d of %d drafts, self-draft %d of %d\n",
           N_PROMPTS, N_GEN, look_acc, look_drafted, self_acc, self_drafted);
    CHECK(look_acc > 0, "lookup accepted some drafts on the repetitive prompts");
out:
    free(logits);
    free(l2);
    slm_drafter_free(look);
    slm_drafter_free(self);
    slm_ctx_free(plain);
    slm_ctx_free(spec);
}

/* ---- chi-square ---- */

/* Regularized upper incomplete gamma Q(a, x): series for x < a + 1, continued fraction
 * (modified Lentz) otherwise. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1.0;
    double lg = lgamma(a);
    if (x < a + 1) {
        double sum = 1.0 / a, term = sum;
        for (int n = 1; n < 1000; n++) {
            term *= x / (a + n);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-15) break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - lg);
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return exp(-x + a * log(x) - lg) * h;
}

/* Chi-square of counts against probabilities (bins with expected count < 5 pooled into one);
 * returns the p-value and reports the statistic and degrees of freedom. */
static double chi_square(const char *what, const long *count, const double *prob, int n, long total) {
    double stat = 0, pool_e = 0;
    long pool_o = 0;
    int bins = 0;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * (double)total;
        if (e < 5) {
            pool_e += e;
            pool_o += count[i];
            continue;
        }
        stat += (count[i] - e) * (count[i] - e) / e;
        bins++;
    }
    if (pool_e > 0) {
        if (pool_e >= 1) {
            stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
            bins++;
        } else if (pool_o > 10) {
            stat += 1e9; /* mass where the target has almost none */
        }
    }
    int df = bins - 1;
    double pv = df > 0 ? gamma_q(df / 2.0, stat / 2.0) : 1.0;
    printf("%s: chi-square %.2f, %d degrees of freedom, p = %.4g (%ld draws)\n", what, stat, df, pv, total);
    return pv;
}

/* The target's exact distribution at one position: logits -> probabilities with temperature,
 * top-k, top-p, min-p, written independently of the sampler (a full sort). */
static int cmp_desc(const void *a, const void *b) {
    const double *x = a, *y = b;
    return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : (x[1] > y[1]) - (x[1] < y[1]);
}

static void exact_dist(const float *logits, int n, const slm_sampler_params *p, double *out) {
    double *pr = malloc((size_t)n * 2 * sizeof *pr); /* (probability, id) pairs */
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmax(mx, logits[i] / p->temperature);
    for (int i = 0; i < n; i++) {
        pr[2 * i] = logits[i] / p->temperature;
        pr[2 * i + 1] = i;
    }
    qsort(pr, (size_t)n, 2 * sizeof *pr, cmp_desc);
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    double sum = 0;
    for (int i = 0; i < k; i++) sum += exp(pr[2 * i] - mx);
    for (int i = 0; i < k; i++) pr[2 * i] = exp(pr[2 * i] - mx) / sum;
    int keep = k;
    if (p->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < k; i++)
            if ((cum += pr[2 * i]) >= p->top_p) {
                keep = i + 1;
                break;
            }
    }
    if (p->min_p > 0) {
        int j = 1;
        while (j < keep && pr[2 * j] >= p->min_p * pr[0]) j++;
        keep = j;
    }
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += pr[2 * i];
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < keep; i++) out[(int)pr[2 * i + 1]] = pr[2 * i] / tot;
    free(pr);
}

static bool make_tiny(const char *path, const char *type) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 tests/reference/make_tiny_model.py '%s' --seed 11 --type %s --vocab 300 --untied >/dev/null 2>&1",
             path, type);
    return system(cmd) == 0;
}

#define DRAWS 20000

static void test_sampling_exact(void) {
    char dir[] = "/tmp/slm-spec-XXXXXX", tpath[256], dpath[256], opath[256];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(tpath, sizeof tpath, "%s/target.gguf", dir);
    snprintf(dpath, sizeof dpath, "%s/draft.gguf", dir);
    snprintf(opath, sizeof opath, "%s/other.gguf", dir);
    /* the draft: the same random weights rounded to Q4_0, a close but different distribution */
    bool made = make_tiny(tpath, "f32") && make_tiny(dpath, "q4_0");
    CHECK(made, "make_tiny_model.py wrote the tiny models (python3 with numpy and gguf is needed)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 tests/reference/make_tiny_model.py '%s' --vocab 320 >/dev/null 2>&1", opath);
    bool made_other = system(cmd) == 0;
    slm_model *tm = NULL, *dm = NULL, *om = NULL;
    if (!made || slm_model_load(tpath, &tm) || slm_model_load(dpath, &dm)) {
        CHECK(0, "tiny models load: %s", slm_last_error());
        goto out;
    }
    /* a model with another vocabulary is refused */
    if (made_other && slm_model_load(opath, &om) == SLM_OK) {
        slm_status s = slm_spec_check_vocab(tm, NULL, om, NULL);
        CHECK(s == SLM_ERR_ARG && strstr(slm_last_error(), "vocabulary"), "another vocabulary refused: %s",
              slm_last_error());
    } else {
        CHECK(0, "the tiny model with 320 tokens loads");
    }
    CHECK(slm_spec_check_vocab(tm, NULL, dm, NULL) == SLM_OK, "same vocabulary accepted");
    const int nv = tm->cfg.vocab_size;
    /* a prefix with repeated structure, so the lookup drafter proposes too: 1 a b t a b, with
     * t a likely next token there (so that its draft is accepted sometimes) */
    int32_t prefix[] = {1, 40, 41, 42, 40, 41};
    const int np = (int)(sizeof prefix / sizeof prefix[0]);
    const slm_sampler_params settings[2] = {
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .repeat_last_n = 64},
        {.temperature = 1.0f, .top_k = 40, .top_p = 0.95f, .min_p = 0.01f, .repeat_penalty = 1.3f, .repeat_last_n = 4},
    };
    float *lg = malloc((size_t)nv * sizeof *lg);
    double *p1 = malloc((size_t)nv * sizeof *p1), *p2 = calloc((size_t)nv, sizeof *p2), *tmp = malloc((size_t)nv * sizeof *tmp);
    long *c1 = malloc((size_t)nv * sizeof *c1), *c2 = malloc((size_t)nv * sizeof *c2);
    int32_t *seq = malloc((size_t)(np + 2) * sizeof *seq);
    slm_ctx *ref = make_ctx(tm, 64, 1), *tc = make_ctx(tm, 64, 1);
    if (!lg || !p1 || !p2 || !tmp || !c1 || !c2 || !seq || !ref || !tc) {
        CHECK(0, "setup");
        goto out2;
    }
    for (int it = 0; it < 3; it++) {
        slm_ctx_truncate(ref, 0);
        CHECK(slm_ctx_eval(ref, prefix, np, 1, lg) == SLM_OK, "reference eval");
        prefix[3] = slm_argmax(lg, nv);
    }
    for (int si = 0; si < 2; si++) {
        const slm_sampler_params *sp = &settings[si];
        /* the exact distributions: token 1 after the prefix, token 2 marginalized over token 1;
         * the repetition penalty from the same window as the sampler (the last repeat_last_n) */
        memcpy(seq, prefix, (size_t)np * sizeof *seq);
        slm_ctx_truncate(ref, 0);
        CHECK(slm_ctx_eval(ref, prefix, np, 1, lg) == SLM_OK, "reference eval");
        slm_penalize(sp, lg, nv, seq + (np > sp->repeat_last_n ? np - sp->repeat_last_n : 0),
                     np > sp->repeat_last_n ? sp->repeat_last_n : np);
        exact_dist(lg, nv, sp, p1);
        memset(p2, 0, (size_t)nv * sizeof *p2);
        for (int32_t t = 0; t < nv; t++) {
            if (p1[t] == 0) continue;
            slm_ctx_truncate(ref, np);
            CHECK(slm_ctx_eval(ref, &t, 1, 1, lg) == SLM_OK, "reference eval");
            seq[np] = t;
            int w = np + 1 > sp->repeat_last_n ? sp->repeat_last_n : np + 1;
            slm_penalize(sp, lg, nv, seq + np + 1 - w, w);
            exact_dist(lg, nv, sp, tmp);
            for (int v = 0; v < nv; v++) p2[v] += p1[t] * tmp[v];
        }
        for (int di = 0; di < 2 - si; di++) { /* the lookup drafter with the first settings only */
            slm_drafter *d = NULL;
            slm_ctx_params dcp = {.n_ctx = 64, .n_threads = 1};
            slm_status s = di == 0 ? slm_drafter_model_create(dm, &dcp, sp, 0.0f, &d) : slm_drafter_lookup_create(2, &d);
            CHECK(s == SLM_OK, "drafter: %s", slm_last_error());
            if (s) continue;
            memset(c1, 0, (size_t)nv * sizeof *c1);
            memset(c2, 0, (size_t)nv * sizeof *c2);
            long drafted = 0, accepted = 0;
            slm_spec_params spp = {.draft_max = 2, .adaptive = false};
            for (int r = 0; r < DRAWS; r++) {
                slm_sampler_params rp = *sp;
                rp.seed = 1000003ull * (uint64_t)r + (uint64_t)si;
                slm_sampler *smp = make_sampler(&rp, nv);
                collected got = {0};
                slm_spec_stats st;
                s = slm_spec_generate(tc, NULL, smp, d, &spp, prefix, np, 3, collect, &got, &st);
                slm_sampler_free(smp);
                if (s || got.n != 3) {
                    CHECK(0, "sampling run %d: %s", r, s ? slm_last_error() : "too few tokens");
                    break;
                }
                c1[got.ids[0]]++;
                c2[got.ids[1]]++;
                drafted += st.n_drafted;
                accepted += st.n_accepted;
            }
            char what[128];
            printf("%s drafter, settings %d: accepted %ld of %ld drafts\n", di == 0 ? "tiny draft model" : "lookup",
                   si, accepted, drafted);
            CHECK(drafted > DRAWS && accepted > 0 && accepted < drafted, "drafts made, some accepted, some rejected");
            snprintf(what, sizeof what, "  token 1 (%s, settings %d)", di == 0 ? "draft model" : "lookup", si);
            CHECK(chi_square(what, c1, p1, nv, DRAWS) > 1e-4, "%s: distribution differs from the target's", what);
            snprintf(what, sizeof what, "  token 2 (%s, settings %d)", di == 0 ? "draft model" : "lookup", si);
            CHECK(chi_square(what, c2, p2, nv, DRAWS) > 1e-4, "%s: distribution differs from the target's", what);
            slm_drafter_free(d);
        }
    }
out2:
    slm_ctx_free(ref);
    slm_ctx_free(tc);
    free(lg);
    free(p1);
    free(p2);
    free(tmp);
    free(c1);
    free(c2);
    free(seq);
out:
    slm_model_free(tm);
    slm_model_free(dm);
    slm_model_free(om);
    unlink(tpath);
    unlink(dpath);
    unlink(opath);
    rmdir(dir);
}

static void test_errors(void) {
    slm_drafter *d = NULL;
    CHECK(slm_drafter_lookup_create(0, &d) == SLM_ERR_ARG && !d, "n-gram 0 refused");
    CHECK(slm_drafter_lookup_create(65, &d) == SLM_ERR_ARG && !d, "n-gram 65 refused");
    /* the lookup drafter proposes what followed the most recent longest match */
    CHECK(slm_drafter_lookup_create(3, &d) == SLM_OK, "lookup");
    const int32_t h[] = {5, 6, 7, 8, 9, 1, 6, 7, 2, 3, 5, 6, 7};
    int32_t out[8];
    int n = -1;
    CHECK(d->propose(d, h, 13, 4, out, NULL, &n) == SLM_OK && n == 4 && out[0] == 8 && out[1] == 9 && out[2] == 1 &&
              out[3] == 6,
          "3-gram 5 6 7 found at 0: proposes 8 9 1 6 (got %d: %d %d)", n, n > 0 ? out[0] : -1, n > 1 ? out[1] : -1);
    const int32_t h2[] = {4, 6, 7, 2, 3, 1, 6, 7, 9, 8, 6, 7};
    CHECK(d->propose(d, h2, 12, 8, out, NULL, &n) == SLM_OK && n == 2 && out[0] == 9 && out[1] == 8,
          "2-gram 6 7: the most recent match (at 6), 2 tokens after a 2-token match (got %d)", n);
    const int32_t h4[] = {1, 2, 3, 9, 1, 2, 3};
    CHECK(d->propose(d, h4, 7, 8, out, NULL, &n) == SLM_OK && n == 4 && out[0] == 9 && out[1] == 1 && out[2] == 2 &&
              out[3] == 3,
          "3-gram: proposes up to the end of the text (got %d)", n);
    const int32_t h5[] = {7, 5, 8, 7};
    CHECK(d->propose(d, h5, 4, 8, out, NULL, &n) == SLM_OK && n == 1 && out[0] == 5,
          "1-gram: one token (got %d)", n);
    const int32_t h3[] = {1, 2, 3, 4};
    CHECK(d->propose(d, h3, 4, 8, out, NULL, &n) == SLM_OK && n == 0, "no match: nothing proposed");
    slm_drafter_free(d);
}

int main(void) {
    test_errors();
    slm_model *m = NULL;
    slm_tokenizer *tok = NULL;
    slm_status s = slm_model_load(test_model_path(), &m);
    CHECK(s == SLM_OK, "model fixture loads (%s): %s", test_model_path(), slm_last_error());
    if (!s) {
        CHECK(slm_tokenizer_load(m->gguf, &tok) == SLM_OK, "tokenizer");
        CHECK(slm_spec_check_vocab(m, tok, m, tok) == SLM_OK, "a model matches its own vocabulary");
        if (tok) test_greedy(m, tok);
    }
    slm_tokenizer_free(tok);
    slm_model_free(m);
    test_sampling_exact();
    return test_summary("speculative");
}
