/* threadpool.c - persistent workers released by a generation counter.
 *
 * The caller publishes a job (fn, arg), bumps `generation` and works as thread 0; workers
 * see the new generation, run their share, and bump `done`. Waiting spins for a short while
 * (a forward pass issues jobs every few microseconds) and then sleeps on a condition
 * variable, so idle workers use no CPU. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SPIN_ITERS 20000 /* polls before sleeping (a few tens of microseconds) */
#define SPIN_PAUSES 256  /* polls with a pause instruction; after that each poll yields the CPU, so a
                          * descheduled thread we wait for gets to run on an oversubscribed machine */

static inline void cpu_relax(void);
static inline void spin_wait(int spins) {
    if (spins < SPIN_PAUSES) cpu_relax();
    else sched_yield();
}

struct slm_pool {
    int n;
    pthread_t *threads;
    slm_task_fn fn;
    void *arg;
    _Alignas(64) atomic_uint generation; /* bumped per job; workers wait for a change */
    _Alignas(64) atomic_int done;        /* workers finished with the current job */
    atomic_int stop;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers sleep here */
    pthread_cond_t idle; /* the caller sleeps here */
};

typedef struct {
    slm_pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    slm_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERS) {
                spin_wait(spins);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == p->n - 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->idle);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int slm_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

slm_status slm_pool_create(int n_threads, slm_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = slm_cpu_count();
    if (n_threads > 512) return slm_error(SLM_ERR_ARG, "threads: %d is too many (at most 512)", n_threads);
    slm_pool *p = calloc(1, sizeof *p);
    if (!p) return slm_error(SLM_ERR_NOMEM, "threads: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        slm_pool_free(p);
        return slm_error(SLM_ERR_NOMEM, "threads: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (*wa = (worker_arg){p, i}, pthread_create(&p->threads[i], NULL, worker, wa)) != 0) {
            free(wa);
            p->n = i; /* join only the started ones */
            slm_pool_free(p);
            return slm_error(SLM_ERR_NOMEM, "threads: cannot start thread %d", i);
        }
    }
    *out = p;
    return SLM_OK;
}

void slm_pool_free(slm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        if (p->threads) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    free(p->threads);
    free(p);
}

int slm_pool_size(const slm_pool *p) { return p ? p->n : 1; }

void slm_pool_run(slm_pool *p, slm_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: ordered before the sleepers check below */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) != p->n - 1) {
        if (++spins < SPIN_ITERS) {
            spin_wait(spins);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->done) != p->n - 1) pthread_cond_wait(&p->idle, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void slm_pool_split(long n, int ith, int nth, long align, long *lo, long *hi) {
    if (align < 1) align = 1;
    long chunks = (n + align - 1) / align;
    long per = chunks / nth, extra = chunks % nth;
    long c0 = ith * per + (ith < extra ? ith : extra);
    long c1 = c0 + per + (ith < extra);
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}
