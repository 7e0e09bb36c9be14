/* test_cbt.c - the per-tensor codebook formats (core/cbt.h) and their kernels.
 *
 *   1. ids, names, activation type, row sizes 2 + n * b / 8, the codebook family's own
 *      functions answering no for these ids; random indices packed by slm_cbt_pack_row come
 *      back through an independent bit-level decoder written here from the layout in cbt.h
 *      (and through slm_cbt_index); the stored scale is the f16 of the given one;
 *   2. slm_cbt_to_float is s * tab[idx] of that decoder; slm_cbt_dot_f32 the double dot;
 *   3. slm_cbt_encode_row gives every weight the index a brute force over all k levels picks
 *      (least |v - s * tab[i]|, ties the lower index), on random tables with repeated entries,
 *      exact midpoints, huge and non-finite inputs, s = 0 and non-finite s; it is
 *      deterministic; slm_cbt_check_table rejects -128;
 *   4. for every kernel table this CPU runs (and the plain AVX-512 and VBMI kernels called
 *      directly): vec_dot_tab against the double dot of the dequantized row and dequantized Q8_0
 *      activations within 1e-5 of sum |w x|, and against the scalar twin; gemm_tab equals
 *      vec_dot_tab bit for bit on 1..7 rows x 1..9 activation rows with padded strides and
 *      sentinels around the outputs; the two AVX-512 lookups give identical bits. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cbt.h"
#include "kernels/qdot_cbt.h"
#include "core/codebook.h"
#include "core/dtype.h"
#include "kernels/qdot.h"
#include "test.h"

static uint64_t g_rng = 0x13198a2e03707344ull;
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
static int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

static const uint32_t g_types[] = {SLM_DT_CBT32, SLM_DT_CBT64, SLM_DT_CBT128, SLM_DT_CBT256};
static const int g_kk[] = {32, 64, 128, 256}, g_bits[] = {5, 6, 7, 8};
static const char *const g_names[] = {"cbt32", "cbt64", "cbt128", "cbt256"};
enum { N_MAX = 1536, ROW_MAX = 2 + N_MAX + 64 };

/* ---- the independent decoder (from the layout text of cbt.h) --------------------------------- */

static int bit_of(const uint8_t *bytes, int bit) { return (bytes[bit / 8] >> (bit % 8)) & 1; }

static int ref_index(const uint8_t *sub, int bits, int e) {
    if (bits == 8) return sub[e];
    int v = e < 16 ? (sub[e] & 15) : (sub[e - 16] >> 4); /* low four bits */
    if (bits == 5) return v | bit_of(sub + 16, e) << 4;
    const int b0 = 2 * (e / 8); /* bits 4-5: bits b0, b0 + 1 of plane byte e % 8 */
    v |= bit_of(sub + 16 + e % 8, b0) << 4 | bit_of(sub + 16 + e % 8, b0 + 1) << 5;
    if (bits == 7) v |= bit_of(sub + 24, e) << 6;
    return v;
}

static float ref_scale(const uint8_t *row) { return slm_f16_to_f32((uint16_t)(row[0] | row[1] << 8)); }

static int ref_row_index(const uint8_t *row, int bits, int64_t j) {
    return ref_index(row + 2 + (j / 32) * 4 * bits, bits, (int)(j % 32));
}

static void random_table(int8_t *tab, int k, int mode) {
    for (int i = 0; i < k; i++) tab[i] = (int8_t)rng_int(-127, 127);
    if (mode == 1) /* repeated entries: a few values only */
        for (int i = 0; i < k; i++) tab[i] = (int8_t)(rng_int(-3, 3) * 17);
    if (mode == 2) /* small ascending grid, with the extremes */
        for (int i = 0; i < k; i++) tab[i] = (int8_t)(i == 0 ? -127 : i == k - 1 ? 127 : (int)(i % 255) - k / 2);
}

/* ---- 1, 2: format, layout, reference decoding -------------------------------------------------- */

static uint8_t g_row[ROW_MAX], g_row2[ROW_MAX];
static uint8_t g_idx[N_MAX];
static float g_x[N_MAX], g_y[N_MAX];

static void test_format(void) {
    for (int t = 0; t < 4; t++) {
        const uint32_t ty = g_types[t];
        CHECK(ty == (uint32_t)(348 + t), "%s has id %u", g_names[t], ty);
        CHECK(slm_dtype_from_name(g_names[t]) == (int)ty, "%s resolves", g_names[t]);
        CHECK(!strcmp(slm_dtype_name(ty), g_names[t]), "name of %u", ty);
        CHECK(slm_act_type(ty) == SLM_DT_Q8_0, "%s takes q8_0 activations", g_names[t]);
        CHECK(slm_cbt_type(g_kk[t]) == (int)ty, "type for k=%d", g_kk[t]);
        slm_cbt_format f;
        CHECK(slm_cbt_format_of(ty, &f) && f.k == g_kk[t] && f.bits == g_bits[t] && f.sub == 4 * g_bits[t],
              "%s format", g_names[t]);
        CHECK(!slm_cb_format_of(ty, NULL) && slm_cb_traits(ty) == NULL && slm_cb_act_type(ty) < 0,
              "%s is not a per-row codebook type", g_names[t]);
        const slm_dtype_traits *tr = slm_dtype_get(ty);
        CHECK(tr && tr->block_size == 32 && tr->block_bytes == (size_t)(4 * g_bits[t]) && !tr->to_float &&
                  !tr->dot_f32 && !tr->from_float && !tr->check_rows,
              "%s traits", g_names[t]);
        static const int64_t ns[] = {32, 64, 96, 576, 1536};
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
            size_t b = 0, b2 = 0;
            const size_t want = (size_t)(2 + ns[i] * g_bits[t] / 8);
            CHECK(slm_row_bytes(ty, ns[i], &b) && b == want && slm_cbt_row_bytes(ty, ns[i], &b2) && b2 == want,
                  "%s: row of %lld is %zu bytes", g_names[t], (long long)ns[i], b);
        }
        size_t b = 0;
        CHECK(!slm_row_bytes(ty, 48, &b) && !slm_cbt_row_bytes(ty, 0, &b) && !slm_cbt_row_bytes(ty, -32, &b) &&
                  !slm_cbt_row_bytes(ty, 33, &b),
              "%s: bad lengths rejected", g_names[t]);
    }
    CHECK(slm_cbt_type(16) < 0 && slm_cbt_type(512) < 0, "no other k");
    CHECK(!slm_cbt_format_of(SLM_DT_CBT_FIRST - 1, NULL) && !slm_cbt_format_of(SLM_DT_CBT_FIRST + 4, NULL) &&
              slm_cbt_traits(SLM_DT_CB16) == NULL,
          "ids outside the range are not cbt");
    CHECK(slm_cb_traits(SLM_DT_CB16) != NULL, "cb16 still resolves to the per-row family");
}

static void test_layout(void) {
    static const int64_t ns[] = {32, 64, 576, 1536};
    for (int t = 0; t < 4; t++) {
        const uint32_t ty = g_types[t];
        int8_t tab[256];
        int idx_bad = 0, api_bad = 0, dec_bad = 0, dot_bad = 0, scale_bad = 0;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (int rep = 0; rep < 6; rep++) {
                const int64_t n = ns[ni];
                random_table(tab, g_kk[t], rep % 3);
                for (int64_t j = 0; j < n; j++)
                    g_idx[j] = (uint8_t)(rep == 0 ? g_kk[t] - 1 : rep == 1 ? (int)(j % g_kk[t]) : rng_int(0, g_kk[t] - 1));
                const float scale = rep == 3 ? 0.0f : (float)(0.001 + (double)(rng_next() % 1000) * 1e-4);
                memset(g_row, 0xA5, sizeof g_row);
                slm_cbt_pack_row(ty, scale, g_idx, g_row, n);
                size_t rb;
                slm_row_bytes(ty, n, &rb);
                scale_bad += ref_scale(g_row) != slm_f16_to_f32(slm_f32_to_f16(scale));
                scale_bad += g_row[rb] != 0xA5; /* nothing written past the row */
                for (int64_t j = 0; j < n; j++) {
                    idx_bad += ref_row_index(g_row, g_bits[t], j) != g_idx[j];
                    api_bad += slm_cbt_index(ty, g_row, j) != g_idx[j];
                }
                /* 2: to_float and dot_f32 */
                slm_cbt_to_float(ty, tab, g_row, g_y, n);
                const float s = ref_scale(g_row);
                double ref = 0.0, mag = 0.0;
                for (int64_t j = 0; j < n; j++) {
                    const float w = s * (float)tab[ref_row_index(g_row, g_bits[t], j)];
                    dec_bad += memcmp(&w, &g_y[j], sizeof w) != 0;
                    g_x[j] = rng_normal();
                    ref += (double)w * g_x[j];
                    mag += fabs((double)w * g_x[j]);
                }
                const double got = slm_cbt_dot_f32(ty, tab, g_row, g_x, n);
                dot_bad += !(fabs(got - ref) <= 1e-6 * mag + 1e-30);
            }
        CHECK(idx_bad == 0, "%s: %d indices differ from the independent decoder", g_names[t], idx_bad);
        CHECK(api_bad == 0, "%s: %d slm_cbt_index results differ", g_names[t], api_bad);
        CHECK(scale_bad == 0, "%s: scale / bounds wrong %d times", g_names[t], scale_bad);
        CHECK(dec_bad == 0, "%s: to_float differs from s * tab[idx] at %d weights", g_names[t], dec_bad);
        CHECK(dot_bad == 0, "%s: dot_f32 differs from the double dot %d times", g_names[t], dot_bad);
    }
}

/* ---- 3: encoding ------------------------------------------------------------------------------ */

/* The level of least |v - s tab[i]| (in double, of the float levels), ties the lower index. */
static int brute_nearest(const int8_t *tab, int k, float s, float v) {
    int best = 0;
    double bd = INFINITY;
    for (int i = 0; i < k; i++) {
        const double d = fabs((double)v - (double)(s * (float)tab[i]));
        if (d < bd) {
            bd = d;
            best = i;
        }
    }
    return best;
}

static int least_abs(const int8_t *tab, int k) {
    int best = 0;
    for (int i = 1; i < k; i++)
        if (abs(tab[i]) < abs(tab[best])) best = i;
    return best;
}

static void test_encode(void) {
    const int64_t n = 576;
    for (int t = 0; t < 4; t++) {
        const uint32_t ty = g_types[t];
        const int k = 32 << t; /* g_kk[t] */
        int8_t tab[256];
        int near_bad = 0, det_bad = 0, ties = 0;
        for (int rep = 0; rep < 12; rep++) {
            random_table(tab, k, rep % 3);
            /* powers of two keep levels and their midpoints exact: ties are real ties */
            const float s = rep % 4 == 0 ? 0.25f : rep % 4 == 1 ? -0.0625f : 0.0137f * (float)(rep + 1);
            const float sd = slm_f16_to_f32(slm_f32_to_f16(s));
            for (int64_t j = 0; j < n; j++) {
                const int a = rng_int(0, k - 1), b = rng_int(0, k - 1);
                switch (j % 6) {
                case 0: g_x[j] = sd * 0.5f * (float)(tab[a] + tab[b]); break; /* a midpoint (or a level) */
                case 1: g_x[j] = sd * (float)tab[a]; break;                    /* a level */
                case 2: g_x[j] = j % 12 == 2 ? 1e30f : -3e38f; break;          /* beyond every level */
                default: g_x[j] = 60.0f * fabsf(sd) * rng_normal(); break;
                }
            }
            slm_cbt_encode_row(ty, tab, s, g_x, g_row, n);
            slm_cbt_encode_row(ty, tab, s, g_x, g_row2, n);
            size_t rb;
            slm_row_bytes(ty, n, &rb);
            det_bad += memcmp(g_row, g_row2, rb) != 0;
            near_bad += ref_scale(g_row) != sd;
            for (int64_t j = 0; j < n; j++) {
                const int want = brute_nearest(tab, k, sd, g_x[j]);
                const int got = ref_row_index(g_row, g_bits[t], j);
                if (got != want && near_bad++ < 3)
                    fprintf(stderr, "  %s rep %d j %lld: v=%.9g index %d (%d) vs brute %d (%d)\n", g_names[t], rep,
                            (long long)j, g_x[j], got, tab[got], want, tab[want]);
                if (j % 6 == 0) {
                    const double d0 = fabs((double)g_x[j] - (double)(sd * (float)tab[want]));
                    int nbest = 0;
                    for (int i = 0; i < k; i++)
                        nbest += fabs((double)g_x[j] - (double)(sd * (float)tab[i])) == d0 &&
                                 tab[i] != tab[want];
                    ties += nbest > 0;
                }
            }
        }
        CHECK(near_bad == 0, "%s: %d weights not at the brute-force nearest level", g_names[t], near_bad);
        CHECK(det_bad == 0, "%s: encoding is not deterministic", g_names[t]);
        CHECK(ties > 50, "%s: only %d exact ties between distinct levels exercised", g_names[t], ties);

        /* s = 0, non-finite or beyond f16: scale 0, every index at the least |entry| */
        random_table(tab, k, 0);
        tab[k / 2] = 3;
        tab[k - 1] = -3; /* equal |value|: the lower index counts (unless a smaller |entry| exists) */
        const int least = least_abs(tab, k);
        static const float bad_s[] = {0.0f, -0.0f, NAN, INFINITY, -INFINITY, 1e6f};
        for (size_t si = 0; si < sizeof bad_s / sizeof *bad_s; si++) {
            for (int64_t j = 0; j < n; j++) g_x[j] = rng_normal();
            slm_cbt_encode_row(ty, tab, bad_s[si], g_x, g_row, n);
            int bad = ref_scale(g_row) != 0.0f;
            for (int64_t j = 0; j < n; j++) bad += ref_row_index(g_row, g_bits[t], j) != least;
            CHECK(bad == 0, "%s: s = %g: %d weights not at the least |entry| %d", g_names[t], (double)bad_s[si], bad,
                  least);
        }
        /* non-finite inputs count as 0 */
        for (int64_t j = 0; j < n; j++) g_x[j] = j % 3 == 0 ? NAN : j % 3 == 1 ? INFINITY : -INFINITY;
        slm_cbt_encode_row(ty, tab, 0.5f, g_x, g_row, n);
        const int zero_idx = brute_nearest(tab, k, 0.5f, 0.0f);
        int nf_bad = 0;
        for (int64_t j = 0; j < n; j++) nf_bad += ref_row_index(g_row, g_bits[t], j) != zero_idx;
        CHECK(nf_bad == 0, "%s: %d non-finite inputs not encoded as 0", g_names[t], nf_bad);

        /* table check */
        CHECK(slm_cbt_check_table(tab, k), "%s: a table in [-127, 127] passes", g_names[t]);
        tab[k - 1] = -128;
        CHECK(!slm_cbt_check_table(tab, k), "%s: -128 is rejected", g_names[t]);
        tab[k - 1] = 127;
        tab[0] = -127;
        CHECK(slm_cbt_check_table(tab, k), "%s: +-127 pass", g_names[t]);
    }
    CHECK(!slm_cbt_check_table(NULL, 32), "NULL table rejected");
}

/* ---- 4: kernels -------------------------------------------------------------------------------- */

enum { NR = 7, NC = 9, WS_PAD = 40, XS_PAD = 20 };
static uint8_t g_w[NR * (ROW_MAX + WS_PAD)];
static uint8_t g_a[NC * (N_MAX / 32 * 34 + XS_PAD)];
static float g_xs[NC][N_MAX], g_z[N_MAX];

/* A kernel set under test: a table's entries, or the AVX-512 functions called directly. */
typedef struct {
    const char *name;
    const slm_kernels *k;      /* table (NULL: direct) */
    int direct;                /* 1: plain AVX-512, 2: VBMI */
} kset;

static float kdot(const kset *ks, uint32_t ty, const int8_t *tab, const void *w, const void *x, int64_t n) {
    if (ks->k) return ks->k->vec_dot_tab[ty](tab, w, x, n);
    slm_cbt_format f;
    slm_cbt_format_of(ty, &f);
#if defined(__x86_64__)
    return ks->direct == 1 ? slm_cbt_dot_avx512(&f, tab, w, x, n) : slm_cbt_dot_vbmi2(&f, tab, w, x, n);
#else
    return 0.0f;
#endif
}

static void kgemm(const kset *ks, uint32_t ty, const int8_t *tab, int64_t n, const void *w, size_t ws, int nr,
                  const void *x, size_t xs, int nc, float *y, size_t ldy) {
    if (ks->k) {
        ks->k->gemm_tab[ty](tab, n, w, ws, nr, x, xs, nc, y, ldy);
        return;
    }
#if defined(__x86_64__)
    slm_cbt_format f;
    slm_cbt_format_of(ty, &f);
    if (ks->direct == 1) slm_cbt_gemm_avx512(&f, tab, n, w, ws, nr, x, xs, nc, y, ldy);
    else slm_cbt_gemm_vbmi2(&f, tab, n, w, ws, nr, x, xs, nc, y, ldy);
#endif
}

static void test_kernels(void) {
    static const int64_t ns[] = {32, 64, 96, 576, 1536};
    kset sets[6];
    int nsets = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernels *k = slm_kernels_get((slm_isa)isa);
        if (k) sets[nsets++] = (kset){k->name, k, 0};
    }
#if defined(__x86_64__) && defined(__GNUC__)
    const int have512 = slm_kernels_get(SLM_ISA_AVX512) != NULL;
    __builtin_cpu_init();
    if (have512) sets[nsets++] = (kset){"avx512-plain", NULL, 1};
    if (have512 && __builtin_cpu_supports("avx512vbmi")) sets[nsets++] = (kset){"avx512-vbmi", NULL, 2};
#endif
    const slm_dtype_traits *q8 = slm_dtype_get(SLM_DT_Q8_0);
    const slm_kernels *ksc = slm_kernels_get(SLM_ISA_SCALAR);
    int n_dots = 0, n_gemm = 0;
    for (int t = 0; t < 4; t++) {
        const uint32_t ty = g_types[t];
        const int k = g_kk[t];
        for (int si = 0; si < nsets; si++)
            if (sets[si].k)
                CHECK(sets[si].k->vec_dot_tab[ty] && sets[si].k->gemm_tab[ty] && sets[si].k->quant_act[SLM_DT_Q8_0],
                      "%s: %s has kernels", sets[si].name, g_names[t]);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            const int64_t n = ns[ni];
            int8_t tab[256];
            random_table(tab, k, ni == 1 ? 2 : 0);
            if (ni == 2) tab[rng_int(0, k - 1)] = -127;
            size_t rb;
            slm_row_bytes(ty, n, &rb);
            const size_t ws = rb + WS_PAD, xs = (size_t)(n / 32) * 34 + XS_PAD;
            for (int r = 0; r < NR; r++) {
                for (int64_t j = 0; j < n; j++)
                    g_idx[j] = (uint8_t)(r == 0 ? k - 1 : r == 1 ? 0 : rng_int(0, k - 1));
                const float s = r == 2 ? 0.0f : r == 3 ? -0.02f : (float)(rng_next() % 1000 + 1) * 1e-4f;
                slm_cbt_pack_row(ty, s, g_idx, g_w + (size_t)r * ws, n);
            }
            for (int si = 0; si < nsets; si++) {
                const kset *ks = &sets[si];
                const slm_kernels *qk = ks->k ? ks->k : slm_kernels_get(SLM_ISA_AVX512);
                for (int c = 0; c < NC; c++) {
                    for (int64_t j = 0; j < n; j++) g_xs[c][j] = c == 2 ? 0.0f : (c == 1 ? 1e3f : 1.0f) * rng_normal();
                    if (c == 4) g_xs[c][7] = 1e4f;
                    qk->quant_act[SLM_DT_Q8_0](g_xs[c], g_a + (size_t)c * xs, n);
                }
                int ref_bad = 0, twin_bad = 0;
                for (int r = 0; r < NR; r++)
                    for (int c = 0; c < NC; c++) {
                        const uint8_t *wr = g_w + (size_t)r * ws, *xr = g_a + (size_t)c * xs;
                        slm_cbt_to_float(ty, tab, wr, g_y, n);
                        q8->to_float(xr, g_z, n);
                        double ref = 0, mag = 0;
                        for (int64_t j = 0; j < n; j++) {
                            ref += (double)g_y[j] * g_z[j];
                            mag += fabs((double)g_y[j] * g_z[j]);
                        }
                        const double got = kdot(ks, ty, tab, wr, xr, n);
                        n_dots++;
                        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30) && ref_bad++ < 3)
                            fprintf(stderr, "  %s %s n=%lld r=%d c=%d: %.9g vs reference %.9g\n", ks->name, g_names[t],
                                    (long long)n, r, c, got, ref);
                        const double tw = ksc->vec_dot_tab[ty](tab, wr, xr, n);
                        twin_bad += !(fabs(got - tw) <= 1e-5 * mag + 1e-30);
                    }
                CHECK(ref_bad == 0, "%s %s n=%lld: %d dots differ from the dequantized reference", ks->name,
                      g_names[t], (long long)n, ref_bad);
                CHECK(twin_bad == 0, "%s %s n=%lld: %d dots differ from the scalar twin", ks->name, g_names[t],
                      (long long)n, twin_bad);

                static const int shapes[][2] = {{1, 1}, {1, 9}, {7, 1}, {3, 5}, {7, 9}, {2, 4}, {5, 8}, {4, 3}, {6, 7}};
                for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
                    const int nr = shapes[sh][0], nc = shapes[sh][1];
                    const size_t ldy = (size_t)nr + 3;
                    float y[(NR + 3) * (NC + 1) + 8];
                    for (size_t i = 0; i < sizeof y / sizeof *y; i++) y[i] = -777.0f;
                    kgemm(ks, ty, tab, n, g_w, ws, nr, g_a, xs, nc, y + 1, ldy);
                    n_gemm++;
                    int bad = 0, sent = 0;
                    for (int c = 0; c < nc; c++)
                        for (size_t r = 0; r < ldy; r++) {
                            const float v = y[1 + (size_t)c * ldy + r];
                            if (r < (size_t)nr) {
                                const float d = kdot(ks, ty, tab, g_w + r * ws, g_a + (size_t)c * xs, n);
                                bad += memcmp(&v, &d, sizeof v) != 0;
                            } else {
                                sent += v != -777.0f;
                            }
                        }
                    sent += y[0] != -777.0f;
                    for (size_t i = 1 + (size_t)nc * ldy; i < sizeof y / sizeof *y; i++) sent += y[i] != -777.0f;
                    CHECK(bad == 0 && sent == 0, "%s %s n=%lld gemm %dx%d: %d differ from vec_dot, %d sentinels hit",
                          ks->name, g_names[t], (long long)n, nr, nc, bad, sent);
                }
            }
            /* the two AVX-512 lookups: identical bits */
            if (nsets >= 2 && !sets[nsets - 1].k && !sets[nsets - 2].k) {
                int diff = 0;
                for (int r = 0; r < NR; r++)
                    for (int c = 0; c < NC; c++) {
                        const float a = kdot(&sets[nsets - 2], ty, tab, g_w + (size_t)r * ws, g_a + (size_t)c * xs, n);
                        const float b = kdot(&sets[nsets - 1], ty, tab, g_w + (size_t)r * ws, g_a + (size_t)c * xs, n);
                        diff += memcmp(&a, &b, sizeof a) != 0;
                    }
                CHECK(diff == 0, "%s n=%lld: plain AVX-512 and VBMI differ in %d dots", g_names[t], (long long)n, diff);
            }
        }
    }
    printf("kernel sets:");
    for (int si = 0; si < nsets; si++) printf(" %s", sets[si].name);
    printf("; %d dots, %d gemm calls checked\n", n_dots, n_gemm);
}

int main(void) {
    test_format();
    test_layout();
    test_encode();
    test_kernels();
    return test_summary("cbt");
}
