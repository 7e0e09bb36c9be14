/* gq_bench.c - row dots of the group formats against the legacy block formats, per kernel set.
 *
 *   build/gq_bench [--json FILE] [--reps N]
 *
 * For each weight type (q4_0, q4_1, q8_0, q4g128, q4g128a, q4g64a, q3g128, q2g64a, q8g32, q8g32a,
 * q8g128), row length
 * (1536 and 576: the fixture's hidden size, which leaves a short last group of 64 for groups
 * of 128) and kernel set this CPU runs: ROWS weight rows quantized from random values and
 * activation rows quantized by the set's own quantizer. Each set is validated first against
 * the scalar kernels (relative difference printed), then timed: the median over --reps runs
 * of ns per row dot, for vec_dot over all rows and gemm of ROWS x 1 (one activation row, as
 * when generating), and for gemm of ROWS x COLS (ns per row x activation-row dot, as in prompt
 * processing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "kernels/qdot.h"

enum { ROWS = 64, COLS = 64, N_MAX = 1536, MAX_RESULTS = 96 };

static const char *const g_types[] = {"q4_0", "q4_1", "q8_0", "q4g128", "q4g128a", "q4g64a", "q3g128",
                                      "q2g64a", "q8g32", "q8g32a", "q8g128"};
static const int64_t g_ns[] = {1536, 576};

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
static float rnd_f(void) { /* [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)(g_rng >> 40) / 8388608.0f - 1.0f;
}

typedef struct {
    const char *type, *isa;
    int64_t n;
    double dot_ns, gemm1_ns, gemm_ns, rel_diff;
} result;

static volatile float g_sink;

/* median ns per row dot of vec_dot over all rows */
static double time_dot(slm_vec_dot_fn dot, const uint8_t *w, size_t wb, const uint8_t *x, int64_t n, int reps) {
    double t[101];
    const int inner = 64;
    for (int r = 0; r < reps; r++) {
        float s = 0.0f;
        const double t0 = now_s();
        for (int k = 0; k < inner; k++)
            for (int i = 0; i < ROWS; i++) s += dot(w + (size_t)i * wb, x, n);
        t[r] = (now_s() - t0) * 1e9 / (double)(inner * ROWS);
        g_sink = s;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

/* median ns per row x activation-row dot of a ROWS x nc gemm (nc = 1: as when generating) */
static double time_gemm(slm_gemm_fn gemm, const uint8_t *w, size_t wb, const uint8_t *x, size_t xb, int64_t n,
                        int nc, float *y, int reps) {
    double t[101];
    const int inner = nc == 1 ? 64 : 1;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        for (int k = 0; k < inner; k++) gemm(n, w, wb, ROWS, x, xb, nc, y, ROWS);
        t[r] = (now_s() - t0) * 1e9 / (double)(ROWS * nc * inner);
        g_sink = y[0];
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int reps = 21;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: gq_bench [--json FILE] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > 101) reps = 101;
    const slm_kernels *scalar = slm_kernels_get(SLM_ISA_SCALAR);
    static float src[N_MAX], y[ROWS * COLS], ys[ROWS * COLS];
    static uint8_t w[ROWS * N_MAX * 2], x[COLS * N_MAX * 2];
    result res[MAX_RESULTS];
    int nres = 0, bad = 0;
    printf("%-8s %6s %-7s %12s %12s %12s %10s\n", "type", "n", "isa", "dot ns/row", "gemm1 ns/row", "gemm ns/dot",
           "rel diff");
    for (size_t ti = 0; ti < sizeof g_types / sizeof g_types[0]; ti++) {
        const int t = slm_dtype_from_name(g_types[ti]);
        const slm_dtype_traits *tr = t >= 0 ? slm_dtype_get((uint32_t)t) : NULL;
        const int at = t >= 0 ? slm_act_type((uint32_t)t) : -1;
        if (!tr || !tr->from_float || at < 0) {
            fprintf(stderr, "gq_bench: type %s not available\n", g_types[ti]);
            return 1;
        }
        for (size_t ni = 0; ni < sizeof g_ns / sizeof g_ns[0]; ni++) {
            const int64_t n = g_ns[ni];
            size_t wb = 0, xb = 0;
            if (!slm_row_bytes((uint32_t)t, n, &wb) || !slm_row_bytes((uint32_t)at, n, &xb)) return 1;
            for (int r = 0; r < ROWS; r++) {
                for (int64_t i = 0; i < n; i++) src[i] = 0.05f * rnd_f();
                tr->from_float(src, w + (size_t)r * wb, n);
            }
            for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
                const slm_kernels *k = slm_kernels_get((slm_isa)isa);
                if (!k || !k->vec_dot[t] || !k->gemm[t] || !k->quant_act[at]) continue;
                for (int c = 0; c < COLS; c++) {
                    for (int64_t i = 0; i < n; i++) src[i] = rnd_f();
                    k->quant_act[at](src, x + (size_t)c * xb, n);
                }
                /* validate: this set's gemm and vec_dot against the scalar kernels, same bytes */
                k->gemm[t](n, w, wb, ROWS, x, xb, COLS, y, ROWS);
                scalar->gemm[t](n, w, wb, ROWS, x, xb, COLS, ys, ROWS);
                double num = 0.0, den = 0.0;
                for (int i = 0; i < ROWS * COLS; i++) {
                    num += fabs((double)y[i] - (double)ys[i]);
                    den += fabs((double)ys[i]);
                }
                for (int r = 0; r < ROWS; r++) {
                    const float a = k->vec_dot[t](w + (size_t)r * wb, x, n);
                    num += fabs((double)a - (double)ys[r]);
                    den += fabs((double)ys[r]);
                }
                const double rel = den > 0.0 ? num / den : num;
                if (!(rel < 1e-4)) {
                    fprintf(stderr, "gq_bench: %s %s n=%lld differs from scalar (rel %.3g)\n", k->name, g_types[ti],
                            (long long)n, rel);
                    bad = 1;
                }
                const double dns = time_dot(k->vec_dot[t], w, wb, x, n, reps);
                const double gns = time_gemm(k->gemm[t], w, wb, x, xb, n, COLS, y, reps);
                const double g1ns = time_gemm(k->gemm[t], w, wb, x, xb, n, 1, y, reps);
                printf("%-8s %6lld %-7s %12.1f %12.1f %12.1f %10.2g\n", g_types[ti], (long long)n, k->name, dns,
                       g1ns, gns, rel);
                if (nres < MAX_RESULTS) res[nres++] = (result){g_types[ti], k->name, n, dns, g1ns, gns, rel};
            }
        }
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "gq_bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\"rows\": %d, \"cols\": %d, \"reps\": %d, \"results\": [\n", ROWS, COLS, reps);
        for (int i = 0; i < nres; i++)
            fprintf(f,
                    "  {\"type\": \"%s\", \"n\": %lld, \"isa\": \"%s\", \"dot_ns_per_row\": %.2f, "
                    "\"gemm1_ns_per_row\": %.2f, \"gemm_ns_per_dot\": %.2f, \"rel_diff\": %.3g}%s\n",
                    res[i].type, (long long)res[i].n, res[i].isa, res[i].dot_ns, res[i].gemm1_ns, res[i].gemm_ns,
                    res[i].rel_diff,
                    i + 1 < nres ? "," : "");
        fprintf(f, "]}\n");
        if (fclose(f) != 0) {
            fprintf(stderr, "gq_bench: error writing %s\n", json);
            return 1;
        }
        printf("wrote %s\n", json);
    }
    return bad;
}
