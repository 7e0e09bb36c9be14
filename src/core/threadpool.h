/* threadpool.h - one persistent pool of worker threads.
 *
 * slm_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of the nth threads (the
 * caller is thread 0) and returns when all have finished. Workers spin briefly waiting for the
 * next job (a forward pass issues hundreds of small jobs per token) and then sleep, so an idle
 * pool costs no CPU. A pool is driven by one thread at a time. */
#ifndef SLM_THREADPOOL_H
#define SLM_THREADPOOL_H

#include "status.h"

typedef struct slm_pool slm_pool;
typedef void (*slm_task_fn)(void *arg, int ith, int nth);

/* n_threads <= 0: the number of online CPUs. */
slm_status slm_pool_create(int n_threads, slm_pool **out);
void slm_pool_free(slm_pool *p); /* NULL is a no-op */
int slm_pool_size(const slm_pool *p); /* 1 for a NULL pool */

/* Run fn on every thread of the pool; a NULL pool runs fn(arg, 0, 1) inline. */
void slm_pool_run(slm_pool *p, slm_task_fn fn, void *arg);

/* The part [*lo, *hi) of n items that thread ith of nth takes, in chunks aligned to `align`
 * items (so threads do not share cache lines of the output). */
void slm_pool_split(long n, int ith, int nth, long align, long *lo, long *hi);

/* Number of online CPUs (at least 1). */
int slm_cpu_count(void);

#endif
