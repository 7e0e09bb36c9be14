/* test_quant_k.c - the K-quant quantizers (core/quant_k.h), checked through dtype.c's exact
 * dequantizers (themselves tested bit for bit against the gguf package in test_dtype.c).
 *
 * 1. Quality on Gaussian rows (sigma 1, 64 super-blocks): the relative error
 *    rmse(x - y) / rms(x) is below a per-format bound derived from the grid spacing, and
 *    below the error of a naive round-to-nearest quantizer written here (min/max or absmax
 *    per sub-block, with float scales that are not even quantized), which the search must
 *    beat. Bounds: a uniform quantizer with step D has rmse ~ D / sqrt(12), D = R / (levels - 1)
 *    for a sub-block spread over R. For G normal samples (sigma 1) the expected spread is
 *    the range max - min for the offset formats (3.53 for G = 16, 4.14 for G = 32) and
 *    twice the largest magnitude for the symmetric ones (4.15 for G = 16):
 *       q2_k  4 levels, G 16, offset:    3.53 / 3  / 3.464 = 0.340
 *       q3_k  8 levels, G 16, symmetric: 4.15 / 7  / 3.464 = 0.171
 *       q4_k 16 levels, G 32, offset:    4.14 / 15 / 3.464 = 0.0797
 *       q5_k 32 levels, G 32, offset:    4.14 / 31 / 3.464 = 0.0386
 *       q6_k 64 levels, G 16, symmetric: 4.15 / 63 / 3.464 = 0.0190
 *    These are what plain min/max (absmax) rounding with exact scales gives; the bounds are
 *    5% below them, since a least-squares search over the range must do better even with
 *    quantized sub-block scales, while a broken packing or scale fails them by far.
 * 2. The same rows with outliers (1 in 64 elements times 8): the error order
 *    q6_k < q5_k < q4_k < q3_k < q2_k, and every format beats the naive quantizer.
 * 3. Adversarial super-blocks: constants (positive, negative), zeros (exact zeros out), one
 *    huge value (kept within 1%, other super-blocks' bytes unchanged), tiny values 1e-30
 *    (finite output no larger than the input), NaN / Inf (finite output, no UB under UBSan).
 * 4. Importance weights: the imp-weighted error with weights is below the one without.
 * 5. Determinism: same bytes twice, and a row quantized whole equals it quantized block by
 *    block; the traits' from_float writes the same bytes; nothing is written past the row.
 * 6. Q8_K consistency: the kernels' vec_dot (scalar table and the detected one) of the
 *    quantized row with Q8_K activations is within the activation rounding bound of dot_f32:
 *    |dot_q - dot_f| <= sum over blocks of (amax_b / 127 / 2) * sum|y_e| + 1e-5 * sum|y_e x_e|. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/quant_k.h"
#include "kernels/qdot.h"
#include "test.h"

enum { QK = 256, NB = 64, N = QK * NB, MAX_BYTES = 210 * NB + 16 };

typedef struct {
    int type;
    int sub;        /* sub-block size */
    bool asym;
    int qlo, qhi;   /* quant range of the naive reference */
    double bound;   /* relative rmse bound on Gaussian data (see above) */
} fmt;

static const fmt fmts[] = {
    {SLM_DT_Q6_K, 16, false, -32, 31, 0.95 * 0.0190},
    {SLM_DT_Q5_K, 32, true, 0, 31, 0.95 * 0.0386},
    {SLM_DT_Q4_K, 32, true, 0, 15, 0.95 * 0.0797},
    {SLM_DT_Q3_K, 16, false, -4, 3, 0.95 * 0.171},
    {SLM_DT_Q2_K, 16, true, 0, 3, 0.95 * 0.340},
};
#define N_FMT (int)(sizeof fmts / sizeof fmts[0])

/* ---- deterministic random numbers ---------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3u;

static uint64_t rnd_u64(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double rnd_unit(void) { return ((double)(rnd_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static float rnd_gauss(void) {
    const double u = rnd_unit(), v = rnd_unit();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- helpers ------------------------------------------------------------------------------- */

static size_t row_bytes(int t, int64_t n) {
    size_t b = 0;
    slm_row_bytes((uint32_t)t, n, &b);
    return b;
}

/* Quantize with slm_quantize_k and dequantize with dtype.c's to_float. */
static void round_trip(int t, const float *x, const float *imp, float *y, int64_t n) {
    static uint8_t q[MAX_BYTES];
    CHECK(slm_quantize_k((uint32_t)t, x, q, n, imp), "quantize %s", slm_dtype_name((uint32_t)t));
    slm_dtype_get((uint32_t)t)->to_float(q, y, n);
}

static double rel_rmse(const float *x, const float *y, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        r += (double)x[i] * x[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static double weighted_err(const float *x, const float *y, const float *w, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* Naive round-to-nearest per sub-block with exact float scales: absmax mapped to the most
 * negative quant (symmetric) or [min, max] onto [0, qhi] (asymmetric). */
static void naive(const fmt *f, const float *x, float *y, int64_t n) {
    for (int64_t j = 0; j < n; j += f->sub) {
        const float *xs = x + j;
        float *ys = y + j;
        if (f->asym) {
            float lo = xs[0], hi = xs[0];
            for (int i = 1; i < f->sub; i++) {
                lo = fminf(lo, xs[i]);
                hi = fmaxf(hi, xs[i]);
            }
            const double d = (hi - lo) / f->qhi;
            for (int i = 0; i < f->sub; i++) {
                double q = d > 0 ? floor((xs[i] - lo) / d + 0.5) : 0;
                q = fmin(fmax(q, 0), f->qhi);
                ys[i] = (float)(lo + d * q);
            }
        } else {
            float xm = 0;
            for (int i = 0; i < f->sub; i++)
                if (fabsf(xs[i]) > fabsf(xm)) xm = xs[i];
            const double d = xm / (double)f->qlo;
            for (int i = 0; i < f->sub; i++) {
                double q = d != 0 ? floor(xs[i] / d + 0.5) : 0;
                q = fmin(fmax(q, f->qlo), f->qhi);
                ys[i] = (float)(d * q);
            }
        }
    }
}

static bool all_finite(const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(y[i])) return false;
    return true;
}

static float g_x[N], g_y[N], g_z[N], g_w[N];

/* ---- 1, 2: quality and order --------------------------------------------------------------- */

static void check_quality(void) {
    for (int i = 0; i < N; i++) g_x[i] = rnd_gauss();
    for (int k = 0; k < N_FMT; k++) {
        const fmt *f = &fmts[k];
        const char *name = slm_dtype_name((uint32_t)f->type);
        round_trip(f->type, g_x, NULL, g_y, N);
        naive(f, g_x, g_z, N);
        const double e = rel_rmse(g_x, g_y, N), en = rel_rmse(g_x, g_z, N);
        printf("  %s gaussian: rel rmse %.5f (naive %.5f, bound %.4f)\n", name, e, en, f->bound);
        CHECK(e < f->bound, "%s: gaussian rel rmse %.5f >= bound %.4f", name, e, f->bound);
        CHECK(e < en, "%s: gaussian rel rmse %.5f not below naive %.5f", name, e, en);
    }
    for (int i = 0; i < N; i++)
        if (rnd_u64() % 64 == 0) g_x[i] *= 8.0f;
    double prev = 0;
    for (int k = 0; k < N_FMT; k++) {
        const fmt *f = &fmts[k];
        const char *name = slm_dtype_name((uint32_t)f->type);
        round_trip(f->type, g_x, NULL, g_y, N);
        naive(f, g_x, g_z, N);
        const double e = rel_rmse(g_x, g_y, N), en = rel_rmse(g_x, g_z, N);
        printf("  %s outliers: rel rmse %.5f (naive %.5f)\n", name, e, en);
        CHECK(e < en, "%s: outlier rel rmse %.5f not below naive %.5f", name, e, en);
        CHECK(e > prev, "%s: error %.5f not above the previous (larger) format's %.5f", name, e, prev);
        prev = e;
    }
}

/* ---- 3: adversarial blocks ----------------------------------------------------------------- */

static void check_adversarial(void) {
    enum { M = 2 * QK };
    static float x[M], y[M], base[M];
    static uint8_t q[MAX_BYTES], qb[MAX_BYTES];
    for (int k = 0; k < N_FMT; k++) {
        const int t = fmts[k].type;
        const char *name = slm_dtype_name((uint32_t)t);
        const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
        const size_t nb = row_bytes(t, M);
        for (int sgn = -1; sgn <= 1; sgn += 2) { /* constants: f16 rounding of the scales only */
            for (int i = 0; i < M; i++) x[i] = 0.37f * (float)sgn;
            round_trip(t, x, NULL, y, M);
            CHECK(rel_rmse(x, y, M) < 2e-3, "%s: constant %g: rel rmse %g", name, x[0], rel_rmse(x, y, M));
        }
        memset(x, 0, sizeof x);
        round_trip(t, x, NULL, y, M);
        bool zero = true;
        for (int i = 0; i < M; i++) zero = zero && y[i] == 0.0f;
        CHECK(zero, "%s: zeros do not come back as zeros", name);

        /* one huge value in the first super-block */
        for (int i = 0; i < M; i++) base[i] = x[i] = rnd_gauss();
        x[77] = 1e4f;
        slm_quantize_k((uint32_t)t, base, qb, M, NULL);
        slm_quantize_k((uint32_t)t, x, q, M, NULL);
        tr->to_float(q, y, M);
        CHECK(all_finite(y, M), "%s: huge value: non-finite output", name);
        CHECK(fabsf(y[77] - 1e4f) < 100.0f, "%s: huge value 1e4 came back as %g", name, y[77]);
        CHECK(memcmp(q + nb / 2, qb + nb / 2, nb / 2) == 0, "%s: huge value changed another super-block",
              name);

        /* tiny values: below f16's range the scales round to zero */
        float amax = 0;
        for (int i = 0; i < M; i++) {
            x[i] = 1e-30f * rnd_gauss();
            amax = fmaxf(amax, fabsf(x[i]));
        }
        round_trip(t, x, NULL, y, M);
        bool small = all_finite(y, M);
        for (int i = 0; i < M; i++) small = small && fabsf(y[i]) <= amax;
        CHECK(small, "%s: tiny values: output not finite or larger than the input", name);

        /* NaN, infinities and values far past the f16 range */
        for (int i = 0; i < M; i++) x[i] = rnd_gauss();
        x[3] = NAN;
        x[100] = INFINITY;
        x[300] = -INFINITY;
        x[301] = 3e38f;
        x[500] = -NAN;
        round_trip(t, x, NULL, y, M);
        CHECK(all_finite(y, M), "%s: non-finite input gave non-finite output", name);
        CHECK(y[100] > 1e4f && y[300] < -1e4f, "%s: infinities not saturated (%g, %g)", name, y[100], y[300]);
    }
}

/* ---- 4: importance --------------------------------------------------------------------------- */

static void check_importance(void) {
    for (int i = 0; i < N; i++) {
        g_x[i] = rnd_gauss();
        g_w[i] = (float)exp(2.0 * rnd_gauss()); /* weights spanning a few orders of magnitude */
    }
    for (int k = 0; k < N_FMT; k++) {
        const int t = fmts[k].type;
        const char *name = slm_dtype_name((uint32_t)t);
        round_trip(t, g_x, NULL, g_y, N);
        round_trip(t, g_x, g_w, g_z, N);
        const double e0 = weighted_err(g_x, g_y, g_w, N), e1 = weighted_err(g_x, g_z, g_w, N);
        printf("  %s importance: weighted error %.4f -> %.4f\n", name, e0, e1);
        CHECK(e1 < 0.95 * e0, "%s: importance weights do not reduce the weighted error (%g vs %g)", name, e1,
              e0);
    }
}

/* ---- 5: determinism and API --------------------------------------------------------------------- */

static void check_determinism(void) {
    static uint8_t a[MAX_BYTES], b[MAX_BYTES];
    for (int i = 0; i < N; i++) g_x[i] = rnd_gauss();
    for (int k = 0; k < N_FMT; k++) {
        const int t = fmts[k].type;
        const char *name = slm_dtype_name((uint32_t)t);
        const size_t nb = row_bytes(t, N), bb = row_bytes(t, QK);
        memset(a, 0xA5, sizeof a);
        memset(b, 0x5A, sizeof b);
        slm_quantize_k((uint32_t)t, g_x, a, N, NULL);
        slm_dtype_get((uint32_t)t)->from_float(g_x, b, N);
        CHECK(memcmp(a, b, nb) == 0, "%s: from_float differs from slm_quantize_k", name);
        CHECK(a[nb] == 0xA5, "%s: wrote past the row", name);
        slm_quantize_k((uint32_t)t, g_x, b, N, NULL);
        CHECK(memcmp(a, b, nb) == 0, "%s: not repeatable", name);
        for (int j = 0; j < NB; j++) slm_quantize_k((uint32_t)t, g_x + j * QK, b + j * bb, QK, NULL);
        CHECK(memcmp(a, b, nb) == 0, "%s: whole row differs from block by block", name);
        CHECK(!slm_quantize_k((uint32_t)t, g_x, b, 100, NULL), "%s: n = 100 accepted", name);
    }
    CHECK(!slm_quantize_k(SLM_DT_Q4_0, g_x, a, QK, NULL), "q4_0 accepted by slm_quantize_k");
    CHECK(!slm_quantize_k(SLM_DT_Q8_K, g_x, a, QK, NULL), "q8_k accepted by slm_quantize_k");
}

/* ---- 6: Q8_K dot products ------------------------------------------------------------------------ */

static void check_dot(void) {
    static uint8_t w[MAX_BYTES], act[292 * NB];
    for (int i = 0; i < N; i++) {
        g_x[i] = rnd_gauss();
        g_z[i] = rnd_gauss() * (i % 97 == 0 ? 6.0f : 1.0f); /* activations */
    }
    const slm_kernels *tabs[2] = {slm_kernels_get(SLM_ISA_SCALAR), slm_kernels_get(slm_isa_detect())};
    for (int k = 0; k < N_FMT; k++) {
        const int t = fmts[k].type;
        const char *name = slm_dtype_name((uint32_t)t);
        const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
        slm_quantize_k((uint32_t)t, g_x, w, N, NULL);
        tr->to_float(w, g_y, N);
        const double ref = tr->dot_f32(w, g_z, N);
        double bound = 0;
        for (int j = 0; j < N; j += QK) {
            float amax = 0;
            double sy = 0, syx = 0;
            for (int i = j; i < j + QK; i++) {
                amax = fmaxf(amax, fabsf(g_z[i]));
                sy += fabs(g_y[i]);
                syx += fabs((double)g_y[i] * g_z[i]);
            }
            bound += amax / 127.0 / 2.0 * sy + 1e-5 * syx;
        }
        for (int s = 0; s < 2; s++) {
            const slm_kernels *kt = tabs[s];
            CHECK(kt && kt->vec_dot[t] && kt->quant_act[SLM_DT_Q8_K], "%s: no kernels", name);
            if (!kt || !kt->vec_dot[t] || !kt->quant_act[SLM_DT_Q8_K]) continue;
            kt->quant_act[SLM_DT_Q8_K](g_z, act, N);
            const double got = kt->vec_dot[t](w, act, N);
            CHECK(fabs(got - ref) <= bound, "%s %s: vec_dot %.6f vs dot_f32 %.6f (bound %.6f)", name, kt->name,
                  got, ref, bound);
        }
    }
}

int main(void) {
    check_quality();
    check_adversarial();
    check_importance();
    check_determinism();
    check_dot();
    return test_summary("quant_k");
}
