/* test_qdot_g.c - the group-format kernels (kernels/qdot_g.h) of every kernel table this CPU
 * runs, against the scalar twin and the f32 reference of core/gq.c.
 *
 * For all 24 formats, row lengths with and without a short last group, weight rows quantized
 * from random values and raw rows (all-ones / 0x80 / 0x7f / random quants under extreme f16
 * scales and offsets: +-65504, the smallest subnormal, 0), and activation rows of several kinds
 * quantized by each table's own activation quantizer:
 *   1. every table has vec_dot, gemm and the activation quantizer for every group format;
 *   2. each SIMD vec_dot agrees with the scalar twin within 1e-5 * sum of |terms| (the
 *      integer sums are exact; only the float summation order differs), where the terms are
 *      recomputed here from the packing spec: |d_w d_x| sum_e |u_e - o| |q_e| + |m_w s_x|;
 *   3. the scalar twin agrees with dtype dot_f32 on the activations dequantized here, within
 *      float rounding plus the f16 rounding of the Q8_1 block sum s (2^-11 |m_w s_x|);
 *   4. gemm of every table equals vec_dot for tile shapes 1x1, 3x5, 17x9, 4x4, 5x1, 6x7 and 64x256, and
 *      rows of 2080, 4160 and 8288 weights with 1 to 3 activation rows (the chunked path), with
 *      strides that are not the packed row sizes and sentinels around every output. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/gq.h"
#include "kernels/qdot.h"
#include "test.h"

/* ---- random numbers --------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
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

/* ---- sizes -------------------------------------------------------------------------------- */

static const int64_t g_ns[] = {32, 96, 160, 576, 1536};
enum {
    N_MAX = 8288, /* the longest row tested */
    W_MAX = N_MAX * 8 / 8 + N_MAX / 32 * 4 + 64, /* bytes of the largest row (q8, groups of 32) */
    X_MAX = N_MAX / 32 * 36 + 64,
};

static size_t gq_bytes(int t, int64_t n) {
    size_t b = 0;
    return slm_gq_row_bytes((uint32_t)t, n, &b) ? b : 0;
}

static size_t act_bytes(int at, int64_t n) { return (size_t)(n / 32) * (at == SLM_DT_Q8_1 ? 36 : 34); }

static float f16_at(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void put_f16(uint8_t *p, float v) {
    const uint16_t h = slm_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* ---- the packing, read from the spec in core/gq.h ---------------------------------------- */

/* quant e of a packed 32-weight sub-block: u (2..4 bits) or s (8 bits) */
static int spec_quant(int bits, const uint8_t *p, int e) {
    if (bits == 8) return (int8_t)p[e];
    if (bits == 4) return e < 16 ? p[e] & 0x0f : p[e - 16] >> 4;
    int u = (p[e % 8] >> (2 * (e / 8))) & 3;
    if (bits == 3) {
        const uint32_t word = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
        u |= (int)((word >> e) & 1) << 2;
    }
    return u;
}

/* sum over sub-blocks of |d_w d_x| sum_e |u_e - o| |q_e| + |m_w s_x|: the size of the terms */
static double term_size(const slm_gq_format *f, const uint8_t *w, const uint8_t *x, int64_t n) {
    const int o = (f->asym || f->bits == 8) ? 0 : 1 << (f->bits - 1);
    const int xb = f->asym ? 36 : 34, xq = f->asym ? 4 : 2;
    double total = 0.0;
    for (int64_t off = 0; off < n;) {
        const int64_t gl = n - off < f->group ? n - off : f->group;
        const double d = f16_at(w), m = f->asym ? f16_at(w + 2) : 0.0;
        w += f->hdr;
        for (int64_t s = 0; s < gl; s += 32, w += f->sub, x += xb) {
            double a = 0.0;
            for (int e = 0; e < 32; e++) a += fabs((double)(spec_quant(f->bits, w, e) - o) * ((const int8_t *)(x + xq))[e]);
            total += fabs(d * f16_at(x)) * a + fabs(m * (f->asym ? f16_at(x + 2) : 0.0f));
        }
        off += gl;
    }
    return total;
}

/* sum over sub-blocks of 2^-11 |m_w s_x| + 2^-25 |m_w|: the f16 rounding of s_x (asym only) */
static double offset_rounding(const slm_gq_format *f, const uint8_t *w, const uint8_t *x, int64_t n) {
    if (!f->asym) return 0.0;
    double total = 0.0;
    for (int64_t off = 0; off < n;) {
        const int64_t gl = n - off < f->group ? n - off : f->group;
        const double m = fabs((double)f16_at(w + 2));
        w += f->hdr + (size_t)(gl / 32) * (size_t)f->sub;
        for (int64_t s = 0; s < gl; s += 32, x += 36) total += m * fabs((double)f16_at(x + 2)) * 0x1.0p-11 + m * 0x1.0p-25;
        off += gl;
    }
    return total;
}

/* sum_j (|d_w u_j| + |m_w|) |x_j|: bounds the rounding of the f32 reference (weights d u + m) */
static double abs_products(const slm_gq_format *f, const uint8_t *w, const float *x, int64_t n) {
    double total = 0.0;
    for (int64_t off = 0; off < n;) {
        const int64_t gl = n - off < f->group ? n - off : f->group;
        const double d = fabs((double)f16_at(w));
        const double m = f->asym ? fabs((double)f16_at(w + 2)) : (f->bits == 8 ? 0.0 : d * (1 << (f->bits - 1)));
        w += f->hdr;
        for (int64_t s = 0; s < gl; s += 32, w += f->sub)
            for (int e = 0; e < 32; e++)
                total += (d * abs(spec_quant(f->bits, w, e)) + m) * fabs((double)x[off + s + e]);
        off += gl;
    }
    return total;
}

/* activations dequantized from Q8_0 / Q8_1 blocks */
static void act_dequant(int at, const uint8_t *x, float *dst, int64_t n) {
    const int xb = at == SLM_DT_Q8_1 ? 36 : 34, xq = at == SLM_DT_Q8_1 ? 4 : 2;
    for (int64_t i = 0; i < n; i += 32, x += xb) {
        const float d = f16_at(x);
        for (int j = 0; j < 32; j++) dst[i + j] = d * (float)((const int8_t *)(x + xq))[j];
    }
}

/* ---- rows --------------------------------------------------------------------------------- */

enum { W_QUANT, W_QUANT_CLIP, W_RAW_ONES, W_RAW_80, W_RAW_7F, W_RAW_RANDOM, W_KINDS };
static const char *const g_wnames[W_KINDS] = {"quantized", "clip-searched", "raw 0xff", "raw 0x80", "raw 0x7f",
                                              "raw random"};

/* raw rows: every group gets the next scale (and offset) from this list */
static const float g_scales[] = {65504.0f, -65504.0f, 0x1.0p-24f, 0.0f, 0.01f, -0.003f, 1.0f};
enum { N_SCALES = sizeof g_scales / sizeof g_scales[0] };

static void make_weights(int t, int kind, uint8_t *w, int64_t n) {
    slm_gq_format f;
    slm_gq_format_of((uint32_t)t, &f);
    if (kind == W_QUANT || kind == W_QUANT_CLIP) {
        static float src[N_MAX];
        for (int64_t i = 0; i < n; i++) src[i] = 0.05f * rng_normal() + (i % 97 == 0 ? 0.3f : 0.0f) + 0.01f;
        const slm_gq_opts opts = {.clip_search = true, .min_shrink = 0.7f, .importance = NULL};
        slm_gq_quantize_row((uint32_t)t, src, w, n, kind == W_QUANT_CLIP ? &opts : NULL);
        return;
    }
    int k = (int)(rng_next() % N_SCALES);
    for (int64_t off = 0; off < n; k++) {
        const int64_t gl = n - off < f.group ? n - off : f.group;
        put_f16(w, g_scales[k % N_SCALES]);
        if (f.asym) put_f16(w + 2, g_scales[(k + 3) % N_SCALES]);
        w += f.hdr;
        const size_t qb = (size_t)(gl / 32) * (size_t)f.sub;
        for (size_t i = 0; i < qb; i++)
            w[i] = kind == W_RAW_ONES ? 0xff : kind == W_RAW_80 ? 0x80 : kind == W_RAW_7F ? 0x7f : (uint8_t)rng_next();
        w += qb;
        off += gl;
    }
}

enum { X_NORMAL, X_LARGE, X_MAX_POS, X_ALTERNATING, X_ZERO, X_KINDS };
static const char *const g_xnames[X_KINDS] = {"normal", "large", "all +1", "alternating +-1", "zero"};

static void make_act(int kind, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case X_NORMAL: x[i] = rng_normal(); break;
        case X_LARGE: x[i] = 1000.0f * rng_uniform(); break; /* Q8_1 s = d * sum q stays < 65504 */
        case X_MAX_POS: x[i] = 1.0f; break;                  /* every quant 127 */
        case X_ALTERNATING: x[i] = (i & 1) ? -1.0f : 1.0f; break;
        default: x[i] = 0.0f; break;
        }
    }
}

/* ---- checks ------------------------------------------------------------------------------- */

static const slm_kernels *g_tables[SLM_ISA_COUNT];

/* Test 1 */
static void check_tables(void) {
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tables[isa];
        if (!k) continue;
        for (int i = 0; i < SLM_GQ_N_TYPES; i++) {
            const int t = SLM_DT_GQ_FIRST + i, at = slm_act_type((uint32_t)t);
            CHECK(at == SLM_DT_Q8_0 || at == SLM_DT_Q8_1, "%s: activation type %d", slm_dtype_name((uint32_t)t), at);
            CHECK(k->vec_dot[t] != NULL, "%s: no vec_dot for %s", k->name, slm_dtype_name((uint32_t)t));
            CHECK(k->gemm[t] != NULL, "%s: no gemm for %s", k->name, slm_dtype_name((uint32_t)t));
            if (at >= 0) CHECK(k->quant_act[at] != NULL, "%s: no quant_act for %s", k->name, slm_dtype_name((uint32_t)t));
        }
    }
}

/* Tests 2 and 3 for one weight row w of type t against activation row xf. */
static void check_dots(int t, const slm_gq_format *f, const uint8_t *w, int64_t n, const float *xf,
                       const char *what) {
    const int at = slm_act_type((uint32_t)t);
    static uint8_t xq[X_MAX];
    static float xd[N_MAX];
    const slm_kernels *sc = g_tables[SLM_ISA_SCALAR];
    sc->quant_act[at](xf, xq, n);
    const float twin = sc->vec_dot[t](w, xq, n);
    const double size = term_size(f, w, xq, n);

    /* 3: the twin against dot_f32 on the dequantized activations */
    act_dequant(at, xq, xd, n);
    const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
    const double wx = abs_products(f, w, xd, n);
    const float ref = tr->dot_f32(w, xd, n);
    const double bound_ref = 1e-5 * (wx + size) + offset_rounding(f, w, xq, n) + 1e-30;
    const bool ok_ref = isfinite(twin) && fabs((double)twin - (double)ref) <= bound_ref;
    CHECK(ok_ref, "%s n=%lld %s: scalar twin %.9g vs dot_f32 %.9g (bound %.3g)", slm_dtype_name((uint32_t)t),
          (long long)n, what, twin, ref, bound_ref);

    /* 2: every SIMD table against the twin, on the activations of its own quantizer */
    for (int isa = SLM_ISA_AVX2; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tables[isa];
        if (!k) continue;
        static uint8_t xk[X_MAX];
        k->quant_act[at](xf, xk, n);
        const float a = k->vec_dot[t](w, xk, n), b = sc->vec_dot[t](w, xk, n);
        const double bound = 1e-5 * term_size(f, w, xk, n) + 1e-30;
        const bool ok = isfinite(a) && fabs((double)a - (double)b) <= bound;
        CHECK(ok, "%s %s n=%lld %s: vec_dot %.9g vs scalar %.9g (bound %.3g)", k->name, slm_dtype_name((uint32_t)t),
              (long long)n, what, a, b, bound);
    }
}

static void check_vec_dot(void) {
    static uint8_t w[W_MAX];
    static float x[N_MAX];
    char what[96];
    for (int i = 0; i < SLM_GQ_N_TYPES; i++) {
        const int t = SLM_DT_GQ_FIRST + i;
        slm_gq_format f;
        slm_gq_format_of((uint32_t)t, &f);
        CHECK(slm_gq_type(f.bits, f.group, f.asym) == t, "type id of q%dg%d%s", f.bits, f.group, f.asym ? "a" : "");
        for (size_t ni = 0; ni < sizeof g_ns / sizeof g_ns[0]; ni++) {
            const int64_t n = g_ns[ni];
            for (int wk = 0; wk < W_KINDS; wk++) {
                make_weights(t, wk, w, n);
                for (int xk = 0; xk < X_KINDS; xk++) {
                    make_act(xk, x, n);
                    snprintf(what, sizeof what, "weights %s, activations %s", g_wnames[wk], g_xnames[xk]);
                    check_dots(t, &f, w, n, x, what);
                }
            }
        }
    }
}

/* Test 4: gemm of every table against its vec_dot for one shape. */
static void check_gemm_shape(int t, int64_t n, int nr, int nc) {
    const int at = slm_act_type((uint32_t)t);
    const size_t wb = gq_bytes(t, n), xb = act_bytes(at, n);
    const size_t ws = wb + 3, xs = xb + 5, ldy = (size_t)nr + 3; /* odd strides */
    uint8_t *w = malloc(ws * (size_t)nr), *xq = malloc(xs * (size_t)nc);
    float *x = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * ldy * (size_t)nc);
    if (!w || !xq || !x || !y) {
        CHECK(false, "out of memory");
        free(w), free(xq), free(x), free(y);
        return;
    }
    for (int r = 0; r < nr; r++) make_weights(t, r % 3 == 2 ? W_RAW_RANDOM : W_QUANT, w + (size_t)r * ws, n);
    const float sentinel = -12345.5f;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = g_tables[isa];
        if (!k) continue;
        if (isa == SLM_ISA_SCALAR && (size_t)nr * (size_t)nc > 1000) continue; /* a plain loop over vec_dot */
        for (int c = 0; c < nc; c++) {
            make_act(c % 4 == 3 ? X_LARGE : X_NORMAL, x, n);
            k->quant_act[at](x, xq + (size_t)c * xs, n);
        }
        for (size_t i = 0; i < ldy * (size_t)nc; i++) y[i] = sentinel;
        k->gemm[t](n, w, ws, nr, xq, xs, nc, y, ldy);
        int bad = 0;
        for (int c = 0; c < nc; c++)
            for (size_t r = 0; r < ldy; r++) {
                const float got = y[(size_t)c * ldy + r];
                if ((int)r >= nr) {
                    if (got != sentinel) bad++;
                    continue;
                }
                const uint8_t *wr = w + r * ws, *xr = xq + (size_t)c * xs;
                const float want = k->vec_dot[t](wr, xr, n);
                slm_gq_format f;
                slm_gq_format_of((uint32_t)t, &f);
                if (!(fabs((double)got - (double)want) <= 1e-6 * term_size(&f, wr, xr, n) + 1e-30)) bad++;
            }
        CHECK(bad == 0, "%s gemm %s n=%lld %dx%d: %d outputs differ from vec_dot or overwrite the padding", k->name,
              slm_dtype_name((uint32_t)t), (long long)n, nr, nc, bad);
    }
    free(w), free(xq), free(x), free(y);
}

static void check_gemm(void) {
    static const int shapes[][2] = {{1, 1}, {3, 5}, {17, 9}, {4, 4}, {5, 1}, {6, 7}};
    for (int i = 0; i < SLM_GQ_N_TYPES; i++) {
        const int t = SLM_DT_GQ_FIRST + i;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check_gemm_shape(t, 96, shapes[s][0], shapes[s][1]);
            check_gemm_shape(t, 576, shapes[s][0], shapes[s][1]);
        }
        check_gemm_shape(t, 576, 64, 256);
        /* rows longer than one chunk of the one-to-three-row path (64 sub-blocks), with tails */
        check_gemm_shape(t, 4160, 5, 1);
        check_gemm_shape(t, 8288, 6, 3);
        check_gemm_shape(t, 2080, 4, 2);
    }
}

int main(void) {
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) g_tables[isa] = slm_kernels_get((slm_isa)isa);
    CHECK(g_tables[SLM_ISA_SCALAR] != NULL, "no scalar kernel table");
    if (!g_tables[SLM_ISA_SCALAR]) return test_summary("qdot_g");
    for (int isa = SLM_ISA_AVX2; isa < SLM_ISA_COUNT; isa++)
        if (!g_tables[isa]) printf("qdot_g: %s not supported here, skipped\n", slm_isa_name((slm_isa)isa));
    check_tables();
    check_vec_dot();
    check_gemm();
    return test_summary("qdot_g");
}
