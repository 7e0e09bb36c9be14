/* test_codebook.c - the codebook formats (core/codebook.h) and their kernels.
 *
 *   1. names, ids, activation type and row sizes: 2 + k + n * bits / 8;
 *   2. quantized rows decoded by an independent decoder written here from the layout in
 *      codebook.h equal the dtype's to_float (and its indices slm_cb_index); levels are in [-127, 127]; every weight decodes to
 *      the nearest of the row's levels; the error of Gaussian rows is below the bound of each k;
 *      a row of k or fewer values on an exact int8 grid comes back exactly; the weighted
 *      quantizer matches heavy columns better; non-finite inputs are survived;
 *   3. for every kernel table this CPU runs: vec_dot equals the dequantize-then-dense reference
 *      (to_float of the row, f32 dot with the Q8_0 activations dequantized by the dtype table)
 *      within 1e-5 of the sum of |terms|; gemm equals vec_dot bit for bit on odd shapes with
 *      padded strides and sentinels around the outputs;
 *   4. slm_matmul over an slm_mat of each codebook type equals the dots. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/codebook.h"
#include "core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "test.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) {
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

static const uint32_t g_types[] = {SLM_DT_CB4, SLM_DT_CB8, SLM_DT_CB16};
static const int g_kk[] = {4, 8, 16}, g_bits[] = {2, 3, 4};
enum { N_MAX = 2048, ROW_MAX = 2 + 16 + N_MAX / 2 + 64 };

/* ---- the independent decoder ----------------------------------------------------------------- */

static int ref_index(const uint8_t *sub, int bits, int e) {
    if (bits == 4) return e < 16 ? (sub[e] & 15) : (sub[e - 16] >> 4);
    int v = (sub[e % 8] >> (2 * (e / 8))) & 3;
    if (bits == 3) {
        const uint32_t h = (uint32_t)sub[8] | (uint32_t)sub[9] << 8 | (uint32_t)sub[10] << 16 | (uint32_t)sub[11] << 24;
        v |= (int)((h >> e) & 1) << 2;
    }
    return v;
}

static void ref_decode(const uint8_t *row, int k, int bits, int64_t n, float *y) {
    const float s = slm_f16_to_f32((uint16_t)(row[0] | row[1] << 8));
    const int8_t *q = (const int8_t *)(row + 2);
    const uint8_t *idx = row + 2 + k;
    for (int64_t j = 0; j < n; j++) {
        const int i = ref_index(idx + (j / 32) * 4 * bits, bits, (int)(j % 32));
        y[j] = s * (float)q[i];
    }
}

/* ---- format --------------------------------------------------------------------------------- */

static void test_format(void) {
    static const char *names[] = {"cb4", "cb8", "cb16"};
    for (int t = 0; t < 3; t++) {
        CHECK(slm_dtype_from_name(names[t]) == (int)g_types[t], "%s resolves", names[t]);
        CHECK(!strcmp(slm_dtype_name(g_types[t]), names[t]), "name of %u", g_types[t]);
        CHECK(slm_act_type(g_types[t]) == SLM_DT_Q8_0, "%s takes q8_0 activations", names[t]);
        CHECK(slm_cb_type(g_kk[t]) == (int)g_types[t], "type for k=%d", g_kk[t]);
        size_t b = 0;
        CHECK(slm_row_bytes(g_types[t], 576, &b) && b == (size_t)(2 + g_kk[t] + 576 * g_bits[t] / 8),
              "%s: row of 576 is %zu bytes", names[t], b);
        CHECK(!slm_row_bytes(g_types[t], 48, &b), "%s: 48 is not a multiple of 32", names[t]);
    }
    CHECK(slm_cb_type(32) < 0 && slm_dtype_get(SLM_DT_CB_FIRST + 3) == NULL, "no other codebook types");
}

static float g_x[N_MAX], g_y[N_MAX], g_z[N_MAX];
static uint8_t g_row[ROW_MAX];

static void test_roundtrip(void) {
    static const int64_t ns[] = {32, 96, 576, 1536};
    static const double bound[] = {0.36, 0.20, 0.115}; /* rel RMS for Gaussian rows */
    for (int t = 0; t < 3; t++) {
        const slm_dtype_traits *tr = slm_dtype_get(g_types[t]);
        double e2 = 0, r2 = 0;
        int near_bad = 0, lv_bad = 0, dec_bad = 0;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (int rep = 0; rep < 8; rep++) {
                const int64_t n = ns[ni];
                const float scale = rep == 0 ? 1e-3f : rep == 1 ? 50.0f : 0.05f;
                for (int64_t j = 0; j < n; j++) g_x[j] = scale * rng_normal();
                tr->from_float(g_x, g_row, n);
                ref_decode(g_row, g_kk[t], g_bits[t], n, g_y);
                tr->to_float(g_row, g_z, n);
                for (int64_t j = 0; j < n; j++) {
                    dec_bad += g_y[j] != g_z[j];
                    const uint8_t *idx = g_row + 2 + g_kk[t] + (j / 32) * 4 * g_bits[t];
                    dec_bad += slm_cb_index(g_types[t], g_row, j) != ref_index(idx, g_bits[t], (int)(j % 32));
                }
                const float s = slm_f16_to_f32((uint16_t)(g_row[0] | g_row[1] << 8));
                const int8_t *q = (const int8_t *)(g_row + 2);
                for (int i = 0; i < g_kk[t]; i++) lv_bad += q[i] < -127;
                for (int64_t j = 0; j < n; j++) {
                    const double d = fabs((double)g_x[j] - g_y[j]);
                    for (int i = 0; i < g_kk[t]; i++)
                        if (fabs((double)g_x[j] - (double)(s * (float)q[i])) < d - 1e-6 * fabs((double)g_x[j]) - 1e-12) near_bad++;
                    if (n >= 576) {
                        e2 += d * d;
                        r2 += (double)g_x[j] * g_x[j];
                    }
                }
            }
        CHECK(dec_bad == 0, "%s: to_float differs from the independent decoder at %d weights", slm_dtype_name(g_types[t]), dec_bad);
        CHECK(lv_bad == 0, "%s: %d levels out of [-127, 127]", slm_dtype_name(g_types[t]), lv_bad);
        CHECK(near_bad == 0, "%s: %d weights not at their nearest level", slm_dtype_name(g_types[t]), near_bad);
        const double rel = sqrt(e2 / r2);
        CHECK(rel < bound[t], "%s: rel RMS error %.4f >= %.3f", slm_dtype_name(g_types[t]), rel, bound[t]);

        /* k values on the grid of 2^-7 with max |q| = 127: exact */
        int8_t lv[16];
        for (int i = 0; i < g_kk[t]; i++) lv[i] = (int8_t)(i == 0 ? -127 : (int)(rng_next() % 255) - 127);
        for (int64_t j = 0; j < 576; j++) g_x[j] = (float)lv[rng_next() % (uint64_t)g_kk[t]] * 0x1p-7f;
        g_x[5] = -127 * 0x1p-7f;
        tr->from_float(g_x, g_row, 576);
        tr->to_float(g_row, g_y, 576);
        int exact = 1;
        for (int j = 0; j < 576; j++) exact &= g_x[j] == g_y[j];
        CHECK(exact, "%s: k grid values come back exactly", slm_dtype_name(g_types[t]));

        /* weighted: heavy columns are matched more closely than unweighted */
        float w[576];
        for (int j = 0; j < 576; j++) {
            g_x[j] = rng_normal();
            w[j] = j % 8 == 0 ? 100.0f : 1.0f;
        }
        slm_cb_quantize_row(g_types[t], g_x, NULL, g_row, 576);
        const double eu = slm_cb_row_error(g_types[t], g_x, w, g_row, 576);
        slm_cb_quantize_row(g_types[t], g_x, w, g_row, 576);
        const double ew = slm_cb_row_error(g_types[t], g_x, w, g_row, 576);
        CHECK(ew < eu, "%s: weighted error %.4g not below unweighted %.4g", slm_dtype_name(g_types[t]), ew, eu);

        /* non-finite inputs: no crash, finite output */
        for (int j = 0; j < 64; j++) g_x[j] = j % 3 == 0 ? NAN : j % 3 == 1 ? INFINITY : 1.0f;
        tr->from_float(g_x, g_row, 64);
        tr->to_float(g_row, g_y, 64);
        int fin = 1;
        for (int j = 0; j < 64; j++) fin &= isfinite(g_y[j]) != 0;
        CHECK(fin, "%s: non-finite input gives finite weights", slm_dtype_name(g_types[t]));
    }
}

/* ---- kernels -------------------------------------------------------------------------------- */

enum { NR = 17, NC = 9, WS_PAD = 40, XS_PAD = 20 };
static uint8_t g_w[NR * (ROW_MAX + WS_PAD)];
static uint8_t g_a[NC * (N_MAX / 32 * 34 + XS_PAD)];
static float g_xs[NC][N_MAX];

static void test_kernels(void) {
    static const int64_t ns[] = {32, 64, 96, 576, 1536};
    const slm_dtype_traits *q8 = slm_dtype_get(SLM_DT_Q8_0);
    const slm_kernels *ks = slm_kernels_get(SLM_ISA_SCALAR);
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = slm_kernels_get((slm_isa)isa);
        if (!k) continue;
        for (int t = 0; t < 3; t++) {
            const uint32_t ty = g_types[t];
            const slm_dtype_traits *tr = slm_dtype_get(ty);
            CHECK(k->vec_dot[ty] && k->gemm[ty] && k->quant_act[SLM_DT_Q8_0], "%s: %s has kernels", k->name, tr->name);
            if (!k->vec_dot[ty] || !k->gemm[ty]) continue;
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                const int64_t n = ns[ni];
                size_t rb;
                slm_row_bytes(ty, n, &rb);
                const size_t ws = rb + WS_PAD, xs = (size_t)(n / 32) * 34 + XS_PAD;
                for (int r = 0; r < NR; r++) {
                    for (int64_t j = 0; j < n; j++) g_x[j] = (r % 5 == 4 ? 30.0f : 1.0f) * rng_normal();
                    if (r == 3) memset(g_x, 0, sizeof(float) * (size_t)n);
                    tr->from_float(g_x, g_w + (size_t)r * ws, n);
                }
                for (int c = 0; c < NC; c++) {
                    for (int64_t j = 0; j < n; j++) g_xs[c][j] = c == 2 ? 0.0f : (c == 1 ? 1e3f : 1.0f) * rng_normal();
                    if (c == 4) g_xs[c][7] = 1e4f; /* one extreme value per block */
                    k->quant_act[SLM_DT_Q8_0](g_xs[c], g_a + (size_t)c * xs, n);
                }
                int ref_bad = 0, twin_bad = 0;
                for (int r = 0; r < NR; r++)
                    for (int c = 0; c < NC; c++) {
                        const uint8_t *wr = g_w + (size_t)r * ws, *xr = g_a + (size_t)c * xs;
                        tr->to_float(wr, g_y, n);
                        q8->to_float(xr, g_z, n);
                        double ref = 0, mag = 0;
                        for (int64_t j = 0; j < n; j++) {
                            ref += (double)g_y[j] * g_z[j];
                            mag += fabs((double)g_y[j] * g_z[j]);
                        }
                        const double got = k->vec_dot[ty](wr, xr, n);
                        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30)) {
                            if (ref_bad++ < 3)
                                fprintf(stderr, "  %s %s n=%lld r=%d c=%d: %.9g vs reference %.9g\n", k->name, tr->name,
                                        (long long)n, r, c, got, ref);
                        }
                        const double tw = ks->vec_dot[ty](wr, xr, n);
                        if (!(fabs(got - tw) <= 1e-5 * mag + 1e-30)) twin_bad++;
                    }
                CHECK(ref_bad == 0, "%s %s n=%lld: %d dots differ from the dequantized reference", k->name, tr->name,
                      (long long)n, ref_bad);
                CHECK(twin_bad == 0, "%s %s n=%lld: %d dots differ from the scalar twin", k->name, tr->name,
                      (long long)n, twin_bad);

                static const int shapes[][2] = {{1, 1}, {3, 5}, {17, 9}, {5, 1}, {2, 7}, {1, 9}};
                for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                    const int nr = shapes[si][0], nc = shapes[si][1];
                    const size_t ldy = (size_t)nr + 3;
                    float y[(NR + 3) * (NC + 1) + 8];
                    for (size_t i = 0; i < sizeof y / sizeof *y; i++) y[i] = -777.0f;
                    k->gemm[ty](n, g_w, ws, nr, g_a, xs, nc, y + 1, ldy);
                    int bad = 0, sent = 0;
                    for (int c = 0; c < nc; c++)
                        for (size_t r = 0; r < ldy; r++) {
                            const float v = y[1 + (size_t)c * ldy + r];
                            if (r < (size_t)nr) {
                                const float d = k->vec_dot[ty](g_w + r * ws, g_a + (size_t)c * xs, n);
                                bad += memcmp(&v, &d, sizeof v) != 0;
                            } else {
                                sent += v != -777.0f;
                            }
                        }
                    sent += y[0] != -777.0f;
                    CHECK(bad == 0 && sent == 0, "%s %s n=%lld gemm %dx%d: %d differ from vec_dot, %d sentinels hit",
                          k->name, tr->name, (long long)n, nr, nc, bad, sent);
                }
            }
        }
    }
}

static void test_matmul(void) {
    enum { ROWS = 70, COLS = 576, TOK = 5 };
    static uint8_t wbuf[ROWS * (2 + 16 + COLS / 2)];
    static float xin[TOK][COLS], y[TOK * ROWS], act[COLS];
    static uint8_t aq[COLS / 32 * 34];
    slm_pool *pool = NULL;
    CHECK(slm_pool_create(2, &pool) == SLM_OK, "pool");
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = slm_kernels_get((slm_isa)isa);
        if (!k) continue;
        for (int t = 0; t < 3; t++) {
            const uint32_t ty = g_types[t];
            const slm_dtype_traits *tr = slm_dtype_get(ty);
            size_t rb;
            slm_row_bytes(ty, COLS, &rb);
            for (int r = 0; r < ROWS; r++) {
                for (int j = 0; j < COLS; j++) act[j] = rng_normal();
                tr->from_float(act, wbuf + (size_t)r * rb, COLS);
            }
            for (int tk = 0; tk < TOK; tk++)
                for (int j = 0; j < COLS; j++) xin[tk][j] = rng_normal();
            slm_mm mm;
            CHECK(slm_mm_init(&mm, pool, k, TOK, COLS) == SLM_OK, "mm init");
            const slm_mat m = {.data = wbuf, .type = ty, .rows = ROWS, .cols = COLS, .row_bytes = rb};
            for (int nt = 1; nt <= TOK; nt += TOK - 1) {
                slm_matmul(&mm, &m, &xin[0][0], nt, y);
                int bad = 0;
                for (int tk = 0; tk < nt; tk++) {
                    k->quant_act[SLM_DT_Q8_0](xin[tk], aq, COLS);
                    for (int r = 0; r < ROWS; r++) {
                        const float d = k->vec_dot[ty](wbuf + (size_t)r * rb, aq, COLS);
                        bad += memcmp(&d, &y[(size_t)tk * ROWS + (size_t)r], sizeof d) != 0;
                    }
                }
                CHECK(bad == 0, "%s %s: slm_matmul of %d tokens: %d outputs differ from vec_dot", k->name, tr->name, nt, bad);
            }
            slm_mm_free(&mm);
        }
    }
    slm_pool_free(pool);
}

int main(void) {
    test_format();
    test_roundtrip();
    test_kernels();
    test_matmul();
    return test_summary("codebook");
}
