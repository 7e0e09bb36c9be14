/* test_gq.c - the group-wise formats: ids and names, row sizes, the packed layout against a
 * decoder written here from the format description, round-trip error bounds, the clipping
 * search, and the byte identity of q4g32 / q4g32a / q8g32 with q4_0 / q4_1 / q8_0. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/gq.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float urand(void) { return (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)); }
static float gauss(void) {
    float u = urand(), v = urand();
    if (u < 1e-12f) u = 1e-12f;
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const int bits_list[] = {2, 3, 4, 8}, groups[] = {32, 64, 128};

/* ---- an independent decoder, from the description in gq.h -------------------------------- */

static float h2f(const uint8_t *p) { return slm_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static int spec_quant(int bits, const uint8_t *sb, int e) {
    if (bits == 8) return (int)(int8_t)sb[e];
    if (bits == 4) return e < 16 ? sb[e] & 0xf : sb[e - 16] >> 4;
    int lo2 = (sb[e % 8] >> (2 * (e / 8))) & 3;
    if (bits == 2) return lo2;
    uint32_t word = (uint32_t)sb[8] | (uint32_t)sb[9] << 8 | (uint32_t)sb[10] << 16 | (uint32_t)sb[11] << 24;
    return lo2 | (int)((word >> e) & 1) << 2;
}

static void spec_decode(int bits, int group, bool asym, const uint8_t *p, int64_t n, float *y) {
    for (int64_t off = 0; off < n;) {
        int g = n - off < group ? (int)(n - off) : group;
        float d = h2f(p), m = asym ? h2f(p + 2) : (bits == 8 ? 0.0f : -(float)(1 << (bits - 1)) * d);
        p += asym ? 4 : 2;
        for (int s = 0; s < g; s += 32) {
            for (int e = 0; e < 32; e++) y[off + s + e] = d * (float)spec_quant(bits, p, e) + m;
            p += bits * 4;
        }
        off += g;
    }
}

static void test_ids(void) {
    int seen = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int a = 0; a < 2; a++) {
                int t = slm_gq_type(bits_list[bi], groups[gi], a);
                slm_gq_format f;
                CHECK(t >= SLM_DT_GQ_FIRST && t < SLM_DT_COUNT && slm_gq_format_of((uint32_t)t, &f), "id %d", t);
                CHECK(f.bits == bits_list[bi] && f.group == groups[gi] && f.asym == (a == 1), "format of %d", t);
                char name[16];
                snprintf(name, sizeof name, "q%dg%d%s", bits_list[bi], groups[gi], a ? "a" : "");
                CHECK(!strcmp(slm_dtype_name((uint32_t)t), name), "name %s vs %s", slm_dtype_name((uint32_t)t), name);
                CHECK(slm_dtype_from_name(name) == t, "from name %s", name);
                const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
                CHECK(tr && tr->to_float && tr->dot_f32 && tr->from_float && tr->block_size == 32, "traits %s", name);
                seen++;
            }
    CHECK(seen == SLM_GQ_N_TYPES, "24 formats");
    CHECK(slm_gq_type(5, 32, false) < 0 && slm_gq_type(4, 256, false) < 0 && slm_gq_type(4, 16, true) < 0,
          "unsupported combinations");
    CHECK(!slm_gq_format_of(SLM_DT_Q4_0, NULL) && !slm_gq_format_of(SLM_DT_GQ_FIRST + SLM_GQ_N_TYPES, NULL),
          "other ids are not group formats");
    /* the id after the group formats starts the sparse formats */
    CHECK(SLM_DT_GQ_FIRST + SLM_GQ_N_TYPES == SLM_DT_SP_FIRST && slm_dtype_get(100) == NULL, "unknown ids");
    CHECK(slm_dtype_from_name("q4g") < 0 && slm_dtype_from_name("q4g1280") < 0, "bad names");
}

static void test_row_bytes(void) {
    size_t b;
    /* q4g128, 576 = 4 * 128 + 64: 4 * (2 + 64) + (2 + 32) */
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(4, 128, false), 576, &b) && b == 298, "q4g128 576: %zu", b);
    /* q3g128a: 4 * (4 + 4 * 12) + (4 + 2 * 12) */
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(3, 128, true), 576, &b) && b == 236, "q3g128a 576: %zu", b);
    /* q2g64a 1536: 24 * (4 + 2 * 8) */
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(2, 64, true), 1536, &b) && b == 480, "q2g64a: %zu", b);
    /* q8g32: same bytes as q8_0 */
    size_t b2;
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(8, 32, false), 4096, &b) && slm_row_bytes(SLM_DT_Q8_0, 4096, &b2) &&
              b == b2, "q8g32 = q8_0 size");
    CHECK(!slm_row_bytes((uint32_t)slm_gq_type(4, 64, false), 48, &b), "48 is not a multiple of 32");
    CHECK(!slm_row_bytes((uint32_t)slm_gq_type(4, 64, false), -32, &b), "negative");
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(4, 64, false), 0, &b) && b == 0, "empty row");
    CHECK(slm_row_bytes((uint32_t)slm_gq_type(4, 32, false), INT64_MAX / 32 * 32, &b) &&
              b == (size_t)(INT64_MAX / 32) * 18, "a huge row");
    CHECK(!slm_row_bytes((uint32_t)slm_gq_type(8, 32, false), INT64_MAX / 32 * 32, &b), "a row too large");
    /* bits per weight on a long row */
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int a = 0; a < 2; a++) {
                const int t = slm_gq_type(bits_list[bi], groups[gi], a);
                CHECK(slm_row_bytes((uint32_t)t, 3840, &b), "size");
                const double bpw = 8.0 * (double)b / 3840, want = bits_list[bi] + 16.0 * (1 + a) / groups[gi];
                CHECK(fabs(bpw - want) < 1e-9, "%s: %.4f bpw, expected %.4f", slm_dtype_name((uint32_t)t), bpw, want);
            }
}

/* Random packed rows decode as the description says (dequantize and dot). */
static void test_decode_spec(void) {
    enum { N = 352 }; /* 2 * 128 + 96: a short last group for 64 and 128 */
    uint8_t buf[N * 2];
    float y[N], ref[N], x[N];
    for (int i = 0; i < N; i++) x[i] = gauss();
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int a = 0; a < 2; a++) {
                const int t = slm_gq_type(bits_list[bi], groups[gi], a);
                const slm_dtype_traits *tr = slm_dtype_get((uint32_t)t);
                size_t nb;
                slm_row_bytes((uint32_t)t, N, &nb);
                for (int rep = 0; rep < 4; rep++) {
                    for (size_t i = 0; i < nb; i++) buf[i] = (uint8_t)rnd();
                    /* finite, moderate scales at every group header */
                    for (int64_t off = 0, p = 0; off < N;) {
                        int g = N - off < groups[gi] ? (int)(N - off) : groups[gi];
                        uint16_t h = slm_f32_to_f16((urand() - 0.5f) * 0.1f);
                        buf[p] = (uint8_t)h;
                        buf[p + 1] = (uint8_t)(h >> 8);
                        if (a) {
                            h = slm_f32_to_f16(urand() - 0.5f);
                            buf[p + 2] = (uint8_t)h;
                            buf[p + 3] = (uint8_t)(h >> 8);
                        }
                        p += (a ? 4 : 2) + g / 32 * bits_list[bi] * 4;
                        off += g;
                    }
                    tr->to_float(buf, y, N);
                    spec_decode(bits_list[bi], groups[gi], a, buf, N, ref);
                    int bad = 0;
                    double dot = 0;
                    for (int i = 0; i < N; i++) {
                        bad += y[i] != ref[i];
                        dot += (double)ref[i] * x[i];
                    }
                    CHECK(bad == 0, "%s: %d values differ from the description", tr->name, bad);
                    const float got = tr->dot_f32(buf, x, N);
                    CHECK(fabs(got - dot) <= 1e-5 * (fabs(dot) + 1.0), "%s dot %g vs %g", tr->name, got, dot);
                }
            }
}

/* Exactly representable values come back exactly, in the bytes the description gives. */
static void test_exact_grid(void) {
    for (int bi = 0; bi < 4; bi++) {
        const int bits = bits_list[bi], levels = 1 << bits;
        /* symmetric: d = 0.25, quants u - o for u in 0..levels-1, the most negative present */
        const int t = slm_gq_type(bits, 64, false);
        float x[64], y[64];
        int want[64];
        for (int j = 0; j < 64; j++) {
            int u = (int)(rnd() % (uint64_t)(bits == 8 ? 255 : levels)); /* 8 bits: -127..127 */
            if (j == 5) u = 0;
            const int s = bits == 8 ? u - 127 : u - levels / 2;
            want[j] = bits == 8 ? s : u;
            x[j] = 0.25f * (float)s;
        }
        uint8_t q[64 + 2];
        slm_gq_quantize_row((uint32_t)t, x, q, 64, NULL);
        slm_dtype_get((uint32_t)t)->to_float(q, y, 64);
        int bad = 0;
        for (int j = 0; j < 64; j++) bad += y[j] != x[j] || spec_quant(bits, q + 2 + (j / 32) * bits * 4, j % 32) != want[j];
        CHECK(h2f(q) == 0.25f, "q%d scale %g", bits, h2f(q));
        CHECK(bad == 0, "q%dg64: %d grid values not reproduced", bits, bad);
    }
}

/* Round to nearest: every weight within half a step of its group's grid (plus the f16
 * rounding of the scale and offset), or within one step where the symmetric grid is one level
 * short on the side opposite the largest magnitude. */
static void test_round_trip_bounds(void) {
    enum { N = 576 };
    float x[N], y[N];
    uint8_t q[N * 2];
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int a = 0; a < 2; a++) {
                const int bits = bits_list[bi], group = groups[gi];
                const int t = slm_gq_type(bits, group, a);
                int worst_bad = 0;
                double err2 = 0, ref2 = 0;
                for (int rep = 0; rep < 20; rep++) {
                    const float scale = rep % 5 == 0 ? 1e-3f : rep % 5 == 1 ? 30.0f : 1.0f;
                    const float shift = rep % 4 == 3 ? 2.0f : 0.0f;
                    for (int i = 0; i < N; i++) x[i] = scale * (gauss() + shift);
                    slm_gq_quantize_row((uint32_t)t, x, q, N, NULL);
                    slm_dtype_get((uint32_t)t)->to_float(q, y, N);
                    const uint8_t *p = q;
                    for (int off = 0; off < N;) {
                        const int g = N - off < group ? N - off : group;
                        const float d = fabsf(h2f(p)), m = a ? fabsf(h2f(p + 2)) : 0.0f;
                        const double slack = 1e-3 * d + ((double)m + (1 << bits) * (double)d) / 2048.0 + 1e-30;
                        const double bound = (a || bits == 8) ? 0.5 * d + slack : d + slack;
                        for (int j = 0; j < g; j++) {
                            const double e = fabs((double)x[off + j] - y[off + j]);
                            if (e > bound) worst_bad++;
                            err2 += e * e;
                            ref2 += (double)x[off + j] * x[off + j];
                        }
                        p += (a ? 4 : 2) + g / 32 * bits * 4;
                        off += g;
                    }
                }
                CHECK(worst_bad == 0, "%s: %d weights beyond the bound", slm_dtype_name((uint32_t)t), worst_bad);
                /* sanity of the overall error for Gaussian data: a b-bit grid over about 5 sigma */
                const double rel = sqrt(err2 / ref2), lim = 6.0 / (double)(1 << bits);
                CHECK(rel < lim, "%s: relative rmse %.4f above %.4f", slm_dtype_name((uint32_t)t), rel, lim);
            }
}

/* Clipping search: never worse than round to nearest, clearly better at low bits on weights
 * with outliers; importance weights steer it. */
static void test_clip_search(void) {
    enum { N = 1536 };
    static float x[N], imp[N];
    uint8_t q1[N * 2], q2[N * 2], q3[N * 2];
    for (int bi = 0; bi < 3; bi++)
        for (int a = 0; a < 2; a++) {
            const int t = slm_gq_type(bits_list[bi], 128, a);
            double e_rtn = 0, e_clip = 0;
            int worse = 0;
            for (int rep = 0; rep < 8; rep++) {
                for (int i = 0; i < N; i++) x[i] = gauss() * (rnd() % 50 == 0 ? 6.0f : 1.0f);
                slm_gq_quantize_row((uint32_t)t, x, q1, N, NULL);
                const slm_gq_opts o = {.clip_search = true};
                slm_gq_quantize_row((uint32_t)t, x, q2, N, &o);
                const double r = slm_gq_row_error((uint32_t)t, x, q1, N, NULL);
                const double c = slm_gq_row_error((uint32_t)t, x, q2, N, NULL);
                worse += c > r * (1 + 1e-9);
                e_rtn += r;
                e_clip += c;
            }
            CHECK(worse == 0, "%s: clip search worse than round to nearest on %d rows", slm_dtype_name((uint32_t)t),
                  worse);
            CHECK(e_clip < 0.9 * e_rtn, "%s: clip search error %.4g vs %.4g", slm_dtype_name((uint32_t)t), e_clip, e_rtn);
        }
    /* importance: weights with large importance are reproduced better */
    const int t = slm_gq_type(3, 128, true);
    for (int i = 0; i < N; i++) {
        x[i] = gauss() * (i % 97 == 0 ? 5.0f : 1.0f);
        imp[i] = i % 8 == 0 ? 100.0f : 1.0f;
    }
    const slm_gq_opts plain = {.clip_search = true}, weighted = {.clip_search = true, .importance = imp};
    slm_gq_quantize_row((uint32_t)t, x, q1, N, NULL);
    slm_gq_quantize_row((uint32_t)t, x, q2, N, &plain);
    slm_gq_quantize_row((uint32_t)t, x, q3, N, &weighted);
    const double w_rtn = slm_gq_row_error((uint32_t)t, x, q1, N, imp);
    const double w_plain = slm_gq_row_error((uint32_t)t, x, q2, N, imp);
    const double w_imp = slm_gq_row_error((uint32_t)t, x, q3, N, imp);
    CHECK(w_imp <= w_rtn && w_imp < w_plain, "importance-weighted error %.4g (plain search %.4g, rtn %.4g)", w_imp,
          w_plain, w_rtn);
    /* the search is deterministic */
    slm_gq_quantize_row((uint32_t)t, x, q1, N, &weighted);
    size_t nb;
    slm_row_bytes((uint32_t)t, N, &nb);
    CHECK(memcmp(q1, q3, nb) == 0, "deterministic");
}

/* q4g32 is q4_0's block, q4g32a q4_1's and q8g32 q8_0's: the same bytes decode the same. */
static void test_llama_identity(void) {
    enum { N = 256 };
    float x[N], y1[N], y2[N];
    uint8_t q[N * 2];
    const struct {
        int gq;
        uint32_t ll;
    } pairs[] = {{slm_gq_type(4, 32, false), SLM_DT_Q4_0}, {slm_gq_type(4, 32, true), SLM_DT_Q4_1},
                 {slm_gq_type(8, 32, false), SLM_DT_Q8_0}};
    for (size_t k = 0; k < 3; k++) {
        int bad = 0;
        for (int rep = 0; rep < 10; rep++) {
            for (int i = 0; i < N; i++) x[i] = gauss();
            const slm_gq_opts o = {.clip_search = rep & 1};
            slm_gq_quantize_row((uint32_t)pairs[k].gq, x, q, N, &o);
            slm_dtype_get((uint32_t)pairs[k].gq)->to_float(q, y1, N);
            slm_dtype_get(pairs[k].ll)->to_float(q, y2, N);
            for (int i = 0; i < N; i++) bad += y1[i] != y2[i]; /* (+0 and -0 are equal) */
        }
        size_t b1, b2;
        slm_row_bytes((uint32_t)pairs[k].gq, N, &b1);
        slm_row_bytes(pairs[k].ll, N, &b2);
        CHECK(bad == 0 && b1 == b2, "%s decodes as %s", slm_dtype_name((uint32_t)pairs[k].gq),
              slm_dtype_name(pairs[k].ll));
    }
}

/* Non-finite and degenerate input: defined results, no crash (run under UBSan too). */
static void test_degenerate(void) {
    float x[128], y[128];
    uint8_t q[128 * 2];
    for (int bi = 0; bi < 4; bi++)
        for (int a = 0; a < 2; a++) {
            const int t = slm_gq_type(bits_list[bi], 128, a);
            const slm_gq_opts o = {.clip_search = true};
            for (int i = 0; i < 128; i++) x[i] = 0.0f;
            slm_gq_quantize_row((uint32_t)t, x, q, 128, &o);
            slm_dtype_get((uint32_t)t)->to_float(q, y, 128);
            int nz = 0;
            for (int i = 0; i < 128; i++) nz += y[i] != 0.0f;
            CHECK(nz == 0, "%s: zeros stay zero", slm_dtype_name((uint32_t)t));
            for (int i = 0; i < 128; i++) x[i] = 3.0f;
            slm_gq_quantize_row((uint32_t)t, x, q, 128, NULL);
            slm_dtype_get((uint32_t)t)->to_float(q, y, 128);
            CHECK(fabsf(y[7] - 3.0f) < 3e-3f, "%s: constant group %g", slm_dtype_name((uint32_t)t), y[7]);
            for (int i = 0; i < 128; i++) x[i] = i % 3 ? NAN : (i % 2 ? INFINITY : -1e30f);
            slm_gq_quantize_row((uint32_t)t, x, q, 128, NULL);
            slm_gq_quantize_row((uint32_t)t, x, q, 128, &o); /* only must not trap (UBSan) */
        }
}

int main(void) {
    test_ids();
    test_row_bytes();
    test_decode_spec();
    test_exact_grid();
    test_round_trip_bounds();
    test_clip_search();
    test_llama_identity();
    test_degenerate();
    return test_summary("gq");
}
