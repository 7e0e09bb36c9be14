/* test_sched.c - the continuous-batching scheduler on the real model: greedy outputs of many
 * requests served together equal each request served alone, also when a small KV pool forces
 * preemption and recomputation; parallel samples; prefix sharing; cancellation; a callback
 * ending a sample; submit errors; the engine loop on its own thread. Prompt lookup
 * speculation: greedy outputs equal the solo ones (batched, preempted, n > 1, max_tokens and
 * callback stops inside accepted drafts), rejected positions leave no KV blocks behind, and
 * seeded sampling does not depend on the other requests. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward.h"
#include "runtime/sched.h"
#include "test.h"

enum { NREQ = 8, MAXT = 10, MAXN = 4 };

typedef struct {
    int32_t out[MAXN][64];
    int n_out[MAXN];
    int done[MAXN];
    slm_finish finish[MAXN];
    int n_cached;
    int stop_after; /* > 0: end the sample after this many tokens */
    float logprob_sum;
    int bad_logprob;
} result;

static bool on_event(void *user, const slm_event *ev) {
    result *r = user;
    if (ev->kind == SLM_EV_TOKEN) {
        r->out[ev->index][r->n_out[ev->index]++] = ev->token;
        if (!(ev->logprob <= 0.0f)) r->bad_logprob++;
        for (int i = 1; i < ev->n_top; i++)
            if (ev->top_logprobs[i] > ev->top_logprobs[i - 1]) r->bad_logprob++;
        return !(r->stop_after && r->n_out[ev->index] >= r->stop_after);
    }
    r->done[ev->index]++;
    r->finish[ev->index] = ev->finish;
    r->n_cached = ev->n_cached;
    return true;
}

static int32_t prompts[NREQ][48];
static int plen[NREQ];

/* Greedy continuation of one prompt, alone. */
static void solo(const slm_model *m, const int32_t *p, int n, int32_t *out, int max) {
    slm_ctx_params cp = {.n_ctx = 256, .max_batch = 64, .n_threads = 2};
    slm_ctx *c;
    slm_ctx_create(m, &cp, &c);
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof *lg);
    slm_ctx_eval(c, p, n, 1, lg);
    for (int k = 0; k < max; k++) {
        out[k] = slm_argmax(lg, m->cfg.vocab_size);
        slm_ctx_eval(c, &out[k], 1, 1, lg);
    }
    free(lg);
    slm_ctx_free(c);
}

static slm_req_params greedy(int i, int max) {
    slm_req_params q = {.prompt = prompts[i], .n_prompt = plen[i], .max_tokens = max, .n = 1, .logprobs = -1,
                        .ignore_eog = true};
    q.sp = slm_sampler_defaults();
    q.sp.temperature = 0;
    return q;
}

static void drain(slm_sched *s) {
    for (int guard = 0; guard < 100000 && slm_sched_step(s); guard++) {
    }
}

/* All NREQ greedy requests at once; outputs compared with solo runs. */
static void run_all(const slm_model *m, slm_sched_params sp, int32_t ref[NREQ][MAXT], const char *what,
                    uint64_t *preempt) {
    slm_sched *s;
    CHECK(slm_sched_create(m, NULL, &sp, &s) == SLM_OK, "%s: create", what);
    static result res[NREQ];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NREQ; i++) {
        slm_req_params q = greedy(i, MAXT);
        q.logprobs = i % 3; /* some with alternatives */
        CHECK(slm_sched_submit(s, &q, on_event, &res[i], NULL) == SLM_OK, "%s: submit %d", what, i);
    }
    drain(s);
    int bad = 0, lp = 0;
    for (int i = 0; i < NREQ; i++) {
        bad += res[i].done[0] != 1 || res[i].finish[0] != SLM_FINISH_LENGTH || res[i].n_out[0] != MAXT ||
               memcmp(res[i].out[0], ref[i], sizeof ref[i]) != 0;
        lp += res[i].bad_logprob;
    }
    CHECK(bad == 0, "%s: %d requests differ from their solo greedy output", what, bad);
    CHECK(lp == 0, "%s: %d bad logprobs", what, lp);
    slm_sched_metrics met;
    slm_sched_metrics_get(s, &met);
    CHECK(met.requests_done == NREQ && met.tokens_generated == NREQ * MAXT && met.running == 0 && met.queued == 0,
          "%s: metrics %llu done, %llu tokens", what, (unsigned long long)met.requests_done,
          (unsigned long long)met.tokens_generated);
    if (preempt) *preempt = met.preemptions;
    slm_sched_free(s);
}

/* ---- prompt lookup ---- */

enum { NREP = 3, REPT = 20, NSPEC = 4 };
static int32_t rep_prompts[NREP][48];
static int rep_len[NREP];

static slm_req_params rep_greedy(int i, int max) {
    slm_req_params q = greedy(0, max);
    q.prompt = rep_prompts[i];
    q.n_prompt = rep_len[i];
    return q;
}

static slm_sched_params spec_params(int kv_tokens, int max_batch, bool no_prefix) {
    return (slm_sched_params){.max_seqs = 8, .max_batch_tokens = max_batch, .kv_tokens = kv_tokens, .max_ctx = 128,
                              .no_prefix_cache = no_prefix, .n_threads = 2, .lookup_ngram = 3, .draft_max = 4};
}

/* The random prompts and the repetitive ones together, with lookup, against the solo outputs. */
static void spec_all(const slm_model *m, slm_sched_params sp, int32_t ref[NREQ][MAXT], int32_t rref[NREP][REPT],
                     const char *what, slm_sched_metrics *out) {
    slm_sched *s;
    CHECK(slm_sched_create(m, NULL, &sp, &s) == SLM_OK, "%s: create", what);
    static result res[NSPEC + NREP];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NSPEC + NREP; i++) {
        slm_req_params q = i < NSPEC ? greedy(i, MAXT) : rep_greedy(i - NSPEC, REPT);
        q.logprobs = i % 3;
        CHECK(slm_sched_submit(s, &q, on_event, &res[i], NULL) == SLM_OK, "%s: submit %d", what, i);
    }
    drain(s);
    int bad = 0, lp = 0;
    for (int i = 0; i < NSPEC + NREP; i++) {
        const int want = i < NSPEC ? MAXT : REPT;
        const int32_t *r = i < NSPEC ? ref[i] : rref[i - NSPEC];
        bad += res[i].done[0] != 1 || res[i].finish[0] != SLM_FINISH_LENGTH || res[i].n_out[0] != want ||
               memcmp(res[i].out[0], r, (size_t)want * sizeof *r) != 0;
        lp += res[i].bad_logprob;
    }
    CHECK(bad == 0, "%s: %d requests differ from their solo greedy output", what, bad);
    CHECK(lp == 0, "%s: %d bad logprobs", what, lp);
    slm_sched_metrics_get(s, out);
    CHECK(out->tokens_generated == NSPEC * MAXT + NREP * REPT && out->running == 0,
          "%s: %llu tokens generated", what, (unsigned long long)out->tokens_generated);
    CHECK(out->spec_drafted > 0 && out->spec_accepted > 0 && out->spec_accepted <= out->spec_drafted,
          "%s: drafted %llu, accepted %llu", what, (unsigned long long)out->spec_drafted,
          (unsigned long long)out->spec_accepted);
    slm_sched_free(s);
}

static void spec_tests(const slm_model *m, int32_t ref[NREQ][MAXT]) {
    for (int i = 0; i < NREP; i++) {
        /* a pattern of 11 + i tokens three times, then its start: text to copy from */
        const int per = 11 + i;
        int32_t pat[16];
        for (int j = 0; j < per; j++) pat[j] = (int32_t)((i * 7919 + j * 4391 + 101) % 20000 + 200);
        rep_len[i] = 0;
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < per; j++) rep_prompts[i][rep_len[i]++] = pat[j];
        for (int j = 0; j < 3; j++) rep_prompts[i][rep_len[i]++] = pat[j];
    }
    static int32_t rref[NREP][REPT];
    for (int i = 0; i < NREP; i++) solo(m, rep_prompts[i], rep_len[i], rref[i], REPT);

    slm_sched_metrics met;
    spec_all(m, spec_params(2048, 64, false), ref, rref, "lookup batched", &met);
    spec_all(m, spec_params(256, 48, true), ref, rref, "lookup small pool", &met);
    CHECK(met.preemptions > 0 && met.kv_blocks_used == 0, "lookup small pool: %llu preemptions, %d blocks left",
          (unsigned long long)met.preemptions, met.kv_blocks_used);

    slm_sched *s;
    /* rollback, step by step, one request at a time: after every step the pool holds exactly
     * the blocks of the computed positions (rejected drafts that reached into a block of their
     * own gave it back). The repetitive prompts under a repetition penalty make the model
     * leave the pattern, so copied drafts get rejected; outputs against the same requests
     * without lookup. */
    {
        slm_sched_params sp = spec_params(512, 64, true);
        sp.draft_max = 8;
        slm_sched *plain;
        CHECK(slm_sched_create(m, NULL, &sp, &s) == SLM_OK, "create rollback");
        sp.lookup_ngram = 0;
        CHECK(slm_sched_create(m, NULL, &sp, &plain) == SLM_OK, "create plain");
        int bad = 0, crossed = 0, steps = 0, wrong = 0;
        slm_sched_metrics m0 = {0}, mt;
        for (int i = 0; i < NREP && !crossed; i++) {
            static result a, b;
            memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
            slm_req_params q = rep_greedy(i, REPT);
            q.sp.repeat_penalty = 1.5f;
            slm_sched_submit(plain, &q, on_event, &b, NULL);
            drain(plain);
            slm_sched_submit(s, &q, on_event, &a, NULL);
            while (slm_sched_step(s) && steps++ < 1000) {
                slm_sched_metrics_get(s, &mt);
                const long need = (mt.kv_tokens + 15) / 16;
                if (mt.running == 1 && mt.kv_blocks_used != need) bad++;
                /* the run held the kept positions minus the accepted drafts, plus all drafts */
                const long nd = (long)(mt.spec_drafted - m0.spec_drafted), k = (long)(mt.spec_accepted - m0.spec_accepted);
                if (mt.running == 1 && nd > k && (mt.kv_tokens - k + nd + 15) / 16 > need) crossed++;
                m0 = mt;
            }
            wrong += a.n_out[0] != REPT || b.n_out[0] != REPT || memcmp(a.out[0], b.out[0], sizeof a.out[0]) != 0;
        }
        CHECK(bad == 0, "rollback: %d steps where the pool held other than the needed blocks", bad);
        CHECK(wrong == 0, "rollback: %d outputs differ from those without lookup", wrong);
        CHECK(crossed > 0, "rollback: rejected drafts emptied a block in %d steps", crossed);
        slm_sched_metrics_get(s, &mt);
        CHECK(mt.kv_blocks_used == 0, "rollback: %d blocks left after the requests", mt.kv_blocks_used);
        slm_sched_free(plain);
        slm_sched_free(s);
    }

    CHECK(slm_sched_create(m, NULL, &(slm_sched_params){.max_seqs = 8, .kv_tokens = 1024, .max_ctx = 128,
                                                         .n_threads = 2, .lookup_ngram = 2, .draft_max = 6},
                           &s) == SLM_OK,
          "create lookup");
    /* max_tokens and callback stops at every place of the accepted runs */
    {
        int bad_len = 0, bad_stop = 0;
        for (int k = 1; k <= 5; k++) {
            static result a, b;
            memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
            slm_req_params q = rep_greedy(0, k);
            slm_sched_submit(s, &q, on_event, &a, NULL);
            b.stop_after = k;
            q.max_tokens = REPT;
            slm_sched_submit(s, &q, on_event, &b, NULL);
            drain(s);
            bad_len += a.n_out[0] != k || a.finish[0] != SLM_FINISH_LENGTH || a.done[0] != 1 ||
                       memcmp(a.out[0], rref[0], (size_t)k * sizeof(int32_t)) != 0;
            bad_stop += b.n_out[0] != k || b.finish[0] != SLM_FINISH_STOP || b.done[0] != 1 ||
                        memcmp(b.out[0], rref[0], (size_t)k * sizeof(int32_t)) != 0;
        }
        CHECK(bad_len == 0, "lookup: %d wrong max_tokens cuts", bad_len);
        CHECK(bad_stop == 0, "lookup: %d wrong callback stops", bad_stop);
    }
    /* n > 1 greedy samples; seeded sampling alone and among other requests */
    {
        static result a, b, c, o[3];
        memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c), memset(o, 0, sizeof o);
        slm_req_params q = rep_greedy(2, REPT);
        q.n = 3;
        slm_sched_submit(s, &q, on_event, &a, NULL);
        drain(s);
        int bad = 0;
        for (int i = 0; i < 3; i++) bad += a.n_out[i] != REPT || memcmp(a.out[i], rref[2], sizeof rref[2]) != 0;
        CHECK(bad == 0, "lookup: %d of 3 greedy samples differ from the solo output", bad);

        slm_req_params sq = rep_greedy(1, REPT);
        sq.sp.temperature = 0.8f;
        sq.sp.seed = 7;
        slm_sched_submit(s, &sq, on_event, &b, NULL);
        drain(s);
        for (int i = 0; i < 3; i++) {
            slm_req_params oq = i < 2 ? greedy(i, MAXT) : rep_greedy(0, REPT);
            slm_sched_submit(s, &oq, on_event, &o[i], NULL);
        }
        slm_sched_submit(s, &sq, on_event, &c, NULL);
        drain(s);
        int valid = b.n_out[0] == REPT;
        for (int i = 0; i < b.n_out[0]; i++) valid &= b.out[0][i] >= 0 && b.out[0][i] < m->cfg.vocab_size;
        CHECK(valid, "lookup sampling: %d valid tokens", b.n_out[0]);
        CHECK(c.n_out[0] == b.n_out[0] && !memcmp(c.out[0], b.out[0], sizeof b.out[0]),
              "lookup sampling: same seed alone and among other requests, same tokens");
    }
    slm_sched_free(s);
    slm_sched_params bad = {.lookup_ngram = 65};
    CHECK(slm_sched_create(m, NULL, &bad, &s) == SLM_ERR_ARG, "lookup n-gram 65 refused");
    bad = (slm_sched_params){.lookup_ngram = 3, .draft_max = 17};
    CHECK(slm_sched_create(m, NULL, &bad, &s) == SLM_ERR_ARG, "draft length 17 refused");
}

typedef struct {
    slm_sched *s;
} thread_arg;

static void *engine(void *a) {
    slm_sched_run(((thread_arg *)a)->s);
    return NULL;
}

int main(void) {
    slm_model *m = NULL;
    if (slm_model_load(test_model_path(), &m)) {
        CHECK(0, "model fixture missing");
        return test_summary("sched");
    }
    for (int i = 0; i < NREQ; i++) {
        plen[i] = 3 + (i * 13) % 44;
        for (int j = 0; j < plen[i]; j++) prompts[i][j] = (int32_t)((i * 31 + j * 977 + 5) % 30000);
    }
    static int32_t ref[NREQ][MAXT];
    for (int i = 0; i < NREQ; i++) solo(m, prompts[i], plen[i], ref[i], MAXT);

    /* batched, roomy pool */
    run_all(m, (slm_sched_params){.max_seqs = 8, .max_batch_tokens = 64, .kv_tokens = 2048, .max_ctx = 256, .n_threads = 2},
            ref, "batched", NULL);
    /* one at a time */
    run_all(m, (slm_sched_params){.max_seqs = 8, .kv_tokens = 2048, .max_ctx = 256, .no_batching = true, .n_threads = 2},
            ref, "no batching", NULL);
    /* a pool too small for all at once: preemption and recompute */
    uint64_t pre = 0;
    run_all(m, (slm_sched_params){.max_seqs = 8, .max_batch_tokens = 32, .kv_tokens = 256, .max_ctx = 64,
                                  .no_prefix_cache = true, .n_threads = 2},
            ref, "small pool", &pre);
    CHECK(pre > 0, "the small pool preempted (%llu)", (unsigned long long)pre);

    spec_tests(m, ref);

    slm_sched_params sp = {.max_seqs = 8, .kv_tokens = 1024, .max_ctx = 256, .n_threads = 2};
    slm_sched *s;
    CHECK(slm_sched_create(m, NULL, &sp, &s) == SLM_OK, "create");

    /* parallel samples: greedy samples are identical; sampled ones reproducible per seed */
    {
        static result a, b, c;
        memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c);
        slm_req_params q = greedy(2, 8);
        q.n = 3;
        CHECK(slm_sched_submit(s, &q, on_event, &a, NULL) == SLM_OK, "submit n=3");
        q.sp.temperature = 1.0f;
        q.sp.seed = 42;
        q.n = 4;
        CHECK(slm_sched_submit(s, &q, on_event, &b, NULL) == SLM_OK, "submit sampled");
        CHECK(slm_sched_submit(s, &q, on_event, &c, NULL) == SLM_OK, "submit sampled again");
        drain(s);
        CHECK(a.done[0] == 1 && a.done[1] == 1 && a.done[2] == 1 && !memcmp(a.out[0], ref[2], 8 * sizeof(int32_t)) &&
                  !memcmp(a.out[1], a.out[0], sizeof a.out[0]) && !memcmp(a.out[2], a.out[0], sizeof a.out[0]),
              "greedy samples equal the solo output");
        int same = 1, distinct = 0;
        for (int i = 0; i < 4; i++) same &= !memcmp(b.out[i], c.out[i], sizeof b.out[i]) && b.done[i] == 1;
        for (int i = 1; i < 4; i++) distinct += memcmp(b.out[i], b.out[0], sizeof b.out[0]) != 0;
        CHECK(same, "same seed, same samples");
        CHECK(distinct > 0, "samples with different seeds differ");
    }
    /* prefix sharing: the same 42-token prompt again (two full blocks of 16) */
    {
        static result a, b;
        memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
        slm_req_params q = greedy(3, MAXT);
        slm_sched_submit(s, &q, on_event, &a, NULL);
        drain(s);
        slm_sched_submit(s, &q, on_event, &b, NULL);
        drain(s);
        CHECK(a.n_cached == 0 && b.n_cached >= 32, "second request cached %d prompt tokens", b.n_cached);
        CHECK(plen[3] == 42 && !memcmp(b.out[0], ref[3], sizeof ref[3]) && !memcmp(a.out[0], ref[3], sizeof ref[3]),
              "cached prefix, same output");
    }
    /* a callback ending a sample; cancellation */
    {
        static result a, b;
        memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
        a.stop_after = 3;
        slm_req_params q = greedy(1, 20);
        slm_sched_submit(s, &q, on_event, &a, NULL);
        uint64_t id;
        slm_sched_submit(s, &q, on_event, &b, &id);
        slm_sched_step(s);
        slm_sched_step(s);
        slm_sched_cancel(s, id);
        drain(s);
        CHECK(a.n_out[0] == 3 && a.finish[0] == SLM_FINISH_STOP && a.done[0] == 1, "callback stop after 3 tokens");
        CHECK(b.finish[0] == SLM_FINISH_CANCELLED && b.done[0] == 1 && b.n_out[0] < 20, "cancelled (%d tokens)", b.n_out[0]);
        slm_sched_metrics met;
        slm_sched_metrics_get(s, &met);
        CHECK(met.running == 0, "nothing running");
    }
    /* submit errors */
    {
        static result a;
        int32_t big[300];
        for (int i = 0; i < 300; i++) big[i] = 5;
        slm_req_params q = greedy(0, 10);
        q.prompt = big;
        q.n_prompt = 250;
        CHECK(slm_sched_submit(s, &q, on_event, &a, NULL) == SLM_ERR_ARG, "prompt + max_tokens beyond max_ctx");
        q = greedy(0, 10);
        q.n = 0;
        CHECK(slm_sched_submit(s, &q, on_event, &a, NULL) == SLM_ERR_ARG, "n = 0");
        q = greedy(0, 0);
        CHECK(slm_sched_submit(s, &q, on_event, &a, NULL) == SLM_ERR_ARG, "max_tokens = 0");
        q = greedy(0, 5);
        big[0] = 1 << 30;
        q.prompt = big;
        q.n_prompt = 3;
        CHECK(slm_sched_submit(s, &q, on_event, &a, NULL) == SLM_ERR_ARG, "token out of range");
    }
    slm_sched_free(s);

    /* queue limit, and the engine on its own thread */
    {
        slm_sched_params tp = {.max_seqs = 4, .kv_tokens = 1024, .max_ctx = 256, .max_queue = 3, .n_threads = 2};
        CHECK(slm_sched_create(m, NULL, &tp, &s) == SLM_OK, "create threaded");
        static result r[4];
        memset(r, 0, sizeof r);
        for (int i = 0; i < 3; i++) {
            slm_req_params q = greedy(i, MAXT);
            CHECK(slm_sched_submit(s, &q, on_event, &r[i], NULL) == SLM_OK, "queue %d", i);
        }
        slm_req_params q = greedy(3, MAXT);
        CHECK(slm_sched_submit(s, &q, on_event, &r[3], NULL) == SLM_ERR_FULL, "fourth waiting request refused");
        thread_arg ta = {s};
        pthread_t th;
        pthread_create(&th, NULL, engine, &ta);
        slm_sched_metrics met = {0};
        for (int i = 0; i < 600 && met.requests_done < 3; i++) {
            usleep(50000);
            slm_sched_metrics_get(s, &met);
        }
        slm_sched_stop(s);
        pthread_join(th, NULL);
        int bad = 0;
        for (int i = 0; i < 3; i++) bad += memcmp(r[i].out[0], ref[i], sizeof ref[i]) != 0;
        CHECK(met.requests_done == 3 && bad == 0, "threaded engine served 3 requests (%d wrong)", bad);
        CHECK(slm_sched_submit(s, &q, on_event, &r[3], NULL) == SLM_ERR_UNSUPPORTED, "submit after stop");
        slm_sched_free(s);
    }
    slm_model_free(m);
    return test_summary("sched");
}
