/* test_prune.c - pruning masks against a brute-force reference: sort every weight of a
 * comparison group by (score, position) and remove the first k; N:M by sorting each group. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/prune.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
    float s;
    int64_t i;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static float ref_score(float w, const float *scale, int64_t c) {
    const float s = fabsf(w) * (scale ? scale[c] : 1.0f);
    return isnan(s) ? INFINITY : s;
}

/* Reference keep flags (bytes). */
static void ref_mask(const float *w, int64_t rows, int64_t cols, const float *scale, const slm_prune_opts *o,
                     uint8_t *keep) {
    memset(keep, 1, (size_t)(rows * cols));
    if (o->nm_m) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < cols; g += o->nm_m) {
                scored a[64];
                for (int k = 0; k < o->nm_m; k++) a[k] = (scored){ref_score(w[r * cols + g + k], scale, g + k), k};
                /* ties: the later position stays, i.e. the earlier goes first */
                qsort(a, (size_t)o->nm_m, sizeof a[0], by_score);
                for (int k = 0; k < o->nm_m - o->nm_n; k++) keep[r * cols + g + a[k].i] = 0;
            }
        return;
    }
    const int64_t group = o->per_row ? cols : rows * cols;
    scored *a = malloc((size_t)group * sizeof *a);
    for (int64_t base = 0; base < rows * cols; base += group) {
        for (int64_t i = 0; i < group; i++) a[i] = (scored){ref_score(w[base + i], scale, (base + i) % cols), i};
        qsort(a, (size_t)group, sizeof a[0], by_score);
        const int64_t drop = (int64_t)floor(o->sparsity * (double)group + 0.5);
        for (int64_t k = 0; k < drop; k++) keep[base + a[k].i] = 0;
    }
    free(a);
}

static int compare(const char *what, const float *w, int64_t rows, int64_t cols, const float *scale,
                   const slm_prune_opts *o) {
    const int64_t n = rows * cols;
    uint64_t *keep = malloc((size_t)((n + 63) / 64 + 1) * sizeof *keep);
    uint8_t *ref = malloc((size_t)n);
    keep[(n + 63) / 64] = 0x5a5a5a5a5a5a5a5aull; /* guard word */
    slm_status s = slm_prune_mask(w, rows, cols, scale, o, keep);
    CHECK(s == SLM_OK, "%s: %s", what, slm_last_error());
    ref_mask(w, rows, cols, scale, o, ref);
    int64_t bad = 0, kept = 0;
    for (int64_t i = 0; i < n; i++) {
        bad += slm_prune_kept(keep, i) != ref[i];
        kept += slm_prune_kept(keep, i);
    }
    /* bits past the end are clear, and nothing past the mask is written */
    bool tail_ok = n % 64 == 0 || (keep[n / 64] >> (n % 64)) == 0;
    CHECK(bad == 0, "%s: %lld positions differ from the reference", what, (long long)bad);
    CHECK(tail_ok && keep[(n + 63) / 64] == 0x5a5a5a5a5a5a5a5aull, "%s: bits beyond the matrix", what);
    free(keep);
    free(ref);
    return (int)kept;
}

int main(void) {
    const int64_t R = 37, C = 96;
    float *w = malloc((size_t)(R * C) * sizeof *w), scale[96];
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)(urand() * 2 - 1);
    for (int c = 0; c < C; c++) scale[c] = (float)(0.1 + 3 * urand());

    for (int per_row = 0; per_row < 2; per_row++)
        for (int m = 0; m < 2; m++)
            for (double sp = 0.0; sp < 0.95; sp += 0.15) {
                slm_prune_opts o = {.method = m ? SLM_PRUNE_WANDA : SLM_PRUNE_MAGNITUDE, .sparsity = sp,
                                    .per_row = per_row};
                char what[96];
                snprintf(what, sizeof what, "%s %s sparsity %.2f", m ? "wanda" : "magnitude",
                         per_row ? "per row" : "per matrix", sp);
                const int kept = compare(what, w, R, C, m ? scale : NULL, &o);
                const int64_t want = per_row ? R * (C - (int64_t)floor(sp * C + 0.5))
                                             : R * C - (int64_t)floor(sp * R * C + 0.5);
                CHECK(kept == want, "%s: kept %d, want %lld", what, kept, (long long)want);
            }

    /* N:M patterns */
    const int pats[][2] = {{2, 4}, {1, 4}, {4, 8}, {3, 4}};
    for (size_t k = 0; k < sizeof pats / sizeof pats[0]; k++)
        for (int m = 0; m < 2; m++) {
            slm_prune_opts o = {.method = m ? SLM_PRUNE_WANDA : SLM_PRUNE_MAGNITUDE, .nm_n = pats[k][0],
                                .nm_m = pats[k][1]};
            char what[64];
            snprintf(what, sizeof what, "%d:%d %s", pats[k][0], pats[k][1], m ? "wanda" : "magnitude");
            const int kept = compare(what, w, R, C, m ? scale : NULL, &o);
            CHECK(kept == R * C / pats[k][1] * pats[k][0], "%s: kept %d", what, kept);
        }

    /* Wanda differs from magnitude when channels differ in scale: a column with a huge input
     * norm keeps its small weights */
    {
        float w2[8] = {0.1f, 1.0f, 0.9f, 0.8f, 0.1f, 1.0f, 0.9f, 0.8f}, sc[4] = {100, 1, 1, 1};
        uint64_t keep[1];
        slm_prune_opts o = {.method = SLM_PRUNE_WANDA, .nm_n = 2, .nm_m = 4};
        CHECK(slm_prune_mask(w2, 2, 4, sc, &o, keep) == SLM_OK, "wanda 2:4");
        CHECK(keep[0] == 0x33, "wanda keeps columns 0 and 1 (mask %#llx)", (unsigned long long)keep[0]);
        o.method = SLM_PRUNE_MAGNITUDE;
        CHECK(slm_prune_mask(w2, 2, 4, NULL, &o, keep) == SLM_OK && keep[0] == 0x66,
              "magnitude keeps columns 1 and 2 (mask %#llx)", (unsigned long long)keep[0]);
    }

    /* ties: all-equal weights lose the earliest first; NaN weights stay */
    {
        float e[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
        uint64_t keep[1];
        slm_prune_opts o = {.sparsity = 0.3, .per_row = true};
        CHECK(slm_prune_mask(e, 1, 10, NULL, &o, keep) == SLM_OK && keep[0] == 0x3f8, "ties: %#llx",
              (unsigned long long)keep[0]);
        slm_prune_opts nm = {.nm_n = 2, .nm_m = 4};
        CHECK(slm_prune_mask(e, 1, 8, NULL, &nm, keep) == SLM_OK && keep[0] == 0xcc, "2:4 ties keep the later two: %#llx",
              (unsigned long long)keep[0]);
        e[0] = NAN;
        e[5] = 0;
        CHECK(slm_prune_mask(e, 1, 10, NULL, &o, keep) == SLM_OK && (keep[0] & 1) && !(keep[0] & 0x20),
              "NaN kept, zero removed: %#llx", (unsigned long long)keep[0]);
    }

    /* bad options */
    {
        uint64_t keep[2];
        slm_prune_opts o = {.sparsity = 1.0};
        CHECK(slm_prune_mask(w, 1, 96, NULL, &o, keep) == SLM_ERR_ARG, "sparsity 1 refused");
        o.sparsity = NAN;
        CHECK(slm_prune_mask(w, 1, 96, NULL, &o, keep) == SLM_ERR_ARG, "sparsity NaN refused");
        o = (slm_prune_opts){.nm_n = 2, .nm_m = 5};
        CHECK(slm_prune_mask(w, 1, 96, NULL, &o, keep) == SLM_ERR_ARG, "2:5 on rows of 96 refused");
        o = (slm_prune_opts){.nm_n = 4, .nm_m = 4};
        CHECK(slm_prune_mask(w, 1, 96, NULL, &o, keep) == SLM_ERR_ARG, "4:4 refused");
    }
    free(w);
    return test_summary("test_prune");
}
