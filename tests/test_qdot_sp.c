/* test_qdot_sp.c - the sparse-format kernels of every kernel table this CPU runs.
 *
 * For 2:4 with 8- and 4-bit values and unstructured classes from very sparse (q8s1, q4s1) to
 * dense (q8s63, q4s63), weight rows are pruned here (random kept positions; unstructured rows with fewer,
 * exactly C, or padded nonzeros), then quantized both to the sparse type and to the dense
 * q8_0 / q4_0 type, whose values are the same (test_sparse.c); activations are quantized by
 * each table's own Q8_0 quantizer. Then, per table:
 *   1. every sparse type has vec_dot and gemm, and takes Q8_0 activations;
 *   2. sparse vec_dot equals the table's q8_0 / q4_0 vec_dot of the dense pruned row within
 *      1e-5 of the sum of |terms| (the integer sums are the same; only float summation order
 *      may differ): the sparse kernel computes the dense product of the same weights;
 *   3. it equals the scalar twin within the same bound;
 *   4. gemm equals vec_dot on shapes that are not multiples of the tiles (1x1, 3x5, 7x9, 5x1,
 *      2x70, 9x4, and 5x6 with rows of 4128 / 4160 weights: several chunks), with strides that are not the packed row sizes and sentinels around the outputs;
 *   5. slm_matmul of a small sparse matrix (2 threads) equals slm_matmul of the dense matrix.
 * On CPUs with VBMI2 the AVX-512 file's own 2:4 kernels are tested as well. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/sparse.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "test.h"

static uint64_t g_rng = 0x853c49e6748fea9bull;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_normal(void) {
    const double u1 = ((double)(rng_next() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = (double)(rng_next() >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

enum { N_MAX = 4160, ROWS_MAX = 9, COLS_MAX = 70, PAD = 40 /* stride slack, bytes */ };

static const slm_kernels *g_tables[SLM_ISA_COUNT];

static size_t row_bytes(int t, int64_t n) {
    size_t b = 0;
    return slm_row_bytes((uint32_t)t, n, &b) ? b : 0;
}

/* the types tested: 2:4 q8, 2:4 q4, unstructured classes with 8-bit values, then with 4-bit
 * values */
static const int g_classes[] = {1, 2, 7, 19, 32, 45, 63};
static const int g_classes4[] = {1, 19, 63};
enum {
    N_CLASSES = sizeof g_classes / sizeof g_classes[0],
    N_TYPES = 2 + N_CLASSES + sizeof g_classes4 / sizeof g_classes4[0],
};
static int type_at(int i) {
    if (i < 2) return SLM_DT_SP_FIRST + i;
    if (i < 2 + N_CLASSES) return SLM_SP_Q8S_FIRST + g_classes[i - 2] - 1;
    return SLM_SP_Q4S_FIRST + g_classes4[i - 2 - N_CLASSES] - 1;
}
static int dense_of(int t) {
    slm_sp_format f;
    slm_sp_format_of((uint32_t)t, &f);
    return f.bits == 4 ? SLM_DT_Q4_0 : SLM_DT_Q8_0;
}

/* A pruned row of n weights for type t (variant v picks how full unstructured rows are). */
static void make_pruned(int t, int v, float *x, int64_t n) {
    slm_sp_format f;
    slm_sp_format_of((uint32_t)t, &f);
    for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
    if (f.kind == SLM_SP_24) {
        for (int64_t g = 0; g < n / 4; g++) {
            const int p0 = (int)(rng_next() % 4), p1 = (p0 + 1 + (int)(rng_next() % 3)) % 4;
            x[4 * g + p0] = 0.02f * rng_normal();
            x[4 * g + p1] = 0.02f * rng_normal();
        }
        return;
    }
    const int64_t cap = slm_sp_capacity(&f, n);
    /* v 0: about C / 3 nonzeros (padding), 1: exactly C, 2: clustered at the row start */
    const int64_t nnz = v == 0 ? cap / 3 : cap;
    if (v == 2) {
        for (int64_t i = 0; i < nnz; i++) x[i] = 0.02f * rng_normal() + 0.001f;
        return;
    }
    for (int64_t k = 0; k < nnz;) {
        const int64_t i = (int64_t)(rng_next() % (uint64_t)n);
        if (x[i] == 0.0f) {
            x[i] = 0.02f * rng_normal() + (x[i] < 0 ? -0.001f : 0.001f);
            if (x[i] != 0.0f) k++;
        }
    }
}

/* sum over blocks of |d_w d_x| sum |q_w q_x|, from the dense q8_0 / q4_0 row */
static double term_size(int dense, const uint8_t *w, const uint8_t *x, int64_t n) {
    double total = 0.0;
    const size_t wb = dense == SLM_DT_Q8_0 ? 34 : 18;
    for (int64_t b = 0; b < n / 32; b++, w += wb, x += 34) {
        const int8_t *qx = (const int8_t *)(x + 2);
        double a = 0.0;
        for (int j = 0; j < 32; j++) {
            const int qw = dense == SLM_DT_Q8_0 ? (int8_t)w[2 + j] : (j < 16 ? (w[2 + j] & 15) : (w[2 + j - 16] >> 4)) - 8;
            a += fabs((double)qw * qx[j]);
        }
        total += fabs((double)slm_f16_to_f32((uint16_t)(w[0] | w[1] << 8)) *
                      (double)slm_f16_to_f32((uint16_t)(x[0] | x[1] << 8))) * a;
    }
    return total;
}

static void check_tables(void) {
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tables[isa];
        if (!k) continue;
        for (int t = SLM_DT_SP_FIRST; t < SLM_DT_SP_FIRST + 128; t++)
            CHECK(k->vec_dot[t] && k->gemm[t] && slm_act_type((uint32_t)t) == SLM_DT_Q8_0 && k->quant_act[SLM_DT_Q8_0],
                  "%s: kernels for %s", k->name, slm_dtype_name((uint32_t)t));
    }
}

/* Checks 2 and 3 for one type, row length and table. */
static void check_dots(const slm_kernels *k, int t, int64_t n) {
    const int dense = dense_of(t);
    static float x[N_MAX], a[N_MAX];
    static uint8_t ws[N_MAX * 2], wd[N_MAX * 2], xq[N_MAX * 2];
    for (int v = 0; v < 3; v++) {
        make_pruned(t, v, x, n);
        slm_dtype_get((uint32_t)t)->from_float(x, ws, n);
        slm_dtype_get((uint32_t)dense)->from_float(x, wd, n);
        for (int64_t i = 0; i < n; i++) a[i] = rng_normal() * (v == 2 ? 100.0f : 1.0f);
        k->quant_act[SLM_DT_Q8_0](a, xq, n);
        const double tol = 1e-5 * term_size(dense, wd, xq, n) + 1e-30;
        const float got = k->vec_dot[t](ws, xq, n);
        const float want = k->vec_dot[dense](wd, xq, n);
        const float twin = g_tables[SLM_ISA_SCALAR]->vec_dot[t](ws, xq, n);
        CHECK(fabs((double)got - want) <= tol, "%s %s n %lld v %d: sparse %.9g vs dense %s %.9g", k->name,
              slm_dtype_name((uint32_t)t), (long long)n, v, got, slm_dtype_name((uint32_t)dense), want);
        CHECK(fabs((double)got - twin) <= tol, "%s %s n %lld v %d: %.9g vs scalar twin %.9g", k->name,
              slm_dtype_name((uint32_t)t), (long long)n, v, got, twin);
    }
}

/* Check 4: gemm of nr x nc against vec_dot. */
static void check_gemm(const slm_kernels *k, int t, int64_t n, int nr, int nc) {
    static float x[N_MAX], y[(COLS_MAX + 2) * (ROWS_MAX + 8)];
    static uint8_t w[ROWS_MAX * (N_MAX * 2 + PAD)], xq[COLS_MAX * (N_MAX * 2 + PAD)];
    const size_t wst = row_bytes(t, n) + 7, xst = (size_t)(n / 32) * 34 + 13, ldy = (size_t)nr + 3;
    for (int r = 0; r < nr; r++) {
        make_pruned(t, r % 3, x, n);
        slm_dtype_get((uint32_t)t)->from_float(x, w + (size_t)r * wst, n);
    }
    for (int c = 0; c < nc; c++) {
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal();
        k->quant_act[SLM_DT_Q8_0](x, xq + (size_t)c * xst, n);
    }
    const float sentinel = -12345.0f;
    const size_t ny = (size_t)(nc + 1) * ldy + 1;
    for (size_t i = 0; i < ny; i++) y[i] = sentinel;
    k->gemm[t](n, w, wst, nr, xq, xst, nc, y + 1, ldy);
    int bad = 0, touched = 0;
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            const float want = k->vec_dot[t](w + (size_t)r * wst, xq + (size_t)c * xst, n);
            const float got = y[1 + (size_t)c * ldy + (size_t)r];
            if (fabsf(got - want) > 1e-5f * fabsf(want) + 1e-6f) bad++;
        }
    for (size_t i = 0; i < ny; i++) {
        const size_t j = i - 1;
        const bool inside = i >= 1 && j / ldy < (size_t)nc && j % ldy < (size_t)nr;
        if (!inside && y[i] != sentinel) touched++;
    }
    CHECK(bad == 0, "%s %s n %lld gemm %dx%d: %d outputs differ from vec_dot", k->name, slm_dtype_name((uint32_t)t),
          (long long)n, nr, nc, bad);
    CHECK(touched == 0, "%s %s gemm %dx%d: %d writes outside the outputs", k->name, slm_dtype_name((uint32_t)t), nr,
          nc, touched);
}

/* Check 5: y = W x through slm_matmul, sparse vs dense q8_0 of the same pruned weights. */
static void check_matmul(const slm_kernels *k, slm_pool *pool, int t) {
    const int dense = dense_of(t);
    const int64_t rows = 40, cols = 576;
    const int ntok = 5;
    const size_t rbs = row_bytes(t, cols), rbd = row_bytes(dense, cols);
    uint8_t *ws = malloc((size_t)rows * rbs), *wd = malloc((size_t)rows * rbd);
    float *x = malloc((size_t)ntok * cols * sizeof *x), *ys = malloc((size_t)ntok * rows * sizeof *ys);
    float *yd = malloc((size_t)ntok * rows * sizeof *yd), *row = malloc((size_t)cols * sizeof *row);
    slm_mm mm;
    if (!ws || !wd || !x || !ys || !yd || !row || slm_mm_init(&mm, pool, k, ntok, cols) != SLM_OK) {
        CHECK(0, "out of memory");
        free(ws), free(wd), free(x), free(ys), free(yd), free(row);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        make_pruned(t, (int)(r % 3), row, cols);
        slm_dtype_get((uint32_t)t)->from_float(row, ws + (size_t)r * rbs, cols);
        slm_dtype_get((uint32_t)dense)->from_float(row, wd + (size_t)r * rbd, cols);
    }
    for (int64_t i = 0; i < ntok * cols; i++) x[i] = rng_normal();
    const slm_mat ms = {.data = ws, .type = (uint32_t)t, .rows = rows, .cols = cols, .row_bytes = rbs};
    const slm_mat md = {.data = wd, .type = (uint32_t)dense, .rows = rows, .cols = cols, .row_bytes = rbd};
    CHECK(slm_dtype_get((uint32_t)t)->check_rows((uint32_t)t, ws, cols, rows), "%s: quantized rows pass check_rows",
          slm_dtype_name((uint32_t)t));
    for (int nt = 1; nt <= ntok; nt += ntok - 1) {
        slm_matmul(&mm, &ms, x, nt, ys);
        slm_matmul(&mm, &md, x, nt, yd);
        int bad = 0;
        double worst = 0.0;
        for (int64_t i = 0; i < nt * rows; i++) {
            const double e = fabs((double)ys[i] - yd[i]);
            if (e > 1e-5 * fabs((double)yd[i]) + 1e-6) bad++;
            if (e > worst) worst = e;
        }
        CHECK(bad == 0, "%s %s matmul %d tokens: %d outputs differ from dense %s (worst %g)", k->name,
              slm_dtype_name((uint32_t)t), nt, bad, slm_dtype_name((uint32_t)dense), worst);
    }
    slm_mm_free(&mm);
    free(ws), free(wd), free(x), free(ys), free(yd), free(row);
}

/* The AVX-512 table's 2:4 kernels without the VBMI2 ones that replace them on CPUs that have
 * VBMI2: the table refilled by the AVX-512 file's fill function (kernels/qdot_sp.c). */
#if defined(__x86_64__)
void slm_qdot_sp_fill_avx512(slm_kernels *k);
#endif
static slm_kernels g_novbmi;

int main(void) {
    const slm_kernels *sets[SLM_ISA_COUNT + 1];
    int nsets = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        g_tables[isa] = slm_kernels_get((slm_isa)isa);
        if (!g_tables[isa]) printf("qdot_sp: %s not supported here, skipped\n", slm_isa_name((slm_isa)isa));
        else sets[nsets++] = g_tables[isa];
    }
#if defined(__x86_64__)
    if (g_tables[SLM_ISA_AVX512]) {
        g_novbmi = *g_tables[SLM_ISA_AVX512];
        g_novbmi.name = "avx512 (no vbmi2)";
        slm_qdot_sp_fill_avx512(&g_novbmi);
        sets[nsets++] = &g_novbmi;
    }
#endif
    check_tables();
    slm_pool *pool = NULL;
    CHECK(slm_pool_create(2, &pool) == SLM_OK, "pool");
    static const int64_t ns_24[] = {32, 96, 576, 1536};
    static const int64_t ns_us[] = {64, 192, 576, 1536};
    static const int shapes[][2] = {{1, 1}, {3, 5}, {7, 9}, {5, 1}, {2, 70}, {9, 4}};
    for (int si = 0; si < nsets; si++) {
        const slm_kernels *k = sets[si];
        for (int i = 0; i < N_TYPES; i++) {
            const int t = type_at(i);
            const int64_t *ns = i < 2 ? ns_24 : ns_us;
            for (int j = 0; j < 4; j++) check_dots(k, t, ns[j]);
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_gemm(k, t, ns[s % 2 ? 1 : 2], shapes[s][0], shapes[s][1]);
            /* rows of several chunks of blocks (the packed gemm), an odd last block for 2:4 */
            check_gemm(k, t, i < 2 ? 4128 : 4160, 5, 6);
            check_dots(k, t, i < 2 ? 4128 : 4160);
            if (pool) check_matmul(k, pool, t);
        }
    }
    slm_pool_free(pool);
    return test_summary("qdot_sp");
}
