/* bench.h - inference speed: prompt processing (pp) and token generation (tg), the way
 * llama-bench defines pp512 and tg128.
 *
 *   pp<N>: from an empty context, evaluate N prompt tokens in one slm_ctx_eval call (logits
 *          of the last position only); tokens/s = N / elapsed.
 *   tg<N>: from an empty context, evaluate N tokens one at a time (one call per token, logits
 *          of that token each time, a fixed token sequence so no sampling cost);
 *          tokens/s = N / elapsed.
 *
 * Token ids are pseudo-random in [0, vocab) from a seed, so runs are repeatable. Each test
 * runs `warmup` untimed runs, then `reps` timed ones; the statistics are over the reps. */
#ifndef SLM_BENCH_H
#define SLM_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../model/forward.h"
#include "../model/speculative.h"

typedef enum { SLM_BENCH_PP = 0, SLM_BENCH_TG = 1 } slm_bench_kind;

typedef struct {
    slm_bench_kind kind;
    int n_tokens;   /* tokens per run, 1 <= n_tokens <= the context's n_ctx */
    int reps;       /* timed runs (>= 1) */
    int warmup;     /* untimed runs first (>= 0) */
    uint64_t seed;  /* token ids */
    bool progress;  /* one line per run to stderr */
    const char *label; /* for progress lines ("pp512, 2 threads"); NULL: the test name */
} slm_bench_params;

typedef struct {
    int n;                /* timed runs */
    double median, min, max, mean, stddev; /* tokens per second; stddev over runs (n - 1) */
} slm_bench_stats;

/* Run one test on ctx (its sequence is cleared before and after each run). samples, if not
 * NULL, receives reps tokens/s values in run order. */
slm_status slm_bench_run(slm_ctx *ctx, const slm_bench_params *p, double *samples, slm_bench_stats *st);

/* Median, min, max, mean and sample standard deviation of n > 0 values. */
void slm_bench_summarize(const double *v, int n, slm_bench_stats *st);

/* Test name: "pp512", "tg128". */
void slm_bench_test_name(slm_bench_kind kind, int n_tokens, char *buf, int cap);

#define SLM_BENCH_MAX_TYPES 16

/* What a model costs to run. */
typedef struct {
    uint64_t n_params, n_bytes; /* all tensors of the file (slm_model_size) */
    double bpw;                 /* 8 * n_bytes / n_params */
    /* Weight bytes read per generated token: every matrix of every layer plus the output
     * head. The embedding table is read one row per token and is not counted, except when it
     * is also the (tied) output head, then it counts once. Norm vectors are left out (they are
     * a few KiB). */
    uint64_t decode_bytes;
    int n_matrices;
    int n_types;                /* distinct matrix dtypes, in order of first appearance */
    struct {
        uint32_t type;
        int count;              /* matrices of this dtype (the tied output head not again) */
        uint64_t bytes;
    } types[SLM_BENCH_MAX_TYPES];
} slm_bench_model;

void slm_bench_model_info(const slm_model *m, slm_bench_model *out);

/* Speculative against plain greedy decoding on one prompt, in the same run: each repetition
 * generates up to n_gen tokens plainly (slm_generate), then with the drafter
 * (slm_spec_generate), from the same prompt; prompt evaluation is not timed. One untimed
 * warm-up of each first. tokens/s = generated tokens / generation seconds. */
typedef struct {
    int n_generated;              /* tokens per run (greedy: the same for both) */
    bool identical;               /* the speculative output equals the plain one in every run */
    slm_bench_stats plain, spec;  /* tokens/s over the timed runs */
    double speedup;               /* median over runs of spec / plain tokens/s of the same run */
    double accept_rate;           /* accepted / drafted tokens */
    double tokens_per_step;       /* generated tokens per verification pass */
    double draft_share;           /* drafting time / speculative generation time */
} slm_bench_spec_result;

slm_status slm_bench_spec(slm_ctx *ctx, const slm_tokenizer *tok, slm_drafter *d, const slm_spec_params *sp,
                          const int32_t *prompt, int n_prompt, int n_gen, int reps, slm_bench_spec_result *out);

#endif
