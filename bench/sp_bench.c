/* sp_bench.c - sparse weight formats against dense q8_0 / q4_0 of the same matrix.
 *
 *   build/sp_bench [--json FILE] [--reps N] [--isa NAME]
 *
 * For the fixture's matrix shapes (1536 x 576 as gate/up, 576 x 1536 as down), a matrix of
 * random normal weights is quantized to q8_0, q4_0, s24q8, s24q4 and the unstructured classes
 * (q8sC, q4sC) nearest to densities 0.1 .. 0.9 (the quantizer keeps the largest weights of
 * each row). Each
 * sparse type is validated first (gemm against the scalar twin, relative difference printed),
 * then timed on one thread with the chosen kernel set (default: the best this CPU runs):
 * y = W x over the whole matrix through the table's gemm in tiles of 64 rows, as slm_matmul
 * does, for 1 activation row (gemv, as when generating) and 64 (gemm, prompt processing); the
 * median over --reps runs. Prints a table, the density below which unstructured q8 beats
 * q8_0 (and q4 beats q4_0; linear between measured densities; in the JSON 1 = at every density
 * measured, -1 = at none), and JSON with --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "core/sparse.h"
#include "kernels/qdot.h"

enum { TOK = 64, ROW_TILE = 64, N_DENS = 9, MAX_TYPES = 4 + 2 * N_DENS, MAX_REPS = 101 };

typedef struct {
    int64_t rows, cols;
} shape;
static const shape g_shapes[] = {{1536, 576}, {576, 1536}};

typedef struct {
    char type[16];
    double density; /* stored fraction of weights (1 for dense) */
    double bpw;     /* bits per weight */
    double gemv_us, gemm_us, rel_diff;
} result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t g_rng = 88172645463325252ull;
static float rnd_normal(void) { /* Box-Muller on xorshift64 */
    double u[2];
    for (int i = 0; i < 2; i++) {
        g_rng ^= g_rng << 13;
        g_rng ^= g_rng >> 7;
        g_rng ^= g_rng << 17;
        u[i] = ((double)(g_rng >> 11) + 1.0) * 0x1.0p-53;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static volatile float g_sink;

/* y = W x for nc activation rows, the way slm_matmul runs it on one thread */
static void product(slm_gemm_fn g, const shape *s, const uint8_t *w, size_t wb, const uint8_t *x, size_t xb, int nc,
                    float *y) {
    for (int64_t r = 0; r < s->rows; r += ROW_TILE) {
        const int nr = (int)(s->rows - r < ROW_TILE ? s->rows - r : ROW_TILE);
        g(s->cols, w + (size_t)r * wb, wb, nr, x, xb, nc, y + r, (size_t)s->rows);
    }
}

/* median microseconds of one product */
static double time_product(slm_gemm_fn g, const shape *s, const uint8_t *w, size_t wb, const uint8_t *x, size_t xb,
                           int nc, float *y, int reps) {
    double t[MAX_REPS];
    const int inner = nc == 1 ? 8 : 1;
    product(g, s, w, wb, x, xb, nc, y); /* warm the caches */
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        for (int k = 0; k < inner; k++) product(g, s, w, wb, x, xb, nc, y);
        t[r] = (now_s() - t0) * 1e6 / inner;
        g_sink = y[0];
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

/* density at which the sparse time (rising with density) crosses the dense time; res[first..]
 * are the unstructured classes by increasing density. -1: sparse never faster; 1: always. */
static double crossover(const result *res, int first, double dense_us, bool gemm) {
    double prev_d = 0.0, prev_t = 0.0;
    bool have_prev = false;
    for (int i = first; i < first + N_DENS; i++) {
        const double t = gemm ? res[i].gemm_us : res[i].gemv_us, d = res[i].density;
        if (t >= dense_us) {
            if (!have_prev) return -1.0;
            return prev_d + (d - prev_d) * (dense_us - prev_t) / (t - prev_t);
        }
        prev_d = d, prev_t = t, have_prev = true;
    }
    return 1.0;
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int reps = 21, isa = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = slm_isa_from_name(argv[++i]);
        else {
            fprintf(stderr, "usage: sp_bench [--json FILE] [--reps N] [--isa scalar|avx2|avx512]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    if (isa < 0) isa = (int)slm_isa_detect();
    const slm_kernels *k = slm_kernels_get((slm_isa)isa), *scalar = slm_kernels_get(SLM_ISA_SCALAR);
    if (!k) {
        fprintf(stderr, "sp_bench: kernel set not available on this CPU\n");
        return 1;
    }
    const int64_t max_el = 1536 * 576;
    float *src = malloc((size_t)max_el * sizeof *src), *act = malloc((size_t)TOK * 1536 * sizeof *act);
    float *y = malloc((size_t)TOK * 1536 * sizeof *y), *ys = malloc((size_t)TOK * 1536 * sizeof *ys);
    uint8_t *w = malloc((size_t)max_el * 2), *x = malloc((size_t)TOK * 1536 * 2);
    if (!src || !act || !y || !ys || !w || !x) {
        fprintf(stderr, "sp_bench: out of memory\n");
        return 1;
    }
    int types[MAX_TYPES] = {SLM_DT_Q8_0, SLM_DT_Q4_0, slm_sp_24_type(8), slm_sp_24_type(4)};
    for (int i = 0; i < N_DENS; i++) {
        const int c = (int)lround((double)(i + 1) / 10.0 * 64.0);
        types[4 + i] = SLM_SP_Q8S_FIRST + c - 1;
        types[4 + N_DENS + i] = SLM_SP_Q4S_FIRST + c - 1;
    }
    result res[2][MAX_TYPES];
    double cross[2][4]; /* q8 vs q8_0 gemv, gemm; q4 vs q4_0 gemv, gemm */
    int bad = 0;
    printf("kernel set %s, 1 thread, median of %d; gemv = 1 activation row, gemm = %d rows; us per product\n",
           k->name, reps, TOK);
    for (size_t si = 0; si < 2; si++) {
        const shape *s = &g_shapes[si];
        for (int64_t i = 0; i < s->rows * s->cols; i++) src[i] = rnd_normal();
        for (int64_t i = 0; i < TOK * s->cols; i++) act[i] = rnd_normal();
        size_t xb = 0;
        slm_row_bytes(SLM_DT_Q8_0, s->cols, &xb);
        for (int c = 0; c < TOK; c++) k->quant_act[SLM_DT_Q8_0](act + c * s->cols, x + (size_t)c * xb, s->cols);
        printf("\n%lld x %lld\n%-7s %7s %6s %10s %10s %10s %10s %10s\n", (long long)s->rows, (long long)s->cols,
               "type", "density", "bpw", "gemv us", "gemm us", "gemv/q8_0", "gemm/q8_0", "rel diff");
        for (int ti = 0; ti < MAX_TYPES; ti++) {
            const int t = types[ti];
            const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
            size_t wb = 0;
            if (!tr || !slm_row_bytes((uint32_t)t, s->cols, &wb)) return 1;
            for (int64_t r = 0; r < s->rows; r++) tr->from_float(src + r * s->cols, w + (size_t)r * wb, s->cols);
            slm_sp_format f;
            double density = 1.0;
            if (slm_sp_format_of((uint32_t)t, &f)) density = (double)slm_sp_capacity(&f, s->cols) / (double)s->cols;
            /* validate against the scalar twin */
            product(k->gemm[t], s, w, wb, x, xb, TOK, y);
            product(scalar->gemm[t], s, w, wb, x, xb, TOK, ys);
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < TOK * s->rows; i++) {
                num += fabs((double)y[i] - (double)ys[i]);
                den += fabs((double)ys[i]);
            }
            const double rel = den > 0.0 ? num / den : num;
            if (!(rel < 1e-5)) {
                fprintf(stderr, "sp_bench: %s %s differs from scalar (rel %.3g)\n", k->name, tr->name, rel);
                bad = 1;
            }
            result *o = &res[si][ti];
            snprintf(o->type, sizeof o->type, "%s", tr->name);
            o->density = density;
            o->bpw = 8.0 * (double)wb / (double)s->cols;
            o->gemv_us = time_product(k->gemm[t], s, w, wb, x, xb, 1, y, reps);
            o->gemm_us = time_product(k->gemm[t], s, w, wb, x, xb, TOK, y, reps);
            o->rel_diff = rel;
            printf("%-7s %7.3f %6.2f %10.1f %10.1f %10.2f %10.2f %10.2g\n", o->type, o->density, o->bpw, o->gemv_us,
                   o->gemm_us, o->gemv_us / res[si][0].gemv_us, o->gemm_us / res[si][0].gemm_us, rel);
        }
        cross[si][0] = crossover(res[si], 4, res[si][0].gemv_us, false);
        cross[si][1] = crossover(res[si], 4, res[si][0].gemm_us, true);
        cross[si][2] = crossover(res[si], 4 + N_DENS, res[si][1].gemv_us, false);
        cross[si][3] = crossover(res[si], 4 + N_DENS, res[si][1].gemm_us, true);
        for (int m = 0; m < 4; m++) {
            const double d = cross[si][m];
            printf("%s: unstructured %s: ", m % 2 ? "gemm" : "gemv", m < 2 ? "q8 vs q8_0" : "q4 vs q4_0");
            if (d >= 1.0) printf("faster at every density measured\n");
            else if (d < 0.0) printf("slower at every density measured\n");
            else printf("faster below density %.3f\n", d);
        }
    }
    if (json) {
        FILE *fj = fopen(json, "w");
        if (!fj) {
            fprintf(stderr, "sp_bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(fj, "{\"isa\": \"%s\", \"threads\": 1, \"reps\": %d, \"tokens_gemm\": %d, \"shapes\": [\n", k->name,
                reps, TOK);
        for (size_t si = 0; si < 2; si++) {
            fprintf(fj,
                    "  {\"rows\": %lld, \"cols\": %lld, \"crossover_gemv\": %.4f, \"crossover_gemm\": %.4f, "
                    "\"crossover_q4_gemv\": %.4f, \"crossover_q4_gemm\": %.4f, \"results\": [\n",
                    (long long)g_shapes[si].rows, (long long)g_shapes[si].cols, cross[si][0], cross[si][1], cross[si][2],
                    cross[si][3]);
            for (int ti = 0; ti < MAX_TYPES; ti++) {
                const result *o = &res[si][ti];
                fprintf(fj,
                        "    {\"type\": \"%s\", \"density\": %.4f, \"bpw\": %.3f, \"gemv_us\": %.2f, "
                        "\"gemm_us\": %.2f, \"rel_diff\": %.3g}%s\n",
                        o->type, o->density, o->bpw, o->gemv_us, o->gemm_us, o->rel_diff,
                        ti + 1 < MAX_TYPES ? "," : "");
            }
            fprintf(fj, "  ]}%s\n", si + 1 < 2 ? "," : "");
        }
        fprintf(fj, "]}\n");
        if (fclose(fj) != 0) {
            fprintf(stderr, "sp_bench: error writing %s\n", json);
            return 1;
        }
        printf("wrote %s\n", json);
    }
    free(src), free(act), free(y), free(ys), free(w), free(x);
    return bad;
}
