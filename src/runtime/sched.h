/* sched.h - many requests served from one model: iteration-level scheduling over a shared
 * paged KV cache (continuous batching, as in Orca / vLLM).
 *
 * One engine thread runs steps. A step builds one batch from every running sequence (one new
 * token each) plus prompt chunks of sequences still prefilling, up to max_batch_tokens, and
 * evaluates it in one forward pass, so the weights are read once per step however many
 * sequences run. Requests wait in a FIFO queue and join between steps while a sequence slot
 * (max_seqs) and KV blocks are free; finished or cancelled ones leave between steps. When the
 * KV pool cannot hold the next step, the most recently admitted sequences are preempted: their
 * blocks are freed and they go back to the front of the queue, to be recomputed from their
 * prompt and the tokens generated so far (the output is unaffected: with greedy sampling,
 * identical to an unpreempted run). Full prompt blocks are remembered by a hash of their
 * token contents (chained over the prefix), so a request whose prompt starts with cached
 * blocks shares them instead of recomputing them. A request with n > 1 samples evaluates its
 * prompt once and forks it n ways (the blocks are shared, copy-on-write).
 *
 * Speculative decoding by prompt lookup (lookup_ngram > 0): whenever a sample's run reaches
 * its last known token, up to draft_max tokens found by prompt lookup over the sample's own
 * text ride along in the same run, with logits at every position. They are verified by the
 * rule of model/speculative.h (greedy output is the plain greedy output); the accepted ones and
 * one token of the model's own are reported in order, and the rejected positions are cut from
 * the sample's KV blocks (blocks left empty go back to the pool; the prefix cache only ever
 * holds full prompt blocks). The draft length adapts per sample. Whether and what a sample
 * drafts depends only on its own text and acceptance history, never on the other requests, so
 * seeded sampling stays reproducible under any load.
 *
 * Thread safety: submit, cancel, metrics and stop may be called from any thread; events are
 * delivered on the engine thread (the callback must not block for long). */
#ifndef SLM_SCHED_H
#define SLM_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../model/model.h"
#include "../model/sampler.h"
#include "../model/tokenizer.h"

typedef struct slm_sched slm_sched;

typedef struct {
    int max_seqs;         /* sequences running at once (default 16) */
    int max_batch_tokens; /* tokens evaluated per step (default 512) */
    int kv_tokens;        /* KV pool capacity in positions (default: what 512 MiB holds, at least max_ctx) */
    int max_ctx;          /* longest sequence, prompt + generated (default: the model's context, at most 8192) */
    int max_queue;        /* waiting requests before submit refuses with SLM_ERR_FULL (default 256) */
    int n_threads;        /* engine threads (0: all CPUs) */
    bool no_batching;     /* one sequence at a time (the baseline of the load benchmark) */
    bool no_prefix_cache; /* do not share prompt blocks between requests */
    int lookup_ngram;     /* prompt lookup drafting: longest n-gram matched (1..64); 0: off */
    int draft_max;        /* most tokens drafted per sample and step (1..16; default 4); with
                             lookup, max_batch_tokens is raised to max_seqs * (1 + draft_max) */
} slm_sched_params;

#define SLM_SCHED_MAX_DRAFT 16

#define SLM_SCHED_MAX_N 16        /* parallel samples per request */
#define SLM_SCHED_MAX_LOGPROBS 20 /* top alternatives reported per token */

typedef struct {
    const int32_t *prompt; /* copied by submit */
    int n_prompt;          /* >= 1 */
    int max_tokens;        /* tokens to generate per sample (>= 1) */
    int n;                 /* parallel samples sharing the prompt (1 .. SLM_SCHED_MAX_N) */
    int logprobs;          /* alternatives per token to report (0 .. SLM_SCHED_MAX_LOGPROBS); -1: none */
    bool ignore_eog;       /* keep generating past end-of-generation tokens */
    slm_sampler_params sp; /* sample i of a request uses seed sp.seed + i */
} slm_req_params;

typedef enum {
    SLM_EV_TOKEN = 0, /* one generated token of sample `index` */
    SLM_EV_DONE = 1,  /* sample `index` finished (finish says why); no more events for it */
} slm_event_kind;

typedef enum {
    SLM_FINISH_STOP = 0,      /* an end-of-generation token (not reported as a TOKEN event), or the
                                 callback ended the sample (a stop string matched) */
    SLM_FINISH_LENGTH = 1,    /* max_tokens, or the sequence reached max_ctx */
    SLM_FINISH_CANCELLED = 2, /* slm_sched_cancel or shutdown */
    SLM_FINISH_ERROR = 3,     /* the request could not be served (message in `error`) */
} slm_finish;

typedef struct {
    slm_event_kind kind;
    uint64_t id;      /* request */
    int index;        /* sample, 0 .. n-1 */
    int32_t token;    /* TOKEN */
    float logprob;    /* TOKEN: log-probability of the token under the model (temperature 1, no truncation) */
    int n_top;        /* TOKEN with logprobs >= 0: alternatives below, most probable first */
    const int32_t *top_ids;
    const float *top_logprobs;
    slm_finish finish; /* DONE */
    int n_generated;   /* DONE: tokens reported for this sample */
    int n_prompt, n_cached; /* DONE: prompt tokens, and how many came from the prefix cache */
    const char *error; /* DONE with SLM_FINISH_ERROR */
} slm_event;

/* Called on the engine thread. Returning false from a TOKEN event ends that sample (a DONE
 * with SLM_FINISH_STOP follows); the return value of DONE events is ignored. */
typedef bool (*slm_event_fn)(void *user, const slm_event *ev);

slm_status slm_sched_create(const slm_model *m, const slm_tokenizer *tok, const slm_sched_params *p, slm_sched **out);
/* Stops the engine (if running) and frees everything; pending requests get DONE/CANCELLED. */
void slm_sched_free(slm_sched *s);

/* Queue a request. SLM_ERR_ARG for bad parameters or a prompt + max_tokens longer than max_ctx
 * (message says which), SLM_ERR_FULL when max_queue requests are waiting, SLM_ERR_UNSUPPORTED
 * after stop. On success *id identifies it and fn will receive its events (at least one DONE
 * per sample). */
slm_status slm_sched_submit(slm_sched *s, const slm_req_params *r, slm_event_fn fn, void *user, uint64_t *id);
/* Cancel a request (queued or running); no-op for unknown or finished ids. */
void slm_sched_cancel(slm_sched *s, uint64_t id);

/* The engine loop: runs steps until slm_sched_stop; waits (no busy loop) while idle. */
void slm_sched_run(slm_sched *s);
/* One step from the calling thread (tests): returns false if there was nothing to do. Do not
 * mix with a thread in slm_sched_run. */
bool slm_sched_step(slm_sched *s);
/* Ask slm_sched_run to return after finishing its current step; queued and running requests
 * are cancelled; later submits fail. */
void slm_sched_stop(slm_sched *s);

/* Counters are live; running and the KV fields are as of the end of the last step. */
typedef struct {
    int queued, running; /* waiting requests; sequences being generated */
    int kv_blocks_used, kv_blocks_total;
    uint64_t requests_done, tokens_generated, prompt_tokens, prompt_tokens_cached;
    uint64_t preemptions, steps;
    /* speculative decoding: tokens drafted, drafts accepted, verifications with drafts */
    uint64_t spec_drafted, spec_accepted, spec_verify_steps;
    double tokens_per_s; /* generated tokens per second over the last few seconds */
    /* KV memory after the last step: positions held by running sequences, and the fraction of
     * memory wasted by the paged pool (1 - positions / (blocks held * block size), shared
     * blocks counted once) and by a cache reserving max_ctx positions per sequence */
    long kv_tokens;
    double kv_waste_paged, kv_waste_reserved;
} slm_sched_metrics;

void slm_sched_metrics_get(slm_sched *s, slm_sched_metrics *m);

#endif
