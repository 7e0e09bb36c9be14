/* matmul.c - matrix products over any dtype, split over the thread pool.
 *
 * Fast path: the activation rows are quantized once into the format that pairs with the
 * weight dtype (slm_act_type), then each thread runs the kernel set's gemm over its share of
 * weight rows, a tile of rows at a time against all activation rows, so a tile of weights is
 * read from memory once per batch.
 * Reference path (no kernel set): each weight row is dequantized to f32 and dotted with the
 * f32 activations; exact up to float summation order. */
#include "matmul.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cbt.h"
#include "../core/dtype.h"

#define ROW_ALIGN 16   /* rows per thread share are multiples of this: 64-byte output lines */
#define ROW_TILE 64    /* weight rows per gemm call */

float slm_dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void slm_mat_row(const slm_mat *w, int64_t r, float *dst) {
    const char *row = (const char *)w->data + (size_t)r * w->row_bytes;
    if (w->tab) slm_cbt_to_float(w->type, w->tab, row, dst, w->cols);
    else slm_dtype_get(w->type)->to_float(row, dst, w->cols);
    if (w->outl.nnz)
        for (int32_t i = w->outl.off[r]; i < w->outl.off[r + 1]; i++) dst[w->outl.col[i]] += w->outl.val[i];
}

/* y[t][r] += outlier row r . x[t] for rows [lo, hi) */
static void add_outliers(const slm_mat *w, const float *x, int n_tok, float *y, long lo, long hi) {
    const slm_outliers *o = &w->outl;
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * (size_t)w->cols;
        float *yt = y + (size_t)t * (size_t)w->rows;
        for (long r = lo; r < hi; r++) {
            float acc = 0.0f;
            for (int32_t i = o->off[r]; i < o->off[r + 1]; i++) acc += o->val[i] * xt[o->col[i]];
            yt[r] += acc;
        }
    }
}

static size_t act_row_bytes(int act, int64_t cols) {
    size_t b = 0;
    if (act < 0 || !slm_row_bytes((uint32_t)act, cols, &b)) return 0;
    return b;
}

slm_status slm_mm_init(slm_mm *mm, slm_pool *pool, const slm_kernels *k, int max_tok, int64_t max_cols) {
    memset(mm, 0, sizeof *mm);
    mm->pool = pool;
    mm->k = k;
    mm->max_tok = max_tok;
    mm->max_cols = max_cols;
    const int nth = slm_pool_size(pool);
    mm->row = malloc((size_t)nth * (size_t)max_cols * sizeof(float));
    /* the largest activation row: f32 (4 bytes per element) bounds every 8-bit format */
    mm->act_cap = (size_t)max_tok * (size_t)max_cols * sizeof(float);
    mm->act = k ? malloc(mm->act_cap) : NULL;
    if (!mm->row || (k && !mm->act)) {
        slm_mm_free(mm);
        return slm_error(SLM_ERR_NOMEM, "matmul: out of memory for scratch");
    }
    return SLM_OK;
}

void slm_mm_free(slm_mm *mm) {
    free(mm->row);
    free(mm->act);
    memset(mm, 0, sizeof *mm);
}

typedef struct {
    slm_mm *mm;
    const slm_mat *w;
    const float *x;
    int n_tok;
    float *y;
    int act;
    size_t act_bytes;
} mm_job;

static void quantize_task(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long lo, hi;
    slm_pool_split(j->n_tok, ith, nth, 1, &lo, &hi);
    slm_quant_act_fn q = j->mm->k->quant_act[j->act];
    for (long t = lo; t < hi; t++)
        q(j->x + (size_t)t * j->w->cols, (char *)j->mm->act + (size_t)t * j->act_bytes, j->w->cols);
}

static void gemm_task(void *arg, int ith, int nth) {
    mm_job *j = arg;
    const slm_mat *w = j->w;
    long lo, hi;
    slm_pool_split(w->rows, ith, nth, ROW_ALIGN, &lo, &hi);
    if (w->tab) {
        slm_gemm_tab_fn g = j->mm->k->gemm_tab[w->type];
        for (long r = lo; r < hi; r += ROW_TILE) {
            int nr = (int)(hi - r < ROW_TILE ? hi - r : ROW_TILE);
            g(w->tab, w->cols, (const char *)w->data + (size_t)r * w->row_bytes, w->row_bytes, nr, j->mm->act,
              j->act_bytes, j->n_tok, j->y + r, (size_t)w->rows);
        }
    } else if (j->n_tok < 4 && j->act == SLM_DT_F32) {
        /* float weights with one or a few tokens: streaming each row through vec_dot beats the
         * register-tiled gemm, whose tiles are built for many activation rows */
        slm_vec_dot_fn dot = j->mm->k->vec_dot[w->type];
        for (long r = lo; r < hi; r++)
            for (int t = 0; t < j->n_tok; t++)
                j->y[(size_t)t * w->rows + r] = dot((const char *)w->data + (size_t)r * w->row_bytes,
                                                    (const char *)j->mm->act + (size_t)t * j->act_bytes, w->cols);
    } else {
        slm_gemm_fn g = j->mm->k->gemm[w->type];
        for (long r = lo; r < hi; r += ROW_TILE) {
            int nr = (int)(hi - r < ROW_TILE ? hi - r : ROW_TILE);
            g(w->cols, (const char *)w->data + (size_t)r * w->row_bytes, w->row_bytes, nr, j->mm->act, j->act_bytes,
              j->n_tok, j->y + r, (size_t)w->rows);
        }
    }
    if (w->outl.nnz) add_outliers(w, j->x, j->n_tok, j->y, lo, hi);
}

static void ref_task(void *arg, int ith, int nth) {
    mm_job *j = arg;
    const slm_mat *w = j->w;
    const slm_dtype_traits *tr = slm_dtype_get(w->type);
    float *scratch = j->mm->row + (size_t)ith * j->mm->max_cols;
    long lo, hi;
    slm_pool_split(w->rows, ith, nth, ROW_ALIGN, &lo, &hi);
    const char *base = w->data;
    const int64_t rows = w->rows, cols = w->cols;
    const bool plain = !w->tab && !w->outl.nnz;
    for (long r = lo; r < hi; r++) {
        if (j->n_tok == 1 && plain) {
            j->y[r] = tr->dot_f32(base + (size_t)r * w->row_bytes, j->x, cols);
            continue;
        }
        slm_mat_row(w, r, scratch);
        for (int t = 0; t < j->n_tok; t++)
            j->y[(size_t)t * rows + r] = slm_dot_f32(scratch, j->x + (size_t)t * cols, cols);
    }
}

void slm_matmul(slm_mm *mm, const slm_mat *w, const float *x, int n_tok, float *y) {
    mm_job j = {.mm = mm, .w = w, .x = x, .n_tok = n_tok, .y = y};
    const bool fast = mm->k && (w->tab ? mm->k->gemm_tab[w->type] != NULL : mm->k->gemm[w->type] != NULL);
    if (!fast) {
        slm_pool_run(mm->pool, ref_task, &j);
        return;
    }
    j.act = slm_act_type(w->type);
    j.act_bytes = act_row_bytes(j.act, w->cols);
    if (n_tok < 4) quantize_task(&j, 0, 1);
    else slm_pool_run(mm->pool, quantize_task, &j);
    slm_pool_run(mm->pool, gemm_task, &j);
}
