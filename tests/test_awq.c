/* test_awq.c - the AWQ search on the real model with synthetic calibration inputs: the reported
 * errors equal an independent recomputation in double, the chosen scales never do worse than
 * plain rounding, an input channel with large activations gets a large scale, and folding a
 * row applies exactly the reported scales. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/awq.h"
#include "compress/calib.h"
#include "core/dtype.h"
#include "core/gq.h"
#include "test.h"

static uint64_t rng = 12345;
static float gauss(void) {
    double u = 0, v = 0;
    while (u <= 1e-12) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(rng >> 11) / 9007199254740992.0;
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    v = (double)(rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

enum { ROWS = 48, HOT = 7 };

/* || X (Q(W diag s) diag(1/s) - W)^T ||^2 / rows, in double, straight from the definition. */
static double group_error(const slm_mat *const *mats, int n_mats, uint32_t type, const float *x, int nr, int in,
                          const float *s) {
    const slm_dtype_traits *tr = slm_dtype_get(type);
    size_t rb;
    slm_row_bytes(type, in, &rb);
    float *w = malloc((size_t)in * sizeof *w), *a = malloc((size_t)in * sizeof *a), *b = malloc((size_t)in * sizeof *b);
    void *q = malloc(rb);
    double err = 0;
    for (int m = 0; m < n_mats; m++)
        for (int64_t r = 0; r < mats[m]->rows; r++) {
            slm_mat_row(mats[m], r, w);
            for (int c = 0; c < in; c++) a[c] = w[c] * s[c];
            tr->from_float(a, q, in);
            tr->to_float(q, b, in);
            for (int t = 0; t < nr; t++) {
                double y = 0;
                for (int c = 0; c < in; c++) y += ((double)(b[c] / s[c]) - (double)w[c]) * x[(size_t)t * in + c];
                err += y * y;
            }
        }
    free(w);
    free(a);
    free(b);
    free(q);
    return err / nr;
}

int main(void) {
    slm_model *m = NULL;
    if (slm_model_load(test_model_path(), &m)) {
        CHECK(0, "model fixture missing: %s", test_model_path());
        return test_summary("awq");
    }
    const slm_config *cfg = &m->cfg;
    slm_calib *cal = NULL;
    CHECK(slm_calib_create(m, ROWS, 7, &cal) == SLM_OK, "calib");
    /* synthetic inputs: Gaussian, channel HOT 20x larger at every point */
    const int dims[4] = {cfg->dim, cfg->n_heads * cfg->head_dim, cfg->dim, cfg->ffn_dim};
    float *x = malloc((size_t)ROWS * (size_t)cfg->ffn_dim * sizeof *x);
    for (int l = 0; l < cfg->n_layers; l++)
        for (int p = 0; p < 4; p++) {
            for (int t = 0; t < ROWS; t++)
                for (int c = 0; c < dims[p]; c++) x[(size_t)t * dims[p] + c] = gauss() * (c == HOT ? 20.0f : 1.0f);
            slm_calib_observe(cal, l, p, x, ROWS, dims[p]);
        }
    slm_pool *pool = NULL;
    slm_pool_create(2, &pool);
    const uint32_t type = (uint32_t)slm_gq_type(3, 64, true);
    slm_awq_params ap = {.type = type, .grid = 5};
    slm_awq_result r;
    CHECK(slm_awq_search(m, cal, pool, &ap, &r) == SLM_OK, "search");

    int worse = 0, hot_small = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        for (int g = 0; g < SLM_AWQ_N_GROUPS; g++) {
            const slm_awq_choice *c = &r.g[l * SLM_AWQ_N_GROUPS + g];
            worse += !(c->err <= c->err_rtn) || !c->scale;
            if (c->scale && c->alpha > 0) {
                /* the hot channel's scale is the largest */
                float mx = 0;
                const int in = dims[g == SLM_AWQ_QKV ? 0 : g == SLM_AWQ_GATE_UP ? 2 : g == SLM_AWQ_O ? 1 : 3];
                for (int j = 0; j < in; j++) mx = fmaxf(mx, c->scale[j]);
                hot_small += c->scale[HOT] < mx;
            }
        }
    CHECK(worse == 0, "%d groups worse than plain rounding or without scales", worse);
    CHECK(hot_small == 0, "%d groups where the hot channel is not scaled most", hot_small);
    int chose_alpha = 0;
    for (int i = 0; i < cfg->n_layers * SLM_AWQ_N_GROUPS; i++) chose_alpha += r.g[i].alpha > 0;
    CHECK(chose_alpha > cfg->n_layers, "alpha > 0 chosen in only %d groups", chose_alpha);

    /* independent recomputation of the errors of two groups of layer 1 */
    const slm_layer *L = &m->layers[1];
    int nr;
    const slm_mat *qkv[3] = {&L->wq, &L->wk, &L->wv}, *down[1] = {&L->w_down};
    const struct {
        const slm_mat *const *mats;
        int n, point, g;
    } cases[2] = {{qkv, 3, SLM_TAP_ATTN_IN, SLM_AWQ_QKV}, {down, 1, SLM_TAP_FFN_MID, SLM_AWQ_DOWN}};
    for (int k = 0; k < 2; k++) {
        const float *rows = slm_calib_rows(cal, 1, cases[k].point, &nr);
        const int in = (int)cases[k].mats[0]->cols;
        const slm_awq_choice *c = &r.g[1 * SLM_AWQ_N_GROUPS + cases[k].g];
        const double e = group_error(cases[k].mats, cases[k].n, type, rows, nr, in, c->scale);
        CHECK(fabs(e - c->err) <= 1e-3 * e, "group %d: error %.6g, recomputed %.6g", cases[k].g, c->err, e);
        float *ones = malloc((size_t)in * sizeof *ones);
        for (int j = 0; j < in; j++) ones[j] = 1.0f;
        const double e0 = group_error(cases[k].mats, cases[k].n, type, rows, nr, in, ones);
        CHECK(fabs(e0 - c->err_rtn) <= 1e-3 * e0, "group %d: plain error %.6g, recomputed %.6g", cases[k].g,
              c->err_rtn, e0);
        free(ones);
    }

    /* folding: q rows gain s, the norm loses it, v rows and up rows lose the O / DOWN scales */
    const float *sq = r.g[1 * SLM_AWQ_N_GROUPS + SLM_AWQ_QKV].scale, *sd = r.g[1 * SLM_AWQ_N_GROUPS + SLM_AWQ_DOWN].scale;
    float *row = malloc((size_t)cfg->ffn_dim * sizeof *row), *orig = malloc((size_t)cfg->ffn_dim * sizeof *orig);
    slm_mat_row(&L->wq, 5, orig);
    memcpy(row, orig, (size_t)cfg->dim * sizeof *row);
    CHECK(slm_awq_affects(&r, "blk.1.attn_q.weight") && !slm_awq_affects(&r, "token_embd.weight") &&
              !slm_awq_affects(&r, "blk.99.attn_q.weight"),
          "affected tensors");
    slm_awq_fold_row(&r, "blk.1.attn_q.weight", 5, row, cfg->dim);
    int bad = 0;
    for (int j = 0; j < cfg->dim; j++) bad += row[j] != orig[j] * sq[j];
    slm_mat_row(&L->w_up, 9, orig);
    memcpy(row, orig, (size_t)cfg->dim * sizeof *row);
    slm_awq_fold_row(&r, "blk.1.ffn_up.weight", 9, row, cfg->dim);
    const float *sg = r.g[1 * SLM_AWQ_N_GROUPS + SLM_AWQ_GATE_UP].scale;
    for (int j = 0; j < cfg->dim; j++) bad += fabsf(row[j] - orig[j] * sg[j] / sd[9]) > 1e-6f * fabsf(orig[j] * sg[j] / sd[9]);
    for (int j = 0; j < cfg->dim; j++) row[j] = L->attn_norm[j];
    slm_awq_fold_row(&r, "blk.1.attn_norm.weight", 0, row, cfg->dim);
    for (int j = 0; j < cfg->dim; j++) bad += row[j] != L->attn_norm[j] / sq[j];
    CHECK(bad == 0, "%d folded values differ from the scales", bad);

    free(row);
    free(orig);
    free(x);
    slm_awq_result_free(&r);
    slm_pool_free(pool);
    slm_calib_free(cal);
    slm_model_free(m);
    return test_summary("awq");
}
