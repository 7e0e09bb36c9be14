/* test_dtype.c - dtype traits, block formats and conversions against an independent oracle.
 *
 * tests/data/dtype_vectors.bin comes from tests/reference/gen_dtype_vectors.py (numpy and the
 * `gguf` package's own dequantize / quantize); its format is described in that script. The
 * checks:
 *   - to_float of every supported type is bit-exact against gguf.quants.dequantize (our
 *     dequantizers perform the same float32 operations in the same order, so no ulp slack);
 *   - dot_f32 against a double dot of the reference floats with a random x (relative
 *     tolerance 1e-5 of sum |w*x|), and exactly equal to to_float with one-hot x;
 *   - from_float bytes equal to gguf.quants.quantize for q8_0/q4_0/q4_1/q5_0/q5_1;
 *   - from_float -> to_float round trips within per-type error bounds;
 *   - f16 -> f32 for all 65536 patterns, f32 -> f16/bf16 on probe values (numpy), and the
 *     round-to-nearest-even property of both on a sweep of the f32 range;
 *   - block sizes against gguf's table, slm_row_bytes edge cases, the names table.
 * Run from the repository root. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/cbt.h"
#include "core/codebook.h"
#include "core/gq.h"
#include "core/sparse.h"
#include "test.h"

#define VECTORS_PATH "tests/data/dtype_vectors.bin"

enum { K_DEQUANT = 1, K_QUANT, K_F16_TO_F32, K_F32_TO_F16, K_F32_TO_BF16, K_SIZES };

/* ---- small helpers ---------------------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

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
    double u1 = ((double)(rng_next() >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(rng_next() >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* ---- sections from the reference file ---------------------------------------------------- */

static void check_dequant(uint32_t type, uint32_t count, uint32_t bs, uint32_t bb,
                          const uint8_t *p, size_t len) {
    const slm_dtype_traits *tr = slm_dtype_get(type);
    const char *name = slm_dtype_name(type);
    CHECK(tr != NULL, "dequant: type %u unknown", type);
    if (!tr) return;
    CHECK(tr->block_size == bs && tr->block_bytes == bb, "%s: block %lld/%zu, gguf says %u/%u",
          name, (long long)tr->block_size, tr->block_bytes, bs, bb);
    const size_t n = (size_t)count * bs, raw_bytes = (size_t)count * bb;
    CHECK(len == raw_bytes + 4 * n, "%s: dequant payload %zu bytes", name, len);
    CHECK(tr->to_float != NULL && tr->dot_f32 != NULL, "%s: no to_float/dot_f32", name);
    if (len != raw_bytes + 4 * n || !tr->to_float || !tr->dot_f32) return;

    const uint8_t *raw = p, *exp_bytes = p + raw_bytes;
    float *exp = malloc(n * sizeof *exp), *out = malloc((n + 8) * sizeof *out);
    float *x = malloc(n * sizeof *x);
    uint8_t *shifted = malloc(raw_bytes + 1);
    if (!exp || !out || !x || !shifted) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) exp[i] = bitsf(rd32(exp_bytes + 4 * i));

    /* to_float: bit-exact, writes exactly n floats */
    for (size_t i = 0; i < n + 8; i++) out[i] = -12345.0f;
    tr->to_float(raw, out, (int64_t)n);
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (fbits(out[i]) != fbits(exp[i]) && bad++ == 0) first = i;
    CHECK(bad == 0, "%s to_float: %zu of %zu values differ; first at %zu (block %zu): got %.9g "
          "want %.9g", name, bad, n, first, first / bs, first < n ? out[first] : 0.0,
          first < n ? exp[first] : 0.0);
    bool sentinel_ok = true;
    for (size_t i = n; i < n + 8; i++) sentinel_ok &= out[i] == -12345.0f;
    CHECK(sentinel_ok, "%s to_float wrote past n", name);

    /* the same from a misaligned source */
    memcpy(shifted + 1, raw, raw_bytes);
    tr->to_float(shifted + 1, out, (int64_t)n);
    CHECK(memcmp(out, exp, n * sizeof *out) == 0, "%s to_float from odd address differs", name);

    /* dot_f32 against a double dot of the reference values */
    for (size_t i = 0; i < n; i++) x[i] = rng_normal();
    double ref = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        ref += (double)exp[i] * x[i];
        mag += fabs((double)exp[i] * x[i]);
    }
    const double got = tr->dot_f32(raw, x, (int64_t)n);
    CHECK(fabs(got - ref) <= 1e-5 * mag + 1e-30, "%s dot_f32 %.9g, reference %.9g (|w*x| %.3g)",
          name, got, ref, mag);
    /* one block at a time */
    bool blocks_ok = true;
    for (uint32_t b = 0; b < count; b++) {
        double r = 0.0, m = 0.0;
        for (size_t i = (size_t)b * bs; i < (size_t)(b + 1) * bs; i++) {
            r += (double)exp[i] * x[i];
            m += fabs((double)exp[i] * x[i]);
        }
        const double g = tr->dot_f32(raw + (size_t)b * bb, x + (size_t)b * bs, bs);
        if (!(fabs(g - r) <= 1e-5 * m + 1e-30)) blocks_ok = false;
    }
    CHECK(blocks_ok, "%s dot_f32 of single blocks differs from the reference", name);
    /* one-hot x picks out one dequantized value exactly */
    memset(x, 0, n * sizeof *x);
    bool onehot_ok = true;
    for (size_t i = 0; i < n; i += 7) {
        x[i] = 1.0f;
        if (fbits(tr->dot_f32(raw, x, (int64_t)n)) != fbits(exp[i] + 0.0f)) onehot_ok = false;
        x[i] = 0.0f;
    }
    CHECK(onehot_ok, "%s dot_f32 with one-hot x differs from to_float", name);
    CHECK(tr->dot_f32(raw, x, 0) == 0.0f, "%s dot_f32 of n=0 not 0", name);

done:
    free(exp);
    free(out);
    free(x);
    free(shifted);
}

static void check_quant(uint32_t type, uint32_t count, uint32_t bs, uint32_t bb,
                        const uint8_t *p, size_t len) {
    const slm_dtype_traits *tr = slm_dtype_get(type);
    const char *name = slm_dtype_name(type);
    CHECK(tr != NULL && tr->from_float != NULL, "quant: type %u has no from_float", type);
    if (!tr || !tr->from_float) return;
    const size_t nblk = count / bs, qbytes = nblk * bb;
    CHECK(count % bs == 0 && len == 4 * (size_t)count + qbytes, "%s: quant payload %zu", name,
          len);
    if (count % bs != 0 || len != 4 * (size_t)count + qbytes) return;
    float *x = malloc((size_t)count * sizeof *x);
    uint8_t *q = malloc(qbytes + 1), *q2 = malloc(qbytes + 1);
    if (!x || !q || !q2) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) x[i] = bitsf(rd32(p + 4 * i));
    const uint8_t *want = p + 4 * (size_t)count;
    q[qbytes] = 0xA5;
    tr->from_float(x, q, count);
    size_t bad = 0, first = nblk;
    for (size_t b = 0; b < nblk; b++)
        if (memcmp(q + b * bb, want + b * bb, bb) != 0 && bad++ == 0) first = b;
    CHECK(bad == 0, "%s from_float: %zu of %zu blocks differ from gguf.quants.quantize, first "
          "block %zu", name, bad, nblk, first);
    CHECK(q[qbytes] == 0xA5, "%s from_float wrote past the last block", name);
    /* deterministic, and independent of the destination's alignment */
    tr->from_float(x, q2 + 1, count);
    CHECK(memcmp(q, q2 + 1, qbytes) == 0, "%s from_float not repeatable", name);
done:
    free(x);
    free(q);
    free(q2);
}

static void check_f16_table(uint32_t count, const uint8_t *p, size_t len) {
    CHECK(count == 65536 && len == 3 * 65536u, "f16 table: count %u, %zu bytes", count, len);
    if (count != 65536 || len != 3 * 65536u) return;
    size_t bad = 0, bad_rt = 0;
    unsigned first = 0, first_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const uint32_t want = ((uint32_t)p[3 * h] | ((uint32_t)p[3 * h + 1] << 8) |
                               ((uint32_t)p[3 * h + 2] << 16)) << 8;
        const float f = slm_f16_to_f32((uint16_t)h);
        if (fbits(f) != want && bad++ == 0) first = h;
        /* back to f16: exact for every non-NaN; NaN stays NaN with its sign, quiet NaN exact */
        const uint16_t back = slm_f32_to_f16(f);
        const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        bool ok;
        if (!is_nan) ok = back == h;
        else if (h & 0x200) ok = back == h;
        else ok = (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000);
        if (!ok && bad_rt++ == 0) first_rt = h;
    }
    CHECK(bad == 0, "f16 -> f32: %zu of 65536 patterns differ from numpy, first 0x%04x", bad,
          first);
    CHECK(bad_rt == 0, "f16 -> f32 -> f16: %zu patterns do not round trip, first 0x%04x",
          bad_rt, first_rt);
}

static bool is_signaling_nan32(uint32_t u) {
    return (u & 0x7fffffffu) > 0x7f800000u && !(u & 0x00400000u);
}

static void check_f32_to_half(int kind, uint32_t count, const uint8_t *p, size_t len) {
    const bool bf = kind == K_F32_TO_BF16;
    const char *what = bf ? "f32 -> bf16" : "f32 -> f16";
    CHECK(len == 6 * (size_t)count, "%s: payload %zu", what, len);
    if (len != 6 * (size_t)count) return;
    size_t bad = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint32_t u = rd32(p + 4 * i);
        const uint16_t want = rd16(p + 4 * (size_t)count + 2 * i);
        const uint16_t got = bf ? slm_f32_to_bf16(bitsf(u)) : slm_f32_to_f16(bitsf(u));
        bool ok = got == want;
        if (!ok && !bf && is_signaling_nan32(u)) {
            /* numpy keeps a signaling f16 NaN; we quiet it (as the F16C instructions do) */
            ok = (got & 0x7e00) == 0x7e00 && (got & 0x8000) == (want & 0x8000);
        }
        if (!ok && bad++ == 0)
            fprintf(stderr, "%s: first mismatch 0x%08x (%.9g): got 0x%04x want 0x%04x\n", what,
                    u, bitsf(u), got, want);
    }
    CHECK(bad == 0, "%s: %zu of %u probe values differ from numpy", what, bad, count);
}

static void check_sizes(uint32_t count, const uint8_t *p, size_t len) {
    CHECK(len == 12 * (size_t)count, "sizes: payload %zu", len);
    if (len != 12 * (size_t)count) return;
    for (uint32_t i = 0; i < count; i++) {
        const uint32_t t = rd32(p + 12 * i), bs = rd32(p + 12 * i + 4), bb = rd32(p + 12 * i + 8);
        const slm_dtype_traits *tr = slm_dtype_get(t);
        CHECK(tr != NULL, "sizes: type %u unknown", t);
        if (!tr) continue;
        if (t == SLM_DT_Q8_1) {
            /* gguf-py lists 40 bytes (an older layout with two f32 fields); llama.cpp's current
             * block_q8_1 holds two f16 fields: 36 bytes. We follow llama.cpp. */
            CHECK(tr->block_size == 32 && tr->block_bytes == 36 && bs == 32 &&
                      (bb == 36 || bb == 40),
                  "q8_1 sizes: ours %lld/%zu, gguf %u/%u", (long long)tr->block_size,
                  tr->block_bytes, bs, bb);
            continue;
        }
        CHECK(tr->block_size == bs && tr->block_bytes == bb, "%s: block %lld/%zu, gguf %u/%u",
              tr->name, (long long)tr->block_size, tr->block_bytes, bs, bb);
    }
}

static void check_vectors(void) {
    size_t len = 0;
    uint8_t *data = read_file(VECTORS_PATH, &len);
    CHECK(data != NULL, "cannot read %s (run from the repository root)", VECTORS_PATH);
    if (!data) return;
    CHECK(len >= 16 && memcmp(data, "SLMDTVEC", 8) == 0 && rd32(data + 8) == 1,
          "%s: bad header", VECTORS_PATH);
    if (len < 16 || memcmp(data, "SLMDTVEC", 8) != 0 || rd32(data + 8) != 1) {
        free(data);
        return;
    }
    const uint32_t nsec = rd32(data + 12);
    size_t off = 16;
    int seen[8] = {0};
    int dequant_types[SLM_DT_COUNT] = {0}, quant_types[SLM_DT_COUNT] = {0};
    for (uint32_t s = 0; s < nsec; s++) {
        if (len - off < 24) {
            CHECK(0, "section %u: truncated header", s);
            break;
        }
        const uint8_t *h = data + off;
        const uint32_t kind = rd32(h), type = rd32(h + 4), count = rd32(h + 8);
        const uint32_t bs = rd32(h + 12), bb = rd32(h + 16), plen = rd32(h + 20);
        off += 24;
        if (len - off < plen) {
            CHECK(0, "section %u: truncated payload", s);
            break;
        }
        const uint8_t *p = data + off;
        off += plen;
        if (kind < 8) seen[kind]++;
        switch (kind) {
        case K_DEQUANT:
            if (type < SLM_DT_COUNT) dequant_types[type]++;
            check_dequant(type, count, bs, bb, p, plen);
            break;
        case K_QUANT:
            if (type < SLM_DT_COUNT) quant_types[type]++;
            check_quant(type, count, bs, bb, p, plen);
            break;
        case K_F16_TO_F32: check_f16_table(count, p, plen); break;
        case K_F32_TO_F16:
        case K_F32_TO_BF16: check_f32_to_half((int)kind, count, p, plen); break;
        case K_SIZES: check_sizes(count, p, plen); break;
        default: break; /* unknown kinds are skipped */
        }
    }
    CHECK(off == len, "%s: %zu trailing bytes", VECTORS_PATH, len - off);
    for (int k = K_DEQUANT; k <= K_SIZES; k++) CHECK(seen[k] > 0, "no section of kind %d", k);
    /* every type with a to_float was compared with the oracle, and every from_float but the
     * plain float types (covered by the conversion sections); slimlm's own group, sparse and
     * codebook formats have no outside implementation and are checked against their
     * description in test_gq.c, test_sparse.c and test_codebook.c;
     * the K-quant quantizers search scales (no outside byte-exact reference; test_quant_k.c
     * checks their error bounds, and the round trip through the oracle-checked to_float) */
    for (uint32_t t = 0; t < SLM_DT_COUNT; t++) {
        const slm_dtype_traits *tr = slm_dtype_get(t);
        if (!tr || slm_gq_format_of(t, NULL) || slm_sp_format_of(t, NULL) || slm_cb_format_of(t, NULL) ||
            slm_cbt_format_of(t, NULL))
            continue;
        if (tr->to_float) CHECK(dequant_types[t] > 0, "%s: no dequant vectors", tr->name);
        if (tr->from_float && tr->block_size > 1 && tr->block_size != 256)
            CHECK(quant_types[t] > 0, "%s: no quant vectors", tr->name);
    }
    free(data);
}

/* ---- properties checked without the oracle ------------------------------------------------ */

/* Correct rounding of f32 -> half on a sweep of the f32 range: the result is the nearest
 * representable value (ties to the even one), Inf when |x| reaches the overflow threshold. */
static void check_rounding_sweep(bool bf) {
    const char *what = bf ? "f32 -> bf16" : "f32 -> f16";
    /* largest finite value and the threshold at which rounding gives Inf */
    const double maxv = bf ? (double)bitsf(0x7f7f0000u) : 65504.0;
    const double inf_at = bf ? maxv + ldexp(1.0, 127 - 8) : 65520.0;
    size_t bad = 0, tested = 0;
    for (uint64_t u64 = 0; u64 <= 0xffffffffull; u64 += 4093) {
        const uint32_t u = (uint32_t)u64;
        const float x = bitsf(u);
        const uint16_t h = bf ? slm_f32_to_bf16(x) : slm_f32_to_f16(x);
        const float y = bf ? slm_bf16_to_f32(h) : slm_f16_to_f32(h);
        bool ok;
        tested++;
        if (isnan(x)) {
            ok = isnan(y) && signbit(x) == signbit(y);
        } else if (fabs((double)x) >= inf_at) {
            ok = isinf(y) && signbit(x) == signbit(y);
        } else {
            ok = !isnan(y) && !isinf(y) && signbit(x) == signbit(y);
            /* neighbours of h in magnitude (same sign); beyond max: the threshold's distance */
            const uint16_t mag = h & 0x7fff, sgn = h & 0x8000;
            const double ax = fabs((double)x), ay = fabs((double)y);
            const double err = fabs(ax - ay);
            if (ok && mag > 0) {
                const float lo = bf ? slm_bf16_to_f32((uint16_t)(sgn | (mag - 1)))
                                    : slm_f16_to_f32((uint16_t)(sgn | (mag - 1)));
                const double e2 = fabs(ax - fabs((double)lo));
                ok = err < e2 || (err == e2 && !(mag & 1));
            }
            if (ok && ay < maxv) {
                const float hi = bf ? slm_bf16_to_f32((uint16_t)(sgn | (mag + 1)))
                                    : slm_f16_to_f32((uint16_t)(sgn | (mag + 1)));
                const double e2 = fabs(ax - fabs((double)hi));
                ok = err < e2 || (err == e2 && !(mag & 1));
            }
        }
        if (!ok && bad++ == 0)
            fprintf(stderr, "%s: 0x%08x (%.9g) -> 0x%04x (%.9g) is not the nearest\n", what, u,
                    x, h, y);
    }
    CHECK(bad == 0, "%s: %zu of %zu swept values not correctly rounded", what, bad, tested);
}

/* Every exact midpoint between two neighbouring finite half values rounds to the even one. */
static void check_all_ties(bool bf) {
    const char *what = bf ? "f32 -> bf16" : "f32 -> f16";
    const uint32_t last = bf ? 0x7f7f : 0x7bff; /* largest finite magnitude */
    size_t bad = 0;
    for (uint32_t m = 0; m < last; m++) {
        for (uint32_t sgn = 0; sgn <= 0x8000; sgn += 0x8000) {
            uint32_t xb;
            if (bf) {
                xb = ((sgn | m) << 16) | 0x8000u; /* halfway to the next bf16 */
            } else {
                const double lo = slm_f16_to_f32((uint16_t)m);
                const double hi = slm_f16_to_f32((uint16_t)(m + 1));
                xb = fbits((float)((lo + hi) / 2)) | (sgn << 16);
            }
            const float x = bitsf(xb);
            const uint16_t got = bf ? slm_f32_to_bf16(x) : slm_f32_to_f16(x);
            const uint16_t want = (uint16_t)(sgn | ((m & 1) ? m + 1 : m));
            if (got != want && bad++ == 0)
                fprintf(stderr, "%s: tie 0x%08x -> 0x%04x, want 0x%04x\n", what, xb, got, want);
        }
    }
    CHECK(bad == 0, "%s: %zu ties not rounded to even", what, bad);
}

static void check_half_specials(void) {
    CHECK(slm_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(slm_f16_to_f32(0xc000) == -2.0f, "f16 -2.0");
    CHECK(slm_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(slm_f16_to_f32(0x0001) == 0x1p-24f, "f16 smallest subnormal");
    CHECK(slm_f16_to_f32(0x03ff) == 0x3ffp-24f, "f16 largest subnormal");
    CHECK(fbits(slm_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0");
    CHECK(isinf(slm_f16_to_f32(0xfc00)) && slm_f16_to_f32(0xfc00) < 0, "f16 -inf");
    CHECK(slm_f32_to_f16(65519.0f) == 0x7bff && slm_f32_to_f16(65520.0f) == 0x7c00,
          "f16 overflow threshold");
    CHECK(slm_f32_to_f16(0x1p-25f) == 0x0000 && slm_f32_to_f16(0x1.000002p-25f) == 0x0001,
          "f16 underflow threshold");
    CHECK(slm_f32_to_f16(0x1.8p-24f) == 0x0002, "f16 subnormal tie to even");
    CHECK(slm_f32_to_f16(-0.0f) == 0x8000, "f16 -0");
    CHECK(slm_f32_to_f16(NAN) >= 0x7e00 && slm_f32_to_f16(NAN) <= 0x7fff, "f16 quiet NaN");
    CHECK(slm_f32_to_bf16(1.0f) == 0x3f80 && slm_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(slm_f32_to_bf16(bitsf(0x3f808000u)) == 0x3f80, "bf16 tie to even (down)");
    CHECK(slm_f32_to_bf16(bitsf(0x3f818000u)) == 0x3f82, "bf16 tie to even (up)");
    CHECK(slm_f32_to_bf16(bitsf(0x7f7fffffu)) == 0x7f80, "bf16 overflow to inf");
    CHECK(slm_f32_to_bf16(bitsf(0x7f800001u)) == 0x7fc0, "bf16 signaling NaN quieted");
    CHECK(slm_f32_to_bf16(bitsf(0x00000001u)) == 0x0000, "bf16 tiny subnormal rounds to 0");
    CHECK(slm_f32_to_bf16(bitsf(0x00008001u)) == 0x0001, "bf16 subnormal rounds up");
}

/* from_float then to_float on random data: per-element error bounds from each format's scale
 * (d is the unrounded f32 scale the quantizer computes, d16 its stored f16 rounding). */
static void check_round_trip(uint32_t type) {
    const slm_dtype_traits *tr = slm_dtype_get(type);
    const int64_t n = 32 * 48;
    size_t bytes = 0;
    CHECK(tr && tr->from_float && tr->to_float && slm_row_bytes(type, n, &bytes),
          "round trip: type %u", type);
    if (!tr || !tr->from_float || !tr->to_float || !slm_row_bytes(type, n, &bytes)) return;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    uint8_t *q = malloc(bytes);
    if (!x || !y || !q) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (int64_t b = 0; b < n / 32; b++) { /* a different distribution per block */
        const float scale = powf(10.0f, (float)(b % 7) - 4.0f);
        for (int j = 0; j < 32; j++) {
            float v = b % 3 == 0 ? rng_normal() : b % 3 == 1 ? rng_uniform() : 1.5f + rng_uniform();
            if (b % 5 == 4 && j == (int)(b % 32)) v *= 20.0f; /* an outlier */
            x[b * 32 + j] = v * scale;
        }
    }
    tr->from_float(x, q, n);
    tr->to_float(q, y, n);
    size_t bad = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32, *yb = y + b * 32;
        float amax = 0.0f, smax = 0.0f, mn = xb[0], mx = xb[0];
        for (int j = 0; j < 32; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                smax = xb[j];
            }
            if (xb[j] < mn) mn = xb[j];
            if (xb[j] > mx) mx = xb[j];
        }
        for (int j = 0; j < 32; j++) {
            const double ax = fabs((double)xb[j]);
            const double eps = 1e-6 * (fabs((double)mn) + fabs((double)mx)) + 1e-30;
            double bound;
            switch (type) {
            case SLM_DT_F32: bound = 0.0; break;
            case SLM_DT_F16: bound = ax * 0x1p-11 + 0x1p-25; break;
            case SLM_DT_BF16: bound = ax * 0x1p-8; break;
            case SLM_DT_Q8_0: {
                const double d = amax / 127.0f, d16 = slm_f16_to_f32(slm_f32_to_f16(amax / 127.0f));
                bound = 0.5 * d + 127.0 * fabs(d - d16) + eps;
                break;
            }
            case SLM_DT_Q4_0:
            case SLM_DT_Q5_0: {
                const float half = type == SLM_DT_Q4_0 ? 8.0f : 16.0f;
                const double d = fabs((double)(smax / -half));
                const double d16 = fabs((double)slm_f16_to_f32(slm_f32_to_f16(smax / -half)));
                /* the quant grid reaches -max but only max - d on the other side: elements
                 * beyond that are clipped (error up to d); the rest round (error up to d/2) */
                const bool clipped = ax > (double)amax * (1.0 - 1.0 / (2.0 * half));
                bound = (clipped ? d : 0.5 * d) + half * fabs(d - d16) + eps;
                break;
            }
            case SLM_DT_Q4_1:
            case SLM_DT_Q5_1: {
                const float qmax = type == SLM_DT_Q4_1 ? 15.0f : 31.0f;
                const double d = (mx - mn) / qmax;
                const double d16 = slm_f16_to_f32(slm_f32_to_f16((mx - mn) / qmax));
                const double m16 = slm_f16_to_f32(slm_f32_to_f16(mn));
                bound = 0.5 * d + qmax * fabs(d - d16) + fabs((double)mn - m16) + eps;
                break;
            }
            default: bound = 0.0; break;
            }
            const double err = fabs((double)yb[j] - (double)xb[j]);
            if (!(err <= bound)) {
                if (bad++ == 0)
                    fprintf(stderr, "%s round trip: block %lld elem %d: x %.9g y %.9g err %.3g "
                            "bound %.3g\n", tr->name, (long long)b, j, xb[j], yb[j], err, bound);
            }
        }
    }
    CHECK(bad == 0, "%s round trip: %zu of %lld elements exceed the error bound", tr->name, bad,
          (long long)n);
done:
    free(x);
    free(y);
    free(q);
}

static void check_row_bytes(void) {
    size_t sz = 12345;
    CHECK(slm_row_bytes(SLM_DT_Q4_1, 32, &sz) && sz == 20, "q4_1 x32 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_Q4_1, 576, &sz) && sz == 18 * 20, "q4_1 x576 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_Q6_K, 512, &sz) && sz == 420, "q6_k x512 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_F32, 7, &sz) && sz == 28, "f32 x7 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_BF16, 3, &sz) && sz == 6, "bf16 x3 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_Q8_0, 0, &sz) && sz == 0, "q8_0 x0 -> %zu", sz);
    CHECK(slm_row_bytes(SLM_DT_I64, 5, NULL), "NULL out allowed");
    sz = 777;
    CHECK(!slm_row_bytes(SLM_DT_Q4_1, 33, &sz) && sz == 777, "q4_1 x33 accepted");
    CHECK(!slm_row_bytes(SLM_DT_Q4_K, 32, &sz), "q4_k x32 accepted");
    CHECK(!slm_row_bytes(SLM_DT_Q4_1, -32, &sz), "negative n accepted");
    CHECK(!slm_row_bytes(SLM_DT_F32, -1, &sz), "negative n accepted");
    CHECK(!slm_row_bytes(SLM_DT_F32, INT64_MIN, &sz), "INT64_MIN accepted");
    CHECK(!slm_row_bytes(4, 32, &sz) && !slm_row_bytes(5, 32, &sz), "retired id accepted");
    CHECK(!slm_row_bytes(SLM_DT_COUNT, 1, &sz) && !slm_row_bytes(UINT32_MAX, 1, &sz),
          "unknown id accepted");
    if (SIZE_MAX >= UINT64_MAX) { /* 64-bit size_t: exact overflow boundaries */
        CHECK(slm_row_bytes(SLM_DT_I8, INT64_MAX, &sz) && sz == (size_t)INT64_MAX, "i8 max");
        CHECK(slm_row_bytes(SLM_DT_F16, INT64_MAX, &sz) && sz == (size_t)INT64_MAX * 2,
              "f16 x INT64_MAX fits exactly");
        CHECK(!slm_row_bytes(SLM_DT_F32, INT64_MAX, &sz), "f32 x INT64_MAX overflow accepted");
        CHECK(!slm_row_bytes(SLM_DT_F64, INT64_MAX, &sz), "f64 overflow accepted");
        CHECK(slm_row_bytes(SLM_DT_F32, (int64_t)(SIZE_MAX / 4), &sz), "f32 largest");
        CHECK(!slm_row_bytes(SLM_DT_F32, (int64_t)(SIZE_MAX / 4) + 1, &sz), "f32 overflow");
        const int64_t big = INT64_MAX / 256 * 256;
        CHECK(slm_row_bytes(SLM_DT_Q8_K, big, &sz) && sz == (size_t)(big / 256) * 292,
              "q8_k big row");
    } else {
        CHECK(!slm_row_bytes(SLM_DT_F32, INT64_MAX, &sz), "f32 overflow accepted");
    }
}

static void check_names(void) {
    static const struct {
        uint32_t id;
        const char *name;
        int64_t bs;
        size_t bb;
        bool compute, quant;
    } want[] = {
        {SLM_DT_F32, "f32", 1, 4, true, true},       {SLM_DT_F16, "f16", 1, 2, true, true},
        {SLM_DT_Q4_0, "q4_0", 32, 18, true, true},   {SLM_DT_Q4_1, "q4_1", 32, 20, true, true},
        {SLM_DT_Q5_0, "q5_0", 32, 22, true, true},   {SLM_DT_Q5_1, "q5_1", 32, 24, true, true},
        {SLM_DT_Q8_0, "q8_0", 32, 34, true, true},   {SLM_DT_Q8_1, "q8_1", 32, 36, false, false},
        {SLM_DT_Q2_K, "q2_k", 256, 84, true, true}, {SLM_DT_Q3_K, "q3_k", 256, 110, true, true},
        {SLM_DT_Q4_K, "q4_k", 256, 144, true, true}, {SLM_DT_Q5_K, "q5_k", 256, 176, true, true},
        {SLM_DT_Q6_K, "q6_k", 256, 210, true, true}, {SLM_DT_Q8_K, "q8_k", 256, 292, false, false},
        {SLM_DT_I8, "i8", 1, 1, false, false},       {SLM_DT_I16, "i16", 1, 2, false, false},
        {SLM_DT_I32, "i32", 1, 4, false, false},     {SLM_DT_I64, "i64", 1, 8, false, false},
        {SLM_DT_F64, "f64", 1, 8, false, false},     {SLM_DT_BF16, "bf16", 1, 2, true, true},
    };
    const size_t nwant = sizeof want / sizeof want[0];
    bool known[SLM_DT_COUNT] = {false};
    for (size_t i = 0; i < nwant; i++) {
        const slm_dtype_traits *tr = slm_dtype_get(want[i].id);
        known[want[i].id] = true;
        CHECK(tr != NULL, "type %u missing", want[i].id);
        if (!tr) continue;
        CHECK(strcmp(tr->name, want[i].name) == 0 && strcmp(slm_dtype_name(want[i].id),
                                                             want[i].name) == 0,
              "type %u named %s", want[i].id, tr->name);
        CHECK(tr->block_size == want[i].bs && tr->block_bytes == want[i].bb,
              "%s: block %lld/%zu", tr->name, (long long)tr->block_size, tr->block_bytes);
        CHECK((tr->to_float != NULL) == want[i].compute && (tr->dot_f32 != NULL) == want[i].compute,
              "%s: to_float/dot_f32 presence", tr->name);
        CHECK((tr->from_float != NULL) == want[i].quant, "%s: from_float presence", tr->name);
        CHECK(slm_dtype_from_name(want[i].name) == (int)want[i].id, "from_name(%s)",
              want[i].name);
        char upper[16];
        size_t k = 0;
        for (; want[i].name[k] && k + 1 < sizeof upper; k++)
            upper[k] = (char)(want[i].name[k] >= 'a' && want[i].name[k] <= 'z'
                                  ? want[i].name[k] - 'a' + 'A'
                                  : want[i].name[k]);
        upper[k] = 0;
        CHECK(slm_dtype_from_name(upper) == (int)want[i].id, "from_name(%s)", upper);
    }
    for (uint32_t t = 0; t < SLM_DT_COUNT; t++) {
        /* slimlm's own formats: test_gq.c, test_sparse.c, test_codebook.c, test_cbt.c */
        if (known[t] || slm_gq_format_of(t, NULL) || slm_sp_format_of(t, NULL) || slm_cb_format_of(t, NULL) ||
            slm_cbt_format_of(t, NULL))
            continue;
        CHECK(slm_dtype_get(t) == NULL && strcmp(slm_dtype_name(t), "unknown") == 0,
              "id %u should be unknown", t);
    }
    const uint32_t far[] = {SLM_DT_COUNT, 1000, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof far / sizeof far[0]; i++)
        CHECK(slm_dtype_get(far[i]) == NULL && strcmp(slm_dtype_name(far[i]), "unknown") == 0,
              "id %u should be unknown", far[i]);
    CHECK(slm_dtype_from_name("Q4_K") == SLM_DT_Q4_K, "from_name(Q4_K)");
    CHECK(slm_dtype_from_name("q4_1 ") == -1 && slm_dtype_from_name("q4") == -1 &&
              slm_dtype_from_name("") == -1 && slm_dtype_from_name("unknown") == -1 &&
              slm_dtype_from_name("q4_10") == -1 && slm_dtype_from_name(NULL) == -1,
          "bad names must give -1");
}

int main(void) {
    check_names();
    check_row_bytes();
    check_half_specials();
    check_vectors();
    check_rounding_sweep(false);
    check_rounding_sweep(true);
    check_all_ties(false);
    check_all_ties(true);
    const uint32_t rt[] = {SLM_DT_F32, SLM_DT_F16, SLM_DT_BF16, SLM_DT_Q8_0,
                           SLM_DT_Q4_0, SLM_DT_Q4_1, SLM_DT_Q5_0, SLM_DT_Q5_1};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) check_round_trip(rt[i]);
    return test_summary("test_dtype");
}
