/* membw.c - STREAM-style copy and triad over arrays larger than the caches, on n threads. */
#include "membw.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/threadpool.h"

#define TRIAD_SCALAR 3.0
#define INIT_A 0.0
#define INIT_B 1.0
#define INIT_C 2.0

enum { K_COPY, K_TRIAD, K_COUNT };

typedef struct {
    double *a, *b, *c; /* [n] each */
    size_t n;
    int nth, passes;
    /* start gate: workers wait here until every thread exists (or the start failed) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate; /* 0: waiting, 1: go, -1: abort */
    pthread_barrier_t bar;
    double best[K_COUNT]; /* seconds, written by thread 0 */
    int bad;              /* set by any thread whose chunk holds a wrong value */
} membw_job;

typedef struct {
    membw_job *job;
    int ith;
} membw_arg;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Elements [*lo, *hi) of n for thread ith of nth; boundaries on 64-byte lines. */
static void chunk(size_t n, int ith, int nth, size_t *lo, size_t *hi) {
    const size_t line = 64 / sizeof(double);
    size_t lines = (n + line - 1) / line;
    size_t l0 = lines * (size_t)ith / (size_t)nth, l1 = lines * (size_t)(ith + 1) / (size_t)nth;
    *lo = l0 * line < n ? l0 * line : n;
    *hi = l1 * line < n ? l1 * line : n;
}

static void run_thread(membw_job *j, int ith) {
    size_t lo, hi;
    chunk(j->n, ith, j->nth, &lo, &hi);
    double *restrict a = j->a, *restrict b = j->b, *restrict c = j->c;
    /* first touch: each thread's pages are faulted in (and placed) by that thread */
    for (size_t i = lo; i < hi; i++) {
        a[i] = INIT_A;
        b[i] = INIT_B;
        c[i] = INIT_C;
    }
    const double s = TRIAD_SCALAR;
    for (int pass = 0; pass < j->passes; pass++) {
        for (int k = 0; k < K_COUNT; k++) {
            double t0 = 0;
            pthread_barrier_wait(&j->bar);
            if (ith == 0) t0 = now_s();
            if (k == K_COPY) {
                for (size_t i = lo; i < hi; i++) a[i] = b[i];
            } else {
                for (size_t i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
            }
            pthread_barrier_wait(&j->bar);
            if (ith == 0) {
                double dt = now_s() - t0;
                if (pass == 0 || dt < j->best[k]) j->best[k] = dt;
            }
        }
    }
    /* the last kernel was the triad: every a[i] is INIT_B + s * INIT_C, b and c unchanged */
    const double want = INIT_B + s * INIT_C;
    bool bad = false;
    for (size_t i = lo; i < hi; i++) bad |= a[i] != want || b[i] != INIT_B || c[i] != INIT_C;
    if (bad) {
        pthread_mutex_lock(&j->mu);
        j->bad = 1;
        pthread_mutex_unlock(&j->mu);
    }
}

static void *worker(void *p) {
    membw_arg *arg = p;
    membw_job *j = arg->job;
    pthread_mutex_lock(&j->mu);
    while (j->gate == 0) pthread_cond_wait(&j->cv, &j->mu);
    int go = j->gate > 0;
    pthread_mutex_unlock(&j->mu);
    if (go) run_thread(j, arg->ith);
    return NULL;
}

static void open_gate(membw_job *j, int value) {
    pthread_mutex_lock(&j->mu);
    j->gate = value;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

slm_status slm_membw_run(const slm_membw_params *p, slm_membw_result *r) {
    memset(r, 0, sizeof *r);
    size_t bytes = p->array_bytes ? p->array_bytes : SLM_MEMBW_DEFAULT_BYTES;
    int nth = p->n_threads > 0 ? p->n_threads : slm_cpu_count();
    int passes = p->passes > 0 ? p->passes : SLM_MEMBW_DEFAULT_PASSES;
    if (nth > 4096) return slm_error(SLM_ERR_ARG, "membw: %d threads is too many", nth);
    if (passes > 1000) return slm_error(SLM_ERR_ARG, "membw: %d passes is too many", passes);
    bytes -= bytes % 64;
    if (bytes > ((size_t)1 << 40)) return slm_error(SLM_ERR_ARG, "membw: arrays of %zu bytes are too large", bytes);
    if (bytes / (size_t)nth < 4096)
        return slm_error(SLM_ERR_ARG, "membw: arrays of %zu bytes are too small for %d threads (4 KiB each at least)",
                         bytes, nth);

    membw_job j = {.n = bytes / sizeof(double), .nth = nth, .passes = passes};
    j.a = aligned_alloc(64, bytes);
    j.b = aligned_alloc(64, bytes);
    j.c = aligned_alloc(64, bytes);
    pthread_t *tids = calloc((size_t)nth, sizeof *tids);
    membw_arg *args = calloc((size_t)nth, sizeof *args);
    if (!j.a || !j.b || !j.c || !tids || !args) {
        free(j.a);
        free(j.b);
        free(j.c);
        free(tids);
        free(args);
        return slm_error(SLM_ERR_NOMEM, "membw: cannot allocate 3 arrays of %zu bytes", bytes);
    }
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    pthread_barrier_init(&j.bar, NULL, (unsigned)nth);

    slm_status st = SLM_OK;
    int started = 0;
    for (int t = 1; t < nth; t++) {
        args[t] = (membw_arg){&j, t};
        if (pthread_create(&tids[t], NULL, worker, &args[t]) != 0) {
            st = slm_error(SLM_ERR_IO, "membw: cannot start thread %d of %d", t + 1, nth);
            break;
        }
        started++;
    }
    open_gate(&j, st ? -1 : 1);
    if (!st) run_thread(&j, 0);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);

    if (!st && j.bad) st = slm_error(SLM_ERR_FORMAT, "membw: a kernel wrote wrong values (memory or compiler fault)");
    if (!st) {
        const double n = (double)j.n;
        r->n_threads = nth;
        r->array_bytes = bytes;
        r->passes = passes;
        r->copy_gbs = j.best[K_COPY] > 0 ? 16.0 * n / j.best[K_COPY] * 1e-9 : 0;
        r->triad_gbs = j.best[K_TRIAD] > 0 ? 24.0 * n / j.best[K_TRIAD] * 1e-9 : 0;
    }
    pthread_barrier_destroy(&j.bar);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    free(j.a);
    free(j.b);
    free(j.c);
    free(tids);
    free(args);
    return st;
}

size_t slm_membw_llc_bytes(void) {
    size_t best = 0;
    for (int i = 0; i < 16; i++) {
        char path[96], type[32] = "";
        unsigned long kib = 0;
        char unit = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int ok = fscanf(f, "%31s", type) == 1;
        fclose(f);
        if (!ok || !strcmp(type, "Instruction")) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!(f = fopen(path, "r"))) continue;
        ok = fscanf(f, "%lu%c", &kib, &unit) == 2;
        fclose(f);
        if (!ok) continue;
        size_t bytes = unit == 'K' ? (size_t)kib << 10 : unit == 'M' ? (size_t)kib << 20 : (size_t)kib;
        if (bytes > best) best = bytes;
    }
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (best == 0) {
        long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (v <= 0) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
        if (v > 0) best = (size_t)v;
    }
#endif
    return best;
}
