/* prune.c - unstructured and N:M pruning masks (see prune.h). */
#include "compress/prune.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "model/forward.h"
#include "model/model.h"

/* ---- one matrix ----------------------------------------------------------------------- */

static float score_of(float w, const float *col_scale, int64_t c) {
    float s = fabsf(w) * (col_scale ? col_scale[c] : 1.0f);
    return isnan(s) ? INFINITY : s; /* a NaN weight is never chosen for removal */
}

/* The k-th smallest (0-based) of a[0..n), reordering a. */
static float select_kth(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        /* median of three as the pivot */
        const int64_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                const float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* Remove the `drop` lowest scores among s[0..n) (ties: earlier first); clear their bits in
 * keep starting at bit `base`. tmp has n floats. */
static void drop_lowest(const float *s, int64_t n, int64_t drop, float *tmp, uint64_t *keep, int64_t base) {
    if (drop <= 0) return;
    if (drop > n) drop = n;
    memcpy(tmp, s, (size_t)n * sizeof *s);
    const float t = select_kth(tmp, n, drop - 1);
    int64_t below = 0;
    for (int64_t i = 0; i < n; i++) below += s[i] < t;
    int64_t ties = drop - below; /* equal to t: the earliest ones go */
    for (int64_t i = 0; i < n; i++) {
        const bool go = s[i] < t || (s[i] == t && ties-- > 0);
        if (go) keep[(base + i) >> 6] &= ~(1ull << ((base + i) & 63));
    }
}

/* Keep the n best of each group of m (ties: the later position stays). */
static void nm_row(const float *s, int64_t cols, int n, int m, uint64_t *keep, int64_t base) {
    for (int64_t g = 0; g < cols; g += m) {
        int order[64];
        for (int i = 0; i < m; i++) order[i] = i;
        /* insertion sort by (score, position) ascending; the first m - n are removed */
        for (int i = 1; i < m; i++) {
            const int v = order[i];
            int j = i - 1;
            while (j >= 0 && (s[g + order[j]] > s[g + v] || (s[g + order[j]] == s[g + v] && order[j] > v))) {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = v;
        }
        for (int i = 0; i < m - n; i++) {
            const int64_t b = base + g + order[i];
            keep[b >> 6] &= ~(1ull << (b & 63));
        }
    }
}

static slm_status check_opts(const slm_prune_opts *o, int64_t cols) {
    if (o->nm_m) {
        if (o->nm_m < 2 || o->nm_m > 64 || o->nm_n < 1 || o->nm_n >= o->nm_m)
            return slm_error(SLM_ERR_ARG, "prune: pattern %d:%d is not n:m with 0 < n < m <= 64", o->nm_n, o->nm_m);
        if (cols % o->nm_m)
            return slm_error(SLM_ERR_ARG, "prune: rows of %lld weights are not a whole number of groups of %d",
                             (long long)cols, o->nm_m);
    } else if (!(o->sparsity >= 0 && o->sparsity < 1)) {
        return slm_error(SLM_ERR_ARG, "prune: sparsity %g is not in [0, 1)", o->sparsity);
    }
    return SLM_OK;
}

slm_status slm_prune_mask(const float *w, int64_t rows, int64_t cols, const float *col_scale,
                          const slm_prune_opts *o, uint64_t *keep) {
    if (rows < 0 || cols <= 0) return slm_error(SLM_ERR_ARG, "prune: bad matrix shape");
    slm_status st = check_opts(o, cols);
    if (st) return st;
    const int64_t n = rows * cols, words = (n + 63) / 64;
    memset(keep, 0xff, (size_t)words * sizeof *keep);
    if (n % 64) keep[words - 1] = (1ull << (n % 64)) - 1;
    const bool whole = !o->nm_m && !o->per_row;
    const int64_t span = whole ? n : cols;
    float *s = malloc((size_t)span * 2 * sizeof *s);
    if (!s) return slm_error(SLM_ERR_NOMEM, "out of memory");
    float *tmp = s + span;
    if (whole) {
        for (int64_t i = 0; i < n; i++) s[i] = score_of(w[i], col_scale, i % cols);
        drop_lowest(s, n, (int64_t)floor(o->sparsity * (double)n + 0.5), tmp, keep, 0);
    } else {
        const int64_t drop = (int64_t)floor(o->sparsity * (double)cols + 0.5);
        for (int64_t r = 0; r < rows; r++) {
            const float *wr = w + r * cols;
            for (int64_t c = 0; c < cols; c++) s[c] = score_of(wr[c], col_scale, c);
            if (o->nm_m) nm_row(s, cols, o->nm_n, o->nm_m, keep, r * cols);
            else drop_lowest(s, cols, drop, tmp, keep, r * cols);
        }
    }
    free(s);
    return SLM_OK;
}

/* ---- a model ------------------------------------------------------------------------- */

struct slm_prune_plan {
    slm_prune_tensor *t;
    int n;
};

typedef struct {
    const slm_gguf_tensor *src;
    slm_prune_tensor *t;
    float *w;              /* dequantized [rows][cols] */
    const float *scale;    /* sqrt(E[x^2]) per column, or NULL */
    const float *mean_sq;  /* E[x^2] per column, or NULL */
    const slm_prune_opts *o;
    slm_status st;
    slm_mat mat; /* src bound with its companions */
    double w2[64], w2r[64], s2[64], s2r[64];
    int64_t kept[64], maxk[64], mink[64];
} tensor_job;

/* the rows as the engine computes with them (dtype, codebook table, outliers) */
static void dequant_rows(void *arg, int ith, int nth) {
    tensor_job *j = arg;
    long lo, hi;
    slm_pool_split((long)j->t->rows, ith, nth, 1, &lo, &hi);
    for (long r = lo; r < hi; r++) slm_mat_row(&j->mat, r, j->w + (size_t)r * j->t->cols);
}

static void stats_rows(void *arg, int ith, int nth) {
    tensor_job *j = arg;
    const int64_t cols = j->t->cols;
    long lo, hi;
    slm_pool_split((long)j->t->rows, ith, nth, 1, &lo, &hi);
    double w2 = 0, w2r = 0, s2 = 0, s2r = 0;
    int64_t kept = 0, maxk = 0, mink = cols;
    for (long r = lo; r < hi; r++) {
        int64_t k = 0;
        for (int64_t c = 0; c < cols; c++) {
            const double w = j->w[(size_t)r * cols + c], e = w * w, se = j->mean_sq ? e * j->mean_sq[c] : 0;
            const bool in = slm_prune_kept(j->t->keep, (int64_t)r * cols + c);
            k += in;
            w2 += e;
            s2 += se;
            if (!in) {
                w2r += e;
                s2r += se;
            }
        }
        kept += k;
        if (k > maxk) maxk = k;
        if (k < mink) mink = k;
    }
    j->w2[ith] = w2, j->w2r[ith] = w2r, j->s2[ith] = s2, j->s2r[ith] = s2r;
    j->kept[ith] = kept, j->maxk[ith] = maxk, j->mink[ith] = mink;
}

/* Per-row masks are independent: rows split over threads. */
static void mask_rows(void *arg, int ith, int nth) {
    tensor_job *j = arg;
    long lo, hi;
    slm_pool_split((long)j->t->rows, ith, nth, 1, &lo, &hi);
    if (hi <= lo) return;
    const int64_t cols = j->t->cols;
    /* a private mask for the slice whose first row may start inside a word: build it for the
     * rows [lo, hi) at offset 0, then copy the bits over */
    const int64_t n = (int64_t)(hi - lo) * cols;
    uint64_t *part = malloc((size_t)((n + 63) / 64) * sizeof *part);
    if (!part) {
        j->st = slm_error(SLM_ERR_NOMEM, "out of memory");
        return;
    }
    slm_status s = slm_prune_mask(j->w + (size_t)lo * cols, hi - lo, cols, j->scale, j->o, part);
    if (s) {
        j->st = s;
        free(part);
        return;
    }
    /* the clear bits of part go to the shared mask; rows of different threads can share a
     * word at their boundary, so clear with an atomic and */
    const int64_t base = (int64_t)lo * cols;
    for (int64_t i = 0; i < n; i++)
        if (!slm_prune_kept(part, i)) __atomic_fetch_and(&j->t->keep[(base + i) >> 6], ~(1ull << ((base + i) & 63)),
                                                         __ATOMIC_RELAXED);
    free(part);
}

static double rule_sparsity(const char *name, const slm_prune_opts *o, const slm_prune_rule *rules, int n_rules) {
    double s = o->sparsity;
    for (int i = 0; i < n_rules; i++)
        if (fnmatch(rules[i].glob, name, 0) == 0) s = rules[i].sparsity;
    return s;
}

static void progress_bar(int done, int all, const char *name) {
    const int width = 30, fill = all ? width * done / all : width;
    fprintf(stderr, "\r\033[Kprune: [%.*s%*s] %3d%% %d/%d %s", fill, "##############################", width - fill, "",
            all ? 100 * done / all : 100, done, all, name);
}

slm_status slm_prune_plan_create(const slm_gguf *g, const slm_calib *cal, const slm_prune_opts *o,
                                 const slm_prune_rule *rules, int n_rules, slm_pool *pool, bool progress,
                                 slm_prune_plan **out) {
    *out = NULL;
    if (o->method == SLM_PRUNE_WANDA && !cal) return slm_error(SLM_ERR_ARG, "prune: wanda needs calibration statistics");
    if (slm_pool_size(pool) > 64) return slm_error(SLM_ERR_ARG, "prune: at most 64 threads");
    slm_prune_plan *p = calloc(1, sizeof *p);
    if (!p) return slm_error(SLM_ERR_NOMEM, "out of memory");
    int count = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        char name[128];
        int layer;
        slm_gguf_str_copy(g->tensors[i].name, name, sizeof name);
        if (g->tensors[i].n_dims == 2 && slm_calib_point_of(name, &layer) >= 0) count++;
    }
    p->t = calloc(count ? (size_t)count : 1, sizeof *p->t);
    if (!p->t) {
        free(p);
        return slm_error(SLM_ERR_NOMEM, "out of memory");
    }
    slm_status st = SLM_OK;
    float *w = NULL, *scale = NULL;
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        const slm_gguf_tensor *src = &g->tensors[i];
        char name[sizeof p->t[0].name];
        int layer, point;
        slm_gguf_str_copy(src->name, name, sizeof name);
        if (src->n_dims != 2 || (point = slm_calib_point_of(name, &layer)) < 0 || p->n >= count) continue;
        slm_prune_tensor *t = &p->t[p->n];
        memcpy(t->name, name, sizeof name);
        t->layer = layer;
        t->point = point;
        t->cols = src->ne[0];
        t->rows = src->ne[1];
        t->sparsity = o->nm_m ? 1.0 - (double)o->nm_n / o->nm_m : rule_sparsity(t->name, o, rules, n_rules);
        slm_mat mat;
        if ((st = slm_model_bind_matrix(g, name, &mat))) {
            st = slm_error(SLM_ERR_UNSUPPORTED, "prune: tensor '%s' (%s) cannot be dequantized: %s", t->name,
                           slm_dtype_name(src->type), slm_last_error());
            break;
        }
        const float *mean_sq = NULL;
        if (cal) {
            if (t->layer >= slm_calib_n_layers(cal) || slm_calib_dim(cal, t->point) != t->cols) {
                st = slm_error(SLM_ERR_ARG, "prune: calibration does not match tensor '%s'", t->name);
                break;
            }
            mean_sq = slm_calib_mean_sq(cal, t->layer, t->point);
        }
        const size_t n = (size_t)t->rows * (size_t)t->cols;
        float *nw = realloc(w, n * sizeof *w), *ns = realloc(scale, (size_t)t->cols * sizeof *scale);
        if (nw) w = nw;
        if (ns) scale = ns;
        t->keep = malloc((n + 63) / 64 * sizeof *t->keep);
        if (!nw || !ns || !t->keep) {
            free(t->keep);
            t->keep = NULL;
            st = slm_error(SLM_ERR_NOMEM, "out of memory");
            break;
        }
        p->n++;
        if (progress) progress_bar(p->n, count, t->name);
        const bool wanda = o->method == SLM_PRUNE_WANDA;
        if (wanda)
            for (int64_t c = 0; c < t->cols; c++) scale[c] = sqrtf(mean_sq[c] > 0 ? mean_sq[c] : 0);
        slm_prune_opts to = *o;
        to.sparsity = t->sparsity;
        tensor_job j = {.src = src, .mat = mat, .t = t, .w = w, .scale = wanda ? scale : NULL, .mean_sq = mean_sq, .o = &to};
        slm_pool_run(pool, dequant_rows, &j);
        if (o->nm_m || o->per_row) {
            memset(t->keep, 0xff, (n + 63) / 64 * sizeof *t->keep);
            slm_pool_run(pool, mask_rows, &j);
            st = j.st;
        } else {
            st = slm_prune_mask(w, t->rows, t->cols, j.scale, &to, t->keep);
        }
        if (st) break;
        memset(j.mink, 0x7f, sizeof j.mink);
        slm_pool_run(pool, stats_rows, &j);
        t->min_row_kept = t->cols;
        for (int k = 0; k < slm_pool_size(pool); k++) {
            t->w2 += j.w2[k], t->w2_removed += j.w2r[k], t->s2 += j.s2[k], t->s2_removed += j.s2r[k];
            t->kept += j.kept[k];
            if (j.maxk[k] > t->max_row_kept) t->max_row_kept = j.maxk[k];
            if (j.mink[k] < t->min_row_kept) t->min_row_kept = j.mink[k];
        }
    }
    if (progress) fprintf(stderr, "\r\033[K");
    free(w);
    free(scale);
    if (st) {
        slm_prune_plan_free(p);
        return st;
    }
    *out = p;
    return SLM_OK;
}

void slm_prune_plan_free(slm_prune_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->t[i].keep);
    free(p->t);
    free(p);
}

int slm_prune_plan_count(const slm_prune_plan *p) { return p->n; }

const slm_prune_tensor *slm_prune_plan_tensor(const slm_prune_plan *p, int i) {
    return i >= 0 && i < p->n ? &p->t[i] : NULL;
}

const slm_prune_tensor *slm_prune_plan_find(const slm_prune_plan *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return &p->t[i];
    return NULL;
}

static bool hook_affects(void *user, const char *name) { return slm_prune_plan_find(user, name) != NULL; }

static void hook_fold(void *user, const char *name, int64_t row, float *x, int64_t n) {
    const slm_prune_tensor *t = slm_prune_plan_find(user, name);
    if (!t || n != t->cols || row < 0 || row >= t->rows) return;
    const int64_t base = row * n;
    for (int64_t c = 0; c < n; c++)
        if (!slm_prune_kept(t->keep, base + c)) x[c] = 0.0f;
}

slm_rq_hooks slm_prune_hooks(const slm_prune_plan *p) {
    return (slm_rq_hooks){.user = (void *)p, .affects = hook_affects, .fold_row = hook_fold};
}

void slm_prune_report(FILE *f, const slm_prune_plan *p, const slm_prune_opts *o) {
    const bool have_s = p->n > 0 && p->t[0].s2 > 0;
    int n_layers = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i].layer + 1 > n_layers) n_layers = p->t[i].layer + 1;
    fprintf(f, "%-6s %10s %10s %9s %12s%s\n", "layer", "weights", "kept", "sparsity", "w^2 removed",
            have_s ? "  (w x)^2 removed" : "");
    int64_t all = 0, kept = 0;
    double w2 = 0, w2r = 0, s2 = 0, s2r = 0;
    for (int layer = 0; layer < n_layers; layer++) {
        int64_t la = 0, lk = 0;
        double lw = 0, lwr = 0, ls = 0, lsr = 0;
        for (int i = 0; i < p->n; i++) {
            if (p->t[i].layer != layer) continue;
            la += p->t[i].rows * p->t[i].cols;
            lk += p->t[i].kept;
            lw += p->t[i].w2, lwr += p->t[i].w2_removed, ls += p->t[i].s2, lsr += p->t[i].s2_removed;
        }
        if (!la) continue;
        fprintf(f, "%-6d %10lld %10lld %8.2f%% %11.3f%%", layer, (long long)la, (long long)lk,
                100.0 * (double)(la - lk) / (double)la, lw > 0 ? 100 * lwr / lw : 0.0);
        if (have_s) fprintf(f, "  %15.3f%%", ls > 0 ? 100 * lsr / ls : 0.0);
        fputc('\n', f);
        all += la, kept += lk, w2 += lw, w2r += lwr, s2 += ls, s2r += lsr;
    }
    fprintf(f, "%-6s %10lld %10lld %8.2f%% %11.3f%%", "total", (long long)all, (long long)kept,
            all ? 100.0 * (double)(all - kept) / (double)all : 0.0, w2 > 0 ? 100 * w2r / w2 : 0.0);
    if (have_s) fprintf(f, "  %15.3f%%", s2 > 0 ? 100 * s2r / s2 : 0.0);
    fputc('\n', f);
    if (o->nm_m) fprintf(f, "pattern %d:%d in every row\n", o->nm_n, o->nm_m);
}
