/* train_bench.c - peak FP32 FLOP/s of this CPU and the training sgemm's share of it.
 *
 *   build/train_bench [--json FILE] [--reps N] [--threads N] [--isa avx2|avx512] [--quick]
 *
 * (a) Peak: a loop of register-resident FMAs (12 independent accumulators, enough to cover the
 *     FMA latency on two pipes) for AVX2 (ymm) and AVX-512 (zmm), on 1 thread and on every
 *     thread of the pool; the median of --reps runs.
 * (b) slm_sgemm for the training shapes of a 1024-token batch of the fixture (dim 576, ffn
 *     1536, 3 KV heads x 64 = 192, vocab 49152): forward out = in W^T (ta 0, tb 1), input
 *     gradient din += dout W (0, 0), weight gradient dW += dout^T in (1, 0) (beta 0 for the
 *     forward, 1 for the gradients), with each vector kernel set. Each product is validated
 *     first (sampled elements against a double reference), then timed: the median of --reps
 *     runs, GFLOP/s and the fraction of the measured peak of the same kernel set and thread
 *     count. --quick: fewer shapes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/threadpool.h"
#include "train/sgemm.h"

enum { MAX_REPS = 51, N_ACC = 12, TOKENS = 1024 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return t[n / 2];
}

/* ---- (a) peak FMA throughput ------------------------------------------------------------- */

static volatile float g_sink;
static const long PEAK_ITERS = 20 * 1000 * 1000;

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void fma_loop_avx2(long iters) {
    __m256 acc[N_ACC];
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < N_ACC; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < N_ACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
    }
    __m256 s = acc[0];
    for (int i = 1; i < N_ACC; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    g_sink = out[0];
}

__attribute__((target("avx512f"))) static void fma_loop_avx512(long iters) {
    __m512 acc[N_ACC];
    const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < N_ACC; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < N_ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
    }
    __m512 s = acc[0];
    for (int i = 1; i < N_ACC; i++) s = _mm512_add_ps(s, acc[i]);
    g_sink = _mm512_reduce_add_ps(s);
}
#endif

typedef struct {
    int width; /* 8 (avx2) or 16 (avx512) */
    long iters;
} peak_args;

static void peak_task(void *arg, int ith, int nth) {
    const peak_args *p = arg;
    (void)ith, (void)nth;
#if defined(__x86_64__)
    if (p->width == 16) fma_loop_avx512(p->iters);
    else fma_loop_avx2(p->iters);
#else
    (void)p;
#endif
}

/* Median GFLOP/s of the FMA loop on every thread of pool. */
static double measure_peak(slm_pool *pool, int width, int reps) {
    peak_args pa = {width, PEAK_ITERS / 10};
    slm_pool_run(pool, peak_task, &pa); /* warm up (clocks, threads) */
    pa.iters = PEAK_ITERS;
    double t[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        slm_pool_run(pool, peak_task, &pa);
        t[r] = now_s() - t0;
    }
    const double flops = 2.0 * width * N_ACC * (double)PEAK_ITERS * slm_pool_size(pool);
    return flops / median(t, reps) * 1e-9;
}

/* ---- (b) sgemm shapes ---------------------------------------------------------------------- */

typedef struct {
    const char *what; /* layer */
    const char *kind; /* fwd, dinp, dw */
    bool ta, tb;
    int M, N, K;
    float beta; /* 0 for the forward, 1 for the gradients (they accumulate) */
} gshape;

/* out features, in features of the fixture's linears */
static const struct {
    const char *what;
    int out, in;
} g_lin[] = {
    {"q/o", 576, 576}, {"k/v", 192, 576}, {"gate/up", 1536, 576}, {"down", 576, 1536}, {"lm head", 49152, 576},
};

static uint64_t g_rng = 88172645463325252ull;
static float rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) * 0x1.0p-23 - 1.0);
}

/* Largest relative error (to sum |a||b|) over sampled elements of C = op(A) op(B). */
static double validate(const gshape *s, const float *A, const float *B, const float *C) {
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double worst = 0;
    for (int t = 0; t < 64; t++) {
        const int i = (int)((unsigned)(t * 2654435761u) % (unsigned)s->M);
        const int j = (int)((unsigned)(t * 40503u + 17u) % (unsigned)s->N);
        double ref = 0, mag = 0;
        for (int k = 0; k < s->K; k++) {
            const double x = s->ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
            const double y = s->tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
            ref += x * y;
            mag += fabs(x * y);
        }
        const double e = fabs(C[(size_t)i * s->N + j] - ref) / (mag + 1e-30);
        if (!(e <= worst)) worst = e; /* NaN counts as the worst */
    }
    return worst;
}

typedef struct {
    gshape s;
    const char *isa;
    double ms, gflops, frac, err;
} gresult;

int main(int argc, char **argv) {
    const char *json = NULL, *only = NULL;
    int reps = 5, threads = 0;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else {
            fprintf(stderr,
                    "usage: train_bench [--json FILE] [--reps N] [--threads N] [--isa avx2|avx512] [--quick]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    slm_pool *pool1 = NULL, *pooln = NULL;
    if (slm_pool_create(1, &pool1) != SLM_OK || slm_pool_create(threads, &pooln) != SLM_OK) {
        fprintf(stderr, "train_bench: cannot create the thread pools\n");
        return 1;
    }
    const int nth = slm_pool_size(pooln);

    /* kernel sets to measure */
    const char *names[2] = {"avx2", "avx512"};
    const int widths[2] = {8, 16};
    bool have[2];
    for (int s = 0; s < 2; s++) have[s] = (!only || !strcmp(only, names[s])) && slm_sgemm_set_isa(names[s]);
    slm_sgemm_set_isa(NULL);
    if (!have[0] && !have[1]) {
        fprintf(stderr, "train_bench: no vector kernel set%s%s available on this CPU\n", only ? " " : "",
                only ? only : "");
        return 1;
    }

    double peak[2][2] = {{0}}; /* [set][0: 1 thread, 1: all] */
    printf("peak FP32 (register FMA loop, %d accumulators, median of %d), GFLOP/s\n", N_ACC, reps);
    printf("%-8s %12s %12s\n", "set", "1 thread", "threads");
    for (int s = 0; s < 2; s++) {
        if (!have[s]) continue;
        peak[s][0] = measure_peak(pool1, widths[s], reps);
        peak[s][1] = measure_peak(pooln, widths[s], reps);
        char col[32];
        snprintf(col, sizeof col, "%d: %.1f", nth, peak[s][1]);
        printf("%-8s %12.1f %12s\n", names[s], peak[s][0], col);
    }

    /* shapes */
    gshape shapes[3 * 5];
    int ns = 0;
    for (size_t l = 0; l < sizeof g_lin / sizeof g_lin[0]; l++) {
        if (quick && l != 0 && l != 4) continue;
        const int o = g_lin[l].out, in = g_lin[l].in;
        shapes[ns++] = (gshape){g_lin[l].what, "fwd", false, true, TOKENS, o, in, 0.0f};
        shapes[ns++] = (gshape){g_lin[l].what, "dinp", false, false, TOKENS, in, o, 1.0f};
        shapes[ns++] = (gshape){g_lin[l].what, "dw", true, false, o, in, TOKENS, 1.0f};
    }
    size_t max_a = 0, max_b = 0, max_c = 0;
    for (int i = 0; i < ns; i++) {
        const size_t a = (size_t)shapes[i].M * shapes[i].K, b = (size_t)shapes[i].K * shapes[i].N,
                     c = (size_t)shapes[i].M * shapes[i].N;
        if (a > max_a) max_a = a;
        if (b > max_b) max_b = b;
        if (c > max_c) max_c = c;
    }
    float *A = malloc(max_a * sizeof *A), *B = malloc(max_b * sizeof *B), *C = malloc(max_c * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "train_bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < max_a; i++) A[i] = rnd();
    for (size_t i = 0; i < max_b; i++) B[i] = rnd();

    gresult res[2 * 3 * 5];
    int nr = 0, bad = 0;
    printf("\nslm_sgemm, %d threads, M x N x K (C[M][N] = op(A) op(B) + beta C; beta 0 fwd, 1 dinp/dw), median of %d\n",
           nth, reps);
    printf("%-8s %-8s %-5s %-19s %10s %9s %8s %9s\n", "set", "layer", "kind", "M x N x K", "ms", "GFLOP/s",
           "of peak", "max err");
    for (int s = 0; s < 2; s++) {
        if (!have[s]) continue;
        slm_sgemm_set_isa(names[s]);
        for (int i = 0; i < ns; i++) {
            const gshape *g = &shapes[i];
            const int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
            memset(C, 0, sizeof(float) * (size_t)g->M * g->N); /* validated from C = 0 */
            slm_sgemm(pooln, g->ta, g->tb, g->M, g->N, g->K, A, lda, B, ldb, g->beta, C, g->N);
            const double err = validate(g, A, B, C);
            double t[MAX_REPS];
            for (int r = 0; r < reps; r++) {
                const double t0 = now_s();
                slm_sgemm(pooln, g->ta, g->tb, g->M, g->N, g->K, A, lda, B, ldb, g->beta, C, g->N);
                t[r] = now_s() - t0;
            }
            gresult *o = &res[nr++];
            o->s = *g;
            o->isa = names[s];
            o->ms = median(t, reps) * 1e3;
            o->gflops = 2.0 * g->M * g->N * (double)g->K / (o->ms * 1e-3) * 1e-9;
            o->frac = o->gflops / peak[s][1];
            o->err = err;
            const bool ok = err < 1e-5;
            if (!ok) bad++;
            char dims[32];
            snprintf(dims, sizeof dims, "%dx%dx%d", g->M, g->N, g->K);
            printf("%-8s %-8s %-5s %-19s %10.2f %9.1f %7.0f%% %9.1e%s\n", names[s], g->what, g->kind, dims, o->ms,
                   o->gflops, 100 * o->frac, err, ok ? "" : "  INVALID");
        }
    }
    slm_sgemm_set_isa(NULL);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "train_bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\n  \"threads\": %d,\n  \"reps\": %d,\n  \"peak_gflops\": {", nth, reps);
        bool first = true;
        for (int s = 0; s < 2; s++) {
            if (!have[s]) continue;
            fprintf(f, "%s\n    \"%s\": {\"1\": %.2f, \"%d\": %.2f}", first ? "" : ",", names[s], peak[s][0], nth,
                    peak[s][1]);
            first = false;
        }
        fprintf(f, "\n  },\n  \"sgemm\": [");
        for (int i = 0; i < nr; i++) {
            const gresult *o = &res[i];
            fprintf(f,
                    "%s\n    {\"isa\": \"%s\", \"layer\": \"%s\", \"kind\": \"%s\", \"ta\": %d, \"tb\": %d, "
                    "\"M\": %d, \"N\": %d, \"K\": %d, \"beta\": %g, \"ms\": %.4f, \"gflops\": %.2f, "
                    "\"frac_of_peak\": %.4f, \"max_rel_err\": %.3g}",
                    i ? "," : "", o->isa, o->s.what, o->s.kind, o->s.ta, o->s.tb, o->s.M, o->s.N, o->s.K,
                    (double)o->s.beta, o->ms, o->gflops, o->frac, o->err);
        }
        fprintf(f, "\n  ]\n}\n");
        if (fclose(f) != 0) {
            fprintf(stderr, "train_bench: error writing %s\n", json);
            return 1;
        }
    }
    free(A);
    free(B);
    free(C);
    slm_pool_free(pool1);
    slm_pool_free(pooln);
    if (bad) fprintf(stderr, "train_bench: %d products failed validation\n", bad);
    return bad ? 1 : 0;
}
