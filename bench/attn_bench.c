/* attn_bench.c - attention kernels timed: naive vs tiled (FlashAttention-2 style), prefill and
 * decode, and the paged KV cache's memory waste against a cache reserving the full context.
 *
 *   build/attn_bench [--json FILE] [--reps N] [--max-ctx N]
 *
 * Shapes are the fixture's (9 query heads, 3 KV heads, head_dim 64, F16 KV cache, blocks of
 * 16); one layer's keys and values are filled with random data. Prefill at context N is one
 * call over N queries at positions 0..N-1; decode at N is one query at position N-1.
 * naive prefill materializes the [n_q x n_k] score matrix per head (causal entries masked),
 * then softmax and S V; naive decode is slm_attention (scores of one query, per head). The
 * tiled kernels run as the forward pass runs them (src/model/forward.c). Each configuration
 * is validated against the naive output first, then timed: the median of --reps runs.
 * Memory columns: scratch = what the kernel allocates besides its inputs and outputs, for all
 * threads; working set = scratch + queries + output + that layer's cached keys and values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/threadpool.h"
#include "kernels/attention.h"
#include "kernels/flash_attn.h"
#include "kernels/ops.h"
#include "runtime/kvcache.h"

enum { NH = 9, NKV = 3, HD = 64, QD = NH * HD, KVD = NKV * HD, BLOCK = 16 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 88172645463325252ull;
static float rnd_f(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / 8388608.0f - 1.0f;
}

/* One attention call: which kernel, queries q [n_q][QD] at positions pos0.., output out. */
typedef struct {
    const slm_kv *kv;
    const slm_seq *seq;
    const float *q;
    float *out;
    int n_q, pos0;
    bool simd;
    float *scratch;   /* per-thread buffers, stride scratch_n floats */
    size_t scratch_n;
    float *parts;     /* split-key decode parts, stride part_n */
    size_t part_n;
    slm_fa_args fa;
    bool split_keys;
} call;

/* Naive prefill: per head, S = Q K^T / sqrt(d) as a full [n_q][n_k] matrix, softmax, S V. */
static void naive_prefill_task(void *arg, int ith, int nth) {
    call *c = arg;
    const int n_k = c->pos0 + c->n_q, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    float *S = c->scratch + (size_t)ith * c->scratch_n;
    long lo, hi;
    slm_pool_split(NH, ith, nth, 1, &lo, &hi);
    for (long h = lo; h < hi; h++) {
        const size_t koff = (size_t)(h / group) * HD * c->kv->elem_size;
        for (int i = 0; i < c->n_q; i++) {
            float *row = S + (size_t)i * n_k;
            const float *qh = c->q + (size_t)i * QD + (size_t)h * HD;
            const int last = c->pos0 + i;
            for (int j = 0; j <= last; j++)
                row[j] = scale * slm_kv_dot(qh, (const char *)slm_kv_key(c->kv, c->seq, 0, j) + koff, c->kv->type, HD,
                                            c->simd);
            for (int j = last + 1; j < n_k; j++) row[j] = -INFINITY;
        }
        for (int i = 0; i < c->n_q; i++) slm_softmax(S + (size_t)i * n_k, n_k);
        for (int i = 0; i < c->n_q; i++) {
            const float *row = S + (size_t)i * n_k;
            float *o = c->out + (size_t)i * QD + (size_t)h * HD;
            memset(o, 0, HD * sizeof(float));
            for (int j = 0; j <= c->pos0 + i; j++)
                slm_kv_axpy(o, row[j], (const char *)slm_kv_value(c->kv, c->seq, 0, j) + koff, c->kv->type, HD,
                            c->simd);
        }
    }
}

/* Naive decode: the reference kernel, work items (token, head) split across threads. */
static void naive_decode_task(void *arg, int ith, int nth) {
    call *c = arg;
    long lo, hi;
    slm_pool_split((long)c->n_q * NH, ith, nth, 1, &lo, &hi);
    slm_attention(c->kv, c->seq, 0, c->q, c->n_q, c->pos0, NH, NKV, HD, c->out, c->scratch + (size_t)ith * c->scratch_n,
                  lo, hi, c->simd);
}

/* Tiled, dispatched as in the forward pass. */
static void tiled_task(void *arg, int ith, int nth) {
    call *c = arg;
    float *scratch = c->scratch + (size_t)ith * c->scratch_n;
    if (c->split_keys) {
        long lo, hi;
        slm_pool_split((long)c->pos0 + 1, ith, nth, SLM_FA_KTILE, &lo, &hi);
        slm_fa_decode_part(&c->fa, (int)lo, (int)hi, scratch, c->parts + (size_t)ith * c->part_n);
        return;
    }
    const long n_items = slm_fa_prefill_items(&c->fa);
    for (long it = ith; it < n_items; it += nth) slm_fa_prefill(&c->fa, it, it + 1, scratch);
}

static void run_tiled(slm_pool *pool, call *c) {
    slm_pool_run(pool, tiled_task, c);
    if (c->split_keys) slm_fa_decode_merge(c->parts, slm_pool_size(pool), NH, HD, c->out);
}

typedef struct {
    const char *phase, *kernel;
    int ctx, threads, reps;
    double ms, err;
    size_t scratch, working;
} result;

static double max_rel(const float *x, const float *y, size_t n) {
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(y[i]) > mx) mx = fabs(y[i]);
        double d = fabs((double)x[i] - y[i]);
        if (!(d <= e)) e = d;
    }
    return e / (mx > 0 ? mx : 1);
}

static double time_median(slm_pool *pool, call *c, bool tiled, bool prefill, int reps) {
    double t[64];
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (tiled) run_tiled(pool, c);
        else slm_pool_run(pool, prefill ? naive_prefill_task : naive_decode_task, c);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int reps = 5, max_ctx = 8192;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-ctx") && i + 1 < argc) max_ctx = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: attn_bench [--json FILE] [--reps N] [--max-ctx N]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64 || max_ctx < 1) {
        fprintf(stderr, "attn_bench: --reps must be 1..64, --max-ctx positive\n");
        return 2;
    }
    static const int ctxs[] = {512, 2048, 8192}, threads[] = {1, 2};
    const bool simd = slm_attention_simd_available();
    int top = 0;
    for (int i = 0; i < 3; i++)
        if (ctxs[i] <= max_ctx) top = ctxs[i];
    if (!top) {
        fprintf(stderr, "attn_bench: --max-ctx below the smallest context (512)\n");
        return 2;
    }

    slm_kv *kv;
    if (slm_kv_create(SLM_KV_F16, 1, KVD, BLOCK, top, &kv)) {
        fprintf(stderr, "attn_bench: %s\n", slm_last_error());
        return 1;
    }
    slm_seq seq = {0};
    if (slm_seq_reserve(kv, &seq, top)) {
        fprintf(stderr, "attn_bench: %s\n", slm_last_error());
        return 1;
    }
    {
        float k[KVD], v[KVD];
        for (int p = 0; p < top; p++) {
            for (int d = 0; d < KVD; d++) k[d] = 2.0f * rnd_f(), v[d] = rnd_f();
            slm_kv_store(kv, &seq, 0, p, k, v);
        }
        seq.n_tokens = top;
    }
    float *q = malloc((size_t)top * QD * sizeof(float));
    float *out = malloc((size_t)top * QD * sizeof(float)), *ref = malloc((size_t)top * QD * sizeof(float));
    if (!q || !out || !ref) return 1;
    for (size_t i = 0; i < (size_t)top * QD; i++) q[i] = rnd_f();

    result res[64];
    int n_res = 0;
    printf("attention: %d query heads, %d KV heads, head_dim %d, F16 KV cache, blocks of %d, %s kernels\n", NH, NKV, HD,
           BLOCK, simd ? "AVX2" : "scalar");
    printf("%-8s %6s %3s %-6s %5s %11s %12s %14s %9s %9s\n", "phase", "ctx", "thr", "kernel", "reps", "time ms",
           "scratch MiB", "working MiB", "speedup", "rel err");
    for (int pi = 0; pi < 2; pi++) {
        const bool prefill = pi == 0;
        for (int ci = 0; ci < 3 && ctxs[ci] <= top; ci++)
            for (int ti = 0; ti < 2; ti++) {
                const int n_ctx = ctxs[ci], nth = threads[ti];
                slm_pool *pool;
                if (slm_pool_create(nth, &pool)) return 1;
                call c = {0};
                c.kv = kv, c.seq = &seq, c.simd = simd;
                c.n_q = prefill ? n_ctx : 1;
                c.pos0 = prefill ? 0 : n_ctx - 1;
                c.q = q;
                const size_t io_bytes = (size_t)c.n_q * QD * sizeof(float) * 2 + (size_t)n_ctx * KVD * 2 * 2;
                double naive_ms = 0;
                for (int kind = 0; kind < 2; kind++) {
                    const bool tiled = kind == 1;
                    c.out = tiled ? out : ref;
                    if (tiled) {
                        c.scratch_n = slm_fa_scratch_floats(NH, NKV, HD);
                        c.part_n = slm_fa_part_floats(NH, HD);
                        c.split_keys = !prefill && nth > 1 && c.pos0 + 1 >= SLM_FA_SPLIT_MIN;
                        c.fa = (slm_fa_args){kv, &seq, 0, q, c.n_q, c.pos0, NH, NKV, HD, out, simd};
                    } else {
                        c.scratch_n = prefill ? (size_t)c.n_q * n_ctx : (size_t)n_ctx;
                        c.part_n = 0;
                        c.split_keys = false;
                    }
                    const size_t scratch_bytes = ((size_t)nth * (c.scratch_n + c.part_n)) * sizeof(float);
                    c.scratch = malloc((size_t)nth * c.scratch_n * sizeof(float));
                    c.parts = c.part_n ? malloc((size_t)nth * c.part_n * sizeof(float)) : NULL;
                    if (!c.scratch || (c.part_n && !c.parts)) {
                        fprintf(stderr, "attn_bench: out of memory for %zu bytes of scratch\n", scratch_bytes);
                        return 1;
                    }
                    /* validate (the naive run doubles as warm-up and reference) */
                    if (tiled) run_tiled(pool, &c);
                    else slm_pool_run(pool, prefill ? naive_prefill_task : naive_decode_task, &c);
                    const double err = tiled ? max_rel(out, ref, (size_t)c.n_q * QD) : 0;
                    if (err > 1e-4) {
                        fprintf(stderr, "attn_bench: tiled output differs from naive (rel err %.3g)\n", err);
                        return 1;
                    }
                    const int r = prefill && !tiled && n_ctx >= 8192 && reps > 3 ? 3 : reps;
                    const double ms = 1e3 * time_median(pool, &c, tiled, prefill, r);
                    if (!tiled) naive_ms = ms;
                    result *x = &res[n_res++];
                    *x = (result){prefill ? "prefill" : "decode", tiled ? "tiled" : "naive", n_ctx, nth, r, ms, err,
                                  scratch_bytes, scratch_bytes + io_bytes};
                    printf("%-8s %6d %3d %-6s %5d %11.3f %12.3f %14.3f", x->phase, n_ctx, nth, x->kernel, r, ms,
                           (double)scratch_bytes / 1048576.0, (double)x->working / 1048576.0);
                    if (tiled) printf(" %8.2fx %9.2g\n", naive_ms / ms, err);
                    else printf(" %9s %9s\n", "", "");
                    fflush(stdout);
                    free(c.scratch);
                    free(c.parts);
                }
                slm_pool_free(pool);
            }
    }

    /* paged vs reserved: 50 sequences, lengths uniform in [16, 2048], max context 8192, with
     * the fixture's full geometry (30 layers, kv_dim 192, F16, blocks of 16) */
    enum { NSEQ = 50, MAXC = 8192, LAYERS = 30 };
    slm_kv *pool_kv;
    int lens[NSEQ];
    long total = 0;
    rng = 0x853c49e6748fea9bull; /* the same lengths whatever ran before */
    for (int i = 0; i < NSEQ; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        lens[i] = 16 + (int)(rng % (2048 - 16 + 1));
        total += lens[i];
    }
    if (slm_kv_create(SLM_KV_F16, LAYERS, KVD, BLOCK, (int)total + NSEQ * BLOCK, &pool_kv)) {
        fprintf(stderr, "attn_bench: %s\n", slm_last_error());
        return 1;
    }
    slm_seq seqs[NSEQ];
    const slm_seq *set[NSEQ];
    memset(seqs, 0, sizeof seqs);
    for (int i = 0; i < NSEQ; i++) {
        if (slm_seq_reserve(pool_kv, &seqs[i], lens[i])) return 1;
        seqs[i].n_tokens = lens[i];
        set[i] = &seqs[i];
    }
    slm_kv_usage u;
    if (slm_kv_account(pool_kv, set, NSEQ, MAXC, &u)) return 1;
    printf("\nKV memory, %d sequences, lengths uniform in [16, 2048] (mean %.0f), max context %d, %d layers:\n", NSEQ,
           (double)total / NSEQ, MAXC, LAYERS);
    printf("  needed %.1f MiB | paged (blocks of %d) %.1f MiB, waste %.2f%% | reserved %.1f MiB, waste %.2f%%\n",
           (double)u.used_bytes / 1048576.0, BLOCK, (double)u.paged_bytes / 1048576.0, 100 * u.paged_waste,
           (double)u.reserved_bytes / 1048576.0, 100 * u.reserved_waste);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "attn_bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\n  \"shape\": {\"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, \"kv_type\": \"f16\", "
                   "\"block_size\": %d, \"simd\": %s},\n  \"results\": [\n",
                NH, NKV, HD, BLOCK, simd ? "true" : "false");
        for (int i = 0; i < n_res; i++)
            fprintf(f,
                    "    {\"phase\": \"%s\", \"kernel\": \"%s\", \"ctx\": %d, \"threads\": %d, \"reps\": %d, "
                    "\"median_ms\": %.4f, \"scratch_bytes\": %zu, \"working_bytes\": %zu, \"rel_err\": %.3g}%s\n",
                    res[i].phase, res[i].kernel, res[i].ctx, res[i].threads, res[i].reps, res[i].ms, res[i].scratch,
                    res[i].working, res[i].err, i + 1 < n_res ? "," : "");
        fprintf(f,
                "  ],\n  \"kv_waste\": {\"sequences\": %d, \"min_len\": 16, \"max_len\": 2048, \"max_ctx\": %d, "
                "\"layers\": %d, \"tokens\": %ld, \"used_bytes\": %zu, \"paged_bytes\": %zu, \"reserved_bytes\": %zu, "
                "\"paged_waste\": %.5f, \"reserved_waste\": %.5f}\n}\n",
                NSEQ, MAXC, LAYERS, u.tokens, u.used_bytes, u.paged_bytes, u.reserved_bytes, u.paged_waste,
                u.reserved_waste);
        if (fclose(f)) {
            fprintf(stderr, "attn_bench: error writing %s\n", json);
            return 1;
        }
        printf("wrote %s\n", json);
    }
    for (int i = 0; i < NSEQ; i++) slm_seq_release(pool_kv, &seqs[i]);
    slm_kv_free(pool_kv);
    slm_seq_release(kv, &seq);
    slm_kv_free(kv);
    free(q), free(out), free(ref);
    return 0;
}
