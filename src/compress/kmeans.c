/* kmeans.c - weighted k-means (see kmeans.h). */
#include "compress/kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/vsort.h"

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; } /* [0, 1) */

static double dist2(const float *a, const float *b, int d) {
    double s = 0.0;
    for (int j = 0; j < d; j++) {
        const double e = (double)a[j] - (double)b[j];
        s += e * e;
    }
    return s;
}

/* Internal functions take w normalized by slm_kmeans: finite, >= 0, never NULL. */
static inline double weight_of(const float *w, int64_t i) { return (double)w[i]; }

/* Nearest center of every point (lowest index on ties); dmin[i] = w_i * distance^2. Returns
 * the objective and whether any assignment changed. */
/* One dimension: the centers sorted once, a binary search over the midpoints per point. */
static double assign_all_1d(const float *x, const float *w, int64_t n, const float *c, int k, int32_t *as,
                            double *dmin, int *changed) {
    int32_t ord[64];
    float cs[64], mid[64];
    for (int j = 0; j < k; j++) { /* insertion sort of the centers; equal ones: the lowest index first */
        int at = j;
        while (at > 0 && (cs[at - 1] > c[j])) {
            cs[at] = cs[at - 1];
            ord[at] = ord[at - 1];
            at--;
        }
        cs[at] = c[j];
        ord[at] = j;
    }
    for (int j = 0; j + 1 < k; j++) mid[j] = 0.5f * (cs[j] + cs[j + 1]);
    double cost = 0.0;
    int ch = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        int lo = 0, hi = k - 1;
        while (lo < hi) {
            const int m = (lo + hi) / 2;
            if (v > mid[m]) lo = m + 1;
            else hi = m;
        }
        /* the midpoint is rounded: settle against the neighbours exactly */
        double bd = ((double)v - cs[lo]) * ((double)v - cs[lo]);
        int best = lo;
        for (int j = lo - 1; j <= lo + 1; j += 2) {
            if (j < 0 || j >= k) continue;
            const double e = ((double)v - cs[j]) * ((double)v - cs[j]);
            if (e < bd || (e == bd && ord[j] < ord[best])) {
                bd = e;
                best = j;
            }
        }
        /* among equal centers the lowest index */
        int b = best;
        while (b > 0 && cs[b - 1] == cs[best]) b--;
        int pick = ord[best];
        for (int j = b; j < k && cs[j] == cs[best]; j++)
            if (ord[j] < pick) pick = ord[j];
        if (as[i] != pick) ch = 1;
        as[i] = pick;
        dmin[i] = weight_of(w, i) * bd;
        cost += dmin[i];
    }
    if (changed) *changed = ch;
    return cost;
}

static double assign_all(const float *x, const float *w, int64_t n, int d, const float *c, int k, int32_t *as,
                         double *dmin, int *changed) {
    if (d == 1 && k <= 64) return assign_all_1d(x, w, n, c, k, as, dmin, changed);
    double cost = 0.0;
    int ch = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        double bd = dist2(x + (size_t)i * (size_t)d, c, d);
        for (int j = 1; j < k; j++) {
            const double dd = dist2(x + (size_t)i * (size_t)d, c + (size_t)j * (size_t)d, d);
            if (dd < bd) {
                bd = dd;
                best = j;
            }
        }
        if (as[i] != best) ch = 1;
        as[i] = best;
        dmin[i] = weight_of(w, i) * bd;
        cost += dmin[i];
    }
    if (changed) *changed = ch;
    return cost;
}

/* k-means++: the first center drawn by weight, each next one by weight * distance^2 to the
 * nearest center so far; with nothing left to draw (all points on centers), a repeat. */
static void seed_plus_plus(const float *x, const float *w, int64_t n, int d, int k, uint64_t seed, float *c,
                           double *dmin, float *uw) {
    uint64_t s = seed ^ 0x5851f42d4c957f2dull;
    double tw = 0.0;
    for (int64_t i = 0; i < n; i++) tw += weight_of(w, i);
    if (!(tw > 0.0)) { /* all weights zero: draw uniformly */
        for (int64_t i = 0; i < n; i++) uw[i] = 1.0f;
        tw = (double)n;
    } else {
        memcpy(uw, w, (size_t)n * sizeof *uw);
    }
    double r = rng_unit(&s) * tw, acc = 0.0;
    int64_t pick = n - 1;
    for (int64_t i = 0; i < n; i++)
        if ((acc += weight_of(uw, i)) > r) {
            pick = i;
            break;
        }
    memcpy(c, x + (size_t)pick * (size_t)d, (size_t)d * sizeof *c);
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) tot += (dmin[i] = weight_of(uw, i) * dist2(x + (size_t)i * (size_t)d, c, d));
    for (int j = 1; j < k; j++) {
        float *cj = c + (size_t)j * (size_t)d;
        pick = -1;
        if (tot > 0.0) {
            r = rng_unit(&s) * tot;
            acc = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (dmin[i] > 0.0 && (acc += dmin[i]) > r) {
                    pick = i;
                    break;
                }
            if (pick < 0) /* rounding at the very end of the sum */
                for (int64_t i = n - 1; i >= 0 && pick < 0; i--)
                    if (dmin[i] > 0.0) pick = i;
        }
        if (pick < 0) {
            memcpy(cj, c, (size_t)d * sizeof *c);
            continue;
        }
        memcpy(cj, x + (size_t)pick * (size_t)d, (size_t)d * sizeof *c);
        tot = 0.0;
        if (d == 1) {
            const double v = cj[0];
            for (int64_t i = 0; i < n; i++) {
                const double e = (double)x[i] - v, dd = (double)uw[i] * e * e;
                if (dd < dmin[i]) dmin[i] = dd;
                tot += dmin[i];
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                const double dd = weight_of(uw, i) * dist2(x + (size_t)i * (size_t)d, cj, d);
                if (dd < dmin[i]) dmin[i] = dd;
                tot += dmin[i];
            }
        }
    }
}

/* ---- one dimension: sorted points, prefix sums ---------------------------------------------- */


static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Lloyd steps on sorted points; c[k] is updated in place (ascending on return) and holds the
 * best centers seen. */
static int lloyd_1d(const slm_vw *a, int64_t n, const double *s0, const double *s1, const double *s2, float *c, int k,
                    int max_iters) {
    int64_t *bnd = malloc((size_t)(k + 1) * 2 * sizeof *bnd);
    float *best = malloc((size_t)k * sizeof *best);
    if (!bnd || !best) {
        free(bnd);
        free(best);
        return 0;
    }
    int64_t *prev = bnd + k + 1;
    for (int i = 0; i <= k; i++) prev[i] = -1;
    double best_cost = INFINITY;
    int it = 0;
    for (;; it++) {
        qsort(c, (size_t)k, sizeof *c, cmp_float);
        bnd[0] = 0;
        bnd[k] = n;
        for (int i = 1; i < k; i++) bnd[i] = slm_vw_lower_bound(a, n, 0.5 * ((double)c[i - 1] + (double)c[i]));
        double cost = 0.0;
        for (int i = 0; i < k; i++) {
            const double w = s0[bnd[i + 1]] - s0[bnd[i]], m1 = s1[bnd[i + 1]] - s1[bnd[i]],
                         m2 = s2[bnd[i + 1]] - s2[bnd[i]], ci = (double)c[i];
            const double e = m2 - 2.0 * ci * m1 + ci * ci * w;
            cost += e > 0.0 ? e : 0.0;
        }
        if (cost < best_cost) {
            best_cost = cost;
            memcpy(best, c, (size_t)k * sizeof *c);
        }
        if (it >= max_iters || !memcmp(bnd, prev, (size_t)(k + 1) * sizeof *bnd)) break;
        memcpy(prev, bnd, (size_t)(k + 1) * sizeof *bnd);
        for (int i = 0; i < k; i++) {
            const double w = s0[bnd[i + 1]] - s0[bnd[i]];
            if (w > 0.0) c[i] = (float)((s1[bnd[i + 1]] - s1[bnd[i]]) / w);
        }
        for (int i = 0; i < k; i++) {
            if (bnd[i + 1] > bnd[i]) continue;
            /* empty: take the point that costs the most with the current centers */
            int64_t worst = -1;
            double wc = 0.0;
            for (int j = 0; j < k; j++)
                for (int64_t q = bnd[j]; q < bnd[j + 1]; q++) {
                    const double e = (double)a[q].w * ((double)a[q].v - c[j]) * ((double)a[q].v - c[j]);
                    if (e > wc) {
                        wc = e;
                        worst = q;
                    }
                }
            if (worst >= 0) c[i] = a[worst].v;
        }
    }
    memcpy(c, best, (size_t)k * sizeof *c);
    qsort(c, (size_t)k, sizeof *c, cmp_float);
    free(bnd);
    free(best);
    return it;
}

static slm_status kmeans_1d(const float *x, const float *w, int64_t n, int k, int max_iters, float *c, int *iters) {
    slm_vw *a = malloc((size_t)n * 2 * sizeof *a);
    double *s = malloc((size_t)(n + 1) * 3 * sizeof *s);
    if (!a || !s) {
        free(a);
        free(s);
        return slm_error(SLM_ERR_NOMEM, "kmeans: out of memory for %lld points", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        a[i].v = x[i];
        a[i].w = (float)weight_of(w, i);
    }
    slm_vw_sort(a, a + n, n);
    double *s0 = s, *s1 = s + n + 1, *s2 = s + 2 * (n + 1);
    s0[0] = s1[0] = s2[0] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double wi = a[i].w, v = a[i].v;
        s0[i + 1] = s0[i] + wi;
        s1[i + 1] = s1[i] + wi * v;
        s2[i + 1] = s2[i] + wi * v * v;
    }
    *iters = lloyd_1d(a, n, s0, s1, s2, c, k, max_iters);
    free(a);
    free(s);
    return SLM_OK;
}

/* ---- any dimension -------------------------------------------------------------------------- */

static void lloyd_nd(const float *x, const float *w, int64_t n, int d, float *c, int k, int max_iters, int32_t *as,
                     double *dmin, double *sums, int *iters) {
    float *best = (float *)(sums + (size_t)k * (size_t)(d + 1));
    double cost = assign_all(x, w, n, d, c, k, as, dmin, NULL), best_cost = cost;
    memcpy(best, c, (size_t)k * (size_t)d * sizeof *c);
    int it = 0, changed = 1;
    for (; it < max_iters && changed; it++) {
        double *cw = sums + (size_t)k * (size_t)d;
        memset(sums, 0, (size_t)k * (size_t)(d + 1) * sizeof *sums);
        for (int64_t i = 0; i < n; i++) {
            const double wi = weight_of(w, i);
            cw[as[i]] += wi;
            for (int j = 0; j < d; j++) sums[(size_t)as[i] * (size_t)d + (size_t)j] += wi * x[(size_t)i * (size_t)d + (size_t)j];
        }
        /* a cluster of no weight (empty, or zero-weight points only) takes the costliest point */
        for (int j = 0; j < k; j++) {
            if (cw[j] > 0.0) {
                for (int e = 0; e < d; e++) c[(size_t)j * (size_t)d + (size_t)e] = (float)(sums[(size_t)j * (size_t)d + (size_t)e] / cw[j]);
                continue;
            }
            int64_t worst = -1;
            double wc = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (dmin[i] > wc) {
                    wc = dmin[i];
                    worst = i;
                }
            if (worst >= 0) {
                memcpy(c + (size_t)j * (size_t)d, x + (size_t)worst * (size_t)d, (size_t)d * sizeof *c);
                dmin[worst] = 0.0;
            }
        }
        cost = assign_all(x, w, n, d, c, k, as, dmin, &changed);
        if (cost < best_cost) {
            best_cost = cost;
            memcpy(best, c, (size_t)k * (size_t)d * sizeof *c);
        }
    }
    memcpy(c, best, (size_t)k * (size_t)d * sizeof *c);
    *iters = it;
}

slm_status slm_kmeans(const float *x, const float *w, int64_t n, int d, const slm_kmeans_params *p,
                      float *centers, int32_t *assign, slm_kmeans_info *info) {
    if (!x || !p || !centers || n < 1 || d < 1 || p->k < 1 || p->k > (1 << 20))
        return slm_error(SLM_ERR_ARG, "kmeans: bad arguments (n %lld, d %d, k %d)", (long long)n, d, p ? p->k : 0);
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(x[i])) return slm_error(SLM_ERR_ARG, "kmeans: point %lld is not finite", (long long)(i / d));
    const int k = p->k, max_iters = p->max_iters > 0 ? p->max_iters : 100;
    int32_t *as = malloc((size_t)n * sizeof *as);
    double *dmin = malloc((size_t)n * sizeof *dmin);
    double *sums = malloc((size_t)k * (size_t)(d + 1) * sizeof *sums + (size_t)k * (size_t)d * sizeof(float));
    float *start = malloc((size_t)k * (size_t)d * sizeof *start);
    float *wn = malloc((size_t)n * 2 * sizeof *wn); /* normalized weights, and scratch of the seeding */
    if (!as || !dmin || !sums || !start || !wn) {
        free(wn);
        free(start);
        free(as);
        free(dmin);
        free(sums);
        return slm_error(SLM_ERR_NOMEM, "kmeans: out of memory for %lld points", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) wn[i] = !w ? 1.0f : isfinite(w[i]) && w[i] > 0.0f ? w[i] : 0.0f;
    w = wn;
    seed_plus_plus(x, w, n, d, k, p->seed, centers, dmin, wn + n);
    for (int64_t i = 0; i < n; i++) as[i] = -1;
    const double init_cost = assign_all(x, w, n, d, centers, k, as, dmin, NULL);
    memcpy(start, centers, (size_t)k * (size_t)d * sizeof *start);
    int iters = 0;
    slm_status s = SLM_OK;
    if (d == 1) s = kmeans_1d(x, w, n, k, max_iters, centers, &iters);
    else lloyd_nd(x, w, n, d, centers, k, max_iters, as, dmin, sums, &iters);
    double cost = assign_all(x, w, n, d, centers, k, as, dmin, NULL);
    if (cost > init_cost) { /* float rounding of the 1-D sums can cost a last ulp: keep the start */
        memcpy(centers, start, (size_t)k * (size_t)d * sizeof *start);
        cost = assign_all(x, w, n, d, centers, k, as, dmin, NULL);
    }
    if (!s && info) {
        info->init_cost = init_cost;
        info->cost = cost;
        info->iters = iters;
    }
    if (!s && assign) memcpy(assign, as, (size_t)n * sizeof *as);
    free(wn);
    free(start);
    free(as);
    free(dmin);
    free(sums);
    return s;
}
