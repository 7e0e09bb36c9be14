/* intlevels.c - optimal integer levels by dynamic programming over a binned histogram (see
 * intlevels.h). Bin i covers [-127.5 + i / 2, -127 + i / 2); the edge below integer value v is
 * bin index 2 v + 255 and the midpoint of integers a and b is edge a + b + 255. */
#include "compress/intlevels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void slm_il_clear(slm_il_hist *h) { memset(h, 0, sizeof *h); }

void slm_il_add(slm_il_hist *h, float u, double w) {
    if (!isfinite(u) || !(w > 0.0)) return;
    double x = u;
    if (x < -127.5) x = -127.5;
    int i = (int)floor((x + 127.5) * 2.0);
    if (i >= SLM_IL_BINS) i = SLM_IL_BINS - 1;
    if (i < 0) i = 0;
    h->w[i] += w;
    h->wu[i] += w * x;
    h->wu2[i] += w * x * x;
}

void slm_il_merge(slm_il_hist *dst, const slm_il_hist *src) {
    for (int i = 0; i < SLM_IL_BINS; i++) {
        dst->w[i] += src->w[i];
        dst->wu[i] += src->wu[i];
        dst->wu2[i] += src->wu2[i];
    }
}

typedef struct {
    double p0[SLM_IL_BINS + 1], p1[SLM_IL_BINS + 1], p2[SLM_IL_BINS + 1];
} prefix;

/* sum over bins [b0, b1) of w (u - v)^2 */
static double range_cost(const prefix *p, int b0, int b1, double v) {
    if (b1 <= b0) return 0.0;
    const double s0 = p->p0[b1] - p->p0[b0], s1 = p->p1[b1] - p->p1[b0], s2 = p->p2[b1] - p->p2[b0];
    const double c = s2 - 2.0 * v * s1 + v * v * s0;
    return c > 0.0 ? c : 0.0;
}

static int edge(int v) { return 2 * v + 255; }              /* bin edge at integer v */
static int mid(int a, int b) { return a + b + 255; }         /* bin edge at (a + b) / 2 */

int slm_il_optimal(const slm_il_hist *h, int k, bool pin0, int8_t *levels, double *cost) {
    prefix *p = malloc(sizeof *p);
    const int n = SLM_IL_LEVELS;
    if (k > n) k = n;
    double *g = p ? malloc((size_t)k * n * sizeof *g) : NULL;
    int16_t *from = g ? malloc((size_t)k * n * sizeof *from) : NULL;
    if (!from) {
        /* no scratch: the levels spread evenly (still a valid table) */
        for (int j = 0; j < k; j++) levels[j] = (int8_t)(k > 1 ? -127 + (254 * j) / (k - 1) : 0);
        if (cost) *cost = slm_il_cost(h, levels, k);
        free(p);
        free(g);
        return k;
    }
    p->p0[0] = p->p1[0] = p->p2[0] = 0.0;
    for (int i = 0; i < SLM_IL_BINS; i++) {
        p->p0[i + 1] = p->p0[i] + h->w[i];
        p->p1[i + 1] = p->p1[i] + h->wu[i];
        p->p2[i + 1] = p->p2[i] + h->wu2[i];
    }
    int used = k;
    if (!(p->p0[SLM_IL_BINS] > 0.0) || (pin0 && k == 1)) { /* nothing to fit, or only the pinned 0 */
        levels[0] = 0;
        if (cost) *cost = slm_il_cost(h, levels, 1);
        free(p);
        free(g);
        free(from);
        return 1;
    }
    /* g[j][b]: least cost of the values below level b (index b, value b - 127) with j + 1
     * levels whose largest is b */
    /* with pin0 no level may be skipped over 0: the first level is <= 0, the last >= 0, and
     * consecutive levels never straddle it */
    const int z = 127;
    for (int b = 0; b < n; b++) {
        g[b] = pin0 && b > z ? DBL_MAX : range_cost(p, 0, edge(b - 127), (double)(b - 127));
        from[b] = -1;
    }
    for (int j = 1; j < k; j++) {
        double *gj = g + (size_t)j * n;
        const double *gp = g + (size_t)(j - 1) * n;
        for (int b = 0; b < n; b++) {
            double best = DBL_MAX;
            int arg = -1;
            const int vb = b - 127;
            for (int a = j - 1; a < b; a++) {
                if (gp[a] == DBL_MAX || (pin0 && a < z && b > z)) continue;
                const int va = a - 127;
                const double c = gp[a] + range_cost(p, edge(va), mid(va, vb), (double)va) +
                                 range_cost(p, mid(va, vb), edge(vb), (double)vb);
                if (c < best) {
                    best = c;
                    arg = a;
                }
            }
            gj[b] = best;
            from[(size_t)j * n + b] = (int16_t)arg;
        }
    }
    double best = DBL_MAX;
    int arg = -1;
    const double *gk = g + (size_t)(k - 1) * n;
    for (int b = k - 1; b < n; b++) {
        if (gk[b] == DBL_MAX || (pin0 && b < z)) continue;
        const double c = gk[b] + range_cost(p, edge(b - 127), SLM_IL_BINS, (double)(b - 127));
        if (c < best) {
            best = c;
            arg = b;
        }
    }
    for (int j = k - 1; j >= 0; j--) {
        levels[j] = (int8_t)(arg - 127);
        arg = from[(size_t)j * n + arg];
    }
    if (cost) *cost = best;
    free(p);
    free(g);
    free(from);
    return used;
}

double slm_il_cost(const slm_il_hist *h, const int8_t *levels, int n) {
    double c = 0.0;
    for (int i = 0; i < SLM_IL_BINS; i++) {
        if (!(h->w[i] > 0.0)) continue;
        /* every value of a bin has the same nearest level (bins never straddle a midpoint) */
        const double centre = -127.25 + 0.5 * i;
        int best = levels[0];
        for (int j = 1; j < n; j++)
            if (fabs(centre - levels[j]) < fabs(centre - best)) best = levels[j];
        c += h->wu2[i] - 2.0 * best * h->wu[i] + (double)best * best * h->w[i];
    }
    return c;
}
