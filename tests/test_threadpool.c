/* test_threadpool.c - every job runs once on every thread, work splits cover [0, n) exactly,
 * and the pool survives many tiny jobs and idle periods (workers going to sleep). */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "test.h"

typedef struct {
    atomic_int calls;
    atomic_int seen[8];
    long n;
    atomic_int *hits;
    atomic_int nth_seen;
} job;

static void task(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->calls, 1);
    atomic_fetch_add(&j->seen[ith], 1);
    j->nth_seen = nth;
    long lo, hi;
    slm_pool_split(j->n, ith, nth, 16, &lo, &hi);
    for (long i = lo; i < hi; i++) atomic_fetch_add(&j->hits[i], 1);
}

int main(void) {
    static atomic_int hits[10000];
    for (int n = 1; n <= 4; n++) {
        slm_pool *p;
        CHECK(slm_pool_create(n, &p) == SLM_OK, "create %d", n);
        CHECK(slm_pool_size(p) == n, "size");
        int ok_all = 1;
        for (int rep = 0; rep < 1000; rep++) {
            job j = {.n = 1 + (rep * 37) % 9999, .hits = hits};
            memset(hits, 0, sizeof hits);
            slm_pool_run(p, task, &j);
            ok_all &= atomic_load(&j.calls) == n && j.nth_seen == n;
            for (int t = 0; t < n; t++) ok_all &= atomic_load(&j.seen[t]) == 1;
            for (long i = 0; i < j.n; i++) ok_all &= atomic_load(&hits[i]) == 1;
            if (rep == 500) usleep(20000); /* let workers fall asleep, then wake them */
        }
        CHECK(ok_all, "%d threads: 1000 jobs each ran once per thread and covered [0, n) exactly", n);
        slm_pool_free(p);
    }
    /* a NULL pool runs inline */
    job j = {.n = 100, .hits = hits};
    memset(hits, 0, sizeof hits);
    slm_pool_run(NULL, task, &j);
    CHECK(atomic_load(&j.calls) == 1 && j.nth_seen == 1 && atomic_load(&hits[99]) == 1, "NULL pool runs inline");
    /* split: aligned chunk starts, disjoint, covering */
    int split_ok = 1;
    for (long n = 0; n < 300; n++)
        for (int nth = 1; nth <= 5; nth++) {
            long prev = 0;
            for (int t = 0; t < nth; t++) {
                long lo, hi;
                slm_pool_split(n, t, nth, 16, &lo, &hi);
                split_ok &= lo == prev && hi >= lo && (lo % 16 == 0 || lo == n);
                prev = hi;
            }
            split_ok &= prev == n;
        }
    CHECK(split_ok, "split covers [0, n) in order with 16-aligned starts");
    slm_pool_free(NULL);
    slm_pool *p;
    CHECK(slm_pool_create(100000, &p) == SLM_ERR_ARG, "absurd thread count rejected");
    return test_summary("test_threadpool");
}
