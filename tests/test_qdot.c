/* test_qdot.c - the quantized dot-product kernels of every instruction set this CPU runs,
 * against their scalar twins and against the f32 reference of src/core/dtype.c.
 *
 * For every table and every weight dtype in it, for several lengths n (powers of two, model
 * sizes and an odd block count) and activation rows of several kinds (normal, large, tiny,
 * all-zero, negative-only):
 *   1. quant_act gives the same bytes as the scalar quantizer (also on rows with NaN / Inf);
 *   2. vec_dot agrees with the scalar vec_dot within 1e-5 * sum|w_i * x_i| (the integer block
 *      sums are exact; only the float summation order differs);
 *   3. the scalar vec_dot agrees with dot_f32 on the dequantized activations (the arithmetic:
 *      per-block float products, and the f16 rounding of the Q8_1 block sum s, 2^-11 of
 *      |m * s|), and with dot_f32 on the original activations within the activation
 *      quantization error sum_j |w_j| * (d/2 + 127 * |d - f16(d)|) per block;
 *   4. gemm (specialized and generic) against vec_dot for many tile shapes (weight and
 *      activation row counts around the register tiles and their tails, few activation rows
 *      where float weights are converted in registers, many where they go through a buffer,
 *      more than one chunk of activation rows), lengths that are not a multiple of the vector
 *      width, strides that are not the packed row size and sentinels around every output;
 *   5. dispatch: ISA names, the SLIMLM_ISA override, no table for SLM_ISA_REF.
 * Weight types without a reference quantizer get random bytes with sane f16 scales. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "kernels/qdot.h"
#include "core/gq.h"
#include "test.h"

/* ---- random numbers --------------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_uniform(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}
static float rng_normal(void) {
    const double u1 = ((double)(rng_next() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = (double)(rng_next() >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- activation rows -------------------------------------------------------------------- */

enum { ROW_NORMAL, ROW_LARGE, ROW_TINY, ROW_ZERO, ROW_NEGATIVE, ROW_KINDS };
static const char *const g_row_names[ROW_KINDS] = {"normal", "large", "tiny", "zero", "negative"};

static void make_row(int kind, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case ROW_NORMAL: x[i] = rng_normal(); break;
        case ROW_LARGE: x[i] = 1000.0f * rng_uniform(); break; /* Q8_1 s = d * sum q stays < 65504 */
        case ROW_TINY: x[i] = 1e-6f * rng_uniform(); break;    /* f16 scale is subnormal or zero */
        case ROW_ZERO: x[i] = 0.0f; break;
        default: x[i] = -fabsf(rng_normal()) - 1e-3f; break;
        }
    }
    if (kind == ROW_NORMAL && n >= 64) {
        x[3] = 6.0f; /* an outlier, and exact .5 ties after scaling: amax 127 gives d = 1 */
        for (int j = 32; j < 64; j++) x[j] = (float)(j - 48) + 0.5f;
        x[40] = 127.0f;
    }
}

/* ---- activation formats: bytes and dequantization --------------------------------------- */

static size_t row_bytes(int t, int64_t n) {
    size_t b = 0;
    return slm_row_bytes((uint32_t)t, n, &b) ? b : 0;
}

static float f16_at(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* Dequantized activations and, per block, the activation quantization bound
 * d/2 + 127 * |d - f16(d)| recomputed from the original row (0 for f32). */
static void act_dequant(int at, const void *src, const float *orig, float *dst, double *err, int64_t n) {
    const uint8_t *p = src;
    if (at == SLM_DT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) err[i] = 0.0;
        return;
    }
    const int64_t bs = at == SLM_DT_Q8_K ? 256 : 32;
    const size_t bb = row_bytes(at, bs);
    for (int64_t i = 0; i < n; i += bs, p += bb) {
        float d;
        const int8_t *q;
        if (at == SLM_DT_Q8_K) {
            memcpy(&d, p, sizeof d);
            q = (const int8_t *)(p + 4);
        } else {
            d = f16_at(p);
            q = (const int8_t *)(p + (at == SLM_DT_Q8_1 ? 4 : 2));
        }
        double amax = 0.0;
        for (int64_t j = 0; j < bs; j++) {
            dst[i + j] = d * (float)q[j];
            if (fabs((double)orig[i + j]) > amax) amax = fabs((double)orig[i + j]);
        }
        const double dexact = amax / 127.0;
        const double e = 0.5 * dexact * (1.0 + 1e-6) + 127.0 * fabs(dexact - (double)d) + 1e-30;
        for (int64_t j = 0; j < bs; j++) err[i + j] = e;
    }
}

/* For Q8_1: sum over blocks of 2^-11 |m_w * s_x| + 2^-25 |m_w| (the f16 rounding of s), with
 * m_w the block offset of Q4_1 / Q5_1 weights. 0 for other formats. */
static double offset_rounding_bound(int wt, const void *w, const void *x, int64_t n) {
    slm_gq_format f;
    if (slm_gq_format_of((uint32_t)wt, &f)) { /* group formats: m of the group, per sub-block */
        if (!f.asym) return 0.0;
        const uint8_t *pw = w, *px = x;
        double s = 0.0;
        for (int64_t off = 0; off < n;) {
            const int64_t g = n - off < f.group ? n - off : f.group;
            const double m = fabs((double)f16_at(pw + 2));
            for (int64_t i = 0; i < g; i += 32, px += 36) s += m * fabs((double)f16_at(px + 2)) * 0x1.0p-11 + m * 0x1.0p-25;
            pw += f.hdr + g / 32 * f.sub;
            off += g;
        }
        return s;
    }
    if (wt != SLM_DT_Q4_1 && wt != SLM_DT_Q5_1) return 0.0;
    const size_t wb = row_bytes(wt, 32);
    const uint8_t *pw = w, *px = x;
    double s = 0.0;
    for (int64_t i = 0; i < n; i += 32, pw += wb, px += 36) {
        const double m = fabs((double)f16_at(pw + 2));
        s += m * fabs((double)f16_at(px + 2)) * 0x1.0p-11 + m * 0x1.0p-25;
    }
    return s;
}

/* ---- weights ---------------------------------------------------------------------------- */

/* Offsets of the f16 scale fields of the k-quant blocks (for random-byte weights). */
static int scale_offsets(int t, int off[2]) {
    switch (t) {
    case SLM_DT_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case SLM_DT_Q3_K: off[0] = 108; return 1;
    case SLM_DT_Q4_K:
    case SLM_DT_Q5_K: off[0] = 0, off[1] = 2; return 2;
    case SLM_DT_Q6_K: off[0] = 208; return 1;
    default: return -1;
    }
}

/* A weight row of n elements; false if the type can be neither quantized nor made up. */
static bool make_weights(int t, void *w, int64_t n, float *tmp) {
    const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
    if (tr->from_float) {
        for (int64_t i = 0; i < n; i++) tmp[i] = 0.05f * rng_normal() + (i % 97 == 0 ? 0.3f : 0.0f);
        tr->from_float(tmp, w, n);
        return true;
    }
    int off[2];
    const int ns = scale_offsets(t, off);
    if (ns < 0) return false;
    const size_t bytes = row_bytes(t, n);
    uint8_t *p = w;
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)rng_next();
    for (size_t b = 0; b < bytes; b += tr->block_bytes)
        for (int s = 0; s < ns; s++) {
            const uint16_t h = slm_f32_to_f16(0.001f + 0.01f * fabsf(rng_uniform()));
            p[b + (size_t)off[s]] = (uint8_t)(h & 0xff);
            p[b + (size_t)off[s] + 1] = (uint8_t)(h >> 8);
        }
    return true;
}

/* ---- checks ----------------------------------------------------------------------------- */

static const int64_t g_ns[] = {32, 64, 96, 256, 576, 1536, 4096, 33 * 32};
enum { N_MAX = 4096 };

static const slm_kernels *g_tables[SLM_ISA_COUNT];
static const slm_kernels *g_scalar;

/* Test 1: quant_act bytes of every table against the scalar quantizer. */
static void check_quant_act(void) {
    static float x[N_MAX];
    static uint8_t ys[N_MAX * 4 + 64], yt[N_MAX * 4 + 64];
    const int acts[] = {SLM_DT_Q8_0, SLM_DT_Q8_1, SLM_DT_Q8_K, SLM_DT_F32};
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tables[isa];
        if (!k) continue;
        for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
            const int at = acts[a];
            if (!g_scalar->quant_act[at]) continue;
            CHECK(k->quant_act[at] != NULL, "%s: no quant_act for %s", k->name, slm_dtype_name((uint32_t)at));
            if (!k->quant_act[at]) continue;
            for (size_t ni = 0; ni < sizeof g_ns / sizeof g_ns[0]; ni++) {
                const int64_t n = g_ns[ni];
                if (n % slm_dtype_get((uint32_t)at)->block_size) continue;
                for (int kind = 0; kind <= ROW_KINDS; kind++) {
                    if (kind < ROW_KINDS) {
                        make_row(kind, x, n);
                    } else { /* non-finite values and subnormal-scale blocks */
                        make_row(ROW_NORMAL, x, n);
                        x[1] = NAN;
                        x[n - 2] = INFINITY;
                        for (int j = 0; j < 32 && j + 32 < n; j++) x[32 + j] = (float)j * 1e-44f;
                    }
                    const size_t bytes = row_bytes(at, n);
                    memset(ys, 0xa5, bytes + 16);
                    memset(yt, 0x5a, bytes + 16);
                    g_scalar->quant_act[at](x, ys, n);
                    k->quant_act[at](x, yt, n);
                    CHECK(memcmp(ys, yt, bytes) == 0, "%s quant_act %s n=%lld row %s: bytes differ from scalar",
                          k->name, slm_dtype_name((uint32_t)at), (long long)n,
                          kind < ROW_KINDS ? g_row_names[kind] : "nonfinite");
                    CHECK(yt[bytes] == 0x5a, "%s quant_act %s n=%lld: wrote past the row", k->name,
                          slm_dtype_name((uint32_t)at), (long long)n);
                }
            }
        }
    }
}

/* Tests 2 and 3: vec_dot of every table against the scalar twin, and the scalar twin against
 * the f32 reference. */
static void check_vec_dot(void) {
    static float x[N_MAX], xd[N_MAX], wf[N_MAX], tmp[N_MAX];
    static double xerr[N_MAX];
    static uint8_t w[N_MAX * 4], xq[N_MAX * 4];
    for (int t = 0; t < SLM_DT_COUNT; t++) {
        if (!g_scalar->vec_dot[t]) continue;
        const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
        const int at = slm_act_type((uint32_t)t);
        CHECK(tr && tr->to_float && at >= 0 && g_scalar->quant_act[at], "%s: incomplete traits for a kernel",
              slm_dtype_name((uint32_t)t));
        if (!tr || !tr->to_float || at < 0 || !g_scalar->quant_act[at]) continue;
        const int64_t abs = slm_dtype_get((uint32_t)at)->block_size;
        for (size_t ni = 0; ni < sizeof g_ns / sizeof g_ns[0]; ni++) {
            const int64_t n = g_ns[ni];
            if (n % tr->block_size || n % abs) continue;
            if (!make_weights(t, w, n, tmp)) {
                CHECK(0, "%s: cannot make test weights", tr->name);
                continue;
            }
            tr->to_float(w, wf, n);
            for (int kind = 0; kind < ROW_KINDS; kind++) {
                make_row(kind, x, n);
                g_scalar->quant_act[at](x, xq, n);
                act_dequant(at, xq, x, xd, xerr, n);
                double mag = 0.0, qerr = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    mag += fabs((double)wf[i] * (double)xd[i]);
                    qerr += fabs((double)wf[i]) * xerr[i];
                }
                const double arith = 1e-6 * mag + offset_rounding_bound(t, w, xq, n) + 1e-30;
                const float ref = g_scalar->vec_dot[t](w, xq, n);
                /* 3: scalar twin against the f32 reference */
                const double e_deq = fabs((double)ref - (double)tr->dot_f32(w, xd, n));
                CHECK(e_deq <= arith, "scalar %s n=%lld row %s: |vec_dot - dot_f32(deq x)| = %g > %g", tr->name,
                      (long long)n, g_row_names[kind], e_deq, arith);
                const double e_orig = fabs((double)ref - (double)tr->dot_f32(w, x, n));
                CHECK(e_orig <= arith + qerr * (1.0 + 1e-6), "scalar %s n=%lld row %s: |vec_dot - dot_f32(x)| = %g > %g",
                      tr->name, (long long)n, g_row_names[kind], e_orig, arith + qerr);
                /* 2: every SIMD table against the scalar twin */
                for (int isa = SLM_ISA_SCALAR + 1; isa < SLM_ISA_COUNT; isa++) {
                    const slm_kernels *k = g_tables[isa];
                    if (!k) continue;
                    CHECK(k->vec_dot[t] != NULL, "%s: no vec_dot for %s", k->name, tr->name);
                    if (!k->vec_dot[t]) continue;
                    const float v = k->vec_dot[t](w, xq, n);
                    const double e = fabs((double)v - (double)ref);
                    const double tol = 1e-5 * mag + 1e-30;
                    CHECK(e <= tol, "%s %s n=%lld row %s: simd %.9g scalar %.9g (|diff| %g > %g)", k->name, tr->name,
                          (long long)n, g_row_names[kind], v, ref, e, tol);
                }
            }
        }
    }
}

/* Test 4: gemm against vec_dot, sentinels around every output, strides with padding. */
enum { G_ROWS = 64, G_COLS = 70, G_PAD_W = 24, G_PAD_X = 40, G_LDY_PAD = 3, G_GUARD = 37 };
static const int g_shape[] = {1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 64, 70};

static void check_gemm(void) {
    /* 23 and 1029: float weights only (block size 1): lengths that are not a multiple of the
     * vector width, and k split into unequal chunks with a ragged last piece */
    const int64_t gns[] = {23, 64, 256, 1029, 33 * 32, 19 * 256};
    const float sentinel = -1234.5f;
    for (size_t ni = 0; ni < sizeof gns / sizeof gns[0]; ni++) {
        const int64_t n = gns[ni];
        float *tmp = malloc((size_t)n * sizeof(float));
        float *wf = malloc((size_t)G_ROWS * (size_t)n * sizeof(float));
        float *xd = malloc((size_t)G_COLS * (size_t)n * sizeof(float));
        double *xerr = malloc((size_t)n * sizeof(double));
        uint8_t *w = malloc((size_t)G_ROWS * ((size_t)n * 4 + G_PAD_W));
        uint8_t *xq = malloc((size_t)G_COLS * ((size_t)n * 4 + G_PAD_X));
        float *x = malloc((size_t)n * sizeof(float));
        float *ref = malloc((size_t)G_ROWS * G_COLS * sizeof(float));
        double *mag = malloc((size_t)G_ROWS * G_COLS * sizeof(double));
        const size_t ycap = (size_t)G_COLS * (G_ROWS + G_LDY_PAD) + 2 * G_GUARD;
        float *ybuf = malloc(ycap * sizeof(float));
        for (int t = 0; t < SLM_DT_COUNT; t++) {
            if (!g_scalar->vec_dot[t]) continue;
            const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
            const int at = slm_act_type((uint32_t)t);
            if (!tr || !tr->to_float || at < 0) continue;
            if (n % tr->block_size || n % slm_dtype_get((uint32_t)at)->block_size) continue;
            const size_t ws = row_bytes(t, n) + G_PAD_W, xs = row_bytes(at, n) + G_PAD_X;
            bool ok = true;
            for (int r = 0; r < G_ROWS && ok; r++) {
                ok = make_weights(t, w + (size_t)r * ws, n, tmp);
                if (ok) tr->to_float(w + (size_t)r * ws, wf + (size_t)r * n, n);
            }
            if (!ok) continue;
            for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
                const slm_kernels *k = g_tables[isa];
                if (!k) continue;
                CHECK(k->gemm[t] != NULL, "%s: no gemm for %s", k->name, tr->name);
                if (!k->gemm[t]) continue;
                for (int c = 0; c < G_COLS; c++) {
                    make_row(c % ROW_KINDS, x, n);
                    k->quant_act[at](x, xq + (size_t)c * xs, n);
                    act_dequant(at, xq + (size_t)c * xs, x, xd + (size_t)c * n, xerr, n);
                }
                for (int r = 0; r < G_ROWS; r++)
                    for (int c = 0; c < G_COLS; c++) {
                        ref[r * G_COLS + c] = k->vec_dot[t](w + (size_t)r * ws, xq + (size_t)c * xs, n);
                        double m = 0.0;
                        for (int64_t i = 0; i < n; i++)
                            m += fabs((double)wf[(size_t)r * n + i] * (double)xd[(size_t)c * n + i]);
                        mag[r * G_COLS + c] = m;
                    }
                for (size_t a = 0; a < sizeof g_shape / sizeof g_shape[0]; a++)
                    for (size_t b = 0; b < sizeof g_shape / sizeof g_shape[0]; b++) {
                        const int nr = g_shape[a], nc = g_shape[b];
                        if (nr > G_ROWS || nc > G_COLS) continue;
                        const size_t ldy = (size_t)nr + G_LDY_PAD;
                        for (size_t i = 0; i < ycap; i++) ybuf[i] = sentinel;
                        float *y = ybuf + G_GUARD;
                        k->gemm[t](n, w, ws, nr, xq, xs, nc, y, ldy);
                        int bad = 0, clobbered = 0;
                        double worst = 0.0;
                        for (size_t i = 0; i < ycap; i++) {
                            const long off = (long)i - G_GUARD;
                            const long c = off >= 0 ? off / (long)ldy : -1, r = off >= 0 ? off % (long)ldy : -1;
                            if (off >= 0 && c < nc && r < nr) {
                                const double e = fabs((double)ybuf[i] - (double)ref[r * G_COLS + c]);
                                const double tol = 1e-5 * mag[r * G_COLS + c] + 1e-30;
                                if (!(e <= tol)) bad++;
                                if (e > worst) worst = e;
                            } else if (ybuf[i] != sentinel) {
                                clobbered++;
                            }
                        }
                        CHECK(bad == 0, "%s gemm %s n=%lld nr=%d nc=%d: %d results differ from vec_dot (worst %g)",
                              k->name, tr->name, (long long)n, nr, nc, bad, worst);
                        CHECK(clobbered == 0, "%s gemm %s n=%lld nr=%d nc=%d: %d writes outside the output",
                              k->name, tr->name, (long long)n, nr, nc, clobbered);
                    }
            }
        }
        free(tmp), free(wf), free(xd), free(xerr), free(w), free(xq), free(x), free(ref), free(mag), free(ybuf);
    }
}

/* Test 5: names, the override, the tables' identity. */
static void check_dispatch(void) {
    for (int i = 0; i < SLM_ISA_COUNT; i++)
        CHECK(slm_isa_from_name(slm_isa_name((slm_isa)i)) == i, "isa %d: name round trip (%s)", i,
              slm_isa_name((slm_isa)i));
    CHECK(slm_isa_from_name("sse9") == -1, "unknown isa name accepted");
    CHECK(slm_isa_from_name(NULL) == -1, "NULL isa name accepted");
    CHECK(strcmp(slm_isa_name(SLM_ISA_COUNT), "unknown") == 0, "out-of-range isa has a name");
    CHECK(slm_kernels_get(SLM_ISA_REF) == NULL, "SLM_ISA_REF has a table");
    CHECK(slm_kernels_get(SLM_ISA_COUNT) == NULL, "out-of-range isa has a table");
    CHECK(slm_kernels_get(SLM_ISA_SCALAR) != NULL, "no scalar table");
    const slm_isa best = slm_isa_detect();
    CHECK(slm_kernels_get(best) != NULL, "detected isa %s has no table", slm_isa_name(best));
    for (int i = SLM_ISA_SCALAR; i < SLM_ISA_COUNT; i++) {
        const slm_kernels *k = slm_kernels_get((slm_isa)i);
        if (!k) continue;
        CHECK(k->isa == (slm_isa)i && strcmp(k->name, slm_isa_name((slm_isa)i)) == 0, "table %d: wrong identity", i);
        CHECK(k == slm_kernels_get((slm_isa)i), "table %d: not stable", i);
        CHECK(i <= (int)best, "table %s exists above the detected %s", k->name, slm_isa_name(best));
        /* complete: every scalar entry present */
        for (int t = 0; t < SLM_DT_COUNT; t++) {
            if (g_scalar->vec_dot[t])
                CHECK(k->vec_dot[t] && k->gemm[t], "%s: dtype %s missing", k->name, slm_dtype_name((uint32_t)t));
            if (g_scalar->quant_act[t])
                CHECK(k->quant_act[t] != NULL, "%s: quant_act %s missing", k->name, slm_dtype_name((uint32_t)t));
        }
    }
    const char *saved = getenv("SLIMLM_ISA");
    char *saved_copy = saved ? strdup(saved) : NULL;
    for (int i = 0; i < SLM_ISA_COUNT; i++) {
        setenv("SLIMLM_ISA", slm_isa_name((slm_isa)i), 1);
        const slm_isa want = (i == SLM_ISA_REF || slm_kernels_get((slm_isa)i)) ? (slm_isa)i : best;
        CHECK(slm_isa_default() == want, "SLIMLM_ISA=%s gives %s, expected %s", slm_isa_name((slm_isa)i),
              slm_isa_name(slm_isa_default()), slm_isa_name(want));
    }
    setenv("SLIMLM_ISA", "bogus", 1);
    CHECK(slm_isa_default() == best, "SLIMLM_ISA=bogus does not fall back to %s", slm_isa_name(best));
    unsetenv("SLIMLM_ISA");
    CHECK(slm_isa_default() == best, "no SLIMLM_ISA does not give %s", slm_isa_name(best));
    if (saved_copy) setenv("SLIMLM_ISA", saved_copy, 1);
    free(saved_copy);

    CHECK(slm_act_type(SLM_DT_Q4_0) == SLM_DT_Q8_0 && slm_act_type(SLM_DT_Q5_0) == SLM_DT_Q8_0 &&
              slm_act_type(SLM_DT_Q8_0) == SLM_DT_Q8_0,
          "act type of the centred formats");
    CHECK(slm_act_type(SLM_DT_Q4_1) == SLM_DT_Q8_1 && slm_act_type(SLM_DT_Q5_1) == SLM_DT_Q8_1,
          "act type of the offset formats");
    for (int t = SLM_DT_Q2_K; t <= SLM_DT_Q6_K; t++)
        CHECK(slm_act_type((uint32_t)t) == SLM_DT_Q8_K, "act type of %s", slm_dtype_name((uint32_t)t));
    CHECK(slm_act_type(SLM_DT_F32) == SLM_DT_F32 && slm_act_type(SLM_DT_F16) == SLM_DT_F32 &&
              slm_act_type(SLM_DT_BF16) == SLM_DT_F32,
          "act type of the float formats");
    CHECK(slm_act_type(SLM_DT_Q8_1) == -1 && slm_act_type(SLM_DT_I8) == -1 && slm_act_type(SLM_DT_COUNT) == -1 &&
              slm_act_type(9999) == -1,
          "act type of types without a kernel");
}

int main(void) {
    g_scalar = slm_kernels_get(SLM_ISA_SCALAR);
    if (!g_scalar) {
        CHECK(0, "no scalar table");
        return test_summary("qdot");
    }
    printf("qdot: tables tested:");
    for (int i = SLM_ISA_SCALAR; i < SLM_ISA_COUNT; i++) {
        g_tables[i] = slm_kernels_get((slm_isa)i);
        if (g_tables[i]) printf(" %s", g_tables[i]->name);
    }
    printf(" (detected %s)\n", slm_isa_name(slm_isa_detect()));
    printf("qdot: weight dtypes:");
    for (int t = 0; t < SLM_DT_COUNT; t++)
        if (g_scalar->vec_dot[t]) printf(" %s", slm_dtype_name((uint32_t)t));
    printf("\n");
    check_dispatch();
    check_quant_act();
    check_vec_dot();
    check_gemm();
    return test_summary("qdot");
}
