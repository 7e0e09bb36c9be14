/* test_qdot_k.c - k-quant dot-product kernels (Q2_K .. Q6_K against Q8_K activations) and the
 * Q8_K activation quantizer, in every kernel table this CPU can run.
 *
 * 1. Q8_K quantizer: the scalar table's bytes equal an independent implementation of the
 *    reference rule written here; every SIMD table's bytes equal the scalar bytes (including
 *    NaN/Inf input); bsums equal the sums of the quants; nothing is written past the row.
 * 2. vec_dot of every table against the scalar twin, on the same quantized activations: the
 *    integer parts are exact, only the float summation order differs, so
 *    |simd - scalar| <= 1e-5 * sum|w_e * x_e| (w, x dequantized).
 * 3. scalar vec_dot against dtype.c's dot_f32 of the same weights with the dequantized Q8_K
 *    activations (d * q): the same tolerance, 1e-5 * sum|w_e * x_e|.
 * 4. every available table has a vec_dot for all five k-quant types and a Q8_K quantizer.
 * Weights are random bytes with sane f16 scales (|d|, dmin in 0.01..0.1), plus all-ones bytes
 * (the largest quants); activations are random, tiny, large, zero, negative-only, constant. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "kernels/qdot.h"
#include "test.h"

enum { QK = 256, Q8K_BYTES = 292 };

static const int k_types[] = {SLM_DT_Q2_K, SLM_DT_Q3_K, SLM_DT_Q4_K, SLM_DT_Q5_K, SLM_DT_Q6_K};
static const int64_t k_sizes[] = {256, 512, 1536, 4096, 256 * 7};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])
#define N_SIZES (int)(sizeof k_sizes / sizeof k_sizes[0])
#define MAX_N 4096

static const double TOL = 1e-5; /* relative to sum |w_e * x_e| */

/* ---- deterministic random numbers ---------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd_u64(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float rnd_unit(void) { return (float)((rnd_u64() >> 40) * (1.0 / 16777216.0)); } /* [0, 1) */
static float rnd_sym(void) { return 2.0f * rnd_unit() - 1.0f; }                         /* [-1, 1) */

/* ---- weights ----------------------------------------------------------------------------- */

/* Byte offsets of the f16 scale fields per type: d first, dmin second (-1: none). */
static void scale_offsets(int t, int *od, int *om) {
    switch (t) {
    case SLM_DT_Q2_K: *od = 80; *om = 82; break;
    case SLM_DT_Q3_K: *od = 108; *om = -1; break;
    case SLM_DT_Q4_K: *od = 0; *om = 2; break;
    case SLM_DT_Q5_K: *od = 0; *om = 2; break;
    default: *od = 208; *om = -1; break; /* Q6_K */
    }
}

static void put_f16(uint8_t *p, float v) {
    const uint16_t h = slm_f32_to_f16(v);
    memcpy(p, &h, sizeof h);
}

/* Random valid blocks of type t for n elements; all_ones: every quant byte 0xff. */
static void make_weights(int t, int64_t n, uint8_t *w, int all_ones) {
    const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
    const int64_t nb = n / QK;
    int od, om;
    scale_offsets(t, &od, &om);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * tr->block_bytes;
        for (size_t i = 0; i < tr->block_bytes; i++) blk[i] = all_ones ? 0xff : (uint8_t)rnd_u64();
        const float d = 0.01f + 0.09f * rnd_unit();
        put_f16(blk + od, (rnd_u64() & 1) ? d : -d);
        if (om >= 0) put_f16(blk + om, 0.01f + 0.09f * rnd_unit());
    }
}

/* ---- activations --------------------------------------------------------------------------- */

enum { ACT_RANDOM, ACT_TINY, ACT_LARGE, ACT_ZERO, ACT_NEGATIVE, ACT_CONST_NEG, ACT_MIXED, ACT_COUNT };
static const char *k_act_names[ACT_COUNT] = {"random", "tiny", "large", "zero", "negative", "const-neg", "mixed"};

static void make_acts(int kind, int64_t n, float *x) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case ACT_RANDOM: x[i] = rnd_sym(); break;
        case ACT_TINY: x[i] = 1e-30f * rnd_sym(); break;
        case ACT_LARGE: x[i] = 1e6f * rnd_sym(); break;
        case ACT_ZERO: x[i] = 0.0f; break;
        case ACT_NEGATIVE: x[i] = -rnd_unit() - 1e-3f; break;
        case ACT_CONST_NEG: x[i] = -1.0f; break;
        default: /* blocks alternating in scale, some with ties of opposite sign at the maximum */
            x[i] = ((i / QK) % 2 ? 100.0f : 0.01f) * rnd_sym();
            if (i % QK == 7) x[i] = ((i / QK) % 2 ? 100.0f : 0.01f);
            if (i % QK == 3) x[i] = -((i / QK) % 2 ? 100.0f : 0.01f);
            break;
        }
    }
}

/* ---- an independent statement of the Q8_K reference rule ----------------------------------- */

static void q8k_rule(const float *x, uint8_t *dst) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < QK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    memset(dst, 0, Q8K_BYTES);
    if (amax == 0.0f) return;
    const float iscale = -127.0f / max;
    int8_t q[QK];
    int16_t bs[16] = {0};
    for (int j = 0; j < QK; j++) {
        long v = lrintf(iscale * x[j]); /* round half to even in the default mode */
        q[j] = (int8_t)(v > 127 ? 127 : v);
        bs[j / 16] = (int16_t)(bs[j / 16] + q[j]);
    }
    const float d = 1.0f / iscale;
    memcpy(dst, &d, 4);
    memcpy(dst + 4, q, QK);
    memcpy(dst + 4 + QK, bs, sizeof bs);
}

/* bsums of every block equal the sums of its quants. */
static int bsums_ok(const uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *blk = y + (size_t)b * Q8K_BYTES;
        int16_t bs[16];
        memcpy(bs, blk + 4 + QK, sizeof bs);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += (int8_t)blk[4 + 16 * g + l];
            if (s != bs[g]) return 0;
        }
    }
    return 1;
}

/* Dequantized Q8_K: x[e] = d * q[e]. */
static void q8k_to_float(const uint8_t *y, int64_t n, float *x) {
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *blk = y + (size_t)b * Q8K_BYTES;
        float d;
        memcpy(&d, blk, 4);
        for (int j = 0; j < QK; j++) x[b * QK + j] = d * (float)(int8_t)blk[4 + j];
    }
}

/* ---- the tests ----------------------------------------------------------------------------- */

static const slm_kernels *g_tab[SLM_ISA_COUNT];

static void test_tables(void) {
    CHECK(g_tab[SLM_ISA_SCALAR] != NULL, "scalar table must exist");
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tab[isa];
        if (!k) continue;
        for (int t = 0; t < N_TYPES; t++)
            CHECK(k->vec_dot[k_types[t]] != NULL, "%s: vec_dot[%s] is NULL", k->name, slm_dtype_name((uint32_t)k_types[t]));
        CHECK(k->quant_act[SLM_DT_Q8_K] != NULL, "%s: quant_act[q8_k] is NULL", k->name);
        for (int t = 0; t < N_TYPES; t++)
            CHECK(slm_act_type((uint32_t)k_types[t]) == SLM_DT_Q8_K, "act type of %s is %d",
                  slm_dtype_name((uint32_t)k_types[t]), slm_act_type((uint32_t)k_types[t]));
    }
}

static void test_quantizer(void) {
    static float x[MAX_N];
    static uint8_t want[MAX_N / QK * Q8K_BYTES], got[MAX_N / QK * Q8K_BYTES + 64];
    const slm_quant_act_fn scalar = g_tab[SLM_ISA_SCALAR]->quant_act[SLM_DT_Q8_K];
    for (int s = 0; s < N_SIZES; s++) {
        const int64_t n = k_sizes[s];
        const size_t bytes = (size_t)(n / QK) * Q8K_BYTES;
        for (int kind = 0; kind < ACT_COUNT + 1; kind++) {
            const int nonfinite = kind == ACT_COUNT;
            make_acts(nonfinite ? ACT_RANDOM : kind, n, x);
            if (nonfinite) { /* NaN in block 0, +Inf in the last block */
                x[5] = NAN;
                x[n - 3] = INFINITY;
            }
            /* scalar against the rule (finite input only; the rule is unspecified otherwise) */
            memset(got, 0xa5, sizeof got);
            scalar(x, got, n);
            if (!nonfinite) {
                for (int64_t b = 0; b < n / QK; b++) q8k_rule(x + b * QK, want + (size_t)b * Q8K_BYTES);
                CHECK(memcmp(got, want, bytes) == 0, "scalar q8_k != reference rule (n=%lld, %s)", (long long)n,
                      k_act_names[kind]);
                CHECK(bsums_ok(got, n), "scalar q8_k bsums (n=%lld, %s)", (long long)n, k_act_names[kind]);
            }
            CHECK(got[bytes] == 0xa5 && got[bytes + 63] == 0xa5, "scalar q8_k wrote past the row");
            memcpy(want, got, bytes);
            for (int isa = SLM_ISA_AVX2; isa < SLM_ISA_COUNT; isa++) {
                if (!g_tab[isa]) continue;
                memset(got, 0x5a, sizeof got);
                g_tab[isa]->quant_act[SLM_DT_Q8_K](x, got, n);
                CHECK(memcmp(got, want, bytes) == 0, "%s q8_k bytes != scalar (n=%lld, %s)", g_tab[isa]->name,
                      (long long)n, nonfinite ? "nan/inf" : k_act_names[kind]);
                CHECK(got[bytes] == 0x5a && got[bytes + 63] == 0x5a, "%s q8_k wrote past the row", g_tab[isa]->name);
            }
        }
    }
    /* a block whose largest magnitude is tied between -m (first) and +m: the first decides,
     * iscale = -127 / -m > 0, so the first maps to -127 and d is positive */
    for (int j = 0; j < QK; j++) x[j] = 0.25f * rnd_sym();
    x[10] = -2.0f;
    x[200] = 2.0f;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        if (!g_tab[isa]) continue;
        g_tab[isa]->quant_act[SLM_DT_Q8_K](x, got, QK);
        float d;
        memcpy(&d, got, 4);
        CHECK(d > 0.0f && (int8_t)got[4 + 10] == -127 && (int8_t)got[4 + 200] == 127, "%s q8_k tie: d=%g q=%d,%d",
              g_tab[isa]->name, d, (int8_t)got[4 + 10], (int8_t)got[4 + 200]);
    }
}

static void test_dots(void) {
    static float x[MAX_N], xd[MAX_N], wf[MAX_N];
    static uint8_t xq[MAX_N / QK * Q8K_BYTES];
    static uint8_t w[MAX_N / QK * 256];
    const slm_kernels *sk = g_tab[SLM_ISA_SCALAR];
    double worst_ref = 0.0, worst_simd[SLM_ISA_COUNT] = {0};
    for (int t = 0; t < N_TYPES; t++) {
        const int type = k_types[t];
        const slm_dtype_traits *tr = slm_dtype_get((uint32_t)type);
        for (int s = 0; s < N_SIZES; s++) {
            const int64_t n = k_sizes[s];
            for (int ones = 0; ones < 2; ones++) {
                make_weights(type, n, w, ones);
                tr->to_float(w, wf, n);
                for (int kind = 0; kind < ACT_COUNT; kind++) {
                    make_acts(kind, n, x);
                    sk->quant_act[SLM_DT_Q8_K](x, xq, n);
                    q8k_to_float(xq, n, xd);
                    double mag = 0.0;
                    for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * (double)xd[i]);
                    const double tol = TOL * mag + 1e-30;
                    const float ref = tr->dot_f32(w, xd, n);
                    const float sc = sk->vec_dot[type](w, xq, n);
                    const double e = fabs((double)sc - (double)ref);
                    if (mag > 0.0 && e / mag > worst_ref) worst_ref = e / mag;
                    CHECK(isfinite(sc) && e <= tol, "%s scalar vs dot_f32: n=%lld %s%s: %.9g vs %.9g (tol %.3g)",
                          tr->name, (long long)n, k_act_names[kind], ones ? " all-ones" : "", sc, ref, tol);
                    for (int isa = SLM_ISA_AVX2; isa < SLM_ISA_COUNT; isa++) {
                        if (!g_tab[isa]) continue;
                        const float v = g_tab[isa]->vec_dot[type](w, xq, n);
                        const double ev = fabs((double)v - (double)sc);
                        if (mag > 0.0 && ev / mag > worst_simd[isa]) worst_simd[isa] = ev / mag;
                        CHECK(isfinite(v) && ev <= tol, "%s %s vs scalar: n=%lld %s%s: %.9g vs %.9g (tol %.3g)",
                              tr->name, g_tab[isa]->name, (long long)n, k_act_names[kind], ones ? " all-ones" : "", v,
                              sc, tol);
                    }
                }
            }
        }
    }
    printf("worst |error| / sum|w*x|: scalar vs dot_f32 %.3g", worst_ref);
    for (int isa = SLM_ISA_AVX2; isa < SLM_ISA_COUNT; isa++)
        if (g_tab[isa]) printf(", %s vs scalar %.3g", g_tab[isa]->name, worst_simd[isa]);
    printf("\n");
}

int main(void) {
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) g_tab[isa] = slm_kernels_get((slm_isa)isa);
    printf("tables:");
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++)
        if (g_tab[isa]) printf(" %s", g_tab[isa]->name);
    printf("\n");
    test_tables();
    if (g_tab[SLM_ISA_SCALAR]) {
        test_quantizer();
        test_dots();
    }
    return test_summary("qdot_k");
}
